//! The deserializers Firehose runs before writing columns: OpenX JSON SerDe
//! (lenient: case-insensitive keys, coercion of strings to numbers and of
//! nested values to strings, a scalar promoted to a one-element array) and
//! Hive JSON SerDe (strict: a value must already have the column's type).
//! Each record becomes one row of values, in column order and in the form the
//! column builders (`convert::columns`) read (the Arrow JSON decoder's), or
//! the error Firehose writes under `format-conversion-failed`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::glue::HiveType;

/// `DataFormatConversion.ParseError` and `.MalformedData`, with Firehose's
/// messages where they are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionError {
    pub code: &'static str,
    pub message: String,
}

pub const PARSE_ERROR: &str = "DataFormatConversion.ParseError";
pub const MALFORMED_DATA: &str = "DataFormatConversion.MalformedData";

fn malformed(detail: impl std::fmt::Display) -> ConversionError {
    ConversionError { code: MALFORMED_DATA, message: format!("Data does not match the schema. {detail}") }
}

/// `InputFormatConfiguration.Deserializer`.
#[derive(Debug, Clone, PartialEq)]
pub enum Deserializer {
    OpenX {
        case_insensitive: bool,
        dots_to_underscores: bool,
        /// Column name -> JSON key (`ColumnToJsonKeyMappings`).
        mappings: BTreeMap<String, String>,
    },
    Hive {
        /// `TimestampFormats`, checked at validation; empty means
        /// `java.sql.Timestamp.valueOf`'s form.
        timestamp_formats: Vec<TimestampFormat>,
    },
}

/// A table's columns with the JSON key each is read from (after the
/// deserializer's key rules and `ColumnToJsonKeyMappings`).
#[derive(Debug, Clone)]
pub struct Columns {
    pub columns: Vec<(String, HiveType)>,
    /// JSON key -> the columns read from it (mappings may share a key).
    by_key: HashMap<String, Vec<usize>>,
}

/// A column's value as read from a record, with the key it came from.
type Slot<'de> = Option<(Cow<'de, str>, Cell<'de>)>;

/// A value as the record has it, or as a column's builder reads it: text,
/// borrowed from the record unless it had escapes or had to change, or any
/// other JSON value (null for a missing one). Strings are most of a
/// record's columns; reading each into a `Value` copied it once more before
/// the column builder copied it (`perf` of a Parquet delivery).
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'r> {
    Text(Cow<'r, str>),
    Json(Value),
}

impl Cell<'_> {
    pub fn into_value(self) -> Value {
        match self {
            Cell::Text(text) => Value::String(text.into_owned()),
            Cell::Json(value) => value,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Cell<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CellVisitor;
        impl<'de> Visitor<'de> for CellVisitor {
            type Value = Cell<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(Cell::Text(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Cell::Text(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
                Ok(Cell::Text(Cow::Owned(text)))
            }
            fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
                Ok(Cell::Json(Value::Bool(b)))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
                Ok(Cell::Json(Value::Number(n.into())))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
                Ok(Cell::Json(Value::Number(n.into())))
            }
            // As `Value` reads it: a float JSON cannot hold is null.
            fn visit_f64<E>(self, f: f64) -> Result<Self::Value, E> {
                Ok(Cell::Json(Number::from_f64(f).map_or(Value::Null, Value::Number)))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Cell::Json(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq)).map(Cell::Json)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Value::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Cell::Json)
            }
        }
        use serde::Deserialize as _;
        deserializer.deserialize_any(CellVisitor)
    }
}

/// Where [`Deserializer::cells`] reads a record into, kept from record to
/// record of a batch so each record allocates neither.
#[derive(Default)]
pub struct RowBuffers<'r> {
    slots: Vec<Slot<'r>>,
    pub cells: Vec<Cell<'r>>,
}

