//! Link layer: which logical interface a frame belongs to (VLAN, QinQ and PPPoE sub-interfaces
//! share their parent's port), and the header a frame gets on the way out.

use std::collections::HashMap;

use nft_wire::PacketMeta;

use crate::counters::Drop;
use crate::topology::{Encap, Interface, Mac, Topology};

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_ARP: u16 = 0x0806;
const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88a8;
const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;

/// The longest header [`write_header`] writes (Ethernet + PPPoE + PPP, or two tags).
pub const MAX_HEADER_LEN: usize = 22;

/// Interfaces grouped by the physical port they sit on.
pub struct Ports {
    /// For each interface, the interfaces sharing its port (itself included).
    siblings: Vec<Vec<usize>>,
}

impl Ports {
    pub fn new(topo: &Topology) -> Ports {
        let port_name = |i: &Interface| match &i.encap {
            Encap::None => i.name.clone(),
            Encap::Vlan { parent, .. }
            | Encap::QinQ { parent, .. }
            | Encap::Pppoe { parent, .. } => parent.clone(),
        };
        let mut by_port: HashMap<String, Vec<usize>> = HashMap::new();
        for i in &topo.interfaces {
            by_port.entry(port_name(i)).or_default().push(i.index);
        }
        let siblings = topo
            .interfaces
            .iter()
            .map(|i| by_port.get(&port_name(i)).cloned().unwrap_or_default())
            .collect();
        Ports { siblings }
    }

    /// The logical interface a frame arriving with `ingress` belongs to: the one on the same
    /// port whose encapsulation matches the frame's tags or PPPoE session. Frames are captured
    /// per port, so a tagged frame may arrive as the parent's or as the sub-interface's. A
    /// PPPoE session is the pair of its id and the concentrator's MAC, as the kernel's
    /// `pppoe_rcv` looks it up: the right id from another MAC belongs to no interface.
    pub fn classify(
        &self,
        topo: &Topology,
        ingress: usize,
        m: &PacketMeta,
        frame: &[u8],
    ) -> Result<usize, Drop> {
        let sib = self.siblings.get(ingress).ok_or(Drop::NoInterface)?;
        let tags = m.vlan_tags();
        sib.iter()
            .copied()
            .find(|&i| {
                let Some(iface) = topo.interfaces.get(i) else {
                    return false;
                };
                match &iface.encap {
                    Encap::None => tags.is_empty() && m.pppoe_session.is_none(),
                    Encap::Vlan { id, .. } => {
                        tags.len() == 1 && tags[0].vid == *id && m.pppoe_session.is_none()
                    }
                    Encap::QinQ { outer, inner, .. } => {
                        tags.len() == 2
                            && tags[0].vid == *outer
                            && tags[1].vid == *inner
                            && m.pppoe_session.is_none()
                    }
                    Encap::Pppoe {
                        session, peer_mac, ..
                    } => {
                        tags.is_empty()
                            && m.pppoe_session == Some(*session)
                            && frame.get(6..12) == Some(&peer_mac[..])
                    }
                }
            })
            .ok_or(Drop::UnknownEncap)
    }
}

/// Length of the header [`write_header`] writes for `iface`.
pub fn header_len(iface: &Interface) -> usize {
    match iface.encap {
        Encap::None => 14,
        Encap::Vlan { .. } => 18,
        Encap::QinQ { .. } => 22,
        Encap::Pppoe { .. } => 22,
    }
}

/// The MAC a frame leaving `iface` goes to when the link is point-to-point (PPPoE).
pub fn fixed_peer(iface: &Interface) -> Option<Mac> {
    match iface.encap {
        Encap::Pppoe { peer_mac, .. } => Some(peer_mac),
        _ => None,
    }
}

