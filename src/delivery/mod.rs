//! The Firehose emulator: Kafka topic in, S3 objects out.
//!
//! The layout is the architecture:
//! - [`core`]: the engine, with no I/O: [`router`] (which buffer a record
//!   goes to, or which error), [`buffer`] (when an object is due),
//!   [`offsets`] (what may be committed) and the memory bound;
//! - [`driver`]: the loop around it, reading a [`source`], encoding
//!   ([`encode`], [`naming`]) and writing to a [`sink`] several objects at
//!   once, publishing [`stats`];
//! - [`state`]: the stream's version, activation and start offsets, kept
//!   where the stream's group is;
//! - [`plan`]: the one way a delivery starts (pre-flight checks, settings,
//!   endpoints);
//! - this module: wiring, and the handle a caller holds.

pub mod buffer;
pub mod core;
pub mod driver;
pub mod encode;
pub mod naming;
pub mod offsets;
pub mod plan;
pub mod router;
pub mod sink;
pub mod source;
pub mod state;
pub mod stats;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::info;

use self::core::{Core, CoreConfig};
use crate::clock::SharedClock;
use crate::convert::Conversion;
use crate::spec::StreamSpec;
use crate::transform::Transformer;
use driver::{Command, Driver, Writer};
use encode::ObjectEncoder;
use naming::Namer;
use router::Router;
use sink::{ObjectSink, S3Sink};
use source::{KafkaSource, RecordSource, SourceError};
use state::{StateError, StreamState, Transition};

pub use plan::{Endpoints, EngineLimits, Plan, Settings};

pub use router::{errors, MAX_RECORD_BYTES};
pub use stats::{DeliveryStats, LandedObject, PutFailure, SourceRange};

/// Default bound on bytes held in buffers and in objects being written.
pub const DEFAULT_MAX_BUFFERED_BYTES: u64 = 512 * 1024 * 1024;

/// Firehose's default limit of active dynamic partitions.
pub const DEFAULT_ACTIVE_PARTITION_LIMIT: usize = 500;

