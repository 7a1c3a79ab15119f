//! SCTP connection tracking as Linux's `nf_conntrack_proto_sctp.c` (6.x): the association's
//! state from the chunks each packet carries, the verification tags of both directions (a
//! packet with the wrong tag is invalid), and the states' timeouts.

use crate::status::Timeouts;
use crate::tuple::Direction;
use core::time::Duration;

/// The association's state as conntrack sees it (`enum sctp_conntrack`, with the kernel's
/// numbers: `HEARTBEAT_ACKED` (9) is no longer used since 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SctpState {
    None = 0,
    Closed = 1,
    CookieWait = 2,
    CookieEchoed = 3,
    Established = 4,
    ShutdownSent = 5,
    ShutdownRecd = 6,
    ShutdownAckSent = 7,
    HeartbeatSent = 8,
}

use SctpState::{
    Closed as CL, CookieEchoed as CE, CookieWait as CW, Established as ES, HeartbeatSent as HS,
    None as NO, ShutdownAckSent as SA, ShutdownRecd as SR, ShutdownSent as SS,
};

impl SctpState {
    const ALL: [SctpState; 9] = [NO, CL, CW, CE, ES, SS, SR, SA, HS];

    /// The name `conntrack -L` prints.
    pub const fn name(self) -> &'static str {
        match self {
            NO => "NONE",
            CL => "CLOSED",
            CW => "COOKIE_WAIT",
            CE => "COOKIE_ECHOED",
            ES => "ESTABLISHED",
            SS => "SHUTDOWN_SENT",
            SR => "SHUTDOWN_RECD",
            SA => "SHUTDOWN_ACK_SENT",
            HS => "HEARTBEAT_SENT",
        }
    }

    /// `sctp_can_early_drop`: an association shutting down, which the GC may take out of a
    /// table near its limit even when assured.
    pub const fn can_early_drop(self) -> bool {
        matches!(self, SS | SR | SA)
    }

    /// The state's timeout (`NONE` has the closed one, as the kernel's `timeouts[0]`).
    pub fn timeout(self, t: &Timeouts) -> Duration {
        t.sctp[self as usize]
    }

    /// The state a timeout policy names (`ct timeout` objects, as nft spells them).
    pub fn from_policy_name(name: &str) -> Option<SctpState> {
        Some(match name {
            "closed" => CL,
            "cookie_wait" => CW,
            "cookie_echoed" => CE,
            "established" => ES,
            "shutdown_sent" => SS,
            "shutdown_recd" => SR,
            "shutdown_ack_sent" => SA,
            "heartbeat_sent" => HS,
            _ => return None,
        })
    }
}

/// Linux's default timeouts by state (`sctp_timeouts`), `NONE` first.
pub const DEFAULT_TIMEOUTS: [Duration; 9] = [
    Duration::from_secs(10),
    Duration::from_secs(10),
    Duration::from_secs(3),
    Duration::from_secs(3),
    Duration::from_secs(210),
    Duration::from_secs(3),
    Duration::from_secs(3),
    Duration::from_secs(3),
    Duration::from_secs(30),
];

// chunk types
const DATA: u8 = 0;
const INIT: u8 = 1;
const INIT_ACK: u8 = 2;
const HEARTBEAT: u8 = 4;
const HEARTBEAT_ACK: u8 = 5;
const ABORT: u8 = 6;
const SHUTDOWN: u8 = 7;
const SHUTDOWN_ACK: u8 = 8;
const ERROR: u8 = 9;
const COOKIE_ECHO: u8 = 10;
const COOKIE_ACK: u8 = 11;
const SHUTDOWN_COMPLETE: u8 = 14;
/// The T bit of ABORT and SHUTDOWN COMPLETE: the tag is the sender's own, not the peer's.
const FLAG_T: u8 = 1;

