//! The single-pass frame parser: Ethernet, up to two VLAN tags, PPPoE session, then IPv4, IPv6
//! (with its extension headers) or ARP, then TCP, UDP, ICMP or ICMPv6.
//!
//! It never panics and never allocates, whatever the bytes: every read is bounds-checked by a
//! view's `check_len` or by `get`. A frame it refuses gets a [`ParseError`], whose
//! [`ParseError::name`] is a stable key for a drop counter.

use crate::arp::{ArpPacket, ArpRepr};
use crate::ethernet::{self, EtherType, EthernetAddress, EthernetFrame};
use crate::icmpv4::{self, Icmpv4Message};
use crate::icmpv6::{self, Icmpv6Message};
use crate::ip::{IpProtocol, IpVersion};
use crate::ipv4::{self, Ipv4Packet};
use crate::ipv6::{self, Ipv6Packet};
use crate::pppoe::{self, PppProtocol, PppoeSession};
use crate::tcp::{self, TcpFlags, TcpPacket};
use crate::udp::{self, UdpPacket};
use crate::vlan::{self, VlanPacket};
use crate::{read_u16, Error};
use std::net::IpAddr;

macro_rules! parse_errors {
    ($( $(#[$m:meta])* $variant:ident = $name:literal ),+ $(,)?) => {
        /// Why a frame was refused. Each reason has a stable snake_case [`name`](Self::name) and
        /// a dense [`index`](Self::index), for per-reason drop counters.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ParseError {
            $( $(#[$m])* $variant ),+
        }

        impl ParseError {
            /// Every reason, in `index` order.
            pub const ALL: &'static [ParseError] = &[$( ParseError::$variant ),+];
            /// The number of reasons, for sizing a counter array.
            pub const COUNT: usize = Self::ALL.len();

            /// The stable counter key.
            pub const fn name(&self) -> &'static str {
                match self { $( ParseError::$variant => $name ),+ }
            }

            /// Position in [`ParseError::ALL`].
            pub const fn index(&self) -> usize {
                *self as usize
            }
        }
    };
}

parse_errors! {
    /// Shorter than an Ethernet header.
    TruncatedEthernet = "truncated_ethernet",
    /// A VLAN TPID without the four bytes of its tag.
    TruncatedVlan = "truncated_vlan",
    /// More than two stacked VLAN tags.
    TooManyVlanTags = "too_many_vlan_tags",
    /// A PPPoE session frame shorter than its header and PPP protocol field.
    TruncatedPppoe = "truncated_pppoe",
    /// PPPoE version/type other than 1/1, or a code other than 0 on a session frame.
    BadPppoeHeader = "bad_pppoe_header",
    /// PPPoE length below 2 or past the end of the frame.
    BadPppoeLen = "bad_pppoe_len",
    /// ARP shorter than its fixed part or its addresses.
    TruncatedArp = "truncated_arp",
    /// Shorter than an IPv4 header.
    TruncatedIpv4 = "truncated_ipv4",
    /// The version nibble does not match the EtherType (or PPP protocol).
    BadIpVersion = "bad_ip_version",
    /// IHL below 5, or a header longer than the frame.
    BadIpv4HeaderLen = "bad_ipv4_header_len",
    /// IPv4 header checksum does not verify.
    BadIpv4Checksum = "bad_ipv4_checksum",
    /// IPv4 total length below the header length or past the end of the frame.
    BadIpv4TotalLen = "bad_ipv4_total_len",
    /// Shorter than an IPv6 header.
    TruncatedIpv6 = "truncated_ipv6",
    /// IPv6 payload length past the end of the frame.
    Ipv6PayloadLen = "ipv6_payload_len",
    /// An IPv6 extension header runs past the payload.
    TruncatedIpv6Ext = "truncated_ipv6_ext",
    /// Hop-by-hop options not first, or too long an extension header chain.
    BadIpv6Ext = "bad_ipv6_ext",
    /// Shorter than a TCP header.
    TruncatedTcp = "truncated_tcp",
    /// TCP data offset below 5 or past the end of the segment.
    BadTcpDataOffset = "bad_tcp_data_offset",
    /// Shorter than a UDP header.
    TruncatedUdp = "truncated_udp",
    /// UDP length below 8 or past the end of the IP payload.
    BadUdpLen = "bad_udp_len",
    /// Shorter than an ICMP header.
    TruncatedIcmp = "truncated_icmp",
    /// Shorter than an ICMPv6 header.
    TruncatedIcmpv6 = "truncated_icmpv6",
}

impl core::fmt::Display for ParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for ParseError {}

/// One VLAN tag of a frame, outermost first in [`PacketMeta::vlans`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanTag {
    /// The TPID that announced the tag (0x8100 or 0x88a8).
    pub tpid: EtherType,
    pub pcp: u8,
    pub dei: bool,
    pub vid: u16,
}

impl VlanTag {
    const NONE: VlanTag = VlanTag {
        tpid: EtherType::Vlan,
        pcp: 0,
        dei: false,
        vid: 0,
    };
}

/// Whether the IP packet is a fragment, as the fast path decides to punt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Fragment {
    /// Not fragmented.
    #[default]
    None,
    /// Offset 0: the L4 header is present and parsed, but the L4 length fields describe the
    /// whole datagram, not this fragment.
    First,
    /// A later fragment: no L4 header.
    NonFirst,
}

