//! Idempotent-producer state of one partition, owned by the partition's shard (no locks: it
//! lives beside the partition log and is only touched on that shard).
//!
//! Kafka's rules (`ProducerStateManager` / `ProducerAppendInfo`), for batches whose
//! `producerId` is set (>= 0):
//! - a retry of one of the producer's last [`BATCHES_RETAINED`] batches (same epoch, same first
//!   and last sequence) is a duplicate: the produce succeeds with the original base offset and
//!   nothing is appended;
//! - an epoch older than the producer's current one is `INVALID_PRODUCER_EPOCH`;
//! - a new epoch must start at sequence 0, and within an epoch each batch must start right
//!   after the previous one's last sequence (wrapping at `i32::MAX`), else
//!   `OUT_OF_ORDER_SEQUENCE_NUMBER`;
//! - a producer id the partition does not know accepts any sequence (KIP-360: Kafka 2.5+ no
//!   longer answers `UNKNOWN_PRODUCER_ID` for idempotent producers; the state may simply have
//!   expired or been removed with old segments).
//!
//! Checking ([`ProducerStateTable::check`]) is separate from recording
//! ([`ProducerStateTable::record`]): the produce path checks, appends, and records only when
//! the append succeeded, all without an await in between, so no other append can interleave.
//!
//! Bounds: an entry keeps at most [`BATCHES_RETAINED`] batches; producers not heard from for
//! `producer.id.expiration.ms` are dropped (checked every [`EXPIRATION_CHECK_INTERVAL_MS`]);
//! and a partition remembers at most [`PRODUCERS_PER_PARTITION_MAX`] producers, evicting the
//! least recently active tenth when it is full.
//!
//! The table persists as a small JSON snapshot ([`ProducerSnapshot`]); see
//! [`super::producer_log`] for the file and the rebuild from the log.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use vaart_engine::{BatchHeader, BATCH_HEADER_LEN};

use crate::protocol::KafkaError;

/// Batches remembered per producer for duplicate detection (Kafka's `NUM_BATCHES_TO_RETAIN`,
/// which is also the client's `max.in.flight.requests.per.connection` bound for idempotence).
pub const BATCHES_RETAINED: usize = 5;
/// Most producers one partition remembers.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 100_000;
/// How often expired producers are looked for (Kafka's
/// `producer.id.expiration.check.interval.ms` default).
pub const EXPIRATION_CHECK_INTERVAL_MS: i64 = 600_000;
/// `producerEpoch` of a batch without a producer.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// Attribute bit 4: transactional batch.
const ATTR_TRANSACTIONAL: i16 = 0x10;
/// Attribute bit 5: control batch.
const ATTR_CONTROL: i16 = 0x20;

/// A producer id (from InitProducerId).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProducerId(pub i64);

/// A producer epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProducerEpoch(pub i16);

/// What the produce path needs from one incoming batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncomingBatch {
    /// `producerId` (-1 = none).
    pub producer_id: i64,
    /// `producerEpoch`.
    pub producer_epoch: i16,
    /// `baseSequence`.
    pub base_sequence: i32,
    /// `lastOffsetDelta` (records in the batch minus one).
    pub last_offset_delta: i32,
    /// `maxTimestamp`.
    pub max_timestamp_ms: i64,
    /// Attribute bit 4.
    pub transactional: bool,
    /// Attribute bit 5.
    pub control: bool,
}

impl IncomingBatch {
    /// Reads the fields from a batch header.
    pub fn from_header(header: &BatchHeader) -> IncomingBatch {
        let attributes = header.attributes();
        IncomingBatch {
            producer_id: header.producer_id(),
            producer_epoch: header.producer_epoch(),
            base_sequence: header.base_sequence(),
            last_offset_delta: header.last_offset_delta(),
            max_timestamp_ms: header.max_timestamp(),
            transactional: attributes & ATTR_TRANSACTIONAL != 0,
            control: attributes & ATTR_CONTROL != 0,
        }
    }

    /// Kafka's `hasProducerId`: a producer id was assigned by InitProducerId.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// The sequence of the batch's last record (sequences wrap from `i32::MAX` to 0).
    pub fn last_sequence(&self) -> i32 {
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }
}

/// Kafka's `DefaultRecordBatch.incrementSequence`: sequences wrap around to 0 after `i32::MAX`.
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    let sum = i64::from(sequence) + i64::from(increment);
    if sum > i64::from(i32::MAX) {
        // Wrapped: continue from 0.
        i32::try_from(sum - i64::from(i32::MAX) - 1).unwrap_or(0)
    } else {
        i32::try_from(sum).unwrap_or(i32::MAX)
    }
}

