//! 802.1Q / 802.1ad VLAN tags.
//!
//! The view covers the four bytes that follow a VLAN TPID (0x8100 or 0x88a8): the tag control
//! information and the EtherType of what is inside, then the payload. QinQ is two such tags in a
//! row.
//!
//! Panic contract: once [`VlanPacket::check_len`] has returned `Ok` (as
//! [`VlanPacket::new_checked`] does), no accessor panics.

use crate::ethernet::EtherType;
use crate::{read_u16, write_u16, Result};

mod field {
    use crate::{Field, Rest};
    pub const TCI: Field = 0..2;
    pub const ETHERTYPE: Field = 2..4;
    pub const PAYLOAD: Rest = 4..;
}

/// Length of one VLAN tag after its TPID.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

view!(
    /// A view of a VLAN tag (after the TPID) and what follows it.
    VlanPacket,
    header_len: HEADER_LEN
);

impl<T: AsRef<[u8]>> VlanPacket<T> {
    pub fn tci(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::TCI.start)
    }

    /// Priority code point (802.1p), 0..=7.
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator.
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN id, 0..=4095 (0 means priority-tagged only).
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    pub fn ethertype(&self) -> EtherType {
        EtherType::from(read_u16(self.buffer.as_ref(), field::ETHERTYPE.start))
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanPacket<T> {
    pub fn set_tci(&mut self, tci: u16) {
        write_u16(self.buffer.as_mut(), field::TCI.start, tci);
    }

    pub fn set_pcp(&mut self, pcp: u8) {
        let tci = (self.tci() & 0x1fff) | ((pcp as u16 & 0x7) << 13);
        self.set_tci(tci);
    }

    pub fn set_dei(&mut self, dei: bool) {
        let tci = (self.tci() & !0x1000) | if dei { 0x1000 } else { 0 };
        self.set_tci(tci);
    }

    /// Sets the VLAN id; bits above 12 are ignored.
    pub fn set_vid(&mut self, vid: u16) {
        let tci = (self.tci() & 0xf000) | (vid & 0x0fff);
        self.set_tci(tci);
    }

    pub fn set_ethertype(&mut self, ty: EtherType) {
        write_u16(self.buffer.as_mut(), field::ETHERTYPE.start, ty.into());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// One VLAN tag as a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanRepr {
    pub pcp: u8,
    pub dei: bool,
    pub vid: u16,
    /// EtherType of the payload inside the tag.
    pub ethertype: EtherType,
}

impl VlanRepr {
    pub fn parse<T: AsRef<[u8]>>(packet: &VlanPacket<T>) -> Result<VlanRepr> {
        packet.check_len()?;
        Ok(VlanRepr {
            pcp: packet.pcp(),
            dei: packet.dei(),
            vid: packet.vid(),
            ethertype: packet.ethertype(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut VlanPacket<T>) {
        packet.set_tci(
            ((self.pcp as u16 & 7) << 13) | if self.dei { 0x1000 } else { 0 } | (self.vid & 0xfff),
        );
        packet.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn known_bytes() {
        // PCP 5, DEI 1, VID 0x123, IPv6 inside.
        let bytes = [0xb1, 0x23, 0x86, 0xdd, 0x60];
        let p = VlanPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!((p.pcp(), p.dei(), p.vid()), (5, true, 0x123));
        assert_eq!(p.ethertype(), EtherType::Ipv6);
        assert_eq!(p.payload(), &[0x60]);
        let repr = VlanRepr::parse(&p).unwrap();
        let mut out = [0u8; 4];
        repr.emit(&mut VlanPacket::new_unchecked(&mut out[..]));
        assert_eq!(out, bytes[..4]);
        assert_eq!(
            VlanPacket::new_checked(&bytes[..3]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn setters_keep_other_bits() {
        let mut bytes = [0xb1, 0x23, 0x08, 0x00];
        let mut p = VlanPacket::new_unchecked(&mut bytes[..]);
        p.set_vid(0xfff);
        assert_eq!((p.pcp(), p.dei(), p.vid()), (5, true, 0xfff));
        p.set_pcp(1);
        p.set_dei(false);
        assert_eq!((p.pcp(), p.dei(), p.vid()), (1, false, 0xfff));
    }
}
