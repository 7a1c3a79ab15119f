def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF

def pad(c):
    return c + b"\0" * (-len(c) % 4)

def sctp(st, src, dst, sport, dport, vtag, chunks, crc_xor=0):
    p = struct.pack("!HHII", sport, dport, vtag, 0) + b"".join(pad(c) for c in chunks)
    p = p[:8] + struct.pack("<I", crc32c(p) ^ crc_xor) + p[12:]
    st.ip(src, dst, 132, p)

def chunk(ty, flags=0, value=b""):
    return struct.pack("!BBH", ty, flags, 4 + len(value)) + value

def init(ty, tag):
    return chunk(ty, 0, struct.pack("!IIHHI", tag, 65535, 10, 10, 1))

def data(tsn, payload=b"hello"):
    return chunk(0, 3, struct.pack("!IHHI", tsn, 0, 0, 0) + payload)

def sack(tsn):
    return chunk(3, 0, struct.pack("!IIHH", tsn, 65535, 0, 0))

def association(c, s, caddr, saddr, seen, sport, dport, ctag, stag, close=True, seen_port=None):
    seen_port = seen_port or sport
    sctp(c, caddr, saddr, sport, dport, 0, [init(1, ctag)])
    sctp(s, saddr, seen, dport, seen_port, ctag, [init(2, stag)])
    sctp(c, caddr, saddr, sport, dport, stag, [chunk(10, 0, b"cookie-cookie!")])
    sctp(s, saddr, seen, dport, seen_port, ctag, [chunk(11)])
    sctp(c, caddr, saddr, sport, dport, stag, [data(1)])
    sctp(s, saddr, seen, dport, seen_port, ctag, [sack(1), data(7, b"world")])
    sctp(c, caddr, saddr, sport, dport, stag, [sack(7)])
    # the wrong tag: invalid, dropped
    sctp(c, caddr, saddr, sport, dport, ctag, [data(2)])
    sctp(s, saddr, seen, dport, seen_port, stag, [data(8)])
    if close:
        sctp(c, caddr, saddr, sport, dport, stag, [chunk(7, 0, struct.pack("!I", 7))])
        sctp(s, saddr, seen, dport, seen_port, ctag, [chunk(8)])
        sctp(c, caddr, saddr, sport, dport, stag, [chunk(14)])

c = station("br-lan", "02:00:00:10:00:00")
s = station("wan", "02:00:00:00:02:fe")
association(c, s, "192.168.1.100", "198.18.5.5", "198.18.0.2", 5000, 6000, 0x11111111, 0x22222222)
# source NAT to one port: the CRC32c is recomputed for the new port, both ways
association(c, s, "192.168.1.100", "198.18.5.5", "198.18.0.2", 5001, 6000, 0x33333333, 0x44444444, close=False,
            seen_port=7777)
# half open: INIT answered by INIT ACK, no cookie yet
sctp(c, "192.168.1.100", "198.18.5.6", 5002, 6000, 0, [init(1, 0x55555555)])
sctp(s, "198.18.5.6", "198.18.0.2", 6000, 5002, 0x55555555, [init(2, 0x66666666)])
# an INIT with a tag, an ABORT out of the blue: invalid, nothing tracked
sctp(c, "192.168.1.100", "198.18.5.7", 5003, 6000, 9, [init(1, 0x77777777)])
sctp(c, "192.168.1.100", "198.18.5.7", 5004, 6000, 9, [chunk(6)])
# a bad CRC
sctp(c, "192.168.1.100", "198.18.5.7", 5005, 6000, 0, [init(1, 0x12345678)], crc_xor=1)
association(c, s, "2001:db8:1::100", "2001:db8:5::5", "2001:db8:1::100", 5006, 6000, 0x88888888, 0x99999999, close=False)
