//! The local backend's Kafka-protocol broker: tansu 0.6.0 with streamlab's
//! storage fixes (`vendor/tansu-storage/README.streamlab.md`), built into
//! streamlab and run in this process on a runtime of its own, with in-memory
//! storage (or files under a work dir) on a loopback port.
//!
//! In-process, because a library user (a team's own test crate) has no
//! `streamlab` binary to run as a child, and because the broker then ends
//! with whatever runs it, however that ends. Its own runtime keeps its
//! threads apart from delivery's and lets a drop stop it and release its port
//! before the drop returns; its log goes to `<work dir>/tansu.log`, not to the
//! host's subscriber. `$STREAMLAB_TANSU` names another tansu binary instead,
//! run as a child process tied to this one (killed on drop, `PR_SET_PDEATHSIG`,
//! its own process group so a terminal's Ctrl-C reaches streamlab first).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use tansu_broker::broker::Broker;
use tansu_broker::coordinator::group::administrator::Controller;
use tansu_storage::StorageContainer;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tracing::{debug, info};

use super::BackendError;
use crate::kafka::{KafkaConnection, KafkaContext};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping broker's tasks get before its threads are left to end
/// on their own (its socket is closed when its listener task is dropped,
/// which happens at once).
const STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// The broker's runtime: two workers were enough for 1M events at the
/// consume ceiling in `just bench` (the child process used as many).
const BROKER_THREADS: usize = 2;
/// The broker encodes and decodes larger frames on its runtime's blocking
/// pool (and syncs segment files there). Tokio lets that pool grow to 512
/// threads; with one connection per client, 100 streams starting at once
/// grew it to 50-110 threads here, more the slower the machine, for CPU
/// work two cores cannot run faster in parallel.
const BROKER_BLOCKING_THREADS: usize = 8;

/// Another broker binary to run instead of the built-in one:
/// `$STREAMLAB_TANSU`, a tansu with streamlab's storage fixes.
pub fn external_tansu() -> Result<Option<PathBuf>, BackendError> {
    match std::env::var_os("STREAMLAB_TANSU") {
        None => Ok(None),
        Some(path) if Path::new(&path).is_file() => Ok(Some(PathBuf::from(path))),
        Some(path) => Err(BackendError::TansuMissing(format!(
            "STREAMLAB_TANSU={} is not a file; unset it to use the broker built into streamlab",
            Path::new(&path).display()
        ))),
    }
}

/// A running broker; stopped when dropped.
pub struct TansuBroker {
    runner: Runner,
    /// The port clients use (the proxy's, when there is one).
    port: u16,
    log: PathBuf,
    /// Set by [`Self::serve_until`]: the drop stops the broker once this
    /// says its clients are gone.
    clients_gone: Option<Box<dyn Fn() -> bool + Send + Sync>>,
}

/// The longest a dropped broker keeps serving for clients that are still
/// closing ([`TansuBroker::serve_until`]).
const SERVE_AFTER_DROP_MAX: Duration = Duration::from_secs(30);

