//! The XDP flow offload on a live topology (root): client ns <-veth-> router ns <-veth->
//! server ns. Connections go through conntrack with masquerade and into a flowtable whose
//! backend is [`XdpOffload`] on the router's veths; frames sent from the client with AF_PACKET
//! must arrive at the server byte for byte as the software fast path rewrites them, counted by
//! the program. FIN/RST and misses are passed to the router's kernel (seen by a capture on
//! the router's veth, which redirected frames never reach); a removed flow is no longer
//! forwarded; a full map leaves the flow in software, counted.
//!
//! The router's kernel does not forward (`ip_forward` 0), so whatever reaches the server was
//! forwarded by the program.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use nft_conntrack::{Config as CtConfig, ConnId, NatRange, Outcome, Table};
use nft_flowtable::{Action, Config, Egress, Encap, FlowId, Flowtable, FrameSlot, Mac, Port};
use nft_wire::parse_frame;
use nft_xdp::offload::{ModeRequest, XdpOffload, XdpOffloadConfig};

const LAN: Port = 0;
const WAN: Port = 1;
#[path = "../examples/support/mod.rs"]
mod support;
use support::{
    admission, in_ns, line_commands, offload_flowtable, CLIENT_MAC, R_LAN_MAC, R_WAN_MAC,
    SERVER_MAC,
};

const CLIENT: [u8; 4] = [198, 18, 1, 2];
const R_WAN: [u8; 4] = [198, 19, 0, 1];
const SERVER: [u8; 4] = [198, 19, 0, 2];

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect(args[0]);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The three namespaces, removed on drop (failure included).
struct Topo {
    c: String,
    r: String,
    s: String,
}

impl Topo {
    fn new(tag: &str) -> Topo {
        let pid = std::process::id();
        let t = Topo {
            c: format!("xoc{tag}{pid}"),
            r: format!("xor{tag}{pid}"),
            s: format!("xos{tag}{pid}"),
        };
        for n in [&t.c, &t.r, &t.s] {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
            sh(&["ip", "netns", "add", n]);
        }
        for cmd in line_commands(&t.c, &t.r, &t.s) {
            sh(&cmd.iter().map(String::as_str).collect::<Vec<_>>());
        }
        sh(&[
            "ip",
            "netns",
            "exec",
            &t.r,
            "sh",
            "-c",
            "echo 0 > /proc/sys/net/ipv4/ip_forward",
        ]);
        // The end hosts' stacks stay quiet (no port unreachable, no RST for our raw frames):
        // the captures see the frames before the input hook.
        for ns in [&t.c, &t.s] {
            sh(&[
                "ip", "netns", "exec", ns, "nft",
                "add table inet quiet; add chain inet quiet in { type filter hook input priority 0; policy drop; }",
            ]);
        }
        t
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        for n in [&self.c, &self.r, &self.s] {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

/// An AF_PACKET socket on `dev` of the calling thread's namespace.
fn packet_socket(dev: &str) -> OwnedFd {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
    assert!(fd >= 0, "AF_PACKET socket");
    // SAFETY: fd is a fresh socket we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; zero is a valid starting value.
    let mut sll: libc::sockaddr_ll = unsafe { core::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = nft_xdp::offload::ifindex_of(dev) as i32;
    assert!(sll.sll_ifindex > 0, "{dev}");
    // SAFETY: sll is a valid sockaddr_ll of the size given.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            core::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(r, 0, "bind {dev}");
    let on: i32 = 1;
    // SAFETY: setsockopt with a valid int option value.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_AUXDATA,
            (&on as *const i32).cast(),
            4,
        )
    };
    assert_eq!(r, 0, "PACKET_AUXDATA");
    let size: i32 = 8 << 20;
    // SAFETY: setsockopt with a valid int option value (root: the limit does not apply).
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const i32).cast(),
            4,
        )
    };
    fd
}

