//! A blocking, raw Kafka protocol connection for protocol-level tests.
//!
//! Requests and responses are encoded and decoded with the `kafka-protocol` crate; frames are
//! read with a bounded size and socket timeouts, so a misbehaving broker fails a test instead of
//! hanging it. The helpers at the bottom build the few requests the tests need.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::list_offsets_response::ListOffsetsPartitionResponse;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, CreateTopicsRequest, FetchRequest,
    ListOffsetsRequest, MetadataRequest, MetadataResponse, ProduceRequest, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Kafka error codes the tests assert on (from Kafka's `Errors.java`; never renumbered).
pub mod error_code {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
}

/// Largest response frame a test accepts (a broker bug must not make the test allocate GiBs).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Socket read/write timeout: no single request in these tests takes anywhere near this long.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// The `client.id` every raw request carries.
pub const CLIENT_ID: &str = "vaart-tests-raw";

/// What can go wrong on a raw connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("{op}: {source}")]
    Io { op: &'static str, source: io::Error },
    #[error("encoding {what}: {source}")]
    Encode {
        what: &'static str,
        source: BoxedError,
    },
    #[error("decoding {what}: {source}")]
    Decode {
        what: &'static str,
        source: BoxedError,
    },
    #[error("the broker closed the connection")]
    Closed,
    #[error("response frame of {length} bytes is negative or larger than the {max} accepted")]
    BadFrameLength { length: i32, max: usize },
    #[error("response correlation id {actual}, expected {expected}")]
    CorrelationMismatch { expected: i32, actual: i32 },
    #[error("{what}: {trailing} bytes left over after the response body")]
    TrailingBytes { what: &'static str, trailing: usize },
    #[error("the broker does not advertise api key {api_key} (ApiVersions)")]
    ApiNotAdvertised { api_key: i16 },
    #[error("api key {api_key}: the broker supports versions {min}..={max}, the test needs {wanted_min}..={wanted_max}")]
    NoCommonVersion {
        api_key: i16,
        min: i16,
        max: i16,
        wanted_min: i16,
        wanted_max: i16,
    },
    #[error("ApiVersions failed with error code {error_code}")]
    ApiVersionsError { error_code: i16 },
    #[error("expected the connection to be closed, but the broker sent {bytes} bytes")]
    NotClosed { bytes: usize },
    #[error("expected the connection to be closed within {waited:?}, it is still open")]
    StillOpen { waited: Duration },
    #[error("the response is missing {what}")]
    Missing { what: &'static str },
}

fn io_error(op: &'static str) -> impl FnOnce(io::Error) -> WireError {
    move |source| match source.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe => WireError::Closed,
        _ => WireError::Io { op, source },
    }
}

/// kafka-protocol reports errors as `anyhow::Error`, which converts into a boxed error.
type BoxedError = Box<dyn std::error::Error + Send + Sync>;

fn encode_error<E: Into<BoxedError>>(what: &'static str) -> impl FnOnce(E) -> WireError {
    move |source| WireError::Encode {
        what,
        source: source.into(),
    }
}

fn decode_error<E: Into<BoxedError>>(what: &'static str) -> impl FnOnce(E) -> WireError {
    move |source| WireError::Decode {
        what,
        source: source.into(),
    }
}

/// A raw response frame: the correlation id and the body after the response header.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub correlation_id: i32,
    pub body: Bytes,
}

/// One TCP connection speaking the Kafka protocol, one request at a time.
pub struct KafkaConn {
    stream: TcpStream,
    next_correlation_id: i32,
    /// The broker's ApiVersions answer, fetched on first need.
    versions: Option<HashMap<i16, ApiVersion>>,
}

impl KafkaConn {
    /// Connects with [`IO_TIMEOUT`] for connect, reads and writes.
    pub fn connect(addr: SocketAddr) -> Result<Self, WireError> {
        Self::connect_with_timeout(addr, IO_TIMEOUT)
    }

    /// Connects with `timeout` for connect, reads and writes.
    pub fn connect_with_timeout(addr: SocketAddr, timeout: Duration) -> Result<Self, WireError> {
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(io_error("connect"))?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(io_error("set_read_timeout"))?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(io_error("set_write_timeout"))?;
        stream.set_nodelay(true).map_err(io_error("set_nodelay"))?;
        Ok(Self {
            stream,
            next_correlation_id: 1,
            versions: None,
        })
    }

    /// The underlying socket, for tests that send hand-made bytes.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Writes `bytes` as they are (no length prefix added).
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        self.stream.write_all(bytes).map_err(io_error("write"))?;
        self.stream.flush().map_err(io_error("flush"))
    }

    /// Writes one frame: a 4-byte big-endian length, then `payload`.
    pub fn send_frame(&mut self, payload: &[u8]) -> Result<(), WireError> {
        let length = i32::try_from(payload.len()).map_err(|_| WireError::BadFrameLength {
            length: i32::MAX,
            max: MAX_RESPONSE_BYTES,
        })?;
        let mut frame = Vec::with_capacity(payload.len() + 4);
        frame.extend_from_slice(&length.to_be_bytes());
        frame.extend_from_slice(payload);
        self.send_bytes(&frame)
    }

    /// Encodes header + body of a request (no length prefix); returns it and its correlation id.
    pub fn encode_request<R: Request>(
        &mut self,
        version: i16,
        request: &R,
    ) -> Result<(i32, BytesMut), WireError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, R::header_version(version))
            .map_err(encode_error("request header"))?;
        request
            .encode(&mut buf, version)
            .map_err(encode_error("request body"))?;
        Ok((correlation_id, buf))
    }

    /// Sends a request; returns its correlation id.
    pub fn send_request<R: Request>(
        &mut self,
        version: i16,
        request: &R,
    ) -> Result<i32, WireError> {
        let (correlation_id, payload) = self.encode_request(version, request)?;
        self.send_frame(&payload)?;
        Ok(correlation_id)
    }

    /// Reads one frame (the payload after the length prefix).
    pub fn recv_frame(&mut self) -> Result<Bytes, WireError> {
        let mut length_bytes = [0u8; 4];
        self.stream
            .read_exact(&mut length_bytes)
            .map_err(io_error("read frame length"))?;
        let length = i32::from_be_bytes(length_bytes);
        let length_usize = usize::try_from(length)
            .ok()
            .filter(|length| *length <= MAX_RESPONSE_BYTES)
            .ok_or(WireError::BadFrameLength {
                length,
                max: MAX_RESPONSE_BYTES,
            })?;
        let mut payload = vec![0u8; length_usize];
        self.stream
            .read_exact(&mut payload)
            .map_err(io_error("read frame payload"))?;
        Ok(Bytes::from(payload))
    }

    /// Reads one response frame and splits off its header (`header_version` 0 or 1).
    pub fn recv_raw(&mut self, header_version: i16) -> Result<RawResponse, WireError> {
        let mut frame = self.recv_frame()?;
        let header = ResponseHeader::decode(&mut frame, header_version)
            .map_err(decode_error("response header"))?;
        Ok(RawResponse {
            correlation_id: header.correlation_id,
            body: frame,
        })
    }

    /// Reads the response to the request `correlation_id` sent with `version` and decodes it;
    /// the body must be consumed exactly.
    pub fn recv_response<R: Request>(
        &mut self,
        version: i16,
        correlation_id: i32,
    ) -> Result<R::Response, WireError> {
        let raw = self.recv_raw(<R::Response as HeaderVersion>::header_version(version))?;
        if raw.correlation_id != correlation_id {
            return Err(WireError::CorrelationMismatch {
                expected: correlation_id,
                actual: raw.correlation_id,
            });
        }
        let mut body = raw.body;
        let response = <R::Response as Decodable>::decode(&mut body, version)
            .map_err(decode_error("response body"))?;
        if body.has_remaining() {
            return Err(WireError::TrailingBytes {
                what: "response body",
                trailing: body.remaining(),
            });
        }
        Ok(response)
    }

    /// Sends a request and reads its response.
    pub fn round_trip<R: Request>(
        &mut self,
        version: i16,
        request: &R,
    ) -> Result<R::Response, WireError> {
        let correlation_id = self.send_request(version, request)?;
        self.recv_response::<R>(version, correlation_id)
    }

    /// ApiVersions at `version` with this client's software name; the raw decoded answer.
    pub fn api_versions_raw(&mut self, version: i16) -> Result<ApiVersionsResponse, WireError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("vaart-tests"))
            .with_client_software_version(StrBytes::from_static_str("0.1.0"));
        self.round_trip(version, &request)
    }

    /// The broker's advertised version range for `api_key` (ApiVersions v3 on first use).
    pub fn advertised(&mut self, api_key: ApiKey) -> Result<(i16, i16), WireError> {
        if self.versions.is_none() {
            let response = self.api_versions_raw(3)?;
            if response.error_code != error_code::NONE {
                return Err(WireError::ApiVersionsError {
                    error_code: response.error_code,
                });
            }
            self.versions = Some(
                response
                    .api_keys
                    .into_iter()
                    .map(|api| (api.api_key, api))
                    .collect(),
            );
        }
        let key = api_key as i16;
        self.versions
            .as_ref()
            .and_then(|versions| versions.get(&key))
            .map(|api| (api.min_version, api.max_version))
            .ok_or(WireError::ApiNotAdvertised { api_key: key })
    }

    /// The highest version in `wanted_min..=wanted_max` that the broker advertises.
    pub fn pick_version(
        &mut self,
        api_key: ApiKey,
        wanted_min: i16,
        wanted_max: i16,
    ) -> Result<i16, WireError> {
        let (min, max) = self.advertised(api_key)?;
        let version = max.min(wanted_max);
        if version < min || version < wanted_min {
            return Err(WireError::NoCommonVersion {
                api_key: api_key as i16,
                min,
                max,
                wanted_min,
                wanted_max,
            });
        }
        Ok(version)
    }

    /// Waits up to `within` for the broker to close this connection: Ok on EOF or reset, an
    /// error if data arrives or the connection stays open. Reads nothing else.
    pub fn expect_closed(&mut self, within: Duration) -> Result<(), WireError> {
        let deadline = Instant::now() + within;
        let mut buffer = [0u8; 4096];
        let mut received = 0usize;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(WireError::StillOpen { waited: within });
            }
            self.stream
                .set_read_timeout(Some(left))
                .map_err(io_error("set_read_timeout"))?;
            match self.stream.read(&mut buffer) {
                Ok(0) if received == 0 => return Ok(()),
                Ok(0) => return Err(WireError::NotClosed { bytes: received }),
                Ok(count) => received += count,
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                    ) =>
                {
                    return if received == 0 {
                        Ok(())
                    } else {
                        Err(WireError::NotClosed { bytes: received })
                    };
                }
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(if received == 0 {
                        WireError::StillOpen { waited: within }
                    } else {
                        WireError::NotClosed { bytes: received }
                    });
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(WireError::Io { op: "read", source }),
            }
        }
    }

    // ---- request builders ----------------------------------------------------------------

    /// CreateTopics for one topic (replication factor 1); returns the topic's error code.
    pub fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> Result<i16, WireError> {
        let version = self.pick_version(ApiKey::CreateTopics, 2, 7)?;
        let topic = CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1)
            .with_configs(
                configs
                    .iter()
                    .map(|(key, value)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string((*key).to_owned()))
                            .with_value(Some(StrBytes::from_string((*value).to_owned())))
                    })
                    .collect(),
            );
        let request = CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(30_000);
        let response = self.round_trip(version, &request)?;
        response
            .topics
            .first()
            .map(|topic| topic.error_code)
            .ok_or(WireError::Missing {
                what: "the topic in CreateTopics",
            })
    }

    /// Metadata for `topics` (None = all topics).
    pub fn metadata(
        &mut self,
        topics: Option<&[&str]>,
        allow_auto_topic_creation: bool,
    ) -> Result<MetadataResponse, WireError> {
        let version = self.pick_version(ApiKey::Metadata, 1, 12)?;
        let request = MetadataRequest::default()
            .with_topics(topics.map(|names| {
                names
                    .iter()
                    .map(|name| MetadataRequestTopic::default().with_name(Some(topic_name(name))))
                    .collect()
            }))
            .with_allow_auto_topic_creation(allow_auto_topic_creation);
        self.round_trip(version, &request)
    }

    /// Produces `records` (one or more encoded batches) to one partition with `acks` 1 or -1;
    /// returns that partition's response.
    pub fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: Bytes,
        acks: i16,
    ) -> Result<PartitionProduceResponse, WireError> {
        let version = self.pick_version(ApiKey::Produce, 3, 9)?;
        let request = produce_request(topic, partition, records, acks);
        let response = self.round_trip(version, &request)?;
        response
            .responses
            .into_iter()
            .flat_map(|topic| topic.partition_responses)
            .find(|response| response.index == partition)
            .ok_or(WireError::Missing {
                what: "the partition in the Produce response",
            })
    }

    /// One Fetch of one partition from `offset` with min_bytes 1 (tests pass a small
    /// max_wait_ms unless they mean to long-poll).
    pub fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
    ) -> Result<PartitionData, WireError> {
        let version = self.pick_version(ApiKey::Fetch, 4, 12)?;
        let request = fetch_request(topic, partition, offset, max_wait_ms, 1);
        let correlation_id = self.send_request(version, &request)?;
        self.recv_fetch(version, correlation_id, partition)
    }

    /// Reads the answer to a Fetch sent with [`KafkaConn::send_request`]; returns `partition`.
    pub fn recv_fetch(
        &mut self,
        version: i16,
        correlation_id: i32,
        partition: i32,
    ) -> Result<PartitionData, WireError> {
        let response = self.recv_response::<FetchRequest>(version, correlation_id)?;
        response
            .responses
            .into_iter()
            .flat_map(|topic| topic.partitions)
            .find(|data| data.partition_index == partition)
            .ok_or(WireError::Missing {
                what: "the partition in the Fetch response",
            })
    }

    /// ListOffsets for one partition at `timestamp` (-2 earliest, -1 latest, else a time).
    pub fn list_offset(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<ListOffsetsPartitionResponse, WireError> {
        let version = self.pick_version(ApiKey::ListOffsets, 1, 7)?;
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(0)
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_current_leader_epoch(-1)
                    .with_timestamp(timestamp)])]);
        let response = self.round_trip(version, &request)?;
        response
            .topics
            .into_iter()
            .flat_map(|topic| topic.partitions)
            .find(|data| data.partition_index == partition)
            .ok_or(WireError::Missing {
                what: "the partition in the ListOffsets response",
            })
    }
}

