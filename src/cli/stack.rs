//! `up`, `run`, and the commands that talk to a running stack through its
//! control API (`clock`, `flush`, `settle`, `status`, `landing`,
//! `snapshot`).

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use streamlab::checks::expect::Expectation;
use streamlab::checks::snapshot::{Comparison, Snapshot, SnapshotError};
use streamlab::landing::{Landing, Masks};
use streamlab::stack::control::{ControlClient, LandingQuery};
use streamlab::stack::run::{default_masks, RunChecks, SnapshotOutcome};

use super::{
    shutdown_on_signals, ClockCommand, ControlArgs, LandingFormat, MaskArgs, RunArgs, SnapshotCommand, UpArgs,
};

/// `streamlab clock advance`.
pub async fn clock(command: ClockCommand) -> Result<ExitCode> {
    let ClockCommand::Advance { by, control } = command;
    let answer = control.client()?.advance(by).await?;
    println!("clock at {}", answer.now);
    Ok(ExitCode::SUCCESS)
}

/// `streamlab flush`.
pub async fn flush(stream: Option<String>, control: ControlArgs) -> Result<ExitCode> {
    let answer = control.client()?.flush(stream).await?;
    println!("flushed {}", answer.flushed.join(", "));
    Ok(ExitCode::SUCCESS)
}

/// `streamlab settle`.
pub async fn settle(timeout: std::time::Duration, control: ControlArgs) -> Result<ExitCode> {
    control.client()?.settle(timeout).await?;
    println!("settled");
    Ok(ExitCode::SUCCESS)
}

/// `streamlab status`.
pub async fn status(json: bool, control: ControlArgs) -> Result<ExitCode> {
    let client = control.client()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&client.status_json().await?)?);
    } else {
        print!("{}", client.status().await?.render());
    }
    Ok(ExitCode::SUCCESS)
}

