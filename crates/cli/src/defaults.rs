//! The embedded default: a home router topology and its fw4-style ruleset, so `simulate` and
//! `gen` do something real with no arguments.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use nft_engine::fib::{NextHop, RouteKind};
use nft_engine::topology::{Encap, Interface, Topology, TopologyError};
use nft_io::gen::{self, GenConfig, GenInterface, PortForward, Transport};
use nft_lang::error::{Error as LangError, SourceMap, Span};

pub const TOPOLOGY: &str = include_str!("../../../examples/home.toml");
pub const RULESET: &str = include_str!("../../../examples/fw4-home.nft");

/// The port forwards of the default ruleset, so generated inbound flows reach a real service.
pub fn default_forwards() -> Vec<PortForward> {
    vec![PortForward {
        proto: Transport::Tcp,
        wan_port: 8080,
        lan_addr: Ipv4Addr::new(192, 168, 1, 100).into(),
        lan_port: 80,
    }]
}

pub fn load_topology(path: Option<&Path>) -> Result<Topology> {
    let (name, text) = match path {
        Some(p) => (
            p.display().to_string(),
            std::fs::read_to_string(p).map_err(|e| anyhow!("topology {}: {e}", p.display()))?,
        ),
        None => ("the default topology".to_string(), TOPOLOGY.to_string()),
    };
    Topology::from_toml(&text).map_err(|e| anyhow!("{}", topology_error(&name, &text, &e)))
}

/// A topology error as nft prints a ruleset's: `FILE:LINE:COL-COL: Error: what`, the line, and
/// carets under the offending text, through the ruleset's own renderer, so columns count bytes
/// as nft's do. TOML syntax errors carry their place; for the others (an unknown interface, a
/// bad address) it is the quoted value the message names, looked for from the
/// `[[interface]]`, `[[route]]` or `[[neighbour]]` entry the error is about.
pub fn topology_error(name: &str, text: &str, e: &TopologyError) -> String {
    let lines: Vec<&str> = text.lines().collect();
    // (0-based line, byte offset in the line, length in bytes)
    let place: Option<(usize, usize, usize)>;
    let mut what: String;
    match e {
        TopologyError::Toml(msg) => {
            // "TOML parse error at line L, column C\n  |\nL | source\n  | ^^^\nmessage", C in
            // characters
            let head = msg.lines().next().unwrap_or_default();
            let nums: Vec<usize> = head
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            let carets = msg
                .lines()
                .find(|l| l.trim_start().starts_with("| ") && l.contains('^'))
                .map(|l| l.matches('^').count())
                .unwrap_or(1);
            place = match nums[..] {
                [l, c] if l >= 1 && l <= lines.len() => {
                    let src = lines[l - 1];
                    let at = src
                        .char_indices()
                        .nth(c.max(1) - 1)
                        .map_or(src.len(), |(b, _)| b);
                    Some((l - 1, at, carets.min(src.len() - at).max(1)))
                }
                _ => None,
            };
            what = msg
                .lines()
                .skip_while(|l| !(l.trim_start().starts_with("| ") && l.contains('^')))
                .skip(1)
                .collect::<Vec<_>>()
                .join(" ");
            if what.is_empty() {
                what = msg.lines().collect::<Vec<_>>().join(" ");
            }
        }
        other => {
            let (key, entry) = match other {
                TopologyError::Interface { iface, .. } => ("name", iface),
                TopologyError::Route { dst, .. } => ("dst", dst),
                TopologyError::Neighbour { ip, .. } => ("ip", ip),
                TopologyError::Toml(_) => unreachable!(),
            };
            let msg = other.to_string();
            let is_entry = |l: &&str| {
                let l = l.trim();
                l.starts_with(key)
                    && l[key.len()..].trim_start().starts_with('=')
                    && l.contains(&format!("\"{entry}\""))
            };
            // an entry defined twice is wrong where it comes again
            let entry_line = if msg.ends_with("defined twice") {
                lines.iter().rposition(is_entry)
            } else {
                lines.iter().position(is_entry)
            };
            // the last value the message quotes, e.g. `no interface "wan0"`
            let quoted = msg
                .rfind('"')
                .and_then(|end| msg[..end].rfind('"').map(|start| &msg[start..=end]));
            let found = entry_line.and_then(|from| {
                let q = quoted?;
                lines
                    .iter()
                    .enumerate()
                    .skip(from)
                    .take_while(|(i, l)| *i == from || !l.trim_start().starts_with("[["))
                    .find_map(|(i, l)| l.find(q).map(|c| (i, c, q.len())))
            });
            place = found.or_else(|| entry_line.map(|i| (i, 0, lines[i].trim_end().len().max(1))));
            what = msg.replace('\n', " ");
        }
    }
    match place {
        Some((l, at, len)) if l < lines.len() => {
            // lines end at '\n' (a '\r' before it stays in the line, as nft reads it)
            let start: usize = text.split('\n').take(l).map(|s| s.len() + 1).sum::<usize>() + at;
            let mut sm = SourceMap::default();
            let file = sm.add(name, text);
            let span = Span {
                file,
                lo: start as u32,
                hi: (start + len) as u32,
            };
            sm.render(&LangError::new(span, what))
                .trim_end_matches('\n')
                .to_string()
        }
        _ => format!("{name}: Error: {what}"),
    }
}

