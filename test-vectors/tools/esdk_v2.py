"""Small independent implementation of the AWS Encryption SDK message format v2 (framed).

Written for s3crypt's test vectors. It is used for two things:

* building *negative* vectors: messages that are valid in every respect but one, so that only the
  intended check of a reader fires (for example a header with frame length 0 but a correct header
  auth tag);
* a strict *reference reader* (`decrypt`) that classifies failures into the error classes used by
  the manifest (truncated, malformed, limit, unsupported, authentication, no-key, context).  The
  generator runs every vector through it and asserts the expected outcome, and it also decrypts the
  SDK-made positives, so this reader is cross-checked against the official SDK in both directions.

Only `cryptography` is needed.  All integers are big-endian.
"""

import base64
import hashlib
import hmac
import struct

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SUITE_COMMIT = 0x0478  # AES_256_GCM_HKDF_SHA512_COMMIT_KEY
SUITE_COMMIT_ECDSA = 0x0578  # AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384
SUPPORTED_SUITES = (SUITE_COMMIT, SUITE_COMMIT_ECDSA)
PUBLIC_KEY_CONTEXT_KEY = "aws-crypto-public-key"

FRAME_AAD = b"AWSKMSEncryptionClient Frame"
FINAL_FRAME_AAD = b"AWSKMSEncryptionClient Final Frame"
SINGLE_BLOCK_AAD = b"AWSKMSEncryptionClient Single Block"
FINAL_MARKER = 0xFFFFFFFF

# Limits assumed for the reference reader.  s3crypt's exact read limit is its own business; the
# vectors only assume it lies between 1 MiB (largest frame in the positives) and 2^31-1.
MAX_EDKS = 64
MAX_FRAME_LENGTH = 64 * 1024 * 1024


def pattern(n):
    """The plaintext PATTERN of the manifest: byte i = (i * 7 + 3) mod 251."""
    block = bytes((i * 7 + 3) % 251 for i in range(251))
    reps, rem = divmod(n, 251)
    return block * reps + block[:rem]


def u16(n):
    return struct.pack(">H", n)


def u32(n):
    return struct.pack(">I", n)


def u64(n):
    return struct.pack(">Q", n)


# --------------------------------------------------------------------------- crypto primitives


def hkdf_sha512(ikm, salt, info, length=32):
    return HKDF(algorithm=hashes.SHA512(), length=length, salt=salt, info=info).derive(ikm)


def derive_key(data_key, message_id, suite_id):
    return hkdf_sha512(data_key, message_id, u16(suite_id) + b"DERIVEKEY")


def commitment(data_key, message_id):
    return hkdf_sha512(data_key, message_id, b"COMMITKEY")


def frame_iv(seq):
    return b"\x00" * 8 + u32(seq)


def frame_aad(message_id, seq, length, final):
    return message_id + (FINAL_FRAME_AAD if final else FRAME_AAD) + u32(seq) + u64(length)


def det_bytes(label, n):
    """Deterministic pseudo-random bytes (SHA-256 in counter mode) for fixed keys, IVs, ids."""
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(label.encode() + b"/" + str(i).encode()).digest()
        i += 1
    return out[:n]


def det_signing_key(label):
    order = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973
    d = int.from_bytes(det_bytes("ecdsa:" + label, 56), "big") % (order - 1) + 1
    return ec.derive_private_key(d, ec.SECP384R1())


def compressed_public_key_b64(private_key):
    point = private_key.public_key().public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
    return base64.b64encode(point).decode("ascii")


def ecdsa_sign(private_key, data):
    """DER ECDSA P-384/SHA-384 signature: deterministic (RFC 6979) where the installed
    cryptography/OpenSSL support it, else with a random nonce.  Verifiers cannot tell the two apart."""
    try:
        return private_key.sign(data, ec.ECDSA(hashes.SHA384(), deterministic_signing=True))
    except Exception:  # noqa: BLE001 - older cryptography (TypeError) or OpenSSL < 3.2
        return private_key.sign(data, ec.ECDSA(hashes.SHA384()))


# --------------------------------------------------------------------------- serialization


def serialize_pairs(pairs):
    """Serialize (key bytes, value bytes) pairs in the given order (no sorting, no checks).
    Returns b"" for an empty list (an empty context is written as AAD length 0)."""
    if not pairs:
        return b""
    out = u16(len(pairs))
    for k, v in pairs:
        out += u16(len(k)) + k + u16(len(v)) + v
    return out


