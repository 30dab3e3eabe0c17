//! What the handlers ask of a group coordinator and what it answers: plain `Send` types, so
//! that a request for a group whose coordinator lives on another shard crosses the mesh as
//! it is ([`GroupRequest`] / [`GroupReply`]). The handlers turn them into Kafka responses at
//! the request's version.

use bytes::Bytes;

use crate::config::BrokerConfig;
use crate::protocol::KafkaError;

/// The group coordinator's settings (Kafka's names and defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms` (6000).
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms` (1800000).
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms` (3000).
    pub initial_rebalance_delay_ms: i64,
    /// `group.max.size` (unbounded in Kafka; bounded here).
    pub max_size: usize,
    /// `offsets.retention.minutes` in ms (10080 minutes).
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms` (600000).
    pub offsets_retention_check_interval_ms: u64,
    /// `offset.metadata.max.bytes` (4096).
    pub offset_metadata_max_bytes: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: 100_000,
            offsets_retention_ms: 10_080 * 60_000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
        }
    }
}

impl GroupConfig {
    /// From the broker configuration.
    pub fn from_broker(config: &BrokerConfig) -> GroupConfig {
        GroupConfig {
            min_session_timeout_ms: config.group_min_session_timeout_ms,
            max_session_timeout_ms: config.group_max_session_timeout_ms,
            initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
            max_size: config.group_max_size,
            offsets_retention_ms: config.offsets_retention_minutes.saturating_mul(60_000),
            offsets_retention_check_interval_ms: config.offsets_retention_check_interval_ms,
            offset_metadata_max_bytes: config.offset_metadata_max_bytes,
        }
    }
}

/// JoinGroup.
#[derive(Debug, Clone)]
pub struct JoinArgs {
    /// Group id.
    pub group_id: String,
    /// Member id ("" for a new member).
    pub member_id: String,
    /// `group.instance.id`.
    pub instance_id: Option<String>,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout (v1+; the session timeout before).
    pub rebalance_timeout_ms: i32,
    /// Protocol type.
    pub protocol_type: String,
    /// Protocols with metadata, in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// Client id from the request header.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// v4+: a new member first gets MEMBER_ID_REQUIRED and its id.
    pub require_known_member_id: bool,
    /// Request version.
    pub version: i16,
}

/// One member as the leader sees it in the JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// Static id.
    pub instance_id: Option<String>,
    /// Metadata for the selected protocol.
    pub metadata: Bytes,
}

/// JoinGroup answer.
#[derive(Debug, Clone)]
pub struct JoinOutcome {
    /// Error.
    pub error: Option<KafkaError>,
    /// Generation.
    pub generation: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Selected protocol.
    pub protocol_name: Option<String>,
    /// Leader id.
    pub leader: String,
    /// v9: the static leader keeps its assignment.
    pub skip_assignment: bool,
    /// The member's id.
    pub member_id: String,
    /// Members (leader only).
    pub members: Vec<JoinedMember>,
}

impl JoinOutcome {
    /// An error answer.
    pub fn failed(error: KafkaError, member_id: &str) -> JoinOutcome {
        JoinOutcome {
            error: Some(error),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

/// SyncGroup.
#[derive(Debug, Clone)]
pub struct SyncArgs {
    /// Group id.
    pub group_id: String,
    /// Generation.
    pub generation: i32,
    /// Member id.
    pub member_id: String,
    /// Static id.
    pub instance_id: Option<String>,
    /// v5+ protocol type.
    pub protocol_type: Option<String>,
    /// v5+ protocol name.
    pub protocol_name: Option<String>,
    /// The leader's assignments.
    pub assignments: Vec<(String, Bytes)>,
}

/// SyncGroup answer.
#[derive(Debug, Clone)]
pub struct SyncOutcome {
    /// Error.
    pub error: Option<KafkaError>,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Protocol name.
    pub protocol_name: Option<String>,
    /// The member's assignment.
    pub assignment: Bytes,
}

impl SyncOutcome {
    /// An error answer.
    pub fn failed(error: KafkaError) -> SyncOutcome {
        SyncOutcome {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// Heartbeat.
#[derive(Debug, Clone)]
pub struct HeartbeatArgs {
    /// Group id.
    pub group_id: String,
    /// Generation.
    pub generation: i32,
    /// Member id.
    pub member_id: String,
    /// Static id.
    pub instance_id: Option<String>,
}

/// LeaveGroup answer.
#[derive(Debug, Clone)]
pub struct LeaveOutcome {
    /// Group-level error.
    pub error: Option<KafkaError>,
    /// Per member: (member id, instance id, error).
    pub members: Vec<(String, Option<String>, Option<KafkaError>)>,
}

/// One partition of an OffsetCommit.
#[derive(Debug, Clone)]
pub struct CommitPartition {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Leader epoch (-1 unknown).
    pub leader_epoch: i32,
    /// Metadata.
    pub metadata: Option<String>,
}

/// OffsetCommit.
#[derive(Debug, Clone)]
pub struct CommitArgs {
    /// Group id.
    pub group_id: String,
    /// Generation (-1 for simple consumers).
    pub generation: i32,
    /// Member id ("" for simple consumers).
    pub member_id: String,
    /// Static id.
    pub instance_id: Option<String>,
    /// v2-v4 retention time (-1 = broker default).
    pub retention_time_ms: i64,
    /// Topics, each with its partitions.
    pub topics: Vec<(String, Vec<CommitPartition>)>,
}

/// Per topic: per partition error.
pub type CommitOutcome = Vec<(String, Vec<(i32, Option<KafkaError>)>)>;

/// One partition of an OffsetFetch answer.
#[derive(Debug, Clone)]
pub struct FetchedPartition {
    /// Partition.
    pub partition: i32,
    /// Committed offset (-1 none).
    pub offset: i64,
    /// Leader epoch (-1 none).
    pub leader_epoch: i32,
    /// Metadata.
    pub metadata: Option<String>,
    /// Error.
    pub error: Option<KafkaError>,
}

/// OffsetFetch answer for one group.
#[derive(Debug, Clone, Default)]
pub struct FetchedOffsets {
    /// Group-level error.
    pub error: Option<KafkaError>,
    /// Topics with partitions.
    pub topics: Vec<(String, Vec<FetchedPartition>)>,
}

/// One described member.
#[derive(Debug, Clone)]
pub struct DescribedMember {
    /// Member id.
    pub member_id: String,
    /// Static id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Subscription metadata.
    pub metadata: Bytes,
    /// Assignment.
    pub assignment: Bytes,
}

/// One described group.
#[derive(Debug, Clone)]
pub struct DescribedGroup {
    /// Group id.
    pub group_id: String,
    /// Error.
    pub error: Option<KafkaError>,
    /// State name.
    pub state: String,
    /// Protocol type.
    pub protocol_type: String,
    /// Selected protocol.
    pub protocol: String,
    /// Members.
    pub members: Vec<DescribedMember>,
}

/// One listed group.
#[derive(Debug, Clone)]
pub struct ListedGroup {
    /// Group id.
    pub group_id: String,
    /// Protocol type.
    pub protocol_type: String,
    /// State name.
    pub state: String,
}

/// A request to the coordinator of one `__consumer_offsets` partition (or, for `List`, to
/// every coordinator on a shard).
#[derive(Debug, Clone)]
pub enum GroupRequest {
    /// JoinGroup.
    Join(JoinArgs),
    /// SyncGroup.
    Sync(SyncArgs),
    /// Heartbeat.
    Heartbeat(HeartbeatArgs),
    /// LeaveGroup (group id, members).
    Leave(String, Vec<(String, Option<String>)>),
    /// OffsetCommit.
    Commit(CommitArgs),
    /// OffsetFetch (group id, topics or all, require stable).
    FetchOffsets(String, Option<Vec<(String, Vec<i32>)>>),
    /// OffsetDelete (group id, topics).
    DeleteOffsets(String, Vec<(String, Vec<i32>)>),
    /// DescribeGroups (groups of one partition).
    Describe(Vec<String>),
    /// DeleteGroups (groups of one partition).
    Delete(Vec<String>),
    /// ListGroups on this shard.
    List,
}

/// The coordinator's answer.
#[derive(Debug, Clone)]
pub enum GroupReply {
    /// JoinGroup.
    Join(JoinOutcome),
    /// SyncGroup.
    Sync(SyncOutcome),
    /// Heartbeat.
    Heartbeat(Option<KafkaError>),
    /// LeaveGroup.
    Leave(LeaveOutcome),
    /// OffsetCommit.
    Commit(CommitOutcome),
    /// OffsetFetch.
    FetchOffsets(FetchedOffsets),
    /// OffsetDelete: group error, per topic per partition errors.
    DeleteOffsets(Option<KafkaError>, CommitOutcome),
    /// DescribeGroups.
    Describe(Vec<DescribedGroup>),
    /// DeleteGroups: per group error.
    Delete(Vec<(String, Option<KafkaError>)>),
    /// ListGroups.
    List(Vec<ListedGroup>),
    /// The request could not reach or be served by a coordinator.
    Failed(KafkaError),
}
