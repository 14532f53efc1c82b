//! Per-message keys and frame sealing (spec `data-format/message-body.md`,
//! `message-body-aad.md`, `client-apis/encrypt.md` "Derive the data key").
//!
//! ```text
//! encryption key = HKDF-SHA512(ikm = data key, salt = message id, info = suite id || "DERIVEKEY", L = 32)
//! commitment     = HKDF-SHA512(ikm = data key, salt = message id, info = "COMMITKEY", L = 32)
//! regular frame  = seq (4) | IV (12) | ciphertext (frame length) | tag (16)
//! final frame    = 0xFFFFFFFF | seq (4) | IV (12) | content length (4) | ciphertext | tag (16)
//! IV             = 8 zero bytes || seq
//! frame AAD      = message id (32) || "AWSKMSEncryptionClient Frame" or "... Final Frame"
//!                  || seq (4) || plaintext length of this frame (8)
//! ```

use hkdf::Hkdf;
use sha2::Sha512;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::aead::{AeadKey, NONCE_LEN, TAG_LEN};
use crate::error::{Error, Malformed, Result};
use crate::header::{COMMITMENT_LEN, HEADER_TAG_LEN, MESSAGE_ID_LEN};
use crate::keyring::DataKey;
use crate::suite::Suite;

/// Bytes before the ciphertext of a regular frame (sequence number, IV).
pub const REGULAR_PREFIX: usize = 4 + NONCE_LEN;
/// Bytes a regular frame adds to its plaintext.
pub const REGULAR_OVERHEAD: usize = REGULAR_PREFIX + TAG_LEN;
/// Bytes before the ciphertext of the final frame (marker, sequence number, IV, content length).
pub const FINAL_PREFIX: usize = 4 + 4 + NONCE_LEN + 4;
/// Bytes the final frame adds to its plaintext.
pub const FINAL_OVERHEAD: usize = FINAL_PREFIX + TAG_LEN;
/// The sequence-number field value that marks the final frame.
pub const FINAL_MARKER: u32 = u32::MAX;

const FRAME_LABEL: &[u8] = b"AWSKMSEncryptionClient Frame";
const FINAL_LABEL: &[u8] = b"AWSKMSEncryptionClient Final Frame";

fn iv(seq: u32) -> [u8; NONCE_LEN] {
    let mut iv = [0u8; NONCE_LEN];
    iv[8..].copy_from_slice(&seq.to_be_bytes());
    iv
}

/// Derives the content key and the commitment from a data key.
fn derive(
    suite: Suite,
    data_key: &DataKey,
    message_id: &[u8; MESSAGE_ID_LEN],
) -> (Zeroizing<[u8; 32]>, [u8; COMMITMENT_LEN]) {
    let hk = Hkdf::<Sha512>::new(Some(message_id), data_key.as_bytes());
    let mut info = [0u8; 2 + 9];
    info[..2].copy_from_slice(&suite.id().to_be_bytes());
    info[2..].copy_from_slice(b"DERIVEKEY");
    let mut key = Zeroizing::new([0u8; 32]);
    let mut commitment = [0u8; COMMITMENT_LEN];
    // 32 bytes is far below HKDF-SHA512's 255 * 64 byte limit, so expand cannot fail.
    #[allow(clippy::expect_used)]
    {
        hk.expand(&info, key.as_mut()).expect("HKDF output length");
        hk.expand(b"COMMITKEY", &mut commitment)
            .expect("HKDF output length");
    }
    (key, commitment)
}

