//! `vaart consumer-groups` against a real broker, with records produced by librdkafka and
//! consumed by `vaart console-consumer --group`:
//!
//! - `--describe` lag numbers match what was produced and consumed (30 over 3 partitions
//!   consumed: LAG 0 everywhere; 12 more produced: LAG adds up to 12), `--members`, `--state`;
//! - `--reset-offsets`: a dry run changes nothing; `--execute --to-earliest` makes the next
//!   `console-consumer --group` run read everything again; `--to-offset`, `--shift-by -2`
//!   (clamped), `--to-datetime`, `--to-latest` each checked against the committed offsets;
//! - an active group (a librdkafka member) is refused with Kafka's message, and cannot be
//!   deleted; `--list`, `--delete`; an unknown group and an unreachable broker give one
//!   `Error: ...` line and exit 1.
//!
//! No timing assertions: every wait has an overall deadline.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, Producer};
use vaart_tests::broker::free_port;
use vaart_tests::cli::{broker_tool, one_error_line, vaart_tool, ToolOutput};
use vaart_tests::clients::{self, Admin};
use vaart_tests::{Broker, BrokerOptions};

/// Timestamp of record `i` of a partition: `BASE_TIMESTAMP_MS + i * 1000`
/// (2023-11-14T22:13:20.000Z + i seconds).
const BASE_TIMESTAMP_MS: i64 = 1_700_000_000_000;
/// Bound on each phase (never a timing assertion).
const PHASE_TIMEOUT: Duration = Duration::from_secs(60);

fn broker() -> Broker {
    BrokerOptions::new()
        .set("group.initial.rebalance.delay.ms", "100")
        .set("offsets.topic.num.partitions", "4")
        .start()
}

fn create_topic(broker: &Broker, topic: &str, partitions: i32) {
    broker.check(
        Admin::new(&broker.bootstrap()).create_topic(topic, partitions, &[]),
        "create topic",
    );
}

/// Produces `per_partition` records to each of `partitions` partitions; record `i` of a
/// partition has value `p<partition>-<first + i>` and timestamp `BASE + (first + i) s`.
fn produce(broker: &Broker, topic: &str, partitions: i32, first: i64, per_partition: i64) {
    let producer = clients::recording_producer(&broker.bootstrap(), "all", "none", &[]);
    let deadline = Instant::now() + PHASE_TIMEOUT;
    let mut id = 0usize;
    for index in first..first + per_partition {
        for partition in 0..partitions {
            let value = format!("p{partition}-{index}");
            let record = BaseRecord::with_opaque_to(topic, id)
                .partition(partition)
                .timestamp(BASE_TIMESTAMP_MS + index * 1000)
                .payload(value.as_bytes());
            broker.check(
                clients::send_with_retry(&producer, record, deadline),
                "send",
            );
            id += 1;
        }
    }
    broker.check(producer.flush(PHASE_TIMEOUT), "flush");
    let failed = producer
        .context()
        .deliveries()
        .values()
        .filter(|outcome| outcome.is_err())
        .count();
    assert_eq!(failed, 0, "every record delivered");
}

fn tool(broker: &Broker, name: &str, args: &[&str]) -> ToolOutput {
    broker_tool(broker, name, args, b"")
}

fn groups(broker: &Broker, args: &[&str]) -> ToolOutput {
    tool(broker, "consumer-groups", args)
}

/// Runs `console-consumer --group` until 3 s pass without a record; returns the values read.
fn consume_as(broker: &Broker, topic: &str, group: &str) -> Vec<String> {
    let output = tool(
        broker,
        "console-consumer",
        &[
            "--topic",
            topic,
            "--group",
            group,
            "--from-beginning",
            "--timeout-ms",
            "3000",
        ],
    );
    output.assert_success();
    output.lines().iter().map(|line| line.to_string()).collect()
}

/// One row of `--describe`: (CURRENT-OFFSET, LOG-END-OFFSET, LAG, CONSUMER-ID).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    current: String,
    log_end: String,
    lag: String,
    consumer_id: String,
}

/// `--describe --group`'s rows by (topic, partition), checking the blank line and header.
fn describe(broker: &Broker, group: &str) -> BTreeMap<(String, i32), Row> {
    let output = groups(broker, &["--describe", "--group", group]);
    output.assert_success();
    let lines = output.lines();
    assert_eq!(
        lines.first(),
        Some(&""),
        "blank line first: {:?}",
        output.stdout
    );
    let header: Vec<&str> = lines
        .get(1)
        .expect("a header line")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        vec![
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID"
        ]
    );
    // Columns are aligned: every cell starts where its header starts.
    let header_line = lines[1];
    let lag_at = header_line.find("LAG").expect("LAG column");
    let mut rows = BTreeMap::new();
    for line in &lines[2..] {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells.len(), 9, "nine cells in {line:?}");
        assert_eq!(cells[0], group);
        assert_eq!(
            line.get(lag_at..)
                .map(|rest| rest.split_whitespace().next()),
            Some(Some(cells[5])),
            "LAG aligned in {line:?}"
        );
        rows.insert(
            (cells[1].to_string(), cells[2].parse().expect("partition")),
            Row {
                current: cells[3].to_string(),
                log_end: cells[4].to_string(),
                lag: cells[5].to_string(),
                consumer_id: cells[6].to_string(),
            },
        );
    }
    rows
}

