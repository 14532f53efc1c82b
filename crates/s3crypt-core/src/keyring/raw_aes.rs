//! The raw AES keyring, byte-compatible with the ESDK's (spec `framework/raw-aes-keyring.md`).
//!
//! ```text
//! provider id   = key namespace (UTF-8; must not start with "aws-kms")
//! provider info = key name || u32 tag length in bits (128) || u32 IV length (12) || IV (12)
//! ciphertext    = AES-256-GCM(wrapping key, IV, AAD = serialized encryption context)(data key) || tag (16)
//! ```

use zeroize::Zeroizing;

use super::{DataKey, DecryptionMaterials, EncryptionMaterials, Keyring, DATA_KEY_LEN};
use crate::aead::{aes_gcm_open, aes_gcm_seal, NONCE_LEN, TAG_LEN};
use crate::error::{Error, Result};
use crate::header::EncryptedDataKey;

const INFO_SUFFIX_LEN: usize = 4 + 4 + NONCE_LEN;

/// A 256-bit wrapping key. Wiped on drop; no `Debug` contents.
pub struct WrappingKey(Zeroizing<[u8; 32]>);

impl WrappingKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, k.as_mut());
        Self(k)
    }

    /// Uses existing key bytes. The array is taken by value, so the caller's copy is not wiped:
    /// for key bytes read or decoded into a zeroizing buffer, use [`WrappingKey::from_slice`].
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Uses a slice of exactly 32 bytes, copied straight into the key's wiped buffer (no
    /// unwiped copy is left on the stack).
    ///
    /// # Errors
    /// [`Error::Keyring`] if the slice is not 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != 32 {
            return Err(Error::keyring(format!(
                "a wrapping key must be 32 bytes, not {}",
                bytes.len()
            )));
        }
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(bytes);
        Ok(Self(k))
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for WrappingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WrappingKey(<redacted>)")
    }
}

/// The key name inside a raw AES EDK's provider info, if the info has the raw AES layout.
pub fn key_name_of(edk: &EncryptedDataKey) -> Option<&str> {
    edk.raw_aes_key_name()
}

/// One named AES-256 wrapping key, used exactly as the ESDK raw AES keyring uses it.
#[derive(Debug)]
pub struct RawAesKeyring {
    namespace: String,
    name: String,
    key: WrappingKey,
}

impl RawAesKeyring {
    /// A keyring for `key` under `namespace`/`name`.
    ///
    /// # Errors
    /// [`Error::Keyring`] if the namespace or name is empty or over 65535 bytes, or the namespace
    /// starts with `aws-kms` (reserved for KMS).
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        key: WrappingKey,
    ) -> Result<Self> {
        let (namespace, name) = (namespace.into(), name.into());
        if namespace.is_empty() || name.is_empty() {
            return Err(Error::keyring("key namespace and name must not be empty"));
        }
        if namespace.starts_with("aws-kms") {
            return Err(Error::keyring(
                "a raw key namespace must not start with \"aws-kms\"",
            ));
        }
        if namespace.len() > usize::from(u16::MAX)
            || name.len() + INFO_SUFFIX_LEN > usize::from(u16::MAX)
        {
            return Err(Error::keyring("key namespace or name is too long"));
        }
        Ok(Self {
            namespace,
            name,
            key,
        })
    }

    /// The key namespace (the EDK's provider id).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `edk` was (claims to be) wrapped by this key.
    fn matches(&self, edk: &EncryptedDataKey) -> bool {
        edk.provider_id == self.namespace && key_name_of(edk) == Some(self.name.as_str())
    }
}

impl Keyring for RawAesKeyring {
    /// Local computation only.
    fn may_block(&self) -> bool {
        false
    }

