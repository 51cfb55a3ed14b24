//! The content-addressed store: blobs in the object store `jetcc-cas`, named by their BLAKE3
//! digest, written once, verified on every read.
//!
//! Reads go around `ObjectStore::get` (one ordered consumer per read, and nats-server allows
//! 1000 consumers per stream): the object's metadata and each of its chunks are fetched with
//! direct gets, which open no consumer, so any number of concurrent readers is fine.
//!
//! Writes and deletes go around `ObjectStore::put` and `delete` too, which purge the old
//! chunks of an object they replace or delete: purging the CAS stream is a right only
//! workers and the admin have (`nats/roles.conf`), since a purge without a filter empties
//! it. Here the metadata alone says what an object is; chunks no metadata names any more
//! stay until they age out or the CAS is collected.
//!
//! A blob's metadata names the stream sequence of each of its chunks (`jetcc-chunks`), so a
//! reader asks for all of them at once instead of one round trip per chunk (each next chunk
//! found from the last one's sequence); a blob stored without them is read that slower way.

use std::path::Path;

use async_nats::jetstream::object_store::{ObjectInfo, ObjectOptions};
use async_nats::jetstream::stream::Stream;
use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;

use super::resources::CAS_CHUNK;
use super::{Farm, FarmError, FarmErrorKind};
use crate::protocol::names::Names;
use crate::Digest;

/// Largest blob the CAS takes (a debug rlib of a big crate is well below).
pub const MAX_BLOB: u64 = 2 << 30;
/// Chunks of one blob in flight at once, stored (acks awaited together) or read (8 MB).
const CHUNKS_IN_FLIGHT: usize = 16;
/// The metadata key naming a blob's chunks' stream sequences: the first, then each one's
/// distance from the one before, comma-separated (mostly `1`s).
const CHUNK_SEQS: &str = "jetcc-chunks";

#[derive(Clone)]
pub struct Cas {
    js: async_nats::jetstream::Context,
    /// The bucket's own stream, for direct gets (and the GC's purges). Opened without a
    /// stream info request (one per wrapper process, the server's costliest reply per job).
    pub(super) stream: Stream<()>,
    names: Names,
}

impl Cas {
    /// The bucket's stream state (size, messages, limits).
    pub async fn stream_info(
        &self,
    ) -> Result<async_nats::jetstream::stream::Info, async_nats::jetstream::stream::InfoError> {
        self.stream.get_info().await
    }

    /// The CAS over its bucket's stream: read by direct gets, written by publishes.
    pub(super) fn new(farm: &Farm, stream: Stream<()>) -> Cas {
        Cas {
            js: farm.js.clone(),
            stream,
            names: farm.names.clone(),
        }
    }

    fn name(digest: &Digest) -> String {
        format!("b3-{}", digest.hex())
    }

    /// The blob's metadata (the last message on its metadata subject, as the object store
    /// reads it), `None` if missing or deleted.
    async fn info(&self, digest: &Digest) -> Result<Option<ObjectInfo>, FarmError> {
        use async_nats::jetstream::stream::DirectGetErrorKind;
        let subject = self.names.cas_meta_subject(&Cas::name(digest));
        let msg = match self.stream.direct_get_last_for_subject(subject).await {
            Ok(msg) => msg,
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(FarmError::other("cannot look up a blob", e)),
        };
        let info: ObjectInfo = serde_json::from_slice(&msg.payload).map_err(|e| {
            FarmError::new(
                FarmErrorKind::Corrupt,
                format!("blob {digest} has unreadable metadata: {e}"),
            )
        })?;
        Ok((!info.deleted).then_some(info))
    }

    pub async fn contains(&self, digest: &Digest) -> Result<bool, FarmError> {
        Ok(self.info(digest).await?.is_some())
    }

    /// Stores `bytes` under `digest` unless already there. Returns whether it uploaded.
    /// The caller vouches that `digest` is the bytes' digest (checked in debug builds).
    pub async fn put(&self, digest: &Digest, bytes: &[u8]) -> Result<bool, FarmError> {
        debug_assert_eq!(&Digest::of_bytes(bytes), digest);
        if self.contains(digest).await? {
            return Ok(false);
        }
        self.put_missing(digest, bytes).await?;
        Ok(true)
    }

