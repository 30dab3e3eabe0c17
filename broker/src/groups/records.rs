//! The records of `__consumer_offsets`, in Kafka's own schemas (so Kafka tools can read the
//! topic): the key starts with an i16 version that also says what the record is.
//!
//! | key version | key | value versions written / read |
//! |---|---|---|
//! | 0, 1 | OffsetCommitKey: group (string), topic (string), partition (i32) | v3 (v1 when an expire timestamp is set) / v0-v4 |
//! | 2 | GroupMetadataKey: group (string) | v3 / v0-v4 |
//!
//! A null value is a tombstone (offset deleted, group deleted). Values start with their own
//! i16 version. Strings are i16-length UTF-8 (-1 = null), bytes i32-length; v4 values are
//! "flexible" (compact lengths, tagged fields), which are read but never written.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use thiserror::Error;

/// Why a record of `__consumer_offsets` could not be read (it is then skipped with a warning).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The bytes end before the field.
    #[error("record ends inside field {0}")]
    Truncated(&'static str),
    /// A string is not UTF-8.
    #[error("field {0} is not UTF-8")]
    NotUtf8(&'static str),
    /// A length is negative where null is not allowed, or absurd.
    #[error("field {0} has an invalid length")]
    BadLength(&'static str),
    /// A key or value version this broker does not know.
    #[error("unknown {what} version {version}")]
    UnknownVersion {
        /// Key or value kind.
        what: &'static str,
        /// The version found.
        version: i16,
    },
    /// The batch could not be encoded (a bug).
    #[error("cannot encode a record batch: {0}")]
    Encode(String),
}

/// What a record is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    /// A committed offset.
    Offset {
        /// Group id.
        group: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// A group's membership and generation.
    Group {
        /// Group id.
        group: String,
    },
}

/// A committed offset (OffsetCommitValue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    /// The next offset the group will consume.
    pub offset: i64,
    /// Leader epoch of the last consumed record (-1 unknown).
    pub leader_epoch: i32,
    /// Client metadata string.
    pub metadata: String,
    /// When the commit happened.
    pub commit_timestamp_ms: i64,
    /// Explicit expiry (OffsetCommit v2-v4 retention time), if any.
    pub expire_timestamp_ms: Option<i64>,
}

/// One member in a GroupMetadataValue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Metadata for the group's selected protocol (the subscription).
    pub subscription: Bytes,
    /// The member's assignment.
    pub assignment: Bytes,
}

/// A group's state as persisted after each rebalance (GroupMetadataValue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    /// Protocol type ("consumer", or "" for offset-only groups).
    pub protocol_type: String,
    /// Generation id.
    pub generation: i32,
    /// Selected protocol (assignor).
    pub protocol: Option<String>,
    /// Leader member id.
    pub leader: Option<String>,
    /// When the group entered its current state.
    pub state_timestamp_ms: i64,
    /// Members with their assignments.
    pub members: Vec<MemberValue>,
}

/// Key versions.
const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;

fn put_string(out: &mut BytesMut, value: &str) {
    let bytes = value.as_bytes();
    let len = bytes.len().min(i16::MAX as usize);
    out.put_i16(len as i16);
    out.put_slice(&bytes[..len]);
}

fn put_nullable_string(out: &mut BytesMut, value: Option<&str>) {
    match value {
        None => out.put_i16(-1),
        Some(value) => put_string(out, value),
    }
}

fn put_bytes(out: &mut BytesMut, value: &[u8]) {
    out.put_i32(i32::try_from(value.len()).unwrap_or(i32::MAX));
    out.put_slice(value);
}

/// OffsetCommitKey v1.
pub fn encode_offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut out = BytesMut::with_capacity(8 + group.len() + topic.len());
    out.put_i16(OFFSET_KEY_VERSION);
    put_string(&mut out, group);
    put_string(&mut out, topic);
    out.put_i32(partition);
    out.freeze()
}

/// GroupMetadataKey v2.
pub fn encode_group_key(group: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + group.len());
    out.put_i16(GROUP_KEY_VERSION);
    put_string(&mut out, group);
    out.freeze()
}

