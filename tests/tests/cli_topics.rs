//! `vaart topics` against a real broker: the course-lab walk-through (list, create, describe
//! with Kafka's exact line format), alter, delete, regex selection, and the error paths (an
//! existing topic, an unknown topic, fewer partitions, an invalid config value, an unreachable
//! broker), each one `Error: ...` line and exit 1.

use vaart_tests::broker::free_port;
use vaart_tests::cli::{broker_tool, one_error_line, vaart_tool, ToolOutput};
use vaart_tests::{Broker, BrokerOptions};

fn topics(broker: &Broker, args: &[&str]) -> ToolOutput {
    broker_tool(broker, "topics", args, b"")
}

fn partition_line(topic: &str, partition: u32, node: i32) -> String {
    format!(
        "\tTopic: {topic}\tPartition: {partition}\tLeader: {node}\tReplicas: {node}\tIsr: {node}\t\
         Elr: N/A\tLastKnownElr: N/A"
    )
}

/// The topic line's fields after `Topic: T`, with the topic id checked and dropped.
fn topic_line_fields(line: &str, topic: &str) -> Vec<String> {
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(
        fields.first().copied(),
        Some(format!("Topic: {topic}").as_str()),
        "{line:?}"
    );
    let id = fields
        .get(1)
        .and_then(|field| field.strip_prefix("TopicId: "))
        .unwrap_or_else(|| panic!("no TopicId in {line:?}"));
    assert_eq!(
        id.len(),
        22,
        "Kafka prints a topic id as 22 base64 characters: {line:?}"
    );
    fields
        .iter()
        .skip(2)
        .map(|field| field.to_string())
        .collect()
}

#[test]
fn lab_walkthrough_create_describe_alter_delete() {
    let broker = BrokerOptions::new().node_id(1).start();

    let listed = topics(&broker, &["--list"]);
    listed.assert_success();
    assert!(!listed.stdout.contains("lecture"), "{}", listed.stdout);

    let created = topics(
        &broker,
        &[
            "--create",
            "--topic",
            "lecture",
            "--partitions",
            "3",
            "--replication-factor",
            "1",
        ],
    );
    created.assert_success();
    assert_eq!(created.stdout, "Created topic lecture.\n");

    let listed = topics(&broker, &["--list"]);
    listed.assert_success();
    assert!(listed.lines().contains(&"lecture"), "{}", listed.stdout);

    let described = topics(&broker, &["--describe", "--topic", "lecture"]);
    described.assert_success();
    let lines = described.lines();
    assert_eq!(lines.len(), 4, "{}", described.stdout);
    assert_eq!(
        topic_line_fields(lines[0], "lecture"),
        vec!["PartitionCount: 3", "ReplicationFactor: 1", "Configs: "]
    );
    for partition in 0..3u32 {
        assert_eq!(
            lines[partition as usize + 1],
            partition_line("lecture", partition, 1)
        );
    }

    // Configs that differ from the defaults show on the topic line.
    topics(
        &broker,
        &[
            "--create",
            "--topic",
            "compacted",
            "--config",
            "cleanup.policy=compact",
            "--config",
            "retention.ms=1000",
        ],
    )
    .assert_success();
    let described = topics(&broker, &["--describe", "--topic", "compacted"]);
    described.assert_success();
    let fields = topic_line_fields(described.lines()[0], "compacted");
    let configs = fields[2].strip_prefix("Configs: ").expect("Configs field");
    let mut configs: Vec<&str> = configs.split(',').collect();
    configs.sort_unstable();
    assert_eq!(configs, vec!["cleanup.policy=compact", "retention.ms=1000"]);

    // --describe without --topic describes every topic, sorted by name.
    let all = topics(&broker, &["--describe"]);
    all.assert_success();
    let topic_lines: Vec<&str> = all
        .lines()
        .into_iter()
        .filter(|line| line.starts_with("Topic: "))
        .collect();
    assert_eq!(topic_lines.len(), 2, "{}", all.stdout);
    assert!(topic_lines[0].starts_with("Topic: compacted\t"));
    assert!(topic_lines[1].starts_with("Topic: lecture\t"));

    // --topic is a regular expression, as in Kafka (commas mean "or").
    let matched = topics(&broker, &["--list", "--topic", "lec.*,compacted"]);
    matched.assert_success();
    assert_eq!(matched.lines(), vec!["compacted", "lecture"]);
    let none = topics(&broker, &["--list", "--topic", "lect"]);
    none.assert_success();
    assert_eq!(none.stdout, "");

    // Alter grows the partition count and prints nothing.
    let altered = topics(
        &broker,
        &["--alter", "--topic", "lecture", "--partitions", "5"],
    );
    altered.assert_success();
    assert_eq!(altered.stdout, "");
    let described = topics(&broker, &["--describe", "--topic", "lecture"]);
    described.assert_success();
    assert_eq!(described.lines().len(), 6, "{}", described.stdout);
    assert_eq!(
        topic_line_fields(described.lines()[0], "lecture")[0],
        "PartitionCount: 5"
    );
    assert_eq!(described.lines()[5], partition_line("lecture", 4, 1));

    // --if-not-exists: an existing topic is not an error.
    let again = topics(
        &broker,
        &[
            "--create",
            "--topic",
            "lecture",
            "--partitions",
            "3",
            "--if-not-exists",
        ],
    );
    again.assert_success();
    assert_eq!(again.stdout, "");

    // Delete, then the topic is gone; --if-exists makes a second delete a no-op.
    let deleted = topics(&broker, &["--delete", "--topic", "lecture"]);
    deleted.assert_success();
    assert_eq!(deleted.stdout, "");
    let listed = topics(&broker, &["--list"]);
    assert!(!listed.lines().contains(&"lecture"), "{}", listed.stdout);
    topics(&broker, &["--delete", "--topic", "lecture", "--if-exists"]).assert_success();
    let described = topics(
        &broker,
        &["--describe", "--topic", "lecture", "--if-exists"],
    );
    described.assert_success();
    assert_eq!(described.stdout, "");
}

