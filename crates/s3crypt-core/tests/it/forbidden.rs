//! The "forbidden attack" (Joux, 2006) on the old `rewrap` (advisory S3C-2026-01): the GCM
//! arithmetic and forgery helpers are in `s3crypt-test-support` (shared with the S3 and CLI
//! tests); these tests check the helpers against ring and run the attack.

pub(crate) use s3crypt_test_support::forbidden::*;

use s3crypt_core::{EncryptionContext, Error, Header, ReadLimits};

#[test]
fn gf128_and_ghash_match_ring_gcm() {
    // Field sanity: identity, commutativity, inverse, distributivity.
    for _ in 0..20 {
        let (a, b, c): (Gf, Gf, Gf) = (rand::random(), rand::random(), rand::random());
        assert_eq!(gf_mul(a, GF_ONE), a);
        assert_eq!(gf_mul(a, b), gf_mul(b, a));
        assert_eq!(gf_mul(a, b ^ c), gf_mul(a, b) ^ gf_mul(a, c));
        if a != 0 {
            assert_eq!(gf_mul(a, gf_inv(a)), GF_ONE);
        }
    }

    // Polynomials: a = q·b + r with deg r < deg b; powmod agrees with repeated squaring; the
    // roots of a product of linear factors (one repeated) are exactly its distinct roots.
    let rand_poly = |n: usize| -> Poly { (0..n).map(|_| rand::random()).collect() };
    let (a, b) = (rand_poly(9), rand_poly(4));
    let (q, r) = poly_divrem(&a, &b);
    assert!(poly_deg(&r) < poly_deg(&b));
    assert_eq!(poly_add(&poly_mul(&q, &b), &r), a);
    assert_eq!(
        poly_powmod(&poly_x(), 1 << 20, &b),
        poly_pow2k_mod(&poly_x(), 20, &b)
    );
    let mut want: Vec<Gf> = (0..4).map(|_| rand::random()).collect();
    let p = want
        .iter()
        .chain(&want[..1])
        .fold(vec![GF_ONE], |p, &r| poly_mul(&p, &[r, GF_ONE]));
    want.sort_unstable();
    assert_eq!(poly_roots(&poly_mul(&p, &rand_poly(1))), want);

    // Known answer: McGrew–Viega GCM test case 14 (AES-256, K = 0, IV = 0, P = 0^128), where
    // H = E_K(0^128) is published. ring reproduces C and T; GHASH + mask must give T.
    let key = [0u8; 32];
    let (c, t) = seal(&key, [0; 12], &[], &[0; 16]);
    assert_eq!(c, hex("cea7403d4d606b6e074ec5d3baf39d18"));
    assert_eq!(t, hex16("d0d1c8a799996bf0265b98b5d48ab919"));
    let (_, mask) = seal(&key, [0; 12], &[], &[]);
    assert_eq!(mask, hex16("530f8afbc74536b9a963b4f1c4cb738b"), "E_K(J0)");
    let h = hex16("dc95c078a2408989ad48a21492842087");
    assert_eq!(xor16(mask, ghash(&h, &[], &c)), t);
    // Recovering H from tags needs no published value: two tags under the KAT key give it.
    let (c2, t2) = seal(&key, [0; 12], b"some aad", b"other plaintext");
    assert!(recover_h(&[(&[], &c, t), (b"some aad", &c2, t2)]).contains(&h));

    // Random keys, nonces, AADs and plaintexts (lengths not multiples of 16 included): H from
    // two tags under one (key, nonce), then GHASH_H + mask predicts ring's tag for any other
    // AAD and plaintext under that (key, nonce).
    for _ in 0..8 {
        let key: [u8; 32] = rand::random();
        let nonce: [u8; 12] = rand::random();
        let (_, mask) = seal(&key, nonce, &[], &[]);
        let (a1, p1, a2, p2) = (
            random_bytes(40),
            random_bytes(40),
            random_bytes(40),
            random_bytes(40),
        );
        let (c1, t1) = seal(&key, nonce, &a1, &p1);
        let (c2, t2) = seal(&key, nonce, &a2, &p2);
        let candidates = recover_h(&[(&a1, &c1, t1), (&a2, &c2, t2), (&[], &[], mask)]);
        let others: Vec<_> = (0..5)
            .map(|_| {
                let (a, p) = (random_bytes(70), random_bytes(70));
                let (c, t) = seal(&key, nonce, &a, &p);
                (a, c, t)
            })
            .collect();
        let good: Vec<_> = candidates
            .iter()
            .filter(|h| {
                others
                    .iter()
                    .all(|(a, c, t)| xor16(mask, ghash(h, a, c)) == *t)
            })
            .collect();
        assert_eq!(good.len(), 1, "{} candidates", candidates.len());
        // Two groups under two nonces (same key): their common candidates still hold H.
        let nonce2: [u8; 12] = rand::random();
        let (c3, t3) = seal(&key, nonce2, &a1, &p2);
        let (c4, t4) = seal(&key, nonce2, &a2, &p1);
        let multi = recover_h_multi(&[
            &[(&a1, &c1, t1), (&a2, &c2, t2)],
            &[(&a1, &c3, t3), (&a2, &c4, t4)],
        ]);
        assert!(multi.contains(good[0]));
        // Each of the triples is consistent with the good H.
        assert_eq!(xor16(mask, ghash(good[0], &a1, &c1)), t1);
    }
}

