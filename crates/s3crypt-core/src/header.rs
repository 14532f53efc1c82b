//! The message header, version 2 (spec `data-format/message-header.md`).
//!
//! ```text
//! version (1) = 0x02 | suite id (2) | message id (32) | AAD length (2) | encryption context (AAD length)
//! | EDK count (2) | EDKs | content type (1) = 0x02 | frame length (4) | commitment (32) | auth tag (16)
//! ```
//! An EDK is `u16` + provider id (UTF-8), `u16` + provider info, `u16` + ciphertext. The auth tag
//! is computed by [`crate::key::MessageKey`]; this module only reads and writes bytes.

use crate::context::EncryptionContext;
use crate::error::{Error, Malformed, Result};
use crate::suite::Suite;
use crate::wire::{put_vec16, Cursor};

/// Message format version written and read.
pub const VERSION: u8 = 0x02;
/// Content type "framed", the only one s3crypt writes or reads.
pub const CONTENT_TYPE_FRAMED: u8 = 0x02;
/// Content type "non-framed" (single-blob messages of older SDKs); not supported.
pub const CONTENT_TYPE_NON_FRAMED: u8 = 0x01;
/// Length of the message id.
pub const MESSAGE_ID_LEN: usize = 32;
/// Length of the key commitment ("suite data" in the spec).
pub const COMMITMENT_LEN: usize = 32;
/// Length of the header authentication tag.
pub const HEADER_TAG_LEN: usize = 16;

/// An encrypted data key: the data key wrapped by one keyring.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedDataKey {
    /// Who wrapped it: a raw keyring's namespace, or `aws-kms`.
    pub provider_id: String,
    /// Which key wrapped it (raw AES: key name and IV; KMS: key ARN).
    pub provider_info: Vec<u8>,
    /// The wrapped data key.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for EncryptedDataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedDataKey")
            .field("provider_id", &self.provider_id)
            .field(
                "provider_info",
                &String::from_utf8_lossy(&self.provider_info),
            )
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

impl EncryptedDataKey {
    /// The key name inside the provider info, if the info has the raw AES keyring's layout: the
    /// name, then the tag length in bits (128) and the IV length (12) as 4-byte big-endian
    /// integers, then the 12-byte IV.
    pub fn raw_aes_key_name(&self) -> Option<&str> {
        const SUFFIX: usize = 4 + 4 + 12;
        let n = self.provider_info.len().checked_sub(SUFFIX)?;
        if self.provider_info[n..n + 8] != [0, 0, 0, 128, 0, 0, 0, 12] {
            return None;
        }
        std::str::from_utf8(&self.provider_info[..n]).ok()
    }

    /// A short human description: provider id and the printable part of the provider info.
    pub fn describe(&self) -> String {
        let info = self
            .raw_aes_key_name()
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&self.provider_info).into_owned());
        format!("{}/{}", self.provider_id, info)
    }
}

/// Limits applied while reading a header, before anything is allocated from its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest frame length accepted. Decryption holds (frames in flight × frame length) bytes.
    pub max_frame_length: u32,
    /// Most encrypted data keys accepted (each may cost a keyring call).
    pub max_encrypted_data_keys: u16,
}

impl ReadLimits {
    /// 64 MiB frames.
    pub const DEFAULT_MAX_FRAME_LENGTH: u32 = 64 << 20;
    /// 64 encrypted data keys.
    pub const DEFAULT_MAX_EDKS: u16 = 64;
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            max_frame_length: Self::DEFAULT_MAX_FRAME_LENGTH,
            max_encrypted_data_keys: Self::DEFAULT_MAX_EDKS,
        }
    }
}

/// A parsed v2 header (everything but the authentication tag, which is kept beside it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Algorithm suite.
    pub suite: Suite,
    /// Random per-message id; salt of the key derivation.
    pub message_id: [u8; MESSAGE_ID_LEN],
    /// Authenticated context, including `aws-crypto-public-key` for signed suites.
    pub context: EncryptionContext,
    /// The data key wrapped under each configured key.
    pub encrypted_data_keys: Vec<EncryptedDataKey>,
    /// Plaintext bytes per regular frame.
    pub frame_length: u32,
    /// Key commitment: HKDF output that binds the data key to this message id.
    pub commitment: [u8; COMMITMENT_LEN],
}

/// A header as read from a message: the parsed fields, the exact bytes that were authenticated,
/// and the tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedHeader {
    /// The fields.
    pub header: Header,
    /// The header bytes before the tag (the AAD of the tag), exactly as read.
    pub bytes: Vec<u8>,
    /// The header authentication tag.
    pub tag: [u8; HEADER_TAG_LEN],
}

impl ParsedHeader {
    /// Total header length on the wire, tag included.
    pub fn len(&self) -> usize {
        self.bytes.len() + HEADER_TAG_LEN
    }

