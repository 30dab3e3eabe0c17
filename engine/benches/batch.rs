//! Hot loops of the engine: batch validation + CRC32C, offset assignment, index lookup.
//! Quick run (CI): `cargo bench -p vaart-engine -- --warm-up-time 0.1 --measurement-time 0.2`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vaart_engine::{
    batch::{assign_offsets, validate_batches},
    index::{OffsetIndex, OffsetIndexEntry},
    testing::make_batch,
    LeaderEpoch, Offset, TimestampMs,
};

const NOW: TimestampMs = TimestampMs(1_700_000_000_000);

/// `total_bytes` of 16 KiB batches (16 records of ~1 KiB each), or one batch if smaller.
fn records(total_bytes: usize) -> Vec<u8> {
    let batch = make_batch(16, 1_000, NOW);
    let mut out = Vec::with_capacity(total_bytes + batch.len());
    while out.len() + batch.len() <= total_bytes.max(batch.len()) {
        out.extend_from_slice(&batch);
    }
    out
}

fn validation(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate_batches");
    for (name, size) in [("16KiB", 16 * 1024), ("1MiB", 1 << 20)] {
        let input = records(size);
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &input, |b, input| {
            b.iter(|| validate_batches(black_box(input)).unwrap().len())
        });
    }
    group.finish();

    let mut group = c.benchmark_group("crc32c");
    for (name, size) in [("16KiB", 16 * 1024), ("1MiB", 1 << 20)] {
        let input = vec![0xa5u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &input, |b, input| {
            b.iter(|| crc32c::crc32c(black_box(input)))
        });
    }
    group.finish();
}

fn offset_assignment(c: &mut Criterion) {
    let input = records(1 << 20);
    let summaries = validate_batches(&input).unwrap();
    let mut group = c.benchmark_group("assign_offsets_1MiB");
    group.throughput(Throughput::Bytes(input.len() as u64));
    let mut buffer = input.clone();
    group.bench_function("create_time", |b| {
        b.iter(|| {
            assign_offsets(
                black_box(&mut buffer),
                &summaries,
                Offset(1_000),
                LeaderEpoch(3),
                None,
            )
        })
    });
    group.bench_function("log_append_time", |b| {
        b.iter(|| {
            assign_offsets(
                black_box(&mut buffer),
                &summaries,
                Offset(1_000),
                LeaderEpoch(3),
                Some(NOW),
            )
        })
    });
    group.finish();
}

fn index_lookup(c: &mut Criterion) {
    // A 1 GiB segment of 16 KiB batches of 16 records: 65,536 entries.
    let mut index = OffsetIndex::new();
    for entry in 0..65_536u32 {
        index.push(OffsetIndexEntry {
            relative_offset: entry * 16,
            position: entry * 16_384,
        });
    }
    let targets: Vec<u32> = (0..1_024u32)
        .map(|i| i.wrapping_mul(2_654_435_761) % (65_536 * 16))
        .collect();
    c.bench_function("offset_index_lookup_65536_entries", |b| {
        let mut next = 0usize;
        b.iter(|| {
            next = (next + 1) % targets.len();
            index.lookup(black_box(targets[next]))
        })
    });
}

criterion_group!(benches, validation, offset_assignment, index_lookup);
criterion_main!(benches);
