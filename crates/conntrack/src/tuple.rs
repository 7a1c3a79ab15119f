//! Connection tuples, as `struct nf_conntrack_tuple`: addresses, protocol and the two 16-bit
//! protocol words. For TCP, UDP, UDP-Lite, SCTP and DCCP they are the ports; for ICMP and
//! ICMPv6 the source word is the echo identifier and the destination word holds type and code
//! (so a request and its reply hash to the original and reply tuple of one connection); for any
//! other protocol both are zero.

use nft_wire::{IpAddr, PacketMeta};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_DCCP: u8 = 33;
pub const PROTO_GRE: u8 = 47;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_SCTP: u8 = 132;
pub const PROTO_UDPLITE: u8 = 136;

/// The direction of a packet relative to the connection that tracks it (`ct direction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Original = 0,
    Reply = 1,
}

impl Direction {
    pub const fn index(self) -> usize {
        self as usize
    }

    pub const fn opposite(self) -> Direction {
        match self {
            Direction::Original => Direction::Reply,
            Direction::Reply => Direction::Original,
        }
    }

    /// The word nft prints for `ct direction`.
    pub const fn name(self) -> &'static str {
        match self {
            Direction::Original => "original",
            Direction::Reply => "reply",
        }
    }
}

/// Conntrack zone, which keeps otherwise equal tuples apart (overlapping address spaces).
pub type Zone = u16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// Source port, or the ICMP/ICMPv6 echo identifier.
    pub sport: u16,
    /// Destination port, or ICMP type (high byte) and code (low byte).
    pub dport: u16,
}

/// Protocols whose tuple carries ports.
pub fn has_ports(proto: u8) -> bool {
    matches!(
        proto,
        PROTO_TCP | PROTO_UDP | PROTO_UDPLITE | PROTO_SCTP | PROTO_DCCP
    )
}

pub fn is_icmp(proto: u8) -> bool {
    matches!(proto, PROTO_ICMP | PROTO_ICMPV6)
}

/// The ICMP type of the answer to a query that starts a connection, or `None` for types that
/// cannot (`invmap` in nf_conntrack_proto_icmp.c and icmpv6.c).
pub fn icmp_reply_type(proto: u8, ty: u8) -> Option<u8> {
    match (proto, ty) {
        // echo, timestamp, info, address mask
        (PROTO_ICMP, 8) => Some(0),
        (PROTO_ICMP, 0) => Some(8),
        (PROTO_ICMP, 13) => Some(14),
        (PROTO_ICMP, 14) => Some(13),
        (PROTO_ICMP, 15) => Some(16),
        (PROTO_ICMP, 16) => Some(15),
        (PROTO_ICMP, 17) => Some(18),
        (PROTO_ICMP, 18) => Some(17),
        // echo, node information
        (PROTO_ICMPV6, 128) => Some(129),
        (PROTO_ICMPV6, 129) => Some(128),
        (PROTO_ICMPV6, 139) => Some(140),
        (PROTO_ICMPV6, 140) => Some(139),
        _ => None,
    }
}

/// ICMP types that may open a connection (`valid_new`): requests only, so a stray reply is
/// invalid rather than the start of a connection in the wrong direction.
pub fn icmp_valid_new(proto: u8, ty: u8) -> bool {
    matches!(
        (proto, ty),
        (PROTO_ICMP, 8 | 13 | 15 | 17) | (PROTO_ICMPV6, 128 | 139)
    )
}

/// ICMPv6 types the kernel leaves untracked (`noct_valid_new`): MLD and neighbour discovery,
/// which belong to the link, not to a connection.
pub fn icmpv6_untracked(ty: u8) -> bool {
    matches!(ty, 130..=137 | 143)
}

impl Tuple {
    pub fn new(src: IpAddr, dst: IpAddr, proto: u8, sport: u16, dport: u16) -> Tuple {
        Tuple {
            src,
            dst,
            proto,
            sport,
            dport,
        }
    }

    pub fn icmp(src: IpAddr, dst: IpAddr, proto: u8, id: u16, ty: u8, code: u8) -> Tuple {
        Tuple::new(src, dst, proto, id, u16::from_be_bytes([ty, code]))
    }

    /// The same ICMP tuple with another type (code 0).
    pub fn with_icmp_type(&self, ty: u8) -> Tuple {
        Tuple::icmp(self.src, self.dst, self.proto, self.sport, ty, 0)
    }

    pub fn is_ipv4(&self) -> bool {
        self.src.is_ipv4()
    }

    pub fn icmp_id(&self) -> u16 {
        self.sport
    }

    pub fn icmp_type(&self) -> u8 {
        self.dport.to_be_bytes()[0]
    }

    pub fn icmp_code(&self) -> u8 {
        self.dport.to_be_bytes()[1]
    }

    /// The tuple a packet going the other way carries (`nf_ct_invert_tuple`); `None` for an ICMP
    /// type that has no answer.
    pub fn invert(&self) -> Option<Tuple> {
        if is_icmp(self.proto) {
            let ty = icmp_reply_type(self.proto, self.icmp_type())?;
            return Some(Tuple::icmp(
                self.dst,
                self.src,
                self.proto,
                self.sport,
                ty,
                self.icmp_code(),
            ));
        }
        Some(Tuple::new(
            self.dst, self.src, self.proto, self.dport, self.sport,
        ))
    }

