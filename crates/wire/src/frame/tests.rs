//! The frame parser against packets built by etherparse, known byte arrays, every drop reason,
//! and arbitrary bytes.

use super::*;
use crate::icmpv4::Icmpv4Packet;
use crate::icmpv6::Icmpv6Packet;
use crate::ipv4::Ipv4Repr;
use crate::ipv6::Ipv6Repr;
use crate::tcp::TcpRepr;
use crate::udp::UdpRepr;
use crate::{Ipv4Packet, TcpPacket, UdpPacket};
use etherparse::{
    IpHeaders, IpNumber, Ipv4Extensions, Ipv4Header, Ipv6Extensions, Ipv6FragmentHeader,
    Ipv6Header, Ipv6RawExtHeader, PacketBuilder, TcpOptionElement, VlanId,
};
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

fn write(builder: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = Vec::new();
    builder(&mut v);
    v
}

#[test]
fn ipv4_tcp_from_etherparse() {
    let payload = b"hello, world";
    let frame = write(|v| {
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .ipv4([192, 168, 1, 10], [93, 184, 216, 34], 63)
            .tcp(40000, 443, 0x11223344, 29200)
            .syn()
            .ack(0x55667788)
            .options(&[
                TcpOptionElement::MaximumSegmentSize(1460),
                TcpOptionElement::WindowScale(7),
            ])
            .unwrap()
            .write(v, payload)
            .unwrap()
    });
    let m = parse_frame(&frame).unwrap();
    assert_eq!(m.frame_len, frame.len());
    assert_eq!(m.src_mac, EthernetAddress(SRC_MAC));
    assert_eq!(m.dst_mac, EthernetAddress(DST_MAC));
    assert_eq!(m.vlan_count, 0);
    assert_eq!(m.ethertype, EtherType::Ipv4);
    assert_eq!(m.l3_offset, 14);
    assert_eq!(m.ip_version, Some(IpVersion::Ipv4));
    assert_eq!(m.src_addr, Some(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10))));
    assert_eq!(
        m.dst_addr,
        Some(IpAddr::V4(Ipv4Addr::new(93, 184, 216, 34)))
    );
    assert_eq!(m.ip_protocol, Some(IpProtocol::Tcp));
    assert_eq!(m.ttl, 63);
    assert_eq!(m.ip_header_len, 20);
    assert!(!m.ipv4_options);
    assert_eq!(m.fragment, Fragment::None);
    assert_eq!(m.l4_offset, Some(34));
    assert_eq!(m.ports, Some((40000, 443)));
    let tcp = m.tcp.unwrap();
    assert_eq!(tcp.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(
        (tcp.seq_number, tcp.ack_number, tcp.window_len),
        (0x11223344, 0x55667788, 29200)
    );
    assert_eq!(tcp.header_len, 28);
    assert_eq!(m.payload_offset, Some(34 + 28));
    assert_eq!(m.payload_len, payload.len());
    assert_eq!(
        &frame[m.payload_offset.unwrap()..][..m.payload_len],
        payload
    );
    assert_eq!(m.ip_total_len, 20 + 28 + payload.len());
    assert_eq!(m.l3_end, frame.len());

    // Our views agree with etherparse's checksums, and our emitters rebuild the same bytes.
    let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
    let ip_repr = Ipv4Repr::parse(&ip).unwrap();
    let (s, d) = (IpAddr::V4(ip.src_addr()), IpAddr::V4(ip.dst_addr()));
    let seg = TcpPacket::new_checked(ip.payload()).unwrap();
    let tcp_repr = TcpRepr::parse(&seg, &s, &d).unwrap();
    let mut out = vec![0u8; frame.len()];
    let eth = crate::EthernetRepr {
        src_addr: EthernetAddress(SRC_MAC),
        dst_addr: EthernetAddress(DST_MAC),
        ethertype: EtherType::Ipv4,
    };
    eth.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
    // etherparse leaves the identification 0 and sets DF.
    ip_repr.emit(&mut Ipv4Packet::new_unchecked(&mut out[14..]));
    tcp_repr.emit(&mut TcpPacket::new_unchecked(&mut out[34..]), &s, &d);
    assert_eq!(out, frame);
}

