//! One tracked connection (`struct nf_conn`) and its `conntrack -L` line.

use crate::status::{Status, Timeouts};
use crate::tcp::TcpTrack;
use crate::tuple::{
    Direction, Tuple, Zone, PROTO_DCCP, PROTO_GRE, PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP,
    PROTO_UDP, PROTO_UDPLITE,
};
use core::fmt::Write as _;
use core::time::Duration;
use nft_wire::IpAddr;

/// What the kernel keeps an offloaded connection's timeout at (`NF_CT_DAY`): set when the flow
/// is added, and again by the flowtable's GC once less than [`OFFLOAD_CT_MIN`] is left
/// (`nf_flow_table_extend_ct_timeout`, Linux 6.14+; TCP established and UDP).
const OFFLOAD_CT_DAY: u64 = 86_400;
const OFFLOAD_CT_MIN: u64 = 300;

/// Protocol state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtoState {
    Tcp(TcpTrack),
    /// `stream_at`: once replied, traffic after this instant makes the flow a stream (assured,
    /// longer timeout): two seconds after creation, as in the kernel.
    Udp {
        stream_at: Duration,
    },
    Icmp,
    Sctp(crate::sctp::SctpTrack),
    Generic,
}

/// Packets and bytes in one direction (bytes count the IP packet, header included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// Both tuples of a connection: IPv4 addresses inline (26 bytes, not the 80 of two
/// [`Tuple`]s), other addresses in the connection's [`Ext`]. Direction `d` is
/// `v4[2d] -> v4[2d + 1]`, ports `ports[2d]`, `ports[2d + 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Tuples {
    /// The original's source and destination, then the reply's (IPv4, `!wide`).
    pub(crate) v4: [[u8; 4]; 4],
    pub(crate) ports: [u16; 4],
    pub(crate) proto: u8,
    /// The addresses are in `Ext::addrs` (IPv6).
    pub(crate) wide: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conn {
    /// The original direction and the reply, which reflects NAT. Only the table changes
    /// them: they are its keys.
    pub(crate) tuples: Tuples,
    pub(crate) zone: Zone,
    pub(crate) status: Status,
    /// `ct mark`.
    pub mark: u32,
    /// A number unique over the table's life, for listings and events.
    pub id: u32,
    pub(crate) proto: ProtoState,
    /// Only with accounting (`nf_conntrack_acct`, off by default): 8 bytes a connection
    /// instead of 32 when off.
    pub(crate) counters: Option<Box<Acct>>,
    /// What few connections have (labels, a helper, IPv6 addresses), apart so that the
    /// others pay 8 bytes for it. (A masquerade interface is the table's.)
    pub(crate) ext: Option<Box<Ext>>,
    /// Expiry, in nanoseconds of `now` (8 bytes, not 16).
    pub(crate) deadline_ns: u64,
    /// For the dataplane that offloads connections (conntrack never reads them): the port
    /// each direction last arrived on (`u16::MAX`: none yet), and the flow the connection is
    /// offloaded to (0: none). Here rather than in maps beside the table: 8 bytes a
    /// connection instead of two hash entries.
    pub offload_ports: [u16; 2],
    pub offload_flow: u32,
}

/// Accounting (`nf_conntrack_acct`): the counters, and where a flowtable's running counts
/// of an offloaded connection stood when last added (the low 32 bits of packets, then bytes,
/// per direction), so that the flowtable keeps no copy of its own.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Acct {
    pub c: [Counter; 2],
    pub offload_seen: [u32; 4],
}

