//! PPPoE session frames (RFC 2516, EtherType 0x8864) and the PPP protocol field inside them.
//!
//! The view starts at the PPPoE header (after the Ethernet header and any VLAN tags). Its payload
//! is what follows the two-byte PPP protocol field, bounded by the PPPoE length field, so
//! Ethernet padding after the PPP frame is not part of it.
//!
//! Panic contract: once [`PppoeSession::check_len`] has returned `Ok` (as
//! [`PppoeSession::new_checked`] does), no accessor panics. `check_len` checks the length field
//! against the buffer.

use crate::{read_u16, write_u16, Error, Result};

enum_with_unknown! {
    /// The PPP protocol number carried in a PPPoE session frame.
    pub enum PppProtocol(u16) {
        Ipv4 = 0x0021,
        Ipv6 = 0x0057,
        Ipcp = 0x8021,
        Ipv6cp = 0x8057,
        Lcp = 0xc021,
        Pap = 0xc023,
        Chap = 0xc223,
    }
}

mod field {
    use crate::Field;
    pub const VER_TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const SESSION_ID: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const PPP_PROTOCOL: Field = 6..8;
    pub const PAYLOAD: usize = 8;
}

/// PPPoE header plus the PPP protocol field.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// The PPPoE header alone; its length field counts the bytes after it.
pub const PPPOE_HEADER_LEN: usize = field::PPP_PROTOCOL.start;

view!(
    /// A view of a PPPoE session frame.
    PppoeSession
);

impl<T: AsRef<[u8]>> PppoeSession<T> {
    /// `Truncated` if the buffer is shorter than the header or than the length field says;
    /// `Malformed` if the length cannot hold the PPP protocol field.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let plen = self.length() as usize;
        if plen < 2 {
            return Err(Error::Malformed);
        }
        if PPPOE_HEADER_LEN + plen > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] >> 4
    }

    pub fn ptype(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] & 0x0f
    }

    /// 0 for session data.
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn session_id(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SESSION_ID.start)
    }

    /// Bytes after the PPPoE header: the PPP protocol field and the PPP payload.
    pub fn length(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH.start)
    }

    pub fn protocol(&self) -> PppProtocol {
        PppProtocol::from(read_u16(self.buffer.as_ref(), field::PPP_PROTOCOL.start))
    }

    /// The PPP payload, without Ethernet padding.
    pub fn payload(&self) -> &[u8] {
        let end = PPPOE_HEADER_LEN + self.length() as usize;
        &self.buffer.as_ref()[field::PAYLOAD..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> PppoeSession<T> {
    pub fn set_version_type(&mut self, version: u8, ptype: u8) {
        self.buffer.as_mut()[field::VER_TYPE] = (version << 4) | (ptype & 0x0f);
    }

    pub fn set_code(&mut self, code: u8) {
        self.buffer.as_mut()[field::CODE] = code;
    }

    pub fn set_session_id(&mut self, id: u16) {
        write_u16(self.buffer.as_mut(), field::SESSION_ID.start, id);
    }

    pub fn set_length(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH.start, len);
    }

    pub fn set_protocol(&mut self, proto: PppProtocol) {
        write_u16(
            self.buffer.as_mut(),
            field::PPP_PROTOCOL.start,
            proto.into(),
        );
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = PPPOE_HEADER_LEN + self.length() as usize;
        &mut self.buffer.as_mut()[field::PAYLOAD..end]
    }
}

/// A PPPoE session header as a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PppoeRepr {
    pub session_id: u16,
    pub protocol: PppProtocol,
    /// Length of the PPP payload (after the protocol field).
    pub payload_len: usize,
}

impl PppoeRepr {
    /// Accepts only version 1, type 1, code 0 (session data).
    pub fn parse<T: AsRef<[u8]>>(packet: &PppoeSession<T>) -> Result<PppoeRepr> {
        packet.check_len()?;
        if packet.version() != 1 || packet.ptype() != 1 || packet.code() != 0 {
            return Err(Error::Malformed);
        }
        Ok(PppoeRepr {
            session_id: packet.session_id(),
            protocol: packet.protocol(),
            payload_len: packet.length() as usize - 2,
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut PppoeSession<T>) {
        packet.set_version_type(1, 1);
        packet.set_code(0);
        packet.set_session_id(self.session_id);
        packet.set_length((self.payload_len + 2) as u16);
        packet.set_protocol(self.protocol);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static FRAME: [u8; 12] = [
        0x11, 0x00, 0x12, 0x34, 0x00, 0x04, 0x00, 0x21, 0x45, 0x00, 0xee, 0xee,
    ];

    #[test]
    fn known_bytes() {
        let p = PppoeSession::new_checked(&FRAME[..]).unwrap();
        assert_eq!((p.version(), p.ptype(), p.code()), (1, 1, 0));
        assert_eq!(p.session_id(), 0x1234);
        assert_eq!(p.protocol(), PppProtocol::Ipv4);
        // The two 0xee bytes are padding beyond the PPPoE length.
        assert_eq!(p.payload(), &[0x45, 0x00]);
        let repr = PppoeRepr::parse(&p).unwrap();
        assert_eq!(repr.payload_len, 2);
        let mut out = [0xeeu8; 12];
        let mut q = PppoeSession::new_unchecked(&mut out[..]);
        repr.emit(&mut q);
        q.payload_mut().copy_from_slice(&[0x45, 0x00]);
        assert_eq!(out, FRAME);
    }

    #[test]
    fn length_checks() {
        assert_eq!(
            PppoeSession::new_checked(&FRAME[..7]).unwrap_err(),
            Error::Truncated
        );
        let mut f = FRAME;
        f[5] = 0x20;
        assert_eq!(
            PppoeSession::new_checked(&f[..]).unwrap_err(),
            Error::Truncated
        );
        f[5] = 0x01;
        assert_eq!(
            PppoeSession::new_checked(&f[..]).unwrap_err(),
            Error::Malformed
        );
        let mut f = FRAME;
        f[1] = 0x09; // PADI, not session data
        assert_eq!(
            PppoeRepr::parse(&PppoeSession::new_unchecked(&f[..])).unwrap_err(),
            Error::Malformed
        );
    }
}
