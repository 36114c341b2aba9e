//! The stack-level fault: `streamlab up --work-dir` itself, broker, S3 and
//! deliveries together, SIGKILLed at seeded moments and started again on
//! its work dir while the producer keeps writing to the same Kafka port
//! (`--kafka-port`). What the broker had acknowledged must land, and every
//! duplicate must lie in an uncommitted window: at or past the offset the
//! stream's group had committed just before a kill.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio_util::sync::CancellationToken;

use super::{
    attribute, committed_when_reachable, load_spec, scan, spawn_producer, topic_positions, Kill, Landed, SoakError,
    SoakOptions, SoakReport,
};
use crate::delivery::sink::{self, S3Settings, StaticCredentials};
use crate::kafka::KafkaConnection;
use crate::producer::ProducerStats;
use crate::stack::control::ControlClient;

/// `up` as a child process on the soak's work dir.
struct UpProcess {
    child: Child,
    env: BTreeMap<String, String>,
}

impl Drop for UpProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How to start `up` again and again on the same directory and port.
struct Launcher {
    binary: PathBuf,
    args: Vec<String>,
    env_file: PathBuf,
    log_dir: PathBuf,
    starts: u32,
}

impl Launcher {
    /// Starts `up` and waits for the env file it writes (one a killed
    /// stack left names another pid).
    async fn start(&mut self) -> Result<UpProcess, SoakError> {
        self.starts += 1;
        let spawn_error = |source| SoakError::Spawn { binary: self.binary.display().to_string(), source };
        let log = std::fs::File::create(self.log_dir.join(format!("up-{}.log", self.starts))).map_err(spawn_error)?;
        let child = Command::new(&self.binary)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(spawn_error)?;
        let mut up = UpProcess { child, env: BTreeMap::new() };
        let pid = up.child.id().to_string();
        let started = Instant::now();
        loop {
            let env = read_env(&self.env_file);
            if env.get("STREAMLAB_PID") == Some(&pid) {
                up.env = env;
                return Ok(up);
            }
            let exited = up.child.try_wait().map_err(spawn_error)?;
            if exited.is_some() || started.elapsed() > Duration::from_secs(120) {
                return Err(SoakError::StackStart {
                    log: self.log_dir.join(format!("up-{}.log", self.starts)),
                    detail: exited.map_or_else(|| "not ready within 120 s".to_owned(), |s| format!("exited with {s}")),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn read_env(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// S3 of the running `up` (its port changes with every start).
async fn s3_client(env: &BTreeMap<String, String>) -> aws_sdk_s3::Client {
    let credentials = match (env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => {
            Some(StaticCredentials { access_key_id: id.clone(), secret_access_key: secret.clone() })
        }
        _ => None,
    };
    sink::client(&S3Settings {
        endpoint: env.get("AWS_ENDPOINT_URL_S3").cloned(),
        region: env.get("AWS_REGION").cloned(),
        credentials,
    })
    .await
}

/// Runs the stack-level soak: `options.stack_kills` SIGKILLs of `up`.
pub async fn run(options: &SoakOptions, shutdown: CancellationToken) -> Result<SoakReport, SoakError> {
    let started = Instant::now();
    let spec = load_spec(&options.spec)?;
    let work = options.work_dir.join("stack");
    std::fs::create_dir_all(&work).map_err(|source| SoakError::Spawn { binary: work.display().to_string(), source })?;
    let port = crate::backend::free_port().map_err(|e| SoakError::Stack(e.into()))?;
    let binary = std::env::current_exe().map_err(|source| SoakError::Spawn { binary: "streamlab".into(), source })?;
    let env_file = options.work_dir.join("stack.env");
    let mut launcher = Launcher {
        binary,
        args: [
            "up",
            "--spec",
            &options.spec.display().to_string(),
            "--work-dir",
            &work.join("w").display().to_string(),
            "--env-file",
            &env_file.display().to_string(),
            "--kafka-port",
            &port.to_string(),
            "--partitions",
            &options.partitions.to_string(),
            "--speedup",
            &options.speedup.to_string(),
        ]
        .map(str::to_owned)
        .to_vec(),
        env_file,
        log_dir: work.clone(),
        starts: 0,
    };
    let mut up = launcher.start().await?;
    let kafka = KafkaConnection::plaintext(format!("127.0.0.1:{port}"));

    let producer_stats = Arc::new(ProducerStats::default());
    let producing =
        spawn_producer(&kafka, spec.topic(), options, options.seed ^ 0x57ac, producer_stats.clone(), shutdown.clone());

    let production = Duration::from_secs_f64(options.events as f64 / options.rate);
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed ^ 0x57ac);
    let mut schedule: Vec<Duration> =
        (0..options.stack_kills).map(|_| production.mul_f64(rng.gen_range(0.1..0.9))).collect();
    schedule.sort();
    let mut schedule = schedule.into_iter().peekable();
    let mut kills = Vec::new();
    let mut landed = Landed::default();
    let mut client = s3_client(&up.env).await;
    let mut last_progress = Instant::now();
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        if started.elapsed() > options.timeout {
            return Err(SoakError::Timeout(options.timeout));
        }
        if let Some(at) = schedule.next_if(|at| started.elapsed() >= *at) {
            let group = match ControlClient::new(&up.env["STREAMLAB_CONTROL"]) {
                Ok(control) => control.status().await.ok().and_then(|s| s.streams.first().map(|s| s.group.clone())),
                Err(_) => None,
            };
            let committed = match group {
                Some(group) => committed_when_reachable(&kafka, &group, spec.topic()).await,
                None => BTreeMap::new(),
            };
            eprintln!("[{:>5.1?}] SIGKILL up; committed {committed:?}", started.elapsed());
            kills.push(Kill { at, committed });
            drop(up);
            // The killed stack's broker goes with it (PR_SET_PDEATHSIG);
            // its port is free a moment later.
            let freed = Instant::now();
            while std::net::TcpListener::bind(("127.0.0.1", port)).is_err() && freed.elapsed() < Duration::from_secs(10)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            up = launcher.start().await?;
            client = s3_client(&up.env).await;
            eprintln!("[{:>5.1?}] up started again on its work dir", started.elapsed());
        }
        scan(&client, spec.bucket(), &mut landed).await?;
        let produced = producer_stats.acked();
        if last_progress.elapsed() > Duration::from_secs(5) {
            last_progress = Instant::now();
            eprintln!(
                "[{:>5.1?}] produced {produced} | landed {} distinct in {} objects | stack kills {}",
                started.elapsed(),
                landed.copies.len(),
                landed.keys.len(),
                kills.len(),
            );
        }
        if producing.is_finished() && landed.copies.len() as u64 >= produced && schedule.peek().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    producing.await.expect("producer does not panic")?;
    scan(&client, spec.bucket(), &mut landed).await?;
    let produced = producer_stats.acked();
    let positions = topic_positions(&kafka, spec.topic(), produced).await?;
    let mut report = attribute(&landed, &positions, kills);
    report.kind = "stack (up)";
    report.produced = produced;
    report.elapsed = started.elapsed();
    Ok(report)
}
