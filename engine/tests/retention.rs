//! Retention and roll: time- and size-based deletion removes whole old segments only, never the
//! active one and never data at or above the high watermark; the log start offset moves to the
//! first remaining segment and survives a reopen; segment.ms rolls the active segment.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use vaart_engine::{
    prime_direct_io,
    testing::{make_batch, run_local},
    DirectBackend, LeaderEpoch, LogConfig, Offset, PartitionLog, ReadError, TimestampMs,
};

const NOW: TimestampMs = TimestampMs(1_700_000_000_000);
const HOUR_MS: i64 = 3_600_000;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 8 * 1024,
        retention_ms: HOUR_MS,
        ..LogConfig::default()
    }
}

async fn open(dir: &Path, config: LogConfig) -> PartitionLog {
    prime_direct_io(dir.parent().unwrap()).await.unwrap();
    PartitionLog::open(DirectBackend, dir, config)
        .await
        .unwrap()
        .0
}

/// Appends `count` batches of ~2 KB (2 records each) with the given record timestamp.
fn fill(log: &PartitionLog, count: usize, timestamp: TimestampMs) {
    for _ in 0..count {
        log.append(make_batch(2, 1_000, timestamp), LeaderEpoch(0), NOW)
            .unwrap();
    }
}

fn log_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .and_then(|e| e.to_str())
                == Some("log")
        })
        .count()
}

#[test]
fn time_retention_deletes_only_whole_expired_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run_local(move || async move {
        let log = open(&dir, config()).await;
        fill(&log, 12, TimestampMs(NOW.0 - 3 * HOUR_MS));
        log.roll().unwrap();
        let fresh_start = log.log_end_offset();
        fill(&log, 12, NOW);
        log.set_high_watermark(log.log_end_offset());
        log.flush().await.unwrap();
        let bases = log.segment_base_offsets();
        assert!(bases.len() >= 4, "{bases:?}");
        let expired: Vec<Offset> = bases
            .iter()
            .copied()
            .filter(|&base| base < fresh_start)
            .collect();

        let report = log.enforce_retention(NOW).await.unwrap();
        assert_eq!(report.deleted_base_offsets, expired);
        assert_eq!(report.deleted_segments, expired.len());
        assert!(!report.rolled);
        // Whole segments only: the log now starts exactly at the first fresh segment.
        assert_eq!(log.log_start_offset(), fresh_start);
        assert_eq!(report.log_start_offset, fresh_start);
        assert_eq!(log.segment_base_offsets()[0], fresh_start);
        assert_eq!(log_files(&dir), log.segment_count());
        assert!(matches!(
            log.read(Offset(0), 1, log.log_end_offset()),
            Err(ReadError::OffsetOutOfRange { .. })
        ));
        let result = log
            .read(fresh_start, usize::MAX, log.log_end_offset())
            .unwrap();
        assert!(result.total_bytes > 0);

        // Nothing more to do a second time.
        let again = log.enforce_retention(NOW).await.unwrap();
        assert_eq!(again.deleted_segments, 0);
        log.close().await.unwrap();

        let log = open(&dir, config()).await;
        assert_eq!(log.log_start_offset(), fresh_start);
        log.close().await.unwrap();
    });
}

#[test]
fn the_active_segment_is_never_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run_local(move || async move {
        let log = open(&dir, config()).await;
        fill(&log, 20, TimestampMs(NOW.0 - 10 * HOUR_MS));
        log.set_high_watermark(log.log_end_offset());
        let active_base = *log.segment_base_offsets().last().unwrap();
        let report = log.enforce_retention(NOW).await.unwrap();
        assert!(report.deleted_segments > 0);
        // Everything is expired, yet the active segment and its data stay.
        assert_eq!(log.segment_base_offsets(), vec![active_base]);
        assert_eq!(log.log_start_offset(), active_base);
        assert!(log.size_bytes() > 0);
        let result = log
            .read(active_base, usize::MAX, log.log_end_offset())
            .unwrap();
        assert_eq!(result.total_bytes as u64, log.size_bytes());

        // Even with retention.bytes = 0.
        log.update_config(LogConfig {
            retention_bytes: 0,
            ..config()
        });
        let report = log.enforce_retention(NOW).await.unwrap();
        assert_eq!(report.deleted_segments, 0);
        assert_eq!(log.segment_count(), 1);
        log.close().await.unwrap();
    });
}

