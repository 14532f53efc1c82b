//! Rewrapping: a new header for an existing message, with the same frames.
//!
//! A v2 message's frames depend only on the key derived from the data key and the message id
//! (and on the frame sequence numbers). The encrypted data keys and the encryption context live
//! in the header alone, bound to it by the header tag and the key commitment, both of which the
//! same derived key reproduces. So who can decrypt (the wrapped keys) and what is authenticated
//! beside the data (the context, e.g. an S3 object's location) can change by writing a new
//! header and reusing every frame byte for byte, without touching the plaintext.
//!
//! Not for signed suites: their signature covers the header and only the writer's private key,
//! which is never stored, could sign a new one. Such messages must be re-encrypted.

use crate::context::EncryptionContext;
use crate::decrypt::DecryptOptions;
use crate::error::{Error, Result};
use crate::header::{EncryptedDataKey, Header, ParsedHeader};
use crate::key::MessageKey;
use crate::keyring::{DecryptionMaterials, EncryptionMaterials, Keyring};

/// What the new header holds.
pub struct RewrapPlan<'a> {
    /// The new header's encryption context. When it differs from the old one, no old wrapped
    /// key can be kept (each is bound to the context it was wrapped under).
    pub context: EncryptionContext,
    /// Which of the old wrapped keys to keep as they are (only with an unchanged context).
    pub keep: &'a dyn Fn(&EncryptedDataKey) -> bool,
    /// Wraps the data key under more keys (`None`: add none).
    pub wrap: Option<&'a dyn Keyring>,
}

impl std::fmt::Debug for RewrapPlan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RewrapPlan")
            .field("context", &self.context)
            .field("wrap", &self.wrap)
            .finish_non_exhaustive()
    }
}

/// The result of a rewrap.
#[derive(Debug, Clone)]
pub struct Rewrapped {
    /// The new header fields.
    pub header: Header,
    /// The new header bytes, tag included: they replace the old header's bytes in front of the
    /// unchanged frames.
    pub bytes: Vec<u8>,
}

