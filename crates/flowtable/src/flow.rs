//! One offloaded flow (`struct flow_offload`): both directions' keys and the rewrite plan of
//! each, computed once at admission, so the fast path only copies and adds.
//!
//! NAT for a direction is read from the other direction's key, as in the kernel: a packet of
//! direction `d` leaves looking like the inverse of the tuple direction `!d` arrives with.

use nft_conntrack::{ConnId, Counter, Tuple};
use nft_wire::IpAddr;

/// A port (interface) number, as the caller numbers them in [`crate::FrameSlot::port`].
pub type Port = u16;

/// A MAC address.
pub type Mac = [u8; 6];

/// The link encapsulation between the Ethernet header and IP: what a direction pops on ingress
/// and pushes on egress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Encap {
    #[default]
    None,
    /// One 802.1Q tag.
    Vlan(u16),
    /// An 802.1ad outer tag over an 802.1Q inner tag.
    QinQ { outer: u16, inner: u16 },
    /// A PPPoE session (RFC 2516) with its id.
    Pppoe(u16),
}

impl Encap {
    /// The whole link header with this encapsulation: Ethernet, tags, PPPoE and PPP.
    pub const fn header_len(self) -> usize {
        match self {
            Encap::None => 14,
            Encap::Vlan(_) => 18,
            Encap::QinQ { .. } | Encap::Pppoe(_) => 22,
        }
    }

    /// The encapsulation in one word, for a single compare on the fast path: the kind in the
    /// low byte, then the tags or the session.
    #[inline]
    pub const fn bits(self) -> u64 {
        match self {
            Encap::None => 0,
            Encap::Vlan(v) => 1 | (v as u64) << 8,
            Encap::QinQ { outer, inner } => 2 | (outer as u64) << 8 | (inner as u64) << 24,
            Encap::Pppoe(s) => PPPOE_BITS | (s as u64) << 8,
        }
    }

    /// The encapsulation [`bits`](Self::bits) gives.
    pub const fn from_bits(b: u64) -> Encap {
        let (a, c) = ((b >> 8) as u16, (b >> 24) as u16);
        match b & 0xff {
            0 => Encap::None,
            1 => Encap::Vlan(a),
            2 => Encap::QinQ { outer: a, inner: c },
            _ => Encap::Pppoe(a),
        }
    }

    /// The egress link header the fast path writes for this encapsulation: destination and
    /// source MAC, tags or PPPoE session header and PPP protocol, then the IPv4/IPv6 type; the
    /// first [`header_len`](Self::header_len) bytes are used (the PPPoE length is filled in
    /// per packet).
    pub fn link_header(self, dst: [u8; 6], src: [u8; 6], v6: bool) -> [u8; 22] {
        let (ethertype, ppp) = if v6 {
            (0x86dd_u16, 0x0057_u16)
        } else {
            (0x0800, 0x0021)
        };
        let mut h = [0u8; 22];
        h[..6].copy_from_slice(&dst);
        h[6..12].copy_from_slice(&src);
        match self {
            Encap::None => h[12..14].copy_from_slice(&ethertype.to_be_bytes()),
            Encap::Vlan(id) => {
                h[12..14].copy_from_slice(&0x8100_u16.to_be_bytes());
                h[14..16].copy_from_slice(&(id & 0x0fff).to_be_bytes());
                h[16..18].copy_from_slice(&ethertype.to_be_bytes());
            }
            Encap::QinQ { outer, inner } => {
                h[12..14].copy_from_slice(&0x88a8_u16.to_be_bytes());
                h[14..16].copy_from_slice(&(outer & 0x0fff).to_be_bytes());
                h[16..18].copy_from_slice(&0x8100_u16.to_be_bytes());
                h[18..20].copy_from_slice(&(inner & 0x0fff).to_be_bytes());
                h[20..22].copy_from_slice(&ethertype.to_be_bytes());
            }
            Encap::Pppoe(session) => {
                h[12..14].copy_from_slice(&0x8864_u16.to_be_bytes());
                h[14] = 0x11;
                h[16..18].copy_from_slice(&session.to_be_bytes());
                h[20..22].copy_from_slice(&ppp.to_be_bytes());
            }
        }
        h
    }
}

/// The kind of [`Encap::Pppoe`] in [`Encap::bits`].
pub(crate) const PPPOE_BITS: u64 = 3;

