//! CloudWatch for the emulated streams: Firehose's metrics on the stack's
//! clock, the team's own metrics (`PutMetricData`), and alarms evaluated
//! with CloudWatch's rules, served in every protocol CloudWatch's model
//! lists so the AWS CLI, boto3 and every SDK read them unchanged.
//!
//! - [`store`]: datapoints per metric per minute, statistics and percentiles;
//! - [`firehose`]: the table of Firehose metrics and the sampler that makes
//!   one datapoint per metric per minute boundary crossed;
//! - [`alarms`]: definitions and the evaluator (a pure function);
//! - [`api`]: the operations, on JSON values;
//! - [`protocol`]: `smithy-rpc-v2-cbor`, JSON 1.0 and query, in and out;
//! - [`logs`]: CloudWatch Logs, and Firehose's delivery-error events;
//! - [`delivery_errors`]: Firehose's error-log events from a delivery's failures;
//! - [`prometheus`]: the same metrics as a Prometheus page;
//! - [`publish`]: the same metrics and error events sent to CloudWatch (`deliver --cloudwatch`);
//! - this module: [`Monitor`], the state one stack shares.

pub mod alarms;
pub mod api;
pub mod delivery_errors;
pub mod error;
pub mod firehose;
pub mod logs;
pub mod prometheus;
pub mod protocol;
pub mod publish;
pub mod store;

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{TimeZone, Utc};
use serde_json::{json, Value};

use alarms::{AlarmDefinition, AlarmState};
use firehose::{Sampler, StreamFigures};
use store::MetricStore;

/// The environment variables SDKs and the AWS CLI read the endpoints from.
pub const ENDPOINT_ENV: &str = "AWS_ENDPOINT_URL_CLOUDWATCH";

/// State history items kept per alarm (CloudWatch keeps 30 days).
const HISTORY: usize = 1_000;

/// `2026-07-13T14:16:00.000Z`.
pub fn iso8601(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// The time format of CloudWatch's state reasons: `13/07/26 14:16:00`.
fn reason_time(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms).single().map_or_else(|| ms.to_string(), |t| t.format("%d/%m/%y %H:%M:%S").to_string())
}

/// One entry of an alarm's history.
#[derive(Debug, Clone)]
pub struct HistoryItem {
    pub timestamp_ms: i64,
    /// `StateUpdate` or `ConfigurationUpdate`.
    pub kind: &'static str,
    pub summary: String,
    pub data: Value,
}

/// An alarm with its state.
#[derive(Debug, Clone)]
pub struct Alarm {
    pub definition: AlarmDefinition,
    pub state: AlarmState,
    pub reason: String,
    pub reason_data: Option<Value>,
    pub state_updated_ms: i64,
    pub configuration_updated_ms: i64,
    pub history: Vec<HistoryItem>,
}

impl Alarm {
    fn set_state(&mut self, state: AlarmState, reason: String, data: Option<Value>, now_ms: i64) {
        let old = self.state;
        self.state = state;
        self.reason = reason.clone();
        self.reason_data = data;
        self.state_updated_ms = now_ms;
        let item = HistoryItem {
            timestamp_ms: now_ms,
            kind: "StateUpdate",
            summary: format!("Alarm updated from {} to {}", old.as_str(), state.as_str()),
            data: json!({
                "version": "1.0",
                "oldState": { "stateValue": old.as_str() },
                "newState": { "stateValue": state.as_str(), "stateReason": reason },
            }),
        };
        self.push_history(item);
    }

    fn push_history(&mut self, item: HistoryItem) {
        if self.history.len() >= HISTORY {
            self.history.remove(0);
        }
        self.history.push(item);
    }
}

#[derive(Debug, Default)]
struct State {
    store: MetricStore,
    sampler: Sampler,
    alarms: BTreeMap<String, Alarm>,
}

/// The CloudWatch of one stack: its metrics and alarms.
#[derive(Debug, Default)]
pub struct Monitor {
    state: Mutex<State>,
}

impl Monitor {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("monitor lock")
    }

    /// A sample of the streams' figures at clock time `now_ms`: closes every
    /// minute crossed since the last one and evaluates the alarms whose
    /// periods end at those boundaries.
    pub fn sample(&self, now_ms: i64, figures: Vec<StreamFigures>) {
        let mut state = self.lock();
        let State { store, sampler, alarms } = &mut *state;
        for boundary in sampler.sample(now_ms, figures, store) {
            for alarm in alarms.values_mut() {
                let period_ms = alarm.definition.period_s * 1000;
                if boundary % period_ms != 0 {
                    continue;
                }
                let periods = alarms::periods(&alarm.definition, store, boundary);
                let outcome = alarms::evaluate(&alarm.definition, &periods, alarm.state);
                if outcome.state != alarm.state {
                    alarm.set_state(outcome.state, outcome.reason, Some(outcome.data), boundary);
                }
            }
        }
    }

    /// Runs `f` on the metric store.
    pub fn with_store<T>(&self, f: impl FnOnce(&mut MetricStore) -> T) -> T {
        f(&mut self.lock().store)
    }

    /// Creates or replaces an alarm (`PutMetricAlarm`): a new one starts
    /// INSUFFICIENT_DATA; a replaced one keeps its state and history.
    pub fn put_alarm(&self, definition: AlarmDefinition, now_ms: i64) {
        let mut state = self.lock();
        let name = definition.name.clone();
        let item = |summary: String| HistoryItem {
            timestamp_ms: now_ms,
            kind: "ConfigurationUpdate",
            summary,
            data: json!({ "version": "1.0", "type": "Update", "updatedAlarm": definition.request.clone() }),
        };
        match state.alarms.get_mut(&name) {
            Some(alarm) => {
                let entry = item(format!("Alarm \"{name}\" updated"));
                alarm.definition = definition;
                alarm.configuration_updated_ms = now_ms;
                alarm.push_history(entry);
            }
            None => {
                let entry = item(format!("Alarm \"{name}\" created"));
                let alarm = Alarm {
                    definition,
                    state: AlarmState::InsufficientData,
                    reason: "Unchecked: Initial alarm creation".into(),
                    reason_data: None,
                    state_updated_ms: now_ms,
                    configuration_updated_ms: now_ms,
                    history: vec![entry],
                };
                state.alarms.insert(name, alarm);
            }
        }
    }

    /// The alarms, by name.
    pub fn alarms(&self) -> Vec<Alarm> {
        self.lock().alarms.values().cloned().collect()
    }

    pub fn alarm(&self, name: &str) -> Option<Alarm> {
        self.lock().alarms.get(name).cloned()
    }

    /// `SetAlarmState`: the state until the next evaluation.
    pub fn set_alarm_state(
        &self,
        name: &str,
        state: AlarmState,
        reason: String,
        data: Option<Value>,
        now_ms: i64,
    ) -> bool {
        match self.lock().alarms.get_mut(name) {
            Some(alarm) => {
                alarm.set_state(state, reason, data, now_ms);
                true
            }
            None => false,
        }
    }

    /// Deletes the alarms named; returns the names that were not there.
    pub fn delete_alarms(&self, names: &[String]) -> Vec<String> {
        let mut state = self.lock();
        names.iter().filter(|n| state.alarms.remove(n.as_str()).is_none()).cloned().collect()
    }
}
