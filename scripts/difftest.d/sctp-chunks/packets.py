def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF

def pad(c):
    return c + b"\0" * (-len(c) % 4)

def sctp(st, src, dst, sport, dport, chunks):
    p = struct.pack("!HHII", sport, dport, 7, 0) + b"".join(pad(c) for c in chunks)
    p = p[:8] + struct.pack("<I", crc32c(p)) + p[12:]
    st.ip(src, dst, 132, p)

def data(flags, stream, payload=b"hello"):
    return struct.pack("!BBHIHHI", 0, flags, 16 + len(payload), 1, stream, 0, 0) + payload

init = struct.pack("!BBHIIHHI", 1, 0, 20, 0xdeadbeef, 65535, 10, 10, 1)
init_ack = struct.pack("!BBHIIHHI", 2, 0, 20, 0xbeefdead, 65535, 10, 10, 1)
abort = struct.pack("!BBH", 6, 0, 4)

c = station("br-lan", "02:00:00:10:00:00")
s = station("wan", "02:00:00:00:02:fe")
sctp(c, "192.168.1.100", "198.18.5.5", 5000, 6000, [init])
sctp(c, "192.168.1.100", "198.18.5.5", 5000, 6000, [data(3, 1), init])
sctp(c, "192.168.1.100", "198.18.5.5", 5000, 6000, [data(3, 9)])
sctp(c, "192.168.1.100", "198.18.5.5", 5000, 6000, [data(3, 8)])
sctp(c, "192.168.1.100", "198.18.5.5", 5000, 6000, [data(2, 8)])
sctp(c, "192.168.1.100", "198.18.5.5", 5000, 7000, [abort])
sctp(c, "192.168.1.100", "198.18.5.5", 5000, 7001, [abort])
sctp(s, "198.18.5.5", "192.168.1.100", 6000, 5000, [init_ack])
sctp(c, "192.168.1.100", "198.18.5.5", 5000, 6000, [])
sctp(c, "2001:db8:1::100", "2001:db8:5::5", 5000, 6000, [init])
sctp(c, "2001:db8:1::100", "2001:db8:5::5", 5000, 6000, [data(1, 4)])
c.udp("192.168.1.100", "198.18.5.5", 5000, 6000, b"\x01\x00\x00\x14" * 4)
