//! Record format conversion (`DataFormatConversionConfiguration`): JSON
//! records become Parquet objects with the columns of a Glue table
//! ([`glue`]), read by Firehose's deserializers ([`deserialize`]); a record
//! that does not fit goes to `format-conversion-failed` with Firehose's
//! fields, and the rest of its batch converts.
//!
//! Records convert when their batch is delivered, as on Firehose: the
//! encoder writes the records that fit and turns the others into error
//! lines beside the Parquet object, parsing each record once.

mod columns;
pub mod deserialize;
pub mod glue;

use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as ParquetCompression, GzipLevel};
use parquet::file::properties::{WriterProperties, WriterVersion};

use crate::record::Record;
use columns::ColumnBuilder;
pub use deserialize::{Columns, ConversionError, Deserializer, RowBuffers, TimestampFormat};
use glue::{GlueError, Table};

/// Where Glue table files are looked for unless `--glue-dir` says otherwise.
pub const DEFAULT_GLUE_DIR: &str = "fixtures/glue";

/// `ParquetSerDe`, with Firehose's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ParquetOptions {
    pub compression: ParquetCodec,
    /// `BlockSizeBytes` (default 256 MiB): the row-group target.
    pub block_size_bytes: u64,
    /// `PageSizeBytes` (default 1 MiB).
    pub page_size_bytes: u64,
    /// `EnableDictionaryCompression` (parquet-mr's default: on).
    pub dictionary: bool,
    /// `MaxPaddingBytes` (default 0): padding to HDFS block boundaries, which
    /// S3 objects do not have; accepted and not applied.
    pub max_padding_bytes: u64,
    /// `WriterVersion` V1 (default) or V2.
    pub writer_v2: bool,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions {
            compression: ParquetCodec::Snappy,
            block_size_bytes: 256 * 1024 * 1024,
            page_size_bytes: 1024 * 1024,
            dictionary: true,
            max_padding_bytes: 0,
            writer_v2: false,
        }
    }
}

/// `ParquetSerDe.Compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParquetCodec {
    Snappy,
    Gzip,
    Uncompressed,
}

/// A stream's conversion as configured (before its Glue table is read).
#[derive(Debug, Clone, PartialEq)]
pub struct ConversionSpec {
    pub database: String,
    pub table: String,
    pub region: String,
    pub catalog_id: Option<String>,
    /// `VersionId` (`LATEST` by default).
    pub version_id: String,
    pub role_arn: Option<String>,
    pub deserializer: Deserializer,
    pub parquet: ParquetOptions,
}

/// `dataCatalogTable` of a `format-conversion-failed` line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogTable {
    pub catalog_id: String,
    pub database_name: String,
    pub table_name: String,
    pub region: String,
    pub version_id: String,
    pub catalog_arn: String,
}

/// A conversion ready to run: the table's columns and the writer.
#[derive(Debug)]
pub struct Conversion {
    pub table: Table,
    /// The table's columns as the deserializer reads them.
    columns: Columns,
    pub schema: SchemaRef,
    pub deserializer: Deserializer,
    pub parquet: ParquetOptions,
    pub catalog: Arc<CatalogTable>,
}

impl Conversion {
    /// Reads the spec's Glue table from `glue_dir`: a missing table or a
    /// type that does not parse fails here, before delivery starts.
    pub fn load(spec: &ConversionSpec, glue_dir: &Path) -> Result<Self, GlueError> {
        let table = Table::load(glue_dir, &spec.database, &spec.table)?;
        let catalog_id =
            spec.catalog_id.clone().or_else(|| table.catalog_id.clone()).unwrap_or_else(|| "123456789012".into());
        let catalog = Arc::new(CatalogTable {
            catalog_arn: format!("arn:aws:glue:{}:{catalog_id}:catalog", spec.region),
            catalog_id,
            database_name: spec.database.clone(),
            table_name: spec.table.clone(),
            region: spec.region.clone(),
            version_id: spec.version_id.clone(),
        });
        Ok(Conversion {
            columns: spec.deserializer.columns(&table.columns),
            schema: table.arrow_schema(),
            table,
            deserializer: spec.deserializer.clone(),
            parquet: spec.parquet.clone(),
            catalog,
        })
    }

