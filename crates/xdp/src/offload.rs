//! `flags offload`: an [`OffloadBackend`] that forwards the flowtable's flows in the kernel,
//! with the XDP program `bpf/offload.c` on the flowtable's devices.
//!
//! As the kernel's `nf_flow_offload_work` queue does, [`add`](OffloadBackend::add) only
//! queues: entries are written by [`XdpOffload::push`] (which [`poll`](OffloadBackend::poll)
//! calls, from the flowtable's GC every second), so a flow's first packets stay in software.
//! A push that cannot be done (a device without XDP, a `meta mark` to replay, which XDP cannot
//! give the stack, a full map) leaves the flow in software and is counted and reported as
//! [`BackendEvent::Failed`]. `poll` then reads the per-CPU counters and reports, per flow,
//! what the program forwarded since the last call and when it last did, which keeps the flow
//! alive in the flowtable. [`remove`](OffloadBackend::remove) deletes the entries at once.
//!
//! # Devices
//!
//! Each port of the flowtable is a Linux device (the parent device for a VLAN or PPPoE port:
//! the program sees and pushes the tags itself). The program goes on in native (driver) mode,
//! else in generic mode (a veth: generic, see below, unless native is asked for); a device that takes neither is left to software with a warning in
//! [`XdpOffload::attachments`], not an error, as OpenWrt does for devices without offload.
//!
//! # veth
//!
//! A veth only takes frames redirected into it (`ndo_xdp_xmit`, native mode) when the far end
//! of the pair has an XDP program or GRO on; otherwise the kernel drops them. The far end is
//! usually in another namespace (a container, a test), out of this process's reach:
//! [`XdpOffload::attach_peer`] puts the trivial `offload_peer` program (XDP_PASS) on a device
//! of the calling thread's namespace for that, or turn GRO on there (`ethtool -K peer gro on`).
//! Generic mode has no such rule.
//!
//! # Time
//!
//! The program stamps packets with `bpf_ktime_get_ns` (CLOCK_MONOTONIC). The flowtable counts
//! in the caller's `now`; [`XdpOffload::set_clock`] gives the pair (`now`, monotonic time) so
//! that last-used times come back in the caller's time. Without it the two are taken to be the
//! same clock.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aya::maps::{
    DevMapHash, HashMap as BpfHashMap, Map, MapData, MapError, PerCpuArray, PerCpuValues,
    ProgramArray,
};
use aya::programs::{ProgramFd, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use nft_flowtable::{BackendEvent, DirSpec, Encap, FlowId, FlowSpec, OffloadBackend, Port};
use nft_wire::IpAddr;

use crate::offload_layout::*;

/// The built program, when clang was there at build time.
#[cfg(xdp_built)]
pub static OFFLOAD_OBJECT: Option<&[u8]> =
    Some(aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/offload.o")) as &[u8]);
#[cfg(not(xdp_built))]
pub static OFFLOAD_OBJECT: Option<&[u8]> = None;

/// Why the backend could not be made. Callers print the message and use software.
#[derive(Debug, thiserror::Error)]
pub enum XdpOffloadError {
    #[error("{}", crate::NOT_BUILT)]
    NotBuilt,
    #[error("loading the XDP offload program: {0}")]
    Load(String),
    /// What runs after the program on a device could not be set ([`Chain::set`]).
    #[error("XDP offload chain: {0}")]
    Chain(String),
}

/// How the program runs on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In the driver (`xdpdrv`).
    Native,
    /// On the socket buffer (`xdpgeneric`): any device, slower.
    Generic,
}

impl core::fmt::Display for Mode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Mode::Native => "native",
            Mode::Generic => "generic",
        })
    }
}

/// Which modes to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModeRequest {
    /// Native, else generic.
    #[default]
    Auto,
    Native,
    Generic,
}

/// What the backend is made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpOffloadConfig {
    /// Each flowtable port and the Linux device it is.
    pub devices: Vec<(Port, String)>,
    /// Entries of the flow map (two per flow).
    pub max_entries: u32,
    pub mode: ModeRequest,
}

impl Default for XdpOffloadConfig {
    fn default() -> XdpOffloadConfig {
        XdpOffloadConfig {
            devices: vec![],
            max_entries: DEFAULT_MAX_FLOWS,
            mode: ModeRequest::Auto,
        }
    }
}

/// One device of the flowtable and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub port: Port,
    pub device: String,
    pub ifindex: u32,
    /// `None`: the device took no XDP program; its flows stay in software.
    pub mode: Option<Mode>,
    /// Why not, for the log.
    pub warning: Option<String>,
}

/// The backend's own counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XdpOffloadStats {
    /// Flows written to the map.
    pub pushed: u64,
    /// Flows left in software because the map was full.
    pub map_full: u64,
    /// Flows left in software for another reason (device without XDP, `meta mark`, ...).
    pub failed: u64,
    /// Flows taken out of the map.
    pub removed: u64,
    /// Flows in the map now.
    pub active: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    keys: [OffloadKey; 2],
    slots: [u32; 2],
    /// Totals already reported, per direction.
    packets: [u64; 2],
    bytes: [u64; 2],
    last_ns: u64,
}

