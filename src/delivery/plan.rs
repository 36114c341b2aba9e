//! The one way a delivery is started: a [`Plan`] prepared once from a
//! validated spec and the process's local [`Settings`], then connected to
//! [`Endpoints`]. `deliver`, the stack (and through it `up`, `run` and the
//! sandbox), the benchmarks and the tests all start deliveries here, so the
//! pre-flight checks (the Lambda function has somewhere to run, the Glue
//! table exists) run once, before anything connects.

use std::path::PathBuf;
use std::sync::Arc;

use super::naming::{Namer, Randomness};
use super::sink::S3Sink;
use super::source::SourceSettings;
use super::state::StateStore;
use super::{DeliveryError, StreamParts, DEFAULT_ACTIVE_PARTITION_LIMIT, DEFAULT_MAX_BUFFERED_BYTES};
use crate::clock::SharedClock;
use crate::convert::Conversion;
use crate::spec::StreamSpec;
use crate::transform::Functions;

/// The limits one engine works within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineLimits {
    /// Most dynamic partitions open at once; records for more go to the
    /// error prefix (Firehose's default is 500).
    pub active_partition_limit: usize,
    /// Bound on bytes held in buffers and in objects being written. From
    /// half of it the fullest buffers are delivered early (with dynamic
    /// partitioning every buffer, at each quarter); while S3 is down reading
    /// pauses at it: memory stays bounded and the backlog stays in Kafka.
    pub max_buffered_bytes: u64,
    /// Objects encoded and written at once.
    pub max_in_flight: usize,
}

impl Default for EngineLimits {
    fn default() -> Self {
        EngineLimits {
            active_partition_limit: DEFAULT_ACTIVE_PARTITION_LIMIT,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            max_in_flight: super::default_max_in_flight(),
        }
    }
}

/// What every delivery of a process shares besides its spec: where Lambda
/// functions run, where Glue tables are, the clock, the randomness of key
/// names and the engine's limits.
#[derive(Clone)]
pub struct Settings {
    /// Where the specs' Lambda functions run (shared by a stack's streams).
    pub functions: Arc<Functions>,
    /// Where the Glue tables of format conversions are read from.
    pub glue_dir: PathBuf,
    pub clock: SharedClock,
    /// Seed for uuids and random strings in keys; `None` draws from the OS.
    pub seed: Option<u64>,
    pub limits: EngineLimits,
}

impl Settings {
    /// Firehose's defaults on `clock`, unseeded, no Lambda endpoint.
    pub fn new(clock: SharedClock) -> Self {
        Settings {
            functions: Arc::default(),
            glue_dir: PathBuf::from(crate::convert::DEFAULT_GLUE_DIR),
            clock,
            seed: None,
            limits: EngineLimits::default(),
        }
    }
}

/// Where a delivery reads, keeps its state and writes.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub source: SourceSettings,
    /// Where the stream's version, activation time and start offsets are
    /// kept.
    pub state: StateStore,
    pub sink: S3Sink,
}

/// One stream's delivery, checked and ready to connect: the spec with its
/// Glue table read and its Lambda function placed.
#[derive(Clone)]
pub struct Plan {
    spec: Arc<StreamSpec>,
    conversion: Option<Arc<Conversion>>,
    settings: Settings,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stream = self.spec.name();
        f.debug_struct("Plan").field("stream", &stream).field("limits", &self.settings.limits).finish()
    }
}

impl Plan {
    /// The pre-flight: refuses a Lambda processor with nowhere to run and a
    /// conversion whose Glue table is missing or unreadable.
    pub fn prepare(spec: StreamSpec, settings: &Settings) -> Result<Plan, DeliveryError> {
        if let Some(part) = spec.unemulated().first() {
            return Err(DeliveryError::Unemulated { stream: spec.name().to_owned(), part: part.to_string() });
        }
        settings.functions.config().check(&spec)?;
        let conversion = spec
            .conversion()
            .as_ref()
            .map(|c| Conversion::load(c, &settings.glue_dir).map(Arc::new))
            .transpose()
            .map_err(|source| DeliveryError::Glue { stream: spec.name().to_owned(), source })?;
        Ok(Plan { spec: Arc::new(spec), conversion, settings: settings.clone() })
    }

    pub fn spec(&self) -> &StreamSpec {
        &self.spec
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// What the engine is built from, for objects of stream `version`.
    pub fn parts(&self, version: u32) -> StreamParts {
        let randomness = self.settings.seed.map(Randomness::seeded).unwrap_or_else(Randomness::from_entropy);
        StreamParts {
            spec: self.spec.clone(),
            namer: Arc::new(Namer::new((*self.spec).clone(), version, randomness)),
            conversion: self.conversion.clone(),
        }
    }
}
