//! Charts, drawn with plotters' SVG backend after a run (never during one):
//!
//! - a run's report (`--report-dir DIR`, or `chart --from report.json`):
//!   `latency.svg` (the HdrHistogram percentile distribution, x = 1/(1-p) on
//!   a log scale: 90%, 99%, 99.9%, ...), `throughput.svg` (msgs/s and open
//!   connections per second), `errors.svg` (errors per second), the report
//!   as `report.json`, and an `index.html` that shows them with a summary;
//! - a peer comparison (`chart --from summary.json`, written by compare.sh):
//!   one grouped bar chart per figure (groups = scenarios, bars = servers).

use crate::stats::{Point, Report};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Deserialize;
use std::fmt::Write as _;
use std::io;
use std::path::Path;

/// Chart size, pixels (SVG user units).
const SIZE: (u32, u32) = (960, 540);
/// Series colours (Tableau 10: distinct, readable on white).
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Any plotters error as an `io::Error`.
fn plot_err<E: std::fmt::Display>(e: E) -> io::Error {
    io::Error::other(format!("chart: {e}"))
}

/// `12345.6` -> `12,346`; small values keep some decimals.
fn fmt_num(v: f64) -> String {
    if v.abs() >= 1000.0 {
        let digits = format!("{:.0}", v.abs());
        let mut out = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        if v < 0.0 {
            out.insert(0, '-');
        }
        out
    } else if v.abs() >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A latency in µs as `850 µs`, `12 ms`, `1.5 s`.
fn fmt_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{} s", fmt_num(us / 1e6))
    } else if us >= 1e3 {
        format!("{} ms", fmt_num(us / 1e3))
    } else {
        format!("{} µs", fmt_num(us))
    }
}

/// The x coordinate of quantile `p` on the percentile chart: 1/(1-p), so
/// 0% -> 1, 90% -> 10, 99% -> 100, 99.9% -> 1000.
fn quantile_x(p: f64) -> f64 {
    1.0 / (1.0 - p)
}

/// The label of x = 1/(1-p): `50%`, `99.9%`, `99.999%`.
fn percentile_label(x: f64) -> String {
    let pct = 100.0 * (1.0 - 1.0 / x);
    let mut decimals = 0;
    while decimals < 8 && ((pct * 10f64.powi(decimals)).round() - pct * 10f64.powi(decimals)).abs() > 1e-6 {
        decimals += 1;
    }
    format!("{pct:.*}%", decimals as usize)
}

/// Write the charts of `r`, `report.json` and `index.html` into `dir`.
pub fn write_run_report(dir: &Path, r: &Report) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(r).map_err(io::Error::other)? + "\n")?;
    let mut imgs = Vec::new();
    if r.latency_curve.len() >= 2 {
        latency_chart(&dir.join("latency.svg"), r)?;
        imgs.push(("latency.svg", "Latency percentile distribution"));
    }
    if !r.series.is_empty() {
        throughput_chart(&dir.join("throughput.svg"), r)?;
        imgs.push(("throughput.svg", "Throughput and open connections"));
        errors_chart(&dir.join("errors.svg"), r)?;
        imgs.push(("errors.svg", "Errors over time"));
    }
    std::fs::write(dir.join("index.html"), run_index_html(r, &imgs))?;
    Ok(())
}

