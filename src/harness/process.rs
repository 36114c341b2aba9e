//! `streamlab deliver` as a child process, the way users run it: the soak
//! SIGKILLs it, the benchmark measures its CPU and memory, the fault tests
//! crash and restart it. [`DeliverCommand`] is its command line, typed, so
//! no caller writes flags by hand.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::delivery::sink::S3Settings;

/// The options of `streamlab deliver` that the tools and tests set.
#[derive(Debug, Clone, Default)]
pub struct DeliverCommand {
    pub spec: PathBuf,
    pub bootstrap: String,
    pub s3_endpoint: Option<String>,
    /// Clock speed-up (`--speedup`); `None` is the wall clock.
    pub speedup: Option<f64>,
    pub instance_id: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub exit_at_end: bool,
    pub report: Option<PathBuf>,
    pub max_buffered_bytes: Option<u64>,
    pub max_in_flight: Option<usize>,
    pub max_poll_interval: Option<Duration>,
}

impl DeliverCommand {
    pub fn new(spec: impl Into<PathBuf>, bootstrap: impl Into<String>) -> Self {
        DeliverCommand { spec: spec.into(), bootstrap: bootstrap.into(), ..Default::default() }
    }

    /// The arguments after `streamlab deliver`.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["--spec".to_owned(), self.spec.display().to_string(), "--bootstrap".to_owned()];
        args.push(self.bootstrap.clone());
        let mut option = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                args.push(format!("--{name}"));
                args.push(value);
            }
        };
        option("s3-endpoint", self.s3_endpoint.clone());
        option("speedup", self.speedup.map(|s| s.to_string()));
        option("instance-id", self.instance_id.clone());
        option("state-dir", self.state_dir.as_ref().map(|d| d.display().to_string()));
        option("report", self.report.as_ref().map(|r| r.display().to_string()));
        option("max-buffered-bytes", self.max_buffered_bytes.map(|b| b.to_string()));
        option("max-in-flight", self.max_in_flight.map(|n| n.to_string()));
        option("max-poll-interval", self.max_poll_interval.map(|d| humantime::format_duration(d).to_string()));
        if self.exit_at_end {
            args.push("--exit-at-end".to_owned());
        }
        args
    }

    /// Runs `binary deliver ...`; `output` receives its stderr.
    pub fn spawn(
        &self,
        binary: &Path,
        s3: &S3Settings,
        output: std::process::Stdio,
    ) -> std::io::Result<DeliverProcess> {
        DeliverProcess::spawn(binary, &self.args(), s3, output)
    }
}

/// A `streamlab deliver` child process: delivery exactly as users run it, so
/// it can be SIGKILLed. Credentials and region come from `s3`, through the
/// environment as the AWS chain reads them. Killed when dropped.
pub struct DeliverProcess {
    child: std::process::Child,
}

impl DeliverProcess {
    /// Runs `binary deliver ARGS...`; `output` receives stdout and stderr.
    pub fn spawn(
        binary: &std::path::Path,
        args: &[String],
        s3: &crate::delivery::sink::S3Settings,
        output: std::process::Stdio,
    ) -> std::io::Result<Self> {
        Self::spawn_with_env(binary, args, &[], s3, output)
    }

    /// As [`DeliverProcess::spawn`], with `env` added (such as the
    /// `AWS_ENDPOINT_URL_CLOUDWATCH` of `--cloudwatch`).
    pub fn spawn_with_env(
        binary: &std::path::Path,
        args: &[String],
        env: &[(&str, &str)],
        s3: &crate::delivery::sink::S3Settings,
        output: std::process::Stdio,
    ) -> std::io::Result<Self> {
        let mut command = std::process::Command::new(binary);
        command
            .arg("deliver")
            .args(args)
            .envs(env.iter().copied())
            .env("AWS_REGION", s3.region.as_deref().unwrap_or("us-east-1"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            // The caller's filter, when set, reaches the child (to debug a
            // test's or the bench's deliveries); info by default.
            .env("STREAMLAB_LOG", std::env::var("STREAMLAB_LOG").unwrap_or_else(|_| "streamlab=info".into()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(output);
        if let Some(c) = &s3.credentials {
            command.env("AWS_ACCESS_KEY_ID", &c.access_key_id).env("AWS_SECRET_ACCESS_KEY", &c.secret_access_key);
        }
        Ok(Self { child: command.spawn()? })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for it to exit on its own (`deliver --exit-at-end`).
    pub fn wait_with_usage(mut self) -> std::io::Result<(std::process::ExitStatus, Usage)> {
        wait_with_usage(&mut self.child)
    }

    /// The crash: no flush, no commit.
    pub fn sigkill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The clean stop: every buffer delivered and committed.
    pub fn sigterm(mut self) -> std::io::Result<std::process::ExitStatus> {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait()
    }
}

impl Drop for DeliverProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a child process used, as the kernel counted it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// User plus system CPU time.
    pub cpu_seconds: f64,
    /// Peak resident set size.
    pub peak_rss_bytes: u64,
}

/// Waits for `child` and returns its exit status with its resource usage
/// (`wait4`), which `std` does not expose.
pub fn wait_with_usage(child: &mut std::process::Child) -> std::io::Result<(std::process::ExitStatus, Usage)> {
    use std::os::unix::process::ExitStatusExt;
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child, with valid out-pointers.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let usage = Usage {
        cpu_seconds: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        // Linux reports kilobytes.
        peak_rss_bytes: usage.ru_maxrss as u64 * 1024,
    };
    Ok((std::process::ExitStatus::from_raw(status), usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_with_usage_reports_what_the_child_used() {
        // A child that allocates and touches 64 MiB, then spins briefly.
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                "b = bytearray(64 * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1\nsum(range(3_000_000))",
            ])
            .spawn()
            .unwrap();
        let (status, usage) = wait_with_usage(&mut child).unwrap();
        assert!(status.success());
        assert!(usage.peak_rss_bytes >= 64 * 1024 * 1024, "{usage:?}");
        assert!(usage.cpu_seconds > 0.0, "{usage:?}");
    }

    #[test]
    fn the_command_line_names_every_option_given() {
        let command = DeliverCommand {
            s3_endpoint: Some("http://127.0.0.1:9000".into()),
            speedup: Some(600.0),
            instance_id: Some("soak".into()),
            exit_at_end: true,
            ..DeliverCommand::new("spec.json", "127.0.0.1:9092")
        };
        assert_eq!(
            command.args().join(" "),
            "--spec spec.json --bootstrap 127.0.0.1:9092 --s3-endpoint http://127.0.0.1:9000 --speedup 600 \
             --instance-id soak --exit-at-end"
        );
    }
}