/// Writes the link header of `iface` into `buf` (exactly [`header_len`] bytes) for an IP
/// packet of `l3_len` bytes with EtherType `ethertype` (IPv4 or IPv6).
pub fn write_header(buf: &mut [u8], iface: &Interface, dst: Mac, ethertype: u16, l3_len: usize) {
    buf[0..6].copy_from_slice(&dst);
    buf[6..12].copy_from_slice(&iface.mac);
    match iface.encap {
        Encap::None => buf[12..14].copy_from_slice(&ethertype.to_be_bytes()),
        Encap::Vlan { id, .. } => {
            buf[12..14].copy_from_slice(&TPID_8021Q.to_be_bytes());
            buf[14..16].copy_from_slice(&(id & 0x0fff).to_be_bytes());
            buf[16..18].copy_from_slice(&ethertype.to_be_bytes());
        }
        Encap::QinQ { outer, inner, .. } => {
            buf[12..14].copy_from_slice(&TPID_8021AD.to_be_bytes());
            buf[14..16].copy_from_slice(&(outer & 0x0fff).to_be_bytes());
            buf[16..18].copy_from_slice(&TPID_8021Q.to_be_bytes());
            buf[18..20].copy_from_slice(&(inner & 0x0fff).to_be_bytes());
            buf[20..22].copy_from_slice(&ethertype.to_be_bytes());
        }
        Encap::Pppoe { session, .. } => {
            buf[12..14].copy_from_slice(&ETHERTYPE_PPPOE_SESSION.to_be_bytes());
            buf[14] = 0x11;
            buf[15] = 0;
            buf[16..18].copy_from_slice(&session.to_be_bytes());
            // The PPPoE length covers the PPP protocol field and the payload.
            let len = (l3_len + 2).min(u16::MAX as usize) as u16;
            buf[18..20].copy_from_slice(&len.to_be_bytes());
            let ppp = if ethertype == ETHERTYPE_IPV6 {
                PPP_IPV6
            } else {
                PPP_IPV4
            };
            buf[20..22].copy_from_slice(&ppp.to_be_bytes());
        }
    }
}

/// A frame for `iface` carrying `l3` (a fresh buffer: for packets the router makes).
pub fn frame_with(iface: &Interface, dst: Mac, ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let h = header_len(iface);
    let mut f = vec![0u8; h + l3.len()];
    write_header(&mut f[..h], iface, dst, ethertype, l3.len());
    f[h..].copy_from_slice(l3);
    f
}

/// Puts the link header of `iface` in front of `data[l3_start..l3_end]`, reusing the buffer
/// when the old header left room (the common case: untagged in, untagged out), and drops link
/// padding after the IP packet.
pub fn encapsulate(
    mut data: Vec<u8>,
    l3_start: usize,
    l3_end: usize,
    iface: &Interface,
    dst: Mac,
    ethertype: u16,
) -> Vec<u8> {
    let h = header_len(iface);
    let l3_end = l3_end.min(data.len()).max(l3_start.min(data.len()));
    let l3_start = l3_start.min(l3_end);
    if l3_start >= h {
        let at = l3_start - h;
        write_header(
            &mut data[at..l3_start],
            iface,
            dst,
            ethertype,
            l3_end - l3_start,
        );
        data.truncate(l3_end);
        if at > 0 {
            data.drain(..at);
        }
        data
    } else {
        frame_with(iface, dst, ethertype, &data[l3_start..l3_end])
    }
}

/// An ARP reply when `m` is a request for one of `iface`'s IPv4 addresses.
pub fn arp_reply(iface: &Interface, m: &PacketMeta) -> Option<Vec<u8>> {
    let arp = m.arp?;
    if arp.operation != nft_wire::ArpOperation::Request {
        return None;
    }
    let target = std::net::IpAddr::V4(arp.target_protocol_addr);
    if !iface.addresses.iter().any(|(a, _)| *a == target) {
        return None;
    }
    let reply = nft_wire::ArpRepr {
        operation: nft_wire::ArpOperation::Reply,
        source_hardware_addr: nft_wire::EthernetAddress(iface.mac),
        source_protocol_addr: arp.target_protocol_addr,
        target_hardware_addr: arp.source_hardware_addr,
        target_protocol_addr: arp.source_protocol_addr,
    };
    let mut body = vec![0u8; 28];
    reply.emit(&mut nft_wire::ArpPacket::new_unchecked(&mut body[..]));
    let mut f = vec![0u8; 14 + 28];
    f[0..6].copy_from_slice(&arp.source_hardware_addr.0);
    f[6..12].copy_from_slice(&iface.mac);
    f[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    f[14..].copy_from_slice(&body);
    Some(f)
}
