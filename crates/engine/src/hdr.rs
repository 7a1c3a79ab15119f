//! Header walks and packet arithmetic the rule engine needs beyond fixed offsets: IPv6
//! extension headers, TCP and IPv4 options, bit-field writes with incremental checksums, and
//! the kernel's hashes.
//!
//! Everything here takes untrusted bytes and bounds-checks every access: a short or malformed
//! header makes the walk return None, never panic.

use nft_wire::checksum;

/// IPv6 extension headers the kernel's `ipv6_find_hdr` walks through.
fn is_ipv6_ext(nh: u8) -> bool {
    matches!(nh, 0 | 43 | 44 | 51 | 60 | 135)
}

/// Offset in `frame` of the IPv6 extension header with next-header number `want`, searching
/// from the fixed header at `nh` (`ipv6_find_hdr`). A fragment header that is not the first
/// fragment ends the walk after itself, as nothing after it is in this packet.
pub fn ipv6_exthdr(frame: &[u8], nh: usize, want: u8) -> Option<usize> {
    let mut next = *frame.get(nh + 6)?;
    let mut off = nh.checked_add(40)?;
    for _ in 0..16 {
        if !is_ipv6_ext(next) {
            return None;
        }
        if next == want {
            frame.get(off..off + 2)?;
            return Some(off);
        }
        let hdr = frame.get(off..off + 2)?;
        let len = match next {
            44 => {
                let frag_off =
                    u16::from_be_bytes([*frame.get(off + 2)?, *frame.get(off + 3)?]) & !7;
                if frag_off != 0 {
                    return None;
                }
                8
            }
            // AH counts its length in 4-byte units, less two
            51 => (hdr[1] as usize + 2) * 4,
            _ => (hdr[1] as usize + 1) * 8,
        };
        next = hdr[0];
        off = off.checked_add(len)?;
    }
    None
}

/// Offset in `frame` of the first TCP option of `kind` in the TCP header at `th`
/// (`nft_tcp_header_pointer` and the option walk of `nft_exthdr_tcp_eval`).
pub fn tcp_option(frame: &[u8], th: usize, kind: u8) -> Option<usize> {
    let doff = (*frame.get(th + 12)? >> 4) as usize * 4;
    if doff < 20 {
        return None;
    }
    find_option(frame, th + 20, th.checked_add(doff)?, kind)
}

/// Offset in `frame` of the IPv4 option of `ty` in the header at `nh` (`ipv4_find_option`).
pub fn ip_option(frame: &[u8], nh: usize, ty: u8) -> Option<usize> {
    let ihl = (*frame.get(nh)? & 0xf) as usize * 4;
    if ihl <= 20 {
        return None;
    }
    find_option(frame, nh + 20, nh.checked_add(ihl)?, ty)
}

/// TCP and IPv4 options share one layout: kind 0 ends the list, kind 1 is a one-byte pad,
/// every other kind carries its length (at least 2) in the next byte.
fn find_option(frame: &[u8], start: usize, end: usize, kind: u8) -> Option<usize> {
    if end > frame.len() {
        return None;
    }
    let mut i = start;
    while i < end {
        let k = frame[i];
        if k == kind {
            return Some(i);
        }
        match k {
            0 => return None,
            1 => i += 1,
            _ => {
                let len = *frame.get(i + 1)? as usize;
                if len < 2 {
                    return None;
                }
                i += len;
            }
        }
    }
    None
}

/// Reads `bits` bits at bit `offset` from byte `start`, big endian.
pub fn read_bits(data: &[u8], start: usize, offset: u32, bits: u32) -> Option<u128> {
    if bits == 0 || bits > 128 {
        return None;
    }
    let first = start.checked_add((offset / 8) as usize)?;
    let shift = offset % 8;
    let nbytes = (shift + bits).div_ceil(8) as usize;
    let bytes = data.get(first..first.checked_add(nbytes)?)?;
    if nbytes > 16 {
        // a 128-bit field at an odd bit offset: combine the two reads
        let hi = read_bits(data, start, offset, 64)?;
        let lo = read_bits(data, start, offset + 64, bits - 64)?;
        return Some((hi << (bits - 64)) | lo);
    }
    let mut v: u128 = 0;
    for b in bytes {
        v = (v << 8) | *b as u128;
    }
    let total = nbytes as u32 * 8;
    v >>= total - shift - bits;
    let mask = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    Some(v & mask)
}

