//! One file per Kafka API, and the one list ([`APIS`]) that names every supported API with
//! its version range. Dispatch ([`route`]) and the ApiVersions response are both built from
//! that list; a test proves they agree.
//!
//! A handler decodes its request body, does its work (forwarding to other shards where a
//! partition or the metadata lives elsewhere), and returns an encoded [`Response`]. Kafka
//! error codes are produced here, at the edge; internal errors are typed per module.

pub mod alter_configs;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Encodable;
use thiserror::Error;

use crate::metadata::ops::TopicError;
use crate::protocol::request::{RequestError, RequestHead};
use crate::protocol::response::{encode_body, EncodeError};
use crate::protocol::KafkaError;
use crate::shard::messages::OwnerFailure;
use crate::shard::partition_ops::{by_owner, PartitionReply, PartitionRequest};
use crate::shard::Shard;

/// What a handler sends back.
pub enum Response {
    /// An encoded response body (the connection adds length and header).
    Body(Bytes),
    /// A body assembled from parts written in order with one vectored write (zero-copy
    /// fetch): the record data is never copied into an encoded buffer.
    Parts(Vec<BodyPart>),
    /// No response at all (Produce with acks=0).
    NoResponse,
}

/// One piece of a [`Response::Parts`] body.
pub enum BodyPart {
    /// Bytes already in memory (encoded fields, or the engine's hot tail).
    Memory(Bytes),
    /// A range of a segment file, read (O_DIRECT, aligned buffer) by the connection's writer
    /// just before it is sent, and sent from that buffer.
    File {
        /// The segment's data file.
        file: vaart_engine::SegmentFile,
        /// Byte position.
        position: u64,
        /// Length in bytes.
        length: u64,
    },
}

impl BodyPart {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        match self {
            BodyPart::Memory(bytes) => bytes.len(),
            BodyPart::File { length, .. } => usize::try_from(*length).unwrap_or(usize::MAX),
        }
    }

    /// Whether the part is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A handler failure that ends the connection (Kafka closes it in these cases).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// The request body did not decode.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The response did not encode (a broker bug).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A Produce with acks=0 failed: Kafka closes the connection so the producer notices.
    #[error("acks=0 produce failed ({0:?}); closing the connection as Kafka does")]
    AcksZeroFailure(KafkaError),
}

/// A handler's future: runs on the connection's shard.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Response, HandlerError>>>>;

/// A handler entry point.
pub type HandlerFn = fn(Rc<Shard>, RequestHead, Bytes) -> HandlerFuture;

/// How a request is ordered against others on its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ordering {
    /// May run while earlier requests on the connection are still in flight (responses are
    /// still sent in request order).
    Pipelined,
    /// Waits for every earlier request to finish, and later ones wait for it (admin
    /// requests that change metadata, so a following request sees the change).
    Exclusive,
}

/// One supported API.
pub struct ApiSpec {
    /// API key.
    pub key: ApiKey,
    /// Lowest supported version.
    pub min_version: i16,
    /// Highest supported version.
    pub max_version: i16,
    /// Ordering on the connection.
    pub ordering: Ordering,
    /// Entry point.
    pub handle: HandlerFn,
}

/// Every API this broker implements. ApiVersions advertises exactly this list.
pub static APIS: &[ApiSpec] = &[
    produce::SPEC,
    fetch::SPEC,
    list_offsets::SPEC,
    metadata::SPEC,
    api_versions::SPEC,
    create_topics::SPEC,
    delete_topics::SPEC,
    delete_records::SPEC,
    offset_for_leader_epoch::SPEC,
    describe_configs::SPEC,
    alter_configs::SPEC,
    create_partitions::SPEC,
    incremental_alter_configs::SPEC,
    describe_cluster::SPEC,
    init_producer_id::SPEC,
    offset_commit::SPEC,
    offset_fetch::SPEC,
    find_coordinator::SPEC,
    join_group::SPEC,
    heartbeat::SPEC,
    leave_group::SPEC,
    sync_group::SPEC,
    describe_groups::SPEC,
    list_groups::SPEC,
    delete_groups::SPEC,
    offset_delete::SPEC,
];

