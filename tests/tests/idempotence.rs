//! Idempotent producers against the real broker: InitProducerId, duplicate detection (a retry
//! of a recent batch answers with its original offset and appends nothing), sequence gaps and
//! stale epochs refused with Kafka's errors, the state surviving a graceful and a hard restart,
//! and librdkafka with `enable.idempotence=true` delivering every message exactly once.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rdkafka::producer::Producer;
use vaart_tests::clients::{self, Admin};
use vaart_tests::wire::{error_code, KafkaConn};
use vaart_tests::workload::{self, TimestampCheck, Workload};
use vaart_tests::{Broker, BrokerOptions};

/// Kafka error codes (Errors.java).
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_REQUEST: i16 = 42;

const PRODUCE_TIMEOUT: Duration = Duration::from_secs(120);
const CONSUME_TIMEOUT: Duration = Duration::from_secs(120);

/// A producer's identity as InitProducerId hands it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    id: i64,
    epoch: i16,
}

/// InitProducerId at the highest version both sides know (0-5), optionally naming the
/// producer's current id and epoch (v3+, the KIP-360 epoch bump).
fn init_producer_id(
    broker: &Broker,
    conn: &mut KafkaConn,
    current: Option<Identity>,
) -> InitProducerIdResponse {
    let version = broker.check(
        conn.pick_version(ApiKey::InitProducerId, 0, 5),
        "InitProducerId is advertised",
    );
    let (id, epoch) = current.map_or((-1, -1), |p| (p.id, p.epoch));
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(id))
        .with_producer_epoch(epoch);
    broker.check(conn.round_trip(version, &request), "InitProducerId")
}

fn new_producer(broker: &Broker, conn: &mut KafkaConn) -> Identity {
    let response = init_producer_id(broker, conn, None);
    assert_eq!(
        response.error_code,
        error_code::NONE,
        "InitProducerId error"
    );
    assert!(response.producer_id.0 >= 0, "a producer id is handed out");
    Identity {
        id: response.producer_id.0,
        epoch: response.producer_epoch,
    }
}

/// One record batch from `producer` with sequences `first_sequence..first_sequence + count`.
fn idempotent_batch(
    producer: Identity,
    first_sequence: i32,
    count: i32,
    transactional: bool,
) -> Bytes {
    let now = workload::now_ms();
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer.id,
            producer_epoch: producer.epoch,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(i),
            sequence: first_sequence + i,
            timestamp: now,
            key: None,
            value: Some(Bytes::from(format!("seq-{}", first_sequence + i))),
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
    .expect("encode an idempotent batch");
    buf.freeze()
}

/// Produces a batch with acks=all; returns (error code, base offset).
fn produce(broker: &Broker, conn: &mut KafkaConn, topic: &str, batch: Bytes) -> (i16, i64) {
    let response = broker.check(conn.produce(topic, 0, batch, -1), "Produce");
    (response.error_code, response.base_offset)
}

fn log_end(broker: &Broker, conn: &mut KafkaConn, topic: &str) -> i64 {
    let answer = broker.check(conn.list_offset(topic, 0, -1), "ListOffsets latest");
    assert_eq!(answer.error_code, error_code::NONE);
    answer.offset
}

#[test]
fn duplicates_return_the_original_offset_and_gaps_and_stale_epochs_are_refused() {
    let broker = BrokerOptions::new().shards(2).start();
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    let topic = "idempotent";
    assert_eq!(
        broker.check(conn.create_topic(topic, 1, &[]), "CreateTopics"),
        error_code::NONE
    );
    let producer = new_producer(&broker, &mut conn);
    assert_eq!(producer.epoch, 0);

    let first = idempotent_batch(producer, 0, 5, false);
    let second = idempotent_batch(producer, 5, 5, false);
    assert_eq!(produce(&broker, &mut conn, topic, first.clone()), (0, 0));
    assert_eq!(produce(&broker, &mut conn, topic, second.clone()), (0, 5));
    // Retries of recent batches: success with the original base offset, nothing appended.
    assert_eq!(
        produce(&broker, &mut conn, topic, first),
        (0, 0),
        "duplicate of the first batch"
    );
    assert_eq!(
        produce(&broker, &mut conn, topic, second),
        (0, 5),
        "duplicate of the second batch"
    );
    assert_eq!(
        log_end(&broker, &mut conn, topic),
        10,
        "duplicates are not appended"
    );

    // A gap in the sequence.
    let gap = idempotent_batch(producer, 20, 1, false);
    assert_eq!(
        produce(&broker, &mut conn, topic, gap).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    assert_eq!(
        produce(
            &broker,
            &mut conn,
            topic,
            idempotent_batch(producer, 10, 2, false)
        ),
        (0, 10)
    );

    // Epoch bump (KIP-360): same id, next epoch; the new epoch starts at sequence 0.
    let bumped = init_producer_id(&broker, &mut conn, Some(producer));
    assert_eq!(
        (
            bumped.error_code,
            bumped.producer_id.0,
            bumped.producer_epoch
        ),
        (error_code::NONE, producer.id, producer.epoch + 1)
    );
    let bumped = Identity {
        id: producer.id,
        epoch: bumped.producer_epoch,
    };
    assert_eq!(
        produce(
            &broker,
            &mut conn,
            topic,
            idempotent_batch(bumped, 3, 1, false)
        )
        .0,
        OUT_OF_ORDER_SEQUENCE_NUMBER,
        "a new epoch must start at sequence 0"
    );
    assert_eq!(
        produce(
            &broker,
            &mut conn,
            topic,
            idempotent_batch(bumped, 0, 1, false)
        ),
        (0, 12)
    );
    assert_eq!(
        produce(
            &broker,
            &mut conn,
            topic,
            idempotent_batch(producer, 12, 1, false)
        )
        .0,
        INVALID_PRODUCER_EPOCH,
        "the old epoch is fenced"
    );

    // Transactions are not supported: refused clearly, not misreported as authorization.
    assert_eq!(
        produce(
            &broker,
            &mut conn,
            topic,
            idempotent_batch(bumped, 1, 1, true)
        )
        .0,
        INVALID_REQUEST
    );
    let version = broker.check(conn.pick_version(ApiKey::InitProducerId, 0, 5), "version");
    let transactional = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("txn"))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let response = broker.check(
        conn.round_trip(version, &transactional),
        "InitProducerId txn",
    );
    assert_eq!(response.error_code, INVALID_REQUEST);

    // Non-idempotent produce is unaffected, and everything counted once.
    assert_eq!(log_end(&broker, &mut conn, topic), 13);
}

