//! Consumer groups, Kafka's classic protocol: [`Groups`] for the admin side (find the
//! coordinator, list, describe, delete groups, fetch and commit offsets) and [`GroupMember`]
//! for a member (JoinGroup, SyncGroup with the range assignor when it leads, Heartbeat in a
//! background task, LeaveGroup).
//!
//! Subscriptions and assignments are Kafka's "consumer" embedded protocol, encoded by
//! kafka-protocol's `ConsumerProtocolSubscription` / `ConsumerProtocolAssignment` after a
//! 2-byte version prefix (a newer version than we know is decoded as the newest we know:
//! the schemas only ever append fields).
//!
//! A member talks to its coordinator over a connection of its own, so a JoinGroup that the
//! coordinator holds for a rebalance never delays the Fetch requests of the same client.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use glommio::timer::Timer;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, ConsumerProtocolSubscription, DeleteGroupsRequest,
    DescribeGroupsRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, ListGroupsRequest, OffsetCommitRequest,
    OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tracing::{debug, info};

use crate::cluster::Client;
use crate::connection::{Connection, ConnectionConfig};
use crate::error::{ClientError, KafkaCode, KafkaError};
use crate::types::{NodeId, Offset, PartitionId};

/// The embedded protocol type of consumers.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";
/// The one assignor this client implements (Kafka's `RangeAssignor`).
pub const RANGE_ASSIGNOR: &str = "range";

/// Highest version of the consumer protocol schemas that kafka-protocol knows.
const CONSUMER_PROTOCOL_VERSION_MAX: i16 = 3;
/// Version of the subscription and assignment this client writes (what librdkafka and the
/// Java client read back without trouble).
const CONSUMER_PROTOCOL_VERSION_WRITTEN: i16 = 0;
/// Attempts at a call whose coordinator moved, is loading or is not available yet.
const COORDINATOR_ATTEMPTS_MAX: u32 = 30;
/// Pause between those attempts.
const COORDINATOR_BACKOFF_MS: u64 = 200;
/// Rounds of JoinGroup + SyncGroup before a join gives up (each round is a rebalance).
const JOIN_ROUNDS_MAX: u32 = 50;
/// Extra time a JoinGroup may take beyond the rebalance timeout before the client gives up.
const JOIN_TIMEOUT_SLACK_MS: u64 = 5_000;

/// Kafka error codes of the group APIs (the exact codes, for callers that branch on them).
pub mod codes {
    use crate::error::KafkaCode;
    pub const COORDINATOR_LOAD_IN_PROGRESS: KafkaCode = KafkaCode(14);
    pub const COORDINATOR_NOT_AVAILABLE: KafkaCode = KafkaCode(15);
    pub const NOT_COORDINATOR: KafkaCode = KafkaCode(16);
    pub const ILLEGAL_GENERATION: KafkaCode = KafkaCode(22);
    pub const INVALID_GROUP_ID: KafkaCode = KafkaCode(24);
    pub const UNKNOWN_MEMBER_ID: KafkaCode = KafkaCode(25);
    pub const REBALANCE_IN_PROGRESS: KafkaCode = KafkaCode(27);
    pub const NON_EMPTY_GROUP: KafkaCode = KafkaCode(68);
    pub const GROUP_ID_NOT_FOUND: KafkaCode = KafkaCode(69);
    pub const MEMBER_ID_REQUIRED: KafkaCode = KafkaCode(79);
    pub const FENCED_INSTANCE_ID: KafkaCode = KafkaCode(82);

    /// The group's coordinator moved, is loading, or is not there yet: find it and retry.
    pub fn is_coordinator_error(code: KafkaCode) -> bool {
        matches!(
            code,
            COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR
        )
    }
}
use codes as code;

/// Partitions by topic, each list sorted.
pub type TopicPartitions = BTreeMap<String, Vec<PartitionId>>;

/// A group's coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinator {
    pub node: NodeId,
    pub host: String,
    pub port: i32,
}

impl Coordinator {
    /// `HOST:PORT`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    /// `consumer` for consumer groups, empty for groups that only hold offsets.
    pub protocol_type: String,
    /// Empty when the broker does not report states (ListGroups before v4).
    pub state: String,
}

/// One member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Its partitions (decoded from the consumer protocol; empty while the group
    /// rebalances or for other protocol types).
    pub assignment: TopicPartitions,
}

/// A described group. A group that does not exist has state `Dead` and no members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    /// Kafka's state names: `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable`,
    /// `Dead`.
    pub state: String,
    pub protocol_type: String,
    /// The chosen assignor (e.g. `range`).
    pub protocol: String,
    pub members: Vec<MemberDescription>,
    pub coordinator: Coordinator,
}

impl GroupDescription {
    /// Whether the group does not exist.
    pub fn is_dead(&self) -> bool {
        self.state == "Dead"
    }
}

/// Who commits: a member of a generation, or an admin (generation -1, no member id), which
/// the coordinator accepts only while the group has no members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub generation_id: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
}

impl Generation {
    /// The identity of an admin commit.
    pub fn admin() -> Self {
        Self {
            generation_id: -1,
            member_id: String::new(),
            instance_id: None,
        }
    }
}

/// An offset to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetToCommit {
    pub topic: String,
    pub partition: PartitionId,
    pub offset: Offset,
}

/// Committed offsets by (topic, partition); partitions without one are absent.
pub type CommittedOffsets = BTreeMap<(String, PartitionId), Offset>;

