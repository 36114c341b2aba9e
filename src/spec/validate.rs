//! Every check AWS makes on the request, plus the ones streamlab adds for
//! features it does not emulate yet, collected rather than stopping at the
//! first so a user fixes a spec in one pass.
//!
//! Two kinds of message, as AWS has them (`../shared/firehose-reference.md`
//! sections 1, 3 and 10): the API model's constraints, in the form
//! `Value at '<member>' failed to satisfy constraint: Member must ...`
//! (streamlab appends what was given), and Firehose's own rules, with its
//! words (typos included). Each violation carries the JSON path of the field.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::DateTime;
use chrono_tz::Tz;
use regex::Regex;
use serde_json::Value;

use super::raw::{self, CreateDeliveryStream};
use super::{BufferHints, Compression, Deaggregation, LambdaProcessor, StartPosition, StreamSpec, AWS_TIME_ZONES, MIB};
use crate::convert::{ConversionSpec, Deserializer, ParquetCodec, ParquetOptions, TimestampFormat};
use crate::delivery::extract;
use crate::prefix::{PrefixError, Template, MAX_EVALUATED_PREFIX};

/// One problem with a spec: where, and what rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON path of the offending field, e.g.
    /// `ExtendedS3DestinationConfiguration.BufferingHints.SizeInMBs`.
    pub path: String,
    /// The rule, in AWS's words where AWS has them.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// AWS's message when a prefix has expressions but no error prefix is set
/// (the typo is AWS's).
pub const ERROR_PREFIX_REQUIRED: &str = "InvalidArgumentException: Ths supplied prefix(es) do not satisfy the following constraint: ErrorOutputPrefix cannot be null or empty when Prefix contains expressions";

/// What AWS puts before its other prefix rules.
const PREFIX_RULE: &str = "The supplied prefix(es) do not satisfy the following constraint: ";

const S3: &str = "ExtendedS3DestinationConfiguration";
const MSK: &str = "MSKSourceConfiguration";

static NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9_.-]+$").unwrap());
static TOPIC: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9\._\-]+$").unwrap());
static BUCKET_ARN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^arn:.*:s3:::((?-u:[\w\.\-]){1,255})$").unwrap());
static ROLE_ARN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^arn:.*:iam::\d{12}:role/[a-zA-Z_0-9+=,.@\-_/]+$").unwrap());
static MSK_ARN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^arn:.*:kafka:.*$").unwrap());
static KMS_ARN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^arn:.*:kms:.*$").unwrap());
static FILE_EXTENSION: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^$|^\.[0-9a-z!\-_.*'()]+$").unwrap());
static TIME_ZONE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^$|^[a-zA-Z/_]+$").unwrap());
static NOT_BLANK: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\S").unwrap());

/// Enum value sets, in the order AWS prints them (probed by another
/// emulator's compatibility tests against AWS, where known; else the model's).
const COMPRESSION_FORMATS: &[&str] = &["ZIP", "HADOOP_SNAPPY", "Snappy", "GZIP", "UNCOMPRESSED"];
const PROCESSOR_TYPES: &[&str] = &[
    "Decompression",
    "Lambda",
    "RecordDeAggregation",
    "MetadataExtraction",
    "AppendDelimiterToRecord",
    "CloudWatchLogProcessing",
];
const PARAMETER_NAMES: &[&str] = &[
    "DataMessageExtraction",
    "NumberOfRetries",
    "Delimiter",
    "RoleArn",
    "JsonParsingEngine",
    "SubRecordType",
    "MetadataExtractionQuery",
    "BufferIntervalInSeconds",
    "LambdaArn",
    "BufferSizeInMBs",
    "CompressionFormat",
];
const STREAM_TYPES: &[&str] = &["DirectPut", "KinesisStreamAsSource", "MSKAsSource", "DatabaseAsSource"];
const CONNECTIVITY: &[&str] = &["PUBLIC", "PRIVATE"];

/// AWS's name of a member: `ExtendedS3DestinationConfiguration.Processors[0]`
/// is `extendedS3DestinationConfiguration.processors.1.member`.
fn aws_member(path: &str) -> String {
    let lower_first = |s: &str| {
        let mut c = s.chars();
        c.next().map(|f| f.to_lowercase().collect::<String>() + c.as_str()).unwrap_or_default()
    };
    path.split('.')
        .map(|segment| match segment.split_once('[') {
            Some((name, index)) => {
                let n: usize = index.trim_end_matches(']').parse().unwrap_or(0);
                format!("{}.{}.member", lower_first(name), n + 1)
            }
            None => lower_first(segment),
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[derive(Default)]
struct Report(Vec<Violation>);

impl Report {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Violation { path: path.into(), message: message.into() });
    }

    /// One of Firehose's prefix rules.
    fn prefix_rule(&mut self, path: impl Into<String>, rule: &str) {
        self.add(path, format!("{PREFIX_RULE}{rule}"));
    }

    fn unsupported(&mut self, path: impl Into<String>, what: &str) {
        self.add(path, format!("streamlab does not emulate {what} yet; remove it to run this stream locally"));
    }

    /// A constraint of the API model, in AWS's words, with what was given.
    fn constraint(&mut self, path: &str, constraint: impl fmt::Display, got: Option<String>) {
        let got = got.map(|g| format!("; got {g}")).unwrap_or_default();
        self.add(path, format!("Value at '{}' failed to satisfy constraint: {constraint}{got}", aws_member(path)));
    }

    fn required<'a, T>(&mut self, path: &str, value: &'a Option<T>) -> Option<&'a T> {
        if value.is_none() {
            self.constraint(path, "Member must not be null", None);
        }
        value.as_ref()
    }

    fn string(&mut self, path: &str, value: &str, min: usize, max: usize, pattern: Option<(&Regex, &str)>) -> bool {
        let len = value.chars().count();
        let mut ok = true;
        if len < min {
            self.constraint(
                path,
                format!("Member must have length greater than or equal to {min}"),
                Some(format!("{len} characters")),
            );
            ok = false;
        }
        if len > max {
            self.constraint(
                path,
                format!("Member must have length less than or equal to {max}"),
                Some(format!("{len} characters")),
            );
            ok = false;
        }
        if let Some((re, shown)) = pattern {
            if !re.is_match(value) {
                self.constraint(
                    path,
                    format!("Member must satisfy regular expression pattern: {shown}"),
                    Some(format!("{value:?}")),
                );
                ok = false;
            }
        }
        ok
    }

    fn range(&mut self, path: &str, value: i64, min: i64, max: i64) -> bool {
        if value > max {
            self.constraint(
                path,
                format!("Member must have value less than or equal to {max}"),
                Some(value.to_string()),
            );
        } else if value < min {
            self.constraint(
                path,
                format!("Member must have value greater than or equal to {min}"),
                Some(value.to_string()),
            );
        } else {
            return true;
        }
        false
    }

    fn enumerated(&mut self, path: &str, value: &str, set: &[&str]) -> bool {
        let ok = set.contains(&value);
        if !ok {
            self.constraint(
                path,
                format!("Member must satisfy enum value set: [{}]", set.join(", ")),
                Some(format!("{value:?} (case-sensitive)")),
            );
        }
        ok
    }

    /// A required IAM role ARN (model: 1-512 characters, IAM role pattern).
    fn role_arn(&mut self, path: &str, value: &Option<String>) {
        if let Some(role) = self.required(path, value) {
            self.string(path, role, 1, 512, Some((&ROLE_ARN, r"arn:.*:iam::\d{12}:role/[a-zA-Z_0-9+=,.@\-_/]+")));
        }
    }
}

