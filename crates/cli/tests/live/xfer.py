import socket, sys, hashlib, os
mode = sys.argv[1]
if mode == "recv":
    fam = socket.AF_INET6 if ":" in sys.argv[2] else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[2], int(sys.argv[3]))); s.listen(1)
    print("listening", flush=True)
    c, _ = s.accept(); h = hashlib.sha256(); n = 0
    while True:
        b = c.recv(1 << 20)
        if not b: break
        h.update(b); n += len(b)
    print(n, h.hexdigest(), flush=True)
else:
    host, port, total = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    c = socket.create_connection((host, port), timeout=30)
    h = hashlib.sha256(); n = 0; block = hashlib.sha256(b"seed").digest() * 2048
    i = 0
    while n < total:
        b = hashlib.sha256(i.to_bytes(8, "big")).digest() + block[: min(len(block), total - n) - 32] if total - n > 32 else block[: total - n]
        c.sendall(b); h.update(b); n += len(b); i += 1
    c.shutdown(socket.SHUT_WR); c.recv(1)
    print(n, h.hexdigest(), flush=True)