    /// Stores `bytes`, looked up and found missing ([`Cas::contains`]; the caller vouches
    /// that `digest` is theirs). Chunks go out back to back, their acks awaited
    /// [`CHUNKS_IN_FLIGHT`] at a time: one round trip per chunk would cost a 25 MB rlib (50
    /// chunks) a second behind a 20 ms link.
    pub async fn put_missing(&self, digest: &Digest, bytes: &[u8]) -> Result<(), FarmError> {
        let nuid = super::nonce()?.to_string();
        let chunks = self.names.cas_chunk_subject(&nuid);
        let mut acks = std::collections::VecDeque::with_capacity(CHUNKS_IN_FLIGHT);
        let mut seqs = Vec::with_capacity(bytes.len().div_ceil(CAS_CHUNK));
        for chunk in bytes.chunks(CAS_CHUNK) {
            if acks.len() == CHUNKS_IN_FLIGHT {
                seqs.push(chunk_acked(acks.pop_front().expect("full")).await?);
            }
            let ack = self
                .js
                .publish(chunks.clone(), Bytes::copy_from_slice(chunk))
                .await
                .map_err(|e| FarmError::other("cannot upload a blob", e))?;
            acks.push_back(ack);
        }
        for ack in acks {
            seqs.push(chunk_acked(ack).await?);
        }
        let info = ObjectInfo {
            name: Cas::name(digest),
            description: None,
            metadata: [(CHUNK_SEQS.to_owned(), encode_seqs(&seqs))].into(),
            headers: None,
            options: Some(ObjectOptions {
                link: None,
                max_chunk_size: Some(CAS_CHUNK),
            }),
            bucket: self.names.cas_bucket(),
            nuid,
            size: bytes.len(),
            chunks: bytes.len().div_ceil(CAS_CHUNK),
            modified: None,
            digest: None,
            deleted: false,
        };
        self.put_info(&info).await
    }

    /// Writes an object's metadata (after its chunks: a reader that finds the metadata finds
    /// every chunk), replacing the name's earlier ones (a rollup of its
    /// subject, as the object store does).
    async fn put_info(&self, info: &ObjectInfo) -> Result<(), FarmError> {
        let subject = self.names.cas_meta_subject(&info.name);
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Rollup", "sub");
        let json = serde_json::to_vec(info).map_err(|e| FarmError::other("blob metadata", e))?;
        self.js
            .publish_with_headers(subject, headers, json.into())
            .await
            .map_err(|e| FarmError::other("cannot write a blob's metadata", e))?
            .await
            .map_err(|e| FarmError::other("the CAS did not take a blob's metadata", e))?;
        Ok(())
    }

    /// Reads a file, checks it still has `digest`, and stores it.
    pub async fn put_file(&self, digest: &Digest, path: &Path) -> Result<bool, FarmError> {
        if self.contains(digest).await? {
            return Ok(false);
        }
        let bytes = tokio::fs::read(path).await.map_err(|e| {
            FarmError::other(&format!("cannot read {} to upload it", path.display()), e)
        })?;
        if &Digest::of_bytes(&bytes) != digest {
            return Err(FarmError::new(
                FarmErrorKind::Corrupt,
                format!("{} changed while being uploaded", path.display()),
            ));
        }
        self.put_missing(digest, &bytes).await?;
        Ok(true)
    }

    /// Fetches a blob and verifies it: a blob that does not hash to `digest` is an error,
    /// never returned.
    pub async fn get(&self, digest: &Digest) -> Result<Vec<u8>, FarmError> {
        self.get_bounded(digest, None).await
    }

    /// [`Cas::get`] of a blob whose size the reader knows (a cache entry names it): one whose
    /// metadata claims another size is refused before a byte of it is read or allocated.
    pub async fn get_sized(&self, digest: &Digest, size: u64) -> Result<Vec<u8>, FarmError> {
        self.get_bounded(digest, Some(size)).await
    }

    /// [`Cas::get`] of a blob the reader takes only up to `max` bytes of (a toolchain pack):
    /// a larger one is refused before a byte of it is read.
    pub async fn get_at_most(&self, digest: &Digest, max: u64) -> Result<Vec<u8>, FarmError> {
        let size = match self.info(digest).await? {
            Some(info) if info.size as u64 > max => {
                return Err(FarmError::new(
                    FarmErrorKind::Corrupt,
                    format!(
                        "blob {digest} claims {} bytes, at most {max} taken",
                        info.size
                    ),
                ))
            }
            Some(info) => Some(info.size as u64),
            None => None,
        };
        self.get_bounded(digest, size).await
    }

