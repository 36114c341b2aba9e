//! Throughput against the machine's own limits, measured in one run on one
//! broker and one S3 server: what a bare consumer reads from the topic (the
//! ceiling), what the S3 server takes, `streamlab deliver` per format as a
//! process of its own (CPU time and peak RSS from the kernel), the engine
//! alone on memory, and a hand-written Python job on the same topic.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::{BenchError, Figure};
use crate::clock::SystemClock;
use crate::delivery::sink::MemorySink;
use crate::delivery::source::MemorySource;
use crate::delivery::{self, EngineLimits, Plan, Settings, DEFAULT_ACTIVE_PARTITION_LIMIT};
use crate::events::{EventGenerator, GeneratorConfig};
use crate::harness::{self, DeliverCommand, Usage};
use crate::kafka::{KafkaConnection, KafkaContext};
use crate::stack::{Stack, StackOptions};

const TOPIC: &str = "bench-events";
const BUCKET: &str = "bench";
/// Longest any one measured process may take before it is killed.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// What to measure with.
#[derive(Debug, Clone)]
pub struct ThroughputOptions {
    /// The streamlab binary, run as `streamlab deliver` per case.
    pub binary: PathBuf,
    /// Events on the topic (the figures use 1,000,000).
    pub events: u64,
    pub partitions: i32,
    /// `SizeInMBs` of the non-dynamic cases (dynamic partitioning needs at
    /// least 64).
    pub size_mb: u32,
    /// `--max-buffered-bytes` of every delivery; the RSS target is twice
    /// this plus 100 MB.
    pub max_buffered_bytes: u64,
    /// Objects written at once.
    pub max_in_flight: usize,
    /// A Python with confluent-kafka and boto3, for the baseline.
    pub python: PathBuf,
    /// The baseline script.
    pub baseline_script: PathBuf,
    /// Specs, reports and logs of this run.
    pub work_dir: PathBuf,
    /// Measure the engine alone and nothing else (profiling).
    pub engine_only: bool,
    /// Only the cases whose label contains this (case-insensitive).
    pub case_filter: Option<String>,
}

impl ThroughputOptions {
    fn cases(&self) -> impl Iterator<Item = &'static Case> + '_ {
        CASES.iter().filter(|case| {
            self.case_filter.as_ref().is_none_or(|f| case.label.to_lowercase().contains(&f.to_lowercase()))
        })
    }
}

/// One delivery configuration.
struct Case {
    label: &'static str,
    stream: &'static str,
    compression: &'static str,
    /// Dynamic partitioning by this key (64 MiB hints).
    dynamic: Option<Keys>,
    /// Converted to Parquet (OpenX JSON SerDe, SNAPPY) with the e-commerce
    /// Glue table in `fixtures/glue`.
    parquet: bool,
    /// `deliver --speedup`: a 60 s interval passes in 3 s at 20.
    speedup: Option<f64>,
    /// Least ratio of the ceiling's start-to-90% time to delivery's.
    target: Option<f64>,
}

/// What dynamic partitioning partitions by.
#[derive(Clone, Copy)]
enum Keys {
    /// `customer_id` of the seeded events: 100 values.
    Customer,
    /// `event_type`: 8 values, 60 s interval.
    EventType,
}

impl Keys {
    fn name(self) -> &'static str {
        match self {
            Keys::Customer => "customer",
            Keys::EventType => "event_type",
        }
    }

    fn query(self) -> &'static str {
        match self {
            Keys::Customer => "{customer: .customer_id}",
            Keys::EventType => "{event_type: .event_type}",
        }
    }

    fn interval_secs(self) -> u32 {
        match self {
            Keys::Customer => 300,
            Keys::EventType => 60,
        }
    }
}

