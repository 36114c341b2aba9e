//! The `streamlab` binary as a user runs it: bad input is refused with a
//! message naming the file, the field and the rule; unreachable endpoints are
//! named and fail fast; stopping the sandbox leaves no process behind.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use rstest::rstest;
use streamlab::backend::{Backend, BackendKind};
use streamlab::harness;

const BIN: &str = env!("CARGO_BIN_EXE_streamlab");
const SPEC: &str = "fixtures/streams/orders-to-s3.json";

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn streamlab(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "AKIASTREAMLABTEST")
        .env("AWS_SECRET_ACCESS_KEY", "streamlab-test-secret")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null());
    command
}

fn run(args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let output = streamlab(args).output().expect("streamlab runs");
    (output, started.elapsed())
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[rstest]
#[case::size_out_of_range(
    "buffer-size-too-large.json",
    "ExtendedS3DestinationConfiguration.BufferingHints.SizeInMBs: Value at 'extendedS3DestinationConfiguration.bufferingHints.sizeInMBs' failed to satisfy constraint: Member must have value less than or equal to 128; got 256"
)]
#[case::expression_needs_error_prefix(
    "prefix-expression-without-error-prefix.json",
    "ExtendedS3DestinationConfiguration.ErrorOutputPrefix: InvalidArgumentException: Ths supplied prefix(es) do not satisfy the following constraint: ErrorOutputPrefix cannot be null or empty when Prefix contains expressions"
)]
#[case::compression_is_case_sensitive(
    "compression-wrong-case.json",
    "ExtendedS3DestinationConfiguration.CompressionFormat: Value at 'extendedS3DestinationConfiguration.compressionFormat' failed to satisfy constraint: Member must satisfy enum value set: [ZIP, HADOOP_SNAPPY, Snappy, GZIP, UNCOMPRESSED]; got \"SNAPPY\" (case-sensitive)"
)]
#[case::topic_pattern(
    "topic-name-invalid.json",
    "MSKSourceConfiguration.TopicName: Value at 'mSKSourceConfiguration.topicName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9\\._\\-]+; got \"shop events\""
)]
#[case::bucket_name_uppercase(
    "bucket-name-uppercase.json",
    "ExtendedS3DestinationConfiguration.BucketARN: bucket name \"Shop-Events-Bucket\": bucket names can consist only of lowercase letters, numbers, periods (.), and hyphens (-); S3 answers InvalidBucketName"
)]
#[case::bucket_name_ip_address(
    "bucket-name-ip-address.json",
    "bucket name \"192.168.1.1\": bucket names must not be formatted as an IP address"
)]
#[case::topic_name_reserved(
    "topic-name-dotdot.json",
    "MSKSourceConfiguration.TopicName: Kafka refuses the topic name \"..\" (\".\" and \"..\" are reserved)"
)]
fn deliver_rejects_invalid_spec_before_connecting(#[case] file: &str, #[case] message: &str) {
    let path = format!("fixtures/invalid/{file}");
    // The endpoints are unreachable: a spec error must come first, and fast.
    let bootstrap = format!("127.0.0.1:{}", closed_port());
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let (output, took) = run(&["deliver", "--spec", &path, "--bootstrap", &bootstrap, "--s3-endpoint", &endpoint]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains(&format!("stream spec {path}: 1 problem")), "{err}");
    assert!(err.contains(message), "expected {message:?} in:\n{err}");
    assert!(took < Duration::from_secs(5), "took {took:?}");

    let (output, _) = run(&["validate", &path]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains(message));
}

/// A spec file that cannot be read or parsed is named with the reason, the
/// reason said once (the message already carries its cause).
#[rstest]
#[case::not_json(Some("{\"DeliveryStreamName\": "), "is not valid JSON", "EOF while parsing")]
#[case::missing(None, "error: cannot read stream spec", "No such file or directory")]
fn deliver_names_an_unreadable_spec_file_and_its_reason_once(
    #[case] content: Option<&str>,
    #[case] what: &str,
    #[case] reason: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.json");
    if let Some(content) = content {
        std::fs::write(&path, content).unwrap();
    }
    let (output, _) = run(&["deliver", "--spec", path.to_str().unwrap(), "--bootstrap", "127.0.0.1:1"]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains(&path.display().to_string()) && err.contains(what), "{err}");
    assert_eq!(err.matches(reason).count(), 1, "{err}");
}

