//! The router engine: the topology it runs on, the FIB, neighbours, the compiled ruleset and
//! the packet pipeline of `../shared/DESIGN.md` ([`router::Router`]).

#![forbid(unsafe_code)]

pub mod admission;
pub mod answer;
pub mod counters;
pub mod defrag;
pub mod extmatch;
pub mod fib;
pub mod gso;
pub mod hdr;
pub mod l2;
pub mod offload;
pub mod router;
pub mod rules;
pub mod synproxy;
pub mod topology;

pub use router::{Config, Frame, Port, Router, Sent, TxFrame};

/// The engine's maps hash with foldhash rather than SipHash: they are read per packet, and
/// each module that uses one says why its keys allow it.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;

/// `now` as nanoseconds, saturating (585 years), as rules and synproxy cookies read it.
pub(crate) fn now_ns(now: std::time::Duration) -> u64 {
    now.as_nanos().min(u64::MAX as u128) as u64
}
