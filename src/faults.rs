//! Fault injection: what the harness can do to S3 and to the broker so users
//! (and streamlab's own tests) see the pipeline under trouble.
//!
//! - [`S3FaultPlan`] wraps the local S3 server: PUTs can answer 500 or 503
//!   SlowDown, have their connection reset, be slowed, or succeed with the
//!   response lost (the object is written, the client sees an error and
//!   retries: the classic source of duplicates).
//! - [`KafkaProxy`] is a TCP proxy the broker advertises, so every client
//!   talks through it: it can refuse and cut connections (a broker outage).
//!
//! Decisions come from a seeded RNG, so a fault schedule can be replayed.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// One injected S3 fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Fault {
    /// HTTP 500 InternalError; nothing written.
    InternalError,
    /// HTTP 503 SlowDown; nothing written.
    SlowDown,
    /// The connection is dropped before anything is written.
    Reset,
    /// The object is written, then the connection is dropped: the client
    /// cannot tell it landed.
    LostResponse,
}

/// What happens to the local S3 server's PUTs. Other requests (listing,
/// reading back) are never faulted, so the harness can always inspect.
#[derive(Debug)]
pub struct S3FaultPlan {
    state: Mutex<PlanState>,
    /// Every PUT fails with 503 while set: an outage.
    down: AtomicBool,
    /// Faults injected so far.
    pub injected: AtomicU64,
}

#[derive(Debug)]
struct PlanState {
    rng: ChaCha8Rng,
    error_rate: f64,
    lost_response_rate: f64,
    slow: Option<Duration>,
    queued: VecDeque<S3Fault>,
}

/// What the wrapper does with one PUT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub delay: Option<Duration>,
    pub fault: Option<S3Fault>,
}

impl S3FaultPlan {
    pub fn new(seed: u64) -> Self {
        Self {
            state: Mutex::new(PlanState {
                rng: ChaCha8Rng::seed_from_u64(seed),
                error_rate: 0.0,
                lost_response_rate: 0.0,
                slow: None,
                queued: VecDeque::new(),
            }),
            down: AtomicBool::new(false),
            injected: AtomicU64::new(0),
        }
    }

    /// A fraction of PUTs fail, with 500, 503 SlowDown or a reset in turn.
    pub fn set_error_rate(&self, rate: f64) {
        self.state.lock().expect("plan lock").error_rate = rate.clamp(0.0, 1.0);
    }

    /// A fraction of PUTs are written but answered with a dropped connection.
    pub fn set_lost_response_rate(&self, rate: f64) {
        self.state.lock().expect("plan lock").lost_response_rate = rate.clamp(0.0, 1.0);
    }

    /// Every PUT waits this long first.
    pub fn set_slow(&self, delay: Option<Duration>) {
        self.state.lock().expect("plan lock").slow = delay;
    }

    /// All PUTs fail (503) until `set_down(false)`.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The next PUTs get these faults, in order.
    pub fn fail_next(&self, faults: impl IntoIterator<Item = S3Fault>) {
        self.state.lock().expect("plan lock").queued.extend(faults);
    }

