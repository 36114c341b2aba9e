//! Live figures of a delivery, shared with whoever watches (status, the
//! sandbox's progress, tests): counters under Firehose's metric names, plus
//! a bounded history of recent objects, so a delivery that runs for weeks
//! does not grow.

pub use crate::transform::LambdaStats;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::core::{CodeTally, Counters};

/// Objects kept in [`DeliveryStats::landed`].
pub const LANDED_HISTORY: usize = 1_000;

/// One object delivery wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandedObject {
    pub key: String,
    pub records: usize,
    /// Size of the object as stored (after compression).
    pub bytes: u64,
    /// When it landed, on the stack's clock.
    pub landed_ms: i64,
    /// The offsets it holds, per topic partition.
    pub sources: Vec<SourceRange>,
}

/// The offsets of one topic partition an object holds: `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceRange {
    pub partition: i32,
    pub first: i64,
    pub last: i64,
}

impl SourceRange {
    /// The ranges of `(partition, offset)` pairs, by partition.
    pub fn of(offsets: impl Iterator<Item = (i32, i64)>) -> Vec<SourceRange> {
        let mut ranges: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
        for (partition, offset) in offsets {
            let r = ranges.entry(partition).or_insert((offset, offset));
            r.0 = r.0.min(offset);
            r.1 = r.1.max(offset);
        }
        ranges.into_iter().map(|(partition, (first, last))| SourceRange { partition, first, last }).collect()
    }
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
    /// Clock milliseconds of the oldest record read and not yet landed
    /// ([`DeliveryStats::oldest_unlanded`]): freshness at any moment (a
    /// CloudWatch minute boundary inside a clock jump) is that moment minus
    /// this.
    pub oldest_unlanded_ms: AtomicI64,
    /// Buffers cut early for the memory bound.
    pub memory_limit_hits: AtomicU64,
    /// Records written to the error prefix.
    pub error_records: AtomicU64,
    /// Of those, records over the active-partition limit.
    pub partition_limit_errors: AtomicU64,
    /// Records dropped from buffers because their partition was revoked
    /// (the new owner reads them again).
    pub records_handed_over: AtomicU64,
    /// Times the assignment watchdog rejoined the group.
    pub rejoins: AtomicU64,
    /// Partitions revoked from this instance (rebalances).
    pub revocations: AtomicU64,
    /// Partitions this instance owns now: how a group shares a topic.
    pub owned_partitions: AtomicU64,
    /// Objects being written right now (a PUT in progress or retrying).
    pub in_flight: AtomicU64,
    /// Records held in buffers.
    pub buffered_records: AtomicU64,
    /// Bytes in buffers and in objects not yet landed.
    pub held_bytes: AtomicU64,
    /// Times reading paused at the memory bound.
    pub pauses: AtomicU64,
    /// Wall milliseconds reading was paused, summed.
    pub paused_ms: AtomicU64,
    /// Set while reading is paused (the memory bound or the write slots are
    /// full): `DataReadFromSource.Backpressured`.
    pub backpressured: AtomicBool,
    /// Writes whose last PUT failed and that wait to retry.
    pub failing_writes: AtomicU64,
    /// The most failed attempts of any write still failing (0 once none is).
    pub failing_attempts: AtomicU64,
    /// Failed PUT attempts since the last PUT that succeeded: S3 failing
    /// everything, not now and then.
    pub failures_since_success: AtomicU64,
    /// The last PUT error, as S3 (or the connection) gave it.
    last_put_error: Mutex<Option<String>>,
    /// The Lambda transform's figures (all zero without one).
    pub lambda: Arc<LambdaStats>,
    /// `SucceedConversion.Records` / `.Bytes` and `FailedConversion.*`.
    pub converted_records: AtomicU64,
    pub converted_bytes: AtomicU64,
    pub conversion_failed_records: AtomicU64,
    pub conversion_failed_bytes: AtomicU64,
    /// When the first record was read: throughput counts from here.
    pub first_read: std::sync::OnceLock<std::time::Instant>,
    /// Per partition, the next offset this instance will read.
    positions: Mutex<BTreeMap<i32, i64>>,
    /// Bytes per open buffer, labelled `p<partition>`, the prefix, or
    /// `error:<type>`.
    buffered: Mutex<BTreeMap<String, u64>>,
    /// The most recent objects.
    landed: Mutex<VecDeque<LandedObject>>,
    /// Error records per error code, with the last message.
    errors_by_code: Mutex<BTreeMap<&'static str, CodeTally>>,
}

