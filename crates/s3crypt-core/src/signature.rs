//! ECDSA P-384 / SHA-384 message signatures for suite 0x0578 (spec `data-format/message-footer.md`).
//!
//! The signer's public key travels in the encryption context under `aws-crypto-public-key` as the
//! base64 of its compressed SEC1 point; the footer is `u16 length || DER signature` over the SHA-384
//! of every byte before the footer.

use aws_lc_rs::digest;
use base64::Engine as _;
use p384::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use p384::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};

use crate::context::{EncryptionContext, PUBLIC_KEY_KEY};
use crate::error::{Error, Malformed, Result};

/// Largest footer signature accepted (a DER P-384 signature is at most 104 bytes).
pub(crate) const MAX_SIGNATURE_LEN: usize = 104;

/// Hashes a message while it is written and signs it at the end. The private key is wiped on drop
/// (`p384` zeroizes secret scalars).
pub(crate) struct Signer {
    key: SigningKey,
    hash: digest::Context,
}

impl Signer {
    /// A new signer with a fresh key, and the context value for its public key.
    pub(crate) fn generate() -> (Self, String) {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let point = key.verifying_key().to_encoded_point(true);
        let b64 = base64::engine::general_purpose::STANDARD.encode(point.as_bytes());
        (
            Self {
                key,
                hash: digest::Context::new(&digest::SHA384),
            },
            b64,
        )
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.hash.update(bytes);
    }

    /// The footer: `u16` length and DER signature (low-S normalized).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if signing fails (it does not for a valid key).
    pub(crate) fn finish(self) -> Result<Vec<u8>> {
        let digest = self.hash.finish();
        let sig: Signature = self
            .key
            .sign_prehash(digest.as_ref())
            .map_err(|_| Error::InvalidArgument("ECDSA signing failed".into()))?;
        let sig = sig.normalize_s().unwrap_or(sig);
        let der: DerSignature = sig.to_der();
        let der = der.as_bytes();
        let mut footer = Vec::with_capacity(2 + der.len());
        footer.extend_from_slice(&(der.len() as u16).to_be_bytes());
        footer.extend_from_slice(der);
        Ok(footer)
    }
}

/// Hashes a message while it is read and verifies its footer at the end.
pub(crate) struct Verifier {
    key: VerifyingKey,
    hash: digest::Context,
}

impl Verifier {
    /// The verifier for a message whose (authenticated) context carries the public key.
    ///
    /// # Errors
    /// [`Error::Malformed`] if the context has no public key or it is not a valid P-384 point.
    pub(crate) fn from_context(ctx: &EncryptionContext) -> Result<Self> {
        let bad = || {
            Error::Malformed(Malformed::Field(
                "signature public key in the encryption context",
            ))
        };
        let b64 = ctx.get(PUBLIC_KEY_KEY).ok_or_else(bad)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad())?;
        let key = VerifyingKey::from_sec1_bytes(&bytes).map_err(|_| bad())?;
        Ok(Self {
            key,
            hash: digest::Context::new(&digest::SHA384),
        })
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.hash.update(bytes);
    }

    /// Verifies a DER signature over everything hashed.
    ///
    /// # Errors
    /// [`Error::Authentication`] if it does not verify or is not a valid DER signature.
    pub(crate) fn verify(self, der: &[u8]) -> Result<()> {
        let sig = Signature::from_der(der).map_err(|_| Error::Authentication)?;
        let digest = self.hash.finish();
        self.key
            .verify_prehash(digest.as_ref(), &sig)
            .map_err(|_| Error::Authentication)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_tamper() {
        let (mut s, pk) = Signer::generate();
        let mut ctx = EncryptionContext::new();
        ctx.insert_reserved(PUBLIC_KEY_KEY, pk);
        s.update(b"message");
        let footer = s.finish().unwrap();
        let len = u16::from_be_bytes([footer[0], footer[1]]) as usize;
        assert_eq!(len, footer.len() - 2);
        let mut v = Verifier::from_context(&ctx).unwrap();
        v.update(b"message");
        v.verify(&footer[2..]).unwrap();
        let mut v = Verifier::from_context(&ctx).unwrap();
        v.update(b"messagf");
        assert!(matches!(v.verify(&footer[2..]), Err(Error::Authentication)));
        assert!(Verifier::from_context(&EncryptionContext::new()).is_err());
    }
}
