//! The group coordinator of one shard: the groups whose `__consumer_offsets` partition this
//! shard owns, their committed offsets, loading them from the log (replay), writing every
//! change to the log before answering, and the timers (sessions, rebalance deadlines, offset
//! expiry).
//!
//! Owned by one shard. No `RefCell` borrow is held across an `.await`: a request mutates the
//! group synchronously, then awaits the log append or the rebalance.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_lite::future;
use kafka_protocol::records::RecordBatchDecoder;
use tracing::{debug, info, warn};
use vaart_engine::{AppendError, LeaderEpoch, Offset, TimestampMs};

use super::api::{
    CommitArgs, CommitOutcome, DescribedGroup, DescribedMember, FetchedOffsets, FetchedPartition,
    GroupConfig, GroupReply, GroupRequest, HeartbeatArgs, JoinArgs, JoinOutcome, LeaveOutcome,
    ListedGroup, SyncArgs, SyncOutcome,
};
use super::records::{
    decode_group_value, decode_key, decode_offset_value, encode_batch, encode_group_key,
    encode_group_value, encode_offset_key, encode_offset_value, partition_for_group, GroupValue,
    OffsetValue, RecordKey,
};
use super::state::{CommittedOffset, Group, GroupState, JoinStep, SyncStep};
use super::OFFSETS_TOPIC;
use crate::local_sync::{Event, Latch};
use crate::protocol::KafkaError;
use crate::shard::partition_ops::PartitionKey;
use crate::shard::partitions::PartitionState;
use crate::shard::Shard;
use crate::types::PartitionIndex;

/// Bytes read per step while replaying a partition.
const REPLAY_READ_BYTES: usize = 1 << 20;
/// Longest the timer task sleeps without looking at the groups.
const TIMER_MAX_SLEEP_MS: i64 = 1_000;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A `__consumer_offsets` partition's load state on this shard.
enum Load {
    Loading(Rc<Latch>),
    Loaded,
}

/// The coordinators of one shard.
pub struct GroupCoordinator {
    config: GroupConfig,
    groups: RefCell<HashMap<String, Group>>,
    loads: RefCell<HashMap<i32, Load>>,
    /// Notified when deadlines may have moved (the timer task recomputes its sleep).
    wake: Rc<Event>,
}

/// Group counts of one shard's coordinators (metrics).
#[derive(Debug, Default)]
pub struct GroupCensus {
    /// Groups per state (states with no group are absent).
    pub by_state: Vec<(GroupState, usize)>,
    /// Members over all groups.
    pub members: usize,
}

/// A group change to write: (partition, records).
type Store = (i32, Vec<(Bytes, Option<Bytes>)>);

