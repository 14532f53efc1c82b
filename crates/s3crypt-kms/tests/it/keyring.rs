//! The KMS keyring against moto: round trips, strict and discovery matching, regions, failures,
//! and composition with local keys.

use std::sync::Arc;

use s3crypt_core::keyring::{DecryptionMaterials, EncryptionMaterials};
use s3crypt_core::{DecryptOptions, EncryptionContext, Error, Keyring, Suite};
use s3crypt_kms::{DiscoveryFilter, KmsKeyring, RECOMMENDED_MAX_ATTEMPTS};

use crate::fault::{FaultProxy, Rule};
use crate::kms::*;

fn arc(k: KmsKeyring) -> Arc<dyn Keyring> {
    Arc::new(k)
}

#[test]
fn one_key_round_trip_sends_what_the_spec_says() {
    let Some(kms) = Kms::start() else { return };
    let a = kms.create_key(HOME);
    // One counter shared by every keyring of the test: it must agree with what moto received.
    let counter = std::sync::Arc::new(s3crypt_kms::KmsCallCounter::default());
    let strict = |id: &str| kms.strict(id).with_call_counter(counter.clone());
    let k = strict(&a);
    kms.record();
    let opts = opts_with_context(&[("tenant", "acme"), ("purpose", "kms test")]);
    for (pt, ct) in [0usize, 1, 200_000].map(|n| {
        let pt = pattern(n);
        let ct = encrypt_pipeline(&k, &opts, &pt);
        (pt, ct)
    }) {
        let h = header(&ct);
        assert_eq!(h.encrypted_data_keys.len(), 1);
        assert_eq!(h.encrypted_data_keys[0].provider_id, "aws-kms");
        assert_eq!(kms_edks(&ct), [a.as_str()], "provider info is the key ARN");
        assert_eq!(
            decrypt(arc(strict(&a)), &DecryptOptions::default(), &ct).unwrap(),
            pt
        );
        assert_eq!(decrypt_pipeline(&strict(&a), &ct).unwrap(), pt);
    }

    let gens = kms.calls_to("GenerateDataKey");
    assert_eq!(gens.len(), 3);
    let g = &gens[0].body;
    assert_eq!(g["KeyId"], a);
    assert_eq!(g["NumberOfBytes"], 32);
    assert_eq!(g["EncryptionContext"]["tenant"], "acme");
    assert_eq!(g["EncryptionContext"]["purpose"], "kms test");
    assert!(g.get("GrantTokens").is_none());
    let decs = kms.calls_to("Decrypt");
    assert_eq!(decs.len(), 6);
    assert_eq!(decs[0].body["KeyId"], a, "Decrypt names the EDK's key ARN");
    assert_eq!(decs[0].body["EncryptionContext"]["tenant"], "acme");
    assert!(kms.calls_to("Encrypt").is_empty());
    let counted = counter.snapshot();
    assert_eq!(
        (counted.generate_data_key, counted.encrypt, counted.decrypt),
        (3, 0, 6)
    );
    assert_eq!(counted.total(), kms.calls().len() as u64);
}

#[test]
fn signed_suite_sends_the_public_key_pair_to_kms() {
    let Some(kms) = Kms::start() else { return };
    let a = kms.create_key(HOME);
    let mut opts = opts_with_context(&[("tenant", "acme")]);
    opts.suite = Suite::Aes256GcmHkdfSha512CommitEcdsaP384;
    kms.record();
    let ct = encrypt(&kms.strict(&a), &opts, b"signed");
    let sent = &kms.calls_to("GenerateDataKey")[0].body["EncryptionContext"];
    assert_eq!(
        sent["aws-crypto-public-key"].as_str(),
        header(&ct).context.get("aws-crypto-public-key")
    );
    assert_eq!(
        decrypt(arc(kms.discovery(None)), &DecryptOptions::default(), &ct).unwrap(),
        b"signed"
    );
}

