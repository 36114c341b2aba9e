//! Which buffer a Kafka record goes to: de-aggregation, then its Kafka
//! partition or (with dynamic partitioning) the prefix its keys evaluate to;
//! records that cannot be delivered as configured become error records, each
//! with a typed [`ErrorKind`] that knows its error-output-type and code.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;

use super::buffer::{BufferKey, Record};
use super::naming::Namer;
use crate::convert::{CatalogTable, ConversionError};
use crate::extract::{self, ExtractError, MetadataExtractor};
use crate::prefix::RenderError;
use crate::spec::StreamSpec;

/// Firehose's record size limit; larger records go to the error prefix.
pub const MAX_RECORD_BYTES: usize = 10 * 1024 * 1024;

/// `error-output-type` values and the error codes streamlab writes.
pub mod errors {
    pub const PROCESSING_FAILED: &str = "processing-failed";
    /// Records over the active-partition limit (Firehose's developer guide,
    /// "Buffer data for dynamic partitioning").
    pub const ACTIVE_PARTITION_EXCEEDED: &str = "activePartitionExceeded";
    pub const METADATA_EXTRACTION_FAILED: &str = "metadata-extraction-failed";
    pub const METADATA_EXTRACTION_CODE: &str = "DynamicPartitioning.MetadataExtractionFailed";
    pub const ACTIVE_PARTITIONS_CODE: &str = "DynamicPartitioning.ActivePartitionsLimitExceeded";
    pub const RECORD_TOO_LARGE_CODE: &str = "RecordTooLarge";
    pub const PREFIX_CODE: &str = "DynamicPartitioning.PrefixEvaluationFailed";
    pub const FORMAT_CONVERSION_FAILED: &str = "format-conversion-failed";
}

/// Why a record goes to the error prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// Over Firehose's 10 MB record limit.
    RecordTooLarge { bytes: usize },
    /// Its partition keys could not be extracted.
    Extraction(ExtractError),
    /// Its prefix does not evaluate (too long, a key missing).
    Prefix(RenderError),
    /// It would open a partition over the active-partition limit.
    ActivePartitions { limit: usize },
    /// The Lambda transform failed it (or its whole invocation failed), after
    /// `attempts` invocations.
    Lambda { code: &'static str, message: &'static str, attempts: u32, arn: Arc<str> },
    /// It does not fit the Glue table's columns.
    Conversion { error: ConversionError, table: Arc<CatalogTable> },
}

impl ErrorKind {
    /// The `!{firehose:error-output-type}` it lands under.
    pub fn output_type(&self) -> &'static str {
        match self {
            ErrorKind::RecordTooLarge { .. } | ErrorKind::Prefix(_) | ErrorKind::Lambda { .. } => {
                errors::PROCESSING_FAILED
            }
            ErrorKind::Extraction(_) => errors::METADATA_EXTRACTION_FAILED,
            ErrorKind::ActivePartitions { .. } => errors::ACTIVE_PARTITION_EXCEEDED,
            ErrorKind::Conversion { .. } => errors::FORMAT_CONVERSION_FAILED,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ErrorKind::RecordTooLarge { .. } => errors::RECORD_TOO_LARGE_CODE,
            ErrorKind::Extraction(_) => errors::METADATA_EXTRACTION_CODE,
            ErrorKind::Prefix(_) => errors::PREFIX_CODE,
            ErrorKind::ActivePartitions { .. } => errors::ACTIVE_PARTITIONS_CODE,
            ErrorKind::Lambda { code, .. } => code,
            ErrorKind::Conversion { error, .. } => error.code,
        }
    }

    pub fn message(&self) -> String {
        match self {
            ErrorKind::RecordTooLarge { bytes } => format!("record of {bytes} bytes exceeds the 10 MB limit"),
            ErrorKind::Extraction(e) => e.to_string(),
            ErrorKind::Prefix(e) => e.to_string(),
            ErrorKind::ActivePartitions { limit } => format!("more than {limit} active partitions"),
            ErrorKind::Lambda { message, .. } => (*message).to_owned(),
            ErrorKind::Conversion { error, .. } => error.message.clone(),
        }
    }
}

