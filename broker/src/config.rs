//! Broker configuration: one typed struct, filled in layers.
//!
//! Layers, later wins: built-in defaults < TOML file (`--config`) < `VAART_*` environment
//! variables < command-line flags (`--set NAME=VALUE`, then the dedicated flags such as
//! `--listen`). Every setting has one name; Kafka settings keep Kafka's name and default
//! (`num.partitions`, `log.retention.ms`, ...). A TOML file may write names flat
//! (`"num.partitions" = 3` or `num.partitions = 3`, which TOML reads as nested tables and we
//! flatten back). An environment variable maps by upper-casing and turning `.` into `_`
//! (`VAART_NUM_PARTITIONS`). Unknown names are rejected with an error naming the setting,
//! except in the environment, where unrelated `VAART_*` variables only produce a warning.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::types::NodeId;

/// Where a setting's value came from (reported by DescribeConfigs and the startup log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Built-in default.
    Default,
    /// The TOML file given with `--config`.
    File,
    /// A `VAART_*` environment variable.
    Env,
    /// A command-line flag.
    Flag,
    /// A dynamic cluster-wide default (BROKER resource "", see `dynamic_config`).
    DynamicDefault,
    /// A dynamic per-broker config (BROKER resource = this node id).
    DynamicBroker,
}

impl ConfigSource {
    /// True for the file, environment and flags (Kafka's STATIC_BROKER_CONFIG).
    pub fn is_static(self) -> bool {
        matches!(
            self,
            ConfigSource::File | ConfigSource::Env | ConfigSource::Flag
        )
    }
}

/// Configuration errors, reported before the broker starts.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting name nobody knows.
    #[error("unknown setting `{name}` (from {origin}); see `vaart start --help` and docs for the list of settings")]
    UnknownSetting {
        /// The name as given.
        name: String,
        /// Where it was given.
        origin: &'static str,
    },
    /// A value that does not parse or is out of range.
    #[error("invalid value `{value}` for setting `{name}` (from {origin}): {reason}")]
    InvalidValue {
        /// Setting name.
        name: String,
        /// Value as given.
        value: String,
        /// What was expected.
        reason: &'static str,
        /// Where it was given.
        origin: &'static str,
    },
    /// `--set` argument without `=`.
    #[error("`--set {0}` is not NAME=VALUE")]
    BadSetArgument(String),
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        /// File path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The config file is not valid TOML.
    #[error("config file {path} is not valid TOML: {source}")]
    ParseFile {
        /// File path.
        path: PathBuf,
        /// Cause.
        source: Box<toml::de::Error>,
    },
    /// A TOML value of a type that no setting takes (a date, a float, a nested array).
    #[error("config file {path}: setting `{name}` has an unsupported TOML type (use a string, integer or boolean)")]
    UnsupportedTomlType {
        /// File path.
        path: PathBuf,
        /// Setting name.
        name: String,
    },
}

/// `message.timestamp.type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampTypeSetting {
    /// The producer's timestamp is kept.
    CreateTime,
    /// The broker stamps batches with its clock on append.
    LogAppendTime,
}

impl TimestampTypeSetting {
    /// Parses Kafka's spelling.
    pub fn parse(value: &str) -> Option<TimestampTypeSetting> {
        match value {
            "CreateTime" => Some(TimestampTypeSetting::CreateTime),
            "LogAppendTime" => Some(TimestampTypeSetting::LogAppendTime),
            _ => None,
        }
    }
}

/// A `host:port` pair as configured (host kept as text for advertising).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl HostPort {
    /// Parses `HOST:PORT`, `[V6]:PORT`, or Kafka's `NAME://HOST:PORT` (first of a comma list).
    pub fn parse(value: &str) -> Option<HostPort> {
        let first = value.split(',').next()?.trim();
        let without_scheme = match first.split_once("://") {
            Some((_, rest)) => rest,
            None => first,
        };
        let (host, port) = without_scheme.rsplit_once(':')?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port: u16 = port.parse().ok()?;
        if host.is_empty() {
            return None;
        }
        Some(HostPort {
            host: host.to_string(),
            port,
        })
    }

    /// `host:port` with brackets around IPv6 literals, for `ToSocketAddrs`.
    pub fn to_socket_string(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_socket_string())
    }
}

/// How the broker writes its log lines (`log.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Default `produce.ack.journal.dir`: the tmpfs every Linux system mounts.
pub const DEFAULT_ACK_JOURNAL_DIR: &str = "/dev/shm";
/// Default `produce.ack.journal.bytes` (per shard): 32 MiB.
pub const DEFAULT_ACK_JOURNAL_BYTES: u64 = 32 << 20;

