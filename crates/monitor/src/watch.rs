//! `jetcc-monitor watch`: a live terminal view of the farm, redrawn every second and on
//! resize; `q`, Esc or Ctrl-C leave it and restore the terminal, Ctrl-L redraws all of it.
//!
//! The view is drawn on this thread from the [`Live`] state that the runtime's tasks keep
//! up to date, so a slow server never freezes the keyboard.

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table};
use ratatui::Frame;

use crate::live::{Live, Shared};
use crate::status::Report;
use crate::tally::Tally;
use jetcc_common::stats::human_bytes;

/// How often the view is redrawn without a key or resize.
const REDRAW: Duration = Duration::from_secs(1);
/// The tables' headers.
const BOLD: Style = Style::new().add_modifier(Modifier::BOLD);

/// Runs the view until the user leaves it.
pub fn run(live: Shared) -> std::io::Result<()> {
    let mut terminal = ratatui::try_init()?;
    let result = (|| loop {
        terminal.draw(|f| draw(f, &mut live.lock().expect("the view's lock")))?;
        if !event::poll(REDRAW)? {
            continue;
        }
        match event::read()? {
            Event::Key(k) if k.kind == KeyEventKind::Press => {
                let ctrl_c =
                    k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                if ctrl_c || matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) {
                    return Ok(());
                }
                // Ctrl-L: redraw all of it (another program wrote over the view).
                if k.code == KeyCode::Char('l') && k.modifiers.contains(KeyModifiers::CONTROL) {
                    terminal.clear()?;
                }
            }
            // A resize (or anything else) redraws at once.
            _ => {}
        }
    })();
    ratatui::try_restore()?;
    result
}

/// One frame: the layout, then each area in turn, top to bottom.
fn draw(f: &mut Frame, live: &mut Live) {
    let now = Instant::now();
    let report = live.status.as_ref().map(|s| Report::new(&live.server, s));
    let workers = report.as_ref().map_or(0, |r| r.workers.len());
    let tiers = live.tally.tiers.len();
    let failures = live.tally.failures.len();
    // Each table as tall as its rows (plus borders and header); failures take what is left.
    let [head, rates, workers_area, tiers_area, failures_area, foot] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(3),
        Constraint::Length(workers as u16 + 3),
        Constraint::Length(tiers as u16 + 3),
        Constraint::Min(failures as u16 + 2),
        Constraint::Length(1),
    ])
    .areas(f.area());
    draw_headline(f, head, live, report.as_ref(), now);
    draw_rates(f, rates, &mut live.tally, now);
    draw_workers(f, workers_area, report.as_ref());
    draw_tiers(f, tiers_area, &live.tally);
    draw_failures(f, failures_area, &live.tally, now);
    f.render_widget(
        Paragraph::new("q quit · Ctrl-L redraw").style(Style::new().fg(Color::DarkGray)),
        foot,
    );
}

/// The farm's totals and queue, and how fresh they are (or why the last read failed).
fn draw_headline(f: &mut Frame, area: Rect, live: &Live, report: Option<&Report>, now: Instant) {
    let mut headline = vec![Span::raw(
        report.map_or_else(|| "reading the farm's state…".into(), Report::headline),
    )];
    if let Some(e) = &live.error {
        headline.push(Span::styled(
            format!("  ✗ {e}"),
            Style::new().fg(Color::Red),
        ));
    } else if let Some(at) = live.read_at {
        let age = now.duration_since(at).as_secs();
        headline.push(Span::styled(
            format!("  (read {age}s ago)"),
            Style::new().fg(Color::DarkGray),
        ));
    }
    let title = format!(" jetcc farm at {} ", live.server);
    f.render_widget(
        Paragraph::new(Line::from(headline)).block(Block::bordered().title(title)),
        area,
    );
}

/// Rates and totals from the events. `&mut`: reading a rate forgets what left its window.
fn draw_rates(f: &mut Frame, area: Rect, t: &mut Tally, now: Instant) {
    let pct = |r: Option<f64>| r.map_or("–".into(), |r| format!("{:.0}%", r * 100.0));
    let count =
        |m: &std::collections::BTreeMap<&'static str, u64>, k| m.get(k).copied().unwrap_or(0);
    let rate_line = format!(
        "{:.1} jobs/s · hit rate {} (last 10 s), {} since start · compiles: {} local, {} remote · {} fallbacks · jobs failed: {}",
        t.jobs_per_sec(now),
        pct(t.recent_hit_rate(now)),
        pct(t.hit_rate()),
        count(&t.compiles, "local"),
        count(&t.compiles, "remote"),
        t.fallbacks.values().sum::<u64>(),
        count(&t.jobs, "failed"),
    );
    f.render_widget(
        Paragraph::new(rate_line).block(Block::bordered().title(" throughput ")),
        area,
    );
}

/// One row per live worker, from its heartbeat.
fn draw_workers(f: &mut Frame, area: Rect, report: Option<&Report>) {
    let rows = report.iter().flat_map(|r| &r.workers).map(|w| {
        Row::new(vec![
            w.host.clone(),
            w.id.clone(),
            w.cores.to_string(),
            format!("{}/{}", w.busy_slots(), w.slots),
            w.jobs_done.to_string(),
            w.jobs_failed.to_string(),
            format!("{:.1}s", w.last_seen_ms_ago as f64 / 1000.0),
            w.toolchains.join(", "),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(16),
            Constraint::Length(36),
            Constraint::Length(5),
            Constraint::Length(5),
            Constraint::Length(7),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Fill(1),
        ],
    )
    .header(
        Row::new([
            "HOST",
            "WORKER",
            "CORES",
            "BUSY",
            "DONE",
            "FAILED",
            "SEEN",
            "TOOLCHAIN",
        ])
        .style(BOLD),
    )
    .block(Block::bordered().title(" workers "));
    f.render_widget(table, area);
}

/// One row per cache tier the events named, summed since the monitor started.
fn draw_tiers(f: &mut Frame, area: Rect, t: &Tally) {
    let rows = t.tiers.iter().map(|(name, v)| {
        Row::new(vec![
            name.clone(),
            v.hits.to_string(),
            v.misses.to_string(),
            v.errors.to_string(),
            v.writes.to_string(),
            human_bytes(v.bytes_read),
            human_bytes(v.bytes_written),
        ])
    });
    let widths = [
        Constraint::Length(10),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(11),
        Constraint::Length(11),
    ];
    let table = Table::new(rows, widths)
        .header(
            Row::new([
                "TIER", "HITS", "MISSES", "ERRORS", "WRITES", "READ", "WRITTEN",
            ])
            .style(BOLD),
        )
        .block(Block::bordered().title(" cache tiers (events since start) "));
    f.render_widget(table, area);
}

/// The last failures, newest first.
fn draw_failures(f: &mut Frame, area: Rect, t: &Tally, now: Instant) {
    let lines: Vec<Line> = t
        .failures
        .iter()
        .rev()
        .map(|x| {
            Line::from(format!(
                "{:>4}s ago  {}",
                now.duration_since(x.at).as_secs(),
                x.text
            ))
        })
        .collect();
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" recent failures ")),
        area,
    );
}
