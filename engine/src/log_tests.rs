#![allow(clippy::unwrap_used)]

use std::path::Path;

use bytes::Bytes;

use crate::{
    backend::{prime_direct_io, DirectBackend, FaultConfig, FaultyBackend},
    batch::validate_batches,
    config::{LogConfig, TimestampType},
    error::{AppendError, LogError, ReadError},
    log::{Chunk, PartitionLog},
    testing::{make_batch, run_local, segment_files, BatchBuilder},
    types::{LeaderEpoch, Offset, TimestampMs},
};

const NOW: TimestampMs = TimestampMs(1_700_000_000_000);

async fn open(dir: &Path, config: LogConfig) -> PartitionLog {
    prime_direct_io(dir.parent().unwrap()).await.unwrap();
    PartitionLog::open(DirectBackend, dir, config)
        .await
        .unwrap()
        .0
}

async fn read_all(log: &PartitionLog, from: Offset) -> Vec<u8> {
    let result = log.read(from, usize::MAX, log.log_end_offset()).unwrap();
    let mut out = Vec::new();
    for chunk in &result.chunks {
        out.extend_from_slice(&chunk.load().await.unwrap());
    }
    assert_eq!(out.len(), result.total_bytes);
    out
}

fn base_offsets(bytes: &[u8]) -> Vec<i64> {
    validate_batches(bytes)
        .unwrap()
        .iter()
        .map(|s| s.base_offset)
        .collect()
}

#[test]
fn append_read_flush_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("topic-0");
    run_local(move || async move {
        let log = open(&dir, LogConfig::default()).await;
        assert_eq!(log.log_end_offset(), Offset(0));
        let first = log
            .append(make_batch(3, 100, NOW), LeaderEpoch(1), NOW)
            .unwrap();
        assert_eq!(first.base_offset, Offset(0));
        assert_eq!(first.last_offset, Offset(2));
        assert_eq!(first.record_count, 3);
        let second = log
            .append(make_batch(2, 5_000, NOW), LeaderEpoch(1), NOW)
            .unwrap();
        assert_eq!(second.base_offset, Offset(3));
        assert_eq!(log.log_end_offset(), Offset(5));

        let result = log.read(Offset(0), usize::MAX, Offset(5)).unwrap();
        assert!(result
            .chunks
            .iter()
            .all(|chunk| matches!(chunk, Chunk::Memory(_))));
        let in_memory = read_all(&log, Offset(0)).await;
        assert_eq!(base_offsets(&in_memory), vec![0, 3]);

        log.flush().await.unwrap();
        assert_eq!(log.synced_offset(), Offset(5));
        log.close().await.unwrap();
        assert!(matches!(
            log.append(make_batch(1, 1, NOW), LeaderEpoch(1), NOW),
            Err(AppendError::Closed)
        ));

        let (log, report) = PartitionLog::open(DirectBackend, &dir, LogConfig::default())
            .await
            .unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.batches, 2);
        assert_eq!(log.log_end_offset(), Offset(5));
        let result = log.read(Offset(0), usize::MAX, Offset(5)).unwrap();
        assert!(matches!(result.chunks[0], Chunk::File { .. }));
        let on_disk = read_all(&log, Offset(0)).await;
        assert_eq!(on_disk, in_memory);

        // Appends continue after the reopened tail (its partial page is rewritten).
        let third = log
            .append(make_batch(1, 10, NOW), LeaderEpoch(2), NOW)
            .unwrap();
        assert_eq!(third.base_offset, Offset(5));
        log.close().await.unwrap();
        let (log, report) = PartitionLog::open(DirectBackend, &dir, LogConfig::default())
            .await
            .unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(
            base_offsets(&read_all(&log, Offset(0)).await),
            vec![0, 3, 5]
        );
        assert_eq!(
            log.end_offset_for_epoch(LeaderEpoch(1)),
            Some((LeaderEpoch(1), Offset(5)))
        );
        assert_eq!(
            log.end_offset_for_epoch(LeaderEpoch(2)),
            Some((LeaderEpoch(2), Offset(6)))
        );
        log.close().await.unwrap();
    });
}

#[test]
fn reads_start_at_the_containing_batch_and_respect_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run_local(move || async move {
        let log = open(&dir, LogConfig::default()).await;
        for _ in 0..4 {
            log.append(make_batch(5, 100, NOW), LeaderEpoch(0), NOW)
                .unwrap();
        }
        let batch_len = make_batch(5, 100, NOW).len();
        // Offset 7 is inside the second batch (5..10).
        let bytes = read_all(&log, Offset(7)).await;
        assert_eq!(base_offsets(&bytes), vec![5, 10, 15]);
        // max_bytes smaller than a batch still returns one whole batch.
        let small = log.read(Offset(7), 10, Offset(20)).unwrap();
        assert_eq!(small.total_bytes, batch_len);
        // Two batches fit exactly.
        let two = log.read(Offset(0), 2 * batch_len + 1, Offset(20)).unwrap();
        assert_eq!(two.total_bytes, 2 * batch_len);
        // upper excludes a batch whose last offset is not below it.
        let upper = log.read(Offset(0), usize::MAX, Offset(12)).unwrap();
        assert_eq!(upper.total_bytes, 2 * batch_len);
        let none = log.read(Offset(10), usize::MAX, Offset(12)).unwrap();
        assert!(none.chunks.is_empty());
        assert!(log
            .read(Offset(20), 100, Offset(20))
            .unwrap()
            .chunks
            .is_empty());
        assert!(matches!(
            log.read(Offset(21), 100, Offset(21)),
            Err(ReadError::OffsetOutOfRange { .. })
        ));
        log.close().await.unwrap();
    });
}

#[test]
fn rolls_segments_and_reads_across_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run_local(move || async move {
        let config = LogConfig {
            segment_bytes: 10_000,
            hot_tail_bytes: 0,
            ..LogConfig::default()
        };
        let log = open(&dir, config.clone()).await;
        let mut expected = Vec::new();
        for index in 0..30 {
            let info = log
                .append(make_batch(2, 1_000 + index * 10, NOW), LeaderEpoch(0), NOW)
                .unwrap();
            expected.push(info.base_offset.0);
        }
        assert!(log.segment_count() > 3, "{}", log.segment_count());
        log.flush().await.unwrap();
        let bytes = read_all(&log, Offset(0)).await;
        assert_eq!(base_offsets(&bytes), expected);
        let from_middle = read_all(&log, Offset(31)).await;
        assert_eq!(base_offsets(&from_middle)[0], 30);
        log.close().await.unwrap();
        let (log, report) = PartitionLog::open(DirectBackend, &dir, config)
            .await
            .unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(read_all(&log, Offset(0)).await, bytes);
        log.close().await.unwrap();
    });
}

