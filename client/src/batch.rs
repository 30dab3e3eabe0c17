//! The producer's record batches (magic v2), encoded without copying record values.
//!
//! An uncompressed batch is encoded by hand into a [`RecordsRope`]: the batch header and each
//! record's framing (length, attributes, deltas, key, headers) go into one small buffer, and
//! each value of at least [`VALUE_REFERENCE_MIN_BYTES`] is referenced where it lies (the
//! caller's `Bytes`) instead of being copied; the CRC-32C runs over the pieces in order. The
//! bytes are exactly those kafka-protocol's `RecordBatchEncoder` writes for the same records
//! (tests compare them), with a base offset of 0 and no producer id, as for a producer
//! without idempotence. Compressed batches are encoded by kafka-protocol (the codec reads
//! every value anyway) and come out as one piece.
//!
//! A Produce request holds each batch as one `Bytes`; for a batch in pieces it holds a
//! stand-in of the same length ([`RecordsRope::stand_in`], zeros that are never sent), which
//! the frame builder recognises and replaces with the pieces (see `frame`).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Record, TimestampType, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
};

use crate::error::ClientError;
use crate::frame::Splice;
use crate::producer::Compression;

/// Values at least this long are referenced, shorter ones copied (a piece of their own would
/// cost the socket write more than the copy).
pub const VALUE_REFERENCE_MIN_BYTES: usize = 512;
/// Fixed bytes of a v2 batch header.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Where the CRC sits in the header, and where the bytes it covers start.
const CRC_AT: usize = 17;
const CRC_FROM: usize = 21;
/// Length of the zeros that stand-ins are cut from (address space only, see
/// [`stand_in_zeros`]); a longer batch is joined into one buffer instead.
const STAND_IN_ZEROS_BYTES: usize = 64 << 20;

/// Zeros that stand-ins are cut from: one read-only anonymous mapping per process, which the
/// kernel backs with no memory unless read, and it is never read (the frame builder replaces
/// every stand-in, or the request fails). Empty if the mapping cannot be made (batches in
/// pieces are then joined).
fn stand_in_zeros() -> &'static [u8] {
    static ZEROS: std::sync::OnceLock<&'static [u8]> = std::sync::OnceLock::new();
    ZEROS.get_or_init(|| {
        // SAFETY: a new private anonymous read-only mapping; no existing memory is touched
        // and the result is checked below.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                STAND_IN_ZEROS_BYTES,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if address == libc::MAP_FAILED || address.is_null() {
            return &[];
        }
        // SAFETY: the mapping is `STAND_IN_ZEROS_BYTES` readable, zero-filled bytes that are
        // never written (read-only) nor unmapped, so a shared `'static` slice over it is valid.
        unsafe { std::slice::from_raw_parts(address.cast::<u8>(), STAND_IN_ZEROS_BYTES) }
    })
}

/// A record waiting in an open batch.
#[derive(Debug, Clone)]
pub struct PendingRecord {
    /// Create time, ms since the Unix epoch.
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// What cannot be put in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BatchEncodeError {
    #[error("a batch needs at least one record")]
    Empty,
    #[error("{what} of {bytes} bytes is too long for a record batch")]
    TooLong { what: &'static str, bytes: usize },
}

/// An encoded record batch as pieces, in order: ranges of one framing buffer and referenced
/// values (kept as ranges, not `Bytes` slices, so a piece costs no reference count).
#[derive(Debug, Clone, Default)]
pub struct RecordsRope {
    framing: Bytes,
    layout: Vec<RopePiece>,
    len_bytes: usize,
}

#[derive(Debug, Clone)]
enum RopePiece {
    /// `framing[start..end]`.
    Framing {
        start: usize,
        end: usize,
    },
    Value(Bytes),
}

impl RecordsRope {
    /// A batch in one piece.
    pub fn contiguous(bytes: Bytes) -> Self {
        Self {
            len_bytes: bytes.len(),
            layout: vec![RopePiece::Framing {
                start: 0,
                end: bytes.len(),
            }],
            framing: bytes,
        }
    }

