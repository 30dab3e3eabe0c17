//! ListOffsets by time against the real broker, inside compressed batches: by timestamp (the
//! first record at or after the target, with its own timestamp) and max timestamp (`-3`,
//! ListOffsets v7+: the first record carrying the largest timestamp), for every codec.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use vaart_tests::wire::{error_code, KafkaConn};
use vaart_tests::workload::now_ms;
use vaart_tests::Broker;

/// ListOffsets special timestamp: the record with the largest timestamp (KIP-734).
const MAX_TIMESTAMP: i64 = -3;

/// One batch with these record timestamps (not ordered: CreateTime is the producer's).
fn batch(timestamps: &[i64], compression: Compression) -> Bytes {
    let records: Vec<Record> = timestamps
        .iter()
        .zip(0i64..)
        .map(|(timestamp, index)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: index,
            sequence: i32::try_from(index - 1).expect("small"),
            timestamp: *timestamp,
            key: None,
            value: Some(Bytes::from(vec![b'v'; 64])),
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
    .expect("encode");
    buf.freeze()
}

#[test]
fn by_timestamp_and_max_timestamp_look_inside_compressed_batches() {
    let broker = Broker::start();
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    let base = now_ms() - 3_600_000;
    for (index, codec) in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let topic = format!("time-{index}");
        assert_eq!(
            broker.check(conn.create_topic(&topic, 1, &[]), "CreateTopics"),
            error_code::NONE
        );
        let empty = broker.check(conn.list_offset(&topic, 0, MAX_TIMESTAMP), "max, empty");
        assert_eq!(
            (empty.error_code, empty.offset, empty.timestamp),
            (error_code::NONE, -1, -1),
            "{codec:?}: max timestamp of an empty partition"
        );
        // Offsets 0-3: uncompressed; 4-8: compressed, largest timestamp twice (offsets 6, 7);
        // 9-10: compressed, earlier timestamps.
        let batches = [
            (vec![base, base + 1, base + 2, base + 3], Compression::None),
            (
                vec![base + 50, base + 10, base + 900, base + 900, base + 20],
                codec,
            ),
            (vec![base + 30, base + 40], codec),
        ];
        for (timestamps, compression) in batches {
            let answer = broker.check(
                conn.produce(&topic, 0, batch(&timestamps, compression), 1),
                "Produce",
            );
            assert_eq!(answer.error_code, error_code::NONE);
        }
        let max = broker.check(conn.list_offset(&topic, 0, MAX_TIMESTAMP), "max timestamp");
        assert_eq!(
            (max.error_code, max.offset, max.timestamp - base),
            (error_code::NONE, 6, 900),
            "{codec:?}: the first record with the largest timestamp"
        );
        for (target, offset, timestamp) in [
            (base + 4, 4, 50),
            (base + 15, 4, 50),
            (base + 60, 6, 900),
            (base + 900, 6, 900),
        ] {
            let found = broker.check(conn.list_offset(&topic, 0, target), "by timestamp");
            assert_eq!(
                (found.error_code, found.offset, found.timestamp - base),
                (error_code::NONE, offset, timestamp),
                "{codec:?}: target base+{}",
                target - base
            );
        }
    }
}
