//! Dynamic broker configs, as Kafka treats them (KIP-226): settings that change while the
//! broker runs, through AlterConfigs / IncrementalAlterConfigs on a BROKER resource or a
//! SIGHUP reload of the configuration file.
//!
//! Precedence, highest first, with the source DescribeConfigs reports:
//! 1. DYNAMIC_BROKER_CONFIG: set on resource name = this node's id (`--entity-name 1`);
//! 2. DYNAMIC_DEFAULT_BROKER_CONFIG: set on resource name "" (`--entity-default`);
//! 3. STATIC_BROKER_CONFIG: the file, `VAART_*` environment and flags;
//! 4. DEFAULT_CONFIG: built-in defaults.
//!
//! Only the settings Kafka's broker config docs mark dynamic ("cluster-wide": either level) and
//! that Vaart implements may change ([`DYNAMIC_SETTINGS`]); anything else is refused as Kafka
//! refuses it: INVALID_REQUEST with `Cannot update these configs dynamically: Set(name)`. An
//! invalid value is INVALID_REQUEST too (Kafka wraps the broker's ConfigException that way,
//! see its KAFKA-13609), with `Invalid value V for configuration N: reason`.
//!
//! Both dynamic levels persist in `<data dir>/vaart-dynamic-config.json` (atomic replace), so
//! they survive restarts and are applied on top of the static configuration at startup.
//!
//! This module is pure (layers, validation, reload merging, the file format). Shard 0 owns the
//! layers and pushes each new [`LiveConfig`] to every shard (see `shard::live_config`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::{find_setting, BrokerConfig, ConfigError, ConfigSource, SETTINGS};
use crate::metadata::ops::{ConfigAlteration, ConfigChange, TopicError};
use crate::protocol::KafkaError;
use crate::types::NodeId;

/// The file (in the data dir) holding both dynamic levels.
pub const DYNAMIC_CONFIG_FILE: &str = "vaart-dynamic-config.json";
/// Version of [`DYNAMIC_CONFIG_FILE`]'s layout.
const FORMAT_VERSION: u32 = 1;

/// Settings Vaart has that Kafka marks dynamic ("cluster-wide" in Kafka's broker config docs:
/// the topic-default synonyms of `DynamicLogConfig`, `max.connections` of the socket server,
/// `producer.id.expiration.ms` of the producer state manager). Everything else is read-only.
/// `log.retention.hours`/`.minutes` and `log.roll.hours` are read-only in Kafka too; their
/// millisecond forms are dynamic.
pub static DYNAMIC_SETTINGS: &[&str] = &[
    "log.segment.bytes",
    "log.roll.ms",
    "log.retention.ms",
    "log.retention.bytes",
    "log.index.interval.bytes",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.message.timestamp.type",
    "log.cleanup.policy",
    "log.cleaner.delete.retention.ms",
    "log.cleaner.min.compaction.lag.ms",
    "log.cleaner.min.cleanable.ratio",
    "message.max.bytes",
    "min.insync.replicas",
    "max.connections",
    "producer.id.expiration.ms",
];

/// True for a setting that may change while the broker runs.
pub fn is_dynamic(name: &str) -> bool {
    DYNAMIC_SETTINGS.contains(&name)
}

/// Settings whose values are resolved together (Kafka's `brokerConfigSynonyms`), most precise
/// first; DescribeConfigs lists them all as synonyms of each other.
pub fn synonym_names(name: &'static str) -> Vec<&'static str> {
    const RETENTION: [&str; 3] = [
        "log.retention.ms",
        "log.retention.minutes",
        "log.retention.hours",
    ];
    const ROLL: [&str; 2] = ["log.roll.ms", "log.roll.hours"];
    if RETENTION.contains(&name) {
        RETENTION.to_vec()
    } else if ROLL.contains(&name) {
        ROLL.to_vec()
    } else {
        vec![name]
    }
}

/// Which dynamic level a BROKER resource names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerLevel {
    /// Resource name "": the cluster-wide default.
    ClusterDefault,
    /// Resource name = this node's id.
    ThisBroker,
}

impl BrokerLevel {
    /// For logs.
    pub fn describe(self) -> &'static str {
        match self {
            BrokerLevel::ClusterDefault => "cluster-wide default",
            BrokerLevel::ThisBroker => "this broker",
        }
    }
}

