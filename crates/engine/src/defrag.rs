//! IPv4 and IPv6 reassembly before conntrack, as the kernel's `nf_defrag_ipv4` and
//! `nf_defrag_ipv6` do it: fragments are held until their datagram is whole, then conntrack, NAT
//! and the rules see the whole datagram, and it leaves fragmented again at the sizes its
//! fragments came in with (the kernel keeps them as a fragment list and `ip_do_fragment`'s fast
//! path re-emits that geometry; IPv6 gets a new fragment identification there).
//!
//! As in `inet_frag_queue_insert` (RFC 5722): a fragment lying entirely inside one already
//! held is a duplicate and is dropped alone; any other overlap drops the whole datagram.
//! Queues live for a fixed time from their first fragment (30 s for IPv4, 60 s for IPv6, the
//! kernel's `ipfrag_time` and `ip6frag_time`); held bytes are bounded (4 MiB, the kernel's
//! `ipfrag_high_thresh`): over it, new fragments are refused, held ones are never evicted.
//! Time is passed in.

use core::time::Duration;
use std::collections::VecDeque;

// foldhash: the key holds attacker-chosen addresses and ids, but a queue is only ever found
// by a fragment that could have made it, and the memory bound holds whatever the hashing.
use crate::HashMap;

const IPPROTO_FRAGMENT: u8 = 44;
/// Bytes charged per held fragment beyond its data (the kernel charges an skb's truesize).
const FRAG_OVERHEAD: usize = 256;
const IPV4_MAX_LEN: usize = 65535;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefragConfig {
    /// Bytes held over all queues (fragment data plus [`FRAG_OVERHEAD`] each).
    pub mem_limit: usize,
    pub timeout_v4: Duration,
    pub timeout_v6: Duration,
}

impl Default for DefragConfig {
    fn default() -> Self {
        DefragConfig {
            mem_limit: 4 << 20,
            timeout_v4: Duration::from_secs(30),
            timeout_v6: Duration::from_secs(60),
        }
    }
}

/// Why a fragment (or its whole datagram) was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FragDrop {
    /// Overlaps a held fragment without lying inside it: the datagram goes.
    Overlap,
    /// Lies entirely inside a held fragment: this fragment goes, the datagram waits.
    Duplicate,
    /// Beyond 64 KiB, a non-last IPv6 fragment not a multiple of 8 bytes, an end that
    /// contradicts the last fragment's, an empty fragment, a truncated header.
    Malformed,
    /// Held fragments are at the memory limit.
    Memory,
}

/// What became of a fragment.
#[derive(Debug, PartialEq, Eq)]
pub enum Defragged {
    /// Held until the rest of its datagram arrives.
    Held,
    /// The last missing piece: the whole datagram (an IP packet), the payload length of each
    /// fragment it was made of, in offset order, the IP length of the largest fragment
    /// (`frag_max_size`), the fragments' identification, and (IPv4) whether the largest
    /// fragments all had DF (`IPSKB_FRAG_PMTU`: fragments cut afresh from the datagram get DF).
    Whole {
        l3: Vec<u8>,
        pieces: Vec<usize>,
        max_size: usize,
        id: u32,
        df: bool,
    },
    /// Dropped; `fragments` counts the ones dropped with it (1, or all of an overlapped
    /// datagram's).
    Dropped { why: FragDrop, fragments: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    v6: bool,
    src: u128,
    dst: u128,
    id: u32,
    proto: u8,
}

struct Piece {
    off: usize,
    data: Vec<u8>,
}

impl Piece {
    fn end(&self) -> usize {
        self.off + self.data.len()
    }
}

struct Queue {
    /// When it goes, 30 s (IPv4) or 60 s (IPv6) after its first fragment.
    deadline: Duration,
    /// Non-overlapping, by offset.
    pieces: Vec<Piece>,
    /// The datagram's payload length, once its last fragment came.
    len: Option<usize>,
    /// The headers in front of the payload, from the first fragment: the IPv4 header with its
    /// options, or the IPv6 header and the extension headers before the fragment header.
    head: Option<Vec<u8>>,
    /// IPv6: the first fragment's next header (what the fragment header carried).
    next_header: u8,
    /// IPv4: the largest fragment, and the largest one with DF set (the kernel keeps DF on
    /// the whole datagram when every largest fragment had it).
    max_size: usize,
    max_df_size: usize,
    mem: usize,
}

/// A fragment's place, read from its IP header.
struct FragInfo {
    key: Key,
    off: usize,
    more: bool,
    /// Bytes of headers before the fragment data (IPv4 header; IPv6 header, unfragmentable
    /// extension headers and the fragment header).
    data_start: usize,
    /// Length of the unfragmentable part (IPv6: without the fragment header).
    head_len: usize,
    next_header: u8,
    df: bool,
}

/// The reassembly queues.
pub struct Defrag {
    cfg: DefragConfig,
    queues: HashMap<Key, Queue>,
    /// Deadlines in creation order, per family: the timeout is fixed, so they are sorted.
    expiry: [VecDeque<(Duration, Key)>; 2],
    mem: usize,
}

impl Defrag {
    pub fn new(cfg: DefragConfig) -> Defrag {
        Defrag {
            cfg,
            queues: HashMap::default(),
            expiry: [VecDeque::new(), VecDeque::new()],
            mem: 0,
        }
    }

