//! Prices as data: `prices/aws-us-east-1.toml` is built in, every entry with
//! its unit, the page it was read from and the date; a user's file of the
//! same shape overrides entries by key. Checked once when loaded, so the
//! arithmetic never meets a negative or missing price.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// The built-in price list.
pub const BUILT_IN: &str = include_str!("../../prices/aws-us-east-1.toml");
/// Where the built-in list lives in the repository (named in output).
pub const BUILT_IN_NAME: &str = "prices/aws-us-east-1.toml";

/// One price.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Price {
    pub key: String,
    pub price: f64,
    pub unit: String,
    pub source: String,
    /// When the price was read from its source; `None` for an override
    /// without a date.
    pub read: Option<NaiveDate>,
}

/// Every price `cost` may use.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceBook {
    pub region: String,
    pub currency: String,
    prices: BTreeMap<String, Price>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PriceError {
    #[error("cannot read the price file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{origin} is not a price file: {detail}")]
    Parse { origin: String, detail: String },
    #[error("{origin}: [\"{key}\"] {detail}")]
    Entry { origin: String, key: String, detail: String },
    #[error("{origin}: [\"{key}\"] is not a price streamlab knows; known keys: {known}")]
    UnknownKey { origin: String, key: String, known: String },
    #[error("no price for {key} in {origin}: add [\"{key}\"] with a price to a file given with --prices")]
    Missing { origin: String, key: String },
}

#[derive(Deserialize)]
struct File {
    region: Option<String>,
    currency: Option<String>,
    #[serde(flatten)]
    entries: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    price: f64,
    unit: Option<String>,
    source: Option<String>,
    read: Option<String>,
}

impl PriceBook {
    /// The built-in list.
    pub fn built_in() -> PriceBook {
        Self::parse_base(BUILT_IN, BUILT_IN_NAME).expect("the built-in price list is valid (tested)")
    }

    /// The built-in list with `overrides` applied, if given.
    pub fn load(overrides: Option<&Path>) -> Result<PriceBook, PriceError> {
        let mut book = Self::built_in();
        if let Some(path) = overrides {
            let text =
                std::fs::read_to_string(path).map_err(|source| PriceError::Read { path: path.to_owned(), source })?;
            book.apply(&text, &path.display().to_string())?;
        }
        Ok(book)
    }

    fn parse_base(text: &str, origin: &str) -> Result<PriceBook, PriceError> {
        let file = parse_file(text, origin)?;
        let mut prices = BTreeMap::new();
        for (key, value) in file.entries {
            let entry = entry(value, origin, &key)?;
            let missing = |field: &str| PriceError::Entry {
                origin: origin.to_owned(),
                key: key.clone(),
                detail: format!("has no {field}: every built-in price names its unit, source and read date"),
            };
            let unit = entry.unit.clone().ok_or_else(|| missing("unit"))?;
            let source = entry.source.clone().ok_or_else(|| missing("source"))?;
            let read = Some(date(entry.read.as_deref().ok_or_else(|| missing("read"))?, origin, &key)?);
            prices.insert(key.clone(), Price { key, price: entry.price, unit, source, read });
        }
        Ok(PriceBook {
            region: file.region.unwrap_or_default(),
            currency: file.currency.unwrap_or_else(|| "USD".into()),
            prices,
        })
    }

    /// Overrides entries by key; a key the book does not have is refused
    /// (a typo would otherwise leave the built-in price silently in use),
    /// except a broker type's hourly price, which adds the type.
    /// A refused file changes nothing.
    pub fn apply(&mut self, text: &str, origin: &str) -> Result<(), PriceError> {
        let mut next = self.clone();
        next.apply_all(text, origin)?;
        *self = next;
        Ok(())
    }

    fn apply_all(&mut self, text: &str, origin: &str) -> Result<(), PriceError> {
        let file = parse_file(text, origin)?;
        if let Some(region) = file.region {
            self.region = region;
        }
        if let Some(currency) = file.currency {
            self.currency = currency;
        }
        for (key, value) in file.entries {
            let e = entry(value, origin, &key)?;
            let read = e.read.as_deref().map(|d| date(d, origin, &key)).transpose()?;
            let base = match self.prices.get(&key) {
                Some(base) => base.clone(),
                None if key.starts_with(BROKER_HOUR) && key.len() > BROKER_HOUR.len() => Price {
                    key: key.clone(),
                    price: 0.0,
                    unit: format!("broker-hour, {}", &key[BROKER_HOUR.len()..]),
                    source: origin.to_owned(),
                    read: None,
                },
                None => {
                    return Err(PriceError::UnknownKey {
                        origin: origin.to_owned(),
                        key,
                        known: self.prices.keys().cloned().collect::<Vec<_>>().join(", "),
                    })
                }
            };
            self.prices.insert(
                key.clone(),
                Price {
                    key,
                    price: e.price,
                    unit: e.unit.unwrap_or(base.unit),
                    source: e.source.unwrap_or_else(|| origin.to_owned()),
                    read,
                },
            );
        }
        Ok(())
    }

