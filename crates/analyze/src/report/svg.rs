//! Inline SVG charts for the HTML report, generated here (no JavaScript, no
//! network): a multi-series line chart, a vertical bar chart and a
//! horizontal share chart. Plain strings; every label is escaped.

use std::fmt::Write;

/// Series colours (colour-blind friendly).
pub const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

/// Escape text for HTML/SVG (element text, `<title>` and quoted
/// attributes alike), control characters first shown as `\xNN`.
pub fn esc(s: &str) -> String {
    snoop_format::shown(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const W: f64 = 900.0;
const H: f64 = 300.0;
const L: f64 = 90.0;
const R: f64 = 20.0;
const T: f64 = 30.0;
const B: f64 = 50.0;

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * p {
            return m * p;
        }
    }
    10.0 * p
}

fn frame(out: &mut String, title: &str, ymax: f64, yfmt: &dyn Fn(f64) -> String) {
    let _ = write!(
        out,
        r##"<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{t}"><rect width="{W}" height="{H}" fill="#fff"/><text x="{L}" y="18" font-size="14" font-weight="bold">{t}</text>"##,
        t = esc(title)
    );
    for i in 0..=4 {
        let y = T + (H - T - B) * (1.0 - i as f64 / 4.0);
        let _ = write!(
            out,
            r##"<line x1="{L}" x2="{x2}" y1="{y:.1}" y2="{y:.1}" stroke="#e0e0e0"/><text x="{tx}" y="{ty:.1}" font-size="11" text-anchor="end">{v}</text>"##,
            x2 = W - R,
            tx = L - 6.0,
            ty = y + 4.0,
            v = esc(&yfmt(ymax * i as f64 / 4.0))
        );
    }
}

/// A line chart: `series` of (name, points (x, y)); x labels by `xfmt`.
pub fn line_chart(
    title: &str,
    series: &[(String, Vec<(f64, f64)>)],
    xfmt: &dyn Fn(f64) -> String,
    yfmt: &dyn Fn(f64) -> String,
) -> String {
    let pts = series.iter().flat_map(|s| s.1.iter());
    let (mut x0, mut x1, mut ymax) = (f64::MAX, f64::MIN, 0f64);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        ymax = ymax.max(y);
    }
    let mut out = String::new();
    if x0 > x1 {
        return format!("<p class=\"empty\">{}: no data</p>", esc(title));
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let ymax = nice_max(ymax);
    frame(&mut out, title, ymax, yfmt);
    let px = |x: f64| L + (W - L - R) * (x - x0) / (x1 - x0);
    let py = |y: f64| T + (H - T - B) * (1.0 - y / ymax);
    for i in 0..=4 {
        let x = x0 + (x1 - x0) * i as f64 / 4.0;
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
            px(x),
            H - B + 16.0,
            esc(&xfmt(x))
        );
    }
    for (i, (name, p)) in series.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        let d: Vec<String> = p
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{c}" stroke-width="1.8" points="{}"/>"#,
            d.join(" ")
        );
        let lx = L + 10.0 + (i % 5) as f64 * 160.0;
        let ly = H - 14.0 + if i >= 5 { 12.0 } else { 0.0 } - 6.0;
        let _ = write!(
            out,
            r#"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{c}"/><text x="{:.1}" y="{ly:.1}" font-size="11">{}</text>"#,
            ly - 9.0,
            lx + 14.0,
            esc(name)
        );
    }
    out.push_str("</svg>");
    out
}

/// A vertical bar chart of (label, value), optionally two series side by side.
pub fn bar_chart(
    title: &str,
    labels: &[String],
    series: &[(String, Vec<f64>)],
    yfmt: &dyn Fn(f64) -> String,
) -> String {
    let ymax = nice_max(
        series
            .iter()
            .flat_map(|s| s.1.iter().copied())
            .fold(0.0, f64::max),
    );
    if labels.is_empty() {
        return format!("<p class=\"empty\">{}: no data</p>", esc(title));
    }
    let mut out = String::new();
    frame(&mut out, title, ymax, yfmt);
    let slot = (W - L - R) / labels.len() as f64;
    let bw = (slot * 0.8) / series.len().max(1) as f64;
    for (li, label) in labels.iter().enumerate() {
        let x = L + slot * li as f64 + slot * 0.1;
        for (si, (_, v)) in series.iter().enumerate() {
            let val = v.get(li).copied().unwrap_or(0.0);
            let h = (H - T - B) * val / ymax;
            let _ = write!(
                out,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                x + bw * si as f64,
                H - B - h,
                bw.max(1.0),
                PALETTE[si % PALETTE.len()],
                esc(label),
                esc(&yfmt(val))
            );
        }
        if labels.len() <= 24 || li % 2 == 0 {
            let _ = write!(
                out,
                r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"#,
                x + slot * 0.4,
                H - B + 14.0,
                esc(label)
            );
        }
    }
    for (si, (name, _)) in series.iter().enumerate() {
        let lx = L + 10.0 + si as f64 * 160.0;
        let _ = write!(
            out,
            r#"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            H - 21.0,
            PALETTE[si % PALETTE.len()],
            lx + 14.0,
            H - 12.0,
            esc(name)
        );
    }
    out.push_str("</svg>");
    out
}

/// Horizontal bars of shares: (label, fraction 0..1, value text).
pub fn share_chart(title: &str, rows: &[(String, f64, String)]) -> String {
    if rows.is_empty() {
        return format!("<p class=\"empty\">{}: no data</p>", esc(title));
    }
    let row_h = 22.0;
    let h = T + row_h * rows.len() as f64 + 10.0;
    let left = 260.0;
    let mut out = format!(
        r##"<svg viewBox="0 0 {W} {h}" width="{W}" height="{h}" role="img" aria-label="{t}"><rect width="{W}" height="{h}" fill="#fff"/><text x="10" y="18" font-size="14" font-weight="bold">{t}</text>"##,
        t = esc(title)
    );
    for (i, (label, frac, text)) in rows.iter().enumerate() {
        let y = T + row_h * i as f64;
        let w = (W - left - 200.0) * frac.clamp(0.0, 1.0);
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end">{}</text><rect x="{left}" y="{y:.1}" width="{w:.1}" height="{:.1}" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="11">{:.1}% {}</text>"#,
            left - 8.0,
            y + 14.0,
            esc(label),
            row_h - 6.0,
            PALETTE[i % PALETTE.len()],
            left + w + 6.0,
            y + 14.0,
            frac * 100.0,
            esc(text)
        );
    }
    out.push_str("</svg>");
    out
}
