//! [`Admin`]: the cluster calls the command line needs — create, delete and describe topics,
//! add partitions, describe and alter configs, list offsets. Each per-resource error code is
//! returned as a [`KafkaError`] for that resource; transport failures are the outer `Err`.

use std::collections::HashMap;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, IncrementalAlterConfigsRequest, ListOffsetsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::{Client, ClusterMetadata, TopicMetadata};
use crate::error::{ClientError, KafkaCode, KafkaError};
pub use crate::types::TopicId;
use crate::types::{NodeId, Offset, PartitionId};

/// Default timeout the broker gets for topic changes.
const ADMIN_TIMEOUT_MS: i32 = 30_000;

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    /// -1 = the broker's `num.partitions`.
    pub partitions: i32,
    /// -1 = the broker's `default.replication.factor`.
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    pub fn new(name: impl Into<String>, partitions: i32, replication_factor: i16) -> Self {
        Self {
            name: name.into(),
            partitions,
            replication_factor,
            configs: Vec::new(),
        }
    }

    pub fn with_config(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((name.into(), value.into()));
        self
    }
}

/// What kind of thing a config belongs to (Kafka's `ConfigResource.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceType {
    Topic,
    Broker,
}

impl ResourceType {
    fn wire(self) -> i8 {
        match self {
            ResourceType::Topic => 2,
            ResourceType::Broker => 4,
        }
    }
}

/// Where a config value comes from (Kafka's `ConfigSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    Unknown,
    TopicConfig,
    DynamicBrokerConfig,
    DynamicDefaultBrokerConfig,
    StaticBrokerConfig,
    Default,
    DynamicBrokerLoggerConfig,
    ClientMetricsConfig,
    GroupConfig,
}

impl ConfigSource {
    fn from_wire(source: i8) -> Self {
        match source {
            1 => ConfigSource::TopicConfig,
            2 => ConfigSource::DynamicBrokerConfig,
            3 => ConfigSource::DynamicDefaultBrokerConfig,
            4 => ConfigSource::StaticBrokerConfig,
            5 => ConfigSource::Default,
            6 => ConfigSource::DynamicBrokerLoggerConfig,
            7 => ConfigSource::ClientMetricsConfig,
            8 => ConfigSource::GroupConfig,
            _ => ConfigSource::Unknown,
        }
    }
}

/// One config entry of a described resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub read_only: bool,
    pub source: ConfigSource,
    pub is_sensitive: bool,
}

impl ConfigEntry {
    /// Whether the value is the built-in default (not set on the topic or broker).
    pub fn is_default(&self) -> bool {
        matches!(
            self.source,
            ConfigSource::Default | ConfigSource::StaticBrokerConfig
        )
    }
}

impl ConfigSource {
    /// Kafka's name for the source, as `kafka-configs` prints it in synonyms
    /// (`DYNAMIC_TOPIC_CONFIG`, `DEFAULT_CONFIG`, ...).
    pub fn kafka_name(self) -> &'static str {
        match self {
            ConfigSource::Unknown => "UNKNOWN",
            ConfigSource::TopicConfig => "DYNAMIC_TOPIC_CONFIG",
            ConfigSource::DynamicBrokerConfig => "DYNAMIC_BROKER_CONFIG",
            ConfigSource::DynamicDefaultBrokerConfig => "DYNAMIC_DEFAULT_BROKER_CONFIG",
            ConfigSource::StaticBrokerConfig => "STATIC_BROKER_CONFIG",
            ConfigSource::Default => "DEFAULT_CONFIG",
            ConfigSource::DynamicBrokerLoggerConfig => "DYNAMIC_BROKER_LOGGER_CONFIG",
            ConfigSource::ClientMetricsConfig => "CLIENT_METRICS_CONFIG",
            ConfigSource::GroupConfig => "GROUP_CONFIG",
        }
    }
}

/// One synonym of a described config: another name or level the value can come from, most
/// specific first (Kafka's `ConfigEntry.ConfigSynonym`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSynonym {
    pub name: String,
    pub value: Option<String>,
    pub source: ConfigSource,
}

/// A config entry with its synonyms (DescribeConfigs with `include_synonyms`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedConfig {
    pub entry: ConfigEntry,
    pub synonyms: Vec<ConfigSynonym>,
}

