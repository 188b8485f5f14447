//! The evaluation report as one SVG picture: per window, the cumulative distribution of the ARE
//! of every method (top row) and the served prediction against the true size, log–log, beside
//! the median-ratio baseline (bottom row).

use std::fmt::Write as _;

use super::{EvalReport, MethodReport, WindowReport};

const PANEL_W: f64 = 380.0;
const PANEL_H: f64 = 280.0;
const LEFT: f64 = 75.0;
const GAP: f64 = 90.0;
const TOP: f64 = 70.0;
/// Vertical room under a panel for its tick labels and axis title.
const BELOW: f64 = 75.0;
/// The CDF's ARE axis ends here; larger errors sit on the right edge.
const MAX_ARE: f64 = 2.0;

/// Colour and dash pattern of a method's curve.
fn style(method: &str) -> (&'static str, &'static str) {
    match method {
        "hawkes" => ("#d62728", ""),
        "hawkes+rf" => ("#1f77b4", ""),
        "hawkes+rf-extended" => ("#2ca02c", ""),
        "median-ratio" => ("#7f7f7f", "6,4"),
        "log-linear" => ("#ff7f0e", "2,3"),
        _ => ("#9467bd", ""),
    }
}

/// Escapes text for XML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn text(svg: &mut String, x: f64, y: f64, anchor: &str, extra: &str, content: &str) {
    let _ = write!(
        svg,
        r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}"{extra}>{}</text>"#,
        escape(content)
    );
}

/// A panel's frame, title and axis titles.
fn frame(svg: &mut String, x0: f64, y0: f64, title: &str, x_title: &str, y_title: &str) {
    let _ = write!(
        svg,
        r#"<rect x="{x0}" y="{y0}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="black"/>"#
    );
    text(
        svg,
        x0 + PANEL_W / 2.0,
        y0 - 12.0,
        "middle",
        r#" font-size="14""#,
        title,
    );
    text(
        svg,
        x0 + PANEL_W / 2.0,
        y0 + PANEL_H + 40.0,
        "middle",
        "",
        x_title,
    );
    let (yx, yy) = (x0 - 52.0, y0 + PANEL_H / 2.0);
    let rotate = format!(r#" transform="rotate(-90 {yx:.1} {yy:.1})""#);
    text(svg, yx, yy, "middle", &rotate, y_title);
}

/// A legend box inside the panel, in its bottom-right corner.
fn legend(svg: &mut String, x0: f64, y0: f64, entries: &[(String, &str, &str, f64)]) {
    let (w, line) = (240.0, 17.0);
    let h = 8.0 + line * entries.len() as f64;
    let (lx, ly) = (x0 + PANEL_W - w - 6.0, y0 + PANEL_H - h - 6.0);
    let _ = write!(
        svg,
        r##"<rect x="{lx:.1}" y="{ly:.1}" width="{w}" height="{h:.1}" fill="white" fill-opacity="0.9" stroke="#999"/>"##
    );
    for (k, (label, color, dash, width)) in entries.iter().enumerate() {
        let y = ly + 4.0 + line * (k as f64 + 0.5);
        let _ = write!(
            svg,
            r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{color}" stroke-width="{width}" stroke-dasharray="{dash}"/>"#,
            lx + 6.0,
            lx + 28.0
        );
        text(
            svg,
            lx + 33.0,
            y + 4.0,
            "start",
            r#" font-size="11""#,
            label,
        );
    }
}

fn cdf_panel(svg: &mut String, w: &WindowReport, x0: f64, y0: f64) {
    frame(
        svg,
        x0,
        y0,
        &format!("window {} s: ARE on the test cascades", w.window),
        "ARE = |predicted − true| / true (larger errors at the right edge)",
        "share of test cascades with ARE ≤ x",
    );
    for tick in 0..=4 {
        let v = tick as f64 * MAX_ARE / 4.0;
        let x = x0 + PANEL_W * v / MAX_ARE;
        text(
            svg,
            x,
            y0 + PANEL_H + 16.0,
            "middle",
            "",
            &format!("{v:.1}"),
        );
        let share = tick as f64 / 4.0;
        let y = y0 + PANEL_H * (1.0 - share);
        text(svg, x0 - 6.0, y + 4.0, "end", "", &format!("{share:.2}"));
        let _ = write!(
            svg,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/>"##,
            x0 + PANEL_W
        );
    }
    let mut entries = Vec::new();
    for m in &w.methods {
        let (color, dash) = style(&m.method);
        let width = if m.served { 3.0 } else { 1.6 };
        if !m.sorted.is_empty() {
            let n = m.sorted.len() as f64;
            let mut points = format!("{x0:.1},{:.1} ", y0 + PANEL_H);
            for (j, v) in m.sorted.iter().enumerate() {
                let x = x0 + PANEL_W * v.min(MAX_ARE) / MAX_ARE;
                let _ = write!(
                    points,
                    "{x:.1},{:.1} {x:.1},{:.1} ",
                    y0 + PANEL_H * (1.0 - j as f64 / n),
                    y0 + PANEL_H * (1.0 - (j + 1) as f64 / n)
                );
            }
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{color}" stroke-width="{width}" stroke-dasharray="{dash}" points="{points}"/>"#
            );
        }
        let served = if m.served { ", served" } else { "" };
        entries.push((
            format!("{}{served}: median {:.3}", m.method, m.median_are),
            color,
            dash,
            width,
        ));
    }
    legend(svg, x0, y0, &entries);
}