#[test]
fn qinq_ipv6_udp_from_etherparse() {
    let src: Ipv6Addr = "2001:db8::10".parse().unwrap();
    let dst: Ipv6Addr = "2001:db8:1::53".parse().unwrap();
    let frame = write(|v| {
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .double_vlan(
                VlanId::try_new(100).unwrap(),
                VlanId::try_new(4000).unwrap(),
            )
            .ipv6(src.octets(), dst.octets(), 17)
            .udp(5353, 53)
            .write(v, b"query")
            .unwrap()
    });
    let m = parse_frame(&frame).unwrap();
    assert_eq!(m.vlan_count, 2);
    // etherparse writes 0x88a8 for the outer tag of a double VLAN.
    assert_eq!(m.vlan_tags()[0].tpid, EtherType::QinQ);
    assert_eq!(m.vlan_tags()[0].vid, 100);
    assert_eq!(m.vlan_tags()[1].tpid, EtherType::Vlan);
    assert_eq!(m.inner_vid(), Some(4000));
    assert_eq!(m.l3_offset, 22);
    assert_eq!(m.ethertype, EtherType::Ipv6);
    assert_eq!(m.src_addr, Some(IpAddr::V6(src)));
    assert_eq!(m.dst_addr, Some(IpAddr::V6(dst)));
    assert_eq!(m.ttl, 17);
    assert_eq!(m.ip_protocol, Some(IpProtocol::Udp));
    assert_eq!(m.l4_offset, Some(62));
    assert_eq!(m.ports, Some((5353, 53)));
    assert_eq!(m.payload_len, 5);
    let ip = Ipv6Packet::new_checked(&frame[22..]).unwrap();
    let u = UdpPacket::new_checked(ip.payload()).unwrap();
    assert!(u.verify_checksum(&src.into(), &dst.into()));
    let repr = UdpRepr::parse(&u, &src.into(), &dst.into()).unwrap();
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut UdpPacket::new_unchecked(&mut out[..]),
        &src.into(),
        &dst.into(),
    );
    assert_eq!(out, ip.payload());
    let ip_repr = Ipv6Repr::parse(&ip).unwrap();
    let mut out = [0u8; 40];
    ip_repr.emit(&mut Ipv6Packet::new_unchecked(&mut out[..]));
    assert_eq!(out, frame[22..62]);
}

#[test]
fn single_vlan_icmp_echo_from_etherparse() {
    let frame = write(|v| {
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .single_vlan(VlanId::try_new(42).unwrap())
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .icmpv4_echo_request(0xabcd, 7)
            .write(v, b"ping")
            .unwrap()
    });
    let m = parse_frame(&frame).unwrap();
    assert_eq!(
        m.vlan_tags(),
        &[VlanTag {
            tpid: EtherType::Vlan,
            pcp: 0,
            dei: false,
            vid: 42
        }]
    );
    assert_eq!(m.ip_protocol, Some(IpProtocol::Icmp));
    let icmp = m.icmp.unwrap();
    assert_eq!(
        (icmp.msg_type, icmp.code, icmp.ident, icmp.seq_no),
        (8, 0, Some(0xabcd), Some(7))
    );
    assert!(!icmp.is_error && icmp.inner.is_none());
    assert_eq!(m.ports, None);
    let l4 = &frame[m.l4_offset.unwrap()..];
    let p = Icmpv4Packet::new_checked(l4).unwrap();
    assert!(p.verify_checksum());
    let repr = crate::Icmpv4Repr::parse(&p).unwrap();
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]));
    assert_eq!(out, l4);
}

#[test]
fn icmpv6_echo_from_etherparse() {
    let src: Ipv6Addr = "fe80::1".parse().unwrap();
    let dst: Ipv6Addr = "ff02::1".parse().unwrap();
    let frame = write(|v| {
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .ipv6(src.octets(), dst.octets(), 255)
            .icmpv6_echo_reply(3, 4)
            .write(v, b"pong!")
            .unwrap()
    });
    let m = parse_frame(&frame).unwrap();
    let icmp = m.icmp.unwrap();
    assert_eq!(
        (icmp.msg_type, icmp.ident, icmp.seq_no),
        (129, Some(3), Some(4))
    );
    let l4 = &frame[54..];
    let p = Icmpv6Packet::new_checked(l4).unwrap();
    assert!(p.verify_checksum(&src, &dst));
    let repr = crate::Icmpv6Repr::parse(&p, &src, &dst).unwrap();
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut Icmpv6Packet::new_unchecked(&mut out[..]), &src, &dst);
    assert_eq!(out, l4);
}