fn send(fd: &OwnedFd, frame: &[u8]) {
    // SAFETY: frame is a valid buffer of the length given.
    let n = unsafe { libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
    assert_eq!(n, frame.len() as isize, "send");
}

/// `struct tpacket_auxdata` (linux/if_packet.h).
#[repr(C)]
#[derive(Default)]
struct AuxData {
    status: u32,
    len: u32,
    snaplen: u32,
    mac: u16,
    net: u16,
    vlan_tci: u16,
    vlan_tpid: u16,
}
const TP_STATUS_VLAN_VALID: u32 = 0x10;
const TP_STATUS_VLAN_TPID_VALID: u32 = 0x40;

/// Incoming IP frames on `fd` within `wait` (outgoing ones and other protocols skipped), as
/// they were on the wire: a VLAN tag the receiving stack took out is put back from the
/// packet's auxiliary data.
fn recv_ip(fd: &OwnedFd, wait: Duration) -> Vec<Vec<u8>> {
    let mut out = vec![];
    let until = Instant::now() + wait;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return out;
        }
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, left.as_millis().max(1) as i32) };
        if r <= 0 {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        let mut cbuf = [0u64; 16];
        // SAFETY: sockaddr_ll is plain data.
        let mut sll: libc::sockaddr_ll = unsafe { core::mem::zeroed() };
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain data; the fields set below point to live buffers.
        let mut msg: libc::msghdr = unsafe { core::mem::zeroed() };
        msg.msg_name = (&mut sll as *mut libc::sockaddr_ll).cast();
        msg.msg_namelen = core::mem::size_of::<libc::sockaddr_ll>() as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = core::mem::size_of_val(&cbuf);
        // SAFETY: msg describes valid buffers for the call.
        let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if n <= 0 || sll.sll_pkttype == libc::PACKET_OUTGOING {
            continue;
        }
        buf.truncate(n as usize);
        let mut aux = AuxData::default();
        // SAFETY: walking the control messages the kernel wrote into cbuf, as CMSG_* define.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA {
                    aux = core::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<AuxData>());
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        if aux.status & TP_STATUS_VLAN_VALID != 0 && buf.len() >= 12 {
            let tpid = if aux.status & TP_STATUS_VLAN_TPID_VALID != 0 {
                aux.vlan_tpid
            } else {
                0x8100
            };
            let mut tag = tpid.to_be_bytes().to_vec();
            tag.extend_from_slice(&aux.vlan_tci.to_be_bytes());
            buf.splice(12..12, tag);
        }
        if buf.len() >= 14
            && matches!(
                [buf[12], buf[13]],
                [0x08, 0x00] | [0x86, 0xdd] | [0x81, 0x00] | [0x88, 0xa8] | [0x88, 0x64]
            )
        {
            out.push(buf);
        }
    }
}

/// IPv4 frames as [`recv_ip`] gives them.
fn recv_ipv4(fd: &OwnedFd, wait: Duration) -> Vec<Vec<u8>> {
    recv_ip(fd, wait)
        .into_iter()
        .filter(|f| f[12..14] == [0x08, 0x00])
        .collect()
}

/// Who sends a test frame: the client (to the server, into the router's LAN port) or the
/// server (to the router's WAN address, where masquerade put the client).
#[derive(Clone, Copy)]
enum Side {
    Client,
    Server,
}
use Side::{Client, Server};

impl Side {
    /// Ethernet source and destination, IPv4 source and destination.
    fn ends(self) -> (Mac, Mac, [u8; 4], [u8; 4]) {
        match self {
            Client => (CLIENT_MAC, R_LAN_MAC, CLIENT, SERVER),
            Server => (SERVER_MAC, R_WAN_MAC, SERVER, R_WAN),
        }
    }
}

fn udp(from: Side, sp: u16, dp: u16, payload: &[u8]) -> Vec<u8> {
    let (src, dst, s, d) = from.ends();
    let mut out = vec![];
    PacketBuilder::ethernet2(src, dst)
        .ipv4(s, d, 64)
        .udp(sp, dp)
        .write(&mut out, payload)
        .unwrap();
    out
}

/// A TCP segment (`flags`: S, F, R; ACK set when `ack` is).
fn tcp(
    from: Side,
    sp: u16,
    dp: u16,
    seq: u32,
    ack: Option<u32>,
    flags: &str,
    payload: &[u8],
) -> Vec<u8> {
    let (src, dst, s, d) = from.ends();
    let mut t = PacketBuilder::ethernet2(src, dst)
        .ipv4(s, d, 64)
        .tcp(sp, dp, seq, 64000);
    if flags.contains('S') {
        t = t.syn();
    }
    if flags.contains('F') {
        t = t.fin();
    }
    if flags.contains('R') {
        t = t.rst();
    }
    if let Some(a) = ack {
        t = t.ack(a);
    }
    let mut out = vec![];
    t.write(&mut out, payload).unwrap();
    out
}

