//! Inline SVG charts for the HTML report, generated here (no JavaScript, no
//! network): a time-series line chart, a vertical bar chart and a
//! horizontal share chart, plus the axis tick algorithm they share. Every
//! chart fills its figure's width at a fixed height: x positions are in
//! percent of the plot, text in CSS pixels, so charts stretch with the
//! window while their labels stay readable. Data marks sit in a
//! `<g class="marks">`, and every mark or time slot carries an SVG
//! `<title>` with its exact values, which browsers show on hover. Plain
//! strings; every label is escaped.

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

/// About how many intervals a value axis is divided into.
const VALUE_INTERVALS: f64 = 5.0;
/// At most this many intervals on a time axis.
const TIME_INTERVALS: u64 = 8;

/// The smallest "round" step (1, 2 or 5 times a power of ten) that is at
/// least `raw` (1 for anything not positive).
pub fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        // A relative tolerance keeps 0.3 / 0.1-style float noise from
        // stepping up a whole notch.
        if raw <= m * p * (1.0 + 1e-9) {
            return m * p;
        }
    }
    10.0 * p
}

/// Ticks of a value axis from 0 up to at least `max`: a round step (see
/// [`nice_step`]) giving about five intervals; whole numbers only when
/// `integer` (counts), so no two ticks of a count axis read the same.
pub fn value_ticks(max: f64, integer: bool) -> Vec<f64> {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        0.0
    };
    let mut step = nice_step(max / VALUE_INTERVALS);
    if integer {
        step = step.max(1.0).round();
    }
    let n = ((max / step) - 1e-9).ceil().max(1.0) as u64;
    (0..=n).map(|i| i as f64 * step).collect()
}

/// Round time steps in ns: 1, 2, 5 x 10^k up to 500 ms, then the steps a
/// clock has (1, 2, 5, 10, 15, 30 s; 1, 2, 5, 10, 15, 30 min; 1, 2, 3, 6,
/// 12 h; days).
fn time_steps() -> impl Iterator<Item = u64> {
    const S: u64 = 1_000_000_000;
    let sub = (0..9).flat_map(|k| [1u64, 2, 5].map(|m| m * 10u64.pow(k)));
    let clock = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600]
        .into_iter()
        .chain([2, 3, 6, 12, 24].map(|h| h * 3600))
        .map(|s| s * S);
    let days = (0..).flat_map(|k: u32| [2u64, 5, 10].map(|m| m * 86_400 * S * 10u64.pow(k)));
    sub.chain(clock)
        .chain(days.take_while(|&d| d < u64::MAX / 100))
}

/// Ticks of a time axis over `[0, span_ns]`: the smallest round step (see
/// `time_steps`) giving at most eight intervals, and the multiples of it up
/// to `span_ns`. Returns (step, ticks).
pub fn time_ticks(span_ns: u64) -> (u64, Vec<u64>) {
    let step = time_steps()
        .find(|&s| {
            span_ns / s < TIME_INTERVALS || span_ns / s == TIME_INTERVALS && span_ns % s == 0
        })
        .unwrap_or(u64::MAX / 100);
    let ticks = (0..=span_ns / step).map(|i| i * step).collect();
    (step, ticks)
}

/// A time tick in one unit for the whole axis: the largest unit (up to
/// seconds) in which the step has at most one decimal and that the axis
/// reaches, else the largest (minutes and up: whole) unit dividing the
/// step: `0`, `200 ms`, `1.5 s`, `15 s`, `5 min`, `2 h`.
pub fn time_label(t_ns: u64, step_ns: u64, max_ns: u64) -> String {
    if t_ns == 0 {
        return "0".into();
    }
    const WHOLE: [(u64, &str); 3] = [
        (86_400_000_000_000, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "min"),
    ];
    const DECIMAL: [(u64, &str); 4] = [
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "µs"),
        (1, "ns"),
    ];
    let whole = WHOLE
        .into_iter()
        .find(|&(u, _)| step_ns >= u && step_ns % u == 0);
    let (u, name) = whole.unwrap_or_else(|| {
        DECIMAL
            .into_iter()
            .find(|&(u, _)| max_ns >= u && (step_ns * 10) % u == 0)
            .unwrap_or((1, "ns"))
    });
    let v = t_ns as f64 / u as f64;
    if t_ns % u == 0 {
        format!("{} {name}", t_ns / u)
    } else {
        format!("{v:.1} {name}")
    }
}

