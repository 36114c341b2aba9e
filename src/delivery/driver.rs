//! The I/O around the [`Core`]: one task owns the core and the source and
//! turns events into calls on it. Objects are encoded and written by tasks
//! of their own, at most `max_in_flight` at once, so compression runs on
//! every core and a slow PUT holds back neither reading nor other objects.
//! The loop never waits on S3: it goes on polling the source (which keeps
//! the instance in its consumer group) and pauses the partitions instead
//! when the core is back-pressured.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::buffer::{BufferKey, Record};
use super::core::{ConversionOutcome, Core, Cut};
use super::encode::{EncodedObject, ObjectEncoder};
use super::naming;
use super::router::ErrorKind;
use super::sink::ObjectSink;
use super::source::{RecordSource, SourceError};
use super::stats::{DeliveryStats, LandedObject, SourceRange};
use crate::clock::SharedClock;
use crate::transform::event::Outcome;
use crate::transform::stage::Stage;
use crate::transform::{Processed, Transformer};

/// How often due buffers are checked and figures published, in wall time.
/// Under a `--speedup 300` clock this is 6 virtual seconds: fine against
/// intervals of minutes.
const TICK: Duration = Duration::from_millis(20);

/// How long shutdown keeps retrying the final PUTs before giving up; what it
/// gives up on stays uncommitted and is read again on the next start.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Most bytes read in one batch from the source.
const READ_BYTES: usize = 1024 * 1024;

/// Asks a running delivery to act now, answering once done.
#[derive(Debug)]
pub enum Command {
    /// Deliver every buffer, as if its interval had passed.
    Flush(oneshot::Sender<()>),
    /// Deliver the buffers whose interval has passed by the clock's now (the
    /// clock was moved).
    Tick(oneshot::Sender<()>),
}

/// What a write task reports: the cut's id, and what landed (nothing if it
/// was given up at shutdown).
struct Written {
    id: u64,
    landed: Option<Landed>,
}

/// A cut's objects, all landed, and what its conversion made of it.
struct Landed {
    objects: Vec<LandedObject>,
    conversion: Option<ConversionOutcome>,
}

/// Encodes and writes one object at a time, many at once.
pub struct Writer<K> {
    encoder: ObjectEncoder,
    sink: Arc<K>,
    stats: Arc<DeliveryStats>,
    clock: SharedClock,
    /// Fired when shutdown stops waiting: retries end.
    give_up: CancellationToken,
}

impl<K: ObjectSink> Writer<K> {
    pub fn new(encoder: ObjectEncoder, sink: Arc<K>, stats: Arc<DeliveryStats>, clock: SharedClock) -> Self {
        Writer { encoder, sink, stats, clock, give_up: CancellationToken::new() }
    }

    /// Encodes on a blocking thread, then PUTs until it lands.
    async fn write(self: Arc<Self>, cut: Cut) -> Written {
        let id = cut.id;
        let sources = SourceRange::of(cut.batch.records.iter().map(|r| (r.partition, r.offset)));
        let this = self.clone();
        let encoded = tokio::task::spawn_blocking(move || this.encoder.encode(cut.batch, this.clock.now_millis()))
            .await
            .expect("encoding does not panic");
        let encoded = match encoded {
            Ok(encoded) => encoded,
            Err(e) => {
                error!(error = %e, "cannot name an error object; its records stay uncommitted");
                return Written { id, landed: None };
            }
        };
        let mut objects = Vec::with_capacity(encoded.objects.len());
        for object in encoded.objects {
            let Some(landed) = self.put(object, &sources).await else {
                return Written { id, landed: None };
            };
            objects.push(landed);
        }
        Written { id, landed: Some(Landed { objects, conversion: encoded.conversion }) }
    }

    /// PUTs one object until it lands (`None`: given up at shutdown).
    async fn put(&self, object: EncodedObject, sources: &[SourceRange]) -> Option<LandedObject> {
        let attempts = std::sync::atomic::AtomicU64::new(0);
        let on_failure = |e: &super::sink::SinkError, backoff: Duration| {
            if attempts.fetch_add(1, Ordering::Relaxed) == 0 {
                self.stats.failing_writes.fetch_add(1, Ordering::SeqCst);
            }
            self.stats.record_put_failure(e.to_string(), attempts.load(Ordering::Relaxed));
            warn!(error = %e, retry_in = ?backoff, "PUT failed; retrying");
        };
        let (key, bytes) = (object.key, object.body.len() as u64);
        let landed =
            self.sink.put_until_landed(&key, object.body, object.content_encoding, &self.give_up, &on_failure).await;
        if attempts.load(Ordering::Relaxed) > 0 && self.stats.failing_writes.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.stats.failing_attempts.store(0, Ordering::SeqCst);
        }
        if !landed {
            return None;
        }
        self.stats.put_successes.fetch_add(1, Ordering::Relaxed);
        self.stats.failures_since_success.store(0, Ordering::SeqCst);
        debug!(%key, records = object.records, "landed");
        let landed_ms = self.clock.now_millis();
        Some(LandedObject { key, records: object.records, bytes, landed_ms, sources: sources.to_vec() })
    }
}

