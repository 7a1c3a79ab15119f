//! `nft-offload run` in network namespaces this test makes (client - router - server), with
//! each I/O backend: pings through the router and a masqueraded TCP transfer checked byte for
//! byte at the receiver; the router's own address answered by its kernel. With `--io af_xdp`
//! the steering programs go on both interfaces while it runs and come off when it stops, and
//! their counters show where the frames went. Root; skipped otherwise.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::io::{Read, Write};

use nft_io::netns::{in_netns, ip, skip_reason, Netns};

const RULES: &str = "table inet filter {
  chain forward { type filter hook forward priority 0; policy accept; }
}
table ip nat {
  chain postrouting { type nat hook postrouting priority 100; oifname \"wan0\" masquerade }
}
";

/// The router process, stopped (SIGTERM, then SIGKILL) when dropped.
struct Router(Option<Child>);

impl Router {
    fn stop(&mut self) -> Option<String> {
        let mut c = self.0.take()?;
        // SIGTERM to the child we started, by its pid: a clean shutdown.
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                let out = c.wait_with_output().ok()?;
                return Some(String::from_utf8_lossy(&out.stderr).into_owned());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.stop();
    }
}

fn xdp_on(ns: &str, dev: &str) -> bool {
    let out = Command::new("ip")
        .args(["-n", ns, "link", "show", dev])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(" xdp")
}

fn ping(ns: &str, dst: &str) -> bool {
    Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-c", "3", "-i", "0.2", "-W", "2", dst,
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn stats(sock: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_nft-offload"))
        .args(["stats", "--json", "--control", sock])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn link_up(ns: &str, dev: &str) -> bool {
    let out = Command::new("ip")
        .args(["-n", ns, "link", "show", dev])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("state UP")
}

/// A TCP transfer of `len` bytes from the server to the client through the router; the
/// client's FNV-1a hash of what it read, and the server's of what it sent.
fn transfer(client: &str, server: &str, len: usize) -> (u64, u64) {
    fn fnv(h: &mut u64, data: &[u8]) {
        for &b in data {
            *h = (*h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    let listener = in_netns(server, || {
        std::net::TcpListener::bind("0.0.0.0:5001").unwrap()
    });
    let sender = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        let mut x = 0x1234_5678u32;
        let mut buf = vec![0u8; 65536];
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len());
            for b in &mut buf[..n] {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            c.write_all(&buf[..n]).unwrap();
            fnv(&mut h, &buf[..n]);
            left -= n;
        }
        h
    });
    let got = in_netns(client, || {
        let mut s = std::net::TcpStream::connect("198.19.0.2:5001").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        let mut buf = vec![0u8; 65536];
        let mut total = 0;
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            fnv(&mut h, &buf[..n]);
            total += n;
        }
        (h, total)
    });
    let sent = sender.join().unwrap();
    assert_eq!(got.1, len, "received {} of {len} bytes", got.1);
    (got.0, sent)
}

fn live(io: &str) {
    let test = format!("run_{io}");
    if let Some(why) = skip_reason() {
        eprintln!("{test}: SKIPPED ({why})");
        return;
    }
    let tag = format!("l{}-{}", &io[3..5], std::process::id());
    let (c, r, s) = (format!("{tag}-c"), format!("{tag}-r"), format!("{tag}-s"));
    let _ns = Netns::create(&[c.clone(), r.clone(), s.clone()]).unwrap();
    let (c, r, s) = (c.as_str(), r.as_str(), s.as_str());
    for n in [c, r, s] {
        ip(&["-n", n, "link", "set", "lo", "up"]).unwrap();
    }
    ip(&[
        "-n", r, "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", c,
    ])
    .unwrap();
    ip(&[
        "-n", r, "link", "add", "wan0", "type", "veth", "peer", "name", "eth0", "netns", s,
    ])
    .unwrap();
    for (n, dev, a) in [
        (r, "lan0", "198.18.1.1/24"),
        (r, "wan0", "198.19.0.1/24"),
        (c, "eth0", "198.18.1.2/24"),
        (s, "eth0", "198.19.0.2/24"),
    ] {
        ip(&["-n", n, "addr", "add", a, "dev", dev]).unwrap();
        ip(&["-n", n, "link", "set", dev, "up"]).unwrap();
    }
    ip(&["-n", c, "route", "add", "default", "via", "198.18.1.1"]).unwrap();
    // veth leaves TCP checksums to the receiver (CHECKSUM_PARTIAL); a raw socket gets them
    // unfinished. A real NIC's driver would have filled them in: do it in the senders.
    for n in [c, s] {
        let st = Command::new("ip")
            .args(["netns", "exec", n, "ethtool", "-K", "eth0", "tx", "off"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "ethtool -K eth0 tx off in {n}");
    }
    // Carrier comes up asynchronously; start on links that are up.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(link_up(r, "lan0") && link_up(r, "wan0")) {
        assert!(Instant::now() < deadline, "links did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }

    let dir = std::env::temp_dir().join(format!("nft-offload-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("rules.nft");
    std::fs::write(&rules, RULES).unwrap();
    let sock = dir.join("control.sock");
    let sock_s = sock.to_str().unwrap().to_string();
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            r,
            env!("CARGO_BIN_EXE_nft-offload"),
            "run",
            "-f",
        ])
        .arg(&rules)
        .args(["--interfaces", "lan=lan0,wan=wan0", "--io", io, "--control"])
        .arg(&sock)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut router = Router(Some(child));
    let xdp = io == "af_xdp";
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(sock.exists() && (!xdp || (xdp_on(r, "lan0") && xdp_on(r, "wan0")))) {
        assert!(Instant::now() < deadline, "run did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The router's own address: its kernel answers.
    assert!(ping(c, "198.18.1.1"), "the router's kernel does not answer");
    let before = stats(&sock_s);
    // Through the router (the first echo may wait for the server's MAC to be resolved).
    let _ = ping(c, "198.19.0.2");
    assert!(ping(c, "198.19.0.2"), "no ping through the router");
    let (got, sent) = transfer(c, s, 16 << 20);
    assert_eq!(got, sent, "the transfer arrived corrupted");
    let after = stats(&sock_s);
    let lan_rx = after["interfaces"][0]["rx_packets"].as_u64().unwrap();
    assert!(lan_rx >= 500, "{after}");
    if xdp {
        let n = |v: &serde_json::Value, dev: &str, k: &str| v["steering"][dev][k].as_u64().unwrap();
        assert!(n(&before, "lan0", "arp") >= 1, "{before}");
        assert!(n(&before, "lan0", "local") >= 3, "{before}");
        // The client's segments and echo requests are forwarded; the server's answers are
        // addressed to the router's WAN address, with no kernel socket for them.
        assert!(n(&after, "lan0", "forward") >= 500, "{after}");
        // 16 MiB in segments of at most 1448 bytes: at least 11586 of them.
        assert!(n(&after, "wan0", "local_no_socket") >= 11586, "{after}");
        assert_eq!(n(&after, "lan0", "no_socket"), 0, "{after}");
    }

    // A clean stop; AF_XDP takes the programs off.
    let log = router.stop().expect("run did not stop on SIGTERM");
    if xdp {
        assert!(log.contains("AF_XDP steering in native mode"), "{log}");
        // (the kernel may finish releasing the links a moment after the process ends)
        let deadline = Instant::now() + Duration::from_secs(3);
        while (xdp_on(r, "lan0") || xdp_on(r, "wan0")) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !xdp_on(r, "lan0") && !xdp_on(r, "wan0"),
            "XDP left attached"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_af_xdp_forwards_and_steers() {
    live("af_xdp");
}

#[test]
fn run_af_packet_forwards() {
    live("af_packet");
}
