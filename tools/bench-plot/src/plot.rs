//! Draws the growth curves: x = total ranks on a log2 axis, y = seconds on a log axis, one line per
//! measure, and a dashed reference that grows like ranks per node. On log axes a cost that grows
//! like the reference runs parallel to it; a steeper line grows faster than the per-node load.

use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use thiserror::Error;

use crate::tsv::Row;

/// Values below this are drawn at it: a log axis has no zero (a 0.000 freeze p50 happens).
const FLOOR_S: f64 = 1e-3;
const SIZE: (u32, u32) = (960, 680);
const LEGEND_HEIGHT: u32 = 90;

#[derive(Debug, Error)]
pub enum PlotError {
    #[error("drawing the chart failed")]
    Draw(#[from] DrawingAreaErrorKind<std::io::Error>),
}

/// One line of the chart: points are (log2 of total ranks, seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub label: String,
    pub color: RGBColor,
    pub points: Vec<(f64, f64)>,
}

/// Legend label, colour, and the row's value.
type Measure = (&'static str, RGBColor, fn(&Row) -> f64);

const MEASURES: [Measure; 5] = [
    (
        "start (submit -> all running)",
        RGBColor(31, 119, 180),
        |r| r.start_s,
    ),
    ("suspend -> frozen p99", RGBColor(255, 127, 14), |r| {
        r.freeze_p99_s
    }),
    ("checkpoint round trip", RGBColor(44, 160, 44), |r| r.ckpt_s),
    ("job held (checkpoint)", RGBColor(214, 39, 40), |r| r.held_s),
    (
        "restore (requeue -> all running)",
        RGBColor(148, 103, 189),
        |r| r.restore_s,
    ),
];

/// The measured curves, in legend order. `rows` must be non-empty and sorted by ranks (tsv::parse).
pub fn curves(rows: &[Row]) -> Vec<Curve> {
    MEASURES
        .iter()
        .map(|(label, color, get)| Curve {
            label: (*label).to_owned(),
            color: *color,
            points: rows
                .iter()
                .map(|r| (x_of(r.ranks), get(r).max(FLOOR_S)))
                .collect(),
        })
        .collect()
}

/// The reference: the smallest job's restore time scaled by ranks per node relative to that job.
pub fn reference(rows: &[Row]) -> Option<Curve> {
    let base = rows.first()?;
    let per_node = f64::from(base.ranks_per_node);
    Some(Curve {
        label: format!(
            "grows like ranks per node (restore at {} ranks, scaled)",
            base.ranks
        ),
        color: RGBColor(90, 90, 90),
        points: rows
            .iter()
            .map(|r| {
                (
                    x_of(r.ranks),
                    (base.restore_s * f64::from(r.ranks_per_node) / per_node).max(FLOOR_S),
                )
            })
            .collect(),
    })
}

fn x_of(ranks: u32) -> f64 {
    f64::from(ranks).log2()
}

/// Axis labels: 2^x at whole x (the job sizes are powers of two), nothing between.
fn x_label(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-9 && *x >= 0.0 {
        format!("{}", 2f64.powf(x.round()))
    } else {
        String::new()
    }
}

fn y_label(y: &f64) -> String {
    // Three significant digits without trailing zeros: 0.002, 0.05, 1, 20, 300.
    let digits = (2 - y.log10().floor() as i32).max(0) as usize;
    let s = format!("{y:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// Renders the chart as an SVG document.
pub fn render(rows: &[Row], title: &str) -> Result<String, PlotError> {
    let lines = curves(rows);
    let reference = reference(rows);
    let all = || {
        lines
            .iter()
            .chain(reference.iter())
            .flat_map(|c| c.points.iter().copied())
    };
    let (x_lo, x_hi) = all().fold((f64::MAX, f64::MIN), |(lo, hi), (x, _)| {
        (lo.min(x), hi.max(x))
    });
    let (y_lo, y_hi) = all().fold((f64::MAX, f64::MIN), |(lo, hi), (_, y)| {
        (lo.min(y), hi.max(y))
    });

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        // The legend gets its own strip below the chart: inside it would hide flat curves.
        let (top, bottom) = root.split_vertically(SIZE.1 - LEGEND_HEIGHT);
        let mut chart = ChartBuilder::on(&top)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(
                (x_lo - 0.4)..(x_hi + 0.4),
                (y_lo / 1.8..y_hi * 1.8).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc("total ranks (log2 axis)")
            .y_desc("seconds (log axis)")
            .x_labels(((x_hi - x_lo).ceil() as usize + 2).max(2))
            .x_label_formatter(&x_label)
            .y_label_formatter(&y_label)
            .light_line_style(RGBColor(235, 235, 235))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .draw()?;

        if let Some(r) = &reference {
            let style = ShapeStyle::from(r.color).stroke_width(2);
            chart.draw_series(DashedLineSeries::new(r.points.iter().copied(), 8, 6, style))?;
        }
        for c in &lines {
            let style = ShapeStyle::from(c.color).stroke_width(2);
            chart.draw_series(LineSeries::new(c.points.iter().copied(), style))?;
            chart.draw_series(
                c.points
                    .iter()
                    .map(|&p| Circle::new(p, 4, c.color.filled())),
            )?;
        }

        // Legend: the reference first, then the measures, in columns of three entries.
        let entries = reference
            .iter()
            .map(|c| (c, true))
            .chain(lines.iter().map(|c| (c, false)));
        for (i, (c, dashed)) in entries.enumerate() {
            let x = 80 + (i / 3) as i32 * 440;
            let y = 14 + (i % 3) as i32 * 26;
            let style = ShapeStyle::from(c.color).stroke_width(2);
            if dashed {
                bottom.draw(&DashedPathElement::new(
                    vec![(x, y), (x + 28, y)],
                    6,
                    4,
                    style,
                ))?;
            } else {
                bottom.draw(&PathElement::new(vec![(x, y), (x + 28, y)], style))?;
                bottom.draw(&Circle::new((x + 14, y), 4, c.color.filled()))?;
            }
            let font = ("sans-serif", 14).into_font().color(&BLACK);
            let font = font.pos(Pos::new(HPos::Left, VPos::Center));
            bottom.draw(&Text::new(c.label.clone(), (x + 36, y), font))?;
        }
        root.present()?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ranks: u32, per_node: u32, restore: f64) -> Row {
        Row {
            ranks,
            ranks_per_node: per_node,
            start_s: 1.0,
            freeze_p50_s: 0.0,
            freeze_p99_s: 0.05,
            ckpt_s: 2.0,
            held_s: 1.5,
            restore_s: restore,
        }
    }

    #[test]
    fn reference_scales_the_smallest_restore_by_ranks_per_node() {
        let rows = [row(4, 1, 3.0), row(16, 4, 5.0), row(128, 32, 40.0)];
        let r = reference(&rows).unwrap();
        assert_eq!(r.points, vec![(2.0, 3.0), (4.0, 12.0), (7.0, 96.0)]);
    }

    #[test]
    fn zero_is_drawn_at_the_floor() {
        let rows = [row(4, 1, 0.0)];
        assert_eq!(reference(&rows).unwrap().points, vec![(2.0, FLOOR_S)]);
        assert!(curves(&rows)
            .iter()
            .all(|c| c.points.iter().all(|p| p.1 >= FLOOR_S)));
    }

    #[test]
    fn labels() {
        assert_eq!(x_label(&4.0), "16");
        assert_eq!(x_label(&4.5), "");
        assert_eq!(y_label(&0.002), "0.002");
        assert_eq!(y_label(&0.05), "0.05");
        assert_eq!(y_label(&1.0), "1");
        assert_eq!(y_label(&20.0), "20");
        assert_eq!(y_label(&300.0), "300");
    }

    #[test]
    fn renders_an_svg_with_title_and_legend() {
        let rows = [
            row(4, 1, 3.0),
            row(16, 4, 5.0),
            row(64, 16, 11.0),
            row(128, 32, 20.0),
        ];
        let svg = render(&rows, "scale test").unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("scale test"));
        assert!(svg.contains("checkpoint round trip"));
        assert!(svg.contains("grows like ranks per node"));
    }
}
