//! Turning a batch into object bytes: only the Kafka record values, optionally
//! `\n`-delimited, then compressed in the format and framing Firehose uses,
//! so the standard readers (gzip, unzip, snappy-java, Hadoop's codec) decode
//! them.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;

use super::buffer::{Batch, BufferKey};
use super::core::ConversionOutcome;
use super::naming::{Namer, ObjectRandomness};
use super::router::{errors, ErrorKind, Router};
use crate::convert::deserialize::MALFORMED_DATA;
use crate::convert::{Conversion, ConversionError, Converted};
use crate::prefix::RenderError;
use crate::spec::{Compression, StreamSpec};

/// snappy-java's `SnappyOutputStream` header: magic, then version 1 and
/// minimum compatible version 1 as big-endian ints.
const XERIAL_HEADER: [u8; 16] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1];
/// snappy-java's default block size.
const XERIAL_BLOCK: usize = 32 * 1024;
/// Hadoop's `io.compression.codec.snappy.buffersize` default.
const HADOOP_BLOCK: usize = 256 * 1024;

/// The uncompressed object body: record values, each followed by `\n` when
/// `AppendDelimiterToRecord` is on.
pub fn concatenate(batch: &Batch, append_newline: bool) -> Vec<u8> {
    let mut raw = Vec::with_capacity(batch.bytes as usize);
    for record in &batch.records {
        raw.extend_from_slice(&record.value);
        if append_newline {
            raw.push(b'\n');
        }
    }
    raw
}

/// The object body for a batch. `zip_entry` names the single ZIP entry
/// (Firehose uses a uuid); other formats ignore it.
pub fn encode(batch: &Batch, append_newline: bool, compression: Compression, zip_entry: &str) -> Bytes {
    compress(concatenate(batch, append_newline), compression, zip_entry)
}

pub fn compress(raw: Vec<u8>, compression: Compression, zip_entry: &str) -> Bytes {
    match compression {
        Compression::Uncompressed => Bytes::from(raw),
        Compression::Gzip => Bytes::from(gzip(&raw)),
        Compression::Zip => {
            let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::with_capacity(raw.len() / 4)));
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .large_file(raw.len() as u64 >= u64::from(u32::MAX));
            zip.start_file(zip_entry, options).expect("writing to a Vec cannot fail");
            zip.write_all(&raw).expect("writing to a Vec cannot fail");
            Bytes::from(zip.finish().expect("writing to a Vec cannot fail").into_inner())
        }
        Compression::Snappy => {
            let mut out = Vec::with_capacity(raw.len() / 2 + 16);
            out.extend_from_slice(&XERIAL_HEADER);
            for block in raw.chunks(XERIAL_BLOCK) {
                let compressed = snap::raw::Encoder::new().compress_vec(block).expect("block within snappy limits");
                out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            Bytes::from(out)
        }
        Compression::HadoopSnappy => {
            // Per block: uncompressed length, then one chunk (compressed
            // length, bytes); the block size keeps one chunk per block.
            let mut out = Vec::with_capacity(raw.len() / 2 + 8);
            for block in raw.chunks(HADOOP_BLOCK) {
                let compressed = snap::raw::Encoder::new().compress_vec(block).expect("block within snappy limits");
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            Bytes::from(out)
        }
    }
}

/// A GZIP member at zlib's default level, 6 (Java's `GZIPOutputStream`,
/// which Firehose runs on, uses it too), with no name and no time, as
/// `GzEncoder` wrote it, in half its time: compression was nearly all the
/// CPU of a GZIP delivery.
fn gzip(raw: &[u8]) -> Vec<u8> {
    let mut compressor = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(6).expect("6 is a level"));
    // Records compress several times over: a buffer a third of their size
    // first, the worst case's only when that is too small.
    let mut out = vec![0; raw.len() / 3 + 1024];
    let written = match compressor.gzip_compress(raw, &mut out) {
        Ok(written) => written,
        Err(_) => {
            out = vec![0; compressor.gzip_compress_bound(raw.len())];
            compressor.gzip_compress(raw, &mut out).expect("a buffer of the bound fits")
        }
    };
    out.truncate(written);
    out.shrink_to_fit();
    out
}

/// An object ready to write.
#[derive(Debug)]
pub struct EncodedObject {
    pub key: String,
    pub body: Bytes,
    pub content_encoding: Option<&'static str>,
    pub records: usize,
}

/// What a cut becomes: its object, or with format conversion the Parquet
/// object of the records that fit and an object of `format-conversion-failed`
/// lines for those that do not (either may be missing). The cut counts as
/// landed once all of them have.
#[derive(Debug)]
pub struct Encoded {
    pub objects: Vec<EncodedObject>,
    /// With format conversion: what converted and what did not.
    pub conversion: Option<ConversionOutcome>,
}

impl From<EncodedObject> for Encoded {
    fn from(object: EncodedObject) -> Self {
        Encoded { objects: vec![object], conversion: None }
    }
}

