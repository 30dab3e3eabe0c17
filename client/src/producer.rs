//! [`Producer`]: per-partition batching with `linger_ms` / `batch_size_bytes`, acks 0/1/all,
//! compression, Kafka's default partitioner, and a delivery result per record.
//!
//! `send` appends the record to its partition's open batch and returns at once (it waits only
//! when `buffer_memory_bytes` of records are unacknowledged). A batch that would grow past
//! `batch_size_bytes` (or reaches it) is closed and queued behind the partition's earlier
//! batches. A drain task takes closed batches and open ones older than `linger_ms`; it visits
//! only partitions listed as having closed batches and open batches whose linger deadline
//! passed (a queue in deadline order), so its work follows what is ready, not the partition
//! count. It encodes each batch (`batch`: by hand with values referenced in place when
//! uncompressed, by kafka-protocol's `RecordBatchEncoder` when compressed), groups them per
//! leader into Produce requests of at most `max_request_bytes` with at most one batch per
//! partition (as Kafka's producer does), and writes them on the leader's connection with the
//! batches' bytes spliced into the frame, not copied (`frame`); the connection's in-flight
//! limit paces it, and requests on one connection are answered in order, so a partition's
//! batches stay in order. Each answer completes the records of its batches.
//!
//! Keyed records go to `murmur2(key) % partitions` (as Java and librdkafka); unkeyed records
//! stick to one partition until its batch closes, then move on (Kafka's sticky partitioner).
//! Retriable errors (stale leader, timeout, lost connection) refresh metadata and resend the
//! same encoded batch up to `retries` times. Without idempotence, a retry may reorder or
//! duplicate (as Kafka's producer with `enable.idempotence=false`).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::rc::Rc;
use std::str::FromStr;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_lite::future;
use glommio::sync::Semaphore;
use glommio::timer::Timer;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions};
use tracing::{debug, warn};

use crate::batch::{self, PendingRecord, RecordsRope, BATCH_HEADER_BYTES};
use crate::cluster::{Client, TopicMetadata};
use crate::connection::PendingReply;
use crate::error::{ClientError, DeliveryError, KafkaCode, KafkaError};
use crate::frame::{Splice, SPLICE_MIN_BYTES};
use crate::partitioner::partition_for_key;
use crate::sync::Notify;
use crate::types::{NodeId, Offset, PartitionId};

/// Per-record bytes added to key + value + headers when estimating batch sizes (varint
/// lengths, offset and timestamp deltas, attributes).
const RECORD_OVERHEAD_BYTES: usize = 21;
/// Most records an open batch reserves room for up front.
const MAX_RECORDS_RESERVED: usize = 4096;

/// How many replicas must have a record before the broker answers (Kafka's `acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// No answer at all: the record counts as sent once written to the socket.
    None,
    /// The leader appended it.
    Leader,
    /// Every in-sync replica has it.
    All,
}

impl Acks {
    /// The wire value: 0, 1 or -1.
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// A value that does not name an option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?} (expected one of {expected})")]
pub struct ParseOptionError {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl FromStr for Acks {
    type Err = ParseOptionError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            _ => Err(ParseOptionError {
                what: "acks",
                value: value.to_owned(),
                expected: "0, 1, all, -1",
            }),
        }
    }
}

/// Batch compression codec (Kafka's `compression.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub(crate) fn codec(self) -> kafka_protocol::records::Compression {
        use kafka_protocol::records::Compression as Codec;
        match self {
            Compression::None => Codec::None,
            Compression::Gzip => Codec::Gzip,
            Compression::Snappy => Codec::Snappy,
            Compression::Lz4 => Codec::Lz4,
            Compression::Zstd => Codec::Zstd,
        }
    }

    /// Kafka's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl FromStr for Compression {
    type Err = ParseOptionError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "none" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "snappy" => Ok(Compression::Snappy),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd),
            _ => Err(ParseOptionError {
                what: "compression",
                value: value.to_owned(),
                expected: "none, gzip, snappy, lz4, zstd",
            }),
        }
    }
}

/// Settings of a [`Producer`] (Kafka's names in the comments).
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `acks`.
    pub acks: Acks,
    /// `linger.ms`: how long a batch waits for more records before it is sent.
    pub linger_ms: u64,
    /// `batch.size`: a batch is sent as soon as it holds this many bytes.
    pub batch_size_bytes: usize,
    /// `compression.type`.
    pub compression: Compression,
    /// `request.timeout.ms`, also sent as the Produce request's timeout.
    pub request_timeout_ms: u64,
    /// `buffer.memory`: records accepted but not yet acknowledged; `send` waits above it.
    pub buffer_memory_bytes: usize,
    /// `max.request.size`: the largest Produce request (and so the largest record).
    pub max_request_bytes: usize,
    /// `retries` for retriable errors.
    pub retries: u32,
    /// `retry.backoff.ms`.
    pub retry_backoff_ms: u64,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            acks: Acks::All,
            linger_ms: 5,
            batch_size_bytes: 16 << 10,
            compression: Compression::None,
            request_timeout_ms: 30_000,
            buffer_memory_bytes: 32 << 20,
            max_request_bytes: 1 << 20,
            retries: 5,
            retry_backoff_ms: 100,
        }
    }
}