/// Group calls over a [`Client`]; remembers each group's coordinator.
#[derive(Clone)]
pub struct Groups {
    client: Client,
    coordinators: Rc<RefCell<HashMap<String, Coordinator>>>,
}

impl Groups {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            coordinators: Rc::new(RefCell::new(HashMap::new())),
        }
    }

    /// The client these calls go through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The coordinator of `group_id` (FindCoordinator; retried while it is not available,
    /// e.g. while the broker creates `__consumer_offsets`).
    pub async fn find_coordinator(&self, group_id: &str) -> Result<Coordinator, ClientError> {
        if let Some(found) = self.coordinators.borrow().get(group_id) {
            return Ok(found.clone());
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let connection = self.client.any_broker().await?;
            let version = connection.version(ApiKey::FindCoordinator)?;
            let mut request = FindCoordinatorRequest::default().with_key_type(0);
            if version >= 4 {
                request.coordinator_keys = vec![str_bytes(group_id)];
            } else {
                request.key = str_bytes(group_id);
            }
            let response = connection.call_versioned(&request, version).await?;
            let (error, message, coordinator) = if version >= 4 {
                let entry = response
                    .coordinators
                    .into_iter()
                    .next()
                    .ok_or(ClientError::Frame {
                        addr: connection.addr().to_owned(),
                        reason: "FindCoordinator answer without coordinators",
                    })?;
                (
                    KafkaCode(entry.error_code),
                    entry.error_message.map(|m| m.as_str().to_owned()),
                    Coordinator {
                        node: NodeId(entry.node_id.0),
                        host: entry.host.as_str().to_owned(),
                        port: entry.port,
                    },
                )
            } else {
                (
                    KafkaCode(response.error_code),
                    response.error_message.map(|m| m.as_str().to_owned()),
                    Coordinator {
                        node: NodeId(response.node_id.0),
                        host: response.host.as_str().to_owned(),
                        port: response.port,
                    },
                )
            };
            if error.is_ok() {
                self.coordinators
                    .borrow_mut()
                    .insert(group_id.to_owned(), coordinator.clone());
                return Ok(coordinator);
            }
            if (code::is_coordinator_error(error) || error.is_retriable())
                && attempt < COORDINATOR_ATTEMPTS_MAX
            {
                debug!(group = group_id, %error, attempt, "coordinator not found yet; retrying");
                sleep_ms(COORDINATOR_BACKOFF_MS).await;
                continue;
            }
            return Err(KafkaError::new(ApiKey::FindCoordinator, error)
                .with_resource(format!("group {group_id}"))
                .with_message(message.as_deref())
                .into());
        }
    }

    /// Forgets the cached coordinator of `group_id` (after NOT_COORDINATOR and the like).
    pub fn forget_coordinator(&self, group_id: &str) {
        self.coordinators.borrow_mut().remove(group_id);
    }

    /// A connection to the coordinator of `group_id`, shared with the client's other calls
    /// to that broker.
    async fn coordinator_connection(&self, group_id: &str) -> Result<Connection, ClientError> {
        let coordinator = self.find_coordinator(group_id).await?;
        match self.client.broker(coordinator.node).await {
            Err(ClientError::UnknownNode { .. }) => {
                // A broker this client has not heard of yet: refresh the broker list once.
                self.client.fetch_metadata(Some(&[])).await?;
                self.client.broker(coordinator.node).await
            }
            other => other,
        }
    }

    /// Whether a call that failed with `error` should find the coordinator again and retry.
    async fn retry_after(&self, group_id: &str, error: KafkaCode, attempt: u32) -> bool {
        if !code::is_coordinator_error(error) || attempt >= COORDINATOR_ATTEMPTS_MAX {
            return false;
        }
        debug!(group = group_id, %error, attempt, "coordinator error; retrying");
        self.forget_coordinator(group_id);
        sleep_ms(COORDINATOR_BACKOFF_MS).await;
        true
    }

    /// Every group on every broker, sorted by id.
    pub async fn list_groups(&self) -> Result<Vec<ListedGroup>, ClientError> {
        let metadata = self.client.fetch_metadata(Some(&[])).await?;
        let mut groups = Vec::new();
        for broker in &metadata.brokers {
            let connection = self.client.broker(broker.node).await?;
            let response = connection.call(&ListGroupsRequest::default()).await?;
            KafkaCode(response.error_code)
                .into_result()
                .map_err(|code| KafkaError::new(ApiKey::ListGroups, code))?;
            groups.extend(response.groups.into_iter().map(|group| ListedGroup {
                group_id: group.group_id.0.as_str().to_owned(),
                protocol_type: group.protocol_type.as_str().to_owned(),
                state: group.group_state.as_str().to_owned(),
            }));
        }
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        groups.dedup_by(|a, b| a.group_id == b.group_id);
        Ok(groups)
    }

    /// State and members of `group_id` (state `Dead` if it does not exist).
    pub async fn describe_group(&self, group_id: &str) -> Result<GroupDescription, ClientError> {
        let request =
            DescribeGroupsRequest::default().with_groups(vec![GroupId(str_bytes(group_id))]);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let coordinator = self.find_coordinator(group_id).await?;
            let connection = self.coordinator_connection(group_id).await?;
            let response = connection.call(&request).await?;
            let group = response
                .groups
                .into_iter()
                .next()
                .ok_or(ClientError::Frame {
                    addr: connection.addr().to_owned(),
                    reason: "DescribeGroups answer without groups",
                })?;
            let error = KafkaCode(group.error_code);
            if self.retry_after(group_id, error, attempt).await {
                continue;
            }
            if error == code::GROUP_ID_NOT_FOUND {
                return Ok(GroupDescription {
                    group_id: group_id.to_owned(),
                    state: "Dead".to_owned(),
                    protocol_type: String::new(),
                    protocol: String::new(),
                    members: Vec::new(),
                    coordinator,
                });
            }
            error.into_result().map_err(|code| {
                KafkaError::new(ApiKey::DescribeGroups, code)
                    .with_resource(format!("group {group_id}"))
            })?;
            let consumer = group.protocol_type.as_str() == CONSUMER_PROTOCOL_TYPE;
            let members = group
                .members
                .into_iter()
                .map(|member| {
                    let assignment = if consumer {
                        decode_assignment(&member.member_assignment).unwrap_or_else(|error| {
                            debug!(group = group_id, %error, "undecodable member assignment");
                            TopicPartitions::new()
                        })
                    } else {
                        TopicPartitions::new()
                    };
                    MemberDescription {
                        member_id: member.member_id.as_str().to_owned(),
                        instance_id: member.group_instance_id.map(|id| id.as_str().to_owned()),
                        client_id: member.client_id.as_str().to_owned(),
                        client_host: member.client_host.as_str().to_owned(),
                        assignment,
                    }
                })
                .collect();
            return Ok(GroupDescription {
                group_id: group.group_id.0.as_str().to_owned(),
                state: group.group_state.as_str().to_owned(),
                protocol_type: group.protocol_type.as_str().to_owned(),
                protocol: group.protocol_data.as_str().to_owned(),
                members,
                coordinator,
            });
        }
    }

    /// Deletes groups (each must be empty); one result per group, in request order.
    pub async fn delete_groups(
        &self,
        group_ids: &[&str],
    ) -> Result<Vec<(String, Result<(), KafkaError>)>, ClientError> {
        let mut results = Vec::with_capacity(group_ids.len());
        for &group_id in group_ids {
            let request = DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(str_bytes(group_id))]);
            let mut attempt = 0;
            let outcome = loop {
                attempt += 1;
                let connection = self.coordinator_connection(group_id).await?;
                let response = connection.call(&request).await?;
                let error = response
                    .results
                    .into_iter()
                    .find(|result| result.group_id.0.as_str() == group_id)
                    .map_or(KafkaCode(-1), |result| KafkaCode(result.error_code));
                if self.retry_after(group_id, error, attempt).await {
                    continue;
                }
                break error.into_result().map_err(|code| {
                    KafkaError::new(ApiKey::DeleteGroups, code)
                        .with_resource(format!("group {group_id}"))
                });
            };
            results.push((group_id.to_owned(), outcome));
        }
        Ok(results)
    }

    /// The committed offsets of `group_id`: of `partitions` only, or of every partition the
    /// group has committed (`None`).
    pub async fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&TopicPartitions>,
    ) -> Result<CommittedOffsets, ClientError> {
        let topics = partitions.map(|by_topic| {
            by_topic
                .iter()
                .map(|(topic, ids)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(topic_name(topic))
                        .with_partition_indexes(ids.iter().map(|id| id.0).collect())
                })
                .collect()
        });
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(str_bytes(group_id)))
            .with_topics(topics);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let connection = self.coordinator_connection(group_id).await?;
            let response = connection.call(&request).await?;
            let error = KafkaCode(response.error_code);
            if self.retry_after(group_id, error, attempt).await {
                continue;
            }
            error.into_result().map_err(|code| {
                KafkaError::new(ApiKey::OffsetFetch, code)
                    .with_resource(format!("group {group_id}"))
            })?;
            let mut offsets = CommittedOffsets::new();
            let mut retry = false;
            for topic in response.topics {
                let name = topic.name.0.as_str().to_owned();
                for partition in topic.partitions {
                    let error = KafkaCode(partition.error_code);
                    if code::is_coordinator_error(error) {
                        retry = true;
                        continue;
                    }
                    error.into_result().map_err(|code| {
                        KafkaError::new(ApiKey::OffsetFetch, code)
                            .with_resource(format!("{name}-{}", partition.partition_index))
                    })?;
                    if partition.committed_offset >= 0 {
                        offsets.insert(
                            (name.clone(), PartitionId(partition.partition_index)),
                            Offset(partition.committed_offset),
                        );
                    }
                }
            }
            if retry
                && self
                    .retry_after(group_id, code::COORDINATOR_NOT_AVAILABLE, attempt)
                    .await
            {
                continue;
            }
            return Ok(offsets);
        }
    }

    /// Commits `offsets` for `group_id` as `generation` (see [`Generation::admin`]). The first
    /// per-partition error is the error.
    pub async fn commit_offsets(
        &self,
        group_id: &str,
        generation: &Generation,
        offsets: &[OffsetToCommit],
    ) -> Result<(), ClientError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let connection = self.coordinator_connection(group_id).await?;
            match commit_on(&connection, group_id, generation, offsets).await? {
                Err(error) if self.retry_after(group_id, error.code, attempt).await => continue,
                outcome => return outcome.map_err(ClientError::from),
            }
        }
    }
}

