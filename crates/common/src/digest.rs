//! Content digests: BLAKE3, labelled with the algorithm so a later change of hash is visible.

use std::fmt;
use std::io;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A BLAKE3 digest. Displays as `blake3:<64 hex>`; the file-name form is the bare hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

const LABEL: &str = "blake3:";

/// Files at least this large are memory-mapped to be hashed; smaller ones are read.
const MMAP_MIN_BYTES: u64 = 64 << 10;

impl Digest {
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    /// Hashes a regular file's content (anything else is an error, see
    /// [`crate::files::open_regular`]). Large files are memory-mapped (faster, no copy).
    pub fn of_file(path: &Path) -> io::Result<Digest> {
        let file = crate::files::open_regular(path)?;
        let mut hasher = blake3::Hasher::new();
        if file.metadata()?.len() < MMAP_MIN_BYTES {
            hasher.update_reader(&file)?;
        } else {
            // SAFETY: the map is read once, here; a file truncated meanwhile by another
            // process is the risk every mmap-hashing tool (b3sum, blake3's update_mmap) takes.
            let map = unsafe { memmap2::Mmap::map(&file)? };
            hasher.update(&map);
        }
        Ok(Digest(*hasher.finalize().as_bytes()))
    }

    /// The bare hex form, used for file names.
    pub fn hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// `body` followed by its digest, for a cache file that is decoded rather than verified
/// against a name (entries, manifests): [`unseal`] then refuses one damaged at rest.
pub fn seal(mut body: Vec<u8>) -> Vec<u8> {
    let d = Digest::of_bytes(&body);
    body.extend_from_slice(&d.0);
    body
}

/// The body of a [`seal`]ed file, or `None` if any byte of it changed (a flipped bit, a cut,
/// garbage): a flipped byte inside a string would otherwise still decode, as other data.
pub fn unseal(bytes: &[u8]) -> Option<&[u8]> {
    let (body, tail) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
    (Digest::of_bytes(body).0 == tail).then_some(body)
}

/// Why a blob failed verification.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read blob: {0}")]
    Io(io::Error),
    #[error("blob content does not match its digest (expected {expected}, got {actual})")]
    Mismatch { expected: Digest, actual: Digest },
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{LABEL}{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Error for a string that is not `blake3:<64 hex>`.
#[derive(Debug, thiserror::Error)]
#[error("not a digest (expected `blake3:` and 64 hex digits): {0:?}")]
pub struct ParseDigestError(String);

impl FromStr for Digest {
    type Err = ParseDigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s
            .strip_prefix(LABEL)
            .ok_or_else(|| ParseDigestError(s.to_owned()))?;
        blake3::Hash::from_hex(hex)
            .map(|h| Digest(*h.as_bytes()))
            .map_err(|_| ParseDigestError(s.to_owned()))
    }
}

// On the wire and on disk a digest is its 32 raw bytes: compact in rmp-serde.
impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Digest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("32 digest bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Digest, E> {
                <[u8; 32]>::try_from(v)
                    .map(Digest)
                    .map_err(|_| E::invalid_length(v.len(), &self))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// Builds a key from typed, length-prefixed fields, so that `("ab","c")` and `("a","bc")`
/// never hash alike.
pub struct KeyHasher(blake3::Hasher);

impl KeyHasher {
    pub fn new(domain: &str) -> KeyHasher {
        let mut h = KeyHasher(blake3::Hasher::new());
        h.field(domain.as_bytes());
        h
    }

    pub fn field(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    pub fn str(&mut self, s: &str) -> &mut Self {
        self.field(s.as_bytes())
    }

    pub fn digest(&mut self, d: &Digest) -> &mut Self {
        self.field(d.as_bytes())
    }

    pub fn finish(&self) -> Digest {
        Digest(*self.0.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_parse_round_trip() {
        let d = Digest::of_bytes(b"hello");
        let s = d.to_string();
        assert!(s.starts_with("blake3:"));
        assert_eq!(s.parse::<Digest>().unwrap(), d);
        assert!("sha256:00".parse::<Digest>().is_err());
    }

    #[test]
    fn key_fields_are_length_prefixed() {
        let a = KeyHasher::new("t").str("ab").str("c").finish();
        let b = KeyHasher::new("t").str("a").str("bc").finish();
        assert_ne!(a, b);
    }

    #[test]
    fn rmp_round_trip() {
        let d = Digest::of_bytes(b"x");
        let bytes = rmp_serde::to_vec(&d).unwrap();
        assert_eq!(bytes.len(), 34);
        assert_eq!(rmp_serde::from_slice::<Digest>(&bytes).unwrap(), d);
    }
}
