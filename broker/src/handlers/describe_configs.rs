//! DescribeConfigs (key 32): topic configs (override, broker default or built-in default,
//! with Kafka's config sources and synonyms), this broker's settings (with the dynamic levels
//! on top of the static configuration: DYNAMIC_BROKER_CONFIG > DYNAMIC_DEFAULT_BROKER_CONFIG >
//! STATIC_BROKER_CONFIG > DEFAULT_CONFIG) and the cluster-wide dynamic defaults (name "").

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest, DescribeConfigsResponse};

use super::{encode, str_bytes, ApiSpec, HandlerError, HandlerFuture, Ordering, Response};
use crate::config::{find_setting, BrokerConfig};
use crate::dynamic_config::{is_dynamic, synonym_names, LiveConfig};
use crate::metadata::topic_config::{
    broker_default, effective_value, ConfigType, KafkaConfigSource, TOPIC_CONFIGS,
};
use crate::protocol::request::{decode_body, RequestHead};
use crate::protocol::KafkaError;
use crate::shard::Shard;

/// DescribeConfigs 1-4.
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::DescribeConfigs,
    min_version: 1,
    max_version: 4,
    ordering: Ordering::Pipelined,
    handle: boxed,
};

/// Kafka's ConfigResource types.
pub const RESOURCE_TOPIC: i8 = 2;
/// Kafka's ConfigResource types.
pub const RESOURCE_BROKER: i8 = 4;
/// Kafka's ConfigResource types.
pub const RESOURCE_BROKER_LOGGER: i8 = 8;

fn boxed(shard: Rc<Shard>, head: RequestHead, body: Bytes) -> HandlerFuture {
    Box::pin(handle(shard, head, body))
}

/// One described config.
pub struct ConfigEntry {
    /// Name.
    pub name: &'static str,
    /// Effective value.
    pub value: String,
    /// Where the value comes from.
    pub source: KafkaConfigSource,
    /// Type (v3+).
    pub config_type: ConfigType,
    /// Documentation (v3+ when asked).
    pub doc: &'static str,
    /// Synonyms, most specific first: (name, value, source).
    pub synonyms: Vec<(String, String, KafkaConfigSource)>,
    /// Cannot change while the broker runs (broker settings that are not dynamic).
    pub read_only: bool,
}

/// Every topic config with its effective value and source.
pub fn topic_config_entries(
    overrides: &BTreeMap<String, String>,
    broker: &BrokerConfig,
) -> Vec<ConfigEntry> {
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let (value, source) = effective_value(def, overrides, broker);
            let mut synonyms = Vec::new();
            if let Some(value) = overrides.get(def.name) {
                synonyms.push((
                    def.name.to_string(),
                    value.clone(),
                    KafkaConfigSource::DynamicTopic,
                ));
            }
            if let Some(synonym) = def.broker_synonym {
                let (broker_value, broker_source) = broker_default(def, broker);
                if broker_source != KafkaConfigSource::Default {
                    synonyms.push((synonym.to_string(), broker_value, broker_source));
                }
                synonyms.push((
                    synonym.to_string(),
                    def.default.to_string(),
                    KafkaConfigSource::Default,
                ));
            } else {
                synonyms.push((
                    def.name.to_string(),
                    def.default.to_string(),
                    KafkaConfigSource::Default,
                ));
            }
            ConfigEntry {
                name: def.name,
                value,
                source,
                config_type: def.config_type,
                doc: def.doc,
                synonyms,
                read_only: false,
            }
        })
        .collect()
}

fn infer_type(default: Option<&str>) -> ConfigType {
    match default {
        Some("true") | Some("false") => ConfigType::Boolean,
        Some(text) if text.parse::<i64>().is_ok() => ConfigType::Long,
        _ => ConfigType::String,
    }
}

/// Every value a broker setting has in each level, most specific first (Kafka's order:
/// per synonym name, then dynamic broker, dynamic default, static, default).
fn broker_synonyms(
    live: &LiveConfig,
    name: &'static str,
) -> Vec<(String, String, KafkaConfigSource)> {
    let mut synonyms = Vec::new();
    for synonym in synonym_names(name) {
        if let Some(value) = live.layers.broker.get(synonym) {
            synonyms.push((
                synonym.to_string(),
                value.clone(),
                KafkaConfigSource::DynamicBroker,
            ));
        }
        if let Some(value) = live.layers.cluster_default.get(synonym) {
            synonyms.push((
                synonym.to_string(),
                value.clone(),
                KafkaConfigSource::DynamicDefaultBroker,
            ));
        }
        if let Some((value, source)) = live.static_config.explicit.get(synonym) {
            if source.is_static() {
                synonyms.push((
                    synonym.to_string(),
                    value.clone(),
                    KafkaConfigSource::StaticBroker,
                ));
            }
        }
        let default = match synonym {
            "shards" => Some(live.static_config.shards.to_string()),
            _ => find_setting(synonym).and_then(|def| def.default.map(str::to_string)),
        };
        if let Some(value) = default {
            synonyms.push((synonym.to_string(), value, KafkaConfigSource::Default));
        }
    }
    synonyms
}

