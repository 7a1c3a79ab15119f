//! `synproxy`: the router answers a TCP handshake with a SYN cookie before the server sees
//! it, as the kernel's `nft_synproxy` and `nf_synproxy_core` do for a forwarded connection.
//!
//! 1. The client's SYN: answered with a SYN-ACK whose sequence number is a SYN cookie (the
//!    kernel's layout: hashes of the addresses and ports, a minute counter in the top 8 bits,
//!    the MSS index in the low bits); with `timestamp`, the timestamp value carries the
//!    client's window scale and SACK permission. The SYN goes no further.
//! 2. The client's ACK: the cookie is checked; if good, the router sends the server a SYN with
//!    the client's options (taken from the cookie), and answers the server's SYN-ACK itself
//!    (an ACK to the server, a window update to the client).
//! 3. After that, sequence numbers (and timestamps) differ between the two sides: every
//!    packet of the connection is adjusted (`nf_conntrack_seqadj`).
//!
//! Packet building and the cookie live here; the router carries the packets.

use nft_conntrack::Synproxy;
use nft_wire::checksum;
use nft_wire::tcp::{TcpOption, TcpOptions};
use std::net::IpAddr;

/// `NF_SYNPROXY_OPT_*`.
pub const OPT_MSS: u8 = 0x01;
pub const OPT_WSCALE: u8 = 0x02;
pub const OPT_SACK_PERM: u8 = 0x04;
pub const OPT_TIMESTAMP: u8 = 0x08;
pub const OPT_ECN: u8 = 0x10;

/// The MSS values a cookie can say (`msstab` in `syncookies.c`).
pub const MSSTAB: [u16; 4] = [536, 1300, 1440, 1460];
/// `COOKIEBITS`: the low bits of the cookie; the minute counter is above.
const COOKIEBITS: u32 = 24;
const COOKIEMASK: u32 = (1 << COOKIEBITS) - 1;
/// `MAX_SYNCOOKIE_AGE`: a cookie is good for the minute it was made and the next.
const MAX_AGE: u32 = 2;
/// `TCP_MAX_WSCALE`.
const MAX_WSCALE: u8 = 14;
/// `sysctl net.ipv4.ip_default_ttl`.
const TTL: u8 = 64;

/// What a `synproxy` statement or object asks: the MSS and window scale the router's SYN-ACK
/// announces, and which options it keeps (`NF_SYNPROXY_OPT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SynproxySpec {
    pub mss: u16,
    pub wscale: u8,
    pub options: u8,
}

impl SynproxySpec {
    /// From the statement's words (`mss`, `wscale`, `timestamp`, `sack-perm`), as nft sets
    /// the flags (`NFTA_SYNPROXY_FLAGS`).
    pub fn new(mss: Option<u32>, wscale: Option<u32>, flags: &[String]) -> SynproxySpec {
        let mut options = 0;
        if mss.is_some() {
            options |= OPT_MSS;
        }
        if wscale.is_some() {
            options |= OPT_WSCALE;
        }
        for f in flags {
            match f.as_str() {
                "timestamp" => options |= OPT_TIMESTAMP,
                "sack-perm" => options |= OPT_SACK_PERM,
                _ => {}
            }
        }
        SynproxySpec {
            mss: mss.unwrap_or(0).min(u16::MAX as u32) as u16,
            wscale: wscale.unwrap_or(0).min(MAX_WSCALE as u32) as u8,
            options,
        }
    }
}

/// TCP options as synproxy reads and writes them (`struct synproxy_options`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpOpts {
    pub options: u8,
    pub mss: u16,
    pub wscale: u8,
    pub tsval: u32,
    pub tsecr: u32,
}

/// `synproxy_parse_options`: the options of the TCP header `th` (from its first byte). None
/// when the header is cut short; a length below 2 or past the header ends the parse, and a
/// known option of the wrong size is stepped over, as in the kernel.
pub fn parse_options(th: &[u8]) -> Option<TcpOpts> {
    let doff = (*th.get(12)? >> 4) as usize * 4;
    let opts = th.get(20..doff.max(20))?;
    let mut o = TcpOpts::default();
    for opt in TcpOptions::new(opts) {
        match opt {
            Ok(TcpOption::MaxSegmentSize(mss)) => {
                o.mss = mss;
                o.options |= OPT_MSS;
            }
            Ok(TcpOption::WindowScale(w)) => {
                o.wscale = w.min(MAX_WSCALE);
                o.options |= OPT_WSCALE;
            }
            Ok(TcpOption::Timestamps { tsval, tsecr }) => {
                o.tsval = tsval;
                o.tsecr = tsecr;
                o.options |= OPT_TIMESTAMP;
            }
            Ok(TcpOption::SackPermitted) => o.options |= OPT_SACK_PERM,
            Ok(TcpOption::EndOfList) | Err(_) => break,
            Ok(_) => {}
        }
    }
    Some(o)
}

