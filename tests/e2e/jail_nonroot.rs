//! "No root": a worker started as an unprivileged user builds the fixture through the farm on
//! a host whose mounts carry the usual flags: /proc nosuid,nodev,noexec,relatime; /dev
//! nosuid,noexec (and strictatime,nodiratime, the third atime mode); the toolchain on a
//! nosuid,nodev,noatime mount, as a home dir often is. The jail of a non-root worker is a user
//! namespace, where the kernel locks those flags on every mount: its read-only binds of the
//! system dirs and the toolchain must keep them, or every job is refused and the client
//! compiles locally.
//!
//! The host's mounts are left alone: the worker runs in a mount namespace of its own, where
//! they are remounted with those flags (as root, by `unshare` and `mount`) before it drops to
//! the unprivileged user with `setpriv`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use jetcc_e2e::servers::{Nats, Worker};
use jetcc_e2e::*;

use crate::farm::REMOTE_UNITS;

/// The worker's own unprivileged user, as a dedicated service user would be: not `nobody`,
/// whose process count the sandbox probes' fork bombs use up.
const UID: u32 = 64_321;

/// Run as root in the worker's new mount namespace: `$0` the worker, `$1` the sysroot, `$2` an
/// empty dir to stage it in, `$3` the dir to cover with a tmpfs so that the unprivileged user
/// can reach the sysroot (its outermost ancestor others cannot search, e.g. `/root`) or "",
/// `$4` the uid to run the worker as.
const SETUP: &str = r#"set -e
mount -o remount,bind,nosuid,nodev,noexec /proc
mount -o remount,bind,nosuid,noexec,strictatime,nodiratime /dev
mount --bind "$1" "$2"
mount -o remount,bind,ro,nosuid,nodev,noatime "$2"
if [ -n "$3" ]; then
    mount -t tmpfs -o mode=755 jetcc-e2e "$3"
    mkdir -p "$1"
fi
mount --move "$2" "$1"
exec setpriv --reuid="$4" --regid="$4" --clear-groups -- "$0"
"#;

#[test]
fn an_unprivileged_worker_builds_the_fixture_despite_locked_mount_flags() {
    if std::fs::metadata("/proc/self").map_or(true, |m| m.uid() != 0) {
        let why =
            format!("needs root (to make the worker's mount namespace and drop it to uid {UID})");
        skip_or_fail("jail_nonroot", &why);
        return;
    }
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let nats = Nats::start(&root.join("nats"));

    // The worker's dir and config, where the unprivileged user can reach them.
    let worker_tmp = tempfile::Builder::new()
        .prefix("jetcc-e2e-nonroot-")
        .tempdir()
        .unwrap();
    let wt = worker_tmp.path();
    std::fs::set_permissions(wt, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (wdir, stage) = (wt.join("w"), wt.join("stage"));
    std::fs::create_dir_all(&wdir).unwrap();
    std::fs::create_dir_all(&stage).unwrap();
    std::os::unix::fs::chown(&wdir, Some(UID), Some(UID)).unwrap();
    let sysroot = sysroot(&p.dir);
    let config = wt.join("config.toml");
    let rustc = sysroot.join("bin/rustc");
    std::fs::write(
        &config,
        format!("[worker]\ntoolchains = [{:?}]\n", rustc.to_str().unwrap()),
    )
    .unwrap();
    let hide = unsearchable_ancestor(&sysroot);
    assert!(
        hide.as_ref().is_none_or(|h| !wt.starts_with(h)),
        "the worker's dir {} is under {hide:?}, which the setup covers",
        wt.display()
    );

    let env = [("JETCC_CONFIG", config.to_str().unwrap())];
    let w = Worker::start_with(&nats.url(), &wdir, 1, &env, |cmd| {
        let worker = cmd.get_program().to_owned();
        *cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            SETUP,
        ])
        .arg(worker)
        .args([&sysroot, &stage])
        .arg(hide.as_deref().unwrap_or(Path::new("")))
        .arg(UID.to_string());
    });

    // The setup took: the worker runs unprivileged, seeing the flags a typical host has.
    let pid = w.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let uid = UID.to_string();
    assert!(uids.split_whitespace().skip(1).all(|u| u == uid), "{uids}");
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mounts")).unwrap();
    let flags = |dir: &Path| -> String {
        let dir = dir.to_str().unwrap();
        let line = mounts.lines().rfind(|l| l.split(' ').nth(1) == Some(dir));
        line.unwrap_or_else(|| panic!("no mount on {dir}: {mounts}"))
            .split(' ')
            .nth(3)
            .unwrap()
            .to_owned()
    };
    let has = |dir: &str, want: &[&str]| {
        let got = flags(Path::new(dir));
        let got: Vec<&str> = got.split(',').collect();
        for w in want {
            assert!(got.contains(w), "{dir} is mounted {got:?}, not {w}");
        }
    };
    has("/proc", &["nosuid", "nodev", "noexec", "relatime"]);
    has("/dev", &["nosuid", "noexec", "nodiratime"]);
    has(sysroot.to_str().unwrap(), &["nosuid", "nodev", "noatime"]);

    let want = p.plain_artifacts();
    let cache = root.join("cache");
    let built = p.build_ok(&crate::farm::farm_build(&cache, &nats));
    built.assert_each(FIXTURE_UNITS, Outcome::Miss);
    assert_same_artifacts(
        &want,
        &artifacts(&p.target()),
        "farm build via the unprivileged worker",
    );
    // A refused job falls back to a local compile: the build alone proves nothing.
    assert!(
        !w.log().contains("could not start rustc"),
        "the jail refused jobs: {}",
        w.log()
    );
    let s = stats(&cache);
    assert_eq!(s["remote_compiles"], REMOTE_UNITS.len(), "{s}\n{}", w.log());
    // The C compile of util's build script went to the farm too.
    assert_eq!(s["c_compiles"]["remote"], FIXTURE_C_COMPILES, "{s}");
    assert_eq!(
        w.wait_jobs_done(REMOTE_UNITS.len() + FIXTURE_C_COMPILES),
        REMOTE_UNITS.len() + FIXTURE_C_COMPILES,
        "{}",
        w.log()
    );
}

/// The sysroot of the `rustc` the fixture's builds use.
fn sysroot(dir: &Path) -> PathBuf {
    let mut cmd = Command::new("rustc");
    scrub_env(&mut cmd);
    let out = cmd
        .args(["--print", "sysroot"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// The outermost ancestor of `path` that others may not search (`/root` for a rustup
/// toolchain of root's), if any.
fn unsearchable_ancestor(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .filter(|a| std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 == 0))
        .last()
        .map(Path::to_path_buf)
}
