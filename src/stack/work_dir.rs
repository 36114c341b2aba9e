//! Where a stack keeps its files: a temporary directory removed at exit, or
//! the user's `--work-dir`, which keeps the broker's data (topics, records,
//! committed offsets), S3's objects and the manual clock's position so a
//! stack started again on it resumes where the last one stopped, crashed or
//! was killed. One stack at a time owns a kept directory: a lock file
//! (released by the kernel when the holder dies, SIGKILL included) says who.

use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

use super::StackError;

/// The lock file in a kept work dir; it holds the owner's pid.
pub const LOCK_FILE: &str = "streamlab.lock";
/// The broker's data in a kept work dir.
const BROKER_DIR: &str = "broker";
/// The manual clock's last position (milliseconds since the epoch).
const CLOCK_FILE: &str = "clock";

pub(super) enum WorkDir {
    Temporary {
        dir: tempfile::TempDir,
        /// Removed by an aborted exit too.
        _registered: crate::exit_cleanup::Registration,
    },
    Kept {
        path: PathBuf,
        /// Held for the stack's life.
        _lock: File,
    },
}

impl WorkDir {
    /// `dir` created and locked, or a fresh temporary directory (under
    /// `temp_parent`, else the system's temporary directory).
    pub(super) fn open(dir: Option<&Path>, temp_parent: Option<&Path>) -> Result<Self, StackError> {
        let Some(dir) = dir else {
            let parent = temp_parent.map_or_else(std::env::temp_dir, Path::to_owned);
            let temp = tempfile::Builder::new()
                .prefix("streamlab-stack-")
                .tempdir_in(&parent)
                .map_err(|source| StackError::Io { path: parent, source })?;
            let registered = crate::exit_cleanup::register(temp.path());
            return Ok(WorkDir::Temporary { dir: temp, _registered: registered });
        };
        let io = |source| StackError::Io { path: dir.to_owned(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        let lock_path = dir.join(LOCK_FILE);
        let mut lock =
            File::options().read(true).write(true).create(true).truncate(false).open(&lock_path).map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = lock.read_to_string(&mut holder);
                return Err(StackError::WorkDirInUse { path: dir.to_owned(), holder: holder.trim().parse().ok() });
            }
            Err(std::fs::TryLockError::Error(source)) => return Err(io(source)),
        }
        lock.set_len(0)
            .and_then(|()| lock.rewind())
            .and_then(|()| writeln!(lock, "{}", std::process::id()))
            .map_err(io)?;
        Ok(WorkDir::Kept { path: dir.to_owned(), _lock: lock })
    }

    pub(super) fn path(&self) -> &Path {
        match self {
            WorkDir::Temporary { dir, .. } => dir.path(),
            WorkDir::Kept { path, .. } => path,
        }
    }

    /// Where the broker keeps its data: on disk in a kept work dir, else
    /// in memory (`None`).
    pub(super) fn broker_data(&self) -> Option<PathBuf> {
        match self {
            WorkDir::Temporary { .. } => None,
            WorkDir::Kept { path, .. } => Some(path.join(BROKER_DIR)),
        }
    }

    /// Whether what the broker holds outlives this process.
    pub(super) fn is_durable(&self) -> bool {
        matches!(self, WorkDir::Kept { .. })
    }

    /// The manual clock's position saved by a previous stack on this
    /// directory.
    pub(super) fn saved_clock(&self) -> Option<i64> {
        let WorkDir::Kept { path, .. } = self else { return None };
        std::fs::read_to_string(path.join(CLOCK_FILE)).ok()?.trim().parse().ok()
    }

    /// Saves the manual clock's position, so a restart does not move time
    /// backwards. Written whole then renamed.
    pub(super) fn save_clock(&self, now_ms: i64) -> std::io::Result<()> {
        let WorkDir::Kept { path, .. } = self else { return Ok(()) };
        let tmp = path.join(format!("{CLOCK_FILE}.partial"));
        std::fs::write(&tmp, format!("{now_ms}\n"))?;
        std::fs::rename(tmp, path.join(CLOCK_FILE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_dir_is_owned_by_one_stack_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = WorkDir::open(Some(dir.path()), None).unwrap();
        assert!(first.is_durable());
        assert_eq!(first.broker_data(), Some(dir.path().join("broker")));
        match WorkDir::open(Some(dir.path()), None) {
            Err(StackError::WorkDirInUse { holder, .. }) => assert_eq!(holder, Some(std::process::id())),
            other => panic!("expected WorkDirInUse, got {:?}", other.err()),
        }
        drop(first);
        let again = WorkDir::open(Some(dir.path()), None).unwrap();
        assert_eq!(again.saved_clock(), None);
        again.save_clock(1_796_392_800_000).unwrap();
        assert_eq!(again.saved_clock(), Some(1_796_392_800_000));
    }

    #[test]
    fn a_temporary_dir_keeps_nothing() {
        let temp = WorkDir::open(None, None).unwrap();
        assert!(!temp.is_durable());
        assert_eq!(temp.broker_data(), None);
        temp.save_clock(5).unwrap();
        assert_eq!(temp.saved_clock(), None);
    }

    /// The temporary directory goes where it is asked to, and is removed
    /// from there; a parent that cannot hold it is named in the error.
    #[test]
    fn a_temporary_dir_is_made_under_the_parent_given() {
        let parent = tempfile::tempdir().unwrap();
        let temp = WorkDir::open(None, Some(parent.path())).unwrap();
        assert_eq!(temp.path().parent(), Some(parent.path()));
        let path = temp.path().to_owned();
        drop(temp);
        assert!(!path.exists());
        let missing = parent.path().join("missing");
        match WorkDir::open(None, Some(&missing)) {
            Err(StackError::Io { path, .. }) => assert_eq!(path, missing),
            other => panic!("expected Io naming the parent, got {:?}", other.err()),
        }
    }
}