    fn on_encrypt(&self, materials: &mut EncryptionMaterials) -> Result<()> {
        if materials.data_key().is_none() {
            materials.set_data_key(DataKey::generate());
        }
        let aad = materials.context().to_bytes()?;
        let mut iv = [0u8; NONCE_LEN];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut iv);
        let Some(data_key) = materials.data_key() else {
            return Err(Error::InvalidArgument("no data key".into()));
        };
        let mut ciphertext = Vec::with_capacity(DATA_KEY_LEN + TAG_LEN);
        ciphertext.extend_from_slice(data_key.as_bytes());
        let tag = aes_gcm_seal(self.key.as_bytes(), iv, &aad, &mut ciphertext);
        ciphertext.extend_from_slice(&tag);
        let mut provider_info = Vec::with_capacity(self.name.len() + INFO_SUFFIX_LEN);
        provider_info.extend_from_slice(self.name.as_bytes());
        provider_info.extend_from_slice(&128u32.to_be_bytes());
        provider_info.extend_from_slice(&(NONCE_LEN as u32).to_be_bytes());
        provider_info.extend_from_slice(&iv);
        materials.add_encrypted_data_key(EncryptedDataKey {
            provider_id: self.namespace.clone(),
            provider_info,
            ciphertext,
        });
        Ok(())
    }

    fn on_decrypt(
        &self,
        materials: &mut DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<()> {
        if materials.data_key().is_some() {
            return Ok(());
        }
        let aad = materials.context().to_bytes()?;
        for edk in edks.iter().filter(|e| self.matches(e)) {
            if edk.ciphertext.len() != DATA_KEY_LEN + TAG_LEN {
                continue;
            }
            let info = &edk.provider_info;
            let mut iv = [0u8; NONCE_LEN];
            iv.copy_from_slice(&info[info.len() - NONCE_LEN..]);
            let mut buf = Zeroizing::new([0u8; DATA_KEY_LEN + TAG_LEN]);
            buf.copy_from_slice(&edk.ciphertext);
            if aes_gcm_open(self.key.as_bytes(), iv, &aad, buf.as_mut()).is_ok() {
                materials.set_data_key(DataKey::from_slice(&buf[..DATA_KEY_LEN])?);
                return Ok(());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::EncryptionContext;
    use crate::suite::Suite;

    fn kr(name: &str, byte: u8) -> RawAesKeyring {
        RawAesKeyring::new("ns", name, WrappingKey::from_bytes([byte; 32])).unwrap()
    }

    #[test]
    fn wraps_and_unwraps_with_context_as_aad() {
        let ctx = EncryptionContext::from_pairs([("a", "b")]).unwrap();
        let mut em = EncryptionMaterials::new(Suite::DEFAULT, ctx.clone());
        kr("k", 1).on_encrypt(&mut em).unwrap();
        let edk = em.encrypted_data_keys()[0].clone();
        assert_eq!(edk.provider_id, "ns");
        assert_eq!(key_name_of(&edk), Some("k"));
        assert_eq!(edk.ciphertext.len(), 48);

        let mut dm = DecryptionMaterials::new(Suite::DEFAULT, ctx);
        kr("k", 1)
            .on_decrypt(&mut dm, std::slice::from_ref(&edk))
            .unwrap();
        assert_eq!(
            dm.data_key().unwrap().as_bytes(),
            em.data_key().unwrap().as_bytes()
        );

        // Wrong key bytes, wrong name, wrong context: no key, no error.
        for (k, ctx) in [
            (kr("k", 2), [("a", "b")]),
            (kr("j", 1), [("a", "b")]),
            (kr("k", 1), [("a", "c")]),
        ] {
            let ctx = EncryptionContext::from_pairs(ctx).unwrap();
            let mut dm = DecryptionMaterials::new(Suite::DEFAULT, ctx);
            k.on_decrypt(&mut dm, std::slice::from_ref(&edk)).unwrap();
            assert!(dm.data_key().is_none());
        }
    }

    #[test]
    fn keys_from_slices_are_built_in_place_and_length_checked() {
        let k = WrappingKey::from_slice(&[7; 32]).unwrap();
        assert_eq!(k.as_bytes(), &[7; 32]);
        assert_eq!(format!("{k:?}"), "WrappingKey(<redacted>)");
        let e = WrappingKey::from_slice(&[7; 31]).unwrap_err();
        assert!(matches!(e, Error::Keyring(_)), "{e}");
        let d = DataKey::from_slice(&[9; 32]).unwrap();
        assert_eq!(d.as_bytes(), &[9; 32]);
        assert!(matches!(
            DataKey::from_slice(&[9; 33]),
            Err(Error::Keyring(_))
        ));
    }

    #[test]
    fn refuses_kms_namespace() {
        assert!(RawAesKeyring::new("aws-kms", "x", WrappingKey::generate()).is_err());
        assert!(RawAesKeyring::new("", "x", WrappingKey::generate()).is_err());
    }

    #[test]
    fn key_name_of_rejects_short_or_foreign_info() {
        let mut e = EncryptedDataKey {
            provider_id: "ns".into(),
            provider_info: vec![1; 5],
            ciphertext: vec![],
        };
        assert_eq!(key_name_of(&e), None);
        e.provider_info = b"arn:aws:kms:us-east-1:111122223333:key/abcd-efgh-ijkl".to_vec();
        assert_eq!(key_name_of(&e), None);
    }
}
