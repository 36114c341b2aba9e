//! A report of what landed under `s3://bucket/prefix`, for any bucket a
//! Firehose stream writes to (the stack's, LocalStack's, AWS's): per stream
//! and prefix, objects and their sizes against the small-file line, records
//! per object, duplicates by an id path, records whose event time is
//! outside the hour their prefix names, error records by code, and
//! freshness (when the object landed minus its oldest record's event time).
//!
//! Nothing here needs the specs: Firehose's object names carry the stream,
//! its version and the hour, its `Content-Encoding` (or the bytes' magic)
//! the compression, Parquet its own schema, and error records their code.
//! For objects a stack wrote, its landed history adds the topic partitions
//! and offsets each object holds and the stack-clock time it landed.
//!
//! - [`html`]: the same report as one self-contained HTML page.

pub mod html;

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::delivery::encode::decompress;
use crate::delivery::naming::parse_object_name;
use crate::delivery::SourceRange;
use crate::extract::MetadataExtractor;
use crate::harness::StoredObject;
use crate::spec::Compression;

/// What a stack knows of an object it wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    pub stream: String,
    pub key: String,
    /// When it landed, on the stack's clock (epoch ms).
    pub landed_ms: i64,
    pub sources: Vec<SourceRange>,
}

/// A jq path checked once: `.order_id`, `.order.id`.
#[derive(Debug, Clone)]
pub struct JqPath {
    path: String,
    extractor: MetadataExtractor,
}

impl JqPath {
    pub fn parse(path: &str) -> Result<JqPath, String> {
        let query = format!("{{v: {path}}}");
        crate::extract::check_query(&query)
            .map_err(|e| format!("{path:?} is not a jq path such as .order_id or .order.id: {e}"))?;
        Ok(JqPath { path: path.to_owned(), extractor: MetadataExtractor::new(query) })
    }

    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// The value at the path as text; `None` when missing, null or not a scalar.
    fn eval(&self, record: &serde_json::Value) -> Option<String> {
        let bytes = serde_json::to_vec(record).ok()?;
        self.extractor.extract(&bytes).ok()?.remove("v")
    }
}

#[derive(Debug, Clone)]
pub struct InspectOptions {
    /// Duplicates are records sharing the value at this path.
    pub id: Option<JqPath>,
    /// The record's event time: RFC 3339 text or epoch milliseconds.
    pub event_time: JqPath,
    /// Objects under this many MB are small for Athena.
    pub small_file_mb: f64,
}

impl Default for InspectOptions {
    fn default() -> Self {
        InspectOptions {
            id: None,
            event_time: JqPath::parse(".occurred_at").expect("a valid path"),
            small_file_mb: 128.0,
        }
    }
}

