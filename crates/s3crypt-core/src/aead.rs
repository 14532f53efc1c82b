//! The AEAD provider: the only place that touches a cipher implementation.
//!
//! Backed by `aws-lc-rs` (AWS-LC: audited, FIPS 140-3 validated, the AWS SDKs' own crypto). Its
//! AES-GCM picks AVX-512/VAES, VAES/AVX2 or AES-NI/CLMUL code at run time, so a default build
//! with no target-cpu flags is fast. `benches/` measures it against `ring` and RustCrypto's
//! `aes-gcm` in the same run: on a 2-core Xeon with AVX-512 and VAES it seals 64 KiB at 15.9 GB/s
//! on one core, `ring` at 10.6 GB/s, RustCrypto at 1.6 GB/s; frames are where the encrypt and
//! decrypt paths spend their CPU after the kernel's copy. Both suites' AEADs have 12-byte nonces
//! and 16-byte tags, so the frame layout does not depend on the cipher.
//!
//! Nonce rule: every (key, nonce) pair is used once. Each message has its own derived key (HKDF
//! over a fresh random message id), and within a message the nonce is the frame's sequence number,
//! which strictly increases; the header tag uses the all-zero nonce, which no frame uses because
//! sequence numbers start at 1.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::error::{Error, Result};
use crate::suite::Cipher;

/// Tag length of every supported AEAD.
pub(crate) const TAG_LEN: usize = 16;
/// Nonce length of every supported AEAD.
pub(crate) const NONCE_LEN: usize = 12;

/// A keyed AEAD. The key schedule lives inside the provider; our copy of the raw key is wiped by
/// the caller (`Zeroizing`).
pub(crate) struct AeadKey(LessSafeKey);

impl AeadKey {
    pub(crate) fn new(cipher: Cipher, key: &[u8; 32]) -> Self {
        let alg = match cipher {
            Cipher::Aes256Gcm => &aead::AES_256_GCM,
            Cipher::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        };
        // Both algorithms take 32-byte keys, so this cannot fail.
        #[allow(clippy::expect_used)]
        let unbound = UnboundKey::new(alg, key).expect("32-byte key for a 256-bit AEAD");
        Self(LessSafeKey::new(unbound))
    }

    /// Encrypts `in_out` in place and returns the tag.
    pub(crate) fn seal(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> [u8; TAG_LEN] {
        // The provider fails only if the input exceeds the algorithm's limit (~64 GiB for GCM);
        // frames are at most 2^31-1 bytes.
        #[allow(clippy::expect_used)]
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), in_out)
            .expect("frame within the AEAD's length limit");
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Decrypts `ciphertext_and_tag` in place; on success the plaintext occupies the first
    /// `len - TAG_LEN` bytes.
    ///
    /// # Errors
    /// [`Error::Authentication`] if the tag does not verify (the buffer content is then
    /// unspecified and must not be released).
    pub(crate) fn open(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        ciphertext_and_tag: &mut [u8],
    ) -> Result<()> {
        self.0
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                ciphertext_and_tag,
            )
            .map(|_| ())
            .map_err(|_| Error::Authentication)
    }
}

/// Encrypts a 32-byte data key under a wrapping key with AES-256-GCM (raw AES keyring).
pub(crate) fn aes_gcm_seal(
    key: &[u8; 32],
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    data: &mut [u8],
) -> [u8; TAG_LEN] {
    AeadKey::new(Cipher::Aes256Gcm, key).seal(nonce, aad, data)
}

/// Decrypts with AES-256-GCM (raw AES keyring).
pub(crate) fn aes_gcm_open(
    key: &[u8; 32],
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    data: &mut [u8],
) -> Result<()> {
    AeadKey::new(Cipher::Aes256Gcm, key).open(nonce, aad, data)
}
