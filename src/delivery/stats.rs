//! Live figures of a delivery, shared with whoever watches (status, the
//! sandbox's progress, tests): counters under Firehose's metric names, plus
//! a bounded history of recent objects, so a delivery that runs for weeks
//! does not grow.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use super::core::Counters;

/// Objects kept in [`DeliveryStats::landed`].
pub const LANDED_HISTORY: usize = 1_000;

/// One object delivery wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandedObject {
    pub key: String,
    pub records: usize,
    /// Size of the object as stored (after compression).
    pub bytes: u64,
}

#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// `DataReadFromSource.Records`.
    pub records_read: AtomicU64,
    /// `DataReadFromSource.Bytes`.
    pub bytes_read: AtomicU64,
    /// `DeliveryToS3.Records`.
    pub records_delivered: AtomicU64,
    /// `DeliveryToS3.Bytes` (as stored).
    pub bytes_delivered: AtomicU64,
    /// `DeliveryToS3.ObjectCount`.
    pub objects: AtomicU64,
    /// Failed PUT attempts (each retried).
    pub put_failures: AtomicU64,
    /// Successful PUTs; with `put_failures`, `DeliveryToS3.Success`.
    pub put_successes: AtomicU64,
    /// `DeliveryToS3.DataFreshness` in clock milliseconds: age of the oldest
    /// record read but not yet delivered (0 when nothing waits).
    pub freshness_ms: AtomicI64,
    /// Buffers cut early at the memory bound.
    pub memory_limit_hits: AtomicU64,
    /// Records written to the error prefix.
    pub error_records: AtomicU64,
    /// Records dropped from buffers because their partition was revoked
    /// (the new owner reads them again).
    pub records_handed_over: AtomicU64,
    /// Times the assignment watchdog rejoined the group.
    pub rejoins: AtomicU64,
    /// Partitions revoked from this instance (rebalances).
    pub revocations: AtomicU64,
    /// Objects being written right now (a PUT in progress or retrying).
    pub in_flight: AtomicU64,
    /// Records held in buffers.
    pub buffered_records: AtomicU64,
    /// Bytes in buffers and in objects not yet landed.
    pub held_bytes: AtomicU64,
    /// Set while reading is paused (the memory bound or the write slots are
    /// full): `DataReadFromSource.Backpressured`.
    pub backpressured: AtomicBool,
    /// Writes whose last PUT failed and that wait to retry.
    pub failing_writes: AtomicU64,
    /// Per partition, the next offset this instance will read.
    positions: Mutex<BTreeMap<i32, i64>>,
    /// Bytes per open buffer, labelled `p<partition>`, the prefix, or
    /// `error:<type>`.
    buffered: Mutex<BTreeMap<String, u64>>,
    /// The most recent objects.
    landed: Mutex<VecDeque<LandedObject>>,
}

impl DeliveryStats {
    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn read(&self) -> u64 {
        Self::get(&self.records_read)
    }

    pub fn delivered(&self) -> u64 {
        Self::get(&self.records_delivered)
    }

    /// `DeliveryToS3.Success`: the share of PUT attempts that succeeded (1
    /// before any attempt).
    pub fn success_ratio(&self) -> f64 {
        let (ok, failed) = (Self::get(&self.put_successes), Self::get(&self.put_failures));
        if ok + failed == 0 {
            1.0
        } else {
            ok as f64 / (ok + failed) as f64
        }
    }

    /// Whether a failed PUT waits to be retried: delivery holds the object
    /// until S3 answers, and a caller waiting for it to land would wait as
    /// long.
    pub fn retrying(&self) -> bool {
        Self::get(&self.failing_writes) > 0
    }

    /// The next offset to read per owned partition.
    pub fn positions(&self) -> BTreeMap<i32, i64> {
        self.positions.lock().expect("stats lock").clone()
    }

    pub(crate) fn set_positions(&self, positions: BTreeMap<i32, i64>) {
        *self.positions.lock().expect("stats lock") = positions;
    }

    pub fn buffered_bytes(&self) -> BTreeMap<String, u64> {
        self.buffered.lock().expect("stats lock").clone()
    }

    pub(crate) fn set_buffered(&self, buffered: BTreeMap<String, u64>) {
        *self.buffered.lock().expect("stats lock") = buffered;
    }

    /// The most recent objects (at most [`LANDED_HISTORY`]).
    pub fn landed(&self) -> Vec<LandedObject> {
        self.landed.lock().expect("stats lock").iter().cloned().collect()
    }

    pub(crate) fn record_landed(&self, object: LandedObject) {
        self.bytes_delivered.fetch_add(object.bytes, Ordering::Relaxed);
        let mut landed = self.landed.lock().expect("stats lock");
        if landed.len() == LANDED_HISTORY {
            landed.pop_front();
        }
        landed.push_back(object);
    }

    /// The core's counters, as published figures.
    pub(crate) fn publish(&self, c: &Counters) {
        let set = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        set(&self.records_read, c.records_read);
        set(&self.bytes_read, c.bytes_read);
        set(&self.records_delivered, c.records_delivered);
        set(&self.objects, c.objects);
        set(&self.error_records, c.error_records);
        set(&self.records_handed_over, c.handed_over);
        set(&self.memory_limit_hits, c.memory_limit_hits);
    }
}
