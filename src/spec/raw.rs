//! The request as AWS models it (botocore `firehose/2015-08-04`), field for
//! field, so that any file the AWS CLI accepts deserializes.
//!
//! Unknown fields are rejected, as the AWS CLI rejects them ("Unknown
//! parameter in input"). Fields streamlab does not emulate are kept as raw JSON
//! so validation can say so instead of silently ignoring them.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDeliveryStream {
    #[serde(rename = "DeliveryStreamName")]
    pub delivery_stream_name: Option<String>,
    #[serde(rename = "DeliveryStreamType")]
    pub delivery_stream_type: Option<String>,
    #[serde(rename = "MSKSourceConfiguration")]
    pub msk_source_configuration: Option<MskSourceConfiguration>,
    #[serde(rename = "ExtendedS3DestinationConfiguration")]
    pub extended_s3_destination_configuration: Option<ExtendedS3DestinationConfiguration>,
    #[serde(rename = "Tags")]
    pub tags: Option<Value>,
    #[serde(rename = "DeliveryStreamEncryptionConfigurationInput")]
    pub delivery_stream_encryption_configuration_input: Option<Value>,
    // Other sources and destinations: accepted by the model, not by streamlab.
    #[serde(rename = "DirectPutSourceConfiguration")]
    pub direct_put_source_configuration: Option<Value>,
    #[serde(rename = "KinesisStreamSourceConfiguration")]
    pub kinesis_stream_source_configuration: Option<Value>,
    #[serde(rename = "DatabaseSourceConfiguration")]
    pub database_source_configuration: Option<Value>,
    #[serde(rename = "S3DestinationConfiguration")]
    pub s3_destination_configuration: Option<Value>,
    #[serde(rename = "RedshiftDestinationConfiguration")]
    pub redshift_destination_configuration: Option<Value>,
    #[serde(rename = "ElasticsearchDestinationConfiguration")]
    pub elasticsearch_destination_configuration: Option<Value>,
    #[serde(rename = "AmazonopensearchserviceDestinationConfiguration")]
    pub amazonopensearchservice_destination_configuration: Option<Value>,
    #[serde(rename = "AmazonOpenSearchServerlessDestinationConfiguration")]
    pub amazon_open_search_serverless_destination_configuration: Option<Value>,
    #[serde(rename = "SplunkDestinationConfiguration")]
    pub splunk_destination_configuration: Option<Value>,
    #[serde(rename = "HttpEndpointDestinationConfiguration")]
    pub http_endpoint_destination_configuration: Option<Value>,
    #[serde(rename = "SnowflakeDestinationConfiguration")]
    pub snowflake_destination_configuration: Option<Value>,
    #[serde(rename = "IcebergDestinationConfiguration")]
    pub iceberg_destination_configuration: Option<Value>,
}

