//! Packets the router makes itself in answer to one it refuses: ICMP and ICMPv6 errors (time
//! exceeded, unreachable, fragmentation needed, packet too big) and the TCP reset of
//! `reject with tcp reset`, as `icmp_send`/`icmp6_send` and `nf_reject_ipv{4,6}.c` build them.
//!
//! Each function takes the offending IP packet (from its IP header to its end) and returns the
//! answer's IP packet, checksums filled; the router puts the link header in front.

use std::net::{Ipv4Addr, Ipv6Addr};

use nft_wire::{
    checksum, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpFlags, TcpPacket, TcpRepr,
};

/// `sysctl net.ipv4.ip_default_ttl` and `net.ipv6.conf.all.hop_limit`.
pub const DEFAULT_TTL: u8 = 64;
/// An ICMPv6 error, quote included, fits the IPv6 minimum MTU (RFC 4443 2.4 (c)).
const IPV6_MIN_MTU: usize = 1280;
/// The most of the offending packet an ICMP error quotes: 576 bytes less its IP and ICMP headers.
const IPV4_ICMP_ROOM: usize = 576 - 20 - 8;
/// `IPTOS_PREC_INTERNETCONTROL`: ICMP errors leave with precedence 6.
const TOS_INTERNETCONTROL: u8 = 0xc0;

pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_NET_UNREACH: u8 = 0;
pub const ICMP_HOST_UNREACH: u8 = 1;
pub const ICMP_PORT_UNREACH: u8 = 3;
pub const ICMP_FRAG_NEEDED: u8 = 4;
pub const ICMP_PKT_FILTERED: u8 = 13;

pub const ICMPV6_DEST_UNREACH: u8 = 1;
pub const ICMPV6_PKT_TOOBIG: u8 = 2;
pub const ICMPV6_TIME_EXCEED: u8 = 3;
pub const ICMPV6_NOROUTE: u8 = 0;
pub const ICMPV6_ADM_PROHIBITED: u8 = 1;
pub const ICMPV6_ADDR_UNREACH: u8 = 3;
pub const ICMPV6_PORT_UNREACH: u8 = 4;

/// nft's icmpx codes (`NFT_REJECT_ICMPX_*`) as ICMP codes, for IPv4 and IPv6
/// (`nft_reject_icmp_code`, `nft_reject_icmpv6_code`).
pub fn icmpx_code(code: u8, v6: bool) -> u8 {
    match (code, v6) {
        (0, false) => ICMP_NET_UNREACH,
        (1, false) => ICMP_PORT_UNREACH,
        (2, false) => ICMP_HOST_UNREACH,
        (3, false) => ICMP_PKT_FILTERED,
        (0, true) => ICMPV6_NOROUTE,
        (1, true) => ICMPV6_PORT_UNREACH,
        (2, true) => ICMPV6_ADDR_UNREACH,
        (3, true) => ICMPV6_ADM_PROHIBITED,
        (_, false) => ICMP_PORT_UNREACH,
        (_, true) => ICMPV6_PORT_UNREACH,
    }
}

/// An ICMP error from `src` about the IPv4 packet `offending`, quoting as much of it as fits in
/// 576 bytes, as `icmp_send` does (RFC 1812 4.3.2.3; RFC 792's header and eight bytes is the
/// minimum). `rest` is the second word of the ICMP header (the next-hop MTU of frag-needed).
/// `None` when `offending` is not a readable IPv4 packet.
pub fn icmp4_error(
    src: Ipv4Addr,
    offending: &[u8],
    ty: u8,
    code: u8,
    rest: u32,
) -> Option<Vec<u8>> {
    let p = Ipv4Packet::new_checked(offending).ok()?;
    let hlen = p.header_len() as usize;
    let quote_len = offending
        .len()
        .min(p.total_len() as usize)
        .min(IPV4_ICMP_ROOM)
        .max(hlen);
    let quote = &offending[..quote_len];
    let icmp_len = 8 + quote.len();
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: p.src_addr(),
        next_header: IpProtocol::Icmp,
        payload_len: icmp_len,
        ttl: DEFAULT_TTL,
        dscp: TOS_INTERNETCONTROL >> 2,
        ecn: 0,
        ident: 0,
        dont_frag: false,
        more_frags: false,
        frag_offset: 0,
    };
    let mut out = vec![0u8; ip.buffer_len() + icmp_len];
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]));
    let icmp = &mut out[20..];
    icmp[0] = ty;
    icmp[1] = code;
    icmp[4..8].copy_from_slice(&rest.to_be_bytes());
    icmp[8..].copy_from_slice(quote);
    let c = checksum::checksum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Some(out)
}