/// One OffsetCommit on `connection`: the outer `Err` is transport, the inner the first
/// error code the coordinator gave.
async fn commit_on(
    connection: &Connection,
    group_id: &str,
    generation: &Generation,
    offsets: &[OffsetToCommit],
) -> Result<Result<(), KafkaError>, ClientError> {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for entry in offsets {
        let partition = OffsetCommitRequestPartition::default()
            .with_partition_index(entry.partition.0)
            .with_committed_offset(entry.offset.0)
            .with_committed_leader_epoch(-1)
            .with_committed_metadata(Some(StrBytes::from_static_str("")));
        match topics
            .iter_mut()
            .find(|topic| topic.name.0.as_str() == entry.topic)
        {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(topic_name(&entry.topic))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(str_bytes(group_id)))
        .with_generation_id_or_member_epoch(generation.generation_id)
        .with_member_id(str_bytes(&generation.member_id))
        .with_group_instance_id(generation.instance_id.as_deref().map(str_bytes))
        .with_retention_time_ms(-1)
        .with_topics(topics);
    let response = connection.call(&request).await?;
    for topic in response.topics {
        for partition in topic.partitions {
            let error = KafkaCode(partition.error_code);
            if !error.is_ok() {
                return Ok(Err(KafkaError::new(ApiKey::OffsetCommit, error)
                    .with_resource(format!(
                        "{}-{}",
                        topic.name.0.as_str(),
                        partition.partition_index
                    ))));
            }
        }
    }
    Ok(Ok(()))
}

/// Settings of a [`GroupMember`] (Kafka's names in the comments).
#[derive(Debug, Clone)]
pub struct GroupMemberConfig {
    /// `group.id`.
    pub group_id: String,
    /// Topics to subscribe to.
    pub topics: Vec<String>,
    /// `session.timeout.ms`.
    pub session_timeout_ms: i32,
    /// `max.poll.interval.ms`: how long the coordinator waits for members to rejoin.
    pub rebalance_timeout_ms: i32,
    /// `heartbeat.interval.ms`.
    pub heartbeat_interval_ms: u64,
    /// `group.instance.id` (static membership).
    pub instance_id: Option<String>,
}

impl GroupMemberConfig {
    /// Kafka's consumer defaults.
    pub fn new(group_id: impl Into<String>, topics: Vec<String>) -> Self {
        Self {
            group_id: group_id.into(),
            topics,
            session_timeout_ms: 45_000,
            rebalance_timeout_ms: 300_000,
            heartbeat_interval_ms: 3_000,
            instance_id: None,
        }
    }
}

/// A member's view of its generation.
#[derive(Debug, Clone, Default)]
struct MemberState {
    member_id: String,
    generation_id: i32,
    leader: bool,
    assignment: TopicPartitions,
}

struct MemberInner {
    groups: Groups,
    config: GroupMemberConfig,
    /// The member's own connection to its coordinator (opened on demand).
    connection: RefCell<Option<Connection>>,
    state: RefCell<MemberState>,
    /// The coordinator asked for a rebalance, or the generation is gone: the owner of the
    /// member should commit what it has and call [`GroupMember::rejoin`].
    rejoin_needed: Cell<bool>,
    /// A join is running: the heartbeat task waits.
    joining: Cell<bool>,
}

/// A member of a consumer group (classic protocol, range assignor). Heartbeats run in a
/// background task until [`GroupMember::leave`] or drop. Owned by one executor.
pub struct GroupMember {
    inner: Rc<MemberInner>,
    heartbeat: RefCell<Option<glommio::Task<()>>>,
}

impl GroupMember {
    /// Joins the group and waits for this member's assignment.
    pub async fn join(client: Client, config: GroupMemberConfig) -> Result<Self, ClientError> {
        if config.group_id.is_empty() {
            return Err(ClientError::InvalidConfig("the group id must not be empty"));
        }
        if config.heartbeat_interval_ms == 0 {
            return Err(ClientError::InvalidConfig(
                "heartbeat_interval_ms must be at least 1",
            ));
        }
        let member = Self {
            inner: Rc::new(MemberInner {
                groups: Groups::new(client),
                config,
                connection: RefCell::new(None),
                state: RefCell::new(MemberState {
                    generation_id: -1,
                    ..MemberState::default()
                }),
                rejoin_needed: Cell::new(false),
                joining: Cell::new(false),
            }),
            heartbeat: RefCell::new(None),
        };
        member.rejoin().await?;
        let task = glommio::spawn_local(heartbeat_loop(Rc::clone(&member.inner)));
        *member.heartbeat.borrow_mut() = Some(task);
        Ok(member)
    }

    /// The group id.
    pub fn group_id(&self) -> &str {
        &self.inner.config.group_id
    }

    /// This member's partitions in the current generation.
    pub fn assignment(&self) -> TopicPartitions {
        self.inner.state.borrow().assignment.clone()
    }

    /// The current generation and member id (for commits).
    pub fn generation(&self) -> Generation {
        let state = self.inner.state.borrow();
        Generation {
            generation_id: state.generation_id,
            member_id: state.member_id.clone(),
            instance_id: self.inner.config.instance_id.clone(),
        }
    }

    /// Whether this member computed the current assignment.
    pub fn is_leader(&self) -> bool {
        self.inner.state.borrow().leader
    }

    /// Whether the group is rebalancing (or this member's generation is gone): commit, then
    /// call [`GroupMember::rejoin`] and take the new assignment.
    pub fn needs_rejoin(&self) -> bool {
        self.inner.rejoin_needed.get()
    }

    /// (Re)joins: JoinGroup (with the MEMBER_ID_REQUIRED round trip), the range assignment
    /// if this member leads, SyncGroup; repeated while the group keeps rebalancing.
    pub async fn rejoin(&self) -> Result<(), ClientError> {
        self.inner.joining.set(true);
        let result = join_rounds(&self.inner).await;
        self.inner.joining.set(false);
        result
    }

    /// Commits `offsets` as this member. An error that means the generation is over marks
    /// the member for a rejoin.
    pub async fn commit(&self, offsets: &[OffsetToCommit]) -> Result<(), ClientError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let group_id = &self.inner.config.group_id;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let connection = coordinator(&self.inner).await?;
            let generation = self.generation();
            match commit_on(&connection, group_id, &generation, offsets).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(error)) => {
                    if code::is_coordinator_error(error.code) && attempt < COORDINATOR_ATTEMPTS_MAX
                    {
                        drop_coordinator(&self.inner);
                        sleep_ms(COORDINATOR_BACKOFF_MS).await;
                        continue;
                    }
                    if generation_over(error.code) {
                        self.inner.rejoin_needed.set(true);
                    }
                    return Err(error.into());
                }
                Err(error) => {
                    drop_coordinator(&self.inner);
                    return Err(error);
                }
            }
        }
    }

    /// The group's committed offsets of this member's partitions.
    pub async fn committed(&self) -> Result<CommittedOffsets, ClientError> {
        let assignment = self.assignment();
        if assignment.is_empty() {
            return Ok(CommittedOffsets::new());
        }
        self.inner
            .groups
            .fetch_offsets(&self.inner.config.group_id, Some(&assignment))
            .await
    }

    /// Stops heartbeats and leaves the group (a static member only stops: the coordinator
    /// keeps its place until its session times out, as Kafka's consumer does).
    pub async fn leave(self) -> Result<(), ClientError> {
        self.heartbeat.borrow_mut().take();
        if self.inner.config.instance_id.is_some() {
            return Ok(());
        }
        let member_id = self.inner.state.borrow().member_id.clone();
        if member_id.is_empty() {
            return Ok(());
        }
        let connection = coordinator(&self.inner).await?;
        let version = connection.version(ApiKey::LeaveGroup)?;
        let mut request = LeaveGroupRequest::default()
            .with_group_id(GroupId(str_bytes(&self.inner.config.group_id)));
        if version >= 3 {
            request.members = vec![MemberIdentity::default()
                .with_member_id(str_bytes(&member_id))
                .with_reason(Some(StrBytes::from_static_str(
                    "the consumer is being closed",
                )))];
        } else {
            request.member_id = str_bytes(&member_id);
        }
        let response = connection.call_versioned(&request, version).await?;
        let error = response
            .members
            .iter()
            .map(|member| KafkaCode(member.error_code))
            .find(|code| !code.is_ok())
            .unwrap_or(KafkaCode(response.error_code));
        connection.close();
        match error {
            // Already gone (its session expired): nothing to leave.
            code::UNKNOWN_MEMBER_ID => Ok(()),
            error => error.into_result().map_err(|code| {
                KafkaError::new(ApiKey::LeaveGroup, code)
                    .with_resource(format!("group {}", self.inner.config.group_id))
                    .into()
            }),
        }
    }
}

