//! Where the broker and S3 run: local processes (the default, no Docker),
//! containers (Redpanda and LocalStack, when a Docker engine answers), or
//! somewhere that already runs them (a team's MSK and S3).
//!
//! Either way the result is a [`Backend`]: a bootstrap address, S3 settings,
//! and a guard that stops everything when dropped, so a test that panics or
//! a sandbox stopped with Ctrl-C leaves no broker or S3 server behind.

mod container;
pub mod external;
mod local_s3;
mod localstack;
mod tansu;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use container::{docker_reachable, remove_own_containers};
pub use local_s3::LocalS3;
pub use localstack::{localstack_python, LocalStackProcess, LOCALSTACK_VERSION};
pub use tansu::{external_tansu, BrokerSettings, BrokerStorage, TansuBroker};

use crate::delivery::sink::{S3Settings, StaticCredentials};
use crate::faults::{Faults, KafkaProxy, S3FaultPlan};
use crate::kafka::KafkaConnection;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    #[error("{0}")]
    TansuMissing(String),
    #[error("tansu broker did not start: {reason}\n--- last lines of {log} ---\n{tail}")]
    TansuStart { reason: String, log: String, tail: String },
    #[error("cannot start the local S3 server on {root}: {source}")]
    S3Start { root: PathBuf, source: std::io::Error },
    #[error("cannot prepare {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("--kafka-port {port}: {source} (another stack or broker there?); stop it, or choose another port")]
    PortInUse { port: u16, source: std::io::Error },
    #[error("no Docker engine answers ({0}); use --backend local, or start Docker")]
    NoDocker(String),
    #[error(
        "fault injection needs the local backend (it wraps the S3 server and proxies the broker); use --backend local"
    )]
    FaultsNeedLocal,
    #[error("container {image} did not start: {detail}")]
    Container { image: String, detail: String },
    #[error("LocalStack is not installed: {0}")]
    LocalStackMissing(String),
    #[error("LocalStack did not start: {reason}\n--- last lines of {log} ---\n{tail}")]
    LocalStackStart { reason: String, log: String, tail: String },
    #[error("{0}")]
    External(String),
}

/// Which backend to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// tansu as a child process and an in-process S3 server over a
    /// directory. Needs no Docker.
    Local,
    /// Redpanda and LocalStack containers (testcontainers).
    Container,
    /// tansu as a child process and LocalStack's S3 as a host process (no
    /// Docker; `just install-localstack`).
    Localstack,
    /// Containers when a Docker engine answers, local processes otherwise.
    Auto,
    /// A cluster and S3 that already run (a team's MSK and AWS S3), from
    /// `STREAMLAB_EXTERNAL_BOOTSTRAP`, `STREAMLAB_KAFKA_SECURITY` and the AWS
    /// chain; nothing is started.
    External,
}

impl BackendKind {
    /// `auto` resolved against this machine.
    pub async fn resolve(self) -> BackendKind {
        self.resolve_for(false).await
    }

    /// `auto` resolved against this machine and the need for faults, which
    /// only the local backend can inject: with faults, `auto` is local even
    /// where Docker answers.
    pub async fn resolve_for(self, faults: bool) -> BackendKind {
        match self {
            BackendKind::Auto if faults => BackendKind::Local,
            BackendKind::Auto if docker_reachable().await.is_ok() => BackendKind::Container,
            BackendKind::Auto => BackendKind::Local,
            other => other,
        }
    }
}

/// A running broker and S3 API. Dropping it stops both.
pub struct Backend {
    pub kind: BackendKind,
    /// How to reach the broker (plaintext for every backend started here).
    pub kafka: KafkaConnection,
    pub s3: S3Settings,
    /// Where landed objects can be browsed as files (local backend only:
    /// `<dir>/<bucket>/<key>`).
    pub landing_dir: Option<PathBuf>,
    /// Fault injection handles, when started with faults.
    pub faults: Option<Faults>,
    _guard: Guard,
}

enum Guard {
    Local {
        broker: Box<TansuBroker>,
        _s3: LocalS3,
    },
    Container {
        _containers: Box<container::Containers>,
    },
    Localstack {
        broker: Box<TansuBroker>,
        _s3: Box<localstack::LocalStackProcess>,
    },
    /// Nothing to stop: the cluster and S3 belong to someone else.
    External,
}

