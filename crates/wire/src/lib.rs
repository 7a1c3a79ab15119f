//! Zero-copy packet views and value types for the protocols a router dataplane touches.
//!
//! Each protocol module has two halves, in the manner of smoltcp:
//!
//! * a *view* (`Ipv4Packet<T>`, `TcpPacket<T>`, ...) over any `T: AsRef<[u8]>`, whose getters read
//!   fields in place and whose setters (for `T: AsMut<[u8]>`) write them in place; nothing is
//!   copied and nothing is allocated;
//! * a *value type* (`Ipv4Repr`, `TcpRepr`, ...) with `parse`, `emit` and `buffer_len`, for code
//!   that builds packets or wants the fields as plain data.
//!
//! Every view module states the same panic contract: a view made with `new_unchecked` may panic
//! when a field lies past the end of the buffer; once `check_len()` has returned `Ok` (which
//! `new_checked` does), no accessor panics.
//!
//! [`parse_frame`] walks a whole Ethernet frame once and returns a [`PacketMeta`] with the offsets
//! and fields the rest of the dataplane keys on, or a [`ParseError`] whose [`ParseError::name`] is
//! a stable drop-counter key. [`checksum`] has the full and incremental (RFC 1624) Internet
//! checksums, and [`rewrite`] the in-place NAT rewrites built on them.
//!
//! ```
//! use nft_wire::rewrite::{self, Side};
//! use nft_wire::{parse_frame, IpProtocol, Ipv4Addr, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr};
//!
//! // Build Ethernet + IPv4 + UDP with the value types.
//! let (src, dst) = (Ipv4Addr::new(192, 168, 1, 10), Ipv4Addr::new(9, 9, 9, 9));
//! let udp = UdpRepr { src_port: 5353, dst_port: 53, payload: b"query" };
//! let ip = Ipv4Repr {
//!     src_addr: src, dst_addr: dst, next_header: IpProtocol::Udp,
//!     payload_len: udp.buffer_len(), ttl: 64, dscp: 0, ecn: 0, ident: 1,
//!     dont_frag: true, more_frags: false, frag_offset: 0,
//! };
//! let mut frame = vec![0u8; 14 + ip.buffer_len() + udp.buffer_len()];
//! frame[12..14].copy_from_slice(&[0x08, 0x00]);
//! ip.emit(&mut Ipv4Packet::new_unchecked(&mut frame[14..]));
//! udp.emit(&mut UdpPacket::new_unchecked(&mut frame[34..]), &src.into(), &dst.into());
//!
//! // Parse it once, then source-NAT it in place.
//! let meta = parse_frame(&frame).unwrap();
//! assert_eq!(meta.ports, Some((5353, 53)));
//! let l3 = meta.l3_offset;
//! rewrite::set_ipv4_addr(&mut frame[l3..], Side::Src, Ipv4Addr::new(203, 0, 113, 1)).unwrap();
//! let l4 = meta.l4_offset.unwrap();
//! rewrite::set_l4_port(&mut frame[l4..], IpProtocol::Udp, true, Side::Src, 40000).unwrap();
//!
//! let ip = Ipv4Packet::new_checked(&frame[l3..]).unwrap();
//! assert!(ip.verify_checksum());
//! let udp = UdpPacket::new_checked(ip.payload()).unwrap();
//! assert!(udp.verify_checksum(&ip.src_addr().into(), &ip.dst_addr().into()));
//! ```

#![forbid(unsafe_code)]

#[macro_use]
mod macros;

pub mod arp;
pub mod checksum;
pub mod ethernet;
mod frame;
pub mod icmpv4;
pub mod icmpv6;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod pppoe;
pub mod rewrite;
pub mod tcp;
pub mod udp;
pub mod vlan;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use ethernet::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr};
pub use frame::{parse_frame, Fragment, IcmpMeta, InnerMeta, PacketMeta, ParseError, VlanTag};
pub use icmpv4::{Icmpv4Message, Icmpv4Packet, Icmpv4Repr};
pub use icmpv6::{Icmpv6Message, Icmpv6Packet, Icmpv6Repr};
pub use ip::{IpProtocol, IpVersion};
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6ExtInfo, Ipv6FragInfo, Ipv6Packet, Ipv6Repr};
pub use pppoe::{PppProtocol, PppoeRepr, PppoeSession};
pub use tcp::{TcpFlags, TcpOption, TcpPacket, TcpRepr};
pub use udp::{UdpPacket, UdpRepr};
pub use vlan::{VlanPacket, VlanRepr};

pub use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a view or value type refused a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer ends before a field that the header says is there.
    Truncated,
    /// A field holds a value the protocol does not allow (a header length below the minimum, a
    /// wrong version, a bad checksum).
    Malformed,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Truncated => f.write_str("truncated packet"),
            Error::Malformed => f.write_str("malformed packet"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = core::result::Result<T, Error>;

/// Byte offsets of a field inside a header.
pub(crate) type Field = core::ops::Range<usize>;
/// Byte offset where the rest of a buffer (usually the payload) starts.
pub(crate) type Rest = core::ops::RangeFrom<usize>;

/// The length check of a header that states a length of its own, read by `stated` only once the
/// fixed `min` bytes are there: `Truncated` when the `len`-byte buffer ends before `min` or before
/// the stated length, `Malformed` when the stated length is below `min`. The stated length.
#[inline]
pub(crate) fn check_stated_len(
    len: usize,
    min: usize,
    stated: impl FnOnce() -> usize,
) -> Result<usize> {
    if len < min {
        return Err(Error::Truncated);
    }
    let n = stated();
    if n < min {
        return Err(Error::Malformed);
    }
    if n > len {
        return Err(Error::Truncated);
    }
    Ok(n)
}

#[inline]
pub(crate) fn read_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

#[inline]
pub(crate) fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

#[inline]
pub(crate) fn write_u16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn write_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
