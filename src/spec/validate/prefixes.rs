//! `Prefix` and `ErrorOutputPrefix`: expressions and Firehose's rules.

use super::*;

/// Parses both prefixes and checks Firehose's prefix rules.
pub(super) fn check_prefixes(
    s3: &raw::ExtendedS3DestinationConfiguration,
    time_zone: Tz,
    r: &mut Report,
) -> Option<(Template, Template)> {
    let raw_prefix = s3.prefix.as_deref().unwrap_or("");
    let raw_error = s3.error_output_prefix.as_deref().unwrap_or("");
    r.string(&format!("{S3}.Prefix"), raw_prefix, 0, 1024, None);
    r.string(&format!("{S3}.ErrorOutputPrefix"), raw_error, 0, 1024, None);

    let parse = |field: &str, text: &str, r: &mut Report| match Template::parse(text) {
        Ok(t) => Some(t),
        Err(e) => {
            let path = format!("{S3}.{field}");
            let rule = match &e {
                PrefixError::Unclosed { .. }
                | PrefixError::Nested { .. }
                | PrefixError::MissingNamespace { .. }
                | PrefixError::EmptyKey { .. } => {
                    format!("Invalid expression usage: {text}.Must be of the form !{{<namespace>:<value>}} ({e})")
                }
                PrefixError::UnknownNamespace { namespace, .. } => {
                    format!("Namespace to the left of colon ({namespace}) is an invalid keyword! ({e})")
                }
                PrefixError::RefusedLetter { .. } => format!(
                    "Invalid conversion character used in the value of the expression in {field} ({e}; every other letter of Java's DateTimeFormatter is accepted, and text in single quotes is literal)"
                ),
                PrefixError::UnknownFirehoseValue { .. } | PrefixError::Pattern { .. } => {
                    r.add(path, e.to_string());
                    return None;
                }
            };
            r.prefix_rule(path, &rule);
            None
        }
    };
    let prefix = parse("Prefix", raw_prefix, r)?;
    let error = parse("ErrorOutputPrefix", raw_error, r)?;

    if prefix.has_expressions() && error.is_empty() {
        r.add(format!("{S3}.ErrorOutputPrefix"), ERROR_PREFIX_REQUIRED);
    }
    if error.has_expressions() && !error.has_error_output_type() {
        r.prefix_rule(
            format!("{S3}.ErrorOutputPrefix"),
            "ErrorOutputPrefix must contain at least one occurrence of !{firehose:error-output-type}",
        );
    }
    if prefix.has_error_output_type() {
        r.prefix_rule(
            format!("{S3}.Prefix"),
            "Prefix must not contain any occurrence of !{firehose:error-output-type}",
        );
    }
    if error.has_partition_keys() {
        r.prefix_rule(
            format!("{S3}.ErrorOutputPrefix"),
            "Dynamic Partitioning Namespaces can't be part of an error prefix expression",
        );
    }
    // Prefixes whose only variable parts are times are checked against the
    // 512-character limit now; others are checked per object.
    let full_prefix = with_default_time(prefix.clone());
    for (field, template, label) in
        [("Prefix", &full_prefix, "prefix"), ("ErrorOutputPrefix", &error, "ErrorOutputPrefix")]
    {
        if let Some(length) = template.fixed_evaluated_length(time_zone) {
            if length > MAX_EVALUATED_PREFIX {
                r.prefix_rule(
                    format!("{S3}.{field}"),
                    &format!(
                        "Length of evaluated {label} cannot be greater than 512 (it evaluates to {length} characters)"
                    ),
                );
            }
        }
    }
    Some((prefix, error))
}
