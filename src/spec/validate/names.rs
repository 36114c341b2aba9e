//! Names the spec hands to other services, checked by those services' rules
//! so a spec that S3 or Kafka would refuse fails `validate`, not `up`: S3's
//! bucket naming rules and Kafka's topic name limits. Firehose's own
//! patterns let both through.

use std::net::Ipv4Addr;

/// Where S3's rules are written down.
const BUCKET_RULES: &str = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html";

/// Why S3 refuses `name` as a general purpose bucket name, if it does (the
/// rule as S3's naming rules state it).
pub fn bucket_name_problem(name: &str) -> Option<String> {
    let rule = if !(3..=63).contains(&name.len()) {
        "bucket names must be between 3 (min) and 63 (max) characters long"
    } else if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-') {
        "bucket names can consist only of lowercase letters, numbers, periods (.), and hyphens (-)"
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !name.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        "bucket names must begin and end with a letter or number"
    } else if name.contains("..") {
        "bucket names must not contain two adjacent periods"
    } else if name.parse::<Ipv4Addr>().is_ok() {
        "bucket names must not be formatted as an IP address (for example, 192.168.5.4)"
    } else if let Some(prefix) = ["xn--", "sthree-", "amzn-s3-demo-"].iter().find(|p| name.starts_with(*p)) {
        return Some(format!("bucket names must not start with the prefix {prefix:?}, which S3 reserves; {}", see()));
    } else if let Some(suffix) =
        ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"].iter().find(|s| name.ends_with(*s))
    {
        return Some(format!("bucket names must not end with the suffix {suffix:?}, which S3 reserves; {}", see()));
    } else {
        return None;
    };
    Some(format!("{rule}; {}", see()))
}

fn see() -> String {
    format!("S3 answers InvalidBucketName (\"The specified bucket is not valid.\"). Fix the ARN's bucket name; the rules: {BUCKET_RULES}")
}

/// Kafka's longest topic name.
pub const MAX_TOPIC_CHARS: usize = 249;

/// Why Kafka refuses `topic`, if it does (Firehose's pattern accepts 255
/// characters and the names `.` and `..`).
pub fn topic_problem(topic: &str) -> Option<String> {
    if topic == "." || topic == ".." {
        Some(format!("Kafka refuses the topic name {topic:?} (\".\" and \"..\" are reserved); name the topic your producers write to"))
    } else if topic.chars().count() > MAX_TOPIC_CHARS {
        Some(format!(
            "has {} characters; Kafka topic names have at most {MAX_TOPIC_CHARS}, so no such topic can exist",
            topic.chars().count()
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3s_bucket_rules() {
        for good in ["shop-events-raw", "abc", "a.b-c.9", &"a".repeat(63)] {
            assert_eq!(bucket_name_problem(good), None, "{good}");
        }
        let cases = [
            ("ab", "between 3 (min) and 63"),
            (&*"a".repeat(64), "between 3 (min) and 63"),
            ("Shop-Events", "only of lowercase letters"),
            ("shop_events", "only of lowercase letters"),
            ("-shop", "begin and end with a letter or number"),
            ("shop.", "begin and end"),
            ("a..b", "two adjacent periods"),
            ("192.168.1.1", "IP address"),
            ("xn--shop", "prefix \"xn--\""),
            ("sthree-shop", "prefix \"sthree-\""),
            ("shop-s3alias", "suffix \"-s3alias\""),
            ("shop--x-s3", "suffix \"--x-s3\""),
        ];
        for (bad, rule) in cases {
            let problem = bucket_name_problem(bad).unwrap_or_else(|| panic!("{bad} passed"));
            assert!(problem.contains(rule) && problem.contains("InvalidBucketName"), "{bad}: {problem}");
        }
    }

    #[test]
    fn kafkas_topic_limits() {
        assert_eq!(topic_problem("shop-events"), None);
        assert_eq!(topic_problem(&"t".repeat(249)), None);
        assert!(topic_problem(".").unwrap().contains("reserved"));
        assert!(topic_problem("..").unwrap().contains("reserved"));
        assert!(topic_problem(&"t".repeat(250)).unwrap().contains("at most 249"));
    }
}
