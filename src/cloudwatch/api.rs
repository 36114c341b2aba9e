//! CloudWatch's operations on a stack's [`Monitor`], on JSON values (the
//! protocol layer turns CBOR, JSON 1.0 and query into them): metrics read
//! (`GetMetricData`, `GetMetricStatistics`, `ListMetrics`) and written
//! (`PutMetricData`), alarms defined, read, set and deleted, with
//! CloudWatch's error codes.

use std::sync::Arc;

use chrono::DateTime;
use serde_json::{json, Map, Value};

use super::alarms::{self, AlarmDefinition, AlarmState, Comparison, TreatMissing};
pub use super::error::ApiError;
use super::protocol::timestamp;
use super::store::{percentile_of, MetricKey};
use super::{Alarm, Monitor};
use crate::clock::SharedClock;

/// Items per `PutMetricData` call.
pub const MAX_METRIC_DATA: usize = 1_000;
/// Queries per `GetMetricData` call.
pub const MAX_QUERIES: usize = 500;
/// Datapoints per `GetMetricStatistics` answer.
pub const MAX_DATAPOINTS: usize = 1_440;
/// Dimensions per metric.
pub const MAX_DIMENSIONS: usize = 30;

/// The CloudWatch API of one stack.
pub struct CloudWatch {
    monitor: Arc<Monitor>,
    clock: SharedClock,
    region: String,
}

impl CloudWatch {
    pub fn new(monitor: Arc<Monitor>, clock: SharedClock, region: &str) -> Self {
        CloudWatch { monitor, clock, region: region.to_owned() }
    }

    pub fn monitor(&self) -> &Arc<Monitor> {
        &self.monitor
    }

    /// Runs one operation.
    pub fn call(&self, operation: &str, body: &Value) -> Result<Value, ApiError> {
        match operation {
            "PutMetricData" => self.put_metric_data(body),
            "GetMetricStatistics" => self.get_metric_statistics(body),
            "GetMetricData" => self.get_metric_data(body),
            "ListMetrics" => self.list_metrics(body),
            "PutMetricAlarm" => self.put_metric_alarm(body),
            "DescribeAlarms" => self.describe_alarms(body),
            "DescribeAlarmsForMetric" => self.describe_alarms_for_metric(body),
            "DescribeAlarmHistory" => self.describe_alarm_history(body),
            "DeleteAlarms" => self.delete_alarms(body),
            "SetAlarmState" => self.set_alarm_state(body),
            other => Err(ApiError::new(
                "InvalidAction",
                format!(
                    "{other} is not a CloudWatch operation streamlab answers (PutMetricData, GetMetricStatistics, GetMetricData, ListMetrics, PutMetricAlarm, DescribeAlarms, DescribeAlarmsForMetric, DescribeAlarmHistory, DeleteAlarms, SetAlarmState)"
                ),
            )),
        }
    }

    fn now(&self) -> i64 {
        self.clock.now_millis()
    }

