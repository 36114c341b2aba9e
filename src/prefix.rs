//! Firehose prefix expressions: `!{namespace:value}` inside `Prefix` and
//! `ErrorOutputPrefix`, and the object keys built from them.
//!
//! Parsing happens once, when the spec is validated, so a bad pattern is
//! rejected before anything starts; rendering happens per object and cannot
//! fail on a well-formed template except for the 512-character limit.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;

/// A parsed prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Timestamp(DatePattern),
    RandomString,
    ErrorOutputType,
    PartitionKeyFromQuery(String),
    PartitionKeyFromLambda(String),
}

/// Why a prefix does not parse. Messages name the offending text so the user
/// can find it in a 1024-character prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("expression starting at character {position} is not closed with `}}`")]
    Unclosed { position: usize },
    #[error("`!{{` at character {position} is inside another expression; `!{{` may appear only as the start of an expression")]
    Nested { position: usize },
    #[error("expression `!{{{expression}}}` has no namespace; the form is `!{{namespace:value}}`")]
    MissingNamespace { expression: String },
    #[error("unknown namespace `{namespace}` in `!{{{expression}}}`; valid namespaces are timestamp, firehose, partitionKeyFromQuery and partitionKeyFromLambda")]
    UnknownNamespace { namespace: String, expression: String },
    #[error("`!{{firehose:{value}}}` is not a firehose expression; use `random-string` or `error-output-type`")]
    UnknownFirehoseValue { value: String },
    #[error("`!{{{namespace}:}}` needs a key name after the colon")]
    EmptyKey { namespace: String },
    #[error("invalid timestamp pattern `{pattern}`: {reason}")]
    Pattern { pattern: String, reason: String },
}

/// Why a key cannot be built from a well-formed template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("evaluated prefix is {length} characters; Firehose allows at most 512")]
    TooLong { length: usize },
    #[error("no value for partition key `{0}`")]
    MissingPartitionKey(String),
}

/// Longest evaluated prefix Firehose accepts.
pub const MAX_EVALUATED_PREFIX: usize = 512;

/// What an expression evaluates against.
pub struct RenderContext<'a> {
    /// The one instant every timestamp expression in the key uses.
    pub instant: DateTime<Utc>,
    pub time_zone: Tz,
    /// Source of `!{firehose:random-string}`, called once per occurrence.
    pub random_string: &'a mut dyn FnMut() -> String,
    pub error_output_type: Option<&'a str>,
    pub partition_key: &'a dyn Fn(&str) -> Option<String>,
}

impl Template {
    pub fn parse(source: &str) -> Result<Self, PrefixError> {
        let mut segments = Vec::new();
        let mut rest = source;
        let mut offset = 0;
        while let Some(start) = rest.find("!{") {
            if start > 0 {
                segments.push(Segment::Literal(rest[..start].to_owned()));
            }
            let body_start = start + 2;
            let close = rest[body_start..].find('}').ok_or(PrefixError::Unclosed { position: offset + start })?;
            let body = &rest[body_start..body_start + close];
            if let Some(nested) = body.find("!{") {
                return Err(PrefixError::Nested { position: offset + body_start + nested });
            }
            segments.push(parse_expression(body)?);
            let consumed = body_start + close + 1;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Literal(rest.to_owned()));
        }
        Ok(Self { segments })
    }

    /// A template that is just `!{timestamp:PATTERN}`.
    pub fn timestamp(pattern: &str) -> Self {
        let pattern = DatePattern::parse(pattern).expect("built-in patterns are valid");
        Self { segments: vec![Segment::Timestamp(pattern)] }
    }

    /// Plain concatenation, as Firehose appends the default time prefix: no
    /// `/` is inserted between the two.
    pub fn concat(mut self, other: Template) -> Self {
        self.segments.extend(other.segments);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    pub fn has_expressions(&self) -> bool {
        self.segments.iter().any(|s| !matches!(s, Segment::Literal(_)))
    }

    pub fn has_timestamp(&self) -> bool {
        self.segments.iter().any(|s| matches!(s, Segment::Timestamp(_)))
    }

    pub fn has_error_output_type(&self) -> bool {
        self.segments.iter().any(|s| matches!(s, Segment::ErrorOutputType))
    }

    pub fn has_partition_keys(&self) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::PartitionKeyFromQuery(_) | Segment::PartitionKeyFromLambda(_)))
    }

    pub fn has_query_keys(&self) -> bool {
        self.segments.iter().any(|s| matches!(s, Segment::PartitionKeyFromQuery(_)))
    }

    pub fn has_lambda_keys(&self) -> bool {
        self.segments.iter().any(|s| matches!(s, Segment::PartitionKeyFromLambda(_)))
    }

    /// The evaluated length when it cannot vary (no random strings, no
    /// partition keys, timestamps of fixed width), else `None`.
    pub fn fixed_evaluated_length(&self) -> Option<usize> {
        if self
            .segments
            .iter()
            .any(|s| !matches!(s, Segment::Literal(_) | Segment::Timestamp(_) | Segment::ErrorOutputType))
        {
            return None;
        }
        // The longest error-output-type Firehose uses, and an instant whose
        // month and weekday names are the longest (Wednesday, September).
        let mut random = String::new;
        let mut ctx = RenderContext {
            instant: chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2027, 9, 29, 23, 59, 59).unwrap(),
            time_zone: Tz::UTC,
            random_string: &mut random,
            error_output_type: Some("format-conversion-failed"),
            partition_key: &|_| None,
        };
        match self.render(&mut ctx) {
            Ok(s) => Some(s.chars().count()),
            Err(RenderError::TooLong { length }) => Some(length),
            Err(_) => None,
        }
    }

    pub fn render(&self, ctx: &mut RenderContext<'_>) -> Result<String, RenderError> {
        let local = ctx.instant.with_timezone(&ctx.time_zone);
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Timestamp(pattern) => pattern.format_into(&local, &mut out),
                Segment::RandomString => out.push_str(&(ctx.random_string)()),
                Segment::ErrorOutputType => out.push_str(ctx.error_output_type.unwrap_or("")),
                Segment::PartitionKeyFromQuery(key) | Segment::PartitionKeyFromLambda(key) => {
                    let value =
                        (ctx.partition_key)(key).ok_or_else(|| RenderError::MissingPartitionKey(key.clone()))?;
                    out.push_str(&value);
                }
            }
        }
        let length = out.chars().count();
        if length > MAX_EVALUATED_PREFIX {
            return Err(RenderError::TooLong { length });
        }
        Ok(out)
    }
}