/// This broker's settings (resource name = node id): every setting, effective value.
fn broker_config_entries(live: &LiveConfig) -> Vec<(ConfigEntry, Option<String>)> {
    live.effective
        .describe()
        .into_iter()
        .map(|(def, value, source)| {
            (
                ConfigEntry {
                    name: def.name,
                    value: value.clone().unwrap_or_default(),
                    source: KafkaConfigSource::of_setting(source),
                    config_type: infer_type(def.default),
                    doc: def.doc,
                    synonyms: broker_synonyms(live, def.name),
                    read_only: !is_dynamic(def.name),
                },
                value,
            )
        })
        .collect()
}

/// The cluster-wide dynamic defaults (resource name ""): only what is set at that level, as
/// Kafka reports `--entity-default`.
fn cluster_default_entries(live: &LiveConfig) -> Vec<(ConfigEntry, Option<String>)> {
    live.layers
        .cluster_default
        .iter()
        .filter_map(|(name, value)| {
            let def = find_setting(name)?;
            let source = KafkaConfigSource::DynamicDefaultBroker;
            Some((
                ConfigEntry {
                    name: def.name,
                    value: value.clone(),
                    source,
                    config_type: infer_type(def.default),
                    doc: def.doc,
                    synonyms: vec![(def.name.to_string(), value.clone(), source)],
                    read_only: false,
                },
                Some(value.clone()),
            ))
        })
        .collect()
}

fn to_result(
    entry: ConfigEntry,
    value: Option<String>,
    version: i16,
    include_synonyms: bool,
    include_documentation: bool,
) -> DescribeConfigsResourceResult {
    let mut result = DescribeConfigsResourceResult::default()
        .with_name(str_bytes(entry.name))
        .with_value(value.map(|v| str_bytes(&v)))
        .with_read_only(entry.read_only)
        .with_config_source(entry.source as i8)
        .with_is_sensitive(false);
    if include_synonyms {
        result.synonyms = entry
            .synonyms
            .iter()
            .map(|(name, value, source)| {
                DescribeConfigsSynonym::default()
                    .with_name(str_bytes(name))
                    .with_value(Some(str_bytes(value)))
                    .with_source(*source as i8)
            })
            .collect();
    }
    if version >= 3 {
        result.config_type = entry.config_type as i8;
        result.documentation = include_documentation.then(|| str_bytes(entry.doc));
    }
    result
}

async fn handle(
    shard: Rc<Shard>,
    head: RequestHead,
    body: Bytes,
) -> Result<Response, HandlerError> {
    let request: DescribeConfigsRequest = decode_body(&head, body)?;
    let version = head.api_version;
    let snapshot = shard.metadata();
    let node_name = shard.config.node_id.0.to_string();
    let live = shard.live_config();
    let mut results = Vec::with_capacity(request.resources.len());
    for resource in &request.resources {
        let keys: Option<Vec<String>> = resource
            .configuration_keys
            .as_ref()
            .map(|keys| keys.iter().map(|k| k.to_string()).collect());
        let wanted = |name: &str| {
            keys.as_ref()
                .is_none_or(|keys| keys.iter().any(|k| k == name))
        };
        let base = DescribeConfigsResult::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone())
            .with_error_message(None);
        let result = match resource.resource_type {
            RESOURCE_TOPIC => match snapshot.topic(resource.resource_name.as_str()) {
                Some(topic) => base.with_configs(
                    topic_config_entries(&topic.configs, &live.effective)
                        .into_iter()
                        .filter(|e| wanted(e.name))
                        .map(|e| {
                            let value = Some(e.value.clone());
                            to_result(
                                e,
                                value,
                                version,
                                request.include_synonyms,
                                request.include_documentation,
                            )
                        })
                        .collect(),
                ),
                None => base
                    .with_error_code(KafkaError::UnknownTopicOrPartition.code())
                    .with_error_message(Some(str_bytes(&format!(
                        "Topic '{}' does not exist.",
                        resource.resource_name.as_str()
                    )))),
            },
            RESOURCE_BROKER
                if resource.resource_name.as_str() == node_name
                    || resource.resource_name.is_empty() =>
            {
                let entries = if resource.resource_name.is_empty() {
                    cluster_default_entries(&live)
                } else {
                    broker_config_entries(&live)
                };
                base.with_configs(
                    entries
                        .into_iter()
                        .filter(|(e, _)| wanted(e.name))
                        .map(|(e, value)| {
                            to_result(
                                e,
                                value,
                                version,
                                request.include_synonyms,
                                request.include_documentation,
                            )
                        })
                        .collect(),
                )
            }
            RESOURCE_BROKER => base
                .with_error_code(KafkaError::InvalidRequest.code())
                .with_error_message(Some(str_bytes(&format!(
                    "Unexpected broker id, expected {node_name} or empty string, but received {}",
                    resource.resource_name.as_str()
                )))),
            RESOURCE_BROKER_LOGGER => base,
            other => base
                .with_error_code(KafkaError::InvalidRequest.code())
                .with_error_message(Some(str_bytes(&format!(
                    "Unsupported resource type {other}"
                )))),
        };
        results.push(result);
    }
    encode(
        &head,
        &DescribeConfigsResponse::default().with_results(results),
    )
}
