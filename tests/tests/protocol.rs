//! Wire conformance checks with raw requests: what ApiVersions advertises is what answers, the
//! ApiVersions v3 encoding leaves tagged fields at their defaults out (as Kafka does; librdkafka
//! 2.0.2, which Debian 12's kcat links, misreads them otherwise), compressed batches are stored
//! and served exactly as produced, ListOffsets by timestamp, and Metadata describing this broker.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Request;
use kafka_protocol::records::Compression;
use vaart_tests::wire::{self, encode_batch, error_code, KafkaConn, KeyValue, WireError};
use vaart_tests::workload::now_ms;
use vaart_tests::{Broker, BrokerOptions};

/// The APIs issue 3 requires, by key.
const REQUIRED_APIS: [ApiKey; 14] = [
    ApiKey::ApiVersions,
    ApiKey::Metadata,
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::CreatePartitions,
    ApiKey::DescribeConfigs,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::AlterConfigs,
    ApiKey::DescribeCluster,
    ApiKey::DeleteRecords,
    ApiKey::OffsetForLeaderEpoch,
];

/// Sends a default request of type `R` at `version` on a fresh connection and decodes the
/// answer at that version (the body must be consumed exactly).
fn probe<R: Request>(broker: &Broker, version: i16, request: R) -> Result<(), WireError> {
    let mut conn = KafkaConn::connect(broker.addr())?;
    conn.round_trip(version, &request).map(|_| ())
}

/// Probes `api_key` at `version` with a default (empty) request; None if this test does not
/// know the API (then the test fails and the API must be added here).
fn probe_api(broker: &Broker, api_key: ApiKey, version: i16) -> Option<Result<(), WireError>> {
    macro_rules! probe_defaults {
        ($($variant:ident => $request:ty),* $(,)?) => {
            match api_key {
                // acks=0 would get no answer at all; acks=1 with no topics gets an empty one.
                ApiKey::Produce => Some(probe(broker, version, ProduceRequest::default().with_acks(1))),
                $(ApiKey::$variant => Some(probe(broker, version, <$request>::default())),)*
                _ => None,
            }
        };
    }
    probe_defaults! {
        Fetch => FetchRequest,
        ListOffsets => ListOffsetsRequest,
        Metadata => MetadataRequest,
        OffsetCommit => OffsetCommitRequest,
        OffsetFetch => OffsetFetchRequest,
        FindCoordinator => FindCoordinatorRequest,
        JoinGroup => JoinGroupRequest,
        Heartbeat => HeartbeatRequest,
        LeaveGroup => LeaveGroupRequest,
        SyncGroup => SyncGroupRequest,
        DescribeGroups => DescribeGroupsRequest,
        ListGroups => ListGroupsRequest,
        SaslHandshake => SaslHandshakeRequest,
        ApiVersions => ApiVersionsRequest,
        CreateTopics => CreateTopicsRequest,
        DeleteTopics => DeleteTopicsRequest,
        DeleteRecords => DeleteRecordsRequest,
        InitProducerId => InitProducerIdRequest,
        OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
        AddPartitionsToTxn => AddPartitionsToTxnRequest,
        AddOffsetsToTxn => AddOffsetsToTxnRequest,
        EndTxn => EndTxnRequest,
        TxnOffsetCommit => TxnOffsetCommitRequest,
        DescribeAcls => DescribeAclsRequest,
        CreateAcls => CreateAclsRequest,
        DeleteAcls => DeleteAclsRequest,
        DescribeConfigs => DescribeConfigsRequest,
        AlterConfigs => AlterConfigsRequest,
        DescribeLogDirs => DescribeLogDirsRequest,
        SaslAuthenticate => SaslAuthenticateRequest,
        CreatePartitions => CreatePartitionsRequest,
        DeleteGroups => DeleteGroupsRequest,
        ElectLeaders => ElectLeadersRequest,
        IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
        ListPartitionReassignments => ListPartitionReassignmentsRequest,
        OffsetDelete => OffsetDeleteRequest,
        DescribeCluster => DescribeClusterRequest,
        DescribeProducers => DescribeProducersRequest,
        DescribeTransactions => DescribeTransactionsRequest,
        ListTransactions => ListTransactionsRequest,
        ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest,
        ConsumerGroupDescribe => ConsumerGroupDescribeRequest,
        DescribeTopicPartitions => DescribeTopicPartitionsRequest,
        DescribeQuorum => DescribeQuorumRequest,
    }
}

