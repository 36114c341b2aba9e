//! Firehose's metrics (namespace `AWS/Firehose`, dimension
//! `DeliveryStreamName`) from a stream's live figures: [`METRICS`] is the
//! one table of what is published, with its unit and where it is counted,
//! and the [`Sampler`] turns the figures into one datapoint per metric per
//! minute of the stack's clock, every minute boundary crossed (those inside
//! one `clock advance 20m` included).

use std::collections::BTreeMap;

use super::store::{minute_of, MetricKey, MetricStore};

pub const NAMESPACE: &str = "AWS/Firehose";
pub const DIMENSION: &str = "DeliveryStreamName";

/// Counters of one stream, as its delivery (and intake) count them. They
/// only grow while one delivery runs; a new delivery starts them at zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub records_read: u64,
    pub bytes_read: u64,
    pub records_delivered: u64,
    pub bytes_delivered: u64,
    pub objects: u64,
    pub put_successes: u64,
    pub put_failures: u64,
    pub incoming_records: u64,
    pub incoming_bytes: u64,
    pub incoming_put_requests: u64,
    pub lambda_invocations: u64,
    pub lambda_successes: u64,
    pub lambda_ok_records: u64,
    pub lambda_ok_bytes: u64,
    pub converted_records: u64,
    pub converted_bytes: u64,
    pub conversion_failed_records: u64,
    pub conversion_failed_bytes: u64,
    pub partition_limit_errors: u64,
}

impl Counters {
    /// What was counted since `before` (a counter that went down was
    /// restarted by a new delivery: all of it is new).
    fn since(&self, before: &Counters) -> Counters {
        let d = |now: u64, then: u64| if now >= then { now - then } else { now };
        Counters {
            records_read: d(self.records_read, before.records_read),
            bytes_read: d(self.bytes_read, before.bytes_read),
            records_delivered: d(self.records_delivered, before.records_delivered),
            bytes_delivered: d(self.bytes_delivered, before.bytes_delivered),
            objects: d(self.objects, before.objects),
            put_successes: d(self.put_successes, before.put_successes),
            put_failures: d(self.put_failures, before.put_failures),
            incoming_records: d(self.incoming_records, before.incoming_records),
            incoming_bytes: d(self.incoming_bytes, before.incoming_bytes),
            incoming_put_requests: d(self.incoming_put_requests, before.incoming_put_requests),
            lambda_invocations: d(self.lambda_invocations, before.lambda_invocations),
            lambda_successes: d(self.lambda_successes, before.lambda_successes),
            lambda_ok_records: d(self.lambda_ok_records, before.lambda_ok_records),
            lambda_ok_bytes: d(self.lambda_ok_bytes, before.lambda_ok_bytes),
            converted_records: d(self.converted_records, before.converted_records),
            converted_bytes: d(self.converted_bytes, before.converted_bytes),
            conversion_failed_records: d(self.conversion_failed_records, before.conversion_failed_records),
            conversion_failed_bytes: d(self.conversion_failed_bytes, before.conversion_failed_bytes),
            partition_limit_errors: d(self.partition_limit_errors, before.partition_limit_errors),
        }
    }

    fn add(&mut self, other: &Counters) {
        let fields: [(&mut u64, u64); 19] = [
            (&mut self.records_read, other.records_read),
            (&mut self.bytes_read, other.bytes_read),
            (&mut self.records_delivered, other.records_delivered),
            (&mut self.bytes_delivered, other.bytes_delivered),
            (&mut self.objects, other.objects),
            (&mut self.put_successes, other.put_successes),
            (&mut self.put_failures, other.put_failures),
            (&mut self.incoming_records, other.incoming_records),
            (&mut self.incoming_bytes, other.incoming_bytes),
            (&mut self.incoming_put_requests, other.incoming_put_requests),
            (&mut self.lambda_invocations, other.lambda_invocations),
            (&mut self.lambda_successes, other.lambda_successes),
            (&mut self.lambda_ok_records, other.lambda_ok_records),
            (&mut self.lambda_ok_bytes, other.lambda_ok_bytes),
            (&mut self.converted_records, other.converted_records),
            (&mut self.converted_bytes, other.converted_bytes),
            (&mut self.conversion_failed_records, other.conversion_failed_records),
            (&mut self.conversion_failed_bytes, other.conversion_failed_bytes),
            (&mut self.partition_limit_errors, other.partition_limit_errors),
        ];
        for (field, value) in fields {
            *field += value;
        }
    }
}

