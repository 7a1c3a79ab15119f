//! NAT bindings (nf_nat_core.c): a binding rewrites the reply tuple of an unconfirmed
//! connection, choosing an address from the range and, when it must, a port that no other
//! connection's reply tuple uses. Each direction's packets are then rewritten to look like the
//! inverse of the other direction's tuple.

use crate::status::Status;
use crate::table::{mix64, ConnId, Table};
use crate::tuple::{has_ports, is_icmp, Direction, Tuple, Zone};
use crate::CtError;
use nft_wire::rewrite::{self, Side};
use nft_wire::{checksum, IpAddr, IpProtocol, IpVersion, PacketMeta};

/// Which side of the original direction a binding changes: SNAT (postrouting, also
/// masquerade) or DNAT (prerouting, also redirect).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Manip {
    Src,
    Dst,
}

impl Manip {
    pub const fn opposite(self) -> Manip {
        match self {
            Manip::Src => Manip::Dst,
            Manip::Dst => Manip::Src,
        }
    }
}

/// `struct nf_nat_range2`: an address range (none: keep the address), a port range (none:
/// keep the port if it is free, else pick one in the same class), and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NatRange {
    pub addrs: Option<(IpAddr, IpAddr)>,
    /// Ports, or the ICMP identifier.
    pub ports: Option<(u16, u16)>,
    /// The same client gets the same address whatever the destination.
    pub persistent: bool,
    /// Port search starts at a per-flow hashed offset instead of the original port.
    pub random: bool,
    /// Port search starts at an offset from the table's seeded PRNG.
    pub fully_random: bool,
}

impl NatRange {
    pub fn to_addr(a: IpAddr) -> NatRange {
        NatRange {
            addrs: Some((a, a)),
            ..NatRange::default()
        }
    }

    pub fn to_addrs(lo: IpAddr, hi: IpAddr) -> NatRange {
        NatRange {
            addrs: Some((lo, hi)),
            ..NatRange::default()
        }
    }

    pub fn with_ports(mut self, lo: u16, hi: u16) -> NatRange {
        self.ports = Some((lo.min(hi), lo.max(hi)));
        self
    }

    pub fn persistent(mut self) -> NatRange {
        self.persistent = true;
        self
    }

    pub fn random(mut self) -> NatRange {
        self.random = true;
        self
    }

    pub fn fully_random(mut self) -> NatRange {
        self.fully_random = true;
        self
    }

    fn random_any(&self) -> bool {
        self.random || self.fully_random
    }
}

/// What to write into a packet of one direction. For ICMP echoes the port fields carry the
/// identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rewrite {
    pub src_addr: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub dst_addr: Option<IpAddr>,
    pub dst_port: Option<u16>,
}

impl Rewrite {
    #[inline]
    pub fn is_empty(&self) -> bool {
        // field by field: comparing with a default `Rewrite` compared whole addresses
        self.src_addr.is_none()
            && self.dst_addr.is_none()
            && self.src_port.is_none()
            && self.dst_port.is_none()
    }

    /// Only the source part (what postrouting applies) or the destination part (prerouting).
    pub fn only(&self, manip: Manip) -> Rewrite {
        match manip {
            Manip::Src => Rewrite {
                src_addr: self.src_addr,
                src_port: self.src_port,
                ..Rewrite::default()
            },
            Manip::Dst => Rewrite {
                dst_addr: self.dst_addr,
                dst_port: self.dst_port,
                ..Rewrite::default()
            },
        }
    }

    /// The same change seen from a packet going the other way (a quoted header).
    pub fn swapped(&self) -> Rewrite {
        Rewrite {
            src_addr: self.dst_addr,
            src_port: self.dst_port,
            dst_addr: self.src_addr,
            dst_port: self.src_port,
        }
    }
}

fn addr_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u32::from(v) as u128,
        IpAddr::V6(v) => u128::from(v),
    }
}

