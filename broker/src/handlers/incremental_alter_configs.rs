//! IncrementalAlterConfigs (key 44): SET / DELETE / APPEND / SUBTRACT on topic configs and on
//! dynamic broker configs (resource name "" = cluster-wide default, or this node's id).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    ApiKey, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use super::alter_configs::alter_configs;
use super::{
    encode, message_str, str_bytes, ApiSpec, HandlerError, HandlerFuture, Ordering, Response,
};
use crate::metadata::ops::{ConfigAlteration, ConfigChange, TopicError};
use crate::protocol::request::{decode_body, RequestHead};
use crate::protocol::KafkaError;
use crate::shard::Shard;

/// IncrementalAlterConfigs 0-1.
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::IncrementalAlterConfigs,
    min_version: 0,
    max_version: 1,
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
    let request: IncrementalAlterConfigsRequest = decode_body(&head, body)?;
    // Parse the operations first; a bad operation fails only its resource.
    let mut parsed: Vec<Result<Vec<ConfigChange>, TopicError>> =
        Vec::with_capacity(request.resources.len());
    for resource in &request.resources {
        let mut changes = Vec::with_capacity(resource.configs.len());
        let mut failure = None;
        for config in &resource.configs {
            let name = config.name.to_string();
            let value = config.value.as_ref().map(|v| v.to_string());
            let change = match (config.config_operation, value) {
                (0, Some(value)) => ConfigChange::Set(name, value),
                (1, _) => ConfigChange::Delete(name),
                (2, Some(value)) => ConfigChange::Append(name, value),
                (3, Some(value)) => ConfigChange::Subtract(name, value),
                (0 | 2 | 3, None) => {
                    failure = Some(TopicError {
                        code: KafkaError::InvalidRequest,
                        message: Some(format!("Null value not supported for {name}")),
                    });
                    break;
                }
                (op, _) => {
                    failure = Some(TopicError {
                        code: KafkaError::InvalidRequest,
                        message: Some(format!("Unknown config operation {op}")),
                    });
                    break;
                }
            };
            changes.push(change);
        }
        parsed.push(match failure {
            Some(err) => Err(err),
            None => Ok(changes),
        });
    }
    let resources = request
        .resources
        .iter()
        .zip(parsed.iter())
        .filter_map(|(r, p)| {
            p.as_ref().ok().map(|changes| {
                (
                    r.resource_type,
                    r.resource_name.to_string(),
                    ConfigAlteration::Incremental(changes.clone()),
                )
            })
        })
        .collect();
    let mut outcomes = alter_configs(&shard, resources, request.validate_only)
        .await
        .into_iter();
    let responses = request
        .resources
        .iter()
        .zip(parsed)
        .map(|(resource, parsed)| {
            let outcome = match parsed {
                Err(err) => Err(err),
                Ok(_) => outcomes.next().unwrap_or(Err(TopicError {
                    code: KafkaError::UnknownServerError,
                    message: None,
                })),
            };
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
        &IncrementalAlterConfigsResponse::default().with_responses(responses),
    )
}
