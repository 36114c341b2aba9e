//! What landed, decoded: every object of each stream read back through the S3
//! API (as a downstream reader would), with its headers, its decoded records
//! and a digest of its bytes. This is what `streamlab landing` prints, what
//! snapshots compare and what the Rust API hands to `insta`.
//!
//! Objects are attributed to streams by key shape (a bucket may hold several
//! streams), using the same patterns that check keys against AWS's format.
//! Masking replaces the parts of keys that differ between two runs of the same
//! input (uuids and random strings when no seed was given; times when the
//! records carry wall-clock timestamps) and, on request, record fields.

use std::collections::BTreeSet;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::delivery::encode::decompress;
use crate::harness::{self, HarnessError, StoredObject};
use crate::prefix::{KeyPart, KeyPattern};
use crate::spec::{Compression, StreamSpec};

/// Every stream's landing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Landing {
    pub streams: Vec<StreamLanding>,
}

/// One stream's objects, sorted by key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamLanding {
    pub stream: String,
    pub bucket: String,
    /// The stream's `ExtendedS3DestinationConfiguration`.
    #[serde(default)]
    pub destination: serde_json::Value,
    /// With a Lambda transform: what it did with the records so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<TransformCounts>,
    /// Set while objects of the stream fail to land: the landing is not
    /// complete, whatever it shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing: Option<crate::delivery::PutFailure>,
    pub objects: Vec<LandedObject>,
}

/// Records a Lambda transform returned `Ok`, dropped, or failed (those land
/// under `processing-failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransformCounts {
    pub ok: u64,
    pub dropped: u64,
    pub failed: u64,
}

impl TransformCounts {
    pub fn of(stats: &crate::delivery::DeliveryStats) -> Self {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        TransformCounts {
            ok: get(&stats.lambda.ok),
            dropped: get(&stats.lambda.dropped),
            failed: get(&stats.lambda.failed),
        }
    }
}

/// A Parquet object's schema (as `parquet-tools schema` prints it), codec
/// and row groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParquetSchema {
    pub schema: String,
    pub codec: String,
    pub row_groups: usize,
}

/// One object as a reader sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LandedObject {
    pub key: String,
    /// `data`, or the error-output-type of an error object.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content_encoding: Option<String>,
    /// `x-amz-server-side-encryption`, when set.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub server_side_encryption: Option<String>,
    /// `x-amz-server-side-encryption-aws-kms-key-id`, when set.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sse_kms_key_id: Option<String>,
    /// Bytes as stored; absent when record fields were redacted (the bytes
    /// hold what was redacted).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub size: Option<usize>,
    /// SHA-256 of the decoded bytes.
    pub sha256: String,
    /// With format conversion: the Parquet file's schema, codec and row
    /// groups (its rows are `data`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub parquet: Option<ParquetSchema>,
    /// Number of records decoded.
    pub records: usize,
    /// The records: JSON values where they parse, else text, else
    /// `{"base64": ...}`.
    pub data: Vec<serde_json::Value>,
}

impl LandedObject {
    pub fn is_error(&self) -> bool {
        self.kind != "data"
    }
}

/// What to mask so two runs of the same input compare equal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Masks {
    /// Uuids in keys (random unless the stack was seeded).
    #[serde(default)]
    pub uuid: bool,
    /// `!{firehose:random-string}` values in keys.
    #[serde(default)]
    pub random: bool,
    /// Times in keys: needed when producers stamp records with the wall
    /// clock, since key times come from record timestamps.
    #[serde(default)]
    pub time: bool,
    /// Record fields replaced by `"[redacted]"`: paths like `.event_id`,
    /// `.order.placed_at`, `.items[].sku`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redact: Vec<String>,
}

impl Masks {
    /// Parses `uuid,random,time`.
    pub fn parse_list(list: &str) -> Result<Masks, String> {
        let mut masks = Masks::default();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "uuid" => masks.uuid = true,
                "random" => masks.random = true,
                "time" => masks.time = true,
                "none" => {}
                other => return Err(format!("unknown mask {other:?}; masks are uuid, random, time (or none)")),
            }
        }
        Ok(masks)
    }

    pub fn is_empty(&self) -> bool {
        !self.uuid && !self.random && !self.time && self.redact.is_empty()
    }
}

