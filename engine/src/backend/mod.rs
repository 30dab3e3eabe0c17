//! The narrow disk interface the engine uses: open, positional read/write, fdatasync, set_len,
//! size, remove, list and sync a directory. [`DirectBackend`] implements it with glommio's
//! `DmaFile` (O_DIRECT); [`FaultyBackend`] wraps another backend and injects I/O errors and torn
//! writes for tests.
//!
//! File methods return boxed futures so that a file handle can be type-erased
//! (`Rc<dyn BackendFile>`) inside [`crate::SegmentFile`], which the read API hands out.

mod direct;
mod faulty;

use std::{
    future::Future,
    io,
    ops::Deref,
    path::{Path, PathBuf},
    pin::Pin,
    rc::Rc,
};

use bytes::Bytes;
use glommio::io::{DmaBuffer, ReadResult};

pub use direct::{glommio_path, prime_direct_io, DirectBackend, PROBE_FILE_NAME};
pub use faulty::{FaultConfig, FaultHandle, FaultyBackend};

/// Alignment of every write position and length (and of write buffers).
pub const IO_ALIGNMENT: u64 = 4096;

/// A boxed, non-Send future of an I/O result (everything runs on one glommio executor).
pub type IoFuture<'a, T> = Pin<Box<dyn Future<Output = io::Result<T>> + 'a>>;

/// A shared handle to an open file.
pub type FileHandle = Rc<dyn BackendFile>;

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read and write an existing file.
    Existing,
    /// Read and write, creating the file if it does not exist.
    Create,
    /// Read and write an empty file (created or truncated).
    CreateTruncate,
}

/// One open file. Writes must be 4 KiB aligned in position and length (O_DIRECT); reads may
/// be unaligned (the implementation aligns internally).
pub trait BackendFile {
    /// The path the file was opened with.
    fn path(&self) -> &Path;
    /// Writes all of `buffer` at `position`; returns the bytes written (may be short).
    fn write_at(&self, buffer: DmaBuffer, position: u64) -> IoFuture<'_, usize>;
    /// Reads up to `len` bytes at `position` (short only at end of file).
    fn read_at(&self, position: u64, len: usize) -> IoFuture<'_, ReadBuf>;
    /// fdatasync(2).
    fn fdatasync(&self) -> IoFuture<'_, ()>;
    /// ftruncate(2).
    fn set_len(&self, len: u64) -> IoFuture<'_, ()>;
    /// Makes the file at least `len` bytes long with allocated, zero-reading blocks
    /// (fallocate(2) mode 0), so that later writes below `len` do not extend the file. Existing
    /// data is never changed. A hint: backends without it do nothing.
    fn allocate(&self, len: u64) -> IoFuture<'_, ()> {
        let _ = len;
        Box::pin(async { Ok(()) })
    }
    /// Current file size.
    fn size(&self) -> IoFuture<'_, u64>;
}

/// Directory-level operations and file opening.
pub trait Backend: Clone + 'static {
    /// Opens `path`.
    fn open<'a>(&'a self, path: &'a Path, mode: OpenMode) -> IoFuture<'a, FileHandle>;
    /// Removes a file (missing files are not an error).
    fn remove<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()>;
    /// Lists the entries of a directory (full paths).
    fn list_dir<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, Vec<PathBuf>>;
    /// Creates a directory and its parents.
    fn create_dir_all<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, ()>;
    /// fsyncs a directory (makes created and removed names durable).
    fn sync_dir<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, ()>;
    /// Renames `from` to `to`, replacing `to` atomically (rename(2)); log compaction swaps a
    /// cleaned segment in this way. Not fault-injected by [`FaultyBackend`].
    fn rename<'a>(&'a self, from: &'a Path, to: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(async move { Ok(glommio::io::rename(from, to).await?) })
    }
    /// Allocates an aligned write buffer of `len` bytes (a multiple of 4 KiB).
    fn alloc_buffer(&self, len: usize) -> DmaBuffer {
        glommio::allocate_dma_buffer(len)
    }
}

/// Bytes read from a file: derefs to exactly the requested range, without an extra copy.
#[derive(Clone)]
pub struct ReadBuf {
    inner: ReadBufInner,
}

#[derive(Clone)]
enum ReadBufInner {
    Dma(ReadResult),
    Bytes(Bytes),
}

impl ReadBuf {
    /// Wraps a glommio read result.
    pub fn from_dma(result: ReadResult) -> ReadBuf {
        ReadBuf {
            inner: ReadBufInner::Dma(result),
        }
    }

    /// Wraps bytes (for backends that are not DMA based, and for tests).
    pub fn from_bytes(bytes: Bytes) -> ReadBuf {
        ReadBuf {
            inner: ReadBufInner::Bytes(bytes),
        }
    }

    /// A sub-range (None if out of bounds).
    pub fn slice(&self, start: usize, len: usize) -> Option<ReadBuf> {
        let end = start.checked_add(len)?;
        if end > self.len() {
            return None;
        }
        Some(match &self.inner {
            ReadBufInner::Dma(result) => {
                if len == 0 {
                    ReadBuf::from_bytes(Bytes::new())
                } else {
                    ReadBuf::from_dma(ReadResult::slice(result, start, len)?)
                }
            }
            ReadBufInner::Bytes(bytes) => ReadBuf::from_bytes(bytes.slice(start..end)),
        })
    }
}

impl Deref for ReadBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.inner {
            ReadBufInner::Dma(result) => result,
            ReadBufInner::Bytes(bytes) => bytes,
        }
    }
}

impl AsRef<[u8]> for ReadBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for ReadBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadBuf").field("len", &self.len()).finish()
    }
}

/// Rounds `value` down to the I/O alignment.
pub(crate) fn align_down(value: u64) -> u64 {
    value & !(IO_ALIGNMENT - 1)
}

/// Rounds `value` up to the I/O alignment.
pub(crate) fn align_up(value: u64) -> u64 {
    value.div_ceil(IO_ALIGNMENT) * IO_ALIGNMENT
}
