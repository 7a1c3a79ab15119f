//! What the XDP examples and live tests share: the client <-> router <-> server line of
//! network namespaces, entering a namespace, and a flow's admission both ways. Included by
//! the examples as `mod support;` and by the tests through `#[path]`.
#![allow(dead_code)]

use std::os::fd::AsRawFd;
use std::process::Command;

use nft_conntrack::ConnId;
use nft_flowtable::{
    Admission, Config, Egress, Family, Flowtable, Mac, Mangles, OffloadBackend, Path, Port,
};
use nft_wire::PacketMeta;

pub const CLIENT_MAC: Mac = [2, 0, 0, 0, 1, 2];
pub const R_LAN_MAC: Mac = [2, 0, 0, 0, 1, 1];
pub const R_WAN_MAC: Mac = [2, 0, 0, 0, 2, 1];
pub const SERVER_MAC: Mac = [2, 0, 0, 0, 2, 2];

/// Runs a command, its stderr shown if it fails: its stdout.
pub fn sh(args: &[&str]) -> String {
    let o = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect(args[0]);
    if !o.status.success() {
        eprintln!("{args:?}: {}", String::from_utf8_lossy(&o.stderr).trim());
    }
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A flowtable over ports 0 and 1 whose flows go to `backend`, TCP control segments (FIN,
/// RST) punted to the slow path.
pub fn offload_flowtable<B: OffloadBackend>(backend: B) -> Flowtable<B> {
    Flowtable::with_backend(
        Config {
            devices: vec![0, 1],
            hw_offload: true,
            punt_tcp_control: true,
            ..Config::default()
        },
        backend,
    )
}

/// `m` as `ip link` writes it.
pub fn mac_str(m: Mac) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The commands that join namespaces `c` (client), `r` (router) and `s` (server), which exist,
/// in a line: veths `c0 <-> r0` (198.18.1.2/24, 198.18.1.1/24) and `r1 <-> s0` (198.19.0.1/24,
/// 198.19.0.2/24) with the MACs above, IPv6 off, up.
pub fn line_commands(c: &str, r: &str, s: &str) -> Vec<Vec<String>> {
    let cmd = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let mut cmds = vec![
        cmd(&[
            "ip", "-n", c, "link", "add", "c0", "type", "veth", "peer", "r0", "netns", r,
        ]),
        cmd(&[
            "ip", "-n", s, "link", "add", "s0", "type", "veth", "peer", "r1", "netns", r,
        ]),
    ];
    for (ns, dev, m, a) in [
        (c, "c0", CLIENT_MAC, "198.18.1.2/24"),
        (r, "r0", R_LAN_MAC, "198.18.1.1/24"),
        (r, "r1", R_WAN_MAC, "198.19.0.1/24"),
        (s, "s0", SERVER_MAC, "198.19.0.2/24"),
    ] {
        cmds.push(cmd(&[
            "ip",
            "netns",
            "exec",
            ns,
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6",
        ]));
        cmds.push(cmd(&[
            "ip",
            "-n",
            ns,
            "link",
            "set",
            dev,
            "address",
            &mac_str(m),
        ]));
        cmds.push(cmd(&["ip", "-n", ns, "addr", "add", a, "dev", dev]));
        cmds.push(cmd(&["ip", "-n", ns, "link", "set", dev, "up"]));
    }
    cmds
}

/// Runs `f` on a thread that has entered network namespace `ns`.
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns file");
            // SAFETY: setns on a valid namespace fd; it changes only this thread's namespace.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns {ns}");
            f()
        })
        .join()
        .expect("namespace thread")
    })
}

/// The admission of connection `conn`, whose packet `meta` came in on `from`, from the forward
/// hook of an inet table with nothing mangled: the original direction from `from` out through
/// `to_egress`, the reply from `to_egress.port` back out through `from_egress`.
pub fn admission(
    meta: &PacketMeta,
    conn: ConnId,
    from: Port,
    from_egress: Egress,
    to_egress: Egress,
) -> Admission<'_> {
    let to = to_egress.port;
    Admission {
        forward_hook: true,
        family: Family::Inet,
        conn: Some(conn),
        meta,
        paths: [
            Path {
                ingress: from,
                egress: to_egress,
            },
            Path {
                ingress: to,
                egress: from_egress,
            },
        ],
        mangles: [Mangles::default(); 2],
        fib_generation: 0,
    }
}

/// The median of `v` (sorted in place).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
