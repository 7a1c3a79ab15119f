c = station("br-lan", "02:00:00:10:00:00")

# an experimental option without the copied flag (30), one with it (158), 4 bytes each
OPTS = bytes([30, 4, 0xaa, 0xbb, 158, 4, 0xcc, 0xdd])
COPIED = bytes([1, 1, 1, 1, 158, 4, 0xcc, 0xdd])  # later fragments: the copied one, NOPs before it

data = bytes(range(256)) * 12
C, S = "192.168.1.100", "198.18.5.5"
# fragments that fit the WAN go as they came; the second with the copied option only
u = udp_seg(C, S, 40010, 4010, data[:1992])
frags4(c, C, S, u, 17, 0x4441, [(0, 1000), (1000, len(u) - 1000)], opts=OPTS, copied=COPIED)
# one 1448-byte datagram without DF: cut at the MTU, options as RFC 791 says
u = udp_seg(C, S, 40011, 4011, data[:1420])
frags4(c, C, S, u, 17, 0x4442, [(0, len(u))], opts=OPTS, copied=COPIED)
# a reassembled datagram duplicated to the gateway: the copy gets DF (nf_dup_ipv4), and a
# reassembled datagram with DF is refused by ip_fragment: frag-needed to the source, no copy
u = udp_seg(C, S, 40012, 4012, data[:1992])
frags4(c, C, S, u, 17, 0x4443, [(0, 1400), (1400, len(u) - 1400)], opts=OPTS, copied=COPIED)
# the same for one that would fit the MTU whole
u = udp_seg(C, S, 40013, 4013, data[:800])
frags4(c, C, S, u, 17, 0x4444, [(0, 400), (400, len(u) - 400)], opts=OPTS, copied=COPIED)
# not fragmented: a copy that fits (TTL down, DF set), one over the MTU (refused)
c.udp(C, S, 40014, 4014, data[:100], df=False)
c.udp(C, S, 40014, 4014, data[:1400], df=False)
# fragments with DF whose largest had it (IPSKB_FRAG_PMTU): the copy is cut afresh with DF on
# every fragment (the slow path of ip_do_fragment); with DF on the smaller one only, none
u = udp_seg(C, S, 40013, 4013, data[:800])
frags4(c, C, S, u, 17, 0x4445, [(0, 400), (400, len(u) - 400)], df=True, opts=OPTS, copied=COPIED)
u = udp_seg(C, S, 40013, 4013, data[:900])
frags4(c, C, S, u, 17, 0x4446, [(0, 400), (400, len(u) - 400)], df=[True, False], opts=OPTS, copied=COPIED)
# TTL 0 at prerouting: nf_dup_ipv4's --iph->ttl wraps, the copy leaves with TTL 255 (the
# original gets time-exceeded)
c.udp(C, S, 40014, 4014, data[:100], ttl=0, df=False)

# IPv6: the copy of a reassembled datagram leaves in its pieces (ip6_fragment); one whose
# pieces do not fit the MTU gets packet-too-big
C6, S6 = "2001:db8:1::100", "2001:db8:5::5"
u = udp_seg(C6, S6, 40015, 4015, data[:1500])
frags6(c, C6, S6, u, 17, 0x79, [(0, 1000), (1000, len(u) - 1000)])
u = udp_seg(C6, S6, 40016, 4016, data[:2000])
frags6(c, C6, S6, u, 17, 0x7a, [(0, 1400), (1400, len(u) - 1400)])
