//! ListOffsets (key 2): earliest (-2), latest (-1, the high watermark), max timestamp (-3),
//! earliest-local (-4), latest-tiered (-5), or the first record whose timestamp is at or after
//! a given time (inside compressed batches too: `shard::timestamp_lookup`), per partition on
//! its owning shard.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse};

use super::{encode, run_on_owners, ApiSpec, HandlerError, HandlerFuture, Ordering, Response};
use crate::metadata::names::validate_topic_name;
use crate::protocol::request::{decode_body, RequestHead};
use crate::protocol::KafkaError;
use crate::shard::partition_ops::{
    ListOffsetsItem, ListOffsetsOutcome, PartitionKey, PartitionReply, PartitionRequest,
};
use crate::shard::Shard;
use crate::types::PartitionIndex;

/// ListOffsets 1-10: v7 adds max timestamp (-3), v8 earliest-local (-4), v9 latest-tiered (-5),
/// v10 a timeout for tiered-storage reads (ignored: everything is local).
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::ListOffsets,
    min_version: 1,
    max_version: 10,
    ordering: Ordering::Pipelined,
    handle: boxed,
};

fn boxed(shard: Rc<Shard>, head: RequestHead, body: Bytes) -> HandlerFuture {
    Box::pin(handle(shard, head, body))
}

fn failed(error: KafkaError) -> ListOffsetsOutcome {
    ListOffsetsOutcome {
        error: Some(error),
        timestamp: -1,
        offset: -1,
        leader_epoch: -1,
    }
}

async fn handle(
    shard: Rc<Shard>,
    head: RequestHead,
    body: Bytes,
) -> Result<Response, HandlerError> {
    let request: ListOffsetsRequest = decode_body(&head, body)?;
    let version = head.api_version;
    let snapshot = shard.metadata();
    let total: usize = request.topics.iter().map(|t| t.partitions.len()).sum();
    let mut outcomes: Vec<Option<ListOffsetsOutcome>> = vec![None; total];
    let mut work = Vec::with_capacity(total);
    let mut position = 0usize;
    for topic in &request.topics {
        let meta = snapshot.topic(topic.name.as_str());
        let missing = if validate_topic_name(topic.name.as_str()).is_err() {
            KafkaError::InvalidTopicException
        } else {
            KafkaError::UnknownTopicOrPartition
        };
        for partition in &topic.partitions {
            let slot = position;
            position += 1;
            let placement = meta.and_then(|m| {
                m.partition(PartitionIndex(partition.partition_index))
                    .map(|p| (m.id, p.shard))
            });
            match placement {
                None => outcomes[slot] = Some(failed(missing)),
                Some((topic_id, owner)) => work.push((
                    slot,
                    owner,
                    ListOffsetsItem {
                        key: PartitionKey {
                            topic_id,
                            partition: partition.partition_index,
                        },
                        timestamp: partition.timestamp,
                        current_leader_epoch: partition.current_leader_epoch,
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
        |items| async move { local_shard.list_offsets_local(&items).await },
        PartitionRequest::ListOffsets,
        |reply| match reply {
            PartitionReply::ListOffsets(outcomes) => Some(outcomes),
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
                    let mut entry = ListOffsetsPartitionResponse::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(outcome.error.map(|e| e.code()).unwrap_or(0))
                        .with_timestamp(outcome.timestamp)
                        .with_offset(outcome.offset);
                    if version >= 4 {
                        entry.leader_epoch = outcome.leader_epoch;
                    }
                    entry
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    encode(&head, &ListOffsetsResponse::default().with_topics(topics))
}
