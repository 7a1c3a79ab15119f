//! Connection tracking as Linux netfilter does it, as a library: tuples, a bounded table of
//! connections, TCP/UDP/ICMP state with Linux's timeouts, `ct state`/`ct status`, and NAT
//! bindings with port allocation.
//!
//! The slow path calls [`Table::process`] for each packet (`nf_conntrack_in`), reads and sets
//! the connection through the returned [`ConnId`] while rules run (mark, labels, NAT with
//! [`Table::snat`], [`Table::dnat`], [`Table::masquerade`], [`Table::redirect`]), and calls
//! [`Table::confirm`] after the last hook (or [`Table::discard`] when the packet is dropped).
//! [`Table::rewrite`] then gives the NAT rewrite of each direction, and [`apply_rewrite`] puts
//! it into a frame. Time is always an argument; nothing here reads a clock.
//!
//! ```
//! use core::time::Duration;
//! use nft_conntrack::{CtState, Direction, NatRange, Table, Tuple};
//! # use nft_wire::{parse_frame, IpProtocol, Ipv4Addr, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr};
//! # fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
//! #     let (s, d) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
//! #     let u = UdpRepr { src_port: sport, dst_port: dport, payload: b"hi" };
//! #     let ip = Ipv4Repr { src_addr: s, dst_addr: d, next_header: IpProtocol::Udp,
//! #         payload_len: u.buffer_len(), ttl: 64, dscp: 0, ecn: 0, ident: 1,
//! #         dont_frag: true, more_frags: false, frag_offset: 0 };
//! #     let mut f = vec![0u8; 14 + ip.buffer_len() + u.buffer_len()];
//! #     f[12..14].copy_from_slice(&[0x08, 0x00]);
//! #     ip.emit(&mut Ipv4Packet::new_unchecked(&mut f[14..]));
//! #     u.emit(&mut UdpPacket::new_unchecked(&mut f[34..]), &s.into(), &d.into());
//! #     f
//! # }
//! let mut table = Table::default();
//! let now = Duration::from_secs(1);
//! let mut frame = udp([192, 168, 1, 10], [9, 9, 9, 9], 5353, 53);
//! let meta = parse_frame(&frame).unwrap();
//!
//! let out = table.process(&meta, 0, now);
//! assert_eq!(out.ct_state(), CtState::New);
//! let (id, dir) = out.conn().unwrap();
//! table.masquerade(id, "203.0.113.1".parse().unwrap(), 2, &NatRange::default()).unwrap();
//! table.confirm(id, now).unwrap();
//!
//! let rw = table.rewrite(id, dir).unwrap();
//! nft_conntrack::apply_rewrite(&mut frame, &meta, &rw, None).unwrap();
//! let out_meta = parse_frame(&frame).unwrap();
//! assert_eq!(out_meta.src_addr, Some("203.0.113.1".parse().unwrap()));
//!
//! // The answer finds the same connection through the reply tuple.
//! let reply = Tuple::new("9.9.9.9".parse().unwrap(), "203.0.113.1".parse().unwrap(), 17, 53, 5353);
//! assert_eq!(table.lookup(&reply, 0), Some((id, Direction::Reply)));
//! ```

#![forbid(unsafe_code)]

mod conn;
mod index;
mod nat;
pub mod sctp;
mod status;
mod table;
pub mod tcp;
pub mod tuple;

pub use conn::{proto_name, Conn, Counter, ProtoState, Synproxy};
pub use nat::{apply_rewrite, Manip, NatRange, Rewrite, RewriteError};
pub use sctp::SctpState;
pub use status::{CtState, Status, Timeouts};
pub use table::{Config, ConnId, Expectation, Invalid, Memory, Outcome, Refused, Stats, Table};
pub use tcp::TcpState;
pub use tuple::{Direction, Tuple, Zone};

pub use core::time::Duration;

/// Errors of the table's control operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CtError {
    #[error("no such connection")]
    NoSuchConn,
    #[error("connection already confirmed")]
    AlreadyConfirmed,
    #[error("NAT already bound for this manipulation")]
    AlreadyBound,
    #[error("NAT range address family does not match the connection")]
    FamilyMismatch,
    #[error("no free tuple left in the NAT range")]
    NatExhausted,
    #[error("another connection already has this tuple")]
    Clash,
    #[error("connection is dying")]
    Dying,
    #[error("the timeout policy names a state the protocol does not have")]
    BadPolicy,
}

#[cfg(test)]
mod tests;
