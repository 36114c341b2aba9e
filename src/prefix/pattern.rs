//! `!{timestamp:PATTERN}`: Java's `DateTimeFormatter` patterns, formatted as
//! Java 17 formats them with `Locale.US`, for every pattern letter Firehose
//! accepts.
//!
//! Firehose refuses `C I J P R T U V b f i j l o p r t` (measured on AWS) and
//! accepts every other letter Java knows. The behaviour of each letter at each
//! width (including the widths Java refuses, with Java's message) is pinned by
//! `fixtures/java/datetimeformatter.tsv`, a table Java itself printed; the
//! test at the bottom compares every row. Zone names come from
//! `zone_names.tsv`, also printed by Java (`fixtures/java/time-zones.sh`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::LazyLock;

use chrono::{DateTime, Datelike, NaiveDate, Offset, Timelike};
use chrono_tz::{OffsetComponents, Tz};

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatePattern {
    items: Vec<Item>,
    source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Literal(String),
    Field { letter: char, count: usize },
}

/// Why a pattern is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// A letter Firehose refuses (AWS answers "Invalid conversion character
    /// used in the value of the expression in Prefix").
    #[error("pattern letter `{letter}` is refused by Firehose")]
    RefusedLetter { letter: char },
    /// A width or form Java's `DateTimeFormatter.ofPattern` refuses; the
    /// message is Java's.
    #[error("{message}")]
    Java { message: String },
}

/// Letters Firehose refuses.
const REFUSED: &str = "CIJPRTUVbfijloprt";

impl DatePattern {
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let java = |message: String| PatternError::Java { message };
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
                        None => return Err(java(format!("Pattern ends with an incomplete string literal: {pattern}"))),
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
                let count = chars[i..].iter().take_while(|&&x| x == c).count();
                if REFUSED.contains(c) {
                    return Err(PatternError::RefusedLetter { letter: c });
                }
                check_width(c, count).map_err(java)?;
                if !literal.is_empty() {
                    items.push(Item::Literal(std::mem::take(&mut literal)));
                }
                items.push(Item::Field { letter: c, count });
                i += count;
            } else if matches!(c, '{' | '}' | '#') {
                return Err(java(format!("Pattern includes reserved character: '{c}'")));
            } else if matches!(c, '[' | ']') {
                // An optional section: everything in it can be formatted
                // from an instant and a zone, so it prints.
                i += 1;
            } else {
                literal.push(c);
                i += 1;
            }
        }
        if !literal.is_empty() {
            items.push(Item::Literal(literal));
        }
        Ok(Self { items, source: pattern.to_owned() })
    }

    /// The pattern as written.
    pub fn source(&self) -> String {
        self.source.clone()
    }

    /// Appends the instant, in its zone, as Java formats it.
    pub fn format_into(&self, t: &DateTime<Tz>, out: &mut String) {
        for item in &self.items {
            match item {
                Item::Literal(text) => out.push_str(text),
                Item::Field { letter, count } => field(*letter, *count, t, out),
            }
        }
    }

    pub fn format(&self, t: &DateTime<Tz>) -> String {
        let mut out = String::new();
        self.format_into(t, &mut out);
        out
    }

    /// A regex matching everything this pattern formats to.
    pub fn regex(&self) -> String {
        let mut out = String::new();
        for item in &self.items {
            match item {
                Item::Literal(text) => out.push_str(&regex::escape(text)),
                Item::Field { letter, count } => out.push_str(&field_regex(*letter, *count)),
            }
        }
        out
    }

    /// Whether every field formats to the same number of characters at any
    /// instant (digits and offsets of fixed width), so the 512-character
    /// limit can be checked before anything runs.
    pub fn is_fixed_width(&self) -> bool {
        self.items.iter().all(|item| match item {
            Item::Literal(_) => true,
            Item::Field { letter, count } => fixed_width(*letter, *count),
        })
    }
}

