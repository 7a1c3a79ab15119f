//! What nft knows about protocols and keys: payload header fields (src/proto.c), extension
//! headers and options (exthdr.c, tcpopt.c, ipopt.c, sctp_chunk.c), meta keys (meta.c) and
//! conntrack keys (ct.c), with their datatypes and sizes.

use crate::datatype::{ByteOrder, Dt};

/// Where a payload offset counts from (nft's `@ll`, `@nh`, `@th`, `@ih`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Base {
    Link,
    Network,
    Transport,
    Inner,
}

/// The layer a protocol sits at, which decides its dependency: link-layer protocols depend on
/// the hook (`ether`), network protocols on an ethertype or `meta nfproto`, transport protocols
/// on `ip protocol`/`ip6 nexthdr`/`meta l4proto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    Link,
    Network,
    Transport,
    /// Inner headers (vxlan, geneve, gre payload).
    Inner,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proto {
    /// nft keyword: `ether`, `vlan`, `arp`, `ip`, `ip6`, `icmp`, `tcp`, `th`, ...
    pub name: &'static str,
    pub layer: Layer,
    /// The number that identifies it one layer below: ethertype for network protocols,
    /// IP protocol number for transport ones. None for `th`, `ether`.
    pub number: Option<u32>,
}

/// A header field: `ip saddr` is Network, offset 96, 32 bits, ipv4_addr, big endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub proto: &'static str,
    pub name: &'static str,
    pub base: Base,
    pub offset: u32,
    pub bits: u32,
    pub dt: Dt,
    pub byteorder: ByteOrder,
    /// Printed in hex although the type is a plain integer (`ip frag-off`, nft's xinteger).
    pub hex: bool,
}

static PROTOCOLS: &[Proto] = &[
    Proto {
        name: "ether",
        layer: Layer::Link,
        number: None,
    },
    Proto {
        name: "vlan",
        layer: Layer::Link,
        number: Some(0x8100),
    },
    Proto {
        name: "arp",
        layer: Layer::Network,
        number: Some(0x0806),
    },
    Proto {
        name: "ip",
        layer: Layer::Network,
        number: Some(0x0800),
    },
    Proto {
        name: "ip6",
        layer: Layer::Network,
        number: Some(0x86dd),
    },
    Proto {
        name: "icmp",
        layer: Layer::Transport,
        number: Some(1),
    },
    Proto {
        name: "igmp",
        layer: Layer::Transport,
        number: Some(2),
    },
    Proto {
        name: "icmpv6",
        layer: Layer::Transport,
        number: Some(58),
    },
    Proto {
        name: "tcp",
        layer: Layer::Transport,
        number: Some(6),
    },
    Proto {
        name: "udp",
        layer: Layer::Transport,
        number: Some(17),
    },
    Proto {
        name: "udplite",
        layer: Layer::Transport,
        number: Some(136),
    },
    Proto {
        name: "sctp",
        layer: Layer::Transport,
        number: Some(132),
    },
    Proto {
        name: "dccp",
        layer: Layer::Transport,
        number: Some(33),
    },
    Proto {
        name: "ah",
        layer: Layer::Transport,
        number: Some(51),
    },
    Proto {
        name: "esp",
        layer: Layer::Transport,
        number: Some(50),
    },
    Proto {
        name: "comp",
        layer: Layer::Transport,
        number: Some(108),
    },
    Proto {
        name: "gre",
        layer: Layer::Transport,
        number: Some(47),
    },
    Proto {
        name: "gretap",
        layer: Layer::Transport,
        number: Some(47),
    },
    Proto {
        name: "th",
        layer: Layer::Transport,
        number: None,
    },
    // Tunnel headers found by udp port (vxlan 4789, geneve 6081) and matched with `vxlan ...`.
    Proto {
        name: "vxlan",
        layer: Layer::Inner,
        number: None,
    },
    Proto {
        name: "geneve",
        layer: Layer::Inner,
        number: None,
    },
];

/// Protocols that carry another header nft can match (`vxlan ip saddr`).
pub fn is_tunnel(name: &str) -> bool {
    matches!(name, "vxlan" | "geneve" | "gre" | "gretap")
}

/// Splits an inner-header protocol (`vxlan ip`) into the tunnel and the inner protocol.
pub fn split_inner(proto: &str) -> Option<(&str, &str)> {
    proto.split_once(' ').filter(|(t, _)| is_tunnel(t))
}

/// Whether a tunnel can carry `inner`: GRE carries network packets only, the others
/// (gretap, vxlan, geneve) whole Ethernet frames.
pub fn tunnel_carries(tunnel: &str, inner: &str) -> bool {
    match inner {
        "ether" | "vlan" | "arp" => tunnel != "gre",
        "ip" | "ip6" | "icmp" | "icmpv6" | "igmp" | "tcp" | "udp" | "udplite" | "sctp" | "dccp"
        | "th" | "ah" | "esp" | "comp" => true,
        _ => false,
    }
}

