//! Per-topic configuration: the names Kafka uses, their broker-level synonyms and defaults,
//! validation, and the effective (resolved) values a partition log runs with.

use std::collections::BTreeMap;

use crate::config::{BrokerConfig, TimestampTypeSetting};

/// Kafka's DescribeConfigs `ConfigType` codes (v3+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum ConfigType {
    /// BOOLEAN
    Boolean = 1,
    /// STRING
    String = 2,
    /// INT
    Int = 3,
    /// LONG
    Long = 5,
    /// DOUBLE
    Double = 6,
    /// LIST
    List = 7,
}

/// Kafka's DescribeConfigs `ConfigSource` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum KafkaConfigSource {
    /// A topic-level override.
    DynamicTopic = 1,
    /// A dynamic per-broker config (BROKER resource = node id).
    DynamicBroker = 2,
    /// A dynamic cluster-wide default (BROKER resource "").
    DynamicDefaultBroker = 3,
    /// Set in the broker's static configuration (file, env, flags).
    StaticBroker = 4,
    /// Built-in default.
    Default = 5,
}

impl KafkaConfigSource {
    /// The Kafka source of a broker setting's value.
    pub fn of_setting(source: crate::config::ConfigSource) -> KafkaConfigSource {
        use crate::config::ConfigSource;
        match source {
            ConfigSource::Default => KafkaConfigSource::Default,
            ConfigSource::File | ConfigSource::Env | ConfigSource::Flag => {
                KafkaConfigSource::StaticBroker
            }
            ConfigSource::DynamicDefault => KafkaConfigSource::DynamicDefaultBroker,
            ConfigSource::DynamicBroker => KafkaConfigSource::DynamicBroker,
        }
    }
}

/// Why a topic config is rejected (INVALID_CONFIG with this message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigRejection(pub String);

type Validator = fn(&str) -> Result<(), &'static str>;

/// One topic-level config.
pub struct TopicConfigDef {
    /// Kafka name.
    pub name: &'static str,
    /// The broker setting that provides the default (Kafka's synonym).
    pub broker_synonym: Option<&'static str>,
    /// Type reported by DescribeConfigs.
    pub config_type: ConfigType,
    /// Kafka's built-in default.
    pub default: &'static str,
    /// One-line documentation.
    pub doc: &'static str,
    validate: Validator,
}

fn long_at_least(min: i64) -> impl Fn(&str) -> Result<(), &'static str> {
    move |v: &str| match v.trim().parse::<i64>() {
        Ok(n) if n >= min => Ok(()),
        Ok(_) => Err("value is below the minimum"),
        Err(_) => Err("expected a 64-bit integer"),
    }
}

fn int_at_least(min: i32) -> impl Fn(&str) -> Result<(), &'static str> {
    move |v: &str| match v.trim().parse::<i32>() {
        Ok(n) if n >= min => Ok(()),
        Ok(_) => Err("value is below the minimum"),
        Err(_) => Err("expected a 32-bit integer"),
    }
}

fn ratio(v: &str) -> Result<(), &'static str> {
    match v.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(()),
        Ok(_) => Err("expected a number between 0 and 1"),
        Err(_) => Err("expected a number"),
    }
}

/// `delete`, `compact`, or both (comma separated).
pub fn validate_cleanup_policy(v: &str) -> Result<(), &'static str> {
    let mut any = false;
    for policy in v.split(',').map(str::trim) {
        any = true;
        if policy != "delete" && policy != "compact" {
            return Err("cleanup.policy must be delete, compact or compact,delete");
        }
    }
    if any {
        Ok(())
    } else {
        Err("cleanup.policy must be delete, compact or compact,delete")
    }
}

fn boolean(v: &str) -> Result<(), &'static str> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "false" => Ok(()),
        _ => Err("expected true or false"),
    }
}

