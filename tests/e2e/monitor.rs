//! `jetcc-monitor` against a live farm: `status --json` while a build waits in the queue and
//! drains it, `/metrics` as Prometheus text whose counters only grow, and `watch` in a real
//! terminal (tmux) that shows the workers, redraws on resize and Ctrl-L, and leaves cleanly
//! on `q` and on Ctrl-C; after a build through the farm it shows the trends (jobs/s with a
//! non-zero maximum) and each worker's gauge, and survives a tiny terminal.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use jetcc_e2e::servers::{
    assert_openmetrics, monitor_bin, monitor_status, MetricsServer, Nats, Worker,
};
use jetcc_e2e::*;

use crate::farm::{farm_build, wait_until, REMOTE_UNITS, WORKER_RECORDED};

fn status(nats: &Nats) -> serde_json::Value {
    monitor_status(&nats.url(), &[])
}

fn depth(s: &serde_json::Value) -> u64 {
    s["queue"]["pending"].as_u64().unwrap() + s["queue"]["in_flight"].as_u64().unwrap()
}

#[test]
fn status_and_metrics_follow_a_build_through_the_farm() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let want = p.plain_artifacts();
    let nats = Nats::start(&root.join("nats"));
    let empty = status(&nats);
    assert_eq!(empty["totals"]["workers"], 0, "{empty}");

    // A worker that stopped cleanly a moment ago: clients still see its toolchain served
    // (for one heartbeat TTL), so their jobs wait in the queue for the next worker.
    let mut gone = Worker::start(&nats.url(), &root.join("w0"), 1);
    assert!(gone.terminate().is_some_and(|s| s.success()));
    let metrics = MetricsServer::start(&nats.url(), &root.join("monitor"));
    let before = parse_prometheus(&metrics.scrape());

    let cache = root.join("cache");
    let build = farm_build(&cache, &nats).env("JETCC_DIST_START_TIMEOUT_MS", "30000");
    let dir = p.dir.clone();
    let building = std::thread::spawn(move || build_in(&dir, &build));
    let mut queued = serde_json::Value::Null;
    wait_until(20, "a job waiting in the queue", || {
        queued = status(&nats);
        queued["queue"]["pending"].as_u64().unwrap() > 0
    });
    assert_eq!(queued["totals"]["workers"], 0, "{queued}");

    let _w1 = Worker::start(&nats.url(), &root.join("w1"), 1);
    let _w2 = Worker::start(&nats.url(), &root.join("w2"), 1);
    let s = status(&nats);
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(s["totals"]["workers"], 2, "{s}");
    assert_eq!(s["totals"]["slots"], 2, "{s}");
    assert_eq!(s["totals"]["cores"], 2 * cores, "{s}");
    assert_eq!(s["workers"].as_array().unwrap().len(), 2, "{s}");

    let built = building.join().unwrap();
    assert!(built.ok(), "{}", built.stderr());
    assert_same_artifacts(&want, &artifacts(&p.target()), "built through the farm");
    let s = stats(&cache);
    let remote = s["remote_compiles"].as_u64().unwrap();
    assert_eq!(remote, REMOTE_UNITS.len() as u64, "{}", built.log);
    // Jobs include the C compile of util's build script.
    let jobs = remote + s["c_compiles"]["remote"].as_u64().unwrap();
    let mut drained = serde_json::Value::Null;
    wait_until(20, "the queue to drain", || {
        drained = status(&nats);
        depth(&drained) == 0
    });
    assert!(
        drained["queue"]["acked"].as_u64().unwrap() >= jobs,
        "{drained}"
    );

    // The events the build published: one per unit, one per job.
    let mut after = BTreeMap::new();
    wait_until(10, "the monitor to count the build", || {
        after = parse_prometheus(&metrics.scrape());
        after.get("jetcc_jobs_finished_total{result=\"ok\"}") == Some(&(jobs as f64))
    });
    assert_eq!(
        after.get("jetcc_units_total{outcome=\"miss\"}"),
        Some(&(FIXTURE_UNITS.len() as f64)),
        "{after:?}"
    );
    assert_eq!(
        after.get("jetcc_compiles_total{where=\"remote\"}"),
        Some(&(remote as f64))
    );
    // The build script's run and its C compile, on the farm, counted apart.
    assert_eq!(
        after.get("jetcc_actions_total{kind=\"c_compile\",outcome=\"miss_remote\"}"),
        Some(&(FIXTURE_C_COMPILES as f64)),
        "{after:?}"
    );
    assert_eq!(
        after.get("jetcc_actions_total{kind=\"build_script_run\",outcome=\"miss\"}"),
        Some(&(FIXTURE_RUNS as f64)),
        "{after:?}"
    );
    // The results of rustc jobs are recorded by the workers, not counted by the client
    // (but for the proc macro's link, which the client shared).
    assert_eq!(
        after.get("jetcc_cache_writes_total{tier=\"jetstream\"}"),
        Some(&((FIXTURE_COLD_WRITES - WORKER_RECORDED.len()) as f64)),
        "tiers count every kind, as --show-stats does"
    );
    assert_eq!(after.get("jetcc_workers"), Some(&2.0));
    assert_eq!(after.get("jetcc_jobs_pending"), Some(&0.0));
    // What counts up is a counter, what goes up and down a gauge, as the parser reads them.
    let types = assert_openmetrics(&metrics.scrape());
    for counter in [
        "jetcc_units",
        "jetcc_actions",
        "jetcc_compiles",
        "jetcc_jobs_finished",
        "jetcc_cache_writes",
        "jetcc_worker_jobs_done",
        "jetcc_worker_jobs_failed",
    ] {
        assert_eq!(
            types.get(counter).map(String::as_str),
            Some("counter"),
            "{counter}: {types:?}"
        );
    }
    for gauge in [
        "jetcc_workers",
        "jetcc_jobs_pending",
        "jetcc_worker_busy_slots",
    ] {
        assert_eq!(
            types.get(gauge).map(String::as_str),
            Some("gauge"),
            "{gauge}: {types:?}"
        );
    }
    // Both workers run on this host without a name: one series, their sum.
    let host = jetcc_common::farm::hostname();
    let series = format!("jetcc_worker_jobs_done_total{{worker=\"{host}\"}}");
    wait_until(10, "the workers' heartbeats to count the jobs", || {
        after = parse_prometheus(&metrics.scrape());
        after.get(&series) == Some(&(jobs as f64))
    });
    for (name, v) in &before {
        if name.contains("_total") || name.contains("_count") {
            let now = after.get(name).copied().unwrap_or(0.0);
            assert!(now >= *v, "{name} went down: {v} -> {now}");
        }
    }
}