/// The XDP flow-offload backend.
pub struct XdpOffload {
    ebpf: Ebpf,
    flows: BpfHashMap<MapData, OffloadKey, OffloadValue>,
    stats_map: PerCpuArray<MapData, OffloadStats>,
    /// `offload_stats` again, for `BPF_MAP_LOOKUP_BATCH`, which aya 0.14 does not have.
    stats_fd: OwnedFd,
    /// [`poll`](OffloadBackend::poll) reads the counters in one batch (default) or one
    /// lookup per direction.
    batch: bool,
    /// Per slot, summed over CPUs (batch reads), and the raw buffers they come from.
    sums: Vec<(u64, u64, u64)>,
    batch_keys: Vec<u32>,
    batch_values: Vec<u8>,
    reasons: PerCpuArray<MapData, u64>,
    tx: DevMapHash<MapData>,
    chain: Option<Chain>,
    attachments: Vec<Attachment>,
    ifindex: HashMap<Port, u32>,
    queue: VecDeque<(FlowId, FlowSpec)>,
    entries: HashMap<FlowId, Entry>,
    free_slots: Vec<u32>,
    results: Vec<BackendEvent>,
    stats: XdpOffloadStats,
    cpus: usize,
    /// (caller's now, monotonic ns) at the last `set_clock`.
    clock: Option<(Duration, u64)>,
    /// The steering programs' links this program took over ([`take_over`](Self::take_over)):
    /// dropped with it, which detaches it from those devices.
    adopted: Vec<aya::programs::xdp::XdpLink>,
}

/// The error and its sources, one line (the verifier's log is in a source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

fn err<E: std::error::Error>(e: E) -> XdpOffloadError {
    XdpOffloadError::Load(chain(&e))
}

fn chain_msg(e: &dyn std::error::Error) -> String {
    chain(e)
}

/// A device's index in the calling thread's network namespace, 0 when there is none.
pub fn ifindex_of(name: &str) -> u32 {
    nix::net::if_::if_nametoindex(name).unwrap_or(0)
}

/// The driver of a device of the calling thread's namespace (`ethtool -i`), if it says.
pub fn driver_of(name: &str) -> Option<String> {
    crate::ethtool::driver(name).ok()
}

/// Reads CLOCK_MONOTONIC, the clock `bpf_ktime_get_ns` counts in, for
/// [`XdpOffload::set_clock`].
pub fn monotonic_now() -> Duration {
    // CLOCK_MONOTONIC cannot fail on Linux
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(Duration::from)
        .unwrap_or_default()
}

fn addr16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
        IpAddr::V6(v) => v.octets(),
    }
}

/// Adds the RFC 1624 terms of 16-bit words changing from `old` to `new`; nothing for an
/// unchanged field, as the software fast path does, so both give the same checksums.
fn change(acc: &mut u64, old: &[u8], new: &[u8]) {
    if old == new {
        return;
    }
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        *acc += u64::from(!u16::from_be_bytes([o[0], o[1]]));
        *acc += u64::from(u16::from_be_bytes([n[0], n[1]]));
    }
}

fn encap_code(e: Encap) -> (u8, [u16; 2]) {
    match e {
        Encap::None => (ENCAP_NONE, [0, 0]),
        Encap::Vlan(id) => (ENCAP_VLAN, [id & 0x0fff, 0]),
        Encap::QinQ { outer, inner } => (ENCAP_QINQ, [outer & 0x0fff, inner & 0x0fff]),
        Encap::Pppoe(s) => (ENCAP_PPPOE, [s, 0]),
    }
}

/// The map key of a direction.
pub fn key_of(d: &DirSpec, ifindex: u32) -> OffloadKey {
    OffloadKey {
        src: addr16(d.tuple.src),
        dst: addr16(d.tuple.dst),
        sport: d.tuple.sport.to_be(),
        dport: d.tuple.dport.to_be(),
        ifindex,
        proto: d.tuple.proto,
        v6: u8::from(d.tuple.src.is_ipv6()),
        pad: [0; 2],
    }
}

/// The rewrite plan of direction `d` of `flow` (the other direction gives the link header
/// its frames must arrive with), leaving through `out_ifindex`, counting in `slot`.
pub fn value_of(flow: &FlowSpec, d: usize, out_ifindex: u32, slot: u32) -> OffloadValue {
    let this = &flow.dirs[d & 1];
    let back = &flow.dirs[(d & 1) ^ 1];
    let t = &this.tuple;
    let r = &this.rewritten;
    let v6 = t.src.is_ipv6();
    let (src, dst, nsrc, ndst) = (addr16(t.src), addr16(t.dst), addr16(r.src), addr16(r.dst));
    let alen = if v6 { 0 } else { 12 };
    let mut addrs = 0u64;
    change(&mut addrs, &src[alen..], &nsrc[alen..]);
    change(&mut addrs, &dst[alen..], &ndst[alen..]);
    let mut l4 = addrs;
    change(&mut l4, &t.sport.to_be_bytes(), &r.sport.to_be_bytes());
    change(&mut l4, &t.dport.to_be_bytes(), &r.dport.to_be_bytes());
    // The TTL/protocol word loses 0x0100: its term is constant for any TTL above 1.
    let ip = addrs + 0xfeff;
    let nat = src != nsrc || dst != ndst || t.sport != r.sport || t.dport != r.dport;
    let e = &this.egress;
    let (out_hdr, out_hl) = (
        e.encap.link_header(e.dst_mac, e.src_mac, v6),
        e.encap.header_len() as u8,
    );
    let (in_encap, in_tag) = encap_code(back.egress.encap);
    let mut flags = 0;
    if nat {
        flags |= F_NAT;
    }
    if v6 {
        flags |= F_V6;
    }
    OffloadValue {
        new_src: nsrc,
        new_dst: ndst,
        new_sport: r.sport.to_be(),
        new_dport: r.dport.to_be(),
        ip_delta: nft_wire::checksum::fold(ip),
        l4_delta: nft_wire::checksum::fold(l4),
        out_ifindex,
        stats_slot: slot,
        mtu: e.mtu,
        flags,
        dscp: this.mangles.dscp.map_or(u8::MAX, |d| d & 0x3f),
        in_mac: back.egress.src_mac,
        in_encap,
        out_hl,
        in_tag,
        out_hdr,
        out_encap: encap_code(e.encap).0,
        pad: 0,
    }
}

