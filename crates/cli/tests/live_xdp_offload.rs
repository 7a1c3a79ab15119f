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

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod lab;
use lab::*;

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
    udp_offloaded_in_software(c, s, &sock);

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
    let st = stats(&sock);
    check_reload_loaded_before_the_lock(&st, 1, 1);
    lock_held_for_the_swap_only(&st);
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
    // it keeps its program: none loaded
    check_reload_loaded_before_the_lock(&st, 2, 1);
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
    udp_offloaded_in_software(c, s, &sock);
    assert!(lab.router.stop().is_some(), "run did not stop on SIGTERM");
}

/// 150 UDP exchanges from `c` to `s`, all answered, their flows offloaded in software
/// (`[OFFLOAD]` in the conntrack listing, no `[HW_OFFLOAD]`), and no XDP offload in `stats`.
fn udp_offloaded_in_software(c: &str, s: &str, sock: &str) {
    assert_eq!(udp_exchange(c, s, 150), 150);
    let ct = list(sock, "conntrack");
    assert!(
        ct.contains("[OFFLOAD]") && !ct.contains("[HW_OFFLOAD]"),
        "{ct}"
    );
    assert_eq!(stats(sock)["xdp_offload"], serde_json::json!([]));
}

/// `stats --json`'s `reloads` after `n` reloads that loaded `loaded` XDP programs: all loaded
/// (verified) before the router's lock was taken, none with the lock held.
fn check_reload_loaded_before_the_lock(st: &serde_json::Value, n: u64, loaded: u64) {
    let rl = &st["reloads"];
    assert_eq!(rl["count"], n, "{rl:#}");
    assert_eq!(rl["xdp_loaded_before_lock"], loaded, "{rl:#}");
    assert_eq!(rl["xdp_loaded_under_lock"], 0, "{rl:#}");
    let held = rl["last_lock_held_ns"].as_u64().unwrap();
    let prepare = rl["last_prepare_ns"].as_u64().unwrap();
    eprintln!("reload {n}: prepared in {prepare} ns, router lock held {held} ns");
}

/// The last reload, which loaded an XDP program, held the router's lock for the swap only
/// (attaching the verified program): less time than the loading took.
fn lock_held_for_the_swap_only(st: &serde_json::Value) {
    let rl = &st["reloads"];
    assert!(
        rl["last_lock_held_ns"].as_u64() < rl["last_prepare_ns"].as_u64(),
        "{rl:#}"
    );
}

