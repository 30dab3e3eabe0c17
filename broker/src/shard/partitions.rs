//! The partitions a shard owns: their logs, opened at startup and when metadata adds them,
//! closed and removed when topics are deleted, and the data-path operations on them
//! (append, read, wait for data, list offsets, delete records, epochs).
//!
//! Owned by one shard; other shards reach these partitions only through the mesh.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_lite::future;
use tracing::{debug, error, info, warn};
use vaart_engine::{
    partition_dir, prime_direct_io, AppendError, Chunk, DirectBackend, LeaderEpoch, LogConfig,
    LogError, Offset, PartitionLog, ReadError, TimestampMs, TimestampType,
};

use super::ack_journal::{restore_partition, RestoreSet};
use super::partition_ops::{
    DeleteRecordsItem, DeleteRecordsOutcome, EpochItem, EpochOutcome, ListOffsetsItem,
    ListOffsetsOutcome, PartitionKey, PartitionReply, PartitionRequest, ProduceItem,
    ProduceOutcome, ReadItem, ReadOutcome, WatchItem,
};
use super::producer_log::{load_producer_state, write_snapshot};
use super::producer_state::{incoming_batches, IncomingBatch, ProducerStateTable, Verdict};
use super::{timestamp_lookup, Shard};
use crate::config::TimestampTypeSetting;
use crate::local_sync::Event;
use crate::metadata::topic_config::{resolve_settings, TopicSettings};
use crate::metadata::{ClusterMetadata, TopicMeta};
use crate::protocol::KafkaError;

/// Suffix of a partition directory being deleted (renamed first, removed in the background).
pub const DELETE_SUFFIX: &str = "-delete";

/// One partition owned by this shard.
pub struct PartitionState {
    /// Topic id and partition index.
    pub key: PartitionKey,
    /// Topic name (for logs).
    pub topic: String,
    /// Current leader epoch.
    pub leader_epoch: i32,
    /// The log.
    pub log: PartitionLog,
    /// Notified after every append (and on shutdown/deletion) to wake long-polling fetches.
    pub appended: Rc<Event>,
    /// The topic settings the log was opened or last updated with.
    settings: RefCell<TopicSettings>,
    /// Messages appended since the last flush requested by `flush.messages`.
    unflushed_messages: Cell<i64>,
    /// Idempotent-producer state (sequence numbers and epochs of recent batches).
    pub producers: RefCell<ProducerStateTable>,
    /// The partition's name in the acknowledgement journal: its directory name and topic id
    /// (a topic deleted and created again under its name is another partition).
    journal_key: String,
}

/// The partitions one shard owns, by key.
#[derive(Default)]
pub struct LocalPartitions {
    map: RefCell<HashMap<PartitionKey, Rc<PartitionState>>>,
    /// Directories of deleted partitions whose logs are still being closed and removed in the
    /// background. A partition created again under the same directory (a topic deleted and
    /// re-created with the same name) waits until its directory is gone.
    deleting: Rc<RefCell<HashSet<PathBuf>>>,
    /// Notified each time a directory leaves `deleting`.
    deleted: Rc<Event>,
}

impl LocalPartitions {
    fn get(&self, key: &PartitionKey) -> Option<Rc<PartitionState>> {
        self.map.borrow().get(key).cloned()
    }

    pub(super) fn all(&self) -> Vec<Rc<PartitionState>> {
        self.map.borrow().values().cloned().collect()
    }

    fn len(&self) -> usize {
        self.map.borrow().len()
    }
}

/// CPU shares of the retention task queue (the produce/fetch path has glommio's default 1000).
const RETENTION_SHARES: usize = 50;

/// Smallest hot tail a partition gets however many partitions share the shard's budget:
/// enough for a few small batches, so live consumers still read the newest data from memory.
/// Small, so that the budget holds up to ~30,000 partitions per shard (at 64 KiB, 10,000
/// partitions kept 640 MiB against a 512 MiB budget).
const HOT_TAIL_PARTITION_FLOOR_BYTES: usize = 16 * 1024;

/// Each partition's share of the shard's hot-tail budget, so that memory stays bounded
/// however many partitions the shard owns.
fn hot_tail_share_bytes(
    shard_budget_bytes: usize,
    partition_max_bytes: usize,
    partitions: usize,
) -> usize {
    let share = shard_budget_bytes / partitions.max(1);
    share.clamp(
        HOT_TAIL_PARTITION_FLOOR_BYTES.min(partition_max_bytes),
        partition_max_bytes,
    )
}

impl PartitionState {
    /// The topic settings the log runs with now (the log cleaner reads them).
    pub fn settings(&self) -> TopicSettings {
        self.settings.borrow().clone()
    }
}

fn now_ms() -> TimestampMs {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    TimestampMs(ms)
}

/// The engine config for a topic's resolved settings.
pub fn log_config(
    settings: &TopicSettings,
    hot_tail_bytes: usize,
    write_linger_us: u64,
) -> LogConfig {
    LogConfig {
        segment_bytes: settings.segment_bytes,
        segment_ms: settings.segment_ms,
        retention_ms: settings.retention_ms,
        retention_bytes: settings.retention_bytes,
        index_interval_bytes: settings.index_interval_bytes,
        flush_interval_bytes: None,
        flush_interval_ms: settings.flush_ms,
        max_message_bytes: settings.max_message_bytes,
        message_timestamp_type: match settings.timestamp_type {
            TimestampTypeSetting::CreateTime => TimestampType::CreateTime,
            TimestampTypeSetting::LogAppendTime => TimestampType::LogAppendTime,
        },
        hot_tail_bytes,
        write_linger_us,
        ..LogConfig::default()
    }
}