    pub fn decide(&self) -> Decision {
        let mut s = self.state.lock().expect("plan lock");
        let delay = s.slow;
        let fault = if self.down.load(Ordering::SeqCst) {
            Some(S3Fault::SlowDown)
        } else if let Some(f) = s.queued.pop_front() {
            Some(f)
        } else {
            let roll: f64 = s.rng.gen();
            if roll < s.error_rate {
                Some([S3Fault::InternalError, S3Fault::SlowDown, S3Fault::Reset][s.rng.gen_range(0..3)])
            } else if roll < s.error_rate + s.lost_response_rate {
                Some(S3Fault::LostResponse)
            } else {
                None
            }
        };
        if fault.is_some() {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        Decision { delay, fault }
    }
}

/// A TCP proxy in front of the broker. The broker advertises the proxy's
/// address, so producers, consumers and admin clients all pass through it.
#[derive(Debug)]
pub struct KafkaProxy {
    addr: SocketAddr,
    down: watch::Sender<bool>,
    /// Bumped to cut every open connection.
    cuts: watch::Sender<u64>,
    stop: CancellationToken,
}

impl KafkaProxy {
    /// Binds the proxy's port; [`KafkaProxy::run`] starts forwarding.
    /// Binds loopback `port` (0: any free port).
    pub async fn bind(port: u16) -> std::io::Result<(Self, TcpListener)> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let proxy =
            Self { addr, down: watch::channel(false).0, cuts: watch::channel(0).0, stop: CancellationToken::new() };
        Ok((proxy, listener))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Forwards connections to `upstream` until the proxy is dropped.
    pub fn run(&self, listener: TcpListener, upstream: SocketAddr) {
        let (down, cuts, stop) = (self.down.subscribe(), self.cuts.subscribe(), self.stop.clone());
        tokio::spawn(async move {
            loop {
                let (mut client, _) = tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted { Ok(c) => c, Err(_) => continue },
                };
                if *down.borrow() {
                    // Refused: the client sees the connection close at once.
                    drop(client);
                    continue;
                }
                let (mut cut, stop) = (cuts.clone(), stop.clone());
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
                    cut.mark_unchanged();
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => debug!("proxy cut a connection"),
                        () = stop.cancelled() => {}
                    }
                });
            }
        });
    }

    /// Starts or ends an outage: while down, open connections are cut and new
    /// ones refused.
    pub fn set_down(&self, down: bool) {
        self.down.send_replace(down);
        if down {
            self.cut_connections();
        }
    }

    /// Drops every open connection (clients reconnect).
    pub fn cut_connections(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }
}

impl Drop for KafkaProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The faults a run injects, as given to `--faults`: a comma-separated list of
/// `s3-error-rate=0.1`, `s3-lost-response-rate=0.01`, `s3-slow=200ms`,
/// `broker-outage=5s/60s` (down 5 s every 60 s), `broker-connection-drops=30s`
/// (every open broker connection cut every 30 s; clients reconnect).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultSpec {
    pub s3_error_rate: f64,
    pub s3_lost_response_rate: f64,
    pub s3_slow: Option<Duration>,
    /// `(outage length, period)`.
    pub broker_outage: Option<(Duration, Duration)>,
    pub broker_connection_drops: Option<Duration>,
}

impl FromStr for FaultSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut spec = FaultSpec::default();
        let rate = |key: &str, v: &str| -> Result<f64, String> {
            match v.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                _ => Err(format!("{key} must be a fraction between 0 and 1, such as 0.1; got {v:?}")),
            }
        };
        let duration = |key: &str, v: &str| {
            humantime::parse_duration(v).map_err(|e| format!("{key}: {v:?} is not a duration such as 5s ({e})"))
        };
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (key, value) = item.split_once('=').ok_or_else(|| format!("fault {item:?} must be KEY=VALUE"))?;
            match key {
                "s3-error-rate" => spec.s3_error_rate = rate(key, value)?,
                "s3-lost-response-rate" => spec.s3_lost_response_rate = rate(key, value)?,
                "s3-slow" => spec.s3_slow = Some(duration(key, value)?),
                "broker-outage" => {
                    let (length, period) = value
                        .split_once('/')
                        .ok_or_else(|| format!("broker-outage must be LENGTH/PERIOD such as 5s/60s; got {value:?}"))?;
                    let (length, period) = (duration(key, length)?, duration(key, period)?);
                    if length >= period {
                        return Err(format!(
                            "broker-outage length {length:?} must be shorter than its period {period:?}"
                        ));
                    }
                    spec.broker_outage = Some((length, period));
                }
                "broker-connection-drops" => spec.broker_connection_drops = Some(duration(key, value)?),
                other => {
                    return Err(format!(
                        "unknown fault {other:?}; known: s3-error-rate, s3-lost-response-rate, s3-slow, broker-outage, broker-connection-drops"
                    ))
                }
            }
        }
        Ok(spec)
    }
}

/// Handles to the faults of a running backend.
#[derive(Debug, Clone)]
pub struct Faults {
    pub s3: Arc<S3FaultPlan>,
    pub kafka: Arc<KafkaProxy>,
}

