c = station("br-lan", "02:00:00:10:00:00")
c2 = station("br-lan", "02:00:00:10:00:01")
s = station("wan", "02:00:00:00:02:fe")
# four handshakes: four assured connections fill the table
for n in range(4):
    cl, a = (c, "192.168.1.100") if n % 2 == 0 else (c2, "192.168.1.101")
    cl.tcp(a, "198.18.5.5", 40000 + n, 80, "S", 1000, 0, mss=1460)
    s.tcp("198.18.5.5", "198.18.0.2", 80, 40000 + n, "SA", 5000, 1001, mss=1460)
    cl.tcp(a, "198.18.5.5", 40000 + n, 80, "A", 1001, 5001)
# new connections are refused: TCP, UDP, ICMP, IPv6 and one from the WAN
c.tcp("192.168.1.100", "198.18.5.5", 40010, 80, "S", 1000, 0, mss=1460)
c.udp("192.168.1.100", "198.18.5.53", 40011, 53, b"query")
c.ping("192.168.1.100", "198.18.5.5", ident=12)
c.udp("2001:db8:1::100", "2001:db8:5::53", 40013, 53, b"q6")
s.tcp("198.18.9.9", "192.168.1.100", 50000, 22, "S", 1)
# a retransmitted SYN is refused again
c.tcp("192.168.1.100", "198.18.5.5", 40010, 80, "S", 1000, 0, mss=1460)
# the established connections carry on: data both ways, then a close
c.tcp("192.168.1.100", "198.18.5.5", 40000, 80, "PA", 1001, 5001, b"GET / HTTP/1.0\r\n\r\n")
s.tcp("198.18.5.5", "198.18.0.2", 80, 40000, "PA", 5001, 1019, b"HTTP/1.0 200 OK\r\n\r\n")
c2.tcp("192.168.1.101", "198.18.5.5", 40001, 80, "FA", 1001, 5001)
s.tcp("198.18.5.5", "198.18.0.2", 80, 40001, "FA", 5001, 1002)
c2.tcp("192.168.1.101", "198.18.5.5", 40001, 80, "A", 1002, 5002)
# a closed connection (TIME_WAIT, still assured) still holds its place
c.tcp("192.168.1.100", "198.18.5.5", 40014, 443, "S", 1000, 0, mss=1460)
# what needs no new entry still works at the limit: an ICMP error about an established
# connection (related) is forwarded, and the router's own "time exceeded" for one goes out;
# a new connection with its TTL run out is dropped at conntrack, before the router could answer
quoted = ip_packet("198.18.0.2", "198.18.5.5", 6, tcp_seg("198.18.0.2", "198.18.5.5", 40002, 80, "A", 1001, 5001))[1][:28]
s.ip("198.18.5.5", "198.18.0.2", 1, icmp_msg(3, 3, b"\0\0\0\0", quoted))
c.tcp("192.168.1.100", "198.18.5.5", 40002, 80, "A", 1001, 5001, ttl=1)
c.udp("192.168.1.100", "198.18.5.53", 40015, 53, b"ttl", ttl=1)
