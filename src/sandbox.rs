//! The whole pipeline on one laptop: broker and S3 from a backend, the real
//! producer and delivery on a scaled clock, live progress, and a table of what
//! landed at the end.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, BackendError, BackendKind};
use crate::clock::{Clock, ScaledClock, SharedClock};
use crate::delivery::sink::{self, S3Sink};
use crate::delivery::source::Membership;
use crate::delivery::source::SourceSettings;
use crate::delivery::state::{StateStore, TopicStateStore};
use crate::delivery::{Delivery, DeliveryError, DeliveryOptions, DeliveryStats, LandedObject};
use crate::events::GeneratorConfig;
use crate::faults::FaultSpec;
use crate::harness::{self, HarnessError};
use crate::kafka::KafkaConnection;
use crate::producer::{self, ProducerError, ProducerOptions, ProducerStats};
use crate::spec::{self, SpecError};
use crate::transform::{Functions, FunctionsConfig};

#[derive(Debug, Clone)]
pub struct SandboxOptions {
    pub spec: PathBuf,
    pub backend: BackendKind,
    /// Virtual seconds per wall second.
    pub speedup: f64,
    /// Events per wall second.
    pub rate: f64,
    pub seed: u64,
    pub partitions: i32,
    /// Stop after this much wall time; `None` runs until Ctrl-C.
    pub duration: Option<Duration>,
    /// Holds the broker log and the S3 data of this run.
    pub work_dir: PathBuf,
    /// Faults to inject; needs the local backend.
    pub faults: Option<FaultSpec>,
    /// Where the spec's Lambda function runs.
    pub functions: FunctionsConfig,
    /// Where the Glue tables of format conversions are.
    pub glue_dir: std::path::PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Harness(#[from] HarnessError),
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    #[error(transparent)]
    Producer(#[from] ProducerError),
}

/// What a sandbox run produced and landed.
#[derive(Debug)]
pub struct SandboxReport {
    pub produced: u64,
    pub delivered: u64,
    pub objects: Vec<LandedObject>,
    /// `<dir>/<key>` for each object, when the backend stores files.
    pub browse_dir: Option<PathBuf>,
    pub bucket: String,
    pub s3_endpoint: Option<String>,
}

/// Runs until `shutdown` fires or the duration passes, then stops producing,
/// lets delivery catch up, delivers every buffer and reports.
pub async fn run(options: &SandboxOptions, shutdown: CancellationToken) -> Result<SandboxReport, SandboxError> {
    // The spec is checked before anything starts.
    let spec = spec::load(&options.spec)?;
    options.functions.check(&spec).map_err(DeliveryError::from)?;
    crate::delivery::load_conversion(&spec, &options.glue_dir)?;
    let functions = Arc::new(Functions::new(options.functions.clone()));
    eprintln!("streamlab sandbox: stream {:?}, topic {:?} -> bucket {:?}", spec.name, spec.topic, spec.bucket);
    eprintln!(
        "  buffer {} MiB / {} s, speed-up x{} (an interval passes every {:.1} s), {} events/s, seed {}",
        spec.buffer.size_bytes / spec::MIB,
        spec.buffer.interval.as_secs(),
        options.speedup,
        spec.buffer.interval.as_secs_f64() / options.speedup,
        options.rate,
        options.seed,
    );

    let backend = match options.faults {
        None => Backend::start(options.backend, &options.work_dir).await?,
        Some(_) => Backend::start_with_faults(options.backend, &options.work_dir, options.seed).await?,
    };
    let stop_faults = CancellationToken::new();
    if let (Some(spec), Some(faults)) = (&options.faults, &backend.faults) {
        eprintln!("  injecting faults: {spec:?}");
        faults.apply(spec, stop_faults.clone());
    }
    let _stop_faults = stop_faults.clone().drop_guard();
    eprintln!(
        "  backend {:?}: broker {}, S3 {}",
        backend.kind,
        backend.bootstrap(),
        backend.s3.endpoint.as_deref().unwrap_or("AWS")
    );
    harness::create_topic(&backend.kafka, &spec.topic, options.partitions).await?;
    let client = sink::client(&backend.s3).await;
    // Someone else's bucket is theirs to create; delivery names a missing one.
    if backend.kind != BackendKind::External {
        harness::create_bucket(&client, &spec.bucket).await?;
    }

    let clock: SharedClock = Arc::new(ScaledClock::new(options.speedup));
    let sink = S3Sink::new(client, &spec.bucket, backend.s3.endpoint.as_deref());
    let delivery_options = DeliveryOptions {
        functions: functions.clone(),
        glue_dir: options.glue_dir.clone(),
        ..DeliveryOptions::new(
            SourceSettings::new(backend.kafka.clone(), Membership::Assigned),
            StateStore::Topic(TopicStateStore::new(backend.kafka.clone())),
        )
    };
    let delivery = Delivery::connect(spec.clone(), delivery_options, sink, clock.clone()).await?;
    let delivery_stats = delivery.stats();
    let stop_delivery = CancellationToken::new();
    let delivery_task = tokio::spawn(delivery.run(stop_delivery.clone()));

    let mut generator = GeneratorConfig::new(options.seed, clock.now_millis());
    generator.mean_gap_ms = (1000.0 * options.speedup / options.rate).max(1.0) as u64;
    let producer_options = ProducerOptions {
        kafka: backend.kafka.clone(),
        topic: spec.topic.clone(),
        rate: Some(options.rate),
        count: None,
        generator,
        event_timestamps: false,
    };
    let producer_stats = Arc::new(ProducerStats::default());
    let stop_producer = CancellationToken::new();
    let producer_task = {
        let (clock, stats, stop) = (clock.clone(), producer_stats.clone(), stop_producer.clone());
        tokio::spawn(async move { producer::produce(&producer_options, clock, stats, stop).await })
    };

    let started = Instant::now();
    let mut progress = tokio::time::interval(Duration::from_secs(1));
    let deadline = async {
        match options.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = &mut deadline => break,
            _ = progress.tick() => {
                let lag = lag(&backend.kafka, &spec.name, &spec.topic).await;
                print_progress(started, clock.as_ref(), &producer_stats, &delivery_stats, lag);
            }
        }
    }

    eprintln!("stopping: faults off, producer first, then delivery delivers every buffer");
    stop_faults.cancel();
    if let Some(faults) = &backend.faults {
        faults.s3.set_error_rate(0.0);
        faults.s3.set_lost_response_rate(0.0);
        faults.s3.set_slow(None);
        faults.kafka.set_down(false);
    }
    stop_producer.cancel();
    let produced_result = producer_task.await.expect("producer task does not panic");
    let produced = producer_stats.acked();
    // Let delivery read what was produced so the table accounts for it.
    let catch_up = Instant::now();
    while delivery_stats.read() < produced && catch_up.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_delivery.cancel();
    let stats = delivery_task.await.expect("delivery task does not panic");
    functions.stop().await;
    let stats = stats?;
    produced_result?;
    Ok(SandboxReport {
        produced,
        delivered: stats.delivered(),
        objects: stats.landed(),
        browse_dir: backend.landing_dir.as_ref().map(|d| d.join(&spec.bucket)),
        bucket: spec.bucket.clone(),
        s3_endpoint: backend.s3.endpoint.clone(),
    })
}

async fn lag(kafka: &KafkaConnection, group: &str, topic: &str) -> Option<i64> {
    let (b, g, t) = (kafka.clone(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || harness::consumer_lag(&b, &g, &t).ok()).await.ok().flatten()
}

fn print_progress(
    started: Instant,
    clock: &dyn Clock,
    producer: &ProducerStats,
    delivery: &DeliveryStats,
    lag: Option<i64>,
) {
    let buffered: Vec<String> =
        delivery.buffered_bytes().iter().map(|(p, b)| format!("{p}={}", human_bytes(*b))).collect();
    let line = format!(
        "[{:>4}s] virtual {} | produced {} | consumed {} | lag {} | buffered {} | objects {} ({} records)",
        started.elapsed().as_secs(),
        clock.now().format("%H:%M:%S"),
        producer.acked(),
        delivery.read(),
        lag.map_or_else(|| "?".to_owned(), |l| l.to_string()),
        if buffered.is_empty() { "-".to_owned() } else { buffered.join(" ") },
        delivery.objects.load(Ordering::Relaxed),
        delivery.delivered(),
    );
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

pub fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1024 * 1024 => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
        b if b >= 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// The final table: key, records, bytes, then where to look.
pub fn render_report(report: &SandboxReport) -> String {
    let mut objects = report.objects.clone();
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    let width = objects.iter().map(|o| o.key.len()).max().unwrap_or(3).max(3);
    let mut out = format!("{:<width$}  {:>8}  {:>10}\n", "key", "records", "bytes");
    for o in &objects {
        out += &format!("{:<width$}  {:>8}  {:>10}\n", o.key, o.records, o.bytes);
    }
    let total_bytes: u64 = objects.iter().map(|o| o.bytes).sum();
    out += &format!("{:<width$}  {:>8}  {:>10}\n", format!("{} objects", objects.len()), report.delivered, total_bytes);
    out += &format!("\nproduced {} events, delivered {} records\n", report.produced, report.delivered);
    if report.delivered < report.produced {
        out += &format!(
            "{} events were not delivered before the stop: they remain in the topic, uncommitted, and a later run of this stream delivers them\n",
            report.produced - report.delivered
        );
    } else if report.delivered > report.produced {
        out += &format!(
            "{} records were delivered twice: re-read after a commit was lost (at-least-once, as Firehose)\n",
            report.delivered - report.produced
        );
    }
    match &report.browse_dir {
        Some(dir) => out += &format!("browse the landed objects as files in {}\n", display(dir)),
        None => {
            out += &format!(
                "objects are in s3://{} at {}\n",
                report.bucket,
                report.s3_endpoint.as_deref().unwrap_or("AWS")
            )
        }
    }
    out
}

fn display(path: &Path) -> String {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()).display().to_string()
}
