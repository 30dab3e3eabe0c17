//! Corruption: damaged segment data and damaged index files are found on open. The reopened log
//! keeps everything before the damage byte-exact, cuts the rest, and says so in its
//! `RecoveryReport`; missing or damaged indexes are rebuilt.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use vaart_engine::{
    index::OffsetIndex,
    prime_direct_io,
    testing::{make_batch, run_local, segment_files},
    validate_batches, DeleteReason, DirectBackend, LeaderEpoch, LogConfig, Offset, PartitionLog,
    RecoveryReport, TimestampMs, TruncationReason, CLEAN_SHUTDOWN_FILE,
};

const NOW: TimestampMs = TimestampMs(1_700_000_000_000);

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 16 * 1024,
        index_interval_bytes: 1024,
        ..LogConfig::default()
    }
}

/// Builds a log of `batches` batches (3 records, ~1.5 KB each) over several segments, written
/// in full but without its clean-shutdown record, as a broker killed after writing leaves it:
/// the next open scans every batch. (A record vouches for the files as the close left them;
/// see `clean_shutdown_record_*` in the log tests.)
fn build_log(dir: &Path, batches: usize) {
    let dir = dir.to_path_buf();
    run_local(move || async move {
        prime_direct_io(dir.parent().unwrap()).await.unwrap();
        let (log, _) = PartitionLog::open(DirectBackend, &dir, config())
            .await
            .unwrap();
        for index in 0..batches {
            log.append(make_batch(3, 400 + index % 7, NOW), LeaderEpoch(1), NOW)
                .unwrap();
        }
        log.close().await.unwrap();
        std::fs::remove_file(dir.join(CLEAN_SHUTDOWN_FILE)).unwrap();
    });
}

/// Reopens the log and returns its recovery report and all bytes from the log start; leaves
/// it closed without its clean-shutdown record, like [`build_log`].
fn reopen(dir: &Path) -> (RecoveryReport, Vec<u8>, Offset) {
    let dir = dir.to_path_buf();
    run_local(move || async move {
        prime_direct_io(dir.parent().unwrap()).await.unwrap();
        let (log, report) = PartitionLog::open(DirectBackend, &dir, config())
            .await
            .unwrap();
        let end = log.log_end_offset();
        let mut bytes = Vec::new();
        let result = log.read(log.log_start_offset(), usize::MAX, end).unwrap();
        for chunk in &result.chunks {
            bytes.extend_from_slice(&chunk.load().await.unwrap());
        }
        // The log stays usable: append, close.
        let info = log
            .append(make_batch(1, 10, NOW), LeaderEpoch(2), NOW)
            .unwrap();
        assert_eq!(info.base_offset, end);
        log.truncate_to(end).await.unwrap();
        log.close().await.unwrap();
        std::fs::remove_file(dir.join(CLEAN_SHUTDOWN_FILE)).unwrap();
        (report, bytes, end)
    })
}

/// (position, base offset, length) of every batch in a segment file.
fn batches_of(path: &Path) -> Vec<(usize, i64, usize)> {
    let bytes = std::fs::read(path).unwrap();
    validate_batches(&bytes)
        .unwrap()
        .iter()
        .map(|summary| (summary.position, summary.base_offset, summary.length))
        .collect()
}

fn flip(path: &Path, position: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[position] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    original: Vec<u8>,
    end: Offset,
}

fn fixture(batches: usize) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("topic-0");
    build_log(&dir, batches);
    let (report, original, end) = reopen(&dir);
    assert!(report.is_clean(), "fresh log must reopen clean: {report:?}");
    Fixture {
        _tmp: tmp,
        dir,
        original,
        end,
    }
}

/// Bytes of the log up to (excluding) the batch whose base offset is `offset`.
fn prefix_before(original: &[u8], offset: i64) -> Vec<u8> {
    let summaries = validate_batches(original).unwrap();
    let cut = summaries
        .iter()
        .find(|summary| summary.base_offset == offset)
        .map(|summary| summary.position)
        .unwrap_or(original.len());
    original[..cut].to_vec()
}

