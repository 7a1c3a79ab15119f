//! Linux AF_XDP: the live router's fast backend. An XDP program on the interface (the
//! steering program of `nft-xdp`) redirects the frames the dataplane forwards into this socket;
//! everything else goes to the kernel as usual.
//!
//! * UMEM: one anonymous mapping of `frame_count` frames of `frame_size` bytes (2048 or 4096),
//!   registered with `XDP_UMEM_REG`. Four single-producer rings are mapped from the socket:
//!   fill and RX (the kernel receives into frames we give it), TX and completion (it sends
//!   frames we hand over and gives them back).
//! * Receive: [`AfXdp::rx_burst`] lends each frame read-only, like `AfPacket::rx_burst`;
//!   [`AfXdp::rx_burst_mut`] lends it writable and lets the caller send it back out of the same
//!   UMEM frame ([`RxAction::Transmit`]), with no copy, after rewriting it in place (the frame
//!   may grow into its 256-byte headroom, e.g. to push a VLAN tag).
//! * Transmit: [`AfXdp::tx_burst`] copies frames into free UMEM frames. In copy mode the
//!   kernel sends at most 32 descriptors per `sendto` kick, so the kick is repeated while it
//!   reports more work and makes progress.
//! * Bind: zero-copy first (the driver DMAs into the UMEM), copy mode when the driver cannot
//!   (veth, anything in generic XDP mode); [`AfXdp::zero_copy`] says which. `XDP_USE_NEED_WAKEUP`
//!   lets the kernel say when a syscall is needed at all.
//!
//! Hand-rolled rather than taken from a crate: the maintained ones either wrap libxdp (a C
//! library and its build) or give no burst API that lends frames in place, and the ring
//! protocol is small (a producer and a consumer index per ring, acquire/release).
//!
//! Frame bookkeeping: every UMEM frame is at any time in exactly one place: the free list, the
//! kernel's receive side (fill ring, being received, RX ring), lent to the caller inside
//! `rx_burst*`, or the kernel's transmit side (TX ring, being sent, completion ring).
//! [`AfXdp::frames`] gives the counts, which always add up to `frame_count`; the unit tests
//! drive the rings with a simulated kernel and check every frame's address is in exactly one
//! place after each step.
//!
//! All `unsafe` of this backend lives here, each block with the reason it is sound.

use std::ffi::CString;
use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

#[cfg(test)]
mod tests;

/// The headroom the kernel leaves before a received frame's data (`XDP_PACKET_HEADROOM`).
pub const XDP_HEADROOM: usize = 256;

/// The error of an AF_XDP operation, naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum AfXdpError {
    /// A system call failed; `call` names it and the option it was about.
    #[error("{call} failed: {source}")]
    Syscall {
        call: &'static str,
        #[source]
        source: io::Error,
    },
    /// No interface has this name (in the calling thread's network namespace).
    #[error("no interface named {0:?}")]
    NoSuchInterface(String),
    /// The geometry is one the kernel would refuse; said here, before any syscall.
    #[error("invalid AF_XDP configuration: {0}")]
    InvalidConfig(&'static str),
}

impl AfXdpError {
    fn last_os(call: &'static str) -> AfXdpError {
        AfXdpError::Syscall {
            call,
            source: io::Error::last_os_error(),
        }
    }
}

/// How the socket binds to the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BindMode {
    /// Zero-copy, else copy.
    #[default]
    Auto,
    /// Copy mode only (`XDP_COPY`).
    Copy,
    /// Zero-copy only (`XDP_ZEROCOPY`); fails on a driver without it.
    ZeroCopy,
}

/// `linux/if_xdp.h` (6.17), not in libc yet.
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;
/// `asm-generic/socket.h`: busy polling options (x86, arm, ... ; not the mips/sparc numbers).
const SO_BUSY_POLL: libc::c_int = 46;
const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;

/// Preferred busy polling (`SO_PREFER_BUSY_POLL`): the receive work of the interface's NAPI
/// (the XDP program, the copy into the UMEM in copy mode) runs when
/// [`AfXdpSet::busy_poll`] asks for it, in the calling thread and on its CPU, instead of in
/// a softirq wherever the device (or, on veth, the sending CPU) scheduled it. For the device
/// to leave its NAPI to the poller, its `napi_defer_hard_irqs` and `gro_flush_timeout` must
/// be set (sysfs; the caller's business): while the application polls within the timeout,
/// the device's own interrupts stay masked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusyPoll {
    /// `SO_BUSY_POLL`: microseconds a blocking receive may spin (any non-zero value turns
    /// busy polling on; `busy_poll` never blocks and polls once).
    pub usecs: u32,
    /// `SO_BUSY_POLL_BUDGET`: frames per NAPI poll.
    pub budget: u16,
}

/// The UMEM and ring geometry. `Default`: 4096 frames of 2048 bytes (8 MiB), rings of 2048,
/// 1024 frames receiving per port (so a set of up to three ports still has frames to send
/// from), zero-copy when the driver has it, `XDP_USE_NEED_WAKEUP`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfXdpConfig {
    /// Bytes per UMEM frame: 2048 or 4096.
    pub frame_size: u32,
    /// Frames in the UMEM; shared between receiving and sending.
    pub frame_count: u32,
    /// Ring sizes, powers of two.
    pub rx_size: u32,
    pub tx_size: u32,
    pub fill_size: u32,
    pub completion_size: u32,
    /// How many frames to keep in the kernel's hands for receiving (at most `fill_size`);
    /// the rest are for transmitting.
    pub rx_frames: u32,
    pub mode: BindMode,
    /// `XDP_USE_NEED_WAKEUP`: syscalls only when the kernel asks for them.
    pub need_wakeup: bool,
    /// Preferred busy polling on every socket, in zero-copy mode (copy-mode sockets have no
    /// NAPI id to poll); `None`: the kernel receives in softirq.
    pub busy_poll: Option<BusyPoll>,
}

impl Default for AfXdpConfig {
    fn default() -> AfXdpConfig {
        AfXdpConfig {
            frame_size: 2048,
            frame_count: 4096,
            rx_size: 2048,
            tx_size: 2048,
            fill_size: 2048,
            completion_size: 2048,
            rx_frames: 1024,
            mode: BindMode::Auto,
            need_wakeup: true,
            busy_poll: None,
        }
    }
}

impl AfXdpConfig {
    fn validate(&self) -> Result<(), AfXdpError> {
        if self.frame_size != 2048 && self.frame_size != 4096 {
            return Err(AfXdpError::InvalidConfig("frame_size must be 2048 or 4096"));
        }
        for s in [
            self.rx_size,
            self.tx_size,
            self.fill_size,
            self.completion_size,
        ] {
            if !s.is_power_of_two() {
                return Err(AfXdpError::InvalidConfig(
                    "ring sizes must be powers of two",
                ));
            }
        }
        if self.frame_count < 2 {
            return Err(AfXdpError::InvalidConfig("frame_count must be at least 2"));
        }
        if self.rx_frames == 0 || self.rx_frames > self.fill_size {
            return Err(AfXdpError::InvalidConfig(
                "rx_frames must be between 1 and fill_size",
            ));
        }
        if self.rx_frames >= self.frame_count {
            return Err(AfXdpError::InvalidConfig(
                "rx_frames must leave frames for transmitting",
            ));
        }
        if (self.frame_size as u64) * (self.frame_count as u64) > (1 << 32) {
            return Err(AfXdpError::InvalidConfig("UMEM larger than 4 GiB"));
        }
        Ok(())
    }
}

