//! DeleteRecords (key 21): moves a partition's log start offset forward (deleting whole
//! segments below it) on its owning shard.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{ApiKey, DeleteRecordsRequest, DeleteRecordsResponse};

use super::{encode, run_on_owners, ApiSpec, HandlerError, HandlerFuture, Ordering, Response};
use crate::protocol::request::{decode_body, RequestHead};
use crate::protocol::KafkaError;
use crate::shard::partition_ops::{
    DeleteRecordsItem, DeleteRecordsOutcome, PartitionKey, PartitionReply, PartitionRequest,
};
use crate::shard::Shard;
use crate::types::PartitionIndex;

/// DeleteRecords 0-2.
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::DeleteRecords,
    min_version: 0,
    max_version: 2,
    ordering: Ordering::Exclusive,
    handle: boxed,
};

fn boxed(shard: Rc<Shard>, head: RequestHead, body: Bytes) -> HandlerFuture {
    Box::pin(handle(shard, head, body))
}

fn failed(error: KafkaError) -> DeleteRecordsOutcome {
    DeleteRecordsOutcome {
        error: Some(error),
        low_watermark: -1,
    }
}

async fn handle(
    shard: Rc<Shard>,
    head: RequestHead,
    body: Bytes,
) -> Result<Response, HandlerError> {
    let request: DeleteRecordsRequest = decode_body(&head, body)?;
    let snapshot = shard.metadata();
    let total: usize = request.topics.iter().map(|t| t.partitions.len()).sum();
    let mut outcomes: Vec<Option<DeleteRecordsOutcome>> = vec![None; total];
    let mut work = Vec::with_capacity(total);
    let mut position = 0usize;
    for topic in &request.topics {
        let meta = snapshot.topic(topic.name.as_str());
        for partition in &topic.partitions {
            let slot = position;
            position += 1;
            let placement = meta.and_then(|m| {
                m.partition(PartitionIndex(partition.partition_index))
                    .map(|p| (m.id, p.shard))
            });
            match placement {
                None => outcomes[slot] = Some(failed(KafkaError::UnknownTopicOrPartition)),
                Some((topic_id, owner)) => work.push((
                    slot,
                    owner,
                    DeleteRecordsItem {
                        key: PartitionKey {
                            topic_id,
                            partition: partition.partition_index,
                        },
                        offset: partition.offset,
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
        |items| async move { local_shard.delete_records_local(&items).await },
        PartitionRequest::DeleteRecords,
        |reply| match reply {
            PartitionReply::DeleteRecords(outcomes) => Some(outcomes),
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
                    DeleteRecordsPartitionResult::default()
                        .with_partition_index(partition.partition_index)
                        .with_low_watermark(outcome.low_watermark)
                        .with_error_code(outcome.error.map(|e| e.code()).unwrap_or(0))
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    encode(&head, &DeleteRecordsResponse::default().with_topics(topics))
}