#[test]
fn truncate_to_then_append_and_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run_local(move || async move {
        let config = LogConfig {
            segment_bytes: 8_000,
            ..LogConfig::default()
        };
        let log = open(&dir, config.clone()).await;
        for _ in 0..20 {
            log.append(make_batch(3, 900, NOW), LeaderEpoch(1), NOW)
                .unwrap();
        }
        log.flush().await.unwrap();
        let segments_before = log.segment_count();
        // 31 is inside batch 30..33: LEO becomes 30.
        log.truncate_to(Offset(31)).await.unwrap();
        assert_eq!(log.log_end_offset(), Offset(30));
        assert!(log.segment_count() < segments_before);
        let info = log
            .append(make_batch(1, 10, NOW), LeaderEpoch(2), NOW)
            .unwrap();
        assert_eq!(info.base_offset, Offset(30));
        let before_close = read_all(&log, Offset(0)).await;
        assert_eq!(*base_offsets(&before_close).last().unwrap(), 30);
        log.close().await.unwrap();
        let (log, report) = PartitionLog::open(DirectBackend, &dir, config)
            .await
            .unwrap();
        assert!(!report.found_damage(), "{report:?}");
        assert_eq!(log.log_end_offset(), Offset(31));
        assert_eq!(read_all(&log, Offset(0)).await, before_close);
        // Truncating below everything restarts the log.
        log.truncate_to(Offset(0)).await.unwrap();
        assert_eq!(log.log_end_offset(), Offset(0));
        log.append(make_batch(1, 10, NOW), LeaderEpoch(3), NOW)
            .unwrap();
        log.close().await.unwrap();
        let (log, _) = PartitionLog::open(DirectBackend, &dir, LogConfig::default())
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), Offset(1));
        log.close().await.unwrap();
    });
}

#[test]
fn failed_fsync_poisons_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run_local(move || async move {
        prime_direct_io(tmp.path()).await.unwrap();
        let backend = FaultyBackend::new(DirectBackend);
        let faults = backend.faults();
        let (log, _) = PartitionLog::open(backend, &dir, LogConfig::default())
            .await
            .unwrap();
        log.append(make_batch(1, 10, NOW), LeaderEpoch(0), NOW)
            .unwrap();
        log.flush().await.unwrap();
        faults.arm(FaultConfig {
            fail_after_ops: Some(0),
            only_fdatasync: true,
            ..FaultConfig::default()
        });
        log.append(make_batch(1, 10, NOW), LeaderEpoch(0), NOW)
            .unwrap();
        assert!(matches!(log.flush().await, Err(LogError::Poisoned)));
        assert!(log.is_poisoned());
        assert_eq!(log.poison_cause().unwrap().op, "fdatasync");
        faults.disarm();
        assert!(matches!(
            log.append(make_batch(1, 10, NOW), LeaderEpoch(0), NOW),
            Err(AppendError::Poisoned)
        ));
        assert!(matches!(log.flush().await, Err(LogError::Poisoned)));
        assert!(matches!(log.close().await, Err(LogError::Poisoned)));
        assert_eq!(faults.injected(), 1);
    });
}

#[test]
fn torn_write_is_cut_on_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run_local(move || async move {
        prime_direct_io(tmp.path()).await.unwrap();
        let backend = FaultyBackend::new(DirectBackend);
        let faults = backend.faults();
        let (log, _) = PartitionLog::open(backend, &dir, LogConfig::default())
            .await
            .unwrap();
        log.append(make_batch(1, 3_000, NOW), LeaderEpoch(0), NOW)
            .unwrap();
        log.flush().await.unwrap();
        // The next write covers the rewritten tail page plus ~20 KB; only its first 8 KiB land.
        faults.arm(FaultConfig {
            fail_after_ops: Some(0),
            torn_write_bytes: Some(8_192),
            sticky: true,
            ..FaultConfig::default()
        });
        log.append(make_batch(4, 5_000, NOW), LeaderEpoch(0), NOW)
            .unwrap();
        assert!(log.flush().await.is_err());
        drop(log);
        let (log, report) = PartitionLog::open(DirectBackend, &dir, LogConfig::default())
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), Offset(1));
        assert_eq!(report.truncations.len(), 1, "{report:?}");
        assert!(report.found_damage());
        log.close().await.unwrap();
    });
}

#[test]
fn log_append_time_and_offset_for_timestamp() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run_local(move || async move {
        let config = LogConfig {
            index_interval_bytes: 0,
            hot_tail_bytes: 0,
            ..LogConfig::default()
        };
        let log = open(&dir, config).await;
        for base in [100, 200, 300] {
            let batch = BatchBuilder::new(TimestampMs(base))
                .record_at(TimestampMs(base), None, Some(b"a"))
                .record_at(TimestampMs(base + 50), None, Some(b"b"))
                .build();
            log.append(batch, LeaderEpoch(0), NOW).unwrap();
        }
        log.flush().await.unwrap();
        assert_eq!(
            log.offset_for_timestamp(TimestampMs(0)).await.unwrap(),
            Some((Offset(0), TimestampMs(100)))
        );
        assert_eq!(
            log.offset_for_timestamp(TimestampMs(120)).await.unwrap(),
            Some((Offset(1), TimestampMs(150)))
        );
        assert_eq!(
            log.offset_for_timestamp(TimestampMs(200)).await.unwrap(),
            Some((Offset(2), TimestampMs(200)))
        );
        assert_eq!(
            log.offset_for_timestamp(TimestampMs(351)).await.unwrap(),
            None
        );
        log.update_config(LogConfig {
            message_timestamp_type: TimestampType::LogAppendTime,
            ..LogConfig::default()
        });
        let info = log
            .append(make_batch(2, 10, TimestampMs(5)), LeaderEpoch(0), NOW)
            .unwrap();
        assert_eq!(info.log_append_time, Some(NOW));
        assert_eq!(info.max_timestamp, NOW);
        let stored = log.read(Offset(6), usize::MAX, Offset(8)).unwrap();
        let bytes = stored.chunks[0].load().await.unwrap();
        let summary = validate_batches(&bytes).unwrap()[0];
        assert!(summary.is_log_append_time());
        assert_eq!(summary.max_timestamp, NOW.0);
        assert_eq!(
            log.offset_for_timestamp(TimestampMs(400)).await.unwrap(),
            Some((Offset(6), NOW))
        );
        log.close().await.unwrap();
    });
}

