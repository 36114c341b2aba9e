//! Where datapoints live: one series per metric (namespace, name and
//! dimensions), one bucket per minute of the stack's clock, each bucket
//! the values put in that minute (for percentiles) and their statistic set.
//! Periods of a query are whole minutes aggregated, aligned to the epoch as
//! CloudWatch aligns them.

use std::collections::BTreeMap;

use serde::Serialize;

/// Minutes kept per series: two weeks (CloudWatch keeps 1-minute data for
/// 15 days); older buckets are dropped, so a stack running for months on a
/// fast clock stays bounded.
pub const RETENTION_MINUTES: usize = 14 * 24 * 60;

/// Values kept per bucket for percentiles; past this the statistic set
/// still counts every value.
const MAX_VALUES: usize = 10_000;

const MINUTE_MS: i64 = 60_000;

/// A metric: namespace, name and its dimensions (sorted by name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct MetricKey {
    pub namespace: String,
    pub name: String,
    pub dimensions: Vec<(String, String)>,
}

impl MetricKey {
    pub fn new(namespace: &str, name: &str, mut dimensions: Vec<(String, String)>) -> Self {
        dimensions.sort();
        MetricKey { namespace: namespace.to_owned(), name: name.to_owned(), dimensions }
    }
}

/// The statistics of the values in one period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Aggregate {
    pub sample_count: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// The values themselves (for percentiles), when they were put one by
    /// one.
    pub values: Vec<f64>,
}

impl Aggregate {
    fn add_value(&mut self, value: f64) {
        self.add_set(1.0, value, value, value);
        if self.values.len() < MAX_VALUES {
            self.values.push(value);
        }
    }

    fn add_set(&mut self, count: f64, sum: f64, min: f64, max: f64) {
        if self.sample_count == 0.0 {
            (self.min, self.max) = (min, max);
        } else {
            self.min = self.min.min(min);
            self.max = self.max.max(max);
        }
        self.sample_count += count;
        self.sum += sum;
    }

    fn merge(&mut self, other: &Aggregate) {
        if other.sample_count == 0.0 {
            return;
        }
        self.add_set(other.sample_count, other.sum, other.min, other.max);
        self.values.extend(other.values.iter().take(MAX_VALUES.saturating_sub(self.values.len())));
    }

    /// `SampleCount`, `Sum`, `Minimum`, `Maximum`, `Average` or a percentile
    /// such as `p99` / `p99.9`; `None` for an unknown statistic or a
    /// percentile of statistic sets.
    pub fn statistic(&self, statistic: &str) -> Option<f64> {
        match statistic {
            "SampleCount" => Some(self.sample_count),
            "Sum" => Some(self.sum),
            "Minimum" => Some(self.min),
            "Maximum" => Some(self.max),
            "Average" => Some(if self.sample_count == 0.0 { 0.0 } else { self.sum / self.sample_count }),
            other => {
                let p = percentile_of(other)?;
                if self.values.is_empty() {
                    return None;
                }
                let mut sorted = self.values.clone();
                sorted.sort_by(f64::total_cmp);
                // Nearest rank, as CloudWatch documents percentiles.
                let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
                Some(sorted[rank.min(sorted.len()) - 1])
            }
        }
    }
}

/// The percentile of `p99`, `p99.9`, `p50`: 0 < p <= 100.
pub fn percentile_of(statistic: &str) -> Option<f64> {
    let p: f64 = statistic.strip_prefix('p')?.parse().ok()?;
    (p > 0.0 && p <= 100.0).then_some(p)
}

#[derive(Debug, Default)]
struct Series {
    unit: Option<String>,
    minutes: BTreeMap<i64, Aggregate>,
}

/// Every series of a stack.
#[derive(Debug, Default)]
pub struct MetricStore {
    series: BTreeMap<MetricKey, Series>,
}

/// The minute a timestamp falls in.
pub fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

impl MetricStore {
    /// Adds one value at `timestamp_ms`.
    pub fn put_value(&mut self, key: MetricKey, unit: Option<&str>, timestamp_ms: i64, value: f64) {
        self.bucket(key, unit, timestamp_ms).add_value(value);
    }

    /// Adds a statistic set (`PutMetricData`'s `StatisticValues`).
    pub fn put_set(&mut self, key: MetricKey, unit: Option<&str>, timestamp_ms: i64, set: [f64; 4]) {
        let [count, sum, min, max] = set;
        self.bucket(key, unit, timestamp_ms).add_set(count, sum, min, max);
    }

    fn bucket(&mut self, key: MetricKey, unit: Option<&str>, timestamp_ms: i64) -> &mut Aggregate {
        let series = self.series.entry(key).or_default();
        if let Some(unit) = unit {
            series.unit = Some(unit.to_owned());
        }
        if series.minutes.len() >= RETENTION_MINUTES {
            series.minutes.pop_first();
        }
        series.minutes.entry(minute_of(timestamp_ms)).or_default()
    }