impl DeliveryStats {
    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// When the oldest record read and not yet landed was written, if one
    /// waits (0 before the first figures are published means none).
    pub fn oldest_unlanded(&self) -> Option<i64> {
        Some(self.oldest_unlanded_ms.load(Ordering::Relaxed)).filter(|ms| *ms > 0)
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

    /// Records one failed PUT attempt of a write (its `attempts`-th).
    pub(crate) fn record_put_failure(&self, error: String, attempts: u64) {
        self.put_failures.fetch_add(1, Ordering::Relaxed);
        self.failures_since_success.fetch_add(1, Ordering::SeqCst);
        self.failing_attempts.fetch_max(attempts, Ordering::SeqCst);
        *self.last_put_error.lock().expect("stats lock") = Some(error);
    }

    /// Objects that do not land, while some do not: how many, the most
    /// attempts one has failed, whether every PUT failed since, and the last
    /// error.
    /// The last PUT error, whether or not a write still fails.
    pub fn last_put_error(&self) -> Option<String> {
        self.last_put_error.lock().expect("stats lock").clone()
    }

    pub fn put_failure(&self) -> Option<PutFailure> {
        let objects = Self::get(&self.failing_writes);
        (objects > 0).then(|| PutFailure {
            objects,
            attempts: Self::get(&self.failing_attempts),
            failures_since_success: Self::get(&self.failures_since_success),
            last_error: self.last_put_error.lock().expect("stats lock").clone().unwrap_or_default(),
        })
    }

    /// Error records per error code so far, with the last message of each.
    pub fn errors_by_code(&self) -> BTreeMap<&'static str, CodeTally> {
        self.errors_by_code.lock().expect("stats lock").clone()
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
        if self.error_records.swap(c.error_records, Ordering::Relaxed) != c.error_records {
            *self.errors_by_code.lock().expect("stats lock") = c.errors_by_code.clone();
        }
        set(&self.partition_limit_errors, c.partition_limit_errors);
        set(&self.records_handed_over, c.handed_over);
        set(&self.memory_limit_hits, c.memory_limit_hits);
        set(&self.converted_records, c.converted.records);
        set(&self.converted_bytes, c.converted.bytes);
        set(&self.conversion_failed_records, c.conversion_failed.records);
        set(&self.conversion_failed_bytes, c.conversion_failed.bytes);
    }
}

/// Objects that fail to land: PUTs are retried until they do, and the
/// records stay uncommitted meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PutFailure {
    /// Objects whose last PUT failed.
    pub objects: u64,
    /// The most failed attempts of one of them.
    pub attempts: u64,
    /// Failed attempts since a PUT of the stream last succeeded.
    pub failures_since_success: u64,
    pub last_error: String,
}

impl PutFailure {
    /// Whether S3 keeps refusing rather than failing now and then: an
    /// object failed `attempts` times and no PUT succeeded meanwhile.
    pub fn persistent(&self, attempts: u64) -> bool {
        self.attempts >= attempts && self.failures_since_success >= attempts
    }
}

impl std::fmt::Display for PutFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} object(s) failed to land, one of them {} time(s); the last PUT error: {}",
            self.objects, self.attempts, self.last_error
        )
    }
}

/// What a delivery did, for its exit message and `deliver --report`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub records_read: u64,
    pub bytes_read: u64,
    pub records_delivered: u64,
    /// As stored (after compression).
    pub bytes_delivered: u64,
    pub objects: u64,
    pub error_records: u64,
    /// Records the Lambda transform dropped.
    pub dropped_records: u64,
    pub put_failures: u64,
    /// Times reading paused at the memory bound.
    pub pauses: u64,
    /// Seconds reading was paused, summed.
    pub paused_seconds: f64,
    /// Records read here and handed to another instance in a rebalance.
    pub handed_over: u64,
    /// From the first record read to now (the last object landed).
    pub seconds: f64,
    pub records_per_second: f64,
    pub read_mb_per_second: f64,
    /// Peak resident memory of this process (Linux `VmHWM`).
    pub peak_rss_bytes: Option<u64>,
}

/// This process's peak resident memory, from `/proc/self/status` (`VmHWM`
/// counts from `exec`, unlike `getrusage`, which also counts the parent's
/// memory at `fork`).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

impl Summary {
    pub fn of(stats: &DeliveryStats) -> Self {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let seconds = stats.first_read.get().map_or(0.0, |t| t.elapsed().as_secs_f64());
        let per_second = |n: u64| if seconds > 0.0 { n as f64 / seconds } else { 0.0 };
        Summary {
            records_read: get(&stats.records_read),
            bytes_read: get(&stats.bytes_read),
            records_delivered: get(&stats.records_delivered),
            bytes_delivered: get(&stats.bytes_delivered),
            objects: get(&stats.objects),
            error_records: get(&stats.error_records),
            dropped_records: get(&stats.lambda.dropped),
            put_failures: get(&stats.put_failures),
            pauses: get(&stats.pauses),
            paused_seconds: get(&stats.paused_ms) as f64 / 1000.0,
            handed_over: get(&stats.records_handed_over),
            seconds,
            records_per_second: per_second(get(&stats.records_read)),
            read_mb_per_second: per_second(get(&stats.bytes_read)) / 1e6,
            peak_rss_bytes: peak_rss_bytes(),
        }
    }

    /// Records read and neither delivered nor handed over: they stay
    /// uncommitted and are read again on the next start.
    pub fn undelivered(&self) -> u64 {
        self.records_read.saturating_sub(self.records_delivered + self.handed_over + self.dropped_records)
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} records read ({:.1} MB), {} delivered in {} objects",
            self.records_read,
            self.bytes_read as f64 / 1e6,
            self.records_delivered,
            self.objects
        )?;
        if self.seconds > 0.0 {
            write!(
                f,
                "; {:.0} records/s, {:.1} MB/s over {:.2} s",
                self.records_per_second, self.read_mb_per_second, self.seconds
            )?;
        }
        Ok(())
    }
}
