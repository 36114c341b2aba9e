//! The delivery engine's logic, with no I/O, no locks and no clock: records,
//! ticks, landings and revocations come in as calls with the time passed in;
//! objects to write and offsets to commit come out. The driver
//! ([`super::driver`]) does the reading, writing and committing around it,
//! and the state-machine test below drives it through any interleaving.
//!
//! What it guarantees, checked after every step of that test:
//! - nothing read is lost: every record is buffered, on its way to S3, or
//!   landed (or, after a revocation or a restart, re-read from the committed
//!   offset);
//! - an offset is committable only once every record before it has landed,
//!   whatever order objects land in;
//! - an object holds each Kafka partition's records in offset order, stays
//!   within the size hint unless it holds one larger record, and no buffer
//!   outlives the interval past a tick;
//! - buffered bytes, plus bytes cut and not yet landed, stay within the
//!   memory bound (the driver stops reading when [`Core::backpressured`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::buffer::{Batch, BufferKey, Buffers, Record};
use super::offsets::OffsetTracker;
use super::router::{ErrorKind, Route, Router};
use crate::spec::BufferHints;

/// Limits the core works within.
#[derive(Debug, Clone, Copy)]
pub struct CoreConfig {
    pub hints: BufferHints,
    /// Extra bytes each data record takes in its object (1 with
    /// `AppendDelimiterToRecord`).
    pub per_record_overhead: u64,
    /// Bytes held in buffers and in objects not yet landed. From half the
    /// bound the fullest buffers are cut early (with dynamic partitioning
    /// every buffer, at each quarter); at the bound (S3 slower than reading,
    /// or down) the core is back-pressured and reading stops.
    pub max_buffered_bytes: u64,
    /// Objects written at once.
    pub max_in_flight: usize,
}

/// An object cut from a buffer, to be encoded, named and written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub id: u64,
    pub batch: Batch,
}

/// An object being written: what its landing completes.
#[derive(Debug)]
struct InFlight {
    bytes: u64,
    oldest_ms: i64,
    records: u64,
    /// Its records by Kafka partition, in partition order.
    partitions: Vec<PartitionOffsets>,
}

/// The offsets of one Kafka partition's records in an object being
/// written, in offset order.
#[derive(Debug)]
struct PartitionOffsets {
    partition: i32,
    /// The partition's assignment epoch when the object was cut: a landing
    /// after the partition was revoked must not count.
    epoch: u64,
    offsets: Vec<i64>,
}

/// Counters the driver publishes as metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// `DataReadFromSource.Records`.
    pub records_read: u64,
    /// `DataReadFromSource.Bytes`.
    pub bytes_read: u64,
    /// `DeliveryToS3.Records`.
    pub records_delivered: u64,
    /// `DeliveryToS3.ObjectCount`.
    pub objects: u64,
    /// Records routed to the error prefix.
    pub error_records: u64,
    /// Buffered records dropped because their partition was revoked (the new
    /// owner reads them again).
    pub handed_over: u64,
    /// Buffers cut early for the memory bound.
    pub memory_limit_hits: u64,
    /// Records sent to the error prefix over the active-partition limit
    /// (`PartitionCountExceeded`).
    pub partition_limit_errors: u64,
    /// `SucceedConversion.Records` / `.Bytes`: records that fit the Glue
    /// table (with format conversion).
    pub converted: RecordCount,
    /// `FailedConversion.Records` / `.Bytes`.
    pub conversion_failed: RecordCount,
    /// Error records per error code, with the last message: Firehose's
    /// error log has one event per failed record.
    pub errors_by_code: BTreeMap<&'static str, CodeTally>,
}

/// Error records of one code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CodeTally {
    pub records: u64,
    pub last_message: String,
}

impl Counters {
    fn count_error(&mut self, kind: &ErrorKind) {
        self.error_records += 1;
        let tally = self.errors_by_code.entry(kind.code()).or_default();
        tally.records += 1;
        tally.last_message = kind.message();
    }
}

/// Records and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordCount {
    pub records: u64,
    pub bytes: u64,
}

impl RecordCount {
    pub(crate) fn add(&mut self, record: &Record) {
        self.records += 1;
        self.bytes += record.value.len() as u64;
    }
}

impl std::ops::AddAssign for RecordCount {
    fn add_assign(&mut self, other: RecordCount) {
        self.records += other.records;
        self.bytes += other.bytes;
    }
}

/// The records of one cut that converted and those that did not
/// (`SucceedConversion.*`, `FailedConversion.*`, the error log).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConversionOutcome {
    pub converted: RecordCount,
    pub failed: RecordCount,
    /// Why each record that did not fit failed, in order.
    pub errors: Vec<ErrorKind>,
}

