//! Incremental fetch sessions (KIP-227), per shard.
//!
//! A client opens a session with a full fetch at epoch 0; the broker returns a session id.
//! Later fetches send only partitions whose fetch position changed (plus `forgotten`
//! partitions to drop) with the next epoch, and the response carries only partitions with
//! something new: records, an error, or a changed high watermark / last stable offset / log
//! start offset. Epoch -1 closes the session. A connection lives on one shard, so its sessions
//! live there too; a client that reconnects elsewhere gets FETCH_SESSION_ID_NOT_FOUND and
//! starts a new session, as with a Kafka broker that evicted its session.

use std::collections::HashMap;
use std::time::Instant;

use kafka_protocol::indexmap::IndexMap;

use crate::protocol::KafkaError;
use crate::types::{random_bytes16, TopicId};

/// How a fetch names a topic: by name before Fetch v13, by id from v13.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TopicRef {
    /// Topic name.
    Name(String),
    /// Topic id.
    Id(TopicId),
}

/// One partition as the client asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedPartition {
    /// Topic.
    pub topic: TopicRef,
    /// Partition index.
    pub partition: i32,
    /// Where to read from.
    pub fetch_offset: i64,
    /// Most bytes for this partition.
    pub max_bytes: i32,
    /// Client's leader epoch (-1 = unknown).
    pub current_leader_epoch: i32,
}

/// What the broker last told the client about a session partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastSent {
    /// High watermark.
    pub high_watermark: i64,
    /// Last stable offset.
    pub last_stable_offset: i64,
    /// Log start offset.
    pub log_start_offset: i64,
}

/// A partition to fetch this round, with what was last sent (incremental sessions).
#[derive(Debug, Clone)]
pub struct FetchTarget {
    /// The partition as requested.
    pub requested: RequestedPartition,
    /// Last values sent in this session (`None`: never sent, always include).
    pub last_sent: Option<LastSent>,
}

/// How one fetch request relates to sessions.
#[derive(Debug, Clone)]
pub struct FetchContext {
    /// Session id to put in the response (0 = no session).
    pub session_id: i32,
    /// Incremental: answer only partitions with changes.
    pub incremental: bool,
    /// Partitions to read, in session (or request) order.
    pub targets: Vec<FetchTarget>,
}

struct SessionEntry {
    requested: RequestedPartition,
    last_sent: Option<LastSent>,
}

struct FetchSession {
    next_epoch: i32,
    partitions: IndexMap<(TopicRef, i32), SessionEntry>,
    last_used: Instant,
}

/// The sessions of one shard, bounded by a slot count (least recently used evicted).
pub struct FetchSessionCache {
    slots: usize,
    sessions: HashMap<i32, FetchSession>,
}

/// Epoch meaning "close the session / no session".
pub const FINAL_EPOCH: i32 = -1;
/// Epoch meaning "open a new session".
pub const INITIAL_EPOCH: i32 = 0;

impl FetchSessionCache {
    /// An empty cache with room for `slots` sessions.
    pub fn new(slots: usize) -> FetchSessionCache {
        FetchSessionCache {
            slots,
            sessions: HashMap::new(),
        }
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    fn new_session_id(&self) -> i32 {
        loop {
            let bytes = random_bytes16();
            let id = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) & i32::MAX;
            if id != 0 && !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }

    /// Starts a fetch: decides full or incremental, updates the session's partition set, and
    /// returns the partitions to read. Errors are top-level fetch errors.
    pub fn begin(
        &mut self,
        session_id: i32,
        epoch: i32,
        requested: Vec<RequestedPartition>,
        forgotten: Vec<(TopicRef, i32)>,
    ) -> Result<FetchContext, KafkaError> {
        let full = |targets: Vec<RequestedPartition>, session_id| FetchContext {
            session_id,
            incremental: false,
            targets: targets
                .into_iter()
                .map(|requested| FetchTarget {
                    requested,
                    last_sent: None,
                })
                .collect(),
        };
        if epoch == FINAL_EPOCH {
            if session_id != 0 {
                self.sessions.remove(&session_id);
            }
            return Ok(full(requested, 0));
        }
        if epoch == INITIAL_EPOCH {
            if session_id != 0 {
                self.sessions.remove(&session_id);
            }
            if self.slots == 0 {
                return Ok(full(requested, 0));
            }
            if self.sessions.len() >= self.slots {
                let oldest = self
                    .sessions
                    .iter()
                    .min_by_key(|(_, s)| s.last_used)
                    .map(|(id, _)| *id);
                if let Some(oldest) = oldest {
                    self.sessions.remove(&oldest);
                }
            }
            let id = self.new_session_id();
            let mut partitions = IndexMap::with_capacity(requested.len());
            for partition in &requested {
                partitions.insert(
                    (partition.topic.clone(), partition.partition),
                    SessionEntry {
                        requested: partition.clone(),
                        last_sent: None,
                    },
                );
            }
            self.sessions.insert(
                id,
                FetchSession {
                    next_epoch: 1,
                    partitions,
                    last_used: Instant::now(),
                },
            );
            return Ok(full(requested, id));
        }
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return Err(KafkaError::FetchSessionIdNotFound);
        };
        if session.next_epoch != epoch {
            return Err(KafkaError::InvalidFetchSessionEpoch);
        }
        session.next_epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
        session.last_used = Instant::now();
        for key in forgotten {
            session.partitions.shift_remove(&key);
        }
        for partition in requested {
            let key = (partition.topic.clone(), partition.partition);
            match session.partitions.get_mut(&key) {
                Some(entry) => entry.requested = partition,
                None => {
                    session.partitions.insert(
                        key,
                        SessionEntry {
                            requested: partition,
                            last_sent: None,
                        },
                    );
                }
            }
        }
        Ok(FetchContext {
            session_id,
            incremental: true,
            targets: session
                .partitions
                .values()
                .map(|entry| FetchTarget {
                    requested: entry.requested.clone(),
                    last_sent: entry.last_sent,
                })
                .collect(),
        })
    }