#[test]
fn invalid_appends_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run_local(move || async move {
        let log = open(&dir, LogConfig::default()).await;
        let good = make_batch(1, 10, NOW);
        let mut bad = good.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let mut both = good.to_vec();
        both.extend_from_slice(&bad);
        assert!(matches!(
            log.append(Bytes::from(both), LeaderEpoch(0), NOW),
            Err(AppendError::CorruptBatch(_))
        ));
        assert_eq!(log.log_end_offset(), Offset(0));
        let mut old = good.to_vec();
        old[16] = 1;
        assert!(matches!(
            log.append(Bytes::from(old), LeaderEpoch(0), NOW),
            Err(AppendError::UnsupportedMagic(1))
        ));
        log.update_config(LogConfig {
            max_message_bytes: 50,
            ..LogConfig::default()
        });
        assert!(matches!(
            log.append(good, LeaderEpoch(0), NOW),
            Err(AppendError::BatchTooLarge { .. })
        ));
        assert_eq!(log.size_bytes(), 0);
        log.close().await.unwrap();
    });
}

#[test]
fn flush_policy_by_bytes_syncs_without_flush_calls() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run_local(move || async move {
        let config = LogConfig {
            flush_interval_bytes: Some(1),
            ..LogConfig::default()
        };
        let log = open(&dir, config).await;
        log.append(make_batch(1, 10, NOW), LeaderEpoch(0), NOW)
            .unwrap();
        for _ in 0..1_000 {
            if log.synced_offset() == Offset(1) {
                break;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(log.synced_offset(), Offset(1));
        log.close().await.unwrap();
    });
}

#[test]
fn flush_policy_by_time_syncs_without_flush_calls() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run_local(move || async move {
        let config = LogConfig {
            flush_interval_ms: Some(5),
            ..LogConfig::default()
        };
        let log = open(&dir, config).await;
        log.append(make_batch(1, 10, NOW), LeaderEpoch(0), NOW)
            .unwrap();
        for _ in 0..2_000 {
            if log.synced_offset() == Offset(1) {
                break;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(log.synced_offset(), Offset(1));
        log.close().await.unwrap();
    });
}

#[test]
fn delete_records_moves_log_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run_local(move || async move {
        let config = LogConfig {
            segment_bytes: 5_000,
            ..LogConfig::default()
        };
        let log = open(&dir, config.clone()).await;
        for _ in 0..10 {
            log.append(make_batch(2, 2_000, NOW), LeaderEpoch(0), NOW)
                .unwrap();
        }
        log.flush().await.unwrap();
        assert!(matches!(
            log.delete_records_before(Offset(5)).await,
            Err(LogError::InvalidOffset { .. })
        ));
        log.set_high_watermark(log.log_end_offset());
        let start = log.delete_records_before(Offset(9)).await.unwrap();
        assert_eq!(start, Offset(9));
        assert_eq!(log.log_start_offset(), Offset(9));
        assert!(matches!(
            log.read(Offset(8), 100, Offset(20)),
            Err(ReadError::OffsetOutOfRange { .. })
        ));
        // 9 is inside batch 8..10.
        assert_eq!(base_offsets(&read_all(&log, Offset(9)).await)[0], 8);
        assert!(log.segment_base_offsets()[0] <= Offset(9));
        log.close().await.unwrap();
        let (log, _) = PartitionLog::open(DirectBackend, &dir, config)
            .await
            .unwrap();
        assert_eq!(log.log_start_offset(), Offset(9));
        log.close().await.unwrap();
    });
}

#[test]
fn hot_tail_is_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run_local(move || async move {
        let config = LogConfig {
            hot_tail_bytes: 20_000,
            ..LogConfig::default()
        };
        let log = open(&dir, config).await;
        for _ in 0..50 {
            log.append(make_batch(1, 2_000, NOW), LeaderEpoch(0), NOW)
                .unwrap();
        }
        log.flush().await.unwrap();
        assert!(log.hot_tail_bytes() <= 20_000 + 2_100);
        let result = log.read(Offset(0), usize::MAX, Offset(50)).unwrap();
        assert!(matches!(result.chunks[0], Chunk::File { .. }));
        assert!(matches!(result.chunks.last().unwrap(), Chunk::Memory(_)));
        assert_eq!(base_offsets(&read_all(&log, Offset(0)).await).len(), 50);
        log.close().await.unwrap();
    });
}

/// A seeded random walk over append / flush / truncate / roll / reopen, checked against a
/// simple model after every step, with tiny coalesced writes so several are in flight and
/// truncations race with them.
///
/// Seeds 0..12 cover every config combination once; `VAART_SEED=n` runs just seed n.
#[test]
fn random_operations_match_a_model() {
    match std::env::var("VAART_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => random_operations(seed),
        None => (0..12).for_each(random_operations),
    }
}

