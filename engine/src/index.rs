//! Per-segment indexes, kept in memory as vectors and persisted as `.index` / `.timeindex`.
//!
//! - [`OffsetIndex`]: one 8-byte entry per batch (relative base offset u32, position u32).
//!   It is dense, unlike Kafka's sparse index, because `read()` is synchronous and must find
//!   the batch that contains an offset without touching the disk. For batches of 4 KiB and more
//!   it has as many entries as Kafka's index with the default `index.interval.bytes`.
//! - [`TimeIndex`]: sparse 12-byte entries (max timestamp so far i64, relative offset u32),
//!   one per `index_interval_bytes` of appended data when the max timestamp grew.
//!
//! Entries are big-endian. See FORMAT.md.

use crate::types::TimestampMs;

/// Bytes per offset-index entry.
pub const OFFSET_INDEX_ENTRY_LEN: usize = 8;
/// Bytes per time-index entry.
pub const TIME_INDEX_ENTRY_LEN: usize = 12;

/// Why an index file was rejected (it is then rebuilt from the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The file size is not a multiple of the entry size.
    #[error("index size {len} is not a multiple of {entry_len}")]
    WrongSize {
        /// File size.
        len: usize,
        /// Entry size.
        entry_len: usize,
    },
    /// Entry `entry` does not increase over its predecessor.
    #[error("index entry {entry} is not monotonic")]
    NotMonotonic {
        /// Index of the entry.
        entry: usize,
    },
    /// Entry `entry` points past the end of the segment.
    #[error("index entry {entry} points past the end of the segment")]
    PastEnd {
        /// Index of the entry.
        entry: usize,
    },
}

/// One offset-index entry: the batch starting at `relative_offset` begins at `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetIndexEntry {
    /// Batch base offset minus the segment base offset.
    pub relative_offset: u32,
    /// Byte position of the batch in the segment file.
    pub position: u32,
}

/// The offset index of one segment: one entry per batch, strictly increasing in both fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<OffsetIndexEntry>,
}

impl OffsetIndex {
    /// An empty index.
    pub fn new() -> OffsetIndex {
        OffsetIndex::default()
    }

    /// Appends an entry. Returns false (and appends nothing) if it does not increase.
    pub fn push(&mut self, entry: OffsetIndexEntry) -> bool {
        if let Some(last) = self.entries.last() {
            if entry.relative_offset <= last.relative_offset || entry.position <= last.position {
                return false;
            }
        }
        self.entries.push(entry);
        true
    }

    /// Index (into [`entries`](Self::entries)) of the last entry whose relative offset is
    /// `<= relative_offset`: the batch that contains the offset, when batches are contiguous.
    pub fn lookup(&self, relative_offset: u32) -> Option<usize> {
        self.entries
            .partition_point(|entry| entry.relative_offset <= relative_offset)
            .checked_sub(1)
    }

    /// Index of the batch that contains byte `position` (last entry with position <= it).
    pub fn lookup_position(&self, position: u32) -> Option<usize> {
        self.entries
            .partition_point(|entry| entry.position <= position)
            .checked_sub(1)
    }

    /// All entries.
    pub fn entries(&self) -> &[OffsetIndexEntry] {
        &self.entries
    }

    /// The entry at `index`.
    pub fn get(&self, index: usize) -> Option<OffsetIndexEntry> {
        self.entries.get(index).copied()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops entries from `index` on.
    pub fn truncate(&mut self, index: usize) {
        self.entries.truncate(index);
    }

    /// Bytes used in memory by the entries.
    pub fn memory_bytes(&self) -> usize {
        self.entries.len() * std::mem::size_of::<OffsetIndexEntry>()
    }

    /// The file encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_INDEX_ENTRY_LEN);
        for entry in &self.entries {
            out.extend_from_slice(&entry.relative_offset.to_be_bytes());
            out.extend_from_slice(&entry.position.to_be_bytes());
        }
        out
    }

