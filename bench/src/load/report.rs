//! The result of one load run: [`LoadReport`] (written as JSON, read back by `vaart-bench
//! report`) and the table printed at the end.
//!
//! Top-level JSON fields scripts rely on: `msgs_per_s`, `MB_per_s` (10^6 bytes of payload per
//! second) and `latency_ms` with `p50`, `p99`, `p999`, `p9999`, `max`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::stats::{group_thousands, Percentiles, TimelinePoint};
use super::RunFigures;
use crate::error::BenchError;
use crate::limits::MachineLimits;

/// CPU and memory around the run.
#[allow(non_snake_case)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CpuFigures {
    /// CPUs of the machine.
    pub cores: usize,
    /// CPU seconds (user + system) the generator used during the run.
    pub generator_cpu_s: Option<f64>,
    /// The same over the run's wall time: 1.0 = one core fully busy.
    pub generator_cores_used: Option<f64>,
    /// Generator CPU seconds per 10^9 payload bytes moved, both counted over the whole run
    /// (warm-up included).
    pub generator_cpu_s_per_GB: Option<f64>,
    pub broker_cpu_s: Option<f64>,
    pub broker_cores_used: Option<f64>,
    /// Broker resident memory at the end of the run.
    pub broker_rss_bytes: Option<u64>,
}

/// The data disk during the run (`/proc/diskstats` of the device holding the limits'
/// directory), over the run's wall time, warm-up included.
#[allow(non_snake_case)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiskFigures {
    pub device: String,
    pub read_MB_per_s: f64,
    pub write_MB_per_s: f64,
    /// Fraction of the run with I/O in flight on the device (1.0: never idle).
    pub busy_fraction: f64,
}

/// The limit that bounds the headline throughput, and how close the run came.
#[allow(non_snake_case)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bound {
    pub limit: String,
    pub limit_MB_per_s: f64,
    pub fraction: f64,
}

/// Everything one run measured.
#[allow(non_snake_case)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadReport {
    pub tool: String,
    /// `produce`, `consume` or `e2e`.
    pub kind: String,
    pub label: Option<String>,
    pub version: String,
    pub started_unix_s: u64,
    pub machine: String,
    /// The run's options as given.
    pub settings: BTreeMap<String, String>,
    /// Measured (post-warm-up) messages and payload bytes.
    pub messages: u64,
    pub payload_bytes: u64,
    /// The measured window: end of warm-up to the last measured completion.
    pub elapsed_s: f64,
    pub msgs_per_s: f64,
    pub MB_per_s: f64,
    /// produce and e2e: intended send time to acknowledgement (open loop: the schedule, so
    /// stalls are not hidden); consume: Fetch round trip.
    pub latency_ms: Option<Percentiles>,
    /// e2e: intended send time (stamped in the payload) to the consumer's receipt.
    pub e2e_latency_ms: Option<Percentiles>,
    /// The open-loop target rate, if any.
    pub target_msgs_per_s: Option<f64>,
    /// How far the generator fell behind its schedule at worst.
    pub send_lag_ms_max: Option<f64>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub cpu: CpuFigures,
    /// Absent in reports of older versions.
    #[serde(default)]
    pub disk: Option<DiskFigures>,
    pub limits: Option<MachineLimits>,
    pub bound: Option<Bound>,
    pub timeline: Vec<TimelinePoint>,
}

