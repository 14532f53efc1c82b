#!/usr/bin/env python3
"""Generate s3crypt's ESDK message-format-v2 test vectors.

    python test-vectors/tools/generate.py [OUT_DIR]      (default: test-vectors/, next to tools/)

Positive vectors are made by the official AWS Encryption SDK for Python (legacy raw AES master key
providers, offline).  Negative vectors are made by esdk_v2.py, an independent implementation of the
format, so that each message is valid in every respect but the one under test.  Before writing
anything the generator checks, and aborts on any mismatch:

  * esdk_v2.py-built messages decrypt with the official SDK (positive self-check);
  * every positive decrypts with the official SDK and with esdk_v2's strict reader;
  * every negative is rejected by esdk_v2's strict reader with exactly the expected error class;
  * every negative is rejected by the official SDK, except those flagged "python_accepts": true,
    which the SDK must accept (so the flag is accurate).

SDK message ids, data keys, IVs and ECDSA keys are random, so the positive .bin files change on
every run.  Negative vectors built here use fixed data keys, message ids, IVs and ECDSA keys, and
RFC 6979 signatures where cryptography/OpenSSL offer them, so they are byte-for-byte reproducible;
only the two negatives made by the SDK (l-65-edks, c-0578-sdk-value-differs) change.
"""

import hashlib
import json
import logging
import os
import struct
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import esdk_v2 as v2  # noqa: E402
import sdk_keys  # noqa: E402
from aws_encryption_sdk.identifiers import Algorithm  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

# The SDK logs a traceback ("Error on closing") for every message it rejects.
logging.getLogger("aws_encryption_sdk").disabled = True
logging.getLogger("aws_encryption_sdk.streaming_client").disabled = True

PINNED_SDK = "4.0.7"  # keep in step with requirements.txt

SUITES = {
    0x0478: Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
    0x0578: Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384,
}

# ----------------------------------------------------------------------------- keys

KEY_SPECS = [
    # id, namespace, name, key-bytes label
    ("k1", "s3crypt-test", "key-1", "k1"),
    ("k2", "s3crypt-test", "key-2", "k2"),
    ("k3", "s3crypt-other", "key-3", "k3"),
    ("k4", "s3crypt-tëst", "clé-4 🔑", "k4"),
    ("k1-wrong-bytes", "s3crypt-test", "key-1", "k1-wrong-bytes"),
    ("k1-other-namespace", "s3crypt-elsewhere", "key-1", "k1"),  # same bytes as k1
    ("k9-unknown-name", "s3crypt-test", "key-9", "k9"),
]


def key_bytes(label):
    return hashlib.sha256(b"s3crypt test vector wrapping key " + label.encode()).digest()


KEYS = {kid: v2.RawAesKey(ns, name, key_bytes(label)) for kid, ns, name, label in KEY_SPECS}
# Extra keys used only to put many EDKs in a header; not listed in the manifest (never needed to
# decrypt: every such message also carries an EDK for k1).
BULK = [v2.RawAesKey("s3crypt-bulk", "bulk-%02d" % i, key_bytes("bulk-%02d" % i)) for i in range(1, 65)]


def sdk_triplets(keys):
    return [(k.namespace, k.name, k.key) for k in keys]


# ----------------------------------------------------------------------------- contexts

CTX_EMPTY = {}
CTX_MAIN = {"purpose": "test", "owner": "s3crypt", "région": "Île-de-France ✓ 🔐"}
CTX_SORT = {  # byte order differs from UTF-16 order ("Ａ" U+FF21 vs "🔐" U+1F510) and from case-folding
    "B": "upper",
    "a": "lower",
    "ab": "prefix",
    "z": "last ascii",
    "é": "latin-1 range",
    "Ａ": "fullwidth A",
    "🔐": "astral",
}
CTX_BIG = {"purpose": "test", "big": "x" * 4000, "bigger": "ü" * 3000}


def public_context(ctx):
    return {k: v for k, v in ctx.items() if k != v2.PUBLIC_KEY_CONTEXT_KEY}


# ----------------------------------------------------------------------------- output


class Out:
    def __init__(self, root):
        self.root = root
        self.vectors = []
        self.ids = set()
        self.files = {}
        for sub in ("positive", "negative"):
            d = os.path.join(root, sub)
            os.makedirs(d, exist_ok=True)
            for f in os.listdir(d):
                if f.endswith(".bin"):
                    os.remove(os.path.join(d, f))

    def write(self, rel, data):
        if rel in self.files:
            assert self.files[rel] == data, rel
            return rel
        self.files[rel] = data
        with open(os.path.join(self.root, rel), "wb") as f:
            f.write(data)
        return rel

    def add(self, entry):
        assert entry["id"] not in self.ids, entry["id"]
        self.ids.add(entry["id"])
        self.vectors.append(entry)


def sdk_decrypt(data, key_ids):
    """Official SDK decrypt, trying all keys together, then one key at a time (the legacy master
    key provider gives up on the first EDK whose unwrap fails instead of trying the next EDK, and
    one provider cannot hold two keys of the same namespace/name)."""
    keys = [KEYS[k] for k in key_ids]
    c = sdk_keys.client()
    attempts = [keys] + ([[k] for k in keys] if len(keys) > 1 else [])
    err = None
    for ks in attempts:
        try:
            return c.decrypt(source=data, key_provider=sdk_keys.provider_for(sdk_triplets(ks)))
        except Exception as e:  # noqa: BLE001 - any rejection counts
            err = e
    raise err


