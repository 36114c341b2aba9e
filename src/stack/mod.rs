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

pub mod cloudwatch;
pub mod control;
mod error_log;
pub mod firehose;
pub mod intake;
mod options;
mod readback;
pub mod run;
mod scope;
mod serve;
mod status;
mod work_dir;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::backend::{Backend, BackendKind, BackendOptions};
use crate::clock::{Clock as _, ManualClock, SharedClock};
use crate::delivery::sink::{self, S3Sink};
use crate::delivery::source::{Membership, SourceSettings};
use crate::delivery::state::{StateStore, TopicStateStore};
use crate::delivery::{Delivery, DeliveryHandle, DeliveryStats, Endpoints, EngineLimits, Plan, Settings};
use crate::events::Event;
use crate::faults::Faults;
use crate::harness;
use crate::kafka::{admin, KafkaConnection};
use crate::producer::{self, ProducerStats};
use crate::spec::StreamSpec;
use crate::transform::Functions;
use intake::{Intake, PutOutcome, Putter};
use work_dir::WorkDir;

pub use crate::clock::ClockMode;
pub use crate::producer::Timestamps;
pub use options::{load_alarms, load_specs, StackError, StackOptions, DEFAULT_PARTITIONS};
pub use scope::{RunScope, ScopeError};
pub use status::{AlarmStatus, ClockStatus, ConversionStatus, LambdaStatus, Status, StreamStatus, UnreadTopic};

/// Failed attempts after which an object that does not land, while no PUT
/// of its stream succeeds, is an error of `advance`, `flush` and `settle`
/// rather than a retry to wait out (with the PUT backoff, about 3 s). S3
/// failing now and then (the fault tests fail 37% of PUTs) is retried.
pub const MAX_FAILED_ATTEMPTS: u64 = 6;

/// How many deliveries connect at once. Each connect makes blocking
/// librdkafka calls (topic check, state, start offsets, consumer) on the
/// runtime's blocking pool, one after another; all of 100 streams at once
/// grew that pool by about a thread per stream, more on a slower machine,
/// for round trips the broker answers one core's worth at a time anyway.
const CONCURRENT_CONNECTS: usize = 16;

/// Where a stream is in its life, as Firehose's `DeliveryStreamStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StreamLifecycle {
    /// Added; its topic and bucket exist, its delivery is connecting (or,
    /// with deferred deliveries, waits for [`Stack::start_deliveries`]).
    Creating,
    /// Its delivery owns its partitions and delivers.
    #[default]
    Active,
    /// Being removed: its delivery delivers what it holds, then stops.
    Deleting,
}

impl std::fmt::Display for StreamLifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StreamLifecycle::Creating => "CREATING",
            StreamLifecycle::Active => "ACTIVE",
            StreamLifecycle::Deleting => "DELETING",
        })
    }
}

/// One of Firehose's error-log events, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub stream: String,
    pub group: String,
    pub log_stream: String,
    pub timestamp_ms: i64,
    pub message: String,
}

/// A stream as the stack runs it.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    pub spec: StreamSpec,
    pub lifecycle: StreamLifecycle,
    /// The stream's version, once its delivery runs.
    pub version: Option<u32>,
    /// When the stream became active (where a new stream starts reading),
    /// once its delivery runs.
    pub activated_at_ms: Option<i64>,
}

/// One stream of the stack.
struct Stream {
    plan: Plan,
    lifecycle: StreamLifecycle,
    delivery: Option<Arc<DeliveryHandle>>,
    /// What was put to a DirectPut stream (unused for MSK streams).
    intake: Arc<Intake>,
    /// The specs it ran with before its updates, oldest first: their
    /// objects are the stream's too.
    earlier: Vec<StreamSpec>,
}

/// The stack's streams, in the order they were added. Held briefly, never
/// across an await: callers take what they need and let go.
#[derive(Default)]
struct Streams(Mutex<Vec<Stream>>);

impl Streams {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Stream>> {
        self.0.lock().expect("streams lock")
    }

    fn specs(&self) -> Vec<StreamSpec> {
        self.lock().iter().map(|s| s.plan.spec().clone()).collect()
    }

    /// Each stream's specs over its life.
    fn histories(&self) -> Vec<crate::landing::StreamHistory> {
        self.lock()
            .iter()
            .map(|s| crate::landing::StreamHistory { current: s.plan.spec().clone(), earlier: s.earlier.clone() })
            .collect()
    }

    fn topics(&self) -> BTreeSet<String> {
        self.lock().iter().map(|s| s.plan.spec().topic().to_owned()).collect()
    }

    /// Each stream's spec with its running delivery, if any.
    fn running(&self) -> Vec<(StreamSpec, Option<Arc<DeliveryHandle>>)> {
        self.lock().iter().map(|s| (s.plan.spec().clone(), s.delivery.clone())).collect()
    }

    /// The intake of `stream` (a fresh one for a stream not there).
    fn intake(&self, stream: &str) -> Arc<Intake> {
        self.lock().iter().find(|s| s.plan.spec().name() == stream).map(|s| s.intake.clone()).unwrap_or_default()
    }

    fn delivery(&self, stream: &str) -> Option<Arc<DeliveryHandle>> {
        self.lock().iter().find(|s| s.plan.spec().name() == stream).and_then(|s| s.delivery.clone())
    }