/// Height of the line and bar charts, CSS px.
const H: f64 = 262.0;
/// Plot area top (below the title).
const T: f64 = 34.0;
/// Below the plot area (time/category labels).
const B: f64 = 30.0;
/// Plot area height.
const PH: f64 = H - T - B;

/// Opens a chart: the `<svg>` (full width of its figure, fixed height; x
/// positions in percent of the plot's width, text in CSS px so it reads the
/// same at any window width; the value labels sit in the figure's left
/// padding), its title and the value axis's grid lines and labels.
fn frame(out: &mut String, title: &str, ticks: &[f64], yfmt: &dyn Fn(f64) -> String) {
    let _ = write!(
        out,
        r##"<svg class="chart" width="100%" height="{H}" role="img" aria-label="{t}"><text x="-80" y="18" font-size="15" font-weight="bold">{t}</text><g class="yaxis">"##,
        t = esc(title)
    );
    let top = ticks.last().copied().unwrap_or(1.0);
    for &v in ticks {
        let y = T + PH * (1.0 - v / top);
        let _ = write!(
            out,
            r##"<line x1="0" x2="100%" y1="{y:.1}" y2="{y:.1}" stroke="{c}"/><text x="-8" y="{ty:.1}" font-size="12" text-anchor="end">{v}</text>"##,
            c = if v == 0.0 { "#999" } else { "#e4e4e4" },
            ty = y + 4.0,
            v = esc(&yfmt(v))
        );
    }
    out.push_str("</g>");
}