/// `sctp_conntracks[dir][chunk row][state]`; `None` is the kernel's `sIV` (invalid).
const IV: Option<SctpState> = None;
macro_rules! row {
    ($($s:ident),*) => { [$(row!(@ $s)),*] };
    (@ IV) => { IV };
    (@ $s:ident) => { Some($s) };
}
#[rustfmt::skip]
const TRANSITIONS: [[[Option<SctpState>; 9]; 11]; 2] = [
    [
        //       NO  CL  CW  CE  ES  SS  SR  SA  HS
        row!(CL, CL, CW, CE, ES, CL, CL, SA, CW), // init
        row!(CL, CL, CW, CE, ES, SS, SR, SA, CL), // init_ack
        row!(CL, CL, CL, CL, CL, CL, CL, CL, CL), // abort
        row!(CL, CL, CW, CE, SS, SS, SR, SA, CL), // shutdown
        row!(SA, CL, CW, CE, ES, SA, SA, SA, SA), // shutdown_ack
        row!(CL, CL, CW, CE, ES, SS, SR, SA, CL), // error
        row!(CL, CL, CE, CE, ES, SS, SR, SA, CL), // cookie_echo
        row!(CL, CL, CW, ES, ES, SS, SR, SA, CL), // cookie_ack
        row!(CL, CL, CW, CE, ES, SS, SR, CL, CL), // shutdown_comp
        row!(HS, CL, CW, CE, ES, SS, SR, SA, HS), // heartbeat
        row!(CL, CL, CW, CE, ES, SS, SR, SA, HS), // heartbeat_ack
    ],
    [
        row!(IV, CL, CW, CE, ES, SS, SR, SA, IV), // init
        row!(IV, CW, CW, CE, ES, SS, SR, SA, IV), // init_ack
        row!(IV, CL, CL, CL, CL, CL, CL, CL, IV), // abort
        row!(IV, CL, CW, CE, SR, SS, SR, SA, IV), // shutdown
        row!(IV, CL, CW, CE, ES, SA, SA, SA, IV), // shutdown_ack
        row!(IV, CL, CW, CL, ES, SS, SR, SA, IV), // error
        row!(IV, CL, CE, CE, ES, SS, SR, SA, IV), // cookie_echo
        row!(IV, CL, CW, ES, ES, SS, SR, SA, IV), // cookie_ack
        row!(IV, CL, CW, CE, ES, SS, SR, CL, IV), // shutdown_comp
        row!(IV, CL, CW, CE, ES, SS, SR, SA, HS), // heartbeat
        row!(IV, CL, CW, CE, ES, SS, SR, SA, ES), // heartbeat_ack
    ],
];

/// `sctp_new_state`: chunks outside the table (DATA, SACK...) leave the state alone.
fn next_state(dir: Direction, cur: SctpState, chunk: u8) -> Option<SctpState> {
    let row = match chunk {
        INIT => 0,
        INIT_ACK => 1,
        ABORT => 2,
        SHUTDOWN => 3,
        SHUTDOWN_ACK => 4,
        ERROR => 5,
        COOKIE_ECHO => 6,
        COOKIE_ACK => 7,
        SHUTDOWN_COMPLETE => 8,
        HEARTBEAT => 9,
        HEARTBEAT_ACK => 10,
        _ => return Some(cur),
    };
    TRANSITIONS[dir.index() & 1][row][cur as usize]
}

/// Why an SCTP packet is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SctpError {
    /// Shorter than the common header, no chunk, a zero-length chunk, or a chunk that must be
    /// alone or first and is not (`do_basic_checks`); an INIT without its fixed part.
    Malformed,
    /// The CRC32c does not match (`sctp_error`).
    Checksum,
    /// The verification tag is not the association's (RFC 9260 8.5).
    Vtag,
    /// A chunk with no transition from the state, or one that cannot open an association.
    State,
}

/// An SCTP packet's bytes as conntrack reads them: the common header's tag and the chunks.
#[derive(Debug, Clone, Copy)]
pub struct SctpPacket<'a> {
    l4: &'a [u8],
    vtag: u32,
    /// Which chunk types the packet carries.
    map: [u64; 4],
}

/// One chunk: type, flags and where its value starts in the SCTP bytes.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    ty: u8,
    flags: u8,
    at: usize,
}

