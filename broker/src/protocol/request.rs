//! Request header and body decoding (no I/O).
//!
//! The header version follows from the API key and version (kafka-protocol knows the table):
//! v1 (`client_id`) for classic versions, v2 (plus tagged fields) for flexible ones.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, StrBytes};
use std::net::SocketAddr;
use thiserror::Error;

/// Why a request could not be decoded. Each closes the connection, as in Kafka.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RequestError {
    /// Fewer than the 8 bytes every header has (api key, version, correlation id).
    #[error("request of {0} bytes is shorter than a request header")]
    TooShort(usize),
    /// An API key Kafka does not define.
    #[error("unknown API key {api_key} (correlation id {correlation_id})")]
    UnknownApiKey {
        /// The key sent.
        api_key: i16,
        /// The correlation id sent.
        correlation_id: i32,
    },
    /// The header bytes do not decode.
    #[error("malformed {api_key:?} v{api_version} request header: {reason}")]
    MalformedHeader {
        /// API key.
        api_key: ApiKey,
        /// API version.
        api_version: i16,
        /// Decoder message.
        reason: String,
    },
    /// The body bytes do not decode at the header's version.
    #[error("malformed {api_key:?} v{api_version} request body (correlation id {correlation_id}): {reason}")]
    MalformedBody {
        /// API key.
        api_key: ApiKey,
        /// API version.
        api_version: i16,
        /// Correlation id.
        correlation_id: i32,
        /// Decoder message.
        reason: String,
    },
}

/// A decoded request header, plus what the connection needs to answer.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// API key.
    pub api_key: ApiKey,
    /// API version.
    pub api_version: i16,
    /// Correlation id echoed in the response.
    pub correlation_id: i32,
    /// Client id, if sent.
    pub client_id: Option<StrBytes>,
    /// The client's address (the connection's peer), where the socket could tell it; the
    /// group coordinator reports it as the member's `client_host`.
    pub peer: Option<SocketAddr>,
}

/// The fixed first 8 bytes of every request header: api key, version, correlation id.
pub fn fixed_prefix(frame: &[u8]) -> Result<(i16, i16, i32), RequestError> {
    let prefix = frame.get(..8).ok_or(RequestError::TooShort(frame.len()))?;
    let api_key = i16::from_be_bytes([prefix[0], prefix[1]]);
    let api_version = i16::from_be_bytes([prefix[2], prefix[3]]);
    let correlation_id = i32::from_be_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
    Ok((api_key, api_version, correlation_id))
}

/// Decodes the header at the front of `frame`, leaving `frame` at the start of the body.
pub fn decode_header(frame: &mut Bytes) -> Result<RequestHead, RequestError> {
    let (raw_key, api_version, correlation_id) = fixed_prefix(frame)?;
    let api_key = ApiKey::try_from(raw_key).map_err(|_| RequestError::UnknownApiKey {
        api_key: raw_key,
        correlation_id,
    })?;
    let header_version = api_key.request_header_version(api_version);
    let header = RequestHeader::decode(frame, header_version).map_err(|err| {
        RequestError::MalformedHeader {
            api_key,
            api_version,
            reason: err.to_string(),
        }
    })?;
    Ok(RequestHead {
        api_key,
        api_version,
        correlation_id: header.correlation_id,
        client_id: header.client_id,
        peer: None,
    })
}

/// Decodes a request body of type `R` at the header's version.
pub fn decode_body<R: Decodable>(head: &RequestHead, mut body: Bytes) -> Result<R, RequestError> {
    R::decode(&mut body, head.api_version).map_err(|err| RequestError::MalformedBody {
        api_key: head.api_key,
        api_version: head.api_version,
        correlation_id: head.correlation_id,
        reason: err.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use kafka_protocol::protocol::{encode_request_header_into_buffer, Encodable};
    use proptest::prelude::*;

    fn request_bytes(api_key: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(42)
            .with_client_id(Some(StrBytes::from_static_str("test")));
        encode_request_header_into_buffer(&mut buf, &header).expect("header");
        body.encode(&mut buf, version).expect("body");
        buf.freeze()
    }

    #[test]
    fn decodes_classic_and_flexible_headers() {
        for version in [0, 3] {
            let mut frame =
                request_bytes(ApiKey::ApiVersions, version, &ApiVersionsRequest::default());
            let head = decode_header(&mut frame).expect("header");
            assert_eq!(head.api_key, ApiKey::ApiVersions);
            assert_eq!(head.correlation_id, 42);
            assert_eq!(head.client_id.as_deref(), Some("test"));
            let _: ApiVersionsRequest = decode_body(&head, frame).expect("body");
        }
    }

    #[test]
    fn truncated_body_is_an_error() {
        let frame = request_bytes(ApiKey::Metadata, 12, &MetadataRequest::default());
        for cut in 0..frame.len() {
            let mut truncated = frame.slice(..cut);
            if let Ok(head) = decode_header(&mut truncated) {
                let _ = decode_body::<MetadataRequest>(&head, truncated);
            }
        }
        let mut short = frame.slice(..7);
        assert!(matches!(
            decode_header(&mut short),
            Err(RequestError::TooShort(7))
        ));
    }

    #[test]
    fn unknown_api_key_is_reported() {
        let mut frame = Bytes::from_static(&[0x7f, 0x00, 0, 0, 0, 0, 0, 9]);
        assert!(matches!(
            decode_header(&mut frame),
            Err(RequestError::UnknownApiKey {
                api_key: 0x7f00,
                correlation_id: 9
            })
        ));
    }

    proptest! {
        #[test]
        fn header_decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..128)) {
            let mut frame = Bytes::from(data);
            let _ = decode_header(&mut frame);
        }
    }
}
