//! Live: the steering program and an AF_XDP socket on one end of a veth pair, frames sent from
//! the other end with a plain AF_PACKET socket.

use super::*;
use nft_io::afpacket::{AfPacket, AfPacketConfig};
use nft_io::afxdp::{AfXdp, AfXdpConfig, AfXdpSet, FrameCounts, RxAction};
use nft_io::netns::{in_netns, ip, VethPair};
use std::process::Command;
use std::time::{Duration, Instant};

#[cfg(not(xdp_built))]
#[test]
fn without_the_object_the_error_says_not_built() {
    let e = Steer::attach("lo", &SteerConfig::default()).err().unwrap();
    assert!(e.to_string().contains(crate::NOT_BUILT), "{e}");
}

#[test]
fn an_unknown_device_is_named() {
    let e = Steer::attach("no-such-if0", &SteerConfig::default())
        .err()
        .unwrap();
    if crate::built() {
        assert_eq!(e.to_string(), "no-such-if0: no such device");
    }
}

const R_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const P_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// An Ethernet frame from the peer to the router, with `tags` (TPID, VID) before the EtherType.
fn eth(dst: [u8; 6], tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&P_MAC);
    for &(tpid, vid) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    while f.len() < 60 {
        f.push(0);
    }
    f
}

fn l4(proto: u8, dport: u16, seq: u32, len: usize) -> Vec<u8> {
    let mut v = 40000u16.to_be_bytes().to_vec();
    v.extend_from_slice(&dport.to_be_bytes());
    if proto == 6 {
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, 0, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
    } else {
        v.extend_from_slice(&((8 + len) as u16).to_be_bytes());
        v.extend_from_slice(&[0, 0]);
    }
    v.extend((0..len).map(|i| (i as u32 ^ seq) as u8));
    v
}

fn ipv4(dst: [u8; 4], proto: u8, dport: u16, seq: u32) -> Vec<u8> {
    let body = l4(proto, dport, seq, 10 + seq as usize % 300);
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&((20 + body.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&[198, 18, 0, 2]);
    h.extend_from_slice(&dst);
    let sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    let sum = (sum & 0xffff) + (sum >> 16);
    let c = !((sum & 0xffff) + (sum >> 16)) as u16;
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(&body);
    h
}

fn ipv6(dst: [u8; 16], proto: u8, dport: u16, seq: u32) -> Vec<u8> {
    let body = l4(proto, dport, seq, 10 + seq as usize % 300);
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend_from_slice(&[proto, 64]);
    h.extend_from_slice(
        &"2001:db8::2"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    h.extend_from_slice(&dst);
    h.extend_from_slice(&body);
    h
}

fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

/// Frames the dataplane takes, and frames the kernel keeps; `seq` makes each unique.
fn dataplane_frame(seq: u32) -> Vec<u8> {
    match seq % 6 {
        // Forwarded: to addresses that are not the router's.
        0 => eth(R_MAC, &[], 0x0800, &ipv4([198, 19, 0, 5], 17, 5000, seq)),
        1 => eth(R_MAC, &[], 0x86dd, &ipv6(v6("2001:db8:1::5"), 6, 443, seq)),
        2 => eth(
            R_MAC,
            &[(0x8100, 7)],
            0x0800,
            &ipv4([198, 19, 0, 6], 6, 80, seq),
        ),
        3 => eth(
            R_MAC,
            &[(0x88a8, 100), (0x8100, 7)],
            0x86dd,
            &ipv6(v6("2001:db8:1::6"), 17, 53, seq),
        ),
        // Owned: a port forward on the router's own addresses.
        4 => eth(R_MAC, &[], 0x0800, &ipv4([198, 18, 0, 1], 6, 8080, seq)),
        _ => eth(R_MAC, &[], 0x86dd, &ipv6(v6("2001:db8::1"), 6, 8080, seq)),
    }
}

fn kernel_frames() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "local",
            eth(R_MAC, &[], 0x0800, &ipv4([198, 18, 0, 1], 17, 5353, 1)),
        ),
        (
            "local",
            eth(R_MAC, &[], 0x0800, &ipv4([198, 18, 0, 1], 6, 22, 2)),
        ),
        (
            "local",
            eth(R_MAC, &[], 0x86dd, &ipv6(v6("2001:db8::1"), 17, 8080, 3)),
        ),
        (
            "multicast",
            eth(
                [0x01, 0, 0x5e, 0, 0, 0xfb],
                &[],
                0x0800,
                &ipv4([224, 0, 0, 251], 17, 5353, 4),
            ),
        ),
        (
            "multicast",
            eth([0xff; 6], &[], 0x0800, &ipv4([255; 4], 17, 67, 5)),
        ),
        (
            "link_local",
            eth(R_MAC, &[], 0x86dd, &ipv6(v6("fe80::1"), 17, 9, 6)),
        ),
        ("not_ip", eth(R_MAC, &[], 0x88b5, b"hello")),
        (
            "malformed",
            eth(R_MAC, &[], 0x0800, &[0x45, 0, 0, 20])[..18].to_vec(),
        ),
    ]
}

/// Whether `test` cannot run here (no steering program built, or not root), SKIPPED printed.
fn skipped(test: &str) -> bool {
    let why = if crate::built() {
        nft_io::netns::skip_reason()
    } else {
        Some(crate::NOT_BUILT.to_string())
    };
    if let Some(why) = &why {
        nft_io::netns::skip(test, why);
    }
    why.is_some()
}