/// Maps an append failure to the Kafka error a producer expects.
pub fn append_error_code(err: &AppendError) -> KafkaError {
    match err {
        AppendError::CorruptBatch(_) => KafkaError::CorruptMessage,
        AppendError::BatchTooLarge { .. } => KafkaError::MessageTooLarge,
        AppendError::UnsupportedMagic(_) => KafkaError::UnsupportedForMessageFormat,
        AppendError::InvalidRecord(_) => KafkaError::InvalidRecord,
        AppendError::Poisoned => KafkaError::KafkaStorageError,
        AppendError::Closed => KafkaError::NotLeaderOrFollower,
        AppendError::Backpressure { .. } => KafkaError::RequestTimedOut,
        AppendError::OffsetOverflow => KafkaError::UnknownServerError,
        _ => KafkaError::UnknownServerError,
    }
}

/// Maps a log failure (flush, delete, read) to a Kafka error.
pub fn log_error_code(err: &LogError) -> KafkaError {
    match err {
        LogError::Closed => KafkaError::NotLeaderOrFollower,
        LogError::InvalidOffset { .. } => KafkaError::OffsetOutOfRange,
        _ => KafkaError::KafkaStorageError,
    }
}

/// Kafka's leader-epoch fencing: a client ahead of us has newer metadata than we know
/// about; a client behind us is fenced.
fn check_leader_epoch(requested: i32, current: i32) -> Option<KafkaError> {
    if requested < 0 || requested == current {
        None
    } else if requested > current {
        Some(KafkaError::UnknownLeaderEpoch)
    } else {
        Some(KafkaError::FencedLeaderEpoch)
    }
}

/// The idempotence verdict for one partition's produce.
enum ProducerCheck {
    /// Append; `Some` batches carry producer ids to record after the append.
    Append(Option<Vec<IncomingBatch>>),
    /// Answer without appending (a duplicate, or a sequence/epoch error).
    Answer(ProduceOutcome),
}

/// Checks the batches' producer ids, epochs and sequences against the partition's producer
/// state (Kafka's rules, see `producer_state`). Batches without a producer id skip it.
fn check_producers(
    state: &PartitionState,
    records: &Bytes,
    now: TimestampMs,
    expiration_ms: i64,
) -> ProducerCheck {
    let Some(batches) = incoming_batches(records) else {
        // Not whole batches: the engine's append reports the precise error.
        return ProducerCheck::Append(None);
    };
    if !batches
        .iter()
        .any(|b| b.has_producer_id() || b.transactional)
    {
        return ProducerCheck::Append(None);
    }
    let mut producers = state.producers.borrow_mut();
    let expired = producers.maybe_expire(now.0, expiration_ms);
    if expired > 0 {
        debug!(topic = %state.topic, partition = state.key.partition, expired, "expired idle producers");
    }
    let verdict = producers.check(&batches);
    drop(producers);
    if verdict != Verdict::Append && vaart_engine::validate_batches(records).is_err() {
        // Kafka validates the batch before looking at producer state: a corrupt batch gets
        // the corruption error from the append, not a sequence error.
        return ProducerCheck::Append(None);
    }
    match verdict {
        Verdict::Append => ProducerCheck::Append(Some(batches)),
        Verdict::Duplicate(original) => {
            debug!(topic = %state.topic, partition = state.key.partition,
                first_offset = original.first_offset, "duplicate batch from an idempotent producer; answering with its original offsets");
            let log_append_time =
                state.settings.borrow().timestamp_type == TimestampTypeSetting::LogAppendTime;
            ProducerCheck::Answer(ProduceOutcome {
                error: None,
                message: None,
                base_offset: original.first_offset,
                log_append_time_ms: if log_append_time {
                    original.timestamp_ms
                } else {
                    -1
                },
                log_start_offset: state.log.log_start_offset().0,
            })
        }
        Verdict::Reject { error, message } => {
            info!(topic = %state.topic, partition = state.key.partition, error = ?error, "produce rejected: {message}");
            ProducerCheck::Answer(ProduceOutcome::failed(error, Some(message)))
        }
    }
}

impl Shard {
    /// Every partition log this shard has open (metrics read their writer stats).
    pub fn owned_partitions(&self) -> Vec<Rc<PartitionState>> {
        self.partitions.all()
    }

    /// A partition this shard owns.
    pub fn partition(&self, key: &PartitionKey) -> Option<Rc<PartitionState>> {
        self.partitions.get(key)
    }