/// Counters since the socket was opened: ours, then the kernel's (`XDP_STATISTICS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AfXdpStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    /// Frames offered to `tx_burst` larger than a UMEM frame, skipped.
    pub tx_too_big: u64,
    /// `RxAction::Transmit` when the TX ring was full: the frame was recycled instead (with
    /// `rx_lend`, counted on the port the frame was to leave by).
    pub tx_ring_full: u64,
    /// `RxAction::TransmitOn` a port the set does not have: recycled.
    pub tx_bad_port: u64,
    /// RX descriptors pointing outside the UMEM (never from a sane kernel), skipped.
    pub rx_bad_desc: u64,
    /// Kernel: frames dropped for another reason than a full ring.
    pub rx_dropped: u64,
    /// Kernel: invalid descriptors on the fill / TX ring.
    pub rx_invalid: u64,
    pub tx_invalid: u64,
    /// Kernel: frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Kernel: times it found the fill ring empty.
    pub fill_ring_empty: u64,
    /// Kernel: times it found the TX ring empty on a kick.
    pub tx_ring_empty: u64,
}

/// Where the UMEM frames are; the fields add up to the frame count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameCounts {
    pub free: u32,
    /// Fill ring, being received, RX ring.
    pub receiving: u32,
    /// TX ring, being sent, completion ring.
    pub sending: u32,
}

impl FrameCounts {
    pub fn total(&self) -> u32 {
        self.free + self.receiving + self.sending
    }
}

/// What becomes of a frame lent by [`AfXdp::rx_burst_mut`] or [`AfXdpSet::rx_burst_mut`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxAction {
    /// Done with it: the frame goes back to receiving.
    Recycle,
    /// Send it out of the port it came in on, as it now is.
    Transmit,
    /// Send it out of this port of the set (an index into [`AfXdpSet::open`]'s ports); an
    /// unknown port recycles the frame and counts it in `tx_bad_port`.
    TransmitOn(usize),
}

/// A received frame, lent writable for the length of a callback: the data, and the room
/// before (headroom) and after it in its UMEM frame.
pub struct FrameMut<'a> {
    chunk: &'a mut [u8],
    start: usize,
    len: usize,
}

impl FrameMut<'_> {
    pub fn data(&self) -> &[u8] {
        &self.chunk[self.start..self.start + self.len]
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.chunk[self.start..self.start + self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes free before the data.
    pub fn headroom(&self) -> usize {
        self.start
    }

    /// Sets the length from the current start; `false` (and no change) when it would not fit.
    pub fn set_len(&mut self, len: usize) -> bool {
        if self.start + len > self.chunk.len() {
            return false;
        }
        self.len = len;
        true
    }

    /// The whole UMEM frame, with where the data starts in it and its length: for code that
    /// keeps its own (start, length) while it rewrites, and hands them back with
    /// [`set_span`](Self::set_span).
    pub fn parts_mut(&mut self) -> (&mut [u8], usize, usize) {
        (&mut *self.chunk, self.start, self.len)
    }

    /// Sets where the data starts in the UMEM frame and its length; `false` (and no change)
    /// when that does not fit in the frame.
    pub fn set_span(&mut self, start: usize, len: usize) -> bool {
        match start.checked_add(len) {
            Some(end) if end <= self.chunk.len() => {
                self.start = start;
                self.len = len;
                true
            }
            _ => false,
        }
    }

    /// Moves the start of the data by `delta` bytes (negative: prepend room, e.g. for a VLAN
    /// tag; positive: strip), keeping the end; `false` (and no change) when out of range.
    pub fn adjust_head(&mut self, delta: isize) -> bool {
        let start = self.start as isize + delta;
        let len = self.len as isize - delta;
        if start < 0 || len < 0 {
            return false;
        }
        self.start = start as usize;
        self.len = len as usize;
        true
    }
}

/// A frame lent by [`AfXdpSet::rx_lend`] for the length of a burst: the port it came in on,
/// the frame, and what becomes of it afterwards (recycled unless the callback says otherwise).
pub struct Lent<'a> {
    pub port: usize,
    pub frame: FrameMut<'a>,
    pub action: RxAction,
    base: u64,
}

/// Sockets sharing one UMEM (`XDP_SHARED_UMEM`): one per (interface, queue) a worker serves.
/// A frame received on one port can be rewritten in place and sent out of any port of the
/// set from the same UMEM frame ([`RxAction::TransmitOn`]): forwarding between interfaces
/// with no copy. Each port has its own four rings; the free list is the set's. Dropping it
/// closes the sockets and unmaps everything.
pub struct AfXdpSet {
    // Before `socks`: the rings are unmapped before the sockets close.
    core: Core,
    socks: Vec<Sock>,
    zero_copy: bool,
    need_wakeup: bool,
    busy_poll: bool,
    /// Frames offered to [`tx_burst`](Self::tx_burst) for a port the set does not have.
    tx_bad_port: u64,
}

struct Sock {
    fd: OwnedFd,
    ifindex: u32,
    queue: u32,
    stats: AfXdpStats,
}

impl AfXdpSet {
    /// Opens one socket per `(interface, queue)` of `ports` (in the calling thread's network
    /// namespace), all on one UMEM of `config.frame_count` frames, each keeping
    /// `config.rx_frames` of them for receiving. Port numbers are indices into `ports`.
    /// Nothing arrives until an XDP program redirects frames into a socket (an XSKMAP entry
    /// for its queue); sending works at once. Zero-copy needs every port's driver to have it.
    pub fn open(ports: &[(&str, u32)], config: &AfXdpConfig) -> Result<AfXdpSet, AfXdpError> {
        config.validate()?;
        if ports.is_empty() {
            return Err(AfXdpError::InvalidConfig("no port"));
        }
        if (config.rx_frames as u64) * (ports.len() as u64) >= config.frame_count as u64 {
            return Err(AfXdpError::InvalidConfig(
                "rx_frames of every port must leave frames for transmitting",
            ));
        }
        let mut ids = Vec::with_capacity(ports.len());
        for &(name, queue) in ports {
            let id = (if_index(name)?, queue);
            if ids.contains(&id) {
                return Err(AfXdpError::InvalidConfig("the same queue twice"));
            }
            ids.push(id);
        }
        match config.mode {
            BindMode::Copy => AfXdpSet::open_mode(&ids, config, false),
            BindMode::ZeroCopy => AfXdpSet::open_mode(&ids, config, true),
            // A failed zero-copy bind leaves sockets with a registered UMEM; starting over
            // is simpler than reasoning about what the kernel kept.
            BindMode::Auto => AfXdpSet::open_mode(&ids, config, true)
                .or_else(|_| AfXdpSet::open_mode(&ids, config, false)),
        }
    }