#[test]
fn two_keys_cost_one_generate_and_one_encrypt_and_either_decrypts() {
    let Some(kms) = Kms::start() else { return };
    let (a, b) = (kms.create_key(HOME), kms.create_key(HOME));
    let both = multi(vec![Box::new(kms.strict(&a)), Box::new(kms.strict(&b))]);
    kms.record();
    let ct = encrypt(
        both.as_ref(),
        &opts_with_context(&[("k", "v")]),
        b"two keys",
    );
    assert_eq!(kms.calls_to("GenerateDataKey").len(), 1);
    assert_eq!(kms.calls_to("Encrypt").len(), 1);
    assert_eq!(kms.calls_to("GenerateDataKey")[0].body["KeyId"], a);
    let enc = &kms.calls_to("Encrypt")[0].body;
    assert_eq!(enc["KeyId"], b);
    assert_eq!(enc["EncryptionContext"]["k"], "v");
    assert_eq!(kms_edks(&ct), [a.clone(), b.clone()]);

    // Strict mode with only the second key: skips A's EDK without calling KMS for it.
    kms.record();
    let pt = decrypt(arc(kms.strict(&b)), &DecryptOptions::default(), &ct).unwrap();
    assert_eq!(pt, b"two keys");
    let decs = kms.calls_to("Decrypt");
    assert_eq!(decs.len(), 1);
    assert_eq!(decs[0].body["KeyId"], b);

    // Both keyrings in a multi-keyring: the first EDK that unwraps wins, one call.
    kms.record();
    assert_eq!(
        decrypt(both, &DecryptOptions::default(), &ct).unwrap(),
        b"two keys"
    );
    assert_eq!(kms.calls_to("Decrypt").len(), 1);
}

#[test]
fn keys_in_other_regions_are_called_in_their_region() {
    let Some(kms) = Kms::start() else { return };
    let a = kms.create_key(HOME);
    let eu = kms.create_key("eu-west-1");
    let ap = kms.create_key("ap-southeast-2");
    assert!(eu.contains(":eu-west-1:"), "{eu}");
    // Every keyring is configured with a us-east-1 client.
    let all = multi(vec![
        Box::new(kms.strict(&eu)),
        Box::new(kms.strict(&a)),
        Box::new(kms.strict(&ap)),
    ]);
    kms.record();
    let ct = encrypt(all.as_ref(), &Default::default(), b"regions");
    let g = kms.calls_to("GenerateDataKey");
    assert_eq!((g.len(), g[0].region.as_str()), (1, "eu-west-1"));
    let regions: Vec<String> = kms
        .calls_to("Encrypt")
        .into_iter()
        .map(|c| c.region)
        .collect();
    assert_eq!(regions, ["us-east-1", "ap-southeast-2"]);

    for key in [&eu, &a, &ap] {
        kms.record();
        let pt = decrypt(arc(kms.strict(key)), &DecryptOptions::default(), &ct).unwrap();
        assert_eq!(pt, b"regions");
        let d = kms.calls_to("Decrypt");
        assert_eq!(d.len(), 1);
        assert!(key.contains(&format!(":{}:", d[0].region)), "{key} {d:?}");
    }

    // Discovery uses its own client only: a us-east-1 client skips the eu-west-1 EDK (the first)
    // and decrypts the us-east-1 one, without calling any other region.
    kms.record();
    let pt = decrypt(arc(kms.discovery(None)), &DecryptOptions::default(), &ct).unwrap();
    assert_eq!(pt, b"regions");
    let d = kms.calls_to("Decrypt");
    assert_eq!((d.len(), d[0].region.as_str()), (1, "us-east-1"));
}

#[test]
fn discovery_with_and_without_a_filter() {
    let Some(kms) = Kms::start() else { return };
    let a = kms.create_key(HOME);
    let ct = encrypt(
        &kms.strict(&a),
        &opts_with_context(&[("x", "y")]),
        b"discover",
    );
    let ok = DiscoveryFilter::new("aws", ["111111111111", ACCOUNT]).unwrap();
    for filter in [None, Some(ok)] {
        let pt = decrypt(arc(kms.discovery(filter)), &DecryptOptions::default(), &ct).unwrap();
        assert_eq!(pt, b"discover");
    }

    // A filter that excludes the key's account, or its partition: no KMS call, no key.
    for filter in [
        DiscoveryFilter::new("aws", ["111111111111"]).unwrap(),
        DiscoveryFilter::new("aws-cn", [ACCOUNT]).unwrap(),
    ] {
        kms.record();
        let e = decrypt(
            arc(kms.discovery(Some(filter))),
            &DecryptOptions::default(),
            &ct,
        )
        .unwrap_err();
        assert!(matches!(e, Error::NoDecryptableKey(_)), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("aws-kms/{a}")),
            "names the key: {msg}"
        );
        assert!(kms.calls_to("Decrypt").is_empty());
    }
}

