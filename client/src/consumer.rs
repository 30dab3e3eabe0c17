//! [`Consumer`]: reads assigned partitions with long-poll Fetch requests (no group
//! membership yet: partitions are assigned by the caller).
//!
//! Each [`Consumer::poll_batches`] sends one Fetch per leader (they run concurrently), waits
//! up to `max_wait_ms` for `min_bytes`, and returns the complete record batches it got, in
//! offset order per partition. A trailing partial batch (the broker may cut a response at
//! `partition_max_bytes`) is dropped and fetched again next time. [`Consumer::poll`] also
//! decodes the records (kafka-protocol's `RecordBatchDecoder`, decompressing there).
//! With [`ConsumerConfig::prefetch`] (the default) the next Fetch is sent as soon as an
//! answer with records is taken in; a seek, assign or offset reset makes it stale.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{RecordBatchDecoder, TimestampType};
use tracing::debug;

use crate::admin::{Admin, OffsetSpec};
use crate::cluster::Client;
use crate::connection::PendingReply;
use crate::error::{ClientError, KafkaCode, KafkaError};
use crate::types::{NodeId, Offset, PartitionId};

/// Offset of the batch length field, and the fixed header size before it.
const LENGTH_FIELD_END: usize = 12;
/// Position of `lastOffsetDelta` in a magic-v2 batch header.
const LAST_OFFSET_DELTA_AT: usize = 23;
/// Position of `firstTimestamp`.
const FIRST_TIMESTAMP_AT: usize = 27;
/// Position of the record count.
const RECORD_COUNT_AT: usize = 57;
/// Size of a magic-v2 batch header.
const BATCH_HEADER_BYTES: usize = 61;

/// Settings of a [`Consumer`] (Kafka's names in the comments).
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `fetch.max.wait.ms`: how long the broker may hold a Fetch waiting for `min_bytes`.
    pub max_wait_ms: i32,
    /// `fetch.min.bytes`.
    pub min_bytes: i32,
    /// `fetch.max.bytes`: per Fetch response.
    pub max_bytes: i32,
    /// `max.partition.fetch.bytes`.
    pub partition_max_bytes: i32,
    /// `isolation.level`: 0 = read_uncommitted, 1 = read_committed.
    pub isolation_level: i8,
    /// `auto.offset.reset` when a position is out of range (`None` = report the error).
    pub auto_offset_reset: Option<StartOffset>,
    /// Send the next Fetch as soon as an answer with records is taken in, so the broker
    /// reads and sends while the caller works through the records (as librdkafka's fetcher
    /// and the Java consumer's pipelined fetches do). The answer is used only if no
    /// assign, seek or reset moved a position in between.
    pub prefetch: bool,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 50 << 20,
            partition_max_bytes: 1 << 20,
            isolation_level: 0,
            auto_offset_reset: Some(StartOffset::Latest),
            prefetch: true,
        }
    }
}

/// Where an assigned partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    Earliest,
    Latest,
    At(Offset),
    /// The first offset whose timestamp is at or after this time (ms since the epoch).
    Timestamp(i64),
}

/// One record read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: Rc<str>,
    pub partition: PartitionId,
    pub offset: Offset,
    pub timestamp_ms: i64,
    /// CreateTime (the producer's) or LogAppendTime (the broker's), from the batch header.
    pub timestamp_type: TimestampType,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// One complete record batch as fetched (not decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedBatch {
    pub topic: Rc<str>,
    pub partition: PartitionId,
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub record_count: i32,
    pub first_timestamp_ms: i64,
    /// The whole batch, header included.
    pub data: Bytes,
}

impl FetchedBatch {
    /// Decodes the batch's records, skipping control records and those before `from`.
    pub fn records(&self, from: Offset) -> Result<Vec<ConsumerRecord>, ClientError> {
        let mut data = self.data.clone();
        let set = RecordBatchDecoder::decode(&mut data).map_err(ClientError::records)?;
        Ok(set
            .records
            .into_iter()
            .filter(|record| !record.control && record.offset >= from.0)
            .map(|record| ConsumerRecord {
                topic: Rc::clone(&self.topic),
                partition: self.partition,
                offset: Offset(record.offset),
                timestamp_ms: record.timestamp,
                timestamp_type: record.timestamp_type,
                key: record.key,
                value: record.value,
                headers: record
                    .headers
                    .into_iter()
                    .map(|(name, value)| (name.as_str().to_owned(), value))
                    .collect(),
            })
            .collect())
    }
}

#[derive(Debug, Clone)]
struct Assignment {
    topic: Rc<str>,
    partition: PartitionId,
    position: Offset,
    high_watermark: Offset,
}