    pub fn len_bytes(&self) -> usize {
        self.len_bytes
    }

    /// The batch itself, if it is in one piece.
    pub fn as_contiguous(&self) -> Option<&Bytes> {
        match self.layout.as_slice() {
            [RopePiece::Framing { start: 0, end }] if *end == self.framing.len() => {
                Some(&self.framing)
            }
            _ => None,
        }
    }

    /// The non-empty pieces, in order.
    pub fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        self.layout
            .iter()
            .map(|piece| match piece {
                RopePiece::Framing { start, end } => {
                    self.framing.get(*start..*end).unwrap_or_default()
                }
                RopePiece::Value(value) => &value[..],
            })
            .filter(|piece| !piece.is_empty())
    }

    /// How many pieces (an upper bound of [`RecordsRope::pieces`]).
    pub fn piece_count(&self) -> usize {
        self.layout.len()
    }

    /// The batch as one buffer (copies unless it is in one piece).
    pub fn to_bytes(&self) -> Bytes {
        if let Some(bytes) = self.as_contiguous() {
            return bytes.clone();
        }
        let mut buf = BytesMut::with_capacity(self.len_bytes);
        for piece in self.pieces() {
            buf.extend_from_slice(piece);
        }
        buf.freeze()
    }

    /// What a request's `records` field holds for this batch, the `nth` of its request: the
    /// batch itself if in one piece, else `len_bytes` zeros at an address no other batch of
    /// the request uses (`nth` apart), which the frame builder swaps for the pieces. A batch
    /// too long for the stand-in region is joined into one buffer instead.
    pub fn stand_in(&mut self, nth: usize) -> Bytes {
        if let Some(bytes) = self.as_contiguous() {
            return bytes.clone();
        }
        match stand_in_zeros().get(nth..nth + self.len_bytes) {
            Some(zeros) => Bytes::from_static(zeros),
            None => {
                let joined = self.to_bytes();
                *self = Self::contiguous(joined.clone());
                joined
            }
        }
    }

    /// What the frame builder needs to put this batch where `stand_in` is.
    pub fn splice<'a>(&'a self, stand_in: &'a Bytes) -> Splice<'a> {
        Splice {
            stand_in,
            rope: self,
        }
    }
}

/// Encodes `records` into one batch: by hand and in pieces without compression, else with
/// kafka-protocol. `min_timestamp_ms`/`max_timestamp_ms` are over `records`.
pub fn encode(
    records: &[PendingRecord],
    compression: Compression,
    min_timestamp_ms: i64,
    max_timestamp_ms: i64,
) -> Result<RecordsRope, ClientError> {
    match compression {
        Compression::None => encode_uncompressed(records, min_timestamp_ms, max_timestamp_ms)
            .map_err(ClientError::records),
        codec => encode_with_kafka_protocol(records, codec).map(RecordsRope::contiguous),
    }
}

/// kafka-protocol's `Record` for the `offset_delta`-th record of a batch.
pub fn to_record(record: &PendingRecord, offset_delta: i64) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
        producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
        timestamp_type: TimestampType::Creation,
        offset: offset_delta,
        // The encoder keeps records in one batch while `offset - sequence` is constant and
        // derives the base sequence from the first record: -1, as for a producer without
        // idempotence.
        sequence: (offset_delta as i32).wrapping_sub(1),
        timestamp: record.timestamp_ms,
        key: record.key.clone(),
        value: record.value.clone(),
        headers: record
            .headers
            .iter()
            .map(|(name, value)| (StrBytes::from_string(name.clone()), value.clone()))
            .collect(),
    }
}

/// One contiguous batch by kafka-protocol's encoder (used for compressed batches).
pub fn encode_with_kafka_protocol(
    records: &[PendingRecord],
    compression: Compression,
) -> Result<Bytes, ClientError> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(index, record)| to_record(record, index as i64))
        .collect();
    crate::producer::encode_batch(&records, compression)
}

fn length_i32(what: &'static str, bytes: usize) -> Result<i32, BatchEncodeError> {
    i32::try_from(bytes).map_err(|_| BatchEncodeError::TooLong { what, bytes })
}

