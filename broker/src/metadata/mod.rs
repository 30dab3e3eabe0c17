//! Cluster metadata: topics, topic ids, partition counts, per-topic configs and the
//! partition -> shard map.
//!
//! Shard 0 owns it (the "metadata owner"): every change is applied there ([`ops`]),
//! persisted atomically to the data dir ([`store`]), then sent to every shard as an
//! immutable snapshot (`Arc<ClusterMetadata>`), which each shard swaps in. Readers on any
//! shard only ever see a whole snapshot; there is no shared mutable state.
//!
//! - [`names`]: topic name rules.
//! - [`topic_config`]: topic-level configs, defaults, validation, effective values.
//! - [`ops`]: create/delete topics, create partitions, alter configs (pure functions).
//! - [`store`]: the JSON file in the data dir and its atomic replacement.

pub mod names;
pub mod ops;
pub mod store;
pub mod topic_config;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::types::{PartitionIndex, ShardId, TopicId};

/// One partition's placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionMeta {
    /// The shard that owns this partition's log.
    pub shard: ShardId,
    /// Current leader epoch (0 on a single broker; bumped by leadership changes later).
    pub leader_epoch: i32,
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    /// Topic name.
    pub name: String,
    /// Topic id (KIP-516).
    pub id: TopicId,
    /// Partitions, indexed by partition number.
    pub partitions: Vec<PartitionMeta>,
    /// Topic-level config overrides (validated names and values).
    pub configs: BTreeMap<String, String>,
}

impl TopicMeta {
    /// Partition count.
    pub fn partition_count(&self) -> i32 {
        i32::try_from(self.partitions.len()).unwrap_or(i32::MAX)
    }

    /// A partition's placement, if it exists.
    pub fn partition(&self, index: PartitionIndex) -> Option<&PartitionMeta> {
        usize::try_from(index.0)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }

    /// Kafka-internal topics (`__consumer_offsets`).
    pub fn is_internal(&self) -> bool {
        is_internal_topic(&self.name)
    }
}

/// An immutable snapshot of cluster metadata. Shared as `Arc` between shards, never mutated
/// after it is built.
#[derive(Debug, Clone, Default)]
pub struct ClusterMetadata {
    /// Bumped by every change; shards ignore snapshots older than the one they hold.
    pub version: u64,
    /// Cluster id (persisted in the data dir).
    pub cluster_id: String,
    /// Topics by name.
    pub topics: BTreeMap<String, Arc<TopicMeta>>,
    /// Topic names by id.
    pub topic_ids: HashMap<TopicId, String>,
}

impl ClusterMetadata {
    /// Builds a snapshot and its id index.
    pub fn new(version: u64, cluster_id: String, topics: Vec<TopicMeta>) -> ClusterMetadata {
        let mut meta = ClusterMetadata {
            version,
            cluster_id,
            topics: BTreeMap::new(),
            topic_ids: HashMap::new(),
        };
        for topic in topics {
            meta.insert_topic(Arc::new(topic));
        }
        meta
    }

    /// Adds or replaces a topic (used while building the next snapshot).
    pub fn insert_topic(&mut self, topic: Arc<TopicMeta>) {
        if let Some(old) = self.topics.get(&topic.name) {
            self.topic_ids.remove(&old.id);
        }
        self.topic_ids.insert(topic.id, topic.name.clone());
        self.topics.insert(topic.name.clone(), topic);
    }

    /// Removes a topic (used while building the next snapshot).
    pub fn remove_topic(&mut self, name: &str) -> Option<Arc<TopicMeta>> {
        let removed = self.topics.remove(name)?;
        self.topic_ids.remove(&removed.id);
        Some(removed)
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicMeta>> {
        self.topics.get(name)
    }

    /// A topic by id.
    pub fn topic_by_id(&self, id: TopicId) -> Option<&Arc<TopicMeta>> {
        self.topic_ids
            .get(&id)
            .and_then(|name| self.topics.get(name))
    }

    /// The shard owning a partition, if the partition exists.
    pub fn shard_of(&self, topic: &str, partition: PartitionIndex) -> Option<ShardId> {
        self.topic(topic)?.partition(partition).map(|p| p.shard)
    }

    /// Number of partitions placed on each shard (for balanced placement of new ones).
    pub fn partitions_per_shard(&self, shard_count: usize) -> Vec<usize> {
        let mut counts = vec![0usize; shard_count];
        for topic in self.topics.values() {
            for partition in &topic.partitions {
                if let Some(count) = counts.get_mut(partition.shard.0) {
                    *count += 1;
                }
            }
        }
        counts
    }
}

/// Whether `name` is a Kafka-internal topic: written by the broker itself, never by a
/// client's Produce (Kafka answers INVALID_TOPIC_EXCEPTION).
pub fn is_internal_topic(name: &str) -> bool {
    name == "__consumer_offsets" || name == "__transaction_state"
}
