//! What a job wrote: outputs read back as the worker (never through a symlink, bounded by
//! the disk limit), refused if they name the job root, and put in the CAS: after the answer
//! for the small ones, which ride in it.

use std::path::Path;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use jetcc_common::protocol::job::JobRequest;
use jetcc_common::Digest;

use super::layout::Layout;
use super::{Context, JobError};

/// Outputs sent inline, to be put in the CAS once the client has its answer (the worker's
/// record and the job's followers name them there).
#[derive(Default)]
pub(super) struct Deferred(Vec<(Digest, Bytes)>);

impl Deferred {
    /// Puts them all in the CAS at once (each put is a round trip).
    pub(super) async fn put(self, ctx: &Context) -> Result<(), JobError> {
        let puts = self
            .0
            .iter()
            .map(|(digest, bytes)| ctx.res.cas.put(digest, bytes));
        futures_util::future::try_join_all(puts).await?;
        Ok(())
    }

    /// Keeps `bytes` to send inline if they fit in `budget` (taking them from it) and hands
    /// them back to send; else hands them back as `Err`, to be put in the CAS now.
    fn keep(
        &mut self,
        digest: Digest,
        bytes: Vec<u8>,
        budget: &mut usize,
    ) -> Result<Bytes, Vec<u8>> {
        if bytes.len() > *budget {
            return Err(bytes);
        }
        *budget -= bytes.len();
        let bytes = Bytes::from(bytes);
        self.0.push((digest, bytes.clone()));
        Ok(bytes)
    }
}

/// An output rustc announced: its digest, and its bytes when they fit in `budget` (then put
/// in the CAS later, see [`Deferred`]; else put now).
pub(super) async fn announce(
    ctx: &Context,
    layout: &Layout,
    name: &str,
    mut budget: usize,
    deferred: &mut Deferred,
) -> Result<(Digest, Option<Bytes>), JobError> {
    let (digest, bytes) = take(ctx, layout, name).await?;
    match deferred.keep(digest, bytes, &mut budget) {
        Ok(inline) => Ok((digest, Some(inline))),
        Err(bytes) => {
            ctx.res.cas.put(&digest, &bytes).await?;
            Ok((digest, None))
        }
    }
}

/// The outputs rustc did not announce while it ran, read one after the other (the disk
/// limit bounds them together): those that fit in `budget` together are returned inline
/// (and deferred), the others put in the CAS all at once.
pub(super) async fn take_rest(
    ctx: &Context,
    job: &JobRequest,
    layout: &Layout,
    sent: &[(String, Digest)],
    mut budget: usize,
    deferred: &mut Deferred,
) -> Result<(Vec<(String, Digest)>, Vec<Bytes>), JobError> {
    let (mut outputs, mut inline, mut puts) = (Vec::new(), Vec::new(), Vec::new());
    for name in job
        .outputs
        .iter()
        .filter(|n| !sent.iter().any(|(s, _)| s == *n))
    {
        let (digest, bytes) = take(ctx, layout, name).await?;
        outputs.push((name.clone(), digest));
        match deferred.keep(digest, bytes, &mut budget) {
            Ok(bytes) => inline.push(bytes),
            Err(bytes) => puts.push((digest, bytes)),
        }
    }
    let puts = puts
        .iter()
        .map(|(digest, bytes)| ctx.res.cas.put(digest, bytes));
    futures_util::future::try_join_all(puts).await?;
    Ok((outputs, inline))
}

/// Reads an output; refuses it if it names the job root or the job's outputs together pass
/// the disk limit.
async fn take(ctx: &Context, layout: &Layout, name: &str) -> Result<(Digest, Vec<u8>), JobError> {
    let path = layout.out_in_root.join(name);
    let room = ctx
        .disk_limit
        .saturating_sub(layout.uploaded.load(Ordering::Relaxed));
    let bytes = tokio::task::spawn_blocking(move || read_output(&path, room))
        .await
        .map_err(|e| JobError::Io(e.to_string()))?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::FileTooLarge => JobError::OutputsTooLarge(ctx.disk_limit),
            _ => JobError::Io(format!("cannot take output {name}: {e}")),
        })?;
    layout
        .uploaded
        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    let root_bytes = layout.root.as_os_str().as_encoded_bytes();
    if bytes.windows(root_bytes.len()).any(|w| w == root_bytes) {
        return Err(JobError::NotHermetic(name.to_owned()));
    }
    Ok((Digest::of_bytes(&bytes), bytes))
}

/// Reads an output the job wrote, as the worker (outside the jail): never through a symlink
/// (the job could point one at any file on this machine), and only a regular file (a FIFO
/// would block). The out-dir's parents belong to the worker, so only the last component can
/// be the job's. A file over `max` bytes is not read (`FileTooLarge`).
pub(crate) fn read_output(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > max {
        return Err(std::io::ErrorKind::FileTooLarge.into());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The job may still be writing to it: never more than `max`.
    f.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::ErrorKind::FileTooLarge.into());
    }
    Ok(bytes)
}

/// The file name of an artifact notice (`{"$message_type":"artifact","artifact":PATH,…}`) for
/// a file in the out-dir; `None` for any other line.
pub(super) fn artifact_name(line: &[u8], out_dir: &Path) -> Option<String> {
    if !line.starts_with(br#"{"$message_type":"artifact""#) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    let path = Path::new(v.get("artifact")?.as_str()?);
    let name = path.file_name()?.to_str()?;
    (path.parent()? == out_dir).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_lines() {
        let out = Path::new("/p/target/debug/deps");
        let line = br#"{"$message_type":"artifact","artifact":"/p/target/debug/deps/liba-1.rmeta","emit":"metadata"}"#;
        assert_eq!(artifact_name(line, out).as_deref(), Some("liba-1.rmeta"));
        let elsewhere =
            br#"{"$message_type":"artifact","artifact":"/etc/passwd","emit":"metadata"}"#;
        assert_eq!(artifact_name(elsewhere, out), None);
        assert_eq!(artifact_name(b"warning: x", out), None);
    }
}
