//! Arrow columns built straight from deserialized rows. Writing each row
//! as a JSON line for the Arrow JSON decoder to parse again cost a third of
//! Parquet conversion; a row's values already have their column's type
//! ([`super::Deserializer::value`] checked and coerced them), so they go
//! into the column builders as they are.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder, Int16Builder,
    Int32Builder, Int64Builder, Int8Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, ListArray, MapArray, StructArray};
use arrow_buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, FieldRef, Fields, TimeUnit};
use chrono::NaiveDate;
use serde_json::Value;

use super::deserialize::Cell;

/// One column being built, for the Arrow types [`super::glue::HiveType`]
/// maps to.
pub enum ColumnBuilder {
    Utf8(StringBuilder),
    Boolean(BooleanBuilder),
    Int8(Int8Builder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal(Decimal128Builder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Binary(BinaryBuilder),
    List { field: FieldRef, offsets: Vec<i32>, valid: Vec<bool>, items: Box<ColumnBuilder> },
    Map { field: FieldRef, offsets: Vec<i32>, valid: Vec<bool>, keys: Box<ColumnBuilder>, values: Box<ColumnBuilder> },
    Struct { fields: Fields, valid: Vec<bool>, children: Vec<ColumnBuilder> },
}

impl ColumnBuilder {
    /// A builder for `ty`; `Err` names a type no Glue column has.
    pub fn new(ty: &DataType) -> Result<Self, String> {
        Ok(match ty {
            DataType::Utf8 => ColumnBuilder::Utf8(StringBuilder::new()),
            DataType::Boolean => ColumnBuilder::Boolean(BooleanBuilder::new()),
            DataType::Int8 => ColumnBuilder::Int8(Int8Builder::new()),
            DataType::Int16 => ColumnBuilder::Int16(Int16Builder::new()),
            DataType::Int32 => ColumnBuilder::Int32(Int32Builder::new()),
            DataType::Int64 => ColumnBuilder::Int64(Int64Builder::new()),
            DataType::Float32 => ColumnBuilder::Float32(Float32Builder::new()),
            DataType::Float64 => ColumnBuilder::Float64(Float64Builder::new()),
            DataType::Decimal128(precision, scale) => ColumnBuilder::Decimal(
                Decimal128Builder::new().with_precision_and_scale(*precision, *scale).map_err(|e| e.to_string())?,
            ),
            DataType::Date32 => ColumnBuilder::Date(Date32Builder::new()),
            DataType::Timestamp(TimeUnit::Microsecond, None) => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new())
            }
            DataType::Binary => ColumnBuilder::Binary(BinaryBuilder::new()),
            DataType::List(field) => ColumnBuilder::List {
                field: field.clone(),
                offsets: vec![0],
                valid: Vec::new(),
                items: Box::new(ColumnBuilder::new(field.data_type())?),
            },
            DataType::Map(field, _) => {
                let DataType::Struct(entries) = field.data_type() else {
                    return Err(format!("map entries of type {}", field.data_type()));
                };
                ColumnBuilder::Map {
                    field: field.clone(),
                    offsets: vec![0],
                    valid: Vec::new(),
                    keys: Box::new(ColumnBuilder::new(entries[0].data_type())?),
                    values: Box::new(ColumnBuilder::new(entries[1].data_type())?),
                }
            }
            DataType::Struct(fields) => ColumnBuilder::Struct {
                fields: fields.clone(),
                valid: Vec::new(),
                children: fields.iter().map(|f| ColumnBuilder::new(f.data_type())).collect::<Result<_, _>>()?,
            },
            other => return Err(format!("no Glue type is written as Arrow {other}")),
        })
    }

    /// Appends one cell of a row ([`super::deserialize::Cell`]): text goes
    /// into the column as it lies in the record.
    pub fn append_cell(&mut self, cell: &Cell) -> Result<(), String> {
        match cell {
            Cell::Text(text) => self.append_text(text),
            Cell::Json(value) => self.append(value),
        }
    }