#[test]
fn icmp_error_quotes_inner_tuple() {
    // The packet that could not be delivered: UDP 10.0.0.2:1234 -> 8.8.8.8:53.
    let inner = write(|v| {
        PacketBuilder::ipv4([10, 0, 0, 2], [8, 8, 8, 8], 64)
            .udp(1234, 53)
            .write(v, &[0; 20])
            .unwrap()
    });
    let frame = write(|v| {
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .ipv4([8, 8, 8, 8], [10, 0, 0, 2], 60)
            .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::Port,
            ))
            .write(v, &inner[..28])
            .unwrap()
    });
    let m = parse_frame(&frame).unwrap();
    let icmp = m.icmp.unwrap();
    assert!(icmp.is_error);
    assert_eq!((icmp.msg_type, icmp.code, icmp.ident), (3, 3, None));
    let i = icmp.inner.unwrap();
    assert_eq!(i.l3_offset, 42);
    assert_eq!(i.src_addr, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
    assert_eq!(i.dst_addr, IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)));
    assert_eq!(i.protocol, IpProtocol::Udp);
    assert_eq!(i.ports, Some((1234, 53)));
    assert_eq!(i.l4_offset, 62);

    // ICMPv6 packet too big quoting a TCP segment.
    let (a, b): (Ipv6Addr, Ipv6Addr) = (
        "2001:db8::1".parse().unwrap(),
        "2001:db8::2".parse().unwrap(),
    );
    let inner = write(|v| {
        PacketBuilder::ipv6(a.octets(), b.octets(), 64)
            .tcp(443, 50000, 1, 100)
            .write(v, &[])
            .unwrap()
    });
    let frame = write(|v| {
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .ipv6(b.octets(), a.octets(), 64)
            .icmpv6(etherparse::Icmpv6Type::PacketTooBig { mtu: 1280 })
            .write(v, &inner)
            .unwrap()
    });
    let m = parse_frame(&frame).unwrap();
    let icmp = m.icmp.unwrap();
    assert!(icmp.is_error);
    let i = icmp.inner.unwrap();
    assert_eq!((i.src_addr, i.dst_addr), (IpAddr::V6(a), IpAddr::V6(b)));
    assert_eq!((i.protocol, i.ports), (IpProtocol::Tcp, Some((443, 50000))));
}

#[test]
fn ipv4_options_and_fragments_from_etherparse() {
    let mut h = Ipv4Header::new(8 + 4, 64, IpNumber::UDP, [1, 2, 3, 4], [5, 6, 7, 8]).unwrap();
    h.options = [0x94u8, 0x04, 0x00, 0x00].into(); // router alert
    let frame = write(|v| {
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .ip(IpHeaders::Ipv4(h.clone(), Ipv4Extensions::default()))
            .udp(1, 2)
            .write(v, b"data")
            .unwrap()
    });
    let m = parse_frame(&frame).unwrap();
    assert!(m.ipv4_options);
    assert_eq!(m.ip_header_len, 24);
    assert_eq!(m.l4_offset, Some(14 + 24));
    assert_eq!(m.ports, Some((1, 2)));

    // A first fragment: the UDP length describes the whole datagram, larger than this fragment.
    let mut first = frame.clone();
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut first[14..]);
        ip.set_more_frags(true);
        ip.fill_checksum();
    }
    first[14 + 24 + 4..14 + 24 + 6].copy_from_slice(&1000u16.to_be_bytes());
    let m = parse_frame(&first).unwrap();
    assert_eq!(m.fragment, Fragment::First);
    assert_eq!(m.ports, Some((1, 2)));
    assert_eq!(m.payload_len, 4);

    // A later fragment: no L4 header is parsed.
    let mut later = frame.clone();
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut later[14..]);
        ip.set_frag_offset(1480);
        ip.fill_checksum();
    }
    let m = parse_frame(&later).unwrap();
    assert_eq!(m.fragment, Fragment::NonFirst);
    assert!(m.is_fragment());
    assert_eq!(m.ports, None);
    assert_eq!(m.payload_offset, None);
    assert_eq!(m.l4_offset, Some(38));
    assert_eq!(m.l4_len, 12);
}