/// The veth pair of a live test (router end `vr`, peer end `vp`), with the router's and the
/// peer's MACs (`R_MAC`, `P_MAC`); `None`, SKIPPED printed, without the program or root.
fn veth_lab(test: &str, tag: &str) -> Option<VethPair> {
    if !crate::built() {
        nft_io::netns::skip(test, crate::NOT_BUILT);
        return None;
    }
    let pair = VethPair::create(test, tag)?;
    for (ns, dev, mac) in [
        (&pair.router, "vr", "02:00:00:00:00:01"),
        (&pair.peer, "vp", "02:00:00:00:00:02"),
    ] {
        ip(&["-n", ns, "link", "set", dev, "address", mac]).unwrap();
    }
    Some(pair)
}

/// The router's addresses (198.18.0.1, 2001:db8::1) and, with `owned`, its TCP port 8080 (a
/// port forward).
fn add_router_addresses(steer: &mut Steer, owned: bool) {
    steer
        .add_local(None, "198.18.0.1".parse().unwrap())
        .unwrap();
    steer
        .add_local(None, "2001:db8::1".parse().unwrap())
        .unwrap();
    if owned {
        steer.add_owned(None, 6, 8080).unwrap();
    }
}

/// An AF_PACKET socket on `dev` in namespace `ns`: the peer's side.
fn packet_socket(ns: &str, dev: &'static str) -> AfPacket {
    in_netns(ns, move || {
        AfPacket::open(dev, &AfPacketConfig::default()).unwrap()
    })
}

/// Waits for the kernel to release the device's XDP link (a moment after the last program
/// goes), then asserts it did.
fn assert_detached(ns: &str, dev: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while xdp_attached(ns, dev) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!xdp_attached(ns, dev), "the program stayed attached");
}

/// The router answers pings to its addresses (both families): the kernel's traffic.
fn assert_router_answers_pings(peer_ns: &str) {
    assert!(
        ping(peer_ns, &["198.18.0.1"]),
        "no IPv4 ping reply from the router"
    );
    assert!(
        ping(peer_ns, &["-6", "2001:db8::1"]),
        "no IPv6 ping reply from the router"
    );
}

fn xdp_attached(ns: &str, dev: &str) -> bool {
    let out = Command::new("ip")
        .args(["-n", ns, "link", "show", dev])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("xdp")
}

fn ping(ns: &str, args: &[&str]) -> bool {
    Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-c", "2", "-i", "0.2", "-W", "2",
        ])
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Whether an IP frame's source address is the peer's: what the socket reflects, not what
/// the router's kernel sends (ARP, ICMP errors, resets).
fn ip_source_is_peer(f: &[u8]) -> bool {
    let mut at = 12;
    while f.len() >= at + 2 && matches!(u16::from_be_bytes([f[at], f[at + 1]]), 0x8100 | 0x88a8) {
        at += 4;
    }
    let et = f.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let l3 = at + 2;
    match et {
        Some(0x0800) => f.get(l3 + 12..l3 + 16) == Some(&[198, 18, 0, 2][..]),
        Some(0x86dd) => f.get(l3 + 8..l3 + 24) == Some(&v6("2001:db8::2")[..]),
        _ => false,
    }
}

/// Receives from the socket until `want` frames arrived or the deadline passed.
fn collect(xsk: &mut AfXdp, want: usize, deadline: Instant) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        xsk.poll(Duration::from_millis(20)).unwrap();
        xsk.rx_burst(usize::MAX, |f| got.push(f.to_vec()));
    }
    got
}

