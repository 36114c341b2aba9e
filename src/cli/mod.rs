//! The `streamlab` command line, private to the binary: every clap type,
//! converted into the library's plain option structs. The library knows
//! nothing of flags; this module is where flags meet it.
//!
//! - [`stack`]: `up`, `run` and the clients of a running stack's control API;
//! - [`pipeline`]: `validate`, `produce` and `deliver`;
//! - [`tools`]: `sandbox`, `soak` and `bench`.

pub mod pipeline;
pub mod report;
pub mod stack;
pub mod tools;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use streamlab::backend::BackendKind;
use streamlab::checks::expect::Expectation;
use streamlab::clock::{ClockMode, SharedClock};
use streamlab::kafka::{admin, ConnectionOptions, SecurityMode};
use streamlab::landing::Masks;
use streamlab::stack::control::ControlClient;
use streamlab::stack::StackOptions;
use streamlab::transform::FunctionsConfig;
use tokio_util::sync::CancellationToken;

/// Local emulation and integration-test harness for Kafka (MSK) -> Amazon
/// Data Firehose -> S3 pipelines.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Publish seeded e-commerce events to a Kafka topic.
    Produce(ProduceArgs),
    /// Run the Firehose emulator: read a topic, write objects to S3.
    Deliver(DeliverArgs),
    /// Run the whole pipeline locally with live progress.
    Sandbox(SandboxArgs),
    /// Everything that can go wrong, at volume: S3 failures, broker outages
    /// and SIGKILLs of the delivery process; prints loss and duplicate figures.
    Soak(SoakArgs),
    /// Create or update each spec's stream with the Firehose API and wait
    /// for ACTIVE: on the stack (AWS_ENDPOINT_URL_FIREHOSE from its env
    /// file), on LocalStack, or on AWS itself (no endpoint).
    Deploy(DeployArgs),
    /// Check stream spec files as AWS would, without running anything.
    Validate {
        /// `CreateDeliveryStream` JSON files, or directories of them (each
        /// directory's `*.json` files, as `up --spec DIR` takes them).
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
    /// Firehose's delivery-error log events (streams with
    /// CloudWatchLoggingOptions enabled), as CloudWatch Logs holds them.
    Logs {
        #[arg(long)]
        stream: Option<String>,
        /// Keep printing new events until Ctrl-C.
        #[arg(long)]
        follow: bool,
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
    /// The month's AWS bill of your specs: from a run's measured quantities
    /// (--from-run DIR, --control URL) or a rate (--events-per-sec,
    /// --record-bytes), each line as quantity x unit price, with warnings.
    Cost(report::CostArgs),
    /// What landed under s3://bucket/prefix: objects and sizes per prefix,
    /// records per object, duplicates, late and error records, freshness;
    /// as a table, JSON or one HTML page.
    Inspect(report::InspectArgs),
}

#[derive(Debug, Subcommand)]
pub enum ClockCommand {
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
pub enum SnapshotCommand {
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
pub struct ControlArgs {
    /// Control endpoint of the stack; default $STREAMLAB_CONTROL (written to
    /// the env file by `streamlab up`).
    #[arg(long)]
    control: Option<String>,
}

impl ControlArgs {
    pub fn client(&self) -> Result<ControlClient> {
        Ok(ControlClient::from_env(self.control.clone())?)
    }
}

#[derive(Debug, Args)]
pub struct MaskArgs {
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
    pub fn masks(&self) -> Option<Masks> {
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
pub enum LandingFormat {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClockChoice {
    /// Moves only with `streamlab clock advance` (or the control API).
    Manual,
    /// The wall clock.
    System,
}

/// Where the specs' Lambda processors run; never in the spec, so the spec
/// stays deployable.
#[derive(Debug, Args, Clone)]
pub struct LambdaArgs {
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
    pub fn config(&self) -> FunctionsConfig {
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
pub struct StackArgs {
    /// CreateDeliveryStream JSON files or directories of them (repeatable);
    /// one delivery per spec, topics and buckets created from them. More
    /// streams can be created through the stack's Firehose API.
    #[arg(long = "spec", num_args = 1..)]
    specs: Vec<PathBuf>,
    /// CloudWatch alarms: the JSON of `aws cloudwatch put-metric-alarm
    /// --cli-input-json`, or directories of them (repeatable); evaluated on
    /// the stack's clock from the start.
    #[arg(long = "alarm", num_args = 1..)]
    alarms: Vec<PathBuf>,
    /// Partitions of each topic the stack creates.
    #[arg(long, default_value_t = streamlab::stack::DEFAULT_PARTITIONS, value_parser = clap::value_parser!(i32).range(i64::from(*admin::PARTITIONS.start())..=i64::from(*admin::PARTITIONS.end())))]
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
    /// Keep the stack's state here: the broker's topics, records and offsets
    /// (fsync'd), S3's objects, API-created streams and the manual clock,
    /// so `up` started again on it resumes. Default: a temporary directory
    /// removed at exit, the broker in memory.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Serve Kafka on this loopback port (e.g. 9092), so producers
    /// configured once keep their address across restarts; default a free
    /// port (local backends).
    #[arg(long)]
    kafka_port: Option<u16>,
    #[arg(long, value_enum, default_value_t = BackendArg::Local, env = "STREAMLAB_BACKEND")]
    backend: BackendArg,
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
    pub fn options(&self) -> StackOptions {
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
            backend: self.backend.into(),
            work_dir: self.work_dir.clone(),
            seed: self.seed,
            auto_create_topics: !self.no_auto_create_topics,
            functions: self.lambda.config(),
            glue_dir: self.glue_dir.clone(),
            alarms: self.alarms.clone(),
            kafka_port: self.kafka_port,
            ..StackOptions::new(self.specs.clone())
        }
    }
}

fn parse_topic(s: &str) -> Result<(String, i32), String> {
    let (name, n) = s.split_once('=').ok_or_else(|| format!("{s:?} is not NAME=PARTITIONS, e.g. orders=6"))?;
    let n: i32 = n.parse().map_err(|_| format!("{s:?}: {n:?} is not a number of partitions"))?;
    if name.is_empty() || admin::check_partitions(name, n).is_err() {
        return Err(format!("{s:?}: give a topic name and 1 to 10000 partitions"));
    }
    Ok((name.to_owned(), n))
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    stack: StackArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
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
    /// Write the HTML report of what landed (`inspect --format html`, with
    /// the run's cost) to FILE at the end of the run.
    #[arg(long)]
    report: Option<PathBuf>,
    /// The command to run with the stack's env, e.g. `-- node producer.js`.
    #[arg(last = true, required = true, num_args = 1..)]
    command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
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
pub struct ClockArgs {
    /// Run time N times faster (Kafka timestamps and buffer intervals follow
    /// virtual time): 300 makes a 300 s interval pass in 1 s.
    #[arg(long, value_parser = positive_f64)]
    speedup: Option<f64>,
}

impl ClockArgs {
    pub fn clock(&self) -> SharedClock {
        ClockMode::from_speedup(self.speedup).start().0
    }
}

#[derive(Debug, Args)]
pub struct DeliverArgs {
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
    /// Bound on bytes held in buffers and objects being written; from half
    /// of it the fullest buffers are delivered early (with dynamic
    /// partitioning every buffer, at each quarter of it), and while S3 is
    /// down reading stops at it.
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
    /// Serve the stream's Firehose metrics as a Prometheus page at
    /// http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Publish the stream's Firehose metrics to CloudWatch every minute
    /// with PutMetricData, and, when the spec enables
    /// CloudWatchLoggingOptions, its delivery errors with PutLogEvents (the
    /// group and stream must exist, as on AWS). Endpoint, region and
    /// credentials come from the AWS chain (AWS_ENDPOINT_URL_CLOUDWATCH,
    /// AWS_ENDPOINT_URL_CLOUDWATCH_LOGS, AWS_REGION, AWS_PROFILE...). The
    /// monthly cost of the custom metrics is printed at start.
    #[arg(long)]
    pub cloudwatch: bool,
    /// The namespace of those metrics (`AWS/` is reserved for AWS's own).
    #[arg(long, default_value = streamlab::cloudwatch::publish::DEFAULT_NAMESPACE, requires = "cloudwatch")]
    pub cloudwatch_namespace: String,
    #[command(flatten)]
    lambda: LambdaArgs,
    /// Where the Glue tables of format conversions are (`<database>.<table>.json`).
    #[arg(long, default_value = streamlab::convert::DEFAULT_GLUE_DIR)]
    glue_dir: PathBuf,
    #[command(flatten)]
    clock: ClockArgs,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// CreateDeliveryStream JSON files or directories of them.
    #[arg(long = "spec", required = true, num_args = 1..)]
    pub specs: Vec<PathBuf>,
    /// The Firehose endpoint; default $AWS_ENDPOINT_URL_FIREHOSE (the
    /// stack's, once its env file is sourced), else AWS.
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// The region; default from the AWS chain (AWS_REGION, the profile).
    #[arg(long)]
    pub region: Option<String>,
    /// How long to wait for each stream to be ACTIVE.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
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
pub struct SandboxArgs {
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
    #[arg(long, value_enum, default_value_t = BackendArg::Local, env = "STREAMLAB_BACKEND")]
    backend: BackendArg,
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
pub struct SoakArgs {
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
    /// Then SIGKILLs of `streamlab up` itself (broker, S3 and deliveries),
    /// each started again on its work dir while the producer writes; 0
    /// skips this phase.
    #[arg(long, default_value_t = 2)]
    stack_kills: u32,
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
pub enum TimestampSource {
    Now,
    Event,
}

pub(crate) fn positive_f64(s: &str) -> Result<f64, String> {
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

impl Command {
    /// The soak and a sandbox with faults cause broker outages on purpose.
    pub fn injects_faults(&self) -> bool {
        match self {
            Command::Soak(_) => true,
            Command::Sandbox(args) => args.faults.is_some(),
            _ => false,
        }
    }

    /// Whether the command runs a stack, and with it the in-process broker
    /// and S3 server: `up`, `run`, `sandbox`, `soak` and `bench`.
    pub fn hosts_stack(&self) -> bool {
        matches!(self, Command::Up(_) | Command::Run(_) | Command::Sandbox(_) | Command::Soak(_) | Command::Bench(_))
    }
}

/// Which backend to run (see [`BackendKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    /// tansu as a child process and an in-process S3 server over a
    /// directory. Needs no Docker.
    Local,
    /// Redpanda and LocalStack containers (testcontainers).
    Container,
    /// tansu as a child process and LocalStack's S3 as a host process (no
    /// Docker; `just install-localstack`).
    Localstack,
    /// Containers when a Docker engine answers, local processes otherwise.
    Auto,
    /// A cluster and S3 that already run (a team's MSK and AWS S3), from
    /// `STREAMLAB_EXTERNAL_BOOTSTRAP`, `STREAMLAB_KAFKA_SECURITY` and the AWS
    /// chain; nothing is started.
    External,
}

impl From<BackendArg> for BackendKind {
    fn from(arg: BackendArg) -> Self {
        match arg {
            BackendArg::Local => BackendKind::Local,
            BackendArg::Container => BackendKind::Container,
            BackendArg::Localstack => BackendKind::Localstack,
            BackendArg::Auto => BackendKind::Auto,
            BackendArg::External => BackendKind::External,
        }
    }
}

/// How clients authenticate and encrypt (see [`SecurityMode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SecurityArg {
    /// No TLS, no authentication (MSK port 9092; every local backend).
    #[default]
    Plaintext,
    /// TLS, with a client certificate for MSK mutual TLS (port 9094).
    Tls,
    /// SASL/SCRAM-SHA-512 over TLS (port 9096), the password from an
    /// environment variable.
    Scram,
    /// MSK IAM: SASL/OAUTHBEARER over TLS with a SigV4-signed token (port 9098).
    Iam,
}

impl From<SecurityArg> for SecurityMode {
    fn from(arg: SecurityArg) -> Self {
        match arg {
            SecurityArg::Plaintext => SecurityMode::Plaintext,
            SecurityArg::Tls => SecurityMode::Tls,
            SecurityArg::Scram => SecurityMode::Scram,
            SecurityArg::Iam => SecurityMode::Iam,
        }
    }
}

/// The command-line view of a connection, shared by `produce` and `deliver`.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// How to reach the cluster: plaintext (local brokers, MSK port 9092),
    /// tls (9094), scram (SASL/SCRAM-SHA-512, 9096) or iam (MSK IAM, 9098).
    #[arg(long, value_enum, env = "STREAMLAB_KAFKA_SECURITY", default_value_t = SecurityArg::Plaintext)]
    kafka_security: SecurityArg,
    /// PEM file of the CAs that sign the brokers' certificates; default: the
    /// system's store (enough for MSK).
    #[arg(long, env = "STREAMLAB_KAFKA_CA_FILE")]
    kafka_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for MSK mutual TLS; needs --kafka-client-key.
    #[arg(long, env = "STREAMLAB_KAFKA_CLIENT_CERT")]
    kafka_client_cert: Option<PathBuf>,
    /// Private key (PEM) of --kafka-client-cert.
    #[arg(long, env = "STREAMLAB_KAFKA_CLIENT_KEY")]
    kafka_client_key: Option<PathBuf>,
    /// SCRAM user name.
    #[arg(long, env = "STREAMLAB_SCRAM_USERNAME")]
    scram_username: Option<String>,
    /// The environment variable holding the SCRAM password (never a flag,
    /// so it stays out of shell history and process listings).
    #[arg(long, env = "STREAMLAB_SCRAM_PASSWORD_ENV", default_value = "STREAMLAB_SCRAM_PASSWORD")]
    scram_password_env: String,
    /// The cluster's region for MSK IAM tokens; default: from an MSK broker
    /// host name (`….kafka.<region>.amazonaws.com`), else the AWS chain.
    #[arg(long, env = "STREAMLAB_KAFKA_REGION")]
    kafka_region: Option<String>,
}

impl ConnectionArgs {
    pub fn options(&self) -> ConnectionOptions {
        ConnectionOptions {
            kafka_security: self.kafka_security.into(),
            kafka_ca_file: self.kafka_ca_file.clone(),
            kafka_client_cert: self.kafka_client_cert.clone(),
            kafka_client_key: self.kafka_client_key.clone(),
            scram_username: self.scram_username.clone(),
            scram_password_env: self.scram_password_env.clone(),
            kafka_region: self.kafka_region.clone(),
        }
    }
}

/// Cancels the token on Ctrl-C, SIGTERM or SIGHUP (a closed terminal):
/// the command stops as asked, delivering what it holds. A second signal
/// aborts at once, still removing the env file and temporary directory
/// ([`streamlab::exit_cleanup`]) and the containers this run started.
pub fn shutdown_on_signals() -> CancellationToken {
    use tokio::signal::unix::{signal, SignalKind};
    let token = CancellationToken::new();
    let fired = token.clone();
    let (interrupt, terminate, hangup) =
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()), signal(SignalKind::hangup()));
    let (Ok(mut interrupt), Ok(mut terminate), Ok(mut hangup)) = (interrupt, terminate, hangup) else {
        // Only when the runtime has no signal driver, a bug of ours.
        eprintln!("cannot install signal handlers; Ctrl-C stops without delivering");
        return token;
    };
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
            _ = hangup.recv() => "SIGHUP",
        };
        eprintln!("{name}: shutting down (Ctrl-C again to abort)");
        fired.cancel();
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        // Exiting skips every destructor: remove what they would have.
        eprintln!("aborting");
        streamlab::exit_cleanup::remove_all();
        let _ = tokio::time::timeout(Duration::from_secs(10), streamlab::backend::remove_own_containers()).await;
        std::process::exit(130);
    });
    token
}

/// An error as the user reads it: each cause appended once. Most of our
/// errors already name their cause in their own message (`cannot read
/// stream spec X: No such file`), and `{:#}` would repeat it.
pub fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}
