//! One shard: a pinned glommio executor with its own connections, partitions and copy of
//! the metadata, talking to the other shards only through the channel mesh.
//!
//! - [`ack_journal`]: the shard's acknowledgement journal file and restoring what an earlier
//!   process left in one.
//! - [`mesh`]: request/reply over `channel_mesh`.
//! - [`messages`]: what shards send each other.
//! - [`partition_ops`]: data-path operations forwarded to a partition's owning shard.
//! - [`partitions`]: the partition logs this shard owns and the operations on them.
//! - [`producer_state`]: idempotent-producer state of one partition (sequence/epoch checks).
//! - [`producer_log`]: that state across restarts (snapshot file, rebuild from the log).
//! - [`producer_ids`]: producer id allocation for InitProducerId (shard 0).
//! - [`timestamp_lookup`]: ListOffsets by timestamp inside compressed batches, max timestamp.
//! - [`fetch_sessions`]: incremental fetch sessions (KIP-227) of this shard's connections.
//! - [`cleaner`]: log compaction of this shard's `cleanup.policy=compact` partitions, in a
//!   low-priority task queue.
//! - [`runtime`]: a shard's life: join the mesh, accept, drain, shut down.
//! - [`live_config`]: dynamic broker configs: the shard's live config, changes through shard 0
//!   (AlterConfigs on a BROKER resource, SIGHUP reload) and applying them.

pub mod ack_journal;
pub mod cleaner;
pub mod fetch_sessions;
pub mod live_config;
pub mod mesh;
pub mod messages;
pub mod partition_ops;
pub mod partitions;
mod periodic;
pub mod producer_ids;
pub mod producer_log;
pub mod producer_state;
pub mod runtime;
pub mod timestamp_lookup;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use glommio::sync::Semaphore;
use tracing::{debug, error, info, warn};

use crate::config::{BrokerConfig, HostPort};
use crate::local_sync::{Countdown, Event, Latch};
use crate::metadata::ops::{self, MetadataOp, OpContext, TopicResult};
use crate::metadata::store::{write_atomically, MetadataStore, METADATA_FILE};
use crate::metadata::ClusterMetadata;
use crate::types::{NodeId, ShardId};
use mesh::{Mesh, MeshError};
use messages::{MeshReply, MeshRequest, OwnerFailure};

/// Incremental fetch session slots per shard (Kafka's
/// `max.incremental.fetch.session.cache.slots` is 1000 per broker).
fn config_fetch_session_slots(shard_count: usize) -> usize {
    (1000 / shard_count.max(1)).max(16)
}

/// One log line per applied topic change.
fn log_change(op: &MetadataOp, results: &[TopicResult], version: u64) {
    let verb = match op {
        MetadataOp::CreateTopics { .. } => "created topic",
        MetadataOp::DeleteTopics { .. } => "deleted topic",
        MetadataOp::CreatePartitions { .. } => "added partitions to topic",
        MetadataOp::AlterTopicConfigs { .. } => "altered configs of topic",
    };
    for result in results {
        if let Ok(topic) = &result.outcome {
            info!(
                metadata_version = version,
                partitions = topic.partition_count(),
                configs = ?topic.configs,
                "{verb} {}",
                topic.name
            );
        }
    }
}

/// State only the metadata owner (shard 0) has.
struct MetadataOwner {
    store: MetadataStore,
    /// Serialises changes: apply, persist, broadcast, one at a time, in arrival order.
    lock: Rc<Semaphore>,
}

/// Connections accepted by this shard, for draining on shutdown.
#[derive(Default)]
struct ConnectionCount {
    open: Cell<usize>,
    changed: Rc<Event>,
    next_id: Cell<u64>,
}

