//! [`Client`]: bootstrap, cluster metadata (brokers, topics, partition leaders) and the
//! connections to each broker, shared by the producer, the consumer and the admin calls.
//!
//! Metadata is cached per topic and refreshed on demand: callers refresh after an error code
//! that says the cached leaders are stale (NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION,
//! ...; see [`KafkaCode::needs_metadata_refresh`]).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use glommio::sync::Semaphore;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;

use crate::connection::{Connection, ConnectionConfig};
use crate::error::{ClientError, KafkaCode};
use crate::types::{NodeId, PartitionId, TopicId};

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `HOST:PORT` addresses to bootstrap from (any one suffices).
    pub bootstrap_servers: Vec<String>,
    /// Settings of every connection.
    pub connection: ConnectionConfig,
    /// Connections opened to each broker; requests are spread over them round-robin.
    pub connections_per_broker: usize,
}

impl ClientConfig {
    /// `bootstrap` is a comma-separated list of `HOST:PORT`, as Kafka's `bootstrap.servers`.
    pub fn new(bootstrap: &str) -> Self {
        Self {
            bootstrap_servers: bootstrap
                .split(',')
                .map(str::trim)
                .filter(|addr| !addr.is_empty())
                .map(str::to_owned)
                .collect(),
            connection: ConnectionConfig::default(),
            connections_per_broker: 1,
        }
    }
}

/// One broker as metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMetadata {
    pub node: NodeId,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl BrokerMetadata {
    /// `HOST:PORT`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One partition as metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    pub id: PartitionId,
    pub error: KafkaCode,
    pub leader: Option<NodeId>,
    pub leader_epoch: i32,
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    pub offline_replicas: Vec<NodeId>,
}

/// One topic as metadata describes it; `partitions` is sorted by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    pub name: String,
    /// The topic id (Metadata v10+; zero from older versions, as Kafka's `Uuid.ZERO_UUID`).
    pub id: TopicId,
    pub error: KafkaCode,
    pub is_internal: bool,
    pub partitions: Vec<PartitionMetadata>,
}

impl TopicMetadata {
    /// The partition with this id.
    pub fn partition(&self, id: PartitionId) -> Option<&PartitionMetadata> {
        self.partitions
            .binary_search_by_key(&id, |partition| partition.id)
            .ok()
            .and_then(|index| self.partitions.get(index))
    }
}

/// A whole Metadata answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMetadata {
    pub cluster_id: Option<String>,
    pub controller: Option<NodeId>,
    pub brokers: Vec<BrokerMetadata>,
    pub topics: Vec<TopicMetadata>,
}

struct Inner {
    config: ClientConfig,
    /// The connection used for metadata and admin calls that may go to any broker.
    any: RefCell<Option<Connection>>,
    brokers: RefCell<HashMap<NodeId, String>>,
    controller: Cell<Option<NodeId>>,
    topics: RefCell<HashMap<String, Rc<TopicMetadata>>>,
    connections: RefCell<HashMap<NodeId, Vec<Connection>>>,
    next_connection: Cell<usize>,
    /// Only one connect at a time, so concurrent callers do not open duplicates.
    connect_lock: Semaphore,
}

/// A Kafka client: metadata plus connections. Cheap to clone; owned by one executor.
#[derive(Clone)]
pub struct Client {
    inner: Rc<Inner>,
}

