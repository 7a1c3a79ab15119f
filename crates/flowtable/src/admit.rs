//! `flow add @ft` (`nft_flow_offload.c`): the kernel's admission rules, in the order
//! `nft_flow_offload_eval` checks them, and the making of the entry with its plan.

use crate::backend::{DirSpec, FlowId, FlowSpec, OffloadBackend};
use crate::flow::{
    Cold, ColdExt, Egress, Hot, Key, Mangles, Path, V6Addrs, DSCP, HW_PENDING, MARK, NAT, STALE, V6,
};
use crate::{ms, Flowtable};
use core::time::Duration;
use nft_conntrack::{ConnId, Status, Table, TcpState};
use nft_wire::{checksum, IpProtocol, PacketMeta, TcpFlags};

/// The family of the table whose chain holds the `flow add` statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Ip,
    Ip6,
    Inet,
    Arp,
    Bridge,
    Netdev,
}

macro_rules! reasons {
    ($( $(#[$m:meta])* $v:ident = $name:literal ),+ $(,)?) => {
        /// Why `flow add` did not admit a connection. The statement never drops the packet:
        /// the connection stays on the slow path. Each reason has a stable counter name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum NotAdmitted { $( $(#[$m])* $v ),+ }

        impl NotAdmitted {
            pub const ALL: &'static [NotAdmitted] = &[$( NotAdmitted::$v ),+];
            pub const COUNT: usize = Self::ALL.len();
            pub const fn name(self) -> &'static str {
                match self { $( NotAdmitted::$v => $name ),+ }
            }
            pub const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

reasons! {
    /// Only a forward chain may offload (the expression's validate hook).
    NotForwardHook = "not_forward_hook",
    /// Only ip, ip6 and inet tables.
    Family = "family",
    /// IPv4 options keep a packet's connection on the slow path (`nft_flow_offload_skip`).
    Ipv4Options = "ipv4_options",
    /// The packet has no connection (untracked or invalid).
    NoConnection = "no_connection",
    /// Neither TCP nor UDP.
    Protocol = "protocol",
    /// The TCP packet carries FIN or RST.
    TcpFinRst = "tcp_fin_rst",
    /// TCP must be established and assured.
    TcpNotEstablished = "tcp_not_established",
    /// A helper or sequence adjustment needs to see every packet.
    Helper = "helper",
    /// Not confirmed yet: the first packet of a flow.
    NotConfirmed = "not_confirmed",
    /// Already in a flowtable.
    AlreadyOffloaded = "already_offloaded",
    /// A direction's ingress port is not one of the flowtable's devices.
    Device = "device",
    /// The flowtable holds its limit of flows.
    TableFull = "table_full",
}

impl core::fmt::Display for NotAdmitted {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the slow path knows when a packet reaches `flow add @ft` in a forward chain.
#[derive(Debug, Clone, Copy)]
pub struct Admission<'a> {
    /// The statement sits in a chain on the forward hook.
    pub forward_hook: bool,
    pub family: Family,
    /// The packet's connection (`None`: untracked or invalid).
    pub conn: Option<ConnId>,
    /// The packet, as the forward chain sees it.
    pub meta: &'a PacketMeta,
    /// Each conntrack direction's path (index [`Direction::index`]), as routed now.
    pub paths: [Path; 2],
    /// What the slow path's rules set for each direction, to replay.
    pub mangles: [Mangles; 2],
    /// The FIB generation the paths were routed under.
    pub fib_generation: u64,
}

/// The connection-level rules, in `nft_flow_offload_eval`'s order.
fn check(ct: &Table, a: &Admission<'_>) -> Result<ConnId, NotAdmitted> {
    if !a.forward_hook {
        return Err(NotAdmitted::NotForwardHook);
    }
    if !matches!(a.family, Family::Ip | Family::Ip6 | Family::Inet) {
        return Err(NotAdmitted::Family);
    }
    if a.meta.ipv4_options {
        return Err(NotAdmitted::Ipv4Options);
    }
    let id = a.conn.ok_or(NotAdmitted::NoConnection)?;
    let c = ct.get(id).ok_or(NotAdmitted::NoConnection)?;
    match c.l4proto() {
        6 => {
            // The kernel reads the flags from the packet, whatever the meta says.
            if a.meta.ip_protocol != Some(IpProtocol::Tcp)
                || a.meta.tcp_flags().intersects(TcpFlags::FIN | TcpFlags::RST)
            {
                return Err(NotAdmitted::TcpFinRst);
            }
            if c.tcp_state() != Some(TcpState::Established) || !c.is_assured() {
                return Err(NotAdmitted::TcpNotEstablished);
            }
        }
        17 => {}
        _ => return Err(NotAdmitted::Protocol),
    }
    if c.status().intersects(Status::HELPER | Status::SEQ_ADJUST) {
        return Err(NotAdmitted::Helper);
    }
    if !c.is_confirmed() {
        return Err(NotAdmitted::NotConfirmed);
    }
    if c.is_offloaded() || c.status().contains(Status::DYING) {
        return Err(NotAdmitted::AlreadyOffloaded);
    }
    Ok(id)
}

/// Adds the RFC 1624 terms of a field changing from `old` to `new` (16-bit words), as the slow
/// path's per-field updates would, and nothing for an unchanged field: the sum then equals the
/// slow path's byte for byte, zero checksums included.
fn change(acc: &mut u64, old: &[u8], new: &[u8]) {
    if old == new {
        return;
    }
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        *acc += u64::from(!u16::from_be_bytes([o[0], o[1]]));
        *acc += u64::from(u16::from_be_bytes([n[0], n[1]]));
    }
}

/// The checksum deltas of the direction keyed `this`, whose packets leave as the inverse of
/// `other`: (IPv4 header, transport), and whether NAT changes anything.
fn deltas(this: &Key, other: &Key) -> (u16, u16, bool) {
    let alen = if this.v6 { 0 } else { 12 };
    let (new_src, new_dst) = (&other.dst[alen..], &other.src[alen..]);
    let (new_sport, new_dport) = (other.dport.to_be_bytes(), other.sport.to_be_bytes());
    let mut addrs = 0u64;
    change(&mut addrs, &this.src[alen..], new_src);
    change(&mut addrs, &this.dst[alen..], new_dst);
    let mut l4 = addrs;
    change(&mut l4, &this.sport.to_be_bytes(), &new_sport);
    change(&mut l4, &this.dport.to_be_bytes(), &new_dport);
    // The TTL/protocol word loses 0x0100: its term is constant for any TTL above 1.
    let ip = addrs + 0xfeff;
    let nat = this.src != other.dst
        || this.dst != other.src
        || this.sport != other.dport
        || this.dport != other.sport;
    (checksum::fold(ip), checksum::fold(l4), nat)
}

/// The line of the flow keyed `o` (original) and `r` (reply), each direction leaving through
/// `links[d]` with the mangles `m[d]`.
pub(crate) fn hot(o: &Key, r: &Key, links: [u16; 2], m: &[Mangles; 2]) -> Hot {
    let (ip0, l40, nat) = deltas(o, r);
    let (ip1, l41, _) = deltas(r, o);
    let mut flags = 0;
    if nat {
        flags |= NAT;
    }
    if o.v6 {
        flags |= V6;
    }
    if m.iter().any(|m| m.meta_mark.is_some()) {
        flags |= MARK;
    }
    if m.iter().any(|m| m.dscp.is_some()) {
        flags |= DSCP;
    }
    let low4 = |a: &[u8; 16]| [a[12], a[13], a[14], a[15]];
    Hot {
        addr: [low4(&o.src), low4(&o.dst), low4(&r.src), low4(&r.dst)],
        port: [o.sport, o.dport, r.sport, r.dport].map(u16::to_be_bytes),
        packets: [0; 2],
        bytes: [0; 2],
        bytes_hi: [0; 2],
        used: 0,
        link: links,
        ip_delta: [ip0.to_be_bytes(), ip1.to_be_bytes()],
        l4_delta: [l40.to_be_bytes(), l41.to_be_bytes()],
        proto: o.proto,
        flags,
        dscp: [
            m[0].dscp.map_or(u8::MAX, |d| d & 0x3f),
            m[1].dscp.map_or(u8::MAX, |d| d & 0x3f),
        ],
    }
}

/// The flow as a backend takes it: each direction's keys (`o`, `r`: original and reply, as
/// they arrive), where it leaves and what the slow path's walk did to it.
pub(crate) fn flow_spec(o: &Key, r: &Key, egress: [Egress; 2], m: &[Mangles; 2]) -> FlowSpec {
    let spec = |d: usize, this: &Key, other: &Key| DirSpec {
        tuple: this.tuple(),
        ingress: this.port,
        rewritten: other.tuple().invert().unwrap_or_else(|| this.tuple()),
        egress: egress[d],
        mangles: m[d],
    };
    FlowSpec {
        dirs: [spec(0, o, r), spec(1, r, o)],
    }
}

pub(crate) fn v6_addrs(this: &Key, other: &Key) -> V6Addrs {
    V6Addrs {
        src: this.src,
        dst: this.dst,
        new_src: other.dst,
        new_dst: other.src,
    }
}

pub(crate) fn mangles_of(hot: &Hot, cold: &Cold) -> [Mangles; 2] {
    let m = |d: usize| Mangles {
        meta_mark: cold.mark(d),
        ct_mark: cold.ct_mark(),
        dscp: (hot.dscp[d] != u8::MAX).then_some(hot.dscp[d]),
    };
    [m(0), m(1)]
}

impl<B: OffloadBackend> Flowtable<B> {
    /// `flow add @ft` for the packet `a.meta` of connection `a.conn`: checks the kernel's
    /// admission rules, then makes the flow with both directions' plans, marks the connection
    /// `[OFFLOAD]` (it no longer expires while offloaded) and, with `flags offload`, queues the
    /// flow for the backend. A refusal is counted and changes nothing.
    pub fn admit(
        &mut self,
        ct: &mut Table,
        a: &Admission<'_>,
        now: Duration,
    ) -> Result<FlowId, NotAdmitted> {
        let r = self.admit_inner(ct, a, now);
        match r {
            Ok(_) => self.stats.admitted += 1,
            Err(e) => self.stats.not_admitted[e.index()] += 1,
        }
        r
    }

    fn admit_inner(
        &mut self,
        ct: &mut Table,
        a: &Admission<'_>,
        now: Duration,
    ) -> Result<FlowId, NotAdmitted> {
        let id = check(ct, a)?;
        if !a
            .paths
            .iter()
            .all(|p| self.cfg.devices.contains(&p.ingress))
        {
            return Err(NotAdmitted::Device);
        }
        if self.len >= self.cfg.max_flows {
            return Err(NotAdmitted::TableFull);
        }
        let c = ct.get(id).ok_or(NotAdmitted::NoConnection)?;
        let o = Key::from_tuple(&c.original(), a.paths[0].ingress);
        let r = Key::from_tuple(&c.reply(), a.paths[1].ingress);
        // Another flow already owns one of these keys (a stale entry not yet collected).
        for k in [&o, &r] {
            if self.find(k, self.index.hash(k)).is_some() {
                return Err(NotAdmitted::AlreadyOffloaded);
            }
        }
        // Direction d leaves through its egress; the other direction's frames come back
        // from that next hop on their ingress port.
        let (Some(l0), Some(l1)) = (
            self.link(&a.paths[0].egress, a.paths[1].ingress),
            self.link(&a.paths[1].egress, a.paths[0].ingress),
        ) else {
            return Err(NotAdmitted::TableFull);
        };
        let now_ms = ms(now);
        let mut line = hot(&o, &r, [l0, l1], &a.mangles);
        line.used = now_ms as u32;
        if a.fib_generation as u32 != self.fib_gen {
            line.flags |= STALE;
        }
        ct.set_offload(id, false)
            .map_err(|_| NotAdmitted::NoConnection)?;

        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.hot.push(Hot::default());
                self.cold.push(Cold::default());
                self.gens.push(0);
                self.hw.push(0);
                (self.cold.len() - 1) as u32
            }
        };
        let (Some(hs), Some(cold)) = (
            self.hot.get_mut(idx as usize),
            self.cold.get_mut(idx as usize),
        ) else {
            return Err(NotAdmitted::TableFull);
        };
        let ct_mark = a.mangles[0].ct_mark.or(a.mangles[1].ct_mark);
        let mark = [a.mangles[0].meta_mark, a.mangles[1].meta_mark];
        let ext = (o.v6 || ct_mark.is_some() || mark != [None, None]).then(|| ColdExt {
            ct_mark,
            mark,
            v6: o.v6.then(|| [v6_addrs(&o, &r), v6_addrs(&r, &o)]),
            folded: Default::default(),
        });
        *hs = line;
        *cold = Cold {
            ext: ext.map(Box::new),
            conn: id.to_bits(),
        };
        if let Some(hw) = self.hw.get_mut(idx as usize) {
            *hw = if self.cfg.hw_offload { HW_PENDING } else { 0 };
        }
        let fid = FlowId {
            idx,
            gen: self.gen_at(idx as usize),
        };
        self.index.insert(self.index.hash(&o), idx << 1);
        self.index.insert(self.index.hash(&r), idx << 1 | 1);
        self.len += 1;

        if self.cfg.hw_offload {
            let fs = flow_spec(&o, &r, [a.paths[0].egress, a.paths[1].egress], &a.mangles);
            self.backend.add(fid, &fs);
        }
        Ok(fid)
    }
}
