//! Live tests on a veth pair between two network namespaces this test creates and removes.
//! They skip (and say so) when not root or when `ip` is missing.

use super::*;
use std::os::fd::FromRawFd;
use std::time::Instant;

use crate::netns::{in_netns, VethPair};

#[test]
fn config_geometry_is_checked_before_any_syscall() {
    let bad = AfPacketConfig {
        block_size: 1000,
        ..AfPacketConfig::default()
    };
    assert!(matches!(
        AfPacket::open("lo", &bad),
        Err(AfPacketError::InvalidConfig(_))
    ));
    let bad = AfPacketConfig {
        frame_size: 100,
        ..AfPacketConfig::default()
    };
    assert!(matches!(
        AfPacket::open("lo", &bad),
        Err(AfPacketError::InvalidConfig(_))
    ));
    let bad = AfPacketConfig {
        frame_size: 1 << 19,
        ..AfPacketConfig::default()
    };
    assert!(matches!(
        AfPacket::open("lo", &bad),
        Err(AfPacketError::InvalidConfig(_))
    ));
}

#[test]
fn unknown_interface_is_named() {
    let err = AfPacket::open("no-such-if0", &AfPacketConfig::default())
        .err()
        .unwrap();
    assert_eq!(err.to_string(), "no interface named \"no-such-if0\"");
}

/// Our frames carry the IEEE local experimental EtherType, so the kernel's own chatter on the
/// link (IPv6 ND, MLD) is told apart.
const ETHERTYPE: u16 = 0x88b5;
const FROM_PEER: u8 = b'P';
const FROM_ROUTER: u8 = b'R';
const N: usize = 200;

fn frame(dir: u8, seq: u32, len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, dir]);
    f.extend_from_slice(&ETHERTYPE.to_be_bytes());
    f.push(dir);
    f.extend_from_slice(&seq.to_be_bytes());
    let mut x = seq.wrapping_mul(2_654_435_761);
    while f.len() < len {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        f.push((x >> 16) as u8);
    }
    f
}

/// Lengths from the minimum frame to a full 1500-byte MTU, varied so frames pack into blocks at
/// every alignment.
fn len_of(seq: usize) -> usize {
    60 + (seq * 97) % (1514 - 60 + 1)
}

fn ours(f: &[u8], dir: u8) -> bool {
    f.len() > 14 && f[12..14] == ETHERTYPE.to_be_bytes() && f[14] == dir
}

/// The peer side: a plain AF_PACKET socket (no ring), so the ring is checked against the kernel's
/// ordinary path rather than against itself.
struct Plain(OwnedFd);

