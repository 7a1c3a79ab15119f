//! AF_XDP steering: the program `bpf/steer.c` on one interface sends the frames the dataplane
//! forwards to the AF_XDP socket of their receive queue and everything else to the kernel
//! (ARP, ND, the router's own traffic, multicast, non-IP).
//!
//! One [`Steer`] per interface: its own maps (sockets per queue, the router's addresses, the
//! owned ports), attached natively when the driver can, in generic mode otherwise
//! ([`Steer::mode`] says which). Dropping it detaches the program.
//!
//! On a device that has the XDP offload (`flags offload`), [`Steer::attach_after`] puts it
//! behind the offload program instead (the offload's [`Chain`], a tail call per ingress
//! device): offloaded flows are forwarded before it, the rest is steered the same way.
//!
//! ```no_run
//! # fn main() -> Result<(), nft_xdp::SteerError> {
//! use nft_xdp::{Steer, SteerConfig};
//! let mut steer = Steer::attach("eth0", &SteerConfig::default())?;
//! steer.add_local(None, "198.18.0.1".parse().unwrap())?;
//! // A DNAT port forward: TCP 8080 to the router's address is the dataplane's.
//! steer.add_owned(None, 6, 8080)?;
//! // steer.set_socket(0, &xsk)?;  // an nft_io::afxdp::AfXdp bound to eth0 queue 0
//! # Ok(()) }
//! ```

use std::os::fd::{AsFd, AsRawFd};

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, XskMap};
use aya::programs::xdp::XdpLinkId;
use aya::programs::{ProgramFd, Xdp};
use aya::{Ebpf, EbpfLoader};
use nft_wire::IpAddr;

use crate::load::{attach_xdp, error_chain, load_xdp};
use crate::offload::{ifindex_of, Chain, Mode, ModeRequest};

#[cfg(test)]
mod tests;

/// The built program, when clang was there at build time.
#[cfg(xdp_built)]
pub static STEER_OBJECT: Option<&[u8]> =
    Some(aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/steer.o")) as &[u8]);
#[cfg(not(xdp_built))]
pub static STEER_OBJECT: Option<&[u8]> = None;

/// Where frames went and why: the index in `steer_reasons` (`STEER_R_*`). `owned`, `forward`
/// and `local_no_socket` went to the socket; every other reason to the kernel.
pub const STEER_REASONS: [&str; 12] = [
    "disabled",
    "not_ip",
    "arp",
    "nd",
    "local",
    "multicast",
    "link_local",
    "malformed",
    "owned",
    "forward",
    "no_socket",
    "local_no_socket",
];

/// Sockets per interface (`STEER_MAX_QUEUES`): queues 0..64.
pub const MAX_QUEUES: u32 = 64;

/// `steer_config.flags`: also send multicast (beyond link-local scope) to the socket.
const F_FORWARD_MCAST: u32 = 0x1;
/// `steer_config.flags`: see [`SteerConfig::local_no_socket`].
const F_LOCAL_NO_SOCKET: u32 = 0x2;

#[derive(Debug, thiserror::Error)]
pub enum SteerError {
    #[error("{}", crate::NOT_BUILT)]
    NotBuilt,
    #[error("{0}: no such device")]
    NoSuchDevice(String),
    #[error("loading the AF_XDP steering program: {0}")]
    Load(String),
    #[error("{dev}: cannot attach the AF_XDP steering program ({why})")]
    Attach { dev: String, why: String },
    #[error("steering map {map}: {why}")]
    Map { map: &'static str, why: String },
}

/// How to attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SteerConfig {
    pub mode: ModeRequest,
    /// Send routable multicast to the dataplane too (default: the kernel's).
    pub forward_multicast: bool,
    /// Traffic addressed to the router that the kernel would only refuse is the dataplane's:
    /// TCP and UDP no kernel socket takes (the program looks the socket up, listeners
    /// included), ICMP echo replies and ICMP errors. That is where the replies of
    /// masqueraded connections and port forwards arrive, so a router doing NAT wants it.
    /// ICMP echo requests and everything with a socket stay the kernel's.
    pub local_no_socket: bool,
}

/// `struct steer_local_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct LocalKey {
    ifindex: u32,
    addr: [u8; 16],
}

