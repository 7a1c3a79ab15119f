//! The namespaces of the `run` live tests that need a client, a router running `run` and a
//! server: client ns (eth0) - router ns (lan0, wan0) - server ns (eth0), 198.18.1.0/24 on the
//! LAN and 198.19.0.0/24 on the WAN, and helpers that talk to `run`'s control socket.
#![allow(dead_code)]

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nft_io::netns::{ip, skip_reason, Netns};

/// `ethtool -k DEV`'s generic-receive-offload state in namespace `ns` ("on", "off"; empty if
/// ethtool says nothing of it).
pub fn gro(ns: &str, dev: &str) -> String {
    let o = Command::new("ip")
        .args(["netns", "exec", ns, "ethtool", "-k", dev])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("generic-receive-offload: "))
        .unwrap_or("")
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

/// The router process, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Router(Option<Child>);

impl Router {
    pub fn stop(&mut self) -> Option<String> {
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

/// Whether device `dev` of namespace `ns` has an XDP program; the device must exist.
pub fn xdp_on(ns: &str, dev: &str) -> bool {
    let out = Command::new("ip")
        .args(["-n", ns, "link", "show", dev])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip -n {ns} link show {dev}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).contains(" xdp")
}

/// Whether three pings from namespace `ns` to `dst` (2 s for each answer) were answered.
pub fn ping(ns: &str, dst: &str) -> bool {
    ping_cmd(ns, dst, "3", "2").is_ok_and(|o| o.status.success())
}

/// `ping -c COUNT -i 0.2 -W WAIT DST` from namespace `ns`: its status and output.
pub fn ping_n(ns: &str, dst: &str, count: &str, wait: &str) -> Output {
    ping_cmd(ns, dst, count, wait).unwrap_or_else(|e| panic!("ping from {ns}: {e}"))
}

fn ping_cmd(ns: &str, dst: &str, count: &str, wait: &str) -> std::io::Result<Output> {
    Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-c", count, "-i", "0.2", "-W", wait, dst,
        ])
        .output()
}

