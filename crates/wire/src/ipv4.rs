//! IPv4 (RFC 791), options included.
//!
//! Panic contract: once [`Ipv4Packet::check_len`] has returned `Ok` (as
//! [`Ipv4Packet::new_checked`] does), no accessor panics. `check_len` checks the buffer against
//! the fixed header, the IHL field and the total length field; the payload is what the total
//! length covers, so Ethernet padding is never part of it.

use crate::checksum;
use crate::ip::IpProtocol;
use crate::{check_stated_len, read_u16, write_u16, Error, Result};
use std::net::Ipv4Addr;

mod field {
    use crate::Field;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
    pub const OPTIONS: usize = 20;
}

/// Length of the header without options.
pub const HEADER_LEN: usize = field::OPTIONS;
/// Longest header (IHL 15).
pub const MAX_HEADER_LEN: usize = 60;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;

view!(
    /// A view of an IPv4 packet.
    Ipv4Packet
);

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// `Truncated` when the buffer ends before the fixed header, the header the IHL describes,
    /// or the total length; `Malformed` when IHL is below 5 or the total length below the
    /// header length. The version is not checked here (see [`Ipv4Repr::parse`]).
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        let hlen = check_stated_len(len, HEADER_LEN, || self.header_len() as usize)?;
        check_stated_len(len, hlen, || self.total_len() as usize)?;
        Ok(())
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4).
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH.start)
    }

    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT.start)
    }

    pub fn dont_frag(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF.start) & FLAG_DF != 0
    }

    pub fn more_frags(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF.start) & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (read_u16(self.buffer.as_ref(), field::FLG_OFF.start) & 0x1fff) << 3
    }

    /// Part of a fragmented datagram (first or later), as `ip_is_fragment()` in Linux.
    pub fn is_fragment(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF.start) & (FLAG_MF | 0x1fff) != 0
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SRC_ADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::DST_ADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// The options region (empty when IHL is 5).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len() as usize]
    }

    /// Whether the header checksum, over the IHL bytes, is valid.
    pub fn verify_checksum(&self) -> bool {
        let b = self.buffer.as_ref();
        let hlen = self.header_len() as usize;
        // a header without options (nearly all): its five words summed unrolled, one bounds
        // check, the same sum as `checksum::verify`'s
        if let Some(h) = b.get(..20).filter(|_| hlen == 20) {
            let w = |i: usize| u64::from(u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
            return checksum::fold(w(0) + w(4) + w(8) + w(12) + w(16)) == 0xffff;
        }
        checksum::verify(&b[..hlen])
    }

    /// The bytes after the header up to the total length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len() as usize..self.total_len() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    pub fn set_version(&mut self, v: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (v << 4);
    }

    /// Sets IHL from a length in bytes (rounded down to a multiple of four).
    pub fn set_header_len(&mut self, len: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) & 0x0f);
    }

    pub fn set_dscp(&mut self, dscp: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0x03) | (dscp << 2);
    }

    pub fn set_ecn(&mut self, ecn: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0xfc) | (ecn & 0x03);
    }

    pub fn set_total_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH.start, len);
    }

    pub fn set_ident(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::IDENT.start, v);
    }

    fn set_flg_off(&mut self, mask: u16, bits: u16) {
        let v = read_u16(self.buffer.as_ref(), field::FLG_OFF.start);
        write_u16(
            self.buffer.as_mut(),
            field::FLG_OFF.start,
            (v & !mask) | (bits & mask),
        );
    }

    pub fn set_dont_frag(&mut self, v: bool) {
        self.set_flg_off(FLAG_DF, if v { FLAG_DF } else { 0 });
    }

    pub fn set_more_frags(&mut self, v: bool) {
        self.set_flg_off(FLAG_MF, if v { FLAG_MF } else { 0 });
    }

    /// Fragment offset in bytes (a multiple of eight).
    pub fn set_frag_offset(&mut self, offset: u16) {
        self.set_flg_off(0x1fff, offset >> 3);
    }

    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    pub fn set_protocol(&mut self, p: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = p.into();
    }

    pub fn set_checksum(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM.start, v);
    }

    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a.octets());
    }

    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a.octets());
    }

    /// Recomputes the header checksum over the IHL bytes.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hlen = self.header_len() as usize;
        let c = checksum::checksum(&self.buffer.as_ref()[..hlen]);
        self.set_checksum(c);
    }

    /// Decrements the TTL and patches the header checksum incrementally, as a forwarding fast
    /// path does. Returns the new TTL; a TTL already 0 stays 0 and nothing changes.
    pub fn decrement_ttl(&mut self) -> u8 {
        // one slice of the fields it reads and writes (one bounds check, not one per field:
        // every forwarded packet of the slow path comes here)
        let b = &mut self.buffer.as_mut()[..field::CHECKSUM.end];
        let ttl = b[field::TTL];
        if ttl == 0 {
            return 0;
        }
        // TTL is the high byte of the TTL/protocol word.
        let old = u16::from_be_bytes([ttl, b[field::PROTOCOL]]);
        let hc = checksum::update16(read_u16(b, field::CHECKSUM.start), old, old - 0x0100);
        b[field::TTL] = ttl - 1;
        b[field::CHECKSUM].copy_from_slice(&hc.to_be_bytes());
        ttl - 1
    }

    /// Sets DSCP and ECN (the whole former TOS byte), patching the checksum incrementally.
    pub fn set_tos_incremental(&mut self, dscp: u8, ecn: u8) {
        let old = read_u16(self.buffer.as_ref(), 0);
        self.set_dscp(dscp);
        self.set_ecn(ecn);
        let new = read_u16(self.buffer.as_ref(), 0);
        let hc = checksum::update16(self.checksum(), old, new);
        self.set_checksum(hc);
    }

    pub fn options_mut(&mut self) -> &mut [u8] {
        let hlen = self.header_len() as usize;
        &mut self.buffer.as_mut()[field::OPTIONS..hlen]
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len() as usize..self.total_len() as usize;
        &mut self.buffer.as_mut()[range]
    }
}