fn refusal(code: KafkaError, message: impl Into<String>) -> TopicError {
    TopicError {
        code,
        message: Some(message.into()),
    }
}

/// Maps a BROKER resource name to its level, with Kafka's errors for anything else.
pub fn resolve_broker_resource(name: &str, node: NodeId) -> Result<BrokerLevel, TopicError> {
    if name.is_empty() {
        return Ok(BrokerLevel::ClusterDefault);
    }
    let id: i32 = name.parse().map_err(|_| {
        refusal(
            KafkaError::InvalidRequest,
            format!("Node id must be an integer, but it is: {name}"),
        )
    })?;
    if id != node.0 {
        return Err(refusal(
            KafkaError::InvalidRequest,
            format!(
                "Unexpected broker id, expected {}, but received {name}",
                node.0
            ),
        ));
    }
    Ok(BrokerLevel::ThisBroker)
}

/// The two dynamic levels of this broker: setting name -> value text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicLayers {
    /// Resource name "".
    pub cluster_default: BTreeMap<String, String>,
    /// Resource name = this node's id.
    pub broker: BTreeMap<String, String>,
}

impl DynamicLayers {
    /// One level.
    pub fn layer(&self, level: BrokerLevel) -> &BTreeMap<String, String> {
        match level {
            BrokerLevel::ClusterDefault => &self.cluster_default,
            BrokerLevel::ThisBroker => &self.broker,
        }
    }

    /// One level, to change.
    pub fn layer_mut(&mut self, level: BrokerLevel) -> &mut BTreeMap<String, String> {
        match level {
            BrokerLevel::ClusterDefault => &mut self.cluster_default,
            BrokerLevel::ThisBroker => &mut self.broker,
        }
    }

    /// No dynamic config at all.
    pub fn is_empty(&self) -> bool {
        self.cluster_default.is_empty() && self.broker.is_empty()
    }
}

/// The configuration every shard runs with: the effective config (static + dynamic levels)
/// and what it was built from (for DescribeConfigs' sources and synonyms). Immutable; shard 0
/// builds a new one per change and sends it to every shard.
#[derive(Debug)]
pub struct LiveConfig {
    /// What the broker runs with.
    pub effective: Arc<BrokerConfig>,
    /// Defaults < file < environment < flags, before the dynamic levels.
    pub static_config: Arc<BrokerConfig>,
    /// The dynamic levels.
    pub layers: DynamicLayers,
}

impl LiveConfig {
    /// Applies `layers` on top of `static_config`. Entries that are not dynamic or no longer
    /// valid (a file written by another version) are skipped, with one warning each.
    pub fn build(
        static_config: Arc<BrokerConfig>,
        layers: DynamicLayers,
    ) -> (LiveConfig, Vec<String>) {
        let mut effective = (*static_config).clone();
        let mut warnings = Vec::new();
        let levels = [
            (&layers.cluster_default, ConfigSource::DynamicDefault),
            (&layers.broker, ConfigSource::DynamicBroker),
        ];
        for (layer, source) in levels {
            for (name, value) in layer {
                if !is_dynamic(name) {
                    warnings.push(format!(
                        "ignoring dynamic config {name}={value}: not a dynamic setting"
                    ));
                    continue;
                }
                if let Err(err) = effective.apply(name, value, source, "dynamic config") {
                    warnings.push(format!("ignoring dynamic config: {err}"));
                }
            }
        }
        let live = LiveConfig {
            effective: Arc::new(effective),
            static_config,
            layers,
        };
        (live, warnings)
    }
}