#[test]
fn ipv6_extension_headers_from_etherparse() {
    let src: Ipv6Addr = "2001:db8::a".parse().unwrap();
    let dst: Ipv6Addr = "2001:db8::b".parse().unwrap();
    let exts = |frag_offset: u16| Ipv6Extensions {
        hop_by_hop_options: Some(
            Ipv6RawExtHeader::new_raw(IpNumber::TCP, &[1, 4, 0, 0, 0, 0]).unwrap(),
        ),
        destination_options: Some(
            Ipv6RawExtHeader::new_raw(IpNumber::TCP, &[1, 4, 0, 0, 0, 0]).unwrap(),
        ),
        routing: None,
        fragment: Some(Ipv6FragmentHeader::new(
            IpNumber::TCP,
            etherparse::IpFragOffset::try_new(frag_offset).unwrap(),
            // etherparse 0.16 puts the M flag in bit 7 of the fourth byte rather than bit 0
            // (RFC 8200 4.5); it is set by hand below.
            false,
            0xdead_beef,
        )),
        auth: None,
    };
    let header = Ipv6Header {
        traffic_class: 0xb8,
        flow_label: Default::default(),
        payload_length: 0,
        next_header: IpNumber::TCP,
        hop_limit: 9,
        source: src.octets(),
        destination: dst.octets(),
    };
    let frame = write(|v| {
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .ip(IpHeaders::Ipv6(header.clone(), exts(0)))
            .tcp(1, 2, 3, 4)
            .write(v, b"x")
            .unwrap()
    });
    let mut frame = frame;
    assert_eq!(frame[14 + 40 + 8], 44, "fragment header third");
    frame[14 + 40 + 16 + 3] |= 1;
    let m = parse_frame(&frame).unwrap();
    assert_eq!(m.ipv6_ext_count, 3);
    assert_eq!(m.ip_protocol, Some(IpProtocol::Tcp));
    assert_eq!(m.ip_header_len, 40 + 24);
    assert_eq!(m.fragment, Fragment::First);
    assert_eq!(m.dscp, 0xb8 >> 2);
    assert_eq!(m.ports, Some((1, 2)));
    assert_eq!(m.l4_offset, Some(14 + 64));
    let ext = Ipv6Packet::new_checked(&frame[14..])
        .unwrap()
        .extension_headers()
        .unwrap();
    let f = ext.fragment.unwrap();
    assert_eq!(
        (f.header_offset, f.frag_offset, f.more_frags, f.ident),
        (56, 0, true, 0xdead_beef)
    );

    let frame = write(|v| {
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .ip(IpHeaders::Ipv6(header.clone(), exts(100)))
            .tcp(1, 2, 3, 4)
            .write(v, b"x")
            .unwrap()
    });
    let m = parse_frame(&frame).unwrap();
    assert_eq!(m.fragment, Fragment::NonFirst);
    assert_eq!(m.ports, None);
}

fn pppoe_frame(ppp_proto: u16, ip: &[u8], pad: usize) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    f.extend_from_slice(&[0x88, 0x64, 0x11, 0x00, 0xbe, 0xef]);
    f.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
    f.extend_from_slice(&ppp_proto.to_be_bytes());
    f.extend_from_slice(ip);
    f.resize(f.len() + pad, 0);
    f
}

#[test]
fn pppoe_session_ipv4_and_ipv6() {
    let ip = write(|v| {
        PacketBuilder::ipv4([100, 64, 0, 1], [1, 1, 1, 1], 64)
            .udp(4000, 53)
            .write(v, b"q")
            .unwrap()
    });
    let f = pppoe_frame(0x0021, &ip, 7);
    let m = parse_frame(&f).unwrap();
    assert_eq!(m.pppoe_session, Some(0xbeef));
    assert_eq!(m.pppoe_offset, Some(14));
    assert_eq!(m.ppp_protocol, Some(PppProtocol::Ipv4));
    assert_eq!(m.ethertype, EtherType::Ipv4);
    assert_eq!(m.l3_offset, 22);
    assert_eq!(m.l3_end, 22 + ip.len());
    assert_eq!(m.ports, Some((4000, 53)));

    let ip6 = write(|v| {
        PacketBuilder::ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0xff; 16],
            64,
        )
        .tcp(1, 2, 3, 4)
        .write(v, &[])
        .unwrap()
    });
    let m = parse_frame(&pppoe_frame(0x0057, &ip6, 0)).unwrap();
    assert_eq!(m.ethertype, EtherType::Ipv6);
    assert_eq!(m.ip_protocol, Some(IpProtocol::Tcp));

    // LCP echo: PPP control, no L3.
    let m = parse_frame(&pppoe_frame(0xc021, &[9, 1, 0, 8, 0, 0, 0, 0], 0)).unwrap();
    assert_eq!(m.ethertype, EtherType::PppoeSession);
    assert_eq!(m.ppp_protocol, Some(PppProtocol::Lcp));
    assert_eq!(m.ip_version, None);

    // The IPv4 total length must fit inside the PPPoE length, not merely inside the frame.
    let mut short = pppoe_frame(0x0021, &ip, 40);
    short[18..20].copy_from_slice(&((ip.len() - 4 + 2) as u16).to_be_bytes());
    assert_eq!(parse_frame(&short), Err(ParseError::BadIpv4TotalLen));
}

