//! Buffering for the function: records gather until the processor's
//! `BufferSizeInMBs` or `BufferIntervalInSeconds` (on the injected clock),
//! then wait their turn to be invoked, one batch at a time so results
//! reach routing in offset order. Sans-IO, like the core it feeds.

use std::collections::{BTreeMap, VecDeque};

use super::Pending;
use crate::record::Record;
use crate::spec::BufferHints;

/// Records waiting for the function.
#[derive(Debug)]
pub struct Stage {
    hints: BufferHints,
    /// Per-stream sequence: record ids are unique within a stream's run.
    next_seq: u64,
    open: Vec<Pending>,
    open_bytes: u64,
    opened_at_ms: i64,
    queue: VecDeque<Vec<Pending>>,
    /// Bytes open and queued (not the batch being invoked).
    held_bytes: u64,
    /// Bumped when a partition is revoked: results for records taken before
    /// are stale (the new owner reads them again).
    epochs: BTreeMap<i32, u64>,
}

impl Stage {
    pub fn new(hints: BufferHints) -> Self {
        Stage {
            hints,
            next_seq: 0,
            open: Vec::new(),
            open_bytes: 0,
            opened_at_ms: 0,
            queue: VecDeque::new(),
            held_bytes: 0,
            epochs: BTreeMap::new(),
        }
    }

    /// A record read from Kafka at `now_ms`.
    pub fn push(&mut self, record: Record, now_ms: i64) {
        if self.open.is_empty() {
            self.opened_at_ms = now_ms;
        }
        let id = format!("{:030}{:016}{:016}", self.next_seq, record.partition, record.offset);
        self.next_seq += 1;
        let bytes = record.value.len() as u64;
        let epoch = self.epoch(record.partition);
        self.open.push(Pending { id, record, epoch });
        self.open_bytes += bytes;
        self.held_bytes += bytes;
        if self.open_bytes >= self.hints.size_bytes {
            self.cut();
        }
    }

    /// Queues the open batch if its interval has passed at `now_ms`.
    pub fn on_tick(&mut self, now_ms: i64) {
        if !self.open.is_empty() && now_ms - self.opened_at_ms >= self.hints.interval.as_millis() as i64 {
            self.cut();
        }
    }

    /// Queues the open batch now (a flush, or shutdown).
    pub fn drain(&mut self) {
        if !self.open.is_empty() {
            self.cut();
        }
    }

    fn cut(&mut self) {
        self.queue.push_back(std::mem::take(&mut self.open));
        self.open_bytes = 0;
    }

    /// The next batch to invoke the function with.
    pub fn take(&mut self) -> Option<Vec<Pending>> {
        let batch = self.queue.pop_front()?;
        self.held_bytes -= batch.iter().map(|p| p.record.value.len() as u64).sum::<u64>();
        Some(batch)
    }

    /// Batches waiting (not counting the open one).
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty() && self.queue.is_empty()
    }

    pub fn held_bytes(&self) -> u64 {
        self.held_bytes
    }

    pub fn records(&self) -> usize {
        self.open.len() + self.queue.iter().map(Vec::len).sum::<usize>()
    }

    fn epoch(&self, partition: i32) -> u64 {
        self.epochs.get(&partition).copied().unwrap_or(0)
    }

    /// Whether a record taken at `epoch` still belongs to this instance.
    pub fn is_current(&self, pending: &Pending) -> bool {
        self.epoch(pending.record.partition) == pending.epoch
    }

    /// Forgets the records of revoked partitions; results still to come for
    /// them are stale.
    pub fn on_revoked(&mut self, partitions: &[i32]) {
        for p in partitions {
            *self.epochs.entry(*p).or_default() += 1;
        }
        let mut dropped = 0;
        let mut keep = |batch: &mut Vec<Pending>| {
            batch.retain(|p| {
                let stays = !partitions.contains(&p.record.partition);
                if !stays {
                    dropped += p.record.value.len() as u64;
                }
                stays
            })
        };
        keep(&mut self.open);
        self.queue.iter_mut().for_each(&mut keep);
        self.queue.retain(|b| !b.is_empty());
        self.open_bytes = self.open.iter().map(|p| p.record.value.len() as u64).sum();
        self.held_bytes -= dropped;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;

    fn record(partition: i32, offset: i64, len: usize) -> Record {
        Record { partition, offset, timestamp_ms: 0, value: Bytes::from(vec![b'x'; len]) }
    }

    fn stage() -> Stage {
        Stage::new(BufferHints { size_bytes: 1000, interval: Duration::from_secs(60) })
    }

    #[test]
    fn batches_cut_at_the_size_or_the_interval() {
        let mut s = stage();
        s.push(record(0, 0, 600), 0);
        s.push(record(0, 1, 600), 10);
        assert_eq!(s.queued(), 1, "1,200 bytes reach the 1,000-byte hint");
        s.push(record(1, 0, 10), 1_000);
        s.on_tick(60_999);
        assert_eq!(s.queued(), 1);
        s.on_tick(61_000);
        assert_eq!(s.queued(), 2, "60 s after its first record");
        assert_eq!(s.take().unwrap().len(), 2);
        assert_eq!(s.take().unwrap().len(), 1);
        assert!(s.is_empty());
        assert_eq!(s.held_bytes(), 0);
    }

    #[test]
    fn record_ids_are_unique_and_ordered() {
        let mut s = stage();
        for offset in 0..3 {
            s.push(record(0, offset, 1), 0);
            s.push(record(1, offset, 1), 0);
        }
        s.drain();
        let ids: Vec<String> = s.take().unwrap().into_iter().map(|p| p.id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(ids, sorted);
        assert!(ids.iter().all(|id| id.len() == 62));
    }

    #[test]
    fn revocation_forgets_records_and_marks_results_stale() {
        let mut s = stage();
        s.push(record(0, 0, 10), 0);
        s.push(record(1, 0, 10), 0);
        s.drain();
        let taken = s.take().unwrap();
        s.push(record(0, 1, 10), 0);
        s.push(record(1, 1, 10), 0);
        s.on_revoked(&[1]);
        assert!(s.is_current(&taken[0]));
        assert!(!s.is_current(&taken[1]));
        assert_eq!(s.records(), 1);
        assert_eq!(s.held_bytes(), 10);
    }
}
