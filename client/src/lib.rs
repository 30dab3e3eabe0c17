//! Vaart's own small Kafka client, on glommio, with every request and record batch encoded and
//! decoded by the `kafka-protocol` crate. Shared by the load generator (`vaart-bench`) and the
//! command line (`vaart topics`, `console-producer`, ...). Everything is executor-local
//! (`!Send`): create and use a client inside one glommio executor.
//!
//! # Layout
//! - `types`: newtypes [`NodeId`], [`PartitionId`], [`Offset`], [`TopicId`].
//! - `error`: [`ClientError`], [`KafkaCode`] (the broker's exact error code), [`KafkaError`].
//! - `versions`: the API versions the client speaks and the per-connection choice.
//! - `connection`: [`Connection`], one pipelined TCP connection (correlation ids, bounded
//!   in-flight requests, ApiVersions negotiation).
//! - `frame`: request frames that reference record batches instead of copying them.
//! - `cluster`: [`Client`], bootstrap + metadata cache + connections per broker.
//! - `partitioner`: Kafka's murmur2 key partitioner.
//! - `producer`: [`Producer`], batching, acks, compression, delivery results.
//! - `batch`: the producer's record batches, encoded with values referenced, not copied.
//! - `consumer`: [`Consumer`], assigned partitions, long-poll Fetch, batch decoding.
//! - `admin`: [`Admin`], topics, partitions, configs, offsets.
//! - `group`: [`Groups`] (find coordinator, list/describe/delete groups, fetch/commit
//!   offsets) and [`GroupMember`] (join, range assignor, heartbeats, leave).
//! - `sync`, `io`: small executor-local primitives and socket helpers.
//!
//! ```no_run
//! # async fn example() -> Result<(), vaart_client::ClientError> {
//! use vaart_client::{Client, ClientConfig, Producer, ProducerConfig, ProducerRecord};
//! let client = Client::connect(ClientConfig::new("127.0.0.1:9092")).await?;
//! let producer = Producer::new(client, ProducerConfig::default())?;
//! let delivery = producer.send("lecture", ProducerRecord::new("hello").with_key("k")).await?;
//! let metadata = delivery.await.map_err(|error| (*error.0).to_string());
//! # let _ = metadata;
//! # Ok(()) }
//! ```

pub mod admin;
pub mod batch;
pub mod cluster;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod frame;
pub mod group;
mod io;
pub mod partitioner;
pub mod producer;
pub mod sync;
pub mod types;
pub mod versions;

pub use admin::{
    Admin, AlterConfigOp, ConfigEntry, ConfigSource, ListedOffset, NewTopic, OffsetSpec,
    ResourceType,
};
pub use cluster::{
    BrokerMetadata, Client, ClientConfig, ClusterMetadata, PartitionMetadata, TopicMetadata,
};
pub use connection::{Connection, ConnectionConfig};
pub use consumer::{Consumer, ConsumerConfig, ConsumerRecord, FetchedBatch, StartOffset};
pub use error::{ClientError, DeliveryError, KafkaCode, KafkaError};
pub use group::{
    range_assign, CommittedOffsets, Coordinator, Generation, GroupDescription, GroupMember,
    GroupMemberConfig, Groups, ListedGroup, MemberDescription, OffsetToCommit, TopicPartitions,
};
pub use producer::{
    Acks, Compression, DeliveryFuture, Producer, ProducerConfig, ProducerRecord, RecordMetadata,
};
pub use types::{NodeId, Offset, PartitionId, TopicId};
