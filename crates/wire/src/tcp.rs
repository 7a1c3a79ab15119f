//! TCP segments (RFC 9293): header, flags, the options region, and the checksum over the
//! pseudo-header.
//!
//! Panic contract: once [`TcpPacket::check_len`] has returned `Ok` (as [`TcpPacket::new_checked`]
//! does), no accessor panics; `check_len` checks the data offset field. The options iterator
//! never panics on any bytes.

use crate::checksum;
use crate::ip::IpProtocol;
use crate::{check_stated_len, read_u16, read_u32, write_u16, write_u32, Error, Result};
use std::net::IpAddr;

mod field {
    use crate::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    pub const FLAGS: Field = 12..14;
    pub const WIN_SIZE: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
    pub const OPTIONS: usize = 20;
}

/// Length of the header without options.
pub const HEADER_LEN: usize = field::OPTIONS;
/// Longest header (data offset 15).
pub const MAX_HEADER_LEN: usize = 60;
/// Offset of the checksum field, for code that patches it through a raw slice.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

/// The TCP control bits (the low 9 bits of the data-offset/flags word).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TcpFlags(pub u16);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x001);
    pub const SYN: TcpFlags = TcpFlags(0x002);
    pub const RST: TcpFlags = TcpFlags(0x004);
    pub const PSH: TcpFlags = TcpFlags(0x008);
    pub const ACK: TcpFlags = TcpFlags(0x010);
    pub const URG: TcpFlags = TcpFlags(0x020);
    pub const ECE: TcpFlags = TcpFlags(0x040);
    pub const CWR: TcpFlags = TcpFlags(0x080);
    /// The historic ECN nonce bit (RFC 3540, obsolete), kept so no bit is lost.
    pub const NS: TcpFlags = TcpFlags(0x100);
    pub const NONE: TcpFlags = TcpFlags(0);

    const NAMES: [(TcpFlags, &'static str); 9] = [
        (TcpFlags::FIN, "fin"),
        (TcpFlags::SYN, "syn"),
        (TcpFlags::RST, "rst"),
        (TcpFlags::PSH, "psh"),
        (TcpFlags::ACK, "ack"),
        (TcpFlags::URG, "urg"),
        (TcpFlags::ECE, "ecn"),
        (TcpFlags::CWR, "cwr"),
        (TcpFlags::NS, "ns"),
    ];

    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set.
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl core::ops::BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

impl core::ops::BitAnd for TcpFlags {
    type Output = TcpFlags;
    fn bitand(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & rhs.0)
    }
}

impl core::ops::Not for TcpFlags {
    type Output = TcpFlags;
    fn not(self) -> TcpFlags {
        TcpFlags(!self.0 & 0x1ff)
    }
}

/// Prints nft's spelling, `syn|ack`.
impl core::fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut first = true;
        for (flag, name) in Self::NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("0x0")?;
        }
        Ok(())
    }
}

impl core::fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "TcpFlags({self})")
    }
}

/// One option from the options region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    EndOfList,
    NoOperation,
    MaxSegmentSize(u16),
    WindowScale(u8),
    SackPermitted,
    /// The SACK blocks, raw (pairs of 32-bit edges).
    Sack(&'a [u8]),
    Timestamps {
        tsval: u32,
        tsecr: u32,
    },
    Unknown {
        kind: u8,
        data: &'a [u8],
    },
}

impl TcpOption<'_> {
    /// How many bytes the option takes in the header (kind and length included).
    pub fn wire_len(&self) -> usize {
        match self {
            TcpOption::EndOfList | TcpOption::NoOperation => 1,
            TcpOption::MaxSegmentSize(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::Sack(d) => 2 + d.len(),
            TcpOption::Timestamps { .. } => 10,
            TcpOption::Unknown { data, .. } => 2 + data.len(),
        }
    }
}

/// Iterates the options region. After an end-of-list option it stops; an option whose length
/// is below 2 or runs past the region yields `Err(Malformed)` once and then stops. A known
/// option of the wrong size (MSS of length 3, SACK of 12) comes as [`TcpOption::Unknown`] and
/// the walk steps over it, as the kernel's option walks do (`optoff += op[1]`).
#[derive(Debug, Clone)]
pub struct TcpOptions<'a> {
    rest: &'a [u8],
}

impl<'a> TcpOptions<'a> {
    pub fn new(region: &'a [u8]) -> Self {
        TcpOptions { rest: region }
    }
}

impl<'a> Iterator for TcpOptions<'a> {
    type Item = Result<TcpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, after_kind) = self.rest.split_first()?;
        match kind {
            0 => {
                self.rest = &[];
                return Some(Ok(TcpOption::EndOfList));
            }
            1 => {
                self.rest = after_kind;
                return Some(Ok(TcpOption::NoOperation));
            }
            _ => {}
        }
        let len = match after_kind.first() {
            Some(&l) if l >= 2 && l as usize <= self.rest.len() => l as usize,
            _ => {
                self.rest = &[];
                return Some(Err(Error::Malformed));
            }
        };
        let data = &self.rest[2..len];
        self.rest = &self.rest[len..];
        let opt = match (kind, data.len()) {
            (2, 2) => TcpOption::MaxSegmentSize(u16::from_be_bytes([data[0], data[1]])),
            (3, 1) => TcpOption::WindowScale(data[0]),
            (4, 0) => TcpOption::SackPermitted,
            (5, n) if n % 8 == 0 => TcpOption::Sack(data),
            (8, 8) => TcpOption::Timestamps {
                tsval: u32::from_be_bytes([data[0], data[1], data[2], data[3]]),
                tsecr: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            },
            _ => TcpOption::Unknown { kind, data },
        };
        Some(Ok(opt))
    }
}