/// One line of an error object, fields in the order Firehose writes them.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorLine<'a> {
    attempts_made: u32,
    arrival_timestamp: i64,
    error_code: &'a str,
    error_message: &'a str,
    attempt_ending_timestamp: i64,
    raw_data: String,
    /// Spelled as in real objects (the developer guide writes `lambdaArn`).
    #[serde(rename = "lambdaARN", skip_serializing_if = "Option::is_none")]
    lambda_arn: Option<&'a str>,
}

/// A `format-conversion-failed` line: Firehose names the error fields
/// `lastError*` here, and adds the record's position and the table.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ConversionErrorLine<'a> {
    attempts_made: u32,
    arrival_timestamp: i64,
    last_error_code: &'a str,
    last_error_message: &'a str,
    attempt_ending_timestamp: i64,
    raw_data: String,
    /// The Kafka offset, as the string Firehose writes for sequence numbers.
    sequence_number: String,
    sub_sequence_number: u32,
    data_catalog_table: &'a CatalogTable,
}

/// Where one (sub-)record goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Buffer(BufferKey, Record),
    /// To the error buffer of its type, as the JSON line Firehose writes.
    Error(ErrorKind, Record),
}

/// Routes records for one stream.
#[derive(Debug, Clone)]
pub struct Router {
    spec: Arc<StreamSpec>,
    namer: Arc<Namer>,
    extractor: Option<MetadataExtractor>,
    active_partition_limit: usize,
}

impl Router {
    pub fn new(spec: Arc<StreamSpec>, namer: Arc<Namer>, active_partition_limit: usize) -> Self {
        let extractor = spec.metadata_query().filter(|_| spec.dynamic_partitioning()).cloned();
        Router { spec, namer, extractor, active_partition_limit }
    }

    pub fn spec(&self) -> &StreamSpec {
        &self.spec
    }

    /// Routes a Kafka record (as the Lambda transform returned it, with its
    /// `partitionKeys`, when there is one). `is_open` tells whether a prefix
    /// buffer is open; `open_partitions` how many are (the active partitions).
    pub fn route(
        &self,
        record: Record,
        lambda_keys: Option<&BTreeMap<String, String>>,
        is_open: impl Fn(&BufferKey) -> bool,
        open_partitions: usize,
        out: &mut Vec<Route>,
    ) {
        if record.value.len() > MAX_RECORD_BYTES {
            out.push(Route::Error(ErrorKind::RecordTooLarge { bytes: record.value.len() }, record));
            return;
        }
        if !self.spec.dynamic_partitioning() {
            if self.spec.deaggregation().is_none() {
                // The common path: no allocation beyond the route itself.
                out.push(Route::Buffer(BufferKey::Partition(record.partition), record));
                return;
            }
            for value in extract::deaggregate(&record.value, self.spec.deaggregation()) {
                let sub = Record { value, ..record.clone() };
                out.push(Route::Buffer(BufferKey::Partition(record.partition), sub));
            }
            return;
        }
        let limit = self.active_partition_limit;
        if self.spec.deaggregation().is_none() {
            // One record, no copies.
            let route = match self.prefix_key(&record, lambda_keys) {
                Err(kind) => Route::Error(kind, record),
                // The limit first: under it (the usual case) no buffer lookup.
                Ok(key) if open_partitions >= limit && !is_open(&key) => {
                    Route::Error(ErrorKind::ActivePartitions { limit }, record)
                }
                Ok(key) => Route::Buffer(key, record),
            };
            out.push(route);
            return;
        }
        let (start, mut opened) = (out.len(), 0);
        for value in extract::deaggregate(&record.value, self.spec.deaggregation()) {
            let sub = Record { value, ..record.clone() };
            let route = match self.prefix_key(&sub, lambda_keys) {
                Err(kind) => Route::Error(kind, sub),
                Ok(key) => {
                    // Sub-records opening the same new prefix open one partition.
                    let new =
                        !is_open(&key) && !out[start..].iter().any(|r| matches!(r, Route::Buffer(k, _) if *k == key));
                    if new && open_partitions + opened >= limit {
                        Route::Error(ErrorKind::ActivePartitions { limit }, sub)
                    } else {
                        opened += usize::from(new);
                        Route::Buffer(key, sub)
                    }
                }
            };
            out.push(route);
        }
    }