/// The broker's effective configuration. Built once in `main`, then shared read-only
/// (`Arc`) by every shard.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `listen`: address every shard binds (SO_REUSEPORT).
    pub listen: HostPort,
    /// `advertised.listeners`: address clients are told to use; `None` = derived from `listen`.
    pub advertised_listener: Option<HostPort>,
    /// `data.dir` (alias `log.dirs`, `log.dir`): where metadata and partition logs live.
    pub data_dir: PathBuf,
    /// `node.id` (alias `broker.id`).
    pub node_id: NodeId,
    /// `shards`: number of pinned executors.
    pub shards: usize,
    /// `log.level` (Vaart): the tracing filter, e.g. `info` or `info,vaart_engine=debug`;
    /// `RUST_LOG`/`VAART_LOG` in the environment override it.
    pub log_level: String,
    /// `log.format` (Vaart): `text` or `json` lines on stderr; `--log-format` overrides it.
    pub log_format: LogFormat,
    /// `cluster.id`: fixed cluster id; `None` = generate once and persist in the data dir.
    pub cluster_id: Option<String>,
    /// `auto.create.topics.enable`.
    pub auto_create_topics_enable: bool,
    /// `num.partitions`: partitions of auto-created topics and of CreateTopics with -1.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `log.segment.bytes`.
    pub log_segment_bytes: i32,
    /// `log.roll.ms` / `log.roll.hours`, resolved.
    pub log_roll_ms: i64,
    /// `log.retention.ms` / `.minutes` / `.hours`, resolved; -1 = unlimited.
    pub log_retention_ms: i64,
    /// `log.retention.bytes`; -1 = unlimited.
    pub log_retention_bytes: i64,
    /// `log.retention.check.interval.ms`.
    pub log_retention_check_interval_ms: u64,
    /// `log.index.interval.bytes`.
    pub log_index_interval_bytes: i32,
    /// `log.flush.interval.messages`: flush a partition after this many appended messages.
    pub log_flush_interval_messages: i64,
    /// `log.flush.interval.ms`: flush a partition at least this often; `None` = never by time.
    pub log_flush_interval_ms: Option<i64>,
    /// `flush.on.ack.all` (Vaart): fdatasync before answering acks=all.
    pub flush_on_ack_all: bool,
    /// `produce.ack.after.write` (Vaart): acks=1 (and acks=all without `flush.on.ack.all`)
    /// answer once the data is written to the segment file, never from the acknowledgement
    /// journal.
    pub produce_ack_after_write: bool,
    /// `produce.ack.journal.dir` (Vaart): the tmpfs directory of the acknowledgement journal
    /// (empty: no journal).
    pub produce_ack_journal_dir: PathBuf,
    /// `produce.ack.journal.bytes` (Vaart): each shard's journal ring (0: no journal).
    pub produce_ack_journal_bytes: u64,
    /// `log.message.timestamp.type`.
    pub log_message_timestamp_type: TimestampTypeSetting,
    /// `log.cleanup.policy`: `delete`, `compact` or `compact,delete`.
    pub log_cleanup_policy: String,
    /// `log.cleaner.enable`: run log compaction for compacted topics.
    pub log_cleaner_enable: bool,
    /// `log.cleaner.backoff.ms`: pause between the cleaner's passes over a shard's partitions.
    pub log_cleaner_backoff_ms: u64,
    /// `log.cleaner.min.cleanable.ratio`: default `min.cleanable.dirty.ratio`.
    pub log_cleaner_min_cleanable_ratio: f64,
    /// `log.cleaner.delete.retention.ms`: default `delete.retention.ms`.
    pub log_cleaner_delete_retention_ms: i64,
    /// `log.cleaner.min.compaction.lag.ms`: default `min.compaction.lag.ms`.
    pub log_cleaner_min_compaction_lag_ms: i64,
    /// `group.initial.rebalance.delay.ms`: how long a new group's first rebalance waits for
    /// more members.
    pub group_initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`.
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub group_max_session_timeout_ms: i32,
    /// `group.max.size`: members per group.
    pub group_max_size: usize,
    /// `offsets.retention.minutes`: committed offsets of an empty group expire after this.
    pub offsets_retention_minutes: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: u64,
    /// `offset.metadata.max.bytes`: longest metadata string of a committed offset.
    pub offset_metadata_max_bytes: usize,
    /// `message.max.bytes`: largest record batch accepted.
    pub message_max_bytes: i32,
    /// `socket.request.max.bytes`: largest request frame; larger ones close the connection.
    pub socket_request_max_bytes: i32,
    /// `fetch.max.bytes`: cap on one fetch response's record bytes.
    pub fetch_max_bytes: i32,
    /// `min.insync.replicas`.
    pub min_insync_replicas: i32,
    /// `offsets.topic.num.partitions` (for `__consumer_offsets`, used by the group coordinator).
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor`.
    pub offsets_topic_replication_factor: i16,
    /// `connection.inflight.max.bytes` (Vaart): request bytes one connection may have in flight.
    pub connection_inflight_max_bytes: u64,
    /// `log.hot.tail.bytes` (Vaart): recently written data kept in memory per partition for
    /// zero-copy reads.
    pub log_hot_tail_bytes: usize,
    /// `log.hot.tail.shard.bytes` (Vaart): the most hot-tail memory one shard spends over all
    /// its partitions; each partition gets an equal share, capped by `log.hot.tail.bytes`.
    pub log_hot_tail_shard_bytes: usize,
    /// `log.write.linger.us` (Vaart): how long a partition's small disk write (under half a
    /// 1 MiB group-commit write) waits for more data; 0 = write at once.
    pub log_write_linger_us: u64,
    /// `shard.io.memory.bytes` (Vaart): glommio `io_memory` per shard (RUNTIME-NOTES pitfall 4).
    pub shard_io_memory_bytes: usize,
    /// `shard.spin.before.park.us` (Vaart): glommio spin before parking; 0 = off.
    pub shard_spin_before_park_us: u64,
    /// `connections.max.idle.ms`: close connections with no request and no traffic for this
    /// long; -1 = never.
    pub connections_max_idle_ms: i64,
    /// `max.connections`: connections the broker serves at once; enforced per shard as an
    /// equal share (`ceil(max.connections / shards)`), new ones wait in the accept queue.
    pub max_connections: i32,
    /// `producer.id.expiration.ms`: a partition forgets an idempotent producer that has not
    /// produced to it for this long.
    pub producer_id_expiration_ms: i64,
    /// `metrics.listen` (Vaart): HOST:PORT of the Prometheus `/metrics` endpoint (served by
    /// shard 0); `None` = disabled (`none` or empty).
    pub metrics_listen: Option<HostPort>,
    /// Every setting that was given explicitly, with its raw value and source.
    pub explicit: BTreeMap<&'static str, (String, ConfigSource)>,
    /// Raw retention/roll values, resolved into `log_retention_ms`/`log_roll_ms` by `load`.
    time_parts: TimeParts,
}

type ApplyFn = fn(&mut BrokerConfig, &str) -> Result<(), &'static str>;

/// One known setting.
pub struct SettingDef {
    /// Canonical (Kafka) name.
    pub name: &'static str,
    /// Other accepted names.
    pub aliases: &'static [&'static str],
    /// Default as text (what DescribeConfigs reports); `None` = no value (null).
    pub default: Option<&'static str>,
    /// One-line documentation.
    pub doc: &'static str,
    apply: ApplyFn,
}

fn parse_bool(value: &str) -> Result<bool, &'static str> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false"),
    }
}

fn parse_int<T: std::str::FromStr>(value: &str) -> Result<T, &'static str> {
    value.trim().parse::<T>().map_err(|_| "expected an integer")
}

fn parse_at_least<T: std::str::FromStr + PartialOrd>(
    value: &str,
    min: T,
    reason: &'static str,
) -> Result<T, &'static str> {
    let parsed = parse_int::<T>(value)?;
    if parsed < min {
        return Err(reason);
    }
    Ok(parsed)
}

