//! Fetch (key 1): reads from partition logs on their owning shards, long-polls up to
//! `max_wait_ms` for `min_bytes` (woken by appends, never by polling), keeps incremental
//! fetch sessions (KIP-227), and answers with a body whose record data is the engine's
//! chunks as they are (hot tail `Bytes`; older data read from the segment file by the
//! connection's writer) — no copy into an encoded response.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future;
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{ApiKey, FetchRequest};
use vaart_engine::Chunk;

use super::{ApiSpec, BodyPart, HandlerError, HandlerFuture, Ordering, Response};
use crate::local_sync::Event;
use crate::metadata::TopicMeta;
use crate::metrics::FetchWaitEnd;
use crate::protocol::fetch_body::{FetchBodyWriter, Piece};
use crate::protocol::request::{decode_body, RequestHead};
use crate::protocol::KafkaError;
use crate::shard::fetch_sessions::{
    FetchContext, LastSent, RequestedPartition, TopicRef, FINAL_EPOCH,
};
use crate::shard::partition_ops::{
    by_owner, PartitionKey, PartitionReply, PartitionRequest, ReadItem, ReadOutcome, WatchItem,
};
use crate::shard::partitions::wait_any;
use crate::shard::Shard;
use crate::types::{PartitionIndex, ShardId, TopicId};

/// Fetch 4-18 (v13+ names topics by id).
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::Fetch,
    min_version: 4,
    max_version: 18,
    ordering: Ordering::Pipelined,
    handle: boxed,
};

const FIRST_TOPIC_ID_VERSION: i16 = 13;
const FIRST_SESSION_VERSION: i16 = 7;
const FIRST_REPLICA_STATE_VERSION: i16 = 15;
/// isolation_level READ_COMMITTED.
const READ_COMMITTED: i8 = 1;

fn boxed(shard: Rc<Shard>, head: RequestHead, body: Bytes) -> HandlerFuture {
    Box::pin(handle(shard, head, body))
}

/// One partition to read this round.
struct Target {
    requested: RequestedPartition,
    last_sent: Option<LastSent>,
    /// The topic and the partition's owner, or why it cannot be read.
    resolved: Result<(Arc<TopicMeta>, ShardId), KafkaError>,
}

/// One partition's answer this round.
struct PartitionResult {
    error: Option<KafkaError>,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
    parts: Vec<BodyPart>,
    bytes: usize,
}

impl PartitionResult {
    fn failed(error: KafkaError) -> PartitionResult {
        PartitionResult {
            error: Some(error),
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            parts: Vec::new(),
            bytes: 0,
        }
    }

    fn from_outcome<C>(
        outcome: ReadOutcome<C>,
        to_part: impl Fn(C) -> BodyPart,
    ) -> PartitionResult {
        if let Some(error) = outcome.error {
            return PartitionResult::failed(error);
        }
        PartitionResult {
            error: None,
            high_watermark: outcome.high_watermark,
            last_stable_offset: outcome.last_stable_offset,
            log_start_offset: outcome.log_start_offset,
            parts: outcome.chunks.into_iter().map(to_part).collect(),
            bytes: outcome.bytes,
        }
    }
}

fn chunk_part(chunk: Chunk) -> BodyPart {
    match chunk {
        Chunk::Memory(bytes) => BodyPart::Memory(bytes),
        Chunk::File {
            file,
            position,
            length,
        } => BodyPart::File {
            file,
            position,
            length,
        },
    }
}