/// Every topic config Vaart knows, in DescribeConfigs order.
pub static TOPIC_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef {
        name: "cleanup.policy",
        broker_synonym: Some("log.cleanup.policy"),
        config_type: ConfigType::List,
        default: "delete",
        doc: "delete: drop old segments by retention.ms/retention.bytes; compact: keep the last record per key (log compaction); both: compact,delete.",
        validate: validate_cleanup_policy,
    },
    TopicConfigDef {
        name: "compression.type",
        broker_synonym: None,
        config_type: ConfigType::String,
        default: "producer",
        doc: "Batches are stored as the producer compressed them; other values would need recompression.",
        validate: |v| match v.trim() {
            "producer" => Ok(()),
            "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd" => {
                Err("Vaart stores batches as produced and does not recompress; only compression.type=producer is supported")
            }
            _ => Err("expected producer"),
        },
    },
    TopicConfigDef {
        name: "delete.retention.ms",
        broker_synonym: Some("log.cleaner.delete.retention.ms"),
        config_type: ConfigType::Long,
        default: "86400000",
        doc: "How long tombstones (null values) stay readable in a compacted topic.",
        validate: |v| long_at_least(0)(v),
    },
    TopicConfigDef {
        name: "file.delete.delay.ms",
        broker_synonym: None,
        config_type: ConfigType::Long,
        default: "60000",
        doc: "Delay before deleting a file (accepted; Vaart deletes whole segments at once).",
        validate: |v| long_at_least(0)(v),
    },
    TopicConfigDef {
        name: "flush.messages",
        broker_synonym: Some("log.flush.interval.messages"),
        config_type: ConfigType::Long,
        default: "9223372036854775807",
        doc: "fdatasync after this many messages.",
        validate: |v| long_at_least(1)(v),
    },
    TopicConfigDef {
        name: "flush.ms",
        broker_synonym: Some("log.flush.interval.ms"),
        config_type: ConfigType::Long,
        default: "9223372036854775807",
        doc: "fdatasync at least this often.",
        validate: |v| long_at_least(0)(v),
    },
    TopicConfigDef {
        name: "index.interval.bytes",
        broker_synonym: Some("log.index.interval.bytes"),
        config_type: ConfigType::Int,
        default: "4096",
        doc: "Bytes between offset-index entries.",
        validate: |v| int_at_least(0)(v),
    },
    TopicConfigDef {
        name: "max.compaction.lag.ms",
        broker_synonym: None,
        config_type: ConfigType::Long,
        default: "9223372036854775807",
        doc: "Longest a record stays uncompacted (accepted; the cleaner runs by dirty ratio).",
        validate: |v| long_at_least(1)(v),
    },
    TopicConfigDef {
        name: "max.message.bytes",
        broker_synonym: Some("message.max.bytes"),
        config_type: ConfigType::Int,
        default: "1048588",
        doc: "Largest record batch accepted.",
        validate: |v| int_at_least(0)(v),
    },
    TopicConfigDef {
        name: "message.timestamp.type",
        broker_synonym: Some("log.message.timestamp.type"),
        config_type: ConfigType::String,
        default: "CreateTime",
        doc: "CreateTime keeps the producer's timestamps; LogAppendTime stamps on append.",
        validate: |v| match TimestampTypeSetting::parse(v.trim()) {
            Some(_) => Ok(()),
            None => Err("expected CreateTime or LogAppendTime"),
        },
    },
    TopicConfigDef {
        name: "min.cleanable.dirty.ratio",
        broker_synonym: Some("log.cleaner.min.cleanable.ratio"),
        config_type: ConfigType::Double,
        default: "0.5",
        doc: "Dirty share of a compacted log at which the cleaner compacts it.",
        validate: ratio,
    },
    TopicConfigDef {
        name: "min.compaction.lag.ms",
        broker_synonym: Some("log.cleaner.min.compaction.lag.ms"),
        config_type: ConfigType::Long,
        default: "0",
        doc: "Records younger than this are not compacted.",
        validate: |v| long_at_least(0)(v),
    },
    TopicConfigDef {
        name: "min.insync.replicas",
        broker_synonym: Some("min.insync.replicas"),
        config_type: ConfigType::Int,
        default: "1",
        doc: "Minimum in-sync replicas for acks=all.",
        validate: |v| int_at_least(1)(v),
    },
    TopicConfigDef {
        name: "preallocate",
        broker_synonym: None,
        config_type: ConfigType::Boolean,
        default: "false",
        doc: "Preallocate segment files (accepted, ignored).",
        validate: boolean,
    },
    TopicConfigDef {
        name: "retention.bytes",
        broker_synonym: Some("log.retention.bytes"),
        config_type: ConfigType::Long,
        default: "-1",
        doc: "Delete old segments beyond this partition size (-1 = unlimited).",
        validate: |v| long_at_least(-1)(v),
    },
    TopicConfigDef {
        name: "retention.ms",
        broker_synonym: Some("log.retention.ms"),
        config_type: ConfigType::Long,
        default: "604800000",
        doc: "Delete segments older than this (-1 = forever).",
        validate: |v| long_at_least(-1)(v),
    },
    TopicConfigDef {
        name: "segment.bytes",
        broker_synonym: Some("log.segment.bytes"),
        config_type: ConfigType::Int,
        default: "1073741824",
        doc: "Segment size at which the log rolls.",
        validate: |v| int_at_least(14)(v),
    },
    TopicConfigDef {
        name: "segment.ms",
        broker_synonym: Some("log.roll.ms"),
        config_type: ConfigType::Long,
        default: "604800000",
        doc: "Segment age at which the log rolls.",
        validate: |v| long_at_least(1)(v),
    },
    TopicConfigDef {
        name: "unclean.leader.election.enable",
        broker_synonym: None,
        config_type: ConfigType::Boolean,
        default: "false",
        doc: "Allow out-of-sync replicas to become leader (accepted; single broker).",
        validate: boolean,
    },
];

