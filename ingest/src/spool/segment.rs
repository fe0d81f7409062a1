//! One spool segment file: a header, then checksummed records appended one
//! after another, never rewritten.
//!
//! ```text
//! header   b"TWSPOOL2" (b"TWSPOOL1": written by earlier releases)
//! record   u32 LE payload length | u32 LE CRC-32 of the payload | payload
//! ```
//!
//! A payload is one batch message (`record`): the drainer publishes exactly
//! what the normal path would have. The header says the payload's format.
//!
//! Reading tells two kinds of trouble apart. A *torn tail*, a last record
//! cut short, is what a crash in the middle of a write leaves: that write
//! was never fsynced, so none of its callbacks was answered 200, and
//! skipping it loses nothing. *Damage* is anything else (a record failing
//! its checksum, an impossible length, no header): something that was
//! acknowledged may be gone, so the drainer keeps such a file aside. A
//! record failing its checksum is skipped by its length and reading goes
//! on (every later record has its own checksum, so a wrong length cannot
//! make garbage pass); an impossible length cannot be framed past, so the
//! rest counts as one damaged record, never guessed at.
//!
//! Files are created `0600`: they hold phone numbers.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The header of the segments this release writes.
pub const HEADER: &[u8; 8] = b"TWSPOOL2";
/// The header of the segments earlier releases wrote (a batch body alone
/// in each record); they still drain.
pub const LEGACY_HEADER: &[u8; 8] = b"TWSPOOL1";

/// Which record format a segment holds, from its header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Current,
    Legacy,
}
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

/// Owner read and write only: segments hold phone numbers.
pub const FILE_MODE: u32 = 0o600;

/// Creates a new segment with its header, durably (file and directory
/// entry). On failure nothing is left behind: a half-made file would
/// otherwise stand in the way of the next attempt at that name.
pub fn create(dir: &Path, sequence: u64) -> io::Result<()> {
    let path = path(dir, sequence);
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .mode(FILE_MODE)
        .open(&path)?;
    let written = file
        .write_all(HEADER)
        .and_then(|()| file.sync_all())
        .and_then(|()| sync_dir(dir));
    if written.is_err() {
        drop(file);
        // Best effort: if even this fails, the caller's next attempt uses
        // another sequence number anyway.
        let _ = std::fs::remove_file(&path);
    }
    written
}

/// Cuts a segment back to `length` bytes and makes that durable: undoes a
/// write that failed half-way, so no torn record is left in the middle of
/// the file, nor a whole one that was answered 503.
pub fn truncate(path: &Path, length: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(length)?;
    file.sync_data()
}

/// Makes a directory's entries (files created or removed) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What reading a segment found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SegmentContents {
    pub format: Format,
    pub payloads: Vec<Vec<u8>>,
    /// Bytes of a last record cut short (a write a crash interrupted, never
    /// acknowledged): skipped, and no cause for alarm.
    pub torn_tail_bytes: u64,
    /// Records that could not be read for any other reason.
    pub damage: Option<Damage>,
}

/// Records of a segment that could not be read back, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Damage {
    /// Why the first of them could not be read.
    pub reason: &'static str,
    /// How many were skipped (a remainder that cannot be framed counts as one).
    pub records: u64,
    pub bytes: u64,
}

impl SegmentContents {
    fn damaged(&mut self, reason: &'static str, bytes: usize) {
        let damage = self.damage.get_or_insert(Damage {
            reason,
            records: 0,
            bytes: 0,
        });
        damage.records += 1;
        damage.bytes += bytes as u64;
    }
}

/// Reads every intact record of a segment.
pub fn read(path: &Path) -> io::Result<SegmentContents> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    Ok(parse(&bytes))
}

pub fn parse(bytes: &[u8]) -> SegmentContents {
    let mut contents = SegmentContents::default();
    let current = bytes.strip_prefix(HEADER.as_slice());
    let legacy = bytes.strip_prefix(LEGACY_HEADER.as_slice());
    if legacy.is_some() {
        contents.format = Format::Legacy;
    }
    let Some(mut rest) = current.or(legacy) else {
        if HEADER.starts_with(bytes) || LEGACY_HEADER.starts_with(bytes) {
            // Empty, or a header write cut short: a segment being created.
            contents.torn_tail_bytes = bytes.len() as u64;
        } else {
            contents.damaged("no spool header", bytes.len());
        }
        return contents;
    };
    while !rest.is_empty() {
        match record(rest) {
            Ok((payload, after)) => {
                contents.payloads.push(payload.to_vec());
                rest = after;
            }
            Err(Unreadable::Torn) => {
                contents.torn_tail_bytes = rest.len() as u64;
                break;
            }
            Err(Unreadable::BadChecksum { after }) => {
                contents.damaged("checksum mismatch", rest.len() - after.len());
                rest = after;
            }
            Err(Unreadable::ImpossibleLength) => {
                contents.damaged("impossible record length", rest.len());
                break;
            }
        }
    }
    contents
}

