//! One classic consumer group: its members, generation and rebalance state machine, as
//! Kafka's `ClassicGroup` / `GroupCoordinator` (KIP-62 rebalance timeouts, KIP-134 initial
//! delay, KIP-345 static membership, KIP-394 member id handshake). Synchronous and
//! clock-free (the caller passes `now_ms`); requests that must wait for the rebalance get a
//! oneshot receiver, answered when the join or sync completes. Persistence is the caller's.
//!
//! The coordinator is protocol-agnostic: eager and cooperative (incremental) assignment differ
//! only in what the clients put in their subscriptions and assignments.
//!
//! Owned by the shard that owns the group's `__consumer_offsets` partition.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use kafka_protocol::indexmap::IndexMap;

use super::api::{
    GroupConfig, JoinArgs, JoinOutcome, JoinedMember, LeaveOutcome, SyncArgs, SyncOutcome,
};
use super::records::{GroupValue, MemberValue, OffsetValue};
use crate::local_sync::{oneshot, OneshotReceiver, OneshotSender};
use crate::protocol::KafkaError;

/// Kafka's group states (DescribeGroups / ListGroups spell them this way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members; may still hold committed offsets.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment (SyncGroup).
    CompletingRebalance,
    /// Members hold their assignments.
    Stable,
    /// Removed (deleted or expired).
    Dead,
}

impl GroupState {
    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// One member.
pub struct Member {
    /// Member id (`<client id>-<uuid>`).
    pub id: String,
    /// `group.instance.id` for static members.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Protocol type ("consumer").
    pub protocol_type: String,
    /// Supported protocols (assignors) with their metadata, in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// Current assignment.
    pub assignment: Bytes,
    /// Last heartbeat (or join/sync).
    pub last_heartbeat_ms: i64,
    join_waiter: Option<OneshotSender<JoinOutcome>>,
    sync_waiter: Option<OneshotSender<SyncOutcome>>,
    /// The JoinGroup version of the pending join (skip_assignment needs v9).
    join_version: i16,
}

impl Member {
    /// Metadata for `protocol`.
    pub fn metadata(&self, protocol: Option<&str>) -> Bytes {
        protocol
            .and_then(|name| self.protocols.iter().find(|(p, _)| p == name))
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }
}

/// A committed offset in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// Value as stored.
    pub value: OffsetValue,
}

/// What the caller must do after a join request.
pub enum JoinStep {
    /// Answer now.
    Respond(JoinOutcome),
    /// Wait for the rebalance.
    Wait(OneshotReceiver<JoinOutcome>),
}

/// What the caller must do after a sync request.
pub enum SyncStep {
    /// Answer now.
    Respond(SyncOutcome),
    /// Wait for the leader's assignment.
    Wait(OneshotReceiver<SyncOutcome>),
    /// The leader's assignment arrived: persist the group (with these assignments), then call
    /// [`Group::complete_sync`], then wait.
    Persist {
        /// Generation being completed.
        generation: i32,
        /// Assignments by member id.
        assignments: HashMap<String, Bytes>,
        /// Where the leader's answer will come.
        waiter: OneshotReceiver<SyncOutcome>,
    },
}

/// One group.
pub struct Group {
    /// Group id.
    pub id: String,
    /// State.
    pub state: GroupState,
    /// When the current state was entered.
    pub state_since_ms: i64,
    /// Generation id.
    pub generation: i32,
    /// Protocol type of the members ("" for offset-only groups).
    pub protocol_type: String,
    /// Selected protocol.
    pub protocol: Option<String>,
    /// Leader member id.
    pub leader: Option<String>,
    /// Members in join order.
    pub members: IndexMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their expiry.
    pending_members: HashMap<String, i64>,
    /// `group.instance.id` -> member id.
    static_members: HashMap<String, String>,
    /// Committed offsets by (topic, partition).
    pub offsets: HashMap<(String, i32), CommittedOffset>,
    /// PreparingRebalance: when the join phase ends at the latest.
    join_deadline_ms: Option<i64>,
    /// The initial delayed join (KIP-134) and its hard end.
    initial_join_end_ms: Option<i64>,
    new_member_added: bool,
    /// CompletingRebalance: members that have not sent SyncGroup yet, and the deadline.
    pending_sync: HashSet<String>,
    sync_deadline_ms: Option<i64>,
    /// The group metadata changed in a way that must be persisted (the caller stores it).
    pub needs_store: bool,
}

fn new_member_id(client_id: &str) -> String {
    let id = uuid::Uuid::from_bytes(crate::types::random_bytes16());
    format!("{client_id}-{}", id.hyphenated())
}

impl Group {
    /// A new, empty group.
    pub fn new(id: String, now_ms: i64) -> Group {
        Group {
            id,
            state: GroupState::Empty,
            state_since_ms: now_ms,
            generation: 0,
            protocol_type: String::new(),
            protocol: None,
            leader: None,
            members: IndexMap::new(),
            pending_members: HashMap::new(),
            static_members: HashMap::new(),
            offsets: HashMap::new(),
            join_deadline_ms: None,
            initial_join_end_ms: None,
            new_member_added: false,
            pending_sync: HashSet::new(),
            sync_deadline_ms: None,
            needs_store: false,
        }
    }

