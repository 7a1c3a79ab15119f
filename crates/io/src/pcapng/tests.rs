use super::*;
use crate::capture::CaptureReader;
use crate::pcap::PcapReader;
use proptest::prelude::*;
use std::io::Cursor;

fn frames() -> Vec<Frame> {
    vec![
        Frame::new(
            "lan",
            Duration::new(1_700_000_000, 123_456_789),
            vec![0xaa; 60],
        ),
        Frame::new(
            "eth1",
            Duration::new(1_700_000_000, 123_456_790),
            (0..=255).collect(),
        ),
        Frame::new("lan", Duration::new(1_700_000_001, 1), vec![1, 2, 3]),
        Frame::new("wan", Duration::ZERO, vec![]),
        Frame::new(
            "eth1",
            Duration::new(1_800_000_000, 999_999_999),
            vec![7; 1514],
        ),
    ]
}

fn to_bytes(frames: &[Frame]) -> Vec<u8> {
    let mut w = PcapngWriter::new(Vec::new()).unwrap();
    for f in frames {
        w.write(f).unwrap();
    }
    assert_eq!(w.interface_names(), ["lan", "eth1", "wan"]);
    w.finish().unwrap()
}

fn read_all(bytes: &[u8]) -> Result<Vec<Frame>, CaptureError> {
    PcapngReader::new(bytes)?.collect()
}

#[test]
fn round_trip_keeps_bytes_timestamps_and_names() {
    let frames = frames();
    let bytes = to_bytes(&frames);
    assert_eq!(read_all(&bytes).unwrap(), frames);
    let sniffed: Vec<Frame> = CaptureReader::new(&bytes[..], "unused")
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(sniffed, frames);
}

fn u32_le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Walks the file by hand, as Wireshark would: SHB, then an IDB before the first packet of each
/// interface, each block's two length fields equal and a multiple of four.
#[test]
fn block_structure() {
    let bytes = to_bytes(&frames());
    let mut at = 0;
    let mut types = vec![];
    let mut idb_bodies = vec![];
    while at < bytes.len() {
        let ty = u32_le(&bytes, at);
        let len = u32_le(&bytes, at + 4) as usize;
        assert_eq!(len % 4, 0);
        assert_eq!(
            u32_le(&bytes, at + len - 4) as usize,
            len,
            "trailing length of block at {at}"
        );
        if ty == 1 {
            idb_bodies.push(bytes[at + 8..at + len - 4].to_vec());
        }
        types.push(ty);
        at += len;
    }
    assert_eq!(at, bytes.len());
    assert_eq!(types, [0x0a0d0d0a, 1, 6, 1, 6, 6, 1, 6, 6]);
    assert_eq!(
        &bytes[8..12],
        &[0x4d, 0x3c, 0x2b, 0x1a],
        "little-endian byte-order magic"
    );
    // IDB: linktype 1, reserved, snaplen, then options: if_name (2), if_tsresol (9) = 9, end.
    let idb = &idb_bodies[1];
    assert_eq!(&idb[0..4], &[1, 0, 0, 0]);
    assert_eq!(&idb[8..16], &[2, 0, 4, 0, b'e', b't', b'h', b'1']);
    assert_eq!(&idb[16..24], &[9, 0, 1, 0, 9, 0, 0, 0]);
    assert_eq!(&idb[24..28], &[0, 0, 0, 0]);
    // The first EPB: interface 0, timestamp in nanoseconds, high word first.
    let epb = u32_le(&bytes, 4) as usize + 8 + idb_bodies[0].len() + 4;
    assert_eq!(u32_le(&bytes, epb), 6);
    let ns = 1_700_000_000_123_456_789u64;
    assert_eq!(u32_le(&bytes, epb + 8), 0);
    assert_eq!(u32_le(&bytes, epb + 12), (ns >> 32) as u32);
    assert_eq!(u32_le(&bytes, epb + 16), ns as u32);
}

