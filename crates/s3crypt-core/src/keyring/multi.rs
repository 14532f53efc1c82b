//! The multi-keyring: wrap under several keyrings, unwrap with any one
//! (spec `framework/multi-keyring.md`).

use super::{DecryptionMaterials, EncryptionMaterials, Keyring};
use crate::error::Result;
use crate::header::EncryptedDataKey;

/// A list of keyrings. On encrypt the first one generates the data key and every one wraps it;
/// on decrypt they are tried in order until one unwraps an EDK.
#[derive(Debug, Default)]
pub struct MultiKeyring {
    children: Vec<Box<dyn Keyring>>,
}

impl MultiKeyring {
    /// A multi-keyring of `children` (the first is the generator).
    pub fn new(children: Vec<Box<dyn Keyring>>) -> Self {
        Self { children }
    }

    /// Appends a keyring.
    pub fn push(&mut self, k: Box<dyn Keyring>) {
        self.children.push(k);
    }

    /// Number of child keyrings.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// Whether there are no child keyrings.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }
}

impl Keyring for MultiKeyring {
    /// Whether any child may block.
    fn may_block(&self) -> bool {
        self.children.iter().any(|k| k.may_block())
    }

    fn on_encrypt(&self, materials: &mut EncryptionMaterials) -> Result<()> {
        if self.children.is_empty() {
            return Err(crate::Error::InvalidArgument(
                "no keyring configured".into(),
            ));
        }
        for k in &self.children {
            k.on_encrypt(materials)?;
        }
        Ok(())
    }

    fn on_decrypt(
        &self,
        materials: &mut DecryptionMaterials,
        edks: &[EncryptedDataKey],
    ) -> Result<()> {
        let mut first_err = None;
        for k in &self.children {
            if materials.data_key().is_some() {
                break;
            }
            // One child's failure (say, a service that refuses) must not hide another child that
            // can decrypt; the first error is reported only if nobody succeeds.
            if let Err(e) = k.on_decrypt(materials, edks) {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) if materials.data_key().is_none() => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::raw_aes::{RawAesKeyring, WrappingKey};
    use crate::suite::Suite;

    fn kr(name: &str, b: u8) -> Box<dyn Keyring> {
        Box::new(RawAesKeyring::new("ns", name, WrappingKey::from_bytes([b; 32])).unwrap())
    }

    #[test]
    fn every_child_wraps_and_any_child_unwraps() {
        let multi = MultiKeyring::new(vec![kr("a", 1), kr("b", 2), kr("c", 3)]);
        let mut em = EncryptionMaterials::new(Suite::DEFAULT, Default::default());
        multi.on_encrypt(&mut em).unwrap();
        assert_eq!(em.encrypted_data_keys().len(), 3);
        for single in [kr("a", 1), kr("b", 2), kr("c", 3)] {
            let mut dm = DecryptionMaterials::new(Suite::DEFAULT, Default::default());
            single
                .on_decrypt(&mut dm, em.encrypted_data_keys())
                .unwrap();
            assert_eq!(
                dm.data_key().unwrap().as_bytes(),
                em.data_key().unwrap().as_bytes()
            );
        }
    }
}