impl XdpOffload {
    /// Loads the program, attaches it to the devices (native, else generic; a device that
    /// takes neither is reported in [`attachments`](Self::attachments) and its flows stay in
    /// software) and fills the egress device map. Without the built object the error's
    /// message is [`crate::NOT_BUILT`].
    pub fn new(cfg: &XdpOffloadConfig) -> Result<XdpOffload, XdpOffloadError> {
        let mut me = XdpOffload::load(cfg)?;
        me.attach_devices(cfg);
        Ok(me)
    }

    /// What [`new`](Self::new) does after [`load`](Self::load): attaches the loaded program to
    /// `cfg.devices` in `cfg.mode` (a device that takes neither mode is reported in
    /// [`attachments`](Self::attachments)). The verifier ran in `load`: this is quick, so a
    /// caller that must hold a lock for the switch can load before taking it.
    pub fn attach_devices(&mut self, cfg: &XdpOffloadConfig) {
        for (port, dev) in &cfg.devices {
            let a = self.attach(*port, dev, cfg.mode);
            if a.mode.is_some() {
                self.ifindex.insert(*port, a.ifindex);
            }
            self.attachments.push(a);
        }
    }

    /// Loads the program and its maps and attaches it nowhere (`cfg.devices` and `cfg.mode`
    /// are not used): [`take_over`](Self::take_over) then puts it in front of the AF_XDP
    /// steering programs already on the devices.
    pub fn load(cfg: &XdpOffloadConfig) -> Result<XdpOffload, XdpOffloadError> {
        let obj = OFFLOAD_OBJECT.ok_or(XdpOffloadError::NotBuilt)?;
        let max = cfg.max_entries.max(2);
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("offload_flows", max)
            .map_max_entries("offload_stats", max)
            .load(obj)
            .map_err(err)?;
        let take = |ebpf: &mut Ebpf, name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| XdpOffloadError::Load(format!("map {name} missing")))
        };
        let flows = BpfHashMap::try_from(take(&mut ebpf, "offload_flows")?).map_err(err)?;
        let stats_data = take(&mut ebpf, "offload_stats")?;
        let stats_fd = match &stats_data {
            Map::PerCpuArray(d) => d.fd().as_fd().try_clone_to_owned().map_err(err)?,
            _ => {
                return Err(XdpOffloadError::Load(
                    "offload_stats: not a per-CPU array".into(),
                ))
            }
        };
        let stats_map = PerCpuArray::try_from(stats_data).map_err(err)?;
        let reasons = PerCpuArray::try_from(take(&mut ebpf, "offload_reasons")?).map_err(err)?;
        let tx = DevMapHash::try_from(take(&mut ebpf, "offload_tx")?).map_err(err)?;
        let chain = Chain {
            progs: ProgramArray::try_from(take(&mut ebpf, "offload_next")?).map_err(err)?,
            slots: BpfHashMap::try_from(take(&mut ebpf, "offload_next_slot")?).map_err(err)?,
            used: HashMap::new(),
        };
        for name in [
            "offload",
            "offload_peer",
            "offload_bench",
            "offload_bench_kernel",
        ] {
            let p: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or_else(|| XdpOffloadError::Load(format!("program {name} missing")))?
                .try_into()
                .map_err(err)?;
            crate::load::load_retrying(p).map_err(err)?;
        }
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| err(e))?;
        let me = XdpOffload {
            ebpf,
            flows,
            stats_map,
            stats_fd,
            batch: true,
            sums: vec![],
            batch_keys: vec![],
            batch_values: vec![],
            reasons,
            tx,
            chain: Some(chain),
            attachments: vec![],
            ifindex: HashMap::new(),
            queue: VecDeque::new(),
            entries: HashMap::new(),
            free_slots: (0..max).rev().collect(),
            results: vec![],
            stats: XdpOffloadStats::default(),
            cpus,
            clock: None,
            adopted: vec![],
        };
        Ok(me)
    }

    /// Puts the program on `steer`'s device (flowtable port `port`) in front of the steering
    /// program attached there, which becomes what it runs on the frames it does not forward
    /// (`chain`, this backend's [`Chain`], taken with [`take_chain`](Self::take_chain)). For a
    /// reload under `--io af_xdp`, while the sockets receive.
    ///
    /// The steering program first goes into `chain`; then the device's XDP link is switched
    /// from the steering program to this one by `BPF_LINK_UPDATE` with `BPF_F_REPLACE` (one
    /// pointer swap in the kernel: each frame runs either the steering program alone, before,
    /// or this one and then, unless it forwards the frame, the steering program, after; none
    /// is lost or seen twice). The link moves to this backend: dropping it detaches the
    /// device. The mode is the steering program's.
    ///
    /// On failure (the steering program already runs behind another offload, is not on a
    /// link, or the kernel refuses the switch) the device keeps its steering program alone,
    /// as it was, and the returned attachment says why: its flows stay in software.
    ///
    /// A program on a link keeps its mode: `req` must allow the steering program's, and
    /// `Auto` does not take a veth in native mode (a frame redirected into a veth in native
    /// mode is dropped unless its far end has an XDP program; `attach` takes veths in generic
    /// mode for the same reason).
    pub fn take_over(
        &mut self,
        port: Port,
        steer: &mut crate::Steer,
        chain: &mut Chain,
        req: ModeRequest,
    ) -> Attachment {
        let ifindex = steer.ifindex();
        let mut a = Attachment {
            port,
            device: steer.device().to_string(),
            ifindex,
            mode: None,
            warning: None,
        };
        let r = match (req, steer.mode()) {
            (ModeRequest::Native, Mode::Generic) | (ModeRequest::Generic, Mode::Native) => {
                Err(format!(
                    "it runs in {} mode, which a program on its link keeps",
                    steer.mode()
                ))
            }
            (ModeRequest::Auto, Mode::Native)
                if driver_of(steer.device()).as_deref() == Some("veth") =>
            {
                Err("native mode on a veth, whose far end drops redirected frames unless it has an XDP program; `--xdp-mode native` if it has".into())
            }
            _ => self.take_over_inner(steer, chain),
        };
        match r {
            Ok(()) => {
                a.mode = Some(steer.mode());
                self.ifindex.insert(port, ifindex);
            }
            Err(why) => {
                a.warning = Some(format!(
                    "{}: cannot put the XDP offload in front of its AF_XDP steering ({why}); its flows stay in software",
                    steer.device()
                ));
            }
        }
        self.attachments.push(a.clone());
        a
    }

    fn take_over_inner(
        &mut self,
        steer: &mut crate::Steer,
        chain: &mut Chain,
    ) -> Result<(), String> {
        if steer.chained() {
            return Err("it already runs behind another XDP offload".into());
        }
        let ifindex = steer.ifindex();
        let steer_id = steer.prog_id()?;
        chain
            .set(ifindex, steer.prog_fd()?)
            .map_err(|e| e.to_string())?;
        let switched = (|| {
            self.tx
                .insert(ifindex, ifindex, None, 0)
                .map_err(|e| format!("egress map: {}", chain_msg(&e)))?;
            let p: &Xdp = self
                .ebpf
                .program("offload")
                .ok_or("program offload missing")?
                .try_into()
                .map_err(|e: aya::programs::ProgramError| chain_msg(&e))?;
            let fd = p.fd().map_err(|e| chain_msg(&e))?;
            replace_link_prog(steer_id, steer.prog_fd()?, fd)
        })();
        if let Err(e) = switched {
            chain.clear(ifindex);
            let _ = self.tx.remove(ifindex);
            return Err(e);
        }
        // the link runs this program now: it is ours, and the steering program is chained
        if let Some(link) = steer.give_link() {
            self.adopted.push(link);
        }
        Ok(())
    }

    fn attach(&mut self, port: Port, dev: &str, req: ModeRequest) -> Attachment {
        let ifindex = ifindex_of(dev);
        let mut a = Attachment {
            port,
            device: dev.to_string(),
            ifindex,
            mode: None,
            warning: None,
        };
        if ifindex == 0 {
            a.warning = Some(format!("{dev}: no such device; its flows stay in software"));
            return a;
        }
        // A frame redirected into a veth in native mode is dropped unless the far end has an
        // XDP program, which a router cannot in general put there: `Auto` takes veths in
        // generic mode (`Native` and `attach_peer` get native).
        let veth = driver_of(dev).as_deref() == Some("veth");
        let tries: &[Mode] = match req {
            ModeRequest::Auto if veth => &[Mode::Generic],
            ModeRequest::Auto => &[Mode::Native, Mode::Generic],
            ModeRequest::Native => &[Mode::Native],
            ModeRequest::Generic => &[Mode::Generic],
        };
        let mut why = vec![];
        for &m in tries {
            let xm = match m {
                Mode::Native => XdpMode::Driver,
                Mode::Generic => XdpMode::Skb,
            };
            let r = match self.ebpf.program_mut("offload") {
                Some(p) => match <&mut Xdp>::try_from(p) {
                    Ok(x) => x
                        .attach_to_if_index(ifindex, xm)
                        .map(|_| ())
                        .map_err(|e| chain(&e)),
                    Err(e) => Err(e.to_string()),
                },
                None => Err("program missing".into()),
            };
            match r {
                Ok(()) => {
                    if let Err(e) = self.tx.insert(ifindex, ifindex, None, 0) {
                        why.push(format!("egress map: {e}"));
                        break;
                    }
                    a.mode = Some(m);
                    return a;
                }
                Err(e) => why.push(format!("{m}: {e}")),
            }
        }
        a.warning = Some(format!(
            "{dev}: cannot take the XDP offload program ({}); its flows stay in software",
            why.join("; ")
        ));
        a
    }

    /// Puts the `offload_peer` program (XDP_PASS) on `dev`, in the calling thread's network
    /// namespace: the far end of a veth the offload program redirects into needs one.
    pub fn attach_peer(&mut self, dev: &str) -> Result<(), XdpOffloadError> {
        let ifindex = ifindex_of(dev);
        if ifindex == 0 {
            return Err(XdpOffloadError::Load(format!("{dev}: no such device")));
        }
        self.attach_peer_ifindex(ifindex)
    }

    /// [`attach_peer`](Self::attach_peer) by interface index.
    pub fn attach_peer_ifindex(&mut self, ifindex: u32) -> Result<(), XdpOffloadError> {
        let p: &mut Xdp = self
            .ebpf
            .program_mut("offload_peer")
            .ok_or_else(|| XdpOffloadError::Load("program offload_peer missing".into()))?
            .try_into()
            .map_err(err)?;
        p.attach_to_if_index(ifindex, XdpMode::Driver)
            .or_else(|_| p.attach_to_if_index(ifindex, XdpMode::Skb))
            .map(|_| ())
            .map_err(err)
    }

    /// The table of what runs after the program on each device (see [`Chain`]), taken once:
    /// `None` the second time. Untaken, it is empty and the program passes to the stack.
    pub fn take_chain(&mut self) -> Option<Chain> {
        self.chain.take()
    }

    /// The devices and the mode the program runs in on each.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    pub fn stats(&self) -> XdpOffloadStats {
        XdpOffloadStats {
            active: self.entries.len() as u64,
            ..self.stats
        }
    }

    /// The caller's time `now` is monotonic time `mono` (see the module documentation).
    pub fn set_clock(&mut self, now: Duration, mono: Duration) {
        self.clock = Some((now, u64::try_from(mono.as_nanos()).unwrap_or(u64::MAX)));
    }

    /// Flows queued and not yet pushed.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Whether flow `id` is in the map.
    pub fn contains(&self, id: FlowId) -> bool {
        self.entries.contains_key(&id)
    }

    /// What the program did with frames so far, by reason (`forwarded`, `miss`, ...), summed
    /// over CPUs.
    pub fn reasons(&self) -> Vec<(&'static str, u64)> {
        REASONS
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let n = self
                    .reasons
                    .get(&(i as u32), 0)
                    .map(|v| v.iter().sum())
                    .unwrap_or(0);
                (*name, n)
            })
            .collect()
    }

    /// Writes the queued flows into the map. Each gives [`BackendEvent::Added`] or
    /// [`BackendEvent::Failed`] at the next [`poll`](OffloadBackend::poll).
    pub fn push(&mut self) {
        while let Some((id, flow)) = self.queue.pop_front() {
            let ev = match self.push_one(id, &flow) {
                Ok(()) => {
                    self.stats.pushed += 1;
                    BackendEvent::Added(id)
                }
                Err(full) => {
                    if full {
                        self.stats.map_full += 1;
                    } else {
                        self.stats.failed += 1;
                    }
                    BackendEvent::Failed(id)
                }
            };
            self.results.push(ev);
        }
    }

    /// `Err(true)`: the map is full; `Err(false)`: another reason.
    fn push_one(&mut self, id: FlowId, flow: &FlowSpec) -> Result<(), bool> {
        if self.entries.contains_key(&id) {
            return Ok(());
        }
        if flow.dirs.iter().any(|d| d.mangles.meta_mark.is_some()) {
            return Err(false);
        }
        let mut ins = [0u32; 2];
        let mut outs = [0u32; 2];
        for d in 0..2 {
            ins[d] = *self.ifindex.get(&flow.dirs[d].ingress).ok_or(false)?;
            outs[d] = *self.ifindex.get(&flow.dirs[d].egress.port).ok_or(false)?;
        }
        if self.free_slots.len() < 2 {
            return Err(true);
        }
        let slots = [
            self.free_slots.pop().ok_or(true)?,
            self.free_slots.pop().ok_or(true)?,
        ];
        let keys = [key_of(&flow.dirs[0], ins[0]), key_of(&flow.dirs[1], ins[1])];
        let mut result = Ok(());
        for d in 0..2 {
            if let Ok(z) = PerCpuValues::try_from(vec![OffloadStats::default(); self.cpus]) {
                let _ = self.stats_map.set(slots[d], z, 0);
            }
            let v = value_of(flow, d, outs[d], slots[d]);
            if let Err(e) = self.flows.insert(keys[d], v, 0) {
                let full = matches!(&e, MapError::SyscallError(s)
                    if matches!(s.io_error.raw_os_error(), Some(libc::E2BIG | libc::ENOMEM | libc::ENOSPC)));
                for k in &keys[..d] {
                    let _ = self.flows.remove(k);
                }
                result = Err(full);
                break;
            }
        }
        if result.is_err() {
            self.free_slots.extend_from_slice(&slots);
            return result;
        }
        self.entries.insert(
            id,
            Entry {
                keys,
                slots,
                packets: [0; 2],
                bytes: [0; 2],
                last_ns: 0,
            },
        );
        Ok(())
    }

    fn to_caller_time(&self, ns: u64) -> Duration {
        match self.clock {
            // `ns` may be before or after the pair was taken.
            Some((now, mono)) if ns >= mono => now.saturating_add(Duration::from_nanos(ns - mono)),
            Some((now, mono)) => now.saturating_sub(Duration::from_nanos(mono - ns)),
            None => Duration::from_nanos(ns),
        }
    }

    /// Per direction: packets, bytes, last-used ns, summed (latest) over CPUs.
    fn read_slot(&self, slot: u32) -> (u64, u64, u64) {
        if self.batch {
            if let Some(s) = self.sums.get(slot as usize) {
                return *s;
            }
        }
        match self.stats_map.get(&slot, 0) {
            Ok(v) => v.iter().fold((0, 0, 0), |(p, b, t), s| {
                (p + s.packets, b + s.bytes, t.max(s.last_used_ns))
            }),
            Err(_) => (0, 0, 0),
        }
    }

    /// How [`poll`](OffloadBackend::poll) reads the per-flow counters: `true` (the default),
    /// slots `0..=highest in use` of `offload_stats` in one `BPF_MAP_LOOKUP_BATCH` call;
    /// `false`, one `BPF_MAP_LOOKUP_ELEM` per direction of each flow (two syscalls a flow).
    /// For measurements (`examples/offload_poll.rs`).
    pub fn set_batch_stats(&mut self, batch: bool) {
        self.batch = batch;
        self.sums.clear();
    }

    /// Reads slots `0..n` of `offload_stats` into `sums` with as few `BPF_MAP_LOOKUP_BATCH`
    /// calls as the kernel needs (one, normally). Slots are handed out lowest first, so `n`
    /// stays close to the number of directions in the map. On an error `sums` is emptied and
    /// [`read_slot`](Self::read_slot) falls back to one lookup per slot.
    fn read_slots_batch(&mut self, n: u32) {
        self.sums.clear();
        if n == 0 {
            return;
        }
        // per CPU, each value is rounded up to 8 bytes (it already is: three u64)
        let vsize = core::mem::size_of::<OffloadStats>();
        let elem = vsize * self.cpus;
        self.batch_keys.resize(n as usize, 0);
        self.batch_values.resize(n as usize * elem, 0);
        let mut token = 0u32;
        let mut done = 0usize;
        let mut first = true;
        while done < n as usize {
            let mut attr = BatchAttr {
                in_batch: if first {
                    0
                } else {
                    &token as *const u32 as u64
                },
                out_batch: &mut token as *mut u32 as u64,
                keys: self.batch_keys[done..].as_mut_ptr() as u64,
                values: self.batch_values[done * elem..].as_mut_ptr() as u64,
                count: (n as usize - done) as u32,
                map_fd: self.stats_fd.as_raw_fd() as u32,
                elem_flags: 0,
                flags: 0,
            };
            first = false;
            // SAFETY: BPF_MAP_LOOKUP_BATCH with an attribute of the kernel's layout; `keys`
            // and `values` point into buffers with room for `count` keys (u32) and `count`
            // values of `cpus` times the value size, `in_batch`/`out_batch` at a live u32;
            // all outlive the call. The kernel writes `count` back into `attr`.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_LOOKUP_BATCH,
                    &mut attr as *mut BatchAttr,
                    core::mem::size_of::<BatchAttr>(),
                )
            };
            let got = attr_count(&attr) as usize;
            let end =
                r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT);
            if r != 0 && !end {
                self.sums.clear();
                return;
            }
            done += got;
            if end || got == 0 {
                break;
            }
        }
        self.sums.reserve(done);
        for i in 0..done {
            let v = &self.batch_values[i * elem..(i + 1) * elem];
            let mut s = (0u64, 0u64, 0u64);
            for c in 0..self.cpus {
                let at = c * vsize;
                let w = |k: usize| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&v[at + 8 * k..at + 8 * k + 8]);
                    u64::from_ne_bytes(b)
                };
                s = (s.0 + w(0), s.1 + w(1), s.2.max(w(2)));
            }
            self.sums.push(s);
        }
    }
}