/// What to do with a request, by API key and version.
pub enum Route {
    /// Run this handler.
    Handle(&'static ApiSpec),
    /// An ApiVersions version we do not support: answer UNSUPPORTED_VERSION in a v0 body
    /// listing what we support (KIP-511), so the client can retry with a version we know.
    ApiVersionsUnsupported,
    /// A supported API at an unsupported version: Kafka closes the connection.
    UnsupportedVersion {
        /// Supported minimum.
        min_version: i16,
        /// Supported maximum.
        max_version: i16,
    },
    /// An API we do not implement: Kafka closes the connection.
    UnsupportedApi,
}

/// Finds the handler for an API key and version.
pub fn route(key: ApiKey, version: i16) -> Route {
    match APIS.iter().find(|spec| spec.key == key) {
        Some(spec) if (spec.min_version..=spec.max_version).contains(&version) => {
            Route::Handle(spec)
        }
        Some(_) if key == ApiKey::ApiVersions => Route::ApiVersionsUnsupported,
        Some(spec) => Route::UnsupportedVersion {
            min_version: spec.min_version,
            max_version: spec.max_version,
        },
        None => Route::UnsupportedApi,
    }
}

/// Decodes a request body of a supported API at its version and discards it: the same
/// decoding the handlers do, for fuzzing and tests ("wire input never panics").
pub fn check_decodes(head: &RequestHead, body: Bytes) -> Result<(), RequestError> {
    use crate::protocol::request::decode_body;
    use kafka_protocol::messages as m;
    match head.api_key {
        ApiKey::Produce => decode_body::<m::ProduceRequest>(head, body).map(drop),
        ApiKey::Fetch => decode_body::<m::FetchRequest>(head, body).map(drop),
        ApiKey::ListOffsets => decode_body::<m::ListOffsetsRequest>(head, body).map(drop),
        ApiKey::Metadata => decode_body::<m::MetadataRequest>(head, body).map(drop),
        ApiKey::ApiVersions => decode_body::<m::ApiVersionsRequest>(head, body).map(drop),
        ApiKey::CreateTopics => decode_body::<m::CreateTopicsRequest>(head, body).map(drop),
        ApiKey::DeleteTopics => decode_body::<m::DeleteTopicsRequest>(head, body).map(drop),
        ApiKey::DeleteRecords => decode_body::<m::DeleteRecordsRequest>(head, body).map(drop),
        ApiKey::OffsetForLeaderEpoch => {
            decode_body::<m::OffsetForLeaderEpochRequest>(head, body).map(drop)
        }
        ApiKey::DescribeConfigs => decode_body::<m::DescribeConfigsRequest>(head, body).map(drop),
        ApiKey::AlterConfigs => decode_body::<m::AlterConfigsRequest>(head, body).map(drop),
        ApiKey::CreatePartitions => decode_body::<m::CreatePartitionsRequest>(head, body).map(drop),
        ApiKey::IncrementalAlterConfigs => {
            decode_body::<m::IncrementalAlterConfigsRequest>(head, body).map(drop)
        }
        ApiKey::DescribeCluster => decode_body::<m::DescribeClusterRequest>(head, body).map(drop),
        ApiKey::InitProducerId => decode_body::<m::InitProducerIdRequest>(head, body).map(drop),
        ApiKey::OffsetCommit => decode_body::<m::OffsetCommitRequest>(head, body).map(drop),
        ApiKey::OffsetFetch => decode_body::<m::OffsetFetchRequest>(head, body).map(drop),
        ApiKey::FindCoordinator => decode_body::<m::FindCoordinatorRequest>(head, body).map(drop),
        ApiKey::JoinGroup => decode_body::<m::JoinGroupRequest>(head, body).map(drop),
        ApiKey::Heartbeat => decode_body::<m::HeartbeatRequest>(head, body).map(drop),
        ApiKey::LeaveGroup => decode_body::<m::LeaveGroupRequest>(head, body).map(drop),
        ApiKey::SyncGroup => decode_body::<m::SyncGroupRequest>(head, body).map(drop),
        ApiKey::DescribeGroups => decode_body::<m::DescribeGroupsRequest>(head, body).map(drop),
        ApiKey::ListGroups => decode_body::<m::ListGroupsRequest>(head, body).map(drop),
        ApiKey::DeleteGroups => decode_body::<m::DeleteGroupsRequest>(head, body).map(drop),
        ApiKey::OffsetDelete => decode_body::<m::OffsetDeleteRequest>(head, body).map(drop),
        _ => Ok(()),
    }
}

/// Encodes a response body at the request's version.
pub fn encode<R: Encodable>(head: &RequestHead, body: &R) -> Result<Response, HandlerError> {
    Ok(Response::Body(encode_body(
        head.api_key,
        head.api_version,
        body,
    )?))
}

/// The Kafka error for a failed metadata change.
pub fn owner_failure_error(failure: OwnerFailure) -> TopicError {
    let (code, message) = match failure {
        OwnerFailure::Storage => (
            KafkaError::KafkaStorageError,
            "The broker could not persist the metadata change.",
        ),
        OwnerFailure::Broadcast => (
            KafkaError::UnknownServerError,
            "The metadata change could not be applied on every shard.",
        ),
        OwnerFailure::ShuttingDown => (
            KafkaError::BrokerNotAvailable,
            "The broker is shutting down.",
        ),
    };
    TopicError {
        code,
        message: Some(message.to_string()),
    }
}

/// Runs per-partition work on the owning shards: other shards' groups as one forwarded
/// batch each (spawned first, so they leave in request order), this shard's group directly.
/// Outcomes land in `outcomes` at each item's position; missing ones get `failed()`.
pub async fn run_on_owners<I, O, Fut>(
    shard: &Rc<Shard>,
    work: Vec<(usize, crate::types::ShardId, I)>,
    outcomes: &mut [Option<O>],
    local: impl FnOnce(Vec<I>) -> Fut,
    to_request: fn(Vec<I>) -> PartitionRequest,
    from_reply: fn(PartitionReply) -> Option<Vec<O>>,
    failed: impl Fn() -> O,
) where
    I: 'static,
    Fut: Future<Output = Vec<O>>,
{
    let grouped = by_owner(work);
    let mut local_group = None;
    let mut remote = Vec::new();
    for (owner, group) in grouped.groups {
        let (positions, items): (Vec<usize>, Vec<I>) = group.into_iter().unzip();
        if owner == shard.id {
            local_group = Some((positions, items));
        } else {
            let peer = shard.clone();
            let request = to_request(items);
            let task =
                glommio::spawn_local(async move { peer.call_partitions(owner, request).await });
            remote.push((positions, task));
        }
    }
    if let Some((positions, items)) = local_group {
        for (position, outcome) in positions.into_iter().zip(local(items).await) {
            if let Some(slot) = outcomes.get_mut(position) {
                *slot = Some(outcome);
            }
        }
    }
    for (positions, task) in remote {
        let results = task.await.ok().and_then(from_reply).unwrap_or_default();
        let mut results = results.into_iter();
        for position in positions {
            let outcome = results.next().unwrap_or_else(&failed);
            if let Some(slot) = outcomes.get_mut(position) {
                *slot = Some(outcome);
            }
        }
    }
}

/// `Some(message)` for Kafka response fields that are nullable strings.
pub fn message_str(message: &Option<String>) -> Option<kafka_protocol::protocol::StrBytes> {
    message
        .as_ref()
        .map(|m| kafka_protocol::protocol::StrBytes::from_string(m.clone()))
}

/// A `TopicName` from a `&str`.
pub fn topic_name(value: &str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(str_bytes(value))
}

/// A `StrBytes` from a `&str`.
pub fn str_bytes(value: &str) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiVersionsResponse;
    use kafka_protocol::protocol::Decodable;

