//! Round trip against the real broker binary: admin calls, produce with every codec and acks
//! level, consume from earliest, list offsets, configs, partitions, delete.
//!
//! The broker is `$VAART_BIN` or `<workspace>/target/debug/vaart` (build it first with
//! `cargo build -p vaart-broker`; the test command builds the workspace).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};

use vaart_client::partitioner::partition_for_key;
use vaart_client::{
    Acks, Admin, AlterConfigOp, Client, ClientConfig, ClientError, Compression, ConfigSource,
    Consumer, ConsumerConfig, KafkaCode, NewTopic, Offset, OffsetSpec, PartitionId, Producer,
    ProducerConfig, ProducerRecord, ResourceType, StartOffset,
};

mod common;
use common::{run, BrokerProcess};

#[test]
fn produce_consume_and_admin_round_trip() {
    let broker = BrokerProcess::start();
    let bootstrap = broker.bootstrap();
    run(move || async move {
        let client = Client::connect(ClientConfig::new(&bootstrap))
            .await
            .unwrap();
        let admin = Admin::new(client.clone());

        // Topics: create, duplicate create keeps Kafka's error code, describe.
        admin
            .create_topic(NewTopic::new("roundtrip", 3, 1).with_config("retention.ms", "3600000"))
            .await
            .unwrap();
        let duplicate = admin
            .create_topic(NewTopic::new("roundtrip", 3, 1))
            .await
            .unwrap_err();
        assert_eq!(
            duplicate.kafka_code(),
            Some(KafkaCode::TOPIC_ALREADY_EXISTS)
        );
        let described = admin.describe_topics(&["roundtrip"]).await.unwrap();
        assert_eq!(described.len(), 1);
        assert_eq!(described[0].partitions.len(), 3);
        assert!(described[0].partitions.iter().all(|p| p.leader.is_some()));

        // Keyed produce, acks=all, lz4: partitions follow murmur2, offsets are contiguous.
        let producer = Producer::new(
            client.clone(),
            ProducerConfig {
                acks: Acks::All,
                compression: Compression::Lz4,
                linger_ms: 2,
                ..ProducerConfig::default()
            },
        )
        .unwrap();
        let mut deliveries = Vec::new();
        for index in 0..300 {
            let key = format!("key-{index}");
            let record = ProducerRecord::new(format!("value-{index}")).with_key(key.clone());
            deliveries.push((key, producer.send("roundtrip", record).await.unwrap()));
        }
        let mut offsets: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        let mut placed: HashMap<String, (i32, i64)> = HashMap::new();
        for (key, delivery) in deliveries {
            let metadata = delivery.await.unwrap();
            let expected = partition_for_key(key.as_bytes(), 3).unwrap();
            assert_eq!(metadata.partition, PartitionId(expected as i32), "{key}");
            offsets
                .entry(metadata.partition.0)
                .or_default()
                .push(metadata.offset.0);
            placed.insert(key, (metadata.partition.0, metadata.offset.0));
        }
        for list in offsets.values_mut() {
            list.sort_unstable();
            let expected: Vec<i64> = (0..list.len() as i64).collect();
            assert_eq!(*list, expected);
        }

        // Consume everything from the start and check every record.
        let consumer = Consumer::new(
            client.clone(),
            ConsumerConfig {
                max_wait_ms: 100,
                ..ConsumerConfig::default()
            },
        );
        consumer
            .assign_all("roundtrip", StartOffset::Earliest)
            .await
            .unwrap();
        let mut seen = 0;
        for _ in 0..200 {
            for record in consumer.poll().await.unwrap() {
                let key = String::from_utf8(record.key.unwrap().to_vec()).unwrap();
                let value = String::from_utf8(record.value.unwrap().to_vec()).unwrap();
                assert_eq!(value, key.replace("key", "value"));
                assert_eq!(placed[&key], (record.partition.0, record.offset.0), "{key}");
                seen += 1;
            }
            if seen == 300 {
                break;
            }
        }
        assert_eq!(seen, 300);

        // Offsets agree with what was produced.
        let partitions = [PartitionId(0), PartitionId(1), PartitionId(2)];
        let latest = admin
            .list_offsets("roundtrip", &partitions, OffsetSpec::Latest)
            .await
            .unwrap();
        let total: i64 = latest
            .iter()
            .map(|(_, r)| r.as_ref().unwrap().offset.0)
            .sum();
        assert_eq!(total, 300);
        let earliest = admin
            .list_offsets("roundtrip", &partitions, OffsetSpec::Earliest)
            .await
            .unwrap();
        assert!(earliest
            .iter()
            .all(|(_, r)| r.as_ref().unwrap().offset == Offset(0)));

        // Every codec and acks level, into one partition, read back in order.
        admin
            .create_topic(NewTopic::new("codecs", 1, 1))
            .await
            .unwrap();
        let mut expected_values = Vec::new();
        for (codec, acks) in [
            ("none", Acks::Leader),
            ("gzip", Acks::Leader),
            ("snappy", Acks::All),
            ("lz4", Acks::Leader),
            ("zstd", Acks::All),
            ("zstd", Acks::None),
        ] {
            let producer = Producer::new(
                client.clone(),
                ProducerConfig {
                    acks,
                    compression: codec.parse().unwrap(),
                    linger_ms: 0,
                    ..ProducerConfig::default()
                },
            )
            .unwrap();
            let mut pending = Vec::new();
            for index in 0..20 {
                let value = format!("{codec}-{acks:?}-{index}");
                expected_values.push(value.clone());
                pending.push(
                    producer
                        .send("codecs", ProducerRecord::new(value))
                        .await
                        .unwrap(),
                );
            }
            producer.close().await;
            for delivery in pending {
                let metadata = delivery.await.unwrap();
                if acks == Acks::None {
                    assert_eq!(metadata.offset, Offset(-1));
                }
            }
        }
        let consumer = Consumer::new(
            client.clone(),
            ConsumerConfig {
                max_wait_ms: 100,
                ..ConsumerConfig::default()
            },
        );
        consumer
            .assign("codecs", &[(PartitionId(0), StartOffset::Earliest)])
            .await
            .unwrap();
        let mut values = Vec::new();
        for _ in 0..200 {
            for record in consumer.poll().await.unwrap() {
                values.push(String::from_utf8(record.value.unwrap().to_vec()).unwrap());
            }
            if values.len() >= expected_values.len() {
                break;
            }
        }
        assert_eq!(values, expected_values);

        // Configs: describe, alter, describe again.
        let configs = admin
            .describe_configs(ResourceType::Topic, "roundtrip", None)
            .await
            .unwrap();
        let retention = configs.iter().find(|c| c.name == "retention.ms").unwrap();
        assert_eq!(retention.value.as_deref(), Some("3600000"));
        assert_eq!(retention.source, ConfigSource::TopicConfig);
        admin
            .alter_configs(
                ResourceType::Topic,
                "roundtrip",
                &[AlterConfigOp::Set {
                    name: "retention.ms".into(),
                    value: "7200000".into(),
                }],
            )
            .await
            .unwrap();
        let configs = admin
            .describe_configs(ResourceType::Topic, "roundtrip", Some(&["retention.ms"]))
            .await
            .unwrap();
        assert_eq!(configs.len(), 1);
        assert_eq!(configs[0].value.as_deref(), Some("7200000"));

        // More partitions.
        admin.create_partitions("roundtrip", 5).await.unwrap();
        let described = admin.describe_topics(&["roundtrip"]).await.unwrap();
        assert_eq!(described[0].partitions.len(), 5);

        // Errors keep their codes and names.
        let missing = Consumer::new(client.clone(), ConsumerConfig::default())
            .assign_all("no-such-topic", StartOffset::Earliest)
            .await
            .unwrap_err();
        assert!(
            matches!(missing, ClientError::UnknownTopic { .. }),
            "{missing:?}"
        );

        // Delete.
        admin.delete_topic("roundtrip").await.unwrap();
        admin.delete_topic("codecs").await.unwrap();
        let topics = admin.list_topics().await.unwrap();
        assert!(!topics.contains(&"roundtrip".to_owned()), "{topics:?}");
        let gone = admin.delete_topic("roundtrip").await.unwrap_err();
        assert_eq!(
            gone.kafka_code(),
            Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION)
        );
        client.close();
    });
    broker.stop();
}

