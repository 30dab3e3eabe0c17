//! The background writer: one glommio task per log that turns appended batches into large
//! 4 KiB-aligned O_DIRECT writes, fdatasyncs according to the flush policy and to waiting
//! `flush()` calls (group commit), seals rolled segments, and performs file commands
//! (truncate, delete, checkpoint) in order.
//!
//! The task holds only a `Weak` to the log state and upgrades it for each synchronous planning
//! step; no `RefCell` borrow lives across an await.
//!
//! Writes: up to [`WRITES_IN_FLIGHT_MAX`] whole-page writes of the same segment may be in
//! flight together (each runs as its own task; completions are applied in order). A write that
//! ends in a partial page is only issued when nothing else is in flight, and the next write,
//! which rewrites that page from the in-memory copy (`tail_page`), waits for it: no two writes
//! in flight ever touch the same 4 KiB page. Every other operation (fdatasync, seal, truncate,
//! delete, create, reading the tail page back) runs alone. Any failed write or fdatasync
//! poisons the log: nothing is retried.

use std::{
    path::PathBuf,
    rc::{Rc, Weak},
    time::{Duration, Instant},
};

use glommio::io::DmaBuffer;

use crate::{
    backend::{align_down, align_up, Backend, FileHandle, OpenMode, IO_ALIGNMENT},
    checkpoint::write_log_start,
    error::{LogError, PoisonCause},
    log::{Shared, State, TailEntry},
    segment::{write_whole_file, Phase, SegmentPaths},
    signal::Signal,
    types::Offset,
};

/// Writer bookkeeping inside the log state.
pub(crate) struct WriterState {
    /// Bumped by truncation: completions of I/O issued before it are not applied.
    pub(crate) generation: u64,
    /// Bytes `[align_down(staged), staged)` of segment `tail_page_segment`.
    pub(crate) tail_page: Vec<u8>,
    pub(crate) tail_page_segment: Option<u64>,
    /// Appended bytes whose writes have not completed.
    pub(crate) unwritten_bytes: u64,
    /// Every batch below this offset is fully written.
    pub(crate) written_through: Offset,
    /// Every batch below this offset is written and fdatasync'ed.
    pub(crate) synced_offset: Offset,
    /// Highest offset a flush (explicit or by policy) waits for.
    pub(crate) flush_requested: Offset,
    /// Highest offset a `PartitionLog::written` caller waits for (written, not synced).
    pub(crate) write_requested: Offset,
    pub(crate) appended_bytes_total: u64,
    pub(crate) synced_bytes_total: u64,
    pub(crate) first_unsynced_at: Option<Instant>,
    /// Write the partial last page now instead of waiting for more data: a hot-tail entry
    /// has held a request buffer for its whole borrow time and cannot be copied or evicted
    /// until it is written (see `State::release_borrowed_tail`).
    pub(crate) partial_wanted: bool,
    /// When the oldest append not yet carried by a started write arrived (see
    /// `LogConfig::write_linger_us`); None when every append is in a write.
    pub(crate) linger_since: Option<Instant>,
    /// The active segment was finalized by `close`.
    pub(crate) finalized: bool,
    pub(crate) exited: bool,
    /// Counters for monitoring (read by `PartitionLog::writer_stats`).
    pub(crate) stats: WriterStats,
}

/// Upper bounds (microseconds) of the fdatasync latency buckets of [`WriterStats`]; one more
/// bucket counts everything slower.
pub const FLUSH_LATENCY_BOUNDS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000,
];

/// A log writer's counters since the log was opened: plain numbers the broker reads when it
/// is scraped (the engine knows nothing about metrics systems).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Successful fdatasyncs of segment data (group-commit flushes and segment seals).
    pub flushes: u64,
    /// Time spent in those fdatasyncs, in nanoseconds.
    pub flush_nanos_total: u64,
    /// fdatasync count per latency bucket (not cumulative): `[i]` counts latencies up to
    /// `FLUSH_LATENCY_BOUNDS_US[i]` and above the previous bound; the last counts the rest.
    pub flush_latency_buckets: [u64; FLUSH_LATENCY_BOUNDS_US.len() + 1],
    /// Bytes written to segment files by completed data writes (a partial page rewritten by
    /// the next write counts again).
    pub bytes_written: u64,
}

