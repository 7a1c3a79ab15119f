//! The ring and frame bookkeeping against a simulated kernel (no privileges needed), and live
//! transmit on a veth pair (root). Receiving needs an XDP program that redirects into the
//! socket: that is tested with the steering program in `nft-xdp`.

use super::*;
use crate::afpacket::{AfPacket, AfPacketConfig};
use crate::netns::{in_netns, VethPair};
use std::collections::VecDeque;
use std::time::Instant;

#[test]
fn config_is_checked_before_any_syscall() {
    for (bad, what) in [
        (
            AfXdpConfig {
                frame_size: 3000,
                ..AfXdpConfig::default()
            },
            "frame_size",
        ),
        (
            AfXdpConfig {
                rx_size: 1000,
                ..AfXdpConfig::default()
            },
            "powers of two",
        ),
        (
            AfXdpConfig {
                rx_frames: 4096,
                fill_size: 4096,
                frame_count: 4096,
                ..AfXdpConfig::default()
            },
            "leave frames",
        ),
        (
            AfXdpConfig {
                rx_frames: 4096,
                ..AfXdpConfig::default()
            },
            "fill_size",
        ),
    ] {
        let e = AfXdp::open("lo", 0, &bad).err().unwrap();
        assert!(matches!(e, AfXdpError::InvalidConfig(_)), "{e}");
        assert!(e.to_string().contains(what), "{e}");
    }
    let e = AfXdp::open("no-such-if0", 0, &AfXdpConfig::default())
        .err()
        .unwrap();
    assert_eq!(e.to_string(), "no interface named \"no-such-if0\"");
}

// ---- The bookkeeping against a simulated kernel ----

/// Ring memory laid out as the kernel lays it out (indices on their own cache lines).
const OFF: libc::xdp_ring_offset = libc::xdp_ring_offset {
    producer: 0,
    consumer: 64,
    flags: 128,
    desc: 192,
};

fn test_ring<T: Copy>(size: u32) -> Ring<T> {
    let len = OFF.desc as usize + size as usize * mem::size_of::<T>();
    Ring::from_mapping(Mapping::anonymous(len).unwrap(), &OFF, size)
}

impl<T: Copy> Ring<T> {
    /// A second handle on the same ring, for the simulated kernel side.
    fn view(&self) -> Ring<T> {
        Ring {
            producer: self.producer,
            consumer: self.consumer,
            flags: self.flags,
            descs: self.descs,
            mask: self.mask,
            size: self.size,
            cached_prod: self.prod_index().load(Ordering::Acquire),
            cached_cons: self.cons_index().load(Ordering::Acquire),
            _map: None,
        }
    }

    /// The entries published and not yet consumed, as the memory says.
    fn in_flight(&self) -> Vec<T> {
        let (p, c) = (
            self.prod_index().load(Ordering::Acquire),
            self.cons_index().load(Ordering::Acquire),
        );
        (0..p.wrapping_sub(c))
            .map(|i| {
                let slot = (c.wrapping_add(i) & self.mask) as usize;
                // SAFETY: slot < size, inside the array that the owning ring keeps mapped.
                unsafe { self.descs.as_ptr().add(slot).read() }
            })
            .collect()
    }
}

/// The kernel's side of the four rings: takes frames from fill and TX, gives them back on RX
/// and completion, holding some in between (a frame being received or sent).
struct Kernel {
    fill: Ring<u64>,
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    comp: Ring<u64>,
    /// Taken from the fill ring, not yet on the RX ring.
    receiving: VecDeque<u64>,
    /// Taken from the TX ring, not yet on the completion ring.
    sending: VecDeque<u64>,
    /// What went out on the wire.
    wire: Vec<Vec<u8>>,
    umem: *mut u8,
    next_seq: u32,
}

impl Kernel {
    fn take_fill(&mut self, max: u32) {
        let n = self.fill.cons_available(max);
        for i in 0..n {
            self.receiving.push_back(self.fill.cons_read(i));
        }
        self.fill.cons_release(n);
    }