/// The UDP port a tunnel is found on, which a rule must match before reaching into it.
pub fn tunnel_udp_port(tunnel: &str) -> Option<u16> {
    match tunnel {
        "vxlan" => Some(4789),
        "geneve" => Some(6081),
        _ => None,
    }
}

pub fn protocol(name: &str) -> Option<&'static Proto> {
    PROTOCOLS.iter().find(|p| p.name == name)
}

/// Size of a link-layer header in bits, which the evaluator adds to the offsets of the
/// headers stacked after it (a `vlan` field is at 112 + its offset in an Ethernet frame).
pub fn header_bits(proto: &str) -> Option<u32> {
    match proto {
        "ether" => Some(112),
        "vlan" => Some(32),
        _ => None,
    }
}

/// The upper-layer protocol carried by `proto` with identifier `num` (ethertype below a link
/// protocol, `nfproto` below `inet`, IP protocol below ip/ip6), as nft's protocol links.
pub fn upper_protocol(proto: &str, num: u32) -> Option<&'static Proto> {
    let name = match proto {
        "ether" | "vlan" | "netdev" | "vxlan" | "geneve" => match num {
            0x0800 => "ip",
            0x0806 => "arp",
            0x86dd => "ip6",
            0x8100 | 0x88a8 => "vlan",
            _ => return None,
        },
        "inet" => match num {
            2 => "ip",
            10 => "ip6",
            _ => return None,
        },
        "ip" | "ip6" | "inet-service" => match num {
            1 => "icmp",
            2 => "igmp",
            58 => "icmpv6",
            6 => "tcp",
            17 => "udp",
            136 => "udplite",
            132 => "sctp",
            33 => "dccp",
            51 => "ah",
            50 => "esp",
            108 => "comp",
            47 => "gre",
            _ => return None,
        },
        _ => return None,
    };
    protocol(name)
}

const fn f(
    proto: &'static str,
    name: &'static str,
    base: Base,
    offset: u32,
    bits: u32,
    dt: Dt,
) -> Field {
    Field {
        proto,
        name,
        base,
        offset,
        bits,
        dt,
        byteorder: ByteOrder::Big,
        hex: false,
    }
}

const fn ll(p: &'static str, n: &'static str, o: u32, b: u32, dt: Dt) -> Field {
    f(p, n, Base::Link, o, b, dt)
}

const fn nh(p: &'static str, n: &'static str, o: u32, b: u32, dt: Dt) -> Field {
    f(p, n, Base::Network, o, b, dt)
}

const fn th(p: &'static str, n: &'static str, o: u32, b: u32, dt: Dt) -> Field {
    f(p, n, Base::Transport, o, b, dt)
}

const fn ih(p: &'static str, n: &'static str, o: u32, b: u32, dt: Dt) -> Field {
    f(p, n, Base::Inner, o, b, dt)
}

const fn hex(mut field: Field) -> Field {
    field.hex = true;
    field
}

use Dt::*;