/// Finds a topic config definition.
pub fn find_topic_config(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|def| def.name == name)
}

/// Validates one topic config name and value.
pub fn validate_topic_config(name: &str, value: Option<&str>) -> Result<(), ConfigRejection> {
    let def = find_topic_config(name)
        .ok_or_else(|| ConfigRejection(format!("Unknown topic config name: {name}")))?;
    let Some(value) = value else {
        return Err(ConfigRejection(format!(
            "Null value not supported for topic config {name}"
        )));
    };
    (def.validate)(value).map_err(|reason| {
        ConfigRejection(format!(
            "Invalid value {value} for configuration {name}: {reason}"
        ))
    })
}

/// Validates a whole set of topic overrides.
pub fn validate_topic_configs(configs: &BTreeMap<String, String>) -> Result<(), ConfigRejection> {
    for (name, value) in configs {
        validate_topic_config(name, Some(value))?;
    }
    Ok(())
}

/// The broker-level value (and its source) behind a topic config.
pub fn broker_default(def: &TopicConfigDef, broker: &BrokerConfig) -> (String, KafkaConfigSource) {
    let Some(synonym) = def.broker_synonym else {
        return (def.default.to_string(), KafkaConfigSource::Default);
    };
    // The value comes from the most precise name that is set (ms > minutes > hours), so its
    // source is that name's source (static file/env/flags or a dynamic broker config).
    let names: &[&str] = match synonym {
        "log.retention.ms" => &[
            "log.retention.ms",
            "log.retention.minutes",
            "log.retention.hours",
        ],
        "log.roll.ms" => &["log.roll.ms", "log.roll.hours"],
        _ => std::slice::from_ref(&synonym),
    };
    let source = names
        .iter()
        .find_map(|n| broker.explicit.get(n))
        .map(|(_, source)| KafkaConfigSource::of_setting(*source))
        .unwrap_or(KafkaConfigSource::Default);
    let value = match synonym {
        "log.cleanup.policy" => broker.log_cleanup_policy.clone(),
        "log.cleaner.min.cleanable.ratio" => broker.log_cleaner_min_cleanable_ratio.to_string(),
        "log.cleaner.delete.retention.ms" => broker.log_cleaner_delete_retention_ms.to_string(),
        "log.cleaner.min.compaction.lag.ms" => broker.log_cleaner_min_compaction_lag_ms.to_string(),
        "log.flush.interval.messages" => broker.log_flush_interval_messages.to_string(),
        "log.flush.interval.ms" => broker.log_flush_interval_ms.unwrap_or(i64::MAX).to_string(),
        "log.index.interval.bytes" => broker.log_index_interval_bytes.to_string(),
        "message.max.bytes" => broker.message_max_bytes.to_string(),
        "log.message.timestamp.type" => match broker.log_message_timestamp_type {
            TimestampTypeSetting::CreateTime => "CreateTime".to_string(),
            TimestampTypeSetting::LogAppendTime => "LogAppendTime".to_string(),
        },
        "min.insync.replicas" => broker.min_insync_replicas.to_string(),
        "log.retention.bytes" => broker.log_retention_bytes.to_string(),
        "log.retention.ms" => broker.log_retention_ms.to_string(),
        "log.segment.bytes" => broker.log_segment_bytes.to_string(),
        "log.roll.ms" => broker.log_roll_ms.to_string(),
        _ => def.default.to_string(),
    };
    (value, source)
}

