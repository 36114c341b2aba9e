//! The harness the integration tests share: streamlab's public [`Stack`] API
//! (the one Rust users test their own pipelines with) on the local backend,
//! driven by a manual clock, with bounded waits so a broken pipeline fails a
//! test instead of hanging it.
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use chrono::{DateTime, Utc};
use streamlab::delivery::sink::S3Sink;
use streamlab::delivery::source::{Membership, SourceSettings};
use streamlab::delivery::state::{StateStore, TopicStateStore};
use streamlab::delivery::{Delivery, DeliveryHandle, DeliveryStats, Endpoints, Plan, Settings};
use streamlab::events::Event;
use streamlab::faults::Faults;
use streamlab::harness::{self, StoredObject};
use streamlab::spec::StreamSpec;
use streamlab::stack::{Stack, StackOptions};

pub async fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) -> Result<()> {
    let started = Instant::now();
    while !condition() {
        ensure!(started.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Logs to the test output when `STREAMLAB_TEST_LOG` is set (a tracing
/// filter such as `streamlab=debug`).
pub fn init_logging() {
    if let Ok(filter) = std::env::var("STREAMLAB_TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
}

/// A stack for one spec whose delivery starts when the test says so.
pub struct Pipeline {
    pub stack: Stack,
    pub spec: StreamSpec,
}

/// The stack's delivery, running.
pub struct Running<'a> {
    pub stats: Arc<DeliveryStats>,
    stack: &'a Stack,
}

impl Running<'_> {
    /// Stops delivery (which delivers every buffer and commits).
    pub async fn stop(self) -> Result<Arc<DeliveryStats>> {
        let mut stats = self.stack.shutdown().await?;
        Ok(stats.pop_first().map(|(_, s)| s).unwrap_or(self.stats))
    }
}

impl Pipeline {
    /// `streamlab deliver` as a child process for this pipeline's stream,
    /// with `extra` arguments, at 600x speed; its output goes to `output`.
    pub fn spawn_deliver(
        &self,
        spec: &str,
        extra: &[&str],
        output: std::process::Stdio,
    ) -> Result<harness::DeliverProcess> {
        let endpoint = self.stack.s3_endpoint().ok_or_else(|| anyhow::anyhow!("the stack has no S3 endpoint"))?;
        let command = harness::DeliverCommand {
            s3_endpoint: Some(endpoint.to_owned()),
            speedup: Some(600.0),
            ..harness::DeliverCommand::new(spec, self.bootstrap())
        };
        let mut args = command.args();
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        Ok(harness::DeliverProcess::spawn(
            Path::new(env!("CARGO_BIN_EXE_streamlab")),
            &args,
            self.stack.s3_settings(),
            output,
        )?)
    }

    /// Publishes `events` in the background with streamlab's producer (at
    /// `rate` per second, or as fast as acknowledged) and the wall clock;
    /// the task answers how many the broker acknowledged.
    pub fn publish_in_background(
        &self,
        events: Vec<Event>,
        rate: Option<f64>,
        clock: streamlab::clock::SharedClock,
    ) -> tokio::task::JoinHandle<Result<u64, streamlab::producer::ProducerError>> {
        let (bootstrap, topic) = (self.bootstrap().to_owned(), self.spec.topic().to_owned());
        tokio::spawn(async move {
            let stats = Arc::new(streamlab::producer::ProducerStats::default());
            streamlab::producer::publish(
                &bootstrap.into(),
                &topic,
                rate,
                events.into_iter(),
                clock,
                stats.clone(),
                tokio_util::sync::CancellationToken::new(),
            )
            .await
            .map(|()| stats.acked())
        })
    }

    pub async fn start(spec: &Path, partitions: i32, now: DateTime<Utc>) -> Result<Self> {
        Self::start_with(spec, partitions, now, |o| o).await
    }

    /// A pipeline with the stack's options adjusted by `tweak`.
    pub async fn start_with(
        spec: &Path,
        partitions: i32,
        now: DateTime<Utc>,
        tweak: impl FnOnce(StackOptions) -> StackOptions,
    ) -> Result<Self> {
        init_logging();
        let options = StackOptions::new([spec]).partitions(partitions).manual_clock(now).defer_deliveries();
        let stack = Stack::start(tweak(options)).await?;
        let spec = stack.specs()[0].clone();
        Ok(Self { stack, spec })
    }

    /// A pipeline whose S3 PUTs and broker connections can be faulted, with a
    /// seeded fault schedule.
    pub async fn start_faulty(spec: &Path, partitions: i32, now: DateTime<Utc>, seed: u64) -> Result<Self> {
        Self::start_with(spec, partitions, now, |o| o.faults(seed)).await
    }

    pub fn bootstrap(&self) -> &str {
        self.stack.bootstrap()
    }

    pub fn faults(&self) -> Result<Faults> {
        self.stack.faults().cloned().ok_or_else(|| anyhow::anyhow!("started without faults"))
    }

    /// Starts the stack's delivery (the stream becomes active now).
    pub async fn deliver(&self) -> Result<Running<'_>> {
        self.stack.start_deliveries().await?;
        Ok(Running { stats: self.stack.stats(self.spec.name()).await?, stack: &self.stack })
    }

    /// Another delivery instance of the stream, sharing the partitions
    /// through the consumer group (static member `instance_id`).
    pub async fn instance(&self, instance_id: &str, seed: u64) -> Result<DeliveryHandle> {
        self.instance_with(seed, |_, endpoints| endpoints.source.instance_id = Some(instance_id.to_owned())).await
    }

    /// A group member of the stream with settings and endpoints edited by
    /// `edit`.
    pub async fn instance_with(
        &self,
        seed: u64,
        edit: impl FnOnce(&mut Settings, &mut Endpoints),
    ) -> Result<DeliveryHandle> {
        let mut settings = Settings { seed: Some(seed), ..Settings::new(self.stack.clock()) };
        let mut endpoints = endpoints(&self.stack, &self.spec, Membership::Group);
        edit(&mut settings, &mut endpoints);
        Ok(Delivery::connect(Plan::prepare(self.spec.clone(), &settings)?, endpoints).await?.spawn())
    }

    /// Publishes events with the real producer; every one must be acked.
    pub async fn publish(&self, events: Vec<Event>) -> Result<()> {
        let n = events.len() as u64;
        let acked = self.stack.produce(self.spec.topic(), events).await?;
        ensure!(acked == n, "broker acknowledged {acked} of {n}");
        Ok(())
    }

    /// Crosses the buffer interval on the manual clock; returns once the due
    /// buffers landed.
    pub async fn pass_interval(&self) -> Result<()> {
        if let Some(lambda) = &self.spec.lambda() {
            // Records reach the S3 buffers once the function processed them.
            self.stack.advance(lambda.buffer.interval + Duration::from_secs(1)).await?;
        }
        self.stack.advance(self.spec.buffer().interval + Duration::from_secs(1)).await?;
        Ok(())
    }

    pub async fn objects(&self) -> Result<Vec<StoredObject>> {
        Ok(harness::read_bucket(self.stack.s3_client(), self.spec.bucket()).await?)
    }
}

/// Every event id in the bucket's data objects (keys not under `errors/`),
/// with how often it landed.
pub fn landed_ids(objects: &[StoredObject]) -> Result<std::collections::BTreeMap<String, usize>> {
    let mut out = std::collections::BTreeMap::new();
    for object in objects.iter().filter(|o| !o.key.starts_with("errors/")) {
        for record in harness::json_records(&object.body)? {
            let id = record["event_id"]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("record without event_id in {}", object.key))?;
            *out.entry(id.to_owned()).or_default() += 1;
        }
    }
    Ok(out)
}

/// Asserts every expected event landed and nothing else did; returns how
/// many landed more than once.
/// Seeded shop events starting at [`now`].
pub fn events(seed: u64, n: usize) -> Vec<Event> {
    streamlab::events::EventGenerator::new(&streamlab::events::GeneratorConfig::new(seed, 1_772_953_080_000))
        .take(n)
        .collect()
}

/// The fault and group tests' manual clock start.
pub fn now() -> DateTime<Utc> {
    chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 3, 8, 6, 58, 0).unwrap()
}

