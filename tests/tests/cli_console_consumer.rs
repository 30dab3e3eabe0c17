//! `vaart console-consumer` against a real broker, with records produced by librdkafka (keys,
//! null keys and values, fixed timestamps, explicit partitions):
//!
//! - `--from-beginning --max-messages` prints exactly what was produced, in Kafka's
//!   `DefaultMessageFormatter` format for each `print.*` property, and reports
//!   `Processed a total of N messages` on stderr;
//! - `--partition` with `--offset N|earliest|latest`;
//! - `--timeout-ms` ends a run that has nothing more to read;
//! - `--group` joins, commits and resumes where it stopped;
//! - error paths: unknown topic, unreachable broker, bad `--offset`, `--help` with examples.
//!
//! No timing assertions: `--timeout-ms` only bounds how long each run waits for more.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseRecord, Producer};
use vaart_tests::broker::free_port;
use vaart_tests::cli::{broker_tool, one_error_line, vaart_tool, ToolOutput};
use vaart_tests::clients::{self, Admin};
use vaart_tests::{Broker, BrokerOptions};

/// Timestamp of the first record; record `i` of a partition gets `BASE_TIMESTAMP_MS + i`.
const BASE_TIMESTAMP_MS: i64 = 1_700_000_000_000;
/// Bound on producing and flushing (never a timing assertion).
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(60);

fn broker() -> Broker {
    BrokerOptions::new()
        .set("group.initial.rebalance.delay.ms", "100")
        .set("offsets.topic.num.partitions", "4")
        .start()
}

/// One record to produce: partition, key, value.
struct Produced {
    partition: i32,
    key: Option<String>,
    value: Option<String>,
}

fn create_topic(broker: &Broker, topic: &str, partitions: i32) {
    broker.check(
        Admin::new(&broker.bootstrap()).create_topic(topic, partitions, &[]),
        "create topic",
    );
}

/// Produces `records` in order (acks=all) and returns each one's offset.
fn produce(broker: &Broker, topic: &str, records: &[Produced]) -> Vec<i64> {
    let producer = clients::recording_producer(&broker.bootstrap(), "all", "none", &[]);
    let deadline = Instant::now() + PRODUCE_TIMEOUT;
    let mut per_partition: BTreeMap<i32, i64> = BTreeMap::new();
    for (id, record) in records.iter().enumerate() {
        let index = per_partition.entry(record.partition).or_insert(0);
        let mut message = BaseRecord::with_opaque_to(topic, id)
            .partition(record.partition)
            .timestamp(BASE_TIMESTAMP_MS + *index);
        *index += 1;
        if let Some(key) = &record.key {
            message = message.key(key.as_bytes());
        }
        if let Some(value) = &record.value {
            message = message.payload(value.as_bytes());
        }
        broker.check(
            clients::send_with_retry(&producer, message, deadline),
            "send",
        );
        // One at a time keeps the offsets in the order of `records`.
        broker.check(producer.flush(PRODUCE_TIMEOUT), "flush");
    }
    let deliveries = producer.context().deliveries();
    (0..records.len())
        .map(|id| match deliveries.get(&id) {
            Some(Ok((_, offset))) => *offset,
            other => broker.fail(format!("record {id} not delivered: {other:?}")),
        })
        .collect()
}

fn consumer(broker: &Broker, args: &[&str]) -> ToolOutput {
    broker_tool(broker, "console-consumer", args, b"")
}

fn processed(output: &ToolOutput) -> usize {
    let line = output
        .stderr
        .lines()
        .find_map(|line| line.strip_prefix("Processed a total of "))
        .unwrap_or_else(|| panic!("no count line on stderr: {:?}", output.stderr));
    line.trim_end_matches(" messages")
        .parse()
        .unwrap_or_else(|_| panic!("bad count line: {line:?}"))
}

fn single_partition_records() -> Vec<Produced> {
    (0..10)
        .map(|i| Produced {
            partition: 0,
            key: (i != 3).then(|| format!("k{i}")),
            value: (i != 7).then(|| format!("v{i}")),
        })
        .collect()
}

#[test]
fn from_beginning_prints_exactly_what_was_produced_in_each_format() {
    let broker = broker();
    create_topic(&broker, "fmt", 1);
    let records = single_partition_records();
    let offsets = produce(&broker, "fmt", &records);
    let shown = |text: &Option<String>| text.clone().unwrap_or_else(|| "null".to_string());

    let plain = consumer(
        &broker,
        &["--topic", "fmt", "--from-beginning", "--max-messages", "10"],
    );
    plain.assert_success();
    let expected: Vec<String> = records.iter().map(|r| shown(&r.value)).collect();
    assert_eq!(plain.lines(), expected);
    assert_eq!(processed(&plain), 10);

    let full = consumer(
        &broker,
        &[
            "--topic",
            "fmt",
            "--from-beginning",
            "--max-messages",
            "10",
            "--property",
            "print.timestamp=true",
            "--property",
            "print.partition=true",
            "--property",
            "print.offset=true",
            "--property",
            "print.key=true",
        ],
    );
    full.assert_success();
    let expected: Vec<String> = records
        .iter()
        .zip(&offsets)
        .enumerate()
        .map(|(index, (record, offset))| {
            format!(
                "CreateTime:{}\tPartition:0\tOffset:{offset}\t{}\t{}",
                BASE_TIMESTAMP_MS + index as i64,
                shown(&record.key),
                shown(&record.value)
            )
        })
        .collect();
    assert_eq!(full.lines(), expected);

    let keys_only = consumer(
        &broker,
        &[
            "--topic",
            "fmt",
            "--from-beginning",
            "--max-messages",
            "4",
            "--property",
            "print.key=true",
            "--property",
            "print.value=false",
        ],
    );
    keys_only.assert_success();
    assert_eq!(keys_only.lines(), vec!["k0", "k1", "k2", "null"]);

    let separators = consumer(
        &broker,
        &[
            "--topic",
            "fmt",
            "--from-beginning",
            "--max-messages",
            "3",
            "--property",
            "print.key=true",
            "--property",
            "key.separator=::",
            "--property",
            "line.separator=|",
        ],
    );
    separators.assert_success();
    assert_eq!(separators.stdout, "k0::v0|k1::v1|k2::v2|");
    assert_eq!(processed(&separators), 3);
}

