//! The farm's wire protocol: every name jetcc uses in NATS ([`names`]) and the messages that
//! travel on them ([`job`], [`worker`] heartbeats, [`events`] for monitors, [`pack`]s of
//! shipped toolchains). Nothing outside
//! this module spells a subject, stream, consumer or bucket name, and wire types are kept
//! apart from the internal ones (`RustcArgs`, `CacheEntry`) so either can change
//! without the other.
//!

pub mod events;
pub mod job;
pub mod names;
pub mod pack;
pub mod timing;
pub mod worker;

/// Bumped on any incompatible change of a wire type; a peer refuses other versions.
pub const PROTOCOL_VERSION: u16 = 9;