/// Why the dynamic config file could not be loaded (the broker does not start).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DynamicConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read dynamic config file {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not what this version writes.
    #[error("dynamic config file {path} is corrupt: {source}")]
    Corrupt {
        /// File path.
        path: PathBuf,
        /// Cause.
        source: serde_json::Error,
    },
    /// A newer layout.
    #[error(
        "dynamic config file {path} has format {found}; this vaart reads format {FORMAT_VERSION}"
    )]
    UnsupportedFormat {
        /// File path.
        path: PathBuf,
        /// Format found.
        found: u32,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct PersistedDynamicConfig {
    format: u32,
    /// The node the per-broker level belongs to.
    node_id: i32,
    cluster_default: BTreeMap<String, String>,
    broker: BTreeMap<String, String>,
}

/// Reads the dynamic levels from `dir` (none if the file does not exist). A per-broker level
/// written under another node id is dropped with a warning.
pub fn load_layers(
    dir: &Path,
    node: NodeId,
) -> Result<(DynamicLayers, Vec<String>), DynamicConfigError> {
    let path = dir.join(DYNAMIC_CONFIG_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Ok((DynamicLayers::default(), Vec::new()))
        }
        Err(source) => return Err(DynamicConfigError::Read { path, source }),
    };
    let persisted: PersistedDynamicConfig =
        serde_json::from_slice(&bytes).map_err(|source| DynamicConfigError::Corrupt {
            path: path.clone(),
            source,
        })?;
    if persisted.format != FORMAT_VERSION {
        return Err(DynamicConfigError::UnsupportedFormat {
            path,
            found: persisted.format,
        });
    }
    let mut warnings = Vec::new();
    let broker = if persisted.node_id == node.0 {
        persisted.broker
    } else {
        if !persisted.broker.is_empty() {
            warnings.push(format!(
                "ignoring the per-broker dynamic configs of node {} in {} (this is node {})",
                persisted.node_id,
                path.display(),
                node.0
            ));
        }
        BTreeMap::new()
    };
    let layers = DynamicLayers {
        cluster_default: persisted.cluster_default,
        broker,
    };
    Ok((layers, warnings))
}

/// The file contents for `layers`.
pub fn encode_layers(layers: &DynamicLayers, node: NodeId) -> Vec<u8> {
    let persisted = PersistedDynamicConfig {
        format: FORMAT_VERSION,
        node_id: node.0,
        cluster_default: layers.cluster_default.clone(),
        broker: layers.broker.clone(),
    };
    // Maps of strings always serialize.
    serde_json::to_vec_pretty(&persisted).expect("dynamic configs serialize")
}

/// The one list-typed dynamic setting (APPEND/SUBTRACT work on it).
const LIST_SETTINGS: &[&str] = &["log.cleanup.policy"];

/// The current value text of a setting in `config` (explicit or default).
fn value_text(config: &BrokerConfig, name: &str) -> Option<String> {
    config
        .describe()
        .into_iter()
        .find(|(def, _, _)| def.name == name)
        .and_then(|(_, value, _)| value)
}

fn set_display(names: &BTreeSet<String>) -> String {
    let joined: Vec<&str> = names.iter().map(String::as_str).collect();
    format!("Set({})", joined.join(", "))
}

/// Applies an AlterConfigs (replace) or IncrementalAlterConfigs alteration to one dynamic
/// level and validates the result as Kafka's broker does. Returns the new level.
pub fn alter_layer(
    current: &BTreeMap<String, String>,
    effective: &BrokerConfig,
    alteration: &ConfigAlteration,
) -> Result<BTreeMap<String, String>, TopicError> {
    let names: Vec<&str> = match alteration {
        ConfigAlteration::Replace(entries) => entries.iter().map(|(n, _)| n.as_str()).collect(),
        ConfigAlteration::Incremental(changes) => changes
            .iter()
            .map(|change| match change {
                ConfigChange::Set(name, _)
                | ConfigChange::Delete(name)
                | ConfigChange::Append(name, _)
                | ConfigChange::Subtract(name, _) => name.as_str(),
            })
            .collect(),
    };
    let distinct: BTreeSet<&str> = names.iter().copied().collect();
    if distinct.len() != names.len() {
        return Err(refusal(
            KafkaError::InvalidRequest,
            "Error due to duplicate config keys",
        ));
    }
    let mut touched: BTreeSet<String> = BTreeSet::new();
    let layer = match alteration {
        ConfigAlteration::Replace(entries) => {
            let nulls: Vec<&str> = entries
                .iter()
                .filter(|(_, value)| value.is_none())
                .map(|(name, _)| name.as_str())
                .collect();
            if !nulls.is_empty() {
                return Err(refusal(
                    KafkaError::InvalidRequest,
                    format!("Null value not supported for : {}", nulls.join(", ")),
                ));
            }
            let mut layer = BTreeMap::new();
            for (name, value) in entries {
                if let Some(value) = value {
                    layer.insert(name.clone(), value.trim().to_string());
                    touched.insert(name.clone());
                }
            }
            layer
        }
        ConfigAlteration::Incremental(changes) => {
            let mut layer = current.clone();
            for change in changes {
                match change {
                    ConfigChange::Set(name, value) => {
                        layer.insert(name.clone(), value.trim().to_string());
                        touched.insert(name.clone());
                    }
                    ConfigChange::Delete(name) => {
                        layer.remove(name);
                    }
                    ConfigChange::Append(name, value) | ConfigChange::Subtract(name, value) => {
                        let append = matches!(change, ConfigChange::Append(..));
                        if !LIST_SETTINGS.contains(&name.as_str()) {
                            let verb = if append { "append" } else { "subtract" };
                            return Err(refusal(
                                KafkaError::InvalidConfig,
                                format!(
                                    "Config value {verb} is not allowed for config key: {name}"
                                ),
                            ));
                        }
                        let existing = layer
                            .get(name)
                            .cloned()
                            .or_else(|| value_text(effective, name))
                            .unwrap_or_default();
                        let mut items: Vec<String> = existing
                            .split(',')
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty())
                            .collect();
                        let given = value.split(',').map(|s| s.trim().to_string());
                        if append {
                            for item in given {
                                if !items.contains(&item) {
                                    items.push(item);
                                }
                            }
                        } else {
                            let remove: Vec<String> = given.collect();
                            items.retain(|item| !remove.contains(item));
                        }
                        layer.insert(name.clone(), items.join(","));
                        touched.insert(name.clone());
                    }
                }
            }
            layer
        }
    };
    validate_layer(&layer, &touched)?;
    Ok(layer)
}

