//! SIGTERM while several producers (acks=all, many batches in flight each) load a topic on a
//! two-shard broker: the broker finishes what is in flight, flushes and exits 0, and after the
//! restart every message any producer saw acknowledged is there, byte for byte, at the offset
//! it was acknowledged at, with no hole and no duplicate, in send order per producer and
//! partition.
//!
//! tests/tests/restart.rs covers one uncompressed producer stopped mid-load; this adds
//! concurrent producers on separate connections (so requests arrive on both shards and are
//! forwarded across the mesh while the shutdown drains), compressed batches, big batches
//! (linger), and checks that partitions have no gaps.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::message::Timestamp;
use rdkafka::producer::{Producer, PurgeConfig};
use vaart_tests::clients::{self, Admin, DeliveryMap, Received, RecordingProducer};
use vaart_tests::workload::{self, Workload};
use vaart_tests::{Broker, BrokerOptions};

const TOPIC: &str = "sigterm-load";
const PARTITIONS: [i32; 4] = [0, 1, 2, 3];
const PAYLOAD_BYTES: usize = 700;
/// Kafka's smallest allowed segment.bytes: every partition rolls segments during the load.
const SEGMENT_BYTES: &str = "1048576";
/// Acknowledged messages (all producers together) before SIGTERM is sent.
const ACKED_BEFORE_STOP: usize = 8_000;
/// Ids of producer `n` start at `n * PRODUCER_ID_STRIDE` (payloads carry 8-digit ids).
const PRODUCER_ID_STRIDE: usize = 10_000_000;
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(120);
const CONSUME_TIMEOUT: Duration = Duration::from_secs(120);

/// Compression codec of each concurrent producer.
const CODECS: [&str; 3] = ["none", "lz4", "zstd"];

fn producer_of(id: usize) -> usize {
    id / PRODUCER_ID_STRIDE
}

fn load_producer(broker: &Broker, compression: &str) -> RecordingProducer {
    clients::recording_producer(
        &broker.bootstrap(),
        "all",
        compression,
        &[
            // Big batches, several in flight per connection.
            ("linger.ms", "20"),
            ("batch.size", "262144"),
            ("max.in.flight.requests.per.connection", "5"),
            ("queue.buffering.max.messages", "200000"),
        ],
    )
}

fn acknowledged(deliveries: &DeliveryMap) -> usize {
    deliveries
        .values()
        .filter(|outcome| outcome.is_ok())
        .count()
}

