//! Firehose prefix expressions: `!{namespace:value}` inside `Prefix` and
//! `ErrorOutputPrefix`, and the object keys built from them. Timestamp
//! patterns are Java's, in [`pattern`].

//!
//! Parsing happens once, when the spec is validated, so a bad pattern is
//! rejected before anything starts; rendering happens per object and cannot
//! fail on a well-formed template except for the 512-character limit.

mod pattern;

pub use pattern::{DatePattern, PatternError};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// A parsed prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
    /// The segments the user gave, which Firehose's 512-character limit
    /// counts; what Firehose adds around them (the default time prefix)
    /// and streamlab's scope prefix are not counted.
    counted: std::ops::Range<usize>,
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
#[non_exhaustive]
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
    #[error("pattern letter `{letter}` in `{pattern}` is refused by Firehose")]
    RefusedLetter { letter: char, pattern: String },
    #[error("invalid timestamp pattern `{pattern}`: {reason} (Java's DateTimeFormatter refuses it)")]
    Pattern { pattern: String, reason: String },
}

/// Why a key cannot be built from a well-formed template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    #[error("evaluated prefix is {length} characters; Firehose allows at most 512")]
    TooLong { length: usize },
    #[error("no value for partition key `{0}`")]
    MissingPartitionKey(String),
}

/// Length of every `!{firehose:random-string}`.
pub const RANDOM_STRING_LENGTH: usize = 11;

/// Longest evaluated prefix Firehose accepts.
pub const MAX_EVALUATED_PREFIX: usize = 512;

/// Where a dynamic-partitioning key comes from: `partitionKeyFromQuery`
/// (the MetadataExtraction query) or `partitionKeyFromLambda` (the
/// `metadata.partitionKeys` a transform function returned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Query,
    Lambda,
}

