c = station("br-lan", "02:00:00:10:00:00")
s = station("wan", "02:00:00:00:02:fe")
# three assured connections and an unanswered UDP query fill the table
for n in range(3):
    c.tcp("192.168.1.100", "198.18.5.5", 40000 + n, 80, "S", 1000, 0, mss=1460)
    s.tcp("198.18.5.5", "198.18.0.2", 80, 40000 + n, "SA", 5000, 1001, mss=1460)
    c.tcp("192.168.1.100", "198.18.5.5", 40000 + n, 80, "A", 1001, 5001)
c.udp("192.168.1.100", "198.18.5.53", 40100, 53, b"query")
# a new connection: only the UDP query can make room
c.tcp("192.168.1.100", "198.18.5.6", 40003, 443, "S", 1000, 0, mss=1460)
# the assured ones are untouched
c.tcp("192.168.1.100", "198.18.5.5", 40000, 80, "PA", 1001, 5001, b"GET / HTTP/1.0\r\n\r\n")
s.tcp("198.18.5.5", "198.18.0.2", 80, 40000, "PA", 5001, 1019, b"HTTP/1.0 200 OK\r\n\r\n")
