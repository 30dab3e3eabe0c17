//! Bad input as raw bytes on a socket. Each case asserts the exact Kafka error code, or that the
//! connection is closed where Kafka closes it, and then that the broker still serves both a
//! connection that was open all along and a new one.

use std::io::Write;
use std::net::Shutdown;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersionsResponse;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Decodable;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use vaart_tests::wire::{self, encode_batch, error_code, KafkaConn, KeyValue};
use vaart_tests::{Broker, BrokerOptions};

/// How long the broker may take to close a connection it must close (a bound, not a timing
/// assertion: Kafka closes at once).
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

/// A connection opened (and used) before the bad input, to show other clients are unaffected.
fn bystander(broker: &Broker) -> KafkaConn {
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect the bystander");
    let answer = broker.check(conn.api_versions_raw(3), "bystander ApiVersions");
    assert_eq!(answer.error_code, error_code::NONE);
    conn
}

/// The broker is alive and serves the bystander and a brand-new connection.
fn assert_still_serves(broker: &mut Broker, bystander: &mut KafkaConn) {
    broker.assert_running();
    let answer = broker.check(
        bystander.api_versions_raw(3),
        "ApiVersions on a connection opened before the bad input",
    );
    assert_eq!(
        answer.error_code,
        error_code::NONE,
        "ApiVersions error code on the bystander"
    );
    let mut fresh = broker.check(
        KafkaConn::connect(broker.addr()),
        "connect after the bad input",
    );
    let answer = broker.check(fresh.api_versions_raw(3), "ApiVersions on a new connection");
    assert_eq!(
        answer.error_code,
        error_code::NONE,
        "ApiVersions error code on a new connection"
    );
    let metadata = broker.check(fresh.metadata(None, false), "Metadata on a new connection");
    assert!(
        !metadata.brokers.is_empty(),
        "Metadata lists at least this broker"
    );
}

/// Sends `bytes` on a new connection and asserts the broker closes it without answering.
fn assert_closes(broker: &Broker, what: &str, bytes: &[u8]) {
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    // The broker may close while we are still writing; that is what we expect anyway.
    let _ = conn.send_bytes(bytes);
    if let Err(error) = conn.expect_closed(CLOSE_WITHIN) {
        broker.fail(format!(
            "{what}: the broker must close the connection: {error}"
        ));
    }
}

/// A request header v1 (non-flexible: key, version, correlation id, client id) by hand.
fn header_v1(api_key: i16, api_version: i16, correlation_id: i32) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_i16(api_key);
    buf.put_i16(api_version);
    buf.put_i32(correlation_id);
    let client_id = b"vaart-tests-bad";
    buf.put_i16(i16::try_from(client_id.len()).expect("short client id"));
    buf.put_slice(client_id);
    buf
}

/// A request header v2 (flexible: v1 plus an empty tagged-field section).
fn header_v2(api_key: i16, api_version: i16, correlation_id: i32) -> BytesMut {
    let mut buf = header_v1(api_key, api_version, correlation_id);
    buf.put_u8(0);
    buf
}

fn create_topic(broker: &Broker, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    let code = broker.check(conn.create_topic(name, partitions, configs), "CreateTopics");
    assert_eq!(code, error_code::NONE, "CreateTopics {name}");
}

fn five_records() -> Bytes {
    let records: Vec<KeyValue<'_>> = (0..5)
        .map(|_| (Some(&b"key"[..]), Some(&b"a small value"[..])))
        .collect();
    encode_batch(&records, vaart_tests::workload::now_ms(), Compression::None)
}

/// Record count in the batches a fetch returned.
fn record_count(records: Option<Bytes>) -> usize {
    let mut records = records.unwrap_or_default();
    RecordBatchDecoder::decode_all(&mut records)
        .expect("the broker serves well-formed batches")
        .iter()
        .map(|batch| batch.records.len())
        .sum()
}

#[test]
fn absurd_length_prefix_closes_the_connection() {
    let mut broker = Broker::start();
    let mut other = bystander(&broker);
    assert_closes(
        &broker,
        "length prefix 0x7fffffff",
        &[0x7f, 0xff, 0xff, 0xff],
    );
    assert_still_serves(&mut broker, &mut other);
}

#[test]
fn negative_length_prefix_closes_the_connection() {
    let mut broker = Broker::start();
    let mut other = bystander(&broker);
    assert_closes(&broker, "length prefix -1", &[0xff, 0xff, 0xff, 0xff]);
    assert_still_serves(&mut broker, &mut other);
}

