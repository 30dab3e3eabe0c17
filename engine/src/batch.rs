//! Kafka record batches (magic v2): the fixed 61-byte header, validation and offset assignment.
//!
//! Batches are stored exactly as they arrive on the wire. Validation checks the header length
//! fields, the magic byte, the record count against `lastOffsetDelta`, the compression codec,
//! the CRC32C (which covers `attributes` to the end of the batch) and, for uncompressed
//! batches, the record framing (every record's length varint). Nothing is decompressed.
//!
//! Offset assignment patches `baseOffset` and `partitionLeaderEpoch`, which lie before the CRC'd
//! range, so the CRC stays valid. LogAppendTime also rewrites `maxTimestamp` and `attributes`,
//! which are inside the CRC'd range, so the CRC is recomputed in that case.

use zerocopy::{
    byteorder::big_endian::{I16, I32, I64, U32},
    FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned,
};

use crate::{
    error::{BatchError, RecordsError},
    types::{LeaderEpoch, Offset, TimestampMs},
};

/// Size of the fixed record batch header.
pub const BATCH_HEADER_LEN: usize = 61;
/// `baseOffset` + `batchLength`: the bytes not counted by `batchLength`.
pub const LOG_OVERHEAD: usize = 12;
/// The smallest valid `batchLength` (header without the log overhead).
pub const MIN_BATCH_LENGTH: i32 = (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32;
/// Position of the `magic` byte.
pub const MAGIC_OFFSET: usize = 16;
/// Position of `attributes`, where the CRC'd range starts.
pub const CRC_RANGE_START: usize = 21;
/// The only supported magic.
pub const MAGIC_V2: i8 = 2;
/// Attribute bit 3: timestamps are LogAppendTime.
pub const ATTR_LOG_APPEND_TIME: i16 = 0x08;
/// Attribute bit 4: transactional batch.
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
/// Attribute bit 5: control batch.
pub const ATTR_CONTROL: i16 = 0x20;
/// Attribute bits 0-2: compression codec.
pub const ATTR_COMPRESSION_MASK: i16 = 0x07;

/// The fixed 61-byte header of a magic-v2 record batch, big-endian as on the wire.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, Copy)]
#[repr(C)]
pub struct BatchHeader {
    base_offset: I64,
    batch_length: I32,
    partition_leader_epoch: I32,
    magic: i8,
    crc: U32,
    attributes: I16,
    last_offset_delta: I32,
    base_timestamp: I64,
    max_timestamp: I64,
    producer_id: I64,
    producer_epoch: I16,
    base_sequence: I32,
    records_count: I32,
}

const _: () = assert!(std::mem::size_of::<BatchHeader>() == BATCH_HEADER_LEN);

impl BatchHeader {
    /// Views the first 61 bytes of `bytes` as a header (None if too short).
    pub fn parse(bytes: &[u8]) -> Option<&BatchHeader> {
        BatchHeader::ref_from_prefix(bytes)
            .ok()
            .map(|(header, _)| header)
    }

    /// Mutable view of the first 61 bytes of `bytes` (None if too short).
    pub fn parse_mut(bytes: &mut [u8]) -> Option<&mut BatchHeader> {
        BatchHeader::mut_from_prefix(bytes)
            .ok()
            .map(|(header, _)| header)
    }

    /// `baseOffset`.
    pub fn base_offset(&self) -> i64 {
        self.base_offset.get()
    }
    /// `batchLength` (bytes after the length field).
    pub fn batch_length(&self) -> i32 {
        self.batch_length.get()
    }
    /// `partitionLeaderEpoch`.
    pub fn partition_leader_epoch(&self) -> i32 {
        self.partition_leader_epoch.get()
    }
    /// `magic`.
    pub fn magic(&self) -> i8 {
        self.magic
    }
    /// `crc` (CRC32C of attributes..end).
    pub fn crc(&self) -> u32 {
        self.crc.get()
    }
    /// `attributes`.
    pub fn attributes(&self) -> i16 {
        self.attributes.get()
    }
    /// `lastOffsetDelta`.
    pub fn last_offset_delta(&self) -> i32 {
        self.last_offset_delta.get()
    }
    /// `baseTimestamp`.
    pub fn base_timestamp(&self) -> i64 {
        self.base_timestamp.get()
    }
    /// `maxTimestamp`.
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp.get()
    }
    /// `producerId`.
    pub fn producer_id(&self) -> i64 {
        self.producer_id.get()
    }
    /// `producerEpoch`.
    pub fn producer_epoch(&self) -> i16 {
        self.producer_epoch.get()
    }
    /// `baseSequence`.
    pub fn base_sequence(&self) -> i32 {
        self.base_sequence.get()
    }
    /// `recordsCount`.
    pub fn records_count(&self) -> i32 {
        self.records_count.get()
    }
    /// Total size of the batch including the 12-byte log overhead (None if negative).
    pub fn total_len(&self) -> Option<usize> {
        usize::try_from(self.batch_length())
            .ok()
            .and_then(|len| len.checked_add(LOG_OVERHEAD))
    }
    /// The compression codec.
    pub fn compression(&self) -> Option<Compression> {
        Compression::from_attributes(self.attributes())
    }
    /// Offset of the last record (`baseOffset + lastOffsetDelta`).
    pub fn last_offset(&self) -> i64 {
        self.base_offset()
            .saturating_add(i64::from(self.last_offset_delta()))
    }

    /// Sets `baseOffset` (outside the CRC'd range).
    pub fn set_base_offset(&mut self, offset: i64) {
        self.base_offset.set(offset);
    }
    /// Sets `partitionLeaderEpoch` (outside the CRC'd range).
    pub fn set_partition_leader_epoch(&mut self, epoch: i32) {
        self.partition_leader_epoch.set(epoch);
    }
    /// Sets `maxTimestamp`; the CRC must be recomputed afterwards.
    pub fn set_max_timestamp(&mut self, timestamp: i64) {
        self.max_timestamp.set(timestamp);
    }
    /// Sets `attributes`; the CRC must be recomputed afterwards.
    pub fn set_attributes(&mut self, attributes: i16) {
        self.attributes.set(attributes);
    }
    /// Sets `crc`.
    pub fn set_crc(&mut self, crc: u32) {
        self.crc.set(crc);
    }
}

