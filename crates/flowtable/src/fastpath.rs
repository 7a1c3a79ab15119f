//! The per-packet hook (`nf_flow_table_ip.c`): parse the minimum, look up, then rewrite in place,
//! count and refresh, or punt to the slow path with a reason. Nothing here allocates, creates
//! an entry, evaluates a rule or panics; a frame that is punted is left byte for byte as it
//! came, so the slow path sees what arrived.
//!
//! What it accepts is a subset of what `nft_wire::parse_frame` accepts: anything the parser
//! would refuse (and the slow path drop) is punted as `malformed`, never rewritten.

use crate::backend::FlowId;
use crate::flow::{
    mac_bits, ports_of, Cold, Encap, Hot, Key, Link, Port, V6Addrs, CLOSING, DSCP, MARK, NAT,
    PPPOE_BITS, STALE, TEARDOWN, V6,
};
use crate::index::Index;
use crate::{ms, Flowtable, OffloadBackend, REFRESH_MS};
use core::time::Duration;
use nft_wire::checksum;

/// Room the fast path may need in front of a frame to push a longer link header (untagged to
/// QinQ or PPPoE: 8 bytes), rounded up generously as drivers do.
pub const HEADROOM: usize = 64;

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88a8;
const ETH_PPPOE: u16 = 0x8864;
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_URG: u8 = 0x20;

/// ACK or ACK|URG once PSH, ECE and CWR are masked off: the segments that leave an
/// established connection's conntrack state as it is (`tcp_valid_flags`, ES + ACK → ES).
#[inline]
fn plain_ack(flags: u8) -> bool {
    let f = flags & 0x3f & !TCP_PSH;
    f == TCP_ACK || f == TCP_ACK | TCP_URG
}

/// A frame in a buffer with room in front of it, and the port it arrived on. The fast path
/// moves the frame's start to pop or push link headers without copying the packet.
///
/// The buffer is a `Vec<u8>` by default; a receive loop with frames in shared memory (an
/// AF_XDP UMEM) lends them as `&mut [u8]` instead ([`FrameSlot::lend`]), so a fast-path hit is
/// rewritten where it arrived and sent from there, with no copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSlot<B = Vec<u8>> {
    buf: B,
    head: usize,
    len: usize,
    /// What the kernel's skb said about the frame beyond its bytes (GSO, partial checksum);
    /// all zero for a plain frame. The fast path reads it only when a frame is above the
    /// egress MTU.
    pub offload: Offload,
    /// `meta mark` for the frame, when the flow replays one.
    pub mark: Option<u32>,
    /// The ingress port; on forwarding, left as it was (the egress is in the [`Action`]).
    pub port: Port,
    /// Where the fast path sent the frame the last time it looked at it ([`Self::egress`]),
    /// as a `u32` with [`NO_EGRESS`] for none: one store, and [`Self::ports_key`] one load.
    egress: u32,
    /// The frame's length as it arrived ([`Self::arrived_len`]).
    rx_len: u32,
}

/// A frame's offload state, as AF_PACKET's `virtio_net_hdr` gives it (the kernel's
/// `skb_is_gso`, `gso_size` and `CHECKSUM_PARTIAL`): a GSO super-packet is one IP packet of up
/// to 64 KB (its IP total length is its real length) that leaves as segments of `gso_size`
/// payload bytes each, cut by the kernel or the device after the router. Four bytes, one
/// store to clear (the GSO type follows from the packet: TCP over IPv4 or IPv6, UDP; ECN from
/// TCP's CWR).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offload {
    /// Payload bytes per segment of a GSO packet; 0 for a plain frame.
    pub gso_size: u16,
    /// A partial checksum (`CHECKSUM_PARTIAL`): where the checksummed part (the transport
    /// header) starts, from the frame's first byte, as received and, once the router has
    /// rewritten the frame, as it leaves; the field holds only the pseudo-header sum, and the
    /// device (or the kernel, segmenting) adds the data's sum on the way out. 0: the checksum
    /// is complete.
    pub csum_start: u16,
}

impl Offload {
    /// A GSO super-packet.
    #[inline]
    pub fn is_gso(&self) -> bool {
        self.gso_size != 0
    }

    /// The transport checksum is partial.
    #[inline]
    pub fn csum_partial(&self) -> bool {
        self.csum_start != 0
    }

    /// Plain: neither GSO nor a partial checksum.
    #[inline]
    pub fn is_plain(&self) -> bool {
        self.csum_start == 0 && self.gso_size == 0
    }
}

/// [`FrameSlot`]'s egress when the fast path did not forward the frame (ports are 16 bits).
const NO_EGRESS: u32 = u32::MAX;

/// A frame's length as a `u32` (frames are far shorter than 4 GiB; a longer one counts as
/// 4 GiB).
#[inline(always)]
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// What a [`FrameSlot`] can hold: its own vector, or memory lent for one burst.
pub trait SlotBuf: AsRef<[u8]> + AsMut<[u8]> + Sized {
    /// The slot's frame as a vector of its own: the buffer itself for a `Vec` (moved, no
    /// copy; the slot is left empty), a copy for lent memory (the slot keeps its frame).
    fn take_frame(slot: &mut FrameSlot<Self>) -> Vec<u8>;
    /// `slot` in this buffer type, when it can hold an owned buffer (a `Vec`); `None` for
    /// lent memory.
    fn from_owned(slot: FrameSlot<Vec<u8>>) -> Option<FrameSlot<Self>>;
}

impl SlotBuf for Vec<u8> {
    fn take_frame(slot: &mut FrameSlot<Vec<u8>>) -> Vec<u8> {
        std::mem::replace(slot, FrameSlot::from_vec(slot.port, vec![])).into_vec()
    }

    fn from_owned(slot: FrameSlot<Vec<u8>>) -> Option<FrameSlot<Vec<u8>>> {
        Some(slot)
    }
}

impl SlotBuf for &mut [u8] {
    fn take_frame(slot: &mut FrameSlot<Self>) -> Vec<u8> {
        slot.frame().to_vec()
    }

    fn from_owned(_: FrameSlot<Vec<u8>>) -> Option<FrameSlot<Self>> {
        None
    }
}

impl FrameSlot {
    /// Copies `frame` into a new buffer with [`HEADROOM`] in front.
    pub fn new(port: Port, frame: &[u8]) -> FrameSlot {
        FrameSlot::with_headroom(port, frame, HEADROOM)
    }

    pub fn with_headroom(port: Port, frame: &[u8], headroom: usize) -> FrameSlot {
        let mut buf = Vec::with_capacity(headroom + frame.len());
        buf.resize(headroom, 0);
        buf.extend_from_slice(frame);
        FrameSlot {
            buf,
            head: headroom,
            len: frame.len(),
            port,
            mark: None,
            offload: Offload::default(),
            egress: NO_EGRESS,
            rx_len: len32(frame.len()),
        }
    }

    /// Takes a buffer as it is: the frame fills it, with no headroom (a push then punts).
    pub fn from_vec(port: Port, buf: Vec<u8>) -> FrameSlot {
        let len = buf.len();
        FrameSlot {
            buf,
            head: 0,
            len,
            port,
            mark: None,
            offload: Offload::default(),
            egress: NO_EGRESS,
            rx_len: len32(len),
        }
    }

    /// Puts another frame into the same buffer (reuse by a receive loop); allocates only if
    /// the buffer is too small.
    #[inline]
    pub fn refill(&mut self, port: Port, frame: &[u8]) {
        let need = HEADROOM + frame.len();
        if self.buf.len() < need {
            self.buf.resize(need, 0);
        }
        if let Some(dst) = self.buf.get_mut(HEADROOM..need) {
            copy_frame(dst, frame);
        }
        self.head = HEADROOM;
        self.len = frame.len();
        self.rx_len = len32(frame.len());
        self.port = port;
        self.offload = Offload::default();
        self.mark = None;
    }

