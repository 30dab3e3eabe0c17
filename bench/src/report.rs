//! The results of a benchmark run: the table printed for people and the JSON file for scripts.
//!
//! Units: `MB/s` is 10^6 bytes per second (as disk vendors and `kafka-producer-perf-test`
//! count), sizes are in bytes (KiB/MiB when printed), CPU time is user + system time of the
//! whole process divided by the data volume.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use serde::Serialize;

use crate::error::BenchError;
use crate::machine::MachineInfo;

/// What one row measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseKind {
    /// Sequential O_DIRECT writes with the engine's I/O path, one fdatasync at the end.
    RawDirectWrite,
    /// `PartitionLog::append` of many batches, one `flush()` at the end (group commit).
    EngineGroupCommit,
    /// The same with `flush()` after every MiB appended.
    EngineFlushEveryMib,
    /// `validate_batches` (lengths, magic, count, CRC32C) over batches in memory, one core.
    ValidateCrc,
}

impl CaseKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::RawDirectWrite => "raw O_DIRECT write",
            Self::EngineGroupCommit => "engine append, group commit",
            Self::EngineFlushEveryMib => "engine append, flush every 1 MiB",
            Self::ValidateCrc => "validate + CRC32C (1 core)",
        }
    }

    fn is_engine(self) -> bool {
        matches!(self, Self::EngineGroupCommit | Self::EngineFlushEveryMib)
    }
}

/// One measured case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub case: CaseKind,
    /// Size of each record batch (engine and validation cases).
    pub batch_bytes: Option<usize>,
    /// Size of each write (raw case).
    pub write_bytes: Option<usize>,
    pub total_bytes: u64,
    pub batches: Option<u64>,
    pub elapsed_s: f64,
    /// 10^6 bytes per second.
    pub mb_per_s: f64,
    pub batches_per_s: Option<f64>,
    /// Process CPU time (user + system) per GiB moved.
    pub cpu_s_per_gib: Option<f64>,
    /// Engine MB/s over the raw MB/s of the same run (mean of the raw runs).
    pub ratio_to_raw: Option<f64>,
}

impl CaseResult {
    /// Derives the rates from what was counted.
    pub fn new(
        case: CaseKind,
        total_bytes: u64,
        batches: Option<u64>,
        elapsed_s: f64,
        cpu_s: Option<f64>,
    ) -> Self {
        let elapsed_s = elapsed_s.max(f64::MIN_POSITIVE);
        let gib = total_bytes as f64 / f64::from(1u32 << 30);
        Self {
            case,
            batch_bytes: None,
            write_bytes: None,
            total_bytes,
            batches,
            elapsed_s,
            mb_per_s: total_bytes as f64 / elapsed_s / 1e6,
            batches_per_s: batches.map(|count| count as f64 / elapsed_s),
            cpu_s_per_gib: cpu_s.filter(|_| gib > 0.0).map(|cpu_s| cpu_s / gib),
            ratio_to_raw: None,
        }
    }
}

/// Settings of a `disk` run, echoed in the JSON.
#[derive(Debug, Clone, Serialize)]
pub struct DiskRunConfig {
    pub total_bytes_per_case: u64,
    pub raw_write_bytes: usize,
    pub raw_writes_in_flight: usize,
    pub io_memory_bytes: usize,
    pub flush_every_bytes: u64,
    /// The engine's group-commit write size (`LogConfig::write_coalesce_bytes`).
    pub engine_write_coalesce_bytes: usize,
}

/// Everything a `disk` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct DiskReport {
    pub tool: &'static str,
    pub version: &'static str,
    /// Seconds since the Unix epoch when the run started.
    pub started_unix_s: u64,
    pub machine: MachineInfo,
    pub config: DiskRunConfig,
    /// Mean MB/s of the raw runs, the reference for `ratio_to_raw`.
    pub raw_mb_per_s: Option<f64>,
    pub cases: Vec<CaseResult>,
}