/// One change of an incremental config alteration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterConfigOp {
    Set {
        name: String,
        value: String,
    },
    /// Back to the default.
    Delete {
        name: String,
    },
    /// Add to a list-valued config.
    Append {
        name: String,
        value: String,
    },
    /// Remove from a list-valued config.
    Subtract {
        name: String,
        value: String,
    },
}

/// Which offset ListOffsets looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    /// The first offset whose timestamp is at or after this time (ms since the epoch).
    Timestamp(i64),
}

impl OffsetSpec {
    fn wire(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(timestamp_ms) => timestamp_ms,
        }
    }
}

/// An offset ListOffsets found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// -1 when no record matches a timestamp lookup.
    pub offset: Offset,
    pub timestamp_ms: i64,
    pub leader_epoch: i32,
}

/// Per-resource results.
pub type TopicResults = Vec<(String, Result<(), KafkaError>)>;

/// Admin calls over a [`Client`].
#[derive(Clone)]
pub struct Admin {
    client: Client,
}

impl Admin {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Every topic with its partitions, leaders, replicas and ISR.
    pub async fn describe_cluster(&self) -> Result<ClusterMetadata, ClientError> {
        self.client.fetch_metadata(None).await
    }

    /// The named topics' metadata; a missing topic gives an `UNKNOWN_TOPIC_OR_PARTITION` entry.
    pub async fn describe_topics(
        &self,
        topics: &[&str],
    ) -> Result<Vec<TopicMetadata>, ClientError> {
        Ok(self.client.fetch_metadata(Some(topics)).await?.topics)
    }

    /// Names of all topics, sorted.
    pub async fn list_topics(&self) -> Result<Vec<String>, ClientError> {
        Ok(self
            .describe_cluster()
            .await?
            .topics
            .into_iter()
            .map(|topic| topic.name)
            .collect())
    }

