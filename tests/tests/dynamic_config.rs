//! Dynamic broker configs against a real broker, as Kafka treats them (KIP-226):
//! IncrementalAlterConfigs / AlterConfigs on the BROKER resource "" (cluster-wide default) and
//! on this node's id, DescribeConfigs sources and synonyms, the effect on topics without an
//! override (on every shard), persistence across a restart, Kafka's refusals (read-only
//! setting, invalid value, another broker's id), and SIGHUP reloads of the config file.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future::block_on;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::{
    alter_configs_request, incremental_alter_configs_request, AlterConfigsRequest, ApiKey,
    DescribeConfigsRequest, IncrementalAlterConfigsRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use rdkafka::admin::ConfigSource as RdConfigSource;
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use vaart_tests::clients;
use vaart_tests::wire::{encode_batch, error_code, KafkaConn};
use vaart_tests::{Broker, BrokerOptions};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const INVALID_REQUEST: i16 = 42;
/// Kafka's DescribeConfigs sources.
const DYNAMIC_BROKER_CONFIG: i8 = 2;
const DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;
/// A node id other than the default, so the per-broker resource name is not a guess.
const NODE_ID: i32 = 7;
/// How long a SIGHUP may take to show (a bound for polling, not a timing assertion).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// IncrementalAlterConfigs of one resource; returns its (error code, message).
fn incremental(
    broker: &Broker,
    resource_type: i8,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
    validate_only: bool,
) -> (i16, Option<String>) {
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    let version = broker.check(
        conn.pick_version(ApiKey::IncrementalAlterConfigs, 0, 1),
        "IncrementalAlterConfigs version",
    );
    let configs = ops
        .iter()
        .map(|(key, op, value)| {
            incremental_alter_configs_request::AlterableConfig::default()
                .with_name(str_bytes(key))
                .with_config_operation(*op)
                .with_value(value.map(str_bytes))
        })
        .collect();
    let request = IncrementalAlterConfigsRequest::default()
        .with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(str_bytes(name))
                .with_configs(configs),
        ])
        .with_validate_only(validate_only);
    let response = broker.check(
        conn.round_trip(version, &request),
        "IncrementalAlterConfigs",
    );
    let result = response
        .responses
        .first()
        .unwrap_or_else(|| broker.fail("IncrementalAlterConfigs answered no resource"));
    (
        result.error_code,
        result.error_message.as_ref().map(|m| m.to_string()),
    )
}

fn set_broker(broker: &Broker, name: &str, key: &str, value: &str) {
    let (code, message) = incremental(
        broker,
        RESOURCE_BROKER,
        name,
        &[(key, OP_SET, Some(value))],
        false,
    );
    assert_eq!(
        code,
        error_code::NONE,
        "set {key}={value} on broker resource {name:?}: {message:?}"
    );
}

/// One described config.
#[derive(Debug, Clone)]
struct Described {
    value: Option<String>,
    source: i8,
    read_only: bool,
    synonyms: Vec<(String, Option<String>, i8)>,
}

fn describe_raw(broker: &Broker, resource_type: i8, name: &str) -> DescribeConfigsResult {
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    let version = broker.check(
        conn.pick_version(ApiKey::DescribeConfigs, 1, 4),
        "DescribeConfigs version",
    );
    let request = DescribeConfigsRequest::default()
        .with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(str_bytes(name))
            .with_configuration_keys(None)])
        .with_include_synonyms(true);
    let response = broker.check(conn.round_trip(version, &request), "DescribeConfigs");
    response
        .results
        .into_iter()
        .next()
        .unwrap_or_else(|| broker.fail("DescribeConfigs answered no resource"))
}

fn describe(broker: &Broker, resource_type: i8, name: &str) -> Vec<(String, Described)> {
    let result = describe_raw(broker, resource_type, name);
    assert_eq!(
        result.error_code,
        error_code::NONE,
        "DescribeConfigs {resource_type}/{name:?}: {:?}",
        result.error_message
    );
    result
        .configs
        .into_iter()
        .map(|config| {
            (
                config.name.to_string(),
                Described {
                    value: config.value.map(|v| v.to_string()),
                    source: config.config_source,
                    read_only: config.read_only,
                    synonyms: config
                        .synonyms
                        .into_iter()
                        .map(|s| (s.name.to_string(), s.value.map(|v| v.to_string()), s.source))
                        .collect(),
                },
            )
        })
        .collect()
}