/// Raw retention/roll values, resolved in precedence order (ms > minutes > hours) at the end.
#[derive(Debug, Clone, Copy, Default)]
struct TimeParts {
    retention_ms: Option<i64>,
    retention_minutes: Option<i64>,
    retention_hours: Option<i64>,
    roll_ms: Option<i64>,
    roll_hours: Option<i64>,
}

/// All settings, in the order DescribeConfigs lists them.
pub static SETTINGS: &[SettingDef] = &[
    SettingDef {
        name: "listen",
        aliases: &["listeners"],
        default: Some("127.0.0.1:9092"),
        doc: "HOST:PORT every shard listens on (SO_REUSEPORT).",
        apply: |c, v| {
            c.listen = HostPort::parse(v).ok_or("expected HOST:PORT")?;
            Ok(())
        },
    },
    SettingDef {
        name: "advertised.listeners",
        aliases: &[],
        default: None,
        doc: "HOST:PORT (or PLAINTEXT://HOST:PORT) clients are told to connect to; defaults to `listen`.",
        apply: |c, v| {
            c.advertised_listener = Some(HostPort::parse(v).ok_or("expected HOST:PORT")?);
            Ok(())
        },
    },
    SettingDef {
        name: "data.dir",
        aliases: &["log.dirs", "log.dir"],
        default: Some("./vaart-data"),
        doc: "Directory for metadata and partition logs.",
        apply: |c, v| {
            if v.trim().is_empty() {
                return Err("expected a directory path");
            }
            // Kafka's log.dirs is a list; one data directory per broker for now.
            let first = v.split(',').next().unwrap_or(v).trim();
            c.data_dir = PathBuf::from(first);
            Ok(())
        },
    },
    SettingDef {
        name: "node.id",
        aliases: &["broker.id"],
        default: Some("1"),
        doc: "This broker's node id.",
        apply: |c, v| {
            c.node_id = NodeId(parse_at_least(v, 0, "node.id must be >= 0")?);
            Ok(())
        },
    },
    SettingDef {
        name: "log.level",
        aliases: &[],
        default: Some("info"),
        doc: "Log filter (tracing EnvFilter syntax, e.g. info or info,vaart_engine=debug); RUST_LOG or VAART_LOG override it.",
        apply: |c, v| {
            let level = v.trim();
            if level.is_empty() {
                return Err("expected a log filter such as info or warn,vaart_broker=debug");
            }
            c.log_level = level.to_string();
            Ok(())
        },
    },
    SettingDef {
        name: "log.format",
        aliases: &[],
        default: Some("text"),
        doc: "Log lines on stderr: text (human-readable) or json (one object per line).",
        apply: |c, v| {
            c.log_format = match v.trim() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err("expected text or json"),
            };
            Ok(())
        },
    },
    SettingDef {
        name: "shards",
        aliases: &[],
        default: None,
        doc: "Number of shards (pinned executors); defaults to the number of CPUs.",
        apply: |c, v| {
            let shards: usize = parse_at_least(v, 1, "shards must be >= 1")?;
            if shards > 1024 {
                return Err("shards must be <= 1024");
            }
            c.shards = shards;
            Ok(())
        },
    },
    SettingDef {
        name: "cluster.id",
        aliases: &[],
        default: None,
        doc: "Cluster id; generated once and stored in the data dir when not set.",
        apply: |c, v| {
            if v.trim().is_empty() {
                return Err("expected a non-empty id");
            }
            c.cluster_id = Some(v.trim().to_string());
            Ok(())
        },
    },
    SettingDef {
        name: "auto.create.topics.enable",
        aliases: &[],
        default: Some("true"),
        doc: "Create unknown topics on Metadata and Produce requests.",
        apply: |c, v| {
            c.auto_create_topics_enable = parse_bool(v)?;
            Ok(())
        },
    },
    SettingDef {
        name: "num.partitions",
        aliases: &[],
        default: Some("1"),
        doc: "Partitions of auto-created topics.",
        apply: |c, v| {
            c.num_partitions = parse_at_least(v, 1, "num.partitions must be >= 1")?;
            Ok(())
        },
    },
    SettingDef {
        name: "default.replication.factor",
        aliases: &[],
        default: Some("1"),
        doc: "Replication factor of auto-created topics.",
        apply: |c, v| {
            c.default_replication_factor = parse_at_least(v, 1, "must be >= 1")?;
            Ok(())
        },
    },
    SettingDef {
        name: "log.segment.bytes",
        aliases: &[],
        default: Some("1073741824"),
        doc: "Segment size at which a partition log rolls.",
        apply: |c, v| {
            c.log_segment_bytes = parse_at_least(v, 14, "log.segment.bytes must be >= 14")?;
            Ok(())
        },
    },
    SettingDef {
        name: "log.roll.ms",
        aliases: &[],
        default: None,
        doc: "Segment age at which a partition log rolls (overrides log.roll.hours).",
        apply: |c, v| {
            let ms: i64 = parse_at_least(v, 1, "must be >= 1")?;
            c.time_parts.roll_ms = Some(ms);
            Ok(())
        },
    },
    SettingDef {
        name: "log.roll.hours",
        aliases: &[],
        default: Some("168"),
        doc: "Segment age in hours at which a partition log rolls.",
        apply: |c, v| {
            let hours: i64 = parse_at_least(v, 1, "must be >= 1")?;
            c.time_parts.roll_hours = Some(hours);
            Ok(())
        },
    },
    SettingDef {
        name: "log.retention.ms",
        aliases: &[],
        default: None,
        doc: "Delete segments older than this (-1 = keep forever); overrides minutes/hours.",
        apply: |c, v| {
            let ms: i64 = parse_at_least(v, -1, "must be >= -1")?;
            c.time_parts.retention_ms = Some(ms);
            Ok(())
        },
    },
    SettingDef {
        name: "log.retention.minutes",
        aliases: &[],
        default: None,
        doc: "Retention in minutes; overrides log.retention.hours.",
        apply: |c, v| {
            let minutes: i64 = parse_at_least(v, -1, "must be >= -1")?;
            c.time_parts.retention_minutes = Some(minutes);
            Ok(())
        },
    },
    SettingDef {
        name: "log.retention.hours",
        aliases: &[],
        default: Some("168"),
        doc: "Retention in hours.",
        apply: |c, v| {
            let hours: i64 = parse_at_least(v, -1, "must be >= -1")?;
            c.time_parts.retention_hours = Some(hours);
            Ok(())
        },
    },
    SettingDef {
        name: "log.retention.bytes",
        aliases: &[],
        default: Some("-1"),
        doc: "Delete old segments beyond this partition size (-1 = unlimited).",
        apply: |c, v| {
            c.log_retention_bytes = parse_at_least(v, -1, "must be >= -1")?;
            Ok(())
        },
    },
    SettingDef {
        name: "log.retention.check.interval.ms",
        aliases: &[],
        default: Some("300000"),
        doc: "How often each shard applies retention.",
        apply: |c, v| {
            c.log_retention_check_interval_ms = parse_at_least(v, 1, "must be >= 1")?;
            Ok(())
        },
    },
    SettingDef {
        name: "log.index.interval.bytes",
        aliases: &[],
        default: Some("4096"),
        doc: "Bytes between sparse offset-index entries.",
        apply: |c, v| {
            c.log_index_interval_bytes = parse_at_least(v, 0, "must be >= 0")?;
            Ok(())
        },
    },
    SettingDef {
        name: "log.flush.interval.messages",
        aliases: &[],
        default: Some("9223372036854775807"),
        doc: "fdatasync a partition after this many appended messages.",
        apply: |c, v| {
            c.log_flush_interval_messages = parse_at_least(v, 1, "must be >= 1")?;
            Ok(())
        },
    },
    SettingDef {
        name: "log.flush.interval.ms",
        aliases: &[],
        default: None,
        doc: "fdatasync a partition at least this often (unset = only by the other rules).",
        apply: |c, v| {
            c.log_flush_interval_ms = Some(parse_at_least(v, 0, "must be >= 0")?);
            Ok(())
        },
    },
    SettingDef {
        name: "flush.on.ack.all",
        aliases: &[],
        default: Some("true"),
        doc: "fdatasync before answering a produce with acks=all.",
        apply: |c, v| {
            c.flush_on_ack_all = parse_bool(v)?;
            Ok(())
        },
    },
    SettingDef {
        name: "produce.ack.after.write",
        aliases: &[],
        default: Some("false"),
        doc: "Answer acks=1 (and acks=all without flush.on.ack.all) only once the data is written to the segment file, never from the acknowledgement journal. Costs about one disk write of latency per produce.",
        apply: |c, v| {
            c.produce_ack_after_write = parse_bool(v)?;
            Ok(())
        },
    },
    SettingDef {
        name: "produce.ack.journal.dir",
        aliases: &[],
        default: Some(DEFAULT_ACK_JOURNAL_DIR),
        doc: "tmpfs directory for the acknowledgement journal: acks=1 (and acks=all without flush.on.ack.all) is answered once the batch is copied there, and a restart after the process was killed appends what the segment files lack. Empty: no journal, answers wait for the disk write.",
        apply: |c, v| {
            c.produce_ack_journal_dir = PathBuf::from(v.trim());
            Ok(())
        },
    },
    SettingDef {
        name: "produce.ack.journal.bytes",
        aliases: &[],
        default: Some("33554432"),
        doc: "Size of each shard's acknowledgement journal (allocated in produce.ack.journal.dir at start). A batch that finds it full is answered after its disk write instead. 0: no journal.",
        apply: |c, v| {
            c.produce_ack_journal_bytes = parse_at_least(v, 0, "must be >= 0")?;
            Ok(())
        },
    },
    SettingDef {
        name: "log.message.timestamp.type",
        aliases: &[],
        default: Some("CreateTime"),
        doc: "CreateTime or LogAppendTime.",
        apply: |c, v| {
            c.log_message_timestamp_type =
                TimestampTypeSetting::parse(v.trim()).ok_or("expected CreateTime or LogAppendTime")?;
            Ok(())
        },
    },
    SettingDef {
        name: "log.cleanup.policy",
        aliases: &[],
        default: Some("delete"),
        doc: "Default cleanup policy: delete, compact or compact,delete.",
        apply: |c, v| {
            crate::metadata::topic_config::validate_cleanup_policy(v)?;
            c.log_cleanup_policy = v.trim().to_string();
            Ok(())
        },
    },
    SettingDef {
        name: "log.cleaner.enable",
        aliases: &[],
        default: Some("true"),
        doc: "Run log compaction for topics with cleanup.policy=compact.",
        apply: |c, v| {
            c.log_cleaner_enable = parse_bool(v)?;
            Ok(())
        },
    },
    SettingDef {
        name: "log.cleaner.backoff.ms",
        aliases: &[],
        default: Some("15000"),
        doc: "Pause between log cleaner passes.",
        apply: |c, v| {
            c.log_cleaner_backoff_ms = parse_at_least(v, 1, "must be >= 1")?;
            Ok(())
        },
    },
    SettingDef {
        name: "log.cleaner.min.cleanable.ratio",
        aliases: &[],
        default: Some("0.5"),
        doc: "Default min.cleanable.dirty.ratio of compacted topics.",
        apply: |c, v| {
            let ratio: f64 = v.trim().parse().map_err(|_| "expected a number")?;
            if !(0.0..=1.0).contains(&ratio) {
                return Err("must be between 0 and 1");
            }
            c.log_cleaner_min_cleanable_ratio = ratio;
            Ok(())
        },
    },
    SettingDef {
        name: "log.cleaner.delete.retention.ms",
        aliases: &[],
        default: Some("86400000"),
        doc: "Default delete.retention.ms (how long tombstones stay in compacted topics).",
        apply: |c, v| {
            c.log_cleaner_delete_retention_ms = parse_at_least(v, 0, "must be >= 0")?;
            Ok(())
        },
    },
    SettingDef {
        name: "log.cleaner.min.compaction.lag.ms",
        aliases: &[],
        default: Some("0"),
        doc: "Default min.compaction.lag.ms.",
        apply: |c, v| {
            c.log_cleaner_min_compaction_lag_ms = parse_at_least(v, 0, "must be >= 0")?;
            Ok(())
        },
    },
    SettingDef {
        name: "group.initial.rebalance.delay.ms",
        aliases: &[],
        default: Some("3000"),
        doc: "How long a new group's first rebalance waits for more members to join.",
        apply: |c, v| {
            c.group_initial_rebalance_delay_ms = parse_at_least(v, 0, "must be >= 0")?;
            Ok(())
        },
    },
    SettingDef {
        name: "group.min.session.timeout.ms",
        aliases: &[],
        default: Some("6000"),
        doc: "Smallest session timeout a group member may ask for.",
        apply: |c, v| {
            c.group_min_session_timeout_ms = parse_at_least(v, 1, "must be >= 1")?;
            Ok(())
        },
    },
    SettingDef {
        name: "group.max.session.timeout.ms",
        aliases: &[],
        default: Some("1800000"),
        doc: "Largest session timeout a group member may ask for.",
        apply: |c, v| {
            c.group_max_session_timeout_ms = parse_at_least(v, 1, "must be >= 1")?;
            Ok(())
        },
    },
    SettingDef {
        name: "group.max.size",
        aliases: &[],
        default: Some("2147483647"),
        doc: "Most members in one consumer group.",
        apply: |c, v| {
            c.group_max_size = parse_at_least(v, 1, "must be >= 1")?;
            Ok(())
        },
    },
    SettingDef {
        name: "offsets.retention.minutes",
        aliases: &[],
        default: Some("10080"),
        doc: "Committed offsets of a group that has been empty this long are deleted.",
        apply: |c, v| {
            c.offsets_retention_minutes = parse_at_least(v, 1, "must be >= 1")?;
            Ok(())
        },
    },
    SettingDef {
        name: "offsets.retention.check.interval.ms",
        aliases: &[],
        default: Some("600000"),
        doc: "How often expired committed offsets are looked for.",
        apply: |c, v| {
            c.offsets_retention_check_interval_ms = parse_at_least(v, 1, "must be >= 1")?;
            Ok(())
        },
    },
    SettingDef {
        name: "offset.metadata.max.bytes",
        aliases: &[],
        default: Some("4096"),
        doc: "Longest metadata string accepted with a committed offset.",
        apply: |c, v| {
            c.offset_metadata_max_bytes = parse_at_least(v, 0, "must be >= 0")?;
            Ok(())
        },
    },
    SettingDef {
        name: "message.max.bytes",
        aliases: &[],
        default: Some("1048588"),
        doc: "Largest record batch the broker accepts.",
        apply: |c, v| {
            c.message_max_bytes = parse_at_least(v, 0, "must be >= 0")?;
            Ok(())
        },
    },
    SettingDef {
        name: "socket.request.max.bytes",
        aliases: &[],
        default: Some("104857600"),
        doc: "Largest request frame; larger ones close the connection.",
        apply: |c, v| {
            c.socket_request_max_bytes = parse_at_least(v, 1, "must be >= 1")?;
            Ok(())
        },
    },
    SettingDef {
        name: "fetch.max.bytes",
        aliases: &[],
        default: Some("57671680"),
        doc: "Largest record data returned by one fetch.",
        apply: |c, v| {
            c.fetch_max_bytes = parse_at_least(v, 0, "must be >= 0")?;
            Ok(())
        },
    },
    SettingDef {
        name: "min.insync.replicas",
        aliases: &[],
        default: Some("1"),
        doc: "Minimum in-sync replicas for acks=all.",
        apply: |c, v| {
            c.min_insync_replicas = parse_at_least(v, 1, "must be >= 1")?;
            Ok(())
        },
    },
    SettingDef {
        name: "offsets.topic.num.partitions",
        aliases: &[],
        default: Some("50"),
        doc: "Partitions of __consumer_offsets.",
        apply: |c, v| {
            c.offsets_topic_num_partitions = parse_at_least(v, 1, "must be >= 1")?;
            Ok(())
        },
    },
    SettingDef {
        name: "offsets.topic.replication.factor",
        aliases: &[],
        default: Some("3"),
        doc: "Replication factor of __consumer_offsets (capped at the broker count).",
        apply: |c, v| {
            c.offsets_topic_replication_factor = parse_at_least(v, 1, "must be >= 1")?;
            Ok(())
        },
    },
    SettingDef {
        name: "connection.inflight.max.bytes",
        aliases: &[],
        default: Some("16777216"),
        doc: "Request bytes one connection may have in flight before the broker stops reading it.",
        apply: |c, v| {
            c.connection_inflight_max_bytes = parse_at_least(v, 1, "must be >= 1")?;
            Ok(())
        },
    },
    SettingDef {
        name: "log.hot.tail.bytes",
        aliases: &[],
        default: Some("8388608"),
        doc: "Recently written bytes each partition keeps in memory so consumers read them without disk I/O.",
        apply: |c, v| {
            c.log_hot_tail_bytes = parse_at_least(v, 0, "must be >= 0")?;
            Ok(())
        },
    },
    SettingDef {
        name: "log.write.linger.us",
        aliases: &[],
        default: Some("2000"),
        doc: "Microseconds a partition's small disk write (under 512 KiB) waits for more data before it is issued; 0 = at once. Acknowledgements (acks=0/1) never wait for it; flushes and acks=all do not wait either.",
        apply: |c, v| {
            c.log_write_linger_us = parse_at_least(v, 0, "must be >= 0")?;
            Ok(())
        },
    },
    SettingDef {
        name: "log.hot.tail.shard.bytes",
        aliases: &[],
        default: Some("536870912"),
        doc: "Hot-tail memory one shard spends over all its partitions (each gets an equal share, at most log.hot.tail.bytes).",
        apply: |c, v| {
            c.log_hot_tail_shard_bytes = parse_at_least(v, 0, "must be >= 0")?;
            Ok(())
        },
    },
    SettingDef {
        name: "shard.io.memory.bytes",
        aliases: &[],
        default: Some("10485760"),
        doc: "glommio io_memory per shard (registered with io_uring; needs RLIMIT_MEMLOCK).",
        apply: |c, v| {
            c.shard_io_memory_bytes = parse_at_least(v, 65536, "must be >= 65536")?;
            Ok(())
        },
    },
    SettingDef {
        name: "shard.spin.before.park.us",
        aliases: &[],
        default: Some("0"),
        doc: "Microseconds a shard spins before sleeping (lower cross-shard latency, more CPU).",
        apply: |c, v| {
            c.shard_spin_before_park_us = parse_at_least(v, 0, "must be >= 0")?;
            Ok(())
        },
    },
    SettingDef {
        name: "connections.max.idle.ms",
        aliases: &[],
        default: Some("600000"),
        doc: "Close connections idle (no request in progress, no bytes either way) for this long; -1 = never.",
        apply: |c, v| {
            c.connections_max_idle_ms = parse_at_least(v, -1, "must be >= -1")?;
            Ok(())
        },
    },
    SettingDef {
        name: "max.connections",
        aliases: &[],
        default: Some("2147483647"),
        doc: "Connections served at once (split evenly over the shards); more wait to be accepted.",
        apply: |c, v| {
            c.max_connections = parse_at_least(v, 1, "must be >= 1")?;
            Ok(())
        },
    },
    SettingDef {
        name: "producer.id.expiration.ms",
        aliases: &[],
        default: Some("86400000"),
        doc: "A partition forgets an idempotent producer that has not produced to it for this long.",
        apply: |c, v| {
            c.producer_id_expiration_ms = parse_at_least(v, 1, "must be >= 1")?;
            Ok(())
        },
    },
    SettingDef {
        name: "metrics.listen",
        aliases: &[],
        default: Some("0.0.0.0:9644"),
        doc: "HOST:PORT of the Prometheus /metrics endpoint (HTTP, served by shard 0); `none` or empty disables it.",
        apply: |c, v| {
            let v = v.trim();
            c.metrics_listen = if v.is_empty() || v.eq_ignore_ascii_case("none") {
                None
            } else {
                Some(HostPort::parse(v).ok_or("expected HOST:PORT or none")?)
            };
            Ok(())
        },
    },
];

