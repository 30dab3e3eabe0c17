//! SyncGroup (key 14): the leader sends the assignment, every member gets its own (after
//! the group metadata is written to `__consumer_offsets`).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, SyncGroupRequest, SyncGroupResponse};

use super::{encode, str_bytes, ApiSpec, HandlerError, HandlerFuture, Ordering, Response};
use crate::groups;
use crate::groups::api::{GroupReply, GroupRequest, SyncArgs, SyncOutcome};
use crate::protocol::request::{decode_body, RequestHead};
use crate::protocol::KafkaError;
use crate::shard::Shard;

/// SyncGroup 0-5.
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::SyncGroup,
    min_version: 0,
    max_version: 5,
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
    let request: SyncGroupRequest = decode_body(&head, body)?;
    let version = head.api_version;
    let group_id = request.group_id.to_string();
    let args = SyncArgs {
        group_id: group_id.clone(),
        generation: request.generation_id,
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(|i| i.to_string()),
        protocol_type: request.protocol_type.as_ref().map(|t| t.to_string()),
        protocol_name: request.protocol_name.as_ref().map(|n| n.to_string()),
        assignments: request
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect(),
    };
    let outcome = if group_id.is_empty() {
        SyncOutcome::failed(KafkaError::InvalidGroupId)
    } else {
        match groups::call(&shard, &group_id, GroupRequest::Sync(args)).await {
            GroupReply::Sync(outcome) => outcome,
            GroupReply::Failed(error) => SyncOutcome::failed(error),
            _ => SyncOutcome::failed(KafkaError::UnknownServerError),
        }
    };
    let mut response = SyncGroupResponse::default()
        .with_error_code(outcome.error.map(|e| e.code()).unwrap_or(0))
        .with_assignment(outcome.assignment);
    if version >= 5 {
        response = response
            .with_protocol_type(outcome.protocol_type.map(|t| str_bytes(&t)))
            .with_protocol_name(outcome.protocol_name.map(|n| str_bytes(&n)));
    }
    encode(&head, &response)
}