#[test]
fn request_above_socket_request_max_bytes_closes_the_connection() {
    let mut broker = BrokerOptions::new()
        .set("socket.request.max.bytes", "1048576")
        .start();
    let mut other = bystander(&broker);
    // Announces 2 MiB and sends a valid-looking header: the size alone must be refused.
    let mut bytes = (2 * 1024 * 1024i32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&header_v2(ApiKey::Metadata as i16, 12, 1));
    assert_closes(
        &broker,
        "a 2 MiB request with socket.request.max.bytes=1 MiB",
        &bytes,
    );
    assert_still_serves(&mut broker, &mut other);
}

#[test]
fn frame_too_short_for_a_request_header_closes_the_connection() {
    let mut broker = Broker::start();
    let mut other = bystander(&broker);
    assert_closes(&broker, "a 3-byte frame", &wire::frame(&[0x00, 0x03, 0x00]));
    assert_still_serves(&mut broker, &mut other);
}

#[test]
fn malformed_request_body_closes_the_connection() {
    let mut broker = Broker::start();
    let mut other = bystander(&broker);
    // Metadata v12 (flexible) whose body starts with a varint that never ends.
    let mut payload = header_v2(ApiKey::Metadata as i16, 12, 7);
    payload.put_slice(&[0xff; 16]);
    assert_closes(
        &broker,
        "a Metadata body of 0xff bytes",
        &wire::frame(&payload),
    );
    assert_still_serves(&mut broker, &mut other);
}

#[test]
fn truncated_request_closes_the_connection_and_appends_nothing() {
    let mut broker = Broker::start();
    create_topic(&broker, "truncated", 1, &[]);
    let mut other = bystander(&broker);
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    let version = broker.check(conn.pick_version(ApiKey::Produce, 3, 9), "Produce version");
    let request = wire::produce_request("truncated", 0, five_records(), 1);
    let (_, payload) = broker.check(conn.encode_request(version, &request), "encode Produce");
    // A complete frame whose request stops 20 bytes early (inside the record batch).
    let cut = payload.len() - 20;
    assert_closes(
        &broker,
        "a Produce request cut 20 bytes short",
        &wire::frame(&payload[..cut]),
    );
    assert_still_serves(&mut broker, &mut other);
    let end = broker.check(other.list_offset("truncated", 0, -1), "ListOffsets latest");
    assert_eq!(
        (end.error_code, end.offset),
        (error_code::NONE, 0),
        "nothing appended by the truncated request"
    );
}

#[test]
fn connection_ending_inside_a_frame_is_closed() {
    let mut broker = Broker::start();
    let mut other = bystander(&broker);
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    // Announces 100 bytes, sends 50, then ends its side of the connection.
    let mut bytes = 100i32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&header_v2(ApiKey::Metadata as i16, 12, 3));
    bytes.resize(4 + 50, 0);
    broker.check(conn.send_bytes(&bytes), "send half a frame");
    broker.check(conn.stream().shutdown(Shutdown::Write), "shutdown(Write)");
    if let Err(error) = conn.expect_closed(CLOSE_WITHIN) {
        broker.fail(format!(
            "half a frame then EOF: the broker must close the connection: {error}"
        ));
    }
    assert_still_serves(&mut broker, &mut other);
}

#[test]
fn unknown_api_key_closes_the_connection() {
    let mut broker = Broker::start();
    let mut other = bystander(&broker);
    assert_closes(
        &broker,
        "api key 32000",
        &wire::frame(&header_v1(32000, 0, 11)),
    );
    assert_still_serves(&mut broker, &mut other);
}

#[test]
fn unsupported_version_of_a_non_api_versions_request_closes_the_connection() {
    let mut broker = Broker::start();
    let mut other = bystander(&broker);
    // Kafka answers only ApiVersions at an unknown version; for any other API it closes.
    assert_closes(
        &broker,
        "Metadata v999",
        &wire::frame(&header_v2(ApiKey::Metadata as i16, 999, 13)),
    );
    assert_still_serves(&mut broker, &mut other);
}

