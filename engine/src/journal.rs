//! The acknowledgement journal: a ring of appended-but-unwritten batches in a memory-mapped
//! file on tmpfs, so that an acknowledged produce survives the broker's process being killed
//! before the background writer has put it into its segment file.
//!
//! Kafka answers acks=1 once a batch is in its log file, which means the kernel's page cache:
//! the data survives a killed process (not a power failure, until a flush). This engine writes
//! with O_DIRECT from its own memory, a millisecond or two after the append, so the process's
//! memory is the only copy during that time. The journal is a second copy where the kernel
//! keeps it: a shared mapping of a file in `/dev/shm` (tmpfs). Copying a batch into it is a
//! `memcpy`, no system call; entries are dropped once their log has written them.
//!
//! On restart the broker reads the journal files a previous run left behind
//! ([`read_journal`]) and appends each entry whose first offset is the recovered log end
//! again, with the same leader epoch and append time: the log then ends where the killed
//! process had acknowledged it.
//!
//! # File layout (little endian)
//! - Bytes 0-31, the header: magic `VAARTJ01`, ring capacity (u64), `head` and `tail` (u64,
//!   logical positions; the live entries are `[tail, head)`).
//! - The ring from byte 4096, `capacity` bytes; logical position `p` lives at
//!   `4096 + p % capacity`. An entry never wraps: when one does not fit before the end of the
//!   ring, a pad entry (or, when fewer than [`ENTRY_HEADER_LEN`] bytes remain, nothing) fills
//!   the rest of the lap.
//! - An entry, 8-byte aligned: magic u32, kind u32 (1 data, 2 pad), total length u32, key
//!   length u32, records length u32, CRC32C u32 of the header (with the CRC field zero) and
//!   the key, base offset i64, end offset i64, leader epoch i32, 4 zero bytes, append time ms
//!   i64; then the key (the partition's directory name), the record batches as they were
//!   appended, zero padding.
//!
//! The writer copies an entry, then publishes it by storing `head`; a process killed in
//! between leaves a `head` that does not cover the partial entry. The batches carry their
//! own CRCs, checked again when they are appended on restart.

use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    io,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    ptr::NonNull,
    rc::Weak,
    sync::atomic::{compiler_fence, Ordering},
};

use bytes::Bytes;

use crate::{
    backend::Backend,
    log::{PartitionLog, Shared},
    types::{LeaderEpoch, Offset, TimestampMs},
};

const MAGIC: &[u8; 8] = b"VAARTJ01";
const RING_START: usize = 4096;
const ENTRY_MAGIC: u32 = 0x5641_4A45; // "VAJE"
const KIND_DATA: u32 = 1;
const KIND_PAD: u32 = 2;
/// Bytes of an entry before its key.
pub const ENTRY_HEADER_LEN: usize = 56;
const HEAD_AT: usize = 16;
const TAIL_AT: usize = 24;
const CRC_AT: usize = 20;

/// Journal failures: creating, mapping or reading a journal file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The journal file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The capacity is too small for any entry or too large to map.
    #[error("journal capacity {0} bytes is out of range (64 KiB to 4 GiB)")]
    Capacity(u64),
    /// The file is not a journal or its header is inconsistent.
    #[error("{path} is not a valid journal: {reason}")]
    Invalid {
        /// The journal file.
        path: PathBuf,
        /// What did not match.
        reason: &'static str,
    },
}

/// One entry read back from a journal file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// The partition's directory name (as made by [`crate::partition_dir`]).
    pub partition: String,
    /// The offset the first batch was given.
    pub base_offset: Offset,
    /// One past the last offset of the entry.
    pub end_offset: Offset,
    /// The leader epoch the batches were appended with.
    pub leader_epoch: LeaderEpoch,
    /// The `now` of the append (the LogAppendTime, for topics that use it).
    pub appended_at: TimestampMs,
    /// The record batches exactly as they were given to `append`.
    pub records: Bytes,
}

/// What [`read_journal`] found.
#[derive(Debug, Default)]
pub struct JournalContents {
    /// Live entries, oldest first.
    pub entries: Vec<JournalEntry>,
    /// Set when the live range ended in an entry that did not parse (the rest is ignored).
    pub damaged_at: Option<u64>,
}