/// The percentile distribution: latency (log scale) against 1/(1-p).
fn latency_chart(path: &Path, r: &Report) -> io::Result<()> {
    // The last point is p = 1 (the max): infinitely far right. It is drawn
    // as a dashed line instead.
    let pts: Vec<(f64, f64)> =
        r.latency_curve.iter().filter(|q| q.p < 1.0).map(|q| (quantile_x(q.p), q.us.max(1) as f64)).collect();
    let l = &r.latency_us;
    let decades = pts.last().map_or(1.0, |p| p.0.log10().ceil()).clamp(2.0, 7.0) as i32;
    let x_max = 10f64.powi(decades);
    let mut keys = vec![1.0, 2.0];
    keys.extend((1..=decades).map(|d| 10f64.powi(d)));
    let y_min = (pts.iter().map(|p| p.1).fold(f64::MAX, f64::min)).max(1.0);
    let y_max = (l.max.max(1) as f64).max(y_min * 10.0);
    let (y_lo, y_hi) = (10f64.powf(y_min.log10().floor()), 10f64.powf(y_max.log10().ceil()));

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let title = format!("Latency percentiles: {} ({} samples)", r.mode, fmt_num(l.count as f64));
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .margin_right(48)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d((1.0..x_max).log_scale().with_key_points(keys), (y_lo..y_hi).log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("percentile (x = 1/(1-p), log scale)")
        .y_desc("latency (log scale)")
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|y| fmt_us(*y))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(plot_err)?;
    let what = match r.mode.as_str() {
        "handshakes" => "connect → 101",
        "rate" => "round trip from the intended send time",
        _ => "round trip",
    };
    chart
        .draw_series(LineSeries::new(pts.iter().copied(), PALETTE[0].stroke_width(3)))
        .map_err(plot_err)?
        .label(format!(
            "{what}: p50 {}, p99 {}, p99.9 {}",
            fmt_us(l.p50 as f64),
            fmt_us(l.p99 as f64),
            fmt_us(l.p999 as f64)
        ))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], PALETTE[0].stroke_width(3)));
    let max = l.max.max(1) as f64;
    chart
        .draw_series(DashedLineSeries::new([(1.0, max), (x_max, max)], 6, 4, PALETTE[3].stroke_width(1)))
        .map_err(plot_err)?
        .label(format!("max {}", fmt_us(max)))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], PALETTE[3]));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)
}

/// The measuring window, shaded on the time charts.
fn window_band(r: &Report) -> (f64, f64) {
    (r.window_start_s, r.window_start_s + r.window_s)
}

/// Rates (msgs/s, or connects/s) on the left axis, open connections on the right.
fn throughput_chart(path: &Path, r: &Report) -> io::Result<()> {
    let s = &r.series;
    let t_max = s.last().map_or(1.0, |p| p.t_s).max(1.0);
    let msgs = s.iter().any(|p| p.msgs_per_s > 0.0);
    let connects = s.iter().any(|p| p.connects_per_s > 0.0);
    let rate_max = s.iter().map(|p| p.msgs_per_s.max(p.connects_per_s)).fold(0.0, f64::max).max(1.0) * 1.1;
    let open_max = s.iter().map(|p| p.open).max().unwrap_or(0).max(1) as f64 * 1.1;

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Throughput and open connections: {} (per second)", r.mode), ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(90)
        .right_y_label_area_size(80)
        .build_cartesian_2d(0.0..t_max, 0.0..rate_max)
        .map_err(plot_err)?
        .set_secondary_coord(0.0..t_max, 0.0..open_max);
    let y_desc = match (msgs, connects) {
        (true, true) => "messages/s, connects/s",
        (false, true) => "handshakes/s",
        _ => "messages/s",
    };
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc(y_desc)
        .y_label_formatter(&|v| fmt_num(*v))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(plot_err)?;
    chart
        .configure_secondary_axes()
        .y_desc("open connections")
        .y_label_formatter(&|v| fmt_num(*v))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(plot_err)?;
    let (w0, w1) = window_band(r);
    if r.window_s > 0.0 {
        chart
            .draw_series([Rectangle::new([(w0, 0.0), (w1, rate_max)], PALETTE[2].mix(0.08).filled())])
            .map_err(plot_err)?
            .label("measuring window")
            .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 24, y + 6)], PALETTE[2].mix(0.25).filled()));
    }
    if msgs || !connects {
        chart
            .draw_series(LineSeries::new(s.iter().map(|p| (p.t_s, p.msgs_per_s)), PALETTE[0].stroke_width(2)))
            .map_err(plot_err)?
            .label("messages/s (verified echoes)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], PALETTE[0].stroke_width(2)));
    }
    if connects {
        let label = if r.mode == "handshakes" { "handshakes/s" } else { "new connections/s" };
        chart
            .draw_series(LineSeries::new(s.iter().map(|p| (p.t_s, p.connects_per_s)), PALETTE[4].stroke_width(2)))
            .map_err(plot_err)?
            .label(label)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], PALETTE[4].stroke_width(2)));
    }
    chart
        .draw_secondary_series(LineSeries::new(s.iter().map(|p| (p.t_s, p.open as f64)), PALETTE[1].stroke_width(2)))
        .map_err(plot_err)?
        .label("open connections (right axis)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], PALETTE[1].stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)
}