fn random_operations(seed: u64) {
    use rand::{Rng, SeedableRng};

    fn check(bytes: &[u8], model: &[(i64, Vec<u8>)], from_index: usize) {
        if bytes.is_empty() {
            assert_eq!(model.len(), from_index);
            return;
        }
        let summaries = validate_batches(bytes).unwrap();
        assert_eq!(summaries.len(), model.len() - from_index);
        for (summary, (base, original)) in summaries.iter().zip(&model[from_index..]) {
            assert_eq!(summary.base_offset, *base);
            let stored = &bytes[summary.position..summary.position + summary.length];
            assert_eq!(&stored[16..], &original[16..]);
        }
    }

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run_local(move || async move {
        let pick =
            |choices: &[u64], salt: u64| choices[((seed / salt) % choices.len() as u64) as usize];
        let config = LogConfig {
            segment_bytes: pick(&[40_000, 10_000, 1 << 20], 1),
            write_coalesce_bytes: pick(&[8_192, 4_096, 1 << 20], 3) as usize,
            hot_tail_bytes: pick(&[10_000, 0, 8 << 20], 9) as usize,
            flush_interval_bytes: [None, Some(20_000)][(seed / 2 % 2) as usize],
            ..LogConfig::default()
        };

        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut log = open(&dir, config.clone()).await;
        let mut model: Vec<(i64, Vec<u8>)> = Vec::new();
        let mut next = 0i64;
        let verbose = std::env::var("VAART_VERBOSE").is_ok();
        for step in 0..400 {
            let action = rng.gen_range(0..100);
            if verbose {
                eprintln!("step {step} action {action} leo {next} {:?}", log);
            }
            match action {
                0..=69 => {
                    let records = rng.gen_range(1..5);
                    let value = rng.gen_range(1..6_000);
                    let batch = make_batch(records, value, NOW);
                    let info = log.append(batch.clone(), LeaderEpoch(1), NOW).unwrap();
                    assert_eq!(info.base_offset, Offset(next));
                    model.push((next, batch.to_vec()));
                    next += records as i64;
                }
                70..=74 => log.flush().await.unwrap(),
                75..=79 => {
                    log.written().await.unwrap();
                    let state = log.shared.state.borrow();
                    assert_eq!(state.writer.written_through, Offset(next), "step {step}");
                }
                80..=86 if !model.is_empty() => {
                    let keep = rng.gen_range(0..model.len());
                    let (base, batch) = &model[keep];
                    // Anywhere inside the batch (lastOffsetDelta's low byte is at 26).
                    let inside = rng.gen_range(0..=i64::from(batch[26]));
                    log.truncate_to(Offset(base + inside)).await.unwrap();
                    next = *base;
                    model.truncate(keep);
                }
                87..=90 => log.roll().unwrap(),
                91..=94 => {
                    log.close().await.unwrap();
                    let (reopened, report) =
                        PartitionLog::open(DirectBackend, &dir, config.clone())
                            .await
                            .unwrap();
                    assert!(!report.found_damage(), "step {step}: {report:?}");
                    log = reopened;
                }
                _ => {}
            }
            assert_eq!(log.log_end_offset(), Offset(next), "step {step}");
            if !model.is_empty() {
                let index = rng.gen_range(0..model.len());
                let bytes = read_all(&log, Offset(model[index].0)).await;
                check(&bytes, &model, index);
            }
        }
        log.close().await.unwrap();
        let (log, report) = PartitionLog::open(DirectBackend, &dir, config)
            .await
            .unwrap();
        assert!(!report.found_damage(), "{report:?}");
        check(&read_all(&log, Offset(0)).await, &model, 0);
        log.close().await.unwrap();
    });
}

#[test]
fn writer_stats_count_flushes_and_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("topic-0");
    run_local(move || async move {
        let log = open(&dir, LogConfig::default()).await;
        assert_eq!(log.writer_stats(), crate::WriterStats::default());
        log.append(make_batch(3, 100, NOW), LeaderEpoch(1), NOW)
            .unwrap();
        log.flush().await.unwrap();
        let stats = log.writer_stats();
        assert!(stats.flushes >= 1, "{stats:?}");
        assert!(stats.bytes_written >= 300, "{stats:?}");
        assert_eq!(
            stats.flush_latency_buckets.iter().sum::<u64>(),
            stats.flushes,
            "every flush lands in exactly one bucket"
        );
        log.close().await.unwrap();
    });
}

/// The active segment's file is allocated ahead of the writes (so that O_DIRECT appends do not
/// extend the file), is cut back to the log's length on close, and a file left longer by a
/// crash (allocated zeros past the data) recovers to exactly the data.
#[test]
fn active_segment_is_preallocated_and_cut_back_on_close_and_recovery() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("topic-0");
    let file = dir.join("00000000000000000000.log");
    run_local(move || async move {
        let log = open(&dir, LogConfig::default()).await;
        for _ in 0..10 {
            log.append(make_batch(3, 1_000, NOW), LeaderEpoch(1), NOW)
                .unwrap();
        }
        log.flush().await.unwrap();
        let logical = log.size_bytes();
        let on_disk = std::fs::metadata(&file).unwrap().len();
        assert!(
            on_disk > logical && on_disk >= 128 * 1024,
            "file {on_disk} bytes, log {logical} bytes: expected preallocation"
        );
        let before = read_all(&log, Offset(0)).await;
        log.close().await.unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().len(), logical);

        // As a crash would leave it: allocated zeros after the data.
        let handle = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        handle.set_len(logical + 4 * 1024 * 1024).unwrap();
        drop(handle);
        let log = open(&dir, LogConfig::default()).await;
        assert_eq!(log.log_end_offset(), Offset(30));
        assert_eq!(read_all(&log, Offset(0)).await, before);
        assert_eq!(std::fs::metadata(&file).unwrap().len(), logical);
        // And appends continue where the data ends.
        let next = log
            .append(make_batch(1, 10, NOW), LeaderEpoch(1), NOW)
            .unwrap();
        assert_eq!(next.base_offset, Offset(30));
        log.close().await.unwrap();
    });
}

/// A log of `batches` flushed batches of 16 records of 1,000 bytes, with a 64 KiB hot tail so
/// that reads of all but its end come from the disk.
async fn log_read_from_disk(dir: &Path, batches: usize) -> PartitionLog {
    let config = LogConfig {
        hot_tail_bytes: 64 * 1024,
        ..LogConfig::default()
    };
    let log = open(dir, config).await;
    for _ in 0..batches {
        log.append(make_batch(16, 1_000, NOW), LeaderEpoch(1), NOW)
            .unwrap();
    }
    log.flush().await.unwrap();
    log
}

