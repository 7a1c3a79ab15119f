//! Packet sources and sinks for the offline simulator, and the seeded traffic generator.
//!
//! * [`pcapng`]: a streaming reader ([`PcapngReader`], an iterator of [`Frame`]s named after the
//!   capture's interface blocks) and a writer ([`PcapngWriter`]) that names each packet's
//!   interface, with nanosecond timestamps so they survive a round trip.
//! * [`pcap`]: classic libpcap files, every packet on one interface the caller names.
//! * [`open_capture`] sniffs which of the two a file is.
//! * [`afpacket`] (Linux): a live interface through AF_PACKET with a TPACKET_V3 receive ring,
//!   in bursts.
//! * [`afxdp`] (Linux): a live interface queue through an AF_XDP socket (UMEM and four rings),
//!   in bursts, with frames lent in place and sent back out of the same UMEM frame.
//! * [`netns`] (Linux): throwaway network namespaces and veth pairs for live tests.
//! * [`gen`]: realistic, seeded traffic for a home router (TCP, UDP, ICMP, port forwards and
//!   deliberately malformed frames), frames written at the interface they arrive on.
//!
//! ```
//! use nft_io::{generate, GenConfig, PcapngReader};
//!
//! // A minute of a home router's traffic, the same for the same seed.
//! let traffic = generate(&GenConfig::home(42, 50)).unwrap();
//! println!("{}", traffic.summary);
//! let capture = traffic.write_pcapng(Vec::new()).unwrap();
//!
//! let frames: Vec<_> = PcapngReader::new(&capture[..]).unwrap().collect::<Result<_, _>>().unwrap();
//! assert_eq!(frames, traffic.frames);
//! assert!(frames.iter().all(|f| f.iface == "lan" || f.iface == "eth1"));
//! ```
//!
//! Nothing here reads the clock: timestamps come from the capture or from the generator's seed.

#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

// The socket and ring code is the one place that needs `unsafe`; each block says why it is sound.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub mod afpacket;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub mod afxdp;
pub mod capture;
pub mod gen;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub mod netns;
pub mod pcap;
pub mod pcapng;

pub use capture::{open_capture, read_capture, CaptureError, CaptureReader, Frame};
pub use gen::{generate, GenConfig, Generated};
pub use pcap::PcapReader;
pub use pcapng::{write_pcapng, PcapngReader, PcapngWriter};
