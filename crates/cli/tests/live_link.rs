//! `nft-offload run` follows its interfaces' MAC address and MTU (issue 6): the kernel's
//! `RTM_NEWLINK` reaches the engine, offloaded flows leave with the new MAC, the slow path
//! uses the new MTU. And `run` turns GRO off on its interfaces while it runs, then puts it
//! back (`--io af_packet` leaves it on). Both I/O backends. Network namespaces made by the
//! test (client - router - server), root; skipped otherwise.

use std::io::{BufRead, BufReader, Read};
use std::process::Command;
use std::time::Duration;

mod lab;
use lab::*;

const RULES: &str = "table inet filter {
  flowtable ft { hook ingress priority 0; devices = { lan0, wan0 }; }
  chain forward {
    type filter hook forward priority 0; policy accept;
    meta l4proto { tcp, udp } flow add @ft
  }
}
table ip nat {
  chain postrouting { type nat hook postrouting priority 100; oifname \"wan0\" masquerade }
}
";

fn sh(ns: &str, cmd: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", cmd])
        .output()
        .unwrap();
    assert!(out.status.success(), "{cmd}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fast(sock: &str) -> u64 {
    stats(sock)["paths"]["fast"].as_u64().unwrap()
}

/// What `stats` says the router uses for interface `dev` (`key`: its `mac` or `mtu`).
fn link(sock: &str, dev: &str, key: &str) -> Option<serde_json::Value> {
    stats(sock)["interfaces"]
        .as_array()
        .and_then(|v| v.iter().find(|i| i["name"] == dev))
        .map(|i| i[key].clone())
}

/// Waits (up to 5 s) until the router uses `want` for `dev`'s `key`: the kernel's
/// `RTM_NEWLINK` has reached the engine.
fn wait_link(sock: &str, dev: &str, key: &str, want: serde_json::Value) {
    let t = std::time::Instant::now();
    loop {
        let now = link(sock, dev, key);
        if now.as_ref() == Some(&want) {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{dev} {key} {now:?}, want {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn run_follows_mac_and_mtu_changes() {
    follows("run_follows_mac_and_mtu_changes", "af_packet");
}

/// The same with `--io af_xdp`, which turns GRO off while it runs (AF_XDP takes no
/// aggregates) and puts it back at exit.
#[test]
fn run_af_xdp_follows_mac_and_mtu_changes() {
    follows("run_af_xdp_follows_mac_and_mtu_changes", "af_xdp");
}

fn follows(test: &str, io: &str) {
    if Command::new("ethtool").arg("--version").output().is_err() {
        skip(test, "needs ethtool");
        return;
    }
    let xdp = io == "af_xdp";
    // GRO on at start: `run --io af_packet` leaves it on (it forwards GRO aggregates whole)
    let gro_on = |r: &str| {
        sh(r, "ethtool -K wan0 gro on");
        assert_eq!(gro(r, "wan0"), "on");
    };
    let tag = if xdp { "llx" } else { "llk" };
    let Some(mut lab) = lab_with(test, tag, io, RULES, xdp, xdp, gro_on, &[]) else {
        return;
    };
    let (c, r, s) = (lab.c.clone(), lab.r.clone(), lab.s.clone());
    let (c, r, s) = (c.as_str(), r.as_str(), s.as_str());
    let sock = lab.sock.clone();
    assert_eq!(gro(r, "wan0"), if xdp { "off" } else { "on" });

    assert_eq!(udp_exchange(c, s, 150), 150);
    let ct = list(&sock, "conntrack");
    assert!(ct.contains("[OFFLOAD]"), "{ct}");

    // a new MAC on the WAN side; the server learns it afresh
    let new_mac = "02:00:00:00:99:01";
    assert_ne!(link(&sock, "wan0", "mac").unwrap(), new_mac);
    sh(r, &format!("ip link set wan0 address {new_mac}"));
    sh(s, "ip neigh flush dev eth0");
    wait_link(&sock, "wan0", "mac", new_mac.into());
    // the server records the source MAC of every datagram to its port 9, from when it says
    // it is ready until its stdin closes (then what is still queued)
    let mut capture = Command::new("ip")
        .args([
            "netns", "exec", s, "python3", "-c",
            "import socket,select,sys\nr=socket.socket(socket.AF_PACKET,socket.SOCK_RAW,socket.htons(0x0800))\nr.bind(('eth0',0))\nprint('ready',flush=True)\nmacs={}\ndef take(f,a):\n  if a[2]==4: return\n  if f[23]==17 and f[36:38]==b'\\x00\\x09':\n    m=f[6:12].hex(':')\n    macs[m]=macs.get(m,0)+1\nwhile True:\n  rd,_,_=select.select([r,sys.stdin],[],[])\n  if r in rd: take(*r.recvfrom(2048))\n  elif sys.stdin in rd: break\nr.setblocking(False)\ntry:\n  while True: take(*r.recvfrom(2048))\nexcept BlockingIOError: pass\nprint(macs)\n",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = BufReader::new(capture.stdout.take().unwrap());
    let mut line = String::new();
    said.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let fast0 = fast(&sock);
    assert_eq!(udp_exchange(c, s, 50), 50);
    drop(capture.stdin.take());
    let mut seen = String::new();
    said.read_to_string(&mut seen).unwrap();
    let _ = capture.wait();
    let seen = seen.trim().to_string();
    // every one of them left with the new MAC, by the fast path
    assert!(seen.starts_with(&format!("{{'{new_mac}': ")), "{seen}");
    assert!(!seen.contains(", "), "{seen}");
    let n: u64 = seen
        .trim_matches(|c| c == '{' || c == '}')
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(n >= 50, "{seen}");
    assert!(fast(&sock) >= fast0 + 90, "{:#}", stats(&sock));
    assert!(list(&sock, "conntrack").contains("[OFFLOAD]"));

    // a smaller MTU on the WAN: a 1400-byte datagram with DF no longer fits
    let before = stats(&sock)["drops"]["mtu_exceeded"].as_u64().unwrap_or(0);
    sh(r, "ip link set wan0 mtu 1280");
    wait_link(&sock, "wan0", "mtu", 1280.into());
    sh(
        c,
        "python3 -c \"
import socket,time
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP,10,2)
for i in range(3):
  try: s.sendto(b'z'*1400,('198.19.0.2',9))
  except OSError: pass
  time.sleep(0.1)
\"",
    );
    // counted when the router gets to them (on a loaded machine, maybe after a while)
    let t = std::time::Instant::now();
    loop {
        let st = stats(&sock);
        let after = st["drops"]["mtu_exceeded"].as_u64().unwrap_or(0);
        if after > before {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{st:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // and what fits still flows
    assert_eq!(udp_exchange(c, s, 20), 20);

    assert!(lab.router.stop().is_some(), "run did not stop on SIGTERM");
    // GRO is back as it was
    assert_eq!(gro(r, "wan0"), "on");
}
