//! TCP state tracking after nf_conntrack_proto_tcp.c: the same states, the same transition
//! table by direction and packet type, and liberal window tracking (as with
//! `nf_conntrack_tcp_be_liberal=1`): sequence numbers are followed only for what decides a
//! timeout (unacknowledged data, retransmissions, a zero window), never to refuse a packet.

use crate::status::Timeouts;
use crate::tuple::Direction;
use core::time::Duration;
use nft_wire::TcpFlags;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpState {
    None = 0,
    SynSent = 1,
    SynRecv = 2,
    Established = 3,
    FinWait = 4,
    CloseWait = 5,
    LastAck = 6,
    TimeWait = 7,
    Close = 8,
    SynSent2 = 9,
}

impl TcpState {
    /// The name `conntrack -L` prints.
    pub const fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::SynSent2 => "SYN_SENT2",
        }
    }

    /// `tcp_can_early_drop`: a closing connection, which the GC may take out of a table
    /// near its limit even when assured.
    pub const fn can_early_drop(self) -> bool {
        matches!(
            self,
            TcpState::FinWait
                | TcpState::LastAck
                | TcpState::TimeWait
                | TcpState::Close
                | TcpState::CloseWait
        )
    }

    pub fn timeout(self, t: &Timeouts) -> Duration {
        match self {
            // NONE never lasts past the packet that left it.
            TcpState::None | TcpState::SynSent => t.tcp_syn_sent,
            TcpState::SynRecv => t.tcp_syn_recv,
            TcpState::Established => t.tcp_established,
            TcpState::FinWait => t.tcp_fin_wait,
            TcpState::CloseWait => t.tcp_close_wait,
            TcpState::LastAck => t.tcp_last_ack,
            TcpState::TimeWait => t.tcp_time_wait,
            TcpState::Close => t.tcp_close,
            TcpState::SynSent2 => t.tcp_syn_sent2,
        }
    }
}

/// The packet types of the transition table (`enum tcp_bit_set`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpPacketType {
    Syn = 0,
    SynAck = 1,
    Fin = 2,
    Ack = 3,
    Rst = 4,
    None = 5,
}

impl TcpPacketType {
    pub fn of(flags: TcpFlags) -> TcpPacketType {
        if flags.contains(TcpFlags::RST) {
            TcpPacketType::Rst
        } else if flags.contains(TcpFlags::SYN) {
            if flags.contains(TcpFlags::ACK) {
                TcpPacketType::SynAck
            } else {
                TcpPacketType::Syn
            }
        } else if flags.contains(TcpFlags::FIN) {
            TcpPacketType::Fin
        } else if flags.contains(TcpFlags::ACK) {
            TcpPacketType::Ack
        } else {
            TcpPacketType::None
        }
    }
}

/// A cell of the transition table: a state, "invalid" or "ignore".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    S(TcpState),
    Iv,
    Ig,
}

use Next::{Ig as sIG, Iv as sIV};
#[allow(non_upper_case_globals)]
const sSS: Next = Next::S(TcpState::SynSent);
#[allow(non_upper_case_globals)]
const sSR: Next = Next::S(TcpState::SynRecv);
#[allow(non_upper_case_globals)]
const sES: Next = Next::S(TcpState::Established);
#[allow(non_upper_case_globals)]
const sFW: Next = Next::S(TcpState::FinWait);
#[allow(non_upper_case_globals)]
const sCW: Next = Next::S(TcpState::CloseWait);
#[allow(non_upper_case_globals)]
const sLA: Next = Next::S(TcpState::LastAck);
#[allow(non_upper_case_globals)]
const sTW: Next = Next::S(TcpState::TimeWait);
#[allow(non_upper_case_globals)]
const sCL: Next = Next::S(TcpState::Close);
#[allow(non_upper_case_globals)]
const sS2: Next = Next::S(TcpState::SynSent2);

