//! Object keys: `<evaluated prefix><stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<uuid><ext>`.

use std::collections::BTreeMap;

use rand::distributions::{Alphanumeric, DistString};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::clock::millis_to_datetime;
use crate::prefix::{DatePattern, KeySource, RenderContext, RenderError, RANDOM_STRING_LENGTH};
use crate::spec::StreamSpec;

/// Stands for `!{firehose:random-string}` in a dynamic-partitioning buffer
/// key: the string is drawn per object, not per record (else every record
/// would be its own partition).
pub const RANDOM_MARKER: char = '\u{1}';

/// Where uuids and random strings come from. Seeded, each object draws from
/// an RNG seeded by the seed and the object's identity (its buffer, first
/// record and size), so the same input gets the same names whatever order
/// objects are cut in; unseeded, from the OS.
#[derive(Debug, Clone, Copy)]
pub struct Randomness {
    seed: Option<u64>,
}

impl Randomness {
    pub fn from_entropy() -> Self {
        Self { seed: None }
    }

    pub fn seeded(seed: u64) -> Self {
        Self { seed: Some(seed) }
    }

    /// The names of one object, identified by `identity`.
    pub fn object(&self, identity: &[u8]) -> ObjectRandomness {
        let rng = match self.seed {
            None => ChaCha8Rng::from_entropy(),
            Some(seed) => {
                use sha2::Digest;
                let digest = sha2::Sha256::new().chain_update(seed.to_be_bytes()).chain_update(identity).finalize();
                ChaCha8Rng::from_seed(digest.into())
            }
        };
        ObjectRandomness { rng }
    }
}

/// The random parts of one object's names.
#[derive(Debug)]
pub struct ObjectRandomness {
    rng: ChaCha8Rng,
}

impl ObjectRandomness {
    /// A lowercase 36-character v4 uuid, as in every AWS example.
    pub fn uuid(&mut self) -> String {
        let bytes: [u8; 16] = self.rng.gen();
        uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
    }

    /// `!{firehose:random-string}`: 11 alphanumeric characters.
    pub fn random_string(&mut self) -> String {
        Alphanumeric.sample_string(&mut self.rng, RANDOM_STRING_LENGTH)
    }
}

/// Builds keys for one stream.
#[derive(Debug)]
pub struct Namer {
    spec: StreamSpec,
    version: u32,
    suffix_time: DatePattern,
    randomness: Randomness,
}

impl Namer {
    pub fn new(spec: StreamSpec, version: u32, randomness: Randomness) -> Self {
        let suffix_time = DatePattern::parse("yyyy-MM-dd-HH-mm-ss").expect("valid pattern");
        Self { spec, version, suffix_time, randomness }
    }

    /// The random parts of one object's names; `identity` names the object
    /// among this stream's.
    pub fn object(&self, identity: &[u8]) -> ObjectRandomness {
        let mut id = Vec::with_capacity(self.spec.name().len() + 1 + identity.len());
        id.extend_from_slice(self.spec.name().as_bytes());
        id.push(0);
        id.extend_from_slice(identity);
        self.randomness.object(&id)
    }

    /// Key of a data object whose oldest record has timestamp `oldest_ms`.
    /// The prefix and the suffix use that one instant.
    pub fn object_key(&self, oldest_ms: i64, rng: &mut ObjectRandomness) -> Result<String, RenderError> {
        let prefix = self.render(self.spec.prefix(), oldest_ms, None, rng)?;
        Ok(format!("{prefix}{}{}", self.suffix(oldest_ms, rng), self.spec.extension()))
    }

    /// The prefix a record's partition keys evaluate to, with its own
    /// timestamp, random strings left as [`RANDOM_MARKER`]. Fails when the
    /// evaluated prefix (random strings at their real 11 characters) is over
    /// Firehose's 512 characters.
    pub fn partition_prefix(
        &self,
        timestamp_ms: i64,
        query_keys: &BTreeMap<String, String>,
        lambda_keys: Option<&BTreeMap<String, String>>,
    ) -> Result<String, RenderError> {
        let mut marker = || RANDOM_MARKER.to_string();
        let lookup = |source: KeySource, k: &str| match source {
            KeySource::Query => query_keys.get(k).cloned(),
            KeySource::Lambda => lambda_keys.and_then(|keys| keys.get(k).cloned()),
        };
        let mut ctx = RenderContext {
            instant: millis_to_datetime(timestamp_ms),
            time_zone: self.spec.time_zone(),
            random_string: &mut marker,
            error_output_type: None,
            partition_key: &lookup,
        };
        // The limit is checked by render, counting each marker as a random string.
        self.spec.prefix().render(&mut ctx)
    }