/// Whether `code` means the member's generation is over (rejoin).
fn generation_over(code: KafkaCode) -> bool {
    matches!(
        code,
        code::REBALANCE_IN_PROGRESS | code::ILLEGAL_GENERATION | code::UNKNOWN_MEMBER_ID
    )
}

/// The member's own connection to its coordinator.
async fn coordinator(inner: &MemberInner) -> Result<Connection, ClientError> {
    if let Some(connection) = inner.connection.borrow().as_ref() {
        if !connection.is_closed() {
            return Ok(connection.clone());
        }
    }
    let found = inner
        .groups
        .find_coordinator(&inner.config.group_id)
        .await?;
    let mut config: ConnectionConfig = inner.groups.client().config().connection.clone();
    // A JoinGroup is held until the rebalance completes.
    let rebalance_ms = u64::try_from(inner.config.rebalance_timeout_ms).unwrap_or(0);
    config.request_timeout_ms = config
        .request_timeout_ms
        .max(rebalance_ms.saturating_add(JOIN_TIMEOUT_SLACK_MS));
    let connection = Connection::connect(&found.addr(), config).await?;
    *inner.connection.borrow_mut() = Some(connection.clone());
    Ok(connection)
}

/// Closes the coordinator connection and forgets the coordinator.
fn drop_coordinator(inner: &MemberInner) {
    if let Some(connection) = inner.connection.borrow_mut().take() {
        connection.close();
    }
    inner.groups.forget_coordinator(&inner.config.group_id);
}