/// One steering counter of the stats, summed over the interfaces.
fn steered(st: &serde_json::Value, reason: &str) -> u64 {
    st["steering"]
        .as_object()
        .map(|m| m.values().filter_map(|v| v[reason].as_u64()).sum())
        .unwrap_or(0)
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
    // the client connects once the server listens (a fixed sleep was shorter than a loaded
    // machine takes to start python: the SYN got a RST)
    let mut server = Bg(Command::new("ip")
        .args([
            "netns", "exec", s, "python3", "-c",
            "import socket\nl=socket.socket()\nl.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\nl.bind(('0.0.0.0',8080))\nl.listen(1)\nprint('listening',flush=True)\nl.settimeout(10)\nc,_=l.accept()\nc.settimeout(15)\nn=0\nwhile True:\n  d=c.recv(65536)\n  if not d: break\n  n+=len(d)\nc.close()\nprint(n)\n",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap());
    let mut said = BufReader::new(server.0.stdout.take().unwrap());
    let mut line = String::new();
    said.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "listening");
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
    let mut line = String::new();
    said.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "6000");
    let _ = server.0.wait();
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
    let hw_packets_before = hw_packets(&flows);
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
    // and the program's packets since admission: what it had before the second exchange,
    // which only the program saw, and that exchange's 50), and its last-used time keeps the
    // flow fresh.
    let flows = list(&sock_s, "flowtables");
    let packets = hw_packets(&flows);
    assert!(
        hw_packets_before > 0 && packets >= hw_packets_before + 50,
        "{hw_packets_before} before: {flows}"
    );
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

/// `--io af_xdp`: a reload that gives a flowtable `flags offload` puts the XDP offload in front
/// of the steering programs while the sockets receive (the device's XDP link switched from
/// the steering program to the offload, which chains it): a UDP exchange running across the
/// reload loses nothing, the flow then ends up in the program and the sockets see none of its
/// packets; the router's kernel still answers pings. Native mode (the steering's mode on veth),
/// with GRO on at the far ends so that they take the offload's redirects.
#[test]
fn run_af_xdp_reload_puts_the_offload_in_front_of_the_steering() {
    let test = "run_af_xdp_reload_puts_the_offload_in_front_of_the_steering";
    let Some(mut lab) = lab_with(
        test,
        "lxrx",
        "af_xdp",
        &rules_software(),
        true,
        true,
        |_| {},
        &["--xdp-mode", "native"],
    ) else {
        return;
    };
    let (c, r, s) = (lab.c.clone(), lab.r.clone(), lab.s.clone());
    let (c, r, s) = (c.as_str(), r.as_str(), s.as_str());
    let sock = lab.sock.clone();
    for n in [c, s] {
        let ok = Command::new("ip")
            .args(["netns", "exec", n, "ethtool", "-K", "eth0", "gro", "on"])
            .status()
            .unwrap();
        assert!(ok.success());
    }
    assert_eq!(stats(&sock)["xdp_offload"], serde_json::json!([]));
    assert_eq!(udp_exchange(c, s, 100), 100);
    let to_socket = |st: &serde_json::Value| {
        steered(st, "forward") + steered(st, "owned") + steered(st, "local_no_socket")
    };
    assert!(to_socket(&stats(&sock)) >= 200);

    // the reload, in the middle of a running exchange
    let (c2, s2) = (c.to_string(), s.to_string());
    let exchange = std::thread::spawn(move || udp_exchange_counted(&c2, &s2, 150));
    std::thread::sleep(Duration::from_millis(1300));
    let hw = lab.dir.join("hw.nft");
    std::fs::write(&hw, RULES).unwrap();
    let t0 = Instant::now();
    let said = load(&sock, &hw);
    eprintln!("{test}: the reload took {:?}", t0.elapsed());
    let got = exchange.join().unwrap();
    assert_eq!(
        (got.answered, got.twice, got.foreign),
        (150, 0, 0),
        "answers across the reload"
    );
    for dev in ["lan0", "wan0"] {
        assert!(
            said.contains(&format!(
                "flowtable ft: {dev} XDP offload (native) in front of the AF_XDP steering"
            )),
            "{said}"
        );
    }
    assert!(!said.contains("warning"), "{said}");
    let st = stats(&sock);
    check_reload_loaded_before_the_lock(&st, 1, 1);
    lock_held_for_the_swap_only(&st);
    assert_eq!(st["xdp_offload"][0]["devices"]["lan0"], "native", "{st:#}");
    // every frame passed the offload first (misses) and was steered after it
    assert!(xdp_frames(&st, "miss") > 0, "{st:#}");

    // the flow is admitted again and pushed: the program forwards it, the sockets see none
    assert_eq!(udp_exchange(c, s, 150), 150);
    std::thread::sleep(Duration::from_millis(1500));
    let ct = list(&sock, "conntrack");
    assert!(ct.contains("[HW_OFFLOAD]"), "{ct}\n{:#}", stats(&sock));
    let before = stats(&sock);
    let fwd = xdp_frames(&before, "forwarded");
    assert_eq!(udp_exchange(c, s, 50), 50);
    let after = stats(&sock);
    assert!(xdp_frames(&after, "forwarded") >= fwd + 100, "{after:#}");
    assert_eq!(to_socket(&after), to_socket(&before), "{after:#}");
    // the router's own traffic: through the offload (a miss) to the steering, to the kernel
    let local = steered(&after, "local");
    assert!(ping(c, "198.18.1.1"), "the router's kernel did not answer");
    assert!(steered(&stats(&sock), "local") >= local + 3);

    // a clean stop takes everything off
    assert!(lab.router.stop().is_some(), "run did not stop on SIGTERM");
    assert!(
        !xdp_on(r, "lan0") && !xdp_on(r, "wan0"),
        "XDP left attached"
    );
}

/// The original direction's packets of the first `[hw]` flow in a `list flowtables`, 0 if none.
fn hw_packets(flows: &str) -> u64 {
    flows
        .lines()
        .find(|l| l.contains("[hw]"))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("packets="))
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
