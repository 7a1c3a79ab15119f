c = station("br-lan", "02:00:00:10:00:00")
s = station("wan", "02:00:00:00:02:fe")
tcp_session(c, s, "192.168.1.100", "198.18.5.5", 40000, 80, seen_caddr="198.18.0.2")
c.udp("192.168.1.100", "198.18.5.53", 41000, 53, b"query")
s.udp("198.18.5.53", "198.18.0.2", 53, 41000, b"answer")
c.udp("192.168.1.100", "198.18.5.53", 41000, 53, b"query2")
c.ping("192.168.1.100", "198.18.5.9", ident=77)
s.ping("198.18.5.9", "198.18.0.2", ident=77, reply=True)
# IPv6: no NAT
tcp_session(c, s, "2001:db8:1::100", "2001:db8:5::5", 40001, 443)
c.ping("2001:db8:1::100", "2001:db8:5::9", ident=78)
s.ping("2001:db8:5::9", "2001:db8:1::100", ident=78, reply=True)
# unsolicited from the WAN: dropped by policy
s.tcp("198.18.5.5", "198.18.0.2", 80, 40999, "S", 1)