/// The key of an existing message: verifies its header tag and opens its frames.
///
/// `Send + Sync`: frames are independent, so one `MessageKey` can open frames on many threads at
/// once. It has no `Debug` output beyond its suite, and no `Clone`.
///
/// It cannot seal or tag anything. A v2 header has no IV of its own: its tag is AES-GCM (or
/// ChaCha20-Poly1305) under this key with an all-zero nonce, and frames use the nonces 1, 2, ….
/// Tagging a second, different header (or sealing a second, different frame) under the key of an
/// existing message reuses a nonce, and two AES-GCM tags under one key and nonce reveal the GHASH
/// key, with which anyone can forge every frame and header of the message (SECURITY.md, advisory
/// S3C-2026-01: `rewrap` once did exactly that). Only [`SealingKey`], which exists only for a
/// message being written under a fresh random message id, seals and tags.
pub struct MessageKey {
    aead: AeadKey,
    suite: Suite,
    message_id: [u8; MESSAGE_ID_LEN],
}

impl std::fmt::Debug for MessageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageKey")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

/// The key of a message being written: its header was tagged once, when the key was made, and it
/// seals frames. Made only by `SealingKey::new_message` (crate-internal: the message id is
/// always fresh and random) and, for benchmarks, by the hazardous
/// `SealingKey::danger_for_frames_with_message_id` (feature `hazmat-bench`), which cannot tag a
/// header.
///
/// Each sequence number must be sealed at most once per key (the nonce is the sequence number);
/// the encryptors guarantee this by counting frames up from 1 and refusing to wrap around.
pub struct SealingKey(MessageKey);

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealingKey")
            .field("suite", &self.0.suite)
            .finish_non_exhaustive()
    }
}

impl SealingKey {
    /// Starts a new message: draws a random message id, derives the message's key and
    /// commitment, has `header` serialize the header given the message id and commitment, and
    /// appends the header tag (nonce 0). Returns the key for the frames, what `header` returned
    /// beside the bytes (e.g. the parsed header), and the tagged header.
    ///
    /// This is the only place a header tag is ever computed, and it runs once per fresh message
    /// id: there is no way to tag a second header under the same key.
    ///
    /// # Errors
    /// Whatever `header` returns.
    pub(crate) fn new_message<T>(
        suite: Suite,
        data_key: &DataKey,
        header: impl FnOnce(&[u8; MESSAGE_ID_LEN], &[u8; COMMITMENT_LEN]) -> Result<(T, Vec<u8>)>,
    ) -> Result<(Self, T, Vec<u8>)> {
        let mut message_id = [0u8; MESSAGE_ID_LEN];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut message_id);
        let (key, commitment) = MessageKey::derived(suite, data_key, message_id);
        let (value, mut bytes) = header(&message_id, &commitment)?;
        let tag = key.aead.seal([0; NONCE_LEN], &bytes, &mut []);
        bytes.extend_from_slice(&tag);
        Ok((Self(key), value, bytes))
    }

    /// Hazardous: a frame-sealing key for a caller-chosen message id, for benchmarks. Sealing two
    /// different frames with the same sequence number under keys from the same (data key,
    /// message id) reuses AEAD nonces and destroys confidentiality and integrity; it cannot tag
    /// a header. [`crate::Encryptor`] picks a fresh random message id for every message. Only
    /// with the `hazmat-bench` feature (and in this crate's tests).
    #[cfg(any(test, feature = "hazmat-bench"))]
    #[doc(hidden)]
    pub fn danger_for_frames_with_message_id(
        suite: Suite,
        data_key: &DataKey,
        message_id: [u8; MESSAGE_ID_LEN],
    ) -> Self {
        Self(MessageKey::derived(suite, data_key, message_id).0)
    }

    /// The suite.
    pub fn suite(&self) -> Suite {
        self.0.suite
    }

    /// The key that opens what this one sealed (tests, and readers of a message just written).
    pub fn opener(&self) -> &MessageKey {
        &self.0
    }

    /// Seals a regular frame in place. `frame` is `REGULAR_PREFIX` bytes of space, the plaintext
    /// (exactly the frame length), and `TAG_LEN` bytes of space.
    ///
    /// # Panics
    /// If `frame` is shorter than the overhead or `seq` is 0 or the final marker (caller bugs).
    pub fn seal_regular(&self, seq: u32, frame: &mut [u8]) {
        let k = &self.0;
        assert!(seq != 0 && seq != FINAL_MARKER && frame.len() >= REGULAR_OVERHEAD);
        let len = frame.len() - REGULAR_OVERHEAD;
        let mut aad = [0u8; 78];
        let n = k.aad(FRAME_LABEL, seq, len as u64, &mut aad);
        frame[..4].copy_from_slice(&seq.to_be_bytes());
        frame[4..REGULAR_PREFIX].copy_from_slice(&iv(seq));
        let (body, tag) = frame[REGULAR_PREFIX..].split_at_mut(len);
        tag.copy_from_slice(&k.aead.seal(iv(seq), &aad[..n], body));
    }

    /// Seals the final frame in place. `frame` is `FINAL_PREFIX` bytes of space, the plaintext
    /// (0 to frame length bytes), and `TAG_LEN` bytes of space.
    ///
    /// # Panics
    /// If `frame` is shorter than the overhead, the content is over 4 GiB, or `seq` is 0.
    pub fn seal_final(&self, seq: u32, frame: &mut [u8]) {
        let k = &self.0;
        assert!(seq != 0 && frame.len() >= FINAL_OVERHEAD);
        let len = frame.len() - FINAL_OVERHEAD;
        let len32 = u32::try_from(len).unwrap_or(u32::MAX);
        assert!(len32 as usize == len);
        let mut aad = [0u8; 78];
        let n = k.aad(FINAL_LABEL, seq, len as u64, &mut aad);
        frame[..4].copy_from_slice(&FINAL_MARKER.to_be_bytes());
        frame[4..8].copy_from_slice(&seq.to_be_bytes());
        frame[8..20].copy_from_slice(&iv(seq));
        frame[20..FINAL_PREFIX].copy_from_slice(&len32.to_be_bytes());
        let (body, tag) = frame[FINAL_PREFIX..].split_at_mut(len);
        tag.copy_from_slice(&k.aead.seal(iv(seq), &aad[..n], body));
    }
}

