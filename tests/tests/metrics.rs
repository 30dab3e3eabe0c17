//! The Prometheus `/metrics` endpoint of a real broker: counters follow a produce/consume load
//! driven by librdkafka, the exposition names each family once, and the HTTP side answers
//! 404/405/400 and shrugs off garbage without hurting the Kafka side.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseRecord, Producer};
use vaart_tests::broker::BrokerOptions;
use vaart_tests::clients::{
    assigned_consumer, consume, recording_producer, send_with_retry, Admin,
};

const TOPIC: &str = "metered";
const PARTITIONS: i32 = 3;
const MESSAGES: usize = 5_000;
const MESSAGE_BYTES: usize = 100;
/// Bound on one HTTP exchange (not a timing assertion: only keeps a broken test from hanging).
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// One HTTP exchange: sends `request`, reads until the server closes; (status, head, body).
fn http(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).unwrap();
    stream.set_read_timeout(Some(HTTP_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(HTTP_TIMEOUT)).unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
    )
}

/// `name{labels} value` -> (name, labels, value).
fn parse_sample(line: &str) -> (&str, &str, f64) {
    let (series, value) = line.rsplit_once(' ').unwrap();
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().unwrap(),
    };
    match series.split_once('{') {
        Some((name, labels)) => (name, labels.trim_end_matches('}'), value),
        None => (series, "", value),
    }
}

/// Sum of the samples named `name` whose labels contain every `key="value"` in `filter`.
fn sum(text: &str, name: &str, filter: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(parse_sample)
        .filter(|(sample, labels, _)| {
            *sample == name
                && filter
                    .iter()
                    .all(|(key, value)| labels.contains(&format!("{key}=\"{value}\"")))
        })
        .map(|(_, _, value)| value)
        .sum()
}

/// Each family's HELP and TYPE appear once, before its samples, and every sample follows the
/// header of its own family (so all samples of a family are together).
fn assert_each_family_once(text: &str) {
    let mut helps = HashSet::new();
    let mut types = HashSet::new();
    let mut current: Option<(String, String)> = None;
    let mut seen_samples = HashSet::new();
    for line in text.lines().filter(|line| !line.is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_string();
            assert!(helps.insert(name.clone()), "second HELP for {name}");
            assert!(
                !seen_samples.contains(&name),
                "HELP of {name} after its samples"
            );
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap().to_string();
            let kind = parts.next().unwrap().to_string();
            assert!(types.insert(name.clone()), "second TYPE for {name}");
            assert!(
                !seen_samples.contains(&name),
                "TYPE of {name} after its samples"
            );
            current = Some((name, kind));
        } else if !line.starts_with('#') {
            let (name, _, _) = parse_sample(line);
            let (family, kind) = current.as_ref().expect("a sample before any TYPE");
            let belongs = name == family
                || (kind == "histogram"
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| name.strip_suffix(suffix) == Some(family.as_str())));
            assert!(belongs, "sample {line:?} under family {family}");
            seen_samples.insert(family.clone());
        }
    }
    assert!(!types.is_empty(), "no families in:\n{text}");
}

