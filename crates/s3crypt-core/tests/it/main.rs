//! Integration tests of s3crypt-core: one binary, one module per concern.

#![allow(clippy::unwrap_used)]

mod corpora;
mod interop;
mod roundtrip;
mod tamper;
mod util;
mod vectors;