/// An ICMPv6 error from `src` about the IPv6 packet `offending`, quoting as much of it as fits
/// in 1280 bytes.
pub fn icmp6_error(
    src: Ipv6Addr,
    offending: &[u8],
    ty: u8,
    code: u8,
    rest: u32,
) -> Option<Vec<u8>> {
    let p = Ipv6Packet::new_checked(offending).ok()?;
    let room = IPV6_MIN_MTU - 40 - 8;
    let quote = &offending[..offending.len().min(room)];
    let icmp_len = 8 + quote.len();
    let ip = Ipv6Repr {
        src_addr: src,
        dst_addr: p.src_addr(),
        next_header: IpProtocol::Icmpv6,
        payload_len: icmp_len,
        hop_limit: DEFAULT_TTL,
        traffic_class: 0,
        flow_label: 0,
    };
    let mut out = vec![0u8; 40 + icmp_len];
    ip.emit(&mut Ipv6Packet::new_unchecked(&mut out[..]));
    let dst = p.src_addr();
    let icmp = &mut out[40..];
    icmp[0] = ty;
    icmp[1] = code;
    icmp[4..8].copy_from_slice(&rest.to_be_bytes());
    icmp[8..].copy_from_slice(quote);
    nft_wire::Icmpv6Packet::new_unchecked(icmp).fill_checksum(&src, &dst);
    Some(out)
}

/// The reset `nf_send_reset`/`nf_send_reset6` sends for the TCP segment `offending` whose TCP
/// header starts at `l4`: addresses and ports swapped; with the segment's ACK number as
/// sequence number if it carried an ACK, else sequence 0 and an ACK of everything it sent.
/// `None` for a reset (never answered) or an unreadable segment.
pub fn tcp_reset(offending: &[u8], l4: usize) -> Option<Vec<u8>> {
    let v6 = offending.first()? >> 4 == 6;
    let (src, dst, end) = if v6 {
        let p = Ipv6Packet::new_checked(offending).ok()?;
        (
            std::net::IpAddr::V6(p.src_addr()),
            std::net::IpAddr::V6(p.dst_addr()),
            40 + p.payload_len() as usize,
        )
    } else {
        let p = Ipv4Packet::new_checked(offending).ok()?;
        (
            std::net::IpAddr::V4(p.src_addr()),
            std::net::IpAddr::V4(p.dst_addr()),
            p.total_len() as usize,
        )
    };
    let seg = offending.get(l4..end.min(offending.len()))?;
    let t = TcpPacket::new_checked(seg).ok()?;
    let flags = t.flags();
    if flags.contains(TcpFlags::RST) {
        return None;
    }
    let (seq, ack, rflags) = if flags.contains(TcpFlags::ACK) {
        (t.ack_number(), 0, TcpFlags::RST)
    } else {
        let data = seg.len().saturating_sub(t.header_len() as usize) as u32;
        let len =
            data + flags.contains(TcpFlags::SYN) as u32 + flags.contains(TcpFlags::FIN) as u32;
        (
            0,
            t.seq_number().wrapping_add(len),
            TcpFlags::RST | TcpFlags::ACK,
        )
    };
    let tcp = TcpRepr {
        src_port: t.dst_port(),
        dst_port: t.src_port(),
        seq_number: seq,
        ack_number: ack,
        flags: rflags,
        window_len: 0,
        urgent_at: 0,
        options: &[],
        payload: &[],
    };
    let mut out;
    match (dst, src) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
            let ip = Ipv4Repr {
                src_addr: s,
                dst_addr: d,
                next_header: IpProtocol::Tcp,
                payload_len: tcp.buffer_len(),
                ttl: DEFAULT_TTL,
                dscp: 0,
                ecn: 0,
                ident: 0,
                dont_frag: true,
                more_frags: false,
                frag_offset: 0,
            };
            out = vec![0u8; 20 + tcp.buffer_len()];
            ip.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]));
            tcp.emit(&mut TcpPacket::new_unchecked(&mut out[20..]), &dst, &src);
        }
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
            let ip = Ipv6Repr {
                src_addr: s,
                dst_addr: d,
                next_header: IpProtocol::Tcp,
                payload_len: tcp.buffer_len(),
                hop_limit: DEFAULT_TTL,
                traffic_class: 0,
                flow_label: 0,
            };
            out = vec![0u8; 40 + tcp.buffer_len()];
            ip.emit(&mut Ipv6Packet::new_unchecked(&mut out[..]));
            tcp.emit(&mut TcpPacket::new_unchecked(&mut out[40..]), &dst, &src);
        }
        _ => return None,
    }
    Some(out)
}
