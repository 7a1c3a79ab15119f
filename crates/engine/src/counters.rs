//! The router's counters, in the manner of VPP's error counters: every drop has a named reason
//! with its own slot, so a report can say exactly why each packet went nowhere.

use serde::Serialize;
use std::collections::BTreeMap;

use nft_wire::ParseError;

macro_rules! drop_reasons {
    ($( $(#[$m:meta])* $variant:ident = $name:literal ),+ $(,)?) => {
        /// Why the router dropped a packet after it parsed (parse failures count under
        /// [`ParseError::name`]). Each reason has a stable snake_case name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Drop {
            $( $(#[$m])* $variant ),+
        }

        impl Drop {
            pub const ALL: &'static [Drop] = &[$( Drop::$variant ),+];
            pub const COUNT: usize = Self::ALL.len();

            pub const fn name(self) -> &'static str {
                match self { $( Drop::$variant => $name ),+ }
            }

            pub const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

drop_reasons! {
    /// Well-formed but not IPv4/IPv6 (ARP not for us, PPP control, IPv6 neighbour discovery,
    /// other EtherTypes): the kernel's stack keeps those.
    NotIp = "not_ip",
    /// The ingress index names no interface.
    NoInterface = "no_interface",
    /// VLAN tags or PPPoE session that no logical interface on this port owns.
    UnknownEncap = "unknown_encap",
    /// Unicast to another MAC address (PACKET_OTHERHOST).
    OtherHost = "other_host",
    /// The interface is administratively down.
    InterfaceDown = "interface_down",
    /// A fragment overlapping one held for the same datagram: the datagram's fragments go
    /// (RFC 5722), each counted.
    FragOverlap = "frag_overlap",
    /// A fragment lying inside one already held: it goes, the datagram waits.
    FragDuplicate = "frag_duplicate",
    /// A fragment cut short, beyond 64 KiB, contradicting its datagram's end, or (IPv6) not a
    /// multiple of 8 bytes before the last.
    FragMalformed = "frag_malformed",
    /// Fragments of a datagram that did not complete in time (30 s IPv4, 60 s IPv6).
    FragTimeout = "frag_timeout",
    /// Fragments refused because reassembly holds its limit of bytes.
    FragMemory = "frag_memory",
    /// A rule's `drop` (or `reject`, which also sends its answer).
    RuleDrop = "rule_drop",
    /// A base chain's `policy drop`.
    PolicyDrop = "policy_drop",
    /// `queue` without a listener.
    Queue = "queue_no_listener",
    /// At the conntrack limit with nothing to drop early: new connections are refused.
    CtTableFull = "ct_table_full",
    /// The connection's tuple was taken at confirmation.
    CtClash = "ct_clash",
    /// No free tuple left in the NAT range.
    NatExhausted = "nat_exhausted",
    /// NAT could not be set up (no address of the family to masquerade or redirect to, a
    /// range of the wrong family).
    NatFailed = "nat_failed",
    /// A NAT rewrite did not fit the packet.
    RewriteFailed = "rewrite_failed",
    NoRoute = "no_route",
    /// A blackhole route.
    Blackhole = "blackhole",
    /// An unreachable route (answered with ICMP unreachable).
    Unreachable = "unreachable",
    /// A link-layer broadcast or multicast that is not for the router itself.
    NotForwardable = "not_forwardable",
    /// No static neighbour for the next hop (there is no ARP/ND here).
    NoNeighbour = "no_neighbour",
    /// Live mode (`Config::resolve_neighbours`): the frame waited for its next hop's MAC
    /// longer than the kernel tries to resolve it (3 s), or the wait queue was full.
    NeighbourUnresolved = "neighbour_unresolved",
    /// TTL or hop limit ran out (answered with ICMP time exceeded).
    TtlExceeded = "ttl_exceeded",
    /// Bigger than the egress MTU with DF set, or IPv6 (answered with frag-needed or
    /// packet-too-big).
    MtuExceeded = "mtu_exceeded",
    /// Bigger than the egress MTU without DF, and cut into fewer than 8 bytes a fragment (an
    /// MTU too small for the headers).
    NeedsFragmentation = "needs_fragmentation",
    /// Not a drop: netdev `fwd` took the packet out of another interface. Never counted; it
    /// ends the walk the way a drop does.
    Stolen = "stolen",
    /// `synproxy`: the client's ACK carried no valid SYN cookie (wrong, or older than two
    /// minutes).
    SynproxyCookieInvalid = "synproxy_cookie_invalid",
    /// `synproxy`: a TCP segment cut short, with a bad checksum, or an answer that could not
    /// be built.
    SynproxyBadPacket = "synproxy_bad_packet",
    /// `synproxy` in an input chain: the cookie was good, but the server is the router's own
    /// stack, whose answers do not pass through this dataplane (the SYN-ACK is answered, the
    /// connection is not opened).
    SynproxyLocalServer = "synproxy_local_server",
    /// `dup`/`fwd` to an interface the topology does not have, or with no neighbour.
    FwdFailed = "fwd_failed",
    /// netdev `fwd`/`dup`: a frame longer than the egress device takes (its MTU, link header
    /// and a VLAN tag); the kernel's stack hands it over unchecked and the device drops it.
    FrameTooLong = "frame_too_long",
    /// A GSO super-packet for the slow path that could not be cut into its segments (not
    /// TCP or UDP, or headers that do not fit the frame).
    GsoUnsupported = "gso_unsupported",
}

/// Packets and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PacketBytes {
    pub packets: u64,
    pub bytes: u64,
}

impl PacketBytes {
    pub fn add(&mut self, bytes: usize) {
        self.packets += 1;
        self.bytes += bytes as u64;
    }
}

/// Everything the router counts. Fixed arrays for the reasons, so counting costs an index.
#[derive(Debug, Clone)]
pub struct Counters {
    pub rx: Vec<PacketBytes>,
    pub tx: Vec<PacketBytes>,
    pub host: PacketBytes,
    pub parse: [u64; ParseError::COUNT],
    pub drops: [u64; Drop::COUNT],
    /// `ct state invalid` packets by conntrack's reason (they are not dropped unless a rule
    /// says so).
    pub ct_invalid: BTreeMap<&'static str, u64>,
    pub slow_path: u64,
    pub nat_bindings: u64,
    pub nat_packets: u64,
    pub icmp_errors_sent: u64,
    pub tcp_resets_sent: u64,
    /// `synproxy`: SYN-ACKs with a cookie sent, and client ACKs whose cookie was good.
    pub synproxy_synacks_sent: u64,
    pub synproxy_cookies_valid: u64,
    pub arp_replies: u64,
    pub flow_add_requests: u64,
    pub flows_admitted: u64,
    /// `flow add` requests the kernel's admission rules turned down, by reason
    /// ([`crate::admission::NotAdmitted::index`]; the first packet of every UDP flow is
    /// one, so a count is an index, not a map look-up by name).
    pub flows_refused: [u64; crate::admission::NotAdmitted::ALL.len()],
    pub log_lines: u64,
    /// Packets `fwd` sent out and copies `dup` made.
    pub fwd_packets: u64,
    pub dup_packets: u64,
    /// Datagrams reassembled from fragments, and the fragments sent (forwarded datagrams
    /// leave fragmented again).
    pub reassembled: u64,
    pub fragments_sent: u64,
}

impl Counters {
    pub fn new(interfaces: usize) -> Counters {
        Counters {
            rx: vec![PacketBytes::default(); interfaces],
            tx: vec![PacketBytes::default(); interfaces],
            host: PacketBytes::default(),
            parse: [0; ParseError::COUNT],
            drops: [0; Drop::COUNT],
            ct_invalid: BTreeMap::new(),
            slow_path: 0,
            nat_bindings: 0,
            nat_packets: 0,
            icmp_errors_sent: 0,
            tcp_resets_sent: 0,
            synproxy_synacks_sent: 0,
            synproxy_cookies_valid: 0,
            arp_replies: 0,
            flow_add_requests: 0,
            flows_admitted: 0,
            flows_refused: [0; crate::admission::NotAdmitted::ALL.len()],
            log_lines: 0,
            fwd_packets: 0,
            dup_packets: 0,
            reassembled: 0,
            fragments_sent: 0,
        }
    }

    pub fn drop(&mut self, why: Drop) {
        self.drops[why.index()] += 1;
    }

    pub fn dropped(&self, why: Drop) -> u64 {
        self.drops[why.index()]
    }

    pub fn parse_errors(&self, why: ParseError) -> u64 {
        self.parse[why.index()]
    }

    /// Every non-zero drop counter, parse errors included, by name.
    pub fn drop_map(&self) -> BTreeMap<&'static str, u64> {
        let mut m = BTreeMap::new();
        for e in ParseError::ALL {
            if self.parse[e.index()] > 0 {
                m.insert(e.name(), self.parse[e.index()]);
            }
        }
        for d in Drop::ALL {
            if self.drops[d.index()] > 0 {
                m.insert(d.name(), self.drops[d.index()]);
            }
        }
        m
    }

    pub fn total_drops(&self) -> u64 {
        self.parse.iter().sum::<u64>() + self.drops.iter().sum::<u64>()
    }
}

/// Traffic of one interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InterfaceReport {
    pub name: String,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

/// A rule and how many packets matched it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleHits {
    pub table: String,
    pub chain: String,
    pub handle: u64,
    pub rule: String,
    pub hits: u64,
}

/// A snapshot of the router's counters and connection table, for `simulate` to print or
/// serialise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub interfaces: Vec<InterfaceReport>,
    pub host_packets: u64,
    pub host_bytes: u64,
    /// Reason → count, only reasons that happened.
    pub drops: BTreeMap<&'static str, u64>,
    pub slow_path_packets: u64,
    pub fast_path_packets: u64,
    /// Flows admitted into a flowtable so far.
    pub flows_offloaded: u64,
    /// Live flows by state (`active`, `closing`, `teardown`, `hw`).
    pub flows: BTreeMap<String, u64>,
    /// Packets the fast path handed to the slow path, by reason (`miss` included).
    pub fast_path_punts: BTreeMap<&'static str, u64>,
    pub flow_add_requests: u64,
    pub flows_admitted: u64,
    pub flows_refused: BTreeMap<&'static str, u64>,
    pub nat_bindings: u64,
    pub nat_packets: u64,
    pub icmp_errors_sent: u64,
    pub tcp_resets_sent: u64,
    /// `synproxy`: SYN-ACKs with a cookie sent, and client ACKs whose cookie was good.
    pub synproxy_synacks_sent: u64,
    pub synproxy_cookies_valid: u64,
    pub arp_replies: u64,
    pub log_lines: u64,
    /// The `log` statements' lines, in order (up to the router's log capacity).
    pub logs: Vec<String>,
    pub fwd_packets: u64,
    pub dup_packets: u64,
    pub ct_invalid: BTreeMap<&'static str, u64>,
    /// Live connections by state (`tcp established`, `udp assured`, `icmp`, ...).
    pub connections: BTreeMap<String, u64>,
    pub connections_total: u64,
    pub conntrack_new: u64,
    pub conntrack_early_drop: u64,
    pub conntrack_expired: u64,
    /// Taken out by GC near the limit after a refused connection (closing or unreplied
    /// connections, to make room); the kernel counts these nowhere.
    pub conntrack_evicted: u64,
    /// Rules by hits, most first.
    pub top_rules: Vec<RuleHits>,
}