pub fn stats(sock: &str) -> serde_json::Value {
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

pub fn list(sock: &str, what: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nft-offload"))
        .args(["list", what, "--control", sock])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A child process killed (SIGKILL, by its pid) and reaped when dropped, even when the test
/// fails.
pub struct Bg(pub Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The UDP counters of a namespace (`/proc/net/snmp`, the `Udp:` lines: name, value).
pub fn udp_counters(ns: &str) -> Vec<(String, u64)> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "cat", "/proc/net/snmp"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut udp = text.lines().filter(|l| l.starts_with("Udp: "));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return Vec::new();
    };
    names
        .split_whitespace()
        .skip(1)
        .zip(values.split_whitespace().skip(1))
        .map(|(n, v)| (n.to_string(), v.parse().unwrap_or(0)))
        .collect()
}

/// What changed between two [`udp_counters`] readings (the counters that moved).
fn udp_delta(before: &[(String, u64)], after: &[(String, u64)]) -> String {
    after
        .iter()
        .filter_map(|(n, v)| {
            let b = before.iter().find(|(m, _)| m == n).map_or(0, |x| x.1);
            (*v != b).then(|| format!("{n} +{}", v.wrapping_sub(b)))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The outcome of a [`udp_exchange_counted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answers {
    /// Distinct datagrams answered.
    pub answered: u32,
    /// Answers that came a second time.
    pub twice: u32,
    /// Datagrams received that the client never sent.
    pub foreign: u32,
}

/// Sends `n` numbered UDP datagrams (32 bytes) from the client's port 10000 to the server's
/// port 9, one every 20 ms, each echoed by the server, and counts the answers.
///
/// Under load (CI's two cores run the tests in parallel, with builds beside them) this must
/// not lose what the router does not lose:
/// - the server says when its socket is bound and only then does the client start: a fixed
///   sleep before the client (300 ms here once) is shorter than `ip netns exec python3` takes
///   to bind on a loaded machine (0.5-0.7 s measured at a load of 9-11), and a request that
///   arrived first was answered by the server's kernel with a port unreachable (its `Udp:
///   NoPorts`), one datagram short without the router losing anything (seen as 149 of 150
///   with `Udp: InDatagrams 149 NoPorts 1` at the server, and as 19 of 20);
/// - answers are taken as they come, not one at a time with a timeout: a late answer still
///   counts (with a timeout per datagram it counted as lost and the next wait took it);
/// - what is still missing three seconds after the last request is lost, and the counters of
///   the client's and the server's kernels tell where (printed): requests the server never
///   received (`InDatagrams` short, no `NoPorts`) or answers it sent that never came back were
///   lost between the two, i.e. by the router. (`InDatagrams` counts what the server *read*;
///   it is only stopped after the client's last wait.)
pub fn udp_exchange_counted(c: &str, s: &str, n: u32) -> Answers {
    udp_exchange_with(c, s, n, Echo::default())
}

/// How the echo server of [`udp_exchange_with`] misbehaves (the helper's own tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo {
    /// Seconds the server waits before it binds its socket (a slow start).
    pub start_delay: f64,
    /// The datagram (by number) the server answers half a second late.
    pub late: Option<u32>,
}

/// [`udp_exchange_counted`] with a server that starts slowly or answers late.
pub fn udp_exchange_with(c: &str, s: &str, n: u32, echo: Echo) -> Answers {
    use std::io::{BufRead, BufReader};
    let (c0, s0) = (udp_counters(c), udp_counters(s));
    let mut server = Bg(Command::new("ip")
        .args([
            "netns", "exec", s, "python3", "-c",
            &format!(
                "import socket,time\ntime.sleep({})\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',9))\nprint('ready',flush=True)\ns.settimeout(60)\ntry:\n  while True:\n    d,a=s.recvfrom(2048)\n    if d[:6]==b'{}': time.sleep(0.5)\n    s.sendto(d,a)\nexcept socket.timeout: pass\n",
                echo.start_delay,
                echo.late.map_or("-".repeat(6), |i| format!("{i:06}")),
            ),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap());
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "the UDP echo server did not start");
    let script = format!(
        "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',10000))\ns.setblocking(False)\nsent=set();seen=set();twice=0;foreign=0\ndef take():\n  global twice,foreign\n  while True:\n    try: d=s.recv(2048)\n    except BlockingIOError: return\n    if d not in sent: foreign+=1\n    elif d in seen: twice+=1\n    else: seen.add(d)\nfor i in range({n}):\n  m=b'%06d'%i+b'x'*26\n  sent.add(m)\n  s.sendto(m,('198.19.0.2',9))\n  time.sleep(0.02)\n  take()\nend=time.time()+3\nwhile time.time()<end and len(seen)<{n}:\n  time.sleep(0.02); take()\nprint(len(seen),twice,foreign)\n"
    );
    let out = Command::new("ip")
        .args(["netns", "exec", c, "python3", "-c", &script])
        .output()
        .unwrap();
    drop(server);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut w = text.split_whitespace().map(|x| x.parse().unwrap_or(0));
    let got = Answers {
        answered: w.next().unwrap_or(0),
        twice: w.next().unwrap_or(0),
        foreign: w.next().unwrap_or(0),
    };
    if got.answered != n || got.twice != 0 || got.foreign != 0 {
        eprintln!(
            "udp_exchange: {got:?} of {n} sent ({}); UDP counters during it: server [{}], client [{}]",
            String::from_utf8_lossy(&out.stderr).trim(),
            udp_delta(&s0, &udp_counters(s)),
            udp_delta(&c0, &udp_counters(c)),
        );
    }
    got
}

/// [`udp_exchange_counted`]: how many of the `n` datagrams were answered; an answer that came
/// twice or one the client never asked for fails the test.
pub fn udp_exchange(c: &str, s: &str, n: u32) -> u32 {
    let got = udp_exchange_counted(c, s, n);
    assert_eq!((got.twice, got.foreign), (0, 0), "{got:?}");
    got.answered
}

/// client ns - router ns - server ns, the router's interfaces lan0 and wan0, and `run` on
/// them with `rules` (removed with the namespaces when dropped).
pub struct Lab {
    pub _ns: Netns,
    pub c: String,
    pub r: String,
    pub s: String,
    pub dir: std::path::PathBuf,
    pub sock: String,
    pub router: Router,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.router.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub use nft_io::netns::skip;

/// `None`: skipped (the reason is printed, see [`skip`]).
pub fn lab(test: &str, tag: &str, io: &str, rules: &str, wait_xdp: bool) -> Option<Lab> {
    lab_with(test, tag, io, rules, wait_xdp, true, |_| {}, &[])
}

/// [`lab`], with or without the XDP program built (`needs_xdp`), `before` run on the router
/// namespace's name before `run` starts, and `extra` arguments for `run`.
#[allow(clippy::too_many_arguments)]
pub fn lab_with(
    test: &str,
    tag: &str,
    io: &str,
    rules: &str,
    wait_xdp: bool,
    needs_xdp: bool,
    before: impl FnOnce(&str),
    extra: &[&str],
) -> Option<Lab> {
    if let Some(why) = skip_reason() {
        skip(test, &why);
        return None;
    }
    if needs_xdp && !nft_xdp::built() {
        skip(test, nft_xdp::NOT_BUILT);
        return None;
    }
    if Command::new("python3").arg("-V").output().is_err() {
        skip(test, "needs python3");
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
    before(&r);
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
        .args(extra)
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