/// What runs after the offload program on each of its devices: the frames it does not
/// forward (misses, TCP control segments, anything it passes) go to the XDP program set for
/// their ingress device, through the `offload_next` tail call, instead of straight to the
/// stack. That is how the AF_XDP steering program shares a device with the offload: the
/// device takes one XDP program, the offload, which hands the rest to the steering.
///
/// Taken from the backend with [`XdpOffload::take_chain`], so that its owner (the AF_XDP
/// side) can keep it while the backend lives in the flowtable. Dropping it (or
/// [`clear`](Self::clear)) sends the frames to the stack again: the kernel empties a program
/// array whose last file descriptor closes.
pub struct Chain {
    progs: ProgramArray<MapData>,
    slots: BpfHashMap<MapData, u32, u32>,
    /// ifindex -> slot of `offload_next`.
    used: HashMap<u32, u32>,
}

/// `OFFLOAD_MAX_NEXT`: devices a [`Chain`] holds.
pub const MAX_NEXT: u32 = 256;

impl Chain {
    /// Frames the offload program passes on device `ifindex` go to `prog` (an XDP program,
    /// loaded, not attached). Replaces what was set for the device.
    pub fn set(&mut self, ifindex: u32, prog: &ProgramFd) -> Result<(), XdpOffloadError> {
        let slot = match self.used.get(&ifindex) {
            Some(&s) => s,
            None => (0..MAX_NEXT)
                .find(|s| !self.used.values().any(|u| u == s))
                .ok_or_else(|| {
                    XdpOffloadError::Chain(format!(
                        "more than {MAX_NEXT} devices (offload_next has {MAX_NEXT} slots); ifindex {ifindex} is not chained"
                    ))
                })?,
        };
        self.progs.set(slot, prog, 0).map_err(err)?;
        if let Err(e) = self.slots.insert(ifindex, slot, 0) {
            let _ = self.progs.clear_index(&slot);
            return Err(err(e));
        }
        self.used.insert(ifindex, slot);
        Ok(())
    }

