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
//! - this module: wiring, and the handle a caller holds.

pub mod buffer;
pub mod core;
pub mod driver;
pub mod encode;
pub mod extract;
pub mod naming;
pub mod offsets;
pub mod router;
pub mod sink;
pub mod source;
pub mod state;
pub mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::info;

use self::core::{Core, CoreConfig};
use crate::clock::SharedClock;
use crate::convert::Conversion;
use crate::spec::StreamSpec;
use crate::transform::{Functions, Transformer};
use driver::{Command, Driver, Writer};
use encode::ObjectEncoder;
use naming::{Namer, Randomness};
use router::Router;
use sink::{ObjectSink, S3Sink};
use source::{KafkaSource, RecordSource, SourceError, SourceSettings};
use state::{StateError, StateStore, StreamState, Transition};

pub use router::{errors, MAX_RECORD_BYTES};
pub use stats::{DeliveryStats, LandedObject};

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
pub enum DeliveryError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] sink::SinkError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Transform(#[from] crate::transform::TransformError),
    #[error("stream {stream}: {source}")]
    Glue { stream: String, source: crate::convert::glue::GlueError },
}

/// The spec's conversion with its Glue table read from `glue_dir` (a
/// missing or unreadable table is refused before anything starts).
pub fn load_conversion(
    spec: &StreamSpec,
    glue_dir: &std::path::Path,
) -> Result<Option<Arc<Conversion>>, DeliveryError> {
    spec.conversion
        .as_ref()
        .map(|c| Conversion::load(c, glue_dir).map(Arc::new))
        .transpose()
        .map_err(|source| DeliveryError::Glue { stream: spec.name.clone(), source })
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
    /// Bound on bytes held in buffers and in objects being written. At the
    /// bound the largest buffer is delivered early; while S3 is down reading
    /// pauses there: memory stays bounded and the backlog stays in Kafka.
    pub max_buffered_bytes: u64,
    /// Objects encoded and written at once.
    pub max_in_flight: usize,
    /// Where the spec's Lambda function runs (shared by a stack's streams).
    pub functions: Arc<Functions>,
    /// Where the Glue tables of format conversions are read from.
    pub glue_dir: PathBuf,
}

impl DeliveryOptions {
    /// Firehose's defaults, unseeded.
    pub fn new(source: SourceSettings, state: StateStore) -> Self {
        DeliveryOptions {
            source,
            state,
            seed: None,
            active_partition_limit: DEFAULT_ACTIVE_PARTITION_LIMIT,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            max_in_flight: default_max_in_flight(),
            functions: Arc::default(),
            glue_dir: PathBuf::from(crate::convert::DEFAULT_GLUE_DIR),
        }
    }
}

/// The limits one engine works within.
#[derive(Debug, Clone, Copy)]
pub struct EngineLimits {
    pub active_partition_limit: usize,
    pub max_buffered_bytes: u64,
    pub max_in_flight: usize,
}

impl DeliveryOptions {
    pub fn limits(&self) -> EngineLimits {
        EngineLimits {
            active_partition_limit: self.active_partition_limit,
            max_buffered_bytes: self.max_buffered_bytes,
            max_in_flight: self.max_in_flight,
        }
    }
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
    spec: Arc<StreamSpec>,
    state: StreamState,
    source: KafkaSource,
    sink: S3Sink,
    clock: SharedClock,
    namer: Arc<Namer>,
    stats: Arc<DeliveryStats>,
    options: DeliveryOptions,
    transformer: Option<Transformer>,
    conversion: Option<Arc<Conversion>>,
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
        options.functions.config().check(&spec)?;
        let conversion = load_conversion(&spec, &options.glue_dir)?;
        let kafka = options.source.kafka.clone();
        let topic = spec.topic.clone();
        let partitions = tokio::task::spawn_blocking(move || source::check_topic(&kafka, &topic))
            .await
            .expect("metadata check does not panic")?;
        sink.check().await?;
        let state = Self::resolve_state(&spec, &options, clock.now_millis()).await?;
        let source = {
            let (settings, group, topic, starts) =
                (options.source.clone(), state.group.clone(), spec.topic.clone(), state.start_offsets.clone());
            tokio::task::spawn_blocking(move || KafkaSource::connect(&settings, &group, &topic, starts))
                .await
                .expect("connecting does not panic")?
        };
        let transformer = options.functions.transformer(&spec).await?;
        info!(stream = %spec.name, version = state.version, group = %state.group, topic = %spec.topic,
            partitions = partitions.len(), bucket = sink.bucket(), "delivery connected");
        let randomness = options.seed.map(Randomness::seeded).unwrap_or_else(Randomness::from_entropy);
        let namer = Arc::new(Namer::new(spec.clone(), state.version, randomness));
        Ok(Self {
            spec: Arc::new(spec),
            state,
            source,
            sink,
            clock,
            namer,
            stats: Arc::default(),
            options,
            transformer,
            conversion,
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
            let (kafka, topic, start) = (options.source.kafka.clone(), spec.topic.clone(), spec.start);
            let activated = state.activated_at_ms;
            state.start_offsets =
                tokio::task::spawn_blocking(move || source::resolve_start_offsets(&kafka, &topic, start, activated))
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
        commands: mpsc::Receiver<Command>,
    ) -> Result<Arc<DeliveryStats>, DeliveryError> {
        let stream = StreamParts { spec: self.spec, namer: self.namer, conversion: self.conversion };
        let driver = engine(stream, self.options.limits(), self.source, Arc::new(self.sink), self.stats, self.clock)
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
        hints: spec.buffer,
        per_record_overhead: u64::from(spec.append_newline),
        max_buffered_bytes: limits.max_buffered_bytes,
        max_in_flight: limits.max_in_flight.max(1),
    };
    let router =
        Router::new(spec.clone(), namer.clone(), limits.active_partition_limit).with_conversion(conversion.clone());
    let core = Core::new(router, config);
    let writer = Writer::new(ObjectEncoder::new(spec, namer, conversion), sink, stats.clone(), clock.clone());
    Driver::new(core, source, writer, stats, clock)
}
