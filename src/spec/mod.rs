//! The `CreateDeliveryStream` request, the single source of truth for a
//! stream.
//!
//! The very JSON file that `aws firehose create-delivery-stream
//! --cli-input-json file://x.json` deploys is parsed here ([`raw`]), checked
//! once against the AWS model and Firehose's semantic rules ([`validate`]) and
//! turned into a [`StreamSpec`] that cannot be invalid. Local-only settings
//! (broker address, S3 endpoint, clock speed) never go in this file.

pub mod raw;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;

use crate::prefix::Template;
pub use validate::{validate, validate_stream_encryption, Violation};

/// `CustomTimeZone` values Firehose accepts (see `aws_time_zones.txt`).
pub static AWS_TIME_ZONES: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    include_str!("aws_time_zones.txt").lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
});

/// A validated delivery stream: everything delivery needs, already parsed.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    name: String,
    /// What the stream reads: an MSK topic, or records put through the
    /// Firehose API.
    source: SourceKind,
    /// The topic the delivery reads: `MSKSourceConfiguration.TopicName`, or
    /// for a DirectPut stream the stack's internal topic holding what was
    /// put ([`direct_put_topic`]).
    topic: String,
    bucket: String,
    /// The prefix to evaluate for each object, with Firehose's default time
    /// prefix already appended where AWS appends it.
    prefix: Template,
    /// The error prefix to evaluate for records that cannot be delivered.
    error_prefix: Template,
    buffer: BufferHints,
    compression: Compression,
    /// Extension appended to every object key (not to error objects).
    extension: String,
    time_zone: Tz,
    start: StartPosition,
    /// `AppendDelimiterToRecord`: a `\n` after every record.
    append_newline: bool,
    /// `RecordDeAggregation`: how one Kafka record splits into records.
    deaggregation: Option<Deaggregation>,
    /// `MetadataExtraction`'s jq query, checked at load (its plain-path
    /// form read once; jaq's compiled filter is per thread, as jaq's
    /// filters are not `Send`).
    metadata_query: Option<crate::extract::MetadataExtractor>,
    /// `DynamicPartitioningConfiguration` with `Enabled: true`.
    dynamic_partitioning: bool,
    /// A `Lambda` processor: records go through the function before routing.
    lambda: Option<LambdaProcessor>,
    /// `DataFormatConversionConfiguration` enabled: objects are Parquet.
    conversion: Option<crate::convert::ConversionSpec>,
    /// `MSKSourceConfiguration.MSKClusterARN` (the `sourceMSKArn` of Lambda
    /// events).
    msk_cluster_arn: String,
    /// `EncryptionConfiguration.KMSEncryptionConfig.AWSKMSKeyARN`: objects are
    /// written with SSE-KMS under this key.
    sse_kms_key_id: Option<String>,
    /// SHA-256 of `DeliveryStreamType` and `MSKSourceConfiguration` in
    /// canonical form (keys sorted, no whitespace): a source change, which AWS
    /// cannot apply in place, makes a new stream.
    source_sha256: String,
    /// `ExtendedS3DestinationConfiguration` as given (keys sorted): what the
    /// stream writes with, shown in landings and snapshots so a changed
    /// buffer hint or prefix shows in their diffs.
    destination: serde_json::Value,
    /// SHA-256 of `ExtendedS3DestinationConfiguration` in canonical form: a
    /// change (AWS's `UpdateDestination`) bumps the stream version. Tags and
    /// formatting are not changes.
    destination_sha256: String,
    /// The `CreateDeliveryStream` request as given: what the Firehose API
    /// echoes back in `DescribeDeliveryStream`.
    request: serde_json::Value,
    /// Parts AWS accepts that streamlab does not emulate (the Decompression
    /// processor): valid, so `validate` only warns, but refused when the
    /// stream starts rather than run differently from AWS.
    unemulated: Vec<Violation>,
}

impl StreamSpec {
    /// What AWS would accept in this spec but streamlab cannot run.
    pub fn unemulated(&self) -> &[Violation] {
        &self.unemulated
    }

