//! A running local stack: a Kafka-protocol broker, an S3 API, and one Firehose
//! delivery per stream spec, on a clock the caller controls.
//!
//! This is the harness users run their own pipeline against, from any
//! language (through `streamlab up` / `streamlab run` and the control
//! endpoint in [`control`]) or from Rust tests directly:
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use streamlab::stack::{Stack, StackOptions};
//!
//! let stack = Stack::start(StackOptions::new(["fixtures/streams/orders-to-s3.json"]).seed(7)).await?;
//! // ... point the producer under test at stack.bootstrap() ...
//! stack.settle(Duration::from_secs(30)).await?; // everything written so far is read
//! stack.advance(Duration::from_secs(300)).await?; // the buffer interval passes
//! let landing = stack.landing(None).await?;
//! // insta::assert_yaml_snapshot!(landing);
//! stack.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! Stacks share nothing: each has its own broker and S3 server on free
//! ports, its own work directory (a temporary one unless given) and so its
//! own consumer groups and stream state. Parallel tests each start their own.

pub mod control;
pub mod run;
mod scope;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::backend::external::ExternalSettings;
use crate::backend::{Backend, BackendError, BackendKind, BackendOptions};
use crate::clock::{rfc3339_millis, ManualClock, ScaledClock, SharedClock, SystemClock};
use crate::delivery::sink::{self, S3Sink};
use crate::delivery::source::{Membership, SourceSettings};
use crate::delivery::state::{StateStore, TopicStateStore};
use crate::delivery::{
    Delivery, DeliveryError, DeliveryHandle, DeliveryOptions, DEFAULT_ACTIVE_PARTITION_LIMIT,
    DEFAULT_MAX_BUFFERED_BYTES,
};
use crate::events::Event;
use crate::faults::Faults;
use crate::harness::{self, HarnessError};
use crate::kafka::KafkaConnection;
use crate::landing::{self, Landing, LandingError};
pub use crate::producer::Timestamps;
use crate::producer::{self, ProducerError, ProducerStats};
use crate::spec::{self, SpecError, StreamSpec};
use crate::transform::{Functions, FunctionsConfig};
pub use scope::RunScope;

/// Default partitions of the topics a stack creates.
pub const DEFAULT_PARTITIONS: i32 = 3;

/// How the stack's clock moves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClockMode {
    /// Only when told (`advance`): buffer intervals pass instantly and
    /// deterministically. Starts at `start_ms`.
    Manual { start_ms: i64 },
    /// `speedup` times faster than the wall clock, from now.
    Scaled { speedup: f64 },
    /// The wall clock.
    System,
}

impl ClockMode {
    pub fn name(&self) -> &'static str {
        match self {
            ClockMode::Manual { .. } => "manual",
            ClockMode::Scaled { .. } => "scaled",
            ClockMode::System => "system",
        }
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// `CreateDeliveryStream` JSON files, or directories of them.
    pub specs: Vec<PathBuf>,
    /// Partitions of every topic the stack creates, unless `topics` says
    /// otherwise.
    pub partitions: i32,
    /// Partitions per topic; topics named here are created even when no spec
    /// reads them.
    pub topics: BTreeMap<String, i32>,
    pub clock: ClockMode,
    pub backend: BackendKind,
    /// Keep the broker log and the S3 data here; default is a temporary
    /// directory removed at shutdown.
    pub work_dir: Option<PathBuf>,
    /// Seeds uuids and random strings in keys, so a landing is reproducible
    /// byte for byte.
    pub seed: Option<u64>,
    /// Create topics on first write, as Kafka's `auto.create.topics.enable`
    /// does (the stack warns about topics no stream reads).
    pub auto_create_topics: bool,
    /// Wrap S3 and the broker so faults can be injected, with this seed.
    pub fault_seed: Option<u64>,
    pub active_partition_limit: usize,
    pub max_buffered_bytes: u64,
    /// Where the specs' Lambda functions run (`--lambda`, `--lambda-endpoint`).
    pub functions: FunctionsConfig,
    /// Where the Glue tables of format conversions are read from.
    pub glue_dir: PathBuf,
    /// Start the deliveries with the stack (default). Without, call
    /// [`Stack::start_deliveries`]: records written before then are before
    /// the streams' activation.
    pub start_deliveries: bool,
    /// For the external backend: where the cluster and S3 are; default from
    /// the environment.
    pub external: Option<ExternalSettings>,
    /// Give this run's streams, topics and keys names of their own (for a
    /// shared cluster and bucket); see [`RunScope`].
    pub scope: Option<RunScope>,
}

