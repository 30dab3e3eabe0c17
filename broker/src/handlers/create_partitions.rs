//! CreatePartitions (key 37): grows a topic's partition count (never shrinks it).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreatePartitionsResponse, TopicName,
};

use super::{
    encode, message_str, owner_failure_error, str_bytes, ApiSpec, HandlerError, HandlerFuture,
    Ordering, Response,
};
use crate::metadata::ops::{MetadataOp, PartitionGrowth, TopicResult};
use crate::protocol::request::{decode_body, RequestHead};
use crate::shard::Shard;

/// CreatePartitions 0-3.
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::CreatePartitions,
    min_version: 0,
    max_version: 3,
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
    let request: CreatePartitionsRequest = decode_body(&head, body)?;
    let topics: Vec<PartitionGrowth> = request
        .topics
        .iter()
        .map(|t| PartitionGrowth {
            topic: t.name.to_string(),
            count: t.count,
            assignments: t.assignments.as_ref().map(|assignments| {
                assignments
                    .iter()
                    .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                    .collect()
            }),
        })
        .collect();
    let names: Vec<String> = topics.iter().map(|growth| growth.topic.clone()).collect();
    let op = MetadataOp::CreatePartitions {
        topics,
        validate_only: request.validate_only,
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
    let results = results
        .into_iter()
        .map(|result| {
            let entry = CreatePartitionsTopicResult::default()
                .with_name(TopicName(str_bytes(&result.name)));
            match result.outcome {
                Ok(_) => entry.with_error_message(None),
                Err(err) => entry
                    .with_error_code(err.code.code())
                    .with_error_message(message_str(&err.message)),
            }
        })
        .collect();
    encode(
        &head,
        &CreatePartitionsResponse::default().with_results(results),
    )
}
