c = station("br-lan", "02:00:00:10:00:00")
srv = station("br-lan", "02:00:00:10:00:01")
s = station("wan.10", "02:00:00:00:02:fe")
# out through the tagged uplink, masqueraded
tcp_session(c, s, "192.168.1.100", "198.18.5.5", 40000, 80, seen_caddr="198.18.0.2")
c.udp("192.168.1.100", "198.18.5.53", 40001, 53, b"query")
s.udp("198.18.5.53", "198.18.0.2", 53, 40001, b"answer")
c.ping("192.168.1.100", "198.18.5.5", ident=9)
s.ping("198.18.5.5", "198.18.0.2", ident=9, reply=True)
# the port forward in through it
tcp_session(s, srv, "198.18.9.9", "192.168.1.101", 50000, 80, seen_saddr="198.18.0.2", seen_dport=8080)
# IPv6 forwarded unmasqueraded, and an inbound connection rejected
c.udp("2001:db8:1::100", "2001:db8:5::53", 40002, 53, b"q6")
s.udp("2001:db8:5::53", "2001:db8:1::100", 53, 40002, b"a6")
s.tcp("198.18.9.9", "192.168.1.100", 50001, 22, "S", 1)
# TTL runs out on the way to the uplink: the ICMP error goes back untagged on the LAN
c.udp("192.168.1.100", "198.18.5.5", 40003, 7, b"ttl", ttl=1)
# frames on the uplink's wire with another tag, or none: no interface takes them
raw("eth1", bytes.fromhex("020000000201" "0200000002fe" "8100" "0014" "0800") + bytes(46))
raw("eth1", bytes.fromhex("020000000201" "0200000002fe" "0800") + bytes(46))