/// What an expression evaluates against.
pub struct RenderContext<'a> {
    /// The one instant every timestamp expression in the key uses.
    pub instant: DateTime<Utc>,
    pub time_zone: Tz,
    /// Source of `!{firehose:random-string}`, called once per occurrence.
    pub random_string: &'a mut dyn FnMut() -> String,
    pub error_output_type: Option<&'a str>,
    pub partition_key: &'a dyn Fn(KeySource, &str) -> Option<String>,
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
        let counted = 0..segments.len();
        Ok(Self { segments, counted })
    }

    /// A template that is just `!{timestamp:PATTERN}`.
    pub fn timestamp(pattern: &str) -> Self {
        let pattern = DatePattern::parse(pattern).expect("built-in patterns are valid");
        Self { segments: vec![Segment::Timestamp(pattern)], counted: 0..1 }
    }

    /// `self` followed by `suffix` by plain concatenation, as Firehose
    /// appends the default time prefix (no `/` inserted); the suffix does
    /// not count toward the 512-character limit (AWS accepts a 512-character
    /// literal `Prefix`).
    pub fn then_uncounted(mut self, suffix: Template) -> Self {
        self.segments.extend(suffix.segments);
        self
    }

    /// `prefix` followed by `self`, the prefix not counted toward the limit
    /// (a test scope's key prefix).
    pub fn after_uncounted(self, prefix: Template) -> Self {
        let shift = prefix.segments.len();
        let mut segments = prefix.segments;
        segments.extend(self.segments);
        Self { segments, counted: self.counted.start + shift..self.counted.end + shift }
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

    /// Names used in `!{partitionKeyFromQuery:NAME}`.
    pub fn query_keys(&self) -> Vec<&str> {
        self.segments
            .iter()
            .filter_map(|s| match s {
                Segment::PartitionKeyFromQuery(key) => Some(key.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn has_lambda_keys(&self) -> bool {
        self.segments.iter().any(|s| matches!(s, Segment::PartitionKeyFromLambda(_)))
    }

    /// The longest the template can evaluate to when nothing but time varies
    /// (no partition keys; random strings are always 11 characters): the most
    /// over instants that give every month, weekday, day period and
    /// daylight-saving state its turn, in `zone`. `None` with partition keys.
    pub fn fixed_evaluated_length(&self, zone: Tz) -> Option<usize> {
        if self.has_partition_keys() {
            return None;
        }
        let mut longest = 0;
        for month in 1..=12 {
            for (day, hour) in [(9, 0), (10, 12), (11, 7), (12, 15), (13, 19), (14, 23), (15, 3)] {
                // Random strings are always 11 characters.
                let mut random = || "r".repeat(11);
                let mut ctx = RenderContext {
                    instant: chrono::TimeZone::with_ymd_and_hms(&Utc, 2027, month, day, hour, 59, 59).unwrap(),
                    time_zone: zone,
                    random_string: &mut random,
                    // The longest error-output-type Firehose uses.
                    error_output_type: Some("metadata-extraction-failed"),
                    partition_key: &|_, _| None,
                };
                let length = match self.render_counted(&mut ctx) {
                    Ok((_, length)) => length,
                    Err(_) => return None,
                };
                longest = longest.max(length);
            }
        }
        Some(longest)
    }

    /// The evaluated prefix, refused when what counts of it is over
    /// Firehose's 512 characters.
    pub fn render(&self, ctx: &mut RenderContext<'_>) -> Result<String, RenderError> {
        let (out, length) = self.render_counted(ctx)?;
        if length > MAX_EVALUATED_PREFIX {
            return Err(RenderError::TooLong { length });
        }
        Ok(out)
    }

    /// The evaluated prefix and its length as Firehose's limit counts it.
    fn render_counted(&self, ctx: &mut RenderContext<'_>) -> Result<(String, usize), RenderError> {
        let local = ctx.instant.with_timezone(&ctx.time_zone);
        let mut out = String::new();
        let mut counted = 0;
        for (i, segment) in self.segments.iter().enumerate() {
            let before = out.len();
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Timestamp(pattern) => pattern.format_into(&local, &mut out),
                Segment::RandomString => out.push_str(&(ctx.random_string)()),
                Segment::ErrorOutputType => out.push_str(ctx.error_output_type.unwrap_or("")),
                Segment::PartitionKeyFromQuery(key) | Segment::PartitionKeyFromLambda(key) => {
                    let source = match segment {
                        Segment::PartitionKeyFromLambda(_) => KeySource::Lambda,
                        _ => KeySource::Query,
                    };
                    let value = (ctx.partition_key)(source, key)
                        .ok_or_else(|| RenderError::MissingPartitionKey(key.clone()))?;
                    out.push_str(&value);
                }
            }
            if self.counted.contains(&i) {
                counted += match segment {
                    // Firehose's random strings are always 11 characters,
                    // whatever stands in for them while rendering.
                    Segment::RandomString => RANDOM_STRING_LENGTH,
                    _ => out[before..].chars().count(),
                };
            }
        }
        Ok((out, counted))
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
    &["processing-failed", "metadata-extraction-failed", "format-conversion-failed", "activePartitionExceeded"];

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
        "timestamp" => DatePattern::parse(value).map(Segment::Timestamp).map_err(|e| match e {
            PatternError::RefusedLetter { letter } => PrefixError::RefusedLetter { letter, pattern: value.to_owned() },
            PatternError::Java { message } => PrefixError::Pattern { pattern: value.to_owned(), reason: message },
        }),
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
            partition_key: &|_, k| Some(format!("<{k}>")),
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
    #[case("!{timestamp:T}", "pattern letter `T` in `T` is refused by Firehose")]
    #[case("!{timestamp:ddd}", "Too many pattern letters: d")]
    #[case("!{timestamp:'open}", "incomplete string literal")]
    #[case("!{timestamp:yyyy#}", "reserved character: '#'")]
    fn rejects(#[case] template: &str, #[case] message: &str) {
        let err = Template::parse(template).unwrap_err().to_string();
        assert!(err.contains(message), "{template}: {err}");
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
                partition_key: &|_, _| None,
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
            partition_key: &|_, _| None,
        };
        assert_eq!(template.render(&mut ctx), Err(RenderError::TooLong { length: 513 }));
    }
}
