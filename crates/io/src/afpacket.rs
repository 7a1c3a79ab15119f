//! Linux AF_PACKET with a TPACKET_V2 or V3 receive ring: the live router's fallback backend when
//! AF_XDP is not available.
//!
//! * Receive: the kernel fills fixed-size blocks of an mmap'ed ring with variable-size frames and
//!   hands a block over when it is full or its retire timeout expires; [`AfPacket::rx_burst`]
//!   walks the blocks it owns and gives each one back as soon as it has been read, so one
//!   syscall-free pass can deliver a whole burst. With a V2 ring ([`AfPacketConfig::v2`]) each
//!   frame has a slot of its own, handed over at once; a frame longer than its slot (a GSO
//!   super-packet in a ring of MTU-sized slots) is read whole from the socket's receive queue
//!   in its place in the ring (`PACKET_COPY_THRESH`, `TP_STATUS_COPY`).
//! * Transmit: `sendmmsg` on the bound socket, one syscall per burst of up to [`TX_BATCH`] frames.
//!   A `PACKET_TX_RING` was tried and measured no faster (the skb per frame and the copy into it
//!   are the same either way), and its ring cannot skip a frame the device dropped (it keeps it
//!   for the next `send`), so a peer that stays down fills it with frames that leave late; it was
//!   removed (docs/live.md).
//! * The socket sets `PACKET_IGNORE_OUTGOING`, so the router never receives what it sent.
//! * With [`AfPacketConfig::vnet_hdr`] (`PACKET_VNET_HDR`) each received frame comes with the
//!   `virtio_net_hdr` the kernel derives from its skb ([`VnetHdr`]: GSO type and size, partial
//!   checksum offsets), so a GSO super-packet (up to 64 KB, as veth passes a sender's TSO skb
//!   on) is received whole, and each frame sent carries one, so a super-packet leaves whole and
//!   the kernel (or the peer) segments it. `tpacket_rcv` writes the header in front of the
//!   frame in the ring (net/packet/af_packet.c: `netoff += vnet_hdr_sz`, then
//!   `virtio_net_hdr_from_skb` at `h.raw + macoff - sizeof(struct virtio_net_hdr)`).
//! * A frame whose 802.1Q tag the driver stripped (`TP_STATUS_VLAN_VALID`) is delivered with the
//!   tag put back, so the parser sees the frame as it was on the wire.
//!
//! All `unsafe` of the crate lives in this module, in small functions, each block with the reason
//! it is sound.

use std::ffi::CString;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

#[cfg(test)]
mod tests;

/// How many frames one `sendmmsg` call carries at most.
pub const TX_BATCH: usize = 64;

/// `linux/if_packet.h` and `asm-generic/socket.h` (not in every libc version).
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_COPY_THRESH: libc::c_int = 7;
const SO_SNDBUFFORCE: libc::c_int = 32;
const SO_RCVBUFFORCE: libc::c_int = 33;
/// A V2 slot holds the first part of a frame too long for it, and the socket's receive queue
/// holds the whole packet (`tpacket_rcv` with `PACKET_COPY_THRESH`).
const TP_STATUS_COPY: u32 = 1 << 1;
/// The longest frame read whole from the socket's queue; a longer one is skipped (counted as
/// `rx_truncated`). Far above any GSO super-packet (BIG TCP's 512 KiB included).
const COPY_MAX: usize = 1 << 20;

/// The error of an AF_PACKET operation, naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum AfPacketError {
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
    /// The ring geometry is one the kernel would refuse; said here, before any syscall.
    #[error("invalid ring configuration: {0}")]
    InvalidConfig(&'static str),
}

impl AfPacketError {
    fn last_os(call: &'static str) -> AfPacketError {
        AfPacketError::Syscall {
            call,
            source: io::Error::last_os_error(),
        }
    }
}

/// The ring geometry and socket options. `Default` suits a router port on a small machine: a
/// 4 MiB ring, frames up to a standard Ethernet MTU with room for tags, blocks retired after 1 ms
/// so a lone packet is not held back for long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfPacketConfig {
    /// Bytes per block; a multiple of the page size. A frame never spans blocks, so this also
    /// bounds the largest frame.
    pub block_size: u32,
    /// Number of blocks in the ring.
    pub block_count: u32,
    /// The nominal frame size, a multiple of 16; V3 packs frames tighter, but the kernel checks it.
    pub frame_size: u32,
    /// How long the kernel may keep a partly filled block before handing it over.
    pub retire_timeout: Duration,
    /// Put the interface into promiscuous mode for the socket's lifetime (the kernel undoes it when
    /// the socket closes).
    pub promiscuous: bool,
    /// Do not receive the frames this host transmits on the interface (ours included).
    pub ignore_outgoing: bool,
    /// Join a fanout group, so several sockets (one per worker) on the interface share its
    /// frames instead of each receiving all of them.
    pub fanout: Option<Fanout>,
    /// `PACKET_QDISC_BYPASS`: frames sent go straight to the driver, past the interface's
    /// qdisc (as AF_XDP's copy mode sends), saving the qdisc's lock and queue per frame.
    /// Egress shaping on the interface then does not see them. With [`Self::vnet_hdr`], GSO
    /// frames still take the qdisc path (a second, send-only socket), where the kernel can
    /// segment them for a device without TSO/GSO (the bypass path would drop them).
    pub qdisc_bypass: bool,
    /// The socket's send buffer (`SO_SNDBUFFORCE`, needs CAP_NET_ADMIN), bytes; `None` keeps
    /// the default. Frames in flight (until the receiver frees them: on veth, until the
    /// peer's CPU has taken them) count against it, and a full buffer is back-pressure.
    pub sndbuf: Option<u32>,
    /// `PACKET_VNET_HDR`: every frame received and sent has a [`VnetHdr`], so GSO
    /// super-packets and partial checksums cross the socket whole (see the module docs).
    pub vnet_hdr: bool,
    /// A TPACKET_V2 ring: fixed slots of `frame_size` bytes (`block_size / frame_size` to a
    /// block), each with its own status, and the socket woken per frame, so a lone frame is
    /// read at once. A V3 block (`false`) is handed over only when full or when its retire
    /// timer (1 ms at the least) fires, so a lone frame waits for the timer.
    ///
    /// A frame longer than a V2 slot is not lost: the socket sets `PACKET_COPY_THRESH`, so
    /// `tpacket_rcv` (net/packet/af_packet.c) keeps the whole skb on the socket's receive
    /// queue (while the queue holds less than [`Self::rcvbuf`]) and marks the slot, which holds
    /// only the frame's first bytes, `TP_STATUS_COPY`; [`AfPacket::rx_burst`] then reads the
    /// whole packet with `recv` in its place in the ring. The kernel queues the skb and takes
    /// the slot under one lock (`sk_receive_queue.lock`), so the queue's packets are in the
    /// order of their slots. With the queue full the slot is only truncated (no
    /// `TP_STATUS_COPY`): that frame is counted as `rx_truncated` and skipped.
    pub v2: bool,
    /// The socket's receive buffer (`sk_rcvbuf`, set with `SO_RCVBUFFORCE`, which needs
    /// CAP_NET_ADMIN), bytes; `None` keeps the default (`net.core.rmem_default`, 208 KiB: three
    /// 64 KB super-packets). With a ring it bounds only the packets too long for a V2 slot
    /// waiting on the queue, each counted at its `truesize` (its buffers: a 64 KB super-packet
    /// about 66 KB, more when GRO built it from MTU-sized segments). The kernel takes a packet
    /// while the queue holds less than this, so one always fits.
    pub rcvbuf: Option<u32>,
}

