//! `ProcessingConfiguration`: processors, Lambda, metadata extraction and
//! dynamic partitioning.

use super::*;

/// What the processors do, once checked.
#[derive(Default)]
pub(super) struct Processing {
    /// A MetadataExtraction processor is configured (even if its query is
    /// invalid, which is reported on its own).
    pub(super) has_metadata_extraction: bool,
    pub(super) append_newline: bool,
    pub(super) deaggregation: Option<Deaggregation>,
    pub(super) metadata_query: Option<String>,
    pub(super) lambda: Option<LambdaProcessor>,
}

pub(super) fn check_processing(
    config: Option<&raw::ProcessingConfiguration>,
    dynamic_partitioning: bool,
    r: &mut Report,
) -> Option<Processing> {
    let Some(config) = config else { return Some(Processing::default()) };
    let path = format!("{S3}.ProcessingConfiguration");
    let enabled = config.enabled == Some(true);
    let processors = config.processors.as_deref().unwrap_or_default();
    if enabled && !(1..=5).contains(&processors.len()) {
        r.add(
            format!("{path}.Processors"),
            "A maximum of 5 and a minimum of 1 processor needs to be supplied when processing is enabled.",
        );
    }
    let kinds: BTreeSet<&str> = processors.iter().filter_map(|p| p.kind.as_deref()).collect();
    let mut out = Processing::default();
    let (mut ok, mut lambdas) = (true, 0);
    for (i, processor) in processors.iter().enumerate() {
        let at = format!("{path}.Processors[{i}]");
        let Some(kind) = r.required(&format!("{at}.Type"), &processor.kind) else {
            ok = false;
            continue;
        };
        if !r.enumerated(&format!("{at}.Type"), kind, PROCESSOR_TYPES) {
            ok = false;
            continue;
        }
        let mut params: BTreeMap<&str, &str> = BTreeMap::new();
        for (j, parameter) in processor.parameters.iter().flatten().enumerate() {
            let p = format!("{at}.Parameters[{j}]");
            let name = r.required(&format!("{p}.ParameterName"), &parameter.parameter_name);
            let value = r.required(&format!("{p}.ParameterValue"), &parameter.parameter_value);
            if let Some(name) = name {
                ok &= r.enumerated(&format!("{p}.ParameterName"), name, PARAMETER_NAMES);
            }
            if let Some(value) = value {
                r.string(&format!("{p}.ParameterValue"), value, 1, 5120, Some((&NOT_BLANK, r"^(?!\s*$).+")));
            }
            if let (Some(name), Some(value)) = (name, value) {
                params.insert(name, value);
            }
        }
        if !enabled {
            continue;
        }
        match kind.as_str() {
            "AppendDelimiterToRecord" => out.append_newline = true,
            "MetadataExtraction" | "RecordDeAggregation" if !dynamic_partitioning => {
                r.add(
                    format!("{at}.Type"),
                    format!(
                        "class com.amazonaws.services.firehose.internal.model.{kind}Processor can only be present when Dynamic Partitioning is enabled."
                    ),
                );
                ok = false;
            }
            "MetadataExtraction" => {
                out.has_metadata_extraction = true;
                if params.get("JsonParsingEngine") != Some(&"JQ-1.6") {
                    r.add(format!("{at}.Parameters"), "MetaDataExtraction JSON Parsing Engine has to be one of JQ-1.6");
                }
                match params.get("MetadataExtractionQuery") {
                    None => r.add(
                        format!("{at}.Parameters"),
                        "MetadataExtraction needs a MetadataExtractionQuery parameter",
                    ),
                    Some(query) => match extract::check_query(query) {
                        Ok(()) => out.metadata_query = Some((*query).to_owned()),
                        Err(e) => r.add(format!("{at}.Parameters"), format!("MetadataExtractionQuery: {e}")),
                    },
                }
            }
            "RecordDeAggregation" => match params.get("SubRecordType").copied() {
                Some("JSON") => out.deaggregation = Some(Deaggregation::Json),
                Some("DELIMITED") => match params.get("Delimiter").map(|d| BASE64.decode(d)) {
                    Some(Ok(delimiter)) if !delimiter.is_empty() => {
                        out.deaggregation = Some(Deaggregation::Delimited(delimiter))
                    }
                    Some(_) => r.add(format!("{at}.Parameters"), "Delimiter must be a non-empty base64-encoded string"),
                    None => r.add(format!("{at}.Parameters"), "Delimiter should be present for DELIMITED"),
                },
                _ => r.add(format!("{at}.Parameters"), "SubRecordType has to be one of JSON, DELIMITED"),
            },
            "Lambda" => {
                lambdas += 1;
                if lambdas > 1 {
                    r.add(format!("{at}.Type"), "Cannot have more than 1 Lambda processor.");
                    ok = false;
                } else {
                    out.lambda = check_lambda(&at, &params, r);
                    ok &= out.lambda.is_some();
                }
            }
            "CloudWatchLogProcessing" if !kinds.contains("Decompression") => {
                r.add(
                    format!("{at}.Type"),
                    "CloudWatchLogProcessingProcessor can only be enabled with DecompressionProcessor",
                );
                ok = false;
            }
            // Valid on AWS; refused when the stream starts (Plan::prepare).
            "Decompression" | "CloudWatchLogProcessing" => {
                r.unemulated(format!("{at}.Type"), &format!("the {kind} processor"))
            }
            _ => {
                r.unsupported(format!("{at}.Type"), &format!("the {kind} processor"));
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// A `Lambda` processor's parameters, with AWS's messages.
pub(super) fn check_lambda(at: &str, params: &BTreeMap<&str, &str>, r: &mut Report) -> Option<LambdaProcessor> {
    let path = format!("{at}.Parameters");
    let Some(arn) = params.get("LambdaArn") else {
        r.add(&path, "LambdaArn is required when Lambda processor is used.");
        return None;
    };
    let mut ok = true;
    let retries = match params.get("NumberOfRetries").map(|v| v.parse::<u32>()) {
        None => 3,
        Some(Ok(n)) if n <= 300 => n,
        Some(_) => {
            r.add(&path, "Number of retries for lambda must be between 0 and 300.");
            ok = false;
            0
        }
    };
    let default = LambdaProcessor::DEFAULT_BUFFER;
    let buffer = match (params.get("BufferSizeInMBs"), params.get("BufferIntervalInSeconds")) {
        (None, None) => default,
        (Some(size), Some(interval)) => {
            let size = size.parse::<f64>().ok().filter(|s| (0.2..=3.0).contains(s));
            let interval = interval.parse::<u64>().ok().filter(|i| *i <= 900);
            if size.is_none() {
                r.add(&path, "BufferSizeInMBs for lambda processor must be between 0.2 and 3.");
            }
            if interval.is_none() {
                r.add(&path, "BufferIntervalInSeconds for lambda processor must be between 0 and 900.");
            }
            let (size, interval) = (size?, interval?);
            BufferHints { size_bytes: (size * MIB as f64) as u64, interval: Duration::from_secs(interval) }
        }
        _ => {
            r.add(
                &path,
                "Both BufferSizeInMBs and BufferIntervalInSeconds are required to configure buffering for lambda processor.",
            );
            return None;
        }
    };
    ok.then(|| LambdaProcessor { arn: (*arn).to_owned(), retries, buffer })
}

/// The keys a `MetadataExtractionQuery` object literal such as
/// `{customer_id: .customer_id, "type": .event_type}` produces; `None` when
/// the query is not an object literal (its keys are known only at run time).
pub(super) fn query_keys(query: &str) -> Option<Vec<String>> {
    let body = query.trim().strip_prefix('{')?.strip_suffix('}')?;
    let (mut keys, mut depth, mut start, mut in_string, mut escaped) = (Vec::new(), 0i32, 0, false, false);
    let mut entries = Vec::new();
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '(' | '[' | '{' if !in_string => depth += 1,
            ')' | ']' | '}' if !in_string => depth -= 1,
            ',' if !in_string && depth == 0 => {
                entries.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    entries.push(&body[start..]);
    for entry in entries.into_iter().map(str::trim).filter(|e| !e.is_empty()) {
        let key = entry.split_once(':').map_or(entry, |(k, _)| k).trim();
        let key = key.strip_prefix('.').unwrap_or(key).trim_matches('"');
        if key.is_empty() || key.starts_with(['$', '(']) {
            return None;
        }
        keys.push(key.to_owned());
    }
    Some(keys)
}

/// Dynamic partitioning's rules, with the messages AWS (and, where AWS's is
/// not known, CloudFormation) gives.
pub(super) fn check_dynamic_partitioning(
    s3: &raw::ExtendedS3DestinationConfiguration,
    enabled: bool,
    processing: Option<&Processing>,
    prefix: &Template,
    r: &mut Report,
) {
    let config = s3.dynamic_partitioning_configuration.as_ref();
    if let Some(duration) = config.and_then(|c| c.retry_options.as_ref()).and_then(|o| o.duration_in_seconds) {
        r.range(&format!("{S3}.DynamicPartitioningConfiguration.RetryOptions.DurationInSeconds"), duration, 0, 7200);
    }
    let hints = s3.buffering_hints.as_ref();
    if enabled {
        if hints.and_then(|h| h.size_in_mbs).unwrap_or(5) < 64 {
            r.add(
                format!("{S3}.BufferingHints.SizeInMBs"),
                "BufferingHints.SizeInMBs must be at least 64 when Dynamic Partitioning is enabled.",
            );
        }
        if hints.and_then(|h| h.interval_in_seconds).unwrap_or(300) < 60 {
            r.add(
                format!("{S3}.BufferingHints.IntervalInSeconds"),
                "BufferingHints.IntervalInSeconds must be at least 60 seconds when Dynamic Partitioning is enabled.",
            );
        }
        if !prefix.has_partition_keys() {
            r.prefix_rule(
                format!("{S3}.Prefix"),
                "S3 Prefix should contain Dynamic Partitioning namespaces when Dynamic Partitioning is enabled",
            );
        }
        if prefix.has_lambda_keys() && processing.is_some_and(|p| p.lambda.is_none()) {
            r.add(
                format!("{S3}.ProcessingConfiguration"),
                "Lambda processor should be present when S3 Prefix has partitionKeyFromLambda namespace",
            );
        }
    } else if prefix.has_partition_keys() {
        r.add(
            format!("{S3}.Prefix"),
            "Dynamic Partitioning Namespaces can only be part of a prefix expression when Dynamic Partitioning is enabled.",
        );
    }
    if prefix.has_query_keys() && processing.is_some_and(|p| !p.has_metadata_extraction) {
        r.add(
            format!("{S3}.ProcessingConfiguration"),
            "MetadataExtraction processor should be present when S3 Prefix has partitionKeyFromQuery namespace",
        );
    }
    if let Some(keys) = processing.and_then(|p| p.metadata_query.as_deref()).and_then(query_keys) {
        let used = prefix.query_keys();
        if keys.iter().any(|k| !used.contains(&k.as_str())) {
            r.prefix_rule(
                format!("{S3}.ProcessingConfiguration"),
                "MetaDataExtraction JQ Query can't contain keys that are not present in the S3 Prefix expression",
            );
        }
    }
}

/// `Enabled` of an optional `{ "Enabled": bool, ... }` object; AWS treats an
/// absent flag as disabled.
pub(super) fn enabled(config: Option<&Value>) -> bool {
    config.and_then(|c| c.get("Enabled")).and_then(Value::as_bool).unwrap_or(false)
}