    #[test]
    fn every_listed_api_dispatches_and_is_advertised_and_nothing_else() {
        let advertised: ApiVersionsResponse = api_versions::supported_versions_response();
        assert_eq!(advertised.api_keys.len(), APIS.len());
        for key in ApiKey::iter() {
            let listed = APIS.iter().find(|spec| spec.key == key);
            let in_response = advertised
                .api_keys
                .iter()
                .find(|entry| entry.api_key == key as i16);
            match (listed, in_response) {
                (Some(spec), Some(entry)) => {
                    assert_eq!(entry.min_version, spec.min_version, "{key:?}");
                    assert_eq!(entry.max_version, spec.max_version, "{key:?}");
                    for version in spec.min_version..=spec.max_version {
                        assert!(matches!(route(key, version), Route::Handle(s) if s.key == key));
                    }
                    assert!(!matches!(
                        route(key, spec.max_version + 1),
                        Route::Handle(_)
                    ));
                    if spec.min_version > 0 {
                        assert!(!matches!(
                            route(key, spec.min_version - 1),
                            Route::Handle(_)
                        ));
                    }
                    // Only versions kafka-protocol can decode and encode.
                    let valid = key.valid_versions();
                    assert!(
                        spec.min_version >= valid.min && spec.max_version <= valid.max,
                        "{key:?}"
                    );
                }
                (None, None) => assert!(matches!(route(key, 0), Route::UnsupportedApi)),
                _ => panic!("{key:?}: list and ApiVersions response disagree"),
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Arbitrary bytes as the body of every supported request at every version: decoding
        /// fails cleanly, never panics or aborts (absurd array lengths included).
        #[test]
        fn request_bodies_never_panic(
            index in 0usize..64,
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96),
        ) {
            let spec = &APIS[index % APIS.len()];
            for version in spec.min_version..=spec.max_version {
                let head = RequestHead { api_key: spec.key, api_version: version, correlation_id: 1, client_id: None, peer: None };
                let _ = check_decodes(&head, Bytes::from(body.clone()));
            }
        }
    }

    #[test]
    fn every_supported_api_decodes_its_default_request() {
        use kafka_protocol::protocol::Encodable;
        for spec in APIS {
            for version in spec.min_version..=spec.max_version {
                let mut buf = bytes::BytesMut::new();
                let head = RequestHead {
                    api_key: spec.key,
                    api_version: version,
                    correlation_id: 1,
                    client_id: None,
                    peer: None,
                };
                let encoded = match spec.key {
                    ApiKey::Produce => kafka_protocol::messages::ProduceRequest::default()
                        .encode(&mut buf, version),
                    ApiKey::Fetch => {
                        kafka_protocol::messages::FetchRequest::default().encode(&mut buf, version)
                    }
                    ApiKey::Metadata => kafka_protocol::messages::MetadataRequest::default()
                        .encode(&mut buf, version),
                    ApiKey::ApiVersions => kafka_protocol::messages::ApiVersionsRequest::default()
                        .encode(&mut buf, version),
                    _ => continue,
                };
                encoded.expect("encode default");
                check_decodes(&head, buf.freeze())
                    .unwrap_or_else(|e| panic!("{:?} v{version}: {e}", spec.key));
            }
        }
    }

    #[test]
    fn absurd_array_length_is_an_error_not_an_abort() {
        // Metadata v1: topics array claiming i32::MAX entries, no bytes behind it.
        let head = RequestHead {
            api_key: ApiKey::Metadata,
            api_version: 1,
            correlation_id: 1,
            client_id: None,
            peer: None,
        };
        assert!(check_decodes(&head, Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff])).is_err());
        // Metadata v12: compact array claiming u32::MAX - 1 entries.
        let head = RequestHead {
            api_key: ApiKey::Metadata,
            api_version: 12,
            correlation_id: 1,
            client_id: None,
            peer: None,
        };
        assert!(check_decodes(&head, Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f])).is_err());
    }

    #[test]
    fn keys_are_listed_once() {
        for (i, spec) in APIS.iter().enumerate() {
            assert!(APIS.iter().skip(i + 1).all(|other| other.key != spec.key));
        }
    }

    #[test]
    fn apiversions_response_round_trips_at_every_version() {
        let response = api_versions::supported_versions_response();
        for version in 0..=4 {
            let body = encode_body(ApiKey::ApiVersions, version, &response).expect("encode");
            let decoded = ApiVersionsResponse::decode(&mut body.clone(), version).expect("decode");
            assert_eq!(decoded.api_keys, response.api_keys);
        }
    }
}
