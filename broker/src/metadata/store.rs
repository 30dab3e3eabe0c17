//! The metadata file, `<data-dir>/vaart-metadata.json`, replaced atomically: write a temp
//! file, fsync it, rename it over the old one, fsync the directory. A crash leaves either the
//! old or the new file, never a mix.
//!
//! Format (JSON, `format` 1):
//! `{"format":1,"cluster_id":"…","node_id":1,"version":7,"topics":[{"name":"t","id":"uuid",
//!   "configs":{"retention.ms":"1000"},"partitions":[{"shard":0,"leader_epoch":0}]}]}`

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{ClusterMetadata, PartitionMeta, TopicMeta};
use crate::types::{random_cluster_id, NodeId, ShardId, TopicId};

/// File name inside the data dir.
pub const METADATA_FILE: &str = "vaart-metadata.json";
const FORMAT_VERSION: u32 = 1;

/// Errors reading or writing the metadata file.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// File involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid metadata JSON.
    #[error("metadata file {path} is corrupt: {source}")]
    Corrupt {
        /// File.
        path: PathBuf,
        /// Cause.
        source: serde_json::Error,
    },
    /// Written by a newer Vaart.
    #[error("metadata file {path} has format {found}; this Vaart reads format {FORMAT_VERSION}")]
    UnsupportedFormat {
        /// File.
        path: PathBuf,
        /// Format found.
        found: u32,
    },
    /// A topic id that is not a UUID.
    #[error("metadata file {path}: topic {topic} has an invalid id")]
    BadTopicId {
        /// File.
        path: PathBuf,
        /// Topic name.
        topic: String,
    },
    /// The data dir belongs to another node.
    #[error("data dir {path} belongs to node.id {stored}, but this broker is configured with node.id {configured}")]
    NodeIdMismatch {
        /// Data dir.
        path: PathBuf,
        /// Stored id.
        stored: i32,
        /// Configured id.
        configured: i32,
    },
    /// The data dir belongs to another cluster.
    #[error(
        "data dir {path} belongs to cluster {stored}, but cluster.id is configured as {configured}"
    )]
    ClusterIdMismatch {
        /// Data dir.
        path: PathBuf,
        /// Stored id.
        stored: String,
        /// Configured id.
        configured: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct PersistedPartition {
    shard: usize,
    leader_epoch: i32,
}

#[derive(Debug, Serialize, Deserialize)]
struct PersistedTopic {
    name: String,
    id: String,
    #[serde(default)]
    configs: BTreeMap<String, String>,
    partitions: Vec<PersistedPartition>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PersistedMetadata {
    format: u32,
    cluster_id: String,
    node_id: i32,
    version: u64,
    topics: Vec<PersistedTopic>,
}

/// Handle to the metadata file. Owned by the metadata owner (shard 0).
#[derive(Debug, Clone)]
pub struct MetadataStore {
    dir: PathBuf,
    node_id: NodeId,
}

impl MetadataStore {
    /// Loads the metadata file from `dir`, or creates a fresh one. Partitions placed on a
    /// shard that no longer exists (fewer shards than last run) are moved deterministically
    /// to `shard % shard_count`, and the result is persisted.
    pub fn open(
        dir: &Path,
        node_id: NodeId,
        configured_cluster_id: Option<&str>,
        shard_count: usize,
    ) -> Result<(MetadataStore, ClusterMetadata), StoreError> {
        let store = MetadataStore {
            dir: dir.to_path_buf(),
            node_id,
        };
        let path = store.path();
        let existing = match fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(StoreError::Io {
                    op: "read",
                    path,
                    source,
                })
            }
        };
        let Some(bytes) = existing else {
            let cluster_id = configured_cluster_id
                .map(str::to_string)
                .unwrap_or_else(random_cluster_id);
            let meta = ClusterMetadata::new(1, cluster_id, Vec::new());
            store.persist(&meta)?;
            return Ok((store, meta));
        };
        let (mut meta, stored_node) = decode(&path, &bytes)?;
        if stored_node != node_id.0 {
            return Err(StoreError::NodeIdMismatch {
                path: dir.to_path_buf(),
                stored: stored_node,
                configured: node_id.0,
            });
        }
        if let Some(configured) = configured_cluster_id {
            if configured != meta.cluster_id {
                return Err(StoreError::ClusterIdMismatch {
                    path: dir.to_path_buf(),
                    stored: meta.cluster_id,
                    configured: configured.to_string(),
                });
            }
        }
        if remap_shards(&mut meta, shard_count) {
            meta.version += 1;
            store.persist(&meta)?;
        }
        Ok((store, meta))
    }

    /// The metadata file path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(METADATA_FILE)
    }

    /// Serializes a snapshot (cheap, on the shard) for [`MetadataStore::write_atomically`].
    pub fn encode(&self, meta: &ClusterMetadata) -> Vec<u8> {
        let persisted = PersistedMetadata {
            format: FORMAT_VERSION,
            cluster_id: meta.cluster_id.clone(),
            node_id: self.node_id.0,
            version: meta.version,
            topics: meta
                .topics
                .values()
                .map(|topic| PersistedTopic {
                    name: topic.name.clone(),
                    id: topic.id.to_string(),
                    configs: topic.configs.clone(),
                    partitions: topic
                        .partitions
                        .iter()
                        .map(|p| PersistedPartition {
                            shard: p.shard.0,
                            leader_epoch: p.leader_epoch,
                        })
                        .collect(),
                })
                .collect(),
        };
        // Serializing plain structs of strings and integers cannot fail.
        serde_json::to_vec_pretty(&persisted).expect("metadata serializes")
    }

    /// Persists a snapshot synchronously (startup, tests).
    pub fn persist(&self, meta: &ClusterMetadata) -> Result<(), StoreError> {
        write_atomically(&self.dir, METADATA_FILE, &self.encode(meta))
    }
}