/// Kafka's zig-zag varint (`VarInt` and `VarLong` encode alike for values of `i32` range).
fn put_varlong(buf: &mut BytesMut, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        buf.put_u8((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    buf.put_u8(zigzag as u8);
}

fn varlong_bytes(value: i64) -> usize {
    let zigzag = ((value << 1) ^ (value >> 63)) as u64;
    let bits = 64 - (zigzag | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Length-prefixed bytes (-1 for none) as in a record.
fn nullable_bytes(value: Option<&[u8]>) -> usize {
    value.map_or(1, |bytes| varlong_bytes(bytes.len() as i64) + bytes.len())
}

fn encode_uncompressed(
    records: &[PendingRecord],
    min_timestamp_ms: i64,
    max_timestamp_ms: i64,
) -> Result<RecordsRope, BatchEncodeError> {
    if records.is_empty() {
        return Err(BatchEncodeError::Empty);
    }
    let count = length_i32("record count", records.len())?;
    let framing_bytes: usize = records
        .iter()
        .map(|record| {
            let value_copied = record
                .value
                .as_ref()
                .filter(|value| value.len() < VALUE_REFERENCE_MIN_BYTES)
                .map_or(0, Bytes::len);
            let headers: usize = record
                .headers
                .iter()
                .map(|(name, value)| {
                    name.len() + 10 + value.as_ref().map_or(0, |value| value.len() + 5)
                })
                .sum();
            // Length, attributes, deltas, key and value lengths, header count: at most 40.
            40 + record.key.as_ref().map_or(0, Bytes::len) + value_copied + headers
        })
        .sum();
    let mut framing = BytesMut::with_capacity(BATCH_HEADER_BYTES + framing_bytes);
    framing.put_i64(0); // base offset
    framing.put_i32(0); // batch length, set below
    framing.put_i32(NO_PARTITION_LEADER_EPOCH);
    framing.put_i8(2); // magic
    framing.put_u32(0); // CRC, set below
    framing.put_i16(0); // attributes: no compression, not transactional, not control
    framing.put_i32(count - 1); // last offset delta
    framing.put_i64(min_timestamp_ms);
    framing.put_i64(max_timestamp_ms);
    framing.put_i64(NO_PRODUCER_ID);
    framing.put_i16(NO_PRODUCER_EPOCH);
    framing.put_i32(-1); // base sequence
    framing.put_i32(count);
    let mut layout: Vec<RopePiece> = Vec::with_capacity(2 * records.len() + 1);
    let mut framing_start = 0usize;
    let mut referenced_bytes = 0usize;
    for (offset_delta, record) in records.iter().enumerate() {
        let timestamp_delta = record.timestamp_ms.wrapping_sub(min_timestamp_ms);
        let key = record.key.as_deref();
        let value = record.value.as_deref();
        let mut body_bytes = 1 // attributes
            + varlong_bytes(timestamp_delta)
            + varlong_bytes(offset_delta as i64)
            + nullable_bytes(key)
            + nullable_bytes(value)
            + varlong_bytes(record.headers.len() as i64);
        if let Some(key) = key {
            length_i32("key", key.len())?;
        }
        if let Some(value) = value {
            length_i32("value", value.len())?;
        }
        length_i32("header count", record.headers.len())?;
        for (name, header_value) in &record.headers {
            length_i32("header name", name.len())?;
            body_bytes += nullable_bytes(Some(name.as_bytes()));
            if let Some(header_value) = header_value {
                length_i32("header value", header_value.len())?;
            }
            body_bytes += nullable_bytes(header_value.as_deref());
        }
        put_varlong(&mut framing, i64::from(length_i32("record", body_bytes)?));
        framing.put_i8(0); // attributes
        put_varlong(&mut framing, timestamp_delta);
        put_varlong(&mut framing, offset_delta as i64);
        match key {
            Some(key) => {
                put_varlong(&mut framing, key.len() as i64);
                framing.put_slice(key);
            }
            None => put_varlong(&mut framing, -1),
        }
        match &record.value {
            Some(value) => {
                put_varlong(&mut framing, value.len() as i64);
                if value.len() >= VALUE_REFERENCE_MIN_BYTES {
                    layout.push(RopePiece::Framing {
                        start: framing_start,
                        end: framing.len(),
                    });
                    framing_start = framing.len();
                    layout.push(RopePiece::Value(value.clone()));
                    referenced_bytes += value.len();
                } else {
                    framing.put_slice(value);
                }
            }
            None => put_varlong(&mut framing, -1),
        }
        put_varlong(&mut framing, record.headers.len() as i64);
        for (name, header_value) in &record.headers {
            put_varlong(&mut framing, name.len() as i64);
            framing.put_slice(name.as_bytes());
            match header_value {
                Some(header_value) => {
                    put_varlong(&mut framing, header_value.len() as i64);
                    framing.put_slice(header_value);
                }
                None => put_varlong(&mut framing, -1),
            }
        }
    }
    layout.push(RopePiece::Framing {
        start: framing_start,
        end: framing.len(),
    });
    let len_bytes = framing.len() + referenced_bytes;
    let batch_length = length_i32("batch", len_bytes - 12)?;
    framing[8..12].copy_from_slice(&batch_length.to_be_bytes());
    // The CRC covers everything from the attributes on, piece by piece.
    let crc = crc32c_pieces(layout.iter().map(|piece| {
        match piece {
            RopePiece::Framing { start, end } => framing
                .get((*start).max(CRC_FROM)..*end)
                .unwrap_or_default(),
            RopePiece::Value(value) => &value[..],
        }
    }));
    framing[CRC_AT..CRC_FROM].copy_from_slice(&crc.to_be_bytes());
    Ok(RecordsRope {
        framing: framing.freeze(),
        layout,
        len_bytes,
    })
}

/// CRC-32C of `pieces` one after the other (what `crc32c::crc32c` gives for their
/// concatenation). A batch has two pieces per record, a few framing bytes and a value of
/// typically a kilobyte; the `crc32c` crate's per-call setup and its serial tail (up to
/// 256 bytes) cost more than the checksum itself at that size, so on x86-64 with SSE 4.2
/// pieces are checksummed here: small ones serially, large ones three lanes at a time.
fn crc32c_pieces<'a>(pieces: impl Iterator<Item = &'a [u8]>) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        let shift = lane_shift_table();
        let mut register = !0u32;
        for piece in pieces {
            // SAFETY: SSE 4.2 is present (checked just above).
            register = unsafe { sse42::extend(register, piece, shift) };
        }
        return !register;
    }
    pieces.fold(0, crc32c::crc32c_append)
}

/// Bytes per lane of the three-lane loop: two blocks of three lanes and a 16-byte tail cover
/// a 1 KiB value.
#[cfg(target_arch = "x86_64")]
const LANE_BYTES: usize = 168;

/// The CRC register after `LANE_BYTES` zero bytes, as a linear map of the register before:
/// `table[i][b]` for byte `i` of the register being `b`.
#[cfg(target_arch = "x86_64")]
type ShiftTable = [[u32; 256]; 4];

#[cfg(target_arch = "x86_64")]
fn lane_shift_table() -> &'static ShiftTable {
    static TABLE: std::sync::OnceLock<ShiftTable> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let zeros = [0u8; LANE_BYTES];
        let mut table = [[0u32; 256]; 4];
        for (index, row) in table.iter_mut().enumerate() {
            for (byte, entry) in row.iter_mut().enumerate() {
                let register = (byte as u32) << (8 * index);
                // The crate inverts the register on the way in and out.
                *entry = !crc32c::crc32c_append(!register, &zeros);
            }
        }
        table
    })
}

