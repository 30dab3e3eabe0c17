//! Log compaction of compressed batches against the real broker: rdkafka producers with
//! `compression.type` lz4 and zstd write many updates per key to a compacted topic with small
//! segments and a fast cleaner; a consumer from the beginning then sees exactly the latest
//! value of every key (with its offset, headers and timestamp), a tombstoned key is gone, and
//! the log shrank. Every wait has an overall deadline; nothing asserts on timing.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders, Timestamp};
use rdkafka::producer::{BaseRecord, Producer};
use vaart_tests::clients::{self, Admin, Received};
use vaart_tests::{Broker, BrokerOptions};

/// Overall bound for each phase of a test (never a timing assertion).
const PHASE_TIMEOUT: Duration = Duration::from_secs(90);
const KEYS: usize = 20;
const VERSIONS: usize = 40;
/// Base of the explicit record timestamps (checked on the survivors).
const TIMESTAMP_BASE_MS: i64 = 1_700_000_000_000;

fn log_bytes(broker: &Broker, topic: &str) -> u64 {
    let dir = broker.data_dir().join(format!("{topic}-0"));
    std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The topic's log bytes once they stop changing (the broker writes acknowledged data in the
/// background): the same figure at three polls 300 ms apart.
fn settled_log_bytes(broker: &Broker, topic: &str) -> u64 {
    let deadline = Instant::now() + PHASE_TIMEOUT;
    let mut last = log_bytes(broker, topic);
    let mut same = 0;
    while same < 2 {
        std::thread::sleep(Duration::from_millis(300));
        let now = log_bytes(broker, topic);
        same = if now == last { same + 1 } else { 0 };
        last = now;
        if Instant::now() > deadline {
            broker.fail(format!("the log size kept changing for {PHASE_TIMEOUT:?}"));
        }
    }
    last
}

fn read_all(broker: &Broker, topic: &str) -> Vec<Received> {
    let consumer = clients::assigned_consumer(&broker.bootstrap(), topic, &[0]);
    broker.check(
        clients::consume(&consumer, &[0], 0, PHASE_TIMEOUT),
        "read the compacted topic",
    )
}

/// What the consumer must see for one key: (offset, value, timestamp).
type Expected = BTreeMap<String, (i64, String, i64)>;

/// Writes VERSIONS updates of KEYS keys (one compressed batch per version), then a last
/// version of the even keys only (so the previous batch is kept in part and must be
/// re-compressed) and a tombstone for key-00. Returns what must survive.
fn produce(broker: &Broker, topic: &str, codec: &str) -> Expected {
    let producer = clients::recording_producer(
        &broker.bootstrap(),
        "all",
        codec,
        &[("compression.type", codec), ("linger.ms", "50")],
    );
    let deadline = Instant::now() + PHASE_TIMEOUT;
    let mut sent: HashMap<usize, (String, Option<String>, i64)> = HashMap::new();
    let mut send = |id: usize, key: String, value: Option<String>, timestamp: i64| {
        let headers = OwnedHeaders::new().insert(Header {
            key: "version",
            value: value.as_deref(),
        });
        let mut record = BaseRecord::with_opaque_to(topic, id)
            .key(key.as_bytes())
            .partition(0)
            .timestamp(timestamp)
            .headers(headers);
        if let Some(value) = &value {
            record = record.payload(value.as_bytes());
        }
        broker.check(
            clients::send_with_retry(&producer, record, deadline),
            "send",
        );
        sent.insert(id, (key, value, timestamp));
    };
    let mut id = 0;
    for version in 0..=VERSIONS {
        for key in 0..KEYS {
            if version == VERSIONS && key % 2 == 1 {
                continue;
            }
            let timestamp = TIMESTAMP_BASE_MS + i64::try_from(id).expect("small");
            send(
                id,
                format!("key-{key:02}"),
                Some(format!("{codec}-{key:02}-{version:03}")),
                timestamp,
            );
            id += 1;
        }
        broker.check(producer.flush(PHASE_TIMEOUT), "flush");
    }
    send(id, "key-00".to_string(), None, TIMESTAMP_BASE_MS);
    broker.check(producer.flush(PHASE_TIMEOUT), "flush");
    let deliveries = producer.context().deliveries();
    let mut expected = Expected::new();
    let mut by_offset: Vec<(i64, usize)> = Vec::new();
    for (id, outcome) in &deliveries {
        match outcome {
            Ok((_, offset)) => by_offset.push((*offset, *id)),
            Err(error) => broker.fail(format!("message {id} failed: {error}")),
        }
    }
    assert_eq!(by_offset.len(), sent.len(), "every message was delivered");
    by_offset.sort_unstable();
    for (offset, id) in by_offset {
        let (key, value, timestamp) = sent[&id].clone();
        match value {
            Some(value) => {
                expected.insert(key, (offset, value, timestamp));
            }
            None => {
                expected.remove(&key);
            }
        }
    }
    expected
}

fn compacts(codec: &str) {
    let broker = BrokerOptions::new()
        .shards(2)
        .set("log.cleaner.backoff.ms", "200")
        .set("log.retention.check.interval.ms", "200")
        .start();
    let topic = format!("compaction-{codec}");
    let admin = Admin::new(&broker.bootstrap());
    let configs = |policy| {
        [
            ("cleanup.policy", policy),
            ("segment.bytes", "4096"),
            ("segment.ms", "500"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "0"),
            // The records carry old timestamps: no time-based deletion while the policy is
            // still "delete".
            ("retention.ms", "-1"),
        ]
    };
    // The topic starts without compaction, so the size before cleaning is measured once every
    // write is on disk and before the cleaner can have touched it (measured right after the
    // acknowledgements, it raced both the writes and the cleaner).
    broker.check(
        admin.create_topic(&topic, 1, &configs("delete")),
        "create topic",
    );
    let expected = produce(&broker, &topic, codec);
    assert_eq!(expected.len(), KEYS - 1);
    let before = settled_log_bytes(&broker, &topic);
    broker.check(
        admin.alter_topic_configs(&topic, &configs("compact")),
        "turn on compaction",
    );
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        let records = read_all(&broker, &topic);
        let mut last: BTreeMap<String, (i64, String, i64)> = BTreeMap::new();
        for record in &records {
            let key = String::from_utf8_lossy(record.key.as_deref().unwrap_or_default());
            match &record.payload {
                Some(value) => {
                    let timestamp = match record.timestamp {
                        Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) => ms,
                        Timestamp::NotAvailable => -1,
                    };
                    let value = String::from_utf8_lossy(value).into_owned();
                    assert_eq!(
                        record.headers,
                        vec![("version".to_string(), Some(value.clone().into_bytes()))],
                        "headers survive compaction"
                    );
                    last.insert(key.into_owned(), (record.offset, value, timestamp));
                }
                None => {
                    last.remove(key.as_ref());
                }
            }
        }
        assert_eq!(
            last, expected,
            "the latest value of every key is readable, at its offset"
        );
        if records.len() == expected.len() {
            break;
        }
        if Instant::now() > deadline {
            broker.fail(format!(
                "the topic still has {} records for {} keys after {PHASE_TIMEOUT:?}",
                records.len(),
                expected.len()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let after = log_bytes(&broker, &topic);
    assert!(after * 4 < before, "log shrank: {before} -> {after} bytes");
}

#[test]
fn lz4_batches_compact_to_the_latest_value_per_key() {
    compacts("lz4");
}

#[test]
fn zstd_batches_compact_to_the_latest_value_per_key() {
    compacts("zstd");
}
