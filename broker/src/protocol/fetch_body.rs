//! The Fetch response body, assembled so record data is never copied into it.
//!
//! kafka-protocol encodes each partition's fixed fields (a `PartitionData` with
//! `records: None`); we cut off its trailing null-records marker and (flexible versions)
//! empty tagged-field section, write the real records length ourselves, emit the record
//! data as separate pieces (engine chunks, written to the socket as they are), then the
//! tagged-field section. The outer levels (top-level fields, topic arrays) are a handful of
//! integers written by hand. Layout, by version:
//!
//! ```text
//! response:  throttle_time_ms:i32 [error_code:i16 session_id:i32 (v7+)] topics:ARRAY [tags (v12+)]
//! topic:     name:STRING (v4-12) | topic_id:UUID (v13+)  partitions:ARRAY  [tags (v12+)]
//! partition: <fixed fields, kafka-protocol>  records:BYTES  [tags (v12+)]
//! ARRAY = i32 count (v4-11) | unsigned varint count+1 (v12+)
//! BYTES = i32 length (v4-11) | unsigned varint length+1 (v12+)
//! STRING = i16 length (v4-11) | unsigned varint length+1 (v12+)
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Encodable;

use super::response::EncodeError;

/// First flexible Fetch version.
const FIRST_FLEXIBLE_VERSION: i16 = 12;
/// First Fetch version that names topics by id.
const FIRST_TOPIC_ID_VERSION: i16 = 13;

/// A piece of the body: encoded bytes, or record data of type `C` with its length.
#[derive(Debug)]
pub enum Piece<C> {
    /// Encoded protocol bytes.
    Encoded(Bytes),
    /// Record data, written as is.
    Data(C),
}

/// Builds a Fetch response body from fixed fields and record-data pieces.
pub struct FetchBodyWriter<C> {
    version: i16,
    buf: BytesMut,
    pieces: Vec<Piece<C>>,
    /// Topic-level tagged fields still to close (flexible versions).
    open_topic: bool,
}

