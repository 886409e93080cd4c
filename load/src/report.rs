//! Results of a load run and how they are written: the terminal table, `summary.json`,
//! `samples.csv` (per-interval samples of every configuration) and SVG plots (latency
//! percentiles per configuration, sent vs received per configuration, latency over time).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::{AsRangedCoord, KeyPointHint, NoDefaultFormatting, ValueFormatter};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::stats::{Counts, Latency, MergedSample};

/// One configuration of a scenario (one point of a sweep).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunResult {
    /// Short label for tables and plot axes, e.g. `"M=1000"` or `"R=25 C=8"`.
    pub label: String,
    /// The configuration's parameters by name (members, online, rooms, clients, rate_hz, ...).
    pub params: BTreeMap<String, f64>,
    /// Length of the measured phase.
    pub duration_s: f64,
    /// Messages published.
    pub sent: u64,
    /// Deliveries expected: every published message times its online receivers.
    pub expected: u64,
    pub counts: Counts,
    /// End-to-end delivery latency over the whole measured phase.
    pub latency: Latency,
    /// Latency of the HTTP API calls the scenario made (broadcast), if any.
    pub api_call: Option<Latency>,
    /// Other figures by name: `deliveries_per_s`, `connect_per_s`, `rss_bytes_per_conn`, ...
    pub extra: BTreeMap<String, f64>,
    /// Per-interval samples, merged over workers.
    pub samples: Vec<MergedSample>,
    /// Why the run ended early, if it did (Ctrl-C, a worker failed, time limit).
    pub stopped: Option<String>,
}

/// A whole invocation: one scenario, one or more configurations.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    /// The WebSocket URL measured.
    pub target: String,
    /// Start time, RFC 3339 UTC.
    pub started: String,
    /// The command line that produced it.
    pub command: String,
    pub runs: Vec<RunResult>,
    /// Why the invocation ended before all its configurations ran, if it did.
    #[serde(default)]
    pub error: Option<String>,
}

/// Highest number of runs drawn in `timeline.svg`; more lines than this are unreadable.
const TIMELINE_MAX_RUNS: usize = 12;

/// The terminal summary: a header line, then one aligned row per run, then why runs stopped
/// early. API-call columns appear when any run made API calls, and one column per `extra`
/// figure any run has; a run without the figure shows `-`.
pub fn table(report: &Report) -> String {
    let mut out = format!(
        "scenario {}  target {}  started {}\n",
        report.scenario, report.target, report.started
    );
    if report.runs.is_empty() {
        out.push_str("(no runs)\n");
        return out;
    }
    let runs = &report.runs;
    let column = |header: &str, right: bool, cell: &dyn Fn(&RunResult) -> String| Column {
        header: header.into(),
        right,
        cells: runs.iter().map(cell).collect(),
    };
    let count =
        |header, pick: fn(&RunResult) -> u64| column(header, true, &|r| pick(r).to_string());
    let latency = |header, pick: fn(&Latency) -> f64| {
        column(header, true, &|r| latency_cell(&r.latency, pick))
    };
    let mut columns = vec![
        column("label", false, &|r| r.label.clone()),
        count("sent", |r| r.sent),
        count("expected", |r| r.expected),
        count("received", |r| r.counts.received),
        count("lost", |r| r.counts.lost),
        count("dup", |r| r.counts.duplicated),
        count("ooo", |r| r.counts.out_of_order),
        latency("p50 ms", |l| l.p50_ms),
        latency("p99 ms", |l| l.p99_ms),
        latency("max ms", |l| l.max_ms),
    ];
    if runs.iter().any(|r| r.api_call.is_some()) {
        let api = |header, pick: fn(&Latency) -> f64| {
            column(header, true, &|r| match &r.api_call {
                Some(l) => latency_cell(l, pick),
                None => "-".into(),
            })
        };
        columns.push(api("api p50 ms", |l| l.p50_ms));
        columns.push(api("api max ms", |l| l.max_ms));
    }
    let extra_names: BTreeSet<&String> = runs.iter().flat_map(|r| r.extra.keys()).collect();
    for name in extra_names {
        columns.push(column(name, true, &|r| {
            r.extra.get(name).map_or_else(|| "-".into(), |&v| figure(v))
        }));
    }

    let widths: Vec<usize> = columns.iter().map(Column::width).collect();
    let line = |cell: &dyn Fn(&Column) -> &str| {
        let cells: Vec<String> = columns
            .iter()
            .zip(&widths)
            .map(|(c, &w)| {
                if c.right {
                    format!("{:>w$}", cell(c))
                } else {
                    format!("{:<w$}", cell(c))
                }
            })
            .collect();
        let mut l = cells.join("  ").trim_end().to_string();
        l.push('\n');
        l
    };
    out.push_str(&line(&|c| &c.header));
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    out.push_str(&rule.join("  "));
    out.push('\n');
    for i in 0..runs.len() {
        out.push_str(&line(&|c| &c.cells[i]));
    }
    for run in runs {
        if let Some(why) = &run.stopped {
            out.push_str(&format!("{} stopped early: {}\n", run.label, why));
        }
    }
    if let Some(error) = &report.error {
        out.push_str(&format!("not every configuration ran: {error}\n"));
    }
    out
}