/// Validates a parsed JSON document into a [`StreamSpec`].
pub fn validate(value: &Value) -> Result<StreamSpec, Vec<Violation>> {
    let request: CreateDeliveryStream = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        vec![Violation {
            path: if path == "." { "(top level)".into() } else { path },
            message: e.into_inner().to_string(),
        }]
    })?;
    let mut report = Report::default();
    let spec = check(&request, &mut report);
    match spec {
        Some(spec) if report.0.is_empty() => Ok(spec),
        _ => Err(report.0),
    }
}

fn check(req: &CreateDeliveryStream, r: &mut Report) -> Option<StreamSpec> {
    let name = r.required("DeliveryStreamName", &req.delivery_stream_name);
    if let Some(name) = name {
        r.string("DeliveryStreamName", name, 1, 64, Some((&NAME, "[a-zA-Z0-9_.-]+")));
    }

    let mut msk_stream = false;
    match req.delivery_stream_type.as_deref() {
        None => r.add(
            "DeliveryStreamType",
            "is required by streamlab: AWS defaults to DirectPut, and streamlab emulates MSKAsSource streams; set it to \"MSKAsSource\"",
        ),
        Some(kind) => {
            if r.enumerated("DeliveryStreamType", kind, STREAM_TYPES) {
                msk_stream = kind == "MSKAsSource";
                if !msk_stream {
                    r.unsupported("DeliveryStreamType", &format!("{kind} sources (only MSKAsSource)"));
                }
            }
        }
    }
    for other in req.other_sources() {
        r.add(other, format!("cannot be combined with {MSK}; a stream has exactly one source"));
    }
    if msk_stream && req.msk_source_configuration.is_none() {
        r.add(MSK, "MSKSourceConfig is mandatory for MSK as Source stream type.");
    }
    let source = req.msk_source_configuration.as_ref().map(|msk| check_source(msk, r));
    if msk_stream && req.delivery_stream_encryption_configuration_input.is_some() {
        r.add(
            "DeliveryStreamEncryptionConfigurationInput",
            "Server side encryption from firehose is only allowed for direct put delivery streams and database as a source delivery streams",
        );
    }

    let destinations = req.destinations();
    if destinations.len() != 1 {
        r.add(
            if destinations.is_empty() { S3.to_owned() } else { destinations.join(", ") },
            "Exactly one destination configuration is supported for a Firehose",
        );
    }
    for other in destinations.iter().filter(|d| **d != S3) {
        r.unsupported(*other, "destinations other than ExtendedS3DestinationConfiguration");
    }
    // The stream's region: the cluster's (a Glue table defaults to it).
    let region = req
        .msk_source_configuration
        .as_ref()
        .and_then(|m| m.msk_cluster_arn.as_deref())
        .and_then(|arn| arn.split(':').nth(3))
        .filter(|r| !r.is_empty())
        .unwrap_or("us-east-1")
        .to_owned();
    let destination = req.extended_s3_destination_configuration.as_ref().map(|s3| check_destination(s3, &region, r));

    let (Some(name), Some(Some((topic, start, msk_cluster_arn))), Some(Some(dest))) = (name, source, destination)
    else {
        return None;
    };
    Some(StreamSpec {
        name: name.clone(),
        topic,
        start,
        bucket: dest.bucket,
        prefix: dest.prefix,
        error_prefix: dest.error_prefix,
        buffer: dest.buffer,
        compression: dest.compression,
        extension: dest.extension,
        time_zone: dest.time_zone,
        append_newline: dest.append_newline,
        deaggregation: dest.deaggregation,
        metadata_query: dest.metadata_query,
        dynamic_partitioning: dest.dynamic_partitioning,
        lambda: dest.lambda,
        conversion: dest.conversion,
        msk_cluster_arn,
        sse_kms_key_id: dest.sse_kms_key_id,
        source_sha256: String::new(),
        destination: Value::Null,
        destination_sha256: String::new(),
    })
}

fn check_source(msk: &raw::MskSourceConfiguration, r: &mut Report) -> Option<(String, StartPosition, String)> {
    let arn = r.required(&format!("{MSK}.MSKClusterARN"), &msk.msk_cluster_arn);
    if let Some(arn) = arn {
        r.string(&format!("{MSK}.MSKClusterARN"), arn, 1, 512, Some((&MSK_ARN, "arn:.*:kafka:.*")));
    }
    let topic = r.required(&format!("{MSK}.TopicName"), &msk.topic_name);
    if let Some(topic) = topic {
        r.string(&format!("{MSK}.TopicName"), topic, 1, 255, Some((&TOPIC, r"[a-zA-Z0-9\._\-]+")));
    }
    let auth_path = format!("{MSK}.AuthenticationConfiguration");
    if let Some(auth) = r.required(&auth_path, &msk.authentication_configuration) {
        r.role_arn(&format!("{auth_path}.RoleARN"), &auth.role_arn);
        if let Some(connectivity) = r.required(&format!("{auth_path}.Connectivity"), &auth.connectivity) {
            r.enumerated(&format!("{auth_path}.Connectivity"), connectivity, CONNECTIVITY);
        }
    }
    let start = match &msk.read_from_timestamp {
        None => Some(StartPosition::ActivationTime),
        Some(value) => match parse_timestamp(value) {
            Ok(0) => Some(StartPosition::Earliest),
            Ok(ms) => Some(StartPosition::Timestamp(ms)),
            Err(message) => {
                r.add(format!("{MSK}.ReadFromTimestamp"), message);
                None
            }
        },
    };
    Some((topic?.clone(), start?, arn?.clone()))
}