fn described(broker: &Broker, resource_type: i8, name: &str, key: &str) -> Described {
    describe(broker, resource_type, name)
        .into_iter()
        .find(|(config, _)| config == key)
        .map(|(_, d)| d)
        .unwrap_or_else(|| broker.fail(format!("DescribeConfigs {name:?} has no {key}")))
}

fn this_broker() -> String {
    NODE_ID.to_string()
}

/// Produces one batch of one `value_bytes` record to every partition of `topic`; returns the
/// error codes, one per partition.
fn produce_sized(broker: &Broker, topic: &str, partitions: i32, value_bytes: usize) -> Vec<i16> {
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    let value = vec![b'v'; value_bytes];
    (0..partitions)
        .map(|partition| {
            let batch: Bytes = encode_batch(
                &[(None, Some(&value))],
                1_700_000_000_000,
                Compression::None,
            );
            broker
                .check(conn.produce(topic, partition, batch, -1), "Produce")
                .error_code
        })
        .collect()
}

#[test]
fn broker_configs_alter_describe_take_effect_and_survive_restart() {
    let mut broker = BrokerOptions::new().shards(2).node_id(NODE_ID).start();
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    // Two partitions each, so both shards own a partition of each topic.
    assert_eq!(
        broker.check(conn.create_topic("plain", 2, &[]), "create plain"),
        0
    );
    assert_eq!(
        broker.check(
            conn.create_topic(
                "own",
                2,
                &[
                    ("max.message.bytes", "1048588"),
                    ("retention.ms", "1000000")
                ]
            ),
            "create own"
        ),
        0
    );
    drop(conn);
    assert_eq!(produce_sized(&broker, "plain", 2, 5000), vec![0, 0]);

    // Cluster-wide default (resource ""): applies to every topic without an override.
    set_broker(&broker, "", "message.max.bytes", "2000");
    set_broker(&broker, "", "log.retention.ms", "3600000");
    assert_eq!(
        produce_sized(&broker, "plain", 2, 5000),
        vec![error_code::MESSAGE_TOO_LARGE; 2],
        "a batch above the new message.max.bytes is refused on both shards"
    );
    assert_eq!(produce_sized(&broker, "plain", 2, 500), vec![0, 0]);
    assert_eq!(
        produce_sized(&broker, "own", 2, 5000),
        vec![0, 0],
        "a topic override beats the dynamic broker default"
    );
    let retention = described(&broker, RESOURCE_TOPIC, "plain", "retention.ms");
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    assert_eq!(retention.source, DYNAMIC_DEFAULT_BROKER_CONFIG);
    let retention = described(&broker, RESOURCE_TOPIC, "own", "retention.ms");
    assert_eq!(retention.value.as_deref(), Some("1000000"), "override kept");

    // DescribeConfigs on the broker: the value, its source, read-only flags, synonyms.
    let entry = described(&broker, RESOURCE_BROKER, &this_broker(), "log.retention.ms");
    assert_eq!(entry.value.as_deref(), Some("3600000"));
    assert_eq!(entry.source, DYNAMIC_DEFAULT_BROKER_CONFIG);
    assert!(!entry.read_only);
    assert_eq!(
        entry.synonyms.first(),
        Some(&(
            "log.retention.ms".to_owned(),
            Some("3600000".to_owned()),
            DYNAMIC_DEFAULT_BROKER_CONFIG
        ))
    );
    assert!(
        entry.synonyms.contains(&(
            "log.retention.hours".to_owned(),
            Some("168".to_owned()),
            DEFAULT_CONFIG
        )),
        "{:?}",
        entry.synonyms
    );
    assert!(described(&broker, RESOURCE_BROKER, &this_broker(), "num.partitions").read_only);
    let node = described(&broker, RESOURCE_BROKER, &this_broker(), "node.id");
    assert_eq!(
        (node.value.as_deref(), node.source),
        (Some("7"), STATIC_BROKER_CONFIG)
    );
    let mut defaults: Vec<(String, Option<String>, i8)> = describe(&broker, RESOURCE_BROKER, "")
        .into_iter()
        .map(|(name, d)| (name, d.value, d.source))
        .collect();
    defaults.sort();
    assert_eq!(
        defaults,
        vec![
            (
                "log.retention.ms".to_owned(),
                Some("3600000".to_owned()),
                DYNAMIC_DEFAULT_BROKER_CONFIG
            ),
            (
                "message.max.bytes".to_owned(),
                Some("2000".to_owned()),
                DYNAMIC_DEFAULT_BROKER_CONFIG
            ),
        ],
        "the default resource lists exactly what is set at that level"
    );

    // Per-broker value beats the cluster-wide default.
    set_broker(&broker, &this_broker(), "log.retention.ms", "7200000");
    let entry = described(&broker, RESOURCE_BROKER, &this_broker(), "log.retention.ms");
    assert_eq!(
        (entry.value.as_deref(), entry.source),
        (Some("7200000"), DYNAMIC_BROKER_CONFIG)
    );
    let sources: Vec<i8> = entry
        .synonyms
        .iter()
        .filter(|(name, _, _)| name == "log.retention.ms")
        .map(|(_, _, source)| *source)
        .collect();
    assert_eq!(
        sources,
        vec![DYNAMIC_BROKER_CONFIG, DYNAMIC_DEFAULT_BROKER_CONFIG]
    );
    let retention = described(&broker, RESOURCE_TOPIC, "plain", "retention.ms");
    assert_eq!(
        (retention.value.as_deref(), retention.source),
        (Some("7200000"), DYNAMIC_BROKER_CONFIG)
    );

    // validate_only changes nothing.
    let (code, message) = incremental(
        &broker,
        RESOURCE_BROKER,
        "",
        &[("message.max.bytes", OP_SET, Some("100"))],
        true,
    );
    assert_eq!(code, 0, "{message:?}");
    assert_eq!(
        described(
            &broker,
            RESOURCE_BROKER,
            &this_broker(),
            "message.max.bytes"
        )
        .value
        .as_deref(),
        Some("2000")
    );

    // Kafka's refusals: read-only settings, invalid values, another broker.
    let (code, message) = incremental(
        &broker,
        RESOURCE_BROKER,
        "",
        &[("num.partitions", OP_SET, Some("3"))],
        false,
    );
    assert_eq!(code, INVALID_REQUEST);
    assert_eq!(
        message.as_deref(),
        Some("Cannot update these configs dynamically: Set(num.partitions)")
    );
    let (code, message) = incremental(
        &broker,
        RESOURCE_BROKER,
        &this_broker(),
        &[("log.dirs", OP_SET, Some("/tmp/x"))],
        false,
    );
    assert_eq!(code, INVALID_REQUEST, "{message:?}");
    assert!(message
        .unwrap_or_default()
        .contains("Cannot update these configs dynamically"));
    let (code, message) = incremental(
        &broker,
        RESOURCE_BROKER,
        "",
        &[("log.retention.ms", OP_SET, Some("soon"))],
        false,
    );
    assert_eq!(code, INVALID_REQUEST, "{message:?}");
    assert!(
        message
            .clone()
            .unwrap_or_default()
            .contains("Invalid value soon for configuration log.retention.ms"),
        "{message:?}"
    );
    let (code, _) = incremental(
        &broker,
        RESOURCE_BROKER,
        "99",
        &[("log.retention.ms", OP_SET, Some("1"))],
        false,
    );
    assert_eq!(code, INVALID_REQUEST);
    let unchanged = described(&broker, RESOURCE_BROKER, &this_broker(), "log.retention.ms");
    assert_eq!(
        unchanged.value.as_deref(),
        Some("7200000"),
        "refusals change nothing"
    );

    // The dynamic levels survive a restart.
    broker.stop();
    broker.restart();
    let entry = described(&broker, RESOURCE_BROKER, &this_broker(), "log.retention.ms");
    assert_eq!(
        (entry.value.as_deref(), entry.source),
        (Some("7200000"), DYNAMIC_BROKER_CONFIG)
    );
    assert_eq!(
        described(
            &broker,
            RESOURCE_BROKER,
            &this_broker(),
            "message.max.bytes"
        )
        .source,
        DYNAMIC_DEFAULT_BROKER_CONFIG
    );
    assert_eq!(
        produce_sized(&broker, "plain", 2, 5000),
        vec![error_code::MESSAGE_TOO_LARGE; 2],
        "message.max.bytes still applies after the restart"
    );

    // DELETE goes back to the level below.
    let (code, message) = incremental(
        &broker,
        RESOURCE_BROKER,
        "",
        &[("message.max.bytes", OP_DELETE, None)],
        false,
    );
    assert_eq!(code, 0, "{message:?}");
    assert_eq!(produce_sized(&broker, "plain", 2, 5000), vec![0, 0]);
    let entry = described(
        &broker,
        RESOURCE_BROKER,
        &this_broker(),
        "message.max.bytes",
    );
    assert_eq!(
        (entry.value.as_deref(), entry.source),
        (Some("1048588"), DEFAULT_CONFIG)
    );

    // Legacy AlterConfigs replaces the whole level.
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    let version = broker.check(
        conn.pick_version(ApiKey::AlterConfigs, 0, 2),
        "AlterConfigs version",
    );
    let request = AlterConfigsRequest::default().with_resources(vec![
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(RESOURCE_BROKER)
            .with_resource_name(str_bytes(""))
            .with_configs(vec![alter_configs_request::AlterableConfig::default()
                .with_name(str_bytes("log.retention.bytes"))
                .with_value(Some(str_bytes("1073741824")))]),
    ]);
    let response = broker.check(conn.round_trip(version, &request), "AlterConfigs");
    assert_eq!(response.responses.first().map(|r| r.error_code), Some(0));
    let defaults: Vec<String> = describe(&broker, RESOURCE_BROKER, "")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(defaults, vec!["log.retention.bytes".to_owned()]);
    broker.stop();
}