/// A latency cell: `-` when nothing was measured, since a zero would read as "instant".
fn latency_cell(l: &Latency, pick: fn(&Latency) -> f64) -> String {
    if l.count == 0 {
        "-".into()
    } else {
        ms(pick(l))
    }
}

struct Column {
    header: String,
    right: bool,
    cells: Vec<String>,
}

impl Column {
    fn width(&self) -> usize {
        self.cells
            .iter()
            .chain(std::iter::once(&self.header))
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(0)
    }
}

/// Milliseconds for the table: about three significant digits without going scientific.
fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 1000.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// An `extra` figure for the table (rates, bytes, ratios).
fn figure(v: f64) -> String {
    if !v.is_finite() {
        v.to_string()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Writes everything about `report` into `dir` (created if need be): `summary.json`,
/// `samples.csv` and, when there is at least one run, `latency.svg`, `sent_received.svg` and
/// `timeline.svg`. Returns the paths written, in that order.
///
/// Each file is written under a temporary name and renamed into place, so an interrupted
/// run leaves the previous file or the whole new one, never half of one. The data files
/// come first so that they survive a failing plot.
pub fn write_all(report: &Report, dir: &Path) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut put = |name: &str, contents: &[u8]| -> io::Result<()> {
        let path = dir.join(name);
        write_atomic(&path, contents)?;
        written.push(path);
        Ok(())
    };
    let json = serde_json::to_string_pretty(report).map_err(io::Error::other)?;
    put("summary.json", json.as_bytes())?;
    put("samples.csv", samples_csv(report).as_bytes())?;
    if !report.runs.is_empty() {
        put("latency.svg", latency_svg(report)?.as_bytes())?;
        put("sent_received.svg", sent_received_svg(report)?.as_bytes())?;
        put("timeline.svg", timeline_svg(report)?.as_bytes())?;
    }
    Ok(written)
}

/// Writes `dir/.name.tmp`, then renames it over `dir/name` (a rename within a directory
/// replaces the target in one step).
fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let result = fs::write(&tmp, contents).and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        // Best effort: the error being returned is the one that matters.
        let _ = fs::remove_file(&tmp);
    }
    result
}

const CSV_HEADER: &str =
    "run,label,t,sent,received,lost,duplicated,out_of_order,p50_ms,p99_ms,max_ms";

