//! AlterConfigs (key 33): replaces a topic's config overrides, or one dynamic broker config
//! level (resource name "" = cluster-wide default, or this node's id), with the given set.
//! Broker changes go through shard 0 (see `dynamic_config` and `shard::live_config`).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse, ApiKey};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_BROKER_LOGGER, RESOURCE_TOPIC};
use super::{
    encode, message_str, owner_failure_error, str_bytes, ApiSpec, HandlerError, HandlerFuture,
    Ordering, Response,
};
use crate::dynamic_config::resolve_broker_resource;
use crate::metadata::ops::{ConfigAlteration, MetadataOp, TopicError};
use crate::protocol::request::{decode_body, RequestHead};
use crate::protocol::KafkaError;
use crate::shard::live_config::BrokerConfigAlteration;
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

/// The error for a resource type other than topics and brokers.
pub fn unsupported_resource(resource_type: i8) -> TopicError {
    let message = match resource_type {
        RESOURCE_BROKER_LOGGER => {
            "Vaart has no dynamic logger levels: set RUST_LOG or VAART_LOG and restart".to_string()
        }
        other => format!("Unknown resource type {other}"),
    };
    TopicError {
        code: KafkaError::InvalidRequest,
        message: Some(message),
    }
}

/// Applies topic and broker alterations; returns one outcome per resource, in request order.
/// Topic changes go to the metadata owner in one batch; broker changes, one at a time, to
/// the config owner (both shard 0).
pub async fn alter_configs(
    shard: &Rc<Shard>,
    resources: Vec<(i8, String, ConfigAlteration)>,
    validate_only: bool,
) -> Vec<Result<(), TopicError>> {
    let brokers: Vec<(usize, String, ConfigAlteration)> = resources
        .iter()
        .enumerate()
        .filter(|(_, (kind, _, _))| *kind == RESOURCE_BROKER)
        .map(|(index, (_, name, alteration))| (index, name.clone(), alteration.clone()))
        .collect();
    let mut outcomes = alter_topic_configs(shard, resources, validate_only).await;
    for (index, name, alteration) in brokers {
        let outcome = match resolve_broker_resource(&name, shard.config.node_id) {
            Ok(level) => {
                shard
                    .alter_broker_config(BrokerConfigAlteration {
                        level,
                        alteration,
                        validate_only,
                    })
                    .await
            }
            Err(err) => Err(err),
        };
        if let Some(slot) = outcomes.get_mut(index) {
            *slot = outcome;
        }
    }
    outcomes
}

/// Applies per-topic alterations through the owner; other resources get an error (brokers are
/// handled by [`alter_configs`]).
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
    let outcomes = alter_configs(&shard, resources, request.validate_only).await;
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
