//! The Internet checksum (RFC 1071), the pseudo-header sums that TCP, UDP and ICMPv6 include, and
//! the incremental update of RFC 1624 that lets a NAT rewrite touch only the words it changes.
//!
//! Sums here are one's complement sums folded to 16 bits and *not* complemented; the value stored
//! in a header is `!sum`. Keeping the two apart lets callers add a pseudo-header sum to a data sum
//! before the single final complement.
//!
//! Nothing here panics.

use crate::ip::IpProtocol;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Folds a wide accumulator to 16 bits with end-around carry.
///
/// The result is 0 only when `acc` is 0: a non-zero sum of one's complement words folds to
/// `1..=0xffff`, which is what makes the incremental update agree with a full recomputation.
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// One's complement addition of two 16-bit sums.
#[inline]
pub fn add(a: u16, b: u16) -> u16 {
    fold(a as u64 + b as u64)
}

/// One's complement sum of `data` read as big-endian 16-bit words; an odd last byte is padded
/// with zero, as RFC 1071 says.
pub fn sum(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    // Summing 32-bit words is the same one's complement sum (2^16 = 1 mod 0xffff) at half the
    // iterations; a u64 cannot overflow for any buffer that fits in memory.
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as u64;
    }
    let mut rest = words.remainder().chunks_exact(2);
    for w in &mut rest {
        acc += u16::from_be_bytes([w[0], w[1]]) as u64;
    }
    if let [last] = rest.remainder() {
        acc += (*last as u64) << 8;
    }
    fold(acc)
}

/// One's complement sum of several sums, e.g. a pseudo-header and the segment.
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| s as u64).sum())
}

/// The checksum to store for `data` (with its checksum field zeroed): `!sum(data)`.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !sum(data)
}

/// Whether `data`, checksum field included, sums to all ones, i.e. carries a valid checksum.
#[inline]
pub fn verify(data: &[u8]) -> bool {
    sum(data) == 0xffff
}

/// Sum of the IPv4 pseudo-header (RFC 793, RFC 768): addresses, zero, protocol, L4 length.
pub fn pseudo_header_v4(src: &Ipv4Addr, dst: &Ipv4Addr, protocol: IpProtocol, length: u32) -> u16 {
    let mut acc: u64 = u32::from_be_bytes(src.octets()) as u64;
    acc += u32::from_be_bytes(dst.octets()) as u64;
    acc += u8::from(protocol) as u64;
    acc += length as u64;
    fold(acc)
}

/// Sum of the IPv6 pseudo-header (RFC 8200 section 8.1): addresses, 32-bit upper-layer length,
/// zeros and next header.
pub fn pseudo_header_v6(
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
    next_header: IpProtocol,
    length: u32,
) -> u16 {
    let acc = sum(&src.octets()) as u64
        + sum(&dst.octets()) as u64
        + u8::from(next_header) as u64
        + length as u64;
    fold(acc)
}

/// Pseudo-header sum for either family. Mixed families have no meaning on the wire; they are
/// summed anyway rather than panicking, and the checksum will simply not verify.
pub fn pseudo_header(src: &IpAddr, dst: &IpAddr, protocol: IpProtocol, length: u32) -> u16 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => pseudo_header_v4(s, d, protocol, length),
        (IpAddr::V6(s), IpAddr::V6(d)) => pseudo_header_v6(s, d, protocol, length),
        _ => combine(&[
            addr_sum(src),
            addr_sum(dst),
            u8::from(protocol) as u16,
            fold(length as u64),
        ]),
    }
}

/// The one's complement sum of a TCP, UDP or ICMPv6 message `data` with its pseudo-header:
/// `0xffff` when the checksum in it is right; its complement is the checksum to store.
pub fn with_pseudo_header(src: &IpAddr, dst: &IpAddr, protocol: IpProtocol, data: &[u8]) -> u16 {
    combine(&[
        pseudo_header(src, dst, protocol, data.len() as u32),
        sum(data),
    ])
}

