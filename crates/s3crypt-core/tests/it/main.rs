//! Integration tests of s3crypt-core: one binary, one module per concern.

mod interop;
mod roundtrip;
mod tamper;
mod util;
mod vectors;