    /// The tuple of a parsed IP packet. `None` when the packet is not IP, is a later fragment
    /// (no L4 header: there is no reassembly here) or is an ICMP message without a tuple of its
    /// own (errors, which are looked up through what they quote).
    pub fn from_meta(meta: &PacketMeta) -> Option<Tuple> {
        let (src, dst) = (meta.src_addr?, meta.dst_addr?);
        let proto = u8::from(meta.ip_protocol?);
        if meta.fragment == nft_wire::Fragment::NonFirst {
            return None;
        }
        if is_icmp(proto) {
            let icmp = meta.icmp?;
            return Some(Tuple::icmp(
                src,
                dst,
                proto,
                icmp.ident.unwrap_or(0),
                icmp.msg_type,
                icmp.code,
            ));
        }
        if has_ports(proto) {
            return match meta.ports {
                Some((s, d)) => Some(Tuple::new(src, dst, proto, s, d)),
                // The parser reads ports only for TCP and UDP; tracking the others without
                // them would merge every association between two hosts.
                None if matches!(proto, PROTO_TCP | PROTO_UDP) => None,
                None => Some(Tuple::new(src, dst, proto, 0, 0)),
            };
        }
        Some(Tuple::new(src, dst, proto, 0, 0))
    }

    /// The tuple of the packet an ICMP error quotes, as that packet travelled.
    pub fn from_quoted(meta: &PacketMeta) -> Option<Tuple> {
        let inner = meta.icmp?.inner?;
        let proto = u8::from(inner.protocol);
        if is_icmp(proto) {
            // Only an echo has a tuple. The parser records the identifier of a quoted echo but
            // not whether it was the request or the reply; the request is returned, and
            // `with_icmp_type` gives the other candidate.
            let id = inner.icmp_ident?;
            let ty = if proto == PROTO_ICMP { 8 } else { 128 };
            return Some(Tuple::icmp(
                inner.src_addr,
                inner.dst_addr,
                proto,
                id,
                ty,
                0,
            ));
        }
        if has_ports(proto) {
            let (s, d) = inner.ports?;
            return Some(Tuple::new(inner.src_addr, inner.dst_addr, proto, s, d));
        }
        Some(Tuple::new(inner.src_addr, inner.dst_addr, proto, 0, 0))
    }
}

impl core::fmt::Display for Tuple {
    /// The tuple as `conntrack -L` prints it: `src=.. dst=.. sport=.. dport=..`, `type= code=
    /// id=` for ICMP, nothing after the addresses for other protocols.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "src={} dst={}", self.src, self.dst)?;
        if has_ports(self.proto) {
            write!(f, " sport={} dport={}", self.sport, self.dport)?;
        } else if is_icmp(self.proto) {
            write!(
                f,
                " type={} code={} id={}",
                self.icmp_type(),
                self.icmp_code(),
                self.icmp_id()
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nft_wire::Ipv4Addr;

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn invert_ports_and_icmp() {
        let t = Tuple::new(a("10.0.0.1"), a("10.0.0.2"), PROTO_TCP, 1000, 80);
        let r = t.invert().unwrap();
        assert_eq!(
            r,
            Tuple::new(a("10.0.0.2"), a("10.0.0.1"), PROTO_TCP, 80, 1000)
        );
        assert_eq!(r.invert().unwrap(), t);

        let e = Tuple::icmp(a("10.0.0.1"), a("10.0.0.2"), PROTO_ICMP, 77, 8, 0);
        let r = e.invert().unwrap();
        assert_eq!((r.icmp_type(), r.icmp_code(), r.icmp_id()), (0, 0, 77));
        assert_eq!(r.src, a("10.0.0.2"));
        // Destination unreachable has no answer.
        assert_eq!(
            Tuple::icmp(a("10.0.0.1"), a("10.0.0.2"), PROTO_ICMP, 0, 3, 1).invert(),
            None
        );
        let v6 = Tuple::icmp(a("2001:db8::1"), a("2001:db8::2"), PROTO_ICMPV6, 5, 128, 0);
        assert_eq!(v6.invert().unwrap().icmp_type(), 129);
    }

    #[test]
    fn display_like_conntrack() {
        let t = Tuple::new(
            IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10)),
            a("203.0.113.5"),
            PROTO_TCP,
            40000,
            443,
        );
        assert_eq!(
            t.to_string(),
            "src=192.168.1.10 dst=203.0.113.5 sport=40000 dport=443"
        );
        let e = Tuple::icmp(a("10.0.0.1"), a("10.0.0.2"), PROTO_ICMP, 77, 8, 0);
        assert_eq!(
            e.to_string(),
            "src=10.0.0.1 dst=10.0.0.2 type=8 code=0 id=77"
        );
        let g = Tuple::new(a("10.0.0.1"), a("10.0.0.2"), PROTO_GRE, 0, 0);
        assert_eq!(g.to_string(), "src=10.0.0.1 dst=10.0.0.2");
    }
}
