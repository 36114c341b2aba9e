//! tansu, a Kafka-protocol broker in Rust, as a child process with in-memory
//! storage on a free loopback port.
//!
//! The child is tied to this process three ways so none is ever orphaned:
//! dropped -> killed (`kill_on_drop`), this process killed -> the kernel kills
//! it (`PR_SET_PDEATHSIG`), and it lives in its own process group so a
//! terminal's Ctrl-C reaches streamlab first, which then shuts down in order.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use sha2::Digest;
use tokio::process::{Child, Command};
use tracing::{debug, info};

use super::BackendError;
use crate::kafka::{KafkaConnection, KafkaContext};

/// How to build the broker streamlab runs: tansu 0.6.0 with streamlab's patch
/// to its storage crate (stock 0.6.0 skips records when a consumer resumes
/// inside a record batch, among other faults; see `tools/tansu/install`).
pub const TANSU_INSTALL: &str = "tools/tansu/install";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The patch the broker is built with; its hash names the install directory,
/// so a binary built from another version of the patch is never picked up.
const TANSU_PATCH: &[u8] = include_bytes!("../../tools/tansu/tansu-storage.patch");

/// Where `tools/tansu/install` puts the binary for the current patch.
pub fn patched_tansu_path() -> Option<PathBuf> {
    let hash = format!("{:x}", sha2::Sha256::digest(TANSU_PATCH));
    let home = std::env::var_os("STREAMLAB_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share/streamlab")))?;
    Some(home.join(format!("tansu-0.6.0-streamlab-{}", &hash[..12])).join("bin/tansu"))
}

/// Finds the broker: `$STREAMLAB_TANSU` if set, else the patched build that
/// `tools/tansu/install` (run by `just install-tools`) makes.
pub fn find_tansu() -> Result<PathBuf, BackendError> {
    if let Some(path) = std::env::var_os("STREAMLAB_TANSU") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(BackendError::TansuMissing(format!("STREAMLAB_TANSU={} is not a file", path.display())))
        };
    }
    match patched_tansu_path() {
        Some(path) if path.is_file() => Ok(path),
        Some(path) => Err(BackendError::TansuMissing(format!(
            "{} does not exist; build it with `just install-tools` (runs `{TANSU_INSTALL}`, about 10 minutes once), or set STREAMLAB_TANSU to a patched tansu",
            path.display()
        ))),
        None => Err(BackendError::TansuMissing(
            "neither STREAMLAB_HOME nor HOME is set, so the patched tansu cannot be found; set STREAMLAB_TANSU".into(),
        )),
    }
}

/// A running broker; killed when dropped.
pub struct TansuBroker {
    child: Child,
    /// The port clients use (the proxy's, when there is one).
    port: u16,
    log: PathBuf,
}

/// Where the broker keeps topics and committed offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerStorage {
    /// In memory: the fastest, gone when the broker stops.
    Memory,
    /// On disk in this directory (tansu's DynoStore on files, streamlab's
    /// storage patch): every acknowledged write is fsync'd, and a broker
    /// started again on the directory has every topic, record and offset.
    Dir(PathBuf),
}

impl BrokerStorage {
    /// tansu's `--storage-engine` URL.
    fn url(&self) -> Result<String, BackendError> {
        match self {
            BrokerStorage::Memory => Ok("memory://tansu/".into()),
            BrokerStorage::Dir(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| BackendError::Io { path: dir.clone(), source })?;
                let dir = dir.canonicalize().map_err(|source| BackendError::Io { path: dir.clone(), source })?;
                let url = url::Url::from_directory_path(&dir).map_err(|()| BackendError::TansuStart {
                    reason: format!("{} cannot be a file:// URL", dir.display()),
                    log: String::new(),
                    tail: String::new(),
                })?;
                Ok(url.to_string())
            }
        }
    }
}

/// How to start the broker.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    pub port: u16,
    /// The port clients are told to use (a proxy in front of the broker),
    /// if not `port`.
    pub advertised: Option<u16>,
    /// Kafka's `auto.create.topics.enable` with this many partitions per
    /// created topic.
    pub auto_create_partitions: Option<i32>,
    pub storage: BrokerStorage,
}

impl TansuBroker {
    /// Starts tansu as `settings` say, its log in `work_dir/tansu.log`.
    pub async fn start(binary: &Path, work_dir: &Path, settings: &BrokerSettings) -> Result<Self, BackendError> {
        let BrokerSettings { port, advertised, auto_create_partitions, ref storage } = *settings;
        let storage_url = storage.url()?;
        let log = work_dir.join("tansu.log");
        let log_file = std::fs::File::create(&log).map_err(|source| BackendError::Io { path: log.clone(), source })?;
        let log_err = log_file.try_clone().map_err(|source| BackendError::Io { path: log.clone(), source })?;
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = advertised.unwrap_or(port);
        let advertised_url = format!("tcp://127.0.0.1:{advertised}");
        let mut command = Command::new(binary);
        command
            .arg("broker")
            .args(["--storage-engine", &storage_url])
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &advertised_url])
            .env("RUST_LOG", std::env::var("STREAMLAB_TANSU_LOG").unwrap_or_else(|_| "warn".into()))
            .env(
                "TANSU_AUTO_CREATE_TOPICS_PARTITIONS",
                auto_create_partitions.map(|n| n.to_string()).unwrap_or_default(),
            )
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .kill_on_drop(true)
            .process_group(0);
        // SAFETY: see `die_with_parent`.
        unsafe {
            command.pre_exec(super::die_with_parent);
        }
        let child = command.spawn().map_err(|e| BackendError::TansuStart {
            reason: format!("cannot run {}: {e}", binary.display()),
            log: log.display().to_string(),
            tail: String::new(),
        })?;
        let mut broker = Self { child, port: advertised, log };
        broker.wait_ready().await?;
        info!(port, "tansu broker ready");
        Ok(broker)
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn failure(&self, reason: String) -> BackendError {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        BackendError::TansuStart {
            reason,
            log: self.log.display().to_string(),
            tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        }
    }

    /// Ready means a Kafka metadata request is answered, not just that the
    /// port is open.
    async fn wait_ready(&mut self) -> Result<(), BackendError> {
        let started = Instant::now();
        let bootstrap = self.bootstrap();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.failure(format!("exited with {status}")));
            }
            let probe = bootstrap.clone();
            let answered = tokio::task::spawn_blocking(move || {
                let kafka = KafkaConnection::plaintext(probe);
                let consumer: BaseConsumer<KafkaContext> = kafka.create(&kafka.config()).ok()?;
                consumer.fetch_metadata(None, Duration::from_millis(500)).ok()
            })
            .await
            .ok()
            .flatten()
            .is_some();
            if answered {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(self.failure(format!("no answer on {bootstrap} within {READY_TIMEOUT:?}")));
            }
            debug!("waiting for tansu");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        // SIGKILL, then reap (SIGKILL takes effect within milliseconds) so not
        // even a zombie outlives the backend.
        let _ = self.child.start_kill();
        for _ in 0..200 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
