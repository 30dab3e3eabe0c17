//! `vaart-bench report`: RESULTS.md and its plot from a folder of JSON files written by one
//! `bench/run`: `limits.json` (the machine limits), one load report per scenario (any
//! `*.json` with a `kind`), and optionally `broker_rss.json` (idle resident memory of the
//! broker per partition count and state, which the script reads from `/proc`).
//!
//! The plot is SVG drawn with `plotters`: throughput of each produce/consume scenario against
//! the disk and loopback limits, and latency percentiles of the latency scenarios.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use clap::Args;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{io_error, BenchError};
use crate::limits::MachineLimits;
use crate::load::report::LoadReport;
use crate::load::stats::Percentiles;
use crate::load::stats::TimelinePoint;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Folder with limits.json, the load reports and broker_rss.json.
    #[arg(long)]
    pub results: PathBuf,
    /// The Markdown file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// The SVG plot to write (linked from the Markdown by its file name).
    #[arg(long)]
    pub svg: PathBuf,
    /// A line about how the suite was run, for the top of the file.
    #[arg(long)]
    pub note: Option<String>,
}

/// One idle-memory measurement of the broker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RssSample {
    pub partitions: u64,
    pub rss_bytes: u64,
    /// When it was read, e.g. "topic just created (one record), idle 3 s".
    #[serde(default)]
    pub state: Option<String>,
}

/// A timeline point this far (s) past the end of the warm-up still counts as warm-up: each
/// point is the rate over the second before it.
const WARMUP_SLACK_S: f64 = 0.5;

/// The limits bench/run measures again right after consume-catchup.
pub const LIMITS_AFTER_CATCHUP: &str = "limits-after-catchup.json";

pub fn run(args: &ReportArgs) -> Result<(), BenchError> {
    let limits_path = args.results.join("limits.json");
    let limits = limits_path
        .exists()
        .then(|| MachineLimits::load(&limits_path))
        .transpose()?;
    // bench/run measures the disk again right after consume-catchup: the virtual disk's
    // bandwidth drifts over minutes.
    let after_path = args.results.join(LIMITS_AFTER_CATCHUP);
    let read_after_catchup = after_path
        .exists()
        .then(|| MachineLimits::load(&after_path))
        .transpose()?
        .map(|limits| limits.disk_read_MB_per_s);
    let rss_path = args.results.join("broker_rss.json");
    let rss: Vec<RssSample> = if rss_path.exists() {
        let text = fs::read(&rss_path).map_err(io_error("read", &rss_path))?;
        serde_json::from_slice(&text).map_err(|source| BenchError::Json {
            path: rss_path.clone(),
            source,
        })?
    } else {
        Vec::new()
    };
    let reports = load_reports(&args.results)?;
    if reports.is_empty() {
        return Err(BenchError::NoResults(args.results.clone()));
    }
    draw_plot(&args.svg, &reports, limits.as_ref())?;
    let svg_link = args.svg.file_name().map_or_else(
        || args.svg.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    );
    let markdown = markdown(
        &reports,
        limits.as_ref(),
        read_after_catchup,
        &rss,
        &svg_link,
        args.note.as_deref(),
    );
    fs::write(&args.out, markdown).map_err(io_error("write", &args.out))?;
    println!("wrote {} and {}", args.out.display(), args.svg.display());
    Ok(())
}

/// Every load report in `dir`, in file-name order (the script numbers them).
fn load_reports(dir: &Path) -> Result<Vec<LoadReport>, BenchError> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io_error("read dir", dir))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    let mut reports = Vec::new();
    for path in paths {
        let text = fs::read(&path).map_err(io_error("read", &path))?;
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&text) else {
            continue;
        };
        if value.get("kind").is_none() {
            continue;
        }
        let report: LoadReport =
            serde_json::from_value(value).map_err(|source| BenchError::Json { path, source })?;
        reports.push(report);
    }
    Ok(reports)
}

fn label(report: &LoadReport) -> String {
    report.label.clone().unwrap_or_else(|| report.kind.clone())
}

fn find<'a>(reports: &'a [LoadReport], wanted: &str) -> Option<&'a LoadReport> {
    reports
        .iter()
        .find(|report| report.label.as_deref() == Some(wanted))
}

fn setting<'a>(report: &'a LoadReport, key: &str) -> &'a str {
    report.settings.get(key).map_or("-", String::as_str)
}