impl StackOptions {
    /// A stack for these specs with the defaults: 3 partitions per topic, a
    /// manual clock starting now, the local backend, a temporary work
    /// directory, topics auto-created.
    pub fn new<P: Into<PathBuf>>(specs: impl IntoIterator<Item = P>) -> Self {
        Self {
            specs: specs.into_iter().map(Into::into).collect(),
            partitions: DEFAULT_PARTITIONS,
            topics: BTreeMap::new(),
            clock: ClockMode::Manual { start_ms: chrono::Utc::now().timestamp_millis() },
            backend: BackendKind::Local,
            work_dir: None,
            seed: None,
            auto_create_topics: true,
            fault_seed: None,
            active_partition_limit: DEFAULT_ACTIVE_PARTITION_LIMIT,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            functions: FunctionsConfig::default(),
            glue_dir: PathBuf::from(crate::convert::DEFAULT_GLUE_DIR),
            start_deliveries: true,
            external: None,
            scope: None,
        }
    }

    pub fn partitions(mut self, partitions: i32) -> Self {
        self.partitions = partitions;
        self
    }

    /// Where the specs' Lambda functions run.
    pub fn functions(mut self, functions: FunctionsConfig) -> Self {
        self.functions = functions;
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// A manual clock starting at `start`.
    pub fn manual_clock(mut self, start: chrono::DateTime<chrono::Utc>) -> Self {
        self.clock = ClockMode::Manual { start_ms: start.timestamp_millis() };
        self
    }

    pub fn faults(mut self, seed: u64) -> Self {
        self.fault_seed = Some(seed);
        self
    }

    pub fn defer_deliveries(mut self) -> Self {
        self.start_deliveries = false;
        self
    }

    /// Runs in a scope of its own (see [`RunScope`]).
    pub fn scoped(mut self, scope: RunScope) -> Self {
        self.scope = Some(scope);
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("{0}")]
    Options(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Harness(#[from] HarnessError),
    #[error(transparent)]
    Delivery(Box<DeliveryError>),
    #[error(transparent)]
    Producer(Box<ProducerError>),
    #[error(transparent)]
    Landing(#[from] LandingError),
    #[error("cannot prepare the work directory {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the clock is {mode}, not manual: it cannot be advanced. Start the stack with --clock manual, or use `streamlab flush` to deliver every buffer now")]
    ClockNotManual { mode: &'static str },
    #[error("no stream named {name:?} in this stack; its streams are {}", known.join(", "))]
    UnknownStream { name: String, known: Vec<String> },
    #[error("not settled within {timeout:?}: {detail}")]
    SettleTimeout { timeout: Duration, detail: String },
    #[error("the delivery of stream {0:?} stopped (see the log above); restart the stack")]
    DeliveryStopped(String),
}

impl From<DeliveryError> for StackError {
    fn from(e: DeliveryError) -> Self {
        StackError::Delivery(Box::new(e))
    }
}

impl From<ProducerError> for StackError {
    fn from(e: ProducerError) -> Self {
        StackError::Producer(Box::new(e))
    }
}

/// Loads every spec named, expanding directories to their `*.json` files,
/// and refuses two specs with one stream name.
pub fn load_specs(paths: &[PathBuf]) -> Result<Vec<(PathBuf, StreamSpec)>, StackError> {
    if paths.is_empty() {
        return Err(StackError::Options(
            "no stream spec given; pass --spec FILE_OR_DIR (a CreateDeliveryStream JSON file, or a directory of them)"
                .into(),
        ));
    }
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|source| StackError::Io { path: path.clone(), source })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(StackError::Options(format!(
                    "--spec {}: the directory holds no *.json stream specs",
                    path.display()
                )));
            }
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    let mut out: Vec<(PathBuf, StreamSpec)> = Vec::new();
    for file in files {
        let spec = spec::load(&file)?;
        if let Some((other, _)) = out.iter().find(|(_, s)| s.name == spec.name) {
            return Err(StackError::Options(format!(
                "{} and {} both define stream {:?}; stream names must be unique in a stack",
                other.display(),
                file.display(),
                spec.name
            )));
        }
        out.push((file, spec));
    }
    Ok(out)
}

/// Where the stack keeps its files.
enum WorkDir {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

impl WorkDir {
    fn path(&self) -> &Path {
        match self {
            WorkDir::Temporary(t) => t.path(),
            WorkDir::Kept(p) => p,
        }
    }
}

/// A running stack. Call [`Stack::shutdown`] to deliver every buffer, commit
/// and stop; dropping it stops everything without delivering.
pub struct Stack {
    specs: Vec<StreamSpec>,
    options: StackOptions,
    backend: Backend,
    client: aws_sdk_s3::Client,
    clock: SharedClock,
    manual: Option<Arc<ManualClock>>,
    deliveries: RwLock<Vec<DeliveryHandle>>,
    /// Topics seen on the broker that no stream reads, warned about once.
    unread_warned: Arc<Mutex<BTreeSet<String>>>,
    stop_watch: CancellationToken,
    /// The specs' Lambda functions, shared by the deliveries.
    functions: Arc<Functions>,
    /// Stops the topic watcher when the stack is dropped.
    _watch_guard: tokio_util::sync::DropGuard,
    work: WorkDir,
}

/// Tells, once per topic, about topics no stream reads.
struct UnreadWarner {
    read: BTreeSet<String>,
    /// Topics the user asked for with `--topic`: no surprise there.
    created: BTreeSet<String>,
    warned: Arc<Mutex<BTreeSet<String>>>,
}

impl UnreadWarner {
    fn is_unread(&self, topic: &str) -> bool {
        !self.read.contains(topic) && !topic.starts_with("__")
    }

    fn check(&self, topics: &[String]) {
        for topic in topics.iter().filter(|t| self.is_unread(t)) {
            if self.warned.lock().expect("warned lock").insert(topic.clone()) && !self.created.contains(topic) {
                warn!(
                    "topic {topic:?} was created by a producer's first write, and no stream spec reads it; \
                     its records will not land. Check the producer's topic name against MSKSourceConfiguration.TopicName ({})",
                    self.read.iter().cloned().collect::<Vec<_>>().join(", ")
                );
            }
        }
    }
}

/// Per-stream figures, as `streamlab status` shows them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StreamStatus {
    pub stream: String,
    pub topic: String,
    pub bucket: String,
    pub version: u32,
    pub group: String,
    /// `DataReadFromSource.Records`.
    pub read: u64,
    pub bytes_read: u64,
    pub buffered_records: u64,
    pub buffered_bytes: u64,
    /// `DeliveryToS3.Records`.
    pub delivered: u64,
    /// `DeliveryToS3.ObjectCount`.
    pub objects: u64,
    pub error_records: u64,
    pub put_failures: u64,
    /// Records in the topic not yet read (`KafkaOffsetLag`); `None` when the
    /// broker did not answer.
    pub lag: Option<i64>,
    /// With a Lambda transform: its figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda: Option<LambdaStatus>,
    /// With format conversion: `SucceedConversion.Records` and
    /// `FailedConversion.Records`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion: Option<ConversionStatus>,
}

/// Format conversion's figures, Firehose's metric names in comments.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConversionStatus {
    /// `SucceedConversion.Records` / `.Bytes`.
    pub converted: u64,
    pub converted_bytes: u64,
    /// `FailedConversion.Records` / `.Bytes`.
    pub failed: u64,
    pub failed_bytes: u64,
}

/// A Lambda transform's figures, Firehose's metric names in comments.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LambdaStatus {
    pub function: String,
    /// `SucceedProcessing.Records`.
    pub ok: u64,
    /// `SucceedProcessing.Bytes`: what the function returned for them.
    pub ok_bytes: u64,
    pub dropped: u64,
    /// Records sent to `processing-failed`.
    pub failed: u64,
    /// Records waiting for an invocation.
    pub waiting: u64,
    pub invocations: u64,
    /// `ExecuteProcessing.Success`.
    pub success_ratio: f64,
    /// `ExecuteProcessing.Duration` of the last invocation.
    pub last_duration_ms: u64,
    pub last_error: Option<String>,
}

/// A topic on the broker that no stream reads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UnreadTopic {
    pub topic: String,
    pub records: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClockStatus {
    pub mode: String,
    pub now_ms: i64,
    pub now: String,
}

/// The stack's state at a glance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub clock: ClockStatus,
    /// Whether uuids and random strings in keys are seeded (reproducible).
    pub seeded: bool,
    pub streams: Vec<StreamStatus>,
    pub unread_topics: Vec<UnreadTopic>,
}