/// Header fields in nft's template order per protocol. Offsets count from the start of the
/// protocol's own header; for `vlan` add the Ethernet header (see `header_bits`).
static FIELDS: &[Field] = &[
    ll("ether", "daddr", 0, 48, EtherAddr),
    ll("ether", "saddr", 48, 48, EtherAddr),
    ll("ether", "type", 96, 16, EtherType),
    ll("vlan", "pcp", 0, 3, Integer),
    ll("vlan", "dei", 3, 1, Integer),
    ll("vlan", "cfi", 3, 1, Integer),
    ll("vlan", "id", 4, 12, Integer),
    ll("vlan", "type", 16, 16, EtherType),
    nh("arp", "htype", 0, 16, Integer),
    nh("arp", "ptype", 16, 16, EtherType),
    nh("arp", "hlen", 32, 8, Integer),
    nh("arp", "plen", 40, 8, Integer),
    nh("arp", "operation", 48, 16, ArpOp),
    nh("arp", "saddr ether", 64, 48, EtherAddr),
    nh("arp", "saddr ip", 112, 32, Ipv4Addr),
    nh("arp", "daddr ether", 144, 48, EtherAddr),
    nh("arp", "daddr ip", 192, 32, Ipv4Addr),
    nh("ip", "version", 0, 4, Integer),
    nh("ip", "hdrlength", 4, 4, Integer),
    nh("ip", "dscp", 8, 6, Dscp),
    nh("ip", "ecn", 14, 2, Ecn),
    nh("ip", "length", 16, 16, Integer),
    nh("ip", "id", 32, 16, Integer),
    hex(nh("ip", "frag-off", 48, 16, Integer)),
    nh("ip", "ttl", 64, 8, Integer),
    nh("ip", "protocol", 72, 8, InetProto),
    nh("ip", "checksum", 80, 16, Integer),
    nh("ip", "saddr", 96, 32, Ipv4Addr),
    nh("ip", "daddr", 128, 32, Ipv4Addr),
    nh("ip6", "version", 0, 4, Integer),
    nh("ip6", "dscp", 4, 6, Dscp),
    nh("ip6", "ecn", 10, 2, Ecn),
    nh("ip6", "flowlabel", 12, 20, Integer),
    nh("ip6", "length", 32, 16, Integer),
    nh("ip6", "nexthdr", 48, 8, InetProto),
    nh("ip6", "hoplimit", 56, 8, Integer),
    nh("ip6", "saddr", 64, 128, Ipv6Addr),
    nh("ip6", "daddr", 192, 128, Ipv6Addr),
    th("icmp", "type", 0, 8, IcmpType),
    th("icmp", "code", 8, 8, IcmpCode),
    th("icmp", "checksum", 16, 16, Integer),
    th("icmp", "id", 32, 16, Integer),
    th("icmp", "sequence", 48, 16, Integer),
    th("icmp", "gateway", 32, 32, Integer),
    th("icmp", "mtu", 48, 16, Integer),
    th("igmp", "type", 0, 8, IgmpType),
    th("igmp", "mrt", 8, 8, Integer),
    th("igmp", "checksum", 16, 16, Integer),
    th("igmp", "group", 32, 32, Integer),
    th("icmpv6", "type", 0, 8, Icmp6Type),
    th("icmpv6", "code", 8, 8, Icmp6Code),
    th("icmpv6", "checksum", 16, 16, Integer),
    th("icmpv6", "parameter-problem", 32, 32, Integer),
    th("icmpv6", "mtu", 32, 32, Integer),
    th("icmpv6", "id", 32, 16, Integer),
    th("icmpv6", "sequence", 48, 16, Integer),
    th("icmpv6", "max-delay", 32, 16, Integer),
    th("icmpv6", "taddr", 64, 128, Ipv6Addr),
    th("icmpv6", "daddr", 192, 128, Ipv6Addr),
    th("tcp", "sport", 0, 16, InetService),
    th("tcp", "dport", 16, 16, InetService),
    th("tcp", "sequence", 32, 32, Integer),
    th("tcp", "ackseq", 64, 32, Integer),
    th("tcp", "doff", 96, 4, Integer),
    th("tcp", "reserved", 100, 4, Integer),
    th("tcp", "flags", 104, 8, TcpFlag),
    th("tcp", "window", 112, 16, Integer),
    th("tcp", "checksum", 128, 16, Integer),
    th("tcp", "urgptr", 144, 16, Integer),
    th("udp", "sport", 0, 16, InetService),
    th("udp", "dport", 16, 16, InetService),
    th("udp", "length", 32, 16, Integer),
    th("udp", "checksum", 48, 16, Integer),
    th("udplite", "sport", 0, 16, InetService),
    th("udplite", "dport", 16, 16, InetService),
    th("udplite", "csumcov", 32, 16, Integer),
    th("udplite", "checksum", 48, 16, Integer),
    th("sctp", "sport", 0, 16, InetService),
    th("sctp", "dport", 16, 16, InetService),
    th("sctp", "vtag", 32, 32, Integer),
    th("sctp", "checksum", 64, 32, Integer),
    th("dccp", "sport", 0, 16, InetService),
    th("dccp", "dport", 16, 16, InetService),
    th("dccp", "type", 67, 4, DccpPktType),
    th("ah", "nexthdr", 0, 8, InetProto),
    th("ah", "hdrlength", 8, 8, Integer),
    th("ah", "reserved", 16, 16, Integer),
    th("ah", "spi", 32, 32, Integer),
    th("ah", "sequence", 64, 32, Integer),
    th("esp", "spi", 0, 32, Integer),
    th("esp", "sequence", 32, 32, Integer),
    th("comp", "nexthdr", 0, 8, InetProto),
    th("comp", "flags", 8, 8, Bitmask),
    th("comp", "cpi", 16, 16, Integer),
    th("gre", "flags", 0, 5, Integer),
    th("gre", "version", 13, 3, Integer),
    th("gre", "protocol", 16, 16, EtherType),
    th("th", "sport", 0, 16, InetService),
    th("th", "dport", 16, 16, InetService),
    ih("vxlan", "flags", 0, 8, Bitmask),
    ih("vxlan", "vni", 32, 24, Integer),
    ih("geneve", "type", 16, 16, EtherType),
    ih("geneve", "vni", 32, 24, Integer),
];

pub fn payload_field(proto: &str, field: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|f| f.proto == proto && f.name == field)
}

/// All fields of a protocol, in nft's template order.
pub fn payload_fields(proto: &str) -> impl Iterator<Item = &'static Field> + '_ {
    FIELDS.iter().filter(move |f| f.proto == proto)
}

/// The field a raw payload load matches (`@nh,96,32` is `ip saddr` once ip is known), as
/// nft's delinearizer names loads.
pub fn payload_field_at(proto: &str, offset: u32, bits: u32) -> Option<&'static Field> {
    payload_fields(proto).find(|f| f.offset == offset && f.bits == bits)
}