    fn open_mode(
        ids: &[(u32, u32)],
        config: &AfXdpConfig,
        zero_copy: bool,
    ) -> Result<AfXdpSet, AfXdpError> {
        let umem = Mapping::anonymous(config.frame_size as usize * config.frame_count as usize)?;
        let mut socks = Vec::with_capacity(ids.len());
        let mut rings = Vec::with_capacity(ids.len());
        for (i, &(ifindex, queue)) in ids.iter().enumerate() {
            let fd = sys::socket_xdp()?;
            if i == 0 {
                let reg = libc::xdp_umem_reg {
                    addr: umem.ptr.as_ptr() as u64,
                    len: umem.len as u64,
                    chunk_size: config.frame_size,
                    headroom: 0,
                    flags: 0,
                    tx_metadata_len: 0,
                };
                sys::setsockopt(&fd, libc::XDP_UMEM_REG, &reg, "setsockopt(XDP_UMEM_REG)")?;
            }
            rings.push(Rings::map(&fd, config)?);
            // Copy mode sends at most 32 frames per sendto unless told more (Linux 6.17+,
            // XDP_MAX_TX_SKB_BUDGET): a burst then goes out in one call, one wakeup of the
            // peer. Older kernels refuse the option; they keep 32.
            let _ = sys::setsockopt(
                &fd,
                XDP_MAX_TX_SKB_BUDGET,
                &(config.tx_size.min(256) as libc::c_int),
                "setsockopt(XDP_MAX_TX_SKB_BUDGET)",
            );
            // Copy-mode sockets get no NAPI id (Linux 6.13+ marks it at a zero-copy bind
            // only), so there busy polling would be empty syscalls.
            if let (Some(bp), true) = (config.busy_poll, zero_copy) {
                // CAP_NET_ADMIN is needed above net.core.busy_poll's value: root here.
                sys::setsockopt_level(
                    &fd,
                    libc::SOL_SOCKET,
                    SO_PREFER_BUSY_POLL,
                    &1 as &libc::c_int,
                    "setsockopt(SO_PREFER_BUSY_POLL)",
                )?;
                sys::setsockopt_level(
                    &fd,
                    libc::SOL_SOCKET,
                    SO_BUSY_POLL,
                    &(bp.usecs.max(1).min(i32::MAX as u32) as libc::c_int),
                    "setsockopt(SO_BUSY_POLL)",
                )?;
                sys::setsockopt_level(
                    &fd,
                    libc::SOL_SOCKET,
                    SO_BUSY_POLL_BUDGET,
                    &(bp.budget.max(1) as libc::c_int),
                    "setsockopt(SO_BUSY_POLL_BUDGET)",
                )?;
            }
            socks.push(Sock {
                fd,
                ifindex,
                queue,
                stats: AfXdpStats::default(),
            });
        }
        let mut core = Core::new(umem, config, rings);
        for p in 0..ids.len() {
            core.refill(p);
        }
        let mut flags = if zero_copy {
            libc::XDP_ZEROCOPY
        } else {
            libc::XDP_COPY
        };
        if config.need_wakeup {
            flags |= libc::XDP_USE_NEED_WAKEUP;
        }
        let first = socks[0].fd.as_raw_fd() as u32;
        for (i, s) in socks.iter().enumerate() {
            if i == 0 {
                sys::bind_xdp(&s.fd, s.ifindex, s.queue, flags, 0)?;
            } else {
                // The mode and wakeup flags come from the first socket's; the kernel refuses
                // them here.
                sys::bind_xdp(&s.fd, s.ifindex, s.queue, libc::XDP_SHARED_UMEM, first)?;
            }
        }
        Ok(AfXdpSet {
            core,
            socks,
            zero_copy,
            need_wakeup: config.need_wakeup,
            busy_poll: config.busy_poll.is_some() && zero_copy,
            tx_bad_port: 0,
        })
    }

    /// How many ports (sockets).
    pub fn len(&self) -> usize {
        self.socks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.socks.is_empty()
    }

    pub fn ifindex(&self, port: usize) -> u32 {
        self.socks[port].ifindex
    }

    pub fn queue(&self, port: usize) -> u32 {
        self.socks[port].queue
    }

    /// The socket of `port`, for its XSKMAP entry and for event loops.
    pub fn fd(&self, port: usize) -> RawFd {
        self.socks[port].fd.as_raw_fd()
    }

    /// Whether the drivers receive straight into the UMEM (else the kernel copies).
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Where the frames are now; `total()` is always the frame count.
    pub fn frames(&self) -> FrameCounts {
        self.core.counts()
    }

    /// Hands up to `max` frames received on `port` to `f`, read-only; returns how many.
    /// Never blocks.
    pub fn rx_burst(&mut self, port: usize, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        self.rx_burst_mut(port, max, |frame| {
            f(frame.data());
            RxAction::Recycle
        })
    }