/// The Lambda transform in front of the core: records wait in the stage and
/// go through the function one batch at a time.
struct Transform {
    stage: Stage,
    transformer: Arc<Transformer>,
    running: JoinSet<Processed>,
    /// Flushes and ticks that apply to the core once the function has
    /// processed what they pushed out of the stage.
    deferred: Vec<Command>,
}

impl Transform {
    fn idle(&self) -> bool {
        self.running.is_empty() && self.stage.queued() == 0
    }

    /// Batches wait while one is invoked; past two, reading pauses.
    fn pressured(&self) -> bool {
        self.stage.queued() >= 2
    }
}

/// One delivery's loop.
pub struct Driver<S, K> {
    transform: Option<Transform>,
    core: Core,
    source: S,
    writer: Arc<Writer<K>>,
    writes: JoinSet<Written>,
    stats: Arc<DeliveryStats>,
    clock: SharedClock,
    /// Flushes and ticks waiting for every object cut below an id to land.
    waiters: Vec<(u64, oneshot::Sender<()>)>,
    batch: Vec<Record>,
    /// Since when reading is paused.
    paused: Option<std::time::Instant>,
}

/// What woke the loop.
enum Event {
    Shutdown,
    Written(Written),
    Command(Command),
    Tick,
    Read(Result<bool, SourceError>),
    Processed(Processed),
}

/// The next batch the function processed; pending without a transform.
async fn processed(transform: &mut Option<Transform>) -> Processed {
    match transform {
        Some(t) if !t.running.is_empty() => match t.running.join_next().await {
            Some(done) => done.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
            None => std::future::pending().await,
        },
        _ => std::future::pending().await,
    }
}

impl<S: RecordSource, K: ObjectSink> Driver<S, K> {
    pub fn new(core: Core, source: S, writer: Writer<K>, stats: Arc<DeliveryStats>, clock: SharedClock) -> Self {
        Driver {
            transform: None,
            core,
            source,
            writer: Arc::new(writer),
            writes: JoinSet::new(),
            stats,
            clock,
            waiters: Vec::new(),
            batch: Vec::new(),
            paused: None,
        }
    }

    /// Puts the Lambda transform (if the spec has one) in front of the core.
    pub fn with_transform(mut self, transformer: Option<Transformer>) -> Self {
        self.transform = transformer.map(|transformer| Transform {
            stage: Stage::new(transformer.processor.buffer),
            transformer: Arc::new(transformer),
            running: JoinSet::new(),
            deferred: Vec::new(),
        });
        self
    }