async fn handle(
    shard: Rc<Shard>,
    head: RequestHead,
    body: Bytes,
) -> Result<Response, HandlerError> {
    let request: FetchRequest = decode_body(&head, body)?;
    let version = head.api_version;
    let by_id = version >= FIRST_TOPIC_ID_VERSION;
    let follower = if version >= FIRST_REPLICA_STATE_VERSION {
        request.replica_state.replica_id.0 >= 0
    } else {
        request.replica_id.0 >= 0
    };
    let topic_ref = |name: &kafka_protocol::messages::TopicName, id: uuid::Uuid| {
        if by_id {
            TopicRef::Id(TopicId(id))
        } else {
            TopicRef::Name(name.to_string())
        }
    };
    let requested: Vec<RequestedPartition> = request
        .topics
        .iter()
        .flat_map(|topic| {
            let reference = topic_ref(&topic.topic, topic.topic_id);
            topic.partitions.iter().map(move |p| RequestedPartition {
                topic: reference.clone(),
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
            })
        })
        .collect();
    let forgotten: Vec<(TopicRef, i32)> = request
        .forgotten_topics_data
        .iter()
        .flat_map(|topic| {
            let reference = topic_ref(&topic.topic, topic.topic_id);
            topic
                .partitions
                .iter()
                .map(move |p| (reference.clone(), *p))
        })
        .collect();
    let (session_id, epoch) = if version >= FIRST_SESSION_VERSION {
        (request.session_id, request.session_epoch)
    } else {
        (0, FINAL_EPOCH)
    };
    let begun = shard
        .fetch_sessions
        .borrow_mut()
        .begin(session_id, epoch, requested, forgotten);
    let context = match begun {
        Ok(context) => context,
        Err(error) => {
            let writer = FetchBodyWriter::<BodyPart>::new(version, 0, error.code(), 0, 0)?;
            return Ok(Response::Parts(pieces_to_parts(writer.finish())));
        }
    };

    let targets = resolve_targets(&shard, &context);
    let max_bytes = usize::try_from(request.max_bytes.max(0))
        .unwrap_or(0)
        .min(usize::try_from(shard.config.fetch_max_bytes).unwrap_or(usize::MAX));
    let min_bytes = usize::try_from(request.min_bytes.max(0)).unwrap_or(0);
    let wait = Duration::from_millis(u64::try_from(request.max_wait_ms.max(0)).unwrap_or(0));
    let deadline = Instant::now() + wait;

    let watches = Rc::new(RemoteWatches::default());
    // Set when the fetch first long-polls (metrics: waits, wait time, how they ended).
    let mut waiting_since: Option<Instant> = None;
    let (results, wait_end) = loop {
        let local_keys: Vec<PartitionKey> = targets
            .iter()
            .filter_map(|t| match &t.resolved {
                Ok((topic, owner)) if *owner == shard.id => Some(PartitionKey {
                    topic_id: topic.id,
                    partition: t.requested.partition,
                }),
                _ => None,
            })
            .collect();
        let listeners = shard.listen_for_appends(local_keys.into_iter());
        let results = read_round(&shard, &targets, max_bytes, follower).await;
        let bytes: usize = results.iter().map(|r| r.bytes).sum();
        let errors = results.iter().any(|r| r.error.is_some());
        let now = Instant::now();
        if bytes >= min_bytes
            || errors
            || now >= deadline
            || shard.shutdown.is_set()
            || targets.is_empty()
        {
            let end = if bytes >= min_bytes || errors {
                FetchWaitEnd::Data
            } else {
                FetchWaitEnd::Timeout
            };
            break (results, end);
        }
        drop(results);
        waiting_since.get_or_insert(now);
        let remaining = deadline - now;
        let remote_listener = watches.event.listen();
        watch_remote(&shard, &targets, remaining, follower, &watches);
        let woke = future::or(
            async {
                future::or(wait_any(listeners), remote_listener).await;
                true
            },
            async {
                future::or(glommio::timer::sleep(remaining), shard.shutdown.wait()).await;
                false
            },
        )
        .await;
        if !woke {
            // Deadline: one last read so the answer carries whatever arrived.
            let results = read_round(&shard, &targets, max_bytes, follower).await;
            break (results, FetchWaitEnd::Timeout);
        }
    };
    if let Some(since) = waiting_since {
        shard.metrics.fetch_waited(since.elapsed(), wait_end);
    }

    build_response(
        &shard,
        version,
        &context,
        &targets,
        results,
        request.isolation_level,
    )
}

/// Looks up each target's topic and owning shard in the current metadata.
fn resolve_targets(shard: &Shard, context: &FetchContext) -> Vec<Target> {
    let snapshot = shard.metadata();
    context
        .targets
        .iter()
        .map(|target| {
            let requested = target.requested.clone();
            let topic = match &requested.topic {
                TopicRef::Name(name) => snapshot
                    .topic(name)
                    .cloned()
                    .ok_or(KafkaError::UnknownTopicOrPartition),
                TopicRef::Id(id) => snapshot
                    .topic_by_id(*id)
                    .cloned()
                    .ok_or(KafkaError::UnknownTopicId),
            };
            let resolved = topic.and_then(|topic| {
                let owner = topic
                    .partition(PartitionIndex(requested.partition))
                    .map(|p| p.shard)
                    .ok_or(KafkaError::UnknownTopicOrPartition)?;
                Ok((topic, owner))
            });
            Target {
                requested,
                last_sent: target.last_sent,
                resolved,
            }
        })
        .collect()
}