/// Sequential reads of on-disk data (a consumer catching up) are served through read-ahead:
/// the bytes equal plain reads, read-ahead is actually held, and after `truncate_to` plus new
/// appends the reader gets the new bytes, never what was read ahead before the truncation.
#[test]
fn sequential_disk_reads_read_ahead_and_truncation_drops_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("topic-0");
    run_local(move || async move {
        let log = log_read_from_disk(&dir, 64).await;
        let everything = read_all(&log, Offset(0)).await;

        let mut from = Offset(0);
        let mut sequential = Vec::new();
        let mut held_read_ahead = false;
        let mut file_chunks = 0;
        while from < log.log_end_offset() {
            let result = log.read(from, 128 * 1024, log.log_end_offset()).unwrap();
            let mut piece = Vec::new();
            for chunk in &result.chunks {
                if matches!(chunk, Chunk::File { .. }) {
                    file_chunks += 1;
                }
                let bytes = chunk.load_sequential().await.unwrap();
                assert_eq!(bytes, chunk.load().await.unwrap());
                held_read_ahead |= crate::read_ahead::held_bytes() > 0;
                piece.extend_from_slice(&bytes);
            }
            let last_base = *base_offsets(&piece).last().unwrap();
            from = Offset(last_base + 16);
            sequential.extend_from_slice(&piece);
        }
        assert_eq!(sequential, everything);
        assert!(file_chunks > 1, "the reads must come from disk");
        assert!(held_read_ahead, "sequential disk reads must read ahead");

        // Read the first 128 KiB (read-ahead of the next range starts), then replace what
        // follows: truncate at the next batch and append different batches.
        let first = log
            .read(Offset(0), 128 * 1024, log.log_end_offset())
            .unwrap();
        let mut head = Vec::new();
        for chunk in &first.chunks {
            head.extend_from_slice(&chunk.load_sequential().await.unwrap());
        }
        let cut = Offset(*base_offsets(&head).last().unwrap() + 16);
        log.truncate_to(cut).await.unwrap();
        let later = TimestampMs(NOW.0 + 1_000);
        for _ in 0..16 {
            log.append(make_batch(16, 1_000, later), LeaderEpoch(1), later)
                .unwrap();
        }
        log.flush().await.unwrap();
        let expected = read_all(&log, cut).await;
        let mut after = Vec::new();
        let mut from = cut;
        while from < log.log_end_offset() {
            let result = log.read(from, 128 * 1024, log.log_end_offset()).unwrap();
            let mut piece = Vec::new();
            for chunk in &result.chunks {
                piece.extend_from_slice(&chunk.load_sequential().await.unwrap());
            }
            from = Offset(*base_offsets(&piece).last().unwrap() + 16);
            after.extend_from_slice(&piece);
        }
        assert_eq!(after, expected);
        log.close().await.unwrap();
    });
}

/// A consumer's reads rarely repeat the last length (fetches return whole batches up to a
/// byte limit): with reads of changing lengths, only the first goes to the disk; every later
/// byte comes from the blocks read ahead, a block used in part serving the next read too.
#[test]
fn sequential_reads_of_changing_lengths_all_come_from_read_ahead() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("topic-0");
    run_local(move || async move {
        let log = log_read_from_disk(&dir, 256).await;
        let everything = read_all(&log, Offset(0)).await;
        let before = crate::read_ahead::stats();

        let mut from = Offset(0);
        let mut sequential = Vec::new();
        let mut first_read = None;
        // Each at most a block (1 MiB) longer than the one before (the read-ahead window).
        let limits = [100 * 1024, 180 * 1024, 150 * 1024, 190 * 1024];
        let mut round = 0;
        while sequential.len() + 400 * 1024 < everything.len() {
            let limit = limits[round % limits.len()];
            round += 1;
            let result = log.read(from, limit, log.log_end_offset()).unwrap();
            let mut piece = Vec::new();
            for chunk in &result.chunks {
                assert!(
                    matches!(chunk, Chunk::File { .. }),
                    "reads must come from disk"
                );
                piece.extend_from_slice(&chunk.load_sequential().await.unwrap());
            }
            first_read.get_or_insert(piece.len() as u64);
            from = Offset(*base_offsets(&piece).last().unwrap() + 16);
            sequential.extend_from_slice(&piece);
        }
        assert_eq!(sequential[..], everything[..sequential.len()]);
        let after = crate::read_ahead::stats();
        assert_eq!(
            after.miss_bytes - before.miss_bytes,
            first_read.unwrap(),
            "only the first read may go to the disk"
        );
        assert_eq!(
            after.hit_bytes - before.hit_bytes,
            sequential.len() as u64 - first_read.unwrap()
        );
        log.close().await.unwrap();
    });
}

/// Three batches (large, small, large) with records at distinct timestamps, framed like a
/// produce request: other bytes before and after, as the request's other fields would be.
fn shared_request_frame() -> (Bytes, std::ops::Range<usize>) {
    let large = |base: i64| {
        let value = vec![7u8; 3_000];
        BatchBuilder::new(TimestampMs(base))
            .record_at(TimestampMs(base), None, Some(&value))
            .record_at(TimestampMs(base + 10), Some(b"k"), Some(&value))
            .record_at(TimestampMs(base + 20), None, Some(b"last"))
            .build()
    };
    let small = BatchBuilder::new(TimestampMs(2_000))
        .record_at(TimestampMs(2_000), None, Some(b"small"))
        .build();
    let batches = [large(1_000), small, large(3_000)];
    assert!(batches[0].len() > super::INLINE_BATCH_BYTES_MAX);
    assert!(batches[1].len() <= super::INLINE_BATCH_BYTES_MAX);
    let mut frame = vec![0xAB; 100];
    let start = frame.len();
    for batch in &batches {
        frame.extend_from_slice(batch);
    }
    let end = frame.len();
    frame.extend_from_slice(&[0xCD; 50]);
    (Bytes::from(frame), start..end)
}

async fn read_chunks(log: &PartitionLog, from: Offset) -> (Vec<Chunk>, Vec<u8>) {
    let result = log.read(from, usize::MAX, log.log_end_offset()).unwrap();
    let mut out = Vec::new();
    for chunk in &result.chunks {
        out.extend_from_slice(&chunk.load().await.unwrap());
    }
    assert_eq!(out.len(), result.total_bytes);
    let contiguous = result.load_contiguous().await.unwrap();
    let joined: Vec<u8> = contiguous.iter().flat_map(|b| b.iter().copied()).collect();
    assert_eq!(joined, out);
    for buffer in &contiguous {
        validate_batches(buffer).expect("each contiguous buffer holds whole valid batches");
    }
    (result.chunks, out)
}

