//! `nft-offload run` with a flowtable that has `flags offload` (issue 7), in network namespaces
//! this test makes (client - router - server): the XDP offload goes on both interfaces; UDP
//! through masquerade, answered by the server, ends up `[HW_OFFLOAD]`; after the handover the
//! dataplane sees none of the flow's packets while the server still gets them all; a clean stop
//! takes the program off. Root and the built XDP program; skipped otherwise.
//!
//! The same with `--io af_xdp`: the interfaces keep the one XDP program, the offload, and the
//! AF_XDP steering program runs after it (tail call) on what it does not forward. The router's
//! kernel still answers its pings; after the handover the AF_XDP sockets and the steering
//! program see none of the flow's packets.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nft_io::netns::{ip, skip_reason, Netns};

const RULES: &str = "table inet filter {
  flowtable ft { hook ingress priority 0; devices = { lan0, wan0 }; flags offload; }
  chain forward {
    type filter hook forward priority 0; policy accept;
    meta l4proto { tcp, udp } flow add @ft
  }
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

fn list(sock: &str, what: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nft-offload"))
        .args(["list", what, "--control", sock])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sends `n` UDP datagrams from the client (port 10000) to the server's port 9, one every
/// 20 ms, each answered by the server: how many answers came back.
fn udp_exchange(c: &str, s: &str, n: u32) -> u32 {
    let server = Command::new("ip")
        .args([
            "netns", "exec", s, "python3", "-c",
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',9))\ns.settimeout(3)\ntry:\n  while True:\n    d,a=s.recvfrom(2048); s.sendto(d,a)\nexcept socket.timeout: pass\n",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let script = format!(
        "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',10000))\ns.settimeout(0.3)\ng=0\nfor i in range({n}):\n  s.sendto(b'x'*32,('198.19.0.2',9))\n  try:\n    s.recvfrom(2048); g+=1\n  except socket.timeout: pass\n  time.sleep(0.02)\nprint(g)\n"
    );
    let out = Command::new("ip")
        .args(["netns", "exec", c, "python3", "-c", &script])
        .output()
        .unwrap();
    let mut server = server;
    let _ = server.wait();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn run_flags_offload_forwards_in_xdp() {
    flags_offload("run_flags_offload_forwards_in_xdp", "af_packet");
}

#[test]
fn run_af_xdp_flags_offload_chains_steering() {
    flags_offload("run_af_xdp_flags_offload_chains_steering", "af_xdp");
}

/// The flowtable of [`RULES`] without `flags offload`.
fn rules_software() -> String {
    RULES.replace(" flags offload;", "")
}

fn load(sock: &str, rules: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nft-offload"))
        .args(["load", "-f"])
        .arg(rules)
        .args(["--control", sock])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A reload that gives a flowtable `flags offload` puts the XDP offload on its devices (its
/// new flows end up in the program), one that takes the flag away takes the program off, and
/// traffic flows all along (AF_PACKET).
#[test]
fn run_reload_attaches_and_detaches_xdp_offload() {
    let test = "run_reload_attaches_and_detaches_xdp_offload";
    let Some(mut lab) = lab(test, "lxr", "af_packet", &rules_software(), false) else {
        return;
    };
    let (c, r, s) = (lab.c.clone(), lab.r.clone(), lab.s.clone());
    let (c, r, s) = (c.as_str(), r.as_str(), s.as_str());
    let sock = lab.sock.clone();
    assert!(!xdp_on(r, "lan0") && !xdp_on(r, "wan0"));
    assert_eq!(udp_exchange(c, s, 150), 150);
    let ct = list(&sock, "conntrack");
    assert!(
        ct.contains("[OFFLOAD]") && !ct.contains("[HW_OFFLOAD]"),
        "{ct}"
    );
    assert_eq!(stats(&sock)["xdp_offload"], serde_json::json!([]));

    // gains `flags offload`: the software flows go back to the slow path, are admitted
    // again and pushed to the program
    let hw = lab.dir.join("hw.nft");
    std::fs::write(&hw, RULES).unwrap();
    let said = load(&sock, &hw);
    assert!(
        said.contains("flowtable ft: lan0 XDP offload (generic)"),
        "{said}"
    );
    assert!(xdp_on(r, "lan0") && xdp_on(r, "wan0"));
    assert_eq!(udp_exchange(c, s, 150), 150);
    std::thread::sleep(Duration::from_millis(1500));
    let ct = list(&sock, "conntrack");
    assert!(
        ct.contains("[HW_OFFLOAD]"),
        "{ct}\n{:#}\n{}",
        stats(&sock),
        list(&sock, "flowtables")
    );
    let st = stats(&sock);
    let fwd = xdp_frames(&st, "forwarded");
    assert!(fwd > 0, "{st:#}");

    // the same again: nothing changes, the flow stays in the program
    let said = load(&sock, &hw);
    assert_eq!(said, "");
    assert_eq!(udp_exchange(c, s, 50), 50);
    let st = stats(&sock);
    assert!(xdp_frames(&st, "forwarded") >= fwd + 90, "{st:#}");
    assert!(list(&sock, "conntrack").contains("[HW_OFFLOAD]"));

    // loses it: the program leaves the devices, the flows are the software's again
    let sw = lab.dir.join("sw.nft");
    std::fs::write(&sw, rules_software()).unwrap();
    let said = load(&sock, &sw);
    assert!(said.contains("flowtable ft: XDP offload removed"), "{said}");
    assert!(
        !xdp_on(r, "lan0") && !xdp_on(r, "wan0"),
        "XDP left attached"
    );
    assert_eq!(udp_exchange(c, s, 150), 150);
    let ct = list(&sock, "conntrack");
    assert!(
        ct.contains("[OFFLOAD]") && !ct.contains("[HW_OFFLOAD]"),
        "{ct}"
    );
    assert_eq!(stats(&sock)["xdp_offload"], serde_json::json!([]));
    assert!(lab.router.stop().is_some(), "run did not stop on SIGTERM");
}

/// One steering counter of the stats, summed over the interfaces.
fn steered(st: &serde_json::Value, reason: &str) -> u64 {
    st["steering"]
        .as_object()
        .map(|m| m.values().filter_map(|v| v[reason].as_u64()).sum())
        .unwrap_or(0)
}

/// client ns - router ns - server ns, the router's interfaces lan0 and wan0, and `run` on
/// them with `rules` (removed with the namespaces when dropped).
struct Lab {
    _ns: Netns,
    c: String,
    r: String,
    s: String,
    dir: std::path::PathBuf,
    sock: String,
    router: Router,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.router.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `None`: skipped (the reason is printed).
fn lab(test: &str, tag: &str, io: &str, rules: &str, wait_xdp: bool) -> Option<Lab> {
    if let Some(why) = skip_reason() {
        eprintln!("{test}: SKIPPED ({why})");
        return None;
    }
    if !nft_xdp::built() {
        eprintln!("{test}: SKIPPED ({})", nft_xdp::NOT_BUILT);
        return None;
    }
    if Command::new("python3").arg("-V").output().is_err() {
        eprintln!("{test}: SKIPPED (needs python3)");
        return None;
    }
    let tag = format!("{tag}{}", std::process::id());
    let (c, r, s) = (format!("{tag}-c"), format!("{tag}-r"), format!("{tag}-s"));
    let ns = Netns::create(&[c.clone(), r.clone(), s.clone()]).unwrap();
    {
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
        ip(&[
            "-n",
            s,
            "route",
            "add",
            "198.18.0.0/16",
            "via",
            "198.19.0.1",
        ])
        .unwrap();
        // The end hosts send complete checksums: with veth's checksum offload their UDP leaves
        // with only the pseudo-header sum (CHECKSUM_PARTIAL), which the AF_PACKET dataplane
        // forwards as it is and the other end then drops (InCsumErrors).
        for n in [c, s] {
            let _ = Command::new("ip")
                .args(["netns", "exec", n, "ethtool", "-K", "eth0", "tx", "off"])
                .output();
        }
    }
    let dir = std::env::temp_dir().join(format!("nft-offload-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let rules_path = dir.join("rules.nft");
    std::fs::write(&rules_path, rules).unwrap();
    let sock = dir.join("control.sock");
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &r,
            env!("CARGO_BIN_EXE_nft-offload"),
            "run",
            "-f",
        ])
        .arg(&rules_path)
        .args(["--interfaces", "lan=lan0,wan=wan0", "--io", io, "--control"])
        .arg(&sock)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let router = Router(Some(child));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(sock.exists() && (!wait_xdp || (xdp_on(&r, "lan0") && xdp_on(&r, "wan0")))) {
        assert!(Instant::now() < deadline, "run did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Lab {
        _ns: ns,
        c,
        r,
        s,
        sock: sock.to_str().unwrap().to_string(),
        dir,
        router,
    })
}

/// One of the XDP offload's frame counters (`stats --json`), of its first flowtable.
fn xdp_frames(st: &serde_json::Value, reason: &str) -> u64 {
    st["xdp_offload"][0]["frames"][reason].as_u64().unwrap_or(0)
}

/// Sends `n` UDP datagrams with TTL 1 from the client's port 10000 to the server's port 9.
fn udp_ttl1(c: &str, n: u32) {
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.setsockopt(socket.IPPROTO_IP,socket.IP_TTL,1)\ns.bind(('0.0.0.0',10000))\nfor i in range({n}):\n  s.sendto(b'x'*32,('198.19.0.2',9))\n"
    );
    let out = Command::new("ip")
        .args(["netns", "exec", c, "python3", "-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// A TCP connection from the client to the server's port 8080 that sends a little every
/// 50 ms for 3 s (long enough to be assured, admitted and pushed), then closes. Returns the
/// conntrack listing taken before the close and how many more segments the offload passed up
/// as TCP control segments (`tcp_control`) across the close.
fn tcp_offloaded_then_closed(c: &str, s: &str, sock: &str) -> (String, u64) {
    use std::io::{BufRead, BufReader, Write};
    let server = Command::new("ip")
        .args([
            "netns", "exec", s, "python3", "-c",
            "import socket\nl=socket.socket()\nl.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\nl.bind(('0.0.0.0',8080))\nl.listen(1)\nl.settimeout(10)\nc,_=l.accept()\nc.settimeout(15)\nn=0\nwhile True:\n  d=c.recv(65536)\n  if not d: break\n  n+=len(d)\nc.close()\nprint(n)\n",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut client = Command::new("ip")
        .args([
            "netns", "exec", c, "python3", "-c",
            "import socket,sys,time\ns=socket.create_connection(('198.19.0.2',8080),timeout=5)\nfor i in range(60):\n  s.sendall(b'y'*100)\n  time.sleep(0.05)\nprint('ready',flush=True)\nsys.stdin.readline()\ns.close()\ntime.sleep(0.5)\n",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(client.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    // the push comes with the GC after admission: give it a second
    std::thread::sleep(Duration::from_millis(1200));
    let ct = list(sock, "conntrack");
    let before = xdp_frames(&stats(sock), "tcp_control");
    client.stdin.take().unwrap().write_all(b"close\n").unwrap();
    let _ = client.wait();
    let out = server.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "6000");
    std::thread::sleep(Duration::from_millis(300));
    let after = xdp_frames(&stats(sock), "tcp_control");
    (ct, after - before)
}

fn flags_offload(test: &str, io: &str) {
    let xdp = io == "af_xdp";
    let tag = if xdp { "lxox" } else { "lxo" };
    let Some(mut lab) = lab(test, tag, io, RULES, true) else {
        return;
    };
    let (c, r, s) = (lab.c.clone(), lab.r.clone(), lab.s.clone());
    let (c, r, s) = (c.as_str(), r.as_str(), s.as_str());
    let sock_s = lab.sock.clone();
    let _ = ping(c, "198.19.0.2");
    if xdp {
        // The router's own address: the offload program passes the echo requests (misses),
        // the steering program after it gives them to the kernel, which answers.
        let before = steered(&stats(&sock_s), "local");
        assert!(ping(c, "198.18.1.1"), "the router's kernel did not answer");
        let st = stats(&sock_s);
        assert!(steered(&st, "local") >= before + 3, "{st:#}");
    }

    // Through the slow path first, then the flowtable; the push comes with the next GC.
    // Conntrack assures a UDP connection once it is still answered two seconds on (as
    // Linux does): three seconds of traffic.
    let got = udp_exchange(c, s, 150);
    if got != 150 {
        let st = stats(&sock_s);
        let ct = list(&sock_s, "conntrack");
        let snmp = Command::new("ip")
            .args([
                "netns",
                "exec",
                s,
                "sh",
                "-c",
                "grep Udp: /proc/net/snmp; ip -s link show eth0",
            ])
            .output()
            .unwrap();
        panic!(
            "{got} of 150 answered\n{ct}\n{st}\n{}\n{:?}",
            String::from_utf8_lossy(&snmp.stdout),
            lab.router.stop()
        );
    }
    std::thread::sleep(Duration::from_millis(1500));
    let ct = list(&sock_s, "conntrack");
    assert!(ct.contains("[HW_OFFLOAD]"), "{ct}");
    let flows = list(&sock_s, "flowtables");
    assert!(flows.contains("[hw]"), "{flows}");
    let before = stats(&sock_s);
    let rx0 = before["interfaces"][0]["rx_packets"].as_u64().unwrap();
    let rx1 = before["interfaces"][1]["rx_packets"].as_u64().unwrap();
    let to_socket = |st: &serde_json::Value| {
        steered(st, "forward") + steered(st, "owned") + steered(st, "local_no_socket")
    };
    if xdp {
        // before the handover the flow went through the steering to the sockets
        assert!(to_socket(&before) >= 100, "{before:#}");
    }
    // Now the XDP program forwards both ways: every datagram is answered, and the dataplane
    // receives none of them.
    let second = Instant::now();
    assert_eq!(udp_exchange(c, s, 50), 50);
    let after = stats(&sock_s);
    let d0 = after["interfaces"][0]["rx_packets"].as_u64().unwrap() - rx0;
    let d1 = after["interfaces"][1]["rx_packets"].as_u64().unwrap() - rx1;
    assert!(
        d0 + d1 < 10,
        "the dataplane saw {d0} + {d1} of 100: {after}"
    );
    if xdp {
        // the steering program ran on none of them: the offload forwarded them before it
        let n = to_socket(&after) - to_socket(&before);
        eprintln!(
            "{test}: after the handover: {d0} + {d1} frames at the sockets, {n} steered to them"
        );
        // none at all: ARP, ND and the like go to the kernel, not to the sockets
        assert_eq!((d0, d1, n), (0, 0, 0), "steered to the sockets: {after:#}");
        // and the router's kernel still answers its pings, the flow in the offload
        let local = steered(&after, "local");
        assert!(ping(c, "198.18.1.1"), "the router's kernel did not answer");
        let st = stats(&sock_s);
        assert!(steered(&st, "local") >= local + 3, "{st:#}");
    }
    std::thread::sleep(Duration::from_millis(1500));
    // The program's counters came back into the flow (original direction: the fast path's
    // and the program's packets since admission, at least the second exchange's 50 and the
    // first's after its two seconds), and its last-used time keeps the flow fresh.
    let flows = list(&sock_s, "flowtables");
    let packets: u64 = flows
        .lines()
        .find(|l| l.contains("[hw]"))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("packets="))
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(packets >= 100, "{flows}");
    // Last used during the second exchange, which only the program saw (whole seconds).
    let idle: u64 = flows
        .split_whitespace()
        .find_map(|w| w.strip_prefix("idle="))
        .and_then(|n| n.trim_end_matches('s').parse().ok())
        .unwrap_or(u64::MAX);
    assert!(idle <= second.elapsed().as_secs(), "{flows}");

    // The offload's own counters in `stats`: what it forwarded, what it passed and why, and
    // what became of the pushes.
    let st = stats(&sock_s);
    let x = &st["xdp_offload"][0];
    assert_eq!(x["flowtable"], "ft", "{st:#}");
    assert_eq!(x["devices"]["lan0"], "generic", "{st:#}");
    assert!(xdp_frames(&st, "forwarded") >= 100, "{st:#}");
    assert!(xdp_frames(&st, "miss") > 0, "{st:#}");
    assert!(x["flows"]["pushed"].as_u64() >= Some(1), "{st:#}");
    assert_eq!(x["flows"]["map_full"], 0, "{st:#}");
    assert_eq!(x["flows"]["push_failed"], 0, "{st:#}");
    // TTL 1 on the offloaded flow: in the map, but the program passes them up
    let ttl0 = xdp_frames(&st, "ttl_expired");
    udp_ttl1(c, 5);
    std::thread::sleep(Duration::from_millis(300));
    let st = stats(&sock_s);
    let ttl = xdp_frames(&st, "ttl_expired");
    assert_eq!(ttl - ttl0, 5, "{st:#}");
    let prom = Command::new(env!("CARGO_BIN_EXE_nft-offload"))
        .args(["stats", "--prometheus", "--control", &sock_s])
        .output()
        .unwrap();
    let prom = String::from_utf8_lossy(&prom.stdout);
    assert!(
        prom.contains(&format!(
            "nft_offload_xdp_frames_total{{flowtable=\"ft\",reason=\"ttl_expired\"}} {ttl}\n"
        )),
        "{prom}"
    );
    assert!(
        prom.contains("nft_offload_xdp_flows_total{flowtable=\"ft\",result=\"map_full\"} 0\n"),
        "{prom}"
    );
    // A TCP connection in the offload, then its FIN: passed up as a control segment.
    let (ct, fin) = tcp_offloaded_then_closed(c, s, &sock_s);
    assert!(
        ct.lines()
            .any(|l| l.starts_with("tcp") && l.contains("[HW_OFFLOAD]")),
        "{ct}"
    );
    assert!(fin >= 1, "no FIN passed up by the offload");

    let log = lab.router.stop().expect("run did not stop on SIGTERM");
    assert!(log.contains("XDP offload (generic)"), "{log}");
    if xdp {
        assert!(
            log.contains("lan0: AF_XDP steering after the XDP offload (generic mode)")
                && log.contains("wan0: AF_XDP steering after the XDP offload (generic mode)"),
            "{log}"
        );
    }
    assert!(
        !xdp_on(r, "lan0") && !xdp_on(r, "wan0"),
        "XDP left attached"
    );
}
