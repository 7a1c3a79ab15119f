//! The router's side of `synproxy` (`nft_synproxy` and the synproxy hook of
//! `nf_synproxy_core`): it answers the client's SYN with a cookie, checks the cookie in the
//! client's ACK and opens the connection to the server itself, answers the server's SYN-ACK,
//! then adjusts sequence numbers and timestamps for the rest of the connection. The packets
//! come from [`crate::synproxy`].

use std::time::Duration;

use nft_conntrack::{ConnId, CtState, Direction, Outcome, Synproxy};
use nft_wire::{checksum, IpProtocol, PacketMeta};

use super::{Router, TxFrame, Walk};
use crate::counters::Drop;
use crate::fib::RouteKind;
use crate::now_ns;
use crate::synproxy::{self as sp, CookieKey, Seg, SynproxySpec, ACK, SYN};

/// Whether the TCP checksum of the segment at `th` of `l3` is right (`nf_ip_checksum`).
fn tcp_checksum_ok(l3: &[u8], th: usize, seg: &Seg) -> bool {
    let Some(t) = l3.get(th..) else { return false };
    let ph = checksum::pseudo_header(&seg.src, &seg.dst, IpProtocol::Tcp, t.len() as u32);
    checksum::combine(&[ph, checksum::sum(t)]) == 0xffff
}

/// How [`Router::synproxy_send`] tracks the packet.
#[derive(Clone, Copy)]
enum Send {
    /// The server's SYN: a new connection with this synproxy state.
    Open(Synproxy),
    /// An ACK of the connection, in this direction.
    Attach(ConnId, Direction),
}

impl Router {
    /// Replaces the SYN cookie secret (a live router sets a random one; the default is fixed
    /// so that simulations are reproducible).
    pub fn set_synproxy_secret(&mut self, key: [u64; 4]) {
        self.cookie_key = CookieKey(key);
    }

    /// A chain's `synproxy` took the packet (a SYN or an ACK, TCP): answer the SYN with a
    /// cookie, or check the ACK's cookie and open the connection to the server. `Err` drops
    /// the packet under its reason; `Ok` lets the chain's verdict (stolen) end the walk.
    pub(super) fn synproxy_answer(
        &mut self,
        w: &mut Walk,
        buf: &mut [u8],
        meta: &mut PacketMeta,
        spec: &SynproxySpec,
        now: Duration,
        out: &mut Vec<TxFrame>,
    ) -> Result<(), Drop> {
        let t = now_ns(now);
        let l3 = buf
            .get(meta.l3_offset..meta.l3_end)
            .ok_or(Drop::SynproxyBadPacket)?;
        let th = meta.ip_header_len;
        let seg = Seg::parse(l3, th).ok_or(Drop::SynproxyBadPacket)?;
        // a partial checksum (a GSO packet's) holds the pseudo-header sum only: not checked,
        // as `nf_ip_checksum` skips CHECKSUM_PARTIAL
        let partial = w.gso.is_some_and(|g| g.partial);
        if !partial && !tcp_checksum_ok(l3, th, &seg) {
            return Err(Drop::SynproxyBadPacket);
        }
        let opts = sp::parse_options(&l3[th..]).ok_or(Drop::SynproxyBadPacket)?;
        if seg.flags & SYN != 0 {
            let synack = sp::client_synack(&self.cookie_key, spec, &seg, opts, t)
                .ok_or(Drop::SynproxyBadPacket)?;
            if self.send_back(w, &synack, true, now, out) {
                self.counters.synproxy_synacks_sent += 1;
            }
            return Ok(());
        }
        if seg.flags & ACK == 0 {
            return Ok(());
        }
        let Some(a) = sp::check_client_ack(&self.cookie_key, &seg, opts, seg.seq, t) else {
            return Err(Drop::SynproxyCookieInvalid);
        };
        self.counters.synproxy_cookies_valid += 1;
        let syn = sp::server_syn(&seg, &a, seg.seq).ok_or(Drop::SynproxyBadPacket)?;
        let state = Synproxy {
            isn: a.isn,
            its: if a.opts.options & sp::OPT_TIMESTAMP != 0 {
                a.opts.tsecr
            } else {
                0
            },
            window: seg.window,
            ..Synproxy::default()
        };
        self.synproxy_send(w, &syn, Send::Open(state), now, out);
        Ok(())
    }

