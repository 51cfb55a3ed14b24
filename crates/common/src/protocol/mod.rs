//! The farm's wire protocol: every name jetcc uses in NATS ([`names`]) and the messages that
//! travel on them ([`job`]). Nothing outside this module spells a subject, stream, consumer or
//! bucket name, and wire types are kept apart from the internal ones (`RustcInvocation`,
//! `CacheEntry`) so either can change without the other.
//!
//! Groundwork for the compile farm (issue 4): the publisher and worker are to be built on it.

pub mod job;
pub mod names;

/// Bumped on any incompatible change of a wire type; a peer refuses other versions.
pub const PROTOCOL_VERSION: u16 = 1;