/// TCP header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpMeta {
    pub flags: TcpFlags,
    pub seq_number: u32,
    pub ack_number: u32,
    pub window_len: u16,
    pub header_len: u8,
}

/// The packet quoted by an ICMP or ICMPv6 error, as far as the quote goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InnerMeta {
    /// Offset of the quoted IP header in the frame.
    pub l3_offset: usize,
    pub src_addr: IpAddr,
    pub dst_addr: IpAddr,
    pub protocol: IpProtocol,
    /// Offset of the quoted L4 header in the frame.
    pub l4_offset: usize,
    /// Source and destination port, when the quote holds a TCP, UDP, UDP-Lite or SCTP header.
    pub ports: Option<(u16, u16)>,
    /// The identifier, when the quote holds an ICMP/ICMPv6 echo.
    pub icmp_ident: Option<u16>,
}

/// ICMP / ICMPv6 header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IcmpMeta {
    /// The raw type; [`Icmpv4Message`] or [`Icmpv6Message`] by [`PacketMeta::ip_version`].
    pub msg_type: u8,
    pub code: u8,
    /// Echo (and timestamp) identifier.
    pub ident: Option<u16>,
    pub seq_no: Option<u16>,
    /// Set for error messages.
    pub is_error: bool,
    /// The quoted packet of an error message, `None` if absent or unreadable.
    pub inner: Option<InnerMeta>,
}

/// Everything the dataplane keys on, from one pass over a frame. Offsets count from the start of
/// the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PacketMeta {
    pub frame_len: usize,
    pub dst_mac: EthernetAddress,
    pub src_mac: EthernetAddress,
    /// Number of VLAN tags (0..=2); only `vlans[..vlan_count]` is meaningful.
    pub vlan_count: u8,
    pub vlans: [VlanTag; 2],
    /// Offset of the PPPoE header, when the frame is a PPPoE session frame.
    pub pppoe_offset: Option<usize>,
    pub pppoe_session: Option<u16>,
    pub ppp_protocol: Option<PppProtocol>,
    /// The EtherType of the L3 payload after VLAN tags and PPPoE: `Ipv4`/`Ipv6` for IP over
    /// PPPoE, `PppoeSession` for PPP control traffic.
    pub ethertype: EtherType,
    /// Where L3 starts (equal to the end of L2 even when L3 is not understood).
    pub l3_offset: usize,
    /// End of the L3 packet in the frame: the IP total length, the PPPoE length or the frame end.
    /// Bytes past it are link padding.
    pub l3_end: usize,
    pub ip_version: Option<IpVersion>,
    pub src_addr: Option<IpAddr>,
    pub dst_addr: Option<IpAddr>,
    /// The upper-layer protocol (for IPv6, after the extension headers).
    pub ip_protocol: Option<IpProtocol>,
    /// TTL or hop limit.
    pub ttl: u8,
    pub dscp: u8,
    pub ecn: u8,
    /// IPv4 header length (with options) or IPv6 header plus extension headers.
    pub ip_header_len: usize,
    /// IPv4 total length, or IPv6 header plus payload length.
    pub ip_total_len: usize,
    /// IPv4 header longer than 20 bytes.
    pub ipv4_options: bool,
    /// Extension headers walked.
    pub ipv6_ext_count: u8,
    pub fragment: Fragment,
    /// Start of the upper-layer bytes (the L4 header, or fragment data for later fragments).
    pub l4_offset: Option<usize>,
    /// Upper-layer bytes up to the IP end.
    pub l4_len: usize,
    /// Start of the L4 payload, when the L4 header was parsed (TCP, UDP, ICMP, ICMPv6).
    pub payload_offset: Option<usize>,
    /// L4 payload length: bounded by the UDP length for UDP, else by the IP end.
    pub payload_len: usize,
    /// TCP/UDP source and destination ports.
    pub ports: Option<(u16, u16)>,
    pub tcp: Option<TcpMeta>,
    pub icmp: Option<IcmpMeta>,
    /// Set for well-formed Ethernet/IPv4 ARP.
    pub arp: Option<ArpRepr>,
}

