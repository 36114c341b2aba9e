//! Every check AWS makes on the request, plus the ones streamlab adds for
//! features it does not emulate yet, collected rather than stopping at the
//! first so a user fixes a spec in one pass.

use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use std::collections::BTreeMap;

use aws_sdk_firehose::types::{
    CompressionFormat, Connectivity, DeliveryStreamType, ProcessorParameterName, ProcessorType,
};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::DateTime;
use chrono_tz::Tz;
use regex::Regex;
use serde_json::Value;

use super::raw::{self, CreateDeliveryStream};
use super::{BufferHints, Compression, Deaggregation, StartPosition, StreamSpec, MIB};
use crate::delivery::extract;
use crate::prefix::{Template, MAX_EVALUATED_PREFIX};

/// One problem with a spec: where, and what rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON path of the offending field, e.g.
    /// `ExtendedS3DestinationConfiguration.BufferingHints.SizeInMBs`.
    pub path: String,
    /// The rule, stated so the fix is obvious; AWS's own wording where known.
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

const S3: &str = "ExtendedS3DestinationConfiguration";
const MSK: &str = "MSKSourceConfiguration";

static NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9_.-]+$").unwrap());
static TOPIC: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9\._\-]+$").unwrap());
static BUCKET_ARN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^arn:.*:s3:::((?-u:[\w\.\-]){1,255})$").unwrap());
static ROLE_ARN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^arn:.*:iam::\d{12}:role/[a-zA-Z_0-9+=,.@\-_/]+$").unwrap());
static MSK_ARN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^arn:.*:kafka:.*$").unwrap());
static FILE_EXTENSION: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^$|^\.[0-9a-z!\-_.*'()]+$").unwrap());
static TIME_ZONE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^$|^[a-zA-Z/_]+$").unwrap());

#[derive(Default)]
struct Report(Vec<Violation>);

impl Report {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Violation { path: path.into(), message: message.into() });
    }

    fn unsupported(&mut self, path: impl Into<String>, what: &str) {
        self.add(path, format!("streamlab does not emulate {what} yet; remove it to run this stream locally"));
    }

    fn required<'a, T>(&mut self, path: &str, value: &'a Option<T>) -> Option<&'a T> {
        if value.is_none() {
            self.add(path, "is required");
        }
        value.as_ref()
    }

    fn string(&mut self, path: &str, value: &str, min: usize, max: usize, pattern: Option<(&Regex, &str)>) {
        let len = value.chars().count();
        if len < min || len > max {
            self.add(path, format!("length must be between {min} and {max} characters; got {len}"));
        }
        if let Some((re, shown)) = pattern {
            if !re.is_match(value) {
                self.add(path, format!("must match the pattern {shown}; got {value:?}"));
            }
        }
    }

    /// A required IAM role ARN (model: 1-512 characters, IAM role pattern).
    fn role_arn(&mut self, path: &str, value: &Option<String>) {
        if let Some(role) = self.required(path, value) {
            self.string(path, role, 1, 512, Some((&ROLE_ARN, r"arn:.*:iam::\d{12}:role/[a-zA-Z_0-9+=,.@\-_/]+")));
        }
    }

    fn one_of(&mut self, path: &str, value: &str, allowed: &[&str]) -> bool {
        let ok = allowed.contains(&value);
        if !ok {
            self.add(path, format!("must be one of {} (case-sensitive); got {value:?}", allowed.join(", ")));
        }
        ok
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

    match req.delivery_stream_type.as_deref() {
        None => r.add(
            "DeliveryStreamType",
            "is required by streamlab: AWS defaults to DirectPut, and streamlab emulates MSKAsSource streams; set it to \"MSKAsSource\"",
        ),
        Some(kind) => {
            if r.one_of("DeliveryStreamType", kind, DeliveryStreamType::values()) && kind != "MSKAsSource" {
                r.unsupported("DeliveryStreamType", &format!("{kind} sources (only MSKAsSource)"));
            }
        }
    }
    for other in req.other_sources() {
        r.add(other, format!("cannot be combined with {MSK}; a stream has exactly one source"));
    }

    let source = r.required(MSK, &req.msk_source_configuration).map(|msk| check_source(msk, r));

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
    let destination = req.extended_s3_destination_configuration.as_ref().map(|s3| check_destination(s3, r));

    let (Some(name), Some(Some((topic, start))), Some(Some(dest))) = (name, source, destination) else {
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
        source_sha256: String::new(),
        destination: Value::Null,
        destination_sha256: String::new(),
    })
}

