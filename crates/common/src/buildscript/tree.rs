//! A build script's `OUT_DIR` as one blob: packed after a real run, unpacked on a hit.
//!
//! Design choice: one tar archive per run, not one blob per file. A run's result is the whole
//! directory (files, modes, symlinks, empty dirs), and restoring it must be all or nothing:
//! the archive is unpacked beside `OUT_DIR` and swapped in with two renames, so a restore
//! killed half way leaves no half-written `OUT_DIR` behind a successful-looking run.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Packs `dir` into a tar archive at `dest` (deterministic: sorted entries, no owners or
/// times, so the same tree is the same blob) and returns which of `roots` (local paths) any
/// file or symlink in it names: such a tree is only valid where those paths are the same.
pub fn pack(dir: &Path, dest: &Path, roots: &[String]) -> io::Result<Vec<String>> {
    let mut builder = tar::Builder::new(io::BufWriter::new(fs::File::create(dest)?));
    builder.mode(tar::HeaderMode::Deterministic);
    builder.follow_symlinks(false);
    let mut named = Vec::new();
    let mut note = |bytes: &[u8]| {
        for root in roots {
            if !named.contains(root) && memchr::memmem::find(bytes, root.as_bytes()).is_some() {
                named.push(root.clone());
            }
        }
    };
    for (rel, path) in walk(dir)? {
        let meta = fs::symlink_metadata(&path)?;
        let mut header = tar::Header::new_gnu();
        header.set_mode(meta.permissions().mode() & 0o7777);
        header.set_mtime(0);
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path)?;
            note(target.as_os_str().as_encoded_bytes());
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder.append_link(&mut header, &rel, &target)?;
        } else if meta.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            builder.append_data(&mut header, &rel, io::empty())?;
        } else if meta.is_file() {
            let bytes = fs::read(&path)?;
            note(&bytes);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(bytes.len() as u64);
            builder.append_data(&mut header, &rel, bytes.as_slice())?;
        } else {
            return Err(io::Error::other(format!(
                "{} is neither a file, a dir nor a symlink",
                path.display()
            )));
        }
    }
    builder
        .into_inner()?
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    Ok(named)
}

/// Every entry under `dir` (dirs before their contents), sorted, as (relative, absolute).
fn walk(dir: &Path) -> io::Result<Vec<(PathBuf, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut names: Vec<_> = fs::read_dir(dir.join(&rel))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let rel = rel.join(name);
            let abs = dir.join(&rel);
            if fs::symlink_metadata(&abs)?.is_dir() {
                subdirs.push(rel.clone());
            }
            out.push((rel, abs));
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(out)
}

/// Makes `dir` hold exactly the tree in `archive`: unpacked beside it, then swapped in.
pub fn unpack(archive: &Path, dir: &Path) -> io::Result<()> {
    let sibling = |what: &str| {
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        dir.with_file_name(format!("{name}.jetcc-{what}-{}", std::process::id()))
    };
    let (new, old) = (sibling("new"), sibling("old"));
    let _ = fs::remove_dir_all(&new);
    fs::create_dir_all(&new)?;
    let mut ar = tar::Archive::new(io::BufReader::new(fs::File::open(archive)?));
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(false);
    ar.set_overwrite(true);
    if let Err(e) = ar.unpack(&new) {
        let _ = fs::remove_dir_all(&new);
        return Err(e);
    }
    let _ = fs::remove_dir_all(&old);
    match fs::rename(dir, &old) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            let _ = fs::remove_dir_all(&new);
            return Err(e);
        }
    }
    fs::rename(&new, dir)?;
    let _ = fs::remove_dir_all(&old);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn round_trips_files_modes_symlinks_and_empty_dirs_exactly() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("out");
        fs::create_dir_all(src.join("lib/empty")).unwrap();
        fs::write(src.join("gen.rs"), "pub const X: u32 = 1;").unwrap();
        fs::write(src.join("lib/libadd.a"), b"!<arch>\n").unwrap();
        fs::write(src.join("run.sh"), format!("cd {}", src.display())).unwrap();
        fs::set_permissions(src.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        symlink("libadd.a", src.join("lib/libadd.so")).unwrap();
        let tar_a = t.path().join("a.tar");
        let roots = vec![src.to_string_lossy().into_owned(), "/nowhere".to_owned()];
        assert_eq!(pack(&src, &tar_a, &roots).unwrap(), [roots[0].clone()]);
        // Deterministic: the same tree packs to the same bytes.
        let tar_b = t.path().join("b.tar");
        pack(&src, &tar_b, &[]).unwrap();
        assert_eq!(fs::read(&tar_a).unwrap(), fs::read(&tar_b).unwrap());

        let dest = t.path().join("dest");
        fs::create_dir_all(&dest).unwrap();
        fs::write(dest.join("stale.rs"), "old").unwrap();
        unpack(&tar_a, &dest).unwrap();
        assert!(!dest.join("stale.rs").exists(), "the old tree is replaced");
        assert_eq!(
            fs::read(dest.join("gen.rs")).unwrap(),
            b"pub const X: u32 = 1;"
        );
        let mode = fs::metadata(dest.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            fs::read_link(dest.join("lib/libadd.so")).unwrap(),
            Path::new("libadd.a")
        );
        assert!(dest.join("lib/empty").is_dir());
        let left: Vec<_> = fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 4, "no temp dirs left: {left:?}");
    }

    #[test]
    fn a_corrupt_archive_leaves_the_dir_alone() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("out");
        fs::create_dir_all(&dest).unwrap();
        fs::write(dest.join("keep"), "x").unwrap();
        let bad = t.path().join("bad.tar");
        fs::write(&bad, vec![7u8; 1024]).unwrap();
        assert!(unpack(&bad, &dest).is_err());
        assert!(dest.join("keep").exists());
    }
}
