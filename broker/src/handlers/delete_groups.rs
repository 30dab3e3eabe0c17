//! DeleteGroups (key 42): deletes empty groups and their committed offsets (tombstones in
//! `__consumer_offsets`); NON_EMPTY_GROUP while a group has members.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{ApiKey, DeleteGroupsRequest, DeleteGroupsResponse, GroupId};

use super::{encode, str_bytes, ApiSpec, HandlerError, HandlerFuture, Ordering, Response};
use crate::groups;
use crate::groups::api::{GroupReply, GroupRequest};
use crate::protocol::request::{decode_body, RequestHead};
use crate::protocol::KafkaError;
use crate::shard::Shard;

/// DeleteGroups 0-2.
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::DeleteGroups,
    min_version: 0,
    max_version: 2,
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
    let request: DeleteGroupsRequest = decode_body(&head, body)?;
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group in &request.groups_names {
        let id = group.to_string();
        let error = if id.is_empty() {
            Some(KafkaError::InvalidGroupId)
        } else {
            match groups::call(&shard, &id, GroupRequest::Delete(vec![id.clone()])).await {
                GroupReply::Delete(list) => list.into_iter().next().and_then(|(_, e)| e),
                GroupReply::Failed(error) => Some(error),
                _ => Some(KafkaError::UnknownServerError),
            }
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(GroupId(str_bytes(&id)))
                .with_error_code(error.map(|e| e.code()).unwrap_or(0)),
        );
    }
    encode(
        &head,
        &DeleteGroupsResponse::default().with_results(results),
    )
}
