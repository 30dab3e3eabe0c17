//! Everything that removes data: retention (retention.ms / retention.bytes, whole segments
//! only, never the active one, only below the high watermark), DeleteRecords (moves the log
//! start offset) and follower truncation. Each operation changes the in-memory state
//! synchronously and queues file commands for the writer, which runs them in order; the
//! async wrappers in `log.rs` wait for those commands.

use crate::{
    error::LogError,
    log::{RetentionReport, State},
    segment::{Phase, Segment},
    types::{Offset, TimestampMs},
    writer::Command,
};

impl State {
    /// Removes the sealed segments at the front that `should_delete` selects (stopping at the
    /// first one it keeps, at the active segment, and at the first segment that reaches above
    /// the high watermark). Moves the log start offset up to the new first segment and queues
    /// the checkpoint (first) and the file deletions. Returns the last command sequence.
    fn delete_front_segments(
        &mut self,
        mut should_delete: impl FnMut(&Segment) -> bool,
        report: &mut RetentionReport,
    ) -> u64 {
        let mut removed = Vec::new();
        while self.segments.len() > 1 {
            let Some(front) = self.segments.front() else {
                break;
            };
            if front.phase != Phase::Sealed
                || front.next_offset > self.high_watermark
                || !should_delete(front)
            {
                break;
            }
            if let Some(segment) = self.segments.pop_front() {
                removed.push(segment);
            }
        }
        let mut last_seq = 0;
        if removed.is_empty() {
            return last_seq;
        }
        let first_base = self.active_first_base();
        if first_base > self.log_start_offset {
            self.log_start_offset = first_base;
            self.epochs.truncate_from_start(first_base);
            last_seq = self.push_command(Command::WriteLogStart { offset: first_base });
        }
        let first_id = self.segments.front().map(|segment| segment.id).unwrap_or(0);
        while let Some(entry) = self.tail.front() {
            if entry.segment_id >= first_id {
                break;
            }
            self.tail_bytes -= entry.bytes.len();
            self.tail.pop_front();
        }
        for segment in removed {
            tracing::info!(
                dir = %self.dir.display(),
                base_offset = %segment.base_offset,
                bytes = segment.len,
                "deleting segment"
            );
            report.deleted_segments += 1;
            report.deleted_bytes += segment.len;
            report.deleted_base_offsets.push(segment.base_offset);
            last_seq = self.push_command(Command::DeleteSegment {
                paths: segment.paths,
                file: segment.file,
            });
        }
        last_seq
    }

    fn active_first_base(&self) -> Offset {
        self.segments
            .front()
            .map(|segment| segment.base_offset)
            .unwrap_or(self.log_end_offset)
    }

    /// retention.ms, retention.bytes, segments below the log start offset, and the
    /// segment.ms roll. Returns the last queued command's sequence number (0 if none).
    pub(crate) fn enforce_retention(
        &mut self,
        now: TimestampMs,
    ) -> Result<(u64, RetentionReport), LogError> {
        self.check_usable()?;
        let mut report = RetentionReport::default();
        let segment_ms = self.config.segment_ms;
        let active = self.active();
        let roll_due = active
            .roll_started_at
            .map(|started| now.0.saturating_sub(started.0) >= segment_ms)
            .unwrap_or(false);
        if roll_due && self.roll_if_not_empty() {
            report.rolled = true;
        }
        let retention_ms = self.config.retention_ms;
        let retention_bytes = self.config.retention_bytes;
        let log_start_offset = self.log_start_offset;
        let mut size: u64 = self.segments.iter().map(|segment| segment.len).sum();
        let seq = self.delete_front_segments(
            |segment| {
                let below_start = segment.next_offset <= log_start_offset;
                let expired = retention_ms >= 0
                    && now.0.saturating_sub(segment.max_timestamp.0) > retention_ms;
                let oversize = u64::try_from(retention_bytes)
                    .map(|limit| size.saturating_sub(segment.len) >= limit)
                    .unwrap_or(false);
                let delete = below_start || expired || oversize;
                if delete {
                    size -= segment.len;
                }
                delete
            },
            &mut report,
        );
        report.log_start_offset = self.log_start_offset;
        Ok((seq, report))
    }

    /// DeleteRecords: moves the log start offset to `offset` (at most the high watermark),
    /// persists it, and deletes whole segments below it.
    pub(crate) fn delete_records_before(
        &mut self,
        offset: Offset,
    ) -> Result<(u64, Offset), LogError> {
        self.check_usable()?;
        if offset > self.high_watermark {
            return Err(LogError::InvalidOffset {
                requested: offset,
                limit: self.high_watermark,
            });
        }
        if offset <= self.log_start_offset {
            return Ok((0, self.log_start_offset));
        }
        self.log_start_offset = offset;
        self.epochs.truncate_from_start(offset);
        let mut seq = self.push_command(Command::WriteLogStart { offset });
        let mut report = RetentionReport::default();
        let deleted =
            self.delete_front_segments(|segment| segment.next_offset <= offset, &mut report);
        seq = seq.max(deleted);
        Ok((seq, self.log_start_offset))
    }

