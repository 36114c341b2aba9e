//! The schema of a conversion: a Glue table, read locally from a file that
//! holds exactly what `aws glue get-table --database-name D --name T` prints,
//! its Hive column types parsed and mapped to Arrow.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GlueError {
    #[error("Glue table {database}.{table} not found: no file {}. Write what `aws glue get-table --database-name {database} --name {table}` prints there, or point --glue-dir at the directory that holds it", file.display())]
    Missing { database: String, table: String, file: PathBuf },
    #[error("Glue table file {}: {detail}; it must hold what `aws glue get-table` prints ({{\"Table\": {{\"Name\", \"StorageDescriptor\": {{\"Columns\": [...]}}}}}})", file.display())]
    Invalid { file: PathBuf, detail: String },
    #[error("Glue table file {}: column {column:?} has type {ty:?}, which does not parse: {detail}", file.display())]
    Type { file: PathBuf, column: String, ty: String, detail: String },
    #[error("Glue table file {}: {column:?} is both a column and a partition key; rename one", file.display())]
    PartitionKeyClash { file: PathBuf, column: String },
}

/// A Hive/Glue column type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HiveType {
    String,
    Varchar(u32),
    Char(u32),
    Boolean,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Float,
    Double,
    Decimal(u8, i8),
    Date,
    Timestamp,
    Binary,
    Array(Box<HiveType>),
    Map(Box<HiveType>, Box<HiveType>),
    Struct(Vec<(String, HiveType)>),
}

impl HiveType {
    /// Parses `decimal(10,2)`, `array<struct<a:int,b:string>>`, ... (case
    /// and spaces as Glue allows).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parser = TypeParser { text: text.trim(), at: 0 };
        let ty = parser.ty()?;
        parser.space();
        if parser.at != parser.text.len() {
            return Err(format!("unexpected {:?} at position {}", &parser.text[parser.at..], parser.at));
        }
        Ok(ty)
    }

    /// The Arrow type the Parquet column is written from.
    pub fn arrow(&self) -> DataType {
        match self {
            HiveType::String | HiveType::Varchar(_) | HiveType::Char(_) => DataType::Utf8,
            HiveType::Boolean => DataType::Boolean,
            HiveType::TinyInt => DataType::Int8,
            HiveType::SmallInt => DataType::Int16,
            HiveType::Int => DataType::Int32,
            HiveType::BigInt => DataType::Int64,
            HiveType::Float => DataType::Float32,
            HiveType::Double => DataType::Float64,
            HiveType::Decimal(p, s) => DataType::Decimal128(*p, *s),
            HiveType::Date => DataType::Date32,
            HiveType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            HiveType::Binary => DataType::Binary,
            HiveType::Array(inner) => DataType::List(Arc::new(Field::new("element", inner.arrow(), true))),
            HiveType::Map(k, v) => DataType::Map(
                Arc::new(Field::new(
                    "key_value",
                    DataType::Struct(Fields::from(vec![
                        Field::new("key", k.arrow(), false),
                        Field::new("value", v.arrow(), true),
                    ])),
                    false,
                )),
                false,
            ),
            HiveType::Struct(fields) => {
                DataType::Struct(fields.iter().map(|(name, ty)| Field::new(name, ty.arrow(), true)).collect())
            }
        }
    }
}

struct TypeParser<'a> {
    text: &'a str,
    at: usize,
}