/// Compression codec of a batch (attribute bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Uncompressed.
    None,
    /// gzip.
    Gzip,
    /// snappy.
    Snappy,
    /// lz4.
    Lz4,
    /// zstd.
    Zstd,
}

impl Compression {
    /// Decodes attribute bits 0-2 (None for the unassigned codes 5-7).
    pub fn from_attributes(attributes: i16) -> Option<Compression> {
        match attributes & ATTR_COMPRESSION_MASK {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// What validation learned about one batch, without copying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSummary {
    /// Position of the batch in the validated input.
    pub position: usize,
    /// Total size including the 12-byte log overhead.
    pub length: usize,
    /// `baseOffset` as found (producers send 0).
    pub base_offset: i64,
    /// `lastOffsetDelta`.
    pub last_offset_delta: i32,
    /// `recordsCount`.
    pub records_count: i32,
    /// `baseTimestamp`.
    pub base_timestamp: i64,
    /// `maxTimestamp`.
    pub max_timestamp: i64,
    /// `partitionLeaderEpoch` as found.
    pub partition_leader_epoch: i32,
    /// Compression codec.
    pub compression: Compression,
    /// Raw attributes.
    pub attributes: i16,
    /// `producerId`.
    pub producer_id: i64,
    /// `producerEpoch`.
    pub producer_epoch: i16,
    /// `baseSequence`.
    pub base_sequence: i32,
}

impl BatchSummary {
    /// True if attribute bit 4 (transactional) is set.
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }
    /// True if attribute bit 5 (control batch) is set.
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
    /// True if attribute bit 3 (LogAppendTime) is set.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }
}

/// Validates the single batch that starts at `position` in `bytes` and returns its summary.
/// `bytes[position..]` may hold more batches after it.
pub fn validate_batch_at(bytes: &[u8], position: usize) -> Result<BatchSummary, BatchError> {
    validate_batch_inner(bytes, position, false)
}

/// Like [`validate_batch_at`], for batches read back from a log: a batch rewritten by log
/// compaction keeps its `lastOffsetDelta` (so offsets and producer sequences survive) while
/// some or all of its records are gone, so `0 <= recordsCount <= lastOffsetDelta + 1` is
/// accepted (Kafka's cleaner writes such batches too).
pub fn validate_stored_batch_at(bytes: &[u8], position: usize) -> Result<BatchSummary, BatchError> {
    validate_batch_inner(bytes, position, true)
}

fn validate_batch_inner(
    bytes: &[u8],
    position: usize,
    stored: bool,
) -> Result<BatchSummary, BatchError> {
    let rest = bytes.get(position..).unwrap_or(&[]);
    // The magic byte sits at the same place in every message format, so check it first: an
    // old-format message set is then reported as such rather than as a length error.
    if let Some(&magic) = rest.get(MAGIC_OFFSET) {
        let magic = magic as i8;
        if magic != MAGIC_V2 && rest.len() >= LOG_OVERHEAD {
            return Err(BatchError::BadMagic(magic));
        }
    }
    let header = BatchHeader::parse(rest).ok_or(BatchError::TooShort {
        position,
        available: rest.len(),
    })?;
    let batch_length = header.batch_length();
    let available = rest.len() - LOG_OVERHEAD;
    let total = match header.total_len() {
        Some(total) if batch_length >= MIN_BATCH_LENGTH && total <= rest.len() => total,
        _ => {
            return Err(BatchError::BadLength {
                position,
                batch_length,
                available,
            })
        }
    };
    let batch = &rest[..total];
    let records_count = header.records_count();
    let last_offset_delta = header.last_offset_delta();
    let count_ok = if stored {
        records_count >= 0 && i64::from(records_count) <= i64::from(last_offset_delta) + 1
    } else {
        records_count >= 1 && i64::from(last_offset_delta) + 1 == i64::from(records_count)
    };
    if !count_ok {
        return Err(BatchError::RecordCountMismatch {
            records_count,
            last_offset_delta,
        });
    }
    let attributes = header.attributes();
    let compression = Compression::from_attributes(attributes).ok_or(
        BatchError::UnknownCompression((attributes & ATTR_COMPRESSION_MASK) as u8),
    )?;
    let actual = crc32c::crc32c(&batch[CRC_RANGE_START..]);
    if actual != header.crc() {
        return Err(BatchError::BadCrc {
            expected: header.crc(),
            actual,
        });
    }
    if compression == Compression::None {
        check_record_framing(&batch[BATCH_HEADER_LEN..], records_count)
            .map_err(|reason| BatchError::InvalidRecords { position, reason })?;
    }
    Ok(BatchSummary {
        position,
        length: total,
        base_offset: header.base_offset(),
        last_offset_delta,
        records_count,
        base_timestamp: header.base_timestamp(),
        max_timestamp: header.max_timestamp(),
        partition_leader_epoch: header.partition_leader_epoch(),
        compression,
        attributes,
        producer_id: header.producer_id(),
        producer_epoch: header.producer_epoch(),
        base_sequence: header.base_sequence(),
    })
}

/// Validates every batch in `records` (concatenated batches as in a ProduceRequest partition)
/// and returns per-batch summaries. Fails on the first invalid batch, on trailing bytes that do
/// not form a whole batch, and on empty input.
pub fn validate_batches(records: &[u8]) -> Result<Vec<BatchSummary>, BatchError> {
    if records.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut summaries = Vec::new();
    let mut position = 0;
    while position < records.len() {
        let summary = validate_batch_at(records, position)?;
        position += summary.length;
        summaries.push(summary);
    }
    Ok(summaries)
}

/// Walks the records of an uncompressed batch: each starts with a zigzag varint length.
fn check_record_framing(mut records: &[u8], records_count: i32) -> Result<(), RecordsError> {
    for _ in 0..records_count {
        let (length, used) = read_varint(records).ok_or(RecordsError::BadLength)?;
        let length = usize::try_from(length).map_err(|_| RecordsError::BadLength)?;
        let end = used.checked_add(length).ok_or(RecordsError::Overrun)?;
        records = records.get(end..).ok_or(RecordsError::Overrun)?;
    }
    if records.is_empty() {
        Ok(())
    } else {
        Err(RecordsError::TrailingBytes)
    }
}

/// Reads a zigzag-encoded varint (i32). Returns the value and the bytes used.
pub fn read_varint(bytes: &[u8]) -> Option<(i32, usize)> {
    let (raw, used) = read_unsigned_varint(bytes, 5)?;
    let raw = u32::try_from(raw).ok()?;
    Some((((raw >> 1) as i32) ^ -((raw & 1) as i32), used))
}

/// Reads a zigzag-encoded varlong (i64). Returns the value and the bytes used.
pub fn read_varlong(bytes: &[u8]) -> Option<(i64, usize)> {
    let (raw, used) = read_unsigned_varint(bytes, 10)?;
    Some((((raw >> 1) as i64) ^ -((raw & 1) as i64), used))
}

fn read_unsigned_varint(bytes: &[u8], max_len: usize) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (index, &byte) in bytes.iter().take(max_len).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Some((value, index + 1));
        }
    }
    None
}