/// Reads every target once: this shard's partitions directly, others' in one forwarded
/// batch per shard. Applies the response-wide `max_bytes` in request order (the first
/// partition with data always keeps at least one batch, as in Kafka).
async fn read_round(
    shard: &Rc<Shard>,
    targets: &[Target],
    max_bytes: usize,
    follower: bool,
) -> Vec<PartitionResult> {
    let mut results: Vec<Option<PartitionResult>> = targets
        .iter()
        .map(|t| {
            t.resolved
                .as_ref()
                .err()
                .map(|e| PartitionResult::failed(*e))
        })
        .collect();
    let work = targets.iter().enumerate().filter_map(|(position, t)| {
        let (topic, owner) = t.resolved.as_ref().ok()?;
        Some((
            position,
            *owner,
            ReadItem {
                key: PartitionKey {
                    topic_id: topic.id,
                    partition: t.requested.partition,
                },
                fetch_offset: t.requested.fetch_offset,
                max_bytes: usize::try_from(t.requested.max_bytes.max(0)).unwrap_or(0),
                current_leader_epoch: t.requested.current_leader_epoch,
                to_log_end: follower,
            },
        ))
    });
    let grouped = by_owner(work);
    let mut local = None;
    let mut remote = Vec::new();
    for (owner, group) in grouped.groups {
        let (positions, items): (Vec<usize>, Vec<ReadItem>) = group.into_iter().unzip();
        if owner == shard.id {
            local = Some((positions, items));
        } else {
            let peer = shard.clone();
            let task = glommio::spawn_local(async move {
                peer.call_partitions(owner, PartitionRequest::Read { items, max_bytes })
                    .await
            });
            remote.push((positions, task));
        }
    }
    if let Some((positions, items)) = local {
        for (position, outcome) in positions
            .into_iter()
            .zip(shard.read_local(&items, max_bytes))
        {
            if let Some(slot) = results.get_mut(position) {
                *slot = Some(PartitionResult::from_outcome(outcome, chunk_part));
            }
        }
    }
    for (positions, task) in remote {
        let outcomes = match task.await {
            Ok(PartitionReply::Read(outcomes)) => outcomes,
            _ => Vec::new(),
        };
        let mut outcomes = outcomes.into_iter();
        for position in positions {
            let result = match outcomes.next() {
                Some(outcome) => PartitionResult::from_outcome(outcome, BodyPart::Memory),
                None => PartitionResult::failed(KafkaError::NotLeaderOrFollower),
            };
            if let Some(slot) = results.get_mut(position) {
                *slot = Some(result);
            }
        }
    }
    let mut used = 0usize;
    let mut any_data = false;
    results
        .into_iter()
        .map(|slot| {
            let mut result =
                slot.unwrap_or_else(|| PartitionResult::failed(KafkaError::UnknownServerError));
            if result.bytes > 0 {
                if any_data && used >= max_bytes {
                    result.parts.clear();
                    result.bytes = 0;
                } else {
                    any_data = true;
                    used = used.saturating_add(result.bytes);
                }
            }
            result
        })
        .collect()
}

/// Outstanding "tell me when there is data" requests to other shards, one per shard at a
/// time across the rounds of one long-poll; `event` fires when one reports data.
#[derive(Default)]
struct RemoteWatches {
    event: Rc<Event>,
    outstanding: RefCell<HashSet<ShardId>>,
}

/// Asks each other shard that has no watch outstanding to report when one of its targets
/// gets data (the watch re-checks at once, so data that arrived meanwhile is not missed).
fn watch_remote(
    shard: &Rc<Shard>,
    targets: &[Target],
    wait: Duration,
    follower: bool,
    watches: &Rc<RemoteWatches>,
) {
    let work = targets.iter().enumerate().filter_map(|(position, t)| {
        let (topic, owner) = t.resolved.as_ref().ok()?;
        (*owner != shard.id).then(|| {
            (
                position,
                *owner,
                WatchItem {
                    key: PartitionKey {
                        topic_id: topic.id,
                        partition: t.requested.partition,
                    },
                    fetch_offset: t.requested.fetch_offset,
                    to_log_end: follower,
                },
            )
        })
    });
    let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
    for (owner, group) in by_owner(work).groups {
        if !watches.outstanding.borrow_mut().insert(owner) {
            continue;
        }
        let items: Vec<WatchItem> = group.into_iter().map(|(_, item)| item).collect();
        let peer = shard.clone();
        let watches = watches.clone();
        glommio::spawn_local(async move {
            let reply = peer
                .call_partitions(owner, PartitionRequest::Watch { items, wait_ms })
                .await;
            watches.outstanding.borrow_mut().remove(&owner);
            if let Ok(PartitionReply::Watch(true)) = reply {
                watches.event.notify_all();
            }
        })
        .detach();
    }
}

