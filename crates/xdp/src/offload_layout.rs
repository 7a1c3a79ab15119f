//! The Rust mirror of `bpf/offload_maps.h`: the flow map's key and value, the per-CPU
//! counters, the pass reasons. `tests/offload_layout.rs` compares every struct's size and
//! every field's offset and size with the BTF of the built object, so the two cannot drift.

/// Link encapsulations (`OFFLOAD_ENCAP_*`).
pub const ENCAP_NONE: u8 = 0;
pub const ENCAP_VLAN: u8 = 1;
pub const ENCAP_QINQ: u8 = 2;
pub const ENCAP_PPPOE: u8 = 3;

/// `OffloadValue::flags`.
pub const F_NAT: u8 = 0x01;
pub const F_V6: u8 = 0x02;

/// Entries of the flow map when the loader does not say otherwise (`OFFLOAD_MAX_FLOWS`).
pub const DEFAULT_MAX_FLOWS: u32 = 65_536;

/// What the program did with a frame: forwarded, or passed on and why (`OFFLOAD_R_*`, the
/// index in `offload_reasons`).
pub const REASONS: [&str; 14] = [
    "forwarded",
    "miss",
    "not_ip",
    "malformed",
    "fragment",
    "ipv4_options",
    "ipv6_ext_header",
    "not_tcp_udp",
    "ttl_expired",
    "tcp_control",
    "l2_mismatch",
    "mtu_exceeded",
    "no_tx_port",
    "no_headroom",
];

/// `struct offload_key`: one direction as it arrives.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct OffloadKey {
    /// IPv4-mapped for IPv4.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Network byte order (`u16::to_be`).
    pub sport: u16,
    pub dport: u16,
    /// The ingress device.
    pub ifindex: u32,
    pub proto: u8,
    pub v6: u8,
    pub pad: [u8; 2],
}

/// `struct offload_value`: one direction's rewrite plan.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OffloadValue {
    pub new_src: [u8; 16],
    pub new_dst: [u8; 16],
    /// Network byte order.
    pub new_sport: u16,
    pub new_dport: u16,
    /// Folded RFC 1624 sums of the changes (host order): IPv4 header, TCP/UDP checksum.
    pub ip_delta: u16,
    pub l4_delta: u16,
    pub out_ifindex: u32,
    pub stats_slot: u32,
    pub mtu: u16,
    pub flags: u8,
    /// `0xff`: none.
    pub dscp: u8,
    pub in_mac: [u8; 6],
    pub in_encap: u8,
    pub out_hl: u8,
    pub in_tag: [u16; 2],
    pub out_hdr: [u8; 22],
    pub out_encap: u8,
    pub pad: u8,
}

/// `struct offload_stats`: one direction's counters on one CPU.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OffloadStats {
    pub packets: u64,
    pub bytes: u64,
    pub last_used_ns: u64,
}

// SAFETY: plain `#[repr(C)]` structs of integers and byte arrays, with no padding the
// compiler adds (the explicit `pad` fields fill it; `layout_has_no_implicit_padding` checks
// the sizes), so every bit pattern is valid and they can be copied to and from map memory.
unsafe impl aya::Pod for OffloadKey {}
// SAFETY: as above.
unsafe impl aya::Pod for OffloadValue {}
// SAFETY: as above.
unsafe impl aya::Pod for OffloadStats {}

