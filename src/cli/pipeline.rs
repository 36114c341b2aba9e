//! The pipeline's own commands: `validate` a spec, `produce` events, and
//! `deliver` a stream (the Firehose emulator as a process of its own).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use streamlab::cloudwatch::publish::{self, MonthlyCost, Published};
use streamlab::delivery::sink::{self, S3Settings, S3Sink};
use streamlab::delivery::source::{Membership, SourceSettings};
use streamlab::delivery::state::{DirStateStore, StateStore, TopicStateStore};
use streamlab::delivery::{Delivery, Endpoints, EngineLimits, Plan, Settings};
use streamlab::events::GeneratorConfig;
use streamlab::producer::{self, ProducerOptions, ProducerStats};
use streamlab::spec;
use streamlab::transform::Functions;
use tokio_util::sync::CancellationToken;

use super::{shutdown_on_signals, DeliverArgs, DeployArgs, ProduceArgs, TimestampSource};

/// `streamlab validate`.
pub fn validate(specs: &[PathBuf]) -> ExitCode {
    let files = match spec::json_files(specs) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut ok = true;
    for path in &files {
        match spec::load(path) {
            Ok(s) => {
                println!(
                    "{}: valid (stream {:?}, {}, bucket {:?})",
                    path.display(),
                    s.name(),
                    s.source_label(),
                    s.bucket()
                );
                for part in s.unemulated() {
                    println!("  warning: {part}");
                }
            }
            Err(e) => {
                ok = false;
                println!("{e}");
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `streamlab produce`.
pub async fn produce(args: ProduceArgs) -> Result<()> {
    let shutdown = shutdown_on_signals();
    let clock = args.clock.clock();
    let speedup = args.clock.speedup.unwrap_or(1.0);
    let mut generator = GeneratorConfig::new(args.seed, args.start.unwrap_or_else(|| clock.now_millis()));
    if let Some(rate) = args.rate {
        generator = generator.paced(rate, speedup);
    }
    let options = ProducerOptions {
        kafka: args.kafka.options().connect(&args.bootstrap).await?,
        topic: args.topic,
        rate: args.rate,
        count: args.count,
        generator,
        event_timestamps: args.timestamps == TimestampSource::Event,
    };
    let stats = Arc::new(ProducerStats::default());
    let progress = {
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            tick.tick().await;
            loop {
                tick.tick().await;
                eprintln!("produced {} (acknowledged)", stats.acked());
            }
        })
    };
    let result = producer::produce(&options, clock, stats.clone(), shutdown).await;
    progress.abort();
    result.with_context(|| format!("producing to topic {:?}", options.topic))?;
    println!("produced {} events to {:?} (seed {})", stats.acked(), options.topic, options.generator.seed);
    Ok(())
}

/// `streamlab deliver`.
pub async fn deliver(args: DeliverArgs) -> Result<()> {
    // Invalid configuration is rejected before anything connects.
    let spec = spec::load(&args.spec)?;
    if spec.is_direct_put() {
        anyhow::bail!(
            "{}: stream {:?} is a DirectPut stream (DeliveryStreamType DirectPut, or none given): `deliver` reads an MSK topic. Run it in a stack (`streamlab up --spec {}`) and write with PutRecord/PutRecordBatch to its Firehose endpoint, or set DeliveryStreamType to MSKAsSource with an MSKSourceConfiguration",
            args.spec.display(),
            spec.name(),
            args.spec.display()
        );
    }
    // Signals are caught from here on: a SIGTERM or Ctrl-C while delivery
    // connects (a static member's join takes seconds) stops it cleanly
    // instead of killing the process with the default action.
    let shutdown = shutdown_on_signals();
    let settings = Settings {
        functions: Arc::new(Functions::new(args.lambda.config())),
        glue_dir: args.glue_dir.clone(),
        clock: args.clock.clock(),
        seed: None,
        limits: EngineLimits {
            active_partition_limit: args.active_partition_limit,
            max_buffered_bytes: args.max_buffered_bytes,
            max_in_flight: args.max_in_flight.map_or_else(streamlab::delivery::default_max_in_flight, usize::from),
        },
    };
    let functions = settings.functions.clone();
    let plan_clock = settings.clock.clone();
    let plan = Plan::prepare(spec.clone(), &settings)?;
    let publisher = match args.cloudwatch {
        true => Some(cloudwatch_publisher(&args).await?),
        false => None,
    };
    let kafka = args.kafka.options().connect(&args.bootstrap).await?;
    let state = match &args.state_dir {
        Some(dir) => StateStore::Dir(DirStateStore::new(dir)),
        None => StateStore::Topic(TopicStateStore::new(kafka.clone())),
    };
    let s3 = S3Settings { endpoint: args.s3_endpoint.clone(), region: args.region, credentials: None };
    let sink = S3Sink::new(sink::client(&s3).await, spec.bucket(), args.s3_endpoint.as_deref());
    let source = SourceSettings {
        instance_id: args.instance_id,
        max_poll_interval: args.max_poll_interval,
        exit_at_end: args.exit_at_end,
        ..SourceSettings::new(kafka, Membership::Group)
    };
    let connected = tokio::select! {
        connected = Delivery::connect(plan, Endpoints { source, state, sink }) => Some(connected),
        () = shutdown.cancelled() => None,
    };
    let delivery = match connected {
        Some(Ok(delivery)) => delivery,
        Some(Err(e)) => {
            functions.stop().await;
            return Err(e.into());
        }
        None => {
            functions.stop().await;
            eprintln!("stopped before delivery started: nothing was read, nothing to commit");
            return Ok(());
        }
    };
    eprintln!(
        "delivering stream {:?} version {}: topic {:?} -> s3://{}/ (Ctrl-C to stop)",
        spec.name(),
        delivery.state().version,
        spec.topic(),
        spec.bucket()
    );
    if let Some(addr) = args.metrics_addr {
        let (stats, spec, limit, clock) =
            (delivery.stats(), spec.clone(), args.active_partition_limit, plan_clock.clone());
        let page = std::sync::Arc::new(move || {
            let figures = streamlab::cloudwatch::firehose::StreamFigures::of(&spec, &stats, limit);
            streamlab::cloudwatch::prometheus::render(&[figures], clock.now_millis())
        });
        let bound = streamlab::cloudwatch::prometheus::serve(addr, shutdown.clone(), page)
            .await
            .with_context(|| format!("--metrics-addr {addr}: cannot listen there; choose a free port"))?;
        eprintln!("metrics at http://{bound}/metrics");
    }
    let publishing = publisher.map(|publisher| {
        let stream = Published {
            spec: spec.clone(),
            version: delivery.state().version,
            stats: delivery.stats(),
            active_partition_limit: args.active_partition_limit,
            clock: plan_clock.clone(),
        };
        let figures =
            streamlab::cloudwatch::firehose::StreamFigures::of(&spec, &stream.stats, args.active_partition_limit);
        eprintln!(
            "publishing to CloudWatch namespace {:?} every minute: {}",
            args.cloudwatch_namespace,
            MonthlyCost::of(publish::metric_count(&figures))
        );
        let stop = CancellationToken::new();
        (tokio::spawn(publish::publish_until(publisher, stream, stop.clone())), stop)
    });
    let stats = delivery.run(shutdown).await;
    if let Some((task, stop)) = publishing {
        // The last minute is sent after the last landing, so the sums
        // equal the counters.
        stop.cancel();
        if let Ok(publisher) = task.await {
            eprintln!(
                "CloudWatch: {} datapoints sent in {} PutMetricData calls{}",
                publisher.sent,
                publisher.calls,
                if publisher.dropped > 0 {
                    format!(", {} dropped while CloudWatch did not answer", publisher.dropped)
                } else {
                    String::new()
                }
            );
        }
    }
    functions.stop().await;
    let stats = stats?;
    let summary = streamlab::delivery::stats::Summary::of(&stats);
    eprintln!("stopped: {summary}");
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    let undelivered = summary.undelivered();
    if undelivered > 0 {
        bail!("{undelivered} records were read but not delivered; they are uncommitted and will be re-read on the next start");
    }
    Ok(())
}

/// The CloudWatch publisher of `deliver --cloudwatch`, checked before
/// delivery starts: the namespace, and credentials from the AWS chain.
async fn cloudwatch_publisher(args: &DeliverArgs) -> Result<publish::Publisher> {
    publish::validate_namespace(&args.cloudwatch_namespace)?;
    let mut loader = streamlab::aws_http::loader();
    if let Some(region) = &args.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    let config = loader.load().await;
    if config.region().is_none() {
        bail!("--cloudwatch: no AWS region; set AWS_REGION (or --region, or a profile's region)");
    }
    streamlab::aws_error::check_credentials(&config).await.map_err(|e| {
        anyhow::anyhow!("--cloudwatch: no AWS credentials for CloudWatch ({e}). Configure the standard chain (`aws configure`, AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY); for a stack, source its env file")
    })?;
    Ok(publish::Publisher::new(&config, &args.cloudwatch_namespace)?)
}

/// `streamlab deploy`.
pub async fn deploy(args: DeployArgs) -> Result<ExitCode> {
    // Every spec is checked before anything is sent.
    let specs: Vec<spec::StreamSpec> =
        streamlab::stack::load_specs(&args.specs)?.into_iter().map(|(_, spec)| spec).collect();
    let mut loader = streamlab::aws_http::loader();
    if let Some(region) = &args.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(url) = &args.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let config = loader.load().await;
    streamlab::deploy::check_credentials(&config).await?;
    let client = aws_sdk_firehose::Client::new(&config);
    for spec in &specs {
        eprintln!("{}: deploying (waiting for ACTIVE)", spec.name());
        let deployed = streamlab::deploy::deploy(&client, spec, args.timeout).await?;
        let action = if deployed.created { "created" } else { "updated" };
        println!("{}: {action}, {} version {}", deployed.stream, deployed.arn, deployed.version);
    }
    Ok(ExitCode::SUCCESS)
}