    fn put_metric_data(&self, body: &Value) -> Result<Value, ApiError> {
        let namespace = string(body, "Namespace")?.ok_or_else(|| ApiError::missing("Namespace"))?;
        if namespace.starts_with("AWS/") {
            return Err(ApiError::invalid(format!(
                "The value {namespace} for parameter Namespace is invalid: namespaces starting with AWS/ are reserved for AWS services; use your own, e.g. Shop/Orders"
            )));
        }
        let data = list(body, "MetricData")?;
        if data.is_empty() || data.len() > MAX_METRIC_DATA {
            return Err(ApiError::invalid(format!(
                "The collection MetricData must have 1 to {MAX_METRIC_DATA} items; it has {}",
                data.len()
            )));
        }
        let now = self.now();
        // Checked whole before anything is stored.
        let mut puts = Vec::new();
        for (i, datum) in data.iter().enumerate() {
            let at = format!("MetricData.member.{}", i + 1);
            let name = string(datum, "MetricName")?.ok_or_else(|| ApiError::missing(&format!("{at}.MetricName")))?;
            let key = MetricKey::new(&namespace, &name, dimensions(datum, &at)?);
            let unit = string(datum, "Unit")?;
            let at_ms = time(datum, "Timestamp")?.unwrap_or(now);
            let mut values = Vec::new();
            if let Some(v) = number(datum, "Value")? {
                values.push((v, 1.0));
            }
            let counts = list(datum, "Counts")?;
            for (j, v) in list(datum, "Values")?.iter().enumerate() {
                let v = as_number(v)
                    .ok_or_else(|| ApiError::invalid(format!("{at}.Values.member.{} is not a number", j + 1)))?;
                let count = counts.get(j).and_then(as_number).unwrap_or(1.0);
                values.push((v, count));
            }
            let set = match datum.get("StatisticValues").filter(|v| !v.is_null()) {
                Some(s) => {
                    let field =
                        |f: &str| number(s, f)?.ok_or_else(|| ApiError::missing(&format!("{at}.StatisticValues.{f}")));
                    Some([field("SampleCount")?, field("Sum")?, field("Minimum")?, field("Maximum")?])
                }
                None => None,
            };
            if values.is_empty() && set.is_none() {
                return Err(ApiError::new(
                    "InvalidParameterCombination",
                    format!("{at} needs Value, Values or StatisticValues"),
                ));
            }
            puts.push((key, unit, at_ms, values, set));
        }
        self.monitor.with_store(|store| {
            for (key, unit, at_ms, values, set) in puts {
                for (value, count) in values {
                    for _ in 0..(count.max(1.0) as usize).min(10_000) {
                        store.put_value(key.clone(), unit.as_deref(), at_ms, value);
                    }
                }
                if let Some(set) = set {
                    store.put_set(key, unit.as_deref(), at_ms, set);
                }
            }
        });
        Ok(json!({}))
    }

    fn get_metric_statistics(&self, body: &Value) -> Result<Value, ApiError> {
        let namespace = string(body, "Namespace")?.ok_or_else(|| ApiError::missing("Namespace"))?;
        let name = string(body, "MetricName")?.ok_or_else(|| ApiError::missing("MetricName"))?;
        let key = MetricKey::new(&namespace, &name, dimensions(body, "Dimensions")?);
        let start = time(body, "StartTime")?.ok_or_else(|| ApiError::missing("StartTime"))?;
        let end = time(body, "EndTime")?.ok_or_else(|| ApiError::missing("EndTime"))?;
        let period = period(body, "Period")?;
        let statistics = strings(body, "Statistics")?;
        let extended = strings(body, "ExtendedStatistics")?;
        if statistics.is_empty() && extended.is_empty() {
            return Err(ApiError::missing("Statistics or ExtendedStatistics"));
        }
        for s in &statistics {
            if !["SampleCount", "Average", "Sum", "Minimum", "Maximum"].contains(&s.as_str()) {
                return Err(ApiError::invalid(format!(
                    "The value {s} for parameter Statistics is not valid: SampleCount, Average, Sum, Minimum or Maximum"
                )));
            }
        }
        for p in &extended {
            if percentile_of(p).is_none() {
                return Err(ApiError::invalid(format!(
                    "The value {p} for parameter ExtendedStatistics is not a percentile (p0.0-p100, e.g. p99)"
                )));
            }
        }
        if end <= start {
            return Err(ApiError::invalid("The parameter StartTime must be less than the parameter EndTime."));
        }
        let periods = (end - start) / (period * 1000);
        // (Both times are within 1970-9999: no overflow.)
        if periods as usize > MAX_DATAPOINTS {
            return Err(ApiError::invalid(format!(
                "You have requested up to {periods} datapoints, which exceeds the limit of {MAX_DATAPOINTS}. You may reduce the datapoints requested by increasing Period, or decreasing the time range."
            )));
        }
        let unit = self.monitor.with_store(|s| s.unit(&key).map(str::to_owned));
        let aggregates = self.monitor.with_store(|s| s.aggregate(&key, start, end, period));
        let datapoints: Vec<Value> = aggregates
            .iter()
            .map(|(at, aggregate)| {
                let mut point = Map::new();
                point.insert("Timestamp".into(), timestamp(*at));
                for s in &statistics {
                    if let Some(v) = aggregate.statistic(s) {
                        point.insert(s.clone(), json!(v));
                    }
                }
                if !extended.is_empty() {
                    let values: Map<String, Value> =
                        extended.iter().filter_map(|p| aggregate.statistic(p).map(|v| (p.clone(), json!(v)))).collect();
                    point.insert("ExtendedStatistics".into(), Value::Object(values));
                }
                point.insert("Unit".into(), json!(unit.clone().unwrap_or_else(|| "None".into())));
                Value::Object(point)
            })
            .collect();
        Ok(json!({ "Label": name, "Datapoints": datapoints }))
    }