    /// Opens the logs of every partition this shard owns (before it accepts connections),
    /// appending the journal entries of `restore` that a log lacks.
    pub async fn open_owned_partitions(
        self: &Rc<Self>,
        restore: &RestoreSet,
    ) -> Result<(), String> {
        // glommio probes polled-I/O support per thread on the first DmaFile it opens
        // (RUNTIME-NOTES pitfall 1); the main thread wrote the probe file already.
        prime_direct_io(&self.config.data_dir)
            .await
            .map_err(|err| {
                format!(
                    "cannot prime direct I/O in {}: {err}",
                    self.config.data_dir.display()
                )
            })?;
        let snapshot = self.metadata();
        let mut opened = 0usize;
        let mut scanned = 0usize;
        for topic in snapshot.topics.values() {
            for (index, partition) in topic.partitions.iter().enumerate() {
                if partition.shard != self.id {
                    continue;
                }
                let index = i32::try_from(index).unwrap_or(i32::MAX);
                let (_, was_scanned) = self
                    .open_partition(topic, index, partition.leader_epoch, Some(restore))
                    .await
                    .map_err(|err| {
                        format!("cannot open partition {}-{index}: {err}", topic.name)
                    })?;
                opened += 1;
                scanned += usize::from(was_scanned);
            }
        }
        self.rebalance_hot_tails();
        // `scanned`: logs read whole because they had no clean-shutdown record (a crash, a
        // kill); the others opened from it without reading their data.
        info!(shard = %self.id, partitions = opened, scanned, "partition logs opened");
        Ok(())
    }

    /// The hot tail each partition gets when this shard owns `partitions` of them.
    fn hot_tail_share_bytes(&self, partitions: usize) -> usize {
        hot_tail_share_bytes(
            self.config.log_hot_tail_shard_bytes,
            self.config.log_hot_tail_bytes,
            partitions,
        )
    }

    /// Gives every partition its equal share of the shard's hot-tail budget again, after
    /// partitions were added or removed.
    pub(super) fn rebalance_hot_tails(&self) {
        let partitions = self.partitions.all();
        let share_bytes = self.hot_tail_share_bytes(partitions.len());
        for partition in partitions {
            let mut config = partition.log.config();
            if config.hot_tail_bytes != share_bytes {
                config.hot_tail_bytes = share_bytes;
                partition.log.update_config(config);
            }
        }
    }

    /// Opens one partition's log (restoring journal entries it lacks) and its producer state.
    /// Also says whether the log was read whole at open (no clean-shutdown record).
    async fn open_partition(
        &self,
        topic: &TopicMeta,
        index: i32,
        leader_epoch: i32,
        restore: Option<&RestoreSet>,
    ) -> Result<(Rc<PartitionState>, bool), LogError> {
        let key = PartitionKey {
            topic_id: topic.id,
            partition: index,
        };
        if let Some(existing) = self.partitions.get(&key) {
            return Ok((existing, false));
        }
        let settings = resolve_settings(&topic.configs, &self.current_config());
        let dir = partition_dir(&self.config.data_dir, &topic.name, index);
        self.wait_until_removed(&dir).await;
        let config = log_config(
            &settings,
            self.hot_tail_share_bytes(self.partitions.len() + 1),
            self.config.log_write_linger_us,
        );
        let (log, report) = PartitionLog::open(DirectBackend, dir.clone(), config).await?;
        debug!(shard = %self.id, topic = %topic.name, partition = index, report = ?report, "opened partition");
        let journal_key = format!("{}-{index}@{}", topic.name, topic.id);
        if let Some(entries) = restore.and_then(|restore| restore.get(&journal_key)) {
            // Before the producer state is rebuilt from the log, which must include them.
            let restored = restore_partition(&log, &journal_key, entries);
            if restored > 0 {
                // Single broker: what was acknowledged is committed (as after a produce).
                log.set_high_watermark(log.log_end_offset());
                log.written().await?;
                info!(topic = %topic.name, partition = index, entries = restored, log_end_offset = %log.log_end_offset(), "restored acknowledged batches from the journal");
            }
        }
        let producers = load_producer_state(&log, &dir, now_ms().0).await;
        let state = Rc::new(PartitionState {
            key,
            topic: topic.name.clone(),
            leader_epoch,
            log,
            appended: Event::new(),
            settings: RefCell::new(settings),
            unflushed_messages: Cell::new(0),
            producers: RefCell::new(producers),
            journal_key,
        });
        self.partitions.map.borrow_mut().insert(key, state.clone());
        Ok((state, !report.from_clean_shutdown))
    }

    /// Brings this shard's partitions in line with a new snapshot: opens added partitions it
    /// owns, applies config changes, closes and removes deleted ones.
    pub(super) async fn sync_partitions(&self, old: &ClusterMetadata, new: &ClusterMetadata) {
        for topic in new.topics.values() {
            let changed_configs = old
                .topic_by_id(topic.id)
                .is_some_and(|previous| previous.configs != topic.configs);
            for (index, partition) in topic.partitions.iter().enumerate() {
                if partition.shard != self.id {
                    continue;
                }
                let index = i32::try_from(index).unwrap_or(i32::MAX);
                let key = PartitionKey {
                    topic_id: topic.id,
                    partition: index,
                };
                match self.partitions.get(&key) {
                    None => {
                        if let Err(err) = self
                            .open_partition(topic, index, partition.leader_epoch, None)
                            .await
                        {
                            error!(shard = %self.id, topic = %topic.name, partition = index, error = %err, "cannot open new partition");
                        }
                    }
                    Some(state) if changed_configs => {
                        let settings = resolve_settings(&topic.configs, &self.current_config());
                        let hot_tail_bytes = state.log.config().hot_tail_bytes;
                        state.log.update_config(log_config(
                            &settings,
                            hot_tail_bytes,
                            self.config.log_write_linger_us,
                        ));
                        *state.settings.borrow_mut() = settings;
                        info!(topic = %topic.name, partition = index, "topic config updated");
                    }
                    Some(_) => {}
                }
            }
        }
    }