/// Whether a live test can run here; prints why not.
fn runnable() -> bool {
    if !is_root() {
        nft_io::netns::skip("offload_live", "needs root");
        return false;
    }
    if !nft_xdp::built() {
        nft_io::netns::skip("offload_live", nft_xdp::NOT_BUILT);
        return false;
    }
    true
}

/// The XDP offload on the router's r0 (LAN) and r1 (WAN), in `mode`.
fn offload(topo: &Topo, mode: ModeRequest) -> XdpOffload {
    let cfg = XdpOffloadConfig {
        devices: vec![(LAN, "r0".into()), (WAN, "r1".into())],
        mode,
        ..XdpOffloadConfig::default()
    };
    in_ns(&topo.r, || XdpOffload::new(&cfg)).expect("offload loads")
}

/// The veth rule: the far ends get a program so that redirected frames are taken.
fn attach_peers(topo: &Topo, backend: &mut XdpOffload, peers: &[&str]) {
    for &dev in peers {
        let ns = if dev == "c0" { &topo.c } else { &topo.s };
        in_ns(ns, || backend.attach_peer(dev)).unwrap_or_else(|e| panic!("peer {dev}: {e}"));
    }
}

fn egress(port: Port, encap: Encap) -> Egress {
    if port == LAN {
        Egress {
            port: LAN,
            src_mac: R_LAN_MAC,
            dst_mac: CLIENT_MAC,
            encap,
            mtu: 1500,
        }
    } else {
        Egress {
            port: WAN,
            src_mac: R_WAN_MAC,
            dst_mac: SERVER_MAC,
            encap,
            mtu: 1500,
        }
    }
}

/// The router's control plane in small: conntrack with masquerade on WAN, and `flow add`
/// into the flowtable whose backend is the XDP offload.
struct Router {
    ct: Table,
    ft: Flowtable<XdpOffload>,
    /// Link encapsulation of the LAN and WAN ports.
    encap: [Encap; 2],
    /// The WAN address masquerade uses, per family.
    masq: [nft_wire::IpAddr; 2],
}

impl Router {
    fn new(backend: XdpOffload) -> Router {
        Router {
            ct: Table::new(CtConfig::default()),
            ft: offload_flowtable(backend),
            encap: [Encap::None; 2],
            masq: [R_WAN.into(), "2001:db8:2::1".parse().unwrap()],
        }
    }

    /// Tracks a frame (as the slow path would), masquerading new connections from the LAN.
    fn track(&mut self, frame: &[u8], from: Port, now: Duration) -> ConnId {
        let meta = parse_frame(frame).expect("frame parses");
        let Outcome::Tracked { id, .. } = self.ct.process(&meta, 0, now) else {
            panic!("not tracked");
        };
        if !self.ct.get(id).unwrap().is_confirmed() {
            assert_eq!(from, LAN);
            let v6 = meta.src_addr.is_some_and(|a| a.is_ipv6());
            self.ct
                .masquerade(id, self.masq[usize::from(v6)], 2, &NatRange::default())
                .unwrap();
            self.ct.confirm(id, now).unwrap();
        }
        id
    }

    fn admit(&mut self, id: ConnId, frame: &[u8], now: Duration) -> FlowId {
        let meta = parse_frame(frame).unwrap();
        let a = admission(
            &meta,
            id,
            LAN,
            egress(LAN, self.encap[0]),
            egress(WAN, self.encap[1]),
        );
        self.ft.admit(&mut self.ct, &a, now).expect("admitted")
    }

    /// A UDP flow tracked both ways through masquerade and admitted: the client's `first`
    /// datagram (to port `dport`), the server's `reply`. Returns the connection, its
    /// masqueraded port, the flow.
    fn udp_flow(
        &mut self,
        first: &[u8],
        dport: u16,
        reply: &[u8],
        now: Duration,
    ) -> (ConnId, u16, FlowId) {
        let id = self.track(first, LAN, now);
        let np = nat_port(&self.ct, id);
        self.track(&udp(Server, dport, np, reply), WAN, now);
        (id, np, self.admit(id, first, now))
    }