fn pieces_to_parts(pieces: Vec<Piece<BodyPart>>) -> Vec<BodyPart> {
    pieces
        .into_iter()
        .map(|piece| match piece {
            Piece::Encoded(bytes) => BodyPart::Memory(bytes),
            Piece::Data(part) => part,
        })
        .collect()
}

fn build_response(
    shard: &Shard,
    version: i16,
    context: &FetchContext,
    targets: &[Target],
    results: Vec<PartitionResult>,
    isolation_level: i8,
) -> Result<Response, HandlerError> {
    // Which partitions go in the answer: all for a full fetch; for an incremental one only
    // those with records, an error, or offsets that changed since last sent.
    let mut included: Vec<(usize, PartitionResult)> = Vec::new();
    for (position, result) in results.into_iter().enumerate() {
        let Some(target) = targets.get(position) else {
            continue;
        };
        let current = LastSent {
            high_watermark: result.high_watermark,
            last_stable_offset: result.last_stable_offset,
            log_start_offset: result.log_start_offset,
        };
        let changed =
            result.bytes > 0 || result.error.is_some() || target.last_sent != Some(current);
        if !context.incremental || changed {
            included.push((position, result));
        }
    }
    // Group by topic, in order of first appearance.
    let mut topics: Vec<(TopicRef, Vec<(usize, PartitionResult)>)> = Vec::new();
    for (position, result) in included {
        let Some(target) = targets.get(position) else {
            continue;
        };
        match topics
            .iter_mut()
            .find(|(t, _)| *t == target.requested.topic)
        {
            Some((_, group)) => group.push((position, result)),
            None => topics.push((target.requested.topic.clone(), vec![(position, result)])),
        }
    }
    let mut writer =
        FetchBodyWriter::<BodyPart>::new(version, 0, 0, context.session_id, topics.len())?;
    let mut sent = Vec::new();
    for (topic, group) in topics {
        let (name, id) = match &topic {
            TopicRef::Name(name) => (
                name.clone(),
                shard
                    .metadata()
                    .topic(name)
                    .map(|t| t.id.0)
                    .unwrap_or_default(),
            ),
            TopicRef::Id(id) => (
                shard
                    .metadata()
                    .topic_by_id(*id)
                    .map(|t| t.name.clone())
                    .unwrap_or_default(),
                id.0,
            ),
        };
        writer.topic(&name, id, group.len())?;
        let topic_bytes: usize = group.iter().map(|(_, result)| result.bytes).sum();
        shard.metrics.fetched(&name, topic_bytes);
        for (position, result) in group {
            let partition = targets
                .get(position)
                .map(|t| t.requested.partition)
                .unwrap_or(-1);
            if let Some(error) = result.error {
                shard.metrics.kafka_error(ApiKey::Fetch, error);
            }
            let mut header = PartitionData::default()
                .with_partition_index(partition)
                .with_error_code(result.error.map(|e| e.code()).unwrap_or(0))
                .with_high_watermark(result.high_watermark)
                .with_last_stable_offset(result.last_stable_offset)
                .with_log_start_offset(result.log_start_offset)
                .with_records(None);
            header.aborted_transactions = (isolation_level == READ_COMMITTED).then(Vec::new);
            if context.session_id != 0 {
                sent.push((
                    topic.clone(),
                    partition,
                    LastSent {
                        high_watermark: result.high_watermark,
                        last_stable_offset: result.last_stable_offset,
                        log_start_offset: result.log_start_offset,
                    },
                ));
            }
            writer.partition(&header, result.parts, result.bytes)?;
        }
    }
    if context.session_id != 0 {
        shard
            .fetch_sessions
            .borrow_mut()
            .record_sent(context.session_id, &sent);
    }
    Ok(Response::Parts(pieces_to_parts(writer.finish())))
}
