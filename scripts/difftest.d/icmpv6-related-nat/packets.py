c = station("br-lan", "02:00:00:10:00:00")
s = station("wan", "02:00:00:00:02:fe")
R = "2001:db8:ffff::2"          # the router's WAN address: the masqueraded source

def as_sent(src, dst, proto, l4, hlim=63):
    """The packet as it left the router (source masqueraded, hop limit decremented)."""
    return ip_packet(src, dst, proto, l4, ttl=hlim)[1]

def icmp6_error(typ, code, rest, quoted, src, dst=R):
    return s.ip(src, dst, 58, icmp_msg(typ, code, rest, quoted[:1232], v6=True, src=src, dst=dst))

# UDP out, then port unreachable from the server
c.udp("2001:db8:1::100", "2001:db8:5::53", 40000, 9999, b"hello")
q = as_sent(R, "2001:db8:5::53", 17, udp_seg(R, "2001:db8:5::53", 40000, 9999, b"hello"))
icmp6_error(1, 4, b"\0\0\0\0", q, "2001:db8:5::53")
# TCP out with a big segment, then packet too big from a router on the path
c.tcp("2001:db8:1::100", "2001:db8:5::5", 40001, 443, "S", 1000, mss=1460)
s.tcp("2001:db8:5::5", R, 443, 40001, "SA", 7000, 1001, mss=1460)
big = b"x" * 1300
c.tcp("2001:db8:1::100", "2001:db8:5::5", 40001, 443, "PA", 1001, 7001, big)
q = as_sent(R, "2001:db8:5::5", 6, tcp_seg(R, "2001:db8:5::5", 40001, 443, "PA", 1001, 7001, big))
icmp6_error(2, 0, struct.pack("!I", 1280), q, "2001:db8:7::1")
# time exceeded for a ping
c.ping("2001:db8:1::100", "2001:db8:5::7", ident=11)
q = as_sent(R, "2001:db8:5::7", 58, icmp_msg(128, 0, struct.pack("!HH", 11, 1), b"abcdefgh", v6=True, src=R, dst="2001:db8:5::7"))
icmp6_error(3, 0, b"\0\0\0\0", q, "2001:db8:7::2")
# an error quoting no connection: not related, dropped
q = as_sent(R, "2001:db8:5::53", 17, udp_seg(R, "2001:db8:5::53", 40099, 9999, b"nope"))
icmp6_error(1, 4, b"\0\0\0\0", q, "2001:db8:5::53")
