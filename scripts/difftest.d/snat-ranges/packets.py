c = station("br-lan", "02:00:00:10:00:00")
c1 = station("br-lan", "02:00:00:10:00:01")
c2 = station("br-lan", "02:00:00:10:00:02")
s = station("wan", "02:00:00:00:02:fe")
# one port for two flows: the second must move (nowhere to go: dropped)
c.udp("192.168.1.100", "198.18.5.53", 1111, 53, b"q1")
s.udp("198.18.5.53", "198.18.0.2", 53, 20000, b"a1")
c.udp("192.168.1.100", "198.18.5.54", 1112, 53, b"q2")
c.udp("192.168.1.100", "198.18.5.53", 1113, 53, b"q3")
# a range of 11 ports, starting in it or not
c1.udp("192.168.1.101", "198.18.5.5", 30005, 7, b"in range")
c1.udp("192.168.1.101", "198.18.5.5", 12345, 7, b"out of range")
s.udp("198.18.5.5", "198.18.0.2", 7, 30005, b"back")
# masquerade to two ports
c2.tcp("192.168.1.102", "198.18.5.5", 40000, 80, "S", 1)
c2.tcp("192.168.1.102", "198.18.5.5", 40001, 80, "S", 1)
c2.tcp("192.168.1.102", "198.18.5.6", 40002, 80, "S", 1)
# redirect to the router's proxy port, where the input chain resets
c.tcp("192.168.1.100", "198.18.5.5", 41000, 8888, "S", 1)
# dnat to a port range
s.tcp("198.18.9.9", "198.18.0.2", 50000, 9000, "S", 1)
s.tcp("198.18.9.9", "198.18.0.2", 50001, 9001, "S", 1)
