//! The campaign's chart, drawn with plotters as PNG and SVG: the accuracy of each row (mean, error bar
//! +- std over seeds) with the published figure as a red tick, and below it the paired difference to base
//! with its 95% interval. Text is rendered with a font compiled into the binary (Ubuntu Light from
//! epaint_default_fonts, through plotters' ab_glyph feature): no system fonts or fontconfig needed.

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

pub struct ChartRow {
    /// Short label (x axis).
    pub label: String,
    /// (mean, std) of the accuracy (%).
    pub accuracy: Option<(f64, Option<f64>)>,
    pub published: Option<f64>,
    /// (mean, 95% interval) of the paired difference to base (points).
    pub delta: Option<(f64, Option<(f64, f64)>)>,
}

const FONT: &str = "sans-serif";
static REGISTER: Once = Once::new();

fn register_font() {
    REGISTER.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            if plotters::style::register_font(FONT, style, epaint_default_fonts::UBUNTU_LIGHT).is_err() {
                eprintln!("warning: the chart's font did not load; the chart's text may be missing");
            }
        }
    });
}

/// Writes `chart.png` and `chart.svg` into `dir`.
pub fn write(dir: &Path, title: &str, subtitle: &str, rows: &[ChartRow]) -> Result<()> {
    register_font();
    let size = (1100u32, 760u32);
    {
        let path = dir.join("chart.png");
        let root = BitMapBackend::new(&path, size).into_drawing_area();
        draw(&root, title, subtitle, rows)?;
        root.present().map_err(|e| anyhow!("chart.png: {e:?}"))?;
    }
    {
        let path = dir.join("chart.svg");
        let root = SVGBackend::new(&path, size).into_drawing_area();
        draw(&root, title, subtitle, rows)?;
        root.present().map_err(|e| anyhow!("chart.svg: {e:?}"))?;
    }
    Ok(())
}

