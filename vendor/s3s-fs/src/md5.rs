//! MD5 for ETags, with OpenSSL's (streamlab change 4, README.streamlab.md).
//!
//! Every PUT hashes its whole body for the ETag. With RustCrypto's portable
//! MD5 (622 MB/s here) that was the largest single item of a local stack's
//! CPU while a delivery ran (a sixth of both cores in `perf` of `just
//! bench`); OpenSSL's assembly does 773 MB/s, and librdkafka links OpenSSL
//! anyway. Where OpenSSL offers no MD5 (FIPS mode), the portable one.

use openssl::hash::{Hasher, MessageDigest};
use s3s::crypto::Checksum;

pub enum Md5 {
    OpenSsl(Hasher),
    Portable(s3s::crypto::Md5),
}

impl Checksum for Md5 {
    type Output = [u8; 16];

    fn new() -> Self {
        Hasher::new(MessageDigest::md5()).map_or_else(|_| Self::Portable(s3s::crypto::Md5::new()), Self::OpenSsl)
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            // EVP_DigestUpdate of MD5 has no failure but a null context,
            // which `Hasher` never holds.
            Self::OpenSsl(hasher) => hasher.update(data).expect("OpenSSL's MD5 update does not fail"),
            Self::Portable(md5) => md5.update(data),
        }
    }

    fn finalize(self) -> Self::Output {
        match self {
            Self::OpenSsl(mut hasher) => {
                let digest = hasher.finish().expect("OpenSSL's MD5 finish does not fail");
                digest.as_ref().try_into().expect("an MD5 digest is 16 bytes")
            }
            Self::Portable(md5) => md5.finalize(),
        }
    }
}
