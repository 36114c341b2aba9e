//! What the Firehose API knows, kept in a `--work-dir` so that streams
//! created through the API come back when `up` starts again on it:
//! Terraform's state, a CDK deployment or a test's setup assume the stream
//! still exists. The stream's version and offsets live with the broker
//! (the state topic and the consumer group); this file keeps the rest: the
//! request, tags, timestamps and encryption. One JSON file, written whole
//! then renamed, so a crash leaves the old or the new one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The file's name in the work dir.
pub const FILE: &str = "firehose-streams.json";

/// One stream as the API last knew it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    /// The `CreateDeliveryStream` request, updates merged in.
    pub request: Value,
    pub created_ms: i64,
    pub updated_ms: Option<i64>,
    pub tags: Vec<(String, String)>,
    /// `ENABLED` or `DISABLED` (a change under way is stored as done).
    pub encryption_status: String,
    pub encryption_input: Option<Value>,
    /// Created through the API, not given with `--spec`: only these are
    /// created again at start (a `--spec` stream comes from its file).
    pub api_created: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read the Firehose streams kept in {}: {detail}; fix or delete the file to start without them", path.display())]
pub struct StoreError {
    pub path: PathBuf,
    pub detail: String,
}

/// The file in one work dir.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    pub fn in_dir(dir: &Path) -> Self {
        Store { path: dir.join(FILE) }
    }

    /// What a previous stack kept; nothing when there is no file.
    pub fn load(&self) -> Result<BTreeMap<String, Stored>, StoreError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(StoreError { path: self.path.clone(), detail: e.to_string() }),
        };
        serde_json::from_str(&text).map_err(|e| StoreError { path: self.path.clone(), detail: e.to_string() })
    }

    /// Replaces the file with `streams`.
    pub fn save(&self, streams: &BTreeMap<String, Stored>) -> std::io::Result<()> {
        let tmp = self.path.with_extension("json.partial");
        let text = serde_json::to_vec_pretty(streams).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_saved_loads_back_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::in_dir(dir.path());
        assert!(store.load().unwrap().is_empty());
        let stored = Stored {
            request: serde_json::json!({ "DeliveryStreamName": "orders" }),
            created_ms: 1,
            updated_ms: Some(2),
            tags: vec![("team".into(), "data".into())],
            encryption_status: "DISABLED".into(),
            encryption_input: None,
            api_created: true,
        };
        store.save(&BTreeMap::from([("orders".to_owned(), stored.clone())])).unwrap();
        assert_eq!(store.load().unwrap().get("orders"), Some(&stored));
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "{ not json").unwrap();
        let err = Store::in_dir(dir.path()).load().unwrap_err().to_string();
        assert!(err.contains(FILE) && err.contains("fix or delete"), "{err}");
    }
}