#[test]
fn steering_splits_traffic_between_the_socket_and_the_kernel() {
    let Some(pair) = veth_lab(
        "steering_splits_traffic_between_the_socket_and_the_kernel",
        "stx",
    ) else {
        return;
    };
    let (r, p) = (pair.router.as_str(), pair.peer.as_str());
    const FRAMES: u32 = 512;
    const RX_FRAMES: u32 = 128;
    let (mut steer, mut xsk) = in_netns(r, || {
        let mut steer = Steer::attach("vr", &SteerConfig::default()).unwrap();
        let config = AfXdpConfig {
            frame_count: FRAMES,
            rx_frames: RX_FRAMES,
            fill_size: 128,
            rx_size: 128,
            tx_size: 128,
            completion_size: 128,
            ..AfXdpConfig::default()
        };
        let xsk = AfXdp::open("vr", 0, &config).unwrap();
        steer.set_socket(0, &xsk).unwrap();
        add_router_addresses(&mut steer, true);
        (steer, xsk)
    });
    // veth runs XDP in the driver; AF_XDP on it is copy mode only.
    assert_eq!(steer.mode(), Mode::Native);
    assert!(!xsk.zero_copy());
    assert!(xdp_attached(r, "vr"));

    // ARP, ND and pings to the router's own addresses are the kernel's: it answers them,
    // and the socket sees none of it.
    assert_router_answers_pings(p);
    assert!(steer.counter("arp") >= 1, "{:?}", steer.counters());
    assert!(steer.counter("nd") >= 1, "{:?}", steer.counters());
    assert!(steer.counter("local") >= 4, "{:?}", steer.counters());
    let early = collect(&mut xsk, 1, Instant::now() + Duration::from_millis(200));
    assert!(
        early.is_empty(),
        "the socket got kernel traffic: {early:02x?}"
    );

    // Frames of every class from the peer: the socket gets exactly the dataplane's, in order,
    // byte for byte.
    let mut peer = packet_socket(p, "vp");
    let before = steer.counters();
    let kernel = kernel_frames();
    let mut want = Vec::new();
    let mut all = Vec::new();
    for (i, (_, k)) in kernel.iter().enumerate() {
        let d = dataplane_frame(i as u32);
        all.push(d.clone());
        want.push(d);
        all.push(k.clone());
    }
    let refs: Vec<&[u8]> = all.iter().map(Vec::as_slice).collect();
    assert_eq!(peer.tx_burst(&refs), refs.len());
    let got = collect(
        &mut xsk,
        want.len(),
        Instant::now() + Duration::from_secs(5),
    );
    assert_eq!(got, want);
    assert!(collect(&mut xsk, 1, Instant::now() + Duration::from_millis(100)).is_empty());
    let after = steer.counters();
    let delta = |name: &str| {
        let i = STEER_REASONS.iter().position(|n| *n == name).unwrap();
        after[i].1 - before[i].1
    };
    assert_eq!(delta("forward"), 6, "{after:?}");
    assert_eq!(delta("owned"), 2, "{after:?}");
    assert_eq!(delta("no_socket"), 0, "{after:?}");
    for name in ["local", "multicast", "link_local", "not_ip", "malformed"] {
        let sent = kernel.iter().filter(|(n, _)| *n == name).count() as u64;
        // The kernel's own chatter (MLD, RS) may add to these, never take away.
        assert!(
            delta(name) >= sent,
            "{name}: {} < {sent}; {after:?}",
            delta(name)
        );
    }

    // Reflection: many bursts received, rewritten in place (MACs swapped) and sent back out of
    // the same UMEM frames; the peer gets each byte-identical to what we made of it, and no
    // UMEM frame is lost on the way.
    const N: u32 = 4000;
    let mut sent_back: Vec<Vec<u8>> = Vec::new();
    let mut echoed: Vec<Vec<u8>> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut next = 0u32;
    while echoed.len() < N as usize {
        assert!(
            Instant::now() < deadline,
            "echoed {} of {N}, sent {next}; {:?} {:?} {:?}",
            echoed.len(),
            xsk.frames(),
            xsk.stats().unwrap(),
            steer.counters()
        );
        if next < N && next as usize - sent_back.len() < 64 {
            let burst: Vec<Vec<u8>> = (next..(next + 32).min(N)).map(dataplane_frame).collect();
            let refs: Vec<&[u8]> = burst.iter().map(Vec::as_slice).collect();
            next += peer.tx_burst(&refs) as u32;
        }
        xsk.poll(Duration::from_millis(1)).unwrap();
        xsk.rx_burst_mut(64, |f| {
            let d = f.data_mut();
            let (a, b) = d.split_at_mut(6);
            a.swap_with_slice(&mut b[..6]);
            sent_back.push(f.data().to_vec());
            RxAction::Transmit
        });
        xsk.reclaim();
        peer.rx_burst(usize::MAX, |f| {
            if f[..6] == P_MAC && ip_source_is_peer(f) {
                echoed.push(f.to_vec());
            }
        });
        peer.poll(Duration::from_millis(1)).unwrap();
    }
    assert_eq!(echoed.len(), N as usize);
    assert_eq!(echoed, sent_back);
    for (i, e) in echoed.iter().enumerate() {
        let mut orig = dataplane_frame(i as u32);
        let (a, b) = orig.split_at_mut(6);
        a.swap_with_slice(&mut b[..6]);
        assert_eq!(*e, orig, "frame {i}");
    }
    xsk.reclaim();
    assert_eq!(
        xsk.frames(),
        FrameCounts {
            free: FRAMES - RX_FRAMES,
            receiving: RX_FRAMES,
            sending: 0
        }
    );
    let st = xsk.stats().unwrap();
    assert_eq!(st.tx_packets, u64::from(N), "{st:?}");
    assert_eq!(
        (st.rx_dropped, st.tx_invalid, st.tx_ring_full),
        (0, 0, 0),
        "{st:?}"
    );

    // Disabled: everything to the kernel.
    steer.set_enabled(false).unwrap();
    assert_eq!(peer.tx_burst(&[&dataplane_frame(0)]), 1);
    assert!(collect(&mut xsk, 1, Instant::now() + Duration::from_millis(200)).is_empty());
    assert!(steer.counter("disabled") >= 1);

    // Dropping detaches (the kernel may finish releasing the link a moment later).
    drop(steer);
    assert_detached(r, "vr");
}

#[test]
fn a_queue_without_a_socket_falls_back_to_the_kernel() {
    let Some(pair) = veth_lab("a_queue_without_a_socket_falls_back_to_the_kernel", "sty") else {
        return;
    };
    let steer = in_netns(&pair.router, || {
        Steer::attach(
            "vr",
            &SteerConfig {
                mode: ModeRequest::Generic,
                ..SteerConfig::default()
            },
        )
        .unwrap()
    });
    assert_eq!(steer.mode(), Mode::Generic);
    // No socket: the router still answers its own, and forwarded-class frames go to the
    // kernel, counted as no_socket.
    assert!(ping(&pair.peer, &["198.18.0.1"]));
    let mut peer = packet_socket(&pair.peer, "vp");
    let mut f = dataplane_frame(0);
    f[..6].copy_from_slice(&[0xff; 6]);
    // Broadcast MAC: multicast class; then a unicast forwarded one.
    assert_eq!(peer.tx_burst(&[&f]), 1);
    let deadline = Instant::now() + Duration::from_secs(2);
    let sent_unicast = {
        let mut g = eth(
            [0x02, 0, 0, 0, 0, 0x09],
            &[],
            0x0800,
            &ipv4([198, 19, 0, 5], 17, 1, 1),
        );
        g[6..12].copy_from_slice(&P_MAC);
        assert_eq!(peer.tx_burst(&[&g]), 1);
        1
    };
    while steer.counter("no_socket") < 2 + sent_unicast && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Two echo requests (no local address is set, so they count as forwarded) and the frame.
    assert!(steer.counter("no_socket") >= 3, "{:?}", steer.counters());
    assert_eq!(steer.counter("forward"), 0, "{:?}", steer.counters());
    assert!(steer.counter("multicast") >= 1, "{:?}", steer.counters());
}

