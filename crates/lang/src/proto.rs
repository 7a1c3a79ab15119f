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
}

pub fn protocol(name: &str) -> Option<&'static Proto> {
    let _ = name;
    None
}

pub fn payload_field(proto: &str, field: &str) -> Option<&'static Field> {
    let _ = (proto, field);
    None
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

pub fn meta_key(name: &str) -> Option<&'static MetaKey> {
    let _ = name;
    None
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

pub fn ct_key(name: &str) -> Option<&'static CtKey> {
    let _ = name;
    None
}

/// An IPv6 extension header field (`frag more-fragments`).
pub fn exthdr_field(hdr: &str, field: &str) -> Option<&'static Field> {
    let _ = (hdr, field);
    None
}

/// A TCP option field (`tcp option maxseg size`).
pub fn tcpopt_field(opt: &str, field: &str) -> Option<&'static Field> {
    let _ = (opt, field);
    None
}
