//! Request decode/encode micro-benchmarks: the protocol work on the produce and fetch paths
//! that is not in the engine (batch validation, CRC, offset assignment and index lookup are in
//! `engine/benches/batch.rs`).
//!
//! - Produce request: encode (client side, `vaart_client::connection::encode_frame`) and
//!   decode (broker side: request header + body) for 3 partitions of one 16 KiB batch each.
//! - Fetch response: encode and decode with 3 partitions of 64 KiB of batches.
//! - Record batch: encode 16 records of 1 KiB with kafka-protocol, uncompressed and lz4.
//! - murmur2 of a 16-byte key (the producer's partitioner).
//!
//! Tiny inputs on purpose: the test command runs these with
//! `--warm-up-time 0.05 --measurement-time 0.1 --sample-size 10`.

#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, FetchResponse, ProduceRequest, TopicName};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable, StrBytes};
use kafka_protocol::records::{Record, TimestampType};
use vaart_client::connection::encode_frame;
use vaart_client::partitioner::murmur2;
use vaart_client::producer::{encode_batch, Compression};

fn records(count: i64, value_bytes: usize) -> Vec<Record> {
    (0..count)
        .map(|offset| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: (offset as i32).wrapping_sub(1),
            timestamp: 1_700_000_000_000 + offset,
            key: None,
            value: Some(Bytes::from(vec![(offset % 251) as u8; value_bytes])),
            headers: Default::default(),
        })
        .collect()
}

fn batch_of(total_bytes: usize) -> Bytes {
    let count = (total_bytes / 1024).max(1) as i64;
    encode_batch(&records(count, 1000), Compression::None).unwrap()
}

fn produce_request(batch: &Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("bench")))
            .with_partition_data(
                (0..3)
                    .map(|index| {
                        PartitionProduceData::default()
                            .with_index(index)
                            .with_records(Some(batch.clone()))
                    })
                    .collect(),
            )])
}

fn produce(c: &mut Criterion) {
    let batch = batch_of(16 << 10);
    let request = produce_request(&batch);
    let client_id = StrBytes::from_static_str("bench");
    let frame = encode_frame(ApiKey::Produce, 9, 1, &client_id, &request).unwrap();
    let mut group = c.benchmark_group("produce_request");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("encode_v9_3x16KiB", |b| {
        b.iter(|| encode_frame(ApiKey::Produce, 9, 1, &client_id, black_box(&request)).unwrap())
    });
    group.bench_function("decode_v9_3x16KiB", |b| {
        b.iter(|| {
            let mut body = frame.slice(4..);
            let header = decode_request_header_from_buffer(&mut body).unwrap();
            let request = ProduceRequest::decode(&mut body, header.request_api_version).unwrap();
            black_box(request)
        })
    });
    group.finish();
}

fn fetch(c: &mut Criterion) {
    let records = batch_of(64 << 10);
    let response = FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
        .with_topic(TopicName(StrBytes::from_static_str("bench")))
        .with_partitions(
            (0..3)
                .map(|index| {
                    PartitionData::default()
                        .with_partition_index(index)
                        .with_high_watermark(1000)
                        .with_records(Some(records.clone()))
                })
                .collect(),
        )]);
    let mut encoded = BytesMut::new();
    response.encode(&mut encoded, 12).unwrap();
    let encoded = encoded.freeze();
    let mut group = c.benchmark_group("fetch_response");
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("encode_v12_3x64KiB", |b| {
        b.iter(|| {
            let mut out = BytesMut::with_capacity(encoded.len());
            black_box(&response).encode(&mut out, 12).unwrap();
            out
        })
    });
    group.bench_function("decode_v12_3x64KiB", |b| {
        b.iter(|| {
            let mut body = encoded.clone();
            black_box(FetchResponse::decode(&mut body, 12).unwrap())
        })
    });
    group.finish();
}

fn record_batches(c: &mut Criterion) {
    let input = records(16, 1024);
    let mut group = c.benchmark_group("record_batch_encode");
    group.throughput(Throughput::Bytes(16 * 1024));
    group.bench_function("16x1KiB_none", |b| {
        b.iter(|| encode_batch(black_box(&input), Compression::None).unwrap())
    });
    group.bench_function("16x1KiB_lz4", |b| {
        b.iter(|| encode_batch(black_box(&input), Compression::Lz4).unwrap())
    });
    group.finish();
    c.bench_function("murmur2_16B_key", |b| {
        b.iter(|| murmur2(black_box(b"customer-0012345")))
    });
}

criterion_group!(benches, produce, fetch, record_batches);
criterion_main!(benches);
