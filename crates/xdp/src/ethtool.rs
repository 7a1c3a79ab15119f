//! Receive aggregation (GRO, LRO) on a device, what `ethtool -k/-K DEV gro|lro` reads and
//! sets, through the `SIOCETHTOOL` ioctl (`ETHTOOL_GGRO`/`SGRO`, `ETHTOOL_GFLAGS`/`SFLAGS`
//! with `ETH_FLAG_LRO`).
//!
//! A router that reads frames as the driver hands them up (AF_PACKET) or that forwards them
//! (XDP generic mode sees the skb) wants them as they were on the wire: with GRO or LRO a
//! burst of TCP segments arrives as one 64 KB aggregate, above the egress MTU. The ioctls
//! act on a device of the calling thread's network namespace.

use std::ffi::c_void;

/// One of the two settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    Gro,
    Lro,
}

impl core::fmt::Display for Aggregation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Aggregation::Gro => "GRO",
            Aggregation::Lro => "LRO",
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{device}: ethtool {call}: {source}")]
pub struct EthtoolError {
    pub device: String,
    pub call: &'static str,
    #[source]
    pub source: std::io::Error,
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GFLAGS: u32 = 0x25;
const ETHTOOL_SFLAGS: u32 = 0x26;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;
const ETH_FLAG_LRO: u32 = 1 << 15;

/// `struct ethtool_value`.
#[repr(C)]
struct Value {
    cmd: u32,
    data: u32,
}

/// `struct ifreq` with `ifr_data`.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    data: *mut c_void,
    pad: [u8; 16],
}

fn ioctl(device: &str, call: &'static str, cmd: u32, data: u32) -> Result<u32, EthtoolError> {
    let fail = |source| EthtoolError {
        device: device.to_string(),
        call,
        source,
    };
    if device.is_empty() || device.len() >= 16 {
        return Err(fail(std::io::Error::from_raw_os_error(libc::ENODEV)));
    }
    let mut v = Value { cmd, data };
    let mut req = IfReq {
        name: [0; 16],
        data: &mut v as *mut Value as *mut c_void,
        pad: [0; 16],
    };
    req.name[..device.len()].copy_from_slice(device.as_bytes());
    // SAFETY: a plain socket(2); the result is checked and closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(fail(std::io::Error::last_os_error()));
    }
    // SAFETY: SIOCETHTOOL with an ifreq whose data points to a live `struct ethtool_value`,
    // the size every command used here reads and writes.
    let r = unsafe { libc::ioctl(fd, SIOCETHTOOL as _, &mut req as *mut IfReq) };
    let e = std::io::Error::last_os_error();
    // SAFETY: fd is ours and closed once.
    unsafe { libc::close(fd) };
    if r != 0 {
        return Err(fail(e));
    }
    Ok(v.data)
}

/// Whether `what` is on for `device`.
pub fn get(device: &str, what: Aggregation) -> Result<bool, EthtoolError> {
    match what {
        Aggregation::Gro => Ok(ioctl(device, "ETHTOOL_GGRO", ETHTOOL_GGRO, 0)? != 0),
        Aggregation::Lro => {
            Ok(ioctl(device, "ETHTOOL_GFLAGS", ETHTOOL_GFLAGS, 0)? & ETH_FLAG_LRO != 0)
        }
    }
}

/// Turns `what` on or off for `device` (the device must let it change: a driver without
/// LRO refuses to turn it on, and turning it off is then a no-op).
pub fn set(device: &str, what: Aggregation, on: bool) -> Result<(), EthtoolError> {
    match what {
        Aggregation::Gro => {
            ioctl(device, "ETHTOOL_SGRO", ETHTOOL_SGRO, u32::from(on))?;
        }
        Aggregation::Lro => {
            let flags = ioctl(device, "ETHTOOL_GFLAGS", ETHTOOL_GFLAGS, 0)?;
            let flags = if on {
                flags | ETH_FLAG_LRO
            } else {
                flags & !ETH_FLAG_LRO
            };
            ioctl(device, "ETHTOOL_SFLAGS", ETHTOOL_SFLAGS, flags)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_device_names_are_errors() {
        let e = get("", Aggregation::Gro).unwrap_err();
        assert_eq!(e.source.raw_os_error(), Some(libc::ENODEV));
        assert!(get("averyveryverylongname", Aggregation::Lro).is_err());
        let e = get("nft-no-such0", Aggregation::Gro).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("nft-no-such0: ethtool ETHTOOL_GGRO: "),
            "{e}"
        );
    }

    #[test]
    fn loopback_answers() {
        // lo has neither, and says so (or the sandbox has no lo: nothing to check)
        if let Ok(on) = get("lo", Aggregation::Lro) {
            assert!(!on);
        }
    }
}
