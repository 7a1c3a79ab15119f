//! IPv6 (RFC 8200) and the walk over its extension headers.
//!
//! Panic contract: once [`Ipv6Packet::check_len`] has returned `Ok` (as
//! [`Ipv6Packet::new_checked`] does), no accessor panics. `check_len` checks the payload length
//! field against the buffer. [`walk_extension_headers`] never panics on any input.

use crate::ip::IpProtocol;
use crate::{read_u16, read_u32, write_u16, write_u32, Error, Result};
use std::net::Ipv6Addr;

mod field {
    use crate::Field;
    pub const VER_TC_FLOW: Field = 0..4;
    pub const LENGTH: Field = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
    pub const PAYLOAD: usize = 40;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// At most this many extension headers are walked; a chain longer than that is refused, so a
/// crafted packet cannot make the parser do unbounded work.
pub const MAX_EXT_HEADERS: usize = 8;

view!(
    /// A view of an IPv6 packet.
    Ipv6Packet
);

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// `Truncated` when the buffer ends before the fixed header or before the payload length.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || HEADER_LEN + self.payload_len() as usize > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    fn ver_tc_flow(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::VER_TC_FLOW.start)
    }

    pub fn version(&self) -> u8 {
        (self.ver_tc_flow() >> 28) as u8
    }

    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }

    pub fn dscp(&self) -> u8 {
        self.traffic_class() >> 2
    }

    pub fn ecn(&self) -> u8 {
        self.traffic_class() & 0x03
    }

    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & 0x000f_ffff
    }

    pub fn payload_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH.start)
    }

    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::NXT_HDR])
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    pub fn src_addr(&self) -> Ipv6Addr {
        let b: [u8; 16] = self.buffer.as_ref()[field::SRC_ADDR]
            .try_into()
            .unwrap_or([0; 16]);
        Ipv6Addr::from(b)
    }

    pub fn dst_addr(&self) -> Ipv6Addr {
        let b: [u8; 16] = self.buffer.as_ref()[field::DST_ADDR]
            .try_into()
            .unwrap_or([0; 16]);
        Ipv6Addr::from(b)
    }

    /// Everything after the fixed header up to the payload length (extension headers included).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + self.payload_len() as usize]
    }

    /// Walks the extension headers; see [`walk_extension_headers`].
    pub fn extension_headers(&self) -> Result<Ipv6ExtInfo> {
        walk_extension_headers(self.next_header(), self.payload())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    fn set_ver_tc_flow(&mut self, v: u32) {
        write_u32(self.buffer.as_mut(), field::VER_TC_FLOW.start, v);
    }

    pub fn set_version(&mut self, v: u8) {
        let w = (self.ver_tc_flow() & 0x0fff_ffff) | ((v as u32 & 0xf) << 28);
        self.set_ver_tc_flow(w);
    }

    pub fn set_traffic_class(&mut self, tc: u8) {
        let w = (self.ver_tc_flow() & 0xf00f_ffff) | ((tc as u32) << 20);
        self.set_ver_tc_flow(w);
    }

    pub fn set_flow_label(&mut self, label: u32) {
        let w = (self.ver_tc_flow() & 0xfff0_0000) | (label & 0x000f_ffff);
        self.set_ver_tc_flow(w);
    }

    pub fn set_payload_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH.start, len);
    }

    pub fn set_next_header(&mut self, p: IpProtocol) {
        self.buffer.as_mut()[field::NXT_HDR] = p.into();
    }

    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a.octets());
    }

    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a.octets());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + self.payload_len() as usize;
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// What a fragment header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6FragInfo {
    /// Offset of the fragment header from the start of the IPv6 header.
    pub header_offset: usize,
    /// Fragment offset in bytes.
    pub frag_offset: u16,
    pub more_frags: bool,
    pub ident: u32,
}

/// The result of walking the extension header chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6ExtInfo {
    /// The first protocol that is not a walked extension header (TCP, UDP, ICMPv6, ESP, no next
    /// header, ...).
    pub upper_protocol: IpProtocol,
    /// Offset of the upper-layer header (or, after a fragment header, of the fragment data) from
    /// the start of the IPv6 header.
    pub upper_offset: usize,
    /// The number of extension headers walked.
    pub ext_count: u8,
    /// Set when a fragment header was seen. For a non-first fragment (`frag_offset != 0`) the
    /// bytes at `upper_offset` are not an upper-layer header.
    pub fragment: Option<Ipv6FragInfo>,
}

impl Ipv6ExtInfo {
    /// Whether the bytes at `upper_offset` start with the upper-layer header: no fragment header,
    /// or the first fragment.
    pub fn has_upper_header(&self) -> bool {
        self.fragment.is_none_or(|f| f.frag_offset == 0)
    }
}

/// Whether `proto` is an extension header the walk steps over.
pub fn is_extension_header(proto: IpProtocol) -> bool {
    matches!(
        proto,
        IpProtocol::HopByHop
            | IpProtocol::Ipv6Route
            | IpProtocol::Ipv6Frag
            | IpProtocol::Ipv6Opts
            | IpProtocol::Ah
    )
}