async fn join_rounds(inner: &MemberInner) -> Result<(), ClientError> {
    let group_id = inner.config.group_id.as_str();
    let subscription = encode_subscription(&inner.config.topics)?;
    let mut retries = 0u32;
    let mut round = |what: &str, code: KafkaCode| -> Result<(), ClientError> {
        retries += 1;
        debug!(group = group_id, %code, what, retries, "join round again");
        if retries >= JOIN_ROUNDS_MAX {
            return Err(KafkaError::new(ApiKey::JoinGroup, code)
                .with_resource(format!("group {group_id}"))
                .with_message(Some("gave up joining"))
                .into());
        }
        Ok(())
    };
    loop {
        let connection = coordinator(inner).await?;
        let member_id = inner.state.borrow().member_id.clone();
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(str_bytes(group_id)))
            .with_session_timeout_ms(inner.config.session_timeout_ms)
            .with_rebalance_timeout_ms(inner.config.rebalance_timeout_ms)
            .with_member_id(str_bytes(&member_id))
            .with_group_instance_id(inner.config.instance_id.as_deref().map(str_bytes))
            .with_protocol_type(StrBytes::from_static_str(CONSUMER_PROTOCOL_TYPE))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str(RANGE_ASSIGNOR))
                .with_metadata(subscription.clone())]);
        let response = match connection.call(&request).await {
            Ok(response) => response,
            Err(error) if error.is_retriable() => {
                drop_coordinator(inner);
                round("JoinGroup transport", KafkaCode(-1))?;
                sleep_ms(COORDINATOR_BACKOFF_MS).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        let error = KafkaCode(response.error_code);
        match error {
            KafkaCode::NONE => {}
            code::MEMBER_ID_REQUIRED => {
                inner.state.borrow_mut().member_id = response.member_id.as_str().to_owned();
                round("member id assigned", error)?;
                continue;
            }
            code::UNKNOWN_MEMBER_ID => {
                inner.state.borrow_mut().member_id.clear();
                round("unknown member", error)?;
                continue;
            }
            code::REBALANCE_IN_PROGRESS => {
                round("join during rebalance", error)?;
                continue;
            }
            error if code::is_coordinator_error(error) => {
                drop_coordinator(inner);
                round("coordinator moved", error)?;
                sleep_ms(COORDINATOR_BACKOFF_MS).await;
                continue;
            }
            error => {
                return Err(KafkaError::new(ApiKey::JoinGroup, error)
                    .with_resource(format!("group {group_id}"))
                    .into())
            }
        }
        let member_id = response.member_id.as_str().to_owned();
        let generation_id = response.generation_id;
        let leader = response.leader.as_str() == member_id;
        let protocol = response
            .protocol_name
            .clone()
            .unwrap_or_else(|| StrBytes::from_static_str(RANGE_ASSIGNOR));
        {
            let mut state = inner.state.borrow_mut();
            state.member_id = member_id.clone();
            state.generation_id = generation_id;
            state.leader = leader;
        }
        let assignments = if leader {
            leader_assignments(inner, &response).await?
        } else {
            Vec::new()
        };
        let request = SyncGroupRequest::default()
            .with_group_id(GroupId(str_bytes(group_id)))
            .with_generation_id(generation_id)
            .with_member_id(str_bytes(&member_id))
            .with_group_instance_id(inner.config.instance_id.as_deref().map(str_bytes))
            .with_protocol_type(Some(StrBytes::from_static_str(CONSUMER_PROTOCOL_TYPE)))
            .with_protocol_name(Some(protocol))
            .with_assignments(assignments);
        let response = match connection.call(&request).await {
            Ok(response) => response,
            Err(error) if error.is_retriable() => {
                drop_coordinator(inner);
                round("SyncGroup transport", KafkaCode(-1))?;
                sleep_ms(COORDINATOR_BACKOFF_MS).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        let error = KafkaCode(response.error_code);
        match error {
            KafkaCode::NONE => {}
            code::UNKNOWN_MEMBER_ID => {
                inner.state.borrow_mut().member_id.clear();
                round("unknown member at sync", error)?;
                continue;
            }
            code::REBALANCE_IN_PROGRESS | code::ILLEGAL_GENERATION => {
                round("rebalance at sync", error)?;
                continue;
            }
            error if code::is_coordinator_error(error) => {
                drop_coordinator(inner);
                round("coordinator moved at sync", error)?;
                sleep_ms(COORDINATOR_BACKOFF_MS).await;
                continue;
            }
            error => {
                return Err(KafkaError::new(ApiKey::SyncGroup, error)
                    .with_resource(format!("group {group_id}"))
                    .into())
            }
        }
        let assignment = decode_assignment(&response.assignment)?;
        info!(group = group_id, generation = generation_id, member = %member_id, leader, ?assignment, "joined group");
        inner.state.borrow_mut().assignment = assignment;
        inner.rejoin_needed.set(false);
        return Ok(());
    }
}

/// The leader's SyncGroup assignments: the range assignor over every member's subscription.
async fn leader_assignments(
    inner: &MemberInner,
    response: &JoinGroupResponse,
) -> Result<Vec<SyncGroupRequestAssignment>, ClientError> {
    let mut members = Vec::with_capacity(response.members.len());
    for member in &response.members {
        members.push(MemberSubscription {
            member_id: member.member_id.as_str().to_owned(),
            instance_id: member
                .group_instance_id
                .as_ref()
                .map(|id| id.as_str().to_owned()),
            topics: decode_subscription(&member.metadata)?,
        });
    }
    let mut topics: Vec<&str> = members
        .iter()
        .flat_map(|member| member.topics.iter().map(String::as_str))
        .collect();
    topics.sort_unstable();
    topics.dedup();
    let metadata = inner.groups.client().fetch_metadata(Some(&topics)).await?;
    let partition_counts: BTreeMap<String, i32> = metadata
        .topics
        .iter()
        .filter(|topic| topic.error.is_ok())
        .map(|topic| {
            let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
            (topic.name.clone(), count)
        })
        .collect();
    let plan = range_assign(&members, &partition_counts);
    let mut assignments = Vec::with_capacity(plan.len());
    for (member_id, partitions) in plan {
        assignments.push(
            SyncGroupRequestAssignment::default()
                .with_member_id(StrBytes::from_string(member_id))
                .with_assignment(encode_assignment(&partitions)?),
        );
    }
    Ok(assignments)
}

/// Heartbeats every `heartbeat_interval_ms`; marks the member for a rejoin when the
/// coordinator starts a rebalance or no longer knows the generation.
async fn heartbeat_loop(inner: Rc<MemberInner>) {
    let interval = Duration::from_millis(inner.config.heartbeat_interval_ms);
    loop {
        Timer::new(interval).await;
        if inner.joining.get() || inner.rejoin_needed.get() {
            continue;
        }
        let (generation_id, member_id) = {
            let state = inner.state.borrow();
            (state.generation_id, state.member_id.clone())
        };
        let connection = match coordinator(&inner).await {
            Ok(connection) => connection,
            Err(error) => {
                debug!(group = %inner.config.group_id, %error, "no coordinator for heartbeat");
                continue;
            }
        };
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(str_bytes(&inner.config.group_id)))
            .with_generation_id(generation_id)
            .with_member_id(str_bytes(&member_id))
            .with_group_instance_id(inner.config.instance_id.as_deref().map(str_bytes));
        match connection.call(&request).await {
            Ok(response) => {
                let error = KafkaCode(response.error_code);
                if error.is_ok() || inner.joining.get() {
                    continue;
                }
                debug!(group = %inner.config.group_id, %error, "heartbeat error");
                if error == code::UNKNOWN_MEMBER_ID || error == code::FENCED_INSTANCE_ID {
                    inner.state.borrow_mut().member_id.clear();
                    inner.rejoin_needed.set(true);
                } else if generation_over(error) {
                    inner.rejoin_needed.set(true);
                } else if code::is_coordinator_error(error) {
                    drop_coordinator(&inner);
                }
            }
            Err(error) => {
                debug!(group = %inner.config.group_id, %error, "heartbeat failed");
                drop_coordinator(&inner);
            }
        }
    }
}

/// One member's subscription, as the leader sees it in the JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSubscription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub topics: Vec<String>,
}

