//! rtnetlink, synchronously: what `run` reads from the kernel (links, addresses, routes of the
//! main table, neighbours), the changes it follows while running, and the neighbour
//! resolutions it asks for (`RTM_NEWNEIGH` with `NTF_USE`, as `ip neigh ... use` does).
//!
//! Built on netlink-packet-route (messages) and netlink-sys (the socket): no raw memory access here.

use std::collections::HashMap;
use std::net::IpAddr;

use anyhow::{bail, Context, Result};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteType, RouteVia,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use nft_engine::topology::Mac;

/// The main routing table (`RT_TABLE_MAIN`).
const RT_TABLE_MAIN: u32 = 254;

// Multicast groups (`RTNLGRP_*`): links, neighbours, IPv4/IPv6 addresses and routes.
const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_NEIGH: u32 = 3;
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV4_ROUTE: u32 = 7;
const RTNLGRP_IPV6_IFADDR: u32 = 9;
const RTNLGRP_IPV6_ROUTE: u32 = 11;

/// A network interface as the kernel describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub ifindex: u32,
    pub name: String,
    pub mac: Mac,
    pub mtu: u32,
    /// Administratively up and with its carrier (IFF_UP and IFF_LOWER_UP).
    pub up: bool,
    /// The link kind (`IFLA_INFO_KIND`: "veth", "vlan"...), empty for a physical NIC.
    pub kind: String,
}

/// An address of an interface (link-local ones are left out: they are neither masqueraded to
/// nor routed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub len: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KRouteKind {
    Unicast { oif: u32, via: Option<IpAddr> },
    Blackhole,
    Unreachable,
}

/// A route of the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KRoute {
    pub dst: IpAddr,
    pub len: u8,
    pub kind: KRouteKind,
}

/// A neighbour entry: `mac` is None while unresolved or after resolution failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neigh {
    pub ifindex: u32,
    pub ip: IpAddr,
    pub mac: Option<Mac>,
    /// The kernel gave up (`FAILED`), as opposed to still resolving (`INCOMPLETE`).
    pub failed: bool,
}

/// A change the kernel announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Link(Link),
    LinkGone(u32),
    AddrNew(Addr),
    AddrGone(Addr),
    RouteNew(KRoute),
    RouteGone(KRoute),
    NeighNew(Neigh),
    NeighGone(Neigh),
}

/// What the kernel has now.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub links: HashMap<u32, Link>,
    pub addrs: Vec<Addr>,
    pub routes: Vec<KRoute>,
    pub neighbours: Vec<Neigh>,
}

impl Snapshot {
    pub fn link_by_name(&self, name: &str) -> Option<&Link> {
        self.links.values().find(|l| l.name == name)
    }
}

fn mac6(b: &[u8]) -> Option<Mac> {
    <[u8; 6]>::try_from(b).ok()
}

pub fn parse_link(m: &LinkMessage) -> Option<Link> {
    let mut name = None;
    let mut mac = [0u8; 6];
    let mut mtu = 1500;
    let mut kind = String::new();
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Address(b) => mac = mac6(b).unwrap_or([0; 6]),
            LinkAttribute::Mtu(v) => mtu = *v,
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let netlink_packet_route::link::LinkInfo::Kind(k) = i {
                        kind = k.to_string();
                    }
                }
            }
            _ => {}
        }
    }
    // IFF_LOWER_UP is the carrier as it is now; the operational state follows it up to a
    // second later (the kernel's link watch), so it is not looked at: a link just brought up
    // would otherwise count as down until then
    let flags = m.header.flags;
    let up = flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::LowerUp);
    Some(Link {
        ifindex: m.header.index,
        name: name?,
        mac,
        mtu,
        up,
        kind,
    })
}

fn is_link_local(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => v.is_link_local(),
        IpAddr::V6(v) => v.segments()[0] & 0xffc0 == 0xfe80,
    }
}

pub fn parse_addr(m: &AddressMessage) -> Option<Addr> {
    if m.header.scope == AddressScope::Link || m.header.scope == AddressScope::Host {
        return None;
    }
    // IFA_LOCAL is the address itself (IFA_ADDRESS is the peer's on point-to-point links)
    let mut addr = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(x) => addr = Some(*x),
            AddressAttribute::Address(x) if addr.is_none() => addr = Some(*x),
            _ => {}
        }
    }
    let addr = addr.filter(|a| !is_link_local(*a) && !a.is_loopback())?;
    Some(Addr {
        ifindex: m.header.index,
        addr,
        len: m.header.prefix_len,
    })
}

fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

pub fn parse_route(m: &RouteMessage) -> Option<KRoute> {
    let v6 = match m.header.address_family {
        AddressFamily::Inet => false,
        AddressFamily::Inet6 => true,
        _ => return None,
    };
    let mut table = u32::from(m.header.table);
    let mut dst = None;
    let mut via = None;
    let mut oif = None;
    for a in &m.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => dst = route_addr(d),
            RouteAttribute::Gateway(g) => via = route_addr(g),
            RouteAttribute::Via(RouteVia::Inet(v)) => via = Some(IpAddr::V4(*v)),
            RouteAttribute::Via(RouteVia::Inet6(v)) => via = Some(IpAddr::V6(*v)),
            RouteAttribute::Oif(o) => oif = Some(*o),
            _ => {}
        }
    }
    if table != RT_TABLE_MAIN {
        return None;
    }
    let len = m.header.destination_prefix_length;
    let dst = dst.unwrap_or(if v6 {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    });
    // per-interface link-local and multicast prefixes say nothing the router forwards by
    if len > 0 && (is_link_local(dst) || dst.is_multicast()) {
        return None;
    }
    let kind = match m.header.kind {
        RouteType::Unicast => KRouteKind::Unicast { oif: oif?, via },
        RouteType::BlackHole => KRouteKind::Blackhole,
        RouteType::Unreachable | RouteType::Prohibit => KRouteKind::Unreachable,
        _ => return None,
    };
    Some(KRoute { dst, len, kind })
}

pub fn parse_neigh(m: &NeighbourMessage) -> Option<Neigh> {
    let mut ip = None;
    let mut mac = None;
    for a in &m.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v)) => ip = Some(IpAddr::V4(*v)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v)) => {
                ip = Some(IpAddr::V6(*v))
            }
            NeighbourAttribute::LinkLayerAddress(b) => mac = mac6(b),
            _ => {}
        }
    }
    let st = m.header.state;
    let usable = matches!(
        st,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
            | NeighbourState::Noarp
    );
    Some(Neigh {
        ifindex: m.header.ifindex,
        ip: ip?,
        mac: mac.filter(|_| usable),
        failed: st == NeighbourState::Failed,
    })
}

fn event(msg: RouteNetlinkMessage) -> Option<Event> {
    use RouteNetlinkMessage as M;
    Some(match msg {
        M::NewLink(m) => Event::Link(parse_link(&m)?),
        M::DelLink(m) => Event::LinkGone(m.header.index),
        M::NewAddress(m) => Event::AddrNew(parse_addr(&m)?),
        M::DelAddress(m) => Event::AddrGone(parse_addr(&m)?),
        M::NewRoute(m) => Event::RouteNew(parse_route(&m)?),
        M::DelRoute(m) => Event::RouteGone(parse_route(&m)?),
        M::NewNeighbour(m) => Event::NeighNew(parse_neigh(&m)?),
        M::DelNeighbour(m) => Event::NeighGone(parse_neigh(&m)?),
        _ => return None,
    })
}

/// A NETLINK_ROUTE socket.
pub struct Netlink {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// A socket for requests (dumps, neighbour resolution).
    pub fn open() -> Result<Netlink> {
        let mut sock = Socket::new(NETLINK_ROUTE).context("opening a NETLINK_ROUTE socket")?;
        sock.bind_auto().context("binding the netlink socket")?;
        sock.connect(&SocketAddr::new(0, 0))
            .context("connecting the netlink socket")?;
        Ok(Netlink {
            sock,
            seq: 0,
            buf: Vec::with_capacity(1 << 16),
        })
    }