/// `synproxy_build_options`, in the kernel's order and padding.
pub fn build_options(o: &TcpOpts) -> Vec<u8> {
    let mut v = Vec::with_capacity(20);
    if o.options & OPT_MSS != 0 {
        v.extend_from_slice(&[2, 4]);
        v.extend_from_slice(&o.mss.to_be_bytes());
    }
    if o.options & OPT_TIMESTAMP != 0 {
        if o.options & OPT_SACK_PERM != 0 {
            v.extend_from_slice(&[4, 2, 8, 10]);
        } else {
            v.extend_from_slice(&[1, 1, 8, 10]);
        }
        v.extend_from_slice(&o.tsval.to_be_bytes());
        v.extend_from_slice(&o.tsecr.to_be_bytes());
    } else if o.options & OPT_SACK_PERM != 0 {
        v.extend_from_slice(&[1, 1, 4, 2]);
    }
    if o.options & OPT_WSCALE != 0 {
        v.extend_from_slice(&[1, 3, 3, o.wscale]);
    }
    v
}

/// The SYN cookie secret: two SipHash keys (the kernel's `syncookie_secret`). Cookies made
/// with one key validate only with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieKey(pub [u64; 4]);

impl Default for CookieKey {
    fn default() -> CookieKey {
        CookieKey([
            0x736f_6d65_7073_6575,
            0x646f_7261_6e64_6f6d,
            0x6c79_6765_6e65_7261,
            0x7465_6462_7974_6573,
        ])
    }
}

/// SipHash-2-4 of `data` with key `(k0, k1)`. Hand-rolled: the workspace has no keyed
/// hash crate, and this is the only use (a few lines, and the cookie needs a keyed PRF).
fn siphash(k0: u64, k1: u64, data: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let m = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        v[3] ^= m;
        round(&mut v);
        round(&mut v);
        v[0] ^= m;
    }
    let rest = chunks.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    last[7] = data.len() as u8;
    let m = u64::from_le_bytes(last);
    v[3] ^= m;
    round(&mut v);
    round(&mut v);
    v[0] ^= m;
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// The four values a cookie is bound to: the client's address and port, the server's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub saddr: IpAddr,
    pub daddr: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

impl CookieKey {
    /// `cookie_hash(saddr, daddr, sport, dport, count, c)`.
    fn hash(&self, e: &Endpoints, count: u32, c: usize) -> u32 {
        let mut b = [0u8; 44];
        let mut n = 0;
        for a in [e.saddr, e.daddr] {
            match a {
                IpAddr::V4(x) => {
                    b[n..n + 4].copy_from_slice(&x.octets());
                    n += 4;
                }
                IpAddr::V6(x) => {
                    b[n..n + 16].copy_from_slice(&x.octets());
                    n += 16;
                }
            }
        }
        b[n..n + 2].copy_from_slice(&e.sport.to_be_bytes());
        b[n + 2..n + 4].copy_from_slice(&e.dport.to_be_bytes());
        b[n + 4..n + 8].copy_from_slice(&count.to_be_bytes());
        n += 8;
        let k = &self.0[2 * (c & 1)..2 * (c & 1) + 2];
        siphash(k[0], k[1], &b[..n]) as u32
    }

    /// `secure_tcp_syn_cookie` via `__cookie_v4_init_sequence`: the cookie for a SYN with
    /// sequence `sseq` and MSS `mss` (0: none) at minute `count`, and the MSS it encodes.
    pub fn make(&self, e: &Endpoints, sseq: u32, mss: u16, count: u32) -> (u32, u16) {
        let idx = (1..MSSTAB.len())
            .rev()
            .find(|&i| mss >= MSSTAB[i])
            .unwrap_or(0);
        let cookie = self
            .hash(e, 0, 0)
            .wrapping_add(sseq)
            .wrapping_add(count << COOKIEBITS)
            .wrapping_add(self.hash(e, count, 1).wrapping_add(idx as u32) & COOKIEMASK);
        (cookie, MSSTAB[idx])
    }