    async fn get_bounded(&self, digest: &Digest, size: Option<u64>) -> Result<Vec<u8>, FarmError> {
        let info = self.info(digest).await?.ok_or_else(|| {
            FarmError::new(
                FarmErrorKind::NotFound,
                format!("blob {digest} is not in the CAS"),
            )
        })?;
        if info.size as u64 > MAX_BLOB || size.is_some_and(|s| s != info.size as u64) {
            return Err(FarmError::new(
                FarmErrorKind::Corrupt,
                format!(
                    "blob {digest} claims {} bytes (expected {})",
                    info.size,
                    size.map_or(format!("at most {MAX_BLOB}"), |s| s.to_string())
                ),
            ));
        }
        let subject = self.names.cas_chunk_subject(&info.nuid);
        let mut bytes = Vec::with_capacity(info.size);
        let listed = info
            .metadata
            .get(CHUNK_SEQS)
            .and_then(|s| decode_seqs(s))
            // As jetcc stores them: full chunks (a claim of many small ones is not taken).
            .filter(|seqs| {
                seqs.len() == info.chunks && info.chunks == info.size.div_ceil(CAS_CHUNK)
            });
        if let Some(seqs) = listed {
            let gets = seqs.into_iter().map(|seq| self.stream.direct_get(seq));
            let mut chunks = futures_util::stream::iter(gets).buffered(CHUNKS_IN_FLIGHT);
            while let Some(msg) = chunks.next().await {
                let msg = msg.map_err(|e| incomplete(digest, e))?;
                // A sequence that names another message: the digest check below refuses it.
                if msg.subject.as_str() != subject.as_str() {
                    break;
                }
                bytes.extend_from_slice(&msg.payload);
                if bytes.len() > info.size {
                    break;
                }
            }
            return self.verified(digest, info.size, bytes).await;
        }
        let mut seq = None;
        for _ in 0..info.chunks {
            let msg = self
                .stream
                .direct_get_next_for_subject(subject.as_str(), seq)
                .await
                .map_err(|e| incomplete(digest, e))?;
            seq = Some(msg.sequence + 1);
            bytes.extend_from_slice(&msg.payload);
            if bytes.len() > info.size {
                break;
            }
        }
        self.verified(digest, info.size, bytes).await
    }

    /// `bytes` read for a blob of `size` bytes, if they are its bytes.
    async fn verified(
        &self,
        digest: &Digest,
        size: usize,
        bytes: Vec<u8>,
    ) -> Result<Vec<u8>, FarmError> {
        if bytes.len() != size || &Digest::of_bytes(&bytes) != digest {
            // Drop it, so the next writer of these bytes stores them afresh.
            let _ = self.delete(digest).await;
            return Err(FarmError::new(
                FarmErrorKind::Corrupt,
                format!("blob {digest} does not match its digest (dropped)"),
            ));
        }
        Ok(bytes)
    }

    /// Removes a blob (a corrupt one, or `jetcc --check`'s probe): its metadata says it is
    /// deleted, so the next writer of these bytes stores them afresh. Its chunks stay until
    /// they age out or the CAS is collected (no purge: see the module's doc).
    pub async fn delete(&self, digest: &Digest) -> Result<(), FarmError> {
        let Some(mut info) = self.info(digest).await? else {
            return Ok(());
        };
        info.deleted = true;
        info.size = 0;
        info.chunks = 0;
        self.put_info(&info).await
    }
}

/// A chunk that is not there: chunks go only when the full bucket drops its oldest messages
/// (its discard policy, a burst the GC has not caught up with), so the blob was evicted: a
/// miss.
fn incomplete(digest: &Digest, e: impl std::fmt::Display) -> FarmError {
    FarmError::new(
        FarmErrorKind::NotFound,
        format!("blob {digest} is incomplete (evicted?): {e}"),
    )
}

/// The server's ack of one chunk stored: its stream sequence.
async fn chunk_acked(
    ack: async_nats::jetstream::context::PublishAckFuture,
) -> Result<u64, FarmError> {
    ack.await
        .map(|a| a.sequence)
        .map_err(|e| FarmError::other("the CAS did not take a blob's chunk", e))
}

fn encode_seqs(seqs: &[u64]) -> String {
    let mut last = 0;
    let deltas = seqs.iter().map(|&s| {
        let d = s.wrapping_sub(last);
        last = s;
        d.to_string()
    });
    deltas.collect::<Vec<_>>().join(",")
}

/// `None` for anything but increasing sequences written by [`encode_seqs`].
fn decode_seqs(text: &str) -> Option<Vec<u64>> {
    let mut seq = 0u64;
    text.split(',')
        .map(|d| {
            let d: u64 = d.parse().ok().filter(|&d| d > 0)?;
            seq = seq.checked_add(d)?;
            Some(seq)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sequences_round_trip_and_garbage_is_none() {
        let seqs = [7, 8, 9, 15, 16];
        assert_eq!(encode_seqs(&seqs), "7,1,1,6,1");
        assert_eq!(decode_seqs(&encode_seqs(&seqs)).unwrap(), seqs);
        for bad in ["", "1,,2", "3,0", "x", "1,-1", "18446744073709551615,1"] {
            assert_eq!(decode_seqs(bad), None, "{bad:?}");
        }
    }
}
