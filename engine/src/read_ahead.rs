//! Read-ahead for sequential readers of a segment (consumers catching up from disk).
//!
//! Reads of on-disk data are O_DIRECT, so the kernel's page-cache read-ahead never helps: a
//! consumer that fetches `[p, p + n)` then waits for the disk again when it asks for the next
//! `n` bytes. After serving a sequential read, [`SegmentFile::read_sequential`] keeps a window
//! of the following bytes being read in the background, as a queue of blocks of
//! [`READ_AHEAD_BLOCK_BYTES`]; the next read takes the blocks (or the parts of them) that
//! cover it and goes to the disk only for what they do not hold.
//!
//! Blocks rather than one range per read: a consumer's next read rarely has the length of the
//! last one (a fetch returns whole batches up to its byte limit), and a read-ahead of exactly
//! the last length missed whenever the next read was longer, so the disk read the same bytes
//! twice. A block that a read uses only in part stays queued for the next read.
//!
//! Safety of the data: a block never reaches past the bytes of the segment whose writes had
//! completed when the read was planned (those bytes do not change), the queue is tied to the
//! file handle it was read from (log compaction swaps the file), and it is dropped when the
//! log is truncated (a generation number on the segment). Memory: at most
//! [`READ_AHEAD_MAX_BYTES`] ahead per segment and [`READ_AHEAD_SHARD_BUDGET_BYTES`] per thread
//! (one shard); a queue nobody used for [`READ_AHEAD_IDLE`] gives its budget back to a newer
//! reader.
//!
//! [`SegmentFile::read_sequential`]: crate::segment::SegmentFile::read_sequential

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use glommio::Task;

use crate::backend::{FileHandle, ReadBuf};

/// Reads smaller than this are not followed by a read-ahead (not a catch-up reader).
pub const READ_AHEAD_MIN_BYTES: usize = 64 * 1024;
/// Largest read-ahead window of one segment.
pub const READ_AHEAD_MAX_BYTES: usize = 8 * 1024 * 1024;
/// The size of one background read.
pub const READ_AHEAD_BLOCK_BYTES: usize = 1024 * 1024;
/// Read-ahead bytes one thread (shard) may hold at once.
pub const READ_AHEAD_SHARD_BUDGET_BYTES: usize = 64 * 1024 * 1024;
/// A read-ahead not used for this long may be dropped to make room for another.
pub const READ_AHEAD_IDLE: Duration = Duration::from_secs(1);

thread_local! {
    static BUDGET_LEFT: Cell<usize> = const { Cell::new(READ_AHEAD_SHARD_BUDGET_BYTES) };
    static HOLDERS: RefCell<Vec<Weak<ReadAhead>>> = const { RefCell::new(Vec::new()) };
    static STATS: Cell<ReadAheadStats> = const { Cell::new(ReadAheadStats { hit_bytes: 0, miss_bytes: 0 }) };
}

/// How the sequential reads of this thread were served since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadAheadStats {
    /// Bytes taken from blocks read ahead.
    pub hit_bytes: u64,
    /// Bytes read from the disk when they were asked for.
    pub miss_bytes: u64,
}

/// This thread's read-ahead counters (for tests and metrics).
pub fn stats() -> ReadAheadStats {
    STATS.with(Cell::get)
}

/// Counts bytes a sequential read took from the read-ahead or had to read itself.
pub(crate) fn count(hit_bytes: usize, miss_bytes: usize) {
    STATS.with(|stats| {
        let mut now = stats.get();
        now.hit_bytes = now.hit_bytes.saturating_add(hit_bytes as u64);
        now.miss_bytes = now.miss_bytes.saturating_add(miss_bytes as u64);
        stats.set(now);
    });
}

/// Budget held by one block; given back when dropped.
struct Permit(usize);

impl Permit {
    fn take(bytes: usize) -> Option<Permit> {
        let taken = BUDGET_LEFT.with(|left| match left.get().checked_sub(bytes) {
            Some(rest) => {
                left.set(rest);
                true
            }
            None => false,
        });
        taken.then_some(Permit(bytes))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        BUDGET_LEFT.with(|left| left.set(left.get() + self.0));
    }
}

enum BlockState {
    Reading(Task<io::Result<ReadBuf>>),
    /// A reader is awaiting the read (another reader of the same range reads the disk).
    Awaited,
    Ready(ReadBuf),
}

/// One background read of `[position, position + length)`.
struct Block {
    position: u64,
    length: usize,
    state: BlockState,
    _permit: Permit,
}

