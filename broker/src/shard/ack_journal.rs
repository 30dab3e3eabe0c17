//! The acknowledgement journal on the broker side (the ring itself is
//! `vaart_engine::journal`): one journal file per shard in `produce.ack.journal.dir`, named
//! after the data directory, the process and the shard; at start, the files an earlier
//! process left are read ([`LeftJournals::load`]), their entries appended to the logs that
//! lack them while the shards open their partitions, and the files removed once every shard
//! is serving.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{info, warn};
use vaart_engine::{read_journal, AckJournal, JournalEntry, JournalStats, PartitionLog, Restored};

use crate::config::BrokerConfig;
use crate::types::ShardId;

/// Journal entries from an earlier process, by partition directory name, oldest first.
pub type RestoreSet = HashMap<String, Vec<JournalEntry>>;

/// What an earlier process left in the journal directory for this data directory.
#[derive(Debug, Default)]
pub struct LeftJournals {
    /// The files read (removed once every shard has restored its partitions).
    pub files: Vec<PathBuf>,
    /// Their entries.
    pub entries: Arc<RestoreSet>,
}

/// The file name prefix shared by every journal of `data_dir` (its canonical path's CRC).
fn journal_prefix(data_dir: &Path) -> String {
    let canonical = fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let crc = crc32c::crc32c(canonical.as_os_str().as_encoded_bytes());
    format!("vaart-journal-{crc:08x}-")
}

/// Whether the configuration asks for a journal.
fn journal_enabled(config: &BrokerConfig) -> bool {
    !config.produce_ack_after_write
        && config.produce_ack_journal_bytes > 0
        && !config.produce_ack_journal_dir.as_os_str().is_empty()
}

impl LeftJournals {
    /// Reads every journal file of `config.data_dir` in the journal directory (whether or not
    /// this process will keep a journal: a file left behind must still be restored).
    /// Unreadable files are logged and skipped.
    pub fn load(config: &BrokerConfig) -> LeftJournals {
        let dir = &config.produce_ack_journal_dir;
        if dir.as_os_str().is_empty() {
            return LeftJournals::default();
        }
        let prefix = journal_prefix(&config.data_dir);
        let mut files: Vec<PathBuf> = match fs::read_dir(dir) {
            Ok(listing) => listing
                .filter_map(Result::ok)
                .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
                .map(|entry| entry.path())
                .collect(),
            Err(_) => return LeftJournals::default(),
        };
        files.sort();
        let mut entries = RestoreSet::new();
        let mut count = 0usize;
        for file in &files {
            match read_journal(file) {
                Ok(contents) => {
                    if let Some(position) = contents.damaged_at {
                        warn!(file = %file.display(), position, "journal entry damaged; later entries of this file are ignored");
                    }
                    for entry in contents.entries {
                        count += 1;
                        entries
                            .entry(entry.partition.clone())
                            .or_default()
                            .push(entry);
                    }
                }
                Err(err) => {
                    warn!(file = %file.display(), error = %err, "cannot read a journal left by an earlier process")
                }
            }
        }
        for list in entries.values_mut() {
            list.sort_by_key(|entry| entry.base_offset);
        }
        if !files.is_empty() {
            info!(
                files = files.len(),
                entries = count,
                partitions = entries.len(),
                "read acknowledgement journals left by an earlier process"
            );
        }
        LeftJournals {
            files,
            entries: Arc::new(entries),
        }
    }

    /// Removes the files read, once their entries are in the logs (and drops this copy of
    /// the entries).
    pub fn remove(self) {
        for file in &self.files {
            if let Err(err) = fs::remove_file(file) {
                warn!(file = %file.display(), error = %err, "cannot remove an old journal file");
            }
        }
    }
}