#[test]
fn a_header_retagged_under_the_same_key_lets_anyone_forge_the_message() {
    let pt = payroll();
    let msg_a = encrypt(&CONTEXT, &pt);
    let msg_b = old_rewrap(&msg_a);
    // Both are genuine: the old rewrap's output decrypted.
    assert_eq!(decrypt(&msg_a).unwrap().0, pt);
    let (out_b, sum_b) = decrypt(&msg_b).unwrap();
    assert_eq!(out_b, pt);
    assert_eq!(
        sum_b.header.header.context.get("key"),
        Some("reports/q3-archived.csv")
    );

    // The attacker holds msg_a, msg_b and the plaintext of msg_a (known plaintext), not the
    // key. Chosen plaintext of the same length.
    let mut chosen = b"PAY 99999.00 EUR TO MALLORY, IBAN XX00 6666 6666 6666 6666 66. ".repeat(5);
    chosen.truncate(pt.len());
    let forgeries = forge_message(&msg_a, &msg_b, &pt, &chosen);
    assert!(!forgeries.is_empty());
    let mut accepted = Vec::new();
    for (i, f) in forgeries.iter().enumerate() {
        match decrypt(f) {
            Ok((out, _)) => {
                assert_eq!(out, chosen);
                accepted.push(i);
            }
            Err(e) => assert!(matches!(e, Error::Authentication), "{e}"),
        }
    }
    assert_eq!(accepted.len(), 1, "{} candidates", forgeries.len());

    // The H that worked (recomputed from the headers alone).
    let pa = Header::read(&msg_a, &ReadLimits::default()).unwrap();
    let pb = Header::read(&msg_b, &ReadLimits::default()).unwrap();
    let cands = recover_h(&[(&pa.bytes, &[], pa.tag), (&pb.bytes, &[], pb.tag)]);
    assert_eq!(cands.len(), forgeries.len());
    let h = cands[accepted[0]];

    // A header the key holder never wrote: the object's location and a new pair, with a valid
    // tag, in front of attacker-chosen frames.
    let mut forged_header = pa.header.clone();
    forged_header.context = EncryptionContext::from_pairs([
        ("bucket", "finance"),
        ("key", "attacker/q3.csv"),
        ("approved", "yes"),
    ])
    .unwrap();
    let mut forged = forged_header.to_bytes().unwrap();
    forged.extend_from_slice(&forge_header_tag(&h, &pa.bytes, pa.tag, &forged));
    forged.extend_from_slice(&forgeries[accepted[0]][pa.len()..]);
    let (out, summary) = decrypt(&forged).unwrap();
    assert_eq!(out, chosen);
    assert_eq!(summary.header.header.context, forged_header.context);

    // Two messages under one message id whose frames differ too (the forgery and msg_a): the
    // frame tags at equal sequence numbers add equations, and their gcd leaves H alone.
    let again = forge_message(&msg_a, &forged, &pt, &pt[..10]);
    assert_eq!(again.len(), 1);
    assert_eq!(decrypt(&again[0]).unwrap().0, &pt[..10]);

    // Truncation: the second regular frame turned into the final one, plaintext cut to it.
    let cut = &pt[..2 * FRAME as usize];
    let truncated = forge_message_with_h(&msg_a, &h, &pt, cut).unwrap();
    assert_eq!(decrypt(&truncated).unwrap().0, cut);
    // And an empty message.
    let empty = forge_message_with_h(&msg_a, &h, &pt, &[]).unwrap();
    assert_eq!(decrypt(&empty).unwrap().0, b"");
}

#[test]
fn distinct_message_ids_leave_nothing_to_recover() {
    let pt = payroll();
    // Same data key (same keyring), fresh random message ids: what the fixed rewrap and every
    // encryption produce. One of them with another context, as a rewrap would.
    let msg_a = encrypt(&CONTEXT, &pt);
    let msg_b = encrypt(
        &[("bucket", "finance"), ("key", "reports/q3-archived.csv")],
        &pt,
    );
    let pa = Header::read(&msg_a, &ReadLimits::default()).unwrap();
    let pb = Header::read(&msg_b, &ReadLimits::default()).unwrap();
    assert_ne!(pa.header.message_id, pb.header.message_id);
    assert_eq!(decrypt(&msg_b).unwrap().0, pt);

    let chosen = vec![b'X'; pt.len()];
    assert!(forge_message(&msg_a, &msg_b, &pt, &chosen).is_empty());

    // Ignoring that the keys differ: the roots of the header polynomial (and of the frame
    // polynomials at equal sequence numbers) are noise, and no forgery built from any of them
    // authenticates, in either message.
    let ctx = EncryptionContext::from_pairs(CONTEXT).unwrap();
    assert_eq!(pa.header.context, ctx);
    let mut candidates = recover_h(&[(&pa.bytes, &[], pa.tag), (&pb.bytes, &[], pb.tag)]);
    let fa = parse_frames(&msg_a[pa.len()..], FRAME).unwrap();
    let fb = parse_frames(&msg_b[pb.len()..], FRAME).unwrap();
    let aad_a = frame_aad(&pa.header.message_id, false, 1, FRAME as usize);
    let aad_b = frame_aad(&pb.header.message_id, false, 1, FRAME as usize);
    candidates.extend(recover_h(&[
        (&aad_a, &fa[0].ciphertext, fa[0].tag),
        (&aad_b, &fb[0].ciphertext, fb[0].tag),
    ]));
    for h in &candidates {
        for msg in [&msg_a, &msg_b] {
            let f = forge_message_with_h(msg, h, &pt, &chosen).unwrap();
            assert!(matches!(decrypt(&f), Err(Error::Authentication)));
        }
    }
}
