c = station("br-lan", "02:00:00:10:00:00")
s = station("wan", "02:00:00:00:02:fe")
tcp_session(c, s, "192.168.1.100", "198.18.5.5", 40000, 443, seen_caddr="198.18.0.2")
tcp_session(s, c, "198.18.9.9", "192.168.1.100", 50000, 80, seen_saddr="198.18.0.2", seen_dport=8080)
s.tcp("198.18.66.7", "198.18.0.2", 50001, 8080, "S", 1)
s.udp("198.18.9.9", "192.168.1.100", 50002, 9, b"discard")
s.tcp("198.18.9.9", "198.18.0.2", 50003, 2222, "S", 1)
s.ping("198.18.9.9", "192.168.1.100")
s.udp("2001:db8:9::9", "2001:db8:1::100", 50004, 9, b"discard6")
s.udp("2001:db8:9::9", "2001:db8:1::100", 50005, 10, b"pass6")
# nf_dup_netdev: the frame as it came (MACs, TTL, checksums) goes out of br-lan too; the
# original is dropped by the forward policy
s.udp("198.18.9.9", "192.168.1.100", 50006, 7, b"echo", ttl=9)
# the LAN's own device has no ingress chain: its traffic passes
c.ping("192.168.1.100", "198.18.5.5")
c.udp("192.168.1.100", "198.18.5.5", 40001, 9, b"out")
