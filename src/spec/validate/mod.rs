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
use sha2::Digest as _;

use super::raw::{self, CreateDeliveryStream};
use super::{
    BufferHints, Compression, Deaggregation, LambdaProcessor, SourceKind, StartPosition, StreamSpec, AWS_TIME_ZONES,
    MIB,
};
use crate::convert::{ConversionSpec, Deserializer, ParquetCodec, ParquetOptions, TimestampFormat};
use crate::extract;
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

mod conversion;
mod names;
mod prefixes;
mod processing;
#[cfg(test)]
mod tests;

use conversion::*;
use prefixes::*;
use processing::*;

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
const DIRECT_PUT: &str = "DirectPutSourceConfiguration";

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
const KEY_TYPES: &[&str] = &["AWS_OWNED_CMK", "CUSTOMER_MANAGED_CMK"];

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

/// What checking found: violations refuse the spec; `unemulated` are
/// parts AWS accepts that streamlab cannot run, so the spec is valid
/// (`validate` warns) and starting it is refused ([`StreamSpec::unemulated`]).
#[derive(Default)]
struct Report {
    violations: Vec<Violation>,
    unemulated: Vec<Violation>,
}

impl Report {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.violations.push(Violation { path: path.into(), message: message.into() });
    }

    /// A field AWS accepts whose behaviour streamlab does not emulate.
    fn unemulated(&mut self, path: impl Into<String>, what: &str) {
        self.unemulated.push(Violation {
            path: path.into(),
            message: format!("streamlab does not emulate {what}; AWS accepts it, but a local stack or `deliver` refuses to run this stream"),
        });
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
        Some(mut spec) if report.violations.is_empty() => {
            spec.unemulated = report.unemulated;
            // serde_json's map keeps keys sorted, so these serializations are
            // canonical: formatting and key order are not changes.
            let digest = |parts: &[&Value]| {
                let canonical = serde_json::to_vec(parts).expect("a parsed value serializes");
                format!("{:x}", sha2::Sha256::digest(&canonical))
            };
            spec.source_sha256 = digest(&[&value["DeliveryStreamType"], &value["MSKSourceConfiguration"]]);
            spec.destination_sha256 = digest(&[&value["ExtendedS3DestinationConfiguration"]]);
            spec.destination = value["ExtendedS3DestinationConfiguration"].clone();
            spec.request = value.clone();
            Ok(spec)
        }
        _ => Err(report.violations),
    }
}

/// Checks a `DeliveryStreamEncryptionConfigurationInput` on its own, as
/// `StartDeliveryStreamEncryption` gives it.
pub fn validate_stream_encryption(input: &Value) -> Result<(), Vec<Violation>> {
    let mut report = Report::default();
    check_stream_encryption(input, "DeliveryStreamEncryptionConfigurationInput", &mut report);
    if report.violations.is_empty() {
        Ok(())
    } else {
        Err(report.violations)
    }
}