#[test]
fn arp_request_bytes() {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&SRC_MAC);
    f.extend_from_slice(&[0x08, 0x06]);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&SRC_MAC);
    f.extend_from_slice(&[192, 168, 1, 1]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[192, 168, 1, 2]);
    f.resize(60, 0);
    let m = parse_frame(&f).unwrap();
    assert_eq!(m.ethertype, EtherType::Arp);
    assert!(m.dst_mac.is_broadcast());
    let arp = m.arp.unwrap();
    assert_eq!(arp.operation, crate::ArpOperation::Request);
    assert_eq!(arp.target_protocol_addr, Ipv4Addr::new(192, 168, 1, 2));
    assert_eq!(parse_frame(&f[..14 + 27]), Err(ParseError::TruncatedArp));
}

#[test]
fn ethernet_padding_is_not_payload() {
    let mut f = write(|v| {
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .ipv4([1, 1, 1, 1], [2, 2, 2, 2], 5)
            .udp(7, 9)
            .write(v, &[])
            .unwrap()
    });
    f.resize(60, 0xee);
    let m = parse_frame(&f).unwrap();
    assert_eq!(m.frame_len, 60);
    assert_eq!(m.l3_end, 14 + 28);
    assert_eq!(m.payload_len, 0);
}

/// A valid IPv4/UDP frame the error cases below break one field at a time.
fn udp4() -> Vec<u8> {
    write(|v| {
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .ipv4([1, 1, 1, 1], [2, 2, 2, 2], 5)
            .udp(7, 9)
            .write(v, b"abcd")
            .unwrap()
    })
}

fn refill_ipv4(f: &mut [u8]) {
    Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
}

#[test]
fn every_reason_is_reachable() {
    let mut seen = std::collections::BTreeSet::new();
    let mut expect = |f: &[u8], e: ParseError| {
        assert_eq!(parse_frame(f), Err(e), "{}", e.name());
        seen.insert(e);
    };
    let good = udp4();
    expect(&good[..13], ParseError::TruncatedEthernet);

    let mut vlan = good[..12].to_vec();
    vlan.extend_from_slice(&[0x81, 0x00, 0x00]);
    expect(&vlan, ParseError::TruncatedVlan);
    let mut vlan3 = good[..12].to_vec();
    for _ in 0..3 {
        vlan3.extend_from_slice(&[0x81, 0x00, 0x00, 0x01]);
    }
    vlan3.extend_from_slice(&[0x08, 0x00]);
    expect(&vlan3, ParseError::TooManyVlanTags);

    let ip = &good[14..];
    expect(
        &pppoe_frame(0x0021, ip, 0)[..21],
        ParseError::TruncatedPppoe,
    );
    let mut bad = pppoe_frame(0x0021, ip, 0);
    bad[14] = 0x21;
    expect(&bad, ParseError::BadPppoeHeader);
    let mut bad = pppoe_frame(0x0021, ip, 0);
    bad[15] = 0x09;
    expect(&bad, ParseError::BadPppoeHeader);
    let mut bad = pppoe_frame(0x0021, ip, 0);
    bad[19] += 1;
    expect(&bad, ParseError::BadPppoeLen);

    let mut arp = good[..12].to_vec();
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6]);
    expect(&arp, ParseError::TruncatedArp);

    expect(&good[..33], ParseError::TruncatedIpv4);
    let mut f = good.clone();
    f[14] = 0x65;
    expect(&f, ParseError::BadIpVersion);
    let mut f = good.clone();
    f[14] = 0x44;
    expect(&f, ParseError::BadIpv4HeaderLen);
    let mut f = good.clone();
    f[14] = 0x4f;
    expect(&f, ParseError::BadIpv4HeaderLen);
    let mut f = good.clone();
    f[24] ^= 0xff;
    expect(&f, ParseError::BadIpv4Checksum);
    let mut f = good.clone();
    f[17] += 1;
    refill_ipv4(&mut f);
    expect(&f, ParseError::BadIpv4TotalLen);
    let mut f = good.clone();
    f[16..18].copy_from_slice(&19u16.to_be_bytes());
    refill_ipv4(&mut f);
    expect(&f, ParseError::BadIpv4TotalLen);

    let v6 = write(|v| {
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .ipv6([1; 16], [2; 16], 5)
            .udp(7, 9)
            .write(v, b"abcd")
            .unwrap()
    });
    expect(&v6[..53], ParseError::TruncatedIpv6);
    let mut f = v6.clone();
    f[14] = 0x40;
    expect(&f, ParseError::BadIpVersion);
    expect(&v6[..v6.len() - 1], ParseError::Ipv6PayloadLen);
    let mut f = v6.clone();
    f[20] = 60; // destination options, whose length byte (the UDP source port's low byte) is 7
    expect(&f, ParseError::TruncatedIpv6Ext);
    let mut f = v6.clone();
    f[20] = 60;
    f[54] = 0; // ...followed by hop-by-hop, which must come first
    f[55] = 0;
    expect(&f, ParseError::BadIpv6Ext);

    let tcp = write(|v| {
        PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
            .ipv4([1, 1, 1, 1], [2, 2, 2, 2], 5)
            .tcp(1, 2, 3, 4)
            .write(v, &[])
            .unwrap()
    });
    let mut f = tcp[..14 + 20 + 19].to_vec();
    f[17] -= 1;
    refill_ipv4(&mut f);
    expect(&f, ParseError::TruncatedTcp);
    let mut f = tcp.clone();
    f[46] = 0x40;
    expect(&f, ParseError::BadTcpDataOffset);
    let mut f = tcp.clone();
    f[46] = 0x60;
    expect(&f, ParseError::BadTcpDataOffset);

    let mut f = good[..14 + 20 + 7].to_vec();
    f[16..18].copy_from_slice(&27u16.to_be_bytes());
    refill_ipv4(&mut f);
    expect(&f, ParseError::TruncatedUdp);
    let mut f = good.clone();
    f[39] = 7;
    expect(&f, ParseError::BadUdpLen);
    let mut f = good.clone();
    f[39] = 13;
    expect(&f, ParseError::BadUdpLen);

    let mut f = good.clone();
    f[23] = 1; // protocol ICMP, 12 bytes left: fine; cut to 7
    f.truncate(14 + 20 + 7);
    f[16..18].copy_from_slice(&27u16.to_be_bytes());
    refill_ipv4(&mut f);
    expect(&f, ParseError::TruncatedIcmp);
    let mut f = v6.clone();
    f[20] = 58;
    f.truncate(54 + 7);
    f[18..20].copy_from_slice(&7u16.to_be_bytes());
    expect(&f, ParseError::TruncatedIcmpv6);

    let all: std::collections::BTreeSet<_> = ParseError::ALL.iter().copied().collect();
    assert_eq!(seen, all, "a reason without a test");
}

