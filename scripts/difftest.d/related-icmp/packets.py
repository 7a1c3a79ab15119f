import ipaddress
c = station("br-lan", "02:00:00:10:00:00")
s = station("wan", "02:00:00:00:02:fe")
f = c.udp("192.168.1.100", "198.18.5.5", 40000, 9999, b"hello")
# the server answers port unreachable, quoting the masqueraded packet (as it left the router)
from_router = bytearray(f[14:14 + 20 + 8 + 5])
from_router[12:16] = ipaddress.IPv4Address("198.18.0.2").packed
from_router[8] -= 1
# fix the quoted header checksum and leave the UDP checksum as the original minus the NAT change
hdr = bytes(from_router[:10]) + b"\0\0" + bytes(from_router[12:20])
def cs(b):
    x = sum(struct.unpack(f"!{len(b)//2}H", b))
    while x >> 16: x = (x & 0xffff) + (x >> 16)
    return ~x & 0xffff
from_router[10:12] = struct.pack("!H", cs(hdr))
body = bytes(from_router)
icmp = struct.pack("!BBHI", 3, 3, 0, 0) + body
icmp = icmp[:2] + struct.pack("!H", cs(icmp + (b"\0" if len(icmp) % 2 else b""))) + icmp[4:]
s.ip("198.18.5.5", "198.18.0.2", 1, icmp)
# an ICMP error about no connection: not related, dropped
icmp2 = bytearray(icmp); icmp2[8 + 20 + 1] ^= 1
s.ip("198.18.5.6", "198.18.0.2", 1, bytes(icmp2))
# a TCP connection, then a time exceeded from a router on the way
g = c.tcp("192.168.1.100", "198.18.5.7", 40001, 443, "S", 1000)
q = bytearray(g[14:14 + 28]); q[12:16] = ipaddress.IPv4Address("198.18.0.2").packed; q[8] = 1; q[10:12] = b"\0\0"
q[10:12] = struct.pack("!H", cs(bytes(q[:20])))
te = struct.pack("!BBHI", 11, 0, 0, 0) + bytes(q)
te = te[:2] + struct.pack("!H", cs(te)) + te[4:]
s.ip("198.18.7.1", "198.18.0.2", 1, te)
