use serde_json::json;

use super::*;

fn base() -> Value {
    json!({
        "DeliveryStreamName": "orders-to-s3",
        "DeliveryStreamType": "MSKAsSource",
        "MSKSourceConfiguration": {
            "MSKClusterARN": "arn:aws:kafka:us-east-1:123456789012:cluster/shop/0b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e-1",
            "TopicName": "orders",
            "AuthenticationConfiguration": {
                "RoleARN": "arn:aws:iam::123456789012:role/firehose-msk",
                "Connectivity": "PRIVATE"
            }
        },
        "ExtendedS3DestinationConfiguration": {
            "RoleARN": "arn:aws:iam::123456789012:role/firehose-s3",
            "BucketARN": "arn:aws:s3:::shop-events"
        }
    })
}

fn with(mut v: Value, path: &[&str], value: Value) -> Value {
    let mut at = &mut v;
    for key in &path[..path.len() - 1] {
        at = at.as_object_mut().unwrap().entry(*key).or_insert(json!({}));
    }
    at[path[path.len() - 1]] = value;
    v
}

fn messages(v: Value) -> Vec<String> {
    validate(&v).unwrap_err().iter().map(ToString::to_string).collect()
}

#[test]
fn minimal_spec_gets_firehose_defaults() {
    let spec = validate(&base()).unwrap();
    assert_eq!(spec.name, "orders-to-s3");
    assert_eq!(spec.topic, "orders");
    assert_eq!(spec.bucket, "shop-events");
    assert_eq!(spec.buffer, BufferHints::DEFAULT);
    assert_eq!(spec.compression, Compression::Uncompressed);
    assert_eq!(spec.extension, "");
    assert_eq!(spec.start, StartPosition::ActivationTime);
    assert!(!spec.append_newline);
    assert_eq!(spec.prefix, Template::parse("").unwrap().then_uncounted(Template::timestamp("yyyy/MM/dd/HH/")));
}

#[test]
fn prefix_without_timestamp_gets_default_appended_without_slash() {
    let spec = validate(&with(base(), &[S3, "Prefix"], json!("legacy"))).unwrap();
    assert_eq!(spec.prefix, Template::parse("legacy").unwrap().then_uncounted(Template::timestamp("yyyy/MM/dd/HH/")));
}

#[test]
fn epoch_means_earliest_and_iso_strings_parse() {
    let spec = validate(&with(base(), &[MSK, "ReadFromTimestamp"], json!(0))).unwrap();
    assert_eq!(spec.start, StartPosition::Earliest);
    let spec = validate(&with(base(), &[MSK, "ReadFromTimestamp"], json!("2026-07-13T14:00:00Z"))).unwrap();
    assert_eq!(spec.start, StartPosition::Timestamp(1_783_951_200_000));
}

#[test]
fn unknown_fields_are_named_with_their_path() {
    let m = messages(with(base(), &[S3, "BufferingHint"], json!({})));
    assert_eq!(m.len(), 1);
    assert!(m[0].starts_with("ExtendedS3DestinationConfiguration.BufferingHint: unknown field `BufferingHint`, expected one of `RoleARN`"), "{m:?}");
}

#[test]
fn collects_every_violation() {
    let v = with(base(), &[S3, "BufferingHints"], json!({"SizeInMBs": 500, "IntervalInSeconds": 901}));
    let v = with(v, &[S3, "CompressionFormat"], json!("SNAPPY"));
    let v = with(v, &["DeliveryStreamName"], json!("bad name!"));
    let m = messages(v);
    assert_eq!(
        m,
        [
            "DeliveryStreamName: Value at 'deliveryStreamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; got \"bad name!\"",
            "ExtendedS3DestinationConfiguration.BufferingHints.SizeInMBs: Value at 'extendedS3DestinationConfiguration.bufferingHints.sizeInMBs' failed to satisfy constraint: Member must have value less than or equal to 128; got 500",
            "ExtendedS3DestinationConfiguration.BufferingHints.IntervalInSeconds: Value at 'extendedS3DestinationConfiguration.bufferingHints.intervalInSeconds' failed to satisfy constraint: Member must have value less than or equal to 900; got 901",
            "ExtendedS3DestinationConfiguration.CompressionFormat: Value at 'extendedS3DestinationConfiguration.compressionFormat' failed to satisfy constraint: Member must satisfy enum value set: [ZIP, HADOOP_SNAPPY, Snappy, GZIP, UNCOMPRESSED]; got \"SNAPPY\" (case-sensitive)",
        ]
    );
}

#[test]
fn expressions_require_error_prefix_with_aws_message() {
    let m = messages(with(base(), &[S3, "Prefix"], json!("year=!{timestamp:yyyy}/")));
    assert_eq!(m, [format!("{S3}.ErrorOutputPrefix: {ERROR_PREFIX_REQUIRED}")]);
}

