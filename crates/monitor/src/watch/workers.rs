//! The workers panel: one line gauge per live worker, its busy slots out of its slots, with
//! its name and, as the width allows, its jobs and toolchains.

use std::collections::BTreeMap;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::symbols;
use ratatui::widgets::{Block, LineGauge, Paragraph};
use ratatui::Frame;

use crate::status::{Report, WorkerRow};

/// Names are cut to this many characters.
const NAME_MAX: usize = 24;
/// Rows at least this wide show jobs and toolchain names beside the gauge.
const WIDE: u16 = 72;
/// Rows at least this wide show the toolchains' count beside the gauge.
const MEDIUM: u16 = 40;

pub fn draw(f: &mut Frame, area: Rect, report: Option<&Report>) {
    let workers: &[WorkerRow] = match report {
        Some(r) => &r.workers,
        None => &[],
    };
    let block = Block::bordered().title(" workers: busy slots ");
    let inner = block.inner(area);
    f.render_widget(block, area);
    if inner.is_empty() {
        return;
    }
    if workers.is_empty() {
        let none = "no live workers (start jetcc-worker on a machine with idle cores)";
        f.render_widget(Paragraph::new(none), inner);
        return;
    }
    let names = display_names(workers);
    let name_width = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .min(NAME_MAX);
    let rows = usize::from(inner.height);
    // Too many for the rows: the last row says how many more.
    let shown = if workers.len() > rows {
        rows - 1
    } else {
        workers.len()
    };
    for (i, (w, name)) in workers.iter().zip(&names).take(shown).enumerate() {
        let row = Rect {
            y: inner.y + i as u16,
            height: 1,
            ..inner
        };
        draw_worker(f, row, w, name, name_width);
    }
    if shown < workers.len() {
        let row = Rect {
            y: inner.y + shown as u16,
            height: 1,
            ..inner
        };
        let more = format!(
            "… and {} more (jetcc-monitor status lists them all)",
            workers.len() - shown
        );
        f.render_widget(Paragraph::new(more), row);
    }
}

fn draw_worker(f: &mut Frame, row: Rect, w: &WorkerRow, name: &str, name_width: usize) {
    let toolchains = match w.toolchains.len() {
        1 => "1 toolchain".to_owned(),
        n => format!("{n} toolchains"),
    };
    let info = if row.width >= WIDE {
        format!(
            "{} done · {} failed · {toolchains}: {}",
            w.jobs_done,
            w.jobs_failed,
            w.toolchains.join(", ")
        )
    } else if row.width >= MEDIUM {
        toolchains
    } else {
        String::new()
    };
    let info_width = if row.width >= WIDE {
        row.width / 2
    } else {
        info.chars().count() as u16
    };
    let [gauge_area, _, info_area] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(u16::from(info_width > 0)),
        Constraint::Length(info_width),
    ])
    .areas(row);
    let busy = w.busy_slots();
    let ratio = match w.slots {
        0 => 0.0,
        slots => (f64::from(busy) / f64::from(slots)).clamp(0.0, 1.0),
    };
    // A full worker stands out: more jobs wait for the next free slot.
    let color = if busy >= w.slots {
        Color::Yellow
    } else {
        Color::Green
    };
    let name: String = name.chars().take(name_width).collect();
    let label = format!("{name:<name_width$} {busy:>2}/{:<2}", w.slots);
    let gauge = LineGauge::default()
        .label(label)
        .ratio(ratio)
        .filled_symbol(symbols::line::THICK_HORIZONTAL)
        .unfilled_symbol(symbols::line::HORIZONTAL)
        .filled_style(Style::new().fg(color))
        .unfilled_style(Style::new().fg(Color::DarkGray));
    f.render_widget(gauge, gauge_area);
    if !info.is_empty() {
        f.render_widget(
            Paragraph::new(info).style(Style::new().fg(Color::DarkGray)),
            info_area,
        );
    }
}

/// Each worker's name (`[worker] name`, else its host); workers that share one are told
/// apart by their process id, the part of their id after the host.
pub fn display_names(workers: &[WorkerRow]) -> Vec<String> {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for w in workers {
        *count.entry(w.name.as_str()).or_default() += 1;
    }
    workers
        .iter()
        .map(|w| match w.id.rsplit('-').nth(1) {
            Some(pid) if count[w.name.as_str()] > 1 => format!("{}#{pid}", w.name),
            _ => w.name.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, name: &str) -> WorkerRow {
        WorkerRow {
            id: id.into(),
            name: name.into(),
            host: "box".into(),
            cores: 8,
            slots: 2,
            free_slots: 1,
            toolchains: vec![],
            shipped_toolchains: vec![],
            ships_for: vec![],
            jobs_done: 0,
            jobs_failed: 0,
            version: "0.1.0".into(),
            last_seen_ms_ago: 0,
            rtt_us: 0,
        }
    }

    #[test]
    fn workers_sharing_a_name_are_told_apart() {
        let workers = [
            row("ci.box-101-0000abcd", "box"),
            row("ci.box-202-0000beef", "box"),
            row("ci.box-303-00001234", "builder-1"),
        ];
        assert_eq!(
            display_names(&workers),
            vec!["box#101", "box#202", "builder-1"]
        );
    }
}
