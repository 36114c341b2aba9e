//! What happens to a Kafka record between the consumer and a buffer:
//! `RecordDeAggregation` splits it into sub-records, `MetadataExtraction` runs
//! the jq query (jaq, a jq implementation) that yields its partition keys.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Native, RcIter};
use jaq_json::Val;

use crate::spec::Deaggregation;

/// Splits a record into the sub-records Firehose treats as records.
pub fn deaggregate(value: &Bytes, how: Option<&Deaggregation>) -> Vec<Bytes> {
    match how {
        None => vec![value.clone()],
        Some(Deaggregation::Json) => {
            // Concatenated JSON values; each sub-record is its exact bytes.
            let mut out = Vec::new();
            let mut stream = serde_json::Deserializer::from_slice(value).into_iter::<serde::de::IgnoredAny>();
            let mut start = 0;
            while let Some(Ok(_)) = stream.next() {
                let end = stream.byte_offset();
                let text = &value[start..end];
                let skip = text.iter().take_while(|b| b.is_ascii_whitespace()).count();
                out.push(value.slice(start + skip..end));
                start = end;
            }
            if value[start..].iter().any(|b| !b.is_ascii_whitespace()) || out.is_empty() {
                // Not (entirely) JSON: keep the record whole so it fails
                // extraction visibly instead of vanishing.
                return vec![value.clone()];
            }
            out
        }
        Some(Deaggregation::Delimited(delimiter)) => {
            let mut out = Vec::new();
            let mut start = 0;
            let bytes = &value[..];
            let mut i = 0;
            while !delimiter.is_empty() && i + delimiter.len() <= bytes.len() {
                if &bytes[i..i + delimiter.len()] == delimiter.as_slice() {
                    out.push(value.slice(start..i));
                    i += delimiter.len();
                    start = i;
                } else {
                    i += 1;
                }
            }
            if start < bytes.len() {
                out.push(value.slice(start..));
            }
            out.retain(|r| !r.is_empty());
            out
        }
    }
}

/// Why a record yielded no partition keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    #[error("Non JSON record provided")]
    NotJson,
    #[error("jq query failed: {0}")]
    Query(String),
    #[error("jq query must produce one object of partition keys, got {0}")]
    NotAnObject(String),
    #[error("partition key {0:?} is null or missing")]
    MissingKey(String),
    #[error("partition key {0:?} is not a string, number or boolean")]
    NotScalar(String),
}

/// Compiles a jq program, for validation (the message is jaq's).
pub fn check_query(query: &str) -> Result<(), String> {
    compile(query).map(drop)
}

type Filter = jaq_core::Filter<Native<Val>>;

fn compile(query: &str) -> Result<Filter, String> {
    let loader = Loader::new(jaq_std::defs().chain(jaq_json::defs()));
    let arena = Arena::default();
    let modules = loader.load(&arena, File { code: query, path: () }).map_err(|errors| {
        // Each error is "expected X" at a slice of the query; report the
        // character position so the user can find it.
        let at = |rest: &str| {
            let offset = (rest.as_ptr() as usize).wrapping_sub(query.as_ptr() as usize);
            if offset <= query.len() {
                query[..offset].chars().count()
            } else {
                query.chars().count()
            }
        };
        let details: Vec<String> = errors
            .iter()
            .flat_map(|(_, e)| match e {
                jaq_core::load::Error::Lex(v) => {
                    v.iter().map(|(x, rest)| format!("expected {} at character {}", x.as_str(), at(rest))).collect()
                }
                jaq_core::load::Error::Parse(v) => {
                    v.iter().map(|(x, tok)| format!("expected {} at character {}", x.as_str(), at(tok))).collect()
                }
                jaq_core::load::Error::Io(v) => v.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(),
            })
            .collect();
        format!("cannot parse the jq query {query:?}: {}", details.join("; "))
    })?;
    Compiler::default().with_funs(jaq_std::funs().chain(jaq_json::funs())).compile(modules).map_err(|errors| {
        let names: Vec<String> =
            errors.iter().flat_map(|(_, errs)| errs.iter().map(|(name, _)| name.to_string())).collect();
        format!("cannot compile the jq query {query:?}: undefined {}", names.join(", "))
    })
}

thread_local! {
    // jaq filters are not Send; each worker thread compiles a query once.
    static COMPILED: RefCell<HashMap<String, Filter>> = RefCell::new(HashMap::new());
}

/// `MetadataExtraction` with `JsonParsingEngine: JQ-1.6`.
#[derive(Debug, Clone)]
pub struct MetadataExtractor {
    query: String,
}

impl MetadataExtractor {
    /// `query` must have passed [`check_query`].
    pub fn new(query: impl Into<String>) -> Self {
        Self { query: query.into() }
    }