/// One stream's figures at a moment, as the stack reads them.
#[derive(Debug, Clone, Default)]
pub struct StreamFigures {
    pub stream: String,
    pub direct_put: bool,
    pub dynamic_partitioning: bool,
    pub lambda: bool,
    pub conversion: bool,
    pub counters: Counters,
    /// Clock time of the oldest record read and not yet landed.
    pub oldest_unlanded_ms: Option<i64>,
    pub backpressured: bool,
    /// Records in the topic not yet read (MSK).
    pub offset_lag: Option<u64>,
    /// Dynamic partitions open now, and the limit.
    pub active_partitions: u64,
    pub active_partition_limit: u64,
    /// `ExecuteProcessing.Duration` of the last invocation.
    pub lambda_duration_ms: Option<u64>,
}

impl StreamFigures {
    /// A stream's figures from its delivery's statistics (the intake
    /// counters and the offset lag are the caller's: a stack has them).
    pub fn of(
        spec: &crate::spec::StreamSpec,
        stats: &crate::delivery::DeliveryStats,
        active_partition_limit: usize,
    ) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let counters = Counters {
            records_read: stats.records_read.load(Relaxed),
            bytes_read: stats.bytes_read.load(Relaxed),
            records_delivered: stats.records_delivered.load(Relaxed),
            bytes_delivered: stats.bytes_delivered.load(Relaxed),
            objects: stats.objects.load(Relaxed),
            put_successes: stats.put_successes.load(Relaxed),
            put_failures: stats.put_failures.load(Relaxed),
            lambda_invocations: stats.lambda.invocations.load(Relaxed),
            lambda_successes: stats.lambda.successful_invocations.load(Relaxed),
            lambda_ok_records: stats.lambda.ok.load(Relaxed),
            lambda_ok_bytes: stats.lambda.ok_bytes.load(Relaxed),
            converted_records: stats.converted_records.load(Relaxed),
            converted_bytes: stats.converted_bytes.load(Relaxed),
            conversion_failed_records: stats.conversion_failed_records.load(Relaxed),
            conversion_failed_bytes: stats.conversion_failed_bytes.load(Relaxed),
            partition_limit_errors: stats.partition_limit_errors.load(Relaxed),
            ..Counters::default()
        };
        StreamFigures {
            stream: spec.name().to_owned(),
            direct_put: spec.is_direct_put(),
            dynamic_partitioning: spec.dynamic_partitioning(),
            lambda: spec.lambda().is_some(),
            conversion: spec.conversion().is_some(),
            lambda_duration_ms: (counters.lambda_invocations > 0).then(|| stats.lambda.last_duration_ms.load(Relaxed)),
            counters,
            oldest_unlanded_ms: stats.oldest_unlanded(),
            backpressured: stats.backpressured.load(Relaxed),
            offset_lag: None,
            active_partitions: stats.buffered_bytes().len() as u64,
            active_partition_limit: active_partition_limit as u64,
        }
    }
}

/// Which streams a metric is published for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    Every,
    Msk,
    DirectPut,
    DynamicPartitioning,
    Lambda,
    Conversion,
}

impl Applies {
    /// Whether the metric is published for the stream `f` describes.
    pub fn to(self, f: &StreamFigures) -> bool {
        match self {
            Applies::Every => true,
            Applies::Msk => !f.direct_put,
            Applies::DirectPut => f.direct_put,
            Applies::DynamicPartitioning => f.dynamic_partitioning,
            Applies::Lambda => f.lambda,
            Applies::Conversion => f.conversion,
        }
    }
}

impl Applies {
    /// How many of [`METRICS`] a delivery of `spec` publishes (what
    /// `deliver --cloudwatch` pays for as custom metrics).
    pub fn spec_metrics(spec: &crate::spec::StreamSpec) -> usize {
        METRICS
            .iter()
            .filter(|m| match m.applies {
                Applies::Every => true,
                Applies::Msk => !spec.is_direct_put(),
                Applies::DirectPut => spec.is_direct_put(),
                Applies::DynamicPartitioning => spec.dynamic_partitioning(),
                Applies::Lambda => spec.lambda().is_some(),
                Applies::Conversion => spec.conversion().is_some(),
            })
            .count()
    }
}