impl MessageKey {
    /// The message key and commitment for a data key and message id (spec "Derive the data key").
    fn derived(
        suite: Suite,
        data_key: &DataKey,
        message_id: [u8; MESSAGE_ID_LEN],
    ) -> (Self, [u8; COMMITMENT_LEN]) {
        let (key, commitment) = derive(suite, data_key, &message_id);
        (
            Self {
                aead: AeadKey::new(suite.cipher(), &key),
                suite,
                message_id,
            },
            commitment,
        )
    }

    /// Derives the key of an existing message and checks the header's commitment in constant time.
    ///
    /// # Errors
    /// [`Error::Authentication`] if the commitment does not match: this data key is not the one
    /// the message was written with.
    pub fn for_decryption(
        suite: Suite,
        data_key: &DataKey,
        message_id: [u8; MESSAGE_ID_LEN],
        commitment: &[u8; COMMITMENT_LEN],
    ) -> Result<Self> {
        let (key, expected) = Self::derived(suite, data_key, message_id);
        if !bool::from(expected.ct_eq(commitment)) {
            return Err(Error::Authentication);
        }
        Ok(key)
    }

    /// The suite.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Verifies the header authentication tag.
    ///
    /// # Errors
    /// [`Error::Authentication`] if it does not verify.
    pub fn verify_header(&self, header: &[u8], tag: &[u8; HEADER_TAG_LEN]) -> Result<()> {
        let mut t = *tag;
        self.aead.open([0; NONCE_LEN], header, &mut t)
    }

    fn aad(&self, label: &[u8], seq: u32, len: u64, buf: &mut [u8; 32 + 34 + 4 + 8]) -> usize {
        let mut n = 0;
        for part in [
            &self.message_id[..],
            label,
            &seq.to_be_bytes(),
            &len.to_be_bytes(),
        ] {
            buf[n..n + part.len()].copy_from_slice(part);
            n += part.len();
        }
        n
    }