/// Everything one shard owns. Lives in an `Rc` on its executor; never crosses threads.
pub struct Shard {
    /// This shard's index.
    pub id: ShardId,
    /// Shards in the process.
    pub shard_count: usize,
    /// Configuration as the shard started. Read-only settings never change while the broker
    /// runs; for dynamic ones (`dynamic_config::DYNAMIC_SETTINGS`) use
    /// [`Shard::current_config`].
    pub config: Arc<BrokerConfig>,
    /// The live configuration (static + dynamic levels), swapped when shard 0 sends a new one.
    live: RefCell<Arc<crate::dynamic_config::LiveConfig>>,
    /// Dynamic config changes and reloads (shard 0 only).
    config_owner: Option<live_config::ConfigOwner>,
    /// Address advertised to clients.
    pub advertised: HostPort,
    metadata: RefCell<Arc<ClusterMetadata>>,
    /// This shard's end of the mesh.
    pub mesh: Mesh,
    owner: Option<MetadataOwner>,
    /// Set when the process shuts down: stop accepting and reading requests.
    pub shutdown: Rc<Latch>,
    /// Startup barrier: counts peers that opened their partitions.
    peers_opened: Countdown,
    /// Shutdown barrier: counts peers with no connections left.
    peers_drained: Countdown,
    connections: ConnectionCount,
    partitions: partitions::LocalPartitions,
    /// Serialises snapshot application (opening/closing logs awaits).
    snapshot_lock: Rc<Semaphore>,
    /// Incremental fetch sessions of this shard's connections.
    pub fetch_sessions: RefCell<fetch_sessions::FetchSessionCache>,
    /// Coordinators of the consumer groups whose `__consumer_offsets` partitions this shard
    /// owns.
    pub groups: crate::groups::GroupCoordinator,
    /// Producer id allocation (shard 0 only).
    producer_ids: Option<producer_ids::ProducerIdAllocator>,
    /// This shard's Prometheus metrics (its own registry; see `crate::metrics`).
    pub metrics: crate::metrics::ShardMetrics,
    /// Copies of acknowledged, not yet written batches (see [`ack_journal`]).
    pub ack_journal: ack_journal::ShardJournal,
}

impl Shard {
    /// Creates the shard state. `store` and `config_inputs` are `Some` only on shard 0; the
    /// shard starts with `live`'s effective configuration.
    pub fn new(
        id: ShardId,
        advertised: HostPort,
        metadata: Arc<ClusterMetadata>,
        mesh: Mesh,
        store: Option<MetadataStore>,
        live: Arc<crate::dynamic_config::LiveConfig>,
        config_inputs: Option<crate::config::ConfigInputs>,
    ) -> Shard {
        let config = live.effective.clone();
        let shard_count = mesh.shard_count();
        let peers = shard_count.saturating_sub(1);
        let producer_ids = store
            .is_some()
            .then(|| producer_ids::ProducerIdAllocator::new(config.data_dir.clone()));
        let groups = crate::groups::GroupCoordinator::new(
            crate::groups::api::GroupConfig::from_broker(&config),
        );
        Shard {
            id,
            shard_count,
            producer_ids,
            config,
            live: RefCell::new(live),
            config_owner: config_inputs.map(live_config::ConfigOwner::new),
            advertised,
            metadata: RefCell::new(metadata),
            mesh,
            owner: store.map(|store| MetadataOwner {
                store,
                lock: Rc::new(Semaphore::new(1)),
            }),
            shutdown: Latch::new(),
            peers_opened: Countdown::new(peers),
            peers_drained: Countdown::new(peers),
            connections: ConnectionCount::default(),
            partitions: partitions::LocalPartitions::default(),
            snapshot_lock: Rc::new(Semaphore::new(1)),
            fetch_sessions: RefCell::new(fetch_sessions::FetchSessionCache::new(
                config_fetch_session_slots(shard_count),
            )),
            groups,
            metrics: crate::metrics::ShardMetrics::new(id),
            ack_journal: ack_journal::ShardJournal::default(),
        }
    }

