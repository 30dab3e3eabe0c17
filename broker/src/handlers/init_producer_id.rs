//! InitProducerId (key 22): a producer id and epoch for an idempotent producer.
//!
//! Only non-transactional producers (`transactional_id` null) are served: the id comes from
//! the metadata owner's persisted counter (shard 0, `shard::producer_ids`); v3+ requests
//! that carry the producer's current id and epoch get that id with the epoch bumped (KIP-360).
//! A transactional id is refused with INVALID_REQUEST (an empty one, as Kafka does; a
//! non-empty one because transactions are not implemented), which clients treat as fatal
//! instead of retrying forever.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId as WireProducerId,
};
use tracing::{debug, info, warn};

use super::{encode, ApiSpec, HandlerError, HandlerFuture, Ordering, Response};
use crate::protocol::request::{decode_body, RequestHead};
use crate::protocol::KafkaError;
use crate::shard::producer_ids::ProducerIdError;
use crate::shard::producer_state::{ProducerEpoch, ProducerId};
use crate::shard::Shard;

/// InitProducerId 0-5 (v3 adds the current id and epoch for epoch bumps; v2+ flexible).
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::InitProducerId,
    min_version: 0,
    max_version: 5,
    ordering: Ordering::Pipelined,
    handle: boxed,
};

/// First version whose request carries the producer's current id and epoch.
const FIRST_EPOCH_BUMP_VERSION: i16 = 3;

fn boxed(shard: Rc<Shard>, head: RequestHead, body: Bytes) -> HandlerFuture {
    Box::pin(handle(shard, head, body))
}

fn error_response(error: KafkaError) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(error.code())
        .with_producer_id(WireProducerId(-1))
        .with_producer_epoch(-1)
}

async fn handle(
    shard: Rc<Shard>,
    head: RequestHead,
    body: Bytes,
) -> Result<Response, HandlerError> {
    let request: InitProducerIdRequest = decode_body(&head, body)?;
    if let Some(transactional_id) = &request.transactional_id {
        info!(
            client = ?head.client_id, transactional_id = %transactional_id.as_str(),
            "InitProducerId with a transactional id refused: transactions are not supported"
        );
        return encode(&head, &error_response(KafkaError::InvalidRequest));
    }
    let current = (head.api_version >= FIRST_EPOCH_BUMP_VERSION
        && request.producer_id.0 >= 0
        && request.producer_epoch >= 0)
        .then_some((
            ProducerId(request.producer_id.0),
            ProducerEpoch(request.producer_epoch),
        ));
    let response = match shard.init_producer_id(current).await {
        Ok((id, epoch)) => {
            debug!(client = ?head.client_id, producer_id = id.0, epoch = epoch.0, bumped = current.is_some(), "producer id handed out");
            InitProducerIdResponse::default()
                .with_producer_id(WireProducerId(id.0))
                .with_producer_epoch(epoch.0)
        }
        Err(err) => {
            warn!(client = ?head.client_id, error = %err, "InitProducerId failed");
            let error = match err {
                ProducerIdError::Storage => KafkaError::KafkaStorageError,
                ProducerIdError::Exhausted => KafkaError::UnknownServerError,
                ProducerIdError::ShuttingDown => KafkaError::CoordinatorNotAvailable,
            };
            error_response(error)
        }
    };
    encode(&head, &response)
}
