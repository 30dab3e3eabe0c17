//! librdkafka (through the `rdkafka` crate) against the real broker: create a 3-partition topic,
//! produce keyed messages with headers and explicit timestamps, consume them back with an
//! assign-only consumer (no consumer group), and check every message arrived exactly once at the
//! offset its delivery report named, in per-partition order, same key in the same partition,
//! headers and timestamps intact. Repeated for every compression codec and for acks 0, 1, all.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::producer::Producer;
use vaart_tests::clients::{self, Admin};
use vaart_tests::workload::{self, TimestampCheck, Workload};
use vaart_tests::{Broker, BrokerOptions};

const PARTITIONS: [i32; 3] = [0, 1, 2];
/// Payload size: small messages keep the 100k test cheap on a 2-core CI machine.
const PAYLOAD_BYTES: usize = 100;
/// Overall bounds for one test's produce and consume phases (not timing assertions).
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(120);
const CONSUME_TIMEOUT: Duration = Duration::from_secs(120);

struct Run<'a> {
    topic: &'a str,
    count: usize,
    acks: &'a str,
    compression: &'a str,
    /// Topic configs set at creation.
    topic_configs: &'a [(&'a str, &'a str)],
    workload: Workload,
    timestamps: TimestampCheck,
}

/// Creates the topic, produces `count` messages, consumes them all back and checks them.
fn produce_and_check(broker: &Broker, run: &Run<'_>) {
    let admin = Admin::new(&broker.bootstrap());
    let partition_count = i32::try_from(PARTITIONS.len()).expect("3 fits i32");
    broker.check(
        admin.create_topic(run.topic, partition_count, run.topic_configs),
        "CreateTopics (rdkafka admin)",
    );

    let producer = clients::recording_producer(&broker.bootstrap(), run.acks, run.compression, &[]);
    let deadline = Instant::now() + PRODUCE_TIMEOUT;
    broker.check(
        run.workload
            .send_range(&producer, run.topic, 0..run.count, deadline),
        "producer send",
    );
    broker.check(
        producer.flush(deadline.saturating_duration_since(Instant::now())),
        "producer flush (every message delivered)",
    );

    let deliveries = producer.context().deliveries();
    let mut failed: Vec<_> = deliveries
        .iter()
        .filter_map(|(id, outcome)| outcome.as_ref().err().map(|error| (*id, error.to_string())))
        .collect();
    failed.sort();
    if !failed.is_empty() {
        broker.fail(format!(
            "{} of {} messages failed delivery; first ones: {:?}",
            failed.len(),
            run.count,
            &failed[..failed.len().min(5)]
        ));
    }
    assert_eq!(
        deliveries.len(),
        run.count,
        "a delivery report for every message"
    );

    let consumer = clients::assigned_consumer(&broker.bootstrap(), run.topic, &PARTITIONS);
    let received = broker.check(
        clients::consume(&consumer, &PARTITIONS, run.count, CONSUME_TIMEOUT),
        "consume everything back",
    );
    let found = workload::assert_consumed(&received, &run.workload, run.timestamps);
    assert_eq!(
        received.len(),
        run.count,
        "exactly one copy of every message"
    );
    assert_eq!(found.len(), run.count, "every message id consumed");
    if run.acks != "0" {
        let acknowledged = workload::assert_acknowledged_present(&found, &deliveries);
        assert_eq!(
            acknowledged, run.count,
            "every message acknowledged with an offset"
        );
    }

    // ListOffsets through the client: each partition starts at 0 and ends at its message count;
    // and the keys reached every partition.
    let mut per_partition: HashMap<i32, i64> = HashMap::new();
    for message in &received {
        *per_partition.entry(message.partition).or_default() += 1;
    }
    for partition in PARTITIONS {
        let consumed = per_partition.get(&partition).copied().unwrap_or(0);
        assert!(
            consumed > 0,
            "{} keys should reach every partition; {partition} got none",
            run.workload.key_count
        );
        let watermarks = broker.check(
            clients::watermarks(&consumer, run.topic, partition),
            "ListOffsets (watermarks)",
        );
        assert_eq!(
            watermarks,
            (0, consumed),
            "partition {partition}: (low, high) watermarks"
        );
    }
}

fn roundtrip(topic: &str, count: usize, acks: &str, compression: &str) {
    let broker = BrokerOptions::new().shards(2).start();
    let run = Run {
        topic,
        count,
        acks,
        compression,
        topic_configs: &[],
        workload: Workload::new(PAYLOAD_BYTES),
        timestamps: TimestampCheck::CreateTime,
    };
    produce_and_check(&broker, &run);
}

#[test]
fn hundred_thousand_keyed_messages_with_headers_round_trip() {
    roundtrip("keyed-100k", 100_000, "1", "none");
}

#[test]
fn gzip_batches_round_trip() {
    roundtrip("codec-gzip", 5_000, "all", "gzip");
}

#[test]
fn snappy_batches_round_trip() {
    roundtrip("codec-snappy", 5_000, "all", "snappy");
}

#[test]
fn lz4_batches_round_trip() {
    roundtrip("codec-lz4", 5_000, "all", "lz4");
}

#[test]
fn zstd_batches_round_trip() {
    roundtrip("codec-zstd", 5_000, "all", "zstd");
}

#[test]
fn acks_0_round_trip() {
    // No response is awaited: the consumer waits (bounded) until every message has arrived.
    roundtrip("acks-0", 5_000, "0", "none");
}

#[test]
fn acks_1_round_trip() {
    roundtrip("acks-1", 5_000, "1", "none");
}

#[test]
fn acks_all_round_trip() {
    roundtrip("acks-all", 5_000, "all", "none");
}

#[test]
fn log_append_time_topic_replaces_the_producer_timestamp() {
    let broker = BrokerOptions::new().shards(2).start();
    let started_ms = workload::now_ms();
    // A CreateTime years in the past, which a LogAppendTime topic must replace.
    let workload = Workload {
        first_timestamp_ms: 1_500_000_000_000,
        ..Workload::new(PAYLOAD_BYTES)
    };
    // Wall-clock bounds with a generous margin: this checks where the timestamp comes from, not
    // how fast anything ran.
    let margin_ms = 10 * 60 * 1000;
    let run = Run {
        topic: "log-append-time",
        count: 2_000,
        acks: "all",
        compression: "lz4",
        topic_configs: &[("message.timestamp.type", "LogAppendTime")],
        workload,
        timestamps: TimestampCheck::LogAppendTimeWithin {
            earliest_ms: started_ms - margin_ms,
            latest_ms: started_ms
                + PRODUCE_TIMEOUT.as_millis() as i64
                + CONSUME_TIMEOUT.as_millis() as i64
                + margin_ms,
        },
    };
    produce_and_check(&broker, &run);
}