view!(
    /// A view of a TCP segment.
    TcpPacket
);

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// `Truncated` when the buffer ends before the fixed header or before the data offset;
    /// `Malformed` when the data offset is below 5.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        check_stated_len(len, HEADER_LEN, || self.header_len() as usize)?;
        Ok(())
    }

    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT.start)
    }

    pub fn seq_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SEQ_NUM.start)
    }

    pub fn ack_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::ACK_NUM.start)
    }

    /// Header length in bytes (data offset * 4).
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::FLAGS.start] >> 4) * 4
    }

    pub fn flags(&self) -> TcpFlags {
        TcpFlags(read_u16(self.buffer.as_ref(), field::FLAGS.start) & 0x1ff)
    }

    pub fn window_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::WIN_SIZE.start)
    }

    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    pub fn urgent_at(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::URGENT.start)
    }

    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len() as usize]
    }

    pub fn options_iter(&self) -> TcpOptions<'_> {
        TcpOptions::new(self.options())
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len() as usize..]
    }

    /// Whether the checksum is valid for the whole buffer as the segment.
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        checksum::with_pseudo_header(src, dst, IpProtocol::Tcp, self.buffer.as_ref()) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> TcpPacket<&'a T> {
    /// The payload with the lifetime of the underlying buffer, for value types that borrow it.
    pub fn payload_ref(&self) -> &'a [u8] {
        let data = self.buffer.as_ref();
        &data[self.header_len() as usize..]
    }

    pub fn options_ref(&self) -> &'a [u8] {
        let data = self.buffer.as_ref();
        &data[field::OPTIONS..self.header_len() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    pub fn set_src_port(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT.start, v);
    }

    pub fn set_dst_port(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT.start, v);
    }

    pub fn set_seq_number(&mut self, v: u32) {
        write_u32(self.buffer.as_mut(), field::SEQ_NUM.start, v);
    }

    pub fn set_ack_number(&mut self, v: u32) {
        write_u32(self.buffer.as_mut(), field::ACK_NUM.start, v);
    }

    /// Sets the data offset from a length in bytes (rounded down to a multiple of four).
    pub fn set_header_len(&mut self, len: u8) {
        let b = &mut self.buffer.as_mut()[field::FLAGS.start];
        *b = (*b & 0x0f) | ((len / 4) << 4);
    }

    pub fn set_flags(&mut self, flags: TcpFlags) {
        let w = read_u16(self.buffer.as_ref(), field::FLAGS.start);
        write_u16(
            self.buffer.as_mut(),
            field::FLAGS.start,
            (w & !0x1ff) | (flags.0 & 0x1ff),
        );
    }

    pub fn set_window_len(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::WIN_SIZE.start, v);
    }

    pub fn set_checksum(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM.start, v);
    }

    pub fn set_urgent_at(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::URGENT.start, v);
    }

    pub fn options_mut(&mut self) -> &mut [u8] {
        let hlen = self.header_len() as usize;
        &mut self.buffer.as_mut()[field::OPTIONS..hlen]
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hlen = self.header_len() as usize;
        &mut self.buffer.as_mut()[hlen..]
    }

    /// Computes the checksum over the whole buffer as the segment.
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        self.set_checksum(0);
        let c = !checksum::with_pseudo_header(src, dst, IpProtocol::Tcp, self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// A TCP segment as a value, borrowing its options and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRepr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq_number: u32,
    pub ack_number: u32,
    pub flags: TcpFlags,
    pub window_len: u16,
    pub urgent_at: u16,
    /// Raw options; `emit` pads them with zeros (end of list) to a multiple of four and writes at
    /// most 40 bytes of them.
    pub options: &'a [u8],
    pub payload: &'a [u8],
}

