//! One segment: `<base>.log` plus its in-memory indexes, and the write-progress fields the
//! background writer maintains. Also [`SegmentFile`], the read handle handed to fetches.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::{
    backend::{align_up, Backend, FileHandle, OpenMode, ReadBuf},
    error::LogError,
    index::{OffsetIndex, OffsetIndexEntry, TimeIndex, TimeIndexEntry},
    read_ahead::{count, ReadAhead, READ_AHEAD_BLOCK_BYTES, READ_AHEAD_MIN_BYTES},
    types::{Offset, TimestampMs},
};

/// Suffix of segment data files.
pub const LOG_SUFFIX: &str = "log";
/// Suffix of offset index files.
pub const INDEX_SUFFIX: &str = "index";
/// Suffix of time index files.
pub const TIME_INDEX_SUFFIX: &str = "timeindex";

/// `<20-digit zero-padded base offset>.<suffix>`, as Kafka names segment files.
pub fn segment_file_name(base_offset: Offset, suffix: &str) -> String {
    format!("{:020}.{suffix}", base_offset.0)
}

/// Parses a segment file name into its base offset and suffix.
pub fn parse_segment_file_name(path: &Path) -> Option<(Offset, &str)> {
    let name = path.file_name()?.to_str()?;
    let (stem, suffix) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let base = stem.parse::<i64>().ok()?;
    match suffix {
        LOG_SUFFIX | INDEX_SUFFIX | TIME_INDEX_SUFFIX => Some((Offset(base), suffix)),
        _ => None,
    }
}

/// Paths of a segment's three files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentPaths {
    pub(crate) log: PathBuf,
    pub(crate) index: PathBuf,
    pub(crate) time_index: PathBuf,
}

impl SegmentPaths {
    pub(crate) fn new(dir: &Path, base_offset: Offset) -> SegmentPaths {
        SegmentPaths {
            log: dir.join(segment_file_name(base_offset, LOG_SUFFIX)),
            index: dir.join(segment_file_name(base_offset, INDEX_SUFFIX)),
            time_index: dir.join(segment_file_name(base_offset, TIME_INDEX_SUFFIX)),
        }
    }
}

/// Where a segment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The last segment: appends go here.
    Active,
    /// A later segment exists; the writer still has to finish and seal this one.
    Rolled,
    /// Fully written, truncated to its logical length, synced, indexes written.
    Sealed,
}

/// One segment of a partition log. Owned by the log's shard.
pub(crate) struct Segment {
    /// Unique within the log, increasing in log order (tail entries refer to it).
    pub(crate) id: u64,
    pub(crate) base_offset: Offset,
    /// Offset after the last batch.
    pub(crate) next_offset: Offset,
    /// Logical length in bytes (everything appended, written or not).
    pub(crate) len: u64,
    /// One entry per batch.
    pub(crate) index: OffsetIndex,
    pub(crate) time_index: TimeIndex,
    /// Bytes appended since the last time-index entry.
    pub(crate) bytes_since_time_entry: u64,
    /// Largest batch max timestamp (NONE if empty). After `truncate_to` it may overestimate.
    pub(crate) max_timestamp: TimestampMs,
    /// When the first append into this segment happened in this process (for `segment.ms`).
    pub(crate) roll_started_at: Option<TimestampMs>,
    /// Opened by the writer when it first writes the segment (or by recovery).
    pub(crate) file: Option<FileHandle>,
    /// Bytes copied into issued writes.
    pub(crate) staged: u64,
    /// Bytes whose writes completed.
    pub(crate) written: u64,
    /// Read-ahead for consumers reading this segment sequentially from disk.
    pub(crate) read_ahead: Rc<ReadAhead>,
    /// File length the writer has asked the file system to allocate (fallocate) ahead of the
    /// writes, so that appends overwrite allocated blocks instead of extending the file: an
    /// extending O_DIRECT write cannot be issued without blocking and io_uring hands it to a
    /// worker thread. Sealing and closing truncate back to `len`; recovery cuts the zeros.
    pub(crate) allocated: u64,
    pub(crate) phase: Phase,
    pub(crate) paths: SegmentPaths,
    /// Relative last offset of every batch, kept only for segments with offset gaps (those
    /// rewritten by log compaction): there the next batch's base offset no longer tells where
    /// a batch ends. `None` for contiguous segments.
    pub(crate) batch_last_offsets: Option<Vec<u32>>,
}