impl Plain {
    fn open(ifname: &str) -> Plain {
        let fd = sys::socket_packet().unwrap();
        sys::bind_packet(&fd, if_index(ifname).unwrap()).unwrap();
        // Room for a whole burst of the router's frames: the default buffer holds about a hundred.
        let size: libc::c_int = 8 << 20;
        // SAFETY: size is a live c_int and the length passed is its size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(
            rc,
            0,
            "setsockopt(SO_RCVBUFFORCE): {}",
            io::Error::last_os_error()
        );
        Plain(fd)
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: frame is a live slice of frame.len() bytes the kernel only reads.
        let rc = unsafe { libc::send(self.0.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(
            rc,
            frame.len() as isize,
            "send: {}",
            io::Error::last_os_error()
        );
    }

    fn recv(&self, buf: &mut [u8], deadline: Instant) -> Option<usize> {
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            if sys::poll_in(&self.0, left.as_millis() as i32 + 1).unwrap() == 0 {
                continue;
            }
            // SAFETY: buf is a live, writable slice of buf.len() bytes.
            let rc = unsafe {
                libc::recv(
                    self.0.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if rc >= 0 {
                return Some(rc as usize);
            }
        }
    }
}

#[test]
fn veth_pair_frames_cross_the_ring_both_ways() {
    // Small blocks so the N frames span many of them and the ring wraps.
    frames_cross_the_ring_both_ways(
        "veth_pair_frames_cross_the_ring_both_ways",
        "afp",
        AfPacketConfig {
            block_size: 1 << 14,
            block_count: 8,
            promiscuous: true,
            ..AfPacketConfig::default()
        },
    );
}

/// The same through a V2 ring of 64 slots of 2 KiB, so it wraps three times.
#[test]
fn veth_pair_frames_cross_a_v2_ring_both_ways() {
    frames_cross_the_ring_both_ways(
        "veth_pair_frames_cross_a_v2_ring_both_ways",
        "af2",
        AfPacketConfig {
            v2: true,
            block_size: 1 << 14,
            block_count: 8,
            promiscuous: true,
            ..AfPacketConfig::default()
        },
    );
}

fn frames_cross_the_ring_both_ways(test: &str, tag: &str, config: AfPacketConfig) {
    let Some(pair) = VethPair::create(test, tag) else {
        return;
    };
    let (ns_r, ns_p) = (pair.router.clone(), pair.peer.clone());

    let mut router = in_netns(&ns_r, move || AfPacket::open("vr", &config).unwrap());
    let peer = in_netns(&ns_p, || Plain::open("vp"));

    // Peer → ring, in bursts smaller than the ring so nothing is dropped.
    let sent: Vec<Vec<u8>> = (0..N)
        .map(|i| frame(FROM_PEER, i as u32, len_of(i)))
        .collect();
    let mut got: Vec<Vec<u8>> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    for chunk in sent.chunks(20) {
        for f in chunk {
            peer.send(f);
        }
        let want = got.len() + chunk.len();
        while got.len() < want {
            assert!(
                Instant::now() < deadline,
                "received {} of {} frames, {:?} block {} cursor {:?}",
                got.len(),
                N,
                router.stats(),
                router.block,
                router.cursor
            );
            router.poll(Duration::from_millis(50)).unwrap();
            router.rx_burst(7, |f| {
                if ours(f, FROM_PEER) {
                    got.push(f.to_vec());
                }
            });
        }
    }
    assert_eq!(got.len(), N);
    for (i, (g, s)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(g, s, "frame {i} differs");
    }

    // Ring socket → peer, in one burst.
    let back: Vec<Vec<u8>> = (0..N)
        .map(|i| frame(FROM_ROUTER, i as u32, len_of(N - 1 - i)))
        .collect();
    let refs: Vec<&[u8]> = back.iter().map(Vec::as_slice).collect();
    let mut taken = 0;
    while taken < refs.len() {
        taken += router.tx_burst(&refs[taken..]);
        assert!(Instant::now() < deadline, "transmitted {taken} of {N}");
    }
    let mut buf = vec![0u8; 2048];
    let mut echoed = Vec::new();
    while echoed.len() < N {
        let Some(n) = peer.recv(&mut buf, deadline) else {
            panic!("peer received {} of {} frames", echoed.len(), N);
        };
        if ours(&buf[..n], FROM_ROUTER) {
            echoed.push(buf[..n].to_vec());
        }
    }
    assert_eq!(echoed, back);

    // PACKET_IGNORE_OUTGOING: our own transmissions never show up in our ring.
    std::thread::sleep(Duration::from_millis(20));
    router.poll(Duration::from_millis(20)).unwrap();
    let mut own = 0;
    router.rx_burst(usize::MAX, |f| own += usize::from(ours(f, FROM_ROUTER)));
    assert_eq!(own, 0, "the ring saw its own transmissions");

    // The receive path moves an 802.1Q tag into metadata before packet sockets see the frame
    // (skb_vlan_untag); the ring must put it back so the frame reads as it was on the wire.
    let inner = frame(FROM_PEER, 7, 300);
    let mut wire = inner[..12].to_vec();
    wire.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
    wire.extend_from_slice(&inner[12..]);
    peer.send(&wire);
    let mut tagged = None;
    while tagged.is_none() {
        assert!(Instant::now() < deadline, "the tagged frame never arrived");
        router.poll(Duration::from_millis(50)).unwrap();
        router.rx_burst(usize::MAX, |f| {
            if f.len() > 18 && f[12..14] == [0x81, 0x00] && f[16..18] == ETHERTYPE.to_be_bytes() {
                tagged = Some(f.to_vec());
            }
        });
    }
    assert_eq!(tagged.unwrap(), wire);

    let stats = router.stats().unwrap();
    assert!(stats.rx_packets > N as u64, "{stats:?}");
    assert_eq!(stats.rx_drops, 0, "{stats:?}");
    assert_eq!(stats.tx_packets, N as u64, "{stats:?}");
    assert_eq!(stats.tx_errors, 0, "{stats:?}");
}

#[test]
fn a_fanout_group_shares_the_frames() {
    let Some(pair) = VethPair::create("a_fanout_group_shares_the_frames", "afp") else {
        return;
    };
    let config = AfPacketConfig {
        fanout: Some(Fanout {
            group: (std::process::id() & 0xffff) as u16,
            mode: FanoutMode::LoadBalance,
        }),
        ..AfPacketConfig::default()
    };
    let mut workers = in_netns(&pair.router, move || {
        [
            AfPacket::open("vr", &config).unwrap(),
            AfPacket::open("vr", &config).unwrap(),
        ]
    });
    let peer = in_netns(&pair.peer, || Plain::open("vp"));
    for i in 0..20 {
        peer.send(&frame(FROM_PEER, i, 100));
    }
    let mut seen = [Vec::new(), Vec::new()];
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen[0].len() + seen[1].len() < 20 {
        assert!(
            Instant::now() < deadline,
            "received {} and {} of 20",
            seen[0].len(),
            seen[1].len()
        );
        for (w, s) in workers.iter_mut().zip(seen.iter_mut()) {
            w.poll(Duration::from_millis(10)).unwrap();
            w.rx_burst(usize::MAX, |f| {
                if ours(f, FROM_PEER) {
                    s.push(u32::from_be_bytes(f[15..19].try_into().unwrap()));
                }
            });
        }
    }
    assert!(
        !seen[0].is_empty() && !seen[1].is_empty(),
        "one socket got everything: {seen:?}"
    );
    let mut all: Vec<u32> = seen.concat();
    all.sort_unstable();
    assert_eq!(all, (0..20).collect::<Vec<_>>(), "each frame exactly once");
}

#[test]
fn qdisc_bypass_sends_and_a_device_drop_is_counted_not_retried() {
    let test = "qdisc_bypass_sends_and_a_device_drop_is_counted_not_retried";
    let Some(pair) = VethPair::create(test, "afq") else {
        return;
    };
    let config = AfPacketConfig {
        qdisc_bypass: true,
        sndbuf: Some(1 << 20),
        ..AfPacketConfig::default()
    };
    let mut router = in_netns(&pair.router, move || AfPacket::open("vr", &config).unwrap());
    let peer = in_netns(&pair.peer, || Plain::open("vp"));
    let sent: Vec<Vec<u8>> = (0..50)
        .map(|i| frame(FROM_ROUTER, i, len_of(i as usize)))
        .collect();
    let refs: Vec<&[u8]> = sent.iter().map(Vec::as_slice).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut taken = 0;
    while taken < refs.len() {
        taken += router.tx_burst(&refs[taken..]);
        assert!(Instant::now() < deadline, "transmitted {taken} of 50");
    }
    let mut buf = vec![0u8; 2048];
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let Some(n) = peer.recv(&mut buf, deadline) else {
            panic!("peer received {} of 50 frames", got.len());
        };
        if ours(&buf[..n], FROM_ROUTER) {
            got.push(buf[..n].to_vec());
        }
    }
    assert_eq!(got, sent);
    assert_eq!(router.tx_device_drops(), 0);
    // The peer goes down: veth has no carrier, the driver drops what we send (ENOBUFS past
    // the qdisc), and each frame is counted once and taken, never offered again.
    let p = pair.peer.clone();
    in_netns(&p, || {
        crate::netns::ip(&["link", "set", "vp", "down"]).unwrap()
    });
    assert_eq!(router.tx_burst(&refs[..10]), 10);
    assert_eq!(router.tx_device_drops(), 10);
    let st = router.stats().unwrap();
    assert_eq!((st.tx_packets, st.tx_errors), (50, 0), "{st:?}");
}

/// An IPv4/TCP frame of `payload` bytes from 198.18.0.1:1000 to 198.18.0.2:2000 whose TCP
/// checksum holds only the pseudo-header sum, as a stack with TSO leaves it.
fn tcp_partial(payload: usize) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 20 + payload];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let total = (20 + 20 + payload) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[198, 18, 0, 1]);
    ip[16..20].copy_from_slice(&[198, 18, 0, 2]);
    let mut s: u32 = 0;
    for w in ip.chunks(2) {
        s += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    ip[10..12].copy_from_slice(&(!(s as u16)).to_be_bytes());
    let t = &mut f[34..54];
    t[0..2].copy_from_slice(&1000u16.to_be_bytes());
    t[2..4].copy_from_slice(&2000u16.to_be_bytes());
    t[4..8].copy_from_slice(&7u32.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x10;
    t[14..16].copy_from_slice(&512u16.to_be_bytes());
    // pseudo-header: addresses, protocol, TCP length
    let mut p: u32 = 198 * 256 + 18 + 1 + 198 * 256 + 18 + 2 + 6 + u32::from(total - 20);
    while p > 0xffff {
        p = (p & 0xffff) + (p >> 16);
    }
    t[16..18].copy_from_slice(&(p as u16).to_be_bytes());
    for (i, b) in f[54..].iter_mut().enumerate() {
        *b = (i * 7) as u8;
    }
    f
}

/// The vnet headers of a [`tcp_partial`] frame: as a GSO super-packet of 1 448-byte segments
/// (the checksum to finish), and as a plain frame.
fn tcp_partial_vnet() -> (VnetHdr, VnetHdr) {
    let gso = VnetHdr {
        flags: VnetHdr::NEEDS_CSUM,
        gso_type: VnetHdr::GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
    };
    let plain = VnetHdr {
        gso_type: VnetHdr::GSO_NONE,
        gso_size: 0,
        ..gso
    };
    (gso, plain)
}

/// Sockets with vnet headers (qdisc bypass, promiscuous) on `vr` and `vp` of `pair`.
fn open_vnet(pair: &VethPair) -> (AfPacket, AfPacket) {
    open_vnet_with(pair, AfPacketConfig::default())
}

fn open_vnet_with(pair: &VethPair, base: AfPacketConfig) -> (AfPacket, AfPacket) {
    let config = AfPacketConfig {
        qdisc_bypass: true,
        promiscuous: true,
        vnet_hdr: true,
        ..base
    };
    let c2 = config.clone();
    let router = in_netns(&pair.router, move || AfPacket::open("vr", &config).unwrap());
    let peer = in_netns(&pair.peer, move || AfPacket::open("vp", &c2).unwrap());
    (router, peer)
}

/// Transmits all of `frames` with their vnet headers `hdrs`, a burst at a time, by `deadline`.
fn send_all_vnet(router: &mut AfPacket, frames: &[&[u8]], hdrs: &[VnetHdr], deadline: Instant) {
    let mut taken = 0;
    while taken < frames.len() {
        taken += router.tx_burst_vnet(&frames[taken..], &hdrs[taken..]);
        assert!(
            Instant::now() < deadline,
            "transmitted {taken} of {}",
            frames.len()
        );
    }
}

#[test]
fn a_gso_super_packet_crosses_whole_with_its_vnet_header() {
    gso_crosses_whole(
        "a_gso_super_packet_crosses_whole_with_its_vnet_header",
        "afg",
        AfPacketConfig::default(),
    );
}

/// The same into the V2 ring `run` opens (`v2_gso`): the super-packet fits its slot whole,
/// with the vnet header in front of it.
#[test]
fn a_gso_super_packet_crosses_a_v2_ring_whole() {
    gso_crosses_whole(
        "a_gso_super_packet_crosses_a_v2_ring_whole",
        "ag2",
        AfPacketConfig::v2_gso(1),
    );
}

fn gso_crosses_whole(test: &str, tag: &str, base: AfPacketConfig) {
    let Some(pair) = VethPair::create(test, tag) else {
        return;
    };
    let fits = AfPacketConfig {
        vnet_hdr: true,
        ..base.clone()
    }
    .ring_frames(20 * 1448 + 54)
        > 0;
    let (mut router, mut peer) = open_vnet_with(&pair, base);
    // 20 segments' worth in one frame, far above the MTU, and a plain frame after it
    let big = tcp_partial(20 * 1448);
    let small = tcp_partial(100);
    let (gso, plain) = tcp_partial_vnet();
    let deadline = Instant::now() + Duration::from_secs(10);
    let frames = [big.as_slice(), small.as_slice()];
    send_all_vnet(&mut router, &frames, &[gso, plain], deadline);
    let mut got: Vec<(Vec<u8>, RxInfo)> = Vec::new();
    while got.len() < 2 {
        assert!(Instant::now() < deadline, "received {got:?}");
        let _ = peer.poll(Duration::from_millis(50));
        peer.rx_burst_info(8, |f, i| {
            if f.len() > 54 && f[23] == 6 {
                got.push((f.to_vec(), i));
            }
        });
    }
    assert_eq!(got[0].0, big, "the super-packet arrives whole");
    assert_eq!(got[0].1.vnet.gso_type, VnetHdr::GSO_TCPV4);
    assert_eq!(got[0].1.vnet.gso_size, 1448);
    assert_eq!(
        got[0].1.vnet.flags & VnetHdr::NEEDS_CSUM,
        VnetHdr::NEEDS_CSUM
    );
    assert_eq!(
        (got[0].1.vnet.csum_start, got[0].1.vnet.csum_offset),
        (34, 16)
    );
    assert_eq!(got[1].0, small);
    assert!(!got[1].1.vnet.is_gso(), "{:?}", got[1].1);
    assert_eq!(router.stats().unwrap().tx_gso, 1);
    let st = peer.stats().unwrap();
    assert_eq!(st.rx_gso, 1);
    // through the socket's queue when its slot is too small (TP_STATUS_COPY)
    let copied = u64::from(!fits);
    assert_eq!((st.rx_copied, st.rx_truncated), (copied, 0), "{st:?}");
}

/// The same into a V2 ring of 2 KiB slots (`v2_slots`, `run`'s default): the 29 014-byte
/// super-packet does not fit its slot, and arrives whole, byte for byte, with its vnet header,
/// read from the socket's receive queue; the plain frame after it comes from its slot.
#[test]
fn a_gso_super_packet_crosses_a_small_slot_v2_ring_whole_through_the_socket() {
    let base = AfPacketConfig::v2_slots(1, V2_SLOT);
    assert_eq!(base.ring_frames(tcp_partial(20 * 1448).len()), 0);
    gso_crosses_whole(
        "a_gso_super_packet_crosses_a_small_slot_v2_ring_whole_through_the_socket",
        "agc",
        base,
    );
}

/// The same with TSO and GSO off on the sending veth: the qdisc-bypass path would drop the
/// super-packet (ENOBUFS), so it leaves through the socket without the bypass and the kernel
/// segments it. The peer gets the plain frame before it, its 20 segments in order (each 1 448
/// bytes of the payload at its sequence number), then the plain frame after.
#[test]
fn a_gso_super_packet_is_segmented_for_a_device_without_tso() {
    let test = "a_gso_super_packet_is_segmented_for_a_device_without_tso";
    let Some(pair) = VethPair::create(test, "afs") else {
        return;
    };
    let o = std::process::Command::new("ip")
        .args(["netns", "exec", &pair.router, "ethtool", "-K", "vr"])
        .args(["tso", "off", "gso", "off"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let (mut router, mut peer) = open_vnet(&pair);
    let big = tcp_partial(20 * 1448);
    let (first, last) = (tcp_partial(100), tcp_partial(200));
    let (gso, plain) = tcp_partial_vnet();
    let deadline = Instant::now() + Duration::from_secs(10);
    let frames = [first.as_slice(), big.as_slice(), last.as_slice()];
    let hdrs = [plain, gso, plain];
    send_all_vnet(&mut router, &frames, &hdrs, deadline);
    let mut got: Vec<(Vec<u8>, RxInfo)> = Vec::new();
    while got.len() < 22 {
        assert!(Instant::now() < deadline, "received {}: {got:?}", got.len());
        let _ = peer.poll(Duration::from_millis(50));
        peer.rx_burst_info(32, |f, i| {
            if f.len() > 54 && f[23] == 6 {
                got.push((f.to_vec(), i));
            }
        });
    }
    assert_eq!(got.len(), 22);
    assert_eq!(got[0].0, first);
    assert_eq!(got[21].0, last);
    for (k, (f, info)) in got[1..21].iter().enumerate() {
        assert_eq!(f.len(), 54 + 1448, "segment {k}");
        assert!(!info.vnet.is_gso(), "segment {k}: {info:?}");
        let seq = u32::from_be_bytes([f[38], f[39], f[40], f[41]]);
        assert_eq!(seq, 7 + 1448 * k as u32, "segment {k}");
        assert_eq!(
            &f[54..],
            &big[54 + 1448 * k..54 + 1448 * (k + 1)],
            "segment {k}"
        );
    }
    let st = router.stats().unwrap();
    assert_eq!(
        (st.tx_packets, st.tx_gso, st.tx_device_drops, st.tx_errors),
        (3, 1, 0, 0),
        "{st:?}"
    );
}

/// A TCP segment of `payload` bytes (as [`tcp_partial`]) with sequence number `seq`, to tell
/// the frames apart at the peer.
fn tcp_seq(payload: usize, seq: u32) -> Vec<u8> {
    let mut f = tcp_partial(payload);
    f[38..42].copy_from_slice(&seq.to_be_bytes());
    f
}

/// Frames of one egress are not reordered between the bypass and the qdisc socket: the
/// device has TSO and GSO off, and a rate-limiting qdisc (`tbf`, 20 Mbit/s) that holds the
/// super-packet's 20 segments for some 12 ms. The plain frame given right after the
/// super-packet in the same burst, and one given in a burst of its own while the qdisc still
/// holds segments, follow them through the qdisc (`tx_qdisc`) and arrive after the last
/// segment (on the bypass they arrived before all but the first few). Once the qdisc socket
/// has drained, a plain frame takes the bypass again.
#[test]
fn frames_behind_a_gso_frame_in_the_qdisc_are_not_reordered() {
    let test = "frames_behind_a_gso_frame_in_the_qdisc_are_not_reordered";
    let Some(pair) = VethPair::create(test, "afo") else {
        return;
    };
    for cmd in [
        &["ethtool", "-K", "vr", "tso", "off", "gso", "off"][..],
        &[
            "tc", "qdisc", "replace", "dev", "vr", "root", "tbf", "rate", "20mbit", "burst", "4kb",
            "latency", "1s",
        ][..],
    ] {
        let o = std::process::Command::new("ip")
            .args(["netns", "exec", &pair.router])
            .args(cmd)
            .output()
            .unwrap();
        if !o.status.success() {
            // (a kernel without the tbf qdisc)
            crate::netns::skip(
                test,
                &format!("{cmd:?}: {}", String::from_utf8_lossy(&o.stderr)),
            );
            return;
        }
    }
    let (mut router, mut peer) = open_vnet(&pair);
    let big = tcp_seq(20 * 1448, 7);
    let (next, later, drained) = (
        tcp_seq(100, 1_000_000),
        tcp_seq(100, 2_000_000),
        tcp_seq(100, 3_000_000),
    );
    let (gso, plain) = tcp_partial_vnet();
    let deadline = Instant::now() + Duration::from_secs(10);
    let send = |router: &mut AfPacket, frames: &[&[u8]], hdrs: &[VnetHdr]| {
        send_all_vnet(router, frames, hdrs, deadline)
    };
    send(
        &mut router,
        &[big.as_slice(), next.as_slice()],
        &[gso, plain],
    );
    send(&mut router, &[later.as_slice()], &[plain]);
    let seq = |f: &[u8]| u32::from_be_bytes([f[38], f[39], f[40], f[41]]);
    let mut got: Vec<u32> = Vec::new();
    let recv = |peer: &mut AfPacket, got: &mut Vec<u32>, n: usize| {
        while got.len() < n {
            assert!(Instant::now() < deadline, "received {got:?}");
            let _ = peer.poll(Duration::from_millis(50));
            peer.rx_burst_info(32, |f, _| {
                if f.len() > 54 && f[23] == 6 {
                    got.push(seq(f));
                }
            });
        }
    };
    recv(&mut peer, &mut got, 22);
    let want: Vec<u32> = (0..20)
        .map(|k| 7 + 1448 * k)
        .chain([1_000_000, 2_000_000])
        .collect();
    assert_eq!(got, want, "in the order given");
    let st = router.stats().unwrap();
    assert_eq!((st.tx_packets, st.tx_gso, st.tx_qdisc), (3, 1, 3), "{st:?}");
    // the qdisc has sent everything: the bypass again
    let t = Instant::now();
    while sys::outq(router.gso_fd.as_ref().unwrap()) != Some(0) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the qdisc socket drains"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    send(&mut router, &[drained.as_slice()], &[plain]);
    recv(&mut peer, &mut got, 23);
    assert_eq!(got[22], 3_000_000);
    let st = router.stats().unwrap();
    assert_eq!((st.tx_packets, st.tx_qdisc), (4, 3), "{st:?}");
}

/// `run`'s V2 ring: slots of 65 632 bytes (76 before the frame: the tpacket2 header and
/// sockaddr_ll aligned to 80, the vnet header, less the Ethernet header), three to a 256 KiB
/// block: 192 frames of any length up to the largest super-packet in 16 MiB, none longer.
#[test]
fn the_v2_ring_holds_the_largest_super_packet_in_each_slot() {
    assert_eq!(AfPacketConfig::v2_slot(GSO_FRAME_MAX, true), 65_632);
    assert_eq!(AfPacketConfig::v2_slot(GSO_FRAME_MAX, false), 65_632);
    assert_eq!(AfPacketConfig::v2_slot(1514, false), 1584);
    let c = AfPacketConfig::v2_gso(16);
    assert!(c.v2 && !c.vnet_hdr);
    let c = AfPacketConfig {
        vnet_hdr: true,
        ..c
    };
    assert_eq!(
        (c.block_size, c.block_count, c.frame_size),
        (1 << 18, 64, 65_632)
    );
    assert_eq!(c.ring_frames(GSO_FRAME_MAX), 192);
    assert_eq!(c.ring_frames(60), 192);
    assert_eq!(c.ring_frames(65_632 - 76), 192);
    assert_eq!(c.ring_frames(65_632 - 75), 0);
    assert_eq!(AfPacketConfig::v2_gso(4).ring_frames(1514), 48);
}

#[test]
fn the_ring_holds_gso_super_packets_by_the_block() {
    let vnet = AfPacketConfig {
        vnet_hdr: true,
        ..AfPacketConfig::default()
    };
    // a 64 KB super-packet: 92 bytes in front of it (tpacket3 header, sockaddr_ll, the
    // virtio_net_hdr), 65 648 in all, three to a 256 KiB block
    assert_eq!(vnet.ring_frames(GSO_FRAME_MAX), 3 * 16, "the default 4 MiB");
    let big = AfPacketConfig {
        vnet_hdr: true,
        ..AfPacketConfig::with_ring_mib(16)
    };
    assert_eq!((big.block_size, big.block_count), (1 << 18, 64));
    assert_eq!(big.ring_frames(GSO_FRAME_MAX), 3 * 64);
    // iperf3's: 45 segments of 1 448 bytes and 66 bytes of headers, 65 320 in the ring, four
    // to a block (and four of 65 428 bytes, the longest that fit four)
    let iperf = 14 + 20 + 32 + 45 * 1448;
    assert_eq!(iperf, 65_226);
    assert_eq!(vnet.ring_frames(iperf), 4 * 16);
    assert_eq!(big.ring_frames(iperf), 4 * 64);
    assert_eq!(big.ring_frames(65_428), 4 * 64);
    assert_eq!(big.ring_frames(65_429), 3 * 64);
    // MTU-sized frames: 1 608 bytes each with the header (1 600 without), 162 (163) a block
    assert_eq!(big.ring_frames(1514), 162 * 64);
    assert_eq!(AfPacketConfig::default().ring_frames(1514), 163 * 16);
    // one byte more than a block can take after its header: none
    let one = AfPacketConfig {
        block_count: 1,
        ..AfPacketConfig::default()
    };
    assert_eq!(one.ring_frames((1 << 18) - 48 - 82 - 8), 1);
    assert_eq!(one.ring_frames((1 << 18) - 48 - 82), 0);
    assert_eq!(AfPacketConfig::with_ring_mib(1).block_count, 4);
    assert_eq!(AfPacketConfig::with_ring_mib(0).block_count, 1);
}

/// Sockets on `pair` for counting frames exactly: no IPv6 on the veths (DAD, router
/// solicitations), vnet headers, a ring of two 256 KiB blocks that close when full, never on a
/// timer.
fn open_quiet(pair: &VethPair) -> (AfPacket, AfPacket, AfPacketConfig) {
    for (ns, dev) in [(&pair.router, "vr"), (&pair.peer, "vp")] {
        let ok = std::process::Command::new("ip")
            .args(["netns", "exec", ns, "sysctl", "-qw"])
            .arg(format!("net.ipv6.conf.{dev}.disable_ipv6=1"))
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "disabling IPv6 on {dev}");
    }
    let config = AfPacketConfig {
        qdisc_bypass: true,
        promiscuous: true,
        vnet_hdr: true,
        block_count: 2,
        retire_timeout: Duration::from_secs(60),
        ..AfPacketConfig::default()
    };
    let (c1, c2) = (config.clone(), config.clone());
    let router = in_netns(&pair.router, move || AfPacket::open("vr", &c1).unwrap());
    let peer = in_netns(&pair.peer, move || AfPacket::open("vp", &c2).unwrap());
    (router, peer, config)
}

/// The kernel packs super-packets into the ring as `ring_frames` says: a ring of two 256 KiB
/// blocks that nobody reads takes exactly 18 frames of 29 014 bytes (29 112 with their
/// headers, nine to a block, 87 bytes to spare), and drops the rest as `rx_drops`.
#[test]
fn a_full_ring_holds_what_ring_frames_says() {
    let test = "a_full_ring_holds_what_ring_frames_says";
    let Some(pair) = VethPair::create(test, "afr") else {
        return;
    };
    let (mut router, mut peer, config) = open_quiet(&pair);
    let frame = tcp_partial(20 * 1448);
    assert_eq!(frame.len(), 29_014);
    let fits = config.ring_frames(frame.len());
    assert_eq!(fits, 18);
    let (gso, _) = tcp_partial_vnet();
    let deadline = Instant::now() + Duration::from_secs(10);
    send_all_vnet(&mut router, &[frame.as_slice(); 30], &[gso; 30], deadline);
    std::thread::sleep(Duration::from_millis(200));
    let mut got = 0;
    let mut other = vec![];
    while peer.poll(Duration::from_millis(100)).unwrap() {
        peer.rx_burst_info(64, |f, i| {
            if f == frame.as_slice() && i.vnet.is_gso() {
                got += 1;
            } else {
                other.push(f.len());
            }
        });
    }
    assert_eq!((got, other), (fits, vec![]), "frames received whole");
    let st = peer.stats().unwrap();
    assert_eq!(st.rx_drops, 30 - fits as u64, "{st:?}");
}

/// A burst stops at its byte budget: with 64 KiB of budget, 3 frames of 29 014 bytes (the
/// third crosses it) a burst, where the frame budget alone takes a block's nine at once.
#[test]
fn a_burst_stops_at_its_byte_budget() {
    let test = "a_burst_stops_at_its_byte_budget";
    let Some(pair) = VethPair::create(test, "afb") else {
        return;
    };
    let (mut router, mut peer, _) = open_quiet(&pair);
    let frame = tcp_partial(20 * 1448);
    let (gso, _) = tcp_partial_vnet();
    let deadline = Instant::now() + Duration::from_secs(10);
    // nine fill a block, which is handed over when the tenth does not fit
    send_all_vnet(&mut router, &[frame.as_slice(); 10], &[gso; 10], deadline);
    let mut bursts = vec![];
    while bursts.iter().sum::<usize>() < 9 {
        assert!(Instant::now() < deadline, "bursts {bursts:?}");
        let _ = peer.poll(Duration::from_millis(50));
        let mut ours = 0;
        let n = peer.rx_burst_budget(64, 64 << 10, |f, _| {
            assert_eq!(f, frame.as_slice());
            ours += 1;
        });
        assert_eq!(n, ours);
        if ours > 0 {
            bursts.push(ours);
        }
    }
    assert_eq!(bursts, vec![3, 3, 3]);
    // without the byte budget, one burst takes a whole block: the tenth and eight more,
    // handed over when the ninth after them does not fit
    send_all_vnet(&mut router, &[frame.as_slice(); 9], &[gso; 9], deadline);
    let mut n = 0;
    while n == 0 {
        assert!(Instant::now() < deadline);
        let _ = peer.poll(Duration::from_millis(50));
        n = peer.rx_burst_info(64, |_, _| {});
    }
    assert_eq!(n, 9);
}

/// `run`'s V2 geometry: 2 KiB slots, 128 to a 256 KiB block, 2 048 in 4 MiB, each taking a
/// frame of up to 1 972 bytes with its vnet header (76 bytes in front of it); a 16 MiB
/// receive buffer, or the ring's size if larger.
#[test]
fn the_small_slot_v2_ring_holds_mtu_sized_frames() {
    let c = AfPacketConfig {
        vnet_hdr: true,
        ..AfPacketConfig::v2_slots(4, V2_SLOT)
    };
    assert!(c.v2);
    assert_eq!(
        (c.block_size, c.block_count, c.frame_size, c.rcvbuf),
        (1 << 18, 16, 2048, Some(16 << 20))
    );
    assert_eq!(c.ring_frames(60), 2048);
    assert_eq!(c.ring_frames(1518), 2048);
    assert_eq!(c.ring_frames(1972), 2048);
    assert_eq!(c.ring_frames(1973), 0);
    assert_eq!(c.ring_frames(GSO_FRAME_MAX), 0);
    let big = AfPacketConfig::v2_slots(32, V2_SLOT);
    assert_eq!((big.ring_frames(60), big.rcvbuf), (16_384, Some(32 << 20)));
}

/// Sockets with vnet headers on `pair`, a V2 ring of 2 KiB slots for the peer, no IPv6 on the
/// veths (so nothing but the test's frames arrive), and a 9 000-byte MTU, so that plain frames
/// longer than a slot can be sent too.
fn open_small_slots(pair: &VethPair, rcvbuf: Option<u32>) -> (AfPacket, AfPacket) {
    for (ns, dev) in [(&pair.router, "vr"), (&pair.peer, "vp")] {
        let ok = std::process::Command::new("ip")
            .args(["netns", "exec", ns, "sysctl", "-qw"])
            .arg(format!("net.ipv6.conf.{dev}.disable_ipv6=1"))
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "disabling IPv6 on {dev}");
        let ok = std::process::Command::new("ip")
            .args(["netns", "exec", ns, "ip", "link", "set", dev, "mtu", "9000"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "MTU 9000 on {dev}");
    }
    let tx = AfPacketConfig {
        qdisc_bypass: true,
        vnet_hdr: true,
        ..AfPacketConfig::default()
    };
    let rx = AfPacketConfig {
        promiscuous: true,
        vnet_hdr: true,
        rcvbuf,
        ..AfPacketConfig::v2_slots(1, V2_SLOT)
    };
    let router = in_netns(&pair.router, move || AfPacket::open("vr", &tx).unwrap());
    let peer = in_netns(&pair.peer, move || AfPacket::open("vp", &rx).unwrap());
    (router, peer)
}

/// Receives TCP frames (ours) from `peer` until `n` have come or nothing more comes for 300 ms.
fn recv_tcp(peer: &mut AfPacket, n: usize, deadline: Instant) -> Vec<(Vec<u8>, RxInfo)> {
    let mut got = vec![];
    let mut quiet = Instant::now();
    while got.len() < n && quiet.elapsed() < Duration::from_millis(300) {
        assert!(Instant::now() < deadline, "received {}", got.len());
        let _ = peer.poll(Duration::from_millis(20));
        let k = peer.rx_burst_info(16, |f, i| {
            if f.len() > 54 && f[23] == 6 {
                got.push((f.to_vec(), i));
            }
        });
        if k > 0 {
            quiet = Instant::now();
        }
    }
    got
}

/// Frames that fit their 2 KiB slot and frames that do not (read whole from the socket's
/// queue), interleaved, arrive in the order sent, byte for byte, each with its vnet header:
/// the slot boundary exactly (1 972 bytes fit, 1 973 do not), jumbo frames and GSO
/// super-packets, read in bursts that end between the two kinds.
#[test]
fn small_and_big_frames_interleaved_arrive_in_the_order_sent() {
    let test = "small_and_big_frames_interleaved_arrive_in_the_order_sent";
    let Some(pair) = VethPair::create(test, "agi") else {
        return;
    };
    let (mut router, mut peer) = open_small_slots(&pair, Some(8 << 20));
    let (gso, plain) = tcp_partial_vnet();
    // payload bytes: the frame is 54 more
    let pattern = [
        100usize,
        20 * 1448,
        6,
        1918,
        1919,
        8000,
        8000,
        300,
        40 * 1448,
        1400,
    ];
    let mut frames = vec![];
    let mut hdrs = vec![];
    for round in 0..6u32 {
        for (i, &p) in pattern.iter().enumerate() {
            frames.push(tcp_seq(p, round * 100 + i as u32));
            hdrs.push(if p > 8946 { gso } else { plain });
        }
    }
    assert_eq!(frames[3].len(), 1972);
    assert_eq!(frames[4].len(), 1973);
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    send_all_vnet(&mut router, &refs, &hdrs, deadline);
    let got = recv_tcp(&mut peer, frames.len(), deadline);
    let seqs: Vec<u32> = got
        .iter()
        .map(|(f, _)| u32::from_be_bytes([f[38], f[39], f[40], f[41]]))
        .collect();
    let want: Vec<u32> = (0..frames.len() as u32)
        .map(|k| k / 10 * 100 + k % 10)
        .collect();
    assert_eq!(seqs, want, "in the order sent");
    for (k, ((f, info), (sent, h))) in got.iter().zip(frames.iter().zip(&hdrs)).enumerate() {
        assert!(f == sent, "frame {k} ({} bytes) differs", sent.len());
        assert_eq!(info.vnet.gso_type, h.gso_type, "frame {k}");
        assert_eq!(info.vnet.gso_size, h.gso_size, "frame {k}");
        assert_eq!(
            (info.vnet.flags & VnetHdr::NEEDS_CSUM, info.vnet.csum_start),
            (VnetHdr::NEEDS_CSUM, 34),
            "frame {k}"
        );
    }
    let st = peer.stats().unwrap();
    // 1 973, 8 000 twice, 29 014 and 57 974 bytes: five a round
    assert_eq!(
        (
            st.rx_copied,
            st.rx_gso,
            st.rx_truncated,
            st.rx_malformed,
            st.rx_drops
        ),
        (30, 12, 0, 0, 0),
        "{st:?}"
    );
}

/// With the socket's receive buffer full, the kernel keeps no whole copy of a frame too long
/// for its slot (no `TP_STATUS_COPY`, only the truncated slot): it is counted as
/// `rx_truncated` and never delivered. The first super-packet is queued (the queue was
/// empty), the two behind it find the smallest buffer the kernel allows (some 4.6 KB) full;
/// the small frames around them come through.
#[test]
fn a_frame_too_big_for_its_slot_with_the_receive_buffer_full_is_counted_not_delivered() {
    let test = "a_frame_too_big_for_its_slot_with_the_receive_buffer_full_is_counted_not_delivered";
    let Some(pair) = VethPair::create(test, "agt") else {
        return;
    };
    let (mut router, mut peer) = open_small_slots(&pair, Some(1));
    let (gso, plain) = tcp_partial_vnet();
    let big = |seq| tcp_seq(20 * 1448, seq);
    let small = |seq| tcp_seq(100, seq);
    let frames = [small(1), big(2), big(3), small(4), big(5), small(6)];
    let hdrs = [plain, gso, gso, plain, gso, plain];
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    send_all_vnet(&mut router, &refs, &hdrs, deadline);
    // everything is in the ring (and the queue) before the first read
    std::thread::sleep(Duration::from_millis(200));
    let got = recv_tcp(&mut peer, 4, deadline);
    let got: Vec<Vec<u8>> = got.into_iter().map(|(f, _)| f).collect();
    assert!(
        got == [
            frames[0].clone(),
            frames[1].clone(),
            frames[3].clone(),
            frames[5].clone()
        ],
        "received {:?}",
        got.iter().map(|f| f.len()).collect::<Vec<_>>()
    );
    let st = peer.stats().unwrap();
    assert_eq!(
        (st.rx_copied, st.rx_truncated, st.rx_malformed),
        (1, 2, 0),
        "{st:?}"
    );
}

/// An 802.1Q-tagged frame longer than its slot: the kernel takes the tag off (into the skb's
/// metadata) before packet sockets see it, so the packet read from the socket's queue has no
/// tag; the slot's `tp_vlan_tci` (the same skb's) puts it back, as for a frame in its slot.
/// A tagged frame that fits its slot comes with its tag too.
#[test]
fn a_tagged_frame_longer_than_its_slot_keeps_its_tag() {
    let test = "a_tagged_frame_longer_than_its_slot_keeps_its_tag";
    let Some(pair) = VethPair::create(test, "agv") else {
        return;
    };
    let (mut router, mut peer) = open_small_slots(&pair, None);
    let tagged = |len: usize, seq: u32| {
        let inner = frame(FROM_ROUTER, seq, len);
        let mut wire = inner[..12].to_vec();
        wire.extend_from_slice(&[0x81, 0x00, 0x20, 0x07]);
        wire.extend_from_slice(&inner[12..]);
        wire
    };
    let (big, small) = (tagged(5000, 1), tagged(300, 2));
    let deadline = Instant::now() + Duration::from_secs(10);
    let plain = VnetHdr::default();
    send_all_vnet(
        &mut router,
        &[big.as_slice(), small.as_slice()],
        &[plain, plain],
        deadline,
    );
    let mut got = vec![];
    while got.len() < 2 {
        assert!(Instant::now() < deadline, "received {}", got.len());
        let _ = peer.poll(Duration::from_millis(20));
        peer.rx_burst(16, |f| {
            if f.len() > 18 && f[12..14] == [0x81, 0x00] && f[16..18] == ETHERTYPE.to_be_bytes() {
                got.push(f.to_vec());
            }
        });
    }
    assert!(got[0] == big, "the long frame with its tag");
    assert_eq!(got[1], small);
    let st = peer.stats().unwrap();
    assert_eq!((st.rx_copied, st.rx_truncated), (1, 0), "{st:?}");
}

/// A connected pair of datagram sockets: a queue of whole packets, as a packet socket's receive
/// queue is, for `recv_copy` without a ring.
fn dgram_pair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: socketpair writes two descriptors into the live two-element array.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0, "socketpair: {}", io::Error::last_os_error());
    // SAFETY: both descriptors are fresh and owned by nothing else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// What a `TP_STATUS_COPY` slot says of `whole`: its length and its first `snap` bytes.
fn copy_slot(whole: &[u8], snap: usize) -> RxPacket<'_> {
    RxPacket {
        frame: &whole[..snap],
        next_offset: 0,
        truncated: true,
        copy: true,
        len: whole.len(),
        vlan: None,
        csum_not_ready: false,
        vnet: VnetHdr::default(),
    }
}