    /// Resolves every partition's settings again against the current broker config (a dynamic
    /// broker config changed): logs without a topic-level override of what changed run with
    /// the new broker default from now on.
    pub(super) fn refresh_partition_settings(&self) {
        let broker = self.current_config();
        let snapshot = self.metadata();
        for state in self.partitions.all() {
            let Some(topic) = snapshot.topic_by_id(state.key.topic_id) else {
                continue;
            };
            let settings = resolve_settings(&topic.configs, &broker);
            if *state.settings.borrow() == settings {
                continue;
            }
            let hot_tail_bytes = state.log.config().hot_tail_bytes;
            state.log.update_config(log_config(
                &settings,
                hot_tail_bytes,
                self.config.log_write_linger_us,
            ));
            *state.settings.borrow_mut() = settings;
            debug!(topic = %state.topic, partition = state.key.partition, "partition settings follow the new broker config");
        }
    }

    /// Takes the partitions that `new` no longer has out of service, then closes their logs
    /// and removes their directories in the background, as Kafka does: applying a snapshot
    /// that deletes 10,000 partitions must not hold up the next metadata change (a CreateTopics
    /// right after a DeleteTopics) for the minute the files take to go. Runs after the snapshot
    /// is swapped in, so no new request finds them. A crash before the removal finishes leaves
    /// directories that `clean_data_dir` removes at the next start.
    pub(super) fn remove_deleted_partitions(&self, new: &ClusterMetadata) {
        let removed: Vec<Rc<PartitionState>> = {
            let mut map = self.partitions.map.borrow_mut();
            let gone: Vec<PartitionKey> = map
                .keys()
                .filter(|key| {
                    new.topic_by_id(key.topic_id)
                        .and_then(|t| t.partition(crate::types::PartitionIndex(key.partition)))
                        .is_none_or(|p| p.shard != self.id)
                })
                .copied()
                .collect();
            gone.iter().filter_map(|key| map.remove(key)).collect()
        };
        if removed.is_empty() {
            return;
        }
        let mut doomed = Vec::with_capacity(removed.len());
        for state in removed {
            state.appended.notify_all();
            let dir = partition_dir(&self.config.data_dir, &state.topic, state.key.partition);
            self.partitions.deleting.borrow_mut().insert(dir.clone());
            doomed.push((state, dir));
        }
        let deleting = Rc::clone(&self.partitions.deleting);
        let deleted = Rc::clone(&self.partitions.deleted);
        let shard = self.id;
        glommio::spawn_local(async move {
            let started = Instant::now();
            let count = doomed.len();
            for_each_concurrently(doomed, |(state, dir)| {
                let (deleting, deleted) = (Rc::clone(&deleting), Rc::clone(&deleted));
                async move {
                    if let Err(err) = state.log.close().await {
                        warn!(topic = %state.topic, partition = state.key.partition, error = %err, "error closing deleted partition");
                    }
                    remove_partition_dir(dir.clone(), state.key.topic_id.0.simple().to_string())
                        .await;
                    deleting.borrow_mut().remove(&dir);
                    deleted.notify_all();
                    debug!(topic = %state.topic, partition = state.key.partition, "partition deleted");
                }
            })
            .await;
            info!(%shard, partitions = count, elapsed_ms = started.elapsed().as_millis() as u64, "deleted partitions' logs closed and removed");
        })
        .detach();
    }

    /// Returns once `dir` is not being removed by a background deletion.
    async fn wait_until_removed(&self, dir: &Path) {
        loop {
            let removed = self.partitions.deleted.listen();
            if !self.partitions.deleting.borrow().contains(dir) {
                return;
            }
            debug!(dir = %dir.display(), "waiting for the deleted partition's directory to go");
            removed.await;
        }
    }

    /// Flushes and closes every partition log this shard owns. Returns false if any close
    /// failed (its log may lack acknowledged data that the journal still holds).
    pub async fn close_partitions(&self) -> bool {
        let all: Vec<Rc<PartitionState>> = self
            .partitions
            .map
            .borrow_mut()
            .drain()
            .map(|(_, v)| v)
            .collect();
        for state in &all {
            state.appended.notify_all();
        }
        let data_dir = self.config.data_dir.clone();
        let failed = Rc::new(Cell::new(false));
        for_each_concurrently(all, |state| {
            let dir = partition_dir(&data_dir, &state.topic, state.key.partition);
            let failed = failed.clone();
            async move {
                if let Err(err) = state.log.close().await {
                    error!(topic = %state.topic, partition = state.key.partition, error = %err, "error closing partition log");
                    failed.set(true);
                    return;
                }
                // The log is flushed and closed: the producer state is complete up to its end.
                let snapshot = state
                    .producers
                    .borrow()
                    .snapshot(state.log.log_end_offset().0);
                write_snapshot(dir, snapshot).await;
            }
        })
        .await;
        !failed.get()
    }

    /// Wakes long-polling requests so they answer now (shutdown).
    pub fn wake_waiters_for_shutdown(&self) {
        for state in self.partitions.all() {
            state.appended.notify_all();
        }
    }

    /// Starts low-priority background work: retention every
    /// `log.retention.check.interval.ms`.
    pub fn start_background_tasks(self: &Rc<Self>) {
        let interval = Duration::from_millis(self.config.log_retention_check_interval_ms);
        self.spawn_periodic(
            "retention",
            RETENTION_SHARES,
            interval,
            |shard| async move {
                shard.enforce_retention_once().await;
            },
        );
    }