#[test]
fn errors_are_one_line_like_kafka() {
    let broker = BrokerOptions::new().node_id(1).start();
    topics(
        &broker,
        &["--create", "--topic", "lecture", "--partitions", "3"],
    )
    .assert_success();

    let existing = topics(
        &broker,
        &["--create", "--topic", "lecture", "--partitions", "3"],
    );
    assert_eq!(
        one_error_line(&existing),
        "Error: Topic 'lecture' already exists."
    );

    for action in ["--describe", "--delete"] {
        let unknown = topics(&broker, &[action, "--topic", "nope"]);
        assert_eq!(
            one_error_line(&unknown),
            "Error: Topic 'nope' does not exist as expected",
            "{action}"
        );
    }
    let unknown = topics(
        &broker,
        &["--alter", "--topic", "nope", "--partitions", "4"],
    );
    assert_eq!(
        one_error_line(&unknown),
        "Error: Topic 'nope' does not exist as expected"
    );

    let fewer = topics(
        &broker,
        &["--alter", "--topic", "lecture", "--partitions", "2"],
    );
    assert_eq!(
        one_error_line(&fewer),
        "Error: Topic currently has 3 partitions, which is higher than the requested 2."
    );

    let invalid = topics(
        &broker,
        &["--create", "--topic", "bad", "--config", "retention.ms=abc"],
    );
    let line = one_error_line(&invalid);
    assert!(
        line.contains("retention.ms") && line.contains("abc"),
        "{line}"
    );
    let listed = topics(&broker, &["--list"]);
    assert!(!listed.lines().contains(&"bad"), "{}", listed.stdout);

    let malformed = topics(
        &broker,
        &["--create", "--topic", "bad", "--config", "novalue"],
    );
    assert!(one_error_line(&malformed).contains("key=val"));
    let zero = topics(
        &broker,
        &["--create", "--topic", "bad", "--partitions", "0"],
    );
    assert_eq!(
        one_error_line(&zero),
        "Error: The partitions must be greater than 0"
    );

    // A closed port: one line naming the address, exit 1.
    let closed = format!("127.0.0.1:{}", free_port());
    let unreachable = vaart_tool(&["topics", "--bootstrap-server", &closed, "--list"], b"");
    let line = one_error_line(&unreachable);
    assert!(
        line.contains(&closed) && line.contains("cannot reach"),
        "{line}"
    );

    // Exactly one action is required (clap's usage error, exit 2 like other usage errors).
    let no_action = topics(&broker, &["--topic", "lecture"]);
    no_action.assert_failure();
}

#[test]
fn help_has_examples() {
    for tool in ["topics", "configs", "console-producer"] {
        let help = vaart_tool(&[tool, "--help"], b"");
        help.assert_success();
        assert!(help.stdout.contains("Examples:"), "{tool}: {}", help.stdout);
        assert!(
            help.stdout.contains("--bootstrap-server"),
            "{tool}: {}",
            help.stdout
        );
    }
}