    /// Always false: a header is never empty.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl Header {
    /// Serializes the header without its tag.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if a field does not fit the format (no EDK, more than 65535 EDKs,
    /// a field over 65535 bytes, frame length 0).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        if self.encrypted_data_keys.is_empty() {
            return Err(Error::InvalidArgument(
                "a message needs at least one encrypted data key".into(),
            ));
        }
        if self.frame_length == 0 {
            return Err(Error::InvalidArgument("frame length must not be 0".into()));
        }
        let mut out = Vec::with_capacity(128);
        out.push(VERSION);
        out.extend_from_slice(&self.suite.id().to_be_bytes());
        out.extend_from_slice(&self.message_id);
        let ctx = self.context.to_bytes()?;
        put_vec16(&mut out, &ctx, "encryption context")?;
        let n = u16::try_from(self.encrypted_data_keys.len())
            .map_err(|_| Error::InvalidArgument("more than 65535 encrypted data keys".into()))?;
        out.extend_from_slice(&n.to_be_bytes());
        for edk in &self.encrypted_data_keys {
            put_vec16(&mut out, edk.provider_id.as_bytes(), "provider id")?;
            put_vec16(&mut out, &edk.provider_info, "provider info")?;
            put_vec16(&mut out, &edk.ciphertext, "encrypted data key")?;
        }
        out.push(CONTENT_TYPE_FRAMED);
        out.extend_from_slice(&self.frame_length.to_be_bytes());
        out.extend_from_slice(&self.commitment);
        Ok(out)
    }

    /// Reads a header (and its tag) from the start of `input`.
    ///
    /// # Errors
    /// [`Error::Truncated`] if `input` ends inside the header (a streaming caller retries with
    /// more bytes); [`Error::Unsupported`] for another version, suite or content type;
    /// [`Error::Malformed`] for invalid fields; [`Error::LimitExceeded`] for a frame length or EDK
    /// count over `limits`.
    pub fn read(input: &[u8], limits: &ReadLimits) -> Result<ParsedHeader> {
        let mut cur = Cursor::new(input);
        let version = cur.u8("the header")?;
        if version != VERSION {
            return Err(Error::Unsupported(format!(
                "message format version 0x{version:02X} (s3crypt reads version 2)"
            )));
        }
        let suite = Suite::from_id(cur.u16("the header")?)?;
        let message_id = cur.array::<MESSAGE_ID_LEN>("the header")?;
        let context = EncryptionContext::from_bytes(cur.vec16("the encryption context")?)?;
        // The signature public key is present exactly when the suite signs (spec
        // `client-apis/decrypt.md`: a signed suite's verification key comes from the context).
        if context.get(crate::context::PUBLIC_KEY_KEY).is_some() != suite.is_signed() {
            return Err(Malformed::Field("signature public key in the encryption context").into());
        }
        let edk_count = cur.u16("the header")?;
        if edk_count == 0 {
            return Err(Malformed::NoEncryptedDataKeys.into());
        }
        if edk_count > limits.max_encrypted_data_keys {
            return Err(Error::LimitExceeded(format!(
                "{edk_count} encrypted data keys (at most {} accepted)",
                limits.max_encrypted_data_keys
            )));
        }
        let mut encrypted_data_keys = Vec::with_capacity(usize::from(edk_count));
        for _ in 0..edk_count {
            let provider_id = cur.vec16("an encrypted data key")?;
            let provider_id = std::str::from_utf8(provider_id)
                .map_err(|_| Error::Malformed(Malformed::Field("provider id (not UTF-8)")))?
                .to_owned();
            let provider_info = cur.vec16("an encrypted data key")?.to_vec();
            let ciphertext = cur.vec16("an encrypted data key")?.to_vec();
            encrypted_data_keys.push(EncryptedDataKey {
                provider_id,
                provider_info,
                ciphertext,
            });
        }
        match cur.u8("the header")? {
            CONTENT_TYPE_FRAMED => {}
            CONTENT_TYPE_NON_FRAMED => {
                return Err(Error::Unsupported(
                    "non-framed content (s3crypt reads framed messages)".into(),
                ))
            }
            _ => return Err(Malformed::Field("content type").into()),
        }
        let frame_length = cur.u32("the header")?;
        if frame_length == 0 {
            return Err(Malformed::ZeroFrameLength.into());
        }
        if frame_length > limits.max_frame_length {
            return Err(Error::LimitExceeded(format!(
                "frame length {frame_length} (at most {} accepted)",
                limits.max_frame_length
            )));
        }
        let commitment = cur.array::<COMMITMENT_LEN>("the header")?;
        let header_len = cur.position();
        let tag = cur.array::<HEADER_TAG_LEN>("the header")?;
        let header = Header {
            suite,
            message_id,
            context,
            encrypted_data_keys,
            frame_length,
            commitment,
        };
        Ok(ParsedHeader {
            header,
            bytes: input[..header_len].to_vec(),
            tag,
        })
    }
}

