//! `vaart configs` against a real broker: topic configs described (Kafka's `Dynamic configs
//! for topic T are:` / `All configs ...` blocks with synonyms), altered with `--add-config`
//! (bracketed list values) and `--delete-config`, checked through librdkafka's DescribeConfigs;
//! broker configs described and altered; error paths as one `Error: ...` line and exit 1.

use vaart_tests::broker::free_port;
use vaart_tests::cli::{broker_tool, one_error_line, vaart_tool, ToolOutput};
use vaart_tests::clients::Admin;
use vaart_tests::{Broker, BrokerOptions};

fn configs(broker: &Broker, args: &[&str]) -> ToolOutput {
    broker_tool(broker, "configs", args, b"")
}

fn create_topic(broker: &Broker, topic: &str) {
    let bootstrap = broker.bootstrap();
    vaart_tool(
        &[
            "topics",
            "--bootstrap-server",
            &bootstrap,
            "--create",
            "--topic",
            topic,
        ],
        b"",
    )
    .assert_success();
}

#[test]
fn topic_configs_describe_alter_delete() {
    let broker = BrokerOptions::new().node_id(1).start();
    create_topic(&broker, "lecture");
    let admin = Admin::new(&broker.bootstrap());

    let empty = configs(
        &broker,
        &[
            "--describe",
            "--entity-type",
            "topics",
            "--entity-name",
            "lecture",
        ],
    );
    empty.assert_success();
    assert_eq!(empty.stdout, "Dynamic configs for topic lecture are:\n");

    let altered = configs(
        &broker,
        &[
            "--alter",
            "--entity-type",
            "topics",
            "--entity-name",
            "lecture",
            "--add-config",
            "retention.ms=5000,cleanup.policy=[compact,delete]",
        ],
    );
    altered.assert_success();
    assert_eq!(
        altered.stdout,
        "Completed updating config for topic lecture.\n"
    );
    let seen = admin.topic_configs("lecture").expect("describe configs");
    assert_eq!(seen.get("retention.ms"), Some(&Some("5000".to_string())));
    assert_eq!(
        seen.get("cleanup.policy"),
        Some(&Some("compact,delete".to_string()))
    );

    // The --topic shortcut; entries sorted by name, each with its synonyms.
    let described = configs(&broker, &["--describe", "--topic", "lecture"]);
    described.assert_success();
    let lines = described.lines();
    assert_eq!(lines.len(), 3, "{}", described.stdout);
    assert_eq!(lines[0], "Dynamic configs for topic lecture are:");
    assert!(
        lines[1].starts_with(
            "  cleanup.policy=compact,delete sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:\
             cleanup.policy=compact,delete, "
        ),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with(
            "  retention.ms=5000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=5000"
        ),
        "{}",
        lines[2]
    );
    assert!(lines[2].ends_with('}'), "{}", lines[2]);

    // --all lists every topic config, defaults included.
    let all = configs(&broker, &["--describe", "--topic", "lecture", "--all"]);
    all.assert_success();
    let lines = all.lines();
    assert_eq!(lines[0], "All configs for topic lecture are:");
    assert!(lines.len() > 10, "{}", all.stdout);
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("  segment.bytes=") && line.contains("DEFAULT_CONFIG:")),
        "{}",
        all.stdout
    );

    // Deleting a config that is not set is Kafka's error; deleting a set one resets it.
    let missing = configs(
        &broker,
        &[
            "--alter",
            "--topic",
            "lecture",
            "--delete-config",
            "retention.ms,segment.ms",
        ],
    );
    assert_eq!(
        one_error_line(&missing),
        "Error: Invalid config(s): segment.ms"
    );
    let deleted = configs(
        &broker,
        &[
            "--alter",
            "--topic",
            "lecture",
            "--delete-config",
            "retention.ms",
        ],
    );
    deleted.assert_success();
    assert_eq!(
        deleted.stdout,
        "Completed updating config for topic lecture.\n"
    );
    let described = configs(&broker, &["--describe", "--topic", "lecture"]);
    assert_eq!(described.lines().len(), 2, "{}", described.stdout);
    assert!(described.lines()[1].starts_with("  cleanup.policy="));

    // Without an entity name every topic is described.
    create_topic(&broker, "other");
    let every = configs(&broker, &["--describe", "--entity-type", "topics"]);
    every.assert_success();
    let headers: Vec<&str> = every
        .lines()
        .into_iter()
        .filter(|line| !line.starts_with("  "))
        .collect();
    assert_eq!(
        headers,
        vec![
            "Dynamic configs for topic lecture are:",
            "Dynamic configs for topic other are:"
        ]
    );
}

