//! What nft reads from a connection: `ct state`, `ct status`, and the timeouts behind
//! `ct expiration`.

use core::time::Duration;

/// `ct status` bits, with the kernel's values (`enum ip_conntrack_status`), so a value printed
/// or compared as a number means the same thing as on Linux.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Status(pub u32);

impl Status {
    pub const EXPECTED: Status = Status(1 << 0);
    pub const SEEN_REPLY: Status = Status(1 << 1);
    pub const ASSURED: Status = Status(1 << 2);
    pub const CONFIRMED: Status = Status(1 << 3);
    pub const SRC_NAT: Status = Status(1 << 4);
    pub const DST_NAT: Status = Status(1 << 5);
    pub const SEQ_ADJUST: Status = Status(1 << 6);
    pub const SRC_NAT_DONE: Status = Status(1 << 7);
    pub const DST_NAT_DONE: Status = Status(1 << 8);
    pub const DYING: Status = Status(1 << 9);
    pub const FIXED_TIMEOUT: Status = Status(1 << 10);
    pub const TEMPLATE: Status = Status(1 << 11);
    pub const HELPER: Status = Status(1 << 13);
    pub const OFFLOAD: Status = Status(1 << 14);
    pub const HW_OFFLOAD: Status = Status(1 << 15);
    pub const NONE: Status = Status(0);

    pub const fn bits(self) -> u32 {
        self.0
    }

    pub const fn contains(self, other: Status) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn intersects(self, other: Status) -> bool {
        self.0 & other.0 != 0
    }

    pub fn insert(&mut self, other: Status) {
        self.0 |= other.0;
    }

    pub fn remove(&mut self, other: Status) {
        self.0 &= !other.0;
    }

    /// The names nft uses for the bits it knows, in bit order (`ct status snat,assured`).
    pub fn nft_names(self) -> Vec<&'static str> {
        const NAMES: [(Status, &str); 9] = [
            (Status::EXPECTED, "expected"),
            (Status::SEEN_REPLY, "seen-reply"),
            (Status::ASSURED, "assured"),
            (Status::CONFIRMED, "confirmed"),
            (Status::SRC_NAT, "snat"),
            (Status::DST_NAT, "dnat"),
            (Status::DYING, "dying"),
            (Status::OFFLOAD, "offload"),
            (Status::HW_OFFLOAD, "hw-offload"),
        ];
        NAMES
            .iter()
            .filter(|(b, _)| self.contains(*b))
            .map(|(_, n)| *n)
            .collect()
    }
}

impl core::ops::BitOr for Status {
    type Output = Status;
    fn bitor(self, rhs: Status) -> Status {
        Status(self.0 | rhs.0)
    }
}

/// `ct state` of a packet. The bit values are nft's (`NF_CT_STATE_*_BIT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtState {
    Invalid,
    Established,
    Related,
    New,
    Untracked,
}

impl CtState {
    pub const fn nft_bit(self) -> u32 {
        match self {
            CtState::Invalid => 1,
            CtState::Established => 2,
            CtState::Related => 4,
            CtState::New => 8,
            CtState::Untracked => 64,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            CtState::Invalid => "invalid",
            CtState::Established => "established",
            CtState::Related => "related",
            CtState::New => "new",
            CtState::Untracked => "untracked",
        }
    }
}

/// Timeouts per protocol state. [`Default`] gives Linux's defaults (nf_conntrack_proto_*.c).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_syn_sent: Duration,
    pub tcp_syn_recv: Duration,
    pub tcp_established: Duration,
    pub tcp_fin_wait: Duration,
    pub tcp_close_wait: Duration,
    pub tcp_last_ack: Duration,
    pub tcp_time_wait: Duration,
    pub tcp_close: Duration,
    pub tcp_syn_sent2: Duration,
    /// After `tcp_max_retrans` identical segments, or while the peer's window is zero.
    pub tcp_retrans: Duration,
    /// While data sent in either direction is not yet acknowledged.
    pub tcp_unacknowledged: Duration,
    pub udp_unreplied: Duration,
    /// Once replied and still active two seconds after creation (`UDP_CT_REPLIED`, the
    /// stream timeout).
    pub udp_replied: Duration,
    pub icmp: Duration,
    pub icmpv6: Duration,
    /// SCTP, by state number ([`crate::SctpState`]; `NONE` first).
    pub sctp: [Duration; 9],
    pub generic: Duration,
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