/// A MAC address in the low 48 bits of a word (little-endian), as the fast path compares it.
#[inline(always)]
pub(crate) fn mac_bits(m: &Mac) -> u64 {
    u64::from_le_bytes([m[0], m[1], m[2], m[3], m[4], m[5], 0, 0])
}

impl core::fmt::Display for Encap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Encap::None => Ok(()),
            Encap::Vlan(v) => write!(f, " vlan={v}"),
            Encap::QinQ { outer, inner } => write!(f, " qinq={outer}.{inner}"),
            Encap::Pppoe(s) => write!(f, " pppoe=0x{s:04x}"),
        }
    }
}

/// Where one direction's packets leave, as the slow path routed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Egress {
    pub port: Port,
    /// The router's MAC on the egress interface.
    pub src_mac: Mac,
    /// The neighbour's MAC (or the access concentrator's, for PPPoE).
    pub dst_mac: Mac,
    pub encap: Encap,
    /// IP MTU of the egress interface: larger packets go to the slow path.
    pub mtu: u16,
}

/// The path of one direction: where its packets come in and where they leave.
///
/// Routing is taken to be symmetric, as the kernel's flowtable takes it (the reply direction's
/// ingress device is the original direction's output device): a packet of direction `d` must
/// arrive with the encapsulation direction `!d` pushes and addressed to the MAC `!d` sends
/// from, or it goes to the slow path. `ingress` is kept apart because a tagged frame may be
/// delivered on its parent port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Path {
    pub ingress: Port,
    pub egress: Egress,
}

/// Mangles the slow path applied to a direction's packets (`meta mark set`, `ct mark set`,
/// `ip dscp set`), replayed on the fast path so that offloading does not lose them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Mangles {
    /// Given back with each forwarded frame ([`crate::FrameSlot::mark`]).
    pub meta_mark: Option<u32>,
    /// Written to the connection when counters are synced (the value is the connection's, so
    /// replaying it per packet would change nothing more).
    pub ct_mark: Option<u32>,
    /// Six-bit DSCP written into the IP header, ECN kept.
    pub dscp: Option<u8>,
}

/// The lookup key of a direction: the fields that identify its packets. Addresses are kept as
/// 16 bytes (IPv4 mapped) so that both families share one entry layout; `v6` keeps a mapped
/// IPv6 address apart from an IPv4 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub port: Port,
    pub proto: u8,
    pub v6: bool,
}

/// A source and a destination port in wire byte order as the word the fast path compares:
/// the transport header's first four bytes read as one little-endian `u32` (the same on
/// any machine).
#[inline(always)]
pub(crate) fn ports_word(sport: [u8; 2], dport: [u8; 2]) -> u32 {
    u32::from_le_bytes([sport[0], sport[1], dport[0], dport[1]])
}

/// The ports of a [`ports_word`], in host order.
#[inline]
pub(crate) fn ports_of(w: u32) -> (u16, u16) {
    let b = w.to_le_bytes();
    (
        u16::from_be_bytes([b[0], b[1]]),
        u16::from_be_bytes([b[2], b[3]]),
    )
}

pub(crate) fn addr16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
        IpAddr::V6(v) => v.octets(),
    }
}

pub(crate) fn addr_of(b: &[u8; 16], v6: bool) -> IpAddr {
    let a = nft_wire::Ipv6Addr::from(*b);
    if v6 {
        IpAddr::V6(a)
    } else {
        a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4)
    }
}

impl Key {
    pub fn from_tuple(t: &Tuple, port: Port) -> Key {
        Key {
            src: addr16(t.src),
            dst: addr16(t.dst),
            sport: t.sport,
            dport: t.dport,
            port,
            proto: t.proto,
            v6: t.src.is_ipv6(),
        }
    }

    pub fn tuple(&self) -> Tuple {
        Tuple::new(
            addr_of(&self.src, self.v6),
            addr_of(&self.dst, self.v6),
            self.proto,
            self.sport,
            self.dport,
        )
    }

