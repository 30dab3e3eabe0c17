//! Deterministic test messages: message `id` always has the same key, payload, headers and
//! timestamp, so a consumer can rebuild what was produced and compare byte for byte.

use std::ops::Range;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;

use crate::clients::{self, RecordingProducer};

/// Messages are produced in runs of this many before librdkafka's callbacks are served.
const POLL_EVERY_MESSAGES: usize = 1000;
/// Every message whose id is a multiple of this has no headers at all.
const NO_HEADERS_EVERY: usize = 10;
/// Payloads start with this, then the id in 8 digits, then `|`.
const PAYLOAD_PREFIX: &[u8] = b"message-";

/// The wall clock in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since_epoch.as_millis()).expect("milliseconds fit i64")
}

/// One message as produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestMessage {
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp_ms: i64,
}

/// The shape of a run of messages.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Distinct keys; message `id` has key `id % key_count`.
    pub key_count: usize,
    /// Payload size in bytes (at least 17: the id is written into it).
    pub payload_bytes: usize,
    /// CreateTime of message 0; message `id` gets `first_timestamp_ms + id`.
    pub first_timestamp_ms: i64,
}

impl Workload {
    /// 997 keys (a prime, so ids and keys do not line up), `payload_bytes`, timestamps from now.
    pub fn new(payload_bytes: usize) -> Self {
        Self {
            key_count: 997,
            payload_bytes,
            first_timestamp_ms: now_ms(),
        }
    }

    /// Checks that `message` carries message `id` byte-exact (key, payload, headers) and
    /// returns what was produced, for further checks.
    pub fn assert_content(&self, id: usize, message: &clients::Received) -> TestMessage {
        let expected = self.message(id);
        assert_eq!(
            message.key.as_deref(),
            Some(expected.key.as_slice()),
            "key of message {id}"
        );
        assert_eq!(
            message.payload.as_deref().unwrap_or_default(),
            expected.payload.as_slice(),
            "payload of message {id}"
        );
        assert_eq!(message.headers, expected.headers, "headers of message {id}");
        expected
    }

    /// Message `id`.
    pub fn message(&self, id: usize) -> TestMessage {
        let key = format!("key-{:04}", id % self.key_count).into_bytes();
        let mut payload = PAYLOAD_PREFIX.to_vec();
        payload.extend_from_slice(format!("{id:08}|").as_bytes());
        let filler = b"abcdefghijklmnopqrstuvwxyz0123456789";
        while payload.len() < self.payload_bytes {
            payload.push(filler[(payload.len() + id) % filler.len()]);
        }
        let headers = if id.is_multiple_of(NO_HEADERS_EVERY) {
            Vec::new()
        } else {
            vec![
                ("id".to_owned(), Some(id.to_string().into_bytes())),
                ("origin".to_owned(), Some(b"vaart-tests".to_vec())),
                ("empty".to_owned(), Some(Vec::new())),
                ("null".to_owned(), None),
                // Header keys may repeat; their order must be kept.
                ("id".to_owned(), Some(format!("again-{id}").into_bytes())),
            ]
        };
        let offset_ms = i64::try_from(id).expect("ids fit i64");
        TestMessage {
            key,
            payload,
            headers,
            timestamp_ms: self.first_timestamp_ms + offset_ms,
        }
    }

    /// Sends message `id` to `topic` (librdkafka picks the partition from the key).
    pub fn send(
        &self,
        producer: &RecordingProducer,
        topic: &str,
        id: usize,
        deadline: Instant,
    ) -> Result<(), KafkaError> {
        let message = self.message(id);
        let mut record = BaseRecord::with_opaque_to(topic, id)
            .key(message.key.as_slice())
            .payload(message.payload.as_slice())
            .timestamp(message.timestamp_ms);
        if !message.headers.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(message.headers.len());
            for (key, value) in &message.headers {
                headers = headers.insert(Header {
                    key,
                    value: value.as_deref(),
                });
            }
            record = record.headers(headers);
        }
        clients::send_with_retry(producer, record, deadline)
    }

    /// Sends messages `ids` in order, serving delivery callbacks now and then.
    pub fn send_range(
        &self,
        producer: &RecordingProducer,
        topic: &str,
        ids: Range<usize>,
        deadline: Instant,
    ) -> Result<(), KafkaError> {
        for id in ids {
            self.send(producer, topic, id, deadline)?;
            if id % POLL_EVERY_MESSAGES == POLL_EVERY_MESSAGES - 1 {
                producer.poll(Duration::ZERO);
            }
        }
        Ok(())
    }
}