#[test]
fn flipped_byte_mid_segment_cuts_the_log_there() {
    let fixture = fixture(60);
    let logs = segment_files(&fixture.dir, "log");
    assert!(logs.len() >= 4, "want several segments, got {}", logs.len());
    // Damage the middle batch of the second segment.
    let victim = &logs[1];
    let batches = batches_of(victim);
    let (position, base_offset, length) = batches[batches.len() / 2];
    flip(victim, position + length / 2);

    let (report, bytes, end) = reopen(&fixture.dir);
    assert!(report.found_damage());
    assert_eq!(report.truncations.len(), 1, "{report:?}");
    let cut = &report.truncations[0];
    assert_eq!(&cut.path, victim);
    assert_eq!(cut.position, position as u64);
    assert!(matches!(cut.reason, TruncationReason::InvalidBatch(_)));
    // Every later segment is dropped and reported.
    assert_eq!(report.deleted_segments.len(), logs.len() - 2);
    assert!(report
        .deleted_segments
        .iter()
        .all(|deleted| matches!(deleted.reason, DeleteReason::AfterDamage { .. })));
    assert_eq!(segment_files(&fixture.dir, "log").len(), 2);
    // Everything before the damage is there, byte-exact; nothing after it.
    assert_eq!(end, Offset(base_offset));
    assert_eq!(bytes, prefix_before(&fixture.original, base_offset));
    assert!(report.truncated_bytes() > 0);
    assert!(fixture.end > end);
}

#[test]
fn flipped_byte_in_the_tail_cuts_the_last_batch() {
    let fixture = fixture(30);
    let logs = segment_files(&fixture.dir, "log");
    let last = logs.last().unwrap();
    let batches = batches_of(last);
    let (position, base_offset, length) = *batches.last().unwrap();
    flip(last, position + length - 1);

    let (report, bytes, end) = reopen(&fixture.dir);
    assert!(report.found_damage());
    assert_eq!(report.truncations.len(), 1);
    assert_eq!(report.truncations[0].position, position as u64);
    assert_eq!(report.truncations[0].bytes, length as u64);
    assert!(report.deleted_segments.is_empty());
    assert_eq!(end, Offset(base_offset));
    assert_eq!(bytes, prefix_before(&fixture.original, base_offset));
}

#[test]
fn damaged_header_fields_are_caught() {
    // Damage the length, the magic and the record count of different batches of the last
    // segment, one per run; each time the log ends right before the damaged batch.
    for field_offset in [8usize, 16, 60] {
        let fixture = fixture(12);
        let logs = segment_files(&fixture.dir, "log");
        let last = logs.last().unwrap();
        let batches = batches_of(last);
        let (position, base_offset, _) = batches[batches.len() / 2];
        flip(last, position + field_offset);
        let (report, bytes, end) = reopen(&fixture.dir);
        assert!(report.found_damage(), "field {field_offset}: {report:?}");
        assert_eq!(end, Offset(base_offset), "field {field_offset}");
        assert_eq!(bytes, prefix_before(&fixture.original, base_offset));
    }
}

#[test]
fn torn_last_batch_is_cut() {
    let fixture = fixture(20);
    let logs = segment_files(&fixture.dir, "log");
    let last = logs.last().unwrap();
    let (position, base_offset, length) = *batches_of(last).last().unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(last).unwrap();
    file.set_len((position + length / 3) as u64).unwrap();
    drop(file);

    let (report, bytes, end) = reopen(&fixture.dir);
    assert_eq!(report.truncations.len(), 1);
    assert!(matches!(
        report.truncations[0].reason,
        TruncationReason::InvalidBatch(_)
    ));
    assert_eq!(end, Offset(base_offset));
    assert_eq!(bytes, prefix_before(&fixture.original, base_offset));
}

#[test]
fn zero_padding_after_the_last_batch_is_not_damage() {
    let fixture = fixture(20);
    let logs = segment_files(&fixture.dir, "log");
    let last = logs.last().unwrap();
    let mut bytes = std::fs::read(last).unwrap();
    let len = bytes.len();
    bytes.resize(len.div_ceil(4096) * 4096 + 4096, 0);
    std::fs::write(last, bytes).unwrap();

    let (report, data, end) = reopen(&fixture.dir);
    assert!(!report.found_damage(), "{report:?}");
    assert_eq!(report.truncations.len(), 1);
    assert_eq!(report.truncations[0].reason, TruncationReason::ZeroPadding);
    assert_eq!(report.truncations[0].position, len as u64);
    assert_eq!(end, fixture.end);
    assert_eq!(data, fixture.original);
}

