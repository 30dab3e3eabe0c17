//! Data-path operations on partitions, as sent to the shard that owns them: one message per
//! owning shard per request (batched), payloads as `Bytes`.
//!
//! The same item and outcome types are used when the partition is local, so a handler
//! groups its partitions by owner, runs the local group directly and the others over the
//! mesh, and puts the outcomes back in request order ([`by_owner`], [`Grouped`]).

use bytes::Bytes;

use crate::protocol::KafkaError;
use crate::types::{ShardId, TopicId};

/// A partition by topic id and index (ids survive renames; names are looked up once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartitionKey {
    /// Topic id.
    pub topic_id: TopicId,
    /// Partition index.
    pub partition: i32,
}

/// Append one partition's record batches.
pub struct ProduceItem {
    /// Partition.
    pub key: PartitionKey,
    /// Record batches exactly as produced.
    pub records: Bytes,
}

/// Result of one [`ProduceItem`].
#[derive(Debug, Clone)]
pub struct ProduceOutcome {
    /// Error, if the append failed.
    pub error: Option<KafkaError>,
    /// Error message (Produce v8+).
    pub message: Option<String>,
    /// Offset of the first appended record (-1 on error).
    pub base_offset: i64,
    /// Append time when the topic uses LogAppendTime, else -1.
    pub log_append_time_ms: i64,
    /// Log start offset after the append.
    pub log_start_offset: i64,
}

impl ProduceOutcome {
    /// A failed append.
    pub fn failed(error: KafkaError, message: Option<String>) -> ProduceOutcome {
        ProduceOutcome {
            error: Some(error),
            message,
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
        }
    }
}

/// Read from one partition now (no waiting).
#[derive(Debug, Clone, Copy)]
pub struct ReadItem {
    /// Partition.
    pub key: PartitionKey,
    /// First offset wanted.
    pub fetch_offset: i64,
    /// Most bytes for this partition (at least one batch is returned if any exists).
    pub max_bytes: usize,
    /// The client's leader epoch (-1 = unknown, no check).
    pub current_leader_epoch: i32,
    /// A follower reads to the log end; a consumer to the high watermark.
    pub to_log_end: bool,
}

/// Result of one [`ReadItem`]. `C` is the chunk type: engine chunks locally, `Bytes` when
/// the data crossed shards.
#[derive(Debug, Clone)]
pub struct ReadOutcome<C> {
    /// Error for this partition.
    pub error: Option<KafkaError>,
    /// High watermark.
    pub high_watermark: i64,
    /// Last stable offset (= high watermark: no transactions yet).
    pub last_stable_offset: i64,
    /// Log start offset.
    pub log_start_offset: i64,
    /// Record batches, whole, in offset order.
    pub chunks: Vec<C>,
    /// Total bytes in `chunks`.
    pub bytes: usize,
}

impl<C> ReadOutcome<C> {
    /// A failed read.
    pub fn failed(error: KafkaError) -> ReadOutcome<C> {
        ReadOutcome {
            error: Some(error),
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            chunks: Vec::new(),
            bytes: 0,
        }
    }
}

/// Wake me when a partition has data past `fetch_offset`.
#[derive(Debug, Clone, Copy)]
pub struct WatchItem {
    /// Partition.
    pub key: PartitionKey,
    /// The fetch position the client waits beyond.
    pub fetch_offset: i64,
    /// Followers wait on the log end, consumers on the high watermark.
    pub to_log_end: bool,
}

/// ListOffsets for one partition.
#[derive(Debug, Clone, Copy)]
pub struct ListOffsetsItem {
    /// Partition.
    pub key: PartitionKey,
    /// -1 latest, -2 earliest, or a timestamp in ms.
    pub timestamp: i64,
    /// Client's leader epoch (-1 = no check).
    pub current_leader_epoch: i32,
}

/// Result of one [`ListOffsetsItem`].
#[derive(Debug, Clone, Copy)]
pub struct ListOffsetsOutcome {
    /// Error.
    pub error: Option<KafkaError>,
    /// Timestamp of the found record (-1 for earliest/latest or none).
    pub timestamp: i64,
    /// Offset found (-1 if none).
    pub offset: i64,
    /// Leader epoch of the partition.
    pub leader_epoch: i32,
}