# ----------------------------------------------------------------------------- positives

FINAL_FRAME_FORMS = []


def positive(out, vid, desc, suite, frame_length, n, ctx, enc_keys, dec_key_sets, required=None,
             file_id=None):
    """Encrypt pattern(n) with the official SDK; one manifest entry per key set in dec_key_sets
    (list of (suffix, [key ids])); all entries share one ciphertext file."""
    pt = v2.pattern(n)
    c = sdk_keys.client()
    provider = sdk_keys.provider_for(sdk_triplets([KEYS[k] for k in enc_keys] + enc_extra(enc_keys)))
    ct, header = c.encrypt(source=pt, key_provider=provider, frame_length=frame_length,
                           algorithm=SUITES[suite], encryption_context=dict(ctx))
    rel = out.write("positive/%s.bin" % (file_id or vid), ct)
    # cross-checks: strict reader + official SDK, each key set
    for suffix, kids in dec_key_sets:
        got, h = v2.decrypt(ct, [KEYS[k] for k in kids], required)
        assert got == pt, vid
        got, _ = sdk_decrypt(ct, kids)
        assert got == pt, vid
    assert h["suite"] == suite and h["frame_length"] == frame_length
    assert public_context(h["context"]) == ctx, (h["context"], ctx)
    last_seq, last_len, _ = h["frames"][-1]
    expected_frames = n // frame_length + 1  # SDK: always a final frame, empty on exact multiples
    assert len(h["frames"]) == expected_frames and last_len == n % frame_length, (vid, h["frames"])
    if n % frame_length == 0:
        FINAL_FRAME_FORMS.append((vid, n, frame_length, last_seq, last_len))
    for suffix, kids in dec_key_sets:
        e = {
            "id": vid + suffix,
            "description": desc + ("" if not suffix else "; decrypted with %s" % ", ".join(kids)),
            "ciphertext": rel,
            "keys": kids,
        }
        if required:
            e["required_context"] = required
        e.update({
            "expect": "ok",
            "plaintext_len": n,
            "suite": "0x%04x" % suite,
            "frame_length": frame_length,
            "context": ctx,
        })
        out.add(e)
    return ct


_ENC_EXTRA = {}


def enc_extra(enc_keys):
    return _ENC_EXTRA.get(tuple(enc_keys), [])


def make_positives(out):
    ctxs = [("noctx", CTX_EMPTY, "empty context"), ("ctx", CTX_MAIN, "context with non-ASCII UTF-8")]
    for suite in (0x0478, 0x0578):
        for fl in (128, 4096, 65536):
            sizes = [(0, "empty"), (1, "1 byte"), (fl - 1, "frame-1"), (fl, "exactly one frame"),
                     (fl + 1, "frame+1"), (3 * fl + 17, "3 frames + 17")]
            for n, what in sizes:
                for cname, ctx, cdesc in ctxs:
                    vid = "p-%04x-f%d-n%d-%s" % (suite, fl, n, cname)
                    desc = "SDK, suite 0x%04x, frame %d, plaintext %d (%s), %s, key k1" % (
                        suite, fl, n, what, cdesc)
                    positive(out, vid, desc, suite, fl, n, ctx, ["k1"], [("", ["k1"])])
    mib = 1 << 20
    for suite, n, cname, ctx in ((0x0478, 1, "ctx", CTX_MAIN), (0x0478, mib + 1, "noctx", CTX_EMPTY),
                                 (0x0578, mib, "ctx", CTX_MAIN)):
        vid = "p-%04x-f%d-n%d-%s" % (suite, mib, n, cname)
        desc = "SDK, suite 0x%04x, frame 1 MiB, plaintext %d, %s, key k1" % (
            suite, n, "context with non-ASCII UTF-8" if ctx else "empty context")
        positive(out, vid, desc, suite, mib, n, ctx, ["k1"], [("", ["k1"])])

    # several wrapping keys: k1 generates, k2 and k3 (another namespace) wrap too
    for suite in (0x0478, 0x0578):
        vid = "p-%04x-multikey" % suite
        positive(out, vid, "SDK, suite 0x%04x, frame 128, plaintext 1000, 3 EDKs (k1, k2, k3 of two "
                 "namespaces; EDK order in the header is whatever the SDK's set gives)" % suite,
                 suite, 128, 1000, CTX_MAIN, ["k1", "k2", "k3"],
                 [("-all", ["k1", "k2", "k3"]), ("-k1", ["k1"]), ("-k2", ["k2"]), ("-k3", ["k3"]),
                  ("-unknown-then-k3", ["k9-unknown-name", "k3"]),
                  ("-wrongbytes-then-k3", ["k1-wrong-bytes", "k3"])],
                 file_id=vid)
    # non-ASCII namespace and key name
    positive(out, "p-0478-nonascii-key-name", "SDK, suite 0x0478, key k4 whose namespace and name "
             "are non-ASCII UTF-8", 0x0478, 4096, 5000, CTX_MAIN, ["k4"], [("", ["k4"])])
    # context serialization order
    for suite in (0x0478, 0x0578):
        positive(out, "p-%04x-ctx-sorting" % suite, "SDK, suite 0x%04x, context whose keys sort "
                 "differently by UTF-8 bytes than by UTF-16 units or case-insensitively" % suite,
                 suite, 4096, 100, CTX_SORT, ["k1"], [("", ["k1"])])
    positive(out, "p-0478-ctx-big", "SDK, suite 0x0478, context with long values (~10 KB serialized)",
             0x0478, 4096, 300, CTX_BIG, ["k1"], [("", ["k1"])])
    # required context (subset of the message's context): must pass
    positive(out, "p-0478-required-context", "SDK, suite 0x0478; decryptor requires purpose=test",
             0x0478, 4096, 5000, CTX_MAIN, ["k1"], [("", ["k1"])], required={"purpose": "test"})
    positive(out, "p-0578-required-context", "SDK, suite 0x0578; decryptor requires two pairs "
             "including the non-ASCII one", 0x0578, 4096, 5000, CTX_MAIN, ["k1"], [("", ["k1"])],
             required={"owner": "s3crypt", "région": "Île-de-France ✓ 🔐"})
    # at the EDK limit: 64 EDKs (k1 + 63 bulk keys)
    _ENC_EXTRA[("k1",)] = BULK[:63]
    positive(out, "p-0478-64-edks", "SDK, suite 0x0478, 64 EDKs (k1 + 63 others): at the EDK limit, "
             "must decrypt", 0x0478, 4096, 100, CTX_MAIN, ["k1"], [("", ["k1"])])
    _ENC_EXTRA.clear()