impl PacketMeta {
    fn new(frame_len: usize) -> PacketMeta {
        PacketMeta {
            frame_len,
            dst_mac: EthernetAddress::default(),
            src_mac: EthernetAddress::default(),
            vlan_count: 0,
            vlans: [VlanTag::NONE; 2],
            pppoe_offset: None,
            pppoe_session: None,
            ppp_protocol: None,
            ethertype: EtherType::Unknown(0),
            l3_offset: 0,
            l3_end: frame_len,
            ip_version: None,
            src_addr: None,
            dst_addr: None,
            ip_protocol: None,
            ttl: 0,
            dscp: 0,
            ecn: 0,
            ip_header_len: 0,
            ip_total_len: 0,
            ipv4_options: false,
            ipv6_ext_count: 0,
            fragment: Fragment::None,
            l4_offset: None,
            l4_len: 0,
            payload_offset: None,
            payload_len: 0,
            ports: None,
            tcp: None,
            icmp: None,
            arp: None,
        }
    }

    /// The VLAN tags present, outermost first.
    pub fn vlan_tags(&self) -> &[VlanTag] {
        &self.vlans[..(self.vlan_count as usize).min(2)]
    }

    /// The VLAN id of the innermost tag.
    pub fn inner_vid(&self) -> Option<u16> {
        self.vlan_tags().last().map(|t| t.vid)
    }

    pub fn tcp_flags(&self) -> TcpFlags {
        self.tcp.map_or(TcpFlags::NONE, |t| t.flags)
    }

    pub fn is_fragment(&self) -> bool {
        self.fragment != Fragment::None
    }

    /// Length of the L2 header (Ethernet, tags, PPPoE) in front of L3.
    pub fn l2_len(&self) -> usize {
        self.l3_offset
    }
}