/// OffsetCommitValue v3 (v1 when an explicit expire timestamp must be kept, as Kafka does).
pub fn encode_offset_value(value: &OffsetValue) -> Bytes {
    let mut out = BytesMut::with_capacity(32 + value.metadata.len());
    match value.expire_timestamp_ms {
        Some(expire) => {
            out.put_i16(1);
            out.put_i64(value.offset);
            put_string(&mut out, &value.metadata);
            out.put_i64(value.commit_timestamp_ms);
            out.put_i64(expire);
        }
        None => {
            out.put_i16(3);
            out.put_i64(value.offset);
            out.put_i32(value.leader_epoch);
            put_string(&mut out, &value.metadata);
            out.put_i64(value.commit_timestamp_ms);
        }
    }
    out.freeze()
}

/// GroupMetadataValue v3.
pub fn encode_group_value(value: &GroupValue) -> Bytes {
    let mut out = BytesMut::with_capacity(64);
    out.put_i16(3);
    put_string(&mut out, &value.protocol_type);
    out.put_i32(value.generation);
    put_nullable_string(&mut out, value.protocol.as_deref());
    put_nullable_string(&mut out, value.leader.as_deref());
    out.put_i64(value.state_timestamp_ms);
    out.put_i32(i32::try_from(value.members.len()).unwrap_or(i32::MAX));
    for member in &value.members {
        put_string(&mut out, &member.member_id);
        put_nullable_string(&mut out, member.instance_id.as_deref());
        put_string(&mut out, &member.client_id);
        put_string(&mut out, &member.client_host);
        out.put_i32(member.rebalance_timeout_ms);
        out.put_i32(member.session_timeout_ms);
        put_bytes(&mut out, &member.subscription);
        put_bytes(&mut out, &member.assignment);
    }
    out.freeze()
}