#[test]
fn reason_names_are_stable_keys() {
    let mut names = std::collections::HashSet::new();
    for (i, e) in ParseError::ALL.iter().enumerate() {
        assert_eq!(e.index(), i);
        let n = e.name();
        assert!(
            n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{n}"
        );
        assert!(names.insert(n), "duplicate {n}");
        assert_eq!(e.to_string(), n);
    }
    assert_eq!(ParseError::COUNT, names.len());
    assert_eq!(ParseError::BadIpv4Checksum.name(), "bad_ipv4_checksum");
    assert_eq!(ParseError::Ipv6PayloadLen.name(), "ipv6_payload_len");
}

/// Offsets a successful parse hands out must slice the frame without panicking.
fn check_offsets(m: &PacketMeta, frame: &[u8]) {
    assert_eq!(m.frame_len, frame.len());
    assert!(m.l3_offset <= m.l3_end && m.l3_end <= frame.len());
    if let Some(l4) = m.l4_offset {
        assert!(l4 <= m.l3_end);
        assert_eq!(l4 + m.l4_len, m.l3_end);
    }
    if let Some(p) = m.payload_offset {
        assert!(p + m.payload_len <= m.l3_end);
    }
    if let Some(i) = m.icmp.and_then(|i| i.inner) {
        assert!(i.l3_offset <= i.l4_offset);
        assert!(i.l3_offset <= frame.len());
    }
    let _ = &frame[m.l3_offset..m.l3_end];
}