/// The header fields of every batch in `records` (concatenated batches, as produced), without
/// validating CRCs. `None` if the bytes do not split into whole batches; the engine's append
/// then rejects them with the precise error.
pub fn incoming_batches(records: &[u8]) -> Option<Vec<IncomingBatch>> {
    let mut batches = Vec::with_capacity(1);
    let mut rest = records;
    while !rest.is_empty() {
        let header = BatchHeader::parse(rest)?;
        let total = header.total_len().filter(|t| *t >= BATCH_HEADER_LEN)?;
        batches.push(IncomingBatch::from_header(header));
        rest = rest.get(total..)?;
    }
    Some(batches)
}

/// One batch a producer wrote, as remembered for duplicate detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchMetadata {
    /// Sequence of the first record.
    pub first_sequence: i32,
    /// Sequence of the last record.
    pub last_sequence: i32,
    /// Offset assigned to the first record.
    pub first_offset: i64,
    /// Offset assigned to the last record.
    pub last_offset: i64,
    /// The batch's max timestamp (or the append time with LogAppendTime).
    pub timestamp_ms: i64,
}

/// One producer's state in one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    /// Current epoch.
    pub epoch: i16,
    /// Its last batches, oldest first, at most [`BATCHES_RETAINED`].
    pub batches: VecDeque<BatchMetadata>,
    /// When this producer last appended (broker clock; for expiration).
    pub last_append_ms: i64,
}

impl ProducerEntry {
    fn empty() -> ProducerEntry {
        ProducerEntry {
            epoch: NO_PRODUCER_EPOCH,
            batches: VecDeque::new(),
            last_append_ms: 0,
        }
    }

    fn last_sequence(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_sequence)
    }

    /// Kafka's `findDuplicateBatch`.
    fn duplicate_of(&self, batch: &IncomingBatch) -> Option<BatchMetadata> {
        if batch.producer_epoch != self.epoch {
            return None;
        }
        let last_sequence = batch.last_sequence();
        self.batches
            .iter()
            .find(|m| m.first_sequence == batch.base_sequence && m.last_sequence == last_sequence)
            .copied()
    }

    /// Kafka's `ProducerStateEntry.addBatch`: a new epoch forgets the old epoch's batches.
    fn add_batch(&mut self, epoch: i16, metadata: BatchMetadata, now_ms: i64) {
        if epoch != self.epoch {
            self.batches.clear();
            self.epoch = epoch;
        }
        self.batches.push_back(metadata);
        while self.batches.len() > BATCHES_RETAINED {
            self.batches.pop_front();
        }
        self.last_append_ms = now_ms;
    }
}

/// The answer to "may these batches be appended?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Append them, then [`ProducerStateTable::record`] the offsets.
    Append,
    /// A retry of a batch already in the log: answer with its offsets, append nothing.
    Duplicate(BatchMetadata),
    /// Refuse the produce for this partition.
    Reject {
        /// The Kafka error.
        error: KafkaError,
        /// A message for the log and the response (Produce v8+).
        message: String,
    },
}

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Not valid snapshot JSON.
    #[error("producer state snapshot is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// Written by a newer Vaart.
    #[error("producer state snapshot has format {0}; this Vaart reads format {SNAPSHOT_FORMAT}")]
    UnsupportedFormat(u32),
}

/// Format number of [`ProducerSnapshot`].
pub const SNAPSHOT_FORMAT: u32 = 1;

/// The persisted form of a [`ProducerStateTable`]: the state after every batch below
/// `end_offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerSnapshot {
    /// [`SNAPSHOT_FORMAT`].
    pub format: u32,
    /// The log end offset the state is complete up to.
    pub end_offset: i64,
    /// Producers.
    pub producers: Vec<SnapshotProducer>,
}

/// One producer in a [`ProducerSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotProducer {
    /// Producer id.
    pub id: i64,
    /// Its state.
    #[serde(flatten)]
    pub entry: ProducerEntry,
}

/// The producer state of one partition. Owned by the partition's shard.
#[derive(Debug, Default)]
pub struct ProducerStateTable {
    producers: HashMap<ProducerId, ProducerEntry>,
    last_expiration_check_ms: i64,
}

impl ProducerStateTable {
    /// Producers remembered.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// True if no producer is remembered.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// A producer's entry.
    pub fn entry(&self, id: ProducerId) -> Option<&ProducerEntry> {
        self.producers.get(&id)
    }

