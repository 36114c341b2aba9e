//! The test loop a user runs: `streamlab run` to a verified landing, and
//! the same loop in process, phase by phase.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{median, BenchError, Figure};
use crate::checks::expect::Expectation;
use crate::stack::{Stack, StackOptions};

/// The test-loop figures: `streamlab run` end to end, then its phases.
pub async fn measure(options: &LoopOptions, figures: &mut Vec<Figure>) -> Result<(), BenchError> {
    eprintln!("bench: test loop, {} x `streamlab run` with {} events ...", options.loops, options.loop_events);
    let loops = tokio::task::spawn_blocking({
        let options = options.clone();
        move || test_loop_cli(&options)
    })
    .await
    .expect("the test loop does not panic")
    .map_err(BenchError::Run)?;
    figures.push(
        Figure::new(
            &format!("test loop ({} events, 300 s interval, verified landing)", options.loop_events),
            "streamlab run, start to verdict",
            median(&loops),
            "s",
        )
        .at_most(1.0)
        .note(format!(
            "median of {}: {}",
            loops.len(),
            loops.iter().map(|l| format!("{l:.2}")).collect::<Vec<_>>().join(", ")
        )),
    );
    let phases = test_loop_phases(options.loop_events).await.map_err(BenchError::Run)?;
    for (name, took) in phases {
        figures.push(Figure::new("test loop phases (Stack API, in process)", name, took.as_secs_f64(), "s"));
    }
    Ok(())
}

/// How the test loop is measured.
#[derive(Debug, Clone)]
pub struct LoopOptions {
    /// The streamlab binary (the one running), for runs as a user makes them.
    pub binary: PathBuf,
    /// Repetitions of the test loop; the median is reported.
    pub loops: usize,
    pub loop_events: u64,
}

/// The test loop as a user runs it: `streamlab run` with a 300 s buffer
/// interval, a producer writing `events`, then a verified landing. Returns
/// wall seconds per repetition.
pub fn test_loop_cli(options: &LoopOptions) -> Result<Vec<f64>, String> {
    let mut out = Vec::new();
    for _ in 0..options.loops {
        let started = Instant::now();
        let output = std::process::Command::new(&options.binary)
            .args([
                "run",
                "--spec",
                "fixtures/streams/orders-to-s3.json",
                "--expect",
                "exactly-once,no-errors,key-shape",
            ])
            .args(["--", &options.binary.display().to_string(), "produce", "--topic", "shop-events"])
            .args(["--count", &options.loop_events.to_string()])
            .env_remove("STREAMLAB_CONTROL")
            .output()
            .map_err(|e| format!("cannot run {}: {e}", options.binary.display()))?;
        let elapsed = started.elapsed().as_secs_f64();
        if !output.status.success() {
            return Err(format!(
                "the test loop failed:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        out.push(elapsed);
    }
    Ok(out)
}

/// The same loop in-process through the Stack API, phase by phase: where the
/// time of a test goes.
pub async fn test_loop_phases(events: u64) -> Result<Vec<(&'static str, Duration)>, String> {
    let fail = |e: &dyn std::fmt::Display| e.to_string();
    let mut phases = Vec::new();
    let started = Instant::now();
    let stack =
        Stack::start(StackOptions::new(["fixtures/streams/orders-to-s3.json"]).seed(1)).await.map_err(|e| fail(&e))?;
    phases.push(("stack ready (broker, S3, topics, delivery)", started.elapsed()));
    let at = Instant::now();
    let generator = crate::events::GeneratorConfig::new(1, stack.clock().now_millis());
    let produced = stack
        .produce("shop-events", crate::events::EventGenerator::new(&generator).take(events as usize))
        .await
        .map_err(|e| fail(&e))?;
    phases.push(("produce (acknowledged)", at.elapsed()));
    let at = Instant::now();
    stack.settle(Duration::from_secs(60)).await.map_err(|e| fail(&e))?;
    phases.push(("settle (all read)", at.elapsed()));
    let at = Instant::now();
    stack.advance(Duration::from_secs(300)).await.map_err(|e| fail(&e))?;
    phases.push(("advance 300 s (objects landed)", at.elapsed()));
    let at = Instant::now();
    let outcomes = stack
        .check(&[Expectation::ExactlyOnce, Expectation::NoErrors, Expectation::KeyShape])
        .await
        .map_err(|e| fail(&e))?;
    phases.push(("checks (read topic and S3 back)", at.elapsed()));
    if let Some(failed) = outcomes.iter().find(|o| !o.passed) {
        return Err(format!("the in-process loop failed {}: {}", failed.expectation, failed.detail));
    }
    if produced != events {
        return Err(format!("{produced} of {events} events acknowledged"));
    }
    let at = Instant::now();
    stack.shutdown().await.map_err(|e| fail(&e))?;
    drop(stack);
    phases.push(("shutdown", at.elapsed()));
    phases.push(("total", started.elapsed()));
    Ok(phases)
}