/// rdkafka's AdminClient (librdkafka) alters and describes a broker resource.
#[test]
fn rdkafka_admin_alters_and_describes_broker_configs() {
    let mut broker = BrokerOptions::new().node_id(NODE_ID).start();
    let admin: AdminClient<DefaultClientContext> = clients::client_config(&broker.bootstrap())
        .create()
        .expect("create an rdkafka admin client");
    let options = AdminOptions::new().request_timeout(Some(clients::ADMIN_TIMEOUT));
    let alter = AlterConfig::new(ResourceSpecifier::Broker(NODE_ID))
        .set("log.retention.bytes", "123456789");
    let results = broker.check(
        block_on(admin.alter_configs([&alter], &options)),
        "alter_configs",
    );
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let resources = broker.check(
        block_on(admin.describe_configs([&ResourceSpecifier::Broker(NODE_ID)], &options)),
        "describe_configs",
    );
    let resource = match resources.into_iter().next() {
        Some(Ok(resource)) => resource,
        other => broker.fail(format!("describe_configs: {other:?}")),
    };
    let entry = resource
        .entries
        .iter()
        .find(|e| e.name == "log.retention.bytes")
        .unwrap_or_else(|| broker.fail("no log.retention.bytes"));
    assert_eq!(entry.value.as_deref(), Some("123456789"));
    assert_eq!(entry.source, RdConfigSource::DynamicBroker);
    assert!(!entry.is_read_only);
    let refused = AlterConfig::new(ResourceSpecifier::Broker(NODE_ID)).set("listen", "127.0.0.1:1");
    // rust-rdkafka reports every AlterConfigs resource as Ok (it drops per-resource errors),
    // so the refusal shows as nothing changed: AlterConfigs replaces the whole level, and the
    // level still holds log.retention.bytes.
    broker.check(
        block_on(admin.alter_configs([&refused], &options)),
        "alter_configs",
    );
    let entry = described(
        &broker,
        RESOURCE_BROKER,
        &this_broker(),
        "log.retention.bytes",
    );
    assert_eq!(
        (entry.value.as_deref(), entry.source),
        (Some("123456789"), DYNAMIC_BROKER_CONFIG),
        "a refused change leaves the level as it was"
    );
    let listen = described(&broker, RESOURCE_BROKER, &this_broker(), "listen");
    assert_eq!(listen.value, Some(broker.bootstrap()));
    drop(admin);
    broker.stop();
}

