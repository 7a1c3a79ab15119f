//! GSO super-packets and partial checksums (what AF_PACKET's `virtio_net_hdr` says about a
//! frame: [`Offload`]), as the kernel's forward path treats them:
//!
//! * the flowtable forwards a GSO packet whole when its segments fit the egress MTU
//!   (`nf_flow_exceeds_mtu`: `skb_gso_validate_network_len`), so its headers are rewritten once
//!   per up to 64 KB; the device (or the kernel, segmenting) cuts it after the router;
//! * a partial checksum (`CHECKSUM_PARTIAL`) holds the pseudo-header sum only; NAT changes it
//!   by the addresses' difference alone (`inet_proto_csum_replace4(.., pseudohdr = true)`),
//!   never by the ports', which the device sums with the data. [`prepare`] notes how the field
//!   stands against the packet's pseudo-header, [`finish`] writes the rewritten packet's
//!   pseudo-header sum with that same rest: the result the kernel's incremental update gives;
//! * the slow path walks a GSO packet whole, once, as the kernel walks the skb ([`Walking`]:
//!   one packet for rules, counters, conntrack, NAT, `reject` and ICMP errors), its partial
//!   checksum kept partial ([`settle`]), and cuts it into its segments at output
//!   ([`segments`]: the kernel's software GSO, `tcp_gso_segment`/`__udp_gso_segment`, complete
//!   checksums); a plain packet's partial checksum is completed before the walk
//!   ([`complete`]: `skb_checksum_help`).
//!
//! Nothing here is on the path of a plain frame: the router calls these only for frames whose
//! [`Offload`] is not plain.

use nft_flowtable::{FrameSlot, Offload, SlotBuf};
use nft_wire::checksum::{add, fold, pseudo_header, sum};
use nft_wire::{parse_frame, IpProtocol, PacketMeta};

/// Where a TCP or UDP packet's checksum field lies, and its pseudo-header sum.
struct Site {
    l3: usize,
    l4: usize,
    /// End of the IP packet (link padding after it is not the packet's).
    end: usize,
    field: usize,
    pseudo: u16,
    tcp: bool,
    v6: bool,
}

fn site(f: &[u8]) -> Option<(Site, PacketMeta)> {
    let m = parse_frame(f).ok()?;
    let (src, dst, proto, l4) = (m.src_addr?, m.dst_addr?, m.ip_protocol?, m.l4_offset?);
    if m.is_fragment() {
        return None;
    }
    let tcp = match proto {
        IpProtocol::Tcp => true,
        IpProtocol::Udp => false,
        _ => return None,
    };
    let len = m.l3_end.checked_sub(l4)?;
    let field = l4 + if tcp { 16 } else { 6 };
    if field + 2 > m.l3_end || m.l3_end > f.len() {
        return None;
    }
    let s = Site {
        l3: m.l3_offset,
        l4,
        end: m.l3_end,
        field,
        pseudo: pseudo_header(&src, &dst, proto, len as u32),
        tcp,
        v6: src.is_ipv6(),
    };
    Some((s, m))
}

fn get16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