/// A range around `values` with some margin, at least `min_span` wide.
fn range(values: impl Iterator<Item = f64>, min_span: f64) -> (f64, f64) {
    let (mut lo, mut hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    if !lo.is_finite() {
        return (-1.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(min_span / 10.0);
    lo -= pad;
    hi += pad;
    if hi - lo < min_span {
        let mid = (hi + lo) / 2.0;
        lo = mid - min_span / 2.0;
        hi = mid + min_span / 2.0;
    }
    (lo, hi)
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, subtitle: &str, rows: &[ChartRow]) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing the chart: {e:?}");
    root.fill(&WHITE).map_err(e)?;
    let root = root.titled(title, (FONT, 26)).map_err(e)?;
    root.draw(&Text::new(subtitle.to_string(), (14, 0), (FONT, 15).into_font().color(&RGBColor(90, 90, 90))))
        .map_err(e)?;
    let (top, bottom) = root.split_vertically(440);
    let n = rows.len().max(1) as i32 - 1; // segments 0..=n: one per row
    let label = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) => rows.get(*i as usize).map_or(String::new(), |r| r.label.clone()),
        _ => String::new(),
    };
    let blue = RGBColor(46, 104, 170);
    let red = RGBColor(205, 50, 45);

    // Accuracy.
    let (lo, hi) = range(
        rows.iter().flat_map(|r| {
            let (m, sd) = r.accuracy.unwrap_or((f64::NAN, None));
            [m - sd.unwrap_or(0.0), m + sd.unwrap_or(0.0), r.published.unwrap_or(f64::NAN)]
        }),
        2.0,
    );
    let mut chart = ChartBuilder::on(&top)
        .margin_top(28)
        .margin_left(14)
        .margin_right(24)
        .x_label_area_size(34)
        .y_label_area_size(64)
        .caption("dev accuracy (%): mean ± std over seeds; red tick: published ERNIE 3.0 base", (FONT, 18))
        .build_cartesian_2d((0..n).into_segmented(), lo..hi)
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(rows.len())
        .x_label_formatter(&label)
        .x_label_style((FONT, 15))
        .y_label_style((FONT, 14))
        .y_desc("accuracy (%)")
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(e)?;
    for (i, r) in rows.iter().enumerate() {
        let x = SegmentValue::CenterOf(i as i32);
        if let Some((m, sd)) = r.accuracy {
            match sd {
                Some(sd) => chart
                    .draw_series([ErrorBar::new_vertical(x.clone(), m - sd, m, m + sd, blue.stroke_width(2), 16)])
                    .map_err(e)?,
                None => chart.draw_series([Circle::new((x.clone(), m), 5, blue.filled())]).map_err(e)?,
            };
            chart
                .draw_series([EmptyElement::at((x.clone(), m))
                    + Text::new(format!("{m:.2}"), (10, -8), (FONT, 13).into_font().color(&blue))])
                .map_err(e)?;
        }
        if let Some(p) = r.published {
            chart
                .draw_series([
                    EmptyElement::at((x.clone(), p)) + PathElement::new(vec![(-22, 0), (22, 0)], red.stroke_width(3))
                ])
                .map_err(e)?;
        }
    }

    // Paired deltas.
    let (dlo, dhi) = range(
        rows.iter().flat_map(|r| {
            let (m, ci) = r.delta.unwrap_or((f64::NAN, None));
            let (a, b) = ci.unwrap_or((m, m));
            [m, a, b, 0.0]
        }),
        1.0,
    );
    let mut chart = ChartBuilder::on(&bottom)
        .margin_top(10)
        .margin_left(14)
        .margin_right(24)
        .margin_bottom(10)
        .x_label_area_size(34)
        .y_label_area_size(64)
        .caption(
            "paired difference to base (points): mean and 95% interval over seeds (FMA rows: jackknife); green: it excludes 0",
            (FONT, 18),
        )
        .build_cartesian_2d((0..n).into_segmented(), dlo..dhi)
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(rows.len())
        .x_label_formatter(&label)
        .x_label_style((FONT, 15))
        .y_label_style((FONT, 14))
        .y_desc("Δ accuracy")
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(e)?;
    chart
        .draw_series(LineSeries::new([(SegmentValue::Exact(0), 0.0), (SegmentValue::Last, 0.0)], BLACK.stroke_width(1)))
        .map_err(e)?;
    for (i, r) in rows.iter().enumerate() {
        let x = SegmentValue::CenterOf(i as i32);
        let Some((m, ci)) = r.delta else { continue };
        let excludes = ci.is_some_and(|(a, b)| a > 0.0 || b < 0.0);
        let color = if excludes { RGBColor(20, 130, 60) } else { RGBColor(110, 110, 110) };
        match ci {
            Some((a, b)) => {
                chart.draw_series([ErrorBar::new_vertical(x.clone(), a, m, b, color.stroke_width(2), 16)]).map_err(e)?
            }
            None => chart.draw_series([Circle::new((x.clone(), m), 5, color.filled())]).map_err(e)?,
        };
        let text = if ci.is_some() { format!("{m:+.2}") } else { format!("{m:+.2} (n=1)") };
        chart
            .draw_series([
                EmptyElement::at((x.clone(), m)) + Text::new(text, (10, -8), (FONT, 13).into_font().color(&color))
            ])
            .map_err(e)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_png_and_svg_with_text() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![
            ChartRow { label: "base".into(), accuracy: Some((69.5, Some(0.4))), published: Some(76.11), delta: None },
            ChartRow {
                label: "+adv".into(),
                accuracy: Some((70.1, Some(0.3))),
                published: Some(76.39),
                delta: Some((0.6, Some((0.1, 1.1)))),
            },
            ChartRow { label: "+fma".into(), accuracy: Some((69.9, None)), published: None, delta: Some((0.4, None)) },
            ChartRow { label: "+rdrop".into(), accuracy: None, published: Some(76.3), delta: None },
        ];
        write(dir.path(), "TEST strategy table", "4 of 6 cells", &rows).unwrap();
        let png = std::fs::read(dir.path().join("chart.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let svg = std::fs::read_to_string(dir.path().join("chart.svg")).unwrap();
        assert!(
            svg.contains("+adv") && svg.contains("TEST strategy table") && svg.contains("+0.60"),
            "{}",
            &svg[..svg.len().min(500)]
        );
    }
}