/// Turns cut batches into objects: key, body and content encoding. Runs off
/// the driver's loop, several objects at once.
#[derive(Debug)]
pub struct ObjectEncoder {
    spec: Arc<StreamSpec>,
    namer: Arc<Namer>,
    /// With format conversion: data objects are Parquet.
    conversion: Option<Arc<Conversion>>,
}

impl ObjectEncoder {
    pub fn new(spec: Arc<StreamSpec>, namer: Arc<Namer>, conversion: Option<Arc<Conversion>>) -> Self {
        ObjectEncoder { spec, namer, conversion }
    }

    /// The objects for `batch`. Fails only when the error prefix itself
    /// cannot be evaluated; the batch then stays uncommitted.
    pub fn encode(&self, mut batch: Batch, now_ms: i64) -> Result<Encoded, RenderError> {
        // A prefix or error buffer gathers several Kafka partitions in
        // arrival order, which differs between identical runs. Firehose keeps
        // each partition's order and defines none across partitions;
        // (partition, offset) order keeps the first and makes objects (and
        // the batch's identity, which seeds its key's randomness)
        // reproducible. Sorted here, on an encoding thread: with dynamic
        // partitioning it was 6% of the engine's time on the consumer's.
        if !matches!(batch.key, BufferKey::Partition(_)) {
            batch.records.sort_by_key(|r| (r.partition, r.offset));
        }
        let oldest = batch.oldest_timestamp_ms();
        let mut rng = self.namer.object(&batch.identity());
        let key = match &batch.key {
            &BufferKey::Error(kind) => return self.error_object(batch, kind, &mut rng).map(Encoded::from),
            BufferKey::Prefix(prefix) => self.namer.dynamic_key(prefix, oldest, &mut rng),
            BufferKey::Partition(_) => match self.namer.object_key(oldest, &mut rng) {
                Ok(key) => key,
                // A prefix whose time parts evaluate past 512 characters: its
                // records go to the error prefix, as a dynamic prefix's do.
                Err(e) => return self.encode(Self::failed(batch, &ErrorKind::Prefix(e), now_ms), now_ms),
            },
        };
        if let Some(conversion) = &self.conversion {
            return self.convert(conversion, key, batch, &mut rng, now_ms);
        }
        // Firehose names the one ZIP entry with a uuid.
        let entry = if self.spec.compression() == Compression::Zip { rng.uuid() } else { String::new() };
        let body = encode(&batch, self.spec.append_newline(), self.spec.compression(), &entry);
        Ok(EncodedObject {
            key,
            body,
            content_encoding: self.spec.compression().content_encoding(),
            records: batch.records.len(),
        }
        .into())
    }

    /// An object of error lines under the error prefix of `output_type`.
    fn error_object(
        &self,
        batch: Batch,
        output_type: &str,
        rng: &mut ObjectRandomness,
    ) -> Result<EncodedObject, RenderError> {
        let key = self.namer.error_key(batch.oldest_timestamp_ms(), output_type, rng)?;
        let body = Bytes::from(concatenate(&batch, false));
        Ok(EncodedObject { key, body, content_encoding: None, records: batch.records.len() })
    }

    /// The Parquet object of the records that fit the table and, for those
    /// that do not, an object of `format-conversion-failed` lines.
    fn convert(
        &self,
        conversion: &Conversion,
        key: String,
        batch: Batch,
        rng: &mut ObjectRandomness,
        now_ms: i64,
    ) -> Result<Encoded, RenderError> {
        let converted = match conversion.write(&batch.records) {
            Ok(converted) => converted,
            // If the writer refuses the batch, its records become conversion
            // errors rather than being lost.
            Err(message) => {
                tracing::error!(%message, "the Parquet writer refused a batch; its records go to format-conversion-failed");
                let error = ConversionError { code: MALFORMED_DATA, message };
                let failed = (0..batch.records.len()).map(|i| (i, error.clone())).collect();
                Converted { body: None, failed }
            }
        };
        let mut outcome = ConversionOutcome::default();
        let mut errors =
            Batch { key: BufferKey::Error(errors::FORMAT_CONVERSION_FAILED), records: Vec::new(), bytes: 0, ..batch };
        let mut failures = converted.failed.into_iter().peekable();
        for (i, record) in batch.records.into_iter().enumerate() {
            let Some((_, error)) = failures.next_if(|(at, _)| *at == i) else {
                outcome.converted.add(&record);
                continue;
            };
            outcome.failed.add(&record);
            let kind = ErrorKind::Conversion { error, table: conversion.catalog.clone() };
            let (_, line) = Router::error_record(&kind, record, now_ms);
            errors.bytes += line.value.len() as u64;
            errors.records.push(line);
            outcome.errors.push(kind);
        }
        let mut objects = Vec::new();
        if let Some(body) = converted.body {
            objects.push(EncodedObject {
                key,
                body,
                content_encoding: None,
                records: outcome.converted.records as usize,
            });
        }
        if !errors.records.is_empty() {
            objects.push(self.error_object(errors, errors::FORMAT_CONVERSION_FAILED, rng)?);
        }
        Ok(Encoded { objects, conversion: Some(outcome) })
    }