    /// Checks client batches against the state, as Kafka's `analyzeAndValidateProducerState`
    /// does: the first duplicate answers for the whole append; otherwise every batch must pass
    /// the epoch and sequence rules (several batches of one producer chain on each other).
    pub fn check(&self, batches: &[IncomingBatch]) -> Verdict {
        if let Some(batch) = batches.iter().find(|b| b.transactional) {
            return Verdict::Reject {
                error: KafkaError::InvalidRequest,
                message: format!(
                    "transactional record batches (producer id {}) are not supported by this broker: transactions are not implemented yet",
                    batch.producer_id
                ),
            };
        }
        // Entries updated by earlier batches of this same append.
        let mut updated: Vec<(ProducerId, ProducerEntry)> = Vec::new();
        for batch in batches.iter().filter(|b| b.has_producer_id()) {
            let id = ProducerId(batch.producer_id);
            if batch.base_sequence < 0 {
                return Verdict::Reject {
                    error: KafkaError::InvalidRecord,
                    message: format!(
                        "invalid sequence number {} in a record batch with producer id {}",
                        batch.base_sequence, batch.producer_id
                    ),
                };
            }
            let current = self.producers.get(&id);
            if let Some(duplicate) = current.and_then(|entry| entry.duplicate_of(batch)) {
                return Verdict::Duplicate(duplicate);
            }
            let position = match updated.iter().position(|(p, _)| *p == id) {
                Some(position) => position,
                None => {
                    let start = current.cloned().unwrap_or_else(ProducerEntry::empty);
                    updated.push((id, start));
                    updated.len() - 1
                }
            };
            let Some((_, entry)) = updated.get_mut(position) else {
                continue;
            };
            if let Err((error, message)) = check_batch(entry, batch) {
                return Verdict::Reject { error, message };
            }
            // Offsets are not known yet; only the sequences matter for the next batch.
            let metadata = BatchMetadata {
                first_sequence: batch.base_sequence,
                last_sequence: batch.last_sequence(),
                first_offset: -1,
                last_offset: -1,
                timestamp_ms: batch.max_timestamp_ms,
            };
            entry.add_batch(batch.producer_epoch, metadata, 0);
        }
        Verdict::Append
    }

    /// Records appended batches: the engine assigned them consecutive offsets from
    /// `base_offset`. `append_time_ms` replaces the batch timestamps with LogAppendTime.
    pub fn record(
        &mut self,
        batches: &[IncomingBatch],
        base_offset: i64,
        append_time_ms: Option<i64>,
        now_ms: i64,
    ) {
        let mut first_offset = base_offset;
        for batch in batches {
            let last_offset = first_offset.saturating_add(i64::from(batch.last_offset_delta));
            if batch.has_producer_id() && !batch.control {
                let metadata = BatchMetadata {
                    first_sequence: batch.base_sequence,
                    last_sequence: batch.last_sequence(),
                    first_offset,
                    last_offset,
                    timestamp_ms: append_time_ms.unwrap_or(batch.max_timestamp_ms),
                };
                self.upsert(ProducerId(batch.producer_id)).add_batch(
                    batch.producer_epoch,
                    metadata,
                    now_ms,
                );
            }
            first_offset = last_offset.saturating_add(1);
        }
        self.enforce_capacity();
    }

    /// Rebuilds state from a batch already in the log (recovery): no validation, as Kafka
    /// replays with `AppendOrigin.REPLICATION`-like trust.
    pub fn replay(&mut self, batch: &IncomingBatch, first_offset: i64, now_ms: i64) {
        if !batch.has_producer_id() || batch.control {
            return;
        }
        let metadata = BatchMetadata {
            first_sequence: batch.base_sequence,
            last_sequence: batch.last_sequence(),
            first_offset,
            last_offset: first_offset.saturating_add(i64::from(batch.last_offset_delta)),
            timestamp_ms: batch.max_timestamp_ms,
        };
        self.upsert(ProducerId(batch.producer_id)).add_batch(
            batch.producer_epoch,
            metadata,
            now_ms,
        );
        self.enforce_capacity();
    }

    fn upsert(&mut self, id: ProducerId) -> &mut ProducerEntry {
        self.producers
            .entry(id)
            .or_insert_with(ProducerEntry::empty)
    }