/// Java's `ofPattern` checks on the number of letters.
fn check_width(letter: char, count: usize) -> Result<(), String> {
    let too_many = || Err(format!("Too many pattern letters: {letter}"));
    match letter {
        'G' | 'E' if count > 5 => too_many(),
        'M' | 'L' | 'Q' | 'q' | 'e' if count > 5 => too_many(),
        'c' if count == 2 => Err("Invalid pattern \"cc\"".into()),
        'c' if count > 5 => too_many(),
        'a' | 'F' | 'W' if count > 1 => too_many(),
        'd' | 'h' | 'H' | 'k' | 'K' | 'm' | 's' | 'w' if count > 2 => too_many(),
        'D' if count > 3 => too_many(),
        'B' if !matches!(count, 1 | 4 | 5) => Err("Wrong number of pattern letters: B".into()),
        'v' if !matches!(count, 1 | 4) => Err("Wrong number of pattern letters: v".into()),
        'z' if count > 4 => too_many(),
        'O' if !matches!(count, 1 | 4) => Err("Pattern letter count must be 1 or 4: O".into()),
        'X' | 'x' | 'Z' if count > 5 => too_many(),
        'S' if count > 9 => Err(format!("Minimum width must be from 0 to 9 inclusive but was {count}")),
        'u' | 'y' | 'g' | 'A' | 'n' | 'N' if count > 19 => {
            Err(format!("The minimum width must be from 1 to 19 inclusive but was {count}"))
        }
        // Java 17 accepts 11 to 18 year letters but fails to format them: its
        // sign-padding table has 11 entries.
        'u' | 'y' | 'Y' if (11..=18).contains(&count) => Err(format!(
            "Java accepts {count} pattern letters {letter} but fails to format them (use at most 10, or 19)"
        )),
        _ => Ok(()),
    }
}

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
const QUARTERS: [&str; 4] = ["1st quarter", "2nd quarter", "3rd quarter", "4th quarter"];

/// How a number is signed and padded (Java's `SignStyle`).
#[derive(Clone, Copy)]
enum Sign {
    /// A minus sign for negative values only.
    Normal,
    /// Like `Normal`, plus a `+` when the value has more digits than the
    /// minimum width.
    ExceedsPad,
}

fn number(out: &mut String, value: i64, min_width: usize, sign: Sign) {
    let digits = value.unsigned_abs().to_string();
    if value < 0 {
        out.push('-');
    } else if matches!(sign, Sign::ExceedsPad) && digits.len() > min_width {
        out.push('+');
    }
    for _ in digits.len()..min_width {
        out.push('0');
    }
    out.push_str(&digits);
}

/// Text by width: 1-3 short, 4 full, 5 narrow (the first character).
fn text(out: &mut String, full: &str, short: &str, count: usize) {
    match count {
        4 => out.push_str(full),
        5 => out.push_str(&full[..full.chars().next().map_or(0, char::len_utf8)]),
        _ => out.push_str(short),
    }
}

/// Year values: two digits for a count of 2, else padded to the count.
fn year(out: &mut String, value: i64, count: usize) {
    match count {
        2 => number(out, value.rem_euclid(100), 2, Sign::Normal),
        c if c < 4 => number(out, value, c, Sign::Normal),
        c => number(out, value, c, Sign::ExceedsPad),
    }
}

/// Weeks as `WeekFields.of(Locale.US)` counts them: weeks start on Sunday and
/// week 1 is the week holding the first day of the year (or month).
fn sunday_based(date: NaiveDate) -> i64 {
    i64::from(date.weekday().num_days_from_sunday())
}

/// (week-based year, week of week-based year) under US rules.
fn us_week(date: NaiveDate) -> (i32, i64) {
    let week_start = date - chrono::Duration::days(sunday_based(date));
    let next_year = NaiveDate::from_ymd_opt(date.year() + 1, 1, 1).expect("valid date");
    if week_start + chrono::Duration::days(6) >= next_year {
        return (date.year() + 1, 1);
    }
    let jan1 = NaiveDate::from_ymd_opt(date.year(), 1, 1).expect("valid date");
    let first_start = jan1 - chrono::Duration::days(sunday_based(jan1));
    (date.year(), (week_start - first_start).num_days() / 7 + 1)
}

/// Zone names Java prints (Locale.US): standard short and long, daylight
/// short and long, generic short and long.
static ZONE_NAMES: LazyLock<HashMap<&'static str, [&'static str; 6]>> = LazyLock::new(|| {
    include_str!("zone_names.tsv")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let mut parts = line.split('\t');
            let zone = parts.next()?;
            let names: Vec<&str> = parts.collect();
            Some((zone, names.try_into().ok()?))
        })
        .collect()
});