    /// The frame as a vector of its own bytes (the buffer, moved down in place).
    pub fn into_vec(mut self) -> Vec<u8> {
        self.buf.truncate(self.head + self.len);
        self.buf.drain(..self.head);
        self.buf
    }
}

/// `dst.copy_from_slice(src)` for slices of one length; a frame of 32 to 64 bytes (the
/// minimum-size frames a receive loop refills most) as two overlapping 32-byte copies, which
/// are moves in registers instead of a call to `memcpy`.
#[inline(always)]
fn copy_frame(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    if (32..=64).contains(&n) && dst.len() == n {
        if let (Some(d), Some(s)) = (dst.first_chunk_mut::<32>(), src.first_chunk::<32>()) {
            *d = *s;
        }
        if let (Some(d), Some(s)) = (dst.last_chunk_mut::<32>(), src.last_chunk::<32>()) {
            *d = *s;
        }
    } else if dst.len() == n {
        dst.copy_from_slice(src);
    }
}

impl<'a> FrameSlot<&'a mut [u8]> {
    /// A slot over lent memory: the frame is `buf[head..head + len]`, the bytes before it are
    /// headroom. `None` when the span does not fit in `buf`.
    pub fn lend(port: Port, buf: &'a mut [u8], head: usize, len: usize) -> Option<Self> {
        (head.checked_add(len)? <= buf.len()).then_some(FrameSlot {
            buf,
            head,
            len,
            port,
            mark: None,
            offload: Offload::default(),
            egress: NO_EGRESS,
            rx_len: len32(len),
        })
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> FrameSlot<B> {
    #[inline]
    pub fn frame(&self) -> &[u8] {
        // (two compares; a range `head..head + len` also checks the addition for overflow)
        let b = self.buf.as_ref();
        match b.get(self.head..) {
            Some(t) => t.get(..self.len).unwrap_or(&[]),
            None => &[],
        }
    }

    pub fn frame_mut(&mut self) -> &mut [u8] {
        let end = self.head + self.len;
        self.buf.as_mut().get_mut(self.head..end).unwrap_or(&mut [])
    }

    /// Where the frame starts in the buffer: the bytes free in front of it.
    pub fn headroom(&self) -> usize {
        self.head
    }

    /// The frame's length.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The port the fast path forwarded the frame to, when it did the last time it looked at
    /// the frame (the frame is then rewritten for that port); `None` when it punted it or has
    /// not looked at it. A receive loop reads it to send the slot, with no result per frame
    /// kept apart.
    #[inline]
    pub fn egress(&self) -> Option<Port> {
        Port::try_from(self.egress).ok()
    }

    /// The ingress port in bits 0..16 and the [`egress`](Self::egress) above them, with
    /// `u32::MAX` there when the fast path did not forward the frame: what a receive loop
    /// keys a run of frames from one port to one port by, in one word.
    #[inline]
    pub fn ports_key(&self) -> u64 {
        u64::from(self.port) | u64::from(self.egress) << 16
    }

    /// Whether `other` came in on the same port and went out to the same port as this frame
    /// (or neither was forwarded): the two fields compared as they are, no key built.
    #[inline]
    pub fn same_ports(&self, other: &Self) -> bool {
        self.egress == other.egress && self.port == other.port
    }

    /// The frame's length as it arrived (put in the slot), before any rewrite: what the
    /// ingress interface's counters count.
    #[inline]
    pub fn arrived_len(&self) -> usize {
        self.rx_len as usize
    }
}

macro_rules! punts {
    ($( $(#[$m:meta])* $v:ident = $name:literal ),+ $(,)?) => {
        /// Why a packet went back to the slow path. Each reason has a stable counter name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Punt { $( $(#[$m])* $v ),+ }

        impl Punt {
            pub const ALL: &'static [Punt] = &[$( Punt::$v ),+];
            pub const COUNT: usize = Self::ALL.len();
            pub const fn name(self) -> &'static str {
                match self { $( Punt::$v => $name ),+ }
            }
            pub const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

punts! {
    /// Refused by the frame parser: the slow path drops it under the parser's reason.
    Malformed = "malformed",
    /// Not IPv4 or IPv6 (ARP, PPP control, VLAN over PPPoE, other EtherTypes).
    NotIp = "not_ip",
    /// An IP fragment.
    Fragment = "fragment",
    /// An IPv4 header with options.
    Ipv4Options = "ipv4_options",
    /// IPv6 extension headers.
    Ipv6Ext = "ipv6_ext_header",
    /// Neither TCP nor UDP.
    NotTcpUdp = "not_tcp_udp",
    /// TTL or hop limit 1 or 0: the slow path sends time exceeded.
    TtlExpired = "ttl_expired",
    /// No flow for the tuple and ingress port.
    Miss = "miss",
    /// A flow, but the frame's encapsulation or destination MAC is not its ingress's.
    L2Mismatch = "l2_mismatch",
    /// The flow is torn down and waits for GC.
    Teardown = "teardown",
    /// The ingress or egress interface is down.
    InterfaceDown = "interface_down",
    /// Routes changed since the flow was routed: the flow is torn down.
    RouteChanged = "route_changed",
    /// Larger than the egress MTU: the slow path fragments or answers.
    TooBig = "mtu_exceeded",
    /// A SYN on a closing flow: a new connection reuses the tuple, the flow is torn down.
    SynOnClosing = "tcp_syn_on_closing",
    /// No room in front of the frame for the egress link header.
    NoHeadroom = "no_headroom",
    /// A TCP segment other than a plain ACK, with [`crate::Config::punt_tcp_control`].
    TcpControl = "tcp_control",
}

impl core::fmt::Display for Punt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// What became of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Action {
    /// Not looked at (the burst's output was shorter than its input).
    #[default]
    None,
    /// Rewritten in place: transmit on this port.
    Forward(Port),
    /// Unchanged: give it to the slow path.
    Punt(Punt),
}

/// One packet's trace: fixed size, formatted only when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceRecord {
    pub now_ms: u64,
    pub port: Port,
    pub len: u16,
    pub flow: Option<(FlowId, u8)>,
    pub action: Action,
}

impl core::fmt::Display for TraceRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}ms in={} len={}", self.now_ms, self.port, self.len)?;
        if let Some((id, d)) = self.flow {
            let dir = if d == 0 { "original" } else { "reply" };
            write!(f, " flow={} {dir}", id.idx)?;
        }
        match self.action {
            Action::Forward(p) => write!(f, " forward out={p}"),
            Action::Punt(r) => write!(f, " punt {r}"),
            Action::None => f.write_str(" none"),
        }
    }
}

/// What the parse keeps of a frame for the look-up and the rewrite, in 40 bytes (copied per
/// stage, so kept small): the key as the two words an IPv4 look-up hashes and compares
/// (IPv6 addresses stay in the frame), the offsets and the TCP flags. The transport header
/// follows the IP header directly (no IPv4 options, no IPv6 extension headers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rec {
    /// IPv4: both addresses ([`Key::v4_words`]); IPv6: 0. Then [`Key::tail`].
    pub(crate) w: [u64; 2],
    /// The destination MAC ([`mac_bits`]).
    pub(crate) mac: u64,
    /// The encapsulation ([`Encap::bits`], bits 0..40) and the ingress port ([`l2_word`]):
    /// what the flow's link says a frame must arrive with, in one compare.
    pub(crate) l2: u64,
    /// IP total length (header included).
    pub(crate) ip_len: u32,
    /// Where IP starts in the frame (at most 22: QinQ or PPPoE).
    pub(crate) l3: u8,
    pub(crate) tcp_flags: u8,
    /// The protocol and the family again, as bytes of their own (in the padding): a test
    /// of either is then one compare, not a mask of `w[1]` and a compare.
    pub(crate) proto8: u8,
    pub(crate) is_v6: bool,
}

