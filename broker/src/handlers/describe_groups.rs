//! DescribeGroups (key 15): state, protocol and members of groups (assignments only when
//! the group is Stable, as Kafka).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{ApiKey, DescribeGroupsRequest, DescribeGroupsResponse, GroupId};

use super::{encode, str_bytes, ApiSpec, HandlerError, HandlerFuture, Ordering, Response};
use crate::groups;
use crate::groups::api::{self as group_api, GroupReply, GroupRequest};
use crate::protocol::request::{decode_body, RequestHead};
use crate::protocol::KafkaError;
use crate::shard::Shard;

/// DescribeGroups 0-6.
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::DescribeGroups,
    min_version: 0,
    max_version: 6,
    ordering: Ordering::Pipelined,
    handle: boxed,
};

fn boxed(shard: Rc<Shard>, head: RequestHead, body: Bytes) -> HandlerFuture {
    Box::pin(handle(shard, head, body))
}

fn failed(group_id: &str, error: KafkaError) -> group_api::DescribedGroup {
    group_api::DescribedGroup {
        group_id: group_id.to_string(),
        error: Some(error),
        state: String::new(),
        protocol_type: String::new(),
        protocol: String::new(),
        members: Vec::new(),
    }
}

async fn handle(
    shard: Rc<Shard>,
    head: RequestHead,
    body: Bytes,
) -> Result<Response, HandlerError> {
    let request: DescribeGroupsRequest = decode_body(&head, body)?;
    let version = head.api_version;
    let mut described = Vec::with_capacity(request.groups.len());
    for group in &request.groups {
        let id = group.to_string();
        let found = match groups::call(&shard, &id, GroupRequest::Describe(vec![id.clone()])).await
        {
            GroupReply::Describe(mut list) if !list.is_empty() => list.swap_remove(0),
            GroupReply::Failed(error) => failed(&id, error),
            _ => failed(&id, KafkaError::UnknownServerError),
        };
        // Before v6 an unknown group is described as Dead without an error.
        let error = match found.error {
            Some(KafkaError::GroupIdNotFound) if version < 6 => None,
            other => other,
        };
        let members = found
            .members
            .into_iter()
            .map(|m| {
                DescribedGroupMember::default()
                    .with_member_id(str_bytes(&m.member_id))
                    .with_group_instance_id(
                        m.instance_id
                            .filter(|_| version >= 4)
                            .map(|i| str_bytes(&i)),
                    )
                    .with_client_id(str_bytes(&m.client_id))
                    .with_client_host(str_bytes(&m.client_host))
                    .with_member_metadata(m.metadata)
                    .with_member_assignment(m.assignment)
            })
            .collect();
        let mut out = DescribedGroup::default()
            .with_error_code(error.map(|e| e.code()).unwrap_or(0))
            .with_group_id(GroupId(str_bytes(&found.group_id)))
            .with_group_state(str_bytes(&found.state))
            .with_protocol_type(str_bytes(&found.protocol_type))
            .with_protocol_data(str_bytes(&found.protocol))
            .with_members(members);
        if version >= 6 && error.is_some() {
            out = out.with_error_message(Some(str_bytes(
                error.map(|e| e.to_string()).unwrap_or_default().as_str(),
            )));
        }
        described.push(out);
    }
    encode(
        &head,
        &DescribeGroupsResponse::default().with_groups(described),
    )
}