/// Checks a redaction path: `.field`, `.a.b`, `.items[].sku`.
pub fn check_redact_path(path: &str) -> Result<(), String> {
    let steps = path.strip_prefix('.').ok_or_else(|| format!("{path:?} must start with `.`, e.g. .event_id"))?;
    for step in steps.split('.') {
        let name = step.strip_suffix("[]").unwrap_or(step);
        if name.is_empty() || name.contains(['[', ']']) {
            return Err(format!("{path:?} is not a field path such as .event_id, .order.id or .items[].sku"));
        }
    }
    Ok(())
}

/// Key patterns of one stream: its data objects and its error objects.
#[derive(Debug, Clone)]
pub struct StreamKeys {
    pub data: KeyPattern,
    pub error: KeyPattern,
}

impl StreamKeys {
    pub fn new(spec: &StreamSpec) -> Self {
        Self {
            data: KeyPattern::new(spec.prefix(), spec.name(), spec.extension()),
            error: KeyPattern::new(spec.error_prefix(), spec.name(), ""),
        }
    }

    /// `Some("data")`, `Some(<error-output-type>)`, or `None` for a key this
    /// stream did not write.
    pub fn classify(&self, key: &str) -> Option<String> {
        // An error prefix can look like a data prefix (both may be literal):
        // the error-output-type decides.
        if let Some(parts) = self.error.parts(key) {
            if let Some((_, _, range)) = parts.iter().find(|(p, _, _)| *p == KeyPart::ErrorOutputType) {
                return Some(key[range.clone()].to_owned());
            }
        }
        if self.data.is_match(key) {
            return Some("data".into());
        }
        None
    }
}