    /// Takes the delivery of an ACTIVE stream after `change` is applied to
    /// it; refuses an unknown stream and one that is CREATING or DELETING.
    fn take_active(
        &self,
        name: &str,
        change: impl FnOnce(&mut Stream),
    ) -> Result<Option<Arc<DeliveryHandle>>, StackError> {
        let mut streams = self.lock();
        let Some(stream) = streams.iter_mut().find(|s| s.plan.spec().name() == name) else {
            return Err(unknown(&streams, name));
        };
        if stream.lifecycle != StreamLifecycle::Active {
            return Err(StackError::StreamBusy { name: name.to_owned(), state: stream.lifecycle });
        }
        change(stream);
        Ok(stream.delivery.take())
    }
}

/// The error for a stream the stack does not have, naming those it has.
fn unknown(streams: &[Stream], name: &str) -> StackError {
    StackError::UnknownStream {
        name: name.to_owned(),
        known: streams.iter().map(|s| s.plan.spec().name().to_owned()).collect(),
    }
}

/// A running stack. Call [`Stack::shutdown`] to deliver every buffer, commit
/// and stop; dropping it stops everything without delivering.
pub struct Stack {
    options: StackOptions,
    /// Writes what DirectPut streams are put. Before the backend, so it is
    /// dropped while the broker still answers.
    putter: Putter,
    /// CloudWatch's metrics and alarms of the streams, on the stack's clock.
    monitor: Arc<crate::cloudwatch::Monitor>,
    /// CloudWatch Logs, with Firehose's delivery-error events.
    error_log: Arc<error_log::ErrorLog>,
    client: aws_sdk_s3::Client,
    /// What every delivery of the stack shares: functions, Glue tables,
    /// clock, seed, limits.
    settings: Settings,
    manual: Option<Arc<ManualClock>>,
    streams: Arc<Streams>,
    /// Topics seen on the broker that no stream reads, warned about once.
    unread_warned: Arc<Mutex<BTreeSet<String>>>,
    stop_watch: CancellationToken,
    /// The topic watcher's, the metrics sampler's and `status`'s one Kafka
    /// client. Before the backend: its goodbye needs the broker.
    metadata: Arc<admin::MetadataClient>,
    /// Stops the topic watcher when the stack is dropped.
    _watch_guard: tokio_util::sync::DropGuard,
    /// After the streams: a stack dropped without `shutdown` (a failed test)
    /// stops its deliveries while the broker still answers their consumers'
    /// goodbyes; the other way round each waited out its timeouts, about
    /// 2 s per stream.
    backend: Backend,
    work: WorkDir,
    /// The clock's time when the stack started: what its usage spans.
    started_ms: i64,
}

impl Drop for Stack {
    /// A stack dropped without [`Stack::shutdown`] (a test that failed and
    /// returned early): its deliveries stop as a crash would, and the
    /// built-in broker serves until their consumers have closed. Their
    /// tasks end on the caller's runtime, at the latest when it shuts down,
    /// after this drop; a broker stopped first left each consumer's goodbye
    /// to time out, 10 s per stream (100 streams: 8 minutes).
    fn drop(&mut self) {
        // Not `Streams::lock`: a test that panicked holding the lock would
        // turn this drop, during its unwinding, into an abort.
        let mut streams = self.streams.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let running: Vec<tokio::task::AbortHandle> =
            streams.iter_mut().filter_map(|s| s.delivery.take()).filter_map(|delivery| delivery.abort_now()).collect();
        drop(streams);
        if !running.is_empty() {
            self.backend.serve_until(move || running.iter().all(tokio::task::AbortHandle::is_finished));
        }
    }
}

/// Tells, once per topic, about topics no stream reads.
struct UnreadWarner {
    streams: Arc<Streams>,
    /// Topics the user asked for with `--topic`: no surprise there.
    created: BTreeSet<String>,
    warned: Arc<Mutex<BTreeSet<String>>>,
}

impl UnreadWarner {
    fn unread(&self, topics: Vec<String>) -> Vec<String> {
        let read = self.streams.topics();
        topics.into_iter().filter(|t| !read.contains(t) && !t.starts_with("__")).collect()
    }

    fn check(&self, topics: &[String]) {
        let read = self.streams.topics();
        for topic in self.unread(topics.to_vec()) {
            if self.warned.lock().expect("warned lock").insert(topic.clone()) && !self.created.contains(&topic) {
                warn!(
                    "topic {topic:?} was created by a producer's first write, and no stream spec reads it; \
                     its records will not land. Check the producer's topic name against MSKSourceConfiguration.TopicName ({})",
                    read.iter().filter(|t| !t.starts_with("__")).cloned().collect::<Vec<_>>().join(", ")
                );
            }
        }
    }
}

