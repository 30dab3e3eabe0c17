//! ListOffsets lookups by time that need the records of a compressed batch.
//!
//! The engine answers "first record with timestamp >= T" exactly for uncompressed batches but,
//! never decompressing, with the batch's base offset and max timestamp for compressed ones.
//! Kafka decompresses that one batch and answers with the first record at or after T and that
//! record's own timestamp; so do we: the engine's answer names the batch, and this module reads
//! it and decodes its records with kafka-protocol's `RecordBatchDecoder` on a blocking thread
//! (off the shard), with a bound on the decompressed size so a decompression bomb costs at most
//! [`DECOMPRESSED_BYTES_MAX`]. If the batch cannot be decoded, the engine's answer stands.
//!
//! Max timestamp (ListOffsets v7+, `-3`): the largest timestamp in the log and the first record
//! that carries it, found by a binary search over timestamps with the engine's lookup.

use std::io::Read;

use bytes::Bytes;
use kafka_protocol::records::{Compression as WireCompression, RecordBatchDecoder};
use thiserror::Error;
use tracing::warn;
use vaart_engine::{BatchHeader, Compression, LogError, Offset, PartitionLog, TimestampMs};

/// Largest decompressed size of a batch decoded for a lookup.
pub const DECOMPRESSED_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Largest record count of a batch decoded for a lookup (a record is at least 7 bytes).
const RECORDS_MAX: i32 = (DECOMPRESSED_BYTES_MAX / 7) as i32;
/// Attribute bit 3: LogAppendTime (every record carries the batch's max timestamp).
const ATTR_LOG_APPEND_TIME: i16 = 0x08;
/// xerial snappy-java framing, which Kafka uses for snappy batches.
const SNAPPY_XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const SNAPPY_XERIAL_HEADER_BYTES: usize = 16;

/// A found record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Its offset.
    pub offset: Offset,
    /// Its timestamp.
    pub timestamp: TimestampMs,
    /// The partition leader epoch of its batch, if known.
    pub leader_epoch: Option<i32>,
}

