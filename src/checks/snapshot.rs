//! Snapshots of a landing: a reviewed YAML file of what landed, compared on
//! every run. The file records the masks it was taken with, so `check` masks
//! the new landing the same way; a mismatch prints a unified diff.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::landing::{Landing, Masks};

/// Format version of the snapshot file.
const FORMAT: u32 = 1;

const HEADER: &str = "# streamlab landing snapshot. Review changes like code; after an intended change run\n# `streamlab snapshot update <this file>` (or `streamlab run --snapshot <file> --update-snapshot ...`).\n";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub streamlab_snapshot: u32,
    pub masks: Masks,
    pub landing: Landing,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    #[error("snapshot file {} does not exist; create it with `streamlab snapshot update {}` (or `--update-snapshot`), review it, and commit it", path.display(), path.display())]
    Missing { path: PathBuf },
    #[error("cannot read snapshot file {}: {detail}", path.display())]
    Read { path: PathBuf, detail: String },
    #[error("snapshot file {} does not parse: {detail}. Regenerate it with `streamlab snapshot update {}`", path.display(), path.display())]
    Parse { path: PathBuf, detail: String },
    #[error("cannot write snapshot file {}: {detail}; does its directory exist?", path.display())]
    Write { path: PathBuf, detail: String },
}

/// What comparing with a snapshot found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Comparison {
    Matches,
    /// A unified diff, snapshot (`-`) against this landing (`+`).
    Differs(String),
}

impl Snapshot {
    pub fn new(masks: Masks, landing: Landing) -> Self {
        Snapshot { streamlab_snapshot: FORMAT, masks, landing }
    }

    /// The file's text.
    pub fn render(&self) -> String {
        format!("{HEADER}{}", yaml_serde::to_string(self).expect("a landing serializes to YAML"))
    }

    pub fn load(path: &Path) -> Result<Snapshot, SnapshotError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SnapshotError::Missing { path: path.to_owned() })
            }
            Err(e) => return Err(SnapshotError::Read { path: path.to_owned(), detail: e.to_string() }),
        };
        let snapshot: Snapshot = yaml_serde::from_str(&text)
            .map_err(|e| SnapshotError::Parse { path: path.to_owned(), detail: e.to_string() })?;
        if snapshot.streamlab_snapshot != FORMAT {
            return Err(SnapshotError::Parse {
                path: path.to_owned(),
                detail: format!("format {} is not {FORMAT}", snapshot.streamlab_snapshot),
            });
        }
        Ok(snapshot)
    }

    /// Writes the file (atomically).
    pub fn save(&self, path: &Path) -> Result<(), SnapshotError> {
        let fail = |e: std::io::Error| SnapshotError::Write { path: path.to_owned(), detail: e.to_string() };
        let tmp = path.with_extension("snap.tmp");
        std::fs::write(&tmp, self.render()).map_err(fail)?;
        std::fs::rename(&tmp, path).map_err(fail)
    }

    /// Compares with `other` (taken with the same masks).
    pub fn compare(&self, other: &Snapshot) -> Comparison {
        let (old, new) = (self.render(), other.render());
        if old == new {
            return Comparison::Matches;
        }
        let diff = similar::TextDiff::from_lines(&old, &new);
        Comparison::Differs(diff.unified_diff().context_radius(3).header("snapshot", "landing").to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::landing::{LandedObject, StreamLanding};

    fn landing(value: i64) -> Landing {
        Landing {
            streams: vec![StreamLanding {
                stream: "s".into(),
                bucket: "b".into(),
                destination: serde_json::Value::Null,
                transform: None,
                failing: None,
                objects: vec![LandedObject {
                    key: "k".into(),
                    kind: "data".into(),
                    content_type: Some("application/octet-stream".into()),
                    content_encoding: None,
                    server_side_encryption: None,
                    sse_kms_key_id: None,
                    size: Some(7),
                    sha256: "x".into(),
                    parquet: None,
                    records: 1,
                    data: vec![serde_json::json!({ "a": value })],
                }],
            }],
        }
    }

    #[test]
    fn round_trips_and_diffs_readably() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("landing.snap.yaml");
        let snapshot = Snapshot::new(Masks { uuid: true, ..Masks::default() }, landing(1));
        snapshot.save(&path).unwrap();
        let loaded = Snapshot::load(&path).unwrap();
        assert_eq!(loaded, snapshot);
        assert_eq!(loaded.compare(&snapshot), Comparison::Matches);
        let Comparison::Differs(diff) = loaded.compare(&Snapshot::new(snapshot.masks.clone(), landing(2))) else {
            panic!("a changed record must differ")
        };
        assert!(diff.contains("-      - a: 1") && diff.contains("+      - a: 2"), "{diff}");
    }

    #[test]
    fn missing_and_broken_files_name_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.yaml");
        let err = Snapshot::load(&path).unwrap_err().to_string();
        assert!(err.contains("does not exist") && err.contains("snapshot update"), "{err}");
        std::fs::write(&path, "streamlab_snapshot: [").unwrap();
        let err = Snapshot::load(&path).unwrap_err().to_string();
        assert!(err.contains("does not parse") && err.contains("nope.yaml"), "{err}");
    }
}