    /// `check_tcp_syn_cookie`: the MSS a cookie encodes, if it is this key's, for this SYN
    /// sequence and not older than two minutes.
    pub fn check(&self, e: &Endpoints, sseq: u32, cookie: u32, count: u32) -> Option<u16> {
        let c = cookie.wrapping_sub(self.hash(e, 0, 0).wrapping_add(sseq));
        let diff = count.wrapping_sub(c >> COOKIEBITS) & (u32::MAX >> COOKIEBITS);
        if diff >= MAX_AGE {
            return None;
        }
        let idx = c.wrapping_sub(self.hash(e, count.wrapping_sub(diff), 1)) & COOKIEMASK;
        MSSTAB.get(idx as usize).copied()
    }
}

/// The minute counter of cookies (`tcp_cookie_time`), from the packet time in nanoseconds.
pub fn cookie_time(now_ns: u64) -> u32 {
    (now_ns / 60_000_000_000) as u32
}

/// `tcp_clock_ms`: the router's timestamp clock.
pub fn clock_ms(now_ns: u64) -> u32 {
    (now_ns / 1_000_000) as u32
}

/// A TCP segment inside an IP packet (`l3` from the IP header to the end).
#[derive(Clone, Copy, Debug)]
pub struct Seg {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Where the TCP header starts in `l3`.
    pub th: usize,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
}

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;
pub const ECE: u8 = 0x40;
pub const CWR: u8 = 0x80;

impl Seg {
    /// The segment of `l3` whose TCP header is at `th`; None when cut short.
    pub fn parse(l3: &[u8], th: usize) -> Option<Seg> {
        let (src, dst) = match l3.first()? >> 4 {
            4 => {
                let a: [u8; 4] = l3.get(12..16)?.try_into().ok()?;
                let b: [u8; 4] = l3.get(16..20)?.try_into().ok()?;
                (IpAddr::from(a), IpAddr::from(b))
            }
            6 => {
                let a: [u8; 16] = l3.get(8..24)?.try_into().ok()?;
                let b: [u8; 16] = l3.get(24..40)?.try_into().ok()?;
                (IpAddr::from(a), IpAddr::from(b))
            }
            _ => return None,
        };
        let t = l3.get(th..th + 20)?;
        let be32 = |i: usize| u32::from_be_bytes([t[i], t[i + 1], t[i + 2], t[i + 3]]);
        Some(Seg {
            src,
            dst,
            th,
            sport: u16::from_be_bytes([t[0], t[1]]),
            dport: u16::from_be_bytes([t[2], t[3]]),
            seq: be32(4),
            ack: be32(8),
            flags: t[13],
            window: u16::from_be_bytes([t[14], t[15]]),
        })
    }

    pub fn endpoints(&self) -> Endpoints {
        Endpoints {
            saddr: self.src,
            daddr: self.dst,
            sport: self.sport,
            dport: self.dport,
        }
    }
}

/// A TCP packet the router makes (`synproxy_build_ip` and the TCP header of
/// `synproxy_send_*`): DF, TTL 64, ID 0 for IPv4; checksums filled.
#[allow(clippy::too_many_arguments)]
pub fn build(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    opts: &TcpOpts,
) -> Option<Vec<u8>> {
    let o = build_options(opts);
    let tcp_len = 20 + o.len();
    let mut p = Vec::with_capacity(40 + tcp_len);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let len = (20 + tcp_len) as u16;
            p.extend_from_slice(&[0x45, 0]);
            p.extend_from_slice(&len.to_be_bytes());
            p.extend_from_slice(&[0, 0, 0x40, 0, TTL, 6, 0, 0]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            let c = checksum::checksum(&p[..20]);
            p[10..12].copy_from_slice(&c.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&[0x60, 0, 0, 0]);
            p.extend_from_slice(&(tcp_len as u16).to_be_bytes());
            p.extend_from_slice(&[6, TTL]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
        }
        _ => return None,
    }
    let th = p.len();
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ack.to_be_bytes());
    p.push(((tcp_len / 4) as u8) << 4);
    p.push(flags);
    p.extend_from_slice(&window.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]);
    p.extend_from_slice(&o);
    let ph = checksum::pseudo_header(&src, &dst, nft_wire::IpProtocol::Tcp, tcp_len as u32);
    let c = !checksum::combine(&[ph, checksum::sum(&p[th..])]);
    p[th + 16..th + 18].copy_from_slice(&c.to_be_bytes());
    Some(p)
}