    /// What the software fast path makes of `frame`: (egress port, bytes).
    fn software(&mut self, port: Port, frame: &[u8], now: Duration) -> (Port, Vec<u8>) {
        let mut fs = FrameSlot::new(port, frame);
        match self.ft.process(&mut fs, now) {
            Action::Forward(p) => (p, fs.into_vec()),
            a => panic!("software fast path did not forward: {a:?}"),
        }
    }

    /// Sends `frame` into the router's `port` (`socks`: the sending peer's socket, the
    /// receiving one's) and asserts that the receiver gets, by `recv`, exactly what the
    /// software fast path makes of it, out of the other port.
    fn assert_forwarded(
        &mut self,
        port: Port,
        frame: &[u8],
        now: Duration,
        (from, to): (&OwnedFd, &OwnedFd),
        recv: fn(&OwnedFd, Duration) -> Vec<Vec<u8>>,
        what: &str,
    ) {
        let (out, expect) = self.software(port, frame, now);
        assert_eq!(out, if port == LAN { WAN } else { LAN }, "{what}: egress");
        send(from, frame);
        assert_eq!(recv(to, Duration::from_millis(300)), vec![expect], "{what}");
    }

    fn reason(&self, name: &str) -> u64 {
        self.ft
            .backend()
            .reasons()
            .into_iter()
            .find(|r| r.0 == name)
            .map_or(0, |r| r.1)
    }
}

/// The nat'd source port conntrack chose for `id`.
fn nat_port(ct: &Table, id: ConnId) -> u16 {
    ct.get(id).unwrap().reply().dport
}

