//! AWS KMS keyring tests against a real local KMS (moto, started by the tests on a free loopback
//! port) and the official Python AWS Encryption SDK. `scripts/test` installs both and sets
//! `S3CRYPT_TEST_MOTO` and `S3CRYPT_TEST_PYTHON`; without them the tests fail under `CI` and are
//! skipped otherwise.

#![allow(clippy::unwrap_used)]

mod fault;
mod interop;
mod keyring;
mod kms;
mod mac;
mod runtimes;
// The S3 tests' server helper, shared rather than copied (it also builds S3 clients we don't use).
#[allow(dead_code)]
#[path = "../../../s3crypt/tests/it/servers.rs"]
mod servers;