/// The consumer sends its next Fetch while the caller works (prefetch): reading on continues
/// exactly where the last answer ended, and a seek in between makes the prefetched answer
/// stale, so the next poll starts at the sought offset.
#[test]
fn prefetched_fetches_follow_positions_and_seeks() {
    let broker = BrokerProcess::start();
    let bootstrap = broker.bootstrap();
    run(move || async move {
        let client = Client::connect(ClientConfig::new(&bootstrap))
            .await
            .unwrap();
        let admin = Admin::new(client.clone());
        admin
            .create_topic(NewTopic::new("prefetch", 1, 1))
            .await
            .unwrap();
        // One record per batch (linger 0, each awaited), 1 KiB each.
        let producer = Producer::new(
            client.clone(),
            ProducerConfig {
                linger_ms: 0,
                ..ProducerConfig::default()
            },
        )
        .unwrap();
        for index in 0..400 {
            let value = format!("{index:04}-{}", "x".repeat(1019));
            let record = ProducerRecord::new(value).with_partition(PartitionId(0));
            producer
                .send("prefetch", record)
                .await
                .unwrap()
                .await
                .unwrap();
        }
        producer.close().await;

        // Small answers (about 8 batches each), so reading takes many polls.
        let consumer = Consumer::new(
            client.clone(),
            ConsumerConfig {
                max_wait_ms: 100,
                partition_max_bytes: 8 * 1024,
                ..ConsumerConfig::default()
            },
        );
        consumer
            .assign("prefetch", &[(PartitionId(0), StartOffset::Earliest)])
            .await
            .unwrap();
        let read_index = |value: &Option<bytes::Bytes>| -> i64 {
            let value = value.as_ref().unwrap();
            std::str::from_utf8(&value[..4]).unwrap().parse().unwrap()
        };
        let mut next = 0i64;
        let mut seeks = 0;
        while next < 400 {
            let records = consumer.poll().await.unwrap();
            for record in &records {
                assert_eq!(record.offset, Offset(next), "records continue in order");
                assert_eq!(read_index(&record.value), next);
                next += 1;
            }
            // Twice, with a prefetch in flight: jump back, then forward.
            if !records.is_empty() && next >= 100 && seeks == 0 {
                assert!(consumer.seek("prefetch", PartitionId(0), Offset(37)));
                next = 37;
                seeks += 1;
            } else if !records.is_empty() && next >= 150 && seeks == 1 {
                assert!(consumer.seek("prefetch", PartitionId(0), Offset(300)));
                next = 300;
                seeks += 1;
            }
        }
        assert_eq!(seeks, 2);
        assert_eq!(next, 400);
        client.close();
    });
    broker.stop();
}