/// How a metric's minute datapoint is made.
#[derive(Debug, Clone, Copy)]
pub enum Value {
    /// The counter's growth over the minute (one value: Sum = the count).
    Counter(fn(&Counters) -> u64),
    /// 1 or 0 per attempt (successes, attempts) over the minute: its
    /// average is the success ratio, its sum the successes.
    PerAttempt(fn(&Counters) -> (u64, u64)),
    /// The state at the minute's end.
    Gauge(fn(&StreamFigures, i64) -> Option<f64>),
}

/// One published metric.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub unit: &'static str,
    pub applies: Applies,
    pub value: Value,
    /// Where streamlab counts it (the README's table says the same).
    pub counted: &'static str,
}

/// Every Firehose metric streamlab publishes.
pub const METRICS: &[Metric] = &[
    Metric {
        name: "DataReadFromSource.Records",
        unit: "Count",
        applies: Applies::Msk,
        value: Value::Counter(|c| c.records_read),
        counted: "records the delivery read from the topic",
    },
    Metric {
        name: "DataReadFromSource.Bytes",
        unit: "Bytes",
        applies: Applies::Msk,
        value: Value::Counter(|c| c.bytes_read),
        counted: "bytes of the record values read",
    },
    Metric {
        name: "KafkaOffsetLag",
        unit: "Count",
        applies: Applies::Msk,
        value: Value::Gauge(|f, _| f.offset_lag.map(|l| l as f64)),
        counted: "end offsets of the topic minus the delivery's positions, summed over partitions",
    },
    Metric {
        name: "DataReadFromSource.Backpressured",
        unit: "Count",
        applies: Applies::Msk,
        value: Value::Gauge(|f, _| Some(if f.backpressured { 1.0 } else { 0.0 })),
        counted: "1 while reading is paused at the memory bound or the write slots are full",
    },
    Metric {
        name: "IncomingRecords",
        unit: "Count",
        applies: Applies::DirectPut,
        value: Value::Counter(|c| c.incoming_records),
        counted: "records PutRecord/PutRecordBatch accepted",
    },
    Metric {
        name: "IncomingBytes",
        unit: "Bytes",
        applies: Applies::DirectPut,
        value: Value::Counter(|c| c.incoming_bytes),
        counted: "data bytes PutRecord/PutRecordBatch accepted",
    },
    Metric {
        name: "IncomingPutRequests",
        unit: "Count",
        applies: Applies::DirectPut,
        value: Value::Counter(|c| c.incoming_put_requests),
        counted: "PutRecord/PutRecordBatch calls that accepted a record",
    },
    Metric {
        name: "DeliveryToS3.Records",
        unit: "Count",
        applies: Applies::Every,
        value: Value::Counter(|c| c.records_delivered),
        counted: "records in objects that landed",
    },
    Metric {
        name: "DeliveryToS3.Bytes",
        unit: "Bytes",
        applies: Applies::Every,
        value: Value::Counter(|c| c.bytes_delivered),
        counted: "bytes of objects that landed, as stored",
    },
    Metric {
        name: "DeliveryToS3.ObjectCount",
        unit: "Count",
        applies: Applies::Every,
        value: Value::Counter(|c| c.objects),
        counted: "objects that landed",
    },
    Metric {
        name: "DeliveryToS3.Success",
        unit: "Count",
        applies: Applies::Every,
        value: Value::PerAttempt(|c| (c.put_successes, c.put_successes + c.put_failures)),
        counted: "1 per PUT attempt that succeeded, 0 per failed one",
    },
    Metric {
        name: "DeliveryToS3.DataFreshness",
        unit: "Seconds",
        applies: Applies::Every,
        value: Value::Gauge(|f, at| Some(f.oldest_unlanded_ms.map_or(0.0, |o| ((at - o).max(0) / 1000) as f64))),
        counted: "age at the minute's end of the oldest record read and not landed (0 when none waits)",
    },
    Metric {
        name: "PartitionCount",
        unit: "Count",
        applies: Applies::DynamicPartitioning,
        value: Value::Gauge(|f, _| Some(f.active_partitions as f64)),
        counted: "dynamic partitions with an open buffer",
    },
    Metric {
        name: "PartitionCountExceeded",
        unit: "Count",
        applies: Applies::DynamicPartitioning,
        value: Value::Counter(|c| u64::from(c.partition_limit_errors > 0)),
        counted: "1 in a minute when records went to the error prefix over the active-partition limit",
    },
    Metric {
        name: "ActivePartitionsLimit",
        unit: "Count",
        applies: Applies::DynamicPartitioning,
        value: Value::Gauge(|f, _| Some(f.active_partition_limit as f64)),
        counted: "the active-partition limit (--active-partition-limit, default 500)",
    },
    Metric {
        name: "ExecuteProcessing.Duration",
        unit: "Milliseconds",
        applies: Applies::Lambda,
        value: Value::Gauge(|f, _| f.lambda_duration_ms.map(|d| d as f64)),
        counted: "the duration of the last invocation",
    },
    Metric {
        name: "ExecuteProcessing.Success",
        unit: "Count",
        applies: Applies::Lambda,
        value: Value::PerAttempt(|c| (c.lambda_successes, c.lambda_invocations)),
        counted: "1 per invocation that returned a response, 0 per failed one",
    },
    Metric {
        name: "SucceedProcessing.Records",
        unit: "Count",
        applies: Applies::Lambda,
        value: Value::Counter(|c| c.lambda_ok_records),
        counted: "records the function returned Ok",
    },
    Metric {
        name: "SucceedProcessing.Bytes",
        unit: "Bytes",
        applies: Applies::Lambda,
        value: Value::Counter(|c| c.lambda_ok_bytes),
        counted: "bytes the function returned for Ok records",
    },
    Metric {
        name: "SucceedConversion.Records",
        unit: "Count",
        applies: Applies::Conversion,
        value: Value::Counter(|c| c.converted_records),
        counted: "records written as Parquet rows",
    },
    Metric {
        name: "SucceedConversion.Bytes",
        unit: "Bytes",
        applies: Applies::Conversion,
        value: Value::Counter(|c| c.converted_bytes),
        counted: "bytes of the records converted",
    },
    Metric {
        name: "FailedConversion.Records",
        unit: "Count",
        applies: Applies::Conversion,
        value: Value::Counter(|c| c.conversion_failed_records),
        counted: "records that went to format-conversion-failed",
    },
    Metric {
        name: "FailedConversion.Bytes",
        unit: "Bytes",
        applies: Applies::Conversion,
        value: Value::Counter(|c| c.conversion_failed_bytes),
        counted: "bytes of the records that failed conversion",
    },
];