    async fn enforce_retention_once(&self) {
        for state in self.partitions.all() {
            if self.shutdown.is_set() {
                return;
            }
            match state.log.enforce_retention(now_ms()).await {
                Ok(report) if report.deleted_segments > 0 => info!(
                    topic = %state.topic, partition = state.key.partition,
                    segments = report.deleted_segments, bytes = report.deleted_bytes,
                    log_start_offset = report.log_start_offset.0, "retention deleted segments"
                ),
                Ok(_) => {}
                Err(err) => {
                    warn!(topic = %state.topic, partition = state.key.partition, error = %err, "retention failed")
                }
            }
            glommio::yield_if_needed().await;
        }
    }

    /// Appends to local partitions; with acks=-1 (and `flush.on.ack.all`) returns after the
    /// appended data is fdatasync'ed.
    pub async fn produce_local(&self, items: Vec<ProduceItem>, acks: i16) -> Vec<ProduceOutcome> {
        let mut outcomes = Vec::with_capacity(items.len());
        // (outcome position, partition, fdatasync too): answers that wait for the disk.
        let mut to_flush: Vec<(usize, Rc<PartitionState>, bool)> = Vec::new();
        for item in items {
            let Some(state) = self.partitions.get(&item.key) else {
                outcomes.push(ProduceOutcome::failed(
                    KafkaError::NotLeaderOrFollower,
                    None,
                ));
                continue;
            };
            let size = item.records.len();
            if let Err(err) = state.log.writable(size).await {
                outcomes.push(ProduceOutcome::failed(
                    log_error_code(&err),
                    Some(err.to_string()),
                ));
                continue;
            }
            let now = now_ms();
            let flush_for_ack = acks == -1 && self.config.flush_on_ack_all;
            // acks=1 (and acks=all without the fdatasync) must survive the broker's process
            // being killed, as Kafka's answer does once the data is in its log (the page
            // cache): the batch is copied into the acknowledgement journal (tmpfs), or, with
            // no journal or no room in it, the answer waits until the segment file has it.
            let survive_kill = acks != 0 && !flush_for_ack;
            let journal_copy = survive_kill.then(|| item.records.clone());
            // Idempotence: check, append and record with no await in between.
            let producer_batches = match check_producers(
                &state,
                &item.records,
                now,
                self.current_config().producer_id_expiration_ms,
            ) {
                ProducerCheck::Append(batches) => batches,
                ProducerCheck::Answer(outcome) => {
                    // A duplicate: its answer waits for the original's write (or sync).
                    if (survive_kill || flush_for_ack) && outcome.error.is_none() {
                        to_flush.push((outcomes.len(), state.clone(), flush_for_ack));
                    }
                    outcomes.push(outcome);
                    continue;
                }
            };
            let epoch = LeaderEpoch(state.leader_epoch);
            match state.log.append(item.records, epoch, now) {
                Ok(info) => {
                    self.metrics.appended(&state.topic, size, info.record_count);
                    if let Some(batches) = &producer_batches {
                        state.producers.borrow_mut().record(
                            batches,
                            info.base_offset.0,
                            info.log_append_time.map(|t| t.0),
                            now.0,
                        );
                    }
                    // Single broker: everything appended is "replicated".
                    state.log.set_high_watermark(state.log.log_end_offset());
                    state.appended.notify_all();
                    let threshold = state.settings.borrow().flush_messages;
                    let unflushed = state
                        .unflushed_messages
                        .get()
                        .saturating_add(i64::from(info.record_count));
                    if unflushed >= threshold && !flush_for_ack {
                        state.unflushed_messages.set(0);
                        let log = state.log.clone();
                        glommio::spawn_local(async move {
                            if let Err(err) = log.flush().await {
                                warn!(error = %err, "flush.messages flush failed");
                            }
                        })
                        .detach();
                    } else {
                        state
                            .unflushed_messages
                            .set(if flush_for_ack { 0 } else { unflushed });
                    }
                    let journaled = journal_copy.as_ref().is_some_and(|records| {
                        self.ack_journal.record(
                            &state.log,
                            &state.journal_key,
                            &info,
                            epoch,
                            now,
                            records,
                        )
                    });
                    if flush_for_ack || (survive_kill && !journaled) {
                        to_flush.push((outcomes.len(), state.clone(), flush_for_ack));
                    }
                    outcomes.push(ProduceOutcome {
                        error: None,
                        message: None,
                        base_offset: info.base_offset.0,
                        log_append_time_ms: info.log_append_time.map(|t| t.0).unwrap_or(-1),
                        log_start_offset: state.log.log_start_offset().0,
                    });
                }
                Err(err) => {
                    info!(topic = %state.topic, partition = state.key.partition, error = %err, "produce rejected");
                    outcomes.push(ProduceOutcome::failed(
                        append_error_code(&err),
                        Some(err.to_string()),
                    ));
                }
            }
        }
        // Group commit: flush every partition concurrently, then answer.
        let flushes: Vec<(usize, glommio::Task<Result<(), LogError>>)> = to_flush
            .into_iter()
            .map(|(position, state, sync)| {
                let log = state.log.clone();
                let wait = async move {
                    if sync {
                        log.flush().await
                    } else {
                        log.written().await
                    }
                };
                (position, glommio::spawn_local(wait))
            })
            .collect();
        for (position, flush) in flushes {
            if let Err(err) = flush.await {
                error!(error = %err, acks, "write or flush before the produce answer failed");
                if let Some(outcome) = outcomes.get_mut(position) {
                    *outcome = ProduceOutcome::failed(log_error_code(&err), Some(err.to_string()));
                }
            }
        }
        outcomes
    }

