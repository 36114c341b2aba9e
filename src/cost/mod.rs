//! What a pipeline will cost on AWS a month, from the quantities a run
//! measured (or a rate the user gives) and a price list kept as data. The
//! bill of a Firehose pipeline is decided by the spec's choices (buffer hints
//! and partition keys make the object count, compression and Parquet the
//! bytes delivered, private connectivity the broker type) and a run on the
//! stack has measured each quantity those choices produce. This module is
//! arithmetic only: no I/O, so golden tests pin every figure.
//!
//! - [`prices`]: the price list and its overrides;
//! - [`usage`]: what a run measured, as the stack writes it.

pub mod prices;
pub mod usage;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::spec::StreamSpec;
pub use prices::{Price, PriceBook, PriceError};
pub use usage::{RunUsage, StreamUsage};

/// A billing month, as AWS's calculator counts it.
pub const HOURS_PER_MONTH: f64 = 730.0;
/// A GB as AWS bills it: 2^30 bytes.
pub const GB: f64 = 1_073_741_824.0;
/// Direct PUT ingestion rounds each record up to a multiple of 5 KB.
pub const DIRECT_PUT_ROUNDING: u64 = 5 * 1024;
/// The object size under which dynamic partitioning is warned about: AWS's
/// own advice for S3 objects read by analytics.
pub const DYNAMIC_PARTITIONING_OBJECT_MB: f64 = 64.0;
/// The shortest run whose own rate is priced: shorter spans (a `run` on a
/// manual clock that flushes) say nothing of a rate.
pub const MIN_RUN_SECS: u64 = 60;
/// Kafka topics on MSK are replicated three times (MSK's default for
/// clusters of three brokers or more).
pub const REPLICATION: u32 = 3;

/// The Kafka cluster the streams read.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Cluster {
    Provisioned { brokers: u32, broker_type: String },
    Serverless,
}

/// How a month's traffic is set: at a rate the user gives, or at the run's
/// own rate; per record figures come from the run when there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct Rate {
    pub events_per_sec: Option<f64>,
    pub record_bytes: Option<u64>,
}

/// Everything but the specs and the traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct CostOptions {
    pub cluster: Cluster,
    /// Hours the topic keeps records (MSK storage).
    pub retention_hours: u32,
    /// Months delivered objects stay in S3 (storage at steady state).
    pub s3_retention_months: u32,
    /// Partitions per topic when no run measured them (MSK Serverless bills
    /// partition-hours).
    pub partitions: u32,
    /// Distinct dynamic-partitioning keys at once, when no run measured them.
    pub partition_keys: Option<u32>,
    /// The deliveries publish metrics with `deliver --cloudwatch`.
    pub cloudwatch: bool,
    /// Objects under this many MB are small for Athena.
    pub small_file_mb: f64,
    /// Dynamic partitioning making more objects per hour than this is warned about.
    pub max_objects_per_hour: f64,
    /// Freshness alarms: stream name and threshold in seconds.
    pub freshness_alarms: Vec<(String, String, f64)>,
}

impl Default for CostOptions {
    fn default() -> Self {
        CostOptions {
            cluster: Cluster::Provisioned { brokers: 3, broker_type: "kafka.m5.large".into() },
            retention_hours: 168,
            s3_retention_months: 1,
            partitions: 3,
            partition_keys: None,
            cloudwatch: false,
            small_file_mb: 128.0,
            max_objects_per_hour: 1_000.0,
            freshness_alarms: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CostError {
    #[error(transparent)]
    Price(#[from] PriceError),
    #[error(
        "no traffic to price: give --events-per-sec and --record-bytes, or --from-run DIR of a run that read records"
    )]
    NoRate,
    #[error("--record-bytes is missing: without a run to measure record sizes, give the average record size in bytes")]
    NoRecordBytes,
    #[error(
        "stream {stream} is not in the run's usage ({origin} has {known}): give the run's specs, or --events-per-sec"
    )]
    StreamNotInRun { stream: String, origin: String, known: String },
    #[error("stream {stream} read no records in the run ({origin}), so there is no rate or record size to scale: produce records during the run, or give --events-per-sec and --record-bytes")]
    NothingRead { stream: String, origin: String },
    #[error("the run in {origin} spans {span_secs:.1} s of the stack's clock, too short to tell a rate (a `run` flushes instead of waiting for buffer intervals): give --events-per-sec with your production rate, or price a run of at least {MIN_RUN_SECS} s (`up` or `sandbox`)")]
    ShortRun { origin: String, span_secs: f64 },
    #[error("--broker-type {given} has no price; known: {known}. Add [\"msk-broker-hour:{given}\"] with its price to a file given with --prices")]
    UnknownBrokerType { given: String, known: String },
}