/// Whether Java counts the instant as daylight saving time in its zone: tzdb
/// describes Europe/Dublin's winter as a negative saving, Java its summer.
fn is_daylight(t: &DateTime<Tz>) -> bool {
    let offset = t.offset();
    let dst = offset.dst_offset().num_seconds();
    if dst < 0 {
        return false;
    }
    if dst > 0 {
        return true;
    }
    // Zero saving in a zone whose winter saving is negative: summer.
    let winter = t.timezone().from_utc_datetime(
        &NaiveDate::from_ymd_opt(t.year(), 1, 15).expect("valid date").and_hms_opt(12, 0, 0).expect("valid time"),
    );
    let summer = t.timezone().from_utc_datetime(
        &NaiveDate::from_ymd_opt(t.year(), 7, 15).expect("valid date").and_hms_opt(12, 0, 0).expect("valid time"),
    );
    let negative_saving = |x: &DateTime<Tz>| x.offset().dst_offset().num_seconds() < 0;
    negative_saving(&winter) || negative_saving(&summer)
}

use chrono::TimeZone as _;

fn zone_name(t: &DateTime<Tz>, long: bool, generic: bool) -> String {
    let zone = t.timezone().name();
    let Some(names) = ZONE_NAMES.get(zone) else {
        // A zone Java has no names for prints as its offset.
        return localized_offset(t.offset().fix().local_minus_utc(), long);
    };
    let index = match (generic, is_daylight(t), long) {
        (true, _, false) => 4,
        (true, _, true) => 5,
        (false, false, false) => 0,
        (false, false, true) => 1,
        (false, true, false) => 2,
        (false, true, true) => 3,
    };
    names[index].to_owned()
}

/// `GMT`, `GMT+5:30` (short) or `GMT+05:30` (full).
fn localized_offset(seconds: i32, full: bool) -> String {
    if seconds == 0 {
        return "GMT".into();
    }
    let sign = if seconds < 0 { '-' } else { '+' };
    let (h, m, s) = (seconds.abs() / 3600, seconds.abs() / 60 % 60, seconds.abs() % 60);
    let mut out = format!("GMT{sign}");
    if full {
        let _ = write!(out, "{h:02}:{m:02}");
        if s != 0 {
            let _ = write!(out, ":{s:02}");
        }
    } else {
        let _ = write!(out, "{h}");
        if m != 0 || s != 0 {
            let _ = write!(out, ":{m:02}");
        }
        if s != 0 {
            let _ = write!(out, ":{s:02}");
        }
    }
    out
}

/// Java's `appendOffset` patterns; `zero` is printed for a zero offset.
fn offset(seconds: i32, pattern: &str, zero: &str) -> String {
    if seconds == 0 {
        return zero.to_owned();
    }
    let sign = if seconds < 0 { '-' } else { '+' };
    let (h, m, s) = (seconds.abs() / 3600, seconds.abs() / 60 % 60, seconds.abs() % 60);
    let colon = pattern.contains(':');
    let sep = if colon { ":" } else { "" };
    let mut out = format!("{sign}{h:02}");
    match pattern {
        // Minutes only when not zero.
        "+HHmm" => {
            if m != 0 || s != 0 {
                let _ = write!(out, "{m:02}");
            }
        }
        "+HHMM" | "+HH:MM" => {
            let _ = write!(out, "{sep}{m:02}");
        }
        // Seconds only when not zero.
        _ => {
            let _ = write!(out, "{sep}{m:02}");
            if s != 0 {
                let _ = write!(out, "{sep}{s:02}");
            }
        }
    }
    out
}