/// Parses a frame in one pass. See the module documentation.
pub fn parse_frame(frame: &[u8]) -> Result<PacketMeta, ParseError> {
    let mut m = PacketMeta::new(frame.len());
    let eth = EthernetFrame::new_checked(frame).map_err(|_| ParseError::TruncatedEthernet)?;
    m.dst_mac = eth.dst_addr();
    m.src_mac = eth.src_addr();
    let mut ethertype = eth.ethertype();
    let mut at = ethernet::HEADER_LEN;

    while ethertype.is_vlan() {
        if m.vlan_count == 2 {
            return Err(ParseError::TooManyVlanTags);
        }
        let tag = frame.get(at..).ok_or(ParseError::TruncatedVlan)?;
        let tag = VlanPacket::new_checked(tag).map_err(|_| ParseError::TruncatedVlan)?;
        m.vlans[m.vlan_count as usize] = VlanTag {
            tpid: ethertype,
            pcp: tag.pcp(),
            dei: tag.dei(),
            vid: tag.vid(),
        };
        m.vlan_count += 1;
        ethertype = tag.ethertype();
        at += vlan::HEADER_LEN;
    }

    let mut end = frame.len();
    if ethertype == EtherType::PppoeSession {
        let p = frame.get(at..).unwrap_or(&[]);
        if p.len() < pppoe::HEADER_LEN {
            return Err(ParseError::TruncatedPppoe);
        }
        let s = PppoeSession::new_unchecked(p);
        if s.version() != 1 || s.ptype() != 1 || s.code() != 0 {
            return Err(ParseError::BadPppoeHeader);
        }
        s.check_len().map_err(|_| ParseError::BadPppoeLen)?;
        m.pppoe_offset = Some(at);
        m.pppoe_session = Some(s.session_id());
        let proto = s.protocol();
        m.ppp_protocol = Some(proto);
        end = at + pppoe::PPPOE_HEADER_LEN + s.length() as usize;
        at += pppoe::HEADER_LEN;
        ethertype = match proto {
            PppProtocol::Ipv4 => EtherType::Ipv4,
            PppProtocol::Ipv6 => EtherType::Ipv6,
            _ => EtherType::PppoeSession,
        };
    }

    m.ethertype = ethertype;
    m.l3_offset = at;
    m.l3_end = end;
    let l3 = frame.get(at..end).unwrap_or(&[]);
    match ethertype {
        EtherType::Ipv4 => parse_ipv4(&mut m, l3)?,
        EtherType::Ipv6 => parse_ipv6(&mut m, l3)?,
        EtherType::Arp => {
            let p = ArpPacket::new_checked(l3).map_err(|_| ParseError::TruncatedArp)?;
            m.arp = ArpRepr::parse(&p).ok();
        }
        _ => {}
    }
    Ok(m)
}

fn parse_ipv4(m: &mut PacketMeta, l3: &[u8]) -> Result<(), ParseError> {
    if l3.len() < ipv4::HEADER_LEN {
        return Err(ParseError::TruncatedIpv4);
    }
    let p = Ipv4Packet::new_unchecked(l3);
    if p.version() != 4 {
        return Err(ParseError::BadIpVersion);
    }
    let hlen = p.header_len() as usize;
    if hlen < ipv4::HEADER_LEN || hlen > l3.len() {
        return Err(ParseError::BadIpv4HeaderLen);
    }
    if !p.verify_checksum() {
        return Err(ParseError::BadIpv4Checksum);
    }
    let total = p.total_len() as usize;
    if total < hlen || total > l3.len() {
        return Err(ParseError::BadIpv4TotalLen);
    }
    // From here on `p` passes `check_len`.
    let src = p.src_addr();
    let dst = p.dst_addr();
    let proto = p.protocol();
    m.ip_version = Some(IpVersion::Ipv4);
    m.src_addr = Some(IpAddr::V4(src));
    m.dst_addr = Some(IpAddr::V4(dst));
    m.ip_protocol = Some(proto);
    m.ttl = p.ttl();
    m.dscp = p.dscp();
    m.ecn = p.ecn();
    m.ip_header_len = hlen;
    m.ip_total_len = total;
    m.ipv4_options = hlen > ipv4::HEADER_LEN;
    m.l3_end = m.l3_offset + total;
    m.fragment = if p.frag_offset() != 0 {
        Fragment::NonFirst
    } else if p.more_frags() {
        Fragment::First
    } else {
        Fragment::None
    };
    let l4_offset = m.l3_offset + hlen;
    m.l4_offset = Some(l4_offset);
    m.l4_len = total - hlen;
    m.payload_len = m.l4_len;
    if m.fragment != Fragment::NonFirst {
        parse_l4(m, &l3[hlen..total], l4_offset, proto, IpVersion::Ipv4)?;
    }
    Ok(())
}

