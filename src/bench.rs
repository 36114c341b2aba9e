//! `streamlab bench`: figures measured in one run on this machine, printed
//! as a table of values against their targets and written as JSON for
//! comparison between runs. Nothing here is a test: a missed target is a
//! figure to explain, not a failure.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::checks::expect::Expectation;
use crate::stack::{Stack, StackOptions};

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub section: String,
    pub name: String,
    pub value: f64,
    pub unit: String,
    /// The target, if there is one, and whether lower is better.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Target {
    pub value: f64,
    pub lower_is_better: bool,
}

impl Figure {
    pub fn new(section: &str, name: &str, value: f64, unit: &str) -> Self {
        Figure {
            section: section.into(),
            name: name.into(),
            value,
            unit: unit.into(),
            target: None,
            note: String::new(),
        }
    }

    pub fn at_most(mut self, value: f64) -> Self {
        self.target = Some(Target { value, lower_is_better: true });
        self
    }

    pub fn at_least(mut self, value: f64) -> Self {
        self.target = Some(Target { value, lower_is_better: false });
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    fn verdict(&self) -> &'static str {
        match self.target {
            None => "",
            Some(t)
                if (t.lower_is_better && self.value <= t.value) || (!t.lower_is_better && self.value >= t.value) =>
            {
                "met"
            }
            Some(_) => "MISSED",
        }
    }
}

/// Everything one `bench` run measured, with the machine it ran on.
#[derive(Debug, Serialize)]
pub struct Report {
    pub started: String,
    pub machine: Machine,
    pub figures: Vec<Figure>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub os: String,
}

impl Machine {
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let memory_kib: f64 = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:").and_then(|r| r.split_whitespace().next()?.parse().ok()))
            .unwrap_or(0.0);
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            os: std::env::consts::OS.into(),
        }
    }
}

impl Report {
    /// The table: section, figure, value, target and verdict.
    pub fn render(&self) -> String {
        let m = &self.machine;
        let mut out =
            format!("streamlab bench, {} on {} CPUs ({}), {} GiB\n", self.started, m.cpus, m.cpu_model, m.memory_gib);
        let width = self.figures.iter().map(|f| f.name.len()).max().unwrap_or(10).max(10);
        let mut section = "";
        for f in &self.figures {
            if f.section != section {
                section = &f.section;
                out += &format!("\n{section}\n");
            }
            let target = match f.target {
                None => String::new(),
                Some(t) => format!("{} {}", if t.lower_is_better { "<=" } else { ">=" }, number(t.value)),
            };
            out += &format!(
                "  {:<width$}  {:>12} {:<10} {:>12}  {:<6} {}\n",
                f.name,
                number(f.value),
                f.unit,
                target,
                f.verdict(),
                f.note
            );
        }
        out
    }

    pub fn write_json(&self, dir: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("bench-{}.json", self.started.replace([':', '.'], "-")));
        std::fs::write(&path, serde_json::to_vec_pretty(self).expect("the report serializes"))?;
        Ok(path)
    }
}

fn number(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// What `streamlab bench` measures.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The streamlab binary (the one running), for runs as a user makes them.
    pub binary: PathBuf,
    /// Repetitions of the test loop; the median is reported.
    pub loops: usize,
    pub loop_events: u64,
}

/// The test loop as a user runs it: `streamlab run` with a 300 s buffer
/// interval, a producer writing `events`, then a verified landing. Returns
/// wall seconds per repetition.
pub fn test_loop_cli(options: &BenchOptions) -> Result<Vec<f64>, String> {
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

/// The median of some figures.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_direction_of_the_target() {
        assert_eq!(Figure::new("s", "a", 2.5, "s").at_most(3.0).verdict(), "met");
        assert_eq!(Figure::new("s", "a", 3.5, "s").at_most(3.0).verdict(), "MISSED");
        assert_eq!(Figure::new("s", "a", 0.96, "x").at_least(0.95).verdict(), "met");
        assert_eq!(Figure::new("s", "a", 0.5, "x").verdict(), "");
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