/// A topic config's effective value and source.
pub fn effective_value(
    def: &TopicConfigDef,
    overrides: &BTreeMap<String, String>,
    broker: &BrokerConfig,
) -> (String, KafkaConfigSource) {
    match overrides.get(def.name) {
        Some(value) => (value.clone(), KafkaConfigSource::DynamicTopic),
        None => broker_default(def, broker),
    }
}

/// The resolved settings a partition log runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicSettings {
    /// retention.ms (-1 = unlimited).
    pub retention_ms: i64,
    /// retention.bytes (-1 = unlimited).
    pub retention_bytes: i64,
    /// segment.bytes.
    pub segment_bytes: u64,
    /// segment.ms.
    pub segment_ms: i64,
    /// max.message.bytes.
    pub max_message_bytes: u32,
    /// message.timestamp.type.
    pub timestamp_type: TimestampTypeSetting,
    /// flush.messages (i64::MAX = never).
    pub flush_messages: i64,
    /// flush.ms (`None` = never by time).
    pub flush_ms: Option<u64>,
    /// index.interval.bytes.
    pub index_interval_bytes: u32,
    /// cleanup.policy contains `compact`.
    pub cleanup_compact: bool,
    /// delete.retention.ms (tombstones in compacted topics).
    pub delete_retention_ms: i64,
    /// min.compaction.lag.ms.
    pub min_compaction_lag_ms: i64,
    /// min.cleanable.dirty.ratio.
    pub min_cleanable_dirty_ratio: f64,
}

