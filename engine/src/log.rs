//! [`PartitionLog`]: the public handle to one partition log, its in-memory state (segments,
//! hot tail, offsets), the synchronous append and read paths, and the async operations that
//! hand file work to the background writer (see `writer.rs`).
//!
//! Ownership: a log and everything in it is owned by one shard (glommio executor); handles are
//! `Rc` clones. No `RefCell` borrow is ever held across an `.await`.

use std::{
    cell::RefCell,
    collections::VecDeque,
    path::{Path, PathBuf},
    rc::Rc,
    time::Instant,
};

use bytes::{Bytes, BytesMut};

use crate::{
    backend::{Backend, DirectBackend},
    batch::{
        assign_offsets, record_positions, validate_batches, BatchHeader, BatchSummary, Compression,
        ATTR_LOG_APPEND_TIME, BATCH_HEADER_LEN, CRC_RANGE_START,
    },
    clean_shutdown::{CleanShutdown, CLEAN_SHUTDOWN_FILE},
    config::{LogConfig, TimestampType},
    epoch::EpochCache,
    error::{AppendError, LogError, PoisonCause, ReadError},
    recovery::{recover, RecoveryReport},
    segment::{write_whole_file, Phase, Segment, SegmentFile},
    signal::Signal,
    types::{LeaderEpoch, Offset, TimestampMs},
    writer::{run_writer, Command, WriterState, WriterStats},
};

/// Result of a successful append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: Offset,
    /// Offset of the last record appended.
    pub last_offset: Offset,
    /// Records appended (sum over batches).
    pub record_count: u32,
    /// Batches appended.
    pub batch_count: u32,
    /// Bytes appended.
    pub bytes: usize,
    /// The append time when the log uses LogAppendTime.
    pub log_append_time: Option<TimestampMs>,
    /// Largest batch max timestamp of the append (the append time with LogAppendTime).
    pub max_timestamp: TimestampMs,
}

/// Result of a read.
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// In offset order. Concatenated, they are whole batches. A `File` chunk starts and ends
    /// at batch boundaries; a `Memory` chunk may hold part of a batch (the hot tail keeps a
    /// batch's patched header apart from the producer's bytes of its records), so a consumer
    /// that parses batches uses [`load_contiguous`](Self::load_contiguous).
    pub chunks: Vec<Chunk>,
    /// Sum of the chunk lengths.
    pub total_bytes: usize,
    /// High watermark at the time of the read.
    pub high_watermark: Offset,
    /// Log start offset at the time of the read.
    pub log_start_offset: Offset,
    /// Log end offset at the time of the read.
    pub log_end_offset: Offset,
}

/// A run of log bytes: whole batches (`File`), or a piece of the hot tail (`Memory`).
#[derive(Debug, Clone)]
pub enum Chunk {
    /// Hot tail, in memory: write straight to the socket. May start or end inside a batch;
    /// the chunks of one read, concatenated, are whole batches.
    Memory(Bytes),
    /// On disk: read with `file.read_at(position, length)` (O_DIRECT into an aligned buffer).
    File {
        /// The segment's data file.
        file: SegmentFile,
        /// Byte position in the file.
        position: u64,
        /// Length in bytes.
        length: u64,
    },
}

impl Chunk {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Chunk::Memory(bytes) => bytes.len(),
            Chunk::File { length, .. } => *length as usize,
        }
    }

    /// True if the chunk is empty (never returned by `read`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The chunk's bytes: a clone for memory chunks, a read for file chunks.
    pub async fn load(&self) -> Result<Bytes, LogError> {
        self.load_with(false).await
    }

    /// Like [`load`](Self::load), for a consumer reading on from here: file chunks are read
    /// with [`SegmentFile::read_sequential`] (served from and followed by read-ahead).
    pub async fn load_sequential(&self) -> Result<Bytes, LogError> {
        self.load_with(true).await
    }

    async fn load_with(&self, sequential: bool) -> Result<Bytes, LogError> {
        match self {
            Chunk::Memory(bytes) => Ok(bytes.clone()),
            Chunk::File {
                file,
                position,
                length,
            } => {
                let length =
                    usize::try_from(*length).map_err(|_| LogError::Invariant("chunk length"))?;
                if !sequential {
                    return Ok(Bytes::copy_from_slice(
                        &file.read_at(*position, length).await?,
                    ));
                }
                let pieces = file.read_sequential(*position, length).await?;
                let mut bytes = bytes::BytesMut::with_capacity(length);
                for piece in &pieces {
                    bytes.extend_from_slice(piece);
                }
                Ok(bytes.freeze())
            }
        }
    }
}

impl ReadResult {
    /// The chunks as buffers of whole batches, for consumers that parse batches (the fetch
    /// path sends the chunks as they are instead): each file chunk is read, and each run of
    /// consecutive memory chunks becomes one buffer, joined by a copy when it has more than
    /// one part.
    pub async fn load_contiguous(&self) -> Result<Vec<Bytes>, LogError> {
        let mut buffers = Vec::new();
        let mut run: Vec<&Bytes> = Vec::new();
        for chunk in &self.chunks {
            match chunk {
                Chunk::Memory(bytes) => run.push(bytes),
                Chunk::File { .. } => {
                    if let Some(joined) = join_parts(&run) {
                        buffers.push(joined);
                    }
                    run.clear();
                    buffers.push(chunk.load().await?);
                }
            }
        }
        if let Some(joined) = join_parts(&run) {
            buffers.push(joined);
        }
        Ok(buffers)
    }
}

/// One buffer with the bytes of `parts`: the part itself when there is one, else a copy.
fn join_parts(parts: &[&Bytes]) -> Option<Bytes> {
    match parts {
        [] => None,
        [single] => Some((*single).clone()),
        _ => {
            let len = parts.iter().map(|part| part.len()).sum();
            let mut joined = BytesMut::with_capacity(len);
            for part in parts {
                joined.extend_from_slice(part);
            }
            Some(joined.freeze())
        }
    }
}

/// One append's bytes kept in memory (the hot tail). Entries form a suffix of the log.
pub(crate) struct TailEntry {
    pub(crate) segment_id: u64,
    pub(crate) position: u64,
    pub(crate) next_offset: Offset,
    pub(crate) bytes: TailBytes,
}

/// Batches of at most this many bytes are copied whole, with their patched header, when an
/// append's request buffer is shared; larger batches keep their records in the request buffer
/// and only the 61-byte header is copied. Below this size a separate part costs more (one more
/// `Bytes`, chunk and iovec on every read and write of it) than copying the records does, and
/// it bounds the number of parts per byte of log.
pub(crate) const INLINE_BATCH_BYTES_MAX: usize = 1024;