#[test]
fn every_advertised_api_answers_at_its_lowest_and_highest_version() {
    let broker = Broker::start();
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    let advertised = broker.check(conn.api_versions_raw(3), "ApiVersions v3");
    assert_eq!(
        advertised.error_code,
        error_code::NONE,
        "ApiVersions v3 error code"
    );

    let mut failures = Vec::new();
    for required in REQUIRED_APIS {
        if !advertised
            .api_keys
            .iter()
            .any(|api| api.api_key == required as i16)
        {
            failures.push(format!(
                "{required:?}: required by issue 3 but not advertised"
            ));
        }
    }
    for api in &advertised.api_keys {
        let Ok(api_key) = ApiKey::try_from(api.api_key) else {
            failures.push(format!(
                "advertises api key {} which Kafka does not define",
                api.api_key
            ));
            continue;
        };
        let known = api_key.valid_versions();
        if api.min_version > api.max_version
            || api.min_version < known.min
            || api.max_version > known.max
        {
            failures.push(format!(
                "{api_key:?}: advertised {}..={} is not within Kafka's {}..={}",
                api.min_version, api.max_version, known.min, known.max
            ));
            continue;
        }
        for version in [api.min_version, api.max_version] {
            match probe_api(&broker, api_key, version) {
                None => failures.push(format!(
                    "{api_key:?}: unknown to this test, add it to probe_api"
                )),
                Some(Ok(())) => {}
                Some(Err(error)) => failures.push(format!("{api_key:?} v{version}: {error}")),
            }
        }
    }
    if !failures.is_empty() {
        broker.fail(format!(
            "advertised APIs that do not answer properly:\n  {}",
            failures.join("\n  ")
        ));
    }
}

/// Reads an unsigned varint from the front of `buf`.
fn uvarint(buf: &mut Bytes) -> u64 {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        assert!(buf.has_remaining(), "varint runs past the end of the body");
        let byte = buf.get_u8();
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
    }
    panic!("varint longer than 10 bytes");
}

/// Reads a tagged-field section: (tag, data) pairs.
fn tagged_fields(buf: &mut Bytes) -> Vec<(u64, Bytes)> {
    let count = uvarint(buf);
    (0..count)
        .map(|_| {
            let tag = uvarint(buf);
            let size = usize::try_from(uvarint(buf)).expect("tag size fits usize");
            assert!(
                buf.remaining() >= size,
                "tagged field {tag} runs past the end of the body"
            );
            (tag, buf.split_to(size))
        })
        .collect()
}