    /// `DeliveryStreamName`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic the delivery reads: `MSKSourceConfiguration.TopicName`, or
    /// a DirectPut stream's internal topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// `DeliveryStreamType`: where the stream's records come from.
    pub fn source_kind(&self) -> SourceKind {
        self.source
    }

    /// Where the stream's records come from, for people: `topic "orders"`,
    /// or `DirectPut (PutRecord, PutRecordBatch)`.
    pub fn source_label(&self) -> String {
        match self.source {
            SourceKind::Msk => format!("topic {:?}", self.topic),
            SourceKind::DirectPut => "DirectPut (PutRecord, PutRecordBatch)".to_owned(),
        }
    }

    /// Whether records reach the stream through `PutRecord` and
    /// `PutRecordBatch`.
    pub fn is_direct_put(&self) -> bool {
        self.source == SourceKind::DirectPut
    }

    /// `MSKSourceConfiguration.AuthenticationConfiguration.Connectivity` is
    /// `PRIVATE`: Firehose reads through MSK's multi-VPC private
    /// connectivity, billed per connection-hour and not offered on
    /// kafka.t3.small brokers.
    pub fn private_connectivity(&self) -> bool {
        self.request["MSKSourceConfiguration"]["AuthenticationConfiguration"]["Connectivity"] == "PRIVATE"
    }

    /// The bucket of `BucketARN`.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The prefix evaluated for each object, Firehose's default time prefix
    /// appended where AWS appends it.
    pub fn prefix(&self) -> &Template {
        &self.prefix
    }

    /// The error prefix evaluated for records that cannot be delivered.
    pub fn error_prefix(&self) -> &Template {
        &self.error_prefix
    }

    pub fn buffer(&self) -> BufferHints {
        self.buffer
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Appended to every object key (not to error objects).
    pub fn extension(&self) -> &str {
        &self.extension
    }

    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }

    /// Where a partition the group never committed for starts.
    pub fn start(&self) -> StartPosition {
        self.start
    }

    /// `AppendDelimiterToRecord`: a `\n` after every record.
    pub fn append_newline(&self) -> bool {
        self.append_newline
    }

    /// `RecordDeAggregation`: how one Kafka record splits into records.
    pub fn deaggregation(&self) -> Option<&Deaggregation> {
        self.deaggregation.as_ref()
    }

    /// `MetadataExtraction`'s query, checked.
    pub fn metadata_query(&self) -> Option<&crate::extract::MetadataExtractor> {
        self.metadata_query.as_ref()
    }

    /// `DynamicPartitioningConfiguration` with `Enabled: true`.
    pub fn dynamic_partitioning(&self) -> bool {
        self.dynamic_partitioning
    }

    /// A `Lambda` processor: records go through the function before routing.
    pub fn lambda(&self) -> Option<&LambdaProcessor> {
        self.lambda.as_ref()
    }

    /// `DataFormatConversionConfiguration` enabled: objects are Parquet.
    pub fn conversion(&self) -> Option<&crate::convert::ConversionSpec> {
        self.conversion.as_ref()
    }

    /// `MSKSourceConfiguration.MSKClusterARN`.
    pub fn msk_cluster_arn(&self) -> &str {
        &self.msk_cluster_arn
    }

    /// `EncryptionConfiguration.KMSEncryptionConfig.AWSKMSKeyARN`.
    pub fn sse_kms_key_id(&self) -> Option<&str> {
        self.sse_kms_key_id.as_deref()
    }

    /// SHA-256 of the canonical source configuration (a change makes a new
    /// stream).
    pub fn source_sha256(&self) -> &str {
        &self.source_sha256
    }

    /// `ExtendedS3DestinationConfiguration` as given (keys sorted).
    pub fn destination(&self) -> &serde_json::Value {
        &self.destination
    }

    /// SHA-256 of the canonical destination (a change bumps the version).
    pub fn destination_sha256(&self) -> &str {
        &self.destination_sha256
    }

    /// The `CreateDeliveryStream` request as given.
    pub fn request(&self) -> &serde_json::Value {
        &self.request
    }