/// Builds a new header for the message whose header is `old`: unwraps its data key with
/// `unwrap` (checking `options.required_context`, the key commitment and the header tag, as a
/// decryption would), then writes a header with the same suite, message id, frame length and
/// commitment, the plan's context, the old wrapped keys the plan keeps and new ones from the
/// plan's keyring, tagged with the same derived key.
///
/// # Errors
/// [`Error::Unsupported`] for signed suites; the errors of opening a header
/// ([`Error::ContextMismatch`], [`Error::NoDecryptableKey`], [`Error::Authentication`]);
/// [`Error::InvalidArgument`] if the context changes while old keys are kept, if the context uses
/// reserved keys, or if the new header would hold no wrapped key; whatever the wrapping keyring
/// returns.
pub fn rewrap_header(
    old: &ParsedHeader,
    unwrap: &dyn Keyring,
    options: &DecryptOptions,
    plan: &RewrapPlan<'_>,
) -> Result<Rewrapped> {
    let h = &old.header;
    if h.suite.is_signed() {
        return Err(Error::Unsupported(
            "signed messages (suite 0x0578) cannot be rewrapped: the signature covers the header and needs the writer's private key; re-encrypt instead".into(),
        ));
    }
    if plan
        .context
        .iter()
        .any(|(k, _)| k.starts_with("aws-crypto-"))
    {
        return Err(Error::InvalidArgument(
            "the new context uses a reserved key (aws-crypto-*)".into(),
        ));
    }
    h.context.require(&options.required_context)?;
    let mut dm = DecryptionMaterials::new(h.suite, h.context.clone());
    unwrap.on_decrypt(&mut dm, &h.encrypted_data_keys)?;
    let data_key = dm
        .take_data_key()
        .ok_or_else(|| Error::NoDecryptableKey(crate::decrypt::describe_edks(h)))?;
    let key = MessageKey::for_decryption(h.suite, &data_key, h.message_id, &h.commitment)?;
    key.verify_header(&old.bytes, &old.tag)?;

    let same_context = plan.context == h.context;
    let mut edks: Vec<EncryptedDataKey> = Vec::new();
    for e in &h.encrypted_data_keys {
        if (plan.keep)(e) {
            if !same_context {
                return Err(Error::InvalidArgument(
                    "a wrapped key cannot be kept when the context changes: it is bound to the old context".into(),
                ));
            }
            edks.push(e.clone());
        }
    }
    if let Some(wrap) = plan.wrap {
        let mut em = EncryptionMaterials::new(h.suite, plan.context.clone());
        em.set_data_key(data_key.duplicate());
        wrap.on_encrypt(&mut em)?;
        let (_, _, wrapped, added) = em.into_parts();
        // A keyring must wrap the key it was given; one that replaced it would make the new
        // wrapped keys useless (and the object unreadable for their holders).
        let same = wrapped.is_some_and(|k| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                &k.as_bytes()[..],
                &data_key.as_bytes()[..],
            ))
        });
        if !same {
            return Err(Error::InvalidArgument(
                "the wrapping keyring replaced the data key instead of wrapping it".into(),
            ));
        }
        for e in added {
            // A fresh wrapped key replaces a kept one naming the same key: the kept one was
            // never checked to unwrap to this data key (anyone holding the data key could have
            // planted a useless one under that name).
            edks.retain(|k| !(k.provider_id == e.provider_id && same_key(k, &e)));
            edks.push(e);
        }
    }
    drop(data_key);
    if edks.is_empty() {
        return Err(Error::InvalidArgument(
            "the new header would hold no wrapped key: nobody could decrypt the message".into(),
        ));
    }
    let header = Header {
        suite: h.suite,
        message_id: h.message_id,
        context: plan.context.clone(),
        encrypted_data_keys: edks,
        frame_length: h.frame_length,
        commitment: h.commitment,
    };
    let mut bytes = header.to_bytes()?;
    let tag = key.header_tag(&bytes);
    bytes.extend_from_slice(&tag);
    // Never write a header that readers with default limits would refuse (e.g. too many wrapped
    // keys after repeated additions): an in-place rewrap would leave an unreadable object.
    Header::read(&bytes, &crate::header::ReadLimits::default()).map_err(|e| {
        Error::InvalidArgument(format!("the new header would be refused by readers: {e}"))
    })?;
    Ok(Rewrapped { header, bytes })
}

