//! Throwaway network namespaces for live tests: a Drop guard that removes them (and the veth
//! ends inside) also when the test fails, a veth pair between two of them, and a way to run
//! code inside one. Sockets opened there stay there when handed back.
//!
//! Everything shells out to `ip` (iproute2); names carry the process id and a sequence number so
//! tests running in parallel never collide.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Why live tests cannot run here (not root, no `ip`), or `None`.
pub fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("needs `ip` (iproute2)".into());
    }
    None
}

/// Says why `test` cannot run here ("TEST: SKIPPED (WHY)") and lets it pass; with
/// `NFT_OFFLOAD_REQUIRE_LIVE=1` (CI as root) the skip fails the test instead.
pub fn skip(test: &str, why: &str) {
    if std::env::var("NFT_OFFLOAD_REQUIRE_LIVE").is_ok_and(|v| v == "1") {
        panic!("{test}: cannot run here ({why}), and NFT_OFFLOAD_REQUIRE_LIVE=1");
    }
    eprintln!("{test}: SKIPPED ({why})");
}

/// Runs `ip ARGS`; the error has the command and its stderr.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Namespaces removed on drop.
pub struct Netns {
    names: Vec<String>,
}

impl Netns {
    pub fn create(names: &[String]) -> Result<Netns, String> {
        let mut ns = Netns { names: Vec::new() };
        for n in names {
            ip(&["netns", "add", n])?;
            ns.names.push(n.clone());
        }
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// Runs `f` on a thread that has entered namespace `ns`.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns takes a descriptor we own for the call; CLONE_NEWNET moves only this
        // thread, which ends when f returns.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns({path}): {}", io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Two namespaces joined by a veth pair: `vr` (198.18.0.1/30, 2001:db8::1/64) in `router`,
/// `vp` (198.18.0.2/30, 2001:db8::2/64) in `peer`, both up. Removed on drop.
pub struct VethPair {
    pub router: String,
    pub peer: String,
    _netns: Netns,
}

impl VethPair {
    /// `None`, with "SKIPPED (...)" printed, when the test cannot run here. `tag` is a short
    /// prefix for the namespace names.
    pub fn create(test: &str, tag: &str) -> Option<VethPair> {
        if let Some(why) = skip_reason() {
            skip(test, &why);
            return None;
        }
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let tag = format!(
            "{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let (router, peer) = (format!("{tag}-a"), format!("{tag}-b"));
        let netns = match Netns::create(&[router.clone(), peer.clone()]) {
            Ok(ns) => ns,
            Err(e) => {
                skip(test, &format!("cannot create namespaces: {e}"));
                return None;
            }
        };
        let (r, p) = (router.as_str(), peer.as_str());
        if let Err(e) = ip(&[
            "-n", r, "link", "add", "vr", "type", "veth", "peer", "name", "vp", "netns", p,
        ]) {
            skip(test, &format!("cannot create a veth pair: {e}"));
            return None;
        }
        for (ns, dev, v4, v6) in [
            (r, "vr", "198.18.0.1/30", "2001:db8::1/64"),
            (p, "vp", "198.18.0.2/30", "2001:db8::2/64"),
        ] {
            ip(&["-n", ns, "addr", "add", v4, "dev", dev]).unwrap();
            ip(&["-n", ns, "addr", "add", v6, "dev", dev, "nodad"]).unwrap();
            ip(&["-n", ns, "link", "set", dev, "up"]).unwrap();
            ip(&["-n", ns, "link", "set", "lo", "up"]).unwrap();
        }
        Some(VethPair {
            router,
            peer,
            _netns: netns,
        })
    }
}