    /// The Parquet object for a batch, and the records that do not fit the
    /// table (by index, with the error Firehose writes for each): as on
    /// Firehose, conversion happens when a batch is delivered, and the rest
    /// of the batch converts. Each record is parsed once, here; a check at
    /// routing parsed every record a second time (a third of the CPU of a
    /// Parquet delivery, measured with `perf`). No object when no record
    /// fits.
    ///
    /// Records go to the writer [`WRITE_CHUNK`] at a time, each converted
    /// straight into Arrow column builders: converting a 64-128 MB buffer in
    /// one batch held its rows, the whole Arrow batch and the encoded row
    /// group at once (956 MB peak RSS in `just bench`). The writer still cuts
    /// row groups by its own limits, so the file is the same.
    ///
    /// A batch of more than one chunk converts on two threads: one parses
    /// chunks into Arrow batches while this one encodes the previous chunk
    /// into Parquet pages. Parsing is about three fifths of the work and
    /// encoding the rest (`perf`), and an object of `SizeInMBs` 64 took
    /// 0.7 s on one core: the last object of a delivery is encoded while
    /// nothing else runs, so its time is what a user waits for after the
    /// topic is read. The writer sees the same batches in the same order,
    /// so the file is byte for byte the one a single thread writes.
    pub fn write(&self, records: &[Record]) -> Result<Converted, String> {
        self.write_with(records, records.len() > WRITE_CHUNK)
    }

    fn write_with(&self, records: &[Record], pipelined: bool) -> Result<Converted, String> {
        let mut out = Vec::new();
        // Hive's root name, and no embedded Arrow schema: a file as a Hive
        // writer leaves it.
        let options = ArrowWriterOptions::new()
            .with_properties(self.properties())
            .with_schema_root("hive_schema".to_owned())
            .with_skip_arrow_metadata(true);
        let mut writer =
            ArrowWriter::try_new_with_options(&mut out, self.schema.clone(), options).map_err(|e| e.to_string())?;
        let failed = if pipelined {
            self.parse_beside(records, |batch| writer.write(&batch).map_err(|e| e.to_string()))?
        } else {
            let mut failed = Vec::new();
            let mut row = RowBuffers::default();
            for (index, chunk) in records.chunks(WRITE_CHUNK).enumerate() {
                if let Some(batch) = self.chunk(index, chunk, &mut row, &mut failed)? {
                    writer.write(&batch).map_err(|e| e.to_string())?;
                }
            }
            failed
        };
        writer.close().map_err(|e| e.to_string())?;
        let body = (failed.len() < records.len()).then(|| Bytes::from(out));
        Ok(Converted { body, failed })
    }

    /// Parses `records` chunk by chunk on a thread of its own, handing each
    /// Arrow batch to `write` on this one, in order; at most
    /// [`PIPELINE_DEPTH`] parsed chunks wait, so memory stays at a few
    /// chunks more than one thread needs. The first error of either side
    /// stops both.
    fn parse_beside(
        &self,
        records: &[Record],
        mut write: impl FnMut(RecordBatch) -> Result<(), String>,
    ) -> Result<Vec<(usize, ConversionError)>, String> {
        std::thread::scope(|scope| {
            let (parsed, batches) = std::sync::mpsc::sync_channel(PIPELINE_DEPTH);
            let parser = std::thread::Builder::new()
                .name("parquet-parse".into())
                .spawn_scoped(scope, move || {
                    let mut failed = Vec::new();
                    let mut row = RowBuffers::default();
                    for (index, chunk) in records.chunks(WRITE_CHUNK).enumerate() {
                        let batch = match self.chunk(index, chunk, &mut row, &mut failed) {
                            Ok(None) => continue,
                            Ok(Some(batch)) => Ok(batch),
                            Err(e) => Err(e),
                        };
                        let stop = batch.is_err();
                        // The writer hung up after an error of its own.
                        if parsed.send(batch).is_err() || stop {
                            break;
                        }
                    }
                    failed
                })
                .map_err(|e| format!("cannot start a conversion thread: {e}"))?;
            let written = batches.into_iter().try_for_each(|batch| batch.and_then(&mut write));
            let failed = parser.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            written.map(|()| failed)
        })
    }