/// Errors per second (and `--reconnect` drops per second).
fn errors_chart(path: &Path, r: &Report) -> io::Result<()> {
    let s: &[Point] = &r.series;
    let t_max = s.last().map_or(1.0, |p| p.t_s).max(1.0);
    let total: u64 = r.errors.values().sum();
    let drops = r.reconnect.is_some();
    let y_max = s.iter().map(|p| p.errors.max(p.drops)).max().unwrap_or(0).max(1) as f64 * 1.15;

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let caption = if total == 0 {
        format!("Errors over time: {} (none)", r.mode)
    } else {
        format!("Errors over time: {} ({} in all)", r.mode, fmt_num(total as f64))
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("per second")
        .y_labels((y_max.ceil() as usize + 1).min(10))
        .y_label_formatter(&|v| if v.fract().abs() < 1e-9 { fmt_num(*v) } else { String::new() })
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(plot_err)?;
    let (w0, w1) = window_band(r);
    if r.window_s > 0.0 {
        chart
            .draw_series([Rectangle::new([(w0, 0.0), (w1, y_max)], PALETTE[2].mix(0.08).filled())])
            .map_err(plot_err)?
            .label("measuring window")
            .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 24, y + 6)], PALETTE[2].mix(0.25).filled()));
    }
    // Each point covers the second before it: draw it as a step.
    let step = |f: fn(&Point) -> u64| {
        let mut v = Vec::with_capacity(s.len() * 2 + 1);
        let mut prev_t = 0.0;
        for p in s {
            v.push((prev_t, f(p) as f64));
            v.push((p.t_s, f(p) as f64));
            prev_t = p.t_s;
        }
        v
    };
    let kinds: Vec<String> = r.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let label = if kinds.is_empty() { "errors/s".to_string() } else { format!("errors/s ({})", kinds.join(", ")) };
    chart
        .draw_series(LineSeries::new(step(|p| p.errors), PALETTE[3].stroke_width(2)))
        .map_err(plot_err)?
        .label(label)
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], PALETTE[3].stroke_width(2)));
    if drops {
        chart
            .draw_series(LineSeries::new(step(|p| p.drops), PALETTE[1].stroke_width(2)))
            .map_err(plot_err)?
            .label("connections dropped and reconnected (--reconnect)/s")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], PALETTE[1].stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)
}

/// Escape text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The report page: a summary table and the charts.
fn run_index_html(r: &Report, imgs: &[(&str, &str)]) -> String {
    let mut rows: Vec<(String, String)> = vec![
        ("mode".into(), format!("{} → {}", r.mode, r.target)),
        ("connections".into(), format!("{} asked, {} open at most", r.conns, r.conns_open_max)),
        ("window".into(), format!("{:.2} s from {:.2} s", r.window_s, r.window_start_s)),
    ];
    if r.mode != "handshakes" && r.mode != "idle" {
        rows.push((
            "throughput".into(),
            format!("{} msgs/s, {:.2} MB/s ({} B, depth {})", fmt_num(r.msgs_per_s), r.mb_per_s, r.size, r.depth),
        ));
        rows.push(("verified".into(), format!("{} echoes, {} corrupted", fmt_num(r.msgs_run as f64), r.corrupted)));
    }
    if r.handshakes > 0 {
        rows.push(("handshakes".into(), format!("{} = {}/s", r.handshakes, fmt_num(r.handshakes_per_s))));
    }
    let l = &r.latency_us;
    if l.count > 0 {
        rows.push((
            "latency".into(),
            format!(
                "p50 {}, p90 {}, p99 {}, p99.9 {}, max {}",
                fmt_us(l.p50 as f64),
                fmt_us(l.p90 as f64),
                fmt_us(l.p99 as f64),
                fmt_us(l.p999 as f64),
                fmt_us(l.max as f64)
            ),
        ));
    }
    if let Some(c) = r.server.cpu_us_per_msg {
        rows.push(("server CPU".into(), format!("{c:.3} µs per message")));
    }
    if let Some(b) = r.server.rss_per_conn_bytes {
        rows.push(("server RSS".into(), format!("{b:.0} B per connection")));
    }
    let errs: Vec<String> = r.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    rows.push(("errors".into(), if errs.is_empty() { "none".into() } else { errs.join(", ") }));
    if let Some(rc) = &r.reconnect {
        let drops: Vec<String> = rc.drops.iter().map(|(k, v)| format!("{k} {v}")).collect();
        rows.push((
            "reconnect".into(),
            format!(
                "{} dropped ({}), {} reconnected, {} in flight lost, {} unsent, {} still down",
                rc.dropped,
                drops.join(", "),
                rc.reconnected,
                rc.lost_in_flight,
                rc.unsent_at_drop,
                rc.pending_at_end
            ),
        ));
    }
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>wsecho-loadtest: {mode}</title>\n<style>body{{font-family:sans-serif;margin:2em;max-width:1000px}}\
         table{{border-collapse:collapse}}td{{padding:3px 12px;border-bottom:1px solid #ddd}}\
         td:first-child{{font-weight:bold}}img{{display:block;margin:1.5em 0;max-width:100%}}</style>\
         </head><body>\n<h1>wsecho-loadtest: {mode}</h1>\n<table>\n",
        mode = esc(&r.mode)
    );
    for (k, v) in rows {
        let _ = writeln!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(&k), esc(&v));
    }
    h.push_str("</table>\n");
    for (file, alt) in imgs {
        let _ = writeln!(h, "<h2>{}</h2>\n<img src=\"{file}\" alt=\"{}\">", esc(alt), esc(alt));
    }
    h.push_str("<p>Raw figures: <a href=\"report.json\">report.json</a>.</p>\n</body></html>\n");
    h
}