/// Objects encoded and written at once by default: one per core (at least
/// two, so a slow PUT does not stall the next object).
pub fn default_max_in_flight() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).max(2)
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Admin(#[from] crate::kafka::admin::AdminError),
    #[error(transparent)]
    Sink(#[from] sink::SinkError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Transform(#[from] crate::transform::TransformError),
    #[error("stream {stream}: {source}")]
    Glue { stream: String, source: crate::convert::glue::GlueError },
    #[error("stream {stream}: {part}. Remove it from the spec to run the stream locally")]
    Unemulated { stream: String, part: String },
}

/// A delivery running in the background.
pub struct DeliveryHandle {
    pub stream: String,
    pub state: StreamState,
    stats: Arc<DeliveryStats>,
    commands: mpsc::Sender<Command>,
    stop: CancellationToken,
    /// Taken by the first [`Self::stop`] or [`Self::abort`].
    task: std::sync::Mutex<Option<DeliveryTask>>,
}

type DeliveryTask = tokio::task::JoinHandle<Result<Arc<DeliveryStats>, DeliveryError>>;

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
                    if self.stats.retrying() {
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

    /// Whether the task ended (it only ends on its own after an error) or
    /// was stopped.
    pub fn is_finished(&self) -> bool {
        self.task.lock().expect("task lock").as_ref().is_none_or(|t| t.is_finished())
    }

    fn take_task(&self) -> Option<DeliveryTask> {
        self.task.lock().expect("task lock").take()
    }

    /// Stops at once, as a crash would: nothing more is delivered or
    /// committed; what was read but not committed is read again by the next
    /// instance.
    pub async fn abort(&self) {
        if let Some(task) = self.take_task() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Stops as [`Self::abort`] does, without waiting: the task ends at its
    /// next await (on a runtime worker, or when its runtime shuts down).
    /// What it returns tells when it ended, its consumer closed.
    pub fn abort_now(&self) -> Option<tokio::task::AbortHandle> {
        // Called from drops: a poisoned lock must not panic again.
        let task = self.task.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()?;
        task.abort();
        Some(task.abort_handle())
    }

    /// Stops: every buffer is delivered and the offsets committed. Once
    /// stopped, the statistics as they stand.
    pub async fn stop(&self) -> Result<Arc<DeliveryStats>, DeliveryError> {
        self.stop.cancel();
        match self.take_task() {
            Some(task) => task.await.expect("delivery task does not panic"),
            None => Ok(self.stats.clone()),
        }
    }
}

/// A delivery instance, connected and ready to run.
pub struct Delivery {
    plan: Plan,
    state: StreamState,
    source: KafkaSource,
    sink: S3Sink,
    stats: Arc<DeliveryStats>,
    transformer: Option<Transformer>,
}

impl Delivery {
    /// Checks the broker, topic and bucket, applies the spec to the stream's
    /// recorded state (version, activation, start offsets), then joins the
    /// consumer group (or takes every partition). Fails with a message naming
    /// the unreachable endpoint rather than retrying forever at start-up.
    pub async fn connect(plan: Plan, endpoints: Endpoints) -> Result<Self, DeliveryError> {
        let spec = plan.spec();
        let Endpoints { source: settings, state: store, sink } = endpoints;
        let sink = sink.with_kms_key(spec.sse_kms_key_id().map(str::to_owned));
        let kafka = settings.kafka.clone();
        let topic = spec.topic().to_owned();
        let partitions = tokio::task::spawn_blocking(move || crate::kafka::admin::check_topic(&kafka, &topic))
            .await
            .expect("metadata check does not panic")?;
        tracing::debug!("topic checked");
        sink.check().await?;
        tracing::debug!("bucket checked");
        let state = Self::resolve_state(spec, &settings, &store, plan.settings().clock.now_millis()).await?;
        let source = {
            let (group, topic, starts) = (state.group.clone(), spec.topic().to_owned(), state.start_offsets.clone());
            let share = !spec.dynamic_partitioning();
            tokio::task::spawn_blocking(move || KafkaSource::connect(&settings, &group, &topic, starts))
                .await
                .expect("connecting does not panic")?
                .share_allocations(share)
        };
        tracing::debug!("consumer created");
        let transformer = plan.settings().functions.transformer(spec).await?;
        info!(stream = %spec.name(), version = state.version, group = %state.group, topic = %spec.topic(),
            partitions = partitions.len(), bucket = sink.bucket(), "delivery connected");
        Ok(Self { plan, state, source, sink, stats: Arc::default(), transformer })
    }

    /// The stream's state with this spec applied, recorded where the stream
    /// keeps it. A new stream resolves where each partition starts now, once.
    async fn resolve_state(
        spec: &StreamSpec,
        source: &source::SourceSettings,
        store: &state::StateStore,
        now_ms: i64,
    ) -> Result<StreamState, DeliveryError> {
        let previous = store.load(spec.name()).await?;
        tracing::debug!("state loaded");
        let (mut state, transition) = StreamState::apply(previous.as_ref(), spec, now_ms);
        if matches!(transition, Transition::Created | Transition::Recreated) {
            let (kafka, topic, start) = (source.kafka.clone(), spec.topic().to_owned(), spec.start());
            let activated = state.activated_at_ms;
            state.start_offsets = tokio::task::spawn_blocking(move || {
                crate::kafka::admin::resolve_start_offsets(&kafka, &topic, start, activated)
            })
            .await
            .expect("resolving start offsets does not panic")?;
            tracing::debug!("start offsets resolved");
        }
        if transition != Transition::Unchanged {
            state = store.save(&state).await?;
            info!(stream = %spec.name(), version = state.version, ?transition, "stream state recorded");
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
        let (stream, state, stats) = (self.plan.spec().name().to_owned(), self.state.clone(), self.stats.clone());
        let task = tokio::spawn(self.run_with(stop.clone(), receiver));
        DeliveryHandle { stream, state, stats, commands, stop, task: std::sync::Mutex::new(Some(task)) }
    }

    /// Runs until `shutdown` fires, then delivers every buffer and commits.
    pub async fn run(self, shutdown: CancellationToken) -> Result<Arc<DeliveryStats>, DeliveryError> {
        let (_commands, receiver) = mpsc::channel(1);
        self.run_with(shutdown, receiver).await
    }

    async fn run_with(
        self,
        shutdown: CancellationToken,
        commands: mpsc::Receiver<Command>,
    ) -> Result<Arc<DeliveryStats>, DeliveryError> {
        let (parts, settings) = (self.plan.parts(self.state.version), self.plan.settings());
        let driver =
            engine(parts, settings.limits, self.source, Arc::new(self.sink), self.stats, settings.clock.clone())
                .with_transform(self.transformer);
        Ok(driver.run(shutdown, commands).await?)
    }
}

/// What one stream's engine is built from: the spec, how its objects are
/// named, and its conversion (the Glue table read) if it converts.
#[derive(Debug, Clone)]
pub struct StreamParts {
    pub spec: Arc<StreamSpec>,
    pub namer: Arc<Namer>,
    pub conversion: Option<Arc<Conversion>>,
}

/// The engine for a spec over any source and sink: the core, the writer
/// and the driver around them. [`Delivery`] runs it on Kafka and S3; the
/// engine benchmark on memory.
pub fn engine<S: RecordSource, K: ObjectSink>(
    stream: StreamParts,
    limits: EngineLimits,
    source: S,
    sink: Arc<K>,
    stats: Arc<DeliveryStats>,
    clock: SharedClock,
) -> Driver<S, K> {
    let StreamParts { spec, namer, conversion } = stream;
    let config = CoreConfig {
        hints: spec.buffer(),
        per_record_overhead: u64::from(spec.append_newline()),
        max_buffered_bytes: limits.max_buffered_bytes,
        max_in_flight: limits.max_in_flight.max(1),
    };
    let router = Router::new(spec.clone(), namer.clone(), limits.active_partition_limit);
    let core = Core::new(router, config);
    let writer = Writer::new(ObjectEncoder::new(spec, namer, conversion), sink, stats.clone(), clock.clone());
    Driver::new(core, source, writer, stats, clock)
}
