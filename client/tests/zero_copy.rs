//! Produce through the zero-copy path against the real broker binary: uncompressed batches
//! whose values are referenced in place (batches in pieces, sent with vectored writes), mixed
//! with small values, keys, headers, null values and out-of-order timestamps, over several
//! partitions and acks levels, then read back record by record.
//!
//! The broker is `$VAART_BIN` or `<workspace>/target/debug/vaart` (build it first with
//! `cargo build -p vaart-broker`; the test command builds the workspace).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use bytes::Bytes;
use vaart_client::{
    Acks, Admin, Client, ClientConfig, Consumer, ConsumerConfig, NewTopic, PartitionId, Producer,
    ProducerConfig, ProducerRecord, StartOffset,
};

mod common;
use common::{run, BrokerProcess};

/// What was sent, to compare with what is read back.
#[derive(Debug, Clone, PartialEq)]
struct Sent {
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<(String, Option<Bytes>)>,
    timestamp_ms: i64,
}

fn record(index: usize) -> (Option<PartitionId>, Sent) {
    // Sizes around the reference threshold (512) and above the batch size, some null.
    let sizes = [0usize, 10, 511, 512, 1024, 3000, 20_000];
    let size = sizes[index % sizes.len()];
    let value = (index % 11 != 5).then(|| {
        Bytes::from(
            (0..size)
                .map(|byte| (byte as u8).wrapping_add(index as u8))
                .collect::<Vec<u8>>(),
        )
    });
    let key = index
        .is_multiple_of(3)
        .then(|| Bytes::from(format!("key-{index}")));
    let headers = if index.is_multiple_of(4) {
        vec![
            ("trace".to_owned(), Some(Bytes::from(format!("t{index}")))),
            ("empty".to_owned(), None),
        ]
    } else {
        Vec::new()
    };
    // Timestamps go back now and then within a batch.
    let timestamp_ms = 1_700_000_000_000 + (index as i64 * 7) % 1000;
    let partition = index
        .is_multiple_of(2)
        .then_some(PartitionId((index % 3) as i32));
    (
        partition,
        Sent {
            key,
            value,
            headers,
            timestamp_ms,
        },
    )
}

#[test]
fn values_referenced_in_place_arrive_intact_and_in_order() {
    let broker = BrokerProcess::start();
    let bootstrap = broker.bootstrap();
    run(move || async move {
        let client = Client::connect(ClientConfig::new(&bootstrap))
            .await
            .unwrap();
        let admin = Admin::new(client.clone());
        admin
            .create_topic(NewTopic::new("zero-copy", 3, 1))
            .await
            .unwrap();
        let mut sent: BTreeMap<(i32, i64), Sent> = BTreeMap::new();
        let mut index = 0usize;
        for (acks, batch_size_bytes, linger_ms) in [
            (Acks::Leader, 16 << 10, 5),
            (Acks::All, 64 << 10, 0),
            (Acks::Leader, 1 << 20, 20),
        ] {
            let producer = Producer::new(
                client.clone(),
                ProducerConfig {
                    acks,
                    batch_size_bytes,
                    linger_ms,
                    max_request_bytes: (1 << 20).max(batch_size_bytes),
                    ..ProducerConfig::default()
                },
            )
            .unwrap();
            let mut deliveries = Vec::new();
            for _ in 0..700 {
                let (partition, expected) = record(index);
                index += 1;
                let producer_record = ProducerRecord {
                    partition,
                    key: expected.key.clone(),
                    value: expected.value.clone(),
                    headers: expected.headers.clone(),
                    timestamp_ms: Some(expected.timestamp_ms),
                };
                let delivery = producer.send("zero-copy", producer_record).await.unwrap();
                deliveries.push((delivery, expected));
            }
            producer.flush().await;
            let mut last_offset: BTreeMap<i32, i64> = BTreeMap::new();
            for (delivery, expected) in deliveries {
                let metadata = delivery.await.unwrap();
                // A partition's records get increasing offsets in send order.
                let previous = last_offset.insert(metadata.partition.0, metadata.offset.0);
                assert!(previous.is_none_or(|previous| previous < metadata.offset.0));
                sent.insert((metadata.partition.0, metadata.offset.0), expected);
            }
            producer.close().await;
        }
        let consumer = Consumer::new(
            client.clone(),
            ConsumerConfig {
                max_wait_ms: 100,
                ..ConsumerConfig::default()
            },
        );
        consumer
            .assign_all("zero-copy", StartOffset::Earliest)
            .await
            .unwrap();
        let mut read = 0usize;
        for _ in 0..500 {
            for got in consumer.poll().await.unwrap() {
                let expected = sent
                    .get(&(got.partition.0, got.offset.0))
                    .unwrap_or_else(|| panic!("unexpected {}-{}", got.partition, got.offset));
                let got = Sent {
                    key: got.key,
                    value: got.value,
                    headers: got.headers,
                    timestamp_ms: got.timestamp_ms,
                };
                assert_eq!(&got, expected);
                read += 1;
            }
            if read == sent.len() {
                break;
            }
        }
        assert_eq!(read, sent.len());
        assert_eq!(read, 2100);
        client.close();
    });
    broker.stop();
}