#[test]
fn api_versions_v3_omits_tagged_fields_at_their_default_values() {
    let broker = Broker::start();
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    let request = ApiVersionsRequest::default()
        .with_client_software_name(kafka_protocol::protocol::StrBytes::from_static_str(
            "librdkafka",
        ))
        .with_client_software_version(kafka_protocol::protocol::StrBytes::from_static_str("2.0.2"));
    let correlation_id = broker.check(conn.send_request(3, &request), "send ApiVersions v3");
    // ApiVersions responses always use response header v0 (no tagged fields in the header).
    let raw = broker.check(conn.recv_raw(0), "ApiVersions v3 response");
    assert_eq!(raw.correlation_id, correlation_id);
    let mut body = raw.body;

    assert!(body.remaining() >= 2, "body too short");
    assert_eq!(body.get_i16(), error_code::NONE, "error code");
    let entries = uvarint(&mut body)
        .checked_sub(1)
        .expect("api_keys is not null");
    for _ in 0..entries {
        assert!(body.remaining() >= 6, "api_keys entry too short");
        let api_key = body.get_i16();
        let _min_version = body.get_i16();
        let _max_version = body.get_i16();
        let fields = tagged_fields(&mut body);
        assert!(
            fields.is_empty(),
            "api key {api_key}: unexpected tagged fields {fields:?}"
        );
    }
    assert!(body.remaining() >= 4, "throttle_time_ms missing");
    let _throttle_time_ms = body.get_i32();
    for (tag, mut data) in tagged_fields(&mut body) {
        match tag {
            // SupportedFeatures and FinalizedFeatures: compact arrays, default empty (length 0
            // is written as 1).
            0 | 2 => assert_ne!(
                uvarint(&mut data),
                1,
                "tag {tag} (features) written with its default, empty"
            ),
            // FinalizedFeaturesEpoch: default -1.
            1 => {
                assert_eq!(data.len(), 8, "FinalizedFeaturesEpoch is an int64");
                assert_ne!(
                    data.get_i64(),
                    -1,
                    "FinalizedFeaturesEpoch written with its default -1"
                );
            }
            // ZkMigrationReady: default false.
            3 => assert_ne!(
                data.first(),
                Some(&0),
                "ZkMigrationReady written with its default false"
            ),
            other => panic!("unknown top-level tagged field {other} in ApiVersions v3"),
        }
    }
    assert!(
        body.is_empty(),
        "{} bytes after the ApiVersions v3 body",
        body.len()
    );
}

/// Splits concatenated record batches into (base offset, batch bytes).
fn batches(mut records: Bytes) -> Vec<(i64, Bytes)> {
    let mut out = Vec::new();
    while records.remaining() >= 12 {
        let base_offset = i64::from_be_bytes(records[0..8].try_into().expect("8 bytes"));
        let length = i32::from_be_bytes(records[8..12].try_into().expect("4 bytes"));
        let total = 12 + usize::try_from(length).expect("batch length is not negative");
        if records.remaining() < total {
            break; // a partial batch at the end of a fetch is allowed
        }
        out.push((base_offset, records.split_to(total)));
    }
    out
}

#[test]
fn batches_of_every_codec_are_stored_and_served_exactly_as_produced() {
    let broker = Broker::start();
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    assert_eq!(
        broker.check(conn.create_topic("as-produced", 1, &[]), "CreateTopics"),
        error_code::NONE
    );
    let value: Vec<u8> = (0..600u32)
        .flat_map(|index| (index % 7).to_be_bytes())
        .collect();
    let records: Vec<KeyValue<'_>> = (0..50)
        .map(|_| (Some(&b"same key"[..]), Some(&value[..])))
        .collect();

    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    let mut produced = Vec::new();
    for codec in codecs {
        let batch = encode_batch(&records, now_ms(), codec);
        let answer = broker.check(
            conn.produce("as-produced", 0, batch.clone(), -1),
            "Produce acks=all",
        );
        assert_eq!(answer.error_code, error_code::NONE, "Produce {codec:?}");
        produced.push((codec, answer.base_offset, batch));
    }
    let fetched = broker.check(conn.fetch("as-produced", 0, 0, 100), "Fetch");
    assert_eq!(fetched.error_code, error_code::NONE);
    let served = batches(fetched.records.unwrap_or_default());

    for (codec, base_offset, batch) in produced {
        let (_, served_batch) = served
            .iter()
            .find(|(offset, _)| *offset == base_offset)
            .unwrap_or_else(|| {
                broker.fail(format!(
                    "{codec:?} batch at offset {base_offset} not served"
                ))
            });
        assert_eq!(
            served_batch.len(),
            batch.len(),
            "{codec:?}: served batch length"
        );
        // Only baseOffset (0..8) and partitionLeaderEpoch (12..16) may differ; magic, CRC,
        // attributes (codec), timestamps and the compressed records are as produced.
        assert_eq!(served_batch[8..12], batch[8..12], "{codec:?}: batchLength");
        assert_eq!(
            served_batch[16..],
            batch[16..],
            "{codec:?}: batch bytes from magic on"
        );
    }
}