/// The `worker` label values of the scrape's per-worker series.
fn worker_labels(samples: &BTreeMap<String, f64>) -> std::collections::BTreeSet<String> {
    samples
        .keys()
        .filter(|s| s.starts_with("jetcc_worker_"))
        .filter_map(|s| s.split_once("{worker=\""))
        .map(|(_, v)| v.trim_end_matches("\"}").to_owned())
        .collect()
}

/// A worker's series are labelled with its name (`[worker] name`, else its host), which a
/// restart keeps: a restarted worker continues its series (its counters reset, as a
/// Prometheus counter may) instead of starting new ones under a new process id.
#[test]
fn worker_series_keep_their_name_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let nats = Nats::start(&root.join("nats"));
    let metrics = MetricsServer::start(&nats.url(), &root.join("monitor"));
    let named = [("JETCC_WORKER_NAME", "builder-1")];
    let mut w = Worker::start_with(&nats.url(), &root.join("w"), 2, &named, |_| {});
    let _unnamed = Worker::start(&nats.url(), &root.join("u"), 1);
    let host = jetcc_common::farm::hostname();
    let want: std::collections::BTreeSet<String> = ["builder-1".to_owned(), host].into();
    let mut samples = BTreeMap::new();
    wait_until(20, "both workers in the scrape", || {
        samples = parse_prometheus(&metrics.scrape());
        worker_labels(&samples) == want
    });
    assert_eq!(
        samples.get("jetcc_worker_busy_slots{worker=\"builder-1\"}"),
        Some(&0.0)
    );
    let ids = |s: &serde_json::Value| -> Vec<String> {
        let mut ids: Vec<String> = s["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let before = ids(&status(&nats));

    assert!(w.terminate().is_some_and(|s| s.success()), "{}", w.log());
    let _w = Worker::start_with(&nats.url(), &root.join("w"), 2, &named, |_| {});
    wait_until(20, "the restarted worker in the status", || {
        let now = ids(&status(&nats));
        now.len() == 2 && now != before
    });
    wait_until(20, "a scrape after the restart", || {
        samples = parse_prometheus(&metrics.scrape());
        samples.get("jetcc_workers") == Some(&2.0)
    });
    assert_eq!(worker_labels(&samples), want, "{samples:?}");
}

/// Checks `text` is Prometheus text exposition format (every sample of a family announced by
/// `# TYPE`, `name{label="value",…} number`), and returns the samples by name and labels.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut types = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut words = rest.splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    assert!(name_ok(name), "{line}");
                    assert!(
                        [
                            "counter",
                            "gauge",
                            "histogram",
                            "summary",
                            "untyped",
                            "info"
                        ]
                        .contains(&kind),
                        "{line}"
                    );
                    types.insert(name.to_owned(), kind.to_owned());
                }
                (Some("HELP"), Some(name), _) => assert!(name_ok(name), "{line}"),
                (Some("EOF"), None, None) => {}
                _ => panic!("not a Prometheus comment: {line}"),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let name = series.split('{').next().unwrap();
        assert!(name_ok(name), "{line}");
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap_or_else(|| panic!("bad labels in {line}"));
            for pair in inner.split("\",").filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                assert!(name_ok(k), "{line}");
                assert!(!v.trim_end_matches('"').contains('"'), "{line}");
            }
        }
        let family = ["_total", "_bucket", "_sum", "_count", "_created"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.contains_key(*f)))
            .unwrap_or(name);
        assert!(types.contains_key(family), "no # TYPE for {line}");
        samples.insert(series.to_owned(), value);
    }
    assert!(types.contains_key("jetcc_workers"), "{text}");
    samples
}

