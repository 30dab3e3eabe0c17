//! Helpers for the end-to-end tests in `tests/tests/`: start the real `vaart` binary on a free
//! port and drive it with real Kafka clients.
//!
//! # Layout
//! - [`broker`]: [`Broker`], one `vaart start` process on a free loopback port (reserved across
//!   test processes with a file lock) with its own temporary data dir; bounded start (TCP accept plus an ApiVersions round trip), SIGTERM stop
//!   that must exit 0, SIGKILL, restart on the same data dir and port, stderr kept for failures.
//! - [`cli`]: [`cli::vaart_tool`], one run of a `vaart` tool (`topics`, `console-producer`, ...)
//!   with stdin fed and stdout/stderr/exit code captured, under a deadline.
//! - [`wire`]: [`wire::KafkaConn`], a blocking raw Kafka protocol connection (requests encoded
//!   with the `kafka-protocol` crate, frames read with bounded sizes and timeouts) plus small
//!   request builders (create topic, produce a batch, fetch, metadata) for protocol-level tests.
//! - [`clients`]: rdkafka helpers: producers that record every delivery report, a consumer that
//!   reads assigned partitions (no consumer group) until a count and end-of-partition are
//!   reached or an overall deadline passes, and a blocking admin client.
//! - [`workload`]: deterministic test messages (key, payload, headers, timestamp from an id),
//!   sending them, and the checks every round trip makes on what was consumed.
//!
//! No helper asserts on timing: every wait has an overall deadline that fails the test instead of
//! hanging it.

pub mod broker;
pub mod cli;
pub mod clients;
pub mod wire;
pub mod workload;

pub use broker::{Broker, BrokerOptions};
