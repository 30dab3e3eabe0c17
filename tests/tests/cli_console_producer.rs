//! `vaart console-producer` against a real broker, checked by consuming with librdkafka: one
//! record per line (`\n` and `\r\n`, a last line without a newline), keys with
//! `parse.key`/`key.separator` going to Kafka's murmur2 partition, the compression codec on the
//! wire, 100k lines streamed, and the error paths: a delivery error per failed line with a
//! non-zero exit, a line without the key separator, an unknown topic, an unreachable broker.

use std::collections::BTreeSet;
use std::time::Duration;

use vaart_tests::broker::free_port;
use vaart_tests::cli::{broker_tool, one_error_line, vaart_tool, ToolOutput};
use vaart_tests::clients::{assigned_consumer, consume, Received};
use vaart_tests::wire::KafkaConn;
use vaart_tests::{Broker, BrokerOptions};

const CONSUME_TIMEOUT: Duration = Duration::from_secs(60);

fn tool(broker: &Broker, name: &str, args: &[&str], stdin: &[u8]) -> ToolOutput {
    broker_tool(broker, name, args, stdin)
}

fn create_topic(broker: &Broker, topic: &str, partitions: u32, configs: &[&str]) {
    let partitions = partitions.to_string();
    let mut args = vec![
        "--create",
        "--topic",
        topic,
        "--partitions",
        partitions.as_str(),
    ];
    for config in configs {
        args.extend_from_slice(&["--config", config]);
    }
    tool(broker, "topics", &args, b"").assert_success();
}

fn consume_all(broker: &Broker, topic: &str, partitions: i32, expected: usize) -> Vec<Received> {
    let ids: Vec<i32> = (0..partitions).collect();
    let consumer = assigned_consumer(&broker.bootstrap(), topic, &ids);
    let received = consume(&consumer, &ids, expected, CONSUME_TIMEOUT).expect("consume");
    assert_eq!(received.len(), expected, "records in {topic}");
    received
}

fn text(bytes: &Option<Vec<u8>>) -> Option<String> {
    bytes
        .as_ref()
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
}

/// Kafka's murmur2 (`Utils.murmur2`), to check the partition of keyed records.
fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    let mut hash = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        hash = hash.wrapping_mul(M) ^ k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        hash ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        hash ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        hash ^= u32::from(rest[0]);
        hash = hash.wrapping_mul(M);
    }
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(M);
    hash ^= hash >> 15;
    hash as i32
}

fn kafka_partition(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions
}

#[test]
fn murmur2_matches_kafka() {
    // Vectors from Kafka's UtilsTest.
    assert_eq!(murmur2(b"21"), -973_932_308);
    assert_eq!(murmur2(b"foobar"), -790_332_482);
    assert_eq!(murmur2(b"abc"), 479_470_107);
}

#[test]
fn lines_become_records_keyed_ones_on_their_murmur2_partition() {
    let broker = BrokerOptions::new().node_id(1).start();

    create_topic(&broker, "plain", 1, &[]);
    let produced = tool(
        &broker,
        "console-producer",
        &["--topic", "plain"],
        b"first\nsecond\r\nwith\ttab\nlast without newline",
    );
    produced.assert_success();
    assert_eq!(produced.stdout, "");
    assert_eq!(produced.stderr, "");
    let received = consume_all(&broker, "plain", 1, 4);
    let values: Vec<Option<String>> = received.iter().map(|r| text(&r.payload)).collect();
    assert_eq!(
        values,
        vec![
            Some("first".to_string()),
            Some("second".to_string()),
            Some("with\ttab".to_string()),
            Some("last without newline".to_string())
        ]
    );
    assert!(received.iter().all(|record| record.key.is_none()));

    create_topic(&broker, "keyed", 4, &[]);
    let mut input = String::new();
    for index in 0..40 {
        input.push_str(&format!("key-{index}\tvalue-{index}\n"));
    }
    tool(
        &broker,
        "console-producer",
        &["--topic", "keyed", "--property", "parse.key=true"],
        input.as_bytes(),
    )
    .assert_success();
    let received = consume_all(&broker, "keyed", 4, 40);
    let mut partitions_used = BTreeSet::new();
    for record in &received {
        let key = text(&record.key).expect("a key");
        let index = key.strip_prefix("key-").expect("key-N");
        assert_eq!(text(&record.payload), Some(format!("value-{index}")));
        assert_eq!(
            record.partition,
            kafka_partition(key.as_bytes(), 4),
            "partition of key {key}"
        );
        partitions_used.insert(record.partition);
    }
    assert!(partitions_used.len() > 1, "40 keys spread over partitions");

    // A custom separator (only the first occurrence splits), acks=1 and --sync.
    create_topic(&broker, "custom", 1, &[]);
    tool(
        &broker,
        "console-producer",
        &[
            "--topic",
            "custom",
            "--property",
            "parse.key=true",
            "--property",
            "key.separator=::",
            "--request-required-acks",
            "1",
            "--sync",
        ],
        b"k1::v1\nk2::v::2\n",
    )
    .assert_success();
    let received = consume_all(&broker, "custom", 1, 2);
    let pairs: Vec<(Option<String>, Option<String>)> = received
        .iter()
        .map(|record| (text(&record.key), text(&record.payload)))
        .collect();
    assert_eq!(
        pairs,
        vec![
            (Some("k1".to_string()), Some("v1".to_string())),
            (Some("k2".to_string()), Some("v::2".to_string()))
        ]
    );
}

