//! Ethernet II frames.
//!
//! Panic contract: once [`EthernetFrame::check_len`] has returned `Ok` (as
//! [`EthernetFrame::new_checked`] does), no accessor panics. A view made with `new_unchecked`
//! over a buffer shorter than [`HEADER_LEN`] panics on access.

use crate::{read_u16, write_u16, Error, Result};

enum_with_unknown! {
    /// The EtherType of an Ethernet II frame or of the frame inside a VLAN tag.
    pub enum EtherType(u16) {
        Ipv4 = 0x0800,
        Arp = 0x0806,
        /// 802.1Q customer tag; also the outer tag of the older QinQ framing.
        Vlan = 0x8100,
        Ipv6 = 0x86dd,
        PppoeDiscovery = 0x8863,
        PppoeSession = 0x8864,
        /// 802.1ad service tag (the outer tag of QinQ).
        QinQ = 0x88a8,
    }
}

impl EtherType {
    /// Whether this EtherType announces a VLAN tag rather than a payload.
    #[inline]
    pub fn is_vlan(self) -> bool {
        matches!(self, EtherType::Vlan | EtherType::QinQ)
    }
}

impl core::fmt::Display for EtherType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EtherType::Ipv4 => f.write_str("ip"),
            EtherType::Arp => f.write_str("arp"),
            EtherType::Vlan => f.write_str("8021q"),
            EtherType::Ipv6 => f.write_str("ip6"),
            EtherType::PppoeDiscovery => f.write_str("pppoe-discovery"),
            EtherType::PppoeSession => f.write_str("pppoe-session"),
            EtherType::QinQ => f.write_str("8021ad"),
            EtherType::Unknown(v) => write!(f, "0x{v:04x}"),
        }
    }
}

/// A 48-bit MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    /// The address in the first six bytes of `data`, or `None` if `data` is shorter.
    pub fn from_bytes(data: &[u8]) -> Option<EthernetAddress> {
        let b: [u8; 6] = data.get(..6)?.try_into().ok()?;
        Some(EthernetAddress(b))
    }

    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Group bit set (broadcast included).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    pub fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

impl core::fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl core::str::FromStr for EthernetAddress {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in out.iter_mut() {
            let p = parts.next().ok_or(Error::Malformed)?;
            if p.is_empty() || p.len() > 2 {
                return Err(Error::Malformed);
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| Error::Malformed)?;
        }
        if parts.next().is_some() {
            return Err(Error::Malformed);
        }
        Ok(EthernetAddress(out))
    }
}

mod field {
    use crate::{Field, Rest};
    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: Rest = 14..;
}

/// Length of the Ethernet II header (no VLAN tags).
pub const HEADER_LEN: usize = field::PAYLOAD.start;

view!(
    /// A view of an Ethernet II frame (without FCS).
    EthernetFrame,
    header_len: HEADER_LEN
);

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    pub const fn header_len() -> usize {
        HEADER_LEN
    }

    /// Frame length for a payload of `payload_len` bytes.
    pub const fn buffer_len(payload_len: usize) -> usize {
        HEADER_LEN + payload_len
    }

    pub fn dst_addr(&self) -> EthernetAddress {
        let d = self.buffer.as_ref();
        let mut a = [0; 6];
        a.copy_from_slice(&d[field::DESTINATION]);
        EthernetAddress(a)
    }

    pub fn src_addr(&self) -> EthernetAddress {
        let d = self.buffer.as_ref();
        let mut a = [0; 6];
        a.copy_from_slice(&d[field::SOURCE]);
        EthernetAddress(a)
    }

    pub fn ethertype(&self) -> EtherType {
        EtherType::from(read_u16(self.buffer.as_ref(), field::ETHERTYPE.start))
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    pub fn set_src_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    pub fn set_ethertype(&mut self, ty: EtherType) {
        write_u16(self.buffer.as_mut(), field::ETHERTYPE.start, ty.into());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// The fields of an Ethernet II header as a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    pub src_addr: EthernetAddress,
    pub dst_addr: EthernetAddress,
    pub ethertype: EtherType,
}

impl EthernetRepr {
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<EthernetRepr> {
        frame.check_len()?;
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header; the frame must be at least [`HEADER_LEN`] long.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_src_addr(self.src_addr);
        frame.set_dst_addr(self.dst_addr);
        frame.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static FRAME: [u8; 18] = [
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, // dst
        0x11, 0x12, 0x13, 0x14, 0x15, 0x16, // src
        0x08, 0x00, // IPv4
        0xaa, 0xbb, 0xcc, 0xdd,
    ];

    #[test]
    fn parse_known_bytes() {
        let f = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(f.dst_addr(), EthernetAddress([1, 2, 3, 4, 5, 6]));
        assert_eq!(f.src_addr().to_string(), "11:12:13:14:15:16");
        assert_eq!(f.ethertype(), EtherType::Ipv4);
        assert_eq!(f.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
        let repr = EthernetRepr::parse(&f).unwrap();
        let mut out = [0u8; 18];
        let mut g = EthernetFrame::new_unchecked(&mut out[..]);
        repr.emit(&mut g);
        g.payload_mut().copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(out, FRAME);
    }

    #[test]
    fn short_is_truncated() {
        assert_eq!(
            EthernetFrame::new_checked(&FRAME[..13]).unwrap_err(),
            Error::Truncated
        );
        assert!(EthernetFrame::new_checked(&FRAME[..14]).is_ok());
    }

    #[test]
    fn address_parse_and_kinds() {
        let a: EthernetAddress = "02:00:5e:10:00:01".parse().unwrap();
        assert!(a.is_local() && a.is_unicast());
        assert!(EthernetAddress::BROADCAST.is_multicast());
        assert!("02:00:5e:10:00".parse::<EthernetAddress>().is_err());
        assert!("02:00:5e:10:00:01:02".parse::<EthernetAddress>().is_err());
        assert_eq!(EtherType::from(0x88a8), EtherType::QinQ);
        assert_eq!(u16::from(EtherType::Unknown(0x1234)), 0x1234);
    }
}