impl Block {
    fn end(&self) -> u64 {
        self.position + self.length as u64
    }
}

/// The blocks read ahead of one segment, contiguous and in order.
struct Stream {
    generation: u64,
    /// The file they were read from (compared by address).
    file: *const (),
    blocks: VecDeque<Block>,
    last_used: Instant,
}

impl Stream {
    /// Where the queued blocks end (or `from` when there are none).
    fn end_or(&self, from: u64) -> u64 {
        self.blocks.back().map(Block::end).unwrap_or(from)
    }
}

/// One segment's read-ahead. Owned by the segment (an `Rc` shared with the `SegmentFile`s
/// handed out for reads); lives on one shard.
#[derive(Default)]
pub struct ReadAhead {
    stream: RefCell<Option<Stream>>,
    generation: Cell<u64>,
    registered: Cell<bool>,
}

impl std::fmt::Debug for ReadAhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stream = self.stream.borrow();
        f.debug_struct("ReadAhead")
            .field("generation", &self.generation.get())
            .field("blocks", &stream.as_ref().map_or(0, |s| s.blocks.len()))
            .finish()
    }
}

fn file_id(file: &FileHandle) -> *const () {
    Rc::as_ptr(file) as *const ()
}

/// What [`ReadAhead::take`] found: the pieces covering `[position, covered_end)`.
#[derive(Default)]
pub struct Taken {
    /// Buffers in order, each a slice of a block.
    pub pieces: Vec<ReadBuf>,
    /// Where the pieces end; the rest of the wanted range must be read from the disk.
    pub covered_end: u64,
}

impl ReadAhead {
    /// The current generation; reads planned now carry it.
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Drops what was read ahead and makes reads planned before now unable to store or use
    /// any (the segment's bytes are about to change: truncation).
    pub fn invalidate(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        self.stream.borrow_mut().take();
    }

    /// Takes what the queued blocks hold of `[position, position + length)` of `file` (if
    /// they belong to `generation`), from `position` on without a gap. Blocks wholly before
    /// the end of the range are dropped; one that reaches past it stays for the next read.
    pub async fn take(
        &self,
        file: &FileHandle,
        generation: u64,
        position: u64,
        length: usize,
    ) -> Taken {
        let end = position.saturating_add(length as u64);
        let mut taken = Taken {
            pieces: Vec::new(),
            covered_end: position,
        };
        {
            let mut stream = self.stream.borrow_mut();
            let usable = stream.as_ref().is_some_and(|s| {
                s.generation == generation
                    && generation == self.generation.get()
                    && s.file == file_id(file)
            });
            if !usable {
                stream.take();
                return taken;
            }
            if let Some(stream) = stream.as_mut() {
                // Blocks the reader has moved past.
                while stream
                    .blocks
                    .front()
                    .is_some_and(|block| block.end() <= position)
                {
                    stream.blocks.pop_front();
                }
                stream.last_used = Instant::now();
            }
        }
        while taken.covered_end < end {
            let at = taken.covered_end;
            // The block holding `at`: its buffer, or its read to await (the state is marked
            // `Awaited` meanwhile, with no borrow held across the await).
            let pending = {
                let mut stream = self.stream.borrow_mut();
                let Some(block) = stream.as_mut().and_then(|s| s.blocks.front_mut()) else {
                    break;
                };
                if block.position > at || block.end() <= at {
                    break;
                }
                match std::mem::replace(&mut block.state, BlockState::Awaited) {
                    BlockState::Ready(buffer) => {
                        block.state = BlockState::Ready(buffer.clone());
                        Ok((block.position, block.length, buffer))
                    }
                    BlockState::Reading(task) => Err((block.position, block.length, task)),
                    BlockState::Awaited => break,
                }
            };
            let (block_position, block_length, buffer) = match pending {
                Ok(ready) => ready,
                Err((block_position, block_length, task)) => {
                    let Ok(buffer) = task.await else {
                        // The read failed: drop the queue; the caller reads the disk.
                        self.stream.borrow_mut().take();
                        break;
                    };
                    if buffer.len() != block_length || generation != self.generation.get() {
                        self.stream.borrow_mut().take();
                        break;
                    }
                    let mut stream = self.stream.borrow_mut();
                    match stream.as_mut().and_then(|s| s.blocks.front_mut()) {
                        Some(block) if block.position == block_position => {
                            block.state = BlockState::Ready(buffer.clone());
                        }
                        // The queue was replaced meanwhile; this buffer is still good.
                        _ => {}
                    }
                    (block_position, block_length, buffer)
                }
            };
            let block_end = block_position + block_length as u64;
            let piece_end = block_end.min(end);
            let (Ok(offset), Ok(piece_length)) = (
                usize::try_from(at - block_position),
                usize::try_from(piece_end - at),
            ) else {
                break;
            };
            let Some(piece) = buffer.slice(offset, piece_length) else {
                break;
            };
            taken.pieces.push(piece);
            taken.covered_end = piece_end;
            if block_end <= end {
                let mut stream = self.stream.borrow_mut();
                if let Some(stream) = stream.as_mut() {
                    if stream
                        .blocks
                        .front()
                        .is_some_and(|block| block.position == block_position)
                    {
                        stream.blocks.pop_front();
                    }
                }
            }
        }
        if generation != self.generation.get() {
            // Truncated while we waited: nothing read before it may be served.
            return Taken {
                pieces: Vec::new(),
                covered_end: position,
            };
        }
        taken
    }