/// `struct steer_owned_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct OwnedKey {
    addr: [u8; 16],
    /// Network byte order.
    dport: u16,
    proto: u8,
    pad: u8,
}

/// `struct steer_config`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct ConfigValue {
    enabled: u32,
    flags: u32,
}

/// Words of `struct steer_bits` (`STEER_BITS_WORDS`): 4096 bits.
const BITS_WORDS: usize = 64;

/// `struct steer_bits`: the prefilter in front of `steer_local`. The bit [`local_bit`] picks
/// for each address in the map is set (whatever the ifindex); a clear bit tells the program
/// "not local" without a hash lookup. Always a superset of the map's addresses.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LocalBits([u64; BITS_WORDS]);

impl LocalBits {
    const EMPTY: LocalBits = LocalBits([0; BITS_WORDS]);

    fn set(&mut self, addr: &[u8; 16]) {
        let b = local_bit(addr) as usize;
        self.0[b / 64] |= 1 << (b % 64);
    }

    fn of<'a>(keys: impl IntoIterator<Item = &'a LocalKey>) -> LocalBits {
        let mut bits = LocalBits::EMPTY;
        for k in keys {
            bits.set(&k.addr);
        }
        bits
    }

    fn union(self, other: LocalBits) -> LocalBits {
        LocalBits(std::array::from_fn(|i| self.0[i] | other.0[i]))
    }
}

/// The bit of a 16-byte address (IPv4 v4-mapped) in `steer_bits`: its four 32-bit words read
/// in native order, folded with xor, times 0x9E3779B1, the top 12 bits. The twin of
/// `local_bit()` in `bpf/steer.c`: the two must compute the same, or local addresses are taken
/// for transit.
pub(crate) fn local_bit(addr: &[u8; 16]) -> u32 {
    let w = |i: usize| u32::from_ne_bytes([addr[i], addr[i + 1], addr[i + 2], addr[i + 3]]);
    (w(0) ^ w(4) ^ w(8) ^ w(12)).wrapping_mul(0x9E37_79B1) >> 20
}

// SAFETY: plain #[repr(C)] structs of integers and byte arrays with no padding (sizes 20, 20,
// 8 and 512, each a multiple of its alignment), so every bit pattern is valid and no byte is
// uninitialised.
unsafe impl aya::Pod for LocalKey {}
// SAFETY: as above.
unsafe impl aya::Pod for LocalBits {}
// SAFETY: as above.
unsafe impl aya::Pod for OwnedKey {}
// SAFETY: as above.
unsafe impl aya::Pod for ConfigValue {}

fn addr16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
        IpAddr::V6(v) => v.octets(),
    }
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> SteerError {
    move |e| SteerError::Map {
        map,
        why: error_chain(&e),
    }
}

/// The steering program on one interface. Dropping it detaches the program.
pub struct Steer {
    ebpf: Ebpf,
    xsks: XskMap<MapData>,
    local: BpfHashMap<MapData, LocalKey, u8>,
    bits: Array<MapData, LocalBits>,
    /// What `bits` holds.
    bits_now: LocalBits,
    owned: BpfHashMap<MapData, OwnedKey, u8>,
    config: Array<MapData, ConfigValue>,
    reasons: PerCpuArray<MapData, u64>,
    device: String,
    ifindex: u32,
    mode: Mode,
    link: Option<XdpLinkId>,
    /// Run by the XDP offload program rather than attached.
    chained: bool,
    flags: u32,
}

impl Steer {
    /// Loads the program and attaches it to `dev` (in the calling thread's network namespace):
    /// native mode, else generic, as `cfg.mode` allows. Enabled at once; until a socket is
    /// set for a queue, that queue's frames go to the kernel. Without the built object the
    /// error's message is [`crate::NOT_BUILT`].
    pub fn attach(dev: &str, cfg: &SteerConfig) -> Result<Steer, SteerError> {
        let mut me = Steer::load(dev, cfg)?;
        let (mode, link) =
            attach_xdp(&mut me.ebpf, "steer", me.ifindex, cfg.mode).map_err(|why| {
                SteerError::Attach {
                    dev: dev.into(),
                    why,
                }
            })?;
        me.mode = mode;
        me.link = Some(link);
        Ok(me)
    }

