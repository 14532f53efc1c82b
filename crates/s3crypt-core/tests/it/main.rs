//! Integration tests of s3crypt-core: one binary, one module per concern.

#![allow(clippy::unwrap_used)]

mod attacks;
mod corpora;
mod forbidden;
mod interop;
mod message_ids;
mod roundtrip;
mod tamper;
mod util;
mod vectors;