/// A peer comparison as compare.sh writes it (`summary.json`).
#[derive(Debug, Deserialize)]
pub struct Comparison {
    /// The servers, in bar order.
    pub servers: Vec<String>,
    /// One chart per figure.
    pub charts: Vec<BarChart>,
}

/// One grouped bar chart: groups (scenarios) along x, one bar per server.
#[derive(Debug, Deserialize)]
pub struct BarChart {
    /// Output file name (`msgs_per_s.svg`).
    pub file: String,
    /// Chart title.
    pub title: String,
    /// Y axis description (unit).
    pub y_desc: String,
    /// Group labels.
    pub groups: Vec<String>,
    /// `values[group][server]`; `None` where not measured.
    pub values: Vec<Vec<Option<f64>>>,
}

/// The x axis of a grouped bar chart: 0..n, group i spanning [i, i+1), one
/// tick (the group's name) at each centre. (plotters' `with_key_points` on a
/// plain f64 range loses the label formatter, so this is its own `Ranged`.)
#[derive(Debug, Clone)]
struct GroupAxis {
    groups: usize,
}

impl Ranged for GroupAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let frac = value / self.groups.max(1) as f64;
        limit.0 + (frac * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        (0..self.groups).map(|i| i as f64 + 0.5).collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        0.0..self.groups as f64
    }
}

/// Draw every chart of `c` into `dir`.
pub fn write_comparison(dir: &Path, c: &Comparison) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for b in &c.charts {
        bar_chart(&dir.join(&b.file), &c.servers, b)?;
    }
    Ok(())
}