fn put16(f: &mut [u8], at: usize, v: u16) {
    f[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// One's complement difference `a - b`; 0 when they are equal.
fn sub(a: u16, b: u16) -> u16 {
    if a == b {
        0
    } else {
        add(a, !b)
    }
}

/// Before the router: how the partial checksum stands against the packet's pseudo-header sum
/// (one's complement difference; 0 as any stack leaves it), for [`finish`]. A partial
/// checksum that is not a TCP or UDP one at the packet's transport header (the caller
/// completes SCTP's and the like before) is not followed: the frame goes on as plain.
pub fn prepare<S: SlotBuf>(slot: &mut FrameSlot<S>) -> u16 {
    if !slot.offload.csum_partial() {
        return 0;
    }
    match site(slot.frame()) {
        Some((s, _)) if usize::from(slot.offload.csum_start) == s.l4 => {
            sub(get16(slot.frame(), s.field), s.pseudo)
        }
        _ => {
            slot.offload.csum_start = 0;
            0
        }
    }
}

/// After the fast path forwarded the frame (rewritten in place): its partial checksum is the
/// rewritten packet's pseudo-header sum plus the difference `rest` [`prepare`] found, which is
/// what the kernel's incremental update (`inet_proto_csum_replace4(.., pseudohdr = true)`)
/// gives, and `csum_start` is where its transport header now starts (the link header may
/// have changed length).
pub fn finish<S: SlotBuf>(slot: &mut FrameSlot<S>, rest: u16) {
    if !slot.offload.csum_partial() {
        return;
    }
    let f = slot.frame_mut();
    if let Some((s, _)) = site(f) {
        let v = if rest == 0 {
            s.pseudo
        } else {
            add(s.pseudo, rest)
        };
        put16(f, s.field, v);
        slot.offload.csum_start = s.l4 as u16;
    }
}

/// Completes a partial checksum in place (`skb_checksum_help`): the one's complement sum from
/// `csum_start` (the transport header) to the end of the IP packet, the field (holding the
/// pseudo-header sum) included, stored at the field. Returns false, the frame untouched,
/// when it is not a TCP or UDP packet whose transport header is at `csum_start`.
pub fn complete(frame: &mut [u8], o: &Offload) -> bool {
    let Some((s, _)) = site(frame) else {
        return false;
    };
    if usize::from(o.csum_start) != s.l4 {
        return false;
    }
    let c = !sum(&frame[s.l4..s.end]);
    put16(frame, s.field, if c == 0 && !s.tcp { 0xffff } else { c });
    true
}

/// A GSO packet cut into its segments of `gso_size` payload bytes each, as the kernel's
/// software GSO cuts it: each with the headers of the first, its own IP length, IPv4 id (one
/// more each) and header checksum, TCP sequence number (FIN and PSH on the last segment only,
/// CWR on the first only) or UDP length, and a complete transport checksum. `None` when the
/// frame is not a TCP or UDP packet the offsets describe; a packet no longer than one segment
/// comes back whole, its checksum completed.
pub fn segment(frame: &[u8], o: &Offload) -> Option<Vec<Vec<u8>>> {
    let (s, m) = site(frame)?;
    let th = if s.tcp {
        usize::from(*frame.get(s.l4 + 12)? >> 4) * 4
    } else {
        8
    };
    let data = s.l4 + th;
    if th < 8 || data > s.end || o.gso_size == 0 {
        return None;
    }
    let ihl = m.ip_header_len;
    let g = usize::from(o.gso_size);
    let payload = &frame[data..s.end];
    let n = payload.len().div_ceil(g).max(1);
    let mut out = Vec::with_capacity(n);
    let seq = if s.tcp {
        u32::from_be_bytes(frame[s.l4 + 4..s.l4 + 8].try_into().ok()?)
    } else {
        0
    };
    let id = if s.v6 { 0 } else { get16(frame, s.l3 + 4) };
    // the super-packet's partial checksum less its pseudo-header (0 as stacks leave it)
    let rest = if o.csum_partial() {
        sub(get16(frame, s.field), s.pseudo)
    } else {
        0
    };
    for i in 0..n {
        let chunk = payload
            .get(i * g..((i + 1) * g).min(payload.len()))
            .unwrap_or(&[]);
        let mut f = Vec::with_capacity(data + chunk.len());
        f.extend_from_slice(&frame[..data]);
        f.extend_from_slice(chunk);
        let l4_len = th + chunk.len();
        if s.v6 {
            put16(&mut f, s.l3 + 4, (l4_len + (s.l4 - s.l3 - 40)) as u16);
        } else {
            put16(&mut f, s.l3 + 2, (ihl + l4_len) as u16);
            put16(&mut f, s.l3 + 4, id.wrapping_add(i as u16));
            put16(&mut f, s.l3 + 10, 0);
            let c = !sum(&f[s.l3..s.l3 + ihl]);
            put16(&mut f, s.l3 + 10, c);
        }
        if s.tcp {
            let t = s.l4;
            f[t + 4..t + 8].copy_from_slice(&seq.wrapping_add((i * g) as u32).to_be_bytes());
            if i + 1 < n {
                f[t + 13] &= !0x09; // FIN, PSH
            }
            if i > 0 {
                f[t + 13] &= !0x80; // CWR
            }
        } else {
            put16(&mut f, s.l4 + 4, l4_len as u16);
        }
        // the segment's own pseudo-header: the super-packet's with this length
        let (_, sm) = site(&f)?;
        let pseudo = pseudo_header(&sm.src_addr?, &sm.dst_addr?, sm.ip_protocol?, l4_len as u32);
        put16(&mut f, s.field, 0);
        let total =
            fold(u64::from(pseudo) + u64::from(rest) + u64::from(sum(&f[s.l4..s.l4 + l4_len])));
        let c = !total;
        put16(&mut f, s.field, if c == 0 && !s.tcp { 0xffff } else { c });
        out.push(f);
    }
    Some(out)
}

/// A GSO packet the slow path walks whole, as the kernel walks the skb: once through the
/// hooks, conntrack and NAT (one packet of its real length for `counter`, `quota`, `limit`
/// and conntrack's accounting; one `reject` answer; one ICMP error for TTL or size), cut
/// into its segments only at output ([`segments`], the kernel's software GSO in front of a
/// device without TSO).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Walking {
    pub gso_size: u16,
    /// The packet's checksum is partial (the pseudo-header sum plus `rest`).
    pub partial: bool,
    /// How the partial checksum stands against the packet's pseudo-header sum as it came
    /// (0 as stacks leave it), kept through the walk's rewrites ([`settle`]).
    pub rest: u16,
}

/// The GSO packet `frame` (Ethernet at 0) as the slow path walks it; `None` when it is not a
/// TCP or UDP packet that can be cut (the router counts it, `gso_unsupported`).
pub(crate) fn walking(frame: &[u8], o: &Offload) -> Option<Walking> {
    let (s, _) = site(frame)?;
    let th = if s.tcp {
        usize::from(*frame.get(s.l4 + 12)? >> 4) * 4
    } else {
        8
    };
    if th < 8 || s.l4 + th > s.end || o.gso_size == 0 {
        return None;
    }
    let partial = o.csum_partial();
    if partial && usize::from(o.csum_start) != s.l4 {
        return None;
    }
    Some(Walking {
        gso_size: o.gso_size,
        partial,
        rest: if partial {
            sub(get16(frame, s.field), s.pseudo)
        } else {
            0
        },
    })
}

/// The length of the IP packets the GSO packet `frame` leaves as (the first, the longest):
/// IP header, transport header and `gso_size` (`skb_gso_network_seglen`), or the packet's
/// own when it is shorter. What the route's MTU is held against.
#[cold]
pub(crate) fn seg_l3_len(frame: &[u8], g: &Walking) -> Option<usize> {
    let (s, _) = site(frame)?;
    let th = if s.tcp {
        usize::from(*frame.get(s.l4 + 12)? >> 4) * 4
    } else {
        8
    };
    Some((s.l4 - s.l3 + th + usize::from(g.gso_size)).min(s.end - s.l3))
}

/// A partial checksum as the kernel keeps it through rewrites: moved by the pseudo-header
/// alone (`inet_proto_csum_replace*(.., pseudohdr = true)`; ports and other transport
/// header changes leave the field to the device), i.e. the packet's pseudo-header sum now
/// plus the `rest` it came with. A complete checksum is left as the rewrites left it.
#[cold]
pub(crate) fn settle(frame: &mut [u8], g: &Walking) {
    if !g.partial {
        return;
    }
    if let Some((s, _)) = site(frame) {
        let v = if g.rest == 0 {
            s.pseudo
        } else {
            add(s.pseudo, g.rest)
        };
        put16(frame, s.field, v);
    }
}

/// The walked GSO packet `frame` (Ethernet at 0) cut into its segments ([`segment`]), its
/// partial checksum settled first.
pub(crate) fn segments(frame: &mut [u8], g: &Walking) -> Option<Vec<Vec<u8>>> {
    settle(frame, g);
    let (s, _) = site(frame)?;
    let o = Offload {
        gso_size: g.gso_size,
        csum_start: if g.partial { s.l4 as u16 } else { 0 },
    };
    segment(frame, &o)
}

/// [`segments`] of a bare IP packet (a copy `dup` makes): the IP packets of its segments.
pub(crate) fn segments_l3(l3: &[u8], g: &Walking) -> Option<Vec<Vec<u8>>> {
    let ethertype: u16 = match l3.first()? >> 4 {
        4 => 0x0800,
        6 => 0x86dd,
        _ => return None,
    };
    let mut f = Vec::with_capacity(14 + l3.len());
    f.extend_from_slice(&[0; 12]);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(l3);
    let segs = segments(&mut f, g)?;
    Some(segs.into_iter().map(|mut s| s.split_off(14)).collect())
}
