//! What a run measured that a bill is made of, per stream: records and
//! bytes read, bytes stored, objects, PUTs, error records, Lambda
//! invocations and the partition-key values open at once, over the span of
//! the stack's clock. A stack serves it on its control API and writes it to
//! `usage.json` in its work directory when it stops, so `cost --from-run DIR`
//! prices a run after it ended.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use crate::delivery::DeliveryStats;
use crate::spec::StreamSpec;

/// The file a stack writes in its work directory when it stops.
pub const USAGE_FILE: &str = "usage.json";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunUsage {
    /// From the stack's start to now (or its stop), on its clock: a sped-up
    /// or manual clock counts as the pipeline would have lived.
    pub clock_span_ms: i64,
    pub streams: Vec<StreamUsage>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamUsage {
    pub stream: String,
    pub topic: String,
    pub records_read: u64,
    pub bytes_read: u64,
    /// Bytes stored in S3, error objects included.
    pub bytes_delivered: u64,
    /// Objects stored, error objects included.
    pub objects: u64,
    /// PUT requests made, failed attempts included.
    pub puts: u64,
    pub error_records: u64,
    pub lambda_invocations: u64,
    /// The most data-object prefixes written within one hour (by the time
    /// in the object name): with dynamic partitioning, the key values open
    /// at once; otherwise 1.
    pub partition_keys: u64,
    /// Topic partitions the delivery read.
    pub partitions: u32,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    #[error("{dir} has no {USAGE_FILE}: a stack writes it there when it stops. Give the --work-dir of an `up`, `run` or `sandbox` that has stopped (or --control URL of one that runs)")]
    Missing { dir: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a usage file streamlab wrote: {detail}")]
    Parse { path: PathBuf, detail: String },
}

impl StreamUsage {
    /// `spec`'s figures from its delivery's statistics.
    pub fn of(spec: &StreamSpec, stats: &DeliveryStats) -> StreamUsage {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let landed = stats.landed();
        StreamUsage {
            stream: spec.name().to_owned(),
            topic: spec.topic().to_owned(),
            records_read: get(&stats.records_read),
            bytes_read: get(&stats.bytes_read),
            bytes_delivered: get(&stats.bytes_delivered),
            objects: get(&stats.objects),
            puts: get(&stats.put_successes) + get(&stats.put_failures),
            error_records: get(&stats.error_records),
            lambda_invocations: get(&stats.lambda.invocations),
            partition_keys: if spec.dynamic_partitioning() {
                partition_keys(landed.iter().map(|o| o.key.as_str()))
            } else {
                1
            },
            partitions: stats.positions().len() as u32,
        }
    }
}

/// The most distinct directories among keys named within the same hour.
pub fn partition_keys<'a>(keys: impl Iterator<Item = &'a str>) -> u64 {
    let mut per_hour: BTreeMap<chrono::NaiveDateTime, BTreeSet<&str>> = BTreeMap::new();
    for key in keys {
        if let Some(name) = crate::delivery::naming::parse_object_name(key) {
            per_hour.entry(name.hour()).or_default().insert(name.dir);
        }
    }
    per_hour.values().map(|dirs| dirs.len() as u64).max().unwrap_or(1).max(1)
}

impl RunUsage {
    /// The usage a stack wrote in `dir`.
    pub fn load(dir: &Path) -> Result<RunUsage, UsageError> {
        let path = dir.join(USAGE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(UsageError::Missing { dir: dir.to_owned() })
            }
            Err(source) => return Err(UsageError::Read { path, source }),
        };
        serde_json::from_str(&text).map_err(|e| UsageError::Parse { path, detail: e.to_string() })
    }

    /// Writes `usage.json` in `dir` (whole or not at all).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(format!("{USAGE_FILE}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).expect("usage serializes"))?;
        std::fs::rename(tmp, dir.join(USAGE_FILE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_count_the_prefixes_open_within_one_hour() {
        let id = "0b0e6f4a-1c2d-4e5f-8a9b-0c1d2e3f4a5b";
        let keys = [
            format!("events/event_type=a/2026/07/13/14/orders-by-type-1-2026-07-13-14-00-01-{id}"),
            format!("events/event_type=b/2026/07/13/14/orders-by-type-1-2026-07-13-14-10-01-{id}"),
            format!("events/event_type=a/2026/07/13/14/orders-by-type-1-2026-07-13-14-20-01-{id}"),
            format!("events/event_type=c/2026/07/13/15/orders-by-type-1-2026-07-13-15-00-01-{id}"),
            "not/a/firehose/key.json".to_owned(),
        ];
        assert_eq!(partition_keys(keys.iter().map(String::as_str)), 2);
        assert_eq!(partition_keys(std::iter::empty()), 1);
    }
}
