//! The inspect report as one self-contained HTML page: charts drawn here as
//! inline SVG (no script, no stylesheet or font from elsewhere), each with
//! the same figures as a table beside it, so the page reads the same with
//! images off, in a terminal browser, or attached to a CI run.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::InspectReport;
use crate::cost::CostReport;

/// Text made safe for HTML.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 72.0;
const BOTTOM: f64 = 48.0;
const TOP: f64 = 16.0;
const PLOT_W: f64 = WIDTH - LEFT - 8.0;
const PLOT_H: f64 = HEIGHT - TOP - BOTTOM;

/// An open `<svg>` with its title, axes, and the y axis labelled from 0 to `top`.
fn frame(title: &str, top: &str) -> String {
    format!(
        r##"<svg width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{t}"><title>{t}</title><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{y}" stroke="#444"/><line x1="{LEFT}" y1="{y}" x2="{x}" y2="{y}" stroke="#444"/><text x="{tx}" y="{ty}" font-size="11" text-anchor="end">{top}</text><text x="{tx}" y="{y}" font-size="11" text-anchor="end">0</text>"##,
        t = esc(title),
        y = TOP + PLOT_H,
        x = LEFT + PLOT_W,
        tx = LEFT - 4.0,
        ty = TOP + 10.0,
        top = esc(top)
    )
}