impl<'a> SctpPacket<'a> {
    /// Reads the SCTP bytes (common header, chunks up to the IP end), with the kernel's basic
    /// checks and, when `check_crc`, the checksum.
    pub fn parse(l4: &'a [u8], check_crc: bool) -> Result<SctpPacket<'a>, SctpError> {
        if l4.len() < 12 {
            return Err(SctpError::Malformed);
        }
        if check_crc && !nft_wire::checksum::verify_sctp(l4) {
            return Err(SctpError::Checksum);
        }
        let vtag = u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]);
        let mut p = SctpPacket {
            l4,
            vtag,
            map: [0; 4],
        };
        let mut count = 0usize;
        let mut alone = false;
        let mut bad = false;
        p.walk(|c, len| {
            if matches!(c.ty, INIT | INIT_ACK | SHUTDOWN_COMPLETE) {
                alone = true;
            }
            // COOKIE ACK/ECHO not first, INIT/INIT ACK/SHUTDOWN COMPLETE not alone, or
            // zero-length
            if (matches!(c.ty, COOKIE_ACK | COOKIE_ECHO) || alone) && count != 0 || len == 0 {
                bad = true;
                return false;
            }
            count += 1;
            true
        });
        if bad || count == 0 {
            return Err(SctpError::Malformed);
        }
        let mut map = [0u64; 4];
        p.walk(|c, _| {
            map[usize::from(c.ty >> 6)] |= 1 << (c.ty & 63);
            true
        });
        p.map = map;
        Ok(p)
    }

    /// Visits the chunks in order (`for_each_sctp_chunk`) until `f` says stop; a zero length
    /// is reported and ends the walk.
    fn walk(&self, mut f: impl FnMut(Chunk, u16) -> bool) {
        let mut at = 12usize;
        while let Some(h) = self.l4.get(at..at + 4) {
            let len = u16::from_be_bytes([h[2], h[3]]);
            if !f(
                Chunk {
                    ty: h[0],
                    flags: h[1],
                    at,
                },
                len,
            ) || len == 0
            {
                return;
            }
            at += (usize::from(len) + 3) & !3;
        }
    }

    fn has(&self, ty: u8) -> bool {
        self.map[usize::from(ty >> 6)] & 1 << (ty & 63) != 0
    }

    /// The initiate tag of the INIT or INIT ACK chunk at `at`, if its fixed part is there.
    fn init_tag(&self, at: usize) -> Option<u32> {
        self.l4.get(at + 4..at + 20)?;
        let b = self.l4.get(at + 4..at + 8)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The packet's verification tag.
    pub fn vtag(&self) -> u32 {
        self.vtag
    }
}

/// What the tracker made of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SctpVerdict {
    /// Refresh the connection with this timeout; `assured` when it just became established.
    Accept {
        timeout: Duration,
        assured: bool,
    },
    /// Let the packet through without refreshing the timeout (an INIT retransmitted on a
    /// closed association, a heartbeat on a path with a new tag).
    Ignore,
    Invalid(SctpError),
}

/// An association's tracking state (`struct ip_ct_sctp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SctpTrack {
    pub state: SctpState,
    /// The tag each direction's packets must carry.
    pub vtag: [u32; 2],
    /// An INIT was seen in that direction (collision handling).
    init: [bool; 2],
    /// A heartbeat came with an unknown tag (a restarted association on another path).
    hb_vtag_failed: bool,
    last_dir: u8,
}

impl SctpTrack {
    /// Before any packet: state NONE, no tags.
    fn fresh() -> SctpTrack {
        SctpTrack {
            state: NO,
            vtag: [0; 2],
            init: [false; 2],
            hb_vtag_failed: false,
            last_dir: 0,
        }
    }