/// A cursor over a record key or value.
struct Reader<'a> {
    bytes: &'a [u8],
    flexible: bool,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], RecordError> {
        let taken = self.bytes.get(..len).ok_or(RecordError::Truncated(field))?;
        self.bytes = &self.bytes[len..];
        Ok(taken)
    }

    fn i16(&mut self, field: &'static str) -> Result<i16, RecordError> {
        let b = self.take(2, field)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, RecordError> {
        let b = self.take(4, field)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, RecordError> {
        let b = self.take(8, field)?;
        let mut raw = [0u8; 8];
        raw.copy_from_slice(b);
        Ok(i64::from_be_bytes(raw))
    }

    fn unsigned_varint(&mut self, field: &'static str) -> Result<u64, RecordError> {
        let mut value = 0u64;
        for index in 0..10 {
            let byte = self.take(1, field)?[0];
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordError::BadLength(field))
    }

    /// Length of a string or bytes field: None for null.
    fn length(&mut self, wide: bool, field: &'static str) -> Result<Option<usize>, RecordError> {
        if self.flexible {
            let raw = self.unsigned_varint(field)?;
            return match raw {
                0 => Ok(None),
                n => usize::try_from(n - 1)
                    .map(Some)
                    .map_err(|_| RecordError::BadLength(field)),
            };
        }
        let len = if wide {
            i64::from(self.i32(field)?)
        } else {
            i64::from(self.i16(field)?)
        };
        if len < 0 {
            Ok(None)
        } else {
            usize::try_from(len)
                .map(Some)
                .map_err(|_| RecordError::BadLength(field))
        }
    }

    fn nullable_string(&mut self, field: &'static str) -> Result<Option<String>, RecordError> {
        match self.length(false, field)? {
            None => Ok(None),
            Some(len) => {
                let raw = self.take(len, field)?;
                std::str::from_utf8(raw)
                    .map(|s| Some(s.to_string()))
                    .map_err(|_| RecordError::NotUtf8(field))
            }
        }
    }

    fn string(&mut self, field: &'static str) -> Result<String, RecordError> {
        self.nullable_string(field)?
            .ok_or(RecordError::BadLength(field))
    }

    fn bytes(&mut self, field: &'static str) -> Result<Bytes, RecordError> {
        match self.length(true, field)? {
            None => Ok(Bytes::new()),
            Some(len) => Ok(Bytes::copy_from_slice(self.take(len, field)?)),
        }
    }

    fn array_len(&mut self, field: &'static str) -> Result<usize, RecordError> {
        let len = if self.flexible {
            self.unsigned_varint(field)?.saturating_sub(1)
        } else {
            u64::try_from(self.i32(field)?.max(0)).unwrap_or(0)
        };
        // Every element takes at least one byte: a larger count is damage.
        let len = usize::try_from(len).map_err(|_| RecordError::BadLength(field))?;
        if len > self.bytes.len() {
            return Err(RecordError::BadLength(field));
        }
        Ok(len)
    }

    fn skip_tagged_fields(&mut self) -> Result<(), RecordError> {
        if !self.flexible {
            return Ok(());
        }
        let count = self.unsigned_varint("tagged fields")?;
        for _ in 0..count {
            self.unsigned_varint("tag")?;
            let size = self.unsigned_varint("tag size")?;
            let size = usize::try_from(size).map_err(|_| RecordError::BadLength("tag size"))?;
            self.take(size, "tag data")?;
        }
        Ok(())
    }
}

/// Decodes a key.
pub fn decode_key(bytes: &[u8]) -> Result<RecordKey, RecordError> {
    let mut reader = Reader {
        bytes,
        flexible: false,
    };
    let version = reader.i16("key version")?;
    match version {
        0 | 1 => Ok(RecordKey::Offset {
            group: reader.string("group")?,
            topic: reader.string("topic")?,
            partition: reader.i32("partition")?,
        }),
        2 => Ok(RecordKey::Group {
            group: reader.string("group")?,
        }),
        version => Err(RecordError::UnknownVersion {
            what: "key",
            version,
        }),
    }
}

/// Decodes an OffsetCommitValue v0-v4.
pub fn decode_offset_value(bytes: &[u8]) -> Result<OffsetValue, RecordError> {
    let mut reader = Reader {
        bytes,
        flexible: false,
    };
    let version = reader.i16("value version")?;
    if !(0..=4).contains(&version) {
        return Err(RecordError::UnknownVersion {
            what: "offset value",
            version,
        });
    }
    reader.flexible = version >= 4;
    let offset = reader.i64("offset")?;
    let leader_epoch = if version >= 3 {
        reader.i32("leader epoch")?
    } else {
        -1
    };
    let metadata = reader.nullable_string("metadata")?.unwrap_or_default();
    let commit_timestamp_ms = reader.i64("commit timestamp")?;
    let expire_timestamp_ms = if version == 1 {
        Some(reader.i64("expire timestamp")?)
    } else {
        None
    };
    reader.skip_tagged_fields()?;
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
        expire_timestamp_ms,
    })
}

/// Decodes a GroupMetadataValue v0-v4.
pub fn decode_group_value(bytes: &[u8]) -> Result<GroupValue, RecordError> {
    let mut reader = Reader {
        bytes,
        flexible: false,
    };
    let version = reader.i16("value version")?;
    if !(0..=4).contains(&version) {
        return Err(RecordError::UnknownVersion {
            what: "group value",
            version,
        });
    }
    reader.flexible = version >= 4;
    let protocol_type = reader.nullable_string("protocol type")?.unwrap_or_default();
    let generation = reader.i32("generation")?;
    let protocol = reader.nullable_string("protocol")?;
    let leader = reader.nullable_string("leader")?;
    let state_timestamp_ms = if version >= 2 {
        reader.i64("state timestamp")?
    } else {
        -1
    };
    let count = reader.array_len("members")?;
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        let member_id = reader.string("member id")?;
        let instance_id = if version >= 3 {
            reader.nullable_string("group instance id")?
        } else {
            None
        };
        let client_id = reader.string("client id")?;
        let client_host = reader.string("client host")?;
        let rebalance_timeout_ms = if version >= 1 {
            reader.i32("rebalance timeout")?
        } else {
            -1
        };
        let session_timeout_ms = reader.i32("session timeout")?;
        let subscription = reader.bytes("subscription")?;
        let assignment = reader.bytes("assignment")?;
        reader.skip_tagged_fields()?;
        members.push(MemberValue {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms: if rebalance_timeout_ms < 0 {
                session_timeout_ms
            } else {
                rebalance_timeout_ms
            },
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    reader.skip_tagged_fields()?;
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp_ms,
        members,
    })
}