pub fn assert_no_loss(landed: &std::collections::BTreeMap<String, usize>, expected: &[Event]) -> Result<usize> {
    let missing: Vec<&str> =
        expected.iter().map(|e| e.event_id.as_str()).filter(|id| !landed.contains_key(*id)).collect();
    ensure!(
        missing.is_empty(),
        "{} of {} events lost, e.g. {:?}",
        missing.len(),
        expected.len(),
        &missing[..missing.len().min(3)]
    );
    ensure!(landed.len() == expected.len(), "{} distinct ids landed, {} produced", landed.len(), expected.len());
    Ok(landed.values().filter(|n| **n > 1).count())
}

/// Every record in the topic: event id -> (partition, offset, timestamp),
/// read straight from Kafka, the independent source of truth about records.
pub fn kafka_records(
    bootstrap: &str,
    topic: &str,
    expected: usize,
) -> Result<std::collections::HashMap<String, (i32, i64, i64)>> {
    Ok(harness::read_topic(&bootstrap.into(), topic, expected, Duration::from_secs(30))?)
}

/// The `streamlab` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_streamlab");

/// The repository root (tests run there; commands refer to files in it).
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether a tool the test needs is installed. Under CI a missing one fails
/// the test; elsewhere the test is reported as not checked and skipped.
pub fn available(what: &str, present: bool) -> Result<bool> {
    match (present, std::env::var_os("CI").is_some()) {
        (true, _) => Ok(true),
        (false, true) => anyhow::bail!("{what} is missing under CI; `just install-clients` installs it"),
        (false, false) => {
            eprintln!("not checked: {what} is missing; run `just install-clients`");
            Ok(false)
        }
    }
}

