//! Keyrings: wrap a message's data key under each configured key, and unwrap it again.
//!
//! The shape follows the ESDK's keyring interface (spec `framework/keyring-interface.md`):
//! `on_encrypt` generates the data key if nobody has yet and adds an encrypted data key (EDK);
//! `on_decrypt` tries the message's EDKs and sets the data key when one unwraps.

pub mod caching;
pub mod file;
pub mod multi;
pub mod raw_aes;

use zeroize::Zeroizing;

use crate::context::EncryptionContext;
use crate::error::Result;
use crate::header::EncryptedDataKey;
use crate::suite::Suite;

/// Length of a data key (every supported suite uses 256-bit keys).
pub const DATA_KEY_LEN: usize = 32;

/// A plaintext data key. Wiped on drop; no `Debug` contents, no `Clone`.
pub struct DataKey(Zeroizing<[u8; DATA_KEY_LEN]>);

impl DataKey {
    /// A fresh random data key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; DATA_KEY_LEN]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, k.as_mut());
        Self(k)
    }

    /// Wraps existing key bytes. The array is taken by value, so the caller's copy (and any on
    /// the stack on the way) is not wiped: keyrings that unwrap a key into a buffer of their own
    /// should use [`DataKey::from_slice`].
    pub fn from_bytes(bytes: [u8; DATA_KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Copies key bytes straight into the new key's wiped buffer, leaving no unwiped copy on the
    /// stack (for keyrings that unwrap a key into a zeroizing buffer of their own).
    ///
    /// # Errors
    /// [`crate::Error::Keyring`] if `bytes` is not [`DATA_KEY_LEN`] bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != DATA_KEY_LEN {
            return Err(crate::Error::keyring(format!(
                "a data key must be {DATA_KEY_LEN} bytes, not {}",
                bytes.len()
            )));
        }
        let mut k = Zeroizing::new([0u8; DATA_KEY_LEN]);
        k.copy_from_slice(bytes);
        Ok(Self(k))
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; DATA_KEY_LEN] {
        &self.0
    }

    /// A second copy of the key, built in place so that no unwiped copy is left on the stack
    /// (for the caching keyring, which must hand out copies of the key it keeps).
    pub(crate) fn duplicate(&self) -> Self {
        let mut k = Zeroizing::new([0u8; DATA_KEY_LEN]);
        k.copy_from_slice(self.0.as_ref());
        Self(k)
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// What a keyring works on while a message is encrypted.
#[derive(Debug)]
pub struct EncryptionMaterials {
    suite: Suite,
    context: EncryptionContext,
    data_key: Option<DataKey>,
    edks: Vec<EncryptedDataKey>,
    plaintext_length: Option<u64>,
}

impl EncryptionMaterials {
    /// Materials for a new message with no data key yet (and no plaintext length, see
    /// [`EncryptionMaterials::with_plaintext_length`]).
    pub fn new(suite: Suite, context: EncryptionContext) -> Self {
        Self {
            suite,
            context,
            data_key: None,
            edks: Vec::new(),
            plaintext_length: None,
        }
    }

    /// Declares the most plaintext bytes the message will hold (`None`: unknown). This is the
    /// ESDK's "max plaintext length": [`crate::Encryptor`] and the pipelines refuse to encrypt
    /// more than [`crate::EncryptOptions::plaintext_length`], which is where it comes from, so
    /// a keyring may rely on it (the [`caching`] keyring counts it against its byte limit).
    #[must_use]
    pub fn with_plaintext_length(mut self, length: Option<u64>) -> Self {
        self.plaintext_length = length;
        self
    }

    /// The declared most plaintext bytes of the message, if known.
    pub fn plaintext_length(&self) -> Option<u64> {
        self.plaintext_length
    }

    /// The suite of the message.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The full encryption context (the AAD of key wrapping), reserved pairs included.
    pub fn context(&self) -> &EncryptionContext {
        &self.context
    }

    /// The data key, once a keyring generated it.
    pub fn data_key(&self) -> Option<&DataKey> {
        self.data_key.as_ref()
    }

    /// Sets the data key (the first keyring, the "generator", does this).
    pub fn set_data_key(&mut self, key: DataKey) {
        self.data_key = Some(key);
    }

    /// The encrypted data keys added so far.
    pub fn encrypted_data_keys(&self) -> &[EncryptedDataKey] {
        &self.edks
    }

    /// Adds an encrypted data key.
    pub fn add_encrypted_data_key(&mut self, edk: EncryptedDataKey) {
        self.edks.push(edk);
    }

    /// Keeps only the encrypted data keys for which `keep` returns true, visiting them in order
    /// (a keyring that composes others uses it to drop wrapped keys it does not want).
    pub fn retain_encrypted_data_keys(&mut self, keep: impl FnMut(&EncryptedDataKey) -> bool) {
        self.edks.retain(keep);
    }

    pub(crate) fn into_parts(
        self,
    ) -> (
        Suite,
        EncryptionContext,
        Option<DataKey>,
        Vec<EncryptedDataKey>,
    ) {
        (self.suite, self.context, self.data_key, self.edks)
    }
}

/// What a keyring works on while a message is decrypted.
#[derive(Debug)]
pub struct DecryptionMaterials {
    suite: Suite,
    context: EncryptionContext,
    data_key: Option<DataKey>,
}

impl DecryptionMaterials {
    /// Materials for a message whose header was read.
    pub fn new(suite: Suite, context: EncryptionContext) -> Self {
        Self {
            suite,
            context,
            data_key: None,
        }
    }

    /// The suite of the message.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The message's encryption context (the AAD of key unwrapping).
    pub fn context(&self) -> &EncryptionContext {
        &self.context
    }

    /// The data key, once a keyring unwrapped it.
    pub fn data_key(&self) -> Option<&DataKey> {
        self.data_key.as_ref()
    }

    /// Sets the unwrapped data key.
    pub fn set_data_key(&mut self, key: DataKey) {
        self.data_key = Some(key);
    }

    pub(crate) fn take_data_key(&mut self) -> Option<DataKey> {
        self.data_key.take()
    }
}

/// Whether two encrypted data keys were wrapped by the same key: for raw AES keys the same
/// namespace and key name (the provider info also holds a per-wrap IV), otherwise the same
/// provider and provider info (e.g. a KMS key ARN).
pub fn same_wrapping_key(a: &EncryptedDataKey, b: &EncryptedDataKey) -> bool {
    if a.provider_id != b.provider_id {
        return false;
    }
    match (raw_aes::key_name_of(a), raw_aes::key_name_of(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.provider_info == b.provider_info,
    }
}

/// Wraps and unwraps data keys. Implementations must be safe to share across threads.
pub trait Keyring: Send + Sync + std::fmt::Debug {
    /// Generates the data key if `materials` has none yet, then adds an encrypted data key.
    ///
    /// # Errors
    /// Whatever prevents wrapping (for a remote keyring: the service's refusal).
    fn on_encrypt(&self, materials: &mut EncryptionMaterials) -> Result<()>;

    /// If `materials` has no data key yet, tries the EDKs this keyring recognises and sets the data
    /// key when one unwraps. Not finding a usable EDK is not an error: the caller reports
    /// [`crate::Error::NoDecryptableKey`] when no keyring succeeded.
    ///
    /// # Errors
    /// Failures that should stop the search (none for local keys).
    fn on_decrypt(
        &self,
        materials: &mut DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<()>;

    /// Whether a call may wait on something slow (a network service, a lock held across one):
    /// async callers then run it on a blocking pool. Keyrings that only compute (local keys)
    /// return `false`, so that callers may run them inline and save a thread hand-off per
    /// message. The default, `true`, is always safe.
    fn may_block(&self) -> bool {
        true
    }
}

impl<K: Keyring + ?Sized> Keyring for std::sync::Arc<K> {
    fn on_encrypt(&self, materials: &mut EncryptionMaterials) -> Result<()> {
        (**self).on_encrypt(materials)
    }

    fn may_block(&self) -> bool {
        (**self).may_block()
    }

    fn on_decrypt(
        &self,
        materials: &mut DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<()> {
        (**self).on_decrypt(materials, edks)
    }
}

impl<K: Keyring + ?Sized> Keyring for Box<K> {
    fn on_encrypt(&self, materials: &mut EncryptionMaterials) -> Result<()> {
        (**self).on_encrypt(materials)
    }

    fn may_block(&self) -> bool {
        (**self).may_block()
    }

    fn on_decrypt(
        &self,
        materials: &mut DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<()> {
        (**self).on_decrypt(materials, edks)
    }
}