/// `struct virtio_net_hdr` (linux/virtio_net.h), as AF_PACKET reads and writes it: in the
/// host's byte order (legacy virtio, `vio_le()`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VnetHdr {
    /// [`VnetHdr::NEEDS_CSUM`]: the checksum at `csum_start + csum_offset` holds only the
    /// pseudo-header sum (`CHECKSUM_PARTIAL`).
    pub flags: u8,
    /// [`VnetHdr::GSO_NONE`], `GSO_TCPV4`, `GSO_TCPV6`, `GSO_UDP_L4`, with `GSO_ECN`.
    pub gso_type: u8,
    /// The headers' length (Ethernet + IP + transport), a hint.
    pub hdr_len: u16,
    /// Payload bytes per segment of a GSO packet.
    pub gso_size: u16,
    /// Where the checksummed part starts, from the frame's first byte.
    pub csum_start: u16,
    /// Where the checksum field is, from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    pub const NEEDS_CSUM: u8 = 1;
    pub const DATA_VALID: u8 = 2;
    pub const GSO_NONE: u8 = 0;
    pub const GSO_TCPV4: u8 = 1;
    pub const GSO_TCPV6: u8 = 4;
    pub const GSO_UDP_L4: u8 = 5;
    pub const GSO_ECN: u8 = 0x80;
    /// Its size on the wire of the socket.
    pub const LEN: usize = 10;

    fn from_bytes(b: &[u8; 10]) -> VnetHdr {
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        }
    }

    /// The header as the socket takes it.
    pub fn to_bytes(&self) -> [u8; 10] {
        let mut b = [0u8; 10];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// A GSO packet (`gso_type` other than none).
    pub fn is_gso(&self) -> bool {
        self.gso_type & !Self::GSO_ECN != Self::GSO_NONE
    }
}

/// A `PACKET_FANOUT` group: the sockets bound to one interface with the same `group` id split its
/// frames by `mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fanout {
    pub group: u16,
    pub mode: FanoutMode,
}

/// How a fanout group picks the socket for a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FanoutMode {
    /// By the kernel's symmetric flow hash, so both directions of a 5-tuple land on one socket
    /// (before NAT; a translated reply hashes on its own tuple). Fragments are reassembled for
    /// hashing (`PACKET_FANOUT_FLAG_DEFRAG`) so a datagram's pieces stay together.
    Hash,
    /// Round robin.
    LoadBalance,
    /// By the CPU that received the frame.
    Cpu,
    /// By the receive queue the NIC put the frame in.
    QueueMapping,
}

impl FanoutMode {
    fn type_flags(self) -> u32 {
        match self {
            FanoutMode::Hash => libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_DEFRAG,
            FanoutMode::LoadBalance => libc::PACKET_FANOUT_LB,
            FanoutMode::Cpu => libc::PACKET_FANOUT_CPU,
            FanoutMode::QueueMapping => libc::PACKET_FANOUT_QM,
        }
    }
}

impl Default for AfPacketConfig {
    fn default() -> AfPacketConfig {
        AfPacketConfig {
            block_size: 1 << 18,
            block_count: 16,
            frame_size: 2048,
            retire_timeout: Duration::from_millis(1),
            promiscuous: false,
            ignore_outgoing: true,
            fanout: None,
            qdisc_bypass: false,
            sndbuf: None,
            vnet_hdr: false,
            v2: false,
            rcvbuf: None,
        }
    }
}

/// The V2 slot [`AfPacketConfig::v2_slots`] suggests: 2 KiB, an MTU-sized frame (1 518 bytes
/// with a VLAN tag) and the 76 bytes in front of it ([`AfPacketConfig::v2_slot`]) with room
/// to spare, two to a page.
pub const V2_SLOT: u32 = 2048;

/// The receive buffer [`AfPacketConfig::v2_slots`] gives the frames longer than a slot: 16 MiB,
/// some 250 of iperf3's 64 KB super-packets (their `truesize` about 66 KB), more than the 192
/// a 16 MiB ring of slots for the largest took.
pub const V2_RCVBUF: u32 = 16 << 20;

/// The longest frame a GSO super-packet makes on an interface with the default
/// `gso_max_size` (65 536 bytes of packet), with its Ethernet header and a VLAN tag.
pub const GSO_FRAME_MAX: usize = 65_536 + 18;

/// Where `tpacket_rcv` puts an Ethernet frame in a V2 slot (see [`AfPacketConfig::v2_slot`]).
fn v2_macoff(vnet: bool) -> usize {
    let maclen = 14;
    // TPACKET2_HDRLEN: the tpacket2 header aligned to 16, then a sockaddr_ll
    let hdrlen = mem::size_of::<libc::tpacket2_hdr>().div_ceil(libc::TPACKET_ALIGNMENT)
        * libc::TPACKET_ALIGNMENT
        + mem::size_of::<libc::sockaddr_ll>();
    (hdrlen + 16).div_ceil(libc::TPACKET_ALIGNMENT) * libc::TPACKET_ALIGNMENT
        + if vnet { VnetHdr::LEN } else { 0 }
        - maclen
}

/// A V3 block's header as `tpacket_rcv` lays it out (`BLK_PLUS_PRIV(0)`:
/// `struct tpacket_block_desc`, 8-aligned); the first frame starts after it.
const V3_BLOCK_HDR: usize = 48;

impl AfPacketConfig {
    /// The default geometry with a ring of `mib` MiB in 256 KiB blocks. A block takes four GSO
    /// super-packets of 45 segments of 1 448 bytes, three of the largest (see
    /// [`Self::ring_frames`]), so 16 MiB holds 256 (192) where the default 4 MiB holds 64 (48):
    /// room for a TCP window's worth while the reader is away.
    pub fn with_ring_mib(mib: u32) -> AfPacketConfig {
        let d = AfPacketConfig::default();
        AfPacketConfig {
            block_count: (mib.saturating_mul(1 << 20) / d.block_size).max(1),
            ..d
        }
    }

    /// The default geometry with [`Self::v2`]: a ring of `mib` MiB in 256 KiB blocks of three
    /// slots of [`Self::v2_slot`] for [`GSO_FRAME_MAX`] with the vnet header (65 632 bytes), so
    /// it holds as many of the largest super-packets as the V3 ring of the same size (the
    /// kernel allocates a block as a power-of-two number of pages, so a block of one slot
    /// would take 128 KiB).
    pub fn v2_gso(mib: u32) -> AfPacketConfig {
        AfPacketConfig::v2_slots(mib, AfPacketConfig::v2_slot(GSO_FRAME_MAX, true) as u32)
    }

