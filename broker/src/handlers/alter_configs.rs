//! AlterConfigs (key 33): replaces a topic's config overrides with the given set.
//! Broker configs are static in Vaart (file, environment, flags); altering them is refused
//! with a clear message.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse, ApiKey};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_BROKER_LOGGER, RESOURCE_TOPIC};
use super::{
    encode, message_str, owner_failure_error, str_bytes, ApiSpec, HandlerError, HandlerFuture,
    Ordering, Response,
};
use crate::metadata::ops::{ConfigAlteration, MetadataOp, TopicError};
use crate::protocol::request::{decode_body, RequestHead};
use crate::protocol::KafkaError;
use crate::shard::Shard;

/// AlterConfigs 0-2.
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::AlterConfigs,
    min_version: 0,
    max_version: 2,
    ordering: Ordering::Exclusive,
    handle: boxed,
};

fn boxed(shard: Rc<Shard>, head: RequestHead, body: Bytes) -> HandlerFuture {
    Box::pin(handle(shard, head, body))
}

/// The error for a resource type other than topics.
pub fn unsupported_resource(resource_type: i8) -> TopicError {
    let message = match resource_type {
        RESOURCE_BROKER | RESOURCE_BROKER_LOGGER => {
            "Vaart has no dynamic broker configs: set broker settings in the config file, VAART_* environment or --set flags and restart"
        }
        _ => "Unsupported resource type",
    };
    TopicError {
        code: KafkaError::InvalidRequest,
        message: Some(message.to_string()),
    }
}

/// Applies per-topic alterations through the owner; non-topic resources get an error.
/// Returns one outcome per resource, in request order.
pub async fn alter_topic_configs(
    shard: &Rc<Shard>,
    resources: Vec<(i8, String, ConfigAlteration)>,
    validate_only: bool,
) -> Vec<Result<(), TopicError>> {
    let topics: Vec<(String, ConfigAlteration)> = resources
        .iter()
        .filter(|(kind, _, _)| *kind == RESOURCE_TOPIC)
        .map(|(_, name, alteration)| (name.clone(), alteration.clone()))
        .collect();
    let mut topic_outcomes = if topics.is_empty() {
        Vec::new()
    } else {
        let count = topics.len();
        match shard
            .change_metadata(MetadataOp::AlterTopicConfigs {
                topics,
                validate_only,
            })
            .await
        {
            Ok(results) => results.into_iter().map(|r| r.outcome.map(|_| ())).collect(),
            Err(failure) => vec![Err(owner_failure_error(failure)); count],
        }
    }
    .into_iter();
    resources
        .iter()
        .map(|(kind, _, _)| {
            if *kind == RESOURCE_TOPIC {
                topic_outcomes.next().unwrap_or(Err(TopicError {
                    code: KafkaError::UnknownServerError,
                    message: None,
                }))
            } else {
                Err(unsupported_resource(*kind))
            }
        })
        .collect()
}

async fn handle(
    shard: Rc<Shard>,
    head: RequestHead,
    body: Bytes,
) -> Result<Response, HandlerError> {
    let request: AlterConfigsRequest = decode_body(&head, body)?;
    let resources: Vec<(i8, String, ConfigAlteration)> = request
        .resources
        .iter()
        .map(|r| {
            let entries = r
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect();
            (
                r.resource_type,
                r.resource_name.to_string(),
                ConfigAlteration::Replace(entries),
            )
        })
        .collect();
    let outcomes = alter_topic_configs(&shard, resources, request.validate_only).await;
    let responses = request
        .resources
        .iter()
        .zip(outcomes)
        .map(|(resource, outcome)| {
            let entry = AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(str_bytes(resource.resource_name.as_str()));
            match outcome {
                Ok(()) => entry.with_error_message(None),
                Err(err) => entry
                    .with_error_code(err.code.code())
                    .with_error_message(message_str(&err.message)),
            }
        })
        .collect();
    encode(
        &head,
        &AlterConfigsResponse::default().with_responses(responses),
    )
}
