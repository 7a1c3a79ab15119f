//! Classic libpcap captures: one link, no interface names, so the caller names it.

use std::io::Read;

use pcap_file::pcap::PcapReader as RawReader;
use pcap_file::DataLink;

use crate::capture::{CaptureError, Frame};

/// Streams the frames of a classic pcap capture (micro- or nanosecond, either byte order), each
/// on the interface named at construction.
pub struct PcapReader<R: Read> {
    inner: RawReader<R>,
    iface: String,
    /// Records read so far, the file header being 0.
    index: u64,
    done: bool,
}

impl<R: Read> PcapReader<R> {
    /// Reads the file header; only Ethernet captures are accepted.
    pub fn new(reader: R, iface: &str) -> Result<PcapReader<R>, CaptureError> {
        let inner = RawReader::new(reader).map_err(|e| CaptureError::from_pcap(e, 0))?;
        let linktype = inner.header().datalink;
        if linktype != DataLink::ETHERNET {
            return Err(CaptureError::LinkType {
                index: 0,
                iface: iface.to_string(),
                linktype: u32::from(linktype),
            });
        }
        Ok(PcapReader {
            inner,
            iface: iface.to_string(),
            index: 0,
            done: false,
        })
    }
}

impl<R: Read> Iterator for PcapReader<R> {
    type Item = Result<Frame, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let packet = match self.inner.next_packet() {
            None => {
                self.done = true;
                return None;
            }
            Some(p) => p,
        };
        self.index += 1;
        match packet {
            Ok(p) => Some(Ok(Frame {
                iface: self.iface.clone(),
                ts: p.timestamp,
                data: p.data.into_owned(),
            })),
            Err(e) => {
                self.done = true;
                Some(Err(CaptureError::from_pcap(e, self.index)))
            }
        }
    }
}
