//! What every operation of a client shares, behind one `Arc`: the S3 client and the settings.
//! Operations hold this handle (not the [`crate::Client`]), so they depend only on what is below
//! them.

use std::sync::Arc;

use s3crypt_core::Keyring;

use crate::settings::{Encryption, Transfer};

/// The S3 client, the keyring and the settings of one [`crate::Client`].
pub(crate) struct Shared {
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) keyring: Arc<dyn Keyring>,
    pub(crate) transfer: Transfer,
    pub(crate) encryption: Encryption,
    pub(crate) sse_c: Option<Arc<dyn crate::sse_c::SseCSource>>,
    pub(crate) binding: crate::location::Binding,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("keyring", &self.keyring)
            .field("transfer", &self.transfer)
            .field("encryption", &self.encryption)
            .field("binding", &self.binding)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The same handle with other transfer settings.
    pub(crate) fn with_transfer(&self, transfer: Transfer) -> Arc<Shared> {
        Arc::new(Shared {
            s3: self.s3.clone(),
            keyring: self.keyring.clone(),
            transfer,
            encryption: self.encryption,
            sse_c: self.sse_c.clone(),
            binding: self.binding,
        })
    }
}
