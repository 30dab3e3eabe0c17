//! Response encoding (no I/O): the length prefix and response header, and bodies.
//!
//! A response goes on the wire as `[length][header][body]`. The body is encoded separately
//! (or assembled from parts for zero-copy fetch), so the head is built last, once the body
//! length is known, and the pieces are written with one vectored write.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Encodable;
use thiserror::Error;

/// A response body that failed to encode (a broker bug: a field set that the version lacks).
#[derive(Debug, Error)]
#[error("cannot encode {api_key:?} v{api_version} response: {reason}")]
pub struct EncodeError {
    /// API key.
    pub api_key: ApiKey,
    /// API version.
    pub api_version: i16,
    /// Encoder message.
    pub reason: String,
}

/// Encodes a response body at `api_version`.
pub fn encode_body<R: Encodable>(
    api_key: ApiKey,
    api_version: i16,
    body: &R,
) -> Result<Bytes, EncodeError> {
    let size = body.compute_size(api_version).map_err(|err| EncodeError {
        api_key,
        api_version,
        reason: err.to_string(),
    })?;
    let mut buf = BytesMut::with_capacity(size);
    body.encode(&mut buf, api_version)
        .map_err(|err| EncodeError {
            api_key,
            api_version,
            reason: err.to_string(),
        })?;
    Ok(buf.freeze())
}

/// Response header version for an API key and version. ApiVersions always answers with
/// header v0 (KIP-511), so a client that sent a version we do not support can still parse
/// our answer.
pub fn response_header_version(api_key: ApiKey, api_version: i16) -> i16 {
    if api_key == ApiKey::ApiVersions {
        0
    } else {
        api_key.response_header_version(api_version)
    }
}

/// The bytes before the body: the 4-byte length (header + body) and the response header.
/// Returns `None` if the total does not fit the i32 length prefix.
pub fn response_head(header_version: i16, correlation_id: i32, body_len: usize) -> Option<Bytes> {
    let header_len = if header_version >= 1 { 5 } else { 4 };
    let total = body_len.checked_add(header_len)?;
    let total = i32::try_from(total).ok()?;
    let mut head = BytesMut::with_capacity(4 + header_len);
    head.put_i32(total);
    head.put_i32(correlation_id);
    if header_version >= 1 {
        // Flexible header: no tagged fields (unsigned varint 0).
        head.put_u8(0);
    }
    Some(head.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_v0_and_v1() {
        let head = response_head(0, 7, 10).expect("fits");
        assert_eq!(&head[..], &[0, 0, 0, 14, 0, 0, 0, 7]);
        let head = response_head(1, 7, 10).expect("fits");
        assert_eq!(&head[..], &[0, 0, 0, 15, 0, 0, 0, 7, 0]);
        assert!(response_head(1, 7, usize::MAX).is_none());
    }

    #[test]
    fn api_versions_always_uses_header_v0() {
        for version in 0..=4 {
            assert_eq!(response_header_version(ApiKey::ApiVersions, version), 0);
        }
        assert_eq!(response_header_version(ApiKey::Metadata, 9), 1);
        assert_eq!(response_header_version(ApiKey::Metadata, 8), 0);
    }
}
