//! The router engine: the topology it runs on, the FIB, neighbours, and (as it grows) the
//! compiled ruleset and the packet pipeline of `../shared/DESIGN.md`.

pub mod fib;
pub mod rules;
pub mod topology;
