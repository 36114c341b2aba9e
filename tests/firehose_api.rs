//! The stack's Firehose API driven by aws-sdk-firehose, as a team's Rust
//! code or infrastructure tooling would: a stream created, described,
//! listed, tagged, fed through its topic, updated (version 2, new prefix,
//! nothing lost across the update) and deleted; AWS's errors for a taken
//! name, a stale version, oversized batches and puts to an MSK stream; a
//! DirectPut stream fed by `PutRecordBatch`, its limits, encryption states
//! and its memory bound (records refused, never dropped).

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use aws_sdk_firehose::types::{
    AuthenticationConfiguration, BufferingHints, Connectivity, DeliveryStreamStatus, DeliveryStreamType,
    ExtendedS3DestinationConfiguration, ExtendedS3DestinationUpdate, MskSourceConfiguration, Record, Tag,
};
use aws_sdk_firehose::Client;
use chrono::{TimeZone, Utc};
use streamlab::events::{EventGenerator, GeneratorConfig};
use streamlab::stack::firehose::{Firehose, FirehoseServer};
use streamlab::stack::{Stack, StackOptions};

const NAME: &str = "orders-api";

fn client(url: &str) -> Client {
    let credentials = aws_credential_types::Credentials::new("test", "test", None, None, "test");
    let config = aws_sdk_firehose::Config::builder()
        .behavior_version(aws_sdk_firehose::config::BehaviorVersion::latest())
        .region(aws_sdk_firehose::config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .endpoint_url(url)
        .http_client(streamlab::aws_http::client())
        .build();
    Client::from_conf(config)
}

async fn status(client: &Client, name: &str) -> Result<(DeliveryStreamStatus, String)> {
    let answer = client.describe_delivery_stream().delivery_stream_name(name).send().await?;
    let d = answer.delivery_stream_description().context("description")?;
    Ok((d.delivery_stream_status().clone(), d.version_id().to_owned()))
}

async fn wait_active(client: &Client, name: &str) -> Result<()> {
    for _ in 0..600 {
        if status(client, name).await?.0 == DeliveryStreamStatus::Active {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What the stream says of itself: a creation that failed tells why.
    let answer = client.describe_delivery_stream().delivery_stream_name(name).send().await?;
    let d = answer.delivery_stream_description().context("description")?;
    anyhow::bail!(
        "{name} did not become ACTIVE within 30 s: {:?}, {:?}",
        d.delivery_stream_status(),
        d.failure_description()
    )
}

fn error_code<E: aws_sdk_firehose::error::ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_lives_its_whole_life_through_the_sdk() -> Result<()> {
    let start = Utc.with_ymd_and_hms(2026, 7, 13, 14, 0, 0).unwrap();
    let stack = Arc::new(Stack::start(StackOptions::new(Vec::<String>::new()).manual_clock(start).seed(5)).await?);
    let server = FirehoseServer::start(Arc::new(Firehose::new(stack.clone()))).await?;
    let outcome = lifecycle(&stack, &client(server.url()), start).await;
    // Stopped either way: a delivery left running holds the runtime's exit.
    stack.shutdown().await?;
    outcome
}

async fn lifecycle(stack: &Stack, client: &Client, start: chrono::DateTime<Utc>) -> Result<()> {
    let source = MskSourceConfiguration::builder()
        .msk_cluster_arn("arn:aws:kafka:us-east-1:123456789012:cluster/shop/0b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e-1")
        .topic_name("shop-events")
        .authentication_configuration(
            AuthenticationConfiguration::builder()
                .role_arn("arn:aws:iam::123456789012:role/firehose-msk-read")
                .connectivity(Connectivity::Private)
                .build()?,
        )
        .build()?;
    let destination = ExtendedS3DestinationConfiguration::builder()
        .role_arn("arn:aws:iam::123456789012:role/firehose-s3-write")
        .bucket_arn("arn:aws:s3:::shop-api-raw")
        .buffering_hints(BufferingHints::builder().size_in_mbs(5).interval_in_seconds(300).build())
        .build()?;
    let created = client
        .create_delivery_stream()
        .delivery_stream_name(NAME)
        .delivery_stream_type(DeliveryStreamType::MskAsSource)
        .msk_source_configuration(source.clone())
        .extended_s3_destination_configuration(destination.clone())
        .tags(Tag::builder().key("team").value("shop").build()?)
        .send()
        .await?;
    ensure!(
        created.delivery_stream_arn() == Some("arn:aws:firehose:us-east-1:123456789012:deliverystream/orders-api"),
        "{created:?}"
    );
    wait_active(client, NAME).await?;

    let again = client
        .create_delivery_stream()
        .delivery_stream_name(NAME)
        .delivery_stream_type(DeliveryStreamType::MskAsSource)
        .msk_source_configuration(source)
        .extended_s3_destination_configuration(destination)
        .send()
        .await
        .unwrap_err();
    ensure!(error_code(&again) == "ResourceInUseException", "{again:?}");

    // The description echoes what was sent, with AWS's defaults.
    let described = client.describe_delivery_stream().delivery_stream_name(NAME).send().await?;
    let d = described.delivery_stream_description().context("description")?;
    ensure!(d.version_id() == "1" && d.delivery_stream_type() == &DeliveryStreamType::MskAsSource);
    let msk = d.source().and_then(|s| s.msk_source_description()).context("MSK source")?;
    ensure!(msk.topic_name() == Some("shop-events") && msk.delivery_start_timestamp().is_some(), "{msk:?}");
    let dest = &d.destinations()[0];
    ensure!(dest.destination_id() == "destinationId-000000000001");
    let ext = dest.extended_s3_destination_description().context("extended S3")?;
    ensure!(ext.bucket_arn() == "arn:aws:s3:::shop-api-raw");
    ensure!(ext.compression_format() == &aws_sdk_firehose::types::CompressionFormat::Uncompressed);
    ensure!(dest.s3_destination_description().is_some(), "the derived S3 description is there");

    let listed = client.list_delivery_streams().delivery_stream_type(DeliveryStreamType::MskAsSource).send().await?;
    ensure!(listed.delivery_stream_names() == [NAME] && !listed.has_more_delivery_streams());
    let none = client.list_delivery_streams().delivery_stream_type(DeliveryStreamType::DirectPut).send().await?;
    ensure!(none.delivery_stream_names().is_empty(), "the type filter applies");
    let tags = client.list_tags_for_delivery_stream().delivery_stream_name(NAME).send().await?;
    ensure!(tags.tags().len() == 1 && tags.tags()[0].key() == "team");

    // Fed through its topic: 1,000 records under version 1.
    let events = |seed, n| EventGenerator::new(&GeneratorConfig::new(seed, start.timestamp_millis())).take(n);
    stack.produce("shop-events", events(1, 1000)).await?;
    stack.settle(Duration::from_secs(30)).await?;

    let stale = client
        .update_destination()
        .delivery_stream_name(NAME)
        .current_delivery_stream_version_id("7")
        .destination_id("destinationId-000000000001")
        .extended_s3_destination_update(ExtendedS3DestinationUpdate::builder().prefix("v2/").build())
        .send()
        .await
        .unwrap_err();
    ensure!(error_code(&stale) == "ConcurrentModificationException", "{stale:?}");
    client
        .update_destination()
        .delivery_stream_name(NAME)
        .current_delivery_stream_version_id("1")
        .destination_id("destinationId-000000000001")
        .extended_s3_destination_update(ExtendedS3DestinationUpdate::builder().prefix("v2/").build())
        .send()
        .await?;
    let (state, version) = status(client, NAME).await?;
    ensure!(state == DeliveryStreamStatus::Active && version == "2", "{state:?} {version}");

    stack.produce("shop-events", events(2, 500)).await?;
    stack.settle(Duration::from_secs(30)).await?;
    stack.advance(Duration::from_secs(300)).await?;
    // The objects written before the update follow the old prefix, those
    // after it the new one; together they hold every record once.
    let objects = streamlab::harness::read_bucket(stack.s3_client(), "shop-api-raw").await?;
    let mut ids = std::collections::BTreeSet::new();
    for object in &objects {
        for record in streamlab::harness::json_records(&object.body)? {
            ensure!(ids.insert(record["event_id"].to_string()), "a duplicate in {}", object.key);
        }
    }
    ensure!(ids.len() == 1500, "nothing lost across the update: {}", ids.len());
    let v1 = objects.iter().filter(|o| o.key.starts_with("2026/07/13/14/orders-api-1-")).count();
    let v2 = objects.iter().filter(|o| o.key.starts_with("v2/2026/07/13/14/orders-api-2-")).count();
    ensure!(
        v1 > 0 && v2 > 0 && v1 + v2 == objects.len(),
        "keys: {:?}",
        objects.iter().map(|o| &o.key).collect::<Vec<_>>()
    );

    // Puts go to DirectPut streams only, after the request's own limits.
    let record = || Record::builder().data(aws_sdk_firehose::primitives::Blob::new(b"{}".to_vec())).build().unwrap();
    let put = client.put_record().delivery_stream_name(NAME).record(record()).send().await.unwrap_err();
    ensure!(error_code(&put) == "InvalidArgumentException", "{put:?}");
    let mut batch = client.put_record_batch().delivery_stream_name(NAME);
    for _ in 0..501 {
        batch = batch.records(record());
    }
    let too_many = batch.send().await.unwrap_err();
    ensure!(error_code(&too_many) == "ValidationException", "{too_many:?}");

    client.delete_delivery_stream().delivery_stream_name(NAME).send().await?;
    for _ in 0..600 {
        match client.describe_delivery_stream().delivery_stream_name(NAME).send().await {
            Err(e) if error_code(&e) == "ResourceNotFoundException" => break,
            Err(e) => return Err(e.into()),
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    ensure!(client.list_delivery_streams().send().await?.delivery_stream_names().is_empty());
    Ok(())
}

/// One raw JSON 1.1 call, as any SDK sends it.
async fn call(url: &str, operation: &str, body: &serde_json::Value) -> Result<(u16, serde_json::Value)> {
    use http_body_util::{BodyExt, Full};
    let addr = url.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = http::Request::post("/")
        .header("host", addr)
        .header("x-amz-target", format!("Firehose_20150804.{operation}"))
        .header("content-type", "application/x-amz-json-1.1")
        .body(Full::new(bytes::Bytes::from(serde_json::to_vec(body)?)))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&bytes)?))
}

/// Whether every field of `sent` is in `got` with the same value (what
/// Terraform compares after every apply: a field not echoed is a diff).
fn echoed(sent: &serde_json::Value, got: &serde_json::Value, at: &str) -> Result<()> {
    match (sent, got) {
        (serde_json::Value::Object(sent), serde_json::Value::Object(got)) => {
            for (key, value) in sent {
                echoed(
                    value,
                    got.get(key).with_context(|| format!("{at}.{key} is not echoed"))?,
                    &format!("{at}.{key}"),
                )?;
            }
            Ok(())
        }
        (sent, got) => {
            ensure!(sent == got, "{at}: sent {sent}, described {got}");
            Ok(())
        }
    }
}

/// The calls the Terraform AWS provider makes for
/// `aws_kinesis_firehose_delivery_stream`, with every fixture: create, poll
/// describe until ACTIVE, list tags, describe and compare every field sent,
/// update, delete, poll until ResourceNotFoundException.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraforms_calls_see_every_field_it_sent() -> Result<()> {
    use streamlab::transform::FunctionsConfig;
    let options = StackOptions::new(Vec::<String>::new())
        .seed(9)
        .functions(FunctionsConfig { endpoint: Some("http://127.0.0.1:9".into()), ..FunctionsConfig::default() });
    let stack = Arc::new(Stack::start(options).await?);
    let server = FirehoseServer::start(Arc::new(Firehose::new(stack.clone()))).await?;
    let outcome = terraform(server.url()).await;
    stack.shutdown().await?;
    outcome
}

async fn terraform(url: &str) -> Result<()> {
    let mut fixtures: Vec<_> = std::fs::read_dir("fixtures/streams")?
        .chain(std::fs::read_dir("fixtures/direct-put")?)
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    fixtures.sort();
    for path in fixtures {
        let mut sent: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        sent["Tags"] = serde_json::json!([{ "Key": "managed-by", "Value": "terraform" }]);
        let name = sent["DeliveryStreamName"].as_str().context("name")?.to_owned();
        let by_name = serde_json::json!({ "DeliveryStreamName": name });
        let (status, created) = call(url, "CreateDeliveryStream", &sent).await?;
        ensure!(status == 200, "{}: {created}", path.display());
        let described = loop {
            let (_, answer) = call(url, "DescribeDeliveryStream", &by_name).await?;
            let d = answer["DeliveryStreamDescription"].clone();
            if d["DeliveryStreamStatus"] == "ACTIVE" {
                break d;
            }
            ensure!(d["DeliveryStreamStatus"] == "CREATING", "{name}: {d}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let (_, tags) = call(url, "ListTagsForDeliveryStream", &by_name).await?;
        ensure!(tags["Tags"] == sent["Tags"], "{name}: {tags}");
        ensure!(described["DeliveryStreamARN"] == created["DeliveryStreamARN"]);
        echoed(
            &sent["MSKSourceConfiguration"],
            &described["Source"]["MSKSourceDescription"],
            "MSKSourceConfiguration",
        )?;
        let destination = &described["Destinations"][0];
        echoed(&sent["ExtendedS3DestinationConfiguration"], &destination["ExtendedS3DestinationDescription"], &name)?;
        let update = serde_json::json!({
            "DeliveryStreamName": name,
            "CurrentDeliveryStreamVersionId": described["VersionId"],
            "DestinationId": destination["DestinationId"],
            "ExtendedS3DestinationUpdate": { "BufferingHints": { "SizeInMBs": 64, "IntervalInSeconds": 120 } },
        });
        let (status, answer) = call(url, "UpdateDestination", &update).await?;
        ensure!(status == 200, "{name}: {answer}");
        let (_, answer) = call(url, "DescribeDeliveryStream", &by_name).await?;
        let hints = &answer["DeliveryStreamDescription"]["Destinations"][0]["ExtendedS3DestinationDescription"]
            ["BufferingHints"];
        ensure!(hints["SizeInMBs"] == 64 && hints["IntervalInSeconds"] == 120, "{name}: {hints}");
        let (status, answer) = call(url, "DeleteDeliveryStream", &by_name).await?;
        ensure!(status == 200, "{name}: {answer}");
        loop {
            let (status, answer) = call(url, "DescribeDeliveryStream", &by_name).await?;
            if status == 400 && answer["__type"] == "ResourceNotFoundException" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

fn blob(data: impl Into<Vec<u8>>) -> Record {
    Record::builder().data(aws_sdk_firehose::primitives::Blob::new(data.into())).build().expect("data is set")
}

/// A DirectPut stream as an application writes to it: 10,000 records in
/// `PutRecordBatch` calls land exactly once, GZIP, under AWS's key shape,
/// when the interval passes on the manual clock, and not before; AWS's
/// limits and encryption states hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_put_stream_lands_put_records_exactly_once() -> Result<()> {
    let start = Utc.with_ymd_and_hms(2026, 7, 13, 14, 0, 0).unwrap();
    let stack = Arc::new(Stack::start(StackOptions::new(Vec::<String>::new()).manual_clock(start).seed(5)).await?);
    let server = FirehoseServer::start(Arc::new(Firehose::new(stack.clone()))).await?;
    let outcome = direct_put(&stack, &client(server.url()), server.url()).await;
    stack.shutdown().await?;
    outcome
}

async fn direct_put(stack: &Stack, client: &Client, url: &str) -> Result<()> {
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("fixtures/direct-put/clickstream.json")?)?;
    let (status, created) = call(url, "CreateDeliveryStream", &spec).await?;
    ensure!(status == 200, "{created}");
    ensure!(created["DeliveryStreamARN"] == "arn:aws:firehose:us-east-1:000000000000:deliverystream/clickstream");
    wait_active(client, "clickstream").await?;
    let described = client.describe_delivery_stream().delivery_stream_name("clickstream").send().await?;
    let d = described.delivery_stream_description().context("description")?;
    ensure!(d.delivery_stream_type() == &DeliveryStreamType::DirectPut && d.source().is_none(), "{d:?}");
    let encryption = d.delivery_stream_encryption_configuration().context("encryption")?;
    ensure!(encryption.status() == Some(&aws_sdk_firehose::types::DeliveryStreamEncryptionStatus::Disabled));
    let listed = client.list_delivery_streams().delivery_stream_type(DeliveryStreamType::DirectPut).send().await?;
    ensure!(listed.delivery_stream_names() == ["clickstream"]);

    // With no DeliveryStreamType, a stream is DirectPut, as on AWS.
    let mut untyped = spec.clone();
    untyped["DeliveryStreamName"] = "untyped".into();
    untyped.as_object_mut().context("object")?.remove("DeliveryStreamType");
    let (status, answer) = call(url, "CreateDeliveryStream", &untyped).await?;
    ensure!(status == 200, "{answer}");
    wait_active(client, "untyped").await?;
    let (_, answer) =
        call(url, "DescribeDeliveryStream", &serde_json::json!({"DeliveryStreamName": "untyped"})).await?;
    ensure!(answer["DeliveryStreamDescription"]["DeliveryStreamType"] == "DirectPut", "{answer}");
    client.delete_delivery_stream().delivery_stream_name("untyped").send().await?;

    // AWS's limits, before anything is put.
    let mut too_many = client.put_record_batch().delivery_stream_name("clickstream");
    for _ in 0..501 {
        too_many = too_many.records(blob(b"{}".to_vec()));
    }
    let e = too_many.send().await.unwrap_err();
    ensure!(error_code(&e) == "ValidationException", "501 records: {e:?}");
    let mut too_large = client.put_record_batch().delivery_stream_name("clickstream");
    for size in [1_000_000, 1_000_000, 1_000_000, 1_000_000, 4 * 1024 * 1024 - 4_000_000 + 1] {
        too_large = too_large.records(blob(vec![b'x'; size]));
    }
    let e = too_large.send().await.unwrap_err();
    ensure!(error_code(&e) == "InvalidArgumentException", "4 MiB + 1 byte: {e:?}");
    let e = client.put_record().delivery_stream_name("clickstream").record(blob(vec![b'x'; 1_024_001])).send().await;
    let e = e.unwrap_err();
    ensure!(error_code(&e) == "ValidationException", "1,000 KiB + 1: {e:?}");
    let e = client.put_record().delivery_stream_name("nope").record(blob(b"{}".to_vec())).send().await.unwrap_err();
    ensure!(error_code(&e) == "ResourceNotFoundException", "{e:?}");

    // 10,000 records in 20 batches: every one answered with a RecordId.
    let mut record_ids = std::collections::BTreeSet::new();
    for batch in 0..20 {
        let mut call = client.put_record_batch().delivery_stream_name("clickstream");
        for i in 0..500 {
            call = call.records(blob(format!("{{\"n\":{}}}\n", batch * 500 + i)));
        }
        let answer = call.send().await?;
        ensure!(answer.failed_put_count() == 0 && answer.request_responses().len() == 500, "{answer:?}");
        for response in answer.request_responses() {
            ensure!(record_ids.insert(response.record_id().context("a RecordId")?.to_owned()));
        }
    }
    let single = client.put_record().delivery_stream_name("clickstream").record(blob("{\"n\":10000}\n")).send().await?;
    ensure!(single.record_id().len() == 56 && !single.encrypted().unwrap_or(true), "{single:?}");

    stack.settle(Duration::from_secs(30)).await?;
    ensure!(
        streamlab::harness::read_bucket(stack.s3_client(), "shop-clickstream").await?.is_empty(),
        "not before the interval"
    );
    stack.advance(Duration::from_secs(300)).await?;
    let objects = streamlab::harness::read_bucket(stack.s3_client(), "shop-clickstream").await?;
    ensure!(!objects.is_empty(), "landed after the interval");
    let key = regex::Regex::new(
        r"^2026/07/13/14/clickstream-1-2026-07-13-14-00-00-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.gz$",
    )?;
    let mut seen = std::collections::BTreeSet::new();
    for object in &objects {
        ensure!(key.is_match(&object.key), "AWS's key shape: {}", object.key);
        ensure!(object.content_encoding.as_deref() == Some("gzip"), "{}: {:?}", object.key, object.content_encoding);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(&object.body[..]), &mut text)?;
        for line in text.lines() {
            let n = serde_json::from_str::<serde_json::Value>(line)?["n"].as_u64().context("n")?;
            ensure!(seen.insert(n), "record {n} landed twice");
        }
    }
    ensure!(seen.len() == 10_001 && seen.last() == Some(&10_000), "exactly once: {} records", seen.len());

    // Encryption: ENABLING then ENABLED; puts then say Encrypted.
    client.start_delivery_stream_encryption().delivery_stream_name("clickstream").send().await?;
    let status = |d: &aws_sdk_firehose::operation::describe_delivery_stream::DescribeDeliveryStreamOutput| {
        d.delivery_stream_description()
            .and_then(|d| d.delivery_stream_encryption_configuration())
            .and_then(|e| e.status().cloned())
    };
    let first = client.describe_delivery_stream().delivery_stream_name("clickstream").send().await?;
    ensure!(status(&first) == Some(aws_sdk_firehose::types::DeliveryStreamEncryptionStatus::Enabling));
    let again = client.start_delivery_stream_encryption().delivery_stream_name("clickstream").send().await;
    ensure!(error_code(&again.unwrap_err()) == "ResourceInUseException", "a change while one is under way");
    let mut enabled = false;
    for _ in 0..100 {
        let d = client.describe_delivery_stream().delivery_stream_name("clickstream").send().await?;
        if status(&d) == Some(aws_sdk_firehose::types::DeliveryStreamEncryptionStatus::Enabled) {
            enabled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ensure!(enabled, "encryption became ENABLED");
    let put = client.put_record().delivery_stream_name("clickstream").record(blob("{}\n")).send().await?;
    ensure!(put.encrypted() == Some(true), "{put:?}");
    client.stop_delivery_stream_encryption().delivery_stream_name("clickstream").send().await?;
    let stopping = client.describe_delivery_stream().delivery_stream_name("clickstream").send().await?;
    ensure!(status(&stopping) == Some(aws_sdk_firehose::types::DeliveryStreamEncryptionStatus::Disabling));
    Ok(())
}

/// Puts are refused record by record, never dropped, while the stream is
/// at the stack's memory bound (S3 down): `FailedPutCount` and
/// `ServiceUnavailableException` for those records; resent once S3 is
/// back, every record lands once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_past_the_memory_bound_are_refused_not_dropped() -> Result<()> {
    let start = Utc.with_ymd_and_hms(2026, 7, 13, 14, 0, 0).unwrap();
    let mut options =
        StackOptions::new(["fixtures/direct-put/clickstream.json"]).manual_clock(start).seed(3).faults(11);
    options.max_buffered_bytes = 256 * 1024;
    let stack = Arc::new(Stack::start(options).await?);
    let server = FirehoseServer::start(Arc::new(Firehose::new(stack.clone()))).await?;
    let outcome = throttled(&stack, &client(server.url())).await;
    stack.shutdown().await?;
    outcome
}

async fn throttled(stack: &Stack, client: &Client) -> Result<()> {
    let faults = stack.faults().context("faults")?;
    faults.s3.set_down(true);
    let record = |n: usize| format!("{{\"n\":{n},\"pad\":\"{}\"}}\n", "x".repeat(1000));
    let mut refused = Vec::new();
    let mut n = 0;
    // Well past the bound: 1 MiB put into a 256 KiB bound with S3 down.
    for _ in 0..10 {
        let mut call = client.put_record_batch().delivery_stream_name("clickstream");
        let numbers: Vec<usize> = (n..n + 100).collect();
        n += 100;
        for i in &numbers {
            call = call.records(blob(record(*i)));
        }
        let answer = call.send().await?;
        for (i, response) in numbers.iter().zip(answer.request_responses()) {
            if let Some(code) = response.error_code() {
                ensure!(code == "ServiceUnavailableException" && response.error_message() == Some("Slow down."));
                refused.push(*i);
            }
        }
        ensure!(
            answer.failed_put_count() as usize
                == answer.request_responses().iter().filter(|r| r.error_code().is_some()).count()
        );
    }
    ensure!(!refused.is_empty(), "the bound refused records");
    let single = client.put_record().delivery_stream_name("clickstream").record(blob(record(n))).send().await;
    ensure!(error_code(&single.unwrap_err()) == "ServiceUnavailableException", "PutRecord is refused whole");

    // S3 back: the refused records are resent, as a caller does.
    faults.s3.set_down(false);
    let stats = stack.stats("clickstream").await?;
    common::wait_for("the held objects to land", Duration::from_secs(60), || stats.put_failure().is_none()).await?;
    let mut pending = refused;
    for _ in 0..200 {
        if pending.is_empty() {
            break;
        }
        stack.advance(Duration::from_secs(300)).await?;
        let mut call = client.put_record_batch().delivery_stream_name("clickstream");
        let batch: Vec<usize> = pending.iter().copied().take(100).collect();
        for i in &batch {
            call = call.records(blob(record(*i)));
        }
        let answer = call.send().await?;
        let failed: Vec<usize> = batch
            .iter()
            .zip(answer.request_responses())
            .filter(|(_, r)| r.error_code().is_some())
            .map(|(i, _)| *i)
            .collect();
        pending.retain(|i| !batch.contains(i) || failed.contains(i));
    }
    ensure!(pending.is_empty(), "{} records still refused", pending.len());
    stack.settle(Duration::from_secs(30)).await?;
    stack.advance(Duration::from_secs(300)).await?;
    let mut seen = std::collections::BTreeMap::new();
    for object in streamlab::harness::read_bucket(stack.s3_client(), "shop-clickstream").await? {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(&object.body[..]), &mut text)?;
        for line in text.lines() {
            let n = serde_json::from_str::<serde_json::Value>(line)?["n"].as_u64().context("n")?;
            *seen.entry(n).or_insert(0) += 1;
        }
    }
    ensure!(seen.len() == 1000 && seen.values().all(|c| *c == 1), "every record once: {} distinct", seen.len());
    Ok(())
}