#[test]
fn unsupported_api_versions_version_gets_error_35_as_a_v0_response() {
    let mut broker = Broker::start();
    let mut other = bystander(&broker);
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    // ApiVersions v127 with a flexible (v2) header, as a newer client would send it, and a body
    // the broker cannot know.
    let mut payload = header_v2(ApiKey::ApiVersions as i16, 127, 42);
    payload.put_slice(&[
        0x05, b'n', b'e', b'w', b'!', 0x02, b'9', 0x00, 0x01, 0x02, 0x03,
    ]);
    broker.check(conn.send_frame(&payload), "send ApiVersions v127");
    // The answer is ApiVersions v0 (response header v0) with UNSUPPORTED_VERSION and the
    // broker's ranges, so that the client can retry with a version both support.
    let raw = broker.check(conn.recv_raw(0), "ApiVersions v127 response");
    assert_eq!(raw.correlation_id, 42, "correlation id");
    let mut body = raw.body;
    let response = broker.check(
        ApiVersionsResponse::decode(&mut body, 0),
        "decode the answer as ApiVersions v0",
    );
    assert!(
        body.is_empty(),
        "{} bytes after the v0 ApiVersions body",
        body.len()
    );
    assert_eq!(
        response.error_code,
        error_code::UNSUPPORTED_VERSION,
        "ApiVersions v127 error code"
    );
    let api_versions = response
        .api_keys
        .iter()
        .find(|api| api.api_key == ApiKey::ApiVersions as i16)
        .unwrap_or_else(|| broker.fail("the error response must still list ApiVersions"));
    assert!(
        api_versions.min_version == 0 && api_versions.max_version >= 3,
        "ApiVersions range {}..={}",
        api_versions.min_version,
        api_versions.max_version
    );
    // The connection stays usable: the client retries on it with a supported version.
    let retry = broker.check(
        conn.api_versions_raw(3),
        "ApiVersions v3 on the same connection",
    );
    assert_eq!(retry.error_code, error_code::NONE);
    assert_still_serves(&mut broker, &mut other);
}

#[test]
fn produce_with_a_bad_crc_gets_corrupt_message_and_appends_nothing() {
    let mut broker = Broker::start();
    create_topic(&broker, "bad-crc", 1, &[]);
    let mut other = bystander(&broker);
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    let good = five_records();
    let mut corrupt = good.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x55; // inside the last record, covered by the CRC
    let answer = broker.check(
        conn.produce("bad-crc", 0, Bytes::from(corrupt), 1),
        "Produce (bad CRC)",
    );
    assert_eq!(
        answer.error_code,
        error_code::CORRUPT_MESSAGE,
        "Produce with a bad CRC"
    );
    // Nothing was appended: the next good batch starts at offset 0.
    let answer = broker.check(conn.produce("bad-crc", 0, good, 1), "Produce (good)");
    assert_eq!(
        (answer.error_code, answer.base_offset),
        (error_code::NONE, 0),
        "the good batch after the bad one"
    );
    let fetched = broker.check(conn.fetch("bad-crc", 0, 0, 100), "Fetch");
    assert_eq!(fetched.error_code, error_code::NONE);
    assert_eq!(
        fetched.high_watermark, 5,
        "high watermark: only the good batch"
    );
    assert_eq!(
        record_count(fetched.records),
        5,
        "records served: only the good batch"
    );
    assert_still_serves(&mut broker, &mut other);
}

#[test]
fn oversize_batch_gets_message_too_large() {
    let mut broker = Broker::start();
    create_topic(&broker, "default-limit", 1, &[]);
    create_topic(&broker, "small-limit", 1, &[("max.message.bytes", "2048")]);
    let mut other = bystander(&broker);
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");

    // Above the default max.message.bytes (1048588): one uncompressed 1.2 MB record.
    let huge_value = vec![b'x'; 1_200_000];
    let huge = encode_batch(
        &[(None, Some(&huge_value))],
        vaart_tests::workload::now_ms(),
        Compression::None,
    );
    let answer = broker.check(conn.produce("default-limit", 0, huge, 1), "Produce 1.2 MB");
    assert_eq!(
        answer.error_code,
        error_code::MESSAGE_TOO_LARGE,
        "a 1.2 MB batch with the default limit"
    );

    // Above a topic-level max.message.bytes of 2048; a batch below it still goes in.
    let value = vec![b'y'; 4096];
    let big = encode_batch(
        &[(None, Some(&value))],
        vaart_tests::workload::now_ms(),
        Compression::None,
    );
    let answer = broker.check(conn.produce("small-limit", 0, big, 1), "Produce 4 KiB");
    assert_eq!(
        answer.error_code,
        error_code::MESSAGE_TOO_LARGE,
        "a 4 KiB batch with max.message.bytes=2048"
    );
    let answer = broker.check(
        conn.produce("small-limit", 0, five_records(), 1),
        "Produce a small batch",
    );
    assert_eq!(
        (answer.error_code, answer.base_offset),
        (error_code::NONE, 0),
        "a small batch after the rejected ones"
    );
    let answer = broker.check(
        conn.produce("default-limit", 0, five_records(), 1),
        "Produce a small batch",
    );
    assert_eq!(
        (answer.error_code, answer.base_offset),
        (error_code::NONE, 0),
        "a small batch after the rejected one"
    );
    assert_still_serves(&mut broker, &mut other);
}