/// Frames of every supported shape, from random fields.
fn arb_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        0u8..3,
        0u8..4,
        any::<bool>(),
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        any::<[u8; 16]>(),
        any::<(u16, u16, u32, u8)>(),
        proptest::collection::vec(any::<u8>(), 0..48),
        any::<bool>(),
    )
        .prop_map(
            |(vlans, l4, v6, s4, d4, s6, (sp, dp, seq, ttl), payload, pppoe)| {
                let b = PacketBuilder::ethernet2(SRC_MAC, DST_MAC);
                let mut out = Vec::new();
                macro_rules! finish {
                    ($ip:expr) => {{
                        let ip = $ip;
                        match (l4, v6) {
                            (0, _) => ip
                                .tcp(sp, dp, seq, 100)
                                .ack(seq)
                                .write(&mut out, &payload)
                                .unwrap(),
                            (1, _) => ip.udp(sp, dp).write(&mut out, &payload).unwrap(),
                            (_, false) => ip
                                .icmpv4_echo_request(sp, dp)
                                .write(&mut out, &payload)
                                .unwrap(),
                            (_, true) => ip
                                .icmpv6_echo_request(sp, dp)
                                .write(&mut out, &payload)
                                .unwrap(),
                        }
                    }};
                }
                match (vlans, v6) {
                    (0, false) => finish!(b.ipv4(s4, d4, ttl)),
                    (0, true) => finish!(b.ipv6(s6, [0x20; 16], ttl)),
                    (1, false) => finish!(b
                        .single_vlan(VlanId::try_new(sp & 0xfff).unwrap())
                        .ipv4(s4, d4, ttl)),
                    (1, true) => finish!(b
                        .single_vlan(VlanId::try_new(dp & 0xfff).unwrap())
                        .ipv6(s6, [0x20; 16], ttl)),
                    (_, false) => finish!(b
                        .double_vlan(VlanId::try_new(1).unwrap(), VlanId::try_new(2).unwrap())
                        .ipv4(s4, d4, ttl)),
                    (_, true) => finish!(b
                        .double_vlan(VlanId::try_new(3).unwrap(), VlanId::try_new(4).unwrap())
                        .ipv6(s6, [0x20; 16], ttl)),
                }
                if pppoe && vlans == 0 {
                    let ip = out[14..].to_vec();
                    pppoe_frame(if v6 { 0x0057 } else { 0x0021 }, &ip, 0)
                } else {
                    out
                }
            },
        )
}