fn put_unsigned_varint(buf: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

fn encode_error(version: i16, reason: &str) -> EncodeError {
    EncodeError {
        api_key: ApiKey::Fetch,
        api_version: version,
        reason: reason.to_string(),
    }
}

impl<C> FetchBodyWriter<C> {
    /// Starts a body with the top-level fields and the topic count.
    pub fn new(
        version: i16,
        throttle_time_ms: i32,
        error_code: i16,
        session_id: i32,
        topic_count: usize,
    ) -> Result<Self, EncodeError> {
        let mut writer = FetchBodyWriter {
            version,
            buf: BytesMut::with_capacity(256),
            pieces: Vec::new(),
            open_topic: false,
        };
        writer.buf.put_i32(throttle_time_ms);
        if version >= 7 {
            writer.buf.put_i16(error_code);
            writer.buf.put_i32(session_id);
        }
        writer.put_array_len(topic_count)?;
        Ok(writer)
    }

    fn flexible(&self) -> bool {
        self.version >= FIRST_FLEXIBLE_VERSION
    }

    fn put_array_len(&mut self, count: usize) -> Result<(), EncodeError> {
        if self.flexible() {
            put_unsigned_varint(&mut self.buf, count as u64 + 1);
        } else {
            let count =
                i32::try_from(count).map_err(|_| encode_error(self.version, "array too long"))?;
            self.buf.put_i32(count);
        }
        Ok(())
    }

    fn close_topic(&mut self) {
        if self.open_topic && self.flexible() {
            self.buf.put_u8(0);
        }
        self.open_topic = false;
    }

    /// Starts a topic: its name (v4-12) or id (v13+), and its partition count.
    pub fn topic(
        &mut self,
        name: &str,
        topic_id: uuid::Uuid,
        partition_count: usize,
    ) -> Result<(), EncodeError> {
        self.close_topic();
        if self.version >= FIRST_TOPIC_ID_VERSION {
            self.buf.put_slice(topic_id.as_bytes());
        } else if self.flexible() {
            put_unsigned_varint(&mut self.buf, name.len() as u64 + 1);
            self.buf.put_slice(name.as_bytes());
        } else {
            let len = i16::try_from(name.len())
                .map_err(|_| encode_error(self.version, "topic name too long"))?;
            self.buf.put_i16(len);
            self.buf.put_slice(name.as_bytes());
        }
        self.put_array_len(partition_count)?;
        self.open_topic = true;
        Ok(())
    }

    /// Adds a partition: `header` holds every field but the records (which must be `None`,
    /// with no tagged fields set); `records` are the data pieces and their total length.
    pub fn partition(
        &mut self,
        header: &PartitionData,
        records: Vec<C>,
        records_len: usize,
    ) -> Result<(), EncodeError> {
        if header.records.is_some() || !header.unknown_tagged_fields.is_empty() {
            return Err(encode_error(
                self.version,
                "partition header must carry no records and no tagged fields",
            ));
        }
        let start = self.buf.len();
        header
            .encode(&mut self.buf, self.version)
            .map_err(|err| encode_error(self.version, &err.to_string()))?;
        // The encoder ended with the null-records marker and, when flexible, the tagged-field
        // count. Tagged fields at defaults encode as a single 0 byte.
        let tail: &[u8] = if self.flexible() {
            &[0, 0]
        } else {
            &[0xff, 0xff, 0xff, 0xff]
        };
        let end = self.buf.len();
        let cut = end
            .checked_sub(tail.len())
            .filter(|cut| *cut >= start && self.buf.get(*cut..end) == Some(tail))
            .ok_or_else(|| {
                encode_error(
                    self.version,
                    "unexpected partition header encoding (tagged fields set?)",
                )
            })?;
        self.buf.truncate(cut);
        if self.flexible() {
            put_unsigned_varint(&mut self.buf, records_len as u64 + 1);
        } else {
            let len = i32::try_from(records_len)
                .map_err(|_| encode_error(self.version, "records too large"))?;
            self.buf.put_i32(len);
        }
        if !records.is_empty() {
            let encoded = self.buf.split().freeze();
            self.pieces.push(Piece::Encoded(encoded));
            self.pieces.extend(records.into_iter().map(Piece::Data));
        }
        if self.flexible() {
            self.buf.put_u8(0);
        }
        Ok(())
    }

    /// Ends the body: closes the last topic and writes the top-level tagged fields.
    pub fn finish(mut self) -> Vec<Piece<C>> {
        self.close_topic();
        if self.flexible() {
            self.buf.put_u8(0);
        }
        if !self.buf.is_empty() {
            let encoded = self.buf.split().freeze();
            self.pieces.push(Piece::Encoded(encoded));
        }
        self.pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::AbortedTransaction;
    use kafka_protocol::messages::FetchResponse;
    use kafka_protocol::protocol::Decodable;

    fn header(index: i32, hw: i64) -> PartitionData {
        PartitionData::default()
            .with_partition_index(index)
            .with_high_watermark(hw)
            .with_last_stable_offset(hw)
            .with_log_start_offset(3)
            .with_records(None)
    }

    fn assemble(pieces: Vec<Piece<Bytes>>) -> Bytes {
        let mut out = BytesMut::new();
        for piece in pieces {
            match piece {
                Piece::Encoded(bytes) | Piece::Data(bytes) => out.extend_from_slice(&bytes),
            }
        }
        out.freeze()
    }

    #[test]
    fn decodes_with_kafka_protocol_at_every_version() {
        let topic_id = uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1122_3344_5566_7788);
        let records_a = vec![
            Bytes::from_static(b"first-chunk"),
            Bytes::from_static(b"-second"),
        ];
        let records_b: Vec<Bytes> = vec![];
        for version in 4..=18 {
            let mut writer =
                FetchBodyWriter::new(version, 0, 0, if version >= 7 { 77 } else { 0 }, 2)
                    .expect("new");
            writer.topic("orders", topic_id, 2).expect("topic");
            writer
                .partition(&header(0, 10), records_a.clone(), 18)
                .expect("p0");
            let mut committed = header(1, 4);
            committed.aborted_transactions = Some(vec![AbortedTransaction::default()
                .with_producer_id(kafka_protocol::messages::ProducerId(9))
                .with_first_offset(2)]);
            writer
                .partition(&committed, records_b.clone(), 0)
                .expect("p1");
            writer.topic("empty", topic_id, 0).expect("topic 2");
            let body = assemble(writer.finish());
            let decoded = FetchResponse::decode(&mut body.clone(), version)
                .unwrap_or_else(|e| panic!("v{version}: {e}"));
            assert_eq!(decoded.responses.len(), 2, "v{version}");
            let topic = &decoded.responses[0];
            if version >= 13 {
                assert_eq!(topic.topic_id, topic_id);
            } else {
                assert_eq!(topic.topic.as_str(), "orders");
            }
            if version >= 7 {
                assert_eq!(decoded.session_id, 77);
            }
            let p0 = &topic.partitions[0];
            assert_eq!(p0.high_watermark, 10);
            assert_eq!(
                p0.records.as_deref(),
                Some(&b"first-chunk-second"[..]),
                "v{version}"
            );
            let p1 = &topic.partitions[1];
            assert_eq!(p1.partition_index, 1);
            assert_eq!(p1.records.as_deref(), Some(&b""[..]));
            assert_eq!(p1.aborted_transactions.as_ref().map(Vec::len), Some(1));
            assert!(decoded.responses[1].partitions.is_empty());
        }
    }

    #[test]
    fn record_data_stays_in_its_own_pieces() {
        let data = Bytes::from(vec![7u8; 300]);
        let mut writer = FetchBodyWriter::new(12, 0, 0, 0, 1).expect("new");
        writer.topic("t", uuid::Uuid::nil(), 1).expect("topic");
        writer
            .partition(&header(0, 1), vec![data.clone()], 300)
            .expect("partition");
        let pieces = writer.finish();
        let shared = pieces
            .iter()
            .any(|p| matches!(p, Piece::Data(b) if b.as_ptr() == data.as_ptr()));
        assert!(shared, "the record bytes are passed through, not copied");
        // 300 + 1 needs a two-byte varint.
        let body = assemble(pieces);
        let decoded = FetchResponse::decode(&mut body.clone(), 12).expect("decode");
        assert_eq!(
            decoded.responses[0].partitions[0]
                .records
                .as_ref()
                .map(Bytes::len),
            Some(300)
        );
    }

    #[test]
    fn rejects_headers_with_records_or_tags() {
        let mut writer = FetchBodyWriter::<Bytes>::new(12, 0, 0, 0, 1).expect("new");
        writer.topic("t", uuid::Uuid::nil(), 1).expect("topic");
        let with_records = header(0, 1).with_records(Some(Bytes::new()));
        assert!(writer.partition(&with_records, vec![], 0).is_err());
    }

    #[test]
    fn varint_encoding() {
        let mut buf = BytesMut::new();
        put_unsigned_varint(&mut buf, 300);
        assert_eq!(&buf[..], &[0xac, 0x02]);
    }
}
