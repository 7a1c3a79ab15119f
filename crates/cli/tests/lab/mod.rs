//! The namespaces of the `run` live tests that need a client, a router running `run` and a
//! server: client ns (eth0) - router ns (lan0, wan0) - server ns (eth0), 198.18.1.0/24 on the
//! LAN and 198.19.0.0/24 on the WAN, and helpers that talk to `run`'s control socket.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nft_io::netns::{ip, skip_reason, Netns};

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

pub fn xdp_on(ns: &str, dev: &str) -> bool {
    let out = Command::new("ip")
        .args(["-n", ns, "link", "show", dev])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(" xdp")
}

pub fn ping(ns: &str, dst: &str) -> bool {
    Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-c", "3", "-i", "0.2", "-W", "2", dst,
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
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

/// Sends `n` UDP datagrams from the client (port 10000) to the server's port 9, one every
/// 20 ms, each answered by the server: how many answers came back.
pub fn udp_exchange(c: &str, s: &str, n: u32) -> u32 {
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

/// `None`: skipped (the reason is printed).
pub fn lab(test: &str, tag: &str, io: &str, rules: &str, wait_xdp: bool) -> Option<Lab> {
    lab_with(test, tag, io, rules, wait_xdp, true, |_| {})
}

/// [`lab`], with or without the XDP program built (`needs_xdp`), and `before` run on the
/// router namespace's name before `run` starts.
pub fn lab_with(
    test: &str,
    tag: &str,
    io: &str,
    rules: &str,
    wait_xdp: bool,
    needs_xdp: bool,
    before: impl FnOnce(&str),
) -> Option<Lab> {
    lab_with_args(test, tag, io, rules, wait_xdp, needs_xdp, before, &[])
}

/// [`lab_with`], with more arguments for `run`.
#[allow(clippy::too_many_arguments)]
pub fn lab_with_args(
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
        eprintln!("{test}: SKIPPED ({why})");
        return None;
    }
    if needs_xdp && !nft_xdp::built() {
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