    /// Key of a dynamic-partitioning object: its buffer's prefix with fresh
    /// random strings, then the usual suffix.
    pub fn dynamic_key(&self, prefix: &str, oldest_ms: i64, rng: &mut ObjectRandomness) -> String {
        let mut out = String::with_capacity(prefix.len() + 100);
        for c in prefix.chars() {
            if c == RANDOM_MARKER {
                out.push_str(&rng.random_string());
            } else {
                out.push(c);
            }
        }
        format!("{out}{}{}", self.suffix(oldest_ms, rng), self.spec.extension())
    }

    /// Key of an error object; error objects carry no extension.
    pub fn error_key(
        &self,
        oldest_ms: i64,
        error_output_type: &str,
        rng: &mut ObjectRandomness,
    ) -> Result<String, RenderError> {
        let prefix = self.render(self.spec.error_prefix(), oldest_ms, Some(error_output_type), rng)?;
        Ok(format!("{prefix}{}", self.suffix(oldest_ms, rng)))
    }

    fn render(
        &self,
        template: &crate::prefix::Template,
        ms: i64,
        error_type: Option<&str>,
        rng: &mut ObjectRandomness,
    ) -> Result<String, RenderError> {
        let mut random = || rng.random_string();
        let mut ctx = RenderContext {
            instant: millis_to_datetime(ms),
            time_zone: self.spec.time_zone(),
            random_string: &mut random,
            error_output_type: error_type,
            partition_key: &|_, _| None,
        };
        template.render(&mut ctx)
    }

    fn suffix(&self, ms: i64, rng: &mut ObjectRandomness) -> String {
        let local = millis_to_datetime(ms).with_timezone(&self.spec.time_zone());
        let mut time = String::new();
        self.suffix_time.format_into(&local, &mut time);
        format!("{}-{}-{time}-{}", self.spec.name(), self.version, rng.uuid())
    }
}

/// The shape of a data key the default prefix produces, for tests and the
/// harness's checks: `yyyy/MM/dd/HH/<name>-<version>-yyyy-MM-dd-HH-mm-ss-<uuid><ext>`.
pub fn default_key_regex(stream: &str, extension: &str) -> regex::Regex {
    regex::Regex::new(&format!(
        r"^(\d{{4}})/(\d{{2}})/(\d{{2}})/(\d{{2}})/{}-(\d+)-(\d{{4}})-(\d{{2}})-(\d{{2}})-(\d{{2}})-(\d{{2}})-(\d{{2}})-[0-9a-f]{{8}}-[0-9a-f]{{4}}-4[0-9a-f]{{3}}-[89ab][0-9a-f]{{3}}-[0-9a-f]{{12}}{}$",
        regex::escape(stream),
        regex::escape(extension)
    ))
    .expect("valid regex")
}

/// The parts of a key Firehose named: `<dir><stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<uuid><ext>`,
/// whatever the prefix (the directory part) is. Readers of a bucket with no
/// spec at hand (`inspect` on AWS) learn the stream, the version and the
/// time of the oldest record from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectName<'a> {
    /// Everything before the file name (the evaluated prefix).
    pub dir: &'a str,
    pub stream: &'a str,
    pub version: u32,
    /// The time in the name, in the stream's time zone.
    pub time: chrono::NaiveDateTime,
    pub id: &'a str,
}

impl ObjectName<'_> {
    /// The hour the name's time falls in (its prefix hour).
    pub fn hour(&self) -> chrono::NaiveDateTime {
        use chrono::Timelike as _;
        self.time.with_minute(0).and_then(|t| t.with_second(0)).unwrap_or(self.time)
    }
}

