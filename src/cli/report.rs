//! `cost` and `inspect`: the month's bill from a run or a rate, and a report
//! of what landed in a bucket (table, JSON or one HTML page).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use streamlab::cost::{self, Cluster, CostOptions, CostReport, PriceBook, Rate, RunUsage};
use streamlab::delivery::sink::{S3Settings, StaticCredentials};
use streamlab::inspect::{self, InspectOptions, InspectReport, JqPath};
use streamlab::spec::StreamSpec;

use super::positive_f64;
use streamlab::stack::control::ControlClient;

/// The traffic, cluster and prices a bill is made of (shared by `cost` and
/// `inspect --spec`).
#[derive(Debug, Args, Clone)]
pub struct CostModelArgs {
    /// Events per second to price (default: the run's own rate).
    #[arg(long, value_parser = positive_f64)]
    events_per_sec: Option<f64>,
    /// Average record size in bytes (default: the run's own).
    #[arg(long)]
    record_bytes: Option<u64>,
    /// Brokers of the MSK cluster.
    #[arg(long, default_value_t = 3, conflicts_with = "serverless", value_parser = clap::value_parser!(u32).range(1..))]
    brokers: u32,
    /// Broker instance type (a key `msk-broker-hour:<type>` of the price list).
    #[arg(long, default_value = "kafka.m5.large", conflicts_with = "serverless")]
    broker_type: String,
    /// An MSK Serverless cluster instead of provisioned brokers.
    #[arg(long)]
    serverless: bool,
    /// Hours the topic keeps records (broker storage).
    #[arg(long, default_value_t = 168)]
    retention_hours: u32,
    /// Months objects stay in S3 (storage at steady state).
    #[arg(long, default_value_t = 1)]
    s3_retention_months: u32,
    /// Partitions per topic, when no run measured them.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    partitions: u32,
    /// Dynamic-partitioning key values open at once, when no run measured them.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    partition_keys: Option<u32>,
    /// Price overrides: a TOML file shaped like prices/aws-us-east-1.toml.
    #[arg(long)]
    prices: Option<PathBuf>,
    /// The deliveries publish their metrics with `deliver --cloudwatch`
    /// (custom metrics are billed; a stack's own are not).
    #[arg(long)]
    cloudwatch: bool,
    /// Alarm files (`put-metric-alarm` JSON): a freshness alarm the buffer
    /// interval makes fire all the time is warned about.
    #[arg(long = "alarm")]
    alarms: Vec<PathBuf>,
    /// Objects under this many MB are small for Athena.
    #[arg(long, default_value_t = 128.0, value_parser = positive_f64)]
    small_file_mb: f64,
    /// Dynamic partitioning making more objects per hour is warned about.
    #[arg(long, default_value_t = 1000.0, value_parser = positive_f64)]
    max_objects_per_hour: f64,
}