impl WriterStats {
    fn record_flush(&mut self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let micros = nanos / 1_000;
        let bucket = FLUSH_LATENCY_BOUNDS_US
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(FLUSH_LATENCY_BOUNDS_US.len());
        self.flushes = self.flushes.saturating_add(1);
        self.flush_nanos_total = self.flush_nanos_total.saturating_add(nanos);
        if let Some(count) = self.flush_latency_buckets.get_mut(bucket) {
            *count = count.saturating_add(1);
        }
    }
}

impl WriterState {
    pub(crate) fn new(log_end_offset: Offset, last_segment_id: u64, tail_page: Vec<u8>) -> Self {
        WriterState {
            generation: 0,
            tail_page,
            tail_page_segment: Some(last_segment_id),
            unwritten_bytes: 0,
            written_through: log_end_offset,
            synced_offset: log_end_offset,
            flush_requested: log_end_offset,
            write_requested: log_end_offset,
            appended_bytes_total: 0,
            synced_bytes_total: 0,
            first_unsynced_at: None,
            partial_wanted: false,
            linger_since: None,
            finalized: false,
            exited: false,
            stats: WriterStats::default(),
        }
    }
}

/// File work requested by log operations, executed by the writer in order.
pub(crate) enum Command {
    /// Truncate a segment file to `len` and fdatasync it.
    TruncateFile { file: FileHandle, len: u64 },
    /// Remove a segment's three files.
    DeleteSegment {
        paths: SegmentPaths,
        file: Option<FileHandle>,
    },
    /// Persist the log start offset.
    WriteLogStart { offset: Offset },
    /// Log compaction: rename the cleaned file over the segment's data file (atomic), then
    /// rewrite its indexes. The in-memory segment already reads the cleaned file.
    ReplaceSegment {
        cleaned: PathBuf,
        paths: SegmentPaths,
        index: Vec<u8>,
        time_index: Vec<u8>,
    },
}

/// Most writes in flight at once (all to the same segment, on disjoint pages).
pub(crate) const WRITES_IN_FLIGHT_MAX: usize = 4;

enum Step {
    Wait {
        seen: u64,
        deadline: Option<Instant>,
    },
    /// Wait for the oldest in-flight write (or a wake-up that may allow another write).
    AwaitFront {
        seen: u64,
    },
    Exit,
    Io(Op),
    Write(WriteOp),
}

/// One coalesced, 4 KiB-aligned write.
struct WriteOp {
    segment_id: u64,
    generation: u64,
    file: FileHandle,
    buffer: DmaBuffer,
    position: u64,
    end: u64,
    /// Allocate the file up to this length before writing (see `Segment::allocated`).
    allocate_to: Option<u64>,
}

/// Smallest preallocation step of a segment file.
const PREALLOCATE_MIN_BYTES: u64 = 128 * 1024;
/// A preallocation reaches this fraction (1/N) of the segment's length past the write that
/// needs it, so space reserved ahead stays within 1/N of the data plus one minimal step.
const PREALLOCATE_AHEAD_DIVISOR: u64 = 8;
/// Largest single preallocation.
const PREALLOCATE_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// A write submitted as its own task, so that several can be in flight.
struct InFlightWrite {
    segment_id: u64,
    generation: u64,
    end: u64,
    path: PathBuf,
    expected: usize,
    task: glommio::Task<std::io::Result<usize>>,
}

enum Op {
    Command {
        seq: u64,
        command: Command,
        dir: PathBuf,
    },
    Create {
        segment_id: u64,
        path: PathBuf,
        dir: PathBuf,
    },
    LoadTailPage {
        segment_id: u64,
        generation: u64,
        file: FileHandle,
        start: u64,
        len: usize,
    },
    Sync {
        generation: u64,
        file: FileHandle,
        through: Offset,
        appended_snapshot: u64,
    },
    Seal {
        segment_id: u64,
        generation: u64,
        file: FileHandle,
        len: u64,
        next_offset: Offset,
        index: Vec<u8>,
        time_index: Vec<u8>,
        paths: SegmentPaths,
        dir: PathBuf,
        finalize: bool,
        appended_snapshot: u64,
    },
}