/// Firehose metrics AWS publishes that streamlab does not, and why.
pub const NOT_EMULATED: &[(&str, &str)] = &[
    ("SourceThrottled.Delay, BytesPerSecondLimit", "the stack's broker has no per-partition read quota"),
    (
        "FailedValidation.Records / .Bytes",
        "MSK records are not validated beyond their size, which the error prefix counts",
    ),
    ("JQProcessing.Duration, PerPartitionThroughput", "not measured per record; the benchmarks measure them"),
    ("ThrottledRecords, ThrottledGetRecords and the Kinesis-source metrics", "Kinesis sources are not emulated"),
];

/// Per stream: the counters at the last sample and what the open minute
/// has gathered.
#[derive(Debug, Default)]
struct Open {
    last: Counters,
    gathered: Counters,
    /// The figures at the last sample (gauges of minutes a clock jump
    /// crosses use them).
    figures: StreamFigures,
}

/// One minute datapoint of one stream's metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub name: &'static str,
    pub unit: &'static str,
    pub stream: String,
    /// The minute's start (epoch milliseconds).
    pub minute_ms: i64,
    pub value: DatumValue,
}

/// A datapoint's value: one value, or a statistic set (`PutMetricData`'s
/// `StatisticValues`, for the 1-or-0-per-attempt metrics).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DatumValue {
    Single(f64),
    Set { count: f64, sum: f64, min: f64, max: f64 },
}