/// One row per merged sample of every run; `run` is the index into `summary.json`'s `runs`.
fn samples_csv(report: &Report) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for (i, run) in report.runs.iter().enumerate() {
        let label = csv_field(&run.label);
        for s in &run.samples {
            let c = &s.counts;
            let l = &s.latency;
            out.push_str(&format!(
                "{i},{label},{},{},{},{},{},{},{},{},{}\n",
                s.t,
                s.sent,
                c.received,
                c.lost,
                c.duplicated,
                c.out_of_order,
                l.p50_ms,
                l.p99_ms,
                l.max_ms
            ));
        }
    }
    out
}

/// Quotes a field as RFC 4180 does when it holds a separator, a quote or a line break.
fn csv_field(s: &str) -> Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(s)
    }
}

/// A plotted line; `None` points (nothing measured, or not drawable on a log axis) break it
/// rather than being drawn as zero.
struct Series<X> {
    name: String,
    style: ShapeStyle,
    points: Vec<(X, Option<f64>)>,
}

struct Chart<'a, X> {
    title: String,
    size: (u32, u32),
    x_desc: &'a str,
    y_desc: &'a str,
    x_labels: usize,
    x_format: &'a dyn Fn(&X) -> String,
    y_format: &'a dyn Fn(&f64) -> String,
}

/// A y axis covering `values`: logarithmic when asked for and the positive values span more
/// than 100x, else linear from zero. Never empty nor NaN, whatever the values.
fn y_axis(values: impl Iterator<Item = f64>, log_allowed: bool, min_span: f64) -> YAxis {
    let (mut hi, mut lo_positive) = (0.0_f64, f64::INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        hi = hi.max(v);
        if v > 0.0 {
            lo_positive = lo_positive.min(v);
        }
    }
    if log_allowed && lo_positive.is_finite() && hi / lo_positive > 100.0 {
        YAxis::Log(lo_positive / 2.0..hi * 2.0)
    } else {
        let top = if hi > 0.0 {
            (hi * 1.1).max(min_span)
        } else {
            1.0
        };
        YAxis::Linear(0.0..top)
    }
}

enum YAxis {
    Linear(Range<f64>),
    Log(Range<f64>),
}

impl YAxis {
    fn is_log(&self) -> bool {
        matches!(self, YAxis::Log(_))
    }
}

fn render<XS>(
    chart: &Chart<XS::Value>,
    x: XS,
    y: YAxis,
    series: &[Series<XS::Value>],
) -> io::Result<String>
where
    XS: AsRangedCoord,
    XS::CoordDescType: ValueFormatter<XS::Value>,
    XS::Value: Clone + 'static,
{
    match y {
        YAxis::Linear(range) => render_with(chart, x, range, series),
        YAxis::Log(range) => render_with(chart, x, range.log_scale(), series),
    }
}

