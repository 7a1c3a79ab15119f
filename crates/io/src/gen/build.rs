//! Frames from value types: L2 (Ethernet, VLAN/QinQ tags, PPPoE session) around L3 and L4 built
//! with nft-wire's `emit`, which fills every checksum.

use std::net::IpAddr;

use nft_wire::{
    EtherType, EthernetAddress, EthernetFrame, EthernetRepr, Icmpv4Packet, Icmpv4Repr,
    Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, PppProtocol,
    PppoeRepr, PppoeSession, TcpPacket, TcpRepr, UdpPacket, UdpRepr, VlanPacket, VlanRepr,
};

use super::{Encap, Mac};

/// The shortest Ethernet frame on the wire, without FCS; shorter ones are padded by the sender.
pub const MIN_FRAME: usize = 60;

/// An upper-layer message ready to emit.
pub enum L4<'a> {
    Tcp(TcpRepr<'a>),
    Udp(UdpRepr<'a>),
    Icmpv4(Icmpv4Repr<'a>),
    Icmpv6(Icmpv6Repr<'a>),
}

impl L4<'_> {
    fn protocol(&self) -> IpProtocol {
        match self {
            L4::Tcp(_) => IpProtocol::Tcp,
            L4::Udp(_) => IpProtocol::Udp,
            L4::Icmpv4(_) => IpProtocol::Icmp,
            L4::Icmpv6(_) => IpProtocol::Icmpv6,
        }
    }

    fn buffer_len(&self) -> usize {
        match self {
            L4::Tcp(r) => r.buffer_len(),
            L4::Udp(r) => r.buffer_len(),
            L4::Icmpv4(r) => r.buffer_len(),
            L4::Icmpv6(r) => r.buffer_len(),
        }
    }

    fn emit(&self, buf: &mut [u8], src: IpAddr, dst: IpAddr) {
        match (self, src, dst) {
            (L4::Tcp(r), _, _) => r.emit(&mut TcpPacket::new_unchecked(buf), &src, &dst),
            (L4::Udp(r), _, _) => r.emit(&mut UdpPacket::new_unchecked(buf), &src, &dst),
            (L4::Icmpv4(r), _, _) => r.emit(&mut Icmpv4Packet::new_unchecked(buf)),
            (L4::Icmpv6(r), IpAddr::V6(s), IpAddr::V6(d)) => {
                r.emit(&mut Icmpv6Packet::new_unchecked(buf), &s, &d)
            }
            (L4::Icmpv6(_), _, _) => unreachable!("ICMPv6 over IPv4"),
        }
    }
}

/// The IP fields that vary per packet.
#[derive(Clone, Copy, Debug)]
pub struct IpFields {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    /// IPv4 identification; IPv6 flow label.
    pub ident: u32,
}

pub fn ip_header_len(addr: IpAddr) -> usize {
    match addr {
        IpAddr::V4(_) => nft_wire::ipv4::HEADER_LEN,
        IpAddr::V6(_) => nft_wire::ipv6::HEADER_LEN,
    }
}

/// An IPv4 or IPv6 packet (by the address family) carrying `l4`.
pub fn ip_packet(ip: &IpFields, l4: &L4<'_>) -> Vec<u8> {
    let l4_len = l4.buffer_len();
    let hlen = ip_header_len(ip.src);
    let mut buf = vec![0u8; hlen + l4_len];
    match (ip.src, ip.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let repr = Ipv4Repr {
                src_addr: src,
                dst_addr: dst,
                next_header: l4.protocol(),
                payload_len: l4_len,
                ttl: ip.ttl,
                dscp: 0,
                ecn: 0,
                ident: ip.ident as u16,
                dont_frag: true,
                more_frags: false,
                frag_offset: 0,
            };
            repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let repr = Ipv6Repr {
                src_addr: src,
                dst_addr: dst,
                next_header: l4.protocol(),
                payload_len: l4_len,
                hop_limit: ip.ttl,
                traffic_class: 0,
                flow_label: ip.ident & 0xf_ffff,
            };
            repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
        }
        _ => unreachable!("mixed address families"),
    }
    l4.emit(&mut buf[hlen..], ip.src, ip.dst);
    buf
}

/// Wraps an L3 packet in Ethernet and the interface's encapsulation. `pad` fills the frame up to
/// the Ethernet minimum as a NIC would; malformed frames are left unpadded so that their defect
/// is what the parser meets first.
pub fn l2_frame(encap: &Encap, src: Mac, dst: Mac, l3: &[u8], pad: bool) -> Vec<u8> {
    let l3_type = match l3.first().map(|b| b >> 4) {
        Some(6) => EtherType::Ipv6,
        _ => EtherType::Ipv4,
    };
    let mut stack: Vec<u8> = Vec::with_capacity(l3.len() + 30);
    // Built inside out: the innermost header's EtherType is the payload's.
    let mut inner_type = l3_type;
    let mut l2_payload_prefix: Vec<u8> = Vec::new();
    if let Encap::Pppoe { session, .. } = encap {
        let protocol = if l3_type == EtherType::Ipv6 {
            PppProtocol::Ipv6
        } else {
            PppProtocol::Ipv4
        };
        let repr = PppoeRepr {
            session_id: *session,
            protocol,
            payload_len: l3.len(),
        };
        let mut hdr = vec![0u8; nft_wire::pppoe::HEADER_LEN + l3.len()];
        repr.emit(&mut PppoeSession::new_unchecked(&mut hdr[..]));
        hdr.truncate(nft_wire::pppoe::HEADER_LEN);
        l2_payload_prefix = hdr;
        inner_type = EtherType::PppoeSession;
    }
    let tags: Vec<(EtherType, u16)> = match encap {
        Encap::Vlan { id, .. } => vec![(EtherType::Vlan, *id)],
        Encap::QinQ { outer, inner, .. } => {
            vec![(EtherType::QinQ, *outer), (EtherType::Vlan, *inner)]
        }
        _ => vec![],
    };
    let outer_type = tags.first().map_or(inner_type, |t| t.0);
    stack.resize(nft_wire::ethernet::HEADER_LEN, 0);
    EthernetRepr {
        src_addr: EthernetAddress(src),
        dst_addr: EthernetAddress(dst),
        ethertype: outer_type,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut stack[..]));
    for (i, (_, vid)) in tags.iter().enumerate() {
        let next = tags.get(i + 1).map_or(inner_type, |t| t.0);
        let at = stack.len();
        stack.resize(at + nft_wire::vlan::HEADER_LEN, 0);
        VlanRepr {
            pcp: 0,
            dei: false,
            vid: *vid,
            ethertype: next,
        }
        .emit(&mut VlanPacket::new_unchecked(&mut stack[at..]));
    }
    stack.extend_from_slice(&l2_payload_prefix);
    stack.extend_from_slice(l3);
    if pad && stack.len() < MIN_FRAME {
        stack.resize(MIN_FRAME, 0);
    }
    stack
}

