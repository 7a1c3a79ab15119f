//! `nft-offload run` live, AF_PACKET backend: client namespace ↔ router namespace (our
//! dataplane, kernel forwarding off) ↔ server namespace, IPv4 and IPv6. Needs root (and
//! python3 for the traffic); says "SKIPPED (needs root)" and passes otherwise (fails with
//! `NFT_OFFLOAD_REQUIRE_LIVE=1`).
//!
//! The router's namespace starts with no neighbour entries: every next hop's MAC comes from
//! the kernel's resolution, asked for over rtnetlink, so the test also proves that.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod lab;

const BIN: &str = env!("CARGO_BIN_EXE_nft-offload");
const LIVE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/live");
/// The ruleset every router of these tests starts with.
const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/live/rules.nft");

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether the test must be skipped: not root, or one of `cmds` missing ("SKIPPED (needs
/// root, python3 and ping)", see [`lab::skip`]).
fn skipped(cmds: &[&str]) -> bool {
    if is_root() && cmds.iter().all(|c| have(c)) {
        return false;
    }
    let (last, rest) = cmds.split_last().expect("commands");
    let mut needs = vec!["root"];
    needs.extend_from_slice(rest);
    let thread = std::thread::current();
    lab::skip(
        thread.name().unwrap_or("live_run"),
        &format!("needs {} and {last}", needs.join(", ")),
    );
    true
}

/// Namespaces, the router and background processes of one test; all removed on drop.
struct Lab {
    c: String,
    r: String,
    s: String,
    dir: PathBuf,
    router: Option<Child>,
    bg: Vec<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ch in self.bg.iter_mut().chain(self.router.iter_mut()) {
            let _ = ch.kill();
            let _ = ch.wait();
        }
        for n in [&self.c, &self.r, &self.s] {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn must(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

impl Lab {
    fn new(tag: &str, partial_csum: bool) -> Lab {
        Lab::with_queues(tag, partial_csum, 1)
    }

    /// With `queues` receive and transmit queues on every veth (AF_XDP binds one socket per
    /// worker and queue).
    fn with_queues(tag: &str, partial_csum: bool, queues: u32) -> Lab {
        let p = std::process::id();
        let dir = std::env::temp_dir().join(format!("nfo-live-{tag}-{p}"));
        let _ = std::fs::create_dir_all(&dir);
        let lab = Lab {
            c: format!("nfo-{tag}-c-{p}"),
            r: format!("nfo-{tag}-r-{p}"),
            s: format!("nfo-{tag}-s-{p}"),
            dir,
            router: None,
            bg: vec![],
        };
        for n in [&lab.c, &lab.r, &lab.s] {
            must(&["ip", "netns", "add", n]);
            must(&["ip", "-n", n, "link", "set", "lo", "up"]);
            // no duplicate address detection, link-local included: a tentative link-local
            // address cannot send neighbour solicitations for a second or two
            must(&[
                "ip",
                "netns",
                "exec",
                n,
                "sysctl",
                "-qw",
                "net.ipv6.conf.default.accept_dad=0",
                "net.ipv6.conf.all.accept_dad=0",
            ]);
        }
        let (c, r, s) = (lab.c.as_str(), lab.r.as_str(), lab.s.as_str());
        let cv = format!("c{p}");
        let sv = format!("s{p}");
        let q = queues.to_string();
        let mq = ["numrxqueues", &q, "numtxqueues", &q];
        for (v, ns, peer) in [(&cv, c, "lan"), (&sv, s, "wan")] {
            let mut args = vec!["ip", "link", "add", v.as_str(), "netns", ns];
            args.extend_from_slice(&mq);
            args.extend_from_slice(&["type", "veth", "peer", "name", peer, "netns", r]);
            args.extend_from_slice(&mq);
            must(&args);
        }
        must(&["ip", "-n", c, "link", "set", &cv, "name", "eth0"]);
        must(&["ip", "-n", s, "link", "set", &sv, "name", "eth0"]);
        for (ns, dev, a4, a6) in [
            (c, "eth0", "198.18.1.2/24", "2001:db8:1::2/64"),
            (r, "lan", "198.18.1.1/24", "2001:db8:1::1/64"),
            (r, "wan", "198.18.2.1/24", "2001:db8:2::1/64"),
            (s, "eth0", "198.18.2.2/24", "2001:db8:2::2/64"),
        ] {
            must(&["ip", "-n", ns, "addr", "add", a4, "dev", dev]);
            must(&["ip", "-n", ns, "addr", "add", a6, "dev", dev, "nodad"]);
            must(&["ip", "-n", ns, "link", "set", dev, "up"]);
            // MTU-sized frames: veth would otherwise pass 64 KB segments. With `partial_csum`
            // the peers leave their TCP/UDP checksums to "hardware" (the router completes them,
            // as it must for packets made on its own host); otherwise they fill them in.
            let tx = if partial_csum { "on" } else { "off" };
            let _ = run(&[
                "ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", tx, "tso", "off", "gso",
                "off", "gro", "off",
            ]);
        }
        must(&[
            "ip",
            "-n",
            c,
            "route",
            "add",
            "default",
            "via",
            "198.18.1.1",
        ]);
        must(&[
            "ip",
            "-n",
            c,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:1::1",
        ]);
        must(&[
            "ip",
            "-n",
            s,
            "route",
            "add",
            "default",
            "via",
            "198.18.2.1",
        ]);
        must(&[
            "ip",
            "-n",
            s,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:2::1",
        ]);
        must(&[
            "ip",
            "netns",
            "exec",
            r,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=0",
            "net.ipv6.conf.all.forwarding=0",
        ]);
        lab
    }

    fn ctl(&self) -> String {
        self.dir.join("ctl.sock").display().to_string()
    }

    /// `run` with [`RULES`] and `extra` arguments, in the background; returns once its
    /// control socket is there.
    fn start_router(&mut self, extra: &[&str]) {
        let out = std::fs::File::create(self.dir.join("router.out")).unwrap();
        let err = std::fs::File::create(self.dir.join("router.err")).unwrap();
        let ch = Command::new("ip")
            .args(["netns", "exec", &self.r, BIN, "run", "-f"])
            .arg(RULES)
            .args(["--interfaces", "lan=lan,wan=wan", "--control", &self.ctl()])
            .args(extra)
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        self.router = Some(ch);
        let t = Instant::now();
        while !Path::new(&self.ctl()).exists() {
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "the router did not start: {}",
                std::fs::read_to_string(self.dir.join("router.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The path from the client to the server checked by ping: two pings that may go
    /// unanswered (the first packets wait for the neighbours to be resolved), then `count`
    /// of which one at least must be answered.
    fn ping_server(&self, count: &str) {
        let _ = lab::ping_n(&self.c, "198.18.2.2", "2", "1");
        let o = lab::ping_n(&self.c, "198.18.2.2", count, "1");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    }

    fn exec(&self, ns: &str, args: &[&str]) -> Output {
        let mut v = vec!["ip", "netns", "exec", ns];
        v.extend_from_slice(args);
        run(&v)
    }

    fn client(&self, args: &[&str]) -> Output {
        let mut v = vec![BIN];
        v.extend_from_slice(args);
        let ctl = self.ctl();
        v.extend_from_slice(&["--control", &ctl]);
        run(&v)
    }

    fn stats(&self) -> serde_json::Value {
        let o = self.client(&["stats", "--json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    }

    fn flows(&self) -> String {
        String::from_utf8_lossy(&self.client(&["list", "flowtables"]).stdout).into_owned()
    }

    /// A python3 helper in the background; returns once it says it is listening.
    fn listen(&mut self, ns: &str, args: &[&str]) -> usize {
        let mut ch = Command::new("ip")
            .args(["netns", "exec", ns, "python3"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut rd = BufReader::new(ch.stdout.take().unwrap());
        rd.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "listening");
        ch.stdout = Some(rd.into_inner());
        self.bg.push(ch);
        self.bg.len() - 1
    }

    fn finish(&mut self, i: usize) -> String {
        let out: Option<ChildStdout> = self.bg[i].stdout.take();
        let mut s = String::new();
        if let Some(o) = out {
            let _ = BufReader::new(o).read_line(&mut s);
        }
        let _ = self.bg[i].wait();
        s.trim().to_string()
    }
}

fn py(name: &str) -> String {
    format!("{LIVE}/{name}")
}

/// A TCP transfer of `bytes` from `from_ns` to `host:port`, where `to_ns` listens on `bind`:
/// the sender must have sent them all, and the receiver count and hash (SHA-256) the same.
fn transfer(
    lab: &mut Lab,
    to_ns: &str,
    bind: &str,
    from_ns: &str,
    host: &str,
    port: &str,
    bytes: &str,
) {
    let to_ns = to_ns.to_string();
    // `bind` is ADDR, or ADDR#PORT for a port forward's inside port
    let (baddr, bport) = match bind.rsplit_once('#') {
        Some((a, p)) => (a, p),
        None => (bind, port),
    };
    let rx = lab.listen(&to_ns, &[&py("xfer.py"), "recv", baddr, bport]);
    let o = lab.exec(
        from_ns,
        &["python3", &py("xfer.py"), "send", host, port, bytes],
    );
    assert!(
        o.status.success(),
        "sender to {host}:{port}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let sent = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(sent.starts_with(&format!("{bytes} ")), "{sent}");
    assert_eq!(sent, lab.finish(rx));
}

/// [`transfer`] from the client to the server, which listens on `addr`.
fn upload(lab: &mut Lab, addr: &str, port: &str, bytes: &str) {
    let (c, s) = (lab.c.clone(), lab.s.clone());
    transfer(lab, &s, addr, &c, addr, port, bytes);
}

/// [`transfer`] through the ruleset's port forward: from the server to the router's WAN
/// address port 8080, which DNAT sends on to the client's port 80.
fn port_forward_in(lab: &mut Lab, bytes: &str) {
    let (c, s) = (lab.c.clone(), lab.s.clone());
    transfer(lab, &c, "198.18.1.2#80", &s, "198.18.2.1", "8080", bytes);
}

/// [`port_forward_in`] over IPv6: the router's WAN address `[2001:db8:2::1]:8080` to the
/// client's port 80.
fn port_forward_in6(lab: &mut Lab, bytes: &str) {
    let (c, s) = (lab.c.clone(), lab.s.clone());
    transfer(
        lab,
        &c,
        "2001:db8:1::2#80",
        &s,
        "2001:db8:2::1",
        "8080",
        bytes,
    );
}

/// A `stream.py` UDP flow from the client: a numbered datagram every 10 ms, echoed by
/// `udp.py echo` at the server; [`Stream::count`] says how many of those sent since the last
/// count were answered. Killed when dropped.
struct Stream {
    ch: Child,
    out: BufReader<ChildStdout>,
}

impl Stream {
    fn start(ns: &str, host: &str, port: &str) -> Stream {
        let mut ch = Command::new("ip")
            .args(["netns", "exec", ns, "python3", &py("stream.py"), host, port])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(ch.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        Stream { ch, out }
    }

    /// (sent, answered) since the last count.
    fn count(&mut self) -> (u64, u64) {
        use std::io::Write;
        self.ch
            .stdin
            .as_mut()
            .unwrap()
            .write_all(b"count\n")
            .unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        let mut w = line.split_whitespace().map(|x| x.parse().unwrap());
        (w.next().unwrap(), w.next().unwrap())
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.ch.kill();
        let _ = self.ch.wait();
    }
}

/// Starts every stream's count afresh.
fn recount(streams: &mut [Stream]) {
    for st in streams {
        st.count();
    }
}

/// After `wait`, each stream's (sent, answered) since its last count must pass `ok`.
fn expect_streams(
    streams: &mut [Stream],
    wait: Duration,
    what: &str,
    ok: impl Fn(u64, u64) -> bool,
) {
    std::thread::sleep(wait);
    for st in streams {
        let (sent, got) = st.count();
        assert!(ok(sent, got), "{what}: {got} of {sent}");
    }
}

/// Waits (up to 20 s) until `list flowtables` shows a flow with each of `needles`; the listing.
fn wait_flows(lab: &Lab, needles: &[&str]) -> String {
    let t = Instant::now();
    loop {
        let flows = lab.flows();
        if needles.iter().all(|n| flows.contains(n)) {
            return flows;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no flow {needles:?}: {flows}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The drop counters (`stats --json`'s `drops`) that grew from `before` to `after`, as
/// "reason +N", but for the `unavoidable` reasons.
fn drops_grown(
    before: &serde_json::Value,
    after: &serde_json::Value,
    unavoidable: &[&str],
) -> Vec<String> {
    let Some(after) = after.as_object() else {
        return vec![format!("no drops in {after}")];
    };
    after
        .iter()
        .filter(|(k, _)| !unavoidable.contains(&k.as_str()))
        .filter_map(|(k, v)| {
            let (n, b) = (v.as_u64()?, before[k].as_u64().unwrap_or(0));
            (n > b).then(|| format!("{k} +{}", n - b))
        })
        .collect()
}

/// A number of the router's final stats (printed at exit, `stats` in text form): the one after
/// `key` (e.g. "packets in ").
fn final_count(out: &str, key: &str) -> u64 {
    out.split(key)
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key:?} in {out}"))
}

/// Stops the router with `signal` (INT or TERM) and checks that it stopped cleanly: exit 0,
/// the control socket and the guard table gone, XDP detached (`xdp`), and its final stats
/// printed, with every packet counted in `last` (a `stats --json` taken before) and
/// `more` packets since.
fn stop_cleanly(lab: &mut Lab, signal: &str, xdp: bool, last: &serde_json::Value, more: u64) {
    let pid = lab.router.as_ref().unwrap().id();
    must(&["kill", &format!("-{signal}"), &pid.to_string()]);
    let t = Instant::now();
    let status = loop {
        if let Some(s) = lab.router.as_mut().unwrap().try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the router did not stop on SIG{signal}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "SIG{signal}: {status}");
    assert!(
        !Path::new(&lab.ctl()).exists(),
        "the control socket is left"
    );
    let tables = must(&["ip", "netns", "exec", &lab.r, "nft", "list", "tables"]);
    assert!(!tables.contains("nft_offload_run"), "{tables}");
    if xdp {
        // the steering programs are off (the kernel may release the links a moment later)
        let t = Instant::now();
        while (lab::xdp_on(&lab.r, "lan") || lab::xdp_on(&lab.r, "wan"))
            && t.elapsed() < Duration::from_secs(3)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !lab::xdp_on(&lab.r, "lan") && !lab::xdp_on(&lab.r, "wan"),
            "XDP left attached"
        );
    }
    // no accounting lost: the last word counts what `stats` had counted, and what came since
    let out = std::fs::read_to_string(lab.dir.join("router.out")).unwrap();
    let n = |v: &serde_json::Value| v.as_u64().unwrap();
    let in_ = final_count(&out, "packets in ");
    assert!(in_ >= n(&last["packets_in"]) + more, "{out}\n{last:#}");
    let paths = final_count(&out, "fast path ") + final_count(&out, "slow path ");
    assert!(
        paths >= n(&last["paths"]["fast"]) + n(&last["paths"]["slow"]) + more,
        "{out}\n{last:#}"
    );
    assert!(
        final_count(&out, "interface lan: rx ") >= n(&last["interfaces"][0]["rx_packets"]),
        "{out}\n{last:#}"
    );
    assert!(
        final_count(&out, "flows offloaded ") >= n(&last["flows"]["offloaded_total"]),
        "{out}\n{last:#}"
    );
}

#[test]
fn live_router_af_packet() {
    live_router("af_packet");
}

/// The same with AF_XDP sockets and the steering program: the kernel keeps what is addressed
/// to the router and has a socket there, the dataplane gets the rest.
#[test]
fn live_router_af_xdp() {
    live_router("af_xdp");
}

fn live_router(io: &str) {
    if skipped(&["python3", "ping", "timeout"]) {
        return;
    }
    let xdp = io == "af_xdp";
    // AF_XDP with the peers' checksum offload on: their TCP/UDP checksums arrive partial, with
    // no state to say so, and the router completes them by content (the 100 MB transfer's
    // SHA-256 and every UDP answer prove it); AF_PACKET's partial checksums are exercised by
    // the two-worker test.
    let mut lab = Lab::new(if xdp { "ax" } else { "ap" }, xdp);
    lab.start_router(&["--io", io]);
    let (c, r, s) = (lab.c.clone(), lab.r.clone(), lab.s.clone());
    // the router's own addresses: its kernel answers (with AF_XDP, ARP, ND and ICMP pass the
    // steering)
    for own in ["198.18.1.1", "2001:db8:1::1"] {
        let o = lab::ping_n(&lab.c, own, "2", "1");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    }
    // and a TCP connection to a socket of the router's own, which the kernel serves alone
    // (the dataplane sends nothing for it: no answer, no forward)
    let sent = |st: &serde_json::Value| {
        st["interfaces"][0]["tx_packets"].as_u64().unwrap()
            + st["interfaces"][1]["tx_packets"].as_u64().unwrap()
    };
    let tx0 = sent(&lab.stats());
    for own in ["198.18.1.1", "2001:db8:1::1"] {
        transfer(&mut lab, &r, own, &c, own, "2222", "1000000");
    }
    let st = lab.stats();
    assert_eq!(
        sent(&st),
        tx0,
        "the dataplane sent for the router's own: {st:#}"
    );
    if xdp {
        assert!(
            lab::xdp_on(&lab.r, "lan") && lab::xdp_on(&lab.r, "wan"),
            "no steering program"
        );
        let st = lab.stats();
        assert!(
            st["steering"]["lan"]["arp"].as_u64().unwrap() >= 1,
            "{st:#}"
        );
        assert!(
            st["steering"]["lan"]["local"].as_u64().unwrap() >= 2,
            "{st:#}"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(lab.ctl()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "control socket mode {mode:o}");

    // ping through masquerade; the first echo waits in the router for the server's MAC (the
    // kernel resolves it, asked over rtnetlink) and then goes on: nothing is lost
    for dst in ["198.18.2.2", "2001:db8:2::2"] {
        let o = lab::ping_n(&lab.c, dst, "3", "1");
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("3 received"),
            "{text}\n{:#}\n{}",
            lab.stats(),
            must(&["ip", "-n", &r, "neigh"])
        );
    }
    let st = lab.stats();
    assert!(st["drops"].get("neighbour_unresolved").is_none(), "{st:#}");
    let neigh = must(&["ip", "-n", &r, "neigh", "show", "dev", "wan"]);
    assert!(neigh.contains("198.18.2.2"), "{neigh}");

    // UDP flows through masquerade: the server sees the router's WAN address
    // (flows of five datagrams; the client prints how many were answered, and from which
    // source address the server saw them)
    for (addr, flows, answers) in [
        ("198.18.2.2", "8", "40 198.18.2.1"),
        ("2001:db8:2::2", "4", "20 2001:db8:2::1"),
    ] {
        let echo = lab.listen(&s, &[&py("udp.py"), "echo", addr, "5353"]);
        let o = lab.exec(
            &c,
            &["python3", &py("udp.py"), "send", addr, "5353", flows, "5"],
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), answers);
        let _ = lab.bg[echo].kill();
    }
    // SCTP through masquerade. AF_XDP: sent with its CRC32c left zero, as a veth peer's stack
    // leaves it for the device; the router completes it, so conntrack tracks the INIT (the
    // server sees the router's address) and the CRC arrives right. An untracked (invalid)
    // packet would pass un-NATed with its zero CRC. AF_PACKET: a raw socket's packet carries
    // no offload state, so it is sent whole.
    let rx = lab.listen(&s, &[&py("sctp.py"), "recv", "198.18.2.2"]);
    let o = lab.exec(
        &c,
        &[
            "python3",
            &py("sctp.py"),
            "send",
            "198.18.2.2",
            if xdp { "zero" } else { "good" },
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(lab.finish(rx), "198.18.2.1 crc ok", "{:#}", lab.stats());
    // (short UDP flows stay on the slow path: the kernel admits UDP once it is a stream)
    let ct = String::from_utf8_lossy(&lab.client(&["list", "conntrack"]).stdout).into_owned();
    // the 8 flows' 40 datagrams, counted on their connections (a source port the client's
    // kernel happens to pick twice makes one connection of two flows)
    let sent: u64 = ct
        .lines()
        .filter(|l| l.starts_with("udp ") && l.contains("src=198.18.1.2 dst=198.18.2.2"))
        .filter_map(|l| {
            l.split("packets=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(sent, 40, "{ct}");

    // 100 MB of TCP, checksum verified at the receiver
    let fast_before = lab.stats()["paths"]["fast"].as_u64().unwrap();
    upload(&mut lab, "198.18.2.2", "5001", "100000000");
    let st = lab.stats();
    if xdp {
        // the client's segments are forwarded; the server's answers come to the router's WAN
        // address with no kernel socket for them; nothing fell back for want of a socket
        let n = |dev: &str, k: &str| st["steering"][dev][k].as_u64().unwrap();
        assert!(n("lan", "forward") > 50_000, "{st:#}");
        assert!(n("wan", "local_no_socket") > 1_000, "{st:#}");
        assert_eq!(n("lan", "no_socket") + n("wan", "no_socket"), 0, "{st:#}");
    }
    assert!(
        st["paths"]["fast"].as_u64().unwrap() > fast_before + 50_000,
        "the transfer took the fast path: {st:#}"
    );
    // and over IPv6
    upload(&mut lab, "2001:db8:2::2", "5002", "20000000");

    // a DNAT port forward inbound, to the router's own WAN address (the kernel would answer
    // with a RST were it not for the guard table), IPv4 and IPv6
    port_forward_in(&mut lab, "2000000");
    port_forward_in6(&mut lab, "2000000");

    // a dropped port stays dropped (the server listens on it), IPv4 and IPv6
    let l9 = lab.listen(&s, &[&py("xfer.py"), "recv", "198.18.2.2", "9"]);
    let l9v6 = lab.listen(&s, &[&py("xfer.py"), "recv", "2001:db8:2::2", "9"]);
    // each attempt's own SYNs count as rule drops (a closed socket sends no retransmit after
    // it, so the next attempt's count is its own)
    let rule_drops = |lab: &Lab| lab.stats()["drops"]["rule_drop"].as_u64().unwrap_or(0);
    for dst in ["'198.18.2.2'", "'198.18.2.2'", "'2001:db8:2::2'"] {
        let before = rule_drops(&lab);
        let o = lab.exec(
            &c,
            &[
                "python3",
                "-c",
                &format!("import socket; socket.create_connection(({dst}, 9), timeout=1.5)"),
            ],
        );
        assert!(!o.status.success(), "port 9 of {dst} was reached");
        let st = lab.stats();
        assert!(
            st["drops"]["rule_drop"].as_u64().unwrap_or(0) > before,
            "port 9 of {dst}: no rule drop ({before} before): {st:#}"
        );
    }
    let _ = lab.bg[l9].kill();
    let _ = lab.bg[l9v6].kill();

    // a route added while running: the router follows the kernel's main table
    must(&["ip", "-n", &s, "addr", "add", "198.18.5.1/32", "dev", "lo"]);
    must(&[
        "ip",
        "-n",
        &s,
        "addr",
        "add",
        "2001:db8:5::1/128",
        "dev",
        "lo",
    ]);
    let o = lab::ping_n(&lab.c, "198.18.5.1", "1", "1");
    assert!(!o.status.success(), "no route yet");
    must(&[
        "ip",
        "-n",
        &r,
        "route",
        "add",
        "198.18.5.0/24",
        "via",
        "198.18.2.2",
    ]);
    must(&[
        "ip",
        "-n",
        &r,
        "-6",
        "route",
        "add",
        "2001:db8:5::/64",
        "via",
        "2001:db8:2::2",
    ]);
    for dst in ["198.18.5.1", "2001:db8:5::1"] {
        let t = Instant::now();
        while !lab::ping_n(&lab.c, dst, "1", "1").status.success() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "the new route to {dst} was not followed"
            );
        }
    }
    assert!(lab.stats()["drops"]["no_route"].as_u64().unwrap_or(0) >= 1);

    // two long UDP flows through masquerade, IPv4 and IPv6, offloaded once the kernel's rules
    // would admit them (a stream, answered two seconds on); they run across the reload below
    // and the route changes after it
    for addr in ["198.18.5.1", "2001:db8:5::1"] {
        lab.listen(&s, &[&py("udp.py"), "echo", addr, "5360"]);
    }
    let mut streams = [
        Stream::start(&c, "198.18.5.1", "5360"),
        Stream::start(&c, "2001:db8:5::1", "5360"),
    ];

    // a ruleset reload in the middle of transfers, IPv4 and IPv6: a bad file changes nothing,
    // a good one is swapped in, the connections never break and the offloaded UDP flows lose
    // no datagram
    let bad = lab.dir.join("bad.nft");
    std::fs::write(
        &bad,
        "table inet fw {\n\tchain x {\n\t\ttcp dport sshhh accept\n\t}\n}\n",
    )
    .unwrap();
    let more = lab.dir.join("more.nft");
    std::fs::write(
        &more,
        std::fs::read_to_string(RULES)
            .unwrap()
            .replace("tcp dport 9 drop", "tcp dport 9 drop\n\t\tudp dport 7 drop"),
    )
    .unwrap();
    let mut xfers = vec![];
    for (addr, port, bytes) in [
        ("198.18.2.2", "5003", "300000000"),
        ("2001:db8:2::2", "5006", "200000000"),
    ] {
        let rx = lab.listen(&s, &[&py("xfer.py"), "recv", addr, port]);
        let tx = Command::new("ip")
            .args(["netns", "exec", &c, "python3", &py("xfer.py"), "send"])
            .args([addr, port, bytes])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        lab.bg.push(tx);
        xfers.push((rx, lab.bg.len() - 1, bytes));
    }
    let flows = wait_flows(
        &lab,
        &[
            "tcp original src=198.18.1.2 dst=198.18.2.2 sport=",
            "dport=5003",
            "tcp original src=2001:db8:1::2 dst=2001:db8:2::2 sport=",
            "dport=5006",
            "udp original src=198.18.1.2 dst=198.18.5.1 sport=",
            "udp original src=2001:db8:1::2 dst=2001:db8:5::1 sport=",
        ],
    );
    // conntrack listing in `conntrack -L` format, the summary on stderr as `conntrack -L`
    // prints it
    let o = lab.client(&["list", "conntrack"]);
    let ct = String::from_utf8_lossy(&o.stdout).into_owned();
    for port in ["dport=5003 ", "dport=5006 ", "dport=5360 "] {
        assert!(
            ct.lines()
                .any(|l| l.contains(port) && l.contains(" [OFFLOAD] ")),
            "{port}: {ct}\n{flows}"
        );
    }
    assert!(ct.contains("src=198.18.1.2 dst=198.18.2.2"), "{ct}");
    assert!(
        ct.lines().all(|l| l.starts_with("tcp      6 ")
            || l.starts_with("udp      17 ")
            || l.starts_with("icmp     1 ")
            || l.starts_with("icmpv6   58 ")
            || l.starts_with("sctp     132 ")),
        "{ct}"
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "conntrack v1.4.8 (conntrack-tools): {} flow entries have been shown.\n",
            ct.lines().count()
        )
    );
    let listing = must(&[BIN, "list", "ruleset", "--control", &lab.ctl()]);
    let o = lab.client(&["load", "-f", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("bad.nft:3:13-17: Error: Could not resolve service"),
        "{e}"
    );
    assert_eq!(
        must(&[BIN, "list", "ruleset", "--control", &lab.ctl()]),
        listing,
        "a bad file changed the ruleset"
    );
    assert!(!listing.contains("udp dport 7 drop"), "{listing}");
    let drops0 = lab.stats()["drops"].clone();
    let o = lab.client(&["load", "-f", more.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let listing = String::from_utf8_lossy(&lab.client(&["list", "ruleset"]).stdout).into_owned();
    assert!(listing.contains("udp dport 7 drop"), "{listing}");
    // both transfers still running: the swap came mid-transfer
    for &(_, tx, _) in &xfers {
        assert!(
            lab.bg[tx].try_wait().unwrap().is_none(),
            "a transfer ended before the reload"
        );
    }
    let flows = lab.flows();
    for port in ["dport=5003", "dport=5006", "dport=5360"] {
        assert!(flows.contains(port), "{port}: the flow survived the swap");
    }
    // and the swap dropped nothing (TCP would hide a loss): no drop counter grew but those of
    // the rings the transfers fill
    std::thread::sleep(Duration::from_millis(300));
    let st = lab.stats();
    let grown = drops_grown(&drops0, &st["drops"], &["rx_ring_full", "tx_backpressure"]);
    assert!(grown.is_empty(), "drops across the swap: {grown:?}\n{st:#}");
    for (rx, tx, bytes) in xfers {
        let sent = lab.finish(tx);
        let got = lab.finish(rx);
        assert!(sent.starts_with(&format!("{bytes} ")), "{sent}");
        assert_eq!(sent, got);
    }
    // and with the transfers done (they fill the receive rings: a datagram lost there would
    // say nothing of the swap), the reload back loses none of the offloaded UDP flows'
    // datagrams, which stay offloaded
    recount(&mut streams);
    let fast0 = lab.stats()["paths"]["fast"].as_u64().unwrap();
    let o = lab.client(&["load", "-f", RULES]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    expect_streams(
        &mut streams,
        Duration::from_millis(500),
        "across the reload",
        |sent, got| sent > 20 && got == sent,
    );
    let st = lab.stats();
    assert!(
        st["paths"]["fast"].as_u64().unwrap() > fast0 + 80,
        "the flows stayed offloaded: {fast0} before: {st:#}\n{}",
        lab.flows()
    );

    // a route change reaches the offloaded flows: the route to the UDP flows' servers moves to
    // a next hop the router has no MAC for (the server's second address): their datagrams
    // wait while the kernel resolves it (the router's kernel forwards nothing: the entry it
    // makes is the dataplane's asking), then leave; none is lost
    must(&[
        "ip",
        "-n",
        &s,
        "addr",
        "add",
        "198.18.2.3/24",
        "dev",
        "eth0",
    ]);
    must(&[
        "ip",
        "-n",
        &s,
        "addr",
        "add",
        "2001:db8:2::3/64",
        "dev",
        "eth0",
        "nodad",
    ]);
    recount(&mut streams);
    // `ip route replace` of both prefixes: `via N` (the server's address N on the WAN), or
    // `blackhole`
    let route = |how: &[&str]| {
        for (fam, net, hop) in [
            ("-4", "198.18.5.0/24", "198.18.2."),
            ("-6", "2001:db8:5::/64", "2001:db8:2::"),
        ] {
            let mut args = vec!["ip", "-n", r.as_str(), fam, "route", "replace"];
            let via;
            match how {
                ["via", n] => {
                    via = format!("{hop}{n}");
                    args.extend_from_slice(&[net, "via", &via]);
                }
                _ => args.extend_from_slice(&["blackhole", net]),
            }
            must(&args);
        }
    };
    // the route to the server (`via 2`) again: every stream answered
    let route_back = |streams: &mut [Stream], what: &str| {
        route(&["via", "2"]);
        std::thread::sleep(Duration::from_millis(300));
        recount(streams);
        expect_streams(streams, Duration::from_millis(700), what, |sent, got| {
            sent > 30 && got == sent
        });
    };
    route(&["via", "3"]);
    expect_streams(
        &mut streams,
        Duration::from_millis(1000),
        "through the new next hop",
        |sent, got| sent > 50 && got == sent,
    );
    let neigh = must(&["ip", "-n", &r, "neigh", "show", "dev", "wan"]);
    for hop in ["198.18.2.3 ", "2001:db8:2::3 "] {
        assert!(neigh.contains(hop), "{hop} not resolved: {neigh}");
    }
    let st = lab.stats();
    assert!(st["drops"].get("neighbour_unresolved").is_none(), "{st:#}");
    // (the flows went back to the slow path for the new next hop's MAC; once the flowtable's
    // GC has removed them, within a second, the next packet offloads them again)
    std::thread::sleep(Duration::from_millis(1200));
    let fast0 = lab.stats()["paths"]["fast"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let st = lab.stats();
    assert!(
        st["paths"]["fast"].as_u64().unwrap() > fast0 + 100,
        "offloaded again through the new next hop: {fast0} before: {st:#}\n{}",
        lab.flows()
    );
    // a blackhole route: the offloaded flows stop there (the kernel's own flowtable would go
    // on forwarding them); the route back: they flow again
    let holes = st["drops"]["blackhole"].as_u64().unwrap_or(0);
    route(&["blackhole"]);
    std::thread::sleep(Duration::from_millis(300));
    recount(&mut streams);
    expect_streams(
        &mut streams,
        Duration::from_millis(700),
        "through a blackhole",
        |sent, got| sent > 30 && got == 0,
    );
    let st = lab.stats();
    assert!(
        st["drops"]["blackhole"].as_u64().unwrap_or(0) > holes + 60,
        "{st:#}"
    );
    // a next hop that never answers: the datagrams wait while the kernel tries (about three
    // seconds), then its failure drops them (`neighbour_unresolved`); the connection stays and
    // flows again once the route is back
    route(&["via", "9"]);
    expect_streams(
        &mut streams,
        Duration::from_millis(4500),
        "to a dead next hop",
        |sent, got| sent > 100 && got == 0,
    );
    let st = lab.stats();
    assert!(
        st["drops"]["neighbour_unresolved"].as_u64().unwrap_or(0) > 0,
        "{st:#}"
    );
    route_back(&mut streams, "the route back");

    // an interface going down and up (Linux drops a link's IPv6 addresses when it goes down,
    // unless told to keep them: the kernel's routing would have none either): with the WAN
    // down its routes are gone and what would leave there is dropped as `no_route` (the ICMP
    // unreachable answered), the UDP flows too; once it is up they flow again
    must(&[
        "ip",
        "netns",
        "exec",
        &r,
        "sysctl",
        "-qw",
        "net.ipv6.conf.wan.keep_addr_on_down=1",
    ]);
    must(&["ip", "-n", &r, "link", "set", "wan", "down"]);
    std::thread::sleep(Duration::from_millis(300));
    let no_route = |st: &serde_json::Value| st["drops"]["no_route"].as_u64().unwrap_or(0);
    let no_route0 = no_route(&lab.stats());
    recount(&mut streams);
    for dst in ["198.18.2.2", "2001:db8:2::2"] {
        let o = lab::ping_n(&lab.c, dst, "2", "1");
        assert!(!o.status.success(), "ping {dst} with the WAN down");
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut lost = 0;
    for st in &mut streams {
        let (sent, got) = st.count();
        assert!(sent > 30 && got == 0, "with the WAN down: {got} of {sent}");
        lost += sent;
    }
    // the 4 echo requests and every datagram
    let st = lab.stats();
    assert!(
        no_route(&st) >= no_route0 + 4 + lost,
        "{no_route0} no_route before, {lost} datagrams and 4 pings since: {st:#}"
    );
    must(&["ip", "-n", &r, "link", "set", "wan", "up"]);
    for dst in ["198.18.2.2", "2001:db8:2::2"] {
        let t = Instant::now();
        while !lab::ping_n(&lab.c, dst, "1", "1").status.success() {
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "no ping to {dst} after the WAN came back"
            );
        }
    }
    // (the kernel took the routes through the WAN away with it)
    route_back(&mut streams, "with the WAN back");
    drop(streams);
    upload(&mut lab, "198.18.2.2", "5004", "1000000");
    upload(&mut lab, "2001:db8:2::2", "5004", "1000000");

    // `stats` in all three forms: per interface and per path packets, drops by reason, flows,
    // CPU per packet
    let st = lab.stats();
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or_else(|| panic!("{v} in {st:#}"));
    for (i, name) in [(0, "lan"), (1, "wan")] {
        let f = &st["interfaces"][i];
        assert_eq!(f["name"], name, "{st:#}");
        for k in ["rx_packets", "tx_packets", "rx_bytes", "tx_bytes"] {
            assert!(n(&f[k]) > 10_000, "{name} {k}: {st:#}");
        }
    }
    // the transfers' half a gigabyte, in at the LAN and out at the WAN
    assert!(n(&st["interfaces"][0]["rx_bytes"]) > 500_000_000, "{st:#}");
    assert!(n(&st["interfaces"][1]["tx_bytes"]) > 500_000_000, "{st:#}");
    let ifs_in = n(&st["interfaces"][0]["rx_packets"]) + n(&st["interfaces"][1]["rx_packets"]);
    assert_eq!(n(&st["packets_in"]), ifs_in, "{st:#}");
    assert!(n(&st["paths"]["fast"]) > 100_000, "{st:#}");
    assert!(n(&st["paths"]["slow"]) > 100, "{st:#}");
    // the transfers' FINs reach conntrack through the slow path: punted by the fast path
    assert!(n(&st["punts"]["tcp_control"]) > 0, "{st:#}");
    for k in ["rule_drop", "no_route", "blackhole"] {
        assert!(n(&st["drops"][k]) > 0, "{k}: {st:#}");
    }
    assert!(n(&st["flows"]["offloaded_total"]) >= 6, "{st:#}");
    assert!(st["flows"]["by_state"].is_object(), "{st:#}");
    assert!(n(&st["connections_total"]) > 0, "{st:#}");
    let ns = st["cpu"]["ns_per_packet"].as_f64().unwrap();
    assert!(ns > 0.0 && ns < 1e7, "{st:#}");
    assert!(
        st["cpu"]["worker_seconds"].as_f64().unwrap() > 0.0,
        "{st:#}"
    );
    let prom = must(&[BIN, "stats", "--prometheus", "--control", &lab.ctl()]);
    let metric = |name: &str| -> f64 {
        prom.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{prom}"))
    };
    for (name, json) in [
        (
            "nft_offload_interface_packets_total{interface=\"lan\",direction=\"rx\"}",
            &st["interfaces"][0]["rx_packets"],
        ),
        (
            "nft_offload_interface_packets_total{interface=\"wan\",direction=\"tx\"}",
            &st["interfaces"][1]["tx_packets"],
        ),
        (
            "nft_offload_interface_bytes_total{interface=\"lan\",direction=\"rx\"}",
            &st["interfaces"][0]["rx_bytes"],
        ),
        (
            "nft_offload_path_packets_total{path=\"fast\"}",
            &st["paths"]["fast"],
        ),
        (
            "nft_offload_path_packets_total{path=\"slow\"}",
            &st["paths"]["slow"],
        ),
        (
            "nft_offload_fast_path_punts_total{reason=\"tcp_control\"}",
            &st["punts"]["tcp_control"],
        ),
        (
            "nft_offload_drops_total{reason=\"rule_drop\"}",
            &st["drops"]["rule_drop"],
        ),
        (
            "nft_offload_drops_total{reason=\"blackhole\"}",
            &st["drops"]["blackhole"],
        ),
        (
            "nft_offload_flows_offloaded_total",
            &st["flows"]["offloaded_total"],
        ),
        ("nft_offload_reloads_total", &st["reloads"]["count"]),
    ] {
        // taken after the JSON: the same or more
        assert!(metric(name) >= n(json) as f64, "{name}: {prom}\n{st:#}");
    }
    assert_eq!(metric("nft_offload_reloads_total"), 2.0, "{prom}");
    assert!(metric("nft_offload_cpu_ns_per_packet") > 0.0, "{prom}");
    assert!(metric("nft_offload_cpu_seconds_total") > 0.0, "{prom}");
    let text = must(&[BIN, "stats", "--control", &lab.ctl()]);
    for want in [
        "packets in ",
        "interface lan: rx ",
        "interface wan: rx ",
        "drop rule_drop: ",
        "fast path punts: ",
        "flows offloaded ",
        " ns per packet\n",
    ] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }

    // SIGTERM: clean shutdown, final stats, the socket and the kernel table gone, XDP off
    let last = lab.stats();
    stop_cleanly(&mut lab, "TERM", xdp, &last, 0);

    // with the kernel forwarding too, every packet would leave twice: `run` refuses
    must(&[
        "ip",
        "netns",
        "exec",
        &r,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);
    let o = lab.exec(
        &r,
        &[
            BIN,
            "run",
            "-f",
            RULES,
            "--interfaces",
            "lan=lan,wan=wan",
            "--control",
            &lab.ctl(),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("the kernel forwards too (net.ipv4.ip_forward is on)"),
        "{e}"
    );
    // and IPv6 forwarding alone (a `run` that started would be stopped by the time limit)
    must(&[
        "ip",
        "netns",
        "exec",
        &r,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=0",
        "net.ipv6.conf.all.forwarding=1",
    ]);
    let o = lab.exec(
        &r,
        &[
            "timeout",
            "20",
            BIN,
            "run",
            "-f",
            RULES,
            "--interfaces",
            "lan=lan,wan=wan",
            "--control",
            &lab.ctl(),
        ],
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("the kernel forwards too (net.ipv6.conf.all.forwarding is on)"),
        "{e}"
    );
}

/// Two workers, their sockets in one fanout group per interface: both directions of a NATed
/// connection meet the same tables whichever worker reads them. The hosts leave their
/// checksums to offload here: the router completes them.
#[test]
fn live_router_two_workers() {
    two_workers("af_packet");
}

/// Two workers on AF_XDP: one socket per worker and queue of two-queue veths; the queue a
/// frame lands in is not tied to its connection, and the shared tables make that fine.
#[test]
fn live_router_two_workers_af_xdp() {
    two_workers("af_xdp");
}

fn two_workers(io: &str) {
    if skipped(&["python3", "ping"]) {
        return;
    }
    let xdp = io == "af_xdp";
    // AF_XDP frames carry no checksum state (no skb): the hosts fill their checksums in
    let mut lab = if xdp {
        Lab::with_queues("x2", false, 2)
    } else {
        Lab::new("w2", true)
    };
    lab.start_router(&["--workers", "2", "--io", io]);
    lab.ping_server("3");
    upload(&mut lab, "198.18.2.2", "5001", "30000000");
    port_forward_in(&mut lab, "1000000");
    let (c, s) = (lab.c.clone(), lab.s.clone());
    let echo = lab.listen(&s, &[&py("udp.py"), "echo", "198.18.2.2", "5353"]);
    // 32 UDP flows, spread over the workers by flow (AF_PACKET's fanout hash; AF_XDP: the
    // client's veth picks a queue per flow): every worker receives some
    let o = lab.exec(
        &c,
        &[
            "python3",
            &py("udp.py"),
            "send",
            "198.18.2.2",
            "5353",
            "32",
            "2",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "64 198.18.2.1");
    // (each worker publishes its socket counters every 200 ms: wait up to 2 s for them)
    let rx = |st: &serde_json::Value, w: usize| st["per_worker"][w]["rx_packets"].as_u64();
    let t = Instant::now();
    let st = loop {
        let st = lab.stats();
        if (rx(&st, 0) > Some(0) && rx(&st, 1) > Some(0)) || t.elapsed() > Duration::from_secs(2) {
            break st;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(st["workers"], 2);
    assert!(st["paths"]["fast"].as_u64().unwrap() > 10_000, "{st:#}");
    assert!(
        rx(&st, 0) > Some(0) && rx(&st, 1) > Some(0),
        "both workers received: {st:#}"
    );
    // SIGINT right after a last UDP exchange (40 datagrams both ways, all answered): a clean
    // stop whose final stats count them
    let last = lab.stats();
    let o = lab.exec(
        &c,
        &[
            "python3",
            &py("udp.py"),
            "send",
            "198.18.2.2",
            "5353",
            "4",
            "5",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "20 198.18.2.1");
    let _ = lab.bg[echo].kill();
    stop_cleanly(&mut lab, "INT", xdp, &last, 40);
}

/// The GSO tests' router: `run --io af_packet` with the live ruleset, the path checked by ping.
fn start_af_packet(lab: &mut Lab) {
    start_af_packet_with(lab, &[]);
}

/// [`start_af_packet`] with `extra` arguments for `run`.
fn start_af_packet_with(lab: &mut Lab, extra: &[&str]) {
    let args: Vec<&str> = ["--io", "af_packet"].iter().chain(extra).copied().collect();
    lab.start_router(&args);
    lab.ping_server("2");
}

/// The GSO tests' lab `name` with the veths' offloads as they come (TSO, GSO and checksum
/// offload on at the hosts and the router's interfaces) and its router started by
/// [`start_af_packet_with`] `extra`.
fn gso_lab(name: &str, extra: &[&str]) -> Lab {
    let mut lab = Lab::new(name, true);
    let (c, r, s) = (lab.c.clone(), lab.r.clone(), lab.s.clone());
    for (ns, dev) in [(&c, "eth0"), (&r, "lan"), (&r, "wan"), (&s, "eth0")] {
        must(&[
            "ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "on", "tso", "on", "gso", "on",
        ]);
    }
    start_af_packet_with(&mut lab, extra);
    lab
}

/// `bytes` from the client to the server at `addr` (IPv4 or IPv6) port `dport` through the
/// router, their SHA-256 checked at the server; then [`gso_stats`].
fn gso_transfer(lab: &mut Lab, addr: &str, dport: &str, bytes: &str) -> serde_json::Value {
    upload(lab, addr, dport, bytes);
    gso_stats(lab)
}

/// `stats` once the workers have published their socket counters (every 200 ms), checked for
/// the LAN first and no GSO packet dropped as unsupported or too big.
fn gso_stats(lab: &Lab) -> serde_json::Value {
    std::thread::sleep(Duration::from_millis(400));
    let st = lab.stats();
    assert_eq!(st["interfaces"][0]["name"], "lan", "{st:#}");
    assert!(
        st["drops"].get("gso_unsupported").is_none() && st["drops"].get("mtu_exceeded").is_none(),
        "{st:#}"
    );
    st
}

/// The transfer to `dport` reached the server from the router's WAN address (masquerade), and
/// its ACKs went back through the router.
fn assert_masqueraded(lab: &Lab, dport: &str) {
    let ct = String::from_utf8_lossy(&lab.client(&["list", "conntrack"]).stdout).into_owned();
    let port = format!("dport={dport}");
    assert!(
        ct.lines()
            .any(|l| l.contains(&port) && l.contains("dst=198.18.2.1")),
        "{ct}"
    );
}

/// TCP bulk with the veths' offloads as they come (TSO, GSO and checksum offload on at the
/// hosts and the router's interfaces, `run` turning GRO off on its own): the client's stack
/// hands veth 64 KB super-packets, AF_PACKET with `PACKET_VNET_HDR` receives them whole with
/// their GSO size and partial checksum, the fast path rewrites each once (masquerade) and it
/// leaves whole, for the server's veth to take as it is. 100 MB through masquerade with its
/// SHA-256 checked at the receiver, and over IPv6; `stats` counts the super-packets received
/// on the LAN and sent on the WAN.
#[test]
fn live_router_af_packet_gso() {
    if skipped(&["python3", "ping"]) {
        return;
    }
    let mut lab = gso_lab("gs", &[]);
    let st = gso_transfer(&mut lab, "198.18.2.2", "5001", "100000000");
    let n = |dev: usize, k: &str| st["interfaces"][dev][k].as_u64().unwrap();
    let (lan, wan) = (0, 1);
    eprintln!(
        "lan: {} frames, {} GSO, {} read whole from the socket, {} bytes; wan: {} GSO sent; fast path {}",
        n(lan, "rx_packets"),
        n(lan, "rx_gso"),
        n(lan, "rx_copied"),
        n(lan, "rx_bytes"),
        n(wan, "tx_gso"),
        st["paths"]["fast"]
    );
    // 100 MB in super-packets: far fewer frames than the 69 000 MTU-sized segments
    assert!(
        n(lan, "rx_gso") > 100,
        "super-packets received whole: {st:#}"
    );
    assert!(n(wan, "tx_gso") > 100, "super-packets sent whole: {st:#}");
    // longer than the V2 ring's 2 KiB slots: read whole from the socket's queue
    assert!(
        n(lan, "rx_copied") + 50 >= n(lan, "rx_gso"),
        "super-packets through the socket: {st:#}"
    );
    assert!(
        n(wan, "tx_gso") + 50 >= n(lan, "rx_gso"),
        "what came whole left whole: {st:#}"
    );
    assert!(
        n(lan, "rx_bytes") > 100_000_000 && n(lan, "rx_packets") < 60_000,
        "{st:#}"
    );
    assert_masqueraded(&lab, "5001");
    // and over IPv6 (TCPv6 super-packets)
    let before = n(lan, "rx_gso");
    let st = gso_transfer(&mut lab, "2001:db8:2::2", "5002", "20000000");
    assert!(
        st["interfaces"][0]["rx_gso"].as_u64().unwrap() > before + 20,
        "{st:#}"
    );
}

/// `--rx-ring v3`: the packed TPACKET_V3 ring instead of the default V2 slots carries the same
/// traffic: 20 MB of the client's super-packets through masquerade, received and sent whole,
/// its SHA-256 checked at the server.
#[test]
fn live_router_af_packet_v3_ring() {
    if skipped(&["python3", "ping"]) {
        return;
    }
    let mut lab = gso_lab("g3", &["--rx-ring", "v3"]);
    let st = gso_transfer(&mut lab, "198.18.2.2", "5005", "20000000");
    let n = |dev: usize, k: &str| st["interfaces"][dev][k].as_u64().unwrap();
    assert!(n(0, "rx_gso") > 20, "super-packets received whole: {st:#}");
    // a V3 block holds a super-packet whole; V2's small slots would have it read from the
    // socket (`rx_copied`, as in live_router_af_packet_gso)
    assert_eq!(n(0, "rx_copied"), 0, "the V3 ring: {st:#}");
    assert!(n(1, "tx_gso") > 20, "super-packets sent whole: {st:#}");
    assert_masqueraded(&lab, "5005");
}

/// The slow path with GSO (`--no-offload`): the client's 64 KB super-packets walk the ruleset
/// once each, as the kernel walks the skb, and leave whole (the slow path hands them to
/// AF_PACKET with their `virtio_net_hdr`, `tx_gso`). Conntrack counts each once with its
/// whole length: the connection's packets in the client's direction are at most the frames
/// the LAN received (not the 14 000 segments of 20 MB), its bytes the 20 MB and more. Then
/// 5 MB over IPv6.
#[test]
fn live_router_af_packet_gso_slow_path() {
    if skipped(&["python3", "ping"]) {
        return;
    }
    let mut lab = gso_lab("gn", &["--no-offload"]);
    let st = gso_transfer(&mut lab, "198.18.2.2", "5003", "20000000");
    let n = |dev: usize, k: &str| st["interfaces"][dev][k].as_u64().unwrap();
    let (lan, wan) = (0, 1);
    eprintln!(
        "lan: {} frames, {} GSO, {} ring drops; wan: {} frames, {} GSO sent; slow path {}, fast {}",
        n(lan, "rx_packets"),
        n(lan, "rx_gso"),
        n(lan, "rx_ring_dropped"),
        n(wan, "tx_packets"),
        n(wan, "tx_gso"),
        st["paths"]["slow"],
        st["paths"]["fast"]
    );
    assert!(
        n(lan, "rx_gso") > 20,
        "super-packets received whole: {st:#}"
    );
    assert!(
        n(wan, "tx_gso") + 20 >= n(lan, "rx_gso"),
        "the slow path sent them whole: {st:#}"
    );
    let ct = String::from_utf8_lossy(&lab.client(&["list", "conntrack"]).stdout).into_owned();
    let line = ct
        .lines()
        .find(|l| l.starts_with("tcp ") && l.contains("dport=5003 "))
        .unwrap_or_else(|| panic!("{ct}"));
    let field = |k: &str| -> u64 {
        line.split(k)
            .nth(1)
            .and_then(|v| v.split(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k} in {line}"))
    };
    let (packets, bytes) = (field("packets="), field("bytes="));
    assert!(
        packets <= n(lan, "rx_packets") && packets < 5_000,
        "each super-packet counted once: {line} ({} frames on the LAN)",
        n(lan, "rx_packets")
    );
    assert!(bytes > 20_000_000, "{line}");
    // and over IPv6 (TCPv6 super-packets, sent whole with GSO_TCPV6)
    let before = n(wan, "tx_gso");
    let st = gso_transfer(&mut lab, "2001:db8:2::2", "5004", "5000000");
    assert!(
        st["interfaces"][1]["tx_gso"].as_u64().unwrap() > before + 5,
        "{st:#}"
    );
}

/// GRO on the router's LAN interface, the client's TSO and GSO off (it sends MTU-sized
/// segments): `run --io af_packet` leaves GRO on (it reads each frame's `virtio_net_hdr`), the
/// kernel hands it GRO aggregates (veth aggregates once GRO is on: `ethtool -K .. gro on`
/// turns on its NAPI), and they are forwarded whole, segmented after the router. 100 MB
/// through masquerade with its SHA-256 checked at the receiver; `stats` counts the aggregates
/// received whole on the LAN (`rx_gso`) and sent whole on the WAN (`tx_gso`).
#[test]
fn live_router_af_packet_gro_aggregates() {
    if skipped(&["python3", "ping"]) {
        return;
    }
    let mut lab = Lab::new("gr", true);
    let r = lab.r.clone();
    // (Lab turned TSO, GSO and GRO off everywhere.) The WAN takes super-packets (TSO on);
    // without, see `live_router_af_packet_gro_to_wan_without_tso`
    must(&[
        "ip", "netns", "exec", &r, "ethtool", "-K", "lan", "gro", "on",
    ]);
    must(&[
        "ip", "netns", "exec", &r, "ethtool", "-K", "wan", "tso", "on", "gso", "on",
    ]);
    assert_eq!(lab::gro(&r, "lan"), "on");
    start_af_packet(&mut lab);
    assert_eq!(
        lab::gro(&r, "lan"),
        "on",
        "run leaves GRO on with af_packet"
    );
    let st = gso_transfer(&mut lab, "198.18.2.2", "5001", "100000000");
    let n = |dev: usize, k: &str| st["interfaces"][dev][k].as_u64().unwrap();
    let (lan, wan) = (0, 1);
    eprintln!(
        "lan: {} frames, {} GRO aggregates, {} bytes; wan: {} GSO sent; fast path {}",
        n(lan, "rx_packets"),
        n(lan, "rx_gso"),
        n(lan, "rx_bytes"),
        n(wan, "tx_gso"),
        st["paths"]["fast"]
    );
    assert!(n(lan, "rx_gso") > 0, "aggregates received whole: {st:#}");
    assert!(n(wan, "tx_gso") > 0, "aggregates sent whole: {st:#}");
    assert_masqueraded(&lab, "5001");
}

/// The same with TSO and GSO off at the router's WAN (as on many NICs, or PPPoE): the
/// aggregates received whole on the LAN leave through the second socket that takes the qdisc
/// path, where the kernel segments them (the bypass path would drop each one with ENOBUFS and
/// the transfer would stall: the sender gets a time limit). 100 MB through masquerade with its
/// SHA-256 checked; `stats` counts aggregates received whole and no back-pressure loss beyond
/// noise.
#[test]
fn live_router_af_packet_gro_to_wan_without_tso() {
    if skipped(&["python3", "ping", "timeout"]) {
        return;
    }
    let mut lab = Lab::new("gw", true);
    let (c, r, s) = (lab.c.clone(), lab.r.clone(), lab.s.clone());
    // (Lab turned TSO, GSO and GRO off everywhere: the WAN stays so.)
    must(&[
        "ip", "netns", "exec", &r, "ethtool", "-K", "lan", "gro", "on",
    ]);
    let features = must(&["ip", "netns", "exec", &r, "ethtool", "-k", "wan"]);
    for f in [
        "tcp-segmentation-offload: off",
        "generic-segmentation-offload: off",
    ] {
        assert!(features.contains(f), "{features}");
    }
    start_af_packet(&mut lab);
    let rx = lab.listen(&s, &[&py("xfer.py"), "recv", "198.18.2.2", "5001"]);
    let o = lab.exec(
        &c,
        &[
            "timeout",
            "120",
            "python3",
            &py("xfer.py"),
            "send",
            "198.18.2.2",
            "5001",
            "100000000",
        ],
    );
    let sent = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let got = lab.finish(rx);
    let st = lab.stats();
    assert!(
        o.status.success(),
        "sender (120 s limit): {} {st:#}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(sent.starts_with("100000000 "), "{sent}");
    assert_eq!(sent, got);
    let st = gso_stats(&lab);
    let n = |dev: usize, k: &str| st["interfaces"][dev][k].as_u64().unwrap();
    let (lan, wan) = (0, 1);
    let backpressure = st["drops"]["tx_backpressure"].as_u64().unwrap_or(0);
    eprintln!(
        "lan: {} frames, {} GRO aggregates; wan: {} frames, {} GSO sent; tx_backpressure {}",
        n(lan, "rx_packets"),
        n(lan, "rx_gso"),
        n(wan, "tx_packets"),
        n(wan, "tx_gso"),
        backpressure
    );
    assert!(n(lan, "rx_gso") > 0, "aggregates received whole: {st:#}");
    assert!(n(wan, "tx_gso") > 0, "aggregates sent whole: {st:#}");
    assert!(
        backpressure * 100 <= n(lan, "rx_packets"),
        "back-pressure loss: {st:#}"
    );
}