#[test]
fn error_prefix_with_expressions_needs_error_output_type() {
    let v = with(base(), &[S3, "Prefix"], json!("year=!{timestamp:yyyy}/"));
    let m = messages(with(v, &[S3, "ErrorOutputPrefix"], json!("errors/!{timestamp:yyyy}/")));
    assert_eq!(
        m,
        [format!(
            "{S3}.ErrorOutputPrefix: {PREFIX_RULE}ErrorOutputPrefix must contain at least one occurrence of !{{firehose:error-output-type}}"
        )]
    );
}

#[test]
fn one_hint_without_the_other_is_rejected() {
    let m = messages(with(base(), &[S3, "BufferingHints"], json!({"SizeInMBs": 64})));
    assert_eq!(m.len(), 1);
    assert!(m[0].contains("must be given together"), "{m:?}");
}

#[test]
fn two_destinations_are_rejected_with_aws_message() {
    let m = messages(with(base(), &["S3DestinationConfiguration"], json!({})));
    assert!(
        m.iter().any(|s| s.ends_with("Exactly one destination configuration is supported for a Firehose")),
        "{m:?}"
    );
}

#[test]
fn member_paths_are_aws_s() {
    assert_eq!(
        aws_member("ExtendedS3DestinationConfiguration.BufferingHints.SizeInMBs"),
        "extendedS3DestinationConfiguration.bufferingHints.sizeInMBs"
    );
    assert_eq!(
        aws_member("ExtendedS3DestinationConfiguration.ProcessingConfiguration.Processors[0].Parameters[1].ParameterValue"),
        "extendedS3DestinationConfiguration.processingConfiguration.processors.1.member.parameters.2.member.parameterValue"
    );
    assert_eq!(aws_member("MSKSourceConfiguration.TopicName"), "mSKSourceConfiguration.topicName");
}

#[test]
fn query_keys_come_from_object_literals() {
    assert_eq!(
        query_keys("{customer_id: .customer_id, \"type\": .event_type}"),
        Some(vec!["customer_id".into(), "type".into()])
    );
    assert_eq!(query_keys("{a: (.x | split(\",\")[0]), b: .b}"), Some(vec!["a".into(), "b".into()]));
    assert_eq!(query_keys("{customer_id}"), Some(vec!["customer_id".into()]));
    assert_eq!(query_keys(".keys"), None);
    assert_eq!(query_keys("{(.k): .v}"), None);
}

#[test]
fn time_zones_follow_aws_s_list() {
    for (zone, ok) in [
        ("Asia/Calcutta", true),
        ("Europe/Kiev", true),
        ("UTC", true),
        ("America/New_York", true),
        ("Asia/Kolkata", false),
        ("Europe/Kyiv", false),
        ("EST", false),
    ] {
        let result = validate(&with(base(), &[S3, "CustomTimeZone"], json!(zone)));
        assert_eq!(result.is_ok(), ok, "{zone}: {result:?}");
        if !ok {
            let m = messages(with(base(), &[S3, "CustomTimeZone"], json!(zone)));
            assert!(m[0].contains("Provided custom time zone is not supported. Custom time zones are limited to UTC and non-3-letter IANA time zones."), "{m:?}");
        }
    }
}

/// Measured on AWS: the limit counts the `Prefix` given, not the default
/// time prefix Firehose appends to a literal one.
#[test]
fn a_literal_prefix_of_512_characters_is_accepted_and_513_refused() {
    let spec = validate(&with(base(), &[S3, "Prefix"], json!("p".repeat(512)))).unwrap();
    let mut random = || "r".repeat(11);
    let mut ctx = crate::prefix::RenderContext {
        instant: chrono::DateTime::from_timestamp(1_796_392_800, 0).unwrap(),
        time_zone: chrono_tz::UTC,
        random_string: &mut random,
        error_output_type: None,
        partition_key: &|_, _| None,
    };
    // It renders too: objects of the accepted spec are delivered.
    assert_eq!(spec.prefix.render(&mut ctx).unwrap(), format!("{}2026/12/04/14/", "p".repeat(512)));
    let refused = messages(with(base(), &[S3, "Prefix"], json!("p".repeat(513))));
    assert!(refused.iter().any(|m| m.contains("it evaluates to 513 characters")), "{refused:?}");
}

/// AWS accepts the Decompression processor; streamlab does not emulate it,
/// so the spec is valid with a note and refused only when it would start.
#[test]
fn decompression_is_valid_but_marked_unemulated() {
    let processing = json!({"Enabled": true, "Processors": [
        {"Type": "Decompression", "Parameters": [{"ParameterName": "CompressionFormat", "ParameterValue": "GZIP"}]},
        {"Type": "CloudWatchLogProcessing", "Parameters": [{"ParameterName": "DataMessageExtraction", "ParameterValue": "true"}]}
    ]});
    let spec = validate(&with(base(), &[S3, "ProcessingConfiguration"], processing)).unwrap();
    let notes: Vec<String> = spec.unemulated().iter().map(ToString::to_string).collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[0].starts_with(&format!(
            "{S3}.ProcessingConfiguration.Processors[0].Type: streamlab does not emulate the Decompression processor"
        )),
        "{notes:?}"
    );
    assert!(validate(&base()).unwrap().unemulated().is_empty());
}
