//! A job's files on this worker: its root with the client's dirs, its inputs placed from the
//! blob cache (linked only where the job cannot write them, else copied into new files).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use jetcc_common::protocol::job::{by_digest, JobRequest};

use super::{io, Context, JobError};
use crate::jail;

/// Where one job's files are on this worker.
pub(super) struct Layout {
    /// The job root: `/` in the jail.
    pub(super) root: PathBuf,
    /// The client's out-dir, the one dir rustc writes (a path in the jail).
    pub(super) out_dir: PathBuf,
    /// The out-dir on the worker's disk.
    pub(super) out_in_root: PathBuf,
    /// The dirs the job may write (paths in the jail): the out-dir and its tmp dir.
    pub(super) writable: Vec<PathBuf>,
    /// Bytes of outputs taken so far, against the disk limit.
    pub(super) uploaded: AtomicU64,
}

impl Layout {
    pub(super) fn new(job_dir: &Path, job: &JobRequest) -> Layout {
        let root = job_dir.join("root");
        let out_dir = PathBuf::from(&job.out_dir);
        let out_in_root = jail::inside(&root, &out_dir);
        Layout {
            root,
            writable: vec![out_dir.clone(), PathBuf::from(jail::JAIL_TMP)],
            out_dir,
            out_in_root,
            uploaded: AtomicU64::new(0),
        }
    }

    /// The job root's dirs on the worker's disk: the out-dir, the cwd, the jail's tmp dir
    /// (here, its launcher does not wait for it) and every dir the job lists.
    pub(super) fn dirs(&self, job: &JobRequest) -> Vec<PathBuf> {
        let listed = job
            .dirs
            .iter()
            .map(|d| jail::inside(&self.root, Path::new(d)));
        [
            self.out_in_root.clone(),
            jail::inside(&self.root, Path::new(&job.cwd)),
            jail::inside(&self.root, Path::new(jail::JAIL_TMP)),
        ]
        .into_iter()
        .chain(listed)
        .collect()
    }

    /// Whether the job may write at `path` (in the jail).
    fn is_writable(&self, path: &Path) -> bool {
        self.writable.iter().any(|w| path.starts_with(w))
    }

    /// The writable dirs on the worker's disk.
    pub(super) fn writable_in_root(&self) -> Vec<PathBuf> {
        self.writable
            .iter()
            .map(|w| jail::inside(&self.root, w))
            .collect()
    }
}

/// Creates the job root's dirs ([`Layout::dirs`]).
pub(super) fn create_dirs(dirs: &[PathBuf]) -> Result<(), JobError> {
    for dir in dirs {
        std::fs::create_dir_all(dir).map_err(io("create the job root's dirs"))?;
    }
    Ok(())
}

/// The local path of each input's blob, in the job's order: cached here, else sent in the
/// job (a blob whose bytes have the input's digest), else fetched from the CAS.
pub(super) async fn fetch_inputs(
    ctx: &Context,
    job: &JobRequest,
) -> Result<Vec<PathBuf>, JobError> {
    let sent = by_digest(&job.inline);
    // Fetch the blobs this worker lacks concurrently: on a distant link each costs a round
    // trip.
    let mut blobs: Vec<PathBuf> = Vec::with_capacity(job.inputs.len());
    for chunk in job.inputs.chunks(16) {
        let fetches = chunk.iter().map(|input| {
            let bytes = sent.get(&input.digest).map(|b| &b[..]);
            ctx.blobs.fetch(&ctx.res.cas, &input.digest, bytes)
        });
        blobs.extend(futures_util::future::try_join_all(fetches).await?);
    }
    Ok(blobs)
}

/// Puts each input at its client path in the job root; returns the dirs rustc may read.
///
/// A cached blob is hard-linked only where the job can never write to it: when the job runs
/// as another user than the worker (`other_uid`: the blob is the worker's and read-only)
/// and outside the job's writable dirs. Anywhere else it is copied, into a file created
/// here: never written through an existing one (the job's paths are checked to lay out as
/// a tree, and this holds even if they did not).
pub(super) fn place_inputs(
    job: &JobRequest,
    layout: &Layout,
    blobs: Vec<PathBuf>,
    other_uid: bool,
) -> Result<Vec<PathBuf>, JobError> {
    let mut readable = Vec::new();
    for (input, blob) in job.inputs.iter().zip(blobs) {
        let path = Path::new(&input.path);
        let dest = jail::inside(&layout.root, path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io("lay out inputs"))?;
        }
        let link = other_uid && !layout.is_writable(path);
        if !link || std::fs::hard_link(&blob, &dest).is_err() {
            copy_new(&blob, &dest).map_err(io("lay out inputs"))?;
        }
        if let Some(parent) = path.parent() {
            if !readable.iter().any(|r: &PathBuf| parent.starts_with(r)) {
                readable.push(parent.to_owned());
            }
        }
    }
    readable.push(PathBuf::from(&job.cwd));
    Ok(readable)
}

/// Copies `blob` to a new file `dest` (never through an existing one, nor a symlink).
fn copy_new(blob: &Path, dest: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut from = std::fs::File::open(blob)?;
    let mut to = std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(dest)?;
    std::io::copy(&mut from, &mut to)?;
    Ok(())
}
