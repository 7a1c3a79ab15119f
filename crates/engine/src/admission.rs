//! Which connections `flow add @ft` may put into a flowtable: the kernel's rules from
//! `nft_flow_offload.c`, in one function the flowtable can call as it is, so that admission
//! means the same on both sides.

use nft_conntrack::{Conn, Status, TcpState};
use nft_lang::ast::Family;
use nft_wire::{IpProtocol, PacketMeta, TcpFlags};

use crate::rules::Hook;

/// Why a `flow add` did not admit the connection. The statement itself never drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotAdmitted {
    /// Only a forward chain may offload (the validate hook of the expression).
    NotForwardHook,
    /// Only ip, ip6 and inet tables.
    Family,
    /// The packet has no connection (untracked or invalid).
    NoConnection,
    /// Options make IPv4 packets take the slow path (`nft_flow_offload_skip`).
    Ipv4Options,
    /// Neither TCP nor UDP.
    Protocol,
    /// TCP must be established and assured, and the packet carry no FIN or RST.
    TcpNotEstablished,
    TcpFinRst,
    /// A helper or sequence adjustment (the kernel's `IPS_SEQ_ADJUST`) needs every packet.
    Helper,
    /// The connection is not confirmed yet: the first packet of a UDP flow, say.
    NotConfirmed,
    /// It is in a flowtable already.
    AlreadyOffloaded,
}

impl NotAdmitted {
    /// Every reason, in the order of [`NotAdmitted::index`].
    pub const ALL: [NotAdmitted; 10] = [
        NotAdmitted::NotForwardHook,
        NotAdmitted::Family,
        NotAdmitted::NoConnection,
        NotAdmitted::Ipv4Options,
        NotAdmitted::Protocol,
        NotAdmitted::TcpNotEstablished,
        NotAdmitted::TcpFinRst,
        NotAdmitted::Helper,
        NotAdmitted::NotConfirmed,
        NotAdmitted::AlreadyOffloaded,
    ];

    /// The reason's place in [`NotAdmitted::ALL`] (a counter's index).
    pub const fn index(self) -> usize {
        self as usize
    }

    pub const fn name(self) -> &'static str {
        match self {
            NotAdmitted::NotForwardHook => "not_forward_hook",
            NotAdmitted::Family => "family",
            NotAdmitted::NoConnection => "no_connection",
            NotAdmitted::Ipv4Options => "ipv4_options",
            NotAdmitted::Protocol => "protocol",
            NotAdmitted::TcpNotEstablished => "tcp_not_established",
            NotAdmitted::TcpFinRst => "tcp_fin_rst",
            NotAdmitted::Helper => "helper",
            NotAdmitted::NotConfirmed => "not_confirmed",
            NotAdmitted::AlreadyOffloaded => "already_offloaded",
        }
    }
}

/// Whether `flow add` from a chain of `family` at `hook` admits the connection `conn` on
/// seeing the packet `meta`, in the order `nft_flow_offload_eval` checks.
pub fn admit(
    hook: Hook,
    family: Family,
    conn: Option<&Conn>,
    meta: &PacketMeta,
) -> Result<(), NotAdmitted> {
    if hook != Hook::Forward {
        return Err(NotAdmitted::NotForwardHook);
    }
    if !matches!(family, Family::Ip | Family::Ip6 | Family::Inet) {
        return Err(NotAdmitted::Family);
    }
    if meta.ipv4_options {
        return Err(NotAdmitted::Ipv4Options);
    }
    let conn = conn.ok_or(NotAdmitted::NoConnection)?;
    match meta.ip_protocol {
        Some(IpProtocol::Tcp) => {
            if meta.tcp_flags().intersects(TcpFlags::FIN | TcpFlags::RST) {
                return Err(NotAdmitted::TcpFinRst);
            }
            if conn.tcp_state() != Some(TcpState::Established) || !conn.is_assured() {
                return Err(NotAdmitted::TcpNotEstablished);
            }
        }
        Some(IpProtocol::Udp) => {}
        _ => return Err(NotAdmitted::Protocol),
    }
    if conn
        .status()
        .intersects(Status::HELPER | Status::SEQ_ADJUST)
        || conn.has_help()
    {
        return Err(NotAdmitted::Helper);
    }
    if !conn.is_confirmed() {
        return Err(NotAdmitted::NotConfirmed);
    }
    if conn.is_offloaded() {
        return Err(NotAdmitted::AlreadyOffloaded);
    }
    Ok(())
}
