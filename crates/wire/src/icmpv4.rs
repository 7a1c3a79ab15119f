//! ICMP for IPv4 (RFC 792): type and code, echo identifier and sequence, and for error messages
//! the quoted IP header of the packet that caused them.
//!
//! Panic contract: once [`Icmpv4Packet::check_len`] has returned `Ok` (as
//! [`Icmpv4Packet::new_checked`] does), no accessor panics. The message is the whole buffer: the
//! checksum covers all of it, so callers slice it to the IP payload first.

use crate::checksum;
use crate::{Error, Result};

enum_with_unknown! {
    /// ICMP message type.
    pub enum Icmpv4Message(u8) {
        EchoReply = 0,
        DstUnreachable = 3,
        SourceQuench = 4,
        Redirect = 5,
        EchoRequest = 8,
        RouterAdvert = 9,
        RouterSolicit = 10,
        TimeExceeded = 11,
        ParamProblem = 12,
        Timestamp = 13,
        TimestampReply = 14,
    }
}

impl Icmpv4Message {
    /// Error messages quote the offending datagram's IP header and its first 8 payload bytes.
    pub fn is_error(self) -> bool {
        matches!(
            self,
            Icmpv4Message::DstUnreachable
                | Icmpv4Message::SourceQuench
                | Icmpv4Message::Redirect
                | Icmpv4Message::TimeExceeded
                | Icmpv4Message::ParamProblem
        )
    }

    /// Messages that carry an identifier and sequence number in the second word.
    pub fn has_ident(self) -> bool {
        matches!(
            self,
            Icmpv4Message::EchoRequest
                | Icmpv4Message::EchoReply
                | Icmpv4Message::Timestamp
                | Icmpv4Message::TimestampReply
        )
    }
}

/// The header's fields, which ICMPv6 shares.
pub(crate) mod field {
    use crate::Field;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const REST: Field = 4..8;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQNO: Field = 6..8;
    pub const DATA: usize = 8;
}

/// Length of the header (type, code, checksum and the 4-byte rest of header).
pub const HEADER_LEN: usize = field::DATA;
/// Offset of the checksum field.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;
/// Offset of the echo identifier, which NAT rewrites as if it were a port.
pub const ECHO_IDENT_OFFSET: usize = field::ECHO_IDENT.start;

view!(
    /// A view of an ICMP message.
    Icmpv4Packet,
    header_len: HEADER_LEN
);

icmp_fields!(Icmpv4Packet, Icmpv4Message);

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

icmp_repr!(
    /// An ICMP message as a value, borrowing its data.
    Icmpv4Repr, Icmpv4Packet, Icmpv4Message,
    /// An error message; `quoted` is the offending datagram, IP header first.
    Error
);

impl<'a> Icmpv4Repr<'a> {
    /// Checks the length and the checksum.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Icmpv4Packet<&'a T>) -> Result<Icmpv4Repr<'a>> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::Malformed);
        }
        Ok(Self::parse_fields(packet))
    }

    /// Writes the message and its checksum; the buffer must be [`Icmpv4Repr::buffer_len`] long.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Icmpv4Packet<T>) {
        self.emit_fields(packet);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Echo request id 0x1234 seq 1, data "abcd".
    static ECHO: [u8; 12] = [
        0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x01, b'a', b'b', b'c', b'd',
    ];

    #[test]
    fn echo_round_trip() {
        let mut buf = ECHO;
        Icmpv4Packet::new_unchecked(&mut buf[..]).fill_checksum();
        // 0x0800 + 0x1234 + 0x0001 + 0x6162 + 0x6364 = 0xdefb, stored complemented.
        assert_eq!(u16::from_be_bytes([buf[2], buf[3]]), !0xdefb);
        let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.msg_type(), Icmpv4Message::EchoRequest);
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (0x1234, 1));
        assert!(p.quoted().is_none());
        let repr = Icmpv4Repr::parse(&p).unwrap();
        assert_eq!(
            repr,
            Icmpv4Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 1,
                data: b"abcd"
            }
        );
        let mut out = [0u8; 12];
        repr.emit(&mut Icmpv4Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, buf);
    }

    #[test]
    fn error_quotes_datagram() {
        let mut buf = vec![3u8, 4, 0, 0, 0, 0, 0x05, 0xdc];
        buf.extend_from_slice(&[0x45, 0, 0, 28]);
        Icmpv4Packet::new_unchecked(&mut buf[..]).fill_checksum();
        let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.quoted(), Some(&[0x45, 0, 0, 28][..]));
        match Icmpv4Repr::parse(&p).unwrap() {
            Icmpv4Repr::Error {
                msg_type: Icmpv4Message::DstUnreachable,
                code: 4,
                rest: 1500,
                quoted,
            } => {
                assert_eq!(quoted.len(), 4)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            Icmpv4Packet::new_checked(&buf[..7]).unwrap_err(),
            Error::Truncated
        );
        buf[9] ^= 1;
        assert_eq!(
            Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(&buf[..])).unwrap_err(),
            Error::Malformed
        );
    }
}