/// The committed offset of each partition, from `--describe`.
fn committed(broker: &Broker, group: &str, topic: &str) -> Vec<i64> {
    describe(broker, group)
        .into_iter()
        .filter(|((name, _), _)| name == topic)
        .map(|(_, row)| row.current.parse().expect("a committed offset"))
        .collect()
}

/// `--reset-offsets` table rows: (topic, partition, new offset).
fn reset_table(output: &ToolOutput) -> Vec<(String, i32, i64)> {
    output.assert_success();
    let lines = output.lines();
    assert_eq!(lines.first(), Some(&""), "{:?}", output.stdout);
    let header: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(header, vec!["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"]);
    lines[2..]
        .iter()
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(cells.len(), 4, "{line:?}");
            (
                cells[1].to_string(),
                cells[2].parse().expect("partition"),
                cells[3].parse().expect("offset"),
            )
        })
        .collect()
}

#[test]
fn describe_lag_matches_what_was_produced_and_consumed() {
    let broker = broker();
    create_topic(&broker, "lag", 3);
    produce(&broker, "lag", 3, 0, 10);

    let read = consume_as(&broker, "lag", "lag-readers");
    assert_eq!(read.len(), 30, "{read:?}");

    let rows = describe(&broker, "lag-readers");
    assert_eq!(rows.len(), 3, "{rows:?}");
    for partition in 0..3 {
        let row = &rows[&("lag".to_string(), partition)];
        assert_eq!(
            (row.current.as_str(), row.log_end.as_str(), row.lag.as_str()),
            ("10", "10", "0"),
            "partition {partition}"
        );
        assert_eq!(row.consumer_id, "-", "no active member");
    }
    let empty = groups(&broker, &["--describe", "--group", "lag-readers"]);
    assert!(
        empty
            .stderr
            .contains("Consumer group 'lag-readers' has no active members."),
        "{}",
        empty.stderr
    );

    produce(&broker, "lag", 3, 10, 4);
    let rows = describe(&broker, "lag-readers");
    let total: i64 = rows
        .values()
        .map(|row| row.lag.parse::<i64>().expect("a lag"))
        .sum();
    assert_eq!(total, 12);
    for row in rows.values() {
        assert_eq!((row.current.as_str(), row.log_end.as_str()), ("10", "14"));
    }

    let mut rest = consume_as(&broker, "lag", "lag-readers");
    rest.sort();
    let mut expected: Vec<String> = (0..3)
        .flat_map(|p| (10..14).map(move |i| format!("p{p}-{i}")))
        .collect();
    expected.sort();
    assert_eq!(rest, expected, "only the new records");
    assert!(describe(&broker, "lag-readers")
        .values()
        .all(|row| row.lag == "0"));

    let state = groups(
        &broker,
        &["--describe", "--group", "lag-readers", "--state"],
    );
    state.assert_success();
    let state_row: Vec<&str> = state.lines()[2].split_whitespace().collect();
    assert_eq!(state_row[0], "lag-readers");
    assert!(
        state.lines()[1].contains("COORDINATOR (ID)"),
        "{}",
        state.stdout
    );
    assert!(state.stdout.contains("Empty"), "{}", state.stdout);
}