    /// Frames the offload program passes on `ifindex` go to the stack again.
    pub fn clear(&mut self, ifindex: u32) {
        if let Some(slot) = self.used.remove(&ifindex) {
            let _ = self.slots.remove(&ifindex);
            let _ = self.progs.clear_index(&slot);
        }
    }

    /// The slot of `offload_next` device `ifindex` has.
    pub fn slot(&self, ifindex: u32) -> Option<u32> {
        self.used.get(&ifindex).copied()
    }

    /// The slot the program finds for `ifindex` (`offload_next_slot`, read from the kernel).
    pub fn kernel_slot(&self, ifindex: u32) -> Option<u32> {
        self.slots.get(&ifindex, 0).ok()
    }

    /// The devices that have a next program.
    pub fn devices(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.used.keys().copied().collect();
        v.sort_unstable();
        v
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        for i in self.devices() {
            self.clear(i);
        }
    }
}

/// `union bpf_attr` for `BPF_PROG_TEST_RUN` (linux/bpf.h).
#[repr(C, align(8))]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// `struct xdp_md`, the context given to a test run.
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// `union bpf_attr` for the `BPF_MAP_*_BATCH` commands (linux/bpf.h).
#[repr(C, align(8))]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// What the kernel wrote back into `count` (a volatile read: the write came through a raw
/// pointer the compiler did not see).
fn attr_count(a: &BatchAttr) -> u32 {
    // SAFETY: `a.count` is a valid, aligned u32 inside a live struct.
    unsafe { core::ptr::read_volatile(&a.count) }
}
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