    /// Datagrams waiting for fragments.
    pub fn queues(&self) -> usize {
        self.queues.len()
    }

    /// Bytes held.
    pub fn mem(&self) -> usize {
        self.mem
    }

    /// Drops the queues whose time is up; returns how many fragments they held.
    pub fn expire(&mut self, now: Duration) -> usize {
        let mut dropped = 0;
        for q in &mut self.expiry {
            while let Some(&(deadline, key)) = q.front() {
                if deadline > now {
                    break;
                }
                q.pop_front();
                // the entry of a queue that completed may meet a later queue of the same key
                if self
                    .queues
                    .get(&key)
                    .is_some_and(|x| x.deadline == deadline)
                {
                    if let Some(old) = self.queues.remove(&key) {
                        self.mem -= old.mem;
                        dropped += old.pieces.len();
                    }
                }
            }
        }
        dropped
    }

    /// Takes one fragment (an IP packet whose header says it is one).
    pub fn insert(&mut self, l3: &[u8], now: Duration) -> Defragged {
        let malformed = Defragged::Dropped {
            why: FragDrop::Malformed,
            fragments: 1,
        };
        let Some(fi) = frag_info(l3) else {
            return malformed;
        };
        let Some(payload) = l3.get(fi.data_start..) else {
            return malformed;
        };
        let mut data = payload;
        if fi.more && data.len() % 8 != 0 {
            if fi.key.v6 {
                // nf_ct_frag6_queue: the datagram is discarded
                return self.kill(fi.key, 1, FragDrop::Malformed);
            }
            // ip_frag_queue trims a non-last fragment to a multiple of 8
            data = &data[..data.len() & !7];
        }
        let end = fi.off + data.len();
        let limit = if fi.key.v6 {
            IPV4_MAX_LEN
        } else {
            IPV4_MAX_LEN - fi.data_start
        };
        if data.is_empty() || end > limit {
            return malformed;
        }
        let cost = data.len() + FRAG_OVERHEAD;
        if !self.queues.contains_key(&fi.key) {
            if self.mem + cost > self.cfg.mem_limit {
                return Defragged::Dropped {
                    why: FragDrop::Memory,
                    fragments: 1,
                };
            }
            let timeout = if fi.key.v6 {
                self.cfg.timeout_v6
            } else {
                self.cfg.timeout_v4
            };
            let deadline = now + timeout;
            let queues = &self.queues;
            let dq = &mut self.expiry[fi.key.v6 as usize];
            // entries of queues that completed stay until their time: keep them from piling
            // up beyond twice the live queues (amortised, each entry is looked at once more)
            if dq.len() >= 2 * queues.len() + 64 {
                dq.retain(|(d, k)| queues.get(k).is_some_and(|x| x.deadline == *d));
            }
            dq.push_back((deadline, fi.key));
            self.queues.insert(
                fi.key,
                Queue {
                    deadline,
                    pieces: Vec::new(),
                    len: None,
                    head: None,
                    next_header: 0,
                    max_size: 0,
                    max_df_size: 0,
                    mem: 0,
                },
            );
        }
        let Some(q) = self.queues.get_mut(&fi.key) else {
            return malformed;
        };
        // the end of the datagram: the last fragment fixes it, and nothing may pass it
        if !fi.more {
            if q.len.is_some_and(|l| l != end) || q.pieces.last().is_some_and(|p| p.end() > end) {
                return self.kill(fi.key, 1, FragDrop::Malformed);
            }
        } else if q.len.is_some_and(|l| end > l) {
            return self.kill(fi.key, 1, FragDrop::Malformed);
        }
        // inet_frag_queue_insert
        let at = match q.pieces.last() {
            None => 0,
            Some(last) if last.end() < end => {
                if fi.off < last.end() {
                    return self.kill(fi.key, 1, FragDrop::Overlap);
                }
                q.pieces.len()
            }
            Some(_) => {
                let mut at = q.pieces.len();
                for (i, p) in q.pieces.iter().enumerate() {
                    if end <= p.off {
                        at = at.min(i);
                    } else if fi.off >= p.end() {
                        continue;
                    } else if fi.off >= p.off && end <= p.end() {
                        return Defragged::Dropped {
                            why: FragDrop::Duplicate,
                            fragments: 1,
                        };
                    } else {
                        return self.kill(fi.key, 1, FragDrop::Overlap);
                    }
                }
                at
            }
        };
        if self.mem + cost > self.cfg.mem_limit {
            return Defragged::Dropped {
                why: FragDrop::Memory,
                fragments: 1,
            };
        }
        q.pieces.insert(
            at,
            Piece {
                off: fi.off,
                data: data.to_vec(),
            },
        );
        q.mem += cost;
        self.mem += cost;
        if !fi.more {
            q.len = Some(end);
        }
        if fi.off == 0 {
            q.head = l3.get(..fi.head_len).map(<[u8]>::to_vec);
            q.next_header = fi.next_header;
        }
        let size = fi.data_start + data.len();
        q.max_size = q.max_size.max(size);
        if fi.df {
            q.max_df_size = q.max_df_size.max(size);
        }
        // whole once the pieces run from 0 to the end without a gap
        let (Some(len), Some(_)) = (q.len, q.head.as_ref()) else {
            return Defragged::Held;
        };
        let mut next = 0;
        for p in &q.pieces {
            if p.off != next {
                return Defragged::Held;
            }
            next = p.end();
        }
        if next != len {
            return Defragged::Held;
        }
        let Some(q) = self.queues.remove(&fi.key) else {
            return malformed;
        };
        self.mem -= q.mem;
        // the expiry entry stays, and finds no queue of its deadline when its time comes
        let Some(head) = q.head else { return malformed };
        let mut l3 = head;
        let pieces = q.pieces.iter().map(|p| p.data.len()).collect();
        for p in &q.pieces {
            l3.extend_from_slice(&p.data);
        }
        let df = !fi.key.v6 && q.max_df_size == q.max_size;
        if fi.key.v6 {
            finish_v6(&mut l3, q.next_header);
        } else {
            finish_v4(&mut l3, df);
        }
        Defragged::Whole {
            l3,
            pieces,
            max_size: q.max_size,
            id: fi.key.id,
            df,
        }
    }