#[test]
fn reset_offsets_dry_run_execute_and_every_scenario() {
    let broker = broker();
    create_topic(&broker, "rewind", 3);
    produce(&broker, "rewind", 3, 0, 10);
    assert_eq!(consume_as(&broker, "rewind", "rewinders").len(), 30);
    assert_eq!(committed(&broker, "rewinders", "rewind"), vec![10, 10, 10]);
    let reset = |args: &[&str]| {
        let mut all = vec!["--reset-offsets", "--group", "rewinders"];
        all.extend_from_slice(args);
        groups(&broker, &all)
    };

    // Dry run (the default and explicit): the table, but nothing committed.
    for dry in [
        vec!["--topic", "rewind", "--to-earliest"],
        vec!["--topic", "rewind", "--to-earliest", "--dry-run"],
    ] {
        let table = reset_table(&reset(&dry));
        assert_eq!(
            table,
            (0..3)
                .map(|p| ("rewind".to_string(), p, 0))
                .collect::<Vec<_>>()
        );
        assert_eq!(committed(&broker, "rewinders", "rewind"), vec![10, 10, 10]);
    }

    // --execute --to-earliest: the next group run reads everything again.
    reset_table(&reset(&["--topic", "rewind", "--to-earliest", "--execute"]));
    assert_eq!(committed(&broker, "rewinders", "rewind"), vec![0, 0, 0]);
    let again = consume_as(&broker, "rewind", "rewinders");
    assert_eq!(again.len(), 30, "{again:?}");
    assert_eq!(committed(&broker, "rewinders", "rewind"), vec![10, 10, 10]);

    // --to-offset on one partition; beyond the log end it is clamped to the end.
    let table = reset_table(&reset(&[
        "--topic",
        "rewind:0",
        "--to-offset",
        "3",
        "--execute",
    ]));
    assert_eq!(table, vec![("rewind".to_string(), 0, 3)]);
    assert_eq!(committed(&broker, "rewinders", "rewind"), vec![3, 10, 10]);
    reset_table(&reset(&[
        "--topic",
        "rewind:1",
        "--to-offset",
        "99",
        "--execute",
    ]));
    assert_eq!(committed(&broker, "rewinders", "rewind"), vec![3, 10, 10]);

    // --shift-by -2 on every committed partition, then below zero clamps to the start.
    reset_table(&reset(&["--all-topics", "--shift-by", "-2", "--execute"]));
    assert_eq!(committed(&broker, "rewinders", "rewind"), vec![1, 8, 8]);
    reset_table(&reset(&[
        "--topic",
        "rewind:0",
        "--shift-by",
        "-5",
        "--execute",
    ]));
    assert_eq!(committed(&broker, "rewinders", "rewind"), vec![0, 8, 8]);

    // --to-datetime: the first record at or after 22:13:24 is record 4 of each partition; a
    // time after the last record falls back to the log end.
    reset_table(&reset(&[
        "--topic",
        "rewind",
        "--to-datetime",
        "2023-11-14T22:13:24.000",
        "--execute",
    ]));
    assert_eq!(committed(&broker, "rewinders", "rewind"), vec![4, 4, 4]);
    reset_table(&reset(&[
        "--topic",
        "rewind:2",
        "--to-datetime",
        "2023-11-14T23:13:22.500+01:00",
        "--execute",
    ]));
    assert_eq!(committed(&broker, "rewinders", "rewind"), vec![4, 4, 3]);
    reset_table(&reset(&[
        "--topic",
        "rewind:2",
        "--to-datetime",
        "2030-01-01T00:00:00.000",
        "--execute",
    ]));
    assert_eq!(committed(&broker, "rewinders", "rewind"), vec![4, 4, 10]);

    // --to-latest, and a group run then has nothing to read.
    reset_table(&reset(&["--all-topics", "--to-latest", "--execute"]));
    assert_eq!(committed(&broker, "rewinders", "rewind"), vec![10, 10, 10]);
    assert!(consume_as(&broker, "rewind", "rewinders").is_empty());

    // Usage errors: no scenario, no scope, an unknown topic.
    assert!(one_error_line(&reset(&["--topic", "rewind"])).contains("scenarios"));
    assert!(one_error_line(&reset(&["--to-earliest"])).contains("--all-topics, --topic"));
    assert!(one_error_line(&reset(&["--topic", "nope", "--to-earliest"])).contains("nope"));
}

/// A librdkafka member of `group` subscribed to `topic`, polled until it owns partitions.
fn active_member(broker: &Broker, topic: &str, group: &str) -> BaseConsumer {
    let member: BaseConsumer = clients::client_config(&broker.bootstrap())
        .set("group.id", group)
        .set("session.timeout.ms", "30000")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("create an rdkafka consumer");
    member.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        let _ = member.poll(Duration::from_millis(100));
        let owned = member
            .assignment()
            .map(|list| list.count())
            .unwrap_or_default();
        if owned > 0 {
            return member;
        }
        if Instant::now() > deadline {
            broker.fail("the librdkafka member got no partitions");
        }
    }
}