/// Why a batch could not be decoded (the lookup then keeps the engine's batch-level answer).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The decompressed data would exceed [`DECOMPRESSED_BYTES_MAX`].
    #[error("batch decompresses to more than {max} bytes")]
    TooLarge {
        /// The bound.
        max: usize,
    },
    /// The batch claims more records than any batch of the size limit can hold.
    #[error("batch claims {0} records")]
    TooManyRecords(i32),
    /// A codec failed.
    #[error("decompressing: {0}")]
    Io(#[from] std::io::Error),
    /// snappy failed.
    #[error("snappy: {0}")]
    Snappy(#[from] snap::Error),
    /// A truncated snappy block.
    #[error("truncated snappy block")]
    TruncatedSnappy,
    /// kafka-protocol could not decode the records.
    #[error("decoding records: {0}")]
    Records(String),
    /// The blocking decode task did not complete.
    #[error("the decode task failed")]
    Task,
}

/// Kafka's ListOffsets by timestamp: the first record (at or after the log start) whose
/// timestamp is `>= target`, with its own timestamp, also inside compressed batches.
pub async fn offset_for_timestamp(
    log: &PartitionLog,
    target: TimestampMs,
) -> Result<Option<Found>, LogError> {
    let Some((offset, timestamp)) = log.offset_for_timestamp(target).await? else {
        return Ok(None);
    };
    let engine_answer = Found {
        offset,
        timestamp,
        leader_epoch: None,
    };
    let Some(batch) = load_batch(log, offset).await? else {
        return Ok(Some(engine_answer));
    };
    let Some(header) = BatchHeader::parse(&batch) else {
        return Ok(Some(engine_answer));
    };
    let leader_epoch = Some(header.partition_leader_epoch()).filter(|e| *e >= 0);
    let engine_answer = Found {
        leader_epoch,
        ..engine_answer
    };
    let exact_already = header.compression() == Some(Compression::None)
        || header.attributes() & ATTR_LOG_APPEND_TIME != 0;
    if exact_already {
        return Ok(Some(engine_answer));
    }
    let decoded = glommio::executor()
        .spawn_blocking(move || first_record_at_or_after(batch, offset.0, target.0))
        .await;
    match decoded {
        Ok(Some((offset, timestamp))) => Ok(Some(Found {
            offset: Offset(offset),
            timestamp: TimestampMs(timestamp),
            leader_epoch,
        })),
        Ok(None) => Ok(Some(engine_answer)),
        Err(err) => {
            warn!(offset = offset.0, error = %err, "cannot decode a compressed batch for ListOffsets; answering with the batch's first offset");
            Ok(Some(engine_answer))
        }
    }
}

/// Kafka's ListOffsets max timestamp (`-3`): the first record with the largest timestamp in
/// the log. None for an empty log.
pub async fn offset_of_max_timestamp(log: &PartitionLog) -> Result<Option<Found>, LogError> {
    // Invariant: a record with timestamp `low` exists; none has a timestamp >= `high`.
    let Some((_, first)) = log.offset_for_timestamp(TimestampMs(i64::MIN)).await? else {
        return Ok(None);
    };
    let mut low = first.0;
    if log
        .offset_for_timestamp(TimestampMs(i64::MAX))
        .await?
        .is_some()
    {
        low = i64::MAX;
    } else {
        let mut high = i64::MAX;
        while high.saturating_sub(low) > 1 {
            let middle = low + (high - low) / 2;
            match log.offset_for_timestamp(TimestampMs(middle)).await? {
                // The engine answers with a timestamp that exists (a record's, or a batch's max).
                Some((_, found)) => low = found.0.max(middle),
                None => high = middle,
            }
        }
    }
    offset_for_timestamp(log, TimestampMs(low)).await
}

/// The whole batch that holds `offset`, if the log still has it.
async fn load_batch(log: &PartitionLog, offset: Offset) -> Result<Option<Bytes>, LogError> {
    let Ok(result) = log.read(offset, 1, log.log_end_offset()) else {
        return Ok(None);
    };
    // Whole batches per buffer (hot-tail chunks may split a batch).
    let Some(bytes) = result.load_contiguous().await?.into_iter().next() else {
        return Ok(None);
    };
    let Some(total) = BatchHeader::parse(&bytes).and_then(BatchHeader::total_len) else {
        return Ok(None);
    };
    Ok(bytes.get(..total).map(|_| bytes.slice(..total)))
}

/// Decodes `batch` and returns (offset, timestamp) of its first record with offset `>=
/// min_offset` and timestamp `>= target`.
pub fn first_record_at_or_after(
    batch: Bytes,
    min_offset: i64,
    target: i64,
) -> Result<Option<(i64, i64)>, DecodeError> {
    if let Some(header) = BatchHeader::parse(&batch) {
        let count = header.records_count();
        if count > RECORDS_MAX {
            return Err(DecodeError::TooManyRecords(count));
        }
    }
    let mut buf = batch;
    let decompress = |data: &mut Bytes, codec: WireCompression| -> anyhow::Result<Bytes> {
        Ok(decompress_bounded(codec, data, DECOMPRESSED_BYTES_MAX)?)
    };
    let set = RecordBatchDecoder::decode_with_custom_compression(&mut buf, Some(decompress))
        .map_err(|err| DecodeError::Records(err.to_string()))?;
    Ok(set
        .records
        .iter()
        .find(|r| r.offset >= min_offset && r.timestamp >= target)
        .map(|r| (r.offset, r.timestamp)))
}

/// Decompresses a batch's record data, refusing to produce more than `max` bytes.
pub fn decompress_bounded(
    codec: WireCompression,
    data: &[u8],
    max: usize,
) -> Result<Bytes, DecodeError> {
    match codec {
        WireCompression::None => {
            if data.len() > max {
                return Err(DecodeError::TooLarge { max });
            }
            Ok(Bytes::copy_from_slice(data))
        }
        WireCompression::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(data), max),
        WireCompression::Zstd => read_bounded(zstd::stream::read::Decoder::new(data)?, max),
        WireCompression::Lz4 => read_bounded(lz4::Decoder::new(data)?, max),
        WireCompression::Snappy => snappy_bounded(data, max),
    }
}

fn read_bounded(reader: impl Read, max: usize) -> Result<Bytes, DecodeError> {
    let mut out = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(limit).read_to_end(&mut out)?;
    if out.len() > max {
        return Err(DecodeError::TooLarge { max });
    }
    Ok(Bytes::from(out))
}