fn run_live(tag: &str, mode: ModeRequest) {
    if !runnable() {
        return;
    }
    let topo = Topo::new(tag);
    let client = in_ns(&topo.c, || packet_socket("c0"));
    let server = in_ns(&topo.s, || packet_socket("s0"));
    let router_lan = in_ns(&topo.r, || packet_socket("r0"));
    let mut backend = offload(&topo, mode);
    for a in backend.attachments() {
        assert!(a.mode.is_some(), "{a:?}");
        if mode == ModeRequest::Generic {
            assert_eq!(a.mode, Some(nft_xdp::offload::Mode::Generic));
        }
    }
    attach_peers(&topo, &mut backend, &["c0", "s0"]);
    let mut r = Router::new(backend);
    let now = Duration::from_secs(100);

    // --- UDP: first packet and reply through the slow path, then admission.
    let (cport, dport) = (40000, 5001);
    let u1 = udp(Client, cport, dport, b"first");
    let (_, np, fid) = r.udp_flow(&u1, dport, b"reply", now);
    // Queued, not in the map yet: the program misses.
    assert_eq!(r.ft.backend().pending(), 1);
    let u2 = udp(Client, cport, dport, b"second packet");
    let (port, expect) = r.software(LAN, &u2, now);
    assert_eq!(port, WAN);
    send(&client, &u2);
    assert!(recv_ipv4(&server, Duration::from_millis(300)).is_empty());
    assert_eq!(r.reason("miss"), 1);
    assert_eq!(
        recv_ipv4(&router_lan, Duration::from_millis(100)),
        vec![u2.clone()]
    );
    // The push (from GC): the flow is [HW_OFFLOAD] from now on.
    let listing = |r: &Router| r.ct.list(now).join("\n");
    assert!(!listing(&r).contains("[HW_OFFLOAD]"), "{}", listing(&r));
    r.ft.gc(&mut r.ct, now);
    assert!(r.ft.info(fid, now).unwrap().hw);
    assert_eq!(r.ft.stats().hw_added, 1);
    assert!(listing(&r).contains("[HW_OFFLOAD]"), "{}", listing(&r));
    assert!(r.ft.list(now)[0].contains("[hw]"));
    for _ in 0..3 {
        send(&client, &u2);
    }
    let got = recv_ipv4(&server, Duration::from_millis(300));
    assert_eq!(got.len(), 3, "three forwarded by XDP");
    for g in &got {
        assert_eq!(g, &expect, "XDP output equals the software fast path's");
    }
    assert!(recv_ipv4(&router_lan, Duration::from_millis(50)).is_empty());
    // The reply direction, through the program too.
    let ru = udp(Server, dport, np, b"answer");
    r.assert_forwarded(WAN, &ru, now, (&server, &client), recv_ipv4, "udp reply");
    assert_eq!(r.reason("forwarded"), 4);
    // Stats come back into the flow: 1 software + 3 XDP original, 1 + 1 reply.
    let later = now + Duration::from_secs(5);
    let mono = nft_xdp::offload::monotonic_now();
    r.ft.backend_mut().set_clock(later, mono);
    r.ft.gc(&mut r.ct, later);
    let info = r.ft.info(fid, later).unwrap();
    assert_eq!(info.counters[0].packets, 4);
    assert_eq!(info.counters[1].packets, 2);
    assert_eq!(
        info.counters[0].bytes,
        4 * (u2.len() as u64 - 14),
        "bytes of the IP packets"
    );
    assert!(
        info.idle < Duration::from_secs(2),
        "last used refreshed: {info:?}"
    );
    // Teardown removes the entry: the next packet is passed, not forwarded.
    r.ft.teardown(fid);
    r.ft.gc(&mut r.ct, later);
    assert!(!r.ft.contains(fid));
    assert_eq!(r.ft.backend().stats().removed, 1);
    send(&client, &u2);
    assert!(recv_ipv4(&server, Duration::from_millis(300)).is_empty());
    assert_eq!(
        recv_ipv4(&router_lan, Duration::from_millis(100)),
        vec![u2.clone()]
    );

    // --- TCP: handshake through conntrack, admission, data by XDP, FIN passed.
    let (cp, sp) = (40001, 8080);
    let syn = tcp(Client, cp, sp, 1000, None, "S", b"");
    let tid = r.track(&syn, LAN, now);
    let tnp = nat_port(&r.ct, tid);
    let synack = tcp(Server, sp, tnp, 5000, Some(1001), "S", b"");
    r.track(&synack, WAN, now);
    let ack = tcp(Client, cp, sp, 1001, Some(5001), "", b"");
    r.track(&ack, LAN, now);
    let data = tcp(Client, cp, sp, 1001, Some(5001), "", b"GET /");
    r.track(&data, LAN, now);
    let tfid = r.admit(tid, &data, now);
    r.ft.gc(&mut r.ct, later);
    assert!(r.ft.info(tfid, later).unwrap().hw);
    let d2 = tcp(Client, cp, sp, 1006, Some(5001), "", b"more data");
    r.assert_forwarded(LAN, &d2, later, (&client, &server), recv_ipv4, "tcp data");
    let tr = tcp(Server, sp, tnp, 5001, Some(1015), "", b"200 OK");
    r.assert_forwarded(WAN, &tr, later, (&server, &client), recv_ipv4, "tcp reply");
    for (flags, reason_count) in [("F", 1), ("R", 2)] {
        let f = tcp(Client, cp, sp, 1015, Some(5007), flags, b"");
        send(&client, &f);
        assert!(recv_ipv4(&server, Duration::from_millis(200)).is_empty());
        assert_eq!(recv_ipv4(&router_lan, Duration::from_millis(100)), vec![f]);
        assert_eq!(r.reason("tcp_control"), reason_count);
    }
    assert_eq!(r.reason("forwarded"), 6);
    // The slow path tracks the FIN it was given and, the connection no longer established,
    // tears the flow down (the engine's rule): the entry leaves the map.
    let fin = tcp(Client, cp, sp, 1015, Some(5007), "F", b"");
    r.track(&fin, LAN, later);
    assert_ne!(
        r.ct.get(tid).unwrap().tcp_state(),
        Some(nft_conntrack::TcpState::Established)
    );
    r.ft.teardown(tfid);
    r.ft.gc(&mut r.ct, later);
    assert!(!r.ft.backend().contains(tfid));
    send(&client, &d2);
    assert!(recv_ipv4(&server, Duration::from_millis(200)).is_empty());
    assert_eq!(r.reason("forwarded"), 6);

    // Idle timeout: a flow the program stops seeing packets for leaves the map too.
    let u = udp(Client, 40002, 5002, b"idle");
    let (_, _, ifid) = r.udp_flow(&u, 5002, b"r", later);
    r.ft.gc(&mut r.ct, later);
    assert!(r.ft.backend().contains(ifid));
    let removed = r.ft.backend().stats().removed;
    r.ft.gc(&mut r.ct, later + Duration::from_secs(31));
    assert!(!r.ft.contains(ifid));
    assert!(!r.ft.backend().contains(ifid));
    assert_eq!(r.ft.backend().stats().removed, removed + 1);
    assert_eq!(r.ft.stats().expired_idle, 1);
    send(&client, &u);
    assert!(recv_ipv4(&server, Duration::from_millis(200)).is_empty());
    drop(r);
    drop(topo);
}

