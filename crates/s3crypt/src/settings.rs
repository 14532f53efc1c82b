//! Client settings: how transfers are cut and how new objects are encrypted.
//!
//! Both are `#[non_exhaustive]`: start from [`Transfer::new`] / [`Encryption::new`] (or
//! `Default`) and change what you need with the `with_*` methods, so that settings added later
//! do not break your code.

use crate::error::{Error, Result};
use s3crypt_core::Suite;

/// How transfers are cut and how many requests run at once.
///
/// ```
/// let t = s3crypt::Transfer::new().with_part_size(8 << 20).with_concurrency(4);
/// assert_eq!(t.multipart_threshold, 16 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transfer {
    /// Plaintext bytes per multipart part, rounded to whole frames (default 16 MiB; every part
    /// but the last holds at least 5 MiB, as S3 requires).
    pub part_size: usize,
    /// Objects whose plaintext is at most this long are sent with one PUT (default 16 MiB).
    pub multipart_threshold: usize,
    /// Parts in flight at once per upload (default 8). Memory is about
    /// `(concurrency + 1) × part_size` per upload; part buffers are recycled.
    pub concurrency: usize,
    /// Ranged GETs in flight at once per download (default 16). Ranges are at most 8 MiB (less
    /// when `part_size` is smaller), so memory is about
    /// `(download_concurrency + 4) × min(part_size, 8 MiB)` per download, about what an upload
    /// holds; buffers are recycled. More ranges than parts because a GET's throughput is bound
    /// by the server's per-stream rate, and its buffers are half an upload part's size.
    pub download_concurrency: usize,
}

impl Transfer {
    /// The defaults: 16 MiB parts and threshold, 8 parts and 16 ranges in flight.
    pub const fn new() -> Self {
        Self {
            part_size: 16 << 20,
            multipart_threshold: 16 << 20,
            concurrency: 8,
            download_concurrency: 16,
        }
    }

    /// Plaintext bytes per multipart part.
    #[must_use]
    pub const fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes;
        self
    }

    /// Largest plaintext sent with one PUT.
    #[must_use]
    pub const fn with_multipart_threshold(mut self, bytes: usize) -> Self {
        self.multipart_threshold = bytes;
        self
    }

    /// Parts in flight per upload.
    #[must_use]
    pub const fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Ranged GETs in flight per download.
    #[must_use]
    pub const fn with_download_concurrency(mut self, n: usize) -> Self {
        self.download_concurrency = n;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for zero concurrency, a zero part size, or a part size or
    /// threshold above 5 GiB.
    pub fn validate(&self) -> Result<()> {
        if self.concurrency == 0 || self.download_concurrency == 0 {
            return Err(Error::InvalidArgument(
                "concurrency and download_concurrency must be at least 1".into(),
            ));
        }
        if self.part_size == 0 {
            return Err(Error::InvalidArgument(
                "part_size must be at least 1 byte".into(),
            ));
        }
        // S3's largest part and largest single PUT.
        const FIVE_GIB: usize = 5 << 30;
        if self.part_size > FIVE_GIB || self.multipart_threshold > FIVE_GIB {
            return Err(Error::InvalidArgument(
                "part_size and multipart_threshold must be at most 5 GiB (S3's largest part and \
                 single PUT)"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl Default for Transfer {
    fn default() -> Self {
        Self::new()
    }
}

/// What new objects are encrypted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Encryption {
    /// Algorithm suite (default 0x0478).
    pub suite: Suite,
    /// Plaintext bytes per frame (default 64 KiB).
    pub frame_length: u32,
}

impl Encryption {
    /// The defaults: suite 0x0478 (committing, unsigned), 64 KiB frames.
    pub const fn new() -> Self {
        Self {
            suite: Suite::DEFAULT,
            frame_length: s3crypt_core::DEFAULT_FRAME_LENGTH,
        }
    }

    /// The algorithm suite.
    #[must_use]
    pub const fn with_suite(mut self, suite: Suite) -> Self {
        self.suite = suite;
        self
    }

    /// Plaintext bytes per frame (a non-zero multiple of 16).
    #[must_use]
    pub const fn with_frame_length(mut self, bytes: u32) -> Self {
        self.frame_length = bytes;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::Crypto`] with an invalid-argument error for a frame length that is not a
    /// non-zero multiple of 16.
    pub fn validate(&self) -> Result<()> {
        let opts = s3crypt_core::EncryptOptions {
            suite: self.suite,
            frame_length: self.frame_length,
            ..Default::default()
        };
        Ok(opts.validate()?)
    }
}

impl Default for Encryption {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_outside_s3s_limits_are_refused() {
        assert!(Transfer::new().validate().is_ok());
        for t in [
            Transfer::new().with_concurrency(0),
            Transfer::new().with_download_concurrency(0),
            Transfer::new().with_part_size(0),
            Transfer::new().with_part_size((5 << 30) + 1),
            // "Never multipart" must not overflow into an empty upload.
            Transfer::new().with_multipart_threshold(usize::MAX),
        ] {
            assert!(t.validate().is_err(), "{t:?}");
        }
        assert!(Encryption::new().with_frame_length(17).validate().is_err());
    }
}