/// Rebuilds a frame from our value types alone: Ethernet, VLAN tags, IP, L4.
fn reemit(frame: &[u8]) -> Vec<u8> {
    use crate::{EthernetRepr, Icmpv4Repr, Icmpv6Repr, VlanPacket, VlanRepr};
    let mut out = vec![0u8; frame.len()];
    let eth = EthernetRepr::parse(&EthernetFrame::new_checked(frame).unwrap()).unwrap();
    eth.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
    let mut at = 14;
    let mut ethertype = eth.ethertype;
    while ethertype.is_vlan() {
        let tag = VlanRepr::parse(&VlanPacket::new_checked(&frame[at..]).unwrap()).unwrap();
        tag.emit(&mut VlanPacket::new_unchecked(&mut out[at..]));
        ethertype = tag.ethertype;
        at += 4;
    }
    let (src, dst, proto, l4, end) = match ethertype {
        EtherType::Ipv4 => {
            let ip = Ipv4Repr::parse(&Ipv4Packet::new_checked(&frame[at..]).unwrap()).unwrap();
            ip.emit(&mut Ipv4Packet::new_unchecked(&mut out[at..]));
            let l4 = at + ip.buffer_len();
            (
                IpAddr::V4(ip.src_addr),
                IpAddr::V4(ip.dst_addr),
                ip.next_header,
                l4,
                l4 + ip.payload_len,
            )
        }
        EtherType::Ipv6 => {
            let ip = Ipv6Repr::parse(&Ipv6Packet::new_checked(&frame[at..]).unwrap()).unwrap();
            ip.emit(&mut Ipv6Packet::new_unchecked(&mut out[at..]));
            let l4 = at + ip.buffer_len();
            (
                IpAddr::V6(ip.src_addr),
                IpAddr::V6(ip.dst_addr),
                ip.next_header,
                l4,
                l4 + ip.payload_len,
            )
        }
        other => panic!("{other}"),
    };
    let (seg, out_seg) = (&frame[l4..end], &mut out[l4..end]);
    match (proto, src, dst) {
        (IpProtocol::Tcp, ..) => TcpRepr::parse(&TcpPacket::new_checked(seg).unwrap(), &src, &dst)
            .unwrap()
            .emit(&mut TcpPacket::new_unchecked(out_seg), &src, &dst),
        (IpProtocol::Udp, ..) => UdpRepr::parse(&UdpPacket::new_checked(seg).unwrap(), &src, &dst)
            .unwrap()
            .emit(&mut UdpPacket::new_unchecked(out_seg), &src, &dst),
        (IpProtocol::Icmp, ..) => Icmpv4Repr::parse(&Icmpv4Packet::new_checked(seg).unwrap())
            .unwrap()
            .emit(&mut Icmpv4Packet::new_unchecked(out_seg)),
        (IpProtocol::Icmpv6, IpAddr::V6(s), IpAddr::V6(d)) => {
            Icmpv6Repr::parse(&Icmpv6Packet::new_checked(seg).unwrap(), &s, &d)
                .unwrap()
                .emit(&mut Icmpv6Packet::new_unchecked(out_seg), &s, &d)
        }
        other => panic!("{other:?}"),
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Our value types parse etherparse's frames (checksums included) and emit them back byte
    /// for byte.
    #[test]
    fn value_types_reemit_etherparse_frames(frame in arb_frame()) {
        if frame[12..14] != [0x88, 0x64] {
            prop_assert_eq!(reemit(&frame), frame);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(m) = parse_frame(&bytes) {
            check_offsets(&m, &bytes);
        }
    }

    /// Random bytes behind a plausible L2/L3 prefix, so the walk gets past the first checks.
    #[test]
    fn random_bytes_behind_headers_never_panic(
        ethertype in prop::sample::select(vec![0x0800u16, 0x86dd, 0x8100, 0x88a8, 0x8864, 0x0806]),
        mut rest in proptest::collection::vec(any::<u8>(), 0..160),
        ver in prop::sample::select(vec![0x45u8, 0x46, 0x4f, 0x60, 0x11]),
        fix_checksum in any::<bool>(),
    ) {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        if let Some(b) = rest.first_mut() { *b = ver; }
        f.extend_from_slice(&rest);
        if fix_checksum && ethertype == 0x0800 && f.len() >= 34 {
            let hlen = ((f[14] & 0xf) as usize) * 4;
            if hlen >= 20 && f.len() >= 14 + hlen {
                f[24] = 0; f[25] = 0;
                let c = crate::checksum::checksum(&f[14..14 + hlen]);
                f[24..26].copy_from_slice(&c.to_be_bytes());
            }
        }
        if let Ok(m) = parse_frame(&f) {
            check_offsets(&m, &f);
        }
    }

    /// Valid frames parse to what etherparse says they hold.
    #[test]
    fn valid_frames_agree_with_etherparse(frame in arb_frame()) {
        let m = parse_frame(&frame).unwrap();
        check_offsets(&m, &frame);
        if m.pppoe_session.is_some() {
            return Ok(());
        }
        let h = etherparse::PacketHeaders::from_ethernet_slice(&frame).unwrap();
        match h.net.unwrap() {
            etherparse::NetHeaders::Ipv4(ip, _) => {
                prop_assert_eq!(m.src_addr, Some(IpAddr::V4(ip.source.into())));
                prop_assert_eq!(m.dst_addr, Some(IpAddr::V4(ip.destination.into())));
                prop_assert_eq!(m.ttl, ip.time_to_live);
                prop_assert_eq!(m.ip_total_len, ip.total_len as usize);
            }
            etherparse::NetHeaders::Ipv6(ip, _) => {
                prop_assert_eq!(m.src_addr, Some(IpAddr::V6(ip.source.into())));
                prop_assert_eq!(m.ttl, ip.hop_limit);
                prop_assert_eq!(m.ip_total_len, 40 + ip.payload_length as usize);
            }
        }
        match h.transport.unwrap() {
            etherparse::TransportHeader::Tcp(t) => {
                prop_assert_eq!(m.ports, Some((t.source_port, t.destination_port)));
                prop_assert_eq!(m.tcp.unwrap().seq_number, t.sequence_number);
                prop_assert_eq!(m.tcp_flags(), TcpFlags::ACK);
            }
            etherparse::TransportHeader::Udp(u) => {
                prop_assert_eq!(m.ports, Some((u.source_port, u.destination_port)));
                prop_assert_eq!(m.payload_len + 8, u.length as usize);
            }
            etherparse::TransportHeader::Icmpv4(i) => {
                prop_assert_eq!(m.icmp.unwrap().msg_type, i.to_bytes()[0]);
            }
            etherparse::TransportHeader::Icmpv6(i) => {
                prop_assert_eq!(m.icmp.unwrap().msg_type, i.to_bytes()[0]);
            }
        }
        prop_assert_eq!(&frame[m.payload_offset.unwrap()..][..m.payload_len], h.payload.slice());
    }

    /// Valid frames with bytes flipped, cut short or grown never panic the parser.
    #[test]
    fn mutated_frames_never_panic(
        mut frame in arb_frame(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
        refill in any::<bool>(),
    ) {
        for (at, v) in flips {
            let i = at.index(frame.len());
            frame[i] = v;
        }
        if do_cut {
            frame.truncate(cut.index(frame.len() + 1));
        }
        if refill && frame.len() >= 34 && frame[12..14] == [0x08, 0x00] {
            let hlen = ((frame[14] & 0xf) as usize) * 4;
            if hlen >= 20 && frame.len() >= 14 + hlen {
                Ipv4Packet::new_unchecked(&mut frame[14..]).fill_checksum();
            }
        }
        if let Ok(m) = parse_frame(&frame) {
            check_offsets(&m, &frame);
        }
    }
}