impl Timeouts {
    /// These timeouts with the states a `ct timeout` policy names (in seconds) replaced, for
    /// a connection of transport protocol `proto` (`ctnl_timeout_parse_policy`: what the
    /// policy leaves out keeps its default). Unknown state names are reported back.
    pub fn with_policy(&self, proto: u8, policy: &[(String, u64)]) -> Result<Timeouts, String> {
        let mut t = self.clone();
        for (name, secs) in policy {
            let d = Duration::from_secs(*secs);
            let field = match (proto, name.as_str()) {
                (6, "syn_sent") => &mut t.tcp_syn_sent,
                (6, "syn_recv") => &mut t.tcp_syn_recv,
                (6, "established") => &mut t.tcp_established,
                (6, "fin_wait") => &mut t.tcp_fin_wait,
                (6, "close_wait") => &mut t.tcp_close_wait,
                (6, "last_ack") => &mut t.tcp_last_ack,
                (6, "time_wait") => &mut t.tcp_time_wait,
                (6, "close") => &mut t.tcp_close,
                (6, "syn_sent2") => &mut t.tcp_syn_sent2,
                (6, "retrans") => &mut t.tcp_retrans,
                (6, "unacknowledged" | "unack") => &mut t.tcp_unacknowledged,
                (17 | 136, "unreplied") => &mut t.udp_unreplied,
                (17 | 136, "replied") => &mut t.udp_replied,
                (1, "timeout") => &mut t.icmp,
                (58, "timeout") => &mut t.icmpv6,
                (132, n) if crate::sctp::SctpState::from_policy_name(n).is_some() => {
                    let st = crate::sctp::SctpState::from_policy_name(n).map_or(0, |s| s as usize);
                    &mut t.sctp[st]
                }
                (_, "timeout" | "unreplied") => &mut t.generic,
                (_, other) => return Err(format!("timeout state {other} for protocol {proto}")),
            };
            *field = d;
        }
        // NONE (a new association) goes with CLOSED, as `sctp_timeout_nlattr_to_obj` sets it
        t.sctp[0] = t.sctp[1];
        Ok(t)
    }

    /// The timeout a new connection of `proto` starts with (the policy's first value, which
    /// `nft_ct_timeout_obj_eval` gives an unconfirmed connection).
    pub fn new_conn(&self, proto: u8) -> Duration {
        match proto {
            6 => self.tcp_syn_sent,
            17 | 136 => self.udp_unreplied,
            1 => self.icmp,
            58 => self.icmpv6,
            132 => self.sctp[0],
            _ => self.generic,
        }
    }
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            tcp_syn_sent: secs(120),
            tcp_syn_recv: secs(60),
            tcp_established: secs(5 * 24 * 3600),
            tcp_fin_wait: secs(120),
            tcp_close_wait: secs(60),
            tcp_last_ack: secs(30),
            tcp_time_wait: secs(120),
            tcp_close: secs(10),
            tcp_syn_sent2: secs(120),
            tcp_retrans: secs(300),
            tcp_unacknowledged: secs(300),
            udp_unreplied: secs(30),
            udp_replied: secs(120),
            icmp: secs(30),
            icmpv6: secs(30),
            sctp: crate::sctp::DEFAULT_TIMEOUTS,
            generic: secs(600),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_and_bits() {
        let s = Status::SEEN_REPLY | Status::ASSURED | Status::CONFIRMED | Status::SRC_NAT;
        assert_eq!(s.bits(), 0b1_1110);
        assert_eq!(
            s.nft_names(),
            ["seen-reply", "assured", "confirmed", "snat"]
        );
        assert!(s.contains(Status::ASSURED));
        assert!(!s.contains(Status::ASSURED | Status::DYING));
    }

    #[test]
    fn linux_default_timeouts() {
        let t = Timeouts::default();
        assert_eq!(t.tcp_established.as_secs(), 432_000);
        assert_eq!(t.tcp_close.as_secs(), 10);
        assert_eq!(t.udp_unreplied.as_secs(), 30);
        assert_eq!(t.generic.as_secs(), 600);
    }
}