/// Runs every producer in its own thread; once they together have [`ACKED_BEFORE_STOP`]
/// acknowledged messages, stops the broker with SIGTERM (asserting exit code 0) while their
/// requests are in flight. Returns all delivery reports.
fn produce_until_sigterm(broker: &mut Broker, workload: &Workload) -> DeliveryMap {
    let producers: Vec<RecordingProducer> = CODECS
        .iter()
        .map(|codec| load_producer(broker, codec))
        .collect();
    let producing = AtomicBool::new(true);
    let deadline = Instant::now() + PRODUCE_TIMEOUT;
    thread::scope(|scope| {
        let mut senders = Vec::new();
        for (index, producer) in producers.iter().enumerate() {
            let producing = &producing;
            senders.push(scope.spawn(move || {
                let mut id = index * PRODUCER_ID_STRIDE;
                while producing.load(Ordering::Relaxed) && Instant::now() < deadline {
                    // A full queue (or a broker going away) is retried with the same id after
                    // serving callbacks; the flag is checked between attempts.
                    match workload.send(producer, TOPIC, id, Instant::now()) {
                        Ok(()) => {
                            id += 1;
                            if id.is_multiple_of(200) {
                                producer.poll(Duration::ZERO);
                            }
                        }
                        Err(_) => producer.poll(Duration::from_millis(10)),
                    }
                }
            }));
        }
        loop {
            let acked: usize = producers
                .iter()
                .map(|p| acknowledged(&p.context().deliveries()))
                .sum();
            if acked >= ACKED_BEFORE_STOP {
                break;
            }
            if Instant::now() >= deadline || senders.iter().any(|s| s.is_finished()) {
                producing.store(false, Ordering::Relaxed);
                broker.fail(format!(
                    "only {acked} of {ACKED_BEFORE_STOP} messages acknowledged before the deadline"
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
        broker.stop();
        producing.store(false, Ordering::Relaxed);
    });
    let mut all = DeliveryMap::new();
    for producer in &producers {
        // Whatever was not answered is dropped; purged messages get error reports.
        producer.purge(PurgeConfig::default().queue().inflight());
        producer.poll(Duration::from_millis(100));
        all.extend(producer.context().deliveries());
    }
    all
}

/// Checks the consumed partitions: offsets contiguous from 0 (no hole), every message a known
/// id stored once and byte-exact, the ids of one producer increasing within a partition.
/// Returns where each id is.
fn check_partitions(received: &[Received], workload: &Workload) -> HashMap<usize, (i32, i64)> {
    let mut found: HashMap<usize, (i32, i64)> = HashMap::with_capacity(received.len());
    let mut next_offset: HashMap<i32, i64> = HashMap::new();
    let mut last_id: HashMap<(i32, usize), usize> = HashMap::new();
    for message in received {
        let place = (message.partition, message.offset);
        let payload = message.payload.as_deref().unwrap_or_default();
        let id = workload::id_of(payload).unwrap_or_else(|| {
            panic!(
                "unexpected payload at {place:?}: {:?}",
                String::from_utf8_lossy(payload)
            )
        });
        if let Some(first) = found.insert(id, place) {
            panic!("message {id} stored twice: at {first:?} and at {place:?}");
        }
        let expected_offset = next_offset.entry(message.partition).or_insert(0);
        assert_eq!(
            message.offset, *expected_offset,
            "partition {}: a hole before message {id}",
            message.partition
        );
        *expected_offset += 1;
        if let Some(previous) = last_id.insert((message.partition, producer_of(id)), id) {
            assert!(
                previous < id,
                "partition {}: message {id} of producer {} stored after its message {previous}",
                message.partition,
                producer_of(id)
            );
        }
        let expected = workload.assert_content(id, message);
        assert_eq!(
            message.timestamp,
            Timestamp::CreateTime(expected.timestamp_ms),
            "timestamp of message {id}"
        );
    }
    found
}

#[test]
fn sigterm_during_concurrent_compressed_acks_all_load_keeps_every_acknowledged_message() {
    let mut broker = BrokerOptions::new().shards(2).start();
    let admin = Admin::new(&broker.bootstrap());
    broker.check(
        admin.create_topic(
            TOPIC,
            PARTITIONS.len() as i32,
            &[("segment.bytes", SEGMENT_BYTES)],
        ),
        "create topic",
    );
    drop(admin);
    let workload = Workload::new(PAYLOAD_BYTES);

    let deliveries = produce_until_sigterm(&mut broker, &workload);
    let acked = acknowledged(&deliveries);
    for (index, codec) in CODECS.iter().enumerate() {
        let of_this = deliveries
            .iter()
            .filter(|(id, outcome)| producer_of(**id) == index && outcome.is_ok())
            .count();
        eprintln!("producer {index} ({codec}): {of_this} acknowledged");
    }
    eprintln!(
        "{acked} of {} messages sent were acknowledged before SIGTERM",
        deliveries.len()
    );
    assert!(acked >= ACKED_BEFORE_STOP);

    broker.restart();
    let consumer = clients::assigned_consumer(&broker.bootstrap(), TOPIC, &PARTITIONS);
    let received = broker.check(
        clients::consume(&consumer, &PARTITIONS, acked, CONSUME_TIMEOUT),
        "consume everything after the restart",
    );
    let found = check_partitions(&received, &workload);
    assert_eq!(
        workload::assert_acknowledged_present(&found, &deliveries),
        acked,
        "every acknowledged message is at its acknowledged partition and offset"
    );
    eprintln!(
        "{} messages stored after the restart, {acked} of them acknowledged",
        received.len()
    );
    broker.stop();
}
