//! Datatypes of nft values: names, sizes, symbol tables, and the parsing and printing of
//! constants, as nft 1.1.x does them (src/datatype.c and friends in nftables).
//!
//! A constant is a `Val` (an unsigned integer of up to 128 bits, or a string) plus the `Dt` that
//! says how to read and print it, plus its width in bits.

use std::fmt;

/// Byte order of a value as the kernel sees it. Printing does not depend on it, but some
/// evaluation steps (binary ops on host-order marks) do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ByteOrder {
    Host,
    Big,
}

/// Every datatype nft knows (src/datatype.h `enum datatypes`), plus the ones only the
/// evaluator uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dt {
    Invalid,
    Verdict,
    NfProto,
    Bitmask,
    Integer,
    String,
    LlAddr,
    Ipv4Addr,
    Ipv6Addr,
    EtherAddr,
    EtherType,
    ArpOp,
    InetProto,
    InetService,
    IcmpType,
    TcpFlag,
    DccpPktType,
    /// MPTCP option subtypes (`tcp option mptcp subtype mp-join`): integers with names.
    MptcpSubtype,
    MhType,
    Time,
    Mark,
    IfIndex,
    ArpHrd,
    Realm,
    ClassId,
    Uid,
    Gid,
    CtState,
    CtDir,
    CtStatus,
    Icmp6Type,
    PktType,
    IcmpCode,
    Icmp6Code,
    IcmpxCode,
    DevGroup,
    Dscp,
    Ecn,
    FibAddr,
    Boolean,
    CtEventBit,
    IfName,
    IgmpType,
    Date,
    Hour,
    Day,
    CgroupV2,
    CtLabel,
    Priority,
    ShiftFlag,
    CtId,
    Policy,
    CtZone,
    Length,
    Ipsec,
    /// An integer printed in hex (nft's `xinteger`): raw payloads, some header fields, the
    /// result of a shift.
    XInteger,
}

/// Output options that change how constants print (nft's -p, -n, -S, -u ...).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrintOpts {
    /// `-p`: layer-4 protocols as numbers.
    pub numeric_proto: bool,
    /// `-S`: service (port) names instead of numbers.
    pub services: bool,
    /// `-y`: priorities as numbers.
    pub numeric_prio: bool,
    /// `-T`: time as seconds.
    pub numeric_time: bool,
    /// Symbolic constants as numbers (nft prints both ends of a range this way).
    pub numeric_symbol: bool,
}

/// A constant value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Val {
    Int(u128),
    Str(String),
}

/// A symbol table: names in nft's order. Several names may share a value; the first one is
/// the one printed.
pub type Symbols = &'static [(&'static str, u64)];

static NFPROTO: Symbols = &[("ipv4", 2), ("ipv6", 10)];

static ETHERTYPE: Symbols = &[
    ("ip", 0x0800),
    ("arp", 0x0806),
    ("ip6", 0x86dd),
    ("8021q", 0x8100),
    ("8021ad", 0x88a8),
    // Older name for 802.1Q, still accepted on input.
    ("vlan", 0x8100),
];

static ARPOP: Symbols = &[
    ("request", 1),
    ("reply", 2),
    ("rrequest", 3),
    ("rreply", 4),
    ("inrequest", 8),
    ("inreply", 9),
    ("nak", 10),
];

static ICMP_TYPE: Symbols = &[
    ("echo-reply", 0),
    ("destination-unreachable", 3),
    ("source-quench", 4),
    ("redirect", 5),
    ("echo-request", 8),
    ("router-advertisement", 9),
    ("router-solicitation", 10),
    ("time-exceeded", 11),
    ("parameter-problem", 12),
    ("timestamp-request", 13),
    ("timestamp-reply", 14),
    ("info-request", 15),
    ("info-reply", 16),
    ("address-mask-request", 17),
    ("address-mask-reply", 18),
];

static ICMP6_TYPE: Symbols = &[
    ("destination-unreachable", 1),
    ("packet-too-big", 2),
    ("time-exceeded", 3),
    ("parameter-problem", 4),
    ("echo-request", 128),
    ("echo-reply", 129),
    ("mld-listener-query", 130),
    ("mld-listener-report", 131),
    ("mld-listener-done", 132),
    ("mld-listener-reduction", 132),
    ("nd-router-solicit", 133),
    ("nd-router-advert", 134),
    ("nd-neighbor-solicit", 135),
    ("nd-neighbor-advert", 136),
    ("nd-redirect", 137),
    ("router-renumbering", 138),
    ("ind-neighbor-solicit", 141),
    ("ind-neighbor-advert", 142),
    ("mld2-listener-report", 143),
];

static IGMP_TYPE: Symbols = &[
    ("membership-query", 0x11),
    ("membership-report-v1", 0x12),
    ("membership-report-v2", 0x16),
    ("membership-report-v3", 0x22),
    ("leave-group", 0x17),
];

static TCP_FLAG: Symbols = &[
    ("fin", 0x01),
    ("syn", 0x02),
    ("rst", 0x04),
    ("psh", 0x08),
    ("ack", 0x10),
    ("urg", 0x20),
    ("ecn", 0x40),
    ("cwr", 0x80),
];

/// MPTCP option subtypes (`tcp option mptcp subtype mp-join`).
static MPTCP_SUBTYPE: Symbols = &[
    ("mp-capable", 0),
    ("mp-join", 1),
    ("dss", 2),
    ("add-addr", 3),
    ("remove-addr", 4),
    ("mp-prio", 5),
    ("mp-fail", 6),
    ("mp-fastclose", 7),
    ("mp-tcprst", 8),
];

static DCCP_PKTTYPE: Symbols = &[
    ("request", 0),
    ("response", 1),
    ("data", 2),
    ("ack", 3),
    ("dataack", 4),
    ("closereq", 5),
    ("close", 6),
    ("reset", 7),
    ("sync", 8),
    ("syncack", 9),
];

static MH_TYPE: Symbols = &[
    ("binding-refresh-request", 0),
    ("home-test-init", 1),
    ("careof-test-init", 2),
    ("home-test", 3),
    ("careof-test", 4),
    ("binding-update", 5),
    ("binding-acknowledgement", 6),
    ("binding-error", 7),
    ("fast-binding-update", 8),
    ("fast-binding-acknowledgement", 9),
    ("fast-binding-advertisement", 10),
    ("experimental-mobility-header", 11),
    ("home-agent-switch-message", 12),
];

static ARPHRD: Symbols = &[
    ("ether", 1),
    ("ppp", 512),
    ("ipip", 768),
    ("ipip6", 769),
    ("loopback", 772),
    ("sit", 776),
    ("ipgre", 778),
];

static CT_STATE: Symbols = &[
    ("invalid", 1),
    ("new", 8),
    ("established", 2),
    ("related", 4),
    ("untracked", 64),
];

static CT_DIR: Symbols = &[("original", 0), ("reply", 1)];

static CT_STATUS: Symbols = &[
    ("expected", 1),
    ("seen-reply", 2),
    ("assured", 4),
    ("confirmed", 8),
    ("snat", 16),
    ("dnat", 32),
    ("dying", 512),
];

static CT_EVENT: Symbols = &[
    ("new", 1 << 0),
    ("related", 1 << 1),
    ("destroy", 1 << 2),
    ("reply", 1 << 3),
    ("assured", 1 << 4),
    ("protoinfo", 1 << 5),
    ("helper", 1 << 6),
    ("mark", 1 << 7),
    ("seqadj", 1 << 8),
    ("secmark", 1 << 9),
    ("label", 1 << 10),
];

static PKTTYPE: Symbols = &[
    ("host", 0),
    // Older name, accepted on input.
    ("unicast", 0),
    ("broadcast", 1),
    ("multicast", 2),
    ("other", 3),
];

/// Codes of `reject with icmp`.
static ICMP_CODE: Symbols = &[
    ("net-unreachable", 0),
    ("host-unreachable", 1),
    ("prot-unreachable", 2),
    ("port-unreachable", 3),
    ("net-prohibited", 9),
    ("host-prohibited", 10),
    ("admin-prohibited", 13),
    ("frag-needed", 4),
];

/// Codes of `reject with icmpv6`.
static ICMP6_CODE: Symbols = &[
    ("no-route", 0),
    ("admin-prohibited", 1),
    ("addr-unreachable", 3),
    ("port-unreachable", 4),
    ("policy-fail", 5),
    ("reject-route", 6),
];

/// Codes of `reject with icmpx`, nft's family-independent reject codes.
static ICMPX_CODE: Symbols = &[
    ("port-unreachable", 1),
    ("admin-prohibited", 3),
    ("no-route", 0),
    ("host-unreachable", 2),
];

static DSCP: Symbols = &[
    ("cs0", 0x00),
    ("cs1", 0x08),
    ("cs2", 0x10),
    ("cs3", 0x18),
    ("cs4", 0x20),
    ("cs5", 0x28),
    ("cs6", 0x30),
    ("cs7", 0x38),
    ("df", 0x00),
    ("be", 0x00),
    ("lephb", 0x01),
    ("af11", 0x0a),
    ("af12", 0x0c),
    ("af13", 0x0e),
    ("af21", 0x12),
    ("af22", 0x14),
    ("af23", 0x16),
    ("af31", 0x1a),
    ("af32", 0x1c),
    ("af33", 0x1e),
    ("af41", 0x22),
    ("af42", 0x24),
    ("af43", 0x26),
    ("va", 0x2c),
    ("ef", 0x2e),
];

static ECN: Symbols = &[("not-ect", 0), ("ect1", 1), ("ect0", 2), ("ce", 3)];

static FIB_ADDR: Symbols = &[
    ("unspec", 0),
    ("unicast", 1),
    ("local", 2),
    ("broadcast", 3),
    ("anycast", 4),
    ("multicast", 5),
    ("blackhole", 6),
    ("unreachable", 7),
    ("prohibit", 8),
];

static BOOLEAN: Symbols = &[("exists", 1), ("missing", 0)];