    fn get_metric_data(&self, body: &Value) -> Result<Value, ApiError> {
        let queries = list(body, "MetricDataQueries")?;
        if queries.is_empty() || queries.len() > MAX_QUERIES {
            return Err(ApiError::invalid(format!(
                "The collection MetricDataQueries must have 1 to {MAX_QUERIES} items; it has {}",
                queries.len()
            )));
        }
        let start = time(body, "StartTime")?.ok_or_else(|| ApiError::missing("StartTime"))?;
        let end = time(body, "EndTime")?.ok_or_else(|| ApiError::missing("EndTime"))?;
        if end <= start {
            return Err(ApiError::invalid("The parameter StartTime must be less than the parameter EndTime."));
        }
        let ascending = string(body, "ScanBy")?.as_deref() == Some("TimestampAscending");
        let mut results = Vec::new();
        for (i, query) in queries.iter().enumerate() {
            let at = format!("MetricDataQueries.member.{}", i + 1);
            let id = string(query, "Id")?.ok_or_else(|| ApiError::missing(&format!("{at}.Id")))?;
            if string(query, "Expression")?.is_some() {
                return Err(ApiError::invalid(format!(
                    "{at}.Expression: metric math is not emulated by streamlab; query each metric with MetricStat and combine the values in your code"
                )));
            }
            let stat = query
                .get("MetricStat")
                .filter(|v| v.is_object())
                .ok_or_else(|| ApiError::missing(&format!("{at}.MetricStat")))?;
            let metric = stat
                .get("Metric")
                .filter(|v| v.is_object())
                .ok_or_else(|| ApiError::missing(&format!("{at}.MetricStat.Metric")))?;
            let namespace = string(metric, "Namespace")?.unwrap_or_default();
            let name = string(metric, "MetricName")?
                .ok_or_else(|| ApiError::missing(&format!("{at}.MetricStat.Metric.MetricName")))?;
            let key =
                MetricKey::new(&namespace, &name, dimensions(metric, &format!("{at}.MetricStat.Metric.Dimensions"))?);
            let period = period(stat, "Period")?;
            let statistic = string(stat, "Stat")?.ok_or_else(|| ApiError::missing(&format!("{at}.MetricStat.Stat")))?;
            if !alarms::valid_statistic(&statistic) {
                return Err(ApiError::invalid(format!("{at}.MetricStat.Stat {statistic:?} is not a statistic streamlab computes (SampleCount, Average, Sum, Minimum, Maximum, pNN)")));
            }
            if query.get("ReturnData").and_then(as_bool) == Some(false) {
                continue;
            }
            let mut points: Vec<(i64, f64)> = self
                .monitor
                .with_store(|s| s.aggregate(&key, start, end, period))
                .into_iter()
                .filter_map(|(t, a)| a.statistic(&statistic).map(|v| (t, v)))
                .collect();
            if !ascending {
                points.reverse();
            }
            results.push(json!({
                "Id": id,
                "Label": string(query, "Label")?.unwrap_or(name),
                "Timestamps": points.iter().map(|(t, _)| timestamp(*t)).collect::<Vec<_>>(),
                "Values": points.iter().map(|(_, v)| json!(v)).collect::<Vec<_>>(),
                "StatusCode": "Complete",
            }));
        }
        Ok(json!({ "MetricDataResults": results, "Messages": [] }))
    }

    fn list_metrics(&self, body: &Value) -> Result<Value, ApiError> {
        let namespace = string(body, "Namespace")?;
        let name = string(body, "MetricName")?;
        let mut filters = Vec::new();
        for (i, d) in list(body, "Dimensions")?.iter().enumerate() {
            let n =
                string(d, "Name")?.ok_or_else(|| ApiError::missing(&format!("Dimensions.member.{}.Name", i + 1)))?;
            filters.push((n, string(d, "Value")?));
        }
        let metrics: Vec<Value> = self.monitor.with_store(|s| {
            s.list(namespace.as_deref(), name.as_deref(), &filters).into_iter().map(metric_json).collect()
        });
        Ok(json!({ "Metrics": metrics }))
    }