impl Segment {
    pub(crate) fn new(id: u64, dir: &Path, base_offset: Offset) -> Segment {
        Segment {
            id,
            base_offset,
            next_offset: base_offset,
            len: 0,
            index: OffsetIndex::new(),
            time_index: TimeIndex::new(),
            bytes_since_time_entry: 0,
            max_timestamp: TimestampMs::NONE,
            roll_started_at: None,
            file: None,
            staged: 0,
            written: 0,
            read_ahead: Rc::new(ReadAhead::default()),
            allocated: 0,
            phase: Phase::Active,
            paths: SegmentPaths::new(dir, base_offset),
            batch_last_offsets: None,
        }
    }

    /// Records one batch in the indexes (shared by append and recovery so both build the same
    /// indexes). Returns false if the entry does not fit (not monotonic or out of u32 range).
    pub(crate) fn record_batch(
        &mut self,
        base_offset: Offset,
        position: u64,
        length: u64,
        max_timestamp: TimestampMs,
        index_interval_bytes: u32,
    ) -> bool {
        let Some(relative_offset) = self.relative(base_offset) else {
            return false;
        };
        let Ok(position32) = u32::try_from(position) else {
            return false;
        };
        if !self.index.push(OffsetIndexEntry {
            relative_offset,
            position: position32,
        }) {
            return false;
        }
        self.bytes_since_time_entry = self.bytes_since_time_entry.saturating_add(length);
        if max_timestamp > self.max_timestamp {
            self.max_timestamp = max_timestamp;
        }
        let grew = match self.time_index.last() {
            Some(last) => self.max_timestamp > last.timestamp,
            None => true,
        };
        if grew
            && self.max_timestamp >= TimestampMs(0)
            && self.bytes_since_time_entry >= u64::from(index_interval_bytes)
            && self.time_index.push(TimeIndexEntry {
                timestamp: self.max_timestamp,
                relative_offset,
            })
        {
            self.bytes_since_time_entry = 0;
        }
        true
    }

    /// The entry appended to the time-index file when the segment is sealed or closed: the
    /// segment's max timestamp at its last batch.
    pub(crate) fn final_time_entry(&self) -> Option<TimeIndexEntry> {
        let last = self.index.entries().last()?;
        (self.max_timestamp >= TimestampMs(0)).then_some(TimeIndexEntry {
            timestamp: self.max_timestamp,
            relative_offset: last.relative_offset,
        })
    }

    /// A segment found on disk at open: every byte of it is written, and it is sealed until
    /// the open makes the last one active.
    pub(crate) fn seal_as_found(&mut self, file: FileHandle) {
        self.file = Some(file);
        self.staged = self.len;
        self.written = self.len;
        self.allocated = self.len;
        self.phase = Phase::Sealed;
    }

    /// `offset - base_offset` as u32.
    pub(crate) fn relative(&self, offset: Offset) -> Option<u32> {
        offset
            .0
            .checked_sub(self.base_offset.0)
            .and_then(|relative| u32::try_from(relative).ok())
    }

    /// Batch `batch`'s (base offset, next offset, start position, end position).
    pub(crate) fn batch_bounds(&self, batch: usize) -> Option<(Offset, Offset, u64, u64)> {
        let entry = self.index.get(batch)?;
        let (next_offset, end) = match self.index.get(batch + 1) {
            Some(next) => (
                Offset(self.base_offset.0 + i64::from(next.relative_offset)),
                u64::from(next.position),
            ),
            None => (self.next_offset, self.len),
        };
        Some((
            Offset(self.base_offset.0 + i64::from(entry.relative_offset)),
            next_offset,
            u64::from(entry.position),
            end,
        ))
    }

    /// Index of the batch that contains `offset` (None if outside the segment).
    pub(crate) fn batch_containing(&self, offset: Offset) -> Option<usize> {
        if offset < self.base_offset || offset >= self.next_offset {
            return None;
        }
        self.index.lookup(self.relative(offset)?)
    }

    /// Index of the first batch that holds `offset` or, when `offset` falls in a gap left by
    /// log compaction, the first batch after it. None if no batch of this segment reaches
    /// `offset` (the segment is empty or the gap runs to its end).
    pub(crate) fn batch_at_or_after(&self, offset: Offset) -> Option<usize> {
        if offset >= self.next_offset || self.index.is_empty() {
            return None;
        }
        if offset < self.base_offset {
            return Some(0);
        }
        let relative = self.relative(offset)?;
        let Some(batch) = self.index.lookup(relative) else {
            // Before the first remaining batch (compaction removed the segment's first ones).
            return Some(0);
        };
        match &self.batch_last_offsets {
            Some(lasts) if lasts.get(batch).is_some_and(|last| *last < relative) => {
                (batch + 1 < self.index.len()).then_some(batch + 1)
            }
            _ => Some(batch),
        }
    }

