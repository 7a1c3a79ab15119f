//! Reassembly: byte-exact datagrams from fragments in any order, the kernel's duplicate and
//! overlap rules, limits, timeouts, and fragmentation back to the same pieces.

use super::*;
use proptest::prelude::*;

fn s(x: u64) -> Duration {
    Duration::from_secs(x)
}

/// An IPv4 datagram (header with `id`, DF clear) around `payload`.
fn dgram4(id: u16, proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![
        0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0, 192, 168, 1, 100, 198, 18, 5, 5,
    ];
    h[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    ipv4_checksum(&mut h);
    h.extend_from_slice(payload);
    h
}

fn dgram6(proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0, 0, 0, proto, 64];
    h[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    h.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5]);
    h.extend_from_slice(payload);
    h
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

fn whole(r: Defragged) -> (Vec<u8>, Vec<usize>) {
    match r {
        Defragged::Whole { l3, pieces, .. } => (l3, pieces),
        other => panic!("expected a whole datagram, got {other:?}"),
    }
}

#[test]
fn ipv4_in_and_out_of_order_is_byte_exact_and_fragments_back_the_same() {
    let d = dgram4(0x1111, 17, &payload(2508));
    let frags = fragment(&d, &[1008, 1008, 492], 1500, 0).unwrap();
    assert_eq!(frags.len(), 3);
    assert_eq!(frags[0].len(), 1028);
    assert_eq!(
        &frags[1][6..8],
        &[0x20, 126],
        "offset 1008/8, more fragments"
    );
    assert_eq!(&frags[2][6..8], &[0, 252], "last: offset 2016/8");
    assert_eq!(&frags[2][4..6], &[0x11, 0x11], "the datagram's ID on each");
    for order in [[0, 1, 2], [2, 0, 1], [1, 2, 0]] {
        let mut df = Defrag::new(DefragConfig::default());
        assert_eq!(df.insert(&frags[order[0]], s(1)), Defragged::Held);
        assert_eq!(df.insert(&frags[order[1]], s(1)), Defragged::Held);
        let (l3, pieces) = whole(df.insert(&frags[order[2]], s(1)));
        assert_eq!(l3, d, "order {order:?}");
        assert_eq!(pieces, vec![1008, 1008, 492]);
        assert_eq!((df.queues(), df.mem()), (0, 0));
        assert_eq!(fragment(&l3, &pieces, 1500, 0).unwrap(), frags);
    }
}

#[test]
fn ipv6_reassembles_and_fragments_with_a_new_id() {
    let d = dgram6(17, &payload(2508));
    let frags = fragment(&d, &[1232, 1276], 1500, 0xabcdef).unwrap();
    assert_eq!(frags[0].len(), 40 + 8 + 1232);
    assert_eq!(
        frags[0][6], 44,
        "the fragment header follows the IPv6 header"
    );
    assert_eq!(&frags[0][40..48], &[17, 0, 0, 1, 0, 0xab, 0xcd, 0xef]);
    assert_eq!(&frags[1][40..44], &[17, 0, 0x04, 0xd0]);
    let mut df = Defrag::new(DefragConfig::default());
    assert_eq!(df.insert(&frags[1], s(1)), Defragged::Held);
    let (l3, pieces) = whole(df.insert(&frags[0], s(1)));
    assert_eq!(l3, d);
    let again = fragment(&l3, &pieces, 1500, 7).unwrap();
    assert_eq!(&again[1][44..48], &[0, 0, 0, 7]);
    assert_eq!(again[1][48..], frags[1][48..]);
}

#[test]
fn duplicates_are_dropped_alone_and_overlaps_take_the_datagram() {
    let d = dgram4(7, 17, &payload(1208));
    let f = fragment(&d, &[600, 600, 8], 1500, 0).unwrap();
    let mut df = Defrag::new(DefragConfig::default());
    assert_eq!(df.insert(&f[0], s(1)), Defragged::Held);
    let dup = Defragged::Dropped {
        why: FragDrop::Duplicate,
        fragments: 1,
    };
    assert_eq!(df.insert(&f[0], s(1)), dup);
    assert_eq!(df.insert(&f[1], s(1)), Defragged::Held);
    assert_eq!(df.insert(&f[1], s(1)), dup);
    let (l3, pieces) = whole(df.insert(&f[2], s(1)));
    assert_eq!((l3, pieces), (d.clone(), vec![600, 600, 8]));

    // a fragment reaching into the one before: the datagram goes with both
    let g = fragment(&d, &[608, 600], 1500, 0).unwrap();
    let mut over = g[1].clone();
    over[6..8].copy_from_slice(&[0, 75]); // offset 600 instead of 608
    ipv4_checksum(&mut over[..20]);
    assert_eq!(df.insert(&g[0], s(2)), Defragged::Held);
    assert_eq!(
        df.insert(&over, s(2)),
        Defragged::Dropped {
            why: FragDrop::Overlap,
            fragments: 2
        }
    );
    assert_eq!((df.queues(), df.mem()), (0, 0));
}