/// A packet left on the queue by an earlier slot whose read failed is dropped, and the slot
/// gets its own packet, the one behind it: the queue is back in step with the ring, so the
/// slots after it get theirs too (rather than each its predecessor's, never matching).
#[test]
fn a_copy_slot_skips_a_packet_left_behind_by_an_earlier_slot() {
    let (tx, rx) = dgram_pair();
    let stale = frame(FROM_ROUTER, 1, 5000);
    let own = frame(FROM_ROUTER, 2, 5000);
    let next = frame(FROM_ROUTER, 3, 7000);
    for f in [&stale, &own, &next] {
        // SAFETY: f is a live slice of f.len() bytes the kernel only reads.
        let rc = unsafe { libc::send(tx.as_raw_fd(), f.as_ptr().cast(), f.len(), 0) };
        assert_eq!(rc, f.len() as isize, "send: {}", io::Error::last_os_error());
    }
    let mut buf = vec![];
    let got = recv_copy(&rx, &mut buf, &copy_slot(&own, 1900), false)
        .map(|p| p.frame.to_vec())
        .map_err(|e| format!("{e:?}"));
    assert!(
        got.as_ref().is_ok_and(|f| *f == own),
        "{:?}",
        got.map(|f| f.len())
    );
    let got = recv_copy(&rx, &mut buf, &copy_slot(&next, 1900), false)
        .map(|p| p.frame.to_vec())
        .map_err(|e| format!("{e:?}"));
    assert!(
        got.as_ref().is_ok_and(|f| *f == next),
        "{:?}",
        got.map(|f| f.len())
    );
    // nothing queued: the slot's packet is missing, and nothing waits behind it
    assert_eq!(
        recv_copy(&rx, &mut buf, &copy_slot(&next, 1900), false).err(),
        Some(CopyLost::Missing)
    );
}

