//! The `streamlab` command: parses the CLI, wires signals to a cancellation
//! token, and calls the library. Everything else lives in the library.

/// Delivery allocates a buffer per record and frees it when its object
/// lands, millions of small blocks alive at once in varying order: glibc's
/// allocator spends a tenth of the read loop's time there (measured with
/// `perf` on `just bench`), mimalloc a fraction of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use std::time::Instant;
use streamlab::backend::BackendKind;
use streamlab::checks::expect::Expectation;
use streamlab::checks::snapshot::{Comparison, Snapshot, SnapshotError};
use streamlab::clock::{ScaledClock, SharedClock, SystemClock};
use streamlab::delivery::sink::{self, S3Settings, S3Sink};
use streamlab::delivery::source::Membership;
use streamlab::delivery::source::SourceSettings;
use streamlab::delivery::state::{DirStateStore, StateStore, TopicStateStore};
use streamlab::delivery::{Delivery, DeliveryOptions};
use streamlab::events::GeneratorConfig;
use streamlab::kafka::ConnectionArgs;
use streamlab::landing::{Landing, Masks};
use streamlab::producer::{self, ProducerOptions, ProducerStats};
use streamlab::sandbox::{self, SandboxOptions};
use streamlab::soak::SoakOptions;
use streamlab::spec;
use streamlab::stack::control::ControlClient;
use streamlab::stack::run::{default_masks, RunChecks, SnapshotOutcome};
use streamlab::stack::{ClockMode, StackOptions, Status};
use streamlab::transform::{Functions, FunctionsConfig};
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
    /// Start the local stack for your own producer and readers: a broker, S3
    /// and one Firehose delivery per spec, until Ctrl-C.
    Up(UpArgs),
    /// Start the stack, run your command against it, then deliver what it
    /// wrote and check the landing (snapshot, expectations).
    Run(RunArgs),
    /// Move the clock of a running stack (started with --clock manual).
    Clock {
        #[command(subcommand)]
        command: ClockCommand,
    },
    /// Deliver every buffer of a running stack now, as if its interval had
    /// passed; returns once the objects landed.
    Flush {
        /// Only this stream.
        #[arg(long)]
        stream: Option<String>,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Wait until a running stack has read everything written to its topics
    /// so far (and no object is being written).
    Settle {
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Per stream: records read, buffered, delivered, objects, errors, lag.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// What landed, decoded: keys, headers, records.
    Landing {
        #[arg(long)]
        stream: Option<String>,
        #[arg(long, value_enum, default_value_t = LandingFormat::Table)]
        format: LandingFormat,
        #[command(flatten)]
        masks: MaskArgs,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Compare a running stack's landing with a reviewed snapshot file, or
    /// write it.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Measure, in one run on this machine: the engine alone, the consume and
    /// PUT ceilings, delivery per format against them, a hand-written Python
    /// baseline and the test loop. Prints a table with targets; writes JSON
    /// under target/bench/.
    Bench(BenchArgs),
}

#[derive(Debug, Subcommand)]
enum ClockCommand {
    /// Move the manual clock forward, e.g. `streamlab clock advance 5m`;
    /// buffers whose interval passed deliver before this returns.
    Advance {
        #[arg(value_parser = humantime::parse_duration)]
        by: Duration,
        #[command(flatten)]
        control: ControlArgs,
    },
}

#[derive(Debug, Subcommand)]
enum SnapshotCommand {
    /// Exit non-zero, printing a diff, when the landing differs from FILE.
    Check {
        file: PathBuf,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Write the landing to FILE (review it, then commit it).
    Update {
        file: PathBuf,
        #[command(flatten)]
        masks: MaskArgs,
        #[command(flatten)]
        control: ControlArgs,
    },
}

#[derive(Debug, Args)]
struct ControlArgs {
    /// Control endpoint of the stack; default $STREAMLAB_CONTROL (written to
    /// the env file by `streamlab up`).
    #[arg(long)]
    control: Option<String>,
}

impl ControlArgs {
    fn client(&self) -> Result<ControlClient> {
        Ok(ControlClient::from_env(self.control.clone())?)
    }
}

#[derive(Debug, Args)]
struct MaskArgs {
    /// What to mask in keys: uuid, random, time (comma-separated), or none.
    /// Default: uuid,random unless the stack is seeded; a snapshot file's own
    /// masks when checking.
    #[arg(long, value_parser = Masks::parse_list)]
    mask: Option<Masks>,
    /// A record field to replace with "[redacted]" (repeatable): .event_id,
    /// .order.placed_at, .items[].sku.
    #[arg(long, value_parser = parse_redact)]
    redact: Vec<String>,
}

impl MaskArgs {
    /// The masks asked for, `None` when neither option was given.
    fn masks(&self) -> Option<Masks> {
        if self.mask.is_none() && self.redact.is_empty() {
            return None;
        }
        let mut masks = self.mask.clone().unwrap_or_default();
        masks.redact = self.redact.clone();
        Some(masks)
    }
}

fn parse_redact(s: &str) -> Result<String, String> {
    streamlab::landing::check_redact_path(s).map(|()| s.to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LandingFormat {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ClockChoice {
    /// Moves only with `streamlab clock advance` (or the control API).
    Manual,
    /// The wall clock.
    System,
}

/// Where the specs' Lambda processors run; never in the spec, so the spec
/// stays deployable.
#[derive(Debug, Args, Clone)]
struct LambdaArgs {
    /// Run a function locally, unmodified: ARN=COMMAND (repeatable; the ARN
    /// as in the spec's LambdaArn, or the function name). COMMAND runs in the
    /// current directory as the function's runtime, against streamlab's
    /// Lambda Runtime API, e.g. 'python -m awslambdaric transform.handler'
    /// or 'npx aws-lambda-ric index.handler'.
    #[arg(long = "lambda", value_name = "ARN=COMMAND", value_parser = parse_lambda)]
    lambda: Vec<(String, String)>,
    /// Invoke every function not given by --lambda at this Lambda Invoke API
    /// endpoint (sam local start-lambda, LocalStack, or AWS itself).
    #[arg(long, value_name = "URL")]
    lambda_endpoint: Option<String>,
    /// The functions' timeout (Firehose's maximum, 5m, is the default).
    #[arg(long, value_name = "DURATION", value_parser = parse_lambda_timeout)]
    lambda_timeout: Option<Duration>,
}

impl LambdaArgs {
    fn config(&self) -> FunctionsConfig {
        FunctionsConfig {
            local: self.lambda.clone(),
            endpoint: self.lambda_endpoint.clone(),
            timeout: self.lambda_timeout,
        }
    }
}

fn parse_lambda(s: &str) -> Result<(String, String), String> {
    FunctionsConfig::parse_local(s).map_err(|e| e.to_string())
}

fn parse_lambda_timeout(s: &str) -> Result<Duration, String> {
    let timeout = humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration (e.g. 30s, 5m): {e}"))?;
    if timeout.is_zero() || timeout > streamlab::transform::DEFAULT_TIMEOUT {
        return Err(format!(
            "{s:?}: Firehose invokes a function for at most 5 minutes; give a timeout between 1s and 5m"
        ));
    }
    Ok(timeout)
}

#[derive(Debug, Args)]
struct StackArgs {
    /// CreateDeliveryStream JSON files or directories of them (repeatable);
    /// one delivery per spec, topics and buckets created from them.
    #[arg(long = "spec", required = true, num_args = 1..)]
    specs: Vec<PathBuf>,
    /// Partitions of each topic the stack creates.
    #[arg(long, default_value_t = streamlab::stack::DEFAULT_PARTITIONS, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    partitions: i32,
    /// Partitions of one topic, NAME=N (repeatable); also creates topics no
    /// spec reads.
    #[arg(long = "topic", value_parser = parse_topic)]
    topics: Vec<(String, i32)>,
    /// The clock buffers and keys follow. Default manual.
    #[arg(long, value_enum, conflicts_with = "speedup")]
    clock: Option<ClockChoice>,
    /// Run the clock N times faster than the wall clock (300: a 5-minute
    /// buffer interval passes in a second).
    #[arg(long, value_parser = positive_f64)]
    speedup: Option<f64>,
    /// Start of the manual clock (RFC 3339); default now.
    #[arg(long, value_parser = parse_rfc3339)]
    clock_start: Option<i64>,
    /// Write the endpoints here as KEY=value lines once the stack is ready.
    #[arg(long)]
    env_file: Option<PathBuf>,
    /// Keep the broker log and S3 data here; default a temporary directory
    /// removed at exit.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = BackendKind::Local, env = "STREAMLAB_BACKEND")]
    backend: BackendKind,
    /// Seed uuids and random strings in keys: the same input lands under the
    /// same keys.
    #[arg(long)]
    seed: Option<u64>,
    /// Refuse writes to topics that do not exist (MSK's default) instead of
    /// creating them.
    #[arg(long)]
    no_auto_create_topics: bool,
    #[command(flatten)]
    lambda: LambdaArgs,
    /// Where the Glue tables of format conversions are: a file per table,
    /// `<database>.<table>.json`, holding what `aws glue get-table` prints.
    #[arg(long, default_value = streamlab::convert::DEFAULT_GLUE_DIR)]
    glue_dir: PathBuf,
}

impl StackArgs {
    fn options(&self) -> StackOptions {
        let clock = match (self.clock, self.speedup) {
            (_, Some(speedup)) => ClockMode::Scaled { speedup },
            (Some(ClockChoice::System), None) => ClockMode::System,
            _ => ClockMode::Manual {
                start_ms: self.clock_start.unwrap_or_else(|| chrono::Utc::now().timestamp_millis()),
            },
        };
        StackOptions {
            partitions: self.partitions,
            topics: self.topics.iter().cloned().collect(),
            clock,
            backend: self.backend,
            work_dir: self.work_dir.clone(),
            seed: self.seed,
            auto_create_topics: !self.no_auto_create_topics,
            functions: self.lambda.config(),
            glue_dir: self.glue_dir.clone(),
            ..StackOptions::new(self.specs.clone())
        }
    }
}

fn parse_topic(s: &str) -> Result<(String, i32), String> {
    let (name, n) = s.split_once('=').ok_or_else(|| format!("{s:?} is not NAME=PARTITIONS, e.g. orders=6"))?;
    let n: i32 = n.parse().map_err(|_| format!("{s:?}: {n:?} is not a number of partitions"))?;
    if name.is_empty() || !(1..=10_000).contains(&n) {
        return Err(format!("{s:?}: give a topic name and 1 to 10000 partitions"));
    }
    Ok((name.to_owned(), n))
}

#[derive(Debug, Args)]
struct UpArgs {
    #[command(flatten)]
    stack: StackArgs,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// Compare the landing with this snapshot file (see `snapshot update`).
    #[arg(long)]
    snapshot: Option<PathBuf>,
    /// Write the snapshot file instead of comparing.
    #[arg(long, requires = "snapshot")]
    update_snapshot: bool,
    #[command(flatten)]
    masks: MaskArgs,
    /// Expectations: exactly-once, no-errors, key-shape (comma-separated or
    /// repeated).
    #[arg(long, value_delimiter = ',')]
    expect: Vec<Expectation>,
    /// Expect at least N data records to land.
    #[arg(long)]
    expect_records: Option<u64>,
    /// A shell command run after the checks against the landing (a
    /// downstream reader, your own assertions); it gets the stack's env and
    /// STREAMLAB_LANDING, a JSON file of the landing.
    #[arg(long)]
    then: Option<String>,
    /// How long to wait for the stack to read what the command wrote.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    settle_timeout: Duration,
    /// The command to run with the stack's env, e.g. `-- node producer.js`.
    #[arg(last = true, required = true, num_args = 1..)]
    command: Vec<String>,
}

#[derive(Debug, Args)]
struct ProduceArgs {
    /// Kafka bootstrap address, HOST:PORT; default $KAFKA_BOOTSTRAP (set by
    /// `streamlab run` and the env file of `streamlab up`).
    #[arg(long, env = "KAFKA_BOOTSTRAP")]
    bootstrap: String,
    #[command(flatten)]
    kafka: ConnectionArgs,
    #[arg(long)]
    topic: String,
    /// Kafka record timestamps: `now` (the producer's clock) or `event` (each
    /// event's occurred_at, which makes a seeded run's keys reproducible).
    #[arg(long, value_enum, default_value_t = TimestampSource::Now)]
    timestamps: TimestampSource,
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
    /// Kafka bootstrap address, HOST:PORT[,HOST:PORT…]: a local broker or
    /// the MSK cluster's brokers (with --kafka-security).
    #[arg(long)]
    bootstrap: String,
    #[command(flatten)]
    kafka: ConnectionArgs,
    /// S3-compatible endpoint URL, addressed path-style. Omit for AWS S3.
    #[arg(long)]
    s3_endpoint: Option<String>,
    /// AWS region for S3; default from the standard AWS chain.
    #[arg(long)]
    region: Option<String>,
    /// Stable id of this delivery instance, making it a static group member:
    /// restarted with the same id, it gets its partitions back without a
    /// rebalance. Default: a dynamic member, unique per process.
    #[arg(long)]
    instance_id: Option<String>,
    /// Keep stream state (version, activation time, start offsets) as JSON
    /// files in this directory instead of in the topic
    /// `__streamlab_stream_state` on the broker (the default, next to the
    /// consumer group).
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
    /// Objects compressed and written at once; default: one per core, at
    /// least 2.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    max_in_flight: Option<u16>,
    /// librdkafka's max.poll.interval.ms (e.g. 5m). Delivery polls the
    /// consumer every 20 ms even while S3 is down, so the default rarely
    /// needs changing.
    #[arg(long, value_parser = humantime::parse_duration)]
    max_poll_interval: Option<Duration>,
    /// Deliver what the topic holds when delivery starts, then stop
    /// (backfills, benchmarks). Each instance stops once its partitions are
    /// read to where they ended at start.
    #[arg(long)]
    exit_at_end: bool,
    /// Write a JSON summary here when delivery stops: records and bytes
    /// read and delivered, objects, and throughput from the first record
    /// read to the last object landed.
    #[arg(long)]
    report: Option<PathBuf>,
    #[command(flatten)]
    lambda: LambdaArgs,
    /// Where the Glue tables of format conversions are (`<database>.<table>.json`).
    #[arg(long, default_value = streamlab::convert::DEFAULT_GLUE_DIR)]
    glue_dir: PathBuf,
    #[command(flatten)]
    clock: ClockArgs,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Repetitions of the test loop; the median is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    repeat: u64,
    /// Events on the topic the throughput cases read.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(10_000..))]
    events: u64,
    /// Bound on buffered bytes of each delivery; peak RSS is held to twice
    /// this plus 100 MB.
    #[arg(long, default_value_t = 128 * 1024 * 1024)]
    max_buffered_bytes: u64,
    /// Objects each delivery writes at once (default as `deliver`).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    max_in_flight: Option<u16>,
    /// A Python with confluent-kafka and boto3 for the hand-written
    /// baseline (`just bench` installs them into .venv).
    #[arg(long, default_value = ".venv/bin/python")]
    python: PathBuf,
    /// Measure only the engine on memory (no broker, no S3): seconds, for
    /// profiling the delivery path.
    #[arg(long)]
    engine_only: bool,
    /// Only the delivery cases whose name contains this, e.g. `gzip`,
    /// `dynamic` (and neither the Python baseline nor the test loop).
    #[arg(long)]
    case: Option<String>,
    /// Where the JSON results go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
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
    #[command(flatten)]
    lambda: LambdaArgs,
    /// Where the Glue tables of format conversions are (`<database>.<table>.json`).
    #[arg(long, default_value = streamlab::convert::DEFAULT_GLUE_DIR)]
    glue_dir: PathBuf,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TimestampSource {
    Now,
    Event,
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
        // Exiting skips every destructor: containers this run started would
        // stay up until the next start removed them, so remove them now.
        eprintln!("aborting");
        let _ = tokio::time::timeout(Duration::from_secs(10), streamlab::backend::remove_own_containers()).await;
        std::process::exit(130);
    });
    token
}

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let code = runtime.block_on(async_main());
    // The command's stacks, deliveries and containers are stopped by now.
    // What may be left in the blocking pool is a periodic broker query
    // waiting out its timeout because the broker is gone (a sandbox's lag
    // probe); waiting for it would only delay the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

async fn async_main() -> ExitCode {
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
        Command::Up(args) => up(args).await.map(|()| ExitCode::SUCCESS),
        Command::Run(args) => run_command(args).await,
        Command::Clock { command: ClockCommand::Advance { by, control } } => {
            let answer = control
                .client()?
                .post("/v1/clock/advance", json!({ "by": humantime::format_duration(by).to_string() }))
                .await?;
            println!("clock at {}", answer["now"].as_str().unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        Command::Flush { stream, control } => {
            let answer = control.client()?.post("/v1/flush", json!({ "stream": stream })).await?;
            let flushed: Vec<&str> =
                answer["flushed"].as_array().into_iter().flatten().filter_map(|v| v.as_str()).collect();
            println!("flushed {}", flushed.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Command::Settle { timeout, control } => {
            control
                .client()?
                .post("/v1/settle", json!({ "timeout": humantime::format_duration(timeout).to_string() }))
                .await?;
            println!("settled");
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json, control } => {
            let answer = control.client()?.get("/v1/status").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                let status: Status = serde_json::from_value(answer).context("reading the stack's status")?;
                print!("{}", status.render());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Landing { stream, format, masks, control } => {
            let landing = fetch_landing(&control.client()?, stream.as_deref(), masks.masks().as_ref()).await?;
            match format {
                LandingFormat::Table => print!("{}", landing.render_table()),
                LandingFormat::Json => println!("{}", serde_json::to_string_pretty(&landing)?),
                LandingFormat::Yaml => print!("{}", yaml_serde::to_string(&landing)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Snapshot { command } => snapshot_command(command).await,
        Command::Bench(args) => bench(args).await,
    }
}

/// The landing from a running stack, masked as asked.
async fn fetch_landing(client: &ControlClient, stream: Option<&str>, masks: Option<&Masks>) -> Result<Landing> {
    let mut query = Vec::new();
    if let Some(stream) = stream {
        query.push(format!("stream={}", percent_encode(stream)));
    }
    if let Some(masks) = masks {
        let list: Vec<&str> = [("uuid", masks.uuid), ("random", masks.random), ("time", masks.time)]
            .iter()
            .filter(|(_, on)| *on)
            .map(|(name, _)| *name)
            .collect();
        query.push(format!("mask={}", if list.is_empty() { "none".to_owned() } else { list.join(",") }));
        query.extend(masks.redact.iter().map(|p| format!("redact={}", percent_encode(p))));
    }
    let path = if query.is_empty() { "/v1/landing".to_owned() } else { format!("/v1/landing?{}", query.join("&")) };
    let answer = client.get(&path).await?;
    serde_json::from_value(answer).context("reading the stack's landing")
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn snapshot_command(command: SnapshotCommand) -> Result<ExitCode> {
    match command {
        SnapshotCommand::Check { file, control } => {
            let recorded = Snapshot::load(&file)?;
            let landing = fetch_landing(&control.client()?, None, Some(&recorded.masks)).await?;
            match recorded.compare(&Snapshot::new(recorded.masks.clone(), landing)) {
                Comparison::Matches => {
                    println!("landing matches {}", file.display());
                    Ok(ExitCode::SUCCESS)
                }
                Comparison::Differs(diff) => {
                    print!("{diff}");
                    eprintln!(
                        "the landing differs from {} (above: - snapshot, + landing). If the change is intended, run `streamlab snapshot update {}` and review the file",
                        file.display(),
                        file.display()
                    );
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        SnapshotCommand::Update { file, masks, control } => {
            let client = control.client()?;
            let recorded = match Snapshot::load(&file) {
                Ok(s) => Some(s.masks),
                Err(SnapshotError::Missing { .. }) => None,
                Err(e) => return Err(e.into()),
            };
            let status: Status = serde_json::from_value(client.get("/v1/status").await?)?;
            let masks = default_masks(masks.masks().as_ref(), recorded.as_ref(), status.seeded);
            let landing = fetch_landing(&client, None, Some(&masks)).await?;
            Snapshot::new(masks, landing).save(&file)?;
            println!("wrote {}", file.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn bench(args: BenchArgs) -> Result<ExitCode> {
    use streamlab::bench::test_loop::LoopOptions;
    use streamlab::bench::throughput::ThroughputOptions;
    use streamlab::bench::BenchOptions;
    let binary = std::env::current_exe()?;
    let work_dir = run_dir("streamlab-bench");
    let options = BenchOptions {
        test_loop: LoopOptions { binary: binary.clone(), loops: args.repeat as usize, loop_events: 10_000 },
        throughput: ThroughputOptions {
            binary,
            events: args.events,
            partitions: 3,
            size_mb: 8,
            max_buffered_bytes: args.max_buffered_bytes,
            max_in_flight: args.max_in_flight.map_or_else(streamlab::delivery::default_max_in_flight, usize::from),
            python: args.python,
            baseline_script: PathBuf::from("tools/bench/baseline.py"),
            work_dir: work_dir.clone(),
            engine_only: args.engine_only,
            case_filter: args.case,
        },
    };
    eprintln!("bench: work dir {}", work_dir.display());
    let report = if args.engine_only {
        streamlab::bench::run_engine(&options).await?
    } else {
        streamlab::bench::run(&options).await?
    };
    print!("{}", report.render());
    let path = report.write_json(&args.out)?;
    eprintln!("results written to {}", path.display());
    Ok(ExitCode::SUCCESS)
}

async fn up(args: UpArgs) -> Result<()> {
    let shutdown = shutdown_on_signals();
    let started = Instant::now();
    let running = streamlab::stack::run::up(args.stack.options(), args.stack.env_file.as_deref()).await?;
    let stack = &running.stack;
    eprintln!(
        "streamlab up: {} stream(s) ready in {:.1}s, clock {} at {}",
        stack.specs().len(),
        started.elapsed().as_secs_f64(),
        stack.clock_mode().name(),
        streamlab::clock::rfc3339_millis(stack.clock().now_millis())
    );
    for spec in stack.specs() {
        eprintln!("  {}: topic {} -> s3://{}/", spec.name, spec.topic, spec.bucket);
    }
    for (key, value) in &running.env {
        println!("{key}={value}");
    }
    match &args.stack.env_file {
        Some(path) => {
            eprintln!("endpoints written to {}; Ctrl-C to stop (buffers are delivered first)", path.display())
        }
        None => {
            eprintln!("Ctrl-C to stop (buffers are delivered first); --env-file PATH writes the endpoints to a file")
        }
    }
    shutdown.cancelled().await;
    let stats = stack.shutdown().await?;
    for (stream, stats) in stats {
        eprintln!("{stream}: {} records read, {} delivered", stats.read(), stats.delivered());
    }
    if let Some(path) = &args.stack.env_file {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

async fn run_command(args: RunArgs) -> Result<ExitCode> {
    let shutdown = shutdown_on_signals();
    let mut expectations = args.expect.clone();
    if let Some(n) = args.expect_records {
        expectations.push(Expectation::Records(n));
    }
    let running = streamlab::stack::run::up(args.stack.options(), args.stack.env_file.as_deref()).await?;
    eprintln!(
        "streamlab run: stack ready (broker {}, clock {}); running `{}`",
        running.stack.bootstrap(),
        running.stack.clock_mode().name(),
        args.command.join(" ")
    );
    let checks = RunChecks {
        snapshot: args.snapshot.clone(),
        update_snapshot: args.update_snapshot,
        masks: args.masks.masks(),
        expectations,
        then: args.then.clone(),
        settle_timeout: args.settle_timeout,
    };
    let report = streamlab::stack::run::run(&running, &args.command, &checks, &shutdown).await;
    let shutdown_result = running.stack.shutdown().await;
    drop(running);
    if let Some(path) = &args.stack.env_file {
        let _ = std::fs::remove_file(path);
    }
    let report = report?;
    shutdown_result?;
    print!("{}", report.landing.render_table());
    let command = args.command.join(" ");
    match report.command_status {
        _ if report.interrupted => eprintln!("`{command}` was stopped"),
        Some(status) if status.success() => {}
        Some(status) => eprintln!("FAILED: `{command}` exited with {status}"),
        None => eprintln!("FAILED: `{command}` could not be waited for"),
    }
    for problem in &report.problems {
        eprintln!("FAILED: {problem}");
    }
    for outcome in &report.outcomes {
        let mark = if outcome.passed { "ok" } else { "FAILED" };
        println!("{mark}: expect {}: {}", outcome.expectation, outcome.detail);
    }
    match &report.snapshot {
        None => {}
        Some(SnapshotOutcome::Matched(path)) => println!("ok: landing matches snapshot {}", path.display()),
        Some(SnapshotOutcome::Written(path)) => {
            println!("wrote snapshot {}; review it, then commit it", path.display())
        }
        Some(SnapshotOutcome::Differs { path, diff }) => {
            print!("{diff}");
            println!(
                "FAILED: the landing differs from snapshot {} (above: - snapshot, + landing); if intended, rerun with --update-snapshot and review the file",
                path.display()
            );
        }
    }
    if let (Some(then), Some(status)) = (&args.then, report.then_status) {
        if !status.success() {
            eprintln!("FAILED: --then `{then}` exited with {status}");
        }
    }
    if report.passed() {
        return Ok(ExitCode::SUCCESS);
    }
    // The command's own failure code when it failed, else 1.
    let code = report.command_status.and_then(|s| s.code()).filter(|c| *c != 0).unwrap_or(1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
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
    let options = ProducerOptions {
        kafka: args.kafka.connect(&args.bootstrap).await?,
        topic: args.topic,
        rate: args.rate,
        count: args.count,
        generator,
        event_timestamps: args.timestamps == TimestampSource::Event,
    };
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
    let functions = Arc::new(Functions::new(args.lambda.config()));
    functions.config().check(&spec)?;
    streamlab::delivery::load_conversion(&spec, &args.glue_dir)?;
    let kafka = args.kafka.connect(&args.bootstrap).await?;
    let clock = args.clock.clock();
    let state = match &args.state_dir {
        Some(dir) => StateStore::Dir(DirStateStore::new(dir)),
        None => StateStore::Topic(TopicStateStore::new(kafka.clone())),
    };
    let settings = S3Settings { endpoint: args.s3_endpoint.clone(), region: args.region, credentials: None };
    let client = sink::client(&settings).await;
    let sink = S3Sink::new(client, &spec.bucket, args.s3_endpoint.as_deref());
    let source = SourceSettings {
        instance_id: args.instance_id,
        max_poll_interval: args.max_poll_interval,
        exit_at_end: args.exit_at_end,
        ..SourceSettings::new(kafka, Membership::Group)
    };
    let options = DeliveryOptions {
        active_partition_limit: args.active_partition_limit,
        max_buffered_bytes: args.max_buffered_bytes,
        max_in_flight: args.max_in_flight.map_or_else(streamlab::delivery::default_max_in_flight, usize::from),
        functions: functions.clone(),
        glue_dir: args.glue_dir.clone(),
        ..DeliveryOptions::new(source, state)
    };
    let delivery = Delivery::connect(spec.clone(), options, sink, clock).await;
    let delivery = match delivery {
        Ok(delivery) => delivery,
        Err(e) => {
            functions.stop().await;
            return Err(e.into());
        }
    };
    eprintln!(
        "delivering stream {:?} version {}: topic {:?} -> s3://{}/ (Ctrl-C to stop)",
        spec.name,
        delivery.state().version,
        spec.topic,
        spec.bucket
    );
    let stats = delivery.run(shutdown_on_signals()).await;
    functions.stop().await;
    let stats = stats?;
    let summary = streamlab::delivery::stats::Summary::of(&stats);
    eprintln!("stopped: {summary}");
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    let undelivered = summary.undelivered();
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
        functions: args.lambda.config(),
        glue_dir: args.glue_dir,
    };
    let report = sandbox::run(&options, shutdown_on_signals()).await?;
    print!("{}", sandbox::render_report(&report));
    Ok(())
}