/// The scenario's warm-up in seconds, as given (`-` if the report does not say).
fn warmup_s(report: &LoadReport) -> &str {
    setting(report, "warmup_s")
}

/// The per-second message rates of a run in thousands, `|` where the warm-up ends.
fn timeline_line(report: &LoadReport) -> String {
    timeline_figures(report, |point| format!("{:.0}", point.msgs_per_s / 1000.0))
}

/// The worst latency of each second of a run in ms, `|` where the warm-up ends (`-` for a
/// second in which nothing finished).
fn worst_latency_line(report: &LoadReport) -> String {
    timeline_figures(report, |point| {
        point
            .max_ms
            .map_or_else(|| "-".to_owned(), |max| format!("{max:.1}"))
    })
}

/// One figure per timeline point, `|` where the warm-up ends.
fn timeline_figures(report: &LoadReport, figure: impl Fn(&TimelinePoint) -> String) -> String {
    let warmup = warmup_s(report).parse::<f64>().ok();
    let mut parts = Vec::with_capacity(report.timeline.len() + 1);
    let mut marked = warmup.is_none_or(|warmup| warmup <= 0.0);
    for point in &report.timeline {
        if !marked && warmup.is_some_and(|warmup| point.t_s > warmup + WARMUP_SLACK_S) {
            parts.push("|".to_owned());
            marked = true;
        }
        parts.push(figure(point));
    }
    parts.join(" ")
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.2}"))
}

fn markdown(
    reports: &[LoadReport],
    limits: Option<&MachineLimits>,
    read_after_catchup: Option<f64>,
    rss: &[RssSample],
    svg_link: &str,
    note: Option<&str>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Vaart benchmark results\n");
    let _ = writeln!(
        out,
        "Generated by `bench/run` (`vaart-bench report`); do not edit by hand. MB = 10^6 bytes of \
         payload; latencies in ms from the intended send time (open loop) to the broker's \
         acknowledgement; e2e = to the consumer's receipt.\n"
    );
    if let Some(note) = note {
        let _ = writeln!(out, "{note}\n");
    }
    if let Some(first) = reports.first() {
        let _ = writeln!(out, "**Machine:** {}\n", first.machine);
    }
    if let Some(limits) = limits {
        let _ = writeln!(
            out,
            "**Limits measured in this run:** O_DIRECT sequential write {:.0} MB/s, O_DIRECT \
             sequential read {:.0} MB/s (1 MiB I/Os, 4 in flight, on the data directory's disk), \
             loopback TCP {:.0} MB/s (one sender and one receiver thread).\n",
            limits.disk_write_MB_per_s, limits.disk_read_MB_per_s, limits.loopback_MB_per_s
        );
    }
    let _ = writeln!(out, "![throughput and latency]({svg_link})\n");
    let _ = writeln!(out, "## Scenarios\n");
    let _ = writeln!(
        out,
        "| scenario | partitions | conns | acks | rate target | warm-up s | msgs/s | MB/s | of limit | p50 | p99 | p99.9 | p99.99 | max | e2e p99 | e2e p99.9 | generator cores | broker cores | broker RSS MiB | disk busy |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for report in reports {
        let latency = report.latency_ms;
        let e2e = report.e2e_latency_ms;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {:.0} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            label(report),
            setting(report, "partitions"),
            report
                .settings
                .get("connections")
                .or_else(|| report.settings.get("consumers"))
                .map_or("-", String::as_str),
            setting(report, "acks"),
            report
                .target_msgs_per_s
                .map_or_else(|| "max".to_owned(), |rate| format!("{rate:.0}")),
            warmup_s(report),
            report.msgs_per_s,
            report.MB_per_s,
            report.bound.as_ref().map_or_else(
                || "-".to_owned(),
                |bound| format!("{:.0}% of {}", bound.fraction * 100.0, bound.limit)
            ),
            ms(latency.map(|l| l.p50)),
            ms(latency.map(|l| l.p99)),
            ms(latency.map(|l| l.p999)),
            ms(latency.map(|l| l.p9999)),
            ms(latency.map(|l| l.max)),
            ms(e2e.map(|l| l.p99)),
            ms(e2e.map(|l| l.p999)),
            report
                .cpu
                .generator_cores_used
                .map_or_else(|| "-".to_owned(), |cores| format!("{cores:.2}")),
            report
                .cpu
                .broker_cores_used
                .map_or_else(|| "-".to_owned(), |cores| format!("{cores:.2}")),
            report
                .cpu
                .broker_rss_bytes
                .map_or_else(|| "-".to_owned(), |bytes| (bytes >> 20).to_string()),
            report.disk.as_ref().map_or_else(
                || "-".to_owned(),
                |disk| format!("{:.0}%", disk.busy_fraction * 100.0)
            ),
        );
    }
    if !rss.is_empty() {
        let _ = writeln!(out, "\n## Broker memory, idle\n");
        let _ = writeln!(
            out,
            "| partitions | when | resident memory (MiB) |\n|---:|---|---:|"
        );
        for sample in rss {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                sample.partitions,
                sample.state.as_deref().unwrap_or("-"),
                sample.rss_bytes >> 20
            );
        }
    }
    let _ = writeln!(out, "\n## Goals (issue 6) against this run\n");
    for line in goals(reports, limits, read_after_catchup, rss) {
        let _ = writeln!(out, "- {line}");
    }
    if reports.iter().any(|report| !report.timeline.is_empty()) {
        let _ = writeln!(out, "\n## Per-second rates, warm-up included\n");
        let _ = writeln!(
            out,
            "Thousands of messages per second in each second of the run; `|` marks the end of \
             the warm-up (the figures above are measured after it).\n"
        );
        for report in reports.iter().filter(|report| !report.timeline.is_empty()) {
            let warmup = match warmup_s(report) {
                "-" => String::new(),
                seconds => format!(" (warm-up {seconds} s)"),
            };
            let _ = writeln!(
                out,
                "- **{}**{warmup}: {}",
                label(report),
                timeline_line(report)
            );
        }
    }
    let with_latency: Vec<&LoadReport> = reports
        .iter()
        .filter(|report| report.timeline.iter().any(|point| point.max_ms.is_some()))
        .collect();
    if !with_latency.is_empty() {
        let _ = writeln!(out, "\n## Worst latency in each second, warm-up included\n");
        let _ = writeln!(
            out,
            "The slowest message (ms) of each second, as the progress line showed it: a stall \
             shows as one or a few bad seconds, a broker or generator that cannot keep up as a \
             rise that does not come back down.\n"
        );
        for report in with_latency {
            let _ = writeln!(
                out,
                "- **{}**: {}",
                label(report),
                worst_latency_line(report)
            );
        }
    }
    let _ = writeln!(out, "\n## Settings of each scenario\n");
    for report in reports {
        let settings: Vec<String> = report
            .settings
            .iter()
            .filter(|(key, _)| key.as_str() != "bootstrap_server")
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        let _ = writeln!(
            out,
            "- **{}** ({}): {}",
            label(report),
            report.kind,
            settings.join(", ")
        );
    }
    out
}