    /// The state of a new association from its first packet (`sctp_new`): `None` when the
    /// packet cannot open one.
    pub fn new(p: &SctpPacket) -> Result<SctpTrack, SctpError> {
        // an out-of-the-blue packet with these is discarded (RFC 9260 8.4)
        if p.has(ABORT) || p.has(SHUTDOWN_COMPLETE) || p.has(COOKIE_ACK) {
            return Err(SctpError::State);
        }
        let mut t = SctpTrack::fresh();
        let mut err = None;
        p.walk(|c, _| {
            match next_state(Direction::Original, NO, c.ty) {
                None | Some(NO) => {
                    err = Some(SctpError::State);
                    return false;
                }
                Some(_) => {}
            }
            match c.ty {
                INIT => {
                    if p.vtag != 0 {
                        err = Some(SctpError::Vtag);
                        return false;
                    }
                    let Some(tag) = p.init_tag(c.at) else {
                        err = Some(SctpError::Malformed);
                        return false;
                    };
                    t.vtag[1] = tag;
                }
                HEARTBEAT => t.vtag[0] = p.vtag,
                // an out-of-the-blue SHUTDOWN ACK expects a SHUTDOWN COMPLETE, anything
                // else an ABORT, both with this tag (8.4 (5), (8))
                _ => t.vtag[1] = p.vtag,
            }
            true
        });
        match err {
            Some(e) => Err(e),
            None => Ok(t),
        }
    }

    /// A packet of the association in direction `dir` (`nf_conntrack_sctp_packet`).
    /// `confirmed`: the connection is in the table (not the packet that opened it). State
    /// changes by chunks before an invalid one stay, as in the kernel.
    pub fn packet(
        &mut self,
        dir: Direction,
        p: &SctpPacket,
        confirmed: bool,
        timeouts: &Timeouts,
    ) -> SctpVerdict {
        let d = dir.index() & 1;
        let exempt = [
            INIT,
            SHUTDOWN_COMPLETE,
            COOKIE_ECHO,
            ABORT,
            SHUTDOWN_ACK,
            HEARTBEAT,
            HEARTBEAT_ACK,
        ];
        if !exempt.iter().any(|&c| p.has(c)) && p.vtag != self.vtag[d] {
            return SctpVerdict::Invalid(SctpError::Vtag);
        }
        let mut new_state = NO;
        let mut ignore = false;
        let mut assured = false;
        let mut err = None;
        p.walk(|c, _| {
            // the special cases of the tag check (8.5.1)
            let tag_t = |s: &Self| {
                if c.flags & FLAG_T == 0 {
                    s.vtag[d]
                } else {
                    s.vtag[1 - d]
                }
            };
            match c.ty {
                INIT if p.vtag != 0 => {
                    err = Some(SctpError::Vtag);
                    return false;
                }
                ABORT | SHUTDOWN_COMPLETE if p.vtag != tag_t(self) => {
                    err = Some(SctpError::Vtag);
                    return false;
                }
                COOKIE_ECHO if p.vtag != self.vtag[d] => {
                    err = Some(SctpError::Vtag);
                    return false;
                }
                COOKIE_ACK => self.init = [false; 2],
                HEARTBEAT => {
                    if self.vtag[d] == 0 {
                        self.vtag[d] = p.vtag;
                    } else if p.vtag != self.vtag[d] {
                        if p.has(DATA) || ignore {
                            err = Some(SctpError::Vtag);
                            return false;
                        }
                        self.hb_vtag_failed = true;
                        self.last_dir = d as u8;
                        ignore = true;
                        return true;
                    } else {
                        self.hb_vtag_failed = false;
                    }
                }
                HEARTBEAT_ACK => {
                    if self.vtag[d] == 0 {
                        self.vtag[d] = p.vtag;
                    } else if p.vtag != self.vtag[d] {
                        if p.has(DATA)
                            || ignore
                            || !self.hb_vtag_failed
                            || usize::from(self.last_dir) == d
                        {
                            err = Some(SctpError::Vtag);
                            return false;
                        }
                        self.hb_vtag_failed = false;
                        self.vtag[d] = p.vtag;
                        self.vtag[1 - d] = 0;
                    } else {
                        self.hb_vtag_failed = false;
                    }
                }
                _ => {}
            }
            let old_state = self.state;
            let Some(next) = next_state(dir, old_state, c.ty) else {
                err = Some(SctpError::State);
                return false;
            };
            new_state = next;
            match c.ty {
                INIT => {
                    let Some(tag) = p.init_tag(c.at) else {
                        err = Some(SctpError::Malformed);
                        return false;
                    };
                    if self.init[d] && self.init[1 - d] {
                        self.init[1 - d] = false;
                    }
                    self.init[d] = true;
                    self.vtag[1 - d] = tag;
                    // a retransmitted INIT does not renew the timeout, so that a client (or
                    // a NAT in front of it) reusing the port cannot keep the entry alive
                    if next == CL && old_state == CL && confirmed {
                        ignore = true;
                    }
                }
                INIT_ACK => {
                    let Some(tag) = p.init_tag(c.at) else {
                        err = Some(SctpError::Malformed);
                        return false;
                    };
                    let v = self.vtag[1 - d];
                    // a tag other than the INIT announced, or an INIT collision's
                    let (mine, other) = (self.init[d], self.init[1 - d]);
                    if v != tag && (!other && v != 0 || mine && other) {
                        err = Some(SctpError::Vtag);
                        return false;
                    }
                    self.vtag[1 - d] = tag;
                }
                _ => {}
            }
            if self.state != next && next == ES {
                assured = true;
            }
            self.state = next;
            true
        });
        if let Some(e) = err {
            return SctpVerdict::Invalid(e);
        }
        if ignore {
            return SctpVerdict::Ignore;
        }
        SctpVerdict::Accept {
            timeout: new_state.timeout(timeouts),
            assured,
        }
    }
}

