//! The content-addressed store: blobs in the object store `jetcc-cas`, named by their BLAKE3
//! digest, written once, verified on every read.
//!
//! Reads go around `ObjectStore::get` (one ordered consumer per read, and nats-server allows
//! 1000 consumers per stream): the object's metadata and each of its chunks are fetched with
//! direct gets, which open no consumer, so any number of concurrent readers is fine.

use std::path::Path;

use async_nats::jetstream::object_store::{ObjectInfo, ObjectMetadata, ObjectStore};
use async_nats::jetstream::stream::Stream;

use super::resources::CAS_CHUNK;
use super::{Farm, FarmError, FarmErrorKind};
use crate::protocol::names::Names;
use crate::Digest;

/// Largest blob the CAS takes (a debug rlib of a big crate is well below).
pub const MAX_BLOB: u64 = 2 << 30;

#[derive(Clone)]
pub struct Cas {
    store: ObjectStore,
    /// The bucket's own stream, for direct gets (and the GC's purges).
    pub(super) stream: Stream,
    names: Names,
}

impl Cas {
    /// The bucket's stream state (size, messages, limits).
    pub async fn stream_info(
        &self,
    ) -> Result<async_nats::jetstream::stream::Info, async_nats::jetstream::stream::InfoError> {
        self.stream.get_info().await
    }

    /// The CAS over the object store and its underlying stream (read by direct gets).
    pub(super) fn new(farm: &Farm, store: ObjectStore, stream: Stream) -> Cas {
        Cas {
            store,
            stream,
            names: farm.names.clone(),
        }
    }

    fn name(digest: &Digest) -> String {
        format!("b3-{}", digest.hex())
    }

    async fn info(&self, digest: &Digest) -> Result<Option<ObjectInfo>, FarmError> {
        use async_nats::jetstream::object_store::InfoErrorKind;
        match self.store.info(Cas::name(digest)).await {
            Ok(info) if !info.deleted => Ok(Some(info)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == InfoErrorKind::NotFound => Ok(None),
            Err(e) => Err(FarmError::other("cannot look up a blob", e)),
        }
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
        let meta = ObjectMetadata {
            name: Cas::name(digest),
            chunk_size: Some(CAS_CHUNK),
            ..Default::default()
        };
        let mut reader = bytes;
        self.store
            .put(meta, &mut reader)
            .await
            .map_err(|e| FarmError::other("cannot upload a blob", e))?;
        Ok(true)
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
        self.put(digest, &bytes).await
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
        let mut seq = None;
        for _ in 0..info.chunks {
            let msg = self
                .stream
                .direct_get_next_for_subject(subject.as_str(), seq)
                .await
                // Chunks go only when the full bucket drops its oldest messages (its discard
                // policy, a burst the GC has not caught up with): evicted, a miss.
                .map_err(|e| {
                    FarmError::new(
                        FarmErrorKind::NotFound,
                        format!("blob {digest} is incomplete (evicted?): {e}"),
                    )
                })?;
            seq = Some(msg.sequence + 1);
            bytes.extend_from_slice(&msg.payload);
            if bytes.len() > info.size {
                break;
            }
        }
        if bytes.len() != info.size || &Digest::of_bytes(&bytes) != digest {
            // Drop it, so the next writer of these bytes stores them afresh.
            let _ = self.delete(digest).await;
            return Err(FarmError::new(
                FarmErrorKind::Corrupt,
                format!("blob {digest} does not match its digest (dropped)"),
            ));
        }
        Ok(bytes)
    }

    /// Removes a blob (a corrupt one, or `jetcc --check`'s probe).
    pub async fn delete(&self, digest: &Digest) -> Result<(), FarmError> {
        self.store
            .delete(Cas::name(digest))
            .await
            .map_err(|e| FarmError::other("cannot delete a blob", e))
    }
}
