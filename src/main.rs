//! The `streamlab` command: parses the CLI, wires signals to a cancellation
//! token, and calls the library. Everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use streamlab::backend::BackendKind;
use streamlab::clock::{ScaledClock, SharedClock, SystemClock};
use streamlab::delivery::sink::{self, S3Settings, S3Sink};
use streamlab::delivery::source::SourceSettings;
use streamlab::delivery::version::VersionStore;
use streamlab::delivery::{Delivery, DeliveryOptions};
use streamlab::events::GeneratorConfig;
use streamlab::producer::{self, ProducerOptions, ProducerStats};
use streamlab::sandbox::{self, SandboxOptions};
use streamlab::soak::SoakOptions;
use streamlab::spec;
use tokio_util::sync::CancellationToken;

/// Local emulation and integration-test harness for Kafka (MSK) -> Amazon
/// Data Firehose -> S3 pipelines.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish seeded e-commerce events to a Kafka topic.
    Produce(ProduceArgs),
    /// Run the Firehose emulator: read a topic, write objects to S3.
    Deliver(DeliverArgs),
    /// Run the whole pipeline locally with live progress.
    Sandbox(SandboxArgs),
    /// Everything that can go wrong, at volume: S3 failures, broker outages
    /// and SIGKILLs of the delivery process; prints loss and duplicate figures.
    Soak(SoakArgs),
    /// Check stream spec files as AWS would, without running anything.
    Validate {
        /// `CreateDeliveryStream` JSON files.
        #[arg(required = true)]
        specs: Vec<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct ProduceArgs {
    /// Kafka bootstrap address, HOST:PORT.
    #[arg(long)]
    bootstrap: String,
    #[arg(long)]
    topic: String,
    /// Events per second (wall time); default is as fast as possible.
    #[arg(long, value_parser = positive_f64)]
    rate: Option<f64>,
    /// Number of events; default runs until Ctrl-C.
    #[arg(long)]
    count: Option<u64>,
    /// Seed of the event generator: same seed, same events.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// `occurred_at` of the first event (RFC 3339); default is now.
    #[arg(long, value_parser = parse_rfc3339)]
    start: Option<i64>,
    #[command(flatten)]
    clock: ClockArgs,
}

#[derive(Debug, Args)]
struct ClockArgs {
    /// Run time N times faster (Kafka timestamps and buffer intervals follow
    /// virtual time): 300 makes a 300 s interval pass in 1 s.
    #[arg(long, value_parser = positive_f64)]
    speedup: Option<f64>,
}

impl ClockArgs {
    fn clock(&self) -> SharedClock {
        match self.speedup {
            Some(s) => Arc::new(ScaledClock::new(s)),
            None => Arc::new(SystemClock),
        }
    }
}

#[derive(Debug, Args)]
struct DeliverArgs {
    /// The `CreateDeliveryStream` JSON file (as deployed to AWS).
    #[arg(long)]
    spec: PathBuf,
    /// Kafka bootstrap address, HOST:PORT (stands in for the MSK cluster).
    #[arg(long)]
    bootstrap: String,
    /// S3-compatible endpoint URL, addressed path-style. Omit for AWS S3.
    #[arg(long)]
    s3_endpoint: Option<String>,
    /// AWS region for S3; default from the standard AWS chain.
    #[arg(long)]
    region: Option<String>,
    /// Stable id of this delivery instance (static group membership: a
    /// restarted instance with the same id gets its partitions back).
    #[arg(long, default_value = "0")]
    instance_id: String,
    /// Where stream versions are kept (one small JSON file per stream); the
    /// version in object names grows when the spec changes.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Most dynamic partitions open at once (Firehose's default limit);
    /// records for more go to the error prefix.
    #[arg(long, default_value_t = streamlab::delivery::DEFAULT_ACTIVE_PARTITION_LIMIT)]
    active_partition_limit: usize,
    /// Bound on bytes held in buffers; at the bound the fullest buffer is
    /// delivered early, and while S3 is down reading stops there.
    #[arg(long, default_value_t = streamlab::delivery::DEFAULT_MAX_BUFFERED_BYTES)]
    max_buffered_bytes: u64,
    #[command(flatten)]
    clock: ClockArgs,
}

#[derive(Debug, Args)]
struct SandboxArgs {
    /// Stream spec to run.
    #[arg(long, default_value = "fixtures/streams/orders-to-s3.json")]
    spec: PathBuf,
    /// Stop after this long (e.g. 30s, 2m); default runs until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Virtual seconds per wall second.
    #[arg(long, default_value_t = 60.0, value_parser = positive_f64)]
    speedup: f64,
    /// Events per wall second.
    #[arg(long, default_value_t = 200.0, value_parser = positive_f64)]
    rate: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Partitions of the topic the sandbox creates.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=1000))]
    partitions: i32,
    #[arg(long, value_enum, default_value_t = BackendKind::Local, env = "STREAMLAB_BACKEND")]
    backend: BackendKind,
    /// Where this run keeps its broker log and S3 data; default is a new
    /// directory under target/streamlab-sandbox/.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Faults to inject (local backend), e.g.
    /// `s3-error-rate=0.1,s3-lost-response-rate=0.01,s3-slow=200ms,broker-outage=5s/60s`.
    #[arg(long)]
    faults: Option<streamlab::faults::FaultSpec>,
}

