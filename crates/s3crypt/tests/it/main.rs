//! S3 integration tests against real local servers (moto and s3s-fs), started by the tests on
//! free loopback ports. `scripts/test` installs both and sets `S3CRYPT_TEST_MOTO` and
//! `S3CRYPT_TEST_S3S_FS`; without them the tests fail under `CI` and are skipped otherwise.

#![allow(clippy::unwrap_used)]

mod attacks;
mod copy;
mod errors;
mod faults;
mod s3;

/// Shared with the other crates' tests.
use s3crypt_test_support::{forbidden, s3_proxy as proxy, servers};