def canonical_context(ctx):
    """Canonical serialization of a str->str dict: sorted by UTF-8 key bytes."""
    pairs = sorted((k.encode("utf-8"), v.encode("utf-8")) for k, v in ctx.items())
    return serialize_pairs(pairs)


class RawAesKey:
    def __init__(self, namespace, name, key):
        self.namespace = namespace
        self.name = name
        self.key = key

    @classmethod
    def from_manifest(cls, entry):
        return cls(entry["namespace"], entry["name"], bytes.fromhex(entry["key_hex"]))


def serialize_edk(provider_id, provider_info, ciphertext):
    return u16(len(provider_id)) + provider_id + u16(len(provider_info)) + provider_info + u16(len(ciphertext)) + ciphertext


def wrap_data_key(raw_key, data_key, wrap_aad, iv, tag_bits=128):
    """Raw AES keyring EDK: (provider id, provider info, ciphertext)."""
    sealed = AESGCM(raw_key.key).encrypt(iv, data_key, wrap_aad)
    info = raw_key.name.encode("utf-8") + u32(tag_bits) + u32(len(iv)) + iv
    return (raw_key.namespace.encode("utf-8"), info, sealed)


def header_body(suite_id, message_id, ctx_bytes, edks, frame_length, commit, version=2,
                content_type=2, aad_len=None, edk_count=None):
    """Header bytes before the auth tag.  `edks` are already serialized EDKs (bytes)."""
    out = bytes([version]) + u16(suite_id) + message_id
    out += u16(len(ctx_bytes) if aad_len is None else aad_len) + ctx_bytes
    out += u16(len(edks) if edk_count is None else edk_count) + b"".join(edks)
    out += bytes([content_type]) + u32(frame_length) + commit
    return out


def header_auth_tag(derived_key, body):
    return AESGCM(derived_key).encrypt(b"\x00" * 12, b"", body)  # == the 16-byte tag


def seal_frame(derived_key, message_id, seq, chunk, final, iv=None, length_field=None):
    iv = frame_iv(seq) if iv is None else iv
    sealed = AESGCM(derived_key).encrypt(iv, chunk, frame_aad(message_id, seq, len(chunk), final))
    if final:
        n = len(chunk) if length_field is None else length_field
        return u32(FINAL_MARKER) + u32(seq) + iv + u32(n) + sealed
    return u32(seq) + iv + sealed


def split_frames(plaintext, frame_length):
    """(seq, chunk, final) as the Python SDK writes them: every full frame_length chunk is a regular
    frame, then a final frame with the remainder, which is EMPTY when the plaintext length is an
    exact multiple of frame_length (including an empty plaintext)."""
    out = []
    seq = 1
    pos = 0
    while len(plaintext) - pos >= frame_length > 0:
        out.append((seq, plaintext[pos:pos + frame_length], False))
        pos += frame_length
        seq += 1
    out.append((seq, plaintext[pos:], True))
    return out


