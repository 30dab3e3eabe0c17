//! Arbitrary bytes as the `records` of a Produce partition: the engine's batch validation
//! (lengths, magic, record count, codec, CRC32C, record framing) and the broker's producer-state
//! header walk must never panic, and a validated input must split into batches that cover it
//! exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vaart_broker::shard::producer_state::incoming_batches;

fuzz_target!(|data: &[u8]| {
    let walked = incoming_batches(data);
    if let Ok(summaries) = vaart_engine::validate_batches(data) {
        let covered: usize = summaries.iter().map(|s| s.length).sum();
        assert_eq!(
            covered,
            data.len(),
            "validated batches cover the input exactly"
        );
        let walked = walked.expect("validated batches also split by their headers");
        assert_eq!(walked.len(), summaries.len());
    }
});
