//! The router engine: the topology it runs on, the FIB, neighbours, the compiled ruleset and
//! the packet pipeline of `../shared/DESIGN.md` ([`router::Router`]).

#![forbid(unsafe_code)]

pub mod admission;
pub mod answer;
pub mod counters;
pub mod defrag;
pub mod extmatch;
pub mod fib;
pub mod hdr;
pub mod l2;
pub mod offload;
pub mod router;
pub mod rules;
pub mod synproxy;
pub mod topology;

pub use router::{Config, Frame, Port, Router, Sent, TxFrame};
