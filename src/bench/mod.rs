//! `streamlab bench`: figures measured in one run on this machine, printed
//! as a table of values against their targets and written as JSON for
//! comparison between runs. Nothing here is a test: a missed target is a
//! figure to explain, not a failure.

pub mod test_loop;
pub mod throughput;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::stack::StackError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    #[error(transparent)]
    Stack(#[from] StackError),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    /// A measured run did not do what it must (lost records, failed).
    #[error("{0}")]
    Run(String),
}

impl BenchError {
    fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
        let context = context.into();
        move |source| BenchError::Io { context, source }
    }
}

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
    pub test_loop: test_loop::LoopOptions,
    pub throughput: throughput::ThroughputOptions,
}

/// Every figure, measured in one run on this machine.
pub async fn run(options: &BenchOptions) -> Result<Report, BenchError> {
    let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut figures = Vec::new();
    throughput::measure(&options.throughput, &mut figures).await?;
    if options.throughput.case_filter.is_none() {
        test_loop::measure(&options.test_loop, &mut figures).await?;
    }
    Ok(Report { started, machine: Machine::detect(), figures })
}

/// Only the engine on memory.
pub async fn run_engine(options: &BenchOptions) -> Result<Report, BenchError> {
    let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut figures = Vec::new();
    throughput::measure(&options.throughput, &mut figures).await?;
    Ok(Report { started, machine: Machine::detect(), figures })
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
