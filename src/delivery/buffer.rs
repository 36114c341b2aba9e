//! Buffering: which records go into which object, and when an object is due.
//!
//! Pure logic with time passed in, so proptests drive it under any clock
//! without a broker. Firehose keeps one buffer per Kafka partition (or, with
//! dynamic partitioning, per evaluated prefix; error records get buffers of
//! their own) and delivers it when the first of two hints is reached:
//! `SizeInMBs` or `IntervalInSeconds` since the buffer's first record.

use std::collections::BTreeMap;

use crate::spec::BufferHints;

pub use crate::record::Record;

/// Which buffer a record goes to; one buffer becomes one object at a time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BufferKey {
    /// Without dynamic partitioning: the Kafka partition.
    Partition(i32),
    /// With dynamic partitioning: the prefix evaluated for the record (random
    /// strings still unevaluated; they are drawn per object).
    Prefix(String),
    /// Records that go to the error prefix, by error-output-type.
    Error(&'static str),
}

/// Records that will become one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub key: BufferKey,
    pub records: Vec<Record>,
    /// Bytes the records occupy in the object before compression, including
    /// delimiters.
    pub bytes: u64,
    /// Clock time the first record entered the buffer; the interval counts
    /// from here.
    pub opened_at_ms: i64,
}

impl Batch {
    /// What identifies this object among a stream's objects, whatever order
    /// objects are cut in: its buffer, its first record and its size.
    pub fn identity(&self) -> Vec<u8> {
        let first = self.records.first().map_or((0, 0), |r| (r.partition, r.offset));
        format!("{:?}|{}|{}|{}", self.key, first.0, first.1, self.records.len()).into_bytes()
    }

    /// Timestamp of the oldest record: the instant of the key's prefix.
    pub fn oldest_timestamp_ms(&self) -> i64 {
        self.records.iter().map(|r| r.timestamp_ms).min().expect("batches are never empty")
    }
}

/// Keyed buffers under one set of hints.
#[derive(Debug)]
pub struct Buffers {
    hints: BufferHints,
    /// Extra bytes each data record takes in its object (1 with
    /// `AppendDelimiterToRecord`); error records carry their own newline.
    per_record_overhead: u64,
    open: BTreeMap<BufferKey, Open>,
    /// Sum of `bytes` over `open`, kept as buffers change: it is checked
    /// against the memory bound on every record.
    total: u64,
    /// Open prefix buffers, checked against the active-partition limit on
    /// every record.
    prefixes: usize,
}

/// An open buffer, with what is asked of it on every tick kept up to date
/// rather than recomputed over its records.
#[derive(Debug)]
struct Open {
    batch: Batch,
    oldest_ms: i64,
}

impl Buffers {
    pub fn new(hints: BufferHints, per_record_overhead: u64) -> Self {
        Self { hints, per_record_overhead, open: BTreeMap::new(), total: 0, prefixes: 0 }
    }

    /// Bytes a record takes in its object before compression.
    fn size(&self, key: &BufferKey, record: &Record) -> u64 {
        let overhead = if matches!(key, BufferKey::Error(_)) { 0 } else { self.per_record_overhead };
        record.value.len() as u64 + overhead
    }

    /// Dynamic partitions open now (Firehose's "active partitions"): prefix
    /// buffers, not the per-Kafka-partition or error buffers.
    pub fn partition_count(&self) -> usize {
        self.prefixes
    }

    pub fn is_open(&self, key: &BufferKey) -> bool {
        self.open.contains_key(key)
    }