impl DiskReport {
    /// Fills `raw_mb_per_s` and every engine case's `ratio_to_raw`.
    pub fn compute_ratios(&mut self) {
        let raw: Vec<f64> = self
            .cases
            .iter()
            .filter(|case| case.case == CaseKind::RawDirectWrite)
            .map(|case| case.mb_per_s)
            .collect();
        self.raw_mb_per_s = (!raw.is_empty()).then(|| raw.iter().sum::<f64>() / raw.len() as f64);
        for case in &mut self.cases {
            if case.case.is_engine() {
                case.ratio_to_raw = self.raw_mb_per_s.map(|raw| case.mb_per_s / raw);
            }
        }
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "machine: {}", self.machine.summary());
        let _ = writeln!(
            out,
            "{} MiB per case; raw writes of {} with {} in flight; MB/s = 10^6 bytes/s",
            self.config.total_bytes_per_case >> 20,
            format_size(self.config.raw_write_bytes),
            self.config.raw_writes_in_flight,
        );
        let _ = writeln!(
            out,
            "{:<34} {:>7} {:>9} {:>11} {:>10} {:>10}",
            "case", "size", "MB/s", "batches/s", "CPU-s/GiB", "engine/raw"
        );
        for case in &self.cases {
            let size = case
                .batch_bytes
                .or(case.write_bytes)
                .map_or_else(dash, format_size);
            let _ = writeln!(
                out,
                "{:<34} {:>7} {:>9.1} {:>11} {:>10} {:>10}",
                case.case.label(),
                size,
                case.mb_per_s,
                case.batches_per_s
                    .map_or_else(dash, |rate| format!("{rate:.0}")),
                case.cpu_s_per_gib
                    .map_or_else(dash, |cpu| format!("{cpu:.2}")),
                case.ratio_to_raw
                    .map_or_else(dash, |ratio| format!("{:.0}%", ratio * 100.0)),
            );
        }
        out
    }

    pub fn write_json(&self, path: &Path) -> Result<(), BenchError> {
        let json = serde_json::to_vec_pretty(self).map_err(|source| BenchError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        fs::write(path, json).map_err(crate::error::io_error("write", path))
    }
}

fn dash() -> String {
    "-".to_owned()
}

/// 1024 -> "1 KiB", 1048576 -> "1 MiB", other sizes in bytes.
pub fn format_size(bytes: usize) -> String {
    const KIB: usize = 1 << 10;
    const MIB: usize = 1 << 20;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_ratios() {
        let raw_a = CaseResult::new(CaseKind::RawDirectWrite, 400_000_000, None, 1.0, Some(0.5));
        let raw_b = CaseResult::new(CaseKind::RawDirectWrite, 600_000_000, None, 1.0, None);
        let engine = CaseResult::new(
            CaseKind::EngineGroupCommit,
            450_000_000,
            Some(1000),
            1.0,
            None,
        );
        assert!((raw_a.mb_per_s - 400.0).abs() < 1e-9);
        assert_eq!(engine.batches_per_s, Some(1000.0));
        let mut report = DiskReport {
            tool: "vaart-bench disk",
            version: "test",
            started_unix_s: 0,
            machine: MachineInfo::collect(Path::new("/")),
            config: DiskRunConfig {
                total_bytes_per_case: 1 << 20,
                raw_write_bytes: 1 << 20,
                raw_writes_in_flight: 4,
                io_memory_bytes: 10 << 20,
                flush_every_bytes: 1 << 20,
                engine_write_coalesce_bytes: 1 << 20,
            },
            raw_mb_per_s: None,
            cases: vec![raw_a, raw_b, engine],
        };
        report.compute_ratios();
        assert_eq!(report.raw_mb_per_s, Some(500.0));
        assert_eq!(report.cases[2].ratio_to_raw, Some(0.9));
        assert_eq!(report.cases[0].ratio_to_raw, None);
        let table = report.table();
        assert!(table.contains("engine append, group commit"), "{table}");
        assert!(table.contains("90%"), "{table}");
        let json = serde_json::to_value(&report).expect("serialize");
        assert_eq!(json["cases"][2]["case"], "engine_group_commit");
    }

    #[test]
    fn sizes() {
        assert_eq!(format_size(1024), "1 KiB");
        assert_eq!(format_size(16 << 10), "16 KiB");
        assert_eq!(format_size(1 << 20), "1 MiB");
        assert_eq!(format_size(1000), "1000 B");
    }
}