/// IPv6 extension headers: keyword and the next-header number that identifies them.
static EXTHDRS: &[(&str, u8)] = &[
    ("hbh", 0),
    ("rt", 43),
    ("rt0", 43),
    ("rt2", 43),
    ("srh", 43),
    ("frag", 44),
    ("dst", 60),
    ("mh", 135),
];

/// The next-header number of an IPv6 extension header keyword (`exthdr frag exists`).
pub fn exthdr_type(hdr: &str) -> Option<u8> {
    EXTHDRS.iter().find(|(n, _)| *n == hdr).map(|(_, t)| *t)
}

static EXTHDR_FIELDS: &[Field] = &[
    nh("hbh", "nexthdr", 0, 8, InetProto),
    nh("hbh", "hdrlength", 8, 8, Integer),
    nh("rt", "nexthdr", 0, 8, InetProto),
    nh("rt", "hdrlength", 8, 8, Integer),
    nh("rt", "type", 16, 8, Integer),
    nh("rt", "seg-left", 24, 8, Integer),
    nh("rt0", "reserved", 32, 32, Integer),
    nh("rt2", "reserved", 32, 32, Integer),
    nh("rt2", "addr", 64, 128, Ipv6Addr),
    nh("srh", "last-entry", 32, 8, Integer),
    nh("srh", "flags", 40, 8, Integer),
    nh("srh", "tag", 48, 16, Integer),
    nh("frag", "nexthdr", 0, 8, InetProto),
    nh("frag", "reserved", 8, 8, Integer),
    nh("frag", "frag-off", 16, 13, Integer),
    nh("frag", "reserved2", 29, 2, Integer),
    nh("frag", "more-fragments", 31, 1, Integer),
    nh("frag", "id", 32, 32, Integer),
    nh("dst", "nexthdr", 0, 8, InetProto),
    nh("dst", "hdrlength", 8, 8, Integer),
    nh("mh", "nexthdr", 0, 8, InetProto),
    nh("mh", "hdrlength", 8, 8, Integer),
    nh("mh", "type", 16, 8, MhType),
    nh("mh", "reserved", 24, 8, Integer),
    nh("mh", "checksum", 32, 16, Integer),
];

/// A field of an IPv6 extension header (`exthdr frag more-fragments`, `rt0 addr[2]`,
/// `srh sid[1]`). Offsets count from the start of the extension header.
pub fn exthdr_field(hdr: &str, field: &str) -> Option<Field> {
    if let Some(f) = EXTHDR_FIELDS
        .iter()
        .find(|f| f.proto == hdr && f.name == field)
    {
        return Some(*f);
    }
    // Address lists: the n-th address (from 1) follows the 8-byte fixed part.
    let (proto, name, prefix) = match hdr {
        "rt0" => ("rt0", "addr", "addr["),
        "srh" => ("srh", "sid", "sid["),
        _ => return None,
    };
    let n: u32 = field
        .strip_prefix(prefix)?
        .strip_suffix(']')?
        .parse()
        .ok()?;
    if n == 0 || n > 128 {
        return None;
    }
    Some(nh(proto, name, 64 + (n - 1) * 128, 128, Ipv6Addr))
}

/// TCP options: keyword and kind. `sack0`..`sack3` name the n-th SACK block.
static TCPOPTS: &[(&str, u8)] = &[
    ("eol", 0),
    ("nop", 1),
    ("maxseg", 2),
    ("window", 3),
    ("sack-perm", 4),
    ("sack", 5),
    ("sack0", 5),
    ("sack1", 5),
    ("sack2", 5),
    ("sack3", 5),
    ("timestamp", 8),
    ("md5sig", 19),
    ("mptcp", 30),
    ("fastopen", 34),
];

/// The kind number of a TCP option keyword (`tcp option sack-perm exists`); older spellings
/// are accepted.
pub fn tcpopt_kind(opt: &str) -> Option<u8> {
    let opt = match opt {
        "mss" => "maxseg",
        "sack-permitted" => "sack-perm",
        "ts" => "timestamp",
        o => o,
    };
    TCPOPTS.iter().find(|(n, _)| *n == opt).map(|(_, k)| *k)
}

/// The keyword nft prints for a TCP option kind.
pub fn tcpopt_name(kind: u8) -> Option<&'static str> {
    TCPOPTS.iter().find(|(_, k)| *k == kind).map(|(n, _)| *n)
}