    /// Decodes and checks a file: size a multiple of 8, strictly increasing entries, every
    /// position below `segment_len`.
    pub fn decode(bytes: &[u8], segment_len: u64) -> Result<OffsetIndex, IndexError> {
        if !bytes.len().is_multiple_of(OFFSET_INDEX_ENTRY_LEN) {
            return Err(IndexError::WrongSize {
                len: bytes.len(),
                entry_len: OFFSET_INDEX_ENTRY_LEN,
            });
        }
        let mut index = OffsetIndex::new();
        for (number, chunk) in bytes.chunks_exact(OFFSET_INDEX_ENTRY_LEN).enumerate() {
            let entry = OffsetIndexEntry {
                relative_offset: u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                position: u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
            };
            if u64::from(entry.position) >= segment_len {
                return Err(IndexError::PastEnd { entry: number });
            }
            if !index.push(entry) {
                return Err(IndexError::NotMonotonic { entry: number });
            }
        }
        Ok(index)
    }
}

/// One time-index entry: batches up to and including the one at `relative_offset` have
/// timestamps `<= timestamp`, and `timestamp` is their maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeIndexEntry {
    /// Largest batch max timestamp so far in the segment.
    pub timestamp: TimestampMs,
    /// Relative base offset of the batch where the entry was taken.
    pub relative_offset: u32,
}

/// The sparse time index of one segment: strictly increasing timestamps and offsets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<TimeIndexEntry>,
}

impl TimeIndex {
    /// An empty index.
    pub fn new() -> TimeIndex {
        TimeIndex::default()
    }

    /// Appends an entry if both fields increase; returns whether it was appended.
    pub fn push(&mut self, entry: TimeIndexEntry) -> bool {
        if let Some(last) = self.entries.last() {
            if entry.timestamp <= last.timestamp || entry.relative_offset <= last.relative_offset {
                return false;
            }
        }
        self.entries.push(entry);
        true
    }

    /// The last entry whose timestamp is `< target`: every batch up to its offset is older than
    /// `target`, so a search for the first batch with max timestamp `>= target` can start there.
    pub fn lookup_before(&self, target: TimestampMs) -> Option<TimeIndexEntry> {
        let count = self
            .entries
            .partition_point(|entry| entry.timestamp < target);
        count
            .checked_sub(1)
            .and_then(|index| self.entries.get(index).copied())
    }

    /// All entries.
    pub fn entries(&self) -> &[TimeIndexEntry] {
        &self.entries
    }