#[test]
fn timestamp_resolutions() {
    assert_eq!(
        scale_timestamp(1_500_000, 6, 0),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(
        scale_timestamp(1_500, 3, 0),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(scale_timestamp(7, 0, 0), Some(Duration::from_secs(7)));
    assert_eq!(scale_timestamp(1, 9, 0), Some(Duration::from_nanos(1)));
    assert_eq!(
        scale_timestamp(12_345, 12, 0),
        Some(Duration::from_nanos(12))
    );
    // 2^-10 s units.
    assert_eq!(
        scale_timestamp(1024 * 3, 0x8a, 0),
        Some(Duration::from_secs(3))
    );
    assert_eq!(
        scale_timestamp(512, 0x8a, 0),
        Some(Duration::from_millis(500))
    );
    assert_eq!(
        scale_timestamp(5, 6, 10),
        Some(Duration::from_micros(10_000_005))
    );
    assert_eq!(scale_timestamp(u64::MAX, 0x7f, 0), Some(Duration::ZERO));
    assert_eq!(
        scale_timestamp(u64::MAX, 0x80, 0),
        Some(Duration::from_secs(u64::MAX))
    );
    assert_eq!(scale_timestamp(u64::MAX, 0x80, 1), None);
    assert_eq!(scale_timestamp(1, 6, -1), None);
}

/// A capture from another tool: microsecond and base-2 interfaces, one without a name, a packet
/// on a missing interface, and a second section that starts the interface list over.
#[test]
fn foreign_capture() {
    let mut w = PcapNgWriter::with_endianness(Vec::new(), Endianness::Big).unwrap();
    let idb = |opts| InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: 65535,
        options: opts,
    };
    let epb = |id, units: u64, data: &'static [u8]| EnhancedPacketBlock {
        interface_id: id,
        timestamp: Duration::from_nanos(units),
        original_len: data.len() as u32,
        data: Cow::Borrowed(data),
        options: vec![],
    };
    w.write_pcapng_block(idb(vec![InterfaceDescriptionOption::IfName("eth0".into())]))
        .unwrap();
    w.write_pcapng_block(idb(vec![InterfaceDescriptionOption::IfTsResol(0x80 | 20)]))
        .unwrap();
    w.write_pcapng_block(epb(0, 2_000_001, b"a")).unwrap();
    w.write_pcapng_block(epb(1, 3 << 20, b"b")).unwrap();
    let mut bytes = w.into_inner();
    // An EPB on interface 5 (pcap-file's writer refuses to write one; build it by hand).
    let mut bad = vec![];
    for v in [6u32, 36, 5, 0, 0, 4, 4] {
        bad.extend_from_slice(&v.to_be_bytes());
    }
    bad.extend_from_slice(b"zzzz");
    bad.extend_from_slice(&36u32.to_be_bytes());
    bytes.extend_from_slice(&bad);
    let mut w = PcapNgWriter::with_endianness(Vec::new(), Endianness::Big).unwrap();
    w.write_pcapng_block(idb(vec![InterfaceDescriptionOption::IfName("eth9".into())]))
        .unwrap();
    w.write_pcapng_block(epb(0, 5, b"c")).unwrap();
    bytes.extend_from_slice(&w.into_inner());

    let out: Vec<_> = PcapngReader::new(&bytes[..]).unwrap().collect();
    assert_eq!(out.len(), 4, "{out:?}");
    assert_eq!(
        out[0].as_ref().unwrap(),
        &Frame::new("eth0", Duration::from_micros(2_000_001), b"a".to_vec())
    );
    assert_eq!(
        out[1].as_ref().unwrap(),
        &Frame::new("if1", Duration::from_secs(3), b"b".to_vec())
    );
    let e = out[2].as_ref().unwrap_err();
    assert!(
        matches!(
            e,
            CaptureError::UnknownInterface {
                index: 5,
                id: 5,
                count: 2
            }
        ),
        "{e}"
    );
    assert!(!e.is_fatal());
    assert_eq!(
        out[3].as_ref().unwrap(),
        &Frame::new("eth9", Duration::from_micros(5), b"c".to_vec())
    );
}

#[test]
fn non_ethernet_interface_is_refused() {
    let mut w = PcapNgWriter::new(Vec::new()).unwrap();
    let idb = InterfaceDescriptionBlock {
        linktype: DataLink::RAW,
        snaplen: 0,
        options: vec![],
    };
    w.write_pcapng_block(idb).unwrap();
    let epb = EnhancedPacketBlock {
        interface_id: 0,
        timestamp: Duration::ZERO,
        original_len: 1,
        data: Cow::Borrowed(&[0x45]),
        options: vec![],
    };
    w.write_pcapng_block(epb).unwrap();
    let out: Vec<_> = PcapngReader::new(&w.into_inner()[..]).unwrap().collect();
    assert!(
        matches!(out[..], [Err(CaptureError::LinkType { linktype: 101, .. })]),
        "{out:?}"
    );
}

#[test]
fn bad_files_give_typed_errors() {
    assert!(matches!(
        CaptureReader::new(&b""[..], "x"),
        Err(CaptureError::NotACapture { .. })
    ));
    assert!(matches!(
        CaptureReader::new(&b"GIF89a.."[..], "x"),
        Err(CaptureError::NotACapture { .. })
    ));
    assert!(matches!(
        PcapngReader::new(&b"\x0a\x0d\x0d\x0a"[..]),
        Err(CaptureError::Truncated { index: 0 })
    ));

    let bytes = to_bytes(&frames());
    // Cut anywhere: a clean prefix of the frames, then at most one error, never a panic.
    for cut in 0..bytes.len() {
        let Ok(r) = PcapngReader::new(&bytes[..cut]) else {
            continue;
        };
        let out: Vec<_> = r.collect();
        let errors = out.iter().filter(|r| r.is_err()).count();
        assert!(errors <= 1);
        if let Some(Err(e)) = out.last() {
            assert!(
                matches!(e, CaptureError::Truncated { .. }),
                "cut {cut}: {e}"
            );
        }
    }
    // Trailing length that disagrees with the leading one.
    let mut b = bytes.clone();
    let n = b.len();
    b[n - 4] ^= 0x10;
    let out: Vec<_> = PcapngReader::new(&b[..]).unwrap().collect();
    assert!(
        matches!(
            out.last(),
            Some(Err(CaptureError::Malformed { index: 8, .. }))
        ),
        "{out:?}"
    );
}

