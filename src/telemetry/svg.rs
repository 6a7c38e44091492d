//! Latency over time as a self-contained SVG, drawn with `plotters`' SVG backend: one line per
//! stage (a `<polyline>` each, nothing else in the file is one), log-scaled y axis, a legend with
//! each stage's p50 to the right of the plot.
//!
//! Only plotters' `svg_backend` and `line_series` features are on: without `ttf` it measures text
//! with a built-in estimate and the SVG backend writes `<text>` elements, so the build needs no
//! font libraries (fontconfig, freetype) and the viewer picks the sans-serif font.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::report::{Report, StageSummary};

const W: u32 = 960;
const H: u32 = 480;
/// Width of the legend column right of the plot.
const LEGEND: u32 = 200;
const FONT: &str = "sans-serif";
/// matplotlib's tab10, one colour per stage, repeating after ten.
const COLOURS: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];
const GRID: RGBColor = RGBColor(0xdd, 0xdd, 0xdd);
const FRAME: RGBColor = RGBColor(0x33, 0x33, 0x33);

/// The font at `px` pixels: plotters writes `size / 1.24` into the SVG as the font size.
fn font(px: f64) -> FontDesc<'static> {
    (FONT, px * 1.24).into_font()
}

/// The plot of every stage's per-frame latency (and end-to-end) against time since start.
pub fn latency_plot(report: &Report) -> String {
    let mut svg = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        // The SVG backend writes into a String and the series are clamped to the axes below, so
        // this does not fail; if plotters ever refuses, the file says so instead of a panic.
        draw(&root, report).is_ok() && root.present().is_ok()
    };
    if !drawn {
        return format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\"><text x=\"10\" y=\"20\">the latency plot could not be drawn; report.json has the numbers</text></svg>"
        );
    }
    svg
}

/// The axes' ranges: time since the first point, latency in whole decades (log scale).
struct Axes {
    t_min: f64,
    /// Seconds → the x axis unit.
    t_scale: f64,
    t_unit: &'static str,
    x_max: f64,
    /// The lowest and highest decade, as powers of ten of milliseconds.
    lo: i32,
    hi: i32,
}