    /// Appends one value in the form [`super::Deserializer::value`] gives
    /// for this column's type (null for a missing value).
    pub fn append(&mut self, value: &Value) -> Result<(), String> {
        let unexpected = || format!("{value} does not fit its column");
        match (self, value) {
            (builder, Value::Null) => builder.append_null(),
            (builder, Value::String(text)) => return builder.append_text(text),
            (ColumnBuilder::Boolean(b), _) => b.append_value(value.as_bool().ok_or_else(unexpected)?),
            (ColumnBuilder::Int8(b), _) => b.append_value(value.as_i64().ok_or_else(unexpected)? as i8),
            (ColumnBuilder::Int16(b), _) => b.append_value(value.as_i64().ok_or_else(unexpected)? as i16),
            (ColumnBuilder::Int32(b), _) => b.append_value(value.as_i64().ok_or_else(unexpected)? as i32),
            (ColumnBuilder::Int64(b), _) => b.append_value(value.as_i64().ok_or_else(unexpected)?),
            (ColumnBuilder::Float32(b), _) => b.append_value(value.as_f64().ok_or_else(unexpected)? as f32),
            (ColumnBuilder::Float64(b), _) => b.append_value(value.as_f64().ok_or_else(unexpected)?),
            // Microseconds.
            (ColumnBuilder::Timestamp(b), _) => b.append_value(value.as_i64().ok_or_else(unexpected)?),
            (ColumnBuilder::List { offsets, valid, items, .. }, _) => {
                let list = value.as_array().ok_or_else(unexpected)?;
                for item in list {
                    items.append(item)?;
                }
                offsets.push(offset(offsets, list.len())?);
                valid.push(true);
            }
            (ColumnBuilder::Map { offsets, valid, keys, values, .. }, _) => {
                let map = value.as_object().ok_or_else(unexpected)?;
                for (key, value) in map {
                    keys.append_text(key)?;
                    values.append(value)?;
                }
                offsets.push(offset(offsets, map.len())?);
                valid.push(true);
            }
            (ColumnBuilder::Struct { fields, valid, children }, _) => {
                let object = value.as_object().ok_or_else(unexpected)?;
                for (field, child) in fields.iter().zip(children) {
                    child.append(object.get(field.name()).unwrap_or(&Value::Null))?;
                }
                valid.push(true);
            }
            (
                ColumnBuilder::Utf8(_) | ColumnBuilder::Decimal(_) | ColumnBuilder::Date(_) | ColumnBuilder::Binary(_),
                _,
            ) => return Err(unexpected()),
        }
        Ok(())
    }

    /// Appends a value given as text: a string, a decimal with exactly the
    /// column's scale of fraction digits, a date, binary as hex (the form
    /// the JSON decoder read it in), or a map key of any scalar type.
    fn append_text(&mut self, text: &str) -> Result<(), String> {
        let unexpected = || format!("{} does not fit its column", Value::String(text.to_owned()));
        match self {
            ColumnBuilder::Utf8(b) => b.append_value(text),
            ColumnBuilder::Boolean(b) => b.append_value(text.parse().map_err(|_| unexpected())?),
            ColumnBuilder::Int8(b) => b.append_value(text.parse::<i64>().map_err(|_| unexpected())? as i8),
            ColumnBuilder::Int16(b) => b.append_value(text.parse::<i64>().map_err(|_| unexpected())? as i16),
            ColumnBuilder::Int32(b) => b.append_value(text.parse::<i64>().map_err(|_| unexpected())? as i32),
            ColumnBuilder::Int64(b) => b.append_value(text.parse().map_err(|_| unexpected())?),
            ColumnBuilder::Float32(b) => b.append_value(text.parse::<f64>().map_err(|_| unexpected())? as f32),
            ColumnBuilder::Float64(b) => b.append_value(text.parse().map_err(|_| unexpected())?),
            ColumnBuilder::Decimal(b) => {
                b.append_value(text.replace('.', "").parse::<i128>().map_err(|_| unexpected())?)
            }
            ColumnBuilder::Date(b) => {
                let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| unexpected())?;
                b.append_value((date - NaiveDate::default()).num_days() as i32)
            }
            ColumnBuilder::Timestamp(b) => b.append_value(text.parse().map_err(|_| unexpected())?),
            ColumnBuilder::Binary(b) => {
                let bytes = (0..text.len())
                    .step_by(2)
                    .map(|i| text.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
                    .collect::<Option<Vec<u8>>>()
                    .ok_or_else(unexpected)?;
                b.append_value(bytes)
            }
            ColumnBuilder::List { .. } | ColumnBuilder::Map { .. } | ColumnBuilder::Struct { .. } => {
                return Err(unexpected())
            }
        }
        Ok(())
    }

