//! OffsetDelete (key 47): removes a group's committed offsets for some partitions (not for
//! topics the group's members are subscribed to).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{ApiKey, OffsetDeleteRequest, OffsetDeleteResponse};

use super::{encode, ApiSpec, HandlerError, HandlerFuture, Ordering, Response};
use crate::groups;
use crate::groups::api::{GroupReply, GroupRequest};
use crate::protocol::request::{decode_body, RequestHead};
use crate::protocol::KafkaError;
use crate::shard::Shard;

/// OffsetDelete 0.
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::OffsetDelete,
    min_version: 0,
    max_version: 0,
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
    let request: OffsetDeleteRequest = decode_body(&head, body)?;
    let group_id = request.group_id.to_string();
    let topics: Vec<(String, Vec<i32>)> = request
        .topics
        .iter()
        .map(|t| {
            (
                t.name.to_string(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    let (error, outcome) = if group_id.is_empty() {
        (Some(KafkaError::InvalidGroupId), Vec::new())
    } else {
        match groups::call(
            &shard,
            &group_id,
            GroupRequest::DeleteOffsets(group_id.clone(), topics),
        )
        .await
        {
            GroupReply::DeleteOffsets(error, outcome) => (error, outcome),
            GroupReply::Failed(error) => (Some(error), Vec::new()),
            _ => (Some(KafkaError::UnknownServerError), Vec::new()),
        }
    };
    let topics = outcome
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetDeleteResponseTopic::default()
                .with_name(super::topic_name(&topic))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(partition, error)| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(partition)
                                .with_error_code(error.map(|e| e.code()).unwrap_or(0))
                        })
                        .collect(),
                )
        })
        .collect();
    encode(
        &head,
        &OffsetDeleteResponse::default()
            .with_error_code(error.map(|e| e.code()).unwrap_or(0))
            .with_topics(topics),
    )
}