#[cfg(target_arch = "x86_64")]
mod sse42 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};

    use super::{ShiftTable, LANE_BYTES};

    fn word(bytes: &[u8]) -> u64 {
        let mut le = [0u8; 8];
        le.copy_from_slice(bytes);
        u64::from_le_bytes(le)
    }

    fn shift(register: u32, table: &ShiftTable) -> u32 {
        let [b0, b1, b2, b3] = register.to_le_bytes();
        table[0][usize::from(b0)]
            ^ table[1][usize::from(b1)]
            ^ table[2][usize::from(b2)]
            ^ table[3][usize::from(b3)]
    }

    /// Feeds `data` to the (not inverted) CRC register, one word at a time.
    #[target_feature(enable = "sse4.2")]
    fn serial(mut register: u32, data: &[u8]) -> u32 {
        let mut words = data.chunks_exact(8);
        for bytes in &mut words {
            register = _mm_crc32_u64(u64::from(register), word(bytes)) as u32;
        }
        for &byte in words.remainder() {
            register = _mm_crc32_u8(register, byte);
        }
        register
    }

    /// Feeds `data` to the (not inverted) CRC register: blocks of three lanes checksummed
    /// side by side (the instruction's latency is three times its throughput), joined with
    /// the lane shift (the register is linear: after `A B`, it is `shift(after A) ^ B from
    /// zero`), then the tail serially.
    #[target_feature(enable = "sse4.2")]
    pub(super) fn extend(mut register: u32, data: &[u8], table: &ShiftTable) -> u32 {
        let mut blocks = data.chunks_exact(3 * LANE_BYTES);
        for block in &mut blocks {
            let (first, rest) = block.split_at(LANE_BYTES);
            let (second, third) = rest.split_at(LANE_BYTES);
            let (mut lane0, mut lane1, mut lane2) = (u64::from(register), 0u64, 0u64);
            for ((a, b), c) in first
                .chunks_exact(8)
                .zip(second.chunks_exact(8))
                .zip(third.chunks_exact(8))
            {
                lane0 = _mm_crc32_u64(lane0, word(a));
                lane1 = _mm_crc32_u64(lane1, word(b));
                lane2 = _mm_crc32_u64(lane2, word(c));
            }
            register = shift(lane0 as u32, table) ^ lane1 as u32;
            register = shift(register, table) ^ lane2 as u32;
        }
        serial(register, blocks.remainder())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    fn pending(
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<Bytes>,
        headers: &[(&str, Option<&[u8]>)],
    ) -> PendingRecord {
        PendingRecord {
            timestamp_ms,
            key: key.map(Bytes::copy_from_slice),
            value,
            headers: headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.map(Bytes::copy_from_slice)))
                .collect(),
        }
    }

    fn value(fill: u8, len: usize) -> Option<Bytes> {
        Some(Bytes::from(vec![fill; len]))
    }

    fn shapes() -> Vec<Vec<PendingRecord>> {
        let base = 1_700_000_000_000i64;
        vec![
            vec![pending(base, None, value(1, 10), &[])],
            vec![pending(base, None, value(1, 1024), &[])],
            (0..200)
                .map(|index| pending(base + index % 7, None, value(index as u8, 1024), &[]))
                .collect(),
            vec![
                pending(
                    base + 5,
                    Some(b"key-1"),
                    value(2, 600),
                    &[("h", Some(b"v"))],
                ),
                pending(base, Some(b""), None, &[("trace", None), ("x", Some(b""))]),
                pending(base - 3, None, value(3, 511), &[]),
                pending(base + 100_000, Some(&[9u8; 300]), value(4, 512), &[]),
                pending(
                    base + 1,
                    None,
                    Some(Bytes::new()),
                    &[("a", Some(&[1u8; 700]))],
                ),
            ],
            (0..300)
                .map(|index| {
                    pending(
                        base + index * 1000,
                        Some(format!("k{index}").as_bytes()),
                        value(5, (index as usize * 37) % 3000),
                        &[],
                    )
                })
                .collect(),
        ]
    }

    fn timestamps(records: &[PendingRecord]) -> (i64, i64) {
        let min = records
            .iter()
            .map(|r| r.timestamp_ms)
            .min()
            .expect("records");
        let max = records
            .iter()
            .map(|r| r.timestamp_ms)
            .max()
            .expect("records");
        (min, max)
    }

    #[test]
    fn hand_encoding_is_byte_identical_to_kafka_protocol_and_decodes_back() {
        for (shape, records) in shapes().iter().enumerate() {
            let (min, max) = timestamps(records);
            let rope = encode(records, Compression::None, min, max).expect("rope");
            let expected =
                encode_with_kafka_protocol(records, Compression::None).expect("kafka-protocol");
            assert_eq!(rope.len_bytes(), expected.len(), "shape {shape}");
            assert_eq!(rope.to_bytes(), expected, "shape {shape}");
            // Large values are referenced, not copied.
            for record in records {
                if let Some(value) = record
                    .value
                    .as_ref()
                    .filter(|value| value.len() >= VALUE_REFERENCE_MIN_BYTES)
                {
                    assert!(
                        rope.pieces().any(|piece| piece.as_ptr() == value.as_ptr()),
                        "shape {shape}"
                    );
                }
            }
            let mut bytes = rope.to_bytes();
            let decoded = RecordBatchDecoder::decode(&mut bytes).expect("decode");
            assert_eq!(decoded.records.len(), records.len(), "shape {shape}");
            for (index, (got, sent)) in decoded.records.iter().zip(records).enumerate() {
                assert_eq!(got.offset, index as i64);
                assert_eq!(got.timestamp, sent.timestamp_ms);
                assert_eq!(got.key, sent.key);
                assert_eq!(got.value, sent.value);
                assert_eq!(got.headers.len(), sent.headers.len());
                assert_eq!(got.sequence, index as i32 - 1);
                assert_eq!(got.producer_id, NO_PRODUCER_ID);
            }
        }
    }

    #[test]
    fn piecewise_checksum_equals_the_crate_over_the_whole() {
        let data: Vec<u8> = (0..20_000u32)
            .map(|index| (index.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut rng = 7u64;
        for round in 0..300 {
            let mut pieces: Vec<&[u8]> = Vec::new();
            let mut whole = Vec::new();
            for _ in 0..(round % 9) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let start = (rng % 10_000) as usize;
                let len =
                    [0, 1, 7, 12, 168, 503, 504, 505, 1024, 1031, 3000][(rng >> 20) as usize % 11];
                let piece = &data[start..start + len];
                pieces.push(piece);
                whole.extend_from_slice(piece);
            }
            assert_eq!(
                crc32c_pieces(pieces.iter().copied()),
                crc32c::crc32c(&whole),
                "round {round}"
            );
        }
    }

    #[test]
    fn compressed_batches_come_in_one_piece() {
        let records = &shapes()[2];
        let (min, max) = timestamps(records);
        for codec in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
            let rope = encode(records, codec, min, max).expect("encode");
            assert!(rope.as_contiguous().is_some());
            let decoded = RecordBatchDecoder::decode(&mut rope.to_bytes()).expect("decode");
            assert_eq!(decoded.records.len(), records.len());
        }
    }

    #[test]
    fn stand_ins_differ_within_a_request_and_one_piece_batches_stand_for_themselves() {
        let records = &shapes()[2];
        let (min, max) = timestamps(records);
        let mut first = encode(records, Compression::None, min, max).expect("encode");
        let mut second = first.clone();
        let (one, two) = (first.stand_in(0), second.stand_in(1));
        assert_eq!(one.len(), first.len_bytes());
        assert_ne!(one.as_ptr(), two.as_ptr());
        assert!(one.iter().all(|&byte| byte == 0));
        // Past the stand-in region the batch is joined and stands for itself.
        let mut far = first.clone();
        let joined = far.stand_in(STAND_IN_ZEROS_BYTES);
        assert_eq!(joined, first.to_bytes());
        assert_eq!(far.as_contiguous(), Some(&joined));
        let data = Bytes::from_static(b"abc");
        let mut single = RecordsRope::contiguous(data.clone());
        assert_eq!(single.stand_in(5).as_ptr(), data.as_ptr());
        assert_eq!(
            encode(&[], Compression::None, 0, 0)
                .err()
                .map(|e| e.to_string()),
            Some(ClientError::records(BatchEncodeError::Empty).to_string())
        );
    }
}