    fn kill(&mut self, key: Key, extra: usize, why: FragDrop) -> Defragged {
        let held = match self.queues.remove(&key) {
            Some(q) => {
                self.mem -= q.mem;
                q.pieces.len()
            }
            None => 0,
        };
        Defragged::Dropped {
            why,
            fragments: held + extra,
        }
    }
}

/// Where a fragment sits, or None when its headers are cut short.
fn frag_info(l3: &[u8]) -> Option<FragInfo> {
    let version = l3.first()? >> 4;
    if version == 4 {
        let ihl = usize::from(l3.first()? & 0x0f) * 4;
        if ihl < 20 || l3.len() < ihl {
            return None;
        }
        let fo = u16::from_be_bytes([l3[6], l3[7]]);
        Some(FragInfo {
            key: Key {
                v6: false,
                src: u128::from(u32::from_be_bytes(l3.get(12..16)?.try_into().ok()?)),
                dst: u128::from(u32::from_be_bytes(l3.get(16..20)?.try_into().ok()?)),
                id: u32::from(u16::from_be_bytes([l3[4], l3[5]])),
                proto: l3[9],
            },
            off: usize::from(fo & 0x1fff) * 8,
            more: fo & 0x2000 != 0,
            data_start: ihl,
            head_len: ihl,
            next_header: l3[9],
            df: fo & 0x4000 != 0,
        })
    } else if version == 6 {
        if l3.len() < 40 {
            return None;
        }
        // the unfragmentable part: hop-by-hop, routing and destination options before the
        // fragment header
        let mut nh = l3[6];
        let mut at = 40;
        while nh != IPPROTO_FRAGMENT {
            if !matches!(nh, 0 | 43 | 60) {
                return None;
            }
            let len = (usize::from(*l3.get(at + 1)?) + 1) * 8;
            nh = *l3.get(at)?;
            at += len;
        }
        let fh = l3.get(at..at + 8)?;
        let fo = u16::from_be_bytes([fh[2], fh[3]]);
        Some(FragInfo {
            key: Key {
                v6: true,
                src: u128::from_be_bytes(l3.get(8..24)?.try_into().ok()?),
                dst: u128::from_be_bytes(l3.get(24..40)?.try_into().ok()?),
                id: u32::from_be_bytes(fh[4..8].try_into().ok()?),
                proto: fh[0],
            },
            off: usize::from(fo & 0xfff8),
            more: fo & 1 != 0,
            data_start: at + 8,
            head_len: at,
            next_header: fh[0],
            df: false,
        })
    } else {
        None
    }
}

fn ipv4_checksum(h: &mut [u8]) {
    h[10] = 0;
    h[11] = 0;
    let c = nft_wire::checksum::checksum(h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
}

/// The reassembled IPv4 header: whole length, no fragment bits (DF kept when the largest
/// fragments had it), checksum.
fn finish_v4(l3: &mut [u8], df: bool) {
    let ihl = usize::from(l3[0] & 0x0f) * 4;
    let len = l3.len() as u16;
    l3[2..4].copy_from_slice(&len.to_be_bytes());
    l3[6..8].copy_from_slice(&(if df { 0x4000u16 } else { 0 }).to_be_bytes());
    ipv4_checksum(&mut l3[..ihl]);
}

/// The reassembled IPv6 packet: the fragment header's next header goes where the fragment
/// header was named, and the payload length covers everything.
fn finish_v6(l3: &mut [u8], next_header: u8) {
    let len = (l3.len() - 40) as u16;
    l3[4..6].copy_from_slice(&len.to_be_bytes());
    // the last header before the fragment header names it: repoint it
    let mut nh_at = 6;
    let mut at = 40;
    while l3.get(nh_at) != Some(&IPPROTO_FRAGMENT) {
        let Some(&ext_len) = l3.get(at + 1) else {
            return;
        };
        nh_at = at;
        at += (usize::from(ext_len) + 1) * 8;
    }
    l3[nh_at] = next_header;
}

/// `ip_options_fragment`: the IPv4 options of the fragments after the first keep only those
/// with the copied flag (RFC 791); the others become no-operations, so that the header keeps
/// its length. A malformed option ends the walk and leaves the rest as it was.
fn options_fragment(opts: &mut [u8]) {
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => return,
            1 => i += 1,
            kind => {
                let len = opts.get(i + 1).map_or(0, |&l| usize::from(l));
                if len < 2 || i + len > opts.len() {
                    return;
                }
                if kind & 0x80 == 0 {
                    opts[i..i + len].fill(1);
                }
                i += len;
            }
        }
    }
}

