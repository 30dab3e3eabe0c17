//! Kafka's default partitioner for keyed records: `toPositive(murmur2(key)) % partitions`, bit
//! for bit as the Java client (`Utils.murmur2`, `BuiltInPartitioner`) and librdkafka's
//! `murmur2_random` partitioner compute it, so a key lands on the same partition whichever
//! client wrote it.

/// Kafka's murmur2 (seed `0x9747b28c`), as `org.apache.kafka.common.utils.Utils.murmur2`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    // Java hashes `int` lengths; keys are far below 2^31 bytes (records are at most ~1 MiB).
    let mut hash = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        hash = hash.wrapping_mul(M);
        hash ^= k;
    }
    let tail = chunks.remainder();
    // The Java switch falls through from case 3 to case 1.
    if tail.len() >= 3 {
        hash ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        hash ^= u32::from(tail[1]) << 8;
    }
    if let Some(&first) = tail.first() {
        hash ^= u32::from(first);
        hash = hash.wrapping_mul(M);
    }
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(M);
    hash ^= hash >> 15;
    hash as i32
}

/// Java's `Utils.toPositive`: clears the sign bit (not `abs`).
pub fn to_positive(value: i32) -> i32 {
    value & 0x7fff_ffff
}

/// The partition Kafka's default partitioner picks for `key` among `partition_count`
/// partitions; `None` when there are no partitions.
pub fn partition_for_key(key: &[u8], partition_count: usize) -> Option<usize> {
    if partition_count == 0 {
        return None;
    }
    // A non-negative i32 always fits in usize on the platforms glommio runs on.
    let positive = usize::try_from(to_positive(murmur2(key))).ok()?;
    Some(positive % partition_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's `UtilsTest.testMurmur2` vectors.
    #[test]
    fn murmur2_matches_kafka_vectors() {
        let vectors: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in vectors {
            assert_eq!(murmur2(key), expected, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn partitions_like_the_java_client() {
        // toPositive(-790332482) = 1357151166; 1357151166 % 10 = 6.
        assert_eq!(partition_for_key(b"foobar", 10), Some(6));
        assert_eq!(to_positive(-1), i32::MAX);
        assert_eq!(partition_for_key(b"foobar", 0), None);
        for count in 1..50 {
            let partition = partition_for_key(b"some key", count).expect("partition");
            assert!(partition < count);
        }
    }
}
