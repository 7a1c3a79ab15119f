//! The live tests' UDP exchange (`lab::udp_exchange`) counts what the network between client
//! and server loses, and nothing else: a server that binds late or answers late costs no
//! answer, a request dropped on the way is one answer short. Client and server namespaces on
//! one veth pair (no router), root; skipped otherwise.

use std::process::Command;

use nft_io::netns::{ip, skip_reason, Netns};

mod lab;
use lab::*;

/// A client (198.19.0.3) and a server (198.19.0.2, the address the exchange sends to) on
/// one veth pair.
fn pair(test: &str, tag: &str) -> Option<(Netns, String, String)> {
    if let Some(why) = skip_reason() {
        skip(test, &why);
        return None;
    }
    if Command::new("python3").arg("-V").output().is_err() {
        skip(test, "needs python3");
        return None;
    }
    let tag = format!("{tag}{}", std::process::id());
    let (c, s) = (format!("{tag}-c"), format!("{tag}-s"));
    let ns = Netns::create(&[c.clone(), s.clone()]).unwrap();
    ip(&[
        "-n", &c, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &s,
    ])
    .unwrap();
    for (n, a) in [(&c, "198.19.0.3/24"), (&s, "198.19.0.2/24")] {
        ip(&["-n", n, "link", "set", "lo", "up"]).unwrap();
        ip(&["-n", n, "addr", "add", a, "dev", "eth0"]).unwrap();
        ip(&["-n", n, "link", "set", "eth0", "up"]).unwrap();
    }
    Some((ns, c, s))
}

fn counter(ns: &str, name: &str) -> u64 {
    udp_counters(ns)
        .into_iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, v)| v)
}

/// A server that binds a second after it was started: the client waits for it, no request
/// reaches the server's kernel before its socket (no `NoPorts`), every one is answered. (With
/// a fixed 300 ms before the client, the first requests got a port unreachable.)
#[test]
fn a_slow_server_start_costs_no_answer() {
    let Some((_ns, c, s)) = pair("a_slow_server_start_costs_no_answer", "lxs") else {
        return;
    };
    let echo = Echo {
        start_delay: 1.0,
        late: None,
    };
    let got = udp_exchange_with(&c, &s, 10, echo);
    assert_eq!((got.answered, got.twice, got.foreign), (10, 0, 0));
    assert_eq!(counter(&s, "NoPorts"), 0);
    assert_eq!(counter(&s, "InDatagrams"), 10);
}

/// An answer half a second late still counts, and is not taken for the next one's.
#[test]
fn a_late_answer_counts() {
    let Some((_ns, c, s)) = pair("a_late_answer_counts", "lxl") else {
        return;
    };
    let echo = Echo {
        start_delay: 0.0,
        late: Some(3),
    };
    let got = udp_exchange_with(&c, &s, 10, echo);
    assert_eq!((got.answered, got.twice, got.foreign), (10, 0, 0));
}

/// A request dropped on the way (a rule in the server's kernel, before the socket): one answer
/// short, so a router that loses a frame still fails the tests.
#[test]
fn a_lost_request_is_one_answer_short() {
    let Some((_ns, c, s)) = pair("a_lost_request_is_one_answer_short", "lxd") else {
        return;
    };
    if Command::new("nft").arg("-v").output().is_err() {
        skip("a_lost_request_is_one_answer_short", "needs nft");
        return;
    }
    // datagram 5 ("000005" after the UDP header)
    let out = Command::new("ip")
        .args([
            "netns", "exec", &s, "nft",
            "add table ip t; add chain ip t in { type filter hook input priority 0; }; add rule ip t in udp dport 9 @th,64,48 0x303030303035 counter drop",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let got = udp_exchange_counted(&c, &s, 10);
    assert_eq!((got.answered, got.twice, got.foreign), (9, 0, 0));
    assert_eq!(udp_exchange(&c, &s, 4), 4, "datagrams 0-3 pass");
    let out = Command::new("ip")
        .args(["netns", "exec", &s, "nft", "list", "chain", "ip", "t", "in"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("counter packets 1 "), "{listing}");
}
