//! What happens to a Kafka record between the consumer and a buffer:
//! `RecordDeAggregation` splits it into sub-records, `MetadataExtraction` runs
//! the jq query (jaq, a jq implementation) that yields its partition keys.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Native, RcIter};
use jaq_json::Val;

/// `RecordDeAggregation`'s `SubRecordType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deaggregation {
    /// Concatenated JSON values.
    Json,
    /// Records separated by this (base64-decoded) delimiter.
    Delimited(Vec<u8>),
}

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
#[non_exhaustive]
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
    /// The query as plain paths, when it is only that (most are).
    paths: Option<PathQuery>,
}

impl MetadataExtractor {
    /// `query` must have passed [`check_query`].
    pub fn new(query: impl Into<String>) -> Self {
        let query = query.into();
        Self { paths: PathQuery::parse(&query), query }
    }

    /// The partition keys of one record, values as they appear in the key
    /// (strings unquoted, numbers and booleans as JSON text).
    pub fn extract(&self, record: &[u8]) -> Result<BTreeMap<String, String>, ExtractError> {
        if let Some(keys) = self.paths.as_ref().and_then(|paths| paths.extract(record)) {
            return Ok(keys);
        }
        self.extract_with_jq(record)
    }

    /// Runs the query with jaq: every query, and every record the path
    /// reading gives up on, so results and messages are jq's.
    pub fn extract_with_jq(&self, record: &[u8]) -> Result<BTreeMap<String, String>, ExtractError> {
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

/// A query that only builds an object from paths, `{name: .a.b, "x": .c,
/// d}`: its keys are read straight from the record's JSON, borrowing
/// instead of building a tree and running jq, which is most of the cost of
/// dynamic partitioning. Only the plain success is answered here: a record
/// that is not a JSON object, a path through something else, a null, a
/// missing key or a non-scalar goes to jq, so every error is jq's own.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PathQuery {
    /// (output key, path of object keys)
    keys: Vec<(String, Vec<String>)>,
    /// The record's members the paths start with: the only ones kept.
    top: Vec<String>,
}

impl PathQuery {
    /// The query's keys and paths, or `None` when it is anything more.
    fn parse(query: &str) -> Option<PathQuery> {
        let mut p = QueryParser { rest: query.trim() };
        p.eat('{')?;
        let mut keys = Vec::new();
        loop {
            let name = p.name()?;
            let path = if p.eat(':').is_some() { p.path()? } else { vec![name.clone()] };
            keys.push((name, path));
            if p.eat(',').is_none() {
                break;
            }
        }
        p.eat('}')?;
        let mut top: Vec<String> = keys.iter().map(|(_, path)| path[0].clone()).collect();
        top.sort();
        top.dedup();
        p.rest.is_empty().then_some(PathQuery { keys, top })
    }

    fn extract(&self, record: &[u8]) -> Option<BTreeMap<String, String>> {
        // UTF-8 checked once, for the whole record (jq's reading rejects it
        // anywhere too); reading from text skips the check of each value.
        let text = std::str::from_utf8(record).ok()?;
        let top = Members::of(text, &self.top)?;
        let mut out = BTreeMap::new();
        for (name, path) in &self.keys {
            let mut value = top.get(&path[0])?;
            for key in &path[1..] {
                value = Members::of(value.get(), std::slice::from_ref(key))?.get(key)?;
            }
            out.insert(name.clone(), scalar(value)?);
        }
        Some(out)
    }
}

/// A leaf as the key shows it, if it is a string, number or boolean.
fn scalar(value: &serde_json::value::RawValue) -> Option<String> {
    let text = value.get();
    match text.as_bytes().first()? {
        b'"' => serde_json::from_str::<String>(text).ok(),
        b't' | b'f' => Some(text.to_owned()),
        b'-' | b'0'..=b'9' => serde_json::from_str::<serde_json::Number>(text).ok().map(|n| jq_number(&n)),
        _ => None,
    }
}

/// Members of a JSON object, borrowed: values unparsed, keys unescaped only
/// when they have escapes.
struct Fields<'a>(Vec<(std::borrow::Cow<'a, str>, &'a serde_json::value::RawValue)>);

impl<'a> Fields<'a> {
    /// The member named `key`; the last one, as jq reads duplicates.
    fn get(&self, key: &str) -> Option<&'a serde_json::value::RawValue> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

/// Reads a JSON object keeping only the members named in `.0`: the
/// others are checked as JSON (as jq's reading checks them) but neither
/// kept nor copied. A record's key is usually one member of many.
struct Members<'q>(&'q [String]);

impl Members<'_> {
    /// `text`'s members named in `wanted`, if `text` is one JSON object and
    /// nothing more.
    fn of<'a>(text: &'a str, wanted: &[String]) -> Option<Fields<'a>> {
        use serde::de::DeserializeSeed as _;
        let mut reader = serde_json::Deserializer::from_str(text);
        let fields = Members(wanted).deserialize(&mut reader).ok()?;
        reader.end().ok()?;
        Some(fields)
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Members<'_> {
    type Value = Fields<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Fields<'de>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Members<'_> {
    type Value = Fields<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Fields<'de>, M::Error> {
        let mut fields = Vec::new();
        while let Some(Key(key)) = map.next_key()? {
            if self.0.iter().any(|wanted| *wanted == key) {
                fields.push((key, map.next_value()?));
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(Fields(fields))
    }
}

/// An object key, borrowed unless it had to be unescaped.
struct Key<'a>(std::borrow::Cow<'a, str>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Key<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Key<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'a>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'a>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(Visitor(std::marker::PhantomData))
    }
}

