//! What every source yields, the errors of reading captures, and format sniffing.

use std::fs::File;
use std::io::{self, BufReader, Chain, Cursor, Read};
use std::path::Path;
use std::time::Duration;

use pcap_file::PcapError;

use crate::pcap::PcapReader;
use crate::pcapng::PcapngReader;

/// One captured Ethernet frame and the interface it was seen on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    /// The capture's interface name (pcapng `if_name`; for classic pcap, the caller's).
    pub iface: String,
    /// Time since the Unix epoch, as the capture states it.
    pub ts: Duration,
    /// The frame from the destination MAC on, without FCS.
    pub data: Vec<u8>,
}

impl Frame {
    pub fn new(iface: impl Into<String>, ts: Duration, data: Vec<u8>) -> Frame {
        Frame {
            iface: iface.into(),
            ts,
            data,
        }
    }
}

/// Why a capture could not be read or written. `index` counts blocks (pcapng) or packet records
/// (pcap) from the start of the file, the header being 0, so a bad spot can be found with a hex
/// editor or `tshark`.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not a pcap or pcapng capture (magic {magic:02x?})")]
    NotACapture { magic: Vec<u8> },
    #[error("capture ends inside block {index}: the file is cut short")]
    Truncated { index: u64 },
    #[error("block {index}: {what}")]
    Malformed { index: u64, what: String },
    #[error("block {index}: packet names interface {id}, but the section describes {count}")]
    UnknownInterface { index: u64, id: u32, count: usize },
    #[error("block {index}: interface {iface:?} has link type {linktype}; only Ethernet (1) is supported")]
    LinkType {
        index: u64,
        iface: String,
        linktype: u32,
    },
    #[error("block {index}: timestamp does not fit in 64-bit seconds")]
    Timestamp { index: u64 },
}

impl CaptureError {
    /// Whether the stream cannot go on after this error. The readers end their iteration after a
    /// fatal error; after a non-fatal one (a packet on an unknown or non-Ethernet interface) the
    /// next frame can still be read.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            CaptureError::UnknownInterface { .. }
                | CaptureError::LinkType { .. }
                | CaptureError::Timestamp { .. }
        )
    }

    pub(crate) fn from_pcap(e: PcapError, index: u64) -> CaptureError {
        match e {
            PcapError::IncompleteBuffer => CaptureError::Truncated { index },
            PcapError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                CaptureError::Truncated { index }
            }
            PcapError::IoError(e) => CaptureError::Io(e),
            PcapError::InvalidField(what) => CaptureError::Malformed {
                index,
                what: what.to_string(),
            },
            PcapError::Utf8Error(_) | PcapError::FromUtf8Error(_) => CaptureError::Malformed {
                index,
                what: "an option that must be UTF-8 is not".into(),
            },
            PcapError::InvalidInterfaceId(id) => CaptureError::UnknownInterface {
                index,
                id,
                count: 0,
            },
        }
    }
}

/// The four bytes already read to sniff the format, put back in front of the rest.
pub type Sniffed<R> = Chain<Cursor<Vec<u8>>, R>;

/// A pcapng or classic pcap reader, whichever the file turned out to be.
pub enum CaptureReader<R: Read> {
    Pcapng(PcapngReader<Sniffed<R>>),
    Pcap(PcapReader<Sniffed<R>>),
}

impl<R: Read> CaptureReader<R> {
    /// Sniffs the magic number. `pcap_iface` names the interface of every packet when the
    /// capture is classic pcap, which has no interface names.
    pub fn new(mut reader: R, pcap_iface: &str) -> Result<CaptureReader<R>, CaptureError> {
        let mut magic = vec![0u8; 4];
        let mut got = 0;
        while got < 4 {
            match reader.read(&mut magic[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        magic.truncate(got);
        let is_pcapng = magic == [0x0a, 0x0d, 0x0d, 0x0a];
        let is_pcap = matches!(
            magic.as_slice(),
            [0xa1, 0xb2, 0xc3, 0xd4]
                | [0xd4, 0xc3, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0x3c, 0x4d]
                | [0x4d, 0x3c, 0xb2, 0xa1]
        );
        let chained = Cursor::new(magic.clone()).chain(reader);
        if is_pcapng {
            Ok(CaptureReader::Pcapng(PcapngReader::new(chained)?))
        } else if is_pcap {
            Ok(CaptureReader::Pcap(PcapReader::new(chained, pcap_iface)?))
        } else {
            Err(CaptureError::NotACapture { magic })
        }
    }
}

impl<R: Read> Iterator for CaptureReader<R> {
    type Item = Result<Frame, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            CaptureReader::Pcapng(r) => r.next(),
            CaptureReader::Pcap(r) => r.next(),
        }
    }
}

/// Opens a pcapng or classic pcap file for streaming.
pub fn open_capture(
    path: impl AsRef<Path>,
    pcap_iface: &str,
) -> Result<CaptureReader<BufReader<File>>, CaptureError> {
    CaptureReader::new(BufReader::new(File::open(path)?), pcap_iface)
}

/// Reads a whole capture into memory, stopping at the first error.
pub fn read_capture(path: impl AsRef<Path>, pcap_iface: &str) -> Result<Vec<Frame>, CaptureError> {
    open_capture(path, pcap_iface)?.collect()
}
