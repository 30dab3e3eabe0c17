//! Produce (key 0): appends record batches to partition logs, each on its owning shard
//! (one forwarded message per other shard). acks=0 sends no response (and closes the
//! connection on error, as Kafka does); acks=1 answers after the append and its copy into the
//! shard's acknowledgement journal (after the write to the segment file when there is no
//! journal, no room in it, or `produce.ack.after.write`); acks=all answers after the
//! data is fdatasync'ed when `flush.on.ack.all` is set (single broker: every replica is this
//! one). Unknown topics are created when `auto.create.topics.enable`.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};
use tracing::debug;

use super::{
    encode, owner_failure_error, ApiSpec, HandlerError, HandlerFuture, Ordering, Response,
};
use crate::metadata::is_internal_topic;
use crate::metadata::names::validate_topic_name;
use crate::metadata::ops::{MetadataOp, NewTopic};
use crate::protocol::request::{decode_body, RequestHead};
use crate::protocol::KafkaError;
use crate::shard::partition_ops::{
    by_owner, PartitionKey, PartitionReply, PartitionRequest, ProduceItem, ProduceOutcome,
};
use crate::shard::Shard;
use crate::types::TopicId;

/// Produce 3-13 (v13 names topics by id).
pub const SPEC: ApiSpec = ApiSpec {
    key: ApiKey::Produce,
    min_version: 3,
    max_version: 13,
    ordering: Ordering::Pipelined,
    handle: boxed,
};

/// First Produce version that names topics by id.
const FIRST_TOPIC_ID_VERSION: i16 = 13;

fn boxed(shard: Rc<Shard>, head: RequestHead, body: Bytes) -> HandlerFuture {
    Box::pin(handle(shard, head, body))
}

