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
use sha2::Digest;

use crate::prefix::Template;
pub use validate::{validate, Violation};

/// `CustomTimeZone` values Firehose accepts (see `aws_time_zones.txt`).
pub static AWS_TIME_ZONES: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    include_str!("aws_time_zones.txt").lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
});

/// A validated delivery stream: everything delivery needs, already parsed.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    pub name: String,
    pub topic: String,
    pub bucket: String,
    /// The prefix to evaluate for each object, with Firehose's default time
    /// prefix already appended where AWS appends it.
    pub prefix: Template,
    /// The error prefix to evaluate for records that cannot be delivered.
    pub error_prefix: Template,
    pub buffer: BufferHints,
    pub compression: Compression,
    /// Extension appended to every object key (not to error objects).
    pub extension: String,
    pub time_zone: Tz,
    pub start: StartPosition,
    /// `AppendDelimiterToRecord`: a `\n` after every record.
    pub append_newline: bool,
    /// `RecordDeAggregation`: how one Kafka record splits into records.
    pub deaggregation: Option<Deaggregation>,
    /// `MetadataExtraction`'s jq query, compiled and checked at load.
    pub metadata_query: Option<String>,
    /// `DynamicPartitioningConfiguration` with `Enabled: true`.
    pub dynamic_partitioning: bool,
    /// A `Lambda` processor: records go through the function before routing.
    pub lambda: Option<LambdaProcessor>,
    /// `DataFormatConversionConfiguration` enabled: objects are Parquet.
    pub conversion: Option<crate::convert::ConversionSpec>,
    /// `MSKSourceConfiguration.MSKClusterARN` (the `sourceMSKArn` of Lambda
    /// events).
    pub msk_cluster_arn: String,
    /// `EncryptionConfiguration.KMSEncryptionConfig.AWSKMSKeyARN`: objects are
    /// written with SSE-KMS under this key.
    pub sse_kms_key_id: Option<String>,
    /// SHA-256 of `DeliveryStreamType` and `MSKSourceConfiguration` in
    /// canonical form (keys sorted, no whitespace): a source change, which AWS
    /// cannot apply in place, makes a new stream.
    pub source_sha256: String,
    /// `ExtendedS3DestinationConfiguration` as given (keys sorted): what the
    /// stream writes with, shown in landings and snapshots so a changed
    /// buffer hint or prefix shows in their diffs.
    pub destination: serde_json::Value,
    /// SHA-256 of `ExtendedS3DestinationConfiguration` in canonical form: a
    /// change (AWS's `UpdateDestination`) bumps the stream version. Tags and
    /// formatting are not changes.
    pub destination_sha256: String,
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

/// Reads and validates a spec file.
pub fn load(file: &Path) -> Result<StreamSpec, SpecError> {
    let text = std::fs::read_to_string(file).map_err(|source| SpecError::Read { file: file.to_owned(), source })?;
    parse(file, &text)
}

/// Validates spec text; `file` is only used in messages.
pub fn parse(file: &Path, text: &str) -> Result<StreamSpec, SpecError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|source| SpecError::Json { file: file.to_owned(), source })?;
    let mut spec = validate(&value).map_err(|violations| SpecError::Invalid { file: file.to_owned(), violations })?;
    // serde_json's map keeps keys sorted, so these serializations are canonical.
    let digest = |parts: &[&serde_json::Value]| {
        let canonical = serde_json::to_vec(parts).expect("a parsed value serializes");
        format!("{:x}", sha2::Sha256::digest(&canonical))
    };
    spec.source_sha256 = digest(&[&value["DeliveryStreamType"], &value["MSKSourceConfiguration"]]);
    spec.destination_sha256 = digest(&[&value["ExtendedS3DestinationConfiguration"]]);
    spec.destination = value["ExtendedS3DestinationConfiguration"].clone();
    Ok(spec)
}