/// Longest time a hot-tail entry keeps records in the producer's request buffer. The buffer
/// holds the whole request (other partitions' batches too), so an entry that stays long in the
/// tail of a quiet partition would pin far more memory than the entry's own bytes. After this
/// long the entry's bytes are copied into a buffer of their own (data that old is off the hot
/// path: on a busy partition the tail budget evicts it sooner), which bounds pinned request
/// memory by what the shard receives in this time.
pub(crate) const TAIL_BORROW_MS_MAX: u64 = 200;

/// One append's bytes in the hot tail, as consecutive parts: concatenated, the parts are the
/// appended batches exactly as the log stores them. When the producer's request buffer is
/// shared, each batch above [`INLINE_BATCH_BYTES_MAX`] is two parts: its patched header
/// (a slice of one buffer holding every patched header of the append) and its records, a
/// slice of the request buffer. Smaller batches are copied whole into that buffer.
#[derive(Debug, Clone, Default)]
pub(crate) struct TailBytes {
    /// Each part with its start within the entry; starts increase, parts are never empty.
    parts: Vec<(usize, Bytes)>,
    len: usize,
}

impl From<Bytes> for TailBytes {
    fn from(bytes: Bytes) -> Self {
        let mut tail = TailBytes::default();
        tail.push(bytes);
        tail
    }
}

impl TailBytes {
    fn with_capacity(parts: usize) -> Self {
        TailBytes {
            parts: Vec::with_capacity(parts),
            len: 0,
        }
    }

    /// Appends a part (empty ones are skipped).
    fn push(&mut self, part: Bytes) {
        if part.is_empty() {
            return;
        }
        let start = self.len;
        self.len += part.len();
        self.parts.push((start, part));
    }

    /// Total bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Number of parts.
    #[cfg(test)]
    pub(crate) fn part_count(&self) -> usize {
        self.parts.len()
    }

    /// Index of the part holding byte `at` (`at < len`).
    fn part_index(&self, at: usize) -> usize {
        self.parts
            .partition_point(|(start, _)| *start <= at)
            .saturating_sub(1)
    }

    /// Bytes `[from, to)` (clamped to the length) as slices of the parts, in order, without
    /// copying.
    pub(crate) fn slices(&self, from: usize, to: usize) -> impl Iterator<Item = Bytes> + '_ {
        let to = to.min(self.len);
        let first = if from < to {
            self.part_index(from)
        } else {
            self.parts.len()
        };
        self.parts
            .iter()
            .skip(first)
            .take_while(move |(start, _)| *start < to)
            .map(move |(start, part)| {
                let begin = from.saturating_sub(*start);
                let end = (to - *start).min(part.len());
                part.slice(begin..end)
            })
    }

    /// Copies bytes `[from, from + target.len())` into `target`. False if they are not all
    /// here.
    pub(crate) fn copy_to(&self, from: usize, target: &mut [u8]) -> bool {
        let Some(to) = from.checked_add(target.len()) else {
            return false;
        };
        if to > self.len {
            return false;
        }
        let mut copied = 0;
        for slice in self.slices(from, to) {
            target[copied..copied + slice.len()].copy_from_slice(&slice);
            copied += slice.len();
        }
        copied == target.len()
    }

    /// True if some part is a slice of a request buffer (more than one part).
    fn borrows(&self) -> bool {
        self.parts.len() > 1
    }

    /// The same bytes in one buffer of their own.
    fn copied(&self) -> TailBytes {
        let mut joined = BytesMut::with_capacity(self.len);
        for (_, part) in &self.parts {
            joined.extend_from_slice(part);
        }
        TailBytes::from(joined.freeze())
    }

    /// Keeps the first `len` bytes.
    pub(crate) fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        let keep = if len == 0 {
            0
        } else {
            self.part_index(len - 1) + 1
        };
        self.parts.truncate(keep);
        if let Some((start, last)) = self.parts.last_mut() {
            last.truncate(len - *start);
        }
        self.len = len;
    }
}

/// Patches one batch's header (in `header`, at least [`BATCH_HEADER_LEN`] bytes) for storage:
/// base offset, partition leader epoch and, under LogAppendTime, max timestamp, timestamp
/// type and the CRC, which is computed over the header's CRC'd part and then `records` (the
/// batch's bytes after the header) without joining them. None if `header` is too short.
fn patch_header(
    header: &mut [u8],
    records: &[u8],
    base_offset: Offset,
    leader_epoch: LeaderEpoch,
    log_append_time: Option<TimestampMs>,
) -> Option<()> {
    let parsed = BatchHeader::parse_mut(header)?;
    parsed.set_base_offset(base_offset.0);
    parsed.set_partition_leader_epoch(leader_epoch.0);
    if let Some(now) = log_append_time {
        parsed.set_max_timestamp(now.0);
        parsed.set_attributes(parsed.attributes() | ATTR_LOG_APPEND_TIME);
        let crc = crc32c::crc32c(header.get(CRC_RANGE_START..BATCH_HEADER_LEN)?);
        let crc = crc32c::crc32c_append(crc, records);
        BatchHeader::parse_mut(header)?.set_crc(crc);
    }
    Some(())
}

/// The hot-tail parts of validated batches `summaries` of a shared request buffer `records`,
/// patched for storage from `first_offset` on (see [`TailBytes`]); and the offset after them.
/// The records of each large batch stay where they are; only headers and small batches are
/// copied, all into one buffer. None if a summary does not fit `records` or offsets overflow.
fn patch_shared(
    records: &Bytes,
    summaries: &[BatchSummary],
    first_offset: Offset,
    leader_epoch: LeaderEpoch,
    log_append_time: Option<TimestampMs>,
) -> Option<(TailBytes, Offset)> {
    let inline = |summary: &BatchSummary| summary.length <= INLINE_BATCH_BYTES_MAX;
    let copied_bytes: usize = summaries
        .iter()
        .map(|summary| {
            if inline(summary) {
                summary.length
            } else {
                BATCH_HEADER_LEN
            }
        })
        .sum();
    let large_batches = summaries.iter().filter(|summary| !inline(summary)).count();
    let mut patched = BytesMut::with_capacity(copied_bytes);
    let mut tail = TailBytes::with_capacity(2 * large_batches + 1);
    let mut next = first_offset;
    for summary in summaries {
        let end = summary.position.checked_add(summary.length)?;
        let batch = records.get(summary.position..end)?;
        let batch_records = batch.get(BATCH_HEADER_LEN..)?;
        let header_at = patched.len();
        if inline(summary) {
            patched.extend_from_slice(batch);
        } else {
            patched.extend_from_slice(batch.get(..BATCH_HEADER_LEN)?);
        }
        let header = patched.get_mut(header_at..header_at + BATCH_HEADER_LEN)?;
        patch_header(header, batch_records, next, leader_epoch, log_append_time)?;
        if !inline(summary) {
            // Everything patched so far, then this batch's records from the request buffer.
            // `split` keeps the rest of the allocation for the next headers.
            tail.push(patched.split().freeze());
            tail.push(records.slice(summary.position + BATCH_HEADER_LEN..end));
        }
        next = next.checked_add(i64::from(summary.last_offset_delta) + 1)?;
    }
    tail.push(patched.freeze());
    Some((tail, next))
}

