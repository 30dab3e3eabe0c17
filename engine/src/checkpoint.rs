//! The log-start-offset checkpoint: `log-start-offset.checkpoint`, one 4 KiB block written in
//! place with O_DIRECT. Layout (big-endian): magic `VAARTLSO` (8 bytes), version u32 = 1,
//! offset i64, CRC32C of the previous 20 bytes (u32), zeros to 4096. A damaged or missing
//! checkpoint is ignored (the log then starts at its first segment's base offset).

use std::path::Path;

use crate::{
    backend::{Backend, OpenMode, IO_ALIGNMENT},
    error::LogError,
    segment::read_whole_file,
    types::Offset,
};

/// File name of the checkpoint inside a log directory.
pub const LOG_START_CHECKPOINT: &str = "log-start-offset.checkpoint";
const MAGIC: &[u8; 8] = b"VAARTLSO";
const VERSION: u32 = 1;
const BODY_LEN: usize = 20;

fn encode(offset: Offset) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..8].copy_from_slice(MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_be_bytes());
    out[12..20].copy_from_slice(&offset.0.to_be_bytes());
    let crc = crc32c::crc32c(&out[..BODY_LEN]);
    out[20..24].copy_from_slice(&crc.to_be_bytes());
    out
}

fn decode(bytes: &[u8]) -> Option<Offset> {
    let block = bytes.get(..24)?;
    if &block[..8] != MAGIC || block[8..12] != VERSION.to_be_bytes() {
        return None;
    }
    let crc = u32::from_be_bytes(block[20..24].try_into().ok()?);
    if crc != crc32c::crc32c(&block[..BODY_LEN]) {
        return None;
    }
    Some(Offset(i64::from_be_bytes(block[12..20].try_into().ok()?)))
}

/// Writes and fdatasyncs the checkpoint.
pub(crate) async fn write_log_start<B: Backend>(
    backend: &B,
    dir: &Path,
    offset: Offset,
) -> Result<(), LogError> {
    let path = dir.join(LOG_START_CHECKPOINT);
    let file = backend
        .open(&path, OpenMode::Create)
        .await
        .map_err(|error| LogError::io("open", &path, error))?;
    let mut buffer = backend.alloc_buffer(IO_ALIGNMENT as usize);
    let bytes = buffer.as_bytes_mut();
    bytes.fill(0);
    bytes[..24].copy_from_slice(&encode(offset));
    file.write_at(buffer, 0)
        .await
        .map_err(|error| LogError::io("write", &path, error))?;
    file.fdatasync()
        .await
        .map_err(|error| LogError::io("fdatasync", &path, error))?;
    Ok(())
}

/// Reads the checkpoint; None if missing or damaged.
pub(crate) async fn read_log_start<B: Backend>(
    backend: &B,
    dir: &Path,
) -> Result<Option<Offset>, LogError> {
    let path = dir.join(LOG_START_CHECKPOINT);
    Ok(read_whole_file(backend, &path)
        .await?
        .and_then(|bytes| decode(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trip() {
        let block = encode(Offset(42));
        assert_eq!(decode(&block), Some(Offset(42)));
        let mut damaged = block;
        damaged[15] ^= 1;
        assert_eq!(decode(&damaged), None);
        assert_eq!(decode(&[0u8; 4096]), None);
    }
}
