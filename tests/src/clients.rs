//! rdkafka (librdkafka) helpers: recording producers, an assign-only consumer that stops on a
//! count plus end-of-partition within an overall deadline, and a blocking admin client.
//!
//! Consumers here never join a consumer group: they `assign` partitions and start from the
//! beginning, as consumer groups are a later issue. librdkafka's consumer still needs a
//! `group.id` to `assign` at all; with no `subscribe` and no commits it never joins the group,
//! though it may look for the group's coordinator (errors from that are tolerated, see
//! [`consume`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigResourceResult, NewPartitions, NewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message, Timestamp};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// Timeout for one admin request and for admin operations.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one `poll` blocks at most (a bound on loop latency, not a timing assertion).
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Where each message of a recording producer ended up, by the id given to `send`.
pub type DeliveryMap = HashMap<usize, Result<(i32, i64), KafkaError>>;

/// A producer context that records every delivery report by message id.
#[derive(Clone, Default)]
pub struct RecordingContext {
    deliveries: Arc<Mutex<DeliveryMap>>,
}

impl RecordingContext {
    /// A snapshot of the delivery reports so far.
    pub fn deliveries(&self) -> DeliveryMap {
        self.deliveries
            .lock()
            .expect("delivery map lock poisoned")
            .clone()
    }
}

impl ClientContext for RecordingContext {}

impl ProducerContext for RecordingContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, delivery_result: &DeliveryResult<'_>, message_id: usize) {
        let outcome = match delivery_result {
            Ok(message) => Ok((message.partition(), message.offset())),
            Err((error, _message)) => Err(error.clone()),
        };
        self.deliveries
            .lock()
            .expect("delivery map lock poisoned")
            .insert(message_id, outcome);
    }
}

/// A producer whose delivery reports are recorded (message id = the `usize` opaque).
pub type RecordingProducer = BaseProducer<RecordingContext>;

/// A client config for `bootstrap` with short, bounded timeouts and librdkafka's logs quiet.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "vaart-tests")
        .set("socket.timeout.ms", "30000")
        .set("message.timeout.ms", "60000")
        .set("log_level", "4");
    config
}

/// A recording producer with `acks` ("0", "1", "all") and `compression.codec`, plus any extra
/// `settings`. Idempotence stays off (it needs InitProducerId, a later issue).
pub fn recording_producer(
    bootstrap: &str,
    acks: &str,
    compression: &str,
    settings: &[(&str, &str)],
) -> RecordingProducer {
    let mut config = client_config(bootstrap);
    config
        .set("acks", acks)
        .set("compression.codec", compression)
        .set("enable.idempotence", "false")
        .set("linger.ms", "5")
        .set("max.in.flight.requests.per.connection", "5")
        .set("retries", "0");
    for (name, value) in settings {
        config.set(*name, *value);
    }
    config
        .create_with_context(RecordingContext::default())
        .expect("create an rdkafka producer")
}

/// Sends one record, polling (serving delivery callbacks) while librdkafka's queue is full;
/// gives up after `deadline`.
pub fn send_with_retry(
    producer: &RecordingProducer,
    mut record: BaseRecord<'_, [u8], [u8], usize>,
    deadline: Instant,
) -> Result<(), KafkaError> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned))
                if Instant::now() < deadline =>
            {
                producer.poll(POLL_INTERVAL);
                record = returned;
            }
            Err((error, _)) => return Err(error),
        }
    }
}

/// One consumed message, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: Timestamp,
}

/// An assign-only consumer (no `group.id`, no commits) reading `partitions` of `topic` from
/// the beginning, reporting end-of-partition.
pub fn assigned_consumer(bootstrap: &str, topic: &str, partitions: &[i32]) -> BaseConsumer {
    assigned_consumer_from(bootstrap, topic, partitions, Offset::Beginning)
}

/// Like [`assigned_consumer`], starting at `offset` in every partition.
pub fn assigned_consumer_from(
    bootstrap: &str,
    topic: &str,
    partitions: &[i32],
    offset: Offset,
) -> BaseConsumer {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "vaart-tests-assign-only")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "error")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("create an rdkafka consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        assignment
            .add_partition_offset(topic, *partition, offset)
            .expect("a valid assignment offset");
    }
    consumer.assign(&assignment).expect("assign partitions");
    consumer
}

/// Client errors [`consume`] keeps for its failure message.
const CONSUME_ERRORS_KEPT: usize = 20;

/// Why [`consume`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error(
        "timed out after {waited:?}: received {received} of {expected} messages; partitions not \
         at their end yet: {not_at_end:?}; client errors seen ({errors_total} in all): {errors:?}"
    )]
    Timeout {
        waited: Duration,
        received: usize,
        expected: usize,
        not_at_end: Vec<i32>,
        errors_total: usize,
        errors: Vec<String>,
    },
}