impl TailEntry {
    pub(crate) fn end(&self) -> u64 {
        self.position + self.bytes.len() as u64
    }
}

/// The mutable state of a log, behind one `RefCell`.
pub(crate) struct State {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    /// Ordered by base offset (and id); never empty; the last one is Active.
    pub(crate) segments: VecDeque<Segment>,
    pub(crate) next_segment_id: u64,
    pub(crate) log_start_offset: Offset,
    pub(crate) high_watermark: Offset,
    pub(crate) log_end_offset: Offset,
    pub(crate) tail: VecDeque<TailEntry>,
    pub(crate) tail_bytes: usize,
    pub(crate) epochs: EpochCache,
    pub(crate) writer: WriterState,
    pub(crate) poison: Option<PoisonCause>,
    pub(crate) closing: bool,
    /// File work for the writer (truncate, delete, checkpoint), in order.
    pub(crate) commands: VecDeque<(u64, Command)>,
    pub(crate) command_seq_next: u64,
    pub(crate) command_seq_done: u64,
    /// Log compaction's checkpoint: everything below it was cleaned with a key map that
    /// covered it (in memory only; after a restart the whole log counts as dirty once).
    pub(crate) cleaned_through: Offset,
    /// Hot-tail entries that borrow request buffers, oldest first: when each was appended, and
    /// its (segment id, position). Hints only: an entry evicted or truncated since is skipped.
    /// At most one per entry appended in the last [`TAIL_BORROW_MS_MAX`] (older ones are
    /// released by [`State::release_borrowed_tail`]).
    pub(crate) tail_borrowed: VecDeque<(Instant, u64, u64)>,
}

pub(crate) struct Shared {
    pub(crate) state: RefCell<State>,
    /// Wakes the writer (new data, flush request, command, close).
    pub(crate) wake_writer: Rc<Signal>,
    /// Wakes flushers, closers and command waiters (writer progress).
    pub(crate) progress: Rc<Signal>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The writer holds only a Weak: wake it so it notices and exits.
        self.wake_writer.notify_all();
    }
}

/// Handle to one partition log. Cheap to clone (Rc inside); owned by one shard.
pub struct PartitionLog<B: Backend = DirectBackend> {
    pub(crate) shared: Rc<Shared>,
    pub(crate) backend: B,
}

impl<B: Backend> Clone for PartitionLog<B> {
    fn clone(&self) -> Self {
        PartitionLog {
            shared: self.shared.clone(),
            backend: self.backend.clone(),
        }
    }
}

impl<B: Backend> std::fmt::Debug for PartitionLog<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.state.borrow();
        f.debug_struct("PartitionLog")
            .field("dir", &state.dir)
            .field("log_start_offset", &state.log_start_offset)
            .field("high_watermark", &state.high_watermark)
            .field("log_end_offset", &state.log_end_offset)
            .field("segments", &state.segments.len())
            .finish()
    }
}

impl<B: Backend> PartitionLog<B> {
    /// Opens (creating if absent) the log in `dir`, running recovery (every batch of every
    /// segment is validated; see FORMAT.md). Spawns the log's background writer task on the
    /// current glommio executor.
    pub async fn open(
        backend: B,
        dir: impl Into<PathBuf>,
        config: LogConfig,
    ) -> Result<(Self, RecoveryReport), LogError> {
        Self::open_in_queue(backend, dir, config, None).await
    }

    /// Like [`open`](Self::open), running the background writer in task queue `queue` (None:
    /// the caller's current queue).
    pub async fn open_in_queue(
        backend: B,
        dir: impl Into<PathBuf>,
        config: LogConfig,
        queue: Option<glommio::TaskQueueHandle>,
    ) -> Result<(Self, RecoveryReport), LogError> {
        let dir = dir.into();
        let recovered = recover(&backend, &dir, &config).await?;
        let log_end_offset = recovered
            .segments
            .back()
            .map(|segment| segment.next_offset)
            .ok_or(LogError::Invariant("recovery returned no segment"))?;
        let next_segment_id = recovered.segments.len() as u64;
        let last_id = next_segment_id.saturating_sub(1);
        let state = State {
            dir: dir.clone(),
            config,
            segments: recovered.segments,
            next_segment_id,
            log_start_offset: recovered.log_start_offset,
            // Everything recovered was on disk: it is as safe to read as anything can be.
            // Replication lowers it through `set_high_watermark` if needed.
            high_watermark: log_end_offset,
            log_end_offset,
            tail: VecDeque::new(),
            tail_bytes: 0,
            epochs: recovered.epochs,
            writer: WriterState::new(log_end_offset, last_id, recovered.tail_page),
            poison: None,
            closing: false,
            commands: VecDeque::new(),
            command_seq_next: 1,
            command_seq_done: 0,
            cleaned_through: Offset(0),
            tail_borrowed: VecDeque::new(),
        };
        let shared = Rc::new(Shared {
            state: RefCell::new(state),
            wake_writer: Rc::new(Signal::new()),
            progress: Rc::new(Signal::new()),
        });
        let writer = run_writer(
            Rc::downgrade(&shared),
            backend.clone(),
            shared.wake_writer.clone(),
            shared.progress.clone(),
        );
        // The writer stops by itself on close, poison, or when the last handle is dropped.
        let _detached = match queue {
            Some(queue) => glommio::spawn_local_into(writer, queue)
                .map_err(|error| LogError::io("spawn writer", &dir, error.into()))?
                .detach(),
            None => glommio::spawn_local(writer).detach(),
        };
        // Debug, not info: a broker opens thousands of these at startup; recovery that changed
        // anything has already been logged as a warning.
        tracing::debug!(
            dir = %dir.display(),
            log_start_offset = %recovered.log_start_offset,
            log_end_offset = %log_end_offset,
            segments = recovered.report.segments,
            truncated_bytes = recovered.report.truncated_bytes(),
            "opened partition log"
        );
        Ok((PartitionLog { shared, backend }, recovered.report))
    }

