//! Arbitrary bytes as a connection's input stream: frames are split with the broker's length
//! rules, each frame is routed on its fixed prefix (API key, version, correlation id), its header
//! decoded, and its body decoded as that API's request at that version, as the handlers do.
//! Nothing may panic or abort; errors are the expected outcome for most inputs.
#![no_main]

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use libfuzzer_sys::fuzz_target;
use vaart_broker::handlers::{check_decodes, route, Route};
use vaart_broker::protocol::frame::split_frame;
use vaart_broker::protocol::request::{decode_header, fixed_prefix};

/// The binary's allocator: absurd wire-claimed lengths get lazily mapped address space instead
/// of aborting (see `vaart_broker::alloc_guard`), so the fuzzer sees what production sees.
#[global_allocator]
static ALLOCATOR: vaart_broker::alloc_guard::GuardedAlloc = vaart_broker::alloc_guard::GuardedAlloc;

/// A small `socket.request.max.bytes`, so that length checks are reached often.
const MAX_FRAME_BYTES: usize = 1 << 20;
/// Frames decoded per input at most.
const FRAMES_MAX: usize = 16;

fn decode_one(frame: Bytes) {
    let Ok((raw_key, version, _correlation_id)) = fixed_prefix(&frame) else {
        return;
    };
    let Ok(api_key) = ApiKey::try_from(raw_key) else {
        return;
    };
    if !matches!(route(api_key, version), Route::Handle(_)) {
        return;
    }
    let mut body = frame;
    let Ok(head) = decode_header(&mut body) else {
        return;
    };
    let _ = check_decodes(&head, body);
}

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    for _ in 0..FRAMES_MAX {
        match split_frame(&mut buf, MAX_FRAME_BYTES) {
            Ok(Some(frame)) => decode_one(frame),
            _ => break,
        }
    }
});
