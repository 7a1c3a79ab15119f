//! One tracked connection (`struct nf_conn`) and its `conntrack -L` line.

use crate::status::Status;
use crate::tcp::TcpTrack;
use crate::tuple::{
    Direction, Tuple, Zone, PROTO_DCCP, PROTO_GRE, PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP,
    PROTO_UDP, PROTO_UDPLITE,
};
use core::fmt::Write as _;
use core::time::Duration;

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
    Generic,
}

/// Packets and bytes in one direction (bytes count the IP packet, header included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conn {
    /// `tuples[0]` is the original direction, `tuples[1]` the reply, which reflects NAT. Only
    /// the table changes them: they are its keys.
    pub(crate) tuples: [Tuple; 2],
    pub(crate) zone: Zone,
    pub(crate) status: Status,
    /// `ct mark`.
    pub mark: u32,
    /// A number unique over the table's life, for listings and events.
    pub id: u32,
    /// The interface a masquerade binding took its address from, when its number fits
    /// ([`NO_MASQ`]: none, or in `ext`). Most connections of a home router have one: in
    /// `ext` alone it cost an allocation per connection; here it takes 2 bytes of padding,
    /// so a connection is no larger.
    pub(crate) masq_ifindex: u16,
    pub(crate) proto: ProtoState,
    /// Only with accounting (`nf_conntrack_acct`, off by default): 8 bytes a connection
    /// instead of 32 when off.
    pub(crate) counters: Option<Box<[Counter; 2]>>,
    /// What few connections have (labels, a helper, a masquerade interface), apart so
    /// that the others pay 8 bytes for it.
    pub(crate) ext: Option<Box<Ext>>,
    /// Creation time and expiry, in nanoseconds of `now` (8 bytes each, not 16).
    pub(crate) created_ns: u64,
    pub(crate) deadline_ns: u64,
}

/// The rarely set parts of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Ext {
    /// `ct label`, 128 bits.
    pub labels: u128,
    /// The interface a masquerade binding took its address from, to forget the binding when
    /// that address goes away, when its number is too large for `Conn::masq_ifindex`.
    pub masq_ifindex: Option<u32>,
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
}

/// [`Conn::masq_ifindex`] when the connection has no masquerade binding held inline.
pub(crate) const NO_MASQ: u16 = u16::MAX;

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

impl Conn {
    /// The counters of a direction, to add to (allocated with the first count).
    pub(crate) fn counter_mut(&mut self, dir: Direction) -> &mut Counter {
        let c = self.counters.get_or_insert_with(Box::default);
        &mut c[dir.index() & 1]
    }

    pub fn tuple(&self, dir: Direction) -> &Tuple {
        &self.tuples[dir.index()]
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
            .and_then(|c| c.get(dir.index()))
            .copied()
            .unwrap_or_default()
    }

    pub fn original(&self) -> &Tuple {
        &self.tuples[0]
    }

    pub fn reply(&self) -> &Tuple {
        &self.tuples[1]
    }

    pub fn l4proto(&self) -> u8 {
        self.tuples[0].proto
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

    /// When the connection expires if no packet refreshes it.
    pub fn deadline(&self) -> Duration {
        from_ns(self.deadline_ns)
    }

    pub(crate) fn set_deadline(&mut self, d: Duration) {
        self.deadline_ns = ns(d);
    }

    /// When the connection was made.
    pub fn created(&self) -> Duration {
        from_ns(self.created_ns)
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

    /// The interface a masquerade binding took its address from.
    pub fn masq_ifindex(&self) -> Option<u32> {
        if self.masq_ifindex != NO_MASQ {
            return Some(self.masq_ifindex.into());
        }
        self.ext.as_ref().and_then(|e| e.masq_ifindex)
    }

    pub(crate) fn set_masq_ifindex(&mut self, ifindex: u32) {
        match u16::try_from(ifindex) {
            Ok(i) if i != NO_MASQ => self.masq_ifindex = i,
            _ => {
                self.masq_ifindex = NO_MASQ;
                self.ext.get_or_insert_with(Box::default).masq_ifindex = Some(ifindex);
            }
        }
    }

    /// Time left before expiry (`ct expiration`), zero once past.
    pub fn remaining(&self, now: Duration) -> Duration {
        self.deadline().saturating_sub(now)
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
    /// `conntrack -L` does when `nf_conntrack_acct` is on.
    pub fn listing(&self, now: Duration, accounting: bool) -> String {
        self.listing_refs(now, accounting, 0)
    }

    /// [`Conn::listing`] with `children` connections holding a reference to this one (those
    /// that fulfilled its expectations), which `use=` counts.
    pub(crate) fn listing_refs(&self, now: Duration, accounting: bool, children: u32) -> String {
        let mut s = String::with_capacity(192);
        let proto = self.l4proto();
        let _ = write!(
            s,
            "{:<8} {} {} ",
            proto_name(proto),
            proto,
            self.remaining(now).as_secs()
        );
        if let ProtoState::Tcp(t) = &self.proto {
            let _ = write!(s, "{} ", t.state.name());
        }
        let _ = write!(s, "{} ", self.tuples[0]);
        if accounting {
            let c = self.counter(Direction::Original);
            let _ = write!(s, "packets={} bytes={} ", c.packets, c.bytes);
        }
        if !self.status.contains(Status::SEEN_REPLY) {
            s.push_str("[UNREPLIED] ");
        }
        let _ = write!(s, "{} ", self.tuples[1]);
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