    /// Validates one or more concatenated magic-v2 record batches (`records` exactly as in a
    /// ProduceRequest partition), assigns offsets by patching baseOffset and
    /// partitionLeaderEpoch, applies LogAppendTime if configured, and queues them for the
    /// background writer (group commit). Synchronous: the batches are readable (up to LEO) as
    /// soon as this returns. Nothing is appended if any batch is invalid.
    ///
    /// The bytes are patched in place when `records` is uniquely owned; otherwise only the
    /// batch headers (and batches of at most 1 KiB) are copied, and the hot tail keeps the
    /// records of larger batches in `records` itself.
    pub fn append(
        &self,
        records: Bytes,
        leader_epoch: LeaderEpoch,
        now: TimestampMs,
    ) -> Result<AppendInfo, AppendError> {
        let info = self
            .shared
            .state
            .borrow_mut()
            .append(records, leader_epoch, now)?;
        self.shared.wake_writer.notify_all();
        Ok(info)
    }

    /// Returns when every batch appended before the call is written and fdatasync'ed.
    pub async fn flush(&self) -> Result<(), LogError> {
        self.wait_for(Durability::Synced).await
    }

    /// Returns when every batch appended before the call is written to its segment file: on
    /// the device (O_DIRECT), so it survives the process being killed, but not necessarily
    /// a power failure until a flush. Small writes do not linger (`write_linger_us`) for it.
    pub async fn written(&self) -> Result<(), LogError> {
        self.wait_for(Durability::Written).await
    }

    async fn wait_for(&self, durability: Durability) -> Result<(), LogError> {
        let target = self.shared.state.borrow().log_end_offset;
        loop {
            let seen = self.shared.progress.generation();
            {
                let mut state = self.shared.state.borrow_mut();
                if state.poison.is_some() {
                    return Err(LogError::Poisoned);
                }
                let target = target.min(state.log_end_offset);
                let reached = match durability {
                    Durability::Synced => state.writer.synced_offset,
                    Durability::Written => state.writer.written_through,
                };
                if reached >= target {
                    return Ok(());
                }
                if state.writer.exited {
                    return Err(LogError::Closed);
                }
                let requested = match durability {
                    Durability::Synced => &mut state.writer.flush_requested,
                    Durability::Written => &mut state.writer.write_requested,
                };
                if *requested < target {
                    *requested = target;
                    self.shared.wake_writer.notify_all();
                }
            }
            self.shared.progress.wait(seen).await;
        }
    }

    /// Waits until an append of `bytes` would not be refused with `Backpressure`.
    pub async fn writable(&self, bytes: usize) -> Result<(), LogError> {
        loop {
            let seen = self.shared.progress.generation();
            {
                let state = self.shared.state.borrow();
                if state.poison.is_some() {
                    return Err(LogError::Poisoned);
                }
                if state.closing {
                    return Err(LogError::Closed);
                }
                let unwritten = state.writer.unwritten_bytes as usize;
                if unwritten == 0
                    || unwritten.saturating_add(bytes) <= state.config.unwritten_bytes_max()
                {
                    return Ok(());
                }
            }
            self.shared.progress.wait(seen).await;
        }
    }

    /// Batches starting at the batch containing `from`, up to `max_bytes` (but at least one
    /// whole batch if any exists, as Kafka does), never past `upper` (exclusive: a batch is
    /// included only if its last offset is below `upper`; pass high_watermark() for consumers,
    /// log_end_offset() for followers).
    /// Err(OffsetOutOfRange) if from < log_start_offset or from > log_end_offset.
    ///
    /// Never touches the disk: batch boundaries come from the per-segment offset index (one
    /// entry per batch, in memory); data in the hot tail comes back as `Chunk::Memory`, older
    /// data as `Chunk::File`.
    pub fn read(
        &self,
        from: Offset,
        max_bytes: usize,
        upper: Offset,
    ) -> Result<ReadResult, ReadError> {
        self.shared.state.borrow().read(from, max_bytes, upper)
    }

    /// The log start offset.
    pub fn log_start_offset(&self) -> Offset {
        self.shared.state.borrow().log_start_offset
    }

    /// The high watermark.
    pub fn high_watermark(&self) -> Offset {
        self.shared.state.borrow().high_watermark
    }

    /// The log end offset (next offset to assign).
    pub fn log_end_offset(&self) -> Offset {
        self.shared.state.borrow().log_end_offset
    }

    /// Single broker: the broker sets HW = LEO after append (acks); replication later.
    /// The value is clamped to [log_start_offset, log_end_offset].
    pub fn set_high_watermark(&self, offset: Offset) {
        let mut state = self.shared.state.borrow_mut();
        state.high_watermark = offset.min(state.log_end_offset).max(state.log_start_offset);
    }

    /// Offset (and that record's timestamp) of the first record whose timestamp is `>= ts`,
    /// at or after the log start offset (Kafka's ListOffsets). None if there is none.
    /// For compressed batches the answer is the batch's base offset and max timestamp (the
    /// engine never decompresses).
    pub async fn offset_for_timestamp(
        &self,
        ts: TimestampMs,
    ) -> Result<Option<(Offset, TimestampMs)>, LogError> {
        let mut cursor = {
            let state = self.shared.state.borrow();
            match state.timestamp_search_start(ts) {
                Some(cursor) => cursor,
                None => return Ok(None),
            }
        };
        loop {
            let step = self.shared.state.borrow().timestamp_cursor_step(&cursor);
            let Some(step) = step else {
                return Ok(None);
            };
            let header = step.load(61.min(step.length())).await?;
            let Some(parsed) = BatchHeader::parse(&header) else {
                return Err(LogError::Invariant("stored batch shorter than its header"));
            };
            if parsed.max_timestamp() >= ts.0 && step.next_offset > step.log_start {
                if let Some(found) = self.first_record_at_or_after(&step, parsed, ts).await? {
                    return Ok(Some(found));
                }
            }
            cursor = step.following;
        }
    }

    async fn first_record_at_or_after(
        &self,
        step: &TimestampStep,
        header: &BatchHeader,
        ts: TimestampMs,
    ) -> Result<Option<(Offset, TimestampMs)>, LogError> {
        let base = Offset(header.base_offset());
        let is_log_append_time = header.attributes() & ATTR_LOG_APPEND_TIME != 0;
        if is_log_append_time || header.compression() != Some(Compression::None) {
            let offset = base.max(step.log_start);
            return Ok(Some((offset, TimestampMs(header.max_timestamp()))));
        }
        let base_timestamp = header.base_timestamp();
        let batch = step.load(step.length()).await?;
        let Some(records) = record_positions(&batch) else {
            return Err(LogError::Invariant("stored batch has malformed records"));
        };
        for record in records {
            let offset = Offset(base.0 + i64::from(record.offset_delta));
            let timestamp = TimestampMs(base_timestamp.saturating_add(record.timestamp_delta));
            if offset >= step.log_start && timestamp >= ts {
                return Ok(Some((offset, timestamp)));
            }
        }
        Ok(None)
    }

