//! Cache tiers: the local disk cache ([`disk`]) and the object-store tier ([`object`]: S3,
//! GCS, Azure, a shared dir). The JetStream tier lives with the rest of the NATS transport in
//! [`crate::farm`]. All of them keep the same three kinds of record: manifests by invocation
//! digest, result entries by key, output blobs by digest; the shared ones also keep [`mark`]s of
//! the paths mode their writers use.

pub mod disk;
pub mod mark;
pub mod object;

pub use disk::{CacheError, DiskCache};
pub use mark::PathsMark;
pub use object::{ObjectTier, TierError, TierErrorKind};