fn check_source(msk: &raw::MskSourceConfiguration, r: &mut Report) -> Option<(String, StartPosition)> {
    if let Some(arn) = r.required(&format!("{MSK}.MSKClusterARN"), &msk.msk_cluster_arn) {
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
            r.one_of(&format!("{auth_path}.Connectivity"), connectivity, Connectivity::values());
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
    Some((topic?.clone(), start?))
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
}

fn check_destination(s3: &raw::ExtendedS3DestinationConfiguration, r: &mut Report) -> Option<Destination> {
    r.role_arn(&format!("{S3}.RoleARN"), &s3.role_arn);
    let bucket = r.required(&format!("{S3}.BucketARN"), &s3.bucket_arn).and_then(|arn| {
        r.string(&format!("{S3}.BucketARN"), arn, 1, 2048, Some((&BUCKET_ARN, r"arn:.*:s3:::[\w\.\-]{1,255}")));
        BUCKET_ARN.captures(arn).map(|c| c[1].to_owned())
    });

    let buffer = check_hints(s3.buffering_hints.as_ref(), r);
    let compression = check_compression(s3.compression_format.as_deref(), r);

    let extension = s3.file_extension.clone().unwrap_or_default();
    r.string(&format!("{S3}.FileExtension"), &extension, 0, 128, Some((&FILE_EXTENSION, r"^$|\.[0-9a-z!\-_.*'()]+")));

    let zone = s3.custom_time_zone.clone().unwrap_or_default();
    r.string(&format!("{S3}.CustomTimeZone"), &zone, 0, 50, Some((&TIME_ZONE, "^$|[a-zA-Z/_]+")));
    let time_zone = if zone.is_empty() {
        Some(Tz::UTC)
    } else {
        let parsed = zone.parse::<Tz>().ok();
        if parsed.is_none() {
            r.add(
                format!("{S3}.CustomTimeZone"),
                format!("{zone:?} is not an IANA time zone name such as \"UTC\" or \"Europe/Berlin\""),
            );
        }
        parsed
    };

    let processing = check_processing(s3.processing_configuration.as_ref(), r);
    let parsed_prefix = Template::parse(s3.prefix.as_deref().unwrap_or("")).ok();
    let dynamic_partitioning = check_dynamic_partitioning(s3, processing.as_ref(), parsed_prefix.as_ref(), r);
    check_conversion(s3, r);
    if let Some(mode) = &s3.s3_backup_mode {
        if r.one_of(&format!("{S3}.S3BackupMode"), mode, &["Disabled", "Enabled"]) && mode == "Enabled" {
            r.unsupported(format!("{S3}.S3BackupMode"), "source record backup");
        }
    }

    let (prefix, error_prefix) = check_prefixes(s3, r)?;
    let processing = processing?;
    Some(Destination {
        bucket: bucket?,
        prefix,
        error_prefix,
        buffer: buffer?,
        compression: compression?,
        extension: if extension.is_empty() { compression?.extension().to_owned() } else { extension },
        time_zone: time_zone?,
        append_newline: processing.append_newline,
        deaggregation: processing.deaggregation,
        metadata_query: processing.metadata_query,
        dynamic_partitioning,
    })
}

/// `Enabled` of an optional `{ "Enabled": bool, ... }` object; AWS treats an
/// absent flag as disabled.
fn enabled(config: Option<&Value>) -> bool {
    config.and_then(|c| c.get("Enabled")).and_then(Value::as_bool).unwrap_or(false)
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
    if !(1..=128).contains(&size) {
        r.add(format!("{path}.SizeInMBs"), format!("must be between 1 and 128; got {size}"));
        ok = false;
    }
    let interval = hints.interval_in_seconds.unwrap_or(300);
    if !(0..=900).contains(&interval) {
        r.add(format!("{path}.IntervalInSeconds"), format!("must be between 0 and 900; got {interval}"));
        ok = false;
    }
    ok.then(|| BufferHints { size_bytes: size as u64 * MIB, interval: Duration::from_secs(interval as u64) })
}

fn check_compression(format: Option<&str>, r: &mut Report) -> Option<Compression> {
    let path = format!("{S3}.CompressionFormat");
    let format = format.unwrap_or("UNCOMPRESSED");
    if !r.one_of(&path, format, CompressionFormat::values()) {
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
}

fn check_processing(config: Option<&raw::ProcessingConfiguration>, r: &mut Report) -> Option<Processing> {
    let Some(config) = config else { return Some(Processing::default()) };
    let path = format!("{S3}.ProcessingConfiguration");
    let enabled = config.enabled == Some(true);
    let mut out = Processing::default();
    let mut ok = true;
    for (i, processor) in config.processors.iter().flatten().enumerate() {
        let at = format!("{path}.Processors[{i}]");
        let Some(kind) = r.required(&format!("{at}.Type"), &processor.kind) else {
            ok = false;
            continue;
        };
        if !r.one_of(&format!("{at}.Type"), kind, ProcessorType::values()) {
            ok = false;
            continue;
        }
        let mut params: BTreeMap<&str, &str> = BTreeMap::new();
        for (j, parameter) in processor.parameters.iter().flatten().enumerate() {
            let p = format!("{at}.Parameters[{j}]");
            let name = r.required(&format!("{p}.ParameterName"), &parameter.parameter_name);
            let value = r.required(&format!("{p}.ParameterValue"), &parameter.parameter_value);
            if let Some(name) = name {
                if !r.one_of(&format!("{p}.ParameterName"), name, ProcessorParameterName::values()) {
                    ok = false;
                }
                if let Some(value) = value {
                    r.string(&format!("{p}.ParameterValue"), value, 1, 5120, None);
                    params.insert(name, value);
                }
            }
        }
        if !enabled {
            continue;
        }
        match kind.as_str() {
            "AppendDelimiterToRecord" => out.append_newline = true,
            "MetadataExtraction" => {
                out.has_metadata_extraction = true;
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
                match params.get("JsonParsingEngine") {
                    Some(&"JQ-1.6") => {}
                    other => r.add(
                        format!("{at}.Parameters"),
                        format!(
                            "MetadataExtraction needs JsonParsingEngine \"JQ-1.6\"; got {}",
                            other.map_or("nothing".into(), |v| format!("{v:?}"))
                        ),
                    ),
                }
            }
            "RecordDeAggregation" => match params.get("SubRecordType").copied() {
                Some("JSON") => out.deaggregation = Some(Deaggregation::Json),
                Some("DELIMITED") => match params.get("Delimiter").map(|d| BASE64.decode(d)) {
                    Some(Ok(delimiter)) if !delimiter.is_empty() => {
                        out.deaggregation = Some(Deaggregation::Delimited(delimiter))
                    }
                    Some(_) => r.add(format!("{at}.Parameters"), "Delimiter must be a non-empty base64-encoded string"),
                    None => r.add(
                        format!("{at}.Parameters"),
                        "SubRecordType DELIMITED needs a Delimiter parameter (base64-encoded)",
                    ),
                },
                other => r.add(
                    format!("{at}.Parameters"),
                    format!(
                        "RecordDeAggregation needs SubRecordType JSON or DELIMITED; got {}",
                        other.map_or("nothing".into(), |v| format!("{v:?}"))
                    ),
                ),
            },
            _ => {
                r.unsupported(format!("{at}.Type"), &format!("the {kind} processor"));
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// Dynamic partitioning's and format conversion's own rules, with the
/// messages CloudFormation/CDK use.
fn check_dynamic_partitioning(
    s3: &raw::ExtendedS3DestinationConfiguration,
    processing: Option<&Processing>,
    prefix: Option<&Template>,
    r: &mut Report,
) -> bool {
    let config = s3.dynamic_partitioning_configuration.as_ref();
    let enabled = config.and_then(|c| c.enabled).unwrap_or(false);
    if let Some(duration) = config.and_then(|c| c.retry_options.as_ref()).and_then(|o| o.duration_in_seconds) {
        if !(0..=7200).contains(&duration) {
            r.add(
                format!("{S3}.DynamicPartitioningConfiguration.RetryOptions.DurationInSeconds"),
                format!("must be between 0 and 7200; got {duration}"),
            );
        }
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
        if prefix.is_some_and(|p| !p.has_partition_keys()) {
            r.add(
                format!("{S3}.Prefix"),
                "S3 Prefix should contain Dynamic Partitioning namespaces when Dynamic Partitioning is enabled",
            );
        }
        if prefix.is_some_and(Template::has_lambda_keys) {
            r.unsupported(format!("{S3}.Prefix"), "partitionKeyFromLambda (Lambda processors)");
        }
    } else if prefix.is_some_and(|p| p.has_partition_keys()) {
        r.add(
            format!("{S3}.Prefix"),
            "Dynamic Partitioning Namespaces can only be part of a prefix expression when Dynamic Partitioning is enabled.",
        );
    }
    if prefix.is_some_and(Template::has_query_keys) && processing.is_some_and(|p| !p.has_metadata_extraction) {
        r.add(
            format!("{S3}.ProcessingConfiguration"),
            "MetadataExtraction processor should be present when S3 Prefix has partitionKeyFromQuery namespace",
        );
    }
    enabled
}

fn check_conversion(s3: &raw::ExtendedS3DestinationConfiguration, r: &mut Report) {
    if !enabled(s3.data_format_conversion_configuration.as_ref()) {
        return;
    }
    let path = format!("{S3}.DataFormatConversionConfiguration");
    if s3.compression_format.as_deref().unwrap_or("UNCOMPRESSED") != "UNCOMPRESSED" {
        r.add(
            format!("{S3}.CompressionFormat"),
            "must be UNCOMPRESSED when DataFormatConversionConfiguration is enabled (the serializer compresses)",
        );
    }
    if s3.buffering_hints.as_ref().and_then(|h| h.size_in_mbs).unwrap_or(128) < 64 {
        r.add(
            format!("{S3}.BufferingHints.SizeInMBs"),
            "must be at least 64 when DataFormatConversionConfiguration is enabled",
        );
    }
    r.unsupported(path, "record format conversion");
}

fn check_prefixes(s3: &raw::ExtendedS3DestinationConfiguration, r: &mut Report) -> Option<(Template, Template)> {
    let raw_prefix = s3.prefix.as_deref().unwrap_or("");
    let raw_error = s3.error_output_prefix.as_deref().unwrap_or("");
    r.string(&format!("{S3}.Prefix"), raw_prefix, 0, 1024, None);
    r.string(&format!("{S3}.ErrorOutputPrefix"), raw_error, 0, 1024, None);

    let parse = |path: &str, text: &str, r: &mut Report| match Template::parse(text) {
        Ok(t) => Some(t),
        Err(e) => {
            r.add(path, e.to_string());
            None
        }
    };
    let prefix = parse(&format!("{S3}.Prefix"), raw_prefix, r)?;
    let error = parse(&format!("{S3}.ErrorOutputPrefix"), raw_error, r)?;

    if prefix.has_expressions() && error.is_empty() {
        r.add(format!("{S3}.ErrorOutputPrefix"), ERROR_PREFIX_REQUIRED);
    }
    if error.has_expressions() && !error.has_error_output_type() {
        r.add(
            format!("{S3}.ErrorOutputPrefix"),
            "must contain !{firehose:error-output-type} when it contains expressions",
        );
    }
    if prefix.has_error_output_type() {
        r.add(format!("{S3}.Prefix"), "!{firehose:error-output-type} is allowed only in ErrorOutputPrefix");
    }
    if error.has_partition_keys() {
        r.add(
            format!("{S3}.ErrorOutputPrefix"),
            "partitionKeyFromQuery and partitionKeyFromLambda cannot be used in ErrorOutputPrefix",
        );
    }
    // Prefixes without random or per-record parts evaluate to a fixed length
    // (timestamps are fixed-width); check the 512-character limit now.
    for (field, template) in [("Prefix", &prefix), ("ErrorOutputPrefix", &error)] {
        if let Some(length) = template.fixed_evaluated_length() {
            if length > MAX_EVALUATED_PREFIX {
                r.add(
                    format!("{S3}.{field}"),
                    format!("evaluates to {length} characters; Firehose allows at most {MAX_EVALUATED_PREFIX}"),
                );
            }
        }
    }

    let default_time = || Template::timestamp("yyyy/MM/dd/HH/");
    let prefix =
        if prefix.has_timestamp() || prefix.has_partition_keys() { prefix } else { prefix.concat(default_time()) };
    let error = if error.is_empty() {
        // `<Prefix><error-output-type>/yyyy/MM/dd/HH/`.
        Template::parse(&format!("{raw_prefix}!{{firehose:error-output-type}}/")).ok()?.concat(default_time())
    } else {
        error
    };
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
                "DeliveryStreamName: must match the pattern [a-zA-Z0-9_.-]+; got \"bad name!\"",
                "ExtendedS3DestinationConfiguration.BufferingHints.SizeInMBs: must be between 1 and 128; got 500",
                "ExtendedS3DestinationConfiguration.BufferingHints.IntervalInSeconds: must be between 0 and 900; got 901",
                "ExtendedS3DestinationConfiguration.CompressionFormat: must be one of GZIP, HADOOP_SNAPPY, Snappy, UNCOMPRESSED, ZIP (case-sensitive); got \"SNAPPY\"",
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
                "{S3}.ErrorOutputPrefix: must contain !{{firehose:error-output-type}} when it contains expressions"
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
}