/// `streamlab landing`.
pub async fn landing(
    stream: Option<String>,
    format: LandingFormat,
    masks: MaskArgs,
    control: ControlArgs,
) -> Result<ExitCode> {
    let landing = fetch_landing(&control.client()?, stream.as_deref(), masks.masks().as_ref()).await?;
    match format {
        LandingFormat::Table => print!("{}", landing.render_table()),
        LandingFormat::Json => println!("{}", serde_json::to_string_pretty(&landing)?),
        LandingFormat::Yaml => print!("{}", yaml_serde::to_string(&landing)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// `streamlab logs`: every event so far, then (with `--follow`) new ones
/// as they come, until Ctrl-C.
pub async fn logs(stream: Option<String>, follow: bool, control: ControlArgs) -> Result<()> {
    let client = control.client()?;
    let mut printed = 0;
    let stop = shutdown_on_signals();
    loop {
        let lines = client.logs(stream.as_deref()).await?;
        if printed == 0 && lines.is_empty() && !follow {
            eprintln!(
                "no error events{}: either nothing failed, or no stream has CloudWatchLoggingOptions enabled",
                stream.as_deref().map(|s| format!(" for {s}")).unwrap_or_default()
            );
        }
        for line in lines.iter().skip(printed) {
            println!(
                "{} {}/{} {}",
                streamlab::clock::rfc3339_millis(line.timestamp_ms),
                line.group,
                line.log_stream,
                line.message
            );
        }
        printed = printed.max(lines.len());
        if !follow {
            return Ok(());
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}

/// The landing from a running stack, masked as asked.
async fn fetch_landing(client: &ControlClient, stream: Option<&str>, masks: Option<&Masks>) -> Result<Landing> {
    let query = LandingQuery { stream: stream.map(str::to_owned), masks: masks.cloned() };
    Ok(client.landing(&query).await?)
}

/// `streamlab snapshot check|update`.
pub async fn snapshot(command: SnapshotCommand) -> Result<ExitCode> {
    match command {
        SnapshotCommand::Check { file, control } => {
            let recorded = Snapshot::load(&file)?;
            let landing = fetch_landing(&control.client()?, None, Some(&recorded.masks)).await?;
            match recorded.compare(&Snapshot::new(recorded.masks.clone(), landing)) {
                Comparison::Matches => {
                    println!("landing matches {}", file.display());
                    Ok(ExitCode::SUCCESS)
                }
                Comparison::Differs(diff) => {
                    print!("{diff}");
                    eprintln!(
                        "the landing differs from {} (above: - snapshot, + landing). If the change is intended, run `streamlab snapshot update {}` and review the file",
                        file.display(),
                        file.display()
                    );
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        SnapshotCommand::Update { file, masks, control } => {
            let client = control.client()?;
            let recorded = match Snapshot::load(&file) {
                Ok(s) => Some(s.masks),
                Err(SnapshotError::Missing { .. }) => None,
                Err(e) => return Err(e.into()),
            };
            let status = client.status().await?;
            let masks = default_masks(masks.masks().as_ref(), recorded.as_ref(), status.seeded);
            let landing = fetch_landing(&client, None, Some(&masks)).await?;
            Snapshot::new(masks, landing).save(&file)?;
            println!("wrote {}", file.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Says what a stop left undelivered, per stream, and whether it survives:
/// in the broker for the next start on the same `--work-dir` (or cluster),
/// or lost with an in-memory broker. Empty when everything was delivered.
fn undelivered(
    stack: &streamlab::stack::Stack,
    stats: &std::collections::BTreeMap<String, std::sync::Arc<streamlab::delivery::stats::DeliveryStats>>,
) -> Vec<String> {
    let mut lines = Vec::new();
    for (stream, stats) in stats {
        let left = streamlab::delivery::stats::Summary::of(stats).undelivered();
        if left == 0 {
            continue;
        }
        let cause = stats.last_put_error().map(|e| format!(" (last S3 error: {e})")).unwrap_or_default();
        lines.push(format!("{stream}: {left} records read were not delivered{cause}"));
    }
    if lines.is_empty() {
        return lines;
    }
    lines.push(match stack.kept_dir() {
        _ if !stack.broker_outlives_stack() => "they are lost: the local broker kept them in memory; start with --work-dir DIR to keep the broker's data across a stop".to_owned(),
        Some(dir) => format!(
            "they stay in the broker, uncommitted, in {}: the next `streamlab up --work-dir {}` delivers them",
            dir.display(),
            dir.display()
        ),
        None => "they stay in the cluster, uncommitted: the next start reads them again".to_owned(),
    });
    lines
}

/// `streamlab up`.
pub async fn up(args: UpArgs) -> Result<ExitCode> {
    let shutdown = shutdown_on_signals();
    let started = Instant::now();
    let running = streamlab::stack::run::up(args.stack.options(), args.stack.env_file.as_deref()).await?;
    let stack = &running.stack;
    eprintln!(
        "streamlab up: {} stream(s) ready in {:.1}s, clock {} at {}",
        stack.specs().len(),
        started.elapsed().as_secs_f64(),
        stack.clock_mode().name(),
        streamlab::clock::rfc3339_millis(stack.clock().now_millis())
    );
    for spec in &stack.specs() {
        eprintln!("  {}: {} -> s3://{}/", spec.name(), spec.source_label(), spec.bucket());
    }
    for (key, value) in &running.env {
        println!("{key}={value}");
    }
    match &args.stack.env_file {
        Some(path) => {
            eprintln!("endpoints written to {}; Ctrl-C to stop (buffers are delivered first)", path.display())
        }
        None => {
            eprintln!("Ctrl-C to stop (buffers are delivered first); --env-file PATH writes the endpoints to a file")
        }
    }
    shutdown.cancelled().await;
    let stats = stack.shutdown().await?;
    for (stream, stats) in &stats {
        eprintln!("{stream}: {} records read, {} delivered", stats.read(), stats.delivered());
    }
    let problems = undelivered(stack, &stats);
    for problem in &problems {
        eprintln!("FAILED: {problem}");
    }
    Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `streamlab run`.
pub async fn run(args: RunArgs) -> Result<ExitCode> {
    let shutdown = shutdown_on_signals();
    let mut expectations = args.expect.clone();
    if let Some(n) = args.expect_records {
        expectations.push(Expectation::Records(n));
    }
    let running = streamlab::stack::run::up(args.stack.options(), args.stack.env_file.as_deref()).await?;
    eprintln!(
        "streamlab run: stack ready (broker {}, clock {}); running `{}`",
        running.stack.bootstrap(),
        running.stack.clock_mode().name(),
        args.command.join(" ")
    );
    let checks = RunChecks {
        snapshot: args.snapshot.clone(),
        update_snapshot: args.update_snapshot,
        masks: args.masks.masks(),
        expectations,
        then: args.then.clone(),
        settle_timeout: args.settle_timeout,
    };
    let report = streamlab::stack::run::run(&running, &args.command, &checks, &shutdown).await;
    let html = match &args.report {
        Some(path) if report.is_ok() => {
            let specs = running.stack.specs();
            super::report::run_report(&running.stack, &specs, path).await.err()
        }
        _ => None,
    };
    let shutdown_result = running.stack.shutdown().await;
    let left = shutdown_result.as_ref().map(|stats| undelivered(&running.stack, stats)).unwrap_or_default();
    drop(running);
    let mut report = report?;
    shutdown_result?;
    report.problems.extend(left);
    if let Some(e) = html {
        report.problems.push(format!("cannot write the --report: {}", super::describe(&e)));
    }
    print!("{}", report.landing.render_table());
    let command = args.command.join(" ");
    match report.command_status {
        _ if report.interrupted => eprintln!("`{command}` was stopped"),
        Some(status) if status.success() => {}
        Some(status) => eprintln!("FAILED: `{command}` exited with {status}"),
        None => eprintln!("FAILED: `{command}` could not be waited for"),
    }
    for problem in &report.problems {
        eprintln!("FAILED: {problem}");
    }
    for outcome in &report.outcomes {
        let mark = if outcome.passed { "ok" } else { "FAILED" };
        println!("{mark}: expect {}: {}", outcome.expectation, outcome.detail);
    }
    match &report.snapshot {
        None => {}
        Some(SnapshotOutcome::Matched(path)) => println!("ok: landing matches snapshot {}", path.display()),
        Some(SnapshotOutcome::Written(path)) => {
            println!("wrote snapshot {}; review it, then commit it", path.display())
        }
        Some(SnapshotOutcome::Differs { path, diff }) => {
            print!("{diff}");
            println!(
                "FAILED: the landing differs from snapshot {} (above: - snapshot, + landing); if intended, rerun with --update-snapshot and review the file",
                path.display()
            );
        }
    }
    if let (Some(then), Some(status)) = (&args.then, report.then_status) {
        if !status.success() {
            eprintln!("FAILED: --then `{then}` exited with {status}");
        }
    }
    if report.passed() {
        return Ok(ExitCode::SUCCESS);
    }
    // The command's own failure code when it failed, else 1.
    let code = report.command_status.and_then(|s| s.code()).filter(|c| *c != 0).unwrap_or(1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