/// Reads a record's top-level object straight into the columns' slots;
/// `false` when the record is JSON but not an object.
struct RowSeed<'c, 'de> {
    deserializer: &'c Deserializer,
    columns: &'c Columns,
    slots: &'c mut Vec<Slot<'de>>,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_, 'de> {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_, 'de> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let slots = self.slots;
        slots.clear();
        slots.resize(self.columns.columns.len(), None);
        while let Some(Key(key)) = map.next_key()? {
            let Some(indexes) = self.columns.by_key.get(self.deserializer.key(&key).as_ref()) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let value: Cell<'de> = map.next_value()?;
            // Of keys that match alike, the last in key order wins (a
            // repeated key: its last value), as when the record was a map.
            let (last, rest) = indexes.split_last().expect("a key reads at least one column");
            for &i in rest {
                if slots[i].as_ref().is_none_or(|(seen, _)| key >= *seen) {
                    slots[i] = Some((key.clone(), value.clone()));
                }
            }
            if slots[*last].as_ref().is_none_or(|(seen, _)| key >= *seen) {
                slots[*last] = Some((key, value));
            }
        }
        Ok(true)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(false)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(false)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(false)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(false)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(false)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(false)
    }
}

/// An object key, borrowed from the record unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(key)))
            }
            fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }
            fn visit_string<E>(self, key: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(key)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A Hive `TimestampFormats` entry: `millis`, or a Joda pattern translated to
/// chrono's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampFormat {
    Millis,
    Pattern(String),
}

impl TimestampFormat {
    /// Translates the Joda letters Hive users write (`yyyy MM dd HH mm ss
    /// SSS Z`, quoted literals); `None` for anything else.
    pub fn parse(format: &str) -> Option<Self> {
        if format == "millis" {
            return Some(TimestampFormat::Millis);
        }
        let mut out = String::new();
        let chars: Vec<char> = format.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let run = chars[i..].iter().take_while(|&&d| d == c).count();
            match (c, run) {
                ('y', 4) | ('Y', 4) => out.push_str("%Y"),
                ('M', 2) => out.push_str("%m"),
                ('d', 2) => out.push_str("%d"),
                ('H', 2) => out.push_str("%H"),
                ('m', 2) => out.push_str("%M"),
                ('s', 2) => out.push_str("%S"),
                ('S', n @ 1..=9) => out.push_str(&format!("%{n}f")),
                ('Z', 1) => out.push_str("%z"),
                ('\'', _) => {
                    let end = chars[i + 1..].iter().position(|&d| d == '\'')? + i + 1;
                    out.extend(&chars[i + 1..end]);
                    i = end + 1;
                    continue;
                }
                (c, _) if !c.is_ascii_alphabetic() => out.extend(std::iter::repeat_n(c, run)),
                _ => return None,
            }
            i += run;
        }
        Some(TimestampFormat::Pattern(out))
    }
}

impl Deserializer {
    fn lenient(&self) -> bool {
        matches!(self, Deserializer::OpenX { .. })
    }