#[test]
fn frames_forward_between_interfaces_out_of_one_umem() {
    let Some(pair) = veth_lab("frames_forward_between_interfaces_out_of_one_umem", "stz") else {
        return;
    };
    let (r, p) = (pair.router.as_str(), pair.peer.as_str());
    // A second link between the same namespaces: vr2 (router) - vp2 (peer).
    ip(&[
        "-n", r, "link", "add", "vr2", "type", "veth", "peer", "name", "vp2", "netns", p,
    ])
    .unwrap();
    ip(&["-n", r, "link", "set", "vr2", "up"]).unwrap();
    ip(&["-n", p, "link", "set", "vp2", "up"]).unwrap();
    let (steer, mut set) = in_netns(r, || {
        let mut steer = Steer::attach("vr", &SteerConfig::default()).unwrap();
        let config = AfXdpConfig {
            frame_count: 256,
            rx_frames: 64,
            fill_size: 64,
            rx_size: 64,
            tx_size: 64,
            completion_size: 64,
            ..AfXdpConfig::default()
        };
        let set = AfXdpSet::open(&[("vr", 0), ("vr2", 0)], &config).unwrap();
        steer.set_socket(0, &set.fd(0)).unwrap();
        (steer, set)
    });
    let mut lan = packet_socket(p, "vp");
    let mut wan = packet_socket(p, "vp2");
    const N: u32 = 2000;
    let out_mac = [0x02, 0, 0, 0, 0, 0x77];
    let mut expect = Vec::new();
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut next = 0u32;
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < N as usize {
        assert!(
            Instant::now() < deadline,
            "forwarded {} of {N}; {:?} {:?} {:?}",
            got.len(),
            set.frames(),
            set.stats(0).unwrap(),
            steer.counters()
        );
        if next < N && next as usize - expect.len() < 48 {
            let burst: Vec<Vec<u8>> = (next..(next + 16).min(N))
                .map(|i| dataplane_frame(i * 6))
                .collect();
            let refs: Vec<&[u8]> = burst.iter().map(Vec::as_slice).collect();
            next += lan.tx_burst(&refs) as u32;
        }
        set.poll(Duration::from_millis(1)).unwrap();
        // A router's rewrite: new destination MAC, TTL down (IPv4, no checksum fix needed
        // for the test), out of the other interface, from the same UMEM frame.
        set.rx_burst_mut(0, 32, |f| {
            let d = f.data_mut();
            d[..6].copy_from_slice(&out_mac);
            d[14 + 8] -= 1;
            expect.push(f.data().to_vec());
            RxAction::TransmitOn(1)
        });
        wan.poll(Duration::from_millis(1)).unwrap();
        wan.rx_burst(usize::MAX, |f| {
            if f[..6] == out_mac {
                got.push(f.to_vec());
            }
        });
    }
    assert_eq!(got, expect);
    for (i, g) in got.iter().enumerate() {
        let mut want = dataplane_frame(i as u32 * 6);
        want[..6].copy_from_slice(&out_mac);
        want[14 + 8] -= 1;
        assert_eq!(*g, want, "frame {i}");
    }
    set.reclaim();
    assert_eq!(
        set.frames(),
        FrameCounts {
            free: 256 - 2 * 64,
            receiving: 2 * 64,
            sending: 0
        }
    );
    assert_eq!(set.stats(1).unwrap().tx_packets, u64::from(N));
    assert_eq!(set.stats(0).unwrap().tx_packets, 0);
    assert_eq!(
        steer.counter("forward"),
        u64::from(N),
        "{:?}",
        steer.counters()
    );
}

fn icmp4(dst: [u8; 4], icmp_type: u8) -> Vec<u8> {
    let mut v = ipv4(dst, 1, 0, 0);
    // The L4 bytes built for "port 0" become the ICMP header: type, code.
    v[20] = icmp_type;
    v[21] = 0;
    v
}

#[test]
fn with_socket_lookup_the_router_keeps_only_what_it_has_a_socket_for() {
    let Some(pair) = veth_lab(
        "with_socket_lookup_the_router_keeps_only_what_it_has_a_socket_for",
        "stw",
    ) else {
        return;
    };
    let (r, p) = (pair.router.as_str(), pair.peer.as_str());
    // The router's own services: a TCP listener and a bound UDP socket.
    let (steer, mut xsk, _tcp, _udp) = in_netns(r, || {
        let tcp = std::net::TcpListener::bind("0.0.0.0:7777").unwrap();
        let udp = std::net::UdpSocket::bind("[::]:7778").unwrap();
        let cfg = SteerConfig {
            local_no_socket: true,
            ..SteerConfig::default()
        };
        let mut steer = Steer::attach("vr", &cfg).unwrap();
        let xsk = AfXdp::open("vr", 0, &AfXdpConfig::default()).unwrap();
        steer.set_socket(0, &xsk).unwrap();
        add_router_addresses(&mut steer, false);
        (steer, xsk, tcp, udp)
    });
    // Pings to the router are still answered by it.
    assert_router_answers_pings(p);
    assert!(collect(&mut xsk, 1, Instant::now() + Duration::from_millis(200)).is_empty());

    let mut peer = packet_socket(p, "vp");
    let ours = vec![
        // No socket: a masquerade reply or a port forward.
        eth(R_MAC, &[], 0x0800, &ipv4([198, 18, 0, 1], 6, 9999, 1)),
        eth(R_MAC, &[], 0x0800, &ipv4([198, 18, 0, 1], 17, 7779, 2)),
        eth(R_MAC, &[], 0x86dd, &ipv6(v6("2001:db8::1"), 6, 7778, 3)),
        // Echo reply and port unreachable to the router: translated connections.
        eth(R_MAC, &[], 0x0800, &icmp4([198, 18, 0, 1], 0)),
        eth(R_MAC, &[], 0x0800, &icmp4([198, 18, 0, 1], 3)),
    ];
    let kernels = [
        // A listener (bound to 0.0.0.0) and a bound UDP socket (::, dual stack, so both
        // families).
        eth(R_MAC, &[], 0x0800, &ipv4([198, 18, 0, 1], 6, 7777, 4)),
        eth(R_MAC, &[], 0x86dd, &ipv6(v6("2001:db8::1"), 17, 7778, 5)),
        eth(R_MAC, &[], 0x0800, &ipv4([198, 18, 0, 1], 17, 7778, 6)),
        eth(R_MAC, &[], 0x0800, &icmp4([198, 18, 0, 1], 8)),
    ];
    let before = steer.counter("local");
    let mut all = ours.clone();
    all.extend(kernels.iter().cloned());
    let refs: Vec<&[u8]> = all.iter().map(Vec::as_slice).collect();
    assert_eq!(peer.tx_burst(&refs), refs.len());
    let got = collect(
        &mut xsk,
        ours.len(),
        Instant::now() + Duration::from_secs(5),
    );
    assert_eq!(got, ours);
    assert!(collect(&mut xsk, 1, Instant::now() + Duration::from_millis(100)).is_empty());
    assert_eq!(
        steer.counter("local_no_socket"),
        ours.len() as u64,
        "{:?}",
        steer.counters()
    );
    assert!(
        steer.counter("local") - before >= kernels.len() as u64,
        "{:?}",
        steer.counters()
    );
}

