# One UDP flow, a numbered datagram every 10 ms to an echo server (udp.py echo). Prints "ready"
# once it sends; each "count" line on stdin prints "SENT ANSWERED" for the datagrams sent since
# the last count (it stops sending and waits up to half a second for the answers still on
# their way) and starts a new window; EOF ends it.
import select, socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
s.connect((host, port))
s.setblocking(False)
seq, start, answered = 0, 0, set()


def take():
    while True:
        try:
            b = s.recv(2048)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:  # an ICMP error for an earlier datagram
            continue
        try:
            n = int(b.split(b" ")[0])
        except ValueError:
            continue
        if n >= start:
            answered.add(n)


print("ready", flush=True)
next_send = time.time()
while True:
    now = time.time()
    if now >= next_send:
        try:
            s.send(b"%d" % seq)
        except OSError:
            pass
        seq += 1
        next_send = now + 0.01
    take()
    r, _, _ = select.select([sys.stdin, s], [], [], max(0.0, next_send - time.time()))
    if sys.stdin in r:
        if not sys.stdin.readline():
            break
        end = time.time() + 0.5
        while len(answered) < seq - start and time.time() < end:
            select.select([s], [], [], 0.02)
            take()
        print(seq - start, len(answered), flush=True)
        start, answered = seq, set()
        next_send = time.time()