/// A vertical bar chart of `bars` (label, value); `marker` draws a dashed
/// line after the bar of that index, labelled.
fn bar_chart(title: &str, bars: &[(String, f64)], marker: Option<(usize, &str)>) -> String {
    let max = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1.0);
    let (plot_w, plot_h) = (PLOT_W, PLOT_H);
    // At most 80 px a bar: one hour's bar is not the whole chart.
    let slot = (plot_w / bars.len().max(1) as f64).min(80.0);
    let mut svg = frame(title, &trim(max));
    for (i, (label, value)) in bars.iter().enumerate() {
        let h = plot_h * value / max;
        let x = LEFT + slot * i as f64 + slot * 0.15;
        let _ = write!(
            svg,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="#3b6ea8"><title>{l}: {v}</title></rect><text x="{lx:.1}" y="{ly:.1}" font-size="10" text-anchor="middle">{l}</text>"##,
            y = TOP + plot_h - h,
            w = slot * 0.7,
            l = esc(label),
            v = trim(*value),
            lx = x + slot * 0.35,
            ly = TOP + plot_h + 14.0 + if bars.len() > 6 { (i % 2) as f64 * 12.0 } else { 0.0 },
        );
    }
    if let Some((after, label)) = marker {
        let x = LEFT + slot * (after + 1) as f64;
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{y}" stroke="#c0392b" stroke-dasharray="5,4"/><text x="{tx:.1}" y="{ty}" font-size="11" fill="#c0392b">{l}</text>"##,
            y = TOP + plot_h,
            tx = x + 4.0,
            ty = TOP + 12.0,
            l = esc(label)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Points (x, y) on a time axis, seconds on the y axis.
fn scatter(title: &str, points: &[(i64, f64)]) -> String {
    let (plot_w, plot_h) = (PLOT_W, PLOT_H);
    let (x0, x1) = points.iter().fold((i64::MAX, i64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let ymax = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0);
    let mut svg = frame(title, &format!("{} s", trim(ymax)));
    if !points.is_empty() {
        for (label, at, anchor) in [(x0, LEFT, "start"), (x1, LEFT + plot_w, "end")] {
            let _ = write!(
                svg,
                r##"<text x="{at}" y="{y}" font-size="10" text-anchor="{anchor}">{l}</text>"##,
                y = TOP + plot_h + 14.0,
                l = crate::clock::rfc3339_millis(label)
            );
        }
    }
    let span = (x1 - x0).max(1) as f64;
    for (t, v) in points {
        let _ = write!(
            svg,
            r##"<circle cx="{cx:.1}" cy="{cy:.1}" r="3" fill="#3b6ea8"><title>{v} s</title></circle>"##,
            cx = LEFT + plot_w * (t - x0) as f64 / span,
            cy = TOP + plot_h - plot_h * v / ymax,
            v = trim(*v)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn trim(v: f64) -> String {
    // Two decimals for small figures; none past 100 (an axis label of
    // 22402.24 s says no more than 22402 s).
    if v.abs() >= 100.0 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn table(out: &mut String, headers: &[&str], rows: &[Vec<String>]) {
    out.push_str("<table><tr>");
    for h in headers {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr>");
    for row in rows {
        out.push_str("<tr>");
        for c in row {
            let _ = write!(out, "<td>{}</td>", esc(c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
}

/// The page.
pub fn render(report: &InspectReport, cost: Option<&CostReport>) -> String {
    let mut out = String::from("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    let _ = write!(out, "<title>streamlab inspect {}</title>", esc(&report.location));
    out.push_str(
        "<style>body{font-family:sans-serif;margin:2em;max-width:100em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}\
         td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right;white-space:nowrap}th{background:#eee}td:first-child,th:first-child{text-align:left}\
         .warn{background:#fff4e5;border-left:4px solid #e67e22;padding:.4em .8em;margin:.3em 0}figure{margin:0}</style></head><body>",
    );
    let _ = write!(out, "<h1>What landed in {}</h1>", esc(&report.location));
    let data_objects: u64 = report.streams.iter().map(|s| s.data_objects).sum();
    let _ = write!(
        out,
        "<p>{} stream(s), {} object(s) ({} data), small-file line {} MB{}</p>",
        report.streams.len(),
        report.objects.len(),
        data_objects,
        report.small_file_mb,
        report.id_path.as_deref().map_or(String::new(), |p| format!(", duplicates by {}", esc(p)))
    );
    for w in &report.warnings {
        let _ = write!(out, "<p class=\"warn\">{}</p>", esc(w));
    }
    if let Some(cost) = cost {
        out.push_str("<h2>Cost a month</h2>");
        let rows: Vec<Vec<String>> = cost
            .lines
            .iter()
            .map(|l| {
                vec![
                    format!("{} {}", l.service, l.item),
                    l.stream.clone().unwrap_or_else(|| "(cluster)".into()),
                    format!("{} {}", crate::cost::format_quantity(l.quantity), l.unit),
                    format!("${}", l.unit_price),
                    format!("${:.2}", l.usd),
                ]
            })
            .chain([vec![
                String::from("total"),
                String::new(),
                String::new(),
                String::new(),
                format!("${:.2}", cost.total_usd),
            ]])
            .collect();
        table(&mut out, &["item", "stream", "quantity", "unit price", "USD"], &rows);
        for w in &cost.warnings {
            let _ = write!(out, "<p class=\"warn\">{}</p>", esc(&w.message));
        }
    }
    // Objects per hour, every stream together.
    let mut per_hour: BTreeMap<&str, f64> = BTreeMap::new();
    for o in report.objects.iter().filter(|o| o.kind == "data") {
        *per_hour.entry(o.hour.as_deref().unwrap_or("?")).or_default() += 1.0;
    }
    let bars: Vec<(String, f64)> = per_hour.iter().map(|(h, n)| ((*h).to_owned(), *n)).collect();
    out.push_str("<h2>Data objects per hour</h2><figure>");
    out.push_str(&bar_chart("Data objects per hour", &bars, None));
    out.push_str("</figure>");
    table(&mut out, &["hour", "objects"], &bars.iter().map(|(h, n)| vec![h.clone(), trim(*n)]).collect::<Vec<_>>());

    for s in &report.streams {
        let _ = write!(out, "<h2>Stream {}</h2>", esc(&s.stream));
        let small_after =
            super::SIZE_BUCKETS.iter().rposition(|(upto, _)| (*upto as f64) <= report.small_file_mb * 1_048_576.0);
        let bars: Vec<(String, f64)> = s.size_histogram.iter().map(|b| (b.label.clone(), b.objects as f64)).collect();
        let marker = format!("{} MB: small below", report.small_file_mb);
        out.push_str("<h3>Data object sizes</h3><figure>");
        out.push_str(&bar_chart(
            &format!("Data object sizes of {}", s.stream),
            &bars,
            small_after.map(|i| (i, marker.as_str())),
        ));
        out.push_str("</figure>");
        let _ = write!(
            out,
            "<p>{} of {} data objects are under {} MB.</p>",
            s.small_objects, s.data_objects, report.small_file_mb
        );
        let points: Vec<(i64, f64)> = report
            .objects
            .iter()
            .filter(|o| o.stream == s.stream)
            .filter_map(|o| Some((o.landed_ms?, o.freshness_secs?)))
            .collect();
        if !points.is_empty() {
            out.push_str("<h3>Freshness (landed minus oldest event time)</h3><figure>");
            out.push_str(&scatter(&format!("Freshness of {} over time", s.stream), &points));
            out.push_str("</figure>");
        }
        if !s.tally.error_records_by_code.is_empty() {
            let bars: Vec<(String, f64)> =
                s.tally.error_records_by_code.iter().map(|(c, n)| (c.clone(), *n as f64)).collect();
            out.push_str("<h3>Error records by code</h3><figure>");
            out.push_str(&bar_chart(&format!("Error records of {} by code", s.stream), &bars, None));
            out.push_str("</figure>");
            table(
                &mut out,
                &["code", "records"],
                &bars.iter().map(|(c, n)| vec![c.clone(), trim(*n)]).collect::<Vec<_>>(),
            );
        }
        out.push_str("<h3>Per prefix</h3>");
        let rows: Vec<Vec<String>> = s
            .prefixes
            .iter()
            .map(|p| {
                vec![
                    p.prefix.clone(),
                    p.kind.clone(),
                    p.objects.to_string(),
                    format!("{:.3}", p.bytes as f64 / 1_048_576.0),
                    p.records.to_string(),
                    p.records_per_object
                        .as_ref()
                        .map_or("-".into(), |r| format!("{}/{}/{}", trim(r.min), trim(r.mean), trim(r.max))),
                    p.tally.duplicates.to_string(),
                    format!("{} (max {} s)", p.tally.late_records, trim(p.tally.max_late_secs)),
                    p.tally.error_records_by_code.values().sum::<u64>().to_string(),
                    p.tally.freshness_secs.as_ref().map_or("-".into(), |f| format!("{}/{}", trim(f.min), trim(f.max))),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "prefix",
                "kind",
                "objects",
                "MB",
                "records",
                "records/object min/mean/max",
                "duplicates",
                "late",
                "errors",
                "freshness s min/max",
            ],
            &rows,
        );
    }
    let with_sources: Vec<&super::ObjectReport> = report.objects.iter().filter(|o| o.sources.is_some()).collect();
    if !with_sources.is_empty() {
        out.push_str("<h2>Where each object came from</h2>");
        let rows: Vec<Vec<String>> = with_sources
            .iter()
            .map(|o| {
                let sources = o.sources.as_deref().unwrap_or_default();
                vec![
                    o.key.clone(),
                    o.records.to_string(),
                    sources
                        .iter()
                        .map(|r| format!("p{} {}-{}", r.partition, r.first, r.last))
                        .collect::<Vec<_>>()
                        .join(", "),
                ]
            })
            .collect();
        table(&mut out, &["key", "records", "partition offsets"], &rows);
    }
    out.push_str("<p><small>Written by streamlab inspect.</small></p></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_keep_their_zeros() {
        assert_eq!(
            [trim(2190.0), trim(21600.0), trim(350.4), trim(0.50), trim(3.0), trim(0.0)],
            ["2190", "21600", "350", "0.5", "3", "0"]
        );
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }
}