/// The AWS CLI takes a timestamp as epoch seconds or an ISO 8601 string.
fn parse_timestamp(value: &Value) -> Result<i64, String> {
    let shape = "must be a timestamp: epoch seconds (e.g. 0 for the earliest record) or an ISO 8601 string such as \"2026-07-13T14:00:00Z\"";
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(secs) if secs >= 0.0 && secs.is_finite() => Ok((secs * 1000.0).round() as i64),
            _ => Err(format!("{shape}; got {n}")),
        },
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .map_err(|e| format!("{shape}; got {s:?} ({e})")),
        other => Err(format!("{shape}; got {other}")),
    }
}

struct Destination {
    bucket: String,
    prefix: Template,
    error_prefix: Template,
    buffer: BufferHints,
    compression: Compression,
    extension: String,
    time_zone: Tz,
    append_newline: bool,
    deaggregation: Option<Deaggregation>,
    metadata_query: Option<String>,
    dynamic_partitioning: bool,
    lambda: Option<LambdaProcessor>,
    conversion: Option<ConversionSpec>,
    sse_kms_key_id: Option<String>,
}

fn check_destination(
    s3: &raw::ExtendedS3DestinationConfiguration,
    region: &str,
    r: &mut Report,
) -> Option<Destination> {
    r.role_arn(&format!("{S3}.RoleARN"), &s3.role_arn);
    let bucket = r.required(&format!("{S3}.BucketARN"), &s3.bucket_arn).and_then(|arn| {
        r.string(&format!("{S3}.BucketARN"), arn, 1, 2048, Some((&BUCKET_ARN, r"arn:.*:s3:::[\w\.\-]{1,255}")));
        BUCKET_ARN.captures(arn).map(|c| c[1].to_owned())
    });

    let conversion = check_conversion(s3, region, r);
    let converting = matches!(conversion, Some(Some(_)));
    let buffer = check_hints(s3.buffering_hints.as_ref(), r).map(|hints| match s3.buffering_hints {
        // With conversion, the default size is 128 MiB.
        None if converting => BufferHints { size_bytes: 128 * MIB, ..hints },
        _ => hints,
    });
    let compression = check_compression(s3.compression_format.as_deref(), r);

    let extension = s3.file_extension.clone().unwrap_or_default();
    r.string(&format!("{S3}.FileExtension"), &extension, 0, 128, Some((&FILE_EXTENSION, r"^$|\.[0-9a-z!\-_.*'()]+")));

    let time_zone = check_time_zone(s3.custom_time_zone.as_deref().unwrap_or(""), r);
    let sse_kms_key_id = check_encryption(s3.encryption_configuration.as_ref(), r);
    check_logging(s3.cloud_watch_logging_options.as_ref(), r);

    let dp_config = s3.dynamic_partitioning_configuration.as_ref();
    let dynamic_partitioning = dp_config.and_then(|c| c.enabled).unwrap_or(false);
    let processing = check_processing(s3.processing_configuration.as_ref(), dynamic_partitioning, r);
    let (prefix, error_prefix) = check_prefixes(s3, time_zone.unwrap_or(Tz::UTC), r)?;
    check_dynamic_partitioning(s3, dynamic_partitioning, processing.as_ref(), &prefix, r);
    check_backup(s3, r);

    let prefix = with_default_time(prefix);
    let error_prefix = if error_prefix.is_empty() {
        // `<Prefix><error-output-type>/yyyy/MM/dd/HH/`.
        Template::parse(&format!("{}!{{firehose:error-output-type}}/", s3.prefix.as_deref().unwrap_or("")))
            .ok()?
            .concat(Template::timestamp("yyyy/MM/dd/HH/"))
    } else {
        error_prefix
    };
    let processing = processing?;
    Some(Destination {
        bucket: bucket?,
        prefix,
        error_prefix,
        buffer: buffer?,
        compression: compression?,
        extension: match (extension.is_empty(), converting) {
            (false, _) => extension,
            (true, true) => ".parquet".to_owned(),
            (true, false) => compression?.extension().to_owned(),
        },
        conversion: conversion?,
        time_zone: time_zone?,
        append_newline: processing.append_newline,
        deaggregation: processing.deaggregation,
        metadata_query: processing.metadata_query,
        dynamic_partitioning,
        lambda: processing.lambda,
        sse_kms_key_id,
    })
}

/// Firehose's default time prefix, appended by plain concatenation to a
/// prefix with neither a timestamp nor a partition key.
fn with_default_time(prefix: Template) -> Template {
    if prefix.has_timestamp() || prefix.has_partition_keys() {
        prefix
    } else {
        prefix.concat(Template::timestamp("yyyy/MM/dd/HH/"))
    }
}

fn check_time_zone(zone: &str, r: &mut Report) -> Option<Tz> {
    let path = format!("{S3}.CustomTimeZone");
    if !r.string(&path, zone, 0, 50, Some((&TIME_ZONE, "^$|[a-zA-Z/_]+"))) {
        return None;
    }
    if zone.is_empty() {
        return Some(Tz::UTC);
    }
    if !AWS_TIME_ZONES.contains(&zone) {
        let hint = match zone {
            "Asia/Kolkata" => " Use Asia/Calcutta, the name AWS's list has for it.",
            "Europe/Kyiv" => " Use Europe/Kiev, the name AWS's list has for it.",
            _ => "",
        };
        r.add(
            &path,
            format!("Provided custom time zone is not supported. Custom time zones are limited to UTC and non-3-letter IANA time zones.{hint}"),
        );
        return None;
    }
    zone.parse().ok()
}

/// `EncryptionConfiguration`: exactly one of no encryption and a KMS key;
/// the key's id, when there is one.
fn check_encryption(config: Option<&raw::EncryptionConfiguration>, r: &mut Report) -> Option<String> {
    let config = config?;
    let path = format!("{S3}.EncryptionConfiguration");
    match (&config.no_encryption_config, &config.kms_encryption_config) {
        (Some(_), Some(_)) | (None, None) => {
            r.add(&path, "Exactly one of NoEncryptionConfig or KMSEncryptionConfig must be specified");
            None
        }
        (Some(none), None) => {
            r.enumerated(&format!("{path}.NoEncryptionConfig"), none, &["NoEncryption"]);
            None
        }
        (None, Some(kms)) => {
            let key_path = format!("{path}.KMSEncryptionConfig.AWSKMSKeyARN");
            let key = r.required(&key_path, &kms.awskms_key_arn)?;
            r.string(&key_path, key, 1, 512, Some((&KMS_ARN, "arn:.*:kms:.*"))).then(|| key.clone())
        }
    }
}

