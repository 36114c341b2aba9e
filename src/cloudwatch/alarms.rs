//! Metric alarms evaluated as CloudWatch evaluates them, on the stack's
//! clock: the last `EvaluationPeriods` periods of the metric's statistic,
//! `DatapointsToAlarm` of them breaching for ALARM, missing periods treated
//! as `TreatMissingData` says, every change kept in the history with its
//! reason. The evaluation is a pure function ([`evaluate`]) so each rule is
//! a unit test.

use serde_json::{json, Value};

use super::store::{percentile_of, MetricKey, MetricStore};

/// `StateValue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmState {
    Ok,
    Alarm,
    InsufficientData,
}

impl AlarmState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Ok => "OK",
            AlarmState::Alarm => "ALARM",
            AlarmState::InsufficientData => "INSUFFICIENT_DATA",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "OK" => Some(AlarmState::Ok),
            "ALARM" => Some(AlarmState::Alarm),
            "INSUFFICIENT_DATA" => Some(AlarmState::InsufficientData),
            _ => None,
        }
    }
}

/// `ComparisonOperator` (the static ones; anomaly bands need a model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    GreaterThanOrEqualToThreshold,
    GreaterThanThreshold,
    LessThanThreshold,
    LessThanOrEqualToThreshold,
}

impl Comparison {
    pub const NAMES: &'static [&'static str] =
        &["GreaterThanOrEqualToThreshold", "GreaterThanThreshold", "LessThanThreshold", "LessThanOrEqualToThreshold"];

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "GreaterThanOrEqualToThreshold" => Some(Comparison::GreaterThanOrEqualToThreshold),
            "GreaterThanThreshold" => Some(Comparison::GreaterThanThreshold),
            "LessThanThreshold" => Some(Comparison::LessThanThreshold),
            "LessThanOrEqualToThreshold" => Some(Comparison::LessThanOrEqualToThreshold),
            _ => None,
        }
    }

    pub fn breaches(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::GreaterThanOrEqualToThreshold => value >= threshold,
            Comparison::GreaterThanThreshold => value > threshold,
            Comparison::LessThanThreshold => value < threshold,
            Comparison::LessThanOrEqualToThreshold => value <= threshold,
        }
    }

    /// The words of CloudWatch's state reasons.
    fn words(self) -> &'static str {
        match self {
            Comparison::GreaterThanOrEqualToThreshold => "greater than or equal to",
            Comparison::GreaterThanThreshold => "greater than",
            Comparison::LessThanThreshold => "less than",
            Comparison::LessThanOrEqualToThreshold => "less than or equal to",
        }
    }
}

/// `TreatMissingData`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreatMissing {
    Missing,
    Ignore,
    Breaching,
    NotBreaching,
}

impl TreatMissing {
    pub const NAMES: &'static [&'static str] = &["breaching", "notBreaching", "ignore", "missing"];

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "missing" => Some(TreatMissing::Missing),
            "ignore" => Some(TreatMissing::Ignore),
            "breaching" => Some(TreatMissing::Breaching),
            "notBreaching" => Some(TreatMissing::NotBreaching),
            _ => None,
        }
    }
}

/// An alarm as `PutMetricAlarm` defined it, checked.
#[derive(Debug, Clone)]
pub struct AlarmDefinition {
    pub name: String,
    pub metric: MetricKey,
    /// `Statistic` (`Average`, `Sum`, ...) or `ExtendedStatistic` (`p99`).
    pub statistic: String,
    pub period_s: i64,
    pub evaluation_periods: usize,
    pub datapoints_to_alarm: usize,
    pub threshold: f64,
    pub comparison: Comparison,
    pub treat_missing: TreatMissing,
    /// The request as given, echoed by `DescribeAlarms`.
    pub request: Value,
}

/// One evaluation's outcome: the state, CloudWatch's reason, and its
/// `StateReasonData`.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub state: AlarmState,
    pub reason: String,
    pub data: Value,
}