/// Whether two wrapped keys name the same wrapping key (raw AES: the key name before the IV;
/// otherwise the whole provider info, e.g. a KMS key ARN).
fn same_key(a: &EncryptedDataKey, b: &EncryptedDataKey) -> bool {
    match (
        crate::keyring::raw_aes::key_name_of(a),
        crate::keyring::raw_aes::key_name_of(b),
    ) {
        (Some(x), Some(y)) => x == y,
        _ => a.provider_info == b.provider_info,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use super::*;
    use crate::keyring::raw_aes::{RawAesKeyring, WrappingKey};
    use crate::{EncryptOptions, Suite};

    fn kr(name: &str, b: u8) -> Arc<dyn Keyring> {
        Arc::new(RawAesKeyring::new("ns", name, WrappingKey::from_bytes([b; 32])).unwrap())
    }

    fn encrypt(k: &Arc<dyn Keyring>, suite: Suite, ctx: EncryptionContext, pt: &[u8]) -> Vec<u8> {
        let opts = EncryptOptions {
            suite,
            frame_length: 64,
            context: ctx,
            ..Default::default()
        };
        let mut enc = crate::Encryptor::new(k.as_ref(), &opts).unwrap();
        let mut out = Vec::new();
        enc.update(pt, &mut out).unwrap();
        enc.finish(&mut out).unwrap();
        out
    }

    fn decrypt(k: &Arc<dyn Keyring>, msg: &[u8], required: EncryptionContext) -> Result<Vec<u8>> {
        let opts = DecryptOptions {
            required_context: required,
            ..Default::default()
        };
        let mut d = crate::Decryptor::new(k.clone(), opts);
        let mut out = Vec::new();
        d.update(msg, &mut out)?;
        d.finish(&mut out)?;
        Ok(out)
    }

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        let mut c = EncryptionContext::new();
        for (k, v) in pairs {
            c.insert(*k, *v).unwrap();
        }
        c
    }

    fn split(msg: &[u8]) -> (ParsedHeader, &[u8]) {
        let p = Header::read(msg, &Default::default()).unwrap();
        let n = p.len();
        (p, &msg[n..])
    }

    #[test]
    fn add_and_remove_keys_with_the_frames_unchanged() {
        let (a, b) = (kr("a", 1), kr("b", 2));
        let pt: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let msg = encrypt(&a, Suite::DEFAULT, ctx(&[("team", "x")]), &pt);
        let (old, frames) = split(&msg);
        // Add b, drop a.
        let plan = RewrapPlan {
            context: old.header.context.clone(),
            keep: &|_| false,
            wrap: Some(b.as_ref()),
        };
        let new = rewrap_header(&old, a.as_ref(), &DecryptOptions::default(), &plan).unwrap();
        assert_eq!(new.header.message_id, old.header.message_id);
        let mut rewrapped = new.bytes.clone();
        rewrapped.extend_from_slice(frames);
        assert_eq!(decrypt(&b, &rewrapped, ctx(&[("team", "x")])).unwrap(), pt);
        assert_eq!(
            decrypt(&a, &rewrapped, EncryptionContext::new())
                .unwrap_err()
                .class(),
            "no-key"
        );
        // Keep a, add b: both decrypt.
        let plan = RewrapPlan {
            context: old.header.context.clone(),
            keep: &|_| true,
            wrap: Some(b.as_ref()),
        };
        let new = rewrap_header(&old, a.as_ref(), &DecryptOptions::default(), &plan).unwrap();
        assert_eq!(new.header.encrypted_data_keys.len(), 2);
        let mut both = new.bytes.clone();
        both.extend_from_slice(frames);
        assert_eq!(decrypt(&a, &both, EncryptionContext::new()).unwrap(), pt);
        assert_eq!(decrypt(&b, &both, EncryptionContext::new()).unwrap(), pt);
    }

    #[test]
    fn a_new_context_rewraps_every_key() {
        let a = kr("a", 1);
        let pt = b"moved object".to_vec();
        let msg = encrypt(&a, Suite::DEFAULT, ctx(&[("where", "old")]), &pt);
        let (old, frames) = split(&msg);
        let keep_all = RewrapPlan {
            context: ctx(&[("where", "new")]),
            keep: &|_| true,
            wrap: Some(a.as_ref()),
        };
        assert_eq!(
            rewrap_header(&old, a.as_ref(), &DecryptOptions::default(), &keep_all)
                .unwrap_err()
                .class(),
            "invalid-argument"
        );
        let plan = RewrapPlan {
            context: ctx(&[("where", "new")]),
            keep: &|_| false,
            wrap: Some(a.as_ref()),
        };
        let new = rewrap_header(&old, a.as_ref(), &DecryptOptions::default(), &plan).unwrap();
        let mut moved = new.bytes;
        moved.extend_from_slice(frames);
        assert_eq!(decrypt(&a, &moved, ctx(&[("where", "new")])).unwrap(), pt);
        assert_eq!(
            decrypt(&a, &moved, ctx(&[("where", "old")]))
                .unwrap_err()
                .class(),
            "context"
        );
    }

    /// Adds a useless wrapped key under `name`'s name (what a data-key holder could plant).
    #[derive(Debug)]
    struct Planter(Arc<dyn Keyring>);

    impl Keyring for Planter {
        fn on_encrypt(&self, m: &mut EncryptionMaterials) -> Result<()> {
            let mut real = EncryptionMaterials::new(m.suite(), m.context().clone());
            real.set_data_key(crate::keyring::DataKey::generate());
            self.0.on_encrypt(&mut real)?;
            let mut e = real.encrypted_data_keys()[0].clone();
            e.ciphertext.iter_mut().for_each(|b| *b ^= 0xA5);
            m.add_encrypted_data_key(e);
            Ok(())
        }

        fn on_decrypt(&self, _: &mut DecryptionMaterials, _: &[EncryptedDataKey]) -> Result<()> {
            Ok(())
        }
    }

    /// Wraps a different key than it was given.
    #[derive(Debug)]
    struct Replacer(Arc<dyn Keyring>);

    impl Keyring for Replacer {
        fn on_encrypt(&self, m: &mut EncryptionMaterials) -> Result<()> {
            m.set_data_key(crate::keyring::DataKey::generate());
            self.0.on_encrypt(m)
        }

        fn on_decrypt(&self, _: &mut DecryptionMaterials, _: &[EncryptedDataKey]) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_fresh_wrapped_key_replaces_a_planted_one_and_keyrings_must_keep_the_key() {
        let (a, b) = (kr("a", 1), kr("b", 2));
        let pt = b"planted".to_vec();
        let msg = encrypt(&a, Suite::DEFAULT, EncryptionContext::new(), &pt);
        let (old, frames) = split(&msg);
        let plant = Planter(b.clone());
        let planted = rewrap_header(
            &old,
            a.as_ref(),
            &DecryptOptions::default(),
            &RewrapPlan {
                context: old.header.context.clone(),
                keep: &|_| true,
                wrap: Some(&plant),
            },
        )
        .unwrap();
        let planted = Header::read(&planted.bytes, &Default::default()).unwrap();
        // Adding b replaces the useless "b" entry; b then decrypts.
        let new = rewrap_header(
            &planted,
            a.as_ref(),
            &DecryptOptions::default(),
            &RewrapPlan {
                context: old.header.context.clone(),
                keep: &|_| true,
                wrap: Some(b.as_ref()),
            },
        )
        .unwrap();
        assert_eq!(new.header.encrypted_data_keys.len(), 2);
        let mut m = new.bytes;
        m.extend_from_slice(frames);
        assert_eq!(decrypt(&b, &m, EncryptionContext::new()).unwrap(), pt);
        // A keyring that swaps the data key is refused.
        let e = rewrap_header(
            &old,
            a.as_ref(),
            &DecryptOptions::default(),
            &RewrapPlan {
                context: old.header.context.clone(),
                keep: &|_| true,
                wrap: Some(&Replacer(b)),
            },
        )
        .unwrap_err();
        assert_eq!(e.class(), "invalid-argument", "{e}");
    }

    #[test]
    fn refusals() {
        let (a, b) = (kr("a", 1), kr("b", 2));
        let msg = encrypt(&a, Suite::DEFAULT, EncryptionContext::new(), b"x");
        let (old, _) = split(&msg);
        let none = RewrapPlan {
            context: old.header.context.clone(),
            keep: &|_| false,
            wrap: None,
        };
        // Nobody left to decrypt.
        assert_eq!(
            rewrap_header(&old, a.as_ref(), &DecryptOptions::default(), &none)
                .unwrap_err()
                .class(),
            "invalid-argument"
        );
        // A key that cannot unwrap.
        let plan = RewrapPlan {
            context: old.header.context.clone(),
            keep: &|_| true,
            wrap: Some(b.as_ref()),
        };
        assert_eq!(
            rewrap_header(&old, b.as_ref(), &DecryptOptions::default(), &plan)
                .unwrap_err()
                .class(),
            "no-key"
        );
        // A header whose tag does not verify.
        let mut bad = old.clone();
        bad.tag[0] ^= 1;
        assert_eq!(
            rewrap_header(&bad, a.as_ref(), &DecryptOptions::default(), &plan)
                .unwrap_err()
                .class(),
            "authentication"
        );
        // Signed suites.
        let signed = encrypt(
            &a,
            Suite::Aes256GcmHkdfSha512CommitEcdsaP384,
            EncryptionContext::new(),
            b"x",
        );
        let (old, _) = split(&signed);
        assert_eq!(
            rewrap_header(&old, a.as_ref(), &DecryptOptions::default(), &plan)
                .unwrap_err()
                .class(),
            "unsupported"
        );
    }
}