/// Writes the low `bits` bits of `value` at bit `offset` from byte `start`, big endian,
/// leaving the neighbouring bits alone. False (and nothing written) when out of bounds.
pub fn write_bits(data: &mut [u8], start: usize, offset: u32, bits: u32, value: u128) -> bool {
    if bits == 0 || bits > 128 {
        return false;
    }
    let Some(first) = start.checked_add((offset / 8) as usize) else {
        return false;
    };
    let shift = offset % 8;
    let nbytes = (shift + bits).div_ceil(8) as usize;
    if first.checked_add(nbytes).is_none_or(|e| e > data.len()) {
        return false;
    }
    // bit by bit: fields are a few bytes, and this keeps odd offsets and widths simple
    for i in 0..bits {
        let bit = (value >> (bits - 1 - i)) & 1;
        let pos = shift + i;
        let byte = first + (pos / 8) as usize;
        let mask = 0x80u8 >> (pos % 8);
        if bit == 1 {
            data[byte] |= mask;
        } else {
            data[byte] &= !mask;
        }
    }
    true
}

/// Where a checksum covering a header lives, relative to that header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Csum {
    /// Absolute offset of the 16-bit checksum field in the frame.
    pub at: usize,
    /// UDP over IPv4: zero means "no checksum" and stays zero; a computed zero is sent as
    /// 0xffff (RFC 768).
    pub udp: bool,
}

/// Patches the checksum at `c` for bytes `[s, e)` of a checksummed region that changed from
/// `old` to what `data` now holds. `s` must be even relative to the region's start.
pub fn patch_csum(data: &mut [u8], c: Csum, s: usize, old: &[u8]) {
    let Some(new) = data.get(s..s + old.len()).map(|n| n.to_vec()) else {
        return;
    };
    let Some(field) = data.get_mut(c.at..c.at + 2) else {
        return;
    };
    let hc = u16::from_be_bytes([field[0], field[1]]);
    if c.udp && hc == 0 {
        return;
    }
    let mut v = checksum::update_bytes(hc, old, &new);
    if c.udp && v == 0 {
        v = 0xffff;
    }
    field.copy_from_slice(&v.to_be_bytes());
}

/// The Linux kernel's `jhash` (Bob Jenkins' lookup3), as `nft_jhash` uses it: words are
/// read in host order (little endian here).
pub fn jhash(key: &[u8], initval: u32) -> u32 {
    let init = 0xdeadbeefu32
        .wrapping_add(key.len() as u32)
        .wrapping_add(initval);
    let (mut a, mut b, mut c) = (init, init, init);
    let mut k = key;
    let word = |s: &[u8], i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    while k.len() > 12 {
        a = a.wrapping_add(word(k, 0));
        b = b.wrapping_add(word(k, 4));
        c = c.wrapping_add(word(k, 8));
        // __jhash_mix
        a = a.wrapping_sub(c);
        a ^= c.rotate_left(4);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a);
        b ^= a.rotate_left(6);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b);
        c ^= b.rotate_left(8);
        b = b.wrapping_add(a);
        a = a.wrapping_sub(c);
        a ^= c.rotate_left(16);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a);
        b ^= a.rotate_left(19);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b);
        c ^= b.rotate_left(4);
        b = b.wrapping_add(a);
        k = &k[12..];
    }
    if k.is_empty() {
        return c;
    }
    let mut tail = [0u8; 12];
    tail[..k.len()].copy_from_slice(k);
    a = a.wrapping_add(word(&tail, 0));
    b = b.wrapping_add(word(&tail, 4));
    c = c.wrapping_add(word(&tail, 8));
    // __jhash_final
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(14));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(11));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(25));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(16));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(4));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(14));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(24));
    c
}

/// `reciprocal_scale`: maps a 32-bit value onto `0..n` without a division.
pub fn scale(v: u32, n: u32) -> u32 {
    ((v as u64 * n as u64) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip() {
        let mut d = [0xffu8; 4];
        assert!(write_bits(&mut d, 0, 8, 6, 0b001000));
        assert_eq!(d, [0xff, 0b0010_0011, 0xff, 0xff]);
        assert_eq!(read_bits(&d, 0, 8, 6), Some(8));
        assert!(!write_bits(&mut d, 0, 30, 8, 0));
    }

    #[test]
    fn jhash_known_values() {
        // jhash of the empty key is the initial value, and the tail path mixes every byte
        assert_eq!(jhash(&[], 0), 0xdeadbeef);
        assert_ne!(jhash(&[1, 2, 3, 4], 0), jhash(&[1, 2, 3, 5], 0));
        assert_eq!(scale(u32::MAX, 4), 3);
    }

    #[test]
    fn option_walks_stop_at_bad_lengths() {
        // TCP header with doff 6: NOP, then kind 4 length 2
        let mut t = vec![0u8; 24];
        t[12] = 6 << 4;
        t[20] = 1;
        t[21] = 4;
        t[22] = 2;
        assert_eq!(tcp_option(&t, 0, 4), Some(21));
        t[22] = 0;
        t[21] = 9;
        assert_eq!(tcp_option(&t, 0, 4), None);
    }
}
