c = station("wan", "02:00:00:00:02:fe")
srv = station("br-lan", "02:00:00:10:00:00")
srv2 = station("br-lan", "02:00:00:10:00:01")
# client 198.18.9.9 connects to the router's 8080, reaching 192.168.1.100:80
tcp_session(c, srv, "198.18.9.9", "192.168.1.100", 50000, 80, seen_saddr="198.18.0.2", seen_dport=8080)
c.udp("198.18.9.9", "198.18.0.2", 50001, 5353, b"mdns?")
srv2.udp("192.168.1.101", "198.18.9.9", 5353, 50001, b"mdns!")
# not forwarded: port 8081 to the router itself, then to a LAN host directly
c.tcp("198.18.9.9", "198.18.0.2", 50002, 8081, "S", 1)
c.tcp("198.18.9.9", "192.168.1.100", 50003, 80, "S", 1)