impl Status {
    /// The table `streamlab status` prints.
    pub fn render(&self) -> String {
        let mut out = format!("clock {} at {}\n", self.clock.mode, self.clock.now);
        let width = self.streams.iter().map(|s| s.stream.len()).max().unwrap_or(6).max(6);
        out += &format!(
            "{:<width$}  {:>7}  {:>9}  {:>9}  {:>7}  {:>6}  {:>5}  topic -> bucket\n",
            "stream", "read", "buffered", "delivered", "objects", "errors", "lag"
        );
        for s in &self.streams {
            out += &format!(
                "{:<width$}  {:>7}  {:>9}  {:>9}  {:>7}  {:>6}  {:>5}  {} -> s3://{}/ (version {})\n",
                s.stream,
                s.read,
                s.buffered_records,
                s.delivered,
                s.objects,
                s.error_records,
                s.lag.map_or_else(|| "?".into(), |l| l.to_string()),
                s.topic,
                s.bucket,
                s.version
            );
            if let Some(c) = &s.conversion {
                out += &format!(
                    "{:<width$}  Parquet: {} records converted ({} bytes), {} failed conversion (under format-conversion-failed)\n",
                    "", c.converted, c.converted_bytes, c.failed
                );
            }
            if let Some(l) = &s.lambda {
                let invocations = match l.invocations {
                    0 => "no invocation yet".to_owned(),
                    n => format!(
                        "{n} invocations, {:.0}% succeeded, the last took {} ms",
                        l.success_ratio * 100.0,
                        l.last_duration_ms
                    ),
                };
                out += &format!(
                    "{:<width$}  Lambda {}: {} Ok, {} dropped, {} failed, {} waiting; {invocations}\n",
                    "", l.function, l.ok, l.dropped, l.failed, l.waiting,
                );
                if let Some(e) = &l.last_error {
                    out += &format!("{:<width$}  last failed invocation: {e}\n", "");
                }
            }
        }
        for t in &self.unread_topics {
            out += &format!(
                "warning: topic {:?} holds {} records and no stream reads it; check the producer's topic name\n",
                t.topic, t.records
            );
        }
        out
    }
}

