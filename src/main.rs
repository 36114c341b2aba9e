//! The `streamlab` command: parses the command line, sets up logging and the
//! runtime, and dispatches to [`cli`], which converts flags into the
//! library's options. Everything else lives in the library.

/// Delivery allocates a buffer per record and frees it when its object
/// lands, millions of small blocks alive at once in varying order: glibc's
/// allocator spends a tenth of the read loop's time there (measured with
/// `perf` on `just bench`), mimalloc a fraction of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use cli::{Cli, Command};

/// mimalloc's options, by the numbers of its `mi_option_e` (the same in
/// its v2 and v3): `arena_eager_commit` and `purge_delay`.
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Returns freed memory to the system within 10 ms (mimalloc v3 waits a
/// second, v2's default is 10 ms) and commits arena memory as it is used
/// rather than up front. A delivery frees a buffer's records when its object
/// lands; with v3's defaults that memory stayed resident, and a Parquet
/// delivery in `just bench` peaked at 392-420 MB RSS under a 134 MB bound
/// (the target is 368). With these: 293-330 MB. The cost is re-faulting
/// pages: the engine alone with dynamic partitioning on 100 keys spends
/// about 20% more CPU than with a 250 ms delay, but that delay raised
/// Parquet's peak to 344-382 MB.
///
/// A command that hosts a stack keeps v3's second: its broker answers each
/// fetch from fresh buffers, and with 10 ms it page-faulted them in again
/// and again. A bare consumer read the bench topic in 0.51 s instead of
/// 0.76 s to 90% with the longer delay (`perf`: page faults were a fifth of
/// the broker's samples). Such a process has no memory bound to keep; the
/// `deliver` process, which has, keeps 10 ms.
///
/// And no transparent huge pages for the process (mimalloc asks for them on
/// its memory by default): a page purged and touched again faulted in a whole
/// 2 MB page, zeroed, which was a fifth of a delivery's CPU with dynamic
/// partitioning on 100 keys (`clear_page_erms` under
/// `do_huge_pmd_anonymous_page` in `perf`), and partly used huge pages
/// counted whole in RSS. In `just bench` (two alternating runs each) peak
/// RSS fell in every case: Parquet from 340-357 to 305-311 MB, 100 keys from
/// 305-317 to 218-280; CPU per GB by 3-20%. mimalloc turns THP off the
/// same way with `MIMALLOC_ALLOW_THP=0`, which it reads before `main`.
///
/// The `MIMALLOC_PURGE_DELAY`, `MIMALLOC_ARENA_EAGER_COMMIT` and
/// `MIMALLOC_ALLOW_THP` environment variables still decide when set.
fn tune_allocator(hosts_stack: bool) {
    let purge_delay_ms = if hosts_stack { 1000 } else { 10 };
    for (option, variable, value) in [
        (MI_OPTION_PURGE_DELAY, "MIMALLOC_PURGE_DELAY", purge_delay_ms),
        (MI_OPTION_ARENA_EAGER_COMMIT, "MIMALLOC_ARENA_EAGER_COMMIT", 0),
    ] {
        if std::env::var_os(variable).is_none() {
            // SAFETY: called in `main` before the runtime starts, while no
            // other thread exists (mimalloc's option setters are not thread
            // safe).
            unsafe { libmimalloc_sys::mi_option_set(option, value) };
        }
    }
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // The kernel then gives this process no huge pages, madvised or
        // not (mimalloc's own option, set after its start, would only stop
        // it asking, and a system in THP mode `always` gives them anyway).
        // Failure (an old kernel) leaves THP as the system has it.
        // SAFETY: prctl with integer arguments only, on this process.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tune_allocator(cli.command.hosts_stack());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let code = runtime.block_on(async_main(cli));
    // The command's stacks, deliveries and containers are stopped by now.
    // What may be left in the blocking pool is a periodic broker query
    // waiting out its timeout because the broker is gone (a sandbox's lag
    // probe); waiting for it would only delay the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

async fn async_main(cli: Cli) -> ExitCode {
    // The soak and a sandbox with faults cause broker outages on purpose;
    // librdkafka's complaints about them would drown the progress lines.
    // aws-config warns about every credential provider it tried; streamlab
    // reports a missing credential itself, with the fix.
    let default_filter =
        if cli.command.injects_faults() { "warn,librdkafka=off,aws_config=error" } else { "warn,aws_config=error" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STREAMLAB_LOG").unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli.command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", cli::describe(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<ExitCode> {
    let done = |()| ExitCode::SUCCESS;
    match command {
        Command::Validate { specs } => Ok(cli::pipeline::validate(&specs)),
        Command::Deploy(args) => cli::pipeline::deploy(args).await,
        Command::Produce(args) => cli::pipeline::produce(args).await.map(done),
        Command::Deliver(args) => cli::pipeline::deliver(args).await.map(done),
        Command::Sandbox(args) => cli::tools::sandbox(args).await.map(done),
        Command::Soak(args) => cli::tools::soak(args).await,
        Command::Bench(args) => cli::tools::bench(args).await,
        Command::Up(args) => cli::stack::up(args).await,
        Command::Cost(args) => cli::report::cost(args).await,
        Command::Inspect(args) => cli::report::inspect(args).await,
        Command::Run(args) => cli::stack::run(args).await,
        Command::Clock { command } => cli::stack::clock(command).await,
        Command::Flush { stream, control } => cli::stack::flush(stream, control).await,
        Command::Settle { timeout, control } => cli::stack::settle(timeout, control).await,
        Command::Status { json, control } => cli::stack::status(json, control).await,
        Command::Landing { stream, format, masks, control } => {
            cli::stack::landing(stream, format, masks, control).await
        }
        Command::Snapshot { command } => cli::stack::snapshot(command).await,
        Command::Logs { stream, follow, control } => {
            cli::stack::logs(stream, follow, control).await.map(|()| ExitCode::SUCCESS)
        }
    }
}
