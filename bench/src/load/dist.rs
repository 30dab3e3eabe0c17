//! What each generated message looks like: payload sizes (fixed or uniform), keys (none,
//! uniform over a key space, or Zipf-skewed), and the fast generator that draws them.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use bytes::Bytes;

/// A small, fast, seedable generator (xorshift64*): plenty for picking sizes and keys.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // Zero is a fixed point of xorshift.
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[0, bound)`; 0 when `bound` is 0.
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next_u64() % bound
        }
    }
}

/// Message payload sizes: `1024` or `100..2000` (uniform, inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeDist {
    Fixed(usize),
    Uniform { min: usize, max: usize },
}

impl SizeDist {
    pub fn sample(&self, rng: &mut Rng) -> usize {
        match *self {
            SizeDist::Fixed(size) => size,
            SizeDist::Uniform { min, max } => min + rng.below((max - min + 1) as u64) as usize,
        }
    }

    pub fn max(&self) -> usize {
        match *self {
            SizeDist::Fixed(size) => size,
            SizeDist::Uniform { max, .. } => max,
        }
    }
}

impl FromStr for SizeDist {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let parse = |text: &str| {
            text.trim()
                .parse::<usize>()
                .map_err(|error| format!("bad size {text:?}: {error}"))
        };
        match value.split_once("..") {
            Some((min, max)) => {
                let (min, max) = (parse(min)?, parse(max)?);
                if min > max {
                    return Err(format!("empty size range {value}"));
                }
                Ok(SizeDist::Uniform { min, max })
            }
            None => Ok(SizeDist::Fixed(parse(value)?)),
        }
    }
}

impl fmt::Display for SizeDist {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeDist::Fixed(size) => write!(formatter, "{size}"),
            SizeDist::Uniform { min, max } => write!(formatter, "{min}..{max}"),
        }
    }
}

/// Record keys: `none` (unkeyed, sticky partitioner), `uniform:N` (N distinct keys, each
/// equally likely) or `zipf:N` (N keys, Zipf s=1: a few hot keys, and so hot partitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDist {
    None,
    Uniform(u64),
    Zipf(u64),
}

impl FromStr for KeyDist {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value == "none" {
            return Ok(KeyDist::None);
        }
        let (kind, count) = value
            .split_once(':')
            .ok_or_else(|| format!("expected none, uniform:N or zipf:N, got {value:?}"))?;
        let count: u64 = count
            .parse()
            .map_err(|error| format!("bad key count {count:?}: {error}"))?;
        if count == 0 {
            return Err("key count must be at least 1".to_owned());
        }
        match kind {
            "uniform" => Ok(KeyDist::Uniform(count)),
            "zipf" => Ok(KeyDist::Zipf(count)),
            _ => Err(format!("unknown key distribution {kind:?}")),
        }
    }
}

impl fmt::Display for KeyDist {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyDist::None => write!(formatter, "none"),
            KeyDist::Uniform(count) => write!(formatter, "uniform:{count}"),
            KeyDist::Zipf(count) => write!(formatter, "zipf:{count}"),
        }
    }
}

/// Draws keys: pre-built key bytes (cloning a `Bytes` is a reference count), and for Zipf the
/// cumulative distribution to search.
pub struct KeySource {
    keys: Vec<Bytes>,
    zipf_cdf: Option<Vec<f64>>,
}

/// Key spaces above this are drawn from this many keys (memory bound).
const MAX_KEYS: u64 = 1 << 20;

impl KeySource {
    pub fn new(dist: KeyDist) -> Self {
        let count = match dist {
            KeyDist::None => 0,
            KeyDist::Uniform(count) | KeyDist::Zipf(count) => count.min(MAX_KEYS),
        };
        let keys = (0..count)
            .map(|index| Bytes::from(format!("key-{index}")))
            .collect();
        let zipf_cdf = matches!(dist, KeyDist::Zipf(_)).then(|| {
            let weights: Vec<f64> = (1..=count).map(|rank| 1.0 / rank as f64).collect();
            let total: f64 = weights.iter().sum();
            let mut running = 0.0;
            weights
                .iter()
                .map(|weight| {
                    running += weight / total;
                    running
                })
                .collect()
        });
        Self { keys, zipf_cdf }
    }

    pub fn sample(&self, rng: &mut Rng) -> Option<Bytes> {
        if self.keys.is_empty() {
            return None;
        }
        let index = match &self.zipf_cdf {
            Some(cdf) => {
                let draw = rng.next_f64();
                cdf.partition_point(|&cumulative| cumulative < draw)
                    .min(self.keys.len() - 1)
            }
            None => rng.below(self.keys.len() as u64) as usize,
        };
        self.keys.get(index).cloned()
    }
}

/// Random bytes that payloads are sliced from (no copy per message). Random, so compression
/// codecs see incompressible data, as with encrypted or already-compressed payloads.
///
/// The bytes are static (one buffer per process, shared by every thread and run, replaced by
/// one at least twice as big only for larger messages, so that all of them together stay
/// under three times the largest): a payload slice of static bytes costs no atomic reference
/// count when it is cloned or dropped, which at a million messages a second is measurable.
/// Slices start on a cache line, so checksums and socket copies run on aligned words.
pub struct PayloadPool {
    bytes: Bytes,
}

/// The process's pool bytes (see [`PayloadPool`]).
static POOL_BYTES: Mutex<Option<&'static [u8]>> = Mutex::new(None);

impl PayloadPool {
    pub fn new(max_message_bytes: usize, seed: u64) -> Self {
        let len = max_message_bytes + (1 << 20);
        let mut pool = POOL_BYTES
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let bytes = match *pool {
            Some(bytes) if bytes.len() >= len => bytes,
            previous => {
                let len = len.max(previous.map_or(0, |bytes| 2 * bytes.len()));
                let mut rng = Rng::new(seed);
                let mut data = Vec::with_capacity(len + 8);
                while data.len() < len {
                    data.extend_from_slice(&rng.next_u64().to_le_bytes());
                }
                data.truncate(len);
                let bytes: &'static [u8] = Box::leak(data.into_boxed_slice());
                *pool = Some(bytes);
                bytes
            }
        };
        Self {
            bytes: Bytes::from_static(bytes.get(..len).unwrap_or(bytes)),
        }
    }

    /// `size` bytes starting at a random place.
    pub fn slice(&self, size: usize, rng: &mut Rng) -> Bytes {
        const LINE_BYTES: usize = 64;
        let room = self.bytes.len().saturating_sub(size);
        let start = rng.below((room / LINE_BYTES) as u64 + 1) as usize * LINE_BYTES;
        self.bytes.slice(start..start + size.min(self.bytes.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_stay_in_range() {
        assert_eq!("1024".parse::<SizeDist>(), Ok(SizeDist::Fixed(1024)));
        let dist: SizeDist = "100..200".parse().expect("range");
        let mut rng = Rng::new(7);
        for _ in 0..1000 {
            let size = dist.sample(&mut rng);
            assert!((100..=200).contains(&size));
        }
        assert!("5..1".parse::<SizeDist>().is_err());
        assert_eq!(dist.to_string(), "100..200");
    }

    #[test]
    fn zipf_keys_are_skewed_and_uniform_keys_are_not() {
        let mut rng = Rng::new(1);
        let zipf = KeySource::new("zipf:100".parse().expect("zipf"));
        let hot = (0..10_000)
            .filter(|_| zipf.sample(&mut rng).as_deref() == Some(&b"key-0"[..]))
            .count();
        // P(rank 1) = 1 / H(100) ~ 0.19.
        assert!((1500..2400).contains(&hot), "{hot}");
        let uniform = KeySource::new("uniform:100".parse().expect("uniform"));
        let hot = (0..10_000)
            .filter(|_| uniform.sample(&mut rng).as_deref() == Some(&b"key-0"[..]))
            .count();
        assert!(hot < 300, "{hot}");
        assert!(KeySource::new(KeyDist::None).sample(&mut rng).is_none());
        assert!("zipf:0".parse::<KeyDist>().is_err());
    }

    #[test]
    fn payload_slices_have_the_asked_size() {
        let pool = PayloadPool::new(4096, 3);
        let mut rng = Rng::new(2);
        for size in [0, 1, 1024, 4096] {
            assert_eq!(pool.slice(size, &mut rng).len(), size);
        }
    }
}