    /// Restores a group from its persisted metadata (replay). Members come back Stable with a
    /// fresh session: they must heartbeat within their session timeout.
    pub fn restore(&mut self, value: GroupValue, now_ms: i64) {
        self.generation = value.generation;
        self.protocol_type = value.protocol_type;
        self.protocol = value.protocol;
        self.leader = value.leader;
        self.members.clear();
        self.static_members.clear();
        self.pending_members.clear();
        self.state_since_ms = if value.state_timestamp_ms >= 0 {
            value.state_timestamp_ms
        } else {
            now_ms
        };
        for member in value.members {
            if let Some(instance) = &member.instance_id {
                self.static_members
                    .insert(instance.clone(), member.member_id.clone());
            }
            let protocols = match &self.protocol {
                Some(protocol) => vec![(protocol.clone(), member.subscription.clone())],
                None => Vec::new(),
            };
            self.members.insert(
                member.member_id.clone(),
                Member {
                    id: member.member_id,
                    instance_id: member.instance_id,
                    client_id: member.client_id,
                    client_host: member.client_host,
                    session_timeout_ms: member.session_timeout_ms,
                    rebalance_timeout_ms: member.rebalance_timeout_ms,
                    protocol_type: self.protocol_type.clone(),
                    protocols,
                    assignment: member.assignment,
                    last_heartbeat_ms: now_ms,
                    join_waiter: None,
                    sync_waiter: None,
                    join_version: 0,
                },
            );
        }
        self.state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
    }

