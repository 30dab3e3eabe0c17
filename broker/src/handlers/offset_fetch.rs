//! OffsetFetch (key 9): committed offsets of a group (v0-7) or of several groups (v8+), for
//! the given partitions or, with a null topic list, every partition the group committed.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{ApiKey, GroupId, OffsetFetchRequest, OffsetFetchResponse};

use super::{encode, str_bytes, ApiSpec, HandlerError, HandlerFuture, Ordering, Response};
use crate::groups;
use crate::groups::api::{FetchedOffsets, FetchedPartition, GroupReply, GroupRequest};
use crate::protocol::request::{decode_body, RequestHead};
use crate::protocol::KafkaError;
use crate::shard::Shard;

/// OffsetFetch 1-9.
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::OffsetFetch,
    min_version: 1,
    max_version: 9,
    ordering: Ordering::Pipelined,
    handle: boxed,
};

fn boxed(shard: Rc<Shard>, head: RequestHead, body: Bytes) -> HandlerFuture {
    Box::pin(handle(shard, head, body))
}

type Wanted = Option<Vec<(String, Vec<i32>)>>;

/// One group's offsets, with group-level failures spread over the wanted partitions.
async fn fetch_group(shard: &Rc<Shard>, group_id: &str, wanted: Wanted) -> FetchedOffsets {
    if wanted.as_ref().is_some_and(|topics| topics.is_empty()) {
        return FetchedOffsets::default();
    }
    let failed = |error: KafkaError| FetchedOffsets {
        error: Some(error),
        topics: wanted
            .iter()
            .flatten()
            .map(|(topic, partitions)| {
                (
                    topic.clone(),
                    partitions
                        .iter()
                        .map(|p| FetchedPartition {
                            partition: *p,
                            offset: -1,
                            leader_epoch: -1,
                            metadata: Some(String::new()),
                            error: Some(error),
                        })
                        .collect(),
                )
            })
            .collect(),
    };
    let request = GroupRequest::FetchOffsets(group_id.to_string(), wanted.clone());
    match groups::call(shard, group_id, request).await {
        GroupReply::FetchOffsets(fetched) => fetched,
        GroupReply::Failed(error) => failed(error),
        _ => failed(KafkaError::UnknownServerError),
    }
}

fn partition_v0(version: i16, p: FetchedPartition) -> OffsetFetchResponsePartition {
    OffsetFetchResponsePartition::default()
        .with_partition_index(p.partition)
        .with_committed_offset(p.offset)
        .with_committed_leader_epoch(if version >= 5 { p.leader_epoch } else { -1 })
        .with_metadata(p.metadata.map(|m| str_bytes(&m)))
        .with_error_code(p.error.map(|e| e.code()).unwrap_or(0))
}

fn partition_v8(p: FetchedPartition) -> OffsetFetchResponsePartitions {
    OffsetFetchResponsePartitions::default()
        .with_partition_index(p.partition)
        .with_committed_offset(p.offset)
        .with_committed_leader_epoch(p.leader_epoch)
        .with_metadata(p.metadata.map(|m| str_bytes(&m)))
        .with_error_code(p.error.map(|e| e.code()).unwrap_or(0))
}

async fn handle(
    shard: Rc<Shard>,
    head: RequestHead,
    body: Bytes,
) -> Result<Response, HandlerError> {
    let request: OffsetFetchRequest = decode_body(&head, body)?;
    let version = head.api_version;
    if version >= 8 {
        let mut groups_out = Vec::with_capacity(request.groups.len());
        for group in &request.groups {
            let wanted: Wanted = group.topics.as_ref().map(|topics| {
                topics
                    .iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                    .collect()
            });
            let fetched = fetch_group(&shard, group.group_id.as_str(), wanted).await;
            let topics = fetched
                .topics
                .into_iter()
                .map(|(topic, partitions)| {
                    OffsetFetchResponseTopics::default()
                        .with_name(super::topic_name(&topic))
                        .with_partitions(partitions.into_iter().map(partition_v8).collect())
                })
                .collect();
            groups_out.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(GroupId(str_bytes(group.group_id.as_str())))
                    .with_topics(topics)
                    .with_error_code(fetched.error.map(|e| e.code()).unwrap_or(0)),
            );
        }
        return encode(
            &head,
            &OffsetFetchResponse::default().with_groups(groups_out),
        );
    }
    let wanted: Wanted = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let fetched = fetch_group(&shard, request.group_id.as_str(), wanted).await;
    let topics = fetched
        .topics
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetFetchResponseTopic::default()
                .with_name(super::topic_name(&topic))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|p| partition_v0(version, p))
                        .collect(),
                )
        })
        .collect();
    let mut response = OffsetFetchResponse::default().with_topics(topics);
    if version >= 2 {
        response = response.with_error_code(fetched.error.map(|e| e.code()).unwrap_or(0));
    }
    encode(&head, &response)
}
