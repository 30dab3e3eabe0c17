//! Metadata changes as pure functions: `apply(snapshot, op) -> (next snapshot, results)`.
//!
//! Only the metadata owner (shard 0) calls [`apply`]; it then persists and broadcasts the
//! next snapshot. Validation follows Kafka's controller: the same error codes and, where
//! clients show them, similar messages.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::names::{collision_key, validate_topic_name};
use super::topic_config::{find_topic_config, validate_topic_config, ConfigType};
use super::{ClusterMetadata, PartitionMeta, TopicMeta};
use crate::config::BrokerConfig;
use crate::protocol::KafkaError;
use crate::types::{NodeId, ShardId, TopicId};

/// Most partitions one topic may have. Each partition is a log with open files and an
/// in-memory tail, so a request for millions is refused instead of exhausting the host.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 10_000;

/// A per-topic failure, sent back as the topic's error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicError {
    /// Kafka error.
    pub code: KafkaError,
    /// Human-readable message (CreateTopics v1+, CreatePartitions, AlterConfigs carry one).
    pub message: Option<String>,
}

impl TopicError {
    fn new(code: KafkaError, message: impl Into<String>) -> TopicError {
        TopicError {
            code,
            message: Some(message.into()),
        }
    }
}

/// A topic to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    /// Name.
    pub name: String,
    /// Partitions, or -1 for `num.partitions`.
    pub num_partitions: i32,
    /// Replication factor, or -1 for `default.replication.factor`.
    pub replication_factor: i16,
    /// Manual assignment: (partition, replica node ids).
    pub assignments: Vec<(i32, Vec<i32>)>,
    /// Topic config overrides (a `None` value is invalid, as in Kafka).
    pub configs: Vec<(String, Option<String>)>,
}

impl NewTopic {
    /// A topic with broker defaults (auto-creation).
    pub fn with_defaults(name: String) -> NewTopic {
        NewTopic {
            name,
            num_partitions: -1,
            replication_factor: -1,
            assignments: Vec::new(),
            configs: Vec::new(),
        }
    }
}

/// CreatePartitions for one topic.
#[derive(Debug, Clone)]
pub struct PartitionGrowth {
    /// Topic name.
    pub topic: String,
    /// New total partition count.
    pub count: i32,
    /// Replica node ids for each new partition, if given.
    pub assignments: Option<Vec<Vec<i32>>>,
}

/// A topic named by name or by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicSelector {
    /// By name.
    Name(String),
    /// By id.
    Id(TopicId),
}

/// One incremental config change (IncrementalAlterConfigs op types 0-3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    /// SET
    Set(String, String),
    /// DELETE (back to the default)
    Delete(String),
    /// APPEND to a list config
    Append(String, String),
    /// SUBTRACT from a list config
    Subtract(String, String),
}

/// How a topic's configs are altered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigAlteration {
    /// AlterConfigs: the given set replaces every override.
    Replace(Vec<(String, Option<String>)>),
    /// IncrementalAlterConfigs.
    Incremental(Vec<ConfigChange>),
}

/// A metadata change request, sent to the owner over the mesh.
#[derive(Debug, Clone)]
pub enum MetadataOp {
    /// CreateTopics, and auto-creation (`if_not_exists`: an existing topic is success).
    CreateTopics {
        /// Topics.
        topics: Vec<NewTopic>,
        /// Check only.
        validate_only: bool,
        /// Existing topics are returned as success (auto-create races between shards).
        if_not_exists: bool,
    },
    /// DeleteTopics.
    DeleteTopics {
        /// Topics.
        topics: Vec<TopicSelector>,
    },
    /// CreatePartitions.
    CreatePartitions {
        /// Topics.
        topics: Vec<PartitionGrowth>,
        /// Check only.
        validate_only: bool,
    },
    /// AlterConfigs / IncrementalAlterConfigs on topics.
    AlterTopicConfigs {
        /// Topics and their changes.
        topics: Vec<(String, ConfigAlteration)>,
        /// Check only.
        validate_only: bool,
    },
}

/// Result for one topic of an op, in request order.
#[derive(Debug, Clone)]
pub struct TopicResult {
    /// Topic name as requested (empty for unknown ids).
    pub name: String,
    /// The topic after the change (or as it would be, for validate-only), or the error.
    pub outcome: Result<Arc<TopicMeta>, TopicError>,
}

