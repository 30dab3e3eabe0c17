//! Heartbeat (key 12): keeps a member's session alive and tells it when to rejoin
//! (REBALANCE_IN_PROGRESS).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, HeartbeatRequest, HeartbeatResponse};

use super::{encode, ApiSpec, HandlerError, HandlerFuture, Ordering, Response};
use crate::groups;
use crate::groups::api::{GroupReply, GroupRequest, HeartbeatArgs};
use crate::protocol::request::{decode_body, RequestHead};
use crate::protocol::KafkaError;
use crate::shard::Shard;

/// Heartbeat 0-4.
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::Heartbeat,
    min_version: 0,
    max_version: 4,
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
    let request: HeartbeatRequest = decode_body(&head, body)?;
    let group_id = request.group_id.to_string();
    let error = if group_id.is_empty() {
        Some(KafkaError::InvalidGroupId)
    } else {
        let args = HeartbeatArgs {
            group_id: group_id.clone(),
            generation: request.generation_id,
            member_id: request.member_id.to_string(),
            instance_id: request.group_instance_id.as_ref().map(|i| i.to_string()),
        };
        match groups::call(&shard, &group_id, GroupRequest::Heartbeat(args)).await {
            GroupReply::Heartbeat(error) => error,
            GroupReply::Failed(error) => Some(error),
            _ => Some(KafkaError::UnknownServerError),
        }
    };
    encode(
        &head,
        &HeartbeatResponse::default().with_error_code(error.map(|e| e.code()).unwrap_or(0)),
    )
}
