//! Times the jail's launch alone, as the worker starts a job's compiler:
//! `jail_launch PLAN REPS [PREPARE]` runs the plan (a `jail::Plan` as JSON) REPS times through
//! one zygote and prints each launch's wall time, from the request to the exit code, then the
//! median and the fastest. PREPARE, a shell command, runs before each launch, untimed (e.g.
//! to lay out a fresh job root).

use std::time::{Duration, Instant};

use jetcc_worker::jail::{Launcher, Zygote};
use tokio::io::AsyncReadExt;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(plan), Some(reps)) = (args.get(1), args.get(2).and_then(|r| r.parse().ok())) else {
        eprintln!("usage: jail_launch PLAN REPS [PREPARE]");
        std::process::exit(2);
    };
    let prepare = args.get(3);
    let zygote = Zygote::start().expect("the jail's zygote");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut took: Vec<Duration> = rt.block_on(async {
        let launcher = Launcher::new(zygote).expect("a launcher");
        let mut took = Vec::new();
        for _ in 0..reps {
            if let Some(prepare) = prepare {
                let status = std::process::Command::new("sh")
                    .args(["-c", prepare])
                    .status();
                assert!(status.is_ok_and(|s| s.success()), "{prepare} failed");
            }
            let start = Instant::now();
            let mut launched = launcher.launch(plan.as_ref()).expect("launch");
            let (mut out, mut err) = (
                launched.stdout.take().unwrap(),
                launched.stderr.take().unwrap(),
            );
            let (mut said, mut told) = (Vec::new(), Vec::new());
            let _ = tokio::join!(out.read_to_end(&mut said), err.read_to_end(&mut told));
            let code = launched.wait().await.expect("an exit code");
            took.push(start.elapsed());
            if code != 0 {
                eprintln!("exit code {code}: {}", String::from_utf8_lossy(&told));
                std::process::exit(1);
            }
        }
        took
    });
    for t in &took {
        println!("{:.3} ms", t.as_secs_f64() * 1e3);
    }
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "median {:.3} ms, fastest {:.3} ms",
        ms(took[took.len() / 2]),
        ms(took[0])
    );
}
