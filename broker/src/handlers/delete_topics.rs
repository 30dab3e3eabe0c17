//! DeleteTopics (key 20): by name (v1-5) or by name or id (v6). The owning shards close and
//! remove the partition logs before the answer.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{ApiKey, DeleteTopicsRequest, DeleteTopicsResponse, TopicName};

use super::{
    encode, message_str, owner_failure_error, str_bytes, ApiSpec, HandlerError, HandlerFuture,
    Ordering, Response,
};
use crate::metadata::ops::{MetadataOp, TopicResult, TopicSelector};
use crate::protocol::request::{decode_body, RequestHead};
use crate::shard::Shard;
use crate::types::TopicId;

/// DeleteTopics 1-6.
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::DeleteTopics,
    min_version: 1,
    max_version: 6,
    ordering: Ordering::Exclusive,
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
    let request: DeleteTopicsRequest = decode_body(&head, body)?;
    let version = head.api_version;
    let selectors: Vec<TopicSelector> = if version >= 6 {
        request
            .topics
            .iter()
            .map(|t| match &t.name {
                Some(name) => TopicSelector::Name(name.to_string()),
                None => TopicSelector::Id(TopicId(t.topic_id)),
            })
            .collect()
    } else {
        request
            .topic_names
            .iter()
            .map(|name| TopicSelector::Name(name.to_string()))
            .collect()
    };
    let results: Vec<TopicResult> = match shard
        .change_metadata(MetadataOp::DeleteTopics {
            topics: selectors.clone(),
        })
        .await
    {
        Ok(results) => results,
        Err(failure) => {
            let err = owner_failure_error(failure);
            selectors
                .iter()
                .map(|s| TopicResult {
                    name: match s {
                        TopicSelector::Name(name) => name.clone(),
                        TopicSelector::Id(_) => String::new(),
                    },
                    outcome: Err(err.clone()),
                })
                .collect()
        }
    };
    let responses = results
        .into_iter()
        .zip(selectors.iter())
        .map(|(result, selector)| {
            let mut entry = DeletableTopicResult::default();
            let (name, id) = match (&result.outcome, selector) {
                (Ok(topic), _) => (Some(topic.name.clone()), Some(topic.id)),
                (Err(_), TopicSelector::Name(name)) => (Some(name.clone()), None),
                (Err(_), TopicSelector::Id(id)) => (None, Some(*id)),
            };
            entry.name = match name {
                Some(name) => Some(TopicName(str_bytes(&name))),
                // Before v6 the name is not nullable.
                None if version < 6 => Some(TopicName(str_bytes(""))),
                None => None,
            };
            if version >= 6 {
                if let Some(id) = id {
                    entry.topic_id = id.0;
                }
            }
            if let Err(err) = &result.outcome {
                entry.error_code = err.code.code();
                if version >= 5 {
                    entry.error_message = message_str(&err.message);
                }
            }
            entry
        })
        .collect();
    encode(
        &head,
        &DeleteTopicsResponse::default().with_responses(responses),
    )
}