fn render_with<XS, YS>(
    chart: &Chart<XS::Value>,
    x: XS,
    y: YS,
    series: &[Series<XS::Value>],
) -> io::Result<String>
where
    XS: AsRangedCoord,
    YS: AsRangedCoord<Value = f64>,
    XS::CoordDescType: ValueFormatter<XS::Value>,
    YS::CoordDescType: ValueFormatter<f64>,
    XS::Value: Clone + 'static,
{
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, chart.size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut ctx = ChartBuilder::on(&root)
            .caption(&chart.title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(x, y)
            .map_err(plot_error)?;
        ctx.configure_mesh()
            .x_labels(chart.x_labels)
            .x_label_formatter(chart.x_format)
            .y_label_formatter(chart.y_format)
            .x_desc(chart.x_desc)
            .y_desc(chart.y_desc)
            .draw()
            .map_err(plot_error)?;
        let mut any_labelled = false;
        for s in series {
            let style = s.style;
            let mut labelled = false;
            for segment in s.points.split(|(_, v)| v.is_none()) {
                if segment.is_empty() {
                    continue;
                }
                let points = segment
                    .iter()
                    .filter_map(|(x, v)| v.map(|v| (x.clone(), v)));
                let anno = ctx
                    .draw_series(LineSeries::new(points, style).point_size(3))
                    .map_err(plot_error)?;
                if !labelled {
                    anno.label(s.name.as_str()).legend(move |(x, y)| {
                        PathElement::new(vec![(x - 8, y), (x + 8, y)], style)
                    });
                    labelled = true;
                }
            }
            any_labelled |= labelled;
        }
        if any_labelled {
            ctx.configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(plot_error)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn plot_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("plotting failed: {e}"))
}

fn title(report: &Report, what: &str) -> String {
    if report.scenario.is_empty() {
        what.to_string()
    } else {
        format!("{}: {what}", report.scenario)
    }
}

/// Axis text: three significant digits at most, no trailing zeros, never scientific.
fn axis_number(v: &f64) -> String {
    let v = *v;
    if v == 0.0 || !v.is_finite() {
        return v.to_string();
    }
    let decimals = (2 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Counts on an axis: 12k, 3.4M.
fn axis_count(v: &f64) -> String {
    let v = *v;
    for (scale, suffix) in [(1e9, "G"), (1e6, "M"), (1e3, "k")] {
        if v.abs() >= scale {
            return format!("{}{suffix}", axis_number(&(v / scale)));
        }
    }
    axis_number(&v)
}

/// Width for a chart with one x position per run, so that run labels have room.
fn per_run_width(report: &Report) -> u32 {
    let longest = report
        .runs
        .iter()
        .map(|r| r.label.chars().count())
        .max()
        .unwrap_or(0);
    let per_run = (longest * 8 + 16).max(60);
    (report.runs.len() * per_run + 200).clamp(800, 4000) as u32
}

/// The x axis of per-run charts: run `i` at `x = i`, half a step of room either side, a tick
/// at every run and nowhere else (plotters' own numeric axes tick at round fractions too).
struct RunAxis {
    runs: usize,
}

impl Ranged for RunAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        // `runs` is at least 1 here, so the span is never zero.
        let share = (value + 0.5) / self.runs.max(1) as f64;
        limit.0 + (share * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            (0..self.runs).map(|i| i as f64).collect()
        }
    }

    fn range(&self) -> Range<f64> {
        -0.5..self.runs as f64 - 0.5
    }
}

impl ValueFormatter<f64> for RunAxis {
    fn format(value: &f64) -> String {
        axis_number(value)
    }
}

/// A chart with one x position per run, labelled with the run labels.
fn per_run_chart(
    report: &Report,
    what: &str,
    y_desc: &str,
    y_log_allowed: bool,
    y_min_span: f64,
    y_format: &dyn Fn(&f64) -> String,
    series: Vec<(&str, ShapeStyle, Vec<Option<f64>>)>,
) -> io::Result<String> {
    let runs = report.runs.len();
    let y = y_axis(
        series
            .iter()
            .flat_map(|(_, _, v)| v.iter().flatten().copied()),
        y_log_allowed,
        y_min_span,
    );
    let log = y.is_log();
    let series: Vec<Series<f64>> = series
        .into_iter()
        .map(|(name, style, values)| Series {
            name: name.to_string(),
            style,
            points: values
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    let drawable = v.filter(|v| v.is_finite() && (!log || *v > 0.0));
                    (i as f64, drawable)
                })
                .collect(),
        })
        .collect();
    // Run i sits at x = i; ticks only there, labelled with the run label.
    let x_format = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            report.runs.get(i as usize).map(|r| r.label.clone())
        } else {
            None
        }
        .unwrap_or_default()
    };
    let chart = Chart {
        title: title(report, what),
        size: (per_run_width(report), 500),
        x_desc: "configuration",
        y_desc,
        x_labels: report.runs.len(),
        x_format: &x_format,
        y_format,
    };
    render(&chart, RunAxis { runs }, y, &series)
}

