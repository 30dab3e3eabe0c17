//! Domain newtypes used across the broker (STYLE.md rule 11).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A broker's `node.id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub i32);

/// Index of a shard (one pinned glommio executor) inside this process, `0..shard_count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShardId(pub usize);

impl ShardId {
    /// The shard that owns cluster metadata (topics, configs, partition map).
    pub const METADATA_OWNER: ShardId = ShardId(0);
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A partition number inside a topic, `0..partition_count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionIndex(pub i32);

/// A topic's id (KIP-516), a random v4 UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicId(pub uuid::Uuid);

impl TopicId {
    /// A fresh random (v4) topic id; never the all-zero id, which Kafka reserves for "none".
    pub fn random() -> TopicId {
        loop {
            let id = uuid::Builder::from_random_bytes(random_bytes16()).into_uuid();
            if !id.is_nil() {
                return TopicId(id);
            }
        }
    }
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A topic partition by name, the key clients use.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: PartitionIndex,
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition.0)
    }
}

/// 16 random bytes from the kernel (getrandom(2)); falls back to time and address entropy
/// only if the syscall is unavailable, which cannot happen on the kernels glommio supports.
pub fn random_bytes16() -> [u8; 16] {
    let mut out = [0u8; 16];
    // SAFETY: `out` is a valid writable buffer of exactly `out.len()` bytes for the call.
    let filled = unsafe { libc::getrandom(out.as_mut_ptr().cast(), out.len(), 0) };
    if usize::try_from(filled).ok() != Some(out.len()) {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mixed = nanos ^ ((&out as *const _ as usize as u128) << 64);
        out = mixed.to_le_bytes();
    }
    out
}

/// Kafka-style cluster id: 16 random bytes in URL-safe base64 without padding (22 chars).
pub fn random_cluster_id() -> String {
    base64_url_no_pad(&random_bytes16())
}

fn base64_url_no_pad(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b0 = chunk.first().copied().unwrap_or(0) as u32;
        let b1 = chunk.get(1).copied().unwrap_or(0) as u32;
        let b2 = chunk.get(2).copied().unwrap_or(0) as u32;
        let triple = (b0 << 16) | (b1 << 8) | b2;
        let symbols = chunk.len() + 1;
        for i in 0..symbols {
            let index = (triple >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[index as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_id_is_22_url_safe_chars() {
        let id = random_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn base64_matches_known_vector() {
        assert_eq!(base64_url_no_pad(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_url_no_pad(b"fooba"), "Zm9vYmE");
        assert_eq!(base64_url_no_pad(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn topic_ids_are_v4_and_distinct() {
        let a = TopicId::random();
        let b = TopicId::random();
        assert_ne!(a, b);
        assert_eq!(a.0.get_version_num(), 4);
    }
}
