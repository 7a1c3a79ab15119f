//! ICMPv6 (RFC 4443): type and code, echo identifier and sequence, the quoted IPv6 header of
//! error messages, and the checksum over the IPv6 pseudo-header.
//!
//! Panic contract: once [`Icmpv6Packet::check_len`] has returned `Ok` (as
//! [`Icmpv6Packet::new_checked`] does), no accessor panics. The message is the whole buffer.

use crate::checksum;
use crate::ip::IpProtocol;
use crate::{Error, Result};
use std::net::Ipv6Addr;

enum_with_unknown! {
    /// ICMPv6 message type.
    pub enum Icmpv6Message(u8) {
        DstUnreachable = 1,
        PacketTooBig = 2,
        TimeExceeded = 3,
        ParamProblem = 4,
        EchoRequest = 128,
        EchoReply = 129,
        MldQuery = 130,
        MldReport = 131,
        MldDone = 132,
        RouterSolicit = 133,
        RouterAdvert = 134,
        NeighborSolicit = 135,
        NeighborAdvert = 136,
        Redirect = 137,
        MldV2Report = 143,
    }
}

impl Icmpv6Message {
    /// Types below 128 are errors (RFC 4443 2.1) and quote the offending packet.
    pub fn is_error(self) -> bool {
        u8::from(self) < 128
    }

    pub fn has_ident(self) -> bool {
        matches!(self, Icmpv6Message::EchoRequest | Icmpv6Message::EchoReply)
    }

    /// Neighbour discovery, which a router leaves to the host's stack.
    pub fn is_ndisc(self) -> bool {
        matches!(u8::from(self), 133..=137)
    }
}

// The header is laid out as ICMP's (RFC 4443 2.1).
use crate::icmpv4::field;
pub use crate::icmpv4::{CHECKSUM_OFFSET, ECHO_IDENT_OFFSET, HEADER_LEN};

view!(
    /// A view of an ICMPv6 message.
    Icmpv6Packet,
    header_len: HEADER_LEN
);

icmp_fields!(Icmpv6Packet, Icmpv6Message);

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let data = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::Icmpv6, data.len() as u32);
        checksum::combine(&[ph, checksum::sum(data)]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::Icmpv6, data.len() as u32);
        let c = !checksum::combine(&[ph, checksum::sum(data)]);
        self.set_checksum(c);
    }
}

icmp_repr!(
    /// An ICMPv6 message as a value, borrowing its data.
    Icmpv6Repr, Icmpv6Packet, Icmpv6Message,
    /// An error message; `quoted` is the offending packet, IPv6 header first.
    Error
);

impl<'a> Icmpv6Repr<'a> {
    /// Checks the length and the pseudo-header checksum.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Icmpv6Packet<&'a T>,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
    ) -> Result<Icmpv6Repr<'a>> {
        packet.check_len()?;
        if !packet.verify_checksum(src, dst) {
            return Err(Error::Malformed);
        }
        Ok(Self::parse_fields(packet))
    }

    /// Writes the message and its checksum; the buffer must be [`Icmpv6Repr::buffer_len`] long.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Icmpv6Packet<T>,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
    ) {
        self.emit_fields(packet);
        packet.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_round_trip() {
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let dst: Ipv6Addr = "fe80::2".parse().unwrap();
        let repr = Icmpv6Repr::EchoRequest {
            ident: 7,
            seq_no: 9,
            data: b"ping",
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Icmpv6Packet::new_unchecked(&mut buf[..]), &src, &dst);
        assert_eq!(buf[..8], [128, 0, buf[2], buf[3], 0, 7, 0, 9]);
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum(&src, &dst));
        assert!(!p.verify_checksum(&dst, &"fe80::3".parse().unwrap()));
        assert_eq!(Icmpv6Repr::parse(&p, &src, &dst).unwrap(), repr);
        // The same words summed by hand: pseudo header (addresses, length 12, next header 58)
        // plus the message.
        let mut acc: u32 = 0xfe80 + 1 + 0xfe80 + 2 + 12 + 58;
        acc += 0x8000 + 7 + 9 + 0x7069 + 0x6e67;
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        assert_eq!(u16::from_be_bytes([buf[2], buf[3]]), !(acc as u16));
    }

    #[test]
    fn kinds() {
        assert!(Icmpv6Message::PacketTooBig.is_error());
        assert!(!Icmpv6Message::EchoReply.is_error());
        assert!(Icmpv6Message::NeighborSolicit.is_ndisc());
        assert_eq!(Icmpv6Message::from(200), Icmpv6Message::Unknown(200));
    }
}