/// A link that goes down and up sets the socket's error (`ENETDOWN`), which the next read of
/// the queue reports once instead of a packet: a frame too long for its slot that waits then
/// is still read whole, and so are the ones after it.
#[test]
fn frames_longer_than_their_slot_survive_a_link_going_down_and_up() {
    let test = "frames_longer_than_their_slot_survive_a_link_going_down_and_up";
    let Some(pair) = VethPair::create(test, "agd") else {
        return;
    };
    let (mut router, mut peer) = open_small_slots(&pair, None);
    let plain = VnetHdr::default();
    let frames: Vec<Vec<u8>> = (1..=3).map(|seq| frame(FROM_ROUTER, seq, 5000)).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    send_all_vnet(&mut router, &[frames[0].as_slice()], &[plain], deadline);
    // the first is in its slot and on the queue before the link goes down
    std::thread::sleep(Duration::from_millis(100));
    for state in ["down", "up"] {
        let ok = std::process::Command::new("ip")
            .args([
                "netns", "exec", &pair.peer, "ip", "link", "set", "vp", state,
            ])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "vp {state}");
    }
    let rest: Vec<&[u8]> = frames[1..].iter().map(Vec::as_slice).collect();
    send_all_vnet(&mut router, &rest, &[plain, plain], deadline);
    std::thread::sleep(Duration::from_millis(100));
    let mut got = vec![];
    while got.len() < 3 && Instant::now() < deadline {
        let _ = peer.poll(Duration::from_millis(20));
        peer.rx_burst(16, |f| {
            if ours(f, FROM_ROUTER) {
                got.push(f.to_vec());
            }
        });
    }
    let st = peer.stats().unwrap();
    assert!(
        got == frames,
        "received {:?}, {st:?}",
        got.iter().map(|f| f[18]).collect::<Vec<_>>()
    );
    assert_eq!((st.rx_copied, st.rx_malformed), (3, 0), "{st:?}");
}