#[test]
fn produce_to_an_unknown_topic_with_auto_create_off_gets_unknown_topic() {
    let mut broker = BrokerOptions::new()
        .set("auto.create.topics.enable", "false")
        .start();
    let mut other = bystander(&broker);
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    let answer = broker.check(
        conn.produce("no-such-topic", 0, five_records(), 1),
        "Produce to an unknown topic",
    );
    assert_eq!(
        answer.error_code,
        error_code::UNKNOWN_TOPIC_OR_PARTITION,
        "Produce to an unknown topic"
    );
    // Metadata asking for auto-creation does not create it either.
    for attempt in 0..2 {
        let metadata = broker.check(conn.metadata(Some(&["no-such-topic"]), true), "Metadata");
        let topic = metadata
            .topics
            .iter()
            .find(|topic| topic.name.as_ref().map(|name| name.0.as_str()) == Some("no-such-topic"))
            .unwrap_or_else(|| broker.fail("Metadata must answer for the requested topic"));
        assert_eq!(
            topic.error_code,
            error_code::UNKNOWN_TOPIC_OR_PARTITION,
            "Metadata attempt {attempt}"
        );
    }
    // An existing topic's unknown partition gets the same error.
    create_topic(&broker, "exists", 1, &[]);
    let answer = broker.check(
        conn.produce("exists", 7, five_records(), 1),
        "Produce to partition 7 of 1",
    );
    assert_eq!(
        answer.error_code,
        error_code::UNKNOWN_TOPIC_OR_PARTITION,
        "Produce to a partition that does not exist"
    );
    assert_still_serves(&mut broker, &mut other);
}

#[test]
fn fetch_beyond_the_log_end_gets_offset_out_of_range() {
    let mut broker = Broker::start();
    create_topic(&broker, "short", 1, &[]);
    let mut other = bystander(&broker);
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    let answer = broker.check(conn.produce("short", 0, five_records(), 1), "Produce");
    assert_eq!(
        (answer.error_code, answer.base_offset),
        (error_code::NONE, 0)
    );

    let beyond = broker.check(conn.fetch("short", 0, 100, 100), "Fetch at 100");
    assert_eq!(
        beyond.error_code,
        error_code::OFFSET_OUT_OF_RANGE,
        "Fetch at 100 of a 5-record log"
    );
    let negative = broker.check(conn.fetch("short", 0, -7, 100), "Fetch at -7");
    assert_eq!(
        negative.error_code,
        error_code::OFFSET_OUT_OF_RANGE,
        "Fetch at a negative offset"
    );
    // At the log end exactly there is no error, just nothing yet.
    let at_end = broker.check(conn.fetch("short", 0, 5, 100), "Fetch at 5");
    assert_eq!(at_end.error_code, error_code::NONE, "Fetch at the log end");
    assert_eq!(record_count(at_end.records), 0, "no records at the log end");
    assert_eq!(at_end.high_watermark, 5);
    let all = broker.check(conn.fetch("short", 0, 0, 100), "Fetch at 0");
    assert_eq!(
        (all.error_code, record_count(all.records)),
        (error_code::NONE, 5)
    );
    assert_still_serves(&mut broker, &mut other);
}

#[test]
fn many_bad_connections_in_a_row_leave_the_broker_serving() {
    // Every kind of garbage above, several times over, on fresh connections.
    let mut broker = Broker::start();
    let mut other = bystander(&broker);
    for round in 0..20u8 {
        let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
        let mut garbage = vec![0u8, 0, 0, 12];
        garbage.extend((0..12).map(|index| round.wrapping_mul(31).wrapping_add(index)));
        let _ = conn.stream().write_all(&garbage);
        let _ = conn.stream().write_all(&[0x7f, 0xff, 0xff, 0xff]);
        drop(conn);
    }
    assert_still_serves(&mut broker, &mut other);
}

#[test]
fn produce_to_an_internal_topic_gets_invalid_topic_and_creates_nothing() {
    let mut broker = BrokerOptions::new().start();
    let mut other = bystander(&broker);
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    // Kafka: only the broker appends to internal topics, and auto-creation does not make one.
    let answer = broker.check(
        conn.produce("__consumer_offsets", 0, five_records(), 1),
        "Produce to __consumer_offsets",
    );
    assert_eq!(
        answer.error_code,
        error_code::INVALID_TOPIC_EXCEPTION,
        "Produce to __consumer_offsets"
    );
    let metadata = broker.check(conn.metadata(None, false), "Metadata");
    assert!(
        metadata
            .topics
            .iter()
            .all(|topic| topic.name.as_ref().map(|name| name.0.as_str())
                != Some("__consumer_offsets")),
        "a Produce must not auto-create __consumer_offsets"
    );
    assert_still_serves(&mut broker, &mut other);
}