impl TypeParser<'_> {
    fn space(&mut self) {
        while self.text[self.at..].starts_with(' ') {
            self.at += 1;
        }
    }

    fn word(&mut self) -> String {
        self.space();
        let rest = &self.text[self.at..];
        let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        self.at += len;
        rest[..len].to_owned()
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        self.space();
        if self.text[self.at..].starts_with(c) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected {c:?} at position {}", self.at))
        }
    }

    fn number(&mut self) -> Result<u32, String> {
        let word = self.word();
        word.parse().map_err(|_| format!("expected a number, got {word:?}"))
    }

    fn ty(&mut self) -> Result<HiveType, String> {
        let name = self.word().to_ascii_lowercase();
        Ok(match name.as_str() {
            "string" => HiveType::String,
            "varchar" | "char" => {
                self.expect('(')?;
                let n = self.number()?;
                self.expect(')')?;
                if name == "varchar" {
                    HiveType::Varchar(n)
                } else {
                    HiveType::Char(n)
                }
            }
            "boolean" => HiveType::Boolean,
            "tinyint" => HiveType::TinyInt,
            "smallint" => HiveType::SmallInt,
            "int" | "integer" => HiveType::Int,
            "bigint" => HiveType::BigInt,
            "float" => HiveType::Float,
            "double" => HiveType::Double,
            "decimal" => self.decimal()?,
            "date" => HiveType::Date,
            "timestamp" => HiveType::Timestamp,
            "binary" => HiveType::Binary,
            "array" => {
                self.expect('<')?;
                let inner = self.ty()?;
                self.expect('>')?;
                HiveType::Array(Box::new(inner))
            }
            "map" => {
                self.expect('<')?;
                let key = self.ty()?;
                self.expect(',')?;
                let value = self.ty()?;
                self.expect('>')?;
                HiveType::Map(Box::new(key), Box::new(value))
            }
            "struct" => self.strukt()?,
            "" => return Err(format!("expected a type at position {}", self.at)),
            other => return Err(format!("unknown type {other:?} (uniontype is not supported by Firehose either)")),
        })
    }

    fn decimal(&mut self) -> Result<HiveType, String> {
        self.space();
        if !self.text[self.at..].starts_with('(') {
            // Hive's default precision and scale.
            return Ok(HiveType::Decimal(10, 0));
        }
        self.expect('(')?;
        let p = self.number()?;
        self.expect(',')?;
        let s = self.number()?;
        self.expect(')')?;
        if !(1..=38).contains(&p) || s > p {
            return Err(format!("decimal({p},{s}): precision must be 1 to 38 and scale at most the precision"));
        }
        Ok(HiveType::Decimal(p as u8, s as i8))
    }

    fn strukt(&mut self) -> Result<HiveType, String> {
        self.expect('<')?;
        let mut fields = Vec::new();
        loop {
            let name = self.word();
            if name.is_empty() {
                return Err(format!("expected a field name at position {}", self.at));
            }
            self.expect(':')?;
            fields.push((name.to_ascii_lowercase(), self.ty()?));
            self.space();
            if self.text[self.at..].starts_with(',') {
                self.at += 1;
                continue;
            }
            self.expect('>')?;
            return Ok(HiveType::Struct(fields));
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetTable {
    table: RawTable,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawTable {
    name: String,
    database_name: Option<String>,
    catalog_id: Option<String>,
    version_id: Option<String>,
    storage_descriptor: StorageDescriptor,
    #[serde(default)]
    partition_keys: Vec<RawColumn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StorageDescriptor {
    columns: Vec<RawColumn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawColumn {
    name: String,
    #[serde(rename = "Type")]
    ty: Option<String>,
}

/// A Glue table, as conversion uses it: its columns (Hive lower-cases
/// names), not its partition keys (Hive writes those into the path, not the
/// file).
#[derive(Debug, Clone)]
pub struct Table {
    pub database: String,
    pub name: String,
    pub catalog_id: Option<String>,
    pub version_id: String,
    pub columns: Vec<(String, HiveType)>,
    pub file: PathBuf,
}

impl Table {
    /// `<dir>/<database>.<table>.json`.
    pub fn load(dir: &Path, database: &str, table: &str) -> Result<Self, GlueError> {
        let file = dir.join(format!("{database}.{table}.json"));
        let text = std::fs::read_to_string(&file).map_err(|_| GlueError::Missing {
            database: database.to_owned(),
            table: table.to_owned(),
            file: file.clone(),
        })?;
        let raw: GetTable = serde_json::from_str(&text)
            .map_err(|e| GlueError::Invalid { file: file.clone(), detail: e.to_string() })?;
        let mut columns = Vec::new();
        for column in &raw.table.storage_descriptor.columns {
            let name = column.name.to_ascii_lowercase();
            let ty = column.ty.as_deref().unwrap_or("string");
            let parsed = HiveType::parse(ty).map_err(|detail| GlueError::Type {
                file: file.clone(),
                column: column.name.clone(),
                ty: ty.to_owned(),
                detail,
            })?;
            columns.push((name, parsed));
        }
        if let Some(clash) =
            raw.table.partition_keys.iter().find(|k| columns.iter().any(|(c, _)| c.eq_ignore_ascii_case(&k.name)))
        {
            return Err(GlueError::PartitionKeyClash { file, column: clash.name.clone() });
        }
        Ok(Table {
            database: raw.table.database_name.unwrap_or_else(|| database.to_owned()),
            name: raw.table.name,
            catalog_id: raw.table.catalog_id,
            version_id: raw.table.version_id.unwrap_or_else(|| "0".to_owned()),
            columns,
            file,
        })
    }

    pub fn arrow_schema(&self) -> Arc<Schema> {
        Arc::new(Schema::new(
            self.columns.iter().map(|(name, ty)| Field::new(name, ty.arrow(), true)).collect::<Vec<_>>(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_types_athena_users_use_parse() {
        let ty = HiveType::parse("array<struct<sku:string, qty:int, price:decimal(10,2)>>").unwrap();
        assert_eq!(
            ty,
            HiveType::Array(Box::new(HiveType::Struct(vec![
                ("sku".into(), HiveType::String),
                ("qty".into(), HiveType::Int),
                ("price".into(), HiveType::Decimal(10, 2)),
            ])))
        );
        assert_eq!(
            HiveType::parse("MAP<STRING,BIGINT>").unwrap(),
            HiveType::Map(Box::new(HiveType::String), Box::new(HiveType::BigInt))
        );
        for ok in [
            "varchar(20)",
            "char(3)",
            "tinyint",
            "smallint",
            "float",
            "double",
            "date",
            "timestamp",
            "binary",
            "boolean",
            "decimal",
        ] {
            assert!(HiveType::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["uniontype<int,string>", "array<int", "decimal(40,2)", "struct<>", "int int", "varchar"] {
            assert!(HiveType::parse(bad).is_err(), "{bad}");
        }
    }
}