/// Reads assigned partitions. Owned by one executor.
/// Fetches sent ahead (see [`ConsumerConfig::prefetch`]).
struct Prefetch {
    /// [`Consumer::moves`] when they were sent.
    moves: u64,
    pending: Vec<PendingReply<FetchRequest>>,
}

pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    assignments: RefCell<Vec<Assignment>>,
    /// Counts position changes that did not come from a fetch answer (assign, unassign,
    /// seek, offset reset): a prefetch sent before one of them asked for the wrong offsets.
    moves: Cell<u64>,
    prefetched: RefCell<Option<Prefetch>>,
}

impl Consumer {
    pub fn new(client: Client, config: ConsumerConfig) -> Self {
        Self {
            client,
            config,
            assignments: RefCell::new(Vec::new()),
            moves: Cell::new(0),
            prefetched: RefCell::new(None),
        }
    }

    /// The client this consumer reads through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Adds partitions of `topic` (replacing any earlier assignment of the same partition),
    /// resolving `Earliest`/`Latest`/`Timestamp` with ListOffsets.
    pub async fn assign(
        &self,
        topic: &str,
        partitions: &[(PartitionId, StartOffset)],
    ) -> Result<(), ClientError> {
        let topic_name: Rc<str> = Rc::from(topic);
        let admin = Admin::new(self.client.clone());
        for &(partition, start) in partitions {
            let position = self.resolve(&admin, topic, partition, start).await?;
            self.moved();
            let mut assignments = self.assignments.borrow_mut();
            assignments.retain(|entry| !(&*entry.topic == topic && entry.partition == partition));
            assignments.push(Assignment {
                topic: Rc::clone(&topic_name),
                partition,
                position,
                high_watermark: Offset(-1),
            });
        }
        Ok(())
    }

    /// Assigns every partition of `topic`, all starting at `start`.
    pub async fn assign_all(&self, topic: &str, start: StartOffset) -> Result<(), ClientError> {
        let metadata = self.client.topic(topic).await?;
        let partitions: Vec<(PartitionId, StartOffset)> = metadata
            .partitions
            .iter()
            .map(|partition| (partition.id, start))
            .collect();
        self.assign(topic, &partitions).await
    }