    fn append_null(&mut self) {
        match self {
            ColumnBuilder::Utf8(b) => b.append_null(),
            ColumnBuilder::Boolean(b) => b.append_null(),
            ColumnBuilder::Int8(b) => b.append_null(),
            ColumnBuilder::Int16(b) => b.append_null(),
            ColumnBuilder::Int32(b) => b.append_null(),
            ColumnBuilder::Int64(b) => b.append_null(),
            ColumnBuilder::Float32(b) => b.append_null(),
            ColumnBuilder::Float64(b) => b.append_null(),
            ColumnBuilder::Decimal(b) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::Timestamp(b) => b.append_null(),
            ColumnBuilder::Binary(b) => b.append_null(),
            ColumnBuilder::List { offsets, valid, .. } | ColumnBuilder::Map { offsets, valid, .. } => {
                offsets.push(*offsets.last().expect("offsets start at 0"));
                valid.push(false);
            }
            // A null struct's fields are null too: every child keeps the
            // struct's length.
            ColumnBuilder::Struct { valid, children, .. } => {
                for child in children {
                    child.append_null();
                }
                valid.push(false);
            }
        }
    }

    /// The column built so far.
    pub fn finish(self) -> Result<ArrayRef, String> {
        Ok(match self {
            ColumnBuilder::Utf8(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Boolean(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Int8(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Int16(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Int32(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Int64(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Float32(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Float64(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Date(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Binary(mut b) => Arc::new(b.finish()),
            ColumnBuilder::List { field, offsets, valid, items } => Arc::new(
                ListArray::try_new(field, offsets_of(offsets), items.finish()?, nulls(valid))
                    .map_err(|e| e.to_string())?,
            ),
            ColumnBuilder::Map { field, offsets, valid, keys, values } => {
                let DataType::Struct(entry_fields) = field.data_type() else {
                    return Err(format!("map entries of type {}", field.data_type()));
                };
                let entries = StructArray::try_new(entry_fields.clone(), vec![keys.finish()?, values.finish()?], None)
                    .map_err(|e| e.to_string())?;
                Arc::new(
                    MapArray::try_new(field, offsets_of(offsets), entries, nulls(valid), false)
                        .map_err(|e| e.to_string())?,
                )
            }
            ColumnBuilder::Struct { fields, valid, children } => {
                let children = children.into_iter().map(ColumnBuilder::finish).collect::<Result<Vec<_>, _>>()?;
                Arc::new(StructArray::try_new(fields, children, nulls(valid)).map_err(|e| e.to_string())?)
            }
        })
    }
}

fn offset(offsets: &[i32], added: usize) -> Result<i32, String> {
    let last = *offsets.last().expect("offsets start at 0") as usize;
    i32::try_from(last + added).map_err(|_| "more than 2^31 list items in one row group".to_owned())
}

fn offsets_of(offsets: Vec<i32>) -> OffsetBuffer<i32> {
    OffsetBuffer::new(ScalarBuffer::from(offsets))
}

/// `None` when every value is there, as the builders leave it.
fn nulls(valid: Vec<bool>) -> Option<NullBuffer> {
    if valid.iter().all(|v| *v) {
        None
    } else {
        Some(NullBuffer::from(valid))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use arrow_schema::{Field, Schema};

    use arrow_array::Array as _;

    use super::super::glue::HiveType;
    use super::super::Deserializer;
    use super::*;

    /// The builders give the batch the Arrow JSON decoder gave for the same
    /// rows written as JSON lines (the path they replace), for every Glue
    /// type, nested, null and missing values included.
    #[test]
    fn the_builders_match_the_json_decoder_for_every_type() {
        let table: Vec<(String, HiveType)> = [
            ("s", "string"),
            ("v", "varchar(3)"),
            ("c", "char(4)"),
            ("b", "boolean"),
            ("t", "tinyint"),
            ("sm", "smallint"),
            ("i", "int"),
            ("bi", "bigint"),
            ("f", "float"),
            ("d", "double"),
            ("dec", "decimal(10,2)"),
            ("dec0", "decimal(5,0)"),
            ("day", "date"),
            ("at", "timestamp"),
            ("bin", "binary"),
            ("tags", "array<string>"),
            ("nested", "array<struct<a:int,b:array<bigint>>>"),
            ("attrs", "map<string,int>"),
            ("by_id", "map<int,string>"),
            ("item", "struct<sku:string,qty:int,price:decimal(8,3),tags:map<string,string>>"),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_owned(), HiveType::parse(t).unwrap()))
        .collect();
        let schema = Arc::new(Schema::new(
            table.iter().map(|(name, ty)| Field::new(name, ty.arrow(), true)).collect::<Vec<_>>(),
        ));
        let openx =
            Deserializer::OpenX { case_insensitive: true, dots_to_underscores: false, mappings: BTreeMap::new() };
        let columns = openx.columns(&table);
        let records = [
            r#"{"S": "héllo", "v": "abcdef", "c": "x", "b": "TRUE", "t": -128, "sm": "300", "i": 7, "bi": 9007199254740993,
                "f": 19.99, "d": -0.5, "dec": -19.995, "dec0": "42", "day": "2026-07-13T10:00:00", "at": "2026-07-13T14:00:00.123456Z",
                "bin": "aGVsbG8=", "tags": ["a", null, "b"], "nested": [{"a": 1, "b": [1, 2]}, null, {"A": "2"}],
                "attrs": {"x": 1, "y": null}, "by_id": {"3": "c", "1": "a"},
                "item": {"SKU": "sku-1", "qty": "2", "price": 1.2345, "tags": {"k": "v"}}}"#,
            r#"{}"#,
            r#"{"tags": "one", "nested": [], "attrs": {}, "item": null, "at": 1783951200, "day": "1969-12-31"}"#,
            r#"{"item": {"tags": null}, "nested": null, "by_id": null, "bin": "not base64!", "dec": 0.004}"#,
            r#"{"s": "tab\there \u00e9", "v": "ab", "c": "a\"b", "at": "2026-07-13 14:00:00", "dec": "1.5", "b": false}"#,
        ];
        let rows: Vec<Vec<Value>> = records.iter().map(|r| openx.values(&columns, r.as_bytes()).unwrap()).collect();

        let mut builders: Vec<ColumnBuilder> =
            schema.fields().iter().map(|f| ColumnBuilder::new(f.data_type()).unwrap()).collect();
        for row in &rows {
            for (builder, value) in builders.iter_mut().zip(row) {
                builder.append(value).unwrap();
            }
        }
        let arrays = builders.into_iter().map(|b| b.finish().unwrap()).collect();
        let built = arrow_array::RecordBatch::try_new(schema.clone(), arrays).unwrap();

        // The path conversion takes: cells with text borrowed from the record.
        let mut builders: Vec<ColumnBuilder> =
            schema.fields().iter().map(|f| ColumnBuilder::new(f.data_type()).unwrap()).collect();
        let mut row = super::super::RowBuffers::default();
        for record in &records {
            openx.cells(&columns, record.as_bytes(), &mut row).unwrap();
            for (builder, cell) in builders.iter_mut().zip(&row.cells) {
                builder.append_cell(cell).unwrap();
            }
        }
        let arrays = builders.into_iter().map(|b| b.finish().unwrap()).collect();
        let from_cells = arrow_array::RecordBatch::try_new(schema.clone(), arrays).unwrap();

        let mut lines = Vec::new();
        for row in &rows {
            let object: serde_json::Map<String, Value> =
                table.iter().map(|(n, _)| n.clone()).zip(row.clone()).collect();
            serde_json::to_writer(&mut lines, &object).unwrap();
            lines.push(b'\n');
        }
        let mut decoder = arrow_json::ReaderBuilder::new(schema).build_decoder().unwrap();
        assert_eq!(decoder.decode(&lines).unwrap(), lines.len());
        let decoded = decoder.flush().unwrap().unwrap();

        assert_eq!(built.num_rows(), records.len());
        assert_eq!(built.num_columns(), table.len());
        for (i, field) in built.schema().fields().iter().enumerate() {
            assert_eq!(built.column(i).to_data(), decoded.column(i).to_data(), "column {}", field.name());
            assert_eq!(from_cells.column(i).to_data(), decoded.column(i).to_data(), "column {}", field.name());
        }
    }

    /// Map keys of every scalar type come as their text; the JSON decoder
    /// refused boolean keys (the whole object failed to encode).
    #[test]
    fn map_keys_of_any_scalar_type_are_read_from_their_text() {
        for (ty, key) in
            [("map<boolean,int>", "true"), ("map<timestamp,int>", "1783951200000000"), ("map<double,int>", "1.5")]
        {
            let ty = HiveType::parse(ty).unwrap().arrow();
            let mut builder = ColumnBuilder::new(&ty).unwrap();
            builder.append(&serde_json::json!({ key: 1 })).unwrap();
            let array = builder.finish().unwrap();
            assert_eq!(array.len(), 1);
            assert_eq!(array.data_type(), &ty);
        }
    }
}