/// The engine for one stream.
#[derive(Debug)]
pub struct Core {
    router: Router,
    buffers: Buffers,
    offsets: OffsetTracker,
    epochs: BTreeMap<i32, u64>,
    ready: VecDeque<Cut>,
    ready_bytes: u64,
    in_flight: BTreeMap<u64, InFlight>,
    in_flight_bytes: u64,
    next_id: u64,
    /// Partitions whose commit point may have moved.
    dirty: BTreeSet<i32>,
    config: CoreConfig,
    routes: Vec<Route>,
    /// See [`Core::backpressured`].
    pressured: bool,
    pub counters: Counters,
}

impl Core {
    pub fn new(router: Router, config: CoreConfig) -> Self {
        Core {
            buffers: Buffers::new(config.hints, config.per_record_overhead),
            router,
            offsets: OffsetTracker::default(),
            epochs: BTreeMap::new(),
            ready: VecDeque::new(),
            ready_bytes: 0,
            in_flight: BTreeMap::new(),
            in_flight_bytes: 0,
            next_id: 0,
            dirty: BTreeSet::new(),
            config,
            routes: Vec::new(),
            pressured: false,
            counters: Counters::default(),
        }
    }

    /// A record read from Kafka at `now_ms`.
    pub fn on_record(&mut self, record: Record, now_ms: i64) {
        self.counters.records_read += 1;
        self.counters.bytes_read += record.value.len() as u64;
        self.route(record, None, now_ms);
    }

    /// A record the Lambda transform returned `Ok`, with its new value and
    /// the `partitionKeys` it returned. Records of a partition come in offset
    /// order, as from Kafka; [`Core::on_record`]'s counters are the
    /// transform's to keep.
    pub fn on_transformed(&mut self, record: Record, lambda_keys: Option<&BTreeMap<String, String>>, now_ms: i64) {
        self.route(record, lambda_keys, now_ms);
    }

    /// A record the Lambda transform dropped: done, nothing to write.
    pub fn on_dropped(&mut self, partition: i32, offset: i64) {
        self.offsets.read(partition, offset, 0);
        self.dirty.insert(partition);
    }

    /// A record that failed before routing (the Lambda transform): it goes to
    /// the error prefix of `kind`'s type with its original bytes.
    pub fn on_failed(&mut self, kind: &ErrorKind, record: Record, now_ms: i64) {
        self.offsets.read(record.partition, record.offset, 1);
        self.dirty.insert(record.partition);
        self.counters.count_error(kind);
        let (key, record) = Router::error_record(kind, record, now_ms);
        for batch in self.buffers.push(key, record, now_ms) {
            self.cut(batch);
        }
        self.update_pressure();
    }

    fn route(&mut self, record: Record, lambda_keys: Option<&BTreeMap<String, String>>, now_ms: i64) {
        let (partition, offset) = (record.partition, record.offset);
        let mut routes = std::mem::take(&mut self.routes);
        let buffers = &self.buffers;
        self.router.route(record, lambda_keys, |k| buffers.is_open(k), buffers.partition_count(), &mut routes);
        self.offsets.read(partition, offset, routes.len());
        self.dirty.insert(partition);
        for route in routes.drain(..) {
            let (key, record) = match route {
                Route::Buffer(key, record) => (key, record),
                Route::Error(kind, record) => {
                    self.counters.count_error(&kind);
                    if matches!(kind, ErrorKind::ActivePartitions { .. }) {
                        self.counters.partition_limit_errors += 1;
                    }
                    Router::error_record(&kind, record, now_ms)
                }
            };
            for batch in self.buffers.push(key, record, now_ms) {
                self.cut(batch);
            }
        }
        self.routes = routes;
        self.update_pressure();
    }

    /// Cuts the buffers whose interval has passed at `now_ms`.
    pub fn on_tick(&mut self, now_ms: i64) {
        for batch in self.buffers.due(now_ms) {
            self.cut(batch);
        }
    }

    /// Cuts every buffer (a flush, or shutdown). Returns the id below which
    /// every object is cut: once none below it is waiting or in flight,
    /// everything buffered before the call has landed.
    pub fn drain(&mut self) -> u64 {
        for batch in self.buffers.drain() {
            self.cut(batch);
        }
        self.next_id
    }

    /// A prefix or error buffer's records stay in arrival order here (each
    /// partition's in offset order); the encoder sorts them, off the
    /// consumer's thread.
    fn cut(&mut self, batch: Batch) {
        self.ready_bytes += batch.bytes;
        self.ready.push_back(Cut { id: self.next_id, batch });
        self.next_id += 1;
    }