class Built:
    """A message built by `build`, with its pieces kept for mutation."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    @property
    def header(self):
        return self.body + self.tag

    def assemble(self, frames=None, footer=None):
        frames = self.frames if frames is None else frames
        data = self.header + b"".join(frames)
        if self.signing_key is not None:
            if footer is None:
                sig = ecdsa_sign(self.signing_key, data)
                footer = u16(len(sig)) + sig
            data += footer
        return data

    def message(self):
        return self.assemble()


def build(plaintext, keys, label, suite_id=SUITE_COMMIT, frame_length=128, context=None,
          ctx_pairs=None, wrap_aad=None, version=2, content_type=2, aad_len=None, edk_count=None,
          extra_edks=(), header_suite_id=None, signing_key=None, frames=None, ctx_raw=None):
    """Build a message with deterministic data key, message id and EDK IVs derived from `label`.

    context     str->str dict; serialized canonically unless ctx_pairs (raw byte pairs, written
                in that order) is given.  For 0x0578 the public key pair is added to `context`.
    wrap_aad    AAD for wrapping the data key (default: canonical serialization of the context,
                as the SDKs do on decrypt: they parse the context into a map and re-serialize it).
    frames      optional list of (seq, chunk, final) overriding split_frames().
    ctx_raw     optional raw bytes for the whole context field (overrides the serialization).
    """
    data_key = det_bytes(label + ":dk", 32)
    message_id = det_bytes(label + ":mid", 32)
    context = dict(context or {})
    if suite_id == SUITE_COMMIT_ECDSA and signing_key is None:
        signing_key = det_signing_key(label)
    if signing_key is not None and ctx_pairs is None:
        context[PUBLIC_KEY_CONTEXT_KEY] = compressed_public_key_b64(signing_key)
    ctx_bytes = canonical_context(context) if ctx_pairs is None else serialize_pairs(ctx_pairs)
    if ctx_raw is not None:
        ctx_bytes = ctx_raw
    if wrap_aad is None:
        wrap_aad = canonical_context(context) if ctx_pairs is None else ctx_bytes
    edks = []
    for i, k in enumerate(keys):
        iv = det_bytes("%s:edkiv:%d" % (label, i), 12)
        edks.append(serialize_edk(*wrap_data_key(k, data_key, wrap_aad, iv)))
    edks.extend(extra_edks)
    kdf_suite = suite_id if header_suite_id is None else header_suite_id
    derived = derive_key(data_key, message_id, kdf_suite)
    commit = commitment(data_key, message_id)
    body = header_body(kdf_suite, message_id, ctx_bytes, edks, frame_length, commit, version=version,
                       content_type=content_type, aad_len=aad_len, edk_count=edk_count)
    tag = header_auth_tag(derived, body)
    plan = split_frames(plaintext, frame_length) if frames is None else frames
    sealed = [seal_frame(derived, message_id, seq, chunk, final) for seq, chunk, final in plan]
    return Built(data_key=data_key, message_id=message_id, derived=derived, commit=commit, body=body,
                 tag=tag, frames=sealed, plan=plan, signing_key=signing_key, context=context,
                 ctx_bytes=ctx_bytes, wrap_aad=wrap_aad, suite_id=kdf_suite, frame_length=frame_length)


# --------------------------------------------------------------------------- strict reader


class VectorError(Exception):
    def __init__(self, cls, msg):
        super().__init__("%s: %s" % (cls, msg))
        self.cls = cls


class _Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n, what):
        if self.pos + n > len(self.data):
            raise VectorError("truncated", "message ends inside %s" % what)
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self, what):
        return self.take(1, what)[0]

    def u16(self, what):
        return struct.unpack(">H", self.take(2, what))[0]

    def u32(self, what):
        return struct.unpack(">I", self.take(4, what))[0]


def parse_context(raw):
    if raw == b"":
        return {}, []
    r = _Reader(raw)
    try:
        count = r.u16("context count")
        if count == 0:
            raise VectorError("malformed", "AAD length is non-zero but the context has no pairs")
        pairs = []
        for _ in range(count):
            k = r.take(r.u16("context key length"), "context key")
            v = r.take(r.u16("context value length"), "context value")
            pairs.append((k, v))
    except VectorError as e:
        if e.cls == "truncated":
            raise VectorError("malformed", "AAD length inconsistent with context bytes (%s)" % e)
        raise
    if r.pos != len(raw):
        raise VectorError("malformed", "AAD length inconsistent with context bytes (extra bytes)")
    ctx = {}
    for k, v in pairs:
        try:
            ks, vs = k.decode("utf-8"), v.decode("utf-8")
        except UnicodeDecodeError:
            raise VectorError("malformed", "context key or value is not UTF-8")
        if ks in ctx:
            raise VectorError("malformed", "duplicate context key %r" % ks)
        ctx[ks] = vs
    keys = [k for k, _ in pairs]
    if keys != sorted(keys):
        raise VectorError("malformed", "context not sorted by key bytes")
    return ctx, pairs


def parse_header(data):
    """Parse and structurally check the header.  Returns (dict, reader positioned after the tag)."""
    r = _Reader(data)
    version = r.u8("version")
    if version != 2:
        raise VectorError("unsupported", "version 0x%02x" % version)
    suite = r.u16("suite id")
    if suite not in SUPPORTED_SUITES:
        raise VectorError("unsupported", "suite 0x%04x" % suite)
    message_id = r.take(32, "message id")
    aad_len = r.u16("AAD length")
    ctx_raw = r.take(aad_len, "encryption context")
    ctx, pairs = parse_context(ctx_raw)
    edk_count = r.u16("EDK count")
    if edk_count == 0:
        raise VectorError("malformed", "EDK count 0")
    if edk_count > MAX_EDKS:
        raise VectorError("limit", "%d EDKs > %d" % (edk_count, MAX_EDKS))
    edks = []
    for i in range(edk_count):
        pid = r.take(r.u16("EDK provider id length"), "EDK provider id")
        info = r.take(r.u16("EDK provider info length"), "EDK provider info")
        ct = r.take(r.u16("EDK ciphertext length"), "EDK ciphertext")
        edks.append((pid, info, ct))
    content_type = r.u8("content type")
    if content_type == 1:
        raise VectorError("unsupported", "non-framed content type 0x01")
    if content_type != 2:
        raise VectorError("malformed", "content type 0x%02x" % content_type)
    frame_length = r.u32("frame length")
    if frame_length == 0:
        raise VectorError("malformed", "frame length 0")
    if frame_length > MAX_FRAME_LENGTH:
        raise VectorError("limit", "frame length %d above the read limit" % frame_length)
    commit = r.take(32, "suite data")
    body_end = r.pos
    tag = r.take(16, "header auth tag")
    return dict(version=version, suite=suite, message_id=message_id, context=ctx, pairs=pairs,
                edks=edks, frame_length=frame_length, commit=commit, body=data[:body_end],
                tag=tag), r


def unwrap(edks, keys, ctx):
    wrap_aad = canonical_context(ctx)
    for pid, info, ct in edks:
        for k in keys:
            name = k.name.encode("utf-8")
            if pid != k.namespace.encode("utf-8"):
                continue
            if len(info) != len(name) + 20 or not info.startswith(name):
                continue
            tag_bits, iv_len = struct.unpack(">II", info[len(name):len(name) + 8])
            if tag_bits != 128 or iv_len != 12 or len(ct) != 48:
                continue
            try:
                return AESGCM(k.key).decrypt(info[-12:], ct, wrap_aad)
            except InvalidTag:
                continue
    raise VectorError("no-key", "no configured key unwraps any EDK")


def decrypt(data, keys, required_context=None):
    """Strict reference decryption.  Returns (plaintext, header dict) or raises VectorError."""
    h, r = parse_header(data)
    for k, v in (required_context or {}).items():
        if h["context"].get(k) != v:
            raise VectorError("context", "required pair %r=%r not in message" % (k, v))
    signed = h["suite"] == SUITE_COMMIT_ECDSA
    public_key = None
    if not signed and PUBLIC_KEY_CONTEXT_KEY in h["context"]:
        raise VectorError("malformed", "unsigned suite with %s in the context" % PUBLIC_KEY_CONTEXT_KEY)
    if signed:
        if PUBLIC_KEY_CONTEXT_KEY not in h["context"]:
            raise VectorError("malformed", "signed suite without public key in context")
        point = base64.b64decode(h["context"][PUBLIC_KEY_CONTEXT_KEY])
        public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP384R1(), point)
    data_key = unwrap(h["edks"], keys, h["context"])
    if not hmac.compare_digest(commitment(data_key, h["message_id"]), h["commit"]):
        raise VectorError("authentication", "commitment mismatch")
    derived = derive_key(data_key, h["message_id"], h["suite"])
    try:
        AESGCM(derived).decrypt(b"\x00" * 12, h["tag"], h["body"])
    except InvalidTag:
        raise VectorError("authentication", "header auth tag")
    fl = h["frame_length"]
    out = []
    expected = 1
    frames = []
    while True:
        seq = r.u32("frame sequence number")
        final = seq == FINAL_MARKER
        if final:
            seq = r.u32("final frame sequence number")
        if seq != expected:
            raise VectorError("malformed", "frame sequence %d at position %d" % (seq, expected))
        iv = r.take(12, "frame IV")
        if iv != frame_iv(seq):
            raise VectorError("malformed", "frame %d IV is not 8 zero bytes || seq" % seq)
        n = fl
        if final:
            n = r.u32("final frame content length")
            if n > fl:
                raise VectorError("malformed", "final frame length %d > frame length %d" % (n, fl))
        ct = r.take(n + 16, "frame %d" % seq)
        try:
            out.append(AESGCM(derived).decrypt(iv, ct, frame_aad(h["message_id"], seq, n, final)))
        except InvalidTag:
            raise VectorError("authentication", "frame %d tag" % seq)
        frames.append((seq, n, final))
        if final:
            break
        expected += 1
    if signed:
        signed_end = r.pos
        sig = r.take(r.u16("footer length"), "footer signature")
        try:
            public_key.verify(sig, data[:signed_end], ec.ECDSA(hashes.SHA384()))
        except (InvalidSignature, ValueError):
            raise VectorError("authentication", "footer signature")
    if r.pos != len(data):
        raise VectorError("malformed", "%d bytes after the end of the message" % (len(data) - r.pos))
    h["frames"] = frames
    return b"".join(out), h