/// Kafka's `RangeAssignor`: per topic, the partitions are cut into consecutive ranges, one per
/// subscribed member in order (static members by instance id first, then the rest by member
/// id); the first `partitions % members` members get one extra. Every member appears in the
/// result, even with nothing assigned; topics missing from `partition_counts` are skipped.
pub fn range_assign(
    members: &[MemberSubscription],
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, TopicPartitions> {
    let mut plan: BTreeMap<String, TopicPartitions> = members
        .iter()
        .map(|member| (member.member_id.clone(), TopicPartitions::new()))
        .collect();
    let mut ordered: Vec<&MemberSubscription> = members.iter().collect();
    ordered.sort_by(|a, b| match (&a.instance_id, &b.instance_id) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.member_id.cmp(&b.member_id),
    });
    for (topic, &count) in partition_counts {
        let subscribers: Vec<&str> = ordered
            .iter()
            .filter(|member| member.topics.iter().any(|name| name == topic))
            .map(|member| member.member_id.as_str())
            .collect();
        let (Ok(count), Ok(consumers)) = (u32::try_from(count), u32::try_from(subscribers.len()))
        else {
            continue;
        };
        if consumers == 0 {
            continue;
        }
        let per_member = count / consumers;
        let extra = count % consumers;
        let mut next = 0u32;
        for (index, member_id) in (0u32..).zip(subscribers) {
            let length = per_member + u32::from(index < extra);
            if length == 0 {
                continue;
            }
            let partitions: Vec<PartitionId> = (next..next + length)
                .map(|id| PartitionId(i32::try_from(id).unwrap_or(i32::MAX)))
                .collect();
            next += length;
            if let Some(entry) = plan.get_mut(member_id) {
                entry.insert(topic.clone(), partitions);
            }
        }
    }
    plan
}