#[test]
fn malformed_fragments_are_named() {
    let mut df = Defrag::new(DefragConfig::default());
    let bad = Defragged::Dropped {
        why: FragDrop::Malformed,
        fragments: 1,
    };
    assert_eq!(df.insert(&[], s(1)), bad);
    assert_eq!(df.insert(&[0x45, 0, 0], s(1)), bad);
    assert_eq!(df.insert(&[0x60; 39], s(1)), bad);
    // IPv6: a non-last fragment that is not a multiple of 8 bytes
    let d = dgram6(17, &payload(100));
    let mut f = fragment(&d, &[48, 52], 1500, 1).unwrap();
    f[0].pop();
    f[0][4..6].copy_from_slice(&(8 + 47u16).to_be_bytes());
    assert_eq!(df.insert(&f[0], s(1)), bad);
    // beyond 64 KiB
    let mut far = dgram4(9, 17, &payload(16));
    far[6..8].copy_from_slice(&0x1fffu16.to_be_bytes());
    assert_eq!(df.insert(&far, s(1)), bad);
    // a last fragment that ends before data already held
    let d = dgram4(10, 17, &payload(1600));
    let f = fragment(&d, &[800, 800], 1500, 0).unwrap();
    let mut short = f[0].clone();
    short[6..8].copy_from_slice(&[0, 0]);
    short.truncate(20 + 400);
    short[2..4].copy_from_slice(&420u16.to_be_bytes());
    ipv4_checksum(&mut short[..20]);
    assert_eq!(df.insert(&f[1], s(1)), Defragged::Held);
    assert_eq!(
        df.insert(&short, s(1)),
        Defragged::Dropped {
            why: FragDrop::Malformed,
            fragments: 2
        }
    );
    assert_eq!((df.queues(), df.mem()), (0, 0));
}

#[test]
fn queues_expire_and_memory_is_bounded() {
    let mut df = Defrag::new(DefragConfig {
        mem_limit: 3000,
        ..DefragConfig::default()
    });
    let d = dgram4(1, 17, &payload(3000));
    let f = fragment(&d, &[1000, 1000, 1000], 1500, 0).unwrap();
    assert_eq!(df.insert(&f[0], s(1)), Defragged::Held);
    assert_eq!(df.insert(&f[1], s(1)), Defragged::Held);
    assert_eq!(
        df.insert(&f[2], s(1)),
        Defragged::Dropped {
            why: FragDrop::Memory,
            fragments: 1
        }
    );
    let d6 = dgram6(17, &payload(2000));
    let g = fragment(&d6, &[1000, 1000], 1500, 5).unwrap();
    assert_eq!(
        df.insert(&g[0], s(2)),
        Defragged::Dropped {
            why: FragDrop::Memory,
            fragments: 1
        },
        "no new datagram over the limit"
    );
    assert_eq!(df.expire(s(30)), 0, "30 s after its first fragment");
    assert_eq!(df.expire(s(31)), 2);
    assert_eq!((df.queues(), df.mem()), (0, 0));
    // IPv6 waits 60 s
    assert_eq!(df.insert(&g[0], s(40)), Defragged::Held);
    assert_eq!(df.expire(s(99)), 0);
    assert_eq!(df.expire(s(100)), 1);
}

#[test]
fn egress_smaller_than_the_fragments_cuts_them_again() {
    let d = dgram4(3, 17, &payload(2000));
    let f = fragment(&d, &[1400, 600], 1000, 0).unwrap();
    let sizes: Vec<usize> = f.iter().map(Vec::len).collect();
    assert_eq!(
        sizes,
        vec![996, 996, 20 + 48],
        "cut afresh at the MTU (976 bytes a piece)"
    );
    assert_eq!(&f[2][6..8], &(1952u16 / 8).to_be_bytes());
    // pieces that fit stay as they are
    let f = fragment(&d, &[504, 1496], 1600, 0).unwrap();
    assert_eq!(f.iter().map(Vec::len).collect::<Vec<_>>(), vec![524, 1516]);
    assert!(fragment(&d, &[2000], 20, 0).is_none());
}