#[test]
fn metrics_follow_a_produce_consume_load() {
    let mut broker = BrokerOptions::new().shards(2).start();
    let bootstrap = broker.bootstrap();
    let metrics = broker.metrics_addr();
    let admin = Admin::new(&bootstrap);
    // flush.messages=1: appends are fdatasync'ed as they come, so the flush histogram moves.
    broker.check(
        admin.create_topic(TOPIC, PARTITIONS, &[("flush.messages", "1")]),
        "create topic",
    );

    let producer = recording_producer(&bootstrap, "1", "none", &[]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let payload = vec![b'm'; MESSAGE_BYTES];
    let half = MESSAGES / 2;
    for id in 0..MESSAGES {
        if id == half {
            // Mid-run: the first half is acknowledged, the producer goes on afterwards. The
            // counters already match what the broker took so far.
            broker.check(producer.flush(Duration::from_secs(120)), "flush first half");
            let (status, _, text) = get(metrics, "/metrics");
            assert_eq!(status, 200, "{text}");
            let records = sum(&text, "vaart_produce_records_total", &[("topic", TOPIC)]);
            assert_eq!(records, half as f64, "records in, mid-run\n{text}");
            let bytes = sum(&text, "vaart_produce_bytes_total", &[("topic", TOPIC)]);
            assert!(
                bytes >= (half * MESSAGE_BYTES) as f64,
                "bytes in, mid-run: {bytes}\n{text}"
            );
        }
        let key = id.to_string();
        let record = BaseRecord::with_opaque_to(TOPIC, id)
            .key(key.as_bytes())
            .payload(payload.as_slice());
        broker.check(send_with_retry(&producer, record, deadline), "send");
    }
    broker.check(producer.flush(Duration::from_secs(120)), "flush producer");
    let deliveries = producer.context().deliveries();
    assert_eq!(deliveries.len(), MESSAGES);
    assert!(
        deliveries.values().all(Result::is_ok),
        "every message delivered"
    );

    let partitions: Vec<i32> = (0..PARTITIONS).collect();
    let consumer = assigned_consumer(&bootstrap, TOPIC, &partitions);
    let received = broker.check(
        consume(&consumer, &partitions, MESSAGES, Duration::from_secs(120)),
        "consume",
    );
    assert!(received.len() >= MESSAGES);
    drop(consumer);

    // The consumer's group.id may have made the broker create __consumer_offsets.
    let offsets_partitions = broker
        .check(
            admin.partition_count("__consumer_offsets"),
            "describe __consumer_offsets",
        )
        .unwrap_or(0);

    let (status, head, text) = get(metrics, "/metrics");
    assert_eq!(status, 200, "{head}\n{text}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert_each_family_once(&text);

    assert!(
        sum(&text, "vaart_requests_total", &[("api", "Produce")]) >= 1.0,
        "{text}"
    );
    assert!(
        sum(&text, "vaart_requests_total", &[("api", "Fetch")]) >= 1.0,
        "{text}"
    );
    assert!(
        sum(
            &text,
            "vaart_request_duration_seconds_count",
            &[("api", "Produce")]
        ) >= 1.0,
        "{text}"
    );
    // Both shards report, each under its own label.
    assert!(text.contains("shard=\"0\""), "{text}");
    assert!(text.contains("shard=\"1\""), "{text}");

    let payload_bytes = (MESSAGES * MESSAGE_BYTES) as f64;
    let bytes_in = sum(&text, "vaart_produce_bytes_total", &[("topic", TOPIC)]);
    assert!(bytes_in >= payload_bytes, "bytes in {bytes_in}\n{text}");
    let records_in = sum(&text, "vaart_produce_records_total", &[("topic", TOPIC)]);
    assert_eq!(records_in, MESSAGES as f64, "{text}");
    let bytes_out = sum(&text, "vaart_fetch_bytes_total", &[("topic", TOPIC)]);
    assert!(bytes_out >= payload_bytes, "bytes out {bytes_out}\n{text}");

    let expected_partitions = PARTITIONS as f64 + offsets_partitions as f64;
    assert_eq!(
        sum(&text, "vaart_partition_leaders", &[]),
        expected_partitions,
        "{text}"
    );
    assert_eq!(
        sum(&text, "vaart_partitions", &[]),
        expected_partitions,
        "{text}"
    );

    assert!(
        sum(&text, "vaart_log_flush_duration_seconds_count", &[]) > 0.0,
        "{text}"
    );
    assert!(
        sum(&text, "vaart_log_written_bytes_total", &[]) >= payload_bytes,
        "{text}"
    );
    assert!(
        sum(&text, "vaart_connections_accepted_total", &[]) >= 1.0,
        "{text}"
    );
    // Every long-poll that ended was counted as ended by data or by timeout.
    assert_eq!(
        sum(&text, "vaart_fetch_waits_total", &[]),
        sum(&text, "vaart_fetch_wait_ends_total", &[]),
        "{text}"
    );

    // Another path, another method, a malformed request line.
    assert_eq!(get(metrics, "/").0, 404);
    assert_eq!(get(metrics, "/metrics/x").0, 404);
    assert_eq!(http(metrics, b"POST /metrics HTTP/1.1\r\n\r\n").0, 405);
    assert_eq!(http(metrics, b"hello there\r\n\r\n").0, 400);

    // Garbage: binary junk, an endless head, a connection that says nothing and leaves.
    let mut junk: Vec<u8> = (0..4096u32).map(|i| (i * 131 % 251) as u8).collect();
    junk.extend_from_slice(b"\r\n\r\n");
    assert_eq!(http(metrics, &junk).0, 400);
    let mut stream = TcpStream::connect_timeout(&metrics, HTTP_TIMEOUT).unwrap();
    stream.set_read_timeout(Some(HTTP_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(HTTP_TIMEOUT)).unwrap();
    // The server stops reading past its limit and may close first: a write error is fine.
    let _ = stream.write_all(&vec![b'A'; 64 * 1024]);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    drop(TcpStream::connect_timeout(&metrics, HTTP_TIMEOUT).unwrap());

    // The broker is unharmed: Kafka requests and scrapes still work.
    broker.assert_running();
    assert_eq!(
        broker.check(admin.partition_count(TOPIC), "metadata after garbage"),
        Some(PARTITIONS as usize)
    );
    let (status, _, again) = get(metrics, "/metrics");
    assert_eq!(status, 200);
    assert_each_family_once(&again);
    assert!(sum(&again, "vaart_requests_total", &[("api", "Metadata")]) >= 1.0);
    let log = std::fs::read_to_string(broker.stderr_path()).unwrap();
    assert!(
        log.contains(&format!("metrics listening on http://{metrics}/metrics")),
        "{log}"
    );
}

#[test]
fn metrics_can_be_disabled() {
    let mut broker = BrokerOptions::new().set("metrics.listen", "none").start();
    broker.assert_running();
    let log = std::fs::read_to_string(broker.stderr_path()).unwrap();
    assert!(log.contains("metrics endpoint disabled"), "{log}");
    assert!(
        TcpStream::connect_timeout(&broker.metrics_addr(), Duration::from_secs(5)).is_err(),
        "nothing listens on the metrics port when metrics.listen=none"
    );
}