fn parse_ipv6(m: &mut PacketMeta, l3: &[u8]) -> Result<(), ParseError> {
    if l3.len() < ipv6::HEADER_LEN {
        return Err(ParseError::TruncatedIpv6);
    }
    let p = Ipv6Packet::new_unchecked(l3);
    if p.version() != 6 {
        return Err(ParseError::BadIpVersion);
    }
    let total = ipv6::HEADER_LEN + p.payload_len() as usize;
    if total > l3.len() {
        return Err(ParseError::Ipv6PayloadLen);
    }
    let ext = p.extension_headers().map_err(|e| match e {
        Error::Truncated => ParseError::TruncatedIpv6Ext,
        Error::Malformed => ParseError::BadIpv6Ext,
    })?;
    m.ip_version = Some(IpVersion::Ipv6);
    m.src_addr = Some(IpAddr::V6(p.src_addr()));
    m.dst_addr = Some(IpAddr::V6(p.dst_addr()));
    m.ip_protocol = Some(ext.upper_protocol);
    m.ttl = p.hop_limit();
    m.dscp = p.dscp();
    m.ecn = p.ecn();
    m.ip_header_len = ext.upper_offset;
    m.ip_total_len = total;
    m.ipv6_ext_count = ext.ext_count;
    m.l3_end = m.l3_offset + total;
    m.fragment = match ext.fragment {
        None => Fragment::None,
        Some(f) if f.frag_offset == 0 => Fragment::First,
        Some(_) => Fragment::NonFirst,
    };
    let l4_offset = m.l3_offset + ext.upper_offset;
    m.l4_offset = Some(l4_offset);
    m.l4_len = total - ext.upper_offset;
    m.payload_len = m.l4_len;
    if m.fragment != Fragment::NonFirst {
        let l4 = l3.get(ext.upper_offset..total).unwrap_or(&[]);
        parse_l4(m, l4, l4_offset, ext.upper_protocol, IpVersion::Ipv6)?;
    }
    Ok(())
}

fn parse_l4(
    m: &mut PacketMeta,
    l4: &[u8],
    l4_offset: usize,
    proto: IpProtocol,
    version: IpVersion,
) -> Result<(), ParseError> {
    match (proto, version) {
        (IpProtocol::Tcp, _) => {
            if l4.len() < tcp::HEADER_LEN {
                return Err(ParseError::TruncatedTcp);
            }
            let t = TcpPacket::new_unchecked(l4);
            let hlen = t.header_len() as usize;
            if hlen < tcp::HEADER_LEN || hlen > l4.len() {
                return Err(ParseError::BadTcpDataOffset);
            }
            m.ports = Some((t.src_port(), t.dst_port()));
            m.tcp = Some(TcpMeta {
                flags: t.flags(),
                seq_number: t.seq_number(),
                ack_number: t.ack_number(),
                window_len: t.window_len(),
                header_len: hlen as u8,
            });
            m.payload_offset = Some(l4_offset + hlen);
            m.payload_len = l4.len() - hlen;
        }
        (IpProtocol::Udp, _) => {
            if l4.len() < udp::HEADER_LEN {
                return Err(ParseError::TruncatedUdp);
            }
            let u = UdpPacket::new_unchecked(l4);
            let ulen = u.len() as usize;
            // A first fragment's UDP length covers the whole datagram, not this fragment.
            let payload_len = if m.fragment == Fragment::First {
                l4.len() - udp::HEADER_LEN
            } else if ulen < udp::HEADER_LEN || ulen > l4.len() {
                return Err(ParseError::BadUdpLen);
            } else {
                ulen - udp::HEADER_LEN
            };
            m.ports = Some((u.src_port(), u.dst_port()));
            m.payload_offset = Some(l4_offset + udp::HEADER_LEN);
            m.payload_len = payload_len;
        }
        // SCTP: the ports of its common header (conntrack tracks associations by them; it
        // reads the rest from the frame)
        (IpProtocol::Sctp, _) if l4.len() >= 12 => {
            m.ports = Some((read_u16(l4, 0), read_u16(l4, 2)));
        }
        (IpProtocol::Icmp, IpVersion::Ipv4) => {
            if l4.len() < icmpv4::HEADER_LEN {
                return Err(ParseError::TruncatedIcmp);
            }
            let ty = Icmpv4Message::from(l4[0]);
            let data_offset = l4_offset + icmpv4::HEADER_LEN;
            let inner = if ty.is_error() {
                parse_inner_v4(&l4[icmpv4::HEADER_LEN..], data_offset)
            } else {
                None
            };
            m.icmp = Some(icmp_meta(l4, ty.has_ident(), ty.is_error(), inner));
            m.payload_offset = Some(data_offset);
            m.payload_len = l4.len() - icmpv4::HEADER_LEN;
        }
        (IpProtocol::Icmpv6, IpVersion::Ipv6) => {
            if l4.len() < icmpv6::HEADER_LEN {
                return Err(ParseError::TruncatedIcmpv6);
            }
            let ty = Icmpv6Message::from(l4[0]);
            let data_offset = l4_offset + icmpv6::HEADER_LEN;
            let inner = if ty.is_error() {
                parse_inner_v6(&l4[icmpv6::HEADER_LEN..], data_offset)
            } else {
                None
            };
            m.icmp = Some(icmp_meta(l4, ty.has_ident(), ty.is_error(), inner));
            m.payload_offset = Some(data_offset);
            m.payload_len = l4.len() - icmpv6::HEADER_LEN;
        }
        _ => {}
    }
    Ok(())
}