    /// Drops producers idle for `expiration_ms`, at most once per
    /// [`EXPIRATION_CHECK_INTERVAL_MS`]. Returns how many were dropped.
    pub fn maybe_expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        if now_ms.saturating_sub(self.last_expiration_check_ms) < EXPIRATION_CHECK_INTERVAL_MS {
            return 0;
        }
        self.last_expiration_check_ms = now_ms;
        let before = self.producers.len();
        self.producers
            .retain(|_, entry| now_ms.saturating_sub(entry.last_append_ms) < expiration_ms);
        before - self.producers.len()
    }

    /// Keeps the table within [`PRODUCERS_PER_PARTITION_MAX`] by evicting the least recently
    /// active tenth (amortised: a full table does not pay a scan per new producer).
    fn enforce_capacity(&mut self) {
        if self.producers.len() <= PRODUCERS_PER_PARTITION_MAX {
            return;
        }
        let evict = (PRODUCERS_PER_PARTITION_MAX / 10).max(1);
        let mut by_age: Vec<(i64, ProducerId)> = self
            .producers
            .iter()
            .map(|(id, entry)| (entry.last_append_ms, *id))
            .collect();
        let nth = evict.min(by_age.len().saturating_sub(1));
        by_age.select_nth_unstable(nth);
        for (_, id) in by_age.iter().take(evict) {
            self.producers.remove(id);
        }
        tracing::warn!(
            evicted = evict,
            limit = PRODUCERS_PER_PARTITION_MAX,
            "too many idempotent producers on one partition; forgot the least recently active"
        );
    }

    /// The snapshot of this table, complete up to `end_offset`.
    pub fn snapshot(&self, end_offset: i64) -> ProducerSnapshot {
        let mut producers: Vec<SnapshotProducer> = self
            .producers
            .iter()
            .map(|(id, entry)| SnapshotProducer {
                id: id.0,
                entry: entry.clone(),
            })
            .collect();
        producers.sort_by_key(|p| p.id);
        ProducerSnapshot {
            format: SNAPSHOT_FORMAT,
            end_offset,
            producers,
        }
    }

    /// A table from a snapshot.
    pub fn from_snapshot(snapshot: ProducerSnapshot) -> ProducerStateTable {
        let mut table = ProducerStateTable::default();
        for producer in snapshot.producers {
            let mut entry = producer.entry;
            while entry.batches.len() > BATCHES_RETAINED {
                entry.batches.pop_front();
            }
            table.producers.insert(ProducerId(producer.id), entry);
        }
        table.enforce_capacity();
        table
    }

    /// Encodes a snapshot as JSON.
    pub fn encode_snapshot(snapshot: &ProducerSnapshot) -> Vec<u8> {
        serde_json::to_vec(snapshot).unwrap_or_default()
    }

    /// Decodes a snapshot.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<ProducerSnapshot, SnapshotError> {
        let snapshot: ProducerSnapshot = serde_json::from_slice(bytes)?;
        if snapshot.format != SNAPSHOT_FORMAT {
            return Err(SnapshotError::UnsupportedFormat(snapshot.format));
        }
        Ok(snapshot)
    }
}

/// Kafka's `checkProducerEpoch` + `checkSequence` for one client batch against the entry as
/// updated by the earlier batches of the same append.
fn check_batch(entry: &ProducerEntry, batch: &IncomingBatch) -> Result<(), (KafkaError, String)> {
    let id = batch.producer_id;
    if batch.producer_epoch < entry.epoch {
        return Err((
            KafkaError::InvalidProducerEpoch,
            format!(
                "epoch {} of producer {id} is older than its current epoch {}",
                batch.producer_epoch, entry.epoch
            ),
        ));
    }
    if batch.producer_epoch != entry.epoch {
        // A new epoch (or a producer this partition does not know) starts at sequence 0;
        // an unknown producer may start anywhere (KIP-360).
        if batch.base_sequence != 0 && entry.epoch != NO_PRODUCER_EPOCH {
            return Err((
                KafkaError::OutOfOrderSequenceNumber,
                format!(
                    "invalid sequence number {} for new epoch {} of producer {id} (current epoch {}): a new epoch starts at 0",
                    batch.base_sequence, batch.producer_epoch, entry.epoch
                ),
            ));
        }
        return Ok(());
    }
    match entry.last_sequence() {
        Some(last) if !in_sequence(last, batch.base_sequence) => Err((
            KafkaError::OutOfOrderSequenceNumber,
            format!(
                "out of order sequence number for producer {id}: {} (incoming), {last} (last appended)",
                batch.base_sequence
            ),
        )),
        _ => Ok(()),
    }
}

