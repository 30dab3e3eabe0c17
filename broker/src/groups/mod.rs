//! Consumer groups and committed offsets (Kafka's classic group protocol).
//!
//! # Layout
//! - [`api`]: the coordinator's request and answer types (`Send`, they cross the mesh) and its
//!   settings.
//! - [`state`]: one group's members, generations and rebalance state machine (join, sync,
//!   heartbeat, leave, timeouts, static membership).
//! - [`records`]: Kafka's `__consumer_offsets` key/value schemas and the group -> partition
//!   hash.
//! - [`coordinator`]: the per-shard coordinator: replay from the log, writes before answers,
//!   timers and offset expiry.
//!
//! Placement: a group belongs to `__consumer_offsets` partition
//! `abs(java_hash(group id)) % partitions`, and its coordinator lives on the shard that owns
//! that partition. The handlers call [`call`], which forwards over the mesh when that shard
//! is another one (as produce does). The topic is created (compacted, 50 partitions by
//! default) on first use.

pub mod api;
pub mod coordinator;
pub mod records;
pub mod state;

use std::rc::Rc;
use std::sync::Arc;

use tracing::{info, warn};

use crate::metadata::ops::{MetadataOp, NewTopic};
use crate::metadata::TopicMeta;
use crate::protocol::KafkaError;
use crate::shard::messages::{MeshReply, MeshRequest};
use crate::shard::Shard;
use crate::types::{PartitionIndex, ShardId};
use api::{GroupReply, GroupRequest, ListedGroup};
pub use coordinator::GroupCoordinator;

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Kafka's `offsets.topic.segment.bytes` default (100 MiB).
const OFFSETS_TOPIC_SEGMENT_BYTES: &str = "104857600";

/// The `__consumer_offsets` topic, created with Kafka's settings if it does not exist yet.
pub async fn offsets_topic(shard: &Rc<Shard>) -> Result<Arc<TopicMeta>, KafkaError> {
    if let Some(topic) = shard.metadata().topic(OFFSETS_TOPIC) {
        return Ok(topic.clone());
    }
    let brokers = i16::try_from(shard.live_brokers().len()).unwrap_or(i16::MAX);
    let replication_factor = shard
        .config
        .offsets_topic_replication_factor
        .min(brokers.max(1));
    let op = MetadataOp::CreateTopics {
        topics: vec![NewTopic {
            name: OFFSETS_TOPIC.to_string(),
            num_partitions: shard.config.offsets_topic_num_partitions,
            replication_factor,
            assignments: Vec::new(),
            configs: vec![
                ("cleanup.policy".to_string(), Some("compact".to_string())),
                (
                    "segment.bytes".to_string(),
                    Some(OFFSETS_TOPIC_SEGMENT_BYTES.to_string()),
                ),
            ],
        }],
        validate_only: false,
        if_not_exists: true,
    };
    match shard.change_metadata(op).await {
        Ok(results) => match results.into_iter().next().map(|r| r.outcome) {
            Some(Ok(topic)) => {
                info!(
                    partitions = topic.partition_count(),
                    "created {OFFSETS_TOPIC}"
                );
                Ok(topic)
            }
            Some(Err(error)) => {
                warn!(?error, "cannot create {OFFSETS_TOPIC}");
                Err(KafkaError::CoordinatorNotAvailable)
            }
            None => Err(KafkaError::CoordinatorNotAvailable),
        },
        Err(failure) => {
            warn!(?failure, "cannot create {OFFSETS_TOPIC}");
            Err(KafkaError::CoordinatorNotAvailable)
        }
    }
}

/// A group's `__consumer_offsets` partition and the shard that owns it.
pub async fn locate(shard: &Rc<Shard>, group_id: &str) -> Result<(i32, ShardId), KafkaError> {
    let topic = offsets_topic(shard).await?;
    let partition = records::partition_for_group(group_id, topic.partition_count());
    let owner = topic
        .partition(PartitionIndex(partition))
        .map(|meta| meta.shard)
        .ok_or(KafkaError::CoordinatorNotAvailable)?;
    Ok((partition, owner))
}

/// Sends a request to the coordinator of `group_id`, here or on its shard.
pub async fn call(shard: &Rc<Shard>, group_id: &str, request: GroupRequest) -> GroupReply {
    match locate(shard, group_id).await {
        Ok((partition, owner)) => call_partition(shard, partition, owner, request).await,
        Err(error) => GroupReply::Failed(error),
    }
}

/// Sends a request to the coordinator of `partition` on shard `owner`.
pub async fn call_partition(
    shard: &Rc<Shard>,
    partition: i32,
    owner: ShardId,
    request: GroupRequest,
) -> GroupReply {
    if owner == shard.id {
        return shard.serve_group_request(partition, request).await;
    }
    match shard
        .mesh
        .call(owner, MeshRequest::Group { partition, request })
        .await
    {
        Ok(MeshReply::Group(reply)) => reply,
        Ok(_) => GroupReply::Failed(KafkaError::UnknownServerError),
        Err(error) => {
            warn!(shard = %shard.id, peer = %owner, %error, "group request not delivered");
            GroupReply::Failed(KafkaError::CoordinatorNotAvailable)
        }
    }
}

/// Every group on every shard (ListGroups).
pub async fn list_all(shard: &Rc<Shard>) -> Result<Vec<ListedGroup>, KafkaError> {
    let mut all = Vec::new();
    for peer in 0..shard.shard_count {
        match call_partition(shard, -1, ShardId(peer), GroupRequest::List).await {
            GroupReply::List(groups) => all.extend(groups),
            GroupReply::Failed(error) => return Err(error),
            _ => return Err(KafkaError::UnknownServerError),
        }
    }
    all.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    Ok(all)
}

/// `Some(s)` unless empty.
pub fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}