/// `l4` is at least an ICMP header long.
fn icmp_meta(l4: &[u8], has_ident: bool, is_error: bool, inner: Option<InnerMeta>) -> IcmpMeta {
    IcmpMeta {
        msg_type: l4[0],
        code: l4[1],
        ident: has_ident.then(|| read_u16(l4, 4)),
        seq_no: has_ident.then(|| read_u16(l4, 6)),
        is_error,
        inner,
    }
}

fn quoted_l4(inner: &mut InnerMeta, l4: &[u8], echo_request: u8, echo_reply: u8) {
    match inner.protocol {
        IpProtocol::Tcp | IpProtocol::Udp | IpProtocol::UdpLite | IpProtocol::Sctp
            if l4.len() >= 4 =>
        {
            inner.ports = Some((read_u16(l4, 0), read_u16(l4, 2)));
        }
        IpProtocol::Icmp | IpProtocol::Icmpv6
            if l4.len() >= 6 && (l4[0] == echo_request || l4[0] == echo_reply) =>
        {
            inner.icmp_ident = Some(read_u16(l4, 4));
        }
        _ => {}
    }
}

/// The quote may be cut anywhere after the IP header, so only the header itself is required.
fn parse_inner_v4(quote: &[u8], offset: usize) -> Option<InnerMeta> {
    if quote.len() < ipv4::HEADER_LEN {
        return None;
    }
    let p = Ipv4Packet::new_unchecked(quote);
    let hlen = p.header_len() as usize;
    if p.version() != 4 || hlen < ipv4::HEADER_LEN || hlen > quote.len() {
        return None;
    }
    let mut inner = InnerMeta {
        l3_offset: offset,
        src_addr: IpAddr::V4(p.src_addr()),
        dst_addr: IpAddr::V4(p.dst_addr()),
        protocol: p.protocol(),
        l4_offset: offset + hlen,
        ports: None,
        icmp_ident: None,
    };
    if p.frag_offset() == 0 {
        quoted_l4(&mut inner, &quote[hlen..], 8, 0);
    }
    Some(inner)
}

fn parse_inner_v6(quote: &[u8], offset: usize) -> Option<InnerMeta> {
    if quote.len() < ipv6::HEADER_LEN {
        return None;
    }
    let p = Ipv6Packet::new_unchecked(quote);
    if p.version() != 6 {
        return None;
    }
    let ext = ipv6::walk_extension_headers(p.next_header(), &quote[ipv6::HEADER_LEN..]).ok()?;
    let mut inner = InnerMeta {
        l3_offset: offset,
        src_addr: IpAddr::V6(p.src_addr()),
        dst_addr: IpAddr::V6(p.dst_addr()),
        protocol: ext.upper_protocol,
        l4_offset: offset + ext.upper_offset,
        ports: None,
        icmp_ident: None,
    };
    if ext.has_upper_header() {
        quoted_l4(
            &mut inner,
            quote.get(ext.upper_offset..).unwrap_or(&[]),
            128,
            129,
        );
    }
    Some(inner)
}

#[cfg(test)]
mod tests;
