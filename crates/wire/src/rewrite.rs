//! In-place NAT rewrites that keep every checksum right with RFC 1624 incremental updates, so a
//! fast path touches only the bytes it changes.
//!
//! The functions take the packet from its IP header on (the rest of the frame may follow) and
//! return `Err` rather than panic when it is too short. Checksums that are wrong before a
//! rewrite stay exactly as wrong after it, as with the kernel's `inet_proto_csum_replace*`.
//!
//! What each checksum covers:
//! * the IPv4 header checksum covers the addresses;
//! * TCP, UDP and ICMPv6 checksums cover the addresses through the pseudo-header, and the ports
//!   (or ICMPv6 echo identifier) directly;
//! * the ICMP (v4) checksum has no pseudo-header: only the echo identifier matters to it.
//!
//! A UDP checksum of 0 over IPv4 means "none" and stays 0; an updated UDP checksum that comes
//! out as 0 is stored as 0xffff.

use crate::checksum;
use crate::ip::IpProtocol;
use crate::ipv4::Ipv4Packet;
use crate::ipv6::Ipv6Packet;
use crate::{icmpv4, read_u16, tcp, udp, write_u16, Error, Result};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Which of a packet's two addresses or ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Src,
    Dst,
}

/// Where an L4 checksum lives and what it needs.
#[derive(Clone, Copy)]
enum L4Csum {
    /// Covers the pseudo-header; `zero_means_none` for UDP over IPv4.
    Pseudo {
        at: usize,
        zero_means_none: bool,
        udp: bool,
    },
    None,
}

fn l4_csum_slot(proto: IpProtocol, ipv4: bool) -> L4Csum {
    match proto {
        IpProtocol::Tcp => L4Csum::Pseudo {
            at: tcp::CHECKSUM_OFFSET,
            zero_means_none: false,
            udp: false,
        },
        IpProtocol::Udp => L4Csum::Pseudo {
            at: udp::CHECKSUM_OFFSET,
            zero_means_none: ipv4,
            udp: true,
        },
        IpProtocol::Icmpv6 if !ipv4 => L4Csum::Pseudo {
            at: crate::icmpv6::CHECKSUM_OFFSET,
            zero_means_none: false,
            udp: false,
        },
        _ => L4Csum::None,
    }
}

/// Applies `update` to the L4 checksum at `at` in `l4`, minding UDP's zero.
fn patch_l4(l4: &mut [u8], slot: L4Csum, update: impl FnOnce(u16) -> u16) -> Result<()> {
    let L4Csum::Pseudo {
        at,
        zero_means_none,
        udp,
    } = slot
    else {
        return Ok(());
    };
    if l4.len() < at + 2 {
        return Err(Error::Truncated);
    }
    let old = read_u16(l4, at);
    if zero_means_none && old == 0 {
        return Ok(());
    }
    let mut new = update(old);
    if udp && new == 0 {
        new = 0xffff;
    }
    write_u16(l4, at, new);
    Ok(())
}

/// Rewrites the source or destination address of an IPv4 packet, patching the header checksum
/// and, unless the packet is a later fragment (no L4 header), the TCP or UDP checksum.
///
/// `ip` must pass [`Ipv4Packet::check_len`].
pub fn set_ipv4_addr(ip: &mut [u8], side: Side, new: Ipv4Addr) -> Result<()> {
    let p = Ipv4Packet::new_checked(&*ip)?;
    let old = match side {
        Side::Src => p.src_addr(),
        Side::Dst => p.dst_addr(),
    };
    let (hlen, total, proto, l4_present) = (
        p.header_len() as usize,
        p.total_len() as usize,
        p.protocol(),
        p.frag_offset() == 0,
    );
    let (old32, new32) = (u32::from(old), u32::from(new));
    if l4_present {
        let slot = l4_csum_slot(proto, true);
        // A first fragment carrying less than the L4 checksum is left alone rather than refused:
        // the address still has to change.
        let _ = patch_l4(&mut ip[hlen..total], slot, |c| {
            checksum::update32(c, old32, new32)
        });
    }
    let mut p = Ipv4Packet::new_unchecked(&mut *ip);
    let hc = checksum::update32(p.checksum(), old32, new32);
    p.set_checksum(hc);
    match side {
        Side::Src => p.set_src_addr(new),
        Side::Dst => p.set_dst_addr(new),
    }
    Ok(())
}

