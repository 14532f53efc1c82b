//! No two different headers are ever written under one message id, whatever sequence of
//! operations the library runs (advisory S3C-2026-01: a header tag is AES-GCM under the message's
//! key with a fixed nonce, so two different headers under one message id reveal the GHASH key).
//! The core has no operation that re-tags a header; this checks every way it writes one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use s3crypt_core::keyring::caching::{CacheLimits, CachingKeyring};
use s3crypt_core::parts::MessageSealer;
use s3crypt_core::pipeline::PipelineOptions;
use s3crypt_core::{
    EncryptOptions, EncryptWriter, EncryptionContext, Encryptor, Header, Keyring, Suite,
};

use crate::util::{encrypt_pipeline, encrypt_push, keyring, pattern, raw};

#[derive(Debug, Clone)]
enum Op {
    Push {
        context: u8,
        len: usize,
    },
    Writer {
        context: u8,
        len: usize,
    },
    Pipeline {
        context: u8,
        len: usize,
    },
    /// The header of a message sealed part by part (as uploads do).
    Parts {
        context: u8,
    },
    /// The same, through a caching keyring: one data key for many messages.
    Cached {
        context: u8,
        len: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0u8..3;
    let n = 0usize..600;
    prop_oneof![
        (c.clone(), n.clone()).prop_map(|(context, len)| Op::Push { context, len }),
        (c.clone(), n.clone()).prop_map(|(context, len)| Op::Writer { context, len }),
        (c.clone(), n.clone()).prop_map(|(context, len)| Op::Pipeline { context, len }),
        c.clone().prop_map(|context| Op::Parts { context }),
        (c, n).prop_map(|(context, len)| Op::Cached { context, len }),
    ]
}

fn options(context: u8, suite: Suite, len: Option<u64>) -> EncryptOptions {
    let mut c = EncryptionContext::new();
    c.insert("which", context.to_string()).unwrap();
    EncryptOptions {
        suite,
        frame_length: 64,
        context: c,
        plaintext_length: len,
    }
}

/// The header (tag included) at the start of a message.
fn header(message: &[u8]) -> (Vec<u8>, [u8; 32]) {
    let p = Header::read(message, &Default::default()).unwrap();
    (message[..p.len()].to_vec(), p.header.message_id)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn no_two_headers_share_a_message_id(ops in prop::collection::vec(op(), 1..24), signed in any::<bool>()) {
        let suite = if signed { Suite::Aes256GcmHkdfSha512CommitEcdsaP384 } else { Suite::DEFAULT };
        let k = keyring(vec![raw("ns", "a", 1), raw("ns", "b", 2)]);
        let limits = CacheLimits::new(Duration::from_secs(600)).with_max_messages(1000).with_max_bytes(1 << 30).with_capacity(8);
        let cached: Arc<dyn Keyring> = Arc::new(CachingKeyring::new(k.clone(), limits).unwrap());
        let mut seen: HashMap<[u8; 32], Vec<u8>> = HashMap::new();
        for op in ops {
            let message = match op {
                Op::Push { context, len } => {
                    encrypt_push(k.as_ref(), &options(context, suite, None), &pattern(len), 7)
                }
                Op::Writer { context, len } => {
                    let mut w = EncryptWriter::new(k.as_ref(), &options(context, suite, None), Vec::new()).unwrap();
                    std::io::Write::write_all(&mut w, &pattern(len)).unwrap();
                    w.finish().unwrap().0
                }
                Op::Pipeline { context, len } => encrypt_pipeline(
                    k.as_ref(),
                    &options(context, suite, None),
                    &pattern(len),
                    &PipelineOptions::default(),
                ),
                Op::Parts { context } => {
                    let enc = Encryptor::new(k.as_ref(), &options(context, suite, None)).unwrap();
                    MessageSealer::new(enc).unwrap().header().to_vec()
                }
                Op::Cached { context, len } => encrypt_push(
                    cached.as_ref(),
                    &options(context, suite, Some(len as u64)),
                    &pattern(len),
                    64,
                ),
            };
            let (bytes, id) = header(&message);
            if let Some(earlier) = seen.insert(id, bytes.clone()) {
                prop_assert_eq!(earlier, bytes, "two different headers under one message id");
            }
        }
    }
}