    /// The batch as error records of `kind`.
    fn failed(batch: Batch, kind: &ErrorKind, now_ms: i64) -> Batch {
        let mut out = Batch { key: BufferKey::Error(kind.output_type()), records: Vec::new(), bytes: 0, ..batch };
        for record in batch.records {
            let (_, record) = Router::error_record(kind, record, now_ms);
            out.bytes += record.value.len() as u64;
            out.records.push(record);
        }
        out
    }
}

/// Decodes an object body back to the concatenated records, for the harness
/// and tests. The tests also decode with independent implementations.
pub fn decompress(body: &[u8], compression: Compression) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    let invalid = |what: &str| Error::new(ErrorKind::InvalidData, what.to_owned());
    let be32 = |b: &[u8], at: usize| -> std::io::Result<usize> {
        b.get(at..at + 4)
            .map(|s| u32::from_be_bytes(s.try_into().expect("4 bytes")) as usize)
            .ok_or_else(|| invalid("truncated length"))
    };
    let raw_snappy = |b: &[u8]| snap::raw::Decoder::new().decompress_vec(b).map_err(|e| invalid(&e.to_string()));
    match compression {
        Compression::Uncompressed => Ok(body.to_vec()),
        Compression::Gzip => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body).read_to_end(&mut out)?;
            Ok(out)
        }
        Compression::Zip => {
            let mut archive = zip::ZipArchive::new(std::io::Cursor::new(body)).map_err(|e| invalid(&e.to_string()))?;
            if archive.len() != 1 {
                return Err(invalid("expected exactly one ZIP entry"));
            }
            let mut out = Vec::new();
            archive.by_index(0).map_err(|e| invalid(&e.to_string()))?.read_to_end(&mut out)?;
            Ok(out)
        }
        Compression::Snappy => {
            if body.get(..16) != Some(&XERIAL_HEADER[..]) {
                return Err(invalid("missing snappy-java header"));
            }
            let (mut at, mut out) = (16, Vec::new());
            while at < body.len() {
                let n = be32(body, at)?;
                let chunk = body.get(at + 4..at + 4 + n).ok_or_else(|| invalid("truncated block"))?;
                out.extend(raw_snappy(chunk)?);
                at += 4 + n;
            }
            Ok(out)
        }
        Compression::HadoopSnappy => {
            let (mut at, mut out) = (0, Vec::new());
            while at < body.len() {
                let expected = be32(body, at)?;
                at += 4;
                let start = out.len();
                while out.len() - start < expected {
                    let n = be32(body, at)?;
                    let chunk = body.get(at + 4..at + 4 + n).ok_or_else(|| invalid("truncated chunk"))?;
                    out.extend(raw_snappy(chunk)?);
                    at += 4 + n;
                }
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::buffer::Record;

    fn batch() -> Batch {
        let records = [&b"{\"a\":1}"[..], b"{\"b\":2}"]
            .iter()
            .enumerate()
            .map(|(i, v)| Record { partition: 0, offset: i as i64, timestamp_ms: 0, value: Bytes::copy_from_slice(v) })
            .collect();
        Batch { key: crate::delivery::buffer::BufferKey::Partition(0), records, bytes: 14, opened_at_ms: 0 }
    }

    #[test]
    fn records_are_concatenated_without_delimiter_by_default() {
        assert_eq!(&encode(&batch(), false, Compression::Uncompressed, "")[..], b"{\"a\":1}{\"b\":2}");
        assert_eq!(&encode(&batch(), true, Compression::Uncompressed, "")[..], b"{\"a\":1}\n{\"b\":2}\n");
    }

    #[test]
    fn every_format_round_trips_across_block_boundaries() {
        // Larger than both block sizes, and not a multiple of either.
        let raw: Vec<u8> = (0..700_001u32).map(|i| (i % 251) as u8).collect();
        for c in [
            Compression::Uncompressed,
            Compression::Gzip,
            Compression::Zip,
            Compression::Snappy,
            Compression::HadoopSnappy,
        ] {
            let body = compress(raw.clone(), c, "0f8fad5b-d9cb-469f-a165-70867728950e");
            assert_eq!(decompress(&body, c).unwrap(), raw, "{c:?}");
        }
    }

    /// One member with no name, no time, no extra flags at level 6 and an
    /// unknown OS, as zlib and Java's `GZIPOutputStream` write it; input
    /// that does not compress (more than the first buffer) and empty input
    /// round-trip too.
    #[test]
    fn gzip_writes_zlib_s_header_and_takes_input_that_does_not_compress() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..300_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        for raw in [noise, Vec::new(), b"{\"a\":1}\n".repeat(1000)] {
            let body = compress(raw.clone(), Compression::Gzip, "");
            assert_eq!(&body[..10], b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff");
            assert_eq!(decompress(&body, Compression::Gzip).unwrap(), raw);
        }
    }

    #[test]
    fn snappy_java_stream_starts_with_its_magic() {
        let body = compress(b"x".to_vec(), Compression::Snappy, "");
        assert_eq!(&body[..8], b"\x82SNAPPY\x00");
    }
}