    /// The address words the hash mixes for an IPv6 key.
    #[inline]
    pub fn words(&self) -> [u64; 4] {
        let w = |b: &[u8; 16], i: usize| {
            u64::from_le_bytes([
                b[i],
                b[i + 1],
                b[i + 2],
                b[i + 3],
                b[i + 4],
                b[i + 5],
                b[i + 6],
                b[i + 7],
            ])
        };
        [
            w(&self.src, 0),
            w(&self.src, 8),
            w(&self.dst, 0),
            w(&self.dst, 8),
        ]
    }

    /// Both IPv4 addresses in one word (the mapped prefix is constant).
    #[inline]
    pub fn v4_words(&self) -> u64 {
        let s = &self.src;
        let d = &self.dst;
        u64::from_le_bytes([s[12], s[13], s[14], s[15], d[12], d[13], d[14], d[15]])
    }

    /// [`v4_words`](Self::v4_words) (0 for IPv6) and [`tail`](Self::tail): what an IPv4
    /// look-up hashes and compares.
    #[inline]
    pub fn v4_key(&self) -> [u64; 2] {
        [if self.v6 { 0 } else { self.v4_words() }, self.tail()]
    }

    /// Ports, ingress port, protocol and family in one word. The ports are the transport
    /// header's first four bytes as they lie in the frame ([`ports_word`]), so that the
    /// fast path takes them with one load and no swaps.
    #[inline]
    pub fn tail(&self) -> u64 {
        u64::from(ports_word(
            self.sport.to_be_bytes(),
            self.dport.to_be_bytes(),
        )) | u64::from(self.port) << 32
            | u64::from(self.proto) << 48
            | u64::from(self.v6) << 56
    }
}

/// An egress, shared by every flow that leaves the same way (a router has few interfaces and
/// few next hops), so that a flow's line holds a two-byte index instead: the interface, the
/// next hop's MAC, the encapsulation, the MTU, and the port frames from that next hop arrive
/// on (routing is symmetric: the other direction of a flow comes back through it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Link {
    pub port: Port,
    pub mtu: u16,
    /// The port the next hop's frames arrive on: the ingress of the flows' other direction.
    pub rx_port: Port,
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub encap: Encap,
    /// `encap.header_len()`.
    pub hl: u8,
    /// `src_mac` ([`mac_bits`]) and `encap` ([`Encap::bits`]) with `rx_port`
    /// (`fastpath::l2_word`) as words: what a frame of the other direction must arrive with
    /// (on that port, addressed to us, in our encapsulation).
    pub rx_mac: u64,
    pub rx_l2: u64,
    /// The whole egress link header, ready to copy, for an IPv4 (`[0]`) and an IPv6 (`[1]`)
    /// packet: MACs, tags or PPPoE (its length patched per packet), EtherType or PPP protocol.
    pub header: [[u8; 22]; 2],
}

impl Link {
    pub fn new(e: &Egress, rx_port: Port) -> Link {
        let hl = e.encap.header_len();
        let header = [
            e.encap.link_header(e.dst_mac, e.src_mac, false),
            e.encap.link_header(e.dst_mac, e.src_mac, true),
        ];
        Link {
            port: e.port,
            mtu: e.mtu,
            rx_port,
            src_mac: e.src_mac,
            dst_mac: e.dst_mac,
            encap: e.encap,
            hl: hl as u8,
            rx_mac: mac_bits(&e.src_mac),
            rx_l2: crate::fastpath::l2_word(e.encap.bits(), rx_port),
            header,
        }
    }

    pub fn egress(&self) -> Egress {
        Egress {
            port: self.port,
            src_mac: self.src_mac,
            dst_mac: self.dst_mac,
            encap: self.encap,
            mtu: self.mtu,
        }
    }
}

pub(crate) const CLOSING: u8 = 1 << 0;
pub(crate) const TEARDOWN: u8 = 1 << 1;
/// Routed under another FIB generation than the current one.
pub(crate) const STALE: u8 = 1 << 2;
/// The addresses and ports change (NAT): skips the writes when not.
pub(crate) const NAT: u8 = 1 << 3;
/// An IPv6 flow: addresses are in the cold part, the line's are unused.
pub(crate) const V6: u8 = 1 << 4;
/// `meta mark` to replay (in either direction), in the cold part.
pub(crate) const MARK: u8 = 1 << 5;
/// A DSCP to write (in either direction): the line's `dscp` is read only then.
pub(crate) const DSCP: u8 = 1 << 6;
/// The flags that belong to the flow (all of them, since one line holds both directions).
pub(crate) const FLOW_FLAGS: u8 = CLOSING | TEARDOWN | STALE;