    /// Runs until `shutdown` fires (or a finite source ends), then delivers
    /// every buffer and commits. Fails on a fatal source error, after
    /// delivering what was read.
    pub async fn run(
        mut self,
        shutdown: CancellationToken,
        mut commands: mpsc::Receiver<Command>,
    ) -> Result<Arc<DeliveryStats>, SourceError> {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let outcome = loop {
            let room = self.room();
            let now = self.clock.now_millis();
            let event = tokio::select! {
                biased;
                () = shutdown.cancelled() => Event::Shutdown,
                Some(written) = self.writes.join_next(), if !self.writes.is_empty() => {
                    Event::Written(written.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())))
                }
                processed = processed(&mut self.transform) => Event::Processed(processed),
                Some(command) = commands.recv() => Event::Command(command),
                _ = tick.tick() => Event::Tick,
                read = self.source.recv(&mut self.batch, room, now) => Event::Read(read),
            };
            match event {
                Event::Shutdown | Event::Read(Ok(false)) => break Ok(()),
                Event::Read(Err(e)) => break Err(e),
                Event::Read(Ok(true)) => self.on_records(),
                Event::Written(written) => self.on_written(written),
                Event::Processed(processed) => self.on_processed(processed),
                Event::Command(command) => self.on_command(command),
                Event::Tick => {
                    if self.on_tick() {
                        break Ok(());
                    }
                }
            }
            self.after_event();
        };
        self.finish().await;
        let stats = self.stats.clone();
        self.source.close(self.core.committed()).await;
        outcome.map(|()| stats)
    }

    /// Bytes the core can take before the memory bound: the next read stops
    /// there, so at most one record crosses it.
    fn room(&self) -> usize {
        let left = self.core.max_buffered_bytes().saturating_sub(self.core.held_bytes());
        (left as usize).clamp(1, READ_BYTES)
    }

    fn on_records(&mut self) {
        let now = self.clock.now_millis();
        self.stats.first_read.get_or_init(std::time::Instant::now);
        match &mut self.transform {
            None => {
                for record in self.batch.drain(..) {
                    self.core.on_record(record, now);
                }
            }
            Some(t) => {
                for record in self.batch.drain(..) {
                    self.core.counters.records_read += 1;
                    self.core.counters.bytes_read += record.value.len() as u64;
                    t.stage.push(record, now);
                }
            }
        }
        // Records read before a rebalance are in the batch; revocations
        // apply after them and before anything read from a new assignment.
        self.apply_revocations();
    }

    fn on_written(&mut self, written: Written) {
        match written.landed {
            Some(landed) => {
                self.core.on_landed(written.id, landed.objects.len());
                if let Some(outcome) = &landed.conversion {
                    self.core.on_converted(outcome);
                }
                for object in landed.objects {
                    self.stats.record_landed(object);
                }
            }
            None => self.core.on_abandoned(written.id),
        }
    }

    /// Each record of a batch the function processed, in offset order, to
    /// the core (unless its partition was revoked meanwhile).
    fn on_processed(&mut self, processed: Processed) {
        let now = self.clock.now_millis();
        let Some(t) = &self.transform else { return };
        for (pending, outcome) in processed.batch.into_iter().zip(processed.outcomes) {
            if !t.stage.is_current(&pending) {
                continue;
            }
            let record = pending.record;
            match outcome {
                Outcome::Ok { value, partition_keys } => {
                    self.core.on_transformed(Record { value, ..record }, partition_keys.as_ref(), now)
                }
                Outcome::Dropped => self.core.on_dropped(record.partition, record.offset),
                Outcome::Failed { code, message, attempts } => {
                    let kind = ErrorKind::Lambda { code, message, attempts, arn: t.transformer.arn.clone() };
                    self.core.on_failed(&kind, record, now);
                }
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match &mut self.transform {
            None => self.apply_command(command),
            // What the stage lets go first goes through the function.
            Some(t) => {
                match &command {
                    Command::Flush(_) => t.stage.drain(),
                    Command::Tick(_) => t.stage.on_tick(self.clock.now_millis()),
                }
                t.deferred.push(command);
            }
        }
    }

    fn apply_command(&mut self, command: Command) {
        let (mark, reply) = match command {
            Command::Flush(reply) => (self.core.drain(), reply),
            Command::Tick(reply) => {
                self.core.on_tick(self.clock.now_millis());
                (self.core.cut_mark(), reply)
            }
        };
        self.waiters.push((mark, reply));
    }

    /// Returns whether the source is finished.
    fn on_tick(&mut self) -> bool {
        let now = self.clock.now_millis();
        if let Some(t) = &mut self.transform {
            t.stage.on_tick(now);
        }
        self.core.on_tick(now);
        if self.source.maintain() {
            self.stats.rejoins.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.owned_partitions.store(self.source.owned_partitions() as u64, Ordering::Relaxed);
        self.apply_revocations();
        self.publish(now);
        self.source.finished()
    }

    /// After every event: start writes for what was cut, store what may be
    /// committed, pause or resume reading, answer flushes that completed.
    fn after_event(&mut self) {
        self.invoke_next();
        self.dispatch();
        // Before answering flushes: whoever waited sees what landed, and
        // the freshness that goes with it (a scan of the open buffers, so
        // only when someone waits; ticks refresh it otherwise).
        if self.waiters.is_empty() {
            self.stats.publish(&self.core.counters);
        } else {
            self.publish_landed(self.clock.now_millis());
        }
        let commits = self.core.commits();
        if !commits.is_empty() {
            self.source.store(&commits);
        }
        let pressured = self.core.backpressured() || self.transform.as_ref().is_some_and(Transform::pressured);
        if pressured != self.paused.is_some() {
            self.source.set_paused(pressured);
            self.stats.backpressured.store(pressured, Ordering::Relaxed);
            match self.paused.take() {
                Some(since) => {
                    let ms = since.elapsed().as_millis() as u64;
                    self.stats.paused_ms.fetch_add(ms, Ordering::Relaxed);
                }
                None => {
                    self.stats.pauses.fetch_add(1, Ordering::Relaxed);
                    self.paused = Some(std::time::Instant::now());
                }
            }
        }
        if !self.waiters.is_empty() {
            let (done, waiting) =
                std::mem::take(&mut self.waiters).into_iter().partition(|(mark, _)| self.core.landed_below(*mark));
            self.waiters = waiting;
            for (_, reply) in done {
                let _ = reply.send(());
            }
        }
    }

    /// Starts the next invocation if none runs; applies deferred commands
    /// once the function has caught up with them.
    fn invoke_next(&mut self) {
        let Some(t) = &mut self.transform else { return };
        if t.running.is_empty() {
            if let Some(batch) = t.stage.take() {
                t.running.spawn(t.transformer.clone().process(batch, self.stats.lambda.clone()));
            }
        }
        self.stats.lambda.buffered.store(t.stage.records() as u64, Ordering::Relaxed);
        if t.idle() && !t.deferred.is_empty() {
            for command in std::mem::take(&mut t.deferred) {
                self.apply_command(command);
            }
        }
    }

    fn dispatch(&mut self) {
        while let Some(cut) = self.core.take_cut() {
            self.writes.spawn(self.writer.clone().write(cut));
        }
        self.stats.in_flight.store(self.writes.len() as u64, Ordering::Relaxed);
    }

    fn apply_revocations(&mut self) {
        let revoked = self.source.take_revoked();
        if !revoked.is_empty() {
            self.stats.revocations.fetch_add(revoked.len() as u64, Ordering::Relaxed);
            if let Some(t) = &mut self.transform {
                t.stage.on_revoked(&revoked);
            }
            self.core.on_revoked(&revoked);
        }
    }

    /// The counters and the freshness, which change together when objects
    /// land: a scrape never sees records delivered with the age of the
    /// records they were.
    fn publish_landed(&self, now: i64) {
        self.stats.publish(&self.core.counters);
        let oldest = self.core.oldest_unlanded_ms();
        self.stats.oldest_unlanded_ms.store(oldest.unwrap_or(i64::MIN), Ordering::Relaxed);
        let freshness = oldest.map_or(0, |oldest| (now - oldest).max(0));
        self.stats.freshness_ms.store(freshness, Ordering::Relaxed);
    }

    /// Figures for whoever watches: counters, buffers, freshness, positions.
    fn publish(&self, now: i64) {
        self.publish_landed(now);
        let buffers = self.core.buffers();
        self.stats.buffered_records.store(buffers.record_count() as u64, Ordering::Relaxed);
        self.stats.held_bytes.store(self.core.held_bytes(), Ordering::Relaxed);
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
        self.stats.set_buffered(labelled);
        self.stats.set_positions(self.source.positions());
    }

    /// Sends what waits for the function through it, for at most
    /// [`SHUTDOWN_GRACE`]; what is left is not committed and is read again.
    async fn finish_transform(&mut self) {
        let Some(t) = &mut self.transform else { return };
        t.stage.drain();
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        loop {
            self.invoke_next();
            let Some(t) = &mut self.transform else { return };
            if t.running.is_empty() {
                return;
            }
            match tokio::time::timeout_at(deadline, processed(&mut self.transform)).await {
                Ok(processed) => self.on_processed(processed),
                Err(_) => {
                    warn!("the Lambda function did not process the last records within {SHUTDOWN_GRACE:?}; their records stay uncommitted");
                    return;
                }
            }
        }
    }

    /// Delivers every buffer, waits (at most [`SHUTDOWN_GRACE`]) for the
    /// writes, then commits what landed and closes the source.
    async fn finish(&mut self) {
        info!("shutting down: delivering every buffer");
        self.finish_transform().await;
        self.core.drain();
        let deadline = tokio::time::sleep(SHUTDOWN_GRACE);
        tokio::pin!(deadline);
        loop {
            self.dispatch();
            let Some(written) = (tokio::select! {
                written = self.writes.join_next() => written,
                () = &mut deadline, if !self.writer.give_up.is_cancelled() => {
                    warn!("S3 did not take the last objects within {SHUTDOWN_GRACE:?}; their records stay uncommitted");
                    self.writer.give_up.cancel();
                    continue;
                }
            }) else {
                break;
            };
            self.on_written(written.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())));
        }
        let commits = self.core.commits();
        self.source.store(&commits);
        self.publish(self.clock.now_millis());
        self.stats.in_flight.store(0, Ordering::Relaxed);
    }
}