fn scatter_panel(svg: &mut String, w: &WindowReport, x0: f64, y0: f64) {
    let shown: Vec<&MethodReport> = w
        .methods
        .iter()
        .filter(|m| m.served || m.method == "median-ratio")
        .collect();
    let values = shown
        .iter()
        .flat_map(|m| m.points.iter().flat_map(|&(p, t)| [p, t]))
        .filter(|v| v.is_finite() && *v >= 1.0);
    let (lo, hi) = values.fold((f64::INFINITY, 1.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let lo = if lo.is_finite() {
        lo.log10().floor()
    } else {
        0.0
    };
    let hi = hi.log10().ceil().max(lo + 1.0);
    let to_x = |v: f64| x0 + PANEL_W * ((v.max(1.0).log10() - lo) / (hi - lo)).clamp(0.0, 1.0);
    let to_y =
        |v: f64| y0 + PANEL_H * (1.0 - ((v.max(1.0).log10() - lo) / (hi - lo)).clamp(0.0, 1.0));
    frame(
        svg,
        x0,
        y0,
        &format!("window {} s: predicted against true size", w.window),
        "true final size (tweets, log scale)",
        "predicted final size (log scale)",
    );
    for decade in lo as i32..=hi as i32 {
        let v = 10f64.powi(decade);
        let label = match decade {
            d if d < 3 => format!("{v:.0}"),
            d if d < 6 => format!("{:.0}k", v / 1e3),
            _ => format!("{:.0}M", v / 1e6),
        };
        text(svg, to_x(v), y0 + PANEL_H + 16.0, "middle", "", &label);
        text(svg, x0 - 6.0, to_y(v) + 4.0, "end", "", &label);
    }
    let _ = write!(
        svg,
        r##"<line x1="{x0}" y1="{:.1}" x2="{:.1}" y2="{y0}" stroke="#555" stroke-dasharray="4,4"/>"##,
        y0 + PANEL_H,
        x0 + PANEL_W
    );
    let mut entries = vec![("predicted = true".to_owned(), "#555", "4,4", 1.0)];
    // The baseline first, so that the served points are drawn on top.
    for m in shown.iter().rev() {
        let (color, _) = style(&m.method);
        for &(p, t) in &m.points {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.6" fill="{color}" fill-opacity="0.55"/>"#,
                to_x(t),
                to_y(if p.is_finite() { p } else { 10f64.powf(hi) })
            );
        }
        let served = if m.served { " (served)" } else { "" };
        entries.push((format!("{}{served}", m.method), color, "", 5.0));
    }
    legend(svg, x0, y0, &entries);
}

impl EvalReport {
    /// The report as an SVG document.
    pub fn to_svg(&self) -> String {
        let columns = self.windows.len().max(1) as f64;
        let width = LEFT + columns * (PANEL_W + GAP);
        let height = TOP + 2.0 * (PANEL_H + BELOW) + 40.0;
        let mut svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
        );
        svg.push_str(r#"<rect width="100%" height="100%" fill="white"/>"#);
        let test = self
            .test_dataset
            .as_deref()
            .map_or_else(String::new, |t| format!(", tested on {t}"));
        text(
            &mut svg,
            LEFT,
            24.0,
            "start",
            r#" font-size="15""#,
            &format!("Tweetoscope eval: {}{test}", self.dataset),
        );
        text(
            &mut svg,
            LEFT,
            42.0,
            "start",
            r##" fill="#444""##,
            &format!(
                "{} ({} training cascades, {} tested)",
                self.split, self.train_cascades, self.test_cascades
            ),
        );
        for (i, w) in self.windows.iter().enumerate() {
            let x0 = LEFT + i as f64 * (PANEL_W + GAP);
            cdf_panel(&mut svg, w, x0, TOP + 20.0);
            scatter_panel(&mut svg, w, x0, TOP + 20.0 + PANEL_H + BELOW);
        }
        svg.push_str("</svg>\n");
        svg
    }
}