enum Outcome {
    Command {
        seq: u64,
        result: Result<(), LogError>,
        fatal: bool,
    },
    Created {
        segment_id: u64,
        result: Result<FileHandle, LogError>,
    },
    TailPageLoaded {
        segment_id: u64,
        generation: u64,
        start: u64,
        result: Result<Vec<u8>, LogError>,
    },
    Written {
        segment_id: u64,
        generation: u64,
        end: u64,
        bytes: u64,
        result: Result<(), LogError>,
    },
    Synced {
        generation: u64,
        through: Offset,
        appended_snapshot: u64,
        elapsed: Duration,
        result: Result<(), LogError>,
    },
    Sealed {
        segment_id: u64,
        generation: u64,
        next_offset: Offset,
        finalize: bool,
        appended_snapshot: u64,
        elapsed: Duration,
        result: Result<(), LogError>,
    },
}

/// The writer task. Ends when the log is closed, poisoned or dropped.
pub(crate) async fn run_writer<B: Backend>(
    weak: Weak<Shared>,
    backend: B,
    wake: Rc<Signal>,
    progress: Rc<Signal>,
) {
    let mut in_flight: std::collections::VecDeque<InFlightWrite> = Default::default();
    loop {
        let step = {
            let Some(shared) = weak.upgrade() else {
                return;
            };
            let seen = wake.generation();
            let mut state = shared.state.borrow_mut();
            state.plan(&backend, seen, in_flight.len())
        };
        match step {
            Step::Exit => {
                progress.notify_all();
                return;
            }
            Step::AwaitFront { seen } => {
                let Some(front) = in_flight.front_mut() else {
                    continue;
                };
                let completed =
                    futures_lite::future::or(async { Some((&mut front.task).await) }, async {
                        wake.wait(seen).await;
                        None
                    })
                    .await;
                let Some(result) = completed else {
                    continue;
                };
                let Some(write) = in_flight.pop_front() else {
                    continue;
                };
                let result = match result {
                    Ok(written) if written == write.expected => Ok(()),
                    Ok(written) => Err(LogError::io(
                        "write",
                        &write.path,
                        std::io::Error::new(
                            std::io::ErrorKind::WriteZero,
                            format!("short write: {written} of {} bytes", write.expected),
                        ),
                    )),
                    Err(error) => Err(LogError::io("write", &write.path, error)),
                };
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                shared.state.borrow_mut().apply(Outcome::Written {
                    segment_id: write.segment_id,
                    generation: write.generation,
                    end: write.end,
                    bytes: write.expected as u64,
                    result,
                });
                progress.notify_all();
            }
            Step::Write(WriteOp {
                segment_id,
                generation,
                file,
                buffer,
                position,
                end,
                allocate_to,
            }) => {
                let expected = buffer.len();
                let path = file.path().to_path_buf();
                let task = glommio::spawn_local(async move {
                    if let Some(len) = allocate_to {
                        // A hint: if it fails (no space, no fallocate on this file system),
                        // the write itself reports what matters.
                        if let Err(error) = file.allocate(len).await {
                            tracing::debug!(
                                path = %file.path().display(),
                                len,
                                %error,
                                "preallocation failed"
                            );
                        }
                    }
                    file.write_at(buffer, position).await
                });
                in_flight.push_back(InFlightWrite {
                    segment_id,
                    generation,
                    end,
                    path,
                    expected,
                    task,
                });
            }
            Step::Wait { seen, deadline } => match deadline {
                Some(deadline) => {
                    let delay = deadline.saturating_duration_since(Instant::now());
                    futures_lite::future::or(wake.wait(seen), glommio::timer::sleep(delay)).await;
                }
                None => wake.wait(seen).await,
            },
            Step::Io(op) => {
                let outcome = op.execute(&backend).await;
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                shared.state.borrow_mut().apply(outcome);
                progress.notify_all();
            }
        }
    }
}