/// In the hardware backend.
pub(crate) const HW: u8 = 1 << 0;
/// Pushed to the backend, no answer yet.
pub(crate) const HW_PENDING: u8 = 1 << 1;

/// Packets counted in a line beyond this are moved to the cold part by GC, so that the
/// line's 32 bits never wrap between two passes.
pub(crate) const FOLD_PACKETS: u32 = 1 << 31;
/// The same for bytes, on the line's high 16 bits.
pub(crate) const FOLD_BYTES_HI: u16 = 1 << 15;

/// One flow, both directions, in one cache line: what a forwarded packet of either direction
/// reads and writes. Direction `d`'s key is `addr[2d]`, `addr[2d + 1]` (IPv4 source and
/// destination), `port[2d]`, `port[2d + 1]`, the protocol and the ingress port (the `rx_port`
/// of the other direction's link); its packets leave as the inverse of the other direction's
/// key, so the rewrite needs nothing more than the checksum deltas. Counters, the refresh
/// time and the flow's state are here too, so a packet never touches the cold part (unless
/// IPv6 or marked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C, align(64))]
pub(crate) struct Hot {
    pub addr: [[u8; 4]; 4],
    /// The ports of both keys in wire byte order (as the frame has them): the look-up
    /// compares them with the frame's bytes and the rewrite copies them, with no swaps.
    pub port: [[u8; 2]; 4],
    /// Since admission, less what GC moved to the cold part ([`FOLD_PACKETS`]).
    pub packets: [u32; 2],
    /// Of the IP packets: low 32 bits, then high 16 (48 bits, less what GC moved).
    pub bytes: [u32; 2],
    pub bytes_hi: [u16; 2],
    /// Low 32 bits of the last refresh in ms.
    pub used: u32,
    /// Each direction's egress, in the table's links.
    pub link: [u16; 2],
    /// RFC 1624 sum of the changes to the IPv4 header (addresses and the TTL decrement),
    /// folded, not complemented, its two bytes in wire order: the one's complement sum does
    /// not depend on byte order (RFC 1071), so the rewrite adds it to the checksum as the
    /// frame holds it, with no swaps. Unused for IPv6.
    pub ip_delta: [[u8; 2]; 2],
    /// The same for the TCP/UDP checksum (pseudo-header addresses and ports); 0 when NAT
    /// changes nothing, and then the checksum is not touched, as the slow path leaves it.
    pub l4_delta: [[u8; 2]; 2],
    pub proto: u8,
    pub flags: u8,
    /// Six-bit DSCP to write, `u8::MAX` for none ([`DSCP`] says whether either has one).
    pub dscp: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<Hot>() == 64);
const _: () = assert!(core::mem::size_of::<Cold>() <= 16);

/// IPv6 addresses of one direction: as it arrives, and as it leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct V6Addrs {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub new_src: [u8; 16],
    pub new_dst: [u8; 16],
}

/// What only the control plane (and IPv6 or marked packets) reads: 16 bytes a flow, the rare
/// parts boxed (the slot's generation and backend state are in vectors of their own, whose
/// 5 bytes would have taken 8 here).
#[derive(Debug, Clone, Default)]
pub(crate) struct Cold {
    /// Marks to replay, IPv6 addresses, counts moved out of the line: only flows that have
    /// them pay for them.
    pub ext: Option<Box<ColdExt>>,
    /// The connection ([`ConnId::to_bits`], never 0); 0: the slot is free.
    pub conn: u64,
}

/// The parts of a flow few flows have.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ColdExt {
    pub ct_mark: Option<u32>,
    pub mark: [Option<u32>; 2],
    pub v6: Option<[V6Addrs; 2]>,
    /// Counts GC moved out of the line (after 2^31 packets or 2^47 bytes).
    pub folded: [Counter; 2],
}

/// When a flow was last refreshed, in ms of `now`, from its line's low 32 bits: exact while
/// flows idle less than the 24 days those bits tell apart, which GC makes sure of. Times
/// ahead of `now_ms` count as `now_ms`.
pub(crate) fn used_ms(h: &Hot, now_ms: u64) -> u64 {
    let d = (now_ms as u32).wrapping_sub(h.used);
    let ago = if d >= 1 << 31 { 0 } else { u64::from(d) };
    now_ms.saturating_sub(ago)
}