/// Walks the extension headers (hop-by-hop, routing, fragment, destination options, AH) that
/// start the IPv6 `payload`, `first` being the fixed header's next-header field.
///
/// `Truncated` when a header runs past the payload; `Malformed` when hop-by-hop is not first
/// (RFC 8200 4.1) or the chain is longer than [`MAX_EXT_HEADERS`]. Offsets in the result count
/// from the start of the IPv6 header.
pub fn walk_extension_headers(first: IpProtocol, payload: &[u8]) -> Result<Ipv6ExtInfo> {
    let mut next = first;
    let mut at = 0usize;
    let mut count = 0u8;
    let mut fragment = None;
    while is_extension_header(next) {
        if count as usize == MAX_EXT_HEADERS || (next == IpProtocol::HopByHop && count != 0) {
            return Err(Error::Malformed);
        }
        let hdr = payload.get(at..at + 8).ok_or(Error::Truncated)?;
        let len = match next {
            IpProtocol::Ipv6Frag => {
                let off_flags = u16::from_be_bytes([hdr[2], hdr[3]]);
                fragment = Some(Ipv6FragInfo {
                    header_offset: HEADER_LEN + at,
                    frag_offset: off_flags & 0xfff8,
                    more_frags: off_flags & 1 != 0,
                    ident: u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]),
                });
                8
            }
            // RFC 4302: AH's length is in 4-byte units, minus 2.
            IpProtocol::Ah => (hdr[1] as usize + 2) * 4,
            _ => (hdr[1] as usize + 1) * 8,
        };
        if at + len > payload.len() {
            return Err(Error::Truncated);
        }
        next = IpProtocol::from(hdr[0]);
        at += len;
        count += 1;
        // Past a non-first fragment the rest of the chain is in another fragment.
        if fragment.is_some_and(|f| f.frag_offset != 0) {
            break;
        }
    }
    Ok(Ipv6ExtInfo {
        upper_protocol: next,
        upper_offset: HEADER_LEN + at,
        ext_count: count,
        fragment,
    })
}

/// The fixed IPv6 header as a value. Extension headers are not represented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    pub next_header: IpProtocol,
    /// Length of everything after the fixed header.
    pub payload_len: usize,
    pub hop_limit: u8,
    pub traffic_class: u8,
    pub flow_label: u32,
}

impl Ipv6Repr {
    /// Checks lengths and version 6.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Ipv6Repr> {
        packet.check_len()?;
        if packet.version() != 6 {
            return Err(Error::Malformed);
        }
        Ok(Ipv6Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: packet.payload_len() as usize,
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv6Packet<T>) {
        packet.set_ver_tc_flow(0x6000_0000);
        packet.set_traffic_class(self.traffic_class);
        packet.set_flow_label(self.flow_label);
        packet.set_payload_len(self.payload_len as u16);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(next: u8, payload_len: u16) -> Vec<u8> {
        let mut v = vec![0x60, 0x12, 0x34, 0x56];
        v.extend_from_slice(&payload_len.to_be_bytes());
        v.push(next);
        v.push(64);
        v.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        v.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        v
    }

    #[test]
    fn known_header() {
        let mut v = header(17, 8);
        v.extend_from_slice(&[0; 8]);
        let p = Ipv6Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0x01);
        assert_eq!(p.flow_label(), 0x23456);
        assert_eq!(p.next_header(), IpProtocol::Udp);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.payload().len(), 8);
        let repr = Ipv6Repr::parse(&p).unwrap();
        let mut out = [0u8; 48];
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut out[..]));
        assert_eq!(out[..40], v[..40]);
        assert_eq!(
            Ipv6Packet::new_checked(&v[..47]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn extension_chain() {
        // hop-by-hop (8) -> routing (16) -> fragment (8, first) -> dest opts (8) -> AH (12) -> TCP
        let mut ext = vec![];
        ext.extend_from_slice(&[43, 0, 1, 4, 0, 0, 0, 0]);
        ext.extend_from_slice(&[44, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        ext.extend_from_slice(&[60, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef]);
        ext.extend_from_slice(&[51, 0, 1, 4, 0, 0, 0, 0]);
        ext.extend_from_slice(&[6, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]);
        let tcp_at = ext.len();
        ext.extend_from_slice(&[0; 20]);
        let info = walk_extension_headers(IpProtocol::HopByHop, &ext).unwrap();
        assert_eq!(info.upper_protocol, IpProtocol::Tcp);
        assert_eq!(info.upper_offset, HEADER_LEN + tcp_at);
        assert_eq!(info.ext_count, 5);
        let frag = info.fragment.unwrap();
        assert_eq!(frag.header_offset, HEADER_LEN + 24);
        assert!(frag.more_frags && frag.frag_offset == 0 && frag.ident == 0xdeadbeef);
        assert!(info.has_upper_header());

        // Truncated inside the AH header.
        assert_eq!(
            walk_extension_headers(IpProtocol::HopByHop, &ext[..40]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn non_first_fragment_stops_the_walk() {
        let frag = [17, 0, 0x05, 0x28, 0, 0, 0, 7, 0xff, 0xff];
        let info = walk_extension_headers(IpProtocol::Ipv6Frag, &frag).unwrap();
        assert_eq!(info.upper_protocol, IpProtocol::Udp);
        assert_eq!(info.upper_offset, HEADER_LEN + 8);
        let f = info.fragment.unwrap();
        assert_eq!(f.frag_offset, 0x0528);
        assert!(!f.more_frags);
        assert!(!info.has_upper_header());
    }

    #[test]
    fn bad_chains() {
        let late_hbh = [0u8, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            walk_extension_headers(IpProtocol::Ipv6Opts, &late_hbh).unwrap_err(),
            Error::Malformed
        );
        let mut long = vec![];
        for _ in 0..=MAX_EXT_HEADERS {
            long.extend_from_slice(&[60, 0, 0, 0, 0, 0, 0, 0]);
        }
        assert_eq!(
            walk_extension_headers(IpProtocol::Ipv6Opts, &long).unwrap_err(),
            Error::Malformed
        );
        assert_eq!(
            walk_extension_headers(IpProtocol::Ipv6Opts, &[6, 1, 0, 0, 0, 0, 0, 0]).unwrap_err(),
            Error::Truncated
        );
    }
}