#[test]
fn a_key_that_is_not_configured_cannot_decrypt() {
    let Some(kms) = Kms::start() else { return };
    let (a, b) = (kms.create_key(HOME), kms.create_key(HOME));
    let ct = encrypt(&kms.strict(&a), &Default::default(), b"only a");
    kms.record();
    let e = decrypt(arc(kms.strict(&b)), &DecryptOptions::default(), &ct).unwrap_err();
    assert!(matches!(e, Error::NoDecryptableKey(_)), "{e}");
    assert!(e.to_string().contains(&a), "{e}");
    assert!(
        kms.calls().is_empty(),
        "no KMS call for a key that does not match"
    );
}

#[test]
fn wrong_encryption_context_is_refused_by_kms_and_names_the_key() {
    let Some(kms) = Kms::start() else { return };
    let a = kms.create_key(HOME);
    let k = kms.strict(&a);
    let ctx = EncryptionContext::from_pairs([("tenant", "acme")]).unwrap();
    let mut em = EncryptionMaterials::new(Suite::DEFAULT, ctx);
    k.on_encrypt(&mut em).unwrap();
    let edks = em.encrypted_data_keys().to_vec();

    // The same EDK under another context: KMS refuses (its AAD differs).
    let other = EncryptionContext::from_pairs([("tenant", "evil")]).unwrap();
    let mut dm = DecryptionMaterials::new(Suite::DEFAULT, other);
    let e = k.on_decrypt(&mut dm, &edks).unwrap_err();
    assert!(matches!(e, Error::Keyring(_)), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&a) && msg.contains("InvalidCiphertextException"),
        "{msg}"
    );
    assert!(
        msg.contains("encryption context"),
        "explains the likely cause: {msg}"
    );
    assert!(dm.data_key().is_none());

    // A message whose context lacks a required pair: refused before KMS is asked.
    let ct = encrypt(&k, &opts_with_context(&[("tenant", "acme")]), b"ctx");
    let mut required = DecryptOptions::default();
    required.required_context.insert("tenant", "other").unwrap();
    kms.record();
    let e = decrypt(arc(kms.strict(&a)), &required, &ct).unwrap_err();
    assert!(matches!(e, Error::ContextMismatch(_)), "{e}");
    assert!(kms.calls().is_empty());
}

#[test]
fn disabled_key_is_reported_with_its_arn_and_another_key_still_decrypts() {
    let Some(kms) = Kms::start() else { return };
    let (a, b) = (kms.create_key(HOME), kms.create_key(HOME));
    let both = multi(vec![Box::new(kms.strict(&a)), Box::new(kms.strict(&b))]);
    let ct = encrypt(both.as_ref(), &Default::default(), b"disabled");
    // moto records the state but does not enforce it; the proxy answers as KMS would.
    let key_id = a.rsplit('/').next().unwrap().to_owned();
    rt().block_on(kms.client(HOME).disable_key().key_id(&key_id).send())
        .unwrap();
    let rule = |op| Rule {
        op,
        needle: key_id.clone(),
        code: "DisabledException",
        message: format!("{a} is disabled."),
        times: None,
    };
    let proxy = FaultProxy::start(
        &kms.server.endpoint,
        vec![rule("Decrypt"), rule("GenerateDataKey"), rule("Encrypt")],
    );
    let via_proxy = |id: &str| KmsKeyring::new(client_for(&proxy.endpoint, HOME), id).unwrap();

    let e = decrypt(arc(via_proxy(&a)), &DecryptOptions::default(), &ct).unwrap_err();
    assert!(matches!(e, Error::Keyring(_)), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&a)
            && msg.contains("DisabledException")
            && msg.contains("the key is disabled"),
        "{msg}"
    );
    assert_eq!(
        proxy.count("Decrypt"),
        (1, 1),
        "not retried: it is not transient"
    );

    // The multi-keyring goes on to B; so does a discovery keyring (A's EDK comes first).
    let multi_ab = multi(vec![Box::new(via_proxy(&a)), Box::new(via_proxy(&b))]);
    let discovery = arc(KmsKeyring::discovery(
        client_for(&proxy.endpoint, HOME),
        None,
    ));
    for k in [multi_ab, discovery] {
        assert_eq!(
            decrypt(k, &DecryptOptions::default(), &ct).unwrap(),
            b"disabled"
        );
    }

    // Encrypting with a disabled key fails, naming it, as generator and as second key.
    let e = try_encrypt(&via_proxy(&a), &Default::default(), b"x").unwrap_err();
    assert!(
        e.to_string().contains("GenerateDataKey") && e.to_string().contains(&a),
        "{e}"
    );
    let ba = multi(vec![Box::new(via_proxy(&b)), Box::new(via_proxy(&a))]);
    let e = try_encrypt(ba.as_ref(), &Default::default(), b"x").unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("Encrypt with") && msg.contains("DisabledException"),
        "{msg}"
    );
}