static DAY: Symbols = &[
    ("Sunday", 0),
    ("Monday", 1),
    ("Tuesday", 2),
    ("Wednesday", 3),
    ("Thursday", 4),
    ("Friday", 5),
    ("Saturday", 6),
];

/// Defaults of iproute2's `group` and `rt_realms` files, used when the host has none.
static DEVGROUP_DEFAULT: Symbols = &[("default", 0)];
static REALM_DEFAULT: Symbols = &[("cosmos", 0)];

/// Users and groups every Linux system has, for hosts without /etc/passwd or /etc/group.
static UID_DEFAULT: Symbols = &[("root", 0), ("daemon", 1), ("bin", 2), ("sys", 3)];
static GID_DEFAULT: Symbols = &[
    ("root", 0),
    ("daemon", 1),
    ("bin", 2),
    ("sys", 3),
    ("adm", 4),
];

/// Verdict codes as the kernel stores them (NF_* and NFT_*), the negative ones as 32-bit
/// two's complement.
pub mod verdict {
    pub const DROP: u32 = 0;
    pub const ACCEPT: u32 = 1;
    pub const STOLEN: u32 = 2;
    pub const QUEUE: u32 = 3;
    pub const CONTINUE: u32 = -1i32 as u32;
    pub const BREAK: u32 = -2i32 as u32;
    pub const JUMP: u32 = -3i32 as u32;
    pub const GOTO: u32 = -4i32 as u32;
    pub const RETURN: u32 = -5i32 as u32;
}

static VERDICTS: Symbols = &[
    ("accept", verdict::ACCEPT as u64),
    ("drop", verdict::DROP as u64),
    ("continue", verdict::CONTINUE as u64),
    ("return", verdict::RETURN as u64),
    ("queue", verdict::QUEUE as u64),
    ("stolen", verdict::STOLEN as u64),
    ("break", verdict::BREAK as u64),
];

static ALL: &[Dt] = &[
    Dt::Invalid,
    Dt::Verdict,
    Dt::NfProto,
    Dt::Bitmask,
    Dt::Integer,
    Dt::String,
    Dt::LlAddr,
    Dt::Ipv4Addr,
    Dt::Ipv6Addr,
    Dt::EtherAddr,
    Dt::EtherType,
    Dt::ArpOp,
    Dt::InetProto,
    Dt::InetService,
    Dt::IcmpType,
    Dt::TcpFlag,
    Dt::DccpPktType,
    Dt::MhType,
    Dt::Time,
    Dt::Mark,
    Dt::IfIndex,
    Dt::ArpHrd,
    Dt::Realm,
    Dt::ClassId,
    Dt::Uid,
    Dt::Gid,
    Dt::CtState,
    Dt::CtDir,
    Dt::CtStatus,
    Dt::Icmp6Type,
    Dt::PktType,
    Dt::IcmpCode,
    Dt::Icmp6Code,
    Dt::IcmpxCode,
    Dt::DevGroup,
    Dt::Dscp,
    Dt::Ecn,
    Dt::FibAddr,
    Dt::Boolean,
    Dt::CtEventBit,
    Dt::IfName,
    Dt::IgmpType,
    Dt::Date,
    Dt::Hour,
    Dt::Day,
    Dt::CgroupV2,
    Dt::CtLabel,
    Dt::Priority,
    Dt::ShiftFlag,
    Dt::CtId,
    Dt::Policy,
    Dt::CtZone,
    Dt::Length,
    Dt::Ipsec,
];

