//! The whole pipeline on one laptop: a [`Stack`] on a scaled clock, the
//! real producer in front of it, live progress, and a table of what landed
//! at the end.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::backend::BackendKind;
use crate::clock::{Clock, ClockMode};
use crate::delivery::{DeliveryStats, LandedObject};
use crate::events::GeneratorConfig;
use crate::faults::FaultSpec;
use crate::kafka::{admin, KafkaConnection};
use crate::producer::{self, ProducerError, ProducerOptions, ProducerStats};
use crate::spec::{self, SpecError};
use crate::stack::{Stack, StackError, StackOptions};
use crate::transform::FunctionsConfig;

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
#[non_exhaustive]
pub enum SandboxError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Stack(#[from] StackError),
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
/// lets delivery catch up, delivers every buffer and reports. The pipeline
/// is a [`Stack`] on a scaled clock with streamlab's producer in front and a
/// progress line every second.
pub async fn run(options: &SandboxOptions, shutdown: CancellationToken) -> Result<SandboxReport, SandboxError> {
    // The spec is checked (again by the stack, with its Lambda and Glue
    // settings) before anything starts.
    let spec = spec::load(&options.spec)?;
    eprintln!("streamlab sandbox: stream {:?}, topic {:?} -> bucket {:?}", spec.name(), spec.topic(), spec.bucket());
    eprintln!(
        "  buffer {} MiB / {} s, speed-up x{} (an interval passes every {:.1} s), {} events/s, seed {}",
        spec.buffer().size_bytes / spec::MIB,
        spec.buffer().interval.as_secs(),
        options.speedup,
        spec.buffer().interval.as_secs_f64() / options.speedup,
        options.rate,
        options.seed,
    );
    let stack_options = StackOptions {
        partitions: options.partitions,
        clock: ClockMode::Scaled { speedup: options.speedup },
        backend: options.backend,
        work_dir: Some(options.work_dir.clone()),
        fault_seed: options.faults.as_ref().map(|_| options.seed),
        functions: options.functions.clone(),
        glue_dir: options.glue_dir.clone(),
        ..StackOptions::new([options.spec.clone()])
    };
    let stack = Stack::start(stack_options).await?;
    let stop_faults = CancellationToken::new();
    if let (Some(spec), Some(faults)) = (&options.faults, stack.faults()) {
        eprintln!("  injecting faults: {spec:?}");
        faults.apply(spec, stop_faults.clone());
    }
    let _stop_faults = stop_faults.clone().drop_guard();
    eprintln!(
        "  backend {:?}: broker {}, S3 {}",
        options.backend.resolve_for(options.faults.is_some()).await,
        stack.bootstrap(),
        stack.s3_endpoint().unwrap_or("AWS")
    );
    let clock = stack.clock();
    let delivery_stats = stack.stats(spec.name()).await?;
    let producer_options = ProducerOptions {
        kafka: stack.kafka().clone(),
        topic: spec.topic().to_owned(),
        rate: Some(options.rate),
        count: None,
        generator: GeneratorConfig::new(options.seed, clock.now_millis()).paced(options.rate, options.speedup),
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
                let lag = lag(stack.kafka(), spec.name(), spec.topic()).await;
                print_progress(started, clock.as_ref(), &producer_stats, &delivery_stats, lag);
            }
        }
    }

    eprintln!("stopping: faults off, producer first, then delivery delivers every buffer");
    stop_faults.cancel();
    if let Some(faults) = stack.faults() {
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
    let mut stats = stack.shutdown().await?;
    let stats = stats.remove(spec.name()).unwrap_or(delivery_stats);
    produced_result?;
    Ok(SandboxReport {
        produced,
        delivered: stats.delivered(),
        objects: stats.landed(),
        browse_dir: stack.landing_dir().map(|d| d.join(spec.bucket())),
        bucket: spec.bucket().to_owned(),
        s3_endpoint: stack.s3_endpoint().map(str::to_owned),
    })
}

async fn lag(kafka: &KafkaConnection, group: &str, topic: &str) -> Option<i64> {
    let (b, g, t) = (kafka.clone(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || admin::consumer_lag(&b, &g, &t).ok()).await.ok().flatten()
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