    /// Receives up to `max` frames into the frames it holds, as copy mode does: data at
    /// XDP_HEADROOM into the frame.
    fn deliver(&mut self, max: u32, frame_size: u64) {
        let n = self.rx.prod_reserve(max.min(self.receiving.len() as u32));
        for i in 0..n {
            let base = self.receiving.pop_front().unwrap();
            assert_eq!(
                base % frame_size,
                0,
                "fill entry {base:#x} not a frame start"
            );
            let data = payload(self.next_seq, 60 + (self.next_seq as usize * 37) % 1400);
            self.next_seq += 1;
            let addr = base + XDP_HEADROOM as u64;
            // SAFETY: the simulated kernel owns this frame (taken from the fill ring), and
            // headroom + data fits a 2048-byte frame inside the UMEM.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    data.as_ptr(),
                    self.umem.add(addr as usize),
                    data.len(),
                )
            };
            self.rx.prod_write(
                i,
                libc::xdp_desc {
                    addr,
                    len: data.len() as u32,
                    options: 0,
                },
            );
        }
        self.rx.prod_submit(n);
    }

    fn take_tx(&mut self, max: u32) {
        let n = self.tx.cons_available(max);
        for i in 0..n {
            let d = self.tx.cons_read(i);
            // SAFETY: the descriptor points inside the UMEM (checked by the caller's audit
            // before) and the frame is the kernel's until completion.
            let bytes = unsafe {
                std::slice::from_raw_parts(self.umem.add(d.addr as usize), d.len as usize)
            };
            self.wire.push(bytes.to_vec());
            self.sending.push_back(d.addr);
        }
        self.tx.cons_release(n);
    }

    fn complete(&mut self, max: u32) {
        let n = self.comp.prod_reserve(max.min(self.sending.len() as u32));
        for i in 0..n {
            self.comp.prod_write(i, self.sending.pop_front().unwrap());
        }
        self.comp.prod_submit(n);
    }
}

fn payload(seq: u32, len: usize) -> Vec<u8> {
    let mut v = seq.to_be_bytes().to_vec();
    let mut x = seq.wrapping_mul(2_654_435_761) | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push(x as u8);
    }
    v
}

/// Every frame in exactly one place, and the counters agree with the places.
fn audit(core: &Core, ks: &[Kernel]) -> Result<(), String> {
    let fs = core.frame_size;
    let base = |a: u64| a - a % fs;
    let mut all: Vec<u64> = core.free.clone();
    for (p, (r, k)) in core.ports.iter().zip(ks).enumerate() {
        let fill: Vec<u64> = r.fill.in_flight();
        let rx: Vec<u64> = r.rx.in_flight().iter().map(|d| base(d.addr)).collect();
        let tx: Vec<u64> = r.tx.in_flight().iter().map(|d| base(d.addr)).collect();
        let comp: Vec<u64> = r.comp.in_flight().iter().map(|&a| base(a)).collect();
        let receiving = fill.len() + k.receiving.len() + rx.len();
        let sending = tx.len() + k.sending.len() + comp.len();
        if r.receiving as usize != receiving || r.sending as usize != sending {
            return Err(format!(
                "port {p}: counters receiving {} sending {}, rings: receiving {receiving}, \
                 sending {sending}",
                r.receiving, r.sending
            ));
        }
        all.extend(fill);
        all.extend(k.receiving.iter().map(|&a| base(a)));
        all.extend(rx);
        all.extend(tx);
        all.extend(k.sending.iter().map(|&a| base(a)));
        all.extend(comp);
    }
    all.sort_unstable();
    let want: Vec<u64> = (0..core.frame_count as u64).map(|i| i * fs).collect();
    if all != want {
        let mut dup = all.clone();
        dup.dedup();
        return Err(format!(
            "{} frame places for {} frames ({} distinct)",
            all.len(),
            want.len(),
            dup.len()
        ));
    }
    Ok(())
}

