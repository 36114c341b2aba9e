//! LocalStack's S3 as a host process (no Docker): `python -m
//! localstack.runtime.main` from the venv `just install-localstack` builds,
//! supervised like the broker: its own process group, a log file in the work
//! directory, ready when its health endpoint says S3 is, stopped on drop.
//! LocalStack's own Firehose ignores MSK sources, buffering and compression,
//! so streamlab stays the Firehose and lands into LocalStack's S3.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, BackendError};
use crate::delivery::sink::{S3Settings, StaticCredentials};

/// The version `just install-localstack` installs (the last runtime module
/// that starts without an account).
pub const LOCALSTACK_VERSION: &str = "2026.3.0";

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The venv's Python: `$STREAMLAB_LOCALSTACK` (a Python with
/// `localstack-core[runtime]`), else the one `just install-localstack` makes
/// under `$STREAMLAB_HOME` (default `~/.local/share/streamlab`).
pub fn localstack_python() -> Result<PathBuf, BackendError> {
    if let Some(path) = std::env::var_os("STREAMLAB_LOCALSTACK") {
        return Ok(PathBuf::from(path));
    }
    let home = std::env::var_os("STREAMLAB_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share/streamlab")))
        .ok_or_else(|| BackendError::LocalStackMissing("neither STREAMLAB_HOME nor HOME is set".into()))?;
    let python = home.join(format!("localstack-{LOCALSTACK_VERSION}/bin/python"));
    if python.is_file() {
        Ok(python)
    } else {
        Err(BackendError::LocalStackMissing(format!(
            "{} does not exist; build it with `just install-localstack` (a Python 3.13 venv with localstack-core[runtime]=={LOCALSTACK_VERSION}), or set STREAMLAB_LOCALSTACK to such a Python",
            python.display()
        )))
    }
}

/// A running LocalStack; stopped when dropped.
pub struct LocalStackProcess {
    child: Child,
    port: u16,
}

impl LocalStackProcess {
    pub async fn start(work_dir: &Path) -> Result<Self, BackendError> {
        Self::start_services(work_dir, "s3").await
    }

    /// LocalStack with `services` (its `SERVICES`, such as
    /// `s3,cloudwatch,logs`, so its CloudWatch can be compared with the
    /// stack's); ready once S3 is.
    pub async fn start_services(work_dir: &Path, services: &str) -> Result<Self, BackendError> {
        let python = localstack_python()?;
        let root = work_dir.join("localstack");
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| BackendError::Io { path, source }
        };
        std::fs::create_dir_all(&root).map_err(io(&root))?;
        let log = work_dir.join("localstack.log");
        let out = std::fs::File::create(&log).map_err(io(&log))?;
        let err = out.try_clone().map_err(io(&log))?;
        let port = free_port()?;
        let mut command = Command::new(&python);
        // A SIGKILLed streamlab takes LocalStack with it (it would keep its
        // port and data directory otherwise). SAFETY: see `die_with_parent`.
        unsafe {
            command.pre_exec(super::die_with_parent);
        }
        let child = command
            .args(["-m", "localstack.runtime.main"])
            .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
            .env("OVERRIDE_IN_DOCKER", "0")
            .env("FILESYSTEM_ROOT", &root)
            .env("SERVICES", services)
            .env("DISABLE_EVENTS", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| BackendError::LocalStackMissing(format!("cannot run {}: {e}", python.display())))?;
        let mut process = LocalStackProcess { child, port };
        process.wait_ready(&log).await?;
        Ok(process)
    }

    /// Polls `/_localstack/health` until S3 is available.
    async fn wait_ready(&mut self, log: &Path) -> Result<(), BackendError> {
        let started = Instant::now();
        let url = format!("127.0.0.1:{}", self.port);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.failed(log, format!("it exited ({status})")));
            }
            if health_says_s3_is_up(&url).await {
                tracing::info!(port = self.port, took = ?started.elapsed(), "LocalStack ready");
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(self.failed(log, format!("S3 was not available within {READY_TIMEOUT:?}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn failed(&self, log: &Path, reason: String) -> BackendError {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        BackendError::LocalStackStart {
            reason,
            log: log.display().to_string(),
            tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        }
    }

    /// Where LocalStack answers (every service, one port).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// LocalStack's S3, path-style, with its documented test credentials.
    pub fn s3(&self) -> S3Settings {
        S3Settings {
            endpoint: Some(self.url()),
            region: Some("us-east-1".into()),
            credentials: Some(StaticCredentials { access_key_id: "test".into(), secret_access_key: "test".into() }),
        }
    }
}

impl Drop for LocalStackProcess {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: signalling our own child's process group.
        unsafe { libc::kill(-pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// `GET /_localstack/health` answers `"s3": "available"` (or `"running"`).
async fn health_says_s3_is_up(addr: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else { return false };
    let request = format!("GET /_localstack/health HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut response = String::new();
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut response)).await;
    matches!(read, Ok(Ok(_)))
        && (response.contains("\"s3\": \"available\"")
            || response.contains("\"s3\": \"running\"")
            || response.contains("\"s3\":\"available\"")
            || response.contains("\"s3\":\"running\""))
}