/// The rarely set parts of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Ext {
    /// The tuples' addresses when they are not all IPv4, as [`Tuples::v4`].
    pub addrs: Option<[IpAddr; 4]>,
    /// `ct label`, 128 bits.
    pub labels: u128,
    /// `ct helper set`: the helper's name. No helper runs here; the name keeps the
    /// connection off the fast path and answers `ct helper`.
    pub helper: Option<Box<str>>,
    /// `ct secmark`.
    pub secmark: u32,
    /// The connection has the helper extension (`ct expectation set` adds it), which keeps
    /// it off the flowtable as the kernel's `nft_flow_offload` does.
    pub help: bool,
    /// The connection whose expectation this one fulfilled (`ct->master`).
    pub master: Option<crate::table::ConnId>,
    /// `ct timeout set`: the state timeouts of the connection's timeout policy.
    pub timeouts: Option<Box<crate::status::Timeouts>>,
    /// `synproxy`: the router answered the handshake (`nf_conn_synproxy` and the sequence
    /// adjustment, `nf_conn_seqadj`).
    /// (Boxed: every IPv6 connection has an `Ext`, few are synproxied.)
    pub synproxy: Option<Box<Synproxy>>,
}

/// The state of a connection whose handshake the router answered with a SYN cookie
/// (`nf_conn_synproxy` with `nf_conn_seqadj`): the client saw the cookie as the server's
/// initial sequence number; the server chose its own, so every packet after the handshake
/// has its sequence numbers (and timestamps) moved between the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Synproxy {
    /// The cookie: the initial sequence number the client saw.
    pub isn: u32,
    /// The timestamp value the router's SYN-ACK carried (echoed by the client).
    pub its: u32,
    /// Server timestamp minus the router's: added to the client's echoes, taken from the
    /// server's values.
    pub tsoff: u32,
    /// Added to the sequence numbers of the reply direction (server to client) and taken
    /// from the acknowledgements of the original direction; 0 until the server answered.
    pub seq_off: u32,
    /// The window the client announced in its ACK (for the router's ACK to the server).
    pub window: u16,
    /// The server's SYN-ACK was answered: sequence adjustment is on.
    pub established: bool,
}

/// A time as stored in a connection: nanoseconds, saturating (585 years; beyond is the end
/// of time, `Duration::MAX`).
#[inline]
pub(crate) fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[inline]
fn from_ns(n: u64) -> Duration {
    if n == u64::MAX {
        Duration::MAX
    } else {
        Duration::from_nanos(n)
    }
}

impl Tuples {
    /// A new IPv4 connection's tuples for an original `t` with ports (not ICMP): the reply is
    /// `t` inverted, written straight into place rather than built as a tuple and packed.
    /// `None` for IPv6 and ICMP, which take [`Conn::store_tuples`].
    pub(crate) fn narrow_with_inverse(t: &Tuple) -> Option<Tuples> {
        match (t.src, t.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) if !crate::tuple::is_icmp(t.proto) => {
                let (s, d) = (s.octets(), d.octets());
                Some(Tuples {
                    v4: [s, d, d, s],
                    ports: [t.sport, t.dport, t.dport, t.sport],
                    proto: t.proto,
                    wide: false,
                })
            }
            _ => None,
        }
    }
}

impl Conn {
    /// A connection's tuples as stored (the rest is the caller's to fill).
    pub(crate) fn store_tuples(&mut self, t: [Tuple; 2]) {
        let a = [t[0].src, t[0].dst, t[1].src, t[1].dst];
        let mut v4 = [[0u8; 4]; 4];
        let mut wide = false;
        for (o, x) in v4.iter_mut().zip(a) {
            match x {
                IpAddr::V4(v) => *o = v.octets(),
                IpAddr::V6(_) => wide = true,
            }
        }
        self.tuples = Tuples {
            v4: if wide { [[0; 4]; 4] } else { v4 },
            ports: [t[0].sport, t[0].dport, t[1].sport, t[1].dport],
            proto: t[0].proto,
            wide,
        };
        if wide {
            self.ext.get_or_insert_with(Box::default).addrs = Some(a);
        } else if let Some(e) = self.ext.as_deref_mut() {
            e.addrs = None;
        }
    }

    #[inline]
    /// Whether the connection is IPv4's (its addresses are stored narrow only then).
    pub(crate) fn is_ipv4(&self) -> bool {
        !self.tuples.wide
    }

