c = station("br-lan", "02:00:00:10:00:00")
c2 = station("br-lan", "02:00:00:10:00:01")
s = station("wan", "02:00:00:00:02:fe")
# resets and port unreachables for new connections: related, reply direction
c.tcp("192.168.1.100", "198.18.5.5", 40000, 23, "S", 1)
c.udp("192.168.1.100", "198.18.5.5", 40001, 23, b"x")
c.tcp("192.168.1.100", "198.18.5.5", 40006, 25, "S", 1)
c.tcp("2001:db8:1::100", "2001:db8:5::5", 40007, 25, "S", 1)
# time exceeded: to .100 marked, to .101 dropped in output
c.udp("192.168.1.100", "198.18.5.5", 40002, 7, b"x", ttl=1)
c2.udp("192.168.1.101", "198.18.5.5", 40003, 7, b"x", ttl=1)
c.udp("2001:db8:1::100", "2001:db8:5::5", 40008, 7, b"x6", ttl=1)
# through DNAT from the WAN: the reset to the WAN is dropped in postrouting, the ICMP error
# leaves translated
s.tcp("198.18.9.9", "198.18.0.2", 50000, 8080, "S", 1)
s.udp("198.18.9.9", "198.18.0.2", 50001, 8081, b"x")
# an ICMPv6 error to the WAN is dropped in output
s.udp("2001:db8:9::9", "2001:db8:1::100", 50002, 23, b"x6")
# untracked (notrack in raw): its port unreachable and its reset have no connection
# (invalid): nf_ct_attach finds no entry on an untracked packet
c.udp("192.168.1.100", "198.18.5.5", 40004, 24, b"x")
c.tcp("192.168.1.100", "198.18.5.5", 40010, 26, "S", 1)
# invalid (SYN+FIN): its reset has no connection
c.tcp("192.168.1.100", "198.18.5.5", 40005, 443, "SF", 1)
# established, then a time exceeded for its reply direction (un-SNATed, quoted as sent)
c.udp("192.168.1.100", "198.18.5.5", 40009, 9, b"x")
s.udp("198.18.5.5", "198.18.0.2", 9, 40009, b"y")
s.udp("198.18.5.5", "198.18.0.2", 9, 40009, b"z", ttl=1)
