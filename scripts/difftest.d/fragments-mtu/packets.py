c = station("br-lan", "02:00:00:10:00:00")
s = station("wan", "02:00:00:00:02:fe")

data = bytes(range(256)) * 12
C, S = "192.168.1.100", "198.18.5.5"
# one 1448-byte datagram without DF: cut at the MTU
u = udp_seg(C, S, 40000, 4000, data[:1420])
frags4(c, C, S, u, 17, 0x3331, [(0, len(u))])
# fragments of 1400 and 600 bytes: the first no longer fits, cut afresh
u = udp_seg(C, S, 40001, 4001, data[:1992])
frags4(c, C, S, u, 17, 0x3332, [(0, 1400), (1400, len(u) - 1400)])
# fragments that fit go as they came
u = udp_seg(C, S, 40002, 4002, data[:1992])
frags4(c, C, S, u, 17, 0x3333, [(0, 1000), (1000, len(u) - 1000)])
# DF on every fragment, the largest too big: frag-needed
u = udp_seg(C, S, 40003, 4003, data[:1992])
frags4(c, C, S, u, 17, 0x3334, [(0, 1400), (1400, len(u) - 1400)], df=True)
# IPv6 fragments bigger than the MTU: packet too big; smaller ones go as they came
C6, S6 = "2001:db8:1::100", "2001:db8:5::5"
u = udp_seg(C6, S6, 40004, 4006, data[:2000])
frags6(c, C6, S6, u, 17, 0x77, [(0, 1400), (1400, len(u) - 1400)])
u = udp_seg(C6, S6, 40005, 4006, data[:2000])
frags6(c, C6, S6, u, 17, 0x78, [(0, 1000), (1000, len(u) - 1000)])