/// RFC 791 and `ip_options_fragment`: the first fragment carries every option; the later
/// ones only those with the copied flag, the others turned into no-operations (the header
/// keeps its length, the checksum is the new header's).
#[test]
fn later_fragments_keep_only_copied_options() {
    // options: record route (7, not copied, 7 bytes), NOP, loose source route (131, copied,
    // 7 bytes), timestamp (68, not copied, 4 bytes), end of list: 20 bytes
    let opts = [
        7, 7, 4, 0, 0, 0, 0, 1, 131, 7, 4, 198, 18, 5, 1, 68, 4, 5, 0, 0,
    ];
    let mut d = dgram4(9, 17, &payload(100));
    d[0] = 0x4a;
    d.splice(20..20, opts);
    d[2..4].copy_from_slice(&(140u16).to_be_bytes());
    ipv4_checksum(&mut d[..40]);
    let f = fragment(&d, &[48, 52], 1500, 0).unwrap();
    assert_eq!(f.len(), 2);
    assert_eq!(&f[0][20..40], &opts, "the first fragment keeps them all");
    let later = [
        1, 1, 1, 1, 1, 1, 1, 1, 131, 7, 4, 198, 18, 5, 1, 1, 1, 1, 1, 0,
    ];
    assert_eq!(&f[1][20..40], &later);
    assert_eq!(f[1][0], 0x4a, "same header length");
    assert_eq!(&f[1][2..4], &(40u16 + 52).to_be_bytes());
    assert_eq!(&f[1][6..8], &(48u16 / 8).to_be_bytes());
    for x in &f {
        let mut h = x[..40].to_vec();
        let c = [h[10], h[11]];
        ipv4_checksum(&mut h);
        assert_eq!([h[10], h[11]], c, "checksum of the header as sent");
    }
    assert_eq!(&f[1][40..], &d[40 + 48..]);
    // cut afresh at a smaller MTU: every fragment after the first is stripped the same way
    let f = fragment(&d, &[48, 52], 72, 0).unwrap();
    assert_eq!(f.len(), 4);
    assert_eq!(&f[0][20..40], &opts);
    for x in &f[1..] {
        assert_eq!(&x[20..40], &later);
    }
    // a malformed option stops the walk: what follows stays
    let mut bad = d.clone();
    bad[20..24].copy_from_slice(&[7, 30, 0, 0]);
    ipv4_checksum(&mut bad[..40]);
    let f = fragment(&bad, &[48, 52], 1500, 0).unwrap();
    assert_eq!(&f[1][20..40], &bad[20..40]);
}

proptest! {
    /// Any bytes: no panic, and nothing held past the limit.
    #[test]
    fn arbitrary_bytes_never_panic(frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..20)) {
        let mut df = Defrag::new(DefragConfig { mem_limit: 2000, ..DefragConfig::default() });
        for (i, f) in frames.iter().enumerate() {
            let _ = df.insert(f, s(i as u64));
            prop_assert!(df.mem() <= 2000);
        }
        df.expire(s(1000));
        prop_assert_eq!(df.mem(), 0);
    }

    /// A datagram cut anywhere (multiples of 8) and sent in any order comes back whole.
    #[test]
    fn any_cut_and_order_reassembles(len in 9usize..3000, cuts in proptest::collection::vec(1usize..200, 1..8), seed in any::<u64>(), v6 in any::<bool>()) {
        let d = if v6 { dgram6(17, &payload(len)) } else { dgram4(42, 17, &payload(len)) };
        let mut pieces = vec![];
        let mut left = len;
        for c in cuts {
            let c = c * 8;
            if c >= left { break; }
            pieces.push(c);
            left -= c;
        }
        pieces.push(left);
        let frags = fragment(&d, &pieces, 65535, 9).unwrap();
        let mut order: Vec<usize> = (0..frags.len()).collect();
        let mut x = seed | 1;
        for i in (1..order.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut df = Defrag::new(DefragConfig::default());
        let mut got = None;
        for (n, &i) in order.iter().enumerate() {
            let r = df.insert(&frags[i], s(1));
            if n + 1 < order.len() {
                prop_assert_eq!(r, Defragged::Held);
            } else {
                got = Some(r);
            }
        }
        let (l3, back) = whole(got.unwrap());
        prop_assert_eq!(&l3, &d);
        prop_assert_eq!(&back, &pieces);
    }
}

/// Datagrams that complete leave their expiry entries behind: those stay bounded, and an old
/// entry does not expire a later datagram with the same key.
#[test]
fn completed_datagrams_leave_nothing_growing() {
    let mut df = Defrag::new(DefragConfig::default());
    let d = dgram4(5, 17, &payload(1000));
    let f = fragment(&d, &[504, 496], 1500, 0).unwrap();
    for i in 0..10_000 {
        assert_eq!(df.insert(&f[0], s(1)), Defragged::Held);
        assert!(
            matches!(df.insert(&f[1], s(1)), Defragged::Whole { .. }),
            "{i}"
        );
    }
    assert!(df.expiry[0].len() <= 64 + 2, "{}", df.expiry[0].len());
    // the same key again at 20 s: the entries of 1 s (due at 31 s) leave it alone
    assert_eq!(df.insert(&f[0], s(20)), Defragged::Held);
    assert_eq!(df.expire(s(31)), 0);
    assert_eq!(df.queues(), 1);
    assert_eq!(df.expire(s(50)), 1);
}
