//! The Firehose emulator: Kafka topic in, S3 objects out.
//!
//! One loop per delivery instance: records from the [`source`] go into
//! per-partition [`buffer`]s; a due buffer is [`encode`]d, named by
//! [`naming`] and written by the [`sink`]; only then is its partition's offset
//! committed. The loop writes one object at a time, so a slow S3 stops the
//! loop from reading, and the consumer's bounded queue, not memory, absorbs
//! the backlog.

pub mod buffer;
pub mod encode;
pub mod extract;
pub mod naming;
pub mod offsets;
pub mod sink;
pub mod source;
pub mod state;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::clock::SharedClock;
use crate::spec::{Compression, StreamSpec};
use buffer::{Batch, BufferKey, Buffers, Record};
use extract::MetadataExtractor;
use naming::{Namer, Randomness};
use offsets::OffsetTracker;
use sink::S3Sink;
use source::{Source, SourceError, SourceSettings};
use state::{StateError, StateStore, StreamState, Transition};
use tokio::sync::{mpsc, oneshot};

/// How often due buffers are checked, in wall time. Under a `--speedup 300`
/// clock this is 6 virtual seconds: fine against intervals of minutes.
const TICK: Duration = Duration::from_millis(20);

/// How long shutdown keeps retrying the final PUTs before giving up; what it
/// gives up on stays uncommitted and is re-read on the next start.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How long an instance may own no partitions before it rejoins the group.
/// tansu 0.6 can leave a group stuck after a static member's join is cut
/// off (a broker outage mid-rebalance); a rejoin as a dynamic member clears
/// it. A healthy join takes about 6 s on tansu, half of this.
const ASSIGNMENT_TIMEOUT: Duration = Duration::from_secs(12);

/// How often landed positions are committed again. Async commits fail while
/// the broker is away; re-committing once it is back keeps the uncommitted
/// window (what a crash would re-deliver) small. Commits are idempotent.
const RECOMMIT_EVERY: Duration = Duration::from_secs(1);

/// Firehose's record size limit; larger records go to the error prefix.
pub const MAX_RECORD_BYTES: usize = 10 * 1024 * 1024;

/// Default bound on buffered bytes across all buffers.
pub const DEFAULT_MAX_BUFFERED_BYTES: u64 = 512 * 1024 * 1024;

/// Firehose's default limit of active dynamic partitions.
pub const DEFAULT_ACTIVE_PARTITION_LIMIT: usize = 500;

/// `error-output-type` values, and the error codes streamlab writes.
pub mod errors {
    pub const PROCESSING_FAILED: &str = "processing-failed";
    /// Records over the active-partition limit (Firehose's developer guide,
    /// "Buffer data for dynamic partitioning").
    pub const ACTIVE_PARTITION_EXCEEDED: &str = "activePartitionExceeded";
    pub const METADATA_EXTRACTION_FAILED: &str = "metadata-extraction-failed";
    pub const METADATA_EXTRACTION_CODE: &str = "DynamicPartitioning.MetadataExtractionFailed";
    pub const ACTIVE_PARTITIONS_CODE: &str = "DynamicPartitioning.ActivePartitionsLimitExceeded";
    pub const RECORD_TOO_LARGE_CODE: &str = "RecordTooLarge";
    pub const PREFIX_CODE: &str = "DynamicPartitioning.PrefixEvaluationFailed";
}

/// One line of an error object, fields in the order Firehose writes them.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorLine<'a> {
    attempts_made: u32,
    arrival_timestamp: i64,
    error_code: &'a str,
    error_message: &'a str,
    attempt_ending_timestamp: i64,
    raw_data: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] sink::SinkError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// One object delivery wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandedObject {
    pub key: String,
    pub records: usize,
    /// Size of the object as stored (after compression).
    pub bytes: u64,
}

