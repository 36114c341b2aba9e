//! Fuzzing the inputs users control: spec files (any JSON, any text), prefix
//! expressions, and record bytes through de-aggregation, jq extraction and the
//! decoders. Nothing may panic; bad input must come back as an error.
//!
//! Each target runs for `STREAMLAB_FUZZ_SECONDS` (default 2, so `just test`
//! stays fast; `just fuzz` runs them for 10 minutes). A failure prints the
//! shrunk input: add it to `regressions` below.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;
use streamlab::delivery::encode::decompress;
use streamlab::extract::{deaggregate, MetadataExtractor};
use streamlab::prefix::{RenderContext, Template};
use streamlab::spec::{Compression, Deaggregation};

/// Runs `check` on inputs from `strategy` until the time budget is spent,
/// with a fresh seed per round so long runs explore new inputs.
fn fuzz<S: Strategy>(name: &str, strategy: S, check: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let budget = std::env::var("STREAMLAB_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2u64);
    let deadline = Instant::now() + Duration::from_secs(budget);
    let mut cases = 0u64;
    let mut round = 0u64;
    while Instant::now() < deadline {
        round += 1;
        let config = Config {
            cases: 256,
            failure_persistence: None,
            rng_seed: proptest::test_runner::RngSeed::Fixed(round),
            ..Config::default()
        };
        let mut runner = TestRunner::new(config);
        if let Err(e) = runner.run(&strategy, &check) {
            panic!("{name}: {e}");
        }
        cases += 256;
    }
    eprintln!("fuzz {name}: {cases} cases in {budget} s, no panic");
}

/// Strings shaped like prefixes: literal text, `!{`, `}`, namespaces, pattern
/// letters and quotes, in any order.
fn prefix_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("!{".to_owned()),
        Just("}".to_owned()),
        Just("timestamp:".to_owned()),
        Just("firehose:".to_owned()),
        Just("random-string".to_owned()),
        Just("error-output-type".to_owned()),
        Just("partitionKeyFromQuery:".to_owned()),
        Just("'".to_owned()),
        "[yuMdHhmsSaEDwQ]{1,6}",
        "[ -~]{0,8}",
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|parts| parts.concat())
}

#[test]
fn prefix_expressions_never_panic() {
    fuzz("prefix", (prefix_like(), any::<i64>(), 0usize..4), |(text, ms, zone)| {
        if let Ok(template) = Template::parse(&text) {
            let zone = ["UTC", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"][zone];
            let mut random = || "abcdefghijk".to_owned();
            let mut ctx = RenderContext {
                instant: Utc.timestamp_millis_opt(ms.clamp(-8_000_000_000_000, 8_000_000_000_000)).unwrap(),
                time_zone: zone.parse().unwrap(),
                random_string: &mut random,
                error_output_type: Some("processing-failed"),
                partition_key: &|_, k| (!k.is_empty()).then(|| k.to_owned()),
            };
            let _ = template.render(&mut ctx);
            let _ = template.fixed_evaluated_length(chrono_tz::Tz::UTC);
        }
        Ok(())
    });
}

/// Any JSON value, up to a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        prefix_like().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[A-Za-z]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The seed spec with one field (at any depth) replaced or removed: close
/// enough to valid to reach the deep checks.
fn mutated_spec() -> impl Strategy<Value = Value> {
    let seed: Value =
        serde_json::from_str(include_str!("../fixtures/streams/dynamic-partitioning-customer-and-type.json")).unwrap();
    let paths = field_paths(&seed, Vec::new());
    (prop::sample::select(paths), prop::option::of(json())).prop_map(move |(path, replacement)| {
        let mut spec = seed.clone();
        set(&mut spec, &path, replacement);
        spec
    })
}

fn field_paths(v: &Value, at: Vec<String>) -> Vec<Vec<String>> {
    let mut out = vec![at.clone()];
    match v {
        Value::Object(m) => {
            m.iter().for_each(|(k, c)| out.extend(field_paths(c, [at.clone(), vec![k.clone()]].concat())))
        }
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, c)| out.extend(field_paths(c, [at.clone(), vec![i.to_string()]].concat()))),
        _ => {}
    }
    out
}

fn set(v: &mut Value, path: &[String], replacement: Option<Value>) {
    let Some((last, parents)) = path.split_last() else {
        *v = replacement.unwrap_or(Value::Null);
        return;
    };
    let mut at = v;
    for key in parents {
        at = match at {
            Value::Object(m) => m.get_mut(key).unwrap(),
            Value::Array(a) => &mut a[key.parse::<usize>().unwrap()],
            _ => return,
        };
    }
    match (at, replacement) {
        (Value::Object(m), Some(r)) => drop(m.insert(last.clone(), r)),
        (Value::Object(m), None) => drop(m.remove(last)),
        (Value::Array(a), Some(r)) => a[last.parse::<usize>().unwrap()] = r,
        (Value::Array(a), None) => drop(a.remove(last.parse::<usize>().unwrap())),
        _ => {}
    }
}

#[test]
fn spec_validation_never_panics() {
    fuzz("spec (mutated)", mutated_spec(), |spec| {
        let _ = streamlab::spec::parse(Path::new("fuzz.json"), &spec.to_string());
        Ok(())
    });
    fuzz("spec (any JSON)", json(), |spec| {
        let _ = streamlab::spec::parse(Path::new("fuzz.json"), &spec.to_string());
        Ok(())
    });
    fuzz("spec (any text)", any::<String>(), |text| {
        let _ = streamlab::spec::parse(Path::new("fuzz.json"), &text);
        Ok(())
    });
}

#[test]
fn record_bytes_never_panic() {
    let extractor = MetadataExtractor::new("{customer_id: .customer_id, event_type: .event_type}");
    let strategy = (prop::collection::vec(any::<u8>(), 0..512), json(), prop::collection::vec(any::<u8>(), 1..4));
    fuzz("records", strategy, |(bytes, value, delimiter)| {
        let raw = Bytes::from(bytes);
        for how in [None, Some(Deaggregation::Json), Some(Deaggregation::Delimited(delimiter.clone()))] {
            for part in deaggregate(&raw, how.as_ref()) {
                let _ = extractor.extract(&part);
            }
        }
        let _ = extractor.extract(value.to_string().as_bytes());
        for c in [Compression::Gzip, Compression::Zip, Compression::Snappy, Compression::HadoopSnappy] {
            let _ = decompress(&raw, c);
        }
        Ok(())
    });
}
