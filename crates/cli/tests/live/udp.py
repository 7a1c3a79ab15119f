# UDP echo (server) and a client that sends datagrams on several flows and checks each answer.
import socket, sys
mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
if mode == "echo":
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((host, port))
    print("listening", flush=True)
    while True:
        b, a = s.recvfrom(2048)
        s.sendto(b + b" from " + a[0].encode(), a)
else:
    flows, per = int(sys.argv[4]), int(sys.argv[5])
    ok = 0
    seen = set()
    for f in range(flows):
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.settimeout(2)
        for i in range(per):
            msg = ("flow %d datagram %d" % (f, i)).encode()
            s.sendto(msg, (host, port))
            try:
                b, _ = s.recvfrom(2048)
            except socket.timeout:
                continue
            if b.startswith(msg + b" from "):
                ok += 1
                seen.add(b[len(msg) + 6:].decode())
    print(ok, " ".join(sorted(seen)), flush=True)
