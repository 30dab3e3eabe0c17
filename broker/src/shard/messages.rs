//! Messages shards send each other. All `Send`: record data as `Bytes`, metadata as an
//! immutable `Arc` snapshot.

use std::sync::Arc;

use crate::groups::api::{GroupReply, GroupRequest};
use crate::metadata::ops::{MetadataOp, TopicResult};
use crate::metadata::ClusterMetadata;
use crate::shard::partition_ops::{PartitionReply, PartitionRequest};
use crate::shard::producer_ids::ProducerIdError;
use crate::shard::producer_state::{ProducerEpoch, ProducerId};

/// Why the metadata owner could not apply a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerFailure {
    /// Persisting the metadata file failed (reported as KAFKA_STORAGE_ERROR).
    Storage,
    /// A shard could not be reached to apply the new snapshot.
    Broadcast,
    /// The broker is shutting down.
    ShuttingDown,
}

/// A request to another shard.
pub enum MeshRequest {
    /// To shard 0: apply a metadata change.
    Metadata(MetadataOp),
    /// From shard 0: swap in this snapshot (open/close partition logs as needed), then ack.
    ApplySnapshot(Arc<ClusterMetadata>),
    /// Startup barrier: the sender has opened its partitions.
    Opened,
    /// Shutdown barrier: the sender has no connections left.
    Drained,
    /// Data-path operations on partitions the receiver owns, batched per shard.
    Partition(PartitionRequest),
    /// A consumer-group request for the coordinator of a `__consumer_offsets` partition the
    /// receiver owns (`partition` -1: a request for every coordinator of the receiver).
    Group {
        /// `__consumer_offsets` partition.
        partition: i32,
        /// The request.
        request: GroupRequest,
    },
    /// To shard 0: InitProducerId (a producer id and epoch to bump, if the client sent one).
    InitProducerId(Option<(ProducerId, ProducerEpoch)>),
    /// A scrape: send this shard's metrics, encoded.
    Metrics,
    /// To shard 0: change a dynamic broker config level (AlterConfigs on a BROKER resource).
    AlterBrokerConfig(crate::shard::live_config::BrokerConfigAlteration),
    /// From shard 0: swap in this live configuration and apply what changed, then ack.
    ApplyLiveConfig(Arc<crate::dynamic_config::LiveConfig>),
}

/// A reply to a [`MeshRequest`].
pub enum MeshReply {
    /// Result of a metadata change.
    Metadata(Result<Vec<TopicResult>, OwnerFailure>),
    /// Plain acknowledgement.
    Ack,
    /// Result of a partition batch.
    Partition(PartitionReply),
    /// Answer of a group coordinator.
    Group(GroupReply),
    /// Result of an InitProducerId.
    ProducerId(Result<(ProducerId, ProducerEpoch), ProducerIdError>),
    /// This shard's metrics in the Prometheus text format.
    Metrics(String),
    /// Result of a dynamic broker config change.
    BrokerConfig(Result<(), crate::metadata::ops::TopicError>),
}
