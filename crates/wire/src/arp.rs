//! ARP (RFC 826). The view handles any hardware/protocol address lengths; the value type only
//! Ethernet over IPv4, the one a router needs.
//!
//! Panic contract: once [`ArpPacket::check_len`] has returned `Ok` (as [`ArpPacket::new_checked`]
//! does), no accessor panics; `check_len` accounts for the address length fields.

use crate::ethernet::{EtherType, EthernetAddress};
use crate::{read_u16, write_u16, Error, Result};
use std::net::Ipv4Addr;

enum_with_unknown! {
    pub enum ArpOperation(u16) {
        Request = 1,
        Reply = 2,
    }
}

enum_with_unknown! {
    /// ARP hardware type.
    pub enum ArpHardware(u16) {
        Ethernet = 1,
    }
}

mod field {
    use crate::Field;
    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    pub const ADDRS: usize = 8;

    pub fn sha(hlen: u8, _plen: u8) -> Field {
        ADDRS..ADDRS + hlen as usize
    }
    pub fn spa(hlen: u8, plen: u8) -> Field {
        let s = sha(hlen, plen).end;
        s..s + plen as usize
    }
    pub fn tha(hlen: u8, plen: u8) -> Field {
        let s = spa(hlen, plen).end;
        s..s + hlen as usize
    }
    pub fn tpa(hlen: u8, plen: u8) -> Field {
        let s = tha(hlen, plen).end;
        s..s + plen as usize
    }
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const ETHERNET_IPV4_LEN: usize = 28;

view!(
    /// A view of an ARP packet.
    ArpPacket
);

impl<T: AsRef<[u8]>> ArpPacket<T> {
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < field::ADDRS {
            return Err(Error::Truncated);
        }
        if len < field::tpa(self.hardware_len(), self.protocol_len()).end {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn hardware_type(&self) -> ArpHardware {
        ArpHardware::from(read_u16(self.buffer.as_ref(), field::HTYPE.start))
    }

    pub fn protocol_type(&self) -> EtherType {
        EtherType::from(read_u16(self.buffer.as_ref(), field::PTYPE.start))
    }

    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    pub fn operation(&self) -> ArpOperation {
        ArpOperation::from(read_u16(self.buffer.as_ref(), field::OPER.start))
    }

    pub fn source_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[field::sha(self.hardware_len(), self.protocol_len())]
    }

    pub fn source_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[field::spa(self.hardware_len(), self.protocol_len())]
    }

    pub fn target_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[field::tha(self.hardware_len(), self.protocol_len())]
    }

    pub fn target_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[field::tpa(self.hardware_len(), self.protocol_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    pub fn set_hardware_type(&mut self, v: ArpHardware) {
        write_u16(self.buffer.as_mut(), field::HTYPE.start, v.into());
    }

    pub fn set_protocol_type(&mut self, v: EtherType) {
        write_u16(self.buffer.as_mut(), field::PTYPE.start, v.into());
    }

    pub fn set_hardware_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::HLEN] = v;
    }

    pub fn set_protocol_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::PLEN] = v;
    }

    pub fn set_operation(&mut self, v: ArpOperation) {
        write_u16(self.buffer.as_mut(), field::OPER.start, v.into());
    }

    /// The address lengths must already be set; `addr` must have the hardware length.
    pub fn set_source_hardware_addr(&mut self, addr: &[u8]) {
        let f = field::sha(self.hardware_len(), self.protocol_len());
        self.buffer.as_mut()[f].copy_from_slice(addr);
    }

    pub fn set_source_protocol_addr(&mut self, addr: &[u8]) {
        let f = field::spa(self.hardware_len(), self.protocol_len());
        self.buffer.as_mut()[f].copy_from_slice(addr);
    }

    pub fn set_target_hardware_addr(&mut self, addr: &[u8]) {
        let f = field::tha(self.hardware_len(), self.protocol_len());
        self.buffer.as_mut()[f].copy_from_slice(addr);
    }

    pub fn set_target_protocol_addr(&mut self, addr: &[u8]) {
        let f = field::tpa(self.hardware_len(), self.protocol_len());
        self.buffer.as_mut()[f].copy_from_slice(addr);
    }
}

/// An Ethernet/IPv4 ARP packet as a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    pub operation: ArpOperation,
    pub source_hardware_addr: EthernetAddress,
    pub source_protocol_addr: Ipv4Addr,
    pub target_hardware_addr: EthernetAddress,
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// `Malformed` for anything but Ethernet hardware and IPv4 protocol addresses.
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<ArpRepr> {
        packet.check_len()?;
        if packet.hardware_type() != ArpHardware::Ethernet
            || packet.protocol_type() != EtherType::Ipv4
            || packet.hardware_len() != 6
            || packet.protocol_len() != 4
        {
            return Err(Error::Malformed);
        }
        let ip = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
        let mac = |b: &[u8]| EthernetAddress::from_bytes(b).unwrap_or_default();
        Ok(ArpRepr {
            operation: packet.operation(),
            source_hardware_addr: mac(packet.source_hardware_addr()),
            source_protocol_addr: ip(packet.source_protocol_addr()),
            target_hardware_addr: mac(packet.target_hardware_addr()),
            target_protocol_addr: ip(packet.target_protocol_addr()),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        ETHERNET_IPV4_LEN
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) {
        packet.set_hardware_type(ArpHardware::Ethernet);
        packet.set_protocol_type(EtherType::Ipv4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_source_hardware_addr(&self.source_hardware_addr.0);
        packet.set_source_protocol_addr(&self.source_protocol_addr.octets());
        packet.set_target_hardware_addr(&self.target_hardware_addr.0);
        packet.set_target_protocol_addr(&self.target_protocol_addr.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // eth/ipv4 request
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 192, 168, 1, 1, // sender
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 192, 168, 1, 2, // target
    ];

    #[test]
    fn known_bytes_round_trip() {
        let p = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        let repr = ArpRepr::parse(&p).unwrap();
        assert_eq!(repr.operation, ArpOperation::Request);
        assert_eq!(
            repr.source_hardware_addr,
            EthernetAddress([2, 0, 0, 0, 0, 1])
        );
        assert_eq!(repr.source_protocol_addr, Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(repr.target_protocol_addr, Ipv4Addr::new(192, 168, 1, 2));
        let mut out = [0u8; 28];
        repr.emit(&mut ArpPacket::new_unchecked(&mut out[..]));
        assert_eq!(out, REQUEST);
    }

    #[test]
    fn lengths_are_checked() {
        assert_eq!(
            ArpPacket::new_checked(&REQUEST[..27]).unwrap_err(),
            Error::Truncated
        );
        let mut big = REQUEST;
        big[4] = 200; // hardware length 200 does not fit
        assert_eq!(
            ArpPacket::new_checked(&big[..]).unwrap_err(),
            Error::Truncated
        );
        let mut other = REQUEST;
        other[3] = 0xdd; // protocol IPv6 with length 4
        assert_eq!(
            ArpRepr::parse(&ArpPacket::new_unchecked(&other[..])).unwrap_err(),
            Error::Malformed
        );
    }
}