/// One stream's traffic over a month, per record figures included.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workload {
    pub stream: String,
    pub records_per_sec: f64,
    pub bytes_per_record: f64,
    /// Bytes stored in S3 per byte read (compression, Parquet).
    pub delivered_per_read: f64,
    /// Share of records written to the error prefix.
    pub error_share: f64,
    /// Dynamic-partitioning keys open at once.
    pub partition_keys: u32,
    /// Topic partitions.
    pub partitions: u32,
    /// Where the figures came from, for the assumptions.
    pub measured: Option<String>,
}

/// `quantity` of `unit` times a price.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostLine {
    pub service: &'static str,
    pub item: String,
    /// The stream this line is for; shared lines (the cluster) have none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    pub quantity: f64,
    pub unit: &'static str,
    pub price_key: String,
    pub unit_price: f64,
    pub usd: f64,
}

/// A choice in the spec that costs money or breaks the pipeline, with the figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Warning {
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    pub message: String,
}

/// Figures of each stream that the lines were made of.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamFigures {
    pub stream: String,
    pub records_per_month: f64,
    pub gb_read: f64,
    pub gb_delivered: f64,
    pub objects_per_hour: f64,
    pub average_object_mb: f64,
    /// How long a record waits in the buffer at this rate, in seconds.
    pub buffer_wait_secs: f64,
}

/// `streamlab cost`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostReport {
    pub region: String,
    pub currency: String,
    pub hours_per_month: f64,
    pub streams: Vec<StreamFigures>,
    pub lines: Vec<CostLine>,
    pub total_usd: f64,
    pub assumptions: Vec<String>,
    pub warnings: Vec<Warning>,
    /// The oldest date a price used was read; `None` when every price used
    /// was an undated override.
    pub oldest_price_read: Option<chrono::NaiveDate>,
}

/// One stream's workload from the rate alone, or from the run's usage.
pub fn workloads(
    specs: &[StreamSpec],
    rate: &Rate,
    run: Option<(&RunUsage, &str)>,
    options: &CostOptions,
) -> Result<Vec<Workload>, CostError> {
    specs
        .iter()
        .map(|spec| {
            let Some((usage, origin)) = run else {
                let records_per_sec = rate.events_per_sec.ok_or(CostError::NoRate)?;
                let bytes = rate.record_bytes.ok_or(CostError::NoRecordBytes)?;
                return Ok(Workload {
                    stream: spec.name().to_owned(),
                    records_per_sec,
                    bytes_per_record: bytes as f64,
                    delivered_per_read: 1.0,
                    error_share: 0.0,
                    partition_keys: options.partition_keys.unwrap_or(1).max(1),
                    partitions: options.partitions.max(1),
                    measured: None,
                });
            };
            let u = usage.streams.iter().find(|u| u.stream == spec.name()).ok_or_else(|| {
                CostError::StreamNotInRun {
                    stream: spec.name().to_owned(),
                    origin: origin.to_owned(),
                    known: usage.streams.iter().map(|u| u.stream.as_str()).collect::<Vec<_>>().join(", "),
                }
            })?;
            if u.records_read == 0 || u.bytes_read == 0 {
                return Err(CostError::NothingRead { stream: spec.name().to_owned(), origin: origin.to_owned() });
            }
            let span_secs = (usage.clock_span_ms.max(1) as f64) / 1000.0;
            if rate.events_per_sec.is_none() && span_secs < MIN_RUN_SECS as f64 {
                return Err(CostError::ShortRun { origin: origin.to_owned(), span_secs: usage.clock_span_ms as f64 / 1000.0 });
            }
            let own_rate = u.records_read as f64 / span_secs;
            let records_per_sec = rate.events_per_sec.unwrap_or(own_rate);
            Ok(Workload {
                stream: spec.name().to_owned(),
                records_per_sec,
                bytes_per_record: rate.record_bytes.map_or(u.bytes_read as f64 / u.records_read as f64, |b| b as f64),
                delivered_per_read: u.bytes_delivered as f64 / u.bytes_read as f64,
                error_share: u.error_records as f64 / u.records_read as f64,
                partition_keys: options.partition_keys.unwrap_or(u.partition_keys.clamp(1, u64::from(u32::MAX)) as u32),
                partitions: u.partitions.max(1),
                measured: Some(format!(
                    "{stream}: {records} records of {bpr:.0} bytes read over {span_secs:.0} s of the stack's clock in {origin} ({own_rate:.2} records/s); {ratio:.3} bytes stored per byte read; {errors} error records; {keys} partition key value(s) at once; priced at {records_per_sec:.2} records/s",
                    stream = spec.name(),
                    records = u.records_read,
                    bpr = u.bytes_read as f64 / u.records_read as f64,
                    ratio = u.bytes_delivered as f64 / u.bytes_read as f64,
                    errors = u.error_records,
                    keys = u.partition_keys.max(1),
                )),
            })
        })
        .collect()
}