/// Assigns offsets to validated batches in `records` (patching `baseOffset` and
/// `partitionLeaderEpoch`), and with `log_append_time` also `maxTimestamp` plus attribute
/// bit 3, recomputing the CRC. Returns the offset after the last batch.
///
/// `summaries` must come from [`validate_batches`] on the same bytes.
pub fn assign_offsets(
    records: &mut [u8],
    summaries: &[BatchSummary],
    first_offset: Offset,
    leader_epoch: LeaderEpoch,
    log_append_time: Option<TimestampMs>,
) -> Option<Offset> {
    let mut next = first_offset;
    for summary in summaries {
        let end = summary.position.checked_add(summary.length)?;
        let batch = records.get_mut(summary.position..end)?;
        let header = BatchHeader::parse_mut(batch)?;
        header.set_base_offset(next.0);
        header.set_partition_leader_epoch(leader_epoch.0);
        if let Some(now) = log_append_time {
            header.set_max_timestamp(now.0);
            header.set_attributes(header.attributes() | ATTR_LOG_APPEND_TIME);
            let crc = crc32c::crc32c(&batch[CRC_RANGE_START..]);
            if let Some(header) = BatchHeader::parse_mut(batch) {
                header.set_crc(crc);
            }
        }
        next = next.checked_add(i64::from(summary.last_offset_delta) + 1)?;
    }
    Some(next)
}

