//! Turning a batch into object bytes: only the Kafka record values, optionally
//! `\n`-delimited, then compressed.

use std::io::Write;

use bytes::Bytes;
use flate2::write::GzEncoder;

use super::buffer::Batch;
use crate::spec::Compression;

/// The object body for a batch.
pub fn encode(batch: &Batch, append_newline: bool, compression: Compression) -> Bytes {
    let mut raw = Vec::with_capacity(batch.bytes as usize);
    for record in &batch.records {
        raw.extend_from_slice(&record.value);
        if append_newline {
            raw.push(b'\n');
        }
    }
    match compression {
        Compression::Uncompressed => Bytes::from(raw),
        Compression::Gzip => {
            let mut encoder = GzEncoder::new(Vec::with_capacity(raw.len() / 4), flate2::Compression::default());
            encoder.write_all(&raw).expect("writing to a Vec cannot fail");
            Bytes::from(encoder.finish().expect("writing to a Vec cannot fail"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::delivery::buffer::Record;

    fn batch() -> Batch {
        let records = [&b"{\"a\":1}"[..], b"{\"b\":2}"]
            .iter()
            .enumerate()
            .map(|(i, v)| Record { partition: 0, offset: i as i64, timestamp_ms: 0, value: Bytes::copy_from_slice(v) })
            .collect();
        Batch { partition: 0, records, bytes: 14, opened_at_ms: 0 }
    }

    #[test]
    fn records_are_concatenated_without_delimiter_by_default() {
        assert_eq!(&encode(&batch(), false, Compression::Uncompressed)[..], b"{\"a\":1}{\"b\":2}");
        assert_eq!(&encode(&batch(), true, Compression::Uncompressed)[..], b"{\"a\":1}\n{\"b\":2}\n");
    }

    #[test]
    fn gzip_decodes_with_a_standard_decoder() {
        let body = encode(&batch(), true, Compression::Gzip);
        let mut out = String::new();
        flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut out).unwrap();
        assert_eq!(out, "{\"a\":1}\n{\"b\":2}\n");
    }
}