/// `tcp_conntracks[dir][packet type][state]`, columns NONE, SYN_SENT, SYN_RECV, ESTABLISHED,
/// FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE, SYN_SENT2, as in the kernel.
#[rustfmt::skip]
const TRANSITIONS: [[[Next; 10]; 6]; 2] = [
    [
        // ORIGINAL
        /* syn    */ [sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2],
        /* synack */ [sIV, sIV, sSR, sIV, sIV, sIV, sIV, sIV, sIV, sSR],
        /* fin    */ [sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV],
        /* ack    */ [sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV],
        /* rst    */ [sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL],
        /* none   */ [sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV],
    ],
    [
        // REPLY
        /* syn    */ [sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sIV, sS2],
        /* synack */ [sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR],
        /* fin    */ [sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV],
        /* ack    */ [sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG],
        /* rst    */ [sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL],
        /* none   */ [sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV],
    ],
];

fn next(dir: Direction, ty: TcpPacketType, state: TcpState) -> Next {
    TRANSITIONS[dir.index()][ty as usize][state as usize]
}

/// Flag combinations a TCP segment may carry (`tcp_valid_flags`), with ECE, CWR and PSH
/// masked off: SYN, SYN|URG, SYN|ACK, RST, RST|ACK, FIN|ACK, FIN|ACK|URG, ACK, ACK|URG.
pub fn valid_flags(flags: TcpFlags) -> bool {
    let f = flags.bits() & 0x3f & !TcpFlags::PSH.bits();
    matches!(
        f,
        0x02 | 0x22 | 0x12 | 0x04 | 0x14 | 0x11 | 0x31 | 0x10 | 0x30
    )
}

/// The fields of a segment the tracker reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub flags: TcpFlags,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    pub payload_len: u32,
}

impl Segment {
    /// Sequence number just past the segment; SYN and FIN count as one byte each.
    fn end(&self) -> u32 {
        let mut end = self.seq.wrapping_add(self.payload_len);
        if self.flags.contains(TcpFlags::SYN) {
            end = end.wrapping_add(1);
        }
        if self.flags.contains(TcpFlags::FIN) {
            end = end.wrapping_add(1);
        }
        end
    }
}

fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// What one direction has been seen to do. Packed (10 bytes, not 12): a connection holds
/// two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C, packed)]
pub struct Side {
    /// Highest sequence end sent, once the side has sent anything.
    pub end: Option<u32>,
    /// Sent data the other side has not acknowledged yet.
    pub unacked: bool,
    /// Started the close (its FIN moved the connection to FIN_WAIT): a later SYN may reopen.
    pub close_init: bool,
}

/// Per-connection TCP state (`struct ip_ct_tcp`, reduced to what liberal tracking uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpTrack {
    pub state: TcpState,
    pub seen: [Side; 2],
    last_dir: Direction,
    last_type: TcpPacketType,
    last_seq: u32,
    last_ack: u32,
    last_end: u32,
    last_win: u16,
    retrans: u8,
}

/// The tracker's answer for one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpVerdict {
    /// In state; refresh the connection with this timeout.
    Accept { timeout: Duration },
    /// Accepted without touching state or timeout (a retransmitted SYN/ACK, a SYN on an
    /// established connection that may be out of sync).
    Ignore,
    /// Fits no state: `ct state invalid`.
    Invalid(&'static str),
    /// A SYN reopening a closed connection: the old entry goes, the packet starts a new one.
    Reopen,
}

