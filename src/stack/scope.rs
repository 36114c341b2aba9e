//! Names of a run's own, so runs on one cluster and one bucket never meet:
//! conformance runs against a team's MSK and S3 share both with other runs
//! and with production.
//!
//! A scope renames each stream and topic with a run suffix, moves every
//! key under `streamlab-runs/<run>/` (prefixed to the spec's prefix and
//! error prefix, which already carry Firehose's defaults, so the keys are
//! those AWS writes for the scoped spec) and can point every stream at one
//! bucket. [`super::Stack::clean_up`] removes what the run left.

use crate::prefix::Template;
use crate::spec::StreamSpec;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    #[error("stream {stream:?} scoped to run {run:?}: {reason}; shorten the stream name or the run id")]
    Invalid { stream: String, run: String, reason: String },
}

#[derive(Debug, Clone)]
pub struct RunScope {
    run: String,
    key_prefix: String,
    bucket: Option<String>,
}

impl RunScope {
    /// A scope with a fresh run id (the time and 4 random bytes).
    pub fn new() -> Self {
        let run = format!("{}-{:08x}", chrono::Utc::now().format("%Y%m%d%H%M%S"), rand::random::<u32>());
        Self::named(&run)
    }

    /// A scope with a given run id: letters, digits and `-` keep every
    /// renamed stream and topic valid.
    pub fn named(run: &str) -> Self {
        RunScope { run: run.to_owned(), key_prefix: format!("streamlab-runs/{run}/"), bucket: None }
    }

    /// Every stream writes to `bucket`, whatever its spec says.
    pub fn in_bucket(mut self, bucket: impl Into<String>) -> Self {
        self.bucket = Some(bucket.into());
        self
    }

    pub fn run(&self) -> &str {
        &self.run
    }

    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// The spec as this run delivers it, re-checked where the scope changed
    /// it: the longer stream name must still fit Firehose's 64 characters.
    pub fn apply(&self, spec: StreamSpec) -> Result<StreamSpec, ScopeError> {
        let name = format!("{}-{}", spec.name(), self.run);
        let topic = format!("{}-{}", spec.topic(), self.run);
        let bucket = self.bucket.clone().unwrap_or_else(|| spec.bucket().to_owned());
        let prefix = Template::parse(&self.key_prefix).expect("a run prefix has no expressions");
        let stream = spec.name().to_owned();
        spec.renamed(name, topic, bucket, &prefix).map_err(|reason| ScopeError::Invalid {
            stream,
            run: self.run.clone(),
            reason,
        })
    }
}

impl Default for RunScope {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scoped_spec_renames_the_stream_and_topic_and_moves_its_keys() {
        let spec = crate::spec::load(std::path::Path::new("fixtures/streams/orders-to-s3.json")).unwrap();
        assert_eq!((spec.name(), spec.topic()), ("orders-to-s3", "shop-events"));
        let scoped = RunScope::named("r1").in_bucket("shared").apply(spec.clone()).unwrap();
        assert_eq!((scoped.name(), scoped.topic(), scoped.bucket()), ("orders-to-s3-r1", "shop-events-r1", "shared"));
        let key = "2026/11/26/05/orders-to-s3-r1-1-2026-11-26-05-00-00-0f8fad5b-d9cb-469f-a165-70867728950e";
        let data = crate::prefix::KeyPattern::new(scoped.prefix(), scoped.name(), scoped.extension());
        assert!(data.is_match(&format!("streamlab-runs/r1/{key}")));
        assert!(!data.is_match(key), "keys outside the run's prefix are not the run's");
        let errors = crate::prefix::KeyPattern::new(scoped.error_prefix(), scoped.name(), scoped.extension());
        assert!(errors.is_match(&format!("streamlab-runs/r1/processing-failed/{key}")));
    }
}