impl Datum {
    /// The series key under `namespace`.
    pub fn key(&self, namespace: &str) -> MetricKey {
        MetricKey::new(namespace, self.name, vec![(DIMENSION.to_owned(), self.stream.clone())])
    }

    /// Adds the datapoint to `store` under Firehose's namespace.
    pub fn store(&self, store: &mut MetricStore) {
        let key = self.key(NAMESPACE);
        match self.value {
            DatumValue::Single(v) => store.put_value(key, Some(self.unit), self.minute_ms, v),
            DatumValue::Set { count, sum, min, max } => {
                store.put_set(key, Some(self.unit), self.minute_ms, [count, sum, min, max])
            }
        }
    }
}

/// Turns samples of the streams' figures into minute datapoints.
#[derive(Debug, Default)]
pub struct Sampler {
    last_ms: Option<i64>,
    streams: BTreeMap<String, Open>,
}

impl Sampler {
    /// Takes a sample at clock time `now_ms` and stores the minutes it
    /// closes (see [`Sampler::sample_data`]). Returns the boundaries
    /// crossed, for alarms.
    pub fn sample(&mut self, now_ms: i64, figures: Vec<StreamFigures>, store: &mut MetricStore) -> Vec<i64> {
        let (boundaries, data) = self.sample_data(now_ms, figures);
        for datum in &data {
            datum.store(store);
        }
        boundaries
    }

    /// Takes a sample at clock time `now_ms`: every minute boundary crossed
    /// since the last sample closes a minute (its datapoints are returned,
    /// stamped with the minute's start); what was counted since the last
    /// sample belongs to the minute open now.
    pub fn sample_data(&mut self, now_ms: i64, figures: Vec<StreamFigures>) -> (Vec<i64>, Vec<Datum>) {
        let last = *self.last_ms.get_or_insert(now_ms);
        let (first, end) = (minute_of(last) / 60_000 + 1, minute_of(now_ms) / 60_000);
        // A jump of years closes at most the minutes a series keeps.
        let first = first.max(end - super::store::RETENTION_MINUTES as i64 + 1);
        let boundaries: Vec<i64> = (first..=end).map(|m| m * 60_000).collect();
        let mut data = Vec::new();
        for boundary in &boundaries {
            for open in self.streams.values_mut() {
                close_minute(open, boundary - 60_000, *boundary, &mut data);
            }
        }
        let present: Vec<String> = figures.iter().map(|f| f.stream.clone()).collect();
        for f in figures {
            let open =
                self.streams.entry(f.stream.clone()).or_insert_with(|| Open { last: f.counters, ..Open::default() });
            let delta = f.counters.since(&open.last);
            open.gathered.add(&delta);
            open.last = f.counters;
            open.figures = f;
        }
        // A stream that is gone publishes nothing more.
        self.streams.retain(|name, _| present.contains(name));
        self.last_ms = Some(now_ms);
        (boundaries, data)
    }

    /// Samples at `now_ms`, then closes the minute still open early, stamped
    /// with its start: a process that stops publishes what it counted last
    /// (a later sample in the same minute adds to it; sums stay right).
    pub fn flush(&mut self, now_ms: i64, figures: Vec<StreamFigures>) -> Vec<Datum> {
        let (_, mut data) = self.sample_data(now_ms, figures);
        for open in self.streams.values_mut() {
            close_minute(open, minute_of(now_ms), now_ms, &mut data);
        }
        data
    }
}

