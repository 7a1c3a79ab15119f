//! A traffic generator for live benchmarks (`bpf/gen.c`): 60-byte UDP frames of `flows`
//! flows sent out of a device by the kernel's XDP live-frames test mode, faster than a
//! socket can send them on veth. See `examples/livegen.rs`.

use std::os::fd::{AsFd, AsRawFd};

use aya::maps::{Array, MapData};
use aya::programs::Xdp;
use aya::{Ebpf, EbpfLoader};

use crate::offload::{test_run_live_fd, XdpOffloadError};

#[cfg(xdp_built)]
static GEN_OBJECT: Option<&[u8]> =
    Some(aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/gen.o")) as &[u8]);
#[cfg(not(xdp_built))]
static GEN_OBJECT: Option<&[u8]> = None;

/// `struct gen_cfg`.
#[repr(C)]
#[derive(Clone, Copy)]
struct GenCfg {
    ifindex: u32,
    flows: u16,
    sport: u16,
    frame: [u8; 64],
}

// SAFETY: plain data of fixed layout, no padding (4 + 2 + 2 + 64 bytes).
unsafe impl aya::Pod for GenCfg {}

/// The loaded generator, sending out of one device.
pub struct LiveGen {
    ebpf: Ebpf,
    ifindex: u32,
}

fn err<E: std::error::Error>(e: E) -> XdpOffloadError {
    XdpOffloadError::Load(e.to_string())
}

impl LiveGen {
    /// Loads the program: frames made from `frame` (its first 60 bytes: Ethernet, IPv4, UDP)
    /// leave through `ifindex` (of the calling thread's namespace), source ports `sport ..
    /// sport + flows`.
    pub fn new(
        ifindex: u32,
        frame: &[u8],
        flows: u16,
        sport: u16,
    ) -> Result<LiveGen, XdpOffloadError> {
        if frame.len() < 60 {
            return Err(XdpOffloadError::Load(
                "the frame is shorter than 60 bytes".into(),
            ));
        }
        let mut template = [0u8; 64];
        template[..60].copy_from_slice(&frame[..60]);
        let obj = GEN_OBJECT.ok_or(XdpOffloadError::NotBuilt)?;
        let mut ebpf = EbpfLoader::new().load(obj).map_err(err)?;
        {
            let mut cfg: Array<&mut MapData, GenCfg> = Array::try_from(
                ebpf.map_mut("gen_cfg")
                    .ok_or_else(|| XdpOffloadError::Load("map gen_cfg missing".into()))?,
            )
            .map_err(err)?;
            cfg.set(
                0,
                GenCfg {
                    ifindex,
                    flows: flows.max(1),
                    sport,
                    frame: template,
                },
                0,
            )
            .map_err(err)?;
        }
        let p: &mut Xdp = ebpf
            .program_mut("gen")
            .ok_or_else(|| XdpOffloadError::Load("program gen missing".into()))?
            .try_into()
            .map_err(err)?;
        crate::load::load_retrying(p).map_err(err)?;
        Ok(LiveGen { ebpf, ifindex })
    }

    /// Sends `repeat` frames (`frame`, which the kernel copies into its pages first, then the
    /// template over it), each with the next flow's source port. Returns when the kernel has
    /// handed them all to the device.
    pub fn send(&self, frame: &[u8], repeat: u32) -> Result<(), XdpOffloadError> {
        let p: &Xdp = self
            .ebpf
            .program("gen")
            .ok_or_else(|| XdpOffloadError::Load("program gen missing".into()))?
            .try_into()
            .map_err(err)?;
        let fd = p.fd().map_err(err)?.as_fd().as_raw_fd();
        test_run_live_fd(fd, frame, self.ifindex, repeat).map_err(XdpOffloadError::Load)
    }
}