fn bar_chart(path: &Path, servers: &[String], b: &BarChart) -> io::Result<()> {
    let n_groups = b.groups.len().max(1);
    let n_series = servers.len().max(1);
    let group_max = |row: Option<&Vec<Option<f64>>>| row.into_iter().flatten().flatten().copied().fold(0.0, f64::max);
    // Head room for the legend, which goes in the upper corner above the
    // lower of the two outer groups.
    let y_max = b.values.iter().map(|row| group_max(Some(row))).fold(0.0, f64::max).max(1e-9) * 1.3;
    let legend_at = if group_max(b.values.last()) > group_max(b.values.first()) {
        SeriesLabelPosition::UpperLeft
    } else {
        SeriesLabelPosition::UpperRight
    };
    let width = (SIZE.0).max(220 * n_groups as u32);

    let root = SVGBackend::new(path, (width, SIZE.1)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&b.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(90)
        .build_cartesian_2d(GroupAxis { groups: n_groups }, 0.0..y_max)
        .map_err(plot_err)?;
    let groups = &b.groups;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(b.y_desc.as_str())
        .x_label_formatter(&|x| groups.get(x.floor() as usize).cloned().unwrap_or_default())
        .y_label_formatter(&|v| fmt_num(*v))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(plot_err)?;
    let bar_w = 0.8 / n_series as f64;
    let value_style = TextStyle::from(("sans-serif", 15).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    for (j, server) in servers.iter().enumerate() {
        let color = PALETTE[j % PALETTE.len()];
        let bars: Vec<(f64, f64)> = b
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, row)| row.get(j).copied().flatten().map(|v| (i as f64 + 0.1 + j as f64 * bar_w, v)))
            .collect();
        chart
            .draw_series(
                bars.iter().map(|&(x0, v)| Rectangle::new([(x0, 0.0), (x0 + bar_w * 0.92, v)], color.filled())),
            )
            .map_err(plot_err)?
            .label(server.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
        chart
            .draw_series(bars.iter().map(|&(x0, v)| Text::new(fmt_num(v), (x0 + bar_w * 0.46, v), value_style.clone())))
            .map_err(plot_err)?;
    }
    chart
        .configure_series_labels()
        .position(legend_at)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{new_histogram, Point};

    /// The text elements of an SVG written by plotters (each on its own line
    /// between the `<text ...>` and `</text>` tags).
    fn svg_texts(svg: &str) -> Vec<&str> {
        svg.lines().filter(|l| !l.starts_with('<')).collect()
    }

    #[test]
    fn percentile_axis_labels_read_as_percentiles() {
        let labels: Vec<String> = [1.0, 2.0, 10.0, 100.0, 1000.0, 1e5].iter().map(|&x| percentile_label(x)).collect();
        assert_eq!(labels, ["0%", "50%", "90%", "99%", "99.9%", "99.999%"]);
        assert!((quantile_x(0.999) - 1000.0).abs() < 1e-6);
    }

    #[test]
    fn numbers_and_latencies_are_formatted_for_people() {
        assert_eq!(fmt_num(787_260.4), "787,260");
        assert_eq!(fmt_num(9.844), "9.84");
        assert_eq!(fmt_num(159.0), "159");
        assert_eq!(fmt_us(850.0), "850 µs");
        assert_eq!(fmt_us(25_919.0), "25.9 ms");
        assert_eq!(fmt_us(1_500_000.0), "1.50 s");
    }

    /// A report written to a temporary directory has its three charts, each
    /// an SVG that carries the data's labels, and a page that links them.
    #[test]
    fn run_report_writes_three_svgs_and_an_index() {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            h.record(100 + v % 900).unwrap();
        }
        h.record(42_000).unwrap();
        let mut r = Report { mode: "echo".into(), window_start_s: 1.0, window_s: 3.0, ..Default::default() };
        r.set_histogram(&h, false);
        r.errors.insert("read_reset".into(), 2);
        r.series = (1..=5)
            .map(|i| Point {
                t_s: i as f64,
                msgs_per_s: 1000.0 * i as f64,
                open: 10,
                errors: u64::from(i == 3) * 2,
                ..Default::default()
            })
            .collect();
        let dir = std::env::temp_dir().join(format!("wsecho-lt-chart-{}", std::process::id()));
        write_run_report(&dir, &r).unwrap();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        let lat = read("latency.svg");
        assert!(lat.starts_with("<svg"));
        let texts = svg_texts(&lat);
        for label in ["50%", "90%", "99%", "99.9%", "99.99%"] {
            assert!(texts.contains(&label), "x axis label {label} in {texts:?}");
        }
        assert!(texts.iter().any(|t| t.starts_with("max 42")), "{texts:?}");
        assert!(svg_texts(&read("throughput.svg")).contains(&"open connections (right axis)"));
        assert!(svg_texts(&read("errors.svg")).contains(&"errors/s (read_reset 2)"));
        let index = read("index.html");
        for f in ["latency.svg", "throughput.svg", "errors.svg", "report.json"] {
            assert!(index.contains(f), "index links {f}");
        }
        if std::env::var_os("KEEP_CHARTS").is_none() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn comparison_draws_one_bar_per_measured_server_and_group() {
        let c: Comparison = serde_json::from_str(
            r#"{"servers": ["wsecho", "peer"], "charts": [{"file": "m.svg", "title": "msgs/s",
                "y_desc": "messages/s", "groups": ["a", "b"], "values": [[100.0, 90.0], [50.0, null]]}]}"#,
        )
        .unwrap();
        let dir = std::env::temp_dir().join(format!("wsecho-lt-bars-{}", std::process::id()));
        write_comparison(&dir, &c).unwrap();
        let svg = std::fs::read_to_string(dir.join("m.svg")).unwrap();
        let texts = svg_texts(&svg);
        for t in ["a", "b", "100", "90", "50", "wsecho", "peer"] {
            assert!(texts.contains(&t), "{t} in {texts:?}");
        }
        // The missing value draws no bar: background + 3 bars + 2 legend
        // swatches + the legend box (fill and border).
        assert_eq!(svg.matches("<rect").count(), 1 + 3 + 2 + 2);
        if std::env::var_os("KEEP_CHARTS").is_none() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