#[test]
fn list_offsets_earliest_latest_and_by_timestamp() {
    let broker = Broker::start();
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    assert_eq!(
        broker.check(conn.create_topic("by-time", 1, &[]), "CreateTopics"),
        error_code::NONE
    );
    let base_ms = now_ms() - 60_000;
    let records: Vec<KeyValue<'_>> = (0..5).map(|_| (None, Some(&b"v"[..]))).collect();
    for (batch, codec) in [Compression::None, Compression::Lz4, Compression::None]
        .into_iter()
        .enumerate()
    {
        // Batch b holds offsets 5b..5b+4 with timestamps base + 1000b + (0..5).
        let first_ms = base_ms + 1000 * i64::try_from(batch).expect("small");
        let answer = broker.check(
            conn.produce("by-time", 0, encode_batch(&records, first_ms, codec), 1),
            "Produce",
        );
        assert_eq!(answer.error_code, error_code::NONE);
    }
    let earliest = broker.check(conn.list_offset("by-time", 0, -2), "ListOffsets earliest");
    assert_eq!(
        (earliest.error_code, earliest.offset),
        (error_code::NONE, 0),
        "earliest"
    );
    let latest = broker.check(conn.list_offset("by-time", 0, -1), "ListOffsets latest");
    assert_eq!(
        (latest.error_code, latest.offset),
        (error_code::NONE, 15),
        "latest"
    );
    // The first record whose timestamp is at or after the target, with that record's own
    // timestamp, also inside a compressed batch (Kafka reads the records of the batch).
    let mut mismatches = Vec::new();
    for (target_ms, offset, timestamp_ms) in [
        (base_ms - 5_000, 0, base_ms),
        (base_ms, 0, base_ms),
        (base_ms + 3, 3, base_ms + 3),
        (base_ms + 500, 5, base_ms + 1000),
        (base_ms + 1002, 7, base_ms + 1002),
        (base_ms + 2004, 14, base_ms + 2004),
    ] {
        let answer = broker.check(
            conn.list_offset("by-time", 0, target_ms),
            "ListOffsets by timestamp",
        );
        let actual = (answer.error_code, answer.offset, answer.timestamp - base_ms);
        let expected = (error_code::NONE, offset, timestamp_ms - base_ms);
        if actual != expected {
            mismatches.push(format!(
                "target base+{} ms: (error, offset, timestamp - base) = {actual:?}, expected {expected:?}",
                target_ms - base_ms
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "ListOffsets by timestamp (offsets 5..9 are one lz4 batch):\n  {}",
        mismatches.join("\n  ")
    );
    // After the last record: no offset (-1, -1), as Kafka answers.
    let answer = broker.check(
        conn.list_offset("by-time", 0, base_ms + 60_000),
        "ListOffsets after the end",
    );
    assert_eq!(
        (answer.error_code, answer.offset, answer.timestamp),
        (error_code::NONE, -1, -1),
        "after the last timestamp"
    );
}

#[test]
fn metadata_describes_this_broker_as_controller_and_leader() {
    let broker = BrokerOptions::new().node_id(7).start();
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    assert_eq!(
        broker.check(conn.create_topic("led", 3, &[]), "CreateTopics"),
        error_code::NONE
    );
    assert_eq!(
        broker.check(conn.create_topic("led", 3, &[]), "CreateTopics again"),
        error_code::TOPIC_ALREADY_EXISTS,
        "creating an existing topic"
    );
    let metadata = broker.check(conn.metadata(Some(&["led"]), false), "Metadata");
    assert_eq!(metadata.brokers.len(), 1, "one broker");
    let node = &metadata.brokers[0];
    assert_eq!(
        (node.node_id.0, node.host.as_str(), node.port),
        (7, "127.0.0.1", i32::from(broker.port())),
        "the broker entry"
    );
    assert_eq!(metadata.controller_id.0, 7, "controller id");
    assert!(
        metadata
            .cluster_id
            .as_ref()
            .is_some_and(|id| !id.is_empty()),
        "a cluster id"
    );
    let topic = &metadata.topics[0];
    assert_eq!(topic.error_code, error_code::NONE);
    let mut partitions: Vec<_> = topic
        .partitions
        .iter()
        .map(|partition| partition.partition_index)
        .collect();
    partitions.sort_unstable();
    assert_eq!(partitions, vec![0, 1, 2]);
    for partition in &topic.partitions {
        assert_eq!(partition.error_code, error_code::NONE);
        assert_eq!(
            partition.leader_id.0, 7,
            "leader of partition {}",
            partition.partition_index
        );
        assert_eq!(
            partition
                .replica_nodes
                .iter()
                .map(|id| id.0)
                .collect::<Vec<_>>(),
            vec![7]
        );
        assert_eq!(
            partition
                .isr_nodes
                .iter()
                .map(|id| id.0)
                .collect::<Vec<_>>(),
            vec![7]
        );
    }
}

#[test]
fn a_waiting_fetch_is_answered_when_records_arrive() {
    let broker = Broker::start();
    let mut setup = broker.check(KafkaConn::connect(broker.addr()), "connect");
    assert_eq!(
        broker.check(setup.create_topic("long-poll", 1, &[]), "CreateTopics"),
        error_code::NONE
    );

    // A fetch at the log end that may wait far longer than the socket timeout of the test's
    // connection (wire::IO_TIMEOUT): it only gets its answer in time if the append wakes it.
    let mut waiting = broker.check(KafkaConn::connect(broker.addr()), "connect");
    let version = broker.check(waiting.pick_version(ApiKey::Fetch, 4, 12), "Fetch version");
    let max_wait_ms = i32::try_from(wire::IO_TIMEOUT.as_millis() * 10).expect("fits i32");
    let request = wire::fetch_request("long-poll", 0, 0, max_wait_ms, 1);
    let correlation_id = broker.check(waiting.send_request(version, &request), "send the Fetch");
    // Give the fetch a moment to be parked (ordering help only; nothing is timed).
    std::thread::sleep(std::time::Duration::from_millis(300));

    let records: Vec<KeyValue<'_>> = (0..3).map(|_| (None, Some(&b"wake up"[..]))).collect();
    let answer = broker.check(
        setup.produce(
            "long-poll",
            0,
            encode_batch(&records, now_ms(), Compression::None),
            1,
        ),
        "Produce",
    );
    assert_eq!(answer.error_code, error_code::NONE);

    let fetched = broker.check(
        waiting.recv_fetch(version, correlation_id, 0),
        "the waiting Fetch (not answered within the test's socket timeout: not woken by the append?)",
    );
    assert_eq!(fetched.error_code, error_code::NONE);
    assert_eq!(fetched.high_watermark, 3);
    assert_eq!(
        batches(fetched.records.unwrap_or_default()).len(),
        1,
        "the appended batch"
    );
}

#[test]
fn a_fetch_wanting_more_than_there_is_returns_what_there_is_after_max_wait() {
    let broker = Broker::start();
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    assert_eq!(
        broker.check(conn.create_topic("min-bytes", 1, &[]), "CreateTopics"),
        error_code::NONE
    );
    let records: Vec<KeyValue<'_>> = (0..3).map(|_| (None, Some(&b"small"[..]))).collect();
    let answer = broker.check(
        conn.produce(
            "min-bytes",
            0,
            encode_batch(&records, now_ms(), Compression::None),
            1,
        ),
        "Produce",
    );
    assert_eq!(answer.error_code, error_code::NONE);
    let version = broker.check(conn.pick_version(ApiKey::Fetch, 4, 12), "Fetch version");
    // min_bytes far above what exists: after max_wait_ms the broker answers with what it has.
    let request = wire::fetch_request("min-bytes", 0, 0, 500, 1024 * 1024);
    let correlation_id = broker.check(conn.send_request(version, &request), "send the Fetch");
    let fetched = broker.check(
        conn.recv_fetch(version, correlation_id, 0),
        "Fetch with min_bytes 1 MiB",
    );
    assert_eq!(fetched.error_code, error_code::NONE);
    assert_eq!(
        batches(fetched.records.unwrap_or_default()).len(),
        1,
        "the one small batch"
    );
}