    /// Loads the program for `dev` and makes it what the XDP offload program, already on
    /// `dev` in `mode`, runs on the frames it does not forward (see [`Chain`]): the device
    /// keeps one XDP program, offloaded flows are forwarded by it, everything else is steered
    /// as [`attach`](Self::attach) does. `cfg.mode` is not used: the offload's mode is the
    /// mode. Dropping the `Steer` leaves the chain entry (the program stays loaded while the
    /// chain refers to it); [`Chain::clear`] or dropping the chain ends it.
    pub fn attach_after(
        dev: &str,
        cfg: &SteerConfig,
        chain: &mut Chain,
        mode: Mode,
    ) -> Result<Steer, SteerError> {
        let mut me = Steer::load(dev, cfg)?;
        let p: &Xdp = me
            .ebpf
            .program("steer")
            .ok_or_else(|| SteerError::Load("program steer missing".into()))?
            .try_into()
            .map_err(|e| SteerError::Load(error_chain(&e)))?;
        let fd = p.fd().map_err(|e| SteerError::Load(error_chain(&e)))?;
        chain.set(me.ifindex, fd).map_err(|e| SteerError::Attach {
            dev: dev.into(),
            why: format!("after the XDP offload: {e}"),
        })?;
        me.mode = mode;
        me.chained = true;
        Ok(me)
    }

