//! FindCoordinator (key 10): which broker coordinates a group (v0-3: one key; v4+: a batch
//! of keys). On a single broker that is this node for every group; the first request also
//! creates `__consumer_offsets` if it does not exist yet. Transaction coordinators are not
//! implemented (COORDINATOR_NOT_AVAILABLE).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{ApiKey, BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::{encode, str_bytes, ApiSpec, HandlerError, HandlerFuture, Ordering, Response};
use crate::groups;
use crate::protocol::request::{decode_body, RequestHead};
use crate::protocol::KafkaError;
use crate::shard::Shard;

/// FindCoordinator 0-6.
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::FindCoordinator,
    min_version: 0,
    max_version: 6,
    ordering: Ordering::Pipelined,
    handle: boxed,
};

fn boxed(shard: Rc<Shard>, head: RequestHead, body: Bytes) -> HandlerFuture {
    Box::pin(handle(shard, head, body))
}

/// Key type 0: a consumer group.
const KEY_TYPE_GROUP: i8 = 0;
/// Key type 1: a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;

async fn coordinator_for(shard: &Rc<Shard>, key: StrBytes, key_type: i8) -> Coordinator {
    let failed = |key: StrBytes, error: KafkaError, message: &str| {
        Coordinator::default()
            .with_key(key)
            .with_node_id(BrokerId(-1))
            .with_host(StrBytes::default())
            .with_port(-1)
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(message)))
    };
    match key_type {
        KEY_TYPE_GROUP if key.is_empty() => {
            failed(key, KafkaError::InvalidRequest, "The group id is empty.")
        }
        KEY_TYPE_GROUP => match groups::offsets_topic(shard).await {
            Ok(_) => Coordinator::default()
                .with_key(key)
                .with_node_id(BrokerId(shard.config.node_id.0))
                .with_host(str_bytes(&shard.advertised.host))
                .with_port(i32::from(shard.advertised.port))
                .with_error_code(0)
                .with_error_message(None),
            Err(error) => failed(key, error, "The coordinator is not available."),
        },
        KEY_TYPE_TRANSACTION => failed(
            key,
            KafkaError::CoordinatorNotAvailable,
            "Transactions are not supported by this broker.",
        ),
        _ => failed(
            key,
            KafkaError::InvalidRequest,
            "Unknown coordinator key type.",
        ),
    }
}

async fn handle(
    shard: Rc<Shard>,
    head: RequestHead,
    body: Bytes,
) -> Result<Response, HandlerError> {
    let request: FindCoordinatorRequest = decode_body(&head, body)?;
    let version = head.api_version;
    if version >= 4 {
        let mut coordinators = Vec::with_capacity(request.coordinator_keys.len());
        for key in request.coordinator_keys {
            coordinators.push(coordinator_for(&shard, key, request.key_type).await);
        }
        return encode(
            &head,
            &FindCoordinatorResponse::default().with_coordinators(coordinators),
        );
    }
    let found = coordinator_for(&shard, request.key.clone(), request.key_type).await;
    let mut response = FindCoordinatorResponse::default()
        .with_error_code(found.error_code)
        .with_node_id(found.node_id)
        .with_host(found.host)
        .with_port(found.port);
    if version >= 1 {
        response = response.with_error_message(found.error_message);
    }
    encode(&head, &response)
}
