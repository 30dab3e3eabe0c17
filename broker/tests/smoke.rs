//! Smoke test of the real `vaart` binary over raw sockets with kafka-protocol-encoded
//! requests: ApiVersions (v3 bytes), CreateTopics, Metadata, Produce, Fetch (records read
//! back), ListOffsets, a bad frame, restart persistence, and a clean SIGTERM exit.
//! (The full client matrix — rdkafka, kafka-python, kcat — lives in the workspace `tests/`.)

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteRecordsRequest, DeleteRecordsResponse, FetchRequest, FetchResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, ProduceRequest, ProduceResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{encode_request_header_into_buffer, Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

struct Broker {
    child: Child,
    port: u16,
}

impl Broker {
    fn start(dir: &Path, shards: u32) -> Broker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vaart"))
            .args([
                "start",
                "--listen",
                "127.0.0.1:0",
                "--shards",
                &shards.to_string(),
                // Port 0: parallel test brokers must not compete for the default metrics port.
                "--set",
                "metrics.listen=127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(dir)
            .env("VAART_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[vaart] {line}");
                if let Some(rest) = line.split("listening on 127.0.0.1:").nth(1) {
                    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = tx.send(port.parse::<u16>().unwrap());
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("broker printed its port");
        Broker { child, port }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    fn stop(mut self) -> i32 {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().unwrap().code().unwrap_or(-1)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // A failed assertion must not leave the broker running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn send<Req: Encodable>(
    stream: &mut TcpStream,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &Req,
) {
    let mut buf = BytesMut::new();
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("smoke")));
    encode_request_header_into_buffer(&mut buf, &header).unwrap();
    request.encode(&mut buf, version).unwrap();
    let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&buf);
    stream.write_all(&frame).unwrap();
}

fn receive(stream: &mut TcpStream) -> Bytes {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).unwrap();
    Bytes::from(body)
}

fn call<Req: Encodable, Resp: Decodable>(
    stream: &mut TcpStream,
    key: ApiKey,
    version: i16,
    request: &Req,
) -> Resp {
    send(stream, key, version, 7, request);
    let mut frame = receive(stream);
    let header_len = if key != ApiKey::ApiVersions && key.response_header_version(version) >= 1 {
        5
    } else {
        4
    };
    let correlation = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
    assert_eq!(correlation, 7);
    let _ = frame.split_to(header_len);
    Resp::decode(&mut frame, version).unwrap()
}

fn batch(values: &[&str]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("key{i}"))),
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

fn produce(stream: &mut TcpStream, topic: &str, partition: i32, records: Bytes) -> (i16, i64) {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])]);
    let response: ProduceResponse = call(stream, ApiKey::Produce, 9, &request);
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn fetch_values(
    stream: &mut TcpStream,
    topic: &str,
    partition: i32,
    offset: i64,
) -> (i16, Vec<String>) {
    let request = FetchRequest::default()
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.into())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let response: FetchResponse = call(stream, ApiKey::Fetch, 12, &request);
    let p = &response.responses[0].partitions[0];
    let mut values = Vec::new();
    if let Some(mut records) = p.records.clone() {
        while !records.is_empty() {
            let set = RecordBatchDecoder::decode(&mut records).unwrap();
            for record in set.records {
                values.push(String::from_utf8(record.value.unwrap().to_vec()).unwrap());
            }
        }
    }
    (p.error_code, values)
}