fn field(letter: char, count: usize, t: &DateTime<Tz>, out: &mut String) {
    let date = t.date_naive();
    let offset_seconds = t.offset().fix().local_minus_utc();
    let nanos = i64::from(t.nanosecond() % 1_000_000_000);
    let second_of_day = i64::from(t.num_seconds_from_midnight());
    let (hour, minute) = (t.hour(), t.minute());
    let two = |out: &mut String, v: i64| number(out, v, count.min(2), Sign::Normal);
    match letter {
        'G' => {
            let (full, short) = if t.year() > 0 { ("Anno Domini", "AD") } else { ("Before Christ", "BC") };
            text(out, full, short, count)
        }
        'u' => year(out, i64::from(t.year()), count),
        'y' => year(out, i64::from(if t.year() > 0 { t.year() } else { 1 - t.year() }), count),
        'Y' => year(out, i64::from(us_week(date).0), count),
        'D' => number(out, i64::from(t.ordinal()), count, Sign::Normal),
        'M' | 'L' => match count {
            1 | 2 => two(out, i64::from(t.month())),
            _ => {
                let full = MONTHS[t.month0() as usize];
                text(out, full, &full[..3], count)
            }
        },
        'd' => two(out, i64::from(t.day())),
        'g' => number(
            out,
            date.signed_duration_since(NaiveDate::from_ymd_opt(1858, 11, 17).expect("valid")).num_days(),
            count,
            Sign::Normal,
        ),
        'Q' | 'q' => {
            let quarter = t.month0() / 3;
            match count {
                1 | 2 => two(out, i64::from(quarter + 1)),
                3 => {
                    let _ = write!(out, "Q{}", quarter + 1);
                }
                4 => out.push_str(QUARTERS[quarter as usize]),
                _ => {
                    let _ = write!(out, "{}", quarter + 1);
                }
            }
        }
        'w' => two(out, us_week(date).1),
        'W' => {
            let first = date.with_day(1).expect("day 1 exists");
            number(out, (i64::from(t.day()) - 1 + sunday_based(first)) / 7 + 1, 1, Sign::Normal)
        }
        'E' | 'e' | 'c' => match (letter, count) {
            ('e' | 'c', 1 | 2) => two(out, sunday_based(date) + 1),
            _ => {
                let full = DAYS[date.weekday().num_days_from_monday() as usize];
                text(out, full, &full[..3], count)
            }
        },
        'F' => number(out, (i64::from(t.day()) - 1) % 7 + 1, 1, Sign::Normal),
        'a' => out.push_str(if hour >= 12 { "PM" } else { "AM" }),
        'B' => {
            let minute_of_day = hour * 60 + minute;
            let (full, narrow) = match minute_of_day {
                0 => ("midnight", "mi"),
                720 => ("noon", "n"),
                360..720 => ("in the morning", "in the morning"),
                721..1080 => ("in the afternoon", "in the afternoon"),
                1080..1260 => ("in the evening", "in the evening"),
                _ => ("at night", "at night"),
            };
            out.push_str(if count == 5 { narrow } else { full });
        }
        'h' => two(out, i64::from(if hour % 12 == 0 { 12 } else { hour % 12 })),
        'K' => two(out, i64::from(hour % 12)),
        'k' => two(out, i64::from(if hour == 0 { 24 } else { hour })),
        'H' => two(out, i64::from(hour)),
        'm' => two(out, i64::from(minute)),
        's' => two(out, i64::from(t.second())),
        'S' => out.push_str(&format!("{nanos:09}")[..count]),
        'A' => number(out, second_of_day * 1000 + nanos / 1_000_000, count, Sign::Normal),
        'n' => number(out, nanos, count, Sign::Normal),
        'N' => number(out, second_of_day * 1_000_000_000 + nanos, count, Sign::Normal),
        'v' => out.push_str(&zone_name(t, count == 4, true)),
        'z' => out.push_str(&zone_name(t, count == 4, false)),
        'O' => out.push_str(&localized_offset(offset_seconds, count == 4)),
        'X' | 'x' => {
            let pattern = ["+HHmm", "+HHMM", "+HH:MM", "+HHMMss", "+HH:MM:ss"][count - 1];
            let zero = if letter == 'X' { "Z" } else { ["+00", "+0000", "+00:00", "+0000", "+00:00"][count - 1] };
            out.push_str(&offset(offset_seconds, pattern, zero))
        }
        'Z' => match count {
            1..=3 => out.push_str(&offset(offset_seconds, "+HHMM", "+0000")),
            4 => out.push_str(&localized_offset(offset_seconds, true)),
            _ => out.push_str(&offset(offset_seconds, "+HH:MM:ss", "Z")),
        },
        other => unreachable!("letter {other} passed parse"),
    }
}