impl Op {
    async fn execute<B: Backend>(self, backend: &B) -> Outcome {
        match self {
            Op::Command { seq, command, dir } => {
                let (result, fatal) = match command {
                    Command::TruncateFile { file, len } => {
                        (truncate_and_sync(&file, len).await, true)
                    }
                    Command::DeleteSegment { paths, file } => {
                        drop(file);
                        (delete_segment_files(backend, &paths).await, false)
                    }
                    Command::WriteLogStart { offset } => {
                        (write_log_start(backend, &dir, offset).await, true)
                    }
                    Command::ReplaceSegment {
                        cleaned,
                        paths,
                        index,
                        time_index,
                    } => {
                        // Not fatal: until the rename lands, the old file is still complete.
                        let result = async {
                            backend
                                .rename(&cleaned, &paths.log)
                                .await
                                .map_err(|error| LogError::io("rename", &cleaned, error))?;
                            persist_indexes(backend, &paths, &index, &time_index, &dir).await
                        }
                        .await;
                        (result, false)
                    }
                };
                Outcome::Command { seq, result, fatal }
            }
            Op::Create {
                segment_id,
                path,
                dir,
            } => {
                let result = async {
                    let file = backend
                        .open(&path, OpenMode::CreateTruncate)
                        .await
                        .map_err(|error| LogError::io("create", &path, error))?;
                    backend
                        .sync_dir(&dir)
                        .await
                        .map_err(|error| LogError::io("fsync directory", &dir, error))?;
                    Ok(file)
                }
                .await;
                Outcome::Created { segment_id, result }
            }
            Op::LoadTailPage {
                segment_id,
                generation,
                file,
                start,
                len,
            } => {
                let result = match file.read_at(start, len).await {
                    Ok(buffer) if buffer.len() == len => Ok(buffer.to_vec()),
                    Ok(buffer) => Err(LogError::ShortRead {
                        path: file.path().to_path_buf(),
                        position: start,
                        expected: len,
                        actual: buffer.len(),
                    }),
                    Err(error) => Err(LogError::io("read", file.path(), error)),
                };
                Outcome::TailPageLoaded {
                    segment_id,
                    generation,
                    start,
                    result,
                }
            }
            Op::Sync {
                generation,
                file,
                through,
                appended_snapshot,
            } => {
                let started = Instant::now();
                let result = file
                    .fdatasync()
                    .await
                    .map_err(|error| LogError::io("fdatasync", file.path(), error));
                Outcome::Synced {
                    generation,
                    through,
                    appended_snapshot,
                    elapsed: started.elapsed(),
                    result,
                }
            }
            Op::Seal {
                segment_id,
                generation,
                file,
                len,
                next_offset,
                index,
                time_index,
                paths,
                dir,
                finalize,
                appended_snapshot,
            } => {
                let mut elapsed = Duration::ZERO;
                let result = async {
                    let started = Instant::now();
                    truncate_and_sync(&file, len).await?;
                    elapsed = started.elapsed();
                    persist_indexes(backend, &paths, &index, &time_index, &dir).await
                }
                .await;
                Outcome::Sealed {
                    segment_id,
                    generation,
                    next_offset,
                    finalize,
                    appended_snapshot,
                    elapsed,
                    result,
                }
            }
        }
    }
}

async fn truncate_and_sync(file: &FileHandle, len: u64) -> Result<(), LogError> {
    file.set_len(len)
        .await
        .map_err(|error| LogError::io("truncate", file.path(), error))?;
    file.fdatasync()
        .await
        .map_err(|error| LogError::io("fdatasync", file.path(), error))
}

/// Writes a segment's offset and time index files whole, then fsyncs the directory, so that
/// a sealed or swapped segment's indexes and names are durable together.
async fn persist_indexes<B: Backend>(
    backend: &B,
    paths: &SegmentPaths,
    index: &[u8],
    time_index: &[u8],
    dir: &std::path::Path,
) -> Result<(), LogError> {
    write_whole_file(backend, &paths.index, index).await?;
    write_whole_file(backend, &paths.time_index, time_index).await?;
    backend
        .sync_dir(dir)
        .await
        .map_err(|error| LogError::io("fsync directory", dir, error))
}

async fn delete_segment_files<B: Backend>(
    backend: &B,
    paths: &SegmentPaths,
) -> Result<(), LogError> {
    for path in [&paths.log, &paths.index, &paths.time_index] {
        backend
            .remove(path)
            .await
            .map_err(|error| LogError::io("remove", path, error))?;
    }
    Ok(())
}

