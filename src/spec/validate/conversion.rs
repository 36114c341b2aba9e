//! `DataFormatConversionConfiguration`: schema, deserializer, serializer.

use super::*;

/// `DataFormatConversionConfiguration`, with AWS's messages: `Some(None)`
/// when conversion is off, `None` when the configuration is invalid.
pub(super) fn check_conversion(
    s3: &raw::ExtendedS3DestinationConfiguration,
    region: &str,
    r: &mut Report,
) -> Option<Option<ConversionSpec>> {
    let config = s3.data_format_conversion_configuration.as_ref();
    if !enabled(config) {
        return Some(None);
    }
    let config = config?;
    let path = format!("{S3}.DataFormatConversionConfiguration");
    if s3.compression_format.as_deref().unwrap_or("UNCOMPRESSED") != "UNCOMPRESSED" {
        r.add(
            format!("{S3}.CompressionFormat"),
            "The S3 destination's compression format must be set to UNCOMPRESSED when data format conversion is enabled. To enable compression within the converted output format, set the appropriate serialization option in the output format configuration.",
        );
    }
    if s3.buffering_hints.as_ref().and_then(|h| h.size_in_mbs).unwrap_or(128) < 64 {
        r.add(
            format!("{S3}.BufferingHints.SizeInMBs"),
            "must be at least 64 when DataFormatConversionConfiguration is enabled",
        );
    }
    let present = |v: &Value, key: &str| v.get(key).filter(|v| !v.is_null()).cloned();
    let schema = present(config, "SchemaConfiguration");
    let input = present(config, "InputFormatConfiguration");
    let output = present(config, "OutputFormatConfiguration");
    for (value, name) in
        [(&schema, "SchemaConfiguration"), (&input, "InputFormatConfiguration"), (&output, "OutputFormatConfiguration")]
    {
        if value.is_none() {
            r.add(&path, format!("{name} must not be null"));
        }
    }
    let schema = schema.map(|v| check_schema(&v, &format!("{path}.SchemaConfiguration"), region, r));
    let deserializer = input.and_then(|v| check_deserializer(&v, &format!("{path}.InputFormatConfiguration"), r));
    let parquet = output.and_then(|v| check_serializer(&v, &format!("{path}.OutputFormatConfiguration"), r));
    let (database, table, region, catalog_id, version_id, role_arn) = schema??;
    Some(Some(ConversionSpec {
        database,
        table,
        region,
        catalog_id,
        version_id,
        role_arn,
        deserializer: deserializer?,
        parquet: parquet?,
    }))
}

type SchemaParts = (String, String, String, Option<String>, String, Option<String>);

pub(super) fn check_schema(schema: &Value, path: &str, region: &str, r: &mut Report) -> Option<SchemaParts> {
    let text = |key: &str| schema.get(key).and_then(Value::as_str).map(str::to_owned);
    let database = text("DatabaseName");
    let table = text("TableName");
    if database.is_none() {
        r.add(format!("{path}.DatabaseName"), "DatabaseName must not be null");
    }
    if table.is_none() {
        r.add(format!("{path}.TableName"), "TableName must not be null");
    }
    Some((
        database?,
        table?,
        text("Region").unwrap_or_else(|| region.to_owned()),
        text("CatalogId"),
        text("VersionId").unwrap_or_else(|| "LATEST".to_owned()),
        text("RoleARN"),
    ))
}