/// Live counters, shared with whoever watches (sandbox progress, tests).
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// `DataReadFromSource.Records`, counted once the record is buffered.
    pub records_read: AtomicU64,
    /// `DataReadFromSource.Bytes`.
    pub bytes_read: AtomicU64,
    /// `DeliveryToS3.Records`.
    pub records_delivered: AtomicU64,
    /// `DeliveryToS3.ObjectCount`.
    pub objects: AtomicU64,
    /// Failed PUT attempts (each retried).
    pub put_failures: AtomicU64,
    /// Successful PUTs; with `put_failures`, `DeliveryToS3.Success`.
    pub put_successes: AtomicU64,
    /// `DeliveryToS3.DataFreshness` in clock milliseconds: age of the oldest
    /// record read but not yet delivered (0 when nothing waits).
    pub freshness_ms: std::sync::atomic::AtomicI64,
    /// Times the buffers reached `max_buffered_bytes` and the largest was
    /// delivered early; while S3 is down this is where consumption stops.
    pub memory_limit_hits: AtomicU64,
    /// Records written to the error prefix (extraction failures, records over
    /// 10 MB, active partitions over the limit).
    pub error_records: AtomicU64,
    /// Records dropped from buffers because their partition was revoked
    /// (they are re-read by the new owner).
    pub records_handed_over: AtomicU64,
    /// Times the assignment watchdog rejoined the group.
    pub rejoins: AtomicU64,
    /// Objects being written right now (a PUT in progress or retrying).
    pub in_flight: AtomicU64,
    /// Set while a failed PUT waits to be retried: delivery holds the object
    /// until S3 answers, and a caller waiting for it to land would wait as
    /// long.
    pub retrying: AtomicBool,
    /// Records held in buffers.
    pub buffered_records: AtomicU64,
    /// Per partition, the next offset this instance will read: past every
    /// record it has buffered, skipped or handed on. `settle` compares it with
    /// the partition's end.
    positions: Mutex<BTreeMap<i32, i64>>,
    buffered: Mutex<BTreeMap<String, u64>>,
    landed: Mutex<Vec<LandedObject>>,
}

impl DeliveryStats {
    /// Bytes per open buffer, labelled `p<partition>`, the dynamic prefix, or
    /// `error:<type>`.
    pub fn buffered_bytes(&self) -> BTreeMap<String, u64> {
        self.buffered.lock().expect("stats lock").clone()
    }

    /// The next offset to read per owned partition.
    pub fn positions(&self) -> BTreeMap<i32, i64> {
        self.positions.lock().expect("stats lock").clone()
    }

    fn advance_position(&self, partition: i32, next: i64) {
        let mut positions = self.positions.lock().expect("stats lock");
        let at = positions.entry(partition).or_insert(next);
        *at = (*at).max(next);
    }

    pub fn landed(&self) -> Vec<LandedObject> {
        self.landed.lock().expect("stats lock").clone()
    }

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
}

/// Everything delivery needs besides the spec.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    pub source: SourceSettings,
    /// Where the stream's version, activation time and start offsets are
    /// kept.
    pub state: StateStore,
    /// Seed for uuids and random strings; `None` draws from the OS.
    pub seed: Option<u64>,
    /// Most dynamic partitions open at once; records for more go to the error
    /// prefix (Firehose's default is 500).
    pub active_partition_limit: usize,
    /// Bound on bytes held in buffers. At the bound the largest buffer is
    /// delivered early, and while that delivery waits (S3 down) nothing more
    /// is read: memory stays bounded and the backlog stays in Kafka.
    pub max_buffered_bytes: u64,
}

/// Asks a running delivery to act now, answering once done.
enum Command {
    /// Deliver every buffer, as if its interval had passed.
    Flush(oneshot::Sender<()>),
    /// Deliver the buffers whose interval has passed by the clock's now (the
    /// clock was moved).
    Tick(oneshot::Sender<()>),
}

/// A delivery running in the background.
pub struct DeliveryHandle {
    pub stream: String,
    pub state: StreamState,
    stats: Arc<DeliveryStats>,
    commands: mpsc::Sender<Command>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<Arc<DeliveryStats>, DeliveryError>>,
}

impl DeliveryHandle {
    pub fn stats(&self) -> Arc<DeliveryStats> {
        self.stats.clone()
    }

    /// Sends a command and waits for it to be done, or for delivery to be
    /// stuck retrying a PUT (S3 failing): then the objects land when S3
    /// answers again, and waiting for that is the caller's choice (`settle`).
    async fn ask(&self, command: impl FnOnce(oneshot::Sender<()>) -> Command) {
        let (reply, mut done) = oneshot::channel();
        if self.commands.send(command(reply)).await.is_err() {
            return;
        }
        let mut poll = tokio::time::interval(Duration::from_millis(10));
        loop {
            tokio::select! {
                _ = &mut done => return,
                _ = poll.tick() => {
                    if self.stats.retrying.load(Ordering::SeqCst) {
                        return;
                    }
                }
            }
        }
    }

