//! Latency over time as a self-contained SVG: one polyline per stage, log-scaled y axis.

use std::fmt::Write;

use super::report::{Report, StageSummary};

const W: f64 = 960.0;
const H: f64 = 480.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 160.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLOURS: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The plot of every stage's per-frame latency (and end-to-end) against time since start.
pub fn latency_plot(report: &Report) -> String {
    let stages: Vec<&StageSummary> = report
        .all_stages()
        .filter(|s| !s.series.is_empty())
        .collect();
    let points = stages.iter().flat_map(|s| s.series.iter());
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
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x = |t: f64| LEFT + (t - t_min) / span * pw;
    let y = |ms: f64| TOP + ph - (ms.max(10f64.powf(lo)).log10() - lo) / (hi - lo) * ph;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="24" font-size="14">{} — latency per frame ({}, {} frames)</text>"#,
        escape(&report.board),
        escape(&report.camera),
        report.frames.measured
    );
    let mut decade = lo;
    while decade <= hi {
        let yy = y(10f64.powf(decade));
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/>"##,
            LEFT + pw
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            yy + 4.0,
            fmt_ms(10f64.powf(decade))
        );
        decade += 1.0;
    }
    for i in 0..=5 {
        let t = span * i as f64 / 5.0;
        let xx = x(t_min + t);
        let _ = writeln!(
            s,
            r#"<text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            TOP + ph + 18.0,
            fmt_tick(t * t_scale)
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{t_unit} since the first measured frame</text>"#,
        LEFT + pw / 2.0,
        H - 10.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">latency (log scale)</text>"#,
        TOP + ph / 2.0
    );
    for (i, st) in stages.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut pts = String::new();
        for p in &st.series {
            let _ = write!(pts, "{:.1},{:.1} ", x(p[0]), y(p[1]));
        }
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.2" points="{}"/>"#,
            pts.trim_end()
        );
        let ly = TOP + 14.0 + i as f64 * 18.0;
        let lx = LEFT + pw + 12.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="3"/>"#,
            ly - 4.0,
            lx + 18.0,
            ly - 4.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{ly:.1}">{}{} p50 {}</text>"#,
            lx + 24.0,
            escape(&st.name),
            if st.per == super::per::FRAME {
                String::new()
            } else {
                format!("/{}", escape(&st.per))
            },
            fmt_ms(st.p50_ms)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn fmt_tick(v: f64) -> String {
    if v >= 100.0 || v == 0.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
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