/// Reads `{name: .path, ...}` and nothing more.
struct QueryParser<'q> {
    rest: &'q str,
}

impl QueryParser<'_> {
    fn eat(&mut self, c: char) -> Option<()> {
        self.rest = self.rest.trim_start().strip_prefix(c)?;
        Some(())
    }

    /// An identifier, or a string without escapes.
    fn name(&mut self) -> Option<String> {
        self.rest = self.rest.trim_start();
        if let Some(quoted) = self.rest.strip_prefix('"') {
            let end = quoted.find(['"', '\\'])?;
            (quoted.as_bytes()[end] == b'"').then_some(())?;
            self.rest = &quoted[end + 1..];
            return Some(quoted[..end].to_owned());
        }
        let end = self.rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(self.rest.len());
        let ident = &self.rest[..end];
        (!ident.is_empty() && !ident.starts_with(|c: char| c.is_ascii_digit())).then_some(())?;
        self.rest = &self.rest[end..];
        Some(ident.to_owned())
    }

    /// `.a.b."c"`: one or more keys.
    fn path(&mut self) -> Option<Vec<String>> {
        let mut path = Vec::new();
        while self.rest.trim_start().starts_with('.') {
            self.eat('.')?;
            // No space after the dot: `. a` is not a path.
            if self.rest.starts_with(char::is_whitespace) {
                return None;
            }
            path.push(self.name()?);
        }
        (!path.is_empty()).then_some(path)
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
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn path_queries_are_recognised_and_nothing_more() {
        let paths = |q: &str| PathQuery::parse(q).map(|p| p.keys);
        let key = |name: &str, path: &[&str]| (name.to_owned(), path.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(paths("{customer: .customer_id}"), Some(vec![key("customer", &["customer_id"])]));
        assert_eq!(
            paths(r#" { "a b" : .x."y z" , c, d:.e .f } "#),
            Some(vec![key("a b", &["x", "y z"]), key("c", &["c"]), key("d", &["e", "f"])])
        );
        for other in [
            "{a: .b | ascii_downcase}",
            "{a: .b?}",
            "{a: .[0]}",
            "{(.k): .v}",
            "{a: . b}",
            "{\"a\\n\": .b}",
            ".a",
            "{a: .b} | .a",
            "{1: .a}",
            "{a: $x}",
        ] {
            assert_eq!(paths(other), None, "{other}");
        }
    }

    #[test]
    fn plain_records_take_the_path_reading() {
        let x = MetadataExtractor::new("{customer: .customer_id, kind: .event.type}");
        let record = br#"{"customer_id":"c-000042","event":{"type":"order_placed","n":1}}"#;
        let keys = x.paths.as_ref().unwrap().extract(record).expect("read without jq");
        assert_eq!(keys, x.extract_with_jq(record).unwrap());
    }

    const KEYS: [&str; 5] = ["a", "b", "customer_id", "x y", "é"];

    fn name() -> impl Strategy<Value = String> {
        prop::sample::select(&KEYS[..]).prop_map(|k| {
            if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                k.to_owned()
            } else {
                format!("{k:?}")
            }
        })
    }

    fn query() -> impl Strategy<Value = String> {
        let entry = (name(), prop::collection::vec(name(), 0..3)).prop_map(|(name, path)| {
            if path.is_empty() {
                name
            } else {
                format!("{name}: {}", path.iter().map(|p| format!(".{p}")).collect::<String>())
            }
        });
        prop::collection::vec(entry, 1..4).prop_map(|entries| format!("{{{}}}", entries.join(", ")))
    }

    fn json() -> impl Strategy<Value = String> {
        let number = prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:e}")),
            prop::sample::select(vec![
                "1.0",
                "-0",
                "1e5",
                "1E+2",
                "0.00001",
                "123456789012345678901234",
                "1.5e300",
                "-0.0"
            ])
            .prop_map(str::to_owned),
        ];
        let string = "[a-z\"\\\\é\u{1F600}\n ]{0,6}".prop_map(|s| serde_json::to_string(&s).unwrap());
        let leaf =
            prop_oneof![Just("null".to_owned()), Just("true".to_owned()), Just("false".to_owned()), number, string];
        leaf.prop_recursive(3, 24, 4, |inner| {
            let key = prop_oneof![
                prop::sample::select(&KEYS[..]).prop_map(|k| serde_json::to_string(k).unwrap()),
                // An escaped spelling of a key.
                Just(r#""\u0061""#.to_owned()),
            ];
            prop_oneof![
                prop::collection::vec((key, inner.clone()), 0..5).prop_map(|members| {
                    format!("{{{}}}", members.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(" ,"))
                }),
                prop::collection::vec(inner, 0..3).prop_map(|items| format!("[{}]", items.join(","))),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        /// Whenever a record is read by path, the keys are exactly jq's.
        #[test]
        fn path_reading_agrees_with_jq(query in query(), record in json(), trailing in prop::option::of("[ x}]")) {
            prop_assume!(check_query(&query).is_ok());
            let x = MetadataExtractor::new(query.clone());
            prop_assert!(x.paths.is_some(), "{} is a path query", query);
            let record = format!("{record}{}", trailing.unwrap_or_default());
            if let Some(fast) = x.paths.as_ref().unwrap().extract(record.as_bytes()) {
                prop_assert_eq!(Ok(fast), x.extract_with_jq(record.as_bytes()), "{} on {}", query, record);
            }
        }
    }

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