impl Rec {
    const ZERO: Rec = Rec {
        w: [0; 2],
        mac: 0,
        l2: 0,
        ip_len: 0,
        l3: 0,
        tcp_flags: 0,
        proto8: 0,
        is_v6: false,
    };

    #[inline(always)]
    pub(crate) fn v6(&self) -> bool {
        self.is_v6
    }

    #[inline(always)]
    pub(crate) fn proto(&self) -> u8 {
        self.proto8
    }

    /// The ingress port.
    #[inline(always)]
    pub(crate) fn port(&self) -> Port {
        (self.w[1] >> 32) as u16
    }

    #[cfg(test)]
    pub(crate) fn encap(&self) -> Encap {
        Encap::from_bits(self.l2)
    }

    #[inline(always)]
    pub(crate) fn l3(&self) -> usize {
        usize::from(self.l3)
    }

    #[inline(always)]
    pub(crate) fn l4(&self) -> usize {
        self.l3() + if self.v6() { 40 } else { 20 }
    }

    /// IPv6 source and destination, read from the frame `f` this record was parsed from.
    #[inline]
    pub(crate) fn v6_addrs<'a>(&self, f: &'a [u8]) -> Option<(&'a [u8; 16], &'a [u8; 16])> {
        let a = f.get(self.l3() + 8..)?.first_chunk::<32>()?;
        let (s, d) = a.split_at(16);
        Some((s.try_into().ok()?, d.try_into().ok()?))
    }

    /// The whole key, IPv6 addresses read again from the frame `f` it was parsed from.
    pub(crate) fn key(&self, f: &[u8]) -> Key {
        let (sport, dport) = ports_of(self.w[1] as u32);
        let mut k = Key {
            src: [0; 16],
            dst: [0; 16],
            sport,
            dport,
            port: self.port(),
            proto: self.proto(),
            v6: self.v6(),
        };
        if k.v6 {
            if let Some((s, d)) = self.v6_addrs(f) {
                k.src = *s;
                k.dst = *d;
            }
        } else {
            let a = self.w[0].to_le_bytes();
            k.src[10..12].copy_from_slice(&[0xff, 0xff]);
            k.dst[10..12].copy_from_slice(&[0xff, 0xff]);
            k.src[12..].copy_from_slice(&a[..4]);
            k.dst[12..].copy_from_slice(&a[4..]);
        }
        k
    }
}

/// [`Encap::bits`] of a frame's encapsulation with the port it arrived on in bits 48..64.
#[inline(always)]
pub(crate) fn l2_word(encap_bits: u64, port: Port) -> u64 {
    encap_bits | u64::from(port) << 48
}

/// The frame's destination MAC ([`mac_bits`]); 0 if it is shorter (parse refuses it then).
#[inline(always)]
fn dst_mac(f: &[u8]) -> u64 {
    f.first_chunk::<8>()
        .map_or(0, |b| u64::from_le_bytes(*b) & 0xffff_ffff_ffff)
}

/// [`Key::tail`] from the transport header's first four bytes.
#[inline(always)]
fn tail(ports: [u8; 4], port: Port, proto: u8, v6: bool) -> u64 {
    // the ports as the frame has them (`flow::ports_word`): one load, no swaps
    let p = u32::from_le_bytes(ports);
    u64::from(p) | u64::from(port) << 32 | u64::from(proto) << 48 | u64::from(v6) << 56
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(s) => u16::from_be_bytes([s[0], s[1]]),
        None => 0,
    }
}

#[inline]
fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(s) = b.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

/// One's complement sum of two 16-bit values: one end-around carry is all two can make
/// (the general fold loops).
#[inline(always)]
fn add16(a: u16, b: u16) -> u16 {
    let s = u32::from(a) + u32::from(b);
    (s as u16).wrapping_add((s >> 16) as u16)
}

/// The RFC 1624 update of a stored checksum by a precomputed sum of changes.
#[inline(always)]
fn apply_delta(stored: u16, delta: u16) -> u16 {
    !add16(!stored, delta)
}

/// Whether a 20-byte IPv4 header's checksum verifies: five 32-bit words summed (no carries
/// to add back in 64 bits), then one divisibility test (no loop, no bounds checks).
#[inline(always)]
fn header20_ok(w: &[u8; 20]) -> bool {
    // The one's complement sum does not depend on byte order (RFC 1071): words are summed
    // as they lie in memory. A 32-bit word is worth its two halves modulo 0xffff, and
    // folding keeps the value modulo 0xffff and never makes a non-zero sum zero, so the
    // folded sum is 0xffff exactly when this sum is a non-zero multiple of 0xffff (a byte
    // swap multiplies by 2^8, prime to 0xffff, so that holds in either byte order).
    let word = |i: usize| u64::from(u32::from_ne_bytes([w[i], w[i + 1], w[i + 2], w[i + 3]]));
    let acc = word(0) + word(4) + word(8) + word(12) + word(16);
    acc != 0 && acc % 0xffff == 0
}

/// Whether an IPv4 header's checksum verifies.
#[inline]
fn header_ok(h: &[u8]) -> bool {
    if let Ok(w) = <&[u8; 20]>::try_from(h) {
        return header20_ok(w);
    }
    checksum::verify(h)
}

/// The common frame, parsed with fixed-size reads ([`parse_v4_tail`]): untagged Ethernet,
/// IPv4 without options; its IP header. `None` for any other frame (the general parse takes
/// it; the fixed-size one answers what the general one would, check for check in the same
/// order).
#[inline(always)]
fn v4_untagged(f: &[u8]) -> Option<&[u8; 20]> {
    let (b, ip) = f.first_chunk::<34>()?.split_last_chunk::<20>()?;
    // EtherType 0x0800, then version 4 and a 20-byte header: one compare
    if u32::from_le_bytes([b[12], b[13], ip[0], 0]) != 0x45_00_08 {
        return None;
    }
    Some(ip)
}

#[inline(always)]
fn parse_v4_tail(f: &[u8], ip: &[u8; 20], port: Port, rec: &mut Rec) -> Result<(), Punt> {
    if !header20_ok(ip) {
        return Err(Punt::Malformed);
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if total < 20 || total > f.len() - 14 {
        return Err(Punt::Malformed);
    }
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return Err(Punt::Fragment);
    }
    let proto = ip[9];
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return Err(Punt::NotTcpUdp);
    }
    let l4 = f.get(34..14 + total).unwrap_or(&[]);
    let mut tcp_flags = 0;
    let ports = if proto == PROTO_TCP {
        let Some(t) = l4.first_chunk::<20>() else {
            return Err(Punt::Malformed);
        };
        let doff = usize::from(t[12] >> 4) * 4;
        if doff < 20 || doff > l4.len() {
            return Err(Punt::Malformed);
        }
        tcp_flags = t[13];
        [t[0], t[1], t[2], t[3]]
    } else {
        let Some(u) = l4.first_chunk::<8>() else {
            return Err(Punt::Malformed);
        };
        let ulen = usize::from(u16::from_be_bytes([u[4], u[5]]));
        if ulen < 8 || ulen > l4.len() {
            return Err(Punt::Malformed);
        }
        [u[0], u[1], u[2], u[3]]
    };
    if ip[8] <= 1 {
        return Err(Punt::TtlExpired);
    }
    let a = u64::from_le_bytes([
        ip[12], ip[13], ip[14], ip[15], ip[16], ip[17], ip[18], ip[19],
    ]);
    // written in place: a record returned by value went through a copy on the stack
    *rec = Rec {
        w: [a, tail(ports, port, proto, false)],
        mac: dst_mac(f),
        l2: l2_word(0, port),
        ip_len: total as u32,
        l3: 14,
        tcp_flags,
        proto8: proto,
        is_v6: false,
    };
    Ok(())
}

