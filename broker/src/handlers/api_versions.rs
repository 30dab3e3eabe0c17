//! ApiVersions (key 18): the supported API list, built from [`super::APIS`].
//!
//! Tagged fields (SupportedFeatures, FinalizedFeaturesEpoch, FinalizedFeatures,
//! ZkMigrationReady) are written only when they differ from their defaults, as Kafka does:
//! librdkafka 2.0.2 (Debian 12's kcat) misreads a v3 response that carries them at defaults.
//! kafka-protocol's encoder already skips fields at their defaults; the byte test below
//! pins that down.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

use super::{encode, ApiSpec, HandlerError, HandlerFuture, Ordering, Response, APIS};
use crate::protocol::request::{decode_body, RequestHead};
use crate::protocol::response::{encode_body, EncodeError};
use crate::protocol::KafkaError;
use crate::shard::Shard;

/// ApiVersions 0-4 (v4 is v3's body; clients still send v3 and get v3).
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::ApiVersions,
    min_version: 0,
    max_version: 4,
    ordering: Ordering::Pipelined,
    handle: boxed,
};

fn boxed(shard: Rc<Shard>, head: RequestHead, body: Bytes) -> HandlerFuture {
    Box::pin(handle(shard, head, body))
}

async fn handle(
    _shard: Rc<Shard>,
    head: RequestHead,
    body: Bytes,
) -> Result<Response, HandlerError> {
    let _request: ApiVersionsRequest = decode_body(&head, body)?;
    encode(&head, &supported_versions_response())
}

/// The response listing every supported API with its version range.
pub fn supported_versions_response() -> ApiVersionsResponse {
    let api_keys = APIS
        .iter()
        .map(|spec| {
            ApiVersion::default()
                .with_api_key(spec.key as i16)
                .with_min_version(spec.min_version)
                .with_max_version(spec.max_version)
        })
        .collect();
    ApiVersionsResponse::default().with_api_keys(api_keys)
}

/// The v0 body answering an ApiVersions version we do not support: UNSUPPORTED_VERSION plus
/// the supported list (KIP-511), so the client can pick a version and retry.
pub fn unsupported_version_body() -> Result<Bytes, EncodeError> {
    let response =
        supported_versions_response().with_error_code(KafkaError::UnsupportedVersion.code());
    encode_body(ApiKey::ApiVersions, 0, &response)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks a v3 response by hand and checks nothing follows the throttle time but a zero
    /// tagged-field count.
    #[test]
    fn v3_response_has_no_tagged_fields_at_defaults() {
        let response = supported_versions_response();
        let body = encode_body(ApiKey::ApiVersions, 3, &response).expect("encode");
        let bytes = &body[..];
        assert_eq!(&bytes[..2], &[0, 0], "error code");
        let count = APIS.len() + 1;
        assert!(count < 128, "one-byte varint");
        assert_eq!(bytes[2] as usize, count, "compact array length");
        let mut pos = 3;
        for spec in APIS {
            let entry = &bytes[pos..pos + 7];
            assert_eq!(i16::from_be_bytes([entry[0], entry[1]]), spec.key as i16);
            assert_eq!(i16::from_be_bytes([entry[2], entry[3]]), spec.min_version);
            assert_eq!(i16::from_be_bytes([entry[4], entry[5]]), spec.max_version);
            assert_eq!(entry[6], 0, "entry has no tagged fields");
            pos += 7;
        }
        assert_eq!(&bytes[pos..pos + 4], &[0, 0, 0, 0], "throttle_time_ms");
        pos += 4;
        assert_eq!(
            &bytes[pos..],
            &[0],
            "zero top-level tagged fields, nothing else"
        );
    }

    #[test]
    fn unsupported_version_answer_is_v0_with_error_35_and_the_list() {
        let body = unsupported_version_body().expect("encode");
        let bytes = &body[..];
        assert_eq!(i16::from_be_bytes([bytes[0], bytes[1]]), 35);
        let count = i32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]) as usize;
        assert_eq!(count, APIS.len());
        assert_eq!(bytes.len(), 2 + 4 + count * 6, "v0: no throttle, no tags");
    }
}