impl Axes {
    /// Fits `[seconds, ms]` points.
    fn of<'a>(points: impl IntoIterator<Item = &'a [f64; 2]>) -> Self {
        let (mut t_min, mut t_max) = (f64::INFINITY, 0.0f64);
        let (mut y_min, mut y_max) = (f64::INFINITY, 0.0f64);
        for p in points {
            t_min = t_min.min(p[0]);
            t_max = t_max.max(p[0]);
            if p[1] > 0.0 {
                y_min = y_min.min(p[1]);
            }
            y_max = y_max.max(p[1]);
        }
        if !y_min.is_finite() || y_max <= 0.0 {
            y_min = 0.001;
            y_max = 1.0;
        }
        let lo = y_min.log10().floor();
        let hi = y_max.log10().ceil().max(lo + 1.0);
        let t_min = if t_min.is_finite() { t_min } else { 0.0 };
        let span = if t_max > t_min { t_max - t_min } else { 1.0 };
        // Short runs are labelled in milliseconds.
        let (t_unit, t_scale) = if span < 2.0 {
            ("milliseconds", 1e3)
        } else {
            ("seconds", 1.0)
        };
        Self {
            t_min,
            t_scale,
            t_unit,
            x_max: span * t_scale,
            lo: lo as i32,
            hi: hi as i32,
        }
    }

    fn x(&self, t: f64) -> f64 {
        (t - self.t_min) * self.t_scale
    }

    /// Latency clamped into the y range (zero and sub-range values sit on the bottom edge).
    fn y(&self, ms: f64) -> f64 {
        ms.clamp(10f64.powi(self.lo), 10f64.powi(self.hi))
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    report: &Report,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let stages: Vec<&StageSummary> = report
        .all_stages()
        .filter(|s| !s.series.is_empty())
        .collect();
    let axes = Axes::of(stages.iter().flat_map(|s| s.series.iter()));
    root.fill(&WHITE)?;
    let title = format!(
        "{} — latency per frame ({}, {} frames)",
        report.board, report.camera, report.frames.measured
    );
    let (plot, legend) = root
        .titled(&title, font(14.0))?
        .split_horizontally(W - LEGEND);

    let decades: Vec<f64> = (axes.lo..=axes.hi).map(|d| 10f64.powi(d)).collect();
    let y_range = (10f64.powi(axes.lo)..10f64.powi(axes.hi))
        .log_scale()
        .with_key_points(decades);
    let mut chart = ChartBuilder::on(&plot)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..axes.x_max, y_range)?;
    let x_desc = format!("{} since the first measured frame", axes.t_unit);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_max_light_lines(0)
        .bold_line_style(GRID)
        // Axis lines and tick marks would be <polyline>s too; the frame below is a <rect>.
        .axis_style(TRANSPARENT)
        .x_labels(6)
        .y_label_formatter(&|v| fmt_ms(*v))
        .x_desc(x_desc)
        .y_desc("latency (log scale)")
        .label_style(font(12.0))
        .axis_desc_style(font(12.0))
        .draw()?;
    let ((x0, y0), (x1, y1)) = (
        chart.backend_coord(&(0.0, 10f64.powi(axes.hi))),
        chart.backend_coord(&(axes.x_max, 10f64.powi(axes.lo))),
    );
    root.draw(&Rectangle::new([(x0, y0), (x1, y1)], FRAME))?;
    let (legend_x, _) = legend.get_base_pixel();

    for (i, st) in stages.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        chart.draw_series(LineSeries::new(
            st.series.iter().map(|p| (axes.x(p[0]), axes.y(p[1]))),
            colour.stroke_width(1),
        ))?;
        // The legend right of the plot, from its top edge: a swatch and "name[/per] p50 …".
        let y = y0 + 10 + i as i32 * 18;
        let x = legend_x + 12;
        root.draw(&Rectangle::new(
            [(x, y - 1), (x + 18, y + 2)],
            colour.filled(),
        ))?;
        let per = if st.per == super::per::FRAME {
            String::new()
        } else {
            format!("/{}", st.per)
        };
        root.draw(&Text::new(
            format!("{}{per} p50 {}", st.name, fmt_ms(st.p50_ms)),
            (x + 24, y),
            TextStyle::from(font(12.0)).pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    Ok(())
}

fn fmt_ms(ms: f64) -> String {
    if ms >= 1.0 {
        format!("{ms:.0} ms")
    } else if ms >= 0.001 {
        format!("{:.0} µs", ms * 1e3)
    } else {
        format!("{:.0} ns", ms * 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_span_whole_decades_and_pick_the_time_unit() {
        let a = Axes::of(&[[10.0, 0.0004], [10.5, 3.0], [11.0, 0.0]]);
        assert_eq!((a.lo, a.hi), (-4, 1));
        assert_eq!((a.t_unit, a.x_max), ("milliseconds", 1000.0));
        assert_eq!(a.x(10.5), 500.0);
        // Zero latencies sit on the bottom edge, not at log(0).
        assert_eq!(a.y(0.0), 1e-4);

        let a = Axes::of(&[[0.0, 20.0], [5.0, 20.0]]);
        assert_eq!((a.lo, a.hi), (1, 2), "one value still gets a decade");
        assert_eq!((a.t_unit, a.x_max), ("seconds", 5.0));
    }

    #[test]
    fn axes_without_points_are_a_default_frame() {
        let a = Axes::of(&[]);
        assert_eq!((a.lo, a.hi), (-3, 0));
        assert_eq!((a.t_unit, a.x_max), ("milliseconds", 1000.0));
    }

    #[test]
    fn latencies_are_labelled_in_their_unit() {
        assert_eq!(fmt_ms(0.0001), "100 ns");
        assert_eq!(fmt_ms(0.01), "10 µs");
        assert_eq!(fmt_ms(250.0), "250 ms");
    }
}
