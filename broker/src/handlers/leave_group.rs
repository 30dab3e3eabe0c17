//! LeaveGroup (key 13): members leave (v0-2: one member id; v3+: a batch of members,
//! static ones by `group.instance.id`), which starts a rebalance of the others.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{ApiKey, LeaveGroupRequest, LeaveGroupResponse};

use super::{encode, str_bytes, ApiSpec, HandlerError, HandlerFuture, Ordering, Response};
use crate::groups;
use crate::groups::api::{GroupReply, GroupRequest, LeaveOutcome};
use crate::protocol::request::{decode_body, RequestHead};
use crate::protocol::KafkaError;
use crate::shard::Shard;

/// LeaveGroup 0-5.
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::LeaveGroup,
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
    let request: LeaveGroupRequest = decode_body(&head, body)?;
    let version = head.api_version;
    let group_id = request.group_id.to_string();
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let failed = |error: KafkaError, members: &[(String, Option<String>)]| LeaveOutcome {
        error: Some(error),
        members: members
            .iter()
            .map(|(m, i)| (m.clone(), i.clone(), Some(error)))
            .collect(),
    };
    let outcome = if group_id.is_empty() {
        failed(KafkaError::InvalidGroupId, &members)
    } else {
        match groups::call(
            &shard,
            &group_id,
            GroupRequest::Leave(group_id.clone(), members.clone()),
        )
        .await
        {
            GroupReply::Leave(outcome) => outcome,
            GroupReply::Failed(error) => failed(error, &members),
            _ => failed(KafkaError::UnknownServerError, &members),
        }
    };
    let response = if version >= 3 {
        // Group-level errors only for group-level failures; a missing group answers per member.
        let top = match outcome.error {
            Some(KafkaError::UnknownMemberId) | None => 0,
            Some(error) => error.code(),
        };
        LeaveGroupResponse::default()
            .with_error_code(top)
            .with_members(
                outcome
                    .members
                    .into_iter()
                    .map(|(member_id, instance_id, error)| {
                        MemberResponse::default()
                            .with_member_id(str_bytes(&member_id))
                            .with_group_instance_id(instance_id.map(|i| str_bytes(&i)))
                            .with_error_code(error.map(|e| e.code()).unwrap_or(0))
                    })
                    .collect(),
            )
    } else {
        let error = outcome
            .error
            .or_else(|| outcome.members.first().and_then(|(_, _, e)| *e));
        LeaveGroupResponse::default().with_error_code(error.map(|e| e.code()).unwrap_or(0))
    };
    encode(&head, &response)
}
