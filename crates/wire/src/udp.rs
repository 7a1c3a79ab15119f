//! UDP datagrams (RFC 768).
//!
//! Panic contract: once [`UdpPacket::check_len`] has returned `Ok` (as [`UdpPacket::new_checked`]
//! does), no accessor panics; `check_len` checks the length field. The payload is what the length
//! field covers.
//!
//! Over IPv4 a checksum of 0 means "not computed"; a computed 0 is sent as 0xffff. Over IPv6 the
//! checksum is mandatory.

use crate::checksum;
use crate::ip::IpProtocol;
use crate::{check_stated_len, read_u16, write_u16, Error, Result};
use std::net::IpAddr;

mod field {
    use crate::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
    pub const PAYLOAD: usize = 8;
}

pub const HEADER_LEN: usize = field::PAYLOAD;
/// Offset of the checksum field, for code that patches it through a raw slice.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

view!(
    /// A view of a UDP datagram.
    UdpPacket
);

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// `Truncated` when the buffer ends before the header or the length field; `Malformed` when
    /// the length field is below 8.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        check_stated_len(len, HEADER_LEN, || self.len() as usize)?;
        Ok(())
    }

    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT.start)
    }

    /// The length field: header plus payload.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH.start)
    }

    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.len() as usize]
    }

    /// Whether the checksum is valid over the length the header gives. A zero checksum over
    /// IPv4 counts as valid (not computed).
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        if src.is_ipv4() && self.checksum() == 0 {
            return true;
        }
        let data = &self.buffer.as_ref()[..self.len() as usize];
        checksum::with_pseudo_header(src, dst, IpProtocol::Udp, data) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> UdpPacket<&'a T> {
    /// The payload with the lifetime of the underlying buffer.
    pub fn payload_ref(&self) -> &'a [u8] {
        let data = self.buffer.as_ref();
        &data[HEADER_LEN..self.len() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    pub fn set_src_port(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT.start, v);
    }

    pub fn set_dst_port(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT.start, v);
    }

    pub fn set_len(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH.start, v);
    }

    pub fn set_checksum(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM.start, v);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.len() as usize;
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// Computes the checksum over the length the header gives; a computed 0 is stored as 0xffff.
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        self.set_checksum(0);
        let data = &self.buffer.as_ref()[..self.len() as usize];
        let c = !checksum::with_pseudo_header(src, dst, IpProtocol::Udp, data);
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
}

/// A UDP datagram as a value, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
}

impl<'a> UdpRepr<'a> {
    /// Checks lengths and the checksum (0 accepted over IPv4, refused over IPv6).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &UdpPacket<&'a T>,
        src: &IpAddr,
        dst: &IpAddr,
    ) -> Result<UdpRepr<'a>> {
        packet.check_len()?;
        if (src.is_ipv6() && packet.checksum() == 0) || !packet.verify_checksum(src, dst) {
            return Err(Error::Malformed);
        }
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload: packet.payload_ref(),
        })
    }

    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Writes header and payload and fills the checksum; the buffer must hold
    /// [`UdpRepr::buffer_len`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut UdpPacket<T>,
        src: &IpAddr,
        dst: &IpAddr,
    ) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(self.buffer_len() as u16);
        packet.payload_mut().copy_from_slice(self.payload);
        packet.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    // DNS query header fragment 192.168.1.10:5353 -> 192.168.1.1:53, checksum computed by hand.
    static DGRAM: [u8; 12] = [
        0x14, 0xe9, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef,
    ];

    fn addrs() -> (IpAddr, IpAddr) {
        (
            Ipv4Addr::new(192, 168, 1, 10).into(),
            Ipv4Addr::new(192, 168, 1, 1).into(),
        )
    }

    #[test]
    fn known_bytes() {
        let (s, d) = addrs();
        let p = UdpPacket::new_checked(&DGRAM[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (5353, 53, 12));
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        // Zero checksum over IPv4: valid, "none".
        assert!(p.verify_checksum(&s, &d));
        let repr = UdpRepr::parse(&p, &s, &d).unwrap();
        let mut out = [0u8; 12];
        repr.emit(&mut UdpPacket::new_unchecked(&mut out[..]), &s, &d);
        // Pseudo header: c0a8 010a c0a8 0101 0011 000c; header 14e9 0035 000c; data dead beef.
        let words: [u32; 11] = [
            0xc0a8, 0x010a, 0xc0a8, 0x0101, 0x0011, 0x000c, 0x14e9, 0x0035, 0x000c, 0xdead, 0xbeef,
        ];
        let mut acc: u32 = words.iter().sum();
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        assert_eq!(u16::from_be_bytes([out[6], out[7]]), !(acc as u16));
        assert!(UdpPacket::new_unchecked(&out[..]).verify_checksum(&s, &d));
    }

    #[test]
    fn length_field() {
        let mut b = DGRAM;
        b[5] = 7;
        assert_eq!(
            UdpPacket::new_checked(&b[..]).unwrap_err(),
            Error::Malformed
        );
        b[5] = 13;
        assert_eq!(
            UdpPacket::new_checked(&b[..]).unwrap_err(),
            Error::Truncated
        );
        // Trailing bytes beyond the length field are not payload.
        let mut long = DGRAM.to_vec();
        long.extend_from_slice(&[0, 0]);
        assert_eq!(
            UdpPacket::new_checked(&long[..]).unwrap().payload().len(),
            4
        );
    }
}
