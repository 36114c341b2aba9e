//! Files to remove when the process exits without unwinding. A second
//! Ctrl-C aborts a stopping stack with `std::process::exit`, which runs no
//! destructor: without this list its env file would stay behind (and tell
//! the next tool a stack is up) and its temporary directory would fill the
//! disk. Whatever owns such a path registers it for as long as it owns it;
//! the binary calls [`remove_all`] before it exits.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

static PATHS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A path on the list until this is dropped (the owner removed it, or
/// handed it on).
#[derive(Debug)]
#[must_use = "the path leaves the list when this is dropped"]
pub struct Registration {
    path: PathBuf,
}

/// Puts `path` (a file, or a directory removed with its contents) on the
/// list.
pub fn register(path: &Path) -> Registration {
    PATHS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(path.to_owned());
    Registration { path: path.to_owned() }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut paths = PATHS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(at) = paths.iter().rposition(|p| *p == self.path) {
            paths.remove(at);
        }
    }
}

/// Removes every path on the list; for an exit that skips destructors.
/// Errors are ignored: the process is going away either way.
pub fn remove_all() {
    let paths = std::mem::take(&mut *PATHS.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    for path in paths {
        if path.is_dir() {
            let _ = std::fs::remove_dir_all(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_paths_are_removed_and_released_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let (kept, removed, tree) = (dir.path().join("kept"), dir.path().join("removed"), dir.path().join("tree"));
        std::fs::write(&kept, "x").unwrap();
        std::fs::write(&removed, "x").unwrap();
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        let released = register(&kept);
        let (_file, _dir) = (register(&removed), register(&tree));
        drop(released);
        remove_all();
        assert!(kept.exists());
        assert!(!removed.exists());
        assert!(!tree.exists());
    }
}