fn latency_svg(report: &Report) -> io::Result<String> {
    // A run without deliveries has no latency, not a zero one.
    let pick = |f: fn(&Latency) -> f64| -> Vec<Option<f64>> {
        report
            .runs
            .iter()
            .map(|r| (r.latency.count > 0).then(|| f(&r.latency)))
            .collect()
    };
    per_run_chart(
        report,
        "latency percentiles per configuration",
        "latency (ms)",
        true,
        0.01,
        &axis_number,
        vec![
            ("p50", BLUE.stroke_width(2), pick(|l| l.p50_ms)),
            ("p99", RED.stroke_width(2), pick(|l| l.p99_ms)),
            ("max", BLACK.stroke_width(2), pick(|l| l.max_ms)),
        ],
    )
}

fn sent_received_svg(report: &Report) -> io::Result<String> {
    let pick = |f: fn(&RunResult) -> u64| -> Vec<Option<f64>> {
        report.runs.iter().map(|r| Some(f(r) as f64)).collect()
    };
    per_run_chart(
        report,
        "expected vs received deliveries per configuration",
        "deliveries",
        false,
        1.0,
        &axis_count,
        vec![
            // Wide and light, so that a received line on top of it stays visible.
            (
                "expected",
                RGBColor(160, 160, 160).stroke_width(6),
                pick(|r| r.expected),
            ),
            (
                "received",
                BLUE.stroke_width(2),
                pick(|r| r.counts.received),
            ),
        ],
    )
}

