//! The XDP programs of nft-offload and their loader.
//!
//! The programs are C (`bpf/*.c`), built by `build.rs` with clang `-target bpf`. Without
//! clang the crate still builds: [`object`] returns `None`, and callers fall back to software
//! with [`NOT_BUILT`] as the message.

// `unsafe` here is the loader's and the sockets' system calls; each block says why it is sound.
#![deny(clippy::undocumented_unsafe_blocks)]

/// What callers say when a program is missing.
pub const NOT_BUILT: &str =
    "the XDP program was not built (clang or libbpf-dev missing at build time)";

/// Whether the BPF objects were built.
pub const fn built() -> bool {
    cfg!(xdp_built)
}

pub mod ethtool;
pub mod gen;
pub mod load;
pub mod offload;
pub mod offload_layout;
pub mod steer;

pub use offload::{Chain, XdpOffload, XdpOffloadConfig, XdpOffloadError};
pub use steer::{Steer, SteerConfig, SteerError};