/// Kafka's `inSequence`.
fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn batch(producer_id: i64, epoch: i16, base_sequence: i32, records: i32) -> IncomingBatch {
        IncomingBatch {
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            last_offset_delta: records - 1,
            max_timestamp_ms: 1_000,
            transactional: false,
            control: false,
        }
    }

    fn append(table: &mut ProducerStateTable, batches: &[IncomingBatch], next_offset: &mut i64) {
        assert_eq!(table.check(batches), Verdict::Append);
        table.record(batches, *next_offset, None, 5);
        for b in batches {
            *next_offset += i64::from(b.last_offset_delta) + 1;
        }
    }

    fn rejected(verdict: Verdict) -> KafkaError {
        match verdict {
            Verdict::Reject { error, .. } => error,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn in_order_batches_append_and_retries_of_the_last_five_are_duplicates() {
        let mut table = ProducerStateTable::default();
        let mut offset = 100;
        for i in 0..7 {
            append(&mut table, &[batch(7, 0, i * 10, 10)], &mut offset);
        }
        // The last five (sequences 20..69) are remembered with their offsets.
        for i in 2..7 {
            match table.check(&[batch(7, 0, i * 10, 10)]) {
                Verdict::Duplicate(meta) => {
                    assert_eq!(meta.first_offset, 100 + i64::from(i) * 10);
                    assert_eq!(meta.last_offset, 109 + i64::from(i) * 10);
                }
                other => panic!("batch {i}: {other:?}"),
            }
        }
        // Older ones are out of order (too old to be recognised).
        assert_eq!(
            rejected(table.check(&[batch(7, 0, 0, 10)])),
            KafkaError::OutOfOrderSequenceNumber
        );
        // Same first sequence but a different last sequence is not a duplicate.
        assert_eq!(
            rejected(table.check(&[batch(7, 0, 60, 5)])),
            KafkaError::OutOfOrderSequenceNumber
        );
    }

    #[test]
    fn gaps_and_stale_epochs_are_rejected() {
        let mut table = ProducerStateTable::default();
        let mut offset = 0;
        append(&mut table, &[batch(1, 3, 0, 5)], &mut offset);
        assert_eq!(
            rejected(table.check(&[batch(1, 3, 6, 1)])),
            KafkaError::OutOfOrderSequenceNumber
        );
        assert_eq!(
            rejected(table.check(&[batch(1, 2, 5, 1)])),
            KafkaError::InvalidProducerEpoch
        );
        // A bumped epoch must restart at 0.
        assert_eq!(
            rejected(table.check(&[batch(1, 4, 5, 1)])),
            KafkaError::OutOfOrderSequenceNumber
        );
        append(&mut table, &[batch(1, 4, 0, 1)], &mut offset);
        // The old epoch's batches are forgotten: a retry of them is now a stale epoch.
        assert_eq!(
            rejected(table.check(&[batch(1, 3, 0, 5)])),
            KafkaError::InvalidProducerEpoch
        );
    }

    #[test]
    fn unknown_producers_may_start_at_any_sequence_and_non_idempotent_batches_pass() {
        let table = ProducerStateTable::default();
        assert_eq!(table.check(&[batch(9, 0, 42, 3)]), Verdict::Append);
        assert_eq!(table.check(&[batch(-1, -1, -1, 3)]), Verdict::Append);
        assert_eq!(
            rejected(table.check(&[batch(9, 0, -5, 3)])),
            KafkaError::InvalidRecord
        );
        let mut transactional = batch(9, 0, 0, 1);
        transactional.transactional = true;
        assert_eq!(
            rejected(table.check(&[transactional])),
            KafkaError::InvalidRequest
        );
    }

    #[test]
    fn several_batches_of_one_producer_chain_in_one_append() {
        let mut table = ProducerStateTable::default();
        let mut offset = 0;
        append(
            &mut table,
            &[batch(1, 0, 0, 2), batch(1, 0, 2, 3), batch(2, 0, 0, 1)],
            &mut offset,
        );
        assert_eq!(offset, 6);
        let entry = table.entry(ProducerId(1)).expect("entry");
        assert_eq!(entry.batches.len(), 2);
        assert_eq!(entry.batches[1].first_offset, 2);
        assert_eq!(entry.batches[1].last_offset, 4);
        assert_eq!(
            table.entry(ProducerId(2)).expect("entry").batches[0].first_offset,
            5
        );
        assert_eq!(
            rejected(table.check(&[batch(1, 0, 5, 1), batch(1, 0, 7, 1)])),
            KafkaError::OutOfOrderSequenceNumber
        );
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        let mut table = ProducerStateTable::default();
        let mut offset = 0;
        append(&mut table, &[batch(1, 0, i32::MAX - 1, 2)], &mut offset);
        append(&mut table, &[batch(1, 0, 0, 2)], &mut offset);
    }

    #[test]
    fn snapshots_round_trip() {
        let mut table = ProducerStateTable::default();
        let mut offset = 0;
        append(&mut table, &[batch(1, 0, 0, 2)], &mut offset);
        append(&mut table, &[batch(5, 2, 0, 1)], &mut offset);
        let snapshot = table.snapshot(offset);
        let bytes = ProducerStateTable::encode_snapshot(&snapshot);
        let decoded = ProducerStateTable::decode_snapshot(&bytes).expect("decode");
        assert_eq!(decoded, snapshot);
        let restored = ProducerStateTable::from_snapshot(decoded);
        assert!(matches!(
            restored.check(&[batch(5, 2, 0, 1)]),
            Verdict::Duplicate(m) if m.first_offset == 2
        ));
        assert!(ProducerStateTable::decode_snapshot(
            b"{\"format\":9,\"end_offset\":0,\"producers\":[]}"
        )
        .is_err());
        assert!(ProducerStateTable::decode_snapshot(b"nonsense").is_err());
    }

    #[test]
    fn idle_producers_expire() {
        let mut table = ProducerStateTable::default();
        table.record(&[batch(1, 0, 0, 1)], 0, None, 1_000);
        table.record(&[batch(2, 0, 0, 1)], 1, None, 900_000);
        assert_eq!(table.maybe_expire(1_000_000, 500_000), 1);
        assert!(table.entry(ProducerId(1)).is_none());
        assert!(table.entry(ProducerId(2)).is_some());
        // Not checked again within the interval.
        assert_eq!(table.maybe_expire(1_000_001, 1), 0);
    }

    #[test]
    fn header_walk_reads_every_batch_and_refuses_partial_ones() {
        let mut one = vec![0u8; 70];
        one[8..12].copy_from_slice(&58i32.to_be_bytes()); // batchLength: 70 - 12
        one[43..51].copy_from_slice(&77i64.to_be_bytes()); // producerId
        one[53..57].copy_from_slice(&4i32.to_be_bytes()); // baseSequence
        let mut two = one.clone();
        two.extend_from_slice(&one);
        let batches = incoming_batches(&two).expect("two batches");
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[1].producer_id, 77);
        assert_eq!(batches[1].base_sequence, 4);
        assert!(incoming_batches(&two[..100]).is_none());
        assert_eq!(incoming_batches(&[]), Some(vec![]));
    }

    proptest! {
        #[test]
        fn header_walk_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = incoming_batches(&bytes);
        }

        /// Any interleaving of fresh sends and retries of recent batches: fresh in-order
        /// batches always append, retries of the last five are always duplicates with the
        /// original offsets.
        #[test]
        fn retries_of_recent_batches_return_their_offsets(
            steps in proptest::collection::vec((any::<bool>(), 1i32..5, 0usize..5), 1..80),
        ) {
            let mut table = ProducerStateTable::default();
            let mut sent: Vec<(IncomingBatch, i64)> = Vec::new();
            let mut next_sequence = 0;
            let mut next_offset = 0i64;
            for (fresh, records, back) in steps {
                if fresh || sent.is_empty() {
                    let b = batch(3, 1, next_sequence, records);
                    prop_assert_eq!(table.check(&[b]), Verdict::Append);
                    table.record(&[b], next_offset, None, 1);
                    sent.push((b, next_offset));
                    next_sequence += records;
                    next_offset += i64::from(records);
                } else {
                    let index = sent.len() - 1 - back.min(sent.len() - 1);
                    let (b, offset) = sent[index];
                    let recent = sent.len() - index <= BATCHES_RETAINED;
                    match table.check(&[b]) {
                        Verdict::Duplicate(meta) => {
                            prop_assert!(recent);
                            prop_assert_eq!(meta.first_offset, offset);
                        }
                        Verdict::Reject { error, .. } => {
                            prop_assert!(!recent);
                            prop_assert_eq!(error, KafkaError::OutOfOrderSequenceNumber);
                        }
                        Verdict::Append => prop_assert!(false, "a retry was appended"),
                    }
                }
            }
        }
    }
}
