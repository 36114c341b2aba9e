//! Nothing lost when the stack itself fails, tried as a user would with the
//! `streamlab` binary: `up --work-dir` SIGKILLed with 20,000 records read
//! and buffered resumes from its broker's data and lands each once, streams
//! created through the Firehose API come back with their versions; SIGHUP
//! stops like Ctrl-C; a stop that cannot deliver (a full disk under S3)
//! exits non-zero naming the cause and whether the records survive; a
//! second Ctrl-C aborts but removes the env file and temporary directory.

use crate::common;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use common::{available, output, repo, streamlab};
use streamlab::stack::control::{ControlClient, LandingQuery};
use streamlab::stack::Status;

const SPEC: &str = "fixtures/streams/orders-to-s3.json";

/// `streamlab up` as a child process, its stderr in a file.
struct Up {
    child: Child,
    env: BTreeMap<String, String>,
    log: PathBuf,
}

impl Up {
    /// Starts `up ARGS --env-file ENV` and waits for the env file this
    /// process writes (one a killed stack left names another pid).
    fn start(env_file: &Path, log: &Path, args: &[&str], tmp: Option<&Path>) -> Result<Up> {
        let mut command = streamlab(&["up", "--clock", "manual", "--spec", SPEC]);
        command.args(args).args(["--env-file", env_file.to_str().context("path")?]);
        if let Some(tmp) = tmp {
            command.env("TMPDIR", tmp);
        }
        let child = command.stdout(Stdio::null()).stderr(std::fs::File::create(log)?).spawn()?;
        let mut up = Up { child, env: BTreeMap::new(), log: log.to_owned() };
        let pid = up.child.id().to_string();
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(env_file).unwrap_or_default();
            let env: BTreeMap<String, String> =
                text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
            if env.get("STREAMLAB_PID") == Some(&pid) {
                up.env = env;
                return Ok(up);
            }
            if let Some(status) = up.child.try_wait()? {
                bail!("up exited with {status} before it was ready: {}", up.stderr());
            }
            ensure!(started.elapsed() < Duration::from_secs(60), "up was not ready in 60 s: {}", up.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn control(&self) -> Result<ControlClient> {
        Ok(ControlClient::new(&self.env["STREAMLAB_CONTROL"])?)
    }

    fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits for the process to exit.
    fn wait(&mut self, within: Duration) -> Result<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            ensure!(started.elapsed() < within, "up did not exit within {within:?}: {}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `streamlab ARGS` against this stack, which must succeed.
    fn streamlab(&self, args: &[&str]) -> Result<String> {
        let (ok, out, err) = output(streamlab(args).envs(&self.env))?;
        ensure!(ok, "streamlab {}: {err}", args.join(" "));
        Ok(out)
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

async fn wait_status(up: &Up, what: &str, mut done: impl FnMut(&Status) -> bool) -> Result<Status> {
    let client = up.control()?;
    let started = Instant::now();
    loop {
        let status = client.status().await?;
        if done(&status) {
            return Ok(status);
        }
        ensure!(started.elapsed() < Duration::from_secs(60), "{what} not seen within 60 s: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn read(status: &Status, stream: &str) -> u64 {
    status.streams.iter().find(|s| s.stream == stream).map_or(0, |s| s.read)
}

/// How many times each event id landed in `stream`.
async fn landed(up: &Up, stream: &str) -> Result<BTreeMap<String, usize>> {
    let query = LandingQuery { stream: Some(stream.to_owned()), masks: None };
    let landing = up.control()?.landing(&query).await?;
    let mut ids = BTreeMap::new();
    for object in landing.streams.iter().flat_map(|s| &s.objects) {
        for record in &object.data {
            let id = record["event_id"].as_str().context("event_id")?.to_owned();
            *ids.entry(id).or_insert(0) += 1;
        }
    }
    Ok(ids)
}

fn once(ids: &BTreeMap<String, usize>, expected: usize, stream: &str) -> Result<()> {
    let twice = ids.values().filter(|n| **n > 1).count();
    ensure!(
        ids.len() == expected && twice == 0,
        "{stream}: {} distinct of {expected}, {twice} more than once",
        ids.len()
    );
    Ok(())
}

/// The spec of a stream created through the Firehose API (`deploy`), with
/// this prefix.
fn api_spec(dir: &Path, prefix: &str) -> Result<PathBuf> {
    let mut spec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(repo().join(SPEC))?)?;
    spec["DeliveryStreamName"] = "api-orders".into();
    spec["MSKSourceConfiguration"]["TopicName"] = "api-events".into();
    spec["ExtendedS3DestinationConfiguration"]["BucketARN"] = "arn:aws:s3:::api-orders-raw".into();
    spec["ExtendedS3DestinationConfiguration"]["Prefix"] = prefix.into();
    spec["ExtendedS3DestinationConfiguration"]["ErrorOutputPrefix"] = "errors/!{firehose:error-output-type}/".into();
    let path = dir.join(format!("api-{}.json", prefix.len()));
    std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)?;
    Ok(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_stack_resumes_from_its_work_dir_and_lands_every_record_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (work, env_file) = (dir.path().join("work"), dir.path().join("stack.env"));
    let port = streamlab::backend::free_port()?.to_string();
    let args = ["--work-dir", work.to_str().context("path")?, "--kafka-port", &port];
    let mut first = Up::start(&env_file, &dir.path().join("first.log"), &args, None)?;

    // A stream created through the API, then updated: version 2.
    let v1 = api_spec(dir.path(), "v1/")?;
    first.streamlab(&["deploy", "--spec", v1.to_str().context("path")?])?;
    let v2 = api_spec(dir.path(), "orders-v2/")?;
    let deployed = first.streamlab(&["deploy", "--spec", v2.to_str().context("path")?])?;
    ensure!(deployed.contains("version 2"), "{deployed}");

    first.streamlab(&["produce", "--topic", "shop-events", "--count", "20000", "--seed", "1"])?;
    first.streamlab(&["produce", "--topic", "api-events", "--count", "1000", "--seed", "2"])?;
    let all_read = |s: &Status| read(s, "orders-to-s3") == 20_000 && read(s, "api-orders") == 1_000;
    wait_status(&first, "every record read", all_read).await?;
    first.streamlab(&["clock", "advance", "2m"])?;
    let before = first.control()?.status().await?;
    ensure!(before.streams.iter().all(|s| s.delivered == 0), "nothing is due before 5 minutes: {before:?}");
    first.signal(libc::SIGKILL);
    first.wait(Duration::from_secs(10))?;
    ensure!(env_file.exists(), "a SIGKILLed stack cannot remove its env file");

    let second = Up::start(&env_file, &dir.path().join("second.log"), &args, None)?;
    ensure!(second.env["KAFKA_BOOTSTRAP"] == format!("127.0.0.1:{port}"), "the Kafka port is kept: {:?}", second.env);
    let status = second.control()?.status().await?;
    let api = status.streams.iter().find(|s| s.stream == "api-orders").context("api-orders came back")?;
    ensure!(api.version == 2, "api-orders came back at version {}", api.version);
    ensure!(
        status.clock.now == before.clock.now,
        "the manual clock resumed at {} (was {})",
        status.clock.now,
        before.clock.now
    );
    // Read again from the start (nothing was committed) before the clock
    // moves: records read after the jump open buffers due 5 minutes later.
    wait_status(&second, "every record read again", all_read).await?;
    second.streamlab(&["clock", "advance", "5m"])?;
    second.streamlab(&["settle"])?;
    once(&landed(&second, "orders-to-s3").await?, 20_000, "orders-to-s3")?;
    once(&landed(&second, "api-orders").await?, 1_000, "api-orders")?;
    let landing = second.control()?.landing(&LandingQuery { stream: Some("api-orders".into()), masks: None }).await?;
    ensure!(
        landing.streams.iter().flat_map(|s| &s.objects).all(|o| o.key.starts_with("orders-v2/")),
        "api-orders delivers with its updated prefix"
    );
    Ok(())
}

#[test]
fn sighup_delivers_what_was_buffered_and_leaves_nothing_behind() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp)?;
    let env_file = dir.path().join("stack.env");
    let mut up = Up::start(&env_file, &dir.path().join("up.log"), &[], Some(&tmp))?;
    up.streamlab(&["produce", "--topic", "shop-events", "--count", "5000"])?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(wait_status(&up, "5,000 read", |s| read(s, "orders-to-s3") == 5_000))?;
    up.signal(libc::SIGHUP);
    let status = up.wait(Duration::from_secs(60))?;
    let stderr = up.stderr();
    ensure!(status.success(), "{status}: {stderr}");
    ensure!(stderr.contains("orders-to-s3: 5000 records read, 5000 delivered"), "{stderr}");
    ensure!(!env_file.exists(), "the env file is removed");
    ensure!(std::fs::read_dir(&tmp)?.next().is_none(), "the temporary work dir is removed");
    Ok(())
}

/// A work dir whose `s3` directory is a 1 MiB tmpfs: S3 PUTs fail with
/// ENOSPC while the broker (beside it) works.
struct FullDisk {
    mount: PathBuf,
}

impl FullDisk {
    fn under(work: &Path) -> Result<Option<FullDisk>> {
        let mount = work.join("s3");
        std::fs::create_dir_all(&mount)?;
        // SAFETY: getuid has no preconditions.
        let root = unsafe { libc::getuid() } == 0;
        let mounted = root
            && std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
                .arg(&mount)
                .status()
                .is_ok_and(|s| s.success());
        if !available("root, to mount a 1 MiB tmpfs as a full disk", mounted)? {
            return Ok(None);
        }
        Ok(Some(FullDisk { mount }))
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// `up --work-dir` on a full disk with 20,000 records due and failing.
async fn failing(dir: &Path) -> Result<Option<(Up, FullDisk)>> {
    let work = dir.join("work");
    let Some(disk) = FullDisk::under(&work)? else { return Ok(None) };
    let args = ["--work-dir", work.to_str().context("path")?];
    let up = Up::start(&dir.join("stack.env"), &dir.join("up.log"), &args, None)?;
    up.streamlab(&["produce", "--topic", "shop-events", "--count", "20000"])?;
    wait_status(&up, "20,000 read", |s| read(s, "orders-to-s3") == 20_000).await?;
    let _ = output(streamlab(&["clock", "advance", "5m"]).envs(&up.env))?;
    wait_status(&up, "a failed PUT", |s| s.streams.iter().any(|s| s.put_failures > 0)).await?;
    Ok(Some((up, disk)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_cannot_deliver_fails_naming_the_cause_and_where_the_records_are() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some((mut up, _disk)) = failing(dir.path()).await? else { return Ok(()) };
    let status = up.control()?.status().await?;
    let last = status.streams[0].last_put_error.clone().unwrap_or_default();
    ensure!(last.contains("No space left on device"), "status names the cause: {last}");
    let table = up.streamlab(&["status"])?;
    ensure!(table.contains("No space left on device"), "{table}");
    up.signal(libc::SIGINT);
    let exit = up.wait(Duration::from_secs(90))?;
    let stderr = up.stderr();
    ensure!(exit.code() == Some(1), "{exit}: {stderr}");
    ensure!(
        stderr.contains("FAILED: orders-to-s3: 20000 records read were not delivered")
            && stderr.contains("No space left on device (os error 28)")
            && stderr.contains("they stay in the broker, uncommitted"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_interrupt_aborts_and_still_removes_the_env_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some((mut up, _disk)) = failing(dir.path()).await? else { return Ok(()) };
    up.signal(libc::SIGINT);
    let started = Instant::now();
    while !up.stderr().contains("shutting down") {
        ensure!(started.elapsed() < Duration::from_secs(10), "{}", up.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    up.signal(libc::SIGINT);
    let exit = up.wait(Duration::from_secs(15))?;
    ensure!(exit.code() == Some(130), "{exit}: {}", up.stderr());
    ensure!(!dir.path().join("stack.env").exists(), "the env file is removed on abort");
    Ok(())
}

#[test]
fn produce_stops_within_two_seconds_of_an_interrupt_whatever_the_broker_does() -> Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let mut child = streamlab(&["produce", "--bootstrap", "127.0.0.1:1", "--topic", "t", "--count", "1000"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        std::thread::sleep(Duration::from_secs(1));
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(child.id() as i32, signal) };
        let sent = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if sent.elapsed() > Duration::from_secs(2) {
                let _ = child.kill();
                bail!("produce still ran 2 s after signal {signal}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stderr = String::new();
        child.stderr.take().context("stderr")?.read_to_string(&mut stderr)?;
        ensure!(!status.success(), "an interrupted produce that delivered nothing is no success: {stderr}");
        ensure!(stderr.contains("127.0.0.1:1"), "it names the broker it could not reach: {stderr}");
    }
    Ok(())
}

#[test]
fn a_kafka_port_in_use_is_refused_naming_it() -> Result<()> {
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = taken.local_addr()?.port().to_string();
    let (ok, _, err) = output(&mut streamlab(&["up", "--spec", SPEC, "--kafka-port", &port]))?;
    ensure!(!ok && err.contains(&format!("--kafka-port {port}")) && err.contains("choose another port"), "{err}");
    Ok(())
}
