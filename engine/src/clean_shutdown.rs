//! The clean-shutdown record: `clean-shutdown` in a log directory, written by
//! [`PartitionLog::close`](crate::PartitionLog::close) once every byte is written, synced and
//! every segment sealed with its indexes, and removed by the next open before it changes
//! anything. While it is there, the segment files are exactly as the record describes them, so
//! the open can take each segment's state from it and the index files instead of reading and
//! validating every batch (the full recovery scan, which reads the whole log: minutes for a
//! large one). Like Kafka's `.kafka_cleanshutdown` marker.
//!
//! The record is used only if everything agrees: its CRC, the set of segment files and their
//! sizes, and each segment's index files, byte for byte, against the indexes rebuilt from the
//! record. Anything else, or no record (a crash, a kill, a failed close), means the full scan.
//!
//! Layout (big-endian): magic `VAARTCLN` (8 bytes), version u32 = 1, segment count u32, then
//! per segment: base offset i64, length u64, next offset i64, max timestamp i64, bytes since
//! the last time-index entry u64, offset-index entries u32, CRC32C of the `.index` file u32,
//! CRC32C of the `.timeindex` file u32, time-index entries in memory u32, batch last offsets
//! count u32
//! (`u32::MAX`: none kept) followed by that many u32; then epoch count u32 and per epoch: epoch
//! i32, start offset i64; last, CRC32C of everything before it (u32).

use crate::{
    epoch::EpochCache,
    segment::Segment,
    types::{LeaderEpoch, Offset, TimestampMs},
};

/// File name of the record inside a log directory.
pub const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
const MAGIC: &[u8; 8] = b"VAARTCLN";
const VERSION: u32 = 1;
/// `batch_last_offsets` count meaning "none kept" (a contiguous segment).
const NO_LAST_OFFSETS: u32 = u32::MAX;

/// One segment as the record describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentRecord {
    pub(crate) base_offset: Offset,
    pub(crate) len: u64,
    pub(crate) next_offset: Offset,
    pub(crate) max_timestamp: TimestampMs,
    pub(crate) bytes_since_time_entry: u64,
    /// Offset-index entries (batches).
    pub(crate) index_entries: u32,
    /// CRC32C of the `.index` and `.timeindex` files as the close sealed them.
    pub(crate) index_crc: u32,
    pub(crate) time_index_crc: u32,
    /// Time-index entries held in memory (the file may hold one more: the final entry).
    pub(crate) time_entries: u32,
    pub(crate) batch_last_offsets: Option<Vec<u32>>,
}

/// The whole record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CleanShutdown {
    pub(crate) segments: Vec<SegmentRecord>,
    pub(crate) epochs: Vec<(LeaderEpoch, Offset)>,
}

