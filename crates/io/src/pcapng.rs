//! pcapng in and out, on top of the `pcap-file` crate's block codec.
//!
//! Reading keeps what the simulator needs from each packet block: the interface's `if_name`, the
//! timestamp scaled by that interface's `if_tsresol` (and shifted by `if_tsoffset`), and the
//! bytes. `pcap-file` 2.x hands the EPB timestamp over as a `Duration` of raw units without
//! looking at `if_tsresol`, so the scaling is done here.
//!
//! Writing emits one Interface Description Block per interface name, the first time the name is
//! used, with link type Ethernet and nanosecond resolution, then Enhanced Packet Blocks. The
//! section is little-endian whatever the host, so the same frames give the same file everywhere.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::time::Duration;

use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::{Block, PcapNgReader, PcapNgWriter};
use pcap_file::{DataLink, Endianness, PcapError};

use crate::capture::{CaptureError, Frame};

/// `if_tsresol` when the option is absent: microseconds.
const DEFAULT_TSRESOL: u8 = 6;
/// The resolution the writer declares: nanoseconds, the precision of `Duration`.
const NANOSECONDS: u8 = 9;
/// What tcpdump declares; frames are never near it.
const SNAPLEN: u32 = 262_144;
const LINKTYPE_ETHERNET: u32 = 1;

#[derive(Debug, Clone)]
struct Iface {
    name: String,
    linktype: u32,
    tsresol: u8,
    tsoffset: i64,
}

/// Streams the frames of a pcapng capture. Every section's interfaces are honoured; a packet on
/// an interface whose link type is not Ethernet is reported as [`CaptureError::LinkType`] and
/// skipped. An interface without `if_name` is called `if<N>`, N its number in the section.
pub struct PcapngReader<R: Read> {
    inner: PcapNgReader<R>,
    ifaces: Vec<Iface>,
    /// Blocks read so far, the section header being block 0.
    index: u64,
    done: bool,
}

impl<R: Read> PcapngReader<R> {
    /// Reads the section header; fails if the stream does not start with one.
    pub fn new(reader: R) -> Result<PcapngReader<R>, CaptureError> {
        let inner = PcapNgReader::new(reader).map_err(|e| CaptureError::from_pcap(e, 0))?;
        Ok(PcapngReader {
            inner,
            ifaces: Vec::new(),
            index: 0,
            done: false,
        })
    }

    /// The interface names of the current section, in interface-id order.
    pub fn interface_names(&self) -> impl Iterator<Item = &str> {
        self.ifaces.iter().map(|i| i.name.as_str())
    }

    fn frame(&self, id: u32, units: u64, data: Vec<u8>) -> Result<Frame, CaptureError> {
        let index = self.index;
        let iface = self
            .ifaces
            .get(id as usize)
            .ok_or(CaptureError::UnknownInterface {
                index,
                id,
                count: self.ifaces.len(),
            })?;
        if iface.linktype != LINKTYPE_ETHERNET {
            return Err(CaptureError::LinkType {
                index,
                iface: iface.name.clone(),
                linktype: iface.linktype,
            });
        }
        let ts = scale_timestamp(units, iface.tsresol, iface.tsoffset)
            .ok_or(CaptureError::Timestamp { index })?;
        Ok(Frame {
            iface: iface.name.clone(),
            ts,
            data,
        })
    }
}

impl<R: Read> Iterator for PcapngReader<R> {
    type Item = Result<Frame, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let block = match self.inner.next_block() {
                None => {
                    self.done = true;
                    return None;
                }
                Some(b) => b,
            };
            self.index += 1;
            let block = match block {
                Ok(b) => b,
                Err(e) => {
                    // pcap-file does not move past a block it could not parse: stop here.
                    self.done = true;
                    return Some(Err(CaptureError::from_pcap(e, self.index)));
                }
            };
            let (id, units, data) = match block {
                Block::SectionHeader(_) => {
                    self.ifaces.clear();
                    continue;
                }
                Block::InterfaceDescription(idb) => {
                    let n = self.ifaces.len();
                    self.ifaces.push(describe(&idb, n));
                    continue;
                }
                Block::EnhancedPacket(epb) => {
                    // Duration::from_nanos(raw) inside pcap-file: as_nanos() gives the raw units back.
                    (
                        epb.interface_id,
                        epb.timestamp.as_nanos() as u64,
                        epb.data.into_owned(),
                    )
                }
                Block::Packet(pb) => (pb.interface_id as u32, pb.timestamp, pb.data.into_owned()),
                // No timestamp in a simple packet block; interface 0 by definition.
                Block::SimplePacket(spb) => (0, 0, spb.data.into_owned()),
                _ => continue,
            };
            return Some(self.frame(id, units, data));
        }
        None
    }
}

