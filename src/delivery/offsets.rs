//! Which offset each Kafka partition may commit.
//!
//! With one buffer per partition, committing a batch's last offset + 1 would
//! do. With dynamic partitioning and error buffers, one partition's records
//! spread over many buffers that land in any order, so the commit point is the
//! lowest offset of that partition still waiting to land (or, if none waits,
//! one past the highest offset read). Sub-records of one Kafka record
//! (de-aggregation) share its offset and are counted.

use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: BTreeMap<i32, PartitionOffsets>,
}

#[derive(Debug, Default)]
struct PartitionOffsets {
    /// Offset -> records of it not landed yet.
    pending: BTreeMap<i64, usize>,
    /// One past the highest offset read.
    next: i64,
    /// Last offset committed (or handed to the commit).
    committed: Option<i64>,
}

impl OffsetTracker {
    /// A Kafka record was read and became `records` buffered records (0 if it
    /// was skipped or empty).
    pub fn read(&mut self, partition: i32, offset: i64, records: usize) {
        let p = self.partitions.entry(partition).or_default();
        p.next = p.next.max(offset + 1);
        if records > 0 {
            *p.pending.entry(offset).or_default() += records;
        }
    }

    /// One buffered record of `offset` landed.
    pub fn landed(&mut self, partition: i32, offset: i64) {
        let Some(p) = self.partitions.get_mut(&partition) else { return };
        if let Some(n) = p.pending.get_mut(&offset) {
            *n -= 1;
            if *n == 0 {
                p.pending.remove(&offset);
            }
        }
    }

    /// The offset to commit for `partition` if it moved since the last call.
    pub fn advance(&mut self, partition: i32) -> Option<i64> {
        let p = self.partitions.get_mut(&partition)?;
        let point = p.pending.keys().next().copied().unwrap_or(p.next);
        if p.committed.is_some_and(|c| c >= point) {
            return None;
        }
        p.committed = Some(point);
        Some(point)
    }

    /// Forgets partitions this instance no longer owns.
    pub fn forget(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.partitions.remove(p);
        }
    }

    /// The committed position of every partition, for the final commit.
    pub fn committed(&self) -> BTreeMap<i32, i64> {
        self.partitions.iter().filter_map(|(p, o)| o.committed.map(|c| (*p, c))).collect()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn commit_point_waits_for_the_lowest_unlanded_offset() {
        let mut t = OffsetTracker::default();
        for offset in 0..4 {
            t.read(0, offset, 1);
        }
        t.landed(0, 1);
        t.landed(0, 3);
        assert_eq!(t.advance(0), Some(0));
        t.landed(0, 0);
        assert_eq!(t.advance(0), Some(2));
        assert_eq!(t.advance(0), None);
        t.landed(0, 2);
        assert_eq!(t.advance(0), Some(4));
    }

    #[test]
    fn sub_records_and_skipped_records() {
        let mut t = OffsetTracker::default();
        t.read(0, 0, 0); // skipped: nothing to wait for
        t.read(0, 1, 2); // de-aggregated into two
        t.landed(0, 1);
        assert_eq!(t.advance(0), Some(1));
        t.landed(0, 1);
        assert_eq!(t.advance(0), Some(2));
    }

    proptest! {
        /// Whatever order records land in, the commit point never passes a
        /// record that has not landed, and reaches the end once all have.
        #[test]
        fn never_commits_past_an_unlanded_record(order in Just((0..60i64).collect::<Vec<_>>()).prop_shuffle()) {
            let mut t = OffsetTracker::default();
            for offset in 0..60 {
                t.read(3, offset, 1);
            }
            let mut landed = std::collections::BTreeSet::new();
            for offset in order {
                t.landed(3, offset);
                landed.insert(offset);
                if let Some(point) = t.advance(3) {
                    prop_assert!((0..point).all(|o| landed.contains(&o)));
                }
            }
            prop_assert_eq!(t.committed().get(&3).copied(), Some(60));
        }
    }
}