#[test]
fn producer_ids_are_unique_across_shards_and_restarts() {
    let mut broker = BrokerOptions::new().shards(2).start();
    let mut seen = Vec::new();
    for _ in 0..6 {
        // New connections land on either shard; every id comes from shard 0's counter.
        let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
        seen.push(new_producer(&broker, &mut conn).id);
    }
    broker.stop();
    broker.restart();
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    let after = new_producer(&broker, &mut conn).id;
    let mut unique = seen.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "ids handed out: {seen:?}");
    assert!(
        seen.iter().all(|id| *id < after),
        "after a restart the counter continues past every id handed out: {seen:?} then {after}"
    );
}

#[test]
fn producer_state_survives_hard_and_graceful_restarts() {
    let mut broker = BrokerOptions::new().shards(1).start();
    let topic = "idempotent-restart";
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    assert_eq!(
        broker.check(conn.create_topic(topic, 1, &[]), "CreateTopics"),
        error_code::NONE
    );
    let producer = new_producer(&broker, &mut conn);
    let first = idempotent_batch(producer, 0, 3, false);
    assert_eq!(produce(&broker, &mut conn, topic, first.clone()), (0, 0));
    drop(conn);

    // Hard (no snapshot was ever written): acks=all made the batch durable, and the state is
    // rebuilt from the log's batch headers.
    broker.kill();
    broker.restart();
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    assert_eq!(
        produce(&broker, &mut conn, topic, first.clone()),
        (0, 0),
        "a retry after a crash is still a duplicate"
    );
    assert_eq!(
        produce(
            &broker,
            &mut conn,
            topic,
            idempotent_batch(producer, 4, 1, false)
        )
        .0,
        OUT_OF_ORDER_SEQUENCE_NUMBER,
        "the sequence is remembered"
    );
    let second = idempotent_batch(producer, 3, 2, false);
    assert_eq!(produce(&broker, &mut conn, topic, second.clone()), (0, 3));
    drop(conn);

    // Graceful: the state comes back from the snapshot written at shutdown.
    broker.stop();
    broker.restart();
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    assert_eq!(
        produce(&broker, &mut conn, topic, second),
        (0, 3),
        "a retry after a graceful restart is still a duplicate"
    );
    assert_eq!(
        produce(&broker, &mut conn, topic, first),
        (0, 0),
        "older batches of the last five too"
    );
    assert_eq!(
        produce(
            &broker,
            &mut conn,
            topic,
            idempotent_batch(producer, 5, 1, false)
        ),
        (0, 5)
    );
    let third = idempotent_batch(producer, 6, 1, false);
    assert_eq!(produce(&broker, &mut conn, topic, third.clone()), (0, 6));
    drop(conn);

    // A crash after appends that followed the snapshot: snapshot plus the batches after it.
    broker.kill();
    broker.restart();
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    assert_eq!(
        produce(&broker, &mut conn, topic, third),
        (0, 6),
        "a batch appended after the snapshot is still known"
    );
    assert_eq!(log_end(&broker, &mut conn, topic), 7);
}

#[test]
fn rdkafka_idempotent_producer_delivers_every_message_exactly_once() {
    let broker = BrokerOptions::new().shards(2).start();
    let topic = "rdkafka-idempotent";
    let partitions = [0, 1, 2];
    let count = 20_000;
    let admin = Admin::new(&broker.bootstrap());
    broker.check(admin.create_topic(topic, 3, &[]), "CreateTopics");
    let producer = clients::recording_producer(
        &broker.bootstrap(),
        "all",
        "lz4",
        &[("enable.idempotence", "true"), ("retries", "1000")],
    );
    let workload = Workload::new(100);
    let deadline = Instant::now() + PRODUCE_TIMEOUT;
    broker.check(
        workload.send_range(&producer, topic, 0..count, deadline),
        "producer send",
    );
    broker.check(
        producer.flush(deadline.saturating_duration_since(Instant::now())),
        "producer flush",
    );
    let deliveries = producer.context().deliveries();
    let failed: Vec<_> = deliveries
        .iter()
        .filter(|(_, outcome)| outcome.is_err())
        .take(5)
        .collect();
    assert!(failed.is_empty(), "failed deliveries: {failed:?}");
    assert_eq!(deliveries.len(), count);

    let consumer = clients::assigned_consumer(&broker.bootstrap(), topic, &partitions);
    let received = broker.check(
        clients::consume(&consumer, &partitions, count, CONSUME_TIMEOUT),
        "consume everything back",
    );
    let found = workload::assert_consumed(&received, &workload, TimestampCheck::CreateTime);
    assert_eq!(received.len(), count, "exactly one copy of every message");
    assert_eq!(
        workload::assert_acknowledged_present(&found, &deliveries),
        count
    );
}