impl Dt {
    /// Every type, in nft's enum order (the order `by_name` searches, so `time` is the
    /// relative-time type and not the date type that shares its name).
    pub fn all() -> &'static [Dt] {
        ALL
    }

    /// nft's name for the type, as in `type ipv4_addr` (`ipv4_addr`, `inet_service`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Dt::Invalid => "invalid",
            Dt::Verdict => "verdict",
            Dt::NfProto => "nf_proto",
            Dt::Bitmask => "bitmask",
            Dt::Integer => "integer",
            Dt::String => "string",
            Dt::LlAddr => "ll_addr",
            Dt::Ipv4Addr => "ipv4_addr",
            Dt::Ipv6Addr => "ipv6_addr",
            Dt::EtherAddr => "ether_addr",
            Dt::EtherType => "ether_type",
            Dt::ArpOp => "arp_op",
            Dt::InetProto => "inet_proto",
            Dt::InetService => "inet_service",
            Dt::IcmpType => "icmp_type",
            Dt::TcpFlag => "tcp_flag",
            Dt::DccpPktType => "dccp_pkttype",
            Dt::MptcpSubtype => "integer",
            Dt::MhType => "mh_type",
            Dt::Time => "time",
            Dt::Mark => "mark",
            Dt::IfIndex => "iface_index",
            Dt::ArpHrd => "iface_type",
            Dt::Realm => "realm",
            Dt::ClassId => "classid",
            Dt::Uid => "uid",
            Dt::Gid => "gid",
            Dt::CtState => "ct_state",
            Dt::CtDir => "ct_dir",
            Dt::CtStatus => "ct_status",
            Dt::Icmp6Type => "icmpv6_type",
            Dt::PktType => "pkt_type",
            Dt::IcmpCode => "icmp_code",
            Dt::Icmp6Code => "icmpv6_code",
            Dt::IcmpxCode => "icmpx_code",
            Dt::DevGroup => "devgroup",
            Dt::Dscp => "dscp",
            Dt::Ecn => "ecn",
            Dt::FibAddr => "fib_addrtype",
            Dt::Boolean => "boolean",
            Dt::CtEventBit => "ct_event",
            Dt::IfName => "ifname",
            Dt::IgmpType => "igmp_type",
            Dt::Date => "time",
            Dt::Hour => "hour",
            Dt::Day => "day",
            Dt::CgroupV2 => "cgroupsv2",
            Dt::CtLabel => "ct_label",
            Dt::Priority => "priority",
            Dt::ShiftFlag => "integer",
            Dt::CtId => "integer",
            Dt::Policy => "policy",
            Dt::CtZone => "integer",
            Dt::Length => "integer",
            Dt::Ipsec => "integer",
            Dt::XInteger => "integer",
        }
    }

    /// The human description used in error messages ("IPv4 address", "internet network service").
    pub fn desc(self) -> &'static str {
        match self {
            Dt::Invalid => "invalid",
            Dt::Verdict => "netfilter verdict",
            Dt::NfProto => "netfilter protocol",
            Dt::Bitmask => "bitmask",
            Dt::Integer => "integer",
            Dt::String => "string",
            Dt::LlAddr => "link layer address",
            Dt::Ipv4Addr => "IPv4 address",
            Dt::Ipv6Addr => "IPv6 address",
            Dt::EtherAddr => "Ethernet address",
            Dt::EtherType => "Ethernet protocol",
            Dt::ArpOp => "ARP operation",
            Dt::InetProto => "Internet protocol",
            Dt::InetService => "internet network service",
            Dt::IcmpType => "ICMP type",
            Dt::TcpFlag => "TCP flag",
            Dt::DccpPktType => "DCCP packet type",
            Dt::MptcpSubtype => "mptcp option subtype",
            Dt::MhType => "Mobility Header Type",
            Dt::Time => "relative time",
            Dt::Mark => "packet mark",
            Dt::IfIndex => "network interface index",
            Dt::ArpHrd => "network interface type",
            Dt::Realm => "routing realm",
            Dt::ClassId => "TC classid",
            Dt::Uid => "user ID",
            Dt::Gid => "group ID",
            Dt::CtState => "conntrack state",
            Dt::CtDir => "conntrack direction",
            Dt::CtStatus => "conntrack status",
            Dt::Icmp6Type => "ICMPv6 type",
            Dt::PktType => "packet type",
            Dt::IcmpCode => "icmp code",
            Dt::Icmp6Code => "icmpv6 code",
            Dt::IcmpxCode => "icmpx code",
            Dt::DevGroup => "devgroup name",
            Dt::Dscp => "Differentiated Services Code Point",
            Dt::Ecn => "Explicit Congestion Notification",
            Dt::FibAddr => "fib address type",
            Dt::Boolean => "boolean type",
            Dt::CtEventBit => "conntrack event bits",
            Dt::IfName => "network interface name",
            Dt::IgmpType => "IGMP type",
            Dt::Date => "Relative time of packet reception",
            Dt::Hour => "Hour of day of packet reception",
            Dt::Day => "Day of week of packet reception",
            Dt::CgroupV2 => "cgroupsv2 path",
            Dt::CtLabel => "conntrack label",
            Dt::Priority => "priority type",
            Dt::ShiftFlag => "integer",
            Dt::CtId => "integer",
            Dt::Policy => "policy type",
            Dt::CtZone => "integer",
            Dt::Length => "integer",
            Dt::Ipsec => "integer",
            Dt::XInteger => "integer",
        }
    }

    /// Lookup by nft name (`type ...` of sets and maps).
    pub fn by_name(name: &str) -> Option<Dt> {
        // Spellings nft users and older releases write for the same types.
        let name = match name {
            "pkttype" => "pkt_type",
            "nfproto" => "nf_proto",
            "ether_proto" => "ether_type",
            "icmpv6_code" | "icmp6_code" => "icmpv6_code",
            "icmp6_type" => "icmpv6_type",
            "cgroupv2" => "cgroupsv2",
            "ifindex" => "iface_index",
            "arphrd" => "iface_type",
            "fib_addr" => "fib_addrtype",
            n => n,
        };
        // Types that only exist inside the evaluator are not set key types.
        ALL.iter().copied().find(|dt| {
            dt.name() == name
                && !matches!(
                    dt,
                    Dt::Priority
                        | Dt::Policy
                        | Dt::ShiftFlag
                        | Dt::CtId
                        | Dt::CtZone
                        | Dt::Length
                        | Dt::Ipsec
                )
        })
    }

    /// The type a type falls back to for parsing and printing (nft's `basetype`).
    pub fn basetype(self) -> Option<Dt> {
        match self {
            Dt::Invalid | Dt::Verdict | Dt::Integer | Dt::String | Dt::Priority | Dt::Policy => {
                None
            }
            Dt::Boolean => Some(Dt::Integer),
            Dt::TcpFlag | Dt::CtState | Dt::CtStatus | Dt::CtEventBit | Dt::CtLabel => {
                Some(Dt::Bitmask)
            }
            Dt::IfName => Some(Dt::String),
            Dt::EtherAddr => Some(Dt::LlAddr),
            _ => Some(Dt::Integer),
        }
    }

    /// Natural size in bits (0 for variable-length types such as `string`).
    pub fn bits(self) -> u32 {
        match self {
            Dt::Invalid | Dt::Bitmask | Dt::Integer | Dt::String | Dt::LlAddr | Dt::XInteger => 0,
            Dt::Verdict => 32,
            Dt::NfProto => 8,
            Dt::Ipv4Addr => 32,
            Dt::Ipv6Addr => 128,
            Dt::EtherAddr => 48,
            Dt::EtherType | Dt::ArpOp | Dt::InetService | Dt::ArpHrd => 16,
            Dt::InetProto | Dt::IcmpType | Dt::TcpFlag | Dt::MhType | Dt::CtDir => 8,
            Dt::DccpPktType | Dt::MptcpSubtype => 4,
            Dt::Time => 32,
            Dt::Mark | Dt::IfIndex | Dt::Realm | Dt::ClassId | Dt::Uid | Dt::Gid => 32,
            Dt::CtState | Dt::CtStatus | Dt::CtEventBit | Dt::DevGroup | Dt::FibAddr => 32,
            Dt::Icmp6Type | Dt::PktType | Dt::IcmpCode | Dt::Icmp6Code | Dt::IcmpxCode => 8,
            Dt::IgmpType | Dt::Day => 8,
            Dt::Dscp => 6,
            Dt::Ecn => 2,
            Dt::Boolean => 1,
            Dt::IfName => 128,
            Dt::Date | Dt::CgroupV2 => 64,
            Dt::Hour => 32,
            Dt::CtLabel => 128,
            Dt::Priority | Dt::Policy => 32,
            Dt::ShiftFlag => 32,
            Dt::CtId => 32,
            Dt::CtZone => 16,
            Dt::Length => 32,
            Dt::Ipsec => 32,
        }
    }

    pub fn byteorder(self) -> ByteOrder {
        match self {
            Dt::LlAddr
            | Dt::Ipv4Addr
            | Dt::Ipv6Addr
            | Dt::EtherAddr
            | Dt::EtherType
            | Dt::ArpOp
            | Dt::InetService
            | Dt::IcmpType
            | Dt::TcpFlag
            | Dt::DccpPktType
            | Dt::MhType
            | Dt::CtDir
            | Dt::Icmp6Type
            | Dt::IcmpCode
            | Dt::Icmp6Code
            | Dt::IcmpxCode
            | Dt::Dscp
            | Dt::Ecn
            | Dt::IgmpType
            | Dt::CtId => ByteOrder::Big,
            _ => ByteOrder::Host,
        }
    }

    /// True for types printed as a comma-separated list of flag names (`ct state`, `tcp flags`).
    pub fn is_bitmask(self) -> bool {
        matches!(
            self,
            Dt::Bitmask | Dt::TcpFlag | Dt::CtState | Dt::CtStatus | Dt::CtEventBit | Dt::CtLabel
        )
    }

    /// True for types whose values are strings (`ifname`, `string`).
    pub fn is_string(self) -> bool {
        matches!(self, Dt::String | Dt::IfName)
    }

    /// True where nft allows a `/len` prefix on values (addresses).
    pub fn prefix_notation(self) -> bool {
        matches!(self, Dt::Ipv4Addr | Dt::Ipv6Addr)
    }

    /// The built-in symbol table of the type, empty if it has none. Tables that nft reads
    /// from files (marks, realms, groups, users) are given with their defaults.
    pub fn symbols(self) -> Symbols {
        match self {
            Dt::NfProto => NFPROTO,
            Dt::EtherType => ETHERTYPE,
            Dt::ArpOp => ARPOP,
            Dt::IcmpType => ICMP_TYPE,
            Dt::TcpFlag => TCP_FLAG,
            Dt::DccpPktType => DCCP_PKTTYPE,
            Dt::MptcpSubtype => MPTCP_SUBTYPE,
            Dt::MhType => MH_TYPE,
            Dt::ArpHrd => ARPHRD,
            Dt::CtState => CT_STATE,
            Dt::CtDir => CT_DIR,
            Dt::CtStatus => CT_STATUS,
            Dt::Icmp6Type => ICMP6_TYPE,
            Dt::PktType => PKTTYPE,
            Dt::IcmpCode => ICMP_CODE,
            Dt::Icmp6Code => ICMP6_CODE,
            Dt::IcmpxCode => ICMPX_CODE,
            Dt::Dscp => DSCP,
            Dt::Ecn => ECN,
            Dt::FibAddr => FIB_ADDR,
            Dt::Boolean => BOOLEAN,
            Dt::CtEventBit => CT_EVENT,
            Dt::IgmpType => IGMP_TYPE,
            Dt::Day => DAY,
            Dt::DevGroup => DEVGROUP_DEFAULT,
            Dt::Realm => REALM_DEFAULT,
            Dt::Uid => UID_DEFAULT,
            Dt::Gid => GID_DEFAULT,
            Dt::Verdict => VERDICTS,
            _ => &[],
        }
    }

    /// The symbol nft prints for a value, if the type has one (the first of equal values).
    /// For `icmp code` and the other reject codes this is the name `reject with` prints,
    /// although a plain `icmp code` match prints numbers.
    pub fn symbol_name(self, v: u128) -> Option<&'static str> {
        let v = u64::try_from(v).ok()?;
        self.symbols()
            .iter()
            .find(|(_, s)| *s == v)
            .map(|(n, _)| *n)
    }

    /// The value of a symbol of the type.
    pub fn symbol_value(self, name: &str) -> Option<u64> {
        self.symbols()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// A bitmask value split into flag names, lowest bit first as nft lists them
    /// (`established,related,new`). None if a set bit has no name or the value is zero.
    pub fn bitmask_names(self, v: u128) -> Option<Vec<&'static str>> {
        if v == 0 {
            return None;
        }
        let mut names = Vec::new();
        for bit in 0..128u32 {
            let b = 1u128 << bit;
            if v & b == 0 {
                continue;
            }
            names.push(self.symbol_name(b)?);
        }
        Some(names)
    }

    /// Parses one literal or symbol (`22`, `ssh`, `0x10`, `10.0.0.1`, `established`,
    /// `"lo"` already unquoted, `1m7s`) for a field `bits` wide. Errors are nft's messages
    /// without location, e.g. `Could not resolve service: Servname not found in nft services list`.
    pub fn parse(self, text: &str, bits: u32) -> Result<Val, String> {
        self.parse_tz(text, bits, 0)
    }

    /// `parse` with the local time zone's offset from UTC in seconds, which nft applies to
    /// `meta hour` and `meta time` values (it converts local wall-clock time to UTC).
    pub fn parse_tz(self, text: &str, bits: u32, utc_offset: i64) -> Result<Val, String> {
        let v = match self {
            Dt::String | Dt::IfName => return Ok(Val::Str(text.to_string())),
            Dt::Invalid => return Err(format!("Could not parse {}", self.desc())),
            Dt::Verdict => return parse_verdict(text),
            Dt::Priority => return Ok(parse_priority(text)),
            Dt::Policy => match text {
                "accept" => verdict::ACCEPT as u128,
                "drop" => verdict::DROP as u128,
                _ => return Err("wrong policy".into()),
            },
            Dt::Ipv4Addr => parse_ipv4(text)?,
            Dt::Ipv6Addr => parse_ipv6(text)?,
            Dt::LlAddr | Dt::EtherAddr => parse_lladdr(text, self, bits)?,
            Dt::InetProto => parse_inet_proto(text)?,
            Dt::InetService => parse_service(text)?,
            Dt::Time => {
                let ms = parse_time_ms(text)?;
                if bits <= 32 && ms > u32::MAX as u64 {
                    return Err("value too large".into());
                }
                ms as u128
            }
            Dt::Hour => parse_hour(text, utc_offset)? as u128,
            Dt::Date => parse_date(text, utc_offset)? as u128,
            Dt::ClassId => parse_classid(text)
                .ok_or_else(|| format!("Could not parse {}", self.desc()))?
                as u128,
            Dt::Uid | Dt::Gid => parse_id(self, text)?,
            Dt::IfIndex => parse_ifindex(text)?,
            Dt::Boolean => match text {
                "exists" | "true" => 1,
                "missing" | "false" => 0,
                _ => match parse_int(text) {
                    Some(n) => (n != 0) as u128,
                    None => return Err(format!("Could not parse {}", self.desc())),
                },
            },
            Dt::CtLabel => parse_ct_label(text)?,
            Dt::CgroupV2 => match parse_int(text) {
                Some(n) => n,
                // nft turns the path into the cgroup's inode number on the host that loads
                // the rule; keeping the path makes the rule portable and print back as given.
                None => return Ok(Val::Str(text.to_string())),
            },
            Dt::DevGroup | Dt::Realm | Dt::Mark => {
                match file_symbols(self).iter().find(|(n, _)| n == text) {
                    Some((_, v)) => *v as u128,
                    None => self.parse_symbolic(text)?,
                }
            }
            _ => self.parse_symbolic(text)?,
        };
        check_range(v, bits)?;
        Ok(Val::Int(v))
    }

    /// The symbol table, then the integer base type, as nft's `symbolic_constant_parse`.
    fn parse_symbolic(self, text: &str) -> Result<u128, String> {
        if let Some(v) = self.symbol_value(text) {
            return Ok(v as u128);
        }
        if let Some(v) = parse_int(text) {
            return Ok(v);
        }
        let symbols = self.symbols();
        if let Some(best) = closest(text, symbols.iter().map(|(n, _)| *n)) {
            return Err(format!(
                "Could not parse {} expression; did you you mean `{}`?",
                self.desc(),
                best
            ));
        }
        Err(format!("Could not parse {}", self.desc()))
    }

    /// Prints a value as `nft list ruleset` does.
    pub fn print(self, v: &Val, bits: u32, opts: &PrintOpts) -> String {
        self.print_tz(v, bits, opts, 0)
    }

    /// `print` with the local time zone's offset from UTC in seconds (see `parse_tz`).
    pub fn print_tz(self, v: &Val, bits: u32, opts: &PrintOpts, utc_offset: i64) -> String {
        let n = match v {
            Val::Str(s) => return format!("\"{s}\""),
            Val::Int(n) => *n,
        };
        match self {
            Dt::Integer | Dt::ShiftFlag | Dt::CtId | Dt::CtZone | Dt::Length | Dt::Ipsec => {
                n.to_string()
            }
            Dt::Uid | Dt::Gid | Dt::CgroupV2 => n.to_string(),
            Dt::Invalid => format!("0x{n:x} [invalid type]"),
            Dt::Bitmask | Dt::XInteger => format!("0x{n:x}"),
            Dt::String | Dt::IfName => format!("\"{}\"", int_to_string(n, bits)),
            Dt::Verdict => match u32::try_from(n)
                .ok()
                .and_then(|c| self.symbol_name(c as u128))
            {
                Some(s) => s.to_string(),
                None => format!("unknown verdict value {n}"),
            },
            Dt::Priority => (n as u32 as i32).to_string(),
            Dt::Policy => match n as u32 {
                verdict::ACCEPT => "accept".into(),
                verdict::DROP => "drop".into(),
                _ => n.to_string(),
            },
            Dt::Ipv4Addr => std::net::Ipv4Addr::from(n as u32).to_string(),
            Dt::Ipv6Addr => format_ipv6(n),
            Dt::LlAddr | Dt::EtherAddr => {
                let len = if bits == 0 {
                    self.bits().max(8) / 8
                } else {
                    bits.div_ceil(8)
                };
                format_lladdr(n, len)
            }
            Dt::InetProto => match protocol_name(n) {
                Some(name) if !opts.numeric_proto => name.to_string(),
                _ => n.to_string(),
            },
            Dt::InetService => match service_name(n) {
                Some(name) if opts.services => format!("\"{name}\""),
                _ => n.to_string(),
            },
            Dt::Time => {
                let ms = u64::try_from(n).unwrap_or(u64::MAX);
                if opts.numeric_time {
                    format!("{}s", ms / 1000)
                } else {
                    format_time_ms(ms)
                }
            }
            Dt::Hour => format!("\"{}\"", format_hour(n, utc_offset)),
            Dt::Date => format!("\"{}\"", format_date(n, utc_offset)),
            // names from iproute2's files are left out where nft prints numbers only (ranges)
            Dt::Mark => match file_symbols(self)
                .iter()
                .find(|(_, s)| *s as u128 == n)
                .filter(|_| !opts.numeric_symbol)
            {
                Some((name, _)) => format!("\"{name}\""),
                None => format!("0x{n:08x}"),
            },
            Dt::DevGroup | Dt::Realm => match file_symbols(self)
                .iter()
                .find(|(_, s)| *s as u128 == n)
                .filter(|_| !opts.numeric_symbol)
            {
                Some((name, _)) => format!("\"{name}\""),
                None => n.to_string(),
            },
            Dt::ClassId => format_classid(n),
            Dt::IfIndex => match u32::try_from(n).ok().and_then(ifindex_to_name) {
                Some(name) => format!("\"{name}\""),
                None => n.to_string(),
            },
            Dt::CtLabel => ct_label_bit(n).to_string(),
            Dt::Day => match self.symbol_name(n) {
                Some(s) => format!("\"{s}\""),
                None => n.to_string(),
            },
            // A plain `icmp code` match prints numbers; `reject with` uses `symbol_name`.
            Dt::IcmpCode | Dt::Icmp6Code | Dt::IcmpxCode => n.to_string(),
            dt if dt.is_bitmask() && opts.numeric_symbol => format!("0x{n:x}"),
            dt if dt.is_bitmask() => match dt.symbol_name(n) {
                Some(s) => s.to_string(),
                None => match dt.bitmask_names(n) {
                    Some(names) => names.join(","),
                    None => format!("0x{n:x}"),
                },
            },
            dt => match dt.symbol_name(n).filter(|_| !opts.numeric_symbol) {
                Some(s) => s.to_string(),
                None => match dt {
                    Dt::EtherType => format!("0x{n:04x}"),
                    Dt::Dscp => format!("0x{n:02x}"),
                    Dt::Ecn => format!("0x{n:x}"),
                    _ => n.to_string(),
                },
            },
        }
    }

    /// The value as libnftables JSON prints it (numbers as numbers, symbols as strings,
    /// bitmasks as a string or a list of strings).
    pub fn to_json(self, v: &Val, bits: u32) -> serde_json::Value {
        self.to_json_opts(v, bits, &PrintOpts::default())
    }

    /// `to_json` under output options (`-p` makes protocols numbers, `-S` ports names).
    pub fn to_json_opts(self, v: &Val, bits: u32, opts: &PrintOpts) -> serde_json::Value {
        use serde_json::Value as J;
        let n = match v {
            Val::Str(s) => return J::from(s.clone()),
            Val::Int(n) => *n,
        };
        // values wider than 64 bits print as hex strings, as nft's integer type does
        let num = |n: u128| match u64::try_from(n) {
            Ok(n) => J::from(n),
            Err(_) => J::from(format!("0x{n:x}")),
        };
        let unquote = |s: String| s.trim_matches('"').to_string();
        match self {
            Dt::Ipv4Addr
            | Dt::Ipv6Addr
            | Dt::LlAddr
            | Dt::EtherAddr
            | Dt::ClassId
            | Dt::Hour
            | Dt::Date => J::from(unquote(self.print(v, bits, opts))),
            Dt::String | Dt::IfName | Dt::Verdict | Dt::Policy => {
                J::from(unquote(self.print(v, bits, opts)))
            }
            Dt::Time => num(n / 1000),
            Dt::Boolean => J::Bool(n != 0),
            Dt::Priority => J::from(n as u32 as i32),
            Dt::InetProto => match protocol_name(n) {
                Some(name) if !opts.numeric_proto => J::from(name),
                _ => num(n),
            },
            Dt::InetService => match service_name(n) {
                Some(name) if opts.services => J::from(name),
                _ => num(n),
            },
            Dt::Mark | Dt::DevGroup | Dt::Realm => {
                match file_symbols(self).iter().find(|(_, s)| *s as u128 == n) {
                    Some((name, _)) => J::from(name.clone()),
                    None => num(n),
                }
            }
            Dt::IfIndex => match u32::try_from(n).ok().and_then(ifindex_to_name) {
                Some(name) => J::from(name),
                None => num(n),
            },
            Dt::CtLabel => num(ct_label_bit(n) as u128),
            Dt::Bitmask | Dt::XInteger => num(n),
            dt if dt.is_bitmask() => match dt.symbol_name(n) {
                Some(s) => J::from(s),
                None => match dt.bitmask_names(n) {
                    Some(names) => J::Array(names.into_iter().map(J::from).collect()),
                    None => num(n),
                },
            },
            Dt::IcmpCode | Dt::Icmp6Code | Dt::IcmpxCode => num(n),
            dt => match dt.symbol_name(n) {
                Some(s) => J::from(s),
                None => num(n),
            },
        }
    }
}