    /// The region and account of the stream: its MSK cluster's (AWS makes
    /// both be the same), else us-east-1 and a placeholder account.
    pub fn region_and_account(&self) -> (&str, &str) {
        let mut parts = self.msk_cluster_arn.split(':');
        let region = parts.nth(3).filter(|r| !r.is_empty()).unwrap_or("us-east-1");
        let account = parts.next().filter(|a| !a.is_empty()).unwrap_or("000000000000");
        (region, account)
    }

    /// `arn:aws:firehose:<region>:<account>:deliverystream/<name>`.
    pub fn delivery_stream_arn(&self) -> String {
        let (region, account) = self.region_and_account();
        format!("arn:aws:firehose:{region}:{account}:deliverystream/{}", self.name)
    }

    /// The spec under another stream name, topic and bucket, with key
    /// prefixes put in front of both prefixes: a run scope. The new name is
    /// checked against Firehose's rule (1-64 characters of
    /// `[a-zA-Z0-9_.-]`), the topic against Kafka's.
    pub fn renamed(
        mut self,
        name: String,
        mut topic: String,
        bucket: String,
        key_prefix: &Template,
    ) -> Result<StreamSpec, String> {
        if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
            return Err(format!("the stream name {name:?} must be 1-64 characters of letters, digits, _ . and -"));
        }
        if topic.len() > 249 {
            return Err(format!("the topic name {topic:?} is longer than Kafka's 249 characters"));
        }
        if self.is_direct_put() {
            topic = direct_put_topic(&name);
        }
        self.name = name;
        self.topic = topic;
        self.bucket = bucket;
        self.prefix = self.prefix.after_uncounted(key_prefix.clone());
        self.error_prefix = self.error_prefix.after_uncounted(key_prefix.clone());
        Ok(self)
    }
}

/// `DeliveryStreamType`, of the kinds streamlab runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SourceKind {
    /// `MSKAsSource`: the delivery reads a Kafka topic.
    #[serde(rename = "MSKAsSource")]
    Msk,
    /// `DirectPut` (AWS's default type): applications write with
    /// `PutRecord` / `PutRecordBatch`.
    DirectPut,
}

impl SourceKind {
    /// The `DeliveryStreamType` value.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Msk => "MSKAsSource",
            SourceKind::DirectPut => "DirectPut",
        }
    }
}

/// Prefix of the internal topics holding what DirectPut streams were put.
pub const DIRECT_PUT_TOPIC_PREFIX: &str = "__streamlab_directput.";

/// The topic holding the records put to DirectPut stream `name`. What a
/// `PutRecordBatch` acknowledges is on the broker, so it is read with the
/// same engine, commits and at-least-once guarantee as an MSK topic.
pub fn direct_put_topic(name: &str) -> String {
    format!("{DIRECT_PUT_TOPIC_PREFIX}{name}")
}

/// A `Lambda` processor's parameters, with Firehose's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct LambdaProcessor {
    /// `LambdaArn`, as given (with or without a version or alias).
    pub arn: String,
    /// `NumberOfRetries` (default 3): a failed invocation is made this many
    /// more times before its records go to the error output.
    pub retries: u32,
    /// `BufferSizeInMBs` (default 1, 0.2-3) and `BufferIntervalInSeconds`
    /// (default 60, 0-900): when a batch is sent to the function.
    pub buffer: BufferHints,
}

impl LambdaProcessor {
    pub const DEFAULT_BUFFER: BufferHints = BufferHints { size_bytes: MIB, interval: Duration::from_secs(60) };
}

pub use crate::extract::Deaggregation;

/// When a buffer is delivered: whichever limit is reached first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferHints {
    pub size_bytes: u64,
    pub interval: Duration,
}

impl BufferHints {
    /// Firehose's defaults for an S3 destination: 5 MiB, 300 s.
    pub const DEFAULT: BufferHints = BufferHints { size_bytes: 5 * MIB, interval: Duration::from_secs(300) };
}

pub const MIB: u64 = 1024 * 1024;