/// DeleteRecords for one partition.
#[derive(Debug, Clone, Copy)]
pub struct DeleteRecordsItem {
    /// Partition.
    pub key: PartitionKey,
    /// Delete everything before this offset (-1 = the high watermark).
    pub offset: i64,
}

/// Result of one [`DeleteRecordsItem`].
#[derive(Debug, Clone, Copy)]
pub struct DeleteRecordsOutcome {
    /// Error.
    pub error: Option<KafkaError>,
    /// New log start offset.
    pub low_watermark: i64,
}

/// OffsetForLeaderEpoch for one partition.
#[derive(Debug, Clone, Copy)]
pub struct EpochItem {
    /// Partition.
    pub key: PartitionKey,
    /// Client's current leader epoch (-1 = no check).
    pub current_leader_epoch: i32,
    /// Epoch whose end offset is wanted.
    pub leader_epoch: i32,
}

/// Result of one [`EpochItem`].
#[derive(Debug, Clone, Copy)]
pub struct EpochOutcome {
    /// Error.
    pub error: Option<KafkaError>,
    /// Largest known epoch <= the requested one (-1 if none).
    pub leader_epoch: i32,
    /// End offset of that epoch (-1 if none).
    pub end_offset: i64,
}

/// A batch of partition operations for one owning shard.
pub enum PartitionRequest {
    /// Appends.
    Produce {
        /// Kafka acks (-1 flushes before answering when `flush.on.ack.all`).
        acks: i16,
        /// Partitions.
        items: Vec<ProduceItem>,
    },
    /// Immediate reads.
    Read {
        /// Partitions.
        items: Vec<ReadItem>,
        /// Most bytes for the whole batch (first partition with data always gets one batch).
        max_bytes: usize,
    },
    /// Answer when any partition has data beyond its offset, or after `wait_ms`.
    Watch {
        /// Partitions.
        items: Vec<WatchItem>,
        /// Longest wait.
        wait_ms: u64,
    },
    /// ListOffsets.
    ListOffsets(Vec<ListOffsetsItem>),
    /// DeleteRecords.
    DeleteRecords(Vec<DeleteRecordsItem>),
    /// OffsetForLeaderEpoch.
    OffsetForLeaderEpoch(Vec<EpochItem>),
}

/// The owning shard's answer to a [`PartitionRequest`], outcomes in item order.
pub enum PartitionReply {
    /// Appends.
    Produce(Vec<ProduceOutcome>),
    /// Reads; file data was loaded into `Bytes` by the owner.
    Read(Vec<ReadOutcome<Bytes>>),
    /// Whether data arrived (false: timed out or shutting down).
    Watch(bool),
    /// ListOffsets.
    ListOffsets(Vec<ListOffsetsOutcome>),
    /// DeleteRecords.
    DeleteRecords(Vec<DeleteRecordsOutcome>),
    /// OffsetForLeaderEpoch.
    OffsetForLeaderEpoch(Vec<EpochOutcome>),
}

/// Items grouped by owning shard, remembering each item's position in the request.
pub struct Grouped<T> {
    /// Per shard: (position in request, item).
    pub groups: Vec<(ShardId, Vec<(usize, T)>)>,
}

/// Groups `(position, shard, item)` triples by shard, keeping request order inside each group.
pub fn by_owner<T>(items: impl IntoIterator<Item = (usize, ShardId, T)>) -> Grouped<T> {
    let mut groups: Vec<(ShardId, Vec<(usize, T)>)> = Vec::new();
    for (position, shard, item) in items {
        match groups.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, group)) => group.push((position, item)),
            None => groups.push((shard, vec![(position, item)])),
        }
    }
    Grouped { groups }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_keeps_positions_and_order() {
        let grouped = by_owner(vec![
            (0, ShardId(1), 'a'),
            (1, ShardId(0), 'b'),
            (2, ShardId(1), 'c'),
        ]);
        assert_eq!(grouped.groups.len(), 2);
        assert_eq!(grouped.groups[0].0, ShardId(1));
        assert_eq!(grouped.groups[0].1, vec![(0, 'a'), (2, 'c')]);
        assert_eq!(grouped.groups[1].1, vec![(1, 'b')]);
    }
}