impl CleanShutdown {
    /// Describes `segments` and `epochs` as they are after a clean close.
    pub(crate) fn describe<'a>(
        segments: impl IntoIterator<Item = &'a Segment>,
        epochs: &EpochCache,
    ) -> Option<CleanShutdown> {
        let segments = segments
            .into_iter()
            .map(|segment| {
                let (index, time_index) = segment.encoded_indexes();
                Some(SegmentRecord {
                    base_offset: segment.base_offset,
                    len: segment.len,
                    next_offset: segment.next_offset,
                    max_timestamp: segment.max_timestamp,
                    bytes_since_time_entry: segment.bytes_since_time_entry,
                    index_entries: u32::try_from(segment.index.len()).ok()?,
                    index_crc: crc32c::crc32c(&index),
                    time_index_crc: crc32c::crc32c(&time_index),
                    time_entries: u32::try_from(segment.time_index.len()).ok()?,
                    batch_last_offsets: segment.batch_last_offsets.clone(),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(CleanShutdown {
            segments,
            epochs: epochs.entries().to_vec(),
        })
    }

    /// The record's bytes.
    pub(crate) fn encode(&self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(64 + self.segments.len() * 56);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&u32::try_from(self.segments.len()).ok()?.to_be_bytes());
        for segment in &self.segments {
            out.extend_from_slice(&segment.base_offset.0.to_be_bytes());
            out.extend_from_slice(&segment.len.to_be_bytes());
            out.extend_from_slice(&segment.next_offset.0.to_be_bytes());
            out.extend_from_slice(&segment.max_timestamp.0.to_be_bytes());
            out.extend_from_slice(&segment.bytes_since_time_entry.to_be_bytes());
            out.extend_from_slice(&segment.index_entries.to_be_bytes());
            out.extend_from_slice(&segment.index_crc.to_be_bytes());
            out.extend_from_slice(&segment.time_index_crc.to_be_bytes());
            out.extend_from_slice(&segment.time_entries.to_be_bytes());
            match &segment.batch_last_offsets {
                None => out.extend_from_slice(&NO_LAST_OFFSETS.to_be_bytes()),
                Some(last_offsets) => {
                    let count = u32::try_from(last_offsets.len())
                        .ok()
                        .filter(|count| *count != NO_LAST_OFFSETS)?;
                    out.extend_from_slice(&count.to_be_bytes());
                    for last in last_offsets {
                        out.extend_from_slice(&last.to_be_bytes());
                    }
                }
            }
        }
        out.extend_from_slice(&u32::try_from(self.epochs.len()).ok()?.to_be_bytes());
        for (epoch, start) in &self.epochs {
            out.extend_from_slice(&epoch.0.to_be_bytes());
            out.extend_from_slice(&start.0.to_be_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        Some(out)
    }

    /// Parses a record; None if it is damaged, of another version, or has bytes left over.
    pub(crate) fn decode(bytes: &[u8]) -> Option<CleanShutdown> {
        let body_len = bytes.len().checked_sub(4)?;
        let (body, crc) = bytes.split_at(body_len);
        if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().ok()?) {
            return None;
        }
        let mut reader = Reader { bytes: body };
        if reader.take(8)? != MAGIC || reader.u32()? != VERSION {
            return None;
        }
        let segment_count = reader.u32()?;
        let mut segments = Vec::new();
        for _ in 0..segment_count {
            let base_offset = Offset(reader.i64()?);
            let len = reader.u64()?;
            let next_offset = Offset(reader.i64()?);
            let max_timestamp = TimestampMs(reader.i64()?);
            let bytes_since_time_entry = reader.u64()?;
            let index_entries = reader.u32()?;
            let index_crc = reader.u32()?;
            let time_index_crc = reader.u32()?;
            let time_entries = reader.u32()?;
            let batch_last_offsets = match reader.u32()? {
                NO_LAST_OFFSETS => None,
                count => {
                    // Bounded by the record's own length, not by the count it claims.
                    let count = usize::try_from(count).ok()?;
                    if count > reader.bytes.len() / 4 {
                        return None;
                    }
                    Some(
                        (0..count)
                            .map(|_| reader.u32())
                            .collect::<Option<Vec<_>>>()?,
                    )
                }
            };
            segments.push(SegmentRecord {
                base_offset,
                len,
                next_offset,
                max_timestamp,
                bytes_since_time_entry,
                index_entries,
                index_crc,
                time_index_crc,
                time_entries,
                batch_last_offsets,
            });
        }
        let epoch_count = reader.u32()?;
        let mut epochs = Vec::new();
        for _ in 0..epoch_count {
            epochs.push((LeaderEpoch(reader.i32()?), Offset(reader.i64()?)));
        }
        reader
            .bytes
            .is_empty()
            .then_some(CleanShutdown { segments, epochs })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < len {
            return None;
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CleanShutdown {
        CleanShutdown {
            segments: vec![
                SegmentRecord {
                    base_offset: Offset(0),
                    len: 4096,
                    next_offset: Offset(100),
                    max_timestamp: TimestampMs(1_700_000_000_000),
                    bytes_since_time_entry: 17,
                    index_entries: 9,
                    index_crc: 0xdead_beef,
                    time_index_crc: 7,
                    time_entries: 3,
                    batch_last_offsets: None,
                },
                SegmentRecord {
                    base_offset: Offset(100),
                    len: 0,
                    next_offset: Offset(100),
                    max_timestamp: TimestampMs::NONE,
                    bytes_since_time_entry: 0,
                    index_entries: 3,
                    index_crc: 1,
                    time_index_crc: 2,
                    time_entries: 0,
                    batch_last_offsets: Some(vec![4, 9, 30]),
                },
            ],
            epochs: vec![(LeaderEpoch(0), Offset(0)), (LeaderEpoch(3), Offset(60))],
        }
    }

    #[test]
    fn record_round_trips() {
        let record = sample();
        let bytes = record.encode().expect("encodes");
        assert_eq!(CleanShutdown::decode(&bytes), Some(record));
    }

    #[test]
    fn damaged_truncated_or_padded_records_are_refused() {
        let bytes = sample().encode().expect("encodes");
        for position in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x40;
            assert_eq!(
                CleanShutdown::decode(&damaged),
                None,
                "byte {position} flipped"
            );
        }
        for len in 0..bytes.len() {
            assert_eq!(CleanShutdown::decode(&bytes[..len]), None, "cut to {len}");
        }
        let mut padded = bytes[..bytes.len() - 4].to_vec();
        padded.push(0);
        let crc = crc32c::crc32c(&padded);
        padded.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(CleanShutdown::decode(&padded), None, "a byte left over");
    }

    #[test]
    fn an_absurd_count_is_refused_without_allocating_it() {
        let mut body = Vec::new();
        body.extend_from_slice(MAGIC);
        body.extend_from_slice(&VERSION.to_be_bytes());
        body.extend_from_slice(&1u32.to_be_bytes());
        body.extend_from_slice(&[0u8; 56]);
        body.extend_from_slice(&(u32::MAX - 1).to_be_bytes());
        let crc = crc32c::crc32c(&body);
        body.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(CleanShutdown::decode(&body), None);
    }
}