async fn handle(
    shard: Rc<Shard>,
    head: RequestHead,
    body: Bytes,
) -> Result<Response, HandlerError> {
    let mut request: ProduceRequest = decode_body(&head, body)?;
    let version = head.api_version;
    let acks = request.acks;
    let by_id = version >= FIRST_TOPIC_ID_VERSION;

    // Slots for every partition, in request order.
    let counts: Vec<usize> = request
        .topic_data
        .iter()
        .map(|t| t.partition_data.len())
        .collect();
    let total: usize = counts.iter().sum();
    let mut outcomes: Vec<Option<ProduceOutcome>> = vec![None; total];

    if !matches!(acks, -1..=1) {
        for slot in outcomes.iter_mut() {
            *slot = Some(ProduceOutcome::failed(
                KafkaError::InvalidRequiredAcks,
                None,
            ));
        }
    } else {
        if !by_id && shard.config.auto_create_topics_enable {
            let snapshot = shard.metadata();
            let mut missing: Vec<String> = Vec::new();
            for topic in &request.topic_data {
                let name = topic.name.as_str();
                if snapshot.topic(name).is_none()
                    && validate_topic_name(name).is_ok()
                    && !is_internal_topic(name)
                    && !missing.iter().any(|m| m == name)
                {
                    missing.push(name.to_string());
                }
            }
            if !missing.is_empty() {
                debug!(topics = ?missing, "auto-creating topics from a Produce request");
                let op = MetadataOp::CreateTopics {
                    topics: missing.into_iter().map(NewTopic::with_defaults).collect(),
                    validate_only: false,
                    if_not_exists: true,
                };
                if let Err(failure) = shard.change_metadata(op).await {
                    debug!(error = ?owner_failure_error(failure), "auto-create failed");
                }
            }
        }
        let snapshot = shard.metadata();
        let mut work = Vec::with_capacity(total);
        let mut position = 0usize;
        for topic in request.topic_data.iter_mut() {
            let meta = if by_id {
                snapshot.topic_by_id(TopicId(topic.topic_id))
            } else {
                snapshot.topic(topic.name.as_str())
            };
            let missing_error = if by_id {
                KafkaError::UnknownTopicId
            } else if validate_topic_name(topic.name.as_str()).is_err() {
                KafkaError::InvalidTopicException
            } else {
                KafkaError::UnknownTopicOrPartition
            };
            let internal = if by_id {
                meta.is_some_and(|meta| meta.is_internal())
            } else {
                is_internal_topic(topic.name.as_str())
            };
            for partition in topic.partition_data.iter_mut() {
                let slot = position;
                position += 1;
                if internal {
                    // Only the broker writes internal topics, as in Kafka.
                    outcomes[slot] = Some(ProduceOutcome::failed(
                        KafkaError::InvalidTopicException,
                        Some("cannot append to an internal topic".to_string()),
                    ));
                    continue;
                }
                let Some(meta) = meta else {
                    outcomes[slot] = Some(ProduceOutcome::failed(missing_error, None));
                    continue;
                };
                let Some(placement) = meta.partition(crate::types::PartitionIndex(partition.index))
                else {
                    outcomes[slot] = Some(ProduceOutcome::failed(
                        KafkaError::UnknownTopicOrPartition,
                        None,
                    ));
                    continue;
                };
                let Some(records) = partition.records.take() else {
                    outcomes[slot] = Some(ProduceOutcome::failed(
                        KafkaError::CorruptMessage,
                        Some("null records".to_string()),
                    ));
                    continue;
                };
                let key = PartitionKey {
                    topic_id: meta.id,
                    partition: partition.index,
                };
                work.push((slot, placement.shard, ProduceItem { key, records }));
            }
        }
        run_appends(&shard, acks, work, &mut outcomes).await;
    }

    for error in outcomes.iter().flatten().filter_map(|o| o.error) {
        shard.metrics.kafka_error(ApiKey::Produce, error);
    }
    if acks == 0 {
        if let Some(error) = outcomes.iter().flatten().find_map(|o| o.error) {
            return Err(HandlerError::AcksZeroFailure(error));
        }
        return Ok(Response::NoResponse);
    }

    let mut slots = outcomes.into_iter();
    let responses = request
        .topic_data
        .iter()
        .map(|topic| {
            let partition_responses = topic
                .partition_data
                .iter()
                .map(|partition| {
                    let outcome = slots.next().flatten().unwrap_or_else(|| {
                        ProduceOutcome::failed(KafkaError::UnknownServerError, None)
                    });
                    let mut entry = PartitionProduceResponse::default()
                        .with_index(partition.index)
                        .with_error_code(outcome.error.map(|e| e.code()).unwrap_or(0))
                        .with_base_offset(outcome.base_offset)
                        .with_log_append_time_ms(outcome.log_append_time_ms)
                        .with_log_start_offset(outcome.log_start_offset);
                    if version >= 8 && outcome.error.is_some() {
                        entry.error_message = outcome
                            .message
                            .map(kafka_protocol::protocol::StrBytes::from_string);
                    }
                    entry
                })
                .collect();
            let mut entry =
                TopicProduceResponse::default().with_partition_responses(partition_responses);
            if by_id {
                entry.topic_id = topic.topic_id;
            } else {
                entry.name = topic.name.clone();
            }
            entry
        })
        .collect();
    encode(&head, &ProduceResponse::default().with_responses(responses))
}

/// Runs the appends: other shards' groups as forwarded batches (spawned first, so they are
/// sent in request order), this shard's group directly; outcomes land in their slots.
async fn run_appends(
    shard: &Rc<Shard>,
    acks: i16,
    work: Vec<(usize, crate::types::ShardId, ProduceItem)>,
    outcomes: &mut [Option<ProduceOutcome>],
) {
    let grouped = by_owner(work);
    let mut local = None;
    let mut remote = Vec::new();
    for (owner, group) in grouped.groups {
        let (positions, items): (Vec<usize>, Vec<ProduceItem>) = group.into_iter().unzip();
        if owner == shard.id {
            local = Some((positions, items));
        } else {
            let peer = shard.clone();
            let task = glommio::spawn_local(async move {
                peer.call_partitions(owner, PartitionRequest::Produce { acks, items })
                    .await
            });
            remote.push((positions, task));
        }
    }
    if let Some((positions, items)) = local {
        let results = shard.produce_local(items, acks).await;
        for (position, outcome) in positions.into_iter().zip(results) {
            if let Some(slot) = outcomes.get_mut(position) {
                *slot = Some(outcome);
            }
        }
    }
    for (positions, task) in remote {
        let results = match task.await {
            Ok(PartitionReply::Produce(results)) => results,
            _ => Vec::new(),
        };
        let mut results = results.into_iter();
        for position in positions {
            let outcome = results
                .next()
                .unwrap_or_else(|| ProduceOutcome::failed(KafkaError::NotLeaderOrFollower, None));
            if let Some(slot) = outcomes.get_mut(position) {
                *slot = Some(outcome);
            }
        }
    }
}
