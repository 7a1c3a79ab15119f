//! Matches that walk a header of their own: SCTP chunks (`nft_exthdr_sctp_eval`), DCCP options
//! (`nft_exthdr_dccp_eval`), headers inside VXLAN, Geneve, GRE and gretap tunnels
//! (`nft_inner`), and passive OS fingerprinting (`nft_osf`).
//!
//! Each takes the frame and the offsets the rules already know, and reads nothing past `end`,
//! the end of the IP packet (Ethernet padding is not packet data, as for the kernel's skb). A
//! read that would leave the packet gives `None`, as `skb_header_pointer` does.

use crate::hdr;

/// Bytes `at..at + n` of the packet, if it has them.
fn get(data: &[u8], end: usize, at: usize, n: usize) -> Option<&[u8]> {
    let stop = at.checked_add(n)?;
    if stop > end {
        return None;
    }
    data.get(at..stop)
}

/// `sctp chunk TYPE [FIELD]`: the first chunk of that type after the common header. With
/// `present`, 1 or 0 (never a failed load); else the field's bits, or `None` when there is no
/// such chunk or the field lies beyond the chunk's length.
pub fn sctp_chunk(
    data: &[u8],
    th: usize,
    end: usize,
    ty: u8,
    offset: u32,
    bits: u32,
    present: bool,
) -> Option<u128> {
    let absent = if present { Some(0) } else { None };
    // the SCTP common header: ports, verification tag, checksum
    let mut off = th + 12;
    loop {
        let Some(ch) = get(data, end, off, 4) else {
            return absent;
        };
        let len = u16::from_be_bytes([ch[2], ch[3]]) as usize;
        if len == 0 {
            return absent;
        }
        if ch[0] == ty {
            if present {
                return Some(1);
            }
            let need = (offset + bits).div_ceil(8) as usize;
            if need > len || off + len > end {
                return None;
            }
            return hdr::read_bits(&data[..end], off, offset, bits);
        }
        off += len.div_ceil(4) * 4;
        if off >= end {
            return absent;
        }
    }
}

/// DCCP packet types (`DCCP_PKT_*`) and the size of what follows the generic header for each
/// (`__dccp_packet_hdr_len`).
fn dccp_type_hdr_len(ty: u8) -> usize {
    match ty {
        // DATA
        2 => 0,
        // DATAACK, ACK, SYNC, SYNCACK, CLOSE, CLOSEREQ: the acknowledgement subheader
        3 | 4 | 5 | 6 | 8 | 9 => 8,
        // REQUEST: the service code
        0 => 4,
        // RESPONSE: acknowledgement and service code; RESET: acknowledgement and reset code
        _ => 12,
    }
}

/// `dccp option N`: 1 when the packet carries option `N`, else 0. Options 0 to 31 are one
/// byte, the others have a length of at least 2; a malformed list ends the search (0).
pub fn dccp_option(data: &[u8], th: usize, end: usize, want: u8) -> u128 {
    let Some(h) = get(data, end, th, 12) else {
        return 0;
    };
    let doff = h[4] as usize * 4;
    let ty = (h[8] >> 1) & 0x0f;
    let extended = h[8] & 1 == 1;
    let basic = if extended { 16 } else { 12 };
    let optoff = basic + dccp_type_hdr_len(ty);
    if doff <= optoff {
        return 0;
    }
    let optlen = doff - optoff;
    let mut i = 0;
    while i < optlen {
        let Some(b) = get(data, end, th + optoff + i, 1) else {
            return 0;
        };
        let t = b[0];
        if t == want {
            return 1;
        }
        if t <= 31 {
            i += 1;
            continue;
        }
        if optlen - i < 2 {
            return 0;
        }
        let Some(l) = get(data, end, th + optoff + i + 1, 1) else {
            return 0;
        };
        if l[0] < 2 {
            return 0;
        }
        i += l[0] as usize;
    }
    0
}