/// One record decoded from an uncompressed batch (only what offset-for-timestamp needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPosition {
    /// `offsetDelta`.
    pub offset_delta: i32,
    /// `timestampDelta`.
    pub timestamp_delta: i64,
}

/// Decodes the offset and timestamp deltas of every record of an uncompressed batch (`batch`
/// is the whole batch, header included). None if the framing is malformed.
pub fn record_positions(batch: &[u8]) -> Option<Vec<RecordPosition>> {
    let header = BatchHeader::parse(batch)?;
    let mut rest = batch.get(BATCH_HEADER_LEN..header.total_len()?)?;
    let count = usize::try_from(header.records_count()).ok()?;
    let mut out = Vec::with_capacity(count.min(rest.len()));
    for _ in 0..count {
        let (length, used) = read_varint(rest)?;
        let length = usize::try_from(length).ok()?;
        let body = rest.get(used..used.checked_add(length)?)?;
        // attributes (1 byte), timestampDelta (varlong), offsetDelta (varint)
        let body_rest = body.get(1..)?;
        let (timestamp_delta, ts_used) = read_varlong(body_rest)?;
        let (offset_delta, _) = read_varint(body_rest.get(ts_used..)?)?;
        out.push(RecordPosition {
            offset_delta,
            timestamp_delta,
        });
        rest = rest.get(used + length..)?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testing::{batch_with_values, BatchBuilder};

    fn one() -> Vec<u8> {
        batch_with_values(&[b"hello", b"world"], TimestampMs(1_000)).to_vec()
    }

    #[test]
    fn valid_batch_is_accepted() {
        let bytes = one();
        let summaries = validate_batches(&bytes).unwrap();
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].records_count, 2);
        assert_eq!(summaries[0].last_offset_delta, 1);
        assert_eq!(summaries[0].length, bytes.len());
        assert_eq!(summaries[0].compression, Compression::None);
    }

    #[test]
    fn several_batches_are_split() {
        let mut bytes = one();
        bytes.extend_from_slice(&one());
        bytes.extend_from_slice(&batch_with_values(&[b"x"], TimestampMs(5)));
        let summaries = validate_batches(&bytes).unwrap();
        assert_eq!(summaries.len(), 3);
        assert_eq!(summaries[1].position, summaries[0].length);
        assert_eq!(summaries[2].records_count, 1);
    }

    #[test]
    fn empty_input_is_rejected() {
        assert_eq!(validate_batches(&[]), Err(BatchError::Empty));
    }

    #[test]
    fn bad_crc_is_rejected() {
        let mut bytes = one();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        assert!(matches!(
            validate_batches(&bytes),
            Err(BatchError::BadCrc { .. })
        ));
    }

    #[test]
    fn bad_magic_is_rejected() {
        let mut bytes = one();
        bytes[MAGIC_OFFSET] = 1;
        assert_eq!(validate_batches(&bytes), Err(BatchError::BadMagic(1)));
    }

    #[test]
    fn count_mismatch_is_rejected() {
        let mut bytes = one();
        // recordsCount is the last header field; CRC must be fixed so only the count is wrong.
        bytes[57..61].copy_from_slice(&3i32.to_be_bytes());
        let crc = crc32c::crc32c(&bytes[CRC_RANGE_START..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            validate_batches(&bytes),
            Err(BatchError::RecordCountMismatch {
                records_count: 3,
                last_offset_delta: 1
            })
        );
    }

    #[test]
    fn zero_count_is_rejected() {
        let mut bytes = one();
        bytes[23..27].copy_from_slice(&(-1i32).to_be_bytes());
        bytes[57..61].copy_from_slice(&0i32.to_be_bytes());
        let crc = crc32c::crc32c(&bytes[CRC_RANGE_START..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate_batches(&bytes),
            Err(BatchError::RecordCountMismatch { .. })
        ));
    }

    #[test]
    fn truncated_batch_is_rejected() {
        let bytes = one();
        assert!(matches!(
            validate_batches(&bytes[..bytes.len() - 1]),
            Err(BatchError::BadLength { .. })
        ));
        assert!(matches!(
            validate_batches(&bytes[..40]),
            Err(BatchError::TooShort { .. })
        ));
        let mut two = one();
        two.extend_from_slice(&[0u8; 5]);
        assert!(matches!(
            validate_batches(&two),
            Err(BatchError::TooShort { .. })
        ));
    }

    #[test]
    fn short_batch_length_is_rejected() {
        let mut bytes = one();
        bytes[8..12].copy_from_slice(&10i32.to_be_bytes());
        assert!(matches!(
            validate_batches(&bytes),
            Err(BatchError::BadLength {
                batch_length: 10,
                ..
            })
        ));
    }

    #[test]
    fn bad_record_framing_is_rejected() {
        let mut bytes = one();
        // First record length varint: make it huge, then fix the CRC.
        bytes[BATCH_HEADER_LEN] = 0x7e;
        let crc = crc32c::crc32c(&bytes[CRC_RANGE_START..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate_batches(&bytes),
            Err(BatchError::InvalidRecords { .. })
        ));
    }

    #[test]
    fn unknown_compression_is_rejected() {
        let mut bytes = one();
        bytes[22] |= 0x07;
        let crc = crc32c::crc32c(&bytes[CRC_RANGE_START..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            validate_batches(&bytes),
            Err(BatchError::UnknownCompression(7))
        );
    }

    #[test]
    fn offsets_are_assigned_and_crc_kept() {
        let mut bytes = one();
        bytes.extend_from_slice(&batch_with_values(&[b"a", b"b", b"c"], TimestampMs(7)));
        let summaries = validate_batches(&bytes).unwrap();
        let next = assign_offsets(&mut bytes, &summaries, Offset(100), LeaderEpoch(4), None);
        assert_eq!(next, Some(Offset(105)));
        let again = validate_batches(&bytes).unwrap();
        assert_eq!(again[0].base_offset, 100);
        assert_eq!(again[1].base_offset, 102);
        assert_eq!(again[1].partition_leader_epoch, 4);
        assert!(!again[0].is_log_append_time());
    }

    #[test]
    fn log_append_time_rewrites_crc() {
        let mut bytes = one();
        let summaries = validate_batches(&bytes).unwrap();
        assign_offsets(
            &mut bytes,
            &summaries,
            Offset(0),
            LeaderEpoch(1),
            Some(TimestampMs(99_999)),
        );
        let again = validate_batches(&bytes).unwrap();
        assert_eq!(again[0].max_timestamp, 99_999);
        assert!(again[0].is_log_append_time());
    }

    #[test]
    fn record_positions_decode() {
        let batch = BatchBuilder::new(TimestampMs(1_000))
            .record_at(TimestampMs(1_000), None, Some(b"a"))
            .record_at(TimestampMs(1_500), Some(b"k"), Some(b"b"))
            .build();
        let positions = record_positions(&batch).unwrap();
        assert_eq!(positions.len(), 2);
        assert_eq!(positions[1].offset_delta, 1);
        assert_eq!(positions[1].timestamp_delta, 500);
    }

    #[test]
    fn varints_round_trip() {
        for value in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            -300,
            i32::MAX as i64,
            i64::MIN,
        ] {
            let mut buf = Vec::new();
            crate::testing::write_varlong(&mut buf, value);
            assert_eq!(read_varlong(&buf), Some((value, buf.len())));
        }
        assert_eq!(read_varint(&[0x80, 0x80]), None);
    }
}
