//! S3 integration tests against real local servers (moto and s3s-fs), started by the tests on
//! free loopback ports. `scripts/test` installs both and sets `S3CRYPT_TEST_MOTO` and
//! `S3CRYPT_TEST_S3S_FS`; without them the tests fail under `CI` and are skipped otherwise.

#![allow(clippy::unwrap_used)]

mod attacks;
mod copy;
mod faults;
/// The attack of advisory S3C-2026-01 (GHASH key recovery from two header tags), shared with the
/// core's tests.
#[path = "../../../s3crypt-core/tests/it/forbidden.rs"]
mod forbidden;
mod proxy;
mod s3;
mod servers;
