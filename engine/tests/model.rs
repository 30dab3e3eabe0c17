//! Append/read round trip against a simple in-memory model, driven by proptest: random batch
//! sizes, segment rolls, flushes, restarts (close and reopen) and truncations. After every
//! step, every offset still in the log reads back the batch that holds it, byte-exact.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use proptest::prelude::*;
use vaart_engine::testing::{run_local, BatchBuilder};
use vaart_engine::{
    prime_direct_io, Chunk, DirectBackend, LeaderEpoch, LogConfig, Offset, PartitionLog,
    TimestampMs,
};

#[derive(Debug, Clone)]
enum Step {
    Append {
        records: usize,
        value_bytes: usize,
    },
    Flush,
    Restart,
    /// Truncate to a fraction (per mille) of the current log end.
    Truncate {
        per_mille: u32,
    },
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (1usize..=20, 0usize..=6000)
            .prop_map(|(records, value_bytes)| Step::Append { records, value_bytes }),
        2 => Just(Step::Flush),
        1 => Just(Step::Restart),
        1 => (0u32..=1000).prop_map(|per_mille| Step::Truncate { per_mille }),
    ]
}

/// What the model remembers of one appended batch.
#[derive(Debug, Clone)]
struct ModelBatch {
    base_offset: i64,
    record_count: i64,
    /// The batch as the producer sent it (before offset assignment).
    sent: Vec<u8>,
}

fn model_config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        // Keep little in memory so reads also come from disk.
        hot_tail_bytes: 16 * 1024,
        ..LogConfig::default()
    }
}

async fn open(dir: &Path, segment_bytes: u64) -> PartitionLog {
    let (log, _report) = PartitionLog::open(DirectBackend, dir, model_config(segment_bytes))
        .await
        .expect("open log");
    log
}

async fn read_batch_at(log: &PartitionLog, offset: i64) -> Vec<u8> {
    let result = log
        .read(Offset(offset), 1, log.log_end_offset())
        .expect("read inside the log");
    let mut data = Vec::new();
    for chunk in result.chunks {
        match chunk {
            Chunk::Memory(bytes) => data.extend_from_slice(&bytes),
            Chunk::File {
                file,
                position,
                length,
            } => data.extend_from_slice(&file.read_at(position, length as usize).await.unwrap()),
        }
    }
    assert!(data.len() >= 61, "a read returns at least one whole batch");
    let length = i32::from_be_bytes(data[8..12].try_into().unwrap());
    data.truncate(12 + usize::try_from(length).unwrap());
    data
}

async fn check_against_model(log: &PartitionLog, model: &[ModelBatch]) {
    let expected_end = model.last().map_or(0, |b| b.base_offset + b.record_count);
    assert_eq!(log.log_end_offset(), Offset(expected_end));
    for batch in model {
        // The first and the last offset of each batch both return that whole batch.
        for offset in [
            batch.base_offset,
            batch.base_offset + batch.record_count - 1,
        ] {
            let stored = read_batch_at(log, offset).await;
            assert_eq!(
                i64::from_be_bytes(stored[0..8].try_into().unwrap()),
                batch.base_offset,
                "read at {offset} must start at its batch"
            );
            assert_eq!(stored[16..], batch.sent[16..], "batch at {offset} changed");
        }
    }
    // Reading at the log end is allowed and empty; past it is out of range.
    let at_end = log
        .read(Offset(expected_end), 1 << 20, log.log_end_offset())
        .unwrap();
    assert_eq!(at_end.total_bytes, 0);
    assert!(log
        .read(Offset(expected_end + 1), 1 << 20, log.log_end_offset())
        .is_err());
}

fn run_steps(segment_bytes: u64, steps: Vec<Step>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        prime_direct_io(&path).await.unwrap();
        let mut log = open(&path, segment_bytes).await;
        let mut model: Vec<ModelBatch> = Vec::new();
        for (index, step) in steps.into_iter().enumerate() {
            match step {
                Step::Append {
                    records,
                    value_bytes,
                } => {
                    let value = vec![index as u8; value_bytes];
                    let mut builder = BatchBuilder::new(TimestampMs(1_000 + index as i64));
                    for record in 0..records {
                        let key = format!("{index}-{record}");
                        builder = builder.record(Some(key.as_bytes()), Some(&value));
                    }
                    let sent = builder.build().to_vec();
                    let info = log
                        .append(sent.clone().into(), LeaderEpoch(0), TimestampMs(0))
                        .unwrap();
                    let expected_base = model.last().map_or(0, |b| b.base_offset + b.record_count);
                    assert_eq!(info.base_offset, Offset(expected_base));
                    model.push(ModelBatch {
                        base_offset: expected_base,
                        record_count: records as i64,
                        sent,
                    });
                }
                Step::Flush => log.flush().await.unwrap(),
                Step::Restart => {
                    log.close().await.unwrap();
                    log = open(&path, segment_bytes).await;
                }
                Step::Truncate { per_mille } => {
                    // Truncation is only meaningful at a batch boundary.
                    let keep = model.len() * per_mille as usize / 1000;
                    model.truncate(keep);
                    let to = model.last().map_or(0, |b| b.base_offset + b.record_count);
                    log.truncate_to(Offset(to)).await.unwrap();
                }
            }
            check_against_model(&log, &model).await;
        }
        log.close().await.unwrap();
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(
        segment_bytes in prop_oneof![Just(8 * 1024u64), Just(64 * 1024u64), Just(1u64 << 30)],
        steps in proptest::collection::vec(step_strategy(), 1..60),
    ) {
        run_steps(segment_bytes, steps);
    }
}