/// Rewrites the source or destination port of a TCP or UDP header at the start of `l4`,
/// patching its checksum. `ipv4` tells whether a zero UDP checksum means "none".
/// `Malformed` for other protocols, `Truncated` when `l4` is shorter than the header.
pub fn set_l4_port(
    l4: &mut [u8],
    proto: IpProtocol,
    ipv4: bool,
    side: Side,
    new: u16,
) -> Result<()> {
    let hdr_len = match proto {
        IpProtocol::Tcp => tcp::HEADER_LEN,
        IpProtocol::Udp => udp::HEADER_LEN,
        _ => return Err(Error::Malformed),
    };
    if l4.len() < hdr_len {
        return Err(Error::Truncated);
    }
    let at = match side {
        Side::Src => 0,
        Side::Dst => 2,
    };
    let old = read_u16(l4, at);
    patch_l4(l4, l4_csum_slot(proto, ipv4), |c| {
        checksum::update16(c, old, new)
    })?;
    write_u16(l4, at, new);
    Ok(())
}

/// Rewrites the identifier of an ICMP or ICMPv6 echo message at the start of `l4` (NAT treats
/// it as a port), patching the message checksum.
pub fn set_icmp_ident(l4: &mut [u8], new: u16) -> Result<()> {
    if l4.len() < icmpv4::HEADER_LEN {
        return Err(Error::Truncated);
    }
    let old = read_u16(l4, icmpv4::ECHO_IDENT_OFFSET);
    let c = checksum::update16(read_u16(l4, icmpv4::CHECKSUM_OFFSET), old, new);
    write_u16(l4, icmpv4::CHECKSUM_OFFSET, c);
    write_u16(l4, icmpv4::ECHO_IDENT_OFFSET, new);
    Ok(())
}

/// Rewrites the source or destination address of an IPv6 packet, patching the TCP, UDP or
/// ICMPv6 checksum found after the extension headers (unless the packet is a later fragment).
pub fn set_ipv6_addr(ip: &mut [u8], side: Side, new: Ipv6Addr) -> Result<()> {
    let p = Ipv6Packet::new_checked(&*ip)?;
    let old = match side {
        Side::Src => p.src_addr(),
        Side::Dst => p.dst_addr(),
    };
    let total = crate::ipv6::HEADER_LEN + p.payload_len() as usize;
    if let Ok(ext) = p.extension_headers() {
        if ext.has_upper_header() {
            let slot = l4_csum_slot(ext.upper_protocol, false);
            let (o, n) = (old.octets(), new.octets());
            let _ = patch_l4(&mut ip[ext.upper_offset..total], slot, |c| {
                checksum::update_bytes(c, &o, &n)
            });
        }
    }
    let mut p = Ipv6Packet::new_unchecked(&mut *ip);
    match side {
        Side::Src => p.set_src_addr(new),
        Side::Dst => p.set_dst_addr(new),
    }
    Ok(())
}

/// Overwrites `buf[at..at + new.len()]` (at most 2 bytes) and patches the checksum stored at
/// `csum_at`, for a field that may start on an odd offset: the update runs over the enclosing
/// 16-bit-aligned window, so a value after an odd number of NOPs updates correctly.
fn patch_unaligned(buf: &mut [u8], csum_at: usize, at: usize, new: &[u8]) {
    let start = at & !1;
    let end = (at + new.len() + 1) & !1;
    let mut old_w = [0u8; 4];
    let mut new_w = [0u8; 4];
    let n = end - start;
    old_w[..n].copy_from_slice(&buf[start..end]);
    new_w[..n].copy_from_slice(&buf[start..end]);
    new_w[at - start..at - start + new.len()].copy_from_slice(new);
    let c = checksum::update_bytes(read_u16(buf, csum_at), &old_w[..n], &new_w[..n]);
    buf[at..at + new.len()].copy_from_slice(new);
    write_u16(buf, csum_at, c);
}

