//! ListGroups (key 16): every group on every shard, filtered by state (v4+) and type (v5+;
//! every group here is "classic").

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{ApiKey, GroupId, ListGroupsRequest, ListGroupsResponse};

use super::{encode, str_bytes, ApiSpec, HandlerError, HandlerFuture, Ordering, Response};
use crate::groups;
use crate::shard::Shard;

/// ListGroups 0-5.
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::ListGroups,
    min_version: 0,
    max_version: 5,
    ordering: Ordering::Pipelined,
    handle: boxed,
};

fn boxed(shard: Rc<Shard>, head: RequestHead, body: Bytes) -> HandlerFuture {
    Box::pin(handle(shard, head, body))
}

use crate::protocol::request::{decode_body, RequestHead};

async fn handle(
    shard: Rc<Shard>,
    head: RequestHead,
    body: Bytes,
) -> Result<Response, HandlerError> {
    let request: ListGroupsRequest = decode_body(&head, body)?;
    let version = head.api_version;
    let states: Vec<String> = request
        .states_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let types: Vec<String> = request
        .types_filter
        .iter()
        .map(|t| t.to_ascii_lowercase())
        .collect();
    let response = match groups::list_all(&shard).await {
        Err(error) => ListGroupsResponse::default().with_error_code(error.code()),
        Ok(all) => {
            let listed = all
                .into_iter()
                .filter(|g| states.is_empty() || states.contains(&g.state.to_ascii_lowercase()))
                .filter(|_| types.is_empty() || types.iter().any(|t| t == "classic"))
                .map(|g| {
                    let mut listed = ListedGroup::default()
                        .with_group_id(GroupId(str_bytes(&g.group_id)))
                        .with_protocol_type(str_bytes(&g.protocol_type));
                    if version >= 4 {
                        listed = listed.with_group_state(str_bytes(&g.state));
                    }
                    if version >= 5 {
                        listed = listed.with_group_type(str_bytes("classic"));
                    }
                    listed
                })
                .collect();
            ListGroupsResponse::default().with_groups(listed)
        }
    };
    encode(&head, &response)
}