#[test]
fn size_retention_keeps_the_newest_segments_within_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run_local(move || async move {
        let limit: u64 = 20 * 1024;
        let config = LogConfig {
            retention_ms: -1,
            retention_bytes: limit as i64,
            ..config()
        };
        let log = open(&dir, config).await;
        fill(&log, 40, NOW);
        log.set_high_watermark(log.log_end_offset());
        let before = log.size_bytes();
        assert!(before > 3 * limit);
        let report = log.enforce_retention(NOW).await.unwrap();
        assert!(report.deleted_segments > 0);
        let after = log.size_bytes();
        assert_eq!(before - after, report.deleted_bytes);
        // Kafka's rule: delete the oldest segment while the rest still reach the limit.
        assert!(after >= limit, "{after} < {limit}");
        // Without the first remaining segment the log would be below the limit.
        let second = log.segment_base_offsets()[1];
        let rest = log
            .read(second, usize::MAX, log.log_end_offset())
            .unwrap()
            .total_bytes as u64;
        assert!(rest < limit, "{rest} >= {limit}");
        assert_eq!(log.log_start_offset(), log.segment_base_offsets()[0]);
        assert_eq!(log_files(&dir), log.segment_count());
        log.close().await.unwrap();
    });
}

#[test]
fn retention_stops_at_the_high_watermark() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run_local(move || async move {
        let log = open(&dir, config()).await;
        fill(&log, 20, TimestampMs(NOW.0 - 10 * HOUR_MS));
        let bases = log.segment_base_offsets();
        assert!(bases.len() >= 4);
        // HW inside the third segment: only the first two segments lie entirely below it.
        log.set_high_watermark(Offset(bases[2].0 + 1));
        let report = log.enforce_retention(NOW).await.unwrap();
        assert_eq!(report.deleted_base_offsets, bases[..2].to_vec());
        assert_eq!(log.log_start_offset(), bases[2]);
        log.close().await.unwrap();
    });
}

#[test]
fn unlimited_retention_deletes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run_local(move || async move {
        let config = LogConfig {
            retention_ms: -1,
            retention_bytes: -1,
            ..config()
        };
        let log = open(&dir, config).await;
        fill(&log, 20, TimestampMs(0));
        log.set_high_watermark(log.log_end_offset());
        let segments = log.segment_count();
        let report = log.enforce_retention(NOW).await.unwrap();
        assert_eq!(report.deleted_segments, 0);
        assert_eq!(log.segment_count(), segments);
        assert_eq!(log.log_start_offset(), Offset(0));
        log.close().await.unwrap();
    });
}

#[test]
fn segment_ms_rolls_the_active_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    run_local(move || async move {
        let config = LogConfig {
            segment_ms: 60_000,
            ..LogConfig::default()
        };
        let log = open(&dir, config).await;
        log.append(make_batch(1, 10, NOW), LeaderEpoch(0), NOW)
            .unwrap();
        let report = log.enforce_retention(NOW).await.unwrap();
        assert!(!report.rolled);
        assert_eq!(log.segment_count(), 1);
        let later = TimestampMs(NOW.0 + 60_000);
        let report = log.enforce_retention(later).await.unwrap();
        assert!(report.rolled);
        assert_eq!(log.segment_base_offsets(), vec![Offset(0), Offset(1)]);
        // An empty active segment is not rolled again.
        let report = log
            .enforce_retention(TimestampMs(later.0 + 120_000))
            .await
            .unwrap();
        assert!(!report.rolled);
        // Appends also roll by age.
        log.append(make_batch(1, 10, later), LeaderEpoch(0), later)
            .unwrap();
        let much_later = TimestampMs(later.0 + 61_000);
        log.append(make_batch(1, 10, much_later), LeaderEpoch(0), much_later)
            .unwrap();
        assert_eq!(
            log.segment_base_offsets(),
            vec![Offset(0), Offset(1), Offset(2)]
        );
        log.close().await.unwrap();
        let log = open(&dir, LogConfig::default()).await;
        assert_eq!(log.log_end_offset(), Offset(3));
        assert_eq!(log.segment_count(), 3);
        log.close().await.unwrap();
    });
}
