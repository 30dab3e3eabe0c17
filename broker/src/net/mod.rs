//! Sockets: listening (SO_REUSEPORT, bound before shards start), per-connection request
//! handling, and the vectored writes that send responses without copying their parts.
//!
//! - [`listener`]: bind one listening socket per shard on the same address.
//! - [`connection`]: read frames, dispatch, write responses in order.
//! - [`io`]: shared-stream read/write and `sendmsg`-based vectored writes.

pub mod connection;
pub mod io;
pub mod listener;
