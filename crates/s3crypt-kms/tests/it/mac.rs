//! `KmsHmacKey` (GenerateMac) against moto: what is sent, what comes back, and refusals.

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::MacAlgorithmSpec;
use base64::Engine as _;
use s3crypt_core::Error;
use s3crypt_kms::{KmsHmacKey, MAX_MAC_MESSAGE_LEN};

use crate::kms::*;

#[test]
fn generate_mac_is_a_deterministic_hmac_that_kms_verifies() {
    let Some(kms) = Kms::start() else { return };
    let home = kms.create_hmac_key(HOME);
    let eu = kms.create_hmac_key("eu-west-1");
    let rt = rt();
    kms.record();
    let key = KmsHmacKey::new(kms.client(HOME), home.clone()).unwrap();
    let a = rt.block_on(key.hmac_sha256(b"object a")).unwrap();
    let a2 = rt.block_on(key.hmac_sha256(b"object a")).unwrap();
    let b = rt.block_on(key.hmac_sha256(b"object b")).unwrap();
    assert_eq!(*a, *a2, "same key and message, same MAC");
    assert_ne!(*a, *b, "another message, another MAC");

    // KMS itself confirms that this is the HMAC-SHA-256 of the message under the key.
    let verified = rt
        .block_on(
            kms.client(HOME)
                .verify_mac()
                .key_id(&home)
                .mac_algorithm(MacAlgorithmSpec::HmacSha256)
                .message(Blob::new(b"object a".to_vec()))
                .mac(Blob::new(a.to_vec()))
                .send(),
        )
        .unwrap();
    assert!(verified.mac_valid);

    let calls = kms.calls_to("GenerateMac");
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].body["KeyId"], home.as_str());
    assert_eq!(calls[0].body["MacAlgorithm"], "HMAC_SHA_256");
    assert_eq!(
        calls[0].body["Message"],
        base64::engine::general_purpose::STANDARD.encode(b"object a")
    );

    // A key ARN in another region is asked in that region; another key, another MAC.
    let key_eu = KmsHmacKey::new(kms.client(HOME), eu.clone()).unwrap();
    let c = rt.block_on(key_eu.hmac_sha256(b"object a")).unwrap();
    assert_ne!(*a, *c);
    let last = kms.calls_to("GenerateMac").pop().unwrap();
    assert_eq!(last.region, "eu-west-1");
}

#[test]
fn wrong_keys_and_messages_are_clear_errors() {
    let Some(kms) = Kms::start() else { return };
    let symmetric = kms.create_key(HOME);
    let hmac = kms.create_hmac_key(HOME);
    let rt = rt();

    // An ENCRYPT_DECRYPT key cannot make MACs: KMS's code is named with the key.
    let key = KmsHmacKey::new(kms.client(HOME), symmetric.clone()).unwrap();
    let e = rt.block_on(key.hmac_sha256(b"m")).unwrap_err();
    let Error::Keyring(k) = &e else {
        panic!("{e:?}")
    };
    let m = k.message();
    assert_eq!(k.service_code(), Some("InvalidKeyUsageException"));
    assert!(!k.is_retryable() && !k.is_throttling());
    assert!(m.contains("GenerateMac") && m.contains(&symmetric), "{m}");
    assert!(m.contains("InvalidKeyUsageException"), "{m}");

    let missing = format!("arn:aws:kms:{HOME}:{ACCOUNT}:key/00000000-0000-0000-0000-000000000000");
    let key = KmsHmacKey::new(kms.client(HOME), missing.clone()).unwrap();
    let e = rt.block_on(key.hmac_sha256(b"m")).unwrap_err();
    assert!(
        matches!(&e, Error::Keyring(m) if m.message().contains(&missing)),
        "{e:?}"
    );

    let key = KmsHmacKey::new(kms.client(HOME), hmac).unwrap();
    for bad in [Vec::new(), vec![0u8; MAX_MAC_MESSAGE_LEN + 1]] {
        let e = rt.block_on(key.hmac_sha256(&bad)).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    }
    assert!(rt
        .block_on(key.hmac_sha256(&[7u8; MAX_MAC_MESSAGE_LEN]))
        .is_ok());
    assert!(matches!(
        KmsHmacKey::new(kms.client(HOME), "not a key id:"),
        Err(Error::InvalidArgument(_))
    ));
}