/// The targets are issue 24's: the share of the ceiling a user waits for,
/// from the process start to 90% of the records committed.
const CASES: [Case; 6] = [
    Case {
        label: "UNCOMPRESSED",
        stream: "bench-plain",
        compression: "UNCOMPRESSED",
        dynamic: None,
        parquet: false,
        speedup: None,
        target: Some(0.9),
    },
    Case {
        label: "GZIP",
        stream: "bench-gzip",
        compression: "GZIP",
        dynamic: None,
        parquet: false,
        speedup: None,
        target: Some(0.85),
    },
    Case {
        label: "Snappy",
        stream: "bench-snappy",
        compression: "Snappy",
        dynamic: None,
        parquet: false,
        speedup: None,
        target: None,
    },
    Case {
        label: "dynamic partitioning, 8 keys",
        stream: "bench-dynamic-8",
        compression: "UNCOMPRESSED",
        dynamic: Some(Keys::EventType),
        parquet: false,
        speedup: Some(20.0),
        target: Some(0.85),
    },
    Case {
        label: "dynamic partitioning, 100 keys",
        stream: "bench-dynamic",
        compression: "UNCOMPRESSED",
        dynamic: Some(Keys::Customer),
        parquet: false,
        speedup: None,
        target: Some(0.85),
    },
    Case {
        label: "Parquet (OpenX, SNAPPY)",
        stream: "bench-parquet",
        compression: "UNCOMPRESSED",
        dynamic: None,
        parquet: true,
        speedup: None,
        target: Some(0.5),
    },
];

/// Records and bytes over a time.
#[derive(Debug, Clone, Copy)]
struct Throughput {
    records: u64,
    bytes: u64,
    seconds: f64,
    /// From the process (or consumer) start to 90% of the records read
    /// (the ceiling) or committed (a delivery): what a user waits for.
    to_90_secs: f64,
}

/// What a measured process used: CPU from the kernel (`wait4`), peak RSS
/// as the process itself read it at exit (`VmHWM`; the kernel's `ru_maxrss`
/// of a child includes this bench's own memory at fork).
/// Beside it, the CPU this bench process used meanwhile: the in-process
/// broker and S3 server it read from and wrote to (and the commit watcher),
/// which share the machine's cores with it.
#[derive(Debug, Clone, Copy)]
struct Cost {
    cpu_seconds: f64,
    peak_rss_bytes: u64,
    stack_cpu_seconds: f64,
    /// From the process start to its exit.
    wall_seconds: f64,
}

impl Cost {
    fn of(usage: Usage, report: &serde_json::Value, stack_cpu_seconds: f64, wall_seconds: f64) -> Self {
        let peak = report["peak_rss_bytes"].as_u64().unwrap_or(usage.peak_rss_bytes);
        Cost { cpu_seconds: usage.cpu_seconds, peak_rss_bytes: peak, stack_cpu_seconds, wall_seconds }
    }

    /// The share of the machine's CPU the process and the stack used
    /// together while it ran: near 1, the run was bound by CPU, and a
    /// faster delivery needs less CPU somewhere, not less waiting.
    fn machine_busy(&self) -> f64 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        (self.cpu_seconds + self.stack_cpu_seconds) / (cores * self.wall_seconds)
    }
}

impl Throughput {
    fn records_per_second(&self) -> f64 {
        self.records as f64 / self.seconds
    }

    fn mb_per_second(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds
    }
}

/// The `CreateDeliveryStream` request of a case.
fn spec_json(case: &Case, size_mb: u32) -> serde_json::Value {
    let mut destination = serde_json::json!({
        "RoleARN": "arn:aws:iam::123456789012:role/firehose-s3-write",
        "BucketARN": format!("arn:aws:s3:::{BUCKET}"),
        "BufferingHints": {
            "SizeInMBs": if case.dynamic.is_some() || case.parquet { size_mb.max(64) } else { size_mb },
            "IntervalInSeconds": case.dynamic.map_or(300, Keys::interval_secs)
        },
        "CompressionFormat": case.compression,
        "Prefix": format!("{}/", case.stream),
        "ErrorOutputPrefix": format!("{}-errors/!{{firehose:error-output-type}}/", case.stream),
    });
    if let Some(keys) = case.dynamic {
        let key = keys.name();
        destination["Prefix"] = format!("{}/{key}=!{{partitionKeyFromQuery:{key}}}/", case.stream).into();
        destination["DynamicPartitioningConfiguration"] = serde_json::json!({ "Enabled": true });
        destination["ProcessingConfiguration"] = serde_json::json!({
            "Enabled": true,
            "Processors": [{
                "Type": "MetadataExtraction",
                "Parameters": [
                    { "ParameterName": "MetadataExtractionQuery", "ParameterValue": keys.query() },
                    { "ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6" }
                ]
            }]
        });
    }
    if case.parquet {
        destination["DataFormatConversionConfiguration"] = serde_json::json!({
            "Enabled": true,
            "SchemaConfiguration": { "DatabaseName": "ecommerce", "TableName": "events" },
            "InputFormatConfiguration": { "Deserializer": { "OpenXJsonSerDe": {} } },
            "OutputFormatConfiguration": { "Serializer": { "ParquetSerDe": {} } }
        });
    }
    serde_json::json!({
        "DeliveryStreamName": case.stream,
        "DeliveryStreamType": "MSKAsSource",
        "MSKSourceConfiguration": {
            "MSKClusterARN": "arn:aws:kafka:us-east-1:123456789012:cluster/bench/6f1c2a9e-1b7d-4c3e-9a52-0d4b8e7f3c21-3",
            "TopicName": TOPIC,
            "AuthenticationConfiguration": {
                "RoleARN": "arn:aws:iam::123456789012:role/firehose-msk-read",
                "Connectivity": "PRIVATE"
            },
            "ReadFromTimestamp": 0
        },
        "ExtendedS3DestinationConfiguration": destination
    })
}

