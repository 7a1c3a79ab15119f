# sctp, sctp_init, sctp_data, sctp_chunk: scripts/pktlib.py; verification tag 7 throughout
def data(flags, stream):
    return sctp_data(1, flags=flags, stream=stream)

init = sctp_init(1, 0xdeadbeef)
init_ack = sctp_init(2, 0xbeefdead)
abort = sctp_chunk(6)

c = station("br-lan", "02:00:00:10:00:00")
s = station("wan", "02:00:00:00:02:fe")
sctp(c, "192.168.1.100", "198.18.5.5", 5000, 6000, 7, [init])
sctp(c, "192.168.1.100", "198.18.5.5", 5000, 6000, 7, [data(3, 1), init])
sctp(c, "192.168.1.100", "198.18.5.5", 5000, 6000, 7, [data(3, 9)])
sctp(c, "192.168.1.100", "198.18.5.5", 5000, 6000, 7, [data(3, 8)])
sctp(c, "192.168.1.100", "198.18.5.5", 5000, 6000, 7, [data(2, 8)])
sctp(c, "192.168.1.100", "198.18.5.5", 5000, 7000, 7, [abort])
sctp(c, "192.168.1.100", "198.18.5.5", 5000, 7001, 7, [abort])
sctp(s, "198.18.5.5", "192.168.1.100", 6000, 5000, 7, [init_ack])
sctp(c, "192.168.1.100", "198.18.5.5", 5000, 6000, 7, [])
sctp(c, "2001:db8:1::100", "2001:db8:5::5", 5000, 6000, 7, [init])
sctp(c, "2001:db8:1::100", "2001:db8:5::5", 5000, 6000, 7, [data(1, 4)])
c.udp("192.168.1.100", "198.18.5.5", 5000, 6000, b"\x01\x00\x00\x14" * 4)