/// Where delivery starts reading a partition the consumer group has never
/// committed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// `ReadFromTimestamp` is the epoch: the earliest offset.
    Earliest,
    /// The first record at or after this epoch-millisecond timestamp.
    Timestamp(i64),
    /// `ReadFromTimestamp` absent: the moment the stream became active, which
    /// locally is the moment delivery starts.
    ActivationTime,
}

/// `CompressionFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Uncompressed,
    Gzip,
    /// One entry, named by a uuid, deflated.
    Zip,
    /// The xerial snappy-java stream format (`SnappyOutputStream`).
    Snappy,
    /// Hadoop's block framing (`BlockCompressorStream` with `SnappyCodec`).
    HadoopSnappy,
}

impl Compression {
    pub fn parse(format: &str) -> Option<Self> {
        Some(match format {
            "UNCOMPRESSED" => Compression::Uncompressed,
            "GZIP" => Compression::Gzip,
            "ZIP" => Compression::Zip,
            "Snappy" => Compression::Snappy,
            "HADOOP_SNAPPY" => Compression::HadoopSnappy,
            _ => return None,
        })
    }

    /// Default key extension for the format. HADOOP_SNAPPY objects end in
    /// `.snappy` on the wire, although the AWS doc table says `.hsnappy`.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Uncompressed => "",
            Compression::Gzip => ".gz",
            Compression::Zip => ".zip",
            Compression::Snappy | Compression::HadoopSnappy => ".snappy",
        }
    }

    /// The `Content-Encoding` Firehose sets on the object.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::Uncompressed => None,
            // Measured on AWS (reference section 2).
            Compression::Zip => Some("zip"),
            Compression::Gzip => Some("gzip"),
            Compression::Snappy => Some("snappy-java"),
            Compression::HadoopSnappy => Some("hadoop-snappy"),
        }
    }
}

/// Why a spec file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    #[error("cannot read stream spec {}: {source}", file.display())]
    Read { file: PathBuf, source: std::io::Error },
    #[error("stream spec {} is not valid JSON: {source}; it must be the JSON given to `aws firehose create-delivery-stream --cli-input-json`", file.display())]
    Json { file: PathBuf, source: serde_json::Error },
    #[error("stream spec {}: {}", file.display(), Violations(.violations))]
    Invalid { file: PathBuf, violations: Vec<Violation> },
}

impl SpecError {
    pub fn violations(&self) -> &[Violation] {
        match self {
            SpecError::Invalid { violations, .. } => violations,
            _ => &[],
        }
    }
}

struct Violations<'a>(&'a [Violation]);

impl fmt::Display for Violations<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} problem{}", if n == 1 { "" } else { "s" })?;
        for v in self.0 {
            write!(f, "\n  - {v}")?;
        }
        Ok(())
    }
}

/// Why the files a list of paths names cannot be listed.
#[derive(Debug, thiserror::Error)]
pub enum JsonFilesError {
    #[error("cannot list directory {}: {source}", dir.display())]
    Read { dir: PathBuf, source: std::io::Error },
    #[error("the directory {} holds no *.json files; pass spec files, or a directory of them", dir.display())]
    Empty { dir: PathBuf },
}

/// The files `paths` name, each directory expanded to its `*.json` files
/// (sorted): how `up --spec`, `validate` and `--alarm` take a directory.
pub fn json_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, JsonFilesError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|source| JsonFilesError::Read { dir: path.clone(), source })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(JsonFilesError::Empty { dir: path.clone() });
            }
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Reads and validates a spec file.
pub fn load(file: &Path) -> Result<StreamSpec, SpecError> {
    let text = std::fs::read_to_string(file).map_err(|source| SpecError::Read { file: file.to_owned(), source })?;
    parse(file, &text)
}

/// Validates spec text; `file` is only used in messages.
pub fn parse(file: &Path, text: &str) -> Result<StreamSpec, SpecError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|source| SpecError::Json { file: file.to_owned(), source })?;
    validate(&value).map_err(|violations| SpecError::Invalid { file: file.to_owned(), violations })
}