/// What the owner needs to know besides the snapshot.
pub struct OpContext<'a> {
    /// Broker config (defaults for partitions, replication factor, configs).
    pub broker: &'a BrokerConfig,
    /// Shards in this process (partition placement).
    pub shard_count: usize,
    /// Brokers in the cluster (1 until clustering exists).
    pub live_brokers: &'a [NodeId],
}

/// Applies `op` to `current`. Returns the next snapshot (if anything changed) and one result
/// per requested topic.
pub fn apply(
    current: &ClusterMetadata,
    op: &MetadataOp,
    ctx: &OpContext<'_>,
) -> (Option<ClusterMetadata>, Vec<TopicResult>) {
    let mut next = current.clone();
    let results = match op {
        MetadataOp::CreateTopics {
            topics,
            validate_only,
            if_not_exists,
        } => create_topics(&mut next, topics, *validate_only, *if_not_exists, ctx),
        MetadataOp::DeleteTopics { topics } => delete_topics(&mut next, topics),
        MetadataOp::CreatePartitions {
            topics,
            validate_only,
        } => create_partitions(&mut next, topics, *validate_only, ctx),
        MetadataOp::AlterTopicConfigs {
            topics,
            validate_only,
        } => alter_configs(&mut next, topics, *validate_only),
    };
    let changed = next.topics != current.topics;
    if changed {
        next.version = current.version + 1;
        (Some(next), results)
    } else {
        (None, results)
    }
}

fn duplicates<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<&'a str, usize> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for name in names {
        *counts.entry(name).or_default() += 1;
    }
    counts.retain(|_, count| *count > 1);
    counts
}

fn place_partitions(
    next: &ClusterMetadata,
    count: usize,
    shard_count: usize,
) -> Vec<PartitionMeta> {
    let mut load = next.partitions_per_shard(shard_count.max(1));
    (0..count)
        .map(|_| {
            // Least-loaded shard, lowest id on ties: deterministic for a given snapshot.
            let (shard, _) = load
                .iter()
                .enumerate()
                .min_by_key(|(index, count)| (**count, *index))
                .unwrap_or((0, &0));
            if let Some(slot) = load.get_mut(shard) {
                *slot += 1;
            }
            PartitionMeta {
                shard: ShardId(shard),
                leader_epoch: 0,
            }
        })
        .collect()
}

fn check_replication_factor(rf: i16, ctx: &OpContext<'_>) -> Result<(), TopicError> {
    if rf <= 0 {
        return Err(TopicError::new(
            KafkaError::InvalidReplicationFactor,
            "Replication factor must be larger than 0, or -1 to use the default value.",
        ));
    }
    let brokers = ctx.live_brokers.len();
    if usize::try_from(rf).unwrap_or(usize::MAX) > brokers {
        return Err(TopicError::new(
            KafkaError::InvalidReplicationFactor,
            format!(
                "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {brokers} broker(s) are registered."
            ),
        ));
    }
    Ok(())
}

fn check_replicas(replicas: &[i32], ctx: &OpContext<'_>) -> Result<(), TopicError> {
    if replicas.is_empty() {
        return Err(TopicError::new(
            KafkaError::InvalidReplicaAssignment,
            "A partition's replica list is empty.",
        ));
    }
    for replica in replicas {
        if !ctx.live_brokers.iter().any(|node| node.0 == *replica) {
            return Err(TopicError::new(
                KafkaError::InvalidReplicaAssignment,
                format!("Replica assignment references unknown broker {replica}."),
            ));
        }
    }
    let mut sorted = replicas.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != replicas.len() {
        return Err(TopicError::new(
            KafkaError::InvalidReplicaAssignment,
            "Replica assignment contains duplicate brokers.",
        ));
    }
    Ok(())
}

fn check_partition_count(count: i32) -> Result<(), TopicError> {
    if count <= 0 {
        return Err(TopicError::new(
            KafkaError::InvalidPartitions,
            "Number of partitions was set to an invalid non-positive value.",
        ));
    }
    if count > MAX_PARTITIONS_PER_TOPIC {
        return Err(TopicError::new(
            KafkaError::InvalidPartitions,
            format!("Number of partitions {count} exceeds the maximum of {MAX_PARTITIONS_PER_TOPIC} per topic."),
        ));
    }
    Ok(())
}