/// Copies log bytes `[position, position + target.len())` of a segment from the hot tail.
/// False if the tail does not hold them (a broken invariant: unwritten data is never evicted).
fn copy_from_tail(
    tail: &std::collections::VecDeque<TailEntry>,
    segment_id: u64,
    position: u64,
    target: &mut [u8],
) -> bool {
    let mut index =
        tail.partition_point(|entry| (entry.segment_id, entry.end()) <= (segment_id, position));
    let mut cursor = position;
    let mut copied = 0;
    while copied < target.len() {
        let Some(entry) = tail.get(index) else {
            return false;
        };
        if entry.segment_id != segment_id || entry.position > cursor {
            return false;
        }
        let from = (cursor - entry.position) as usize;
        let count = (entry.bytes.len() - from).min(target.len() - copied);
        // The only copy of the records on the produce path: from the entry's parts (patched
        // headers, the producer's request buffers) into the aligned write buffer.
        if !entry
            .bytes
            .copy_to(from, &mut target[copied..copied + count])
        {
            return false;
        }
        copied += count;
        cursor += count as u64;
        index += 1;
    }
    true
}

impl State {
    /// Queues a command for the writer; returns its sequence number.
    pub(crate) fn push_command(&mut self, command: Command) -> u64 {
        let seq = self.command_seq_next;
        self.command_seq_next += 1;
        self.commands.push_back((seq, command));
        seq
    }

    /// Records the first I/O failure; the log accepts nothing afterwards.
    pub(crate) fn poison_with(&mut self, error: &LogError) {
        if self.poison.is_some() {
            return;
        }
        let cause = match error {
            LogError::Io { op, path, source } => PoisonCause {
                op,
                path: path.clone(),
                kind: source.kind(),
                raw_os_error: source.raw_os_error(),
            },
            LogError::ShortRead { path, .. } => PoisonCause {
                op: "read",
                path: path.clone(),
                kind: std::io::ErrorKind::UnexpectedEof,
                raw_os_error: None,
            },
            _ => PoisonCause {
                op: "writer",
                path: self.dir.clone(),
                kind: std::io::ErrorKind::Other,
                raw_os_error: None,
            },
        };
        tracing::error!(dir = %self.dir.display(), %cause, %error, "partition log poisoned");
        self.poison = Some(cause);
    }

    /// Recomputes `written_through` from the first unsealed segment.
    pub(crate) fn recompute_written_through(&mut self) {
        if let Some(index) = self.first_unsealed() {
            let segment = &self.segments[index];
            self.writer.written_through = segment.offset_through(segment.written);
        }
    }

    /// Position of the segment the writer works on: sealed segments form a prefix, so search
    /// from the back (usually one or two steps).
    pub(crate) fn first_unsealed(&self) -> Option<usize> {
        let index = match self
            .segments
            .iter()
            .rposition(|segment| segment.phase == Phase::Sealed)
        {
            Some(last_sealed) => last_sealed + 1,
            None => 0,
        };
        (index < self.segments.len()).then_some(index)
    }

    /// Raises `flush_requested` when the flush policy (bytes or ms) asks for a sync.
    fn apply_flush_policy(&mut self, deadline: &mut Option<Instant>) {
        let log_end_offset = self.log_end_offset;
        if self.writer.synced_offset >= log_end_offset {
            self.writer.first_unsynced_at = None;
            return;
        }
        if let Some(limit) = self.config.flush_interval_bytes {
            let unsynced = self
                .writer
                .appended_bytes_total
                .saturating_sub(self.writer.synced_bytes_total);
            if unsynced >= limit {
                self.writer.flush_requested = self.writer.flush_requested.max(log_end_offset);
            }
        }
        if let Some(interval_ms) = self.config.flush_interval_ms {
            let started = *self
                .writer
                .first_unsynced_at
                .get_or_insert_with(Instant::now);
            let due = started + Duration::from_millis(interval_ms);
            if Instant::now() >= due {
                self.writer.flush_requested = self.writer.flush_requested.max(log_end_offset);
            } else {
                *deadline = Some(deadline.map_or(due, |earlier| earlier.min(due)));
            }
        }
    }

