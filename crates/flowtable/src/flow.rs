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

    /// The words the hash mixes.
    #[inline]
    pub fn words(&self) -> [u64; 5] {
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
        let tail = u64::from(self.sport)
            | u64::from(self.dport) << 16
            | u64::from(self.port) << 32
            | u64::from(self.proto) << 48
            | u64::from(self.v6) << 56;
        [
            w(&self.src, 0),
            w(&self.src, 8),
            w(&self.dst, 0),
            w(&self.dst, 8),
            tail,
        ]
    }
}

/// What the fast path does to a direction's packets besides writing the other key's
/// addresses and ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    pub egress: Egress,
    /// RFC 1624 sum of the changes to the IPv4 header (addresses and the TTL decrement),
    /// folded, not complemented. Unused for IPv6.
    pub ip_delta: u16,
    /// The same for the TCP/UDP checksum (pseudo-header addresses and ports); 0 when NAT
    /// changes nothing, and then the checksum is not touched, as the slow path leaves it.
    pub l4_delta: u16,
    /// Whether the addresses and ports change at all (skips the writes when not).
    pub nat: bool,
    /// `u8::MAX` for none.
    pub dscp: u8,
    pub has_mark: bool,
    pub mark: u32,
}

pub(crate) const CLOSING: u8 = 1 << 0;
pub(crate) const TEARDOWN: u8 = 1 << 1;
/// In the hardware backend.
pub(crate) const HW: u8 = 1 << 2;
/// Pushed to the backend, no answer yet.
pub(crate) const HW_PENDING: u8 = 1 << 3;

/// One flow, both directions. The keys say which fields identify a packet; everything else is
/// the plan and the flow's state.
#[derive(Debug, Clone)]
pub(crate) struct Flow {
    pub key: [Key; 2],
    pub plan: [Plan; 2],
    /// Packets and bytes (of the IP packet) forwarded per direction.
    pub count: [Counter; 2],
    /// What of `count` has been added to the connection already (flowtable `counter`).
    pub synced: [Counter; 2],
    pub conn: ConnId,
    /// Last refresh, in milliseconds of `now`; at most a second stale.
    pub used_ms: u64,
    /// The FIB generation the flow was routed under (low 32 bits: only equality matters).
    pub fib_gen: u32,
    pub ct_mark: Option<u32>,
    pub flags: u8,
}

impl Flow {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}