/// The fragments a reassembled datagram leaves as (`ip_do_fragment`/`ip6_fragment` over the
/// kept fragment list): its headers on each, the payload cut at `pieces`, offsets and
/// more-fragments set; IPv4 keeps the datagram's ID, IPv6 gets a fragment header with `v6_id`.
/// When a piece no longer fits `mtu` (the egress is smaller than the fragments that came in),
/// the whole payload is cut afresh at the MTU, as the kernel's slow path does. IPv4 options
/// go whole on the first fragment only ([`options_fragment`]). None when the packet is not IP
/// or the MTU leaves no room for 8 bytes of payload.
pub fn fragment(l3: &[u8], pieces: &[usize], mtu: usize, v6_id: u32) -> Option<Vec<Vec<u8>>> {
    fragment_opts(l3, pieces, mtu, v6_id, true, false)
}

/// [`fragment`], with the IPv4 options of later fragments left whole when `strip_options`
/// is false: the kernel's `ip_options_fragment` works from the options `ip_rcv_options`
/// parsed, after prerouting, so a copy made there (`dup` at prerouting) keeps them all.
/// `df` sets DF on every IPv4 fragment: the slow path of `ip_do_fragment` does so when the
/// datagram was reassembled from fragments whose largest all had DF (`IPSKB_FRAG_PMTU`).
pub fn fragment_opts(
    l3: &[u8],
    pieces: &[usize],
    mtu: usize,
    v6_id: u32,
    strip_options: bool,
    df: bool,
) -> Option<Vec<Vec<u8>>> {
    let version = l3.first()? >> 4;
    let (head_len, nh_at) = if version == 4 {
        (usize::from(l3[0] & 0x0f) * 4, None)
    } else if version == 6 {
        let mut nh_at = 6;
        let mut at = 40;
        while matches!(l3.get(nh_at), Some(0 | 43)) {
            nh_at = at;
            at += (usize::from(*l3.get(at + 1)?) + 1) * 8;
        }
        (at, Some(nh_at))
    } else {
        return None;
    };
    let head = l3.get(..head_len)?;
    let payload = l3.get(head_len..)?;
    let frag_hdr = if version == 6 { 8 } else { 0 };
    let room = mtu.checked_sub(head_len + frag_hdr)? & !7;
    if room == 0 {
        return None;
    }
    // the pieces as they came (the last one takes what is left), or, when one no longer
    // fits, MTU-sized pieces from the start
    let mut cuts = Vec::with_capacity(pieces.len());
    let mut off = 0;
    for (i, &p) in pieces.iter().enumerate() {
        let p = if i + 1 == pieces.len() {
            payload.len().saturating_sub(off)
        } else {
            p
        };
        cuts.push((off, p));
        off += p;
    }
    if off != payload.len() || cuts.iter().any(|&(_, len)| len > room) {
        cuts.clear();
        let mut off = 0;
        while payload.len() - off > room {
            cuts.push((off, room));
            off += room;
        }
        cuts.push((off, payload.len() - off));
    }
    let n = cuts.len();
    let mut out = Vec::with_capacity(n);
    for (i, (off, len)) in cuts.into_iter().enumerate() {
        let more = i + 1 < n;
        let data = payload.get(off..off + len)?;
        let mut f = Vec::with_capacity(head_len + frag_hdr + len);
        f.extend_from_slice(head);
        if version == 4 {
            if i > 0 && strip_options {
                options_fragment(&mut f[20..head_len]);
            }
            f[2..4].copy_from_slice(&((head_len + len) as u16).to_be_bytes());
            let fo = (off / 8) as u16 | if more { 0x2000 } else { 0 } | if df { 0x4000 } else { 0 };
            f[6..8].copy_from_slice(&fo.to_be_bytes());
            ipv4_checksum(&mut f[..head_len]);
        } else {
            let nh_at = nh_at?;
            let next = f[nh_at];
            f[nh_at] = IPPROTO_FRAGMENT;
            f[4..6].copy_from_slice(&((head_len - 40 + 8 + len) as u16).to_be_bytes());
            let fo = (off as u16) | u16::from(more);
            f.extend_from_slice(&[next, 0]);
            f.extend_from_slice(&fo.to_be_bytes());
            f.extend_from_slice(&v6_id.to_be_bytes());
        }
        f.extend_from_slice(data);
        out.push(f);
    }
    Some(out)
}

#[cfg(test)]
mod tests;