impl fmt::Display for Dt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An integer literal as nft reads it (GMP's base 0): `0x` hex, a leading `0` octal,
/// otherwise decimal.
pub fn parse_int(text: &str) -> Option<u128> {
    let (digits, radix) =
        if let Some(h) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            (h, 16)
        } else if text.len() > 1 && text.starts_with('0') {
            (&text[1..], 8)
        } else {
            (text, 10)
        };
    if digits.is_empty() || !digits.bytes().all(|b| (b as char).is_digit(radix)) {
        return None;
    }
    u128::from_str_radix(digits, radix).ok()
}

/// The largest value that fits in `bits`, or None where nft does not check (0 = unsized).
pub fn max_value(bits: u32) -> Option<u128> {
    match bits {
        0 => None,
        1..=127 => Some((1u128 << bits) - 1),
        _ => Some(u128::MAX),
    }
}

fn check_range(v: u128, bits: u32) -> Result<(), String> {
    match max_value(bits) {
        Some(max) if v > max => Err(format!("Value {v} exceeds valid range 0-{max}")),
        _ => Ok(()),
    }
}

/// Levenshtein-close symbol for "did you mean" hints, as nft's misspell helper offers.
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1; b.len() + 1];
            for (j, cb) in b.iter().enumerate() {
                let sub = prev[j] + usize::from(ca != *cb);
                cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
            }
            prev = cur;
        }
        prev[b.len()]
    }
    if word.len() > 64 {
        return None;
    }
    let max = word.chars().count() / 3 + 1;
    candidates
        .map(|c| (distance(word, c), c))
        .filter(|(d, _)| *d <= max && *d > 0)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn parse_verdict(text: &str) -> Result<Val, String> {
    if let Some(v) = Dt::Verdict.symbol_value(text) {
        return Ok(Val::Int(v as u32 as u128));
    }
    for kw in ["jump ", "goto "] {
        if let Some(chain) = text.strip_prefix(kw) {
            let chain = chain.trim();
            if !chain.is_empty() {
                return Ok(Val::Str(format!("{kw}{chain}")));
            }
        }
    }
    match closest(text, VERDICTS.iter().map(|(n, _)| *n)) {
        Some(s) => Err(format!(
            "Could not parse netfilter verdict; did you mean `{s}'?"
        )),
        None => Err(format!(
            "Could not parse netfilter verdict; did you mean `jump {text}'?"
        )),
    }
}

