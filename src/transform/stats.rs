//! The Lambda transform's counters, shared with the stream's statistics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The Lambda transform's figures, under Firehose's metric names where it
/// has them.
#[derive(Debug, Default)]
pub struct LambdaStats {
    /// Invocations made (each retry counts).
    pub invocations: AtomicU64,
    /// Invocations that returned a response; with `invocations`,
    /// `ExecuteProcessing.Success`.
    pub successful_invocations: AtomicU64,
    /// `ExecuteProcessing.Duration` of the last invocation, in milliseconds.
    pub last_duration_ms: AtomicU64,
    /// `SucceedProcessing.Records` (results `Ok`; `Dropped` are counted apart).
    pub ok: AtomicU64,
    /// `SucceedProcessing.Bytes`: bytes the function returned for `Ok` records.
    pub ok_bytes: AtomicU64,
    /// Records the function dropped: counted, written nowhere.
    pub dropped: AtomicU64,
    /// Records written under `processing-failed` by the transform.
    pub failed: AtomicU64,
    /// Records waiting for an invocation.
    pub buffered: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl LambdaStats {
    pub(crate) fn record_invocation(&self, took: std::time::Duration, ok: bool) {
        self.invocations.fetch_add(1, Ordering::Relaxed);
        if ok {
            self.successful_invocations.fetch_add(1, Ordering::Relaxed);
        }
        self.last_duration_ms.store(took.as_millis() as u64, Ordering::Relaxed);
    }

    pub(crate) fn set_last_error(&self, error: String) {
        *self.last_error.lock().expect("stats lock") = Some(error);
    }

    /// Why the last failed invocation failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("stats lock").clone()
    }

    /// `ExecuteProcessing.Success` (1 before any invocation).
    pub fn success_ratio(&self) -> f64 {
        let (all, ok) = (self.invocations.load(Ordering::Relaxed), self.successful_invocations.load(Ordering::Relaxed));
        if all == 0 {
            1.0
        } else {
            ok as f64 / all as f64
        }
    }
}
