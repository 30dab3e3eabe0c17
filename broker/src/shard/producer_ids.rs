//! Producer id allocation for InitProducerId, owned by the metadata owner (shard 0).
//!
//! Ids come from a counter persisted in `<data-dir>/vaart-producer-ids.json`. The owner
//! reserves a block of [`BLOCK_SIZE`] ids at a time and persists only the block's end, so a
//! persist happens once per block; after a restart allocation resumes at the persisted end
//! (ids of a partly used block are skipped, never handed out twice).
//!
//! Epoch bump (KIP-360): an InitProducerId that names an id this broker handed out, with its
//! epoch, gets the same id with the epoch plus one, so the producer can reset its sequences
//! without losing its id; at the last epoch a fresh id is allocated instead. (Kafka answers a
//! null `transactional.id` with a fresh id every time; both are valid for clients, which
//! take whatever id and epoch the response carries.)

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;

use glommio::sync::Semaphore;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{info, warn};

use super::producer_state::{ProducerEpoch, ProducerId};
use crate::metadata::store::{write_atomically, StoreError};

/// File name inside the data dir.
pub const PRODUCER_IDS_FILE: &str = "vaart-producer-ids.json";
/// Ids reserved (and persisted) at a time.
pub const BLOCK_SIZE: i64 = 1000;
const FORMAT_VERSION: u32 = 1;

/// Why no producer id could be allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProducerIdError {
    /// The counter could not be read or persisted.
    #[error("the producer id counter could not be read or persisted")]
    Storage,
    /// Every id up to `i64::MAX` was handed out.
    #[error("producer ids are exhausted")]
    Exhausted,
    /// The broker is shutting down (or the owner could not be reached).
    #[error("the broker is shutting down")]
    ShuttingDown,
}

#[derive(Debug, Serialize, Deserialize)]
struct PersistedCounter {
    format: u32,
    /// Every id below this may have been handed out.
    next_block_start: i64,
}

/// Shard 0's allocator.
pub struct ProducerIdAllocator {
    data_dir: PathBuf,
    /// Next id to hand out; `None` until the file was read.
    next: Cell<Option<i64>>,
    /// End (exclusive) of the persisted block.
    block_end: Cell<i64>,
    /// Serialises reads and persists of the file.
    lock: Rc<Semaphore>,
}

impl ProducerIdAllocator {
    /// An allocator for the counter file in `data_dir` (read on first use).
    pub fn new(data_dir: PathBuf) -> ProducerIdAllocator {
        ProducerIdAllocator {
            data_dir,
            next: Cell::new(None),
            block_end: Cell::new(0),
            lock: Rc::new(Semaphore::new(1)),
        }
    }

    /// Answers an InitProducerId without a transactional id: a bumped epoch for a known id and
    /// epoch, else a fresh id at epoch 0.
    pub async fn init(
        &self,
        current: Option<(ProducerId, ProducerEpoch)>,
    ) -> Result<(ProducerId, ProducerEpoch), ProducerIdError> {
        let _turn = self
            .lock
            .acquire_permit(1)
            .await
            .map_err(|_| ProducerIdError::ShuttingDown)?;
        let next = self.load().await?;
        if let Some((id, epoch)) = current {
            let handed_out = id.0 >= 0 && id.0 < next;
            if handed_out && epoch.0 >= 0 && epoch.0 < i16::MAX - 1 {
                return Ok((id, ProducerEpoch(epoch.0 + 1)));
            }
        }
        if next >= self.block_end.get() {
            let end = next
                .checked_add(BLOCK_SIZE)
                .ok_or(ProducerIdError::Exhausted)?;
            self.persist(end).await?;
            self.block_end.set(end);
        }
        self.next.set(Some(next + 1));
        Ok((ProducerId(next), ProducerEpoch(0)))
    }

    /// The next id, reading the file on first use.
    async fn load(&self) -> Result<i64, ProducerIdError> {
        if let Some(next) = self.next.get() {
            return Ok(next);
        }
        let path = self.data_dir.join(PRODUCER_IDS_FILE);
        let shown = path.clone();
        let read = glommio::executor()
            .spawn_blocking(move || std::fs::read(&path))
            .await;
        let start = match read {
            Ok(bytes) => match serde_json::from_slice::<PersistedCounter>(&bytes) {
                Ok(counter)
                    if counter.format == FORMAT_VERSION && counter.next_block_start >= 0 =>
                {
                    counter.next_block_start
                }
                Ok(counter) => {
                    warn!(path = %shown.display(), format = counter.format, "unsupported producer id counter file");
                    return Err(ProducerIdError::Storage);
                }
                Err(err) => {
                    warn!(path = %shown.display(), error = %err, "corrupt producer id counter file");
                    return Err(ProducerIdError::Storage);
                }
            },
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => 0,
            Err(err) => {
                warn!(path = %shown.display(), error = %err, "cannot read the producer id counter");
                return Err(ProducerIdError::Storage);
            }
        };
        info!(next_producer_id = start, "producer id allocation starts");
        self.next.set(Some(start));
        self.block_end.set(start);
        Ok(start)
    }

    async fn persist(&self, block_end: i64) -> Result<(), ProducerIdError> {
        let counter = PersistedCounter {
            format: FORMAT_VERSION,
            next_block_start: block_end,
        };
        let bytes = serde_json::to_vec(&counter).map_err(|_| ProducerIdError::Storage)?;
        let dir = self.data_dir.clone();
        let written: Result<(), StoreError> = glommio::executor()
            .spawn_blocking(move || write_atomically(&dir, PRODUCER_IDS_FILE, &bytes))
            .await;
        written.map_err(|err| {
            warn!(error = %err, "cannot persist the producer id counter");
            ProducerIdError::Storage
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T: Send + 'static, F>(make: impl FnOnce() -> F + Send + 'static) -> T
    where
        F: std::future::Future<Output = T> + 'static,
    {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(make)
            .expect("executor")
            .join()
            .expect("join")
    }

    #[test]
    fn ids_are_unique_across_restarts_and_epochs_bump() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        let first = run({
            let path = path.clone();
            move || async move {
                let allocator = ProducerIdAllocator::new(path);
                let mut ids = Vec::new();
                for _ in 0..3 {
                    ids.push(allocator.init(None).await.expect("allocate"));
                }
                let bumped = allocator
                    .init(Some((ids[1].0, ProducerEpoch(4))))
                    .await
                    .expect("bump");
                let unknown = allocator
                    .init(Some((ProducerId(1_000_000), ProducerEpoch(0))))
                    .await
                    .expect("unknown id");
                (ids, bumped, unknown)
            }
        });
        let (ids, bumped, unknown) = first;
        assert_eq!(
            ids,
            vec![
                (ProducerId(0), ProducerEpoch(0)),
                (ProducerId(1), ProducerEpoch(0)),
                (ProducerId(2), ProducerEpoch(0))
            ]
        );
        assert_eq!(bumped, (ProducerId(1), ProducerEpoch(5)));
        assert_eq!(unknown, (ProducerId(3), ProducerEpoch(0)));
        // After a restart, allocation resumes past the persisted block.
        let after = run(move || async move {
            ProducerIdAllocator::new(path)
                .init(None)
                .await
                .expect("allocate")
        });
        assert_eq!(after, (ProducerId(BLOCK_SIZE), ProducerEpoch(0)));
    }
}