/// The id written into a payload by [`Workload::message`].
pub fn id_of(payload: &[u8]) -> Option<usize> {
    if !payload.starts_with(PAYLOAD_PREFIX) {
        return None;
    }
    let digits = payload.get(PAYLOAD_PREFIX.len()..PAYLOAD_PREFIX.len() + 8)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// How consumed timestamps are checked by [`assert_consumed`].
#[derive(Debug, Clone, Copy)]
pub enum TimestampCheck {
    /// The producer's CreateTime, unchanged.
    CreateTime,
    /// A LogAppendTime set by the broker, within these wall-clock bounds.
    LogAppendTimeWithin { earliest_ms: i64, latest_ms: i64 },
}

/// Checks what a consumer read from partitions that all start at offset 0 and hold only this
/// workload's messages: every payload carries a known id, no id twice, offsets contiguous from 0
/// in every partition, ids increasing within a partition (one producer, no retries), one key
/// always in one partition, and key, payload, headers and timestamp as produced.
/// Returns where each id was found as (partition, offset). Panics with a precise message.
pub fn assert_consumed(
    received: &[clients::Received],
    workload: &Workload,
    timestamps: TimestampCheck,
) -> std::collections::HashMap<usize, (i32, i64)> {
    use rdkafka::message::Timestamp;
    use std::collections::HashMap;

    let mut found: HashMap<usize, (i32, i64)> = HashMap::with_capacity(received.len());
    let mut key_partition: HashMap<Vec<u8>, i32> = HashMap::new();
    let mut next_offset: HashMap<i32, i64> = HashMap::new();
    let mut last_id: HashMap<i32, usize> = HashMap::new();
    for message in received {
        let place = (message.partition, message.offset);
        let payload = message.payload.as_deref().unwrap_or_default();
        let id = match id_of(payload) {
            Some(id) => id,
            None => panic!(
                "unexpected payload at {place:?}: {:?}",
                String::from_utf8_lossy(payload)
            ),
        };
        if let Some(first) = found.insert(id, place) {
            panic!("message {id} consumed twice: at {first:?} and at {place:?}");
        }

        let expected_offset = next_offset.entry(message.partition).or_insert(0);
        assert_eq!(
            message.offset, *expected_offset,
            "partition {}: offsets must be contiguous from 0 (message {id})",
            message.partition
        );
        *expected_offset += 1;

        if let Some(previous) = last_id.insert(message.partition, id) {
            assert!(
                previous < id,
                "partition {}: message {id} at offset {} comes after message {previous}",
                message.partition,
                message.offset
            );
        }

        let expected = workload.assert_content(id, message);
        match timestamps {
            TimestampCheck::CreateTime => assert_eq!(
                message.timestamp,
                Timestamp::CreateTime(expected.timestamp_ms),
                "timestamp of message {id}"
            ),
            TimestampCheck::LogAppendTimeWithin { earliest_ms, latest_ms } => match message.timestamp {
                Timestamp::LogAppendTime(ms) if (earliest_ms..=latest_ms).contains(&ms) => {}
                other => panic!("message {id}: expected a LogAppendTime in {earliest_ms}..={latest_ms}, got {other:?}"),
            },
        }

        let partition = *key_partition
            .entry(expected.key.clone())
            .or_insert(message.partition);
        assert_eq!(
            partition,
            message.partition,
            "key {:?} is in partitions {partition} and {}",
            String::from_utf8_lossy(&expected.key),
            message.partition
        );
    }
    found
}

/// Asserts every message the producer saw acknowledged (an `Ok` delivery report with an
/// offset) was consumed at exactly the acknowledged partition and offset.
pub fn assert_acknowledged_present(
    found: &std::collections::HashMap<usize, (i32, i64)>,
    deliveries: &clients::DeliveryMap,
) -> usize {
    let mut acknowledged = 0;
    let mut ids: Vec<_> = deliveries.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        if let Some(Ok(place)) = deliveries.get(&id) {
            acknowledged += 1;
            match found.get(&id) {
                Some(consumed) => assert_eq!(
                    consumed, place,
                    "message {id}: acknowledged at (partition, offset) {place:?}, consumed at {consumed:?}"
                ),
                None => panic!("message {id} was acknowledged at {place:?} but never consumed"),
            }
        }
    }
    acknowledged
}