impl Hot {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Both IPv4 addresses of direction `d`'s key in one word, as [`Key::v4_words`].
    #[inline(always)]
    pub fn v4_words(&self, d: usize) -> u64 {
        let (s, t) = (self.addr[(2 * d) & 3], self.addr[(2 * d + 1) & 3]);
        u64::from_le_bytes([s[0], s[1], s[2], s[3], t[0], t[1], t[2], t[3]])
    }

    /// Whether a packet's key (ingress port apart) is direction `d`'s. IPv4 keys are whole
    /// in the line; IPv6 addresses are compared in the cold part.
    #[inline(always)]
    pub fn matches(&self, d: usize, k: &Key, v6: Option<&V6Addrs>) -> bool {
        let d = d & 1;
        if u16::from_be_bytes(self.port[2 * d]) != k.sport
            || u16::from_be_bytes(self.port[2 * d + 1]) != k.dport
            || self.proto != k.proto
            || self.has(V6) != k.v6
        {
            return false;
        }
        if k.v6 {
            return v6.is_some_and(|a| a.src == k.src && a.dst == k.dst);
        }
        self.v4_words(d) == k.v4_words()
    }

    /// Whether an IPv4 packet's key words ([`Key::v4_key`]) are direction `d`'s, ingress port
    /// apart: addresses in one compare, ports in another.
    #[inline(always)]
    pub fn matches_v4(&self, d: usize, w: [u64; 2]) -> bool {
        let d = d & 1;
        let ports = ports_word(self.port[2 * d], self.port[2 * d + 1]);
        self.flags & V6 == 0
            && self.v4_words(d) == w[0]
            && ports == w[1] as u32
            && self.proto == (w[1] >> 48) as u8
    }

    /// The key direction `d` is indexed under, arriving on `port`.
    pub fn key(&self, d: usize, port: Port, v6: Option<&V6Addrs>) -> Key {
        let d = d & 1;
        let mut k = Key {
            src: [0; 16],
            dst: [0; 16],
            sport: u16::from_be_bytes(self.port[2 * d]),
            dport: u16::from_be_bytes(self.port[2 * d + 1]),
            port,
            proto: self.proto,
            v6: self.has(V6),
        };
        match v6.filter(|_| k.v6) {
            Some(a) => {
                k.src = a.src;
                k.dst = a.dst;
            }
            None => {
                k.src[10..12].copy_from_slice(&[0xff, 0xff]);
                k.dst[10..12].copy_from_slice(&[0xff, 0xff]);
                k.src[12..].copy_from_slice(&self.addr[2 * d]);
                k.dst[12..].copy_from_slice(&self.addr[2 * d + 1]);
            }
        }
        k
    }

    /// Direction `d`'s packets and bytes still in the line.
    pub fn counter(&self, d: usize) -> Counter {
        let d = d & 1;
        Counter {
            packets: u64::from(self.packets[d]),
            bytes: u64::from(self.bytes_hi[d]) << 32 | u64::from(self.bytes[d]),
        }
    }
}

impl Cold {
    /// Whether the slot holds a flow.
    #[inline]
    pub fn live(&self) -> bool {
        self.conn != 0
    }

    pub fn conn(&self) -> Option<ConnId> {
        (self.conn != 0).then(|| ConnId::from_bits(self.conn))
    }

    /// Direction `d`'s packets and bytes since admission: the line's and what GC moved out.
    pub fn counter(&self, h: &Hot, d: usize) -> Counter {
        let f = self
            .ext
            .as_deref()
            .map_or(Counter::default(), |e| e.folded[d & 1]);
        let l = h.counter(d);
        Counter {
            packets: f.packets.saturating_add(l.packets),
            bytes: f.bytes.saturating_add(l.bytes),
        }
    }

    pub fn v6(&self, d: usize) -> Option<&V6Addrs> {
        self.ext.as_deref()?.v6.as_ref()?.get(d)
    }

    pub fn mark(&self, d: usize) -> Option<u32> {
        self.ext.as_deref().and_then(|e| e.mark[d & 1])
    }

    pub fn ct_mark(&self) -> Option<u32> {
        self.ext.as_deref().and_then(|e| e.ct_mark)
    }
}