    /// A [`Self::v2`] ring of `mib` MiB in 256 KiB blocks of `slot`-byte slots (a multiple of
    /// 16), and a receive buffer ([`Self::rcvbuf`]) of [`V2_RCVBUF`] bytes or the ring's size
    /// if larger, for the frames longer than a slot, which are read whole from the socket's
    /// queue. The slot of [`V2_SLOT`] bytes takes an MTU-sized frame with its vnet header,
    /// 128 to a block (1 024 in 2 MiB), where slots for the largest super-packet
    /// ([`Self::v2_gso`]) hold three.
    pub fn v2_slots(mib: u32, slot: u32) -> AfPacketConfig {
        let ring = AfPacketConfig::with_ring_mib(mib);
        AfPacketConfig {
            v2: true,
            frame_size: slot,
            rcvbuf: Some(
                ring.block_size
                    .saturating_mul(ring.block_count)
                    .max(V2_RCVBUF),
            ),
            ..ring
        }
    }

    /// The V2 slot that takes a frame of `len` bytes whole: `tpacket_rcv` puts the frame at
    /// `macoff` = the tpacket2 header and `sockaddr_ll` aligned to 16 with room for a 16-byte
    /// link header, plus the `virtio_net_hdr` with `vnet`, less the Ethernet header; the slot is
    /// a multiple of 16.
    pub fn v2_slot(len: usize, vnet: bool) -> usize {
        (v2_macoff(vnet) + len).div_ceil(libc::TPACKET_ALIGNMENT) * libc::TPACKET_ALIGNMENT
    }

    /// How many frames of `len` bytes (Ethernet header included) the ring holds at once, as
    /// `tpacket_rcv` packs them into V3 blocks: each frame takes its tpacket3 header and
    /// `sockaddr_ll` (aligned to 16, with room for a 16-byte link header), the
    /// `virtio_net_hdr` with [`Self::vnet_hdr`], and its bytes, aligned to 8; a frame never
    /// spans blocks, and the kernel takes one for a block only while it ends strictly before
    /// the block's end (`__packet_lookup_frame_in_block`). 0 when it fits no block (the
    /// kernel truncates it).
    pub fn ring_frames(&self, len: usize) -> usize {
        if self.v2 {
            let slots = (self.block_size / self.frame_size) as usize * self.block_count as usize;
            return if v2_macoff(self.vnet_hdr) + len <= self.frame_size as usize {
                slots
            } else {
                0
            };
        }
        let maclen = 14;
        let tp_align = |x: usize| x.div_ceil(libc::TPACKET_ALIGNMENT) * libc::TPACKET_ALIGNMENT;
        let netoff = tp_align(libc::TPACKET3_HDRLEN + maclen.max(16))
            + if self.vnet_hdr { VnetHdr::LEN } else { 0 };
        let macoff = netoff - maclen;
        let per_frame = (macoff + len).div_ceil(V3_ALIGNMENT) * V3_ALIGNMENT;
        let room = (self.block_size as usize).saturating_sub(V3_BLOCK_HDR + 1);
        room / per_frame * self.block_count as usize
    }

    fn validate(&self) -> Result<(), AfPacketError> {
        let page = page_size();
        if self.block_size == 0 || !(self.block_size as usize).is_multiple_of(page) {
            return Err(AfPacketError::InvalidConfig(
                "block_size must be a multiple of the page size",
            ));
        }
        if self.block_count == 0 {
            return Err(AfPacketError::InvalidConfig(
                "block_count must be at least 1",
            ));
        }
        if (self.frame_size as usize) < libc::TPACKET3_HDRLEN
            || !(self.frame_size as usize).is_multiple_of(libc::TPACKET_ALIGNMENT)
        {
            return Err(AfPacketError::InvalidConfig(
                "frame_size must be a multiple of 16 and hold a tpacket3 header",
            ));
        }
        if self.frame_size > self.block_size {
            return Err(AfPacketError::InvalidConfig(
                "frame_size must not exceed block_size",
            ));
        }
        if (self.block_size as usize)
            .checked_mul(self.block_count as usize)
            .is_none_or(|l| l > u32::MAX as usize)
        {
            return Err(AfPacketError::InvalidConfig("ring larger than 4 GiB"));
        }
        Ok(())
    }
}

/// Counters since the socket was opened. The kernel's part resets on every read, so it is
/// accumulated here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AfPacketStats {
    /// Frames the socket saw, dropped ones included (`PACKET_STATISTICS` `tp_packets`).
    pub rx_packets: u64,
    /// Frames the kernel dropped because the ring was full.
    pub rx_drops: u64,
    /// Times the ring was full and the kernel froze the queue.
    pub rx_freeze_q: u64,
    /// Frames the ring could not take whole, skipped (never delivered truncated): a V3 frame
    /// larger than a block; a V2 frame larger than its slot when the socket's receive buffer
    /// was full, so the kernel kept no whole copy (see [`AfPacketConfig::v2`]).
    pub rx_truncated: u64,
    /// Frames larger than their V2 slot, read whole from the socket's receive queue.
    pub rx_copied: u64,
    /// Blocks whose frame headers pointed outside the block (their remaining frames are
    /// skipped), V2 slots that did, and `TP_STATUS_COPY` slots whose packet the socket's queue
    /// did not hold (or held another): skipped.
    pub rx_malformed: u64,
    /// Frames `sendmmsg` took.
    pub tx_packets: u64,
    /// Frames the kernel refused for a reason other than back-pressure (too big, link down), skipped.
    pub tx_errors: u64,
    /// Frames the device dropped on the way out (`ENOBUFS`: on veth, the peer's input queue
    /// was full), as a wire would lose them: counted, not sent again.
    pub tx_device_drops: u64,
    /// GSO super-packets received whole (with [`AfPacketConfig::vnet_hdr`]).
    pub rx_gso: u64,
    /// GSO super-packets sent whole (with [`AfPacketConfig::vnet_hdr`]).
    pub tx_gso: u64,
    /// Frames sent through the second socket, the qdisc path, with
    /// [`AfPacketConfig::qdisc_bypass`] (GSO frames, and the frames behind them until it has
    /// drained: see [`AfPacket::tx_burst_vnet`]).
    pub tx_qdisc: u64,
}

/// An AF_PACKET socket bound to one interface, with its mapped TPACKET_V3 receive ring.
/// Dropping it unmaps the ring and closes the socket.
pub struct AfPacket {
    // Declared before `fd` so the ring is unmapped before the socket closes.
    ring: Ring,
    fd: OwnedFd,
    ifindex: u32,
    /// The block `rx_burst` reads next, and where it stopped inside it.
    block: usize,
    cursor: Option<Cursor>,
    stats: AfPacketStats,
    /// Where a frame gets its stripped VLAN tag back; grows once to the largest such frame.
    scratch: Vec<u8>,
    /// Where a frame too long for its V2 slot is read whole (with its vnet header in front);
    /// grows to the longest such frame.
    copy_buf: Vec<u8>,
    /// `PACKET_VNET_HDR` is on: frames in and out carry a [`VnetHdr`].
    vnet: bool,
    /// With `vnet_hdr` and `qdisc_bypass`: a second socket on the interface, without the bypass
    /// (and without a ring: it only sends), for GSO frames. The bypass path
    /// (`__dev_direct_xmit`) drops a GSO skb the device cannot take whole (TSO/GSO off:
    /// `validate_xmit_skb_list` segments it into a list, and the direct path refuses a list);
    /// `dev_queue_xmit` segments it in software as the kernel's forward path does.
    gso_fd: Option<OwnedFd>,
    /// Frames went through `gso_fd` and it has not been seen drained since: every frame
    /// follows them there, so that none overtakes one queued in the qdisc.
    gso_busy: bool,
}