/// Parses what the fast path needs, refusing what `parse_frame` refuses and punting what the
/// fast path does not take.
///
/// The common frame (untagged IPv4 without options) is parsed inline; the others out of
/// line ([`parse_other`]), so that the burst's first stage stays small.
#[inline(always)]
pub(crate) fn parse_into(f: &[u8], port: Port, rec: &mut Rec) -> Result<(), Punt> {
    if let Some(ip) = v4_untagged(f) {
        return parse_v4_tail(f, ip, port, rec);
    }
    *rec = parse_other(f, port)?;
    Ok(())
}

/// [`parse_into`] as a value.
pub(crate) fn parse(f: &[u8], port: Port) -> Result<Rec, Punt> {
    let mut rec = Rec::ZERO;
    parse_into(f, port, &mut rec).map(|()| rec)
}

/// [`parse`] for the frames [`v4_untagged`] does not take.
#[inline(never)]
fn parse_other(f: &[u8], port: Port) -> Result<Rec, Punt> {
    if f.len() < 14 {
        return Err(Punt::Malformed);
    }
    let mut et = be16(f, 12);
    let mut at = 14;
    let mut tags = [0u16; 2];
    let mut ntags = 0;
    while et == ETH_VLAN || et == ETH_QINQ {
        if ntags == 2 || f.len() < at + 4 {
            return Err(Punt::Malformed);
        }
        tags[ntags] = be16(f, at) & 0x0fff;
        et = be16(f, at + 2);
        at += 4;
        ntags += 1;
    }
    let mut end = f.len();
    let encap = if et == ETH_PPPOE {
        if f.len() < at + 8 || f[at] != 0x11 || f[at + 1] != 0 {
            return Err(Punt::Malformed);
        }
        let plen = be16(f, at + 4) as usize;
        if plen < 2 || at + 6 + plen > f.len() {
            return Err(Punt::Malformed);
        }
        if ntags != 0 {
            return Err(Punt::NotIp);
        }
        end = at + 6 + plen;
        et = match be16(f, at + 6) {
            PPP_IPV4 => ETH_IPV4,
            PPP_IPV6 => ETH_IPV6,
            _ => return Err(Punt::NotIp),
        };
        let session = be16(f, at + 2);
        at += 8;
        Encap::Pppoe(session)
    } else {
        match ntags {
            0 => Encap::None,
            1 => Encap::Vlan(tags[0]),
            _ => Encap::QinQ {
                outer: tags[0],
                inner: tags[1],
            },
        }
    };
    let l3 = f.get(at..end).unwrap_or(&[]);
    let (ip_len, hlen, proto, v6, w0) = match et {
        ETH_IPV4 => {
            if l3.len() < 20 || l3[0] >> 4 != 4 {
                return Err(Punt::Malformed);
            }
            let hlen = usize::from(l3[0] & 0x0f) * 4;
            if hlen < 20 || hlen > l3.len() || !header_ok(&l3[..hlen]) {
                return Err(Punt::Malformed);
            }
            let total = usize::from(be16(l3, 2));
            if total < hlen || total > l3.len() {
                return Err(Punt::Malformed);
            }
            if hlen > 20 {
                return Err(Punt::Ipv4Options);
            }
            if be16(l3, 6) & 0x3fff != 0 {
                return Err(Punt::Fragment);
            }
            let w0 = u64::from_le_bytes([
                l3[12], l3[13], l3[14], l3[15], l3[16], l3[17], l3[18], l3[19],
            ]);
            (total, hlen, l3[9], false, w0)
        }
        ETH_IPV6 => {
            if l3.len() < 40 || l3[0] >> 4 != 6 {
                return Err(Punt::Malformed);
            }
            let total = 40 + usize::from(be16(l3, 4));
            if total > l3.len() {
                return Err(Punt::Malformed);
            }
            let proto = l3[6];
            if matches!(
                proto,
                0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 | 253 | 254
            ) {
                return Err(Punt::Ipv6Ext);
            }
            (total, 40, proto, true, 0)
        }
        _ => return Err(Punt::NotIp),
    };
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return Err(Punt::NotTcpUdp);
    }
    let l4 = l3.get(hlen..ip_len).unwrap_or(&[]);
    let mut tcp_flags = 0;
    if proto == PROTO_TCP {
        if l4.len() < 20 {
            return Err(Punt::Malformed);
        }
        let doff = usize::from(l4[12] >> 4) * 4;
        if doff < 20 || doff > l4.len() {
            return Err(Punt::Malformed);
        }
        tcp_flags = l4[13];
    } else {
        if l4.len() < 8 {
            return Err(Punt::Malformed);
        }
        let ulen = usize::from(be16(l4, 4));
        if ulen < 8 || ulen > l4.len() {
            return Err(Punt::Malformed);
        }
    }
    // The kernel checks the TTL before looking up (`nf_flow_tuple_ip`).
    let ttl = if v6 { l3[7] } else { l3[8] };
    if ttl <= 1 {
        return Err(Punt::TtlExpired);
    }
    let Some(ports) = l4.first_chunk::<4>() else {
        return Err(Punt::Malformed);
    };
    Ok(Rec {
        w: [w0, tail(*ports, port, proto, v6)],
        mac: dst_mac(f),
        l2: l2_word(encap.bits(), port),
        ip_len: ip_len as u32,
        // at most 14 + 8 (two tags, or PPPoE)
        l3: at as u8,
        tcp_flags,
        proto8: proto,
        is_v6: v6,
    })
}

/// The checks a hit still has to pass, in the kernel's order, and the flow's state changes
/// they imply (teardown on SYN or route change, closing on FIN/RST).
///
/// The rare cases (a flow torn down or stale, a TCP SYN, FIN or RST, a port down, PPPoE,
/// whose session is checked against the source MAC) are one test, and then [`decide_all`]
/// goes through every check; the common hit has only the link layer, the MTU and the
/// headroom left, in the same order.
#[inline(always)]
fn decide<'l>(
    h: &mut Hot,
    d: usize,
    p: &Rec,
    src_mac: impl FnOnce() -> u64,
    head: usize,
    links: &'l [Link],
    port_down: &[bool],
) -> Result<&'l Link, Punt> {
    let d = d & 1;
    let rare = (h.flags & (TEARDOWN | STALE) | p.tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST)) != 0;
    if rare | !port_down.is_empty() | (p.l2 & 0xff == PPPOE_BITS) {
        return decide_all(h, d, p, src_mac(), head, links, port_down);
    }
    let link = h.link[d];
    let (Some(back), Some(out)) = (
        links.get(usize::from(h.link[1 - d])),
        links.get(usize::from(link)),
    ) else {
        return Err(Punt::Miss);
    };
    // the ingress port (which the IPv4 look-up leaves out: a `Miss` here makes the burst
    // look again with it), the encapsulation and the MAC the frame came to, in one test
    let l2 = p.l2 ^ back.rx_l2;
    if l2 | (p.mac ^ back.rx_mac) != 0 {
        return Err(if l2 >> 48 != 0 {
            Punt::Miss
        } else {
            Punt::L2Mismatch
        });
    }
    if p.ip_len > u32::from(out.mtu) {
        return Err(Punt::TooBig);
    }
    if head + p.l3() < usize::from(out.hl) {
        return Err(Punt::NoHeadroom);
    }
    Ok(out)
}