/// A field as the layout test compares it: name, offset, size.
pub type Field = (&'static str, usize, usize);

macro_rules! fields {
    ($t:ty { $($f:ident),* $(,)? }) => {
        vec![$((
            stringify!($f),
            core::mem::offset_of!($t, $f),
            {
                let v = core::mem::MaybeUninit::<$t>::uninit();
                const fn size_of_ptr<T>(_: *const T) -> usize { core::mem::size_of::<T>() }
                // SAFETY: only the field's address is taken (`addr_of!`), never read.
                size_of_ptr(unsafe { core::ptr::addr_of!((*v.as_ptr()).$f) })
            },
        )),*]
    };
}

/// The structs the C side declares, by their C names, with their size and every field.
pub fn layouts() -> Vec<(&'static str, usize, Vec<Field>)> {
    vec![
        (
            "offload_key",
            core::mem::size_of::<OffloadKey>(),
            fields!(OffloadKey {
                src,
                dst,
                sport,
                dport,
                ifindex,
                proto,
                v6,
                pad
            }),
        ),
        (
            "offload_value",
            core::mem::size_of::<OffloadValue>(),
            fields!(OffloadValue {
                new_src,
                new_dst,
                new_sport,
                new_dport,
                ip_delta,
                l4_delta,
                out_ifindex,
                stats_slot,
                mtu,
                flags,
                dscp,
                in_mac,
                in_encap,
                out_hl,
                in_tag,
                out_hdr,
                out_encap,
                pad
            }),
        ),
        (
            "offload_stats",
            core::mem::size_of::<OffloadStats>(),
            fields!(OffloadStats {
                packets,
                bytes,
                last_used_ns
            }),
        ),
    ]
}

/// A struct as the BTF of an object declares it: size, and each member's name, offset and
/// size in bytes.
pub type BtfStruct = (usize, Vec<(String, usize, usize)>);

/// Reads the layout of struct `name` from the `.BTF` section of a BPF object. A small reader
/// of the BTF format (linux/btf.h): aya parses BTF but keeps member offsets to itself.
pub fn btf_struct(object: &[u8], name: &str) -> Result<BtfStruct, String> {
    use object::{Object, ObjectSection};
    let file = object::File::parse(object).map_err(|e| format!("not an ELF object: {e}"))?;
    let sec = file
        .section_by_name(".BTF")
        .ok_or("no .BTF section (built without -g?)")?;
    let btf = sec.data().map_err(|e| e.to_string())?;
    let u16_at = |b: &[u8], at: usize| -> Result<u16, String> {
        b.get(at..at + 2)
            .map(|s| u16::from_le_bytes([s[0], s[1]]))
            .ok_or_else(|| "BTF truncated".to_string())
    };
    let u32_at = |b: &[u8], at: usize| -> Result<u32, String> {
        b.get(at..at + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
            .ok_or_else(|| "BTF truncated".to_string())
    };
    if u16_at(btf, 0)? != 0xeb9f {
        return Err("bad BTF magic (or big-endian)".into());
    }
    let hdr_len = u32_at(btf, 4)? as usize;
    let (type_off, type_len) = (u32_at(btf, 8)? as usize, u32_at(btf, 12)? as usize);
    let (str_off, str_len) = (u32_at(btf, 16)? as usize, u32_at(btf, 20)? as usize);
    let types = btf
        .get(hdr_len + type_off..hdr_len + type_off + type_len)
        .ok_or("BTF types out of range")?;
    let strs = btf
        .get(hdr_len + str_off..hdr_len + str_off + str_len)
        .ok_or("BTF strings out of range")?;
    let string = |off: u32| -> String {
        let s = strs.get(off as usize..).unwrap_or(&[]);
        let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
        String::from_utf8_lossy(&s[..end]).into_owned()
    };
    // Type ids start at 1: the start of each type's record, by id.
    let mut starts = vec![usize::MAX];
    let mut at = 0;
    while at + 12 <= types.len() {
        starts.push(at);
        let info = u32_at(types, at + 4)?;
        let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
        at += 12
            + match kind {
                1 | 14 | 17 => 4,
                3 => 12,
                4 | 5 | 15 | 19 => 12 * vlen,
                6 | 13 => 8 * vlen,
                _ => 0,
            };
    }
    let rec = |id: u32| -> Result<(u32, u32, u32, usize), String> {
        let at = *starts.get(id as usize).ok_or("BTF type id out of range")?;
        let info = u32_at(types, at + 4)?;
        Ok(((info >> 24) & 0x1f, info, u32_at(types, at + 8)?, at))
    };
    fn size_of(
        id: u32,
        depth: u32,
        rec: &dyn Fn(u32) -> Result<(u32, u32, u32, usize), String>,
        types: &[u8],
    ) -> Result<usize, String> {
        if depth > 16 {
            return Err("BTF type chain too long".into());
        }
        let (kind, _, sz, at) = rec(id)?;
        match kind {
            1 | 4 | 5 | 6 | 16 | 19 => Ok(sz as usize),
            2 => Ok(8),
            3 => {
                let elem = types.get(at + 12..at + 16).ok_or("BTF truncated")?;
                let n = types.get(at + 20..at + 24).ok_or("BTF truncated")?;
                let elem = u32::from_le_bytes([elem[0], elem[1], elem[2], elem[3]]);
                let n = u32::from_le_bytes([n[0], n[1], n[2], n[3]]) as usize;
                Ok(n * size_of(elem, depth + 1, rec, types)?)
            }
            8..=11 | 18 => size_of(sz, depth + 1, rec, types),
            k => Err(format!("BTF kind {k} has no size")),
        }
    }
    for id in 1..starts.len() as u32 {
        let (kind, info, size, at) = rec(id)?;
        if kind != 4 || string(u32_at(types, at)?) != name {
            continue;
        }
        let kflag = info >> 31 == 1;
        let mut members = vec![];
        for m in 0..(info & 0xffff) as usize {
            let base = at + 12 + 12 * m;
            let mname = string(u32_at(types, base)?);
            let mtype = u32_at(types, base + 4)?;
            let off = u32_at(types, base + 8)?;
            let bits = if kflag { off & 0x00ff_ffff } else { off };
            if bits % 8 != 0 {
                return Err(format!("{name}.{mname} is a bit field"));
            }
            members.push((mname, bits as usize / 8, size_of(mtype, 0, &rec, types)?));
        }
        return Ok((size as usize, members));
    }
    Err(format!("struct {name} is not in the object's BTF"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_has_no_implicit_padding() {
        for (name, size, fields) in layouts() {
            let sum: usize = fields.iter().map(|f| f.2).sum();
            assert_eq!(sum, size, "{name}: fields do not fill the struct");
        }
    }
}
