//! Read-ahead for sequential readers of a segment (consumers catching up from disk).
//!
//! Reads of on-disk data are O_DIRECT, so the kernel's page-cache read-ahead never helps: a
//! consumer that fetches `[p, p + n)` then waits for the disk again when it asks for the next
//! `n` bytes. After serving a sequential read, [`SegmentFile::read_sequential`] starts reading
//! the following range in the background; the next read that falls inside it takes the
//! buffer instead of going to the disk.
//!
//! Safety of the data: a prefetch never reaches past the bytes of the segment whose writes had
//! completed when the read was planned (those bytes do not change), is tied to the file handle
//! it was read from (log compaction swaps the file), and is dropped when the log is truncated
//! (a generation number on the segment). Memory: at most [`READ_AHEAD_MAX_BYTES`] per segment
//! and [`READ_AHEAD_SHARD_BUDGET_BYTES`] per thread (one shard); an entry nobody took for
//! [`READ_AHEAD_IDLE`] gives its budget back to a newer reader.
//!
//! [`SegmentFile::read_sequential`]: crate::segment::SegmentFile::read_sequential

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use glommio::Task;

use crate::backend::{FileHandle, ReadBuf};

/// Reads smaller than this are not followed by a read-ahead (not a catch-up reader).
pub const READ_AHEAD_MIN_BYTES: usize = 64 * 1024;
/// Largest read-ahead of one segment.
pub const READ_AHEAD_MAX_BYTES: usize = 8 * 1024 * 1024;
/// Read-ahead bytes one thread (shard) may hold at once.
pub const READ_AHEAD_SHARD_BUDGET_BYTES: usize = 64 * 1024 * 1024;
/// A read-ahead not taken for this long may be dropped to make room for another.
pub const READ_AHEAD_IDLE: Duration = Duration::from_secs(1);

thread_local! {
    static BUDGET_LEFT: Cell<usize> = const { Cell::new(READ_AHEAD_SHARD_BUDGET_BYTES) };
    static HOLDERS: RefCell<Vec<Weak<ReadAhead>>> = const { RefCell::new(Vec::new()) };
}

/// Budget held by one read-ahead; given back when dropped.
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

/// The bytes read ahead for one segment.
struct Prefetch {
    generation: u64,
    /// The file it was read from (compared by address).
    file: *const (),
    position: u64,
    length: usize,
    started: Instant,
    task: Task<io::Result<ReadBuf>>,
    _permit: Permit,
}

/// One segment's read-ahead slot. Owned by the segment (an `Rc` shared with the
/// `SegmentFile`s handed out for reads); lives on one shard.
#[derive(Default)]
pub struct ReadAhead {
    slot: RefCell<Option<Prefetch>>,
    generation: Cell<u64>,
    registered: Cell<bool>,
}

impl std::fmt::Debug for ReadAhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadAhead")
            .field("generation", &self.generation.get())
            .field("holding", &self.slot.borrow().is_some())
            .finish()
    }
}

fn file_id(file: &FileHandle) -> *const () {
    Rc::as_ptr(file) as *const ()
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
        self.slot.borrow_mut().take();
    }

    /// Takes the read-ahead if it covers `[position, position + length)` of `file` and belongs
    /// to `generation`; returns the buffer sliced to that range, or `None` (then read the disk).
    pub async fn take(
        &self,
        file: &FileHandle,
        generation: u64,
        position: u64,
        length: usize,
    ) -> Option<ReadBuf> {
        let prefetch = {
            let mut slot = self.slot.borrow_mut();
            let covers = slot.as_ref().is_some_and(|prefetch| {
                let wanted_end = position.checked_add(length as u64);
                let held_end = prefetch.position.checked_add(prefetch.length as u64);
                prefetch.generation == generation
                    && generation == self.generation.get()
                    && prefetch.file == file_id(file)
                    && prefetch.position <= position
                    && matches!((wanted_end, held_end), (Some(wanted), Some(held)) if wanted <= held)
            });
            if !covers {
                return None;
            }
            slot.take()?
        };
        let offset = usize::try_from(position - prefetch.position).ok()?;
        let expected = prefetch.length;
        let buffer = prefetch.task.await.ok()?;
        if buffer.len() != expected || generation != self.generation.get() {
            return None;
        }
        buffer.slice(offset, length)
    }

    /// Starts reading `[position, position + length)` of `file` in the background, replacing
    /// whatever this segment held, if the shard's budget allows.
    pub fn start(
        self: &Rc<Self>,
        file: &FileHandle,
        generation: u64,
        position: u64,
        length: usize,
    ) {
        if generation != self.generation.get() || length == 0 {
            return;
        }
        // Give back this segment's old read-ahead first: it is being replaced.
        self.slot.borrow_mut().take();
        let permit = match Permit::take(length) {
            Some(permit) => permit,
            None => {
                release_idle();
                match Permit::take(length) {
                    Some(permit) => permit,
                    None => return,
                }
            }
        };
        let reader = Rc::clone(file);
        let task = glommio::spawn_local(async move { reader.read_at(position, length).await });
        *self.slot.borrow_mut() = Some(Prefetch {
            generation,
            file: file_id(file),
            position,
            length,
            started: Instant::now(),
            task,
            _permit: permit,
        });
        if !self.registered.replace(true) {
            HOLDERS.with(|holders| holders.borrow_mut().push(Rc::downgrade(self)));
        }
    }

    fn release_if_idle(&self, now: Instant) {
        let mut slot = self.slot.borrow_mut();
        if slot
            .as_ref()
            .is_some_and(|prefetch| now.duration_since(prefetch.started) >= READ_AHEAD_IDLE)
        {
            slot.take();
        }
    }
}

/// Drops read-aheads nobody took for [`READ_AHEAD_IDLE`] (and forgets dropped segments).
fn release_idle() {
    let now = Instant::now();
    HOLDERS.with(|holders| {
        holders
            .borrow_mut()
            .retain(|holder| match holder.upgrade() {
                Some(ahead) => {
                    ahead.release_if_idle(now);
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