impl Stack {
    /// Starts the broker and S3, creates the topics and buckets, and (unless
    /// deferred) starts one delivery per spec. Returns once a producer can
    /// write and every delivery owns its partitions. Specs and options are
    /// checked before anything starts.
    pub async fn start(options: StackOptions) -> Result<Stack, StackError> {
        options.validate()?;
        let specs: Vec<StreamSpec> = match options.specs.is_empty() {
            true => Vec::new(),
            false => load_specs(&options.specs)?.into_iter().map(|(_, s)| s).collect(),
        };
        let specs: Vec<StreamSpec> = match &options.scope {
            Some(scope) => specs.into_iter().map(|spec| scope.apply(spec)).collect::<Result<_, _>>()?,
            None => specs,
        };
        let alarms = options::load_alarms(&options.alarms)?;
        let work = WorkDir::open(options.work_dir.as_deref(), options.temp_parent.as_deref())?;
        let (clock, manual) = options.clock.start();
        if let (Some(manual), Some(saved)) = (&manual, work.saved_clock()) {
            // Time does not go backwards across a restart on the same work
            // dir: objects keep their order and buffers their age.
            let behind = saved.saturating_sub(manual.now_millis());
            if behind > 0 {
                manual.advance(Duration::from_millis(behind.unsigned_abs()));
                info!(at = %crate::clock::rfc3339_millis(saved), "manual clock resumed where the work dir's last stack left it");
            }
        }
        let settings = Settings {
            functions: Arc::new(Functions::new(options.functions.clone())),
            glue_dir: options.glue_dir.clone(),
            clock,
            seed: options.seed,
            limits: EngineLimits {
                active_partition_limit: options.active_partition_limit,
                max_buffered_bytes: options.max_buffered_bytes,
                ..EngineLimits::default()
            },
        };
        let plans = specs.into_iter().map(|spec| Plan::prepare(spec, &settings)).collect::<Result<Vec<_>, _>>()?;

        let backend = Backend::start_with(&BackendOptions {
            kind: options.backend,
            work_dir: work.path().to_owned(),
            fault_seed: options.fault_seed,
            auto_create_partitions: options.auto_create_topics.then_some(options.partitions),
            external: options.external.clone(),
            broker_data: work.broker_data(),
            broker_port: options.kafka_port,
        })
        .await?;
        let creates = options.topics.iter().map(|(topic, n)| admin::create_topic(&backend.kafka, topic, *n));
        futures::future::try_join_all(creates).await?;
        let client = sink::client(&backend.s3).await;
        let stop_watch = CancellationToken::new();
        let (backend_kafka, max_buffered_bytes) = (backend.kafka.clone(), options.max_buffered_bytes);
        let started_ms = settings.clock.now_millis();
        let metadata = Arc::new(admin::MetadataClient::new(&backend.kafka)?);
        let stack = Stack {
            options,
            metadata,
            backend,
            client,
            settings,
            manual,
            streams: Arc::default(),
            unread_warned: Arc::default(),
            stop_watch: stop_watch.clone(),
            _watch_guard: stop_watch.drop_guard(),
            putter: Putter::new(backend_kafka, max_buffered_bytes),
            monitor: Arc::default(),
            error_log: Arc::default(),
            work,
            started_ms,
        };
        for alarm in alarms {
            stack.monitor.put_alarm(alarm, stack.settings.clock.now_millis());
        }
        stack.register(plans).await?;
        if stack.options.start_deliveries {
            stack.start_deliveries().await?;
        }
        // A cluster of someone else's holds topics this stack has no reason
        // to read; only a stack's own broker is watched for strays.
        if stack.backend.kind != BackendKind::External {
            stack.watch_unread_topics();
        }
        stack.watch_metrics();
        Ok(stack)
    }

    /// The stack's CloudWatch: metrics of every stream and the alarms on
    /// them.
    pub fn monitor(&self) -> &Arc<crate::cloudwatch::Monitor> {
        &self.monitor
    }

    /// Samples the streams' figures for CloudWatch at the clock's time: the
    /// minutes crossed since the last sample get their datapoints and the
    /// alarms due are evaluated.
    pub async fn sample_metrics(&self) {
        let limit = self.settings.limits.active_partition_limit;
        let figures = figures(&self.streams, &self.metadata, limit).await;
        let now = self.settings.clock.now_millis();
        self.error_log.record(&self.streams, now);
        self.monitor.sample(now, figures);
    }

    /// Every stream's Firehose metrics as a Prometheus page (`GET
    /// /metrics` on the control endpoint).
    pub async fn prometheus(&self) -> String {
        let limit = self.settings.limits.active_partition_limit;
        let figures = figures(&self.streams, &self.metadata, limit).await;
        crate::cloudwatch::prometheus::render(&figures, self.settings.clock.now_millis())
    }

    /// The stack's CloudWatch Logs.
    pub fn logs(&self) -> &Arc<crate::cloudwatch::logs::Logs> {
        &self.error_log.logs
    }

    /// Firehose's error-log events of `stream` (or of every stream with
    /// `CloudWatchLoggingOptions` enabled), oldest first.
    pub fn error_logs(&self, stream: Option<&str>) -> Result<Vec<LogLine>, StackError> {
        if let Some(name) = stream {
            self.spec(name)?;
        }
        let mut out = Vec::new();
        for spec in self.specs().iter().filter(|s| stream.is_none_or(|n| n == s.name())) {
            let Some((group, log_stream)) = crate::cloudwatch::logs::logging_target(spec.destination()) else {
                continue;
            };
            for (_, event) in self.logs().events(&group, Some(&log_stream)) {
                out.push(LogLine {
                    stream: spec.name().to_owned(),
                    group: group.clone(),
                    log_stream: log_stream.clone(),
                    timestamp_ms: event.timestamp_ms,
                    message: event.message,
                });
            }
        }
        out.sort_by_key(|l| l.timestamp_ms);
        Ok(out)
    }