/// Decoded object bytes as records: JSON values where the bytes are a
/// stream of JSON values, else lines of text, else one base64 blob.
pub fn parse_records(decoded: &[u8]) -> Vec<serde_json::Value> {
    match harness::json_records(decoded) {
        Ok(values) => values,
        Err(_) => match std::str::from_utf8(decoded) {
            Ok(text) if text.contains('\n') => {
                text.lines().filter(|l| !l.is_empty()).map(|l| serde_json::Value::String(l.to_owned())).collect()
            }
            Ok(text) => vec![serde_json::Value::String(text.to_owned())],
            Err(_) => vec![serde_json::json!({ "base64": BASE64.encode(decoded) })],
        },
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LandingError {
    #[error(transparent)]
    Read(#[from] HarnessError),
    #[error("cannot decode s3://{bucket}/{key} as {compression:?}: {detail}")]
    Decode { bucket: String, key: String, compression: Compression, detail: String },
    #[error("{key} is not a readable Parquet file: {detail}")]
    Parquet { key: String, detail: String },
}

/// One object of a stream, decoded to the bytes its records were written as.
#[derive(Debug, Clone)]
pub struct RawObject {
    pub key: String,
    /// `data`, or the error-output-type.
    pub kind: String,
    pub stored: StoredObject,
    pub decoded: Vec<u8>,
}

/// A stream's specs over its life: what it writes with now, and what it
/// wrote with before (`UpdateDestination` can move the prefix or change the
/// compression and extension). Objects of every one of them are the
/// stream's, not strangers.
#[derive(Debug, Clone)]
pub struct StreamHistory {
    pub current: StreamSpec,
    /// Earlier specs, oldest first.
    pub earlier: Vec<StreamSpec>,
}

impl From<StreamSpec> for StreamHistory {
    fn from(current: StreamSpec) -> Self {
        StreamHistory { current, earlier: Vec::new() }
    }
}

impl StreamHistory {
    /// The spec whose key shape `key` has (the newest first), with its kind.
    /// Each spec the stream had, newest first, with its key shapes: built
    /// once per read (a shape compiles patterns; 100 streams of objects
    /// classified against shapes built per key took 110 s).
    fn shapes(&self) -> Vec<(&StreamSpec, StreamKeys)> {
        std::iter::once(&self.current).chain(self.earlier.iter().rev()).map(|s| (s, StreamKeys::new(s))).collect()
    }
}

/// Every object each stream wrote, decoded, in key order per stream; and the
/// keys in those buckets that no stream's shape matches. Only keys under
/// `under` are read ("" for the whole bucket; a run's key prefix in a shared
/// bucket).
pub async fn read_raw(
    client: &aws_sdk_s3::Client,
    streams: &[StreamHistory],
    under: &str,
) -> Result<(Vec<(String, Vec<RawObject>)>, Vec<(String, String)>), LandingError> {
    let buckets: BTreeSet<&str> =
        streams.iter().flat_map(|h| std::iter::once(&h.current).chain(&h.earlier)).map(|s| s.bucket()).collect();
    let mut out: Vec<(String, Vec<RawObject>)> =
        streams.iter().map(|h| (h.current.name().to_owned(), Vec::new())).collect();
    let mut strangers = Vec::new();
    let shapes: Vec<Vec<(&StreamSpec, StreamKeys)>> = streams.iter().map(StreamHistory::shapes).collect();
    // Every bucket read at once (a stack of a hundred streams has a hundred
    // buckets), then classified in bucket order.
    let read = futures::future::try_join_all(buckets.iter().map(|bucket| harness::read_under(client, bucket, under)));
    for (bucket, objects) in buckets.iter().copied().zip(read.await?) {
        // Streams with no spec writing to this bucket cannot own its objects.
        let here: Vec<bool> =
            shapes.iter().map(|specs| specs.iter().any(|(spec, _)| spec.bucket() == bucket)).collect();
        for object in objects {
            let owner = shapes.iter().enumerate().filter(|(i, _)| here[*i]).find_map(|(i, specs)| {
                // The stream's newest spec whose key shape matches decides,
                // and the object must be in that spec's bucket.
                let (spec, kind) = specs.iter().find_map(|(spec, keys)| Some((*spec, keys.classify(&object.key)?)))?;
                (spec.bucket() == bucket).then_some((i, spec, kind))
            });
            let Some((i, spec, kind)) = owner else {
                strangers.push((bucket.to_owned(), object.key.clone()));
                continue;
            };
            let compression = if kind == "data" { spec.compression() } else { Compression::Uncompressed };
            let decoded = decompress(&object.body, compression).map_err(|e| LandingError::Decode {
                bucket: bucket.to_owned(),
                key: object.key.clone(),
                compression,
                detail: e.to_string(),
            })?;
            out[i].1.push(RawObject { key: object.key.clone(), kind, stored: object, decoded });
        }
    }
    for (_, objects) in &mut out {
        objects.sort_by(|a, b| a.key.cmp(&b.key));
    }
    Ok((out, strangers))
}

/// Reads every stream's objects under `under` from S3.
pub async fn read(client: &aws_sdk_s3::Client, specs: &[StreamSpec], under: &str) -> Result<Landing, LandingError> {
    let histories: Vec<StreamHistory> = specs.iter().cloned().map(StreamHistory::from).collect();
    read_history(client, &histories, under).await
}

/// [`read`] of streams whose specs changed over their life.
pub async fn read_history(
    client: &aws_sdk_s3::Client,
    histories: &[StreamHistory],
    under: &str,
) -> Result<Landing, LandingError> {
    let (raw, _) = read_raw(client, histories, under).await?;
    let mut streams = Vec::new();
    for (spec, (_, objects)) in histories.iter().map(|h| &h.current).zip(raw) {
        let landed = objects
            .into_iter()
            .map(|o| {
                let parquet = (spec.conversion().is_some() && o.kind == "data")
                    .then(|| crate::convert::read_parquet(&o.decoded))
                    .transpose()
                    .map_err(|detail| LandingError::Parquet { key: o.key.clone(), detail })?;
                let data = match &parquet {
                    Some(content) => content.rows.clone(),
                    None => parse_records(&o.decoded),
                };
                Ok(LandedObject {
                    parquet: parquet.map(|p| ParquetSchema {
                        schema: p.schema,
                        codec: p.codec,
                        row_groups: p.row_groups,
                    }),
                    key: o.key,
                    kind: o.kind,
                    content_type: o.stored.content_type,
                    content_encoding: o.stored.content_encoding,
                    server_side_encryption: o.stored.server_side_encryption,
                    sse_kms_key_id: o.stored.sse_kms_key_id,
                    size: Some(o.stored.body.len()),
                    sha256: format!("{:x}", Sha256::digest(&o.decoded)),
                    records: data.len(),
                    data,
                })
            })
            .collect::<Result<_, LandingError>>()?;
        streams.push(StreamLanding {
            stream: spec.name().to_owned(),
            bucket: spec.bucket().to_owned(),
            destination: spec.destination().clone(),
            transform: None,
            failing: None,
            objects: landed,
        });
    }
    Ok(Landing { streams })
}

impl Landing {
    /// The landing of one stream.
    pub fn stream(&self, name: &str) -> Option<&StreamLanding> {
        self.streams.iter().find(|s| s.stream == name)
    }

    /// Only the named stream, or everything.
    pub fn only(mut self, stream: Option<&str>) -> Landing {
        if let Some(name) = stream {
            self.streams.retain(|s| s.stream == name);
        }
        self
    }

    /// Data records across every stream.
    pub fn data_records(&self) -> usize {
        self.streams.iter().flat_map(|s| &s.objects).filter(|o| !o.is_error()).map(|o| o.records).sum()
    }

    /// The landing with `masks` applied; objects re-sorted by their masked
    /// key (then content) so the order does not depend on what was masked.
    pub fn masked(&self, specs: &[StreamSpec], masks: &Masks) -> Landing {
        let mut out = self.clone();
        for stream in &mut out.streams {
            let Some(spec) = specs.iter().find(|s| s.name() == stream.stream) else { continue };
            let keys = StreamKeys::new(spec);
            for object in &mut stream.objects {
                let pattern = if object.is_error() { &keys.error } else { &keys.data };
                object.key = mask_key(pattern, &object.key, masks);
                for record in &mut object.data {
                    for path in &masks.redact {
                        redact(record, path);
                    }
                }
                if !masks.redact.is_empty() {
                    // The digest and the size cover what was redacted: the
                    // digest is recomputed over what is shown, the size left
                    // out.
                    let shown = serde_json::to_vec(&object.data).expect("values serialize");
                    object.sha256 = format!("{:x}", Sha256::digest(&shown));
                    object.size = None;
                }
            }
            stream.objects.sort_by(|a, b| (&a.key, &a.sha256).cmp(&(&b.key, &b.sha256)));
        }
        out
    }
}

impl Landing {
    /// A table per stream: key, kind, records, bytes stored, encoding.
    pub fn render_table(&self) -> String {
        let mut out = String::new();
        for stream in &self.streams {
            let records: usize = stream.objects.iter().filter(|o| !o.is_error()).map(|o| o.records).sum();
            let errors: usize = stream.objects.iter().filter(|o| o.is_error()).map(|o| o.records).sum();
            out += &format!(
                "stream {} -> s3://{}/: {} objects, {records} records, {errors} error records\n",
                stream.stream,
                stream.bucket,
                stream.objects.len()
            );
            if let Some(t) = stream.transform {
                out += &format!(
                    "  Lambda transform: {} records processed: {} Ok, {} dropped, {} failed (under processing-failed)\n",
                    t.ok + t.dropped + t.failed,
                    t.ok,
                    t.dropped,
                    t.failed
                );
            }
            if let Some(failing) = &stream.failing {
                out += &format!("  NOT COMPLETE: {failing}\n");
            }
            if stream.objects.is_empty() {
                out += "  (nothing landed)\n";
                continue;
            }
            let width = stream.objects.iter().map(|o| o.key.len()).max().unwrap_or(3).max(3);
            out += &format!("  {:<width$}  {:<26}  {:>8}  {:>10}  encoding\n", "key", "kind", "records", "bytes");
            for o in &stream.objects {
                out += &format!(
                    "  {:<width$}  {:<26}  {:>8}  {:>10}  {}\n",
                    o.key,
                    o.kind,
                    o.records,
                    o.size.map_or_else(|| "-".to_owned(), |n| n.to_string()),
                    o.content_encoding.as_deref().unwrap_or("-")
                );
            }
        }
        out
    }
}

/// Replaces the masked parts of a key with `[uuid]`, `[random]` or
/// `[<pattern>]`.
pub fn mask_key(pattern: &KeyPattern, key: &str, masks: &Masks) -> String {
    let Some(parts) = pattern.parts(key) else { return key.to_owned() };
    let mut out = String::with_capacity(key.len());
    let mut at = 0;
    for (part, label, range) in parts {
        let replacement = match part {
            KeyPart::Uuid if masks.uuid => "[uuid]".to_owned(),
            KeyPart::RandomString if masks.random => "[random]".to_owned(),
            KeyPart::Time if masks.time => format!("[{label}]"),
            _ => continue,
        };
        out.push_str(&key[at..range.start]);
        out.push_str(&replacement);
        at = range.end;
    }
    out.push_str(&key[at..]);
    out
}

/// Replaces the value at `path` (see [`check_redact_path`]) with
/// `"[redacted]"`, wherever it exists.
fn redact(value: &mut serde_json::Value, path: &str) {
    fn walk(value: &mut serde_json::Value, steps: &[&str]) {
        let Some((step, rest)) = steps.split_first() else { return };
        let (name, each) = match step.strip_suffix("[]") {
            Some(name) => (name, true),
            None => (*step, false),
        };
        let Some(child) = value.as_object_mut().and_then(|o| o.get_mut(name)) else { return };
        match (each, rest.is_empty()) {
            (false, true) => *child = serde_json::Value::String("[redacted]".into()),
            (false, false) => walk(child, rest),
            (true, _) => {
                let Some(items) = child.as_array_mut() else { return };
                for item in items {
                    if rest.is_empty() {
                        *item = serde_json::Value::String("[redacted]".into());
                    } else {
                        walk(item, rest);
                    }
                }
            }
        }
    }
    let steps: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    walk(value, &steps);
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn spec(file: &str) -> StreamSpec {
        crate::spec::load(Path::new(&format!("fixtures/streams/{file}"))).unwrap()
    }

    #[test]
    fn keys_are_attributed_and_masked_by_shape() {
        let spec = spec("dynamic-partitioning-event-type.json");
        let keys = StreamKeys::new(&spec);
        let data = "events/event_type=order_placed/2026/03/08/06/orders-by-type-1-2026-03-08-06-58-00-0f8fad5b-d9cb-469f-a165-70867728950e";
        let error = "errors/metadata-extraction-failed/2026/03/08/06/orders-by-type-1-2026-03-08-06-58-00-0f8fad5b-d9cb-469f-a165-70867728950e";
        assert_eq!(keys.classify(data).as_deref(), Some("data"));
        assert_eq!(keys.classify(error).as_deref(), Some("metadata-extraction-failed"));
        assert_eq!(
            keys.classify("events/orders-to-s3-1-2026-03-08-06-58-00-0f8fad5b-d9cb-469f-a165-70867728950e"),
            None
        );
        let masks = Masks { uuid: true, time: true, ..Masks::default() };
        assert_eq!(
            mask_key(&keys.data, data, &masks),
            "events/event_type=order_placed/[yyyy/MM/dd/HH]/orders-by-type-1-[yyyy-MM-dd-HH-mm-ss]-[uuid]"
        );
    }

    #[test]
    fn random_strings_mask_separately() {
        let spec = spec("random-string-prefix.json");
        let keys = StreamKeys::new(&spec);
        let prefix = spec.prefix().clone();
        let mut n = 0;
        let mut random = || {
            n += 1;
            format!("Ab{n:09}")
        };
        let mut ctx = crate::prefix::RenderContext {
            instant: chrono::DateTime::from_timestamp(1_772_953_080, 0).unwrap(),
            time_zone: chrono_tz::Tz::UTC,
            random_string: &mut random,
            error_output_type: None,
            partition_key: &|_, _| None,
        };
        let key = format!(
            "{}{}-1-2026-03-08-06-58-00-0f8fad5b-d9cb-469f-a165-70867728950e{}",
            prefix.render(&mut ctx).unwrap(),
            spec.name(),
            spec.extension()
        );
        assert!(keys.data.is_match(&key), "{key}");
        let masked = mask_key(&keys.data, &key, &Masks { random: true, ..Masks::default() });
        assert!(masked.contains("[random]") && !masked.contains("Ab0") && masked.contains("0f8fad5b"), "{masked}");
    }

    #[test]
    fn redaction_follows_paths_into_arrays() {
        let mut v =
            serde_json::json!({"event_id": "e1", "items": [{"sku": "a", "n": 1}, {"sku": "b"}], "o": {"id": 3}});
        for path in [".event_id", ".items[].sku", ".o.id", ".missing.deep"] {
            check_redact_path(path).unwrap();
            redact(&mut v, path);
        }
        assert_eq!(
            v,
            serde_json::json!({"event_id": "[redacted]", "items": [{"sku": "[redacted]", "n": 1}, {"sku": "[redacted]"}], "o": {"id": "[redacted]"}})
        );
        assert!(check_redact_path("event_id").is_err());
        assert!(check_redact_path(".a[0]").is_err());
    }

    #[test]
    fn records_parse_as_json_text_or_base64() {
        assert_eq!(parse_records(b"{\"a\":1}{\"a\":2}").len(), 2);
        assert_eq!(parse_records(b"x y\nz\n"), vec![serde_json::json!("x y"), serde_json::json!("z")]);
        assert_eq!(parse_records(&[0xff, 0xfe]), vec![serde_json::json!({"base64": "//4="})]);
    }
}
