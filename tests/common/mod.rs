//! The harness the integration tests share: a pipeline on its own local
//! backend (tansu + in-process S3), driven by a manual clock, with bounded
//! waits so a broken pipeline fails a test instead of hanging it.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use chrono::{DateTime, Utc};
use streamlab::backend::{Backend, BackendKind};
use streamlab::clock::{ManualClock, SharedClock};
use streamlab::delivery::sink::{self, S3Sink};
use streamlab::delivery::source::SourceSettings;
use streamlab::delivery::{
    Delivery, DeliveryError, DeliveryOptions, DeliveryStats, DEFAULT_ACTIVE_PARTITION_LIMIT, DEFAULT_MAX_BUFFERED_BYTES,
};
use streamlab::events::Event;
use streamlab::harness::{self, StoredObject};
use streamlab::producer::{self, ProducerStats};
use streamlab::spec::StreamSpec;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub async fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) -> Result<()> {
    let started = Instant::now();
    while !condition() {
        ensure!(started.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// A backend with the spec's topic and bucket, and a manual clock.
pub struct Pipeline {
    pub backend: Backend,
    pub spec: StreamSpec,
    pub client: aws_sdk_s3::Client,
    pub manual: Arc<ManualClock>,
    pub clock: SharedClock,
    _work: tempfile::TempDir,
}

/// A delivery instance running in the background.
pub struct Running {
    pub stats: Arc<DeliveryStats>,
    stop: CancellationToken,
    task: JoinHandle<Result<Arc<DeliveryStats>, DeliveryError>>,
}

impl Running {
    /// Stops delivery (which delivers every buffer) and waits for it.
    pub async fn stop(self) -> Result<Arc<DeliveryStats>> {
        self.stop.cancel();
        Ok(self.task.await??)
    }
}

/// Logs to the test output when `STREAMLAB_TEST_LOG` is set (a tracing
/// filter such as `streamlab=debug`).
pub fn init_logging() {
    if let Ok(filter) = std::env::var("STREAMLAB_TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
}

impl Pipeline {
    pub async fn start(spec: &Path, partitions: i32, now: DateTime<Utc>) -> Result<Self> {
        Self::start_with(spec, partitions, now, None).await
    }

    /// A pipeline whose S3 PUTs and broker connections can be faulted
    /// (`self.backend.faults`), with a seeded fault schedule.
    pub async fn start_faulty(spec: &Path, partitions: i32, now: DateTime<Utc>, seed: u64) -> Result<Self> {
        Self::start_with(spec, partitions, now, Some(seed)).await
    }

    async fn start_with(spec: &Path, partitions: i32, now: DateTime<Utc>, fault_seed: Option<u64>) -> Result<Self> {
        init_logging();
        let spec = streamlab::spec::load(spec)?;
        let work = tempfile::tempdir()?;
        let backend = match fault_seed {
            None => Backend::start(BackendKind::Local, work.path()).await?,
            Some(seed) => Backend::start_with_faults(BackendKind::Local, work.path(), seed).await?,
        };
        harness::create_topic(&backend.bootstrap, &spec.topic, partitions).await?;
        let client = sink::client(&backend.s3).await;
        harness::create_bucket(&client, &spec.bucket).await?;
        let manual = Arc::new(ManualClock::new(now));
        let clock: SharedClock = manual.clone();
        Ok(Self { backend, spec, client, manual, clock, _work: work })
    }

    /// Joins the consumer group and starts delivering, with seeded uuids and
    /// random strings.
    pub async fn deliver(&self, seed: u64, active_partition_limit: Option<usize>) -> Result<Running> {
        let limit = active_partition_limit.unwrap_or(DEFAULT_ACTIVE_PARTITION_LIMIT);
        self.deliver_with(seed, |o| o.active_partition_limit = limit).await
    }

    /// Starts delivery with options adjusted by `tweak`.
    pub async fn deliver_with(&self, seed: u64, tweak: impl FnOnce(&mut DeliveryOptions)) -> Result<Running> {
        let sink = S3Sink::new(self.client.clone(), &self.spec.bucket, self.backend.s3.endpoint.as_deref());
        let mut options = DeliveryOptions {
            source: SourceSettings { bootstrap: self.backend.bootstrap.clone(), instance_id: "test".into() },
            version: 1,
            seed: Some(seed),
            active_partition_limit: DEFAULT_ACTIVE_PARTITION_LIMIT,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
        };
        tweak(&mut options);
        let delivery = Delivery::connect(self.spec.clone(), options, sink, self.clock.clone()).await?;
        let stats = delivery.stats();
        let stop = CancellationToken::new();
        let task = tokio::spawn(delivery.run(stop.clone()));
        Ok(Running { stats, stop, task })
    }

    /// Publishes events with the real producer; every one must be acked.
    pub async fn publish(&self, events: Vec<Event>) -> Result<()> {
        let n = events.len() as u64;
        let stats = Arc::new(ProducerStats::default());
        let (bootstrap, topic) = (&self.backend.bootstrap, &self.spec.topic);
        producer::publish(
            bootstrap,
            topic,
            None,
            events.into_iter(),
            self.clock.clone(),
            stats.clone(),
            CancellationToken::new(),
        )
        .await?;
        ensure!(stats.acked() == n, "broker acknowledged {} of {n}", stats.acked());
        Ok(())
    }

    /// Crosses the buffer interval on the manual clock.
    pub fn pass_interval(&self) {
        self.manual.advance(self.spec.buffer.interval + Duration::from_secs(1));
    }

    pub async fn objects(&self) -> Result<Vec<StoredObject>> {
        Ok(harness::read_bucket(&self.client, &self.spec.bucket).await?)
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
    _partitions: i32,
    expected: usize,
) -> Result<std::collections::HashMap<String, (i32, i64, i64)>> {
    Ok(harness::read_topic(bootstrap, topic, expected, Duration::from_secs(30))?)
}
