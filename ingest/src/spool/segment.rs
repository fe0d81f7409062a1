//! One spool segment file: a header, then checksummed records appended one
//! after another, never rewritten.
//!
//! ```text
//! header   b"TWSPOOL1"
//! record   u32 LE payload length | u32 LE CRC-32 of the payload | payload
//! ```
//!
//! A payload is one batch of callbacks in the queue's batch format, so the
//! drainer publishes exactly what the normal path would have. Reading stops
//! at the first record that is incomplete or fails its checksum (a torn
//! tail after a crash, or a corrupt block): what follows it cannot be
//! framed, so it is reported as skipped, never guessed at.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

pub const HEADER: &[u8; 8] = b"TWSPOOL1";
const RECORD_HEADER_BYTES: usize = 8;
/// A record can never be this large (bodies are capped at the edge); a
/// length past it is corruption, not a record to allocate for.
const MAX_RECORD_BYTES: usize = 256 * 1024 * 1024;

/// The file name of segment `sequence`: sorted by name is sorted by age.
pub fn file_name(sequence: u64) -> String {
    format!("segment-{sequence:020}.spool")
}

/// The sequence number of a segment file name, if it is one.
pub fn sequence_of(name: &str) -> Option<u64> {
    name.strip_prefix("segment-")?
        .strip_suffix(".spool")?
        .parse()
        .ok()
}

pub fn path(dir: &Path, sequence: u64) -> PathBuf {
    dir.join(file_name(sequence))
}

/// The bytes of one record for `payload`.
pub fn encode_record(payload: &[u8], out: &mut Vec<u8>) {
    let length = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Creates a new segment with its header, durably (file and directory entry).
pub fn create(dir: &Path, sequence: u64) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(path(dir, sequence))?;
    file.write_all(HEADER)?;
    file.sync_all()?;
    sync_dir(dir)
}

/// Makes a directory's entries (files created or removed) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What reading a segment found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SegmentContents {
    pub payloads: Vec<Vec<u8>>,
    /// Bytes after the last good record that could not be read as records.
    pub skipped_bytes: u64,
    /// Why reading stopped early, when it did.
    pub damage: Option<&'static str>,
}

/// Reads every intact record of a segment.
pub fn read(path: &Path) -> io::Result<SegmentContents> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    Ok(parse(&bytes))
}

pub fn parse(bytes: &[u8]) -> SegmentContents {
    let mut contents = SegmentContents::default();
    let Some(mut rest) = bytes.strip_prefix(HEADER.as_slice()) else {
        contents.skipped_bytes = bytes.len() as u64;
        contents.damage = (!bytes.is_empty()).then_some("no spool header");
        return contents;
    };
    while !rest.is_empty() {
        let damage = match record(rest) {
            Ok((payload, after)) => {
                contents.payloads.push(payload.to_vec());
                rest = after;
                continue;
            }
            Err(damage) => damage,
        };
        contents.skipped_bytes = rest.len() as u64;
        contents.damage = Some(damage);
        break;
    }
    contents
}

fn record(bytes: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    let (header, rest) = bytes
        .split_at_checked(RECORD_HEADER_BYTES)
        .ok_or("torn record header")?;
    let (length, crc) = header.split_at(4);
    let length = u32::from_le_bytes(length.try_into().map_err(|_| "torn record header")?);
    let crc = u32::from_le_bytes(crc.try_into().map_err(|_| "torn record header")?);
    let length = usize::try_from(length).map_err(|_| "impossible record length")?;
    if length > MAX_RECORD_BYTES {
        return Err("impossible record length");
    }
    let (payload, after) = rest.split_at_checked(length).ok_or("torn record")?;
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch");
    }
    Ok((payload, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(payloads: &[&[u8]]) -> Vec<u8> {
        let mut bytes = HEADER.to_vec();
        for payload in payloads {
            encode_record(payload, &mut bytes);
        }
        bytes
    }

    #[test]
    fn records_read_back_in_order() {
        let bytes = segment(&[b"one", b"", b"three"]);
        let contents = parse(&bytes);
        assert_eq!(
            contents.payloads,
            vec![b"one".to_vec(), vec![], b"three".to_vec()]
        );
        assert_eq!((contents.skipped_bytes, contents.damage), (0, None));
    }

    #[test]
    fn a_torn_tail_is_skipped_and_reported() {
        let whole = segment(&[b"one", b"two"]);
        for cut in 1..(RECORD_HEADER_BYTES + 3) {
            let torn = &whole[..whole.len() - cut];
            let contents = parse(torn);
            assert_eq!(contents.payloads, vec![b"one".to_vec()], "cut {cut}");
            assert_eq!(
                contents.skipped_bytes,
                (RECORD_HEADER_BYTES + 3 - cut) as u64
            );
            assert!(contents.damage.is_some());
        }
    }

    #[test]
    fn a_flipped_bit_stops_reading_at_that_record() {
        let mut bytes = segment(&[b"one", b"two", b"three"]);
        let second_payload = HEADER.len() + RECORD_HEADER_BYTES + 3 + RECORD_HEADER_BYTES;
        bytes[second_payload] ^= 0x01;
        let contents = parse(&bytes);
        assert_eq!(contents.payloads, vec![b"one".to_vec()]);
        assert_eq!(contents.damage, Some("checksum mismatch"));
    }

    #[test]
    fn names_sort_by_sequence() {
        assert_eq!(sequence_of(&file_name(42)), Some(42));
        assert!(file_name(9) < file_name(10));
        assert_eq!(sequence_of("segment-x.spool"), None);
        assert_eq!(sequence_of(".lock"), None);
    }

    #[test]
    fn garbage_never_panics() {
        for bytes in [
            &b""[..],
            b"TWSPOOL1\xff\xff\xff\xff\0\0\0\0",
            b"nonsense",
            b"TWSPOOL",
        ] {
            let _ = parse(bytes);
        }
    }
}