fn check_logging(options: Option<&raw::CloudWatchLoggingOptions>, r: &mut Report) {
    let Some(options) = options else { return };
    let named = options.log_group_name.as_deref().is_some_and(|n| !n.is_empty());
    if options.enabled == Some(true) && !named {
        r.add(
            format!("{S3}.CloudWatchLoggingOptions.LogGroupName"),
            "CloudWatch Log Group Name is required if CloudWatch Logging is enabled",
        );
    }
}

fn check_backup(s3: &raw::ExtendedS3DestinationConfiguration, r: &mut Report) {
    let Some(mode) = &s3.s3_backup_mode else { return };
    let path = format!("{S3}.S3BackupMode");
    if r.enumerated(&path, mode, &["Disabled", "Enabled"]) && mode == "Enabled" {
        if s3.s3_backup_configuration.is_none() {
            r.add(
                format!("{S3}.S3BackupConfiguration"),
                "S3 backup destination configuration is required when enabling S3 backup.",
            );
        } else {
            r.unsupported(path, "source record backup");
        }
    }
}

fn check_hints(hints: Option<&raw::BufferingHints>, r: &mut Report) -> Option<BufferHints> {
    let path = format!("{S3}.BufferingHints");
    let Some(hints) = hints else { return Some(BufferHints::DEFAULT) };
    let mut ok = true;
    match (hints.size_in_mbs, hints.interval_in_seconds) {
        (Some(_), None) | (None, Some(_)) => {
            r.add(&path, "SizeInMBs and IntervalInSeconds must be given together (AWS rejects one without the other)");
            ok = false;
        }
        _ => {}
    }
    let size = hints.size_in_mbs.unwrap_or(5);
    ok &= r.range(&format!("{path}.SizeInMBs"), size, 1, 128);
    let interval = hints.interval_in_seconds.unwrap_or(300);
    ok &= r.range(&format!("{path}.IntervalInSeconds"), interval, 0, 900);
    ok.then(|| BufferHints { size_bytes: size as u64 * MIB, interval: Duration::from_secs(interval as u64) })
}

fn check_compression(format: Option<&str>, r: &mut Report) -> Option<Compression> {
    let path = format!("{S3}.CompressionFormat");
    let format = format.unwrap_or("UNCOMPRESSED");
    if !r.enumerated(&path, format, COMPRESSION_FORMATS) {
        return None;
    }
    let compression = Compression::parse(format);
    if compression.is_none() {
        r.unsupported(&path, &format!("{format} compression"));
    }
    compression
}

/// What the processors do, once checked.
#[derive(Default)]
struct Processing {
    /// A MetadataExtraction processor is configured (even if its query is
    /// invalid, which is reported on its own).
    has_metadata_extraction: bool,
    append_newline: bool,
    deaggregation: Option<Deaggregation>,
    metadata_query: Option<String>,
    lambda: Option<LambdaProcessor>,
}