    /// Samples CloudWatch's figures every second of wall time (a running
    /// clock crosses minutes by itself; `advance` samples on its own).
    fn watch_metrics(&self) {
        let (streams, client, monitor) = (self.streams.clone(), self.metadata.clone(), self.monitor.clone());
        let error_log = self.error_log.clone();
        let (clock, limit, stop) =
            (self.settings.clock.clone(), self.settings.limits.active_partition_limit, self.stop_watch.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let figures = figures(&streams, &client, limit).await;
                let now = clock.now_millis();
                error_log.record(&streams, now);
                monitor.sample(now, figures);
            }
        });
    }
}

/// Each stream's figures now, for CloudWatch.
async fn figures(
    streams: &Streams,
    client: &Arc<admin::MetadataClient>,
    active_partition_limit: usize,
) -> Vec<crate::cloudwatch::firehose::StreamFigures> {
    {
        use crate::cloudwatch::firehose::StreamFigures;
        use std::sync::atomic::Ordering::Relaxed;
        let streams: Vec<_> = streams
            .lock()
            .iter()
            .map(|s| (s.plan.spec().clone(), s.delivery.clone(), s.intake.clone(), s.lifecycle))
            .collect();
        let streams: Vec<_> = streams.into_iter().filter(|s| s.3 != StreamLifecycle::Creating).collect();
        // OffsetLag is an MSK-source metric: no topic asked for Direct PUT.
        let topics = streams.iter().map(|s| (!s.0.is_direct_put()).then(|| s.0.topic().to_owned())).collect();
        let mut ends = end_offsets_of_topics(client, topics).await.into_iter();
        let mut out = Vec::new();
        for (spec, delivery, intake, _) in streams {
            let stats = delivery.as_ref().map(|d| d.stats()).unwrap_or_default();
            let lag = ends.next().flatten().map(|ends| {
                let positions = stats.positions();
                ends.iter().map(|(p, end)| (end - positions.get(p).copied().unwrap_or(0)).max(0) as u64).sum()
            });
            let mut f = StreamFigures::of(&spec, &stats, active_partition_limit);
            f.counters.incoming_records = intake.records.load(Relaxed);
            f.counters.incoming_bytes = intake.bytes.load(Relaxed);
            f.counters.incoming_put_requests = intake.put_requests.load(Relaxed);
            f.offset_lag = lag;
            out.push(f);
        }
        out
    }
}

/// The end offsets of each topic (`None` where none is asked, or the topic
/// did not answer).
async fn end_offsets_of_topics(
    client: &Arc<admin::MetadataClient>,
    topics: Vec<Option<String>>,
) -> Vec<Option<BTreeMap<i32, i64>>> {
    let asked: Vec<String> = topics.iter().flatten().cloned().collect();
    let client = client.clone();
    let answers = tokio::task::spawn_blocking(move || client.end_offsets_each(&asked))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let mut answers = answers.into_iter().map(Result::ok);
    topics.iter().map(|topic| topic.as_ref().and_then(|_| answers.next().flatten())).collect()
}

impl Stack {
    /// Adds a stream to the running stack, as `CreateDeliveryStream` does:
    /// its topic and bucket are created if missing, then its delivery starts
    /// (CREATING, then ACTIVE once it owns its partitions). The other streams
    /// are not touched. The spec is scoped like the stack's own.
    pub async fn add_stream(&self, spec: StreamSpec) -> Result<(), StackError> {
        self.add_prepared(self.prepare_stream(spec)?).await
    }

    /// [`Stack::add_stream`] for a spec already prepared with
    /// [`Stack::prepare_stream`].
    pub async fn add_prepared(&self, plan: Plan) -> Result<(), StackError> {
        let name = plan.spec().name().to_owned();
        self.register(vec![plan]).await?;
        if let Err(e) = self.activate(std::slice::from_ref(&name)).await {
            self.streams.lock().retain(|s| s.plan.spec().name() != name);
            return Err(e);
        }
        Ok(())
    }

    /// Removes a stream from the running stack: it turns DELETING, its
    /// delivery delivers every buffer it holds and commits, then it is gone.
    /// Its topic, its bucket and what landed stay, as on AWS. Returns its
    /// final statistics.
    pub async fn remove_stream(&self, name: &str) -> Result<Arc<DeliveryStats>, StackError> {
        let delivery = self.streams.take_active(name, |stream| stream.lifecycle = StreamLifecycle::Deleting)?;
        let stats = match delivery {
            Some(delivery) => delivery.stop().await,
            None => Ok(Arc::default()),
        };
        let removed: Vec<StreamSpec> = {
            let mut streams = self.streams.lock();
            let removed =
                streams.iter().filter(|s| s.plan.spec().name() == name).map(|s| s.plan.spec().clone()).collect();
            streams.retain(|s| s.plan.spec().name() != name);
            removed
        };
        // A removed stream's topic is no producer's mistake.
        self.unread_warned.lock().expect("warned lock").extend(removed.iter().map(|s| s.topic().to_owned()));
        // What was put to a DirectPut stream is its own: a stream created
        // again under the name starts empty.
        for spec in removed.iter().filter(|s| s.is_direct_put()) {
            if let Err(e) = admin::delete_topics(&self.backend.kafka, &[spec.topic()]).await {
                warn!(stream = name, topic = spec.topic(), error = %e, "cannot delete the DirectPut topic");
            }
        }
        info!(stream = name, "stream removed");
        Ok(stats?)
    }

