//! The leader epoch cache: (epoch, start offset) pairs, for OffsetForLeaderEpoch and follower
//! truncation. Rebuilt from batch headers on open; updated on append, truncation and retention.

use crate::types::{LeaderEpoch, Offset};

/// Epoch start offsets, strictly increasing in both fields. Bounded by the number of leader
/// changes the retained log has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EpochCache {
    entries: Vec<(LeaderEpoch, Offset)>,
}

impl EpochCache {
    /// Notes that batches of `epoch` start at `start_offset`. Negative epochs (unknown) and
    /// epochs below the latest are ignored.
    pub(crate) fn assign(&mut self, epoch: LeaderEpoch, start_offset: Offset) {
        if epoch.0 < 0 {
            return;
        }
        match self.entries.last() {
            Some(&(last, _)) if last >= epoch => {}
            _ => self.entries.push((epoch, start_offset)),
        }
    }

    /// The (epoch, start offset) pairs, oldest first.
    pub(crate) fn entries(&self) -> &[(LeaderEpoch, Offset)] {
        &self.entries
    }

    /// A cache of `entries`; None unless both fields strictly increase (as `assign` keeps them).
    pub(crate) fn from_entries(entries: Vec<(LeaderEpoch, Offset)>) -> Option<EpochCache> {
        let ordered = entries.iter().all(|(epoch, _)| epoch.0 >= 0)
            && entries
                .windows(2)
                .all(|pair| pair[0].0 < pair[1].0 && pair[0].1 < pair[1].1);
        ordered.then_some(EpochCache { entries })
    }

    /// Drops epochs that start at or after `log_end_offset` (after truncation).
    pub(crate) fn truncate_from_end(&mut self, log_end_offset: Offset) {
        self.entries.retain(|&(_, start)| start < log_end_offset);
    }

    /// Drops epochs entirely below `log_start_offset`; the epoch covering it starts there.
    pub(crate) fn truncate_from_start(&mut self, log_start_offset: Offset) {
        let covering = self
            .entries
            .partition_point(|&(_, start)| start <= log_start_offset);
        if covering > 1 {
            self.entries.drain(..covering - 1);
        }
        if let Some(first) = self.entries.first_mut() {
            if first.1 < log_start_offset {
                first.1 = log_start_offset;
            }
        }
    }

    /// Kafka's `endOffsetFor`: for the latest epoch, the log end offset; otherwise the start
    /// offset of the first higher epoch, paired with the largest epoch `<= epoch`.
    /// None when `epoch` is above every known epoch (or unknown).
    pub(crate) fn end_offset_for(
        &self,
        epoch: LeaderEpoch,
        log_end_offset: Offset,
    ) -> Option<(LeaderEpoch, Offset)> {
        if epoch.0 < 0 {
            return None;
        }
        let &(latest, _) = self.entries.last()?;
        if epoch == latest {
            return Some((epoch, log_end_offset));
        }
        let higher = self.entries.partition_point(|&(known, _)| known <= epoch);
        let &(_, higher_start) = self.entries.get(higher)?;
        match higher
            .checked_sub(1)
            .and_then(|floor| self.entries.get(floor))
        {
            Some(&(floor_epoch, _)) => Some((floor_epoch, higher_start)),
            None => Some((epoch, higher_start)),
        }
    }

    /// The latest epoch.
    pub(crate) fn latest(&self) -> Option<LeaderEpoch> {
        self.entries.last().map(|&(epoch, _)| epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offsets_follow_kafka() {
        let mut cache = EpochCache::default();
        cache.assign(LeaderEpoch(1), Offset(0));
        cache.assign(LeaderEpoch(1), Offset(5));
        cache.assign(LeaderEpoch(3), Offset(10));
        cache.assign(LeaderEpoch(2), Offset(12));
        cache.assign(LeaderEpoch(5), Offset(20));
        let leo = Offset(30);
        assert_eq!(
            cache.end_offset_for(LeaderEpoch(5), leo),
            Some((LeaderEpoch(5), leo))
        );
        assert_eq!(
            cache.end_offset_for(LeaderEpoch(3), leo),
            Some((LeaderEpoch(3), Offset(20)))
        );
        assert_eq!(
            cache.end_offset_for(LeaderEpoch(4), leo),
            Some((LeaderEpoch(3), Offset(20)))
        );
        assert_eq!(
            cache.end_offset_for(LeaderEpoch(0), leo),
            Some((LeaderEpoch(0), Offset(0)))
        );
        assert_eq!(cache.end_offset_for(LeaderEpoch(6), leo), None);

        cache.truncate_from_end(Offset(15));
        assert_eq!(cache.latest(), Some(LeaderEpoch(3)));
        cache.truncate_from_start(Offset(12));
        assert_eq!(
            cache.end_offset_for(LeaderEpoch(3), leo),
            Some((LeaderEpoch(3), leo))
        );
        assert_eq!(cache.entries, vec![(LeaderEpoch(3), Offset(12))]);
    }
}
