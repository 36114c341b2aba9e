//! What a stack is started with, and why it may refuse.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::scope::{RunScope, ScopeError};
use super::StreamLifecycle;
use crate::backend::external::ExternalSettings;
use crate::backend::{BackendError, BackendKind};
use crate::clock::ClockMode;
use crate::delivery::{DeliveryError, DEFAULT_ACTIVE_PARTITION_LIMIT, DEFAULT_MAX_BUFFERED_BYTES};
use crate::harness::HarnessError;
use crate::kafka::admin::{self, AdminError};
use crate::landing::LandingError;
use crate::producer::ProducerError;
use crate::spec::{self, SpecError, StreamSpec};
use crate::transform::FunctionsConfig;

/// Default partitions of the topics a stack creates.
pub const DEFAULT_PARTITIONS: i32 = 3;

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
    /// Where that temporary directory is made; default the system's
    /// temporary directory (`TMPDIR`, else `/tmp`).
    pub temp_parent: Option<PathBuf>,
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
    /// CloudWatch alarm files (`put-metric-alarm --cli-input-json`) or
    /// directories of them, defined when the stack starts.
    pub alarms: Vec<PathBuf>,
    /// Serve Kafka on this loopback port (local backends), so producers
    /// configured once keep their address across restarts; default a free
    /// port.
    pub kafka_port: Option<u16>,
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
            temp_parent: None,
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
            alarms: Vec::new(),
            kafka_port: None,
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

    /// Makes the temporary work directory (no `work_dir`) under `parent`:
    /// a memory file system such as `/dev/shm`, for a stack whose S3 files
    /// should cost no disk.
    pub fn temp_dir_in(mut self, parent: impl Into<PathBuf>) -> Self {
        self.temp_parent = Some(parent.into());
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
#[non_exhaustive]
pub enum StackError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Scope(#[from] ScopeError),
    #[error(transparent)]
    Kafka(#[from] AdminError),
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
    #[error("the stack already has a stream named {name:?}; stream names must be unique in a stack")]
    StreamExists { name: String },
    #[error("stream {name:?} reads an MSK topic: records reach it through its topic, not PutRecord; produce to the topic, or create a DirectPut stream to put to")]
    NotDirectPut { name: String },
    #[error("stream {name:?} is {state}: it can be changed once it is ACTIVE")]
    StreamBusy { name: String, state: StreamLifecycle },
    #[error("stream {stream}: {failure}; its records stay uncommitted and are retried until S3 takes them")]
    NotLanding { stream: String, failure: crate::delivery::PutFailure },
    #[error("not settled within {timeout:?}: {detail}")]
    SettleTimeout { timeout: Duration, detail: String },
    #[error("the delivery of stream {0:?} stopped (see the log above); restart the stack")]
    DeliveryStopped(String),
    #[error("the work directory {} is in use by another stack ({}); stop it first, or give this one another --work-dir", path.display(), holder.map_or_else(|| "its pid is unknown".to_owned(), |pid| format!("streamlab pid {pid}")))]
    WorkDirInUse { path: PathBuf, holder: Option<u32> },
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
/// Loads every alarm file named (`aws cloudwatch put-metric-alarm
/// --cli-input-json` JSON), directories expanded to their `*.json` files,
/// checked as `PutMetricAlarm` checks them.
pub fn load_alarms(paths: &[PathBuf]) -> Result<Vec<crate::cloudwatch::alarms::AlarmDefinition>, StackError> {
    let mut out: Vec<crate::cloudwatch::alarms::AlarmDefinition> = Vec::new();
    for file in json_files(paths, "--alarm", "alarm definitions")? {
        let text = std::fs::read_to_string(&file).map_err(|source| StackError::Io { path: file.clone(), source })?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            StackError::Options(format!(
                "--alarm {}: not JSON ({e}); give the JSON of `aws cloudwatch put-metric-alarm --cli-input-json`",
                file.display()
            ))
        })?;
        let definition = crate::cloudwatch::api::alarm_definition(&value)
            .map_err(|e| StackError::Options(format!("--alarm {}: {}", file.display(), e.message)))?;
        if out.iter().any(|d| d.name == definition.name) {
            return Err(StackError::Options(format!(
                "--alarm {}: a second alarm named {:?}; alarm names must be unique",
                file.display(),
                definition.name
            )));
        }
        out.push(definition);
    }
    Ok(out)
}

/// The files `paths` name, each directory expanded to its `*.json`
/// files; an empty directory is an error naming `flag`.
fn json_files(paths: &[PathBuf], flag: &str, what: &str) -> Result<Vec<PathBuf>, StackError> {
    spec::json_files(paths).map_err(|e| match e {
        spec::JsonFilesError::Empty { dir } => {
            StackError::Options(format!("{flag} {}: the directory holds no *.json {what}", dir.display()))
        }
        spec::JsonFilesError::Read { dir, source } => StackError::Io { path: dir, source },
    })
}

pub fn load_specs(paths: &[PathBuf]) -> Result<Vec<(PathBuf, StreamSpec)>, StackError> {
    if paths.is_empty() {
        return Err(StackError::Options(
            "no stream spec given; pass --spec FILE_OR_DIR (a CreateDeliveryStream JSON file, or a directory of them)"
                .into(),
        ));
    }
    let files = json_files(paths, "--spec", "stream specs")?;
    let mut out: Vec<(PathBuf, StreamSpec)> = Vec::new();
    for file in files {
        let spec = spec::load(&file)?;
        if let Some((other, _)) = out.iter().find(|(_, s): &&(PathBuf, StreamSpec)| s.name() == spec.name()) {
            return Err(StackError::Options(format!(
                "{} and {} both define stream {:?}; stream names must be unique in a stack",
                other.display(),
                file.display(),
                spec.name()
            )));
        }
        out.push((file, spec));
    }
    Ok(out)
}

impl StackOptions {
    /// Refuses partition counts Kafka would not create, before anything
    /// starts.
    pub fn validate(&self) -> Result<(), StackError> {
        admin::check_partitions("--partitions", self.partitions).map_err(|_| {
            StackError::Options(format!("--partitions must be between 1 and 10000; got {}", self.partitions))
        })?;
        for (topic, n) in &self.topics {
            admin::check_partitions(topic, *n).map_err(|_| {
                StackError::Options(format!("--topic {topic}={n}: partitions must be between 1 and 10000"))
            })?;
        }
        Ok(())
    }

    /// Partitions of `topic` when the stack creates it.
    pub fn partitions_of(&self, topic: &str) -> i32 {
        self.topics.get(topic).copied().unwrap_or(self.partitions)
    }
}