#[test]
fn throttling_is_retried_with_backoff_and_reported_when_it_persists() {
    let Some(kms) = Kms::start() else { return };
    // A region of its own: the retry quota is shared per region within the process.
    let region = "sa-east-1";
    let a = kms.create_key(region);
    let throttle = |op, times| Rule {
        op,
        needle: a.clone(),
        code: "ThrottlingException",
        message: "Rate exceeded".to_owned(),
        times,
    };
    let proxy = FaultProxy::start(
        &kms.server.endpoint,
        vec![
            throttle("GenerateDataKey", Some(2)),
            throttle("Decrypt", None),
        ],
    );
    let k = KmsKeyring::new(client_for(&proxy.endpoint, region), &a).unwrap();
    let ct = encrypt(&k, &Default::default(), b"throttled");
    assert_eq!(
        proxy.count("GenerateDataKey"),
        (3, 2),
        "two throttles, then success"
    );

    let e = decrypt(arc(k), &DecryptOptions::default(), &ct).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&a) && msg.contains("ThrottlingException"),
        "{msg}"
    );
    assert_eq!(
        proxy.count("Decrypt"),
        (
            RECOMMENDED_MAX_ATTEMPTS as usize,
            RECOMMENDED_MAX_ATTEMPTS as usize
        )
    );
}

#[test]
fn kms_and_local_keys_mix_in_a_multi_keyring_in_both_orders() {
    let Some(kms) = Kms::start() else { return };
    let a = kms.create_key(HOME);
    for kms_first in [true, false] {
        let children: Vec<Box<dyn Keyring>> = if kms_first {
            vec![Box::new(kms.strict(&a)), Box::new(raw(7))]
        } else {
            vec![Box::new(raw(7)), Box::new(kms.strict(&a))]
        };
        kms.record();
        let ct = encrypt(
            multi(children).as_ref(),
            &opts_with_context(&[("m", "x")]),
            b"mixed",
        );
        let (g, e) = (
            kms.calls_to("GenerateDataKey").len(),
            kms.calls_to("Encrypt").len(),
        );
        assert_eq!((g, e), if kms_first { (1, 0) } else { (0, 1) });
        assert_eq!(header(&ct).encrypted_data_keys.len(), 2);

        // Each alone, and both in either order.
        let readers: Vec<Arc<dyn Keyring>> = vec![
            arc(kms.strict(&a)),
            Arc::new(raw(7)),
            multi(vec![Box::new(kms.strict(&a)), Box::new(raw(7))]),
            multi(vec![Box::new(raw(7)), Box::new(kms.strict(&a))]),
        ];
        for r in readers {
            assert_eq!(
                decrypt(r, &DecryptOptions::default(), &ct).unwrap(),
                b"mixed"
            );
        }
    }

    // A KMS child that fails (access denied) does not hide the local key that succeeds.
    let ct = encrypt(
        multi(vec![Box::new(kms.strict(&a)), Box::new(raw(7))]).as_ref(),
        &Default::default(),
        b"fallback",
    );
    let proxy = FaultProxy::start(
        &kms.server.endpoint,
        vec![Rule {
            op: "Decrypt",
            needle: String::new(),
            code: "AccessDeniedException",
            message: "User is not authorized to perform: kms:Decrypt".to_owned(),
            times: None,
        }],
    );
    let denied = KmsKeyring::new(client_for(&proxy.endpoint, HOME), &a).unwrap();
    let r = multi(vec![Box::new(denied), Box::new(raw(7))]);
    assert_eq!(
        decrypt(r, &DecryptOptions::default(), &ct).unwrap(),
        b"fallback"
    );
    // Without the local key, the KMS error is what the caller sees.
    let denied = KmsKeyring::new(client_for(&proxy.endpoint, HOME), &a).unwrap();
    let e = decrypt(
        multi(vec![Box::new(denied)]),
        &DecryptOptions::default(),
        &ct,
    )
    .unwrap_err();
    assert!(e.to_string().contains("AccessDeniedException"), "{e}");
}