/// The fields of an IPv4 header as a value. Options are not represented: `parse` skips them and
/// `emit` writes a 20-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub next_header: IpProtocol,
    pub payload_len: usize,
    pub ttl: u8,
    pub dscp: u8,
    pub ecn: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// In bytes.
    pub frag_offset: u16,
}

impl Ipv4Repr {
    /// Checks lengths, version 4 and the header checksum.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Ipv4Repr> {
        packet.check_len()?;
        if packet.version() != 4 || !packet.verify_checksum() {
            return Err(Error::Malformed);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.protocol(),
            payload_len: packet.total_len() as usize - packet.header_len() as usize,
            ttl: packet.ttl(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
        })
    }

    /// Header length `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 20-byte header with a valid checksum. The buffer must hold at least the
    /// header; the total length field covers `payload_len`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) {
        packet.set_version(4);
        packet.set_header_len(HEADER_LEN as u8);
        packet.set_dscp(self.dscp);
        packet.set_ecn(self.ecn);
        packet.set_total_len((HEADER_LEN + self.payload_len) as u16);
        packet.set_ident(self.ident);
        packet.set_flg_off(0xffff, 0);
        packet.set_dont_frag(self.dont_frag);
        packet.set_more_frags(self.more_frags);
        packet.set_frag_offset(self.frag_offset);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.next_header);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 192.168.0.1 -> 192.168.0.199, UDP, DF, TTL 64, total length 0x73 (payload elided: the
    // buffer is cut, so only the header accessors are exercised on it).
    static HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    fn with_payload(header: &[u8], payload_len: usize) -> Vec<u8> {
        let mut v = header.to_vec();
        v.resize(header.len() + payload_len, 0xab);
        v
    }

    #[test]
    fn known_header() {
        let buf = with_payload(&HEADER, 0x73 - 20);
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 0x73);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::Udp);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 0x73 - 20);
        let repr = Ipv4Repr::parse(&p).unwrap();
        let mut out = vec![0u8; buf.len()];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]));
        assert_eq!(out[..20], HEADER);
    }

    #[test]
    fn options_and_fragments() {
        // IHL 6 with a 4-byte router alert option, MF set, offset 185*8.
        let mut h = [0u8; 24];
        h[..20].copy_from_slice(&HEADER);
        h[0] = 0x46;
        h[2..4].copy_from_slice(&24u16.to_be_bytes());
        h[6..8].copy_from_slice(&(0x2000u16 | 185).to_be_bytes());
        h[20..24].copy_from_slice(&[0x94, 0x04, 0x00, 0x00]);
        let mut p = Ipv4Packet::new_unchecked(&mut h[..]);
        p.fill_checksum();
        let p = Ipv4Packet::new_checked(&h[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert!(p.more_frags() && p.is_fragment() && !p.dont_frag());
        assert_eq!(p.frag_offset(), 185 * 8);
        assert!(p.verify_checksum());
        assert!(p.payload().is_empty());
    }

    #[test]
    fn length_errors() {
        let buf = with_payload(&HEADER, 0x73 - 20);
        assert_eq!(
            Ipv4Packet::new_checked(&buf[..19]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Ipv4Packet::new_checked(&buf[..0x72]).unwrap_err(),
            Error::Truncated
        );
        let mut b = buf.clone();
        b[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            Error::Malformed
        );
        let mut b = buf.clone();
        b[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            Error::Malformed
        );
        let mut b = buf.clone();
        b[0] = 0x4f; // 60-byte header in a 20-byte-header packet is fine length-wise...
        b[2..4].copy_from_slice(&40u16.to_be_bytes()); // ...but total below IHL is not
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            Error::Malformed
        );
        let mut b = buf;
        b[11] ^= 1;
        assert_eq!(
            Ipv4Repr::parse(&Ipv4Packet::new_unchecked(&b[..])).unwrap_err(),
            Error::Malformed
        );
    }

    #[test]
    fn ttl_and_tos_incremental() {
        let mut buf = with_payload(&HEADER, 0x73 - 20);
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        for expect in (0..64).rev() {
            assert_eq!(p.decrement_ttl(), expect);
            assert!(p.verify_checksum());
        }
        assert_eq!(p.decrement_ttl(), 0);
        p.set_tos_incremental(46, 2);
        assert_eq!((p.dscp(), p.ecn()), (46, 2));
        assert!(p.verify_checksum());
    }
}
