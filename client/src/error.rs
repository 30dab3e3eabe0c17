//! Typed errors of the client. A Kafka error code from a broker is kept as [`KafkaCode`] (the
//! exact `i16`), never folded into a string, so callers can branch on it.

use std::fmt;
use std::io;
use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;

use crate::types::{NodeId, PartitionId};

/// An error code as a broker sent it (0 = none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KafkaCode(pub i16);

impl KafkaCode {
    pub const NONE: KafkaCode = KafkaCode(0);
    pub const OFFSET_OUT_OF_RANGE: KafkaCode = KafkaCode(1);
    pub const UNKNOWN_TOPIC_OR_PARTITION: KafkaCode = KafkaCode(3);
    pub const LEADER_NOT_AVAILABLE: KafkaCode = KafkaCode(5);
    pub const NOT_LEADER_OR_FOLLOWER: KafkaCode = KafkaCode(6);
    pub const REQUEST_TIMED_OUT: KafkaCode = KafkaCode(7);
    pub const UNSUPPORTED_VERSION: KafkaCode = KafkaCode(35);
    pub const TOPIC_ALREADY_EXISTS: KafkaCode = KafkaCode(36);
    pub const UNKNOWN_TOPIC_ID: KafkaCode = KafkaCode(100);
    pub const FENCED_LEADER_EPOCH: KafkaCode = KafkaCode(74);

    /// Whether the code means success.
    pub fn is_ok(self) -> bool {
        self.0 == 0
    }

    /// Kafka's own classification (the protocol marks each code retriable or not).
    pub fn is_retriable(self) -> bool {
        ResponseError::try_from_code(self.0).is_some_and(|error| error.is_retriable())
    }

    /// Whether the client's view of leaders is stale: refresh metadata and retry.
    pub fn needs_metadata_refresh(self) -> bool {
        matches!(
            self,
            Self::UNKNOWN_TOPIC_OR_PARTITION
                | Self::LEADER_NOT_AVAILABLE
                | Self::NOT_LEADER_OR_FOLLOWER
                | Self::FENCED_LEADER_EPOCH
                | Self::UNKNOWN_TOPIC_ID
        )
    }

    /// `Err` with this code unless it is 0.
    pub fn into_result(self) -> Result<(), KafkaCode> {
        if self.is_ok() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for KafkaCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match ResponseError::try_from_code(self.0) {
            None => write!(formatter, "NONE (0)"),
            Some(ResponseError::Unknown(code)) => write!(formatter, "unknown error code {code}"),
            Some(error) => write!(formatter, "{error} ({})", self.0),
        }
    }
}

/// An error code a broker returned for one request or one resource in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{api:?} failed{}: {code}{}", resource_suffix(.resource), message_suffix(.message))]
pub struct KafkaError {
    pub api: ApiKey,
    pub code: KafkaCode,
    /// The topic (and partition) or config resource the code is about, if any.
    pub resource: Option<String>,
    /// The broker's error message, if it sent one.
    pub message: Option<String>,
}

fn resource_suffix(resource: &Option<String>) -> String {
    resource
        .as_ref()
        .map_or_else(String::new, |resource| format!(" for {resource}"))
}

fn message_suffix(message: &Option<String>) -> String {
    message
        .as_ref()
        .filter(|message| !message.is_empty())
        .map_or_else(String::new, |message| format!(": {message}"))
}

impl KafkaError {
    pub fn new(api: ApiKey, code: KafkaCode) -> Self {
        Self {
            api,
            code,
            resource: None,
            message: None,
        }
    }

    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    pub fn with_message(mut self, message: Option<&str>) -> Self {
        self.message = message.map(str::to_owned);
        self
    }
}