/// Chain priorities are numbers (negative allowed, kept as 32-bit two's complement) or the
/// standard names (`filter`, `dstnat + 10`), which are left to the evaluator as strings.
fn parse_priority(text: &str) -> Val {
    let (neg, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text),
    };
    match parse_int(digits).and_then(|n| i64::try_from(n).ok()) {
        Some(n) if n <= i32::MAX as i64 + 1 => {
            let n = if neg { -n } else { n };
            match i32::try_from(n) {
                Ok(n) => Val::Int(n as u32 as u128),
                Err(_) => Val::Str(text.to_string()),
            }
        }
        _ => Val::Str(text.to_string()),
    }
}

fn parse_ipv4(text: &str) -> Result<u128, String> {
    text.parse::<std::net::Ipv4Addr>()
        .map(|a| u32::from(a) as u128)
        .map_err(|_| "Could not resolve hostname: Name or service not known".to_string())
}

fn parse_ipv6(text: &str) -> Result<u128, String> {
    // nft's scanner hands over bracketed addresses too (`[::1]:80` forms).
    let t = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    t.parse::<std::net::Ipv6Addr>()
        .map(u128::from)
        .map_err(|_| "Could not resolve hostname: Name or service not known".to_string())
}

/// Bytes in hex, one or two digits each, separated by any single character (nft uses
/// strtoul between separators), most significant first.
fn parse_lladdr(text: &str, dt: Dt, bits: u32) -> Result<u128, String> {
    let err = || "Invalid LL address".to_string();
    let mut v: u128 = 0;
    let mut len = 0u32;
    let mut rest = text;
    loop {
        let end = rest
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(rest.len());
        if end == 0 || end > 2 {
            return Err(err());
        }
        let byte = u8::from_str_radix(&rest[..end], 16).map_err(|_| err())?;
        if len >= 16 {
            return Err(err());
        }
        v = (v << 8) | byte as u128;
        len += 1;
        rest = &rest[end..];
        let mut chars = rest.chars();
        match chars.next() {
            None => break,
            Some(_) => rest = chars.as_str(),
        }
        if rest.is_empty() {
            return Err(err());
        }
    }
    let want = if bits != 0 { bits / 8 } else { dt.bits() / 8 };
    if want != 0 && len != want {
        return Err(err());
    }
    Ok(v)
}

fn format_lladdr(v: u128, len: u32) -> String {
    let len = len.min(16);
    (0..len)
        .rev()
        .map(|i| format!("{:02x}", (v >> (8 * i)) as u8))
        .collect::<Vec<_>>()
        .join(":")
}

/// inet_ntop's form: the longest run of two or more zero groups becomes `::` (the first on a
/// tie), and addresses with 96 zero bits or the v4-mapped prefix end in dotted quad.
pub fn format_ipv6(v: u128) -> String {
    let words: Vec<u16> = (0..8).rev().map(|i| (v >> (16 * i)) as u16).collect();
    let (mut best, mut best_len) = (usize::MAX, 0usize);
    let mut i = 0;
    while i < 8 {
        if words[i] == 0 {
            let start = i;
            while i < 8 && words[i] == 0 {
                i += 1;
            }
            if i - start > best_len {
                best = start;
                best_len = i - start;
            }
        } else {
            i += 1;
        }
    }
    if best_len < 2 {
        best = usize::MAX;
    }
    let embedded_v4 = best == 0 && (best_len == 6 || (best_len == 5 && words[5] == 0xffff));
    let mut out = String::new();
    let mut i = 0;
    while i < 8 {
        if i == best {
            out.push(':');
            if i == 0 {
                out.push(':');
            }
            i += best_len;
            continue;
        }
        if i == 6 && embedded_v4 {
            let a = (v as u32).to_be_bytes();
            out.push_str(&format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3]));
            break;
        }
        out.push_str(&format!("{:x}", words[i]));
        if i < 7 {
            out.push(':');
        }
        i += 1;
    }
    out
}

fn parse_inet_proto(text: &str) -> Result<u128, String> {
    if text.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
        return match parse_int(text) {
            Some(n) if n <= 255 => Ok(n),
            Some(_) => Err("Protocol out of range".into()),
            None => Err("Could not resolve protocol name".into()),
        };
    }
    // nft's grammar also names these by its own keywords.
    let alias = match text {
        "icmpv6" => Some(58),
        "comp" => Some(108),
        _ => None,
    };
    alias
        .or_else(|| {
            crate::services::PROTOCOLS
                .iter()
                .find(|(n, _)| *n == text)
                .map(|(_, p)| *p)
        })
        .map(|p| p as u128)
        .ok_or_else(|| "Could not resolve protocol name".into())
}

/// The name nft prints for an IP protocol number.
pub fn protocol_name(n: u128) -> Option<&'static str> {
    let n = u8::try_from(n).ok()?;
    crate::services::PROTOCOLS
        .iter()
        .find(|(_, p)| *p == n)
        .map(|(name, _)| *name)
}

fn parse_service(text: &str) -> Result<u128, String> {
    if text.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
        return match parse_int(text) {
            Some(n) if n <= 65535 => Ok(n),
            Some(_) => Err("Service out of range".into()),
            None => {
                Err("Could not resolve service: Servname not found in nft services list".into())
            }
        };
    }
    crate::services::SERVICES
        .iter()
        .find(|(n, _)| *n == text)
        .map(|(_, p)| *p as u128)
        .ok_or_else(|| "Could not resolve service: Servname not found in nft services list".into())
}

/// The service name nft prints for a port under `-S`.
pub fn service_name(n: u128) -> Option<&'static str> {
    let n = u16::try_from(n).ok()?;
    crate::services::SERVICES
        .iter()
        .find(|(_, p)| *p == n)
        .map(|(name, _)| *name)
}

/// A relative time (`1d2h3m4s5ms`, or plain seconds) in milliseconds, as nft's time_parse:
/// each unit once, at most eight digits before each unit.
pub fn parse_time_ms(text: &str) -> Result<u64, String> {
    const DAY: u8 = 1;
    const HOUR: u8 = 2;
    const MIN: u8 = 4;
    const SEC: u8 = 8;
    const MSEC: u8 = 16;
    let bytes = text.as_bytes();
    let mut mask = 0u8;
    let mut total: u64 = 0;
    let mut digits_start = 0usize;
    let mut i = 0usize;
    let take = |from: usize, to: usize| -> u64 {
        text.get(from..to).and_then(|d| d.parse().ok()).unwrap_or(0)
    };
    while i < bytes.len() {
        let c = bytes[i];
        let (unit, scale, what, width) = match c {
            b'd' => (DAY, 86_400_000u64, "Day", 1),
            b'h' => (HOUR, 3_600_000, "Hour", 1),
            b'm' if i + 2 == bytes.len() && bytes[i + 1] == b's' => (MSEC, 1, "Millisecond", 2),
            b'm' => (MIN, 60_000, "Minute", 1),
            b's' => (SEC, 1000, "Second", 1),
            c if c.is_ascii_digit() => {
                if i - digits_start >= 8 {
                    return Err("value too large".into());
                }
                i += 1;
                continue;
            }
            _ => return Err("wrong time format".into()),
        };
        if mask & unit != 0 {
            return Err(format!("{what} has been specified twice"));
        }
        mask |= unit;
        total = total.saturating_add(take(digits_start, i).saturating_mul(scale));
        i += width;
        digits_start = i;
    }
    if mask == 0 {
        if text.is_empty() {
            return Err("wrong time format".into());
        }
        return Ok(take(0, text.len()).saturating_mul(1000));
    }
    if digits_start < text.len() {
        // Trailing digits without a unit count for nothing in nft; reject them instead of
        // silently dropping part of the value.
        return Err("wrong time format".into());
    }
    Ok(total)
}

/// nft's relative time form: `1d2h3m4s5ms`, zero units left out, `0s` for nothing.
pub fn format_time_ms(ms: u64) -> String {
    let parts = [
        (ms / 86_400_000, "d"),
        (ms % 86_400_000 / 3_600_000, "h"),
        (ms % 3_600_000 / 60_000, "m"),
        (ms % 60_000 / 1000, "s"),
        (ms % 1000, "ms"),
    ];
    let out: String = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    if out.is_empty() {
        "0s".into()
    } else {
        out
    }
}

const SECONDS_PER_DAY: i64 = 86_400;

/// `HH:MM[:SS]` local time of day, or a number of seconds, or a relative time (`1h`), to
/// seconds since midnight UTC.
fn parse_hour(text: &str, utc_offset: i64) -> Result<u32, String> {
    if let Ok(n) = text.parse::<u32>() {
        return Ok(n);
    }
    let secs = match parse_clock(text) {
        Some(s) => s,
        None => match parse_time_ms(text) {
            Ok(ms) => i64::try_from(ms / 1000).unwrap_or(i64::MAX),
            Err(_) => return Err(format!("Can't parse trailing input: \"{text}\"")),
        },
    };
    Ok((secs - utc_offset).rem_euclid(SECONDS_PER_DAY) as u32)
}