/// Kafka's checks, in Kafka's order: names that are not dynamic, then values.
fn validate_layer(
    layer: &BTreeMap<String, String>,
    touched: &BTreeSet<String>,
) -> Result<(), TopicError> {
    let unknown: BTreeSet<String> = layer
        .keys()
        .filter(|name| find_setting(name).is_none())
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(refusal(
            KafkaError::InvalidRequest,
            format!("Unknown broker configs: {}", set_display(&unknown)),
        ));
    }
    let read_only: BTreeSet<String> = layer
        .keys()
        .filter(|name| !is_dynamic(name))
        .cloned()
        .collect();
    if !read_only.is_empty() {
        return Err(refusal(
            KafkaError::InvalidRequest,
            format!(
                "Cannot update these configs dynamically: {}",
                set_display(&read_only)
            ),
        ));
    }
    let mut scratch = BrokerConfig::defaults();
    for (name, value) in layer.iter().filter(|(name, _)| touched.contains(*name)) {
        scratch
            .apply(name, value, ConfigSource::DynamicDefault, "dynamic config")
            .map_err(|err| match err {
                ConfigError::InvalidValue { reason, .. } => refusal(
                    KafkaError::InvalidRequest,
                    format!("Invalid value {value} for configuration {name}: {reason}"),
                ),
                other => refusal(KafkaError::InvalidRequest, other.to_string()),
            })?;
    }
    Ok(())
}

/// One setting whose value differs between two loads of the static configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadChange {
    /// Setting name.
    pub name: &'static str,
    /// Value before (None = no value).
    pub old: Option<String>,
    /// Value in the reloaded configuration.
    pub new: Option<String>,
    /// Applied now (dynamic) or only after a restart (read-only).
    pub dynamic: bool,
}