    /// Port (or ICMP field) `i`: the original's source and destination, then the reply's.
    pub(crate) fn port(&self, i: usize) -> u16 {
        self.tuples.ports[i & 3]
    }

    pub(crate) fn addr(&self, i: usize) -> IpAddr {
        if self.tuples.wide {
            if let Some(a) = self.ext.as_deref().and_then(|e| e.addrs) {
                return a[i & 3];
            }
        }
        IpAddr::V4(self.tuples.v4[i & 3].into())
    }

    /// Whether direction `d`'s tuple is `t` (the table's key comparison).
    #[inline]
    pub(crate) fn tuple_is(&self, d: usize, t: &Tuple) -> bool {
        let d = d & 1;
        let k = &self.tuples;
        if k.ports[2 * d] != t.sport || k.ports[2 * d + 1] != t.dport || k.proto != t.proto {
            return false;
        }
        match (k.wide, t.src, t.dst) {
            (false, IpAddr::V4(s), IpAddr::V4(x)) => {
                k.v4[2 * d] == s.octets() && k.v4[2 * d + 1] == x.octets()
            }
            (false, _, _) => false,
            (true, s, x) => self.addr(2 * d) == s && self.addr(2 * d + 1) == x,
        }
    }

    /// Whether direction `d`'s tuple is `other`'s direction `od` (compared in place).
    #[inline]
    pub(crate) fn same_tuple(&self, d: usize, other: &Conn, od: usize) -> bool {
        let (a, b) = (&self.tuples, &other.tuples);
        let (d, od) = (2 * (d & 1), 2 * (od & 1));
        if a.proto != b.proto || a.ports[d] != b.ports[od] || a.ports[d + 1] != b.ports[od + 1] {
            return false;
        }
        match (a.wide, b.wide) {
            (false, false) => a.v4[d] == b.v4[od] && a.v4[d + 1] == b.v4[od + 1],
            (true, true) => {
                self.addr(d) == other.addr(od) && self.addr(d + 1) == other.addr(od + 1)
            }
            _ => false,
        }
    }

    /// Whether the original directions have one source (protocol, address and port): the
    /// key of the source-NAT index, compared in place.
    #[inline]
    pub(crate) fn same_source(&self, other: &Conn) -> bool {
        let (a, b) = (&self.tuples, &other.tuples);
        a.proto == b.proto
            && a.ports[0] == b.ports[0]
            && match (a.wide, b.wide) {
                (false, false) => a.v4[0] == b.v4[0],
                (true, true) => self.addr(0) == other.addr(0),
                _ => false,
            }
    }

    /// Replaces the reply tuple (NAT bound it).
    /// [`Self::set_reply`] with the inverse of `t` (the original direction as NAT makes it),
    /// written in place for IPv4 ports without building the inverted tuple first. `None` for
    /// an ICMP type without an answer.
    pub(crate) fn set_reply_inverse(&mut self, t: &Tuple) -> Option<()> {
        match (self.tuples.wide, t.src, t.dst) {
            (false, IpAddr::V4(s), IpAddr::V4(d)) if !crate::tuple::is_icmp(t.proto) => {
                let k = &mut self.tuples;
                k.v4[2] = d.octets();
                k.v4[3] = s.octets();
                k.ports[2] = t.dport;
                k.ports[3] = t.sport;
            }
            _ => self.set_reply(t.invert()?),
        }
        Some(())
    }

    pub(crate) fn set_reply(&mut self, r: Tuple) {
        match (self.tuples.wide, r.src, r.dst) {
            // all IPv4 before and after: the reply's half is written in place
            (false, IpAddr::V4(s), IpAddr::V4(d)) => {
                let k = &mut self.tuples;
                k.v4[2] = s.octets();
                k.v4[3] = d.octets();
                k.ports[2] = r.sport;
                k.ports[3] = r.dport;
            }
            _ => {
                let o = self.tuple(Direction::Original);
                self.store_tuples([o, r]);
            }
        }
    }

