//! The log cleaner of one shard: every `log.cleaner.backoff.ms` it runs a compaction pass
//! ([`vaart_engine::PartitionLog::compact`]) on each partition it owns whose topic has
//! `cleanup.policy` containing `compact` (`__consumer_offsets` included). The pass only
//! rewrites anything when the partition's dirty ratio reaches `min.cleanable.dirty.ratio`.
//! Runs in its own low-priority task queue so it never delays produce and fetch.

use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{debug, warn};
use vaart_engine::{CompactionConfig, TimestampMs};

use super::Shard;

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
            match state.log.compact(now_ms(), &config).await {
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
