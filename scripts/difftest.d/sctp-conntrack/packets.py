# sctp_packet, sctp_chunk, sctp_init, sctp_data: scripts/pktlib.py
def sack(tsn):
    return sctp_chunk(3, 0, struct.pack("!IIHH", tsn, 65535, 0, 0))

def association(c, s, caddr, saddr, seen, sport, dport, ctag, stag, close=True, seen_port=None):
    seen_port = seen_port or sport
    sctp(c, caddr, saddr, sport, dport, 0, [sctp_init(1, ctag)])
    sctp(s, saddr, seen, dport, seen_port, ctag, [sctp_init(2, stag)])
    sctp(c, caddr, saddr, sport, dport, stag, [sctp_chunk(10, 0, b"cookie-cookie!")])
    sctp(s, saddr, seen, dport, seen_port, ctag, [sctp_chunk(11)])
    sctp(c, caddr, saddr, sport, dport, stag, [sctp_data(1)])
    sctp(s, saddr, seen, dport, seen_port, ctag, [sack(1), sctp_data(7, b"world")])
    sctp(c, caddr, saddr, sport, dport, stag, [sack(7)])
    # the wrong tag: invalid, dropped
    sctp(c, caddr, saddr, sport, dport, ctag, [sctp_data(2)])
    sctp(s, saddr, seen, dport, seen_port, stag, [sctp_data(8)])
    if close:
        sctp(c, caddr, saddr, sport, dport, stag, [sctp_chunk(7, 0, struct.pack("!I", 7))])
        sctp(s, saddr, seen, dport, seen_port, ctag, [sctp_chunk(8)])
        sctp(c, caddr, saddr, sport, dport, stag, [sctp_chunk(14)])

c = station("br-lan", "02:00:00:10:00:00")
s = station("wan", "02:00:00:00:02:fe")
association(c, s, "192.168.1.100", "198.18.5.5", "198.18.0.2", 5000, 6000, 0x11111111, 0x22222222)
# source NAT to one port: the CRC32c is recomputed for the new port, both ways
association(c, s, "192.168.1.100", "198.18.5.5", "198.18.0.2", 5001, 6000, 0x33333333, 0x44444444, close=False,
            seen_port=7777)
# half open: INIT answered by INIT ACK, no cookie yet
sctp(c, "192.168.1.100", "198.18.5.6", 5002, 6000, 0, [sctp_init(1, 0x55555555)])
sctp(s, "198.18.5.6", "198.18.0.2", 6000, 5002, 0x55555555, [sctp_init(2, 0x66666666)])
# an INIT with a tag, an ABORT out of the blue: invalid, nothing tracked
sctp(c, "192.168.1.100", "198.18.5.7", 5003, 6000, 9, [sctp_init(1, 0x77777777)])
sctp(c, "192.168.1.100", "198.18.5.7", 5004, 6000, 9, [sctp_chunk(6)])
# a bad CRC
sctp(c, "192.168.1.100", "198.18.5.7", 5005, 6000, 0, [sctp_init(1, 0x12345678)], crc_xor=1)
association(c, s, "2001:db8:1::100", "2001:db8:5::5", "2001:db8:1::100", 5006, 6000, 0x88888888, 0x99999999, close=False)