enum Runner {
    /// Built in, on a runtime of its own (`None` once stopped).
    InProcess { runtime: Option<tokio::runtime::Runtime>, task: JoinHandle<Result<(), String>> },
    /// `$STREAMLAB_TANSU` as a child process.
    Child(Child),
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
    /// tansu's storage URL.
    fn url(&self) -> Result<url::Url, BackendError> {
        match self {
            BrokerStorage::Memory => Ok(url::Url::parse("memory://tansu/").expect("a URL")),
            BrokerStorage::Dir(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| BackendError::Io { path: dir.clone(), source })?;
                let dir = dir.canonicalize().map_err(|source| BackendError::Io { path: dir.clone(), source })?;
                let url = url::Url::from_directory_path(&dir).map_err(|()| BackendError::TansuStart {
                    reason: format!("{} cannot be a file:// URL", dir.display()),
                    log: String::new(),
                    tail: String::new(),
                })?;
                Ok(url)
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
    /// Starts the broker as `settings` say, its log in `work_dir/tansu.log`:
    /// the built-in one, or `external` (`$STREAMLAB_TANSU`) as a child.
    pub async fn start(
        external: Option<&Path>,
        work_dir: &Path,
        settings: &BrokerSettings,
    ) -> Result<Self, BackendError> {
        let BrokerSettings { port, advertised, auto_create_partitions, ref storage } = *settings;
        let mut storage_url = storage.url()?;
        if let Some(partitions) = auto_create_partitions {
            storage_url.query_pairs_mut().append_pair("auto_create_topics_partitions", &partitions.to_string());
        }
        let log = work_dir.join("tansu.log");
        let log_file = std::fs::File::create(&log).map_err(|source| BackendError::Io { path: log.clone(), source })?;
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = advertised.unwrap_or(port);
        let advertised_url = format!("tcp://127.0.0.1:{advertised}");
        let runner = match external {
            None => Self::start_in_process(log_file, &url, &advertised_url, storage_url)?,
            Some(binary) => Self::start_child(binary, log_file, &log, &url, &advertised_url, &storage_url, settings)?,
        };
        let mut broker = Self { runner, port: advertised, log, clients_gone: None };
        broker.wait_ready().await?;
        info!(port, "tansu broker ready");
        Ok(broker)
    }

    fn start_in_process(
        log_file: std::fs::File,
        url: &str,
        advertised_url: &str,
        storage_url: url::Url,
    ) -> Result<Runner, BackendError> {
        let failed = |reason: String| BackendError::TansuStart { reason, log: String::new(), tail: String::new() };
        let filter = std::env::var("STREAMLAB_TANSU_LOG").unwrap_or_else(|_| "warn".into());
        let filter = tracing_subscriber::EnvFilter::try_new(&filter).map_err(|e| {
            failed(format!(
                "STREAMLAB_TANSU_LOG={filter:?} is not a log filter ({e}); try `warn` or `tansu_storage=debug`"
            ))
        })?;
        let log = tracing::Dispatch::new(
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(Arc::new(log_file)).with_ansi(false).finish(),
        );
        let thread_log = log.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(BROKER_THREADS)
            .max_blocking_threads(BROKER_BLOCKING_THREADS)
            .thread_name("tansu-broker")
            .enable_all()
            // Every thread of this runtime logs to the broker's file. The
            // guard lives as long as the thread.
            .on_thread_start(move || std::mem::forget(tracing::dispatcher::set_default(&thread_log)))
            .build()
            .map_err(|e| failed(format!("cannot start its runtime: {e}")))?;
        let parse = |url: &str| url::Url::parse(url).map_err(|e| failed(format!("{url}: {e}")));
        let builder = Broker::<Controller<StorageContainer>, StorageContainer>::builder()
            .node_id(tansu_broker::NODE_ID)
            .cluster_id("tansu_cluster")
            .incarnation_id(uuid::Uuid::new_v4())
            .advertised_listener(parse(advertised_url)?)
            .listener(parse(url)?)
            .storage(storage_url)
            .silent(true);
        let task = runtime.spawn(tracing::dispatcher::with_default(&log, || async move {
            let mut broker = builder.build().await.map_err(|e| format!("{e:?}"))?;
            broker.serve(tokio::time::Instant::now()).await.map_err(|e| format!("{e:?}"))
        }));
        Ok(Runner::InProcess { runtime: Some(runtime), task })
    }

    fn start_child(
        binary: &Path,
        log_file: std::fs::File,
        log: &Path,
        url: &str,
        advertised_url: &str,
        storage_url: &url::Url,
        settings: &BrokerSettings,
    ) -> Result<Runner, BackendError> {
        let log_err = log_file.try_clone().map_err(|source| BackendError::Io { path: log.to_path_buf(), source })?;
        let mut command = Command::new(binary);
        command
            .arg("broker")
            .args(["--storage-engine", storage_url.as_str()])
            .args(["--listener-url", url])
            .args(["--advertised-listener-url", advertised_url])
            .env("RUST_LOG", std::env::var("STREAMLAB_TANSU_LOG").unwrap_or_else(|_| "warn".into()))
            // What tansu builds with the patch of streamlab 0.1's
            // tools/tansu read instead of the URL's query.
            .env(
                "TANSU_AUTO_CREATE_TOPICS_PARTITIONS",
                settings.auto_create_partitions.map(|n| n.to_string()).unwrap_or_default(),
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
            reason: format!("cannot run {} (STREAMLAB_TANSU): {e}", binary.display()),
            log: log.display().to_string(),
            tail: String::new(),
        })?;
        Ok(Runner::Child(child))
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
            if let Some(exit) = self.exited().await {
                return Err(self.failure(exit));
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
                // The answer may have come from another listener on the port:
                // a broker that failed to bind it (taken between `free_port`
                // and the bind, by a concurrent stack's fault proxy) has
                // ended by now, and its stack must not talk to another's.
                if let Some(exit) = self.exited().await {
                    return Err(self.failure(exit));
                }
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

impl TansuBroker {
    /// Why the broker is no longer running, if it is not.
    async fn exited(&mut self) -> Option<String> {
        match &mut self.runner {
            Runner::Child(child) => match child.try_wait() {
                Ok(Some(status)) => Some(format!("exited with {status}")),
                _ => None,
            },
            Runner::InProcess { task, .. } if task.is_finished() => Some(match task.await {
                Ok(Ok(())) => "stopped".into(),
                Ok(Err(e)) => e,
                Err(e) => format!("failed: {e}"),
            }),
            Runner::InProcess { .. } => None,
        }
    }
}

impl TansuBroker {
    /// When dropped, keep serving (on a thread of its own, at most
    /// [`SERVE_AFTER_DROP_MAX`]) until `clients_gone` says so; the built-in
    /// broker only. A consumer in
    /// a group says goodbye when it is dropped (its final commit); with the
    /// broker gone, librdkafka waits out `session.timeout.ms` for each,
    /// 10 s per stream of a stack dropped without `shutdown`. The drop then
    /// returns before the port is free.
    pub fn serve_until(&mut self, clients_gone: impl Fn() -> bool + Send + Sync + 'static) {
        self.clients_gone = Some(Box::new(clients_gone));
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        match &mut self.runner {
            Runner::InProcess { runtime, task } => {
                let (runtime, task) = (runtime.take(), task.abort_handle());
                // A runtime cannot be shut down from a thread that runs async
                // code (a drop inside a task), so a plain thread does it.
                let stop = move || {
                    task.abort();
                    if let Some(runtime) = runtime {
                        runtime.shutdown_timeout(STOP_TIMEOUT);
                    }
                };
                match self.clients_gone.take() {
                    // The wait means the port is free once the drop returns.
                    None => {
                        let _ = std::thread::spawn(stop).join();
                    }
                    Some(clients_gone) => {
                        std::thread::spawn(move || {
                            let until = Instant::now() + SERVE_AFTER_DROP_MAX;
                            while !clients_gone() && Instant::now() < until {
                                std::thread::sleep(Duration::from_millis(10));
                            }
                            stop();
                        });
                    }
                }
            }
            // A broker of its own (`$STREAMLAB_TANSU`) stops at once: a
            // `Child` cannot outlive this borrow to be reaped later.
            Runner::Child(child) => {
                // SIGKILL, then reap (SIGKILL takes effect within
                // milliseconds) so not even a zombie outlives the backend.
                let _ = child.start_kill();
                for _ in 0..200 {
                    if !matches!(child.try_wait(), Ok(None)) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}