#[test]
fn aliases_and_key_ids_encrypt_but_only_key_arns_decrypt_strictly() {
    let Some(kms) = Kms::start() else { return };
    let a = kms.create_key(HOME);
    kms.create_alias(HOME, "alias/s3crypt-test", &a);
    let key_id = a.rsplit('/').next().unwrap().to_owned();
    let alias_arn = format!("arn:aws:kms:{HOME}:{ACCOUNT}:alias/s3crypt-test");
    for id in ["alias/s3crypt-test", key_id.as_str(), alias_arn.as_str()] {
        let ct = encrypt(&kms.strict(id), &Default::default(), b"alias");
        assert_eq!(kms_edks(&ct), [a.as_str()], "KMS answers with the key ARN");
        let pt = decrypt(arc(kms.strict(&a)), &DecryptOptions::default(), &ct).unwrap();
        assert_eq!(pt, b"alias");

        let e = decrypt(arc(kms.strict(id)), &DecryptOptions::default(), &ct).unwrap_err();
        assert!(matches!(e, Error::Keyring(_)), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains(id) && msg.contains(&a) && msg.contains("key ARN"),
            "{msg}"
        );
    }
}

#[test]
fn grant_tokens_are_sent_with_every_call() {
    let Some(kms) = Kms::start() else { return };
    let (a, b) = (kms.create_key(HOME), kms.create_key(HOME));
    let tokens = ["token-1", "token-2"];
    let k = multi(vec![
        Box::new(kms.strict(&a).with_grant_tokens(tokens)),
        Box::new(kms.strict(&b).with_grant_tokens(tokens)),
    ]);
    kms.record();
    let ct = encrypt(k.as_ref(), &Default::default(), b"grants");
    decrypt(
        arc(kms.discovery(None).with_grant_tokens(tokens)),
        &DecryptOptions::default(),
        &ct,
    )
    .unwrap();
    let calls = kms.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    for c in calls {
        assert_eq!(c.body["GrantTokens"], serde_json::json!(tokens), "{}", c.op);
    }
}

#[test]
fn unusable_aws_kms_edks_fail_clearly() {
    let Some(kms) = Kms::start() else { return };
    let a = kms.create_key(HOME);
    let mut em = EncryptionMaterials::new(Suite::DEFAULT, EncryptionContext::new());
    kms.strict(&a).on_encrypt(&mut em).unwrap();
    let good = em.encrypted_data_keys()[0].clone();

    // Not a key ARN (here an alias ARN): the keyring fails without calling KMS (spec).
    let mut alias = good.clone();
    alias.provider_info = format!("arn:aws:kms:{HOME}:{ACCOUNT}:alias/x").into_bytes();
    kms.record();
    let mut dm = DecryptionMaterials::new(Suite::DEFAULT, EncryptionContext::new());
    let e = kms
        .discovery(None)
        .on_decrypt(&mut dm, &[alias, good.clone()]);
    let msg = e.unwrap_err().to_string();
    assert!(
        msg.contains("unusable") && msg.contains("not a key ARN"),
        "{msg}"
    );
    assert!(kms.calls().is_empty());

    // A well-formed ARN of a key that does not exist, with terminal escapes in it: KMS refuses,
    // and the message shows the ARN escaped.
    let mut forged = good;
    forged.provider_info = format!("{a}\u{1b}[2J\n").into_bytes();
    let e = kms.discovery(None).on_decrypt(&mut dm, &[forged]);
    let msg = e.unwrap_err().to_string();
    assert!(msg.contains("NotFoundException"), "{msg}");
    assert!(!msg.contains('\u{1b}') && !msg.contains('\n'), "{msg}");
}