/// A regex for what one field formats to.
fn field_regex(letter: char, count: usize) -> String {
    if fixed_width(letter, count) {
        return match letter {
            'X' | 'x' | 'Z' => "(?:Z|[+-][0-9:]+)".into(),
            _ => format!(r"\d{{{count}}}"),
        };
    }
    match letter {
        'a' => "(?:AM|PM)".into(),
        'u' | 'y' | 'Y' | 'D' | 'g' | 'A' | 'n' | 'N' | 'd' | 'h' | 'H' | 'k' | 'K' | 'm' | 's' | 'w' | 'W' | 'F' => {
            r"[+-]?\d+".into()
        }
        'M' | 'L' | 'Q' | 'q' | 'e' | 'c' if count <= 2 => r"\d+".into(),
        'X' | 'x' | 'Z' | 'O' => "(?:Z|GMT|[+-])[0-9:+-]*".into(),
        // Names: months, days, quarters, day periods, eras, zones.
        _ => "[A-Za-z0-9][A-Za-z0-9 ]*?".into(),
    }
}

/// Fields that always format to the same number of characters.
fn fixed_width(letter: char, count: usize) -> bool {
    match letter {
        'd' | 'h' | 'H' | 'k' | 'K' | 'm' | 's' | 'w' | 'M' | 'L' | 'Q' | 'q' | 'e' => count == 2,
        'u' | 'y' | 'Y' => count == 2 || count == 4,
        'D' => count == 3,
        'S' => true,
        'c' | 'E' | 'a' => false,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    /// Every row Java printed: the same text for every accepted pattern,
    /// zone and instant; a refusal where Java refuses.
    #[test]
    fn formats_as_java_does_for_every_letter_and_width() {
        let table = include_str!("../../fixtures/java/datetimeformatter.tsv");
        let mut checked = 0;
        let mut failures = Vec::new();
        for line in table.lines().filter(|l| !l.starts_with('#')) {
            let cols: Vec<&str> = line.split('\t').collect();
            let [pattern, zone, instant, expected] = cols[..] else { panic!("bad row {line}") };
            let parsed = DatePattern::parse(pattern);
            if let Some(message) = expected.strip_prefix("ERROR: ") {
                match parsed {
                    Err(PatternError::Java { message: ours }) if zone == "*" => {
                        if ours != message {
                            failures.push(format!("{pattern}: Java says {message:?}, we say {ours:?}"));
                        }
                    }
                    Err(_) => {}
                    Ok(_) => failures.push(format!("{pattern}: Java refuses ({message}), we accept")),
                }
                checked += 1;
                continue;
            }
            let parsed = match parsed {
                Ok(p) => p,
                Err(e) => {
                    failures.push(format!("{pattern}: Java accepts, we refuse: {e}"));
                    continue;
                }
            };
            let tz: Tz = zone.parse().unwrap();
            let at = chrono::DateTime::parse_from_rfc3339(instant).unwrap().with_timezone(&tz);
            let ours = parsed.format(&at);
            if ours != expected {
                failures.push(format!("{pattern} {zone} {instant}: Java {expected:?}, ours {ours:?}"));
            }
            checked += 1;
        }
        assert!(checked > 16_000, "{checked} rows");
        assert!(
            failures.is_empty(),
            "{} of {checked} rows differ:\n{}",
            failures.len(),
            failures[..failures.len().min(40)].join("\n")
        );
    }

    #[test]
    fn refused_letters_are_named() {
        for letter in REFUSED.chars() {
            assert_eq!(DatePattern::parse(&format!("yyyy{letter}")), Err(PatternError::RefusedLetter { letter }));
        }
        assert!(DatePattern::parse("yyyy-'W'ww").is_ok(), "quoted letters are literal");
    }

    #[test]
    fn week_based_year_pattern_from_the_issue() {
        let p = DatePattern::parse("YYYY-'W'ww").unwrap();
        let at = Tz::UTC.with_ymd_and_hms(2026, 12, 29, 10, 0, 0).unwrap();
        assert_eq!(p.format(&at), "2027-W01");
        let at = Tz::UTC.with_ymd_and_hms(2026, 7, 3, 10, 0, 0).unwrap();
        assert_eq!(p.format(&at), "2026-W27");
    }

    #[test]
    fn every_accepted_zone_has_java_names() {
        for zone in crate::spec::AWS_TIME_ZONES.iter() {
            assert!(ZONE_NAMES.contains_key(zone), "{zone} has no names");
            assert!(zone.parse::<Tz>().is_ok(), "chrono-tz does not know {zone}");
        }
    }
}