/// Run in a child between fork and exec: the kernel SIGKILLs the child when
/// this process dies, however it dies (SIGKILL, a second Ctrl-C that exits
/// without destructors). `prctl` is async-signal-safe and touches no memory
/// of ours, which is what `pre_exec` requires. The signal comes when the
/// *thread* that spawned the child ends: spawn from a runtime worker or the
/// main thread, never from `spawn_blocking`, whose idle threads exit.
fn die_with_parent() -> std::io::Result<()> {
    // SAFETY: a plain syscall on the calling (child) process.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A loopback port free at the time of asking (there is a small window in
/// which another process could take it; the broker then fails to start and
/// says so).
pub fn free_port() -> Result<u16, BackendError> {
    let fail = |source| BackendError::Io { path: "127.0.0.1:0".into(), source };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(fail)?;
    Ok(listener.local_addr().map_err(fail)?.port())
}

/// Credentials the local S3 server accepts; they only guard a loopback port.
pub fn local_credentials() -> StaticCredentials {
    StaticCredentials { access_key_id: "streamlab".into(), secret_access_key: "streamlab-local-secret".into() }
}

/// How to start a backend.
#[derive(Debug, Clone)]
pub struct BackendOptions {
    pub kind: BackendKind,
    /// Holds the broker log and, for the local backend, the S3 data
    /// (`work_dir/s3`).
    pub work_dir: PathBuf,
    /// Wrap S3 and the broker so faults can be injected (local backend only),
    /// with this seed for a reproducible schedule.
    pub fault_seed: Option<u64>,
    /// Create topics on first use with this many partitions, as Kafka does
    /// with `auto.create.topics.enable` (MSK's default is off).
    pub auto_create_partitions: Option<i32>,
    /// For [`BackendKind::External`]: where the cluster and S3 are; default
    /// from the environment ([`external::ExternalSettings::from_env`]).
    pub external: Option<external::ExternalSettings>,
    /// Keep the local broker's topics and committed offsets in this
    /// directory, every acknowledged write fsync'd, so a restart on it
    /// resumes; `None` keeps them in memory (faster, gone with the process).
    pub broker_data: Option<PathBuf>,
    /// The port clients reach the local broker on (the fault proxy's, with
    /// faults); `None`: a free one.
    pub broker_port: Option<u16>,
}

impl BackendOptions {
    pub fn new(kind: BackendKind, work_dir: impl Into<PathBuf>) -> Self {
        Self {
            kind,
            work_dir: work_dir.into(),
            fault_seed: None,
            auto_create_partitions: None,
            external: None,
            broker_data: None,
            broker_port: None,
        }
    }
}

/// Attempts at starting the broker on a fresh port: another process may take
/// a free port between asking for it and the broker binding it.
const BROKER_START_ATTEMPTS: usize = 3;

impl Backend {
    pub fn bootstrap(&self) -> &str {
        self.kafka.bootstrap()
    }

    /// When dropped, the built-in broker keeps serving until `clients_gone`
    /// says its clients closed (at most 30 s), so their goodbyes are
    /// answered instead of timing out; see [`TansuBroker::serve_until`].
    /// S3 stops at once. Brokers streamlab does not run in-process stop at
    /// once as before.
    pub fn serve_until(&mut self, clients_gone: impl Fn() -> bool + Send + Sync + 'static) {
        if let Guard::Local { broker, .. } | Guard::Localstack { broker, .. } = &mut self._guard {
            broker.serve_until(clients_gone);
        }
    }

    /// Starts a backend. `work_dir` holds the broker log and, for the local
    /// backend, the S3 data (`work_dir/s3`).
    pub async fn start(kind: BackendKind, work_dir: &Path) -> Result<Backend, BackendError> {
        Self::start_with(&BackendOptions::new(kind, work_dir)).await
    }

    /// Starts a backend whose S3 PUTs and broker connections can be faulted
    /// (local backend only); `seed` makes the fault schedule reproducible.
    pub async fn start_with_faults(kind: BackendKind, work_dir: &Path, seed: u64) -> Result<Backend, BackendError> {
        Self::start_with(&BackendOptions { fault_seed: Some(seed), ..BackendOptions::new(kind, work_dir) }).await
    }

    pub async fn start_with(options: &BackendOptions) -> Result<Backend, BackendError> {
        let work_dir = &options.work_dir;
        std::fs::create_dir_all(work_dir).map_err(|source| BackendError::Io { path: work_dir.to_owned(), source })?;
        let faults = options.fault_seed.is_some();
        match options.kind.resolve_for(faults).await {
            BackendKind::Container | BackendKind::Localstack | BackendKind::External if faults => {
                Err(BackendError::FaultsNeedLocal)
            }
            BackendKind::External => {
                let settings = match &options.external {
                    Some(settings) => settings.clone(),
                    None => external::ExternalSettings::from_env().await?,
                };
                Ok(Backend {
                    kind: BackendKind::External,
                    kafka: settings.kafka,
                    s3: settings.s3,
                    landing_dir: None,
                    faults: None,
                    _guard: Guard::External,
                })
            }
            BackendKind::Localstack => {
                // Start S3 first: it is the part that may be missing.
                let s3 = localstack::LocalStackProcess::start(work_dir).await?;
                let broker = Self::start_broker(options).await?;
                Ok(Backend {
                    kind: BackendKind::Localstack,
                    kafka: KafkaConnection::plaintext(broker.bootstrap()),
                    s3: s3.s3(),
                    landing_dir: None,
                    faults: None,
                    _guard: Guard::Localstack { broker: Box::new(broker), _s3: Box::new(s3) },
                })
            }
            BackendKind::Container => {
                let containers = container::Containers::start().await?;
                Ok(Backend {
                    kind: BackendKind::Container,
                    kafka: KafkaConnection::plaintext(&containers.bootstrap),
                    s3: containers.s3.clone(),
                    landing_dir: None,
                    faults: None,
                    _guard: Guard::Container { _containers: Box::new(containers) },
                })
            }
            _ => Self::start_local(options).await,
        }
    }

    /// The broker alone (no faults).
    async fn start_broker(options: &BackendOptions) -> Result<TansuBroker, BackendError> {
        Ok(Self::broker(&BackendOptions { fault_seed: None, ..options.clone() }).await?.0)
    }

    /// tansu on a fresh port, behind the fault proxy when there are faults.
    async fn broker(options: &BackendOptions) -> Result<(TansuBroker, Option<Faults>), BackendError> {
        let work_dir = &options.work_dir;
        let external = external_tansu()?;
        let mut attempt = 0;
        // A port the user chose is not traded for another.
        let attempts = if options.broker_port.is_some() { 1 } else { BROKER_START_ATTEMPTS };
        if let Some(port) = options.broker_port {
            std::net::TcpListener::bind(("127.0.0.1", port))
                .map_err(|source| BackendError::PortInUse { port, source })?;
        }
        let (broker, faults) = loop {
            attempt += 1;
            let port = match (options.broker_port, options.fault_seed) {
                (Some(port), None) => port,
                _ => free_port()?,
            };
            let (faults, advertised) = match options.fault_seed {
                None => (None, None),
                Some(seed) => {
                    let public = options.broker_port.unwrap_or(0);
                    let (proxy, listener) = KafkaProxy::bind(public)
                        .await
                        .map_err(|source| BackendError::Io { path: format!("127.0.0.1:{public}").into(), source })?;
                    proxy.run(listener, std::net::SocketAddr::from(([127, 0, 0, 1], port)));
                    let advertised = proxy.addr().port();
                    (Some(Faults { s3: Arc::new(S3FaultPlan::new(seed)), kafka: Arc::new(proxy) }), Some(advertised))
                }
            };
            let storage = match &options.broker_data {
                Some(dir) => BrokerStorage::Dir(dir.clone()),
                None => BrokerStorage::Memory,
            };
            let settings =
                BrokerSettings { port, advertised, auto_create_partitions: options.auto_create_partitions, storage };
            match TansuBroker::start(external.as_deref(), work_dir, &settings).await {
                Ok(broker) => break (broker, faults),
                Err(e) if attempt < attempts => {
                    tracing::debug!(error = %e, port, "broker did not start; trying another port");
                }
                Err(e) => return Err(e),
            }
        };
        Ok((broker, faults))
    }

    async fn start_local(options: &BackendOptions) -> Result<Backend, BackendError> {
        let (broker, faults) = Self::broker(options).await?;
        let root = options.work_dir.join("s3");
        let credentials = local_credentials();
        let s3 = LocalS3::start(&root, &credentials, faults.as_ref().map(|f| f.s3.clone())).await?;
        Ok(Backend {
            kind: BackendKind::Local,
            kafka: KafkaConnection::plaintext(broker.bootstrap()),
            s3: S3Settings {
                endpoint: Some(s3.endpoint()),
                region: Some("us-east-1".into()),
                credentials: Some(credentials),
            },
            landing_dir: Some(root),
            faults,
            _guard: Guard::Local { broker: Box::new(broker), _s3: s3 },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn auto_with_faults_is_local_wherever_docker_answers() {
        assert_eq!(BackendKind::Auto.resolve_for(true).await, BackendKind::Local);
        assert_eq!(BackendKind::Localstack.resolve_for(false).await, BackendKind::Localstack);
    }
}