fn verdict(reached: bool) -> &'static str {
    if reached {
        "**reached**"
    } else {
        "**not reached**"
    }
}

/// The goals of issue 6, each with the measured figure.
fn goals(
    reports: &[LoadReport],
    limits: Option<&MachineLimits>,
    read_after_catchup: Option<f64>,
    rss: &[RssSample],
) -> Vec<String> {
    let mut lines = Vec::new();
    match (find(reports, "produce-3p-max"), limits) {
        (Some(report), Some(limits)) => {
            let (limit, limit_mb) = limits.produce_bound();
            let fraction = report.MB_per_s / limit_mb;
            lines.push(format!(
                "Produce 1 KiB, 3 partitions, acks=1: {:.1} MB/s = {:.1}% of {limit} ({limit_mb:.0} MB/s); goal 80%: {}.",
                report.MB_per_s,
                fraction * 100.0,
                verdict(fraction >= 0.8)
            ));
        }
        _ => lines.push("Produce throughput: scenario produce-3p-max or limits missing.".into()),
    }
    match find(reports, "produce-3p-open-half").and_then(|report| report.latency_ms.map(|l| (report, l))) {
        Some((report, latency)) => lines.push(format!(
            "Open loop at half the peak rate ({} msgs/s target, {:.0} reached): p99 {:.2} ms (goal < 1 ms: {}), p99.9 {:.2} ms (goal < 5 ms: {}).",
            report.target_msgs_per_s.map_or_else(|| "?".to_owned(), |rate| format!("{rate:.0}")),
            report.msgs_per_s,
            latency.p99,
            verdict(latency.p99 < 1.0),
            latency.p999,
            verdict(latency.p999 < 5.0)
        )),
        None => lines.push("Latency at half the peak: scenario produce-3p-open-half missing.".into()),
    }
    match (find(reports, "consume-catchup"), limits) {
        (Some(report), Some(limits)) => {
            let (limit, limit_mb) = limits.consume_bound();
            let fraction = report.MB_per_s / limit_mb;
            let disk = report.disk.as_ref().map_or_else(String::new, |disk| {
                format!(
                    " During the run the disk ({}) was busy {:.0}% of the time and read {:.0} MB/s (warm-up and ramp included).",
                    disk.device,
                    disk.busy_fraction * 100.0,
                    disk.read_MB_per_s
                )
            });
            let again = read_after_catchup.map_or_else(String::new, |read_mb| {
                format!(
                    " Disk read measured again right after it: {read_mb:.0} MB/s (catch-up = {:.1}% of that).",
                    report.MB_per_s / read_mb.max(f64::MIN_POSITIVE) * 100.0
                )
            });
            lines.push(format!(
                "Consume catch-up: {:.1} MB/s = {:.1}% of {limit} ({limit_mb:.0} MB/s); goal 90%: {}.{disk}{again}",
                report.MB_per_s,
                fraction * 100.0,
                verdict(fraction >= 0.9)
            ));
        }
        _ => lines.push("Consume catch-up: scenario consume-catchup or limits missing.".into()),
    }
    if let Some(line) = memory_goal(rss) {
        lines.push(line);
    }
    if let (Some(many), Some(few)) = (
        find(reports, "partitions-10000"),
        find(reports, "partitions-3"),
    ) {
        let ratio = many.MB_per_s / few.MB_per_s.max(f64::MIN_POSITIVE);
        let batch = |report: &LoadReport| {
            report
                .settings
                .get("batch_size")
                .cloned()
                .unwrap_or_else(|| "?".to_owned())
        };
        lines.push(format!(
            "Produce with 10,000 partitions: {:.1} MB/s vs {:.1} MB/s with 3 ({:.1}%; batch.size {} and {} bytes); goal within 20%: {}.",
            many.MB_per_s,
            few.MB_per_s,
            ratio * 100.0,
            batch(many),
            batch(few),
            verdict(ratio >= 0.8)
        ));
    }
    if let Some(report) = find(reports, "produce-3p-max") {
        let cores = report.cpu.generator_cores_used;
        let per_gb = report.cpu.generator_cpu_s_per_GB;
        // What one fully busy core of the generator would push at the CPU cost measured.
        let per_core_mb_per_s = per_gb.filter(|cost| *cost > 0.0).map(|cost| 1000.0 / cost);
        let not_bottleneck = cores.is_some_and(|cores| cores < 0.9)
            && per_core_mb_per_s.is_some_and(|capacity| capacity > report.MB_per_s);
        let acks0 = find(reports, "generator-acks0").map_or_else(String::new, |capacity| {
            format!(
                "; with acks=0 (no acknowledgement to wait for) it pushed {:.1} MB/s",
                capacity.MB_per_s
            )
        });
        lines.push(format!(
            "Generator not the bottleneck: during produce-3p-max it used {} cores ({} CPU-s per GB), so one busy core would push about {} MB/s, against the {:.1} MB/s the broker acknowledged{acks0}: {}.",
            cores.map_or_else(|| "?".to_owned(), |cores| format!("{cores:.2}")),
            per_gb.map_or_else(|| "?".to_owned(), |value| format!("{value:.2}")),
            per_core_mb_per_s.map_or_else(|| "?".to_owned(), |value| format!("{value:.0}")),
            report.MB_per_s,
            verdict(not_bottleneck)
        ));
    }
    lines
}

