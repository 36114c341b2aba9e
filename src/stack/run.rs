//! `streamlab up` and `streamlab run`: a stack with its control endpoint and
//! env file, and (for `run`) the user's command against it, then checks of
//! what landed.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::control::{ControlServer, CONTROL_ENV};
use super::firehose::{Firehose, FirehoseServer, ENDPOINT_ENV as FIREHOSE_ENV};
use super::{Stack, StackError, StackOptions};
use crate::checks::expect::{Expectation, Outcome};
use crate::checks::snapshot::{Comparison, Snapshot, SnapshotError};
use crate::landing::{Landing, Masks};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error(transparent)]
    Stack(Box<StackError>),
    #[error("--env-file {}: its directory {} does not exist; create it or choose another path", path.display(), dir.display())]
    EnvDir { path: PathBuf, dir: PathBuf },
    #[error("--env-file {}: it belongs to a stack that is still running (streamlab pid {pid}); stop that stack first, or choose another --env-file", path.display())]
    EnvInUse { path: PathBuf, pid: u32 },
    #[error("cannot write the env file {}: {source}", path.display())]
    EnvWrite { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Stored(Box<super::firehose::store::StoreError>),
    #[error("cannot start the control or Firehose endpoint: {0}")]
    Control(std::io::Error),
    #[error(
        "cannot run `{command}`: {source}. Is it installed and on PATH? (the command runs in the current directory)"
    )]
    Spawn { command: String, source: std::io::Error },
    #[error("no command to run against the stack; give one, e.g. `streamlab run --spec FILE -- node producer.js`")]
    NoCommand,
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

impl From<StackError> for RunError {
    fn from(e: StackError) -> Self {
        RunError::Stack(Box::new(e))
    }
}

/// A stack serving its control endpoint.
pub struct Up {
    pub stack: Arc<Stack>,
    pub control: ControlServer,
    /// The Firehose API of the stack (`AWS_ENDPOINT_URL_FIREHOSE`).
    pub firehose: FirehoseServer,
    /// CloudWatch of the stack (`AWS_ENDPOINT_URL_CLOUDWATCH`).
    pub cloudwatch: super::cloudwatch::CloudWatchServer,
    /// CloudWatch Logs of the stack (`AWS_ENDPOINT_URL_CLOUDWATCH_LOGS`).
    pub logs: super::cloudwatch::LogsServer,
    /// What the env file holds, in order.
    pub env: Vec<(String, String)>,
    /// The env file, removed when this is dropped.
    pub env_file: Option<EnvFile>,
}

/// The env file of a running stack: removed when dropped, and by an
/// aborted exit ([`crate::exit_cleanup`]).
#[derive(Debug)]
pub struct EnvFile {
    path: PathBuf,
    _registered: crate::exit_cleanup::Registration,
}

impl EnvFile {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for EnvFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The env file's line naming the stack's process, so a later `up` tells
/// a live stack's file from one a killed stack left behind.
pub const PID_ENV: &str = "STREAMLAB_PID";

/// `KEY=value` lines, as `source`, `docker --env-file` and dotenv libraries
/// read them (no quoting: every value is a URL, address or key).
pub fn render_env(env: &[(String, String)]) -> String {
    env.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

/// Checks an env file path before anything starts: its directory exists,
/// and a file already there is not a running stack's. One a stopped or
/// killed stack left behind is removed at once, so nothing reads its dead
/// endpoints while this stack starts.
pub fn check_env_file(path: &Path) -> Result<(), RunError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(RunError::EnvDir { path: path.to_owned(), dir: dir.to_owned() });
    }
    let Ok(existing) = std::fs::read_to_string(path) else { return Ok(()) };
    let owner =
        existing.lines().find_map(|line| line.strip_prefix(PID_ENV)?.strip_prefix('=')?.trim().parse::<u32>().ok());
    if let Some(pid) = owner.filter(|&pid| pid != std::process::id() && process_alive(pid)) {
        return Err(RunError::EnvInUse { path: path.to_owned(), pid });
    }
    tracing::info!(path = %path.display(), "removing the env file a stopped stack left behind");
    std::fs::remove_file(path).map_err(|source| RunError::EnvWrite { path: path.to_owned(), source })
}