    /// The next object to write, if one is cut and a write slot is free. It
    /// counts as in flight until [`Core::on_landed`].
    pub fn take_cut(&mut self) -> Option<Cut> {
        if self.in_flight.len() >= self.config.max_in_flight {
            return None;
        }
        let cut = self.ready.pop_front()?;
        self.ready_bytes -= cut.batch.bytes;
        // Grouped in one pass: a prefix or error buffer's records come in
        // arrival order (each partition's in offset order), sorted only by
        // the encoder.
        let mut partitions: Vec<PartitionOffsets> = Vec::new();
        for r in &cut.batch.records {
            let at = match partitions.binary_search_by_key(&r.partition, |p| p.partition) {
                Ok(at) => at,
                Err(at) => {
                    let epoch = self.epoch(r.partition);
                    partitions.insert(at, PartitionOffsets { partition: r.partition, epoch, offsets: Vec::new() });
                    at
                }
            };
            partitions[at].offsets.push(r.offset);
        }
        self.in_flight_bytes += cut.batch.bytes;
        self.in_flight.insert(
            cut.id,
            InFlight {
                bytes: cut.batch.bytes,
                oldest_ms: cut.batch.oldest_timestamp_ms(),
                records: cut.batch.records.len() as u64,
                partitions,
            },
        );
        Some(cut)
    }

    fn epoch(&self, partition: i32) -> u64 {
        self.epochs.get(&partition).copied().unwrap_or(0)
    }

    /// A cut was written, as `objects` objects (a Parquet object and one of
    /// the records that did not convert): its records count as landed.
    pub fn on_landed(&mut self, id: u64, objects: usize) {
        let Some(object) = self.in_flight.remove(&id) else { return };
        self.in_flight_bytes -= object.bytes;
        self.counters.objects += objects as u64;
        self.counters.records_delivered += object.records;
        for p in object.partitions {
            if self.epoch(p.partition) == p.epoch {
                self.offsets.landed_in_order(p.partition, p.offsets);
                self.dirty.insert(p.partition);
            }
        }
        self.update_pressure();
    }

    /// What a landed cut's format conversion made of its records: they are
    /// counted when converted, as Firehose counts them when it delivers.
    pub fn on_converted(&mut self, outcome: &ConversionOutcome) {
        self.counters.converted += outcome.converted;
        self.counters.conversion_failed += outcome.failed;
        for kind in &outcome.errors {
            self.counters.count_error(kind);
        }
    }

    /// A write was given up (shutdown, or its object could not be named):
    /// its slot and bytes are freed, but its records never count as landed,
    /// so nothing is committed past them and they are read again.
    pub fn on_abandoned(&mut self, id: u64) {
        if let Some(object) = self.in_flight.remove(&id) {
            self.in_flight_bytes -= object.bytes;
        }
        self.update_pressure();
    }

    /// Partitions taken away in a rebalance: their buffered and not-yet-sent
    /// records are dropped uncommitted (the new owner reads them again), and
    /// objects already being written no longer commit for them.
    pub fn on_revoked(&mut self, partitions: &[i32]) {
        if partitions.is_empty() {
            return;
        }
        self.offsets.forget(partitions);
        for p in partitions {
            *self.epochs.entry(*p).or_default() += 1;
            self.dirty.remove(p);
        }
        self.counters.handed_over += self.buffers.discard(partitions) as u64;
        let overhead = self.config.per_record_overhead;
        for cut in &mut self.ready {
            let before = cut.batch.records.len();
            cut.batch.records.retain(|r| !partitions.contains(&r.partition));
            self.counters.handed_over += (before - cut.batch.records.len()) as u64;
            let record_overhead = if matches!(cut.batch.key, BufferKey::Error(_)) { 0 } else { overhead };
            let bytes = cut.batch.records.iter().map(|r| r.value.len() as u64 + record_overhead).sum();
            self.ready_bytes -= cut.batch.bytes - bytes;
            cut.batch.bytes = bytes;
        }
        self.ready.retain(|c| !c.batch.records.is_empty());
        self.update_pressure();
    }