#[test]
fn corrupt_index_files_are_rebuilt() {
    let fixture = fixture(40);
    let indexes = segment_files(&fixture.dir, "index");
    let time_indexes = segment_files(&fixture.dir, "timeindex");
    assert!(indexes.len() >= 3);
    let good_index = std::fs::read(&indexes[0]).unwrap();
    let good_time_index = std::fs::read(&time_indexes[1]).unwrap();
    assert!(!good_index.is_empty() && !good_time_index.is_empty());
    // Garbage in one index, a torn (odd-sized) second one, a deleted third, a damaged time
    // index.
    let mut garbage = good_index.clone();
    garbage[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    std::fs::write(&indexes[0], &garbage).unwrap();
    let torn = std::fs::read(&indexes[1]).unwrap();
    std::fs::write(&indexes[1], &torn[..torn.len() - 3]).unwrap();
    std::fs::remove_file(&indexes[2]).unwrap();
    let mut bad_time = good_time_index.clone();
    bad_time[0] ^= 0x80;
    std::fs::write(&time_indexes[1], &bad_time).unwrap();

    let (report, bytes, end) = reopen(&fixture.dir);
    assert!(!report.found_damage(), "{report:?}");
    for path in [&indexes[0], &indexes[1], &indexes[2], &time_indexes[1]] {
        assert!(
            report.rebuilt_indexes.contains(path),
            "{path:?} not rebuilt: {report:?}"
        );
    }
    assert_eq!(std::fs::read(&indexes[0]).unwrap(), good_index);
    assert_eq!(std::fs::read(&time_indexes[1]).unwrap(), good_time_index);
    let rebuilt = std::fs::read(&indexes[2]).unwrap();
    let segment_len = std::fs::metadata(segment_files(&fixture.dir, "log")[2].clone())
        .unwrap()
        .len();
    assert!(OffsetIndex::decode(&rebuilt, segment_len).is_ok());
    assert_eq!(end, fixture.end);
    assert_eq!(bytes, fixture.original);

    // A second reopen finds nothing to do.
    let (report, _, _) = reopen(&fixture.dir);
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn missing_middle_segment_ends_the_log() {
    let fixture = fixture(60);
    let logs = segment_files(&fixture.dir, "log");
    assert!(logs.len() >= 4);
    let first_of_third = batches_of(&logs[2])[0].1;
    std::fs::remove_file(&logs[2]).unwrap();

    let (report, bytes, end) = reopen(&fixture.dir);
    assert!(report.found_damage());
    assert!(matches!(
        report.deleted_segments[0].reason,
        DeleteReason::OffsetGap { .. }
    ));
    assert_eq!(report.deleted_segments.len(), logs.len() - 3);
    assert!(report.orphans_removed.len() >= 2, "{report:?}");
    assert_eq!(end, Offset(first_of_third));
    assert_eq!(bytes, prefix_before(&fixture.original, first_of_third));
}

#[test]
fn garbage_files_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("topic-0");
    std::fs::create_dir_all(&dir).unwrap();
    let mut noise = Vec::new();
    let mut state: u32 = 0x1234_5678;
    for _ in 0..20_000 {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        noise.push((state >> 24) as u8);
    }
    std::fs::write(dir.join("00000000000000000000.log"), &noise).unwrap();
    std::fs::write(dir.join("00000000000000000000.index"), &noise[..999]).unwrap();
    std::fs::write(dir.join("00000000000000000000.timeindex"), &noise[..7]).unwrap();
    std::fs::write(dir.join("00000000000000000500.log"), &noise[..61]).unwrap();
    std::fs::write(dir.join("not-a-segment.log"), b"ignored").unwrap();

    let (report, bytes, end) = reopen(&dir);
    assert!(report.found_damage());
    assert_eq!(end, Offset(0));
    assert!(bytes.is_empty());
    assert_eq!(report.truncations[0].bytes, noise.len() as u64);
    assert_eq!(report.deleted_segments.len(), 1);
}