/// Finds a setting by its name or an alias.
pub fn find_setting(name: &str) -> Option<&'static SettingDef> {
    SETTINGS
        .iter()
        .find(|def| def.name == name || def.aliases.contains(&name))
}

/// Environment variables with the `VAART_` prefix that are not settings.
const NON_SETTING_ENV: &[&str] = &["VAART_CONFIG", "VAART_LOG", "VAART_LOG_FORMAT"];

/// Inputs for [`BrokerConfig::load`], in layer order.
#[derive(Debug, Default, Clone)]
pub struct ConfigInputs {
    /// `--config FILE`.
    pub file: Option<PathBuf>,
    /// The process environment (all variables; non-`VAART_` ones are ignored).
    pub env: Vec<(String, String)>,
    /// `--set NAME=VALUE` arguments, in order.
    pub set_flags: Vec<String>,
    /// Dedicated flags as (setting name, value), applied last.
    pub dedicated_flags: Vec<(&'static str, String)>,
}

impl BrokerConfig {
    /// Built-in defaults only.
    pub fn defaults() -> BrokerConfig {
        BrokerConfig {
            listen: HostPort {
                host: "127.0.0.1".to_string(),
                port: 9092,
            },
            advertised_listener: None,
            data_dir: PathBuf::from("./vaart-data"),
            node_id: NodeId(1),
            shards: default_shard_count(),
            log_level: "info".to_string(),
            log_format: LogFormat::Text,
            cluster_id: None,
            auto_create_topics_enable: true,
            num_partitions: 1,
            default_replication_factor: 1,
            log_segment_bytes: 1_073_741_824,
            log_roll_ms: 168 * 3_600_000,
            log_retention_ms: 168 * 3_600_000,
            log_retention_bytes: -1,
            log_retention_check_interval_ms: 300_000,
            log_index_interval_bytes: 4096,
            log_flush_interval_messages: i64::MAX,
            log_flush_interval_ms: None,
            flush_on_ack_all: true,
            produce_ack_after_write: false,
            produce_ack_journal_dir: PathBuf::from(DEFAULT_ACK_JOURNAL_DIR),
            produce_ack_journal_bytes: DEFAULT_ACK_JOURNAL_BYTES,
            log_message_timestamp_type: TimestampTypeSetting::CreateTime,
            log_cleanup_policy: "delete".to_string(),
            log_cleaner_enable: true,
            log_cleaner_backoff_ms: 15_000,
            log_cleaner_min_cleanable_ratio: 0.5,
            log_cleaner_delete_retention_ms: 86_400_000,
            log_cleaner_min_compaction_lag_ms: 0,
            group_initial_rebalance_delay_ms: 3_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_max_size: i32::MAX as usize,
            offsets_retention_minutes: 10_080,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            message_max_bytes: 1_048_588,
            socket_request_max_bytes: 104_857_600,
            fetch_max_bytes: 57_671_680,
            min_insync_replicas: 1,
            offsets_topic_num_partitions: 50,
            offsets_topic_replication_factor: 3,
            connection_inflight_max_bytes: 16 * 1024 * 1024,
            log_hot_tail_bytes: 8 * 1024 * 1024,
            log_hot_tail_shard_bytes: 512 * 1024 * 1024,
            log_write_linger_us: vaart_engine::DEFAULT_WRITE_LINGER_US,
            shard_io_memory_bytes: 10 * 1024 * 1024,
            shard_spin_before_park_us: 0,
            connections_max_idle_ms: 600_000,
            max_connections: i32::MAX,
            producer_id_expiration_ms: 86_400_000,
            metrics_listen: Some(HostPort {
                host: "0.0.0.0".to_string(),
                port: 9644,
            }),
            explicit: BTreeMap::new(),
            time_parts: TimeParts::default(),
        }
    }