    /// Replaces a stream's spec, as `UpdateDestination` does: its delivery
    /// delivers what it holds and commits, then a delivery of the new spec
    /// resumes from those commits. A changed destination bumps the stream's
    /// version (objects from now on carry it). Returns the version.
    pub async fn update_stream(&self, spec: StreamSpec) -> Result<u32, StackError> {
        self.update_prepared(self.prepare_stream(spec)?).await
    }

    /// [`Stack::update_stream`] for a spec already prepared with
    /// [`Stack::prepare_stream`].
    pub async fn update_prepared(&self, plan: Plan) -> Result<u32, StackError> {
        let name = plan.spec().name().to_owned();
        if plan.spec().is_direct_put() {
            // Records put before the update are in the stream already: the
            // old destination delivers them, as AWS's buffer would.
            self.read_to_end(&name, Duration::from_secs(10)).await?;
        }
        let old = self.streams.take_active(&name, |stream| {
            let before = std::mem::replace(&mut stream.plan, plan);
            stream.earlier.push(before.spec().clone());
        })?;
        if let Some(old) = old {
            let stats = old.stop().await?;
            self.streams.intake(&name).delivery_stopped(&stats);
        }
        self.activate(std::slice::from_ref(&name)).await?;
        Ok(self.streams.delivery(&name).map_or(1, |d| d.state.version))
    }

    /// Puts `records` to DirectPut stream `stream`, as `PutRecordBatch`
    /// does: each is acknowledged once the broker has it (with its
    /// `RecordId`) or refused on its own (past the memory bound: retry it).
    /// Refuses an unknown stream, an MSK stream and one not ACTIVE.
    pub async fn put_records(&self, stream: &str, records: &[Bytes]) -> Result<Vec<PutOutcome>, StackError> {
        let (spec, delivery, intake) = {
            let streams = self.streams.lock();
            let Some(s) = streams.iter().find(|s| s.plan.spec().name() == stream) else {
                return Err(unknown(&streams, stream));
            };
            if !s.plan.spec().is_direct_put() {
                return Err(StackError::NotDirectPut { name: stream.to_owned() });
            }
            let Some(delivery) = s.delivery.clone().filter(|_| s.lifecycle == StreamLifecycle::Active) else {
                return Err(StackError::StreamBusy { name: stream.to_owned(), state: s.lifecycle });
            };
            (s.plan.spec().clone(), delivery, s.intake.clone())
        };
        let now_ms = self.settings.clock.now_millis();
        Ok(self.putter.put(spec.topic(), records, now_ms, &intake, &delivery.stats()).await)
    }

    /// What was put to DirectPut stream `stream` so far.
    pub fn intake(&self, stream: &str) -> Result<Arc<Intake>, StackError> {
        let streams = self.streams.lock();
        streams
            .iter()
            .find(|s| s.plan.spec().name() == stream)
            .map(|s| s.intake.clone())
            .ok_or_else(|| unknown(&streams, stream))
    }