    /// Opens a regular frame in place (`frame` = the whole frame, `REGULAR_OVERHEAD` + frame
    /// length bytes). On success the plaintext is `frame[REGULAR_PREFIX..frame.len() - TAG_LEN]`.
    ///
    /// # Errors
    /// [`Error::Malformed`] if the sequence number or IV is not the expected one;
    /// [`Error::Authentication`] if the tag does not verify.
    pub fn open_regular(&self, expected_seq: u32, frame: &mut [u8]) -> Result<()> {
        if frame.len() < REGULAR_OVERHEAD {
            return Err(Error::Truncated("a frame"));
        }
        let found = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        if found != expected_seq {
            return Err(Malformed::SequenceNumber {
                expected: expected_seq,
                found,
            }
            .into());
        }
        if frame[4..REGULAR_PREFIX] != iv(expected_seq) {
            return Err(Malformed::FrameIv.into());
        }
        let len = frame.len() - REGULAR_OVERHEAD;
        let mut aad = [0u8; 78];
        let n = self.aad(FRAME_LABEL, expected_seq, len as u64, &mut aad);
        self.aead
            .open(iv(expected_seq), &aad[..n], &mut frame[REGULAR_PREFIX..])
    }

    /// Reads the content length of a final frame from its first `FINAL_PREFIX` bytes.
    ///
    /// # Errors
    /// [`Error::Truncated`] if fewer bytes are given, [`Error::Malformed`] if it is not a final
    /// frame or its content length exceeds `frame_length`.
    pub fn final_content_len(prefix: &[u8], frame_length: u32) -> Result<u32> {
        if prefix.len() < FINAL_PREFIX {
            return Err(Error::Truncated("the final frame"));
        }
        if prefix[..4] != FINAL_MARKER.to_be_bytes() {
            return Err(Malformed::Field("final frame marker").into());
        }
        let len = u32::from_be_bytes([prefix[20], prefix[21], prefix[22], prefix[23]]);
        if len > frame_length {
            return Err(Malformed::FinalFrameLength.into());
        }
        Ok(len)
    }