/// [`decide`] with every check, for the rare cases.
#[cold]
#[inline(never)]
fn decide_all<'l>(
    h: &mut Hot,
    d: usize,
    p: &Rec,
    src_mac: u64,
    head: usize,
    links: &'l [Link],
    port_down: &[bool],
) -> Result<&'l Link, Punt> {
    let d = d & 1;
    let flags = h.flags;
    let (in_link, link) = (h.link[1 - d], h.link[d]);
    let (Some(back), Some(out)) = (
        links.get(usize::from(in_link)),
        links.get(usize::from(link)),
    ) else {
        return Err(Punt::Miss);
    };
    // another ingress port: not this flow (before anything is said or changed about it)
    if back.rx_port != p.port() {
        return Err(Punt::Miss);
    }
    if flags & TEARDOWN != 0 {
        return Err(Punt::Teardown);
    }
    if p.l2 != back.rx_l2 || p.mac != back.rx_mac {
        return Err(Punt::L2Mismatch);
    }
    // a PPPoE session is its id and the concentrator's MAC
    if p.l2 & 0xff == PPPOE_BITS && src_mac != mac_bits(&back.dst_mac) {
        return Err(Punt::L2Mismatch);
    }
    // `port_down` is empty while every port is up: no look-up per packet then.
    if !port_down.is_empty() {
        let down = |port: Port| port_down.get(port as usize).copied().unwrap_or(false);
        if down(back.rx_port) || down(out.port) {
            return Err(Punt::InterfaceDown);
        }
    }
    if flags & STALE != 0 {
        h.flags |= TEARDOWN;
        return Err(Punt::RouteChanged);
    }
    if p.ip_len > u32::from(out.mtu) {
        return Err(Punt::TooBig);
    }
    if p.tcp_flags & TCP_SYN != 0 && flags & CLOSING != 0 {
        h.flags |= TEARDOWN;
        return Err(Punt::SynOnClosing);
    }
    if head + p.l3() < usize::from(out.hl) {
        return Err(Punt::NoHeadroom);
    }
    if p.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
        h.flags |= CLOSING;
    }
    Ok(out)
}

/// [`decide`] for a GSO packet found above the egress MTU: one whose segments fit (the
/// kernel's `nf_flow_exceeds_mtu`: `skb_gso_validate_network_len`, the IP header, the
/// transport header and `gso_size`, not above the MTU) goes through the checks as a packet
/// of one segment's size would; anything else stays too big.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn decide_gso<'l>(
    h: &mut Hot,
    d: usize,
    p: &Rec,
    o: &Offload,
    f: &[u8],
    head: usize,
    links: &'l [Link],
    port_down: &[bool],
) -> Result<&'l Link, Punt> {
    if o.gso_size == 0 {
        return Err(Punt::TooBig);
    }
    let th = if p.proto() == PROTO_TCP {
        f.get(p.l4() + 12).map_or(20, |b| u32::from(b >> 4) * 4)
    } else {
        8
    };
    let seg = Rec {
        ip_len: (p.l4() - p.l3()) as u32 + th + u32::from(o.gso_size),
        ..*p
    };
    let src_mac = f
        .get(6..12)
        .and_then(|m| m.try_into().ok())
        .map_or(0, mac_bits);
    decide_all(h, d, &seg, src_mac, head, links, port_down)
}

/// `dst = src[..N]` as two overlapping copies of 8 bytes (N of 9 to 16) or 16 bytes (17 to
/// 32): two loads and two stores, where a plain copy of 14 bytes takes three of each.
#[inline(always)]
fn copy_link<const N: usize>(dst: &mut [u8; N], src: &[u8; 22]) {
    fn two<const N: usize, const C: usize>(dst: &mut [u8; N], src: &[u8; 22]) {
        if let (Some(d), Some(s)) = (dst.first_chunk_mut::<C>(), src.first_chunk::<C>()) {
            *d = *s;
        }
        if let (Some(d), Some(s)) = (
            dst.last_chunk_mut::<C>(),
            src.get(N.saturating_sub(C)..N)
                .and_then(|s| s.first_chunk::<C>()),
        ) {
            *d = *s;
        }
    }
    if N <= 16 {
        two::<N, 8>(dst, src);
    } else {
        two::<N, 16>(dst, src);
    }
}

/// Writes a link header of `N` bytes, prebuilt in the link.
#[inline(always)]
fn put_link<const N: usize>(hdr: &mut [u8], header: &[u8; 22]) {
    if let (Ok(a), Some(src)) = (<&mut [u8; N]>::try_from(hdr), header.first_chunk::<N>()) {
        *a = *src;
    }
}

/// The IPv4 packet's rewrite for direction `d`: NAT (the inverse of the other direction's
/// key), transport checksum, TTL, DSCP, header checksum. `ip` is the header (no options),
/// `l4` the transport header's first 8 bytes; a TCP checksum is in `pkt`, the bytes after them
/// (parse made sure both are whole: 20 bytes of TCP, 8 of UDP).
#[inline(always)]
fn rewrite_v4(h: &Hot, d: usize, tcp: bool, ip: &mut [u8; 20], l4: &mut [u8; 8], rest: &mut [u8]) {
    let d = d & 1;
    let o = 1 - d;
    // Addresses and ports are in the line as the frame has them, and checksums are summed
    // as they lie in memory (`ne`: the one's complement sum does not depend on byte order,
    // RFC 1071): copies and adds, no swaps.
    if h.flags & NAT != 0 {
        let [a, b, c, e] = h.addr[2 * o + 1];
        let [f, g, i, j] = h.addr[2 * o];
        ip[12..20].copy_from_slice(&[a, b, c, e, f, g, i, j]);
        let [a, b] = h.port[2 * o + 1];
        let [c, e] = h.port[2 * o];
        l4[..4].copy_from_slice(&[a, b, c, e]);
    }
    let l4_delta = u16::from_ne_bytes(h.l4_delta[d]);
    if l4_delta != 0 {
        if tcp {
            // the TCP checksum is at 16, 8 bytes into `rest`
            if let Some(t) = rest.get_mut(8..10).and_then(|t| t.first_chunk_mut::<2>()) {
                let old = u16::from_ne_bytes(*t);
                *t = apply_delta(old, l4_delta).to_ne_bytes();
            }
        } else {
            let old = u16::from_ne_bytes([l4[6], l4[7]]);
            // A zero UDP checksum means none, and stays so (0 and 0xffff read the same in
            // either byte order).
            if old != 0 {
                let mut new = apply_delta(old, l4_delta);
                if new == 0 {
                    new = 0xffff;
                }
                let [x, y] = new.to_ne_bytes();
                l4[6] = x;
                l4[7] = y;
            }
        }
    }
    // (parse punted a TTL of 1 or 0)
    ip[8] = ip[8].wrapping_sub(1);
    let mut c = apply_delta(
        u16::from_ne_bytes([ip[10], ip[11]]),
        u16::from_ne_bytes(h.ip_delta[d]),
    );
    if h.flags & DSCP != 0 && h.dscp[d] != u8::MAX {
        let old = u16::from_be_bytes([ip[0], ip[1]]);
        let new = (old & 0xff03) | u16::from(h.dscp[d]) << 2;
        if new != old {
            let (old_ne, new_ne) = (
                u16::from_ne_bytes(old.to_be_bytes()),
                u16::from_ne_bytes(new.to_be_bytes()),
            );
            c = !add16(add16(!c, !old_ne), new_ne);
            let [x, y] = new.to_be_bytes();
            ip[0] = x;
            ip[1] = y;
        }
    }
    let [x, y] = c.to_ne_bytes();
    ip[10] = x;
    ip[11] = y;
}