pub(super) fn check_deserializer(input: &Value, path: &str, r: &mut Report) -> Option<Deserializer> {
    let Some(deserializer) = input.get("Deserializer").filter(|v| !v.is_null()) else {
        r.add(format!("{path}.Deserializer"), "Deserializer must not be null");
        return None;
    };
    let openx = deserializer.get("OpenXJsonSerDe").filter(|v| !v.is_null());
    let hive = deserializer.get("HiveJsonSerDe").filter(|v| !v.is_null());
    match (openx, hive) {
        (Some(_), Some(_)) => {
            r.add(format!("{path}.Deserializer"), "More than one deserializer specified. Only one may be chosen.");
            None
        }
        (None, None) => {
            r.add(format!("{path}.Deserializer"), "Deserializer must not be null");
            None
        }
        (Some(openx), None) => {
            let flag = |key: &str, default: bool| openx.get(key).and_then(Value::as_bool).unwrap_or(default);
            let mappings = openx
                .get("ColumnToJsonKeyMappings")
                .and_then(Value::as_object)
                .map(|m| m.iter().filter_map(|(k, v)| Some((k.to_ascii_lowercase(), v.as_str()?.to_owned()))).collect())
                .unwrap_or_default();
            Some(Deserializer::OpenX {
                case_insensitive: flag("CaseInsensitive", true),
                dots_to_underscores: flag("ConvertDotsInJsonKeysToUnderscores", false),
                mappings,
            })
        }
        (None, Some(hive)) => {
            let mut formats = Vec::new();
            for format in hive.get("TimestampFormats").and_then(Value::as_array).into_iter().flatten() {
                let text = format.as_str().unwrap_or_default();
                match TimestampFormat::parse(text) {
                    Some(parsed) => formats.push(parsed),
                    None => {
                        r.add(
                            format!("{path}.Deserializer.HiveJsonSerDe.TimestampFormats"),
                            format!("Invalid deserializer option(s): One or more SerDe options are invalid for org.apache.hcatalog.data.JsonSerDe: [Key: timestamp.formats Value: {text}]"),
                        );
                        return None;
                    }
                }
            }
            Some(Deserializer::Hive { timestamp_formats: formats })
        }
    }
}

pub(super) fn check_serializer(output: &Value, path: &str, r: &mut Report) -> Option<ParquetOptions> {
    let Some(serializer) = output.get("Serializer").filter(|v| !v.is_null()) else {
        r.add(format!("{path}.Serializer"), "Serializer must not be null");
        return None;
    };
    let parquet = serializer.get("ParquetSerDe").filter(|v| !v.is_null());
    let orc = serializer.get("OrcSerDe").filter(|v| !v.is_null());
    let parquet = match (parquet, orc) {
        (Some(_), Some(_)) => {
            r.add(format!("{path}.Serializer"), "More than one serializer specified. Only one may be chosen.");
            return None;
        }
        (None, None) => {
            r.add(format!("{path}.Serializer"), "Serializer must not be null");
            return None;
        }
        (None, Some(_)) => {
            r.add(
                format!("{path}.Serializer.OrcSerDe"),
                "streamlab does not write ORC: the maintained Rust ORC crate (orc-rust) has only initial write support, without the row indexes, bloom filters and padding OrcSerDe configures, so its files would not be Firehose's; use ParquetSerDe to run this stream locally",
            );
            return None;
        }
        (Some(parquet), None) => parquet,
    };
    let p = format!("{path}.Serializer.ParquetSerDe");
    let mut out = ParquetOptions::default();
    let mut ok = true;
    let int = |key: &str| parquet.get(key).and_then(Value::as_i64);
    if let Some(n) = int("BlockSizeBytes") {
        ok &= r.range(&format!("{p}.BlockSizeBytes"), n, 64 * 1024 * 1024, i64::from(i32::MAX));
        out.block_size_bytes = n.max(0) as u64;
    }
    if let Some(n) = int("PageSizeBytes") {
        ok &= r.range(&format!("{p}.PageSizeBytes"), n, 64 * 1024, i64::from(i32::MAX));
        out.page_size_bytes = n.max(0) as u64;
    }
    if let Some(n) = int("MaxPaddingBytes") {
        ok &= r.range(&format!("{p}.MaxPaddingBytes"), n, 0, i64::from(i32::MAX));
        out.max_padding_bytes = n.max(0) as u64;
    }
    if let Some(b) = parquet.get("EnableDictionaryCompression").and_then(Value::as_bool) {
        out.dictionary = b;
    }
    if let Some(codec) = parquet.get("Compression").and_then(Value::as_str) {
        ok &= r.enumerated(&format!("{p}.Compression"), codec, &["UNCOMPRESSED", "GZIP", "SNAPPY"]);
        out.compression = match codec {
            "GZIP" => ParquetCodec::Gzip,
            "UNCOMPRESSED" => ParquetCodec::Uncompressed,
            _ => ParquetCodec::Snappy,
        };
    }
    if let Some(version) = parquet.get("WriterVersion").and_then(Value::as_str) {
        ok &= r.enumerated(&format!("{p}.WriterVersion"), version, &["V1", "V2"]);
        out.writer_v2 = version == "V2";
    }
    ok.then_some(out)
}