    /// Decides the writer's next step. Called with the state borrowed; returns owned work.
    fn plan<B: Backend>(&mut self, backend: &B, seen: u64, in_flight: usize) -> Step {
        if self.poison.is_some() {
            self.writer.exited = true;
            return Step::Exit;
        }
        // Every step, busy or not, so the queue of borrowing entries stays short.
        let borrow_deadline = if self.tail_borrowed.is_empty() {
            None
        } else {
            self.release_borrowed_tail(Instant::now())
        };
        if in_flight > 0 {
            // Only another write may join the writes in flight, and only when it starts on a
            // fresh page (the last write ended page-aligned) and carries a large chunk.
            if in_flight < WRITES_IN_FLIGHT_MAX {
                if let Some(write) = self.plan_concurrent_write(backend) {
                    return Step::Write(write);
                }
            }
            return Step::AwaitFront { seen };
        }
        if let Some((seq, command)) = self.commands.pop_front() {
            return Step::Io(Op::Command {
                seq,
                command,
                dir: self.dir.clone(),
            });
        }
        let mut deadline = borrow_deadline;
        self.apply_flush_policy(&mut deadline);
        let generation = self.writer.generation;
        let Some(index) = self.first_unsealed() else {
            return Step::Wait { seen, deadline };
        };
        let last_index = self.segments.len() - 1;
        let segment = &self.segments[index];
        let Some(file) = segment.file.clone() else {
            return Step::Io(Op::Create {
                segment_id: segment.id,
                path: segment.paths.log.clone(),
                dir: self.dir.clone(),
            });
        };
        if self.writer.tail_page_segment != Some(segment.id) {
            let start = align_down(segment.staged);
            if start == segment.staged {
                self.writer.tail_page.clear();
                self.writer.tail_page_segment = Some(segment.id);
            } else {
                return Step::Io(Op::LoadTailPage {
                    segment_id: segment.id,
                    generation,
                    file,
                    start,
                    len: (segment.staged - start) as usize,
                });
            }
        }
        let target = self.writer.flush_requested.min(self.log_end_offset);
        if target > self.writer.synced_offset && self.writer.written_through >= target {
            return Step::Io(Op::Sync {
                generation,
                file,
                through: self.writer.written_through,
                appended_snapshot: self.writer.appended_bytes_total,
            });
        }
        let write_target = self.writer.write_requested.min(self.log_end_offset);
        let force_partial = target > self.writer.written_through
            || write_target > self.writer.written_through
            || segment.phase == Phase::Rolled
            || self.closing
            || self.writer.partial_wanted;
        if segment.staged < segment.len {
            let appended_end = segment.len;
            if !force_partial {
                if let Some(due) = self.linger_due(appended_end - segment.staged) {
                    deadline = Some(deadline.map_or(due, |earlier| earlier.min(due)));
                    return Step::Wait { seen, deadline };
                }
            }
            if let Some(write) = self.build_write(backend, index, force_partial, file) {
                if write.end >= appended_end {
                    self.writer.partial_wanted = false;
                }
                self.writer.linger_since = None;
                return Step::Write(write);
            }
        } else if segment.phase == Phase::Rolled
            || (self.closing && index == last_index && !self.writer.finalized)
        {
            let (index_bytes, time_index_bytes) = segment.encoded_indexes();
            return Step::Io(Op::Seal {
                segment_id: segment.id,
                generation,
                file,
                len: segment.len,
                next_offset: segment.next_offset,
                index: index_bytes,
                time_index: time_index_bytes,
                paths: segment.paths.clone(),
                dir: self.dir.clone(),
                finalize: segment.phase == Phase::Active,
                // Sealing a rolled segment does not sync what was appended after it.
                appended_snapshot: if segment.phase == Phase::Active {
                    self.writer.appended_bytes_total
                } else {
                    self.writer.synced_bytes_total
                },
            });
        }
        if self.closing && self.writer.finalized {
            self.writer.exited = true;
            return Step::Exit;
        }
        Step::Wait { seen, deadline }
    }