#[test]
fn broker_serves_raw_protocol_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 2);
    let mut stream = broker.connect();

    // ApiVersions v3: the list, and no tagged fields after throttle_time_ms.
    send(
        &mut stream,
        ApiKey::ApiVersions,
        3,
        1,
        &ApiVersionsRequest::default(),
    );
    let frame = receive(&mut stream);
    assert_eq!(*frame.last().unwrap(), 0, "no top-level tagged fields");
    let versions = ApiVersionsResponse::decode(&mut frame.slice(4..), 3).unwrap();
    assert_eq!(versions.error_code, 0);
    assert!(versions
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::Fetch as i16));

    let create = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("smoke")))
            .with_num_partitions(3)
            .with_replication_factor(1)]);
    let created: CreateTopicsResponse = call(&mut stream, ApiKey::CreateTopics, 7, &create);
    assert_eq!(created.topics[0].error_code, 0);
    let again: CreateTopicsResponse = call(&mut stream, ApiKey::CreateTopics, 7, &create);
    assert_eq!(again.topics[0].error_code, 36, "TOPIC_ALREADY_EXISTS");

    let metadata: MetadataResponse = call(
        &mut stream,
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    );
    let topic = metadata
        .topics
        .iter()
        .find(|t| t.name.as_deref().map(|n| n.as_str()) == Some("smoke"))
        .unwrap();
    assert_eq!(topic.partitions.len(), 3);
    assert_eq!(metadata.brokers[0].port, i32::from(broker.port));

    // Produce to every partition (two shards: some are forwarded), then read back.
    for partition in 0..3 {
        assert_eq!(
            produce(&mut stream, "smoke", partition, batch(&["a", "b"])),
            (0, 0)
        );
        assert_eq!(
            produce(&mut stream, "smoke", partition, batch(&["c"])),
            (0, 2)
        );
        assert_eq!(
            fetch_values(&mut stream, "smoke", partition, 0),
            (0, vec!["a".into(), "b".into(), "c".into()])
        );
    }
    let (error, _) = fetch_values(&mut stream, "smoke", 0, 99);
    assert_eq!(error, 1, "OFFSET_OUT_OF_RANGE");

    let list = ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("smoke")))
            .with_partitions(vec![
                ListOffsetsPartition::default()
                    .with_partition_index(1)
                    .with_timestamp(-1),
                ListOffsetsPartition::default()
                    .with_partition_index(2)
                    .with_timestamp(-2),
                ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(1_700_000_000_000),
            ])]);
    let offsets: ListOffsetsResponse = call(&mut stream, ApiKey::ListOffsets, 5, &list);
    let got: Vec<i64> = offsets.topics[0]
        .partitions
        .iter()
        .map(|p| p.offset)
        .collect();
    assert_eq!(got, vec![3, 0, 0]);

    // Topic ids: Produce v13 and Fetch v16 name the topic by id.
    let topic_id = topic.topic_id;
    let request = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_topic_id(topic_id)
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(1)
                .with_records(Some(batch(&["by-id"])))])]);
    let response: ProduceResponse = call(&mut stream, ApiKey::Produce, 13, &request);
    assert_eq!(response.responses[0].topic_id, topic_id);
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    assert_eq!(response.responses[0].partition_responses[0].base_offset, 3);
    let request = FetchRequest::default()
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic_id(topic_id)
            .with_partitions(vec![FetchPartition::default()
                .with_partition(1)
                .with_fetch_offset(3)
                .with_partition_max_bytes(1 << 20)])]);
    let response: FetchResponse = call(&mut stream, ApiKey::Fetch, 16, &request);
    assert_eq!(response.responses[0].topic_id, topic_id);
    let mut records = response.responses[0].partitions[0].records.clone().unwrap();
    let set = RecordBatchDecoder::decode(&mut records).unwrap();
    assert_eq!(set.records[0].value.as_deref(), Some(&b"by-id"[..]));
    assert_eq!(set.records[0].offset, 3);

    // DeleteRecords moves the log start; OffsetForLeaderEpoch answers epoch 0's end.
    let delete = DeleteRecordsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("smoke")))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(2)])]);
    let deleted: DeleteRecordsResponse = call(&mut stream, ApiKey::DeleteRecords, 2, &delete);
    let p = &deleted.topics[0].partitions[0];
    assert_eq!((p.error_code, p.low_watermark), (0, 2));
    let (error, _) = fetch_values(&mut stream, "smoke", 0, 0);
    assert_eq!(error, 1, "below the log start: OFFSET_OUT_OF_RANGE");
    let epochs =
        OffsetForLeaderEpochRequest::default().with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("smoke")))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(2)
                .with_current_leader_epoch(0)
                .with_leader_epoch(0)])]);
    let epochs: OffsetForLeaderEpochResponse =
        call(&mut stream, ApiKey::OffsetForLeaderEpoch, 4, &epochs);
    let p = &epochs.topics[0].partitions[0];
    assert_eq!((p.error_code, p.leader_epoch, p.end_offset), (0, 0, 3));

    // A bad frame closes only its own connection.
    let mut bad = broker.connect();
    bad.write_all(&i32::MAX.to_be_bytes()).unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(bad.read(&mut byte).unwrap_or(0), 0, "connection closed");
    let metadata: MetadataResponse = call(
        &mut stream,
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    );
    assert!(!metadata.topics.is_empty());

    drop(stream);
    assert_eq!(broker.stop(), 0, "SIGTERM exits 0");

    // Restart with one shard: topics and data are there; offsets continue.
    let broker = Broker::start(dir.path(), 1);
    let mut stream = broker.connect();
    assert_eq!(
        fetch_values(&mut stream, "smoke", 2, 0),
        (0, vec!["a".into(), "b".into(), "c".into()])
    );
    assert_eq!(produce(&mut stream, "smoke", 2, batch(&["d"])), (0, 3));
    drop(stream);
    assert_eq!(broker.stop(), 0);
}