    /// Kafka's OffsetForLeaderEpoch: the end offset of `epoch` (the start of the next higher
    /// epoch, or LEO for the latest) and the largest known epoch `<= epoch`. None if unknown.
    pub fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        let state = self.shared.state.borrow();
        state.epochs.end_offset_for(epoch, state.log_end_offset)
    }

    /// The latest leader epoch seen in the log.
    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.shared.state.borrow().epochs.latest()
    }

    /// Removes everything at and after `offset` (followers). LEO becomes `offset`, or the
    /// base offset of the batch containing `offset` when it falls inside a batch (whole batches
    /// only, as Kafka). Truncating below the first segment empties the log and restarts it at
    /// `offset`. Returns when the files are truncated and synced.
    pub async fn truncate_to(&self, offset: Offset) -> Result<(), LogError> {
        let seq = self.shared.state.borrow_mut().truncate_to(offset)?;
        self.wait_for_commands(seq).await
    }

    /// DeleteRecords: moves log_start_offset to `offset` (<= HW), deletes whole segments
    /// below it. Returns the new log start offset.
    pub async fn delete_records_before(&self, offset: Offset) -> Result<Offset, LogError> {
        self.wait_for_rolled_segments().await?;
        let (seq, start) = self
            .shared
            .state
            .borrow_mut()
            .delete_records_before(offset)?;
        self.wait_for_commands(seq).await?;
        Ok(start)
    }

    /// Applies retention.ms / retention.bytes (whole segments only, never the active one)
    /// and rolls by segment.ms. Call from a low-priority task queue.
    pub async fn enforce_retention(&self, now: TimestampMs) -> Result<RetentionReport, LogError> {
        self.wait_for_rolled_segments().await?;
        let (seq, report) = self.shared.state.borrow_mut().enforce_retention(now)?;
        self.wait_for_commands(seq).await?;
        Ok(report)
    }

    /// Rolls a new segment now (if the active one is not empty).
    pub fn roll(&self) -> Result<(), LogError> {
        let mut state = self.shared.state.borrow_mut();
        state.check_usable()?;
        if state.roll_if_not_empty() {
            self.shared.wake_writer.notify_all();
        }
        Ok(())
    }

    /// Replaces the config (dynamic topic config changes).
    pub fn update_config(&self, config: LogConfig) {
        {
            let mut state = self.shared.state.borrow_mut();
            state.config = config;
            // A smaller hot-tail budget takes effect now, not at the next write.
            state.evict_tail();
        }
        self.shared.wake_writer.notify_all();
    }

    /// The current config.
    pub fn config(&self) -> LogConfig {
        self.shared.state.borrow().config.clone()
    }

    /// Flushes, stops the writer, truncates files to their logical length and writes the
    /// active segment's indexes. Later appends fail with `Closed`; reads keep working.
    pub async fn close(&self) -> Result<(), LogError> {
        {
            let mut state = self.shared.state.borrow_mut();
            state.closing = true;
        }
        self.shared.wake_writer.notify_all();
        loop {
            let seen = self.shared.progress.generation();
            {
                let state = self.shared.state.borrow();
                if state.writer.exited {
                    if state.poison.is_some() {
                        return Err(LogError::Poisoned);
                    }
                    break;
                }
            }
            self.shared.progress.wait(seen).await;
        }
        self.write_clean_shutdown_record().await;
        Ok(())
    }

    /// After a clean close (every byte written and synced, every segment sealed with its
    /// indexes): the record that lets the next open skip the scan (see `clean_shutdown`). A
    /// failure only costs the next open a scan, so it is logged, not returned.
    async fn write_clean_shutdown_record(&self) {
        let (dir, bytes) = {
            let state = self.shared.state.borrow();
            let sealed = state
                .segments
                .iter()
                .all(|segment| segment.written == segment.len);
            let record = sealed
                .then(|| CleanShutdown::describe(state.segments.iter(), &state.epochs))
                .flatten()
                .and_then(|record| record.encode());
            (state.dir.clone(), record)
        };
        let Some(bytes) = bytes else {
            tracing::warn!(dir = %dir.display(), "no clean-shutdown record: the next open scans the log");
            return;
        };
        let path = dir.join(CLEAN_SHUTDOWN_FILE);
        let written = match write_whole_file(&self.backend, &path, &bytes).await {
            Ok(()) => self
                .backend
                .sync_dir(&dir)
                .await
                .map_err(|error| LogError::io("sync directory", &dir, error)),
            Err(error) => Err(error),
        };
        if let Err(error) = written {
            tracing::warn!(path = %path.display(), %error, "could not write the clean-shutdown record: the next open scans the log");
        }
    }

    /// Total bytes of the log's segments (logical lengths).
    pub fn size_bytes(&self) -> u64 {
        self.shared
            .state
            .borrow()
            .segments
            .iter()
            .map(|segment| segment.len)
            .sum()
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.shared.state.borrow().segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<Offset> {
        self.shared
            .state
            .borrow()
            .segments
            .iter()
            .map(|segment| segment.base_offset)
            .collect()
    }

    /// Everything up to this offset is known to be on stable storage.
    pub fn synced_offset(&self) -> Offset {
        self.shared.state.borrow().writer.synced_offset
    }

    /// The background writer's counters (fdatasync count and latency, bytes written) since
    /// the log was opened.
    pub fn writer_stats(&self) -> WriterStats {
        self.shared.state.borrow().writer.stats
    }

    /// True once a write or fdatasync failed.
    pub fn is_poisoned(&self) -> bool {
        self.shared.state.borrow().poison.is_some()
    }

    /// The I/O failure that poisoned the log, if any.
    pub fn poison_cause(&self) -> Option<PoisonCause> {
        self.shared.state.borrow().poison.clone()
    }

    /// The log directory.
    pub fn dir(&self) -> PathBuf {
        self.shared.state.borrow().dir.clone()
    }

    /// Bytes of memory held by the segments' offset indexes (8 bytes per batch).
    pub fn index_memory_bytes(&self) -> usize {
        self.shared
            .state
            .borrow()
            .segments
            .iter()
            .map(|segment| segment.index.memory_bytes())
            .sum()
    }

    /// Bytes of hot tail currently held in memory.
    pub fn hot_tail_bytes(&self) -> usize {
        self.shared.state.borrow().tail_bytes
    }

    /// Waits until the writer has sealed every segment before the active one (only sealed
    /// segments can be deleted).
    pub(crate) async fn wait_for_rolled_segments(&self) -> Result<(), LogError> {
        loop {
            let seen = self.shared.progress.generation();
            {
                let state = self.shared.state.borrow();
                state.check_usable()?;
                if state.first_unsealed() == Some(state.segments.len() - 1) {
                    return Ok(());
                }
                if state.writer.exited {
                    return Err(LogError::Closed);
                }
            }
            self.shared.progress.wait(seen).await;
        }
    }

    pub(crate) async fn wait_for_commands(&self, seq: u64) -> Result<(), LogError> {
        self.shared.wake_writer.notify_all();
        loop {
            let seen = self.shared.progress.generation();
            {
                let state = self.shared.state.borrow();
                if state.poison.is_some() {
                    return Err(LogError::Poisoned);
                }
                if state.command_seq_done >= seq {
                    return Ok(());
                }
                if state.writer.exited {
                    return Err(LogError::Closed);
                }
            }
            self.shared.progress.wait(seen).await;
        }
    }
}

