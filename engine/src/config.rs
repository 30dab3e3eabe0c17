//! Per-log configuration. Kafka-named settings keep Kafka's names (in snake case) and defaults.

/// How the broker stamps the batch's max timestamp (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// Keep the producer's timestamps (Kafka's default).
    #[default]
    CreateTime,
    /// Overwrite the batch max timestamp with the append time and set attribute bit 3.
    LogAppendTime,
}

/// Default `segment.bytes`: 1 GiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 1 << 30;
/// Default `segment.ms` and `retention.ms`: 7 days.
pub const DEFAULT_SEVEN_DAYS_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Default `max.message.bytes` (1 MiB plus record batch overhead).
pub const DEFAULT_MAX_MESSAGE_BYTES: u32 = 1_048_588;
/// Lower bound of the unwritten-bytes limit (see [`LogConfig::unwritten_bytes_max`]).
pub const UNWRITTEN_BYTES_MAX_FLOOR: usize = 64 << 20;
/// Default of [`LogConfig::write_linger_us`].
pub const DEFAULT_WRITE_LINGER_US: u64 = 2_000;

/// Configuration of one partition log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Kafka `segment.bytes`: roll when the active segment would exceed this size.
    pub segment_bytes: u64,
    /// Kafka `segment.ms`: roll when the active segment's first append is older than this.
    pub segment_ms: i64,
    /// Kafka `retention.ms`; -1 = unlimited.
    pub retention_ms: i64,
    /// Kafka `retention.bytes`; -1 = unlimited.
    pub retention_bytes: i64,
    /// Kafka `index.interval.bytes`: spacing of time-index entries. (The offset index has one
    /// entry per batch so that reads find batch boundaries without I/O; see FORMAT.md.)
    pub index_interval_bytes: u32,
    /// fdatasync after this many appended bytes (None = never by size).
    pub flush_interval_bytes: Option<u64>,
    /// Kafka `flush.ms`: fdatasync at least this often while data is unsynced (None = never).
    pub flush_interval_ms: Option<u64>,
    /// Kafka `max.message.bytes`: the largest accepted batch.
    pub max_message_bytes: u32,
    /// Kafka `message.timestamp.type`.
    pub message_timestamp_type: TimestampType,
    /// Target size of one coalesced write (group commit), rounded up to 4 KiB.
    pub write_coalesce_bytes: usize,
    /// A write of less than half of `write_coalesce_bytes` waits up to this long (from the
    /// oldest append it would carry) for more appends; 0 = write as soon as a whole page is
    /// ready. Flushes, rolls and closes never wait. Small O_DIRECT writes cost several times
    /// more CPU per byte than large ones (DESIGN.md, section 3), and on ext4 each one also
    /// costs an unwritten-extent conversion on completion.
    pub write_linger_us: u64,
    /// Written data kept in memory for zero-copy reads of the hot tail.
    pub hot_tail_bytes: usize,
}

impl LogConfig {
    /// Appended-but-unwritten bytes above which `append` returns `Backpressure`:
    /// the larger of `hot_tail_bytes` and 64 MiB. (A single append is always accepted when
    /// nothing is waiting for the disk.)
    pub fn unwritten_bytes_max(&self) -> usize {
        self.hot_tail_bytes.max(UNWRITTEN_BYTES_MAX_FLOOR)
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            segment_ms: DEFAULT_SEVEN_DAYS_MS,
            retention_ms: DEFAULT_SEVEN_DAYS_MS,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            flush_interval_bytes: None,
            flush_interval_ms: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            message_timestamp_type: TimestampType::CreateTime,
            write_coalesce_bytes: 1 << 20,
            write_linger_us: DEFAULT_WRITE_LINGER_US,
            hot_tail_bytes: 8 << 20,
        }
    }
}