/// What a part of a key matched by a [`KeyPattern`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPart {
    /// A `!{timestamp:...}` expression or the suffix time.
    Time,
    /// `!{firehose:random-string}`.
    RandomString,
    /// The suffix uuid.
    Uuid,
    /// `!{firehose:error-output-type}`.
    ErrorOutputType,
    /// A dynamic-partitioning key.
    PartitionKey,
    /// The stream version in the suffix.
    Version,
}

/// A regex matching every key a template can produce with a given suffix,
/// with a capture group per variable part: used to tell which stream an
/// object belongs to, to check that keys have AWS's shape, and to mask the
/// parts of keys that differ between identical runs.
#[derive(Debug, Clone)]
pub struct KeyPattern {
    regex: regex::Regex,
    /// The kind of each capture group, in order, with its pattern text for
    /// times (shown when masked).
    parts: Vec<(KeyPart, String)>,
}

/// The `<error-output-type>` values Firehose writes.
pub const ERROR_OUTPUT_TYPES: &[&str] =
    &["processing-failed", "metadata-extraction-failed", "format-conversion-failed"];

impl KeyPattern {
    /// Keys `<template><stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<uuid><extension>`.
    pub fn new(template: &Template, stream: &str, extension: &str) -> Self {
        let mut regex = String::from("^");
        let mut parts = Vec::new();
        let mut group = |regex: &mut String, part: KeyPart, label: &str, inner: &str| {
            regex.push_str(&format!("({inner})"));
            parts.push((part, label.to_owned()));
        };
        for segment in &template.segments {
            match segment {
                Segment::Literal(text) => regex.push_str(&regex::escape(text)),
                Segment::Timestamp(pattern) => group(&mut regex, KeyPart::Time, &pattern.source(), &pattern.regex()),
                Segment::RandomString => group(&mut regex, KeyPart::RandomString, "random", "[A-Za-z0-9]{11}"),
                Segment::ErrorOutputType => {
                    let types: Vec<String> = ERROR_OUTPUT_TYPES.iter().map(|t| regex::escape(t)).collect();
                    group(&mut regex, KeyPart::ErrorOutputType, "error-output-type", &types.join("|"))
                }
                Segment::PartitionKeyFromQuery(key) | Segment::PartitionKeyFromLambda(key) => {
                    group(&mut regex, KeyPart::PartitionKey, key, ".+?")
                }
            }
        }
        regex.push_str(&regex::escape(stream));
        regex.push('-');
        group(&mut regex, KeyPart::Version, "version", r"[1-9]\d*");
        regex.push('-');
        group(&mut regex, KeyPart::Time, "yyyy-MM-dd-HH-mm-ss", r"\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}");
        regex.push('-');
        group(&mut regex, KeyPart::Uuid, "uuid", "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
        regex.push_str(&regex::escape(extension));
        regex.push('$');
        Self { regex: regex::Regex::new(&regex).expect("key patterns are valid regexes"), parts }
    }

    pub fn is_match(&self, key: &str) -> bool {
        self.regex.is_match(key)
    }

    /// The variable parts of `key` with their byte ranges, if it matches.
    pub fn parts(&self, key: &str) -> Option<Vec<(KeyPart, &str, std::ops::Range<usize>)>> {
        let caps = self.regex.captures(key)?;
        Some(
            self.parts
                .iter()
                .enumerate()
                .filter_map(|(i, (part, label))| caps.get(i + 1).map(|m| (*part, label.as_str(), m.range())))
                .collect(),
        )
    }
}

fn parse_expression(body: &str) -> Result<Segment, PrefixError> {
    let (namespace, value) =
        body.split_once(':').ok_or_else(|| PrefixError::MissingNamespace { expression: body.to_owned() })?;
    match namespace {
        "timestamp" => Ok(Segment::Timestamp(DatePattern::parse(value)?)),
        "firehose" => match value {
            "random-string" => Ok(Segment::RandomString),
            "error-output-type" => Ok(Segment::ErrorOutputType),
            _ => Err(PrefixError::UnknownFirehoseValue { value: value.to_owned() }),
        },
        "partitionKeyFromQuery" | "partitionKeyFromLambda" if value.is_empty() => {
            Err(PrefixError::EmptyKey { namespace: namespace.to_owned() })
        }
        "partitionKeyFromQuery" => Ok(Segment::PartitionKeyFromQuery(value.to_owned())),
        "partitionKeyFromLambda" => Ok(Segment::PartitionKeyFromLambda(value.to_owned())),
        _ => Err(PrefixError::UnknownNamespace { namespace: namespace.to_owned(), expression: body.to_owned() }),
    }
}

/// A Java `DateTimeFormatter` pattern, the subset people put in prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatePattern {
    items: Vec<PatternItem>,
}