    /// Delivers every buffer now; returns once each object landed, delivery
    /// stopped, or S3 is failing (see [`DeliveryStats::retrying`]).
    pub async fn flush(&self) {
        self.ask(Command::Flush).await;
    }

    /// Delivers the buffers due by the clock's now; returns once they landed
    /// (or as [`Self::flush`]).
    pub async fn tick(&self) {
        self.ask(Command::Tick).await;
    }

    /// Whether the task ended (it only ends on its own after an error).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops at once, as a crash would: nothing more is delivered or
    /// committed; what was read but not committed is read again by the next
    /// instance.
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Stops: every buffer is delivered and the offsets committed.
    pub async fn stop(self) -> Result<Arc<DeliveryStats>, DeliveryError> {
        self.stop.cancel();
        self.task.await.expect("delivery task does not panic")
    }
}

/// A delivery instance, connected and ready to run.
pub struct Delivery {
    spec: StreamSpec,
    state: StreamState,
    /// The consumer; replaced when the assignment watchdog rejoins.
    source: Mutex<Arc<Source>>,
    source_settings: SourceSettings,
    sink: S3Sink,
    clock: SharedClock,
    namer: Namer,
    stats: Arc<DeliveryStats>,
    extractor: Option<MetadataExtractor>,
    active_partition_limit: usize,
    max_buffered_bytes: u64,
    offsets: Mutex<OffsetTracker>,
    /// Set when a batch did not land (only during shutdown). Nothing later is
    /// written or committed in this run: a later commit could skip it.
    stalled: AtomicBool,
}

impl Delivery {
    /// Checks the broker, topic and bucket, applies the spec to the stream's
    /// recorded state (version, activation, start offsets), then joins the
    /// consumer group (or takes every partition). Fails with a message naming
    /// the unreachable endpoint rather than retrying forever at start-up.
    pub async fn connect(
        spec: StreamSpec,
        options: DeliveryOptions,
        sink: S3Sink,
        clock: SharedClock,
    ) -> Result<Self, DeliveryError> {
        let sink = sink.with_kms_key(spec.sse_kms_key_id.clone());
        let bootstrap = options.source.bootstrap.clone();
        let topic = spec.topic.clone();
        let partitions = tokio::task::spawn_blocking(move || source::check_topic(&bootstrap, &topic))
            .await
            .expect("metadata check does not panic")?;
        sink.check().await?;
        let state = Self::resolve_state(&spec, &options, clock.now_millis()).await?;
        let source = {
            let (settings, group, topic, starts) =
                (options.source.clone(), state.group.clone(), spec.topic.clone(), state.start_offsets.clone());
            tokio::task::spawn_blocking(move || source::connect(&settings, &group, &topic, starts, true))
                .await
                .expect("connecting does not panic")?
        };
        info!(stream = %spec.name, version = state.version, group = %state.group, topic = %spec.topic,
            partitions = partitions.len(), bucket = sink.bucket(), "delivery connected");
        let randomness = options.seed.map(Randomness::seeded).unwrap_or_else(Randomness::from_entropy);
        let namer = Namer::new(spec.clone(), state.version, randomness);
        let extractor = spec.metadata_query.as_deref().map(MetadataExtractor::new);
        Ok(Self {
            spec,
            state,
            source: Mutex::new(Arc::new(source)),
            source_settings: options.source.clone(),
            sink,
            clock,
            namer,
            stats: Arc::default(),
            extractor,
            active_partition_limit: options.active_partition_limit,
            max_buffered_bytes: options.max_buffered_bytes,
            offsets: Mutex::default(),
            stalled: AtomicBool::new(false),
        })
    }

    /// The stream's state with this spec applied, recorded where the stream
    /// keeps it. A new stream resolves where each partition starts now, once.
    async fn resolve_state(
        spec: &StreamSpec,
        options: &DeliveryOptions,
        now_ms: i64,
    ) -> Result<StreamState, DeliveryError> {
        let previous = options.state.load(&spec.name).await?;
        let (mut state, transition) = StreamState::apply(previous.as_ref(), spec, now_ms);
        if matches!(transition, Transition::Created | Transition::Recreated) {
            let (bootstrap, topic, start) = (options.source.bootstrap.clone(), spec.topic.clone(), spec.start);
            let activated = state.activated_at_ms;
            state.start_offsets = tokio::task::spawn_blocking(move || {
                source::resolve_start_offsets(&bootstrap, &topic, start, activated)
            })
            .await
            .expect("resolving start offsets does not panic")?;
        }
        if transition != Transition::Unchanged {
            state = options.state.save(&state).await?;
            info!(stream = %spec.name, version = state.version, ?transition, "stream state recorded");
        }
        Ok(state)
    }