    /// Commit points that moved since the last call: (partition, next
    /// offset to read).
    pub fn commits(&mut self) -> Vec<(i32, i64)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty.into_iter().filter_map(|p| self.offsets.advance(p).map(|o| (p, o))).collect()
    }

    /// The commit point of every partition, for the final commit.
    pub fn committed(&self) -> BTreeMap<i32, i64> {
        self.offsets.committed()
    }

    /// Whether reading must stop: set when held bytes reach the memory
    /// bound, cleared once landings bring them down to three quarters of it.
    /// The gap matters: every pause makes the consumer drop what it
    /// prefetched, so pausing per object would read the topic twice.
    pub fn backpressured(&self) -> bool {
        self.pressured
    }

    /// After held bytes changed. From half the bound on, whenever less than
    /// a quarter of it is on its way to S3, the fullest buffers are cut
    /// early until a quarter is: encoding and writing then overlap reading,
    /// where waiting for the bound stopped reading while a large object was
    /// encoded (half the CPU idle with Parquet). With dynamic partitioning
    /// every buffer is cut whenever they hold a quarter of the bound.
    /// Reading pauses at the bound itself.
    fn update_pressure(&mut self) {
        let bound = self.config.max_buffered_bytes;
        let held = self.held_bytes();
        if held >= bound {
            self.pressured = true;
        }
        if held < bound / 2 {
            self.pressured = false;
        }
        if self.buffers.partition_count() > 0 {
            // Every prefix holds records of every Kafka partition, so the
            // commit point moves only when all of them land: cutting the
            // fullest few would free memory and commit nothing until the
            // interval. What is buffered is what the commit trails reading
            // by (and what a restart reads again): a quarter of the bound,
            // not half, so a topic read from its start does not commit its
            // last half-bound only at the end. Not waiting for the previous
            // cut to land keeps the objects at a quarter of the bound over
            // the keys, not a quarter and a sliver.
            if self.buffers.total_bytes() >= bound / 4 {
                for batch in self.buffers.drain() {
                    self.counters.memory_limit_hits += 1;
                    self.cut(batch);
                }
            }
        } else if held >= bound / 2 {
            while self.ready_bytes + self.in_flight_bytes < bound / 4 {
                let Some(batch) = self.buffers.take_largest() else { break };
                self.counters.memory_limit_hits += 1;
                self.cut(batch);
            }
        }
        if self.held_bytes() <= bound / 4 * 3 {
            self.pressured = false;
        }
    }

    /// Every object cut so far has an id below this.
    pub fn cut_mark(&self) -> u64 {
        self.next_id
    }

    pub fn max_buffered_bytes(&self) -> u64 {
        self.config.max_buffered_bytes
    }

    /// Whether every object with an id below `id` has landed.
    pub fn landed_below(&self, id: u64) -> bool {
        self.ready.front().is_none_or(|c| c.id >= id) && self.in_flight.keys().next().is_none_or(|first| *first >= id)
    }

    /// Bytes in buffers, in cut objects and in objects being written.
    pub fn held_bytes(&self) -> u64 {
        self.buffers.total_bytes() + self.ready_bytes + self.in_flight_bytes
    }

    pub fn buffers(&self) -> &Buffers {
        &self.buffers
    }

    /// Objects cut or being written.
    pub fn pending_objects(&self) -> usize {
        self.ready.len() + self.in_flight.len()
    }

    /// Timestamp of the oldest record read and not yet landed.
    pub fn oldest_unlanded_ms(&self) -> Option<i64> {
        let buffered = self.buffers.oldest_record_ms();
        let ready = self.ready.iter().map(|c| c.batch.oldest_timestamp_ms()).min();
        let flying = self.in_flight.values().map(|o| o.oldest_ms).min();
        [buffered, ready, flying].into_iter().flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use base64::Engine as _;
    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;
    use crate::delivery::naming::{Namer, Randomness};
    use crate::spec::MIB;

    /// Records carry their identity, so what lands can be told apart.
    fn value(partition: i32, offset: i64, len: usize, json: bool, kind: u8) -> Bytes {
        let id = format!("p{partition}o{offset}");
        if json {
            let pad = "x".repeat(len);
            Bytes::from(format!(r#"{{"id":"{id}","event_type":"t{kind}","pad":"{pad}"}}"#))
        } else {
            let mut v = format!("{id};").into_bytes();
            v.resize(len.max(v.len()), b'.');
            Bytes::from(v)
        }
    }

    /// The identity of a landed record: its own bytes, or an error line's
    /// `rawData`.
    fn identity(record: &Record, error: bool) -> String {
        let bytes = if error {
            let line: serde_json::Value = serde_json::from_slice(&record.value).unwrap();
            base64::engine::general_purpose::STANDARD.decode(line["rawData"].as_str().unwrap()).unwrap()
        } else {
            record.value.to_vec()
        };
        let text = String::from_utf8(bytes).unwrap();
        match text.find("\"id\":\"") {
            Some(at) => text[at + 6..].split('"').next().unwrap().to_owned(),
            None => text.split(';').next().unwrap().to_owned(),
        }
    }

    fn router(dynamic: bool, limit: usize) -> Router {
        let file = if dynamic {
            "fixtures/streams/dynamic-partitioning-event-type.json"
        } else {
            "fixtures/streams/orders-to-s3.json"
        };
        let spec = Arc::new(crate::spec::load(Path::new(file)).unwrap());
        let namer = Arc::new(Namer::new((*spec).clone(), 1, Randomness::seeded(1)));
        Router::new(spec, namer, limit)
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// The producer writes a record of this size to a partition.
        Produce {
            partition: i32,
            len: usize,
            kind: u8,
        },
        /// The consumer hands the core the next record of a partition.
        Read {
            partition: i32,
        },
        Tick {
            millis: i64,
        },
        /// The driver starts writing the next cut object.
        Dispatch,
        /// An object being written lands (by position among those in flight).
        Land {
            pick: usize,
        },
        /// A write that never lands (S3 gave up at shutdown): its records
        /// must never be committed past.
        Abandon {
            pick: usize,
        },
        Revoke {
            partition: i32,
        },
        /// The instance restarts: objects in flight are lost with it.
        Restart,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (0..3i32, 1usize..40_000, 0u8..40).prop_map(|(partition, len, kind)| Step::Produce { partition, len, kind }),
            8 => (0..3i32).prop_map(|partition| Step::Read { partition }),
            2 => (0i64..200_000).prop_map(|millis| Step::Tick { millis }),
            4 => Just(Step::Dispatch),
            4 => (0usize..8).prop_map(|pick| Step::Land { pick }),
            1 => (0usize..8).prop_map(|pick| Step::Abandon { pick }),
            1 => (0..3i32).prop_map(|partition| Step::Revoke { partition }),
            1 => Just(Step::Restart),
        ]
    }

    /// The world around the core: the topic, the consumer's positions, the
    /// committed offsets and what landed in S3.
    struct World {
        log: BTreeMap<i32, Vec<Bytes>>,
        position: BTreeMap<i32, i64>,
        committed: BTreeMap<i32, i64>,
        flying: Vec<Cut>,
        landed: Vec<Batch>,
        /// id -> times it landed
        seen: HashMap<String, usize>,
        /// Records in an abandoned object: never landed by that object.
        abandoned: BTreeSet<(i32, i64)>,
        /// Offsets at or past which a record may land twice (re-read after a
        /// revocation or restart), per partition.
        window: BTreeMap<i32, i64>,
    }

    struct Harness {
        core: Core,
        world: World,
        now: i64,
        config: CoreConfig,
        dynamic: bool,
        limit: usize,
        /// Records come through a Lambda transform: some are dropped, some
        /// failed, the rest returned (see [`Harness::read`]).
        transform: bool,
    }

    impl Harness {
        fn new(config: CoreConfig, dynamic: bool, limit: usize) -> Self {
            Harness {
                core: Core::new(router(dynamic, limit), config),
                world: World {
                    log: BTreeMap::new(),
                    position: BTreeMap::new(),
                    committed: BTreeMap::new(),
                    flying: Vec::new(),
                    landed: Vec::new(),
                    seen: HashMap::new(),
                    abandoned: BTreeSet::new(),
                    window: BTreeMap::new(),
                },
                now: 1_783_951_200_000,
                config,
                dynamic,
                limit,
                transform: false,
            }
        }

        /// Hands a record to the core as the driver would: straight from
        /// Kafka, or with a transform, as the function's outcome for it (by
        /// offset: every 7th dropped, every 7th + 1 failed, the rest `Ok`).
        fn read(&mut self, record: Record) {
            if !self.transform {
                return self.core.on_record(record, self.now);
            }
            self.core.counters.records_read += 1;
            match record.offset % 7 {
                0 => {
                    // Dropped: done, as if landed.
                    *self.world.seen.entry(format!("p{}o{}", record.partition, record.offset)).or_default() += 1;
                    self.core.on_dropped(record.partition, record.offset);
                }
                1 => {
                    let kind = ErrorKind::Lambda {
                        code: "Lambda.ProcessingFailedStatus",
                        message: "ProcessingFailed status set for record",
                        attempts: 1,
                        arn: Arc::from("arn:aws:lambda:us-east-1:123456789012:function:f"),
                    };
                    self.core.on_failed(&kind, record, self.now);
                }
                _ => self.core.on_transformed(record, None, self.now),
            }
        }

        fn commit(&mut self) {
            for (partition, offset) in self.core.commits() {
                let at = self.world.committed.entry(partition).or_insert(0);
                assert!(offset >= *at || self.world.window.contains_key(&partition), "commit went back");
                *at = offset;
            }
        }

        fn land(&mut self, index: usize) {
            let cut = self.world.flying.remove(index);
            for r in &cut.batch.records {
                let error = matches!(cut.batch.key, BufferKey::Error(_));
                *self.world.seen.entry(identity(r, error)).or_default() += 1;
            }
            self.core.on_landed(cut.id, 1);
            self.world.landed.push(cut.batch);
            self.commit();
        }

        fn step(&mut self, step: &Step) -> Result<(), TestCaseError> {
            match *step {
                Step::Produce { partition, len, kind } => {
                    let log = self.world.log.entry(partition).or_default();
                    log.push(value(partition, log.len() as i64, len, self.dynamic, kind));
                }
                Step::Read { partition } => {
                    // The driver reads only while the core can take more.
                    if self.core.backpressured() {
                        return Ok(());
                    }
                    let position = self.world.position.entry(partition).or_insert(0);
                    let Some(value) = self.world.log.get(&partition).and_then(|l| l.get(*position as usize)) else {
                        return Ok(());
                    };
                    let record = Record { partition, offset: *position, timestamp_ms: self.now, value: value.clone() };
                    *position += 1;
                    self.read(record);
                }
                Step::Tick { millis } => {
                    self.now += millis;
                    self.core.on_tick(self.now);
                    if let Some(opened) = self.core.buffers().oldest_open_ms() {
                        prop_assert!(self.now - opened < self.config.hints.interval.as_millis() as i64);
                    }
                }
                Step::Dispatch => {
                    if let Some(cut) = self.core.take_cut() {
                        self.world.flying.push(cut);
                    }
                }
                Step::Land { pick } => {
                    if !self.world.flying.is_empty() {
                        let index = pick % self.world.flying.len();
                        self.land(index);
                    }
                }
                Step::Abandon { pick } => {
                    if !self.world.flying.is_empty() {
                        let cut = self.world.flying.remove(pick % self.world.flying.len());
                        self.core.on_abandoned(cut.id);
                        self.world.abandoned.extend(cut.batch.records.iter().map(|r| (r.partition, r.offset)));
                    }
                }
                Step::Revoke { partition } => {
                    // A rebalance takes the partition away and gives it back:
                    // reading resumes at the committed offset.
                    self.core.on_revoked(&[partition]);
                    let committed = self.world.committed.get(&partition).copied().unwrap_or(0);
                    self.world.position.insert(partition, committed);
                    self.world.window.entry(partition).or_insert(committed);
                    let w = self.world.window.get_mut(&partition).unwrap();
                    *w = (*w).min(committed);
                }
                Step::Restart => {
                    self.core = Core::new(router(self.dynamic, self.limit), self.config);
                    self.world.flying.clear();
                    self.world.abandoned.clear();
                    for (partition, position) in &mut self.world.position {
                        let committed = self.world.committed.get(partition).copied().unwrap_or(0);
                        *position = committed;
                        let w = self.world.window.entry(*partition).or_insert(committed);
                        *w = (*w).min(committed);
                    }
                }
            }
            self.check()
        }

        /// Invariants that hold after every step.
        fn check(&self) -> Result<(), TestCaseError> {
            // Nothing committed before it landed.
            for (partition, committed) in &self.world.committed {
                for offset in 0..*committed {
                    let id = format!("p{partition}o{offset}");
                    prop_assert!(self.world.seen.contains_key(&id), "committed past {id}, which has not landed");
                    prop_assert!(
                        !self.world.abandoned.contains(&(*partition, offset)) || self.world.seen.contains_key(&id)
                    );
                }
            }
            // The memory bound (the driver stops reading at it; one record
            // may cross it, as an error line: base64 and JSON around it).
            let largest = 40_000 * 4 / 3 + 300;
            prop_assert!(self.core.held_bytes() <= self.config.max_buffered_bytes + largest);
            Ok(())
        }

        /// Reads everything, cuts and lands every object.
        fn finish(&mut self) -> Result<(), TestCaseError> {
            self.world.abandoned.clear();
            // Abandoned objects are gone: their records are re-read after a
            // restart, so finish with one.
            self.step(&Step::Restart)?;
            let partitions: Vec<i32> = self.world.log.keys().copied().collect();
            for _ in 0..100_000 {
                let mut progressed = false;
                for p in &partitions {
                    let before = self.core.counters.records_read;
                    self.step(&Step::Read { partition: *p })?;
                    progressed |= self.core.counters.records_read > before;
                }
                while let Some(cut) = self.core.take_cut() {
                    self.world.flying.push(cut);
                }
                while !self.world.flying.is_empty() {
                    self.land(0);
                    progressed = true;
                }
                if !progressed {
                    break;
                }
            }
            self.core.drain();
            self.land_everything_cut();
            Ok(())
        }

        /// Writes every cut object and lands it, until nothing cut is left.
        fn land_everything_cut(&mut self) {
            while let Some(cut) = self.core.take_cut() {
                self.world.flying.push(cut);
                while !self.world.flying.is_empty() {
                    self.land(0);
                }
            }
        }
    }

    fn config(size_mb: u64, interval_s: u64, bound_kib: u64, in_flight: usize) -> CoreConfig {
        CoreConfig {
            hints: BufferHints { size_bytes: size_mb * MIB / 16, interval: Duration::from_secs(interval_s) },
            per_record_overhead: 0,
            max_buffered_bytes: bound_kib * 1024,
            max_in_flight: in_flight,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Any interleaving of records (straight from Kafka, or dropped,
        /// failed or returned by a Lambda transform), time, writes that land
        /// late or never, revocations and restarts: nothing is lost, nothing is committed
        /// before it landed, each object keeps partition order and its size
        /// hint, and a record lands more than once only if it was re-read
        /// from the committed offset.
        #[test]
        fn the_core_loses_nothing_and_commits_only_what_landed(
            steps in prop::collection::vec(step(), 1..250),
            size_mb in 1u64..4,
            interval_s in 1u64..600,
            bound_kib in 64u64..2048,
            in_flight in 1usize..4,
            dynamic in any::<bool>(),
            transform in any::<bool>(),
            many_keys in any::<bool>(),
        ) {
            let config = config(size_mb, interval_s, bound_kib, in_flight);
            // Up to 40 event types: over a limit of 3 active partitions most
            // open none; under Firehose's 500 each opens its own buffer.
            let limit = if many_keys { crate::delivery::DEFAULT_ACTIVE_PARTITION_LIMIT } else { 3 };
            let mut h = Harness::new(config, dynamic, limit);
            h.transform = transform;
            for step in &steps {
                h.step(step)?;
            }
            h.finish()?;

            // Every record produced landed.
            for (partition, log) in &h.world.log {
                for offset in 0..log.len() as i64 {
                    let id = format!("p{partition}o{offset}");
                    let n = h.world.seen.get(&id).copied().unwrap_or(0);
                    prop_assert!(n >= 1, "{} was lost", id);
                    // More than once only inside a re-read window.
                    let window = h.world.window.get(partition).copied().unwrap_or(i64::MAX);
                    prop_assert!(n == 1 || offset >= window, "{} landed {} times outside the window {}", id, n, window);
                }
            }
            // Objects: partition order and the size hint.
            for batch in &h.world.landed {
                prop_assert!(!batch.records.is_empty());
                prop_assert!(batch.bytes <= config.hints.size_bytes || batch.records.len() == 1 || matches!(batch.key, BufferKey::Error(_)),
                    "object of {} bytes with {} records", batch.bytes, batch.records.len());
                let mut last: BTreeMap<i32, i64> = BTreeMap::new();
                for r in &batch.records {
                    if let Some(prev) = last.insert(r.partition, r.offset) {
                        prop_assert!(prev <= r.offset, "partition {} out of order in an object", r.partition);
                    }
                }
            }
            prop_assert_eq!(h.core.held_bytes(), 0);
            prop_assert_eq!(h.core.pending_objects(), 0);
        }
    }

    /// Dynamic partitioning spreads each Kafka partition over every key's
    /// buffer. With writes landing as fast as they are cut, what is read
    /// and not yet committed (what a crash reads again) stays within a
    /// quarter of the memory bound: the commit point does not wait for the
    /// interval, not even for a rare key whose buffer is never the fullest
    /// (cutting only the fullest buffers fails here at record 310).
    #[test]
    fn at_the_memory_bound_dynamic_partitioning_commits_what_was_read() {
        let record_len = 1000;
        // 4 MiB hints, a 10-minute interval that never passes, 256 KiB bound.
        let config = config(64, 600, 256, 4);
        let mut h = Harness::new(config, true, crate::delivery::DEFAULT_ACTIVE_PARTITION_LIMIT);
        for i in 0..3_000u32 {
            let partition = (i % 3) as i32;
            // A few hot keys and a rare one: the rare key's buffer is never
            // the fullest, and its first record holds every commit back.
            let kind = if i % 50 == 7 { 39 } else { (i % 4) as u8 };
            h.step(&Step::Produce { partition, len: record_len, kind }).unwrap();
            h.step(&Step::Read { partition }).unwrap();
            // Writes land as soon as they are cut.
            h.land_everything_cut();
            let lag: u64 = (0..3)
                .map(|p| {
                    let read = h.world.position.get(&p).copied().unwrap_or(0) as usize;
                    let committed = h.world.committed.get(&p).copied().unwrap_or(0) as usize;
                    h.world.log.get(&p).map_or(0, |log| log[committed..read].iter().map(|v| v.len() as u64).sum())
                })
                .sum();
            assert!(
                lag <= config.max_buffered_bytes / 4 + 2 * record_len as u64,
                "after {} records, {lag} bytes read and not committed (bound {})",
                i + 1,
                config.max_buffered_bytes
            );
        }
        assert!(h.core.counters.memory_limit_hits > 0, "the bound was never reached");
    }

    /// With writes that take a while, dynamic partitioning still cuts a
    /// quarter of the bound at a time: cutting again as soon as the first
    /// object of a cut lands made a second set of objects of a few records
    /// each, one per key.
    #[test]
    fn dynamic_partitioning_cuts_a_quarter_of_the_bound_at_a_time() {
        let config = config(64, 600, 256, 64);
        let mut h = Harness::new(config, true, crate::delivery::DEFAULT_ACTIVE_PARTITION_LIMIT);
        let mut flying: VecDeque<(u32, Cut)> = VecDeque::new();
        let mut cuts = Vec::new();
        for i in 0..3_000u32 {
            let partition = (i % 3) as i32;
            h.step(&Step::Produce { partition, len: 1000, kind: (i % 8) as u8 }).unwrap();
            h.step(&Step::Read { partition }).unwrap();
            let mut cut_now = 0;
            while let Some(cut) = h.core.take_cut() {
                cut_now += cut.batch.bytes;
                flying.push_back((i, cut));
            }
            if cut_now > 0 {
                cuts.push(cut_now);
            }
            // A write lands 20 records after it was cut, one at a time.
            if flying.front().is_some_and(|(at, _)| at + 20 <= i) {
                let (_, cut) = flying.pop_front().unwrap();
                h.world.flying.push(cut);
                h.land(0);
            }
        }
        let quarter = config.max_buffered_bytes / 4;
        assert!(cuts.len() >= 40, "{} cuts of 3 MB read", cuts.len());
        assert!(cuts.iter().all(|bytes| *bytes >= quarter), "cuts of {cuts:?} bytes (a quarter: {quarter})");
    }

    /// Buffers that cannot all fill to their size hint within the bound
    /// (Parquet's 64 MiB hints on three partitions against 128 MiB) start
    /// being written at half the bound, while reading goes on, instead of
    /// reading stopping at the bound until a large object is encoded.
    #[test]
    fn writes_start_at_half_the_memory_bound_while_reading_goes_on() {
        let config = config(64, 600, 256, 2);
        let mut h = Harness::new(config, false, 3);
        let mut first_cut_at = None;
        for i in 0..400u32 {
            let partition = (i % 3) as i32;
            h.step(&Step::Produce { partition, len: 1000, kind: 0 }).unwrap();
            h.step(&Step::Read { partition }).unwrap();
            if first_cut_at.is_none() && h.core.pending_objects() > 0 {
                first_cut_at = Some(h.core.held_bytes());
            }
        }
        let at = first_cut_at.expect("nothing was cut");
        let bound = config.max_buffered_bytes;
        assert!(
            at >= bound / 2 && at < bound / 2 + 2000,
            "the first early cut came at {at} bytes held (bound {bound})"
        );
        // Nothing landed: reading stopped at the bound, not before.
        assert!(h.core.backpressured());
        assert!(h.core.held_bytes() >= bound && h.core.held_bytes() < bound + 2000);
    }

    #[test]
    fn a_landing_from_a_revoked_assignment_does_not_commit_a_re_read_record() {
        let mut core = Core::new(router(false, 500), config(1, 60, 4096, 2));
        let at = 1_783_951_200_000;
        let record = |offset| Record { partition: 0, offset, timestamp_ms: at, value: value(0, offset, 10, false, 0) };
        core.on_record(record(0), at);
        core.drain();
        let old = core.take_cut().unwrap();
        // The partition is revoked and given back; offset 0 is read again.
        core.on_revoked(&[0]);
        core.on_record(record(0), at);
        // The old write lands: it must not commit the re-read record.
        core.on_landed(old.id, 1);
        assert!(core.commits().iter().all(|(_, next)| *next == 0), "committed past the re-read record");
        core.drain();
        let new = core.take_cut().unwrap();
        core.on_landed(new.id, 1);
        assert_eq!(core.commits(), vec![(0, 1)]);
    }

    /// A cut that converted into a Parquet object and an object of the
    /// records that did not fit commits once, as one landing, and counts both
    /// objects and what its conversion made of each record.
    #[test]
    fn a_converted_cut_counts_its_objects_and_its_conversion_when_it_lands() {
        let mut core = Core::new(router(false, 500), config(1, 60, 4096, 2));
        let at = 1_783_951_200_000;
        for offset in 0..3 {
            core.on_record(
                Record { partition: 0, offset, timestamp_ms: at, value: value(0, offset, 10, false, 0) },
                at,
            );
        }
        core.drain();
        let cut = core.take_cut().unwrap();
        let error = crate::convert::ConversionError { code: "DataFormatConversion.ParseError", message: "bad".into() };
        let table = Arc::new(crate::convert::CatalogTable {
            catalog_id: "1".into(),
            database_name: "db".into(),
            table_name: "t".into(),
            region: "us-east-1".into(),
            version_id: "LATEST".into(),
            catalog_arn: "arn".into(),
        });
        let outcome = ConversionOutcome {
            converted: RecordCount { records: 2, bytes: 20 },
            failed: RecordCount { records: 1, bytes: 10 },
            errors: vec![ErrorKind::Conversion { error, table }],
        };
        core.on_landed(cut.id, 2);
        core.on_converted(&outcome);
        assert_eq!(core.commits(), vec![(0, 3)]);
        let c = &core.counters;
        assert_eq!((c.objects, c.records_delivered, c.error_records), (2, 3, 1));
        assert_eq!((c.converted, c.conversion_failed), (outcome.converted, outcome.failed));
        assert_eq!(c.errors_by_code["DataFormatConversion.ParseError"].records, 1);
    }
}