/// Step 1 (`nft_synproxy_tcp_options` + `synproxy_send_client_synack`): the SYN-ACK that
/// answers the client's SYN `syn` (with options `o`), at `now_ns`.
pub fn client_synack(
    key: &CookieKey,
    spec: &SynproxySpec,
    syn: &Seg,
    mut o: TcpOpts,
    now_ns: u64,
) -> Option<Vec<u8>> {
    if syn.flags & (ECE | CWR) == ECE | CWR {
        o.options |= OPT_ECN;
    }
    o.options &= spec.options;
    let mss_encode = o.mss;
    o.mss = spec.mss;
    if o.options & OPT_TIMESTAMP != 0 {
        // synproxy_init_timestamp_cookie
        o.tsecr = o.tsval;
        o.tsval = clock_ms(now_ns) & !0x3f;
        if o.options & OPT_WSCALE != 0 {
            o.tsval |= o.wscale as u32;
            o.wscale = spec.wscale;
        } else {
            o.tsval |= 0xf;
        }
        if o.options & OPT_SACK_PERM != 0 {
            o.tsval |= 1 << 4;
        }
        if o.options & OPT_ECN != 0 {
            o.tsval |= 1 << 5;
        }
    } else {
        o.options &= !(OPT_WSCALE | OPT_SACK_PERM | OPT_ECN);
    }
    let (cookie, _) = key.make(&syn.endpoints(), syn.seq, mss_encode, cookie_time(now_ns));
    let mut flags = SYN | ACK;
    if o.options & OPT_ECN != 0 {
        flags |= ECE;
    }
    build(
        syn.dst,
        syn.src,
        syn.dport,
        syn.sport,
        cookie,
        syn.seq.wrapping_add(1),
        flags,
        0,
        &o,
    )
}

/// What a good cookie gave: the options for the server's SYN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub opts: TcpOpts,
    /// The cookie (the sequence number the client saw from the router).
    pub isn: u32,
}

/// Step 2 (`synproxy_recv_client_ack`): the client's ACK checked against its cookie; with
/// `timestamp`, the client's window scale and SACK permission come back from the echo.
/// `recv_seq` is the ACK's sequence number (the SYN's plus one).
pub fn check_client_ack(
    key: &CookieKey,
    ack: &Seg,
    mut o: TcpOpts,
    recv_seq: u32,
    now_ns: u64,
) -> Option<Accepted> {
    let isn = ack.ack.wrapping_sub(1);
    let mss = key.check(
        &ack.endpoints(),
        recv_seq.wrapping_sub(1),
        isn,
        cookie_time(now_ns),
    )?;
    o.mss = mss;
    o.options |= OPT_MSS;
    if o.options & OPT_TIMESTAMP != 0 {
        // synproxy_check_timestamp_cookie
        o.wscale = (o.tsecr & 0xf) as u8;
        if o.wscale != 0xf {
            o.options |= OPT_WSCALE;
        }
        if o.tsecr & (1 << 4) != 0 {
            o.options |= OPT_SACK_PERM;
        }
        if o.tsecr & (1 << 5) != 0 {
            o.options |= OPT_ECN;
        }
    }
    Some(Accepted { opts: o, isn })
}

/// `synproxy_send_server_syn`: the SYN the router sends the server for the client, from
/// the client's ACK; its acknowledgement field relays the cookie.
pub fn server_syn(ack: &Seg, a: &Accepted, recv_seq: u32) -> Option<Vec<u8>> {
    let mut flags = SYN;
    if a.opts.options & OPT_ECN != 0 {
        flags |= ECE | CWR;
    }
    build(
        ack.src,
        ack.dst,
        ack.sport,
        ack.dport,
        recv_seq.wrapping_sub(1),
        ack.ack.wrapping_sub(1),
        flags,
        ack.window,
        &a.opts,
    )
}