/// An append from a shared request buffer keeps the records of large batches in that buffer
/// (no copy), and what is read back (hot tail, disk after eviction, disk after reopen) is the
/// batch patched exactly as an in-place patch would have done, CRC included under
/// LogAppendTime.
#[test]
fn shared_request_buffer_is_stored_patched_without_copying_records() {
    for timestamp_type in [TimestampType::CreateTime, TimestampType::LogAppendTime] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        run_local(move || async move {
            let config = LogConfig {
                message_timestamp_type: timestamp_type,
                ..LogConfig::default()
            };
            let log = open(&dir, config.clone()).await;
            // Something before, so that offsets and positions are not zero.
            // Earlier than every timestamp looked up below, also as an append time.
            let early = TimestampMs(500);
            log.append(make_batch(2, 100, early), LeaderEpoch(1), early)
                .unwrap();
            let (frame, range) = shared_request_frame();
            let records = frame.slice(range.clone());
            let other_field = frame.slice(..range.start);

            // The expected stored bytes: the in-place patch of a private copy.
            let mut expected = records.to_vec();
            let summaries = validate_batches(&expected).unwrap();
            let log_append_time = (timestamp_type == TimestampType::LogAppendTime).then_some(NOW);
            let end = crate::batch::assign_offsets(
                &mut expected,
                &summaries,
                Offset(2),
                LeaderEpoch(3),
                log_append_time,
            )
            .unwrap();
            assert_eq!(end, Offset(9));
            if log_append_time.is_some() {
                assert_ne!(&expected[17..21], &records[17..21], "the CRC changed");
            }

            let info = log.append(records.clone(), LeaderEpoch(3), NOW).unwrap();
            assert_eq!((info.base_offset, info.last_offset), (Offset(2), Offset(8)));
            // The request buffer itself is untouched.
            assert_eq!(&frame[range.clone()], &records[..]);
            assert_eq!(other_field.len(), 100);

            // Hot tail: header and records of each large batch are separate chunks, the
            // records still in the request buffer.
            let (chunks, stored) = read_chunks(&log, Offset(2)).await;
            assert_eq!(stored, expected);
            assert!(chunks.iter().all(|chunk| matches!(chunk, Chunk::Memory(_))));
            assert!(chunks.len() >= 4, "{} chunks", chunks.len());
            let frame_range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
            let in_frame = chunks
                .iter()
                .filter(|chunk| match chunk {
                    Chunk::Memory(bytes) => frame_range.contains(&(bytes.as_ptr() as usize)),
                    Chunk::File { .. } => false,
                })
                .count();
            assert_eq!(in_frame, 2, "the two large batches' records are not copied");
            let whole = validate_batches(&stored).unwrap();
            assert_eq!(whole.len(), 3);
            assert_eq!(
                whole.iter().map(|s| s.base_offset).collect::<Vec<_>>(),
                vec![2, 5, 6]
            );
            // Reads starting inside the log cut chunks at batch boundaries.
            let (_, from_small) = read_chunks(&log, Offset(5)).await;
            assert_eq!(from_small, expected[whole[1].position..]);
            let expected_lookup = match timestamp_type {
                // Second record of the first large batch.
                TimestampType::CreateTime => Some((Offset(3), TimestampMs(1_010))),
                TimestampType::LogAppendTime => Some((Offset(2), NOW)),
            };
            let target = match timestamp_type {
                TimestampType::CreateTime => TimestampMs(1_005),
                TimestampType::LogAppendTime => TimestampMs(NOW.0 - 1),
            };
            assert_eq!(
                log.offset_for_timestamp(target).await.unwrap(),
                expected_lookup
            );

            // Written and evicted: the same bytes from the segment file.
            log.flush().await.unwrap();
            log.update_config(LogConfig {
                hot_tail_bytes: 0,
                ..config.clone()
            });
            assert_eq!(log.hot_tail_bytes(), 0);
            let (chunks, on_disk) = read_chunks(&log, Offset(2)).await;
            assert!(chunks
                .iter()
                .all(|chunk| matches!(chunk, Chunk::File { .. })));
            assert_eq!(on_disk, expected);
            assert_eq!(
                log.offset_for_timestamp(target).await.unwrap(),
                expected_lookup
            );
            log.close().await.unwrap();
            drop(frame);

            let (log, report) = PartitionLog::open(DirectBackend, &dir, config)
                .await
                .unwrap();
            assert!(report.is_clean(), "{report:?}");
            assert_eq!(read_chunks(&log, Offset(2)).await.1, expected);
            log.close().await.unwrap();
        });
    }
}

/// Many appends of shared buffers with large batches interleaved with small ones, written
/// through the aligned write buffers in small pieces and read back across entry and part
/// boundaries at every batch.
#[test]
fn shared_appends_read_back_at_every_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run_local(move || async move {
        let config = LogConfig {
            write_coalesce_bytes: 4_096,
            hot_tail_bytes: 30_000,
            segment_bytes: 60_000,
            ..LogConfig::default()
        };
        let log = open(&dir, config.clone()).await;
        let mut expected = Vec::new();
        let mut starts = Vec::new();
        let mut next = 0i64;
        for round in 0..40usize {
            let mut frame = vec![1u8; 10];
            let mut batch_count = 0;
            for value in [round * 97 % 3_000, 5, 1_500 + round] {
                frame.extend_from_slice(&make_batch(2, value, NOW));
                batch_count += 1;
            }
            let frame = Bytes::from(frame);
            let records = frame.slice(10..);
            let mut patched = records.to_vec();
            let summaries = validate_batches(&patched).unwrap();
            crate::batch::assign_offsets(
                &mut patched,
                &summaries,
                Offset(next),
                LeaderEpoch(1),
                None,
            )
            .unwrap();
            for (index, summary) in summaries.iter().enumerate() {
                starts.push((next + 2 * index as i64, expected.len() + summary.position));
            }
            log.append(records, LeaderEpoch(1), NOW).unwrap();
            expected.extend_from_slice(&patched);
            next += 2 * batch_count as i64;
            if round % 7 == 3 {
                log.flush().await.unwrap();
            }
            // `frame` (and its other slice) dropped here; the log keeps what it needs.
        }
        for (offset, position) in &starts {
            let (_, bytes) = read_chunks(&log, Offset(*offset)).await;
            assert_eq!(bytes, expected[*position..], "from offset {offset}");
        }
        log.close().await.unwrap();
        let (log, report) = PartitionLog::open(DirectBackend, &dir, config)
            .await
            .unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(read_chunks(&log, Offset(0)).await.1, expected);
        log.close().await.unwrap();
    });
}