/// A field of a TCP option (`tcp option maxseg size`), offset from the option's kind byte.
/// Every option has `kind`; all but eol and nop have `length`.
pub fn tcpopt_field(opt: &str, field: &str) -> Option<Field> {
    let kind = tcpopt_kind(opt)?;
    let name = tcpopt_name(kind)?;
    let t = |n: &'static str, o: u32, b: u32| Some(th(name, n, o, b, Integer));
    match (field, kind) {
        ("kind", _) => t("kind", 0, 8),
        ("length", 0 | 1) => None,
        ("length", _) => t("length", 8, 8),
        ("size", 2) => t("size", 16, 16),
        ("count", 3) => t("count", 16, 8),
        ("left" | "right", 5) => {
            let (proto, block) = match opt {
                "sack1" => ("sack1", 1),
                "sack2" => ("sack2", 2),
                "sack3" => ("sack3", 3),
                "sack0" => ("sack0", 0),
                _ => ("sack", 0),
            };
            let (n, right) = if field == "left" {
                ("left", 0)
            } else {
                ("right", 32)
            };
            Some(th(proto, n, 16 + block * 64 + right, 32, Integer))
        }
        ("tsval", 8) => t("tsval", 16, 32),
        ("tsecr", 8) => t("tsecr", 48, 32),
        ("subtype", 30) => Some(th(name, "subtype", 16, 4, Dt::MptcpSubtype)),
        _ => None,
    }
}

/// IPv4 options nft knows: keyword and option type.
static IPOPTS: &[(&str, u8)] = &[("lsrr", 131), ("rr", 7), ("ssrr", 137), ("ra", 148)];

pub fn ipopt_type(opt: &str) -> Option<u8> {
    IPOPTS.iter().find(|(n, _)| *n == opt).map(|(_, t)| *t)
}

/// A field of an IPv4 option (`ip option rr addr`), offset from the option's type byte.
pub fn ipopt_field(opt: &str, field: &str) -> Option<Field> {
    let (name, ty) = IPOPTS.iter().find(|(n, _)| *n == opt).copied()?;
    let t = |n: &'static str, o: u32, b: u32, dt: Dt| Some(nh(name, n, o, b, dt));
    match (field, ty) {
        ("type", _) => t("type", 0, 8, Integer),
        ("length", _) => t("length", 8, 8, Integer),
        ("value", 148) => t("value", 16, 16, Integer),
        ("ptr", 131 | 7 | 137) => t("ptr", 16, 8, Integer),
        ("addr", 131 | 7 | 137) => t("addr", 24, 32, Ipv4Addr),
        _ => None,
    }
}

/// SCTP chunk types by nft keyword.
static SCTP_CHUNKS: &[(&str, u8)] = &[
    ("data", 0),
    ("init", 1),
    ("init-ack", 2),
    ("sack", 3),
    ("heartbeat", 4),
    ("heartbeat-ack", 5),
    ("abort", 6),
    ("shutdown", 7),
    ("shutdown-ack", 8),
    ("error", 9),
    ("cookie-echo", 10),
    ("cookie-ack", 11),
    ("ecne", 12),
    ("cwr", 13),
    ("shutdown-complete", 14),
    ("asconf-ack", 128),
    ("forward-tsn", 192),
    ("asconf", 193),
];

pub fn sctp_chunk_type(chunk: &str) -> Option<u8> {
    SCTP_CHUNKS
        .iter()
        .find(|(n, _)| *n == chunk)
        .map(|(_, t)| *t)
}

/// A field of an SCTP chunk (`sctp chunk init num-inbound-streams`), offset from the chunk
/// header. Every chunk has `type`, `flags` and `length`.
pub fn sctp_chunk_field(chunk: &str, field: &str) -> Option<Field> {
    let (name, ty) = SCTP_CHUNKS.iter().find(|(n, _)| *n == chunk).copied()?;
    let t = |n: &'static str, o: u32, b: u32| Some(th(name, n, o, b, Integer));
    match (field, ty) {
        ("type", _) => t("type", 0, 8),
        ("flags", _) => t("flags", 8, 8),
        ("length", _) => t("length", 16, 16),
        ("tsn", 0) => t("tsn", 32, 32),
        ("stream", 0) => t("stream", 64, 16),
        ("ssn", 0) => t("ssn", 80, 16),
        ("ppid", 0) => t("ppid", 96, 32),
        ("init-tag", 1 | 2) => t("init-tag", 32, 32),
        ("a-rwnd", 1 | 2) => t("a-rwnd", 64, 32),
        ("num-outbound-streams", 1 | 2) => t("num-outbound-streams", 96, 16),
        ("num-inbound-streams", 1 | 2) => t("num-inbound-streams", 112, 16),
        ("initial-tsn", 1 | 2) => t("initial-tsn", 128, 32),
        ("cum-tsn-ack", 3 | 7) => t("cum-tsn-ack", 32, 32),
        ("a-rwnd", 3) => t("a-rwnd", 64, 32),
        ("num-gap-ack-blocks", 3) => t("num-gap-ack-blocks", 96, 16),
        ("num-dup-tsns", 3) => t("num-dup-tsns", 112, 16),
        ("lowest-tsn", 12 | 13) => t("lowest-tsn", 32, 32),
        ("seqno", 128 | 193) => t("seqno", 32, 32),
        ("new-cum-tsn", 192) => t("new-cum-tsn", 32, 32),
        _ => None,
    }
}

