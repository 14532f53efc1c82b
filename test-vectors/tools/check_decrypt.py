#!/usr/bin/env python3
"""Decrypt a directory of test vectors with the official AWS Encryption SDK for Python.

    python test-vectors/tools/check_decrypt.py DIR

DIR/manifest.json uses the schema in test-vectors/README.md (the same one generate.py writes; the
reverse direction is written by s3crypt's Rust tests).  For every vector:

  expect "ok"     decrypt with the listed raw AES keys; the plaintext must equal PATTERN of
                  plaintext_len bytes; every pair of "required_context" and of "context" must be
                  in the message's encryption context; "suite" and "frame_length", when given, must
                  match the header.
  expect "error"  the SDK must reject the message (any exception), or, for a vector with
                  "required_context", the message must lack one of the required pairs (the legacy
                  SDK API has no required-context option, so this checker compares the pairs).
                  Vectors marked "python_accepts": true are s3crypt-specific rejections the SDK
                  does not make; they are skipped (the line says whether the SDK accepted them).

Prints one line per vector and a summary line "N passed, N failed, N skipped"; exits 1 if any
vector failed, 2 on a usage or manifest error.
"""

import json
import logging
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import sdk_keys  # noqa: E402

# The SDK logs a traceback ("Error on closing") for every rejected message; keep the output short.
logging.getLogger("aws_encryption_sdk").disabled = True
logging.getLogger("aws_encryption_sdk.streaming_client").disabled = True


def pattern(n):
    block = bytes((i * 7 + 3) % 251 for i in range(251))
    reps, rem = divmod(n, 251)
    return block * reps + block[:rem]


def load_keys(manifest):
    keys = {}
    for kid, k in manifest.get("keys", {}).items():
        key = bytes.fromhex(k["key_hex"])
        if len(key) != 32:
            raise ValueError("key %s: expected 32 bytes, got %d" % (kid, len(key)))
        keys[kid] = (k["namespace"], k["name"], key)
    return keys


def sdk_decrypt(data, triplets):
    """Decrypt with all keys in one provider, then with each key alone.

    The legacy master key provider stops at the first EDK whose unwrap fails (for example a key
    with the right namespace and name but other bytes) instead of trying the next EDK as the spec's
    raw AES keyring does, and one provider cannot hold two keys with the same namespace/name;
    trying each key alone covers both cases.  Returns (plaintext, header); raises the last error."""
    c = sdk_keys.client()
    attempts = []
    if len({(ns, name) for ns, name, _ in triplets}) == len(triplets):
        attempts.append(triplets)
    if len(triplets) > 1 or not attempts:
        attempts.extend([t] for t in triplets)
    err = None
    for ts in attempts:
        try:
            return c.decrypt(source=data, key_provider=sdk_keys.provider_for(ts))
        except Exception as e:  # noqa: BLE001 - any rejection counts
            err = e
    raise err if err is not None else ValueError("no keys listed")


def missing_pairs(expected, actual):
    return {k: v for k, v in (expected or {}).items() if actual.get(k) != v}


def check(vec, root, keys):
    """Returns (status, detail) with status PASS, FAIL or SKIP."""
    try:
        with open(os.path.join(root, vec["ciphertext"]), "rb") as f:
            data = f.read()
    except OSError as e:
        return "FAIL", "cannot read ciphertext: %s" % e
    unknown = [k for k in vec.get("keys", []) if k not in keys]
    if unknown:
        return "FAIL", "unknown key ids %s" % unknown
    triplets = [keys[k] for k in vec.get("keys", [])]
    required = vec.get("required_context") or {}
    expect = vec.get("expect")

    if expect == "ok":
        try:
            pt, header = sdk_decrypt(data, triplets)
        except Exception as e:  # noqa: BLE001
            return "FAIL", "SDK rejected it: %s: %s" % (type(e).__name__, e)
        n = vec.get("plaintext_len")
        if n is None:
            return "FAIL", "no plaintext_len"
        if len(pt) != n:
            return "FAIL", "plaintext length %d, expected %d" % (len(pt), n)
        if pt != pattern(n):
            return "FAIL", "plaintext differs from PATTERN"
        ctx = dict(header.encryption_context)
        miss = missing_pairs(required, ctx)
        if miss:
            return "FAIL", "required context pairs missing: %r" % miss
        miss = missing_pairs(vec.get("context"), ctx)
        if miss:
            return "FAIL", "context pairs missing: %r" % miss
        if "suite" in vec and int(str(vec["suite"]), 16) != header.algorithm.algorithm_id:
            return "FAIL", "suite 0x%04x in header, manifest says %s" % (header.algorithm.algorithm_id, vec["suite"])
        if "frame_length" in vec and vec["frame_length"] != header.frame_length:
            return "FAIL", "frame length %d in header, manifest says %s" % (header.frame_length, vec["frame_length"])
        return "PASS", "decrypted %d bytes" % n

    if expect == "error":
        try:
            _, header = sdk_decrypt(data, triplets)
        except Exception as e:  # noqa: BLE001
            outcome = "rejected: %s" % type(e).__name__
            accepted = False
        else:
            miss = missing_pairs(required, dict(header.encryption_context))
            accepted = not miss
            outcome = "accepted" if accepted else "rejected: required context %r not in message" % miss
        if vec.get("python_accepts"):
            return "SKIP", "python_accepts (s3crypt-specific %s); SDK %s" % (vec.get("error"), outcome)
        if accepted:
            return "FAIL", "expected %s error, but the SDK decrypted it" % vec.get("error")
        return "PASS", "expected %s, SDK %s" % (vec.get("error"), outcome)

    return "FAIL", "unknown expect %r" % expect


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    root = argv[1]
    try:
        with open(os.path.join(root, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        keys = load_keys(manifest)
        vectors = manifest["vectors"]
    except (OSError, ValueError, KeyError) as e:
        print("cannot load %s/manifest.json: %s" % (root, e), file=sys.stderr)
        return 2
    print("manifest generator: %s; checking with aws-encryption-sdk-python %s"
          % (manifest.get("generator", "?"), sdk_keys.sdk_version()))
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    seen = set()
    for vec in vectors:
        vid = vec.get("id", "?")
        if vid in seen:
            status, detail = "FAIL", "duplicate id"
        else:
            seen.add(vid)
            try:
                status, detail = check(vec, root, keys)
            except Exception as e:  # noqa: BLE001 - a broken entry fails, the run goes on
                status, detail = "FAIL", "checker error: %s: %s" % (type(e).__name__, e)
        counts[status] += 1
        print("%s %s: %s" % (status, vid, detail), flush=True)
    print("%d passed, %d failed, %d skipped" % (counts["PASS"], counts["FAIL"], counts["SKIP"]))
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