impl TcpTrack {
    /// Starts tracking from a connection's first segment (`tcp_new`, then the segment through
    /// the table from NONE): the tracker and the timeout, or why the segment cannot open a
    /// connection. Without `loose`, only a SYN opens one.
    pub fn new(
        seg: &Segment,
        loose: bool,
        timeouts: &Timeouts,
        max_retrans: u8,
    ) -> Result<(TcpTrack, Duration), &'static str> {
        if !valid_flags(seg.flags) {
            return Err("tcp: invalid flag combination");
        }
        let ty = TcpPacketType::of(seg.flags);
        match next(Direction::Original, ty, TcpState::None) {
            Next::S(TcpState::Established) if !loose => {
                return Err("tcp: mid-stream pickup disabled")
            }
            Next::S(_) => {}
            _ => return Err("tcp: invalid new connection"),
        }
        let mut t = TcpTrack {
            state: TcpState::None,
            seen: [Side::default(); 2],
            last_dir: Direction::Original,
            last_type: TcpPacketType::None,
            last_seq: seg.seq.wrapping_sub(1),
            last_ack: 0,
            last_end: 0,
            last_win: 0,
            retrans: 0,
        };
        match t.packet(Direction::Original, seg, timeouts, max_retrans) {
            TcpVerdict::Accept { timeout } => Ok((t, timeout)),
            _ => Err("tcp: invalid new connection"),
        }
    }

    /// Tracks one segment (`nf_conntrack_tcp_packet`).
    pub fn packet(
        &mut self,
        dir: Direction,
        seg: &Segment,
        timeouts: &Timeouts,
        max_retrans: u8,
    ) -> TcpVerdict {
        if !valid_flags(seg.flags) {
            return TcpVerdict::Invalid("tcp: invalid flag combination");
        }
        let old = self.state;
        let ty = TcpPacketType::of(seg.flags);
        let mut new = next(dir, ty, old);

        if new == sSS && old >= TcpState::TimeWait {
            // RFC 1122 lets a SYN reopen a connection in TIME_WAIT; the kernel also lets a
            // client abort a connection with RST and start over on the same ports.
            let close_init = self.seen[0].close_init || self.seen[1].close_init;
            if close_init || (self.last_dir == dir && self.last_type == TcpPacketType::Rst) {
                return TcpVerdict::Reopen;
            }
            new = sIG;
        }
        let new = match new {
            Next::S(s) => s,
            Next::Iv => return TcpVerdict::Invalid("tcp: invalid state transition"),
            Next::Ig => {
                // A SYN/ACK answering a SYN that was ignored because it arrived on a
                // connection we believed open: both ends agree on a new session, so follow
                // them into SYN_RECV.
                if ty == TcpPacketType::SynAck
                    && self.last_type == TcpPacketType::Syn
                    && self.last_dir != dir
                {
                    self.state = TcpState::SynRecv;
                    self.record(dir, ty, seg);
                    return TcpVerdict::Accept {
                        timeout: timeouts.tcp_syn_recv,
                    };
                }
                self.last_dir = dir;
                self.last_type = ty;
                return TcpVerdict::Ignore;
            }
        };

        self.window_bookkeeping(dir, seg);
        self.record(dir, ty, seg);
        self.state = new;
        if old != new && new == TcpState::FinWait {
            self.seen[dir.index()].close_init = true;
        }

        let state_timeout = new.timeout(timeouts);
        let unacked = self.seen[0].unacked || self.seen[1].unacked;
        let timeout = if self.retrans >= max_retrans && state_timeout > timeouts.tcp_retrans {
            timeouts.tcp_retrans
        } else if ty == TcpPacketType::Rst {
            timeouts.tcp_close
        } else if unacked && state_timeout > timeouts.tcp_unacknowledged {
            timeouts.tcp_unacknowledged
        } else if self.last_win == 0 && state_timeout > timeouts.tcp_retrans {
            timeouts.tcp_retrans
        } else {
            state_timeout
        };
        TcpVerdict::Accept { timeout }
    }

    /// The part of `tcp_in_window` that liberal tracking keeps: the highest end each side
    /// sent, and whether the other side acknowledged it.
    fn window_bookkeeping(&mut self, dir: Direction, seg: &Segment) {
        let end = seg.end();
        let (s, r) = (dir.index(), dir.opposite().index());
        // copied out: the fields of a packed side cannot be borrowed
        let (sent, acked) = ({ self.seen[s].end }, { self.seen[r].end });
        match sent {
            None => self.seen[s].end = Some(end),
            Some(prev) if after(end, prev) => {
                self.seen[s].end = Some(end);
                self.seen[s].unacked = true;
            }
            Some(_) => {}
        }
        if seg.flags.contains(TcpFlags::ACK) && acked == Some(seg.ack) {
            self.seen[r].unacked = false;
        }
    }

    fn record(&mut self, dir: Direction, ty: TcpPacketType, seg: &Segment) {
        let end = seg.end();
        if self.last_dir == dir
            && self.last_seq == seg.seq
            && self.last_ack == seg.ack
            && self.last_end == end
            && self.last_win == seg.window
        {
            self.retrans = self.retrans.saturating_add(1);
        } else {
            self.last_seq = seg.seq;
            self.last_ack = seg.ack;
            self.last_end = end;
            self.last_win = seg.window;
            self.retrans = 0;
        }
        self.last_dir = dir;
        self.last_type = ty;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::{Original as O, Reply as R};

    const SYN: TcpFlags = TcpFlags::SYN;
    const ACK: TcpFlags = TcpFlags::ACK;

    fn seg(flags: TcpFlags, seq: u32, ack: u32, len: u32) -> Segment {
        Segment {
            flags,
            seq,
            ack,
            window: 1000,
            payload_len: len,
        }
    }

    fn or(a: TcpFlags, b: TcpFlags) -> TcpFlags {
        TcpFlags(a.bits() | b.bits())
    }

    #[test]
    fn flag_validity() {
        assert!(valid_flags(SYN));
        assert!(valid_flags(or(SYN, ACK)));
        assert!(valid_flags(or(ACK, TcpFlags::PSH)));
        assert!(valid_flags(or(TcpFlags::FIN, ACK)));
        assert!(valid_flags(TcpFlags::RST));
        assert!(!valid_flags(or(SYN, TcpFlags::FIN)));
        assert!(!valid_flags(TcpFlags::FIN));
        assert!(!valid_flags(TcpFlags::NONE));
        assert!(!valid_flags(or(SYN, TcpFlags::RST)));
    }

    #[test]
    fn handshake_data_and_close() {
        let t = Timeouts::default();
        let mut c = TcpTrack::new(&seg(SYN, 100, 0, 0), true, &t, 3).unwrap().0;
        assert_eq!(c.state, TcpState::SynSent);
        let v = c.packet(R, &seg(or(SYN, ACK), 500, 101, 0), &t, 3);
        assert_eq!(
            v,
            TcpVerdict::Accept {
                timeout: t.tcp_syn_recv
            }
        );
        assert_eq!(c.state, TcpState::SynRecv);
        let v = c.packet(O, &seg(ACK, 101, 501, 0), &t, 3);
        assert_eq!(
            v,
            TcpVerdict::Accept {
                timeout: t.tcp_established
            }
        );
        assert_eq!(c.state, TcpState::Established);

        // Data not yet acknowledged caps the timeout at 300 s...
        let v = c.packet(O, &seg(ACK, 101, 501, 10), &t, 3);
        assert_eq!(
            v,
            TcpVerdict::Accept {
                timeout: t.tcp_unacknowledged
            }
        );
        // ...until the peer acknowledges it.
        let v = c.packet(R, &seg(ACK, 501, 111, 0), &t, 3);
        assert_eq!(
            v,
            TcpVerdict::Accept {
                timeout: t.tcp_established
            }
        );

        let fin_ack = or(TcpFlags::FIN, ACK);
        assert_eq!(
            c.packet(O, &seg(fin_ack, 111, 501, 0), &t, 3),
            TcpVerdict::Accept {
                timeout: t.tcp_fin_wait
            }
        );
        assert_eq!(c.state, TcpState::FinWait);
        c.packet(R, &seg(ACK, 501, 112, 0), &t, 3);
        assert_eq!(c.state, TcpState::CloseWait);
        c.packet(R, &seg(fin_ack, 501, 112, 0), &t, 3);
        assert_eq!(c.state, TcpState::LastAck);
        let v = c.packet(O, &seg(ACK, 112, 502, 0), &t, 3);
        assert_eq!(c.state, TcpState::TimeWait);
        assert_eq!(
            v,
            TcpVerdict::Accept {
                timeout: t.tcp_time_wait
            }
        );
        // A new SYN from the client reopens the connection.
        assert_eq!(
            c.packet(O, &seg(SYN, 9000, 0, 0), &t, 3),
            TcpVerdict::Reopen
        );
    }

    #[test]
    fn invalid_and_ignored() {
        let t = Timeouts::default();
        assert!(TcpTrack::new(&seg(or(SYN, ACK), 1, 1, 0), true, &t, 3).is_err());
        assert!(TcpTrack::new(&seg(ACK, 1, 1, 0), false, &t, 3).is_err());
        let mut c = TcpTrack::new(&seg(ACK, 1, 1, 0), true, &t, 3).unwrap().0;
        assert_eq!(c.state, TcpState::Established);

        let mut c2 = TcpTrack::new(&seg(SYN, 1, 0, 0), true, &t, 3).unwrap().0;
        // ACK from the client before any SYN/ACK.
        assert!(matches!(
            c2.packet(O, &seg(ACK, 2, 1, 0), &t, 3),
            TcpVerdict::Invalid(_)
        ));
        // A SYN on an established connection is ignored, state unchanged.
        assert_eq!(c.packet(O, &seg(SYN, 50, 0, 0), &t, 3), TcpVerdict::Ignore);
        assert_eq!(c.state, TcpState::Established);
    }

    #[test]
    fn rst_closes_with_close_timeout() {
        let t = Timeouts::default();
        let mut c = TcpTrack::new(&seg(ACK, 1, 1, 0), true, &t, 3).unwrap().0;
        let v = c.packet(R, &seg(TcpFlags::RST, 1, 0, 0), &t, 3);
        assert_eq!(
            v,
            TcpVerdict::Accept {
                timeout: t.tcp_close
            }
        );
        assert_eq!(c.state, TcpState::Close);
        // The server reset it; a client SYN is ignored rather than reopening (kernel rule).
        assert_eq!(c.packet(O, &seg(SYN, 7, 0, 0), &t, 3), TcpVerdict::Ignore);
        // But a client that reset the connection itself may reopen it.
        let mut d = TcpTrack::new(&seg(ACK, 1, 1, 0), true, &t, 3).unwrap().0;
        d.packet(O, &seg(TcpFlags::RST, 1, 0, 0), &t, 3);
        assert_eq!(d.packet(O, &seg(SYN, 7, 0, 0), &t, 3), TcpVerdict::Reopen);
    }

    #[test]
    fn retransmissions_shorten_established_timeout() {
        let t = Timeouts::default();
        let mut c = TcpTrack::new(&seg(ACK, 1, 1, 0), true, &t, 3).unwrap().0;
        c.packet(R, &seg(ACK, 1, 1, 0), &t, 3);
        let s = seg(ACK, 1, 1, 0);
        let mut last = TcpVerdict::Ignore;
        for _ in 0..4 {
            last = c.packet(O, &s, &t, 3);
        }
        assert_eq!(
            last,
            TcpVerdict::Accept {
                timeout: t.tcp_retrans
            }
        );
    }

    #[test]
    fn simultaneous_open() {
        let t = Timeouts::default();
        let mut c = TcpTrack::new(&seg(SYN, 1, 0, 0), true, &t, 3).unwrap().0;
        c.packet(R, &seg(SYN, 100, 0, 0), &t, 3);
        assert_eq!(c.state, TcpState::SynSent2);
        c.packet(R, &seg(or(SYN, ACK), 100, 2, 0), &t, 3);
        assert_eq!(c.state, TcpState::SynRecv);
    }
}