/// `TailBytes` slices, copies and truncates across part boundaries like one buffer.
#[test]
fn tail_bytes_behave_like_one_buffer() {
    let whole: Vec<u8> = (0..200u8).collect();
    let mut tail = super::TailBytes::default();
    let mut at = 0;
    for len in [1, 60, 0, 39, 100] {
        tail.push(Bytes::copy_from_slice(&whole[at..at + len]));
        at += len;
    }
    assert_eq!(tail.len(), 200);
    assert_eq!(tail.part_count(), 4);
    for from in 0..=200 {
        for to in from..=200 {
            let joined: Vec<u8> = tail.slices(from, to).flat_map(|b| b.to_vec()).collect();
            assert_eq!(joined, whole[from..to], "{from}..{to}");
            assert!(tail.slices(from, to).all(|b| !b.is_empty()));
            let mut target = vec![0u8; to - from];
            assert!(tail.copy_to(from, &mut target));
            assert_eq!(target, whole[from..to]);
        }
    }
    assert!(!tail.copy_to(150, &mut [0u8; 51]));
    for len in [200, 199, 100, 61, 60, 1, 0] {
        let mut cut = tail.clone();
        cut.truncate(len);
        assert_eq!(cut.len(), len);
        let joined: Vec<u8> = cut.slices(0, usize::MAX).flat_map(|b| b.to_vec()).collect();
        assert_eq!(joined, whole[..len]);
    }
}

/// An entry that still borrows a request buffer after `TAIL_BORROW_MS_MAX` gets bytes of its
/// own once it is written, so a quiet partition does not pin a whole request's memory; an
/// entry still waiting for its write is not copied, and the writer is made to write its
/// partial last page (which it otherwise keeps back until more data comes).
#[test]
fn borrowed_request_buffers_are_released() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run_local(move || async move {
        let log = open(&dir, LogConfig::default()).await;
        let (frame, range) = shared_request_frame();
        let records = frame.slice(range.clone());
        log.append(records.clone(), LeaderEpoch(0), NOW).unwrap();
        drop(records);
        let later = std::time::Instant::now()
            + std::time::Duration::from_millis(super::TAIL_BORROW_MS_MAX + 1);
        // No await since the append: the writer has not run, so the entry is unwritten.
        let next = log.shared.state.borrow_mut().release_borrowed_tail(later);
        assert!(next.is_some(), "an unwritten entry is checked again later");
        assert!(!frame.is_unique(), "an unwritten entry keeps borrowing");
        assert!(log.shared.state.borrow().writer.partial_wanted);
        // The writer now writes the partial last page without waiting for more data (no
        // flush asked): wait until the entry is on disk.
        log.shared.wake_writer.notify_all();
        let mut polls = 0;
        while {
            let state = log.shared.state.borrow();
            state.writer.written_through < state.log_end_offset
        } {
            polls += 1;
            assert!(polls < 10_000, "the writer never wrote the partial page");
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        let (_, before) = read_chunks(&log, Offset(0)).await;
        let much_later = later + std::time::Duration::from_millis(super::TAIL_BORROW_MS_MAX + 1);
        let next = log
            .shared
            .state
            .borrow_mut()
            .release_borrowed_tail(much_later);
        assert_eq!(next, None);
        assert!(frame.is_unique(), "the tail released the request buffer");
        let (chunks, after) = read_chunks(&log, Offset(0)).await;
        assert_eq!(after, before);
        assert_eq!(chunks.len(), 1);
        log.close().await.unwrap();
    });
}

/// Waits (polling, no time limit assumed) until the writer has written through `offset`.
async fn wait_written_through(log: &PartitionLog, offset: Offset) {
    let mut polls = 0;
    while log.shared.state.borrow().writer.written_through < offset {
        polls += 1;
        assert!(polls < 10_000, "the writer never wrote through {offset:?}");
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// A write of less than half of `write_coalesce_bytes` waits `write_linger_us` for more
/// appends; enough data, or a flush, is written at once.
#[test]
fn small_writes_linger_until_enough_data_or_a_flush() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run_local(move || async move {
        let config = LogConfig {
            write_coalesce_bytes: 64 << 10,
            // An hour: in this test only size and flushes may start a write.
            write_linger_us: 3_600_000_000,
            ..LogConfig::default()
        };
        let log = open(&dir, config).await;
        // ~10 KB: two whole pages ready, well under the 32 KiB that starts a write.
        let first = log
            .append(make_batch(10, 1000, NOW), LeaderEpoch(0), NOW)
            .unwrap();
        // Let the writer run several times over.
        for _ in 0..20 {
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(log.writer_stats().bytes_written, 0, "a small write lingers");
        assert_eq!(log.shared.state.borrow().writer.written_through, Offset(0));

        // ~30 KB more: over half of the coalesce size, written without a flush (whole pages).
        let second = log
            .append(make_batch(30, 1000, NOW), LeaderEpoch(0), NOW)
            .unwrap();
        wait_written_through(&log, Offset(first.last_offset.0 + 1)).await;
        assert!(log.writer_stats().bytes_written >= 32 << 10);

        // A flush never waits, partial page included.
        log.append(make_batch(1, 100, NOW), LeaderEpoch(0), NOW)
            .unwrap();
        log.flush().await.unwrap();
        let (written_through, log_end_offset) = {
            let state = log.shared.state.borrow();
            (state.writer.written_through, state.log_end_offset)
        };
        assert_eq!(written_through, log_end_offset);
        assert!(log_end_offset > Offset(second.last_offset.0 + 1));
        log.close().await.unwrap();
        let reopened = open(&dir, LogConfig::default()).await;
        assert_eq!(
            base_offsets(&read_all(&reopened, Offset(0)).await),
            [0, 10, 40]
        );
        reopened.close().await.unwrap();
    });
}

/// `written` returns once the data is in the segment file: it does not wait for the write
/// linger (nor for an fdatasync).
#[test]
fn written_forces_the_write_without_a_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run_local(move || async move {
        let config = LogConfig {
            write_linger_us: 3_600_000_000,
            ..LogConfig::default()
        };
        let log = open(&dir, config).await;
        log.append(make_batch(3, 100, NOW), LeaderEpoch(0), NOW)
            .unwrap();
        log.written().await.unwrap();
        let (written_through, synced, log_end_offset) = {
            let state = log.shared.state.borrow();
            (
                state.writer.written_through,
                state.writer.synced_offset,
                state.log_end_offset,
            )
        };
        assert_eq!(
            written_through, log_end_offset,
            "partial page written at once"
        );
        assert_eq!(synced, Offset(0), "no fdatasync was asked for");
        assert_eq!(log.writer_stats().flushes, 0);
        log.close().await.unwrap();
    });
}

/// Everything recovery rebuilds, to compare an open from the clean-shutdown record with a scan.
fn recovered_state(log: &PartitionLog) -> String {
    let state = log.shared.state.borrow();
    let segments: Vec<String> = state
        .segments
        .iter()
        .map(|segment| {
            format!(
                "base {:?} len {} next {:?} max_ts {:?} since {} index {:?} time {:?} last {:?} written {} phase {:?}",
                segment.base_offset,
                segment.len,
                segment.next_offset,
                segment.max_timestamp,
                segment.bytes_since_time_entry,
                segment.index.entries(),
                segment.time_index.entries(),
                segment.batch_last_offsets,
                segment.written,
                segment.phase,
            )
        })
        .collect();
    format!(
        "start {:?} end {:?} hw {:?} epochs {:?}\n{}",
        state.log_start_offset,
        state.log_end_offset,
        state.high_watermark,
        state.epochs.entries(),
        segments.join("\n")
    )
}

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 16 * 1024,
        index_interval_bytes: 1024,
        ..LogConfig::default()
    }
}