    /// Records what a response told the client about its session partitions.
    pub fn record_sent(&mut self, session_id: i32, sent: &[(TopicRef, i32, LastSent)]) {
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return;
        };
        for (topic, partition, last) in sent {
            if let Some(entry) = session.partitions.get_mut(&(topic.clone(), *partition)) {
                entry.last_sent = Some(*last);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(topic: &str, partition: i32, offset: i64) -> RequestedPartition {
        RequestedPartition {
            topic: TopicRef::Name(topic.into()),
            partition,
            fetch_offset: offset,
            max_bytes: 1024,
            current_leader_epoch: -1,
        }
    }

    #[test]
    fn full_then_incremental_then_close() {
        let mut cache = FetchSessionCache::new(4);
        let ctx = cache
            .begin(
                0,
                INITIAL_EPOCH,
                vec![part("a", 0, 0), part("a", 1, 0)],
                vec![],
            )
            .expect("new session");
        assert!(!ctx.incremental);
        assert_ne!(ctx.session_id, 0);
        assert_eq!(ctx.targets.len(), 2);
        let id = ctx.session_id;
        cache.record_sent(
            id,
            &[(
                TopicRef::Name("a".into()),
                0,
                LastSent {
                    high_watermark: 5,
                    last_stable_offset: 5,
                    log_start_offset: 0,
                },
            )],
        );

        // Epoch 1: partition 0 moved, partition 1 forgotten, partition 2 added.
        let ctx = cache
            .begin(
                id,
                1,
                vec![part("a", 0, 5), part("a", 2, 0)],
                vec![(TopicRef::Name("a".into()), 1)],
            )
            .expect("incremental");
        assert!(ctx.incremental);
        let parts: Vec<(i32, i64)> = ctx
            .targets
            .iter()
            .map(|t| (t.requested.partition, t.requested.fetch_offset))
            .collect();
        assert_eq!(parts, vec![(0, 5), (2, 0)]);
        assert!(ctx.targets[0].last_sent.is_some());
        assert!(ctx.targets[1].last_sent.is_none());

        assert_eq!(
            cache.begin(id, 1, vec![], vec![]).map(|_| ()),
            Err(KafkaError::InvalidFetchSessionEpoch)
        );
        assert_eq!(
            cache.begin(12345, 3, vec![], vec![]).map(|_| ()),
            Err(KafkaError::FetchSessionIdNotFound)
        );
        let ctx = cache
            .begin(id, FINAL_EPOCH, vec![part("a", 0, 0)], vec![])
            .expect("close");
        assert_eq!(ctx.session_id, 0);
        assert!(cache.is_empty());
    }

    #[test]
    fn cache_is_bounded() {
        let mut cache = FetchSessionCache::new(2);
        for _ in 0..5 {
            cache
                .begin(0, INITIAL_EPOCH, vec![part("a", 0, 0)], vec![])
                .expect("session");
        }
        assert_eq!(cache.len(), 2);
    }
}