impl DatePattern {
    /// The pattern as written.
    pub fn source(&self) -> String {
        let mut out = String::new();
        for item in &self.items {
            match item {
                PatternItem::Literal(text) if text.chars().any(|c| c.is_ascii_alphabetic() || c == '\'') => {
                    out.push('\'');
                    out.push_str(&text.replace('\'', "''"));
                    out.push('\'');
                }
                PatternItem::Literal(text) => out.push_str(text),
                PatternItem::Field { letter, width } => out.extend(std::iter::repeat_n(*letter, *width)),
            }
        }
        out
    }

    /// A regex matching everything this pattern formats to.
    pub fn regex(&self) -> String {
        let mut out = String::new();
        for item in &self.items {
            match item {
                PatternItem::Literal(text) => out.push_str(&regex::escape(text)),
                PatternItem::Field { letter, width } => out.push_str(&field_regex(*letter, *width)),
            }
        }
        out
    }
}

/// A regex for what one pattern field formats to.
fn field_regex(letter: char, width: usize) -> String {
    match (letter, width) {
        ('y' | 'u', 2) => r"\d{2}".into(),
        ('y' | 'u', w) => format!(r"-?\d{{{w},}}"),
        ('M', 3) | ('E', 1..=3) => "[A-Za-z]{3}".into(),
        ('M', 4) | ('E', 4) => "[A-Za-z]+".into(),
        ('M', 5) | ('E', 5) => "[A-Za-z]".into(),
        ('a', _) => "(?:AM|PM)".into(),
        ('S', w) => format!(r"\d{{{w}}}"),
        ('D', 1) => r"\d{1,3}".into(),
        ('D', 2) => r"\d{2,3}".into(),
        (_, 1) => r"\d{1,2}".into(),
        (_, w) => format!(r"\d{{{w}}}"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternItem {
    Literal(String),
    Field { letter: char, width: usize },
}

/// Letters accepted, with the widest run Java allows for each.
const SUPPORTED_LETTERS: &[(char, usize)] = &[
    ('y', 19),
    ('u', 19),
    ('M', 5),
    ('d', 2),
    ('H', 2),
    ('h', 2),
    ('m', 2),
    ('s', 2),
    ('S', 9),
    ('a', 1),
    ('E', 5),
    ('D', 3),
    ('w', 2),
];

impl DatePattern {
    pub fn parse(pattern: &str) -> Result<Self, PrefixError> {
        let fail = |reason: String| PrefixError::Pattern { pattern: pattern.to_owned(), reason };
        let chars: Vec<char> = pattern.chars().collect();
        let mut items = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                // `''` is a quote; otherwise text up to the next lone quote.
                if chars.get(i + 1) == Some(&'\'') {
                    literal.push('\'');
                    i += 2;
                    continue;
                }
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(fail("quoted text is not closed with `'`".into())),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            literal.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&other) => {
                            literal.push(other);
                            i += 1;
                        }
                    }
                }
            } else if c.is_ascii_alphabetic() {
                let width = chars[i..].iter().take_while(|&&x| x == c).count();
                let Some(&(_, max)) = SUPPORTED_LETTERS.iter().find(|(l, _)| *l == c) else {
                    return Err(fail(format!(
                        "pattern letter `{c}` is not supported; supported letters are y u M d H h m s S a E D w, and text in single quotes is literal"
                    )));
                };
                if width > max {
                    return Err(fail(format!("too many pattern letters `{c}`: at most {max}")));
                }
                if !literal.is_empty() {
                    items.push(PatternItem::Literal(std::mem::take(&mut literal)));
                }
                items.push(PatternItem::Field { letter: c, width });
                i += width;
            } else if matches!(c, '[' | ']' | '{' | '}' | '#') {
                return Err(fail(format!("`{c}` is reserved in Java date patterns; put it in single quotes")));
            } else {
                literal.push(c);
                i += 1;
            }
        }
        if !literal.is_empty() {
            items.push(PatternItem::Literal(literal));
        }
        Ok(Self { items })
    }

    /// Appends the formatted instant to `out`.
    pub fn format_into<T: Datelike + Timelike>(&self, t: &T, out: &mut String) {
        const MONTHS: [&str; 12] = [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ];
        const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
        for item in &self.items {
            let (letter, width) = match item {
                PatternItem::Literal(text) => {
                    out.push_str(text);
                    continue;
                }
                PatternItem::Field { letter, width } => (*letter, *width),
            };
            let number = |out: &mut String, value: i64| {
                let _ = write!(out, "{value:0width$}");
            };
            match letter {
                'y' | 'u' if width == 2 => number(out, i64::from(t.year()).rem_euclid(100)),
                'y' | 'u' => number(out, i64::from(t.year())),
                'M' => match width {
                    1 | 2 => number(out, i64::from(t.month())),
                    3 => out.push_str(&MONTHS[t.month0() as usize][..3]),
                    4 => out.push_str(MONTHS[t.month0() as usize]),
                    _ => out.push_str(&MONTHS[t.month0() as usize][..1]),
                },
                'd' => number(out, i64::from(t.day())),
                'H' => number(out, i64::from(t.hour())),
                'h' => number(out, i64::from(t.hour12().1)),
                'm' => number(out, i64::from(t.minute())),
                's' => number(out, i64::from(t.second())),
                'S' => {
                    let nanos = format!("{:09}", t.nanosecond() % 1_000_000_000);
                    out.push_str(&nanos[..width]);
                }
                'a' => out.push_str(if t.hour12().0 { "PM" } else { "AM" }),
                'E' => {
                    let name = DAYS[t.weekday().num_days_from_monday() as usize];
                    match width {
                        1..=3 => out.push_str(&name[..3]),
                        4 => out.push_str(name),
                        _ => out.push_str(&name[..1]),
                    }
                }
                'D' => number(out, i64::from(t.ordinal())),
                'w' => number(out, us_week_of_week_based_year(t.year(), t.ordinal0())),
                other => unreachable!("letter {other} passed parse"),
            }
        }
    }
}