fn check_processing(
    config: Option<&raw::ProcessingConfiguration>,
    dynamic_partitioning: bool,
    r: &mut Report,
) -> Option<Processing> {
    let Some(config) = config else { return Some(Processing::default()) };
    let path = format!("{S3}.ProcessingConfiguration");
    let enabled = config.enabled == Some(true);
    let processors = config.processors.as_deref().unwrap_or_default();
    if enabled && !(1..=5).contains(&processors.len()) {
        r.add(
            format!("{path}.Processors"),
            "A maximum of 5 and a minimum of 1 processor needs to be supplied when processing is enabled.",
        );
    }
    let kinds: BTreeSet<&str> = processors.iter().filter_map(|p| p.kind.as_deref()).collect();
    let mut out = Processing::default();
    let (mut ok, mut lambdas) = (true, 0);
    for (i, processor) in processors.iter().enumerate() {
        let at = format!("{path}.Processors[{i}]");
        let Some(kind) = r.required(&format!("{at}.Type"), &processor.kind) else {
            ok = false;
            continue;
        };
        if !r.enumerated(&format!("{at}.Type"), kind, PROCESSOR_TYPES) {
            ok = false;
            continue;
        }
        let mut params: BTreeMap<&str, &str> = BTreeMap::new();
        for (j, parameter) in processor.parameters.iter().flatten().enumerate() {
            let p = format!("{at}.Parameters[{j}]");
            let name = r.required(&format!("{p}.ParameterName"), &parameter.parameter_name);
            let value = r.required(&format!("{p}.ParameterValue"), &parameter.parameter_value);
            if let Some(name) = name {
                ok &= r.enumerated(&format!("{p}.ParameterName"), name, PARAMETER_NAMES);
            }
            if let Some(value) = value {
                r.string(&format!("{p}.ParameterValue"), value, 1, 5120, Some((&NOT_BLANK, r"^(?!\s*$).+")));
            }
            if let (Some(name), Some(value)) = (name, value) {
                params.insert(name, value);
            }
        }
        if !enabled {
            continue;
        }
        match kind.as_str() {
            "AppendDelimiterToRecord" => out.append_newline = true,
            "MetadataExtraction" | "RecordDeAggregation" if !dynamic_partitioning => {
                r.add(
                    format!("{at}.Type"),
                    format!(
                        "class com.amazonaws.services.firehose.internal.model.{kind}Processor can only be present when Dynamic Partitioning is enabled."
                    ),
                );
                ok = false;
            }
            "MetadataExtraction" => {
                out.has_metadata_extraction = true;
                if params.get("JsonParsingEngine") != Some(&"JQ-1.6") {
                    r.add(format!("{at}.Parameters"), "MetaDataExtraction JSON Parsing Engine has to be one of JQ-1.6");
                }
                match params.get("MetadataExtractionQuery") {
                    None => r.add(
                        format!("{at}.Parameters"),
                        "MetadataExtraction needs a MetadataExtractionQuery parameter",
                    ),
                    Some(query) => match extract::check_query(query) {
                        Ok(()) => out.metadata_query = Some((*query).to_owned()),
                        Err(e) => r.add(format!("{at}.Parameters"), format!("MetadataExtractionQuery: {e}")),
                    },
                }
            }
            "RecordDeAggregation" => match params.get("SubRecordType").copied() {
                Some("JSON") => out.deaggregation = Some(Deaggregation::Json),
                Some("DELIMITED") => match params.get("Delimiter").map(|d| BASE64.decode(d)) {
                    Some(Ok(delimiter)) if !delimiter.is_empty() => {
                        out.deaggregation = Some(Deaggregation::Delimited(delimiter))
                    }
                    Some(_) => r.add(format!("{at}.Parameters"), "Delimiter must be a non-empty base64-encoded string"),
                    None => r.add(format!("{at}.Parameters"), "Delimiter should be present for DELIMITED"),
                },
                _ => r.add(format!("{at}.Parameters"), "SubRecordType has to be one of JSON, DELIMITED"),
            },
            "Lambda" => {
                lambdas += 1;
                if lambdas > 1 {
                    r.add(format!("{at}.Type"), "Cannot have more than 1 Lambda processor.");
                    ok = false;
                } else {
                    out.lambda = check_lambda(&at, &params, r);
                    ok &= out.lambda.is_some();
                }
            }
            "CloudWatchLogProcessing" if !kinds.contains("Decompression") => {
                r.add(
                    format!("{at}.Type"),
                    "CloudWatchLogProcessingProcessor can only be enabled with DecompressionProcessor",
                );
                ok = false;
            }
            _ => {
                r.unsupported(format!("{at}.Type"), &format!("the {kind} processor"));
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// A `Lambda` processor's parameters, with AWS's messages.
fn check_lambda(at: &str, params: &BTreeMap<&str, &str>, r: &mut Report) -> Option<LambdaProcessor> {
    let path = format!("{at}.Parameters");
    let Some(arn) = params.get("LambdaArn") else {
        r.add(&path, "LambdaArn is required when Lambda processor is used.");
        return None;
    };
    let mut ok = true;
    let retries = match params.get("NumberOfRetries").map(|v| v.parse::<u32>()) {
        None => 3,
        Some(Ok(n)) if n <= 300 => n,
        Some(_) => {
            r.add(&path, "Number of retries for lambda must be between 0 and 300.");
            ok = false;
            0
        }
    };
    let default = LambdaProcessor::DEFAULT_BUFFER;
    let buffer = match (params.get("BufferSizeInMBs"), params.get("BufferIntervalInSeconds")) {
        (None, None) => default,
        (Some(size), Some(interval)) => {
            let size = size.parse::<f64>().ok().filter(|s| (0.2..=3.0).contains(s));
            let interval = interval.parse::<u64>().ok().filter(|i| *i <= 900);
            if size.is_none() {
                r.add(&path, "BufferSizeInMBs for lambda processor must be between 0.2 and 3.");
            }
            if interval.is_none() {
                r.add(&path, "BufferIntervalInSeconds for lambda processor must be between 0 and 900.");
            }
            let (size, interval) = (size?, interval?);
            BufferHints { size_bytes: (size * MIB as f64) as u64, interval: Duration::from_secs(interval) }
        }
        _ => {
            r.add(
                &path,
                "Both BufferSizeInMBs and BufferIntervalInSeconds are required to configure buffering for lambda processor.",
            );
            return None;
        }
    };
    ok.then(|| LambdaProcessor { arn: (*arn).to_owned(), retries, buffer })
}

/// The keys a `MetadataExtractionQuery` object literal such as
/// `{customer_id: .customer_id, "type": .event_type}` produces; `None` when
/// the query is not an object literal (its keys are known only at run time).
fn query_keys(query: &str) -> Option<Vec<String>> {
    let body = query.trim().strip_prefix('{')?.strip_suffix('}')?;
    let (mut keys, mut depth, mut start, mut in_string, mut escaped) = (Vec::new(), 0i32, 0, false, false);
    let mut entries = Vec::new();
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '(' | '[' | '{' if !in_string => depth += 1,
            ')' | ']' | '}' if !in_string => depth -= 1,
            ',' if !in_string && depth == 0 => {
                entries.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    entries.push(&body[start..]);
    for entry in entries.into_iter().map(str::trim).filter(|e| !e.is_empty()) {
        let key = entry.split_once(':').map_or(entry, |(k, _)| k).trim();
        let key = key.strip_prefix('.').unwrap_or(key).trim_matches('"');
        if key.is_empty() || key.starts_with(['$', '(']) {
            return None;
        }
        keys.push(key.to_owned());
    }
    Some(keys)
}

/// Dynamic partitioning's rules, with the messages AWS (and, where AWS's is
/// not known, CloudFormation) gives.
fn check_dynamic_partitioning(
    s3: &raw::ExtendedS3DestinationConfiguration,
    enabled: bool,
    processing: Option<&Processing>,
    prefix: &Template,
    r: &mut Report,
) {
    let config = s3.dynamic_partitioning_configuration.as_ref();
    if let Some(duration) = config.and_then(|c| c.retry_options.as_ref()).and_then(|o| o.duration_in_seconds) {
        r.range(&format!("{S3}.DynamicPartitioningConfiguration.RetryOptions.DurationInSeconds"), duration, 0, 7200);
    }
    let hints = s3.buffering_hints.as_ref();
    if enabled {
        if hints.and_then(|h| h.size_in_mbs).unwrap_or(5) < 64 {
            r.add(
                format!("{S3}.BufferingHints.SizeInMBs"),
                "BufferingHints.SizeInMBs must be at least 64 when Dynamic Partitioning is enabled.",
            );
        }
        if hints.and_then(|h| h.interval_in_seconds).unwrap_or(300) < 60 {
            r.add(
                format!("{S3}.BufferingHints.IntervalInSeconds"),
                "BufferingHints.IntervalInSeconds must be at least 60 seconds when Dynamic Partitioning is enabled.",
            );
        }
        if !prefix.has_partition_keys() {
            r.prefix_rule(
                format!("{S3}.Prefix"),
                "S3 Prefix should contain Dynamic Partitioning namespaces when Dynamic Partitioning is enabled",
            );
        }
        if prefix.has_lambda_keys() && processing.is_some_and(|p| p.lambda.is_none()) {
            r.add(
                format!("{S3}.ProcessingConfiguration"),
                "Lambda processor should be present when S3 Prefix has partitionKeyFromLambda namespace",
            );
        }
    } else if prefix.has_partition_keys() {
        r.add(
            format!("{S3}.Prefix"),
            "Dynamic Partitioning Namespaces can only be part of a prefix expression when Dynamic Partitioning is enabled.",
        );
    }
    if prefix.has_query_keys() && processing.is_some_and(|p| !p.has_metadata_extraction) {
        r.add(
            format!("{S3}.ProcessingConfiguration"),
            "MetadataExtraction processor should be present when S3 Prefix has partitionKeyFromQuery namespace",
        );
    }
    if let Some(keys) = processing.and_then(|p| p.metadata_query.as_deref()).and_then(query_keys) {
        let used = prefix.query_keys();
        if keys.iter().any(|k| !used.contains(&k.as_str())) {
            r.prefix_rule(
                format!("{S3}.ProcessingConfiguration"),
                "MetaDataExtraction JQ Query can't contain keys that are not present in the S3 Prefix expression",
            );
        }
    }
}

/// `Enabled` of an optional `{ "Enabled": bool, ... }` object; AWS treats an
/// absent flag as disabled.
fn enabled(config: Option<&Value>) -> bool {
    config.and_then(|c| c.get("Enabled")).and_then(Value::as_bool).unwrap_or(false)
}

/// `DataFormatConversionConfiguration`, with AWS's messages: `Some(None)`
/// when conversion is off, `None` when the configuration is invalid.
fn check_conversion(
    s3: &raw::ExtendedS3DestinationConfiguration,
    region: &str,
    r: &mut Report,
) -> Option<Option<ConversionSpec>> {
    let config = s3.data_format_conversion_configuration.as_ref();
    if !enabled(config) {
        return Some(None);
    }
    let config = config?;
    let path = format!("{S3}.DataFormatConversionConfiguration");
    if s3.compression_format.as_deref().unwrap_or("UNCOMPRESSED") != "UNCOMPRESSED" {
        r.add(
            format!("{S3}.CompressionFormat"),
            "The S3 destination's compression format must be set to UNCOMPRESSED when data format conversion is enabled. To enable compression within the converted output format, set the appropriate serialization option in the output format configuration.",
        );
    }
    if s3.buffering_hints.as_ref().and_then(|h| h.size_in_mbs).unwrap_or(128) < 64 {
        r.add(
            format!("{S3}.BufferingHints.SizeInMBs"),
            "must be at least 64 when DataFormatConversionConfiguration is enabled",
        );
    }
    let present = |v: &Value, key: &str| v.get(key).filter(|v| !v.is_null()).cloned();
    let schema = present(config, "SchemaConfiguration");
    let input = present(config, "InputFormatConfiguration");
    let output = present(config, "OutputFormatConfiguration");
    for (value, name) in
        [(&schema, "SchemaConfiguration"), (&input, "InputFormatConfiguration"), (&output, "OutputFormatConfiguration")]
    {
        if value.is_none() {
            r.add(&path, format!("{name} must not be null"));
        }
    }
    let schema = schema.map(|v| check_schema(&v, &format!("{path}.SchemaConfiguration"), region, r));
    let deserializer = input.and_then(|v| check_deserializer(&v, &format!("{path}.InputFormatConfiguration"), r));
    let parquet = output.and_then(|v| check_serializer(&v, &format!("{path}.OutputFormatConfiguration"), r));
    let (database, table, region, catalog_id, version_id, role_arn) = schema??;
    Some(Some(ConversionSpec {
        database,
        table,
        region,
        catalog_id,
        version_id,
        role_arn,
        deserializer: deserializer?,
        parquet: parquet?,
    }))
}

type SchemaParts = (String, String, String, Option<String>, String, Option<String>);

fn check_schema(schema: &Value, path: &str, region: &str, r: &mut Report) -> Option<SchemaParts> {
    let text = |key: &str| schema.get(key).and_then(Value::as_str).map(str::to_owned);
    let database = text("DatabaseName");
    let table = text("TableName");
    if database.is_none() {
        r.add(format!("{path}.DatabaseName"), "DatabaseName must not be null");
    }
    if table.is_none() {
        r.add(format!("{path}.TableName"), "TableName must not be null");
    }
    Some((
        database?,
        table?,
        text("Region").unwrap_or_else(|| region.to_owned()),
        text("CatalogId"),
        text("VersionId").unwrap_or_else(|| "LATEST".to_owned()),
        text("RoleARN"),
    ))
}

fn check_deserializer(input: &Value, path: &str, r: &mut Report) -> Option<Deserializer> {
    let Some(deserializer) = input.get("Deserializer").filter(|v| !v.is_null()) else {
        r.add(format!("{path}.Deserializer"), "Deserializer must not be null");
        return None;
    };
    let openx = deserializer.get("OpenXJsonSerDe").filter(|v| !v.is_null());
    let hive = deserializer.get("HiveJsonSerDe").filter(|v| !v.is_null());
    match (openx, hive) {
        (Some(_), Some(_)) => {
            r.add(format!("{path}.Deserializer"), "More than one deserializer specified. Only one may be chosen.");
            None
        }
        (None, None) => {
            r.add(format!("{path}.Deserializer"), "Deserializer must not be null");
            None
        }
        (Some(openx), None) => {
            let flag = |key: &str, default: bool| openx.get(key).and_then(Value::as_bool).unwrap_or(default);
            let mappings = openx
                .get("ColumnToJsonKeyMappings")
                .and_then(Value::as_object)
                .map(|m| m.iter().filter_map(|(k, v)| Some((k.to_ascii_lowercase(), v.as_str()?.to_owned()))).collect())
                .unwrap_or_default();
            Some(Deserializer::OpenX {
                case_insensitive: flag("CaseInsensitive", true),
                dots_to_underscores: flag("ConvertDotsInJsonKeysToUnderscores", false),
                mappings,
            })
        }
        (None, Some(hive)) => {
            let mut formats = Vec::new();
            for format in hive.get("TimestampFormats").and_then(Value::as_array).into_iter().flatten() {
                let text = format.as_str().unwrap_or_default();
                match TimestampFormat::parse(text) {
                    Some(parsed) => formats.push(parsed),
                    None => {
                        r.add(
                            format!("{path}.Deserializer.HiveJsonSerDe.TimestampFormats"),
                            format!("Invalid deserializer option(s): One or more SerDe options are invalid for org.apache.hcatalog.data.JsonSerDe: [Key: timestamp.formats Value: {text}]"),
                        );
                        return None;
                    }
                }
            }
            Some(Deserializer::Hive { timestamp_formats: formats })
        }
    }
}

fn check_serializer(output: &Value, path: &str, r: &mut Report) -> Option<ParquetOptions> {
    let Some(serializer) = output.get("Serializer").filter(|v| !v.is_null()) else {
        r.add(format!("{path}.Serializer"), "Serializer must not be null");
        return None;
    };
    let parquet = serializer.get("ParquetSerDe").filter(|v| !v.is_null());
    let orc = serializer.get("OrcSerDe").filter(|v| !v.is_null());
    let parquet = match (parquet, orc) {
        (Some(_), Some(_)) => {
            r.add(format!("{path}.Serializer"), "More than one serializer specified. Only one may be chosen.");
            return None;
        }
        (None, None) => {
            r.add(format!("{path}.Serializer"), "Serializer must not be null");
            return None;
        }
        (None, Some(_)) => {
            r.add(
                format!("{path}.Serializer.OrcSerDe"),
                "streamlab does not write ORC: the maintained Rust ORC crate (orc-rust) has only initial write support, without the row indexes, bloom filters and padding OrcSerDe configures, so its files would not be Firehose's; use ParquetSerDe to run this stream locally",
            );
            return None;
        }
        (Some(parquet), None) => parquet,
    };
    let p = format!("{path}.Serializer.ParquetSerDe");
    let mut out = ParquetOptions::default();
    let mut ok = true;
    let int = |key: &str| parquet.get(key).and_then(Value::as_i64);
    if let Some(n) = int("BlockSizeBytes") {
        ok &= r.range(&format!("{p}.BlockSizeBytes"), n, 64 * 1024 * 1024, i64::from(i32::MAX));
        out.block_size_bytes = n.max(0) as u64;
    }
    if let Some(n) = int("PageSizeBytes") {
        ok &= r.range(&format!("{p}.PageSizeBytes"), n, 64 * 1024, i64::from(i32::MAX));
        out.page_size_bytes = n.max(0) as u64;
    }
    if let Some(n) = int("MaxPaddingBytes") {
        ok &= r.range(&format!("{p}.MaxPaddingBytes"), n, 0, i64::from(i32::MAX));
        out.max_padding_bytes = n.max(0) as u64;
    }
    if let Some(b) = parquet.get("EnableDictionaryCompression").and_then(Value::as_bool) {
        out.dictionary = b;
    }
    if let Some(codec) = parquet.get("Compression").and_then(Value::as_str) {
        ok &= r.enumerated(&format!("{p}.Compression"), codec, &["UNCOMPRESSED", "GZIP", "SNAPPY"]);
        out.compression = match codec {
            "GZIP" => ParquetCodec::Gzip,
            "UNCOMPRESSED" => ParquetCodec::Uncompressed,
            _ => ParquetCodec::Snappy,
        };
    }
    if let Some(version) = parquet.get("WriterVersion").and_then(Value::as_str) {
        ok &= r.enumerated(&format!("{p}.WriterVersion"), version, &["V1", "V2"]);
        out.writer_v2 = version == "V2";
    }
    ok.then_some(out)
}

/// Parses both prefixes and checks Firehose's prefix rules.
fn check_prefixes(
    s3: &raw::ExtendedS3DestinationConfiguration,
    time_zone: Tz,
    r: &mut Report,
) -> Option<(Template, Template)> {
    let raw_prefix = s3.prefix.as_deref().unwrap_or("");
    let raw_error = s3.error_output_prefix.as_deref().unwrap_or("");
    r.string(&format!("{S3}.Prefix"), raw_prefix, 0, 1024, None);
    r.string(&format!("{S3}.ErrorOutputPrefix"), raw_error, 0, 1024, None);

    let parse = |field: &str, text: &str, r: &mut Report| match Template::parse(text) {
        Ok(t) => Some(t),
        Err(e) => {
            let path = format!("{S3}.{field}");
            let rule = match &e {
                PrefixError::Unclosed { .. }
                | PrefixError::Nested { .. }
                | PrefixError::MissingNamespace { .. }
                | PrefixError::EmptyKey { .. } => {
                    format!("Invalid expression usage: {text}.Must be of the form !{{<namespace>:<value>}} ({e})")
                }
                PrefixError::UnknownNamespace { namespace, .. } => {
                    format!("Namespace to the left of colon ({namespace}) is an invalid keyword! ({e})")
                }
                PrefixError::RefusedLetter { .. } => format!(
                    "Invalid conversion character used in the value of the expression in {field} ({e}; every other letter of Java's DateTimeFormatter is accepted, and text in single quotes is literal)"
                ),
                PrefixError::UnknownFirehoseValue { .. } | PrefixError::Pattern { .. } => {
                    r.add(path, e.to_string());
                    return None;
                }
            };
            r.prefix_rule(path, &rule);
            None
        }
    };
    let prefix = parse("Prefix", raw_prefix, r)?;
    let error = parse("ErrorOutputPrefix", raw_error, r)?;

    if prefix.has_expressions() && error.is_empty() {
        r.add(format!("{S3}.ErrorOutputPrefix"), ERROR_PREFIX_REQUIRED);
    }
    if error.has_expressions() && !error.has_error_output_type() {
        r.prefix_rule(
            format!("{S3}.ErrorOutputPrefix"),
            "ErrorOutputPrefix must contain at least one occurrence of !{firehose:error-output-type}",
        );
    }
    if prefix.has_error_output_type() {
        r.prefix_rule(
            format!("{S3}.Prefix"),
            "Prefix must not contain any occurrence of !{firehose:error-output-type}",
        );
    }
    if error.has_partition_keys() {
        r.prefix_rule(
            format!("{S3}.ErrorOutputPrefix"),
            "Dynamic Partitioning Namespaces can't be part of an error prefix expression",
        );
    }
    // Prefixes whose only variable parts are times are checked against the
    // 512-character limit now; others are checked per object.
    let full_prefix = with_default_time(prefix.clone());
    for (field, template, label) in
        [("Prefix", &full_prefix, "prefix"), ("ErrorOutputPrefix", &error, "ErrorOutputPrefix")]
    {
        if let Some(length) = template.fixed_evaluated_length(time_zone) {
            if length > MAX_EVALUATED_PREFIX {
                r.prefix_rule(
                    format!("{S3}.{field}"),
                    &format!(
                        "Length of evaluated {label} cannot be greater than 512 (it evaluates to {length} characters)"
                    ),
                );
            }
        }
    }
    Some((prefix, error))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn base() -> Value {
        json!({
            "DeliveryStreamName": "orders-to-s3",
            "DeliveryStreamType": "MSKAsSource",
            "MSKSourceConfiguration": {
                "MSKClusterARN": "arn:aws:kafka:us-east-1:123456789012:cluster/shop/0b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e-1",
                "TopicName": "orders",
                "AuthenticationConfiguration": {
                    "RoleARN": "arn:aws:iam::123456789012:role/firehose-msk",
                    "Connectivity": "PRIVATE"
                }
            },
            "ExtendedS3DestinationConfiguration": {
                "RoleARN": "arn:aws:iam::123456789012:role/firehose-s3",
                "BucketARN": "arn:aws:s3:::shop-events"
            }
        })
    }

    fn with(mut v: Value, path: &[&str], value: Value) -> Value {
        let mut at = &mut v;
        for key in &path[..path.len() - 1] {
            at = at.as_object_mut().unwrap().entry(*key).or_insert(json!({}));
        }
        at[path[path.len() - 1]] = value;
        v
    }

    fn messages(v: Value) -> Vec<String> {
        validate(&v).unwrap_err().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn minimal_spec_gets_firehose_defaults() {
        let spec = validate(&base()).unwrap();
        assert_eq!(spec.name, "orders-to-s3");
        assert_eq!(spec.topic, "orders");
        assert_eq!(spec.bucket, "shop-events");
        assert_eq!(spec.buffer, BufferHints::DEFAULT);
        assert_eq!(spec.compression, Compression::Uncompressed);
        assert_eq!(spec.extension, "");
        assert_eq!(spec.start, StartPosition::ActivationTime);
        assert!(!spec.append_newline);
        assert_eq!(spec.prefix, Template::timestamp("yyyy/MM/dd/HH/"));
    }

    #[test]
    fn prefix_without_timestamp_gets_default_appended_without_slash() {
        let spec = validate(&with(base(), &[S3, "Prefix"], json!("legacy"))).unwrap();
        assert_eq!(spec.prefix, Template::parse("legacy").unwrap().concat(Template::timestamp("yyyy/MM/dd/HH/")));
    }

    #[test]
    fn epoch_means_earliest_and_iso_strings_parse() {
        let spec = validate(&with(base(), &[MSK, "ReadFromTimestamp"], json!(0))).unwrap();
        assert_eq!(spec.start, StartPosition::Earliest);
        let spec = validate(&with(base(), &[MSK, "ReadFromTimestamp"], json!("2026-07-13T14:00:00Z"))).unwrap();
        assert_eq!(spec.start, StartPosition::Timestamp(1_783_951_200_000));
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let m = messages(with(base(), &[S3, "BufferingHint"], json!({})));
        assert_eq!(m.len(), 1);
        assert!(m[0].starts_with("ExtendedS3DestinationConfiguration.BufferingHint: unknown field `BufferingHint`, expected one of `RoleARN`"), "{m:?}");
    }

    #[test]
    fn collects_every_violation() {
        let v = with(base(), &[S3, "BufferingHints"], json!({"SizeInMBs": 500, "IntervalInSeconds": 901}));
        let v = with(v, &[S3, "CompressionFormat"], json!("SNAPPY"));
        let v = with(v, &["DeliveryStreamName"], json!("bad name!"));
        let m = messages(v);
        assert_eq!(
            m,
            [
                "DeliveryStreamName: Value at 'deliveryStreamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; got \"bad name!\"",
                "ExtendedS3DestinationConfiguration.BufferingHints.SizeInMBs: Value at 'extendedS3DestinationConfiguration.bufferingHints.sizeInMBs' failed to satisfy constraint: Member must have value less than or equal to 128; got 500",
                "ExtendedS3DestinationConfiguration.BufferingHints.IntervalInSeconds: Value at 'extendedS3DestinationConfiguration.bufferingHints.intervalInSeconds' failed to satisfy constraint: Member must have value less than or equal to 900; got 901",
                "ExtendedS3DestinationConfiguration.CompressionFormat: Value at 'extendedS3DestinationConfiguration.compressionFormat' failed to satisfy constraint: Member must satisfy enum value set: [ZIP, HADOOP_SNAPPY, Snappy, GZIP, UNCOMPRESSED]; got \"SNAPPY\" (case-sensitive)",
            ]
        );
    }

    #[test]
    fn expressions_require_error_prefix_with_aws_message() {
        let m = messages(with(base(), &[S3, "Prefix"], json!("year=!{timestamp:yyyy}/")));
        assert_eq!(m, [format!("{S3}.ErrorOutputPrefix: {ERROR_PREFIX_REQUIRED}")]);
    }

    #[test]
    fn error_prefix_with_expressions_needs_error_output_type() {
        let v = with(base(), &[S3, "Prefix"], json!("year=!{timestamp:yyyy}/"));
        let m = messages(with(v, &[S3, "ErrorOutputPrefix"], json!("errors/!{timestamp:yyyy}/")));
        assert_eq!(
            m,
            [format!(
                "{S3}.ErrorOutputPrefix: {PREFIX_RULE}ErrorOutputPrefix must contain at least one occurrence of !{{firehose:error-output-type}}"
            )]
        );
    }

    #[test]
    fn one_hint_without_the_other_is_rejected() {
        let m = messages(with(base(), &[S3, "BufferingHints"], json!({"SizeInMBs": 64})));
        assert_eq!(m.len(), 1);
        assert!(m[0].contains("must be given together"), "{m:?}");
    }

    #[test]
    fn two_destinations_are_rejected_with_aws_message() {
        let m = messages(with(base(), &["S3DestinationConfiguration"], json!({})));
        assert!(
            m.iter().any(|s| s.ends_with("Exactly one destination configuration is supported for a Firehose")),
            "{m:?}"
        );
    }

    #[test]
    fn member_paths_are_aws_s() {
        assert_eq!(
            aws_member("ExtendedS3DestinationConfiguration.BufferingHints.SizeInMBs"),
            "extendedS3DestinationConfiguration.bufferingHints.sizeInMBs"
        );
        assert_eq!(
            aws_member("ExtendedS3DestinationConfiguration.ProcessingConfiguration.Processors[0].Parameters[1].ParameterValue"),
            "extendedS3DestinationConfiguration.processingConfiguration.processors.1.member.parameters.2.member.parameterValue"
        );
        assert_eq!(aws_member("MSKSourceConfiguration.TopicName"), "mSKSourceConfiguration.topicName");
    }

    #[test]
    fn query_keys_come_from_object_literals() {
        assert_eq!(
            query_keys("{customer_id: .customer_id, \"type\": .event_type}"),
            Some(vec!["customer_id".into(), "type".into()])
        );
        assert_eq!(query_keys("{a: (.x | split(\",\")[0]), b: .b}"), Some(vec!["a".into(), "b".into()]));
        assert_eq!(query_keys("{customer_id}"), Some(vec!["customer_id".into()]));
        assert_eq!(query_keys(".keys"), None);
        assert_eq!(query_keys("{(.k): .v}"), None);
    }

    #[test]
    fn time_zones_follow_aws_s_list() {
        for (zone, ok) in [
            ("Asia/Calcutta", true),
            ("Europe/Kiev", true),
            ("UTC", true),
            ("America/New_York", true),
            ("Asia/Kolkata", false),
            ("Europe/Kyiv", false),
            ("EST", false),
        ] {
            let result = validate(&with(base(), &[S3, "CustomTimeZone"], json!(zone)));
            assert_eq!(result.is_ok(), ok, "{zone}: {result:?}");
            if !ok {
                let m = messages(with(base(), &[S3, "CustomTimeZone"], json!(zone)));
                assert!(m[0].contains("Provided custom time zone is not supported. Custom time zones are limited to UTC and non-3-letter IANA time zones."), "{m:?}");
            }
        }
    }
}