    /// Follower truncation: removes everything at and after the batch containing `offset`.
    /// Returns the last queued command's sequence number (0 if nothing to do).
    pub(crate) fn truncate_to(&mut self, offset: Offset) -> Result<u64, LogError> {
        self.check_usable()?;
        if offset >= self.log_end_offset {
            return Ok(0);
        }
        let first_base = self.active_first_base();
        let mut last_seq = 0;
        if offset < first_base {
            // Nothing to keep: restart the log empty at `offset` (Kafka's
            // truncateFullyAndStartAt). Checkpoint first so a crash cannot resurrect data.
            last_seq = self.push_command(Command::WriteLogStart { offset });
            while let Some(segment) = self.segments.pop_front() {
                last_seq = self.push_command(Command::DeleteSegment {
                    paths: segment.paths,
                    file: segment.file,
                });
            }
            let id = self.next_segment_id;
            self.next_segment_id += 1;
            self.segments.push_back(Segment::new(id, &self.dir, offset));
            self.tail.clear();
            self.tail_bytes = 0;
            self.epochs = Default::default();
            self.log_start_offset = offset;
            self.log_end_offset = offset;
            self.high_watermark = offset;
        } else {
            let keep = self
                .segments
                .partition_point(|segment| segment.base_offset <= offset)
                .saturating_sub(1);
            while self.segments.len() > keep + 1 {
                if let Some(segment) = self.segments.pop_back() {
                    last_seq = self.push_command(Command::DeleteSegment {
                        paths: segment.paths,
                        file: segment.file,
                    });
                }
            }
            let segment = self
                .segments
                .back_mut()
                .ok_or(LogError::Invariant("no segment to truncate"))?;
            let (new_end, cut) = match segment.batch_containing(offset) {
                Some(batch) => {
                    let (base, _, position, _) = segment
                        .batch_bounds(batch)
                        .ok_or(LogError::Invariant("batch bounds"))?;
                    segment.index.truncate(batch);
                    (base, position)
                }
                None => (segment.next_offset, segment.len),
            };
            if let Some(relative) = segment.relative(new_end) {
                segment.time_index.truncate_from_offset(relative);
            }
            segment.len = cut;
            segment.next_offset = new_end;
            segment.phase = Phase::Active;
            segment.written = segment.written.min(cut);
            segment.staged = segment.staged.min(cut);
            // The max timestamp is kept (it may now overestimate): retention then errs on the
            // side of keeping data. Recovery recomputes it exactly.
            segment.bytes_since_time_entry = match segment.time_index.last() {
                Some(entry) => {
                    let end_of_entry_batch = segment
                        .index
                        .lookup(entry.relative_offset)
                        .and_then(|batch| segment.batch_bounds(batch))
                        .map(|(_, _, _, end)| end)
                        .unwrap_or(cut);
                    cut.saturating_sub(end_of_entry_batch)
                }
                None => cut,
            };
            let segment_id = segment.id;
            segment.allocated = segment.allocated.min(cut);
            segment.read_ahead.invalidate();
            if let Some(file) = segment.file.clone() {
                last_seq = self.push_command(Command::TruncateFile { file, len: cut });
            }
            while let Some(entry) = self.tail.back_mut() {
                if entry.segment_id < segment_id
                    || (entry.segment_id == segment_id && entry.end() <= cut)
                {
                    break;
                }
                if entry.segment_id == segment_id && entry.position < cut {
                    let keep_bytes = (cut - entry.position) as usize;
                    self.tail_bytes -= entry.bytes.len() - keep_bytes;
                    entry.bytes.truncate(keep_bytes);
                    entry.next_offset = new_end;
                    break;
                }
                self.tail_bytes -= entry.bytes.len();
                self.tail.pop_back();
            }
            self.log_end_offset = new_end;
            self.high_watermark = self.high_watermark.min(new_end);
            self.log_start_offset = self.log_start_offset.min(new_end);
            self.epochs.truncate_from_end(new_end);
        }
        let log_end_offset = self.log_end_offset;
        // Writes still in flight belong to the old generation and are not applied when they
        // complete: whatever was only issued is issued again (it is still in the hot tail).
        for segment in self.segments.iter_mut() {
            segment.staged = segment.written;
        }
        self.writer.generation += 1;
        self.writer.tail_page_segment = None;
        self.writer.tail_page.clear();
        self.writer.synced_offset = self.writer.synced_offset.min(log_end_offset);
        self.writer.flush_requested = self.writer.flush_requested.min(log_end_offset);
        self.writer.write_requested = self.writer.write_requested.min(log_end_offset);
        self.writer.unwritten_bytes = self
            .segments
            .iter()
            .map(|segment| segment.len.saturating_sub(segment.written))
            .sum();
        self.recompute_written_through();
        tracing::info!(dir = %self.dir.display(), offset = %offset, log_end_offset = %log_end_offset, "truncated log");
        Ok(last_seq)
    }
}