/// Replaces `dir/name` with `contents`: temp file, fsync, rename, fsync dir. Blocking; run it
/// on a blocking thread when called from a shard.
pub fn write_atomically(dir: &Path, name: &str, contents: &[u8]) -> Result<(), StoreError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Io { op, path, source }
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    file.write_all(contents).map_err(io("write", &tmp))?;
    file.sync_all().map_err(io("fsync", &tmp))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(io("rename", &path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync dir", dir))?;
    Ok(())
}

fn decode(path: &Path, bytes: &[u8]) -> Result<(ClusterMetadata, i32), StoreError> {
    let persisted: PersistedMetadata =
        serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
            path: path.to_path_buf(),
            source,
        })?;
    if persisted.format != FORMAT_VERSION {
        return Err(StoreError::UnsupportedFormat {
            path: path.to_path_buf(),
            found: persisted.format,
        });
    }
    let mut topics = Vec::with_capacity(persisted.topics.len());
    for topic in persisted.topics {
        let id = topic
            .id
            .parse::<uuid::Uuid>()
            .map_err(|_| StoreError::BadTopicId {
                path: path.to_path_buf(),
                topic: topic.name.clone(),
            })?;
        topics.push(TopicMeta {
            name: topic.name,
            id: TopicId(id),
            configs: topic.configs,
            partitions: topic
                .partitions
                .iter()
                .map(|p| PartitionMeta {
                    shard: ShardId(p.shard),
                    leader_epoch: p.leader_epoch,
                })
                .collect(),
        });
    }
    Ok((
        ClusterMetadata::new(persisted.version, persisted.cluster_id, topics),
        persisted.node_id,
    ))
}

/// Moves partitions off shards that do not exist in this run. Returns whether anything moved.
fn remap_shards(meta: &mut ClusterMetadata, shard_count: usize) -> bool {
    let shard_count = shard_count.max(1);
    let mut changed = false;
    let names: Vec<String> = meta.topics.keys().cloned().collect();
    for name in names {
        let Some(topic) = meta.topics.get(&name) else {
            continue;
        };
        if topic.partitions.iter().all(|p| p.shard.0 < shard_count) {
            continue;
        }
        let mut updated = (**topic).clone();
        for partition in &mut updated.partitions {
            if partition.shard.0 >= shard_count {
                partition.shard = ShardId(partition.shard.0 % shard_count);
            }
        }
        meta.insert_topic(std::sync::Arc::new(updated));
        changed = true;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn sample_topic(name: &str, shards: &[usize]) -> TopicMeta {
        TopicMeta {
            name: name.to_string(),
            id: TopicId::random(),
            partitions: shards
                .iter()
                .map(|&s| PartitionMeta {
                    shard: ShardId(s),
                    leader_epoch: 0,
                })
                .collect(),
            configs: BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]),
        }
    }

    #[test]
    fn round_trip_keeps_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, mut meta) =
            MetadataStore::open(dir.path(), NodeId(1), None, 2).expect("fresh open");
        assert!(meta.topics.is_empty());
        assert_eq!(meta.cluster_id.len(), 22);
        let a = sample_topic("a", &[0, 1, 0]);
        let b = sample_topic("b.x", &[1]);
        meta.insert_topic(Arc::new(a.clone()));
        meta.insert_topic(Arc::new(b.clone()));
        meta.version = 9;
        store.persist(&meta).expect("persist");

        let (_, loaded) = MetadataStore::open(dir.path(), NodeId(1), None, 2).expect("reopen");
        assert_eq!(loaded.version, 9);
        assert_eq!(loaded.cluster_id, meta.cluster_id);
        assert_eq!(loaded.topic("a").map(|t| (**t).clone()), Some(a.clone()));
        assert_eq!(loaded.topic("b.x").map(|t| (**t).clone()), Some(b));
        assert_eq!(
            loaded.topic_by_id(a.id).map(|t| t.name.clone()),
            Some("a".into())
        );
        assert!(!dir.path().join("vaart-metadata.json.tmp").exists());
    }

    #[test]
    fn fewer_shards_remaps_and_persists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, mut meta) = MetadataStore::open(dir.path(), NodeId(1), None, 4).expect("open");
        meta.insert_topic(Arc::new(sample_topic("t", &[0, 1, 2, 3])));
        store.persist(&meta).expect("persist");
        let (_, loaded) = MetadataStore::open(dir.path(), NodeId(1), None, 2).expect("reopen");
        let shards: Vec<usize> = loaded
            .topic("t")
            .expect("t")
            .partitions
            .iter()
            .map(|p| p.shard.0)
            .collect();
        assert_eq!(shards, vec![0, 1, 0, 1]);
        let (_, again) = MetadataStore::open(dir.path(), NodeId(1), None, 2).expect("reopen");
        assert_eq!(again.version, loaded.version, "remap persisted once");
    }

    #[test]
    fn node_and_cluster_id_mismatch_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, meta) = MetadataStore::open(dir.path(), NodeId(1), None, 1).expect("open");
        assert!(matches!(
            MetadataStore::open(dir.path(), NodeId(2), None, 1),
            Err(StoreError::NodeIdMismatch { .. })
        ));
        assert!(matches!(
            MetadataStore::open(dir.path(), NodeId(1), Some("other"), 1),
            Err(StoreError::ClusterIdMismatch { .. })
        ));
        assert!(MetadataStore::open(dir.path(), NodeId(1), Some(&meta.cluster_id), 1).is_ok());
    }

    #[test]
    fn corrupt_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(METADATA_FILE), b"{not json").expect("write");
        assert!(matches!(
            MetadataStore::open(dir.path(), NodeId(1), None, 1),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
