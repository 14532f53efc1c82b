//! Test helpers shared by s3crypt's test suites (not published):
//!
//! * [`servers`]: local S3 (and KMS) servers, moto and s3s-fs, started on free loopback ports
//!   and stopped on drop;
//! * [`s3_proxy`]: an HTTP proxy that injects S3 faults (5xx, resets, stalls);
//! * [`kms_proxy`]: an HTTP proxy that answers chosen KMS requests with KMS errors;
//! * [`forbidden`]: the GCM nonce-reuse attack of advisory S3C-2026-01, to keep it tested;
//! * [`process`]: signals to child processes, their leftover temporary files.

#![allow(
    clippy::unwrap_used,
    clippy::missing_errors_doc,
    missing_docs,
    missing_debug_implementations
)]

pub mod forbidden;
pub mod kms_proxy;
pub mod process;
pub mod s3_proxy;
pub mod servers;