/// Whether process `pid` exists (signal 0 checks without sending).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: kill with signal 0 sends nothing; it only checks the pid.
    let rc = unsafe { libc::kill(pid, 0) };
    let exists = rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    // A killed process stays a zombie until its parent reaps it.
    exists && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| zombie(&stat))
}

/// Whether `/proc/PID/stat` says the process is a zombie: the state
/// follows the command name, which is in parentheses and may hold any.
fn zombie(stat: &str) -> bool {
    stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

/// Starts the stack and its control endpoint, then writes the env file: it
/// appears only once a producer can write and every delivery owns its
/// partitions.
pub async fn up(options: StackOptions, env_file: Option<&Path>) -> Result<Up, RunError> {
    if let Some(path) = env_file {
        check_env_file(path)?;
    }
    let stack = Arc::new(Stack::start(options).await?);
    let firehose = Firehose::open(stack.clone()).await.map_err(|e| RunError::Stored(Box::new(e)))?;
    let firehose = FirehoseServer::start(Arc::new(firehose)).await.map_err(RunError::Control)?;
    let region =
        stack.env().into_iter().find(|(k, _)| k == "AWS_REGION").map_or_else(|| "us-east-1".to_owned(), |(_, v)| v);
    let api = crate::cloudwatch::api::CloudWatch::new(stack.monitor().clone(), stack.clock(), &region);
    let cloudwatch = super::cloudwatch::CloudWatchServer::start(Arc::new(api)).await.map_err(RunError::Control)?;
    let logs =
        super::cloudwatch::LogsServer::start(stack.logs().clone(), stack.clock()).await.map_err(RunError::Control)?;
    let endpoints = vec![
        (FIREHOSE_ENV.to_owned(), firehose.url().to_owned()),
        (crate::cloudwatch::ENDPOINT_ENV.to_owned(), cloudwatch.url().to_owned()),
        (crate::cloudwatch::logs::ENDPOINT_ENV.to_owned(), logs.url().to_owned()),
    ];
    let control = ControlServer::start(stack.clone(), endpoints.clone()).await.map_err(RunError::Control)?;
    let mut env = stack.env();
    env.extend(endpoints);
    env.push((PID_ENV.to_owned(), std::process::id().to_string()));
    // Last: scripts read up's output until this line.
    env.push((CONTROL_ENV.to_owned(), control.url().to_owned()));
    let env_file = match env_file {
        Some(path) => {
            let fail = |source| RunError::EnvWrite { path: path.to_owned(), source };
            // Written whole, then renamed: a reader never sees half a file.
            let tmp = path.with_extension("partial");
            std::fs::write(&tmp, render_env(&env)).map_err(fail)?;
            let registered = crate::exit_cleanup::register(path);
            std::fs::rename(&tmp, path).map_err(fail)?;
            Some(EnvFile { path: path.to_owned(), _registered: registered })
        }
        None => None,
    };
    Ok(Up { stack, control, firehose, cloudwatch, logs, env, env_file })
}

/// What `run` checks after the command.
#[derive(Debug, Clone, Default)]
pub struct RunChecks {
    /// Compare the landing with this snapshot file.
    pub snapshot: Option<PathBuf>,
    /// Write the snapshot instead of comparing.
    pub update_snapshot: bool,
    /// Masks for the snapshot; default: those recorded in the file, else
    /// uuids and random strings unless the stack is seeded.
    pub masks: Option<Masks>,
    pub expectations: Vec<Expectation>,
    /// `--then`: a shell command run against the landing.
    pub then: Option<String>,
    /// How long to wait for the stack to read what the command wrote.
    pub settle_timeout: Duration,
}

/// What a run did.
#[derive(Debug)]
pub struct RunReport {
    pub command_status: Option<ExitStatus>,
    /// Set when the command was stopped (Ctrl-C) rather than exiting.
    pub interrupted: bool,
    pub landing: Landing,
    pub outcomes: Vec<Outcome>,
    pub snapshot: Option<SnapshotOutcome>,
    pub then_status: Option<ExitStatus>,
    /// Where the landing was written as JSON for `--then`.
    pub landing_file: Option<PathBuf>,
    /// Problems after the command (settle timeouts and the like).
    pub problems: Vec<String>,
}

#[derive(Debug)]
pub enum SnapshotOutcome {
    Matched(PathBuf),
    Written(PathBuf),
    Differs { path: PathBuf, diff: String },
}

impl RunReport {
    pub fn passed(&self) -> bool {
        !self.interrupted
            && self.command_status.is_some_and(|s| s.success())
            && self.outcomes.iter().all(|o| o.passed)
            && !matches!(self.snapshot, Some(SnapshotOutcome::Differs { .. }))
            && self.then_status.is_none_or(|s| s.success())
            && self.problems.is_empty()
    }
}

fn spawn(program: &str, args: &[String], env: &[(String, String)]) -> Result<tokio::process::Child, RunError> {
    let mut command = tokio::process::Command::new(program);
    command.args(args).envs(env.iter().map(|(k, v)| (k, v))).kill_on_drop(true);
    command.spawn().map_err(|source| RunError::Spawn {
        command: std::iter::once(program.to_owned()).chain(args.iter().cloned()).collect::<Vec<_>>().join(" "),
        source,
    })
}

/// Waits for a child, or stops it (SIGTERM, then SIGKILL after 5 s) when
/// `shutdown` fires. Returns its status and whether it was stopped.
async fn wait(child: &mut tokio::process::Child, shutdown: &CancellationToken) -> (Option<ExitStatus>, bool) {
    tokio::select! {
        status = child.wait() => (status.ok(), false),
        () = shutdown.cancelled() => {
            if let Some(pid) = child.id() {
                // SAFETY: signalling our own child by its pid.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
            let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            match status {
                Ok(status) => (status.ok(), true),
                Err(_) => {
                    let _ = child.kill().await;
                    (child.wait().await.ok(), true)
                }
            }
        }
    }
}

/// Runs `command` against the stack, then reads what it wrote, delivers every
/// buffer, and checks the landing.
pub async fn run(
    up: &Up,
    command: &[String],
    checks: &RunChecks,
    shutdown: &CancellationToken,
) -> Result<RunReport, RunError> {
    let (program, args) = command.split_first().ok_or(RunError::NoCommand)?;
    let mut child = spawn(program, args, &up.env)?;
    let (command_status, interrupted) = wait(&mut child, shutdown).await;
    tracing::debug!(?command_status, "command exited");
    let stack = &up.stack;
    let mut problems = Vec::new();
    // Read what the command wrote, deliver every buffer as if its interval
    // had passed, and wait for the objects to land.
    if let Err(e) = stack.settle(checks.settle_timeout).await {
        problems.push(e.to_string());
    }
    tracing::debug!("read what the command wrote");
    stack.flush(None).await?;
    if let Err(e) = stack.settle(checks.settle_timeout).await {
        problems.push(e.to_string());
    }
    tracing::debug!("delivered every buffer");
    let landing = stack.landing(None).await?;
    tracing::debug!("landing read");
    let outcomes = if checks.expectations.is_empty() { Vec::new() } else { stack.check(&checks.expectations).await? };
    tracing::debug!("expectations checked");
    let snapshot = match &checks.snapshot {
        None => None,
        Some(path) => Some(snapshot(stack, &landing, path, checks).await?),
    };
    let mut landing_file = None;
    let mut then_status = None;
    if let Some(then) = &checks.then {
        let path = stack.work_dir().join("landing.json");
        let json = serde_json::to_vec_pretty(&landing).expect("a landing serializes");
        std::fs::write(&path, json).map_err(|source| RunError::Write { path: path.clone(), source })?;
        let mut env = up.env.clone();
        env.push(("STREAMLAB_LANDING".into(), path.display().to_string()));
        let mut child = spawn("sh", &["-c".to_owned(), then.clone()], &env)?;
        then_status = wait(&mut child, shutdown).await.0;
        landing_file = Some(path);
    }
    Ok(RunReport { command_status, interrupted, landing, outcomes, snapshot, then_status, landing_file, problems })
}

/// The masks to use: given, else the snapshot's own, else uuids and random
/// strings unless the stack is seeded (seeded keys repeat exactly).
pub fn default_masks(given: Option<&Masks>, recorded: Option<&Masks>, seeded: bool) -> Masks {
    given.or(recorded).cloned().unwrap_or(Masks { uuid: !seeded, random: !seeded, ..Masks::default() })
}

async fn snapshot(
    stack: &Stack,
    landing: &Landing,
    path: &Path,
    checks: &RunChecks,
) -> Result<SnapshotOutcome, RunError> {
    let recorded = match Snapshot::load(path) {
        Ok(s) => Some(s),
        Err(SnapshotError::Missing { .. }) if checks.update_snapshot => None,
        Err(e) => return Err(e.into()),
    };
    let masks = default_masks(checks.masks.as_ref(), recorded.as_ref().map(|s| &s.masks), stack.options.seed.is_some());
    let current = Snapshot::new(masks.clone(), landing.masked(&stack.specs(), &masks));
    if checks.update_snapshot {
        current.save(path)?;
        return Ok(SnapshotOutcome::Written(path.to_owned()));
    }
    let recorded = recorded.expect("loaded unless updating");
    Ok(match recorded.compare(&current) {
        Comparison::Matches => SnapshotOutcome::Matched(path.to_owned()),
        Comparison::Differs(diff) => SnapshotOutcome::Differs { path: path.to_owned(), diff },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_is_not_a_running_stack() {
        assert!(zombie("30508 (streamlab) Z 1 30508 30508 0 -1"));
        assert!(zombie("7 (a) b) Z 1"));
        assert!(!zombie("30508 (streamlab) S 1 30508 30508 0 -1"));
        assert!(process_alive(std::process::id()));
    }

    #[test]
    fn an_env_file_of_a_running_stack_is_refused_and_a_stale_one_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("local.env");
        std::fs::write(&path, "KAFKA_BOOTSTRAP=127.0.0.1:1\nSTREAMLAB_PID=1\n").unwrap();
        let err = check_env_file(&path).unwrap_err().to_string();
        assert!(err.contains("still running (streamlab pid 1)"), "{err}");
        assert!(path.exists());
        // A pid past the kernel's pid_max is no process.
        std::fs::write(&path, "KAFKA_BOOTSTRAP=127.0.0.1:1\nSTREAMLAB_PID=2147483000\n").unwrap();
        check_env_file(&path).unwrap();
        assert!(!path.exists(), "a stale env file is removed before the stack starts");
    }

    #[test]
    fn env_files_are_plain_key_value_lines() {
        let env = vec![("KAFKA_BOOTSTRAP".to_owned(), "127.0.0.1:9092".to_owned()), ("A".into(), "b".into())];
        assert_eq!(render_env(&env), "KAFKA_BOOTSTRAP=127.0.0.1:9092\nA=b\n");
    }

    #[test]
    fn an_env_file_in_a_missing_directory_is_refused_before_start() {
        let err = check_env_file(Path::new("/nonexistent-dir/x.env")).unwrap_err().to_string();
        assert!(err.contains("/nonexistent-dir") && err.contains("does not exist"), "{err}");
        assert!(check_env_file(Path::new("local.env")).is_ok());
    }

    #[test]
    fn masks_default_to_random_parts_unless_seeded() {
        let unseeded = default_masks(None, None, false);
        assert!(unseeded.uuid && unseeded.random && !unseeded.time);
        assert!(default_masks(None, None, true).is_empty());
        let recorded = Masks { time: true, ..Masks::default() };
        assert_eq!(default_masks(None, Some(&recorded), false), recorded);
    }
}