#[test]
fn classic_pcap_on_a_named_interface() {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    use pcap_file::TsResolution;
    for ts_resolution in [TsResolution::MicroSecond, TsResolution::NanoSecond] {
        let header = PcapHeader {
            ts_resolution,
            ..Default::default()
        };
        let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
        w.write_packet(&PcapPacket::new(Duration::new(10, 5000), 3, b"abc"))
            .unwrap();
        w.write_packet(&PcapPacket::new(Duration::new(11, 0), 1, b"d"))
            .unwrap();
        let bytes = w.into_writer();
        let out: Vec<Frame> = PcapReader::new(&bytes[..], "lan")
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            out,
            [
                Frame::new("lan", Duration::new(10, 5000), b"abc".to_vec()),
                Frame::new("lan", Duration::new(11, 0), b"d".to_vec())
            ]
        );
        let sniffed: Vec<Frame> = CaptureReader::new(&bytes[..], "lan")
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(sniffed, out);
        let cut: Vec<_> = PcapReader::new(&bytes[..bytes.len() - 1], "lan")
            .unwrap()
            .collect();
        assert!(
            matches!(cut[..], [Ok(_), Err(CaptureError::Truncated { index: 2 })]),
            "{cut:?}"
        );
    }
    let header = PcapHeader {
        datalink: DataLink::RAW,
        ..Default::default()
    };
    let bytes = PcapWriter::with_header(Vec::new(), header)
        .unwrap()
        .into_writer();
    assert!(matches!(
        PcapReader::new(&bytes[..], "x"),
        Err(CaptureError::LinkType { .. })
    ));
}

#[test]
fn file_helpers_and_tshark() {
    let dir = std::env::temp_dir().join(format!("nft-io-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rt.pcapng");
    let frames = frames();
    write_pcapng(&path, &frames).unwrap();
    assert_eq!(crate::read_capture(&path, "x").unwrap(), frames);
    // Wireshark's reader, when it is installed, must agree on names and times.
    if let Ok(out) = std::process::Command::new("tshark")
        .args(["-r"])
        .arg(&path)
        .args([
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
            "-e",
            "frame.time_epoch",
            "-e",
            "frame.len",
        ])
        .output()
    {
        assert!(
            out.status.success(),
            "tshark: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
        assert_eq!(rows.len(), frames.len(), "{text}");
        for (row, f) in rows.iter().zip(&frames) {
            assert_eq!(row[0], f.iface);
            let want = format!("{}.{:09}", f.ts.as_secs(), f.ts.subsec_nanos());
            assert_eq!(row[1], want);
            assert_eq!(row[2], f.data.len().to_string());
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn drain(bytes: &[u8]) {
    if let Ok(r) = CaptureReader::new(bytes, "x") {
        // Every error but the last is non-fatal, and the stream ends after a fatal one.
        let mut fatal = false;
        for item in r.take(10_000) {
            assert!(!fatal, "frame after a fatal error");
            if let Err(e) = item {
                fatal = e.is_fatal();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..512), magic in 0..3u8) {
        match magic {
            0 => {}
            1 => bytes.splice(0..0, [0x0a, 0x0d, 0x0d, 0x0a]).for_each(drop),
            _ => bytes.splice(0..0, [0xd4, 0xc3, 0xb2, 0xa1]).for_each(drop),
        }
        drain(&bytes);
    }

    #[test]
    fn mutated_captures_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let mut bytes = to_bytes(&frames());
        for (at, v) in edits {
            let n = bytes.len();
            bytes[at % n] = v;
        }
        let keep = cut % (bytes.len() + 1);
        bytes.truncate(keep.max(bytes.len() / 2));
        drain(&bytes);
    }
}

#[test]
fn reader_over_a_cursor_is_streaming() {
    let frames = frames();
    let bytes = to_bytes(&frames);
    let mut r = PcapngReader::new(Cursor::new(bytes)).unwrap();
    assert_eq!(r.next().unwrap().unwrap(), frames[0]);
    assert_eq!(r.interface_names().collect::<Vec<_>>(), ["lan"]);
}