/// A shared, writable mapping of a whole file.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(file: &File, len: usize, path: &Path) -> Result<Self, JournalError> {
        // SAFETY: a fresh shared mapping of `len` bytes of a file we opened read-write and
        // sized (and allocated) to `len`; no other mapping aliases it in this process.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                // Populated now: the produce path never takes the first-touch page faults.
                libc::MAP_SHARED | libc::MAP_POPULATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(JournalError::Io {
                op: "mmap",
                path: path.to_path_buf(),
                source: io::Error::last_os_error(),
            });
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(JournalError::Invalid {
            path: path.to_path_buf(),
            reason: "mmap returned null",
        })?;
        Ok(Mapping { ptr, len })
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` maps `len` readable and writable bytes for the life of `self`, and
        // `&mut self` makes this the only reference into them.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the range mapped in `new`; no slice into it outlives `self`.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// An entry in the ring whose log has not yet written it.
struct Pending {
    /// Logical ring position just past the entry.
    end_position: u64,
    log: Weak<Shared>,
    end_offset: Offset,
}

/// One shard's journal: appends go in at `head`, and `tail` follows as logs write their data.
/// Not `Send`: it belongs to one shard, like the logs it points to.
pub struct AckJournal {
    path: PathBuf,
    map: Mapping,
    capacity: u64,
    head: u64,
    tail: u64,
    pending: VecDeque<Pending>,
    /// Entries that did not fit (the caller waited for the write instead).
    full_count: u64,
}

impl std::fmt::Debug for AckJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckJournal")
            .field("path", &self.path)
            .field("capacity", &self.capacity)
            .field("head", &self.head)
            .field("tail", &self.tail)
            .field("pending", &self.pending.len())
            .finish()
    }
}

/// Counters of a journal, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Ring bytes held by entries not yet written by their logs.
    pub used_bytes: u64,
    /// The ring's size.
    pub capacity_bytes: u64,
    /// Appends that found no room (their answers waited for the write).
    pub full_count: u64,
}

impl AckJournal {
    /// Creates (replacing any file of that name) a journal with a ring of `capacity_bytes`
    /// (rounded down to 8 bytes). The file's pages are allocated up front, so a tmpfs too
    /// small for it fails here and not with SIGBUS later.
    pub fn create(path: &Path, capacity_bytes: u64) -> Result<Self, JournalError> {
        if !(64 * 1024..=4 << 30).contains(&capacity_bytes) {
            return Err(JournalError::Capacity(capacity_bytes));
        }
        let capacity = capacity_bytes & !7;
        let io_error = |op: &'static str| {
            let path = path.to_path_buf();
            move |source| JournalError::Io { op, path, source }
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(io_error("create"))?;
        let file_len = RING_START as u64 + capacity;
        let len = libc::off_t::try_from(file_len).map_err(|_| JournalError::Capacity(capacity))?;
        // SAFETY: fallocate on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
        if rc != 0 {
            let source = io::Error::last_os_error();
            // Leave no half-made file behind for the next start to read.
            let _ = std::fs::remove_file(path);
            return Err(io_error("allocate")(source));
        }
        let map_len = usize::try_from(file_len).map_err(|_| JournalError::Capacity(capacity))?;
        let mut map = Mapping::new(&file, map_len, path)?;
        let bytes = map.bytes_mut();
        bytes[..8].copy_from_slice(MAGIC);
        bytes[8..16].copy_from_slice(&capacity.to_le_bytes());
        bytes[HEAD_AT..HEAD_AT + 8].copy_from_slice(&0u64.to_le_bytes());
        bytes[TAIL_AT..TAIL_AT + 8].copy_from_slice(&0u64.to_le_bytes());
        Ok(AckJournal {
            path: path.to_path_buf(),
            map,
            capacity,
            head: 0,
            tail: 0,
            pending: VecDeque::new(),
            full_count: 0,
        })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Copies `records`, just appended to `log` at `base_offset..end_offset`, into the ring.
    /// Returns false when it does not fit: the caller must then wait for
    /// [`PartitionLog::written`] before acknowledging.
    #[allow(clippy::too_many_arguments)]
    pub fn record<B: Backend>(
        &mut self,
        log: &PartitionLog<B>,
        partition: &str,
        base_offset: Offset,
        end_offset: Offset,
        leader_epoch: LeaderEpoch,
        appended_at: TimestampMs,
        records: &[u8],
    ) -> bool {
        self.release_written();
        let key = partition.as_bytes();
        let Some(total) = entry_len(key.len(), records.len()) else {
            self.full_count += 1;
            return false;
        };
        let Some(position) = self.reserve(total) else {
            self.full_count += 1;
            return false;
        };
        let at = RING_START + (position % self.capacity) as usize;
        let bytes = self.map.bytes_mut();
        let entry = &mut bytes[at..at + total];
        write_entry_header(
            entry,
            KIND_DATA,
            total,
            key,
            records.len(),
            base_offset,
            end_offset,
            leader_epoch,
            appended_at,
        );
        let records_at = ENTRY_HEADER_LEN + key.len();
        entry[records_at..records_at + records.len()].copy_from_slice(records);
        entry[records_at + records.len()..].fill(0);
        self.head = position + total as u64;
        self.publish(HEAD_AT, self.head);
        self.pending.push_back(Pending {
            end_position: self.head,
            log: std::rc::Rc::downgrade(&log.shared),
            end_offset,
        });
        true
    }

    /// Drops the oldest entries whose logs have written them (or closed, or ended below
    /// them), and moves `tail` past them.
    pub fn release_written(&mut self) {
        let mut released = false;
        while let Some(front) = self.pending.front() {
            let done = match front.log.upgrade() {
                None => true,
                Some(shared) => {
                    let state = shared.state.borrow();
                    state.writer.written_through >= front.end_offset
                        || state.writer.exited
                        || state.log_end_offset < front.end_offset
                }
            };
            if !done {
                break;
            }
            self.tail = front.end_position;
            self.pending.pop_front();
            released = true;
        }
        if self.pending.is_empty() {
            self.tail = self.head;
        }
        if released || self.pending.is_empty() {
            self.publish(TAIL_AT, self.tail);
        }
    }

    /// Counters for metrics.
    pub fn stats(&self) -> JournalStats {
        JournalStats {
            used_bytes: self.head - self.tail,
            capacity_bytes: self.capacity,
            full_count: self.full_count,
        }
    }

    /// Removes the journal file (a clean shutdown, once every log is closed).
    pub fn remove(self) -> Result<(), JournalError> {
        let path = self.path.clone();
        drop(self);
        std::fs::remove_file(&path).map_err(|source| JournalError::Io {
            op: "remove",
            path,
            source,
        })
    }

    /// Finds room for an entry of `total` bytes, writing a pad over the rest of the lap if
    /// the entry would cross the ring's end. Returns the entry's logical position.
    fn reserve(&mut self, total: usize) -> Option<u64> {
        let total = total as u64;
        let lap_left = self.capacity - self.head % self.capacity;
        let skip = if total > lap_left { lap_left } else { 0 };
        let needed = skip.checked_add(total)?;
        if self.head - self.tail + needed > self.capacity {
            return None;
        }
        if skip > 0 {
            if skip >= ENTRY_HEADER_LEN as u64 {
                let at = RING_START + (self.head % self.capacity) as usize;
                let bytes = self.map.bytes_mut();
                let pad = &mut bytes[at..at + ENTRY_HEADER_LEN];
                write_entry_header(
                    pad,
                    KIND_PAD,
                    skip as usize,
                    &[],
                    0,
                    Offset(0),
                    Offset(0),
                    LeaderEpoch(0),
                    TimestampMs(0),
                );
            }
            self.head += skip;
        }
        Some(self.head)
    }

    /// Stores a header position after everything before it in program order: the compiler
    /// may not sink the entry's copy below it. (A killed process loses no store it made; only
    /// their order as the compiler emitted them matters.)
    fn publish(&mut self, at: usize, value: u64) {
        compiler_fence(Ordering::Release);
        self.map.bytes_mut()[at..at + 8].copy_from_slice(&value.to_le_bytes());
        compiler_fence(Ordering::Release);
    }
}

/// An entry's length with its header, key and padding to 8 bytes.
fn entry_len(key_len: usize, records_len: usize) -> Option<usize> {
    let raw = ENTRY_HEADER_LEN
        .checked_add(key_len)?
        .checked_add(records_len)?;
    let total = raw.checked_add(7)? & !7;
    u32::try_from(total).ok()?;
    Some(total)
}

#[allow(clippy::too_many_arguments)]
fn write_entry_header(
    entry: &mut [u8],
    kind: u32,
    total: usize,
    key: &[u8],
    records_len: usize,
    base_offset: Offset,
    end_offset: Offset,
    leader_epoch: LeaderEpoch,
    appended_at: TimestampMs,
) {
    entry[0..4].copy_from_slice(&ENTRY_MAGIC.to_le_bytes());
    entry[4..8].copy_from_slice(&kind.to_le_bytes());
    entry[8..12].copy_from_slice(&(total as u32).to_le_bytes());
    entry[12..16].copy_from_slice(&(key.len() as u32).to_le_bytes());
    entry[16..20].copy_from_slice(&(records_len as u32).to_le_bytes());
    entry[CRC_AT..CRC_AT + 4].fill(0);
    entry[24..32].copy_from_slice(&base_offset.0.to_le_bytes());
    entry[32..40].copy_from_slice(&end_offset.0.to_le_bytes());
    entry[40..44].copy_from_slice(&leader_epoch.0.to_le_bytes());
    entry[44..48].fill(0);
    entry[48..56].copy_from_slice(&appended_at.0.to_le_bytes());
    entry[ENTRY_HEADER_LEN..ENTRY_HEADER_LEN + key.len()].copy_from_slice(key);
    let crc = crc32c::crc32c(&entry[..ENTRY_HEADER_LEN + key.len()]);
    entry[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Reads the live entries of a journal file left by an earlier run.
pub fn read_journal(path: &Path) -> Result<JournalContents, JournalError> {
    let bytes = std::fs::read(path).map_err(|source| JournalError::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    })?;
    parse_journal(&bytes).map_err(|reason| JournalError::Invalid {
        path: path.to_path_buf(),
        reason,
    })
}

fn parse_journal(bytes: &[u8]) -> Result<JournalContents, &'static str> {
    if bytes.get(..8) != Some(&MAGIC[..]) {
        return Err("bad magic");
    }
    let capacity = u64_at(bytes, 8).ok_or("short header")?;
    let head = u64_at(bytes, HEAD_AT).ok_or("short header")?;
    let tail = u64_at(bytes, TAIL_AT).ok_or("short header")?;
    if capacity == 0
        || !capacity.is_multiple_of(8)
        || bytes.len() as u64 != RING_START as u64 + capacity
    {
        return Err("capacity does not match the file length");
    }
    if tail > head || head - tail > capacity || !tail.is_multiple_of(8) {
        return Err("head and tail are inconsistent");
    }
    let ring = &bytes[RING_START..];
    let mut contents = JournalContents::default();
    let mut position = tail;
    while position < head {
        let at = (position % capacity) as usize;
        let lap_left = capacity as usize - at;
        if lap_left < ENTRY_HEADER_LEN {
            position += lap_left as u64;
            continue;
        }
        match parse_entry(&ring[at..], head - position) {
            Some((total, entry)) => {
                if let Some(entry) = entry {
                    contents.entries.push(entry);
                }
                position += total as u64;
            }
            None => {
                contents.damaged_at = Some(position);
                break;
            }
        }
    }
    Ok(contents)
}

/// Parses the entry at the start of `bytes` (at most `live` of them are published). Returns
/// its total length and, for a data entry, its content.
fn parse_entry(bytes: &[u8], live: u64) -> Option<(usize, Option<JournalEntry>)> {
    if u32_at(bytes, 0)? != ENTRY_MAGIC {
        return None;
    }
    let kind = u32_at(bytes, 4)?;
    let total = u32_at(bytes, 8)? as usize;
    let key_len = u32_at(bytes, 12)? as usize;
    if total < ENTRY_HEADER_LEN
        || !total.is_multiple_of(8)
        || total as u64 > live
        || total > bytes.len()
    {
        return None;
    }
    let records_len = u32_at(bytes, 16)? as usize;
    let records_at = ENTRY_HEADER_LEN.checked_add(key_len)?;
    let records_end = records_at.checked_add(records_len)?;
    if records_end > total {
        return None;
    }
    let mut header = bytes.get(..records_at)?.to_vec();
    let crc = u32_at(&header, CRC_AT)?;
    header[CRC_AT..CRC_AT + 4].fill(0);
    if crc32c::crc32c(&header) != crc {
        return None;
    }
    match kind {
        KIND_PAD => Some((total, None)),
        KIND_DATA => {
            let base_offset = Offset(u64_at(bytes, 24)? as i64);
            let end_offset = Offset(u64_at(bytes, 32)? as i64);
            let leader_epoch = LeaderEpoch(u32_at(bytes, 40)? as i32);
            let appended_at = TimestampMs(u64_at(bytes, 48)? as i64);
            let partition =
                String::from_utf8(bytes.get(ENTRY_HEADER_LEN..records_at)?.to_vec()).ok()?;
            let records = bytes.get(records_at..records_end)?;
            Some((
                total,
                Some(JournalEntry {
                    partition,
                    base_offset,
                    end_offset,
                    leader_epoch,
                    appended_at,
                    records: Bytes::copy_from_slice(records),
                }),
            ))
        }
        _ => None,
    }
}

/// What [`PartitionLog::restore`] did with a journal entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    /// The entry's batches were appended at their old offsets.
    Appended,
    /// The log already holds the entry's offsets (it was written before the process ended).
    AlreadyInLog,
    /// The entry starts after the log's end: an earlier entry is missing, so it cannot be
    /// placed at its offsets.
    Gap,
}

impl<B: Backend> PartitionLog<B> {
    /// Appends a journal entry again if it continues the log exactly (its base offset is the
    /// log end), with its original leader epoch and append time. Entries the log already
    /// holds, or that would leave a gap, are left alone.
    pub fn restore(&self, entry: &JournalEntry) -> Result<Restored, crate::AppendError> {
        let log_end = self.log_end_offset();
        if entry.end_offset <= log_end {
            return Ok(Restored::AlreadyInLog);
        }
        if entry.base_offset != log_end {
            return Ok(Restored::Gap);
        }
        let info = self.append(entry.records.clone(), entry.leader_epoch, entry.appended_at)?;
        if Offset(info.last_offset.0 + 1) != entry.end_offset {
            tracing::warn!(
                dir = %self.dir().display(),
                expected_end = %entry.end_offset,
                restored_end = %Offset(info.last_offset.0 + 1),
                "journal entry restored with a different record count than recorded"
            );
        }
        Ok(Restored::Appended)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{
        backend::{prime_direct_io, DirectBackend},
        config::LogConfig,
        testing::{make_batch, run_local},
    };

    const NOW: TimestampMs = TimestampMs(1_700_000_000_000);

    async fn open(dir: &Path) -> PartitionLog {
        prime_direct_io(dir.parent().unwrap()).await.unwrap();
        PartitionLog::open(DirectBackend, dir, LogConfig::default())
            .await
            .unwrap()
            .0
    }

    /// Appends a batch and records it, as the broker does for an acks=1 produce.
    fn append_and_record(journal: &mut AckJournal, log: &PartitionLog, records: Bytes) -> bool {
        let info = log.append(records.clone(), LeaderEpoch(3), NOW).unwrap();
        journal.record(
            log,
            "t-0",
            info.base_offset,
            Offset(info.last_offset.0 + 1),
            LeaderEpoch(3),
            NOW,
            &records,
        )
    }

    #[test]
    fn entries_read_back_until_their_log_writes_them() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        let path = tmp.path().join("journal");
        run_local(move || async move {
            let log = open(&dir).await;
            let mut journal = AckJournal::create(&path, 1 << 20).unwrap();
            let first = make_batch(3, 100, NOW);
            let second = make_batch(2, 700, NOW);
            assert!(append_and_record(&mut journal, &log, first.clone()));
            assert!(append_and_record(&mut journal, &log, second.clone()));

            // What a killed process leaves: both entries, in order, with their offsets.
            let contents = read_journal(&path).unwrap();
            assert_eq!(contents.damaged_at, None);
            let entries = contents.entries;
            assert_eq!(entries.len(), 2);
            assert_eq!(entries[0].partition, "t-0");
            assert_eq!(
                (entries[0].base_offset, entries[0].end_offset),
                (Offset(0), Offset(3))
            );
            assert_eq!(
                (entries[1].base_offset, entries[1].end_offset),
                (Offset(3), Offset(5))
            );
            assert_eq!(entries[0].records, first);
            assert_eq!(entries[1].records, second);
            assert_eq!(entries[1].leader_epoch, LeaderEpoch(3));
            assert_eq!(entries[1].appended_at, NOW);
            assert!(journal.stats().used_bytes > 0);

            // Once the log has written them they are released.
            log.written().await.unwrap();
            journal.release_written();
            assert_eq!(journal.stats().used_bytes, 0);
            assert!(read_journal(&path).unwrap().entries.is_empty());
            journal.remove().unwrap();
            assert!(!path.exists());
        });
    }

    #[test]
    fn a_full_ring_refuses_and_a_written_log_makes_room_across_the_wrap() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        let path = tmp.path().join("journal");
        run_local(move || async move {
            let log = open(&dir).await;
            let mut journal = AckJournal::create(&path, 64 * 1024).unwrap();
            // ~20 KiB entries: three fit, the fourth does not.
            let batch = make_batch(20, 1_000, NOW);
            for _ in 0..3 {
                assert!(append_and_record(&mut journal, &log, batch.clone()));
            }
            assert!(!append_and_record(&mut journal, &log, batch.clone()));
            assert_eq!(journal.stats().full_count, 1);

            // After the writes, entries go round the ring's end (a pad fills the lap).
            log.written().await.unwrap();
            for _ in 0..3 {
                assert!(append_and_record(&mut journal, &log, batch.clone()));
            }
            let entries = read_journal(&path).unwrap().entries;
            assert_eq!(entries.len(), 3);
            let ends: Vec<i64> = entries.iter().map(|e| e.end_offset.0).collect();
            assert_eq!(ends, vec![100, 120, 140]);
            assert!(entries.iter().all(|e| e.records == batch));
        });
    }

    #[test]
    fn restore_appends_only_the_entries_that_continue_the_log() {
        let tmp = tempfile::tempdir().unwrap();
        let source_dir = tmp.path().join("t-0");
        let target_dir = tmp.path().join("u-0");
        let path = tmp.path().join("journal");
        run_local(move || async move {
            let source = open(&source_dir).await;
            let mut journal = AckJournal::create(&path, 1 << 20).unwrap();
            for values in [100, 200, 300] {
                assert!(append_and_record(
                    &mut journal,
                    &source,
                    make_batch(2, values, NOW)
                ));
            }
            let entries = read_journal(&path).unwrap().entries;
            // A log that had written the first entry before the process ended.
            let target = open(&target_dir).await;
            target
                .append(make_batch(2, 100, NOW), LeaderEpoch(3), NOW)
                .unwrap();
            assert_eq!(target.restore(&entries[0]).unwrap(), Restored::AlreadyInLog);
            assert_eq!(target.restore(&entries[2]).unwrap(), Restored::Gap);
            assert_eq!(target.restore(&entries[1]).unwrap(), Restored::Appended);
            assert_eq!(target.restore(&entries[2]).unwrap(), Restored::Appended);
            assert_eq!(target.log_end_offset(), Offset(6));
            assert_eq!(target.latest_epoch(), Some(LeaderEpoch(3)));
            let restored = target.read(Offset(2), usize::MAX, Offset(6)).unwrap();
            let original = source.read(Offset(2), usize::MAX, Offset(6)).unwrap();
            let mut restored_bytes = Vec::new();
            for chunk in &restored.chunks {
                restored_bytes.extend_from_slice(&chunk.load().await.unwrap());
            }
            let mut original_bytes = Vec::new();
            for chunk in &original.chunks {
                original_bytes.extend_from_slice(&chunk.load().await.unwrap());
            }
            assert_eq!(restored_bytes, original_bytes);
        });
    }

    #[test]
    fn an_unpublished_or_damaged_entry_is_not_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        let path = tmp.path().join("journal");
        let path_in = path.clone();
        run_local(move || async move {
            let log = open(&dir).await;
            let mut journal = AckJournal::create(&path_in, 1 << 20).unwrap();
            assert!(append_and_record(
                &mut journal,
                &log,
                make_batch(1, 10, NOW)
            ));
            assert!(append_and_record(
                &mut journal,
                &log,
                make_batch(1, 10, NOW)
            ));
            std::mem::forget(journal);
        });
        let mut bytes = std::fs::read(&path).unwrap();
        let head = u64_at(&bytes, HEAD_AT).unwrap();
        let first_len = u32_at(&bytes, RING_START + 8).unwrap() as u64;
        // A head that stops inside the second entry: only the first is live.
        bytes[HEAD_AT..HEAD_AT + 8].copy_from_slice(&(first_len + 8).to_le_bytes());
        let contents = parse_journal(&bytes).unwrap();
        assert_eq!(contents.entries.len(), 1);
        assert_eq!(contents.damaged_at, Some(first_len));
        // A flipped key byte fails the entry's CRC.
        bytes[HEAD_AT..HEAD_AT + 8].copy_from_slice(&head.to_le_bytes());
        bytes[RING_START + ENTRY_HEADER_LEN] ^= 1;
        let contents = parse_journal(&bytes).unwrap();
        assert!(contents.entries.is_empty());
        assert_eq!(contents.damaged_at, Some(0));
        assert!(parse_journal(b"not a journal").is_err());
    }
}
