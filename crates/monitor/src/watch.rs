//! `jetcc-monitor watch`: a live terminal view of the farm, redrawn every second and on
//! resize; `q`, Esc or Ctrl-C leave it and restore the terminal, Ctrl-L redraws all of it.
//!
//! Top to bottom: the headline (the farm now, totals since start), the trends of the last
//! minutes ([`trends`]: jobs/s, hit rate, queue, local compiles), each worker's busy slots
//! ([`workers`]), recent failures (only when there are some), the cache tiers. [`layout`]
//! decides who gets the rows of a small terminal.
//!
//! The view is drawn on this thread from the [`Live`] state that the runtime's tasks keep
//! up to date, so a slow server never freezes the keyboard.

mod layout;
mod trends;
mod workers;

use std::collections::BTreeMap;
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
    // Quiet seconds are samples too: the trends scroll on without events.
    live.trend.advance(now);
    let report = live.status.as_ref().map(|s| Report::new(&live.server, s));
    let h = layout::heights(
        f.area().height,
        report.as_ref().map_or(0, |r| r.workers.len()),
        live.tally.tiers.len(),
        live.tally.failures.len(),
    );
    let [head, trends_area, workers_area, failures_area, tiers_area, foot] = Layout::vertical([
        Constraint::Length(h.head),
        Constraint::Length(h.trends),
        Constraint::Length(h.workers),
        Constraint::Length(h.failures),
        Constraint::Length(h.tiers),
        Constraint::Length(h.foot),
    ])
    .areas(f.area());
    // An area without rows is not drawn at all.
    let shown = |a: Rect| !a.is_empty();
    if shown(head) {
        draw_headline(f, head, live, report.as_ref(), now);
    }
    if shown(trends_area) {
        trends::draw(f, trends_area, &live.trend);
    }
    if shown(workers_area) {
        workers::draw(f, workers_area, report.as_ref());
    }
    if shown(failures_area) {
        draw_failures(f, failures_area, &live.tally, now);
    }
    if shown(tiers_area) {
        draw_tiers(f, tiers_area, &live.tally);
    }
    if shown(foot) {
        f.render_widget(
            Paragraph::new("q quit · Ctrl-L redraw").style(Style::new().fg(Color::DarkGray)),
            foot,
        );
    }
}

/// The farm's totals and queue and how fresh they are (or why the last read failed); then
/// what the events said since the monitor started.
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
        Paragraph::new(vec![Line::from(headline), since_start(&live.tally)])
            .block(Block::bordered().title(title)),
        area,
    );
}

/// Totals since the monitor started, from the events.
fn since_start(t: &Tally) -> Line<'static> {
    let count = |m: &BTreeMap<&'static str, u64>, k| m.get(k).copied().unwrap_or(0);
    let hit_rate = t
        .hit_rate()
        .map_or("–".into(), |r| format!("{:.0}%", r * 100.0));
    Line::from(format!(
        "since start: {} jobs ({} failed) · hit rate {hit_rate} · compiles {} local, {} remote · {} fallbacks",
        t.jobs.values().sum::<u64>(),
        count(&t.jobs, "failed"),
        count(&t.compiles, "local"),
        count(&t.compiles, "remote"),
        t.fallbacks.values().sum::<u64>(),
    ))
    .style(Style::new().fg(Color::Gray))
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

#[cfg(test)]
mod tests;