    /// Builds the configuration from all layers. Returns warnings (e.g. unknown `VAART_*`
    /// variables) for the caller to log once logging is set up.
    pub fn load(inputs: &ConfigInputs) -> Result<(BrokerConfig, Vec<String>), ConfigError> {
        let mut config = BrokerConfig::defaults();
        let mut warnings = Vec::new();

        if let Some(path) = &inputs.file {
            for (name, value) in read_toml_settings(path)? {
                config.apply(&name, &value, ConfigSource::File, "config file")?;
            }
        }

        let mut env: Vec<&(String, String)> = inputs
            .env
            .iter()
            .filter(|(key, _)| key.starts_with("VAART_"))
            .filter(|(key, _)| !NON_SETTING_ENV.contains(&key.as_str()))
            .collect();
        env.sort();
        for (key, value) in env {
            let name = env_key_to_setting(key);
            if find_setting(&name).is_none() {
                warnings.push(format!(
                    "ignoring environment variable {key}: no setting named `{name}`"
                ));
                continue;
            }
            config.apply(&name, value, ConfigSource::Env, "environment")?;
        }

        for arg in &inputs.set_flags {
            let (name, value) = arg
                .split_once('=')
                .ok_or_else(|| ConfigError::BadSetArgument(arg.clone()))?;
            config.apply(name.trim(), value, ConfigSource::Flag, "--set")?;
        }
        for (name, value) in &inputs.dedicated_flags {
            config.apply(name, value, ConfigSource::Flag, "command line")?;
        }

        config.resolve_times();
        Ok((config, warnings))
    }