impl Client {
    /// Connects to the first reachable bootstrap server and reads the broker list.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        if config.bootstrap_servers.is_empty() {
            return Err(ClientError::NoBootstrap);
        }
        if config.connections_per_broker == 0 {
            return Err(ClientError::InvalidConfig(
                "connections_per_broker must be at least 1",
            ));
        }
        let client = Client {
            inner: Rc::new(Inner {
                config,
                any: RefCell::new(None),
                brokers: RefCell::new(HashMap::new()),
                controller: Cell::new(None),
                topics: RefCell::new(HashMap::new()),
                connections: RefCell::new(HashMap::new()),
                next_connection: Cell::new(0),
                connect_lock: Semaphore::new(1),
            }),
        };
        client.fetch_metadata(Some(&[])).await?;
        Ok(client)
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Asks for metadata of `topics` (`None`: every topic; `Some(&[])`: brokers only) and
    /// updates the caches.
    pub async fn fetch_metadata(
        &self,
        topics: Option<&[&str]>,
    ) -> Result<ClusterMetadata, ClientError> {
        let request = MetadataRequest::default()
            .with_topics(topics.map(|names| {
                names
                    .iter()
                    .map(|name| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string((*name).to_owned()))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        let connection = self.any_broker().await?;
        let response = match connection.call(&request).await {
            Ok(response) => response,
            Err(error) if error.is_retriable() => {
                // The bootstrap connection may have died: reconnect once.
                self.inner.any.borrow_mut().take();
                self.any_broker().await?.call(&request).await?
            }
            Err(error) => return Err(error),
        };
        let metadata = cluster_metadata(response);
        self.update_caches(&metadata);
        Ok(metadata)
    }

    fn update_caches(&self, metadata: &ClusterMetadata) {
        if !metadata.brokers.is_empty() {
            let mut brokers = self.inner.brokers.borrow_mut();
            brokers.clear();
            for broker in &metadata.brokers {
                brokers.insert(broker.node, broker.addr());
            }
        }
        self.inner.controller.set(metadata.controller);
        let mut topics = self.inner.topics.borrow_mut();
        for topic in &metadata.topics {
            if topic.error.is_ok() {
                topics.insert(topic.name.clone(), Rc::new(topic.clone()));
            } else {
                topics.remove(&topic.name);
            }
        }
    }

    /// The cached metadata of `topic`, if any.
    pub fn cached_topic(&self, topic: &str) -> Option<Rc<TopicMetadata>> {
        self.inner.topics.borrow().get(topic).cloned()
    }

    /// The metadata of `topic`, from the cache or the broker.
    pub async fn topic(&self, topic: &str) -> Result<Rc<TopicMetadata>, ClientError> {
        match self.cached_topic(topic) {
            Some(metadata) => Ok(metadata),
            None => self.refresh_topic(topic).await,
        }
    }

    /// Asks the broker for `topic`'s metadata now.
    pub async fn refresh_topic(&self, topic: &str) -> Result<Rc<TopicMetadata>, ClientError> {
        let metadata = self.fetch_metadata(Some(&[topic])).await?;
        let found = metadata
            .topics
            .into_iter()
            .find(|entry| entry.name == topic);
        match found {
            Some(entry) if entry.error.is_ok() => Ok(self
                .cached_topic(topic)
                .unwrap_or_else(|| Rc::new(entry.clone()))),
            Some(entry) if entry.error != KafkaCode::UNKNOWN_TOPIC_OR_PARTITION => {
                Err(crate::error::KafkaError::new(
                    kafka_protocol::messages::ApiKey::Metadata,
                    entry.error,
                )
                .with_resource(topic)
                .into())
            }
            _ => Err(ClientError::UnknownTopic {
                topic: topic.to_owned(),
            }),
        }
    }

    /// The leader of `topic`-`partition` from cached metadata (fetched if missing).
    pub async fn leader(&self, topic: &str, partition: PartitionId) -> Result<NodeId, ClientError> {
        let metadata = self.topic(topic).await?;
        let entry = metadata
            .partition(partition)
            .ok_or_else(|| ClientError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
            })?;
        entry.leader.ok_or_else(|| ClientError::NoLeader {
            topic: topic.to_owned(),
            partition,
        })
    }

    /// The known controller node (from the last metadata answer).
    pub fn controller_id(&self) -> Option<NodeId> {
        self.inner.controller.get()
    }

    /// A connection to `node`, opened on first use; with several connections per broker,
    /// successive calls rotate over them.
    pub async fn broker(&self, node: NodeId) -> Result<Connection, ClientError> {
        let wanted = self.inner.config.connections_per_broker;
        if let Some(connection) = self.open_connection(node) {
            return Ok(connection);
        }
        let _lock = self
            .inner
            .connect_lock
            .acquire_permit(1)
            .await
            .map_err(|error| ClientError::Runtime(error.into()))?;
        if let Some(connection) = self.open_connection(node) {
            return Ok(connection);
        }
        let addr = self
            .inner
            .brokers
            .borrow()
            .get(&node)
            .cloned()
            .ok_or(ClientError::UnknownNode { node })?;
        // Drop dead connections, then open up to the wanted count.
        let mut fresh = Vec::with_capacity(wanted);
        for _ in 0..wanted {
            fresh.push(Connection::connect(&addr, self.inner.config.connection.clone()).await?);
        }
        debug!(%node, %addr, connections = wanted, "connected to broker");
        let first = fresh.first().cloned();
        self.inner.connections.borrow_mut().insert(node, fresh);
        first.ok_or(ClientError::InvalidConfig(
            "connections_per_broker must be at least 1",
        ))
    }

    /// An open connection to `node` if all of its connections are open.
    fn open_connection(&self, node: NodeId) -> Option<Connection> {
        let connections = self.inner.connections.borrow();
        let list = connections.get(&node)?;
        if list.is_empty() || list.iter().any(Connection::is_closed) {
            return None;
        }
        let index = self.inner.next_connection.get();
        self.inner.next_connection.set(index.wrapping_add(1));
        list.get(index % list.len()).cloned()
    }

    /// Every open connection to `node` (at least one is opened).
    pub async fn broker_connections(&self, node: NodeId) -> Result<Vec<Connection>, ClientError> {
        self.broker(node).await?;
        Ok(self
            .inner
            .connections
            .borrow()
            .get(&node)
            .cloned()
            .unwrap_or_default())
    }

    /// A connection to the controller if known, else to any broker (admin calls).
    pub async fn controller(&self) -> Result<Connection, ClientError> {
        match self.inner.controller.get() {
            Some(node) if self.inner.brokers.borrow().contains_key(&node) => {
                self.broker(node).await
            }
            _ => self.any_broker().await,
        }
    }

    /// A connection to some broker: the bootstrap connection, re-opened if it died.
    pub async fn any_broker(&self) -> Result<Connection, ClientError> {
        if let Some(connection) = self.inner.any.borrow().as_ref() {
            if !connection.is_closed() {
                return Ok(connection.clone());
            }
        }
        let mut candidates: Vec<String> = self.inner.brokers.borrow().values().cloned().collect();
        candidates.extend(self.inner.config.bootstrap_servers.iter().cloned());
        let mut last_error = ClientError::NoBootstrap;
        for addr in candidates {
            match Connection::connect(&addr, self.inner.config.connection.clone()).await {
                Ok(connection) => {
                    *self.inner.any.borrow_mut() = Some(connection.clone());
                    return Ok(connection);
                }
                Err(error) => {
                    debug!(%addr, %error, "broker not reachable");
                    last_error = error;
                }
            }
        }
        Err(last_error)
    }

    /// Closes every connection.
    pub fn close(&self) {
        if let Some(connection) = self.inner.any.borrow_mut().take() {
            connection.close();
        }
        for (_, connections) in self.inner.connections.borrow_mut().drain() {
            for connection in connections {
                connection.close();
            }
        }
    }
}

fn node(id: i32) -> Option<NodeId> {
    (id >= 0).then_some(NodeId(id))
}

fn cluster_metadata(response: MetadataResponse) -> ClusterMetadata {
    let mut topics: Vec<TopicMetadata> = response
        .topics
        .into_iter()
        .map(|topic| {
            let mut partitions: Vec<PartitionMetadata> = topic
                .partitions
                .into_iter()
                .map(|partition| PartitionMetadata {
                    id: PartitionId(partition.partition_index),
                    error: KafkaCode(partition.error_code),
                    leader: node(partition.leader_id.0),
                    leader_epoch: partition.leader_epoch,
                    replicas: partition
                        .replica_nodes
                        .iter()
                        .map(|id| NodeId(id.0))
                        .collect(),
                    isr: partition.isr_nodes.iter().map(|id| NodeId(id.0)).collect(),
                    offline_replicas: partition
                        .offline_replicas
                        .iter()
                        .map(|id| NodeId(id.0))
                        .collect(),
                })
                .collect();
            partitions.sort_by_key(|partition| partition.id);
            TopicMetadata {
                name: topic
                    .name
                    .map(|name| name.0.as_str().to_owned())
                    .unwrap_or_default(),
                id: TopicId(*topic.topic_id.as_bytes()),
                error: KafkaCode(topic.error_code),
                is_internal: topic.is_internal,
                partitions,
            }
        })
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    ClusterMetadata {
        cluster_id: response.cluster_id.map(|id| id.as_str().to_owned()),
        controller: node(response.controller_id.0),
        brokers: response
            .brokers
            .into_iter()
            .map(|broker| BrokerMetadata {
                node: NodeId(broker.node_id.0),
                host: broker.host.as_str().to_owned(),
                port: broker.port,
                rack: broker.rack.map(|rack| rack.as_str().to_owned()),
            })
            .collect(),
        topics,
    }
}