impl CreateDeliveryStream {
    /// Names of the destination configurations present, in model order.
    pub fn destinations(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut add = |present: bool, name: &'static str| {
            if present {
                out.push(name);
            }
        };
        add(self.s3_destination_configuration.is_some(), "S3DestinationConfiguration");
        add(self.extended_s3_destination_configuration.is_some(), "ExtendedS3DestinationConfiguration");
        add(self.redshift_destination_configuration.is_some(), "RedshiftDestinationConfiguration");
        add(self.elasticsearch_destination_configuration.is_some(), "ElasticsearchDestinationConfiguration");
        add(
            self.amazonopensearchservice_destination_configuration.is_some(),
            "AmazonopensearchserviceDestinationConfiguration",
        );
        add(
            self.amazon_open_search_serverless_destination_configuration.is_some(),
            "AmazonOpenSearchServerlessDestinationConfiguration",
        );
        add(self.splunk_destination_configuration.is_some(), "SplunkDestinationConfiguration");
        add(self.http_endpoint_destination_configuration.is_some(), "HttpEndpointDestinationConfiguration");
        add(self.snowflake_destination_configuration.is_some(), "SnowflakeDestinationConfiguration");
        add(self.iceberg_destination_configuration.is_some(), "IcebergDestinationConfiguration");
        out
    }

    /// Names of the non-MSK source configurations present.
    pub fn other_sources(&self) -> Vec<&'static str> {
        [
            (self.direct_put_source_configuration.is_some(), "DirectPutSourceConfiguration"),
            (self.kinesis_stream_source_configuration.is_some(), "KinesisStreamSourceConfiguration"),
            (self.database_source_configuration.is_some(), "DatabaseSourceConfiguration"),
        ]
        .into_iter()
        .filter_map(|(present, name)| present.then_some(name))
        .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MskSourceConfiguration {
    #[serde(rename = "MSKClusterARN")]
    pub msk_cluster_arn: Option<String>,
    #[serde(rename = "TopicName")]
    pub topic_name: Option<String>,
    #[serde(rename = "AuthenticationConfiguration")]
    pub authentication_configuration: Option<AuthenticationConfiguration>,
    /// The CLI accepts epoch seconds (number) or an ISO 8601 string.
    #[serde(rename = "ReadFromTimestamp")]
    pub read_from_timestamp: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthenticationConfiguration {
    #[serde(rename = "RoleARN")]
    pub role_arn: Option<String>,
    #[serde(rename = "Connectivity")]
    pub connectivity: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendedS3DestinationConfiguration {
    #[serde(rename = "RoleARN")]
    pub role_arn: Option<String>,
    #[serde(rename = "BucketARN")]
    pub bucket_arn: Option<String>,
    #[serde(rename = "Prefix")]
    pub prefix: Option<String>,
    #[serde(rename = "ErrorOutputPrefix")]
    pub error_output_prefix: Option<String>,
    #[serde(rename = "BufferingHints")]
    pub buffering_hints: Option<BufferingHints>,
    #[serde(rename = "CompressionFormat")]
    pub compression_format: Option<String>,
    #[serde(rename = "EncryptionConfiguration")]
    pub encryption_configuration: Option<EncryptionConfiguration>,
    #[serde(rename = "CloudWatchLoggingOptions")]
    pub cloud_watch_logging_options: Option<CloudWatchLoggingOptions>,
    #[serde(rename = "ProcessingConfiguration")]
    pub processing_configuration: Option<ProcessingConfiguration>,
    #[serde(rename = "S3BackupMode")]
    pub s3_backup_mode: Option<String>,
    #[serde(rename = "S3BackupConfiguration")]
    pub s3_backup_configuration: Option<Value>,
    #[serde(rename = "DataFormatConversionConfiguration")]
    pub data_format_conversion_configuration: Option<Value>,
    #[serde(rename = "DynamicPartitioningConfiguration")]
    pub dynamic_partitioning_configuration: Option<DynamicPartitioningConfiguration>,
    #[serde(rename = "FileExtension")]
    pub file_extension: Option<String>,
    #[serde(rename = "CustomTimeZone")]
    pub custom_time_zone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferingHints {
    #[serde(rename = "SizeInMBs")]
    pub size_in_mbs: Option<i64>,
    #[serde(rename = "IntervalInSeconds")]
    pub interval_in_seconds: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessingConfiguration {
    #[serde(rename = "Enabled")]
    pub enabled: Option<bool>,
    #[serde(rename = "Processors")]
    pub processors: Option<Vec<Processor>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Processor {
    #[serde(rename = "Type")]
    pub kind: Option<String>,
    #[serde(rename = "Parameters")]
    pub parameters: Option<Vec<ProcessorParameter>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessorParameter {
    #[serde(rename = "ParameterName")]
    pub parameter_name: Option<String>,
    #[serde(rename = "ParameterValue")]
    pub parameter_value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamicPartitioningConfiguration {
    #[serde(rename = "Enabled")]
    pub enabled: Option<bool>,
    #[serde(rename = "RetryOptions")]
    pub retry_options: Option<RetryOptions>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryOptions {
    #[serde(rename = "DurationInSeconds")]
    pub duration_in_seconds: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfiguration {
    #[serde(rename = "NoEncryptionConfig")]
    pub no_encryption_config: Option<String>,
    #[serde(rename = "KMSEncryptionConfig")]
    pub kms_encryption_config: Option<KmsEncryptionConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsEncryptionConfig {
    #[serde(rename = "AWSKMSKeyARN")]
    pub awskms_key_arn: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudWatchLoggingOptions {
    #[serde(rename = "Enabled")]
    pub enabled: Option<bool>,
    #[serde(rename = "LogGroupName")]
    pub log_group_name: Option<String>,
    #[serde(rename = "LogStreamName")]
    pub log_stream_name: Option<String>,
}