    fn put_metric_alarm(&self, body: &Value) -> Result<Value, ApiError> {
        let definition = alarm_definition(body)?;
        self.monitor.put_alarm(definition, self.now());
        Ok(json!({}))
    }

    fn describe_alarms(&self, body: &Value) -> Result<Value, ApiError> {
        let names = strings(body, "AlarmNames")?;
        let prefix = string(body, "AlarmNamePrefix")?;
        let state = match string(body, "StateValue")? {
            Some(s) => Some(AlarmState::parse(&s).ok_or_else(|| {
                ApiError::invalid(format!(
                    "The value {s} for parameter StateValue is not valid: OK, ALARM or INSUFFICIENT_DATA"
                ))
            })?),
            None => None,
        };
        let max = number(body, "MaxRecords")?.unwrap_or(50.0) as usize;
        let alarms: Vec<Value> = self
            .monitor
            .alarms()
            .iter()
            .filter(|a| names.is_empty() || names.contains(&a.definition.name))
            .filter(|a| prefix.as_deref().is_none_or(|p| a.definition.name.starts_with(p)))
            .filter(|a| state.is_none_or(|s| a.state == s))
            .take(max.clamp(1, 100))
            .map(|a| self.alarm_json(a))
            .collect();
        Ok(json!({ "MetricAlarms": alarms, "CompositeAlarms": [] }))
    }

    fn describe_alarms_for_metric(&self, body: &Value) -> Result<Value, ApiError> {
        let namespace = string(body, "Namespace")?.ok_or_else(|| ApiError::missing("Namespace"))?;
        let name = string(body, "MetricName")?.ok_or_else(|| ApiError::missing("MetricName"))?;
        let dims = dimensions(body, "Dimensions")?;
        let alarms: Vec<Value> = self
            .monitor
            .alarms()
            .iter()
            .filter(|a| a.definition.metric.namespace == namespace && a.definition.metric.name == name)
            .filter(|a| dims.is_empty() || a.definition.metric.dimensions == dims)
            .map(|a| self.alarm_json(a))
            .collect();
        Ok(json!({ "MetricAlarms": alarms }))
    }

    fn describe_alarm_history(&self, body: &Value) -> Result<Value, ApiError> {
        let name = string(body, "AlarmName")?;
        let kind = string(body, "HistoryItemType")?;
        let start = time(body, "StartDate")?.unwrap_or(i64::MIN);
        let end = time(body, "EndDate")?.unwrap_or(i64::MAX);
        let max = number(body, "MaxRecords")?.unwrap_or(100.0) as usize;
        let ascending = string(body, "ScanBy")?.as_deref() == Some("TimestampAscending");
        let mut items: Vec<(i64, Value)> = self
            .monitor
            .alarms()
            .iter()
            .filter(|a| name.as_deref().is_none_or(|n| a.definition.name == n))
            .flat_map(|a| {
                a.history.iter().map(|h| {
                    (
                        h.timestamp_ms,
                        json!({
                            "AlarmName": a.definition.name,
                            "AlarmType": "MetricAlarm",
                            "Timestamp": timestamp(h.timestamp_ms),
                            "HistoryItemType": h.kind,
                            "HistorySummary": h.summary,
                            "HistoryData": h.data.to_string(),
                        }),
                    )
                })
            })
            .filter(|(t, v)| *t >= start && *t < end && kind.as_deref().is_none_or(|k| v["HistoryItemType"] == k))
            .collect();
        items.sort_by_key(|(t, _)| *t);
        if !ascending {
            items.reverse();
        }
        let items: Vec<Value> = items.into_iter().take(max.clamp(1, 100)).map(|(_, v)| v).collect();
        Ok(json!({ "AlarmHistoryItems": items }))
    }