    /// The counters of a direction, to add to (allocated with the first count).
    pub(crate) fn counter_mut(&mut self, dir: Direction) -> &mut Counter {
        let c = self.counters.get_or_insert_with(Box::default);
        &mut c.c[dir.index() & 1]
    }

    pub fn tuple(&self, dir: Direction) -> Tuple {
        let d = dir.index() & 1;
        Tuple {
            src: self.addr(2 * d),
            dst: self.addr(2 * d + 1),
            proto: self.tuples.proto,
            sport: self.tuples.ports[2 * d],
            dport: self.tuples.ports[2 * d + 1],
        }
    }

    /// The inverse of the reply tuple (the original direction as NAT has made it so far), read
    /// in place rather than built and inverted; `None` for an ICMP type without an answer.
    pub(crate) fn reply_inverse(&self) -> Option<Tuple> {
        if crate::tuple::is_icmp(self.tuples.proto) {
            return self.reply().invert();
        }
        Some(Tuple {
            src: self.addr(3),
            dst: self.addr(2),
            proto: self.tuples.proto,
            sport: self.tuples.ports[3],
            dport: self.tuples.ports[2],
        })
    }

    pub fn zone(&self) -> Zone {
        self.zone
    }

    pub fn status(&self) -> Status {
        self.status
    }

    pub fn proto(&self) -> &ProtoState {
        &self.proto
    }

    pub fn counter(&self, dir: Direction) -> Counter {
        self.counters
            .as_deref()
            .and_then(|c| c.c.get(dir.index()))
            .copied()
            .unwrap_or_default()
    }

    pub fn original(&self) -> Tuple {
        self.tuple(Direction::Original)
    }

    pub fn reply(&self) -> Tuple {
        self.tuple(Direction::Reply)
    }

    pub fn l4proto(&self) -> u8 {
        self.tuples.proto
    }

    pub fn is_confirmed(&self) -> bool {
        self.status.contains(Status::CONFIRMED)
    }

    pub fn is_assured(&self) -> bool {
        self.status.contains(Status::ASSURED)
    }

    pub fn is_offloaded(&self) -> bool {
        self.status.intersects(Status::OFFLOAD | Status::HW_OFFLOAD)
    }

    pub fn tcp_state(&self) -> Option<crate::tcp::TcpState> {
        match &self.proto {
            ProtoState::Tcp(t) => Some(t.state),
            _ => None,
        }
    }

    pub fn sctp_state(&self) -> Option<crate::sctp::SctpState> {
        match &self.proto {
            ProtoState::Sctp(t) => Some(t.state),
            _ => None,
        }
    }

    /// When the connection expires if no packet refreshes it.
    pub fn deadline(&self) -> Duration {
        from_ns(self.deadline_ns)
    }

    pub(crate) fn set_deadline(&mut self, d: Duration) {
        self.deadline_ns = ns(d);
    }

    /// `ct label`, 128 bits.
    pub fn labels(&self) -> u128 {
        self.ext.as_ref().map_or(0, |e| e.labels)
    }

    pub fn set_labels(&mut self, labels: u128) {
        if labels != 0 || self.ext.is_some() {
            self.ext.get_or_insert_with(Box::default).labels = labels;
        }
    }

    /// `ct helper set`: the helper's name, if one was attached.
    pub fn helper(&self) -> Option<&str> {
        self.ext.as_ref().and_then(|e| e.helper.as_deref())
    }

    /// `ct secmark`.
    pub fn secmark(&self) -> u32 {
        self.ext.as_ref().map_or(0, |e| e.secmark)
    }

    pub fn set_secmark(&mut self, secmark: u32) {
        if secmark != 0 || self.ext.is_some() {
            self.ext.get_or_insert_with(Box::default).secmark = secmark;
        }
    }