/// A meta key (`meta mark`, `iifname`, `meta l4proto`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaKey {
    pub name: &'static str,
    pub dt: Dt,
    pub bits: u32,
    pub byteorder: ByteOrder,
    /// Printed without the `meta` keyword (`iif`, `oifname`, ...).
    pub unqualified: bool,
}

const fn mk(name: &'static str, dt: Dt, bits: u32, byteorder: ByteOrder) -> MetaKey {
    MetaKey {
        name,
        dt,
        bits,
        byteorder,
        unqualified: false,
    }
}

const fn bare(name: &'static str, dt: Dt, bits: u32) -> MetaKey {
    MetaKey {
        name,
        dt,
        bits,
        byteorder: ByteOrder::Host,
        unqualified: true,
    }
}

const H: ByteOrder = ByteOrder::Host;
const B: ByteOrder = ByteOrder::Big;

/// Meta keys in the kernel's key order (NFT_META_*).
static META_KEYS: &[MetaKey] = &[
    mk("length", Integer, 32, H),
    mk("protocol", EtherType, 16, B),
    mk("priority", ClassId, 32, H),
    mk("mark", Mark, 32, H),
    bare("iif", IfIndex, 32),
    bare("oif", IfIndex, 32),
    bare("iifname", IfName, 128),
    bare("oifname", IfName, 128),
    mk("iiftype", ArpHrd, 16, H),
    mk("oiftype", ArpHrd, 16, H),
    mk("skuid", Uid, 32, H),
    mk("skgid", Gid, 32, H),
    mk("nftrace", Integer, 1, H),
    mk("rtclassid", Realm, 32, H),
    mk("secmark", Integer, 32, H),
    mk("nfproto", NfProto, 8, H),
    mk("l4proto", InetProto, 8, H),
    mk("ibrname", IfName, 128, H),
    mk("obrname", IfName, 128, H),
    mk("pkttype", PktType, 8, H),
    mk("cpu", Integer, 32, H),
    bare("iifgroup", DevGroup, 32),
    bare("oifgroup", DevGroup, 32),
    mk("cgroup", Integer, 32, H),
    // Random numbers have no byte order; nft loads them big endian to skip a conversion.
    mk("random", Integer, 32, B),
    mk("ipsec", Boolean, 8, H),
    mk("iifkind", IfName, 128, H),
    mk("oifkind", IfName, 128, H),
    mk("ibrpvid", Integer, 16, H),
    mk("ibrvproto", EtherType, 16, B),
    mk("time", Date, 64, H),
    mk("day", Day, 8, H),
    mk("hour", Hour, 32, H),
    mk("sdif", IfIndex, 32, H),
    mk("sdifname", IfName, 128, H),
    mk("broute", Integer, 1, H),
    mk("ibrhwaddr", EtherAddr, 48, B),
];

pub fn meta_key(name: &str) -> Option<&'static MetaKey> {
    // Older names nft still accepts and prints under the new one.
    let name = match name {
        "secpath" => "ipsec",
        "ibriport" => "ibrname",
        "obriport" => "obrname",
        n => n,
    };
    META_KEYS.iter().find(|k| k.name == name)
}

/// All meta keys, for error messages that list the known ones.
pub fn meta_keys() -> &'static [MetaKey] {
    META_KEYS
}

/// Whether a conntrack key takes a direction (`ct original saddr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtDirUse {
    /// `ct state`: never with a direction.
    None,
    /// `ct bytes`, `ct packets`, `ct zone`: with or without.
    Optional,
    /// `ct saddr`, `ct proto-src`: only with a direction.
    Required,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtKey {
    pub name: &'static str,
    pub dt: Dt,
    /// 0 where the size depends on the family (`ct original saddr`).
    pub bits: u32,
    pub byteorder: ByteOrder,
    pub dir: CtDirUse,
}

const fn ck(name: &'static str, dt: Dt, bits: u32, byteorder: ByteOrder, dir: CtDirUse) -> CtKey {
    CtKey {
        name,
        dt,
        bits,
        byteorder,
        dir,
    }
}

use CtDirUse::{None as NoDir, Optional, Required};

/// Conntrack keys in the kernel's key order (NFT_CT_*).
static CT_KEYS: &[CtKey] = &[
    ck("state", CtState, 32, H, NoDir),
    ck("direction", CtDir, 8, H, NoDir),
    ck("status", CtStatus, 32, H, NoDir),
    ck("mark", Mark, 32, H, NoDir),
    ck("secmark", Integer, 32, H, NoDir),
    ck("expiration", Time, 32, H, NoDir),
    ck("helper", String, 128, H, NoDir),
    ck("l3proto", NfProto, 8, H, Optional),
    ck("saddr", Invalid, 0, B, Required),
    ck("daddr", Invalid, 0, B, Required),
    ck("protocol", InetProto, 8, B, Optional),
    ck("proto-src", InetService, 16, B, Required),
    ck("proto-dst", InetService, 16, B, Required),
    ck("label", CtLabel, 128, H, NoDir),
    ck("bytes", Integer, 64, H, Optional),
    ck("packets", Integer, 64, H, Optional),
    ck("avgpkt", Integer, 64, H, Optional),
    ck("zone", Integer, 16, H, Optional),
    ck("event", CtEventBit, 32, H, NoDir),
    ck("ip saddr", Ipv4Addr, 32, B, Required),
    ck("ip daddr", Ipv4Addr, 32, B, Required),
    ck("ip6 saddr", Ipv6Addr, 128, B, Required),
    ck("ip6 daddr", Ipv6Addr, 128, B, Required),
    ck("id", CtId, 32, B, NoDir),
];