/// The server's SYN-ACK `sa` (options `o`) answered: the ACK to the server
/// (`synproxy_send_server_ack`) and the window update to the client
/// (`synproxy_send_client_ack`, before its sequence adjustment), and the connection's new
/// synproxy state. `client_window` is the largest window the client announced.
pub fn answer_server(
    sp: &Synproxy,
    sa: &Seg,
    o: TcpOpts,
    client_window: u16,
) -> Option<(Vec<u8>, Vec<u8>, Synproxy)> {
    let mut st = *sp;
    let mut o = o;
    if o.options & OPT_TIMESTAMP != 0 {
        st.tsoff = o.tsval.wrapping_sub(st.its);
    }
    o.options &= !(OPT_MSS | OPT_WSCALE | OPT_SACK_PERM);
    let shift = o.wscale;
    let mut to_server = o;
    std::mem::swap(&mut to_server.tsval, &mut to_server.tsecr);
    // As in the kernel: this ACK passes the synproxy hook after the timestamp offset is set
    // and before the sequence adjustment is, so its echo (the server's own value) is moved
    // by the offset too.
    to_server.tsecr = to_server.tsecr.wrapping_add(st.tsoff);
    let server_ack = build(
        sa.dst,
        sa.src,
        sa.dport,
        sa.sport,
        sa.ack,
        sa.seq.wrapping_add(1),
        ACK,
        client_window,
        &to_server,
    )?;
    let client_ack = build(
        sa.src,
        sa.dst,
        sa.sport,
        sa.dport,
        sa.seq.wrapping_add(1),
        sa.ack,
        ACK,
        sa.window >> shift.min(15),
        &o,
    )?;
    st.seq_off = st.isn.wrapping_sub(sa.seq);
    st.established = true;
    Some((server_ack, client_ack, st))
}