fn addr_sum(addr: &IpAddr) -> u16 {
    match addr {
        IpAddr::V4(a) => sum(&a.octets()),
        IpAddr::V6(a) => sum(&a.octets()),
    }
}

/// RFC 1624 equation 3, `HC' = ~(~HC + ~m + m')`, for one 16-bit word changing from `old` to
/// `new`. `hc` and the result are stored checksums (complemented).
#[inline]
pub fn update16(hc: u16, old: u16, new: u16) -> u16 {
    !add(add(!hc, !old), new)
}

/// [`update16`] for a 32-bit field (an IPv4 address, a TCP sequence number).
#[inline]
pub fn update32(hc: u16, old: u32, new: u32) -> u16 {
    let acc = (!hc) as u64
        + (!(old >> 16) & 0xffff) as u64
        + (!old & 0xffff) as u64
        + (new >> 16) as u64
        + (new & 0xffff) as u64;
    !fold(acc)
}

/// [`update16`] for a field of any even length starting on a 16-bit boundary of the checksummed
/// data (an IPv6 address). `old` and `new` should have the same length; a shorter one counts as
/// padded with zeros.
pub fn update_bytes(hc: u16, old: &[u8], new: &[u8]) -> u16 {
    !add(add(!hc, !sum(old)), sum(new))
}

/// The SCTP checksum (RFC 9260 appendix A, CRC32c) of a packet's SCTP bytes (common header and
/// chunks), computed with its checksum field taken as zero, in the order it is stored: the
/// value's little-endian bytes go at offset 8 (as the kernel's `sctp_compute_cksum`). Not
/// incremental: a CRC has no cheap update, so NAT recomputes it whole as the kernel does.
/// Bytes shorter than the common header give 0.
pub fn sctp(l4: &[u8]) -> u32 {
    if l4.len() < 12 {
        return 0;
    }
    let c = crc32c::crc32c(&l4[..8]);
    let c = crc32c::crc32c_append(c, &[0; 4]);
    crc32c::crc32c_append(c, &l4[12..])
}

/// Stores [`sctp`] of `l4` in its checksum field; nothing when shorter than the common header.
pub fn fill_sctp(l4: &mut [u8]) {
    let c = sctp(l4);
    if let Some(f) = l4.get_mut(8..12) {
        f.copy_from_slice(&c.to_le_bytes());
    }
}