    /// The current metadata snapshot.
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.metadata.borrow().clone()
    }

    /// Node ids of live brokers (this one, until clustering exists).
    pub fn live_brokers(&self) -> Vec<NodeId> {
        vec![self.config.node_id]
    }

    /// Applies a metadata change through the owner (shard 0). Returns after the change is
    /// persisted and every shard, this one included, has swapped in the new snapshot.
    pub async fn change_metadata(
        self: &Rc<Self>,
        op: MetadataOp,
    ) -> Result<Vec<TopicResult>, OwnerFailure> {
        if self.id == ShardId::METADATA_OWNER {
            return self.owner_apply(op).await;
        }
        match self
            .mesh
            .call(ShardId::METADATA_OWNER, MeshRequest::Metadata(op))
            .await
        {
            Ok(MeshReply::Metadata(result)) => result,
            Ok(_) => {
                error!(shard = %self.id, "metadata owner sent an unexpected reply kind");
                Err(OwnerFailure::Broadcast)
            }
            Err(err) => {
                warn!(shard = %self.id, error = %err, "metadata change not delivered");
                Err(OwnerFailure::ShuttingDown)
            }
        }
    }

    async fn owner_apply(
        self: &Rc<Self>,
        op: MetadataOp,
    ) -> Result<Vec<TopicResult>, OwnerFailure> {
        let Some(owner) = &self.owner else {
            error!(shard = %self.id, "metadata change on a shard that is not the owner");
            return Err(OwnerFailure::Broadcast);
        };
        let _turn = owner
            .lock
            .acquire_permit(1)
            .await
            .map_err(|_| OwnerFailure::ShuttingDown)?;
        let current = self.metadata();
        let live = self.live_brokers();
        let broker = self.current_config();
        let ctx = OpContext {
            broker: &broker,
            shard_count: self.shard_count,
            live_brokers: &live,
        };
        let (next, results) = ops::apply(&current, &op, &ctx);
        let Some(next) = next else {
            return Ok(results);
        };
        let encoded = owner.store.encode(&next);
        let dir = self.config.data_dir.clone();
        let persisted = glommio::executor()
            .spawn_blocking(move || write_atomically(&dir, METADATA_FILE, &encoded))
            .await;
        if let Err(err) = persisted {
            error!(error = %err, "cannot persist metadata; change rejected");
            return Err(OwnerFailure::Storage);
        }
        let snapshot = Arc::new(next);
        log_change(&op, &results, snapshot.version);
        self.broadcast_snapshot(snapshot).await?;
        Ok(results)
    }

    async fn broadcast_snapshot(
        self: &Rc<Self>,
        snapshot: Arc<ClusterMetadata>,
    ) -> Result<(), OwnerFailure> {
        let mut calls = Vec::with_capacity(self.shard_count);
        for peer in 0..self.shard_count {
            if peer == self.id.0 {
                continue;
            }
            let shard = self.clone();
            let snapshot = snapshot.clone();
            calls.push(glommio::spawn_local(async move {
                shard
                    .mesh
                    .call(ShardId(peer), MeshRequest::ApplySnapshot(snapshot))
                    .await
            }));
        }
        self.apply_snapshot(snapshot).await;
        let mut failed = false;
        for call in calls {
            if let Err(err) = call.await {
                warn!(error = %err, "a shard did not apply the metadata snapshot");
                failed = true;
            }
        }
        if failed {
            Err(OwnerFailure::Broadcast)
        } else {
            Ok(())
        }
    }

    /// Swaps in a newer snapshot (older or equal versions are ignored): opens partitions
    /// this shard now owns before the swap (so requests never find a topic without its
    /// log), and closes deleted ones after it.
    pub async fn apply_snapshot(self: &Rc<Self>, snapshot: Arc<ClusterMetadata>) {
        let Ok(_turn) = self.snapshot_lock.acquire_permit(1).await else {
            return;
        };
        let current = self.metadata();
        if snapshot.version <= current.version {
            debug!(shard = %self.id, version = snapshot.version, "ignoring stale metadata snapshot");
            return;
        }
        self.sync_partitions(&current, &snapshot).await;
        *self.metadata.borrow_mut() = snapshot.clone();
        self.remove_deleted_partitions(&snapshot);
        self.rebalance_hot_tails();
    }

    /// Handles one request from another shard and sends the reply.
    pub async fn handle_mesh_request(self: Rc<Self>, from: ShardId, id: u64, request: MeshRequest) {
        let reply = match request {
            MeshRequest::Metadata(op) => MeshReply::Metadata(self.owner_apply(op).await),
            MeshRequest::ApplySnapshot(snapshot) => {
                self.apply_snapshot(snapshot).await;
                MeshReply::Ack
            }
            MeshRequest::Opened => {
                self.peers_opened.count_down();
                MeshReply::Ack
            }
            MeshRequest::Drained => {
                self.peers_drained.count_down();
                MeshReply::Ack
            }
            MeshRequest::Partition(request) => {
                MeshReply::Partition(self.handle_partition_request(request).await)
            }
            MeshRequest::Group { partition, request } => {
                MeshReply::Group(self.serve_group_request(partition, request).await)
            }
            MeshRequest::InitProducerId(current) => {
                MeshReply::ProducerId(self.owner_init_producer_id(current).await)
            }
            MeshRequest::Metrics => MeshReply::Metrics(self.render_metrics()),
            MeshRequest::AlterBrokerConfig(request) => {
                MeshReply::BrokerConfig(self.owner_alter_broker_config(request).await)
            }
            MeshRequest::ApplyLiveConfig(live) => {
                self.apply_live_config(live);
                MeshReply::Ack
            }
        };
        if let Err(err) = self.mesh.reply(from, id, reply).await {
            debug!(shard = %self.id, peer = %from, error = %err, "mesh reply not delivered");
        }
    }

    /// InitProducerId without a transactional id, answered by the metadata owner (shard 0):
    /// a bumped epoch for a known id and epoch, else a fresh id.
    pub async fn init_producer_id(
        self: &Rc<Self>,
        current: Option<(producer_state::ProducerId, producer_state::ProducerEpoch)>,
    ) -> Result<
        (producer_state::ProducerId, producer_state::ProducerEpoch),
        producer_ids::ProducerIdError,
    > {
        if self.id == ShardId::METADATA_OWNER {
            return self.owner_init_producer_id(current).await;
        }
        match self
            .mesh
            .call(
                ShardId::METADATA_OWNER,
                MeshRequest::InitProducerId(current),
            )
            .await
        {
            Ok(MeshReply::ProducerId(result)) => result,
            Ok(_) => {
                error!(shard = %self.id, "metadata owner sent an unexpected reply kind");
                Err(producer_ids::ProducerIdError::ShuttingDown)
            }
            Err(err) => {
                warn!(shard = %self.id, error = %err, "producer id request not delivered");
                Err(producer_ids::ProducerIdError::ShuttingDown)
            }
        }
    }

    async fn owner_init_producer_id(
        &self,
        current: Option<(producer_state::ProducerId, producer_state::ProducerEpoch)>,
    ) -> Result<
        (producer_state::ProducerId, producer_state::ProducerEpoch),
        producer_ids::ProducerIdError,
    > {
        match &self.producer_ids {
            Some(allocator) => allocator.init(current).await,
            None => {
                error!(shard = %self.id, "producer id request on a shard that is not the owner");
                Err(producer_ids::ProducerIdError::ShuttingDown)
            }
        }
    }

    /// Sends a partition batch to its owning shard and returns the owner's reply.
    pub async fn call_partitions(
        &self,
        owner: ShardId,
        request: partition_ops::PartitionRequest,
    ) -> Result<partition_ops::PartitionReply, MeshError> {
        match self
            .mesh
            .call(owner, MeshRequest::Partition(request))
            .await?
        {
            MeshReply::Partition(reply) => Ok(reply),
            _ => Err(MeshError::UnexpectedReply(owner)),
        }
    }

    /// Tells every peer this shard has opened its partitions.
    pub async fn announce_opened(self: &Rc<Self>) -> Result<(), MeshError> {
        self.announce(|| MeshRequest::Opened).await
    }

    /// Completes when every peer has announced it has opened its partitions. A shard accepts
    /// no connection before: a request it forwards must find the owner's partitions open.
    pub async fn wait_peers_opened(&self) {
        self.peers_opened.wait().await;
    }

    /// Tells every peer this shard has no connections left.
    pub async fn announce_drained(self: &Rc<Self>) -> Result<(), MeshError> {
        self.announce(|| MeshRequest::Drained).await
    }

    /// Completes when every peer has announced it is drained.
    pub async fn wait_peers_drained(&self) {
        self.peers_drained.wait().await;
    }

    async fn announce(&self, request: impl Fn() -> MeshRequest) -> Result<(), MeshError> {
        for peer in 0..self.shard_count {
            if peer != self.id.0 {
                self.mesh.call(ShardId(peer), request()).await?;
            }
        }
        Ok(())
    }

    /// Registers a new connection; returns its id.
    pub fn connection_opened(&self) -> u64 {
        let id = self.connections.next_id.get();
        self.connections.next_id.set(id.wrapping_add(1));
        self.connections.open.set(self.connections.open.get() + 1);
        id
    }

    /// Deregisters a connection.
    pub fn connection_closed(&self) {
        self.connections
            .open
            .set(self.connections.open.get().saturating_sub(1));
        self.connections.changed.notify_all();
    }

    /// Number of open connections.
    pub fn open_connections(&self) -> usize {
        self.connections.open.get()
    }

    /// This shard's share of `max.connections` (at least one connection per shard).
    pub fn connection_limit(&self) -> usize {
        let total = usize::try_from(self.current_config().max_connections)
            .unwrap_or(1)
            .max(1);
        total.div_ceil(self.shard_count.max(1))
    }

    /// Completes when fewer than [`Shard::connection_limit`] connections are open (the limit
    /// is read again whenever connections close or `max.connections` changes).
    pub async fn wait_connection_slot(&self) {
        let mut logged = false;
        loop {
            let listener = self.connections.changed.listen();
            let limit = self.connection_limit();
            if self.connections.open.get() < limit {
                return;
            }
            if !logged {
                warn!(shard = %self.id, open = self.connections.open.get(), limit, "max.connections reached: new connections wait to be accepted");
                logged = true;
            }
            listener.await;
        }
    }

    /// Completes when no connection is open.
    pub async fn wait_connections_closed(&self) {
        loop {
            let listener = self.connections.changed.listen();
            if self.connections.open.get() == 0 {
                return;
            }
            listener.await;
        }
    }
}
