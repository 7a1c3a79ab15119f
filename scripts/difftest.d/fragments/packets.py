c = station("br-lan", "02:00:00:10:00:00")
s = station("wan", "02:00:00:00:02:fe")

data = bytes(range(256)) * 12
C, S = "192.168.1.100", "198.18.5.5"
# in order, equal fragments then a short last one
u = udp_seg(C, S, 40000, 4000, data[:2500])
frags4(c, C, S, u, 17, 0x1111, [(0, 1008), (1008, 1008), (2016, len(u) - 2016)])
# out of order, the last first
u = udp_seg(C, S, 40001, 4001, data[:1800])
frags4(c, C, S, u, 17, 0x1112, [(0, 800), (800, 800), (1600, len(u) - 1600)], order=[2, 0, 1])
# a small first fragment and a bigger second one
u = udp_seg(C, S, 40002, 4002, data[:1600])
frags4(c, C, S, u, 17, 0x1113, [(0, 504), (504, 1000), (1504, len(u) - 1504)])
# a duplicate fragment
u = udp_seg(C, S, 40003, 4003, data[:1200])
frags4(c, C, S, u, 17, 0x1114, [(0, 600), (600, 600), (600, 600), (1200, len(u) - 1200)])
# overlapping fragments: the datagram is dropped
u = udp_seg(C, S, 40004, 4004, data[:1200])
frags4(c, C, S, u, 17, 0x1115, [(0, 608), (600, len(u) - 600)])
# never completed
u = udp_seg(C, S, 40005, 4005, data[:1200])
frags4(c, C, S, u, 17, 0x1116, [(0, 600)])
# the answer to the first flow, fragmented from the WAN
u = udp_seg(S, "198.18.0.2", 4000, 40000, data[:2000])
frags4(s, S, "198.18.0.2", u, 17, 0x2221, [(0, 1400), (1400, len(u) - 1400)])
# an ICMP echo in fragments
ping = icmp_msg(8, 0, struct.pack("!HH", 77, 1), data[:1500])
frags4(c, C, S, ping, 1, 0x1117, [(0, 1000), (1000, len(ping) - 1000)])
# IPv6
C6, S6 = "2001:db8:1::100", "2001:db8:5::5"
u = udp_seg(C6, S6, 40006, 4006, data[:2500])
frags6(c, C6, S6, u, 17, 0xabcdef, [(0, 1232), (1232, len(u) - 1232)])
u = udp_seg(C6, S6, 40007, 4006, data[:1800])
frags6(c, C6, S6, u, 17, 0xabcdf0, [(0, 600), (600, 600), (1200, len(u) - 1200)], order=[1, 2, 0])
# IPv6: a duplicate fragment, then an overlapping one
u = udp_seg(C6, S6, 40008, 4006, data[:1200])
frags6(c, C6, S6, u, 17, 0xabcdf1, [(0, 600), (0, 600), (600, len(u) - 600)])
u = udp_seg(C6, S6, 40009, 4006, data[:1200])
frags6(c, C6, S6, u, 17, 0xabcdf2, [(0, 608), (600, len(u) - 600)])
# the TTL runs out on a fragmented datagram: time exceeded quotes the reassembled one
u = udp_seg(C, S, 40010, 4000, data[:1500])
frags4(c, C, S, u, 17, 0x1118, [(0, 1000), (1000, len(u) - 1000)], ttl=1)
# into the LAN through a port forward, fragmented
u = udp_seg(S, "198.18.0.2", 5000, 5353, data[:1700])
frags4(s, S, "198.18.0.2", u, 17, 0x2222, [(0, 1200), (1200, len(u) - 1200)])