/// `soak` refuses a spec that starts at a time before it prints its plan or
/// creates its work dir, and says which field to set.
#[test]
fn soak_refuses_a_spec_with_a_start_time_before_starting_anything() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("soak");
    let spec = "fixtures/streams/parquet-openx.json";
    let (output, took) = run(&["soak", "--spec", spec, "--work-dir", work.to_str().unwrap()]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.starts_with(&format!("error: the soak spec {spec} must read from the earliest record")), "{err}");
    assert!(err.contains("set MSKSourceConfiguration.ReadFromTimestamp to 0"), "{err}");
    assert!(!work.exists(), "the work dir was created");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

/// A Lambda processor runs where the command line says, never where the
/// spec says: with neither option it is refused before anything connects,
/// naming the function and both options; a malformed `--lambda` is refused
/// with the expected form.
#[test]
fn deliver_refuses_a_lambda_processor_with_nowhere_to_run() {
    let spec = "fixtures/streams/lambda-transform.json";
    let bootstrap = format!("127.0.0.1:{}", closed_port());
    let (output, took) = run(&["deliver", "--spec", spec, "--bootstrap", &bootstrap]);
    assert!(!output.status.success());
    let err = stderr(&output);
    for part in
        ["arn:aws:lambda:us-east-1:123456789012:function:enrich", "--lambda", "--lambda-endpoint", "awslambdaric"]
    {
        assert!(err.contains(part), "{part:?} missing from:\n{err}");
    }
    assert!(took < Duration::from_secs(5), "refused before connecting; took {took:?}");

    let (output, _) = run(&["deliver", "--spec", spec, "--bootstrap", &bootstrap, "--lambda", "python handler.py"]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("is not ARN=COMMAND"), "{err}");
}

