# SCTP over raw IPv4 sockets (the kernel here may have no SCTP sockets).
# recv ADDR: prints "listening", then for the first SCTP packet to ADDR its source address and
# whether its CRC32c is right ("crc ok" / "crc bad").
# send DST zero|good: sends one INIT to DST, its CRC32c left zero (as a stack that leaves the
# CRC to the device does) or filled in.
import socket, struct, sys


def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    return c ^ 0xFFFFFFFF


def crc_ok(p):
    z = p[:8] + b"\0\0\0\0" + p[12:]
    return struct.unpack("<I", p[8:12])[0] == crc32c(z)


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
    print(a[0], "crc ok" if crc_ok(p) else "crc bad", flush=True)
else:
    init = struct.pack("!BBHIIHHI", 1, 0, 20, 0xDEADBEEF, 65536, 10, 10, 1)
    p = struct.pack("!HHII", 5000, 6000, 0, 0) + init
    if sys.argv[3] == "good":
        p = p[:8] + struct.pack("<I", crc32c(p)) + p[12:]
    s.sendto(p, (addr, 0))