    fn delete_alarms(&self, body: &Value) -> Result<Value, ApiError> {
        let names = strings(body, "AlarmNames")?;
        if names.is_empty() {
            return Err(ApiError::missing("AlarmNames"));
        }
        let unknown: Vec<String> = names.iter().filter(|n| self.monitor.alarm(n).is_none()).cloned().collect();
        if !unknown.is_empty() {
            return Err(ApiError::new("ResourceNotFound", format!("{} does not exist", unknown.join(", "))));
        }
        self.monitor.delete_alarms(&names);
        Ok(json!({}))
    }

    fn set_alarm_state(&self, body: &Value) -> Result<Value, ApiError> {
        let name = string(body, "AlarmName")?.ok_or_else(|| ApiError::missing("AlarmName"))?;
        let value = string(body, "StateValue")?.ok_or_else(|| ApiError::missing("StateValue"))?;
        let state = AlarmState::parse(&value).ok_or_else(|| {
            ApiError::invalid(format!(
                "The value {value} for parameter StateValue is not valid: OK, ALARM or INSUFFICIENT_DATA"
            ))
        })?;
        let reason = string(body, "StateReason")?.ok_or_else(|| ApiError::missing("StateReason"))?;
        let data = match string(body, "StateReasonData")? {
            Some(text) => Some(
                serde_json::from_str(&text)
                    .map_err(|e| ApiError::invalid(format!("The parameter StateReasonData is not JSON: {e}")))?,
            ),
            None => None,
        };
        if !self.monitor.set_alarm_state(&name, state, reason, data, self.now()) {
            return Err(ApiError::new("ResourceNotFound", format!("Alarm {name} not found")));
        }
        Ok(json!({}))
    }

    fn alarm_json(&self, alarm: &Alarm) -> Value {
        let d = &alarm.definition;
        let request = &d.request;
        let echo = |key: &str, default: Value| request.get(key).filter(|v| !v.is_null()).cloned().unwrap_or(default);
        let mut out = json!({
            "AlarmName": d.name,
            "AlarmArn": format!("arn:aws:cloudwatch:{}:000000000000:alarm:{}", self.region, d.name),
            "AlarmConfigurationUpdatedTimestamp": timestamp(alarm.configuration_updated_ms),
            "ActionsEnabled": echo("ActionsEnabled", json!(true)),
            "OKActions": echo("OKActions", json!([])),
            "AlarmActions": echo("AlarmActions", json!([])),
            "InsufficientDataActions": echo("InsufficientDataActions", json!([])),
            "StateValue": alarm.state.as_str(),
            "StateReason": alarm.reason,
            "StateUpdatedTimestamp": timestamp(alarm.state_updated_ms),
            "StateTransitionedTimestamp": timestamp(alarm.state_updated_ms),
            "MetricName": d.metric.name,
            "Namespace": d.metric.namespace,
            "Dimensions": d.metric.dimensions.iter().map(|(n, v)| json!({"Name": n, "Value": v})).collect::<Vec<_>>(),
            "Period": d.period_s,
            "EvaluationPeriods": d.evaluation_periods,
            "DatapointsToAlarm": d.datapoints_to_alarm,
            "Threshold": d.threshold,
            "ComparisonOperator": echo("ComparisonOperator", Value::Null),
            "TreatMissingData": echo("TreatMissingData", json!("missing")),
        });
        if let Some(description) = request.get("AlarmDescription").filter(|v| !v.is_null()) {
            out["AlarmDescription"] = description.clone();
        }
        if let Some(unit) = request.get("Unit").filter(|v| !v.is_null()) {
            out["Unit"] = unit.clone();
        }
        if let Some(data) = &alarm.reason_data {
            out["StateReasonData"] = json!(data.to_string());
        }
        if percentile_of(&d.statistic).is_some() {
            out["ExtendedStatistic"] = json!(d.statistic);
        } else {
            out["Statistic"] = json!(d.statistic);
        }
        out
    }
}