/// A topic name for a request.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// A consumer's Fetch request (no session) for one partition (not encoded).
pub fn fetch_request(
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
    min_bytes: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(64 * 1024 * 1024)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_current_leader_epoch(-1)
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(16 * 1024 * 1024)])])
}

/// A Produce request for one partition (not encoded).
pub fn produce_request(topic: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

/// A record's key and value, either possibly null.
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Encodes one magic-v2 record batch (as a producer would, offsets from 0) with `compression`:
/// a single batch however many records there are (checked).
/// `records` are (key, value) pairs; record `i` gets timestamp `first_timestamp_ms + i`.
pub fn encode_batch(
    records: &[KeyValue<'_>],
    first_timestamp_ms: i64,
    compression: Compression,
) -> Bytes {
    let records: Vec<Record> = records
        .iter()
        .zip(0i64..)
        .map(|((key, value), index)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: index,
            // No idempotence: the batch's base sequence must be -1. kafka-protocol derives it
            // from the first record's sequence and keeps records in one batch only while
            // `offset - sequence` stays the same, hence sequence = offset - 1.
            sequence: i32::try_from(index - 1).expect("test batches are small"),
            timestamp: first_timestamp_ms + index,
            key: key.map(Bytes::copy_from_slice),
            value: value.map(Bytes::copy_from_slice),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("kafka-protocol encodes a well-formed record batch");
    let batch = buf.freeze();
    let batch_length = batch
        .get(8..12)
        .and_then(|bytes| <[u8; 4]>::try_from(bytes).ok())
        .map(i32::from_be_bytes)
        .and_then(|length| usize::try_from(length).ok());
    assert_eq!(
        batch_length.map(|length| length + 12),
        Some(batch.len()),
        "exactly one record batch"
    );
    batch
}

/// Appends a big-endian i32 length prefix to `payload` (a hand-made frame).
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut framed = BytesMut::with_capacity(payload.len() + 4);
    framed.put_i32(i32::try_from(payload.len()).expect("test frames are small"));
    framed.put_slice(payload);
    framed.to_vec()
}