# ----------------------------------------------------------------------------- negatives

BASE_CTX = CTX_MAIN
PT = v2.pattern(3 * 128 + 17)  # frame 128: frames 1..3 regular, final frame 4 with 17 bytes


def flip(data, pos, bit=0x01):
    b = bytearray(data)
    b[pos] ^= bit
    return bytes(b)


def header_offsets(body):
    """Offsets of fields in a header body (before the tag), first EDK only."""
    o = {"version": 0, "suite": 1, "message_id": 3, "aad_len": 35}
    (aad_len,) = struct.unpack_from(">H", body, 35)
    o["ctx"] = 37
    o["edk_count"] = 37 + aad_len
    p = o["edk_count"] + 2
    (pl,) = struct.unpack_from(">H", body, p)
    o["edk_pid"] = p + 2
    p = p + 2 + pl
    (il,) = struct.unpack_from(">H", body, p)
    o["edk_info"] = p + 2
    o["edk_info_end"] = p + 2 + il
    p = p + 2 + il
    (cl,) = struct.unpack_from(">H", body, p)
    o["edk_ct"] = p + 2
    o["edk_ct_end"] = p + 2 + cl
    o["commit"] = len(body) - 32
    o["frame_length"] = len(body) - 36
    o["content_type"] = len(body) - 37
    return o


