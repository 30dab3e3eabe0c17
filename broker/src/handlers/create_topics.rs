//! CreateTopics (key 19): validated and applied by the metadata owner, persisted, and
//! visible on every shard before the answer. `validate_only` checks without creating.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse, TopicName};

use super::describe_configs::topic_config_entries;
use super::{
    encode, message_str, owner_failure_error, str_bytes, ApiSpec, HandlerError, HandlerFuture,
    Ordering, Response,
};
use crate::metadata::ops::{MetadataOp, NewTopic, TopicError, TopicResult};
use crate::protocol::request::{decode_body, RequestHead};
use crate::shard::Shard;

/// CreateTopics 2-7.
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::CreateTopics,
    min_version: 2,
    max_version: 7,
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
    let request: CreateTopicsRequest = decode_body(&head, body)?;
    let version = head.api_version;
    let topics: Vec<NewTopic> = request
        .topics
        .iter()
        .map(|t| NewTopic {
            name: t.name.to_string(),
            num_partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            assignments: t
                .assignments
                .iter()
                .map(|a| {
                    (
                        a.partition_index,
                        a.broker_ids.iter().map(|b| b.0).collect(),
                    )
                })
                .collect(),
            configs: t
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect(),
        })
        .collect();
    let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
    let op = MetadataOp::CreateTopics {
        topics,
        validate_only: request.validate_only,
        if_not_exists: false,
    };
    let results: Vec<TopicResult> = match shard.change_metadata(op).await {
        Ok(results) => results,
        Err(failure) => {
            let err = owner_failure_error(failure);
            names
                .into_iter()
                .map(|name| TopicResult {
                    name,
                    outcome: Err(err.clone()),
                })
                .collect()
        }
    };
    let topics = results
        .into_iter()
        .map(|result| {
            let entry =
                CreatableTopicResult::default().with_name(TopicName(str_bytes(&result.name)));
            match result.outcome {
                Ok(topic) => {
                    let mut entry = entry.with_error_message(None);
                    if version >= 5 {
                        entry.num_partitions = topic.partition_count();
                        entry.replication_factor = 1;
                        entry.configs = Some(
                            topic_config_entries(&topic.configs, &shard.current_config())
                                .into_iter()
                                .map(|c| {
                                    CreatableTopicConfigs::default()
                                        .with_name(str_bytes(c.name))
                                        .with_value(Some(str_bytes(&c.value)))
                                        .with_read_only(false)
                                        .with_config_source(c.source as i8)
                                        .with_is_sensitive(false)
                                })
                                .collect(),
                        );
                    }
                    if version >= 7 {
                        entry.topic_id = topic.id.0;
                    }
                    entry
                }
                Err(TopicError { code, message }) => entry
                    .with_error_code(code.code())
                    .with_error_message(message_str(&message)),
            }
        })
        .collect();
    encode(&head, &CreateTopicsResponse::default().with_topics(topics))
}
