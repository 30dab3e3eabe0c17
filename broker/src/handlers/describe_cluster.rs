//! DescribeCluster (key 60): cluster id, controller and brokers (this node).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{ApiKey, BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{encode, str_bytes, ApiSpec, HandlerError, HandlerFuture, Ordering, Response};
use crate::protocol::request::{decode_body, RequestHead};
use crate::protocol::KafkaError;
use crate::shard::Shard;

/// DescribeCluster 0-2.
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::DescribeCluster,
    min_version: 0,
    max_version: 2,
    ordering: Ordering::Pipelined,
    handle: boxed,
};

/// Endpoint type "broker" (KIP-919).
const ENDPOINT_BROKER: i8 = 1;

fn boxed(shard: Rc<Shard>, head: RequestHead, body: Bytes) -> HandlerFuture {
    Box::pin(handle(shard, head, body))
}

async fn handle(
    shard: Rc<Shard>,
    head: RequestHead,
    body: Bytes,
) -> Result<Response, HandlerError> {
    let request: DescribeClusterRequest = decode_body(&head, body)?;
    let node = shard.config.node_id;
    let mut response = DescribeClusterResponse::default()
        .with_error_message(None)
        .with_cluster_id(str_bytes(&shard.metadata().cluster_id))
        .with_controller_id(BrokerId(node.0));
    if head.api_version >= 1 && request.endpoint_type != ENDPOINT_BROKER {
        let response = response
            .with_error_code(KafkaError::UnsupportedEndpointType.code())
            .with_error_message(Some(str_bytes(
                "Only the broker endpoint type is supported.",
            )));
        return encode(&head, &response);
    }
    response.brokers = vec![DescribeClusterBroker::default()
        .with_broker_id(BrokerId(node.0))
        .with_host(str_bytes(&shard.advertised.host))
        .with_port(i32::from(shard.advertised.port))];
    encode(&head, &response)
}