#[derive(Clone, Copy, Debug)]
struct Cursor {
    left: u32,
    offset: usize,
}

impl AfPacket {
    /// Opens a packet socket on `ifname` (in the calling thread's network namespace) with the
    /// ring described by `config`.
    pub fn open(ifname: &str, config: &AfPacketConfig) -> Result<AfPacket, AfPacketError> {
        config.validate()?;
        let ifindex = if_index(ifname)?;
        // Protocol 0 until bind: the socket receives nothing before it is tied to `ifname`, so
        // the ring never holds frames from other interfaces.
        let fd = sys::socket_packet()?;
        sys::setsockopt(
            &fd,
            libc::PACKET_VERSION,
            &(if config.v2 {
                libc::tpacket_versions::TPACKET_V2
            } else {
                libc::tpacket_versions::TPACKET_V3
            } as libc::c_int),
            "setsockopt(PACKET_VERSION)",
        )?;
        if config.ignore_outgoing {
            sys::setsockopt(
                &fd,
                libc::PACKET_IGNORE_OUTGOING,
                &1 as &libc::c_int,
                "setsockopt(PACKET_IGNORE_OUTGOING)",
            )?;
        }
        if config.qdisc_bypass {
            sys::setsockopt(
                &fd,
                PACKET_QDISC_BYPASS,
                &1 as &libc::c_int,
                "setsockopt(PACKET_QDISC_BYPASS)",
            )?;
        }
        // before the ring: the kernel refuses PACKET_VNET_HDR (EBUSY) once a ring is set up
        send_options(&fd, config.vnet_hdr, config.sndbuf)?;
        if config.v2 {
            // any value but 0 turns it on (tpacket_rcv tests it for zero only)
            sys::setsockopt(
                &fd,
                PACKET_COPY_THRESH,
                &1 as &libc::c_int,
                "setsockopt(PACKET_COPY_THRESH)",
            )?;
        }
        if let Some(bytes) = config.rcvbuf {
            // the kernel doubles the value (sk_rcvbuf = 2 * val, for the skb overhead)
            sys::setsockopt_level(
                &fd,
                libc::SOL_SOCKET,
                SO_RCVBUFFORCE,
                &((bytes / 2).min(i32::MAX as u32) as libc::c_int),
                "setsockopt(SO_RCVBUFFORCE)",
            )?;
        }
        let req = libc::tpacket_req3 {
            tp_block_size: config.block_size,
            tp_block_nr: config.block_count,
            tp_frame_size: config.frame_size,
            tp_frame_nr: config.block_size / config.frame_size * config.block_count,
            tp_retire_blk_tov: config.retire_timeout.as_millis().clamp(1, u32::MAX as u128) as u32,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        if config.v2 {
            let req2 = libc::tpacket_req {
                tp_block_size: req.tp_block_size,
                tp_block_nr: req.tp_block_nr,
                tp_frame_size: req.tp_frame_size,
                tp_frame_nr: req.tp_frame_nr,
            };
            sys::setsockopt(
                &fd,
                libc::PACKET_RX_RING,
                &req2,
                "setsockopt(PACKET_RX_RING)",
            )?;
        } else {
            sys::setsockopt(
                &fd,
                libc::PACKET_RX_RING,
                &req,
                "setsockopt(PACKET_RX_RING)",
            )?;
        }
        let mut ring = Ring::map(&fd, config.block_size as usize, config.block_count as usize)?;
        if config.v2 {
            ring.frame_size = config.frame_size as usize;
            ring.frame_count = req.tp_frame_nr as usize;
        }
        sys::bind_packet(&fd, ifindex)?;
        if config.promiscuous {
            let mreq = libc::packet_mreq {
                mr_ifindex: ifindex as libc::c_int,
                mr_type: libc::PACKET_MR_PROMISC as libc::c_ushort,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            sys::setsockopt(
                &fd,
                libc::PACKET_ADD_MEMBERSHIP,
                &mreq,
                "setsockopt(PACKET_ADD_MEMBERSHIP)",
            )?;
        }
        // After bind: the kernel takes the group's interface and protocol from the bound socket.
        if let Some(fanout) = config.fanout {
            let arg: u32 = u32::from(fanout.group) | (fanout.mode.type_flags() << 16);
            sys::setsockopt(&fd, libc::PACKET_FANOUT, &arg, "setsockopt(PACKET_FANOUT)")?;
        }
        let gso_fd = if config.vnet_hdr && config.qdisc_bypass {
            let g = sys::socket_packet()?;
            send_options(&g, true, config.sndbuf)?;
            // Protocol 0: bound for sending only, it never receives (no frames to drain).
            sys::bind_packet_proto(&g, ifindex, 0)?;
            Some(g)
        } else {
            None
        };
        Ok(AfPacket {
            ring,
            fd,
            ifindex,
            block: 0,
            cursor: None,
            stats: AfPacketStats::default(),
            scratch: Vec::new(),
            copy_buf: Vec::new(),
            vnet: config.vnet_hdr,
            gso_fd,
            gso_busy: false,
        })
    }

    /// The interface index the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Hands up to `max` received frames to `f`, each as it was on the wire (Ethernet header
    /// first), and returns how many. Never blocks; see [`AfPacket::poll`].
    pub fn rx_burst(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        self.rx_burst_info(max, |frame, _| f(frame))
    }

    /// [`rx_burst`](Self::rx_burst), with what the ring says about each frame.
    pub fn rx_burst_info(&mut self, max: usize, f: impl FnMut(&[u8], RxInfo)) -> usize {
        self.rx_burst_budget(max, usize::MAX, f)
    }

    /// [`rx_burst_info`](Self::rx_burst_info) with a budget in bytes as well as in frames:
    /// stops once the frames delivered reach `max_bytes` (at least one frame is delivered
    /// when one is ready), so a burst of 64 KB GSO super-packets stays as small as one of
    /// MTU-sized frames and its bytes are still in the cache when they are sent on.
    pub fn rx_burst_budget(
        &mut self,
        max: usize,
        max_bytes: usize,
        mut f: impl FnMut(&[u8], RxInfo),
    ) -> usize {
        let mut delivered = 0;
        let mut bytes = 0usize;
        if self.ring.frame_count > 0 {
            while delivered < max && bytes < max_bytes {
                let Some(pkt) = self.ring.packet_v2(self.block, self.vnet) else {
                    break;
                };
                if let Some(pkt) = pkt {
                    if pkt.copy {
                        // the whole packet is next on the socket's queue (see AfPacketConfig::v2)
                        match recv_copy(&self.fd, &mut self.copy_buf, &pkt, self.vnet) {
                            Ok(whole) => {
                                bytes = bytes.saturating_add(whole.frame.len());
                                self.stats.rx_copied += 1;
                                deliver(&mut self.stats, &mut self.scratch, whole, &mut f);
                                delivered += 1;
                            }
                            Err(CopyLost::TooLong) => self.stats.rx_truncated += 1,
                            Err(CopyLost::Missing) => self.stats.rx_malformed += 1,
                        }
                    } else if pkt.truncated {
                        self.stats.rx_truncated += 1;
                    } else {
                        bytes = bytes.saturating_add(pkt.frame.len());
                        deliver(&mut self.stats, &mut self.scratch, pkt, &mut f);
                        delivered += 1;
                    }
                } else {
                    self.stats.rx_malformed += 1;
                }
                self.ring.release_v2(self.block);
                self.block = (self.block + 1) % self.ring.frame_count;
            }
            return delivered;
        }
        while delivered < max && bytes < max_bytes {
            let cursor = match self.cursor {
                Some(c) => c,
                None => match self.ring.owned_block(self.block) {
                    Some(head) => Cursor {
                        left: head.num_pkts,
                        offset: head.first_offset,
                    },
                    None => break,
                },
            };
            let mut cursor = cursor;
            while delivered < max && bytes < max_bytes && cursor.left > 0 {
                let Some(pkt) = self.ring.packet(self.block, cursor.offset, self.vnet) else {
                    // A header that points outside its block: nothing after it can be trusted.
                    self.stats.rx_malformed += 1;
                    cursor.left = 0;
                    break;
                };
                cursor.left -= 1;
                cursor.offset += pkt.next_offset;
                if pkt.next_offset == 0 {
                    cursor.left = 0;
                }
                if pkt.truncated {
                    self.stats.rx_truncated += 1;
                    continue;
                }
                bytes = bytes.saturating_add(pkt.frame.len());
                deliver(&mut self.stats, &mut self.scratch, pkt, &mut f);
                delivered += 1;
            }
            if cursor.left == 0 {
                self.ring.release(self.block);
                self.block = (self.block + 1) % self.ring.block_count;
                self.cursor = None;
            } else {
                self.cursor = Some(cursor);
            }
        }
        delivered
    }

    /// Whether `rx_burst` has something to deliver right now.
    pub fn rx_ready(&self) -> bool {
        if self.ring.frame_count > 0 {
            return self.ring.frame_status(self.block).load(Ordering::Acquire)
                & libc::TP_STATUS_USER
                != 0;
        }
        self.cursor.is_some() || self.ring.owned_block(self.block).is_some()
    }

    /// Waits until a block is ready to read or `timeout` passes; `Ok(true)` when there is
    /// something for `rx_burst`. A signal ends the wait early with `Ok(false)`.
    pub fn poll(&mut self, timeout: Duration) -> Result<bool, AfPacketError> {
        if self.rx_ready() {
            return Ok(true);
        }
        let ms = timeout.as_millis().min(libc::c_int::MAX as u128) as libc::c_int;
        match sys::poll_in(&self.fd, ms) {
            Ok(_) => Ok(self.rx_ready()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
            Err(source) => Err(AfPacketError::Syscall {
                call: "poll",
                source,
            }),
        }
    }

    /// Sends `frames` (each a whole Ethernet frame) and returns how many from the front were
    /// taken: sent, dropped by the device (`tx_device_drops`), or refused by the kernel for
    /// good (`tx_errors`). The rest met back-pressure (socket buffer full) and may be offered
    /// again later.
    pub fn tx_burst(&mut self, frames: &[&[u8]]) -> usize {
        self.tx_burst_vnet(frames, &[])
    }

    /// [`tx_burst`](Self::tx_burst) with a [`VnetHdr`] for each frame (`hdrs[i]` for
    /// `frames[i]`; a frame past `hdrs.len()` gets an empty one) when the socket has
    /// [`AfPacketConfig::vnet_hdr`]; without it `hdrs` is ignored. A GSO frame leaves whole:
    /// the kernel segments it if the device cannot (veth passes it to its peer as it is).
    /// With [`AfPacketConfig::qdisc_bypass`] GSO frames go through a second socket that takes
    /// the qdisc path (where the kernel can segment them), and the frames leave in the order
    /// given: once a frame went that way, the frames behind it follow it through the qdisc
    /// (a frame on the bypass would overtake one a qdisc holds) until the qdisc socket has
    /// nothing in flight (`SIOCOUTQ`: its frames' bytes not yet freed by the device, looked
    /// at only then); only then do plain frames take the bypass again. A frame on the bypass
    /// is in the device's queue when `sendmmsg` returns, so a later frame through the qdisc
    /// cannot overtake it.
    pub fn tx_burst_vnet(&mut self, frames: &[&[u8]], hdrs: &[VnetHdr]) -> usize {
        let is_gso = |i: usize| hdrs.get(i).is_some_and(|h| h.is_gso());
        let mut taken = 0;
        while taken < frames.len() {
            let mut end = frames.len().min(taken + TX_BATCH);
            let (fd, qdisc) = match &self.gso_fd {
                Some(g) if self.vnet => {
                    if self.gso_busy && !is_gso(taken) && sys::outq(g) == Some(0) {
                        self.gso_busy = false;
                    }
                    if self.gso_busy || is_gso(taken) {
                        self.gso_busy = true;
                        (g, true)
                    } else {
                        // plain frames on the bypass up to the next GSO frame
                        if let Some(k) = (taken + 1..end).find(|&i| is_gso(i)) {
                            end = k;
                        }
                        (&self.fd, false)
                    }
                }
                _ => (&self.fd, false),
            };
            let chunk = &frames[taken..end];
            let mut vh = [[0u8; VnetHdr::LEN]; TX_BATCH];
            let vnet = if self.vnet {
                for (i, v) in vh.iter_mut().enumerate().take(chunk.len()) {
                    if let Some(h) = hdrs.get(taken + i) {
                        *v = h.to_bytes();
                    }
                }
                Some(&vh[..chunk.len()])
            } else {
                None
            };
            match sys::sendmmsg(fd, chunk, vnet) {
                Ok(sent) => {
                    self.stats.tx_packets += sent as u64;
                    if qdisc {
                        self.stats.tx_qdisc += sent as u64;
                    }
                    if self.vnet {
                        let g = hdrs
                            .get(taken..(taken + sent).min(hdrs.len()))
                            .unwrap_or(&[]);
                        self.stats.tx_gso += g.iter().filter(|h| h.is_gso()).count() as u64;
                    }
                    taken += sent;
                    if sent < chunk.len() {
                        // The next call reports why the frame after the last sent one failed.
                        continue;
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => break,
                // The frame reached the device and was dropped there (the veth peer's queue
                // was full): sending it again would only keep the worker from receiving while
                // the receiver is the bottleneck.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.stats.tx_device_drops += 1;
                    taken += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.stats.tx_errors += 1;
                    taken += 1;
                }
            }
        }
        taken
    }

    /// Frames the device dropped on the way out so far (our count, no syscall).
    pub fn tx_device_drops(&self) -> u64 {
        self.stats.tx_device_drops
    }

    /// The counters since the socket was opened.
    pub fn stats(&mut self) -> Result<AfPacketStats, AfPacketError> {
        let k = sys::packet_statistics(&self.fd)?;
        self.stats.rx_packets += u64::from(k.tp_packets);
        self.stats.rx_drops += u64::from(k.tp_drops);
        self.stats.rx_freeze_q += u64::from(k.tp_freeze_q_cnt);
        Ok(self.stats)
    }
}

impl std::os::fd::AsFd for AfPacket {
    /// For `poll` over several sockets (and `SO_ERROR`); reading from it directly would bypass
    /// the ring.
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for AfPacket {
    /// For an event loop waiting on several sockets; reading from it directly would bypass the ring.
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn if_index(ifname: &str) -> Result<u32, AfPacketError> {
    let name =
        CString::new(ifname).map_err(|_| AfPacketError::NoSuchInterface(ifname.to_owned()))?;
    match sys::if_nametoindex(&name) {
        0 => Err(AfPacketError::NoSuchInterface(ifname.to_owned())),
        i => Ok(i),
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the running system; no memory is passed.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// Hands one received frame to `f`, its stripped VLAN tag put back.
fn deliver(
    stats: &mut AfPacketStats,
    scratch: &mut Vec<u8>,
    pkt: RxPacket<'_>,
    f: &mut impl FnMut(&[u8], RxInfo),
) {
    let info = RxInfo {
        csum_not_ready: pkt.csum_not_ready,
        vnet: pkt.vnet,
    };
    if info.vnet.is_gso() {
        stats.rx_gso += 1;
    }
    match pkt.vlan {
        Some((tpid, tci)) if pkt.frame.len() >= 12 => {
            // the offsets counted without the tag (vlan_hlen 0 in tpacket_rcv)
            let mut info = info;
            if info.vnet.flags & VnetHdr::NEEDS_CSUM != 0 {
                info.vnet.csum_start = info.vnet.csum_start.saturating_add(4);
            }
            scratch.clear();
            scratch.extend_from_slice(&pkt.frame[..12]);
            scratch.extend_from_slice(&tpid.to_be_bytes());
            scratch.extend_from_slice(&tci.to_be_bytes());
            scratch.extend_from_slice(&pkt.frame[12..]);
            f(scratch, info);
        }
        _ => f(pkt.frame, info),
    }
}

/// The alignment of frames inside a V3 block; the kernel does not export it.
const V3_ALIGNMENT: usize = 8;

/// A block's header, read once the block belongs to user space.
struct BlockHead {
    num_pkts: u32,
    first_offset: usize,
}

/// One frame inside a block, borrowed from the ring.
struct RxPacket<'a> {
    frame: &'a [u8],
    next_offset: usize,
    truncated: bool,
    /// `TP_STATUS_COPY`: `frame` is the first part of a packet of `len` bytes that waits
    /// whole on the socket's receive queue.
    copy: bool,
    /// The packet's length on the wire (`tp_len`; the VLAN tag the driver took off not counted).
    len: usize,
    vlan: Option<(u16, u16)>,
    csum_not_ready: bool,
    vnet: VnetHdr,
}

/// Why a `TP_STATUS_COPY` slot's packet was not delivered.
#[derive(Debug, PartialEq, Eq)]
enum CopyLost {
    /// Longer than [`COPY_MAX`] (dequeued and dropped).
    TooLong,
    /// The queue held nothing, or a packet that is not the slot's (its length or first bytes
    /// differ): never expected, as the kernel queues the packet and takes its slot under one
    /// lock, and nothing else reads the socket.
    Missing,
}

/// Reads the whole packet of the `TP_STATUS_COPY` slot `slot` from the socket's receive queue
/// into `buf`: `packet_recvmsg` writes the `virtio_net_hdr` first with `vnet`, then the frame
/// from its Ethernet header. The result takes the slot's VLAN tag and checksum state (the
/// same skb's), and is checked against it: the same length (`tp_len`) and the same first
/// bytes (the part the slot holds).
fn recv_copy<'b>(
    fd: &OwnedFd,
    buf: &'b mut Vec<u8>,
    slot: &RxPacket<'_>,
    vnet: bool,
) -> Result<RxPacket<'b>, CopyLost> {
    let hdr = if vnet { VnetHdr::LEN } else { 0 };
    let want = hdr + slot.len.min(COPY_MAX);
    if buf.len() < want {
        buf.resize(want, 0);
    }
    // MSG_TRUNC: the packet's whole length even when it is longer than the buffer
    let n = match sys::recv(fd, &mut buf[..want], libc::MSG_DONTWAIT | libc::MSG_TRUNC) {
        Ok(n) => n,
        Err(_) => return Err(CopyLost::Missing),
    };
    if n != hdr + slot.len {
        return Err(CopyLost::Missing);
    }
    if slot.len > COPY_MAX {
        return Err(CopyLost::TooLong);
    }
    let frame = &buf[hdr..n];
    if !frame.starts_with(slot.frame) {
        return Err(CopyLost::Missing);
    }
    let vh = if vnet {
        let mut b = [0u8; VnetHdr::LEN];
        b.copy_from_slice(&buf[..VnetHdr::LEN]);
        VnetHdr::from_bytes(&b)
    } else {
        VnetHdr::default()
    };
    Ok(RxPacket {
        frame: &buf[hdr..n],
        next_offset: 0,
        truncated: false,
        copy: false,
        len: slot.len,
        vlan: slot.vlan,
        csum_not_ready: slot.csum_not_ready,
        vnet: vh,
    })
}

/// `TP_STATUS_CSUMNOTREADY` (linux/if_packet.h; not in the libc crate).
const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;

/// What the ring says about a received frame besides its bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxInfo {
    /// The frame's TCP/UDP checksum is not filled in (`TP_STATUS_CSUMNOTREADY`): the packet was
    /// made on this host (a veth peer, a local socket) with checksum offload, and holds only the
    /// pseudo-header sum. A router forwarding it from user space must complete it.
    pub csum_not_ready: bool,
    /// The frame's [`VnetHdr`] with [`AfPacketConfig::vnet_hdr`] (all zero without): a GSO
    /// super-packet has its type and segment size here, a partial checksum its offsets
    /// (`csum_start` counts from the frame's first byte as delivered, a VLAN tag put back
    /// included).
    pub vnet: VnetHdr,
}

/// The mmap'ed receive ring. Blocks alternate owners through `block_status`: the kernel writes a
/// block while it is `TP_STATUS_KERNEL` and sets `TP_STATUS_USER` when done; user space reads and
/// writes `TP_STATUS_KERNEL` back.
struct Ring {
    base: NonNull<u8>,
    block_size: usize,
    block_count: usize,
    /// V2: the slot size and count (0: a V3 ring of blocks).
    frame_size: usize,
    frame_count: usize,
}

/// The `virtio_net_hdr` `tpacket_rcv` writes right in front of a received frame.
///
/// # Safety
/// The `VnetHdr::LEN` bytes before `frame` must lie in memory readable for the call.
unsafe fn vnet_before(frame: *const u8) -> VnetHdr {
    let mut b = [0u8; VnetHdr::LEN];
    // SAFETY: the caller's guarantee.
    unsafe { std::ptr::copy_nonoverlapping(frame.sub(VnetHdr::LEN), b.as_mut_ptr(), VnetHdr::LEN) };
    VnetHdr::from_bytes(&b)
}

/// The VLAN tag `tpacket_rcv` took off a frame, from its ring header (V2 or V3): the TPID, 802.1Q
/// when the kernel gives none, and the TCI.
fn rx_vlan(status: u32, tpid: u16, tci: u16) -> Option<(u16, u16)> {
    (status & libc::TP_STATUS_VLAN_VALID != 0).then(|| {
        let tpid = if status & libc::TP_STATUS_VLAN_TPID_VALID != 0 && tpid != 0 {
            tpid
        } else {
            0x8100
        };
        (tpid, tci)
    })
}

// SAFETY: the mapping belongs to this value alone (nothing else holds its address), and the kernel
// side synchronises through block_status, so moving it to another thread is like moving a Vec.
unsafe impl Send for Ring {}

impl Ring {
    /// Maps the receive ring (`block_count` blocks).
    fn map(fd: &OwnedFd, block_size: usize, block_count: usize) -> Result<Ring, AfPacketError> {
        let len = block_size * block_count;
        // SAFETY: a fresh shared mapping chosen by the kernel (addr null), of the ring just set up
        // on this socket; it aliases no Rust object.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(AfPacketError::last_os("mmap(PACKET_RX_RING)"));
        }
        let base = NonNull::new(p.cast::<u8>())
            .ok_or(AfPacketError::InvalidConfig("mmap returned null"))?;
        Ok(Ring {
            base,
            block_size,
            block_count,
            frame_size: 0,
            frame_count: 0,
        })
    }

    fn len(&self) -> usize {
        self.block_size * self.block_count
    }

    fn block_ptr(&self, block: usize) -> *mut u8 {
        debug_assert!(block < self.block_count);
        // SAFETY: block < block_count, so the offset stays inside the mapping of
        // block_size * block_count bytes.
        unsafe { self.base.as_ptr().add(block * self.block_size) }
    }

    fn status(&self, block: usize) -> &AtomicU32 {
        // SAFETY: every block starts with a tpacket_block_desc whose hdr.bh1.block_status is a
        // u32 at offset 8, 4-aligned (blocks are page-aligned); AtomicU32 has u32's layout, and
        // atomic access is what sharing it with the kernel needs. The reference lives no longer
        // than &self, which keeps the mapping alive.
        unsafe {
            &*self
                .block_ptr(block)
                .add(mem::offset_of!(libc::tpacket_block_desc, hdr))
                .cast::<AtomicU32>()
        }
    }

    /// The block's header if the kernel has handed it over.
    fn owned_block(&self, block: usize) -> Option<BlockHead> {
        if self.status(block).load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
            return None;
        }
        // SAFETY: the block is ours (TP_STATUS_USER, acquired above, so the kernel's writes are
        // visible and it writes no more until release); the descriptor lies at the block's
        // page-aligned start, inside the mapping.
        let h = unsafe {
            (*self.block_ptr(block).cast::<libc::tpacket_block_desc>())
                .hdr
                .bh1
        };
        Some(BlockHead {
            num_pkts: h.num_pkts,
            first_offset: h.offset_to_first_pkt as usize,
        })
    }

    /// The frame whose tpacket3 header sits at `offset` in a block we own; `None` when the
    /// kernel's offsets would leave the block.
    fn packet(&self, block: usize, offset: usize, vnet: bool) -> Option<RxPacket<'_>> {
        let hdr_len = mem::size_of::<libc::tpacket3_hdr>();
        // V3 packs frames at 8-byte alignment (V3_ALIGNMENT in af_packet.c), which is also all
        // a tpacket3_hdr of u32 and u16 fields needs.
        if !offset.is_multiple_of(V3_ALIGNMENT) || offset.checked_add(hdr_len)? > self.block_size {
            return None;
        }
        // SAFETY: offset + header size is within the block (checked above) and 8-aligned in a
        // page-aligned block; the block is owned by user space until release, so the kernel does
        // not write it while we read.
        let h = unsafe {
            *self
                .block_ptr(block)
                .add(offset)
                .cast::<libc::tpacket3_hdr>()
        };
        let start = offset.checked_add(h.tp_mac as usize)?;
        let end = start.checked_add(h.tp_snaplen as usize)?;
        if end > self.block_size {
            return None;
        }
        // SAFETY: start..end lies inside the block (checked above), which stays mapped and
        // unwritten by the kernel for as long as &self borrows the ring and the block is not
        // released (release needs no &mut, but rx_burst releases only after the last borrow).
        let frame =
            unsafe { std::slice::from_raw_parts(self.block_ptr(block).add(start), end - start) };
        // The virtio_net_hdr sits right in front of the frame (tpacket_rcv reserves it after
        // the tpacket3 header); a snaplen of 0 left it unwritten (`do_vnet = false`).
        let vh = if vnet && h.tp_snaplen > 0 && start >= offset + hdr_len + VnetHdr::LEN {
            // SAFETY: start - LEN .. start lies inside the block (start >= offset + the
            // tpacket3 header + LEN, checked above, and start <= end <= block_size); the block
            // is ours until release, as above.
            unsafe { vnet_before(frame.as_ptr()) }
        } else {
            VnetHdr::default()
        };
        let vlan = rx_vlan(h.tp_status, h.hv1.tp_vlan_tpid, h.hv1.tp_vlan_tci as u16);
        Some(RxPacket {
            frame,
            next_offset: h.tp_next_offset as usize,
            truncated: h.tp_snaplen < h.tp_len,
            copy: false,
            len: h.tp_len as usize,
            vlan,
            csum_not_ready: h.tp_status & TP_STATUS_CSUMNOTREADY != 0,
            vnet: vh,
        })
    }

    /// A V2 slot's start: slots never span blocks, `block_size / frame_size` to a block.
    fn frame_ptr(&self, slot: usize) -> *mut u8 {
        let per_block = self.block_size / self.frame_size;
        let block = slot / per_block;
        // SAFETY: slot < frame_count = per_block * block_count, so the slot lies inside its
        // block, inside the mapping.
        unsafe {
            self.block_ptr(block)
                .add((slot % per_block) * self.frame_size)
        }
    }

    fn frame_status(&self, slot: usize) -> &AtomicU32 {
        // SAFETY: a slot starts with tpacket2_hdr, whose tp_status is a u32 at offset 0; slots
        // are 16-aligned (TPACKET_ALIGNMENT) in page-aligned blocks; atomic access is what
        // sharing it with the kernel needs; the reference lives no longer than &self.
        unsafe { &*self.frame_ptr(slot).cast::<AtomicU32>() }
    }

    /// V2: `None` while the kernel owns the slot; `Some(None)` for a header pointing outside it.
    fn packet_v2(&self, slot: usize, vnet: bool) -> Option<Option<RxPacket<'_>>> {
        let status = self.frame_status(slot).load(Ordering::Acquire);
        if status & libc::TP_STATUS_USER == 0 {
            return None;
        }
        let hdr_len = mem::size_of::<libc::tpacket2_hdr>();
        // SAFETY: the slot is ours (TP_STATUS_USER, acquired above) and holds a tpacket2_hdr at
        // its 16-aligned start (frame_size >= TPACKET2_HDRLEN, checked by the kernel).
        let h = unsafe { *self.frame_ptr(slot).cast::<libc::tpacket2_hdr>() };
        let start = h.tp_mac as usize;
        let Some(end) = start.checked_add(h.tp_snaplen as usize) else {
            return Some(None);
        };
        if end > self.frame_size || start < hdr_len {
            return Some(None);
        }
        // SAFETY: start..end lies inside the slot (checked above), ours until release_v2.
        let frame =
            unsafe { std::slice::from_raw_parts(self.frame_ptr(slot).add(start), end - start) };
        let vh = if vnet && h.tp_snaplen > 0 && start >= hdr_len + VnetHdr::LEN {
            // SAFETY: start - LEN .. start lies inside the slot (start >= header + LEN), ours
            // until release_v2.
            unsafe { vnet_before(frame.as_ptr()) }
        } else {
            VnetHdr::default()
        };
        let vlan = rx_vlan(status, h.tp_vlan_tpid, h.tp_vlan_tci);
        Some(Some(RxPacket {
            frame,
            next_offset: 0,
            truncated: h.tp_snaplen < h.tp_len,
            copy: status & TP_STATUS_COPY != 0 && h.tp_snaplen < h.tp_len,
            len: h.tp_len as usize,
            vlan,
            csum_not_ready: status & TP_STATUS_CSUMNOTREADY != 0,
            vnet: vh,
        }))
    }

