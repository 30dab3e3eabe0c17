//! Vaart replication: cluster metadata, the controller quorum and ISR replication.
//!
//! # Layout
//! - [`NodeId`]: the identity of a broker in the cluster.
//!
//! Replication itself (controller quorum on raft-rs, leader/follower fetch, ISR) is not built
//! yet; a single broker runs as the only replica of every partition.

/// The integer `node.id` of a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub i32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_order_by_value() {
        assert!(NodeId(1) < NodeId(2));
    }
}