    /// Keeps `[from, from + window)` of `file` (but nothing at or past `readable_end`) queued
    /// or being read, adding blocks after the queued ones, as far as the shard's budget
    /// allows. A queue that does not continue at `from` is replaced.
    pub fn extend(
        self: &Rc<Self>,
        file: &FileHandle,
        generation: u64,
        from: u64,
        window: usize,
        readable_end: u64,
    ) {
        if generation != self.generation.get() {
            return;
        }
        let target = from
            .saturating_add(window.min(READ_AHEAD_MAX_BYTES) as u64)
            .min(readable_end);
        let mut slot = self.stream.borrow_mut();
        let continues = slot.as_ref().is_some_and(|s| {
            s.generation == generation
                && s.file == file_id(file)
                && s.blocks
                    .front()
                    .is_none_or(|block| block.position <= from && from <= s.end_or(from))
        });
        if !continues {
            // Give back the old queue's budget before taking more.
            slot.take();
        }
        let stream = slot.get_or_insert_with(|| Stream {
            generation,
            file: file_id(file),
            blocks: VecDeque::new(),
            last_used: Instant::now(),
        });
        stream.last_used = Instant::now();
        let mut next = stream.end_or(from);
        while next < target {
            // Blocks end on multiples of the block size, so the disk sees aligned reads of
            // whole blocks after the first (an unaligned read costs an extra page, and request).
            let block = READ_AHEAD_BLOCK_BYTES as u64;
            let block_end = (next / block + 1) * block;
            let Ok(length) = usize::try_from(block_end.min(target) - next) else {
                break;
            };
            let permit = match Permit::take(length) {
                Some(permit) => permit,
                None => {
                    release_idle(Some(self));
                    match Permit::take(length) {
                        Some(permit) => permit,
                        None => break,
                    }
                }
            };
            let reader = Rc::clone(file);
            let position = next;
            let task = glommio::spawn_local(async move { reader.read_at(position, length).await });
            stream.blocks.push_back(Block {
                position,
                length,
                state: BlockState::Reading(task),
                _permit: permit,
            });
            next += length as u64;
        }
        drop(slot);
        if !self.registered.replace(true) {
            HOLDERS.with(|holders| holders.borrow_mut().push(Rc::downgrade(self)));
        }
    }

    fn release_if_idle(&self, now: Instant) {
        // Busy: a reader of this segment holds it (it is the one asking for budget).
        let Ok(mut slot) = self.stream.try_borrow_mut() else {
            return;
        };
        if slot
            .as_ref()
            .is_some_and(|stream| now.duration_since(stream.last_used) >= READ_AHEAD_IDLE)
        {
            slot.take();
        }
    }
}

/// Drops read-aheads nobody used for [`READ_AHEAD_IDLE`] (and forgets dropped segments).
/// `asking` is skipped: its queue is borrowed by the caller.
fn release_idle(asking: Option<&Rc<ReadAhead>>) {
    let now = Instant::now();
    HOLDERS.with(|holders| {
        holders
            .borrow_mut()
            .retain(|holder| match holder.upgrade() {
                Some(ahead) => {
                    if !asking.is_some_and(|asking| Rc::ptr_eq(asking, &ahead)) {
                        ahead.release_if_idle(now);
                    }
                    true
                }
                None => false,
            })
    });
}

/// Read-ahead bytes this thread holds now (for tests and metrics).
pub fn held_bytes() -> usize {
    READ_AHEAD_SHARD_BUDGET_BYTES - BUDGET_LEFT.with(Cell::get)
}