/// Seconds a record waits in a buffer of `hints` filling at
/// `bytes_per_sec`: the interval, or less when the size is reached first.
fn flush_secs(hints: crate::spec::BufferHints, bytes_per_sec: f64) -> f64 {
    let interval = hints.interval.as_secs_f64().max(1.0);
    if bytes_per_sec <= 0.0 {
        return interval;
    }
    interval.min(hints.size_bytes as f64 / bytes_per_sec)
}

struct Lines<'a> {
    prices: &'a PriceBook,
    lines: Vec<CostLine>,
    used: Vec<&'a Price>,
}

impl<'a> Lines<'a> {
    fn add(
        &mut self,
        service: &'static str,
        item: impl Into<String>,
        stream: Option<&str>,
        quantity: f64,
        unit: &'static str,
        key: &str,
    ) -> Result<(), CostError> {
        let price = self.prices.get(key)?;
        self.used.push(price);
        self.lines.push(CostLine {
            service,
            item: item.into(),
            stream: stream.map(str::to_owned),
            quantity,
            unit,
            price_key: key.to_owned(),
            unit_price: price.price,
            usd: quantity * price.price,
        });
        Ok(())
    }
}

/// The month's bill for `specs` carrying `workloads`.
pub fn estimate(
    specs: &[StreamSpec],
    workloads: &[Workload],
    options: &CostOptions,
    prices: &PriceBook,
    jq_secs_per_record: impl Fn(&StreamSpec) -> f64,
) -> Result<CostReport, CostError> {
    if let Cluster::Provisioned { broker_type, .. } = &options.cluster {
        let key = format!("{}{broker_type}", prices::BROKER_HOUR);
        if prices.get(&key).is_err() {
            return Err(CostError::UnknownBrokerType {
                given: broker_type.clone(),
                known: prices.broker_types().join(", "),
            });
        }
    }
    let month_secs = HOURS_PER_MONTH * 3600.0;
    let mut out = Lines { prices, lines: Vec::new(), used: Vec::new() };
    let mut warnings = Vec::new();
    let mut figures = Vec::new();
    let mut assumptions = vec![
        format!("a month is {HOURS_PER_MONTH} hours; a GB is 2^30 bytes"),
        format!("prices: {} {}, from {}", prices.region, prices.currency, prices::BUILT_IN_NAME),
    ];
    // Bytes written to each topic per second: streams reading one topic
    // share what was written to it.
    let mut topics: BTreeMap<&str, (f64, u32)> = BTreeMap::new();
    let mut gb_out = 0.0;
    for (spec, w) in specs.iter().zip(workloads) {
        let name = Some(spec.name());
        let bytes_per_sec = w.records_per_sec * w.bytes_per_record;
        let records = w.records_per_sec * month_secs;
        let gb_read = records * w.bytes_per_record / GB;
        let gb_delivered = gb_read * w.delivered_per_read;
        match &w.measured {
            Some(m) => assumptions.push(m.clone()),
            None => assumptions.push(format!(
                "{}: {} records/s of {} bytes, as given",
                spec.name(),
                w.records_per_sec,
                w.bytes_per_record
            )),
        }
        if spec.is_direct_put() {
            let rounded =
                (w.bytes_per_record.max(1.0) / DIRECT_PUT_ROUNDING as f64).ceil() * DIRECT_PUT_ROUNDING as f64;
            out.add(
                "Firehose",
                format!("Direct PUT ingestion ({:.0}-byte records billed as {rounded:.0})", w.bytes_per_record),
                name,
                records * rounded / GB,
                "GB",
                "firehose-direct-put-ingestion-gb",
            )?;
        } else {
            out.add(
                "Firehose",
                "MSK-source ingestion (larger of GB read and GB delivered)",
                name,
                gb_read.max(gb_delivered),
                "GB",
                "firehose-msk-ingestion-gb",
            )?;
            let topic = topics.entry(spec.topic()).or_insert((0.0, w.partitions));
            topic.0 = topic.0.max(bytes_per_sec);
            topic.1 = topic.1.max(w.partitions);
            gb_out += gb_read;
        }
        if spec.conversion().is_some() {
            out.add(
                "Firehose",
                "format conversion (GB ingested)",
                name,
                gb_read,
                "GB",
                "firehose-format-conversion-gb",
            )?;
        }
        let keys = if spec.dynamic_partitioning() { w.partition_keys.max(1) } else { 1 };
        let wait = flush_secs(spec.buffer(), bytes_per_sec / f64::from(keys));
        let objects_per_hour = if bytes_per_sec > 0.0 { f64::from(keys) * 3600.0 / wait } else { 0.0 };
        let error_objects_per_hour =
            if w.error_share > 0.0 { 3600.0 / spec.buffer().interval.as_secs_f64().max(1.0) } else { 0.0 };
        let objects = (objects_per_hour + error_objects_per_hour) * HOURS_PER_MONTH;
        let average_object_mb = if objects_per_hour > 0.0 {
            gb_delivered * GB / (objects_per_hour * HOURS_PER_MONTH) / 1_048_576.0
        } else {
            0.0
        };
        if spec.dynamic_partitioning() {
            out.add(
                "Firehose",
                "dynamic partitioning (GB delivered)",
                name,
                gb_delivered,
                "GB",
                "firehose-dynamic-partitioning-gb",
            )?;
            out.add(
                "Firehose",
                format!("dynamic partitioning objects ({keys} key value(s), {objects_per_hour:.1}/hour)"),
                name,
                objects / 1000.0,
                "1k objects",
                "firehose-dynamic-partitioning-1k-objects",
            )?;
            if spec.metadata_query().is_some() {
                let per_record = jq_secs_per_record(spec);
                out.add(
                    "Firehose",
                    format!("JQ processing ({:.2} µs/record)", per_record * 1e6),
                    name,
                    records * per_record / 3600.0,
                    "hours",
                    "firehose-jq-hour",
                )?;
            }
            if objects_per_hour > options.max_objects_per_hour || average_object_mb < DYNAMIC_PARTITIONING_OBJECT_MB {
                let usd = objects / 1000.0 * prices.get("firehose-dynamic-partitioning-1k-objects")?.price
                    + objects / 1000.0 * prices.get("s3-put-1k")?.price;
                warnings.push(Warning {
                    code: "dynamic-partitioning-objects",
                    stream: name.map(str::to_owned),
                    message: format!(
                        "{}: dynamic partitioning writes {objects_per_hour:.0} objects/hour averaging {average_object_mb:.2} MB ({keys} key value(s), one object per key every {wait:.0} s); objects cost ${usd:.2}/month in per-object and PUT charges{}: use fewer or coarser partition keys or raise BufferingHints ({} MB, {} s now)",
                        spec.name(),
                        if average_object_mb < DYNAMIC_PARTITIONING_OBJECT_MB {
                            format!(", and objects under {DYNAMIC_PARTITIONING_OBJECT_MB} MB slow every query")
                        } else {
                            format!(", over {} objects/hour", options.max_objects_per_hour)
                        },
                        spec.buffer().size_bytes / crate::spec::MIB,
                        spec.buffer().interval.as_secs()
                    ),
                });
            }
        }
        if let Some(lambda) = spec.lambda() {
            let invocations = month_secs / flush_secs(lambda.buffer, bytes_per_sec);
            out.add(
                "Lambda",
                format!(
                    "transform invocations (one per {:.0} s Lambda buffer)",
                    flush_secs(lambda.buffer, bytes_per_sec)
                ),
                name,
                invocations / 1e6,
                "1M requests",
                "lambda-requests-1m",
            )?;
        }
        out.add(
            "S3",
            format!(
                "PUT requests ({objects_per_hour:.1} objects/hour{})",
                if error_objects_per_hour > 0.0 {
                    format!(" + {error_objects_per_hour:.1} error objects/hour")
                } else {
                    String::new()
                }
            ),
            name,
            objects / 1000.0,
            "1k PUTs",
            "s3-put-1k",
        )?;
        out.add(
            "S3",
            format!("Standard storage ({} month(s) kept, steady state)", options.s3_retention_months),
            name,
            gb_delivered * f64::from(options.s3_retention_months),
            "GB-month",
            "s3-standard-gb-month",
        )?;
        if options.cloudwatch {
            let f = crate::cloudwatch::firehose::Applies::spec_metrics(spec);
            out.add(
                "CloudWatch",
                format!("custom metrics ({f} per stream, deliver --cloudwatch)"),
                name,
                f as f64,
                "metric-months",
                "cloudwatch-custom-metric-month",
            )?;
            out.add(
                "CloudWatch",
                "PutMetricData (one call per minute)",
                name,
                HOURS_PER_MONTH * 60.0 / 1000.0,
                "1k requests",
                "cloudwatch-api-1k",
            )?;
        }
        if objects_per_hour > 0.0 && average_object_mb < options.small_file_mb && !spec.dynamic_partitioning() {
            warnings.push(Warning {
                code: "small-objects",
                stream: name.map(str::to_owned),
                message: format!(
                    "{}: objects average {average_object_mb:.2} MB, under the {} MB Athena reads well ({objects_per_hour:.0} objects/hour; a query over a day opens {:.0} files): raise BufferingHints.SizeInMBs ({} MB now) and IntervalInSeconds ({} s now), or compact",
                    spec.name(),
                    options.small_file_mb,
                    objects_per_hour * 24.0,
                    spec.buffer().size_bytes / crate::spec::MIB,
                    spec.buffer().interval.as_secs()
                ),
            });
        }
        for (alarm, stream, threshold) in &options.freshness_alarms {
            if stream == spec.name() && wait > *threshold {
                warnings.push(Warning {
                    code: "freshness-alarm",
                    stream: name.map(str::to_owned),
                    message: format!(
                        "{}: alarm {alarm} fires on every buffer: at this rate records wait up to {wait:.0} s to land (BufferingHints: {} MB, {} s), over its DataFreshness threshold of {threshold:.0} s; lower IntervalInSeconds below {threshold:.0} or raise the threshold",
                        spec.name(),
                        spec.buffer().size_bytes / crate::spec::MIB,
                        spec.buffer().interval.as_secs()
                    ),
                });
            }
        }
        figures.push(StreamFigures {
            stream: spec.name().to_owned(),
            records_per_month: records,
            gb_read,
            gb_delivered,
            objects_per_hour,
            average_object_mb,
            buffer_wait_secs: wait,
        });
    }
    let gb_in: f64 = topics.values().map(|(bytes, _)| bytes * month_secs / GB).sum();
    let private: Vec<&StreamSpec> = specs.iter().filter(|s| !s.is_direct_put() && s.private_connectivity()).collect();
    match &options.cluster {
        Cluster::Provisioned { brokers, broker_type } if !topics.is_empty() => {
            out.add(
                "MSK",
                format!("{brokers} x {broker_type} brokers"),
                None,
                f64::from(*brokers) * HOURS_PER_MONTH,
                "broker-hours",
                &format!("{}{broker_type}", prices::BROKER_HOUR),
            )?;
            let replication = REPLICATION.min(*brokers);
            out.add(
                "MSK",
                format!("broker storage ({} h retention x {replication} replicas)", options.retention_hours),
                None,
                gb_in / month_secs * 3600.0 * f64::from(options.retention_hours) * f64::from(replication),
                "GB-month",
                "msk-storage-gb-month",
            )?;
            assumptions.push(format!(
                "broker storage is what the retention holds at replication factor {replication}; MSK bills the volume you provision, so round up to it"
            ));
            for spec in &private {
                out.add(
                    "MSK",
                    "multi-VPC private connectivity (one connection, IAM)",
                    Some(spec.name()),
                    HOURS_PER_MONTH,
                    "connection-hours",
                    "msk-multi-vpc-connection-hour",
                )?;
                let gb = figures.iter().find(|f| f.stream == spec.name()).map_or(0.0, |f| f.gb_read);
                out.add("MSK", "multi-VPC data processed", Some(spec.name()), gb, "GB", "msk-multi-vpc-gb")?;
                if broker_type == "kafka.t3.small" {
                    let m5 =
                        prices.get(&format!("{}kafka.m5.large", prices::BROKER_HOUR)).map(|p| p.price).unwrap_or(0.0);
                    let t3 = prices.get(&format!("{}kafka.t3.small", prices::BROKER_HOUR))?.price;
                    warnings.push(Warning {
                        code: "private-connectivity-t3-small",
                        stream: Some(spec.name().to_owned()),
                        message: format!(
                            "{}: Connectivity PRIVATE uses MSK multi-VPC private connectivity, which kafka.t3.small brokers do not support: this stream cannot read. Use kafka.m5.large or larger (+${:.2}/month for {brokers} brokers) or PUBLIC connectivity",
                            spec.name(),
                            (m5 - t3) * f64::from(*brokers) * HOURS_PER_MONTH
                        ),
                    });
                }
            }
            if !private.is_empty() {
                assumptions.push(
                    "each PRIVATE stream reads through one multi-VPC connection with one authentication scheme (IAM)"
                        .into(),
                );
            }
        }
        Cluster::Serverless if !topics.is_empty() => {
            let partitions: u32 = topics.values().map(|(_, p)| p).sum();
            out.add(
                "MSK",
                "Serverless cluster",
                None,
                HOURS_PER_MONTH,
                "cluster-hours",
                "msk-serverless-cluster-hour",
            )?;
            out.add(
                "MSK",
                format!("Serverless partitions ({partitions})"),
                None,
                f64::from(partitions) * HOURS_PER_MONTH,
                "partition-hours",
                "msk-serverless-partition-hour",
            )?;
            out.add("MSK", "Serverless data in", None, gb_in, "GB", "msk-serverless-gb-in")?;
            out.add("MSK", "Serverless data out (Firehose's reads)", None, gb_out, "GB", "msk-serverless-gb-out")?;
        }
        _ => {}
    }
    if specs.iter().any(|s| s.lambda().is_some()) {
        assumptions.push("Lambda: requests only; its duration (GB-seconds) depends on your function".into());
    }
    if workloads.iter().any(|w| w.measured.is_none())
        && specs.iter().any(|s| s.compression() != crate::spec::Compression::Uncompressed || s.conversion().is_some())
    {
        assumptions.push("no run measured compression: bytes delivered are taken as bytes read (give --from-run for the measured ratio)".into());
    }
    if specs.iter().any(|s| s.metadata_query().is_some() && s.dynamic_partitioning()) {
        assumptions.push("JQ hours: streamlab's jq time per record on this machine, measured now; AWS meters its own engine, so treat the line as an order of magnitude".into());
    }
    let total_usd = out.lines.iter().map(|l| l.usd).sum();
    let oldest_price_read = out.used.iter().filter_map(|p| p.read).min();
    Ok(CostReport {
        region: prices.region.clone(),
        currency: prices.currency.clone(),
        hours_per_month: HOURS_PER_MONTH,
        streams: figures,
        lines: out.lines,
        total_usd,
        assumptions,
        warnings,
        oldest_price_read,
    })
}