    /// Hands up to `max` frames received on `port` to `f`, writable; a frame is then recycled
    /// or sent, as it was left, out of the port `f` names, from the same UMEM frame. Returns
    /// how many frames were received. Never blocks.
    pub fn rx_burst_mut(
        &mut self,
        port: usize,
        max: usize,
        f: impl FnMut(&mut FrameMut<'_>) -> RxAction,
    ) -> usize {
        if port >= self.socks.len() {
            return 0;
        }
        self.reclaim_port(port);
        let r = self.core.rx(port, max, f);
        self.account_rx(port, &r);
        self.publish_tx();
        self.core.refill(port);
        self.wake_fill(port);
        r.received
    }

    /// Lends up to `max` received frames per port, of every port at once, to `f`, writable,
    /// each with its [`RxAction`] (`Recycle` unless `f` changes it). Afterwards each frame is
    /// recycled or sent, as `f` left it, from the same UMEM frame: the frames of a whole burst
    /// in one call, with one wakeup per port that sends (a batch, where
    /// [`rx_burst_mut`](Self::rx_burst_mut) decides frame by frame). Returns how many frames
    /// were received. Never blocks.
    pub fn rx_lend(&mut self, max: usize, f: impl FnOnce(&mut [Lent<'_>])) -> usize {
        for p in 0..self.socks.len() {
            self.reclaim_port(p);
        }
        let rs = self.core.rx_lend(max, f);
        let mut total = 0;
        for (p, r) in rs.iter().enumerate() {
            self.account_rx(p, r);
            total += r.received;
        }
        self.publish_tx();
        for p in 0..self.socks.len() {
            self.core.refill(p);
            self.wake_fill(p);
        }
        total
    }

    /// Copies `frames` into free UMEM frames and sends them out of `port`; returns how many
    /// from the front were taken (sent, or skipped as too big and counted). The rest met
    /// back-pressure (no free frame or TX slot) and should be offered again later. Frames
    /// for a port the set does not have are all taken, dropped, and counted
    /// ([`tx_bad_port`](Self::tx_bad_port)): offering them again cannot help.
    pub fn tx_burst(&mut self, port: usize, frames: &[&[u8]]) -> usize {
        if port >= self.socks.len() {
            self.tx_bad_port += frames.len() as u64;
            return frames.len();
        }
        self.reclaim();
        let (taken, sent, too_big) = self.core.tx_copy(port, frames);
        let st = &mut self.socks[port].stats;
        st.tx_packets += sent as u64;
        st.tx_too_big += too_big as u64;
        if sent > 0 {
            self.kick_tx(port);
        }
        self.reclaim_port(port);
        taken
    }

    /// Counts what a receive pass on port `p` did.
    fn account_rx(&mut self, p: usize, r: &RxResult) {
        let st = &mut self.socks[p].stats;
        st.rx_packets += r.received as u64;
        st.rx_bad_desc += r.bad as u64;
        st.tx_bad_port += r.bad_port as u64;
    }

    /// After a receive pass: counts, per port, the frames it put on the TX ring and those
    /// that met it full, and wakes the kernel for each port that has something to send.
    fn publish_tx(&mut self) {
        for q in 0..self.socks.len() {
            self.socks[q].stats.tx_ring_full += u64::from(self.core.tx_full[q]);
            let n = self.core.pending[q];
            if n > 0 {
                self.socks[q].stats.tx_packets += u64::from(n);
                self.kick_tx(q);
            }
        }
    }

    /// Takes back the frames the kernel has finished sending (completion rings) and gives
    /// the kernel room to receive, on every port. `rx_burst*` and `tx_burst` do it too; an
    /// idle loop calls it.
    pub fn reclaim(&mut self) {
        for p in 0..self.socks.len() {
            self.reclaim_port(p);
        }
        for p in 0..self.socks.len() {
            self.core.refill(p);
        }
    }

    fn reclaim_port(&mut self, p: usize) {
        self.core.reclaim(p);
        if self.core.tx_pending(p) {
            self.kick_tx(p);
            self.core.reclaim(p);
        }
    }

    /// Whether `rx_burst(port)` has something to deliver right now.
    pub fn rx_ready(&self, port: usize) -> bool {
        port < self.socks.len() && self.core.ports[port].rx.peek_ready()
    }

    /// Waits until frames arrive on some port or `timeout` passes; `Ok(true)` when there is
    /// something for `rx_burst`. A signal ends the wait early with `Ok(false)`.
    pub fn poll(&mut self, timeout: Duration) -> Result<bool, AfXdpError> {
        self.reclaim();
        let ready = |s: &AfXdpSet| (0..s.socks.len()).any(|p| s.rx_ready(p));
        if ready(self) {
            return Ok(true);
        }
        let ms = timeout.as_millis().min(libc::c_int::MAX as u128) as libc::c_int;
        let fds: Vec<RawFd> = self.socks.iter().map(|s| s.fd.as_raw_fd()).collect();
        match sys::poll_in(&fds, ms) {
            Ok(_) => Ok(ready(self)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
            Err(source) => Err(AfXdpError::Syscall {
                call: "poll",
                source,
            }),
        }
    }

    /// Whether the sockets busy poll: [`AfXdpConfig::busy_poll`] asked for it and the sockets
    /// are zero-copy (in copy mode the kernel gives them no NAPI to poll).
    pub fn busy_polling(&self) -> bool {
        self.busy_poll
    }

    /// With busy polling: runs each port's NAPI once (a non-blocking `recvfrom`, up to the
    /// budget of frames into its RX ring) in this thread. Returns whether some port has
    /// frames for `rx_lend`. Without busy polling it only looks. One syscall per port and
    /// call, whatever the number of frames. It neither reclaims nor refills: the loop's
    /// `rx_lend` does both, reclaiming before it reads and refilling the fill rings after, so
    /// the NAPI finds them as full as the free frames allow.
    pub fn busy_poll(&mut self) -> bool {
        if self.busy_poll {
            for s in &self.socks {
                // EAGAIN and friends say nothing useful: the RX ring is what counts
                let _ = sys::recv_nonblock(&s.fd);
            }
        }
        (0..self.socks.len()).any(|p| self.rx_ready(p))
    }

    /// Frames that were to leave by `port` and met a full TX ring (recycled instead): our own
    /// count, no syscall, cheap enough for every burst.
    pub fn tx_ring_full(&self, port: usize) -> u64 {
        self.socks.get(port).map_or(0, |s| s.stats.tx_ring_full)
    }

    /// Frames offered to [`tx_burst`](Self::tx_burst) for a port the set does not have (no
    /// port's counters can hold them), dropped, since the set was opened.
    pub fn tx_bad_port(&self) -> u64 {
        self.tx_bad_port
    }

    /// The counters of `port` since it was opened.
    pub fn stats(&mut self, port: usize) -> Result<AfXdpStats, AfXdpError> {
        let s = &self.socks[port];
        let k = sys::xdp_statistics(&s.fd)?;
        Ok(AfXdpStats {
            rx_dropped: k.rx_dropped,
            rx_invalid: k.rx_invalid_descs,
            tx_invalid: k.tx_invalid_descs,
            rx_ring_full: k.rx_ring_full,
            fill_ring_empty: k.rx_fill_ring_empty_descs,
            tx_ring_empty: k.tx_ring_empty_descs,
            ..s.stats
        })
    }

    /// Tells the kernel there is something on `p`'s TX ring. In copy mode it sends at most 32
    /// frames per call and says EAGAIN when more are left, so the kick repeats while the ring
    /// drains.
    fn kick_tx(&mut self, p: usize) {
        for _ in 0..4096 {
            if self.need_wakeup && self.zero_copy && !self.core.ports[p].tx.needs_wakeup() {
                return;
            }
            let before = self.core.ports[p].tx.kernel_consumer();
            match sys::kick(&self.socks[p].fd) {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY)) => {}
                // ENOBUFS, ENETDOWN, ...: the frames stay queued and go with a later kick.
                Err(_) => return,
            }
            self.core.reclaim(p);
            if !self.core.tx_pending(p) || self.core.ports[p].tx.kernel_consumer() == before {
                return;
            }
        }
    }

    /// With `XDP_USE_NEED_WAKEUP`, a zero-copy driver may wait for a syscall before it takes
    /// new fill entries.
    fn wake_fill(&mut self, p: usize) {
        if self.need_wakeup && self.zero_copy && self.core.ports[p].fill.needs_wakeup() {
            let _ = sys::poll_in(&[self.socks[p].fd.as_raw_fd()], 0);
        }
    }
}

/// Sets the nice value of thread `tid` (`setpriority(PRIO_PROCESS)`; below 0 needs
/// CAP_SYS_NICE). For the live router's workers: in copy mode a device's threaded NAPI
/// receives into the sockets on the worker's CPU, and with the worker at a higher priority
/// the NAPI runs when the worker waits for frames rather than filling an RX ring the worker
/// has no time to empty.
pub fn set_nice(tid: i32, nice: i32) -> io::Result<()> {
    if tid <= 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: setpriority takes no pointers; a wrong id only makes it fail.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An AF_XDP socket bound to one queue of one interface, with its own UMEM and rings: an
/// [`AfXdpSet`] of one port. Dropping it closes the socket and unmaps everything.
pub struct AfXdp {
    set: AfXdpSet,
}

impl AfXdp {
    /// Opens a socket on queue `queue` of `ifname` (in the calling thread's network namespace).
    /// Nothing arrives until an XDP program redirects frames into it (an XSKMAP entry for the
    /// queue); sending works at once.
    pub fn open(ifname: &str, queue: u32, config: &AfXdpConfig) -> Result<AfXdp, AfXdpError> {
        Ok(AfXdp {
            set: AfXdpSet::open(&[(ifname, queue)], config)?,
        })
    }

    pub fn ifindex(&self) -> u32 {
        self.set.ifindex(0)
    }

    pub fn queue(&self) -> u32 {
        self.set.queue(0)
    }

    /// Whether the driver receives straight into the UMEM (else the kernel copies).
    pub fn zero_copy(&self) -> bool {
        self.set.zero_copy()
    }

    /// Where the frames are now; `total()` is always the frame count.
    pub fn frames(&self) -> FrameCounts {
        self.set.frames()
    }

    /// Hands up to `max` received frames to `f`, read-only, and returns how many. Never blocks.
    pub fn rx_burst(&mut self, max: usize, f: impl FnMut(&[u8])) -> usize {
        self.set.rx_burst(0, max, f)
    }

    /// Hands up to `max` received frames to `f`, writable; those it answers
    /// [`RxAction::Transmit`] for are sent as they are left, out of the same UMEM frame.
    /// Returns how many frames were received. Never blocks.
    pub fn rx_burst_mut(
        &mut self,
        max: usize,
        f: impl FnMut(&mut FrameMut<'_>) -> RxAction,
    ) -> usize {
        self.set.rx_burst_mut(0, max, f)
    }

    /// Copies `frames` into free UMEM frames and sends them; returns how many from the front
    /// were taken (sent, or skipped as too big and counted). The rest met back-pressure (no
    /// free frame or TX slot) and should be offered again later.
    pub fn tx_burst(&mut self, frames: &[&[u8]]) -> usize {
        self.set.tx_burst(0, frames)
    }

    /// Takes back the frames the kernel has finished sending and gives it room to receive.
    pub fn reclaim(&mut self) {
        self.set.reclaim()
    }

    /// Whether `rx_burst` has something to deliver right now.
    pub fn rx_ready(&self) -> bool {
        self.set.rx_ready(0)
    }

    /// Waits until frames arrive or `timeout` passes; `Ok(true)` when there is something for
    /// `rx_burst`. A signal ends the wait early with `Ok(false)`.
    pub fn poll(&mut self, timeout: Duration) -> Result<bool, AfXdpError> {
        self.set.poll(timeout)
    }

    /// The counters since the socket was opened.
    pub fn stats(&mut self) -> Result<AfXdpStats, AfXdpError> {
        self.set.stats(0)
    }
}

impl AsRawFd for AfXdp {
    /// For the XSKMAP entry, and for an event loop waiting on several sockets.
    fn as_raw_fd(&self) -> RawFd {
        self.set.fd(0)
    }
}

impl AsFd for AfXdp {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.set.socks[0].fd.as_fd()
    }
}

fn if_index(ifname: &str) -> Result<u32, AfXdpError> {
    let name = CString::new(ifname).map_err(|_| AfXdpError::NoSuchInterface(ifname.to_owned()))?;
    // SAFETY: name is NUL-terminated and outlives the call.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(AfXdpError::NoSuchInterface(ifname.to_owned())),
        i => Ok(i),
    }
}

/// What one `Core::rx` pass did on the port it read (frames sent, and frames that met a full
/// TX ring, per egress port are in `Core::pending` and `Core::tx_full`).
#[derive(Debug, Default, Clone, Copy)]
struct RxResult {
    received: usize,
    bad: usize,
    bad_port: usize,
}

/// One socket's four rings and how many frames it has in the kernel's hands.
struct Rings {
    fill: Ring<u64>,
    comp: Ring<u64>,
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    /// Frames handed to the kernel for receiving and not yet read back from the RX ring.
    receiving: u32,
    /// Frames put on the TX ring and not yet read back from the completion ring.
    sending: u32,
}

impl Rings {
    fn map(fd: &OwnedFd, config: &AfXdpConfig) -> Result<Rings, AfXdpError> {
        for (opt, size, call) in [
            (
                libc::XDP_UMEM_FILL_RING,
                config.fill_size,
                "setsockopt(XDP_UMEM_FILL_RING)",
            ),
            (
                libc::XDP_UMEM_COMPLETION_RING,
                config.completion_size,
                "setsockopt(XDP_UMEM_COMPLETION_RING)",
            ),
            (libc::XDP_RX_RING, config.rx_size, "setsockopt(XDP_RX_RING)"),
            (libc::XDP_TX_RING, config.tx_size, "setsockopt(XDP_TX_RING)"),
        ] {
            sys::setsockopt(fd, opt, &(size as libc::c_int), call)?;
        }
        let off = sys::mmap_offsets(fd)?;
        Ok(Rings {
            fill: Ring::map(
                fd,
                &off.fr,
                config.fill_size,
                libc::XDP_UMEM_PGOFF_FILL_RING as libc::off_t,
            )?,
            comp: Ring::map(
                fd,
                &off.cr,
                config.completion_size,
                libc::XDP_UMEM_PGOFF_COMPLETION_RING as libc::off_t,
            )?,
            rx: Ring::map(fd, &off.rx, config.rx_size, libc::XDP_PGOFF_RX_RING)?,
            tx: Ring::map(fd, &off.tx, config.tx_size, libc::XDP_PGOFF_TX_RING)?,
            receiving: 0,
            sending: 0,
        })
    }
}

/// The UMEM, every port's rings and the free list: all of the bookkeeping, no syscall (so
/// the unit tests can drive it against a simulated kernel).
struct Core {
    // Rings before the UMEM: unmapped first.
    ports: Vec<Rings>,
    umem: Mapping,
    frame_size: u64,
    frame_count: u32,
    /// Frame base addresses (offsets into the UMEM) that are ours and unused.
    free: Vec<u64>,
    rx_frames: u32,
    /// Per port, frames the last `rx` put on its TX ring.
    pending: Vec<u32>,
    /// Per port, frames the last `rx` was to send there and found its TX ring full
    /// (recycled instead).
    tx_full: Vec<u32>,
}

impl Core {
    fn new(umem: Mapping, config: &AfXdpConfig, ports: Vec<Rings>) -> Core {
        let fs = config.frame_size as u64;
        let n = ports.len();
        Core {
            ports,
            umem,
            frame_size: fs,
            frame_count: config.frame_count,
            // Popped from the back: the low frames go out first.
            free: (0..config.frame_count as u64)
                .rev()
                .map(|i| i * fs)
                .collect(),
            rx_frames: config.rx_frames,
            pending: vec![0; n],
            tx_full: vec![0; n],
        }
    }

    fn counts(&self) -> FrameCounts {
        FrameCounts {
            free: self.free.len() as u32,
            receiving: self.ports.iter().map(|r| r.receiving).sum(),
            sending: self.ports.iter().map(|r| r.sending).sum(),
        }
    }

    fn frame_base(&self, addr: u64) -> Option<u64> {
        let base = addr - addr % self.frame_size;
        (base < self.frame_size * self.frame_count as u64).then_some(base)
    }

    /// Gives the kernel free frames to receive into on port `p`, up to `rx_frames` in its
    /// hands.
    fn refill(&mut self, p: usize) {
        let r = &mut self.ports[p];
        let want = self.rx_frames.saturating_sub(r.receiving) as usize;
        let n = want.min(self.free.len());
        if n == 0 {
            return;
        }
        let n = r.fill.prod_reserve(n as u32) as usize;
        for i in 0..n {
            let addr = self.free.pop().expect("n <= free.len()");
            r.fill.prod_write(i as u32, addr);
        }
        r.fill.prod_submit(n as u32);
        r.receiving += n as u32;
    }

    /// Takes back what port `p`'s completion ring holds.
    fn reclaim(&mut self, p: usize) {
        let n = self.ports[p].comp.cons_available(u32::MAX);
        for i in 0..n {
            let addr = self.ports[p].comp.cons_read(i);
            match self.frame_base(addr) {
                Some(base) => self.free.push(base),
                // Not a frame of ours: the kernel echoes what it was given, so this is
                // unreachable; the frame it stood for stays counted as sending.
                None => continue,
            }
            let r = &mut self.ports[p];
            r.sending = r.sending.saturating_sub(1);
        }
        self.ports[p].comp.cons_release(n);
    }

    /// Whether port `p`'s TX ring holds frames the kernel has not taken yet.
    fn tx_pending(&self, p: usize) -> bool {
        let tx = &self.ports[p].tx;
        tx.kernel_consumer() != tx.cached_prod
    }

    /// Reads the `i`-th available RX descriptor of port `p`: it and the base of its UMEM
    /// frame, counted as received, or `None`, counted as bad, when it does not lie inside one
    /// frame of the UMEM (a frame it names goes back to the free list).
    fn rx_desc(&mut self, p: usize, i: u32, r: &mut RxResult) -> Option<(libc::xdp_desc, u64)> {
        let d = self.ports[p].rx.cons_read(i);
        let rp = &mut self.ports[p];
        rp.receiving = rp.receiving.saturating_sub(1);
        let Some(base) = self.frame_base(d.addr) else {
            r.bad += 1;
            return None;
        };
        let end = d.addr + d.len as u64;
        if end > base + self.frame_size || end > self.umem.len as u64 {
            r.bad += 1;
            self.free.push(base);
            return None;
        }
        r.received += 1;
        Some((d, base))
    }

    /// Lends up to `max` frames received on port `p` to `f`; frames to send go on the TX
    /// rings (published, counted in `pending` per port), the others back to the free list.
    fn rx(
        &mut self,
        p: usize,
        max: usize,
        mut f: impl FnMut(&mut FrameMut<'_>) -> RxAction,
    ) -> RxResult {
        let mut r = RxResult::default();
        self.begin_pass();
        let n = self.ports[p]
            .rx
            .cons_available(max.min(u32::MAX as usize) as u32);
        if n == 0 {
            return r;
        }
        for i in 0..n {
            let Some((d, base)) = self.rx_desc(p, i, &mut r) else {
                continue;
            };
            // SAFETY: base..base+frame_size lies inside the UMEM mapping (frame_base checked
            // base < frame_count * frame_size, the mapping's length). This frame belongs to us
            // alone now: the kernel handed it over through the RX ring (acquired in
            // cons_available) and gets it back only through a fill or TX ring, after the
            // borrow ends; no other FrameMut points to it (one frame per descriptor, each read
            // once).
            let chunk = unsafe {
                std::slice::from_raw_parts_mut(
                    self.umem.ptr.as_ptr().add(base as usize),
                    self.frame_size as usize,
                )
            };
            let mut frame = FrameMut {
                chunk,
                start: (d.addr - base) as usize,
                len: d.len as usize,
            };
            let action = f(&mut frame);
            let (start, len) = (frame.start, frame.len);
            self.dispose(p, action, base, start, len, &mut r);
        }
        self.ports[p].rx.cons_release(n);
        self.submit_pending();
        r
    }

    /// Zeroes the per-port counts of a receive pass.
    fn begin_pass(&mut self) {
        self.pending.iter_mut().for_each(|n| *n = 0);
        self.tx_full.iter_mut().for_each(|n| *n = 0);
    }

    /// Puts the frame at `base`, received on port `p` and now at `start..start + len` of it,
    /// where `action` says: on a TX ring (reserved, written, counted in `pending`; published
    /// by [`submit_pending`](Self::submit_pending)) or back on the free list (recycled, a bad
    /// port counted in `r`, a full TX ring in `tx_full` of the port it was to leave by).
    fn dispose(
        &mut self,
        p: usize,
        action: RxAction,
        base: u64,
        start: usize,
        len: usize,
        r: &mut RxResult,
    ) {
        let q = match action {
            RxAction::Recycle => None,
            RxAction::Transmit => Some(p),
            RxAction::TransmitOn(q) if q < self.ports.len() => Some(q),
            RxAction::TransmitOn(_) => {
                r.bad_port += 1;
                None
            }
        };
        let Some(q) = q else {
            self.free.push(base);
            return;
        };
        let k = self.pending[q];
        let tx = &mut self.ports[q].tx;
        if tx.prod_reserve(k + 1) <= k {
            self.tx_full[q] += 1;
            self.free.push(base);
            return;
        }
        tx.prod_write(
            k,
            libc::xdp_desc {
                addr: base + start as u64,
                len: len as u32,
                options: 0,
            },
        );
        self.pending[q] = k + 1;
    }

    /// Publishes what [`dispose`](Self::dispose) put on the TX rings.
    fn submit_pending(&mut self) {
        for (q, rings) in self.ports.iter_mut().enumerate() {
            let k = self.pending[q];
            rings.tx.prod_submit(k);
            rings.sending += k;
        }
    }

    /// Lends up to `max` frames received on each port, all at once, to `f`; then, as in
    /// [`rx`](Self::rx), frames to send go on the TX rings (published, counted in `pending`
    /// per port), the others back to the free list. One result per port.
    fn rx_lend(&mut self, max: usize, f: impl FnOnce(&mut [Lent<'_>])) -> Vec<RxResult> {
        let np = self.ports.len();
        let mut rs = vec![RxResult::default(); np];
        self.begin_pass();
        // one allocation a pass: the lent frames borrow the UMEM, so the vector cannot outlive it
        let mut lent: Vec<Lent<'_>> = Vec::with_capacity(max.saturating_mul(np).min(4096));
        for (p, r) in rs.iter_mut().enumerate() {
            let n = self.ports[p]
                .rx
                .cons_available(max.min(u32::MAX as usize) as u32);
            for i in 0..n {
                let Some((d, base)) = self.rx_desc(p, i, r) else {
                    continue;
                };
                // SAFETY: base..base+frame_size lies inside the UMEM mapping (frame_base
                // checked base < frame_count * frame_size, the mapping's length). The frame
                // belongs to us alone now: the kernel handed it over through the RX ring
                // (acquired in cons_available) and gets it back only through a fill or TX
                // ring, after `lent` is gone; no other slice points to it (one frame per
                // descriptor, each read once, and the frames of `lent` are distinct).
                let chunk = unsafe {
                    std::slice::from_raw_parts_mut(
                        self.umem.ptr.as_ptr().add(base as usize),
                        self.frame_size as usize,
                    )
                };
                let start = (d.addr - base) as usize;
                // The frame was written by the CPU that ran the device's receive (on veth,
                // the sender's): its headers are asked for now, for the whole burst, so that
                // their cache misses overlap instead of stalling the worker at each frame's
                // first read. The second line only when the frame reaches into it (Ethernet,
                // IPv6 and TCP take 74 bytes): a prefetch of a line nobody reads still takes
                // one of the few outstanding misses the core can have.
                prefetch_index::prefetch_index(&*chunk, start);
                if start % 64 + (d.len as usize) > 64 {
                    prefetch_index::prefetch_index(&*chunk, start + 64);
                }
                lent.push(Lent {
                    port: p,
                    frame: FrameMut {
                        chunk,
                        start,
                        len: d.len as usize,
                    },
                    action: RxAction::Recycle,
                    base,
                });
            }
            // The descriptors are read (copied): their ring slots go back to the kernel now.
            self.ports[p].rx.cons_release(n);
        }
        if lent.is_empty() {
            return rs;
        }
        f(&mut lent);
        for l in lent {
            let (p, start, len) = (l.port, l.frame.start, l.frame.len);
            self.dispose(p, l.action, l.base, start, len, &mut rs[p]);
        }
        self.submit_pending();
        rs
    }

    /// Copies `frames` to port `p`'s TX ring; returns (taken, sent, too big).
    fn tx_copy(&mut self, p: usize, frames: &[&[u8]]) -> (usize, usize, usize) {
        let want = frames.len().min(u32::MAX as usize) as u32;
        let slots = self.ports[p].tx.prod_reserve(want) as usize;
        let (mut taken, mut sent, mut too_big) = (0, 0, 0);
        for f in frames {
            if f.len() > self.frame_size as usize {
                too_big += 1;
                taken += 1;
                continue;
            }
            if sent == slots {
                break;
            }
            let Some(base) = self.free.pop() else { break };
            // SAFETY: the frame at base is on the free list, so neither the kernel nor any
            // FrameMut uses it; base + f.len() <= base + frame_size lies inside the mapping.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    f.as_ptr(),
                    self.umem.ptr.as_ptr().add(base as usize),
                    f.len(),
                )
            };
            self.ports[p].tx.prod_write(
                sent as u32,
                libc::xdp_desc {
                    addr: base,
                    len: f.len() as u32,
                    options: 0,
                },
            );
            sent += 1;
            taken += 1;
        }
        let r = &mut self.ports[p];
        r.tx.prod_submit(sent as u32);
        r.sending += sent as u32;
        (taken, sent, too_big)
    }
}

/// A memory mapping, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping belongs to this value alone; moving it to another thread is like moving
// a Vec. The kernel side of shared rings synchronises through the ring indices.
unsafe impl Send for Mapping {}

impl Mapping {
    fn anonymous(len: usize) -> Result<Mapping, AfXdpError> {
        // SAFETY: a fresh private anonymous mapping chosen by the kernel (addr null); it
        // aliases no Rust object.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        Mapping::from_mmap(p, len, "mmap(UMEM)")
    }

    fn from_mmap(
        p: *mut libc::c_void,
        len: usize,
        call: &'static str,
    ) -> Result<Mapping, AfXdpError> {
        if p == libc::MAP_FAILED {
            return Err(AfXdpError::last_os(call));
        }
        let ptr =
            NonNull::new(p.cast::<u8>()).ok_or(AfXdpError::InvalidConfig("mmap returned null"))?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr and len are those mmap returned; nothing borrowed from the mapping outlives
        // its owner (FrameMut borrows end with the callback, ring pointers with the Ring).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// One single-producer single-consumer ring shared with the kernel: a producer index, a
/// consumer index, flags and `size` entries. Either side may be ours: fill and TX we produce,
/// RX and completion we consume. Indices run freely and wrap; the slot is `index & mask`.
struct Ring<T: Copy> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    descs: NonNull<T>,
    mask: u32,
    size: u32,
    /// Our copies of the two indices: ours is exact, the other side's is refreshed on demand.
    cached_prod: u32,
    cached_cons: u32,
    /// The mapping the pointers are in; `None` for a second view of a ring (tests).
    _map: Option<Mapping>,
}

// SAFETY: as for Mapping: the pointers point into a mapping this ring owns (or that the owner
// keeps alive), and the other side synchronises through the atomic indices.
unsafe impl<T: Copy> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    fn map(
        fd: &OwnedFd,
        off: &libc::xdp_ring_offset,
        size: u32,
        pgoff: libc::off_t,
    ) -> Result<Ring<T>, AfXdpError> {
        let len = off.desc as usize + size as usize * mem::size_of::<T>();
        // SAFETY: a fresh shared mapping chosen by the kernel (addr null), of a ring just set up
        // on this socket; it aliases no Rust object.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                pgoff,
            )
        };
        let map = Mapping::from_mmap(p, len, "mmap(AF_XDP ring)")?;
        Ok(Ring::from_mapping(map, off, size))
    }

    /// `off` must describe where the indices and descriptors lie inside `map`, which must hold
    /// `size` descriptors from `off.desc`.
    fn from_mapping(map: Mapping, off: &libc::xdp_ring_offset, size: u32) -> Ring<T> {
        assert!(size.is_power_of_two());
        assert!(off.desc as usize + size as usize * mem::size_of::<T>() <= map.len);
        let at = |o: u64| {
            assert!(o as usize + 4 <= map.len && o.is_multiple_of(4));
            // SAFETY: o is inside the mapping (checked above); the mapping is page-aligned, so
            // a 4-aligned offset gives an aligned AtomicU32 (u32 layout).
            NonNull::new(unsafe { map.ptr.as_ptr().add(o as usize) }.cast::<AtomicU32>())
                .expect("inside a non-null mapping")
        };
        assert!((off.desc as usize).is_multiple_of(mem::align_of::<T>()));
        let (producer, consumer, flags) = (at(off.producer), at(off.consumer), at(off.flags));
        // SAFETY: off.desc is inside the mapping with room for size descriptors (checked above),
        // aligned for T.
        let descs = NonNull::new(unsafe { map.ptr.as_ptr().add(off.desc as usize) }.cast::<T>())
            .expect("inside a non-null mapping");
        let mut r = Ring {
            producer,
            consumer,
            flags,
            descs,
            mask: size - 1,
            size,
            cached_prod: 0,
            cached_cons: 0,
            _map: Some(map),
        };
        r.cached_prod = r.prod_index().load(Ordering::Acquire);
        r.cached_cons = r.cons_index().load(Ordering::Acquire);
        r
    }

    fn prod_index(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping (kept by self or its owner), aligned, and only
        // ever accessed atomically.
        unsafe { self.producer.as_ref() }
    }

    fn cons_index(&self) -> &AtomicU32 {
        // SAFETY: as prod_index.
        unsafe { self.consumer.as_ref() }
    }

    fn needs_wakeup(&self) -> bool {
        // SAFETY: as prod_index.
        unsafe { self.flags.as_ref() }.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    /// Consumer side, without updating the cache: whether anything is ready.
    fn peek_ready(&self) -> bool {
        self.cached_prod != self.cached_cons
            || self.prod_index().load(Ordering::Acquire) != self.cached_cons
    }

    /// The other side's consumer index as it is now (for a ring we produce).
    fn kernel_consumer(&self) -> u32 {
        self.cons_index().load(Ordering::Acquire)
    }

    /// Producer side: how many of `want` entries can be written now (from `prod_write(0)`).
    fn prod_reserve(&mut self, want: u32) -> u32 {
        let mut free = self.size - self.cached_prod.wrapping_sub(self.cached_cons);
        if free < want {
            // Acquire: the consumer's reads of the slots it released are done.
            self.cached_cons = self.cons_index().load(Ordering::Acquire);
            free = self.size - self.cached_prod.wrapping_sub(self.cached_cons);
        }
        free.min(want)
    }

    /// Producer side: writes the `i`-th reserved entry.
    fn prod_write(&mut self, i: u32, v: T) {
        debug_assert!(
            self.cached_prod
                .wrapping_add(i)
                .wrapping_sub(self.cached_cons)
                < self.size
        );
        let slot = (self.cached_prod.wrapping_add(i) & self.mask) as usize;
        // SAFETY: slot <= mask < size, inside the descriptor array; the slot is free (reserved
        // by prod_reserve), so the consumer does not read it until prod_submit publishes it.
        unsafe { self.descs.as_ptr().add(slot).write(v) };
    }

    /// Producer side: publishes the first `n` reserved entries.
    fn prod_submit(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        self.cached_prod = self.cached_prod.wrapping_add(n);
        // Release: the entries written before are visible to the consumer that sees the index.
        self.prod_index().store(self.cached_prod, Ordering::Release);
    }

    /// Consumer side: how many entries (at most `max`) are ready to read (from `cons_read(0)`).
    fn cons_available(&mut self, max: u32) -> u32 {
        let mut n = self.cached_prod.wrapping_sub(self.cached_cons);
        if n == 0 {
            // Acquire: the producer's writes of the entries it published are visible.
            self.cached_prod = self.prod_index().load(Ordering::Acquire);
            n = self.cached_prod.wrapping_sub(self.cached_cons);
        }
        n.min(max).min(self.size)
    }

    /// Consumer side: reads the `i`-th available entry.
    fn cons_read(&self, i: u32) -> T {
        let slot = (self.cached_cons.wrapping_add(i) & self.mask) as usize;
        // SAFETY: slot < size, inside the array; the entry was published by the producer
        // (acquired in cons_available) and stays until cons_release.
        unsafe { self.descs.as_ptr().add(slot).read() }
    }

    /// Consumer side: gives the first `n` read entries back to the producer.
    fn cons_release(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        self.cached_cons = self.cached_cons.wrapping_add(n);
        // Release: our reads of the entries are done before the producer may overwrite them.
        self.cons_index().store(self.cached_cons, Ordering::Release);
    }
}

/// The thin syscall wrappers: each turns a C return convention into a `Result`.
mod sys {
    use super::AfXdpError;
    use std::io;
    use std::mem;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

    pub(super) fn socket_xdp() -> Result<OwnedFd, AfXdpError> {
        // SAFETY: socket takes no pointers.
        let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(AfXdpError::last_os("socket(AF_XDP)"));
        }
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    pub(super) fn setsockopt<T>(
        fd: &OwnedFd,
        opt: libc::c_int,
        value: &T,
        call: &'static str,
    ) -> Result<(), AfXdpError> {
        setsockopt_level(fd, libc::SOL_XDP, opt, value, call)
    }

    pub(super) fn setsockopt_level<T>(
        fd: &OwnedFd,
        level: libc::c_int,
        opt: libc::c_int,
        value: &T,
        call: &'static str,
    ) -> Result<(), AfXdpError> {
        // SAFETY: value points to a live T of size_of::<T>() bytes that the kernel only reads.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                level,
                opt,
                (value as *const T).cast(),
                mem::size_of::<T>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(AfXdpError::last_os(call))
        } else {
            Ok(())
        }
    }

    fn getsockopt<T>(fd: &OwnedFd, opt: libc::c_int, call: &'static str) -> Result<T, AfXdpError> {
        // SAFETY: both option structs read here are plain C structs of integers, for which
        // all-zero is a valid value.
        let mut v: T = unsafe { mem::zeroed() };
        let mut len = mem::size_of::<T>() as libc::socklen_t;
        // SAFETY: v and len are live and len says how many bytes the kernel may write into v.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_XDP,
                opt,
                (&mut v as *mut T).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            Err(AfXdpError::last_os(call))
        } else if (len as usize) < mem::size_of::<T>() {
            // An old kernel with the shorter v1 layout: refuse rather than misread.
            Err(AfXdpError::Syscall {
                call,
                source: io::Error::new(io::ErrorKind::Unsupported, "kernel too old (v1 layout)"),
            })
        } else {
            Ok(v)
        }
    }