/// A change made to a closed log's files: (log dir, `.log` files, `.index` files).
type FileChange = fn(&Path, &[std::path::PathBuf], &[std::path::PathBuf]);

/// Appends batches over several segments, two leader epochs and rising timestamps, then closes.
async fn write_and_close(dir: &Path) {
    let log = open(dir, small_segments()).await;
    for index in 0..40i64 {
        let epoch = if index < 25 {
            LeaderEpoch(1)
        } else {
            LeaderEpoch(3)
        };
        let at = TimestampMs(NOW.0 + index * 10);
        log.append(make_batch(3, 400 + (index as usize % 7), at), epoch, at)
            .unwrap();
    }
    log.close().await.unwrap();
}

#[test]
fn clean_shutdown_record_opens_the_log_as_the_scan_does() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run_local(move || async move {
        write_and_close(&dir).await;
        let record = dir.join(crate::CLEAN_SHUTDOWN_FILE);
        assert!(record.exists(), "a clean close leaves the record");

        let (log, report) = PartitionLog::open(DirectBackend, &dir, small_segments())
            .await
            .unwrap();
        assert!(report.from_clean_shutdown, "{report:?}");
        assert!(report.is_clean(), "{report:?}");
        assert!(report.segments > 3, "several segments: {report:?}");
        assert!(
            !record.exists(),
            "the open removes the record before anything changes"
        );
        let from_record = recovered_state(&log);
        let bytes = read_all(&log, Offset(0)).await;
        assert_eq!(base_offsets(&bytes).len(), 40);
        log.close().await.unwrap();

        // The same log, scanned: without the record (as after a crash).
        std::fs::remove_file(&record).unwrap();
        let (log, report) = PartitionLog::open(DirectBackend, &dir, small_segments())
            .await
            .unwrap();
        assert!(!report.from_clean_shutdown, "{report:?}");
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(recovered_state(&log), from_record);
        assert_eq!(read_all(&log, Offset(0)).await, bytes);

        // A log opened from the record takes appends and closes with a new record.
        let info = log
            .append(make_batch(2, 100, NOW), LeaderEpoch(4), NOW)
            .unwrap();
        assert_eq!(info.base_offset, Offset(120));
        log.close().await.unwrap();
        let (log, report) = PartitionLog::open(DirectBackend, &dir, small_segments())
            .await
            .unwrap();
        assert!(report.from_clean_shutdown, "{report:?}");
        assert_eq!(log.log_end_offset(), Offset(122));
        assert_eq!(
            log.end_offset_for_epoch(LeaderEpoch(3)),
            Some((LeaderEpoch(3), Offset(120)))
        );
        log.close().await.unwrap();
    });
}

#[test]
fn a_crash_after_an_open_from_the_record_scans_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run_local(move || async move {
        write_and_close(&dir).await;
        let log = open(&dir, small_segments()).await;
        log.append(make_batch(2, 100, NOW), LeaderEpoch(3), NOW)
            .unwrap();
        log.flush().await.unwrap();
        drop(log); // killed: no close, no record
        let (log, report) = PartitionLog::open(DirectBackend, &dir, small_segments())
            .await
            .unwrap();
        assert!(!report.from_clean_shutdown, "{report:?}");
        assert_eq!(log.log_end_offset(), Offset(122));
        log.close().await.unwrap();
    });
}

#[test]
fn clean_shutdown_record_is_not_used_when_the_files_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run_local(move || async move {
        // Changes made behind the record's back, each found, each followed by a scan.
        let changes: [(&str, FileChange); 4] = [
            ("a segment grew", |_, logs, _| {
                let mut bytes = std::fs::read(&logs[1]).unwrap();
                bytes.extend_from_slice(&[0u8; 512]);
                std::fs::write(&logs[1], bytes).unwrap();
            }),
            ("a segment went missing", |_, logs, _| {
                std::fs::remove_file(logs.last().unwrap()).unwrap();
            }),
            ("an index changed", |_, _, indexes| {
                let mut bytes = std::fs::read(&indexes[0]).unwrap();
                bytes.truncate(bytes.len() - 8);
                std::fs::write(&indexes[0], bytes).unwrap();
            }),
            ("the record is damaged", |dir, _, _| {
                let path = dir.join(crate::CLEAN_SHUTDOWN_FILE);
                let mut bytes = std::fs::read(&path).unwrap();
                bytes[12] ^= 1;
                std::fs::write(&path, bytes).unwrap();
            }),
        ];
        for (what, change) in changes {
            let _ = std::fs::remove_dir_all(&dir);
            write_and_close(&dir).await;
            let logs = segment_files(&dir, "log");
            let indexes = segment_files(&dir, "index");
            change(&dir, &logs, &indexes);
            let (log, report) = PartitionLog::open(DirectBackend, &dir, small_segments())
                .await
                .unwrap();
            assert!(!report.from_clean_shutdown, "{what}: {report:?}");
            assert!(
                !dir.join(crate::CLEAN_SHUTDOWN_FILE).exists(),
                "{what}: the record is gone"
            );
            assert!(log.log_end_offset() > Offset(0), "{what}");
            let bytes = read_all(&log, log.log_start_offset()).await;
            assert_eq!(
                validate_batches(&bytes).unwrap().len() as i64 * 3,
                log.log_end_offset().0 - log.log_start_offset().0,
                "{what}: the scanned log reads back whole"
            );
            log.close().await.unwrap();
        }
    });
}
