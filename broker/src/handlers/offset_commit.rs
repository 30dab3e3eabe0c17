//! OffsetCommit (key 8): stores committed offsets in `__consumer_offsets` (group members with
//! their generation, or simple consumers with generation -1 and no member id).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{ApiKey, OffsetCommitRequest, OffsetCommitResponse};

use super::{encode, ApiSpec, HandlerError, HandlerFuture, Ordering, Response};
use crate::groups;
use crate::groups::api::{CommitArgs, CommitOutcome, CommitPartition, GroupReply, GroupRequest};
use crate::protocol::request::{decode_body, RequestHead};
use crate::protocol::KafkaError;
use crate::shard::Shard;

/// OffsetCommit 2-9.
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::OffsetCommit,
    min_version: 2,
    max_version: 9,
    ordering: Ordering::Pipelined,
    handle: boxed,
};

fn boxed(shard: Rc<Shard>, head: RequestHead, body: Bytes) -> HandlerFuture {
    Box::pin(handle(shard, head, body))
}

async fn handle(
    shard: Rc<Shard>,
    head: RequestHead,
    body: Bytes,
) -> Result<Response, HandlerError> {
    let request: OffsetCommitRequest = decode_body(&head, body)?;
    let version = head.api_version;
    let group_id = request.group_id.to_string();
    let args = CommitArgs {
        group_id: group_id.clone(),
        generation: request.generation_id_or_member_epoch,
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(|i| i.to_string()),
        retention_time_ms: if (2..=4).contains(&version) {
            request.retention_time_ms
        } else {
            -1
        },
        topics: request
            .topics
            .iter()
            .map(|topic| {
                (
                    topic.name.to_string(),
                    topic
                        .partitions
                        .iter()
                        .map(|p| CommitPartition {
                            partition: p.partition_index,
                            offset: p.committed_offset,
                            leader_epoch: if version >= 6 {
                                p.committed_leader_epoch
                            } else {
                                -1
                            },
                            metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                        })
                        .collect(),
                )
            })
            .collect(),
    };
    let all_failed = |error: KafkaError| -> CommitOutcome {
        args.topics
            .iter()
            .map(|(topic, partitions)| {
                (
                    topic.clone(),
                    partitions
                        .iter()
                        .map(|p| (p.partition, Some(error)))
                        .collect(),
                )
            })
            .collect()
    };
    let outcome = if args.topics.is_empty() {
        Vec::new()
    } else {
        let fallback = all_failed(KafkaError::UnknownServerError);
        match groups::call(&shard, &group_id, GroupRequest::Commit(args.clone())).await {
            GroupReply::Commit(outcome) => outcome,
            GroupReply::Failed(error) => all_failed(error),
            _ => fallback,
        }
    };
    let topics = outcome
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetCommitResponseTopic::default()
                .with_name(super::topic_name(&topic))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(partition, error)| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(partition)
                                .with_error_code(error.map(|e| e.code()).unwrap_or(0))
                        })
                        .collect(),
                )
        })
        .collect();
    encode(&head, &OffsetCommitResponse::default().with_topics(topics))
}