/// An IPv4 frame's rewrite with an egress link header of `HL` bytes: `frame` is the new
/// frame, from the link header's start to the IP packet's end.
#[inline(always)]
fn rewrite_v4_frame<const HL: usize>(h: &Hot, d: usize, link: &Link, tcp: bool, frame: &mut [u8]) {
    let Some((hdr, pkt)) = frame.split_first_chunk_mut::<HL>() else {
        return;
    };
    copy_link::<HL>(hdr, &link.header[0]);
    let ip_len = pkt.len();
    if HL == 22 {
        if let Encap::Pppoe(_) = link.encap {
            let len = (ip_len + 2).min(usize::from(u16::MAX)) as u16;
            hdr[18..20].copy_from_slice(&len.to_be_bytes());
        }
    }
    let Some((ip, l4)) = pkt.split_first_chunk_mut::<20>() else {
        return;
    };
    let Some((l4, rest)) = l4.split_first_chunk_mut::<8>() else {
        return;
    };
    rewrite_v4(h, d, tcp, ip, l4, rest);
}

/// The IPv6 packet's rewrite for direction `d`: NAT, transport checksum, hop limit, DSCP.
#[inline]
fn rewrite_v6(
    h: &Hot,
    d: usize,
    v6a: Option<&V6Addrs>,
    p: &Rec,
    buf: &mut [u8],
    l3: usize,
    l4: usize,
) {
    let d = d & 1;
    let o = 1 - d;
    if h.flags & NAT != 0 {
        if let (Some(s), Some(a)) = (buf.get_mut(l3 + 8..l3 + 40), v6a) {
            s[..16].copy_from_slice(&a.new_src);
            s[16..].copy_from_slice(&a.new_dst);
        }
        if let Some(s) = buf.get_mut(l4..l4 + 4) {
            s[..2].copy_from_slice(&h.port[2 * o + 1]);
            s[2..].copy_from_slice(&h.port[2 * o]);
        }
    }
    let l4_delta = u16::from_be_bytes(h.l4_delta[d]);
    if l4_delta != 0 {
        let at = l4 + if p.proto() == PROTO_TCP { 16 } else { 6 };
        let udp = p.proto() == PROTO_UDP;
        let old = be16(buf, at);
        let mut new = apply_delta(old, l4_delta);
        if udp && new == 0 {
            new = 0xffff;
        }
        put16(buf, at, new);
    }
    if let Some(t) = buf.get_mut(l3 + 7) {
        *t = t.saturating_sub(1);
    }
    if h.dscp[d] != u8::MAX {
        let w = be16(buf, l3);
        let tc = (w >> 4) as u8;
        let new_tc = h.dscp[d] << 2 | (tc & 3);
        put16(buf, l3, (w & 0xf00f) | u16::from(new_tc) << 4);
    }
}

/// [`rewrite`] for an IPv4 packet.
#[inline(always)]
fn rewrite_v4_at(
    h: &Hot,
    d: usize,
    link: &Link,
    p: &Rec,
    buf: &mut [u8],
    head: usize,
) -> (usize, usize) {
    let l3 = head + p.l3();
    let ip_len = p.ip_len as usize;
    let hl = usize::from(link.hl);
    // `decide` made sure the headroom is there (a wrapped start would fail the bounds
    // check below, never panic).
    let start = l3.wrapping_sub(hl);
    // The link header, the IP header and the transport header as fixed-size arrays of one
    // slice (one bounds check), so the writes need no more checks (parse made sure they are
    // whole).
    if let Some(frame) = buf.get_mut(start..l3 + ip_len) {
        let tcp = p.proto() == PROTO_TCP;
        match hl {
            14 => rewrite_v4_frame::<14>(h, d, link, tcp, frame),
            18 => rewrite_v4_frame::<18>(h, d, link, tcp, frame),
            _ => rewrite_v4_frame::<22>(h, d, link, tcp, frame),
        }
    }
    (start, hl + ip_len)
}

/// Rewrites the frame at `buf[head..]` for direction `d` of the line `h`; `decide` passed.
/// Returns the frame's new start and length.
#[inline(always)]
fn rewrite(
    h: &Hot,
    d: usize,
    v6a: Option<&V6Addrs>,
    link: &Link,
    p: &Rec,
    buf: &mut [u8],
    head: usize,
) -> (usize, usize) {
    let (l3, l4) = (head + p.l3(), head + p.l4());
    let ip_len = p.ip_len as usize;
    let v6 = p.v6();
    // The egress link header, written whole in front of L3 (pop and push in one), and link
    // padding after the IP packet dropped, as the slow path does.
    let hl = usize::from(link.hl);
    // `decide` made sure the headroom is there (a wrapped start would fail the bounds
    // checks below, never panic).
    let start = l3.wrapping_sub(hl);
    if !v6 {
        return rewrite_v4_at(h, d, link, p, buf, head);
    }
    rewrite_v6(h, d, v6a, p, buf, l3, l4);
    let header = &link.header[1];
    if let Some(hdr) = buf.get_mut(start..l3) {
        // Fixed-size copies per header length (moves, no call to memcpy).
        match hl {
            14 => put_link::<14>(hdr, header),
            18 => put_link::<18>(hdr, header),
            _ => put_link::<22>(hdr, header),
        }
        if let Encap::Pppoe(_) = link.encap {
            let len = (ip_len + 2).min(usize::from(u16::MAX)) as u16;
            if let Some(l) = hdr.get_mut(18..20) {
                l.copy_from_slice(&len.to_be_bytes());
            }
        }
    }
    (start, hl + ip_len)
}

/// The flow and direction (`index << 1 | dir`) whose key `key` is.
#[inline]
pub(crate) fn find(
    index: &Index,
    hot: &[Hot],
    cold: &[Cold],
    links: &[Link],
    key: &Key,
    h: u64,
) -> Option<u32> {
    if !key.v6 {
        return find_v4(index, hot, links, key.v4_key(), h);
    }
    index.find(h, |v| {
        let (i, d) = ((v >> 1) as usize, (v & 1) as usize);
        hot.get(i).is_some_and(|x| {
            x.matches(d, key, cold.get(i).and_then(|c| c.v6(d)))
                && links
                    .get(usize::from(x.link[1 - d]))
                    .is_some_and(|l| l.rx_port == key.port)
        })
    })
}

/// [`find`] for an IPv4 key given as its two words ([`Key::v4_key`]): two compares a
/// candidate.
#[inline(always)]
pub(crate) fn find_v4(
    index: &Index,
    hot: &[Hot],
    links: &[Link],
    w: [u64; 2],
    h: u64,
) -> Option<u32> {
    let port = (w[1] >> 32) as u16;
    index.find(h, |v| {
        let (i, d) = ((v >> 1) as usize, (v & 1) as usize);
        hot.get(i).is_some_and(|x| {
            x.matches_v4(d, w)
                && links
                    .get(usize::from(x.link[1 - d]))
                    .is_some_and(|l| l.rx_port == port)
        })
    })
}

