//! A miss streams rustc's stderr to the caller as it is written, not when rustc exits.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use jetcc_e2e::*;

#[test]
fn a_miss_streams_stderr_before_rustc_exits() {
    let p = Project::fixture("fixture");
    let cache = p.dir.parent().unwrap().join("cache");
    assert!(p.build(&Build::plain().arg("-p").arg("mac")).ok());
    let mut mac = None;
    walk(&p.target().join("debug/deps"), &mut |f| {
        let n = f.file_name().unwrap().to_string_lossy();
        if n.starts_with("libmac-") && n.ends_with(".so") {
            mac = Some(f.to_path_buf());
        }
    });
    let mac = mac.expect("libmac .so built");
    let src = p.dir.join("streamy.rs");
    std::fs::write(&src, "mac::make_answer!();\n").unwrap();
    let out_dir = p.dir.join("streamy-out");
    std::fs::create_dir_all(&out_dir).unwrap();

    let sleep = Duration::from_millis(2500);
    let start = Instant::now();
    let mut child = jetcc(&cache)
        .current_dir(&p.dir)
        .env("FIXTURE_MACRO_SLEEP_MS", sleep.as_millis().to_string())
        .args([
            "rustc",
            "--crate-name",
            "streamy",
            "--edition=2021",
            "streamy.rs",
        ])
        .args(["--crate-type", "lib", "--emit=dep-info,metadata,link"])
        .args(["--error-format=json", "--json=artifacts"])
        .arg("--out-dir")
        .arg(&out_dir)
        .arg("--extern")
        .arg(format!("mac={}", mac.display()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let mut seen_at = None;
    while reader.read_line(&mut line).unwrap() > 0 {
        if line.contains("fixture: macro expansion started") {
            seen_at = Some(start.elapsed());
        }
        line.clear();
    }
    let status = child.wait().unwrap();
    let ended = start.elapsed();
    assert!(status.success());
    let seen = seen_at.expect("the macro's line reached the caller");
    assert!(
        ended - seen >= sleep - Duration::from_millis(500),
        "line seen at {seen:?}, rustc ended at {ended:?}: stderr was buffered"
    );
    assert!(out_dir.join("libstreamy.rlib").exists());
}