#[test]
fn udp_and_tcp_through_masquerade_native() {
    run_live("n", ModeRequest::Native);
}

#[test]
fn udp_and_tcp_through_masquerade_generic() {
    run_live("g", ModeRequest::Generic);
}

#[test]
fn a_full_map_leaves_flows_in_software() {
    if !runnable() {
        return;
    }
    let topo = Topo::new("f");
    let client = in_ns(&topo.c, || packet_socket("c0"));
    let server = in_ns(&topo.s, || packet_socket("s0"));
    let cfg = XdpOffloadConfig {
        devices: vec![(LAN, "r0".into()), (WAN, "r1".into())],
        max_entries: 2,
        mode: ModeRequest::Generic,
    };
    let backend = in_ns(&topo.r, || XdpOffload::new(&cfg)).expect("offload loads");
    let mut r = Router::new(backend);
    let now = Duration::from_secs(10);
    let mut flows = vec![];
    for cport in [41000, 41001] {
        let f = udp(Client, cport, 53, b"q");
        let (_, _, fid) = r.udp_flow(&f, 53, b"a", now);
        flows.push((fid, f));
    }
    r.ft.gc(&mut r.ct, now);
    let st = r.ft.backend().stats();
    assert_eq!((st.pushed, st.map_full, st.active), (1, 1, 1));
    assert_eq!((r.ft.stats().hw_added, r.ft.stats().hw_failed), (1, 1));
    assert!(r.ft.info(flows[0].0, now).unwrap().hw);
    let second = r.ft.info(flows[1].0, now).unwrap();
    assert!(!second.hw, "the second flow stays in software");
    // It still forwards in software.
    let (port, _) = r.software(LAN, &flows[1].1, now);
    assert_eq!(port, WAN);
    // The first is forwarded by the program, the second is passed.
    send(&client, &flows[0].1);
    send(&client, &flows[1].1);
    let got = recv_ipv4(&server, Duration::from_millis(300));
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0][36..38], &[0, 53], "the first flow's packet");
    assert_eq!(r.reason("miss"), 1);
}

#[test]
fn without_a_device_the_flows_stay_in_software_with_a_warning() {
    if !runnable() {
        return;
    }
    let topo = Topo::new("w");
    let cfg = XdpOffloadConfig {
        devices: vec![(LAN, "r0".into()), (WAN, "nosuchdev0".into())],
        ..XdpOffloadConfig::default()
    };
    let backend = in_ns(&topo.r, || XdpOffload::new(&cfg)).expect("not an error");
    let a = backend.attachments();
    assert!(a[0].mode.is_some());
    assert!(a[1].mode.is_none());
    assert!(a[1]
        .warning
        .as_deref()
        .unwrap()
        .contains("stay in software"));
    let mut r = Router::new(backend);
    let now = Duration::from_secs(1);
    let f = udp(Client, 42000, 53, b"q");
    let (_, _, fid) = r.udp_flow(&f, 53, b"a", now);
    r.ft.gc(&mut r.ct, now);
    assert!(!r.ft.info(fid, now).unwrap().hw);
    assert_eq!(r.ft.backend().stats().failed, 1);
    assert_eq!(r.ft.stats().hw_failed, 1);
}

/// The link header the slow path writes around IP packet `ipp`.
fn framed(dst: Mac, src: Mac, encap: Encap, ipp: &[u8]) -> Vec<u8> {
    let v6 = ipp[0] >> 4 == 6;
    let et: u16 = if v6 { 0x86dd } else { 0x0800 };
    let mut h = vec![];
    h.extend_from_slice(&dst);
    h.extend_from_slice(&src);
    match encap {
        Encap::None => h.extend_from_slice(&et.to_be_bytes()),
        Encap::Vlan(id) => {
            h.extend_from_slice(&[0x81, 0x00]);
            h.extend_from_slice(&id.to_be_bytes());
            h.extend_from_slice(&et.to_be_bytes());
        }
        Encap::QinQ { outer, inner } => {
            h.extend_from_slice(&[0x88, 0xa8]);
            h.extend_from_slice(&outer.to_be_bytes());
            h.extend_from_slice(&[0x81, 0x00]);
            h.extend_from_slice(&inner.to_be_bytes());
            h.extend_from_slice(&et.to_be_bytes());
        }
        Encap::Pppoe(sess) => {
            h.extend_from_slice(&[0x88, 0x64, 0x11, 0]);
            h.extend_from_slice(&sess.to_be_bytes());
            h.extend_from_slice(&((ipp.len() + 2) as u16).to_be_bytes());
            h.extend_from_slice(if v6 { &[0x00, 0x57] } else { &[0x00, 0x21] });
        }
    }
    h.extend_from_slice(ipp);
    h
}