/// Upper bounds of the size histogram's buckets, in bytes (the last is open).
pub const SIZE_BUCKETS: &[(u64, &str)] = &[
    (1 << 10, "< 1 KB"),
    (100 << 10, "1-100 KB"),
    (1 << 20, "0.1-1 MB"),
    (8 << 20, "1-8 MB"),
    (32 << 20, "8-32 MB"),
    (64 << 20, "32-64 MB"),
    (128 << 20, "64-128 MB"),
    (256 << 20, "128-256 MB"),
    (u64::MAX, ">= 256 MB"),
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SizeBucket {
    pub label: String,
    pub objects: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MinMeanMax {
    pub min: f64,
    pub mean: f64,
    pub max: f64,
}

impl MinMeanMax {
    fn of(values: &[f64]) -> Option<MinMeanMax> {
        if values.is_empty() {
            return None;
        }
        Some(MinMeanMax {
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            mean: round3(values.iter().sum::<f64>() / values.len() as f64),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// One object, as read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectReport {
    pub key: String,
    pub stream: String,
    /// `data`, or the error-output-type.
    pub kind: String,
    /// The hour of the object's name (`2026-07-13T14`), in the stream's time zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hour: Option<String>,
    pub bytes: u64,
    pub records: u64,
    /// `parquet`, or the content encoding read (`gzip`, `snappy-java`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// When the object landed: the stack's clock for objects a stack
    /// wrote, else S3's `Last-Modified` (epoch ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub landed_ms: Option<i64>,
    /// The oldest event time among its records (epoch ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_event_ms: Option<i64>,
    /// `landed_ms - oldest_event_ms`, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freshness_secs: Option<f64>,
    /// Records whose id an earlier record (in key order) had.
    pub duplicates: u64,
    /// Records whose event time is before the hour the name gives.
    pub late_records: u64,
    /// How far before that hour the latest of them is, in seconds.
    pub max_late_secs: f64,
    /// Records whose event time is after the end of that hour.
    pub ahead_records: u64,
    /// Error records by `errorCode`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub error_codes: BTreeMap<String, u64>,
    /// For objects a stack wrote: the partitions and offsets it holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<SourceRange>>,
}

/// One stream's objects under one prefix (an hour, and with dynamic
/// partitioning a key value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrefixReport {
    pub prefix: String,
    pub kind: String,
    pub objects: u64,
    pub bytes: u64,
    pub records: u64,
    pub size_histogram: Vec<SizeBucket>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records_per_object: Option<MinMeanMax>,
    #[serde(flatten)]
    pub tally: Tally,
}

/// What a set of objects holds beyond counts and sizes: repeated ids, late
/// records, error records by code, freshness.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub duplicates: u64,
    pub late_records: u64,
    pub max_late_secs: f64,
    pub ahead_records: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub error_records_by_code: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freshness_secs: Option<MinMeanMax>,
}

impl Tally {
    fn of<'a>(objects: impl Iterator<Item = &'a ObjectReport> + Clone) -> Tally {
        let mut error_records_by_code = BTreeMap::new();
        for o in objects.clone() {
            for (code, n) in &o.error_codes {
                *error_records_by_code.entry(code.clone()).or_default() += n;
            }
        }
        let fresh: Vec<f64> = objects.clone().filter_map(|o| o.freshness_secs).collect();
        Tally {
            duplicates: objects.clone().map(|o| o.duplicates).sum(),
            late_records: objects.clone().map(|o| o.late_records).sum(),
            max_late_secs: objects.clone().map(|o| o.max_late_secs).fold(0.0, f64::max),
            ahead_records: objects.map(|o| o.ahead_records).sum(),
            error_records_by_code,
            freshness_secs: MinMeanMax::of(&fresh),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamReport {
    pub stream: String,
    pub objects: u64,
    pub data_objects: u64,
    pub bytes: u64,
    pub records: u64,
    /// Data objects under the small-file size.
    pub small_objects: u64,
    pub size_histogram: Vec<SizeBucket>,
    #[serde(flatten)]
    pub tally: Tally,
    pub prefixes: Vec<PrefixReport>,
}

/// `streamlab inspect`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InspectReport {
    pub location: String,
    pub small_file_mb: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_path: Option<String>,
    pub event_time_path: String,
    pub streams: Vec<StreamReport>,
    /// Keys that are not Firehose object names.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub other_keys: Vec<String>,
    pub warnings: Vec<String>,
    pub objects: Vec<ObjectReport>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    #[error("{location} is not an S3 location: give s3://bucket or s3://bucket/prefix")]
    Location { location: String },
    #[error(transparent)]
    Read(#[from] crate::harness::HarnessError),
}

/// `s3://bucket/prefix` split into bucket and prefix.
pub fn parse_location(location: &str) -> Result<(String, String), InspectError> {
    let bad = || InspectError::Location { location: location.to_owned() };
    let rest = location.strip_prefix("s3://").ok_or_else(bad)?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad());
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

/// Objects fetched at once: S3 answers each GET in tens of milliseconds,
/// and a report of a day's prefix reads thousands.
const CONCURRENT_GETS: usize = 8;

/// Reads every object under `location`, in key order, one at a time into
/// the report (memory holds at most [`CONCURRENT_GETS`] objects, whatever
/// the prefix holds); `progress` hears (objects read, objects listed).
pub async fn inspect(
    client: &aws_sdk_s3::Client,
    location: &str,
    provenance: &[Provenance],
    options: &InspectOptions,
    progress: impl FnMut(usize, usize),
) -> Result<InspectReport, InspectError> {
    inspect_all(client, &[location.to_owned()], provenance, options, progress).await
}

/// [`inspect`] of several locations (a run's buckets) in one report.
pub async fn inspect_all(
    client: &aws_sdk_s3::Client,
    locations: &[String],
    provenance: &[Provenance],
    options: &InspectOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<InspectReport, InspectError> {
    use futures::StreamExt as _;
    let mut listed = Vec::new();
    for location in locations {
        let (bucket, prefix) = parse_location(location)?;
        let keys = crate::harness::list_keys_under(client, &bucket, &prefix).await?;
        listed.extend(keys.into_iter().map(|key| (bucket.clone(), key)));
    }
    let total = listed.len();
    let mut builder = ReportBuilder::new(provenance, options);
    let mut objects = futures::stream::iter(listed.iter())
        .map(|(bucket, key)| crate::harness::read_object(client, bucket, key))
        .buffered(CONCURRENT_GETS);
    let mut read = 0;
    while let Some(object) = objects.next().await {
        builder.add(&object?);
        read += 1;
        progress(read, total);
    }
    Ok(builder.finish(&locations.join(", ")))
}

/// An object's records as JSON, whatever it was written as: decoded by its
/// `Content-Encoding` (else its first bytes), then Parquet rows or JSON
/// records; with the format a report shows (`parquet` for a readable
/// Parquet file, else the encoding: `gzip`, none for plain JSON). `Err`
/// says why the body cannot be read.
pub fn object_records(object: &StoredObject) -> (Option<String>, Result<Vec<serde_json::Value>, String>) {
    let compression = compression_of(object);
    let format = compression.content_encoding().map(str::to_owned);
    match decompress(&object.body, compression) {
        Ok(decoded) if decoded.starts_with(b"PAR1") => match crate::convert::read_parquet(&decoded) {
            Ok(content) => (Some("parquet".into()), Ok(content.rows)),
            Err(e) => (format, Err(format!("not a readable Parquet file: {e}"))),
        },
        Ok(decoded) => (format, Ok(crate::landing::parse_records(&decoded))),
        Err(e) => (format, Err(format!("cannot decode as {compression:?}: {e}"))),
    }
}

/// The compression an object was written with: its `Content-Encoding`,
/// else its first bytes.
fn compression_of(object: &StoredObject) -> Compression {
    let encoded = [Compression::Gzip, Compression::Zip, Compression::Snappy, Compression::HadoopSnappy]
        .into_iter()
        .find(|c| c.content_encoding().is_some() && c.content_encoding() == object.content_encoding.as_deref());
    if let Some(compression) = encoded {
        return compression;
    }
    let body = &object.body[..];
    if body.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if body.starts_with(b"PK\x03\x04") {
        Compression::Zip
    } else if body.starts_with(b"\x82SNAPPY\x00") {
        Compression::Snappy
    } else {
        Compression::Uncompressed
    }
}

/// Epoch milliseconds of an event time: RFC 3339 text, a zoneless
/// timestamp (UTC), or a number of milliseconds (seconds when it is small
/// enough to be seconds).
fn event_ms(value: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Some(t.timestamp_millis());
    }
    // Parquet timestamps (and Hive's text form) carry no zone: UTC.
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(value, format) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    let n: f64 = value.parse().ok()?;
    Some(if n.abs() < 1e11 { (n * 1000.0) as i64 } else { n as i64 })
}

/// The report of `objects` (in key order).
pub fn report(
    location: &str,
    objects: &[StoredObject],
    provenance: &[Provenance],
    options: &InspectOptions,
) -> InspectReport {
    let mut builder = ReportBuilder::new(provenance, options);
    for object in objects {
        builder.add(object);
    }
    builder.finish(location)
}

/// A report made one object at a time (in key order): what each object
/// leaves behind is its summary and, with `--id`, the ids seen so far.
pub struct ReportBuilder<'a> {
    known: BTreeMap<&'a str, &'a Provenance>,
    options: &'a InspectOptions,
    seen_ids: BTreeMap<String, HashSet<String>>,
    reports: Vec<ObjectReport>,
    other_keys: Vec<String>,
    warnings: Vec<String>,
}

impl<'a> ReportBuilder<'a> {
    pub fn new(provenance: &'a [Provenance], options: &'a InspectOptions) -> Self {
        ReportBuilder {
            known: provenance.iter().map(|p| (p.key.as_str(), p)).collect(),
            options,
            seen_ids: BTreeMap::new(),
            reports: Vec::new(),
            other_keys: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Reads one object into the report.
    pub fn add(&mut self, object: &StoredObject) {
        let options = self.options;
        let Some(name) = parse_object_name(&object.key) else {
            self.other_keys.push(object.key.clone());
            return;
        };
        let kind = object
            .key
            .split('/')
            .find(|segment| crate::prefix::ERROR_OUTPUT_TYPES.contains(segment))
            .unwrap_or("data")
            .to_owned();
        let (format, records) = object_records(object);
        let records = records.unwrap_or_else(|warning| {
            self.warnings.push(format!("{}: {warning}", object.key));
            Vec::new()
        });
        let hour_start = name.hour().and_utc().timestamp_millis();
        let provenance = self.known.get(object.key.as_str());
        let landed_ms = provenance.map(|p| p.landed_ms).or(object.last_modified_ms);
        let mut r = ObjectReport {
            key: object.key.clone(),
            stream: name.stream.to_owned(),
            kind: kind.clone(),
            hour: Some(name.time.format("%Y-%m-%dT%H").to_string()),
            bytes: object.body.len() as u64,
            records: records.len() as u64,
            format,
            landed_ms,
            oldest_event_ms: None,
            freshness_secs: None,
            duplicates: 0,
            late_records: 0,
            max_late_secs: 0.0,
            ahead_records: 0,
            error_codes: BTreeMap::new(),
            sources: provenance.map(|p| p.sources.clone()),
        };
        let ids = self.seen_ids.entry(name.stream.to_owned()).or_default();
        for record in &records {
            if kind != "data" {
                let code = record.get("errorCode").and_then(|c| c.as_str()).unwrap_or("(no errorCode)");
                *r.error_codes.entry(code.to_owned()).or_default() += 1;
                continue;
            }
            if let Some(id) = options.id.as_ref().and_then(|p| p.eval(record)) {
                if !ids.insert(id) {
                    r.duplicates += 1;
                }
            }
            let Some(at) = options.event_time.eval(record).as_deref().and_then(event_ms) else { continue };
            r.oldest_event_ms = Some(r.oldest_event_ms.map_or(at, |o: i64| o.min(at)));
            if at < hour_start {
                r.late_records += 1;
                r.max_late_secs = r.max_late_secs.max((hour_start - at) as f64 / 1000.0);
            } else if at >= hour_start + 3_600_000 {
                r.ahead_records += 1;
            }
        }
        if let (Some(landed), Some(oldest)) = (r.landed_ms, r.oldest_event_ms) {
            r.freshness_secs = Some((landed - oldest) as f64 / 1000.0);
        }
        self.reports.push(r);
    }

    /// The report, with its warnings.
    pub fn finish(self, location: &str) -> InspectReport {
        let ReportBuilder { options, reports, other_keys, mut warnings, .. } = self;
        let streams = summarize(&reports, options.small_file_mb);
        for s in &streams {
            let data = s.data_objects.max(1);
            if s.data_objects > 0 && s.small_objects * 2 > s.data_objects {
                warnings.push(format!(
                    "{}: {} of {} data objects ({:.0}%) are under {} MB, the size Athena reads well (it opens every object a query touches): raise BufferingHints or compact",
                    s.stream,
                    s.small_objects,
                    s.data_objects,
                    100.0 * s.small_objects as f64 / data as f64,
                    options.small_file_mb
                ));
            }
            if s.tally.duplicates > 0 {
                warnings.push(format!(
                    "{}: {} records repeat an earlier record's {} (a redelivery after a crash or a retried write, or a producer sending twice): deduplicate downstream",
                    s.stream,
                    s.tally.duplicates,
                    options.id.as_ref().map_or("", |p| p.as_str())
                ));
            }
            if s.tally.late_records > 0 {
                warnings.push(format!(
                    "{}: {} records landed under a later hour than their event time, up to {:.0} s late: a query by the prefix hour misses them",
                    s.stream, s.tally.late_records, s.tally.max_late_secs
                ));
            }
            if !s.tally.error_records_by_code.is_empty() {
                let codes: Vec<String> =
                    s.tally.error_records_by_code.iter().map(|(c, n)| format!("{c} x{n}")).collect();
                warnings.push(format!("{}: error records: {}", s.stream, codes.join(", ")));
            }
        }
        InspectReport {
            location: location.to_owned(),
            small_file_mb: options.small_file_mb,
            id_path: options.id.as_ref().map(|p| p.as_str().to_owned()),
            event_time_path: options.event_time.as_str().to_owned(),
            streams,
            other_keys,
            warnings,
            objects: reports,
        }
    }
}

fn histogram<'a>(sizes: impl Iterator<Item = &'a u64>) -> Vec<SizeBucket> {
    let mut counts = vec![0u64; SIZE_BUCKETS.len()];
    for size in sizes {
        let i = SIZE_BUCKETS.iter().position(|(upto, _)| size < upto).unwrap_or(SIZE_BUCKETS.len() - 1);
        counts[i] += 1;
    }
    SIZE_BUCKETS
        .iter()
        .zip(counts)
        .map(|((_, label), objects)| SizeBucket { label: (*label).to_owned(), objects })
        .collect()
}

fn summarize(objects: &[ObjectReport], small_file_mb: f64) -> Vec<StreamReport> {
    let mut by_stream: BTreeMap<&str, Vec<&ObjectReport>> = BTreeMap::new();
    for o in objects {
        by_stream.entry(&o.stream).or_default().push(o);
    }
    let small = (small_file_mb * 1_048_576.0) as u64;
    by_stream
        .into_iter()
        .map(|(stream, objects)| {
            let mut by_prefix: BTreeMap<(&str, &str), Vec<&ObjectReport>> = BTreeMap::new();
            for o in &objects {
                let dir = parse_object_name(&o.key).map_or("", |n| n.dir);
                by_prefix.entry((dir, o.kind.as_str())).or_default().push(o);
            }
            let prefixes: Vec<PrefixReport> = by_prefix
                .into_iter()
                .map(|((prefix, kind), os)| {
                    let per_object: Vec<f64> = os.iter().map(|o| o.records as f64).collect();
                    PrefixReport {
                        prefix: prefix.to_owned(),
                        kind: kind.to_owned(),
                        objects: os.len() as u64,
                        bytes: os.iter().map(|o| o.bytes).sum(),
                        records: os.iter().map(|o| o.records).sum(),
                        size_histogram: histogram(os.iter().map(|o| &o.bytes)),
                        records_per_object: MinMeanMax::of(&per_object),
                        tally: Tally::of(os.iter().copied()),
                    }
                })
                .collect();
            let data: Vec<&&ObjectReport> = objects.iter().filter(|o| o.kind == "data").collect();
            StreamReport {
                stream: stream.to_owned(),
                objects: objects.len() as u64,
                data_objects: data.len() as u64,
                bytes: objects.iter().map(|o| o.bytes).sum(),
                records: data.iter().map(|o| o.records).sum(),
                small_objects: data.iter().filter(|o| o.bytes < small).count() as u64,
                size_histogram: histogram(data.iter().map(|o| &o.bytes)),
                tally: Tally::of(objects.iter().copied()),
                prefixes,
            }
        })
        .collect()
}

impl InspectReport {
    /// One row per stream and prefix.
    pub fn render_table(&self) -> String {
        let mut rows = vec![[
            "stream".to_owned(),
            "prefix".into(),
            "kind".into(),
            "objects".into(),
            "MB".into(),
            "records".into(),
            "rec/obj".into(),
            "dups".into(),
            "late".into(),
            "errors".into(),
            "fresh s (max)".into(),
        ]];
        for s in &self.streams {
            for p in &s.prefixes {
                rows.push([
                    s.stream.clone(),
                    p.prefix.clone(),
                    p.kind.clone(),
                    p.objects.to_string(),
                    format!("{:.3}", p.bytes as f64 / 1_048_576.0),
                    p.records.to_string(),
                    p.records_per_object.as_ref().map_or("-".into(), |r| format!("{:.1}", r.mean)),
                    p.tally.duplicates.to_string(),
                    p.tally.late_records.to_string(),
                    p.tally.error_records_by_code.values().sum::<u64>().to_string(),
                    p.tally.freshness_secs.as_ref().map_or("-".into(), |f| format!("{:.0}", f.max)),
                ]);
            }
        }
        let widths: Vec<usize> =
            (0..11).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
        let mut out = format!("{}\n", self.location);
        for row in &rows {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, c)| if i < 3 { format!("{c:<w$}", w = widths[i]) } else { format!("{c:>w$}", w = widths[i]) })
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        if self.streams.is_empty() {
            out.push_str("no Firehose objects here\n");
        }
        if !self.other_keys.is_empty() {
            out.push_str(&format!(
                "{} other key(s), not named by Firehose (first: {})\n",
                self.other_keys.len(),
                self.other_keys[0]
            ));
        }
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    const ID: &str = "0b0e6f4a-1c2d-4e5f-8a9b-0c1d2e3f4a5b";

    fn object(key: &str, body: &str, last_modified_ms: i64) -> StoredObject {
        StoredObject {
            key: key.to_owned(),
            body: Bytes::from(body.to_owned()),
            content_type: None,
            content_encoding: None,
            server_side_encryption: None,
            sse_kms_key_id: None,
            last_modified_ms: Some(last_modified_ms),
        }
    }

    #[test]
    fn duplicates_late_records_errors_and_freshness() {
        let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis();
        let objects = [
            object(
                &format!("2026/07/13/14/orders-1-2026-07-13-14-00-05-{ID}"),
                r#"{"order_id":"a","occurred_at":"2026-07-13T13:59:30Z"}{"order_id":"b","occurred_at":"2026-07-13T14:00:01Z"}"#,
                t("2026-07-13T14:05:00Z"),
            ),
            object(
                &format!("2026/07/13/14/orders-1-2026-07-13-14-05-05-{ID}"),
                "{\"order_id\":\"b\",\"occurred_at\":\"2026-07-13T14:00:01Z\"}\n",
                t("2026-07-13T14:10:00Z"),
            ),
            object(
                &format!("errors/processing-failed/2026/07/13/14/orders-1-2026-07-13-14-05-05-{ID}"),
                "{\"errorCode\":\"Lambda.FunctionError\",\"rawData\":\"e30=\"}\n",
                t("2026-07-13T14:10:00Z"),
            ),
            object("manifest.json", "{}", 0),
        ];
        let options = InspectOptions { id: Some(JqPath::parse(".order_id").unwrap()), ..InspectOptions::default() };
        let report = report("s3://b", &objects, &[], &options);
        assert_eq!(report.other_keys, ["manifest.json"]);
        let s = &report.streams[0];
        assert_eq!((s.stream.as_str(), s.objects, s.data_objects, s.records), ("orders", 3, 2, 3));
        assert_eq!((s.tally.duplicates, s.tally.late_records, s.tally.max_late_secs), (1, 1, 30.0));
        assert_eq!(s.tally.error_records_by_code, BTreeMap::from([("Lambda.FunctionError".to_owned(), 1)]));
        assert_eq!(report.objects[0].freshness_secs, Some(330.0), "landed 14:05:00, oldest event 13:59:30");
        assert_eq!(s.prefixes.len(), 2);
        assert_eq!(s.size_histogram[0].objects, 2, "both data objects under 1 KB");
        let warnings = report.warnings.join("\n");
        assert!(warnings.contains("orders: 2 of 2 data objects (100%) are under 128 MB"), "{warnings}");
        assert!(warnings.contains("orders: 1 records repeat an earlier record's .order_id"), "{warnings}");
        assert!(warnings.contains("up to 30 s late"), "{warnings}");
        assert!(warnings.contains("Lambda.FunctionError x1"), "{warnings}");
    }

    #[test]
    fn locations_and_paths_are_checked() {
        assert_eq!(parse_location("s3://b/p/q").unwrap(), ("b".into(), "p/q".into()));
        assert_eq!(parse_location("s3://b").unwrap(), ("b".into(), String::new()));
        assert!(parse_location("b/p").unwrap_err().to_string().contains("give s3://bucket"));
        assert!(JqPath::parse(".order_id | ").unwrap_err().contains("is not a jq path"));
    }

    /// What the soak and `inspect` count: records of every format, read by
    /// the object's Content-Encoding or, without one, by its first bytes.
    #[test]
    fn object_records_reads_every_format() {
        use crate::spec::Compression;
        let raw = br#"{"event_id":"a"}{"event_id":"b"}"#.to_vec();
        let ids = |object: &StoredObject| -> Vec<String> {
            let (_, records) = object_records(object);
            records.unwrap().iter().map(|r| r["event_id"].as_str().unwrap().to_owned()).collect()
        };
        for (compression, encoding) in [
            (Compression::Uncompressed, None),
            (Compression::Gzip, Some("gzip")),
            (Compression::Gzip, None),
            (Compression::Zip, Some("zip")),
            (Compression::Snappy, Some("snappy-java")),
            (Compression::Snappy, None),
            (Compression::HadoopSnappy, Some("hadoop-snappy")),
        ] {
            let mut stored = object("k", "", 0);
            stored.body = crate::delivery::encode::compress(raw.clone(), compression, "entry");
            stored.content_encoding = encoding.map(str::to_owned);
            assert_eq!(ids(&stored), ["a", "b"], "{compression:?} with Content-Encoding {encoding:?}");
            assert_eq!(object_records(&stored).0.as_deref(), compression.content_encoding(), "{compression:?}");
        }
        let mut broken = object("k", "", 0);
        broken.body = Bytes::from_static(b"\x1f\x8b not gzip");
        assert!(object_records(&broken).1.unwrap_err().starts_with("cannot decode as Gzip"));
    }
}