/// The steering program after the XDP offload (`Steer::attach_after`): the device has one XDP
/// program, the offload; what it does not forward (here: every frame, the flow map is empty)
/// goes through its tail call to the steering program, which gives the dataplane's frames to
/// the socket and the rest to the kernel. Clearing the chain sends everything to the kernel.
fn steering_after_the_offload(test: &str, tag: &str, mode: ModeRequest, want: Mode) {
    use crate::offload::{XdpOffload, XdpOffloadConfig};
    let Some(pair) = veth_lab(test, tag) else {
        return;
    };
    let (r, p) = (pair.router.as_str(), pair.peer.as_str());
    let (offload, mut chain, steer, mut xsk) = in_netns(r, move || {
        let mut offload = XdpOffload::new(&XdpOffloadConfig {
            devices: vec![(0, "vr".into())],
            mode,
            ..XdpOffloadConfig::default()
        })
        .unwrap();
        assert_eq!(
            offload.attachments()[0].mode,
            Some(want),
            "{:?}",
            offload.attachments()
        );
        let mut chain = offload.take_chain().unwrap();
        assert!(offload.take_chain().is_none());
        let mut steer =
            Steer::attach_after("vr", &SteerConfig::default(), &mut chain, want).unwrap();
        let xsk = AfXdp::open("vr", 0, &AfXdpConfig::default()).unwrap();
        steer.set_socket(0, &xsk).unwrap();
        add_router_addresses(&mut steer, true);
        (offload, chain, steer, xsk)
    });
    assert!(steer.chained());
    assert_eq!(steer.mode(), want);
    assert_eq!(chain.devices(), vec![steer.ifindex()]);
    assert!(xdp_attached(r, "vr"));

    // The router's kernel still answers its pings: passed by the offload, steered to it.
    assert!(ping(p, &["198.18.0.1"]), "no ping reply from the router");
    assert!(steer.counter("local") >= 2, "{:?}", steer.counters());
    assert!(steer.counter("arp") >= 1, "{:?}", steer.counters());

    // The dataplane's frames reach the socket, byte for byte, after a miss in the offload.
    let mut peer = packet_socket(p, "vp");
    let miss = |o: &XdpOffload| {
        o.reasons()
            .into_iter()
            .filter(|(n, _)| *n != "forwarded")
            .map(|(_, v)| v)
            .sum::<u64>()
    };
    let passed0 = miss(&offload);
    let want_frames: Vec<Vec<u8>> = (0..6).map(dataplane_frame).collect();
    let refs: Vec<&[u8]> = want_frames.iter().map(Vec::as_slice).collect();
    assert_eq!(peer.tx_burst(&refs), refs.len());
    let got = collect(&mut xsk, 6, Instant::now() + Duration::from_secs(5));
    assert_eq!(got, want_frames);
    assert_eq!(steer.counter("forward"), 4, "{:?}", steer.counters());
    assert_eq!(steer.counter("owned"), 2, "{:?}", steer.counters());
    assert!(miss(&offload) >= passed0 + 6, "{:?}", offload.reasons());

    // Without the chain entry the offload passes to the kernel: the socket gets nothing.
    chain.clear(steer.ifindex());
    assert!(chain.devices().is_empty());
    assert_eq!(peer.tx_burst(&refs), refs.len());
    assert!(collect(&mut xsk, 1, Instant::now() + Duration::from_millis(300)).is_empty());
    assert_eq!(steer.counter("forward"), 4, "{:?}", steer.counters());
    assert!(miss(&offload) >= passed0 + 12, "{:?}", offload.reasons());

    // Chained again, then the chain dropped: the same.
    let (mut again, chain) = in_netns(r, move || {
        let mut chain = chain;
        let s = Steer::attach_after("vr", &SteerConfig::default(), &mut chain, want).unwrap();
        (s, chain)
    });
    assert_eq!(chain.devices(), vec![again.ifindex()]);
    again.set_socket(0, &xsk).unwrap();
    drop(chain);
    assert_eq!(peer.tx_burst(&refs), refs.len());
    assert!(collect(&mut xsk, 1, Instant::now() + Duration::from_millis(300)).is_empty());
    assert_eq!(again.counters().iter().map(|c| c.1).sum::<u64>(), 0);

    // Dropping the backend detaches the one program.
    drop(again);
    drop(steer);
    drop(offload);
    assert_detached(r, "vr");
}

#[test]
fn steering_after_the_offload_generic() {
    steering_after_the_offload(
        "steering_after_the_offload_generic",
        "stg",
        ModeRequest::Generic,
        Mode::Generic,
    );
}