fn describe(idb: &InterfaceDescriptionBlock<'_>, n: usize) -> Iface {
    let mut iface = Iface {
        name: format!("if{n}"),
        linktype: u32::from(idb.linktype),
        tsresol: DEFAULT_TSRESOL,
        tsoffset: 0,
    };
    for opt in &idb.options {
        match opt {
            InterfaceDescriptionOption::IfName(name) => iface.name = name.to_string(),
            InterfaceDescriptionOption::IfTsResol(r) => iface.tsresol = *r,
            // The spec makes it signed; pcap-file reads the bits as unsigned.
            InterfaceDescriptionOption::IfTsOffset(o) => iface.tsoffset = *o as i64,
            _ => {}
        }
    }
    iface
}

/// Raw timestamp units to time since the epoch. `tsresol`'s high bit picks base 2 over base 10,
/// the rest is the negative exponent. `None` when the result leaves `Duration`'s range.
pub(crate) fn scale_timestamp(units: u64, tsresol: u8, tsoffset_secs: i64) -> Option<Duration> {
    let exp = u32::from(tsresol & 0x7f);
    let units = u128::from(units);
    let nanos: u128 = if tsresol & 0x80 != 0 {
        // units * 1e9 < 2^94, so the product cannot overflow before the shift.
        (units * 1_000_000_000).checked_shr(exp).unwrap_or(0)
    } else if exp <= 9 {
        units * 10u128.pow(9 - exp)
    } else {
        10u128.checked_pow(exp - 9).map_or(0, |d| units / d)
    };
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    let secs = secs.checked_add_signed(tsoffset_secs)?;
    Some(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// Writes frames as pcapng, one interface description per interface name.
pub struct PcapngWriter<W: Write> {
    inner: PcapNgWriter<W>,
    ifaces: Vec<String>,
}

impl<W: Write> PcapngWriter<W> {
    /// Writes the section header.
    pub fn new(writer: W) -> Result<PcapngWriter<W>, CaptureError> {
        let section = SectionHeaderBlock {
            endianness: Endianness::Little,
            options: vec![SectionHeaderOption::UserApplication(Cow::Borrowed(
                "nft-offload",
            ))],
            ..Default::default()
        };
        let inner = PcapNgWriter::with_section_header(writer, section).map_err(write_error)?;
        Ok(PcapngWriter {
            inner,
            ifaces: Vec::new(),
        })
    }

    /// Interface names in the order their description blocks were written.
    pub fn interface_names(&self) -> &[String] {
        &self.ifaces
    }

    pub fn write(&mut self, frame: &Frame) -> Result<(), CaptureError> {
        self.write_packet(&frame.iface, frame.ts, &frame.data, None)
    }

    /// Writes one packet, with an optional `opt_comment` that Wireshark shows (the generator
    /// marks its malformed frames this way).
    pub fn write_packet(
        &mut self,
        iface: &str,
        ts: Duration,
        data: &[u8],
        comment: Option<&str>,
    ) -> Result<(), CaptureError> {
        let interface_id = self.interface_id(iface)?;
        let options = comment
            .map(|c| vec![EnhancedPacketOption::Comment(Cow::Borrowed(c))])
            .unwrap_or_default();
        let epb = EnhancedPacketBlock {
            interface_id,
            timestamp: ts,
            original_len: data.len() as u32,
            data: Cow::Borrowed(data),
            options,
        };
        self.inner.write_pcapng_block(epb).map_err(write_error)?;
        Ok(())
    }

    fn interface_id(&mut self, name: &str) -> Result<u32, CaptureError> {
        if let Some(i) = self.ifaces.iter().position(|n| n == name) {
            return Ok(i as u32);
        }
        let idb = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: SNAPLEN,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Owned(name.to_string())),
                InterfaceDescriptionOption::IfTsResol(NANOSECONDS),
            ],
        };
        self.inner.write_pcapng_block(idb).map_err(write_error)?;
        self.ifaces.push(name.to_string());
        Ok(self.ifaces.len() as u32 - 1)
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(self) -> Result<W, CaptureError> {
        let mut w = self.inner.into_inner();
        w.flush()?;
        Ok(w)
    }
}

fn write_error(e: PcapError) -> CaptureError {
    match e {
        PcapError::IoError(e) => CaptureError::Io(e),
        other => CaptureError::Malformed {
            index: 0,
            what: other.to_string(),
        },
    }
}

/// Writes `frames` to a new pcapng file at `path`.
pub fn write_pcapng<'a>(
    path: impl AsRef<Path>,
    frames: impl IntoIterator<Item = &'a Frame>,
) -> Result<(), CaptureError> {
    let mut w = PcapngWriter::new(BufWriter::new(File::create(path)?))?;
    for f in frames {
        w.write(f)?;
    }
    w.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests;