#[test]
fn partition_and_offset_choose_where_reading_starts() {
    let broker = broker();
    create_topic(&broker, "parts", 3);
    let records: Vec<Produced> = (0..15)
        .map(|i| Produced {
            partition: i % 3,
            key: Some(format!("k{i}")),
            value: Some(format!("p{}-{}", i % 3, i / 3)),
        })
        .collect();
    produce(&broker, "parts", &records);

    let from_two = consumer(
        &broker,
        &[
            "--topic",
            "parts",
            "--partition",
            "1",
            "--offset",
            "2",
            "--max-messages",
            "3",
        ],
    );
    from_two.assert_success();
    assert_eq!(from_two.lines(), vec!["p1-2", "p1-3", "p1-4"]);

    let earliest = consumer(
        &broker,
        &[
            "--topic",
            "parts",
            "--partition",
            "2",
            "--offset",
            "earliest",
            "--timeout-ms",
            "2000",
        ],
    );
    earliest.assert_success();
    assert_eq!(
        earliest.lines(),
        vec!["p2-0", "p2-1", "p2-2", "p2-3", "p2-4"]
    );
    assert_eq!(processed(&earliest), 5);

    let latest = consumer(
        &broker,
        &[
            "--topic",
            "parts",
            "--partition",
            "0",
            "--offset",
            "latest",
            "--timeout-ms",
            "1000",
        ],
    );
    latest.assert_success();
    assert!(latest.stdout.is_empty(), "{:?}", latest.stdout);
    assert_eq!(processed(&latest), 0);

    // --timeout-ms over every partition: all 15, each partition in order.
    let all = consumer(
        &broker,
        &[
            "--topic",
            "parts",
            "--from-beginning",
            "--timeout-ms",
            "2000",
        ],
    );
    all.assert_success();
    assert_eq!(processed(&all), 15);
    let mut by_partition: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in all.lines() {
        let (partition, _) = line.split_once('-').expect("p<partition>-<index>");
        by_partition
            .entry(partition.to_string())
            .or_default()
            .push(line.to_string());
    }
    for (partition, lines) in &by_partition {
        let expected: Vec<String> = (0..5).map(|i| format!("{partition}-{i}")).collect();
        assert_eq!(lines, &expected);
    }
    assert_eq!(by_partition.len(), 3);

    let bad_offset = consumer(
        &broker,
        &["--topic", "parts", "--partition", "0", "--offset", "-3"],
    );
    assert!(one_error_line(&bad_offset).contains("'-3' is incorrect"));
    let missing_partition = consumer(&broker, &["--topic", "parts", "--partition", "9"]);
    assert!(one_error_line(&missing_partition).contains("parts-9"));
    // clap refuses --offset without --partition (usage error, exit 2).
    let no_partition = consumer(&broker, &["--topic", "parts", "--offset", "1"]);
    assert_eq!(
        no_partition.status.code(),
        Some(2),
        "{}",
        no_partition.stderr
    );
}

#[test]
fn a_group_member_commits_and_resumes_where_it_stopped() {
    let broker = broker();
    create_topic(&broker, "resume", 2);
    let records: Vec<Produced> = (0..20)
        .map(|i| Produced {
            partition: i % 2,
            key: None,
            value: Some(format!("r{i}")),
        })
        .collect();
    produce(&broker, "resume", &records);
    let group_args = [
        "--topic",
        "resume",
        "--group",
        "resumers",
        "--from-beginning",
    ];

    let mut first_args = group_args.to_vec();
    first_args.extend(["--max-messages", "7"]);
    let first = consumer(&broker, &first_args);
    first.assert_success();
    assert_eq!(processed(&first), 7);

    let mut rest_args = group_args.to_vec();
    rest_args.extend(["--timeout-ms", "3000"]);
    let rest = consumer(&broker, &rest_args);
    rest.assert_success();
    assert_eq!(processed(&rest), 13);
    let mut seen: Vec<String> = first.lines().iter().map(|l| l.to_string()).collect();
    seen.extend(rest.lines().iter().map(|l| l.to_string()));
    seen.sort();
    let mut expected: Vec<String> = (0..20).map(|i| format!("r{i}")).collect();
    expected.sort();
    assert_eq!(seen, expected, "every record once across the two runs");

    let again = consumer(&broker, &rest_args);
    again.assert_success();
    assert_eq!(processed(&again), 0, "{:?}", again.stdout);
}

#[test]
fn errors_are_one_line_and_help_has_examples() {
    let broker = broker();
    let unknown = consumer(&broker, &["--topic", "no-such-topic", "--from-beginning"]);
    assert!(one_error_line(&unknown).contains("no-such-topic"));

    let closed = format!("127.0.0.1:{}", free_port());
    let unreachable = vaart_tool(
        &[
            "console-consumer",
            "--bootstrap-server",
            &closed,
            "--topic",
            "t",
        ],
        b"",
    );
    assert!(one_error_line(&unreachable).contains(&closed));

    let help = vaart_tool(&["console-consumer", "--help"], b"");
    help.assert_success();
    assert!(help.stdout.contains("Examples:"), "{}", help.stdout);
    assert!(help.stdout.contains("--from-beginning"), "{}", help.stdout);
}