/// The idle-memory goal, judged on the worst idle figure with 10,000 or more partitions (the
/// topic just created, and after load).
fn memory_goal(rss: &[RssSample]) -> Option<String> {
    let many: Vec<&RssSample> = rss
        .iter()
        .filter(|sample| sample.partitions >= 10_000)
        .collect();
    let worst = many.iter().max_by_key(|sample| sample.rss_bytes)?;
    let gib = worst.rss_bytes as f64 / f64::from(1u32 << 30);
    let state = worst
        .state
        .as_deref()
        .map_or_else(String::new, |state| format!(" ({state})"));
    let which = if many.len() > 1 {
        format!("the worse of the {} idle figures", many.len())
    } else {
        "the only idle figure".to_owned()
    };
    let others: Vec<String> = many
        .iter()
        .filter(|sample| !std::ptr::eq(**sample, *worst))
        .map(|sample| {
            let state = sample
                .state
                .as_deref()
                .map_or_else(String::new, |state| format!(" ({state})"));
            format!("{} MiB{state}", sample.rss_bytes >> 20)
        })
        .collect();
    let others = if others.is_empty() {
        String::new()
    } else {
        format!("; other: {}", others.join(", "))
    };
    Some(format!(
        "Broker resident memory idle with {} partitions, {which}: {} MiB{state}{others}; goal < 1 GiB: {}.",
        worst.partitions,
        worst.rss_bytes >> 20,
        verdict(gib < 1.0)
    ))
}