    /// The metrics there are, optionally only those of `namespace` and
    /// `name` whose dimensions include every `(name, value)` given (a value
    /// of `None` matches any).
    pub fn list(
        &self,
        namespace: Option<&str>,
        name: Option<&str>,
        dimensions: &[(String, Option<String>)],
    ) -> Vec<&MetricKey> {
        self.series
            .keys()
            .filter(|k| namespace.is_none_or(|n| k.namespace == n) && name.is_none_or(|n| k.name == n))
            .filter(|k| {
                dimensions
                    .iter()
                    .all(|(dn, dv)| k.dimensions.iter().any(|(kn, kv)| kn == dn && dv.as_ref().is_none_or(|v| v == kv)))
            })
            .collect()
    }

    /// The unit the series was put with.
    pub fn unit(&self, key: &MetricKey) -> Option<&str> {
        self.series.get(key).and_then(|s| s.unit.as_deref())
    }

    /// One aggregate per period of `period_s` (aligned to the epoch) that
    /// has data in `[start_ms, end_ms)`, oldest first, keyed by the period's
    /// start.
    pub fn aggregate(&self, key: &MetricKey, start_ms: i64, end_ms: i64, period_s: i64) -> Vec<(i64, Aggregate)> {
        let Some(series) = self.series.get(key) else { return Vec::new() };
        let period_ms = period_s.max(60) * 1000;
        let mut out: BTreeMap<i64, Aggregate> = BTreeMap::new();
        for (minute, bucket) in series.minutes.range(minute_of(start_ms)..end_ms.max(minute_of(start_ms))) {
            if bucket.sample_count == 0.0 {
                continue;
            }
            let period = minute.div_euclid(period_ms) * period_ms;
            out.entry(period).or_default().merge(bucket);
        }
        out.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MetricKey {
        MetricKey::new("AWS/Firehose", "DeliveryToS3.Records", vec![("DeliveryStreamName".into(), "s".into())])
    }

    #[test]
    fn periods_aggregate_whole_minutes() {
        let mut store = MetricStore::default();
        for minute in 0..10 {
            store.put_value(key(), Some("Count"), minute * 60_000 + 5_000, minute as f64);
        }
        let fives = store.aggregate(&key(), 0, 600_000, 300);
        assert_eq!(fives.len(), 2);
        assert_eq!(fives[0].0, 0);
        assert_eq!(fives[0].1.statistic("Sum"), Some(10.0));
        assert_eq!(fives[1].1.statistic("Maximum"), Some(9.0));
        assert_eq!(fives[1].1.statistic("SampleCount"), Some(5.0));
        assert_eq!(fives[1].1.statistic("Average"), Some(7.0));
        assert_eq!(store.aggregate(&key(), 120_000, 180_000, 60).len(), 1, "only the minutes asked for");
    }

    #[test]
    fn percentiles_are_nearest_rank_and_need_values() {
        let mut store = MetricStore::default();
        for v in 1..=100 {
            store.put_value(key(), None, 0, f64::from(v));
        }
        let period = &store.aggregate(&key(), 0, 60_000, 60)[0].1;
        assert_eq!(period.statistic("p99"), Some(99.0));
        assert_eq!(period.statistic("p50"), Some(50.0));
        assert_eq!(period.statistic("p100"), Some(100.0));
        assert_eq!(period.statistic("p0"), None);
        let mut sets = MetricStore::default();
        sets.put_set(key(), None, 0, [3.0, 6.0, 1.0, 3.0]);
        let period = &sets.aggregate(&key(), 0, 60_000, 60)[0].1;
        assert_eq!((period.statistic("Average"), period.statistic("p99")), (Some(2.0), None));
    }

    #[test]
    fn listing_matches_dimension_subsets() {
        let mut store = MetricStore::default();
        store.put_value(key(), None, 0, 1.0);
        let other = MetricKey::new("App", "Orders", vec![("Service".into(), "shop".into())]);
        store.put_value(other, None, 0, 1.0);
        assert_eq!(store.list(Some("AWS/Firehose"), None, &[]).len(), 1);
        assert_eq!(store.list(None, None, &[("DeliveryStreamName".into(), None)]).len(), 1);
        assert_eq!(store.list(None, None, &[("Service".into(), Some("other".into()))]).len(), 0);
        assert_eq!(store.list(None, None, &[]).len(), 2);
    }

    #[test]
    fn retention_is_bounded() {
        let mut store = MetricStore::default();
        for minute in 0..(RETENTION_MINUTES as i64 + 10) {
            store.put_value(key(), None, minute * 60_000, 1.0);
        }
        let all = store.aggregate(&key(), 0, i64::MAX, 60);
        assert_eq!(all.len(), RETENTION_MINUTES);
        assert_eq!(all[0].0, 10 * 60_000, "the oldest minutes went first");
    }
}