/// What `enforce_retention` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segments deleted.
    pub deleted_segments: usize,
    /// Bytes deleted.
    pub deleted_bytes: u64,
    /// Base offsets of the deleted segments.
    pub deleted_base_offsets: Vec<Offset>,
    /// Log start offset afterwards.
    pub log_start_offset: Offset,
    /// Whether the active segment was rolled because of segment.ms.
    pub rolled: bool,
}

/// Where an offset-for-timestamp scan continues: a segment (by id) and a batch index in it.
pub(crate) struct TimestampCursor {
    segment_id: u64,
    batch: usize,
}

/// One batch to inspect during an offset-for-timestamp scan, with the means to load it.
pub(crate) struct TimestampStep {
    source: BatchSource,
    next_offset: Offset,
    log_start: Offset,
    following: TimestampCursor,
}

enum BatchSource {
    /// The batch's parts in the hot tail (see [`TailBytes`]).
    Memory(Vec<Bytes>),
    File {
        file: SegmentFile,
        position: u64,
        length: u64,
    },
}

impl TimestampStep {
    fn length(&self) -> usize {
        match &self.source {
            BatchSource::Memory(parts) => parts.iter().map(Bytes::len).sum(),
            BatchSource::File { length, .. } => *length as usize,
        }
    }

    /// The first `len` bytes of the batch (fewer if it is shorter), contiguous: a slice when
    /// one part holds them (a header always is), otherwise a copy (a whole batch scanned for
    /// a timestamp lookup, off the produce and fetch paths).
    async fn load(&self, len: usize) -> Result<Bytes, LogError> {
        match &self.source {
            BatchSource::Memory(parts) => {
                let len = len.min(self.length());
                match parts.first() {
                    Some(first) if first.len() >= len => Ok(first.slice(..len)),
                    _ => {
                        let mut joined = BytesMut::with_capacity(len);
                        for part in parts {
                            let take = (len - joined.len()).min(part.len());
                            joined.extend_from_slice(&part[..take]);
                        }
                        Ok(joined.freeze())
                    }
                }
            }
            BatchSource::File {
                file,
                position,
                length,
            } => {
                let len = len.min(*length as usize);
                let buffer = file.read_at(*position, len).await?;
                Ok(Bytes::copy_from_slice(&buffer))
            }
        }
    }
}

impl State {
    pub(crate) fn check_usable(&self) -> Result<(), LogError> {
        if self.poison.is_some() {
            return Err(LogError::Poisoned);
        }
        if self.closing {
            return Err(LogError::Closed);
        }
        Ok(())
    }

    pub(crate) fn active(&self) -> &Segment {
        self.segments
            .back()
            .expect("a log always has an active segment")
    }