    /// Waits until the delivery of `stream` has read its topic up to where
    /// it ends now (at most `timeout`; a delivery that cannot keep up is
    /// not waited for longer).
    async fn read_to_end(&self, stream: &str, timeout: Duration) -> Result<(), StackError> {
        let Some(delivery) = self.streams.delivery(stream) else { return Ok(()) };
        let (kafka, topic) = (self.backend.kafka.clone(), self.spec(stream)?.topic().to_owned());
        let ends = tokio::task::spawn_blocking(move || admin::end_offsets(&kafka, &topic))
            .await
            .expect("end offsets do not panic")?;
        let started = Instant::now();
        let stats = delivery.stats();
        while started.elapsed() < timeout {
            let positions = stats.positions();
            if ends.iter().all(|(p, end)| positions.get(p).copied().unwrap_or(0) >= *end) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Every stream with its state, version and activation, in the order
    /// they were added.
    pub fn streams(&self) -> Vec<StreamInfo> {
        self.streams
            .lock()
            .iter()
            .map(|s| StreamInfo {
                spec: s.plan.spec().clone(),
                lifecycle: s.lifecycle,
                version: s.delivery.as_ref().map(|d| d.state.version),
                activated_at_ms: s.delivery.as_ref().map(|d| d.state.activated_at_ms),
            })
            .collect()
    }

    /// The spec as this stack runs it (scoped, if the stack is) with its
    /// pre-flight done (Lambda placement, Glue table): what `add_stream`
    /// and `update_stream` start from, and what the Firehose API checks a
    /// request with before it answers.
    pub fn prepare_stream(&self, spec: StreamSpec) -> Result<Plan, StackError> {
        let spec = match &self.options.scope {
            Some(scope) => scope.apply(spec)?,
            None => spec,
        };
        Ok(Plan::prepare(spec, &self.settings)?)
    }

    /// Where `stream` is in its life.
    pub fn stream_state(&self, stream: &str) -> Result<StreamLifecycle, StackError> {
        let streams = self.streams.lock();
        streams
            .iter()
            .find(|s| s.plan.spec().name() == stream)
            .map(|s| s.lifecycle)
            .ok_or_else(|| unknown(&streams, stream))
    }

    /// Records the streams as CREATING, then creates their topics and
    /// buckets. Refuses a name the stack already has.
    async fn register(&self, plans: Vec<Plan>) -> Result<(), StackError> {
        let names: Vec<String> = plans.iter().map(|p| p.spec().name().to_owned()).collect();
        let specs: Vec<StreamSpec> = plans.iter().map(|p| p.spec().clone()).collect();
        {
            let mut streams = self.streams.lock();
            for (i, name) in names.iter().enumerate() {
                if streams.iter().any(|s| s.plan.spec().name() == *name) || names[..i].contains(name) {
                    return Err(StackError::StreamExists { name: name.clone() });
                }
            }
            streams.extend(plans.into_iter().map(|plan| Stream {
                plan,
                lifecycle: StreamLifecycle::Creating,
                delivery: None,
                intake: Arc::default(),
                earlier: Vec::new(),
            }));
        }
        let created = self.create_resources(&specs).await;
        if created.is_err() {
            self.streams.lock().retain(|s| !names.iter().any(|n| n == s.plan.spec().name()));
        }
        created
    }

    async fn create_resources(&self, specs: &[StreamSpec]) -> Result<(), StackError> {
        let topics: BTreeMap<&str, i32> = specs
            .iter()
            // One partition holds a DirectPut stream's records in put order.
            .map(|s| (s.topic(), if s.is_direct_put() { 1 } else { self.options.partitions_of(s.topic()) }))
            .collect();
        let kafka = &self.backend.kafka;
        let creates = topics.iter().map(|(topic, partitions)| admin::create_topic(kafka, topic, *partitions));
        futures::future::try_join_all(creates).await?;
        // Someone else's buckets are theirs to create; delivery names a
        // missing one.
        if self.backend.kind != BackendKind::External {
            let buckets: BTreeSet<&str> = specs.iter().map(|s| s.bucket()).collect();
            futures::future::try_join_all(buckets.iter().map(|b| harness::create_bucket(&self.client, b))).await?;
        }
        Ok(())
    }

    /// Starts one delivery per stream that has none: streams still CREATING
    /// (when the stack was started with [`StackOptions::defer_deliveries`]),
    /// or every stream again after [`Stack::shutdown`], resuming from what
    /// they committed. New streams become active now.
    pub async fn start_deliveries(&self) -> Result<(), StackError> {
        let waiting: Vec<String> = self
            .streams
            .lock()
            .iter()
            .filter(|s| s.lifecycle != StreamLifecycle::Deleting && s.delivery.is_none())
            .map(|s| s.plan.spec().name().to_owned())
            .collect();
        self.activate(&waiting).await
    }

    /// Connects the deliveries of `names` (at once) and marks them ACTIVE.
    async fn activate(&self, names: &[String]) -> Result<(), StackError> {
        let plans: Vec<Plan> = {
            let streams = self.streams.lock();
            streams.iter().filter(|s| names.iter().any(|n| n == s.plan.spec().name())).map(|s| s.plan.clone()).collect()
        };
        let connects = plans.into_iter().map(|plan| {
            let sink = S3Sink::new(self.client.clone(), plan.spec().bucket(), self.backend.s3.endpoint.as_deref());
            let endpoints = Endpoints {
                source: SourceSettings::new(self.backend.kafka.clone(), Membership::Assigned),
                state: StateStore::Topic(TopicStateStore::new(self.backend.kafka.clone())),
                sink,
            };
            Delivery::connect(plan, endpoints)
        });
        let connected: Vec<Delivery> = {
            use futures::{StreamExt as _, TryStreamExt as _};
            futures::stream::iter(connects).buffered(CONCURRENT_CONNECTS).try_collect().await?
        };
        for delivery in connected {
            info!(stream = %delivery.state().stream, version = delivery.state().version, "delivery started");
            let handle = Arc::new(delivery.spawn());
            let mut streams = self.streams.lock();
            if let Some(stream) = streams.iter_mut().find(|s| s.plan.spec().name() == handle.stream) {
                stream.delivery = Some(handle);
                stream.lifecycle = StreamLifecycle::Active;
            }
        }
        Ok(())
    }

    /// Warns once per topic that appears on the broker without a stream
    /// reading it (a producer writing to the wrong topic, say).
    fn watch_unread_topics(&self) {
        let (client, stop) = (self.metadata.clone(), self.stop_watch.clone());
        let warner = self.unread_warner();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let client = client.clone();
                let check = move || client.list_topics(Duration::from_millis(500));
                if let Ok(Ok(topics)) = tokio::task::spawn_blocking(check).await {
                    warner.check(&topics);
                }
            }
        });
    }

    fn unread_warner(&self) -> UnreadWarner {
        UnreadWarner {
            streams: self.streams.clone(),
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

    /// The streams' specs, in the order they were added.
    pub fn specs(&self) -> Vec<StreamSpec> {
        self.streams.specs()
    }

    pub fn spec(&self, stream: &str) -> Result<StreamSpec, StackError> {
        self.specs().into_iter().find(|s| s.name() == stream).ok_or_else(|| self.unknown(stream))
    }

    fn unknown(&self, stream: &str) -> StackError {
        unknown(&self.streams.lock(), stream)
    }

    pub fn clock(&self) -> SharedClock {
        self.settings.clock.clone()
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

    /// The `--work-dir` this stack keeps its state in, if it was given
    /// (else its files go with it).
    pub fn kept_dir(&self) -> Option<&Path> {
        self.work.is_durable().then(|| self.work.path())
    }

    /// Whether records the broker holds outlive this stack: a cluster
    /// streamlab did not start, or the local broker on a kept `--work-dir`.
    /// Containers go with the stack.
    pub fn broker_outlives_stack(&self) -> bool {
        match self.backend.kind {
            BackendKind::External => true,
            BackendKind::Local | BackendKind::Localstack => self.work.is_durable(),
            BackendKind::Container | BackendKind::Auto => false,
        }
    }

    /// Where the landed objects can be browsed as files (local backend).
    pub fn landing_dir(&self) -> Option<&Path> {
        self.backend.landing_dir.as_deref()
    }

    /// The environment a producer or reader needs: `KAFKA_BOOTSTRAP`,
    /// `AWS_ENDPOINT_URL_S3`, the credentials and region (as `AWS_REGION`
    /// and `AWS_DEFAULT_REGION`).
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
        let region = s3.region.clone().unwrap_or_else(|| "us-east-1".into());
        env.push(("AWS_REGION".into(), region.clone()));
        // The AWS CLI v1 and older SDKs read only this one.
        env.push(("AWS_DEFAULT_REGION".into(), region));
        env
    }

    fn manual_clock(&self) -> Result<&ManualClock, StackError> {
        self.manual.as_deref().ok_or(StackError::ClockNotManual { mode: self.options.clock.name() })
    }

    /// Moves the manual clock forward, then lets every delivery deliver the
    /// buffers whose interval passed; returns the new time once they landed.
    pub async fn advance(&self, by: Duration) -> Result<i64, StackError> {
        let clock = self.manual_clock()?;
        // What happened before the jump belongs to the minute before it.
        self.sample_metrics().await;
        clock.advance(by);
        if let Err(e) = self.work.save_clock(clock.now_millis()) {
            warn!(error = %e, "cannot save the clock's position in the work dir; a restart on it starts the clock afresh");
        }
        let running = self.streams.running();
        // Every stream at once: a hundred streams' buffers land in the time
        // of the slowest, not of all of them in turn.
        futures::future::join_all(running.iter().filter_map(|(_, d)| d.as_ref()).map(|d| d.tick())).await;
        let landed = self.check_landing(&running).await;
        // Every minute crossed gets its datapoints, whether or not S3 took
        // the objects (a failing delivery is what alarms are for).
        self.sample_metrics().await;
        landed?;
        Ok(self.settings.clock.now_millis())
    }

    /// Sets the manual clock (forward or back), e.g. before deliveries start.
    pub fn set_clock(&self, to: chrono::DateTime<chrono::Utc>) -> Result<(), StackError> {
        self.manual_clock()?.set(to);
        Ok(())
    }

    /// Delivers every buffer of `stream` (or of every stream) now, as if its
    /// interval had passed; returns once the objects landed.
    pub async fn flush(&self, stream: Option<&str>) -> Result<(), StackError> {
        if let Some(name) = stream {
            self.spec(name)?;
        }
        let running: Vec<_> =
            self.streams.running().into_iter().filter(|(spec, _)| stream.is_none_or(|s| s == spec.name())).collect();
        futures::future::join_all(running.iter().filter_map(|(_, d)| d.as_ref()).map(|d| d.flush())).await;
        self.check_landing(&running).await
    }

    /// After a tick or a flush: an object that keeps failing to land is an
    /// error naming the PUT error, not a success with records missing. One
    /// that failed is given the time of its retries (a few seconds) to land.
    async fn check_landing(&self, running: &[(StreamSpec, Option<Arc<DeliveryHandle>>)]) -> Result<(), StackError> {
        for (spec, delivery) in running {
            let Some(delivery) = delivery else { continue };
            let stats = delivery.stats();
            let started = Instant::now();
            while let Some(failure) = stats.put_failure() {
                if failure.persistent(MAX_FAILED_ATTEMPTS) || started.elapsed() > Duration::from_secs(10) {
                    return Err(StackError::NotLanding { stream: spec.name().to_owned(), failure });
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// Returns once every record written to the streams' topics before the
    /// call has been read (buffered, or landed if its buffer was cut), and no
    /// object is still being written.
    pub async fn settle(&self, timeout: Duration) -> Result<(), StackError> {
        let started = Instant::now();
        let (client, topics) = (self.metadata.clone(), Vec::from_iter(self.streams.topics()));
        let ends: BTreeMap<String, BTreeMap<i32, i64>> = tokio::task::spawn_blocking(move || {
            let answers = client.end_offsets_each(&topics)?;
            topics
                .into_iter()
                .zip(answers)
                .map(|(topic, ends)| Ok((topic, ends?)))
                .collect::<Result<_, admin::AdminError>>()
        })
        .await
        .expect("end offsets do not panic")?;
        loop {
            let mut behind = Vec::new();
            for (spec, delivery) in self.streams.running() {
                let Some(delivery) = delivery else { continue };
                if delivery.is_finished() {
                    return Err(StackError::DeliveryStopped(delivery.stream.clone()));
                }
                let stats = delivery.stats();
                let positions = stats.positions();
                for (partition, end) in ends.get(spec.topic()).into_iter().flatten() {
                    let at = positions.get(partition).copied().unwrap_or(0);
                    if at < *end {
                        behind.push(format!(
                            "{} has read {}/{partition} up to offset {at} of {end}",
                            delivery.stream,
                            spec.topic()
                        ));
                    }
                }
                if let Some(failure) = stats.put_failure().filter(|f| f.persistent(MAX_FAILED_ATTEMPTS)) {
                    return Err(StackError::NotLanding { stream: spec.name().to_owned(), failure });
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
        let mut streams = Vec::new();
        let lifecycles: Vec<StreamLifecycle> = self.streams.lock().iter().map(|s| s.lifecycle).collect();
        let running = self.streams.running();
        let topics = running.iter().map(|(spec, _)| Some(spec.topic().to_owned())).collect();
        let ends = end_offsets_of_topics(&self.metadata, topics).await;
        for (((spec, delivery), state), ends) in running.into_iter().zip(lifecycles).zip(ends) {
            let stats = delivery.as_ref().map(|d| d.stats()).unwrap_or_default();
            let positions = stats.positions();
            let lag = ends
                .map(|ends| ends.iter().map(|(p, end)| (end - positions.get(p).copied().unwrap_or(0)).max(0)).sum());
            streams.push(StreamStatus::of(&spec, state, delivery.as_deref(), &stats, lag));
        }
        let client = self.metadata.clone();
        let warner = self.unread_warner();
        let unread_topics = tokio::task::spawn_blocking(move || -> Vec<UnreadTopic> {
            let Ok(topics) = client.list_topics(admin::TIMEOUT) else { return Vec::new() };
            warner.check(&topics);
            warner
                .unread(topics)
                .into_iter()
                .map(|topic| {
                    let records = client.topic_records(&topic).unwrap_or(0);
                    UnreadTopic { topic, records }
                })
                .collect()
        })
        .await
        .unwrap_or_default();
        let now_ms = self.settings.clock.now_millis();
        Status {
            clock: ClockStatus::of(self.options.clock.name(), now_ms),
            seeded: self.options.seed.is_some(),
            streams,
            unread_topics,
            alarms: self
                .monitor
                .alarms()
                .into_iter()
                .map(|a| status::AlarmStatus {
                    name: a.definition.name.clone(),
                    state: a.state.as_str().to_owned(),
                    reason: a.reason,
                })
                .collect(),
        }
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
            self.settings.clock.clone(),
            timestamps,
            stats.clone(),
            CancellationToken::new(),
        )
        .await?;
        Ok(stats.acked())
    }

    /// The running delivery's statistics of `stream`.
    pub async fn stats(&self, stream: &str) -> Result<Arc<DeliveryStats>, StackError> {
        self.streams.delivery(stream).map(|d| d.stats()).ok_or_else(|| self.unknown(stream))
    }

    /// What the run has measured so far that a bill is made of
    /// (`streamlab cost`).
    pub fn usage(&self) -> crate::cost::RunUsage {
        self.usage_of(self.delivering())
    }

    /// Each stream with a running delivery, with its statistics.
    fn delivering(&self) -> Vec<(StreamSpec, Arc<DeliveryStats>)> {
        self.streams.running().into_iter().filter_map(|(spec, delivery)| Some((spec, delivery?.stats()))).collect()
    }

    /// The objects each delivery landed most recently (at most
    /// [`crate::delivery::stats::LANDED_HISTORY`] per stream), with the
    /// offsets they hold and the clock time they landed.
    pub fn provenance(&self) -> Vec<crate::inspect::Provenance> {
        self.delivering()
            .into_iter()
            .flat_map(|(spec, stats)| {
                stats.landed().into_iter().map(move |o| crate::inspect::Provenance {
                    stream: spec.name().to_owned(),
                    key: o.key,
                    landed_ms: o.landed_ms,
                    sources: o.sources,
                })
            })
            .collect()
    }

    fn usage_of(&self, streams: Vec<(StreamSpec, Arc<DeliveryStats>)>) -> crate::cost::RunUsage {
        crate::cost::RunUsage {
            clock_span_ms: self.settings.clock.now_millis() - self.started_ms,
            streams: streams.iter().map(|(spec, stats)| crate::cost::StreamUsage::of(spec, stats)).collect(),
        }
    }

    /// Delivers every buffer, commits and stops the deliveries; returns each
    /// stream's final statistics. The broker and S3 keep answering (to read
    /// the landing) until the stack is dropped.
    pub async fn shutdown(&self) -> Result<BTreeMap<String, Arc<DeliveryStats>>, StackError> {
        self.stop_watch.cancel();
        self.putter.close();
        let specs: BTreeMap<String, StreamSpec> =
            self.streams.running().into_iter().map(|(spec, _)| (spec.name().to_owned(), spec)).collect();
        let deliveries: Vec<Arc<DeliveryHandle>> =
            self.streams.lock().iter_mut().filter_map(|s| s.delivery.take()).collect();
        let mut out = BTreeMap::new();
        let mut first_error = None;
        // Each stop delivers its stream's buffers and commits: all at once.
        let stopped = futures::future::join_all(deliveries.iter().map(|d| d.stop())).await;
        for (delivery, stopped) in deliveries.iter().zip(stopped) {
            match stopped {
                Ok(stats) => {
                    self.streams.intake(&delivery.stream).delivery_stopped(&stats);
                    out.insert(delivery.stream.clone(), stats);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.settings.functions.stop().await;
        // What the run measured, for `cost --from-run` after it ended.
        let usage = self
            .usage_of(out.iter().filter_map(|(name, stats)| Some((specs.get(name)?.clone(), stats.clone()))).collect());
        if let Err(e) = usage.save(self.work.path()) {
            warn!(error = %e, dir = %self.work.path().display(), "cannot write the run's usage.json");
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(out),
        }
    }
}