/// [`ObjectName`] of `key`, if Firehose could have named it.
pub fn parse_object_name(key: &str) -> Option<ObjectName<'_>> {
    static NAME: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = NAME.get_or_init(|| {
        regex::Regex::new(
            r"^(.+)-(\d+)-(\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(\.[^/]*)?$",
        )
        .expect("valid regex")
    });
    let cut = key.rfind('/').map_or(0, |i| i + 1);
    let caps = re.captures(&key[cut..])?;
    let time = chrono::NaiveDateTime::parse_from_str(caps.get(3)?.as_str(), "%Y-%m-%d-%H-%M-%S").ok()?;
    Some(ObjectName {
        dir: &key[..cut],
        stream: caps.get(1)?.as_str(),
        version: caps.get(2)?.as_str().parse().ok()?,
        time,
        id: caps.get(4)?.as_str(),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn spec(json: &str) -> StreamSpec {
        crate::spec::parse(Path::new("test.json"), json).unwrap()
    }

    fn base(extra: &str) -> String {
        format!(
            r#"{{"DeliveryStreamName":"orders-to-s3","DeliveryStreamType":"MSKAsSource",
            "MSKSourceConfiguration":{{"MSKClusterARN":"arn:aws:kafka:us-east-1:123456789012:cluster/shop/x","TopicName":"orders",
              "AuthenticationConfiguration":{{"RoleARN":"arn:aws:iam::123456789012:role/r","Connectivity":"PRIVATE"}}}},
            "ExtendedS3DestinationConfiguration":{{"RoleARN":"arn:aws:iam::123456789012:role/r","BucketARN":"arn:aws:s3:::bkt"{extra}}}}}"#
        )
    }

    const T: i64 = 1_783_951_200_000 + 5 * 60_000 + 7_000; // 2026-07-13T14:05:07Z

    #[test]
    fn default_prefix_key_matches_aws_format() {
        let namer = Namer::new(spec(&base("")), 1, Randomness::seeded(1));
        let key = namer.object_key(T, &mut namer.object(b"o")).unwrap();
        assert!(key.starts_with("2026/07/13/14/orders-to-s3-1-2026-07-13-14-05-07-"), "{key}");
        assert!(default_key_regex("orders-to-s3", "").is_match(&key), "{key}");
    }

    #[test]
    fn prefix_without_expression_is_concatenated_without_slash() {
        let namer = Namer::new(spec(&base(r#","Prefix":"legacy""#)), 1, Randomness::seeded(1));
        assert!(namer
            .object_key(T, &mut namer.object(b"o"))
            .unwrap()
            .starts_with("legacy2026/07/13/14/orders-to-s3-1-"));
    }

    #[test]
    fn gzip_extension_and_file_extension_override() {
        let namer = Namer::new(spec(&base(r#","CompressionFormat":"GZIP""#)), 1, Randomness::seeded(1));
        assert!(namer.object_key(T, &mut namer.object(b"o")).unwrap().ends_with(".gz"));
        let namer = Namer::new(
            spec(&base(r#","CompressionFormat":"GZIP","FileExtension":".json.gz""#)),
            1,
            Randomness::seeded(1),
        );
        let key = namer.object_key(T, &mut namer.object(b"o")).unwrap();
        assert!(key.ends_with(".json.gz") && !key.ends_with(".gz.json.gz"), "{key}");
    }

    #[test]
    fn default_error_prefix_has_error_type_and_no_extension() {
        let namer =
            Namer::new(spec(&base(r#","Prefix":"shop/","CompressionFormat":"GZIP""#)), 3, Randomness::seeded(1));
        let key = namer.error_key(T, "processing-failed", &mut namer.object(b"o")).unwrap();
        assert!(key.starts_with("shop/processing-failed/2026/07/13/14/orders-to-s3-3-2026-07-13-14-05-07-"), "{key}");
        assert!(!key.ends_with(".gz"));
    }

    proptest::proptest! {
        /// Whatever the records' timestamps, an object's key carries the
        /// instant of its oldest record: the prefix's hour and the suffix's
        /// second, in the stream's time zone.
        #[test]
        fn key_time_is_the_oldest_records(
            timestamps in proptest::collection::vec(0i64..4_102_444_800_000, 1..50),
            zone in proptest::sample::select(vec!["", "America/New_York", "Asia/Calcutta", "Europe/Berlin"]),
        ) {
            let extra = if zone.is_empty() { String::new() } else { format!(r#","CustomTimeZone":"{zone}""#) };
            let spec = spec(&base(&extra));
            let tz = spec.time_zone();
            let namer = Namer::new(spec, 1, Randomness::seeded(1));
            let records = timestamps.iter().enumerate().map(|(i, ts)| crate::delivery::buffer::Record {
                partition: 0, offset: i as i64, timestamp_ms: *ts, value: bytes::Bytes::from_static(b"{}"),
            }).collect();
            let batch = crate::delivery::buffer::Batch {
                key: crate::delivery::buffer::BufferKey::Partition(0), records, bytes: 2, opened_at_ms: 0,
            };
            let oldest = millis_to_datetime(*timestamps.iter().min().unwrap()).with_timezone(&tz);
            let key = namer.object_key(batch.oldest_timestamp_ms(), &mut namer.object(b"o")).unwrap();
            let expected = format!("{}orders-to-s3-1-{}-", oldest.format("%Y/%m/%d/%H/"), oldest.format("%Y-%m-%d-%H-%M-%S"));
            proptest::prop_assert!(key.starts_with(&expected), "{} does not start with {}", key, expected);
        }
    }

    #[test]
    fn uuids_are_fresh_and_random_strings_have_11_chars() {
        let mut r = Randomness::seeded(9).object(b"a");
        assert_ne!(r.uuid(), r.uuid());
        let s = r.random_string();
        assert_eq!(s.len(), 11);
        assert!(s.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn seeded_names_depend_on_the_object_not_the_order() {
        let seeded = Randomness::seeded(9);
        let (a1, b1) = (seeded.object(b"a").uuid(), seeded.object(b"b").uuid());
        let (b2, a2) = (seeded.object(b"b").uuid(), seeded.object(b"a").uuid());
        assert_eq!((a1.clone(), b1.clone()), (a2, b2));
        assert_ne!(a1, b1);
        assert_ne!(Randomness::seeded(10).object(b"a").uuid(), a1);
        let entropy = Randomness::from_entropy();
        assert_ne!(entropy.object(b"a").uuid(), entropy.object(b"a").uuid());
    }
}