    /// The partition keys of one record, values as they appear in the key
    /// (strings unquoted, numbers and booleans as JSON text).
    pub fn extract(&self, record: &[u8]) -> Result<BTreeMap<String, String>, ExtractError> {
        let input: serde_json::Value = serde_json::from_slice(record).map_err(|_| ExtractError::NotJson)?;
        let output = COMPILED.with(|cache| {
            let mut cache = cache.borrow_mut();
            if !cache.contains_key(&self.query) {
                let filter = compile(&self.query).map_err(ExtractError::Query)?;
                cache.insert(self.query.clone(), filter);
            }
            let filter = &cache[&self.query];
            let inputs = RcIter::new(core::iter::empty());
            let mut results = filter.run((Ctx::new([], &inputs), Val::from(input)));
            match results.next() {
                Some(Ok(v)) => Ok(serde_json::Value::from(v)),
                Some(Err(e)) => Err(ExtractError::Query(e.to_string())),
                None => Err(ExtractError::NotAnObject("no output".into())),
            }
        })?;
        let serde_json::Value::Object(map) = output else {
            return Err(ExtractError::NotAnObject(output.to_string()));
        };
        map.into_iter()
            .map(|(key, value)| match value {
                serde_json::Value::Null => Err(ExtractError::MissingKey(key)),
                serde_json::Value::String(s) => Ok((key, s)),
                serde_json::Value::Number(n) => Ok((key, jq_number(&n))),
                serde_json::Value::Bool(_) => Ok((key, value.to_string())),
                _ => Err(ExtractError::NotScalar(key)),
            })
            .collect()
    }
}

/// A number as jq 1.6 prints it in a partition key: integers exactly,
/// integral floats without a fraction (`1.0` is `1`), other floats in their
/// shortest form, with a C-style exponent (`1e+17`, `1.5e-05`) outside
/// `1e-4 <= |x| < 1e17`.
pub fn jq_number(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    let Some(x) = n.as_f64() else { return n.to_string() };
    if x == 0.0 {
        return "0".into();
    }
    if x.fract() == 0.0 && x.abs() < 1e17 {
        return format!("{x:.0}");
    }
    if (1e-4..1e17).contains(&x.abs()) {
        return format!("{x}");
    }
    let scientific = format!("{x:e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("scientific notation has an exponent");
    let exponent: i32 = exponent.parse().expect("a number");
    format!("{mantissa}e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_keys_with_jq() {
        let x = MetadataExtractor::new("{customer_id: .customer_id, event_type: .event_type, n: .n}");
        let keys = x.extract(br#"{"customer_id":"c-1","event_type":"order_placed","n":3}"#).unwrap();
        assert_eq!(keys["customer_id"], "c-1");
        assert_eq!(keys["event_type"], "order_placed");
        assert_eq!(keys["n"], "3");
    }

    #[test]
    fn numbers_print_as_jq_1_6_prints_them() {
        let x = MetadataExtractor::new("{n: .n}");
        for (input, key) in [
            ("1", "1"),
            ("1.0", "1"),
            ("-3.0", "-3"),
            ("2.5", "2.5"),
            ("0.1", "0.1"),
            ("12345678901234567890", "12345678901234567890"),
            ("9007199254740993", "9007199254740993"),
            ("1e17", "1e+17"),
            ("0.00001", "1e-05"),
            ("1.5e-7", "1.5e-07"),
        ] {
            let keys = x.extract(format!(r#"{{"n":{input}}}"#).as_bytes()).unwrap();
            assert_eq!(keys["n"], key, "{input}");
        }
    }

    #[test]
    fn extraction_failures_are_typed() {
        let x = MetadataExtractor::new("{customer_id: .customer_id}");
        assert_eq!(x.extract(b"not json"), Err(ExtractError::NotJson));
        assert_eq!(x.extract(br#"{"other":1}"#), Err(ExtractError::MissingKey("customer_id".into())));
        assert_eq!(x.extract(br#"{"customer_id":{"a":1}}"#), Err(ExtractError::NotScalar("customer_id".into())));
        assert!(matches!(
            MetadataExtractor::new(".customer_id").extract(br#"{"customer_id":"c"}"#),
            Err(ExtractError::NotAnObject(_))
        ));
    }

    #[test]
    fn bad_queries_are_rejected_at_validation() {
        assert!(check_query("{a: .a").is_err());
        assert!(check_query("{a: nosuchfunction(.a)}").unwrap_err().contains("nosuchfunction"));
        assert!(check_query("{a: .a | ascii_downcase}").is_ok());
    }

    #[test]
    fn json_deaggregation_splits_concatenated_values() {
        let parts = deaggregate(&Bytes::from_static(b"{\"a\":1} {\"b\":2}\n{\"c\":3}"), Some(&Deaggregation::Json));
        assert_eq!(parts, [&b"{\"a\":1}"[..], b"{\"b\":2}", b"{\"c\":3}"].map(Bytes::from_static));
        // Garbage is kept whole so it fails extraction visibly.
        let parts = deaggregate(&Bytes::from_static(b"{\"a\":1} oops"), Some(&Deaggregation::Json));
        assert_eq!(parts.len(), 1);
    }

    #[test]
    fn delimited_deaggregation_splits_on_the_delimiter() {
        let parts = deaggregate(&Bytes::from_static(b"a||b||||c||"), Some(&Deaggregation::Delimited(b"||".to_vec())));
        assert_eq!(parts, [&b"a"[..], b"b", b"c"].map(Bytes::from_static));
    }
}