enum Unreadable<'a> {
    /// The file ends inside this record.
    Torn,
    /// A whole record whose payload does not match its checksum; `after`
    /// is what follows it.
    BadChecksum {
        after: &'a [u8],
    },
    ImpossibleLength,
}

fn record(bytes: &[u8]) -> Result<(&[u8], &[u8]), Unreadable<'_>> {
    let Some((header, rest)) = bytes.split_at_checked(RECORD_HEADER_BYTES) else {
        return Err(Unreadable::Torn);
    };
    let (length, crc) = header.split_at(4);
    let word = |bytes: &[u8]| bytes.try_into().map(u32::from_le_bytes);
    let (Ok(length), Ok(crc)) = (word(length), word(crc)) else {
        return Err(Unreadable::Torn);
    };
    let length = usize::try_from(length).map_err(|_| Unreadable::ImpossibleLength)?;
    if length > MAX_RECORD_BYTES {
        return Err(Unreadable::ImpossibleLength);
    }
    let (payload, after) = rest.split_at_checked(length).ok_or(Unreadable::Torn)?;
    if crc32fast::hash(payload) != crc {
        return Err(Unreadable::BadChecksum { after });
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
        assert_eq!((contents.torn_tail_bytes, contents.damage), (0, None));
    }

    #[test]
    fn a_torn_tail_is_skipped_and_reported() {
        let whole = segment(&[b"one", b"two"]);
        for cut in 1..(RECORD_HEADER_BYTES + 3) {
            let torn = &whole[..whole.len() - cut];
            let contents = parse(torn);
            assert_eq!(contents.payloads, vec![b"one".to_vec()], "cut {cut}");
            assert_eq!(
                contents.torn_tail_bytes,
                (RECORD_HEADER_BYTES + 3 - cut) as u64
            );
            assert_eq!(contents.damage, None, "a torn tail is not damage");
        }
        // So is a header cut short, or none written yet.
        for cut in 0..HEADER.len() {
            assert_eq!(parse(&HEADER[..cut]).damage, None);
        }
    }

    #[test]
    fn an_earlier_release_s_segment_reads_as_the_legacy_format() {
        let mut bytes = LEGACY_HEADER.to_vec();
        encode_record(b"one", &mut bytes);
        let contents = parse(&bytes);
        assert_eq!(contents.format, Format::Legacy);
        assert_eq!(contents.payloads, vec![b"one".to_vec()]);
        assert_eq!(parse(&segment(&[b"two"])).format, Format::Current);
    }

    #[test]
    fn a_flipped_bit_skips_that_record_only_and_counts_it() {
        let mut bytes = segment(&[b"one", b"two", b"three"]);
        let second_payload = HEADER.len() + RECORD_HEADER_BYTES + 3 + RECORD_HEADER_BYTES;
        bytes[second_payload] ^= 0x01;
        let contents = parse(&bytes);
        assert_eq!(contents.payloads, vec![b"one".to_vec(), b"three".to_vec()]);
        assert_eq!(
            contents.damage,
            Some(Damage {
                reason: "checksum mismatch",
                records: 1,
                bytes: (RECORD_HEADER_BYTES + 3) as u64,
            })
        );
        assert_eq!(contents.torn_tail_bytes, 0);
    }

    #[test]
    fn what_cannot_be_framed_is_damage_not_a_torn_tail() {
        let mut bytes = segment(&[b"one", b"two"]);
        // The second record's length: far past anything a record can be.
        let second = HEADER.len() + RECORD_HEADER_BYTES + 3;
        bytes[second + 3] = 0xff;
        let contents = parse(&bytes);
        assert_eq!(contents.payloads, vec![b"one".to_vec()]);
        let damage = contents.damage.unwrap();
        assert_eq!(
            (damage.reason, damage.records),
            ("impossible record length", 1)
        );
        let no_header = parse(b"not a spool segment at all");
        assert_eq!(no_header.damage.unwrap().reason, "no spool header");
    }

    #[test]
    fn a_segment_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        create(dir.path(), 1).unwrap();
        let mode = std::fs::metadata(path(dir.path(), 1))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, FILE_MODE);
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