/// A record to send.
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord {
    /// A fixed partition; `None` lets the partitioner choose.
    pub partition: Option<PartitionId>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Create time in ms since the Unix epoch; `None` = now.
    pub timestamp_ms: Option<i64>,
}

impl ProducerRecord {
    pub fn new(value: impl Into<Bytes>) -> Self {
        Self {
            value: Some(value.into()),
            ..Self::default()
        }
    }

    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn with_partition(mut self, partition: PartitionId) -> Self {
        self.partition = Some(partition);
        self
    }

    pub fn with_header(mut self, name: impl Into<String>, value: Option<Bytes>) -> Self {
        self.headers.push((name.into(), value));
        self
    }

    pub fn with_timestamp_ms(mut self, timestamp_ms: i64) -> Self {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }

    /// Bytes this record adds to a batch, roughly (before compression).
    fn estimated_bytes(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.as_ref().map_or(0, Bytes::len) + 4)
            .sum();
        self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + headers
            + RECORD_OVERHEAD_BYTES
    }
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    pub partition: PartitionId,
    /// The record's offset; -1 with acks=0 (the broker does not say).
    pub offset: Offset,
    /// The log append time if the topic uses it, else the record's create time.
    pub timestamp_ms: i64,
    /// When the answer arrived (acks=0: when the request was written), for latency figures.
    pub acked_at: Instant,
}

/// What the broker said about a batch.
#[derive(Debug, Clone, Copy)]
struct BatchAck {
    base_offset: Offset,
    log_append_time_ms: i64,
    acked_at: Instant,
}

/// Shared by every record of one batch: the batch's result and who waits for it.
struct BatchOutcome {
    state: RefCell<Option<Result<BatchAck, DeliveryError>>>,
    waiters: RefCell<Vec<Waker>>,
}

impl BatchOutcome {
    fn new() -> Rc<Self> {
        Rc::new(Self {
            state: RefCell::new(None),
            waiters: RefCell::new(Vec::new()),
        })
    }

    fn complete(&self, result: Result<BatchAck, DeliveryError>) {
        *self.state.borrow_mut() = Some(result);
        for waker in self.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }
}

/// The delivery result of one record; resolves when its batch is acknowledged or fails.
pub struct DeliveryFuture {
    outcome: Rc<BatchOutcome>,
    index_in_batch: i64,
    partition: PartitionId,
    timestamp_ms: i64,
    registered: bool,
}

impl DeliveryFuture {
    /// The result if it is already known (does not wait).
    pub fn try_result(&self) -> Option<Result<RecordMetadata, DeliveryError>> {
        let state = self.outcome.state.borrow();
        let result = state.as_ref()?;
        Some(match result {
            Ok(ack) => Ok(RecordMetadata {
                partition: self.partition,
                offset: if ack.base_offset.0 >= 0 {
                    Offset(ack.base_offset.0 + self.index_in_batch)
                } else {
                    ack.base_offset
                },
                timestamp_ms: if ack.log_append_time_ms >= 0 {
                    ack.log_append_time_ms
                } else {
                    self.timestamp_ms
                },
                acked_at: ack.acked_at,
            }),
            Err(error) => Err(error.clone()),
        })
    }