    /// At postrouting, for a forwarded packet of a synproxied connection (the synproxy
    /// hook): the server's SYN-ACK is answered by the router and goes no further; after it,
    /// sequence numbers and timestamps are adjusted.
    pub(super) fn synproxy_post(
        &mut self,
        w: &mut Walk,
        buf: &mut [u8],
        meta: &mut PacketMeta,
        now: Duration,
        out: &mut Vec<TxFrame>,
    ) -> Result<(), Drop> {
        let Some((id, dir)) = w.conn else {
            return Ok(());
        };
        // no connection is synproxied (the usual case): no lookup per forwarded segment
        if meta.ip_protocol != Some(IpProtocol::Tcp) || self.ct.synproxied() == 0 {
            return Ok(());
        }
        let Some(state) = self.ct.get(id).and_then(|c| c.synproxy()).copied() else {
            return Ok(());
        };
        let th = meta.ip_header_len;
        let l3 = buf
            .get_mut(meta.l3_offset..meta.l3_end)
            .ok_or(Drop::SynproxyBadPacket)?;
        if state.established {
            sp::adjust(l3, th, &state, dir == Direction::Reply).ok_or(Drop::SynproxyBadPacket)?;
            return Ok(());
        }
        let seg = Seg::parse(l3, th).ok_or(Drop::SynproxyBadPacket)?;
        if dir == Direction::Reply && seg.flags & sp::RST != 0 {
            // the server refused the router's SYN: its reset reaches the client in the
            // cookie's numbers (the kernel's CLOSE case), so that the client takes it
            let next = Synproxy {
                seq_off: state.isn.wrapping_sub(seg.seq).wrapping_add(1),
                established: true,
                ..state
            };
            let _ = self.ct.set_synproxy(id, next);
            sp::adjust(l3, th, &next, true).ok_or(Drop::SynproxyBadPacket)?;
            return Ok(());
        }
        if dir != Direction::Reply || seg.flags & (SYN | ACK) != SYN | ACK {
            return Ok(());
        }
        let opts = sp::parse_options(&l3[th..]).ok_or(Drop::SynproxyBadPacket)?;
        let (server_ack, client_ack, next) =
            sp::answer_server(&state, &seg, opts, state.window).ok_or(Drop::SynproxyBadPacket)?;
        // the ACK to the server leaves before the adjustment starts, the client's after
        self.synproxy_send(
            w,
            &server_ack,
            Send::Attach(id, Direction::Original),
            now,
            out,
        );
        let _ = self.ct.set_synproxy(id, next);
        self.synproxy_send(w, &client_ack, Send::Attach(id, Direction::Reply), now, out);
        Err(Drop::Stolen)
    }

    /// Sends a packet the router made for a synproxied connection as `ip_local_out` does:
    /// the server's SYN through conntrack (it opens the connection, with the synproxy state,
    /// as the kernel's synproxy template does) and the NAT chains; the ACKs attached to the
    /// connection in their direction, which conntrack does not look at again (`nf_ct_set`);
    /// then the output and postrouting chains, the sequence adjustment, confirmation.
    /// Whether it left.
    fn synproxy_send(
        &mut self,
        w: &Walk,
        l3: &[u8],
        how: Send,
        now: Duration,
        out: &mut Vec<TxFrame>,
    ) -> bool {
        let init = match how {
            Send::Open(s) => Some(s),
            Send::Attach(..) => None,
        };
        let Some((mut buf, mut meta, dst)) = super::own_frame(l3, w.v6) else {
            return false;
        };
        let (oif, via) = match self.fib.lookup(dst) {
            Some((RouteKind::Unicast(nh), _)) => (nh.ifindex, nh.via),
            Some((RouteKind::Local(_), _)) => {
                self.counters.drop(Drop::SynproxyLocalServer);
                return false;
            }
            _ => {
                self.counters.drop(Drop::NoRoute);
                return false;
            }
        };
        let (src_mac, dst_mac) = match self.own_link(oif, via.unwrap_or(dst), None) {
            Ok(m) => m,
            Err(d) => {
                self.counters.drop(d);
                return false;
            }
        };
        let (conn, state) = match how {
            Send::Attach(id, dir) => (Some((id, dir)), CtState::Established),
            Send::Open(_) => match self.ct.process(&meta, w.zone, now) {
                Outcome::Tracked { id, dir, state } => (Some((id, dir)), state),
                Outcome::Invalid(_) => (None, CtState::Invalid),
                Outcome::Untracked => (None, CtState::Untracked),
                Outcome::Refused(_) => {
                    self.counters.drop(Drop::CtTableFull);
                    return false;
                }
            },
        };
        if let (Some((id, _)), Some(s)) = (conn, init) {
            let _ = self.ct.set_synproxy(id, s);
        }
        let mut lw = Walk::own(w, oif, via.or(Some(dst)), src_mac, conn, state);
        // the router's own packet, but the server's SYN is a new connection's first: the
        // NAT chains see it (masquerade binds here), which they skip for `local` answers
        lw.local = init.is_none();
        let mut sink = Vec::new();
        let r = self.local_out_hooks(&mut lw, &mut buf, &mut meta, now, &mut sink);
        out.append(&mut sink);
        let r = r.and_then(|()| {
            let (Some((id, dir)), th) = (lw.conn, meta.ip_header_len) else {
                return Ok(());
            };
            if let Some(s) = self.ct.get(id).and_then(|c| c.synproxy()).copied() {
                if s.established {
                    let l3 = buf
                        .get_mut(meta.l3_offset..meta.l3_end)
                        .ok_or(Drop::SynproxyBadPacket)?;
                    sp::adjust(l3, th, &s, dir == Direction::Reply)
                        .ok_or(Drop::SynproxyBadPacket)?;
                }
            }
            self.confirm(&lw, now)
        });
        if let Err(d) = r {
            if let Some((id, _)) = lw.conn {
                if init.is_some() {
                    self.ct.discard(id);
                }
            }
            self.counters.drop(d);
            return false;
        }
        self.transmit_own(&lw, oif, dst_mac, &buf, &meta, out)
    }
}