    /// One chunk's records that fit, as an Arrow batch (`None` if none
    /// does); the others are added to `failed` by their index in the batch.
    fn chunk<'r>(
        &self,
        index: usize,
        chunk: &'r [Record],
        row: &mut RowBuffers<'r>,
        failed: &mut Vec<(usize, ConversionError)>,
    ) -> Result<Option<RecordBatch>, String> {
        let mut columns = self
            .schema
            .fields()
            .iter()
            .map(|field| ColumnBuilder::new(field.data_type()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut rows = 0;
        for (i, record) in chunk.iter().enumerate() {
            if let Err(error) = self.deserializer.cells(&self.columns, &record.value, row) {
                failed.push((index * WRITE_CHUNK + i, error));
                continue;
            }
            for (column, cell) in columns.iter_mut().zip(&row.cells) {
                column.append_cell(cell)?;
            }
            rows += 1;
        }
        if rows == 0 {
            return Ok(None);
        }
        let arrays = columns.into_iter().map(ColumnBuilder::finish).collect::<Result<Vec<_>, _>>()?;
        RecordBatch::try_new(self.schema.clone(), arrays).map(Some).map_err(|e| e.to_string())
    }

    fn properties(&self) -> WriterProperties {
        let p = &self.parquet;
        let codec = match p.compression {
            ParquetCodec::Snappy => ParquetCompression::SNAPPY,
            ParquetCodec::Gzip => ParquetCompression::GZIP(GzipLevel::default()),
            ParquetCodec::Uncompressed => ParquetCompression::UNCOMPRESSED,
        };
        WriterProperties::builder()
            .set_compression(codec)
            .set_dictionary_enabled(p.dictionary)
            .set_data_page_size_limit(p.page_size_bytes as usize)
            .set_max_row_group_bytes(Some(p.block_size_bytes as usize))
            .set_writer_version(if p.writer_v2 { WriterVersion::PARQUET_2_0 } else { WriterVersion::PARQUET_1_0 })
            .set_created_by(format!("streamlab {} (arrow-rs parquet)", env!("CARGO_PKG_VERSION")))
            .build()
    }
}

/// What [`Conversion::write`] made of a batch.
#[derive(Debug)]
pub struct Converted {
    /// The Parquet object of the records that fit; `None` when none did.
    pub body: Option<Bytes>,
    /// The records that do not fit, by index in the batch, in order.
    pub failed: Vec<(usize, ConversionError)>,
}

/// Records converted and handed to the Parquet writer at a time.
const WRITE_CHUNK: usize = 4096;

/// Parsed chunks that may wait for the Parquet writer (about 1 MB each).
const PIPELINE_DEPTH: usize = 2;

/// A Parquet object read back: what the landing view, snapshots and tests
/// show of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParquetContent {
    /// The file's Parquet schema, as `parquet-tools schema` prints it.
    pub schema: String,
    /// The codec of its column chunks (`SNAPPY`, `GZIP(..)`, ...).
    pub codec: String,
    pub row_groups: usize,
    /// Rows as JSON objects (timestamps as ISO strings, decimals as text).
    pub rows: Vec<serde_json::Value>,
}

/// Reads a Parquet object.
pub fn read_parquet(body: &[u8]) -> Result<ParquetContent, String> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let builder = ParquetRecordBatchReaderBuilder::try_new(Bytes::copy_from_slice(body)).map_err(|e| e.to_string())?;
    let metadata = builder.metadata().clone();
    let mut schema = Vec::new();
    parquet::schema::printer::print_schema(&mut schema, metadata.file_metadata().schema());
    let codec = metadata
        .row_groups()
        .first()
        .and_then(|g| g.columns().first())
        .map_or_else(|| "-".to_owned(), |c| format!("{:?}", c.compression()));
    let mut writer = arrow_json::ArrayWriter::new(Vec::new());
    for batch in builder.build().map_err(|e| e.to_string())? {
        writer.write(&displayable(batch.map_err(|e| e.to_string())?)?).map_err(|e| e.to_string())?;
    }
    writer.finish().map_err(|e| e.to_string())?;
    let text = writer.into_inner();
    let rows = if text.is_empty() { Vec::new() } else { serde_json::from_slice(&text).map_err(|e| e.to_string())? };
    Ok(ParquetContent {
        schema: String::from_utf8_lossy(&schema).into_owned(),
        codec,
        row_groups: metadata.num_row_groups(),
        rows,
    })
}