    /// Creates topics; one result per topic.
    pub async fn create_topics(
        &self,
        topics: &[NewTopic],
        validate_only: bool,
    ) -> Result<TopicResults, ClientError> {
        let request = CreateTopicsRequest::default()
            .with_topics(
                topics
                    .iter()
                    .map(|topic| {
                        CreatableTopic::default()
                            .with_name(topic_name(&topic.name))
                            .with_num_partitions(topic.partitions)
                            .with_replication_factor(topic.replication_factor)
                            .with_configs(
                                topic
                                    .configs
                                    .iter()
                                    .map(|(name, value)| {
                                        CreatableTopicConfig::default()
                                            .with_name(StrBytes::from_string(name.clone()))
                                            .with_value(Some(StrBytes::from_string(value.clone())))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
            .with_timeout_ms(ADMIN_TIMEOUT_MS)
            .with_validate_only(validate_only);
        let response = self.client.controller().await?.call(&request).await?;
        Ok(response
            .topics
            .into_iter()
            .map(|result| {
                let name = result.name.0.as_str().to_owned();
                let outcome = KafkaCode(result.error_code).into_result().map_err(|code| {
                    KafkaError::new(ApiKey::CreateTopics, code)
                        .with_resource(name.clone())
                        .with_message(result.error_message.as_ref().map(|m| m.as_str()))
                });
                (name, outcome)
            })
            .collect())
    }

    /// Creates one topic; its error code is the error.
    pub async fn create_topic(&self, topic: NewTopic) -> Result<(), ClientError> {
        let results = self.create_topics(&[topic], false).await?;
        first_result(results, ApiKey::CreateTopics)
    }

    /// Deletes topics by name; one result per topic.
    pub async fn delete_topics(&self, topics: &[&str]) -> Result<TopicResults, ClientError> {
        let connection = self.client.controller().await?;
        let version = connection.version(ApiKey::DeleteTopics)?;
        let mut request = DeleteTopicsRequest::default().with_timeout_ms(ADMIN_TIMEOUT_MS);
        if version >= 6 {
            request.topics = topics
                .iter()
                .map(|name| DeleteTopicState::default().with_name(Some(topic_name(name))))
                .collect();
        } else {
            request.topic_names = topics.iter().map(|name| topic_name(name)).collect();
        }
        let response = connection.call_versioned(&request, version).await?;
        Ok(response
            .responses
            .into_iter()
            .map(|result| {
                let name = result
                    .name
                    .map(|name| name.0.as_str().to_owned())
                    .unwrap_or_default();
                let outcome = KafkaCode(result.error_code).into_result().map_err(|code| {
                    KafkaError::new(ApiKey::DeleteTopics, code)
                        .with_resource(name.clone())
                        .with_message(result.error_message.as_ref().map(|m| m.as_str()))
                });
                (name, outcome)
            })
            .collect())
    }

    /// Deletes one topic.
    pub async fn delete_topic(&self, topic: &str) -> Result<(), ClientError> {
        let results = self.delete_topics(&[topic]).await?;
        first_result(results, ApiKey::DeleteTopics)
    }

    /// Grows `topic` to `total_partitions` partitions.
    pub async fn create_partitions(
        &self,
        topic: &str,
        total_partitions: i32,
    ) -> Result<(), ClientError> {
        let request = CreatePartitionsRequest::default()
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(topic))
                .with_count(total_partitions)
                .with_assignments(None)])
            .with_timeout_ms(ADMIN_TIMEOUT_MS);
        let response = self.client.controller().await?.call(&request).await?;
        let results = response
            .results
            .into_iter()
            .map(|result| {
                let name = result.name.0.as_str().to_owned();
                let outcome = KafkaCode(result.error_code).into_result().map_err(|code| {
                    KafkaError::new(ApiKey::CreatePartitions, code)
                        .with_resource(name.clone())
                        .with_message(result.error_message.as_ref().map(|m| m.as_str()))
                });
                (name, outcome)
            })
            .collect();
        first_result(results, ApiKey::CreatePartitions)
    }

    /// The config of one topic or broker (`keys`: only these names; `None`: all).
    pub async fn describe_configs(
        &self,
        resource_type: ResourceType,
        name: &str,
        keys: Option<&[&str]>,
    ) -> Result<Vec<ConfigEntry>, ClientError> {
        Ok(self
            .describe_configs_inner(resource_type, name, keys, false)
            .await?
            .into_iter()
            .map(|described| described.entry)
            .collect())
    }

    /// Every config of one topic or broker with its synonyms (what `kafka-configs --describe`
    /// prints). A broker's cluster-wide defaults are the broker resource named `""`.
    pub async fn describe_configs_with_synonyms(
        &self,
        resource_type: ResourceType,
        name: &str,
    ) -> Result<Vec<DescribedConfig>, ClientError> {
        self.describe_configs_inner(resource_type, name, None, true)
            .await
    }

    async fn describe_configs_inner(
        &self,
        resource_type: ResourceType,
        name: &str,
        keys: Option<&[&str]>,
        include_synonyms: bool,
    ) -> Result<Vec<DescribedConfig>, ClientError> {
        let request = DescribeConfigsRequest::default()
            .with_resources(vec![DescribeConfigsResource::default()
                .with_resource_type(resource_type.wire())
                .with_resource_name(StrBytes::from_string(name.to_owned()))
                .with_configuration_keys(keys.map(|keys| {
                    keys.iter()
                        .map(|key| StrBytes::from_string((*key).to_owned()))
                        .collect()
                }))])
            .with_include_synonyms(include_synonyms);
        let connection = match resource_type {
            ResourceType::Broker => match name.parse::<i32>() {
                Ok(id) => self.client.broker(NodeId(id)).await?,
                Err(_) => self.client.any_broker().await?,
            },
            ResourceType::Topic => self.client.controller().await?,
        };
        let response = connection.call(&request).await?;
        let result = response
            .results
            .into_iter()
            .next()
            .ok_or(ClientError::Frame {
                addr: connection.addr().to_owned(),
                reason: "DescribeConfigs answer without results",
            })?;
        KafkaCode(result.error_code).into_result().map_err(|code| {
            KafkaError::new(ApiKey::DescribeConfigs, code)
                .with_resource(name)
                .with_message(result.error_message.as_ref().map(|m| m.as_str()))
        })?;
        Ok(result
            .configs
            .into_iter()
            .map(|entry| DescribedConfig {
                synonyms: entry
                    .synonyms
                    .iter()
                    .map(|synonym| ConfigSynonym {
                        name: synonym.name.as_str().to_owned(),
                        value: synonym
                            .value
                            .as_ref()
                            .map(|value| value.as_str().to_owned()),
                        source: ConfigSource::from_wire(synonym.source),
                    })
                    .collect(),
                entry: ConfigEntry {
                    name: entry.name.as_str().to_owned(),
                    value: entry.value.map(|value| value.as_str().to_owned()),
                    read_only: entry.read_only,
                    source: ConfigSource::from_wire(entry.config_source),
                    is_sensitive: entry.is_sensitive,
                },
            })
            .collect())
    }

    /// Applies `changes` to one topic's or broker's config (IncrementalAlterConfigs).
    pub async fn alter_configs(
        &self,
        resource_type: ResourceType,
        name: &str,
        changes: &[AlterConfigOp],
    ) -> Result<(), ClientError> {
        let configs = changes
            .iter()
            .map(|change| {
                let (config_name, operation, value) = match change {
                    AlterConfigOp::Set { name, value } => (name, 0, Some(value)),
                    AlterConfigOp::Delete { name } => (name, 1, None),
                    AlterConfigOp::Append { name, value } => (name, 2, Some(value)),
                    AlterConfigOp::Subtract { name, value } => (name, 3, Some(value)),
                };
                AlterableConfig::default()
                    .with_name(StrBytes::from_string(config_name.clone()))
                    .with_config_operation(operation)
                    .with_value(value.map(|value| StrBytes::from_string(value.clone())))
            })
            .collect();
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(resource_type.wire())
                .with_resource_name(StrBytes::from_string(name.to_owned()))
                .with_configs(configs),
        ]);
        // A broker's own config goes to that broker (as Kafka's admin client routes it);
        // topics and the cluster-wide broker default go to the controller.
        let connection = match (resource_type, name.parse::<i32>()) {
            (ResourceType::Broker, Ok(id)) => self.client.broker(NodeId(id)).await?,
            _ => self.client.controller().await?,
        };
        let response = connection.call(&request).await?;
        for result in response.responses {
            KafkaCode(result.error_code).into_result().map_err(|code| {
                KafkaError::new(ApiKey::IncrementalAlterConfigs, code)
                    .with_resource(name)
                    .with_message(result.error_message.as_ref().map(|m| m.as_str()))
            })?;
        }
        Ok(())
    }

    /// Looks up offsets of `partitions` of `topic` on their leaders.
    pub async fn list_offsets(
        &self,
        topic: &str,
        partitions: &[PartitionId],
        spec: OffsetSpec,
    ) -> Result<Vec<(PartitionId, Result<ListedOffset, KafkaError>)>, ClientError> {
        let mut by_leader: HashMap<NodeId, Vec<PartitionId>> = HashMap::new();
        for &partition in partitions {
            let leader = self.client.leader(topic, partition).await?;
            by_leader.entry(leader).or_default().push(partition);
        }
        let mut results = Vec::with_capacity(partitions.len());
        for (leader, ids) in by_leader {
            let request = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_isolation_level(0)
                .with_timeout_ms(ADMIN_TIMEOUT_MS)
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(
                        ids.iter()
                            .map(|id| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(id.0)
                                    .with_current_leader_epoch(-1)
                                    .with_timestamp(spec.wire())
                            })
                            .collect(),
                    )]);
            let response = self.client.broker(leader).await?.call(&request).await?;
            for topic_answer in response.topics {
                for answer in topic_answer.partitions {
                    let id = PartitionId(answer.partition_index);
                    let outcome = KafkaCode(answer.error_code)
                        .into_result()
                        .map(|()| ListedOffset {
                            offset: Offset(answer.offset),
                            timestamp_ms: answer.timestamp,
                            leader_epoch: answer.leader_epoch,
                        })
                        .map_err(|code| {
                            KafkaError::new(ApiKey::ListOffsets, code)
                                .with_resource(format!("{topic}-{id}"))
                        });
                    results.push((id, outcome));
                }
            }
        }
        results.sort_by_key(|(id, _)| *id);
        Ok(results)
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

fn first_result(results: TopicResults, api: ApiKey) -> Result<(), ClientError> {
    match results.into_iter().next() {
        Some((_, Ok(()))) => Ok(()),
        Some((_, Err(error))) => Err(error.into()),
        None => Err(KafkaError::new(api, KafkaCode(-1))
            .with_message(Some("empty answer"))
            .into()),
    }
}