/// A UDP packet, IP header first.
fn udp_ip(s: &str, d: &str, sp: u16, dp: u16, payload: &[u8]) -> Vec<u8> {
    let b = match (s.parse().unwrap(), d.parse().unwrap()) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
            PacketBuilder::ipv4(s.octets(), d.octets(), 64)
        }
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
            PacketBuilder::ipv6(s.octets(), d.octets(), 64)
        }
        _ => unreachable!(),
    };
    let mut out = vec![];
    b.udp(sp, dp).write(&mut out, payload).unwrap();
    out
}

/// VLAN on the LAN, PPPoE on the WAN, IPv4 and IPv6 with masquerade: the program pops one
/// and pushes the other, both ways, byte for byte as the software fast path does.
fn run_encap(tag: &str, mode: ModeRequest, lan: Encap, wan: Encap) {
    if !runnable() {
        return;
    }
    let topo = Topo::new(tag);
    let client = in_ns(&topo.c, || packet_socket("c0"));
    let server = in_ns(&topo.s, || packet_socket("s0"));
    let mut backend = offload(&topo, mode);
    attach_peers(&topo, &mut backend, &["c0", "s0"]);
    let mut r = Router::new(backend);
    r.encap = [lan, wan];
    let now = Duration::from_secs(50);
    let mut forwarded = 0;
    for (i, (c, s, w)) in [
        ("2001:db8:1::2", "2001:db8:2::2", "2001:db8:2::1"),
        ("198.18.1.2", "198.19.0.2", "198.19.0.1"),
    ]
    .into_iter()
    .enumerate()
    {
        let (cp, sp) = (40100 + i as u16, 6000);
        // the client's datagrams in `encap`; the server's answers to the masqueraded port
        let ask = |encap, payload: &[u8]| {
            framed(R_LAN_MAC, CLIENT_MAC, encap, &udp_ip(c, s, cp, sp, payload))
        };
        let answer =
            |np, payload: &[u8]| framed(R_WAN_MAC, SERVER_MAC, wan, &udp_ip(s, w, sp, np, payload));
        let o = ask(lan, b"ask");
        let id = r.track(&o, LAN, now);
        let np = nat_port(&r.ct, id);
        r.track(&answer(np, b"answer"), WAN, now);
        let fid = r.admit(id, &o, now);
        r.ft.gc(&mut r.ct, now);
        assert!(r.ft.info(fid, now).unwrap().hw, "{c}: pushed");
        let out = format!("{c}: out");
        let a1 = ask(lan, b"ask again");
        r.assert_forwarded(LAN, &a1, now, (&client, &server), recv_ip, &out);
        let back = format!("{c}: back");
        let a2 = answer(np, b"answer again");
        r.assert_forwarded(WAN, &a2, now, (&server, &client), recv_ip, &back);
        forwarded += 2;
        assert_eq!(r.reason("forwarded"), forwarded);
        // The wrong encapsulation is not this flow's: passed.
        send(&client, &ask(Encap::None, b"x"));
        assert!(recv_ip(&server, Duration::from_millis(200)).is_empty());
    }
    assert_eq!(r.reason("l2_mismatch"), 2);
}

#[test]
fn vlan_to_pppoe_ipv4_and_ipv6_native() {
    run_encap(
        "e",
        ModeRequest::Native,
        Encap::Vlan(7),
        Encap::Pppoe(0x1234),
    );
}

#[test]
fn qinq_to_vlan_ipv4_and_ipv6_generic() {
    run_encap(
        "q",
        ModeRequest::Generic,
        Encap::QinQ {
            outer: 100,
            inner: 7,
        },
        Encap::Vlan(42),
    );
}