fn sim(ports: usize, frame_count: u32, ring: u32, rx_frames: u32) -> (Core, Vec<Kernel>) {
    let config = AfXdpConfig {
        frame_size: 2048,
        frame_count,
        rx_size: ring,
        tx_size: ring,
        fill_size: ring,
        completion_size: ring,
        rx_frames,
        ..AfXdpConfig::default()
    };
    config.validate().unwrap();
    let umem = Mapping::anonymous(2048 * frame_count as usize).unwrap();
    let ptr = umem.ptr.as_ptr();
    let rings = (0..ports)
        .map(|_| Rings {
            fill: test_ring(ring),
            comp: test_ring(ring),
            rx: test_ring(ring),
            tx: test_ring(ring),
            receiving: 0,
            sending: 0,
        })
        .collect();
    let core = Core::new(umem, &config, rings);
    let ks = core
        .ports
        .iter()
        .map(|r| Kernel {
            fill: r.fill.view(),
            rx: r.rx.view(),
            tx: r.tx.view(),
            comp: r.comp.view(),
            receiving: VecDeque::new(),
            sending: VecDeque::new(),
            wire: Vec::new(),
            umem: ptr,
            next_seq: 0,
        })
        .collect();
    (core, ks)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 7;
        self.0 ^= self.0 >> 9;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Adds to each port's expected wire what its TX ring took of the frames `asked` (port and
/// bytes, in the order the burst asked for them): as many as the ring has pending, the first
/// ones; a full ring recycles the rest. Every pending frame must be one that was asked for.
fn expect_taken(core: &Core, asked: Vec<(usize, Vec<u8>)>, expect_wire: &mut [Vec<Vec<u8>>]) {
    let mut taken = core.pending.clone();
    for (q, bytes) in asked {
        if taken[q] > 0 {
            taken[q] -= 1;
            expect_wire[q].push(bytes);
        }
    }
    assert!(taken.iter().all(|&t| t == 0));
}

#[test]
fn no_frame_is_lost_or_duplicated_under_any_interleaving() {
    const PORTS: usize = 2;
    for seed in 1..=40u64 {
        // Small rings and few frames, so every ring fills up and wraps many times.
        let (mut core, mut ks) = sim(PORTS, 24, 8, 6);
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut expect_wire: Vec<Vec<Vec<u8>>> = vec![Vec::new(); PORTS];
        let mut received = 0u64;
        let mut bad_port = 0u64;
        for (p, k) in ks.iter_mut().enumerate() {
            core.refill(p);
            // Each port's simulated kernel numbers its frames apart.
            k.next_seq = p as u32 * 1_000_000;
        }
        audit(&core, &ks).unwrap();
        for step in 0..4000 {
            let p = rng.below(PORTS as u64) as usize;
            match rng.below(8) {
                0 => ks[p].take_fill(rng.below(8) as u32 + 1),
                1 => ks[p].deliver(rng.below(8) as u32 + 1, 2048),
                2 => ks[p].take_tx(rng.below(8) as u32 + 1),
                3 => ks[p].complete(rng.below(8) as u32 + 1),
                4 => {
                    let max = rng.below(10) as usize;
                    let actions: Vec<u64> = (0..max).map(|_| rng.below(5)).collect();
                    let mut i = 0;
                    // (port, bytes) of every frame the callback asked to send.
                    let mut asked: Vec<(usize, Vec<u8>)> = Vec::new();
                    let r = core.rx(p, max, |f| {
                        let a = actions[i];
                        i += 1;
                        let seq = u32::from_be_bytes(f.data()[..4].try_into().unwrap());
                        assert_eq!(
                            f.data(),
                            &payload(seq, f.len())[..],
                            "frame {seq} corrupted"
                        );
                        match a {
                            0 => RxAction::Recycle,
                            1 => {
                                // Rewrite in place and send back.
                                f.data_mut()[4] ^= 0xff;
                                asked.push((p, f.data().to_vec()));
                                RxAction::Transmit
                            }
                            2 => {
                                // Push a 4-byte header into the headroom, send on the other port.
                                assert!(f.adjust_head(-4));
                                f.data_mut()[..4].copy_from_slice(b"VLAN");
                                let q = (p + 1) % PORTS;
                                asked.push((q, f.data().to_vec()));
                                RxAction::TransmitOn(q)
                            }
                            3 => {
                                asked.push((0, f.data().to_vec()));
                                RxAction::TransmitOn(0)
                            }
                            _ => RxAction::TransmitOn(PORTS + 7),
                        }
                    });
                    received += r.received as u64;
                    bad_port += r.bad_port as u64;
                    assert_eq!(r.bad, 0);
                    expect_taken(&core, asked, &mut expect_wire);
                    core.refill(p);
                }
                6 => {
                    // A burst of every port at once (rx_lend), with the same actions.
                    let max = rng.below(10) as usize;
                    let actions: Vec<u64> = (0..max * PORTS).map(|_| rng.below(5)).collect();
                    let mut asked: Vec<(usize, Vec<u8>)> = Vec::new();
                    let rs = core.rx_lend(max, |lent| {
                        assert!(lent.len() <= max * PORTS);
                        for (l, &a) in lent.iter_mut().zip(&actions) {
                            let f = &mut l.frame;
                            let seq = u32::from_be_bytes(f.data()[..4].try_into().unwrap());
                            assert_eq!(f.data(), &payload(seq, f.len())[..], "frame {seq}");
                            let q = (l.port + 1) % PORTS;
                            l.action = match a {
                                0 => RxAction::Recycle,
                                1 => {
                                    f.data_mut()[4] ^= 0xff;
                                    asked.push((l.port, f.data().to_vec()));
                                    RxAction::Transmit
                                }
                                2 => {
                                    // through parts_mut/set_span, as a slot over the frame does
                                    let (chunk, start, len) = f.parts_mut();
                                    chunk[start - 4..start].copy_from_slice(b"QinQ");
                                    assert!(f.set_span(start - 4, len + 4));
                                    asked.push((q, f.data().to_vec()));
                                    RxAction::TransmitOn(q)
                                }
                                3 => {
                                    asked.push((0, f.data().to_vec()));
                                    RxAction::TransmitOn(0)
                                }
                                _ => RxAction::TransmitOn(PORTS + 7),
                            };
                        }
                    });
                    for r in &rs {
                        received += r.received as u64;
                        bad_port += r.bad_port as u64;
                        assert_eq!(r.bad, 0);
                    }
                    expect_taken(&core, asked, &mut expect_wire);
                    for q in 0..PORTS {
                        core.refill(q);
                    }
                }
                5 => {
                    let n = rng.below(6) as usize;
                    let frames: Vec<Vec<u8>> = (0..n)
                        .map(|j| payload(5_000_000 + j as u32, 60 + j * 100))
                        .collect();
                    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
                    let (taken, sent, too_big) = core.tx_copy(p, &refs);
                    assert_eq!(too_big, 0);
                    assert_eq!(taken, sent);
                    expect_wire[p].extend(frames.into_iter().take(sent));
                }
                _ => {
                    core.reclaim(p);
                    core.refill(p);
                }
            }
            if let Err(e) = audit(&core, &ks) {
                panic!("seed {seed} step {step}: {e}");
            }
        }
        // Drain: everything sent goes out, every frame comes home.
        for _ in 0..100 {
            for (p, k) in ks.iter_mut().enumerate() {
                k.take_tx(64);
                k.complete(64);
                core.reclaim(p);
            }
        }
        audit(&core, &ks).unwrap();
        for (p, k) in ks.iter().enumerate() {
            assert_eq!(
                k.wire, expect_wire[p],
                "seed {seed}: port {p}'s wire differs"
            );
        }
        assert!(
            received > 100,
            "seed {seed}: only {received} frames received"
        );
        assert!(bad_port > 0);
        assert_eq!(core.counts().sending, 0);
        assert_eq!(core.counts().total(), 24);
    }
}

#[test]
fn the_audit_catches_a_lost_and_a_duplicated_frame() {
    let (mut core, ks) = sim(1, 16, 8, 4);
    core.refill(0);
    audit(&core, &ks).unwrap();
    let f = core.free.pop().unwrap();
    assert!(audit(&core, &ks).is_err(), "a lost frame went unnoticed");
    core.free.push(f);
    core.free.push(f);
    assert!(
        audit(&core, &ks).is_err(),
        "a duplicated frame went unnoticed"
    );
    core.free.pop();
    core.ports[0].receiving += 1;
    assert!(audit(&core, &ks).is_err(), "a wrong counter went unnoticed");
}

#[test]
fn frames_grow_and_shrink_only_inside_their_umem_frame() {
    let mut chunk = vec![0u8; 2048];
    let mut f = FrameMut {
        chunk: &mut chunk,
        start: XDP_HEADROOM,
        len: 100,
    };
    assert!(f.adjust_head(-(XDP_HEADROOM as isize)));
    assert_eq!((f.headroom(), f.len()), (0, 356));
    assert!(!f.adjust_head(-1));
    assert!(f.adjust_head(356));
    assert!(f.is_empty());
    assert!(!f.adjust_head(1));
    assert!(f.set_len(2048 - 356));
    assert!(!f.set_len(2048 - 355));
}

// ---- Live: transmit on a veth pair ----

const ETHERTYPE: u16 = 0x88b5;

fn frame(seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x58]);
    f.extend_from_slice(&ETHERTYPE.to_be_bytes());
    f.extend_from_slice(&payload(seq, len - 14));
    f
}