/// A subscription to `topics` in the consumer protocol.
pub fn encode_subscription(topics: &[String]) -> Result<Bytes, ClientError> {
    let subscription = ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|topic| str_bytes(topic)).collect());
    encode_versioned(&subscription, ApiKey::JoinGroup)
}

/// The topics of a consumer-protocol subscription.
pub fn decode_subscription(bytes: &Bytes) -> Result<Vec<String>, ClientError> {
    let subscription: ConsumerProtocolSubscription = decode_versioned(bytes, ApiKey::JoinGroup)?;
    Ok(subscription
        .topics
        .into_iter()
        .map(|topic| topic.as_str().to_owned())
        .collect())
}

/// An assignment in the consumer protocol.
pub fn encode_assignment(partitions: &TopicPartitions) -> Result<Bytes, ClientError> {
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
        partitions
            .iter()
            .map(|(topic, ids)| {
                AssignedTopic::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(ids.iter().map(|id| id.0).collect())
            })
            .collect(),
    );
    encode_versioned(&assignment, ApiKey::SyncGroup)
}

/// The partitions of a consumer-protocol assignment (empty bytes: none).
pub fn decode_assignment(bytes: &Bytes) -> Result<TopicPartitions, ClientError> {
    if bytes.is_empty() {
        return Ok(TopicPartitions::new());
    }
    let assignment: ConsumerProtocolAssignment = decode_versioned(bytes, ApiKey::SyncGroup)?;
    let mut partitions = TopicPartitions::new();
    for topic in assignment.assigned_partitions {
        let entry = partitions
            .entry(topic.topic.0.as_str().to_owned())
            .or_default();
        entry.extend(topic.partitions.into_iter().map(PartitionId));
        entry.sort_unstable();
        entry.dedup();
    }
    Ok(partitions)
}

fn encode_versioned<T: Encodable>(value: &T, api: ApiKey) -> Result<Bytes, ClientError> {
    let version = CONSUMER_PROTOCOL_VERSION_WRITTEN;
    let size = value
        .compute_size(version)
        .map_err(|error| ClientError::encode(api, version, error))?;
    let mut buf = BytesMut::with_capacity(size + 2);
    buf.put_i16(version);
    value
        .encode(&mut buf, version)
        .map_err(|error| ClientError::encode(api, version, error))?;
    Ok(buf.freeze())
}