/// The batch with map keys as text: JSON objects have only string keys, so
/// `map<int,...>` columns are shown with their keys printed.
fn displayable(batch: arrow_array::RecordBatch) -> Result<arrow_array::RecordBatch, String> {
    use arrow_schema::{DataType, Field};
    fn text_keys(ty: &DataType) -> DataType {
        match ty {
            DataType::Map(entries, sorted) => match entries.data_type() {
                DataType::Struct(fields) => {
                    let key = Field::new(fields[0].name(), DataType::Utf8, false);
                    let value = fields[1].as_ref().clone().with_data_type(text_keys(fields[1].data_type()));
                    let entries = entries.as_ref().clone().with_data_type(DataType::Struct(vec![key, value].into()));
                    DataType::Map(Arc::new(entries), *sorted)
                }
                _ => ty.clone(),
            },
            DataType::List(item) => {
                DataType::List(Arc::new(item.as_ref().clone().with_data_type(text_keys(item.data_type()))))
            }
            DataType::Struct(fields) => DataType::Struct(
                fields.iter().map(|f| f.as_ref().clone().with_data_type(text_keys(f.data_type()))).collect(),
            ),
            other => other.clone(),
        }
    }
    let schema = batch.schema();
    if !schema.fields().iter().any(|f| *f.data_type() != text_keys(f.data_type())) {
        return Ok(batch);
    }
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let ty = text_keys(field.data_type());
        columns.push(arrow_cast::cast(column, &ty).map_err(|e| e.to_string())?);
        fields.push(field.as_ref().clone().with_data_type(ty));
    }
    arrow_array::RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), columns).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversion(deserializer: Deserializer, parquet: ParquetOptions) -> Conversion {
        let spec = ConversionSpec {
            database: "ecommerce".into(),
            table: "events".into(),
            region: "us-east-1".into(),
            catalog_id: None,
            version_id: "LATEST".into(),
            role_arn: None,
            deserializer,
            parquet,
        };
        Conversion::load(&spec, Path::new(DEFAULT_GLUE_DIR)).unwrap()
    }

    fn records(values: &[&str]) -> Vec<Record> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Record {
                partition: 0,
                offset: i as i64,
                timestamp_ms: 0,
                value: Bytes::copy_from_slice(v.as_bytes()),
            })
            .collect()
    }

    #[test]
    fn records_become_rows_of_the_glue_table_and_read_back() {
        let c = conversion(
            Deserializer::OpenX { case_insensitive: true, dots_to_underscores: false, mappings: Default::default() },
            ParquetOptions::default(),
        );
        let body = c
            .write(&records(&[
                r#"{"event_id":"e1","event_type":"order_placed","occurred_at":"2026-07-13T14:00:00.250Z","items":[{"sku":"A","quantity":2,"unit_price":150}],"total":300,"amount":"42"}"#,
                r#"{"event_id":"e2","EVENT_TYPE":"page_viewed","occurred_at":1783951201}"#,
            ]))
            .unwrap();
        assert!(body.failed.is_empty());
        let content = read_parquet(&body.body.unwrap()).unwrap();
        assert_eq!(content.codec, "SNAPPY");
        assert_eq!(content.rows.len(), 2);
        assert_eq!(content.rows[0]["items"], serde_json::json!([{"sku": "A", "quantity": 2, "unit_price": 150}]));
        assert_eq!(content.rows[0]["occurred_at"], "2026-07-13T14:00:00.250");
        assert_eq!(content.rows[0]["amount"], 42);
        assert_eq!(content.rows[1]["event_type"], "page_viewed");
        assert_eq!(content.rows[1]["occurred_at"], "2026-07-13T14:00:01");
        for column in [
            "message hive_schema {",
            "OPTIONAL BYTE_ARRAY event_id (STRING);",
            "OPTIONAL INT64 occurred_at (TIMESTAMP(MICROS,false));",
            "OPTIONAL INT32 items_count (INTEGER(16,true));",
        ] {
            assert!(content.schema.contains(column), "{column} in\n{}", content.schema);
        }
    }

    /// More records than one write chunk: every row lands, in order, in one
    /// row group (the writer's limits cut row groups, not the chunks).
    #[test]
    fn a_buffer_larger_than_a_chunk_is_one_file_with_every_row_in_order() {
        let c = conversion(Deserializer::Hive { timestamp_formats: vec![] }, ParquetOptions::default());
        let values: Vec<String> = (0..WRITE_CHUNK * 2 + 7).map(|i| format!(r#"{{"event_id":"e{i}"}}"#)).collect();
        let body = c.write(&records(&values.iter().map(String::as_str).collect::<Vec<_>>())).unwrap().body.unwrap();
        let content = read_parquet(&body).unwrap();
        assert_eq!(content.row_groups, 1);
        assert_eq!(content.rows.len(), values.len());
        for (i, row) in content.rows.iter().enumerate() {
            assert_eq!(row["event_id"], format!("e{i}"));
        }
    }

    /// The two-thread conversion of a large batch writes the file a single
    /// thread writes, byte for byte, and reports the same records, among
    /// them a chunk where nothing fits (the parser sends no batch for it).
    #[test]
    fn parsing_beside_the_writer_writes_the_same_file() {
        let c = conversion(
            Deserializer::OpenX { case_insensitive: true, dots_to_underscores: false, mappings: Default::default() },
            ParquetOptions::default(),
        );
        let fails = |i: usize| (WRITE_CHUNK..WRITE_CHUNK * 2).contains(&i) || i % 997 == 5;
        let values: Vec<String> = (0..WRITE_CHUNK * 3 + 11)
            .map(|i| match i {
                i if fails(i) => format!(r#"{{"total":"x{i}"}}"#),
                i => format!(r#"{{"event_id":"e{i}","event_type":"t{}","total":{i}}}"#, i % 7),
            })
            .collect();
        let batch = records(&values.iter().map(String::as_str).collect::<Vec<_>>());
        let alone = c.write_with(&batch, false).unwrap();
        let beside = c.write_with(&batch, true).unwrap();
        assert_eq!(beside.body, alone.body);
        let indexes = |c: &Converted| c.failed.iter().map(|(i, e)| (*i, e.message.clone())).collect::<Vec<_>>();
        assert_eq!(indexes(&beside), indexes(&alone));
        assert_eq!(
            alone.failed.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            (0..values.len()).filter(|i| fails(*i)).collect::<Vec<_>>()
        );
        let rows = read_parquet(&beside.body.unwrap()).unwrap().rows;
        assert_eq!(rows.len(), values.len() - alone.failed.len());
        assert_eq!(rows.last().unwrap()["event_id"], format!("e{}", values.len() - 1));
    }

    /// Records that do not fit are reported by index, with Firehose's
    /// error, wherever they fall among the chunks; the rest convert in order.
    #[test]
    fn records_that_do_not_fit_are_reported_and_the_rest_of_the_batch_converts() {
        let c = conversion(Deserializer::Hive { timestamp_formats: vec![] }, ParquetOptions::default());
        let bad = [3, WRITE_CHUNK, WRITE_CHUNK + 1];
        let values: Vec<String> = (0..WRITE_CHUNK + 5)
            .map(|i| match i {
                3 => "{not json".to_owned(),
                i if bad.contains(&i) => format!(r#"{{"event_id":"e{i}","total":"many"}}"#),
                i => format!(r#"{{"event_id":"e{i}"}}"#),
            })
            .collect();
        let converted = c.write(&records(&values.iter().map(String::as_str).collect::<Vec<_>>())).unwrap();
        let failed: Vec<(usize, &str)> = converted.failed.iter().map(|(i, e)| (*i, e.code)).collect();
        assert_eq!(
            failed,
            [
                (3, deserialize::PARSE_ERROR),
                (WRITE_CHUNK, deserialize::MALFORMED_DATA),
                (WRITE_CHUNK + 1, deserialize::MALFORMED_DATA)
            ]
        );
        let content = read_parquet(&converted.body.unwrap()).unwrap();
        let ids: Vec<String> = content.rows.iter().map(|r| r["event_id"].as_str().unwrap().to_owned()).collect();
        let expected: Vec<String> = (0..values.len()).filter(|i| !bad.contains(i)).map(|i| format!("e{i}")).collect();
        assert_eq!(ids, expected);

        let none = c.write(&records(&["{", "[1]"])).unwrap();
        assert!(none.body.is_none(), "no object when no record fits");
        assert_eq!(none.failed.len(), 2);
    }

    #[test]
    fn serializer_options_reach_the_file() {
        let options = ParquetOptions { compression: ParquetCodec::Gzip, ..ParquetOptions::default() };
        let c = conversion(Deserializer::Hive { timestamp_formats: vec![] }, options);
        let body = c.write(&records(&[r#"{"event_id":"e1"}"#])).unwrap().body.unwrap();
        let content = read_parquet(&body).unwrap();
        assert!(content.codec.starts_with("GZIP"), "{}", content.codec);
        assert_eq!(content.row_groups, 1);
    }

    #[test]
    fn a_missing_table_names_the_file_and_the_fix() {
        let spec = ConversionSpec {
            database: "nope".into(),
            table: "missing".into(),
            region: "us-east-1".into(),
            catalog_id: None,
            version_id: "LATEST".into(),
            role_arn: None,
            deserializer: Deserializer::Hive { timestamp_formats: vec![] },
            parquet: ParquetOptions::default(),
        };
        let error = Conversion::load(&spec, Path::new(DEFAULT_GLUE_DIR)).unwrap_err().to_string();
        assert!(
            error.contains("fixtures/glue/nope.missing.json")
                && error.contains("aws glue get-table")
                && error.contains("--glue-dir"),
            "{error}"
        );
    }
}

#[cfg(test)]
mod map_tests {
    use super::*;
    use glue::HiveType;

    #[test]
    fn maps_with_integer_keys_and_dates_and_binary_write() {
        let columns: Vec<(String, HiveType)> =
            [("m", "map<int,string>"), ("d", "date"), ("b", "binary"), ("c", "char(3)")]
                .into_iter()
                .map(|(n, t)| (n.to_owned(), HiveType::parse(t).unwrap()))
                .collect();
        let table = Table {
            database: "db".into(),
            name: "t".into(),
            catalog_id: None,
            version_id: "1".into(),
            columns,
            file: "t.json".into(),
        };
        let deserializer =
            Deserializer::OpenX { case_insensitive: true, dots_to_underscores: false, mappings: Default::default() };
        let conversion = Conversion {
            columns: deserializer.columns(&table.columns),
            schema: table.arrow_schema(),
            table,
            deserializer,
            parquet: ParquetOptions::default(),
            catalog: Arc::new(CatalogTable {
                catalog_id: "1".into(),
                database_name: "db".into(),
                table_name: "t".into(),
                region: "us-east-1".into(),
                version_id: "1".into(),
                catalog_arn: "arn".into(),
            }),
        };
        let record = Record {
            partition: 0,
            offset: 0,
            timestamp_ms: 0,
            value: Bytes::from_static(br#"{"m": {"1": "a", "22": "b"}, "d": "2026-07-13", "b": "aGk=", "c": "x"}"#),
        };
        let converted = conversion.write(&[record]).unwrap();
        assert!(converted.failed.is_empty(), "{:?}", converted.failed);
        let content = read_parquet(&converted.body.unwrap()).unwrap();
        assert_eq!(content.rows[0]["d"], "2026-07-13");
        assert_eq!(content.rows[0]["c"], "x  ");
        assert_eq!(content.rows[0]["m"], serde_json::json!({"1": "a", "22": "b"}));
    }
}
