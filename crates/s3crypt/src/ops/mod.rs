//! The operations, above the transport pieces: get (plan, drive, stream, sink), put (plan,
//! upload), copy, head, list and delete, and the message-id audit. Each holds the client's
//! shared handle ([`crate::shared::Shared`]), never the client.

pub mod audit;
pub(crate) mod buckets;
pub(crate) mod copy;
pub(crate) mod get;
pub(crate) mod head;
pub mod list;
pub(crate) mod put;