    fn release_v2(&self, slot: usize) {
        self.frame_status(slot)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
    }

    /// Gives a block back to the kernel.
    fn release(&self, block: usize) {
        self.status(block)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: base and length are those mmap returned; no borrow of the ring outlives &mut self.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len()) };
    }
}

// The thin syscall wrappers: each turns a C return convention into a `Result`.

/// What a socket that sends needs, the ring's and the GSO one alike: `PACKET_VNET_HDR` (each
/// frame with its `virtio_net_hdr`) when `vnet`, and the send buffer when one is given.
fn send_options(fd: &OwnedFd, vnet: bool, sndbuf: Option<u32>) -> Result<(), AfPacketError> {
    if vnet {
        sys::setsockopt(
            fd,
            libc::PACKET_VNET_HDR,
            &1 as &libc::c_int,
            "setsockopt(PACKET_VNET_HDR)",
        )?;
    }
    if let Some(bytes) = sndbuf {
        sys::setsockopt_level(
            fd,
            libc::SOL_SOCKET,
            SO_SNDBUFFORCE,
            &(bytes.min(i32::MAX as u32) as libc::c_int),
            "setsockopt(SO_SNDBUFFORCE)",
        )?;
    }
    Ok(())
}
mod sys {
    use super::AfPacketError;
    use std::ffi::CStr;
    use std::io;
    use std::mem;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    /// Bytes of the socket's sent frames not yet freed (`SIOCOUTQ`, `sk_wmem_alloc`): frames
    /// a qdisc or the device still holds. `None` if the kernel would not say.
    pub(super) fn outq(fd: &OwnedFd) -> Option<u32> {
        let mut n: libc::c_int = 0;
        // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int to the pointer, which points at `n`.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut n as *mut libc::c_int) };
        (r == 0).then(|| u32::try_from(n).unwrap_or(0))
    }