    async fn resolve(
        &self,
        admin: &Admin,
        topic: &str,
        partition: PartitionId,
        start: StartOffset,
    ) -> Result<Offset, ClientError> {
        let spec = match start {
            StartOffset::At(offset) => return Ok(offset),
            StartOffset::Earliest => OffsetSpec::Earliest,
            StartOffset::Latest => OffsetSpec::Latest,
            StartOffset::Timestamp(timestamp_ms) => OffsetSpec::Timestamp(timestamp_ms),
        };
        let answers = admin.list_offsets(topic, &[partition], spec).await?;
        match answers.into_iter().next() {
            Some((_, Ok(listed))) if listed.offset.0 >= 0 => Ok(listed.offset),
            // No record at or after the timestamp: start at the end.
            Some((_, Ok(_))) => {
                let latest = admin
                    .list_offsets(topic, &[partition], OffsetSpec::Latest)
                    .await?;
                match latest.into_iter().next() {
                    Some((_, Ok(listed))) => Ok(listed.offset),
                    Some((_, Err(error))) => Err(error.into()),
                    None => Err(ClientError::UnknownPartition {
                        topic: topic.to_owned(),
                        partition,
                    }),
                }
            }
            Some((_, Err(error))) => Err(error.into()),
            None => Err(ClientError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
            }),
        }
    }

    /// Drops every assigned partition (e.g. before taking a group's new assignment).
    pub fn unassign(&self) {
        self.moved();
        self.assignments.borrow_mut().clear();
    }

    /// Moves the position of an assigned partition; `false` if it is not assigned.
    pub fn seek(&self, topic: &str, partition: PartitionId, offset: Offset) -> bool {
        self.moved();
        let mut assignments = self.assignments.borrow_mut();
        match assignments
            .iter_mut()
            .find(|entry| &*entry.topic == topic && entry.partition == partition)
        {
            Some(entry) => {
                entry.position = offset;
                true
            }
            None => false,
        }
    }

    /// The next offset to read of every assigned partition.
    pub fn positions(&self) -> Vec<(Rc<str>, PartitionId, Offset)> {
        self.assignments
            .borrow()
            .iter()
            .map(|entry| (Rc::clone(&entry.topic), entry.partition, entry.position))
            .collect()
    }

    /// The high watermark each partition had at its last fetch (-1 before the first).
    pub fn high_watermarks(&self) -> Vec<(Rc<str>, PartitionId, Offset)> {
        self.assignments
            .borrow()
            .iter()
            .map(|entry| {
                (
                    Rc::clone(&entry.topic),
                    entry.partition,
                    entry.high_watermark,
                )
            })
            .collect()
    }

    /// Fetches and decodes records (see the module docs).
    pub async fn poll(&self) -> Result<Vec<ConsumerRecord>, ClientError> {
        let batches = self.poll_batches().await?;
        let mut records = Vec::new();
        for (batch, from) in batches {
            records.extend(batch.records(from)?);
        }
        Ok(records)
    }

    /// Fetches complete record batches, each with the position it was fetched from (records
    /// before that offset, in a batch that starts earlier, are not the caller's).
    pub async fn poll_batches(&self) -> Result<Vec<(FetchedBatch, Offset)>, ClientError> {
        let prefetched = self.prefetched.borrow_mut().take();
        let pending = match prefetched {
            Some(prefetch) if prefetch.moves == self.moves.get() => prefetch.pending,
            // Stale (a position moved since) or none: its answers are dropped on arrival.
            _ => self.send_fetches().await?,
        };
        let mut fetched = Vec::new();
        for reply in pending {
            let response = reply.response().await?;
            self.absorb(response, &mut fetched).await?;
        }
        if self.config.prefetch && !fetched.is_empty() {
            match self.send_fetches().await {
                Ok(pending) => {
                    *self.prefetched.borrow_mut() = Some(Prefetch {
                        moves: self.moves.get(),
                        pending,
                    });
                }
                // The next poll sends again and reports what is still wrong.
                Err(error) => debug!(%error, "prefetch not sent"),
            }
        }
        Ok(fetched)
    }

    /// Sends one Fetch per leader for the current positions; the answers are awaited later.
    async fn send_fetches(&self) -> Result<Vec<PendingReply<FetchRequest>>, ClientError> {
        let mut by_leader: HashMap<NodeId, Vec<Assignment>> = HashMap::new();
        let assignments = self.assignments.borrow().clone();
        for entry in assignments {
            match self.client.leader(&entry.topic, entry.partition).await {
                Ok(leader) => by_leader.entry(leader).or_default().push(entry),
                Err(error) => {
                    debug!(topic = %entry.topic, partition = %entry.partition, %error, "no leader; refreshing metadata");
                    self.client.refresh_topic(&entry.topic).await?;
                }
            }
        }
        // Write every Fetch first, then wait: the leaders answer concurrently.
        let mut pending: Vec<PendingReply<FetchRequest>> = Vec::new();
        for (leader, entries) in &by_leader {
            let connection = self.client.broker(*leader).await?;
            let version = connection.version(ApiKey::Fetch)?;
            let request = self.fetch_request(entries);
            pending.push(connection.send(&request, version).await?);
        }
        Ok(pending)
    }

    fn moved(&self) {
        self.moves.set(self.moves.get().wrapping_add(1));
    }

    fn fetch_request(&self, entries: &[Assignment]) -> FetchRequest {
        let mut topics: Vec<FetchTopic> = Vec::new();
        for entry in entries {
            let partition = FetchPartition::default()
                .with_partition(entry.partition.0)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(entry.position.0)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(self.config.partition_max_bytes);
            match topics
                .iter_mut()
                .find(|topic| topic.topic.0.as_str() == &*entry.topic)
            {
                Some(topic) => topic.partitions.push(partition),
                None => topics.push(
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(entry.topic.to_string())))
                        .with_partitions(vec![partition]),
                ),
            }
        }
        FetchRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_max_wait_ms(self.config.max_wait_ms)
            .with_min_bytes(self.config.min_bytes)
            .with_max_bytes(self.config.max_bytes)
            .with_isolation_level(self.config.isolation_level)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(topics)
    }

    async fn absorb(
        &self,
        response: FetchResponse,
        fetched: &mut Vec<(FetchedBatch, Offset)>,
    ) -> Result<(), ClientError> {
        let top_level = KafkaCode(response.error_code);
        if !top_level.is_ok() {
            return Err(KafkaError::new(ApiKey::Fetch, top_level).into());
        }
        for topic in response.responses {
            let name = topic.topic.0.as_str();
            for partition in topic.partitions {
                let id = PartitionId(partition.partition_index);
                let code = KafkaCode(partition.error_code);
                let Some((topic_name, position)) = self.position_of(name, id) else {
                    continue;
                };
                if code == KafkaCode::OFFSET_OUT_OF_RANGE {
                    self.reset(&topic_name, id, position).await?;
                    continue;
                }
                if code.needs_metadata_refresh() {
                    self.client.refresh_topic(&topic_name).await?;
                    continue;
                }
                if !code.is_ok() {
                    return Err(KafkaError::new(ApiKey::Fetch, code)
                        .with_resource(format!("{name}-{id}"))
                        .into());
                }
                let mut next = position;
                if let Some(records) = partition.records {
                    for batch in split_batches(&topic_name, id, records) {
                        if batch.last_offset < position {
                            continue;
                        }
                        next = Offset(batch.last_offset.0 + 1);
                        fetched.push((batch, position));
                    }
                }
                self.update(&topic_name, id, next, Offset(partition.high_watermark));
            }
        }
        Ok(())
    }

    fn position_of(&self, topic: &str, partition: PartitionId) -> Option<(Rc<str>, Offset)> {
        self.assignments
            .borrow()
            .iter()
            .find(|entry| &*entry.topic == topic && entry.partition == partition)
            .map(|entry| (Rc::clone(&entry.topic), entry.position))
    }

    fn update(&self, topic: &str, partition: PartitionId, position: Offset, high: Offset) {
        if let Some(entry) = self
            .assignments
            .borrow_mut()
            .iter_mut()
            .find(|entry| &*entry.topic == topic && entry.partition == partition)
        {
            entry.position = position;
            entry.high_watermark = high;
        }
    }

    async fn reset(
        &self,
        topic: &str,
        partition: PartitionId,
        position: Offset,
    ) -> Result<(), ClientError> {
        let Some(policy) = self.config.auto_offset_reset else {
            return Err(
                KafkaError::new(ApiKey::Fetch, KafkaCode::OFFSET_OUT_OF_RANGE)
                    .with_resource(format!("{topic}-{partition} at offset {position}"))
                    .into(),
            );
        };
        let admin = Admin::new(self.client.clone());
        let offset = self.resolve(&admin, topic, partition, policy).await?;
        debug!(%topic, %partition, from = %position, to = %offset, "offset out of range; reset");
        let high = self
            .assignments
            .borrow()
            .iter()
            .find(|entry| &*entry.topic == topic && entry.partition == partition)
            .map_or(Offset(-1), |entry| entry.high_watermark);
        self.moved();
        self.update(topic, partition, offset, high);
        Ok(())
    }
}