fn write_config(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Polls until `done` or [`RELOAD_TIMEOUT`].
fn wait_for(broker: &Broker, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    while !done() {
        if Instant::now() >= deadline {
            broker.fail(format!("not seen within {RELOAD_TIMEOUT:?}: {what}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn log_contains(broker: &Broker, text: &str) -> bool {
    std::fs::read_to_string(broker.stderr_path()).is_ok_and(|log| log.contains(text))
}

#[test]
fn sighup_reloads_dynamic_settings_and_keeps_read_only_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("vaart.toml");
    write_config(
        &file,
        "\"log.retention.ms\" = 86400000\n\"num.partitions\" = 1\n\"message.max.bytes\" = 1048588\n",
    );
    let mut broker = BrokerOptions::new()
        .shards(2)
        .node_id(NODE_ID)
        .config_file(&file)
        .start();
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    assert_eq!(
        broker.check(conn.create_topic("reloaded", 2, &[]), "create"),
        0
    );
    drop(conn);
    let entry = described(&broker, RESOURCE_BROKER, &this_broker(), "log.retention.ms");
    assert_eq!(
        (entry.value.as_deref(), entry.source),
        (Some("86400000"), STATIC_BROKER_CONFIG)
    );

    // A dynamic and a read-only change, then SIGHUP.
    write_config(
        &file,
        "\"log.retention.ms\" = 43200000\n\"num.partitions\" = 4\n\"message.max.bytes\" = 3000\n",
    );
    broker.send_signal(libc::SIGHUP);
    wait_for(&broker, "log.retention.ms reloaded", || {
        described(&broker, RESOURCE_BROKER, &this_broker(), "log.retention.ms")
            .value
            .as_deref()
            == Some("43200000")
    });
    let entry = described(&broker, RESOURCE_BROKER, &this_broker(), "log.retention.ms");
    assert_eq!(
        entry.source, STATIC_BROKER_CONFIG,
        "a reloaded file value is still static"
    );
    assert_eq!(
        described(&broker, RESOURCE_BROKER, &this_broker(), "num.partitions")
            .value
            .as_deref(),
        Some("1"),
        "a read-only setting is not applied by a reload"
    );
    wait_for(&broker, "the restart warning in the log", || {
        log_contains(&broker, "requires a restart")
    });
    assert_eq!(
        described(&broker, RESOURCE_TOPIC, "reloaded", "retention.ms")
            .value
            .as_deref(),
        Some("43200000"),
        "topics without an override follow"
    );
    assert_eq!(
        produce_sized(&broker, "reloaded", 2, 5000),
        vec![error_code::MESSAGE_TOO_LARGE; 2],
        "the reloaded message.max.bytes applies on both shards"
    );

    // A file that no longer parses: logged, nothing changes, the broker keeps serving.
    write_config(&file, "this is = = not toml\n");
    broker.send_signal(libc::SIGHUP);
    wait_for(&broker, "the reload failure in the log", || {
        log_contains(&broker, "configuration reload failed")
    });
    broker.assert_running();
    assert_eq!(
        described(&broker, RESOURCE_BROKER, &this_broker(), "log.retention.ms")
            .value
            .as_deref(),
        Some("43200000")
    );
    assert_eq!(
        produce_sized(&broker, "reloaded", 2, 500),
        vec![0, 0],
        "still serving"
    );
    broker.stop();
}

/// `deploy/vaart.toml` starts a real broker (the listen address and data dir flags win).
#[test]
fn deploy_sample_config_starts_a_broker() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("deploy")
        .join("vaart.toml");
    let mut broker = BrokerOptions::new()
        .config_file(&sample)
        .set("metrics.listen", "none")
        .start();
    let entry = described(&broker, RESOURCE_BROKER, "1", "log.retention.hours");
    assert_eq!(
        (entry.value.as_deref(), entry.source),
        (Some("168"), STATIC_BROKER_CONFIG)
    );
    broker.stop();
}