fn from_bits(template: IpAddr, bits: u128) -> IpAddr {
    match template {
        IpAddr::V4(_) => IpAddr::V4((bits as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(bits.into()),
    }
}

fn hash_addrs(seed: u64, words: &[u128]) -> u64 {
    let mut h = seed;
    for w in words {
        h = mix64(h ^ (*w as u64));
        h = mix64(h ^ ((*w >> 64) as u64));
    }
    h
}

fn key(t: &Tuple, manip: Manip) -> Option<u16> {
    if is_icmp(t.proto) {
        Some(t.sport)
    } else if has_ports(t.proto) {
        Some(match manip {
            Manip::Src => t.sport,
            Manip::Dst => t.dport,
        })
    } else {
        None
    }
}

fn set_key(t: &mut Tuple, manip: Manip, v: u16) {
    if is_icmp(t.proto) || manip == Manip::Src {
        t.sport = v;
    } else {
        t.dport = v;
    }
}

fn manip_addr(t: &Tuple, manip: Manip) -> IpAddr {
    match manip {
        Manip::Src => t.src,
        Manip::Dst => t.dst,
    }
}

#[inline(always)]
fn l4_in_range(t: &Tuple, manip: Manip, range: &NatRange) -> bool {
    match (range.ports, key(t, manip)) {
        (Some((lo, hi)), Some(k)) => (lo..=hi).contains(&k),
        _ => true,
    }
}

#[inline(always)]
fn in_range(t: &Tuple, manip: Manip, range: &NatRange) -> bool {
    let a = manip_addr(t, manip);
    let addr_ok = match range.addrs {
        None => true,
        // one address (masquerade, most snat): a comparison, no widening
        Some((lo, hi)) if lo == hi => a == lo,
        Some((lo, hi)) => (addr_bits(lo)..=addr_bits(hi)).contains(&addr_bits(a)),
    };
    addr_ok && l4_in_range(t, manip, range)
}

impl Table {
    /// `snat to ...` on an unconfirmed connection.
    pub fn snat(&mut self, id: ConnId, range: &NatRange) -> Result<(), CtError> {
        self.bind(id, Manip::Src, range)
    }

    /// `dnat to ...` on an unconfirmed connection.
    pub fn dnat(&mut self, id: ConnId, range: &NatRange) -> Result<(), CtError> {
        self.bind(id, Manip::Dst, range)
    }

    /// `masquerade`: SNAT to `addr`, the address of the outgoing interface `ifindex`, which
    /// [`Table::forget_masquerade`] later uses. `range.addrs` is ignored.
    pub fn masquerade(
        &mut self,
        id: ConnId,
        addr: IpAddr,
        ifindex: u32,
        range: &NatRange,
    ) -> Result<(), CtError> {
        let ports = range.ports.map(|(lo, hi)| (lo.min(hi), lo.max(hi)));
        let bound = match addr {
            IpAddr::V4(a) if !range.random_any() => self.snat_v4_one(id, a.octets(), ports),
            _ => None,
        };
        if bound.is_none() {
            // one address: in order by construction, so no normalising copy in `bind`
            let r = NatRange {
                addrs: Some((addr, addr)),
                ports,
                ..*range
            };
            self.bind_ordered(id, Manip::Src, &r)?;
        }
        self.set_masq_ifindex(id, ifindex);
        Ok(())
    }

    /// [`Self::bind_ordered`] of a source NAT to one IPv4 address `addr` with the port range
    /// `ports` (in order), not random, for an IPv4 connection with ports, when its answer is
    /// one of
    /// `get_unique_tuple`'s first three (the tuple as it is, the client's earlier mapping, or
    /// the address with the client's port), read and written in the connection's compact
    /// tuples: no tuple is built, compared or inverted but the one `used` checks. `None`
    /// (nothing bound) for every other case, a port search included, which the general
    /// path then takes from the start (what this did before is idempotent: a look-up, and
    /// the pending hashes the general path computes again).
    fn snat_v4_one(&mut self, id: ConnId, addr: [u8; 4], ports: Option<(u16, u16)>) -> Option<()> {
        let c = self.get(id)?;
        let k = &c.tuples;
        if c.is_confirmed()
            || c.status().contains(Status::SRC_NAT_DONE)
            || k.wide
            || !has_ports(k.proto)
        {
            return None;
        }
        // the reply's inverse (the original as NAT has made it so far), in place
        let (src, sport, dst, dport, proto) = (k.v4[3], k.ports[3], k.v4[2], k.ports[2], k.proto);
        let zone = c.zone;
        let port_ok = |p: u16| ports.is_none_or(|(lo, hi)| (lo..=hi).contains(&p));
        // the reply a candidate source would have (what `used` checks), built inverted
        let reply = |s: [u8; 4], sp: u16| Tuple {
            src: IpAddr::V4(dst.into()),
            dst: IpAddr::V4(s.into()),
            proto,
            sport: dport,
            dport: sp,
        };
        let mut pick = None;
        if src == addr && port_ok(sport) {
            // in range already (the router's own address): kept if free
            if !self.reply_used(reply(src, sport), zone, id) {
                pick = Some((src, sport));
            }
        } else {
            // `find_appropriate_src`: the client's earlier mapping, if it fits
            let key = (zone, proto, IpAddr::V4(src.into()), sport);
            let h = self.source_hash(&key);
            if self.pending.id == Some(id) {
                self.pending.source = Some(h);
            }
            let mapped = self
                .bysource_get_hashed(h, &key)
                .and_then(|e| self.get(e))
                .filter(|e| !e.tuples.wide)
                .map(|e| (e.tuples.v4[3], e.tuples.ports[3]));
            if let Some((ms, mp)) = mapped.filter(|&(ms, mp)| ms == addr && port_ok(mp)) {
                if !self.reply_used(reply(ms, mp), zone, id) {
                    pick = Some((ms, mp));
                }
            }
        }
        // `find_best_ips_proto` (one address), keeping the client's port if it fits
        if pick.is_none() && port_ok(sport) && !self.reply_used(reply(addr, sport), zone, id) {
            pick = Some((addr, sport));
        }
        let (ns, np) = pick?;
        let c = self.conn_mut_internal(id)?;
        if (ns, np) != (src, sport) {
            let k = &mut c.tuples;
            k.v4[3] = ns;
            k.ports[3] = np;
            c.status.insert(Status::SRC_NAT);
        }
        c.status.insert(Status::SRC_NAT_DONE);
        Some(())
    }

    /// `redirect`: DNAT to `local`, the address of the incoming interface (or loopback for
    /// locally generated packets), optionally to other ports.
    pub fn redirect(
        &mut self,
        id: ConnId,
        local: IpAddr,
        ports: Option<(u16, u16)>,
    ) -> Result<(), CtError> {
        let r = NatRange {
            addrs: Some((local, local)),
            ports,
            ..NatRange::default()
        };
        self.bind(id, Manip::Dst, &r)
    }

    /// `nf_nat_setup_info`.
    pub(crate) fn bind(
        &mut self,
        id: ConnId,
        manip: Manip,
        range: &NatRange,
    ) -> Result<(), CtError> {
        let mut range = *range;
        if let Some((lo, hi)) = range.addrs {
            if addr_bits(lo) > addr_bits(hi) {
                range.addrs = Some((hi, lo));
            }
        }
        if let Some((lo, hi)) = range.ports {
            range.ports = Some((lo.min(hi), lo.max(hi)));
        }
        self.bind_ordered(id, manip, &range)
    }

    /// [`Self::bind`] with a range whose bounds are in order (lowest first).
    fn bind_ordered(&mut self, id: ConnId, manip: Manip, range: &NatRange) -> Result<(), CtError> {
        let c = self.get(id).ok_or(CtError::NoSuchConn)?;
        if c.is_confirmed() {
            return Err(CtError::AlreadyConfirmed);
        }
        let done = match manip {
            Manip::Src => Status::SRC_NAT_DONE,
            Manip::Dst => Status::DST_NAT_DONE,
        };
        if c.status().contains(done) {
            return Err(CtError::AlreadyBound);
        }
        if let Some((lo, hi)) = range.addrs {
            let v4 = c.is_ipv4();
            if lo.is_ipv4() != v4 || hi.is_ipv4() != v4 {
                return Err(CtError::FamilyMismatch);
            }
        }
        let curr = c.reply_inverse().ok_or(CtError::NoSuchConn)?;
        let zone = c.zone();
        let new = self.unique_tuple(curr, range, manip, zone, id)?;
        let c = self.conn_mut_internal(id).ok_or(CtError::NoSuchConn)?;
        if new != curr {
            c.set_reply_inverse(&new).ok_or(CtError::NoSuchConn)?;
            c.status.insert(match manip {
                Manip::Src => Status::SRC_NAT,
                Manip::Dst => Status::DST_NAT,
            });
        }
        c.status.insert(done);
        Ok(())
    }

    /// Whether a connection whose original direction looks like `t` would collide with
    /// another's reply (`nf_nat_used_tuple`). A free reply tuple's hash is kept for the
    /// confirmation of a new connection `me`, which enters it.
    fn used(&mut self, t: &Tuple, zone: Zone, me: ConnId) -> bool {
        let Some(r) = t.invert() else { return true };
        self.reply_used(r, zone, me)
    }

    /// [`Self::used`] of the original whose reply is `r` (inverted already).
    #[inline]
    fn reply_used(&mut self, r: Tuple, zone: Zone, me: ConnId) -> bool {
        let h = self.key_hash(&r, zone);
        let used = self.taken_hashed(h, &r, zone, me);
        if !used && self.pending.id == Some(me) {
            self.pending.reply = Some((r, h));
        }
        used
    }

    /// `get_unique_tuple`: keep what is already right, else pick an address, then a port.
    fn unique_tuple(
        &mut self,
        curr: Tuple,
        range: &NatRange,
        manip: Manip,
        zone: Zone,
        me: ConnId,
    ) -> Result<Tuple, CtError> {
        if manip == Manip::Src && !range.random_any() {
            if in_range(&curr, manip, range) {
                if !self.used(&curr, zone, me) {
                    return Ok(curr);
                }
            } else if let Some(mapped) = self.appropriate_src(&curr, range, zone, me) {
                if !self.used(&mapped, zone, me) {
                    return Ok(mapped);
                }
            }
        }
        let mut t = curr;
        self.best_addr(&mut t, range, manip, zone);
        if !range.random_any() && l4_in_range(&t, manip, range) && !self.used(&t, zone, me) {
            return Ok(t);
        }
        self.unique_l4(t, range, manip, zone, me)
    }

    /// `find_appropriate_src`: the mapping an earlier connection from the same source
    /// address and port got, if it fits this range, so the client keeps one outside identity
    /// whatever the destination.
    fn appropriate_src(
        &mut self,
        curr: &Tuple,
        range: &NatRange,
        zone: Zone,
        me: ConnId,
    ) -> Option<Tuple> {
        let k = crate::table::source_key(curr, zone);
        let h = self.source_hash(&k);
        if self.pending.id == Some(me) {
            // a source key is the original tuple's, which never changes: confirm reuses it
            self.pending.source = Some(h);
        }
        let id = self.bysource_get_hashed(h, &k)?;
        let c = self.get(id)?;
        // the mapping is the reply's destination (its inverse's source): read in place, not
        // by building and inverting the whole reply tuple
        let mut t = *curr;
        if is_icmp(c.l4proto()) {
            let mapped = c.reply().invert()?;
            t.src = mapped.src;
            t.sport = mapped.sport;
        } else {
            t.src = c.addr(3);
            t.sport = c.port(3);
        }
        in_range(&t, Manip::Src, range).then_some(t)
    }

    /// `find_best_ips_proto`: an address from the range by a hash of the client (and, unless
    /// persistent, the server), so a given flow always maps the same way.
    fn best_addr(&self, t: &mut Tuple, range: &NatRange, manip: Manip, zone: Zone) {
        let Some((lo, hi)) = range.addrs else { return };
        let pick = if lo == hi {
            lo
        } else {
            let other = if range.persistent {
                0
            } else {
                addr_bits(t.dst)
            };
            let h = hash_addrs(self.cfg.seed, &[addr_bits(t.src), other, zone as u128]);
            let (l, span) = (addr_bits(lo), addr_bits(hi) - addr_bits(lo));
            let off = if span == u128::MAX {
                (h as u128) | ((mix64(h) as u128) << 64)
            } else {
                let h = (h as u128) | ((mix64(h) as u128) << 64);
                h % (span + 1)
            };
            from_bits(lo, l.wrapping_add(off))
        };
        match manip {
            Manip::Src => t.src = pick,
            Manip::Dst => t.dst = pick,
        }
    }

    /// `nf_nat_l4proto_unique_tuple`: walk the port (or ICMP id) range from a start offset
    /// until the tuple is free, with the kernel's bounded number of attempts.
    fn unique_l4(
        &mut self,
        mut t: Tuple,
        range: &NatRange,
        manip: Manip,
        zone: Zone,
        me: ConnId,
    ) -> Result<Tuple, CtError> {
        // A destination the ruleset named is kept even when it collides, as in the kernel:
        // source NAT (or the null binding at confirm) is what makes the reply unique.
        let Some(k) = key(&t, manip) else {
            return match manip {
                Manip::Dst => Ok(t),
                Manip::Src => self.free_or_exhausted(t, zone, me),
            };
        };
        let (min, size): (u32, u32) = match range.ports {
            Some((lo, hi)) => (lo as u32, hi as u32 - lo as u32 + 1),
            None if is_icmp(t.proto) => (0, 65536),
            // Without a port range a destination port stays what the client asked for.
            None if manip == Manip::Dst => return Ok(t),
            // Keep the port's class: below 512, 600-1023 (>= 512 by convention), or above.
            None if k < 512 => (1, 511),
            None if k < 1024 => (600, 424),
            None => (1024, 64512),
        };
        let mut off: u32 = if range.fully_random {
            self.rng.next_u64() as u16 as u32
        } else if range.random {
            let h = hash_addrs(
                self.cfg.seed ^ 0x5eed,
                &[addr_bits(t.src), addr_bits(t.dst), t.dport as u128],
            );
            h as u16 as u32
        } else if manip == Manip::Dst {
            // the kernel walks a destination range from its start (`off = 0`)
            0
        } else {
            // the kernel starts a source search at a random offset; ours is reproducible
            (k as i64 - min as i64).rem_euclid(size as i64) as u32
        };
        let mut attempts = size.min(128);
        loop {
            for _ in 0..attempts {
                set_key(&mut t, manip, (min + off % size) as u16);
                if !self.used(&t, zone, me) {
                    return Ok(t);
                }
                off = off.wrapping_add(1);
            }
            if attempts >= size || attempts < 16 {
                return Err(CtError::NatExhausted);
            }
            attempts /= 2;
            off = self.rng.next_u64() as u16 as u32;
        }
    }

    fn free_or_exhausted(&mut self, t: Tuple, zone: Zone, me: ConnId) -> Result<Tuple, CtError> {
        if self.used(&t, zone, me) {
            Err(CtError::NatExhausted)
        } else {
            Ok(t)
        }
    }

    /// The rewrite for packets of direction `dir`: make them look like the inverse of the other
    /// direction's tuple. Empty for a connection without NAT.
    pub fn rewrite(&self, id: ConnId, dir: Direction) -> Option<Rewrite> {
        let c = self.get(id)?;
        if !c.status().intersects(Status::SRC_NAT | Status::DST_NAT) {
            // only a binding changes the reply tuple, and each sets one of these
            return Some(Rewrite::default());
        }
        let this = c.tuple(dir);
        let target = c.tuple(dir.opposite()).invert()?;
        let diff = |a: IpAddr, b: IpAddr| (a != b).then_some(b);
        let diffp = |a: u16, b: u16| (a != b).then_some(b);
        let mut rw = Rewrite {
            src_addr: diff(this.src, target.src),
            dst_addr: diff(this.dst, target.dst),
            ..Rewrite::default()
        };
        if has_ports(this.proto) {
            rw.src_port = diffp(this.sport, target.sport);
            rw.dst_port = diffp(this.dport, target.dport);
        } else if is_icmp(this.proto) {
            // The identifier moves with whichever binding changed it: with SNAT it is a
            // source field going out and a destination field coming back.
            let id = diffp(this.sport, target.sport);
            let snat = c.status().contains(Status::SRC_NAT);
            if (dir == Direction::Original) == snat {
                rw.src_port = id;
            } else {
                rw.dst_port = id;
            }
        }
        Some(rw)
    }

    /// [`Table::rewrite`]'s part for `manip` alone (`rewrite(id, dir)?.only(manip)`), what a
    /// packet gets at one NAT hook. For protocols with ports it reads the two fields it needs
    /// in place instead of copying and inverting both tuples.
    pub fn rewrite_part(&self, id: ConnId, dir: Direction, manip: Manip) -> Option<Rewrite> {
        let c = self.get(id)?;
        if !c.status().intersects(Status::SRC_NAT | Status::DST_NAT) {
            return Some(Rewrite::default());
        }
        if !has_ports(c.l4proto()) {
            return self.rewrite(id, dir).map(|r| r.only(manip));
        }
        // the other direction's tuple inverted: its source is the other's destination
        let (this, other) = match dir {
            Direction::Original => (0, 1),
            Direction::Reply => (1, 0),
        };
        let (a, p) = match manip {
            Manip::Src => (2 * this, 2 * other + 1),
            Manip::Dst => (2 * this + 1, 2 * other),
        };
        let addr = (c.addr(a) != c.addr(p)).then(|| c.addr(p));
        let port = c.port(a);
        let port = (port != c.port(p)).then(|| c.port(p));
        Some(match manip {
            Manip::Src => Rewrite {
                src_addr: addr,
                src_port: port,
                ..Rewrite::default()
            },
            Manip::Dst => Rewrite {
                dst_addr: addr,
                dst_port: port,
                ..Rewrite::default()
            },
        })
    }
}

/// Why a rewrite could not be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("packet too short for the rewrite")]
    Truncated,
    #[error("rewrite does not fit the packet (address family or protocol)")]
    Mismatch,
}

impl From<nft_wire::Error> for RewriteError {
    fn from(e: nft_wire::Error) -> RewriteError {
        match e {
            nft_wire::Error::Truncated => RewriteError::Truncated,
            nft_wire::Error::Malformed => RewriteError::Mismatch,
        }
    }
}

/// Applies a rewrite to the frame `meta` describes, keeping every checksum right: all of it
/// (`only: None`, as the flowtable does) or one manip (`Some(Manip::Dst)` at prerouting,
/// `Some(Manip::Src)` at postrouting). For an ICMP error, the quoted header is rewritten the
/// opposite way, so the endpoint recognises its own packet, and the ICMP checksum is
/// recomputed over the changed quote.
pub fn apply_rewrite(
    frame: &mut [u8],
    meta: &PacketMeta,
    rw: &Rewrite,
    only: Option<Manip>,
) -> Result<(), RewriteError> {
    let rw = match only {
        Some(m) => rw.only(m),
        None => *rw,
    };
    if rw.is_empty() {
        return Ok(());
    }
    if rewrite_v4_plain(frame, meta, &rw) {
        return Ok(());
    }
    let end = meta.l3_end.min(frame.len());
    let proto = meta.ip_protocol.ok_or(RewriteError::Mismatch)?;
    let ipv4 = match meta.ip_version {
        Some(IpVersion::Ipv4) => true,
        Some(IpVersion::Ipv6) => false,
        None => return Err(RewriteError::Mismatch),
    };
    let icmp_error = meta.icmp.filter(|i| i.is_error);

    if let Some(icmp) = icmp_error {
        if let Some(inner) = icmp.inner {
            rewrite_quote(frame, end, ipv4, &inner, &rw.swapped())?;
        }
        let l4 = meta.l4_offset.ok_or(RewriteError::Truncated)?;
        let msg = frame.get_mut(l4..end).ok_or(RewriteError::Truncated)?;
        if msg.len() < 4 {
            return Err(RewriteError::Truncated);
        }
        match (meta.src_addr, meta.dst_addr) {
            (Some(IpAddr::V6(s)), Some(IpAddr::V6(d))) => {
                nft_wire::Icmpv6Packet::new_unchecked(msg).fill_checksum(&s, &d)
            }
            _ => nft_wire::Icmpv4Packet::new_unchecked(msg).fill_checksum(),
        }
    } else if meta.fragment != nft_wire::Fragment::NonFirst {
        if let Some(l4) = meta.l4_offset {
            let seg = frame.get_mut(l4..end).ok_or(RewriteError::Truncated)?;
            match proto {
                IpProtocol::Tcp | IpProtocol::Udp => {
                    if let Some(p) = rw.src_port {
                        rewrite::set_l4_port(seg, proto, ipv4, Side::Src, p)?;
                    }
                    if let Some(p) = rw.dst_port {
                        rewrite::set_l4_port(seg, proto, ipv4, Side::Dst, p)?;
                    }
                }
                IpProtocol::Icmp | IpProtocol::Icmpv6 => {
                    if let Some(id) = rw.src_port.or(rw.dst_port) {
                        rewrite::set_icmp_ident(seg, id)?;
                    }
                }
                // The ports, then the CRC32c over the whole packet again, as the kernel's
                // `sctp_manip_pkt` does on every NAT rewrite (it covers no address).
                IpProtocol::Sctp if meta.fragment == nft_wire::Fragment::None => {
                    set_sctp_ports(seg, &rw, 12)?;
                }
                _ => {}
            }
        }
    }

    let ip = frame
        .get_mut(meta.l3_offset..end)
        .ok_or(RewriteError::Truncated)?;
    for (side, addr) in [(Side::Src, rw.src_addr), (Side::Dst, rw.dst_addr)] {
        match (addr, ipv4) {
            (None, _) => {}
            (Some(IpAddr::V4(a)), true) => rewrite::set_ipv4_addr(ip, side, a)?,
            (Some(IpAddr::V6(a)), false) => rewrite::set_ipv6_addr(ip, side, a)?,
            _ => return Err(RewriteError::Mismatch),
        }
    }
    Ok(())
}

/// The common case of [`apply_rewrite`], a whole IPv4 TCP or UDP packet (not an ICMP error,
/// not a fragment): every changed word is summed once and each checksum updated once (RFC
/// 1624), the IPv4 header's with the addresses and the transport checksum with addresses
/// (its pseudo-header) and ports, instead of one update per field. Whether it applied the
/// rewrite; false leaves the frame untouched for the general path.
fn rewrite_v4_plain(frame: &mut [u8], meta: &PacketMeta, rw: &Rewrite) -> bool {
    let (Some(IpVersion::Ipv4), Some(proto), Some(l4), nft_wire::Fragment::None, None) = (
        meta.ip_version,
        meta.ip_protocol,
        meta.l4_offset,
        meta.fragment,
        meta.icmp,
    ) else {
        return false;
    };
    let (csum_at, hdr_len, udp) = match proto {
        IpProtocol::Tcp => (16, 20, false),
        IpProtocol::Udp => (6, 8, true),
        _ => return false,
    };
    let l3 = meta.l3_offset;
    let end = meta.l3_end.min(frame.len());
    let v4 = |a: Option<IpAddr>| match a {
        None => Some(None),
        Some(IpAddr::V4(v)) => Some(Some(u32::from(v))),
        Some(IpAddr::V6(_)) => None,
    };
    let (Some(src), Some(dst)) = (v4(rw.src_addr), v4(rw.dst_addr)) else {
        return false;
    };
    if l3 + 20 > l4 || l4 + hdr_len > end {
        return false;
    }
    // the IPv4 header's first 20 bytes and the transport header, each bounds-checked once
    let (head, tail) = frame.split_at_mut(l4);
    let Ok(ip) = <&mut [u8; 20]>::try_from(&mut head[l3..l3 + 20]) else {
        return false;
    };
    let th = &mut tail[..hdr_len];
    let rd16 = |f: &[u8], at: usize| u16::from_be_bytes([f[at], f[at + 1]]);
    // one's complement sums of what changes: ~old + new per 16-bit word
    let mut ip_acc: u64 = 0;
    for (at, new) in [(12, src), (16, dst)] {
        if let Some(n) = new {
            let o = u32::from_be_bytes([ip[at], ip[at + 1], ip[at + 2], ip[at + 3]]);
            ip_acc += u64::from(!(o >> 16) & 0xffff) + u64::from(!o & 0xffff);
            ip_acc += u64::from(n >> 16) + u64::from(n & 0xffff);
            ip[at..at + 4].copy_from_slice(&n.to_be_bytes());
        }
    }
    let mut l4_acc = ip_acc;
    for (at, new) in [(0, rw.src_port), (2, rw.dst_port)] {
        if let Some(n) = new {
            l4_acc += u64::from(!rd16(th, at)) + u64::from(n);
            th[at..at + 2].copy_from_slice(&n.to_be_bytes());
        }
    }
    if ip_acc != 0 {
        let hc = rd16(ip, 10);
        let v = !checksum::fold(u64::from(!hc) + ip_acc);
        ip[10..12].copy_from_slice(&v.to_be_bytes());
    }
    let c = csum_at;
    let old = rd16(th, c);
    // a zero UDP checksum over IPv4 means none: it stays zero
    if !(udp && old == 0) && l4_acc != 0 {
        let mut v = !checksum::fold(u64::from(!old) + l4_acc);
        if udp && v == 0 {
            v = 0xffff;
        }
        th[c..c + 2].copy_from_slice(&v.to_be_bytes());
    }
    true
}

/// Writes `new` (at most 16 bytes) over `buf[at..]` and folds the change into the checksums
/// stored at each of `csums` (offsets in `buf`), skipping those outside the buffer: a quote may
/// stop anywhere after the IP header.
fn patch(
    buf: &mut [u8],
    at: usize,
    new: &[u8],
    csums: &[Option<usize>],
) -> Result<(), RewriteError> {
    let n = new.len().min(16);
    let mut old = [0u8; 16];
    old[..n].copy_from_slice(buf.get(at..at + n).ok_or(RewriteError::Truncated)?);
    for &c in csums.iter().flatten() {
        if let Some(b) = buf.get(c..c + 2) {
            let v = checksum::update_bytes(u16::from_be_bytes([b[0], b[1]]), &old[..n], &new[..n]);
            buf[c..c + 2].copy_from_slice(&v.to_be_bytes());
        }
    }
    buf[at..at + n].copy_from_slice(&new[..n]);
    Ok(())
}

/// Rewrites the packet quoted by an ICMP error in place: its addresses (IPv4 header checksum
/// and, when quoted, the L4 checksum through the pseudo-header) and its ports or echo id.
fn rewrite_quote(
    frame: &mut [u8],
    end: usize,
    ipv4: bool,
    inner: &nft_wire::InnerMeta,
    rw: &Rewrite,
) -> Result<(), RewriteError> {
    let quote = frame.get_mut(..end).ok_or(RewriteError::Truncated)?;
    let l3 = inner.l3_offset;
    let l4 = inner.l4_offset;
    let proto = inner.protocol;
    // Where the quoted L4 checksum lives, if it covers addresses (pseudo-header) and ports.
    let l4_csum = match proto {
        IpProtocol::Tcp => Some(l4 + 16),
        IpProtocol::Udp => {
            // A zero UDP checksum over IPv4 means none; leave it.
            let at = l4 + 6;
            match quote.get(at..at + 2) {
                Some(b) if ipv4 && b == [0, 0] => None,
                Some(_) => Some(at),
                None => None,
            }
        }
        IpProtocol::Icmpv6 => Some(l4 + 2),
        _ => None,
    };
    let pseudo = l4_csum.filter(|&c| c + 2 <= end);
    for (side, addr) in [(Side::Src, rw.src_addr), (Side::Dst, rw.dst_addr)] {
        let Some(addr) = addr else { continue };
        match (addr, ipv4) {
            (IpAddr::V4(a), true) => {
                let at = l3 + if side == Side::Src { 12 } else { 16 };
                patch(quote, at, &a.octets(), &[Some(l3 + 10), pseudo])?;
            }
            (IpAddr::V6(a), false) => {
                let at = l3 + if side == Side::Src { 8 } else { 24 };
                patch(quote, at, &a.octets(), &[pseudo])?;
            }
            _ => return Err(RewriteError::Mismatch),
        }
    }
    let port_csum = [pseudo];
    match proto {
        IpProtocol::Tcp | IpProtocol::Udp if inner.ports.is_some() => {
            if let Some(p) = rw.src_port {
                patch(quote, l4, &p.to_be_bytes(), &port_csum)?;
            }
            if let Some(p) = rw.dst_port {
                patch(quote, l4 + 2, &p.to_be_bytes(), &port_csum)?;
            }
        }
        IpProtocol::Icmp | IpProtocol::Icmpv6 if inner.icmp_ident.is_some() => {
            if let Some(id) = rw.src_port.or(rw.dst_port) {
                patch(quote, l4 + 4, &id.to_be_bytes(), &[Some(l4 + 2)])?;
            }
        }
        // SCTP: the ports, and the CRC32c over what is quoted when the quote holds the
        // checksum field (`sctp_manip_pkt` on an inner header)
        IpProtocol::Sctp if inner.ports.is_some() => {
            let seg = quote.get_mut(l4..).ok_or(RewriteError::Truncated)?;
            set_sctp_ports(seg, rw, 4)?;
        }
        _ => {}
    }
    Ok(())
}

/// Writes an SCTP header's NAT ports and recomputes its CRC32c over `seg` (the segment, or
/// what an ICMP error quotes of it), as the kernel's `sctp_manip_pkt` does; `seg` must hold
/// at least `min` bytes.
fn set_sctp_ports(seg: &mut [u8], rw: &Rewrite, min: usize) -> Result<(), RewriteError> {
    if seg.len() < min.max(4) {
        return Err(RewriteError::Truncated);
    }
    if let Some(p) = rw.src_port {
        seg[0..2].copy_from_slice(&p.to_be_bytes());
    }
    if let Some(p) = rw.dst_port {
        seg[2..4].copy_from_slice(&p.to_be_bytes());
    }
    nft_wire::checksum::fill_sctp(seg);
    Ok(())
}