#[derive(Debug, Args)]
struct SoakArgs {
    /// Stream spec; must read from the earliest record.
    #[arg(long, default_value = "fixtures/streams/read-from-earliest.json")]
    spec: PathBuf,
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Events per second.
    #[arg(long, default_value_t = 1_000.0, value_parser = positive_f64)]
    rate: f64,
    /// Share of S3 PUTs that fail (500, 503 SlowDown, connection reset).
    #[arg(long, default_value_t = 0.1)]
    s3_error_rate: f64,
    #[arg(long, default_value_t = 2)]
    broker_outages: u32,
    /// Length of each broker outage.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    outage: Duration,
    /// SIGKILLs of the delivery process, at seeded random moments.
    #[arg(long, default_value_t = 5)]
    kills: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Clock speed of the delivery process.
    #[arg(long, default_value_t = 600.0, value_parser = positive_f64)]
    speedup: f64,
    /// Fail if not finished within this long.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=1000))]
    partitions: i32,
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

fn parse_rfc3339(s: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2026-07-13T14:00:00Z: {e}"))
}

/// Cancels the token on Ctrl-C or SIGTERM; a second Ctrl-C exits at once.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let fired = token.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("shutting down (Ctrl-C again to abort)");
        fired.cancel();
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(130);
    });
    token
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The soak and a sandbox with faults cause broker outages on purpose;
    // librdkafka's complaints about them would drown the progress lines.
    let injecting = match &cli.command {
        Command::Soak(_) => true,
        Command::Sandbox(args) => args.faults.is_some(),
        _ => false,
    };
    let default_filter = if injecting { "warn,rdkafka=off" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STREAMLAB_LOG").unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Validate { specs } => Ok(validate(&specs)),
        Command::Produce(args) => produce(args).await.map(|()| ExitCode::SUCCESS),
        Command::Deliver(args) => deliver(args).await.map(|()| ExitCode::SUCCESS),
        Command::Sandbox(args) => run_sandbox(args).await.map(|()| ExitCode::SUCCESS),
        Command::Soak(args) => soak(args).await,
    }
}

