//! `DeliveryStreamVersion`: 1 for a new stream, one more for each
//! configuration change, as AWS numbers it in object names.
//!
//! AWS keeps the version with the stream. Locally it lives in a small JSON
//! file per stream under a state directory (default
//! `~/.local/state/streamlab/streams/<name>.json`), with the fingerprint of
//! the spec it was given for: when `deliver` starts with a spec whose
//! fingerprint differs, the version grows. (Kafka offset-commit metadata, the
//! natural place next to the consumer group, is dropped by tansu 0.6.)

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::StreamSpec;

#[derive(Debug, thiserror::Error)]
#[error("cannot {action} stream version state {}: {detail}; fix or delete the file, or choose another --state-dir", path.display())]
pub struct VersionError {
    action: &'static str,
    path: PathBuf,
    detail: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct State {
    stream: String,
    version: u32,
    spec_sha256: String,
}

/// Where stream versions are kept.
#[derive(Debug, Clone)]
pub struct VersionStore {
    dir: PathBuf,
}

impl VersionStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `$XDG_STATE_HOME/streamlab`, else `~/.local/state/streamlab`.
    pub fn default_dir() -> PathBuf {
        std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")))
            .unwrap_or_else(|| PathBuf::from(".streamlab-state"))
            .join("streamlab")
    }

    /// The version for this spec, recording it (and bumping it when the
    /// configuration changed since the last start).
    pub fn resolve(&self, spec: &StreamSpec) -> Result<u32, VersionError> {
        let path = self.dir.join("streams").join(format!("{}.json", spec.name));
        let fail = |action, detail: String| VersionError { action, path: path.clone(), detail };
        let previous = match std::fs::read(&path) {
            Ok(bytes) => Some(serde_json::from_slice::<State>(&bytes).map_err(|e| fail("read", e.to_string()))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(fail("read", e.to_string())),
        };
        let version = match previous {
            Some(state) if state.spec_sha256 == spec.fingerprint => return Ok(state.version),
            Some(state) => state.version + 1,
            None => 1,
        };
        let state = State { stream: spec.name.clone(), version, spec_sha256: spec.fingerprint.clone() };
        let parent = path.parent().expect("state path has a parent");
        std::fs::create_dir_all(parent).map_err(|e| fail("write", e.to_string()))?;
        // Write then rename, so a crash never leaves half a file.
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(&state).expect("state serializes");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| fail("write", e.to_string()))?;
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> StreamSpec {
        crate::spec::parse(Path::new("t.json"), text).unwrap()
    }

    const SPEC: &str = include_str!("../../fixtures/streams/orders-to-s3.json");

    #[test]
    fn version_starts_at_one_and_grows_on_configuration_change_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = VersionStore::new(dir.path());
        assert_eq!(store.resolve(&spec(SPEC)).unwrap(), 1);
        assert_eq!(store.resolve(&spec(SPEC)).unwrap(), 1);
        // Reformatting is not a change.
        let reformatted: serde_json::Value = serde_json::from_str(SPEC).unwrap();
        assert_eq!(store.resolve(&spec(&reformatted.to_string())).unwrap(), 1);
        let changed = SPEC.replace("\"SizeInMBs\": 5", "\"SizeInMBs\": 6");
        assert_eq!(store.resolve(&spec(&changed)).unwrap(), 2);
        assert_eq!(store.resolve(&spec(&changed)).unwrap(), 2);
        assert_eq!(store.resolve(&spec(SPEC)).unwrap(), 3);
    }

    #[test]
    fn a_corrupt_state_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("streams")).unwrap();
        std::fs::write(dir.path().join("streams/orders-to-s3.json"), "{").unwrap();
        let err = VersionStore::new(dir.path()).resolve(&spec(SPEC)).unwrap_err().to_string();
        assert!(err.contains("streams/orders-to-s3.json") && err.contains("--state-dir"), "{err}");
    }
}