impl CostReport {
    /// Each line as quantity x unit price = USD, the total, the warnings and
    /// the assumptions.
    pub fn render_table(&self) -> String {
        let rows: Vec<[String; 5]> = self
            .lines
            .iter()
            .map(|l| {
                [
                    format!("{} {}", l.service, l.item),
                    l.stream.clone().unwrap_or_else(|| "(cluster)".into()),
                    format!("{} {}", format_quantity(l.quantity), l.unit),
                    format!("x ${}", format_quantity(l.unit_price)),
                    format!("= ${:.2}", l.usd),
                ]
            })
            .collect();
        let headers = ["item", "stream", "quantity / month", "unit price", "USD"];
        let widths: Vec<usize> = (0..5)
            .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([headers[i].len()]).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        let line = |cells: [&str; 5], out: &mut String| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                let pad = widths[i] - c.chars().count();
                if i >= 2 {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(c);
                } else {
                    s.push_str(c);
                    s.push_str(&" ".repeat(pad));
                }
                s.push_str("  ");
            }
            out.push_str(s.trim_end());
            out.push('\n');
        };
        line(headers, &mut out);
        for r in &rows {
            line([&r[0], &r[1], &r[2], &r[3], &r[4]], &mut out);
        }
        out.push_str(&format!("total: ${:.2} {} a month ({})\n", self.total_usd, self.currency, self.region));
        if let Some(date) = self.oldest_price_read {
            out.push_str(&format!("oldest price used was read on {date}\n"));
        }
        for w in &self.warnings {
            out.push_str(&format!("warning: {}\n", w.message));
        }
        out.push_str("assumptions:\n");
        for a in &self.assumptions {
            out.push_str(&format!("  - {a}\n"));
        }
        out
    }
}