    /// Adds a record; returns the batches that became due by size.
    ///
    /// A record that would push its buffer past `SizeInMBs` first closes the
    /// buffer, so no object exceeds the size hint unless it holds a single
    /// record larger than the hint.
    pub fn push(&mut self, key: BufferKey, record: Record, now_ms: i64) -> Vec<Batch> {
        let mut due = Vec::new();
        let size = self.size(&key, &record);
        let timestamp = record.timestamp_ms;
        // One lookup for the usual record (its buffer open, with room): with
        // many prefixes each lookup compares long, mostly shared strings.
        let open = match self.open.get_mut(&key) {
            Some(open) if open.batch.bytes + size <= self.hints.size_bytes => open,
            Some(_) => {
                due.extend(self.remove(&key));
                self.open_buffer(key.clone(), timestamp, now_ms)
            }
            None => self.open_buffer(key.clone(), timestamp, now_ms),
        };
        open.oldest_ms = open.oldest_ms.min(timestamp);
        open.batch.bytes += size;
        open.batch.records.push(record);
        let full = open.batch.bytes >= self.hints.size_bytes;
        self.total += size;
        if full {
            due.extend(self.remove(&key));
        }
        due
    }

    /// A new, empty buffer for `key`, which has none open.
    fn open_buffer(&mut self, key: BufferKey, oldest_ms: i64, now_ms: i64) -> &mut Open {
        self.prefixes += usize::from(matches!(key, BufferKey::Prefix(_)));
        let batch = Batch { key: key.clone(), records: Vec::new(), bytes: 0, opened_at_ms: now_ms };
        self.open.entry(key).or_insert(Open { batch, oldest_ms })
    }

    /// Batches whose interval has elapsed at `now_ms`.
    pub fn due(&mut self, now_ms: i64) -> Vec<Batch> {
        let interval_ms = self.hints.interval.as_millis() as i64;
        let ready: Vec<BufferKey> = self
            .open
            .values()
            .filter(|o| now_ms - o.batch.opened_at_ms >= interval_ms)
            .map(|o| o.batch.key.clone())
            .collect();
        ready.into_iter().filter_map(|k| self.remove(&k)).collect()
    }

    /// Everything buffered, for shutdown.
    pub fn drain(&mut self) -> Vec<Batch> {
        self.total = 0;
        self.prefixes = 0;
        std::mem::take(&mut self.open).into_values().map(|o| o.batch).collect()
    }

    /// Drops the records of Kafka partitions this instance no longer owns;
    /// they are uncommitted, so the new owner re-reads them. Returns how many
    /// were dropped.
    pub fn discard(&mut self, partitions: &[i32]) -> usize {
        let mut dropped = 0;
        let keys: Vec<BufferKey> = self.open.keys().cloned().collect();
        for key in keys {
            let mut batch = self.remove(&key).expect("key listed");
            let before = batch.records.len();
            batch.records.retain(|r| !partitions.contains(&r.partition));
            dropped += before - batch.records.len();
            batch.bytes = batch.records.iter().map(|r| self.size(&key, r)).sum();
            if !batch.records.is_empty() {
                self.total += batch.bytes;
                self.prefixes += usize::from(matches!(key, BufferKey::Prefix(_)));
                let oldest_ms = batch.oldest_timestamp_ms();
                self.open.insert(key, Open { batch, oldest_ms });
            }
        }
        dropped
    }

    /// Bytes buffered per buffer, for progress and metrics.
    pub fn buffered_bytes(&self) -> BTreeMap<BufferKey, u64> {
        self.open.iter().map(|(k, o)| (k.clone(), o.batch.bytes)).collect()
    }

    /// Records held across all buffers.
    pub fn record_count(&self) -> usize {
        self.open.values().map(|o| o.batch.records.len()).sum()
    }

    /// Bytes held across all buffers.
    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// Removes a buffer, keeping the total right.
    fn remove(&mut self, key: &BufferKey) -> Option<Batch> {
        let open = self.open.remove(key)?;
        self.total -= open.batch.bytes;
        self.prefixes -= usize::from(matches!(key, BufferKey::Prefix(_)));
        Some(open.batch)
    }

