//! Algorithm suites.
//!
//! The two ESDK suites s3crypt reads and writes are defined in the specification's
//! `framework/algorithm-suites.md`; the ChaCha20-Poly1305 suite is an s3crypt extension (see
//! SECURITY.md) that only s3crypt can read.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// An algorithm suite: content cipher, key derivation, commitment and (optionally) signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Suite {
    /// `0x0478`: AES-256-GCM, HKDF-SHA512, key commitment. The default.
    Aes256GcmHkdfSha512Commit,
    /// `0x0578`: as `0x0478` plus an ECDSA P-384 / SHA-384 signature over the whole message.
    Aes256GcmHkdfSha512CommitEcdsaP384,
    /// `0x7378` (s3crypt extension, unreadable by other ESDKs): ChaCha20-Poly1305 with the same
    /// HKDF-SHA512 derivation, commitment and framing as `0x0478`.
    ChaCha20Poly1305HkdfSha512Commit,
}

/// The content cipher a suite uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    /// AES-256 in Galois/Counter Mode, 12-byte IV, 16-byte tag.
    Aes256Gcm,
    /// ChaCha20-Poly1305 (RFC 8439), 12-byte nonce, 16-byte tag.
    ChaCha20Poly1305,
}

impl Suite {
    /// The suite written when none is chosen.
    pub const DEFAULT: Suite = Suite::Aes256GcmHkdfSha512Commit;

    /// All suites this build reads and writes.
    pub const ALL: [Suite; 3] = [
        Suite::Aes256GcmHkdfSha512Commit,
        Suite::Aes256GcmHkdfSha512CommitEcdsaP384,
        Suite::ChaCha20Poly1305HkdfSha512Commit,
    ];

    /// The 2-byte suite id as written in the header.
    pub const fn id(self) -> u16 {
        match self {
            Self::Aes256GcmHkdfSha512Commit => 0x0478,
            Self::Aes256GcmHkdfSha512CommitEcdsaP384 => 0x0578,
            Self::ChaCha20Poly1305HkdfSha512Commit => 0x7378,
        }
    }

    /// The suite for an id read from a header.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for ids this build does not implement (including the ESDK's
    /// non-committing and message-format-v1 suites).
    pub fn from_id(id: u16) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.id() == id)
            .ok_or_else(|| Error::Unsupported(format!("algorithm suite 0x{id:04X}")))
    }

    /// The content cipher.
    pub const fn cipher(self) -> Cipher {
        match self {
            Self::ChaCha20Poly1305HkdfSha512Commit => Cipher::ChaCha20Poly1305,
            _ => Cipher::Aes256Gcm,
        }
    }

    /// Whether messages of this suite end with an ECDSA P-384 signature.
    pub const fn is_signed(self) -> bool {
        matches!(self, Self::Aes256GcmHkdfSha512CommitEcdsaP384)
    }

    /// Whether the AWS Encryption SDKs can read this suite (false for s3crypt extensions).
    pub const fn is_esdk_standard(self) -> bool {
        !matches!(self, Self::ChaCha20Poly1305HkdfSha512Commit)
    }

    /// The short name used on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Aes256GcmHkdfSha512Commit => "aes256gcm-commit",
            Self::Aes256GcmHkdfSha512CommitEcdsaP384 => "aes256gcm-commit-p384",
            Self::ChaCha20Poly1305HkdfSha512Commit => "chacha20poly1305-commit",
        }
    }

    /// The name the AWS Encryption SDKs use, or an s3crypt name for extensions.
    pub const fn esdk_name(self) -> &'static str {
        match self {
            Self::Aes256GcmHkdfSha512Commit => "AES_256_GCM_HKDF_SHA512_COMMIT_KEY",
            Self::Aes256GcmHkdfSha512CommitEcdsaP384 => {
                "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384"
            }
            Self::ChaCha20Poly1305HkdfSha512Commit => {
                "S3CRYPT_CHACHA20_POLY1305_HKDF_SHA512_COMMIT_KEY"
            }
        }
    }
}

impl Default for Suite {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04X} ({})", self.id(), self.esdk_name())
    }
}

impl FromStr for Suite {
    type Err = Error;

    /// Accepts the short name, the ESDK name or the hex id (`0x0478`).
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            let id = u16::from_str_radix(hex, 16)
                .map_err(|_| Error::InvalidArgument(format!("unknown suite {s:?}")))?;
            return Self::from_id(id)
                .map_err(|_| Error::InvalidArgument(format!("unknown suite {s:?}")));
        }
        Self::ALL
            .into_iter()
            .find(|x| x.name().eq_ignore_ascii_case(t) || x.esdk_name().eq_ignore_ascii_case(t))
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown suite {s:?} (known: aes256gcm-commit, aes256gcm-commit-p384, chacha20poly1305-commit)"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_names_parse() {
        for s in Suite::ALL {
            assert_eq!(Suite::from_id(s.id()).unwrap(), s);
            assert_eq!(s.name().parse::<Suite>().unwrap(), s);
            assert_eq!(s.esdk_name().parse::<Suite>().unwrap(), s);
            assert_eq!(format!("0x{:04x}", s.id()).parse::<Suite>().unwrap(), s);
        }
    }

    #[test]
    fn non_committing_and_unknown_suites_are_unsupported() {
        for id in [0x0014, 0x0078, 0x0178, 0x0378, 0x0999, 0xFFFF] {
            assert!(matches!(Suite::from_id(id), Err(Error::Unsupported(_))));
        }
    }
}