/// The seeded events: 100 customers, so dynamic partitioning by customer
/// opens 100 prefixes.
fn generator(start_ms: i64) -> GeneratorConfig {
    GeneratorConfig { customers: 100, ..GeneratorConfig::new(1, start_ms) }
}

/// Every figure of this section, in order.
pub async fn measure(options: &ThroughputOptions, figures: &mut Vec<Figure>) -> Result<(), BenchError> {
    std::fs::create_dir_all(&options.work_dir).map_err(BenchError::io("cannot create the bench work dir"))?;
    for case in options.cases() {
        eprintln!("bench: the engine alone (memory source and sink), {} ...", case.label);
        engine_alone(options, case, figures).await?;
    }
    if options.engine_only {
        return Ok(());
    }

    let specs: Vec<PathBuf> = CASES
        .iter()
        .map(|case| {
            let path = options.work_dir.join(format!("{}.json", case.stream));
            std::fs::write(&path, spec_json(case, options.size_mb).to_string())
                .map(|()| path)
                .map_err(BenchError::io("cannot write a bench spec"))
        })
        .collect::<Result<_, _>>()?;
    let mut stack_options = StackOptions::new(specs.clone()).partitions(options.partitions).defer_deliveries();
    if let Some(memory) = memory_file_system() {
        eprintln!("bench: the stack's S3 objects go to {} (memory)", memory.display());
        stack_options = stack_options.temp_dir_in(memory);
    }
    let stack = Stack::start(stack_options).await?;
    let outcome = measure_on(&stack, options, &specs, figures).await;
    stack.shutdown().await?;
    outcome
}