/// The tunnels `nft_inner` looks into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tunnel {
    Vxlan,
    Geneve,
    Gre,
    Gretap,
}

impl Tunnel {
    pub fn parse(s: &str) -> Option<Tunnel> {
        Some(match s {
            "vxlan" => Tunnel::Vxlan,
            "geneve" => Tunnel::Geneve,
            "gre" => Tunnel::Gre,
            "gretap" => Tunnel::Gretap,
            _ => return None,
        })
    }

    /// The outer transport protocol the tunnel runs over (the dependency nft puts first).
    pub fn outer_proto(self) -> u8 {
        match self {
            Tunnel::Vxlan | Tunnel::Geneve => 17,
            Tunnel::Gre | Tunnel::Gretap => 47,
        }
    }

    /// Whether the tunnel carries Ethernet frames (`NFT_INNER_LL`) or bare IP packets.
    fn link_layer(self) -> bool {
        self != Tunnel::Gre
    }
}

/// Which header of the tunnelled packet a field counts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InnerBase {
    /// The tunnel header itself (`vxlan vni`).
    Tunnel,
    Link,
    Network,
    Transport,
}

/// Where the headers inside a tunnel start (`struct nft_inner_tun_ctx`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InnerCtx {
    pub tun: usize,
    pub ll: Option<usize>,
    pub nh: Option<usize>,
    pub th: Option<usize>,
    /// The inner ethertype (`vxlan meta protocol`), 0x8100 for a tagged frame.
    pub llproto: u16,
    /// The inner transport protocol, when its header was found.
    pub l4proto: Option<u8>,
}

impl InnerCtx {
    pub fn base(&self, b: InnerBase) -> Option<usize> {
        match b {
            InnerBase::Tunnel => Some(self.tun),
            InnerBase::Link => self.ll,
            InnerBase::Network => self.nh,
            InnerBase::Transport => self.th,
        }
    }
}

/// Parses the packet inside a tunnel (`nft_payload_inner_offset` and `nft_inner_parse`).
/// `th` is the outer transport header of a packet whose transport protocol is `l4proto`;
/// `None` when the packet is not such a tunnel packet or its inner headers do not parse.
pub fn inner(data: &[u8], th: usize, end: usize, l4proto: u8, t: Tunnel) -> Option<InnerCtx> {
    if l4proto != t.outer_proto() {
        return None;
    }
    let mut ctx = InnerCtx::default();
    let mut off = match l4proto {
        17 => th + 8,
        _ => {
            // GRE: the base header, then checksum (with its reserved half), key and sequence
            // number when their flags say so
            let g = get(data, end, th, 4)?;
            let flags = u16::from_be_bytes([g[0], g[1]]);
            let mut o = 4;
            if flags & 0x8000 != 0 {
                o += 4;
            }
            if flags & 0x2000 != 0 {
                o += 4;
            }
            if flags & 0x1000 != 0 {
                o += 4;
            }
            th + o
        }
    };
    match t {
        Tunnel::Gre | Tunnel::Gretap => ctx.tun = th,
        Tunnel::Vxlan => {
            ctx.tun = off;
            off += 8;
        }
        Tunnel::Geneve => {
            ctx.tun = off;
            let g = get(data, end, off, 8)?;
            off += 8 + (g[0] & 0x3f) as usize * 4;
        }
    }
    let llproto = if t.link_layer() {
        let eth = get(data, end, off, 14)?;
        let proto = u16::from_be_bytes([eth[12], eth[13]]);
        let (encap, size) = match proto {
            0x0800 | 0x86dd => (proto, 14),
            0x8100 => {
                let v = get(data, end, off, 18)?;
                (u16::from_be_bytes([v[16], v[17]]), 18)
            }
            _ => return None,
        };
        ctx.ll = Some(off);
        ctx.llproto = proto;
        off += size;
        encap
    } else {
        let v = get(data, end, off, 1)?;
        let p = match v[0] >> 4 {
            4 => 0x0800,
            6 => 0x86dd,
            _ => return None,
        };
        ctx.llproto = p;
        p
    };
    match llproto {
        0x0800 => {
            let ip = get(data, end, off, 20)?;
            let ihl = (ip[0] & 0x0f) as usize;
            if ihl < 5 || ip[0] >> 4 != 4 {
                return None;
            }
            ctx.nh = Some(off);
            if u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff == 0 {
                ctx.th = Some(off + ihl * 4);
                ctx.l4proto = Some(ip[9]);
            }
        }
        0x86dd => {
            let ip = get(data, end, off, 40)?;
            if ip[0] >> 4 != 6 {
                return None;
            }
            ctx.nh = Some(off);
            let (l4, frag) = ipv6_last_header(data, end, off)?;
            if !frag {
                // the kernel puts the inner transport header right after the fixed header,
                // whatever extension headers it skipped to find the protocol
                ctx.th = Some(off + 40);
                ctx.l4proto = Some(l4);
            }
        }
        _ => return None,
    }
    Some(ctx)
}