    pub(super) fn mmap_offsets(fd: &OwnedFd) -> Result<libc::xdp_mmap_offsets, AfXdpError> {
        getsockopt(fd, libc::XDP_MMAP_OFFSETS, "getsockopt(XDP_MMAP_OFFSETS)")
    }

    pub(super) fn xdp_statistics(fd: &OwnedFd) -> Result<libc::xdp_statistics, AfXdpError> {
        getsockopt(fd, libc::XDP_STATISTICS, "getsockopt(XDP_STATISTICS)")
    }

    pub(super) fn bind_xdp(
        fd: &OwnedFd,
        ifindex: u32,
        queue: u32,
        flags: u16,
        shared_umem_fd: u32,
    ) -> Result<(), AfXdpError> {
        let addr = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: flags,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: shared_umem_fd,
        };
        // SAFETY: addr is a live sockaddr_xdp and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_xdp).cast(),
                mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(AfXdpError::last_os("bind(AF_XDP)"))
        } else {
            Ok(())
        }
    }

    /// The TX wakeup: an empty, non-blocking `sendto`.
    pub(super) fn kick(fd: &OwnedFd) -> io::Result<()> {
        // SAFETY: no buffer (null, length 0) and no address; the kernel reads nothing.
        let rc = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// The RX wakeup / busy poll: an empty, non-blocking `recvfrom`.
    pub(super) fn recv_nonblock(fd: &OwnedFd) -> io::Result<()> {
        // SAFETY: no buffer (null, length 0) and no address; the kernel writes nothing.
        let rc = unsafe {
            libc::recvfrom(
                fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    pub(super) fn poll_in(fds: &[RawFd], timeout_ms: libc::c_int) -> io::Result<libc::c_int> {
        let mut pfds: Vec<libc::pollfd> = fds
            .iter()
            .map(|&fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: pfds is a live array of pfds.len() pollfds the kernel writes revents into.
        let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    }
}