/// Lowers the MSS option of a TCP segment at the start of `l4` to `max` if it is larger (nft's
/// `tcp option maxseg size set`), patching the checksum. Returns whether it changed anything;
/// `Err` when the header or its options are malformed.
pub fn clamp_tcp_mss(l4: &mut [u8], max: u16) -> Result<bool> {
    let t = tcp::TcpPacket::new_checked(&*l4)?;
    let hlen = t.header_len() as usize;
    let mut at = tcp::HEADER_LEN;
    while at < hlen {
        match l4[at] {
            0 => break,
            1 => at += 1,
            kind => {
                let len = *l4.get(at + 1).ok_or(Error::Malformed)? as usize;
                if len < 2 || at + len > hlen {
                    return Err(Error::Malformed);
                }
                if kind == 2 {
                    if len != 4 {
                        return Err(Error::Malformed);
                    }
                    let mss = read_u16(l4, at + 2);
                    if mss <= max {
                        return Ok(false);
                    }
                    patch_unaligned(l4, tcp::CHECKSUM_OFFSET, at + 2, &max.to_be_bytes());
                    return Ok(true);
                }
                at += len;
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipv4::Ipv4Repr;
    use crate::tcp::{TcpFlags, TcpPacket, TcpRepr};
    use crate::udp::{UdpPacket, UdpRepr};
    use proptest::prelude::*;
    use std::net::IpAddr;

    /// Builds IPv4 + TCP/UDP with valid checksums; `udp_zero` leaves the UDP checksum at 0.
    fn build_v4(
        proto: IpProtocol,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        sport: u16,
        dport: u16,
        payload: &[u8],
        udp_zero: bool,
    ) -> Vec<u8> {
        let (s, d) = (IpAddr::V4(src), IpAddr::V4(dst));
        let l4_len = match proto {
            IpProtocol::Tcp => 20 + payload.len(),
            _ => 8 + payload.len(),
        };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: proto,
            payload_len: l4_len,
            ttl: 64,
            dscp: 0,
            ecn: 0,
            ident: 0x4242,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
        };
        let mut buf = vec![0u8; 20 + l4_len];
        ip.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
        let l4 = &mut buf[20..];
        if proto == IpProtocol::Tcp {
            let t = TcpRepr {
                src_port: sport,
                dst_port: dport,
                seq_number: 1,
                ack_number: 2,
                flags: TcpFlags::ACK,
                window_len: 1000,
                urgent_at: 0,
                options: &[],
                payload,
            };
            t.emit(&mut TcpPacket::new_unchecked(l4), &s, &d);
        } else {
            let u = UdpRepr {
                src_port: sport,
                dst_port: dport,
                payload,
            };
            u.emit(&mut UdpPacket::new_unchecked(&mut *l4), &s, &d);
            if udp_zero {
                l4[6] = 0;
                l4[7] = 0;
            }
        }
        buf
    }

    /// The checksums a full recomputation gives for `buf` (IP header, L4).
    fn full_checksums(buf: &[u8], udp_zero: bool) -> (u16, u16) {
        let mut b = buf.to_vec();
        let mut ip = Ipv4Packet::new_unchecked(&mut b[..]);
        ip.fill_checksum();
        let (s, d) = (IpAddr::V4(ip.src_addr()), IpAddr::V4(ip.dst_addr()));
        let proto = ip.protocol();
        let ip_c = ip.checksum();
        let l4 = &mut b[20..];
        let l4_c = if proto == IpProtocol::Tcp {
            let mut t = TcpPacket::new_unchecked(l4);
            t.fill_checksum(&s, &d);
            t.checksum()
        } else if udp_zero {
            0
        } else {
            let mut u = UdpPacket::new_unchecked(l4);
            u.fill_checksum(&s, &d);
            u.checksum()
        };
        (ip_c, l4_c)
    }

    fn current_checksums(buf: &[u8]) -> (u16, u16) {
        let at = if buf[9] == 6 { 20 + 16 } else { 20 + 6 };
        (read_u16(buf, 10), read_u16(buf, at))
    }

    #[test]
    fn snat_tcp_known() {
        let mut b = build_v4(
            IpProtocol::Tcp,
            [192, 168, 1, 10].into(),
            [1, 1, 1, 1].into(),
            40000,
            443,
            b"x",
            false,
        );
        set_ipv4_addr(&mut b, Side::Src, [203, 0, 113, 7].into()).unwrap();
        set_l4_port(&mut b[20..], IpProtocol::Tcp, true, Side::Src, 61000).unwrap();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.src_addr(), Ipv4Addr::new(203, 0, 113, 7));
        let t = TcpPacket::new_checked(p.payload()).unwrap();
        assert_eq!(t.src_port(), 61000);
        assert!(t.verify_checksum(&p.src_addr().into(), &p.dst_addr().into()));
    }

    #[test]
    fn udp_zero_checksum_stays_zero() {
        let mut b = build_v4(
            IpProtocol::Udp,
            [10, 0, 0, 1].into(),
            [10, 0, 0, 2].into(),
            1,
            2,
            b"abc",
            true,
        );
        set_ipv4_addr(&mut b, Side::Dst, [10, 9, 9, 9].into()).unwrap();
        set_l4_port(&mut b[20..], IpProtocol::Udp, true, Side::Dst, 999).unwrap();
        assert_eq!(read_u16(&b, 26), 0);
        assert!(Ipv4Packet::new_checked(&b[..]).unwrap().verify_checksum());
    }

    #[test]
    fn icmp_ident_rewrite() {
        let mut m = [8u8, 0, 0, 0, 0x12, 0x34, 0, 1, 1, 2, 3];
        crate::icmpv4::Icmpv4Packet::new_unchecked(&mut m[..]).fill_checksum();
        set_icmp_ident(&mut m, 0xbeef).unwrap();
        let p = crate::icmpv4::Icmpv4Packet::new_checked(&m[..]).unwrap();
        assert_eq!(p.echo_ident(), 0xbeef);
        assert!(p.verify_checksum());
        assert_eq!(set_icmp_ident(&mut m[..7], 1), Err(Error::Truncated));
    }

    #[test]
    fn short_inputs_are_errors() {
        assert_eq!(
            set_ipv4_addr(&mut [0x45; 10], Side::Src, Ipv4Addr::LOCALHOST),
            Err(Error::Truncated)
        );
        assert_eq!(
            set_l4_port(&mut [0; 7], IpProtocol::Udp, true, Side::Src, 1),
            Err(Error::Truncated)
        );
        assert_eq!(
            set_l4_port(&mut [0; 20], IpProtocol::Icmp, true, Side::Src, 1),
            Err(Error::Malformed)
        );
        assert_eq!(
            set_ipv6_addr(&mut [0x60; 39], Side::Src, Ipv6Addr::LOCALHOST),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn mss_clamp_at_even_and_odd_offsets() {
        let (s, d) = (
            IpAddr::V4([10, 0, 0, 1].into()),
            IpAddr::V4([10, 0, 0, 2].into()),
        );
        for options in [
            &[2u8, 4, 0x05, 0xb4, 1, 1, 1, 0][..],
            &[1, 2, 4, 0x05, 0xb4, 0, 0, 0],
        ] {
            let repr = TcpRepr {
                src_port: 1,
                dst_port: 2,
                seq_number: 3,
                ack_number: 0,
                flags: TcpFlags::SYN,
                window_len: 100,
                urgent_at: 0,
                options,
                payload: b"abc",
            };
            let mut seg = vec![0u8; repr.buffer_len()];
            repr.emit(&mut TcpPacket::new_unchecked(&mut seg[..]), &s, &d);
            assert_eq!(clamp_tcp_mss(&mut seg, 1500), Ok(false));
            assert_eq!(clamp_tcp_mss(&mut seg, 1452), Ok(true));
            let p = TcpPacket::new_checked(&seg[..]).unwrap();
            assert!(p.verify_checksum(&s, &d));
            assert!(p
                .options_iter()
                .any(|o| o == Ok(crate::tcp::TcpOption::MaxSegmentSize(1452))));
        }
        let mut bad = [0u8; 24];
        bad[12] = 0x60;
        bad[20..24].copy_from_slice(&[2, 9, 0, 0]);
        assert_eq!(clamp_tcp_mss(&mut bad, 1000), Err(Error::Malformed));
    }

    proptest! {
        #[test]
        fn mss_clamp_matches_full_recomputation(
            nops in 0usize..3,
            mss in any::<u16>(),
            max in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..9),
        ) {
            let (s, d) = (IpAddr::V4([192, 0, 2, 1].into()), IpAddr::V4([198, 51, 100, 2].into()));
            let mut options = vec![1u8; nops];
            options.extend_from_slice(&[2, 4]);
            options.extend_from_slice(&mss.to_be_bytes());
            let repr = TcpRepr { src_port: 9, dst_port: 8, seq_number: 7, ack_number: 6, flags: TcpFlags::SYN,
                window_len: 5, urgent_at: 0, options: &options, payload: &payload };
            let mut seg = vec![0u8; repr.buffer_len()];
            repr.emit(&mut TcpPacket::new_unchecked(&mut seg[..]), &s, &d);
            let changed = clamp_tcp_mss(&mut seg, max).unwrap();
            prop_assert_eq!(changed, mss > max);
            let mut full = seg.clone();
            TcpPacket::new_unchecked(&mut full[..]).fill_checksum(&s, &d);
            prop_assert_eq!(&seg, &full);
            prop_assert_eq!(read_u16(&seg, 20 + nops + 2), mss.min(max));
        }

        #[test]
        fn ipv4_rewrites_match_full_recomputation(
            tcp in any::<bool>(),
            udp_zero in any::<bool>(),
            src in any::<[u8; 4]>(),
            dst in any::<[u8; 4]>(),
            sport in any::<u16>(),
            dport in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            rewrites in proptest::collection::vec((0u8..4, any::<[u8; 4]>(), any::<u16>()), 1..6),
        ) {
            let proto = if tcp { IpProtocol::Tcp } else { IpProtocol::Udp };
            let udp_zero = udp_zero && !tcp;
            let mut b = build_v4(proto, src.into(), dst.into(), sport, dport, &payload, udp_zero);
            prop_assert_eq!(current_checksums(&b), full_checksums(&b, udp_zero));
            for (what, addr, port) in rewrites {
                match what {
                    0 => set_ipv4_addr(&mut b, Side::Src, addr.into()).unwrap(),
                    1 => set_ipv4_addr(&mut b, Side::Dst, addr.into()).unwrap(),
                    2 => set_l4_port(&mut b[20..], proto, true, Side::Src, port).unwrap(),
                    _ => set_l4_port(&mut b[20..], proto, true, Side::Dst, port).unwrap(),
                }
                prop_assert_eq!(current_checksums(&b), full_checksums(&b, udp_zero));
            }
        }

        #[test]
        fn ipv6_rewrites_match_full_recomputation(
            kind in 0u8..3,
            src in any::<[u8; 16]>(),
            dst in any::<[u8; 16]>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            rewrites in proptest::collection::vec((any::<bool>(), any::<[u8; 16]>(), any::<u16>()), 1..5),
        ) {
            use crate::icmpv6::{Icmpv6Packet, Icmpv6Repr};
            use crate::ipv6::Ipv6Repr;
            let (s6, d6) = (Ipv6Addr::from(src), Ipv6Addr::from(dst));
            let (s, d) = (IpAddr::V6(s6), IpAddr::V6(d6));
            let proto = [IpProtocol::Tcp, IpProtocol::Udp, IpProtocol::Icmpv6][kind as usize];
            let l4_len = match proto { IpProtocol::Tcp => 20, _ => 8 } + payload.len();
            let mut b = vec![0u8; 40 + l4_len];
            Ipv6Repr { src_addr: s6, dst_addr: d6, next_header: proto, payload_len: l4_len, hop_limit: 64, traffic_class: 0, flow_label: 0 }
                .emit(&mut Ipv6Packet::new_unchecked(&mut b[..]));
            match proto {
                IpProtocol::Tcp => TcpRepr { src_port: 1, dst_port: 2, seq_number: 3, ack_number: 4, flags: TcpFlags::SYN, window_len: 5, urgent_at: 0, options: &[], payload: &payload }
                    .emit(&mut TcpPacket::new_unchecked(&mut b[40..]), &s, &d),
                IpProtocol::Udp => UdpRepr { src_port: 1, dst_port: 2, payload: &payload }
                    .emit(&mut UdpPacket::new_unchecked(&mut b[40..]), &s, &d),
                _ => Icmpv6Repr::EchoRequest { ident: 1, seq_no: 2, data: &payload }
                    .emit(&mut Icmpv6Packet::new_unchecked(&mut b[40..]), &s6, &d6),
            }
            for (src_side, addr, ident) in rewrites {
                let side = if src_side { Side::Src } else { Side::Dst };
                set_ipv6_addr(&mut b, side, addr.into()).unwrap();
                if proto == IpProtocol::Icmpv6 {
                    set_icmp_ident(&mut b[40..], ident).unwrap();
                } else {
                    set_l4_port(&mut b[40..], proto, false, side, ident).unwrap();
                }
                let p = Ipv6Packet::new_checked(&b[..]).unwrap();
                let (s6, d6) = (p.src_addr(), p.dst_addr());
                let (s, d) = (IpAddr::V6(s6), IpAddr::V6(d6));
                let at = match proto { IpProtocol::Tcp => 16, IpProtocol::Udp => 6, _ => 2 };
                let got = read_u16(&b, 40 + at);
                let mut c = b.clone();
                match proto {
                    IpProtocol::Tcp => TcpPacket::new_unchecked(&mut c[40..]).fill_checksum(&s, &d),
                    IpProtocol::Udp => UdpPacket::new_unchecked(&mut c[40..]).fill_checksum(&s, &d),
                    _ => Icmpv6Packet::new_unchecked(&mut c[40..]).fill_checksum(&s6, &d6),
                }
                prop_assert_eq!(got, read_u16(&c, 40 + at));
            }
        }
    }
}
