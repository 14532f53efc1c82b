"""Raw AES wrapping keys for the official Python SDK (legacy master key providers, offline)."""

import aws_encryption_sdk
from aws_encryption_sdk.identifiers import CommitmentPolicy, EncryptionKeyType, WrappingAlgorithm
from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
from aws_encryption_sdk.key_providers.raw import RawMasterKeyProvider


class StaticRawAesProvider(RawMasterKeyProvider):
    """One key namespace (= provider id), any number of key names with fixed 256-bit keys."""

    provider_id = None

    def __init__(self, **kwargs):  # pylint: disable=super-init-not-called
        self._static_keys = {}

    def _get_raw_key(self, key_id):
        return WrappingKey(
            wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
            wrapping_key=self._static_keys[key_id],
            wrapping_key_type=EncryptionKeyType.SYMMETRIC,
        )


def provider_for(keys):
    """keys: list of (namespace str, name str, key bytes).  The first key generates the data key
    on encrypt; all keys wrap it.  Keys of several namespaces are combined in one provider tree.
    (namespace, name) pairs must be unique within one call."""
    groups = []
    by_ns = {}
    for ns, name, key in keys:
        if ns not in by_ns:
            cls = type("RawAes_" + str(len(by_ns)), (StaticRawAesProvider,), {"provider_id": ns})
            by_ns[ns] = cls()
            groups.append(by_ns[ns])
        p = by_ns[ns]
        key_id = name.encode("utf-8")
        if key_id in p._static_keys:
            raise ValueError("duplicate key %s/%s in one provider" % (ns, name))
        p._static_keys[key_id] = key
        p.add_master_key(key_id)
    root = groups[0]
    for other in groups[1:]:
        root.add_master_key_provider(other)
    return root


def client():
    return aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )


def sdk_version():
    return aws_encryption_sdk.__version__
