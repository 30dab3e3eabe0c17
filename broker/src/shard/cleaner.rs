//! The log cleaner of one shard: every `log.cleaner.backoff.ms` it runs a compaction pass
//! ([`vaart_engine::PartitionLog::compact`]) on each partition it owns whose topic has
//! `cleanup.policy` containing `compact` (`__consumer_offsets` included). The pass only
//! rewrites anything when the partition's dirty ratio reaches `min.cleanable.dirty.ratio`.
//! Runs in its own low-priority task queue so it never delays produce and fetch.
//!
//! Compressed batches are compacted too: [`KafkaCodec`] gives the engine kafka-protocol's
//! codecs (decompression bounded like the timestamp lookup's), so the pass expands a
//! compressed batch, filters its records and re-compresses the kept ones with the same codec.

use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
use kafka_protocol::records::Compression as WireCompression;
use tracing::{debug, warn};
use vaart_engine::{CodecError, CompactionConfig, Compression, RecordsCodec, TimestampMs};

use super::timestamp_lookup::{decompress_bounded, DECOMPRESSED_BYTES_MAX};
use super::Shard;

/// kafka-protocol's codecs for the engine's compaction.
pub struct KafkaCodec;

impl RecordsCodec for KafkaCodec {
    fn decompress(&self, compression: Compression, data: &[u8]) -> Result<Vec<u8>, CodecError> {
        let wire = match compression {
            Compression::None => WireCompression::None,
            Compression::Gzip => WireCompression::Gzip,
            Compression::Snappy => WireCompression::Snappy,
            Compression::Lz4 => WireCompression::Lz4,
            Compression::Zstd => WireCompression::Zstd,
        };
        decompress_bounded(wire, data, DECOMPRESSED_BYTES_MAX)
            .map(|bytes| bytes.to_vec())
            .map_err(|err| CodecError {
                compression,
                source: Box::new(err),
            })
    }

    fn compress(&self, compression: Compression, records: &[u8]) -> Result<Vec<u8>, CodecError> {
        let mut out = BytesMut::new();
        let write = |buf: &mut BytesMut| {
            buf.put_slice(records);
            Ok(())
        };
        let result = match compression {
            Compression::None => {
                out.put_slice(records);
                Ok(())
            }
            Compression::Gzip => Gzip::compress(&mut out, write),
            Compression::Snappy => Snappy::compress(&mut out, write),
            Compression::Lz4 => Lz4::compress(&mut out, write),
            Compression::Zstd => Zstd::compress(&mut out, write),
        };
        result.map_err(|err| CodecError {
            compression,
            source: err.into(),
        })?;
        Ok(out.to_vec())
    }
}

/// Shares of the cleaner's task queue (the default queue has 1000).
const CLEANER_SHARES: usize = 25;

fn now_ms() -> TimestampMs {
    TimestampMs(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0),
    )
}

impl Shard {
    /// Starts the log cleaner task (unless `log.cleaner.enable` is false).
    pub fn start_log_cleaner(self: &Rc<Self>) {
        if !self.config.log_cleaner_enable {
            return;
        }
        let interval = Duration::from_millis(self.config.log_cleaner_backoff_ms);
        self.spawn_periodic(
            "log-cleaner",
            CLEANER_SHARES,
            interval,
            |shard| async move {
                shard.clean_once().await;
            },
        );
    }

    /// One compaction pass over every compacted partition of this shard.
    async fn clean_once(&self) {
        for state in self.partitions.all() {
            if self.shutdown.is_set() {
                return;
            }
            let settings = state.settings();
            if !settings.cleanup_compact {
                continue;
            }
            let config = CompactionConfig {
                delete_retention_ms: settings.delete_retention_ms,
                min_compaction_lag_ms: settings.min_compaction_lag_ms,
                min_cleanable_dirty_ratio: settings.min_cleanable_dirty_ratio,
                ..CompactionConfig::default()
            };
            match state
                .log
                .compact_with_codec(now_ms(), &config, Some(&KafkaCodec))
                .await
            {
                Ok(report) if report.ran => debug!(
                    topic = %state.topic, partition = state.key.partition,
                    segments = report.segments_rewritten, bytes_before = report.bytes_before,
                    bytes_after = report.bytes_after, "log cleaner pass"
                ),
                Ok(_) => {}
                Err(err) => {
                    warn!(topic = %state.topic, partition = state.key.partition, error = %err, "log compaction failed")
                }
            }
            glommio::yield_if_needed().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips() {
        let records: Vec<u8> = (0..5000u32).flat_map(|i| (i % 7).to_be_bytes()).collect();
        for compression in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let packed = KafkaCodec
                .compress(compression, &records)
                .expect("compress");
            assert!(packed.len() < records.len(), "{compression:?}");
            let unpacked = KafkaCodec
                .decompress(compression, &packed)
                .expect("decompress");
            assert_eq!(unpacked, records, "{compression:?}");
        }
    }
}