/// Evaluates `definition` over `periods`: the statistic of each of the last
/// `EvaluationPeriods` periods, oldest first, `None` where the metric has no
/// data, each with its period start. `current` is the state now (kept by
/// `ignore`).
pub fn evaluate(definition: &AlarmDefinition, periods: &[(i64, Option<f64>)], current: AlarmState) -> Evaluation {
    let (m, n) = (definition.datapoints_to_alarm, definition.evaluation_periods);
    let present: Vec<(i64, f64)> = periods.iter().filter_map(|(t, v)| v.map(|v| (*t, v))).collect();
    let breaches = |v: f64| definition.comparison.breaches(v, definition.threshold);
    let missing = periods.len() - present.len();
    let data = json!({
        "version": "1.0",
        "queryDate": null,
        "statistic": definition.statistic,
        "period": definition.period_s,
        "recentDatapoints": present.iter().rev().map(|(_, v)| *v).collect::<Vec<_>>(),
        "threshold": definition.threshold,
        "evaluatedDatapoints": periods.iter().rev().map(|(t, v)| match v {
            Some(v) => json!({ "timestamp": super::iso8601(*t), "sampleCount": 1.0, "value": v }),
            None => json!({ "timestamp": super::iso8601(*t) }),
        }).collect::<Vec<_>>(),
    });
    if present.is_empty() {
        return match definition.treat_missing {
            TreatMissing::Missing => Evaluation {
                state: AlarmState::InsufficientData,
                reason: format!("Insufficient Data: {n} datapoints were unknown."),
                data,
            },
            TreatMissing::Ignore => Evaluation {
                state: current,
                reason: format!(
                    "No datapoints in the last {n} periods; missing data is ignored, so the state is kept."
                ),
                data,
            },
            TreatMissing::Breaching | TreatMissing::NotBreaching => {
                let breaching = definition.treat_missing == TreatMissing::Breaching && m <= n;
                Evaluation {
                    state: if breaching { AlarmState::Alarm } else { AlarmState::Ok },
                    reason: format!(
                        "Threshold Crossed: no datapoints were received for {n} periods and {n} missing datapoints were treated as [{}].",
                        if breaching { "Breaching" } else { "NonBreaching" }
                    ),
                    data,
                }
            }
        };
    }
    let filled_breaching = if definition.treat_missing == TreatMissing::Breaching { missing } else { 0 };
    let breaching = present.iter().filter(|(_, v)| breaches(*v)).count() + filled_breaching;
    let state = if breaching >= m { AlarmState::Alarm } else { AlarmState::Ok };
    let shown: Vec<String> =
        present.iter().rev().map(|(t, v)| format!("{} ({})", number(*v), super::reason_time(*t))).collect();
    let treated = match (missing, definition.treat_missing) {
        (0, _) => String::new(),
        (k, TreatMissing::Breaching) => format!(" and {k} missing datapoints were treated as [Breaching]"),
        (k, TreatMissing::NotBreaching) => format!(" and {k} missing datapoints were treated as [NonBreaching]"),
        (k, _) => format!(" ({k} missing datapoints were not considered)"),
    };
    let transition = if state == AlarmState::Alarm { "OK -> ALARM" } else { "ALARM -> OK" };
    let minimum = if state == AlarmState::Alarm { m } else { n - m + 1 };
    let count = if state == AlarmState::Alarm { breaching } else { present.len() - (breaching - filled_breaching) };
    let verb = if state == AlarmState::Alarm { "was" } else { "was not" };
    let reason = format!(
        "Threshold Crossed: {count} out of the last {} datapoints [{}] {verb} {} the threshold ({}){treated} (minimum {} datapoint{} for {transition} transition).",
        present.len(),
        shown.join(", "),
        definition.comparison.words(),
        number(definition.threshold),
        minimum.min(n).max(1),
        if minimum.min(n).max(1) == 1 { "" } else { "s" },
    );
    Evaluation { state, reason, data }
}

/// Numbers as CloudWatch prints them in reasons: `600.0`, `12.5`.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        v.to_string()
    }
}

/// The statistic of each of the alarm's last `EvaluationPeriods` periods
/// ending at `end_ms` (a period boundary), oldest first.
pub fn periods(definition: &AlarmDefinition, store: &MetricStore, end_ms: i64) -> Vec<(i64, Option<f64>)> {
    let period_ms = definition.period_s * 1000;
    let n = definition.evaluation_periods as i64;
    let start = end_ms - n * period_ms;
    let aggregates = store.aggregate(&definition.metric, start, end_ms, definition.period_s);
    (0..n)
        .map(|i| {
            let at = start + i * period_ms;
            let value = aggregates.iter().find(|(t, _)| *t == at).and_then(|(_, a)| a.statistic(&definition.statistic));
            (at, value)
        })
        .collect()
}

