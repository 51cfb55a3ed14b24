//! The jail's start-up self-test: a trivial command run as a job's compiler would be (its own
//! root, namespaces, chroot, the job's user, rlimits, cgroups, Landlock). A host that cannot
//! do one of these fails it, and the worker exits with the "cannot sandbox" code instead of
//! pulling jobs only to refuse each.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::AsyncReadExt;

use crate::jail::{self, Plan, Prepared};
use crate::job::ReadyLaunchers;
use crate::sandbox::Limits;

/// What the self-test runs with: the worker's own settings.
pub struct Setup<'a> {
    /// An empty dir of the worker's to run it in (removed after).
    pub dir: &'a Path,
    pub run_as: Option<(u32, u32)>,
    pub limits: Limits,
    pub enforce: bool,
    /// A job's launcher is taken from these, in its cgroups where the host gives them.
    pub launchers: &'a Arc<ReadyLaunchers>,
}

/// The trivial command: `true`, where the jail binds the system dirs.
const PROGRAMS: &[&str] = &["/usr/bin/true", "/bin/true"];

/// Runs `true` in a jail; `Err` says what failed.
pub async fn run(setup: &Setup<'_>) -> Result<(), String> {
    let program = PROGRAMS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or("no `true` in /usr/bin or /bin to run")?;
    let dir = setup.dir.join("self-test");
    let root = dir.join("root");
    let out = PathBuf::from("/out");
    std::fs::create_dir_all(jail::inside(&root, &out))
        .map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let plan = Plan {
        root,
        sysroot: None,
        program,
        args: Vec::new(),
        env: Vec::new(),
        cwd: out.clone(),
        writable: vec![out.clone()],
        readable: vec![out],
        run_as: setup.run_as,
        memory_bytes: setup.limits.memory_bytes,
        processes: setup.limits.processes,
        file_size_bytes: setup.limits.file_size_bytes,
        enforce: setup.enforce,
    };
    let plan_file = dir.join("plan.json");
    let result = std::fs::write(
        &plan_file,
        serde_json::to_vec(&plan).expect("plan serializes"),
    )
    .map_err(|e| format!("cannot write {}: {e}", plan_file.display()));
    let ready = setup.launchers.take().map_err(|e| e.to_string())?;
    let result = match result {
        Ok(()) => launch(ready.launcher, &plan_file).await,
        Err(e) => Err(e),
    };
    if let Some(c) = ready.cgroup {
        c.remove();
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Runs a prepared launcher on `plan_file`; `Ok` if the command ran and exited 0.
async fn launch(prepared: Prepared, plan_file: &Path) -> Result<(), String> {
    let mut launched = prepared.launch(plan_file).map_err(|e| e.to_string())?;
    let mut stderr = launched.stderr.take().expect("a new launch has its stderr");
    // `true` writes nothing: the launcher's own error, if any, is short.
    let mut said = Vec::new();
    let _ = stderr.read_to_end(&mut said).await;
    let code = launched.wait().await.map_err(|e| e.to_string())?;
    if code == 0 {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&said);
    let why = said.trim().trim_start_matches(jail::LAUNCH_ERROR_PREFIX);
    Err(format!(
        "a jailed `true` ended with exit code {code}: {why}"
    ))
}