def make_negatives(out):
    k1, k3 = KEYS["k1"], KEYS["k3"]
    B1 = v2.build(PT, [k1], "neg-base-0478", suite_id=0x0478, frame_length=128, context=BASE_CTX)
    B2 = v2.build(PT, [k1], "neg-base-0578", suite_id=0x0578, frame_length=128, context=BASE_CTX)
    m1, m2 = B1.message(), B2.message()
    H1 = len(B1.header)
    off1 = header_offsets(B1.body)
    f1, f2, f3, fin = B1.frames
    assert len(f1) == 160 and len(fin) == 4 + 4 + 12 + 4 + 17 + 16

    def neg(vid, cls, data, desc, keys=("k1",), python_accepts=False, required=None):
        rel = out.write("negative/%s.bin" % vid, data)
        e = {"id": vid, "description": desc, "ciphertext": rel, "keys": list(keys)}
        if required is not None:
            e["required_context"] = required
        e["expect"] = "error"
        e["error"] = cls
        if python_accepts:
            e["python_accepts"] = True
        out.add(e)

    # ---------------- truncated
    T = "truncated"
    neg("t-empty-file", T, b"", "empty file")
    neg("t-version-only", T, m1[:1], "only the version byte")
    neg("t-in-message-id", T, m1[:20], "ends inside the message id")
    neg("t-in-context", T, m1[:off1["ctx"] + 9], "ends inside the encryption context")
    neg("t-in-edk-provider-info", T, m1[:off1["edk_info"] + 3], "ends inside the EDK provider info")
    neg("t-in-edk-ciphertext", T, m1[:off1["edk_ct"] + 20], "ends inside the EDK ciphertext")
    neg("t-in-commitment", T, m1[:off1["commit"] + 10], "ends inside the commitment (suite data)")
    neg("t-before-header-tag", T, m1[:len(B1.body)], "header body complete, header auth tag missing")
    neg("t-in-header-tag", T, m1[:len(B1.body) + 8], "ends inside the header auth tag")
    neg("t-header-only", T, m1[:H1], "complete header, no body at all")
    neg("t-in-frame-1", T, m1[:H1 + 50], "ends inside the first frame's ciphertext")
    neg("t-in-frame-1-tag", T, m1[:H1 + 150], "ends inside the first frame's tag")
    neg("t-no-final-frame", T, m1[:H1 + 3 * 160], "all regular frames present, final frame missing "
        "(cut exactly on a frame boundary)")
    neg("t-after-frame-2", T, m1[:H1 + 2 * 160], "cut on the boundary after frame 2")
    neg("t-in-final-frame-header", T, m1[:H1 + 3 * 160 + 6], "ends inside the final frame's sequence "
        "number field")
    neg("t-in-final-frame-length", T, m1[:H1 + 3 * 160 + 4 + 4 + 12 + 2], "ends inside the final "
        "frame's content length field")
    neg("t-in-final-frame-tag", T, m1[:-5], "ends inside the final frame's tag (last 5 bytes missing)")
    E = v2.build(b"", [k1], "neg-empty-0478", suite_id=0x0478, frame_length=128, context=BASE_CTX)
    neg("t-empty-plaintext-no-final-frame", T, E.message()[:len(E.header)], "empty-plaintext message "
        "without its (empty) final frame")
    sig_body = m2[:len(B2.header) + sum(map(len, B2.frames))]
    neg("t-0578-no-footer", T, sig_body, "suite 0x0578, footer missing entirely")
    neg("t-0578-in-footer-length", T, m2[:len(sig_body) + 1], "suite 0x0578, ends inside the footer "
        "length field")
    neg("t-0578-footer-length-only", T, m2[:len(sig_body) + 2], "suite 0x0578, footer length present, "
        "signature missing")
    neg("t-0578-in-signature", T, m2[:-10], "suite 0x0578, ends inside the signature")

    # ---------------- malformed
    M = "malformed"
    neg("m-trailing-byte", M, m1 + b"\x00", "one zero byte appended after the final frame",
        python_accepts=True)
    neg("m-0578-trailing-bytes", M, m2 + b"\x00" * 16, "suite 0x0578, 16 bytes appended after the "
        "footer", python_accepts=True)
    neg("m-frame-after-final", M, m1 + f1, "a copy of frame 1 appended after the final frame",
        python_accepts=True)
    neg("m-frames-swapped", M, B1.header + f2 + f1 + f3 + fin, "frames 1 and 2 swapped (each frame's "
        "seq field, IV and tag are valid for its own seq; seq does not match position)")
    neg("m-frame-duplicated", M, B1.header + f1 + f1 + f2 + f3 + fin, "frame 1 repeated")
    neg("m-frame-dropped", M, B1.header + f1 + f3 + fin, "frame 2 dropped")
    neg("m-final-frame-early", M, B1.header + f1 + f2 + fin, "frame 3 dropped: final frame (seq 4) "
        "comes third")
    Z = v2.build(PT, [k1], "neg-seq0", frame_length=128, context=BASE_CTX,
                 frames=[(s - 1, c, f) for s, c, f in v2.split_frames(PT, 128)])
    neg("m-seq-starts-at-0", M, Z.message(), "frames numbered 0..3 instead of 1..4 (sealed with those "
        "numbers)")

    def resealed_iv(which, iv):
        frames = list(B1.frames)
        seq, chunk, final = B1.plan[which]
        frames[which] = v2.seal_frame(B1.derived, B1.message_id, seq, chunk, final, iv=iv)
        return B1.assemble(frames)

    neg("m-iv-random-frame-2", M, resealed_iv(1, bytes(range(1, 13))), "frame 2 carries IV "
        "01..0c and is correctly sealed under that IV", python_accepts=True)
    neg("m-iv-other-seq-final", M, resealed_iv(3, v2.frame_iv(1)), "final frame (seq 4) carries the "
        "IV of seq 1 and is correctly sealed under it", python_accepts=True)
    neg("m-iv-nonzero-prefix-frame-1", M, resealed_iv(0, b"\x00" * 7 + b"\x01" + struct.pack(">I", 1)),
        "frame 1 IV = 00..01 || u32 1 (nonzero prefix), correctly sealed under it",
        python_accepts=True)
    F0 = v2.build(b"", [k1], "neg-fl0", frame_length=0, context=BASE_CTX)
    neg("m-frame-length-0", M, F0.message(), "header frame length 0 (correct header tag), empty "
        "plaintext in one empty final frame", python_accepts=True)
    N0 = v2.build(PT, [], "neg-noedk", frame_length=128, context=BASE_CTX)
    neg("m-edk-count-0", M, N0.message(), "EDK count 0 (correct header tag)")
    dup = [(b"owner", b"a"), (b"owner", b"b"), (b"purpose", b"test")]
    neg("m-context-duplicate-key", M, v2.build(PT, [k1], "neg-dup", ctx_pairs=dup).message(),
        "context key 'owner' twice (sorted, correct header tag)")
    bad_key = [(b"a", b"1"), (b"b\xff", b"2"), (b"c", b"3")]
    neg("m-context-key-not-utf8", M, v2.build(PT, [k1], "neg-badkey", ctx_pairs=bad_key).message(),
        "context key b'b\\xff' is not UTF-8 (sorted, correct header tag)")
    bad_val = [(b"purpose", b"\xc3\x28")]
    neg("m-context-value-not-utf8", M, v2.build(PT, [k1], "neg-badval", ctx_pairs=bad_val).message(),
        "context value b'\\xc3\\x28' is not UTF-8")
    overlong = [(b"path", b"a\xc0\xafb")]
    neg("m-context-overlong-utf8", M, v2.build(PT, [k1], "neg-overlong", ctx_pairs=overlong).message(),
        "context value contains the overlong encoding C0 AF of '/'")
    surrogate = [(b"s", b"\xed\xa0\x80")]
    neg("m-context-surrogate-utf8", M, v2.build(PT, [k1], "neg-surr", ctx_pairs=surrogate).message(),
        "context value contains an encoded UTF-16 surrogate (ED A0 80)")
    unsorted = [(b"purpose", b"test"), (b"owner", b"s3crypt")]
    neg("m-context-not-sorted", M, v2.build(PT, [k1], "neg-unsorted", ctx_pairs=unsorted,
                                            wrap_aad=v2.canonical_context({"purpose": "test", "owner": "s3crypt"})
                                            ).message(),
        "context pairs not sorted by key (purpose before owner); EDK wrapped with the canonical "
        "(sorted) context as AAD, header tag over the bytes as written", python_accepts=True)
    canon = v2.canonical_context(BASE_CTX)
    neg("m-aad-length-too-long", M, v2.build(PT, [k1], "neg-aadlong", ctx_raw=canon + b"\x00\x00",
                                             wrap_aad=canon).message(),
        "AAD length covers 2 extra zero bytes after the last context pair")
    # the AAD length says 3 bytes less; the 3 bytes stay, so the next fields are misaligned
    msg = bytearray(B1.message())
    struct.pack_into(">H", msg, 35, len(canon) - 3)
    body = bytes(msg[:len(B1.body)])
    fixed = body + v2.header_auth_tag(B1.derived, body) + b"".join(B1.frames)
    neg("m-aad-length-too-short", M, fixed, "AAD length 3 less than the context's bytes (the last "
        "pair runs past it); header tag recomputed")
    cnt_hi = bytearray(canon)
    struct.pack_into(">H", cnt_hi, 0, 4)
    neg("m-context-count-too-high", M, v2.build(PT, [k1], "neg-cnthi", ctx_raw=bytes(cnt_hi),
                                                wrap_aad=canon).message(),
        "context count 4 but 3 pairs (AAD length consistent with the bytes)")
    cnt_lo = bytearray(canon)
    struct.pack_into(">H", cnt_lo, 0, 2)
    neg("m-context-count-too-low", M, v2.build(PT, [k1], "neg-cntlo", ctx_raw=bytes(cnt_lo),
                                               wrap_aad=canon).message(),
        "context count 2 but 3 pairs (AAD length consistent with the bytes)")
    neg("m-context-count-0-aad-2", M, v2.build(PT, [k1], "neg-cnt0", ctx_raw=b"\x00\x00",
                                               wrap_aad=b"").message(),
        "AAD length 2 with context count 0 (an empty context must be written as AAD length 0)",
        python_accepts=True)
    long_final = v2.build(v2.pattern(3 * 128 + 200), [k1], "neg-longfinal", context=BASE_CTX,
                          frames=[(1, PT[:128], False), (2, v2.pattern(200), True)])
    neg("m-final-frame-longer-than-frame", M, long_final.message(), "frame length 128, final frame "
        "content length 200, correctly sealed")
    for ct_byte in (0x00, 0x03):
        neg("m-content-type-%02x" % ct_byte, M,
            v2.build(PT, [k1], "neg-ct%d" % ct_byte, context=BASE_CTX, content_type=ct_byte).message(),
            "content type 0x%02x (correct header tag)" % ct_byte)
    Bpk = v2.build(PT, [k1], "neg-0478pk", context=dict(
        BASE_CTX, **{v2.PUBLIC_KEY_CONTEXT_KEY: v2.compressed_public_key_b64(v2.det_signing_key("x"))}))
    neg("m-0478-with-public-key", M, Bpk.message(), "suite 0x0478 (unsigned) but the context carries "
        "aws-crypto-public-key")
    nopk = v2.build(PT, [k1], "neg-0578nopk", suite_id=0x0578,
                    ctx_pairs=[(k.encode(), v.encode()) for k, v in sorted(BASE_CTX.items(),
                                                                           key=lambda kv: kv[0].encode())])
    neg("m-0578-without-public-key", M, nopk.message(), "suite 0x0578 (signed) but no "
        "aws-crypto-public-key in the context (footer signed anyway)")

    # ---------------- limit
    L = "limit"
    big = v2.build(v2.pattern(17), [k1], "neg-fl7f", frame_length=0x7FFFFFFF, context=BASE_CTX)
    neg("l-frame-length-7fffffff", L, big.message(), "frame length 0x7FFFFFFF (correct header tag), "
        "plaintext 17 bytes in the final frame", python_accepts=True)
    big2 = v2.build(v2.pattern(17), [k1], "neg-flff", frame_length=0xFFFFFFFF, context=BASE_CTX)
    neg("l-frame-length-ffffffff", L, big2.message(), "frame length 0xFFFFFFFF (correct header tag), "
        "plaintext 17 bytes in the final frame")
    c = sdk_keys.client()
    ct65, _ = c.encrypt(source=v2.pattern(100), frame_length=4096, algorithm=SUITES[0x0478],
                        encryption_context=dict(BASE_CTX),
                        key_provider=sdk_keys.provider_for(sdk_triplets([k1] + BULK)))
    neg("l-65-edks", L, ct65, "made by the SDK: 65 valid EDKs (k1 + 64 others), correct header tag",
        python_accepts=True)
    own65 = v2.build(PT, [k1] * 65, "neg-65own", context=BASE_CTX)
    neg("l-65-edks-same-key", L, own65.message(), "65 valid EDKs all for k1 (distinct IVs), correct "
        "header tag", python_accepts=True)

    # ---------------- unsupported
    U = "unsupported"
    for ver in (0x00, 0x01, 0x03):
        neg("u-version-%02x" % ver, U, v2.build(PT, [k1], "neg-v%d" % ver, context=BASE_CTX,
                                                 version=ver).message(),
            "version byte 0x%02x, rest a v2 message (header tag recomputed)" % ver)
    for sid, what in ((0x0999, "unknown suite"), (0x0178, "v1-style suite (AES-256-GCM HKDF-SHA256, "
                                                          "no commitment) in a v2 header"),
                      (0x0378, "v1-style suite 0x0378 (ECDSA P-384, no commitment)"),
                      (0x0014, "suite 0x0014 (AES-128-GCM, no KDF)"), (0x0000, "suite 0x0000")):
        neg("u-suite-%04x" % sid, U, v2.build(PT, [k1], "neg-s%x" % sid, context=BASE_CTX,
                                              header_suite_id=sid).message(),
            "%s: suite id 0x%04x, rest a v2 0x0478-style message keyed with that id" % (what, sid))
    # non-framed (content type 0x01): a well-formed single-block body
    NF = v2.build(b"", [k1], "neg-nonframed", context=BASE_CTX, content_type=1, frame_length=0,
                  frames=[])
    nf_pt = v2.pattern(300)
    iv = v2.frame_iv(1)
    aad = NF.message_id + v2.SINGLE_BLOCK_AAD + struct.pack(">IQ", 1, len(nf_pt))
    sealed = AESGCM(NF.derived).encrypt(iv, nf_pt, aad)
    nf_msg = NF.header + iv + struct.pack(">Q", len(nf_pt)) + sealed
    neg("u-non-framed", U, nf_msg, "content type 0x01 (non-framed), frame length 0, a correct "
        "single-block body with 300 bytes", python_accepts=True)

    # ---------------- authentication
    A = "authentication"
    neg("a-flip-frame-1-ciphertext", A, flip(m1, H1 + 4 + 12 + 5), "bit flipped in frame 1's ciphertext")
    neg("a-flip-frame-1-tag", A, flip(m1, H1 + 159), "bit flipped in frame 1's tag")
    neg("a-flip-frame-3-ciphertext", A, flip(m1, H1 + 2 * 160 + 100), "bit flipped in frame 3's ciphertext")
    neg("a-flip-final-ciphertext", A, flip(m1, len(m1) - 20), "bit flipped in the final frame's "
        "ciphertext")
    neg("a-flip-final-tag", A, flip(m1, len(m1) - 1), "bit flipped in the final frame's tag")
    neg("a-flip-empty-final-tag", A, flip(E.message(), len(E.message()) - 1), "empty plaintext: bit "
        "flipped in the tag of the empty final frame")
    neg("a-flip-header-tag", A, flip(m1, len(B1.body) + 3), "bit flipped in the header auth tag")
    neg("a-flip-message-id", A, flip(m1, 10), "bit flipped in the message id (changes the "
        "commitment and key derivation)")
    neg("a-flip-commitment", A, flip(m1, off1["commit"] + 7), "bit flipped in the commitment value")
    neg("a-zero-commitment", A, m1[:off1["commit"]] + b"\x00" * 32 + m1[off1["commit"] + 32:],
        "commitment replaced by 32 zero bytes")
    neg("a-flip-frame-length-field-resealed-header", A,
        (lambda b: b + v2.header_auth_tag(B1.derived, flip(b, off1["frame_length"] + 3, 0x80)) +
         b"".join(B1.frames))(B1.body),
        "header tag computed over a header with a different frame length than the one written")
    other = v2.build(PT, [k1], "neg-other-0478", frame_length=128, context=BASE_CTX)
    neg("a-frame-from-other-message", A, B1.header + f1 + other.frames[1] + f3 + fin,
        "frame 2 taken from another message under the same wrapping key (same seq, other data key)")
    neg("a-final-frame-from-other-message", A, B1.header + f1 + f2 + f3 + other.frames[3],
        "final frame taken from another message under the same wrapping key")
    seq, chunk, _ = B1.plan[3]
    as_regular = v2.seal_frame(B1.derived, B1.message_id, seq, chunk, False)
    # re-frame the regular-sealed bytes as a final frame
    fin_wrong = struct.pack(">II", 0xFFFFFFFF, seq) + v2.frame_iv(seq) + struct.pack(">I", len(chunk)) + \
        as_regular[4 + 12:]
    neg("a-final-frame-sealed-as-regular", A, B1.header + f1 + f2 + f3 + fin_wrong,
        "final frame's tag computed with the regular-frame AAD string")
    seq, chunk, _ = B1.plan[1]
    as_final = v2.seal_frame(B1.derived, B1.message_id, seq, chunk, True)
    f2_wrong = struct.pack(">I", seq) + v2.frame_iv(seq) + as_final[4 + 4 + 12 + 4:]
    neg("a-regular-frame-sealed-as-final", A, B1.header + f1 + f2_wrong + f3 + fin,
        "frame 2's tag computed with the final-frame AAD string")
    H2 = len(B2.header)
    neg("a-0578-flip-signature", A, flip(m2, len(m2) - 30), "suite 0x0578, bit flipped inside the "
        "signature")
    neg("a-0578-flip-signature-last-byte", A, flip(m2, len(m2) - 1), "suite 0x0578, bit flipped in "
        "the signature's last byte")
    neg("a-0578-flip-frame-ciphertext", A, flip(m2, H2 + 30), "suite 0x0578, bit flipped in frame 1's "
        "ciphertext (frame tag fails before the signature is reached)")
    stranger = v2.det_signing_key("stranger")
    neg("a-0578-signature-other-key", A, B2.assemble(footer=(lambda s: struct.pack(">H", len(s)) + s)(
        v2.ecdsa_sign(stranger, sig_body))), "suite 0x0578, footer is a valid signature over the "
        "message by another key; header keeps the original public key")
    swapped = v2.build(PT, [k1], "neg-base-0578-pkswap", suite_id=0x0578, frame_length=128,
                       context=BASE_CTX, signing_key=stranger)
    sw_body = swapped.header + b"".join(swapped.frames)
    sig = v2.ecdsa_sign(B2.signing_key, sw_body)
    neg("a-0578-public-key-swapped", A, sw_body + struct.pack(">H", len(sig)) + sig,
        "suite 0x0578, header (valid tag, valid EDK) names public key A, footer signed by key B")
    sig_nonder = b"\x30" + b"\x00" * 101
    neg("a-0578-signature-not-der", A, sig_body + struct.pack(">H", len(sig_nonder)) + sig_nonder,
        "suite 0x0578, footer of the right size but not a DER signature")

    # ---------------- no-key
    NK = "no-key"
    neg("n-wrong-key-bytes", NK, m1, "decryptor has key-1 under the right namespace with other bytes",
        keys=["k1-wrong-bytes"])
    neg("n-unknown-name", NK, m1, "decryptor only has s3crypt-test/key-9", keys=["k9-unknown-name"])
    neg("n-other-namespace", NK, m1, "decryptor has k1's bytes and name under another namespace",
        keys=["k1-other-namespace"])
    neg("n-0578-wrong-key-bytes", NK, m2, "suite 0x0578, decryptor has key-1 with other bytes",
        keys=["k1-wrong-bytes"])
    neg("n-flip-edk-ciphertext", NK, flip(m1, off1["edk_ct"] + 3), "bit flipped in the wrapped data "
        "key (EDK ciphertext)")
    neg("n-flip-edk-tag", NK, flip(m1, off1["edk_ct_end"] - 1), "bit flipped in the EDK's GCM tag")
    neg("n-flip-edk-iv", NK, flip(m1, off1["edk_info_end"] - 1), "bit flipped in the EDK IV (end "
        "of provider info)")
    info = m1[off1["edk_info"]:off1["edk_info_end"]]
    name_len = len(k1.name.encode())
    tag96 = info[:name_len] + struct.pack(">I", 96) + info[name_len + 4:]
    body96 = B1.body[:off1["edk_info"]] + tag96 + B1.body[off1["edk_info_end"]:]
    neg("n-edk-tag-length-96", NK, body96 + v2.header_auth_tag(B1.derived, body96) + b"".join(B1.frames),
        "EDK provider info declares a 96-bit tag (only 128 is valid), so no keyring may try it")
    changed = dict(BASE_CTX, purpose="tampered")
    ctxch = v2.build(PT, [k1], "neg-ctxch", context=changed, wrap_aad=v2.canonical_context(BASE_CTX))
    neg("n-context-value-changed", NK, ctxch.message(), "context value changed after wrapping (header "
        "tag recomputed): the raw AES EDK's AAD is the context, so the unwrap fails")
    multi = v2.build(PT, [k1, KEYS["k2"], k3], "neg-multi", context=BASE_CTX)
    neg("n-multikey-none-matching", NK, multi.message(), "3 EDKs (k1, k2, k3); decryptor has an "
        "unknown name and wrong bytes for key-1", keys=["k9-unknown-name", "k1-wrong-bytes"])

    # ---------------- context
    C = "context"
    ok = v2.build(v2.pattern(1000), [k1], "neg-ctx-base", context=BASE_CTX)
    okm = ok.message()
    neg("c-value-differs", C, okm, "requires purpose=prod, message has purpose=test",
        required={"purpose": "prod"})
    neg("c-key-missing", C, okm, "requires tenant=a, message has no tenant", required={"tenant": "a"})
    neg("c-key-case-differs", C, okm, "requires Purpose=test (message has purpose=test)",
        required={"Purpose": "test"})
    neg("c-one-of-two-wrong", C, okm, "requires purpose=test and owner=someone-else",
        required={"purpose": "test", "owner": "someone-else"})
    nfd = unicodedata.normalize("NFD", BASE_CTX["région"])
    assert nfd != BASE_CTX["région"]
    neg("c-unicode-normalization", C, okm, "requires région in NFD form; message has the NFC bytes "
        "(comparison is byte-exact)", required={"région": nfd})
    neg("c-empty-context-message", C, v2.build(v2.pattern(1000), [k1], "neg-ctx-empty").message(),
        "message with an empty context; decryptor requires purpose=test", required={"purpose": "test"})
    sdk_ct, _ = sdk_keys.client().encrypt(source=v2.pattern(1000), frame_length=4096,
                                          algorithm=SUITES[0x0578], encryption_context=dict(BASE_CTX),
                                          key_provider=sdk_keys.provider_for(sdk_triplets([k1])))
    neg("c-0578-sdk-value-differs", C, sdk_ct, "made by the SDK, suite 0x0578; requires owner=other",
        required={"owner": "other"})