    /// Reads local partitions now. The first partition with data returns at least one batch;
    /// after that, partitions stop contributing once `max_bytes` is reached.
    pub fn read_local(&self, items: &[ReadItem], max_bytes: usize) -> Vec<ReadOutcome<Chunk>> {
        let mut remaining = max_bytes;
        let mut any_data = false;
        items
            .iter()
            .map(|item| {
                let Some(state) = self.partitions.get(&item.key) else {
                    return ReadOutcome::failed(KafkaError::NotLeaderOrFollower);
                };
                if let Some(error) = check_leader_epoch(item.current_leader_epoch, state.leader_epoch) {
                    return ReadOutcome::failed(error);
                }
                let log = &state.log;
                let high_watermark = log.high_watermark();
                let upper = if item.to_log_end { log.log_end_offset() } else { high_watermark };
                let budget = if any_data { item.max_bytes.min(remaining) } else { item.max_bytes };
                let mut outcome = ReadOutcome {
                    error: None,
                    high_watermark: high_watermark.0,
                    last_stable_offset: high_watermark.0,
                    log_start_offset: log.log_start_offset().0,
                    chunks: Vec::new(),
                    bytes: 0,
                };
                if budget == 0 {
                    return outcome;
                }
                match log.read(Offset(item.fetch_offset), budget, upper) {
                    Ok(result) => {
                        outcome.high_watermark = result.high_watermark.0;
                        outcome.last_stable_offset = result.high_watermark.0;
                        outcome.log_start_offset = result.log_start_offset.0;
                        outcome.bytes = result.total_bytes;
                        outcome.chunks = result.chunks;
                        if outcome.bytes > 0 {
                            any_data = true;
                            remaining = remaining.saturating_sub(outcome.bytes);
                        }
                        outcome
                    }
                    Err(ReadError::OffsetOutOfRange { .. }) => ReadOutcome {
                        error: Some(KafkaError::OffsetOutOfRange),
                        ..outcome
                    },
                    Err(ReadError::Log(err)) => {
                        warn!(topic = %state.topic, partition = state.key.partition, error = %err, "read failed");
                        ReadOutcome {
                            error: Some(log_error_code(&err)),
                            ..outcome
                        }
                    }
                    Err(other) => {
                        warn!(topic = %state.topic, partition = state.key.partition, error = %other, "read failed");
                        ReadOutcome {
                            error: Some(KafkaError::UnknownServerError),
                            ..outcome
                        }
                    }
                }
            })
            .collect()
    }

    /// True if any watched partition has data beyond the watched offset (or is gone).
    fn any_data_beyond(&self, items: &[WatchItem]) -> bool {
        items
            .iter()
            .any(|item| match self.partitions.get(&item.key) {
                None => true,
                Some(state) => {
                    let end = if item.to_log_end {
                        state.log.log_end_offset()
                    } else {
                        state.log.high_watermark()
                    };
                    end.0 > item.fetch_offset || item.fetch_offset < state.log.log_start_offset().0
                }
            })
    }

    /// Event listeners for local partitions (created before checking for data, so an append
    /// in between is not missed).
    pub fn listen_for_appends(
        &self,
        keys: impl Iterator<Item = PartitionKey>,
    ) -> Vec<crate::local_sync::Listener> {
        keys.filter_map(|key| {
            self.partitions
                .get(&key)
                .map(|state| state.appended.listen())
        })
        .collect()
    }

    /// Waits until a watched local partition has data, `wait_ms` passes, or shutdown.
    pub async fn watch_local(&self, items: &[WatchItem], wait_ms: u64) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_millis(wait_ms);
        loop {
            let listeners = self.listen_for_appends(items.iter().map(|i| i.key));
            if self.any_data_beyond(items) {
                return true;
            }
            if self.shutdown.is_set() {
                return false;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            let woke = future::or(
                async {
                    wait_any(listeners).await;
                    true
                },
                async {
                    glommio::timer::sleep(deadline - now).await;
                    false
                },
            );
            let woke = future::or(woke, async {
                self.shutdown.wait().await;
                false
            })
            .await;
            if !woke {
                return self.any_data_beyond(items);
            }
        }
    }