/// Java's `w` under `Locale.US` (Firehose's JVM default): weeks start on
/// Sunday and week 1 is the week that contains 1 January.
fn us_week_of_week_based_year(year: i32, ordinal0: u32) -> i64 {
    use chrono::NaiveDate;
    let date = NaiveDate::from_yo_opt(year, ordinal0 + 1).expect("valid ordinal");
    let week_start = |d: NaiveDate| d - chrono::Duration::days(i64::from(d.weekday().num_days_from_sunday()));
    let start = week_start(date);
    let next_jan1 = NaiveDate::from_ymd_opt(year + 1, 1, 1).expect("valid date");
    if start + chrono::Duration::days(6) >= next_jan1 {
        return 1;
    }
    let first = week_start(NaiveDate::from_ymd_opt(year, 1, 1).expect("valid date"));
    (start - first).num_days() / 7 + 1
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use rstest::rstest;

    use super::*;

    fn render(template: &str, instant: DateTime<Utc>) -> String {
        let mut n = 0;
        let mut random = || {
            n += 1;
            format!("rand{n:07}")
        };
        let mut ctx = RenderContext {
            instant,
            time_zone: Tz::UTC,
            random_string: &mut random,
            error_output_type: Some("processing-failed"),
            partition_key: &|k| Some(format!("<{k}>")),
        };
        Template::parse(template).unwrap().render(&mut ctx).unwrap()
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 7, 3, 14, 5, 9).unwrap() + chrono::Duration::milliseconds(42)
    }

    #[rstest]
    #[case("!{timestamp:yyyy/MM/dd/HH/}", "2026/07/03/14/")]
    #[case("year=!{timestamp:yyyy}/month=!{timestamp:MM}/", "year=2026/month=07/")]
    #[case("!{timestamp:'year='yyyy'/'}", "year=2026/")]
    #[case("!{timestamp:yy-M-d h:mm a}", "26-7-3 2:05 PM")]
    #[case("!{timestamp:EEE EEEE MMM MMMM D DDD}", "Fri Friday Jul July 184 184")]
    #[case("!{timestamp:ss.SSS}", "09.042")]
    #[case("!{timestamp:'week='ww}", "week=27")]
    #[case("!{timestamp:'it''s' ''}", "it's '")]
    #[case("plain/", "plain/")]
    #[case("a/!{firehose:random-string}/!{firehose:random-string}/", "a/rand0000001/rand0000002/")]
    #[case("!{firehose:error-output-type}/", "processing-failed/")]
    #[case("c=!{partitionKeyFromQuery:customer_id}/", "c=<customer_id>/")]
    fn renders(#[case] template: &str, #[case] expected: &str) {
        assert_eq!(render(template, at()), expected);
    }

    #[rstest]
    #[case("!{timestamp:yyyy", "not closed")]
    #[case("!{timestamp:!{x}", "inside another expression")]
    #[case("!{yyyy}", "no namespace")]
    #[case("!{time:yyyy}", "unknown namespace `time`")]
    #[case("!{firehose:uuid}", "not a firehose expression")]
    #[case("!{partitionKeyFromQuery:}", "needs a key name")]
    #[case("!{timestamp:Q}", "pattern letter `Q` is not supported")]
    #[case("!{timestamp:ddd}", "too many pattern letters `d`: at most 2")]
    #[case("!{timestamp:'open}", "quoted text is not closed")]
    #[case("!{timestamp:yyyy[MM]}", "`[` is reserved")]
    fn rejects(#[case] template: &str, #[case] message: &str) {
        let err = Template::parse(template).unwrap_err().to_string();
        assert!(err.contains(message), "{template}: {err}");
    }

    /// Java: `DateTimeFormatter.ofPattern("w", Locale.US)`.
    #[rstest]
    #[case(2026, 1, 1, 1)] // Thursday: week 1
    #[case(2026, 1, 4, 2)] // Sunday: a new week
    #[case(2025, 12, 28, 1)] // the week containing 1 Jan 2026
    #[case(2026, 12, 26, 52)]
    #[case(2027, 1, 2, 1)] // Saturday, same week as Sunday 27 Dec 2026
    fn week_of_year_follows_us_rules(#[case] y: i32, #[case] m: u32, #[case] d: u32, #[case] week: i64) {
        let date = chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(us_week_of_week_based_year(date.year(), date.ordinal0()), week);
    }

    #[test]
    fn time_zone_applies_including_dst() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let summer = Utc.with_ymd_and_hms(2026, 7, 3, 22, 30, 0).unwrap();
        let winter = Utc.with_ymd_and_hms(2026, 1, 3, 22, 30, 0).unwrap();
        let template = Template::parse("!{timestamp:yyyy/MM/dd/HH/}").unwrap();
        let mut random = String::new;
        for (instant, expected) in [(summer, "2026/07/04/00/"), (winter, "2026/01/03/23/")] {
            let mut ctx = RenderContext {
                instant,
                time_zone: tz,
                random_string: &mut random,
                error_output_type: None,
                partition_key: &|_| None,
            };
            assert_eq!(template.render(&mut ctx).unwrap(), expected);
        }
    }

    #[test]
    fn evaluated_prefix_over_512_is_an_error() {
        let template = Template::parse(&"x".repeat(513)).unwrap();
        let mut random = String::new;
        let mut ctx = RenderContext {
            instant: at(),
            time_zone: Tz::UTC,
            random_string: &mut random,
            error_output_type: None,
            partition_key: &|_| None,
        };
        assert_eq!(template.render(&mut ctx), Err(RenderError::TooLong { length: 513 }));
    }
}
