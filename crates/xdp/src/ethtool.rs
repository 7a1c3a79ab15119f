//! Receive aggregation (GRO, LRO) on a device, what `ethtool -k/-K DEV gro|lro` reads and
//! sets, through the `SIOCETHTOOL` ioctl (`ETHTOOL_GGRO`/`SGRO`, `ETHTOOL_GFLAGS`/`SFLAGS`
//! with `ETH_FLAG_LRO`).
//!
//! A router that reads frames as the driver hands them up (AF_PACKET) or that forwards them
//! (XDP generic mode sees the skb) wants them as they were on the wire: with GRO or LRO a
//! burst of TCP segments arrives as one 64 KB aggregate, above the egress MTU. The ioctls
//! act on a device of the calling thread's network namespace.

use std::ffi::c_void;
use std::os::fd::AsRawFd;

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

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

/// One `SIOCETHTOOL` request on `device`; `data` is the command's struct (its first field
/// the command), which the kernel reads and fills in.
///
/// # Safety
///
/// `data` points to a live, writable struct of the size the command in it reads and writes.
unsafe fn request(device: &str, call: &'static str, data: *mut c_void) -> Result<(), EthtoolError> {
    let fail = |source| EthtoolError {
        device: device.to_string(),
        call,
        source,
    };
    if device.is_empty() || device.len() >= 16 {
        return Err(fail(std::io::Error::from_raw_os_error(libc::ENODEV)));
    }
    let mut req = IfReq {
        name: [0; 16],
        data,
        pad: [0; 16],
    };
    req.name[..device.len()].copy_from_slice(device.as_bytes());
    let fd = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| fail(e.into()))?;
    // SAFETY: SIOCETHTOOL with a live ifreq whose data is the command's struct, as the caller
    // guarantees; the kernel reads and writes only inside the two.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCETHTOOL as _, &mut req as *mut IfReq) };
    if r != 0 {
        return Err(fail(std::io::Error::last_os_error()));
    }
    Ok(())
}

fn ioctl(device: &str, call: &'static str, cmd: u32, data: u32) -> Result<u32, EthtoolError> {
    let mut v = Value { cmd, data };
    // SAFETY: `v` is a live `struct ethtool_value`, the size every command used here reads
    // and writes.
    unsafe { request(device, call, &mut v as *mut Value as *mut c_void) }?;
    Ok(v.data)
}

/// The driver of `device` (`ethtool -i`, `ETHTOOL_GDRVINFO`).
pub fn driver(device: &str) -> Result<String, EthtoolError> {
    /// `struct ethtool_drvinfo`: the driver's name, then version strings and counts.
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        rest: [u8; 32 * 4 + 12 + 20],
    }
    const ETHTOOL_GDRVINFO: u32 = 3;
    let mut info = DrvInfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        rest: [0; 32 * 4 + 12 + 20],
    };
    // SAFETY: `info` is a live `struct ethtool_drvinfo` of the kernel's size (196 bytes).
    unsafe {
        request(
            device,
            "ETHTOOL_GDRVINFO",
            &mut info as *mut DrvInfo as *mut c_void,
        )
    }?;
    let end = info.driver.iter().position(|&c| c == 0).unwrap_or(32);
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
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
    use crate::offload::{ifindex_of, monotonic_now};
    use std::time::Duration;

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

    /// Names the kernel cannot have are errors (or index 0), never a panic.
    #[test]
    fn device_lookups_without_root() {
        for bad in ["", "a-name-longer-than-15", "nosuchdev0"] {
            let e = driver(bad).unwrap_err();
            assert_eq!((e.device.as_str(), e.call), (bad, "ETHTOOL_GDRVINFO"));
            assert_eq!(e.source.raw_os_error(), Some(libc::ENODEV), "{e}");
            assert_eq!(ifindex_of(bad), 0);
        }
        assert_eq!(ifindex_of("lo\0x"), 0);
        // lo is always device 1 (where the sandbox has one)
        assert!(matches!(ifindex_of("lo"), 0 | 1));
        let (a, b) = (monotonic_now(), monotonic_now());
        assert!(a > Duration::ZERO && b >= a, "{a:?} {b:?}");
    }
}
