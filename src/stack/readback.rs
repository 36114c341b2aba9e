//! Reading back what a stack's streams landed and what their topics hold:
//! the landing, expectations checked against it, and a scoped run's
//! clean-up.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::{Stack, StackError};
use crate::delivery::DeliveryHandle;
use crate::harness;
use crate::kafka::admin;
use crate::landing::{self, Landing};
use crate::spec::StreamSpec;

impl Stack {
    /// The objects `spec` has written, read through the S3 API, with keys
    /// relative to the run's scope (as the unscoped spec would write them).
    pub async fn objects(&self, spec: &StreamSpec) -> Result<Vec<harness::StoredObject>, StackError> {
        let scope = self.key_scope();
        let mut objects = harness::read_under(&self.client, spec.bucket(), scope).await?;
        for object in &mut objects {
            object.key = object.key[scope.len()..].to_owned();
        }
        Ok(objects)
    }

    /// Removes what a scoped run left on a shared cluster and bucket: its
    /// topics and its objects. (Its consumer groups expire with the
    /// cluster's offset retention; its stream-state records stay in
    /// `__streamlab_stream_state`.) Nothing to do without a scope.
    pub async fn clean_up(&self) -> Result<(), StackError> {
        if self.options.scope.is_none() {
            return Ok(());
        }
        let specs = self.specs();
        let topics: Vec<&str> = specs.iter().map(|s| s.topic()).collect();
        admin::delete_topics(&self.backend.kafka, &topics).await?;
        let buckets: BTreeSet<&str> = specs.iter().map(|s| s.bucket()).collect();
        for bucket in buckets {
            harness::delete_under(&self.client, bucket, self.key_scope()).await?;
        }
        Ok(())
    }

    /// What landed for `stream` (or every stream), read back through S3.
    pub async fn landing(&self, stream: Option<&str>) -> Result<Landing, StackError> {
        let histories: Vec<landing::StreamHistory> = match stream {
            Some(name) => {
                let spec = self.spec(name)?;
                self.streams.histories().into_iter().filter(|h| h.current.name() == spec.name()).collect()
            }
            None => self.streams.histories(),
        };
        let mut landing = landing::read_history(&self.client, &histories, self.key_scope()).await?;
        for (stream, spec) in landing.streams.iter_mut().zip(histories.iter().map(|h| &h.current)) {
            let stats = self.stats(spec.name()).await.ok();
            if spec.lambda().is_some() {
                stream.transform = stats.as_ref().map(|s| landing::TransformCounts::of(s));
            }
            stream.failing = stats.and_then(|s| s.put_failure());
        }
        Ok(landing)
    }

    /// Evaluates expectations against what landed and what the topics hold.
    pub async fn check(
        &self,
        expectations: &[crate::checks::expect::Expectation],
    ) -> Result<Vec<crate::checks::expect::Outcome>, StackError> {
        use crate::checks::expect::{self, StreamEvidence};
        let running = self.streams.running();
        let specs: Vec<StreamSpec> = running.iter().map(|(spec, _)| spec.clone()).collect();
        let histories: Vec<landing::StreamHistory> = self
            .streams
            .histories()
            .into_iter()
            .filter(|h| specs.iter().any(|s| s.name() == h.current.name()))
            .collect();
        let (raw, strangers) = landing::read_raw(&self.client, &histories, self.key_scope()).await?;
        tracing::debug!("objects read back");
        let mut sources = Vec::new();
        let mut dropped = Vec::new();
        for (spec, delivery) in &running {
            let start = delivery.as_ref().map(|d| d.state.start_offsets.clone()).unwrap_or_default();
            let (b, t) = (self.backend.kafka.clone(), spec.topic().to_owned());
            let values = tokio::task::spawn_blocking(move || {
                let ends = admin::end_offsets(&b, &t)?;
                Ok::<_, StackError>(harness::read_range(&b, &t, &start, &ends, Duration::from_secs(60))?)
            })
            .await
            .expect("reading the topic does not panic")?;
            tracing::debug!(topic = %spec.topic(), records = values.len(), "topic read back");
            sources.push(values);
            let load = |d: &Arc<DeliveryHandle>| d.stats().lambda.dropped.load(std::sync::atomic::Ordering::Relaxed);
            dropped.push(spec.lambda().map(|_| delivery.as_ref().map_or(0, load)));
        }
        let evidence: Vec<StreamEvidence<'_>> = specs
            .iter()
            .zip(sources)
            .zip(&raw)
            .zip(dropped)
            .map(|(((spec, source), (_, objects)), dropped)| StreamEvidence { spec, source, objects, dropped })
            .collect();
        let alarms: Vec<(String, &'static str)> =
            self.monitor().alarms().into_iter().map(|a| (a.definition.name.clone(), a.state.as_str())).collect();
        Ok(expect::evaluate(expectations, &evidence, &strangers, &alarms))
    }
}