fn plot_error(path: &Path) -> impl Fn(String) -> BenchError + '_ {
    move |reason| BenchError::Plot {
        path: path.to_path_buf(),
        reason,
    }
}

/// Left: MB/s of produce and consume scenarios with the limits as lines. Right: latency
/// percentiles (log scale) of scenarios that measured latency.
fn draw_plot(
    path: &Path,
    reports: &[LoadReport],
    limits: Option<&MachineLimits>,
) -> Result<(), BenchError> {
    let fail = plot_error(path);
    let root = SVGBackend::new(path, (1400, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(|error| fail(error.to_string()))?;
    let (left, right) = root.split_horizontally(700);

    let bars: Vec<(String, f64)> = reports
        .iter()
        // e2e runs at a fixed rate say nothing about throughput; at max rate (consume-tail) they do.
        .filter(|report| report.kind != "e2e" || report.target_msgs_per_s.is_none())
        .map(|report| (label(report), report.MB_per_s))
        .collect();
    let limit_lines: Vec<(String, f64, RGBColor)> = limits.map_or_else(Vec::new, |limits| {
        vec![
            (
                "disk write (O_DIRECT)".to_owned(),
                limits.disk_write_MB_per_s,
                RED,
            ),
            (
                "disk read (O_DIRECT)".to_owned(),
                limits.disk_read_MB_per_s,
                MAGENTA,
            ),
            ("loopback TCP".to_owned(), limits.loopback_MB_per_s, GREEN),
        ]
    });
    let top = bars
        .iter()
        .map(|(_, value)| *value)
        .chain(limit_lines.iter().map(|(_, value, _)| *value))
        .fold(1.0f64, f64::max)
        * 1.1;
    let count = bars.len().max(1);
    // Horizontal bars, first scenario on top; `0..count - 1` makes exactly `count` segments.
    let mut chart = ChartBuilder::on(&left)
        .caption("Throughput (MB/s of payload)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(150)
        .build_cartesian_2d(0f64..top, (0..count - 1).into_segmented())
        .map_err(|error| fail(error.to_string()))?;
    let names: Vec<String> = bars.iter().map(|(name, _)| name.clone()).collect();
    let row = |index: usize| count - 1 - index;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(count)
        .y_label_formatter(&|value| match value {
            SegmentValue::CenterOf(position) => names
                .get(count - 1 - *position)
                .cloned()
                .unwrap_or_default(),
            _ => String::new(),
        })
        .y_label_style(("sans-serif", 13))
        .x_desc("MB/s")
        .draw()
        .map_err(|error| fail(error.to_string()))?;
    chart
        .draw_series(bars.iter().enumerate().map(|(index, (_, value))| {
            let mut bar = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(row(index))),
                    (*value, SegmentValue::Exact(row(index) + 1)),
                ],
                BLUE.mix(0.6).filled(),
            );
            bar.set_margin(4, 4, 0, 0);
            bar
        }))
        .map_err(|error| fail(error.to_string()))?;
    chart
        .draw_series(bars.iter().enumerate().map(|(index, (_, value))| {
            Text::new(
                format!("{value:.0}"),
                (*value + top * 0.01, SegmentValue::CenterOf(row(index))),
                ("sans-serif", 12),
            )
        }))
        .map_err(|error| fail(error.to_string()))?;
    for (name, value, color) in &limit_lines {
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                [
                    (*value, SegmentValue::Exact(0)),
                    (*value, SegmentValue::Exact(count)),
                ],
                color.stroke_width(2),
            ))
            .map_err(|error| fail(error.to_string()))?
            .label(format!("{name}: {value:.0}"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    if !limit_lines.is_empty() {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|error| fail(error.to_string()))?;
    }

    let series: Vec<(String, Percentiles)> = reports
        .iter()
        .filter_map(|report| {
            let latency = report.e2e_latency_ms.or(report.latency_ms)?;
            // Open-loop runs (their latency is the point) and the max-rate reference; other
            // max-rate runs only show their queueing.
            let shown = report.target_msgs_per_s.is_some()
                || report.label.as_deref() == Some("produce-3p-max");
            (report.kind != "consume" && shown).then(|| {
                let suffix = if report.e2e_latency_ms.is_some() {
                    " (producer to consumer)"
                } else {
                    ""
                };
                (format!("{}{suffix}", label(report)), latency)
            })
        })
        .collect();
    let points = ["p50", "p90", "p99", "p99.9", "p99.99", "max"];
    let values = |latency: &Percentiles| {
        [
            latency.p50,
            latency.p90,
            latency.p99,
            latency.p999,
            latency.p9999,
            latency.max,
        ]
    };
    let highest = series
        .iter()
        .flat_map(|(_, latency)| values(latency))
        .fold(1.0f64, f64::max)
        * 2.0;
    let mut chart = ChartBuilder::on(&right)
        .caption("Latency percentiles (ms, log scale)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (0..points.len() - 1).into_segmented(),
            (0.01f64..highest).log_scale(),
        )
        .map_err(|error| fail(error.to_string()))?;
    chart
        .configure_mesh()
        .x_labels(points.len())
        .x_label_formatter(&|value| match value {
            SegmentValue::CenterOf(index) => points
                .get(*index)
                .map_or_else(String::new, |p| (*p).to_owned()),
            _ => String::new(),
        })
        .y_desc("ms")
        .draw()
        .map_err(|error| fail(error.to_string()))?;
    for (index, (name, latency)) in series.iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        let line: Vec<(SegmentValue<usize>, f64)> = values(latency)
            .iter()
            .enumerate()
            .map(|(point, value)| (SegmentValue::CenterOf(point), value.max(0.01)))
            .collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
            .map_err(|error| fail(error.to_string()))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart
            .draw_series(
                line.into_iter()
                    .map(|point| Circle::new(point, 3, color.filled())),
            )
            .map_err(|error| fail(error.to_string()))?;
    }
    if !series.is_empty() {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|error| fail(error.to_string()))?;
    }
    root.present().map_err(|error| fail(error.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::report::DiskFigures;

    fn report(label: &str, warmup_s: &str, rates: &[f64]) -> LoadReport {
        let timeline: Vec<serde_json::Value> = rates
            .iter()
            .enumerate()
            .map(|(index, rate)| {
                serde_json::json!({
                    "t_s": index as f64 + 1.01,
                    "msgs_per_s": rate,
                    "MB_per_s": rate / 1000.0,
                    "p99_ms": null,
                    "max_ms": if index == 1 { serde_json::Value::Null } else { serde_json::json!(rate / 100_000.0) },
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "tool": "vaart-bench produce",
            "kind": "produce",
            "label": label,
            "version": "test",
            "started_unix_s": 0,
            "machine": "test machine",
            "settings": { "partitions": "10000", "warmup_s": warmup_s, "acks": "1" },
            "messages": 1000,
            "payload_bytes": 1_024_000,
            "elapsed_s": 1.0,
            "msgs_per_s": 1000.0,
            "MB_per_s": 1.024,
            "latency_ms": null,
            "e2e_latency_ms": null,
            "target_msgs_per_s": null,
            "send_lag_ms_max": null,
            "errors": 0,
            "first_error": null,
            "cpu": {
                "cores": 2,
                "generator_cpu_s": null,
                "generator_cores_used": null,
                "generator_cpu_s_per_GB": null,
                "broker_cpu_s": null,
                "broker_cores_used": null,
                "broker_rss_bytes": null,
            },
            "limits": null,
            "bound": null,
            "timeline": timeline,
        }))
        .expect("a valid report")
    }

    fn sample(partitions: u64, mib: u64, state: Option<&str>) -> RssSample {
        RssSample {
            partitions,
            rss_bytes: mib << 20,
            state: state.map(str::to_owned),
        }
    }

    #[test]
    fn catchup_goal_shows_the_disk_during_the_run_and_measured_again() {
        let mut catchup = report("consume-catchup", "0", &[5000.0]);
        catchup.MB_per_s = 900.0;
        catchup.disk = Some(DiskFigures {
            device: "vda".to_owned(),
            read_MB_per_s: 910.0,
            write_MB_per_s: 0.0,
            busy_fraction: 0.99,
        });
        let limits = MachineLimits {
            disk_write_MB_per_s: 2000.0,
            disk_read_MB_per_s: 2000.0,
            loopback_MB_per_s: 5000.0,
            disk_dir: PathBuf::from("/data"),
            disk_bytes: 1 << 30,
            loopback_bytes: 1 << 30,
            measured_unix_s: 0,
            machine_summary: String::new(),
        };
        let lines = goals(&[catchup], Some(&limits), Some(1000.0), &[]);
        let line = lines
            .iter()
            .find(|line| line.starts_with("Consume catch-up"))
            .expect("a catch-up goal line");
        assert!(line.contains("45.0% of disk read (2000 MB/s)"), "{line}");
        assert!(
            line.contains("busy 99% of the time and read 910 MB/s"),
            "{line}"
        );
        assert!(
            line.contains("right after it: 1000 MB/s (catch-up = 90.0% of that)"),
            "{line}"
        );
    }

    #[test]
    fn timeline_marks_the_end_of_the_warmup() {
        let run = report("partitions-10000", "2", &[100_000.0, 400_000.0, 900_000.0]);
        assert_eq!(timeline_line(&run), "100 400 | 900");
        let no_warmup = report("consume-catchup", "0", &[5000.0, 6000.0]);
        assert_eq!(timeline_line(&no_warmup), "5 6");
    }

    #[test]
    fn worst_latency_per_second_marks_the_warmup_and_empty_seconds() {
        let run = report(
            "produce-3p-open-half",
            "2",
            &[100_000.0, 400_000.0, 900_000.0],
        );
        assert_eq!(worst_latency_line(&run), "1.0 - | 9.0");
        let text = markdown(&[run], None, None, &[], "plot.svg", None);
        assert!(
            text.contains("## Worst latency in each second")
                && text.contains("- **produce-3p-open-half**: 1.0 - | 9.0"),
            "{text}"
        );
    }

    #[test]
    fn memory_goal_uses_the_worse_idle_figure() {
        let rss = [
            sample(0, 19, Some("broker just started")),
            sample(10_000, 69, Some("topic just created")),
            sample(10_000, 1532, Some("after load, idle 5 s")),
        ];
        let line = memory_goal(&rss).expect("a goal line");
        assert!(
            line.contains("the worse of the 2 idle figures: 1532 MiB (after load, idle 5 s)"),
            "{line}"
        );
        assert!(
            line.contains("other: 69 MiB (topic just created)"),
            "{line}"
        );
        assert!(line.ends_with("**not reached**."), "{line}");
        let line = memory_goal(&rss[..2]).expect("a goal line");
        assert!(line.contains("the only idle figure: 69 MiB"), "{line}");
        assert!(line.ends_with("**reached**."), "{line}");
        assert_eq!(memory_goal(&rss[..1]), None);
    }

    #[test]
    fn markdown_shows_warmup_memory_states_and_rates() {
        let reports = [report("partitions-10000", "8", &[1000.0, 2000.0])];
        let rss = [
            sample(10_000, 69, Some("topic just created")),
            sample(10_000, 900, None),
        ];
        let text = markdown(&reports, None, None, &rss, "results.svg", Some("note"));
        assert!(
            text.contains("| rate target | warm-up s | msgs/s |"),
            "{text}"
        );
        assert!(text.contains("| max | 8 | 1000 |"), "{text}");
        assert!(
            text.contains("| 10000 | topic just created | 69 |"),
            "{text}"
        );
        assert!(text.contains("| 10000 | - | 900 |"), "{text}");
        assert!(
            text.contains("- **partitions-10000** (warm-up 8 s): 1 2"),
            "{text}"
        );
        // Old files without a state still load.
        let old: Vec<RssSample> =
            serde_json::from_str(r#"[{ "partitions": 0, "rss_bytes": 1048576 }]"#).expect("json");
        assert_eq!(old[0].state, None);
    }
}
