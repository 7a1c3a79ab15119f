//! The router's surroundings: interfaces (with VLAN, QinQ or PPPoE encapsulation over a parent
//! port), routes and static neighbours, read from TOML.
//!
//! ```toml
//! [[interface]]
//! name = "lan"
//! mac = "02:00:00:00:01:01"
//! addresses = ["192.168.1.1/24", "fd00:1::1/64"]
//!
//! [[interface]]
//! name = "wan"
//! mac = "02:00:00:00:02:01"
//! addresses = ["198.18.0.2/24"]
//! mtu = 1492
//! pppoe = { parent = "eth1", session = 0x1234, peer_mac = "02:00:00:00:02:fe" }
//!
//! [[route]]
//! dst = "0.0.0.0/0"
//! via = "198.18.0.1"
//! dev = "wan"
//!
//! [[neighbour]]
//! ip = "198.18.0.1"
//! mac = "02:00:00:00:02:fe"
//! dev = "wan"
//! ```

// foldhash rather than SipHash: neighbours are looked up per forwarded packet.
use crate::HashMap;
use std::net::IpAddr;

use serde::Deserialize;

use crate::fib::{Fib, NextHop, RouteKind};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopologyError {
    #[error("{0}")]
    Toml(String),
    #[error("interface {iface}: {what}")]
    Interface { iface: String, what: String },
    #[error("route {dst}: {what}")]
    Route { dst: String, what: String },
    #[error("neighbour {ip}: {what}")]
    Neighbour { ip: String, what: String },
}

pub type Mac = [u8; 6];

pub fn parse_mac(s: &str) -> Option<Mac> {
    let mut out = [0u8; 6];
    let mut n = 0;
    for part in s.split(':') {
        if n == 6 || part.is_empty() || part.len() > 2 {
            return None;
        }
        out[n] = u8::from_str_radix(part, 16).ok()?;
        n += 1;
    }
    (n == 6).then_some(out)
}