    /// Loaded for `dev` and enabled, attached nowhere: for [`test_run`](Self::test_run).
    pub fn load(dev: &str, cfg: &SteerConfig) -> Result<Steer, SteerError> {
        let obj = STEER_OBJECT.ok_or(SteerError::NotBuilt)?;
        let ifindex = ifindex_of(dev);
        if ifindex == 0 {
            return Err(SteerError::NoSuchDevice(dev.into()));
        }
        let mut ebpf = EbpfLoader::new()
            .load(obj)
            .map_err(|e| SteerError::Load(error_chain(&e)))?;
        let mut take = |name: &'static str| {
            ebpf.take_map(name).ok_or(SteerError::Map {
                map: name,
                why: "missing from the object".into(),
            })
        };
        let xsks = XskMap::try_from(take("steer_xsks")?).map_err(map_err("steer_xsks"))?;
        let local = BpfHashMap::try_from(take("steer_local")?).map_err(map_err("steer_local"))?;
        let bits = Array::try_from(take("steer_bits")?).map_err(map_err("steer_bits"))?;
        let owned = BpfHashMap::try_from(take("steer_owned")?).map_err(map_err("steer_owned"))?;
        let config = Array::try_from(take("steer_config")?).map_err(map_err("steer_config"))?;
        let reasons =
            PerCpuArray::try_from(take("steer_reasons")?).map_err(map_err("steer_reasons"))?;
        load_xdp(&mut ebpf, "steer").map_err(SteerError::Load)?;
        let mut flags = 0;
        if cfg.forward_multicast {
            flags |= F_FORWARD_MCAST;
        }
        if cfg.local_no_socket {
            flags |= F_LOCAL_NO_SOCKET;
        }
        let mut me = Steer {
            ebpf,
            xsks,
            local,
            bits,
            bits_now: LocalBits::EMPTY,
            owned,
            config,
            reasons,
            device: dev.into(),
            ifindex,
            mode: Mode::Generic,
            link: None,
            chained: false,
            flags,
        };
        me.set_enabled(true)?;
        Ok(me)
    }

    /// Runs the program `repeat` times on `frame` with `BPF_PROG_TEST_RUN`, as if it arrived
    /// on the loopback device, queue 0: nothing is sent, a redirect only returns its verdict,
    /// the counters count. The verdict (`XDP_PASS` 2, `XDP_REDIRECT` 4) and the kernel's mean
    /// duration of a run in ns. For measurements (examples/steer_cost.rs).
    pub fn test_run(&self, frame: &[u8], repeat: u32) -> Result<(u32, u32), SteerError> {
        let fd = self.prog_fd().map_err(SteerError::Load)?;
        crate::offload::test_run_fd(fd.as_fd().as_raw_fd(), frame, repeat).map_err(SteerError::Load)
    }

    /// The loaded program.
    pub(crate) fn prog_fd(&self) -> Result<&ProgramFd, String> {
        let p: &Xdp = self
            .ebpf
            .program("steer")
            .ok_or("program steer missing")?
            .try_into()
            .map_err(|e| error_chain(&e))?;
        p.fd().map_err(|e| error_chain(&e))
    }

    /// The kernel's id of the loaded program.
    pub(crate) fn prog_id(&self) -> Result<u32, String> {
        let p: &Xdp = self
            .ebpf
            .program("steer")
            .ok_or("program steer missing")?
            .try_into()
            .map_err(|e| error_chain(&e))?;
        p.info().map(|i| i.id()).map_err(|e| error_chain(&e))
    }

    /// Its device's link, which another program now runs
    /// ([`XdpOffload::take_over`](crate::XdpOffload::take_over)): handed over, so that
    /// dropping this `Steer` no longer detaches the device; the program is chained.
    pub(crate) fn give_link(&mut self) -> Option<aya::programs::xdp::XdpLink> {
        self.chained = true;
        let id = self.link.take()?;
        let p: &mut Xdp = self.ebpf.program_mut("steer")?.try_into().ok()?;
        p.take_link(id).ok()
    }

    /// Native or generic.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether the XDP offload program runs it ([`attach_after`](Self::attach_after)).
    pub fn chained(&self) -> bool {
        self.chained
    }

    pub fn device(&self) -> &str {
        &self.device
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Frames of receive queue `queue` that the dataplane takes go to `socket` (an AF_XDP
    /// socket bound to this interface and queue).
    pub fn set_socket(&mut self, queue: u32, socket: &impl AsRawFd) -> Result<(), SteerError> {
        self.xsks
            .set(queue, socket.as_raw_fd(), 0)
            .map_err(map_err("steer_xsks"))
    }

    /// Queue `queue`'s frames go to the kernel again.
    pub fn clear_socket(&mut self, queue: u32) -> Result<(), SteerError> {
        self.xsks.unset(queue).map_err(map_err("steer_xsks"))
    }

    /// With `false`, every frame goes to the kernel.
    pub fn set_enabled(&mut self, on: bool) -> Result<(), SteerError> {
        let v = ConfigValue {
            enabled: u32::from(on),
            flags: self.flags,
        };
        self.config.set(0, v, 0).map_err(map_err("steer_config"))
    }

    /// Writes the prefilter, unless it already holds `bits`.
    fn write_bits(&mut self, bits: LocalBits) -> Result<(), SteerError> {
        if bits != self.bits_now {
            self.bits.set(0, bits, 0).map_err(map_err("steer_bits"))?;
            self.bits_now = bits;
        }
        Ok(())
    }

    /// The prefilter made exact again from the keys in `steer_local`.
    fn rewrite_bits(&mut self) -> Result<(), SteerError> {
        let keys: Vec<LocalKey> = self.local.keys().filter_map(Result::ok).collect();
        self.write_bits(LocalBits::of(&keys))
    }

    /// `addr` is the router's: frames to it go to the kernel (unless owned). `ifindex`: only
    /// when they arrive on that device; `None`: on any.
    pub fn add_local(&mut self, ifindex: Option<u32>, addr: IpAddr) -> Result<(), SteerError> {
        let k = LocalKey {
            ifindex: ifindex.unwrap_or(0),
            addr: addr16(addr),
        };
        // The bit first: the program must never see the key without it.
        let mut bits = self.bits_now;
        bits.set(&k.addr);
        self.write_bits(bits)?;
        self.local.insert(k, 1, 0).map_err(map_err("steer_local"))
    }

    pub fn remove_local(&mut self, ifindex: Option<u32>, addr: IpAddr) -> Result<(), SteerError> {
        let k = LocalKey {
            ifindex: ifindex.unwrap_or(0),
            addr: addr16(addr),
        };
        self.local.remove(&k).map_err(map_err("steer_local"))?;
        self.rewrite_bits()
    }

    /// Replaces all local addresses with `addrs` (as [`add_local`](Self::add_local) takes
    /// them): what a netlink address dump gives.
    pub fn set_locals(&mut self, addrs: &[(Option<u32>, IpAddr)]) -> Result<(), SteerError> {
        let want: Vec<LocalKey> = addrs
            .iter()
            .map(|&(i, a)| LocalKey {
                ifindex: i.unwrap_or(0),
                addr: addr16(a),
            })
            .collect();
        let have: Vec<LocalKey> = self.local.keys().filter_map(Result::ok).collect();
        // The prefilter covers the old keys and the new ones while the map changes, then only
        // the new ones.
        let exact = LocalBits::of(&want);
        self.write_bits(LocalBits::of(&have).union(exact).union(self.bits_now))?;
        for k in have.iter().filter(|k| !want.contains(k)) {
            self.local.remove(k).map_err(map_err("steer_local"))?;
        }
        for k in &want {
            self.local
                .insert(*k, 1, 0)
                .map_err(map_err("steer_local"))?;
        }
        self.write_bits(exact)
    }

    /// Frames to `addr` (`None`: any local address), protocol `proto`, destination port
    /// `dport` are the dataplane's although addressed to the router: a DNAT port forward.
    pub fn add_owned(
        &mut self,
        addr: Option<IpAddr>,
        proto: u8,
        dport: u16,
    ) -> Result<(), SteerError> {
        self.owned
            .insert(owned_key(addr, proto, dport), 1, 0)
            .map_err(map_err("steer_owned"))
    }

    pub fn remove_owned(
        &mut self,
        addr: Option<IpAddr>,
        proto: u8,
        dport: u16,
    ) -> Result<(), SteerError> {
        self.owned
            .remove(&owned_key(addr, proto, dport))
            .map_err(map_err("steer_owned"))
    }

    /// Replaces all owned keys with `keys`.
    pub fn set_owned(&mut self, keys: &[(Option<IpAddr>, u8, u16)]) -> Result<(), SteerError> {
        let want: Vec<OwnedKey> = keys.iter().map(|&(a, p, d)| owned_key(a, p, d)).collect();
        let have: Vec<OwnedKey> = self.owned.keys().filter_map(Result::ok).collect();
        for k in have.iter().filter(|k| !want.contains(k)) {
            self.owned.remove(k).map_err(map_err("steer_owned"))?;
        }
        for k in want {
            self.owned.insert(k, 1, 0).map_err(map_err("steer_owned"))?;
        }
        Ok(())
    }

    /// The per-reason frame counts, summed over CPUs, in [`STEER_REASONS`] order.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        STEER_REASONS
            .iter()
            .enumerate()
            .map(|(i, &name)| {
                let n = self
                    .reasons
                    .get(&(i as u32), 0)
                    .map(|v| v.iter().sum())
                    .unwrap_or(0);
                (name, n)
            })
            .collect()
    }

    /// One reason's count.
    pub fn counter(&self, reason: &str) -> u64 {
        self.counters()
            .into_iter()
            .find(|(n, _)| *n == reason)
            .map_or(0, |(_, v)| v)
    }
}

fn owned_key(addr: Option<IpAddr>, proto: u8, dport: u16) -> OwnedKey {
    OwnedKey {
        addr: addr.map(addr16).unwrap_or([0; 16]),
        dport: dport.to_be(),
        proto,
        pad: 0,
    }
}

impl Drop for Steer {
    fn drop(&mut self) {
        if let Some(link) = self.link.take() {
            if let Some(p) = self.ebpf.program_mut("steer") {
                if let Ok(x) = <&mut Xdp>::try_from(p) {
                    let _ = x.detach(link);
                }
            }
        }
    }
}
