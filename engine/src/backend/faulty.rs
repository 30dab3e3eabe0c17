//! A fault-injecting backend for tests: after a countdown of mutating operations (write,
//! fdatasync, set_len) the next one fails with EIO; a failing write can first write a prefix of
//! its buffer (a torn write). With `sticky`, every later mutating operation fails too, like a
//! device that went away.

use std::{
    cell::Cell,
    io,
    path::{Path, PathBuf},
    rc::Rc,
};

use glommio::io::DmaBuffer;

use super::{
    align_down, Backend, BackendFile, FileHandle, IoFuture, OpenMode, ReadBuf, IO_ALIGNMENT,
};

/// What to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultConfig {
    /// Mutating operations that succeed before the first failure (None = never fail).
    pub fail_after_ops: Option<u64>,
    /// When the failing operation is a write, first write this many bytes of its buffer
    /// (rounded down to 4 KiB) and then report the error.
    pub torn_write_bytes: Option<usize>,
    /// After the first failure, fail every later mutating operation.
    pub sticky: bool,
    /// Count and fail only fdatasync (writes and set_len always succeed).
    pub only_fdatasync: bool,
}

#[derive(Debug, Default)]
struct FaultState {
    config: Cell<FaultConfig>,
    operations: Cell<u64>,
    injected: Cell<u64>,
    tripped: Cell<bool>,
}

/// Controls the faults of a [`FaultyBackend`] (shared by all its clones and files).
#[derive(Debug, Clone, Default)]
pub struct FaultHandle {
    state: Rc<FaultState>,
}

impl FaultHandle {
    /// Replaces the configuration and restarts the countdown.
    pub fn arm(&self, config: FaultConfig) {
        self.state.config.set(config);
        self.state.operations.set(0);
        self.state.tripped.set(false);
    }

    /// Stops injecting faults.
    pub fn disarm(&self) {
        self.arm(FaultConfig::default());
    }

    /// Number of faults injected so far.
    pub fn injected(&self) -> u64 {
        self.state.injected.get()
    }

    /// Mutating operations counted since the last `arm`.
    pub fn operations(&self) -> u64 {
        self.state.operations.get()
    }

    /// Decides whether the current operation fails; counts it.
    fn should_fail(&self, is_sync: bool) -> bool {
        let config = self.state.config.get();
        if config.only_fdatasync && !is_sync {
            return false;
        }
        if config.sticky && self.state.tripped.get() {
            self.state.injected.set(self.state.injected.get() + 1);
            return true;
        }
        let Some(limit) = config.fail_after_ops else {
            return false;
        };
        let done = self.state.operations.get();
        self.state.operations.set(done + 1);
        if done == limit {
            self.state.tripped.set(true);
            self.state.injected.set(self.state.injected.get() + 1);
            true
        } else {
            false
        }
    }
}

fn injected_error() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

/// Wraps a backend and injects faults into its files. Opening, listing and reading never fail.
#[derive(Clone)]
pub struct FaultyBackend<B> {
    inner: B,
    faults: FaultHandle,
}

impl<B: Backend> FaultyBackend<B> {
    /// Wraps `inner`; faults start disarmed.
    pub fn new(inner: B) -> FaultyBackend<B> {
        FaultyBackend {
            inner,
            faults: FaultHandle::default(),
        }
    }

    /// The control handle (shared).
    pub fn faults(&self) -> FaultHandle {
        self.faults.clone()
    }
}

struct FaultyFile {
    inner: FileHandle,
    faults: FaultHandle,
    alloc: Box<dyn Fn(usize) -> DmaBuffer>,
}

impl BackendFile for FaultyFile {
    fn path(&self) -> &Path {
        self.inner.path()
    }

    fn write_at(&self, buffer: DmaBuffer, position: u64) -> IoFuture<'_, usize> {
        Box::pin(async move {
            if !self.faults.should_fail(false) {
                return self.inner.write_at(buffer, position).await;
            }
            let config = self.faults.state.config.get();
            if let Some(torn) = config.torn_write_bytes {
                let keep = align_down(torn.min(buffer.len()) as u64) as usize;
                if keep >= IO_ALIGNMENT as usize {
                    let mut prefix = (self.alloc)(keep);
                    prefix
                        .as_bytes_mut()
                        .copy_from_slice(&buffer.as_bytes()[..keep]);
                    self.inner.write_at(prefix, position).await?;
                }
            }
            Err(injected_error())
        })
    }

    fn read_at(&self, position: u64, len: usize) -> IoFuture<'_, ReadBuf> {
        self.inner.read_at(position, len)
    }

    fn fdatasync(&self) -> IoFuture<'_, ()> {
        Box::pin(async move {
            if self.faults.should_fail(true) {
                return Err(injected_error());
            }
            self.inner.fdatasync().await
        })
    }

    fn set_len(&self, len: u64) -> IoFuture<'_, ()> {
        Box::pin(async move {
            if self.faults.should_fail(false) {
                return Err(injected_error());
            }
            self.inner.set_len(len).await
        })
    }

    fn size(&self) -> IoFuture<'_, u64> {
        self.inner.size()
    }

    fn allocate(&self, len: u64) -> IoFuture<'_, ()> {
        self.inner.allocate(len)
    }
}

impl<B: Backend> Backend for FaultyBackend<B> {
    fn open<'a>(&'a self, path: &'a Path, mode: OpenMode) -> IoFuture<'a, FileHandle> {
        Box::pin(async move {
            let inner = self.inner.open(path, mode).await?;
            let backend = self.inner.clone();
            let handle: FileHandle = Rc::new(FaultyFile {
                inner,
                faults: self.faults.clone(),
                alloc: Box::new(move |len| backend.alloc_buffer(len)),
            });
            Ok(handle)
        })
    }

    fn remove<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()> {
        self.inner.remove(path)
    }

    fn list_dir<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, Vec<PathBuf>> {
        self.inner.list_dir(dir)
    }

    fn create_dir_all<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, ()> {
        self.inner.create_dir_all(dir)
    }

    fn sync_dir<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, ()> {
        self.inner.sync_dir(dir)
    }

    fn alloc_buffer(&self, len: usize) -> DmaBuffer {
        self.inner.alloc_buffer(len)
    }
}