impl<'a> TcpRepr<'a> {
    /// Checks lengths and the checksum (the segment being the whole buffer).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &TcpPacket<&'a T>,
        src: &IpAddr,
        dst: &IpAddr,
    ) -> Result<TcpRepr<'a>> {
        packet.check_len()?;
        if !packet.verify_checksum(src, dst) {
            return Err(Error::Malformed);
        }
        Ok(TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
            urgent_at: packet.urgent_at(),
            options: packet.options_ref(),
            payload: packet.payload_ref(),
        })
    }

    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.len().div_ceil(4).min(10) * 4
    }

    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Writes header, options and payload and fills the checksum. The buffer must be exactly
    /// [`TcpRepr::buffer_len`] long, since the checksum covers all of it.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut TcpPacket<T>,
        src: &IpAddr,
        dst: &IpAddr,
    ) {
        let hlen = self.header_len();
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        write_u16(packet.buffer.as_mut(), field::FLAGS.start, 0);
        packet.set_header_len(hlen as u8);
        packet.set_flags(self.flags);
        packet.set_window_len(self.window_len);
        packet.set_urgent_at(self.urgent_at);
        let opts = packet.options_mut();
        let n = self.options.len().min(opts.len());
        opts[..n].copy_from_slice(&self.options[..n]);
        opts[n..].fill(0);
        packet.payload_mut()[..self.payload.len()].copy_from_slice(self.payload);
        packet.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    // SYN 10.0.0.1:49152 -> 10.0.0.2:80, seq 0x01020304, MSS 1460, SACK permitted, WS 7.
    static SYN: [u8; 32] = [
        0xc0, 0x00, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0x80, 0x02, 0xfa,
        0xf0, 0x00, 0x00, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x01, 0x03, 0x03, 0x07,
        0x00, 0x00,
    ];

    fn addrs() -> (IpAddr, IpAddr) {
        (
            Ipv4Addr::new(10, 0, 0, 1).into(),
            Ipv4Addr::new(10, 0, 0, 2).into(),
        )
    }

    #[test]
    fn known_syn() {
        let (s, d) = addrs();
        let mut buf = SYN;
        TcpPacket::new_unchecked(&mut buf[..]).fill_checksum(&s, &d);
        let p = TcpPacket::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum(&s, &d));
        assert_eq!((p.src_port(), p.dst_port()), (49152, 80));
        assert_eq!(p.seq_number(), 0x01020304);
        assert_eq!(p.header_len(), 32);
        assert_eq!(p.flags(), TcpFlags::SYN);
        assert_eq!(p.window_len(), 64240);
        let opts: Vec<_> = p.options_iter().collect::<Result<_>>().unwrap();
        assert_eq!(
            opts,
            [
                TcpOption::MaxSegmentSize(1460),
                TcpOption::SackPermitted,
                TcpOption::NoOperation,
                TcpOption::WindowScale(7),
                TcpOption::EndOfList,
            ]
        );
        let repr = TcpRepr::parse(&p, &s, &d).unwrap();
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(&mut TcpPacket::new_unchecked(&mut out[..]), &s, &d);
        assert_eq!(out, buf);
    }

    #[test]
    fn flags_print_like_nft() {
        assert_eq!((TcpFlags::SYN | TcpFlags::ACK).to_string(), "syn|ack");
        assert_eq!(TcpFlags::NONE.to_string(), "0x0");
        assert!((TcpFlags::FIN | TcpFlags::ACK).intersects(TcpFlags::FIN | TcpFlags::RST));
    }

    #[test]
    fn bad_data_offset() {
        let mut b = SYN;
        b[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&b[..]).unwrap_err(),
            Error::Malformed
        );
        b[12] = 0xf0;
        assert_eq!(
            TcpPacket::new_checked(&b[..]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            TcpPacket::new_checked(&b[..19]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn malformed_options_stop() {
        let opts = [2u8, 4, 5]; // MSS running past the region
        let v: Vec<_> = TcpOptions::new(&opts).collect();
        assert_eq!(v, [Err(Error::Malformed)]);
        let opts = [1u8, 3, 2, 7]; // a kind with no length byte
        let v: Vec<_> = TcpOptions::new(&opts).collect();
        assert_eq!(
            v,
            [
                Ok(TcpOption::NoOperation),
                Ok(TcpOption::Unknown { kind: 3, data: &[] }),
                Err(Error::Malformed)
            ]
        );
        let opts = [1u8, 1, 1, 0, 5];
        let v: Vec<_> = TcpOptions::new(&opts[..4]).collect();
        assert_eq!(v.last(), Some(&Ok(TcpOption::EndOfList)));
        let opts = [2u8, 1, 9]; // length below 2
        let v: Vec<_> = TcpOptions::new(&opts).collect();
        assert_eq!(v, [Err(Error::Malformed)]);
    }

    #[test]
    fn wrong_sized_known_options_are_stepped_over() {
        // MSS of length 3, SACK of length 12 (not 2 + 8n), then a timestamp
        let opts = [
            2u8, 3, 5, 5, 12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9,
        ];
        let v: Vec<_> = TcpOptions::new(&opts).collect();
        assert_eq!(
            v,
            [
                Ok(TcpOption::Unknown {
                    kind: 2,
                    data: &[5]
                }),
                Ok(TcpOption::Unknown {
                    kind: 5,
                    data: &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
                }),
                Ok(TcpOption::Timestamps { tsval: 7, tsecr: 9 }),
            ]
        );
        assert_eq!(
            v.iter().map(|o| o.unwrap().wire_len()).sum::<usize>(),
            opts.len()
        );
        let opts = [30u8, 3, 9, 0, 1];
        let v: Vec<_> = TcpOptions::new(&opts).collect();
        assert_eq!(
            v,
            [
                Ok(TcpOption::Unknown {
                    kind: 30,
                    data: &[9]
                }),
                Ok(TcpOption::EndOfList)
            ]
        );
    }
}
