//! Time, injected.
//!
//! Firehose's behaviour is defined by time: buffers flush after
//! `IntervalInSeconds`, object keys carry the hour of the oldest record. To test
//! that without waiting five minutes, every component that reads time takes a
//! [`Clock`] instead of calling the system clock: the sandbox runs a
//! [`ScaledClock`] (a 300 s interval passes in one wall second at `--speedup
//! 300`), tests run a [`ManualClock`] they advance explicitly.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};

/// A source of "now", in milliseconds since the Unix epoch.
///
/// Milliseconds because that is the resolution of Kafka record timestamps and
/// of the event model's `occurred_at`.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now_millis(&self) -> i64;

    fn now(&self) -> DateTime<Utc> {
        millis_to_datetime(self.now_millis())
    }
}

/// The clock type every component holds.
pub type SharedClock = Arc<dyn Clock>;

/// Converts epoch milliseconds to a UTC date-time, saturating at the range
/// chrono supports (record timestamps come from the network and may be junk).
pub fn millis_to_datetime(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or(if ms < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// Wall-clock time, as production Firehose sees it.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        Utc::now().timestamp_millis()
    }
}

/// Virtual time that runs `speedup` times faster than the wall clock, starting
/// from the wall-clock time at construction.
///
/// Starting at the real "now" keeps object keys plausible (they carry today's
/// date) while letting a 5-minute buffer interval elapse in a second.
#[derive(Debug, Clone)]
pub struct ScaledClock {
    origin_wall: Instant,
    origin_virtual_ms: i64,
    speedup: f64,
}

impl ScaledClock {
    /// `speedup` must be finite and positive; the CLI validates it before
    /// getting here, so a bad value is a programming error.
    pub fn new(speedup: f64) -> Self {
        Self::starting_at(Utc::now().timestamp_millis(), speedup)
    }

    pub fn starting_at(origin_virtual_ms: i64, speedup: f64) -> Self {
        assert!(speedup.is_finite() && speedup > 0.0, "speedup must be a positive number, got {speedup}");
        Self { origin_wall: Instant::now(), origin_virtual_ms, speedup }
    }

    /// How much wall time a span of virtual time takes.
    pub fn wall_duration(&self, virtual_span: Duration) -> Duration {
        virtual_span.div_f64(self.speedup)
    }
}

impl Clock for ScaledClock {
    fn now_millis(&self) -> i64 {
        let elapsed = self.origin_wall.elapsed().as_secs_f64() * 1000.0 * self.speedup;
        self.origin_virtual_ms + elapsed as i64
    }
}

/// A clock that moves only when told to; tests use it to cross buffer
/// intervals instantly and deterministically.
#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicI64,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self { now_ms: AtomicI64::new(start.timestamp_millis()) }
    }

    /// Moves the clock on; it stops at the end of `i64` milliseconds
    /// (292 million years) instead of wrapping or panicking.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        let _ = self.now_ms.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| Some(now.saturating_add(by)));
    }

    pub fn set(&self, to: DateTime<Utc>) {
        self.now_ms.store(to.timestamp_millis(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

/// How a clock moves: what `up`, `run`, the sandbox and `deliver` choose.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClockMode {
    /// Only when told (`advance`): buffer intervals pass instantly and
    /// deterministically. Starts at `start_ms`.
    Manual { start_ms: i64 },
    /// `speedup` times faster than the wall clock, from now.
    Scaled { speedup: f64 },
    /// The wall clock.
    System,
}

impl ClockMode {
    pub fn name(&self) -> &'static str {
        match self {
            ClockMode::Manual { .. } => "manual",
            ClockMode::Scaled { .. } => "scaled",
            ClockMode::System => "system",
        }
    }

    /// The wall clock, or a scaled one when a speed-up is given.
    pub fn from_speedup(speedup: Option<f64>) -> ClockMode {
        speedup.map_or(ClockMode::System, |speedup| ClockMode::Scaled { speedup })
    }

    /// A clock moving this way from now, and its handle when it is manual.
    pub fn start(self) -> (SharedClock, Option<Arc<ManualClock>>) {
        match self {
            ClockMode::Manual { start_ms } => {
                let manual = Arc::new(ManualClock::new(millis_to_datetime(start_ms)));
                (manual.clone(), Some(manual))
            }
            ClockMode::Scaled { speedup } => (Arc::new(ScaledClock::new(speedup)), None),
            ClockMode::System => (Arc::new(SystemClock), None),
        }
    }
}

/// Formats epoch milliseconds as RFC 3339 with millisecond precision and a `Z`
/// suffix, the timestamp format of the event model.
pub fn rfc3339_millis(ms: i64) -> String {
    millis_to_datetime(ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let start = Utc.with_ymd_and_hms(2026, 7, 13, 14, 0, 0).unwrap();
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_secs(301));
        assert_eq!(clock.now_millis(), start.timestamp_millis() + 301_000);
    }

    #[test]
    fn scaled_clock_runs_faster_than_wall_time() {
        let clock = ScaledClock::starting_at(0, 1000.0);
        std::thread::sleep(Duration::from_millis(20));
        // 20 ms of wall time is at least 20 s of virtual time.
        assert!(clock.now_millis() >= 20_000, "virtual now = {}", clock.now_millis());
        assert_eq!(clock.wall_duration(Duration::from_secs(300)), Duration::from_millis(300));
    }

    #[test]
    fn rfc3339_has_millisecond_precision() {
        assert_eq!(rfc3339_millis(1_783_951_200_123), "2026-07-13T14:00:00.123Z");
    }
}
