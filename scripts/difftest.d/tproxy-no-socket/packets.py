c = station("br-lan", "02:00:00:10:00:00")
s = station("wan", "02:00:00:00:02:fe")
# for a proxy on 3128 that is not there: the connection goes through, masqueraded
tcp_session(c, s, "192.168.1.100", "198.18.5.5", 40000, 80, seen_caddr="198.18.0.2")
# UDP for 5353, not there either
c.udp("192.168.1.100", "198.18.5.53", 40001, 53, b"query")
# IPv6 for an IPv6 proxy; an IPv4 segment of another port breaks that rule too
c.tcp("2001:db8:1::100", "2001:db8:5::5", 40002, 443, "S", 1, mss=1440)
c.tcp("192.168.1.100", "198.18.5.5", 40003, 443, "S", 1, mss=1460)