/// Whether `statistic` is one an alarm can use: a standard statistic or a
/// percentile (`p99`).
pub fn valid_statistic(statistic: &str) -> bool {
    ["SampleCount", "Average", "Sum", "Minimum", "Maximum"].contains(&statistic) || percentile_of(statistic).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarm(m: usize, n: usize, treat: TreatMissing) -> AlarmDefinition {
        AlarmDefinition {
            name: "a".into(),
            metric: MetricKey::new("AWS/Firehose", "DeliveryToS3.DataFreshness", vec![]),
            statistic: "Maximum".into(),
            period_s: 60,
            evaluation_periods: n,
            datapoints_to_alarm: m,
            threshold: 600.0,
            comparison: Comparison::GreaterThanThreshold,
            treat_missing: treat,
            request: Value::Null,
        }
    }

    /// `X` breaching (900), `0` not breaching (100), `-` missing; oldest
    /// first.
    fn points(pattern: &str) -> Vec<(i64, Option<f64>)> {
        pattern
            .split_whitespace()
            .enumerate()
            .map(|(i, p)| {
                let v = match p {
                    "X" => Some(900.0),
                    "0" => Some(100.0),
                    _ => None,
                };
                (i as i64 * 60_000, v)
            })
            .collect()
    }

    fn state(m: usize, n: usize, treat: TreatMissing, pattern: &str, current: AlarmState) -> AlarmState {
        evaluate(&alarm(m, n, treat), &points(pattern), current).state
    }

    #[test]
    fn m_out_of_n_datapoints_alarm() {
        use AlarmState::*;
        use TreatMissing::*;
        // 3 out of 5: three breaching anywhere in the range alarm.
        assert_eq!(state(3, 5, Missing, "X 0 X 0 X", Ok), Alarm);
        assert_eq!(state(3, 5, Missing, "X 0 X 0 0", Alarm), Ok);
        assert_eq!(state(1, 1, Missing, "X", Ok), Alarm);
        assert_eq!(state(5, 5, Missing, "X X X X 0", Ok), Ok);
    }

    #[test]
    fn treat_missing_data_as_documented() {
        use AlarmState::*;
        use TreatMissing::*;
        // Some datapoints missing: breaching fills them in as breaching,
        // notBreaching as fine, missing and ignore leave them out.
        assert_eq!(state(3, 5, Breaching, "0 - X - X", Ok), Alarm);
        assert_eq!(state(3, 5, NotBreaching, "0 - X - X", Ok), Ok);
        assert_eq!(state(3, 5, Missing, "0 - X - X", Ok), Ok);
        assert_eq!(state(3, 5, Ignore, "0 - X - X", Ok), Ok);
        assert_eq!(state(3, 5, Missing, "0 X X - X", Ok), Alarm);
        // Every datapoint missing.
        assert_eq!(state(3, 5, Missing, "- - - - -", Ok), InsufficientData);
        assert_eq!(state(3, 5, Ignore, "- - - - -", Alarm), Alarm, "ignore keeps the state");
        assert_eq!(state(3, 5, Ignore, "- - - - -", Ok), Ok);
        assert_eq!(state(3, 5, Breaching, "- - - - -", Ok), Alarm);
        assert_eq!(state(3, 5, NotBreaching, "- - - - -", Alarm), Ok);
    }

    #[test]
    fn reasons_read_like_cloudwatchs() {
        let e = evaluate(&alarm(1, 1, TreatMissing::Missing), &[(960_000, Some(960.0))], AlarmState::Ok);
        assert_eq!(e.state, AlarmState::Alarm);
        assert_eq!(
            e.reason,
            "Threshold Crossed: 1 out of the last 1 datapoints [960.0 (01/01/70 00:16:00)] was greater than the threshold (600.0) (minimum 1 datapoint for OK -> ALARM transition)."
        );
        let ok = evaluate(&alarm(1, 1, TreatMissing::Missing), &[(960_000, Some(30.0))], AlarmState::Alarm);
        assert!(ok.reason.contains("was not greater than the threshold (600.0)"), "{}", ok.reason);
        assert_eq!(ok.data["recentDatapoints"], json!([30.0]));
    }

    #[test]
    fn every_comparison() {
        assert!(Comparison::GreaterThanOrEqualToThreshold.breaches(1.0, 1.0));
        assert!(!Comparison::GreaterThanThreshold.breaches(1.0, 1.0));
        assert!(Comparison::LessThanThreshold.breaches(0.5, 1.0));
        assert!(Comparison::LessThanOrEqualToThreshold.breaches(1.0, 1.0));
        assert!(!Comparison::LessThanThreshold.breaches(1.0, 1.0));
    }

    #[test]
    fn periods_come_from_the_store() {
        let mut store = MetricStore::default();
        let definition = alarm(1, 3, TreatMissing::Missing);
        store.put_value(definition.metric.clone(), None, 60_000, 5.0);
        store.put_value(definition.metric.clone(), None, 120_000, 7.0);
        assert_eq!(periods(&definition, &store, 180_000), vec![(0, None), (60_000, Some(5.0)), (120_000, Some(7.0))]);
    }
}
