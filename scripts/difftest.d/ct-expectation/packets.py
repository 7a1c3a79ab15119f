c = station("br-lan", "02:00:00:10:00:00")
s = station("wan", "02:00:00:00:02:fe")
# nothing announced yet: the server's connection is refused
s.tcp("198.18.5.5", "192.168.1.100", 20, 2121, "S", 500, 0, mss=1460)
# the control connection announces one
c.tcp("192.168.1.100", "198.18.5.5", 40000, 21, "S", 100, 0, mss=1460)
s.tcp("198.18.5.5", "192.168.1.100", 21, 40000, "SA", 900, 101, mss=1460)
c.tcp("192.168.1.100", "198.18.5.5", 40000, 21, "A", 101, 901)
# from another server: not the one announced
s.tcp("198.18.5.6", "192.168.1.100", 20, 2121, "S", 500, 0, mss=1460)
# from the server, any source port: related, let through, answered
s.tcp("198.18.5.5", "192.168.1.100", 20, 2121, "S", 500, 0, mss=1460)
c.tcp("192.168.1.100", "198.18.5.5", 2121, 20, "SA", 700, 501, mss=1460)
s.tcp("198.18.5.5", "192.168.1.100", 20, 2121, "A", 501, 701)
# used up: a second one is new, refused
s.tcp("198.18.5.5", "192.168.1.100", 30, 2121, "S", 500, 0, mss=1460)