/// Polls `consumer` until at least `expected` messages arrived and every one of `partitions`
/// reported end-of-partition after its last message, or `timeout` passes. Anything more that
/// arrives before the ends are reached is returned too (so duplicates show up).
///
/// Client errors do not stop it (librdkafka reports transient ones, such as a group
/// coordinator it cannot find, that do not affect assigned partitions); a broker that makes
/// consumption fail shows up as a timeout whose message lists the errors seen.
pub fn consume(
    consumer: &BaseConsumer,
    partitions: &[i32],
    expected: usize,
    timeout: Duration,
) -> Result<Vec<Received>, ConsumeError> {
    let started = Instant::now();
    let mut received = Vec::with_capacity(expected);
    let mut not_at_end: BTreeSet<i32> = partitions.iter().copied().collect();
    let mut errors = Vec::new();
    let mut errors_total = 0usize;
    while received.len() < expected || !not_at_end.is_empty() {
        if started.elapsed() >= timeout {
            return Err(ConsumeError::Timeout {
                waited: timeout,
                received: received.len(),
                expected,
                not_at_end: not_at_end.into_iter().collect(),
                errors_total,
                errors,
            });
        }
        match consumer.poll(POLL_INTERVAL) {
            None => {}
            Some(Ok(message)) => {
                not_at_end.insert(message.partition());
                received.push(Received {
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message.key().map(<[u8]>::to_vec),
                    payload: message.payload().map(<[u8]>::to_vec),
                    headers: message
                        .headers()
                        .map(|headers| {
                            headers
                                .iter()
                                .map(|header| {
                                    (header.key.to_owned(), header.value.map(<[u8]>::to_vec))
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    timestamp: message.timestamp(),
                });
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                not_at_end.remove(&partition);
            }
            Some(Err(error)) => {
                errors_total += 1;
                if errors.len() < CONSUME_ERRORS_KEPT {
                    errors.push(format!("after {} messages: {error}", received.len()));
                }
            }
        }
    }
    if errors_total > 0 {
        eprintln!("consume: tolerated {errors_total} client errors: {errors:?}");
    }
    Ok(received)
}

/// A blocking admin client (librdkafka's admin API; its futures are completed by librdkafka's
/// own background thread, so a tiny executor is enough).
pub struct Admin {
    client: AdminClient<DefaultClientContext>,
    options: AdminOptions,
}

/// What an admin call failed with.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin request failed: {0}")]
    Request(#[from] KafkaError),
    #[error("{resource}: {code:?}")]
    Resource {
        resource: String,
        code: RDKafkaErrorCode,
    },
}

impl Admin {
    pub fn new(bootstrap: &str) -> Self {
        let client = client_config(bootstrap)
            .create()
            .expect("create an rdkafka admin client");
        let options = AdminOptions::new()
            .request_timeout(Some(ADMIN_TIMEOUT))
            .operation_timeout(Some(ADMIN_TIMEOUT));
        Self { client, options }
    }

    /// Creates `name` with `partitions` partitions, replication factor 1 and `configs`.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> Result<(), AdminError> {
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for (key, value) in configs {
            topic = topic.set(key, value);
        }
        let results = block_on(self.client.create_topics([&topic], &self.options))?;
        for result in results {
            if let Err((resource, code)) = result {
                return Err(AdminError::Resource { resource, code });
            }
        }
        Ok(())
    }

    /// Grows `name` to `total_partitions` partitions (CreatePartitions).
    pub fn create_partitions(&self, name: &str, total_partitions: usize) -> Result<(), AdminError> {
        let request = NewPartitions::new(name, total_partitions);
        let results = block_on(self.client.create_partitions([&request], &self.options))?;
        for result in results {
            if let Err((resource, code)) = result {
                return Err(AdminError::Resource { resource, code });
            }
        }
        Ok(())
    }

    /// Deletes `name`.
    pub fn delete_topic(&self, name: &str) -> Result<(), AdminError> {
        let results = block_on(self.client.delete_topics(&[name], &self.options))?;
        for result in results {
            if let Err((resource, code)) = result {
                return Err(AdminError::Resource { resource, code });
            }
        }
        Ok(())
    }

    /// Sets topic configs with AlterConfigs (which resets the topic's other dynamic configs,
    /// as Kafka's non-incremental AlterConfigs does).
    pub fn alter_topic_configs(
        &self,
        name: &str,
        configs: &[(&str, &str)],
    ) -> Result<(), AdminError> {
        let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
        for (key, value) in configs {
            alter = alter.set(key, value);
        }
        let results = block_on(self.client.alter_configs([&alter], &self.options))?;
        for result in results {
            if let Err((resource, code)) = result {
                return Err(AdminError::Resource {
                    resource: format!("{resource:?}"),
                    code,
                });
            }
        }
        Ok(())
    }

    /// The topic's configs as (name → value), from DescribeConfigs.
    pub fn topic_configs(&self, name: &str) -> Result<HashMap<String, Option<String>>, AdminError> {
        let specifier = ResourceSpecifier::Topic(name);
        let results: Vec<ConfigResourceResult> =
            block_on(self.client.describe_configs([&specifier], &self.options))?;
        let mut configs = HashMap::new();
        for result in results {
            let resource = result.map_err(|code| AdminError::Resource {
                resource: name.to_owned(),
                code,
            })?;
            for entry in resource.entries {
                configs.insert(entry.name, entry.value);
            }
        }
        Ok(configs)
    }

    /// Partition count of `topic` from Metadata (None if the broker does not list it).
    pub fn partition_count(&self, topic: &str) -> Result<Option<usize>, AdminError> {
        let metadata = self
            .client
            .inner()
            .fetch_metadata(Some(topic), ADMIN_TIMEOUT)?;
        Ok(metadata
            .topics()
            .iter()
            .find(|entry| entry.name() == topic && entry.error().is_none())
            .map(|entry| entry.partitions().len()))
    }
}

/// Low and high watermarks of one partition (ListOffsets earliest / latest) via `consumer`.
pub fn watermarks(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), KafkaError> {
    consumer.fetch_watermarks(topic, partition, ADMIN_TIMEOUT)
}