#[test]
fn backend_for_falls_back_to_software_with_a_message() {
    let cfg = XdpOffloadConfig::default();
    let (_backend, msgs) = nft_xdp::offload::backend_for(&cfg);
    if !nft_xdp::built() {
        assert_eq!(msgs.len(), 1);
        assert!(msgs[0].contains(nft_xdp::NOT_BUILT), "{msgs:?}");
    } else if is_root() {
        // Loaded, no devices: nothing to say.
        assert!(msgs.is_empty(), "{msgs:?}");
    } else {
        assert_eq!(msgs.len(), 1);
        assert!(msgs[0].contains("flows stay in software"), "{msgs:?}");
    }
}

#[test]
fn a_boxed_backend_drives_the_flowtable() {
    if !runnable() {
        return;
    }
    let topo = Topo::new("b");
    let cfg = XdpOffloadConfig {
        devices: vec![(LAN, "r0".into()), (WAN, "r1".into())],
        mode: ModeRequest::Generic,
        ..XdpOffloadConfig::default()
    };
    let (backend, msgs) = in_ns(&topo.r, || {
        let (b, m) = nft_xdp::offload::backend_for(&cfg);
        (b, m)
    });
    assert_eq!(
        msgs,
        ["r0: XDP offload (generic)", "r1: XDP offload (generic)"]
    );
    let mut ct = Table::new(CtConfig::default());
    let mut ft: Flowtable<Box<dyn nft_flowtable::OffloadBackend + Send>> = Flowtable::with_backend(
        Config {
            devices: vec![LAN, WAN],
            hw_offload: true,
            ..Config::default()
        },
        backend,
    );
    let now = Duration::from_secs(3);
    let f = udp(Client, 43000, 53, b"q");
    let meta = parse_frame(&f).unwrap();
    let Outcome::Tracked { id, .. } = ct.process(&meta, 0, now) else {
        panic!("not tracked")
    };
    ct.masquerade(id, R_WAN.into(), 2, &NatRange::default())
        .unwrap();
    ct.confirm(id, now).unwrap();
    let a = admission(
        &meta,
        id,
        LAN,
        egress(LAN, Encap::None),
        egress(WAN, Encap::None),
    );
    let fid = ft.admit(&mut ct, &a, now).expect("admitted");
    assert!(!ft.info(fid, now).unwrap().hw);
    ft.gc(&mut ct, now);
    assert!(ft.info(fid, now).unwrap().hw);
    assert_eq!(ft.stats().hw_added, 1);
}

#[test]
fn the_bench_programs_forward_every_injected_frame() {
    if !runnable() {
        return;
    }
    let topo = Topo::new("t");
    let server = in_ns(&topo.s, || packet_socket("s0"));
    let mut backend = offload(&topo, ModeRequest::Native);
    attach_peers(&topo, &mut backend, &["s0"]);
    let f = udp(Client, 44000, 9, &[0; 18]);
    assert_eq!(f.len(), 60);
    backend.set_bench_frame(&f).unwrap();
    let mut r = Router::new(backend);
    let now = Duration::from_secs(1);
    let (_, _, fid) = r.udp_flow(&f, 9, b"a", now);
    let (_, expect) = r.software(LAN, &f, now);
    r.ft.gc(&mut r.ct, now);
    assert!(r.ft.info(fid, now).unwrap().hw);
    let r0 = in_ns(&topo.r, || nft_xdp::offload::ifindex_of("r0"));
    // The frames are written back before each run: every one is forwarded, all alike.
    let backend = r.ft.backend();
    in_ns(&topo.r, || {
        backend.test_run_live("offload_bench", &f, r0, 100)
    })
    .unwrap();
    let got = recv_ipv4(&server, Duration::from_millis(300));
    assert_eq!(got.len(), 100);
    assert!(got.iter().all(|g| g == &expect));
    assert_eq!(r.reason("forwarded"), 100);
    assert_eq!(r.reason("miss"), 0);
}

#[test]
fn auto_mode_takes_veths_in_generic_mode() {
    if !runnable() {
        return;
    }
    let topo = Topo::new("a");
    assert_eq!(
        in_ns(&topo.r, || nft_xdp::offload::driver_of("r0")).as_deref(),
        Some("veth")
    );
    let backend = offload(&topo, ModeRequest::Auto);
    for a in backend.attachments() {
        assert_eq!(a.mode, Some(nft_xdp::offload::Mode::Generic), "{a:?}");
    }
}