async fn measure_on(
    stack: &Stack,
    options: &ThroughputOptions,
    specs: &[PathBuf],
    figures: &mut Vec<Figure>,
) -> Result<(), BenchError> {
    let section = format!(
        "throughput ({} events on {} partitions, one broker, one S3 server)",
        options.events, options.partitions
    );
    eprintln!("bench: producing {} events ...", options.events);
    let started = Instant::now();
    let events = EventGenerator::new(&generator(stack.clock().now_millis())).take(options.events as usize);
    let acked = stack.produce(TOPIC, events).await?;
    if acked != options.events {
        return Err(BenchError::Run(format!("the broker acknowledged {acked} of {} events", options.events)));
    }
    figures.push(Figure::new(
        &section,
        "produce (streamlab's producer)",
        acked as f64 / started.elapsed().as_secs_f64(),
        "records/s",
    ));

    eprintln!("bench: consume ceiling ...");
    let (kafka, expected) = (stack.kafka().clone(), options.events);
    let cpu = process_cpu_seconds();
    let ceiling = tokio::task::spawn_blocking(move || consume_ceiling(&kafka, expected))
        .await
        .expect("the ceiling consumer does not panic")?;
    let cpu = process_cpu_seconds() - cpu;
    figures.push(
        Figure::new(&section, "consume ceiling (bare rdkafka consumer)", ceiling.records_per_second(), "records/s")
            .note(format!(
                "{:.1} MB/s; start to 90% read {:.2} s; {cpu:.2} s of CPU with the broker's",
                ceiling.mb_per_second(),
                ceiling.to_90_secs
            )),
    );
    eprintln!("bench: PUT ceiling ...");
    let put = put_ceiling(stack.s3_client(), options).await?;
    figures.push(
        Figure::new(&section, "PUT ceiling (same S3 server)", put.mb_per_second(), "MB/s")
            .note(format!("{} objects of {} MiB, {} at once", put.records, options.size_mb, options.max_in_flight)),
    );

    let rss_limit = (2 * options.max_buffered_bytes) as f64 / 1e6 + 100.0;
    let mut plain = None;
    for (case, spec) in CASES.iter().zip(specs) {
        if !options.cases().any(|c| std::ptr::eq(c, case)) {
            continue;
        }
        eprintln!("bench: streamlab deliver, {} ...", case.label);
        let (run, usage) = run_delivery(stack, options, case, spec).await?;
        plain.get_or_insert(run);
        let name = format!("deliver {}", case.label);
        let ratio = ceiling.to_90_secs / run.to_90_secs;
        let mut figure =
            Figure::new(&section, &format!("{name}: start to 90% committed, ratio to ceiling"), ratio, "x");
        if let Some(target) = case.target {
            figure = figure.at_least(target);
        }
        figures.push(figure.note(format!(
            "{:.2} s (ceiling {:.2} s); from its first read {:.0} records/s, {:.1} MB/s, {:.2} of the ceiling's",
            run.to_90_secs,
            ceiling.to_90_secs,
            run.records_per_second(),
            run.mb_per_second(),
            run.records_per_second() / ceiling.records_per_second()
        )));
        figures.push(Figure::new(
            &section,
            &format!("{name}: CPU per GB read"),
            usage.cpu_seconds / (run.bytes as f64 / 1e9),
            "s/GB",
        ));
        figures.push(
            Figure::new(
                &section,
                &format!("{name}: machine CPU busy, start to exit"),
                100.0 * usage.machine_busy(),
                "%",
            )
            .note(format!(
                "deliver {:.2} s + broker and S3 server {:.2} s of CPU in {:.2} s",
                usage.cpu_seconds, usage.stack_cpu_seconds, usage.wall_seconds
            )),
        );
        figures.push(
            Figure::new(&section, &format!("{name}: peak RSS"), usage.peak_rss_bytes as f64 / 1e6, "MB")
                .at_most(rss_limit)
                .note(format!("bound {} MB", options.max_buffered_bytes / 1_000_000)),
        );
    }

    let Some(plain) = plain.filter(|_| options.case_filter.is_none()) else {
        return Ok(());
    };
    eprintln!("bench: the Python baseline (confluent-kafka + boto3) ...");
    let (python, usage) = run_baseline(stack, options).await?;
    figures.push(
        Figure::new(&section, "Python baseline (confluent-kafka + boto3)", python.records_per_second(), "records/s")
            .note(format!(
                "{:.1} MB/s, {:.0} s CPU per GB, peak RSS {:.0} MB, machine CPU {:.0}% busy",
                python.mb_per_second(),
                usage.cpu_seconds / (python.bytes as f64 / 1e9),
                usage.peak_rss_bytes as f64 / 1e6,
                100.0 * usage.machine_busy()
            )),
    );
    figures.push(
        Figure::new(
            &section,
            "deliver UNCOMPRESSED / Python baseline",
            plain.records_per_second() / python.records_per_second(),
            "x",
        )
        .at_least(5.0),
    );
    Ok(())
}

/// A bare consumer that reads every partition from the start and counts
/// bytes, with delivery's fetch settings: the most any consumer of this
/// broker reads on this machine.
fn consume_ceiling(kafka: &KafkaConnection, expected: u64) -> Result<Throughput, BenchError> {
    let fail = |e: rdkafka::error::KafkaError| BenchError::Run(format!("the ceiling consumer failed: {e}"));
    let started = Instant::now();
    let ninety = ninety_percent(expected);
    let mut to_90 = None;
    let mut config = kafka.config();
    config.set("group.id", "bench-ceiling").set("enable.auto.commit", "false");
    crate::delivery::source::fetch_settings(&mut config);
    let consumer: BaseConsumer<KafkaContext> = kafka.create(&config).map_err(fail)?;
    let metadata = consumer.fetch_metadata(Some(TOPIC), Duration::from_secs(10)).map_err(fail)?;
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        assignment.add_partition_offset(TOPIC, partition.id(), Offset::Beginning).map_err(fail)?;
    }
    consumer.assign(&assignment).map_err(fail)?;
    let (mut records, mut bytes, mut first) = (0, 0, None);
    let deadline = Instant::now() + RUN_TIMEOUT;
    while records < expected {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                first.get_or_insert_with(Instant::now);
                records += 1;
                if records == ninety {
                    to_90 = Some(started.elapsed().as_secs_f64());
                }
                bytes += message.payload_len() as u64;
            }
            Some(Err(e)) => return Err(fail(e)),
            None if Instant::now() > deadline => {
                return Err(BenchError::Run(format!("the ceiling consumer read {records} of {expected} records")));
            }
            None => {}
        }
    }
    let seconds = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    Ok(Throughput { records, bytes, seconds, to_90_secs: to_90.unwrap_or(seconds) })
}