    /// The price under `key`.
    pub fn get(&self, key: &str) -> Result<&Price, PriceError> {
        self.prices.get(key).ok_or_else(|| PriceError::Missing { origin: "the price list".into(), key: key.to_owned() })
    }

    pub fn all(&self) -> impl Iterator<Item = &Price> {
        self.prices.values()
    }

    /// Broker types with an hourly price.
    pub fn broker_types(&self) -> Vec<&str> {
        self.prices.keys().filter_map(|k| k.strip_prefix(BROKER_HOUR)).collect()
    }
}

/// The key prefix of a broker type's hourly price: `msk-broker-hour:kafka.m5.large`.
pub const BROKER_HOUR: &str = "msk-broker-hour:";

fn parse_file(text: &str, origin: &str) -> Result<File, PriceError> {
    toml::from_str(text).map_err(|e| PriceError::Parse { origin: origin.to_owned(), detail: e.to_string() })
}

fn entry(value: toml::Value, origin: &str, key: &str) -> Result<EntryFile, PriceError> {
    let e: EntryFile = value.try_into().map_err(|e: toml::de::Error| PriceError::Entry {
        origin: origin.to_owned(),
        key: key.to_owned(),
        detail: format!("is not a table of price, unit, source and read: {}", e.message()),
    })?;
    if !(e.price.is_finite() && e.price >= 0.0) {
        return Err(PriceError::Entry {
            origin: origin.to_owned(),
            key: key.to_owned(),
            detail: format!("has price {}: a price is a number of dollars, 0 or more", e.price),
        });
    }
    Ok(e)
}

fn date(text: &str, origin: &str, key: &str) -> Result<NaiveDate, PriceError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| PriceError::Entry {
        origin: origin.to_owned(),
        key: key.to_owned(),
        detail: format!("has read = {text:?}: give the date the price was read as YYYY-MM-DD"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_price_has_a_unit_a_source_and_a_date() {
        let book = PriceBook::built_in();
        assert!(book.all().count() >= 20);
        for p in book.all() {
            assert!(p.source.starts_with("https://aws.amazon.com/"), "{}: {}", p.key, p.source);
            assert!(p.read.is_some(), "{}", p.key);
            assert!(!p.unit.is_empty(), "{}", p.key);
        }
        assert_eq!(book.get("firehose-msk-ingestion-gb").unwrap().price, 0.055);
        assert_eq!(book.broker_types(), ["kafka.m5.large", "kafka.t3.small"]);
    }

    #[test]
    fn an_override_replaces_the_price_and_names_its_file() {
        let mut book = PriceBook::built_in();
        book.apply("[\"s3-put-1k\"]\nprice = 0.0054\n", "mine.toml").unwrap();
        let put = book.get("s3-put-1k").unwrap();
        assert_eq!((put.price, put.source.as_str(), put.read), (0.0054, "mine.toml", None));
        assert_eq!(put.unit, "1,000 PUT requests, S3 Standard");
        book.apply("[\"msk-broker-hour:kafka.m7g.large\"]\nprice = 0.204\nread = \"2026-11-30\"\n", "mine.toml")
            .unwrap();
        assert!(book.broker_types().contains(&"kafka.m7g.large"));
    }

    #[test]
    fn bad_overrides_are_refused_with_what_to_fix() {
        let mut book = PriceBook::built_in();
        let typo = book.apply("[\"s3-puts-1k\"]\nprice = 1\n", "mine.toml").unwrap_err().to_string();
        assert!(typo.starts_with("mine.toml: [\"s3-puts-1k\"] is not a price streamlab knows; known keys: "), "{typo}");
        assert!(typo.contains("s3-put-1k"), "{typo}");
        let negative = book.apply("[\"s3-put-1k\"]\nprice = -1\n", "mine.toml").unwrap_err().to_string();
        assert!(negative.contains("has price -1: a price is a number of dollars, 0 or more"), "{negative}");
        let date = book.apply("[\"s3-put-1k\"]\nprice = 1\nread = \"5/12/2026\"\n", "m").unwrap_err().to_string();
        assert!(date.contains("as YYYY-MM-DD"), "{date}");
        let field = book.apply("[\"s3-put-1k\"]\nprize = 1\n", "m").unwrap_err().to_string();
        assert!(field.contains("is not a table of price, unit, source and read"), "{field}");
        assert_eq!(book, PriceBook::built_in(), "a refused file changes nothing it came before");
    }
}