/// The error fields Firehose writes, in its order (`processing-failed`
/// lines from a Lambda transform add `lambdaARN`).
pub const ERROR_FIELDS: [&str; 6] =
    ["attemptsMade", "arrivalTimestamp", "errorCode", "errorMessage", "attemptEndingTimestamp", "rawData"];

/// Every line of the error objects (keys under `errors/`), with the key it
/// came from; each line must have exactly `fields`, in that order (checked
/// on the raw text: a parsed map would sort them).
pub fn error_lines(objects: &[StoredObject], fields: &[&str]) -> Result<Vec<(String, serde_json::Value)>> {
    let field = regex::Regex::new(r#"[{,]"([A-Za-z]+)":"#)?;
    let mut out = Vec::new();
    for object in objects.iter().filter(|o| o.key.starts_with("errors/")) {
        anyhow::ensure!(object.body.ends_with(b"\n"), "{}: error objects are JSON lines", object.key);
        for line in object.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let text = std::str::from_utf8(line)?;
            let found: Vec<&str> = field.captures_iter(text).map(|c| c.get(1).map_or("", |m| m.as_str())).collect();
            anyhow::ensure!(found == fields, "{}: fields {found:?}", object.key);
            out.push((object.key.clone(), serde_json::from_str(text)?));
        }
    }
    Ok(out)
}

/// Where the Lambda fixtures' functions run: AWS's Python runtime interface
/// client from `.venv` with the test handlers (`tests/transforms`).
pub fn test_functions(handler: &str) -> streamlab::transform::FunctionsConfig {
    let dir = repo().join("tests/transforms");
    let python = repo().join(".venv/bin/python");
    let command = format!("cd '{}' && exec '{}' -m awslambdaric handlers.{handler}", dir.display(), python.display());
    streamlab::transform::FunctionsConfig { local: vec![("enrich".to_owned(), command)], endpoint: None, timeout: None }
}

/// `PATH` with the repository's `.venv/bin` first, so `python` is the one
/// with the client packages (`just install-clients`).
pub fn venv_path() -> std::ffi::OsString {
    let venv = repo().join(".venv/bin");
    let mut paths = vec![venv];
    paths.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    std::env::join_paths(paths).expect("valid PATH")
}

/// Whether `.venv` has these Python modules.
pub fn python_has(modules: &[&str]) -> bool {
    let python = repo().join(".venv/bin/python");
    python.is_file()
        && std::process::Command::new(python)
            .arg("-c")
            .arg(format!("import {}", modules.join(", ")))
            .output()
            .is_ok_and(|o| o.status.success())
}

/// Whether `dir` has its Node.js packages installed.
pub fn node_modules(dir: &str) -> bool {
    repo().join(dir).join("node_modules").is_dir()
        && std::process::Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// `streamlab ARGS...` with the client tools on PATH and no stack
/// inherited from the environment.
pub fn streamlab(args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(BIN);
    command
        .args(args)
        .current_dir(repo())
        .env("PATH", venv_path())
        .env_remove("STREAMLAB_CONTROL")
        .env_remove("KAFKA_BOOTSTRAP")
        .stdin(std::process::Stdio::null());
    command
}

/// Runs a command to completion, returning (success, stdout, stderr).
pub fn output(command: &mut std::process::Command) -> Result<(bool, String, String)> {
    let out = command.output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Committed offsets of `group` on the pipeline's topic.
pub async fn committed(pipeline: &Pipeline, group: &str) -> Result<BTreeMap<i32, Option<i64>>> {
    let (b, g, t) = (pipeline.bootstrap().to_owned(), group.to_owned(), pipeline.spec.topic().to_owned());
    Ok(tokio::task::spawn_blocking(move || streamlab::kafka::admin::committed_offsets(&b.into(), &g, &t)).await??)
}

/// Landed ids, polled until `n` distinct ids are in the bucket.
pub async fn wait_landed(pipeline: &Pipeline, n: usize, timeout: Duration) -> Result<BTreeMap<String, usize>> {
    let started = Instant::now();
    loop {
        let landed = landed_ids(&pipeline.objects().await?)?;
        if landed.len() >= n {
            return Ok(landed);
        }
        ensure!(started.elapsed() < timeout, "{} of {n} events landed after {timeout:?}", landed.len());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Where a delivery of `spec` on the stack's broker and S3 reads, keeps its
/// state and writes.
pub fn endpoints(stack: &Stack, spec: &StreamSpec, membership: Membership) -> Endpoints {
    Endpoints {
        source: SourceSettings::new(stack.kafka().clone(), membership),
        state: StateStore::Topic(TopicStateStore::new(stack.kafka().clone())),
        sink: S3Sink::new(stack.s3_client().clone(), spec.bucket(), stack.s3_endpoint()),
    }
}
