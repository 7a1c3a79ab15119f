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
}

/// A constant value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Val {
    Int(u128),
    Str(String),
}

impl Dt {
    /// nft's name for the type, as in `type ipv4_addr` (`ipv4_addr`, `inet_service`, ...).
    pub fn name(self) -> &'static str {
        "invalid"
    }

    /// The human description used in error messages ("IPv4 address", "internet network service").
    pub fn desc(self) -> &'static str {
        "invalid"
    }

    /// Lookup by nft name (`type ...` of sets and maps).
    pub fn by_name(_name: &str) -> Option<Dt> {
        None
    }

    /// Natural size in bits (0 for variable-length types such as `string`).
    pub fn bits(self) -> u32 {
        0
    }

    pub fn byteorder(self) -> ByteOrder {
        ByteOrder::Big
    }

    /// True for types printed as a comma-separated list of flag names (`ct state`, `tcp flags`).
    pub fn is_bitmask(self) -> bool {
        false
    }

    /// True for types whose values are strings (`ifname`, `string`).
    pub fn is_string(self) -> bool {
        false
    }

    /// Parses one literal or symbol (`22`, `ssh`, `0x10`, `10.0.0.1`, `established`,
    /// `"lo"` already unquoted, `1m7s`) for a field `bits` wide. Errors are nft's messages
    /// without location, e.g. `Could not resolve service: Servname not found in nft services list`.
    pub fn parse(self, _text: &str, _bits: u32) -> Result<Val, String> {
        Err("not implemented".into())
    }

    /// Prints a value as `nft list ruleset` does.
    pub fn print(self, v: &Val, _bits: u32, _opts: &PrintOpts) -> String {
        match v {
            Val::Int(i) => i.to_string(),
            Val::Str(s) => format!("\"{s}\""),
        }
    }

    /// The value as libnftables JSON prints it (numbers as numbers, symbols as strings,
    /// bitmasks as a string or a list of strings).
    pub fn to_json(self, v: &Val, bits: u32) -> serde_json::Value {
        match v {
            Val::Int(i) => serde_json::Value::from(*i as u64),
            Val::Str(s) => {
                let _ = bits;
                serde_json::Value::from(s.clone())
            }
        }
    }
}

impl fmt::Display for Dt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