fn gen_iface(i: &Interface) -> GenInterface {
    let ipv4 = i.addresses.iter().find_map(|(a, l)| match a {
        IpAddr::V4(v) => Some((*v, *l)),
        _ => None,
    });
    let ipv6 = i.addresses.iter().find_map(|(a, l)| match a {
        IpAddr::V6(v) if !v.is_unicast_link_local() => Some((*v, *l)),
        _ => None,
    });
    let encap = match &i.encap {
        Encap::None => gen::Encap::None,
        Encap::Vlan { parent, id } => gen::Encap::Vlan {
            parent: parent.clone(),
            id: *id,
        },
        Encap::QinQ {
            parent,
            outer,
            inner,
        } => gen::Encap::QinQ {
            parent: parent.clone(),
            outer: *outer,
            inner: *inner,
        },
        Encap::Pppoe {
            parent, session, ..
        } => gen::Encap::Pppoe {
            parent: parent.clone(),
            session: *session,
        },
    };
    GenInterface {
        name: i.name.clone(),
        mac: i.mac,
        ipv4,
        ipv6,
        mtu: i.mtu,
        encap,
    }
}

/// The generator's view of a topology: WAN is where the IPv4 default route points, LAN the
/// first other interface with an IPv4 address; the LAN clients are its static neighbours.
pub fn gen_config(
    t: &Topology,
    seed: u64,
    flows: usize,
    forwards: Vec<PortForward>,
) -> Result<GenConfig> {
    let fib = t.build_fib();
    let Some((
        RouteKind::Unicast(NextHop {
            ifindex: wan_idx,
            via,
        }),
        _,
    )) = fib.lookup(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)))
    else {
        bail!("the topology has no IPv4 default route; the generator needs one to find the WAN interface");
    };
    let wan = &t.interfaces[*wan_idx];
    let lan = t
        .interfaces
        .iter()
        .find(|i| i.index != *wan_idx && i.addresses.iter().any(|(a, _)| a.is_ipv4()))
        .ok_or_else(|| anyhow!("the topology has no LAN interface with an IPv4 address"))?;
    let gateway_mac = match (&wan.encap, via) {
        (Encap::Pppoe { peer_mac, .. }, _) => *peer_mac,
        (_, Some(gw)) => *t
            .neighbours
            .get(&(wan.index, *gw))
            .ok_or_else(|| anyhow!("no neighbour entry for the default gateway {gw}"))?,
        (_, None) => bail!("the default route has no gateway"),
    };
    let clients = t
        .neighbours
        .keys()
        .filter(|(i, a)| *i == lan.index && a.is_ipv4())
        .count()
        .max(1) as u16;
    let mut cfg = GenConfig::home(seed, flows);
    cfg.lan = gen_iface(lan);
    cfg.wan = gen_iface(wan);
    cfg.gateway_mac = gateway_mac;
    cfg.clients = clients;
    cfg.forwards = forwards;
    // global IPv6 on the LAN: no IPv6 NAT
    cfg.ipv6_nat = cfg
        .lan
        .ipv6
        .is_some_and(|(a, _)| (a.segments()[0] & 0xfe00) == 0xfc00);
    let _ = Ipv6Addr::UNSPECIFIED;
    Ok(cfg)
}

/// `tcp:8080=192.168.1.100:80`
pub fn parse_forward(s: &str) -> Result<PortForward> {
    let (proto, rest) = s
        .split_once(':')
        .ok_or_else(|| anyhow!("forward {s:?}: want PROTO:WANPORT=ADDR:PORT"))?;
    let proto = match proto {
        "tcp" => Transport::Tcp,
        "udp" => Transport::Udp,
        p => bail!("forward {s:?}: protocol {p:?} is not tcp or udp"),
    };
    let (wp, dst) = rest
        .split_once('=')
        .ok_or_else(|| anyhow!("forward {s:?}: want PROTO:WANPORT=ADDR:PORT"))?;
    let wan_port: u16 = wp
        .parse()
        .map_err(|_| anyhow!("forward {s:?}: bad port {wp:?}"))?;
    let sa: std::net::SocketAddr = dst
        .parse()
        .map_err(|_| anyhow!("forward {s:?}: bad address {dst:?} (use [v6]:port for IPv6)"))?;
    Ok(PortForward {
        proto,
        wan_port,
        lan_addr: sa.ip(),
        lan_port: sa.port(),
    })
}
