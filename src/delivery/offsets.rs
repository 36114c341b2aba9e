//! Which offset each Kafka partition may commit.
//!
//! With one buffer per partition, committing a batch's last offset + 1 would
//! do. With dynamic partitioning and error buffers, one partition's records
//! spread over many buffers that land in any order, so the commit point is the
//! lowest offset of that partition still waiting to land (or, if none waits,
//! one past the highest offset read). Sub-records of one Kafka record
//! (de-aggregation) share its offset and are counted.

use std::collections::{BTreeMap, VecDeque};

#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: BTreeMap<i32, PartitionOffsets>,
}

#[derive(Debug, Default)]
struct PartitionOffsets {
    /// Records of each offset not landed yet, from `base` on. Dense, because
    /// Kafka offsets are: the few gaps (transaction markers, compaction)
    /// count 0 like landed records. 4 bytes per offset until it lands, and
    /// landing is an index, not a search.
    pending: VecDeque<u32>,
    /// The offset of `pending[0]`, which is never 0 when there is one.
    base: i64,
    /// One past the highest offset read.
    next: i64,
    /// Last offset committed (or handed to the commit).
    committed: Option<i64>,
}

impl PartitionOffsets {
    fn slot(&mut self, offset: i64) -> Option<&mut u32> {
        let index = usize::try_from(offset - self.base).ok()?;
        self.pending.get_mut(index)
    }

    fn drop_landed_front(&mut self) {
        while self.pending.front() == Some(&0) {
            self.pending.pop_front();
            self.base += 1;
        }
    }
}

impl OffsetTracker {
    /// A Kafka record was read and became `records` buffered records (0 if it
    /// was skipped or empty).
    pub fn read(&mut self, partition: i32, offset: i64, records: usize) {
        let p = self.partitions.entry(partition).or_default();
        p.next = p.next.max(offset + 1);
        if records == 0 {
            return;
        }
        let records = u32::try_from(records).unwrap_or(u32::MAX);
        if p.pending.is_empty() {
            p.base = offset;
        } else if offset < p.base {
            // Read again (the consumer reset its position): wait for both.
            for _ in offset..p.base {
                p.pending.push_front(0);
            }
            p.base = offset;
        }
        let index = (offset - p.base) as usize;
        if index >= p.pending.len() {
            p.pending.resize(index + 1, 0);
        }
        p.pending[index] = p.pending[index].saturating_add(records);
    }

    /// One buffered record of `offset` landed.
    pub fn landed(&mut self, partition: i32, offset: i64) {
        self.landed_in_order(partition, [offset]);
    }

    /// Records of `partition` landed (one object's).
    pub fn landed_in_order(&mut self, partition: i32, offsets: impl IntoIterator<Item = i64>) {
        let Some(p) = self.partitions.get_mut(&partition) else { return };
        for offset in offsets {
            if let Some(n) = p.slot(offset) {
                *n = n.saturating_sub(1);
            }
        }
        p.drop_landed_front();
    }

    /// The offset to commit for `partition` if it moved since the last call.
    pub fn advance(&mut self, partition: i32) -> Option<i64> {
        let p = self.partitions.get_mut(&partition)?;
        let point = if p.pending.is_empty() { p.next } else { p.base };
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
        /// Landing an object's offsets in one call is the same as landing
        /// them one by one, in order or not.
        #[test]
        fn landing_in_order_matches_landing_one_by_one(
            reads in prop::collection::vec((0i64..4, 1usize..3), 1..80),
            objects in prop::collection::vec(prop::collection::vec(any::<prop::sample::Index>(), 0..20), 0..8),
        ) {
            let (mut one, mut many) = (OffsetTracker::default(), OffsetTracker::default());
            let mut offset = 0;
            let mut read = Vec::new();
            for (gap, records) in reads {
                offset += gap;
                one.read(0, offset, records);
                many.read(0, offset, records);
                read.push(offset);
            }
            for picks in objects {
                let mut offsets: Vec<i64> = picks.iter().map(|i| read[i.index(read.len())]).collect();
                offsets.sort_unstable();
                for o in &offsets {
                    one.landed(0, *o);
                }
                many.landed_in_order(0, offsets);
                prop_assert_eq!(one.advance(0), many.advance(0));
            }
            prop_assert_eq!(&one.partitions[&0].pending, &many.partitions[&0].pending);
        }

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