    /// The columns of `table` with the JSON key each is read from, for
    /// [`Deserializer::values`].
    pub fn columns(&self, table: &[(String, HiveType)]) -> Columns {
        let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, (name, _)) in table.iter().enumerate() {
            let json_key = match self {
                Deserializer::OpenX { mappings, .. } => {
                    mappings.get(name).map_or(name.clone(), |k| self.key(k).into_owned())
                }
                Deserializer::Hive { .. } => name.clone(),
            };
            by_key.entry(json_key).or_default().push(i);
        }
        Columns { columns: table.to_vec(), by_key }
    }

    /// The row for one record, each column's value in column order (null
    /// when absent), or why the record cannot be converted (the first
    /// column that does not fit).
    pub fn values(&self, columns: &Columns, bytes: &[u8]) -> Result<Vec<Value>, ConversionError> {
        let mut buffers = RowBuffers::default();
        self.cells(columns, bytes, &mut buffers)?;
        Ok(buffers.cells.into_iter().map(Cell::into_value).collect())
    }

    /// The row for one record into `buffers.cells`, each column's value in
    /// column order, or why the record cannot be converted (the first
    /// column that does not fit; the cells are then not a row).
    ///
    /// Each key of the record is matched against the columns' keys as the
    /// record is parsed, and values no column reads are skipped: building a
    /// map of the record, one of its keys and one of the row cost more than
    /// reading the record.
    pub fn cells<'r>(
        &self,
        columns: &Columns,
        bytes: &'r [u8],
        buffers: &mut RowBuffers<'r>,
    ) -> Result<(), ConversionError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ConversionError {
                code: MALFORMED_DATA,
                message: "The record was empty or contained only whitespace.".to_owned(),
            });
        }
        let mut parser = serde_json::Deserializer::from_slice(bytes);
        let object = RowSeed { deserializer: self, columns, slots: &mut buffers.slots }
            .deserialize(&mut parser)
            .and_then(|object| parser.end().map(|()| object))
            .map_err(|e| ConversionError { code: PARSE_ERROR, message: format!("Encountered malformed JSON. {e}") })?;
        if !object {
            return Err(malformed("A JSON object was expected for a row"));
        }
        buffers.cells.clear();
        for ((name, ty), slot) in columns.columns.iter().zip(buffers.slots.drain(..)) {
            let cell = match slot {
                None | Some((_, Cell::Json(Value::Null))) => Cell::Json(Value::Null),
                Some((_, raw)) => self.cell(raw, ty).map_err(|detail| malformed(format!("column {name}: {detail}")))?,
            };
            buffers.cells.push(cell);
        }
        Ok(())
    }

    /// A top-level value as [`Deserializer::value`] reads it, with the text
    /// of string and timestamp columns read where it lies in the record.
    fn cell<'r>(&self, raw: Cell<'r>, ty: &HiveType) -> Result<Cell<'r>, String> {
        match (raw, ty) {
            (Cell::Text(text), HiveType::String) => Ok(Cell::Text(text)),
            (Cell::Text(text), HiveType::Varchar(n)) if text.chars().nth(*n as usize).is_none() => Ok(Cell::Text(text)),
            (Cell::Text(text), HiveType::Timestamp) => {
                self.timestamp_text(&text).map(|micros| Cell::Json(Value::Number(micros.into())))
            }
            (raw, ty) => self.value(raw.into_value(), ty).map(Cell::Json),
        }
    }

    /// The row for one record as an object of column names: each column's
    /// value (null when absent), or why the record cannot be converted.
    pub fn row(&self, columns: &[(String, HiveType)], bytes: &[u8]) -> Result<Map<String, Value>, ConversionError> {
        let values = self.values(&self.columns(columns), bytes)?;
        Ok(columns.iter().map(|(name, _)| name.clone()).zip(values).collect())
    }

    /// A JSON key as columns are matched against it (borrowed when it
    /// already is).
    fn key<'k>(&self, key: &'k str) -> Cow<'k, str> {
        let (lower, dots) = match self {
            Deserializer::OpenX { case_insensitive, dots_to_underscores, .. } => {
                (*case_insensitive, *dots_to_underscores)
            }
            // Hive column names are lower case; so are the keys it matches.
            Deserializer::Hive { .. } => (true, false),
        };
        let dotted = dots && key.contains('.');
        let upper = lower && key.bytes().any(|b| b.is_ascii_uppercase());
        if !dotted && !upper {
            return Cow::Borrowed(key);
        }
        let key = if dotted { key.replace('.', "_") } else { key.to_owned() };
        Cow::Owned(if lower { key.to_ascii_lowercase() } else { key })
    }

    /// One value in the form the column builders read for `ty`; taken
    /// by value, so strings and nested values move instead of being copied.
    fn value(&self, value: Value, ty: &HiveType) -> Result<Value, String> {
        let lenient = self.lenient();
        match ty {
            HiveType::String | HiveType::Varchar(_) | HiveType::Char(_) => {
                let text = match value {
                    Value::String(s) => s,
                    Value::Number(_) | Value::Bool(_) => value.to_string(),
                    _ if lenient => value.to_string(),
                    _ => return Err(format!("a string was expected, got {}", kind(&value))),
                };
                Ok(Value::String(match ty {
                    HiveType::Varchar(n) => text.chars().take(*n as usize).collect(),
                    HiveType::Char(n) => format!("{text:<width$.width$}", width = *n as usize),
                    _ => text,
                }))
            }
            HiveType::Boolean => match &value {
                Value::Bool(_) => Ok(value),
                Value::String(s) if lenient && s.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
                Value::String(s) if lenient && s.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
                _ => Err(format!("a boolean was expected, got {}", kind(&value))),
            },
            HiveType::TinyInt => integer(&value, lenient, i8::MIN.into(), i8::MAX.into()),
            HiveType::SmallInt => integer(&value, lenient, i16::MIN.into(), i16::MAX.into()),
            HiveType::Int => integer(&value, lenient, i32::MIN.into(), i32::MAX.into()),
            HiveType::BigInt => integer(&value, lenient, i64::MIN, i64::MAX),
            HiveType::Float | HiveType::Double => {
                let f = number(&value, lenient)?;
                Number::from_f64(f).map(Value::Number).ok_or_else(|| format!("{f} is not a finite number"))
            }
            HiveType::Decimal(p, s) => decimal(&value, lenient, *p, *s),
            HiveType::Date => match &value {
                Value::String(s) => NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d")
                    .map(|d| Value::String(d.to_string()))
                    .map_err(|_| format!("For input string: {s:?} (a date is yyyy-MM-dd)")),
                _ => Err(format!("a date string was expected, got {}", kind(&value))),
            },
            HiveType::Timestamp => self.timestamp(&value).map(|micros| Value::Number(micros.into())),
            HiveType::Binary => match &value {
                Value::String(s) => {
                    let bytes = BASE64.decode(s).unwrap_or_else(|_| s.as_bytes().to_vec());
                    Ok(Value::String(bytes.iter().map(|b| format!("{b:02x}")).collect()))
                }
                _ => Err(format!("a base64 string was expected for binary, got {}", kind(&value))),
            },
            HiveType::Array(inner) => match value {
                Value::Array(items) => {
                    items.into_iter().map(|v| self.nullable(v, inner)).collect::<Result<Vec<_>, _>>().map(Value::Array)
                }
                // OpenX promotes a scalar to a one-element array.
                _ if lenient => Ok(Value::Array(vec![self.nullable(value, inner)?])),
                _ => Err("java.io.IOException: Start of Array expected".to_owned()),
            },
            HiveType::Map(key_ty, value_ty) => match value {
                Value::Object(map) => {
                    let mut out = Map::new();
                    for (k, v) in map {
                        let key = match self.value(Value::String(k), key_ty)? {
                            Value::String(s) => s,
                            other => other.to_string(),
                        };
                        out.insert(key, self.nullable(v, value_ty)?);
                    }
                    Ok(Value::Object(out))
                }
                _ => Err(format!("a JSON object was expected for a map, got {}", kind(&value))),
            },
            HiveType::Struct(fields) => match value {
                Value::Object(map) => {
                    // In key order; of keys that match alike the last one wins.
                    let mut slots: Vec<Option<Value>> = vec![None; fields.len()];
                    for (key, v) in map {
                        let key = self.key(&key);
                        if let Some(i) = fields.iter().position(|(name, _)| *name == *key) {
                            slots[i] = Some(v);
                        }
                    }
                    let mut out = Map::new();
                    for ((name, ty), v) in fields.iter().zip(slots) {
                        let v = v.map_or(Ok(Value::Null), |v| self.nullable(v, ty))?;
                        out.insert(name.clone(), v);
                    }
                    Ok(Value::Object(out))
                }
                _ => Err(format!("a JSON object was expected for a struct, got {}", kind(&value))),
            },
        }
    }

    fn nullable(&self, value: Value, ty: &HiveType) -> Result<Value, String> {
        if value.is_null() {
            Ok(Value::Null)
        } else {
            self.value(value, ty)
        }
    }

    /// Microseconds since the epoch (timestamps have no zone in Hive).
    fn timestamp(&self, value: &Value) -> Result<i64, String> {
        match (self, value) {
            (Deserializer::OpenX { .. }, Value::Number(n)) => {
                let f = n.as_f64().ok_or("not a number")?;
                // Epoch seconds below 1e12 (fractions allowed), else millis.
                Ok(if f.abs() < 1e12 { (f * 1e6).round() as i64 } else { (f * 1e3).round() as i64 })
            }
            (_, Value::String(s)) => self.timestamp_text(s),
            (Deserializer::Hive { timestamp_formats }, Value::Number(n))
                if timestamp_formats.contains(&TimestampFormat::Millis) =>
            {
                n.as_i64().map(|ms| ms * 1000).ok_or_else(|| format!("{n} is not epoch milliseconds"))
            }
            _ => Err(format!("a timestamp was expected, got {}", kind(value))),
        }
    }

    /// A timestamp written as text, in microseconds since the epoch.
    fn timestamp_text(&self, s: &str) -> Result<i64, String> {
        match self {
            Deserializer::OpenX { .. } => openx_timestamp(s),
            Deserializer::Hive { timestamp_formats } => {
                for format in timestamp_formats {
                    let parsed = match format {
                        TimestampFormat::Millis => s.parse::<i64>().ok().map(|ms| ms * 1000),
                        TimestampFormat::Pattern(p) => DateTime::parse_from_str(s, p)
                            .map(|t| t.timestamp_micros())
                            .or_else(|_| NaiveDateTime::parse_from_str(s, p).map(|t| t.and_utc().timestamp_micros()))
                            .ok(),
                    };
                    if let Some(micros) = parsed {
                        return Ok(micros);
                    }
                }
                sql_timestamp(s)
                    .ok_or_else(|| format!("Timestamp format must be yyyy-mm-dd hh:mm:ss[.fffffffff]; got {s:?}"))
            }
        }
    }
}