/// Resolves a topic's settings from its overrides and the broker config. Values were
/// validated when set, so parse failures fall back to the broker default.
pub fn resolve_settings(
    overrides: &BTreeMap<String, String>,
    broker: &BrokerConfig,
) -> TopicSettings {
    let get = |name: &str| -> String {
        find_topic_config(name)
            .map(|def| effective_value(def, overrides, broker).0)
            .unwrap_or_default()
    };
    let long = |name: &str, fallback: i64| get(name).trim().parse::<i64>().unwrap_or(fallback);
    let flush_ms = long("flush.ms", i64::MAX);
    let policy = get("cleanup.policy");
    let cleanup_compact = policy.split(',').any(|p| p.trim() == "compact");
    // compact alone: no time or size based deletion (Kafka's semantics).
    let cleanup_delete = policy.split(',').any(|p| p.trim() == "delete") || !cleanup_compact;
    TopicSettings {
        retention_ms: if cleanup_delete {
            long("retention.ms", broker.log_retention_ms)
        } else {
            -1
        },
        retention_bytes: if cleanup_delete {
            long("retention.bytes", broker.log_retention_bytes)
        } else {
            -1
        },
        cleanup_compact,
        delete_retention_ms: long(
            "delete.retention.ms",
            broker.log_cleaner_delete_retention_ms,
        ),
        min_compaction_lag_ms: long(
            "min.compaction.lag.ms",
            broker.log_cleaner_min_compaction_lag_ms,
        ),
        min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio")
            .trim()
            .parse::<f64>()
            .unwrap_or(broker.log_cleaner_min_cleanable_ratio),
        segment_bytes: u64::try_from(long("segment.bytes", i64::from(broker.log_segment_bytes)))
            .unwrap_or(1 << 30),
        segment_ms: long("segment.ms", broker.log_roll_ms),
        max_message_bytes: u32::try_from(long(
            "max.message.bytes",
            i64::from(broker.message_max_bytes),
        ))
        .unwrap_or(1_048_588),
        timestamp_type: TimestampTypeSetting::parse(get("message.timestamp.type").trim())
            .unwrap_or(broker.log_message_timestamp_type),
        flush_messages: long("flush.messages", i64::MAX),
        flush_ms: if flush_ms == i64::MAX {
            None
        } else {
            u64::try_from(flush_ms).ok()
        },
        index_interval_bytes: u32::try_from(long(
            "index.interval.bytes",
            i64::from(broker.log_index_interval_bytes),
        ))
        .unwrap_or(4096),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_matches_kafka_errors() {
        assert!(validate_topic_config("retention.ms", Some("1000")).is_ok());
        assert!(validate_topic_config("retention.ms", Some("-1")).is_ok());
        assert!(validate_topic_config("retention.ms", Some("-2")).is_err());
        assert!(validate_topic_config("retention.ms", Some("abc")).is_err());
        assert!(validate_topic_config("segment.bytes", Some("13")).is_err());
        assert!(validate_topic_config("cleanup.policy", Some("compact")).is_ok());
        assert!(validate_topic_config("cleanup.policy", Some("compact,delete")).is_ok());
        assert!(validate_topic_config("cleanup.policy", Some("delete")).is_ok());
        assert!(validate_topic_config("cleanup.policy", Some("shred")).is_err());
        assert!(validate_topic_config("min.cleanable.dirty.ratio", Some("0.1")).is_ok());
        assert!(validate_topic_config("min.cleanable.dirty.ratio", Some("2")).is_err());
        assert!(validate_topic_config("no.such.config", Some("1")).is_err());
        assert!(validate_topic_config("retention.ms", None).is_err());
        assert!(validate_topic_config("message.timestamp.type", Some("LogAppendTime")).is_ok());
        assert!(validate_topic_config("message.timestamp.type", Some("Other")).is_err());
    }

    #[test]
    fn effective_values_follow_override_then_broker_then_default() {
        let mut broker = BrokerConfig::defaults();
        let mut overrides = BTreeMap::new();
        let def = find_topic_config("retention.ms").expect("def");
        assert_eq!(
            effective_value(def, &overrides, &broker),
            ("604800000".to_string(), KafkaConfigSource::Default)
        );
        broker
            .apply(
                "log.retention.hours",
                "1",
                crate::config::ConfigSource::Flag,
                "test",
            )
            .expect("apply");
        assert_eq!(
            effective_value(def, &overrides, &broker),
            ("3600000".to_string(), KafkaConfigSource::StaticBroker)
        );
        overrides.insert("retention.ms".to_string(), "5".to_string());
        assert_eq!(
            effective_value(def, &overrides, &broker),
            ("5".to_string(), KafkaConfigSource::DynamicTopic)
        );
        let settings = resolve_settings(&overrides, &broker);
        assert_eq!(settings.retention_ms, 5);
        assert_eq!(settings.segment_bytes, 1 << 30);
        assert_eq!(settings.flush_ms, None);
    }
}