    /// ListOffsets on local partitions.
    pub async fn list_offsets_local(&self, items: &[ListOffsetsItem]) -> Vec<ListOffsetsOutcome> {
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            let failed = |error| ListOffsetsOutcome {
                error: Some(error),
                timestamp: -1,
                offset: -1,
                leader_epoch: -1,
            };
            let Some(state) = self.partitions.get(&item.key) else {
                outcomes.push(failed(KafkaError::NotLeaderOrFollower));
                continue;
            };
            if let Some(error) = check_leader_epoch(item.current_leader_epoch, state.leader_epoch) {
                outcomes.push(failed(error));
                continue;
            }
            let log = &state.log;
            let found = |offset: Offset, timestamp: i64| ListOffsetsOutcome {
                error: None,
                timestamp,
                offset: offset.0,
                leader_epoch: state.leader_epoch,
            };
            let none = ListOffsetsOutcome {
                error: None,
                timestamp: -1,
                offset: -1,
                leader_epoch: state.leader_epoch,
            };
            let by_time = match item.timestamp {
                -1 | -2 | -4 | -5 => None,
                // Max timestamp (v7+): the first record with the largest timestamp.
                -3 => Some(timestamp_lookup::offset_of_max_timestamp(log).await),
                ts if ts < 0 => None,
                ts => Some(timestamp_lookup::offset_for_timestamp(log, TimestampMs(ts)).await),
            };
            let outcome = match (item.timestamp, by_time) {
                (-1, _) => found(log.high_watermark(), -1),
                // Earliest, and earliest-local (v8+: everything is local here).
                (-2 | -4, _) => found(log.log_start_offset(), -1),
                // Latest tiered (v9+): nothing is in tiered storage (Kafka: -1, epoch -1).
                (-5, _) => ListOffsetsOutcome {
                    leader_epoch: -1,
                    ..none
                },
                (_, Some(Ok(Some(hit)))) => ListOffsetsOutcome {
                    error: None,
                    timestamp: hit.timestamp.0,
                    offset: hit.offset.0,
                    leader_epoch: hit.leader_epoch.unwrap_or(state.leader_epoch),
                },
                (_, Some(Ok(None))) => none,
                (_, Some(Err(err))) => failed(log_error_code(&err)),
                (_, None) => failed(KafkaError::InvalidRequest),
            };
            outcomes.push(outcome);
        }
        outcomes
    }

    /// DeleteRecords on local partitions.
    pub async fn delete_records_local(
        &self,
        items: &[DeleteRecordsItem],
    ) -> Vec<DeleteRecordsOutcome> {
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            let failed = |error| DeleteRecordsOutcome {
                error: Some(error),
                low_watermark: -1,
            };
            let Some(state) = self.partitions.get(&item.key) else {
                outcomes.push(failed(KafkaError::NotLeaderOrFollower));
                continue;
            };
            let high_watermark = state.log.high_watermark().0;
            let target = if item.offset == -1 {
                high_watermark
            } else {
                item.offset
            };
            if target < 0 || target > high_watermark {
                outcomes.push(failed(KafkaError::OffsetOutOfRange));
                continue;
            }
            match state.log.delete_records_before(Offset(target)).await {
                Ok(start) => {
                    state.appended.notify_all();
                    outcomes.push(DeleteRecordsOutcome {
                        error: None,
                        low_watermark: start.0,
                    });
                }
                Err(err) => outcomes.push(failed(log_error_code(&err))),
            }
        }
        outcomes
    }

    /// OffsetForLeaderEpoch on local partitions.
    pub fn epochs_local(&self, items: &[EpochItem]) -> Vec<EpochOutcome> {
        items
            .iter()
            .map(|item| {
                let failed = |error| EpochOutcome {
                    error: Some(error),
                    leader_epoch: -1,
                    end_offset: -1,
                };
                let Some(state) = self.partitions.get(&item.key) else {
                    return failed(KafkaError::NotLeaderOrFollower);
                };
                if let Some(error) =
                    check_leader_epoch(item.current_leader_epoch, state.leader_epoch)
                {
                    return failed(error);
                }
                match state
                    .log
                    .end_offset_for_epoch(LeaderEpoch(item.leader_epoch))
                {
                    Some((epoch, offset)) => EpochOutcome {
                        error: None,
                        leader_epoch: epoch.0,
                        end_offset: offset.0,
                    },
                    None if item.leader_epoch >= state.leader_epoch => EpochOutcome {
                        // An empty log has no epoch entries yet: the current epoch ends at LEO.
                        error: None,
                        leader_epoch: state.leader_epoch,
                        end_offset: state.log.log_end_offset().0,
                    },
                    None => EpochOutcome {
                        error: None,
                        leader_epoch: -1,
                        end_offset: -1,
                    },
                }
            })
            .collect()
    }

    /// Serves a partition batch forwarded by another shard.
    pub(super) async fn handle_partition_request(
        &self,
        request: PartitionRequest,
    ) -> PartitionReply {
        match request {
            PartitionRequest::Produce { acks, items } => {
                PartitionReply::Produce(self.produce_local(items, acks).await)
            }
            PartitionRequest::Read { items, max_bytes } => {
                let outcomes = self.read_local(&items, max_bytes);
                let mut sendable = Vec::with_capacity(outcomes.len());
                for outcome in outcomes {
                    sendable.push(load_chunks(outcome).await);
                }
                PartitionReply::Read(sendable)
            }
            PartitionRequest::Watch { items, wait_ms } => {
                PartitionReply::Watch(self.watch_local(&items, wait_ms).await)
            }
            PartitionRequest::ListOffsets(items) => {
                PartitionReply::ListOffsets(self.list_offsets_local(&items).await)
            }
            PartitionRequest::DeleteRecords(items) => {
                PartitionReply::DeleteRecords(self.delete_records_local(&items).await)
            }
            PartitionRequest::OffsetForLeaderEpoch(items) => {
                PartitionReply::OffsetForLeaderEpoch(self.epochs_local(&items))
            }
        }
    }
}

