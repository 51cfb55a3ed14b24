//! `jetcc --check`: tries a write, a read and a delete on every configured cache tier and
//! says in plain words what is wrong and what to set. Exit code 0 when all work, 1 if not.
//! It also warns (without failing) when a shared tier's writers used the other `[cache] paths`
//! mode.

use jetcc_common::cache::PathsMark;
use jetcc_common::config::Config;
use jetcc_common::exit::ExitCode;
use jetcc_common::farm::{Farm, FarmError, Lifetime};
use jetcc_common::{fsutil, redact};

use crate::tiers::ObjectSession;

pub fn run(config: &Config) -> i32 {
    let mut failed = false;
    // Endpoints and URLs are shown with their credentials masked.
    let mut report = |tier: &str, what: &str, result: Result<&str, String>| {
        let what = redact::credentials(what);
        match result {
            Ok(done) => println!("ok    {tier:<10} {what}: {done}"),
            Err(why) => {
                failed = true;
                let why = redact::credentials(&why);
                match what.as_str() {
                    "" => println!("FAIL  {tier:<10} {why}"),
                    _ => println!("FAIL  {tier:<10} {what}: {why}"),
                }
            }
        }
    };
    report(
        "local",
        &config.cache_dir.display().to_string(),
        check_local(config).map(|()| "write, read, delete"),
    );
    if let Some(dist) = &config.farm {
        let ro = config.jetstream_read_only;
        let rt = runtime();
        let result = rt.block_on(async {
            let farm = Farm::connect(dist, "jetcc --check", Lifetime::Wrapper).await?;
            // The first writer creates the cache, as a build would.
            let res = match ro {
                true => farm.open_resources().await?,
                false => farm.open_or_set_up().await?,
            };
            res.check(ro).await?;
            // Only advice: a mark that cannot be read is no mark.
            Ok::<_, FarmError>(
                res.get_paths_mark(config.paths.other())
                    .await
                    .ok()
                    .flatten(),
            )
        });
        let mark = result.as_ref().ok().cloned().flatten();
        report(
            "jetstream",
            &format!("NATS {}", dist.display_url()),
            result.map(|_| done(ro)).map_err(|e| e.to_string()),
        );
        warn_other_mode("jetstream", config, mark);
    }
    if let Some(cfg) = &config.object {
        let name = cfg.backend.name();
        match ObjectSession::open(cfg) {
            // The diagnosis names the place itself.
            // Each line names the credential source used (never a secret).
            Ok(o) => match o.check() {
                Ok(()) => {
                    let done =
                        format!("{} (credentials: {})", done(o.read_only()), o.credentials());
                    report(name, o.describe(), Ok(&done));
                    let mark = o.paths_mark(config.paths.other()).ok().flatten();
                    warn_other_mode(name, config, mark);
                }
                Err(e) => report(
                    name,
                    "",
                    Err(format!("{} (credentials: {})", e.message, o.credentials())),
                ),
            },
            Err(e) => report(name, "", Err(e.message)),
        }
    }
    match failed {
        true => ExitCode::Failed.code(),
        false => ExitCode::Success.code(),
    }
}

/// Portable and exact keys never meet: a tier whose writers used the other mode serves this
/// client nothing, and says nothing about it during a build.
fn warn_other_mode(tier: &str, config: &Config, mark: Option<PathsMark>) {
    let Some(mark) = mark else { return };
    let days = PathsMark::now("").unix_secs.saturating_sub(mark.unix_secs) / 86_400;
    println!(
        "warn  {tier:<10} entries here were written with paths = \"{other}\" (last by {host}, \
         {days} days ago); this client uses \"{mine}\", and the two never hit each other: set \
         the same [cache] paths (JETCC_PATHS) on every client of this cache",
        other = config.paths.other().name(),
        host = mark.host,
        mine = config.paths.name(),
    );
}

fn done(read_only: bool) -> &'static str {
    if read_only {
        "read (read-only: no write tried)"
    } else {
        "write, read, delete"
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn check_local(config: &Config) -> Result<(), String> {
    let probe = config
        .cache_dir
        .join(format!("check-{}", std::process::id()));
    let body = b"jetcc check";
    fsutil::write_atomic_mkdir(&probe, body).map_err(|e| {
        format!(
            "cannot write in {}: {e} (set [cache.disk] dir or JETCC_DIR to a writable dir)",
            config.cache_dir.display()
        )
    })?;
    let back = std::fs::read(&probe).map_err(|e| format!("cannot read back: {e}"));
    let _ = std::fs::remove_file(&probe);
    match back? == body {
        true => Ok(()),
        false => Err("read back other bytes than were written".into()),
    }
}