/// [`find_v4`] without the ingress port: the first flow direction whose addresses, ports
/// and protocol are the key's. When its ingress port is the key's too, that is
/// [`find_v4`]'s answer (the first candidate matching all but the port matches all), and
/// the burst checks the port where it reads the flow's links anyway; otherwise the burst
/// asks [`find_v4`] ([`Flowtable::refind_v4`]). Two flows with one tuple on two ports are
/// rare (overlapping private networks), so the look-up's own chain of loads stops at the
/// flow's line.
#[inline(always)]
pub(crate) fn find_v4_any_port(index: &Index, hot: &[Hot], w: [u64; 2], h: u64) -> Option<u32> {
    index.find(h, |v| {
        let (i, d) = ((v >> 1) as usize, (v & 1) as usize);
        hot.get(i).is_some_and(|x| x.matches_v4(d, w))
    })
}

/// Frames handled per stage: enough independent lookups in flight to hide memory latency,
/// few enough for the stage arrays to stay in L1.
const STAGE: usize = 32;

impl<B: OffloadBackend> Flowtable<B> {
    /// The fast path over a burst: for each frame, `out[i]` says whether it was rewritten in
    /// place and goes out on a port, or is unchanged and goes to the slow path. Frames past
    /// `out.len()` are not looked at. `TRACE` keeps a fixed-size record per packet.
    ///
    /// Frames go through in stages of [`STAGE`]: parse and hash all, then look all up, then
    /// rewrite all. The loads of one stage do not depend on each other, so their cache misses
    /// overlap instead of adding up; the index's are prefetched as each frame is hashed (as
    /// VPP does), so they are on their way while the other frames are parsed.
    ///
    /// Never inlined: one call a burst, and its code the same whatever the caller's size (the
    /// count per packet moved by a dozen instructions when the caller's inlining changed).
    #[inline(never)]
    pub fn process_burst<const TRACE: bool>(
        &mut self,
        frames: &mut [FrameSlot<impl SlotBuf>],
        now: Duration,
        out: &mut [Action],
    ) {
        let now_ms = ms(now);
        let n = frames.len().min(out.len());
        let punted = self.punted;
        // Chunks and zipped iterators rather than indices: no bounds check per frame.
        let stages = frames[..n]
            .chunks_mut(STAGE)
            .zip(out[..n].chunks_mut(STAGE));
        for (chunk, outs) in stages {
            let mut recs = [Rec::ZERO; STAGE];
            let mut parsed = [Err(Punt::Malformed); STAGE];
            let mut hashes = [0u64; STAGE];
            let mut found = [u32::MAX; STAGE];
            let first = chunk
                .iter()
                .zip(&mut recs)
                .zip(&mut parsed)
                .zip(&mut hashes);
            for (((fs, r), p), h) in first {
                let f = fs.frame();
                *p = parse_into(f, fs.port, r);
                if p.is_ok() {
                    *h = if r.v6() {
                        self.index.hash(&r.key(f))
                    } else {
                        self.index.hash_v4(r.w[0], r.w[1])
                    };
                    // The probe's first slot asked for at once: its miss overlaps the parse
                    // of the stage's other frames. A prefetch, not a load: a load that misses
                    // would hold up the parse behind it once the reorder window filled.
                    self.index.prefetch(*h);
                }
            }
            // The look-up in two passes: the index's probes first, each prefetching its
            // candidate's line, so that the lines' misses overlap too (a look-up that
            // waited for its line would hold up the ones behind it), then the lines
            // compared. (The probes' slots came in during the parse.)
            let hot = &self.hot[..];
            // (a frame the parse refused probes with hash 0: wasted, and its candidate is
            // never read)
            for (&h, f) in hashes.iter().zip(&mut found) {
                *f = self.index.first_candidate(h);
                prefetch_index::prefetch_index(hot, (*f >> 1) as usize);
            }
            let lookups = chunk
                .iter()
                .zip(&recs)
                .zip(&parsed)
                .zip(&hashes)
                .zip(&mut found);
            for ((((fs, r), p), &h), f) in lookups {
                if p.is_err() {
                    continue;
                }
                let c = *f;
                if r.v6() {
                    let key = r.key(fs.frame());
                    *f = find(&self.index, hot, &self.cold, &self.links, &key, h)
                        .unwrap_or(u32::MAX);
                } else {
                    let (i, d) = ((c >> 1) as usize, (c & 1) as usize);
                    if !hot.get(i).is_some_and(|x| x.matches_v4(d, r.w)) {
                        // the first candidate was another key's, or there was none: the
                        // whole probe
                        *f = find_v4_any_port(&self.index, hot, r.w, h).unwrap_or(u32::MAX);
                    }
                }
            }
            let last = chunk
                .iter_mut()
                .zip(outs)
                .zip(&recs)
                .zip(&parsed)
                .zip(&found);
            for ((((fs, o), r), p), &f) in last {
                let rec = match p {
                    Ok(()) => Ok(r),
                    Err(e) => Err(*e),
                };

                *o = self.finish::<TRACE, _>(fs, rec, f, now_ms);
            }
        }
        // counted once a burst, not once a frame: each frame was forwarded or punted
        self.stats.forwarded += (n as u64).wrapping_sub(self.punted.wrapping_sub(punted));
    }

    /// [`forward`](Self::forward) again for an IPv4 record whose first candidate (from
    /// [`find_v4_any_port`]) arrives on another port: with [`find_v4`]'s answer.
    #[cold]
    #[inline(never)]
    fn forward_refound<const TRACE: bool, S: SlotBuf>(
        &mut self,
        fs: &mut FrameSlot<S>,
        p: &Rec,
        now_ms: u64,
        hit: &mut Option<(FlowId, u8)>,
    ) -> Result<Port, Punt> {
        let h = self.index.hash_v4(p.w[0], p.w[1]);
        let found = find_v4(&self.index, &self.hot, &self.links, p.w, h).unwrap_or(u32::MAX);
        self.forward::<TRACE, false, S>(fs, Ok(p), found, now_ms, hit)
    }

    /// One frame's parse and its flow's line, if any (the burst's stages do the same over
    /// a burst).
    #[inline(always)]
    fn look_up<S: SlotBuf>(&self, fs: &FrameSlot<S>) -> (Result<Rec, Punt>, Option<u32>) {
        let p = parse(fs.frame(), fs.port);
        let v = match &p {
            Ok(p) => {
                let key = p.key(fs.frame());
                let h = self.index.hash(&key);
                find(&self.index, &self.hot, &self.cold, &self.links, &key, h)
            }
            Err(_) => None,
        };
        (p, v)
    }

    /// The fast path for one frame; see [`process_burst`](Self::process_burst).
    pub fn process<S: SlotBuf>(&mut self, fs: &mut FrameSlot<S>, now: Duration) -> Action {
        let (p, v) = self.look_up(fs);
        let a = self.finish::<false, S>(
            fs,
            p.as_ref().map_err(|e| *e),
            v.unwrap_or(u32::MAX),
            ms(now),
        );
        if let Action::Forward(_) = a {
            self.stats.forwarded += 1;
        }
        a
    }

    #[inline(always)]
    pub(crate) fn finish<const TRACE: bool, S: SlotBuf>(
        &mut self,
        fs: &mut FrameSlot<S>,
        parsed: Result<&Rec, Punt>,
        found: u32,
        now_ms: u64,
    ) -> Action {
        let mut hit = None;
        // (forwarded frames are counted by the caller)
        let mut r = self.forward::<TRACE, false, S>(fs, parsed, found, now_ms, &mut hit);
        if r == Err(Punt::Miss) && found != u32::MAX {
            // a flow of the tuple but another ingress port: the look-up left the port out
            if let Ok(p) = parsed {
                if !p.v6() {
                    r = self.forward_refound::<TRACE, S>(fs, p, now_ms, &mut hit);
                }
            }
        }
        fs.egress = r.map_or(NO_EGRESS, u32::from);
        let act = match r {
            Ok(port) => Action::Forward(port),
            Err(p) => {
                self.stats.punts[p.index()] += 1;
                self.punted = self.punted.wrapping_add(1);
                Action::Punt(p)
            }
        };
        if TRACE && self.cfg.trace_capacity > 0 {
            let rec = TraceRecord {
                now_ms,
                port: fs.port,
                len: fs.len.min(usize::from(u16::MAX)) as u16,
                flow: hit,
                action: act,
            };
            if self.trace.len() < self.cfg.trace_capacity {
                self.trace.push(rec);
            } else if let Some(r) = self.trace.get_mut(self.trace_next) {
                *r = rec;
            }
            self.trace_next = (self.trace_next + 1) % self.cfg.trace_capacity;
        }
        act
    }