    /// The connection whose expectation this one fulfilled.
    pub fn master(&self) -> Option<crate::table::ConnId> {
        self.ext.as_ref().and_then(|e| e.master)
    }

    /// Whether the connection has a helper or announced an expectation (the kernel's
    /// helper extension).
    pub fn has_help(&self) -> bool {
        self.ext
            .as_ref()
            .is_some_and(|e| e.help || e.helper.is_some())
    }

    /// The timeout policy `ct timeout set` gave the connection, if any.
    pub fn timeouts(&self) -> Option<&crate::status::Timeouts> {
        self.ext.as_ref().and_then(|e| e.timeouts.as_deref())
    }

    /// The synproxy state, for a connection whose handshake the router answered.
    pub fn synproxy(&self) -> Option<&Synproxy> {
        self.ext.as_ref().and_then(|e| e.synproxy.as_deref())
    }

    /// Sets the synproxy state; with sequence adjustment on, the connection is marked
    /// `SEQ_ADJUST` (which keeps it off the flowtable, as in the kernel). Through
    /// [`Table::set_synproxy`](crate::Table::set_synproxy), which counts such connections.
    pub(crate) fn set_synproxy(&mut self, sp: Synproxy) {
        if sp.established {
            self.status.insert(Status::SEQ_ADJUST);
        }
        let e = self.ext.get_or_insert_with(Box::default);
        match e.synproxy.as_deref_mut() {
            Some(s) => *s = sp,
            None => e.synproxy = Some(Box::new(sp)),
        }
    }

    /// Time left before expiry (`ct expiration`), zero once past.
    pub fn remaining(&self, now: Duration) -> Duration {
        self.deadline().saturating_sub(now)
    }

    /// The timeout of the connection's state (its `ct timeout` policy's, else `table`'s): what
    /// a packet that leaves the state as it is gives it, and what it gets back when its flow
    /// leaves the flowtable.
    pub(crate) fn state_timeout(&self, table: &Timeouts) -> Duration {
        let t = self.timeouts().unwrap_or(table);
        match &self.proto {
            ProtoState::Tcp(track) => track.state.timeout(t),
            ProtoState::Udp { .. } if self.status.contains(Status::ASSURED) => t.udp_replied,
            ProtoState::Udp { .. } => t.udp_unreplied,
            ProtoState::Icmp if self.l4proto() == PROTO_ICMPV6 => t.icmpv6,
            ProtoState::Icmp => t.icmp,
            ProtoState::Sctp(track) => track.state.timeout(t),
            ProtoState::Generic => t.generic,
        }
    }

    /// The seconds `conntrack -L` shows. Offloaded (TCP established, UDP), the kernel's value:
    /// a day from when the flow was added, counting down and put back to a day when under five
    /// minutes are left, so it never nears 0. The real deadline, which the flowtable's teardown
    /// goes by, is left as the slow path set it.
    fn listed_secs(&self, now: Duration, timeouts: &Timeouts) -> u64 {
        let kernel_day = self.is_offloaded()
            && match &self.proto {
                ProtoState::Tcp(t) => t.state == crate::tcp::TcpState::Established,
                ProtoState::Udp { .. } => true,
                _ => false,
            };
        if !kernel_day {
            return self.remaining(now).as_secs();
        }
        // the deadline is from the slow path's last packet, normally the one that offloaded it
        let since = self.deadline().saturating_sub(self.state_timeout(timeouts));
        let elapsed = now.saturating_sub(since).as_secs();
        OFFLOAD_CT_DAY - elapsed % (OFFLOAD_CT_DAY - OFFLOAD_CT_MIN)
    }

    /// `ct expiration` in milliseconds, as nft reads it.
    pub fn expiration_ms(&self, now: Duration) -> u64 {
        u64::try_from(self.remaining(now).as_millis()).unwrap_or(u64::MAX)
    }

    /// Expired at `now`? An offloaded connection never is: the flowtable keeps it alive.
    pub fn expired(&self, now: Duration) -> bool {
        self.expired_ns(ns(now))
    }