fn validate(specs: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for path in specs {
        match spec::load(path) {
            Ok(s) => {
                println!("{}: valid (stream {:?}, topic {:?}, bucket {:?})", path.display(), s.name, s.topic, s.bucket)
            }
            Err(e) => {
                ok = false;
                println!("{e}");
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn produce(args: ProduceArgs) -> Result<()> {
    let clock = args.clock.clock();
    let speedup = args.clock.speedup.unwrap_or(1.0);
    let mut generator = GeneratorConfig::new(args.seed, args.start.unwrap_or_else(|| clock.now_millis()));
    if let Some(rate) = args.rate {
        generator.mean_gap_ms = (1000.0 * speedup / rate).max(1.0) as u64;
    }
    let options =
        ProducerOptions { bootstrap: args.bootstrap, topic: args.topic, rate: args.rate, count: args.count, generator };
    let stats = Arc::new(ProducerStats::default());
    let shutdown = shutdown_on_signals();
    let progress = {
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            tick.tick().await;
            loop {
                tick.tick().await;
                eprintln!("produced {} (acknowledged)", stats.acked());
            }
        })
    };
    let result = producer::produce(&options, clock, stats.clone(), shutdown).await;
    progress.abort();
    result.with_context(|| format!("producing to topic {:?}", options.topic))?;
    println!("produced {} events to {:?} (seed {})", stats.acked(), options.topic, options.generator.seed);
    Ok(())
}

async fn deliver(args: DeliverArgs) -> Result<()> {
    // Invalid configuration is rejected before anything connects.
    let spec = spec::load(&args.spec)?;
    let clock = args.clock.clock();
    let store = VersionStore::new(args.state_dir.clone().unwrap_or_else(VersionStore::default_dir));
    let version = store.resolve(&spec)?;
    let settings = S3Settings { endpoint: args.s3_endpoint.clone(), region: args.region, credentials: None };
    let client = sink::client(&settings).await;
    let sink = S3Sink::new(client, &spec.bucket, args.s3_endpoint.as_deref());
    let options = DeliveryOptions {
        source: SourceSettings { bootstrap: args.bootstrap, instance_id: args.instance_id },
        version,
        seed: None,
        active_partition_limit: args.active_partition_limit,
        max_buffered_bytes: args.max_buffered_bytes,
    };
    let delivery = Delivery::connect(spec.clone(), options, sink, clock).await?;
    eprintln!(
        "delivering stream {:?} version {version}: topic {:?} -> s3://{}/ (Ctrl-C to stop)",
        spec.name, spec.topic, spec.bucket
    );
    let stats = delivery.run(shutdown_on_signals()).await?;
    let landed = stats.landed();
    eprintln!("stopped: {} records read, {} delivered in {} objects", stats.read(), stats.delivered(), landed.len());
    // Records handed over in a rebalance were read here and delivered by
    // another instance.
    let handed_over = stats.records_handed_over.load(std::sync::atomic::Ordering::Relaxed);
    let undelivered = stats.read().saturating_sub(stats.delivered() + handed_over);
    if undelivered > 0 {
        bail!("{undelivered} records were read but not delivered; they are uncommitted and will be re-read on the next start");
    }
    Ok(())
}

fn run_dir(kind: &str) -> PathBuf {
    PathBuf::from("target").join(kind).join(chrono::Utc::now().format("run-%Y%m%d-%H%M%S").to_string())
}

async fn soak(args: SoakArgs) -> Result<ExitCode> {
    if !(0.0..=1.0).contains(&args.s3_error_rate) {
        bail!("--s3-error-rate must be between 0 and 1; got {}", args.s3_error_rate);
    }
    let options = SoakOptions {
        spec: args.spec,
        events: args.events,
        rate: args.rate,
        s3_error_rate: args.s3_error_rate,
        broker_outages: args.broker_outages,
        outage: args.outage,
        kills: args.kills,
        seed: args.seed,
        speedup: args.speedup,
        timeout: args.timeout,
        partitions: args.partitions,
        work_dir: args.work_dir.unwrap_or_else(|| run_dir("streamlab-soak")),
    };
    eprintln!(
        "soak: {} events at {}/s, {:.0}% of S3 PUTs failing, {} broker outages of {:?}, {} SIGKILLs of delivery (work dir {})",
        options.events,
        options.rate,
        options.s3_error_rate * 100.0,
        options.broker_outages,
        options.outage,
        options.kills,
        options.work_dir.display()
    );
    let report = streamlab::soak::run(&options, shutdown_on_signals()).await?;
    print!("{}", report.render());
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn run_sandbox(args: SandboxArgs) -> Result<()> {
    let work_dir = args.work_dir.unwrap_or_else(|| run_dir("streamlab-sandbox"));
    let options = SandboxOptions {
        spec: args.spec,
        backend: args.backend,
        speedup: args.speedup,
        rate: args.rate,
        seed: args.seed,
        partitions: args.partitions,
        duration: args.duration,
        work_dir,
        faults: args.faults,
    };
    let report = sandbox::run(&options, shutdown_on_signals()).await?;
    print!("{}", sandbox::render_report(&report));
    Ok(())
}
