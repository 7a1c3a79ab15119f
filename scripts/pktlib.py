"""Packet building shared by scripts/difftest (its scenarios get these names in scope) and the
live tests' helper scripts (crates/cli/tests/live): checksums, SCTP packets, IPv4 and IPv6
fragments. Plain bytes, no scapy.
"""
import ipaddress
import struct


def csum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def crc32c(data):
    """SCTP's checksum (RFC 9260 appendix A), bitwise: the packets checked or built are few."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------
# SCTP

def sctp_pad(chunk):
    """A chunk padded to four bytes, as it stands in a packet."""
    return chunk + b"\0" * (-len(chunk) % 4)


def sctp_packet(sport, dport, vtag, chunks, crc_xor=0):
    """The common header and `chunks` (padded), CRC32c filled in (xor `crc_xor`: a bad one)."""
    p = struct.pack("!HHII", sport, dport, vtag, 0) + b"".join(sctp_pad(c) for c in chunks)
    return p[:8] + struct.pack("<I", crc32c(p) ^ crc_xor) + p[12:]


def sctp_crc_ok(p):
    """Whether the SCTP packet `p` (common header on) carries its right CRC32c."""
    z = p[:8] + b"\0\0\0\0" + p[12:]
    return struct.unpack("<I", p[8:12])[0] == crc32c(z)


def sctp_chunk(ty, flags=0, value=b""):
    return struct.pack("!BBH", ty, flags, 4 + len(value)) + value


def sctp_init(ty, tag, a_rwnd=65535):
    """An INIT (type 1) or INIT ACK (type 2) with initiate tag `tag`, 10 streams each way, TSN 1."""
    return sctp_chunk(ty, 0, struct.pack("!IIHHI", tag, a_rwnd, 10, 10, 1))


def sctp_data(tsn, payload=b"hello", flags=3, stream=0):
    """A DATA chunk (flags 3: beginning and end of a message)."""
    return sctp_chunk(0, flags, struct.pack("!IHHI", tsn, stream, 0, 0) + payload)


def sctp(st, src, dst, sport, dport, vtag, chunks, crc_xor=0):
    """Station `st` sends an SCTP packet (see sctp_packet)."""
    st.ip(src, dst, 132, sctp_packet(sport, dport, vtag, chunks, crc_xor))


# ---------------------------------------------------------------------------------------------
# fragments

def frags4(st, src, dst, l4, proto, ident, pieces, order=None, ttl=64, df=False, opts=b"", copied=None):
    """Station `st` sends the IPv4 datagram with payload `l4` as fragments [(offset, length)]
    (bytes), in `order` (indexes into pieces) if given. `df`: one for all or a list, one per
    fragment. `opts`: the first fragment's IP options; later ones carry `copied` (the options
    with the copied flag, RFC 791), `opts` if None."""
    dfs = df if isinstance(df, list) else [df] * len(pieces)
    out = []
    for (off, ln), d in zip(pieces, dfs):
        mf = 0x2000 if off + ln < len(l4) else 0
        body = l4[off:off + ln]
        o = opts if off == 0 or copied is None else copied
        h = struct.pack("!BBHHHBBH4s4s", 0x40 | (5 + len(o) // 4), 0, 20 + len(o) + len(body), ident,
                        (0x4000 if d else 0) | mf | (off // 8), ttl, proto, 0,
                        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed) + o
        h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
        out.append(h + body)
    for n in (order or range(len(out))):
        st.frame(0x0800, out[n])


def frags6(st, src, dst, l4, proto, ident, pieces, order=None, hlim=64):
    """The same for IPv6: a fragment header each, identification `ident`."""
    out = []
    for off, ln in pieces:
        m = 1 if off + ln < len(l4) else 0
        body = struct.pack("!BBHI", proto, 0, off | m, ident) + l4[off:off + ln]
        h = struct.pack("!IHBB16s16s", 6 << 28, len(body), 44, hlim, ipaddress.IPv6Address(src).packed,
                        ipaddress.IPv6Address(dst).packed)
        out.append(h + body)
    for n in (order or range(len(out))):
        st.frame(0x86DD, out[n])
