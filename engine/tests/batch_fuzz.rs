//! Batch validation fed with arbitrary bytes (the always-on counterpart of the cargo-fuzz target
//! `fuzz/fuzz_targets/batch_validate.rs`, run by the test command on every run): it never
//! panics, what it accepts splits into batches that cover the input exactly, and a valid batch
//! with any byte changed inside its CRC-covered range is rejected.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use vaart_engine::batch::CRC_RANGE_START;
use vaart_engine::testing::{make_batch, BatchBuilder};
use vaart_engine::{validate_batches, TimestampMs};

fn valid_batches(count: usize, records: usize, value_bytes: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..count {
        out.extend_from_slice(&make_batch(
            records,
            value_bytes,
            TimestampMs(1_000 + i as i64),
        ));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Arbitrary bytes: an error or a clean split, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(summaries) = validate_batches(&bytes) {
            let covered: usize = summaries.iter().map(|s| s.length).sum();
            prop_assert_eq!(covered, bytes.len());
        }
    }

    /// Valid batches with arbitrary bytes appended or spliced in: never a panic, and a prefix
    /// of whole valid batches followed by garbage is rejected (no trailing bytes accepted).
    #[test]
    fn valid_batches_with_garbage_are_rejected(
        count in 1usize..4,
        records in 1usize..6,
        garbage in proptest::collection::vec(any::<u8>(), 1..80),
    ) {
        let mut bytes = valid_batches(count, records, 10);
        prop_assert_eq!(validate_batches(&bytes).unwrap().len(), count);
        bytes.extend_from_slice(&garbage);
        if let Ok(summaries) = validate_batches(&bytes) {
            // Only possible if the garbage happens to be a whole valid batch itself.
            prop_assert_eq!(summaries.len(), count + 1);
        }
    }

    /// Any single byte flipped inside the CRC-covered range of a valid batch is caught.
    #[test]
    fn a_flipped_byte_under_the_crc_is_rejected(
        records in 1usize..8,
        position in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let batch = BatchBuilder::new(TimestampMs(5_000))
            .producer(7, 0, 0);
        let batch = (0..records).fold(batch, |b, i| b.record(Some(b"k"), Some(&[i as u8; 9])));
        let mut bytes = batch.build().to_vec();
        let index = CRC_RANGE_START + position.index(bytes.len() - CRC_RANGE_START);
        bytes[index] ^= flip;
        prop_assert!(validate_batches(&bytes).is_err());
    }

    /// Truncating a valid input anywhere is an error, never a panic.
    #[test]
    fn truncation_is_rejected(count in 1usize..3, cut in any::<prop::sample::Index>()) {
        let bytes = valid_batches(count, 3, 20);
        let end = cut.index(bytes.len());
        let truncated = &bytes[..end];
        if let Ok(summaries) = validate_batches(truncated) {
            // Only at a batch boundary.
            let covered: usize = summaries.iter().map(|s| s.length).sum();
            prop_assert_eq!(covered, end);
        }
    }
}