/// OpenX's forms: `yyyy-MM-dd'T'HH:mm:ss[.S]'Z'` (up to 9 fraction digits;
/// a numeric offset is refused), `yyyy-[M]M-[d]d HH:mm:ss[.S]`, and epoch
/// seconds or millis as text.
fn openx_timestamp(s: &str) -> Result<i64, String> {
    if let Ok(n) = s.parse::<f64>() {
        return Ok(if n.abs() < 1e12 { (n * 1e6).round() as i64 } else { (n * 1e3).round() as i64 });
    }
    static ISO: LazyLock<Vec<Item<'static>>> = LazyLock::new(|| StrftimeItems::new("%Y-%m-%dT%H:%M:%S%.f").collect());
    if let Some(body) = s.strip_suffix('Z').filter(|b| b.contains('T')) {
        if let Some(micros) = parse_micros(body, &ISO) {
            return Ok(micros);
        }
    }
    sql_timestamp(s).ok_or_else(|| format!("Cannot parse timestamp {s:?}"))
}

/// `java.sql.Timestamp.valueOf`: `yyyy-[m]m-[d]d hh:mm:ss[.f...]`.
fn sql_timestamp(s: &str) -> Option<i64> {
    static SQL: LazyLock<Vec<Item<'static>>> = LazyLock::new(|| StrftimeItems::new("%Y-%m-%d %H:%M:%S%.f").collect());
    parse_micros(s, &SQL)
}