#[test]
fn steering_after_the_offload_native() {
    steering_after_the_offload(
        "steering_after_the_offload_native",
        "stn",
        ModeRequest::Native,
        Mode::Native,
    );
}

/// A reload under `--io af_xdp`: the steering program is on the device, its socket receiving,
/// when the XDP offload takes the device over (`XdpOffload::take_over`): from then on the
/// offload runs first and chains the same steering program (same maps, same socket). Frames
/// sent all along, before, during and after the switch, each reach the socket exactly once.
#[test]
fn the_offload_takes_over_from_a_steering_program_without_losing_a_frame() {
    use crate::offload::{XdpOffload, XdpOffloadConfig};
    let Some(pair) = veth_lab(
        "the_offload_takes_over_from_a_steering_program_without_losing_a_frame",
        "sto",
    ) else {
        return;
    };
    let (r, p) = (pair.router.as_str(), pair.peer.as_str());
    let (mut steer, mut xsk, mut offload) = in_netns(r, || {
        let cfg = SteerConfig {
            mode: ModeRequest::Generic,
            ..SteerConfig::default()
        };
        let mut steer = Steer::attach("vr", &cfg).unwrap();
        let xsk = AfXdp::open("vr", 0, &AfXdpConfig::default()).unwrap();
        steer.set_socket(0, &xsk).unwrap();
        add_router_addresses(&mut steer, true);
        let offload = XdpOffload::load(&XdpOffloadConfig::default()).unwrap();
        (steer, xsk, offload)
    });
    assert!(!steer.chained());
    assert!(offload.attachments().is_empty());
    let passed = |o: &XdpOffload| o.reasons().into_iter().map(|(_, v)| v).sum::<u64>();
    assert_eq!(passed(&offload), 0);

    // the sender: 4 frames every 500 µs, 2400 in all
    const N: u32 = 2400;
    let peer = packet_socket(p, "vp");
    let sender = std::thread::spawn(move || {
        let mut peer = peer;
        let mut sent = 0;
        for b in 0..N / 4 {
            let frames: Vec<Vec<u8>> = (b * 4..b * 4 + 4).map(dataplane_frame).collect();
            let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
            sent += peer.tx_burst(&refs);
            std::thread::sleep(Duration::from_micros(500));
        }
        sent
    });
    // the switch, in the middle of it
    let switch = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        let mut chain = offload.take_chain().unwrap();
        let a = offload.take_over(0, &mut steer, &mut chain, ModeRequest::Auto);
        (offload, steer, chain, a)
    });
    let mut got = collect(
        &mut xsk,
        N as usize,
        Instant::now() + Duration::from_secs(10),
    );
    let sent = sender.join().unwrap();
    let (offload, steer, chain, a) = switch.join().unwrap();
    assert_eq!(sent, N as usize);
    assert_eq!(a.mode, Some(Mode::Generic), "{a:?}");
    assert_eq!(a.warning, None);
    assert!(steer.chained());
    assert_eq!(chain.devices(), vec![steer.ifindex()]);
    assert_eq!(offload.attachments(), &[a]);
    // every frame once, none twice
    got.sort();
    let mut want: Vec<Vec<u8>> = (0..N).map(dataplane_frame).collect();
    want.sort();
    assert_eq!(got.len(), want.len(), "frames at the socket");
    assert!(got == want, "the frames differ");
    // the steering program saw every one of them, the offload the later ones (all misses)
    assert_eq!(
        steer.counter("forward") + steer.counter("owned"),
        u64::from(N),
        "{:?}",
        steer.counters()
    );
    let seen = passed(&offload);
    assert!(seen > 0 && seen < u64::from(N), "{:?}", offload.reasons());

    // a second take-over of the same steering program is refused and changes nothing
    let mut chain = chain;
    let mut steer = steer;
    let mut other = XdpOffload::load(&XdpOffloadConfig::default()).unwrap();
    let mut other_chain = other.take_chain().unwrap();
    let b = other.take_over(0, &mut steer, &mut other_chain, ModeRequest::Generic);
    assert_eq!(b.mode, None);
    assert!(
        b.warning
            .as_deref()
            .unwrap_or("")
            .contains("already runs behind"),
        "{b:?}"
    );
    drop(other_chain);
    drop(other);

    // dropping the steering program leaves the device with the offload; dropping the offload
    // detaches it
    chain.clear(steer.ifindex());
    drop(steer);
    assert!(xdp_attached(r, "vr"));
    drop(chain);
    drop(offload);
    assert_detached(r, "vr");
}

/// The chain is keyed by a dense slot (`offload_next_slot`: ifindex -> slot of the 256-entry
/// program array), not by the ifindex itself: any ifindex takes a slot, 256 devices at most,
/// the 257th is refused with a message that says so, and a cleared device frees its slot.
#[test]
fn the_chain_takes_any_ifindex_and_at_most_256_devices() {
    use crate::offload::{XdpOffload, XdpOffloadConfig, MAX_NEXT};
    let test = "the_chain_takes_any_ifindex_and_at_most_256_devices";
    if skipped(test) {
        return;
    }
    let mut offload = XdpOffload::load(&XdpOffloadConfig::default()).unwrap();
    let mut chain = offload.take_chain().unwrap();
    // a program to chain: the steering program, loaded for lo, attached nowhere
    let steer = Steer::load("lo", &SteerConfig::default()).unwrap();
    let fd = steer.prog_fd().unwrap();
    // ifindexes far beyond the array's size, then enough small ones to fill it
    let big = [100_000u32, 1 << 20, u32::MAX];
    for &i in &big {
        chain.set(i, fd).unwrap();
    }
    for i in 1..=MAX_NEXT - big.len() as u32 {
        chain.set(i, fd).unwrap();
    }
    assert_eq!(chain.devices().len(), MAX_NEXT as usize);
    // setting a device again keeps its slot
    chain.set(1 << 20, fd).unwrap();
    let e = chain.set(7777, fd).unwrap_err().to_string();
    assert!(e.contains("more than 256 devices"), "{e}");
    assert!(!chain.devices().contains(&7777));
    // the slots are distinct and within the array
    let mut slots: Vec<u32> = chain
        .devices()
        .iter()
        .map(|i| chain.slot(*i).unwrap())
        .collect();
    slots.sort_unstable();
    slots.dedup();
    assert_eq!(slots.len(), MAX_NEXT as usize);
    assert!(slots.iter().all(|&s| s < MAX_NEXT));
    // the kernel's map says the same
    assert_eq!(chain.kernel_slot(u32::MAX), chain.slot(u32::MAX));
    assert_eq!(chain.kernel_slot(7777), None);
    // a cleared device frees its slot for another
    let freed = chain.slot(100_000).unwrap();
    chain.clear(100_000);
    assert_eq!(chain.kernel_slot(100_000), None);
    chain.set(7777, fd).unwrap();
    assert_eq!(chain.slot(7777), Some(freed));
    assert_eq!(chain.kernel_slot(7777), Some(freed));
}

