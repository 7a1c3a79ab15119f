# SCTP over raw IPv4 sockets (the kernel here may have no SCTP sockets).
# recv ADDR: prints "listening", then for the first SCTP packet to ADDR its source address and
# whether its CRC32c is right ("crc ok" / "crc bad").
# send DST zero|good: sends one INIT to DST, its CRC32c left zero (as a stack that leaves the
# CRC to the device does) or filled in.
import socket, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "scripts"))
from pktlib import sctp_crc_ok, sctp_init, sctp_packet  # noqa: E402

mode, addr = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 132)
if mode == "recv":
    s.bind((addr, 0))
    s.settimeout(5)
    print("listening", flush=True)
    try:
        b, a = s.recvfrom(2048)
    except socket.timeout:
        print("nothing", flush=True)
        sys.exit(0)
    p = b[(b[0] & 15) * 4:]
    print(a[0], "crc ok" if sctp_crc_ok(p) else "crc bad", flush=True)
else:
    p = sctp_packet(5000, 6000, 0, [sctp_init(1, 0xDEADBEEF, a_rwnd=65536)])
    if sys.argv[3] != "good":
        p = p[:8] + b"\0\0\0\0" + p[12:]
    s.sendto(p, (addr, 0))