    /// Removes and returns the fullest buffer, to deliver early for the memory
    /// bound.
    pub fn take_largest(&mut self) -> Option<Batch> {
        let key = self.open.values().max_by_key(|o| o.batch.bytes)?.batch.key.clone();
        self.remove(&key)
    }

    /// Timestamp of the oldest buffered record, for `DataFreshness`.
    pub fn oldest_record_ms(&self) -> Option<i64> {
        self.open.values().map(|o| o.oldest_ms).min()
    }

    /// Clock time the oldest open buffer opened; the interval deadline of
    /// the next buffer to fall due.
    pub fn oldest_open_ms(&self) -> Option<i64> {
        self.open.values().map(|o| o.batch.opened_at_ms).min()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use std::collections::BTreeMap;
    use std::time::Duration;

    use proptest::prelude::*;
    use rstest::rstest;

    use super::*;
    use crate::spec::MIB;

    fn record(partition: i32, offset: i64, timestamp_ms: i64, len: usize) -> Record {
        Record { partition, offset, timestamp_ms, value: Bytes::from(vec![b'x'; len]) }
    }

    fn hints(size_mb: u64, interval_s: u64) -> BufferHints {
        BufferHints { size_bytes: size_mb * MIB, interval: Duration::from_secs(interval_s) }
    }

    /// The buffer hints decide when an object is cut.
    #[rstest]
    // 5 MiB / 300 s (the defaults): 300 one-KiB records neither fill nor age the buffer.
    #[case::defaults_neither_limit(hints(5, 300), 1024, 300, 299, 0)]
    #[case::defaults_interval_reached(hints(5, 300), 1024, 300, 300, 1)]
    // 1 MiB: 1024 one-KiB records fill it exactly, the 1025th opens a new one.
    #[case::size_reached_exactly(hints(1, 900), 1024, 1024, 0, 1)]
    #[case::size_then_interval(hints(1, 900), 1024, 1025, 900, 2)]
    // Interval 0: everything buffered is due at the next tick.
    #[case::zero_interval(hints(1, 0), 10, 5, 0, 1)]
    // A record larger than the hint is delivered alone, never dropped or split.
    #[case::oversized_record_alone(hints(1, 900), 2 * 1024 * 1024, 1, 0, 1)]
    fn hints_decide_when_objects_are_cut(
        #[case] hints: BufferHints,
        #[case] record_len: usize,
        #[case] records: i64,
        #[case] advance_s: i64,
        #[case] expected_objects: usize,
    ) {
        let mut buffers = Buffers::new(hints, 0);
        let mut objects = Vec::new();
        for offset in 0..records {
            objects.extend(buffers.push(BufferKey::Partition(0), record(0, offset, 0, record_len), 0));
        }
        objects.extend(buffers.due(advance_s * 1000));
        assert_eq!(objects.len(), expected_objects);
        let landed: usize = objects.iter().map(|b| b.records.len()).sum::<usize>()
            + buffers.drain().iter().map(|b| b.records.len()).sum::<usize>();
        assert_eq!(landed as i64, records);
    }

    #[test]
    fn delimiter_counts_towards_size() {
        let mut buffers = Buffers::new(hints(1, 900), 1);
        // 1023 bytes + 1 delimiter = 1 KiB per record: 1024 fill the buffer.
        let mut due = Vec::new();
        for offset in 0..1024 {
            due.extend(buffers.push(BufferKey::Partition(0), record(0, offset, 0, 1023), 0));
        }
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].bytes, MIB);
    }

    #[test]
    fn interval_counts_from_first_record_per_partition() {
        let mut buffers = Buffers::new(hints(5, 60), 0);
        buffers.push(BufferKey::Partition(0), record(0, 0, 0, 10), 0);
        buffers.push(BufferKey::Partition(1), record(1, 0, 0, 10), 30_000);
        let due = buffers.due(60_000);
        assert_eq!(due.iter().map(|b| b.key.clone()).collect::<Vec<_>>(), [BufferKey::Partition(0)]);
        let due = buffers.due(90_000);
        assert_eq!(due.iter().map(|b| b.key.clone()).collect::<Vec<_>>(), [BufferKey::Partition(1)]);
    }

    #[test]
    fn discarding_revoked_partitions_keeps_sizes_exact() {
        let mut buffers = Buffers::new(hints(5, 60), 1);
        let key = BufferKey::Prefix("p/".into());
        buffers.push(key.clone(), record(0, 0, 0, 10), 0);
        buffers.push(key.clone(), record(1, 0, 0, 20), 0);
        buffers.push(BufferKey::Partition(1), record(1, 1, 0, 5), 0);
        assert_eq!(buffers.discard(&[1]), 2);
        assert_eq!(buffers.buffered_bytes(), BTreeMap::from([(key, 11)]));
        assert_eq!(buffers.total_bytes(), 11);
    }

    /// One step of a run: a record arrives on a partition after some time, or
    /// time passes with nothing arriving.
    #[derive(Debug, Clone)]
    enum Step {
        Record { partition: i32, len: usize, ts_jitter_ms: i64 },
        Tick { millis: i64 },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0..4i32, 0usize..300_000, -5_000i64..5_000).prop_map(|(partition, len, ts_jitter_ms)| Step::Record { partition, len, ts_jitter_ms }),
            1 => (0i64..400_000).prop_map(|millis| Step::Tick { millis }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// Under any arrival pattern and hints: every record lands exactly
        /// once, in offset order within its partition; no object exceeds the
        /// size hint unless it holds one record; no object stays open longer
        /// than the interval past a tick; batches of one partition are cut in
        /// order so committing each batch's next offset never skips a record.
        #[test]
        fn every_record_lands_once_within_hints(
            steps in prop::collection::vec(step(), 1..400),
            size_mb in 1u64..4,
            interval_s in 0u64..900,
        ) {
            let hints = hints(size_mb, interval_s);
            let mut buffers = Buffers::new(hints, 1);
            let mut now = 1_783_951_200_000i64;
            let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
            let mut objects = Vec::new();
            for step in steps {
                match step {
                    Step::Record { partition, len, ts_jitter_ms } => {
                        let offset = next_offset.entry(partition).or_default();
                        let rec = record(partition, *offset, now + ts_jitter_ms, len);
                        objects.extend(buffers.push(BufferKey::Partition(partition), rec, now));
                        *offset += 1;
                    }
                    Step::Tick { millis } => {
                        now += millis;
                        objects.extend(buffers.due(now));
                        if let Some(opened) = buffers.oldest_open_ms() {
                            prop_assert!(now - opened < interval_s as i64 * 1000);
                        }
                    }
                }
            }
            prop_assert_eq!(buffers.total_bytes(), buffers.buffered_bytes().values().sum::<u64>());
            objects.extend(buffers.drain());
            prop_assert_eq!(buffers.total_bytes(), 0);

            let mut committed: BTreeMap<i32, i64> = BTreeMap::new();
            for batch in &objects {
                prop_assert!(!batch.records.is_empty());
                prop_assert!(batch.bytes <= hints.size_bytes || batch.records.len() == 1,
                    "object of {} bytes with {} records", batch.bytes, batch.records.len());
                let BufferKey::Partition(partition) = batch.key else { panic!("unexpected key {:?}", batch.key) };
                let start = committed.get(&partition).copied().unwrap_or(0);
                let offsets: Vec<i64> = batch.records.iter().map(|r| r.offset).collect();
                let expected: Vec<i64> = (start..start + offsets.len() as i64).collect();
                prop_assert_eq!(offsets, expected, "partition {} batch out of order", partition);
                prop_assert!(batch.records.iter().all(|r| r.timestamp_ms >= batch.oldest_timestamp_ms()));
                committed.insert(partition, start + batch.records.len() as i64);
            }
            prop_assert_eq!(committed, next_offset);
        }
    }
}