/// A tmux server of the test's own (`-S`), so tests and the user's tmux never meet.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// A server on a socket of its own: a server whose last session was just killed may
    /// still be exiting, and a `new-session` on its socket then fails (seen in CI).
    fn new(dir: &Path, name: &str) -> Tmux {
        Tmux {
            socket: dir
                .join(format!("{name}.sock"))
                .to_string_lossy()
                .into_owned(),
        }
    }

    /// Starts the session `watch` running `cmd` on a `cols`×`rows` terminal.
    fn start(&self, cols: u32, rows: u32, cmd: &str) {
        let (cols, rows) = (cols.to_string(), rows.to_string());
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args([
                "new-session",
                "-d",
                "-s",
                "watch",
                "-x",
                &cols,
                "-y",
                &rows,
                cmd,
            ])
            .output()
            .expect("tmux is installed (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux is installed (scripts/test.sh installs it)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "watch"])
    }

    /// Waits up to `secs` for the screen to satisfy `cond`; fails showing the last one.
    fn wait_screen(&self, secs: u64, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if cond(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

#[test]
fn watch_shows_the_workers_and_leaves_cleanly_on_q_and_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let nats = Nats::start(&root.join("nats"));
    let _worker = Worker::start(&nats.url(), &root.join("w1"), 1);
    // An unnamed worker's gauge is labelled with its host.
    let host = jetcc_common::farm::hostname();
    for (key, name) in [("q", "q"), ("C-c", "Ctrl-C")] {
        let tmux = Tmux::new(root, &format!("tmux-{name}"));
        let exit = root.join(format!("exit-{name}"));
        let _ = std::fs::remove_file(&exit);
        let cmd = format!(
            "env JETCC_NATS_URL={} {} watch --every 0.3; echo $? > {2}.tmp; mv {2}.tmp {2}; sleep 60",
            nats.url(),
            monitor_bin().display(),
            exit.display()
        );
        tmux.start(150, 40, &cmd);
        let screen = tmux.wait_screen(30, "the worker on screen", |s| {
            s.contains(&host) && s.contains("1 workers")
        });
        assert!(screen.contains("rustc "), "{screen}");
        // A resize redraws at the new size.
        tmux.run(&["resize-window", "-t", "watch", "-x", "110", "-y", "30"]);
        tmux.wait_screen(10, "a redraw at 110 columns", |s| {
            s.lines()
                .any(|l| l.chars().count() == 110 && l.ends_with('┐'))
        });
        // Another program writes over the view (a background worker's log line, say):
        // Ctrl-L redraws it whole.
        let tty = tmux.run(&["display-message", "-p", "-t", "watch", "#{pane_tty}"]);
        std::fs::write(tty.trim(), "\x1b[5;5HSTRAY-OUTPUT").unwrap();
        tmux.wait_screen(5, "the stray output", |s| s.contains("STRAY-OUTPUT"));
        tmux.run(&["send-keys", "-t", "watch", "C-l"]);
        tmux.wait_screen(5, "a full redraw", |s| {
            !s.contains("STRAY-OUTPUT") && s.contains(&host)
        });
        tmux.run(&["send-keys", "-t", "watch", key]);
        wait_until(10, &format!("watch to exit on {name}"), || exit.exists());
        assert_eq!(
            std::fs::read_to_string(&exit).unwrap().trim(),
            "0",
            "{name}"
        );
        // The terminal is restored: the view's frame is gone from the screen.
        let screen = tmux.screen();
        assert!(!screen.contains("jetcc farm at"), "{name}: {screen}");
    }
}

/// The jobs/s panel's maximum, from its title (` jobs/s 0.4 · max 3 `).
fn jobs_max(screen: &str) -> Option<u64> {
    let line = screen.lines().find(|l| l.contains(" jobs/s "))?;
    let title = &line[line.find(" jobs/s ")?..];
    let max = title.split("max ").nth(1)?;
    let digits: String = max.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[test]
fn watch_draws_the_trends_of_a_build_and_survives_a_tiny_terminal() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let nats = Nats::start(&root.join("nats"));
    let named = [("JETCC_WORKER_NAME", "trend-worker")];
    let _worker = Worker::start_with(&nats.url(), &root.join("w1"), 2, &named, |_| {});
    let tmux = Tmux::new(&root, "tmux");
    let exit = root.join("exit");
    let cmd = format!(
        "env JETCC_NATS_URL={} {} watch --every 0.3; echo $? > {2}.tmp; mv {2}.tmp {2}; sleep 60",
        nats.url(),
        monitor_bin().display(),
        exit.display()
    );
    tmux.start(150, 40, &cmd);
    // The worker's gauge: its name and its busy slots out of two.
    tmux.wait_screen(30, "the worker's gauge", |s| {
        s.lines()
            .any(|l| l.contains("trend-worker") && l.contains("/2"))
    });
    let before = tmux.screen();
    assert_eq!(jobs_max(&before), Some(0), "no jobs yet:\n{before}");

    let cache = root.join("cache");
    p.build_ok(&farm_build(&cache, &nats));
    assert!(stats(&cache)["remote_compiles"].as_u64().unwrap() > 0);
    let screen = tmux.wait_screen(20, "a non-zero jobs/s maximum", |s| {
        jobs_max(s).is_some_and(|m| m > 0)
    });
    for title in [
        " hit rate ",
        " queued ",
        " local compiles/s ",
        "workers: busy slots",
    ] {
        assert!(screen.contains(title), "{title}:\n{screen}");
    }
    assert!(screen.contains("since start: "), "{screen}");

    // A terminal too small for anything but the headline, then a usual one: no crash.
    tmux.run(&["resize-window", "-t", "watch", "-x", "20", "-y", "5"]);
    tmux.wait_screen(10, "a redraw at 20 columns", |s| {
        s.lines()
            .any(|l| l.chars().count() == 20 && l.ends_with('┐'))
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(!exit.exists(), "watch left at 20x5:\n{}", tmux.screen());
    tmux.run(&["resize-window", "-t", "watch", "-x", "100", "-y", "30"]);
    tmux.wait_screen(10, "the trends and the gauge at 100 columns", |s| {
        jobs_max(s).is_some_and(|m| m > 0) && s.contains("trend-worker")
    });

    tmux.run(&["send-keys", "-t", "watch", "q"]);
    wait_until(10, "watch to exit on q", || exit.exists());
    assert_eq!(std::fs::read_to_string(&exit).unwrap().trim(), "0");
    let screen = tmux.screen();
    assert!(!screen.contains("jetcc farm at"), "{screen}");
}