/// Whether the checksum stored in SCTP bytes is right.
pub fn verify_sctp(l4: &[u8]) -> bool {
    l4.get(8..12)
        .is_some_and(|f| f == sctp(l4).to_le_bytes().as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sctp_crc32c_known_value() {
        // an INIT from 5000 to 6000, tag 0xdeadbeef (the value Linux's sctp_compute_cksum
        // gives, as the difftest's packets.py computes it bitwise)
        let mut p = vec![0x13, 0x88, 0x17, 0x70, 0, 0, 0, 0, 0, 0, 0, 0];
        p.extend_from_slice(&[1, 0, 0, 20, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0xff, 0xff]);
        p.extend_from_slice(&[0, 10, 0, 10, 0, 0, 0, 1]);
        let bitwise = |d: &[u8]| {
            let mut c = 0xffff_ffffu32;
            for &b in d {
                c ^= u32::from(b);
                for _ in 0..8 {
                    c = (c >> 1) ^ if c & 1 != 0 { 0x82f6_3b78 } else { 0 };
                }
            }
            !c
        };
        assert_eq!(sctp(&p), bitwise(&p));
        assert!(!verify_sctp(&p));
        fill_sctp(&mut p);
        assert!(verify_sctp(&p));
        assert_eq!(
            p[8..12],
            bitwise(&[&p[..8], &[0; 4], &p[12..]].concat()).to_le_bytes()
        );
        // the stored checksum is not part of what it covers
        let mut q = p.clone();
        q[8] ^= 0xff;
        assert_eq!(sctp(&q), sctp(&p));
        assert_eq!(sctp(&p[..11]), 0);
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(sum(&[]), 0);
        assert_eq!(sum(&[0xff]), 0xff00);
    }

    #[test]
    fn known_ipv4_header() {
        // A classic example header (Wikipedia "IPv4 header checksum"), checksum 0xb861.
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert!(verify(&hdr));
        hdr[10] = 0;
        hdr[11] = 0;
        assert_eq!(checksum(&hdr), 0xb861);
    }

    #[test]
    fn rfc1624_minus_zero_case() {
        // RFC 1624 section 4: equation 2 gives 0xffff where a full recomputation gives 0x0000;
        // equation 3 must give 0x0000. The filler makes the new data sum to all ones.
        let mut data = [0x55u8, 0x55, 0x00, 0x00, 0x00, 0x00];
        let filler = !0x3285u16;
        data[4..6].copy_from_slice(&filler.to_be_bytes());
        let hc = checksum(&data);
        let new_hc = update16(hc, 0x5555, 0x3285);
        data[0..2].copy_from_slice(&0x3285u16.to_be_bytes());
        assert_eq!(new_hc, checksum(&data));
        assert_eq!(new_hc, 0x0000);
    }

    proptest! {
        #[test]
        fn sum_matches_naive(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut acc: u32 = 0;
            for pair in data.chunks(2) {
                let w = if pair.len() == 2 { u16::from_be_bytes([pair[0], pair[1]]) } else { (pair[0] as u16) << 8 };
                acc += w as u32;
                acc = (acc & 0xffff) + (acc >> 16);
            }
            prop_assert_eq!(sum(&data), acc as u16);
        }

        #[test]
        fn incremental_equals_full(
            mut data in proptest::collection::vec(any::<u8>(), 8..128),
            word in 1usize..64,
            new16 in any::<u16>(),
            new32 in any::<u32>(),
            new128 in any::<[u8; 16]>(),
        ) {
            // Word 0 is the checksum; keep one non-zero byte elsewhere as every real header has
            // (a version, a protocol), since an all-zero packet has two valid encodings.
            if data.len() % 2 == 1 { data.pop(); }
            data[2] |= 1;
            data[0] = 0; data[1] = 0;
            let hc = checksum(&data);
            data[0..2].copy_from_slice(&hc.to_be_bytes());
            let words = data.len() / 2;

            // 16-bit field.
            let at = 2 + 2 * (word % (words - 1));
            if at != 2 {
                let old = u16::from_be_bytes([data[at], data[at + 1]]);
                let hc = u16::from_be_bytes([data[0], data[1]]);
                let inc = update16(hc, old, new16);
                data[at..at + 2].copy_from_slice(&new16.to_be_bytes());
                data[0] = 0; data[1] = 0;
                prop_assert_eq!(inc, checksum(&data));
                data[0..2].copy_from_slice(&inc.to_be_bytes());
                prop_assert!(verify(&data));
            }

            // 32-bit field after the checksum word and the guaranteed non-zero byte.
            if data.len() >= 8 {
                let at = 4;
                let old = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
                let hc = u16::from_be_bytes([data[0], data[1]]);
                let inc = update32(hc, old, new32);
                data[at..at + 4].copy_from_slice(&new32.to_be_bytes());
                data[0] = 0; data[1] = 0;
                prop_assert_eq!(inc, checksum(&data));
                data[0..2].copy_from_slice(&inc.to_be_bytes());
            }

            // 128-bit field.
            if data.len() >= 20 {
                let at = 4;
                let hc = u16::from_be_bytes([data[0], data[1]]);
                let old: [u8; 16] = data[at..at + 16].try_into().unwrap();
                let inc = update_bytes(hc, &old, &new128);
                data[at..at + 16].copy_from_slice(&new128);
                data[0] = 0; data[1] = 0;
                prop_assert_eq!(inc, checksum(&data));
            }
        }
    }
}