pub fn ct_key(name: &str) -> Option<&'static CtKey> {
    CT_KEYS.iter().find(|k| k.name == name)
}

/// The family-specific key a `ct saddr`/`ct daddr` becomes once the network protocol is
/// known (`ct original saddr` under `meta nfproto ipv4` lists as `ct original ip saddr`).
pub fn ct_addr_key(name: &str, network: &str) -> Option<&'static CtKey> {
    match (name, network) {
        ("saddr", "ip") => ct_key("ip saddr"),
        ("daddr", "ip") => ct_key("ip daddr"),
        ("saddr", "ip6") => ct_key("ip6 saddr"),
        ("daddr", "ip6") => ct_key("ip6 daddr"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(p: &str, n: &str) -> (Base, u32, u32, Dt) {
        let f = payload_field(p, n).unwrap_or_else(|| panic!("{p} {n}"));
        (f.base, f.offset, f.bits, f.dt)
    }

    #[test]
    fn protocols_and_numbers() {
        assert_eq!(
            protocol("ip").map(|p| (p.layer, p.number)),
            Some((Layer::Network, Some(0x0800)))
        );
        assert_eq!(protocol("tcp").and_then(|p| p.number), Some(6));
        assert_eq!(protocol("icmpv6").and_then(|p| p.number), Some(58));
        assert_eq!(protocol("th").map(|p| p.number), Some(None));
        assert_eq!(protocol("vlan").map(|p| p.layer), Some(Layer::Link));
        assert!(protocol("foo").is_none());
        assert_eq!(upper_protocol("ether", 0x86dd).map(|p| p.name), Some("ip6"));
        assert_eq!(upper_protocol("ip", 17).map(|p| p.name), Some("udp"));
        assert_eq!(upper_protocol("inet", 10).map(|p| p.name), Some("ip6"));
        assert!(upper_protocol("ip", 200).is_none());
        // Every field names a known protocol.
        for f in FIELDS {
            assert!(protocol(f.proto).is_some(), "{}", f.proto);
        }
    }

    #[test]
    fn header_fields() {
        assert_eq!(at("ip", "saddr"), (Base::Network, 96, 32, Dt::Ipv4Addr));
        assert_eq!(at("ip", "daddr"), (Base::Network, 128, 32, Dt::Ipv4Addr));
        assert_eq!(at("ip", "dscp"), (Base::Network, 8, 6, Dt::Dscp));
        assert_eq!(at("ip", "protocol"), (Base::Network, 72, 8, Dt::InetProto));
        assert!(payload_field("ip", "frag-off").is_some_and(|f| f.hex));
        assert_eq!(at("ip6", "flowlabel"), (Base::Network, 12, 20, Dt::Integer));
        assert_eq!(at("ip6", "dscp"), (Base::Network, 4, 6, Dt::Dscp));
        assert_eq!(at("ip6", "daddr"), (Base::Network, 192, 128, Dt::Ipv6Addr));
        assert_eq!(at("tcp", "flags"), (Base::Transport, 104, 8, Dt::TcpFlag));
        assert_eq!(
            at("tcp", "dport"),
            (Base::Transport, 16, 16, Dt::InetService)
        );
        assert_eq!(
            at("th", "dport"),
            (Base::Transport, 16, 16, Dt::InetService)
        );
        assert_eq!(at("icmp", "type"), (Base::Transport, 0, 8, Dt::IcmpType));
        assert_eq!(at("icmpv6", "mtu"), (Base::Transport, 32, 32, Dt::Integer));
        assert_eq!(
            at("icmpv6", "daddr"),
            (Base::Transport, 192, 128, Dt::Ipv6Addr)
        );
        assert_eq!(at("ether", "saddr"), (Base::Link, 48, 48, Dt::EtherAddr));
        assert_eq!(at("ether", "type"), (Base::Link, 96, 16, Dt::EtherType));
        assert_eq!(at("vlan", "id"), (Base::Link, 4, 12, Dt::Integer));
        assert_eq!(header_bits("ether").unwrap() + at("vlan", "id").1, 116);
        assert_eq!(
            at("arp", "saddr ip"),
            (Base::Network, 112, 32, Dt::Ipv4Addr)
        );
        assert_eq!(
            at("dccp", "type"),
            (Base::Transport, 67, 4, Dt::DccpPktType)
        );
        assert_eq!(at("vxlan", "vni"), (Base::Inner, 32, 24, Dt::Integer));
        assert_eq!(
            payload_field_at("ip", 96, 32).map(|f| f.name),
            Some("saddr")
        );
        assert!(payload_field("tcp", "nosuch").is_none());
    }

    #[test]
    fn extension_headers_and_options() {
        assert_eq!(exthdr_type("frag"), Some(44));
        let f = exthdr_field("frag", "more-fragments").unwrap();
        assert_eq!((f.offset, f.bits), (31, 1));
        let f = exthdr_field("rt0", "addr[2]").unwrap();
        assert_eq!((f.offset, f.bits, f.dt), (192, 128, Dt::Ipv6Addr));
        let f = exthdr_field("srh", "sid[1]").unwrap();
        assert_eq!((f.offset, f.bits), (64, 128));
        assert!(exthdr_field("rt0", "addr[0]").is_none());
        assert!(exthdr_field("rt0", "addr[x]").is_none());
        assert_eq!(exthdr_field("mh", "type").map(|f| f.dt), Some(Dt::MhType));

        assert_eq!(tcpopt_kind("maxseg"), Some(2));
        assert_eq!(tcpopt_kind("mss"), Some(2));
        let f = tcpopt_field("maxseg", "size").unwrap();
        assert_eq!((f.offset, f.bits), (16, 16));
        let f = tcpopt_field("sack2", "right").unwrap();
        assert_eq!((f.offset, f.bits), (176, 32));
        let f = tcpopt_field("sack", "left").unwrap();
        assert_eq!((f.offset, f.bits), (16, 32));
        assert_eq!(
            tcpopt_field("timestamp", "tsecr").map(|f| f.offset),
            Some(48)
        );
        assert_eq!(
            tcpopt_field("mptcp", "subtype").map(|f| (f.offset, f.bits)),
            Some((16, 4))
        );
        assert!(tcpopt_field("nop", "length").is_none());
        assert_eq!(tcpopt_field("window", "count").map(|f| f.bits), Some(8));

        assert_eq!(ipopt_type("rr"), Some(7));
        assert_eq!(
            ipopt_field("lsrr", "addr").map(|f| (f.offset, f.dt)),
            Some((24, Dt::Ipv4Addr))
        );
        assert_eq!(ipopt_field("ra", "value").map(|f| f.bits), Some(16));
        assert!(ipopt_field("ra", "addr").is_none());

        assert_eq!(sctp_chunk_type("forward-tsn"), Some(192));
        assert_eq!(
            sctp_chunk_field("init", "num-inbound-streams").map(|f| f.offset),
            Some(112)
        );
        assert_eq!(
            sctp_chunk_field("data", "stream").map(|f| (f.offset, f.bits)),
            Some((64, 16))
        );
        assert!(sctp_chunk_field("abort", "tsn").is_none());
    }

    #[test]
    fn meta_keys_print_as_nft() {
        let k = meta_key("iifname").unwrap();
        assert!(k.unqualified);
        assert_eq!((k.dt, k.bits), (Dt::IfName, 128));
        for bare in ["iif", "oif", "iifname", "oifname", "iifgroup", "oifgroup"] {
            assert!(meta_key(bare).unwrap().unqualified, "{bare}");
        }
        for q in [
            "mark", "l4proto", "nfproto", "skuid", "pkttype", "cpu", "time", "hour", "day",
        ] {
            assert!(!meta_key(q).unwrap().unqualified, "{q}");
        }
        assert_eq!(meta_key("secpath").map(|k| k.name), Some("ipsec"));
        assert_eq!(
            meta_key("protocol").map(|k| (k.dt, k.byteorder)),
            Some((Dt::EtherType, ByteOrder::Big))
        );
        assert_eq!(meta_key("priority").map(|k| k.dt), Some(Dt::ClassId));
        assert_eq!(meta_key("nftrace").map(|k| k.bits), Some(1));
        assert!(meta_key("nosuch").is_none());
    }

    #[test]
    fn ct_keys_and_directions() {
        assert_eq!(
            ct_key("state").map(|k| (k.dt, k.dir)),
            Some((Dt::CtState, CtDirUse::None))
        );
        assert_eq!(
            ct_key("saddr").map(|k| (k.bits, k.dir)),
            Some((0, CtDirUse::Required))
        );
        assert_eq!(ct_key("proto-dst").map(|k| k.dir), Some(CtDirUse::Required));
        assert_eq!(
            ct_key("bytes").map(|k| (k.bits, k.dir)),
            Some((64, CtDirUse::Optional))
        );
        assert_eq!(ct_key("zone").map(|k| k.bits), Some(16));
        assert_eq!(ct_key("expiration").map(|k| k.dt), Some(Dt::Time));
        assert_eq!(ct_key("label").map(|k| k.bits), Some(128));
        assert_eq!(
            ct_addr_key("saddr", "ip6").map(|k| (k.name, k.bits)),
            Some(("ip6 saddr", 128))
        );
        assert!(ct_key("nosuch").is_none());
    }
}