    /// The stream's state: version, consumer group, activation, start offsets.
    pub fn state(&self) -> &StreamState {
        &self.state
    }

    pub fn stats(&self) -> Arc<DeliveryStats> {
        self.stats.clone()
    }

    /// Runs in the background until stopped through the handle.
    pub fn spawn(self) -> DeliveryHandle {
        let (commands, receiver) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let (stream, state, stats) = (self.spec.name.clone(), self.state.clone(), self.stats.clone());
        let task = tokio::spawn(self.run_with(stop.clone(), receiver));
        DeliveryHandle { stream, state, stats, commands, stop, task }
    }

    /// Runs until `shutdown` fires, then delivers every buffer and commits.
    pub async fn run(self, shutdown: CancellationToken) -> Result<Arc<DeliveryStats>, DeliveryError> {
        let (_commands, receiver) = mpsc::channel(1);
        self.run_with(shutdown, receiver).await
    }

    async fn run_with(
        self,
        shutdown: CancellationToken,
        mut commands: mpsc::Receiver<Command>,
    ) -> Result<Arc<DeliveryStats>, DeliveryError> {
        let overhead = u64::from(self.spec.append_newline);
        let mut buffers = Buffers::new(self.spec.buffer, overhead);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut static_membership = true;
        let mut unassigned_since = std::time::Instant::now();
        let mut retired: Option<Arc<Source>> = None;
        let mut last_recommit = std::time::Instant::now();
        loop {
            if let Some(old) = retired.take() {
                // Closing a consumer blocks (it leaves the group): not here.
                tokio::task::spawn_blocking(move || drop(old));
            }
            let source = self.current_source();
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(command) = commands.recv() => {
                    let (batches, reply) = match command {
                        Command::Flush(reply) => (buffers.drain(), reply),
                        Command::Tick(reply) => (buffers.due(self.clock.now_millis()), reply),
                    };
                    for batch in batches {
                        self.deliver(batch, &shutdown).await;
                    }
                    self.publish_buffered(&buffers);
                    let _ = reply.send(());
                }
                _ = tick.tick() => {
                    if source.context().assigned_count() > 0 {
                        unassigned_since = std::time::Instant::now();
                    } else if unassigned_since.elapsed() > ASSIGNMENT_TIMEOUT {
                        static_membership = !static_membership;
                        retired = self.rejoin(static_membership);
                        unassigned_since = std::time::Instant::now();
                    }
                    let revoked = source.context().take_revoked();
                    if !revoked.is_empty() {
                        self.offsets.lock().expect("offsets lock").forget(&revoked);
                        let n = buffers.discard(&revoked);
                        self.stats.records_handed_over.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    if last_recommit.elapsed() > RECOMMIT_EVERY {
                        last_recommit = std::time::Instant::now();
                        self.recommit(&source);
                    }
                    for batch in buffers.due(self.clock.now_millis()) {
                        self.deliver(batch, &shutdown).await;
                    }
                    self.publish_buffered(&buffers);
                    self.publish_positions(&source);
                }
                message = source.recv() => match message {
                    Ok(message) => {
                        let record = Record {
                            partition: message.partition(),
                            offset: message.offset(),
                            timestamp_ms: message.timestamp().to_millis().unwrap_or_else(|| self.clock.now_millis()),
                            value: Bytes::copy_from_slice(message.payload().unwrap_or_default()),
                        };
                        drop(message);
                        let (partition, offset) = (record.partition, record.offset);
                        let bytes = record.value.len() as u64;
                        let now = self.clock.now_millis();
                        let routed = self.route(record, &buffers);
                        self.offsets.lock().expect("offsets lock").read(partition, offset, routed.len());
                        let mut due = Vec::new();
                        for (key, record) in routed {
                            due.extend(buffers.push(key, record, now));
                        }
                        // Counted once buffered, so whoever watches the count
                        // (tests advancing the clock) sees the buffer opened.
                        self.stats.records_read.fetch_add(1, Ordering::Relaxed);
                        self.stats.bytes_read.fetch_add(bytes, Ordering::Relaxed);
                        self.stats.advance_position(partition, offset + 1);
                        for batch in due {
                            self.deliver(batch, &shutdown).await;
                        }
                        while buffers.total_bytes() > self.max_buffered_bytes {
                            let Some(batch) = buffers.take_largest() else { break };
                            self.stats.memory_limit_hits.fetch_add(1, Ordering::Relaxed);
                            if !self.deliver(batch, &shutdown).await {
                                break;
                            }
                        }
                    }
                    Err(e) => warn!(error = %e, "kafka consumer error; retrying"),
                },
            }
        }

        if let Some(old) = retired.take() {
            tokio::task::spawn_blocking(move || drop(old));
        }
        info!("shutting down: delivering every buffer");
        let grace = CancellationToken::new();
        let deadline = grace.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
            deadline.cancel();
        });
        for batch in buffers.drain() {
            self.deliver(batch, &grace).await;
        }
        timer.abort();
        self.publish_buffered(&buffers);
        // Async commits may still be in flight: commit the final positions
        // synchronously so a clean stop leaves nothing to re-read.
        let final_positions = self.offsets.lock().expect("offsets lock").committed();
        // The last reference: the consumer closes on the blocking thread.
        let source = self.source.into_inner().expect("source lock");
        let (topic, stats) = (self.spec.topic, self.stats);
        tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for (partition, offset) in final_positions {
                let _ = tpl.add_partition_offset(&topic, partition, Offset::Offset(offset));
            }
            if tpl.count() > 0 {
                if let Err(e) = source.commit(&tpl, CommitMode::Sync) {
                    warn!(error = %e, "final commit failed; delivered records will be re-read on the next start");
                }
            }
            drop(source);
        })
        .await
        .expect("final commit does not panic");
        Ok(stats)
    }

    /// The consumer's own positions: they move past control records
    /// (transaction markers) no message shows, and exist before the first
    /// record of a partition arrives.
    fn publish_positions(&self, source: &Source) {
        let Ok(positions) = source.position() else { return };
        let owned = source.context().assigned_partitions();
        let mut published = self.stats.positions.lock().expect("stats lock");
        published.retain(|p, _| owned.contains(p));
        for element in positions.elements() {
            if let Offset::Offset(o) = element.offset() {
                let at = published.entry(element.partition()).or_insert(o);
                *at = (*at).max(o);
            }
        }
        for (partition, offset) in source.context().start_positions() {
            published.entry(partition).or_insert(offset);
        }
    }

    /// Commits every landed position again (asynchronously).
    fn recommit(&self, source: &Source) {
        let positions = self.offsets.lock().expect("offsets lock").committed();
        if positions.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in positions {
            let _ = tpl.add_partition_offset(&self.spec.topic, partition, Offset::Offset(offset));
        }
        if let Err(e) = source.commit(&tpl, CommitMode::Async) {
            debug!(error = %e, "re-commit failed; will retry");
        }
    }

    fn current_source(&self) -> Arc<Source> {
        self.source.lock().expect("source lock").clone()
    }

    /// Replaces the consumer with a new member of the group; returns the old
    /// one, to be closed off the async threads.
    fn rejoin(&self, static_membership: bool) -> Option<Arc<Source>> {
        let kind = if static_membership { "static" } else { "dynamic" };
        warn!(after = ?ASSIGNMENT_TIMEOUT, "no partitions assigned; rejoining the consumer group as a {kind} member");
        let fresh = source::connect(
            &self.source_settings,
            &self.state.group,
            &self.spec.topic,
            self.state.start_offsets.clone(),
            static_membership,
        );
        match fresh {
            Ok(fresh) => {
                self.stats.rejoins.fetch_add(1, Ordering::Relaxed);
                Some(std::mem::replace(&mut *self.source.lock().expect("source lock"), Arc::new(fresh)))
            }
            Err(e) => {
                warn!(error = %e, "rejoin failed; keeping the current consumer");
                None
            }
        }
    }

    fn publish_buffered(&self, buffers: &Buffers) {
        self.stats.buffered_records.store(buffers.record_count() as u64, Ordering::Relaxed);
        let freshness = buffers.oldest_record_ms().map_or(0, |oldest| (self.clock.now_millis() - oldest).max(0));
        self.stats.freshness_ms.store(freshness, Ordering::Relaxed);
        let labelled = buffers
            .buffered_bytes()
            .into_iter()
            .map(|(key, bytes)| {
                let label = match key {
                    BufferKey::Partition(p) => format!("p{p}"),
                    BufferKey::Prefix(prefix) => prefix.replace(naming::RANDOM_MARKER, "*"),
                    BufferKey::Error(kind) => format!("error:{kind}"),
                };
                (label, bytes)
            })
            .collect();
        *self.stats.buffered.lock().expect("stats lock") = labelled;
    }

    /// Which buffer each record of a Kafka record goes to: de-aggregation,
    /// then the partition (or, with dynamic partitioning, the prefix its keys
    /// evaluate to); records that cannot be delivered as configured become
    /// error records.
    fn route(&self, record: Record, buffers: &Buffers) -> Vec<(BufferKey, Record)> {
        if record.value.len() > MAX_RECORD_BYTES {
            let message = format!("record of {} bytes exceeds the 10 MB limit", record.value.len());
            return vec![self.error(record, errors::PROCESSING_FAILED, errors::RECORD_TOO_LARGE_CODE, &message)];
        }
        let parts = extract::deaggregate(&record.value, self.spec.deaggregation.as_ref());
        let mut out = Vec::with_capacity(parts.len());
        let mut opened = 0;
        for value in parts {
            let sub = Record { value, ..record.clone() };
            let Some(extractor) = &self.extractor else {
                out.push((BufferKey::Partition(sub.partition), sub));
                continue;
            };
            if !self.spec.dynamic_partitioning {
                out.push((BufferKey::Partition(sub.partition), sub));
                continue;
            }
            let keys = match extractor.extract(&sub.value) {
                Ok(keys) => keys,
                Err(e) => {
                    let message = e.to_string();
                    out.push(self.error(
                        sub,
                        errors::METADATA_EXTRACTION_FAILED,
                        errors::METADATA_EXTRACTION_CODE,
                        &message,
                    ));
                    continue;
                }
            };
            let prefix = match self.namer.partition_prefix(sub.timestamp_ms, &keys) {
                Ok(prefix) => prefix,
                Err(e) => {
                    let message = e.to_string();
                    out.push(self.error(sub, errors::PROCESSING_FAILED, errors::PREFIX_CODE, &message));
                    continue;
                }
            };
            let key = BufferKey::Prefix(prefix);
            let new = !buffers.is_open(&key) && !out.iter().any(|(k, _)| *k == key);
            // Error buffers are not partitions.
            if new && buffers.partition_count() + opened >= self.active_partition_limit {
                let message = format!("more than {} active partitions", self.active_partition_limit);
                out.push(self.error(sub, errors::ACTIVE_PARTITION_EXCEEDED, errors::ACTIVE_PARTITIONS_CODE, &message));
                continue;
            }
            opened += usize::from(new);
            out.push((key, sub));
        }
        out
    }

    /// An error record: the JSON line Firehose writes under the error prefix.
    fn error(&self, record: Record, kind: &'static str, code: &str, message: &str) -> (BufferKey, Record) {
        self.stats.error_records.fetch_add(1, Ordering::Relaxed);
        let line = ErrorLine {
            attempts_made: 1,
            arrival_timestamp: record.timestamp_ms,
            error_code: code,
            error_message: message,
            attempt_ending_timestamp: self.clock.now_millis(),
            raw_data: BASE64.encode(&record.value),
        };
        let mut value = serde_json::to_vec(&line).expect("JSON values serialize");
        value.push(b'\n');
        (BufferKey::Error(kind), Record { value: Bytes::from(value), ..record })
    }

    /// Writes one batch, retrying with exponential backoff until it lands or
    /// `stop` fires, then commits what it completed. Returns whether it
    /// landed; a batch that did not stays uncommitted and will be re-read,
    /// and nothing after it is written or committed in this run.
    async fn deliver(&self, mut batch: Batch, stop: &CancellationToken) -> bool {
        if self.stalled.load(Ordering::SeqCst) {
            return false;
        }
        // A prefix or error buffer gathers several Kafka partitions in arrival
        // order, which differs between identical runs. Firehose keeps each
        // partition's order and defines none across partitions; (partition,
        // offset) order keeps the first and makes the object reproducible.
        if !matches!(batch.key, BufferKey::Partition(_)) {
            batch.records.sort_by_key(|r| (r.partition, r.offset));
        }
        let landed = self.write(&batch, stop).await;
        if !landed {
            self.stalled.store(true, Ordering::SeqCst);
            return false;
        }
        let mut touched = std::collections::BTreeSet::new();
        let mut offsets = self.offsets.lock().expect("offsets lock");
        for record in &batch.records {
            offsets.landed(record.partition, record.offset);
            touched.insert(record.partition);
        }
        let commits: Vec<(i32, i64)> = touched.into_iter().filter_map(|p| offsets.advance(p).map(|o| (p, o))).collect();
        drop(offsets);
        for (partition, offset) in commits {
            self.commit(partition, offset);
        }
        true
    }

    async fn write(&self, batch: &Batch, stop: &CancellationToken) -> bool {
        let oldest = batch.oldest_timestamp_ms();
        let mut rng = self.namer.object(&batch.identity());
        let (key, body, encoding) = match &batch.key {
            BufferKey::Error(kind) => {
                (self.namer.error_key(oldest, kind, &mut rng), Bytes::from(encode::concatenate(batch, false)), None)
            }
            data => {
                let key = match data {
                    BufferKey::Prefix(prefix) => Ok(self.namer.dynamic_key(prefix, oldest, &mut rng)),
                    _ => self.namer.object_key(oldest, &mut rng),
                };
                // Firehose names the one ZIP entry with a uuid.
                let entry = if self.spec.compression == Compression::Zip { rng.uuid() } else { String::new() };
                let body = encode::encode(batch, self.spec.append_newline, self.spec.compression, &entry);
                (key, body, self.spec.compression.content_encoding())
            }
        };
        let key = match key {
            Ok(key) => key,
            Err(e) => {
                // Only a static prefix over 512 characters after evaluation
                // gets here, which validation rules out for fixed-width ones.
                warn!(error = %e, "cannot name object");
                return false;
            }
        };
        let mut backoff = Duration::from_millis(100);
        self.stats.in_flight.fetch_add(1, Ordering::SeqCst);
        let _in_flight = InFlight(&self.stats.in_flight);
        loop {
            match self.sink.put(&key, body.clone(), encoding).await {
                Ok(()) => break,
                Err(e) => {
                    self.stats.put_failures.fetch_add(1, Ordering::Relaxed);
                    // The loop is stuck here while S3 fails: keep freshness live.
                    let age = (self.clock.now_millis() - oldest).max(0);
                    self.stats.freshness_ms.fetch_max(age, Ordering::Relaxed);
                    warn!(error = %e, retry_in = ?backoff, "PUT failed; retrying");
                    self.stats.retrying.store(true, Ordering::SeqCst);
                    let jitter = Duration::from_millis(rand::random::<u64>() % (backoff.as_millis() as u64 / 2 + 1));
                    tokio::select! {
                        () = stop.cancelled() => return false,
                        () = tokio::time::sleep(backoff + jitter) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        self.stats.retrying.store(false, Ordering::SeqCst);
        self.stats.put_successes.fetch_add(1, Ordering::Relaxed);
        self.stats.records_delivered.fetch_add(batch.records.len() as u64, Ordering::Relaxed);
        self.stats.objects.fetch_add(1, Ordering::Relaxed);
        debug!(%key, records = batch.records.len(), "landed");
        self.stats.landed.lock().expect("stats lock").push(LandedObject {
            key,
            records: batch.records.len(),
            bytes: body.len() as u64,
        });
        true
    }

    /// Commits asynchronously: commits of one partition are applied in order,
    /// and a lost commit only means records are re-read (at-least-once).
    fn commit(&self, partition: i32, next_offset: i64) {
        let mut tpl = TopicPartitionList::new();
        if let Err(e) = tpl.add_partition_offset(&self.spec.topic, partition, Offset::Offset(next_offset)) {
            warn!(error = %e, "cannot build commit");
            return;
        }
        if let Err(e) = self.current_source().commit(&tpl, CommitMode::Async) {
            warn!(error = %e, partition, next_offset, "commit failed; records will be re-read after a restart");
        }
    }
}

/// Counts one object in flight for as long as it lives.
struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
