//! How a tier operation fails: [`TierFailure`], its kind for the tier's stats and whether
//! the tier as a whole is down (which feeds its breaker).

use std::path::Path;

use jetcc_common::cache::{TierError, TierErrorKind};
use jetcc_common::farm::{FarmError, FarmErrorKind};
use jetcc_common::stats::StatKind;

/// Why a tier operation failed, by kind (its name in the tier's stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The object store (or the local disk's blobs: `corrupt`).
    Store(TierErrorKind),
    /// The NATS server behind the JetStream tier.
    Farm(FarmErrorKind),
    /// A file of this build could not be written.
    LocalIo,
}

impl StatKind for FailureKind {
    fn name(&self) -> &'static str {
        match self {
            FailureKind::Store(k) => k.name(),
            FailureKind::Farm(k) => k.name(),
            FailureKind::LocalIo => "local-io",
        }
    }
}

/// Why a tier operation failed. `down` says the tier as a whole is unusable (it counts
/// towards its breaker), not just one object.
#[derive(Debug)]
pub struct TierFailure {
    pub kind: FailureKind,
    pub message: String,
    pub down: bool,
}

impl TierFailure {
    pub fn local_io(what: &Path, e: std::io::Error) -> TierFailure {
        TierFailure {
            kind: FailureKind::LocalIo,
            message: format!("cannot write {}: {e}", what.display()),
            down: false,
        }
    }
}

impl std::fmt::Display for TierFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<TierError> for TierFailure {
    fn from(e: TierError) -> TierFailure {
        TierFailure {
            kind: FailureKind::Store(e.kind),
            down: e.kind.is_tier_down(),
            message: e.message,
        }
    }
}

impl From<FarmError> for TierFailure {
    fn from(e: FarmError) -> TierFailure {
        TierFailure {
            kind: FailureKind::Farm(e.kind),
            // A refused write says what this user may do, not that the server is down.
            down: e.kind != FarmErrorKind::Permission,
            message: e.message,
        }
    }
}