impl Stack {
    /// Starts the broker and S3, creates the topics and buckets, and (unless
    /// deferred) starts one delivery per spec. Returns once a producer can
    /// write and every delivery owns its partitions.
    pub async fn start(options: StackOptions) -> Result<Stack, StackError> {
        let specs: Vec<StreamSpec> = load_specs(&options.specs)?.into_iter().map(|(_, s)| s).collect();
        for spec in &specs {
            options.functions.check(spec).map_err(|e| StackError::Delivery(Box::new(e.into())))?;
            crate::delivery::load_conversion(spec, &options.glue_dir)?;
        }
        if !(1..=10_000).contains(&options.partitions) {
            return Err(StackError::Options(format!(
                "--partitions must be between 1 and 10000; got {}",
                options.partitions
            )));
        }
        for (topic, n) in &options.topics {
            if !(1..=10_000).contains(n) {
                return Err(StackError::Options(format!(
                    "--topic {topic}={n}: partitions must be between 1 and 10000"
                )));
            }
        }
        let work = match &options.work_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| StackError::Io { path: dir.clone(), source })?;
                WorkDir::Kept(dir.clone())
            }
            None => WorkDir::Temporary(
                tempfile::Builder::new()
                    .prefix("streamlab-stack-")
                    .tempdir()
                    .map_err(|source| StackError::Io { path: std::env::temp_dir(), source })?,
            ),
        };
        let backend = Backend::start_with(&BackendOptions {
            kind: options.backend,
            work_dir: work.path().to_owned(),
            fault_seed: options.fault_seed,
            auto_create_partitions: options.auto_create_topics.then_some(options.partitions),
            external: options.external.clone(),
        })
        .await?;
        let specs = match &options.scope {
            Some(scope) => specs.into_iter().map(|spec| scope.apply(spec)).collect(),
            None => specs,
        };

        let mut topics: BTreeMap<String, i32> = specs.iter().map(|s| (s.topic.clone(), options.partitions)).collect();
        topics.extend(options.topics.clone());
        let creates = topics.iter().map(|(topic, n)| harness::create_topic(&backend.kafka, topic, *n));
        futures::future::try_join_all(creates).await?;
        let client = sink::client(&backend.s3).await;
        // Someone else's buckets are theirs to create; delivery names a
        // missing one.
        if backend.kind != BackendKind::External {
            let buckets: BTreeSet<&str> = specs.iter().map(|s| s.bucket.as_str()).collect();
            futures::future::try_join_all(buckets.iter().map(|b| harness::create_bucket(&client, b))).await?;
        }

        let (clock, manual): (SharedClock, _) = match options.clock {
            ClockMode::Manual { start_ms } => {
                let manual = Arc::new(ManualClock::new(crate::clock::millis_to_datetime(start_ms)));
                (manual.clone(), Some(manual))
            }
            ClockMode::Scaled { speedup } => (Arc::new(ScaledClock::new(speedup)), None),
            ClockMode::System => (Arc::new(SystemClock), None),
        };
        let stop_watch = CancellationToken::new();
        let stack = Stack {
            functions: Arc::new(Functions::new(options.functions.clone())),
            specs,
            options,
            backend,
            client,
            clock,
            manual,
            deliveries: RwLock::new(Vec::new()),
            unread_warned: Arc::default(),
            stop_watch: stop_watch.clone(),
            _watch_guard: stop_watch.drop_guard(),
            work,
        };
        if stack.options.start_deliveries {
            stack.start_deliveries().await?;
        }
        // A cluster of someone else's holds topics this stack has no reason
        // to read; only a stack's own broker is watched for strays.
        if stack.backend.kind != BackendKind::External {
            stack.watch_unread_topics();
        }
        Ok(stack)
    }

    /// Starts one delivery per spec (when the stack was started with
    /// [`StackOptions::defer_deliveries`]). The streams become active now.
    pub async fn start_deliveries(&self) -> Result<(), StackError> {
        let mut deliveries = self.deliveries.write().await;
        if !deliveries.is_empty() {
            return Ok(());
        }
        let connects = self.specs.iter().map(|spec| {
            let sink = S3Sink::new(self.client.clone(), &spec.bucket, self.backend.s3.endpoint.as_deref());
            let options = DeliveryOptions {
                seed: self.options.seed,
                active_partition_limit: self.options.active_partition_limit,
                max_buffered_bytes: self.options.max_buffered_bytes,
                functions: self.functions.clone(),
                glue_dir: self.options.glue_dir.clone(),
                ..DeliveryOptions::new(
                    SourceSettings::new(self.backend.kafka.clone(), Membership::Assigned),
                    StateStore::Topic(TopicStateStore::new(self.backend.kafka.clone())),
                )
            };
            Delivery::connect(spec.clone(), options, sink, self.clock.clone())
        });
        for delivery in futures::future::try_join_all(connects).await? {
            info!(stream = %delivery.state().stream, version = delivery.state().version, "delivery started");
            deliveries.push(delivery.spawn());
        }
        Ok(())
    }

    /// Warns once per topic that appears on the broker without a stream
    /// reading it (a producer writing to the wrong topic, say).
    fn watch_unread_topics(&self) {
        let (kafka, stop) = (self.backend.kafka.clone(), self.stop_watch.clone());
        let warner = self.unread_warner();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let kafka = kafka.clone();
                let check = move || harness::list_topics_within(&kafka, Duration::from_millis(500));
                if let Ok(Ok(topics)) = tokio::task::spawn_blocking(check).await {
                    warner.check(&topics);
                }
            }
        });
    }

    fn unread_warner(&self) -> UnreadWarner {
        UnreadWarner {
            read: self.specs.iter().map(|s| s.topic.clone()).collect(),
            created: self.options.topics.keys().cloned().collect(),
            warned: self.unread_warned.clone(),
        }
    }

    pub fn bootstrap(&self) -> &str {
        self.backend.bootstrap()
    }

    /// Where this run's objects are: its scope's key prefix, or the whole
    /// bucket.
    pub fn key_scope(&self) -> &str {
        self.options.scope.as_ref().map_or("", |s| s.key_prefix())
    }

    /// The objects `spec` has written, read through the S3 API, with keys
    /// relative to the run's scope (as the unscoped spec would write them).
    pub async fn objects(&self, spec: &StreamSpec) -> Result<Vec<harness::StoredObject>, StackError> {
        let scope = self.key_scope();
        let mut objects = harness::read_under(&self.client, &spec.bucket, scope).await?;
        for object in &mut objects {
            object.key = object.key[scope.len()..].to_owned();
        }
        Ok(objects)
    }

    /// Removes what a scoped run left on a shared cluster and bucket: its
    /// topics and its objects. (Its consumer groups expire with the
    /// cluster's offset retention; its stream-state records stay in
    /// `__streamlab_stream_state`.) Nothing to do without a scope.
    pub async fn clean_up(&self) -> Result<(), StackError> {
        if self.options.scope.is_none() {
            return Ok(());
        }
        let topics: Vec<&str> = self.specs.iter().map(|s| s.topic.as_str()).collect();
        harness::delete_topics(&self.backend.kafka, &topics).await?;
        let buckets: BTreeSet<&str> = self.specs.iter().map(|s| s.bucket.as_str()).collect();
        for bucket in buckets {
            harness::delete_under(&self.client, bucket, self.key_scope()).await?;
        }
        Ok(())
    }

    /// How to reach the stack's broker, for clients made with streamlab's API.
    pub fn kafka(&self) -> &KafkaConnection {
        &self.backend.kafka
    }

    /// A client for the stack's S3 (path-style, its credentials).
    pub fn s3_client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// Endpoint, region and credentials of the stack's S3.
    pub fn s3_settings(&self) -> &crate::delivery::sink::S3Settings {
        &self.backend.s3
    }

    pub fn s3_endpoint(&self) -> Option<&str> {
        self.backend.s3.endpoint.as_deref()
    }

    pub fn specs(&self) -> &[StreamSpec] {
        &self.specs
    }

    pub fn spec(&self, stream: &str) -> Result<&StreamSpec, StackError> {
        self.specs.iter().find(|s| s.name == stream).ok_or_else(|| self.unknown(stream))
    }

    fn unknown(&self, stream: &str) -> StackError {
        StackError::UnknownStream {
            name: stream.to_owned(),
            known: self.specs.iter().map(|s| s.name.clone()).collect(),
        }
    }

    pub fn clock(&self) -> SharedClock {
        self.clock.clone()
    }

    pub fn clock_mode(&self) -> ClockMode {
        self.options.clock
    }

    /// Fault injection handles, when started with [`StackOptions::faults`].
    pub fn faults(&self) -> Option<&Faults> {
        self.backend.faults.as_ref()
    }

    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// Where the landed objects can be browsed as files (local backend).
    pub fn landing_dir(&self) -> Option<&Path> {
        self.backend.landing_dir.as_deref()
    }

    /// The environment a producer or reader needs: `KAFKA_BOOTSTRAP`,
    /// `AWS_ENDPOINT_URL_S3`, the credentials and region.
    pub fn env(&self) -> Vec<(String, String)> {
        let s3 = &self.backend.s3;
        let mut env = vec![("KAFKA_BOOTSTRAP".to_owned(), self.bootstrap().to_owned())];
        if let Some(endpoint) = &s3.endpoint {
            env.push(("AWS_ENDPOINT_URL_S3".into(), endpoint.clone()));
        }
        if let Some(c) = &s3.credentials {
            env.push(("AWS_ACCESS_KEY_ID".into(), c.access_key_id.clone()));
            env.push(("AWS_SECRET_ACCESS_KEY".into(), c.secret_access_key.clone()));
        }
        env.push(("AWS_REGION".into(), s3.region.clone().unwrap_or_else(|| "us-east-1".into())));
        env
    }

    /// Moves the manual clock forward, then lets every delivery deliver the
    /// buffers whose interval passed; returns the new time once they landed.
    pub async fn advance(&self, by: Duration) -> Result<i64, StackError> {
        let manual = self.manual.as_ref().ok_or(StackError::ClockNotManual { mode: self.options.clock.name() })?;
        manual.advance(by);
        for delivery in self.deliveries.read().await.iter() {
            delivery.tick().await;
        }
        Ok(self.clock.now_millis())
    }

    /// Sets the manual clock (forward or back), e.g. before deliveries start.
    pub fn set_clock(&self, to: chrono::DateTime<chrono::Utc>) -> Result<(), StackError> {
        let manual = self.manual.as_ref().ok_or(StackError::ClockNotManual { mode: self.options.clock.name() })?;
        manual.set(to);
        Ok(())
    }

    /// Delivers every buffer of `stream` (or of every stream) now, as if its
    /// interval had passed; returns once the objects landed.
    pub async fn flush(&self, stream: Option<&str>) -> Result<(), StackError> {
        if let Some(name) = stream {
            self.spec(name)?;
        }
        for delivery in self.deliveries.read().await.iter() {
            if stream.is_none_or(|s| s == delivery.stream) {
                delivery.flush().await;
            }
        }
        Ok(())
    }

    /// Returns once every record written to the streams' topics before the
    /// call has been read (buffered, or landed if its buffer was cut), and no
    /// object is still being written.
    pub async fn settle(&self, timeout: Duration) -> Result<(), StackError> {
        let started = Instant::now();
        let topics: BTreeSet<String> = self.specs.iter().map(|s| s.topic.clone()).collect();
        let mut ends: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
        for topic in topics {
            let (b, t) = (self.backend.kafka.clone(), topic.clone());
            let offsets = tokio::task::spawn_blocking(move || harness::end_offsets(&b, &t))
                .await
                .expect("end offsets do not panic")?;
            ends.insert(topic, offsets);
        }
        loop {
            let mut behind = Vec::new();
            for delivery in self.deliveries.read().await.iter() {
                if delivery.is_finished() {
                    return Err(StackError::DeliveryStopped(delivery.stream.clone()));
                }
                let spec = self.spec(&delivery.stream)?;
                let stats = delivery.stats();
                let positions = stats.positions();
                for (partition, end) in &ends[&spec.topic] {
                    let at = positions.get(partition).copied().unwrap_or(0);
                    if at < *end {
                        behind.push(format!(
                            "{} has read {}/{partition} up to offset {at} of {end}",
                            delivery.stream, spec.topic
                        ));
                    }
                }
                let in_flight = stats.in_flight.load(std::sync::atomic::Ordering::SeqCst);
                if in_flight > 0 {
                    behind.push(format!("{} is writing {in_flight} object(s)", delivery.stream));
                }
            }
            if behind.is_empty() {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(StackError::SettleTimeout { timeout, detail: behind.join("; ") });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Figures per stream, topics no stream reads, and the clock.
    pub async fn status(&self) -> Status {
        let deliveries = self.deliveries.read().await;
        let mut streams = Vec::new();
        for spec in &self.specs {
            let delivery = deliveries.iter().find(|d| d.stream == spec.name);
            let stats = delivery.map(|d| d.stats()).unwrap_or_default();
            let (b, t) = (self.backend.kafka.clone(), spec.topic.clone());
            let positions = stats.positions();
            let lag =
                tokio::task::spawn_blocking(move || harness::end_offsets(&b, &t)).await.ok().and_then(Result::ok).map(
                    |ends| ends.iter().map(|(p, end)| (end - positions.get(p).copied().unwrap_or(0)).max(0)).sum(),
                );
            let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
            streams.push(StreamStatus {
                stream: spec.name.clone(),
                topic: spec.topic.clone(),
                bucket: spec.bucket.clone(),
                version: delivery.map_or(0, |d| d.state.version),
                group: delivery.map_or_else(String::new, |d| d.state.group.clone()),
                read: stats.read(),
                bytes_read: load(&stats.bytes_read),
                buffered_records: load(&stats.buffered_records),
                buffered_bytes: stats.buffered_bytes().values().sum(),
                delivered: stats.delivered(),
                objects: load(&stats.objects),
                error_records: load(&stats.error_records),
                put_failures: load(&stats.put_failures),
                lag,
                conversion: spec.conversion.as_ref().map(|_| ConversionStatus {
                    converted: load(&stats.converted_records),
                    converted_bytes: load(&stats.converted_bytes),
                    failed: load(&stats.conversion_failed_records),
                    failed_bytes: load(&stats.conversion_failed_bytes),
                }),
                lambda: spec.lambda.as_ref().map(|l| LambdaStatus {
                    function: l.arn.clone(),
                    ok: load(&stats.lambda.ok),
                    ok_bytes: load(&stats.lambda.ok_bytes),
                    dropped: load(&stats.lambda.dropped),
                    failed: load(&stats.lambda.failed),
                    waiting: load(&stats.lambda.buffered),
                    invocations: load(&stats.lambda.invocations),
                    success_ratio: stats.lambda.success_ratio(),
                    last_duration_ms: load(&stats.lambda.last_duration_ms),
                    last_error: stats.lambda.last_error(),
                }),
            });
        }
        let b = self.backend.kafka.clone();
        let warner = self.unread_warner();
        let unread_topics = tokio::task::spawn_blocking(move || -> Vec<UnreadTopic> {
            let Ok(topics) = harness::list_topics(&b) else { return Vec::new() };
            warner.check(&topics);
            topics
                .into_iter()
                .filter(|t| warner.is_unread(t))
                .map(|topic| {
                    let records = harness::topic_records(&b, &topic).unwrap_or(0);
                    UnreadTopic { topic, records }
                })
                .collect()
        })
        .await
        .unwrap_or_default();
        let now_ms = self.clock.now_millis();
        Status {
            clock: ClockStatus { mode: self.options.clock.name().into(), now_ms, now: rfc3339_millis(now_ms) },
            seeded: self.options.seed.is_some(),
            streams,
            unread_topics,
        }
    }

    /// What landed for `stream` (or every stream), read back through S3.
    pub async fn landing(&self, stream: Option<&str>) -> Result<Landing, StackError> {
        let specs: Vec<StreamSpec> = match stream {
            Some(name) => vec![self.spec(name)?.clone()],
            None => self.specs.clone(),
        };
        let mut landing = landing::read(&self.client, &specs, self.key_scope()).await?;
        for (stream, spec) in landing.streams.iter_mut().zip(&specs) {
            if spec.lambda.is_some() {
                stream.transform = self.stats(&spec.name).await.ok().map(|s| landing::TransformCounts::of(&s));
            }
        }
        Ok(landing)
    }

    /// Evaluates expectations against what landed and what the topics hold.
    pub async fn check(
        &self,
        expectations: &[crate::checks::expect::Expectation],
    ) -> Result<Vec<crate::checks::expect::Outcome>, StackError> {
        use crate::checks::expect::{self, StreamEvidence};
        let (raw, strangers) = landing::read_raw(&self.client, &self.specs, self.key_scope()).await?;
        let mut sources = Vec::new();
        for spec in &self.specs {
            let start = {
                let deliveries = self.deliveries.read().await;
                let delivery = deliveries.iter().find(|d| d.stream == spec.name);
                delivery.map(|d| d.state.start_offsets.clone()).unwrap_or_default()
            };
            let (b, t) = (self.backend.kafka.clone(), spec.topic.clone());
            let values = tokio::task::spawn_blocking(move || {
                let ends = harness::end_offsets(&b, &t)?;
                harness::read_range(&b, &t, &start, &ends, Duration::from_secs(60))
            })
            .await
            .expect("reading the topic does not panic")?;
            sources.push(values);
        }
        let mut dropped = Vec::new();
        for spec in &self.specs {
            let stats = self.stats(&spec.name).await.ok();
            dropped.push(
                spec.lambda
                    .as_ref()
                    .map(|_| stats.map_or(0, |s| s.lambda.dropped.load(std::sync::atomic::Ordering::Relaxed))),
            );
        }
        let evidence: Vec<StreamEvidence<'_>> = self
            .specs
            .iter()
            .zip(sources)
            .zip(&raw)
            .zip(dropped)
            .map(|(((spec, source), (_, objects)), dropped)| StreamEvidence { spec, source, objects, dropped })
            .collect();
        Ok(expect::evaluate(expectations, &evidence, &strangers))
    }

    /// Publishes events to `topic` with streamlab's producer, record
    /// timestamps from the stack's clock; returns how many the broker
    /// acknowledged (all, or an error).
    pub async fn produce(&self, topic: &str, events: impl IntoIterator<Item = Event>) -> Result<u64, StackError> {
        self.produce_with(topic, events, Timestamps::Clock).await
    }

    /// [`Stack::produce`] with record timestamps from the clock or from each
    /// event's `occurred_at`.
    pub async fn produce_with(
        &self,
        topic: &str,
        events: impl IntoIterator<Item = Event>,
        timestamps: Timestamps,
    ) -> Result<u64, StackError> {
        let stats = Arc::new(ProducerStats::default());
        producer::publish_with(
            &self.backend.kafka,
            topic,
            None,
            events.into_iter(),
            self.clock.clone(),
            timestamps,
            stats.clone(),
            CancellationToken::new(),
        )
        .await?;
        Ok(stats.acked())
    }

    /// The running deliveries' statistics, by stream.
    pub async fn stats(&self, stream: &str) -> Result<Arc<crate::delivery::DeliveryStats>, StackError> {
        let deliveries = self.deliveries.read().await;
        deliveries.iter().find(|d| d.stream == stream).map(|d| d.stats()).ok_or_else(|| self.unknown(stream))
    }

    /// Delivers every buffer, commits and stops the deliveries; returns each
    /// stream's final statistics. The broker and S3 keep answering (to read
    /// the landing) until the stack is dropped.
    pub async fn shutdown(&self) -> Result<BTreeMap<String, Arc<crate::delivery::DeliveryStats>>, StackError> {
        self.stop_watch.cancel();
        let deliveries = std::mem::take(&mut *self.deliveries.write().await);
        let mut out = BTreeMap::new();
        let mut first_error = None;
        for delivery in deliveries {
            let stream = delivery.stream.clone();
            match delivery.stop().await {
                Ok(stats) => {
                    out.insert(stream, stats);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.functions.stop().await;
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(out),
        }
    }
}