/// A figure with the precision that matters: no trailing zeros, at most
/// four significant decimals below 1.
pub fn format_quantity(value: f64) -> String {
    let text = if value == 0.0 {
        "0".to_owned()
    } else if value.abs() >= 100.0 {
        format!("{value:.1}")
    } else if value.abs() >= 1.0 {
        format!("{value:.3}")
    } else {
        let decimals = (4 - value.abs().log10().floor() as i32 - 1).clamp(1, 10) as usize;
        format!("{value:.decimals$}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// Seconds streamlab's jq takes per record for `spec`'s
/// `MetadataExtractionQuery`, measured now over seeded events (0 without one).
pub fn measure_jq(spec: &StreamSpec) -> f64 {
    let Some(extractor) = spec.metadata_query() else { return 0.0 };
    let events: Vec<Vec<u8>> = crate::events::EventGenerator::new(&crate::events::GeneratorConfig::new(1, 0))
        .take(2_000)
        .map(|e| e.to_json())
        .collect();
    let start = std::time::Instant::now();
    let mut runs = 0usize;
    while runs < 3 || start.elapsed() < std::time::Duration::from_millis(50) {
        for event in &events {
            let _ = std::hint::black_box(extractor.extract(event));
        }
        runs += 1;
    }
    start.elapsed().as_secs_f64() / (runs * events.len()) as f64
}

/// `(alarm, stream, threshold in seconds)` of each alarm on a stream's
/// `DeliveryToS3.DataFreshness` that fires above its threshold.
pub fn freshness_alarms(alarms: &[crate::cloudwatch::alarms::AlarmDefinition]) -> Vec<(String, String, f64)> {
    alarms
        .iter()
        .filter(|a| a.metric.name == "DeliveryToS3.DataFreshness")
        .filter_map(|a| {
            let stream = a.metric.dimensions.iter().find(|(k, _)| k == crate::cloudwatch::firehose::DIMENSION)?;
            Some((a.name.clone(), stream.1.clone(), a.threshold))
        })
        .collect()
}