# ----------------------------------------------------------------------------- checks


def self_check_builder():
    """esdk_v2-built messages must decrypt with the official SDK."""
    c = sdk_keys.client()
    n_ok = 0
    for suite in (0x0478, 0x0578):
        for fl in (128, 1000, 4096):
            for n in (0, 1, fl - 1, fl, fl + 1, 3 * fl + 17):
                for ctx in (CTX_EMPTY, CTX_MAIN, CTX_SORT):
                    keys = [KEYS["k1"], KEYS["k3"], KEYS["k4"]]
                    b = v2.build(v2.pattern(n), keys, "selfcheck-%x-%d-%d-%d" % (suite, fl, n, len(ctx)),
                                 suite_id=suite, frame_length=fl, context=ctx)
                    m = b.message()
                    for k in keys:
                        got, hdr = c.decrypt(source=m, key_provider=sdk_keys.provider_for(sdk_triplets([k])))
                        assert got == v2.pattern(n)
                        assert dict(hdr.encryption_context) == b.context
                    n_ok += 1
    return n_ok


def check_negatives(out):
    for e in out.vectors:
        if e["expect"] != "error":
            continue
        data = out.files[e["ciphertext"]]
        keys = [KEYS[k] for k in e["keys"]]
        try:
            v2.decrypt(data, keys, e.get("required_context"))
        except v2.VectorError as err:
            assert err.cls == e["error"], (e["id"], str(err))
        else:
            raise AssertionError("%s: strict reader accepted it" % e["id"])
        try:
            pt, hdr = sdk_decrypt(data, e["keys"])
            req = e.get("required_context") or {}
            sdk_ok = all(hdr.encryption_context.get(k) == v for k, v in req.items())
        except Exception:  # noqa: BLE001
            sdk_ok = False
        assert sdk_ok == bool(e.get("python_accepts")), (e["id"], sdk_ok)


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, ".."))
    print("aws-encryption-sdk", sdk_keys.sdk_version())
    if sdk_keys.sdk_version() != PINNED_SDK:
        print("WARNING: requirements.txt pins aws-encryption-sdk==%s" % PINNED_SDK)
    print("builder self-check: %d esdk_v2 messages decrypted by the SDK" % self_check_builder())
    out = Out(root)
    make_positives(out)
    npos = len(out.vectors)
    make_negatives(out)
    check_negatives(out)
    manifest = {
        "generator": "aws-encryption-sdk-python %s" % sdk_keys.sdk_version(),
        "keys": {kid: {"namespace": k.namespace, "name": k.name, "key_hex": k.key.hex()}
                 for kid, k in KEYS.items()},
        "vectors": out.vectors,
    }
    with open(os.path.join(root, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, ensure_ascii=False)
        f.write("\n")
    classes = {}
    for e in out.vectors[npos:]:
        classes[e["error"]] = classes.get(e["error"], 0) + 1
    total = sum(len(d) for d in out.files.values())
    print("positive vectors: %d (%d files)" % (npos, sum(1 for r in out.files if r.startswith("positive/"))))
    print("negative vectors: %d %s" % (len(out.vectors) - npos, json.dumps(classes, sort_keys=True)))
    print("python_accepts: %d" % sum(1 for e in out.vectors if e.get("python_accepts")))
    print("ciphertext bytes: %d" % total)
    for vid, n, fl, seq, ln in FINAL_FRAME_FORMS[:4]:
        print("exact multiple: %s plaintext %d frame %d -> final frame seq %d with %d bytes" % (vid, n, fl, seq, ln))
    print("exact-multiple cases checked: %d, all with an empty final frame" % len(FINAL_FRAME_FORMS))


if __name__ == "__main__":
    main()
