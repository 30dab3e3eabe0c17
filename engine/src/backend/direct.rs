//! The production backend: glommio `DmaFile` (O_DIRECT through io_uring).

use std::{
    borrow::Cow,
    io,
    path::{Path, PathBuf},
    rc::Rc,
};

use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

use super::{Backend, BackendFile, FileHandle, IoFuture, OpenMode, ReadBuf};
use crate::error::LogError;

/// Name of the marker file written by [`prime_direct_io`].
pub const PROBE_FILE_NAME: &str = ".vaart-direct-io-probe";

/// Direct I/O through glommio's `DmaFile`. Directory listing and creation use std (they only
/// happen when a log is opened).
#[derive(Debug, Clone, Copy, Default)]
pub struct DirectBackend;

struct DirectFile {
    file: DmaFile,
    path: PathBuf,
}

impl BackendFile for DirectFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn write_at(&self, buffer: DmaBuffer, position: u64) -> IoFuture<'_, usize> {
        Box::pin(async move { Ok(self.file.write_at(buffer, position).await?) })
    }

    fn read_at(&self, position: u64, len: usize) -> IoFuture<'_, ReadBuf> {
        Box::pin(async move {
            if len == 0 {
                return Ok(ReadBuf::from_bytes(bytes::Bytes::new()));
            }
            Ok(ReadBuf::from_dma(self.file.read_at(position, len).await?))
        })
    }

    fn fdatasync(&self) -> IoFuture<'_, ()> {
        Box::pin(async move { Ok(self.file.fdatasync().await?) })
    }

    fn set_len(&self, len: u64) -> IoFuture<'_, ()> {
        Box::pin(async move { Ok(self.file.truncate(len).await?) })
    }

    fn size(&self) -> IoFuture<'_, u64> {
        Box::pin(async move { Ok(self.file.file_size().await?) })
    }

    fn allocate(&self, len: u64) -> IoFuture<'_, ()> {
        Box::pin(async move { Ok(self.file.pre_allocate(len, false).await?) })
    }
}

/// `path`, made absolute against the current directory if it is relative. glommio 0.9 opens
/// files and directories with `openat(-1, path)` instead of `AT_FDCWD`, so a relative path
/// fails with EBADF ("Bad file descriptor"): with the broker's default `./vaart-data` every
/// new partition's log was poisoned at its first directory fsync. Every path this module
/// hands to glommio goes through here.
pub fn glommio_path(path: &Path) -> io::Result<Cow<'_, Path>> {
    if path.is_absolute() {
        Ok(Cow::Borrowed(path))
    } else {
        std::path::absolute(path).map(Cow::Owned)
    }
}

impl Backend for DirectBackend {
    fn open<'a>(&'a self, path: &'a Path, mode: OpenMode) -> IoFuture<'a, FileHandle> {
        Box::pin(async move {
            let mut options = OpenOptions::new();
            options.read(true).write(true);
            match mode {
                OpenMode::Existing => {}
                OpenMode::Create => {
                    options.create(true);
                }
                OpenMode::CreateTruncate => {
                    options.create(true).truncate(true);
                }
            }
            let file = options.dma_open(glommio_path(path)?).await?;
            let handle: FileHandle = Rc::new(DirectFile {
                file,
                path: path.to_path_buf(),
            });
            Ok(handle)
        })
    }

    fn remove<'a>(&'a self, path: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(async move {
            match glommio::io::remove(path).await {
                Ok(()) => Ok(()),
                Err(error) => {
                    let error = io::Error::from(error);
                    if error.kind() == io::ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(error)
                    }
                }
            }
        })
    }

    fn list_dir<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, Vec<PathBuf>> {
        Box::pin(async move {
            let mut paths = Vec::new();
            for entry in std::fs::read_dir(dir)? {
                paths.push(entry?.path());
            }
            Ok(paths)
        })
    }

    fn create_dir_all<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(async move { std::fs::create_dir_all(dir) })
    }

    fn sync_dir<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(async move {
            let directory = glommio::io::Directory::open(glommio_path(dir)?).await?;
            let synced = directory.sync().await;
            directory.close().await?;
            Ok(synced?)
        })
    }
}

/// Glommio probe workaround (RUNTIME-NOTES pitfall 1): glommio decides once per block device,
/// by reading the first `DmaFile` the process opens, whether polled I/O works; a new empty file
/// makes the probe wrongly succeed and every later O_DIRECT read then fails with EOPNOTSUPP.
/// Call this once per data directory at startup, before opening any log: it writes a 4 KiB
/// marker file with std and reads it back through `DmaFile`.
pub async fn prime_direct_io(data_dir: &Path) -> Result<(), LogError> {
    std::fs::create_dir_all(data_dir)
        .map_err(|error| LogError::io("create directory", data_dir, error))?;
    let path = data_dir.join(PROBE_FILE_NAME);
    let needs_write = match std::fs::metadata(&path) {
        Ok(metadata) => metadata.len() < 4096,
        Err(_) => true,
    };
    if needs_write {
        std::fs::write(&path, vec![b'V'; 4096])
            .map_err(|error| LogError::io("write probe file", &path, error))?;
    }
    let absolute =
        glommio_path(&path).map_err(|error| LogError::io("resolve probe file", &path, error))?;
    let file = DmaFile::open(&absolute)
        .await
        .map_err(|error| LogError::io("open probe file", &path, error.into()))?;
    let read = file.read_at_aligned(0, 4096).await;
    let _ = file.close().await;
    let read = read.map_err(|error| LogError::io("read probe file", &path, error.into()))?;
    if read.len() != 4096 {
        return Err(LogError::ShortRead {
            path,
            position: 0,
            expected: 4096,
            actual: read.len(),
        });
    }
    Ok(())
}
