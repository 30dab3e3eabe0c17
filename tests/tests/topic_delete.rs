//! Topic deletion: the broker closes and removes a deleted topic's logs in the background (as
//! Kafka does), so a topic deleted and at once created again under the same name must start
//! empty and hold only what is produced to it afterwards, even while the old directories are
//! still going; the old directories must all be removed, and a restart must keep exactly the
//! new topic's data.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseRecord, Producer};
use vaart_tests::clients::{self, Admin};
use vaart_tests::Broker;

const TOPIC: &str = "reborn";
/// Enough partitions that closing and removing them takes a while after DeleteTopics returns.
const PARTITIONS: i32 = 300;
const TIMEOUT: Duration = Duration::from_secs(120);

/// Produces `tag-<partition>` once to every partition with acks=all; all must be acknowledged.
fn produce_one_per_partition(broker: &Broker, tag: &str) {
    let producer = clients::recording_producer(&broker.bootstrap(), "all", "none", &[]);
    let deadline = Instant::now() + TIMEOUT;
    for partition in 0..PARTITIONS {
        let payload = format!("{tag}-{partition}");
        let record = BaseRecord::with_opaque_to(TOPIC, partition as usize)
            .partition(partition)
            .payload(payload.as_bytes());
        broker.check(
            clients::send_with_retry(&producer, record, deadline),
            "producer send",
        );
    }
    broker.check(producer.flush(TIMEOUT), "producer flush");
    let deliveries = producer.context().deliveries();
    for partition in 0..PARTITIONS {
        match deliveries.get(&(partition as usize)) {
            Some(Ok(_)) => {}
            other => broker.fail(format!(
                "{tag} record for partition {partition} not acknowledged: {other:?}"
            )),
        }
    }
}

/// Every record of the topic, by partition: (offset, payload).
fn read_topic(broker: &Broker, expected: usize) -> BTreeMap<i32, Vec<(i64, String)>> {
    let partitions: Vec<i32> = (0..PARTITIONS).collect();
    let consumer = clients::assigned_consumer(&broker.bootstrap(), TOPIC, &partitions);
    let received = broker.check(
        clients::consume(&consumer, &partitions, expected, TIMEOUT),
        "consume the topic",
    );
    let mut by_partition: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for record in received {
        let payload = String::from_utf8_lossy(&record.payload.unwrap_or_default()).into_owned();
        by_partition
            .entry(record.partition)
            .or_default()
            .push((record.offset, payload));
    }
    by_partition
}

fn assert_only_new_data(broker: &Broker, when: &str) {
    let by_partition = read_topic(broker, PARTITIONS as usize);
    for partition in 0..PARTITIONS {
        let expected = vec![(0, format!("new-{partition}"))];
        let found = by_partition.get(&partition).cloned().unwrap_or_default();
        if found != expected {
            broker.fail(format!(
                "{when}: partition {partition} holds {found:?}, expected {expected:?}"
            ));
        }
    }
}

/// Directories in the data dir whose names end in "-delete" (deleted partitions not yet gone).
fn doomed_dirs(broker: &Broker) -> Vec<String> {
    let entries = broker.check(std::fs::read_dir(broker.data_dir()), "list the data dir");
    entries
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with("-delete"))
        .collect()
}

#[test]
fn deleted_topic_recreated_at_once_starts_empty() {
    let mut broker = Broker::start();
    let admin = Admin::new(&broker.bootstrap());
    broker.check(admin.create_topic(TOPIC, PARTITIONS, &[]), "create topic");
    produce_one_per_partition(&broker, "old");

    broker.check(admin.delete_topic(TOPIC), "delete topic");
    // At once, while the old logs may still be closing: the same name again.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match admin.create_topic(TOPIC, PARTITIONS, &[]) {
            Ok(()) => break,
            // Kafka answers TOPIC_ALREADY_EXISTS until the deletion is visible everywhere.
            Err(error) if Instant::now() < deadline => {
                eprintln!("create again: {error}; retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(error) => broker.fail(format!("create the topic again: {error}")),
        }
    }
    produce_one_per_partition(&broker, "new");
    assert_only_new_data(&broker, "after re-creation");

    // The old directories all go.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let doomed = doomed_dirs(&broker);
        if doomed.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            broker.fail(format!(
                "{} deleted partition directories left, e.g. {:?}",
                doomed.len(),
                doomed.first()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    broker.assert_running();

    broker.stop();
    broker.restart();
    assert_only_new_data(&broker, "after a restart");
    broker.stop();
}