/// Splits a Fetch answer's record bytes into complete batches (a cut-off tail is dropped).
pub fn split_batches(topic: &Rc<str>, partition: PartitionId, records: Bytes) -> Vec<FetchedBatch> {
    let mut batches = Vec::new();
    let mut at = 0usize;
    while let Some(header) = records.get(at..at + BATCH_HEADER_BYTES) {
        let read_i64 = |position: usize| {
            header
                .get(position..position + 8)
                .and_then(|bytes| bytes.try_into().ok())
                .map_or(0, i64::from_be_bytes)
        };
        let read_i32 = |position: usize| {
            header
                .get(position..position + 4)
                .and_then(|bytes| bytes.try_into().ok())
                .map_or(0, i32::from_be_bytes)
        };
        let base_offset = read_i64(0);
        let Ok(length) = usize::try_from(read_i32(8)) else {
            break;
        };
        let Some(end) = (at + LENGTH_FIELD_END).checked_add(length) else {
            break;
        };
        if end > records.len() || length + LENGTH_FIELD_END < BATCH_HEADER_BYTES {
            break;
        }
        batches.push(FetchedBatch {
            topic: Rc::clone(topic),
            partition,
            base_offset: Offset(base_offset),
            last_offset: Offset(base_offset + i64::from(read_i32(LAST_OFFSET_DELTA_AT))),
            record_count: read_i32(RECORD_COUNT_AT),
            first_timestamp_ms: read_i64(FIRST_TIMESTAMP_AT),
            data: records.slice(at..end),
        });
        at = end;
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::producer::{encode_batch, Compression};
    use kafka_protocol::records::{Record, TimestampType};

    fn records(count: i64) -> Vec<Record> {
        (0..count)
            .map(|offset| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset,
                sequence: (offset as i32) - 1,
                timestamp: 1000 + offset,
                key: None,
                value: Some(Bytes::from(vec![b'x'; 100])),
                headers: Default::default(),
            })
            .collect()
    }

    #[test]
    fn splits_complete_batches_and_drops_a_cut_tail() {
        let first = encode_batch(&records(3), Compression::None).expect("encode");
        let second = encode_batch(&records(2), Compression::Lz4).expect("encode");
        let mut joined = first.to_vec();
        joined.extend_from_slice(&second);
        let topic: Rc<str> = Rc::from("t");
        let all = split_batches(&topic, PartitionId(0), Bytes::from(joined.clone()));
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].last_offset, Offset(2));
        assert_eq!(all[0].record_count, 3);
        assert_eq!(all[0].first_timestamp_ms, 1000);
        assert_eq!(all[1].records(Offset(0)).expect("decode").len(), 2);
        assert_eq!(all[0].records(Offset(1)).expect("decode").len(), 2);
        joined.truncate(joined.len() - 5);
        let cut = split_batches(&topic, PartitionId(0), Bytes::from(joined));
        assert_eq!(cut.len(), 1);
    }
}
