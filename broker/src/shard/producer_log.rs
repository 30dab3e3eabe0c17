//! Producer state across restarts: a snapshot file in the partition directory, written at
//! clean shutdown, and a rebuild from the log's last batches on open.
//!
//! On open: if `producer-state.json` is there and its `end_offset` lies within the log with at
//! most [`SCAN_BYTES_MAX`] of log after it, the snapshot is loaded and the batches after it are
//! replayed (a clean restart replays nothing). Otherwise (first start after a crash, or a
//! snapshot too old) the state is rebuilt from the last [`SCAN_BYTES_MAX`] bytes of the log,
//! reading batch headers through the engine's read API. A producer whose last batches are
//! older than that window is forgotten, which Kafka's rules tolerate: an unknown producer may
//! continue at any sequence (KIP-360); only retries of batches that old lose duplicate
//! detection.
//!
//! The file is JSON ([`super::producer_state::ProducerSnapshot`]); the engine ignores names
//! that are not segment files (engine/FORMAT.md).

use std::path::{Path, PathBuf};

use tracing::{debug, info, warn};
use vaart_engine::{BatchHeader, Offset, PartitionLog};

use super::producer_state::{IncomingBatch, ProducerSnapshot, ProducerStateTable};
use crate::metadata::store::write_atomically;

/// Snapshot file name inside a partition directory.
pub const SNAPSHOT_FILE: &str = "producer-state.json";
/// Most log bytes read to rebuild producer state on open.
pub const SCAN_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Bytes read per step of the rebuild scan.
const SCAN_STEP_BYTES: usize = 1024 * 1024;

/// Loads the producer state of a just-opened partition log in `dir`.
pub async fn load_producer_state(
    log: &PartitionLog,
    dir: &Path,
    now_ms: i64,
) -> ProducerStateTable {
    let log_start = log.log_start_offset();
    let log_end = log.log_end_offset();
    let snapshot = read_snapshot(dir.join(SNAPSHOT_FILE)).await;
    let window_start = scan_window_start(log, log_start, log_end);
    let (mut table, from) = match snapshot {
        Some(snapshot)
            if snapshot.end_offset >= window_start.0 && snapshot.end_offset <= log_end.0 =>
        {
            let from = Offset(snapshot.end_offset);
            (ProducerStateTable::from_snapshot(snapshot), from)
        }
        Some(snapshot) => {
            debug!(dir = %dir.display(), end_offset = snapshot.end_offset, log_end = log_end.0,
                "producer state snapshot outside the scan window; rebuilding from the log");
            (ProducerStateTable::default(), window_start)
        }
        None => (ProducerStateTable::default(), window_start),
    };
    let replayed = replay(log, &mut table, from, log_end, now_ms).await;
    if !table.is_empty() {
        info!(dir = %dir.display(), producers = table.len(), replayed_batches = replayed,
            "producer state loaded");
    }
    table
}

/// Writes `snapshot` (taken with [`ProducerStateTable::snapshot`] after the log was closed)
/// into the partition directory `dir`.
pub async fn write_snapshot(dir: PathBuf, snapshot: ProducerSnapshot) {
    let bytes = ProducerStateTable::encode_snapshot(&snapshot);
    let shown = dir.clone();
    let written = glommio::executor()
        .spawn_blocking(move || write_atomically(&dir, SNAPSHOT_FILE, &bytes))
        .await;
    if let Err(err) = written {
        warn!(dir = %shown.display(), error = %err, "cannot write the producer state snapshot; the next start rebuilds it from the log");
    }
}

async fn read_snapshot(path: PathBuf) -> Option<ProducerSnapshot> {
    let shown = path.clone();
    let bytes = glommio::executor()
        .spawn_blocking(move || std::fs::read(&path))
        .await;
    match bytes {
        Ok(bytes) => match ProducerStateTable::decode_snapshot(&bytes) {
            Ok(snapshot) => Some(snapshot),
            Err(err) => {
                warn!(path = %shown.display(), error = %err, "ignoring the producer state snapshot");
                None
            }
        },
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => {
            warn!(path = %shown.display(), error = %err, "cannot read the producer state snapshot");
            None
        }
    }
}

/// Bytes of log from the batch containing `from` to the log end (in memory: index lookups).
fn bytes_from(log: &PartitionLog, from: Offset, log_end: Offset) -> usize {
    log.read(from, usize::MAX, log_end)
        .map(|result| result.total_bytes)
        .unwrap_or(0)
}

/// The smallest offset with at most [`SCAN_BYTES_MAX`] bytes of log after it (binary search;
/// the byte count only falls as the offset grows).
fn scan_window_start(log: &PartitionLog, log_start: Offset, log_end: Offset) -> Offset {
    let (mut low, mut high) = (log_start.0, log_end.0);
    while low < high {
        let middle = low + (high - low) / 2;
        if bytes_from(log, Offset(middle), log_end) <= SCAN_BYTES_MAX {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    Offset(low)
}

/// Replays every batch from `from` to `log_end` into `table`; returns the number of batches.
async fn replay(
    log: &PartitionLog,
    table: &mut ProducerStateTable,
    from: Offset,
    log_end: Offset,
    now_ms: i64,
) -> usize {
    let mut next = from;
    let mut batches = 0usize;
    while next < log_end {
        let result = match log.read(next, SCAN_STEP_BYTES, log_end) {
            Ok(result) => result,
            Err(err) => {
                warn!(offset = next.0, error = %err, "producer state rebuild: read failed");
                return batches;
            }
        };
        if result.chunks.is_empty() {
            return batches;
        }
        let before = next;
        // Whole batches per buffer (hot-tail chunks may split a batch).
        let buffers = match result.load_contiguous().await {
            Ok(buffers) => buffers,
            Err(err) => {
                warn!(offset = next.0, error = %err, "producer state rebuild: load failed");
                return batches;
            }
        };
        for bytes in buffers {
            let mut rest: &[u8] = &bytes;
            while let Some(header) = BatchHeader::parse(rest) {
                let Some(total) = header.total_len().filter(|t| *t > 0) else {
                    break;
                };
                let base = header.base_offset();
                let batch = IncomingBatch::from_header(header);
                table.replay(&batch, base, now_ms);
                batches += 1;
                next = Offset(
                    base.saturating_add(i64::from(batch.last_offset_delta))
                        .saturating_add(1)
                        .max(next.0),
                );
                rest = rest.get(total..).unwrap_or_default();
            }
        }
        if next <= before {
            // No progress (malformed chunk): stop rather than loop.
            return batches;
        }
    }
    batches
}
