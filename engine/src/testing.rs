//! Test helpers shared by unit tests, crate tests, other crates' tests and benches: building
//! valid magic-v2 record batches (uncompressed, correct CRC32C) and running a glommio executor.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{
    batch::{BATCH_HEADER_LEN, CRC_RANGE_START, LOG_OVERHEAD, MAGIC_V2},
    types::TimestampMs,
};

struct TestRecord {
    timestamp: TimestampMs,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Builds one uncompressed magic-v2 record batch with a correct CRC.
///
/// ```
/// use vaart_engine::{testing::BatchBuilder, TimestampMs};
/// let batch = BatchBuilder::new(TimestampMs(1_000))
///     .record(Some(b"key"), Some(b"value"))
///     .record(None, Some(b"no key"))
///     .build();
/// assert_eq!(vaart_engine::validate_batches(&batch).unwrap().len(), 1);
/// ```
pub struct BatchBuilder {
    base_timestamp: TimestampMs,
    records: Vec<TestRecord>,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    attributes: i16,
    base_offset: i64,
    partition_leader_epoch: i32,
}

impl BatchBuilder {
    /// A batch whose records default to `base_timestamp`. No producer id (-1), as an
    /// idempotence-free producer sends.
    pub fn new(base_timestamp: TimestampMs) -> BatchBuilder {
        BatchBuilder {
            base_timestamp,
            records: Vec::new(),
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            attributes: 0,
            base_offset: 0,
            partition_leader_epoch: -1,
        }
    }

    /// Adds a record at the batch's base timestamp.
    pub fn record(self, key: Option<&[u8]>, value: Option<&[u8]>) -> BatchBuilder {
        let timestamp = self.base_timestamp;
        self.record_at(timestamp, key, value)
    }

    /// Adds a record with its own timestamp.
    pub fn record_at(
        mut self,
        timestamp: TimestampMs,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> BatchBuilder {
        self.records.push(TestRecord {
            timestamp,
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers: Vec::new(),
        });
        self
    }

    /// Adds a header to the last record added.
    pub fn header(mut self, key: &[u8], value: Option<&[u8]>) -> BatchBuilder {
        if let Some(record) = self.records.last_mut() {
            record
                .headers
                .push((key.to_vec(), value.map(<[u8]>::to_vec)));
        }
        self
    }

    /// Sets producer id, epoch and base sequence (idempotent producer).
    pub fn producer(mut self, id: i64, epoch: i16, base_sequence: i32) -> BatchBuilder {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Sets the raw attributes (e.g. the transactional bit). Compression bits must stay 0:
    /// the records are written uncompressed.
    pub fn attributes(mut self, attributes: i16) -> BatchBuilder {
        self.attributes = attributes;
        self
    }

    /// Sets `baseOffset` and `partitionLeaderEpoch` (as a stored batch has them).
    pub fn offsets(mut self, base_offset: i64, partition_leader_epoch: i32) -> BatchBuilder {
        self.base_offset = base_offset;
        self.partition_leader_epoch = partition_leader_epoch;
        self
    }

    /// Encodes the batch. A batch without records gets one empty record (Kafka rejects empty
    /// batches).
    pub fn build(mut self) -> Bytes {
        if self.records.is_empty() {
            self = self.record(None, None);
        }
        let mut body = Vec::new();
        let mut max_timestamp = self.base_timestamp.0;
        for (index, record) in self.records.iter().enumerate() {
            max_timestamp = max_timestamp.max(record.timestamp.0);
            let mut encoded = Vec::new();
            encoded.push(0u8); // record attributes
            write_varlong(&mut encoded, record.timestamp.0 - self.base_timestamp.0);
            write_varlong(&mut encoded, index as i64);
            write_bytes(&mut encoded, record.key.as_deref());
            write_bytes(&mut encoded, record.value.as_deref());
            write_varlong(&mut encoded, record.headers.len() as i64);
            for (key, value) in &record.headers {
                write_bytes(&mut encoded, Some(key));
                write_bytes(&mut encoded, value.as_deref());
            }
            write_varlong(&mut body, encoded.len() as i64);
            body.extend_from_slice(&encoded);
        }
        let total = BATCH_HEADER_LEN + body.len();
        let mut out = BytesMut::with_capacity(total);
        out.put_i64(self.base_offset);
        out.put_i32((total - LOG_OVERHEAD) as i32);
        out.put_i32(self.partition_leader_epoch);
        out.put_i8(MAGIC_V2);
        out.put_u32(0); // CRC, patched below
        out.put_i16(self.attributes);
        out.put_i32(self.records.len() as i32 - 1);
        out.put_i64(self.base_timestamp.0);
        out.put_i64(max_timestamp);
        out.put_i64(self.producer_id);
        out.put_i16(self.producer_epoch);
        out.put_i32(self.base_sequence);
        out.put_i32(self.records.len() as i32);
        out.extend_from_slice(&body);
        let crc = crc32c::crc32c(&out[CRC_RANGE_START..]);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        out.freeze()
    }
}

/// A batch of `records` records, each with a `value_bytes`-byte value (filled with a pattern
/// derived from the record index) and no key, all at `timestamp`.
pub fn make_batch(records: usize, value_bytes: usize, timestamp: TimestampMs) -> Bytes {
    let mut builder = BatchBuilder::new(timestamp);
    for index in 0..records.max(1) {
        let value: Vec<u8> = (0..value_bytes)
            .map(|byte| (index.wrapping_mul(31).wrapping_add(byte)) as u8)
            .collect();
        builder = builder.record(None, Some(&value));
    }
    builder.build()
}

/// A batch with one record per value, no keys, all at `timestamp`.
pub fn batch_with_values(values: &[&[u8]], timestamp: TimestampMs) -> Bytes {
    let mut builder = BatchBuilder::new(timestamp);
    for value in values {
        builder = builder.record(None, Some(value));
    }
    builder.build()
}

/// A batch of about `total_bytes` bytes in total (at least the header plus one record).
pub fn batch_of_size(total_bytes: usize, timestamp: TimestampMs) -> Bytes {
    // One record with a value sized so that the batch is close to total_bytes.
    let overhead = BATCH_HEADER_LEN + 16;
    let value_bytes = total_bytes.saturating_sub(overhead);
    make_batch(1, value_bytes, timestamp)
}

/// Appends a zigzag varlong (Kafka's record encoding).
pub fn write_varlong(out: &mut Vec<u8>, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

fn write_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => write_varlong(out, -1),
        Some(bytes) => {
            write_varlong(out, bytes.len() as i64);
            out.extend_from_slice(bytes);
        }
    }
}

/// Runs `make_future()` on a fresh glommio executor (small `io_memory`) and returns its output.
/// Panics if the executor cannot start: only for tests and benches.
pub fn run_local<F, Fut, T>(make_future: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .io_memory(2 << 20)
        .spawn(move || async move { make_future().await })
        .expect("start a glommio executor")
        .join()
        .expect("join the glommio executor")
}

/// The files of a log directory whose extension is `suffix` (`log`, `index`, `timeindex`), in
/// name order, which is base-offset order. Panics if the directory cannot be read (tests only).
pub fn segment_files(dir: &std::path::Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .expect("read the log directory")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == suffix))
        .collect();
    files.sort();
    files
}