impl GroupCoordinator {
    /// An empty coordinator.
    pub fn new(config: GroupConfig) -> GroupCoordinator {
        GroupCoordinator {
            config,
            groups: RefCell::new(HashMap::new()),
            loads: RefCell::new(HashMap::new()),
            wake: Event::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// Groups by state and members over all groups, for metrics.
    pub fn census(&self) -> GroupCensus {
        let mut census = GroupCensus::default();
        for group in self.groups.borrow().values() {
            census.members += group.members.len();
            match census
                .by_state
                .iter_mut()
                .find(|(state, _)| *state == group.state)
            {
                Some((_, count)) => *count += 1,
                None => census.by_state.push((group.state, 1)),
            }
        }
        census
    }

    /// The group-metadata record for a group that needs persisting, if any.
    fn take_store(group: &mut Group, partition: i32) -> Option<Store> {
        if !group.needs_store {
            return None;
        }
        group.needs_store = false;
        let value = encode_group_value(&group.to_value(None));
        Some((partition, vec![(encode_group_key(&group.id), Some(value))]))
    }
}

fn group_value_record(group: &str, value: &GroupValue) -> (Bytes, Option<Bytes>) {
    (encode_group_key(group), Some(encode_group_value(value)))
}

fn append_error(error: &AppendError) -> KafkaError {
    match error {
        AppendError::BatchTooLarge { .. } => KafkaError::InvalidCommitOffsetSize,
        AppendError::Closed => KafkaError::NotCoordinator,
        _ => KafkaError::CoordinatorNotAvailable,
    }
}

impl Shard {
    /// The `__consumer_offsets` partition log this shard owns, if it does.
    fn offsets_partition(&self, partition: i32) -> Option<Rc<PartitionState>> {
        let snapshot = self.metadata();
        let topic = snapshot.topic(OFFSETS_TOPIC)?;
        let meta = topic.partition(PartitionIndex(partition))?;
        if meta.shard != self.id {
            return None;
        }
        self.partition(&PartitionKey {
            topic_id: topic.id,
            partition,
        })
    }

    /// Number of `__consumer_offsets` partitions (0 if the topic does not exist).
    fn offsets_partition_count(&self) -> i32 {
        self.metadata()
            .topic(OFFSETS_TOPIC)
            .map(|topic| topic.partition_count())
            .unwrap_or(0)
    }

    /// Appends records to a `__consumer_offsets` partition (synchronously: in call order).
    /// The caller awaits [`flush_offsets`] before answering.
    async fn append_offsets_records(
        &self,
        partition: i32,
        entries: &[(Bytes, Option<Bytes>)],
    ) -> Result<Rc<PartitionState>, KafkaError> {
        let state = self
            .offsets_partition(partition)
            .ok_or(KafkaError::NotCoordinator)?;
        let now = now_ms();
        let batch = encode_batch(entries, now).map_err(|error| {
            warn!(%error, "cannot encode a __consumer_offsets batch");
            KafkaError::UnknownServerError
        })?;
        state
            .log
            .writable(batch.len())
            .await
            .map_err(|_| KafkaError::CoordinatorNotAvailable)?;
        self.append_prepared(&state, batch, now)?;
        Ok(state)
    }

    fn append_prepared(
        &self,
        state: &PartitionState,
        batch: Bytes,
        now: i64,
    ) -> Result<(), KafkaError> {
        state
            .log
            .append(batch, LeaderEpoch(state.leader_epoch), TimestampMs(now))
            .map_err(|error| {
                warn!(partition = state.key.partition, %error, "__consumer_offsets append failed");
                append_error(&error)
            })?;
        // Single broker: appended is replicated.
        state.log.set_high_watermark(state.log.log_end_offset());
        state.appended.notify_all();
        Ok(())
    }

    /// Appends and waits until the records are durable.
    async fn store_records(
        &self,
        partition: i32,
        entries: Vec<(Bytes, Option<Bytes>)>,
    ) -> Result<(), KafkaError> {
        if entries.is_empty() {
            return Ok(());
        }
        let state = self.append_offsets_records(partition, &entries).await?;
        flush_offsets(&state).await
    }

    async fn store_all(&self, stores: Vec<Store>) {
        for (partition, entries) in stores {
            if let Err(error) = self.store_records(partition, entries).await {
                warn!(partition, ?error, "cannot persist group metadata");
            }
        }
    }

    /// Loads a `__consumer_offsets` partition once (concurrent callers wait for the load).
    async fn ensure_loaded(self: &Rc<Self>, partition: i32) -> Result<(), KafkaError> {
        loop {
            let latch = match self.groups.loads.borrow().get(&partition) {
                Some(Load::Loaded) => return Ok(()),
                Some(Load::Loading(latch)) => Some(latch.clone()),
                None => None,
            };
            if let Some(latch) = latch {
                latch.wait().await;
                continue;
            }
            let latch = Latch::new();
            self.groups
                .loads
                .borrow_mut()
                .insert(partition, Load::Loading(latch.clone()));
            let result = self.replay(partition).await;
            {
                let mut loads = self.groups.loads.borrow_mut();
                match &result {
                    Ok(()) => {
                        loads.insert(partition, Load::Loaded);
                    }
                    Err(_) => {
                        loads.remove(&partition);
                    }
                }
            }
            latch.set();
            self.groups.wake.notify_all();
            return result;
        }
    }

    /// Rebuilds the groups of one partition from its log.
    async fn replay(&self, partition: i32) -> Result<(), KafkaError> {
        let state = self
            .offsets_partition(partition)
            .ok_or(KafkaError::NotCoordinator)?;
        let log = state.log.clone();
        let count = self.offsets_partition_count();
        let upper = log.high_watermark();
        let mut from = log.log_start_offset();
        let mut records = 0u64;
        let now = now_ms();
        while from < upper {
            let result = log
                .read(from, REPLAY_READ_BYTES, upper)
                .map_err(|_| KafkaError::CoordinatorLoadInProgress)?;
            if result.chunks.is_empty() {
                break;
            }
            // Whole batches per buffer (hot-tail chunks may split a batch).
            let buffers = result
                .load_contiguous()
                .await
                .map_err(|_| KafkaError::CoordinatorNotAvailable)?;
            for bytes in buffers {
                let mut position = 0usize;
                while position < bytes.len() {
                    let Ok(summary) =
                        vaart_engine::batch::validate_stored_batch_at(&bytes, position)
                    else {
                        warn!(
                            partition,
                            position, "invalid batch in __consumer_offsets; stopping replay"
                        );
                        return Err(KafkaError::CoordinatorNotAvailable);
                    };
                    from = Offset(summary.base_offset + i64::from(summary.last_offset_delta) + 1)
                        .max(from);
                    let end = position + summary.length;
                    if !summary.is_control() && summary.records_count > 0 {
                        let mut batch = bytes.slice(position..end);
                        match RecordBatchDecoder::decode(&mut batch) {
                            Ok(set) => {
                                for record in set.records {
                                    if let Some(key) = record.key {
                                        records += 1;
                                        self.apply_record(
                                            &key,
                                            record.value.as_deref(),
                                            count,
                                            partition,
                                            now,
                                        );
                                    }
                                }
                            }
                            Err(error) => {
                                warn!(partition, %error, "undecodable batch in __consumer_offsets; skipped")
                            }
                        }
                    }
                    position = end;
                }
            }
            glommio::yield_if_needed().await;
        }
        let groups = self
            .groups
            .groups
            .borrow()
            .keys()
            .filter(|id| partition_for_group(id, count) == partition)
            .count();
        info!(shard = %self.id, partition, records, groups, "loaded __consumer_offsets partition");
        Ok(())
    }

    fn apply_record(&self, key: &[u8], value: Option<&[u8]>, count: i32, partition: i32, now: i64) {
        let key = match decode_key(key) {
            Ok(key) => key,
            Err(error) => {
                debug!(partition, %error, "skipping a __consumer_offsets record");
                return;
            }
        };
        let mut groups = self.groups.groups.borrow_mut();
        match key {
            RecordKey::Offset {
                group,
                topic,
                partition: topic_partition,
            } => {
                if partition_for_group(&group, count) != partition {
                    return;
                }
                match value.map(decode_offset_value) {
                    None => {
                        if let Some(entry) = groups.get_mut(&group) {
                            entry.offsets.remove(&(topic, topic_partition));
                        }
                    }
                    Some(Ok(value)) => {
                        let entry = groups
                            .entry(group.clone())
                            .or_insert_with(|| Group::new(group, now));
                        entry
                            .offsets
                            .insert((topic, topic_partition), CommittedOffset { value });
                    }
                    Some(Err(error)) => debug!(partition, %error, "skipping an offset record"),
                }
            }
            RecordKey::Group { group } => {
                if partition_for_group(&group, count) != partition {
                    return;
                }
                match value.map(decode_group_value) {
                    None => {
                        groups.remove(&group);
                    }
                    Some(Ok(value)) => {
                        let entry = groups
                            .entry(group.clone())
                            .or_insert_with(|| Group::new(group, now));
                        entry.restore(value, now);
                    }
                    Some(Err(error)) => debug!(partition, %error, "skipping a group record"),
                }
            }
        }
    }

    /// Serves a group request for `partition` on this shard (the owner).
    pub async fn serve_group_request(
        self: &Rc<Self>,
        partition: i32,
        request: GroupRequest,
    ) -> GroupReply {
        if matches!(request, GroupRequest::List) {
            return GroupReply::List(self.list_local_groups());
        }
        if let Err(error) = self.ensure_loaded(partition).await {
            return GroupReply::Failed(error);
        }
        let reply = match request {
            GroupRequest::Join(args) => GroupReply::Join(self.join_group(partition, args).await),
            GroupRequest::Sync(args) => GroupReply::Sync(self.sync_group(partition, args).await),
            GroupRequest::Heartbeat(args) => GroupReply::Heartbeat(self.heartbeat(args)),
            GroupRequest::Leave(group, members) => {
                GroupReply::Leave(self.leave_group(partition, &group, members).await)
            }
            GroupRequest::Commit(args) => {
                GroupReply::Commit(self.commit_offsets(partition, args).await)
            }
            GroupRequest::FetchOffsets(group, topics) => {
                GroupReply::FetchOffsets(self.fetch_offsets(&group, topics))
            }
            GroupRequest::DeleteOffsets(group, topics) => {
                let (error, outcome) = self.delete_offsets(partition, &group, topics).await;
                GroupReply::DeleteOffsets(error, outcome)
            }
            GroupRequest::Describe(groups) => GroupReply::Describe(self.describe_groups(groups)),
            GroupRequest::Delete(groups) => {
                GroupReply::Delete(self.delete_groups(partition, groups).await)
            }
            GroupRequest::List => GroupReply::List(self.list_local_groups()),
        };
        self.groups.wake.notify_all();
        reply
    }

    async fn join_group(&self, partition: i32, args: JoinArgs) -> JoinOutcome {
        let config = self.groups.config.clone();
        if args.group_id.is_empty() {
            return JoinOutcome::failed(KafkaError::InvalidGroupId, &args.member_id);
        }
        if args.session_timeout_ms < config.min_session_timeout_ms
            || args.session_timeout_ms > config.max_session_timeout_ms
        {
            return JoinOutcome::failed(KafkaError::InvalidSessionTimeout, &args.member_id);
        }
        let now = now_ms();
        let group_id = args.group_id.clone();
        let (step, store) = {
            let mut groups = self.groups.groups.borrow_mut();
            if !args.member_id.is_empty() && !groups.contains_key(&group_id) {
                return JoinOutcome::failed(KafkaError::UnknownMemberId, &args.member_id);
            }
            let group = groups
                .entry(group_id.clone())
                .or_insert_with(|| Group::new(group_id.clone(), now));
            let step = group.join(args, now, &config);
            (step, GroupCoordinator::take_store(group, partition))
        };
        self.groups.wake.notify_all();
        if let Some(store) = store {
            self.store_all(vec![store]).await;
        }
        match step {
            JoinStep::Respond(outcome) => outcome,
            JoinStep::Wait(receiver) => receiver
                .await
                .unwrap_or_else(|| JoinOutcome::failed(KafkaError::CoordinatorNotAvailable, "")),
        }
    }

    async fn sync_group(&self, partition: i32, args: SyncArgs) -> SyncOutcome {
        let config = self.groups.config.clone();
        if args.group_id.is_empty() {
            return SyncOutcome::failed(KafkaError::InvalidGroupId);
        }
        let group_id = args.group_id.clone();
        let step = {
            let mut groups = self.groups.groups.borrow_mut();
            let Some(group) = groups.get_mut(&group_id) else {
                return SyncOutcome::failed(KafkaError::UnknownMemberId);
            };
            group.sync(args, now_ms())
        };
        let waiter = match step {
            SyncStep::Respond(outcome) => return outcome,
            SyncStep::Wait(receiver) => receiver,
            SyncStep::Persist {
                generation,
                assignments,
                waiter,
            } => {
                let value = self
                    .groups
                    .groups
                    .borrow()
                    .get(&group_id)
                    .map(|group| group.to_value(Some(&assignments)));
                let stored = match value {
                    Some(value) => {
                        self.store_records(partition, vec![group_value_record(&group_id, &value)])
                            .await
                    }
                    None => Err(KafkaError::CoordinatorNotAvailable),
                };
                if let Some(group) = self.groups.groups.borrow_mut().get_mut(&group_id) {
                    group.complete_sync(generation, assignments, stored, now_ms(), &config);
                }
                self.groups.wake.notify_all();
                waiter
            }
        };
        waiter
            .await
            .unwrap_or_else(|| SyncOutcome::failed(KafkaError::CoordinatorNotAvailable))
    }

    fn heartbeat(&self, args: HeartbeatArgs) -> Option<KafkaError> {
        if args.group_id.is_empty() {
            return Some(KafkaError::InvalidGroupId);
        }
        let mut groups = self.groups.groups.borrow_mut();
        match groups.get_mut(&args.group_id) {
            None => Some(KafkaError::UnknownMemberId),
            Some(group) => group.heartbeat(
                &args.member_id,
                args.instance_id.as_deref(),
                args.generation,
                now_ms(),
            ),
        }
    }

    async fn leave_group(
        &self,
        partition: i32,
        group_id: &str,
        members: Vec<(String, Option<String>)>,
    ) -> LeaveOutcome {
        if group_id.is_empty() {
            return LeaveOutcome {
                error: Some(KafkaError::InvalidGroupId),
                members: Vec::new(),
            };
        }
        let config = self.groups.config.clone();
        let (outcome, store) = {
            let mut groups = self.groups.groups.borrow_mut();
            match groups.get_mut(group_id) {
                None => (
                    LeaveOutcome {
                        error: Some(KafkaError::UnknownMemberId),
                        members: members
                            .into_iter()
                            .map(|(m, i)| (m, i, Some(KafkaError::UnknownMemberId)))
                            .collect(),
                    },
                    None,
                ),
                Some(group) => {
                    let outcome = group.leave(members, now_ms(), &config);
                    (outcome, GroupCoordinator::take_store(group, partition))
                }
            }
        };
        if let Some(store) = store {
            self.store_all(vec![store]).await;
        }
        outcome
    }

    async fn commit_offsets(&self, partition: i32, args: CommitArgs) -> CommitOutcome {
        let config = self.groups.config.clone();
        let snapshot = self.metadata();
        let now = now_ms();
        let group_error = {
            let mut groups = self.groups.groups.borrow_mut();
            let simple = args.generation < 0 && args.member_id.is_empty();
            match groups.get_mut(&args.group_id) {
                None if args.generation < 0 => {
                    // An offsets-only group (manual assignment): created on first commit.
                    let group = Group::new(args.group_id.clone(), now);
                    groups.insert(args.group_id.clone(), group);
                    None
                }
                None => Some(KafkaError::IllegalGeneration),
                Some(group) => {
                    if simple && group.state == GroupState::Empty {
                        None
                    } else if group.state == GroupState::CompletingRebalance {
                        Some(KafkaError::RebalanceInProgress)
                    } else if group.state == GroupState::Dead {
                        Some(KafkaError::CoordinatorNotAvailable)
                    } else if args.generation >= 0
                        || !args.member_id.is_empty()
                        || args.instance_id.is_some()
                    {
                        let fenced = args.instance_id.as_ref().is_some_and(|instance| {
                            group.members.values().any(|m| {
                                m.instance_id.as_ref() == Some(instance) && m.id != args.member_id
                            })
                        });
                        if fenced {
                            Some(KafkaError::FencedInstanceId)
                        } else if !group.members.contains_key(&args.member_id) {
                            Some(KafkaError::UnknownMemberId)
                        } else if args.generation != group.generation {
                            Some(KafkaError::IllegalGeneration)
                        } else {
                            if let Some(member) = group.members.get_mut(&args.member_id) {
                                member.last_heartbeat_ms = now;
                            }
                            None
                        }
                    } else if group.state != GroupState::Empty {
                        Some(KafkaError::UnknownMemberId)
                    } else {
                        None
                    }
                }
            }
        };
        let mut outcome: CommitOutcome = Vec::with_capacity(args.topics.len());
        let mut entries = Vec::new();
        let mut accepted: Vec<((String, i32), OffsetValue)> = Vec::new();
        for (topic, partitions) in &args.topics {
            let meta = snapshot.topic(topic);
            let mut results = Vec::with_capacity(partitions.len());
            for commit in partitions {
                let error = if let Some(error) = group_error {
                    Some(error)
                } else if meta
                    .and_then(|m| m.partition(PartitionIndex(commit.partition)))
                    .is_none()
                {
                    Some(KafkaError::UnknownTopicOrPartition)
                } else if commit
                    .metadata
                    .as_ref()
                    .is_some_and(|m| m.len() > config.offset_metadata_max_bytes)
                {
                    Some(KafkaError::OffsetMetadataTooLarge)
                } else {
                    let value = OffsetValue {
                        offset: commit.offset,
                        leader_epoch: commit.leader_epoch,
                        metadata: commit.metadata.clone().unwrap_or_default(),
                        commit_timestamp_ms: now,
                        expire_timestamp_ms: (args.retention_time_ms >= 0)
                            .then(|| now.saturating_add(args.retention_time_ms)),
                    };
                    entries.push((
                        encode_offset_key(&args.group_id, topic, commit.partition),
                        Some(encode_offset_value(&value)),
                    ));
                    accepted.push(((topic.clone(), commit.partition), value));
                    None
                };
                results.push((commit.partition, error));
            }
            outcome.push((topic.clone(), results));
        }
        if entries.is_empty() {
            return outcome;
        }
        let stored = match self.append_offsets_records(partition, &entries).await {
            Ok(state) => {
                // Applied in log order (the append is synchronous); durable before answering.
                if let Some(group) = self.groups.groups.borrow_mut().get_mut(&args.group_id) {
                    for (key, value) in accepted {
                        group.offsets.insert(key, CommittedOffset { value });
                    }
                }
                flush_offsets(&state).await
            }
            Err(error) => Err(error),
        };
        if let Err(error) = stored {
            for (_, results) in outcome.iter_mut() {
                for (_, slot) in results.iter_mut() {
                    if slot.is_none() {
                        *slot = Some(error);
                    }
                }
            }
        }
        outcome
    }

    fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> FetchedOffsets {
        let groups = self.groups.groups.borrow();
        let group = groups.get(group_id);
        let fetched = |topic: &str, partition: i32| {
            let committed = group.and_then(|g| g.offsets.get(&(topic.to_string(), partition)));
            match committed {
                Some(committed) => FetchedPartition {
                    partition,
                    offset: committed.value.offset,
                    leader_epoch: committed.value.leader_epoch,
                    metadata: Some(committed.value.metadata.clone()),
                    error: None,
                },
                None => FetchedPartition {
                    partition,
                    offset: -1,
                    leader_epoch: -1,
                    metadata: Some(String::new()),
                    error: None,
                },
            }
        };
        let topics = match topics {
            Some(topics) => topics
                .into_iter()
                .map(|(topic, partitions)| {
                    let partitions = partitions.iter().map(|p| fetched(&topic, *p)).collect();
                    (topic, partitions)
                })
                .collect(),
            None => {
                let mut by_topic: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
                if let Some(group) = group {
                    for (topic, partition) in group.offsets.keys() {
                        by_topic.entry(topic.clone()).or_default().push(*partition);
                    }
                }
                by_topic
                    .into_iter()
                    .map(|(topic, mut partitions)| {
                        partitions.sort_unstable();
                        let partitions = partitions.iter().map(|p| fetched(&topic, *p)).collect();
                        (topic, partitions)
                    })
                    .collect()
            }
        };
        FetchedOffsets {
            error: None,
            topics,
        }
    }

    async fn delete_offsets(
        &self,
        partition: i32,
        group_id: &str,
        topics: Vec<(String, Vec<i32>)>,
    ) -> (Option<KafkaError>, CommitOutcome) {
        let snapshot = self.metadata();
        let mut entries = Vec::new();
        let mut removed = Vec::new();
        let mut outcome: CommitOutcome = Vec::new();
        {
            let groups = self.groups.groups.borrow();
            let Some(group) = groups.get(group_id).filter(|g| g.state != GroupState::Dead) else {
                return (Some(KafkaError::GroupIdNotFound), Vec::new());
            };
            if group.state != GroupState::Empty && group.protocol_type != "consumer" {
                return (Some(KafkaError::NonEmptyGroup), Vec::new());
            }
            let subscribed = if group.state == GroupState::Empty {
                Default::default()
            } else {
                group.subscribed_topics()
            };
            for (topic, partitions) in topics {
                let exists = snapshot.topic(&topic).is_some();
                let results = partitions
                    .into_iter()
                    .map(|p| {
                        let error = if subscribed.contains(&topic) {
                            Some(KafkaError::GroupSubscribedToTopic)
                        } else if !exists {
                            Some(KafkaError::UnknownTopicOrPartition)
                        } else {
                            if group.offsets.contains_key(&(topic.clone(), p)) {
                                entries.push((encode_offset_key(group_id, &topic, p), None));
                                removed.push((topic.clone(), p));
                            }
                            None
                        };
                        (p, error)
                    })
                    .collect();
                outcome.push((topic, results));
            }
        }
        if let Err(error) = self.store_records(partition, entries).await {
            for (_, results) in outcome.iter_mut() {
                for (_, slot) in results.iter_mut() {
                    slot.get_or_insert(error);
                }
            }
            return (None, outcome);
        }
        if let Some(group) = self.groups.groups.borrow_mut().get_mut(group_id) {
            for key in removed {
                group.offsets.remove(&key);
            }
        }
        (None, outcome)
    }

    fn describe_groups(&self, ids: Vec<String>) -> Vec<DescribedGroup> {
        let groups = self.groups.groups.borrow();
        ids.into_iter()
            .map(|id| match groups.get(&id) {
                None => DescribedGroup {
                    group_id: id,
                    error: Some(KafkaError::GroupIdNotFound),
                    state: GroupState::Dead.name().to_string(),
                    protocol_type: String::new(),
                    protocol: String::new(),
                    members: Vec::new(),
                },
                Some(group) => {
                    let stable = group.state == GroupState::Stable;
                    DescribedGroup {
                        group_id: id,
                        error: None,
                        state: group.state.name().to_string(),
                        protocol_type: group.protocol_type.clone(),
                        protocol: if stable {
                            group.protocol.clone().unwrap_or_default()
                        } else {
                            String::new()
                        },
                        members: group
                            .members
                            .values()
                            .map(|member| DescribedMember {
                                member_id: member.id.clone(),
                                instance_id: member.instance_id.clone(),
                                client_id: member.client_id.clone(),
                                client_host: member.client_host.clone(),
                                metadata: if stable {
                                    member.metadata(group.protocol.as_deref())
                                } else {
                                    Bytes::new()
                                },
                                assignment: if stable {
                                    member.assignment.clone()
                                } else {
                                    Bytes::new()
                                },
                            })
                            .collect(),
                    }
                }
            })
            .collect()
    }

    async fn delete_groups(
        &self,
        partition: i32,
        ids: Vec<String>,
    ) -> Vec<(String, Option<KafkaError>)> {
        let mut results = Vec::with_capacity(ids.len());
        for id in ids {
            let entries = {
                let groups = self.groups.groups.borrow();
                match groups.get(&id) {
                    None => {
                        results.push((id, Some(KafkaError::GroupIdNotFound)));
                        continue;
                    }
                    Some(group) if !matches!(group.state, GroupState::Empty | GroupState::Dead) => {
                        results.push((id, Some(KafkaError::NonEmptyGroup)));
                        continue;
                    }
                    Some(group) => {
                        let mut entries: Vec<(Bytes, Option<Bytes>)> = group
                            .offsets
                            .keys()
                            .map(|(topic, p)| (encode_offset_key(&id, topic, *p), None))
                            .collect();
                        entries.push((encode_group_key(&id), None));
                        entries
                    }
                }
            };
            match self.store_records(partition, entries).await {
                Ok(()) => {
                    if let Some(mut group) = self.groups.groups.borrow_mut().remove(&id) {
                        group.kill(now_ms());
                    }
                    info!(group = %id, "group deleted");
                    results.push((id, None));
                }
                Err(error) => results.push((id, Some(error))),
            }
        }
        results
    }

    fn list_local_groups(&self) -> Vec<ListedGroup> {
        self.groups
            .groups
            .borrow()
            .values()
            .filter(|group| group.state != GroupState::Dead)
            .map(|group| ListedGroup {
                group_id: group.id.clone(),
                protocol_type: group.protocol_type.clone(),
                state: group.state.name().to_string(),
            })
            .collect()
    }

    /// Runs every group's timers; persists what changed. Returns the next deadline.
    async fn tick_groups(&self) -> Option<i64> {
        let now = now_ms();
        let config = self.groups.config.clone();
        let count = self.offsets_partition_count();
        let mut stores = Vec::new();
        let mut next: Option<i64> = None;
        {
            let mut groups = self.groups.groups.borrow_mut();
            for group in groups.values_mut() {
                if let Some(deadline) = group.tick(now, &config) {
                    next = Some(next.map_or(deadline, |n| n.min(deadline)));
                }
                let partition = partition_for_group(&group.id, count);
                if let Some(store) = GroupCoordinator::take_store(group, partition) {
                    stores.push(store);
                }
            }
        }
        self.store_all(stores).await;
        next
    }

    /// Removes expired committed offsets (offsets.retention.minutes for empty groups, or an
    /// explicit retention time) and empty groups left without offsets, with tombstones.
    async fn expire_offsets(&self) {
        let now = now_ms();
        let retention = self.groups.config.offsets_retention_ms;
        let count = self.offsets_partition_count();
        let mut stores: Vec<Store> = Vec::new();
        {
            let mut groups = self.groups.groups.borrow_mut();
            let mut dead = Vec::new();
            for group in groups.values_mut() {
                let empty = group.state == GroupState::Empty;
                let base = group.state_since_ms;
                let expired: Vec<(String, i32)> = group
                    .offsets
                    .iter()
                    .filter(|(_, committed)| match committed.value.expire_timestamp_ms {
                        Some(expire) => expire <= now,
                        None => {
                            empty
                                && now.saturating_sub(committed.value.commit_timestamp_ms.max(base))
                                    >= retention
                        }
                    })
                    .map(|(key, _)| key.clone())
                    .collect();
                let mut entries: Vec<(Bytes, Option<Bytes>)> = Vec::new();
                for key in expired {
                    group.offsets.remove(&key);
                    entries.push((encode_offset_key(&group.id, &key.0, key.1), None));
                }
                if empty && group.offsets.is_empty() && group.members.is_empty() {
                    entries.push((encode_group_key(&group.id), None));
                    dead.push(group.id.clone());
                }
                if !entries.is_empty() {
                    info!(group = %group.id, records = entries.len(), "expiring committed offsets");
                    stores.push((partition_for_group(&group.id, count), entries));
                }
            }
            for id in dead {
                if let Some(mut group) = groups.remove(&id) {
                    group.kill(now);
                }
            }
        }
        self.store_all(stores).await;
    }

    /// Starts the coordinator: loads the `__consumer_offsets` partitions this shard owns and
    /// runs the group timers and offset expiry until shutdown.
    pub fn start_group_coordinator(self: &Rc<Self>) {
        let snapshot = self.metadata();
        if let Some(topic) = snapshot.topic(OFFSETS_TOPIC) {
            for (index, meta) in topic.partitions.iter().enumerate() {
                if meta.shard != self.id {
                    continue;
                }
                let partition = i32::try_from(index).unwrap_or(i32::MAX);
                let shard = self.clone();
                glommio::spawn_local(async move {
                    if let Err(error) = shard.ensure_loaded(partition).await {
                        warn!(
                            partition,
                            ?error,
                            "cannot load __consumer_offsets partition"
                        );
                    }
                })
                .detach();
            }
        }
        let shard = self.clone();
        glommio::spawn_local(async move { shard.group_timer_loop().await }).detach();
    }

    async fn group_timer_loop(self: Rc<Self>) {
        let expiry_interval_ms =
            i64::try_from(self.groups.config.offsets_retention_check_interval_ms)
                .unwrap_or(i64::MAX);
        let mut next_expiry = now_ms().saturating_add(expiry_interval_ms);
        loop {
            let listener = self.groups.wake.listen();
            let next = self.tick_groups().await;
            let now = now_ms();
            if now >= next_expiry {
                self.expire_offsets().await;
                next_expiry = now.saturating_add(expiry_interval_ms);
            }
            let until = next
                .unwrap_or(now + TIMER_MAX_SLEEP_MS)
                .min(next_expiry)
                .min(now + TIMER_MAX_SLEEP_MS);
            let sleep_ms = u64::try_from((until - now).max(1)).unwrap_or(1);
            let stop = future::or(
                async {
                    future::or(
                        listener,
                        glommio::timer::sleep(Duration::from_millis(sleep_ms)),
                    )
                    .await;
                    false
                },
                async {
                    self.shutdown.wait().await;
                    true
                },
            )
            .await;
            if stop {
                return;
            }
        }
    }
}

/// Waits until appended `__consumer_offsets` records are durable.
async fn flush_offsets(state: &PartitionState) -> Result<(), KafkaError> {
    state.log.flush().await.map_err(|error| {
        warn!(partition = state.key.partition, %error, "__consumer_offsets flush failed");
        KafkaError::CoordinatorNotAvailable
    })
}