/// `PutMetricAlarm`'s request (the JSON of `aws cloudwatch put-metric-alarm
/// --cli-input-json`), checked.
pub fn alarm_definition(body: &Value) -> Result<AlarmDefinition, ApiError> {
    let name = string(body, "AlarmName")?.ok_or_else(|| ApiError::missing("AlarmName"))?;
    if name.is_empty() || name.chars().count() > 255 {
        return Err(ApiError::invalid("The parameter AlarmName must be 1-255 characters."));
    }
    if body.get("Metrics").is_some_and(|m| !m.is_null()) {
        return Err(ApiError::invalid(format!(
            "Alarm {name}: alarms on metric math (Metrics) are not emulated by streamlab; alarm on one metric with MetricName, Namespace and Statistic"
        )));
    }
    let namespace = string(body, "Namespace")?.ok_or_else(|| ApiError::missing("Namespace"))?;
    let metric = string(body, "MetricName")?.ok_or_else(|| ApiError::missing("MetricName"))?;
    let statistic = match (string(body, "Statistic")?, string(body, "ExtendedStatistic")?) {
        (Some(s), None) if ["SampleCount", "Average", "Sum", "Minimum", "Maximum"].contains(&s.as_str()) => s,
        (Some(s), None) => {
            return Err(ApiError::invalid(format!(
                "The value {s} for parameter Statistic is not valid: SampleCount, Average, Sum, Minimum or Maximum (percentiles go in ExtendedStatistic)"
            )))
        }
        (None, Some(p)) if percentile_of(&p).is_some() => p,
        (None, Some(p)) => {
            return Err(ApiError::invalid(format!("The value {p} for parameter ExtendedStatistic is not a percentile such as p99")))
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                "InvalidParameterCombination",
                "Exactly one of Statistic and ExtendedStatistic must be specified.",
            ))
        }
        (None, None) => return Err(ApiError::missing("Statistic or ExtendedStatistic")),
    };
    let period_s = period(body, "Period")?;
    let evaluation_periods =
        number(body, "EvaluationPeriods")?.ok_or_else(|| ApiError::missing("EvaluationPeriods"))?;
    if evaluation_periods < 1.0 || evaluation_periods.fract() != 0.0 || evaluation_periods > 100_000.0 {
        return Err(ApiError::invalid("The parameter EvaluationPeriods must be a whole number of at least 1."));
    }
    let evaluation_periods = evaluation_periods as usize;
    let datapoints_to_alarm = number(body, "DatapointsToAlarm")?.map_or(evaluation_periods, |d| d as usize);
    if datapoints_to_alarm < 1 || datapoints_to_alarm > evaluation_periods {
        return Err(ApiError::invalid(format!(
            "DatapointsToAlarm ({datapoints_to_alarm}) must be between 1 and EvaluationPeriods ({evaluation_periods})."
        )));
    }
    // CloudWatch's rule: one day for periods under an hour, else seven.
    let most = if period_s < 3_600 { 86_400 } else { 604_800 };
    if period_s.saturating_mul(evaluation_periods as i64) > most {
        return Err(ApiError::invalid(format!(
            "The evaluation period (Period x EvaluationPeriods) must not be more than {most} seconds ({} for a Period of {period_s} s).",
            if most == 86_400 { "one day" } else { "seven days" }
        )));
    }
    let threshold = number(body, "Threshold")?.ok_or_else(|| ApiError::missing("Threshold"))?;
    let comparison_name = string(body, "ComparisonOperator")?.ok_or_else(|| ApiError::missing("ComparisonOperator"))?;
    let comparison = Comparison::parse(&comparison_name).ok_or_else(|| {
        ApiError::invalid(format!(
            "The value {comparison_name} for parameter ComparisonOperator is not valid: {} (anomaly-detection bands are not emulated)",
            Comparison::NAMES.join(", ")
        ))
    })?;
    let treat_missing = match string(body, "TreatMissingData")? {
        Some(t) => TreatMissing::parse(&t).ok_or_else(|| {
            ApiError::invalid(format!(
                "The value {t} for parameter TreatMissingData is not valid: {}",
                TreatMissing::NAMES.join(", ")
            ))
        })?,
        None => TreatMissing::Missing,
    };
    Ok(AlarmDefinition {
        metric: MetricKey::new(&namespace, &metric, dimensions(body, "Dimensions")?),
        name,
        statistic,
        period_s,
        evaluation_periods,
        datapoints_to_alarm,
        threshold,
        comparison,
        treat_missing,
        request: body.clone(),
    })
}

fn metric_json(key: &MetricKey) -> Value {
    json!({
        "Namespace": key.namespace,
        "MetricName": key.name,
        "Dimensions": key.dimensions.iter().map(|(n, v)| json!({"Name": n, "Value": v})).collect::<Vec<_>>(),
    })
}

fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn as_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn string(body: &Value, field: &str) -> Result<Option<String>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ApiError::invalid(format!("The parameter {field} must be a string; got {other}"))),
    }
}

fn number(body: &Value, field: &str) -> Result<Option<f64>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => as_number(v)
            .filter(|n| n.is_finite())
            .map(Some)
            .ok_or_else(|| ApiError::invalid(format!("The parameter {field} must be a number; got {v}"))),
    }
}

fn list<'a>(body: &'a Value, field: &str) -> Result<&'a [Value], ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(ApiError::invalid(format!("The parameter {field} must be a list; got {other}"))),
    }
}

fn strings(body: &Value, field: &str) -> Result<Vec<String>, ApiError> {
    list(body, field)?
        .iter()
        .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| ApiError::invalid(format!("{field} must list strings"))))
        .collect()
}

/// Timestamps past this (year 9999) are refused: no arithmetic on them
/// can overflow.
const MAX_TIME_MS: i64 = 253_402_300_799_000;

/// A timestamp: epoch seconds (JSON 1.0, CBOR) or ISO 8601 (query),
/// between 1970 and 9999.
fn time(body: &Value, field: &str) -> Result<Option<i64>, ApiError> {
    let ms = raw_time(body, field)?;
    match ms {
        Some(ms) if !(0..=MAX_TIME_MS).contains(&ms) => {
            Err(ApiError::invalid(format!("The parameter {field} must be a time between 1970-01-01 and 9999-12-31")))
        }
        other => Ok(other),
    }
}

fn raw_time(body: &Value, field: &str) -> Result<Option<i64>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64().map(|s| (s * 1000.0).round() as i64)),
        Some(Value::String(s)) => match s.parse::<f64>() {
            Ok(secs) => Ok(Some((secs * 1000.0).round() as i64)),
            Err(_) => DateTime::parse_from_rfc3339(s)
                .map(|t| Some(t.timestamp_millis()))
                .map_err(|e| ApiError::invalid(format!("The parameter {field} is not a timestamp ({s:?}: {e})"))),
        },
        Some(other) => Err(ApiError::invalid(format!("The parameter {field} is not a timestamp; got {other}"))),
    }
}

/// `Period`: 60 or a multiple of 60 seconds (streamlab keeps no
/// high-resolution data).
fn period(body: &Value, field: &str) -> Result<i64, ApiError> {
    let period = number(body, field)?.ok_or_else(|| ApiError::missing(field))?;
    if period > 31_536_000.0 {
        return Err(ApiError::invalid(format!("The parameter {field} must be at most 31536000 (a year of seconds)")));
    }
    if period < 60.0 || period % 60.0 != 0.0 {
        return Err(ApiError::invalid(format!(
            "The parameter {field} must be a multiple of 60 (seconds); got {period} (high-resolution periods of 1-30 s are not emulated)"
        )));
    }
    Ok(period as i64)
}

