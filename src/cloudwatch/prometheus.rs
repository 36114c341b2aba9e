//! The same Firehose metrics as a Prometheus page (text exposition
//! format), for teams that scrape rather than call CloudWatch: one series
//! per metric of [`METRICS`], named from it (`DeliveryToS3.Records` ->
//! `firehose_delivery_to_s3_records`), label `delivery_stream_name`, the
//! CloudWatch name in HELP. Counters are totals since the stream's delivery
//! started (a new delivery starts them again, which Prometheus reads as a
//! reset); gauges are the state now. Rendered by
//! `metrics-exporter-prometheus` through a recorder of its own per page, so
//! stacks in one process never mix.

use metrics::{with_local_recorder, Label};
use metrics_exporter_prometheus::PrometheusBuilder;

use super::firehose::{StreamFigures, Value, METRICS, NAMESPACE};

/// `DeliveryToS3.Records` -> `firehose_delivery_to_s3_records`.
pub fn series_name(metric: &str) -> String {
    let mut out = String::from("firehose_");
    let mut previous: Option<char> = None;
    for c in metric.chars() {
        match c {
            '.' => out.push('_'),
            c if c.is_ascii_uppercase() => {
                if previous.is_some_and(|p| p.is_ascii_lowercase()) {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase());
            }
            c => out.push(c),
        }
        previous = Some(c);
    }
    out
}

/// The page for `figures` at clock time `now_ms`.
pub fn render(figures: &[StreamFigures], now_ms: i64) -> String {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    with_local_recorder(&recorder, || {
        for metric in METRICS {
            let name = series_name(metric.name);
            let help = format!("CloudWatch {NAMESPACE} {} ({})", metric.name, metric.counted);
            match metric.value {
                Value::Counter(_) | Value::PerAttempt(_) => metrics::describe_counter!(name.clone(), help),
                Value::Gauge(_) => metrics::describe_gauge!(name.clone(), help),
            }
        }
        for f in figures {
            let labels = vec![Label::new("delivery_stream_name", f.stream.clone())];
            for metric in METRICS.iter().filter(|m| m.applies.to(f)) {
                let name = series_name(metric.name);
                match metric.value {
                    Value::Counter(of) => metrics::counter!(name, labels.clone()).absolute(of(&f.counters)),
                    // The successes; the attempts are their own series.
                    Value::PerAttempt(of) => {
                        let (ok, attempts) = of(&f.counters);
                        metrics::counter!(name.clone(), labels.clone()).absolute(ok);
                        metrics::counter!(format!("{name}_attempts"), labels.clone()).absolute(attempts);
                    }
                    Value::Gauge(of) => {
                        if let Some(v) = of(f, now_ms) {
                            metrics::gauge!(name, labels.clone()).set(v);
                        }
                    }
                }
            }
        }
    });
    handle.render()
}

/// Serves `page()` at `GET /metrics` on `addr` until `stop` fires (for
/// `deliver --metrics-addr`); returns the bound address.
pub async fn serve(
    addr: std::net::SocketAddr,
    stop: tokio_util::sync::CancellationToken,
    page: std::sync::Arc<dyn Fn() -> String + Send + Sync>,
) -> std::io::Result<std::net::SocketAddr> {
    use http_body_util::Full;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let socket = tokio::select! {
                () = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((socket, _)) => socket,
                    Err(_) => continue,
                },
            };
            let page = page.clone();
            let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let page = page.clone();
                async move {
                    let mut response = if req.uri().path() == "/metrics" {
                        let mut r = http::Response::new(Full::new(bytes::Bytes::from(page())));
                        r.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                        );
                        r
                    } else {
                        http::Response::new(Full::new(bytes::Bytes::from_static(b"only GET /metrics is served here\n")))
                    };
                    if req.uri().path() != "/metrics" {
                        *response.status_mut() = http::StatusCode::NOT_FOUND;
                    }
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(socket), service);
            tokio::spawn(conn);
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::super::firehose::Counters;
    use super::*;

    #[test]
    fn names_follow_the_cloudwatch_names() {
        assert_eq!(series_name("DeliveryToS3.Records"), "firehose_delivery_to_s3_records");
        assert_eq!(series_name("DataReadFromSource.Bytes"), "firehose_data_read_from_source_bytes");
        assert_eq!(series_name("KafkaOffsetLag"), "firehose_kafka_offset_lag");
        assert_eq!(series_name("DeliveryToS3.DataFreshness"), "firehose_delivery_to_s3_data_freshness");
    }

    #[test]
    fn the_page_holds_every_series_with_its_help() {
        let figures = StreamFigures {
            stream: "orders".into(),
            counters: Counters { records_delivered: 300, put_successes: 3, put_failures: 1, ..Counters::default() },
            oldest_unlanded_ms: Some(40_000),
            ..StreamFigures::default()
        };
        let page = render(&[figures], 100_000);
        assert!(page.contains("firehose_delivery_to_s3_records{delivery_stream_name=\"orders\"} 300"), "{page}");
        assert!(
            page.contains("# HELP firehose_delivery_to_s3_records CloudWatch AWS/Firehose DeliveryToS3.Records"),
            "{page}"
        );
        assert!(page.contains("firehose_delivery_to_s3_data_freshness{delivery_stream_name=\"orders\"} 60"), "{page}");
        assert!(page.contains("firehose_delivery_to_s3_success_attempts{delivery_stream_name=\"orders\"} 4"), "{page}");
        assert!(!page.contains("incoming_records{"), "DirectPut series only for DirectPut streams: {page}");
    }
}