#[derive(Debug, Args)]
pub struct CostArgs {
    /// `CreateDeliveryStream` JSON files, or directories of them.
    #[arg(long = "spec", required = true)]
    specs: Vec<PathBuf>,
    /// The work directory of a stopped `up`, `run` or `sandbox` (its usage.json).
    #[arg(long, conflicts_with = "control")]
    from_run: Option<PathBuf>,
    /// A running stack's control endpoint: price what it measured so far.
    #[arg(long)]
    control: Option<String>,
    #[command(flatten)]
    model: CostModelArgs,
    #[arg(long, value_enum, default_value_t = CostFormat::Table)]
    format: CostFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CostFormat {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InspectFormat {
    Table,
    Json,
    Html,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// `s3://bucket` or `s3://bucket/prefix`.
    location: String,
    /// An S3-compatible endpoint (credentials from the AWS environment).
    /// Default: the running stack's S3 ($STREAMLAB_CONTROL or --control),
    /// else AWS itself.
    #[arg(long, conflicts_with = "control")]
    s3_endpoint: Option<String>,
    /// A running stack's control endpoint (default $STREAMLAB_CONTROL).
    #[arg(long)]
    control: Option<String>,
    #[arg(long, value_enum, default_value_t = InspectFormat::Table)]
    format: InspectFormat,
    /// Write the report here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// A jq path whose value identifies a record: duplicates share it.
    #[arg(long)]
    id: Option<String>,
    /// A jq path to each record's event time (RFC 3339 or epoch ms).
    #[arg(long, default_value = ".occurred_at")]
    event_time: String,
    /// Specs of the streams: adds the month's cost to the report (from the
    /// stack's usage, or --events-per-sec and --record-bytes).
    #[arg(long = "spec")]
    specs: Vec<PathBuf>,
    #[command(flatten)]
    model: CostModelArgs,
}

/// The specs of `--spec` files and directories, as `up` loads them.
fn load_specs(paths: &[PathBuf]) -> Result<Vec<StreamSpec>> {
    Ok(streamlab::stack::load_specs(paths)?.into_iter().map(|(_, spec)| spec).collect())
}

/// The month's bill of `specs`, from `usage` (named by `origin`) or the rate.
pub fn price(specs: &[StreamSpec], model: &CostModelArgs, usage: Option<(&RunUsage, &str)>) -> Result<CostReport> {
    let prices = PriceBook::load(model.prices.as_deref())?;
    let alarms = streamlab::stack::load_alarms(&model.alarms)?;
    let options = CostOptions {
        cluster: if model.serverless {
            Cluster::Serverless
        } else {
            Cluster::Provisioned { brokers: model.brokers, broker_type: model.broker_type.clone() }
        },
        retention_hours: model.retention_hours,
        s3_retention_months: model.s3_retention_months,
        partitions: model.partitions,
        partition_keys: model.partition_keys,
        cloudwatch: model.cloudwatch,
        small_file_mb: model.small_file_mb,
        max_objects_per_hour: model.max_objects_per_hour,
        freshness_alarms: cost::freshness_alarms(&alarms),
    };
    let rate = Rate { events_per_sec: model.events_per_sec, record_bytes: model.record_bytes };
    let workloads = cost::workloads(specs, &rate, usage, &options)?;
    Ok(cost::estimate(specs, &workloads, &options, &prices, cost::measure_jq)?)
}

/// `streamlab cost`.
pub async fn cost(args: CostArgs) -> Result<ExitCode> {
    let specs = load_specs(&args.specs)?;
    let usage = match (&args.from_run, &args.control) {
        (Some(dir), _) => Some((RunUsage::load(dir)?, dir.display().to_string())),
        (None, Some(url)) => {
            let client = ControlClient::new(url)?;
            Some((client.usage().await?, format!("the stack at {url}")))
        }
        (None, None) => None,
    };
    let report = price(&specs, &args.model, usage.as_ref().map(|(u, o)| (u, o.as_str())))?;
    match args.format {
        CostFormat::Table => print!("{}", report.render_table()),
        CostFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// Where `inspect` reads: an endpoint, a running stack's S3, or AWS.
async fn target(args: &InspectArgs) -> Result<(S3Settings, Option<ControlClient>)> {
    if let Some(endpoint) = &args.s3_endpoint {
        return Ok((S3Settings { endpoint: Some(endpoint.clone()), ..S3Settings::default() }, None));
    }
    let control = args.control.clone().or_else(|| std::env::var("STREAMLAB_CONTROL").ok().filter(|v| !v.is_empty()));
    let Some(url) = control else {
        eprintln!(
            "inspect: no --s3-endpoint and no running stack ($STREAMLAB_CONTROL): reading AWS S3 with your credentials"
        );
        return Ok((S3Settings::default(), None));
    };
    let client = ControlClient::new(&url)?;
    let env = client.get(streamlab::stack::control::routes::ENV).await?;
    let var = |k: &str| env.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let settings = S3Settings {
        endpoint: var("AWS_ENDPOINT_URL_S3"),
        region: var("AWS_REGION"),
        credentials: match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret_access_key)) => {
                Some(StaticCredentials { access_key_id, secret_access_key })
            }
            _ => None,
        },
    };
    Ok((settings, Some(client)))
}

/// `streamlab inspect`.
pub async fn inspect(args: InspectArgs) -> Result<ExitCode> {
    inspect::parse_location(&args.location)?;
    let options = InspectOptions {
        id: args.id.as_deref().map(JqPath::parse).transpose().map_err(|e| anyhow::anyhow!("--id {e}"))?,
        event_time: JqPath::parse(&args.event_time).map_err(|e| anyhow::anyhow!("--event-time {e}"))?,
        small_file_mb: args.model.small_file_mb,
    };
    let specs = if args.specs.is_empty() { Vec::new() } else { load_specs(&args.specs)? };
    if !specs.is_empty() && args.format != InspectFormat::Html {
        bail!("--spec adds the cost table to the HTML report: use it with --format html (or run `streamlab cost`)");
    }
    let (settings, control) = target(&args).await?;
    if settings.credentials.is_none() {
        // Without this, a missing credential reads as an endpoint that does
        // not answer, with the last provider's complaint (IMDS) as the cause.
        let config = streamlab::aws_http::loader().load().await;
        streamlab::aws_error::check_credentials(&config).await.map_err(|e| {
            anyhow::anyhow!("inspect: no AWS credentials to read {} with ({e}). Configure the standard chain (`aws configure`, AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY); for a running stack, pass --control or source its env file", args.location)
        })?;
    }
    let s3 = streamlab::delivery::sink::client(&settings).await;
    let provenance = match &control {
        Some(c) => c.provenance().await?,
        None => Vec::new(),
    };
    // Progress on stderr, at most every 2 s, for prefixes that take a while.
    let mut last = std::time::Instant::now();
    let progress = |read: usize, total: usize| {
        if last.elapsed() >= std::time::Duration::from_secs(2) && read < total {
            eprintln!("inspect: {read} of {total} objects read");
            last = std::time::Instant::now();
        }
    };
    // Its errors name the object or prefix they could not read.
    let report = inspect::inspect(&s3, &args.location, &provenance, &options, progress).await?;
    let cost = if specs.is_empty() {
        None
    } else {
        let usage = match &control {
            Some(c) if args.model.events_per_sec.is_none() => Some(c.usage().await?),
            _ => None,
        };
        Some(price(&specs, &args.model, usage.as_ref().map(|u| (u, "the running stack")))?)
    };
    let text = match args.format {
        InspectFormat::Table => report.render_table(),
        InspectFormat::Json => format!("{}\n", serde_json::to_string_pretty(&report)?),
        InspectFormat::Html => inspect::html::render(&report, cost.as_ref()),
    };
    write_out(args.out.as_deref(), &text)?;
    Ok(ExitCode::SUCCESS)
}

fn write_out(out: Option<&Path>, text: &str) -> Result<()> {
    match out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("cannot write --out {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// `run --report FILE`: the HTML report of every stream's bucket, with the
/// run's cost at its own rate.
pub async fn run_report(stack: &streamlab::stack::Stack, specs: &[StreamSpec], path: &Path) -> Result<()> {
    let buckets: std::collections::BTreeSet<&str> = specs.iter().map(|s| s.bucket()).collect();
    let locations: Vec<String> = buckets.iter().map(|b| format!("s3://{b}")).collect();
    let provenance = stack.provenance();
    let report: InspectReport =
        inspect::inspect_all(stack.s3_client(), &locations, &provenance, &InspectOptions::default(), |_, _| {}).await?;
    let usage = stack.usage();
    // A run's own rate is priced only when it spans long enough to have one.
    let cost = match price(specs, &CostModelArgs::defaults(), Some((&usage, "this run's stack"))) {
        Ok(cost) => Some(cost),
        Err(e) => {
            eprintln!("run: the report has no cost table: {}", super::describe(&e));
            None
        }
    };
    write_out(Some(path), &inspect::html::render(&report, cost.as_ref()))
}

impl CostModelArgs {
    /// The flags' defaults, as clap gives them (one source of truth).
    fn defaults() -> CostModelArgs {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            model: CostModelArgs,
        }
        <Defaults as clap::Parser>::parse_from(["streamlab"]).model
    }
}