fn dimensions(body: &Value, at: &str) -> Result<Vec<(String, String)>, ApiError> {
    let field = at.rsplit('.').next().filter(|f| *f == "Dimensions").unwrap_or("Dimensions");
    let items = list(body, field)?;
    if items.len() > MAX_DIMENSIONS {
        return Err(ApiError::invalid(format!("The collection {at} must have at most {MAX_DIMENSIONS} items")));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let name = string(d, "Name")?.ok_or_else(|| ApiError::missing(&format!("{at}.member.{}.Name", i + 1)))?;
            let value =
                string(d, "Value")?.ok_or_else(|| ApiError::missing(&format!("{at}.member.{}.Value", i + 1)))?;
            Ok((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn api() -> CloudWatch {
        let start = chrono::TimeZone::timestamp_millis_opt(&chrono::Utc, 1_800_000_000_000).unwrap();
        let clock: SharedClock = Arc::new(ManualClock::new(start));
        CloudWatch::new(Arc::default(), clock, "us-east-1")
    }

    #[test]
    fn put_then_get_statistics() {
        let cw = api();
        let datum = json!({"Namespace": "Shop", "MetricData": [
            {"MetricName": "Orders", "Dimensions": [{"Name": "Service", "Value": "cart"}], "Value": 3, "Unit": "Count", "Timestamp": 1_800_000_000},
            {"MetricName": "Orders", "Dimensions": [{"Name": "Service", "Value": "cart"}], "Values": [1, 2], "Counts": [1, 2], "Timestamp": 1_800_000_010}
        ]});
        cw.call("PutMetricData", &datum).unwrap();
        let answer = cw
            .call(
                "GetMetricStatistics",
                &json!({"Namespace": "Shop", "MetricName": "Orders", "Dimensions": [{"Name": "Service", "Value": "cart"}],
                        "StartTime": 1_799_999_940, "EndTime": 1_800_000_060, "Period": 60, "Statistics": ["Sum", "SampleCount"]}),
            )
            .unwrap();
        assert_eq!(answer["Datapoints"][0]["Sum"], json!(8.0));
        assert_eq!(answer["Datapoints"][0]["SampleCount"], json!(4.0));
        assert_eq!(answer["Datapoints"][0]["Unit"], "Count");
        let reserved = cw.call(
            "PutMetricData",
            &json!({"Namespace": "AWS/Firehose", "MetricData": [{"MetricName": "x", "Value": 1}]}),
        );
        assert_eq!(reserved.unwrap_err().code, "InvalidParameterValue");
    }

    #[test]
    fn alarm_requests_are_checked() {
        let base = json!({"AlarmName": "a", "Namespace": "AWS/Firehose", "MetricName": "DeliveryToS3.DataFreshness",
                          "Statistic": "Maximum", "Period": 60, "EvaluationPeriods": 1, "Threshold": 600,
                          "ComparisonOperator": "GreaterThanThreshold"});
        assert!(alarm_definition(&base).is_ok());
        let mut bad = base.clone();
        bad["DatapointsToAlarm"] = json!(2);
        assert!(alarm_definition(&bad).unwrap_err().message.contains("between 1 and EvaluationPeriods (1)"));
        let mut bad = base.clone();
        bad["ExtendedStatistic"] = json!("p99");
        assert_eq!(alarm_definition(&bad).unwrap_err().code, "InvalidParameterCombination");
        let mut bad = base.clone();
        bad["Period"] = json!(45);
        assert!(alarm_definition(&bad).unwrap_err().message.contains("multiple of 60"));
        bad["Period"] = json!(1e300);
        bad["EvaluationPeriods"] = json!(1e300);
        assert_eq!(alarm_definition(&bad).unwrap_err().code, "InvalidParameterValue", "absurd numbers are refused");
        bad["Period"] = json!(3_600);
        bad["EvaluationPeriods"] = json!(200);
        assert!(alarm_definition(&bad).unwrap_err().message.contains("seven days"));
        let mut bad = base;
        bad["ComparisonOperator"] = json!("Bigger");
        assert!(alarm_definition(&bad).unwrap_err().message.contains("GreaterThanThreshold"));
    }

    #[test]
    fn a_new_alarm_is_insufficient_data_and_set_state_is_recorded() {
        let cw = api();
        cw.call(
            "PutMetricAlarm",
            &json!({"AlarmName": "fresh", "Namespace": "AWS/Firehose", "MetricName": "DeliveryToS3.DataFreshness",
                    "Statistic": "Maximum", "Period": 60, "EvaluationPeriods": 1, "Threshold": 600,
                    "ComparisonOperator": "GreaterThanThreshold"}),
        )
        .unwrap();
        let described = cw.call("DescribeAlarms", &json!({"AlarmNames": ["fresh"]})).unwrap();
        assert_eq!(described["MetricAlarms"][0]["StateValue"], "INSUFFICIENT_DATA");
        cw.call("SetAlarmState", &json!({"AlarmName": "fresh", "StateValue": "ALARM", "StateReason": "testing"}))
            .unwrap();
        let history =
            cw.call("DescribeAlarmHistory", &json!({"AlarmName": "fresh", "HistoryItemType": "StateUpdate"})).unwrap();
        assert_eq!(history["AlarmHistoryItems"][0]["HistorySummary"], "Alarm updated from INSUFFICIENT_DATA to ALARM");
        let gone = cw.call("DeleteAlarms", &json!({"AlarmNames": ["nope"]}));
        assert_eq!(gone.unwrap_err().code, "ResourceNotFound");
    }
}