    /// A socket subscribed to link, address, route and neighbour changes.
    pub fn monitor() -> Result<Netlink> {
        let nl = Netlink::open()?;
        let _ = nl.sock.set_rx_buf_sz(4 << 20);
        for g in [
            RTNLGRP_LINK,
            RTNLGRP_NEIGH,
            RTNLGRP_IPV4_IFADDR,
            RTNLGRP_IPV4_ROUTE,
            RTNLGRP_IPV6_IFADDR,
            RTNLGRP_IPV6_ROUTE,
        ] {
            nl.sock
                .add_membership(g)
                .with_context(|| format!("joining rtnetlink group {g}"))?;
        }
        Ok(nl)
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut hdr = NetlinkHeader::default();
        hdr.flags = flags;
        hdr.sequence_number = self.seq;
        let mut m = NetlinkMessage::new(hdr, NetlinkPayload::InnerMessage(msg));
        m.finalize();
        let mut out = vec![0u8; m.buffer_len()];
        m.serialize(&mut out);
        self.sock.send(&out, 0).context("netlink send")?;
        Ok(self.seq)
    }

    /// Reads one datagram and hands each message in it to `f`.
    fn recv(&mut self, mut f: impl FnMut(NetlinkMessage<RouteNetlinkMessage>)) -> Result<()> {
        self.buf.clear();
        self.sock.recv(&mut self.buf, 0).context("netlink recv")?;
        let mut off = 0;
        while off + 16 <= self.buf.len() {
            let len =
                u32::from_ne_bytes(self.buf[off..off + 4].try_into().unwrap_or([0; 4])) as usize;
            if len < 16 || off + len > self.buf.len() {
                break;
            }
            if let Ok(m) =
                NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..off + len])
            {
                f(m);
            }
            off += (len + 3) & !3;
        }
        Ok(())
    }

    /// A dump request: every message until NLMSG_DONE.
    fn dump(&mut self, msg: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_DUMP)?;
        let mut out = vec![];
        let mut done = false;
        let mut err = None;
        while !done {
            self.recv(|m| {
                if m.header.sequence_number != seq {
                    return;
                }
                match m.payload {
                    NetlinkPayload::InnerMessage(i) => out.push(i),
                    NetlinkPayload::Done(_) => done = true,
                    NetlinkPayload::Error(e) => {
                        err = e.code;
                        done = true;
                    }
                    _ => {}
                }
            })?;
        }
        if let Some(code) = err {
            bail!("netlink dump failed: error {}", code);
        }
        Ok(out)
    }

    /// Links, addresses, main-table routes and neighbours, as they are now.
    pub fn snapshot(&mut self) -> Result<Snapshot> {
        let mut s = Snapshot::default();
        for m in self.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))? {
            if let RouteNetlinkMessage::NewLink(l) = m {
                if let Some(l) = parse_link(&l) {
                    s.links.insert(l.ifindex, l);
                }
            }
        }
        for m in self.dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))? {
            if let RouteNetlinkMessage::NewAddress(a) = m {
                s.addrs.extend(parse_addr(&a));
            }
        }
        for fam in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut q = RouteMessage::default();
            q.header.address_family = fam;
            for m in self.dump(RouteNetlinkMessage::GetRoute(q))? {
                if let RouteNetlinkMessage::NewRoute(r) = m {
                    s.routes.extend(parse_route(&r));
                }
            }
        }
        for m in self.dump(RouteNetlinkMessage::GetNeighbour(
            NeighbourMessage::default(),
        ))? {
            if let RouteNetlinkMessage::NewNeighbour(n) = m {
                s.neighbours.extend(parse_neigh(&n));
            }
        }
        Ok(s)
    }

    /// Has the kernel resolve `ip` on interface `ifindex` (ARP or neighbour solicitation):
    /// `RTM_NEWNEIGH` with `NTF_USE` creates the entry if needed and starts resolution; the
    /// answer arrives as a neighbour event.
    pub fn resolve(&mut self, ifindex: u32, ip: IpAddr) -> Result<()> {
        let mut m = NeighbourMessage::default();
        m.header.family = if ip.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        m.header.ifindex = ifindex;
        m.header.state = NeighbourState::None;
        m.header.flags = NeighbourFlags::Use;
        m.attributes.push(NeighbourAttribute::Destination(match ip {
            IpAddr::V4(v) => NeighbourAddress::Inet(v),
            IpAddr::V6(v) => NeighbourAddress::Inet6(v),
        }));
        let seq = self.send(
            RouteNetlinkMessage::NewNeighbour(m),
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK,
        )?;
        let mut result = None;
        while result.is_none() {
            self.recv(|m| {
                if m.header.sequence_number == seq {
                    if let NetlinkPayload::Error(e) = m.payload {
                        result = Some(e.code);
                    }
                }
            })?;
        }
        match result.flatten() {
            None => Ok(()),
            Some(code) => bail!("resolving {ip} on ifindex {ifindex}: netlink error {code}"),
        }
    }

    /// Blocks until the kernel announces changes; returns them.
    pub fn events(&mut self) -> Result<Vec<Event>> {
        let mut out = vec![];
        self.recv(|m| {
            if let NetlinkPayload::InnerMessage(i) = m.payload {
                out.extend(event(i));
            }
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::neighbour::NeighbourState;
    use netlink_packet_route::route::RouteHeader;

    #[test]
    fn routes_of_the_main_table_only() {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.kind = RouteType::Unicast;
        m.header.destination_prefix_length = 24;
        m.attributes = vec![
            RouteAttribute::Destination(RouteAddress::Inet("198.18.5.0".parse().unwrap())),
            RouteAttribute::Gateway(RouteAddress::Inet("198.18.1.9".parse().unwrap())),
            RouteAttribute::Oif(7),
        ];
        assert_eq!(
            parse_route(&m),
            Some(KRoute {
                dst: "198.18.5.0".parse().unwrap(),
                len: 24,
                kind: KRouteKind::Unicast {
                    oif: 7,
                    via: Some("198.18.1.9".parse().unwrap())
                }
            })
        );
        // the local table is the kernel's business
        m.attributes.push(RouteAttribute::Table(255));
        assert_eq!(parse_route(&m), None);
        // a default IPv6 blackhole
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet6;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.kind = RouteType::BlackHole;
        assert_eq!(
            parse_route(&m),
            Some(KRoute {
                dst: "::".parse().unwrap(),
                len: 0,
                kind: KRouteKind::Blackhole
            })
        );
        // fe80::/64 on each interface says nothing about forwarding
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet6;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.kind = RouteType::Unicast;
        m.header.destination_prefix_length = 64;
        m.attributes = vec![
            RouteAttribute::Destination(RouteAddress::Inet6("fe80::".parse().unwrap())),
            RouteAttribute::Oif(2),
        ];
        assert_eq!(parse_route(&m), None);
    }

    #[test]
    fn neighbour_states() {
        let mut m = NeighbourMessage::default();
        m.header.ifindex = 3;
        m.attributes = vec![
            NeighbourAttribute::Destination(NeighbourAddress::Inet("198.18.1.2".parse().unwrap())),
            NeighbourAttribute::LinkLayerAddress(vec![2, 0, 0, 0, 0, 9]),
        ];
        for (st, mac, failed) in [
            (NeighbourState::Reachable, true, false),
            (NeighbourState::Stale, true, false),
            (NeighbourState::Incomplete, false, false),
            (NeighbourState::Failed, false, true),
        ] {
            m.header.state = st;
            let n = parse_neigh(&m).unwrap();
            assert_eq!(n.mac.is_some(), mac, "{st:?}");
            assert_eq!(n.failed, failed);
            assert_eq!(n.ifindex, 3);
        }
    }

    #[test]
    fn link_up_needs_carrier() {
        let mut m = LinkMessage::default();
        m.header.index = 5;
        m.header.flags = LinkFlags::Up | LinkFlags::LowerUp;
        m.attributes = vec![
            LinkAttribute::IfName("wan".into()),
            LinkAttribute::Address(vec![2, 0, 0, 0, 0, 5]),
            LinkAttribute::Mtu(1492),
            LinkAttribute::OperState(netlink_packet_route::link::State::Down),
            LinkAttribute::LinkInfo(vec![netlink_packet_route::link::LinkInfo::Kind(
                netlink_packet_route::link::InfoKind::Veth,
            )]),
        ];
        let l = parse_link(&m).unwrap();
        assert_eq!(
            l,
            Link {
                ifindex: 5,
                name: "wan".into(),
                mac: [2, 0, 0, 0, 0, 5],
                mtu: 1492,
                up: true,
                kind: "veth".into(),
            }
        );
        m.header.flags = LinkFlags::Up;
        assert!(!parse_link(&m).unwrap().up);
    }
}
