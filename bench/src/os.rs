//! CPU and memory figures from the kernel: this process's CPU time (getrusage) and another
//! process's CPU time and resident memory (`/proc/PID/stat`, `/proc/PID/status`), so every
//! load report can show that the generator is not the bottleneck and what the broker used.

use std::fs;

use serde::{Deserialize, Serialize};

/// User + system CPU seconds of this whole process (every thread).
pub fn process_cpu_s() -> Option<f64> {
    crate::disk::process_cpu_s()
}

/// A snapshot of another process.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProcessSample {
    /// User + system CPU seconds since the process started.
    pub cpu_s: f64,
    /// Resident set size.
    pub rss_bytes: u64,
}

/// Reads `/proc/PID/stat` (utime, stime) and `/proc/PID/status` (VmRSS); `None` if the
/// process is gone or the files do not parse.
pub fn sample_process(pid: u32) -> Option<ProcessSample> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; the fields after it follow the last ')'.
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
    let utime_ticks: u64 = fields.get(11)?.parse().ok()?;
    let stime_ticks: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks_per_s <= 0 {
        return None;
    }
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: u64 = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(ProcessSample {
        cpu_s: (utime_ticks + stime_ticks) as f64 / ticks_per_s as f64,
        rss_bytes: rss_kib.checked_mul(1024)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let sample = sample_process(std::process::id()).expect("own /proc entry");
        assert!(sample.rss_bytes > 0);
        assert!(sample.cpu_s >= 0.0);
        assert!(process_cpu_s().is_some());
    }
}