/// Appends the entries a partition's log lacks. Returns how many were appended; the caller
/// waits for the log to write them before the old journal goes away.
pub fn restore_partition(log: &PartitionLog, name: &str, entries: &[JournalEntry]) -> usize {
    let mut appended = 0usize;
    for entry in entries {
        match log.restore(entry) {
            Ok(Restored::Appended) => appended += 1,
            Ok(Restored::AlreadyInLog) => {}
            Ok(Restored::Gap) => {
                warn!(partition = name, entry_base_offset = %entry.base_offset, log_end_offset = %log.log_end_offset(), "journal entry does not continue the log; not restored");
                break;
            }
            Err(err) => {
                warn!(partition = name, entry_base_offset = %entry.base_offset, error = %err, "journal entry could not be appended");
                break;
            }
        }
    }
    appended
}

/// One shard's journal, if it has one.
#[derive(Debug, Default)]
pub struct ShardJournal {
    journal: RefCell<Option<AckJournal>>,
}

impl ShardJournal {
    /// Creates this shard's journal file when the configuration asks for one. Without it,
    /// acknowledgements wait for the disk write.
    pub fn start(&self, config: &BrokerConfig, shard: ShardId) {
        if !journal_enabled(config) {
            return;
        }
        let name = format!(
            "{}{}-{}",
            journal_prefix(&config.data_dir),
            std::process::id(),
            shard.0
        );
        let dir = &config.produce_ack_journal_dir;
        if let Err(err) = fs::create_dir_all(dir) {
            warn!(shard = %shard, dir = %dir.display(), error = %err, "cannot create the journal directory");
        }
        let path = dir.join(name);
        match AckJournal::create(&path, config.produce_ack_journal_bytes) {
            Ok(journal) => {
                info!(shard = %shard, file = %path.display(), bytes = config.produce_ack_journal_bytes, "acknowledgement journal ready");
                *self.journal.borrow_mut() = Some(journal);
            }
            Err(err) => warn!(
                shard = %shard, error = %err,
                "no acknowledgement journal: acks=1 answers wait for the disk write"
            ),
        }
    }

    /// Copies appended batches into the journal; false when there is no journal or no room
    /// (the answer must then wait for the write).
    pub fn record(
        &self,
        log: &PartitionLog,
        partition: &str,
        info: &vaart_engine::AppendInfo,
        leader_epoch: vaart_engine::LeaderEpoch,
        appended_at: vaart_engine::TimestampMs,
        records: &[u8],
    ) -> bool {
        let mut journal = self.journal.borrow_mut();
        let Some(journal) = journal.as_mut() else {
            return false;
        };
        journal.record(
            log,
            partition,
            info.base_offset,
            vaart_engine::Offset(info.last_offset.0 + 1),
            leader_epoch,
            appended_at,
            records,
        )
    }

    /// The journal's counters, if there is one.
    pub fn stats(&self) -> Option<JournalStats> {
        self.journal.borrow().as_ref().map(AckJournal::stats)
    }

    /// Removes the journal file after a clean shutdown closed (wrote) every log.
    pub fn remove(&self) {
        if let Some(journal) = self.journal.borrow_mut().take() {
            let path = journal.path().to_path_buf();
            if let Err(err) = journal.remove() {
                warn!(file = %path.display(), error = %err, "cannot remove the journal file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_files_are_named_after_the_canonical_data_dir() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        fs::create_dir_all(&data).expect("mkdir");
        let via_dot = tmp.path().join(".").join("data");
        assert_eq!(journal_prefix(&data), journal_prefix(&via_dot));
        assert_ne!(journal_prefix(&data), journal_prefix(tmp.path()));
        assert!(journal_prefix(&data).starts_with("vaart-journal-"));
    }

    #[test]
    fn the_journal_is_off_when_acks_wait_for_the_write_or_it_has_no_size() {
        let mut config = BrokerConfig::defaults();
        assert!(journal_enabled(&config));
        config.produce_ack_after_write = true;
        assert!(!journal_enabled(&config));
        config.produce_ack_after_write = false;
        config.produce_ack_journal_bytes = 0;
        assert!(!journal_enabled(&config));
        config.produce_ack_journal_bytes = 1 << 20;
        config.produce_ack_journal_dir = PathBuf::new();
        assert!(!journal_enabled(&config));
    }
}