#[test]
fn an_active_group_is_described_with_its_member_and_not_reset_or_deleted() {
    let broker = broker();
    create_topic(&broker, "busy", 2);
    produce(&broker, "busy", 2, 0, 3);
    let member = active_member(&broker, "busy", "busy-group");

    let rows = describe(&broker, "busy-group");
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in rows.values() {
        assert_ne!(
            row.consumer_id, "-",
            "the member owns every partition: {rows:?}"
        );
        assert_eq!(row.current, "-", "nothing committed yet");
        assert_eq!(row.log_end, "3");
        assert_eq!(row.lag, "-");
    }
    let members = groups(
        &broker,
        &[
            "--describe",
            "--group",
            "busy-group",
            "--members",
            "--verbose",
        ],
    );
    members.assert_success();
    assert!(
        members.lines()[1].contains("#PARTITIONS"),
        "{}",
        members.stdout
    );
    assert!(members.stdout.contains("busy(0,1)"), "{}", members.stdout);

    let refused = groups(
        &broker,
        &[
            "--reset-offsets",
            "--group",
            "busy-group",
            "--topic",
            "busy",
            "--to-earliest",
            "--execute",
        ],
    );
    let stderr = refused.assert_failure();
    assert!(
        stderr.contains(
            "Error: Assignments can only be reset if the group 'busy-group' is inactive, but the \
             current state is Stable."
        ),
        "{stderr}"
    );

    let not_deleted = groups(&broker, &["--delete", "--group", "busy-group"]);
    not_deleted.assert_failure();
    assert!(
        not_deleted.stdout.contains(
            "* Group 'busy-group' could not be deleted due to: \
             org.apache.kafka.common.errors.GroupNotEmptyException: The group is not empty."
        ),
        "{}",
        not_deleted.stdout
    );
    drop(member);
}

#[test]
fn list_delete_and_error_paths() {
    let broker = broker();
    create_topic(&broker, "listed", 1);
    produce(&broker, "listed", 1, 0, 2);
    assert_eq!(consume_as(&broker, "listed", "first-group").len(), 2);
    assert_eq!(consume_as(&broker, "listed", "second-group").len(), 2);

    let list = groups(&broker, &["--list"]);
    list.assert_success();
    let ids = list.lines();
    assert!(
        ids.contains(&"first-group") && ids.contains(&"second-group"),
        "{ids:?}"
    );

    let deleted = groups(&broker, &["--delete", "--group", "first-group"]);
    deleted.assert_success();
    assert_eq!(
        deleted.stdout.trim_end(),
        "Deletion of requested consumer groups ('first-group') was successful."
    );
    let list = groups(&broker, &["--list"]);
    assert!(!list.lines().contains(&"first-group"), "{}", list.stdout);
    assert!(list.lines().contains(&"second-group"), "{}", list.stdout);

    let gone = groups(&broker, &["--describe", "--group", "first-group"]);
    assert_eq!(
        one_error_line(&gone),
        "Error: Consumer group 'first-group' does not exist."
    );
    let never = groups(&broker, &["--describe", "--group", "never-was"]);
    assert_eq!(
        one_error_line(&never),
        "Error: Consumer group 'never-was' does not exist."
    );

    let closed = format!("127.0.0.1:{}", free_port());
    let unreachable = vaart_tool(
        &["consumer-groups", "--bootstrap-server", &closed, "--list"],
        b"",
    );
    assert!(one_error_line(&unreachable).contains(&closed));

    let help = vaart_tool(&["consumer-groups", "--help"], b"");
    help.assert_success();
    assert!(help.stdout.contains("Examples:"), "{}", help.stdout);
    assert!(help.stdout.contains("--reset-offsets"), "{}", help.stdout);
}

#[test]
fn two_console_consumers_in_one_group_read_every_record() {
    let broker = broker();
    create_topic(&broker, "shared", 4);
    produce(&broker, "shared", 4, 0, 10);
    let bootstrap = broker.bootstrap();
    let runs: Vec<std::thread::JoinHandle<ToolOutput>> = (0..2)
        .map(|_| {
            let bootstrap = bootstrap.clone();
            std::thread::spawn(move || {
                vaart_tool(
                    &[
                        "console-consumer",
                        "--bootstrap-server",
                        &bootstrap,
                        "--topic",
                        "shared",
                        "--group",
                        "sharers",
                        "--from-beginning",
                        "--timeout-ms",
                        "4000",
                        "--consumer-property",
                        "heartbeat.interval.ms=200",
                    ],
                    b"",
                )
            })
        })
        .collect();
    let mut seen: Vec<String> = Vec::new();
    for run in runs {
        let output = run.join().expect("a console-consumer run");
        output.assert_success();
        seen.extend(output.lines().iter().map(|line| line.to_string()));
    }
    seen.sort();
    seen.dedup();
    let mut expected: Vec<String> = (0..4)
        .flat_map(|p| (0..10).map(move |i| format!("p{p}-{i}")))
        .collect();
    expected.sort();
    assert_eq!(seen, expected, "every record read by one of the members");
    // Whoever read what, the group's committed offsets end at the log end.
    assert!(describe(&broker, "sharers")
        .values()
        .all(|row| row.lag == "0" && row.current == "10"));
}