/// `nf_ct_seq_adjust` and `synproxy_tstamp_adjust` on the TCP segment at `th` of `l3`: in the
/// reply direction (server to client) the sequence number moves by the offset and the
/// timestamp value by the timestamp offset; in the original direction the acknowledgement
/// and the echoed timestamp move back. Checksum patched incrementally (RFC 1624), by where
/// each field lies: a timestamp after an option of odd length (a window scale or a
/// wrong-sized option with no NOP after it) starts at an odd offset, where its bytes fall
/// across the checksum's 16-bit words, and its change counts byte-swapped. The kernel's
/// `inet_proto_csum_replace4` there counts it as if aligned, and the segment leaves with a
/// wrong checksum that its receiver drops; that is a kernel bug, not copied here (as for
/// synproxy's IPv6 checksum check). The difftest cannot show either: a synproxied
/// connection needs the kernel's cookie in the client's ACK, and its frames are made in
/// advance.
pub fn adjust(l3: &mut [u8], th: usize, sp: &Synproxy, reply: bool) -> Option<()> {
    let doff = (*l3.get(th + 12)? >> 4) as usize * 4;
    if l3.len() < th + doff.max(20) {
        return None;
    }
    let mut csum = u16::from_be_bytes([l3[th + 16], l3[th + 17]]);
    let patch = |l3: &mut [u8], at: usize, f: &dyn Fn(u32) -> u32, csum: &mut u16| {
        let old = u32::from_be_bytes([l3[at], l3[at + 1], l3[at + 2], l3[at + 3]]);
        let new = f(old);
        if new != old {
            l3[at..at + 4].copy_from_slice(&new.to_be_bytes());
            // at an odd offset, bytes b0 b1 b2 b3 sum as the words b3b0 and b1b2
            let word = |v: u32| {
                let b = v.to_be_bytes();
                if (at - th) % 2 == 1 {
                    u32::from_be_bytes([b[3], b[0], b[1], b[2]])
                } else {
                    v
                }
            };
            *csum = checksum::update32(*csum, word(old), word(new));
        }
    };
    let flags = l3[th + 13];
    if reply {
        patch(l3, th + 4, &|s| s.wrapping_add(sp.seq_off), &mut csum);
    } else if flags & ACK != 0 {
        patch(l3, th + 8, &|a| a.wrapping_sub(sp.seq_off), &mut csum);
    }
    let sack_adjust = !reply && flags & ACK != 0 && sp.seq_off != 0;
    if sp.tsoff != 0 || sack_adjust {
        // where the timestamps and SACK blocks lie, from a copy of the options (at most 40
        // bytes), then patched in place
        let mut copy = [0u8; 40];
        let region = &l3[th + 20..th + doff.max(20)];
        let n = region.len().min(40);
        copy[..n].copy_from_slice(&region[..n]);
        let mut at = th + 20;
        for opt in TcpOptions::new(&copy[..n]) {
            let Ok(opt) = opt else { break };
            match opt {
                TcpOption::EndOfList => break,
                TcpOption::Timestamps { .. } if sp.tsoff != 0 => {
                    if reply {
                        patch(l3, at + 2, &|v| v.wrapping_sub(sp.tsoff), &mut csum);
                    } else {
                        patch(l3, at + 6, &|v| v.wrapping_add(sp.tsoff), &mut csum);
                    }
                }
                // nf_ct_sack_adjust: the client's SACK blocks name the server's data
                TcpOption::Sack(blocks) if sack_adjust => {
                    for b in (0..blocks.len() / 8).map(|k| at + 2 + 8 * k) {
                        patch(l3, b, &|v| v.wrapping_sub(sp.seq_off), &mut csum);
                        patch(l3, b + 4, &|v| v.wrapping_sub(sp.seq_off), &mut csum);
                    }
                }
                _ => {}
            }
            at += opt.wire_len();
        }
    }
    l3[th + 16..th + 18].copy_from_slice(&csum.to_be_bytes());
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> Endpoints {
        Endpoints {
            saddr: IpAddr::from([192, 168, 1, 10]),
            daddr: IpAddr::from([203, 0, 113, 5]),
            sport: 40000,
            dport: 80,
        }
    }

    #[test]
    fn siphash_matches_the_reference_vector() {
        // SipHash-2-4 paper, appendix A: key 00..0f, message 00..0e
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let m: Vec<u8> = (0..15).collect();
        assert_eq!(siphash(k0, k1, &m), 0xa129ca6149be45e5);
    }

    #[test]
    fn cookie_round_trips_its_mss_for_two_minutes_only() {
        let k = CookieKey::default();
        for (mss, want) in [
            (0, 536),
            (1299, 536),
            (1300, 1300),
            (1459, 1440),
            (9000, 1460),
        ] {
            let (c, m) = k.make(&ep(), 1000, mss, 77);
            assert_eq!(m, want);
            assert_eq!(k.check(&ep(), 1000, c, 77), Some(want));
            assert_eq!(k.check(&ep(), 1000, c, 78), Some(want));
            assert_eq!(k.check(&ep(), 1000, c, 79), None);
            assert_eq!(k.check(&ep(), 1000 + 0x1_0000, c, 77), None);
            assert_eq!(k.check(&ep(), 1000, c.wrapping_add(1 << 8), 77), None);
            let other = CookieKey([1, 2, 3, 4]);
            assert_eq!(other.check(&ep(), 1000, c, 77), None);
        }
    }

    /// A segment with a TCP header of `opts` (padded with end-of-list), checksum filled.
    fn segment(opts: &[u8]) -> Vec<u8> {
        let mut l3 = vec![0u8; 40];
        l3[0] = 0x45;
        l3[12..16].copy_from_slice(&[192, 168, 1, 10]);
        l3[16..20].copy_from_slice(&[203, 0, 113, 5]);
        l3[20..22].copy_from_slice(&40000u16.to_be_bytes());
        l3[22..24].copy_from_slice(&80u16.to_be_bytes());
        l3[24..28].copy_from_slice(&1000u32.to_be_bytes());
        l3[28..32].copy_from_slice(&2000u32.to_be_bytes());
        l3.extend_from_slice(opts);
        l3.resize(l3.len().next_multiple_of(4), 0);
        l3[32] = (((l3.len() - 20) / 4) as u8) << 4;
        l3[33] = ACK;
        let (s, d) = (
            IpAddr::from([192, 168, 1, 10]),
            IpAddr::from([203, 0, 113, 5]),
        );
        nft_wire::tcp::TcpPacket::new_unchecked(&mut l3[20..]).fill_checksum(&s, &d);
        l3
    }

    fn tcp_checksum_ok(l3: &[u8]) -> bool {
        let (s, d) = (
            IpAddr::from([192, 168, 1, 10]),
            IpAddr::from([203, 0, 113, 5]),
        );
        nft_wire::tcp::TcpPacket::new_unchecked(&l3[20..]).verify_checksum(&s, &d)
    }

    /// The kernel's option walks (`synproxy_parse_options`, `synproxy_tstamp_adjust`) step
    /// over a known option of the wrong size: an MSS of length 3 and a SACK of length 12
    /// before the timestamp leave it read and moved (a NOP keeps the timestamp 16-bit
    /// aligned, where the incremental checksum update holds).
    #[test]
    fn wrong_sized_options_are_stepped_over() {
        let ts = [8u8, 10, 0, 0, 0x10, 0, 0, 0, 0x20, 0];
        let opts: Vec<u8> = [
            &[2u8, 3, 5, 1][..],
            &[5, 12, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0],
            &ts,
        ]
        .concat();
        let mut l3 = segment(&opts);
        assert!(tcp_checksum_ok(&l3));
        let o = parse_options(&l3[20..]).unwrap();
        assert_eq!(o.options, OPT_TIMESTAMP);
        assert_eq!((o.tsval, o.tsecr), (0x1000, 0x2000));

        let sp = Synproxy {
            tsoff: 0x100,
            seq_off: 10,
            ..Default::default()
        };
        // the client's segment: the echo moves up by tsoff, the ack back by seq_off; the
        // wrong-sized SACK is not a SACK and keeps its edges
        adjust(&mut l3, 20, &sp, false).unwrap();
        let at = 20 + 20 + 4 + 12;
        assert_eq!(&l3[at..at + 2], &[8, 10]);
        assert_eq!(&l3[at + 2..at + 6], &0x1000u32.to_be_bytes(), "TSval kept");
        assert_eq!(
            &l3[at + 6..at + 10],
            &0x2100u32.to_be_bytes(),
            "TSecr + tsoff"
        );
        assert_eq!(&l3[28..32], &1990u32.to_be_bytes());
        assert_eq!(&l3[44..56], &opts[4..16], "not a SACK: left alone");
        assert!(tcp_checksum_ok(&l3));
        // the server's segment: its value moves down by tsoff
        let mut l3 = segment(&opts);
        adjust(&mut l3, 20, &sp, true).unwrap();
        assert_eq!(
            &l3[at + 2..at + 6],
            &0x0f00u32.to_be_bytes(),
            "TSval - tsoff"
        );
        assert_eq!(&l3[at + 6..at + 10], &0x2000u32.to_be_bytes(), "TSecr kept");
        assert!(tcp_checksum_ok(&l3));
    }

    /// A timestamp at an odd offset (after an MSS of length 3 with no NOP): moved, and the
    /// checksum patched by where its bytes lie, so the segment still sums right (the
    /// kernel's aligned-only update would leave it wrong).
    #[test]
    fn a_timestamp_at_an_odd_offset_keeps_the_checksum_right() {
        let opts: Vec<u8> = [
            &[2u8, 3, 5][..],
            &[8, 10, 0, 0, 0x10, 0x01, 0, 0, 0x20, 0x02],
        ]
        .concat();
        let sp = Synproxy {
            tsoff: 0x0102_0304,
            seq_off: 10,
            ..Default::default()
        };
        let at = 20 + 20 + 3;
        for reply in [false, true] {
            let mut l3 = segment(&opts);
            assert!(tcp_checksum_ok(&l3));
            adjust(&mut l3, 20, &sp, reply).unwrap();
            let (tsval, tsecr) = if reply {
                (0x1001u32.wrapping_sub(0x0102_0304), 0x2002u32)
            } else {
                (0x1001, 0x2002 + 0x0102_0304)
            };
            assert_eq!(&l3[at..at + 2], &[8, 10]);
            assert_eq!(&l3[at + 2..at + 6], &tsval.to_be_bytes());
            assert_eq!(&l3[at + 6..at + 10], &tsecr.to_be_bytes());
            assert!(tcp_checksum_ok(&l3), "reply {reply}");
        }
    }

    #[test]
    fn options_build_and_parse_back() {
        let o = TcpOpts {
            options: OPT_MSS | OPT_WSCALE | OPT_SACK_PERM | OPT_TIMESTAMP,
            mss: 1460,
            wscale: 7,
            tsval: 0x11223344,
            tsecr: 0x55667788,
        };
        let b = build_options(&o);
        assert_eq!(
            b,
            [
                2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 1,
                3, 3, 7
            ]
        );
        let mut th = vec![0u8; 20];
        th[12] = (((20 + b.len()) / 4) as u8) << 4;
        th.extend_from_slice(&b);
        assert_eq!(parse_options(&th), Some(o));
    }
}