/// Closes `open`'s minute starting at `minute`, with gauges read at `at`.
fn close_minute(open: &mut Open, minute: i64, at: i64, data: &mut Vec<Datum>) {
    let gathered = std::mem::take(&mut open.gathered);
    let f = &open.figures;
    for metric in METRICS.iter().filter(|m| m.applies.to(f)) {
        let value = match metric.value {
            Value::Counter(of) => Some(DatumValue::Single(of(&gathered) as f64)),
            Value::PerAttempt(of) => {
                let (ok, attempts) = of(&gathered);
                (attempts > 0).then_some(DatumValue::Set {
                    count: attempts as f64,
                    sum: ok as f64,
                    min: if ok < attempts { 0.0 } else { 1.0 },
                    max: if ok > 0 { 1.0 } else { 0.0 },
                })
            }
            Value::Gauge(of) => of(f, at).map(DatumValue::Single),
        };
        if let Some(value) = value {
            data.push(Datum {
                name: metric.name,
                unit: metric.unit,
                stream: f.stream.clone(),
                minute_ms: minute,
                value,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(read: u64, delivered: u64, oldest: Option<i64>) -> StreamFigures {
        StreamFigures {
            stream: "s".into(),
            counters: Counters { records_read: read, records_delivered: delivered, ..Counters::default() },
            oldest_unlanded_ms: oldest,
            ..StreamFigures::default()
        }
    }

    fn key(name: &str) -> MetricKey {
        MetricKey::new(NAMESPACE, name, vec![(DIMENSION.into(), "s".into())])
    }

    #[test]
    fn every_minute_a_jump_crosses_gets_a_datapoint() {
        let (mut sampler, mut store) = (Sampler::default(), MetricStore::default());
        sampler.sample(30_000, vec![figures(0, 0, None)], &mut store);
        // 100 records read at 00:00:40, then the clock jumps 20 minutes and
        // they land.
        sampler.sample(40_000, vec![figures(100, 0, Some(40_000))], &mut store);
        let crossed = sampler.sample(20 * 60_000 + 40_000, vec![figures(100, 100, None)], &mut store);
        assert_eq!(crossed.len(), 20);
        let reads = store.aggregate(&key("DataReadFromSource.Records"), 0, i64::MAX, 60);
        assert_eq!(reads.len(), 20, "one datapoint per minute, zeros included");
        assert_eq!(reads[0].1.statistic("Sum"), Some(100.0));
        assert_eq!(reads.iter().map(|(_, a)| a.sum).sum::<f64>(), 100.0);
        // The landing belongs to the minute open after the jump.
        let delivered = store.aggregate(&key("DeliveryToS3.Records"), 0, i64::MAX, 60);
        assert_eq!(delivered.iter().map(|(_, a)| a.sum).sum::<f64>(), 0.0);
        sampler.sample(21 * 60_000, vec![figures(100, 100, None)], &mut store);
        let delivered = store.aggregate(&key("DeliveryToS3.Records"), 0, i64::MAX, 60);
        assert_eq!(delivered.last().unwrap().1.sum, 100.0);
        // Freshness grows minute by minute while the records wait.
        let fresh = store.aggregate(&key("DeliveryToS3.DataFreshness"), 0, i64::MAX, 60);
        assert_eq!(fresh[0].1.max, 20.0);
        assert_eq!(fresh[19].1.max, 1160.0);
        assert_eq!(fresh[20].1.max, 0.0, "landed: nothing waits");
    }

    #[test]
    fn a_new_delivery_restarts_its_counters_without_negative_deltas() {
        let (mut sampler, mut store) = (Sampler::default(), MetricStore::default());
        sampler.sample(0, vec![figures(50, 0, None)], &mut store);
        sampler.sample(10_000, vec![figures(80, 0, None)], &mut store);
        sampler.sample(20_000, vec![figures(5, 0, None)], &mut store);
        sampler.sample(60_000, vec![figures(5, 0, None)], &mut store);
        let reads = store.aggregate(&key("DataReadFromSource.Records"), 0, i64::MAX, 60);
        assert_eq!(reads[0].1.sum, 35.0, "30 before the restart, 5 after");
    }

    #[test]
    fn success_is_one_or_zero_per_attempt() {
        let (mut sampler, mut store) = (Sampler::default(), MetricStore::default());
        sampler.sample(0, vec![figures(0, 0, None)], &mut store);
        let mut f = figures(0, 0, None);
        f.counters.put_successes = 3;
        f.counters.put_failures = 1;
        sampler.sample(10_000, vec![f.clone()], &mut store);
        sampler.sample(60_000, vec![f], &mut store);
        let success = &store.aggregate(&key("DeliveryToS3.Success"), 0, i64::MAX, 60)[0].1;
        assert_eq!((success.statistic("Average"), success.statistic("Sum")), (Some(0.75), Some(3.0)));
        assert_eq!(success.statistic("Minimum"), Some(0.0));
    }

    #[test]
    fn the_table_names_each_metric_once() {
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), METRICS.len());
    }
}