/// Free space the stack's S3 objects need on a memory file system: every
/// case's objects stay until the stack stops (about 1.3 GB at 1,000,000
/// events), with room to spare.
const MEMORY_FS_NEEDED: u64 = 4 << 30;

/// A memory file system (`/dev/shm`) with room for the stack's S3 objects.
/// Creating a file on this machine's root file system (ext4 without a
/// journal) took 0.02-0.38 ms, depending on how many files had been deleted
/// in the seconds before (ext4 then steps over recently freed inodes one by
/// one), against 0.03 ms on `/dev/shm`: the 100-key case writes three files
/// per object, and its time varied with whatever ran before it. The bench
/// measures delivery, not the disk under the local S3 server.
fn memory_file_system() -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt as _;
    let shm = Path::new("/dev/shm");
    let path = std::ffi::CString::new(shm.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain data the call fills in.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid out-pointer.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let free = stat.f_bavail as u64 * stat.f_frsize as u64;
    (free >= MEMORY_FS_NEEDED).then(|| shm.to_owned())
}

/// 90% of `records`, rounded up.
fn ninety_percent(records: u64) -> u64 {
    records.saturating_mul(9).div_ceil(10).max(1)
}

/// Watches `group`'s committed offsets on the bench topic (one client,
/// polled every 20 ms) until they cover `records`, or `stop` is set and a
/// last look found them short; answers the elapsed time since `started`.
fn watch_commits(
    kafka: &KafkaConnection,
    group: &str,
    partitions: i32,
    records: u64,
    started: Instant,
    stop: &std::sync::atomic::AtomicBool,
) -> Option<f64> {
    let consumer: BaseConsumer<KafkaContext> =
        kafka.create(kafka.config().set("group.id", group).set("enable.auto.commit", "false")).ok()?;
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(TOPIC, p);
    }
    loop {
        let last = stop.load(std::sync::atomic::Ordering::SeqCst);
        if let Ok(committed) = consumer.committed_offsets(list.clone(), Duration::from_secs(2)) {
            let sum: i64 = committed.elements().iter().filter_map(|e| e.offset().to_raw()).filter(|o| *o > 0).sum();
            if sum as u64 >= records {
                return Some(started.elapsed().as_secs_f64());
            }
        }
        if last {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// PUTs of objects of the size hint, as many at once as delivery writes:
/// what the S3 server takes on this machine.
async fn put_ceiling(client: &aws_sdk_s3::Client, options: &ThroughputOptions) -> Result<Throughput, BenchError> {
    let size = options.size_mb as usize * 1024 * 1024;
    let objects = (options.events * 250 / size as u64).max(8);
    let body =
        Bytes::from(EventGenerator::new(&generator(0)).flat_map(|e| e.to_json()).take(size).collect::<Vec<u8>>());
    let started = Instant::now();
    let puts = futures::stream::iter(0..objects)
        .map(|i| {
            let put = client.put_object().bucket(BUCKET).key(format!("put-ceiling/{i}")).body(body.clone().into());
            async move { put.send().await }
        })
        .buffer_unordered(options.max_in_flight);
    let results: Vec<_> = puts.collect().await;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        return Err(BenchError::Run(format!(
            "a PUT to the bench bucket failed: {}",
            aws_sdk_s3::error::DisplayErrorContext(e)
        )));
    }
    Ok(Throughput { records: objects, bytes: objects * size as u64, seconds, to_90_secs: seconds })
}

/// Waits for a measured process, killing it after [`RUN_TIMEOUT`].
async fn wait_bounded(
    what: String,
    pid: u32,
    wait: impl FnOnce() -> std::io::Result<(std::process::ExitStatus, Usage)> + Send + 'static,
) -> Result<Usage, BenchError> {
    let (done, finished) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if finished.recv_timeout(RUN_TIMEOUT).is_err() {
            // SAFETY: signalling a child of ours that has not been reaped
            // (the waiter has not returned).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    let (status, usage) = tokio::task::spawn_blocking(wait)
        .await
        .expect("waiting does not panic")
        .map_err(BenchError::io(format!("cannot wait for {what}")))?;
    let _ = done.send(());
    if !status.success() {
        return Err(BenchError::Run(format!("{what} failed ({status})")));
    }
    Ok(usage)
}

/// `streamlab deliver --exit-at-end` on one case, from the start of the
/// topic; throughput from its first record read to its last object landed.
async fn run_delivery(
    stack: &Stack,
    options: &ThroughputOptions,
    case: &Case,
    spec: &Path,
) -> Result<(Throughput, Cost), BenchError> {
    let report = options.work_dir.join(format!("{}.report.json", case.stream));
    let log_path = options.work_dir.join(format!("{}.log", case.stream));
    let log = std::fs::File::create(&log_path).map_err(BenchError::io("cannot create a bench log"))?;
    let command = DeliverCommand {
        s3_endpoint: stack.s3_endpoint().map(str::to_owned),
        speedup: case.speedup,
        exit_at_end: true,
        report: Some(report.clone()),
        max_buffered_bytes: Some(options.max_buffered_bytes),
        max_in_flight: Some(options.max_in_flight),
        ..DeliverCommand::new(spec, stack.bootstrap())
    };
    let (started, stack_cpu) = (Instant::now(), process_cpu_seconds());
    let process = command
        .spawn(&options.binary, stack.s3_settings(), log.into())
        .map_err(BenchError::io(format!("cannot run {}", options.binary.display())))?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (kafka, group, partitions) = (stack.kafka().clone(), case.stream.to_owned(), options.partitions);
        let (records, stop) = (ninety_percent(options.events), stop.clone());
        tokio::task::spawn_blocking(move || watch_commits(&kafka, &group, partitions, records, started, &stop))
    };
    let what = format!("streamlab deliver ({}; log {})", case.label, log_path.display());
    let waited = wait_bounded(what, process.id(), move || process.wait_with_usage()).await;
    let (exited, stack_cpu) = (started.elapsed().as_secs_f64(), process_cpu_seconds() - stack_cpu);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    // Not seen before the exit: the exit is when they were committed at the latest.
    let to_90 = watcher.await.ok().flatten().unwrap_or(exited).min(exited);
    let usage = waited?;
    let summary = read_report(&report)?;
    let delivered = summary["records_delivered"].as_u64().unwrap_or(0);
    if delivered != options.events || summary["error_records"].as_u64() != Some(0) {
        return Err(BenchError::Run(format!(
            "{}: delivered {delivered} of {} records ({} to the error prefix); see {}",
            case.label,
            options.events,
            summary["error_records"],
            log_path.display()
        )));
    }
    Ok((Throughput { to_90_secs: to_90, ..throughput_of(&summary) }, Cost::of(usage, &summary, stack_cpu, exited)))
}

fn read_report(path: &Path) -> Result<serde_json::Value, BenchError> {
    let text = std::fs::read_to_string(path).map_err(BenchError::io(format!("cannot read {}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| BenchError::Run(format!("{} is not a report: {e}", path.display())))
}

fn throughput_of(report: &serde_json::Value) -> Throughput {
    Throughput {
        records: report["records_read"].as_u64().unwrap_or(0),
        bytes: report["bytes_read"].as_u64().unwrap_or(0),
        seconds: report["seconds"].as_f64().unwrap_or(f64::NAN),
        to_90_secs: f64::NAN,
    }
}

/// The hand-written job (`tools/bench/baseline.py`) on the same topic.
async fn run_baseline(stack: &Stack, options: &ThroughputOptions) -> Result<(Throughput, Cost), BenchError> {
    let report = options.work_dir.join("python.report.json");
    let log_path = options.work_dir.join("python.log");
    let log = std::fs::File::create(&log_path).map_err(BenchError::io("cannot create a bench log"))?;
    let s3 = stack.s3_settings();
    let mut command = std::process::Command::new(&options.python);
    command
        .arg(&options.baseline_script)
        .args(["--bootstrap", stack.bootstrap(), "--topic", TOPIC, "--bucket", BUCKET])
        .args(["--s3-endpoint", stack.s3_endpoint().unwrap_or_default()])
        .args(["--size-mb", &options.size_mb.to_string(), "--report"])
        .arg(&report)
        .env("AWS_REGION", s3.region.as_deref().unwrap_or("us-east-1"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(c) = &s3.credentials {
        command.env("AWS_ACCESS_KEY_ID", &c.access_key_id).env("AWS_SECRET_ACCESS_KEY", &c.secret_access_key);
    }
    let (started, stack_cpu) = (Instant::now(), process_cpu_seconds());
    let mut child = command.spawn().map_err(BenchError::io(format!(
        "cannot run {} (install the baseline's packages with `just bench`)",
        options.python.display()
    )))?;
    let what = format!("the Python baseline (log {})", log_path.display());
    let usage = wait_bounded(what, child.id(), move || harness::wait_with_usage(&mut child)).await?;
    let (exited, stack_cpu) = (started.elapsed().as_secs_f64(), process_cpu_seconds() - stack_cpu);
    let summary = read_report(&report)?;
    let run = throughput_of(&summary);
    if run.records != options.events {
        return Err(BenchError::Run(format!("the Python baseline read {} of {} records", run.records, options.events)));
    }
    Ok((run, Cost::of(usage, &summary, stack_cpu, exited)))
}

/// The engine on memory: the driver, core, encoder and writer with no
/// broker and no S3. Its CPU time per byte is what delivery costs beyond
/// reading and writing.
async fn engine_alone(options: &ThroughputOptions, case: &Case, figures: &mut Vec<Figure>) -> Result<(), BenchError> {
    let spec = crate::spec::parse(Path::new("bench-engine.json"), &spec_json(case, options.size_mb).to_string())
        .map_err(|e| BenchError::Run(format!("the bench spec is invalid: {e}")))?;
    let now = crate::clock::Clock::now_millis(&SystemClock);
    let values: Vec<Bytes> =
        EventGenerator::new(&generator(now)).take(100_000).map(|e| Bytes::from(e.to_json())).collect();
    let total = options.events.max(1_000_000) * 2;
    let source = MemorySource::new(values, options.partitions, total, now);
    let sink = Arc::new(MemorySink::counting());
    let stats = Arc::new(delivery::DeliveryStats::default());
    let settings = Settings {
        seed: Some(1),
        limits: EngineLimits {
            active_partition_limit: DEFAULT_ACTIVE_PARTITION_LIMIT,
            max_buffered_bytes: options.max_buffered_bytes,
            max_in_flight: options.max_in_flight,
        },
        ..Settings::new(Arc::new(SystemClock))
    };
    let plan = Plan::prepare(spec, &settings)
        .map_err(|e| BenchError::Run(format!("{e} (run the bench from the repository root)")))?;
    let driver = delivery::engine(plan.parts(1), settings.limits, source, sink.clone(), stats.clone(), settings.clock);
    let (_commands, receiver) = tokio::sync::mpsc::channel(1);
    let cpu = process_cpu_seconds();
    let started = Instant::now();
    driver.run(CancellationToken::new(), receiver).await.map_err(|e| BenchError::Run(e.to_string()))?;
    let (seconds, cpu) = (started.elapsed().as_secs_f64(), process_cpu_seconds() - cpu);
    let (objects, bytes) = sink.written();
    if stats.delivered() != total {
        return Err(BenchError::Run(format!("the engine delivered {} of {total} records", stats.delivered())));
    }
    let read = stats.bytes_read.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6;
    let section = "engine alone (memory source and sink; MB read per CPU second and per wall second)";
    let mut figure = Figure::new(section, &format!("{}: per core", case.label), read / cpu, "MB/s");
    if case.compression == "UNCOMPRESSED" && case.dynamic.is_none() && !case.parquet {
        figure = figure.at_least(300.0);
    }
    figures.push(figure.note(format!("{total} records, {objects} objects, {:.0} MB written", bytes as f64 / 1e6)));
    figures.push(
        Figure::new(section, &format!("{}: wall", case.label), read / seconds, "MB/s")
            .note(format!("{:.0} records/s", total as f64 / seconds)),
    );
    if case.parquet {
        // Against writing the same records uncompressed, measured just before.
        let plain = figures.iter().find(|f| f.name == "UNCOMPRESSED: wall").map(|f| f.value);
        if let Some(plain) = plain {
            figures.push(Figure::new(
                section,
                &format!("{}: wall / UNCOMPRESSED wall", case.label),
                read / seconds / plain,
                "x",
            ));
        }
    }
    Ok(())
}

/// CPU time of this process so far (every thread).
fn process_cpu_seconds() -> f64 {
    // SAFETY: rusage is plain data that getrusage fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer for the calling process.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