impl SctpState {
    /// The state with number `n` (`CTA_PROTOINFO_SCTP_STATE`).
    pub fn from_number(n: u8) -> Option<SctpState> {
        SctpState::ALL.get(usize::from(n)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn chunk(ty: u8, flags: u8, value: &[u8]) -> Vec<u8> {
        let mut c = vec![ty, flags];
        c.extend_from_slice(&(4 + value.len() as u16).to_be_bytes());
        c.extend_from_slice(value);
        while c.len() % 4 != 0 {
            c.push(0);
        }
        c
    }

    pub(crate) fn init(ty: u8, tag: u32) -> Vec<u8> {
        let mut v = tag.to_be_bytes().to_vec();
        v.extend_from_slice(&[0, 1, 0, 0, 0, 10, 0, 10, 0, 0, 0, 1]);
        chunk(ty, 0, &v)
    }

    fn pkt(vtag: u32, chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut p = vec![0x13, 0x88, 0x17, 0x70];
        p.extend_from_slice(&vtag.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        for c in chunks {
            p.extend_from_slice(c);
        }
        nft_wire::checksum::fill_sctp(&mut p);
        p
    }

    const O: Direction = Direction::Original;
    const R: Direction = Direction::Reply;

    fn step(t: &mut SctpTrack, dir: Direction, vtag: u32, chunks: &[Vec<u8>]) -> SctpVerdict {
        let b = pkt(vtag, chunks);
        let p = SctpPacket::parse(&b, true).unwrap();
        t.packet(dir, &p, true, &Timeouts::default())
    }

    /// A new association from its first packet (original direction), and that packet's verdict.
    fn open(vtag: u32, chunks: &[Vec<u8>]) -> (SctpTrack, SctpVerdict) {
        let b = pkt(vtag, chunks);
        let p = SctpPacket::parse(&b, true).unwrap();
        let mut t = SctpTrack::new(&p).unwrap();
        let v = t.packet(O, &p, false, &Timeouts::default());
        (t, v)
    }

    fn accept(secs: u64, assured: bool) -> SctpVerdict {
        SctpVerdict::Accept {
            timeout: Duration::from_secs(secs),
            assured,
        }
    }

    #[test]
    fn association_setup_data_and_shutdown() {
        let b = pkt(0, &[init(INIT, 0x1111)]);
        let p = SctpPacket::parse(&b, true).unwrap();
        let mut t = SctpTrack::new(&p).unwrap();
        assert_eq!(t.vtag, [0, 0x1111]);
        assert_eq!(
            t.packet(O, &p, false, &Timeouts::default()),
            accept(10, false)
        );
        assert_eq!(t.state, CL);
        assert_eq!(
            step(&mut t, R, 0x1111, &[init(INIT_ACK, 0x2222)]),
            accept(3, false)
        );
        assert_eq!((t.state, t.vtag), (CW, [0x2222, 0x1111]));
        let echo = chunk(COOKIE_ECHO, 0, b"cookie");
        assert_eq!(step(&mut t, O, 0x2222, &[echo]), accept(3, false));
        assert_eq!(t.state, CE);
        assert_eq!(
            step(&mut t, R, 0x1111, &[chunk(COOKIE_ACK, 0, &[])]),
            accept(210, true)
        );
        assert_eq!(t.state, ES);
        let data = chunk(DATA, 3, &[0; 12]);
        assert_eq!(
            step(&mut t, O, 0x2222, std::slice::from_ref(&data)),
            accept(210, false)
        );
        // the wrong tag, either way
        assert_eq!(
            step(&mut t, O, 0x1111, std::slice::from_ref(&data)),
            SctpVerdict::Invalid(SctpError::Vtag)
        );
        assert_eq!(
            step(&mut t, R, 0x2222, &[data]),
            SctpVerdict::Invalid(SctpError::Vtag)
        );
        assert_eq!(
            step(&mut t, O, 0x2222, &[chunk(SHUTDOWN, 0, &[0; 4])]),
            accept(3, false)
        );
        assert_eq!(t.state, SS);
        assert_eq!(
            step(&mut t, R, 0x1111, &[chunk(SHUTDOWN_ACK, 0, &[])]),
            accept(3, false)
        );
        assert_eq!(t.state, SA);
        // SHUTDOWN COMPLETE with the T bit carries the other direction's tag
        assert_eq!(
            step(&mut t, O, 0x2222, &[chunk(SHUTDOWN_COMPLETE, 1, &[])]),
            SctpVerdict::Invalid(SctpError::Vtag)
        );
        assert_eq!(
            step(&mut t, O, 0x2222, &[chunk(SHUTDOWN_COMPLETE, 0, &[])]),
            accept(10, false)
        );
        assert_eq!(t.state, CL);
        // an INIT again on the closed association passes without renewing the timeout
        assert_eq!(
            step(&mut t, O, 0, &[init(INIT, 0x3333)]),
            SctpVerdict::Ignore
        );
        assert_eq!(t.vtag[1], 0x3333);
    }

    #[test]
    fn bad_packets_and_openers() {
        let data = chunk(DATA, 3, &[0; 12]);
        // checksum, no chunk, zero length, INIT not alone, COOKIE ECHO not first
        let mut b = pkt(0, &[init(INIT, 1)]);
        b[20] ^= 1;
        assert_eq!(
            SctpPacket::parse(&b, true).unwrap_err(),
            SctpError::Checksum
        );
        assert!(SctpPacket::parse(&b, false).is_ok());
        assert_eq!(
            SctpPacket::parse(&pkt(0, &[]), true).unwrap_err(),
            SctpError::Malformed
        );
        assert_eq!(
            SctpPacket::parse(&pkt(0, &[vec![0, 0, 0, 0]]), true).unwrap_err(),
            SctpError::Malformed
        );
        for chunks in [
            vec![init(INIT, 1), data.clone()],
            vec![data.clone(), init(INIT, 1)],
            vec![data.clone(), chunk(COOKIE_ECHO, 0, b"c")],
        ] {
            assert_eq!(
                SctpPacket::parse(&pkt(0, &chunks), true).unwrap_err(),
                SctpError::Malformed
            );
        }
        assert_eq!(
            SctpPacket::parse(&b[..11], false).unwrap_err(),
            SctpError::Malformed
        );
        // cannot open: ABORT, COOKIE ACK, INIT with a tag, INIT cut short
        for (vtag, c) in [
            (5, chunk(ABORT, 0, &[])),
            (5, chunk(COOKIE_ACK, 0, &[])),
            (5, init(INIT, 1)),
            (0, chunk(INIT, 0, &[0; 8])),
        ] {
            let b = pkt(vtag, &[c]);
            let p = SctpPacket::parse(&b, true).unwrap();
            assert!(SctpTrack::new(&p).is_err());
        }
        // DATA out of the blue opens nothing (it leaves the state NONE)
        let b = pkt(7, &[data]);
        let p = SctpPacket::parse(&b, true).unwrap();
        assert_eq!(SctpTrack::new(&p).unwrap_err(), SctpError::State);
        // an out-of-the-blue SHUTDOWN ACK opens SHUTDOWN_ACK_SENT, expecting the reply's
        // SHUTDOWN COMPLETE with the T bit and the same tag
        let (mut t, v) = open(7, &[chunk(SHUTDOWN_ACK, 0, &[])]);
        assert_eq!(v, accept(3, false));
        assert_eq!(t.state, SA);
        let mut u = t;
        assert_eq!(
            step(&mut u, R, 7, &[chunk(SHUTDOWN_COMPLETE, 1, &[])]),
            SctpVerdict::Invalid(SctpError::Vtag)
        );
        assert_eq!(
            step(&mut t, R, 7, &[chunk(SHUTDOWN_COMPLETE, 0, &[])]),
            accept(10, false)
        );
        // a heartbeat opens HEARTBEAT_SENT (a secondary path); its ack establishes it
        let (mut t, v) = open(9, &[chunk(HEARTBEAT, 0, &[0, 1, 0, 4])]);
        assert_eq!(v, accept(30, false));
        assert_eq!(
            step(&mut t, R, 8, &[chunk(HEARTBEAT_ACK, 0, &[0, 1, 0, 4])]),
            accept(210, true)
        );
        assert_eq!((t.state, t.vtag), (ES, [9, 8]));
        // INIT ACK in reply to nothing is invalid from NONE
        let mut t = SctpTrack::fresh();
        assert_eq!(
            step(&mut t, R, 0, &[init(INIT_ACK, 1)]),
            SctpVerdict::Invalid(SctpError::State)
        );
        // an INIT ACK with another tag than the one the INIT announced is refused
        let (mut t, _) = open(0, &[init(INIT, 0x10)]);
        let mut u = t;
        u.init = [false; 2];
        u.vtag[0] = 0x99;
        assert_eq!(
            step(&mut u, R, 0x10, &[init(INIT_ACK, 0x20)]),
            SctpVerdict::Invalid(SctpError::Vtag)
        );
        let mut u = t;
        assert_eq!(
            step(&mut u, R, 0x10, &[init(INIT_ACK, 0x20)]),
            accept(3, false)
        );
        assert_eq!(u.vtag, [0x20, 0x10]);
        // abort with the right tag closes
        assert_eq!(
            step(&mut t, R, 0x10, &[chunk(ABORT, 0, &[])]),
            accept(10, false)
        );
        assert_eq!(t.state, CL);
    }

    #[test]
    fn table_is_the_kernels() {
        // a few cells read straight off nf_conntrack_proto_sctp.c
        assert_eq!(next_state(O, NO, INIT), Some(CL));
        assert_eq!(next_state(R, CL, INIT_ACK), Some(CW));
        assert_eq!(next_state(R, NO, INIT), None);
        assert_eq!(next_state(R, ES, SHUTDOWN), Some(SR));
        assert_eq!(next_state(O, SS, INIT), Some(CL));
        assert_eq!(next_state(R, CE, ERROR), Some(CL));
        assert_eq!(next_state(O, ES, DATA), Some(ES));
        assert_eq!(SctpState::from_number(4), Some(ES));
        assert_eq!(SctpState::from_number(9), None);
        assert_eq!(ES.name(), "ESTABLISHED");
    }
}