#[test]
fn compression_codec_reaches_the_log() {
    let broker = BrokerOptions::new().node_id(1).start();
    // Kafka's codec ids in the batch attributes.
    for (codec, id) in [("gzip", 1), ("snappy", 2), ("lz4", 3), ("zstd", 4)] {
        let topic = format!("compressed-{codec}");
        create_topic(&broker, &topic, 1, &[]);
        let input: String = (0..50)
            .map(|index| format!("line {index} of {codec}\n"))
            .collect();
        tool(
            &broker,
            "console-producer",
            &[
                "--topic",
                &topic,
                "--compression-codec",
                codec,
                "--acks",
                "all",
            ],
            input.as_bytes(),
        )
        .assert_success();
        let mut conn = KafkaConn::connect(broker.addr()).expect("connect");
        let data = conn.fetch(&topic, 0, 0, 100).expect("fetch");
        let records = data.records.expect("records");
        let attributes = i16::from_be_bytes([records[21], records[22]]);
        assert_eq!(attributes & 0x7, id, "codec of the first batch for {codec}");
        let received = consume_all(&broker, &topic, 1, 50);
        assert_eq!(
            text(&received[49].payload),
            Some(format!("line 49 of {codec}"))
        );
    }
}

#[test]
fn hundred_thousand_lines_stream_through() {
    let broker = BrokerOptions::new().node_id(1).start();
    create_topic(&broker, "bulk", 3, &[]);
    const LINES: usize = 100_000;
    let input: String = (0..LINES).map(|index| format!("{index}\n")).collect();
    let produced = tool(
        &broker,
        "console-producer",
        &["--topic", "bulk"],
        input.as_bytes(),
    );
    produced.assert_success();
    let received = consume_all(&broker, "bulk", 3, LINES);
    let values: BTreeSet<usize> = received
        .iter()
        .map(|record| {
            text(&record.payload)
                .and_then(|value| value.parse().ok())
                .expect("a number")
        })
        .collect();
    assert_eq!(values.len(), LINES, "every line exactly once");
    assert_eq!(values.last(), Some(&(LINES - 1)));
}

#[test]
fn delivery_errors_name_the_line_and_fail_the_run() {
    let broker = BrokerOptions::new().node_id(1).start();
    create_topic(&broker, "small", 1, &["max.message.bytes=1024"]);
    let mut input = b"small1\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 3000));
    input.extend_from_slice(b"\nsmall2\n");
    let produced = tool(
        &broker,
        "console-producer",
        &["--topic", "small", "--sync"],
        &input,
    );
    let stderr = produced.assert_failure().to_string();
    assert_eq!(produced.status.code(), Some(1));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with("Error when sending line 2 to topic small: ")
            && lines[0].contains("MessageTooLarge"),
        "{stderr}"
    );
    assert_eq!(
        lines[1],
        "Error: 1 of 3 records were not delivered to topic small"
    );
    let received = consume_all(&broker, "small", 1, 2);
    let values: Vec<Option<String>> = received.iter().map(|r| text(&r.payload)).collect();
    assert_eq!(
        values,
        vec![Some("small1".to_string()), Some("small2".to_string())]
    );

    // Kafka's LineMessageReader: a line without the separator stops the tool (the lines
    // before it are delivered) unless ignore.error=true.
    create_topic(&broker, "keyed", 1, &[]);
    let missing = tool(
        &broker,
        "console-producer",
        &["--topic", "keyed", "--property", "parse.key=true"],
        b"k\tv\nno separator\nk2\tv2\n",
    );
    assert_eq!(
        one_error_line(&missing),
        "Error: No key separator found on line number 2: 'no separator'"
    );
    let lenient = tool(
        &broker,
        "console-producer",
        &[
            "--topic",
            "keyed",
            "--property",
            "parse.key=true",
            "--property",
            "ignore.error=true",
        ],
        b"no separator\n",
    );
    lenient.assert_success();
    let received = consume_all(&broker, "keyed", 1, 2);
    assert_eq!(text(&received[0].key), Some("k".to_string()));
    assert_eq!(received[1].key, None);
    assert_eq!(text(&received[1].payload), Some("no separator".to_string()));

    let unknown = tool(&broker, "console-producer", &["--topic", "nope"], b"x\n");
    assert_eq!(
        one_error_line(&unknown),
        "Error: topic 'nope' does not exist"
    );

    let bad_acks = tool(
        &broker,
        "console-producer",
        &["--topic", "small", "--acks", "2"],
        b"x\n",
    );
    assert!(one_error_line(&bad_acks).contains("acks"));

    let closed = format!("127.0.0.1:{}", free_port());
    let unreachable = vaart_tool(
        &[
            "console-producer",
            "--bootstrap-server",
            &closed,
            "--topic",
            "t",
        ],
        b"x\n",
    );
    assert!(one_error_line(&unreachable).contains(&closed));
}