/// `NaiveDateTime::parse_from_str` with the format read once: reading it
/// for every record was a visible share of Parquet conversion.
fn parse_micros(s: &str, items: &[Item<'static>]) -> Option<i64> {
    let mut parsed = Parsed::new();
    chrono::format::parse(&mut parsed, s, items.iter()).ok()?;
    parsed.to_naive_datetime_with_offset(0).ok().map(|t| t.and_utc().timestamp_micros())
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn number(value: &Value, lenient: bool) -> Result<f64, String> {
    match value {
        Value::Number(n) => n.as_f64().ok_or_else(|| format!("{n} is not a number")),
        Value::String(s) if lenient => s.trim().parse().map_err(|_| format!("For input string: {s:?}")),
        Value::String(_) => Err("Current token (VALUE_STRING) not numeric".to_owned()),
        _ => Err(format!("a number was expected, got {}", kind(value))),
    }
}

fn integer(value: &Value, lenient: bool, min: i64, max: i64) -> Result<Value, String> {
    let n = match value {
        Value::Number(n) => n.as_i64().ok_or_else(|| format!("For input string: \"{n}\""))?,
        Value::String(s) if lenient => s.trim().parse::<i64>().map_err(|_| format!("For input string: {s:?}"))?,
        Value::String(_) => return Err("Current token (VALUE_STRING) not numeric".to_owned()),
        _ => return Err(format!("an integer was expected, got {}", kind(value))),
    };
    if n < min || n > max {
        return Err(format!("Numeric value ({n}) out of range ({min} to {max})"));
    }
    Ok(Value::Number(n.into()))
}

/// A decimal as text with exactly `scale` fraction digits (rounded half up,
/// as HiveDecimal does), refused when its integer part needs more than
/// `precision - scale` digits.
fn decimal(value: &Value, lenient: bool, precision: u8, scale: i8) -> Result<Value, String> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) if lenient => s.trim().to_owned(),
        _ => return Err(format!("a decimal number was expected, got {}", kind(value))),
    };
    let scale = scale.max(0) as usize;
    let plain = if text.contains(['e', 'E']) {
        let f: f64 = text.parse().map_err(|_| format!("For input string: {text:?}"))?;
        format!("{f:.scale$}")
    } else {
        text.clone()
    };
    let (negative, digits) = plain.strip_prefix('-').map_or((false, plain.as_str()), |d| (true, d));
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
        return Err(format!("For input string: {text:?}"));
    }
    let mut units: u128 = format!("{int}{:0<scale$}", &frac[..frac.len().min(scale)])
        .parse()
        .map_err(|_| format!("For input string: {text:?}"))?;
    if frac.as_bytes().get(scale).is_some_and(|d| *d >= b'5') {
        units += 1;
    }
    let digits = units.to_string();
    let int_digits = digits.len().saturating_sub(scale);
    if int_digits > (precision as usize - scale) {
        return Err(format!("{text} does not fit decimal({precision},{scale})"));
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (i, f) = padded.split_at(padded.len() - scale);
    let sign = if negative && units != 0 { "-" } else { "" };
    Ok(Value::String(if scale == 0 { format!("{sign}{i}") } else { format!("{sign}{i}.{f}") }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn openx() -> Deserializer {
        Deserializer::OpenX { case_insensitive: true, dots_to_underscores: false, mappings: BTreeMap::new() }
    }

    fn hive() -> Deserializer {
        Deserializer::Hive { timestamp_formats: vec![] }
    }

    fn columns() -> Vec<(String, HiveType)> {
        [
            ("id", "bigint"),
            ("name", "string"),
            ("price", "decimal(10,2)"),
            ("at", "timestamp"),
            ("tags", "array<string>"),
            ("attrs", "map<string,int>"),
            ("item", "struct<sku:string,qty:int>"),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_owned(), HiveType::parse(t).unwrap()))
        .collect()
    }

    #[test]
    fn openx_coerces_and_matches_keys_case_insensitively() {
        let row = openx()
            .row(
                &columns(),
                br#"{"ID": "42", "Name": {"first": "a"}, "price": 19.999, "at": "2026-07-13T14:00:00.123456789Z", "tags": "one", "attrs": {"x": 1}, "item": {"SKU": "s", "qty": "2"}, "extra": true}"#,
            )
            .unwrap();
        assert_eq!(
            Value::Object(row),
            json!({
                "id": 42, "name": "{\"first\":\"a\"}", "price": "20.00",
                "at": 1_783_951_200_123_456i64, "tags": ["one"], "attrs": {"x": 1},
                "item": {"sku": "s", "qty": 2}
            })
        );
    }

    #[test]
    fn openx_reads_epoch_seconds_and_millis_and_refuses_offsets() {
        let cols = vec![("at".to_owned(), HiveType::Timestamp)];
        let at = |v: Value| openx().row(&cols, v.to_string().as_bytes()).map(|r| r["at"].clone());
        assert_eq!(at(json!({"at": 1_783_951_200})).unwrap(), json!(1_783_951_200_000_000i64));
        assert_eq!(at(json!({"at": 1_783_951_200_500i64})).unwrap(), json!(1_783_951_200_500_000i64));
        assert_eq!(at(json!({"at": "2026-7-3 04:05:06"})).unwrap(), json!(1_783_051_506_000_000i64));
        assert_eq!(at(json!({"at": "2026-07-13T14:00:00+00:00"})).unwrap_err().code, MALFORMED_DATA);
    }

    #[test]
    fn hive_is_strict() {
        for record in [
            json!({"id": "42"}),
            json!({"name": {"nested": 1}}),
            json!({"tags": "one"}),
            json!({"at": "2026-07-13T14:00:00Z"}),
        ] {
            let error = hive().row(&columns(), record.to_string().as_bytes()).unwrap_err();
            assert_eq!(error.code, MALFORMED_DATA, "{record}");
            assert!(error.message.starts_with("Data does not match the schema."), "{}", error.message);
        }
        let millis = Deserializer::Hive { timestamp_formats: vec![TimestampFormat::Millis] };
        let row = millis.row(&columns(), br#"{"at": "1783951200000"}"#).unwrap();
        assert_eq!(row["at"], json!(1_783_951_200_000_000i64));
    }

    #[test]
    fn failures_carry_firehose_s_codes() {
        assert_eq!(
            openx().row(&columns(), b"  ").unwrap_err().message,
            "The record was empty or contained only whitespace."
        );
        assert_eq!(openx().row(&columns(), b"{not json").unwrap_err().code, PARSE_ERROR);
        assert_eq!(openx().row(&columns(), br#"{"id": "oops"}"#).unwrap_err().code, MALFORMED_DATA);
        assert_eq!(openx().row(&columns(), br#"{"price": 123456789.5}"#).unwrap_err().code, MALFORMED_DATA);
        let row = openx().row(&columns(), b"{}").unwrap();
        assert!(row.values().all(Value::is_null), "missing fields are null");
    }

    /// Keys are matched while the record is parsed; which of several
    /// matching keys wins is as when the record was read into a map first.
    #[test]
    fn of_keys_that_match_alike_the_last_in_key_order_wins() {
        let id = |record: &str| openx().row(&columns(), record.as_bytes()).unwrap()["id"].clone();
        assert_eq!(id(r#"{"ID": 1, "id": 2}"#), json!(2));
        assert_eq!(id(r#"{"id": 2, "ID": 1}"#), json!(2));
        assert_eq!(id(r#"{"id": 1, "id": 3}"#), json!(3));
        assert_eq!(id(r#"{"Id": 5, "unread": {"deep": [1, {"x": null}]}}"#), json!(5));
        let qty = openx().row(&columns(), br#"{"item": {"QTY": 1, "qty": 4}}"#).unwrap()["item"]["qty"].clone();
        assert_eq!(qty, json!(4));
        for record in [&b"[1, 2]"[..], b"\"text\"", b"12", b"null"] {
            let error = openx().row(&columns(), record).unwrap_err();
            assert_eq!(error.message, "Data does not match the schema. A JSON object was expected for a row");
        }
        for record in [&br#"{"id": tru}"#[..], br#"{"unread": [1,}"#, br#"{"id": 1} x"#] {
            assert_eq!(
                openx().row(&columns(), record).unwrap_err().code,
                PARSE_ERROR,
                "{}",
                String::from_utf8_lossy(record)
            );
        }
    }

    /// Text is read where it lies in the record unless it must change:
    /// varchar truncates, char pads, escapes are unescaped.
    #[test]
    fn varchar_truncates_and_char_pads_text_read_from_the_record() {
        let cols: Vec<(String, HiveType)> = [("v", "varchar(3)"), ("c", "char(4)"), ("s", "string")]
            .into_iter()
            .map(|(n, t)| (n.to_owned(), HiveType::parse(t).unwrap()))
            .collect();
        let row = |record: &str| Value::Object(openx().row(&cols, record.as_bytes()).unwrap());
        assert_eq!(row(r#"{"v": "abcdef", "c": "x", "s": "as is"}"#), json!({"v": "abc", "c": "x   ", "s": "as is"}));
        assert_eq!(row(r#"{"v": "ab", "c": "abcdef"}"#), json!({"v": "ab", "c": "abcd", "s": null}));
        assert_eq!(
            row(r#"{"v": "a\u00e9\u00e9\u00e9", "s": "tab\tquote\""}"#),
            json!({"v": "a\u{e9}\u{e9}", "c": null, "s": "tab\tquote\""})
        );
        assert_eq!(row(r#"{"v": 12345, "s": 1.5}"#), json!({"v": "123", "c": null, "s": "1.5"}));
    }

    #[test]
    fn joda_patterns_translate_and_unknown_letters_are_refused() {
        assert_eq!(
            TimestampFormat::parse("yyyy-MM-dd'T'HH:mm:ss.SSS"),
            Some(TimestampFormat::Pattern("%Y-%m-%dT%H:%M:%S.%3f".into()))
        );
        assert_eq!(TimestampFormat::parse("millis"), Some(TimestampFormat::Millis));
        assert_eq!(TimestampFormat::parse("EEE, dd MMM yyyy"), None);
    }
}