/// Turns engine chunks into `Bytes` to send to another shard: memory chunks as they are,
/// file chunks read from disk (the only copy on the cross-shard catch-up path: segment file
/// handles cannot leave their shard).
async fn load_chunks(outcome: ReadOutcome<Chunk>) -> ReadOutcome<Bytes> {
    let mut chunks = Vec::with_capacity(outcome.chunks.len());
    let mut error = outcome.error;
    for chunk in &outcome.chunks {
        match chunk.load_sequential().await {
            Ok(bytes) => chunks.push(bytes),
            Err(err) => {
                warn!(error = %err, "cannot load a chunk for another shard");
                if chunks.is_empty() {
                    error = Some(log_error_code(&err));
                }
                break;
            }
        }
    }
    let bytes = chunks.iter().map(Bytes::len).sum();
    ReadOutcome {
        error,
        high_watermark: outcome.high_watermark,
        last_stable_offset: outcome.last_stable_offset,
        log_start_offset: outcome.log_start_offset,
        chunks,
        bytes,
    }
}

/// Completes when any listener fires (never, if there are none).
pub async fn wait_any(listeners: Vec<crate::local_sync::Listener>) {
    if listeners.is_empty() {
        return future::pending().await;
    }
    let mut listeners = listeners;
    future::poll_fn(|cx| {
        for listener in listeners.iter_mut() {
            if std::future::Future::poll(std::pin::Pin::new(listener), cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Renames a deleted partition's directory out of the way, then removes it on a blocking
/// thread so the shard does not stall on a large directory.
/// Partition logs closed at the same time when many go at once (deletion, shutdown): closing
/// one is a few small writes and an fdatasync, so one at a time takes about a minute for
/// 10,000 partitions.
const CLOSE_CONCURRENCY: usize = 64;

/// Runs `work` on every item, at most `CLOSE_CONCURRENCY` at a time, on this executor.
async fn for_each_concurrently<T, Work, WorkFuture>(items: Vec<T>, work: Work)
where
    Work: Fn(T) -> WorkFuture,
    WorkFuture: Future<Output = ()> + 'static,
{
    let mut running = VecDeque::with_capacity(CLOSE_CONCURRENCY);
    for item in items {
        if running.len() == CLOSE_CONCURRENCY {
            if let Some(oldest) = running.pop_front() {
                let _: Option<()> = oldest.await;
            }
        }
        running.push_back(glommio::spawn_local(work(item)).detach());
    }
    for task in running {
        let _: Option<()> = task.await;
    }
}

async fn remove_partition_dir(dir: PathBuf, unique: String) {
    let Some(name) = dir.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let doomed = dir.with_file_name(format!("{name}.{unique}{DELETE_SUFFIX}"));
    if let Err(err) = std::fs::rename(&dir, &doomed) {
        if err.kind() != std::io::ErrorKind::NotFound {
            warn!(dir = %dir.display(), error = %err, "cannot rename deleted partition directory");
        }
        return;
    }
    glommio::executor()
        .spawn_blocking(move || {
            if let Err(err) = std::fs::remove_dir_all(&doomed) {
                warn!(dir = %doomed.display(), error = %err, "cannot remove deleted partition directory");
            }
        })
        .await;
}

/// Removes leftovers of interrupted deletions and, when the metadata file existed, partition
/// directories no topic owns (a crash between persisting a delete and removing its files).
/// Runs once in the main thread before shards start.
pub fn clean_data_dir(data_dir: &Path, metadata: &ClusterMetadata, metadata_existed: bool) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(DELETE_SUFFIX) {
            if let Err(err) = std::fs::remove_dir_all(&path) {
                warn!(dir = %path.display(), error = %err, "cannot remove deleted partition directory");
            }
            continue;
        }
        let Some((topic, partition)) = name.rsplit_once('-') else {
            continue;
        };
        let Ok(partition) = partition.parse::<usize>() else {
            continue;
        };
        let known = metadata
            .topic(topic)
            .is_some_and(|t| partition < t.partitions.len());
        if known {
            continue;
        }
        if metadata_existed {
            warn!(dir = %path.display(), "removing partition directory of a topic that no longer exists");
            let doomed = path.with_file_name(format!("{name}.orphan{DELETE_SUFFIX}"));
            if std::fs::rename(&path, &doomed).is_ok() {
                let _ = std::fs::remove_dir_all(&doomed);
            }
        } else {
            warn!(dir = %path.display(), "partition directory without metadata; leaving it alone");
        }
    }
}

#[cfg(test)]
mod hot_tail_tests {
    use super::*;

    #[test]
    fn partitions_share_the_shard_budget_within_bounds() {
        let mib = 1024 * 1024;
        // Few partitions: each keeps the per-partition maximum.
        assert_eq!(hot_tail_share_bytes(512 * mib, 8 * mib, 3), 8 * mib);
        // Many partitions: the budget is split, so the total stays bounded.
        assert_eq!(hot_tail_share_bytes(512 * mib, 8 * mib, 1024), 512 * 1024);
        // 10,000 partitions stay within the budget.
        assert!(hot_tail_share_bytes(512 * mib, 8 * mib, 10_000) * 10_000 <= 512 * mib);
        // Very many: never below the floor.
        assert_eq!(
            hot_tail_share_bytes(512 * mib, 8 * mib, 1_000_000),
            HOT_TAIL_PARTITION_FLOOR_BYTES
        );
        // A per-partition maximum below the floor wins.
        assert_eq!(hot_tail_share_bytes(512 * mib, 1024, 1_000_000), 1024);
        assert_eq!(hot_tail_share_bytes(512 * mib, 8 * mib, 0), 8 * mib);
    }
}