    pub(super) fn socket_packet() -> Result<OwnedFd, AfPacketError> {
        // SAFETY: socket takes no pointers.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(AfPacketError::last_os("socket(AF_PACKET, SOCK_RAW)"));
        }
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    pub(super) fn setsockopt<T>(
        fd: &OwnedFd,
        opt: libc::c_int,
        value: &T,
        call: &'static str,
    ) -> Result<(), AfPacketError> {
        setsockopt_level(fd, libc::SOL_PACKET, opt, value, call)
    }

    pub(super) fn setsockopt_level<T>(
        fd: &OwnedFd,
        level: libc::c_int,
        opt: libc::c_int,
        value: &T,
        call: &'static str,
    ) -> Result<(), AfPacketError> {
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
            Err(AfPacketError::last_os(call))
        } else {
            Ok(())
        }
    }

    pub(super) fn bind_packet(fd: &OwnedFd, ifindex: u32) -> Result<(), AfPacketError> {
        bind_packet_proto(fd, ifindex, libc::ETH_P_ALL as u16)
    }

    /// Binds to `ifindex` receiving `protocol` (host order; 0: nothing).
    pub(super) fn bind_packet_proto(
        fd: &OwnedFd,
        ifindex: u32,
        protocol: u16,
    ) -> Result<(), AfPacketError> {
        let addr = libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as libc::c_ushort,
            sll_protocol: protocol.to_be(),
            sll_ifindex: ifindex as libc::c_int,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 0,
            sll_addr: [0; 8],
        };
        // SAFETY: addr is a live sockaddr_ll and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(AfPacketError::last_os("bind(AF_PACKET)"))
        } else {
            Ok(())
        }
    }

    pub(super) fn if_nametoindex(name: &CStr) -> u32 {
        // SAFETY: name is NUL-terminated and outlives the call.
        unsafe { libc::if_nametoindex(name.as_ptr()) }
    }

    pub(super) fn packet_statistics(fd: &OwnedFd) -> Result<libc::tpacket_stats_v3, AfPacketError> {
        let mut st = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let mut len = mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: st and len are live and len says how many bytes the kernel may write into st.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats_v3).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            Err(AfPacketError::last_os("getsockopt(PACKET_STATISTICS)"))
        } else {
            Ok(st)
        }
    }

    /// One packet from the socket's receive queue into `buf`; with `MSG_TRUNC` in `flags`,
    /// `Ok` is its whole length even when `buf` took less.
    pub(super) fn recv(fd: &OwnedFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
        // SAFETY: buf is a live, writable slice of buf.len() bytes; the kernel writes at most
        // that many.
        let rc = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc as usize)
        }
    }

    pub(super) fn poll_in(fd: &OwnedFd, timeout_ms: libc::c_int) -> io::Result<libc::c_int> {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN | libc::POLLERR,
            revents: 0,
        };
        // SAFETY: one live pollfd, count 1.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    }

    /// Sends up to `super::TX_BATCH` frames in one call, each after its `virtio_net_hdr` when
    /// `vnet` is given (one per frame); `Ok(n)` is how many went out.
    pub(super) fn sendmmsg(
        fd: &OwnedFd,
        frames: &[&[u8]],
        vnet: Option<&[[u8; super::VnetHdr::LEN]]>,
    ) -> io::Result<usize> {
        debug_assert!(frames.len() <= super::TX_BATCH);
        let n = frames.len().min(super::TX_BATCH);
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; 2 * super::TX_BATCH];
        // SAFETY: mmsghdr is a plain C struct for which all-zero is valid (null pointers, zero
        // lengths); a null msg_name sends to the address the socket is bound to.
        let mut msgs: [libc::mmsghdr; super::TX_BATCH] = unsafe { mem::zeroed() };
        for i in 0..n {
            // The kernel only reads through iov_base; the cast to *mut is what the C type asks for.
            let (k, parts) = match vnet.and_then(|v| v.get(i)) {
                Some(h) => {
                    iov[2 * i] = libc::iovec {
                        iov_base: h.as_ptr() as *mut libc::c_void,
                        iov_len: h.len(),
                    };
                    (2 * i + 1, 2)
                }
                None => (2 * i, 1),
            };
            iov[k] = libc::iovec {
                iov_base: frames[i].as_ptr() as *mut libc::c_void,
                iov_len: frames[i].len(),
            };
            msgs[i].msg_hdr.msg_iov = &mut iov[2 * i];
            msgs[i].msg_hdr.msg_iovlen = parts;
        }
        // SAFETY: msgs[..n] point to iov[2i..2i + parts], which point to the borrowed frames and
        // headers; all outlive the call, and the kernel only reads them and writes msg_len.
        let rc = unsafe {
            libc::sendmmsg(
                fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc as usize)
        }
    }
}