#[test]
fn veth_frames_sent_by_the_socket_arrive_byte_identical_and_no_frame_leaks() {
    let test = "veth_frames_sent_by_the_socket_arrive_byte_identical_and_no_frame_leaks";
    let Some(pair) = VethPair::create(test, "axt") else {
        return;
    };
    let config = AfXdpConfig {
        frame_count: 256,
        rx_frames: 64,
        fill_size: 64,
        rx_size: 64,
        tx_size: 64,
        completion_size: 64,
        busy_poll: Some(BusyPoll {
            usecs: 20,
            budget: 64,
        }),
        ..AfXdpConfig::default()
    };
    let mut xsk = in_netns(&pair.router, move || AfXdp::open("vr", 0, &config).unwrap());
    // veth has no zero-copy AF_XDP: Auto falls back to copy mode, where a socket has no
    // NAPI to busy poll, so it does not try (and the rest works as without).
    assert!(!xsk.zero_copy());
    assert!(!xsk.set.busy_polling());
    assert!(!xsk.set.busy_poll(), "nothing received yet");
    let mut peer = in_netns(&pair.peer, || {
        AfPacket::open("vp", &AfPacketConfig::default()).unwrap()
    });
    const N: usize = 3000;
    let sent: Vec<Vec<u8>> = (0..N)
        .map(|i| frame(i as u32, 60 + (i * 97) % 1455))
        .collect();
    let mut got: Vec<Vec<u8>> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Bursts larger than the TX ring (64) and than the 32 frames copy mode sends per kick.
    for burst in sent.chunks(100) {
        let refs: Vec<&[u8]> = burst.iter().map(Vec::as_slice).collect();
        let mut taken = 0;
        while taken < refs.len() {
            taken += xsk.tx_burst(&refs[taken..]);
            peer.rx_burst(usize::MAX, |f| {
                if f.len() > 14 && f[12..14] == ETHERTYPE.to_be_bytes() {
                    got.push(f.to_vec());
                }
            });
            assert!(
                Instant::now() < deadline,
                "sent {taken} of a burst, {:?}",
                xsk.frames()
            );
        }
        assert_eq!(xsk.frames().total(), 256);
    }
    while got.len() < N {
        assert!(
            Instant::now() < deadline,
            "peer got {} of {N}; {:?}",
            got.len(),
            xsk.stats().unwrap()
        );
        xsk.reclaim();
        peer.poll(Duration::from_millis(20)).unwrap();
        peer.rx_burst(usize::MAX, |f| {
            if f.len() > 14 && f[12..14] == ETHERTYPE.to_be_bytes() {
                got.push(f.to_vec());
            }
        });
    }
    assert_eq!(got.len(), N);
    for (i, (g, s)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(g, s, "frame {i} differs");
    }
    // Every frame is back: free, or in the kernel's hands for receiving.
    xsk.reclaim();
    let c = xsk.frames();
    assert_eq!(
        c,
        FrameCounts {
            free: 256 - 64,
            receiving: 64,
            sending: 0
        },
        "{c:?}"
    );
    let st = xsk.stats().unwrap();
    assert_eq!(st.tx_packets, N as u64, "{st:?}");
    assert_eq!((st.tx_invalid, st.tx_too_big), (0, 0), "{st:?}");
    // Nothing redirects into the socket without an XDP program.
    assert_eq!(xsk.rx_burst(usize::MAX, |_| {}), 0);
    // A frame larger than a UMEM frame is skipped and counted, not sent.
    let big = frame(9, 2100);
    assert_eq!(xsk.tx_burst(&[&big]), 1);
    assert_eq!(xsk.stats().unwrap().tx_too_big, 1);
    // Frames for a port the set does not have are all taken (not back-pressure, which the
    // caller would wait on and offer again) and counted as such, no UMEM frame used.
    let before = xsk.frames();
    let small = frame(10, 100);
    assert_eq!(xsk.set.tx_burst(1, &[&small, &small, &big]), 3);
    assert_eq!(xsk.set.tx_burst(usize::MAX, &[&small]), 1);
    assert_eq!(xsk.set.tx_bad_port(), 4);
    assert_eq!(xsk.frames(), before);
    let st = xsk.stats().unwrap();
    assert_eq!((st.tx_packets, st.tx_too_big), (N as u64, 1), "{st:?}");
}