fn validate_new_topic(
    next: &ClusterMetadata,
    topic: &NewTopic,
    ctx: &OpContext<'_>,
) -> Result<(i32, BTreeMap<String, String>), TopicError> {
    validate_topic_name(&topic.name)
        .map_err(|e| TopicError::new(KafkaError::InvalidTopicException, e.message(&topic.name)))?;
    if next.topic(&topic.name).is_some() {
        return Err(TopicError::new(
            KafkaError::TopicAlreadyExists,
            format!("Topic '{}' already exists.", topic.name),
        ));
    }
    let key = collision_key(&topic.name);
    if let Some(existing) = next.topics.keys().find(|name| collision_key(name) == key) {
        return Err(TopicError::new(
            KafkaError::InvalidTopicException,
            format!(
                "Topic '{}' collides with existing topic: {existing}",
                topic.name
            ),
        ));
    }
    let partitions = if topic.assignments.is_empty() {
        let rf = if topic.replication_factor == -1 {
            ctx.broker.default_replication_factor
        } else {
            topic.replication_factor
        };
        check_replication_factor(rf, ctx)?;
        let count = if topic.num_partitions == -1 {
            ctx.broker.num_partitions
        } else {
            topic.num_partitions
        };
        check_partition_count(count)?;
        count
    } else {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err(TopicError::new(
                KafkaError::InvalidRequest,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
            ));
        }
        let count = i32::try_from(topic.assignments.len()).unwrap_or(i32::MAX);
        check_partition_count(count)?;
        let mut indexes: Vec<i32> = topic.assignments.iter().map(|(p, _)| *p).collect();
        indexes.sort_unstable();
        if indexes
            .iter()
            .enumerate()
            .any(|(i, p)| i64::from(*p) != i as i64)
        {
            return Err(TopicError::new(
                KafkaError::InvalidReplicaAssignment,
                "Partitions should be a consecutive 0-based integer sequence.",
            ));
        }
        for (_, replicas) in &topic.assignments {
            check_replicas(replicas, ctx)?;
        }
        count
    };
    let mut configs = BTreeMap::new();
    for (name, value) in &topic.configs {
        validate_topic_config(name, value.as_deref())
            .map_err(|e| TopicError::new(KafkaError::InvalidConfig, e.0))?;
        if let Some(value) = value {
            configs.insert(name.clone(), value.trim().to_string());
        }
    }
    Ok((partitions, configs))
}

fn create_topics(
    next: &mut ClusterMetadata,
    topics: &[NewTopic],
    validate_only: bool,
    if_not_exists: bool,
    ctx: &OpContext<'_>,
) -> Vec<TopicResult> {
    let dupes = duplicates(topics.iter().map(|t| t.name.as_str()));
    let mut results = Vec::with_capacity(topics.len());
    for topic in topics {
        if dupes.contains_key(topic.name.as_str()) {
            results.push(TopicResult {
                name: topic.name.clone(),
                outcome: Err(TopicError::new(
                    KafkaError::InvalidRequest,
                    format!(
                        "Create topics request from client contains multiple entries for topic {}",
                        topic.name
                    ),
                )),
            });
            continue;
        }
        if if_not_exists {
            if let Some(existing) = next.topic(&topic.name) {
                results.push(TopicResult {
                    name: topic.name.clone(),
                    outcome: Ok(existing.clone()),
                });
                continue;
            }
        }
        let outcome = validate_new_topic(next, topic, ctx).map(|(count, configs)| {
            let count = usize::try_from(count).unwrap_or(0);
            let created = Arc::new(TopicMeta {
                name: topic.name.clone(),
                id: TopicId::random(),
                partitions: place_partitions(next, count, ctx.shard_count),
                configs,
            });
            if !validate_only {
                next.insert_topic(created.clone());
            }
            created
        });
        results.push(TopicResult {
            name: topic.name.clone(),
            outcome,
        });
    }
    results
}

fn delete_topics(next: &mut ClusterMetadata, topics: &[TopicSelector]) -> Vec<TopicResult> {
    topics
        .iter()
        .map(|selector| {
            let found = match selector {
                TopicSelector::Name(name) => next.topic(name).cloned().ok_or_else(|| TopicError {
                    code: KafkaError::UnknownTopicOrPartition,
                    message: Some("This server does not host this topic-partition.".into()),
                }),
                TopicSelector::Id(id) => next.topic_by_id(*id).cloned().ok_or_else(|| TopicError {
                    code: KafkaError::UnknownTopicId,
                    message: Some("This server does not host this topic ID.".into()),
                }),
            };
            let name = match (selector, &found) {
                (_, Ok(topic)) => topic.name.clone(),
                (TopicSelector::Name(name), Err(_)) => name.clone(),
                (TopicSelector::Id(_), Err(_)) => String::new(),
            };
            if let Ok(topic) = &found {
                next.remove_topic(&topic.name);
            }
            TopicResult {
                name,
                outcome: found,
            }
        })
        .collect()
}