#[cfg(target_endian = "little")]
#[test]
fn the_local_bit_of_fixed_addresses() {
    let bit = |a: &str| local_bit(&addr16(a.parse().unwrap()));
    assert_eq!(bit("::"), 0);
    assert_eq!(bit("0.0.0.0"), 2148);
    assert_eq!(bit("198.18.0.1"), 428);
    assert_eq!(bit("198.19.0.5"), 2275);
    assert_eq!(bit("2001:db8::1"), 342);
    assert_eq!(bit("2001:db8:1::5"), 2590);
}

#[test]
fn v4_mapped_addresses_spread_over_the_bits() {
    let bits = |addrs: &mut dyn Iterator<Item = std::net::Ipv4Addr>| {
        let mut v: Vec<u32> = addrs.map(|a| local_bit(&addr16(IpAddr::V4(a)))).collect();
        assert!(v.iter().all(|&b| b < 4096));
        v.sort_unstable();
        v.dedup();
        v.len()
    };
    let base = u32::from(std::net::Ipv4Addr::new(198, 18, 0, 0));
    // a /22: every address its own bit
    assert_eq!(bits(&mut (0..1024).map(|i| (base + i).into())), 1024);
    // each octet stepped alone: 256 bits
    for shift in [0, 8, 16, 24] {
        let n = bits(&mut (0..256u32).map(|i| (base ^ (i << shift)).into()));
        assert_eq!(n, 256, "octet at bit {shift}");
    }
}

/// A small deterministic generator (xorshift64) for the addresses of a test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// In 198.18.0.0/16 past the link's /30 when `local`, in 198.19.0.0/16 otherwise; or in
    /// 2001:db8:0:1::/64 (local) or 2001:db8:ffff::/64: never the link's own addresses.
    fn addr(&mut self, local: bool) -> IpAddr {
        let r = self.next();
        if r & 1 == 0 {
            let host = ((r >> 8) as u16).max(4).to_be_bytes();
            IpAddr::V4([198, if local { 18 } else { 19 }, host[0], host[1]].into())
        } else {
            let net: u64 = if local {
                0x2001_0db8_0000_0001
            } else {
                0x2001_0db8_ffff_0000
            };
            IpAddr::V6((u128::from(net) << 64 | u128::from(r >> 1)).into())
        }
    }
}

fn frame_to(dst: IpAddr, seq: u32) -> Vec<u8> {
    match dst {
        IpAddr::V4(a) => eth(R_MAC, &[], 0x0800, &ipv4(a.octets(), 17, 9, seq)),
        IpAddr::V6(a) => eth(R_MAC, &[], 0x86dd, &ipv6(a.octets(), 17, 9, seq)),
    }
}

/// One frame to each of `dsts` from the peer: the socket gets exactly those marked `true`
/// (in order, byte for byte), the kernel the others.
fn assert_steered(steer: &Steer, peer: &mut AfPacket, xsk: &mut AfXdp, dsts: &[(IpAddr, bool)]) {
    let local0 = steer.counter("local");
    let forward0 = steer.counter("forward");
    let mut got = Vec::new();
    let mut want = Vec::new();
    for (n, chunk) in dsts.chunks(32).enumerate() {
        let frames: Vec<Vec<u8>> = chunk
            .iter()
            .enumerate()
            .map(|(i, &(a, _))| frame_to(a, (n * 32 + i) as u32))
            .collect();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        assert_eq!(peer.tx_burst(&refs), refs.len());
        let ours: Vec<Vec<u8>> = frames
            .iter()
            .zip(chunk)
            .filter(|(_, (_, s))| *s)
            .map(|(f, _)| f.clone())
            .collect();
        got.extend(collect(
            xsk,
            ours.len(),
            Instant::now() + Duration::from_secs(5),
        ));
        want.extend(ours);
    }
    got.extend(collect(xsk, 1, Instant::now() + Duration::from_millis(100)));
    if got != want {
        let dst = |f: &Vec<u8>| match u16::from_be_bytes([f[12], f[13]]) {
            0x0800 => format!("{:?}", &f[30..34]),
            _ => format!("{:02x?}", &f[38..54]),
        };
        panic!(
            "socket got {} frames, wanted {}; got {:?}; wanted {:?}",
            got.len(),
            want.len(),
            got.iter().map(dst).collect::<Vec<_>>(),
            want.iter().map(dst).collect::<Vec<_>>()
        );
    }
    let to_socket = dsts.iter().filter(|d| d.1).count() as u64;
    assert_eq!(steer.counter("forward") - forward0, to_socket);
    assert!(steer.counter("local") - local0 >= dsts.len() as u64 - to_socket);
}