    /// The prefix buffer a (sub-)record's partition keys evaluate to.
    fn prefix_key(
        &self,
        record: &Record,
        lambda_keys: Option<&BTreeMap<String, String>>,
    ) -> Result<BufferKey, ErrorKind> {
        let keys = match &self.extractor {
            Some(extractor) => extractor.extract(&record.value).map_err(ErrorKind::Extraction)?,
            None => BTreeMap::new(),
        };
        let prefix = self.namer.partition_prefix(record.timestamp_ms, &keys, lambda_keys).map_err(ErrorKind::Prefix)?;
        Ok(BufferKey::Prefix(prefix))
    }

    /// The error record Firehose writes for `record`: one JSON line under the
    /// error prefix of the error's type.
    /// The attempt ends on the stack's clock, but never before the record
    /// arrived: a record stamped ahead of that clock (a producer on wall
    /// time, a manual clock set back) would otherwise end before it began.
    pub fn error_record(kind: &ErrorKind, record: Record, now_ms: i64) -> (BufferKey, Record) {
        let now_ms = now_ms.max(record.timestamp_ms);
        if let ErrorKind::Conversion { error, table } = kind {
            let line = ConversionErrorLine {
                attempts_made: 1,
                arrival_timestamp: record.timestamp_ms,
                last_error_code: error.code,
                last_error_message: &error.message,
                attempt_ending_timestamp: now_ms,
                raw_data: BASE64.encode(&record.value),
                sequence_number: record.offset.to_string(),
                sub_sequence_number: 0,
                data_catalog_table: table,
            };
            let mut value = serde_json::to_vec(&line).expect("JSON values serialize");
            value.push(b'\n');
            return (BufferKey::Error(kind.output_type()), Record { value: Bytes::from(value), ..record });
        }
        let message = kind.message();
        let (attempts_made, lambda_arn) = match kind {
            ErrorKind::Lambda { attempts, arn, .. } => (*attempts, Some(&**arn)),
            _ => (1, None),
        };
        let line = ErrorLine {
            attempts_made,
            lambda_arn,
            arrival_timestamp: record.timestamp_ms,
            error_code: kind.code(),
            error_message: &message,
            attempt_ending_timestamp: now_ms,
            raw_data: BASE64.encode(&record.value),
        };
        let mut value = serde_json::to_vec(&line).expect("JSON values serialize");
        value.push(b'\n');
        (BufferKey::Error(kind.output_type()), Record { value: Bytes::from(value), ..record })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(now_ms: i64, arrival_ms: i64) -> serde_json::Value {
        let record = Record { partition: 0, offset: 7, timestamp_ms: arrival_ms, value: Bytes::from_static(b"{}") };
        let (_, line) = Router::error_record(&ErrorKind::RecordTooLarge { bytes: 2 }, record, now_ms);
        serde_json::from_slice(&line.value).unwrap()
    }

    #[test]
    fn an_attempt_never_ends_before_its_record_arrived() {
        // Measured: 1796392816531 ending before 1796392825420 arriving.
        let ahead = line(1_796_392_816_531, 1_796_392_825_420);
        assert_eq!(ahead["arrivalTimestamp"], 1_796_392_825_420_i64);
        assert_eq!(ahead["attemptEndingTimestamp"], 1_796_392_825_420_i64);
        let behind = line(1_796_392_830_000, 1_796_392_825_420);
        assert_eq!(behind["attemptEndingTimestamp"], 1_796_392_830_000_i64);
    }
}