fn create_partitions(
    next: &mut ClusterMetadata,
    topics: &[PartitionGrowth],
    validate_only: bool,
    ctx: &OpContext<'_>,
) -> Vec<TopicResult> {
    let dupes = duplicates(topics.iter().map(|growth| growth.topic.as_str()));
    let mut results = Vec::with_capacity(topics.len());
    for PartitionGrowth {
        topic: name,
        count,
        assignments,
    } in topics
    {
        let outcome = (|| {
            if dupes.contains_key(name.as_str()) {
                return Err(TopicError::new(
                    KafkaError::InvalidRequest,
                    "Duplicate topic in request.",
                ));
            }
            let Some(topic) = next.topic(name).cloned() else {
                return Err(TopicError::new(
                    KafkaError::UnknownTopicOrPartition,
                    format!("The topic '{name}' does not exist."),
                ));
            };
            let current = topic.partition_count();
            if *count < current {
                return Err(TopicError::new(
                    KafkaError::InvalidPartitions,
                    format!("Topic currently has {current} partitions, which is higher than the requested {count}."),
                ));
            }
            if *count == current {
                return Err(TopicError::new(
                    KafkaError::InvalidPartitions,
                    format!("Topic already has {current} partitions."),
                ));
            }
            check_partition_count(*count)?;
            let added = usize::try_from(count - current).unwrap_or(0);
            if let Some(assignments) = assignments {
                if assignments.len() != added {
                    return Err(TopicError::new(
                        KafkaError::InvalidReplicaAssignment,
                        format!(
                            "Increasing the number of partitions by {added} but {} assignments provided.",
                            assignments.len()
                        ),
                    ));
                }
                for replicas in assignments {
                    check_replicas(replicas, ctx)?;
                }
            }
            let mut updated = (*topic).clone();
            updated
                .partitions
                .extend(place_partitions(next, added, ctx.shard_count));
            let updated = Arc::new(updated);
            if !validate_only {
                next.insert_topic(updated.clone());
            }
            Ok(updated)
        })();
        results.push(TopicResult {
            name: name.clone(),
            outcome,
        });
    }
    results
}

fn apply_alteration(
    current: &BTreeMap<String, String>,
    alteration: &ConfigAlteration,
) -> Result<BTreeMap<String, String>, TopicError> {
    let invalid = |message: String| TopicError::new(KafkaError::InvalidConfig, message);
    match alteration {
        ConfigAlteration::Replace(entries) => {
            let mut configs = BTreeMap::new();
            for (name, value) in entries {
                validate_topic_config(name, value.as_deref()).map_err(|e| invalid(e.0))?;
                if let Some(value) = value {
                    configs.insert(name.clone(), value.trim().to_string());
                }
            }
            Ok(configs)
        }
        ConfigAlteration::Incremental(changes) => {
            let mut configs = current.clone();
            for change in changes {
                match change {
                    ConfigChange::Set(name, value) => {
                        validate_topic_config(name, Some(value)).map_err(|e| invalid(e.0))?;
                        configs.insert(name.clone(), value.trim().to_string());
                    }
                    ConfigChange::Delete(name) => {
                        if find_topic_config(name).is_none() {
                            return Err(invalid(format!("Unknown topic config name: {name}")));
                        }
                        configs.remove(name);
                    }
                    ConfigChange::Append(name, value) | ConfigChange::Subtract(name, value) => {
                        let def = find_topic_config(name)
                            .ok_or_else(|| invalid(format!("Unknown topic config name: {name}")))?;
                        if def.config_type != ConfigType::List {
                            return Err(invalid(format!(
                                "Config value append/subtract is not allowed for config key {name}: it is not a list"
                            )));
                        }
                        let existing = configs
                            .get(name)
                            .cloned()
                            .unwrap_or_else(|| def.default.to_string());
                        let mut items: Vec<String> = existing
                            .split(',')
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty())
                            .collect();
                        let given: Vec<String> =
                            value.split(',').map(|s| s.trim().to_string()).collect();
                        if matches!(change, ConfigChange::Append(..)) {
                            for item in given {
                                if !items.contains(&item) {
                                    items.push(item);
                                }
                            }
                        } else {
                            items.retain(|item| !given.contains(item));
                        }
                        let joined = items.join(",");
                        validate_topic_config(name, Some(&joined)).map_err(|e| invalid(e.0))?;
                        configs.insert(name.clone(), joined);
                    }
                }
            }
            Ok(configs)
        }
    }
}