#[test]
fn config_errors_are_one_line() {
    let broker = BrokerOptions::new().node_id(1).start();
    create_topic(&broker, "lecture");

    let invalid = configs(
        &broker,
        &[
            "--alter",
            "--topic",
            "lecture",
            "--add-config",
            "retention.ms=abc",
        ],
    );
    let line = one_error_line(&invalid);
    assert!(
        line.contains("retention.ms") && line.contains("abc"),
        "{line}"
    );

    let unknown = configs(&broker, &["--describe", "--topic", "nope"]);
    assert_eq!(
        one_error_line(&unknown),
        "Error: Topic 'nope' does not exist."
    );
    let unknown = configs(
        &broker,
        &[
            "--alter",
            "--topic",
            "nope",
            "--add-config",
            "retention.ms=1",
        ],
    );
    assert!(one_error_line(&unknown).contains("nope"));

    let no_change = configs(&broker, &["--alter", "--topic", "lecture"]);
    assert!(one_error_line(&no_change).contains("--add-config"));
    let bad_broker = configs(&broker, &["--describe", "--broker", "x"]);
    assert_eq!(
        one_error_line(&bad_broker),
        "Error: The entity name for brokers must be a valid integer broker id, found: x"
    );
    let bad_key = configs(
        &broker,
        &["--alter", "--topic", "lecture", "--add-config", "a b=1"],
    );
    assert!(one_error_line(&bad_key).contains("Invalid character found for config key"));

    let closed = format!("127.0.0.1:{}", free_port());
    let unreachable = vaart_tool(
        &[
            "configs",
            "--bootstrap-server",
            &closed,
            "--describe",
            "--topic",
            "t",
        ],
        b"",
    );
    assert!(one_error_line(&unreachable).contains(&closed));
}

#[test]
fn broker_configs_describe_and_alter() {
    let broker = BrokerOptions::new().node_id(1).start();

    let dynamic = configs(
        &broker,
        &[
            "--describe",
            "--entity-type",
            "brokers",
            "--entity-name",
            "1",
        ],
    );
    dynamic.assert_success();
    assert_eq!(dynamic.lines()[0], "Dynamic configs for broker 1 are:");

    let defaults = configs(
        &broker,
        &["--describe", "--entity-type", "brokers", "--entity-default"],
    );
    defaults.assert_success();
    assert_eq!(
        defaults.lines()[0],
        "Default configs for brokers in the cluster are:"
    );

    let all = configs(&broker, &["--describe", "--broker", "1", "--all"]);
    all.assert_success();
    let lines = all.lines();
    assert_eq!(lines[0], "All configs for broker 1 are:");
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("  log.retention.ms=")
                || line.starts_with("  num.partitions=")),
        "{}",
        all.stdout
    );
    assert!(
        lines
            .iter()
            .skip(1)
            .all(|line| line.starts_with("  ") && line.contains(" sensitive=")),
        "{}",
        all.stdout
    );

    // Every broker, then the cluster default, as Kafka's tool.
    let every = configs(&broker, &["--describe", "--entity-type", "brokers"]);
    every.assert_success();
    let headers: Vec<&str> = every
        .lines()
        .into_iter()
        .filter(|line| !line.starts_with("  "))
        .collect();
    assert_eq!(
        headers,
        vec![
            "Dynamic configs for broker 1 are:",
            "Default configs for brokers in the cluster are:"
        ]
    );

    // Broker configs are dynamic (cluster-wide ones at both levels), as in Kafka.
    for (args, done) in [
        (
            vec!["--alter", "--entity-type", "brokers", "--entity-name", "1"],
            "Completed updating config for broker 1.\n",
        ),
        (
            vec!["--alter", "--entity-type", "brokers", "--entity-default"],
            "Completed updating default config for brokers in the cluster.\n",
        ),
    ] {
        let mut args = args;
        args.extend_from_slice(&["--add-config", "log.retention.ms=3600000"]);
        let altered = configs(&broker, &args);
        altered.assert_success();
        assert_eq!(altered.stdout, done);
    }
    let dynamic = configs(&broker, &["--describe", "--broker", "1"]);
    dynamic.assert_success();
    assert!(dynamic.lines().len() > 1, "{}", dynamic.stdout);
    assert!(
        dynamic.lines()[1].starts_with(
            "  log.retention.ms=3600000 sensitive=false synonyms={DYNAMIC_BROKER_CONFIG:\
             log.retention.ms=3600000"
        ),
        "{}",
        dynamic.stdout
    );
}