    /// Resolves `log.retention.{ms,minutes,hours}` and `log.roll.{ms,hours}` into one value each.
    fn resolve_times(&mut self) {
        let parts = self.time_parts;
        self.log_retention_ms = resolve_retention_ms(&parts);
        self.log_roll_ms = parts
            .roll_ms
            .or_else(|| parts.roll_hours.map(|h| h.saturating_mul(3_600_000)))
            .unwrap_or(168 * 3_600_000);
    }

    /// Applies one setting by name.
    pub fn apply(
        &mut self,
        name: &str,
        value: &str,
        source: ConfigSource,
        origin: &'static str,
    ) -> Result<(), ConfigError> {
        let def = find_setting(name).ok_or_else(|| ConfigError::UnknownSetting {
            name: name.to_string(),
            origin,
        })?;
        (def.apply)(self, value).map_err(|reason| ConfigError::InvalidValue {
            name: name.to_string(),
            value: value.to_string(),
            reason,
            origin,
        })?;
        self.explicit
            .insert(def.name, (value.trim().to_string(), source));
        self.resolve_times();
        Ok(())
    }

    /// The address to advertise in Metadata and DescribeCluster.
    pub fn advertised(&self) -> HostPort {
        if let Some(advertised) = &self.advertised_listener {
            return advertised.clone();
        }
        let host = match self.listen.host.as_str() {
            // A wildcard address cannot be dialled; advertise this machine's name instead,
            // as Kafka does for an empty listener host.
            "0.0.0.0" | "::" => local_hostname().unwrap_or_else(|| "localhost".to_string()),
            other => other.to_string(),
        };
        HostPort {
            host,
            port: self.listen.port,
        }
    }

