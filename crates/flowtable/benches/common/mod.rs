//! The bench's flows and frames, shared with `examples/fastpath_count.rs`.

use nft_conntrack::{Config as CtConfig, NatRange, Outcome, Table};
use nft_flowtable::{Admission, Config, Egress, Encap, Family, Flowtable, Mangles, Path};
use nft_wire::{parse_frame, IpProtocol, Ipv4Addr, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr};
use std::time::Duration;

const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0x10];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 2, 0xfe];

/// A 64-byte Ethernet/IPv4/UDP frame (22 bytes of payload).
fn udp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
) -> Vec<u8> {
    let udp = UdpRepr {
        src_port: sport,
        dst_port: dport,
        payload: &[0x5a; 22],
    };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Udp,
        payload_len: udp.buffer_len(),
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 1,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
    };
    let mut f = vec![0u8; 14 + ip.buffer_len() + udp.buffer_len()];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut f[14..]));
    udp.emit(
        &mut UdpPacket::new_unchecked(&mut f[34..]),
        &src.into(),
        &dst.into(),
    );
    f
}

/// `n` masqueraded UDP flows admitted into a flowtable, and a frame per flow and direction in
/// a shuffled order.
pub fn setup(n: usize) -> (Table, Flowtable, Vec<(u16, Vec<u8>)>) {
    let mut ct = Table::new(CtConfig {
        max_entries: n + 16,
        ..CtConfig::default()
    });
    let mut ft = Flowtable::new(Config {
        devices: vec![0, 1],
        max_flows: n,
        ..Config::default()
    });
    let wan = Ipv4Addr::new(203, 0, 113, 1);
    let now = Duration::from_secs(1);
    let lan = Egress {
        port: 0,
        src_mac: LAN_MAC,
        dst_mac: CLIENT_MAC,
        encap: Encap::None,
        mtu: 1500,
    };
    let wan_e = Egress {
        port: 1,
        src_mac: WAN_MAC,
        dst_mac: GW_MAC,
        encap: Encap::None,
        mtu: 1500,
    };
    let mut frames = Vec::with_capacity(2 * n);
    for i in 0..n {
        let client = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + (i as u32 >> 4));
        let server = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + i as u32);
        let sport = 20000 + (i as u16 & 15);
        let out = udp_frame(LAN_MAC, CLIENT_MAC, client, server, sport, 443);
        let meta = parse_frame(&out).unwrap();
        let Outcome::Tracked { id, .. } = ct.process(&meta, 0, now) else {
            panic!("not tracked")
        };
        ct.masquerade(id, wan.into(), 1, &NatRange::default())
            .unwrap();
        ct.confirm(id, now).unwrap();
        let a = Admission {
            forward_hook: true,
            family: Family::Inet,
            conn: Some(id),
            meta: &meta,
            paths: [
                Path {
                    ingress: 0,
                    egress: wan_e,
                },
                Path {
                    ingress: 1,
                    egress: lan,
                },
            ],
            mangles: [Mangles::default(); 2],
            fib_generation: 0,
        };
        ft.admit(&mut ct, &a, now).unwrap();
        let r = ct.get(id).unwrap().reply();
        let IpAddrPair(s, d) = IpAddrPair::from(r.src, r.dst);
        let back = udp_frame(WAN_MAC, GW_MAC, s, d, r.sport, r.dport);
        frames.push((0, out));
        frames.push((1, back));
    }
    // A fixed shuffle, so that consecutive packets belong to unrelated flows.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for i in (1..frames.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        frames.swap(i, (x % (i as u64 + 1)) as usize);
    }
    (ct, ft, frames)
}

struct IpAddrPair(Ipv4Addr, Ipv4Addr);

impl IpAddrPair {
    fn from(a: std::net::IpAddr, b: std::net::IpAddr) -> IpAddrPair {
        match (a, b) {
            (std::net::IpAddr::V4(a), std::net::IpAddr::V4(b)) => IpAddrPair(a, b),
            _ => panic!("IPv4 flows only"),
        }
    }
}