/// The prefilter in the kernel is exactly the bits of the keys in `steer_local`.
fn assert_bits_exact(steer: &Steer) {
    let keys: Vec<LocalKey> = steer.local.keys().map(Result::unwrap).collect();
    let want = LocalBits::of(&keys);
    assert_eq!(steer.bits.get(&0, 0).unwrap(), want);
    assert_eq!(steer.bits_now, want);
}

/// Many local addresses (some per device) behind the prefilter: frames to each of them go to
/// the kernel, transit frames to the socket, those whose bit a local address set too (a hash
/// lookup that misses) and those to a local address of another device among them. The bits
/// follow `remove_local` and `set_locals`. Fails if the program and `local_bit` disagree on an
/// address's bit (most local frames would reach the socket).
#[test]
fn the_prefilter_keeps_local_frames_for_the_kernel_among_many_addresses() {
    let Some(pair) = veth_lab(
        "the_prefilter_keeps_local_frames_for_the_kernel_among_many_addresses",
        "stb",
    ) else {
        return;
    };
    let (r, p) = (pair.router.as_str(), pair.peer.as_str());
    let (mut steer, mut xsk) = in_netns(r, || {
        let mut steer = Steer::attach("vr", &SteerConfig::default()).unwrap();
        let xsk = AfXdp::open("vr", 0, &AfXdpConfig::default()).unwrap();
        steer.set_socket(0, &xsk).unwrap();
        (steer, xsk)
    });
    let mut peer = packet_socket(p, "vp");
    let vr = steer.ifindex();
    let mut rng = Rng(0x5eed_b175);
    // 200 local addresses: on any device, on vr, on another device
    let mut locals: Vec<(Option<u32>, IpAddr)> = Vec::new();
    while locals.len() < 200 {
        let a = rng.addr(true);
        if locals.iter().all(|l| l.1 != a) {
            let on = [None, Some(vr), Some(vr + 1000)][locals.len() % 3];
            locals.push((on, a));
        }
    }
    for &(on, a) in &locals {
        steer.add_local(on, a).unwrap();
    }
    let test_addrs: [IpAddr; 2] = [
        "198.18.0.1".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
    ];
    for a in test_addrs {
        steer.add_local(None, a).unwrap();
    }
    assert_bits_exact(&steer);
    let ours = |on: Option<u32>| on != Some(vr + 1000);
    // transit: random, and 16 whose bit is set
    let mut transit: Vec<IpAddr> = (0..100).map(|_| rng.addr(false)).collect();
    let mut shared = 0;
    while shared < 16 {
        let a = rng.addr(false);
        let b = local_bit(&addr16(a)) as usize;
        if steer.bits_now.0[b / 64] & 1 << (b % 64) != 0 {
            transit.push(a);
            shared += 1;
        }
    }
    let mut dsts: Vec<(IpAddr, bool)> = test_addrs.iter().map(|&a| (a, false)).collect();
    dsts.extend(locals.iter().map(|&(on, a)| (a, !ours(on))));
    dsts.extend(transit.iter().map(|&a| (a, true)));
    // in bit order: local and transit frames interleaved
    dsts.sort_by_key(|d| local_bit(&addr16(d.0)));
    assert_steered(&steer, &mut peer, &mut xsk, &dsts);

    // removed: the test's addresses are transit
    for a in test_addrs {
        steer.remove_local(None, a).unwrap();
    }
    assert_bits_exact(&steer);
    let kept: Vec<(IpAddr, bool)> = locals
        .iter()
        .filter(|l| ours(l.0))
        .take(20)
        .map(|&(_, a)| (a, false))
        .collect();
    let mut dsts: Vec<(IpAddr, bool)> = test_addrs.iter().map(|&a| (a, true)).collect();
    dsts.extend(kept.iter().copied());
    assert_steered(&steer, &mut peer, &mut xsk, &dsts);

    // replaced: the first 100 stay, 50 new ones come, the rest go
    let fresh: Vec<(Option<u32>, IpAddr)> = (0..50)
        .map(|_| (None, rng.addr(true)))
        .filter(|n| locals.iter().all(|l| l.1 != n.1))
        .collect();
    let mut next: Vec<(Option<u32>, IpAddr)> = locals[..100].to_vec();
    next.extend(fresh.iter().copied());
    steer.set_locals(&next).unwrap();
    assert_bits_exact(&steer);
    let mut dsts: Vec<(IpAddr, bool)> = next.iter().map(|&(on, a)| (a, !ours(on))).collect();
    dsts.extend(locals[100..].iter().map(|&(_, a)| (a, true)));
    assert_steered(&steer, &mut peer, &mut xsk, &dsts);

    // none left: every bit clear
    steer.set_locals(&[]).unwrap();
    assert_eq!(steer.bits.get(&0, 0).unwrap(), LocalBits::EMPTY);
}

/// `test_run` runs the program on a frame as often as asked: each run counted under the
/// frame's reason, the kernel's verdict returned.
#[test]
fn a_test_run_counts_every_run() {
    let test = "a_test_run_counts_every_run";
    if skipped(test) {
        return;
    }
    let mut steer = Steer::load("lo", &SteerConfig::default()).unwrap();
    add_router_addresses(&mut steer, false);
    let transit = frame_to("198.19.0.5".parse().unwrap(), 1);
    let local = frame_to("198.18.0.1".parse().unwrap(), 2);
    let (verdict, ns) = steer.test_run(&transit, 1000).unwrap();
    assert_eq!(verdict, 2);
    assert!(ns > 0);
    assert_eq!(steer.test_run(&local, 10).unwrap().0, 2);
    assert_eq!(steer.counter("no_socket"), 1000, "{:?}", steer.counters());
    assert_eq!(steer.counter("local"), 10, "{:?}", steer.counters());
    assert_eq!(steer.counter("forward"), 0, "{:?}", steer.counters());
}