    /// A GSO packet [`process_burst`](Self::process_burst) punted as `mtu_exceeded`, again:
    /// forwarded whole when its segments fit the egress MTU ([`decide_gso`], the kernel's
    /// `nf_flow_exceeds_mtu`), and then counted as forwarded instead of punted; otherwise
    /// left as it was, a punt already counted. The checks before the MTU's have no side
    /// effects, so the second pass changes nothing else. Out of the burst's loop, so that
    /// plain frames pay nothing for it.
    #[cold]
    #[inline(never)]
    pub fn process_gso<S: SlotBuf>(&mut self, fs: &mut FrameSlot<S>, now: Duration) -> Action {
        if !fs.offload.is_gso() {
            return Action::Punt(Punt::TooBig);
        }
        let (p, v) = self.look_up(fs);
        let mut hit = None;
        let parsed = p.as_ref().map_err(|e| *e);
        match self.forward::<false, true, S>(fs, parsed, v.unwrap_or(u32::MAX), ms(now), &mut hit) {
            Ok(port) => {
                fs.egress = u32::from(port);
                self.stats.forwarded += 1;
                let c = &mut self.stats.punts[Punt::TooBig.index()];
                *c = c.saturating_sub(1);
                Action::Forward(port)
            }
            Err(e) => Action::Punt(e),
        }
    }

    #[inline(always)]
    fn forward<const TRACE: bool, const GSO: bool, S: SlotBuf>(
        &mut self,
        fs: &mut FrameSlot<S>,
        parsed: Result<&Rec, Punt>,
        found: u32,
        now_ms: u64,
        hit: &mut Option<(FlowId, u8)>,
    ) -> Result<Port, Punt> {
        let p = parsed?;
        let (idx, d) = ((found >> 1) as usize, (found & 1) as usize);
        let h = self.hot.get_mut(idx).ok_or(Punt::Miss)?;
        if TRACE {
            *hit = Some((
                FlowId {
                    idx: idx as u32,
                    // The cold part is read for traces only.
                    gen: self.gens.get(idx).copied().unwrap_or(0),
                },
                d as u8,
            ));
        }
        // (the record's protocol first: a UDP frame is one compare, the table's setting read
        // only for TCP)
        if p.proto() == PROTO_TCP && self.cfg.punt_tcp_control && !plain_ack(p.tcp_flags) {
            let back = self.links.get(usize::from(h.link[1 - d]));
            if back.is_none_or(|l| l.rx_port != p.port()) {
                return Err(Punt::Miss);
            }
            // FIN or RST starts the close, which the slow path must track packet by packet:
            // torn down now, the flow also punts the frames behind this one in the burst,
            // which would otherwise overtake it.
            if p.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
                h.flags |= TEARDOWN;
            }
            return Err(Punt::TcpControl);
        }
        let head = fs.head;
        let src_mac = || {
            let f = fs.frame();
            f.get(6..12)
                .and_then(|m| m.try_into().ok())
                .map_or(0, mac_bits)
        };
        // (the egress's link as `decide` found it: one bounds check)
        let link = if GSO {
            decide_gso(
                h,
                d,
                p,
                &fs.offload,
                fs.frame(),
                head,
                &self.links,
                &self.port_down,
            )?
        } else {
            decide(h, d, p, src_mac, head, &self.links, &self.port_down)?
        };
        // A flow without IPv6 addresses or marks (the line says) forwards an IPv4 packet
        // (the look-up matched the line's family): the cold part is not read and the
        // rewrite has no family to test.
        let (start, len) = if h.flags & (V6 | MARK) == 0 {
            fs.mark = None;
            rewrite_v4_at(h, d, link, p, fs.buf.as_mut(), head)
        } else {
            let cold = self.cold.get(idx);
            fs.mark = match cold {
                Some(c) if h.flags & MARK != 0 => c.mark(d),
                _ => None,
            };
            rewrite(
                h,
                d,
                cold.and_then(|c| c.v6(d)),
                link,
                p,
                fs.buf.as_mut(),
                head,
            )
        };
        fs.head = start;
        fs.len = len;
        h.packets[d] = h.packets[d].wrapping_add(1);
        let (b, carry) = h.bytes[d].overflowing_add(p.ip_len);
        h.bytes[d] = b;
        h.bytes_hi[d] = h.bytes_hi[d].wrapping_add(u16::from(carry));
        // Wrapping: the low 32 bits tell a second apart as long as GC (every second) removes
        // flows idle for far less than the 49 days they wrap in.
        let since = (now_ms as u32).wrapping_sub(h.used);
        if since >= REFRESH_MS as u32 && since < 1 << 31 {
            h.used = now_ms as u32;
        }
        Ok(link.port)
    }
}

#[cfg(test)]
mod refill_tests {
    use super::FrameSlot;

    /// A reused slot holds exactly the frame it was refilled with, whatever the frame
    /// before it left in the buffer (longer, shorter, moved by a rewrite), for every
    /// length around the two-copy range.
    #[test]
    fn refill_restores_every_byte() {
        let mut s = FrameSlot::new(1, &[0xaa; 100]);
        for n in (0..=130).chain((0..=130).rev()) {
            let f: Vec<u8> = (0..n).map(|i| (i * 7 + n) as u8).collect();
            s.refill(2, &f);
            assert_eq!(s.frame(), &f[..], "length {n}");
            assert_eq!((s.port, s.mark, s.headroom()), (2, None, super::HEADROOM));
            // what a rewrite does: the frame's bytes changed and its start moved
            let len = s.len();
            s.frame_mut().iter_mut().for_each(|b| *b = !*b);
            s.head = s.head.saturating_sub(8);
            s.len = len.min(20);
        }
    }
}

#[cfg(test)]
mod checksum_tests {
    use super::header20_ok;
    use proptest::prelude::*;

    proptest! {
        /// The divisibility test answers what the general verifier does, for any header and
        /// for the same header with its checksum made valid (with the sums that fold to
        /// zero or all ones, and carries, among them).
        #[test]
        fn header20_ok_agrees_with_verify(mut w in any::<[u8; 20]>(), fill in any::<u8>()) {
            prop_assert_eq!(header20_ok(&w), nft_wire::checksum::verify(&w));
            w[10] = 0;
            w[11] = 0;
            let c = nft_wire::checksum::checksum(&w);
            w[10..12].copy_from_slice(&c.to_be_bytes());
            prop_assert_eq!(header20_ok(&w), nft_wire::checksum::verify(&w));
            prop_assert!(header20_ok(&w));
            let same = [fill; 20];
            prop_assert_eq!(header20_ok(&same), nft_wire::checksum::verify(&same));
        }
    }

    #[test]
    fn all_zero_and_all_ones_headers() {
        for w in [[0u8; 20], [0xff; 20]] {
            assert_eq!(header20_ok(&w), nft_wire::checksum::verify(&w), "{w:?}");
        }
    }
}