pub fn format_mac(m: &Mac) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// `10.0.0.1/24` → (address, 24)
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (a, l) = s.split_once('/')?;
    let addr: IpAddr = a.parse().ok()?;
    let len: u8 = l.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Encap {
    /// Plain Ethernet on its own port.
    None,
    /// 802.1Q tag over a parent port.
    Vlan { parent: String, id: u16 },
    /// 802.1ad outer tag and 802.1Q inner tag over a parent port.
    QinQ {
        parent: String,
        outer: u16,
        inner: u16,
    },
    /// A PPPoE session over a parent port, to the access concentrator's MAC.
    Pppoe {
        parent: String,
        session: u16,
        peer_mac: Mac,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub index: usize,
    pub name: String,
    pub mac: Mac,
    pub addresses: Vec<(IpAddr, u8)>,
    pub mtu: u16,
    pub encap: Encap,
    pub up: bool,
    /// The link kind (`meta iifkind`/`oifkind`, the kernel's `rtnl_link_ops->kind`): "veth",
    /// "vlan", "ppp", "bridge", "dummy"...; empty for a physical NIC, which has none.
    pub kind: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub ip: IpAddr,
    pub mac: Mac,
    pub ifindex: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticRoute {
    pub prefix: IpAddr,
    pub len: u8,
    pub kind: RouteKind,
}

#[derive(Debug)]
pub struct Topology {
    pub interfaces: Vec<Interface>,
    pub routes: Vec<StaticRoute>,
    pub neighbours: HashMap<(usize, IpAddr), Mac>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    #[serde(default)]
    interface: Vec<RawInterface>,
    #[serde(default)]
    route: Vec<RawRoute>,
    #[serde(default)]
    neighbour: Vec<RawNeighbour>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterface {
    name: String,
    mac: String,
    #[serde(default)]
    addresses: Vec<String>,
    mtu: Option<u16>,
    vlan: Option<RawVlan>,
    qinq: Option<RawQinQ>,
    pppoe: Option<RawPppoe>,
    /// The link kind; by default "vlan" for VLAN and QinQ interfaces, "ppp" for PPPoE
    /// sessions, none for others (a physical NIC).
    kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVlan {
    parent: String,
    id: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQinQ {
    parent: String,
    outer: u16,
    inner: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPppoe {
    parent: String,
    session: u16,
    peer_mac: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    dst: String,
    via: Option<String>,
    dev: Option<String>,
    /// "unicast" (default), "blackhole", "unreachable"
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNeighbour {
    ip: String,
    mac: String,
    dev: String,
}

/// toml's rendering of `e`: its place, the line and a caret, then what is wrong. toml names
/// nothing for a value missing at the end of the text (`name = `), so that says so.
fn toml_error(text: &str, e: &toml::de::Error) -> TopologyError {
    let s = e.to_string();
    if !e.message().trim().is_empty() {
        return TopologyError::Toml(s);
    }
    let at_end = e.span().is_some_and(|sp| sp.start >= text.trim_end().len());
    let what = if at_end {
        "unexpected end of file"
    } else {
        "syntax error"
    };
    TopologyError::Toml(format!("{}\n{what}\n", s.trim_end_matches('\n')))
}

impl Topology {
    pub fn from_toml(text: &str) -> Result<Topology, TopologyError> {
        let raw: RawTopology = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        let mut interfaces = Vec::new();
        for (index, ri) in raw.interface.into_iter().enumerate() {
            let ierr = |what: String| TopologyError::Interface {
                iface: ri.name.clone(),
                what,
            };
            if interfaces.iter().any(|i: &Interface| i.name == ri.name) {
                return Err(ierr("defined twice".into()));
            }
            let mac =
                parse_mac(&ri.mac).ok_or_else(|| ierr(format!("bad MAC address {:?}", ri.mac)))?;
            let mut addresses = vec![];
            for a in &ri.addresses {
                addresses.push(
                    parse_cidr(a)
                        .ok_or_else(|| ierr(format!("bad address {a:?} (want ADDR/LEN)")))?,
                );
            }
            let encaps = [ri.vlan.is_some(), ri.qinq.is_some(), ri.pppoe.is_some()]
                .iter()
                .filter(|x| **x)
                .count();
            if encaps > 1 {
                return Err(ierr("only one of vlan, qinq, pppoe may be given".into()));
            }
            let encap = if let Some(v) = ri.vlan {
                if v.id == 0 || v.id > 4094 {
                    return Err(ierr(format!("VLAN id {} out of range 1-4094", v.id)));
                }
                Encap::Vlan {
                    parent: v.parent,
                    id: v.id,
                }
            } else if let Some(q) = ri.qinq {
                for id in [q.outer, q.inner] {
                    if id == 0 || id > 4094 {
                        return Err(ierr(format!("VLAN id {id} out of range 1-4094")));
                    }
                }
                Encap::QinQ {
                    parent: q.parent,
                    outer: q.outer,
                    inner: q.inner,
                }
            } else if let Some(p) = ri.pppoe {
                let peer = parse_mac(&p.peer_mac)
                    .ok_or_else(|| ierr(format!("bad PPPoE peer MAC {:?}", p.peer_mac)))?;
                if p.session == 0 || p.session == 0xffff {
                    return Err(ierr(format!(
                        "PPPoE session id {:#x} is reserved",
                        p.session
                    )));
                }
                Encap::Pppoe {
                    parent: p.parent,
                    session: p.session,
                    peer_mac: peer,
                }
            } else {
                Encap::None
            };
            let default_mtu = if matches!(encap, Encap::Pppoe { .. }) {
                1492
            } else {
                1500
            };
            let mtu = ri.mtu.unwrap_or(default_mtu);
            if mtu < 68 {
                return Err(ierr(format!("MTU {mtu} is below the IPv4 minimum of 68")));
            }
            let kind = match (ri.kind, &encap) {
                (Some(k), _) => k,
                (None, Encap::Vlan { .. } | Encap::QinQ { .. }) => "vlan".into(),
                (None, Encap::Pppoe { .. }) => "ppp".into(),
                (None, Encap::None) => String::new(),
            };
            // IFNAMSIZ, as the kernel's kind strings fit
            if kind.len() > 15 {
                return Err(ierr(format!("link kind {kind:?} is longer than 15 bytes")));
            }
            interfaces.push(Interface {
                index,
                name: ri.name,
                mac,
                addresses,
                mtu,
                encap,
                up: true,
                kind,
            });
        }
        let by_name = |n: &str| interfaces.iter().find(|i| i.name == n).map(|i| i.index);
        let mut routes = vec![];
        for rr in raw.route {
            let rerr = |what: String| TopologyError::Route {
                dst: rr.dst.clone(),
                what,
            };
            let (prefix, len) = if rr.dst == "default" {
                (IpAddr::from([0, 0, 0, 0]), 0)
            } else {
                parse_cidr(&rr.dst).ok_or_else(|| rerr("bad destination (want ADDR/LEN)".into()))?
            };
            let kind = match rr.kind.as_deref().unwrap_or("unicast") {
                "unicast" => {
                    let via = match &rr.via {
                        Some(v) => Some(
                            v.parse::<IpAddr>()
                                .map_err(|_| rerr(format!("bad gateway {v:?}")))?,
                        ),
                        None => None,
                    };
                    if via.is_some_and(|v| v.is_ipv4() != prefix.is_ipv4()) {
                        return Err(rerr(
                            "gateway and destination are of different families".into(),
                        ));
                    }
                    let dev = match &rr.dev {
                        Some(d) => by_name(d).ok_or_else(|| rerr(format!("no interface {d:?}")))?,
                        None => {
                            // the interface whose subnet holds the gateway
                            let v = via.ok_or_else(|| {
                                rerr("needs a gateway (via) or an interface (dev)".into())
                            })?;
                            interfaces
                                .iter()
                                .find(|i| i.addresses.iter().any(|(a, l)| same_subnet(*a, v, *l)))
                                .map(|i| i.index)
                                .ok_or_else(|| {
                                    rerr(format!("gateway {v} is on no interface's subnet"))
                                })?
                        }
                    };
                    RouteKind::Unicast(NextHop { ifindex: dev, via })
                }
                "blackhole" => RouteKind::Blackhole,
                "unreachable" => RouteKind::Unreachable,
                other => return Err(rerr(format!("unknown route type {other:?}"))),
            };
            routes.push(StaticRoute { prefix, len, kind });
        }
        let mut neighbours = HashMap::default();
        for rn in raw.neighbour {
            let nerr = |what: String| TopologyError::Neighbour {
                ip: rn.ip.clone(),
                what,
            };
            let ip: IpAddr = rn.ip.parse().map_err(|_| nerr("bad address".into()))?;
            let mac =
                parse_mac(&rn.mac).ok_or_else(|| nerr(format!("bad MAC address {:?}", rn.mac)))?;
            let dev = by_name(&rn.dev).ok_or_else(|| nerr(format!("no interface {:?}", rn.dev)))?;
            neighbours.insert((dev, ip), mac);
        }
        Ok(Topology {
            interfaces,
            routes,
            neighbours,
        })
    }

    pub fn interface(&self, name: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.name == name)
    }

    /// The FIB: connected subnets, the router's own addresses, then the static routes.
    pub fn build_fib(&self) -> Fib {
        let mut fib = Fib::new();
        for i in self.interfaces.iter().filter(|i| i.up) {
            for (a, l) in &i.addresses {
                let _ = fib.insert(
                    *a,
                    *l,
                    RouteKind::Unicast(NextHop {
                        ifindex: i.index,
                        via: None,
                    }),
                );
            }
        }
        for r in &self.routes {
            if let RouteKind::Unicast(h) = &r.kind {
                if !self.interfaces[h.ifindex].up {
                    continue;
                }
            }
            let _ = fib.insert(r.prefix, r.len, r.kind.clone());
        }
        for i in self.interfaces.iter().filter(|i| i.up) {
            for (a, _) in &i.addresses {
                let full = if a.is_ipv4() { 32 } else { 128 };
                let _ = fib.insert(*a, full, RouteKind::Local(i.index));
            }
        }
        fib
    }
}

pub fn same_subnet(a: IpAddr, b: IpAddr, len: u8) -> bool {
    match (a, b) {
        (IpAddr::V4(x), IpAddr::V4(y)) => {
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - len.min(32))
            };
            u32::from(x) & m == u32::from(y) & m
        }
        (IpAddr::V6(x), IpAddr::V6(y)) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len.min(128))
            };
            u128::from(x) & m == u128::from(y) & m
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: &str = r#"
[[interface]]
name = "lan"
mac = "02:00:00:00:01:01"
addresses = ["192.168.1.1/24", "fd00:1::1/64"]

[[interface]]
name = "wan"
mac = "02:00:00:00:02:01"
addresses = ["198.18.0.2/24", "2001:db8:ffff::2/64"]
pppoe = { parent = "eth1", session = 0x1234, peer_mac = "02:00:00:00:02:fe" }

[[route]]
dst = "default"
via = "198.18.0.1"

[[route]]
dst = "::/0"
via = "2001:db8:ffff::1"
dev = "wan"

[[route]]
dst = "203.0.113.0/24"
type = "blackhole"

[[neighbour]]
ip = "198.18.0.1"
mac = "02:00:00:00:02:fe"
dev = "wan"
"#;

    #[test]
    fn home_router() {
        let t = Topology::from_toml(HOME).unwrap();
        assert_eq!(t.interfaces.len(), 2);
        let wan = t.interface("wan").unwrap();
        assert_eq!(wan.mtu, 1492);
        assert_eq!(
            wan.encap,
            Encap::Pppoe {
                parent: "eth1".into(),
                session: 0x1234,
                peer_mac: [2, 0, 0, 0, 2, 0xfe]
            }
        );
        let fib = t.build_fib();
        let hop = |ifindex, via: Option<&str>| {
            RouteKind::Unicast(NextHop {
                ifindex,
                via: via.map(|v| v.parse().unwrap()),
            })
        };
        assert_eq!(
            fib.lookup("8.8.8.8".parse().unwrap()).unwrap().0,
            &hop(1, Some("198.18.0.1"))
        );
        assert_eq!(
            fib.lookup("192.168.1.77".parse().unwrap()).unwrap().0,
            &hop(0, None)
        );
        assert_eq!(
            fib.lookup("192.168.1.1".parse().unwrap()).unwrap().0,
            &RouteKind::Local(0)
        );
        assert_eq!(
            fib.lookup("203.0.113.9".parse().unwrap()).unwrap().0,
            &RouteKind::Blackhole
        );
        assert_eq!(
            fib.lookup("2001:db8:5::1".parse().unwrap()).unwrap().0,
            &hop(1, Some("2001:db8:ffff::1"))
        );
        assert_eq!(
            t.neighbours.get(&(1, "198.18.0.1".parse().unwrap())),
            Some(&[2, 0, 0, 0, 2, 0xfe])
        );
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let e = Topology::from_toml("[[interface]]\nname = \"x\"\nmac = \"zz\"\n").unwrap_err();
        assert_eq!(e.to_string(), "interface x: bad MAC address \"zz\"");
        let e = Topology::from_toml("[[interface]]\nname = \"x\"\nmac = \"02:00:00:00:00:01\"\nvlan = { parent = \"e\", id = 5000 }\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "interface x: VLAN id 5000 out of range 1-4094"
        );
        let e = Topology::from_toml("[[route]]\ndst = \"10.0.0.0/8\"\nvia = \"1.2.3.4\"\n")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "route 10.0.0.0/8: gateway 1.2.3.4 is on no interface's subnet"
        );
        // toml itself says nothing after its caret for a value missing at the end
        for text in ["[[interface]]\nname = ", "[[interface]]\nname ="] {
            let e = Topology::from_toml(text).unwrap_err().to_string();
            assert!(e.ends_with("^\nunexpected end of file\n"), "{e:?}");
        }
        let e = Topology::from_toml("[[interfaces]]\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `interfaces`"), "{e}");
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn bundled_home_topology_loads() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/home.toml"
        ))
        .unwrap();
        let t = Topology::from_toml(&text).unwrap();
        assert_eq!(
            t.interfaces
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>(),
            ["br-lan", "wan"]
        );
        assert_eq!(t.neighbours.len(), 18);
        let fib = t.build_fib();
        assert!(matches!(
            fib.lookup("203.0.113.1".parse().unwrap()),
            Some((RouteKind::Unicast(NextHop { ifindex: 1, .. }), 0))
        ));
    }
}