    /// The partition the record was put in.
    pub fn partition(&self) -> PartitionId {
        self.partition
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, DeliveryError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(result) = self.try_result() {
            return Poll::Ready(result);
        }
        if !self.registered {
            self.outcome.waiters.borrow_mut().push(cx.waker().clone());
            self.registered = true;
        } else {
            let mut waiters = self.outcome.waiters.borrow_mut();
            if !waiters.iter().any(|waker| waker.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

/// A batch being filled.
struct OpenBatch {
    records: Vec<PendingRecord>,
    min_timestamp_ms: i64,
    max_timestamp_ms: i64,
    estimated_bytes: usize,
    /// Tells this batch apart from later ones of the partition (see [`Lingering`]).
    serial: u64,
    outcome: Rc<BatchOutcome>,
}

/// An open batch's linger deadline. Entries are queued as batches open, so (`linger_ms`
/// being fixed) the queue is in deadline order; an entry whose batch closed early (it
/// filled up) is stale and skipped. At most one entry per batch opened in the last
/// `linger_ms` (and per open batch while a flush is pending).
struct Lingering {
    deadline: Instant,
    topic: Rc<str>,
    partition_index: usize,
    serial: u64,
}

/// A closed, encoded batch on its way (or back for a retry).
struct ReadyBatch {
    topic: Rc<str>,
    partition: PartitionId,
    encoded: RecordsRope,
    record_count: u64,
    /// Buffer memory held until the batch completes.
    held_bytes: usize,
    outcome: Rc<BatchOutcome>,
    attempts: u32,
}

/// One partition's batches: closed ones waiting to be sent, oldest first, and the open one.
#[derive(Default)]
struct PartitionQueue {
    closed: VecDeque<OpenBatch>,
    open: Option<OpenBatch>,
    /// The partition is in `Inner::closed_partitions` (once at most).
    listed_closed: bool,
}

impl PartitionQueue {
    /// Closes the open batch: it goes out at the next drain, behind the earlier closed ones.
    /// Returns whether the partition must be listed in `Inner::closed_partitions`.
    fn close_open(&mut self) -> bool {
        let Some(open) = self.open.take() else {
            return false;
        };
        self.closed.push_back(open);
        !std::mem::replace(&mut self.listed_closed, true)
    }
}

struct TopicState {
    name: Rc<str>,
    metadata: Rc<TopicMetadata>,
    partitions: Vec<PartitionQueue>,
    sticky: usize,
}

struct Inner {
    client: Client,
    config: ProducerConfig,
    topics: RefCell<TopicMap<TopicState>>,
    /// Batches to send again after a retriable failure.
    retries: RefCell<Vec<ReadyBatch>>,
    /// Partitions with closed batches, so a drain visits only those (each listed once;
    /// bounded by the number of partitions).
    closed_partitions: RefCell<VecDeque<(Rc<str>, usize)>>,
    /// Open batches by linger deadline, earliest first.
    lingering: RefCell<VecDeque<Lingering>>,
    next_batch_serial: Cell<u64>,
    /// Wakes the drain task: a batch filled up, opened, or came back for a retry.
    wake_drain: Notify,
    /// Wakes `flush` waiters when a batch completes.
    completed: Notify,
    buffer: Semaphore,
    outstanding_records: Cell<u64>,
    flush_requests: Cell<u64>,
    closed: Cell<bool>,
    drain_stopped: Cell<bool>,
}

/// Sends records to one cluster. Cheap to clone; owned by one executor.
#[derive(Clone)]
pub struct Producer {
    inner: Rc<Inner>,
}

impl Producer {
    /// A producer over `client`; its drain task runs on the current executor until
    /// [`Producer::close`].
    pub fn new(client: Client, config: ProducerConfig) -> Result<Producer, ClientError> {
        if config.batch_size_bytes == 0 || config.max_request_bytes == 0 {
            return Err(ClientError::InvalidConfig(
                "batch_size_bytes and max_request_bytes must be at least 1",
            ));
        }
        if config.batch_size_bytes > config.max_request_bytes {
            return Err(ClientError::InvalidConfig(
                "batch_size_bytes must not exceed max_request_bytes",
            ));
        }
        if config.buffer_memory_bytes < config.max_request_bytes {
            return Err(ClientError::InvalidConfig(
                "buffer_memory_bytes must be at least max_request_bytes",
            ));
        }
        let inner = Rc::new(Inner {
            client,
            buffer: Semaphore::new(config.buffer_memory_bytes as u64),
            config,
            topics: RefCell::new(TopicMap::default()),
            retries: RefCell::new(Vec::new()),
            closed_partitions: RefCell::new(VecDeque::new()),
            lingering: RefCell::new(VecDeque::new()),
            next_batch_serial: Cell::new(0),
            wake_drain: Notify::new(),
            completed: Notify::new(),
            outstanding_records: Cell::new(0),
            flush_requests: Cell::new(0),
            closed: Cell::new(false),
            drain_stopped: Cell::new(false),
        });
        glommio::spawn_local(drain_loop(Rc::clone(&inner))).detach();
        Ok(Producer { inner })
    }

    /// The client this producer sends through.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Records sent but not yet acknowledged or failed.
    pub fn outstanding_records(&self) -> u64 {
        self.inner.outstanding_records.get()
    }

    /// Queues `record` for `topic`; waits only while the buffer is full. Await the returned
    /// future for the record's offset (or error).
    pub async fn send(
        &self,
        topic: &str,
        record: ProducerRecord,
    ) -> Result<DeliveryFuture, ClientError> {
        let inner = &self.inner;
        if inner.closed.get() {
            return Err(ClientError::ProducerClosed);
        }
        let record_bytes = record.estimated_bytes();
        let limit_bytes = inner
            .config
            .max_request_bytes
            .saturating_sub(BATCH_HEADER_BYTES + 128);
        if record_bytes > limit_bytes {
            return Err(ClientError::RecordTooLarge {
                record_bytes,
                limit_bytes,
            });
        }
        if !inner
            .buffer
            .try_acquire(record_bytes as u64)
            .unwrap_or(false)
        {
            // Make room: whatever is buffered should go now.
            inner.wake_drain.notify_all();
            inner
                .buffer
                .acquire(record_bytes as u64)
                .await
                .map_err(|error| ClientError::Runtime(error.into()))?;
        }
        let record = match self.append(topic, record, record_bytes) {
            Appended::Done(appended) => {
                if appended.is_err() {
                    inner.buffer.signal(record_bytes as u64);
                }
                return appended;
            }
            Appended::UnknownTopic(record) => record,
        };
        let metadata = match inner.client.topic(topic).await {
            Ok(metadata) => metadata,
            Err(error) => {
                inner.buffer.signal(record_bytes as u64);
                return Err(error);
            }
        };
        let name: Rc<str> = Rc::from(topic);
        let partition_count = metadata.partitions.len();
        inner
            .topics
            .borrow_mut()
            .entry(Rc::clone(&name))
            .or_insert_with(|| TopicState {
                name,
                sticky: sticky_start(partition_count),
                partitions: (0..partition_count)
                    .map(|_| PartitionQueue::default())
                    .collect(),
                metadata,
            });
        match self.append(topic, record, record_bytes) {
            Appended::Done(Ok(future)) => Ok(future),
            Appended::Done(Err(error)) => {
                inner.buffer.signal(record_bytes as u64);
                Err(error)
            }
            Appended::UnknownTopic(_) => {
                inner.buffer.signal(record_bytes as u64);
                Err(ClientError::UnknownTopic {
                    topic: topic.to_owned(),
                })
            }
        }
    }

    /// Adds `record` to its partition's open batch (the record comes back if the producer
    /// does not know `topic` yet).
    fn append(&self, topic: &str, record: ProducerRecord, record_bytes: usize) -> Appended {
        let inner = &self.inner;
        let mut topics = inner.topics.borrow_mut();
        let Some(state) = topics.get_mut(topic) else {
            return Appended::UnknownTopic(record);
        };
        let partition_count = state.partitions.len();
        let index = match (record.partition, &record.key) {
            (Some(partition), _) => {
                match partition.index().filter(|&index| index < partition_count) {
                    Some(index) => index,
                    None => {
                        return Appended::Done(Err(ClientError::UnknownPartition {
                            topic: topic.to_owned(),
                            partition,
                        }))
                    }
                }
            }
            (None, Some(key)) => match partition_for_key(key, partition_count) {
                Some(index) => index,
                None => {
                    return Appended::Done(Err(ClientError::UnknownTopic {
                        topic: topic.to_owned(),
                    }))
                }
            },
            (None, None) => {
                if partition_count == 0 {
                    return Appended::Done(Err(ClientError::UnknownTopic {
                        topic: topic.to_owned(),
                    }));
                }
                let index = state.sticky % partition_count;
                let batch_size_bytes = inner.config.batch_size_bytes;
                match state.partitions.get_mut(index) {
                    // Kafka's sticky partitioner (KIP-794): a record that does not fit the
                    // sticky partition's open batch closes it and goes to the next partition,
                    // rather than opening a batch of its own behind the full one there (which
                    // would need a Produce request of its own: one batch per partition each).
                    Some(queue) if !fits(queue.open.as_ref(), record_bytes, batch_size_bytes) => {
                        self.close_open_batch(&state.name, index, queue);
                        state.sticky = state.sticky.wrapping_add(1);
                        state.sticky % partition_count
                    }
                    _ => index,
                }
            }
        };
        // As before: filling the sticky partition's batch moves unkeyed records on.
        let sticky = record.partition.is_none();
        let timestamp_ms = record.timestamp_ms.unwrap_or_else(now_ms);
        let Some(queue) = state.partitions.get_mut(index) else {
            return Appended::Done(Err(ClientError::InvalidConfig(
                "partition index out of range",
            )));
        };
        if !fits(
            queue.open.as_ref(),
            record_bytes,
            inner.config.batch_size_bytes,
        ) {
            self.close_open_batch(&state.name, index, queue);
            if sticky && index == state.sticky % partition_count {
                state.sticky = state.sticky.wrapping_add(1);
            }
        }
        if queue.open.is_none() {
            let serial = inner.next_batch_serial.get();
            inner.next_batch_serial.set(serial.wrapping_add(1));
            queue.open = Some(OpenBatch {
                records: Vec::new(),
                min_timestamp_ms: timestamp_ms,
                max_timestamp_ms: timestamp_ms,
                estimated_bytes: BATCH_HEADER_BYTES,
                serial,
                outcome: BatchOutcome::new(),
            });
            let mut lingering = inner.lingering.borrow_mut();
            if lingering.is_empty() {
                // The drain task has no deadline to wait for: it must learn this one.
                inner.wake_drain.notify_all();
            }
            lingering.push_back(Lingering {
                deadline: Instant::now() + Duration::from_millis(inner.config.linger_ms),
                topic: Rc::clone(&state.name),
                partition_index: index,
                serial,
            });
        }
        let Some(batch) = queue.open.as_mut() else {
            return Appended::Done(Err(ClientError::InvalidConfig("no open batch")));
        };
        let offset_delta = batch.records.len() as i64;
        if batch.records.is_empty() {
            // Room for the records a full batch will hold, so the list does not grow by
            // copying itself over and over.
            let expected = inner.config.batch_size_bytes / record_bytes.max(1);
            batch
                .records
                .reserve(expected.clamp(1, MAX_RECORDS_RESERVED));
        }
        batch.min_timestamp_ms = batch.min_timestamp_ms.min(timestamp_ms);
        batch.max_timestamp_ms = batch.max_timestamp_ms.max(timestamp_ms);
        batch.records.push(PendingRecord {
            timestamp_ms,
            key: record.key,
            value: record.value,
            headers: record.headers,
        });
        batch.estimated_bytes += record_bytes;
        let future = DeliveryFuture {
            outcome: Rc::clone(&batch.outcome),
            index_in_batch: offset_delta,
            partition: PartitionId(index as i32),
            timestamp_ms,
            registered: false,
        };
        if batch.estimated_bytes >= inner.config.batch_size_bytes {
            // Full already: no need to wait for a record that does not fit.
            self.close_open_batch(&state.name, index, queue);
            if sticky && index == state.sticky % partition_count {
                state.sticky = state.sticky.wrapping_add(1);
            }
        }
        inner
            .outstanding_records
            .set(inner.outstanding_records.get() + 1);
        Appended::Done(Ok(future))
    }

    /// Closes a partition's open batch and lists the partition for the drain task.
    fn close_open_batch(&self, topic: &Rc<str>, index: usize, queue: &mut PartitionQueue) {
        if queue.close_open() {
            let mut closed = self.inner.closed_partitions.borrow_mut();
            if closed.is_empty() {
                self.inner.wake_drain.notify_all();
            }
            closed.push_back((Rc::clone(topic), index));
        }
    }

    /// Sends everything buffered now and waits until every record sent before the call is
    /// acknowledged or failed.
    pub async fn flush(&self) {
        let inner = &self.inner;
        inner.flush_requests.set(inner.flush_requests.get() + 1);
        inner.wake_drain.notify_all();
        loop {
            let completed = inner.completed.notified();
            if inner.outstanding_records.get() == 0 || inner.drain_stopped.get() {
                break;
            }
            completed.await;
        }
        inner.flush_requests.set(inner.flush_requests.get() - 1);
    }

    /// Flushes, then stops the drain task; later sends fail with `ProducerClosed`.
    pub async fn close(&self) {
        self.flush().await;
        self.inner.closed.set(true);
        self.inner.wake_drain.notify_all();
    }
}

/// Topic names are hashed on every `send`; SipHash's resistance to chosen keys buys nothing
/// for the few names an application produces to, so the map uses FxHash's multiply-rotate.
#[derive(Debug, Default, Clone, Copy)]
struct TopicHasher(u64);

impl TopicHasher {
    fn add(&mut self, word: u64) {
        const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for TopicHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut le = [0u8; 8];
            le.copy_from_slice(word);
            self.add(u64::from_le_bytes(le));
        }
        for &byte in words.remainder() {
            self.add(u64::from(byte));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type TopicMap<V> = HashMap<Rc<str>, V, BuildHasherDefault<TopicHasher>>;

/// What [`Producer::append`] did.
enum Appended {
    Done(Result<DeliveryFuture, ClientError>),
    UnknownTopic(ProducerRecord),
}

/// Whether a record of `record_bytes` may join the open batch (a batch holds at least one
/// record, however large).
fn fits(open: Option<&OpenBatch>, record_bytes: usize, batch_size_bytes: usize) -> bool {
    open.is_none_or(|open| {
        open.records.is_empty() || open.estimated_bytes + record_bytes <= batch_size_bytes
    })
}

/// Unkeyed records start on a partition that differs between producers.
fn sticky_start(partition_count: usize) -> usize {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos() as usize);
    nanos % partition_count.max(1)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

async fn drain_loop(inner: Rc<Inner>) {
    loop {
        let woken = inner.wake_drain.notified();
        let (ready, next_deadline) = collect_ready(&inner, Instant::now());
        if !ready.is_empty() {
            dispatch(&inner, ready).await;
            continue;
        }
        if inner.closed.get() && inner.outstanding_records.get() == 0 {
            break;
        }
        match next_deadline {
            Some(deadline) => {
                let wait = deadline.saturating_duration_since(Instant::now());
                future::or(woken, async {
                    Timer::new(wait).await;
                })
                .await;
            }
            None => woken.await,
        }
    }
    inner.drain_stopped.set(true);
    inner.completed.notify_all();
    debug!("producer drain task stopped");
}

/// Takes every batch that is full, past its linger time, or flushed, plus retries; returns
/// them and the earliest linger deadline of the batches left open. Visits only the partitions
/// with closed batches and the open batches whose deadline passed (not every partition).
fn collect_ready(inner: &Inner, now: Instant) -> (Vec<ReadyBatch>, Option<Instant>) {
    let mut ready: Vec<ReadyBatch> = inner.retries.borrow_mut().drain(..).collect();
    let flushing = inner.flush_requests.get() > 0 || inner.closed.get();
    let mut topics = inner.topics.borrow_mut();
    let closed: Vec<(Rc<str>, usize)> = inner.closed_partitions.borrow_mut().drain(..).collect();
    for (topic, index) in closed {
        let Some(state) = topics.get_mut(&*topic) else {
            continue;
        };
        if let Some(queue) = state.partitions.get_mut(index) {
            queue.listed_closed = false;
            let taken: Vec<OpenBatch> = queue.closed.drain(..).collect();
            for batch in taken {
                close_batch(
                    inner,
                    &state.name,
                    PartitionId(index as i32),
                    batch,
                    &mut ready,
                );
            }
        }
    }
    let mut lingering = inner.lingering.borrow_mut();
    let mut next_deadline = None;
    while let Some(front) = lingering.front() {
        if !flushing && front.deadline > now {
            next_deadline = Some(front.deadline);
            break;
        }
        let Some(entry) = lingering.pop_front() else {
            break;
        };
        let Some(state) = topics.get_mut(&*entry.topic) else {
            continue;
        };
        let partition_count = state.partitions.len().max(1);
        let Some(queue) = state.partitions.get_mut(entry.partition_index) else {
            continue;
        };
        if queue
            .open
            .as_ref()
            .is_none_or(|open| open.serial != entry.serial)
        {
            // That batch filled up and was closed (and taken) already.
            continue;
        }
        // The partition's closed batches go first, to keep its batches in order.
        let mut taken: Vec<OpenBatch> = queue.closed.drain(..).collect();
        taken.extend(queue.open.take());
        if entry.partition_index == state.sticky % partition_count {
            state.sticky = state.sticky.wrapping_add(1);
        }
        for batch in taken {
            close_batch(
                inner,
                &state.name,
                PartitionId(entry.partition_index as i32),
                batch,
                &mut ready,
            );
        }
    }
    (ready, next_deadline)
}

/// Encodes a taken batch into `ready` (or fails its records if it cannot be encoded).
fn close_batch(
    inner: &Inner,
    topic: &Rc<str>,
    partition: PartitionId,
    batch: OpenBatch,
    ready: &mut Vec<ReadyBatch>,
) {
    let record_count = batch.records.len() as u64;
    let held_bytes = batch.estimated_bytes - BATCH_HEADER_BYTES;
    match batch::encode(
        &batch.records,
        inner.config.compression,
        batch.min_timestamp_ms,
        batch.max_timestamp_ms,
    ) {
        Ok(encoded) => ready.push(ReadyBatch {
            topic: Rc::clone(topic),
            partition,
            encoded,
            record_count,
            held_bytes,
            outcome: batch.outcome,
            attempts: 0,
        }),
        Err(error) => finish(
            inner,
            &batch.outcome,
            record_count,
            held_bytes,
            Err(error.into()),
        ),
    }
}

/// Encodes records into one magic-v2 batch with kafka-protocol (compressing there).
pub fn encode_batch(records: &[Record], compression: Compression) -> Result<Bytes, ClientError> {
    // Sized up front: growing the buffer while encoding would copy the batch again and again.
    let capacity: usize = BATCH_HEADER_BYTES
        + records
            .iter()
            .map(|record| {
                RECORD_OVERHEAD_BYTES
                    + record.key.as_ref().map_or(0, Bytes::len)
                    + record.value.as_ref().map_or(0, Bytes::len)
                    + record
                        .headers
                        .iter()
                        .map(|(name, value)| name.len() + value.as_ref().map_or(0, Bytes::len) + 4)
                        .sum::<usize>()
            })
            .sum::<usize>();
    let mut buf = BytesMut::with_capacity(capacity);
    let options = RecordEncodeOptions {
        version: 2,
        compression: compression.codec(),
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).map_err(ClientError::records)?;
    Ok(buf.freeze())
}

fn finish(
    inner: &Inner,
    outcome: &BatchOutcome,
    record_count: u64,
    held_bytes: usize,
    result: Result<BatchAck, DeliveryError>,
) {
    outcome.complete(result);
    inner.buffer.signal(held_bytes as u64);
    inner
        .outstanding_records
        .set(inner.outstanding_records.get().saturating_sub(record_count));
    inner.completed.notify_all();
}

/// Groups batches by leader and writes the Produce requests.
async fn dispatch(inner: &Rc<Inner>, ready: Vec<ReadyBatch>) {
    let mut by_leader: HashMap<NodeId, Vec<ReadyBatch>> = HashMap::new();
    for batch in ready {
        let leader = {
            let topics = inner.topics.borrow();
            topics
                .get(&*batch.topic)
                .and_then(|state| state.metadata.partition(batch.partition))
                .and_then(|partition| partition.leader)
        };
        match leader {
            Some(leader) => by_leader.entry(leader).or_default().push(batch),
            None => {
                let error = ClientError::NoLeader {
                    topic: batch.topic.to_string(),
                    partition: batch.partition,
                };
                retry_or_fail(inner, vec![batch], error);
            }
        }
    }
    for (leader, batches) in by_leader {
        let mut waiting: VecDeque<ReadyBatch> = batches.into();
        while !waiting.is_empty() {
            // One request: at most one batch per partition (a partition's later batches go
            // in later requests, in order), at most `max_request_bytes` unless one batch alone.
            let mut request_batches: Vec<ReadyBatch> = Vec::new();
            let mut deferred: VecDeque<ReadyBatch> = VecDeque::new();
            let mut request_bytes = 0usize;
            while let Some(batch) = waiting.pop_front() {
                let same_partition = request_batches
                    .iter()
                    .any(|taken| taken.partition == batch.partition && taken.topic == batch.topic)
                    || deferred.iter().any(|later| {
                        later.partition == batch.partition && later.topic == batch.topic
                    });
                let too_big = !request_batches.is_empty()
                    && request_bytes + batch.encoded.len_bytes() > inner.config.max_request_bytes;
                if same_partition || too_big {
                    deferred.push_back(batch);
                } else {
                    request_bytes += batch.encoded.len_bytes();
                    request_batches.push(batch);
                }
            }
            waiting = deferred;
            send_request(inner, leader, request_batches).await;
        }
    }
}

/// The Produce request for `batches`, holding `records[i]` for `batches[i]`. Batches of one
/// topic must be next to each other, so the request encodes them in the same order.
fn produce_request(
    config: &ProducerConfig,
    batches: &[ReadyBatch],
    records: &[Bytes],
) -> ProduceRequest {
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for (batch, records) in batches.iter().zip(records) {
        let data = PartitionProduceData::default()
            .with_index(batch.partition.0)
            .with_records(Some(records.clone()));
        match topics
            .iter_mut()
            .find(|topic| topic.name.0.as_str() == &*batch.topic)
        {
            Some(topic) => topic.partition_data.push(data),
            None => topics.push(
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(batch.topic.to_string())))
                    .with_partition_data(vec![data]),
            ),
        }
    }
    ProduceRequest::default()
        .with_acks(config.acks.wire())
        .with_timeout_ms(i32::try_from(config.request_timeout_ms).unwrap_or(i32::MAX))
        .with_topic_data(topics)
}

/// Writes one Produce request (waiting for an in-flight slot) and leaves a task to handle
/// its answer.
async fn send_request(inner: &Rc<Inner>, leader: NodeId, batches: Vec<ReadyBatch>) {
    let connection = match inner.client.broker(leader).await {
        Ok(connection) => connection,
        Err(error) => return retry_or_fail(inner, batches, error),
    };
    let version = match connection.version(ApiKey::Produce) {
        Ok(version) => version,
        Err(error) => return fail_all(inner, batches, error),
    };
    let mut batches = grouped_by_topic(batches);
    // Each batch's bytes go to the socket from where they lie: the request holds the batch (or
    // a stand-in for a batch in pieces), and the frame builder swaps in the pieces.
    let stand_ins: Vec<Bytes> = batches
        .iter_mut()
        .enumerate()
        .map(|(nth, batch)| batch.encoded.stand_in(nth))
        .collect();
    let request = produce_request(&inner.config, &batches, &stand_ins);
    let splices: Vec<Splice<'_>> = batches
        .iter()
        .zip(&stand_ins)
        .filter(|(batch, stand_in)| {
            batch.encoded.as_contiguous().is_none() || stand_in.len() >= SPLICE_MIN_BYTES
        })
        .map(|(batch, stand_in)| batch.encoded.splice(stand_in))
        .collect();
    let sent = if inner.config.acks == Acks::None {
        connection
            .send_produce_oneway(&request, version, &splices)
            .await
            .map(|()| None)
    } else {
        connection
            .send_produce(&request, version, &splices)
            .await
            .map(Some)
    };
    drop(splices);
    let pending: PendingReply<ProduceRequest> = match sent {
        Ok(Some(pending)) => pending,
        Ok(None) => {
            // acks=0: delivered once written.
            finish_all(
                inner,
                batches,
                Ok(BatchAck {
                    base_offset: Offset(-1),
                    log_append_time_ms: -1,
                    acked_at: Instant::now(),
                }),
            );
            return;
        }
        Err(error) => return retry_or_fail(inner, batches, error),
    };
    let inner = Rc::clone(inner);
    glommio::spawn_local(async move {
        match pending.response().await {
            Ok(response) => handle_response(&inner, batches, response),
            Err(error) => retry_or_fail(&inner, batches, error),
        }
    })
    .detach();
}

/// `batches` with those of one topic next to each other (topics in order of first appearance,
/// batches of a topic in their order).
fn grouped_by_topic(batches: Vec<ReadyBatch>) -> Vec<ReadyBatch> {
    let mut topics: Vec<Rc<str>> = Vec::new();
    for batch in &batches {
        if !topics
            .iter()
            .any(|topic| Rc::ptr_eq(topic, &batch.topic) || *topic == batch.topic)
        {
            topics.push(Rc::clone(&batch.topic));
        }
    }
    if topics.len() <= 1 {
        return batches;
    }
    let mut batches = batches;
    batches.sort_by_key(|batch| {
        topics
            .iter()
            .position(|topic| *topic == batch.topic)
            .unwrap_or(usize::MAX)
    });
    batches
}

fn handle_response(inner: &Rc<Inner>, batches: Vec<ReadyBatch>, response: ProduceResponse) {
    let acked_at = Instant::now();
    let mut retry = Vec::new();
    let mut retry_error = None;
    for batch in batches {
        let answer = response
            .responses
            .iter()
            .filter(|topic| topic.name.0.as_str() == &*batch.topic)
            .flat_map(|topic| topic.partition_responses.iter())
            .find(|partition| partition.index == batch.partition.0);
        let Some(answer) = answer else {
            let error = KafkaError::new(ApiKey::Produce, KafkaCode(-1))
                .with_resource(format!("{}-{}", batch.topic, batch.partition))
                .with_message(Some("no answer for this partition"));
            finish(
                inner,
                &batch.outcome,
                batch.record_count,
                batch.held_bytes,
                Err(ClientError::from(error).into()),
            );
            continue;
        };
        let code = KafkaCode(answer.error_code);
        if code.is_ok() {
            finish(
                inner,
                &batch.outcome,
                batch.record_count,
                batch.held_bytes,
                Ok(BatchAck {
                    base_offset: Offset(answer.base_offset),
                    log_append_time_ms: answer.log_append_time_ms,
                    acked_at,
                }),
            );
            continue;
        }
        let error = KafkaError::new(ApiKey::Produce, code)
            .with_resource(format!("{}-{}", batch.topic, batch.partition))
            .with_message(
                answer
                    .error_message
                    .as_ref()
                    .map(|message| message.as_str()),
            );
        if code.is_retriable() && batch.attempts < inner.config.retries {
            retry.push(batch);
            retry_error = Some(error);
        } else {
            finish(
                inner,
                &batch.outcome,
                batch.record_count,
                batch.held_bytes,
                Err(ClientError::from(error).into()),
            );
        }
    }
    if let Some(error) = retry_error {
        retry_or_fail(inner, retry, error.into());
    }
}

fn fail_all(inner: &Inner, batches: Vec<ReadyBatch>, error: ClientError) {
    finish_all(inner, batches, Err(DeliveryError::from(error)));
}

/// Finishes every batch with the same result.
fn finish_all(inner: &Inner, batches: Vec<ReadyBatch>, result: Result<BatchAck, DeliveryError>) {
    for batch in batches {
        finish(
            inner,
            &batch.outcome,
            batch.record_count,
            batch.held_bytes,
            result.clone(),
        );
    }
}

/// Retries each batch that has attempts left (after a metadata refresh and the backoff) and
/// fails the others with `error`.
fn retry_or_fail(inner: &Rc<Inner>, batches: Vec<ReadyBatch>, error: ClientError) {
    if !error.is_retriable() {
        return fail_all(inner, batches, error);
    }
    let (again, exhausted): (Vec<ReadyBatch>, Vec<ReadyBatch>) = batches
        .into_iter()
        .partition(|batch| batch.attempts < inner.config.retries);
    if !exhausted.is_empty() {
        fail_all(inner, exhausted, error);
        return retry_later(inner, again);
    }
    warn!(%error, batches = again.len(), "produce failed, retrying");
    retry_later(inner, again);
}

fn retry_later(inner: &Rc<Inner>, mut batches: Vec<ReadyBatch>) {
    if batches.is_empty() {
        return;
    }
    for batch in &mut batches {
        batch.attempts += 1;
    }
    let inner = Rc::clone(inner);
    glommio::spawn_local(async move {
        Timer::new(Duration::from_millis(inner.config.retry_backoff_ms)).await;
        let mut topics: Vec<Rc<str>> = batches
            .iter()
            .map(|batch| Rc::clone(&batch.topic))
            .collect();
        topics.dedup();
        for topic in topics {
            match inner.client.refresh_topic(&topic).await {
                Ok(metadata) => {
                    if let Some(state) = inner.topics.borrow_mut().get_mut(&*topic) {
                        // Partitions may only grow; keep open batches, add empty slots.
                        while state.partitions.len() < metadata.partitions.len() {
                            state.partitions.push(PartitionQueue::default());
                        }
                        state.metadata = metadata;
                    }
                }
                Err(error) => debug!(%topic, %error, "metadata refresh before retry failed"),
            }
        }
        inner.retries.borrow_mut().extend(batches);
        inner.wake_drain.notify_all();
    })
    .detach();
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{
        RecordBatchDecoder, TimestampType, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH,
        NO_PRODUCER_ID,
    };

    fn record(offset: i64, value: &'static [u8]) -> Record {
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: (offset as i32).wrapping_sub(1),
            timestamp: 1_700_000_000_000 + offset,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(value)),
            headers: Default::default(),
        }
    }

    #[test]
    fn records_encode_into_one_batch_per_codec() {
        let records: Vec<Record> = (0..10).map(|offset| record(offset, b"hello")).collect();
        for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
            let compression: Compression = codec.parse().expect("codec");
            let mut encoded = encode_batch(&records, compression).expect("encode");
            // One batch: base offset 0, length covers the whole buffer, base sequence -1.
            let length = i32::from_be_bytes([encoded[8], encoded[9], encoded[10], encoded[11]]);
            assert_eq!(length as usize + 12, encoded.len(), "{codec}");
            let base_sequence =
                i32::from_be_bytes([encoded[53], encoded[54], encoded[55], encoded[56]]);
            assert_eq!(base_sequence, -1, "{codec}");
            let set = RecordBatchDecoder::decode(&mut encoded).expect("decode");
            assert_eq!(set.records.len(), 10, "{codec}");
            assert_eq!(set.records[9].offset, 9);
            assert_eq!(set.records[9].value.as_deref(), Some(&b"hello"[..]));
            assert_eq!(set.compression, compression.codec());
        }
    }

    #[test]
    fn a_batch_takes_records_up_to_its_size_and_at_least_one() {
        let open = |records: usize, estimated_bytes: usize| OpenBatch {
            records: (0..records)
                .map(|_| PendingRecord {
                    timestamp_ms: 0,
                    key: None,
                    value: None,
                    headers: Vec::new(),
                })
                .collect(),
            min_timestamp_ms: 0,
            max_timestamp_ms: 0,
            estimated_bytes,
            serial: 0,
            outcome: BatchOutcome::new(),
        };
        assert!(fits(None, 5000, 1000));
        assert!(fits(Some(&open(0, 100)), 5000, 1000));
        assert!(fits(Some(&open(1, 500)), 500, 1000));
        assert!(!fits(Some(&open(1, 500)), 501, 1000));
    }

    #[test]
    fn options_parse_like_kafka() {
        assert_eq!("all".parse::<Acks>().expect("all"), Acks::All);
        assert_eq!("-1".parse::<Acks>().expect("-1"), Acks::All);
        assert_eq!("0".parse::<Acks>().expect("0").wire(), 0);
        assert!("2".parse::<Acks>().is_err());
        assert!("brotli".parse::<Compression>().is_err());
    }
}
