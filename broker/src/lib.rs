//! Vaart broker: a Kafka-compatible, thread-per-core streaming broker.
//!
//! # Layout
//! - [`cli`]: the tools that talk to a running broker (`vaart topics`, `console-producer`,
//!   `console-consumer`, `consumer-groups`, `configs`), on `vaart-client`.
//! - [`config`]: the typed broker configuration and its layers (defaults < TOML file <
//!   `VAART_*` environment < flags), with Kafka's setting names and defaults.
//! - [`dynamic_config`]: dynamic broker configs (Kafka's KIP-226): which settings change at
//!   runtime, the two dynamic levels, validation, their file, SIGHUP reload merging.
//! - [`server`]: process startup and shutdown: data dir, metadata, listening sockets, one
//!   pinned glommio executor per shard, joining them.
//! - [`signals`]: SIGTERM/SIGINT/SIGHUP handling (a `sigwait` thread that notifies the shards).
//! - [`shard`]: one shard's state and life; the channel mesh between shards.
//! - [`net`]: listening sockets, connections (framing, dispatch, ordered responses),
//!   vectored writes.
//! - [`protocol`]: the Kafka wire protocol edge without I/O (frames, headers, bodies).
//! - [`handlers`]: one file per Kafka API and the one list of supported APIs.
//! - [`groups`]: consumer groups and committed offsets: the group coordinator of each shard
//!   and the `__consumer_offsets` records.
//! - [`metadata`]: topics, ids, configs and the partition -> shard map; owned by shard 0,
//!   persisted atomically, replicated read-only to the other shards.
//! - [`metrics`]: Prometheus metrics, one registry per shard, and the `/metrics` endpoint
//!   (shard 0) that merges every shard's.
//! - [`local_sync`]: single-shard events and oneshot replies.
//! - [`alloc_guard`]: the global allocator wrapper that keeps absurd wire-claimed lengths
//!   from aborting the process.
//! - [`types`]: domain newtypes (`NodeId`, `ShardId`, `PartitionIndex`, `TopicId`).

pub mod alloc_guard;
pub mod cli;
pub mod config;
pub mod dynamic_config;
pub mod groups;
pub mod handlers;
pub mod local_sync;
pub mod metadata;
pub mod metrics;
pub mod net;
pub mod protocol;
pub mod server;
pub mod shard;
pub mod signals;
pub mod types;

/// Unit tests decode arbitrary bytes; they run under the same allocator guard as the binary.
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: alloc_guard::GuardedAlloc = alloc_guard::GuardedAlloc;