    fn plan_concurrent_write<B: Backend>(&mut self, backend: &B) -> Option<WriteOp> {
        let index = self.first_unsealed()?;
        let segment = &self.segments[index];
        let file = segment.file.clone()?;
        if self.writer.tail_page_segment != Some(segment.id)
            || !segment.staged.is_multiple_of(IO_ALIGNMENT)
            || segment.staged >= segment.len
        {
            return None;
        }
        let ready = align_down(segment.len).saturating_sub(segment.staged);
        if ready < self.large_write_bytes() {
            return None;
        }
        let write = self.build_write(backend, index, false, file)?;
        self.writer.linger_since = None;
        Some(write)
    }

    /// When a write of `pending` new bytes should wait for more appends
    /// (`LogConfig::write_linger_us`): the time it is due, or None to write now. Bytes whose
    /// append time is unknown (left over by a write capped at `write_coalesce_bytes`) never
    /// wait.
    fn linger_due(&self, pending: u64) -> Option<Instant> {
        let linger_us = self.config.write_linger_us;
        if linger_us == 0 || pending >= self.large_write_bytes() {
            return None;
        }
        let due = self.writer.linger_since? + Duration::from_micros(linger_us);
        (Instant::now() < due).then_some(due)
    }

    /// `write_coalesce_bytes` rounded up to whole pages: the most one write carries.
    fn coalesce_bytes(&self) -> u64 {
        align_up(self.config.write_coalesce_bytes.max(IO_ALIGNMENT as usize) as u64)
    }

    /// A write at least this large (half of [`Self::coalesce_bytes`], at least a page) may
    /// join the writes in flight, and never lingers for more data.
    fn large_write_bytes(&self) -> u64 {
        (self.coalesce_bytes() / 2).max(IO_ALIGNMENT)
    }

    /// Builds the next write of segment `index`: the kept tail page plus new bytes, up to
    /// `write_coalesce_bytes`. Without `force_partial` only whole pages are written (the
    /// partial last page waits for more data); None if there is not a whole page yet.
    fn build_write<B: Backend>(
        &mut self,
        backend: &B,
        index: usize,
        force_partial: bool,
        file: FileHandle,
    ) -> Option<WriteOp> {
        let coalesce = self.coalesce_bytes();
        let segment = &self.segments[index];
        let start = align_down(segment.staged);
        let max_end = start + coalesce;
        let end = if segment.len <= max_end {
            if force_partial {
                segment.len
            } else {
                let whole_pages = align_down(segment.len);
                if whole_pages <= segment.staged {
                    return None;
                }
                whole_pages
            }
        } else {
            max_end
        };
        let buffer_len = (align_up(end) - start) as usize;
        let page_len = (segment.staged - start) as usize;
        let data_len = (end - start) as usize;
        assert_eq!(
            self.writer.tail_page.len(),
            page_len,
            "tail page must hold the staged partial page"
        );
        let mut buffer = backend.alloc_buffer(buffer_len);
        let bytes = buffer.as_bytes_mut();
        bytes[..page_len].copy_from_slice(&self.writer.tail_page);
        let copied = copy_from_tail(
            &self.tail,
            segment.id,
            segment.staged,
            &mut bytes[page_len..data_len],
        );
        assert!(copied, "unwritten data must still be in the hot tail");
        bytes[data_len..].fill(0);
        let page_start = (align_down(end) - start) as usize;
        // The kept page describes what has been issued: the next write starts from it.
        let tail_page = bytes[page_start..data_len].to_vec();
        let segment_id = segment.id;
        let allocate_to = self.preallocation(index, start + buffer_len as u64);
        self.segments[index].staged = end;
        self.writer.tail_page = tail_page;
        self.writer.tail_page_segment = Some(segment_id);
        Some(WriteOp {
            segment_id,
            generation: self.writer.generation,
            file,
            buffer,
            position: start,
            end,
            allocate_to,
        })
    }

    /// The file length to allocate before a write that ends at `write_end`, if the write
    /// would otherwise extend the file. The allocation runs ahead of the write by an eighth of
    /// the segment's length ([`PREALLOCATE_MIN_BYTES`] to [`PREALLOCATE_MAX_BYTES`]), so a
    /// growing segment needs few allocations while idle or many partitions reserve little:
    /// doubling the allocation instead reserved up to as much again as the data, and 10,000
    /// partitions at full rate filled a 36 GB disk with 19 GB of data. Never reaches past the
    /// segment size by more than the write itself.
    fn preallocation(&mut self, index: usize, write_end: u64) -> Option<u64> {
        let segment_bytes = align_up(self.config.segment_bytes);
        let segment = &mut self.segments[index];
        if write_end <= segment.allocated {
            return None;
        }
        let ahead = (write_end / PREALLOCATE_AHEAD_DIVISOR)
            .clamp(PREALLOCATE_MIN_BYTES, PREALLOCATE_MAX_BYTES);
        let target = align_up(write_end + ahead).min(segment_bytes.max(write_end));
        segment.allocated = target;
        Some(target)
    }

