//! The trend panels: one sparkline per [`Metric`], newest second at the right edge, titled
//! with its value now and its maximum over the window the [`Trend`] keeps.

use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::widgets::{Block, RenderDirection, Sparkline};
use ratatui::Frame;

use super::layout;
use crate::trend::{Metric, Summary, Trend};

/// One panel: what it draws and how it is called.
struct Panel {
    metric: Metric,
    name: &'static str,
    color: Color,
}

/// In the order they get space: the farm's throughput, the shared cache's hit rate, the
/// queue, then compiles that stayed local.
const PANELS: [Panel; 4] = [
    Panel {
        metric: Metric::Jobs,
        name: "jobs/s",
        color: Color::Green,
    },
    Panel {
        metric: Metric::HitRate,
        name: "hit rate",
        color: Color::Cyan,
    },
    Panel {
        metric: Metric::Queued,
        name: "queued",
        color: Color::Yellow,
    },
    Panel {
        metric: Metric::Local,
        name: "local compiles/s",
        color: Color::Magenta,
    },
];

/// As many panels as fit in `area`.
pub fn draw(f: &mut Frame, area: Rect, trend: &Trend) {
    for (panel, cell) in PANELS.iter().zip(layout::grid(area, PANELS.len())) {
        draw_panel(f, cell, trend, panel);
    }
}

fn draw_panel(f: &mut Frame, area: Rect, trend: &Trend, panel: &Panel) {
    let summary = trend.summary(panel.metric);
    let block = Block::bordered().title(title(panel, summary));
    let bars = usize::from(block.inner(area).width);
    // Percentages on a fixed scale; counts scaled to the window's maximum, so that a bar's
    // height does not change as the view scrolls.
    let max = match panel.metric {
        Metric::HitRate => 100,
        _ => summary.max.unwrap_or(0),
    };
    let sparkline = Sparkline::default()
        .block(block)
        .data(trend.newest(panel.metric, bars))
        .max(max)
        .direction(RenderDirection::RightToLeft)
        .style(Style::new().fg(panel.color));
    f.render_widget(sparkline, area);
}

/// ` jobs/s 1.5 · max 4 `: "–" where there is no value (no lookups, the queue unread).
fn title(panel: &Panel, s: Summary) -> String {
    let unit = if panel.metric == Metric::HitRate {
        "%"
    } else {
        ""
    };
    let now = match (s.now, panel.metric) {
        (None, _) => "–".to_owned(),
        (Some(v), Metric::Jobs | Metric::Local | Metric::Remote) => format!("{v:.1}"),
        (Some(v), _) => format!("{v:.0}{unit}"),
    };
    let max = s.max.map_or("–".to_owned(), |m| format!("{m}{unit}"));
    format!(" {} {now} · max {max} ", panel.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_say_now_and_max_or_that_there_is_none() {
        let s = |now, max| Summary { now, max };
        assert_eq!(
            title(&PANELS[0], s(Some(1.5), Some(4))),
            " jobs/s 1.5 · max 4 "
        );
        assert_eq!(
            title(&PANELS[1], s(Some(93.0), Some(100))),
            " hit rate 93% · max 100% "
        );
        assert_eq!(title(&PANELS[1], s(None, None)), " hit rate – · max – ");
        assert_eq!(
            title(&PANELS[2], s(Some(7.0), Some(12))),
            " queued 7 · max 12 "
        );
    }
}
