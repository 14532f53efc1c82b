//! AWS KMS keyring tests against a real local KMS (moto, started by the tests on a free loopback
//! port) and the official Python AWS Encryption SDK. `scripts/test` installs both and sets
//! `S3CRYPT_TEST_MOTO` and `S3CRYPT_TEST_PYTHON`; without them the tests fail under `CI` and are
//! skipped otherwise.

#![allow(clippy::unwrap_used)]

mod interop;
mod keyring;
mod kms;
mod mac;
mod runtimes;
/// Shared with the other crates' tests.
use s3crypt_test_support::{kms_proxy as fault, servers};