/// TCP options of a SYN: MSS, two NOPs, SACK permitted.
pub fn syn_options(mss: u16) -> [u8; 8] {
    let m = mss.to_be_bytes();
    [2, 4, m[0], m[1], 1, 1, 4, 2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use nft_wire::{parse_frame, TcpFlags};
    use std::net::Ipv4Addr;

    fn syn() -> Vec<u8> {
        let opts = syn_options(1460);
        let tcp = TcpRepr {
            src_port: 40000,
            dst_port: 443,
            seq_number: 1,
            ack_number: 0,
            flags: TcpFlags::SYN,
            window_len: 64240,
            urgent_at: 0,
            options: &opts,
            payload: &[],
        };
        let ip = IpFields {
            src: Ipv4Addr::new(192, 168, 1, 100).into(),
            dst: Ipv4Addr::new(198, 18, 5, 5).into(),
            ttl: 64,
            ident: 7,
        };
        ip_packet(&ip, &L4::Tcp(tcp))
    }

    #[test]
    fn encapsulations_parse_back() {
        let l3 = syn();
        let encaps = [
            (Encap::None, 0, None),
            (
                Encap::Vlan {
                    parent: "eth1".into(),
                    id: 7,
                },
                1,
                None,
            ),
            (
                Encap::QinQ {
                    parent: "eth1".into(),
                    outer: 100,
                    inner: 200,
                },
                2,
                None,
            ),
            (
                Encap::Pppoe {
                    parent: "eth1".into(),
                    session: 0x1234,
                },
                0,
                Some(0x1234),
            ),
        ];
        for (encap, tags, session) in encaps {
            let f = l2_frame(&encap, [2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], &l3, true);
            let m = parse_frame(&f).unwrap();
            assert_eq!(m.vlan_count, tags, "{encap:?}");
            assert_eq!(m.pppoe_session, session);
            assert_eq!(m.ports, Some((40000, 443)));
            assert_eq!(m.l3_end - m.l3_offset, l3.len());
            if let Encap::QinQ { .. } = encap {
                assert_eq!(m.vlans[0].vid, 100);
                assert_eq!(m.vlans[0].tpid, EtherType::QinQ);
                assert_eq!(m.vlans[1].vid, 200);
            }
        }
    }

    #[test]
    fn short_frames_are_padded() {
        let f = l2_frame(&Encap::None, [2; 6], [4; 6], &syn()[..40], true);
        assert_eq!(f.len(), MIN_FRAME);
    }
}