/// The transport protocol of an IPv6 packet at `nh` past its extension headers, and whether
/// it is a non-first fragment (`ipv6_find_hdr`).
fn ipv6_last_header(data: &[u8], end: usize, nh: usize) -> Option<(u8, bool)> {
    let mut next = get(data, end, nh + 6, 1)?[0];
    let mut off = nh + 40;
    for _ in 0..16 {
        match next {
            0 | 43 | 60 => {
                let h = get(data, end, off, 2)?;
                next = h[0];
                off += (h[1] as usize + 1) * 8;
            }
            51 => {
                let h = get(data, end, off, 2)?;
                next = h[0];
                off += (h[1] as usize + 2) * 4;
            }
            44 => {
                let h = get(data, end, off, 4)?;
                let fragoff = u16::from_be_bytes([h[2], h[3]]) & 0xfff8;
                if fragoff != 0 {
                    return Some((h[0], true));
                }
                next = h[0];
                off += 8;
            }
            59 => return None,
            p => return Some((p, false)),
        }
    }
    None
}

/// NFT_OSF_MAXGENRELEN: the genre is compared as a 16-byte string.
pub const OSF_UNKNOWN: &str = "unknown";

/// `osf name` / `osf version`: no fingerprints are loaded here (the kernel starts with none
/// too, until `nfnl_osf` loads pf.os), so a TCP SYN is "unknown"; anything else, or a TCP
/// header that cannot be read, fails the rule. Like `nft_osf_eval`, the TCP header is looked
/// for after an IPv4 header's length, whatever the packet's family.
pub fn osf(data: &[u8], nh: usize, end: usize, l4proto: u8) -> Option<u128> {
    if l4proto != 6 {
        return None;
    }
    let ihl = (get(data, end, nh, 1)?[0] & 0x0f) as usize * 4;
    let tcp = get(data, end, nh + ihl, 20)?;
    if tcp[13] & 0x02 == 0 {
        return None;
    }
    Some(crate::rules::ifname_value(OSF_UNKNOWN))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sctp(chunks: &[&[u8]]) -> Vec<u8> {
        let mut p = vec![0u8; 12];
        p[0..2].copy_from_slice(&5000u16.to_be_bytes());
        for c in chunks {
            p.extend_from_slice(c);
            p.resize(p.len().next_multiple_of(4), 0);
        }
        p
    }

    #[test]
    fn sctp_chunks_are_walked_with_padding() {
        // DATA (type 0) with 5 bytes of payload, padded, then INIT (type 1)
        let data = [
            0u8, 3, 0, 21, 0, 0, 0, 7, 0, 9, 0, 1, 0, 0, 0, 0x2f, 1, 2, 3, 4, 5,
        ];
        let init = [
            1u8, 0, 0, 20, 0xde, 0xad, 0xbe, 0xef, 0, 0, 1, 0, 0, 10, 0, 11, 0, 0, 0, 1,
        ];
        let p = sctp(&[&data, &init]);
        let end = p.len();
        assert_eq!(sctp_chunk(&p, 0, end, 1, 0, 8, true), Some(1));
        assert_eq!(sctp_chunk(&p, 0, end, 3, 0, 8, true), Some(0));
        // data flags, stream
        assert_eq!(sctp_chunk(&p, 0, end, 0, 8, 8, false), Some(3));
        assert_eq!(sctp_chunk(&p, 0, end, 0, 64, 16, false), Some(9));
        // init-tag, num-inbound-streams
        assert_eq!(sctp_chunk(&p, 0, end, 1, 32, 32, false), Some(0xdeadbeef));
        assert_eq!(sctp_chunk(&p, 0, end, 1, 112, 16, false), Some(11));
        // absent chunk: the load fails
        assert_eq!(sctp_chunk(&p, 0, end, 3, 32, 32, false), None);
        // a field past the chunk's length fails
        let short = sctp(&[&[0u8, 0, 0, 4]]);
        assert_eq!(sctp_chunk(&short, 0, short.len(), 0, 32, 32, false), None);
        // a zero length ends the walk
        let zero = sctp(&[&[0u8, 0, 0, 0], &init]);
        assert_eq!(sctp_chunk(&zero, 0, zero.len(), 1, 0, 8, true), Some(0));
        // truncated: no panic, not found
        assert_eq!(sctp_chunk(&p, 0, 14, 1, 0, 8, true), Some(0));
    }

    #[test]
    fn dccp_options_by_type() {
        // a REQUEST (type 0) with X=1: 16 bytes, service code 4, then options
        let mut h = vec![0u8; 20];
        h[8] = 1; // type 0, X
        h.extend_from_slice(&[0, 32, 3, 40, 2]); // padding, option 32 len 3, 1 byte
        h.extend_from_slice(&[40, 2, 0]); // option 40 len 2, padding
        h[4] = (h.len() / 4) as u8;
        let end = h.len();
        assert_eq!(dccp_option(&h, 0, end, 40), 1);
        assert_eq!(dccp_option(&h, 0, end, 32), 1);
        assert_eq!(dccp_option(&h, 0, end, 41), 0);
        // a length below 2 ends the search
        let mut bad = h.clone();
        bad[22] = 1;
        assert_eq!(dccp_option(&bad, 0, end, 40), 0);
        // DATA (type 2) without X: options right after 12 bytes
        let mut d = vec![0u8; 12];
        d[8] = 2 << 1;
        d.extend_from_slice(&[44, 2, 0, 0]);
        d[4] = 4;
        assert_eq!(dccp_option(&d, 0, d.len(), 44), 1);
    }

    #[test]
    fn vxlan_inner_headers() {
        let mut p = vec![0u8; 8]; // outer UDP header at 0
        p.extend_from_slice(&[8, 0, 0, 0, 0, 0, 42, 0]); // VXLAN, VNI 42
        p.extend_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0]);
        let nh = p.len();
        p.extend_from_slice(&[
            0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        p.extend_from_slice(&[0, 80, 1, 187]);
        p.resize(p.len() + 16, 0);
        let c = inner(&p, 0, p.len(), 17, Tunnel::Vxlan).unwrap();
        assert_eq!(c.tun, 8);
        assert_eq!(c.ll, Some(16));
        assert_eq!(c.nh, Some(nh));
        assert_eq!(c.th, Some(nh + 20));
        assert_eq!(c.l4proto, Some(6));
        assert_eq!(c.llproto, 0x0800);
        // not over GRE, and not if the inner frame is ARP
        assert!(inner(&p, 0, p.len(), 47, Tunnel::Vxlan).is_none());
        let mut arp = p.clone();
        arp[28] = 0x08;
        arp[29] = 0x06;
        assert!(inner(&arp, 0, arp.len(), 17, Tunnel::Vxlan).is_none());
        // truncated: nothing
        assert!(inner(&p, 0, 30, 17, Tunnel::Vxlan).is_none());
    }
}