    /// The last entry.
    pub fn last(&self) -> Option<TimeIndexEntry> {
        self.entries.last().copied()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops every entry at or after `relative_offset`.
    pub fn truncate_from_offset(&mut self, relative_offset: u32) {
        let keep = self
            .entries
            .partition_point(|entry| entry.relative_offset < relative_offset);
        self.entries.truncate(keep);
    }

    /// The file encoding, with `last` appended when it increases both fields (the segment's
    /// final max timestamp, written when a segment is sealed or closed; see FORMAT.md).
    pub fn encode_with_final(&self, last: Option<TimeIndexEntry>) -> Vec<u8> {
        let mut copy = self.clone();
        if let Some(last) = last {
            copy.push(last);
        }
        let mut out = Vec::with_capacity(copy.entries.len() * TIME_INDEX_ENTRY_LEN);
        for entry in &copy.entries {
            out.extend_from_slice(&entry.timestamp.0.to_be_bytes());
            out.extend_from_slice(&entry.relative_offset.to_be_bytes());
        }
        out
    }

    /// Decodes and checks a file: size a multiple of 12, strictly increasing entries, every
    /// relative offset below `relative_end` (the segment's next offset minus its base).
    pub fn decode(bytes: &[u8], relative_end: u64) -> Result<TimeIndex, IndexError> {
        if !bytes.len().is_multiple_of(TIME_INDEX_ENTRY_LEN) {
            return Err(IndexError::WrongSize {
                len: bytes.len(),
                entry_len: TIME_INDEX_ENTRY_LEN,
            });
        }
        let mut index = TimeIndex::new();
        for (number, chunk) in bytes.chunks_exact(TIME_INDEX_ENTRY_LEN).enumerate() {
            let mut timestamp = [0u8; 8];
            timestamp.copy_from_slice(&chunk[..8]);
            let entry = TimeIndexEntry {
                timestamp: TimestampMs(i64::from_be_bytes(timestamp)),
                relative_offset: u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]),
            };
            if u64::from(entry.relative_offset) >= relative_end {
                return Err(IndexError::PastEnd { entry: number });
            }
            if !index.push(entry) {
                return Err(IndexError::NotMonotonic { entry: number });
            }
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn entry(relative_offset: u32, position: u32) -> OffsetIndexEntry {
        OffsetIndexEntry {
            relative_offset,
            position,
        }
    }

    fn sample() -> OffsetIndex {
        let mut index = OffsetIndex::new();
        assert!(index.push(entry(0, 0)));
        assert!(index.push(entry(5, 100)));
        assert!(index.push(entry(6, 180)));
        assert!(index.push(entry(20, 400)));
        index
    }

    #[test]
    fn offset_lookup_finds_containing_batch() {
        let index = sample();
        assert_eq!(index.lookup(0), Some(0));
        assert_eq!(index.lookup(4), Some(0));
        assert_eq!(index.lookup(5), Some(1));
        assert_eq!(index.lookup(19), Some(2));
        assert_eq!(index.lookup(1_000), Some(3));
        assert_eq!(OffsetIndex::new().lookup(3), None);
        assert_eq!(index.lookup_position(99), Some(0));
        assert_eq!(index.lookup_position(100), Some(1));
        assert_eq!(index.lookup_position(500), Some(3));
    }

    #[test]
    fn offset_index_rejects_non_monotonic() {
        let mut index = sample();
        assert!(!index.push(entry(20, 500)));
        assert!(!index.push(entry(21, 400)));
        assert_eq!(index.len(), 4);
    }

    #[test]
    fn offset_index_round_trip() {
        let index = sample();
        let bytes = index.encode();
        assert_eq!(bytes.len(), 32);
        assert_eq!(OffsetIndex::decode(&bytes, 1_000).unwrap(), index);
    }

    #[test]
    fn offset_index_damage_is_detected() {
        let bytes = sample().encode();
        assert!(matches!(
            OffsetIndex::decode(&bytes[..31], 1_000),
            Err(IndexError::WrongSize { .. })
        ));
        assert_eq!(
            OffsetIndex::decode(&bytes, 400),
            Err(IndexError::PastEnd { entry: 3 })
        );
        let mut swapped = bytes.clone();
        swapped[8..16].copy_from_slice(&bytes[16..24]);
        swapped[16..24].copy_from_slice(&bytes[8..16]);
        assert_eq!(
            OffsetIndex::decode(&swapped, 1_000),
            Err(IndexError::NotMonotonic { entry: 2 })
        );
    }

    #[test]
    fn time_index_lookup_and_round_trip() {
        let mut index = TimeIndex::new();
        for (timestamp, offset) in [(100, 0), (200, 10), (300, 20)] {
            assert!(index.push(TimeIndexEntry {
                timestamp: TimestampMs(timestamp),
                relative_offset: offset,
            }));
        }
        assert!(!index.push(TimeIndexEntry {
            timestamp: TimestampMs(300),
            relative_offset: 30
        }));
        assert_eq!(index.lookup_before(TimestampMs(100)), None);
        assert_eq!(
            index
                .lookup_before(TimestampMs(101))
                .unwrap()
                .relative_offset,
            0
        );
        assert_eq!(
            index
                .lookup_before(TimestampMs(300))
                .unwrap()
                .relative_offset,
            10
        );
        assert_eq!(
            index
                .lookup_before(TimestampMs(9_999))
                .unwrap()
                .relative_offset,
            20
        );

        let final_entry = TimeIndexEntry {
            timestamp: TimestampMs(400),
            relative_offset: 25,
        };
        let bytes = index.encode_with_final(Some(final_entry));
        assert_eq!(bytes.len(), 48);
        let decoded = TimeIndex::decode(&bytes, 26).unwrap();
        assert_eq!(decoded.last(), Some(final_entry));
        assert_eq!(
            TimeIndex::decode(&bytes, 25),
            Err(IndexError::PastEnd { entry: 3 })
        );

        index.truncate_from_offset(10);
        assert_eq!(index.len(), 1);
    }
}