    /// The first offset not fully covered by the first `written` bytes.
    pub(crate) fn offset_through(&self, written: u64) -> Offset {
        if written >= self.len {
            return self.next_offset;
        }
        match u32::try_from(written)
            .ok()
            .and_then(|position| self.index.lookup_position(position))
            .and_then(|batch| self.index.get(batch))
        {
            Some(entry) => Offset(self.base_offset.0 + i64::from(entry.relative_offset)),
            None => self.base_offset,
        }
    }

    /// Encoded `.index` and `.timeindex` contents.
    pub(crate) fn encoded_indexes(&self) -> (Vec<u8>, Vec<u8>) {
        (
            self.index.encode(),
            self.time_index.encode_with_final(self.final_time_entry()),
        )
    }
}

/// A handle to a segment's data file, for reading ranges the engine handed out in
/// [`crate::Chunk::File`]. Cheap to clone; keeps the file open even if the segment is deleted.
#[derive(Clone)]
pub struct SegmentFile {
    file: FileHandle,
    sequential: Option<Sequential>,
}

/// What [`SegmentFile::read_sequential`] needs to read ahead.
#[derive(Clone)]
struct Sequential {
    read_ahead: Rc<ReadAhead>,
    /// Bytes of the segment written when the read was planned: read-ahead stops there.
    readable_end: u64,
    generation: u64,
}

impl SegmentFile {
    /// A file whose sequential reads may read ahead, up to `readable_end` (bytes whose writes
    /// completed; they no longer change).
    pub(crate) fn with_read_ahead(
        file: FileHandle,
        read_ahead: &Rc<ReadAhead>,
        readable_end: u64,
    ) -> SegmentFile {
        SegmentFile {
            file,
            sequential: Some(Sequential {
                generation: read_ahead.generation(),
                read_ahead: Rc::clone(read_ahead),
                readable_end,
            }),
        }
    }

    /// Like [`read_at`](Self::read_at), for a reader that will likely ask for the following
    /// bytes next (a consumer catching up): served from the read-ahead where it holds the
    /// range, from the disk for the rest, and followed by a read-ahead window of `length` plus
    /// one block, so a next read up to a block longer is still covered (see `read_ahead`).
    /// The bytes come as one or more buffers, in order.
    pub async fn read_sequential(
        &self,
        position: u64,
        length: usize,
    ) -> Result<Vec<ReadBuf>, LogError> {
        let Some(sequential) = &self.sequential else {
            return Ok(vec![self.read_at(position, length).await?]);
        };
        let ahead = &sequential.read_ahead;
        let end = position.saturating_add(length as u64);
        let taken = ahead
            .take(&self.file, sequential.generation, position, length)
            .await;
        let hit_bytes = (taken.covered_end - position) as usize;
        // Queue what the reader will want next before waiting for the disk.
        if length >= READ_AHEAD_MIN_BYTES && end < sequential.readable_end {
            ahead.extend(
                &self.file,
                sequential.generation,
                end,
                length.saturating_add(READ_AHEAD_BLOCK_BYTES),
                sequential.readable_end,
            );
        }
        let mut pieces = taken.pieces;
        let missing = (end - taken.covered_end) as usize;
        if missing > 0 {
            pieces.push(self.read_at(taken.covered_end, missing).await?);
        }
        count(hit_bytes, missing);
        Ok(pieces)
    }

    /// Reads exactly `length` bytes at `position` (unaligned is fine; the backend aligns
    /// internally). The buffer derefs to the requested bytes, with no extra copy.
    pub async fn read_at(&self, position: u64, length: usize) -> Result<ReadBuf, LogError> {
        let buffer = self
            .file
            .read_at(position, length)
            .await
            .map_err(|error| LogError::io("read", self.file.path(), error))?;
        if buffer.len() != length {
            return Err(LogError::ShortRead {
                path: self.file.path().to_path_buf(),
                position,
                expected: length,
                actual: buffer.len(),
            });
        }
        Ok(buffer)
    }