    pub(crate) fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .back_mut()
            .expect("a log always has an active segment")
    }

    /// Position in `segments` of the segment with this id.
    pub(crate) fn segment_index_by_id(&self, id: u64) -> Option<usize> {
        let index = self.segments.partition_point(|segment| segment.id < id);
        (self
            .segments
            .get(index)
            .map(|segment| segment.id == id)
            .unwrap_or(false))
        .then_some(index)
    }

    /// Position in `segments` of the segment that holds `offset` (base <= offset).
    fn segment_index_for_offset(&self, offset: Offset) -> Option<usize> {
        self.segments
            .partition_point(|segment| segment.base_offset <= offset)
            .checked_sub(1)
    }

    fn append(
        &mut self,
        records: Bytes,
        leader_epoch: LeaderEpoch,
        now: TimestampMs,
    ) -> Result<AppendInfo, AppendError> {
        if self.poison.is_some() {
            return Err(AppendError::Poisoned);
        }
        if self.closing {
            return Err(AppendError::Closed);
        }
        let summaries = validate_batches(&records).map_err(AppendError::from_batch)?;
        let max = self.config.max_message_bytes;
        if let Some(large) = summaries.iter().find(|s| s.length > max as usize) {
            return Err(AppendError::BatchTooLarge {
                size: large.length,
                max,
            });
        }
        let total_bytes = records.len();
        let unwritten = self.writer.unwritten_bytes as usize;
        let limit = self.config.unwritten_bytes_max();
        if unwritten > 0 && unwritten.saturating_add(total_bytes) > limit {
            return Err(AppendError::Backpressure {
                unwritten_bytes: unwritten,
                limit,
            });
        }
        let record_total: i64 = summaries
            .iter()
            .map(|s| i64::from(s.last_offset_delta) + 1)
            .sum();
        let base_offset = self.log_end_offset;
        base_offset
            .checked_add(record_total)
            .ok_or(AppendError::OffsetOverflow)?;

        self.maybe_roll(total_bytes as u64, record_total, now);

        let log_append_time =
            (self.config.message_timestamp_type == TimestampType::LogAppendTime).then_some(now);
        // Header fields must be patched and `Bytes` are immutable: a uniquely owned buffer is
        // patched in place; a shared one (the usual case: the request's other fields are
        // slices of the same frame) keeps its records where they are and only the headers
        // are copied and patched (the writer's copy into aligned memory is then the only
        // copy of the records on the produce path).
        let (bytes, end_offset) = match records.try_into_mut() {
            Ok(mut unique) => {
                let end_offset = assign_offsets(
                    &mut unique,
                    &summaries,
                    base_offset,
                    leader_epoch,
                    log_append_time,
                )
                .ok_or(AppendError::OffsetOverflow)?;
                (TailBytes::from(unique.freeze()), end_offset)
            }
            Err(shared) => patch_shared(
                &shared,
                &summaries,
                base_offset,
                leader_epoch,
                log_append_time,
            )
            .ok_or(AppendError::OffsetOverflow)?,
        };

        let index_interval_bytes = self.config.index_interval_bytes;
        let segment = self.active_mut();
        let start_position = segment.len;
        let mut batch_offset = base_offset;
        let mut max_timestamp = TimestampMs::NONE;
        for summary in &summaries {
            let batch_max = log_append_time.unwrap_or(TimestampMs(summary.max_timestamp));
            max_timestamp = max_timestamp.max(batch_max);
            let recorded = segment.record_batch(
                batch_offset,
                start_position + summary.position as u64,
                summary.length as u64,
                batch_max,
                index_interval_bytes,
            );
            assert!(
                recorded,
                "segment roll keeps offsets and positions in u32 range"
            );
            batch_offset = Offset(batch_offset.0 + i64::from(summary.last_offset_delta) + 1);
        }
        segment.len += total_bytes as u64;
        segment.next_offset = end_offset;
        segment.roll_started_at.get_or_insert(now);
        let segment_id = segment.id;

        self.epochs.assign(leader_epoch, base_offset);
        if bytes.borrows() {
            self.tail_borrowed
                .push_back((Instant::now(), segment_id, start_position));
        }
        self.tail.push_back(TailEntry {
            segment_id,
            position: start_position,
            next_offset: end_offset,
            bytes,
        });
        self.tail_bytes += total_bytes;
        self.log_end_offset = end_offset;
        self.writer.unwritten_bytes += total_bytes as u64;
        self.writer.appended_bytes_total += total_bytes as u64;
        if self.writer.first_unsynced_at.is_none() || self.writer.linger_since.is_none() {
            let now = Instant::now();
            self.writer.first_unsynced_at.get_or_insert(now);
            self.writer.linger_since.get_or_insert(now);
        }
        self.evict_tail();

        Ok(AppendInfo {
            base_offset,
            last_offset: Offset(end_offset.0 - 1),
            record_count: u32::try_from(record_total).unwrap_or(u32::MAX),
            batch_count: summaries.len() as u32,
            bytes: total_bytes,
            log_append_time,
            max_timestamp,
        })
    }

    /// Rolls before an append of `incoming_bytes` / `incoming_records` if the active segment
    /// would exceed segment.bytes, is older than segment.ms, or would overflow its u32
    /// relative offsets / positions.
    fn maybe_roll(&mut self, incoming_bytes: u64, incoming_records: i64, now: TimestampMs) {
        let segment_bytes = self.config.segment_bytes.min(i32::MAX as u64);
        let segment_ms = self.config.segment_ms;
        let log_end_offset = self.log_end_offset;
        let active = self.active();
        if active.len == 0 {
            return;
        }
        let too_big = active.len.saturating_add(incoming_bytes) > segment_bytes;
        let too_old = active
            .roll_started_at
            .map(|started| now.0.saturating_sub(started.0) >= segment_ms)
            .unwrap_or(false);
        let relative_end =
            (log_end_offset.0 - active.base_offset.0).saturating_add(incoming_records);
        let offsets_overflow = relative_end > i64::from(i32::MAX);
        if too_big || too_old || offsets_overflow {
            self.roll_if_not_empty();
        }
    }

    /// Starts a new active segment at LEO unless the active one is empty.
    pub(crate) fn roll_if_not_empty(&mut self) -> bool {
        if self.active().len == 0 {
            return false;
        }
        let base = self.log_end_offset;
        self.active_mut().phase = Phase::Rolled;
        let id = self.next_segment_id;
        self.next_segment_id += 1;
        let segment = Segment::new(id, &self.dir, base);
        tracing::debug!(dir = %self.dir.display(), base_offset = %base, "rolled segment");
        self.segments.push_back(segment);
        true
    }

    /// Copies the bytes of hot-tail entries that have borrowed request buffers for
    /// [`TAIL_BORROW_MS_MAX`] into buffers of their own, releasing the request buffers.
    /// Returns when the next entry is due.
    ///
    /// Only written entries are copied (written entries over the hot-tail budget are already
    /// gone: `evict_tail` runs when a write completes). An entry still waiting for its write
    /// is checked again one hold later, and the writer is told to write the partial last
    /// page it would otherwise keep back until more data comes: copying unwritten entries
    /// only spent CPU when the shard was already behind on writes (with 10,000 partitions
    /// this copy was a third of the shard's time), and an entry whose last page is never
    /// written could never leave the tail (10,000 idle partitions kept 1.3 GB that way).
    pub(crate) fn release_borrowed_tail(&mut self, now: Instant) -> Option<Instant> {
        let hold = std::time::Duration::from_millis(TAIL_BORROW_MS_MAX);
        while let Some(&(appended_at, segment_id, position)) = self.tail_borrowed.front() {
            let key = (segment_id, position);
            let stale = self
                .tail
                .front()
                .map(|front| key < (front.segment_id, front.position))
                .unwrap_or(true);
            if !stale && now < appended_at + hold {
                return Some(appended_at + hold);
            }
            self.tail_borrowed.pop_front();
            if stale {
                continue;
            }
            let index = self
                .tail
                .partition_point(|entry| (entry.segment_id, entry.position) < key);
            let Some(entry) = self.tail.get(index) else {
                continue;
            };
            if (entry.segment_id, entry.position) != key || !entry.bytes.borrows() {
                continue;
            }
            let written = match self.segment_index_by_id(segment_id) {
                Some(segment) => self.segments[segment].written >= entry.end(),
                None => true,
            };
            if !written {
                // Usually only its last partial page is left: the writer waits for more data
                // to fill the page. Have it write the page now.
                self.writer.partial_wanted = true;
                self.tail_borrowed.push_back((now, segment_id, position));
                continue;
            }
            if let Some(entry) = self.tail.get_mut(index) {
                entry.bytes = entry.bytes.copied();
            }
        }
        None
    }

    /// Drops written entries from the front of the hot tail while it is over budget.
    pub(crate) fn evict_tail(&mut self) {
        while self.tail_bytes > self.config.hot_tail_bytes {
            let Some(front) = self.tail.front() else {
                break;
            };
            let written = match self.segment_index_by_id(front.segment_id) {
                Some(index) => self.segments[index].written >= front.end(),
                None => true,
            };
            if !written {
                break;
            }
            self.tail_bytes -= front.bytes.len();
            self.tail.pop_front();
        }
    }

    fn read(&self, from: Offset, max_bytes: usize, upper: Offset) -> Result<ReadResult, ReadError> {
        let mut result = ReadResult {
            chunks: Vec::new(),
            total_bytes: 0,
            high_watermark: self.high_watermark,
            log_start_offset: self.log_start_offset,
            log_end_offset: self.log_end_offset,
        };
        if from < self.log_start_offset || from > self.log_end_offset {
            return Err(ReadError::OffsetOutOfRange {
                requested: from,
                log_start: self.log_start_offset,
                log_end: self.log_end_offset,
            });
        }
        let upper = upper.min(self.log_end_offset);
        if from >= upper {
            return Ok(result);
        }
        let Some(mut segment_index) = self.segment_index_for_offset(from) else {
            return Ok(result);
        };
        // The batch holding `from`, or the next one when `from` falls in a gap that log
        // compaction left (within a segment, at its end, or a whole emptied segment).
        let mut batch = loop {
            let Some(segment) = self.segments.get(segment_index) else {
                return Ok(result);
            };
            match segment.batch_at_or_after(from) {
                Some(batch) => break batch,
                None => segment_index += 1,
            }
        };
        // Pieces of consecutive batches: (segment index, start position, end position).
        let mut pieces: Vec<(usize, u64, u64)> = Vec::new();
        let mut total: u64 = 0;
        let budget = max_bytes as u64;
        'segments: while let Some(segment) = self.segments.get(segment_index) {
            let entries = segment.index.entries();
            if batch >= entries.len() {
                segment_index += 1;
                batch = 0;
                continue;
            }
            let start = u64::from(entries[batch].position);
            // Batches [batch, last] fit if their next offset is <= upper and their end is
            // within the remaining budget; both conditions are monotonic in the batch index.
            let remaining = budget.saturating_sub(total);
            let fits = |index: usize| -> bool {
                match segment.batch_bounds(index) {
                    Some((_, next, _, end)) => next <= upper && end - start <= remaining,
                    None => false,
                }
            };
            let count = partition_point_from(batch, entries.len(), fits);
            let mut last = batch + count;
            if count == 0 {
                // At least one whole batch if nothing was taken yet (Kafka semantics).
                let first_fits_upper = segment
                    .batch_bounds(batch)
                    .map(|(_, next, _, _)| next <= upper)
                    .unwrap_or(false);
                if total == 0 && first_fits_upper {
                    last = batch + 1;
                } else {
                    break 'segments;
                }
            }
            let end = match segment.batch_bounds(last - 1) {
                Some((_, _, _, end)) => end,
                None => break,
            };
            pieces.push((segment_index, start, end));
            total += end - start;
            if last < entries.len() {
                // Stopped inside this segment: by budget or upper.
                break;
            }
            segment_index += 1;
            batch = 0;
        }
        for (segment_index, start, end) in pieces {
            self.push_chunks(&mut result.chunks, segment_index, start, end)?;
        }
        result.total_bytes = total as usize;
        Ok(result)
    }

    /// Splits `[start, end)` of a segment into file and memory chunks.
    fn push_chunks(
        &self,
        chunks: &mut Vec<Chunk>,
        segment_index: usize,
        start: u64,
        end: u64,
    ) -> Result<(), LogError> {
        let segment = &self.segments[segment_index];
        let memory_start = match self.tail.front() {
            None => end,
            Some(front) if front.segment_id > segment.id => end,
            Some(front) if front.segment_id == segment.id => front.position.clamp(start, end),
            Some(_) => start,
        };
        if memory_start > start {
            let file = segment
                .file
                .clone()
                .ok_or(LogError::Invariant("evicted data has no file"))?;
            chunks.push(Chunk::File {
                file: SegmentFile::with_read_ahead(file, &segment.read_ahead, segment.written),
                position: start,
                length: memory_start - start,
            });
        }
        if memory_start < end {
            let first = self.tail.partition_point(|entry| {
                (entry.segment_id, entry.end()) <= (segment.id, memory_start)
            });
            for entry in self.tail.range(first..) {
                if entry.segment_id != segment.id || entry.position >= end {
                    break;
                }
                let slice_start = memory_start.max(entry.position) - entry.position;
                let slice_end = end.min(entry.end()) - entry.position;
                chunks.extend(
                    entry
                        .bytes
                        .slices(slice_start as usize, slice_end as usize)
                        .map(Chunk::Memory),
                );
            }
        }
        Ok(())
    }

    /// Byte source for batch `batch` of segment `segment_index`.
    fn batch_source(&self, segment_index: usize, batch: usize) -> Option<(BatchSource, Offset)> {
        let segment = self.segments.get(segment_index)?;
        let (_, next_offset, start, end) = segment.batch_bounds(batch)?;
        let mut chunks = Vec::new();
        self.push_chunks(&mut chunks, segment_index, start, end)
            .ok()?;
        let source = match chunks.first()? {
            Chunk::Memory(_) => {
                let mut parts = Vec::with_capacity(chunks.len());
                for chunk in chunks {
                    match chunk {
                        Chunk::Memory(bytes) => parts.push(bytes),
                        Chunk::File { .. } => return None,
                    }
                }
                if parts.iter().map(Bytes::len).sum::<usize>() as u64 != end - start {
                    return None;
                }
                BatchSource::Memory(parts)
            }
            Chunk::File { file, .. } => BatchSource::File {
                file: file.clone(),
                position: start,
                length: end - start,
            },
        };
        Some((source, next_offset))
    }

    /// Where to start looking for the first batch with max timestamp >= `ts`.
    fn timestamp_search_start(&self, ts: TimestampMs) -> Option<TimestampCursor> {
        let segment = self.segments.iter().find(|segment| {
            segment.max_timestamp >= ts && segment.next_offset > self.log_start_offset
        })?;
        let mut batch = match segment.time_index.lookup_before(ts) {
            Some(entry) => segment.index.lookup(entry.relative_offset).unwrap_or(0),
            None => 0,
        };
        if let Some(start_batch) = segment.batch_containing(self.log_start_offset) {
            batch = batch.max(start_batch);
        }
        Some(TimestampCursor {
            segment_id: segment.id,
            batch,
        })
    }

    /// The batch at `cursor` (skipping to the next segment at a segment end).
    fn timestamp_cursor_step(&self, cursor: &TimestampCursor) -> Option<TimestampStep> {
        let mut segment_index = match self.segment_index_by_id(cursor.segment_id) {
            Some(index) => index,
            None => self
                .segments
                .partition_point(|segment| segment.id < cursor.segment_id),
        };
        let mut batch = cursor.batch;
        loop {
            let segment = self.segments.get(segment_index)?;
            if batch < segment.index.len() {
                break;
            }
            segment_index += 1;
            batch = 0;
        }
        let segment = self.segments.get(segment_index)?;
        let (source, next_offset) = self.batch_source(segment_index, batch)?;
        Some(TimestampStep {
            source,
            next_offset,
            log_start: self.log_start_offset,
            following: TimestampCursor {
                segment_id: segment.id,
                batch: batch + 1,
            },
        })
    }
}

/// Number of consecutive indexes from `start` (below `end`) for which `predicate` holds, given
/// that it holds for a prefix of the range.
fn partition_point_from(start: usize, end: usize, predicate: impl Fn(usize) -> bool) -> usize {
    let (mut low, mut high) = (start, end);
    while low < high {
        let middle = low + (high - low) / 2;
        if predicate(middle) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    low - start
}

/// What [`PartitionLog::wait_for`] waits for.
#[derive(Debug, Clone, Copy)]
enum Durability {
    /// Written to the segment file (survives the process, not a power failure).
    Written,
    /// Written and fdatasync'ed.
    Synced,
}

/// Path of the log directory for a topic partition under a data directory, Kafka style:
/// `<data_dir>/<topic>-<partition>`.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;