/// One uncompressed magic-v2 batch of `(key, value)` records (value None = tombstone),
/// stamped `now_ms`, ready to append (the log assigns offsets).
pub fn encode_batch(entries: &[(Bytes, Option<Bytes>)], now_ms: i64) -> Result<Bytes, RecordError> {
    let records: Vec<Record> = entries
        .iter()
        .enumerate()
        .map(|(index, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            // kafka-protocol keeps records in one batch while offset - sequence is constant.
            sequence: i32::try_from(index).unwrap_or(i32::MAX),
            timestamp: now_ms,
            key: Some(key.clone()),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut out,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|error| RecordError::Encode(error.to_string()))?;
    Ok(out.freeze())
}

/// Java's `String.hashCode` (over UTF-16 code units, wrapping).
pub fn java_string_hash(value: &str) -> i32 {
    value.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The `__consumer_offsets` partition of a group: Kafka's
/// `Utils.abs(groupId.hashCode) % partitions` (where `abs(Int.MinValue)` is 0).
pub fn partition_for_group(group: &str, partitions: i32) -> i32 {
    let hash = java_string_hash(group);
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % partitions.max(1)
}

/// A `StrBytes` of a string.
pub fn str_bytes(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        let key = encode_offset_key("g", "t", 3);
        assert_eq!(
            &key[..],
            &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 3],
            "OffsetCommitKey v1 layout"
        );
        assert_eq!(
            decode_key(&key),
            Ok(RecordKey::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 3
            })
        );
        assert_eq!(
            decode_key(&encode_group_key("grp")),
            Ok(RecordKey::Group {
                group: "grp".into()
            })
        );
        for expire in [None, Some(99)] {
            let value = OffsetValue {
                offset: 42,
                leader_epoch: if expire.is_some() { -1 } else { 7 },
                metadata: "meta".into(),
                commit_timestamp_ms: 1000,
                expire_timestamp_ms: expire,
            };
            assert_eq!(decode_offset_value(&encode_offset_value(&value)), Ok(value));
        }
        let group = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp_ms: 77,
            members: vec![MemberValue {
                member_id: "m1".into(),
                instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300,
                session_timeout_ms: 100,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(decode_group_value(&encode_group_value(&group)), Ok(group));
        assert!(decode_key(&[0, 9, 0]).is_err());
        assert!(decode_group_value(&[0, 3, 0, 2, b'x']).is_err());
    }

    #[test]
    fn flexible_offset_value_v4_decodes() {
        // v4: offset, leader epoch, compact metadata "ab", commit ts, no tagged fields.
        let mut bytes = vec![0, 4];
        bytes.extend_from_slice(&5i64.to_be_bytes());
        bytes.extend_from_slice(&2i32.to_be_bytes());
        bytes.extend_from_slice(&[3, b'a', b'b']);
        bytes.extend_from_slice(&9i64.to_be_bytes());
        bytes.push(0);
        let value = decode_offset_value(&bytes).expect("v4");
        assert_eq!(
            (value.offset, value.leader_epoch, value.metadata.as_str()),
            (5, 2, "ab")
        );
    }

    #[test]
    fn partitioning_matches_kafka() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE in Java.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for_group("polygenelubricants", 50), 0);
        assert_eq!(partition_for_group("hello", 50), 99_162_322 % 50);
        assert!((0..50).contains(&partition_for_group("Aa-negative?", 50)));
    }

    #[test]
    fn batch_encodes_and_decodes() {
        let batch = encode_batch(
            &[
                (encode_group_key("g"), None),
                (
                    encode_offset_key("g", "t", 0),
                    Some(Bytes::from_static(b"v")),
                ),
            ],
            5,
        )
        .expect("encode");
        let summaries = vaart_engine::validate_batches(&batch).expect("valid batch");
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].records_count, 2);
    }
}