    /// Opens the final frame in place (`frame` = exactly the whole final frame). On success the
    /// plaintext is `frame[FINAL_PREFIX..frame.len() - TAG_LEN]`.
    ///
    /// # Errors
    /// As [`MessageKey::open_regular`], plus [`Error::Malformed`] if the content length field
    /// disagrees with `frame.len()`.
    pub fn open_final(&self, expected_seq: u32, frame: &mut [u8]) -> Result<()> {
        if frame.len() < FINAL_OVERHEAD {
            return Err(Error::Truncated("the final frame"));
        }
        if frame[..4] != FINAL_MARKER.to_be_bytes() {
            return Err(Malformed::Field("final frame marker").into());
        }
        let found = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        if found != expected_seq {
            return Err(Malformed::SequenceNumber {
                expected: expected_seq,
                found,
            }
            .into());
        }
        if frame[8..20] != iv(expected_seq) {
            return Err(Malformed::FrameIv.into());
        }
        let len = u32::from_be_bytes([frame[20], frame[21], frame[22], frame[23]]) as usize;
        if len != frame.len() - FINAL_OVERHEAD {
            return Err(Malformed::FinalFrameLength.into());
        }
        let mut aad = [0u8; 78];
        let n = self.aad(FINAL_LABEL, expected_seq, len as u64, &mut aad);
        self.aead
            .open(iv(expected_seq), &aad[..n], &mut frame[FINAL_PREFIX..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SealingKey {
        SealingKey::danger_for_frames_with_message_id(
            Suite::DEFAULT,
            &DataKey::from_bytes([3; 32]),
            [5; 32],
        )
    }

    #[test]
    fn commitment_is_checked() {
        let dk = DataKey::from_bytes([3; 32]);
        let (_, c) = MessageKey::derived(Suite::DEFAULT, &dk, [5; 32]);
        assert!(MessageKey::for_decryption(Suite::DEFAULT, &dk, [5; 32], &c).is_ok());
        let mut bad = c;
        bad[31] ^= 1;
        assert!(matches!(
            MessageKey::for_decryption(Suite::DEFAULT, &dk, [5; 32], &bad),
            Err(Error::Authentication)
        ));
        assert!(matches!(
            MessageKey::for_decryption(Suite::DEFAULT, &DataKey::from_bytes([4; 32]), [5; 32], &c),
            Err(Error::Authentication)
        ));
    }

    #[test]
    fn regular_frame_round_trip_and_tamper() {
        let k = key();
        let mut f = vec![0u8; REGULAR_OVERHEAD + 100];
        f[REGULAR_PREFIX..REGULAR_PREFIX + 100].fill(0x42);
        k.seal_regular(7, &mut f);
        let sealed = f.clone();
        k.opener().open_regular(7, &mut f).unwrap();
        assert!(f[REGULAR_PREFIX..REGULAR_PREFIX + 100]
            .iter()
            .all(|&b| b == 0x42));
        assert!(matches!(
            k.opener().open_regular(8, &mut sealed.clone()),
            Err(Error::Malformed(Malformed::SequenceNumber {
                expected: 8,
                found: 7
            }))
        ));
        for i in REGULAR_PREFIX..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x80;
            assert!(
                matches!(
                    k.opener().open_regular(7, &mut t),
                    Err(Error::Authentication)
                ),
                "byte {i}"
            );
        }
        let mut t = sealed;
        t[5] ^= 1;
        assert!(matches!(
            k.opener().open_regular(7, &mut t),
            Err(Error::Malformed(Malformed::FrameIv))
        ));
    }

    #[test]
    fn final_frame_round_trip_and_length_check() {
        let k = key();
        for len in [0usize, 1, 33] {
            let mut f = vec![0x11u8; FINAL_OVERHEAD + len];
            k.seal_final(3, &mut f);
            assert_eq!(MessageKey::final_content_len(&f, 64).unwrap() as usize, len);
            assert!(MessageKey::final_content_len(&f, len as u32).is_ok());
            if len > 0 {
                assert!(matches!(
                    MessageKey::final_content_len(&f, len as u32 - 1),
                    Err(Error::Malformed(_))
                ));
            }
            let mut g = f.clone();
            k.opener().open_final(3, &mut g).unwrap();
            assert!(g[FINAL_PREFIX..FINAL_PREFIX + len]
                .iter()
                .all(|&b| b == 0x11));
            // A final frame is not accepted in place of a regular one and vice versa.
            assert!(k.opener().open_regular(3, &mut f.clone()).is_err());
        }
    }

    #[test]
    fn each_new_message_tags_its_header_once_under_a_fresh_message_id() {
        let dk = DataKey::from_bytes([3; 32]);
        let mut ids = std::collections::HashSet::new();
        for _ in 0..64 {
            let (k, (id, c), tagged) = SealingKey::new_message(Suite::DEFAULT, &dk, |id, c| {
                Ok(((*id, *c), b"header".to_vec()))
            })
            .unwrap();
            assert!(ids.insert(id), "a message id came back");
            let opener = MessageKey::for_decryption(Suite::DEFAULT, &dk, id, &c).unwrap();
            let (body, tag) = tagged.split_at(tagged.len() - HEADER_TAG_LEN);
            assert_eq!(body, b"header");
            let tag: [u8; HEADER_TAG_LEN] = tag.try_into().unwrap();
            opener.verify_header(b"header", &tag).unwrap();
            k.opener().verify_header(b"header", &tag).unwrap();
            assert!(matches!(
                opener.verify_header(b"headeR", &tag),
                Err(Error::Authentication)
            ));
        }
    }
}