/// `HH:MM` or `HH:MM:SS` as strptime's %R and %T accept them (one or two digits each,
/// seconds up to 60 for leap seconds).
fn parse_clock(text: &str) -> Option<i64> {
    let mut parts = text.split(':');
    let field = |s: Option<&str>, max: i64| -> Option<i64> {
        let s = s?;
        if s.is_empty() || s.len() > 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<i64>().ok().filter(|v| *v <= max)
    };
    let h = field(parts.next(), 23)?;
    let m = field(parts.next(), 59)?;
    let s = match parts.next() {
        Some(s) => field(Some(s), 60)?,
        None => 0,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(h * 3600 + m * 60 + s)
}

fn format_hour(v: u128, utc_offset: i64) -> String {
    let secs = i64::try_from(v).unwrap_or(0);
    let secs = (secs + utc_offset).rem_euclid(SECONDS_PER_DAY);
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if s != 0 {
        format!("{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}")
    }
}

/// `YYYY-MM-DD[ HH:MM[:SS]]` local time, or seconds since the epoch, to nanoseconds since the
/// epoch (the unit of `meta time`).
fn parse_date(text: &str, utc_offset: i64) -> Result<u64, String> {
    let err = || "Cannot parse date".to_string();
    let secs: i64 = if let Some((date, clock)) = split_date(text) {
        let days = days_from_civil(date.0, date.1, date.2);
        days * SECONDS_PER_DAY + clock - utc_offset
    } else if let Ok(n) = text.parse::<u64>() {
        i64::try_from(n).map_err(|_| err())?
    } else {
        return Err(err());
    };
    u64::try_from(secs)
        .ok()
        .and_then(|s| s.checked_mul(1_000_000_000))
        .ok_or_else(err)
}

fn split_date(text: &str) -> Option<((i64, u32, u32), i64)> {
    let (date, clock) = match text.split_once(' ') {
        Some((d, c)) => (d, parse_clock(c.trim())?),
        None => (text, 0),
    };
    let mut it = date.split('-');
    let y: i64 = it.next()?.parse().ok().filter(|y| (0..=9999).contains(y))?;
    let m: u32 = it.next()?.parse().ok().filter(|m| (1..=12).contains(m))?;
    let d: u32 = it.next()?.parse().ok().filter(|d| (1..=31).contains(d))?;
    if it.next().is_some() {
        return None;
    }
    Some(((y, m, d), clock))
}

fn format_date(v: u128, utc_offset: i64) -> String {
    let secs = i64::try_from(v / 1_000_000_000).unwrap_or(i64::MAX / 2) + utc_offset;
    let days = secs.div_euclid(SECONDS_PER_DAY);
    let t = secs.rem_euclid(SECONDS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        t / 3600,
        t % 3600 / 60,
        t % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// tc handles: `root`, `none`, `major:minor` in hex, or a plain number.
fn parse_classid(text: &str) -> Option<u32> {
    match text {
        "root" => return Some(0xffff_ffff),
        "none" => return Some(0),
        _ => {}
    }
    if let Some((maj, min)) = text.split_once(':') {
        let hex = |s: &str| -> Option<u32> {
            if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u32::from_str_radix(s, 16).ok()
        };
        let min = if min.is_empty() { Some(0) } else { hex(min) };
        return Some((hex(maj)? << 16) | min?);
    }
    parse_int(text).and_then(|n| u32::try_from(n).ok())
}

fn format_classid(n: u128) -> String {
    match n as u32 {
        0xffff_ffff => "root".into(),
        0 => "none".into(),
        h => format!("{:x}:{:x}", h >> 16, h & 0xffff),
    }
}

fn parse_id(dt: Dt, text: &str) -> Result<u128, String> {
    if let Some((_, v)) = file_symbols(dt).iter().find(|(n, _)| n == text) {
        return Ok(*v as u128);
    }
    if let Some(v) = dt.symbol_value(text) {
        return Ok(v as u128);
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u32>() {
            Ok(n) => Ok(n as u128),
            Err(_) => Err("Value too large".into()),
        };
    }
    Err(if dt == Dt::Uid {
        "User does not exist"
    } else {
        "Group does not exist"
    }
    .into())
}

fn parse_ifindex(text: &str) -> Result<u128, String> {
    if let Some(idx) = ifname_to_index(text) {
        return Ok(idx as u128);
    }
    match text.parse::<u32>() {
        Ok(n) if n <= i32::MAX as u32 => Ok(n as u128),
        _ => Err("Interface does not exist".into()),
    }
}

thread_local! {
    static INTERFACES: std::cell::RefCell<Option<Vec<String>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with interface names resolved against `names` (index = position + 1) instead of
/// this machine's interfaces: a simulated router's interfaces are its topology's, not the
/// host's.
pub fn with_interfaces<R>(names: &[String], f: impl FnOnce() -> R) -> R {
    let prev = INTERFACES.with(|c| c.replace(Some(names.to_vec())));
    let r = f();
    INTERFACES.with(|c| *c.borrow_mut() = prev);
    r
}

fn ifname_to_index(name: &str) -> Option<u32> {
    if let Some(found) = INTERFACES.with(|c| {
        c.borrow()
            .as_ref()
            .map(|v| v.iter().position(|n| n == name).map(|i| i as u32 + 1))
    }) {
        return found;
    }
    if name.is_empty() || name.len() > 15 || name.contains('/') || name.starts_with('.') {
        return None;
    }
    let s = std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex")).ok()?;
    s.trim().parse().ok()
}

fn ifindex_to_name(index: u32) -> Option<String> {
    if let Some(found) = INTERFACES.with(|c| {
        c.borrow().as_ref().map(|v| {
            index
                .checked_sub(1)
                .and_then(|i| v.get(i as usize).cloned())
        })
    }) {
        return found;
    }
    let dir = std::fs::read_dir("/sys/class/net").ok()?;
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .find(|name| ifname_to_index(name) == Some(index))
}

/// Labels are bit numbers 0..127 (or names from connlabel.conf); the value has that bit set.
fn parse_ct_label(text: &str) -> Result<u128, String> {
    let bit = match file_symbols(Dt::CtLabel).iter().find(|(n, _)| n == text) {
        Some((_, b)) => *b,
        None => match parse_int(text) {
            Some(b) => u64::try_from(b).unwrap_or(u64::MAX),
            None => {
                return Err(format!(
                    "/etc/connlabel.conf: could not parse conntrack label \"{text}\""
                ))
            }
        },
    };
    if bit >= 128 {
        return Err(format!("{text}: bit {bit} out of range (128 max)"));
    }
    Ok(1u128 << bit)
}

fn ct_label_bit(v: u128) -> u32 {
    if v == 0 {
        0
    } else {
        v.trailing_zeros()
    }
}

fn int_to_string(n: u128, bits: u32) -> String {
    // Strings the kernel hands back are host-order bytes, NUL padded.
    let len = (bits / 8).clamp(1, 16) as usize;
    let bytes = n.to_le_bytes();
    bytes[..len]
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect()
}

/// Tables nft reads from files (iproute2's `group`, `rt_realms`, `rt_marks`, connlabel.conf,
/// /etc/passwd, /etc/group), read once, with built-in defaults where the file is missing.
fn file_symbols(dt: Dt) -> &'static [(String, u64)] {
    use std::sync::OnceLock;
    static GROUP: OnceLock<Vec<(String, u64)>> = OnceLock::new();
    static REALM: OnceLock<Vec<(String, u64)>> = OnceLock::new();
    static MARK: OnceLock<Vec<(String, u64)>> = OnceLock::new();
    static LABEL: OnceLock<Vec<(String, u64)>> = OnceLock::new();
    static PASSWD: OnceLock<Vec<(String, u64)>> = OnceLock::new();
    static GROUPS: OnceLock<Vec<(String, u64)>> = OnceLock::new();
    let with_defaults = |mut v: Vec<(String, u64)>, defaults: Symbols| {
        for (n, val) in defaults {
            if !v.iter().any(|(m, _)| m == n) {
                v.push((n.to_string(), *val));
            }
        }
        v
    };
    match dt {
        Dt::DevGroup => {
            GROUP.get_or_init(|| with_defaults(read_iproute2("group"), DEVGROUP_DEFAULT))
        }
        Dt::Realm => REALM.get_or_init(|| with_defaults(read_iproute2("rt_realms"), REALM_DEFAULT)),
        Dt::Mark => MARK.get_or_init(|| read_iproute2("rt_marks")),
        Dt::CtLabel => LABEL.get_or_init(|| read_rt_table("/etc/connlabel.conf")),
        Dt::Uid => PASSWD.get_or_init(|| with_defaults(read_colon_db("/etc/passwd"), UID_DEFAULT)),
        Dt::Gid => GROUPS.get_or_init(|| with_defaults(read_colon_db("/etc/group"), GID_DEFAULT)),
        _ => &[],
    }
}

fn read_iproute2(name: &str) -> Vec<(String, u64)> {
    let v = read_rt_table(&format!("/etc/iproute2/{name}"));
    if v.is_empty() {
        read_rt_table(&format!("/usr/share/iproute2/{name}"))
    } else {
        v
    }
}

/// `value name` lines, value decimal or 0x hex, `#` comments.
fn read_rt_table(path: &str) -> Vec<(String, u64)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let l = l.split('#').next()?.trim();
            let mut f = l.split_whitespace();
            let v = parse_int(f.next()?).and_then(|v| u64::try_from(v).ok())?;
            Some((f.next()?.to_string(), v))
        })
        .collect()
}