    /// [`expired`](Self::expired) with `now` already in nanoseconds (GC converts it once).
    #[inline]
    pub(crate) fn expired_ns(&self, now_ns: u64) -> bool {
        !self.is_offloaded() && self.deadline_ns <= now_ns
    }

    pub fn label(&self, bit: u8) -> bool {
        bit < 128 && self.labels() & (1u128 << bit) != 0
    }

    /// Attaches a helper by name, as `ct helper set` does for a new connection.
    pub fn set_helper(&mut self, name: &str) {
        self.ext.get_or_insert_with(Box::default).helper = Some(name.into());
        self.status.insert(Status::HELPER);
    }

    pub fn set_label(&mut self, bit: u8) {
        if bit < 128 {
            let l = self.labels() | 1u128 << bit;
            self.set_labels(l);
        }
    }

    /// The line `conntrack -L` prints for this connection (libnetfilter_conntrack's default
    /// format), without a trailing newline. `accounting` adds the per-direction counters as
    /// `conntrack -L` does when `nf_conntrack_acct` is on. (An offloaded connection's timeout
    /// is placed as under the default timeouts; [`Table::list`](crate::Table::list) uses the
    /// table's.)
    pub fn listing(&self, now: Duration, accounting: bool) -> String {
        self.listing_refs(now, accounting, 0, &Timeouts::default())
    }

    /// [`Conn::listing`] with `children` connections holding a reference to this one (those
    /// that fulfilled its expectations), which `use=` counts, and the table's `timeouts`.
    pub(crate) fn listing_refs(
        &self,
        now: Duration,
        accounting: bool,
        children: u32,
        timeouts: &Timeouts,
    ) -> String {
        let mut s = String::with_capacity(192);
        let proto = self.l4proto();
        let _ = write!(
            s,
            "{:<8} {} {} ",
            proto_name(proto),
            proto,
            self.listed_secs(now, timeouts)
        );
        match &self.proto {
            ProtoState::Tcp(t) => {
                let _ = write!(s, "{} ", t.state.name());
            }
            ProtoState::Sctp(t) => {
                let _ = write!(s, "{} ", t.state.name());
            }
            _ => {}
        }
        let _ = write!(s, "{} ", self.original());
        if accounting {
            let c = self.counter(Direction::Original);
            let _ = write!(s, "packets={} bytes={} ", c.packets, c.bytes);
        }
        if !self.status.contains(Status::SEEN_REPLY) {
            s.push_str("[UNREPLIED] ");
        }
        let _ = write!(s, "{} ", self.reply());
        if accounting {
            let c = self.counter(Direction::Reply);
            let _ = write!(s, "packets={} bytes={} ", c.packets, c.bytes);
        }
        if self.status.contains(Status::HW_OFFLOAD) {
            s.push_str("[HW_OFFLOAD] ");
        } else if self.status.contains(Status::OFFLOAD) {
            s.push_str("[OFFLOAD] ");
        } else if self.status.contains(Status::ASSURED) {
            s.push_str("[ASSURED] ");
        }
        let _ = write!(s, "mark={} ", self.mark);
        if self.zone != 0 {
            let _ = write!(s, "zone={} ", self.zone);
        }
        // The flowtable holds a reference to an offloaded connection, as in the kernel.
        let _ = write!(s, "use={}", 1 + u32::from(self.is_offloaded()) + children);
        s
    }
}

/// The protocol name conntrack-tools prints (`__proto2str`).
pub fn proto_name(proto: u8) -> &'static str {
    match proto {
        PROTO_TCP => "tcp",
        PROTO_UDP => "udp",
        PROTO_UDPLITE => "udplite",
        PROTO_ICMP => "icmp",
        PROTO_ICMPV6 => "icmpv6",
        PROTO_SCTP => "sctp",
        PROTO_GRE => "gre",
        PROTO_DCCP => "dccp",
        _ => "unknown",
    }
}
