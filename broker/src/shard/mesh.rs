//! Request/reply over glommio's channel mesh (one bounded SPSC channel per ordered shard
//! pair). Every message is `Send`; payloads are `Bytes` or `Arc` snapshots, never copies.
//!
//! A reply is matched to its request by id through a per-shard table of oneshot slots. The
//! receiving loop never blocks on a send (requests are handled in spawned tasks), so two
//! shards calling each other cannot deadlock on full channels.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use glommio::channels::channel_mesh::Senders;
use thiserror::Error;

use super::messages::{MeshReply, MeshRequest};
use crate::local_sync::{oneshot, OneshotSender};
use crate::types::ShardId;

/// Slots per channel between two shards. Senders wait (backpressure) when it is full.
pub const MESH_CHANNEL_CAPACITY: usize = 1024;

/// What travels between shards.
pub enum Envelope {
    /// A request expecting one reply with the same id.
    Request {
        /// Sender shard (where the reply goes).
        from: ShardId,
        /// Request id, unique per sender.
        id: u64,
        /// Request.
        body: MeshRequest,
    },
    /// The reply to request `id`.
    Reply {
        /// Request id.
        id: u64,
        /// Reply.
        body: MeshReply,
    },
}

/// Mesh failures. Only happen during shutdown or if a shard died.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MeshError {
    /// The peer's channel is closed.
    #[error("shard {0} is not reachable over the mesh")]
    PeerGone(ShardId),
    /// The peer dropped the request without replying.
    #[error("shard {0} dropped a request without replying")]
    NoReply(ShardId),
    /// The reply was of an unexpected kind (a bug).
    #[error("shard {0} sent an unexpected reply kind")]
    UnexpectedReply(ShardId),
}

/// This shard's end of the mesh. Owned by one shard.
pub struct Mesh {
    shard: ShardId,
    senders: Senders<Envelope>,
    next_id: Cell<u64>,
    pending: RefCell<HashMap<u64, OneshotSender<MeshReply>>>,
}

impl Mesh {
    /// Wraps the joined mesh senders.
    pub fn new(shard: ShardId, senders: Senders<Envelope>) -> Mesh {
        Mesh {
            shard,
            senders,
            next_id: Cell::new(1),
            pending: RefCell::new(HashMap::new()),
        }
    }

    /// Sends `body` to shard `to` and waits for its reply.
    pub async fn call(&self, to: ShardId, body: MeshRequest) -> Result<MeshReply, MeshError> {
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        let (reply_tx, reply_rx) = oneshot();
        self.pending.borrow_mut().insert(id, reply_tx);
        let envelope = Envelope::Request {
            from: self.shard,
            id,
            body,
        };
        if self.senders.send_to(to.0, envelope).await.is_err() {
            self.pending.borrow_mut().remove(&id);
            return Err(MeshError::PeerGone(to));
        }
        reply_rx.await.ok_or(MeshError::NoReply(to))
    }

    /// Sends the reply for request `id` back to `to`.
    pub async fn reply(&self, to: ShardId, id: u64, body: MeshReply) -> Result<(), MeshError> {
        self.senders
            .send_to(to.0, Envelope::Reply { id, body })
            .await
            .map_err(|_| MeshError::PeerGone(to))
    }

    /// Delivers a reply that arrived to the waiting caller (if it is still waiting).
    pub fn complete(&self, id: u64, body: MeshReply) {
        if let Some(slot) = self.pending.borrow_mut().remove(&id) {
            slot.send(body);
        }
    }

    /// Fails every waiting call whose peer is gone (the slots are dropped, callers get
    /// `NoReply`).
    pub fn fail_pending(&self) {
        self.pending.borrow_mut().clear();
    }

    /// Closes this shard's sending side (peers' receive loops then end).
    pub fn close(&self) {
        self.senders.close();
    }

    /// Number of shards in the mesh.
    pub fn shard_count(&self) -> usize {
        self.senders.nr_consumers()
    }
}