    /// Every setting with its effective value text and source, for DescribeConfigs.
    pub fn describe(&self) -> Vec<(&'static SettingDef, Option<String>, ConfigSource)> {
        SETTINGS
            .iter()
            .map(|def| match self.explicit.get(def.name) {
                Some((value, source)) => (def, Some(value.clone()), *source),
                None => {
                    let value = match def.name {
                        "shards" => Some(self.shards.to_string()),
                        _ => def.default.map(str::to_string),
                    };
                    (def, value, ConfigSource::Default)
                }
            })
            .collect()
    }
}

fn resolve_retention_ms(parts: &TimeParts) -> i64 {
    if let Some(ms) = parts.retention_ms {
        return ms;
    }
    if let Some(minutes) = parts.retention_minutes {
        return if minutes < 0 {
            -1
        } else {
            minutes.saturating_mul(60_000)
        };
    }
    let hours = parts.retention_hours.unwrap_or(168);
    if hours < 0 {
        -1
    } else {
        hours.saturating_mul(3_600_000)
    }
}

/// `VAART_LOG_RETENTION_MS` -> `log.retention.ms`.
pub fn env_key_to_setting(key: &str) -> String {
    key.trim_start_matches("VAART_")
        .to_ascii_lowercase()
        .replace('_', ".")
}

/// Number of CPUs this process may run on.
pub fn default_shard_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn local_hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for `buf.len()` bytes; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0)?;
    let name = std::str::from_utf8(buf.get(..end)?).ok()?;
    (!name.is_empty()).then(|| name.to_string())
}

/// Reads a TOML file into flat `(dotted.name, value text)` pairs.
fn read_toml_settings(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    parse_toml_settings(&text, path)
}