impl XdpOffload {
    /// The frame `offload_bench` and `offload_bench_kernel` write back before each run (the
    /// first 60 bytes of `frame`).
    pub fn set_bench_frame(&mut self, frame: &[u8]) -> Result<(), XdpOffloadError> {
        let mut m: aya::maps::Array<&mut MapData, [u8; 64]> = aya::maps::Array::try_from(
            self.ebpf
                .map_mut("offload_bench_frame")
                .ok_or_else(|| XdpOffloadError::Load("map offload_bench_frame missing".into()))?,
        )
        .map_err(err)?;
        let mut v = [0u8; 64];
        let n = frame.len().min(64);
        v[..n].copy_from_slice(&frame[..n]);
        m.set(0, v, 0).map_err(err)
    }

    /// Runs program `prog` (`offload_bench`: the offload; `offload_bench_kernel`: pass to the
    /// stack; both write the bench frame back first) on
    /// `repeat` copies of `frame` as if they arrived on `ingress_ifindex`, with the kernel's
    /// live-frames test mode: redirected frames are really sent, passed ones go up the stack.
    /// One CPU, the caller's, does the whole path; no generator limits the rate. For
    /// measurements (examples/offload_capacity.rs, which times the call).
    pub fn test_run_live(
        &self,
        prog: &str,
        frame: &[u8],
        ingress_ifindex: u32,
        repeat: u32,
    ) -> Result<(), XdpOffloadError> {
        let p: &Xdp = self
            .ebpf
            .program(prog)
            .ok_or_else(|| XdpOffloadError::Load(format!("program {prog} missing")))?
            .try_into()
            .map_err(err)?;
        let fd = p.fd().map_err(err)?.as_fd().as_raw_fd();
        test_run_live_fd(fd, frame, ingress_ifindex, repeat).map_err(XdpOffloadError::Load)
    }
}

