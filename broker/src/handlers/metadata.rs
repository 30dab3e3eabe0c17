//! Metadata (key 3): brokers, cluster id, controller, topics with ids and partitions.
//! Unknown topics are auto-created when the request allows it and
//! `auto.create.topics.enable` is true.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{ApiKey, BrokerId, MetadataRequest, MetadataResponse, TopicName};
use tracing::debug;

use super::{
    encode, owner_failure_error, str_bytes, ApiSpec, HandlerError, HandlerFuture, Ordering,
    Response,
};
use crate::metadata::names::validate_topic_name;
use crate::metadata::ops::{MetadataOp, NewTopic, TopicError};
use crate::metadata::TopicMeta;
use crate::protocol::request::{decode_body, RequestHead};
use crate::protocol::KafkaError;
use crate::shard::Shard;
use crate::types::{NodeId, TopicId};

/// Metadata 0-12.
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::Metadata,
    min_version: 0,
    max_version: 12,
    ordering: Ordering::Pipelined,
    handle: boxed,
};

fn boxed(shard: Rc<Shard>, head: RequestHead, body: Bytes) -> HandlerFuture {
    Box::pin(handle(shard, head, body))
}

/// What the request asked for, one entry per requested topic.
enum Wanted {
    Name(String),
    Id(TopicId),
}

async fn handle(
    shard: Rc<Shard>,
    head: RequestHead,
    body: Bytes,
) -> Result<Response, HandlerError> {
    let request: MetadataRequest = decode_body(&head, body)?;
    let version = head.api_version;
    let node = shard.config.node_id;

    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let wanted: Option<Vec<Wanted>> = match &request.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(
            topics
                .iter()
                .map(|t| match &t.name {
                    Some(name) => Wanted::Name(name.to_string()),
                    None => Wanted::Id(TopicId(t.topic_id)),
                })
                .collect(),
        ),
    };
    // v0-3 have no flag and always allow auto-creation.
    let allow_auto_create = shard.config.auto_create_topics_enable
        && (version < 4 || request.allow_auto_topic_creation);

    let mut topics = Vec::new();
    match wanted {
        None => {
            let snapshot = shard.metadata();
            for topic in snapshot.topics.values() {
                topics.push(topic_entry(topic, node, version));
            }
        }
        Some(wanted) => {
            let snapshot = shard.metadata();
            // Auto-create every missing, validly named topic in one owner round trip.
            let missing: Vec<String> = wanted
                .iter()
                .filter_map(|w| match w {
                    Wanted::Name(name)
                        if snapshot.topic(name).is_none() && validate_topic_name(name).is_ok() =>
                    {
                        Some(name.clone())
                    }
                    _ => None,
                })
                .collect();
            let mut creation_errors: Vec<(String, TopicError)> = Vec::new();
            if allow_auto_create && !missing.is_empty() {
                debug!(topics = ?missing, "auto-creating topics from a Metadata request");
                let op = MetadataOp::CreateTopics {
                    topics: missing
                        .iter()
                        .cloned()
                        .map(NewTopic::with_defaults)
                        .collect(),
                    validate_only: false,
                    if_not_exists: true,
                };
                match shard.change_metadata(op).await {
                    Ok(results) => {
                        for result in results {
                            if let Err(err) = result.outcome {
                                creation_errors.push((result.name, err));
                            }
                        }
                    }
                    Err(failure) => {
                        let err = owner_failure_error(failure);
                        for name in &missing {
                            creation_errors.push((name.clone(), err.clone()));
                        }
                    }
                }
            }
            let snapshot = shard.metadata();
            for w in &wanted {
                let entry = match w {
                    Wanted::Name(name) => match snapshot.topic(name) {
                        Some(topic) => topic_entry(topic, node, version),
                        None => {
                            let code = if let Some((_, err)) =
                                creation_errors.iter().find(|(n, _)| n == name)
                            {
                                err.code
                            } else if validate_topic_name(name).is_err() {
                                KafkaError::InvalidTopicException
                            } else {
                                KafkaError::UnknownTopicOrPartition
                            };
                            error_entry(Some(name), None, code)
                        }
                    },
                    Wanted::Id(id) => match snapshot.topic_by_id(*id) {
                        Some(topic) => topic_entry(topic, node, version),
                        // The name is nullable only from v12.
                        None if version < 12 => {
                            error_entry(Some(""), Some(*id), KafkaError::UnknownTopicId)
                        }
                        None => error_entry(None, Some(*id), KafkaError::UnknownTopicId),
                    },
                };
                topics.push(entry);
            }
        }
    }

    let advertised = &shard.advertised;
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(node.0))
        .with_host(str_bytes(&advertised.host))
        .with_port(i32::from(advertised.port));
    let mut response = MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_topics(topics);
    if version >= 1 {
        response.controller_id = BrokerId(node.0);
    }
    if version >= 2 {
        response.cluster_id = Some(str_bytes(&shard.metadata().cluster_id));
    }
    encode(&head, &response)
}

/// A topic's metadata entry: this node leads every partition (single broker).
pub fn topic_entry(topic: &TopicMeta, node: NodeId, version: i16) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, partition)| {
            MetadataResponsePartition::default()
                .with_partition_index(i32::try_from(index).unwrap_or(i32::MAX))
                .with_leader_id(BrokerId(node.0))
                .with_leader_epoch(partition.leader_epoch)
                .with_replica_nodes(vec![BrokerId(node.0)])
                .with_isr_nodes(vec![BrokerId(node.0)])
        })
        .collect();
    let mut entry = MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(&topic.name))))
        .with_is_internal(topic.is_internal())
        .with_partitions(partitions);
    if version >= 10 {
        entry.topic_id = topic.id.0;
    }
    entry
}

fn error_entry(name: Option<&str>, id: Option<TopicId>, code: KafkaError) -> MetadataResponseTopic {
    let mut entry = MetadataResponseTopic::default()
        .with_error_code(code.code())
        .with_name(name.map(|n| TopicName(str_bytes(n))));
    if let Some(id) = id {
        entry.topic_id = id.0;
    }
    entry
}