/// The parts of a report that depend on the kind of run.
pub struct Headline {
    pub kind: &'static str,
    pub messages: u64,
    pub payload_bytes: u64,
    pub elapsed_s: f64,
    pub latency_ms: Option<Percentiles>,
    pub e2e_latency_ms: Option<Percentiles>,
    pub target_msgs_per_s: Option<f64>,
    pub send_lag_ms_max: Option<f64>,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl LoadReport {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        headline: Headline,
        label: Option<String>,
        settings: BTreeMap<String, String>,
        figures: &RunFigures,
        limits: Option<MachineLimits>,
        machine: String,
        timeline: Vec<TimelinePoint>,
    ) -> Self {
        let elapsed_s = headline.elapsed_s.max(f64::MIN_POSITIVE);
        let msgs_per_s = headline.messages as f64 / elapsed_s;
        let mb_per_s = headline.payload_bytes as f64 / elapsed_s / 1e6;
        let wall_s = figures
            .end
            .saturating_duration_since(figures.start)
            .as_secs_f64()
            .max(f64::MIN_POSITIVE);
        let broker_cpu_s = figures
            .broker_before
            .zip(figures.broker_after)
            .map(|(before, after)| after.cpu_s - before.cpu_s);
        // The CPU time covers the whole run, warm-up included, so it is divided by the bytes
        // of the whole run (dividing by the measured bytes only overstated the cost by
        // (warm-up + duration) / duration, 1.4 times in bench/run).
        let gigabytes = figures.payload_bytes_total as f64 / 1e9;
        let cpu = CpuFigures {
            cores: crate::machine::online_cores(),
            generator_cpu_s: figures.generator_cpu_s,
            generator_cores_used: figures.generator_cpu_s.map(|cpu_s| cpu_s / wall_s),
            generator_cpu_s_per_GB: figures
                .generator_cpu_s
                .filter(|_| gigabytes > 0.0)
                .map(|cpu_s| cpu_s / gigabytes),
            broker_cpu_s,
            broker_cores_used: broker_cpu_s.map(|cpu_s| cpu_s / wall_s),
            broker_rss_bytes: figures.broker_after.map(|sample| sample.rss_bytes),
        };
        let disk = figures
            .disk_before
            .as_ref()
            .zip(figures.disk_after.as_ref())
            .filter(|(before, after)| before.device == after.device)
            .map(|(before, after)| DiskFigures {
                device: after.device.clone(),
                read_MB_per_s: after.read_bytes.saturating_sub(before.read_bytes) as f64
                    / wall_s
                    / 1e6,
                write_MB_per_s: after.write_bytes.saturating_sub(before.write_bytes) as f64
                    / wall_s
                    / 1e6,
                busy_fraction: after.busy_ms.saturating_sub(before.busy_ms) as f64 / 1e3 / wall_s,
            });
        let bound = limits.as_ref().and_then(|limits| {
            let (limit, limit_mb_per_s) = match headline.kind {
                "produce" => limits.produce_bound(),
                "consume" => limits.consume_bound(),
                _ => return None,
            };
            Some(Bound {
                limit: limit.to_owned(),
                limit_MB_per_s: limit_mb_per_s,
                fraction: mb_per_s / limit_mb_per_s.max(f64::MIN_POSITIVE),
            })
        });
        Self {
            tool: format!("vaart-bench {}", headline.kind),
            kind: headline.kind.to_owned(),
            label,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_unix_s: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_secs())
                .saturating_sub(wall_s as u64),
            machine,
            settings,
            messages: headline.messages,
            payload_bytes: headline.payload_bytes,
            elapsed_s,
            msgs_per_s,
            MB_per_s: mb_per_s,
            latency_ms: headline.latency_ms,
            e2e_latency_ms: headline.e2e_latency_ms,
            target_msgs_per_s: headline.target_msgs_per_s,
            send_lag_ms_max: headline.send_lag_ms_max,
            errors: headline.errors,
            first_error: headline.first_error,
            cpu,
            disk,
            limits,
            bound,
            timeline,
        }
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n{}{}: {} messages in {:.2} s (after warm-up); MB = 10^6 payload bytes",
            self.tool,
            self.label
                .as_ref()
                .map_or_else(String::new, |label| format!(" [{label}]")),
            group_thousands(self.messages as f64),
            self.elapsed_s
        );
        let _ = writeln!(out, "machine: {}", self.machine);
        if let Some(limits) = &self.limits {
            let _ = writeln!(out, "limits: {}", limits.summary());
        }
        let _ = writeln!(
            out,
            "{:>12} {:>9} {:>22} | {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "msgs/s", "MB/s", "of limit", "p50", "p90", "p99", "p99.9", "p99.99", "max"
        );
        let of_limit = self.bound.as_ref().map_or_else(
            || "-".to_owned(),
            |bound| format!("{:.0}% of {}", bound.fraction * 100.0, bound.limit),
        );
        let latency_row = |latency: &Option<Percentiles>| {
            latency.map_or_else(
                || {
                    format!(
                        "{:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
                        "-", "-", "-", "-", "-", "-"
                    )
                },
                |l| {
                    format!(
                        "{:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
                        l.p50, l.p90, l.p99, l.p999, l.p9999, l.max
                    )
                },
            )
        };
        let _ = writeln!(
            out,
            "{:>12} {:>9.1} {:>22} | {}  ms ({})",
            group_thousands(self.msgs_per_s),
            self.MB_per_s,
            of_limit,
            latency_row(&self.latency_ms),
            match self.kind.as_str() {
                "consume" => "fetch round trip",
                _ => "send to ack",
            }
        );
        if self.e2e_latency_ms.is_some() {
            let _ = writeln!(
                out,
                "{:>12} {:>9} {:>22} | {}  ms (producer to consumer)",
                "",
                "",
                "",
                latency_row(&self.e2e_latency_ms)
            );
        }
        if let Some(target) = self.target_msgs_per_s {
            let _ = writeln!(
                out,
                "open loop: target {} msgs/s ({:.0}% reached); generator behind schedule at most {:.2} ms",
                group_thousands(target),
                self.msgs_per_s / target.max(f64::MIN_POSITIVE) * 100.0,
                self.send_lag_ms_max.unwrap_or(0.0)
            );
        }
        let cpu = &self.cpu;
        let _ = writeln!(
            out,
            "CPU: generator {} cores ({} CPU-s per GB){}; machine has {} cores",
            cpu.generator_cores_used
                .map_or_else(|| "?".to_owned(), |cores| format!("{cores:.2}")),
            cpu.generator_cpu_s_per_GB
                .map_or_else(|| "?".to_owned(), |value| format!("{value:.2}")),
            cpu.broker_cores_used
                .map_or_else(String::new, |cores| format!(
                    ", broker {cores:.2} cores, broker RSS {} MiB",
                    cpu.broker_rss_bytes.unwrap_or(0) >> 20
                )),
            cpu.cores
        );
        if let Some(disk) = &self.disk {
            let _ = writeln!(
                out,
                "disk {}: read {:.0} MB/s, write {:.0} MB/s, busy {:.0}% of the run (warm-up included)",
                disk.device,
                disk.read_MB_per_s,
                disk.write_MB_per_s,
                disk.busy_fraction * 100.0
            );
        }
        if self.errors > 0 {
            let _ = writeln!(
                out,
                "errors: {} (first: {})",
                self.errors,
                self.first_error.as_deref().unwrap_or("?")
            );
        }
        out
    }

    pub fn write_json(&self, path: &Path) -> Result<(), BenchError> {
        crate::limits::write_json(path, self)
    }

    /// Prints the table, writes the JSON if asked, and fails the command if records failed.
    pub fn finish(&self, json: Option<&Path>) -> Result<(), BenchError> {
        print!("{}", self.table());
        if let Some(path) = json {
            self.write_json(path)?;
            println!("wrote {}", path.display());
        }
        if self.errors > 0 {
            return Err(BenchError::Delivery {
                count: self.errors,
                first: self.first_error.clone().unwrap_or_default(),
            });
        }
        Ok(())
    }
}