/// Merges a reloaded static configuration into the running one: dynamic settings take their
/// new values, read-only ones keep the old. Returns the merged static configuration and every
/// setting that changed.
pub fn merge_reload(
    old: &BrokerConfig,
    new: &BrokerConfig,
) -> Result<(BrokerConfig, Vec<ReloadChange>), ConfigError> {
    let old_values = old.describe();
    let new_values = new.describe();
    let mut changes = Vec::new();
    for ((def, old_value, _), (_, new_value, _)) in old_values.iter().zip(new_values.iter()) {
        if old_value != new_value {
            changes.push(ReloadChange {
                name: def.name,
                old: old_value.clone(),
                new: new_value.clone(),
                dynamic: is_dynamic(def.name),
            });
        }
    }
    let mut merged = BrokerConfig::defaults();
    for def in SETTINGS.iter() {
        let source: &BrokerConfig = if is_dynamic(def.name) { new } else { old };
        if let Some((value, setting_source)) = source.explicit.get(def.name) {
            merged.apply(def.name, value, *setting_source, "reloaded configuration")?;
        }
    }
    Ok((merged, changes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigInputs;

    fn set(name: &str, value: &str) -> ConfigChange {
        ConfigChange::Set(name.to_string(), value.to_string())
    }

    fn alter(
        current: &BTreeMap<String, String>,
        changes: Vec<ConfigChange>,
    ) -> Result<BTreeMap<String, String>, TopicError> {
        alter_layer(
            current,
            &BrokerConfig::defaults(),
            &ConfigAlteration::Incremental(changes),
        )
    }

    #[test]
    fn every_dynamic_setting_exists() {
        for name in DYNAMIC_SETTINGS {
            assert!(find_setting(name).is_some(), "{name} is not a setting");
        }
    }

    #[test]
    fn read_only_settings_are_refused_like_kafka() {
        let err = alter(&BTreeMap::new(), vec![set("num.partitions", "3")]).expect_err("read-only");
        assert_eq!(err.code, KafkaError::InvalidRequest);
        assert_eq!(
            err.message.as_deref(),
            Some("Cannot update these configs dynamically: Set(num.partitions)")
        );
        let err =
            alter(&BTreeMap::new(), vec![set("log.retention.hours", "1")]).expect_err("hours");
        assert!(err
            .message
            .unwrap_or_default()
            .contains("log.retention.hours"));
        let err = alter(&BTreeMap::new(), vec![set("no.such", "1")]).expect_err("unknown");
        assert_eq!(err.code, KafkaError::InvalidRequest);
    }

    #[test]
    fn invalid_values_name_the_setting() {
        let err = alter(&BTreeMap::new(), vec![set("log.retention.ms", "soon")]).expect_err("bad");
        assert_eq!(err.code, KafkaError::InvalidRequest);
        assert_eq!(
            err.message.as_deref(),
            Some("Invalid value soon for configuration log.retention.ms: expected an integer")
        );
        let err =
            alter(&BTreeMap::new(), vec![set("log.cleanup.policy", "shred")]).expect_err("policy");
        assert!(err
            .message
            .unwrap_or_default()
            .contains("log.cleanup.policy"));
    }

    #[test]
    fn incremental_set_delete_append() {
        let layer = alter(
            &BTreeMap::new(),
            vec![
                set("log.retention.ms", "1000"),
                set("max.connections", "10"),
            ],
        )
        .expect("set");
        assert_eq!(
            layer.get("log.retention.ms").map(String::as_str),
            Some("1000")
        );
        let layer =
            alter(&layer, vec![ConfigChange::Delete("max.connections".into())]).expect("delete");
        assert_eq!(layer.len(), 1);
        let layer = alter(
            &layer,
            vec![ConfigChange::Append(
                "log.cleanup.policy".into(),
                "compact".into(),
            )],
        )
        .expect("append");
        assert_eq!(
            layer.get("log.cleanup.policy").map(String::as_str),
            Some("delete,compact")
        );
        let err = alter(
            &layer,
            vec![ConfigChange::Append("log.retention.ms".into(), "1".into())],
        )
        .expect_err("append to a non-list");
        assert_eq!(err.code, KafkaError::InvalidConfig);
        let err = alter(
            &layer,
            vec![set("message.max.bytes", "1"), set("message.max.bytes", "2")],
        )
        .expect_err("duplicates");
        assert_eq!(err.code, KafkaError::InvalidRequest);
    }

    #[test]
    fn replace_drops_what_is_not_given() {
        let mut current = BTreeMap::new();
        current.insert("log.retention.ms".to_string(), "5".to_string());
        let layer = alter_layer(
            &current,
            &BrokerConfig::defaults(),
            &ConfigAlteration::Replace(vec![("message.max.bytes".into(), Some("2048".into()))]),
        )
        .expect("replace");
        assert_eq!(layer.len(), 1);
        assert!(layer.contains_key("message.max.bytes"));
    }

    #[test]
    fn precedence_broker_over_default_over_static() {
        let mut static_config = BrokerConfig::defaults();
        static_config
            .apply("log.retention.ms", "1", ConfigSource::File, "test")
            .expect("apply");
        let mut layers = DynamicLayers::default();
        layers
            .cluster_default
            .insert("log.retention.ms".into(), "2".into());
        layers
            .cluster_default
            .insert("message.max.bytes".into(), "5000".into());
        layers.broker.insert("log.retention.ms".into(), "3".into());
        layers.broker.insert("num.partitions".into(), "9".into());
        let (live, warnings) = LiveConfig::build(Arc::new(static_config), layers);
        assert_eq!(
            warnings.len(),
            1,
            "num.partitions is not dynamic: {warnings:?}"
        );
        assert_eq!(live.effective.log_retention_ms, 3);
        assert_eq!(live.effective.message_max_bytes, 5000);
        assert_eq!(live.effective.num_partitions, 1);
        assert_eq!(
            live.effective
                .explicit
                .get("log.retention.ms")
                .map(|(_, s)| *s),
            Some(ConfigSource::DynamicBroker)
        );
        assert_eq!(live.static_config.log_retention_ms, 1);
    }

    #[test]
    fn layers_round_trip_through_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut layers = DynamicLayers::default();
        layers
            .cluster_default
            .insert("log.retention.ms".into(), "7".into());
        layers.broker.insert("max.connections".into(), "4".into());
        let bytes = encode_layers(&layers, NodeId(3));
        std::fs::write(dir.path().join(DYNAMIC_CONFIG_FILE), bytes).expect("write");
        let (loaded, warnings) = load_layers(dir.path(), NodeId(3)).expect("load");
        assert_eq!(loaded, layers);
        assert!(warnings.is_empty());
        let (other, warnings) = load_layers(dir.path(), NodeId(4)).expect("load");
        assert!(other.broker.is_empty());
        assert_eq!(warnings.len(), 1);
        let (none, _) = load_layers(&dir.path().join("missing"), NodeId(3)).expect("no file");
        assert!(none.is_empty());
    }

    #[test]
    fn reload_applies_dynamic_and_keeps_read_only() {
        let load = |text: &str| {
            let dir = tempfile::tempdir().expect("tempdir");
            let file = dir.path().join("vaart.toml");
            std::fs::write(&file, text).expect("write");
            BrokerConfig::load(&ConfigInputs {
                file: Some(file),
                ..ConfigInputs::default()
            })
            .expect("loads")
            .0
        };
        let old = load("num.partitions = 2\nlog.retention.ms = 1000\nmessage.max.bytes = 4096\n");
        let new = load("num.partitions = 5\nlog.retention.ms = 2000\n");
        let (merged, changes) = merge_reload(&old, &new).expect("merge");
        assert_eq!(merged.num_partitions, 2, "read-only kept");
        assert_eq!(merged.log_retention_ms, 2000, "dynamic applied");
        assert_eq!(
            merged.message_max_bytes, 1_048_588,
            "removed dynamic goes back to default"
        );
        let names: Vec<(&str, bool)> = changes.iter().map(|c| (c.name, c.dynamic)).collect();
        assert_eq!(
            names,
            vec![
                ("num.partitions", false),
                ("log.retention.ms", true),
                ("message.max.bytes", true)
            ]
        );
    }

    #[test]
    fn broker_resource_names() {
        assert_eq!(
            resolve_broker_resource("", NodeId(1)).expect("default"),
            BrokerLevel::ClusterDefault
        );
        assert_eq!(
            resolve_broker_resource("1", NodeId(1)).expect("this"),
            BrokerLevel::ThisBroker
        );
        assert!(resolve_broker_resource("2", NodeId(1)).is_err());
        assert!(resolve_broker_resource("x", NodeId(1)).is_err());
    }

    /// `deploy/vaart.toml` must load with the real loader and hold the defaults.
    #[test]
    fn deploy_sample_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("deploy")
            .join("vaart.toml");
        let (config, warnings) = BrokerConfig::load(&ConfigInputs {
            file: Some(path.clone()),
            ..ConfigInputs::default()
        })
        .unwrap_or_else(|err| panic!("{} does not load: {err}", path.display()));
        assert!(warnings.is_empty(), "{warnings:?}");
        let defaults = BrokerConfig::defaults();
        assert_eq!(config.log_retention_ms, defaults.log_retention_ms);
        assert_eq!(config.log_segment_bytes, defaults.log_segment_bytes);
        assert_eq!(config.message_max_bytes, defaults.message_max_bytes);
        assert_eq!(config.num_partitions, defaults.num_partitions);
        assert!(
            config.explicit.len() >= 20,
            "the sample sets the common settings"
        );
    }
}
