//! OffsetForLeaderEpoch (key 23): the end offset of a leader epoch, from the partition's
//! epoch cache on its owning shard (clients use it to detect log truncation).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::{encode, run_on_owners, ApiSpec, HandlerError, HandlerFuture, Ordering, Response};
use crate::protocol::request::{decode_body, RequestHead};
use crate::protocol::KafkaError;
use crate::shard::partition_ops::{
    EpochItem, EpochOutcome, PartitionKey, PartitionReply, PartitionRequest,
};
use crate::shard::Shard;
use crate::types::PartitionIndex;

/// OffsetForLeaderEpoch 2-4.
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::OffsetForLeaderEpoch,
    min_version: 2,
    max_version: 4,
    ordering: Ordering::Pipelined,
    handle: boxed,
};

fn boxed(shard: Rc<Shard>, head: RequestHead, body: Bytes) -> HandlerFuture {
    Box::pin(handle(shard, head, body))
}

fn failed(error: KafkaError) -> EpochOutcome {
    EpochOutcome {
        error: Some(error),
        leader_epoch: -1,
        end_offset: -1,
    }
}

async fn handle(
    shard: Rc<Shard>,
    head: RequestHead,
    body: Bytes,
) -> Result<Response, HandlerError> {
    let request: OffsetForLeaderEpochRequest = decode_body(&head, body)?;
    let snapshot = shard.metadata();
    let total: usize = request.topics.iter().map(|t| t.partitions.len()).sum();
    let mut outcomes: Vec<Option<EpochOutcome>> = vec![None; total];
    let mut work = Vec::with_capacity(total);
    let mut position = 0usize;
    for topic in &request.topics {
        let meta = snapshot.topic(topic.topic.as_str());
        for partition in &topic.partitions {
            let slot = position;
            position += 1;
            let placement = meta.and_then(|m| {
                m.partition(PartitionIndex(partition.partition))
                    .map(|p| (m.id, p.shard))
            });
            match placement {
                None => outcomes[slot] = Some(failed(KafkaError::UnknownTopicOrPartition)),
                Some((topic_id, owner)) => work.push((
                    slot,
                    owner,
                    EpochItem {
                        key: PartitionKey {
                            topic_id,
                            partition: partition.partition,
                        },
                        current_leader_epoch: partition.current_leader_epoch,
                        leader_epoch: partition.leader_epoch,
                    },
                )),
            }
        }
    }
    let local_shard = shard.clone();
    run_on_owners(
        &shard,
        work,
        &mut outcomes,
        |items| async move { local_shard.epochs_local(&items) },
        PartitionRequest::OffsetForLeaderEpoch,
        |reply| match reply {
            PartitionReply::OffsetForLeaderEpoch(outcomes) => Some(outcomes),
            _ => None,
        },
        || failed(KafkaError::NotLeaderOrFollower),
    )
    .await;

    let mut slots = outcomes.into_iter();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let outcome = slots
                        .next()
                        .flatten()
                        .unwrap_or_else(|| failed(KafkaError::UnknownServerError));
                    EpochEndOffset::default()
                        .with_partition(partition.partition)
                        .with_error_code(outcome.error.map(|e| e.code()).unwrap_or(0))
                        .with_leader_epoch(outcome.leader_epoch)
                        .with_end_offset(outcome.end_offset)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    encode(
        &head,
        &OffsetForLeaderEpochResponse::default().with_topics(topics),
    )
}