fn parse_toml_settings(text: &str, path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let table: toml::Table = text.parse().map_err(|source| ConfigError::ParseFile {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    let mut out = Vec::new();
    flatten_toml("", &toml::Value::Table(table), path, &mut out)?;
    Ok(out)
}

fn flatten_toml(
    prefix: &str,
    value: &toml::Value,
    path: &Path,
    out: &mut Vec<(String, String)>,
) -> Result<(), ConfigError> {
    let scalar = |v: &toml::Value| -> Option<String> {
        match v {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        }
    };
    match value {
        toml::Value::Table(table) => {
            for (key, inner) in table {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten_toml(&name, inner, path, out)?;
            }
            Ok(())
        }
        toml::Value::Array(items) => {
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                parts.push(
                    scalar(item).ok_or_else(|| ConfigError::UnsupportedTomlType {
                        path: path.to_path_buf(),
                        name: prefix.to_string(),
                    })?,
                );
            }
            out.push((prefix.to_string(), parts.join(",")));
            Ok(())
        }
        other => {
            let text = scalar(other).ok_or_else(|| ConfigError::UnsupportedTomlType {
                path: path.to_path_buf(),
                name: prefix.to_string(),
            })?;
            out.push((prefix.to_string(), text));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(inputs: ConfigInputs) -> BrokerConfig {
        BrokerConfig::load(&inputs).expect("config loads").0
    }

    #[test]
    fn defaults_are_kafkas() {
        let c = load(ConfigInputs::default());
        assert_eq!(c.listen.to_string(), "127.0.0.1:9092");
        assert_eq!(c.data_dir, PathBuf::from("./vaart-data"));
        assert_eq!(c.node_id, NodeId(1));
        assert_eq!(c.shards, default_shard_count());
        assert!(c.auto_create_topics_enable);
        assert_eq!(c.num_partitions, 1);
        assert_eq!(c.log_segment_bytes, 1_073_741_824);
        assert_eq!(c.log_retention_ms, 604_800_000);
        assert_eq!(c.log_retention_bytes, -1);
        assert_eq!(c.message_max_bytes, 1_048_588);
        assert_eq!(c.socket_request_max_bytes, 104_857_600);
        assert_eq!(c.offsets_topic_num_partitions, 50);
        assert!(c.explicit.is_empty());
    }

    #[test]
    fn layers_apply_in_order_file_env_set_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("vaart.toml");
        std::fs::write(
            &file,
            "num.partitions = 2\n\"log.retention.ms\" = 1000\nnode.id = 5\nshards = 3\n\
             [log.segment]\nbytes = 4096\n",
        )
        .expect("write");
        let c = load(ConfigInputs {
            file: Some(file),
            env: vec![
                ("VAART_NUM_PARTITIONS".into(), "4".into()),
                ("VAART_NODE_ID".into(), "6".into()),
                ("PATH".into(), "/bin".into()),
            ],
            set_flags: vec!["num.partitions=7".into(), "node.id=8".into()],
            dedicated_flags: vec![("node.id", "9".into())],
        });
        assert_eq!(c.num_partitions, 7, "--set beats env beats file");
        assert_eq!(c.node_id, NodeId(9), "dedicated flag beats --set");
        assert_eq!(
            c.log_retention_ms, 1000,
            "file value kept when not overridden"
        );
        assert_eq!(c.log_segment_bytes, 4096, "nested TOML tables flatten");
        assert_eq!(c.shards, 3);
        assert_eq!(
            c.explicit.get("num.partitions"),
            Some(&("7".to_string(), ConfigSource::Flag))
        );
        assert_eq!(
            c.explicit.get("log.retention.ms"),
            Some(&("1000".to_string(), ConfigSource::File))
        );
    }

    #[test]
    fn log_level_and_format_come_from_the_settings() {
        let c = load(ConfigInputs::default());
        assert_eq!(c.log_level, "info");
        assert_eq!(c.log_format, LogFormat::Text);
        let c = load(ConfigInputs {
            env: vec![("VAART_LOG_LEVEL".into(), "warn,vaart_engine=debug".into())],
            set_flags: vec!["log.format=json".into()],
            ..ConfigInputs::default()
        });
        assert_eq!(c.log_level, "warn,vaart_engine=debug");
        assert_eq!(c.log_format, LogFormat::Json);
        let err = BrokerConfig::load(&ConfigInputs {
            set_flags: vec!["log.format=xml".into()],
            ..ConfigInputs::default()
        });
        assert!(err.is_err());
    }

    #[test]
    fn env_overrides_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("vaart.toml");
        std::fs::write(&file, "auto.create.topics.enable = true\n").expect("write");
        let c = load(ConfigInputs {
            file: Some(file),
            env: vec![("VAART_AUTO_CREATE_TOPICS_ENABLE".into(), "false".into())],
            ..ConfigInputs::default()
        });
        assert!(!c.auto_create_topics_enable);
    }

    #[test]
    fn unknown_names_are_rejected_except_env() {
        let err = BrokerConfig::load(&ConfigInputs {
            set_flags: vec!["no.such.setting=1".into()],
            ..ConfigInputs::default()
        })
        .expect_err("unknown --set");
        assert!(err.to_string().contains("no.such.setting"), "{err}");

        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("vaart.toml");
        std::fs::write(&file, "bogus = 1\n").expect("write");
        let err = BrokerConfig::load(&ConfigInputs {
            file: Some(file),
            ..ConfigInputs::default()
        })
        .expect_err("unknown file key");
        assert!(err.to_string().contains("bogus"), "{err}");

        let (_, warnings) = BrokerConfig::load(&ConfigInputs {
            env: vec![("VAART_BIN".into(), "/x".into())],
            ..ConfigInputs::default()
        })
        .expect("unknown env only warns");
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn invalid_values_are_rejected_with_reason() {
        let err = BrokerConfig::load(&ConfigInputs {
            set_flags: vec!["num.partitions=0".into()],
            ..ConfigInputs::default()
        })
        .expect_err("zero partitions");
        assert!(err.to_string().contains("num.partitions"), "{err}");
        assert!(BrokerConfig::load(&ConfigInputs {
            dedicated_flags: vec![("listen", "nonsense".into())],
            ..ConfigInputs::default()
        })
        .is_err());
        assert!(BrokerConfig::load(&ConfigInputs {
            set_flags: vec!["novalue".into()],
            ..ConfigInputs::default()
        })
        .is_err());
    }

    #[test]
    fn retention_precedence_ms_minutes_hours() {
        let c = load(ConfigInputs {
            set_flags: vec!["log.retention.hours=1".into()],
            ..ConfigInputs::default()
        });
        assert_eq!(c.log_retention_ms, 3_600_000);
        let c = load(ConfigInputs {
            set_flags: vec![
                "log.retention.hours=1".into(),
                "log.retention.minutes=2".into(),
            ],
            ..ConfigInputs::default()
        });
        assert_eq!(c.log_retention_ms, 120_000);
        let c = load(ConfigInputs {
            set_flags: vec![
                "log.retention.ms=5".into(),
                "log.retention.minutes=2".into(),
            ],
            ..ConfigInputs::default()
        });
        assert_eq!(c.log_retention_ms, 5);
    }

    #[test]
    fn host_port_parsing() {
        assert_eq!(
            HostPort::parse("PLAINTEXT://example.com:9093"),
            Some(HostPort {
                host: "example.com".into(),
                port: 9093
            })
        );
        let v6 = HostPort::parse("[::1]:9092").expect("v6");
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_socket_string(), "[::1]:9092");
        assert_eq!(HostPort::parse("host"), None);
        assert_eq!(HostPort::parse(":9092"), None);
        assert_eq!(HostPort::parse("h:99999"), None);
    }

    #[test]
    fn aliases_map_to_canonical_names() {
        let c = load(ConfigInputs {
            set_flags: vec!["log.dirs=/tmp/a,/tmp/b".into(), "broker.id=3".into()],
            ..ConfigInputs::default()
        });
        assert_eq!(c.data_dir, PathBuf::from("/tmp/a"));
        assert_eq!(c.node_id, NodeId(3));
        assert!(c.explicit.contains_key("data.dir"));
    }
}