fn alter_configs(
    next: &mut ClusterMetadata,
    topics: &[(String, ConfigAlteration)],
    validate_only: bool,
) -> Vec<TopicResult> {
    topics
        .iter()
        .map(|(name, alteration)| {
            let outcome = match next.topic(name).cloned() {
                None => Err(TopicError::new(
                    KafkaError::UnknownTopicOrPartition,
                    format!("The topic '{name}' does not exist."),
                )),
                Some(topic) => apply_alteration(&topic.configs, alteration).map(|configs| {
                    let mut updated = (*topic).clone();
                    updated.configs = configs;
                    let updated = Arc::new(updated);
                    if !validate_only {
                        next.insert_topic(updated.clone());
                    }
                    updated
                }),
            };
            TopicResult {
                name: name.clone(),
                outcome,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(broker: &BrokerConfig) -> OpContext<'_> {
        OpContext {
            broker,
            shard_count: 2,
            live_brokers: &[NodeId(1)],
        }
    }

    fn create(
        meta: &ClusterMetadata,
        topics: Vec<NewTopic>,
        broker: &BrokerConfig,
    ) -> (Option<ClusterMetadata>, Vec<TopicResult>) {
        apply(
            meta,
            &MetadataOp::CreateTopics {
                topics,
                validate_only: false,
                if_not_exists: false,
            },
            &ctx(broker),
        )
    }

    fn topic(name: &str, partitions: i32, rf: i16) -> NewTopic {
        NewTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: rf,
            assignments: vec![],
            configs: vec![],
        }
    }

    fn grow(topic: &str, count: i32) -> PartitionGrowth {
        PartitionGrowth {
            topic: topic.into(),
            count,
            assignments: None,
        }
    }

    fn code(result: &TopicResult) -> Option<KafkaError> {
        result.outcome.as_ref().err().map(|e| e.code)
    }

    #[test]
    fn create_places_partitions_evenly_and_bumps_version() {
        let broker = BrokerConfig::defaults();
        let meta = ClusterMetadata::new(1, "c".into(), vec![]);
        let (next, results) = create(&meta, vec![topic("a", 3, 1), topic("b", -1, -1)], &broker);
        let next = next.expect("changed");
        assert_eq!(next.version, 2);
        assert!(results.iter().all(|r| r.outcome.is_ok()));
        let a = next.topic("a").expect("a");
        let shards: Vec<usize> = a.partitions.iter().map(|p| p.shard.0).collect();
        assert_eq!(shards, vec![0, 1, 0]);
        assert_eq!(next.topic("b").expect("b").partition_count(), 1);
        assert_eq!(
            next.shard_of("b", crate::types::PartitionIndex(0)),
            Some(ShardId(1))
        );
    }

    #[test]
    fn create_errors_match_kafka() {
        let broker = BrokerConfig::defaults();
        let meta = ClusterMetadata::new(1, "c".into(), vec![]);
        let (meta, _) = create(
            &meta,
            vec![topic("exists", 1, 1), topic("col.x", 1, 1)],
            &broker,
        );
        let meta = meta.expect("created");
        let mut bad_config = topic("cfg", 1, 1);
        bad_config.configs = vec![("cleanup.policy".into(), Some("shred".into()))];
        let (next, results) = create(
            &meta,
            vec![
                topic("exists", 1, 1),
                topic("bad name", 1, 1),
                topic("zero", 0, 1),
                topic("rf3", 1, 3),
                topic("rf0", 1, 0),
                bad_config,
                topic("dup", 1, 1),
                topic("dup", 1, 1),
                topic("huge", i32::MAX, 1),
                topic("col_x", 1, 1),
            ],
            &broker,
        );
        assert!(next.is_none(), "nothing valid, nothing changed");
        let codes: Vec<Option<KafkaError>> = results.iter().map(code).collect();
        assert_eq!(
            codes,
            vec![
                Some(KafkaError::TopicAlreadyExists),
                Some(KafkaError::InvalidTopicException),
                Some(KafkaError::InvalidPartitions),
                Some(KafkaError::InvalidReplicationFactor),
                Some(KafkaError::InvalidReplicationFactor),
                Some(KafkaError::InvalidConfig),
                Some(KafkaError::InvalidRequest),
                Some(KafkaError::InvalidRequest),
                Some(KafkaError::InvalidPartitions),
                Some(KafkaError::InvalidTopicException),
            ]
        );
    }

    #[test]
    fn validate_only_changes_nothing() {
        let broker = BrokerConfig::defaults();
        let meta = ClusterMetadata::new(1, "c".into(), vec![]);
        let (next, results) = apply(
            &meta,
            &MetadataOp::CreateTopics {
                topics: vec![topic("a", 2, 1)],
                validate_only: true,
                if_not_exists: false,
            },
            &ctx(&broker),
        );
        assert!(next.is_none());
        assert_eq!(
            results[0].outcome.as_ref().expect("ok").partition_count(),
            2
        );
    }

    #[test]
    fn delete_partitions_and_configs() {
        let broker = BrokerConfig::defaults();
        let meta = ClusterMetadata::new(1, "c".into(), vec![]);
        let (meta, _) = create(&meta, vec![topic("a", 1, 1)], &broker);
        let meta = meta.expect("created");
        let c = ctx(&broker);

        let (next, results) = apply(
            &meta,
            &MetadataOp::CreatePartitions {
                topics: vec![grow("a", 3), grow("a2", 3)],
                validate_only: false,
            },
            &c,
        );
        let next = next.expect("grown");
        assert_eq!(next.topic("a").expect("a").partition_count(), 3);
        assert_eq!(code(&results[1]), Some(KafkaError::UnknownTopicOrPartition));
        let (_, results) = apply(
            &next,
            &MetadataOp::CreatePartitions {
                topics: vec![grow("a", 2)],
                validate_only: false,
            },
            &c,
        );
        assert_eq!(code(&results[0]), Some(KafkaError::InvalidPartitions));

        let (next, results) = apply(
            &next,
            &MetadataOp::AlterTopicConfigs {
                topics: vec![(
                    "a".into(),
                    ConfigAlteration::Incremental(vec![
                        ConfigChange::Set("retention.ms".into(), "1000".into()),
                        ConfigChange::Set("segment.bytes".into(), "1048576".into()),
                    ]),
                )],
                validate_only: false,
            },
            &c,
        );
        let next = next.expect("altered");
        assert!(results[0].outcome.is_ok());
        assert_eq!(next.topic("a").expect("a").configs.len(), 2);
        let (next, _) = apply(
            &next,
            &MetadataOp::AlterTopicConfigs {
                topics: vec![(
                    "a".into(),
                    ConfigAlteration::Incremental(vec![ConfigChange::Delete(
                        "retention.ms".into(),
                    )]),
                )],
                validate_only: false,
            },
            &c,
        );
        let next = next.expect("altered");
        assert_eq!(next.topic("a").expect("a").configs.len(), 1);
        let (next, _) = apply(
            &next,
            &MetadataOp::AlterTopicConfigs {
                topics: vec![("a".into(), ConfigAlteration::Replace(vec![]))],
                validate_only: false,
            },
            &c,
        );
        assert!(next
            .expect("cleared")
            .topic("a")
            .expect("a")
            .configs
            .is_empty());

        let id = meta.topic("a").expect("a").id;
        let (next, results) = apply(
            &meta,
            &MetadataOp::DeleteTopics {
                topics: vec![TopicSelector::Id(id), TopicSelector::Name("nope".into())],
            },
            &c,
        );
        assert!(next.expect("deleted").topics.is_empty());
        assert_eq!(results[0].name, "a");
        assert_eq!(code(&results[1]), Some(KafkaError::UnknownTopicOrPartition));
    }

    #[test]
    fn auto_create_is_idempotent() {
        let broker = BrokerConfig::defaults();
        let meta = ClusterMetadata::new(1, "c".into(), vec![]);
        let op = MetadataOp::CreateTopics {
            topics: vec![NewTopic::with_defaults("auto".into())],
            validate_only: false,
            if_not_exists: true,
        };
        let (next, first) = apply(&meta, &op, &ctx(&broker));
        let next = next.expect("created");
        let (again, second) = apply(&next, &op, &ctx(&broker));
        assert!(again.is_none());
        assert_eq!(
            first[0].outcome.as_ref().expect("ok").id,
            second[0].outcome.as_ref().expect("ok").id
        );
    }
}
