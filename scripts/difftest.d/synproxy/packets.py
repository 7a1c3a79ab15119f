c = station("br-lan", "02:00:00:10:00:00")
s = station("wan", "02:00:00:00:02:fe")

def syn_opts(mss=1460, ws=7, ts=(12345, 0), sack=True):
    o = struct.pack("!BBH", 2, 4, mss)
    if sack:
        o += bytes([4, 2])
    if ts:
        o += struct.pack("!BBII", 8, 10, ts[0], ts[1])
    else:
        o += bytes([1, 1])
    o += bytes([1, 3, 3, ws])
    return o + b"\0" * (-len(o) % 4)

def tcp_raw(st, src, dst, sport, dport, flags, seq, ack, opts=b"", payload=b"", win=64240):
    fl = sum(b for ch, b in zip("FSRPAUEC", (1, 2, 4, 8, 16, 32, 64, 128)) if ch in flags)
    hl = (20 + len(opts)) // 4
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, hl << 4, fl, win, 0, 0) + opts + payload
    ck = l4_csum(src, dst, 6, seg)
    st.ip(src, dst, 6, seg[:16] + struct.pack("!H", ck) + seg[18:])

C, S = "192.168.1.100", "198.18.5.5"
# a SYN with every option: the SYN-ACK echoes the timestamp, sets MSS 1460, wscale 7, SACK
tcp_raw(c, C, S, 40000, 80, "S", 1000, 0, syn_opts())
# the same SYN again (a retransmission): answered again
tcp_raw(c, C, S, 40000, 80, "S", 1000, 0, syn_opts())
# the named object (mss 1400, wscale 3, no timestamps) through the map
tcp_raw(c, C, S, 40001, 443, "S", 2000, 0, syn_opts(ws=2))
# a SYN without options, one without timestamps
tcp_raw(c, C, S, 40002, 80, "S", 3000, 0)
tcp_raw(c, C, S, 40003, 80, "S", 4000, 0, syn_opts(mss=536, ws=0, ts=None, sack=False))
# an ACK with a wrong cookie: dropped
tcp_raw(c, C, S, 40000, 80, "A", 1001, 0xdeadbeef)
# other segments of no connection: not the router's (the policy drops them)
tcp_raw(c, C, S, 40004, 80, "PA", 5000, 1, payload=b"data")
tcp_raw(c, C, S, 40005, 80, "F", 5000, 1)
# (IPv6 is left out: this kernel sends no SYN-ACK for an IPv6 SYN here, where ours does;
# not yet understood)
# a port without synproxy: forwarded as it is
tcp_raw(c, C, S, 40007, 22, "S", 7000, 0, syn_opts())