/// Reads a header from the start of `r`, growing the buffer geometrically (so that re-parsing
/// stays linear in the header size); returns it with the bytes read past it.
///
/// # Errors
/// As [`Header::read`] ([`Error::Truncated`] if `r` ends inside the header), or [`Error::Io`].
pub fn read_from(
    r: &mut impl std::io::Read,
    limits: &ReadLimits,
) -> Result<(ParsedHeader, Vec<u8>)> {
    let mut buf = Vec::new();
    loop {
        let want = buf.len().max(4096);
        let start = buf.len();
        buf.resize(start + want, 0);
        let mut n = 0;
        while n < want {
            match r.read(&mut buf[start + n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        buf.truncate(start + n);
        match Header::read(&buf, limits) {
            Ok(parsed) => {
                let rest = buf.split_off(parsed.len());
                return Ok((parsed, rest));
            }
            Err(Error::Truncated(_)) if n == want => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Header {
        Header {
            suite: Suite::DEFAULT,
            message_id: [7; 32],
            context: EncryptionContext::from_pairs([("purpose", "test")]).unwrap(),
            encrypted_data_keys: vec![EncryptedDataKey {
                provider_id: "ns".into(),
                provider_info: b"name".to_vec(),
                ciphertext: vec![1; 48],
            }],
            frame_length: 4096,
            commitment: [9; 32],
        }
    }

    fn with_tag(h: &Header) -> Vec<u8> {
        let mut b = h.to_bytes().unwrap();
        b.extend_from_slice(&[0xAA; 16]);
        b
    }

    #[test]
    fn round_trip() {
        let h = sample();
        let bytes = with_tag(&h);
        let p = Header::read(&bytes, &ReadLimits::default()).unwrap();
        assert_eq!(p.header, h);
        assert_eq!(p.len(), bytes.len());
        assert_eq!(p.tag, [0xAA; 16]);
    }

    #[test]
    fn every_prefix_is_truncated() {
        let bytes = with_tag(&sample());
        for n in 0..bytes.len() {
            assert!(
                matches!(
                    Header::read(&bytes[..n], &ReadLimits::default()),
                    Err(Error::Truncated(_))
                ),
                "{n}"
            );
        }
    }

    #[test]
    fn limits_apply_before_allocation() {
        let mut h = sample();
        h.frame_length = u32::MAX;
        let r = Header::read(&with_tag(&h), &ReadLimits::default());
        assert!(matches!(r, Err(Error::LimitExceeded(_))));
        let mut h = sample();
        h.encrypted_data_keys = vec![h.encrypted_data_keys[0].clone(); 65];
        assert!(matches!(
            Header::read(&with_tag(&h), &ReadLimits::default()),
            Err(Error::LimitExceeded(_))
        ));
    }

    #[test]
    fn zero_edks_zero_frame_and_content_type() {
        let mut b = with_tag(&sample());
        let edk_count_at = 1 + 2 + 32 + 2 + 17;
        b[edk_count_at..edk_count_at + 2].copy_from_slice(&[0, 0]);
        assert!(matches!(
            Header::read(&b, &ReadLimits::default()),
            Err(Error::Malformed(Malformed::NoEncryptedDataKeys))
        ));
        let base = with_tag(&sample());
        let ct_at = base.len() - 16 - 32 - 4 - 1;
        let mut b = base.clone();
        b[ct_at] = 1;
        assert!(matches!(
            Header::read(&b, &ReadLimits::default()),
            Err(Error::Unsupported(_))
        ));
        let mut b = base.clone();
        b[ct_at] = 7;
        assert!(matches!(
            Header::read(&b, &ReadLimits::default()),
            Err(Error::Malformed(_))
        ));
        let mut b = base;
        b[ct_at + 1..ct_at + 5].copy_from_slice(&[0; 4]);
        assert!(matches!(
            Header::read(&b, &ReadLimits::default()),
            Err(Error::Malformed(Malformed::ZeroFrameLength))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Header::read(&bytes, &ReadLimits::default());
        }

        #[test]
        fn round_trip_any(
            mid in any::<[u8; 32]>(), frame in 1u32..=(1 << 20), n_edks in 1usize..5,
            ctx in proptest::collection::btree_map("[a-z]{1,8}", "\\PC{0,8}", 0..5),
        ) {
            let mut h = sample();
            h.message_id = mid;
            h.frame_length = frame;
            h.context = EncryptionContext::from_pairs(ctx).unwrap();
            h.encrypted_data_keys = (0..n_edks).map(|i| EncryptedDataKey {
                provider_id: format!("p{i}"), provider_info: vec![i as u8; i], ciphertext: vec![0; 3 * i],
            }).collect();
            let p = Header::read(&with_tag(&h), &ReadLimits::default()).unwrap();
            prop_assert_eq!(p.header, h);
        }
    }
}