/// A category or time label; every other one (`odd`) is hidden on narrow
/// windows by the page's style.
fn xlabel(out: &mut String, i: usize, pct: f64, text: &str) {
    let _ = write!(
        out,
        r#"<text{} x="{pct:.2}%" y="{}" font-size="12" text-anchor="middle">{}</text>"#,
        if i % 2 == 1 { r#" class="odd""# } else { "" },
        H - B + 18.0,
        esc(text)
    );
}

/// The legend under a chart (HTML, so it wraps with the window).
fn legend(out: &mut String, names: &[&str]) {
    out.push_str(r#"<div class="legend">"#);
    for (i, name) in names.iter().enumerate() {
        let _ = write!(
            out,
            r#"<span><i style="background:{}"></i>{}</span>"#,
            PALETTE[i % PALETTE.len()],
            esc(name)
        );
    }
    out.push_str("</div>");
}

/// One series of a [`time_chart`].
pub struct Series {
    /// Legend name.
    pub name: String,
    /// Values at the chart's times, one per slot.
    pub values: Vec<f64>,
}

/// A line chart over time, as a figure (`<div class="fig">`): `times` (ns
/// since the start of the chart, one per slot, increasing) and `series` of
/// values at those times. The time axis has round ticks (see
/// [`time_ticks`]); the value axis is round too, labelled by `yfmt`. Each
/// slot is a hover target whose title is the lines `tips[slot]` (the exact
/// values; each line escaped on its own).
pub fn time_chart(
    title: &str,
    times: &[u64],
    series: &[Series],
    tips: &[Vec<String>],
    yfmt: &dyn Fn(f64) -> String,
) -> String {
    if times.is_empty() || series.is_empty() {
        return format!("<p class=\"empty\">{}: no data</p>", esc(title));
    }
    let ymax = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .fold(0.0, f64::max);
    let ticks = value_ticks(ymax, false);
    let top = ticks.last().copied().unwrap_or(1.0);
    let span = times.last().copied().unwrap_or(0).max(1);
    let mut out = String::from("<div class=\"fig\">");
    frame(&mut out, title, &ticks, yfmt);
    // Lines are drawn in a nested 1000-wide coordinate system stretched to
    // the plot (strokes keep their width); everything else in percent.
    let pct = |t: u64| 100.0 * t as f64 / span as f64;
    let (step, tt) = time_ticks(span);
    let last = tt.last().copied().unwrap_or(0);
    out.push_str(r#"<g class="xaxis">"#);
    for (i, &t) in tt.iter().enumerate() {
        let _ = write!(
            out,
            r##"<line x1="{x:.2}%" x2="{x:.2}%" y1="{y0}" y2="{y1}" stroke="#999"/>"##,
            x = pct(t),
            y0 = H - B,
            y1 = H - B + 4.0,
        );
        xlabel(&mut out, i, pct(t), &time_label(t, step, last));
    }
    let _ = write!(
        out,
        r#"</g><g class="marks"><svg x="0" y="{T}" width="100%" height="{PH}" viewBox="0 0 1000 {PH}" preserveAspectRatio="none" overflow="visible">"#
    );
    for (i, s) in series.iter().enumerate() {
        let d: Vec<String> = times
            .iter()
            .zip(&s.values)
            .map(|(&t, &y)| format!("{:.1},{:.1}", pct(t) * 10.0, PH * (1.0 - y / top)))
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.8" stroke-linejoin="round" vector-effect="non-scaling-stroke" points="{}"><title>{}</title></polyline>"#,
            PALETTE[i % PALETTE.len()],
            d.join(" "),
            esc(&s.name)
        );
    }
    out.push_str("</svg></g><g class=\"hover\">");
    for (i, &t) in times.iter().enumerate() {
        let Some(tip) = tips.get(i) else { break };
        let x0 = if i == 0 {
            pct(t)
        } else {
            (pct(times[i - 1]) + pct(t)) / 2.0
        };
        let x1 = times
            .get(i + 1)
            .map_or(pct(t), |&n| (pct(t) + pct(n)) / 2.0);
        let _ = write!(
            out,
            r#"<rect x="{x0:.3}%" y="{T}" width="{:.3}%" height="{PH}" fill="transparent"><title>{}</title></rect>"#,
            (x1 - x0).max(0.05),
            tip.iter().map(|l| esc(l)).collect::<Vec<_>>().join("&#10;")
        );
    }
    out.push_str("</g></svg>");
    legend(
        &mut out,
        &series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
    );
    out.push_str("</div>\n");
    out
}

/// A vertical bar chart of counts per category, one bar per series side by
/// side, as a figure. Each bar's title reads `series, label: exact(count)`.
pub fn bar_chart(
    title: &str,
    labels: &[String],
    series: &[(String, Vec<f64>)],
    exact: &dyn Fn(f64) -> String,
) -> String {
    if labels.is_empty() {
        return format!("<p class=\"empty\">{}: no data</p>", esc(title));
    }
    let ymax = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .fold(0.0, f64::max);
    let ticks = value_ticks(ymax, true);
    let top = ticks.last().copied().unwrap_or(1.0);
    let mut out = String::from("<div class=\"fig\">");
    frame(&mut out, title, &ticks, &|v| format!("{v:.0}"));
    let slot = 100.0 / labels.len() as f64;
    let bw = (slot * 0.8) / series.len().max(1) as f64;
    // Label every k-th category so that at most 16 labels share the axis
    // (8 on a narrow window).
    let every = labels.len().div_ceil(16);
    out.push_str(r#"<g class="xaxis">"#);
    for (li, label) in labels.iter().enumerate() {
        if li % every == 0 {
            xlabel(&mut out, li / every, slot * (li as f64 + 0.5), label);
        }
    }
    out.push_str("</g><g class=\"marks\">");
    for (li, label) in labels.iter().enumerate() {
        let x = slot * li as f64 + slot * 0.1;
        for (si, (name, v)) in series.iter().enumerate() {
            let val = v.get(li).copied().unwrap_or(0.0);
            let h = PH * val / top;
            let _ = write!(
                out,
                r#"<rect x="{:.3}%" y="{:.1}" width="{:.3}%" height="{h:.1}" fill="{}"><title>{}, {}: {}</title></rect>"#,
                x + bw * si as f64,
                H - B - h,
                bw,
                PALETTE[si % PALETTE.len()],
                esc(name),
                esc(label),
                esc(&exact(val))
            );
        }
    }
    out.push_str("</g></svg>");
    if series.len() > 1 {
        legend(
            &mut out,
            &series.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        );
    }
    out.push_str("</div>\n");
    out
}

/// Horizontal bars of shares, each under its label: (label, fraction 0..1,
/// value text); each bar's title reads `label: value text (share)`.
pub fn share_chart(title: &str, rows: &[(String, f64, String)]) -> String {
    if rows.is_empty() {
        return format!("<p class=\"empty\">{}: no data</p>", esc(title));
    }
    let row_h = 38.0;
    let h = T + row_h * rows.len() as f64;
    let mut out = format!(
        r##"<div class="fig share"><svg class="chart" width="100%" height="{h}" role="img" aria-label="{t}"><text x="0" y="18" font-size="15" font-weight="bold">{t}</text><g class="marks">"##,
        t = esc(title)
    );
    for (i, (label, frac, text)) in rows.iter().enumerate() {
        let y = T + row_h * i as f64;
        let w = 60.0 * frac.clamp(0.0, 1.0);
        let _ = write!(
            out,
            r#"<text x="0" y="{:.1}" font-size="13">{l}</text><rect x="0" y="{:.1}" width="{w:.3}%" height="14" fill="{}"><title>{l}: {t} ({p:.2}%)</title></rect><text x="{w:.3}%" dx="6" y="{:.1}" font-size="12">{p:.1}% {t}</text>"#,
            y + 13.0,
            y + 18.0,
            PALETTE[i % PALETTE.len()],
            y + 30.0,
            l = esc(label),
            t = esc(text),
            p = frac * 100.0,
        );
    }
    out.push_str("</g></svg></div>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;

    #[test]
    fn steps_are_one_two_or_five_times_a_power_of_ten() {
        for (raw, want) in [
            (0.4, 0.5),
            (1.0, 1.0),
            (1.01, 2.0),
            (3.0, 5.0),
            (7.5, 10.0),
            (0.1 + 0.2, 0.5),
            (0.3 / 3.0, 0.1),
            (180_000.0, 200_000.0),
            (0.0, 1.0),
            (f64::NAN, 1.0),
        ] {
            let got = nice_step(raw);
            assert!(
                (got - want).abs() <= want * 1e-12,
                "{raw} -> {got}, want {want}"
            );
        }
    }

    #[test]
    fn count_ticks_are_distinct_whole_numbers() {
        // The old axis divided the maximum into four: 2 gave 0, 0.5, 1, 1.5,
        // 2, printed "0, 0, 1, 2, 2".
        assert_eq!(value_ticks(2.0, true), [0.0, 1.0, 2.0]);
        assert_eq!(value_ticks(1.0, true), [0.0, 1.0]);
        assert_eq!(value_ticks(0.0, true), [0.0, 1.0]);
        assert_eq!(value_ticks(7.0, true), [0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!(value_ticks(23.0, true), [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]);
        for max in 1..500u32 {
            let t = value_ticks(max as f64, true);
            assert!(t.iter().all(|v| v.fract() == 0.0), "{max}: {t:?}");
            assert!(t.windows(2).all(|w| w[1] > w[0]), "{max}: {t:?}");
            assert!(*t.last().unwrap() >= max as f64, "{max}: {t:?}");
            assert!(t.len() <= 11, "{max}: {t:?}");
            // The top tick is no more than one step above the maximum.
            assert!(t[t.len() - 2] < max as f64, "{max}: {t:?}");
        }
    }

    #[test]
    fn value_ticks_of_rates_are_round() {
        assert_eq!(value_ticks(9.3e6, false), [0.0, 2e6, 4e6, 6e6, 8e6, 10e6]);
        let t = value_ticks(0.7, false);
        assert_eq!(t.len(), 5, "{t:?}");
        for (v, want) in t.iter().zip([0.0, 0.2, 0.4, 0.6, 0.8]) {
            assert!((v - want).abs() < 1e-12, "{t:?}");
        }
    }

    #[test]
    fn time_ticks_are_round_and_labelled_in_one_unit() {
        // A trace of 906 ms in slots of 18.1 ms: ticks every 200 ms, not at
        // multiples of the slot.
        let (step, t) = time_ticks(906 * MS);
        assert_eq!(step, 200 * MS);
        assert_eq!(t, [0, 200 * MS, 400 * MS, 600 * MS, 800 * MS]);
        let labels: Vec<String> = t.iter().map(|&x| time_label(x, step, t[4])).collect();
        assert_eq!(labels, ["0", "200 ms", "400 ms", "600 ms", "800 ms"]);
        // Past a second, in seconds with one decimal.
        let (step, t) = time_ticks(1970 * MS);
        let labels: Vec<String> = t.iter().map(|&x| time_label(x, step, t[3])).collect();
        assert_eq!(labels, ["0", "0.5 s", "1 s", "1.5 s"]);

        let (step, t) = time_ticks(95 * S);
        assert_eq!(step, 15 * S);
        assert_eq!(time_label(t[4], step, t[6]), "60 s");
        let (step, t) = time_ticks(40 * 60 * S);
        assert_eq!(step, 5 * 60 * S);
        assert_eq!(time_label(t[3], step, t[8]), "15 min");
        let (step, _) = time_ticks(20 * 3600 * S);
        assert_eq!(
            (step, time_label(6 * 3600 * S, step, 18 * 3600 * S)),
            (3 * 3600 * S, "6 h".into())
        );
        let (step, t) = time_ticks(3_500);
        assert_eq!((step, t.len()), (500, 8));
        assert_eq!(time_label(1_500, step, 3_500), "1.5 µs");
        let (step, t) = time_ticks(12 * MS / 10);
        assert_eq!(step, 200_000);
        assert_eq!(time_label(t[5], step, t[6]), "1 ms");
        assert_eq!(time_label(t[2], step, t[6]), "0.4 ms");
        // Exactly eight intervals still fit.
        assert_eq!(time_ticks(8 * S).0, S);
        for span in [1, 7, 999, 123_456_789, 3 * S, 86_400 * S, 400 * 86_400 * S] {
            let (step, t) = time_ticks(span);
            assert!(t.len() >= 2 && t.len() <= 9, "{span}: {t:?}");
            assert!(*t.last().unwrap() <= span && span - t.last().unwrap() < step);
        }
    }

    #[test]
    fn charts_scale_with_the_page_and_carry_exact_titles() {
        let c = bar_chart(
            "sizes",
            &["1 B".into(), "2 B".into()],
            &[("sent".into(), vec![3.0, 0.0])],
            &|v| format!("{v:.0} messages"),
        );
        assert!(c.contains(r#"<svg class="chart" width="100%""#), "{c}");
        assert!(c.contains("<title>sent, 1 B: 3 messages</title>"), "{c}");
        let c = time_chart(
            "rate",
            &[0, 10 * MS],
            &[Series {
                name: "1 a<b".into(),
                values: vec![1.0, 2.0],
            }],
            &[vec!["0: 1".into()], vec!["10 ms".into(), "a\nb: 2".into()]],
            &|v| format!("{v}"),
        );
        // Lines of a tip on lines of their own; a newline inside a line
        // (a hostile name) shown, not obeyed.
        assert!(c.contains("<title>10 ms&#10;a\\nb: 2</title>"), "{c}");
        assert!(c.contains("<title>1 a&lt;b</title>"), "{c}");
    }
}
