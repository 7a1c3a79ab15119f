c = station("br-lan", "02:00:00:10:00:00")
s = station("wan", "02:00:00:00:02:fe")
# `fwd to "wan"`: the frame as it came (to the router's LAN MAC, TTL 9), at sizes around the
# WAN's MTU (1280): IP packets of 1280 and 1284 bytes go out, 1285 and 1400 do not
c.udp("192.168.1.100", "198.18.5.5", 40000, 5001, b"as it came", ttl=9)
for size in (1280, 1284, 1285, 1400):
    c.udp("192.168.1.100", "198.18.5.5", 40000, 5001, bytes(size - 28))
# `dup to "wan"`: the copy as it came, the original forwarded (masqueraded); a copy too long
# for the WAN is lost, and its original gets frag-needed back
c.udp("192.168.1.100", "198.18.5.5", 40002, 5002, b"dup", ttl=9)
c.udp("192.168.1.100", "198.18.5.5", 40002, 5002, bytes(1285 - 28))
# `fwd ip to 198.18.0.1`: to the gateway's MAC from the WAN's, TTL one less; a TTL of 1 or
# 0 is dropped
for ttl in (9, 2, 1, 0):
    c.udp("192.168.1.100", "198.18.5.5", 40003, 5003, b"neigh", ttl=ttl)
c.udp("192.168.1.100", "198.18.5.5", 40003, 5003, bytes(1284 - 28))
c.udp("192.168.1.100", "198.18.5.5", 40003, 5003, bytes(1285 - 28))
# `fwd ip6 to`: hop limit one less; 1 is dropped
for hlim in (9, 2, 1):
    c.udp("2001:db8:1::100", "2001:db8:5::5", 40004, 5004, b"neigh6", ttl=hlim)
# `fwd ip to` for an IPv6 packet breaks its rule: the next rule marks it, and it is routed
c.udp("2001:db8:1::100", "2001:db8:5::5", 40005, 5005, b"break", ttl=9)
# and from the WAN: as it came out of the LAN, or to a LAN neighbour with TTL 4
s.udp("198.18.9.9", "192.168.1.100", 50000, 6001, b"in as it came", ttl=5)
s.udp("198.18.9.9", "198.18.0.2", 50001, 6003, b"to .101", ttl=5)