    /// The segment file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

impl std::fmt::Debug for SegmentFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentFile")
            .field("path", &self.file.path())
            .field("read_ahead", &self.sequential.is_some())
            .finish()
    }
}

/// Writes `bytes` as the whole content of `path` (created or truncated) and fdatasyncs it.
pub(crate) async fn write_whole_file<B: Backend>(
    backend: &B,
    path: &Path,
    bytes: &[u8],
) -> Result<(), LogError> {
    let file = backend
        .open(path, OpenMode::CreateTruncate)
        .await
        .map_err(|error| LogError::io("create", path, error))?;
    if !bytes.is_empty() {
        let padded = align_up(bytes.len() as u64) as usize;
        let mut buffer = backend.alloc_buffer(padded);
        let target = buffer.as_bytes_mut();
        target[..bytes.len()].copy_from_slice(bytes);
        target[bytes.len()..].fill(0);
        let written = file
            .write_at(buffer, 0)
            .await
            .map_err(|error| LogError::io("write", path, error))?;
        if written != padded {
            return Err(LogError::io(
                "write",
                path,
                std::io::Error::new(std::io::ErrorKind::WriteZero, "short write"),
            ));
        }
        file.set_len(bytes.len() as u64)
            .await
            .map_err(|error| LogError::io("truncate", path, error))?;
    }
    file.fdatasync()
        .await
        .map_err(|error| LogError::io("fdatasync", path, error))?;
    Ok(())
}

/// Reads a whole file; None if it does not exist.
pub(crate) async fn read_whole_file<B: Backend>(
    backend: &B,
    path: &Path,
) -> Result<Option<ReadBuf>, LogError> {
    let file = match backend.open(path, OpenMode::Existing).await {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(LogError::io("open", path, error)),
    };
    let size = file
        .size()
        .await
        .map_err(|error| LogError::io("stat", path, error))?;
    let size = usize::try_from(size).map_err(|_| LogError::Invariant("file too large"))?;
    let buffer = file
        .read_at(0, size)
        .await
        .map_err(|error| LogError::io("read", path, error))?;
    Ok(Some(buffer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        let name = segment_file_name(Offset(1234), LOG_SUFFIX);
        assert_eq!(name, "00000000000000001234.log");
        assert_eq!(
            parse_segment_file_name(Path::new(&name)),
            Some((Offset(1234), LOG_SUFFIX))
        );
        assert_eq!(
            parse_segment_file_name(Path::new("00000000000000001234.timeindex")),
            Some((Offset(1234), TIME_INDEX_SUFFIX))
        );
        assert_eq!(parse_segment_file_name(Path::new("1234.log")), None);
        assert_eq!(
            parse_segment_file_name(Path::new("00000000000000001234.log.deleted")),
            None
        );
        assert_eq!(
            parse_segment_file_name(Path::new("0000000000000000123x.log")),
            None
        );
    }

    #[test]
    fn batches_are_indexed() {
        let mut segment = Segment::new(0, Path::new("/tmp"), Offset(100));
        assert!(segment.record_batch(Offset(100), 0, 500, TimestampMs(10), 0));
        assert!(segment.record_batch(Offset(103), 500, 300, TimestampMs(5), 0));
        assert!(segment.record_batch(Offset(104), 800, 200, TimestampMs(20), 0));
        segment.len = 1_000;
        segment.next_offset = Offset(110);
        assert_eq!(segment.batch_containing(Offset(102)), Some(0));
        assert_eq!(segment.batch_containing(Offset(103)), Some(1));
        assert_eq!(segment.batch_containing(Offset(109)), Some(2));
        assert_eq!(segment.batch_containing(Offset(110)), None);
        assert_eq!(
            segment.batch_bounds(1),
            Some((Offset(103), Offset(104), 500, 800))
        );
        assert_eq!(
            segment.batch_bounds(2),
            Some((Offset(104), Offset(110), 800, 1_000))
        );
        assert_eq!(segment.offset_through(0), Offset(100));
        assert_eq!(segment.offset_through(499), Offset(100));
        assert_eq!(segment.offset_through(500), Offset(103));
        assert_eq!(segment.offset_through(1_000), Offset(110));
        // Timestamps 10, 5, 20: entries only when the max grows.
        assert_eq!(segment.time_index.len(), 2);
        assert_eq!(segment.max_timestamp, TimestampMs(20));
        assert!(!segment.record_batch(Offset(104), 900, 10, TimestampMs(1), 0));
    }
}
