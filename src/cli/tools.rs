//! The tools around the pipeline: the `sandbox`, the `soak` and the `bench`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use streamlab::sandbox::{self, SandboxOptions};
use streamlab::soak::SoakOptions;

use super::{shutdown_on_signals, BenchArgs, SandboxArgs, SoakArgs};

/// `streamlab bench`.
pub async fn bench(args: BenchArgs) -> Result<ExitCode> {
    use streamlab::bench::test_loop::LoopOptions;
    use streamlab::bench::throughput::ThroughputOptions;
    use streamlab::bench::BenchOptions;
    let binary = std::env::current_exe()?;
    let work_dir = run_dir("streamlab-bench");
    let options = BenchOptions {
        test_loop: LoopOptions { binary: binary.clone(), loops: args.repeat as usize, loop_events: 10_000 },
        throughput: ThroughputOptions {
            binary,
            events: args.events,
            partitions: 3,
            size_mb: 8,
            max_buffered_bytes: args.max_buffered_bytes,
            max_in_flight: args.max_in_flight.map_or_else(streamlab::delivery::default_max_in_flight, usize::from),
            python: args.python,
            baseline_script: PathBuf::from("tools/bench/baseline.py"),
            work_dir: work_dir.clone(),
            engine_only: args.engine_only,
            case_filter: args.case,
        },
    };
    eprintln!("bench: work dir {}", work_dir.display());
    let report = if args.engine_only {
        streamlab::bench::run_engine(&options).await?
    } else {
        streamlab::bench::run(&options).await?
    };
    print!("{}", report.render());
    let path = report.write_json(&args.out)?;
    eprintln!("results written to {}", path.display());
    Ok(ExitCode::SUCCESS)
}

fn run_dir(kind: &str) -> PathBuf {
    PathBuf::from("target").join(kind).join(chrono::Utc::now().format("run-%Y%m%d-%H%M%S").to_string())
}

/// `streamlab soak`.
pub async fn soak(args: SoakArgs) -> Result<ExitCode> {
    if !(0.0..=1.0).contains(&args.s3_error_rate) {
        bail!("--s3-error-rate must be between 0 and 1; got {}", args.s3_error_rate);
    }
    let options = SoakOptions {
        spec: args.spec,
        events: args.events,
        rate: args.rate,
        s3_error_rate: args.s3_error_rate,
        broker_outages: args.broker_outages,
        outage: args.outage,
        kills: args.kills,
        seed: args.seed,
        speedup: args.speedup,
        timeout: args.timeout,
        partitions: args.partitions,
        work_dir: args.work_dir.unwrap_or_else(|| run_dir("streamlab-soak")),
        stack_kills: args.stack_kills,
    };
    // Rejected before the banner and before anything is created.
    streamlab::soak::load_spec(&options.spec)?;
    eprintln!(
        "soak: {} events at {}/s, {:.0}% of S3 PUTs failing, {} broker outages of {:?}, {} SIGKILLs of delivery (work dir {})",
        options.events,
        options.rate,
        options.s3_error_rate * 100.0,
        options.broker_outages,
        options.outage,
        options.kills,
        options.work_dir.display()
    );
    let shutdown = shutdown_on_signals();
    let report = streamlab::soak::run(&options, shutdown.clone()).await?;
    print!("{}", report.render());
    let mut passed = report.passed();
    if options.stack_kills > 0 && !shutdown.is_cancelled() {
        eprintln!(
            "soak, stack phase: {} events at {}/s, {} SIGKILLs of `streamlab up` on its work dir",
            options.events, options.rate, options.stack_kills
        );
        let report = streamlab::soak::stack::run(&options, shutdown).await?;
        print!("{}", report.render());
        passed &= report.passed();
    }
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `streamlab sandbox`.
pub async fn sandbox(args: SandboxArgs) -> Result<()> {
    let work_dir = args.work_dir.unwrap_or_else(|| run_dir("streamlab-sandbox"));
    let options = SandboxOptions {
        spec: args.spec,
        backend: args.backend.into(),
        speedup: args.speedup,
        rate: args.rate,
        seed: args.seed,
        partitions: args.partitions,
        duration: args.duration,
        work_dir,
        faults: args.faults,
        functions: args.lambda.config(),
        glue_dir: args.glue_dir,
    };
    let report = sandbox::run(&options, shutdown_on_signals()).await?;
    print!("{}", sandbox::render_report(&report));
    Ok(())
}