fn decode_versioned<T: Decodable>(bytes: &Bytes, api: ApiKey) -> Result<T, ClientError> {
    let prefix: [u8; 2] = bytes
        .get(..2)
        .and_then(|head| head.try_into().ok())
        .ok_or_else(|| {
            ClientError::decode(
                api,
                -1,
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "consumer protocol data without a version",
                ),
            )
        })?;
    let written = i16::from_be_bytes(prefix);
    let version = written.clamp(0, CONSUMER_PROTOCOL_VERSION_MAX);
    let mut body = bytes.slice(2..);
    T::decode(&mut body, version).map_err(|error| ClientError::decode(api, written, error))
}

fn str_bytes(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn topic_name(name: &str) -> TopicName {
    TopicName(str_bytes(name))
}

async fn sleep_ms(duration_ms: u64) {
    Timer::new(Duration::from_millis(duration_ms)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[&str]) -> MemberSubscription {
        MemberSubscription {
            member_id: id.to_owned(),
            instance_id: None,
            topics: topics.iter().map(|topic| (*topic).to_owned()).collect(),
        }
    }

    fn ids(values: &[i32]) -> Vec<PartitionId> {
        values.iter().copied().map(PartitionId).collect()
    }

    fn counts(entries: &[(&str, i32)]) -> BTreeMap<String, i32> {
        entries
            .iter()
            .map(|(topic, count)| ((*topic).to_owned(), *count))
            .collect()
    }

    #[test]
    fn range_gives_the_first_members_one_extra_partition() {
        let members = [
            member("c", &["t"]),
            member("a", &["t"]),
            member("b", &["t"]),
        ];
        let plan = range_assign(&members, &counts(&[("t", 7)]));
        assert_eq!(plan["a"]["t"], ids(&[0, 1, 2]));
        assert_eq!(plan["b"]["t"], ids(&[3, 4]));
        assert_eq!(plan["c"]["t"], ids(&[5, 6]));
    }

    #[test]
    fn range_assigns_each_topic_on_its_own_and_only_to_subscribers() {
        let members = [member("a", &["t1", "t2"]), member("b", &["t1"])];
        let plan = range_assign(&members, &counts(&[("t1", 2), ("t2", 3), ("gone", 4)]));
        assert_eq!(plan["a"]["t1"], ids(&[0]));
        assert_eq!(plan["b"]["t1"], ids(&[1]));
        assert_eq!(plan["a"]["t2"], ids(&[0, 1, 2]));
        assert!(!plan["b"].contains_key("t2"));
    }

    #[test]
    fn range_leaves_extra_members_empty_and_puts_static_members_first() {
        let mut members = vec![
            member("a", &["t"]),
            member("b", &["t"]),
            member("z", &["t"]),
        ];
        members[2].instance_id = Some("instance-1".to_owned());
        let plan = range_assign(&members, &counts(&[("t", 2)]));
        assert_eq!(plan["z"]["t"], ids(&[0]));
        assert_eq!(plan["a"]["t"], ids(&[1]));
        assert!(plan["b"].is_empty(), "present but empty: {plan:?}");
    }

    #[test]
    fn range_covers_every_partition_exactly_once() {
        for consumers in 1..6 {
            for partitions in 0..13 {
                let members: Vec<MemberSubscription> = (0..consumers)
                    .map(|index| member(&format!("m{index}"), &["t"]))
                    .collect();
                let plan = range_assign(&members, &counts(&[("t", partitions)]));
                let mut seen: Vec<i32> = plan
                    .values()
                    .flat_map(|topics| topics.values().flatten().map(|id| id.0))
                    .collect();
                seen.sort_unstable();
                assert_eq!(seen, (0..partitions).collect::<Vec<_>>());
                let sizes: Vec<usize> = plan
                    .values()
                    .map(|topics| topics.values().map(Vec::len).sum())
                    .collect();
                let (min, max) = (sizes.iter().min(), sizes.iter().max());
                assert!(max.zip(min).is_some_and(|(max, min)| max - min <= 1));
            }
        }
    }

    #[test]
    fn consumer_protocol_round_trips_with_its_version_prefix() {
        let topics = vec!["a".to_owned(), "b".to_owned()];
        let bytes = encode_subscription(&topics).expect("encode");
        assert_eq!(&bytes[..2], &[0, 0], "version 0 prefix");
        assert_eq!(decode_subscription(&bytes).expect("decode"), topics);
        let mut assignment = TopicPartitions::new();
        assignment.insert("a".to_owned(), ids(&[0, 2]));
        let bytes = encode_assignment(&assignment).expect("encode");
        assert_eq!(decode_assignment(&bytes).expect("decode"), assignment);
        assert!(decode_assignment(&Bytes::new()).expect("empty").is_empty());
        assert!(decode_assignment(&Bytes::from_static(&[0])).is_err());
    }

    #[test]
    fn a_newer_consumer_protocol_version_is_read_as_the_newest_known() {
        let subscription = ConsumerProtocolSubscription::default()
            .with_topics(vec![str_bytes("t")])
            .with_rack_id(Some(str_bytes("rack")));
        let mut buf = BytesMut::new();
        buf.put_i16(7);
        subscription.encode(&mut buf, 3).expect("encode v3");
        let topics = decode_subscription(&buf.freeze()).expect("decode");
        assert_eq!(topics, vec!["t".to_owned()]);
    }
}