fn check(req: &CreateDeliveryStream, r: &mut Report) -> Option<StreamSpec> {
    let name = r.required("DeliveryStreamName", &req.delivery_stream_name);
    if let Some(name) = name {
        r.string("DeliveryStreamName", name, 1, 64, Some((&NAME, "[a-zA-Z0-9_.-]+")));
    }

    let kind = match req.delivery_stream_type.as_deref() {
        // AWS's default type.
        None => Some(SourceKind::DirectPut),
        Some(kind) => match kind {
            _ if !r.enumerated("DeliveryStreamType", kind, STREAM_TYPES) => None,
            "MSKAsSource" => Some(SourceKind::Msk),
            "DirectPut" => Some(SourceKind::DirectPut),
            other => {
                r.unsupported("DeliveryStreamType", &format!("{other} sources (only MSKAsSource and DirectPut)"));
                None
            }
        },
    };
    let msk_stream = kind == Some(SourceKind::Msk);
    let direct_put = kind == Some(SourceKind::DirectPut);
    for other in req.other_sources() {
        if !(direct_put && other == DIRECT_PUT) {
            let this = if direct_put { "a DirectPut stream" } else { MSK };
            r.add(other, format!("cannot be combined with {this}; a stream has exactly one source"));
        }
    }
    if direct_put && req.msk_source_configuration.is_some() {
        r.add(
            MSK,
            "is only for DeliveryStreamType MSKAsSource; remove it, or set DeliveryStreamType to \"MSKAsSource\" to read the topic",
        );
    }
    if msk_stream && req.msk_source_configuration.is_none() {
        r.add(MSK, "MSKSourceConfig is mandatory for MSK as Source stream type.");
    }
    let source = match kind {
        Some(SourceKind::Msk) => req.msk_source_configuration.as_ref().and_then(|msk| check_source(msk, r)),
        Some(SourceKind::DirectPut) => {
            if let Some(config) = &req.direct_put_source_configuration {
                check_direct_put(config, r);
            }
            let name = name.map_or_else(String::new, |n| crate::spec::direct_put_topic(n));
            Some((name, StartPosition::ActivationTime, String::new()))
        }
        None => None,
    };
    if let Some(encryption) = &req.delivery_stream_encryption_configuration_input {
        if msk_stream {
            r.add(
                "DeliveryStreamEncryptionConfigurationInput",
                "Server side encryption from firehose is only allowed for direct put delivery streams and database as a source delivery streams",
            );
        } else if direct_put {
            check_stream_encryption(encryption, "DeliveryStreamEncryptionConfigurationInput", r);
        }
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

    let (Some(name), Some(kind), Some((topic, start, msk_cluster_arn)), Some(Some(dest))) =
        (name, kind, source, destination)
    else {
        return None;
    };
    Some(StreamSpec {
        name: name.clone(),
        source: kind,
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
        metadata_query: dest.metadata_query.map(crate::extract::MetadataExtractor::new),
        dynamic_partitioning: dest.dynamic_partitioning,
        lambda: dest.lambda,
        conversion: dest.conversion,
        msk_cluster_arn,
        sse_kms_key_id: dest.sse_kms_key_id,
        source_sha256: String::new(),
        destination: Value::Null,
        destination_sha256: String::new(),
        request: Value::Null,
        unemulated: Vec::new(),
    })
}

/// `DirectPutSourceConfiguration`: its one field, `ThroughputHintInMBs`
/// (1-100; a hint AWS sizes the stream by, nothing to emulate).
fn check_direct_put(config: &Value, r: &mut Report) {
    let path = format!("{DIRECT_PUT}.ThroughputHintInMBs");
    match config.get("ThroughputHintInMBs") {
        None | Some(Value::Null) => r.constraint(&path, "Member must not be null", None),
        Some(Value::Number(n)) if n.as_u64().is_some_and(|v| (1..=100).contains(&v)) => {}
        Some(other) => r.constraint(&path, "Member must have value between 1 and 100", Some(other.to_string())),
    }
    if let Some(map) = config.as_object() {
        for key in map.keys().filter(|k| *k != "ThroughputHintInMBs") {
            r.add(
                format!("{DIRECT_PUT}.{key}"),
                "is not a field of DirectPutSourceConfiguration (its one field is ThroughputHintInMBs)",
            );
        }
    }
}

/// Server-side encryption of a DirectPut stream: `KeyType` AWS_OWNED_CMK,
/// or CUSTOMER_MANAGED_CMK with the key's `KeyARN`.
fn check_stream_encryption(input: &Value, path: &str, r: &mut Report) {
    let Some(map) = input.as_object() else {
        r.add(path, "must be an object with KeyType (and KeyARN for CUSTOMER_MANAGED_CMK)");
        return;
    };
    for key in map.keys().filter(|k| !["KeyType", "KeyARN"].contains(&k.as_str())) {
        r.add(
            format!("{path}.{key}"),
            "is not a field of DeliveryStreamEncryptionConfigurationInput (KeyType, KeyARN)",
        );
    }
    let key_arn = map.get("KeyARN").and_then(Value::as_str);
    match map.get("KeyType").and_then(Value::as_str) {
        None => r.constraint(&format!("{path}.KeyType"), "Member must not be null", None),
        Some(kind) if !r.enumerated(&format!("{path}.KeyType"), kind, KEY_TYPES) => {}
        Some("CUSTOMER_MANAGED_CMK") => match key_arn {
            None => r.add(format!("{path}.KeyARN"), "is required when KeyType is CUSTOMER_MANAGED_CMK: give the ARN of the KMS key (arn:aws:kms:REGION:ACCOUNT:key/ID)"),
            Some(arn) => {
                r.string(&format!("{path}.KeyARN"), arn, 1, 512, Some((&KMS_ARN, "arn:.*:kms:.*")));
            }
        },
        Some(_) => {
            if key_arn.is_some() {
                r.add(format!("{path}.KeyARN"), "must not be given with KeyType AWS_OWNED_CMK (AWS's own key); remove it, or set KeyType to CUSTOMER_MANAGED_CMK to use that key");
            }
        }
    }
}

fn check_source(msk: &raw::MskSourceConfiguration, r: &mut Report) -> Option<(String, StartPosition, String)> {
    let arn = r.required(&format!("{MSK}.MSKClusterARN"), &msk.msk_cluster_arn);
    if let Some(arn) = arn {
        r.string(&format!("{MSK}.MSKClusterARN"), arn, 1, 512, Some((&MSK_ARN, "arn:.*:kafka:.*")));
    }
    let topic = r.required(&format!("{MSK}.TopicName"), &msk.topic_name);
    if let Some(topic) = topic {
        if r.string(&format!("{MSK}.TopicName"), topic, 1, 255, Some((&TOPIC, r"[a-zA-Z0-9\._\-]+"))) {
            if let Some(problem) = names::topic_problem(topic) {
                r.add(format!("{MSK}.TopicName"), problem);
            }
        }
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
        let bucket = BUCKET_ARN.captures(arn).map(|c| c[1].to_owned())?;
        if let Some(problem) = names::bucket_name_problem(&bucket) {
            r.add(format!("{S3}.BucketARN"), format!("bucket name {bucket:?}: {problem}"));
            return None;
        }
        Some(bucket)
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
            .then_uncounted(Template::timestamp("yyyy/MM/dd/HH/"))
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
        prefix.then_uncounted(Template::timestamp("yyyy/MM/dd/HH/"))
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