/// `name:x:id:...` lines of /etc/passwd and /etc/group.
fn read_colon_db(path: &str) -> Vec<(String, u64)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?.to_string();
            let id = f.nth(1)?.parse().ok()?;
            Some((name, id))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(dt: Dt, s: &str) -> Val {
        dt.parse(s, dt.bits())
            .unwrap_or_else(|e| panic!("{dt} {s}: {e}"))
    }

    fn show(dt: Dt, v: &Val) -> String {
        dt.print(v, dt.bits(), &PrintOpts::default())
    }

    /// Parse then print with nft's `-p` (as the py corpus lists rules).
    fn round(dt: Dt, s: &str) -> String {
        let opts = PrintOpts {
            numeric_proto: true,
            ..PrintOpts::default()
        };
        dt.print(&p(dt, s), dt.bits(), &opts)
    }

    #[test]
    fn names_resolve_both_ways() {
        for name in [
            "ipv4_addr",
            "ipv6_addr",
            "ether_addr",
            "inet_proto",
            "inet_service",
            "mark",
            "ifname",
            "iface_index",
            "ct_state",
            "verdict",
            "icmp_type",
            "icmpv6_type",
            "time",
            "integer",
            "string",
            "dscp",
            "ecn",
            "ct_label",
            "boolean",
            "classid",
            "uid",
            "gid",
            "ether_type",
            "nf_proto",
            "pkt_type",
            "arp_op",
            "day",
            "hour",
            "cgroupsv2",
            "realm",
            "devgroup",
            "tcp_flag",
            "ct_status",
            "ct_dir",
            "ct_event",
            "fib_addrtype",
            "icmpx_code",
        ] {
            let dt = Dt::by_name(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(dt.name(), name);
        }
        assert_eq!(Dt::by_name("ipv4_addr"), Some(Dt::Ipv4Addr));
        assert_eq!(Dt::by_name("time"), Some(Dt::Time));
        assert_eq!(Dt::by_name("pkttype"), Some(Dt::PktType));
        assert_eq!(Dt::by_name("nosuch"), None);
        assert_eq!(Dt::InetService.desc(), "internet network service");
    }

    #[test]
    fn integers_and_ranges() {
        assert_eq!(p(Dt::Integer, "22"), Val::Int(22));
        assert_eq!(p(Dt::Integer, "0x10"), Val::Int(16));
        assert_eq!(p(Dt::Integer, "010"), Val::Int(8));
        assert_eq!(
            Dt::Integer.parse("256", 8),
            Err("Value 256 exceeds valid range 0-255".into())
        );
        assert_eq!(Dt::Integer.parse("255", 8), Ok(Val::Int(255)));
        assert!(Dt::Integer.parse("12a", 8).is_err());
        assert!(Dt::Integer.parse("", 8).is_err());
        assert_eq!(
            Dt::CtLabel.parse("128", 128),
            Err("128: bit 128 out of range (128 max)".into())
        );
    }

    #[test]
    fn services_and_protocols() {
        assert_eq!(p(Dt::InetService, "ssh"), Val::Int(22));
        assert_eq!(p(Dt::InetService, "telnet"), Val::Int(23));
        assert_eq!(p(Dt::InetService, "http"), Val::Int(80));
        assert_eq!(p(Dt::InetService, "https"), Val::Int(443));
        assert_eq!(
            Dt::InetService.parse("nosuchservice", 16),
            Err("Could not resolve service: Servname not found in nft services list".into())
        );
        assert_eq!(
            Dt::InetService.parse("65536", 16),
            Err("Service out of range".into())
        );
        assert_eq!(show(Dt::InetService, &Val::Int(22)), "22");
        let s = PrintOpts {
            services: true,
            ..PrintOpts::default()
        };
        assert_eq!(Dt::InetService.print(&Val::Int(22), 16, &s), "\"ssh\"");

        for (name, n) in [
            ("tcp", 6),
            ("udp", 17),
            ("icmp", 1),
            ("esp", 50),
            ("ah", 51),
            ("gre", 47),
            ("igmp", 2),
            ("icmpv6", 58),
            ("ipv6-icmp", 58),
            ("sctp", 132),
            ("udplite", 136),
            ("dccp", 33),
            ("comp", 108),
        ] {
            assert_eq!(p(Dt::InetProto, name), Val::Int(n), "{name}");
        }
        assert_eq!(show(Dt::InetProto, &Val::Int(6)), "tcp");
        assert_eq!(show(Dt::InetProto, &Val::Int(58)), "ipv6-icmp");
        assert_eq!(round(Dt::InetProto, "tcp"), "6");
        assert_eq!(
            Dt::InetProto.parse("256", 8),
            Err("Protocol out of range".into())
        );
        assert_eq!(
            Dt::InetProto.to_json(&Val::Int(1), 8),
            serde_json::json!("icmp")
        );
    }

    #[test]
    fn addresses() {
        assert_eq!(p(Dt::Ipv4Addr, "10.0.0.1"), Val::Int(0x0a00_0001));
        assert_eq!(show(Dt::Ipv4Addr, &Val::Int(0xc0a8_0101)), "192.168.1.1");
        assert!(Dt::Ipv4Addr.parse("10.0.0.256", 32).is_err());
        assert!(Dt::Ipv4Addr.parse("010.0.0.1", 32).is_err());
        for (text, printed) in [
            ("::1", "::1"),
            ("::", "::"),
            ("2001:db8::133", "2001:db8::133"),
            ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
            ("1:0:0:1:0:0:0:1", "1:0:0:1::1"),
            ("1:0:0:2:0:0:3:4", "1::2:0:0:3:4"),
            ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
            ("::1.2.3.4", "::1.2.3.4"),
            ("fe80::", "fe80::"),
            ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
            ("1:2:3:4:5:6:0:8", "1:2:3:4:5:6:0:8"),
            ("[::2]", "::2"),
        ] {
            assert_eq!(
                show(Dt::Ipv6Addr, &p(Dt::Ipv6Addr, text)),
                printed,
                "{text}"
            );
        }
        assert!(Dt::Ipv6Addr.parse("1::2::3", 128).is_err());
        let mac = p(Dt::EtherAddr, "00:0f:54:0c:11:04");
        assert_eq!(mac, Val::Int(0x000f_540c_1104));
        assert_eq!(show(Dt::EtherAddr, &mac), "00:0f:54:0c:11:04");
        assert_eq!(
            show(Dt::EtherAddr, &p(Dt::EtherAddr, "0:1:2:3:4:5")),
            "00:01:02:03:04:05"
        );
        assert!(Dt::EtherAddr.parse("00:0f:54:0c:11", 48).is_err());
        assert!(Dt::EtherAddr.parse("00:0f:54:0c:11:104", 48).is_err());
        assert_eq!(
            Dt::Ipv4Addr.to_json(&Val::Int(0x0102_0304), 32),
            serde_json::json!("1.2.3.4")
        );
    }

    #[test]
    fn conntrack() {
        assert_eq!(p(Dt::CtState, "new"), Val::Int(8));
        assert_eq!(p(Dt::CtState, "established"), Val::Int(2));
        assert_eq!(p(Dt::CtState, "related"), Val::Int(4));
        assert_eq!(p(Dt::CtState, "invalid"), Val::Int(1));
        assert_eq!(p(Dt::CtState, "untracked"), Val::Int(64));
        // ct state 8;ok;ct state new
        assert_eq!(round(Dt::CtState, "8"), "new");
        // ct state new,established, related, untracked;ok;ct state established,related,new,untracked
        assert_eq!(
            show(Dt::CtState, &Val::Int(8 | 2 | 4 | 64)),
            "established,related,new,untracked"
        );
        assert_eq!(
            Dt::CtState.to_json(&Val::Int(2 | 4 | 8), 32),
            serde_json::json!(["established", "related", "new"])
        );
        assert_eq!(
            Dt::CtState.to_json(&Val::Int(2), 32),
            serde_json::json!("established")
        );
        assert!(Dt::CtState.parse("xxx", 32).is_err());
        assert_eq!(p(Dt::CtStatus, "dying"), Val::Int(512));
        assert_eq!(
            show(Dt::CtStatus, &Val::Int(1 | 2 | 4 | 8 | 16 | 32 | 512)),
            "expected,seen-reply,assured,confirmed,snat,dnat,dying"
        );
        assert_eq!(p(Dt::CtDir, "reply"), Val::Int(1));
        assert_eq!(show(Dt::CtDir, &Val::Int(0)), "original");
        // ct event set 1;ok;ct event set new
        assert_eq!(round(Dt::CtEventBit, "1"), "new");
        assert_eq!(
            show(Dt::CtEventBit, &Val::Int(1 | 2 | 4 | 1024)),
            "new,related,destroy,label"
        );
        assert_eq!(show(Dt::CtEventBit, &Val::Int(0)), "0x0");
        assert_eq!(p(Dt::CtLabel, "127"), Val::Int(1 << 127));
        assert_eq!(show(Dt::CtLabel, &Val::Int(1 << 127)), "127");
    }

    #[test]
    fn marks_and_priorities() {
        // ct mark 0;ok;ct mark 0x00000000 and ct mark xor ... ;ct mark 0x00000032
        assert_eq!(round(Dt::Mark, "0"), "0x00000000");
        assert_eq!(round(Dt::Mark, "0x32"), "0x00000032");
        assert_eq!(Dt::Mark.to_json(&Val::Int(0x32), 32), serde_json::json!(50));
        // meta priority 0x87654321;ok;meta priority 8765:4321
        assert_eq!(round(Dt::ClassId, "0x87654321"), "8765:4321");
        assert_eq!(round(Dt::ClassId, "2271560481"), "8765:4321");
        assert_eq!(round(Dt::ClassId, "1:1234"), "1:1234");
        assert_eq!(round(Dt::ClassId, "aabb:0"), "aabb:0");
        assert_eq!(round(Dt::ClassId, "root"), "root");
        assert_eq!(round(Dt::ClassId, "none"), "none");
        assert!(Dt::ClassId.parse("bcad:xyz", 32).is_err());
        assert_eq!(
            Dt::ClassId.to_json(&p(Dt::ClassId, "bcad:dadc"), 32),
            serde_json::json!("bcad:dadc")
        );
        assert_eq!(
            Dt::Priority.parse("-300", 32),
            Ok(Val::Int((-300i32) as u32 as u128))
        );
        assert_eq!(
            show(Dt::Priority, &Val::Int((-300i32) as u32 as u128)),
            "-300"
        );
        assert_eq!(
            Dt::Priority.parse("filter", 32),
            Ok(Val::Str("filter".into()))
        );
    }

    #[test]
    fn time_values() {
        assert_eq!(parse_time_ms("1m7s"), Ok(67_000));
        assert_eq!(parse_time_ms("30000ms"), Ok(30_000));
        assert_eq!(parse_time_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_time_ms("2d"), Ok(172_800_000));
        assert_eq!(parse_time_ms("30"), Ok(30_000));
        assert_eq!(parse_time_ms("1d2h3m4s5ms"), Ok(93_784_005));
        assert_eq!(
            parse_time_ms("1s1s"),
            Err("Second has been specified twice".into())
        );
        assert_eq!(parse_time_ms("1x"), Err("wrong time format".into()));
        assert_eq!(parse_time_ms("123456789s"), Err("value too large".into()));
        // ct expiration != 233;ok;ct expiration != 3m53s
        assert_eq!(round(Dt::Time, "233"), "3m53s");
        assert_eq!(round(Dt::Time, "1m7s"), "1m7s");
        assert_eq!(round(Dt::Time, "0"), "0s");
        assert_eq!(round(Dt::Time, "1500ms"), "1s500ms");
        let t = PrintOpts {
            numeric_time: true,
            ..PrintOpts::default()
        };
        assert_eq!(Dt::Time.print(&Val::Int(67_000), 32, &t), "67s");
        assert_eq!(
            Dt::Time.to_json(&Val::Int(30_000), 32),
            serde_json::json!(30)
        );
    }

    #[test]
    fn clock_values() {
        // meta hour "17:00:00" drop;ok;meta hour "17:00" drop
        assert_eq!(round(Dt::Hour, "17:00:00"), "\"17:00\"");
        assert_eq!(round(Dt::Hour, "17:00:01"), "\"17:00:01\"");
        assert_eq!(round(Dt::Hour, "23:59:60"), "\"00:00\"");
        assert_eq!(
            Dt::Hour.parse_tz("17:00", 32, 7200),
            Ok(Val::Int(15 * 3600))
        );
        assert_eq!(
            Dt::Hour.print_tz(&Val::Int(15 * 3600), 32, &PrintOpts::default(), 7200),
            "\"17:00\""
        );
        assert!(Dt::Hour.parse("25:00", 32).is_err());
        // meta time 12341234 drop;ok;meta time "1970-05-23 22:07:14" drop (listed at UTC+2)
        let v = p(Dt::Date, "12341234");
        assert_eq!(v, Val::Int(12_341_234_000_000_000));
        assert_eq!(
            Dt::Date.print_tz(&v, 64, &PrintOpts::default(), 7200),
            "\"1970-05-23 22:07:14\""
        );
        assert_eq!(show(Dt::Date, &v), "\"1970-05-23 20:07:14\"");
        assert_eq!(
            round(Dt::Date, "2019-06-21 17:00:00"),
            "\"2019-06-21 17:00:00\""
        );
        assert_eq!(
            round(Dt::Date, "2019-07-01 00:01"),
            "\"2019-07-01 00:01:00\""
        );
        assert_eq!(round(Dt::Date, "2019-07-01"), "\"2019-07-01 00:00:00\"");
        assert_eq!(
            Dt::Date.to_json(&p(Dt::Date, "2022-07-01 11:00:00"), 64),
            serde_json::json!("2022-07-01 11:00:00")
        );
        // meta day 6 drop;ok;meta day "Saturday" drop
        assert_eq!(round(Dt::Day, "6"), "\"Saturday\"");
        assert_eq!(p(Dt::Day, "Sunday"), Val::Int(0));
        assert!(Dt::Day
            .parse("Satturday", 8)
            .unwrap_err()
            .contains("Saturday"));
    }

    #[test]
    fn symbolic_integers() {
        assert_eq!(p(Dt::IcmpType, "echo-request"), Val::Int(8));
        assert_eq!(show(Dt::IcmpType, &Val::Int(0)), "echo-reply");
        assert_eq!(show(Dt::IcmpType, &Val::Int(200)), "200");
        assert_eq!(p(Dt::Icmp6Type, "nd-neighbor-solicit"), Val::Int(135));
        // icmpv6 type mld-listener-reduction accept;ok;icmpv6 type mld-listener-done accept
        assert_eq!(
            round(Dt::Icmp6Type, "mld-listener-reduction"),
            "mld-listener-done"
        );
        assert_eq!(p(Dt::IcmpCode, "port-unreachable"), Val::Int(3));
        assert_eq!(p(Dt::IcmpCode, "frag-needed"), Val::Int(4));
        assert_eq!(p(Dt::IcmpCode, "admin-prohibited"), Val::Int(13));
        // icmp code != { prot-unreachable, frag-needed, ...};ok;icmp code != { 2, 4, ...}
        assert_eq!(round(Dt::IcmpCode, "prot-unreachable"), "2");
        assert_eq!(p(Dt::Icmp6Code, "reject-route"), Val::Int(6));
        assert_eq!(p(Dt::IcmpxCode, "admin-prohibited"), Val::Int(3));
        assert_eq!(Dt::IcmpxCode.symbol_name(3), Some("admin-prohibited"));
        assert_eq!(p(Dt::EtherType, "ip6"), Val::Int(0x86dd));
        assert_eq!(p(Dt::EtherType, "vlan"), Val::Int(0x8100));
        assert_eq!(show(Dt::EtherType, &Val::Int(0x8100)), "8021q");
        assert_eq!(show(Dt::EtherType, &Val::Int(0x1234)), "0x1234");
        assert_eq!(p(Dt::NfProto, "ipv6"), Val::Int(10));
        assert_eq!(show(Dt::NfProto, &Val::Int(2)), "ipv4");
        assert_eq!(p(Dt::PktType, "unicast"), Val::Int(0));
        assert_eq!(show(Dt::PktType, &Val::Int(0)), "host");
        assert_eq!(p(Dt::PktType, "other"), Val::Int(3));
        // ip dscp 0x38;ok;ip dscp cs7
        assert_eq!(round(Dt::Dscp, "0x38"), "cs7");
        assert_eq!(p(Dt::Dscp, "af41"), Val::Int(0x22));
        assert_eq!(p(Dt::Dscp, "ef"), Val::Int(0x2e));
        assert_eq!(show(Dt::Dscp, &Val::Int(0x3f)), "0x3f");
        assert_eq!(show(Dt::Dscp, &Val::Int(0)), "cs0");
        assert_eq!(
            Dt::Dscp.parse("64", 6),
            Err("Value 64 exceeds valid range 0-63".into())
        );
        assert_eq!(p(Dt::Ecn, "ce"), Val::Int(3));
        assert_eq!(show(Dt::Ecn, &Val::Int(1)), "ect1");
        assert_eq!(p(Dt::TcpFlag, "syn"), Val::Int(2));
        assert_eq!(show(Dt::TcpFlag, &Val::Int(0x12)), "syn,ack");
        assert_eq!(Dt::TcpFlag.bitmask_names(0x12), Some(vec!["syn", "ack"]));
        assert_eq!(p(Dt::FibAddr, "local"), Val::Int(2));
        assert_eq!(p(Dt::Boolean, "exists"), Val::Int(1));
        assert_eq!(p(Dt::Boolean, "false"), Val::Int(0));
        assert_eq!(show(Dt::Boolean, &Val::Int(0)), "missing");
        assert_eq!(
            Dt::Boolean.to_json(&Val::Int(1), 1),
            serde_json::json!(true)
        );
        assert_eq!(p(Dt::ArpOp, "nak"), Val::Int(10));
        assert_eq!(p(Dt::ArpHrd, "loopback"), Val::Int(772));
        assert_eq!(p(Dt::IgmpType, "leave-group"), Val::Int(0x17));
        assert_eq!(p(Dt::DccpPktType, "syncack"), Val::Int(9));
        assert_eq!(p(Dt::MhType, "home-agent-switch-message"), Val::Int(12));
    }

    #[test]
    fn host_tables_and_strings() {
        // meta iifgroup 0;ok;iifgroup "default"
        assert_eq!(round(Dt::DevGroup, "0"), "\"default\"");
        assert_eq!(p(Dt::DevGroup, "default"), Val::Int(0));
        assert_eq!(round(Dt::DevGroup, "11"), "11");
        assert_eq!(p(Dt::Realm, "cosmos"), Val::Int(0));
        // meta skuid "root";ok;meta skuid 0
        assert_eq!(round(Dt::Uid, "root"), "0");
        assert_eq!(p(Dt::Uid, "bin"), Val::Int(2));
        assert_eq!(p(Dt::Gid, "root"), Val::Int(0));
        assert_eq!(
            Dt::Uid.parse("nosuchuser_x", 32),
            Err("User does not exist".into())
        );
        assert_eq!(p(Dt::IfName, "eth*"), Val::Str("eth*".into()));
        assert_eq!(show(Dt::IfName, &Val::Str("lo".into())), "\"lo\"");
        assert_eq!(
            Dt::IfName.to_json(&Val::Str("lo".into()), 128),
            serde_json::json!("lo")
        );
        assert_eq!(
            Dt::IfIndex.parse("nosuchif0", 32),
            Err("Interface does not exist".into())
        );
    }

    #[test]
    fn verdicts() {
        assert_eq!(p(Dt::Verdict, "accept"), Val::Int(1));
        assert_eq!(p(Dt::Verdict, "drop"), Val::Int(0));
        assert_eq!(p(Dt::Verdict, "jump foo"), Val::Str("jump foo".into()));
        assert_eq!(show(Dt::Verdict, &p(Dt::Verdict, "continue")), "continue");
        assert_eq!(show(Dt::Verdict, &p(Dt::Verdict, "return")), "return");
        assert!(Dt::Verdict
            .parse("acept", 32)
            .unwrap_err()
            .contains("`accept'"));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,40}", bits in 0u32..200) {
            for dt in Dt::all() {
                if let Ok(v) = dt.parse(&s, bits) {
                    let _ = dt.print(&v, bits, &PrintOpts::default());
                    let _ = dt.to_json(&v, bits);
                }
            }
        }

        #[test]
        fn parse_never_panics_on_ascii(s in "[0-9a-fx:.,/ smhdA-Z-]{0,24}", bits in 0u32..130) {
            for dt in Dt::all() {
                let _ = dt.parse(&s, bits);
            }
        }

        #[test]
        fn print_never_panics(n: u128, bits in 0u32..200) {
            for dt in Dt::all() {
                let _ = dt.print(&Val::Int(n), bits, &PrintOpts::default());
                let _ = dt.to_json(&Val::Int(n), bits);
            }
        }

        #[test]
        fn ipv6_round_trips(n: u128) {
            let text = format_ipv6(n);
            proptest::prop_assert_eq!(text.parse::<std::net::Ipv6Addr>().map(u128::from), Ok(n));
        }

        #[test]
        fn time_round_trips(ms in 0u64..u32::MAX as u64) {
            proptest::prop_assert_eq!(parse_time_ms(&format_time_ms(ms)), Ok(ms));
        }
    }
}