fn timeline_svg(report: &Report) -> io::Result<String> {
    let runs = &report.runs[..report.runs.len().min(TIMELINE_MAX_RUNS)];
    let samples = || runs.iter().flat_map(|r| &r.samples);
    // Intervals without deliveries have no latency; they break the line.
    let measured = |s: &MergedSample| (s.latency.count > 0).then_some(s.latency.p99_ms);
    let y = y_axis(samples().filter_map(measured), true, 0.01);
    let log = y.is_log();
    let t_max = samples()
        .map(|s| s.t)
        .filter(|t| t.is_finite())
        .fold(0.0_f64, f64::max);
    let t_min = samples()
        .map(|s| s.t)
        .filter(|t| t.is_finite())
        .fold(0.0_f64, f64::min);
    let series: Vec<Series<f64>> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| Series {
            name: r.label.clone(),
            style: Palette99::pick(i).stroke_width(2),
            points: r
                .samples
                .iter()
                .filter(|s| s.t.is_finite())
                .map(|s| {
                    (
                        s.t,
                        measured(s).filter(|v| v.is_finite() && (!log || *v > 0.0)),
                    )
                })
                .collect(),
        })
        .collect();
    let what = if report.runs.len() > runs.len() {
        format!(
            "p99 latency per interval (first {} of {} runs)",
            runs.len(),
            report.runs.len()
        )
    } else {
        "p99 latency per interval".to_string()
    };
    let chart = Chart {
        title: title(report, &what),
        size: (1000, 500),
        x_desc: "t (s)",
        y_desc: "p99 latency (ms)",
        x_labels: 10,
        x_format: &axis_number,
        y_format: &axis_number,
    };
    render(&chart, t_min..t_max.max(t_min + 1.0), y, &series)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed when dropped (even on panic).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let unique = format!(
                "ringcast-report-{name}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            TempDir(std::env::temp_dir().join(unique))
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn latency(p50_ms: f64, p99_ms: f64, max_ms: f64) -> Latency {
        Latency {
            count: 100,
            mean_ms: p50_ms,
            p50_ms,
            p90_ms: p99_ms,
            p99_ms,
            p999_ms: max_ms,
            max_ms,
        }
    }

    fn sample(t: f64, received: u64, latency: Latency) -> MergedSample {
        MergedSample {
            t,
            sent: received,
            counts: Counts {
                received,
                ..Counts::default()
            },
            latency,
        }
    }

    fn run(label: &str, sent: u64, lat: Latency, samples: usize) -> RunResult {
        RunResult {
            label: label.into(),
            params: BTreeMap::from([("members".to_string(), 1000.0)]),
            duration_s: samples as f64,
            sent,
            expected: sent * 2,
            counts: Counts {
                received: (sent * 2).saturating_sub(5),
                lost: 5,
                duplicated: 3,
                out_of_order: 7,
            },
            latency: lat,
            samples: (1..=samples)
                .map(|i| sample(i as f64, sent / samples as u64, lat))
                .collect(),
            ..RunResult::default()
        }
    }

    fn report(runs: Vec<RunResult>) -> Report {
        Report {
            scenario: "fanout".into(),
            target: "ws://127.0.0.1:8000/connection/websocket".into(),
            started: "2025-01-02T03:04:05Z".into(),
            command: "ringcast-load fanout".into(),
            runs,
            error: None,
        }
    }

    fn two_runs() -> Report {
        let mut a = run("M=1000", 12345, latency(1.25, 9.5, 42.7), 3);
        a.extra.insert("deliveries_per_s".into(), 98765.4);
        a.api_call = Some(latency(0.5, 2.0, 3.25));
        a.stopped = Some("Ctrl-C".into());
        let b = run("R=25 C=8", 500, latency(0.8, 150.0, 2500.0), 4);
        report(vec![a, b])
    }

    #[test]
    fn table_lists_every_run_with_its_numbers_aligned() {
        let text = table(&two_runs());
        let lines: Vec<&str> = text.lines().collect();
        for expected in ["fanout", "ws://127.0.0.1", "2025-01-02T03:04:05Z"] {
            assert!(lines[0].contains(expected), "header: {}", lines[0]);
        }
        for expected in [
            "M=1000",
            "R=25 C=8",
            "12345",
            "24690",
            "24685",
            "1.25",
            "9.50",
            "42.7",
            "150.0",
            "2500",
            "0.50",
            "3.25",
            "98765",
            "deliveries_per_s",
            "api p50 ms",
            "Ctrl-C",
        ] {
            assert!(text.contains(expected), "{expected} missing from\n{text}");
        }
        // Column header, rule and both rows end at the same column (right-aligned last column).
        let width = lines[1].len();
        assert!(lines[1..5].iter().all(|l| l.len() == width), "{text}");
        // The run without the extra figure or API calls shows dashes, not zeros.
        assert!(
            lines[4].starts_with("R=25 C=8") && lines[4].ends_with('-'),
            "{text}"
        );
    }

    #[test]
    fn table_leaves_out_empty_columns_and_handles_no_runs() {
        let text = table(&report(vec![run("only", 10, Latency::default(), 0)]));
        assert!(!text.contains("api p50"), "{text}");
        assert!(!text.contains("deliveries_per_s"), "{text}");
        assert!(text.contains("only"));
        let text = table(&report(vec![]));
        assert!(
            text.contains("fanout") && text.contains("no runs"),
            "{text}"
        );
    }

    #[test]
    fn write_all_writes_data_and_plots() {
        let dir = TempDir::new("all");
        let report = two_runs();
        let paths = write_all(&report, &dir.0).expect("writes");
        let names: Vec<String> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "summary.json",
                "samples.csv",
                "latency.svg",
                "sent_received.svg",
                "timeline.svg"
            ]
        );
        assert!(paths.iter().all(|p| p.starts_with(&dir.0) && p.is_file()));

        let back: Report =
            serde_json::from_str(&fs::read_to_string(&paths[0]).unwrap()).expect("parses");
        assert_eq!((back.scenario.as_str(), back.runs.len()), ("fanout", 2));
        for (b, r) in back.runs.iter().zip(&report.runs) {
            assert_eq!(b.label, r.label);
            assert_eq!(
                (b.sent, b.expected, b.counts),
                (r.sent, r.expected, r.counts)
            );
            assert_eq!((b.latency, b.api_call), (r.latency, r.api_call));
            assert_eq!((&b.extra, b.samples.len()), (&r.extra, r.samples.len()));
        }

        let csv = fs::read_to_string(&paths[1]).unwrap();
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows[0], CSV_HEADER);
        assert_eq!(rows.len(), 1 + 3 + 4);
        assert!(rows[1].starts_with("0,M=1000,1,"), "{}", rows[1]);
        assert!(rows[7].starts_with("1,R=25 C=8,4,"), "{}", rows[7]);
        assert!(rows.iter().all(|r| r.split(',').count() == 11));

        for path in &paths[2..] {
            let svg = fs::read_to_string(path).unwrap();
            assert!(svg.starts_with("<svg"), "{}", path.display());
            assert!(svg.trim_end().ends_with("</svg>"), "{}", path.display());
            for r in &report.runs {
                assert!(
                    svg.contains(&r.label),
                    "{} lacks {}",
                    path.display(),
                    r.label
                );
            }
        }
        let leftovers = fs::read_dir(&dir.0).unwrap().count();
        assert_eq!(leftovers, 5, "no temporary files left behind");
    }

    #[test]
    fn zero_runs_write_data_files_only() {
        let dir = TempDir::new("empty");
        let paths = write_all(&report(vec![]), &dir.0.join("nested")).expect("writes");
        assert_eq!(paths.len(), 2);
        let csv = fs::read_to_string(&paths[1]).unwrap();
        assert_eq!(csv.lines().collect::<Vec<_>>(), [CSV_HEADER]);
        let back: Report = serde_json::from_str(&fs::read_to_string(&paths[0]).unwrap()).unwrap();
        assert!(back.runs.is_empty());
    }

    #[test]
    fn degenerate_runs_still_plot() {
        // One run with no deliveries at all: zero latencies, no samples.
        let dir = TempDir::new("single");
        let mut silent = run("silent", 0, Latency::default(), 0);
        silent.counts = Counts::default();
        silent.expected = 0;
        let paths = write_all(&report(vec![silent]), &dir.0).expect("writes");
        assert_eq!(paths.len(), 5);

        // Zero-valued latencies that claim a count, intervals without deliveries, a time
        // of NaN, and a log-scale latency axis.
        let mut zero = run("zero", 10, latency(0.0, 0.0, 0.0), 2);
        zero.samples.push(sample(f64::NAN, 0, Latency::default()));
        zero.samples.push(sample(4.0, 0, Latency::default()));
        let wide = run("wide", 10, latency(0.001, 5.0, 600_000.0), 1);
        let dir = TempDir::new("degenerate");
        let paths = write_all(&report(vec![zero, wide]), &dir.0).expect("writes");
        for path in &paths[2..] {
            let svg = fs::read_to_string(path).unwrap();
            assert!(svg.starts_with("<svg") && !svg.contains("NaN"), "{svg}");
        }
    }

    #[test]
    fn timeline_draws_at_most_twelve_runs() {
        let runs = (1..=15)
            .map(|i| run(&format!("c{i:02}"), 100, latency(1.0, 2.0, 3.0), 2))
            .collect();
        let svg = timeline_svg(&report(runs)).unwrap();
        assert!(svg.contains("c12") && !svg.contains("c13"));
        assert!(svg.contains("first 12 of 15 runs"));
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("R=25 C=8"), "R=25 C=8");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn axis_numbers_are_short() {
        assert_eq!(axis_number(&0.0), "0");
        assert_eq!(axis_number(&0.00125), "0.00125");
        assert_eq!(axis_number(&12.5), "12.5");
        assert_eq!(axis_number(&1500.0), "1500");
        assert_eq!(axis_count(&2_500_000.0), "2.5M");
    }
}

/// The current time as RFC 3339 UTC (`2026-12-01T12:00:00Z`), without a date crate.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

fn rfc3339(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_796_083_200), "2026-12-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400 + 3_661), "2000-02-29T01:01:01Z");
    }
}
