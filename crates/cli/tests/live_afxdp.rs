//! `nft-offload run --io af_xdp` in network namespaces this test makes (client - router -
//! server): the steering programs go on both interfaces while it runs and come off when it
//! stops; the router's own traffic stays the kernel's; forwarded traffic reaches the dataplane
//! through the AF_XDP sockets. Root; skipped otherwise.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nft_io::netns::{ip, skip_reason, Netns};

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

#[test]
fn run_af_xdp_steers_and_detaches() {
    let test = "run_af_xdp_steers_and_detaches";
    if let Some(why) = skip_reason() {
        eprintln!("{test}: SKIPPED ({why})");
        return;
    }
    let tag = format!("lax-{}", std::process::id());
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
        .args([
            "--interfaces",
            "lan=lan0,wan=wan0",
            "--io",
            "af_xdp",
            "--control",
        ])
        .arg(&sock)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut router = Router(Some(child));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(sock.exists() && xdp_on(r, "lan0") && xdp_on(r, "wan0")) {
        assert!(Instant::now() < deadline, "run did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The router's own address: the kernel answers (ARP and ICMP pass the steering).
    assert!(ping(c, "198.18.1.1"), "the router's kernel does not answer");
    let before = stats(&sock_s);
    let fwd0 = before["steering"]["lan0"]["forward"].as_u64().unwrap();
    assert!(
        before["steering"]["lan0"]["arp"].as_u64().unwrap() >= 1,
        "{before}"
    );
    assert!(
        before["steering"]["lan0"]["local"].as_u64().unwrap() >= 3,
        "{before}"
    );
    // Forwarded traffic goes to the dataplane through the socket.
    let _ = ping(c, "198.19.0.2");
    let after = stats(&sock_s);
    let fwd = after["steering"]["lan0"]["forward"].as_u64().unwrap() - fwd0;
    assert!(fwd >= 3, "{after}");
    let lan_rx = after["interfaces"][0]["rx_packets"].as_u64().unwrap();
    assert!(lan_rx >= 3, "{after}");
    assert_eq!(
        after["steering"]["lan0"]["no_socket"].as_u64(),
        Some(0),
        "{after}"
    );

    // A clean stop takes the programs off.
    let log = router.stop().expect("run did not stop on SIGTERM");
    assert!(log.contains("AF_XDP steering in native mode"), "{log}");
    assert!(
        !xdp_on(r, "lan0") && !xdp_on(r, "wan0"),
        "XDP left attached"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