impl Faults {
    /// Applies a spec: S3 settings at once, broker outages on a schedule
    /// until `stop` fires.
    pub fn apply(&self, spec: &FaultSpec, stop: CancellationToken) {
        self.s3.set_error_rate(spec.s3_error_rate);
        self.s3.set_lost_response_rate(spec.s3_lost_response_rate);
        self.s3.set_slow(spec.s3_slow);
        if let Some(every) = spec.broker_connection_drops {
            let (kafka, stop) = (self.kafka.clone(), stop.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(every) => kafka.cut_connections(),
                    }
                }
            });
        }
        if let Some((length, period)) = spec.broker_outage {
            let kafka = self.kafka.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(period - length) => {}
                    }
                    kafka.set_down(true);
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = tokio::time::sleep(length) => {}
                    }
                    kafka.set_down(false);
                }
                kafka.set_down(false);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_specs_parse_and_bad_ones_say_why() {
        let spec: FaultSpec = "s3-error-rate=0.1, s3-slow=200ms,broker-outage=5s/60s".parse().unwrap();
        assert_eq!(spec.s3_error_rate, 0.1);
        assert_eq!(spec.s3_slow, Some(Duration::from_millis(200)));
        assert_eq!(spec.broker_outage, Some((Duration::from_secs(5), Duration::from_secs(60))));
        let spec: FaultSpec = "broker-connection-drops=30s".parse().unwrap();
        assert_eq!(spec.broker_connection_drops, Some(Duration::from_secs(30)));
        assert!("s3-error-rate=2".parse::<FaultSpec>().unwrap_err().contains("between 0 and 1"));
        assert!("broker-outage=60s/5s".parse::<FaultSpec>().unwrap_err().contains("shorter"));
        assert!("disk-full=1".parse::<FaultSpec>().unwrap_err().contains("unknown fault"));
    }

    #[test]
    fn error_rate_is_seeded_and_roughly_honoured() {
        let count = |seed| {
            let plan = S3FaultPlan::new(seed);
            plan.set_error_rate(0.1);
            (0..10_000).filter(|_| plan.decide().fault.is_some()).count()
        };
        assert_eq!(count(1), count(1));
        assert!((800..1200).contains(&count(1)), "{}", count(1));
    }

    #[test]
    fn queued_faults_and_outages_come_first() {
        let plan = S3FaultPlan::new(1);
        plan.fail_next([S3Fault::LostResponse, S3Fault::Reset]);
        assert_eq!(plan.decide().fault, Some(S3Fault::LostResponse));
        assert_eq!(plan.decide().fault, Some(S3Fault::Reset));
        assert_eq!(plan.decide().fault, None);
        plan.set_down(true);
        assert_eq!(plan.decide().fault, Some(S3Fault::SlowDown));
    }

    #[tokio::test]
    async fn proxy_forwards_refuses_when_down_and_recovers() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = echo.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = echo.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4];
                    while s.read_exact(&mut buf).await.is_ok() {
                        let _ = s.write_all(&buf).await;
                    }
                });
            }
        });
        let (proxy, listener) = KafkaProxy::bind(0).await.unwrap();
        proxy.run(listener, upstream);
        let roundtrip = |addr| async move {
            let mut c = TcpStream::connect(addr).await.ok()?;
            c.write_all(b"ping").await.ok()?;
            let mut buf = [0u8; 4];
            tokio::time::timeout(Duration::from_secs(1), c.read_exact(&mut buf)).await.ok()?.ok()?;
            Some(buf)
        };
        assert_eq!(roundtrip(proxy.addr()).await, Some(*b"ping"));
        proxy.set_down(true);
        assert_eq!(roundtrip(proxy.addr()).await, None);
        proxy.set_down(false);
        assert_eq!(roundtrip(proxy.addr()).await, Some(*b"ping"));

        // A cut drops an open connection; a new one works at once.
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        open.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        open.read_exact(&mut buf).await.unwrap();
        proxy.cut_connections();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(1), open.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the connection survived the cut: {read:?}");
        assert_eq!(roundtrip(proxy.addr()).await, Some(*b"ping"));
    }
}