/// Kafka's snappy: xerial framing (magic header, then length-prefixed raw blocks), or a single
/// raw block without the header.
fn snappy_bounded(data: &[u8], max: usize) -> Result<Bytes, DecodeError> {
    let mut out = Vec::new();
    let mut decoder = snap::raw::Decoder::new();
    let mut append_block = |block: &[u8], out: &mut Vec<u8>| -> Result<(), DecodeError> {
        let length = snap::raw::decompress_len(block)?;
        let start = out.len();
        let end = start
            .checked_add(length)
            .filter(|end| *end <= max)
            .ok_or(DecodeError::TooLarge { max })?;
        out.resize(end, 0);
        let target = out
            .get_mut(start..end)
            .ok_or(DecodeError::TruncatedSnappy)?;
        decoder.decompress(block, target)?;
        Ok(())
    };
    if !data.starts_with(SNAPPY_XERIAL_MAGIC) {
        append_block(data, &mut out)?;
        return Ok(Bytes::from(out));
    }
    let mut rest = data
        .get(SNAPPY_XERIAL_HEADER_BYTES..)
        .ok_or(DecodeError::TruncatedSnappy)?;
    while !rest.is_empty() {
        let length_bytes: [u8; 4] = rest
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(DecodeError::TruncatedSnappy)?;
        let length = usize::try_from(u32::from_be_bytes(length_bytes))
            .map_err(|_| DecodeError::TruncatedSnappy)?;
        let block = rest
            .get(4..4usize.saturating_add(length))
            .ok_or(DecodeError::TruncatedSnappy)?;
        append_block(block, &mut out)?;
        rest = rest.get(4 + length..).unwrap_or_default();
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

    fn batch(codec: WireCompression, base_offset: i64, timestamps: &[i64]) -> Bytes {
        let records: Vec<Record> = timestamps
            .iter()
            .enumerate()
            .map(|(i, ts)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: base_offset + i as i64,
                // offset - sequence must stay constant for the encoder to keep one batch.
                sequence: i as i32,
                timestamp: *ts,
                key: None,
                value: Some(Bytes::from(vec![b'x'; 200])),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: codec,
            },
        )
        .expect("encode");
        buf.freeze()
    }

    #[test]
    fn finds_the_first_record_at_or_after_the_target_with_every_codec() {
        for codec in [
            WireCompression::None,
            WireCompression::Gzip,
            WireCompression::Snappy,
            WireCompression::Lz4,
            WireCompression::Zstd,
        ] {
            let data = batch(codec, 10, &[100, 105, 103, 110, 120]);
            let at =
                |min, target| first_record_at_or_after(data.clone(), min, target).expect("decode");
            assert_eq!(at(10, 104), Some((11, 105)), "{codec:?}");
            assert_eq!(at(10, 100), Some((10, 100)), "{codec:?}");
            assert_eq!(at(12, 100), Some((12, 103)), "{codec:?}");
            assert_eq!(at(10, 121), None, "{codec:?}");
        }
    }

    #[test]
    fn decompression_is_bounded() {
        let big = vec![0u8; 1 << 20];
        let mut compressed = Vec::new();
        {
            use std::io::Write;
            let mut encoder =
                flate2::write::GzEncoder::new(&mut compressed, flate2::Compression::best());
            encoder.write_all(&big).expect("compress");
            encoder.finish().expect("finish");
        }
        assert!(matches!(
            decompress_bounded(WireCompression::Gzip, &compressed, 1000),
            Err(DecodeError::TooLarge { max: 1000 })
        ));
        assert_eq!(
            decompress_bounded(WireCompression::Gzip, &compressed, 1 << 20)
                .expect("fits")
                .len(),
            1 << 20
        );
        let raw = snap::raw::Encoder::new()
            .compress_vec(&big)
            .expect("snappy");
        assert!(matches!(
            decompress_bounded(WireCompression::Snappy, &raw, 1000),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = first_record_at_or_after(Bytes::from(bytes.clone()), 0, 0);
            for codec in [WireCompression::Gzip, WireCompression::Snappy, WireCompression::Lz4, WireCompression::Zstd] {
                let _ = decompress_bounded(codec, &bytes, 4096);
            }
        }
    }
}