/// A boxed error from the `kafka-protocol` crate (it reports with `anyhow`).
pub type ProtocolSource = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything a client call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No bootstrap address was given.
    #[error("no bootstrap server given")]
    NoBootstrap,
    /// A `HOST:PORT` could not be resolved or parsed.
    #[error("invalid broker address {addr}: {source}")]
    InvalidAddress {
        addr: String,
        #[source]
        source: io::Error,
    },
    /// TCP connect failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    /// Reading from or writing to a connection failed.
    #[error("I/O on connection to {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: io::Error,
    },
    /// The connection was closed (by the broker, or after an earlier error on it).
    #[error("connection to {addr} is closed")]
    ConnectionClosed { addr: String },
    /// The broker sent a frame that does not fit the protocol (bad length, wrong correlation).
    #[error("protocol violation from {addr}: {reason}")]
    Frame { addr: String, reason: &'static str },
    /// A request could not be encoded (the caller passed values the version cannot carry).
    #[error("encoding {api:?} v{version}: {source}")]
    Encode {
        api: ApiKey,
        version: i16,
        #[source]
        source: ProtocolSource,
    },
    /// A response could not be decoded.
    #[error("decoding {api:?} v{version} response: {source}")]
    Decode {
        api: ApiKey,
        version: i16,
        #[source]
        source: ProtocolSource,
    },
    /// Record batches could not be encoded or decoded.
    #[error("record batch: {source}")]
    Records {
        #[source]
        source: ProtocolSource,
    },
    /// The broker supports no version of an API that this client speaks.
    #[error("broker {addr} supports no version of {api:?} this client speaks")]
    UnsupportedApi { addr: String, api: ApiKey },
    /// The broker answered with an error code.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// The topic does not exist (after a metadata refresh).
    #[error("unknown topic {topic}")]
    UnknownTopic { topic: String },
    /// The partition does not exist in the topic.
    #[error("unknown partition {topic}-{partition}")]
    UnknownPartition {
        topic: String,
        partition: PartitionId,
    },
    /// The partition has no leader right now.
    #[error("no leader for {topic}-{partition}")]
    NoLeader {
        topic: String,
        partition: PartitionId,
    },
    /// Metadata named a node id without an address.
    #[error("unknown broker node {node}")]
    UnknownNode { node: NodeId },
    /// A request took longer than its timeout.
    #[error("{what} timed out after {timeout_ms} ms")]
    Timeout { what: &'static str, timeout_ms: u64 },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// A record is larger than the producer may send.
    #[error("record of {record_bytes} bytes exceeds the limit of {limit_bytes} bytes")]
    RecordTooLarge {
        record_bytes: usize,
        limit_bytes: usize,
    },
    /// The producer was closed.
    #[error("producer is closed")]
    ProducerClosed,
    /// A glommio primitive failed (e.g. a closed semaphore).
    #[error("runtime: {0}")]
    Runtime(#[source] io::Error),
}

impl ClientError {
    /// The Kafka error code, when the broker sent one.
    pub fn kafka_code(&self) -> Option<KafkaCode> {
        match self {
            Self::Kafka(error) => Some(error.code),
            _ => None,
        }
    }

    /// Whether retrying (after a metadata refresh) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Kafka(error) => error.code.is_retriable(),
            Self::Io { .. }
            | Self::ConnectionClosed { .. }
            | Self::Connect { .. }
            | Self::Timeout { .. }
            | Self::NoLeader { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn encode(api: ApiKey, version: i16, source: impl Into<ProtocolSource>) -> Self {
        Self::Encode {
            api,
            version,
            source: source.into(),
        }
    }

    pub(crate) fn decode(api: ApiKey, version: i16, source: impl Into<ProtocolSource>) -> Self {
        Self::Decode {
            api,
            version,
            source: source.into(),
        }
    }

    pub(crate) fn records(source: impl Into<ProtocolSource>) -> Self {
        Self::Records {
            source: source.into(),
        }
    }
}

/// Why one record was not delivered. Cheap to clone: every record of a failed batch shares
/// the batch's error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct DeliveryError(pub Rc<ClientError>);

impl DeliveryError {
    /// The Kafka error code, when the broker sent one.
    pub fn kafka_code(&self) -> Option<KafkaCode> {
        self.0.kafka_code()
    }
}

impl From<ClientError> for DeliveryError {
    fn from(error: ClientError) -> Self {
        Self(Rc::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_print_their_kafka_name() {
        assert_eq!(
            KafkaCode::NOT_LEADER_OR_FOLLOWER.to_string(),
            "NotLeaderOrFollower (6)"
        );
        assert!(KafkaCode::NOT_LEADER_OR_FOLLOWER.is_retriable());
        assert!(!KafkaCode::TOPIC_ALREADY_EXISTS.is_retriable());
        let error = KafkaError::new(ApiKey::CreateTopics, KafkaCode::TOPIC_ALREADY_EXISTS)
            .with_resource("t")
            .with_message(Some("exists"));
        let client = ClientError::from(error);
        assert_eq!(client.kafka_code(), Some(KafkaCode(36)));
        assert!(client.to_string().contains("for t"), "{client}");
    }
}