/// `validate DIR` checks the directory's specs as `up --spec DIR` loads
/// them, and an empty directory is named.
#[test]
fn validate_takes_a_directory_as_up_does() {
    let (output, _) = run(&["validate", "fixtures/streams"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", stderr(&output));
    assert!(stdout.contains(&format!("{SPEC}: valid")), "{stdout}");
    let specs = std::fs::read_dir("fixtures/streams")
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json"))
        .count();
    assert_eq!(stdout.matches(": valid (stream").count(), specs, "{stdout}");

    let (output, _) = run(&["validate", "fixtures/invalid"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("bucket-name-uppercase.json: 1 problem"));

    let empty = tempfile::tempdir().unwrap();
    let (output, _) = run(&["validate", empty.path().to_str().unwrap()]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains(&format!("the directory {} holds no *.json files", empty.path().display())), "{err}");
}

/// AWS accepts a Decompression processor; streamlab cannot run one, so
/// `validate` passes with a warning and `deliver` refuses before
/// connecting, naming the processor.
#[test]
fn an_unemulated_processor_is_valid_with_a_warning_and_refused_at_start() {
    let mut spec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(SPEC).unwrap()).unwrap();
    spec["ExtendedS3DestinationConfiguration"]["ProcessingConfiguration"] = serde_json::json!({"Enabled": true, "Processors": [
        {"Type": "Decompression", "Parameters": [{"ParameterName": "CompressionFormat", "ParameterValue": "GZIP"}]}
    ]});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decompression.json");
    std::fs::write(&path, spec.to_string()).unwrap();
    let path = path.to_str().unwrap();

    let (output, _) = run(&["validate", path]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("warning: ExtendedS3DestinationConfiguration.ProcessingConfiguration.Processors[0].Type: streamlab does not emulate the Decompression processor"), "{stdout}");

    let bootstrap = format!("127.0.0.1:{}", closed_port());
    let (output, took) = run(&["deliver", "--spec", path, "--bootstrap", &bootstrap]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("stream orders-to-s3: ExtendedS3DestinationConfiguration.ProcessingConfiguration.Processors[0].Type: streamlab does not emulate the Decompression processor"), "{err}");
    assert!(err.contains("Remove it from the spec to run the stream locally"), "{err}");
    assert!(took < Duration::from_secs(5), "refused before connecting; took {took:?}");
}

#[test]
fn validate_accepts_the_seed_spec() {
    let (output, _) = run(&["validate", SPEC]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
}

#[test]
fn deliver_names_an_unreachable_broker_and_exits_within_30s() {
    let bootstrap = format!("127.0.0.1:{}", closed_port());
    let (output, took) =
        run(&["deliver", "--spec", SPEC, "--bootstrap", &bootstrap, "--s3-endpoint", "http://127.0.0.1:1"]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains(&format!("cannot reach the Kafka broker at {bootstrap}")), "{err}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_names_an_unreachable_s3_endpoint_and_a_missing_bucket() -> Result<()> {
    let work = tempfile::tempdir()?;
    let backend = Backend::start(BackendKind::Local, work.path()).await?;
    streamlab::kafka::admin::create_topic(&backend.kafka, "shop-events", 1).await?;

    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let (output, took) =
        run(&["deliver", "--spec", SPEC, "--bootstrap", backend.bootstrap(), "--s3-endpoint", &endpoint]);
    ensure!(!output.status.success());
    let err = stderr(&output);
    ensure!(err.contains(&format!("cannot reach S3 endpoint {endpoint}")), "{err}");
    ensure!(took < Duration::from_secs(30), "took {took:?}");

    // The local S3 answers, but the spec's bucket was never created.
    let s3 = backend.s3.endpoint.clone().context("local backend has an endpoint")?;
    let creds = backend.s3.credentials.clone().context("local backend has credentials")?;
    let output = streamlab(&["deliver", "--spec", SPEC, "--bootstrap", backend.bootstrap(), "--s3-endpoint", &s3])
        .env("AWS_ACCESS_KEY_ID", &creds.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &creds.secret_access_key)
        .output()?;
    ensure!(!output.status.success());
    let err = stderr(&output);
    ensure!(err.contains("bucket \"shop-events-raw\" does not exist"), "{err}");

    // Wrong credentials are named as such.
    let client = streamlab::delivery::sink::client(&backend.s3).await;
    harness::create_bucket(&client, "shop-events-raw").await?;
    let (output, _) = run(&["deliver", "--spec", SPEC, "--bootstrap", backend.bootstrap(), "--s3-endpoint", &s3]);
    ensure!(!output.status.success());
    let err = stderr(&output);
    ensure!(err.contains("refused the credentials"), "{err}");
    ensure!(!err.contains("streamlab-test-secret"), "the secret leaked into the output: {err}");
    Ok(())
}

#[test]
fn deliver_names_a_missing_topic() -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let work = tempfile::tempdir()?;
    let backend = rt.block_on(Backend::start(BackendKind::Local, work.path()))?;
    let (output, _) =
        run(&["deliver", "--spec", SPEC, "--bootstrap", backend.bootstrap(), "--s3-endpoint", "http://127.0.0.1:1"]);
    ensure!(!output.status.success());
    let err = stderr(&output);
    ensure!(
        err.contains(&format!("topic \"shop-events\" does not exist on the broker at {}", backend.bootstrap())),
        "{err}"
    );
    Ok(())
}

/// Child processes of `pid`, from /proc.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // Fields after the `(comm)`: state, ppid, ...
        let after = stat.rsplit_once(") ").map(|(_, rest)| rest).unwrap_or_default();
        if after.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// Starts the sandbox and returns it with its broker's address once the
/// backend is up. The broker runs inside the sandbox: the local backend starts
/// no process of its own (checked).
fn start_sandbox(work: &Path) -> Result<(std::process::Child, String, BufReader<std::process::ChildStderr>)> {
    let mut child = streamlab(&[
        "sandbox",
        "--speedup",
        "300",
        "--rate",
        "500",
        "--work-dir",
        work.to_str().context("utf-8 path")?,
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()?;
    let mut stderr = BufReader::new(child.stderr.take().context("stderr")?);
    let mut line = String::new();
    let started = Instant::now();
    while !line.contains("backend Local") {
        line.clear();
        ensure!(stderr.read_line(&mut line)? > 0, "sandbox exited before its backend was up");
        ensure!(started.elapsed() < Duration::from_secs(60), "backend did not come up");
    }
    // "  backend Local: broker 127.0.0.1:PORT, S3 http://..."
    let broker = line
        .split("broker ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .with_context(|| format!("no broker address in {line:?}"))?
        .to_owned();
    let children = children(child.id());
    ensure!(children.is_empty(), "the local backend started processes: {children:?}");
    Ok((child, broker, stderr))
}

/// Whether nothing accepts connections at `address` any more, within `within`.
fn wait_closed(address: &str, within: Duration) -> bool {
    let started = Instant::now();
    while std::net::TcpStream::connect(address).is_ok() {
        if started.elapsed() > within {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn sandbox_ctrl_c_lands_objects_prints_table_and_leaves_no_process() -> Result<()> {
    let work = tempfile::tempdir()?;
    let (child, broker, mut stderr) = start_sandbox(work.path())?;
    // Wait until events are flowing into delivery, then interrupt.
    let mut line = String::new();
    while !line.contains("consumed") || line.contains("consumed 0 ") {
        line.clear();
        ensure!(stderr.read_line(&mut line)? > 0, "sandbox exited early");
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest)?;
    let output = child.wait_with_output()?;
    ensure!(output.status.success(), "sandbox failed: {rest}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(stdout.contains("key") && stdout.contains("records") && stdout.contains("bytes"), "{stdout}");
    ensure!(stdout.contains("browse the landed objects as files in"), "{stdout}");
    let landed: usize = walk(&work.path().join("s3/shop-events-raw"));
    ensure!(landed > 0, "no object files under the landing directory:\n{stdout}");
    ensure!(wait_closed(&broker, Duration::from_secs(5)), "the broker at {broker} outlived the sandbox");
    Ok(())
}

#[test]
fn sandbox_killed_with_sigkill_takes_its_broker_with_it() -> Result<()> {
    let work = tempfile::tempdir()?;
    let (mut child, broker, _stderr) = start_sandbox(work.path())?;
    child.kill()?;
    child.wait()?;
    ensure!(wait_closed(&broker, Duration::from_secs(5)), "the broker at {broker} outlived a SIGKILLed sandbox");
    Ok(())
}

/// Object files (not s3s metadata) below a directory.
fn walk(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            n += walk(&path);
        } else if !entry.file_name().to_string_lossy().starts_with('.') {
            n += 1;
        }
    }
    n
}

/// A delivery run at the most verbose logging (streamlab, the AWS SDK and
/// librdkafka) never prints the secret it signs with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_logs() -> Result<()> {
    let work = tempfile::tempdir()?;
    let backend = Backend::start(BackendKind::Local, work.path()).await?;
    let spec = "fixtures/streams/read-from-earliest.json";
    streamlab::kafka::admin::create_topic(&backend.kafka, "shop-events", 1).await?;
    let client = streamlab::delivery::sink::client(&backend.s3).await;
    harness::create_bucket(&client, "shop-events-raw").await?;
    let events = streamlab::events::EventGenerator::new(&streamlab::events::GeneratorConfig::new(1, 0)).take(50);
    let stats = std::sync::Arc::new(streamlab::producer::ProducerStats::default());
    let clock: streamlab::clock::SharedClock = std::sync::Arc::new(streamlab::clock::SystemClock);
    streamlab::producer::publish(&backend.kafka, "shop-events", None, events, clock, stats, Default::default()).await?;

    let creds = backend.s3.credentials.clone().context("local credentials")?;
    let state = tempfile::tempdir()?;
    // To a file: at this verbosity an unread pipe would fill and block it.
    let log_path = state.path().join("deliver.log");
    let log = std::fs::File::create(&log_path)?;
    let mut child = streamlab(&["deliver", "--spec", spec, "--bootstrap", backend.bootstrap(), "--speedup", "600"])
        .args(["--s3-endpoint", backend.s3.endpoint.as_deref().context("endpoint")?, "--state-dir"])
        .arg(state.path())
        .env("AWS_ACCESS_KEY_ID", &creds.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &creds.secret_access_key)
        .env("STREAMLAB_LOG", "trace")
        .env("STREAMLAB_RDKAFKA_DEBUG", "all")
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let started = Instant::now();
    while harness::list_keys(&client, "shop-events-raw").await?.is_empty() {
        ensure!(started.elapsed() < Duration::from_secs(60), "nothing landed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait()?;
    let text = String::from_utf8_lossy(&std::fs::read(&log_path)?).into_owned();
    ensure!(text.contains("PutObject") && text.contains("rdkafka"), "the run did not log at full verbosity");
    ensure!(!text.contains(&creds.secret_access_key), "the S3 secret appeared in the output");
    Ok(())
}

/// A SIGTERM while `deliver` is still connecting (here to a broker that is
/// not there; a static member's join takes seconds) stops it cleanly: exit
/// 0 and a line saying nothing was read, not death by the signal's default
/// action (which failed the crash test once).
#[test]
fn sigterm_while_deliver_connects_stops_it_cleanly() -> Result<()> {
    let mut child =
        streamlab(&["deliver", "--spec", "fixtures/streams/orders-to-s3.json", "--bootstrap", "127.0.0.1:1"])
            .args(["--s3-endpoint", "http://127.0.0.1:1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
    std::thread::sleep(Duration::from_millis(1500));
    ensure!(child.try_wait()?.is_none(), "deliver gave up on the missing broker within 1.5 s");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let output = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(output.status.success(), "deliver did not stop cleanly ({}): {stderr}", output.status);
    ensure!(stderr.contains("stopped before delivery started"), "{stderr}");
    Ok(())
}

/// Without a Docker engine the container backend says so and how to proceed,
/// and `auto` falls back to the local backend. (Where Docker answers, the
/// container path is exercised by `--backend container` instead.)
#[tokio::test]
async fn container_backend_without_docker_is_refused_clearly_and_auto_falls_back() -> Result<()> {
    if streamlab::backend::docker_reachable().await.is_ok() {
        eprintln!("not checked: a Docker engine answers here");
        return Ok(());
    }
    assert_eq!(BackendKind::Auto.resolve().await, BackendKind::Local);
    let work = tempfile::tempdir()?;
    let (output, took) = run(&[
        "sandbox",
        "--backend",
        "container",
        "--duration",
        "1s",
        "--work-dir",
        work.path().to_str().context("path")?,
    ]);
    ensure!(!output.status.success());
    let err = stderr(&output);
    ensure!(err.contains("no Docker engine answers") && err.contains("--backend local"), "{err}");
    ensure!(took < Duration::from_secs(10), "took {took:?}");
    Ok(())
}

/// One binary is all a stack needs: `cargo install --path .` gives a `streamlab`
/// with the broker built in that looks nothing up in `$HOME` or on `PATH`. The
/// test installs it into an empty root and runs it with `PATH` holding only that
/// root's `bin` and the system's, and a `HOME` with nothing in it.
///
/// `--debug` and this build's target directory let the install reuse all of
/// what `cargo test` has just compiled (under a second, and the test fails if
/// it compiles anything: Cargo.toml keeps the dev-dependencies from changing a
/// shared dependency's features); what is checked, one self-contained binary,
/// is the same for a release install.
#[test]
fn cargo_install_gives_one_binary_that_runs_a_checked_pipeline() -> Result<()> {
    let root = tempfile::tempdir()?;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The test binary sits in <target>/debug/deps.
    let target_dir = Path::new(BIN).parent().and_then(Path::parent).context("target dir")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut install = Command::new(cargo);
    // Cargo sets CARGO_MANIFEST_DIR and friends for this test process; ring's build
    // script tracks CARGO_MANIFEST_DIR, so passing them on would rebuild half the tree.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("CARGO_") && name != "CARGO_HOME" {
            install.env_remove(name);
        }
    }
    let install = install
        .args(["install", "--locked", "--offline", "--debug", "--path"])
        .arg(repo)
        .arg("--root")
        .arg(root.path())
        .arg("--target-dir")
        .arg(target_dir)
        .stdin(Stdio::null())
        .output()?;
    ensure!(install.status.success(), "cargo install failed ({}):\n{}", install.status, stderr(&install));
    // In the dev profile everything it needs was compiled for this test; a unit
    // compiled again means a dev-dependency changed the features of a shared one.
    let log = stderr(&install);
    let compiled: Vec<&str> = log.lines().filter(|l| l.trim_start().starts_with("Compiling ")).collect();
    let dev_profile = Path::new(BIN).parent().and_then(Path::file_name) == Some("debug".as_ref());
    ensure!(
        compiled.is_empty() || !dev_profile,
        "cargo install --debug recompiled what `cargo test` had built:\n{}\na dev-dependency turns on a feature of a \
         dependency the binary shares (compare `cargo tree -e normal,build --target all -f '{{p}} {{f}}'` with the \
         same and `-e normal,build,dev`) and keep the two graphs equal",
        compiled.join("\n")
    );
    let bin = root.path().join("bin");
    let installed: Vec<_> = std::fs::read_dir(&bin)?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>()?;
    ensure!(installed == ["streamlab"], "cargo install put {installed:?} in {}", bin.display());

    let home = root.path().join("home");
    std::fs::create_dir(&home)?;
    let work = root.path().join("work");
    std::fs::create_dir(&work)?;
    let spec = repo.join(SPEC);
    let output = Command::new(bin.join("streamlab"))
        .args(["run", "--spec"])
        .arg(&spec)
        .args(["--expect", "exactly-once", "--", "streamlab", "produce", "--topic", "shop-events", "--count", "100"])
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("HOME", &home)
        .current_dir(&work)
        .stdin(Stdio::null())
        .output()?;
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    ensure!(output.status.success(), "run failed ({}):\n{stdout}\n{stderr}", output.status);
    ensure!(
        stdout.contains("ok: expect exactly-once: 100 records written, each landed exactly once"),
        "no exactly-once line:\n{stdout}\n{stderr}"
    );
    Ok(())
}