    /// The persisted form of the group (members with their assignments).
    pub fn to_value(&self, assignments: Option<&HashMap<String, Bytes>>) -> GroupValue {
        GroupValue {
            protocol_type: self.protocol_type.clone(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp_ms: self.state_since_ms,
            members: self
                .members
                .values()
                .map(|member| MemberValue {
                    member_id: member.id.clone(),
                    instance_id: member.instance_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    rebalance_timeout_ms: member.rebalance_timeout_ms,
                    session_timeout_ms: member.session_timeout_ms,
                    subscription: member.metadata(self.protocol.as_deref()),
                    assignment: assignments
                        .and_then(|all| all.get(&member.id).cloned())
                        .unwrap_or_else(|| member.assignment.clone()),
                })
                .collect(),
        }
    }

    fn set_state(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_since_ms = now_ms;
    }

    /// True once every member has rejoined and no handshake is pending.
    fn all_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.join_waiter.is_some())
    }

    /// Protocols every member supports, in the first member's preference order.
    fn candidate_protocols(&self) -> Vec<String> {
        let Some(first) = self.members.values().next() else {
            return Vec::new();
        };
        first
            .protocols
            .iter()
            .map(|(name, _)| name.clone())
            .filter(|name| {
                self.members
                    .values()
                    .all(|member| member.protocols.iter().any(|(p, _)| p == name))
            })
            .collect()
    }

    /// Kafka's vote: each member votes for its most preferred candidate; most votes wins.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: Vec<(String, usize)> = candidates.iter().map(|c| (c.clone(), 0)).collect();
        for member in self.members.values() {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(name, _)| candidates.contains(name))
            {
                if let Some(entry) = votes.iter_mut().find(|(candidate, _)| candidate == name) {
                    entry.1 += 1;
                }
            }
        }
        let best = votes.iter().map(|(_, count)| *count).max()?;
        votes
            .into_iter()
            .find(|(_, count)| *count == best)
            .map(|(name, _)| name)
    }

    /// Whether a member with these protocols may join.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type != protocol_type {
            return false;
        }
        let candidates = self.candidate_protocols();
        protocols.iter().any(|(name, _)| candidates.contains(name))
    }

    fn max_rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// The answer a member gets when the join phase completes (or when it rejoins a group
    /// whose generation it can keep).
    fn join_outcome_for(&self, member_id: &str, skip_assignment: bool) -> JoinOutcome {
        let is_leader = self.leader.as_deref() == Some(member_id);
        let members = if is_leader {
            self.members
                .values()
                .map(|member| JoinedMember {
                    member_id: member.id.clone(),
                    instance_id: member.instance_id.clone(),
                    metadata: member.metadata(self.protocol.as_deref()),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinOutcome {
            error: None,
            generation: self.generation,
            protocol_type: Some(self.protocol_type.clone()),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            skip_assignment,
            member_id: member_id.to_string(),
            members,
        }
    }

    /// Starts a rebalance.
    fn prepare_rebalance(&mut self, now_ms: i64, config: &GroupConfig, reason: &str) {
        if self.state == GroupState::CompletingRebalance {
            self.reset_sync_waiters(KafkaError::RebalanceInProgress);
        }
        let initial = self.state == GroupState::Empty && config.initial_rebalance_delay_ms > 0;
        let timeout = self.max_rebalance_timeout_ms();
        self.set_state(GroupState::PreparingRebalance, now_ms);
        self.pending_sync.clear();
        self.sync_deadline_ms = None;
        if initial {
            let delay = config.initial_rebalance_delay_ms.min(timeout);
            self.join_deadline_ms = Some(now_ms + delay);
            self.initial_join_end_ms = Some(now_ms + timeout);
            self.new_member_added = false;
        } else {
            self.join_deadline_ms = Some(now_ms + timeout);
            self.initial_join_end_ms = None;
        }
        tracing::info!(group = %self.id, generation = self.generation, reason, "preparing to rebalance group");
    }

    /// Answers every waiting SyncGroup with `error` (a new rebalance started).
    fn reset_sync_waiters(&mut self, error: KafkaError) {
        for member in self.members.values_mut() {
            if let Some(waiter) = member.sync_waiter.take() {
                waiter.send(SyncOutcome::failed(error));
            }
        }
    }

    /// Completes the join phase when every member is in (unless the initial delay runs).
    fn maybe_complete_join(&mut self, now_ms: i64) {
        if self.state == GroupState::PreparingRebalance
            && self.initial_join_end_ms.is_none()
            && self.all_joined()
        {
            self.complete_join(now_ms);
        }
    }

    /// Ends the join phase: members that did not rejoin are removed, the generation advances,
    /// the protocol is chosen and every joined member gets its answer.
    fn complete_join(&mut self, now_ms: i64) {
        let absent: Vec<String> = self
            .members
            .values()
            .filter(|member| member.join_waiter.is_none())
            .map(|member| member.id.clone())
            .collect();
        for id in absent {
            tracing::info!(group = %self.id, member = %id, "member did not rejoin in time; removed");
            self.remove_member_only(&id);
        }
        self.pending_members.clear();
        self.join_deadline_ms = None;
        self.initial_join_end_ms = None;
        self.generation = self.generation.wrapping_add(1);
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.set_state(GroupState::Empty, now_ms);
            self.needs_store = true;
            tracing::info!(group = %self.id, generation = self.generation, "group is empty");
            return;
        }
        self.protocol = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|leader| !self.members.contains_key(leader))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.set_state(GroupState::CompletingRebalance, now_ms);
        self.pending_sync = self.members.keys().cloned().collect();
        self.sync_deadline_ms = Some(now_ms + self.max_rebalance_timeout_ms());
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let outcome = self.join_outcome_for(&id, false);
            if let Some(member) = self.members.get_mut(&id) {
                member.last_heartbeat_ms = now_ms;
                member.assignment = Bytes::new();
                if let Some(waiter) = member.join_waiter.take() {
                    waiter.send(outcome);
                }
            }
        }
        tracing::info!(
            group = %self.id, generation = self.generation, members = self.members.len(),
            protocol = ?self.protocol, "group join phase complete"
        );
    }

    /// Removes a member without changing the group state.
    fn remove_member_only(&mut self, id: &str) -> Option<Member> {
        let mut member = self.members.shift_remove(id)?;
        if let Some(instance) = &member.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(id) {
                self.static_members.remove(instance);
            }
        }
        self.pending_sync.remove(id);
        if let Some(waiter) = member.join_waiter.take() {
            waiter.send(JoinOutcome::failed(KafkaError::UnknownMemberId, id));
        }
        if let Some(waiter) = member.sync_waiter.take() {
            waiter.send(SyncOutcome::failed(KafkaError::UnknownMemberId));
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = self.members.keys().next().cloned();
        }
        Some(member)
    }

    /// Removes a member and moves the group on (Kafka's `removeMemberAndUpdateGroup`).
    fn remove_member(&mut self, id: &str, now_ms: i64, config: &GroupConfig, reason: &str) {
        if self.remove_member_only(id).is_none() {
            return;
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now_ms, config, reason)
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now_ms),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        id: String,
        args: JoinArgs,
        now_ms: i64,
        config: &GroupConfig,
    ) -> JoinStep {
        let (sender, receiver) = oneshot();
        if self.members.is_empty() {
            self.protocol_type = args.protocol_type.clone();
        }
        if let Some(instance) = &args.instance_id {
            self.static_members.insert(instance.clone(), id.clone());
        }
        self.members.insert(
            id.clone(),
            Member {
                id: id.clone(),
                instance_id: args.instance_id,
                client_id: args.client_id,
                client_host: args.client_host,
                session_timeout_ms: args.session_timeout_ms,
                rebalance_timeout_ms: args.rebalance_timeout_ms,
                protocol_type: args.protocol_type,
                protocols: args.protocols,
                assignment: Bytes::new(),
                last_heartbeat_ms: now_ms,
                join_waiter: Some(sender),
                sync_waiter: None,
                join_version: args.version,
            },
        );
        if self.leader.is_none() {
            self.leader = Some(id.clone());
        }
        self.new_member_added = true;
        match self.state {
            GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now_ms, config, "a member joined")
            }
            GroupState::PreparingRebalance | GroupState::Dead => {}
        }
        self.maybe_complete_join(now_ms);
        JoinStep::Wait(receiver)
    }

    fn update_member_and_rebalance(
        &mut self,
        id: &str,
        args: JoinArgs,
        now_ms: i64,
        config: &GroupConfig,
    ) -> JoinStep {
        let (sender, receiver) = oneshot();
        if let Some(member) = self.members.get_mut(id) {
            member.protocols = args.protocols;
            member.session_timeout_ms = args.session_timeout_ms;
            member.rebalance_timeout_ms = args.rebalance_timeout_ms;
            member.client_id = args.client_id;
            member.last_heartbeat_ms = now_ms;
            member.join_version = args.version;
            if let Some(old) = member.join_waiter.replace(sender) {
                old.send(JoinOutcome::failed(KafkaError::RebalanceInProgress, id));
            }
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty => {
                self.prepare_rebalance(now_ms, config, "a member rejoined with new metadata")
            }
            GroupState::PreparingRebalance | GroupState::Dead => {}
        }
        self.maybe_complete_join(now_ms);
        JoinStep::Wait(receiver)
    }

    /// JoinGroup.
    pub fn join(&mut self, args: JoinArgs, now_ms: i64, config: &GroupConfig) -> JoinStep {
        let respond_error = |error: KafkaError, member_id: &str| {
            JoinStep::Respond(JoinOutcome::failed(error, member_id))
        };
        if self.state == GroupState::Dead {
            return respond_error(KafkaError::CoordinatorNotAvailable, &args.member_id);
        }
        if args.member_id.is_empty() {
            if !self.supports(&args.protocol_type, &args.protocols) {
                return respond_error(KafkaError::InconsistentGroupProtocol, "");
            }
            if self.members.len() >= config.max_size {
                return respond_error(KafkaError::GroupMaxSizeReached, "");
            }
            let new_id = new_member_id(&args.client_id);
            if let Some(instance) = args.instance_id.clone() {
                if let Some(old_id) = self.static_members.get(&instance).cloned() {
                    return self
                        .static_member_rejoin(old_id, new_id, instance, args, now_ms, config);
                }
                return self.add_member_and_rebalance(new_id, args, now_ms, config);
            }
            if args.require_known_member_id {
                let deadline = now_ms + i64::from(args.session_timeout_ms);
                self.pending_members.insert(new_id.clone(), deadline);
                return respond_error(KafkaError::MemberIdRequired, &new_id);
            }
            return self.add_member_and_rebalance(new_id, args, now_ms, config);
        }

        let member_id = args.member_id.clone();
        if let Some(instance) = &args.instance_id {
            match self.static_members.get(instance) {
                Some(current) if *current != member_id => {
                    tracing::info!(group = %self.id, instance, member = %member_id, "fenced static member");
                    return respond_error(KafkaError::FencedInstanceId, &member_id);
                }
                _ => {}
            }
        }
        if !self.members.contains_key(&member_id) {
            if self.pending_members.remove(&member_id).is_some() {
                if !self.supports(&args.protocol_type, &args.protocols) {
                    return respond_error(KafkaError::InconsistentGroupProtocol, &member_id);
                }
                return self.add_member_and_rebalance(member_id, args, now_ms, config);
            }
            return respond_error(KafkaError::UnknownMemberId, &member_id);
        }
        if !self.supports(&args.protocol_type, &args.protocols) {
            return respond_error(KafkaError::InconsistentGroupProtocol, &member_id);
        }
        let same_metadata = self
            .members
            .get(&member_id)
            .is_some_and(|member| member.protocols == args.protocols);
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member_and_rebalance(&member_id, args, now_ms, config)
            }
            GroupState::CompletingRebalance if same_metadata => {
                // A retried JoinGroup: the member already has this generation.
                JoinStep::Respond(self.join_outcome_for(&member_id, false))
            }
            GroupState::Stable
                if same_metadata && self.leader.as_deref() != Some(member_id.as_str()) =>
            {
                if let Some(member) = self.members.get_mut(&member_id) {
                    member.last_heartbeat_ms = now_ms;
                }
                JoinStep::Respond(self.join_outcome_for(&member_id, false))
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member_and_rebalance(&member_id, args, now_ms, config)
            }
            GroupState::Empty | GroupState::Dead => {
                respond_error(KafkaError::UnknownMemberId, &member_id)
            }
        }
    }

    /// KIP-345: a static member rejoins with a new member id. In a Stable group with unchanged
    /// metadata it gets the current generation back without a rebalance.
    fn static_member_rejoin(
        &mut self,
        old_id: String,
        new_id: String,
        instance: String,
        args: JoinArgs,
        now_ms: i64,
        config: &GroupConfig,
    ) -> JoinStep {
        let Some(mut member) = self.members.shift_remove(&old_id) else {
            self.static_members.remove(&instance);
            return self.add_member_and_rebalance(new_id, args, now_ms, config);
        };
        if let Some(waiter) = member.join_waiter.take() {
            waiter.send(JoinOutcome::failed(KafkaError::FencedInstanceId, &old_id));
        }
        if let Some(waiter) = member.sync_waiter.take() {
            waiter.send(SyncOutcome::failed(KafkaError::FencedInstanceId));
        }
        let unchanged = member.protocols == args.protocols;
        let was_leader = self.leader.as_deref() == Some(old_id.as_str());
        member.id = new_id.clone();
        member.client_id = args.client_id.clone();
        member.client_host = args.client_host.clone();
        member.last_heartbeat_ms = now_ms;
        self.members.insert(new_id.clone(), member);
        self.static_members.insert(instance.clone(), new_id.clone());
        if self.pending_sync.remove(&old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        tracing::info!(group = %self.id, instance, old = %old_id, new = %new_id, "static member rejoined");
        match self.state {
            GroupState::Stable if unchanged => {
                self.needs_store = true;
                let mut outcome = self.join_outcome_for(&new_id, false);
                if was_leader {
                    if args.version >= 9 {
                        // The leader keeps its assignment without computing a new one.
                        outcome.skip_assignment = true;
                    } else {
                        // Older clients would reassign: present the leader as someone else,
                        // so this member only syncs and gets its assignment back.
                        outcome.leader = old_id;
                        outcome.members = Vec::new();
                    }
                }
                if let Some(member) = self.members.get_mut(&new_id) {
                    member.join_version = args.version;
                }
                JoinStep::Respond(outcome)
            }
            _ => self.update_member_and_rebalance(&new_id, args, now_ms, config),
        }
    }

    /// SyncGroup.
    pub fn sync(&mut self, args: SyncArgs, now_ms: i64) -> SyncStep {
        let fail = |error| SyncStep::Respond(SyncOutcome::failed(error));
        if self.state == GroupState::Dead {
            return fail(KafkaError::CoordinatorNotAvailable);
        }
        if let Some(error) = self.check_static(&args.member_id, args.instance_id.as_deref()) {
            return fail(error);
        }
        if !self.members.contains_key(&args.member_id) {
            return fail(KafkaError::UnknownMemberId);
        }
        if args.generation != self.generation {
            return fail(KafkaError::IllegalGeneration);
        }
        if args
            .protocol_type
            .as_ref()
            .is_some_and(|t| *t != self.protocol_type)
            || args
                .protocol_name
                .as_ref()
                .is_some_and(|n| Some(n) != self.protocol.as_ref())
        {
            return fail(KafkaError::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => fail(KafkaError::UnknownMemberId),
            GroupState::PreparingRebalance => fail(KafkaError::RebalanceInProgress),
            GroupState::Stable => {
                let Some(member) = self.members.get_mut(&args.member_id) else {
                    return fail(KafkaError::UnknownMemberId);
                };
                member.last_heartbeat_ms = now_ms;
                SyncStep::Respond(SyncOutcome {
                    error: None,
                    protocol_type: Some(self.protocol_type.clone()),
                    protocol_name: self.protocol.clone(),
                    assignment: member.assignment.clone(),
                })
            }
            GroupState::CompletingRebalance => {
                let (sender, receiver) = oneshot();
                let is_leader = self.leader.as_deref() == Some(args.member_id.as_str());
                if let Some(member) = self.members.get_mut(&args.member_id) {
                    member.last_heartbeat_ms = now_ms;
                    if let Some(old) = member.sync_waiter.replace(sender) {
                        old.send(SyncOutcome::failed(KafkaError::RebalanceInProgress));
                    }
                }
                self.pending_sync.remove(&args.member_id);
                if is_leader {
                    SyncStep::Persist {
                        generation: self.generation,
                        assignments: args.assignments.into_iter().collect(),
                        waiter: receiver,
                    }
                } else {
                    SyncStep::Wait(receiver)
                }
            }
        }
    }

    /// After the leader's assignment was persisted (or failed to be).
    pub fn complete_sync(
        &mut self,
        generation: i32,
        assignments: HashMap<String, Bytes>,
        stored: Result<(), KafkaError>,
        now_ms: i64,
        config: &GroupConfig,
    ) {
        if self.state != GroupState::CompletingRebalance || self.generation != generation {
            return;
        }
        if let Err(error) = stored {
            self.reset_sync_waiters(error);
            self.prepare_rebalance(now_ms, config, "the group could not be persisted");
            return;
        }
        for member in self.members.values_mut() {
            member.assignment = assignments.get(&member.id).cloned().unwrap_or_default();
            if let Some(waiter) = member.sync_waiter.take() {
                waiter.send(SyncOutcome {
                    error: None,
                    protocol_type: Some(self.protocol_type.clone()),
                    protocol_name: self.protocol.clone(),
                    assignment: member.assignment.clone(),
                });
            }
        }
        self.sync_deadline_ms = None;
        self.set_state(GroupState::Stable, now_ms);
        tracing::info!(group = %self.id, generation, "group is stable");
    }

    /// FENCED_INSTANCE_ID if `instance_id` belongs to another member id.
    fn check_static(&self, member_id: &str, instance_id: Option<&str>) -> Option<KafkaError> {
        let instance = instance_id?;
        match self.static_members.get(instance) {
            Some(current) if current != member_id => Some(KafkaError::FencedInstanceId),
            _ => None,
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Option<KafkaError> {
        if self.state == GroupState::Dead {
            return Some(KafkaError::CoordinatorNotAvailable);
        }
        if let Some(error) = self.check_static(member_id, instance_id) {
            return Some(error);
        }
        if !self.members.contains_key(member_id) {
            return Some(KafkaError::UnknownMemberId);
        }
        if generation != self.generation {
            return Some(KafkaError::IllegalGeneration);
        }
        if let Some(member) = self.members.get_mut(member_id) {
            member.last_heartbeat_ms = now_ms;
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => Some(KafkaError::UnknownMemberId),
            GroupState::PreparingRebalance => Some(KafkaError::RebalanceInProgress),
            GroupState::CompletingRebalance | GroupState::Stable => None,
        }
    }

    /// LeaveGroup for one or more members.
    pub fn leave(
        &mut self,
        members: Vec<(String, Option<String>)>,
        now_ms: i64,
        config: &GroupConfig,
    ) -> LeaveOutcome {
        let mut results = Vec::with_capacity(members.len());
        for (member_id, instance_id) in members {
            let error = match &instance_id {
                Some(instance) => match self.static_members.get(instance).cloned() {
                    None => Some(KafkaError::UnknownMemberId),
                    Some(current) if !member_id.is_empty() && current != member_id => {
                        Some(KafkaError::FencedInstanceId)
                    }
                    Some(current) => {
                        self.remove_member(&current, now_ms, config, "a static member left");
                        None
                    }
                },
                None if self.pending_members.remove(&member_id).is_some() => {
                    self.maybe_complete_join(now_ms);
                    None
                }
                None if self.members.contains_key(&member_id) => {
                    self.remove_member(&member_id, now_ms, config, "a member left");
                    None
                }
                None => Some(KafkaError::UnknownMemberId),
            };
            results.push((member_id, instance_id, error));
        }
        LeaveOutcome {
            error: None,
            members: results,
        }
    }

    /// Applies timeouts: member sessions, MEMBER_ID_REQUIRED handshakes, the join deadline,
    /// the sync deadline. Returns the earliest next deadline.
    pub fn tick(&mut self, now_ms: i64, config: &GroupConfig) -> Option<i64> {
        let expired_pending: Vec<String> = self
            .pending_members
            .iter()
            .filter(|(_, deadline)| **deadline <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired_pending {
            self.pending_members.remove(&id);
            self.maybe_complete_join(now_ms);
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.sync_waiter.is_none())
            .filter(|m| m.last_heartbeat_ms + i64::from(m.session_timeout_ms) <= now_ms)
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.remove_member(&id, now_ms, config, "a member's session expired");
        }
        if self.state == GroupState::PreparingRebalance
            && self
                .join_deadline_ms
                .is_some_and(|deadline| deadline <= now_ms)
        {
            match self.initial_join_end_ms {
                Some(end) if self.new_member_added && end > now_ms => {
                    // KIP-134: members keep arriving; wait one more delay (bounded).
                    self.new_member_added = false;
                    self.join_deadline_ms =
                        Some((now_ms + config.initial_rebalance_delay_ms).min(end));
                }
                _ => self.complete_join(now_ms),
            }
        }
        if self.state == GroupState::CompletingRebalance
            && self
                .sync_deadline_ms
                .is_some_and(|deadline| deadline <= now_ms)
        {
            let missing: Vec<String> = self.pending_sync.iter().cloned().collect();
            for id in &missing {
                tracing::info!(group = %self.id, member = %id, "member did not sync in time; removed");
                self.remove_member_only(id);
            }
            self.sync_deadline_ms = None;
            if self.members.is_empty() {
                self.generation = self.generation.wrapping_add(1);
                self.set_state(GroupState::Empty, now_ms);
                self.needs_store = true;
            } else {
                self.prepare_rebalance(now_ms, config, "members did not sync in time");
            }
        }
        self.next_deadline()
    }

    /// The earliest moment `tick` has something to do.
    pub fn next_deadline(&self) -> Option<i64> {
        let sessions = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.sync_waiter.is_none())
            .map(|m| m.last_heartbeat_ms + i64::from(m.session_timeout_ms));
        let pending = self.pending_members.values().copied();
        let join = self
            .join_deadline_ms
            .filter(|_| self.state == GroupState::PreparingRebalance);
        let sync = self
            .sync_deadline_ms
            .filter(|_| self.state == GroupState::CompletingRebalance);
        sessions.chain(pending).chain(join).chain(sync).min()
    }

    /// Topics the members subscribe to (consumer protocol), for OffsetDelete.
    pub fn subscribed_topics(&self) -> HashSet<String> {
        let mut topics = HashSet::new();
        if self.protocol_type != "consumer" {
            return topics;
        }
        for member in self.members.values() {
            for topic in consumer_subscription_topics(&member.metadata(self.protocol.as_deref())) {
                topics.insert(topic);
            }
        }
        topics
    }

    /// Marks the group dead and fails every waiting request.
    pub fn kill(&mut self, now_ms: i64) {
        for member in self.members.values_mut() {
            if let Some(waiter) = member.join_waiter.take() {
                waiter.send(JoinOutcome::failed(
                    KafkaError::CoordinatorNotAvailable,
                    &member.id,
                ));
            }
            if let Some(waiter) = member.sync_waiter.take() {
                waiter.send(SyncOutcome::failed(KafkaError::CoordinatorNotAvailable));
            }
        }
        self.set_state(GroupState::Dead, now_ms);
    }

    /// The JoinGroup version a member last joined with.
    pub fn member_join_version(&self, member_id: &str) -> Option<i16> {
        self.members.get(member_id).map(|m| m.join_version)
    }
}

/// Topics in a ConsumerProtocolSubscription (v0-v3: i16 version, array of i16 strings, ...).
pub fn consumer_subscription_topics(metadata: &[u8]) -> Vec<String> {
    let mut topics = Vec::new();
    let Some(count) = metadata.get(2..6) else {
        return topics;
    };
    let count = i32::from_be_bytes([count[0], count[1], count[2], count[3]]);
    let mut rest = metadata.get(6..).unwrap_or(&[]);
    for _ in 0..count.max(0) {
        let Some(len) = rest.get(..2) else {
            break;
        };
        let len = i16::from_be_bytes([len[0], len[1]]);
        let Ok(len) = usize::try_from(len) else {
            break;
        };
        let Some(name) = rest.get(2..2 + len) else {
            break;
        };
        topics.push(String::from_utf8_lossy(name).into_owned());
        rest = rest.get(2 + len..).unwrap_or(&[]);
    }
    topics
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GroupConfig {
        GroupConfig {
            initial_rebalance_delay_ms: 0,
            ..GroupConfig::default()
        }
    }

    fn join_args(member_id: &str, instance: Option<&str>, version: i16) -> JoinArgs {
        JoinArgs {
            group_id: "g".into(),
            member_id: member_id.into(),
            instance_id: instance.map(str::to_string),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 20_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
            client_id: "c".into(),
            client_host: "h".into(),
            require_known_member_id: version >= 4,
            version,
        }
    }

    fn take(receiver: OneshotReceiver<JoinOutcome>) -> JoinOutcome {
        futures_lite::future::block_on(receiver).expect("answered")
    }

    fn joined(step: JoinStep) -> OneshotReceiver<JoinOutcome> {
        match step {
            JoinStep::Wait(receiver) => receiver,
            JoinStep::Respond(outcome) => panic!("answered at once: {:?}", outcome.error),
        }
    }

    fn answered(step: JoinStep) -> JoinOutcome {
        match step {
            JoinStep::Respond(outcome) => outcome,
            JoinStep::Wait(_) => panic!("waits"),
        }
    }

    /// Two members join and sync; returns their ids (leader first).
    fn stable_group(group: &mut Group, cfg: &GroupConfig) -> (String, String) {
        let first = answered(group.join(join_args("", None, 5), 0, cfg));
        assert_eq!(first.error, Some(KafkaError::MemberIdRequired));
        let a = joined(group.join(join_args(&first.member_id, None, 5), 0, cfg));
        let a = take(a);
        assert_eq!(group.state, GroupState::CompletingRebalance);
        assert_eq!(a.leader, a.member_id);
        // B joins: rebalance to generation 2.
        let b = joined(group.join(join_args("", None, 0), 1, cfg));
        assert_eq!(group.state, GroupState::PreparingRebalance);
        let a_again = joined(group.join(join_args(&a.member_id, None, 5), 2, cfg));
        let (a2, b2) = (take(a_again), take(b));
        assert_eq!((a2.generation, b2.generation), (2, 2));
        assert_eq!(a2.members.len(), 2);
        assert!(b2.members.is_empty());
        let assignments = vec![
            (a2.member_id.clone(), Bytes::from_static(b"A")),
            (b2.member_id.clone(), Bytes::from_static(b"B")),
        ];
        let follower = match group.sync(
            SyncArgs {
                group_id: "g".into(),
                generation: 2,
                member_id: b2.member_id.clone(),
                instance_id: None,
                protocol_type: None,
                protocol_name: None,
                assignments: Vec::new(),
            },
            3,
        ) {
            SyncStep::Wait(receiver) => receiver,
            _ => panic!("follower waits"),
        };
        match group.sync(
            SyncArgs {
                group_id: "g".into(),
                generation: 2,
                member_id: a2.member_id.clone(),
                instance_id: None,
                protocol_type: Some("consumer".into()),
                protocol_name: Some("range".into()),
                assignments,
            },
            3,
        ) {
            SyncStep::Persist {
                generation,
                assignments,
                ..
            } => group.complete_sync(generation, assignments, Ok(()), 3, cfg),
            _ => panic!("leader persists"),
        }
        let b_assignment = futures_lite::future::block_on(follower).expect("sync answer");
        assert_eq!(&b_assignment.assignment[..], b"B");
        assert_eq!(group.state, GroupState::Stable);
        (a2.member_id, b2.member_id)
    }

    #[test]
    fn join_sync_heartbeat_and_errors() {
        let cfg = config();
        let mut group = Group::new("g".into(), 0);
        let (a, b) = stable_group(&mut group, &cfg);
        assert_eq!(group.heartbeat(&a, None, 2, 4), None);
        assert_eq!(
            group.heartbeat(&a, None, 1, 4),
            Some(KafkaError::IllegalGeneration)
        );
        assert_eq!(
            group.heartbeat("nobody", None, 2, 4),
            Some(KafkaError::UnknownMemberId)
        );
        // B's session expires (A keeps heartbeating): rebalance; A's heartbeat says so.
        assert_eq!(group.heartbeat(&a, None, 2, 9_000), None);
        group.tick(10_004, &cfg);
        assert!(!group.members.contains_key(&b));
        assert!(group.members.contains_key(&a));
        assert_eq!(group.state, GroupState::PreparingRebalance);
        assert_eq!(
            group.heartbeat(&a, None, 2, 10_004),
            Some(KafkaError::RebalanceInProgress)
        );
        let a3 = take(joined(group.join(join_args(&a, None, 5), 10_005, &cfg)));
        assert_eq!(a3.generation, 3);
        // Leave: the group empties after the next join phase.
        let left = group.leave(vec![(a.clone(), None)], 10_006, &cfg);
        assert_eq!(left.members[0].2, None);
        assert!(group.members.is_empty());
    }

    #[test]
    fn static_member_rejoins_without_rebalance_and_fences_the_old_id() {
        let cfg = config();
        let mut group = Group::new("g".into(), 0);
        let (_a, b) = stable_group(&mut group, &cfg);
        // Make B static after the fact is not possible; add a static member C instead.
        let c = joined(group.join(join_args("", Some("inst-c"), 5), 10, &cfg));
        let ids: Vec<String> = group
            .members
            .values()
            .filter(|member| member.join_waiter.is_none())
            .map(|member| member.id.clone())
            .collect();
        let mut waiting = Vec::new();
        for id in &ids {
            waiting.push(joined(group.join(join_args(id, None, 5), 11, &cfg)));
        }
        let c = take(c);
        for w in waiting {
            take(w);
        }
        let generation = group.generation;
        let leader = group.leader.clone().expect("leader");
        let assignments: Vec<(String, Bytes)> = group
            .members
            .keys()
            .map(|id| (id.clone(), Bytes::from(id.clone())))
            .collect();
        if let SyncStep::Persist {
            generation,
            assignments,
            ..
        } = group.sync(
            SyncArgs {
                group_id: "g".into(),
                generation,
                member_id: leader,
                instance_id: None,
                protocol_type: None,
                protocol_name: None,
                assignments,
            },
            12,
        ) {
            group.complete_sync(generation, assignments, Ok(()), 12, &cfg);
        }
        assert_eq!(group.state, GroupState::Stable);
        // C restarts: a new member id, same generation, no rebalance.
        let rejoined = answered(group.join(join_args("", Some("inst-c"), 5), 20, &cfg));
        assert_eq!(rejoined.error, None);
        assert_eq!(rejoined.generation, generation);
        assert_ne!(rejoined.member_id, c.member_id);
        assert_eq!(group.state, GroupState::Stable);
        // The old id is fenced.
        assert_eq!(
            group.heartbeat(&c.member_id, Some("inst-c"), generation, 21),
            Some(KafkaError::FencedInstanceId)
        );
        // The new id gets its assignment back.
        match group.sync(
            SyncArgs {
                group_id: "g".into(),
                generation,
                member_id: rejoined.member_id.clone(),
                instance_id: Some("inst-c".into()),
                protocol_type: None,
                protocol_name: None,
                assignments: Vec::new(),
            },
            22,
        ) {
            SyncStep::Respond(outcome) => {
                assert_eq!(outcome.error, None);
                assert_eq!(&outcome.assignment[..], c.member_id.as_bytes());
            }
            _ => panic!("stable sync answers at once"),
        }
        assert!(group.members.contains_key(&b));
    }

    #[test]
    fn subscription_topics_parse() {
        let mut metadata = vec![0, 1, 0, 0, 0, 2, 0, 1, b'a', 0, 2, b'b', b'c'];
        metadata.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(consumer_subscription_topics(&metadata), vec!["a", "bc"]);
        assert!(consumer_subscription_topics(&[0, 1, 0]).is_empty());
    }
}