    /// Applies the result of an I/O step.
    fn apply(&mut self, outcome: Outcome) {
        let generation_now = self.writer.generation;
        match outcome {
            Outcome::Command { seq, result, fatal } => {
                if let Err(error) = result {
                    if fatal {
                        self.poison_with(&error);
                    } else {
                        tracing::warn!(dir = %self.dir.display(), %error, "log file command failed");
                    }
                }
                self.command_seq_done = seq;
            }
            Outcome::Created { segment_id, result } => match result {
                Err(error) => self.poison_with(&error),
                Ok(file) => {
                    if let Some(index) = self.segment_index_by_id(segment_id) {
                        let segment = &mut self.segments[index];
                        if segment.file.is_none() {
                            segment.file = Some(file);
                        }
                    }
                }
            },
            Outcome::TailPageLoaded {
                segment_id,
                generation,
                start,
                result,
            } => match result {
                Err(error) => self.poison_with(&error),
                Ok(page) => {
                    if generation != generation_now {
                        return;
                    }
                    if let Some(index) = self.segment_index_by_id(segment_id) {
                        let segment = &self.segments[index];
                        if align_down(segment.staged) == start
                            && segment.staged - start == page.len() as u64
                        {
                            self.writer.tail_page = page;
                            self.writer.tail_page_segment = Some(segment_id);
                        }
                    }
                }
            },
            Outcome::Written {
                segment_id,
                generation,
                end,
                bytes,
                result,
            } => match result {
                Err(error) => self.poison_with(&error),
                Ok(()) => {
                    self.writer.stats.bytes_written =
                        self.writer.stats.bytes_written.saturating_add(bytes);
                    if generation != generation_now {
                        return;
                    }
                    let Some(index) = self.segment_index_by_id(segment_id) else {
                        return;
                    };
                    let segment = &mut self.segments[index];
                    let newly = end.saturating_sub(segment.written);
                    segment.written = segment.written.max(end);
                    self.writer.unwritten_bytes = self.writer.unwritten_bytes.saturating_sub(newly);
                    self.recompute_written_through();
                    self.evict_tail();
                }
            },
            Outcome::Synced {
                generation,
                through,
                appended_snapshot,
                elapsed,
                result,
            } => match result {
                Err(error) => self.poison_with(&error),
                Ok(()) => {
                    self.writer.stats.record_flush(elapsed);
                    if generation != generation_now {
                        return;
                    }
                    self.note_synced(through, appended_snapshot);
                }
            },
            Outcome::Sealed {
                segment_id,
                generation,
                next_offset,
                finalize,
                appended_snapshot,
                elapsed,
                result,
            } => match result {
                Err(error) => self.poison_with(&error),
                Ok(()) => {
                    self.writer.stats.record_flush(elapsed);
                    if generation != generation_now {
                        return;
                    }
                    if finalize {
                        self.writer.finalized = true;
                    } else if let Some(index) = self.segment_index_by_id(segment_id) {
                        self.segments[index].phase = Phase::Sealed;
                        self.writer.tail_page_segment = None;
                        self.writer.tail_page.clear();
                    }
                    self.writer.written_through = self.writer.written_through.max(next_offset);
                    self.note_synced(next_offset, appended_snapshot);
                    self.evict_tail();
                }
            },
        }
    }

    fn note_synced(&mut self, through: Offset, appended_snapshot: u64) {
        self.writer.synced_offset = self.writer.synced_offset.max(through);
        self.writer.synced_bytes_total = self.writer.synced_bytes_total.max(appended_snapshot);
        self.writer.first_unsynced_at = if self.writer.synced_offset >= self.log_end_offset {
            None
        } else {
            Some(Instant::now())
        };
    }
}
