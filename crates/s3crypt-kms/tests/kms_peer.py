"""The official AWS Encryption SDK for Python as the KMS interop peer of s3crypt's KMS keyring.

Usage: kms_peer.py JOBS.json  (prints one JSON result per job, as a list, on stdout)

Each job is an object:
  {"op": "encrypt", "plaintext": PATH, "out": PATH, "key_ids": [ARN, ...],
   "context": {...}, "suite": "0x0478" | "0x0578", "frame_length": N}
  {"op": "decrypt", "ciphertext": PATH, "out": PATH, "key_ids": [ID, ...]}
The result is {"ok": true, ...} or {"ok": false, "error": "..."}; a decrypt result carries the
message's encryption context, suite and encrypted data keys (provider id and provider info).

KMS is reached through the standard botocore environment: the test sets AWS_ENDPOINT_URL (a local
moto server), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_DEFAULT_REGION. Only the legacy
master key providers are used (StrictAwsKmsMasterKeyProvider), which need no
aws-cryptographic-material-providers.
"""

import json
import sys

import aws_encryption_sdk
from aws_encryption_sdk import CommitmentPolicy, StrictAwsKmsMasterKeyProvider
from aws_encryption_sdk.identifiers import Algorithm

SUITES = {
    "0x0478": Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
    "0x0578": Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384,
}

CLIENT = aws_encryption_sdk.EncryptionSDKClient(
    commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
)


def encrypt(job):
    with open(job["plaintext"], "rb") as f:
        plaintext = f.read()
    provider = StrictAwsKmsMasterKeyProvider(key_ids=job["key_ids"])
    ciphertext, _header = CLIENT.encrypt(
        source=plaintext,
        key_provider=provider,
        encryption_context=job.get("context", {}),
        algorithm=SUITES[job["suite"]],
        frame_length=job["frame_length"],
    )
    with open(job["out"], "wb") as f:
        f.write(ciphertext)
    return {"ok": True}


def decrypt(job):
    with open(job["ciphertext"], "rb") as f:
        ciphertext = f.read()
    provider = StrictAwsKmsMasterKeyProvider(key_ids=job["key_ids"])
    plaintext, header = CLIENT.decrypt(source=ciphertext, key_provider=provider)
    with open(job["out"], "wb") as f:
        f.write(plaintext)
    edks = sorted(
        (
            {
                "provider_id": edk.key_provider.provider_id,
                "provider_info": edk.key_provider.key_info.decode("utf-8"),
            }
            for edk in header.encrypted_data_keys
        ),
        key=lambda e: e["provider_info"],
    )
    return {
        "ok": True,
        "context": header.encryption_context,
        "suite": "0x%04x" % header.algorithm.algorithm_id,
        "edks": edks,
    }


def main():
    with open(sys.argv[1]) as f:
        jobs = json.load(f)
    results = []
    for job in jobs:
        try:
            results.append({"encrypt": encrypt, "decrypt": decrypt}[job["op"]](job))
        except Exception as e:  # reported to the test, which decides what was expected
            results.append({"ok": False, "error": "%s: %s" % (type(e).__name__, e)})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