/// `BPF_LINK_UPDATE`, `BPF_LINK_GET_FD_BY_ID` (linux/bpf.h).
const BPF_LINK_UPDATE: libc::c_long = 29;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
const BPF_F_REPLACE: u32 = 1 << 2;

/// `union bpf_attr` for `BPF_LINK_UPDATE`.
#[repr(C, align(8))]
#[derive(Default)]
struct LinkUpdateAttr {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}

/// `union bpf_attr` for `BPF_LINK_GET_FD_BY_ID`.
#[repr(C, align(8))]
#[derive(Default)]
struct GetFdByIdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
    /// Explicit, so that it is zero: the kernel refuses an attribute whose bytes beyond
    /// what the command reads are not.
    pad: u32,
}

/// The XDP link that runs program `old` (id `old_id`) runs `new` from now on: found among the
/// kernel's links by its program, opened by id (a second file descriptor, so that aya's
/// stays where it is whatever happens here), updated with `BPF_F_REPLACE` (the kernel
/// checks that `old` still runs there: a compare-and-swap).
fn replace_link_prog(old_id: u32, old: &ProgramFd, new: &ProgramFd) -> Result<(), String> {
    use aya::programs::links::LinkType;
    let link_id = aya::programs::loaded_links()
        .filter_map(Result::ok)
        .find(|l| l.program_id() == old_id && matches!(l.link_type(), Ok(LinkType::Xdp)))
        .map(|l| l.id())
        .ok_or("the steering program is not attached through a BPF link")?;
    let attr = GetFdByIdAttr {
        id: link_id,
        ..GetFdByIdAttr::default()
    };
    // SAFETY: `attr` is a valid BPF_LINK_GET_FD_BY_ID attribute (no pointers); the call
    // returns a new file descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_GET_FD_BY_ID,
            &attr as *const GetFdByIdAttr,
            core::mem::size_of::<GetFdByIdAttr>(),
        )
    };
    if fd < 0 {
        return Err(format!(
            "BPF_LINK_GET_FD_BY_ID: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
    let link = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
    let attr = LinkUpdateAttr {
        link_fd: link.as_raw_fd() as u32,
        new_prog_fd: new.as_fd().as_raw_fd() as u32,
        flags: BPF_F_REPLACE,
        old_prog_fd: old.as_fd().as_raw_fd() as u32,
    };
    // SAFETY: `attr` is a valid BPF_LINK_UPDATE attribute of open descriptors (no pointers).
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_UPDATE,
            &attr as *const LinkUpdateAttr,
            core::mem::size_of::<LinkUpdateAttr>(),
        )
    };
    if r != 0 {
        return Err(format!(
            "BPF_LINK_UPDATE: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// `BPF_PROG_TEST_RUN` of the XDP program `fd` in live-frames mode on `repeat` copies of
/// `frame`, as if they arrived on `ingress_ifindex` (of the calling thread's namespace).
pub(crate) fn test_run_live_fd(
    fd: std::os::fd::RawFd,
    frame: &[u8],
    ingress_ifindex: u32,
    repeat: u32,
) -> Result<(), String> {
    let ctx = XdpMd {
        data_end: frame.len() as u32,
        ingress_ifindex,
        ..XdpMd::default()
    };
    let mut attr = TestRunAttr {
        prog_fd: fd as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat,
        ctx_size_in: core::mem::size_of::<XdpMd>() as u32,
        ctx_in: &ctx as *const XdpMd as u64,
        flags: BPF_F_TEST_XDP_LIVE_FRAMES,
        ..TestRunAttr::default()
    };
    prog_test_run(&mut attr)
}

/// The `BPF_PROG_TEST_RUN` call itself. The pointers in `attr` (the frame, a context) must be
/// valid for the call; the kernel reads them and writes `retval` and `duration` into `attr`.
fn prog_test_run(attr: &mut TestRunAttr) -> Result<(), String> {
    // SAFETY: `attr` is a valid BPF_PROG_TEST_RUN attribute, writable, whose pointers the
    // callers keep alive for the call (no output buffers are given).
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            attr as *mut TestRunAttr,
            core::mem::size_of::<TestRunAttr>(),
        )
    };
    if r != 0 {
        return Err(format!(
            "BPF_PROG_TEST_RUN: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// `BPF_PROG_TEST_RUN` of the XDP program `fd`, `repeat` times on `frame` (a copy), as if it
/// arrived on the loopback device of the calling thread's namespace; redirects only return
/// their verdict. The verdict of the last run and the kernel's mean duration of a run in ns.
pub(crate) fn test_run_fd(
    fd: std::os::fd::RawFd,
    frame: &[u8],
    repeat: u32,
) -> Result<(u32, u32), String> {
    let mut attr = TestRunAttr {
        prog_fd: fd as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat,
        ..TestRunAttr::default()
    };
    prog_test_run(&mut attr)?;
    Ok((attr.retval, attr.duration))
}

impl OffloadBackend for XdpOffload {
    fn add(&mut self, id: FlowId, flow: &FlowSpec) {
        self.queue.push_back((id, *flow));
    }

    fn remove(&mut self, id: FlowId) {
        self.queue.retain(|(q, _)| *q != id);
        if let Some(e) = self.entries.remove(&id) {
            for k in &e.keys {
                let _ = self.flows.remove(k);
            }
            // What the program forwarded since the last poll is reported at the next one: a
            // flow taken out to be pushed again (a new route) keeps its counts. Read per slot,
            // not from the last batch, which is older.
            let mut packets = [0u64; 2];
            let mut bytes = [0u64; 2];
            let mut last_ns = e.last_ns;
            for d in 0..2 {
                if let Ok(v) = self.stats_map.get(&e.slots[d], 0) {
                    let (p, b, t) = v.iter().fold((0, 0, 0), |(p, b, t), s| {
                        (p + s.packets, b + s.bytes, t.max(s.last_used_ns))
                    });
                    packets[d] = p.saturating_sub(e.packets[d]);
                    bytes[d] = b.saturating_sub(e.bytes[d]);
                    last_ns = last_ns.max(t);
                }
            }
            if packets != [0, 0] {
                self.results.push(BackendEvent::Stats {
                    id,
                    packets,
                    bytes,
                    last_used: self.to_caller_time(last_ns),
                });
            }
            self.free_slots.extend_from_slice(&e.slots);
            self.stats.removed += 1;
        }
    }

    fn poll(&mut self, events: &mut Vec<BackendEvent>) {
        self.push();
        events.append(&mut self.results);
        if self.batch {
            let hi = self
                .entries
                .values()
                .flat_map(|e| e.slots)
                .max()
                .map_or(0, |m| m + 1);
            self.read_slots_batch(hi);
        }
        let ids: Vec<FlowId> = self.entries.keys().copied().collect();
        for id in ids {
            let Some(e) = self.entries.get(&id).copied() else {
                continue;
            };
            let s = [self.read_slot(e.slots[0]), self.read_slot(e.slots[1])];
            let packets = [
                s[0].0.saturating_sub(e.packets[0]),
                s[1].0.saturating_sub(e.packets[1]),
            ];
            if packets == [0, 0] {
                continue;
            }
            let bytes = [
                s[0].1.saturating_sub(e.bytes[0]),
                s[1].1.saturating_sub(e.bytes[1]),
            ];
            let last_ns = s[0].2.max(s[1].2).max(e.last_ns);
            events.push(BackendEvent::Stats {
                id,
                packets,
                bytes,
                last_used: self.to_caller_time(last_ns),
            });
            if let Some(m) = self.entries.get_mut(&id) {
                m.packets = [s[0].0, s[1].0];
                m.bytes = [s[0].1, s[1].1];
                m.last_ns = last_ns;
            }
        }
    }
}

/// An [`XdpOffload`] that its owner can still reach once the flowtable has it as its
/// backend: the flowtable drives it through [`OffloadBackend`], the owner reads its pass
/// reasons and push counters (`nft-offload stats`) through [`lock`](Self::lock). Cloning
/// gives another handle on the same backend; the program stays attached until the last one
/// goes.
#[derive(Clone)]
pub struct SharedXdpOffload(Arc<Mutex<XdpOffload>>);

impl SharedXdpOffload {
    pub fn new(x: XdpOffload) -> SharedXdpOffload {
        SharedXdpOffload(Arc::new(Mutex::new(x)))
    }

    pub fn lock(&self) -> MutexGuard<'_, XdpOffload> {
        // a panic while holding it left the maps as they were between two calls
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl OffloadBackend for SharedXdpOffload {
    fn add(&mut self, id: FlowId, flow: &FlowSpec) {
        self.lock().add(id, flow)
    }
    fn remove(&mut self, id: FlowId) {
        self.lock().remove(id)
    }
    fn poll(&mut self, events: &mut Vec<BackendEvent>) {
        self.lock().poll(events)
    }
}

/// The backend for a flowtable with `flags offload`, for a router that picks it at run time:
/// the XDP offload when it loads, with a line per device that takes no XDP program; else
/// software only, with the reason ([`crate::NOT_BUILT`] when the program was not built).
/// The lines are for the log; none of them is an error.
pub fn backend_for(cfg: &XdpOffloadConfig) -> (Box<dyn OffloadBackend + Send>, Vec<String>) {
    match XdpOffload::new(cfg) {
        Ok(x) => {
            let msgs = x
                .attachments()
                .iter()
                .map(|a| match (&a.mode, &a.warning) {
                    (Some(m), _) => format!("{}: XDP offload ({m})", a.device),
                    (None, Some(w)) => format!("warning: {w}"),
                    (None, None) => format!("warning: {}: no XDP offload", a.device),
                })
                .collect();
            (Box::new(x), msgs)
        }
        Err(e) => (
            Box::new(nft_flowtable::SoftwareOnly),
            vec![format!("warning: {e}; flows stay in software")],
        ),
    }
}
