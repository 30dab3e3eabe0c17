//! JoinGroup (key 11): a member (re)joins a group; the answer comes when the join phase of
//! the rebalance completes (or at once: MEMBER_ID_REQUIRED, errors, a static member's rejoin).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{ApiKey, JoinGroupRequest, JoinGroupResponse};

use super::{encode, str_bytes, ApiSpec, HandlerError, HandlerFuture, Ordering, Response};
use crate::groups::api::{GroupReply, GroupRequest, JoinArgs, JoinOutcome};
use crate::groups::{self};
use crate::protocol::request::{decode_body, RequestHead};
use crate::protocol::KafkaError;
use crate::shard::Shard;

/// JoinGroup 0-9.
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::JoinGroup,
    min_version: 0,
    max_version: 9,
    ordering: Ordering::Pipelined,
    handle: boxed,
};

fn boxed(shard: Rc<Shard>, head: RequestHead, body: Bytes) -> HandlerFuture {
    Box::pin(handle(shard, head, body))
}

/// What JoinGroup records as the client host when the connection's peer address is unknown.
pub const CLIENT_HOST_UNKNOWN: &str = "unknown";

async fn handle(
    shard: Rc<Shard>,
    head: RequestHead,
    body: Bytes,
) -> Result<Response, HandlerError> {
    let request: JoinGroupRequest = decode_body(&head, body)?;
    let version = head.api_version;
    let group_id = request.group_id.to_string();
    let member_id = request.member_id.to_string();
    let args = JoinArgs {
        group_id: group_id.clone(),
        member_id: member_id.clone(),
        instance_id: request.group_instance_id.as_ref().map(|i| i.to_string()),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        client_id: head
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        // Kafka reports the member's address as `/ip`.
        client_host: head.peer.map_or_else(
            || CLIENT_HOST_UNKNOWN.to_string(),
            |peer| format!("/{}", peer.ip()),
        ),
        require_known_member_id: version >= 4,
        version,
    };
    let outcome = if group_id.is_empty() {
        JoinOutcome::failed(KafkaError::InvalidGroupId, &member_id)
    } else {
        match groups::call(&shard, &group_id, GroupRequest::Join(args)).await {
            GroupReply::Join(outcome) => outcome,
            GroupReply::Failed(error) => JoinOutcome::failed(error, &member_id),
            _ => JoinOutcome::failed(KafkaError::UnknownServerError, &member_id),
        }
    };
    let protocol_name = match (version >= 7, outcome.protocol_name) {
        (true, name) => name.map(|n| str_bytes(&n)),
        (false, name) => Some(str_bytes(&name.unwrap_or_default())),
    };
    let members = outcome
        .members
        .into_iter()
        .map(|member| {
            JoinGroupResponseMember::default()
                .with_member_id(str_bytes(&member.member_id))
                .with_group_instance_id(
                    member
                        .instance_id
                        .filter(|_| version >= 5)
                        .map(|i| str_bytes(&i)),
                )
                .with_metadata(member.metadata)
        })
        .collect();
    let response = JoinGroupResponse::default()
        .with_error_code(outcome.error.map(|e| e.code()).unwrap_or(0))
        .with_generation_id(outcome.generation)
        .with_protocol_type(
            outcome
                .protocol_type
                .filter(|_| version >= 7)
                .map(|t| str_bytes(&t)),
        )
        .with_protocol_name(protocol_name)
        .with_leader(str_bytes(&outcome.leader))
        .with_skip_assignment(version >= 9 && outcome.skip_assignment)
        .with_member_id(str_bytes(&outcome.member_id))
        .with_members(members);
    encode(&head, &response)
}
