//! The view drawn into ratatui's test backend (the same buffer a terminal gets), at the sizes
//! operators use and at every small one.

use std::time::Instant;

use jetcc_common::farm::resources::FarmStatus;
use jetcc_common::protocol::events::TierCounts;
use jetcc_common::protocol::worker::WorkerStatus;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

use super::draw;
use crate::live::Live;
use crate::tally::Failure;

fn worker(id: &str, name: &str, slots: u32, free_slots: u32) -> WorkerStatus {
    WorkerStatus {
        id: id.into(),
        host: "box".into(),
        cores: 8,
        slots,
        free_slots,
        toolchains: vec![],
        toolchain_names: vec!["rustc 1.95.0".into()],
        jobs_done: 12,
        jobs_failed: 1,
        version: "0.1.0".into(),
        unix_ms: 0,
        rtt_us: 0,
        name: name.into(),
        ships_for: vec![],
        shipped: vec![],
        shipped_names: vec![],
    }
}

/// `workers` workers (at least two: one named, one known by its host and full), three jobs
/// just finished, six queued, one cache tier and `failures` failures.
fn live(workers: usize, failures: usize) -> Live {
    let now = Instant::now();
    let mut workers: Vec<WorkerStatus> = (2..workers)
        .map(|i| worker(&format!("ci.box-{i}-00000000"), "", 1, 1))
        .collect();
    workers.insert(0, worker("ci.box-202-00000001", "", 2, 0));
    workers.insert(0, worker("ci.box-101-0000abcd", "builder-1", 4, 3));
    let mut live = Live {
        server: "nats://127.0.0.1:4222".into(),
        status: Some(FarmStatus {
            workers,
            queued: 6,
            ..Default::default()
        }),
        read_at: Some(now),
        ..Default::default()
    };
    for _ in 0..3 {
        live.trend.job_finished(now);
    }
    live.trend.queued(Some(6), now);
    live.tally
        .tiers
        .insert("jetstream".into(), TierCounts::default());
    for i in 0..failures {
        live.tally.failures.push_back(Failure {
            at: now,
            text: format!("worker-a: job syn-{i} rustc exited 1"),
        });
    }
    live
}

/// The screen as text, one line per row.
fn render(live: &mut Live, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| draw(f, live)).unwrap();
    let buf = terminal.backend().buffer();
    let mut screen = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            screen.push_str(buf[(x, y)].symbol());
        }
        screen.push('\n');
    }
    screen
}

fn line_with<'s>(screen: &'s str, text: &str) -> &'s str {
    screen
        .lines()
        .find(|l| l.contains(text))
        .unwrap_or_else(|| panic!("no {text:?} on the screen:\n{screen}"))
}

#[test]
fn a_wide_screen_shows_trends_and_gauges_and_no_empty_failures_box() {
    let screen = render(&mut live(2, 0), 150, 40);
    assert!(line_with(&screen, " jobs/s ").contains("max 3"), "{screen}");
    line_with(&screen, " hit rate – · max – ");
    line_with(&screen, " queued 6 · max 6 ");
    line_with(&screen, " local compiles/s ");
    let named = line_with(&screen, "builder-1");
    assert!(named.contains(" 1/4"), "{named}");
    assert!(
        named.contains("12 done · 1 failed · 1 toolchain: rustc 1.95.0"),
        "{named}"
    );
    assert!(line_with(&screen, "box ").contains(" 2/2"), "{screen}");
    line_with(&screen, "since start: 0 jobs");
    assert!(!screen.contains("recent failures"), "{screen}");
}

#[test]
fn failures_get_a_box_when_there_are_some() {
    let screen = render(&mut live(2, 3), 150, 40);
    line_with(&screen, "recent failures");
    line_with(&screen, "syn-2 rustc exited 1");
}

#[test]
fn eighty_by_twenty_four_keeps_every_panel() {
    let screen = render(&mut live(2, 1), 80, 24);
    for title in [" jobs/s ", " hit rate ", " queued ", " local compiles/s "] {
        line_with(&screen, title);
    }
    line_with(&screen, "builder-1");
    line_with(&screen, "recent failures");
    line_with(&screen, "q quit");
    // More workers than rows: the last row says how many more.
    let screen = render(&mut live(30, 0), 80, 24);
    line_with(&screen, "… and 18 more");
}

#[test]
fn no_size_is_too_small() {
    for (workers, failures) in [(2, 0), (30, 8)] {
        let mut live = live(workers, failures);
        for width in 0..=40 {
            for height in 0..=30 {
                render(&mut live, width, height);
            }
        }
        let tiny = render(&mut live, 20, 5);
        assert!(tiny.contains("jetcc"), "{tiny}");
    }
}
