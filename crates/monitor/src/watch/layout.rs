//! Where each area of the live view goes, for any terminal size: what matters most gets its
//! rows first (the headline, then the trends, the workers, failures, tiers, the key hint),
//! areas with nothing to show get none, and the trends take what is left. Pure arithmetic,
//! so that it is tested at every size without a terminal.

use ratatui::layout::{Constraint, Layout, Rect};

/// The headline: border, farm line, since-start line, border.
pub const HEAD: u16 = 4;
/// A trend panel: border, at least one line of bars, border.
pub const PANEL_MIN_HEIGHT: u16 = 3;
/// A trend panel as tall as it should be when rows are spare: three lines of bars.
pub const PANEL_HEIGHT: u16 = 5;
/// Trend panels are this wide when the width allows (their titles fit).
pub const PANEL_WIDE: u16 = 36;
/// Narrower panels are not drawn.
pub const PANEL_MIN_WIDTH: u16 = 12;
/// Failures listed at most (the tally keeps as many).
pub const FAILURES_SHOWN: usize = 8;

/// Rows of each area, top to bottom; they add up to the screen's height.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Heights {
    pub head: u16,
    pub trends: u16,
    pub workers: u16,
    pub failures: u16,
    pub tiers: u16,
    pub foot: u16,
}

impl Heights {
    pub fn total(&self) -> u16 {
        self.head + self.trends + self.workers + self.failures + self.tiers + self.foot
    }
}

/// Splits `height` rows among the areas, given how many workers, tiers and failures there
/// are to show.
pub fn heights(height: u16, workers: usize, tiers: usize, failures: usize) -> Heights {
    let mut left = height;
    // `want` rows if there are, what is left if it is at least `min`, else none.
    let mut take = |want: u16, min: u16| -> u16 {
        if left < min.max(1) {
            return 0;
        }
        let h = want.min(left);
        left -= h;
        h
    };
    let rows = |n: usize, extra: u16| u16::try_from(n).unwrap_or(u16::MAX).saturating_add(extra);
    let mut h = Heights {
        head: take(HEAD, 1),
        trends: take(PANEL_HEIGHT, PANEL_MIN_HEIGHT),
        // No workers is one line saying so.
        workers: take(rows(workers.max(1), 2), 3),
        failures: match failures {
            0 => 0,
            n => take(rows(n.min(FAILURES_SHOWN), 2), 3),
        },
        tiers: match tiers {
            0 => 0,
            // Borders and the header.
            n => take(rows(n, 3), 4),
        },
        foot: take(1, 1),
    };
    h.trends += left;
    debug_assert_eq!(h.total(), height);
    h
}

/// The areas of `n` trend panels in `area`, in the order given, row by row; fewer when
/// they do not all fit (at least [`PANEL_MIN_WIDTH`] by [`PANEL_MIN_HEIGHT`] each). Panels
/// are [`PANEL_WIDE`] where the width allows, in as many rows of [`PANEL_HEIGHT`] as the
/// height allows, and narrower rather than dropped when the height does not.
pub fn grid(area: Rect, n: usize) -> Vec<Rect> {
    let n = u16::try_from(n).unwrap_or(u16::MAX);
    if n == 0 || area.height < PANEL_MIN_HEIGHT || area.width < PANEL_MIN_WIDTH {
        return Vec::new();
    }
    let rows_fit = (area.height / PANEL_HEIGHT).max(1);
    let cols_fit = area.width / PANEL_MIN_WIDTH;
    let cols = (area.width / PANEL_WIDE)
        .clamp(1, n)
        .max(n.div_ceil(rows_fit))
        .min(cols_fit);
    let rows = n.div_ceil(cols).min(rows_fit);
    let shown = usize::from(rows * cols).min(usize::from(n));
    Layout::vertical(vec![Constraint::Fill(1); usize::from(rows)])
        .split(area)
        .iter()
        .flat_map(|row| {
            Layout::horizontal(vec![Constraint::Fill(1); usize::from(cols)])
                .split(*row)
                .to_vec()
        })
        .take(shown)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heights_add_up_at_every_size() {
        for height in 0..80 {
            for (workers, tiers, failures) in [(0, 0, 0), (2, 3, 1), (40, 9, 8), (1, 0, 30)] {
                let h = heights(height, workers, tiers, failures);
                assert_eq!(h.total(), height, "{height} rows: {h:?}");
            }
        }
    }

    #[test]
    fn what_matters_most_gets_its_rows_first() {
        // 80x24 with two workers and two tiers, no failures: no failures box, and its rows
        // go to the trends.
        let h = heights(24, 2, 2, 0);
        assert_eq!(
            h,
            Heights {
                head: HEAD,
                trends: 10,
                workers: 4,
                failures: 0,
                tiers: 5,
                foot: 1,
            }
        );
        // With failures, they come before the tiers.
        let h = heights(24, 2, 2, 3);
        assert_eq!((h.failures, h.tiers, h.trends), (5, 5, 5));
        // A tiny terminal: the headline, then nothing that cannot be drawn whole.
        assert_eq!(
            heights(5, 2, 2, 3),
            Heights {
                head: HEAD,
                foot: 1,
                ..Heights::default()
            }
        );
        assert_eq!(heights(2, 2, 2, 3).head, 2);
        // Many workers take the rows tiers would have had; the trends keep theirs.
        let h = heights(24, 40, 2, 0);
        assert_eq!((h.trends, h.workers, h.tiers, h.foot), (5, 15, 0, 0));
    }

    fn sizes(cells: &[Rect]) -> Vec<(u16, u16)> {
        cells.iter().map(|r| (r.width, r.height)).collect()
    }

    #[test]
    fn panels_fit_the_area_they_are_given() {
        let area = |width, height| Rect::new(0, 0, width, height);
        // Wide: one row. 80 columns: two by two if the height allows, else one thin row.
        let wide = sizes(&grid(area(150, 10), 4));
        assert_eq!(wide.len(), 4, "{wide:?}");
        assert!(
            wide.iter().all(|&(w, h)| (37..=38).contains(&w) && h == 10),
            "{wide:?}"
        );
        assert_eq!(sizes(&grid(area(80, 10), 4)), vec![(40, 5); 4]);
        assert_eq!(sizes(&grid(area(80, 5), 4)), vec![(20, 5); 4]);
        // Narrow and tall: one column; narrow and short: what fits.
        assert_eq!(sizes(&grid(area(30, 20), 4)), vec![(30, 5); 4]);
        assert_eq!(sizes(&grid(area(20, 10), 4)), vec![(20, 5); 2]);
        assert_eq!(sizes(&grid(area(20, 3), 4)), vec![(20, 3)]);
        assert!(grid(area(11, 40), 4).is_empty());
        assert!(grid(area(200, 2), 4).is_empty());
        for width in 0..200 {
            for height in 0..30 {
                let a = area(width, height);
                let cells = grid(a, 4);
                assert!(cells.len() <= 4);
                for c in &cells {
                    assert_eq!(c.intersection(a), *c, "{a:?}: {cells:?}");
                    assert!(c.width >= PANEL_MIN_WIDTH && c.height >= PANEL_MIN_HEIGHT);
                }
            }
        }
    }
}
