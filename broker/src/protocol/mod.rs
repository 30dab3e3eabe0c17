//! The Kafka wire protocol edge, with no I/O: bytes in, structs out, and back.
//!
//! - [`frame`]: the 4-byte length prefix, with Kafka's limits.
//! - [`request`]: request header decode (header version from API key + version) and body
//!   decode through the `kafka-protocol` crate.
//! - [`response`]: response header (v0/v1; ApiVersions always v0) and body encode.
//! - [`fetch_body`]: the Fetch response body assembled around record data (zero-copy).

pub mod fetch_body;
pub mod frame;
pub mod request;
pub mod response;

pub use kafka_protocol::ResponseError as KafkaError;

/// Kafka's "no error" code.
pub const NONE: i16 = 0;

/// The wire code of a Kafka error.
pub fn code(error: KafkaError) -> i16 {
    error.code()
}
