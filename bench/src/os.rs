//! CPU, memory and disk figures from the kernel: this process's CPU time (getrusage),
//! another process's CPU time and resident memory (`/proc/PID/stat`, `/proc/PID/status`), and
//! the data disk's counters (`/proc/diskstats`), so every load report can show that the
//! generator is not the bottleneck, what the broker used, and how busy the disk was.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

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

/// A snapshot of one block device's counters (`/proc/diskstats`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSample {
    /// The device's name (`vda`, `nvme0n1p2`).
    pub device: String,
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// Milliseconds during which the device had I/O in flight (`io_ticks`).
    pub busy_ms: u64,
}

/// The counters of the device holding `dir` (matched by major and minor number); `None` if
/// it is not a block device listed in `/proc/diskstats` (tmpfs, overlay).
pub fn sample_disk(dir: &Path) -> Option<DiskSample> {
    let dev = fs::metadata(dir).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let stats = fs::read_to_string("/proc/diskstats").ok()?;
    parse_diskstats(&stats, major, minor)
}

fn parse_diskstats(stats: &str, major: u32, minor: u32) -> Option<DiskSample> {
    stats.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.first()?.parse::<u32>().ok()? != major
            || fields.get(1)?.parse::<u32>().ok()? != minor
        {
            return None;
        }
        let number = |index: usize| fields.get(index)?.parse::<u64>().ok();
        // After major, minor and name: sectors read is the 3rd counter, sectors written the
        // 7th, io_ticks the 10th (Documentation/admin-guide/iostats.rst); sectors are 512 B.
        Some(DiskSample {
            device: (*fields.get(2)?).to_owned(),
            read_bytes: number(5)?.checked_mul(512)?,
            write_bytes: number(9)?.checked_mul(512)?,
            busy_ms: number(12)?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diskstats_lines_give_bytes_and_busy_time() {
        let stats = " 253       0 vda 100 5 2048 40 200 7 4096 80 0 1234 120 0 0 0 0\n 253       1 vda1 1 0 8 0 0 0 0 0 0 3 0\n";
        let sample = parse_diskstats(stats, 253, 0).expect("vda");
        assert_eq!(
            sample,
            DiskSample {
                device: "vda".to_owned(),
                read_bytes: 2048 * 512,
                write_bytes: 4096 * 512,
                busy_ms: 1234,
            }
        );
        assert_eq!(parse_diskstats(stats, 253, 1).map(|s| s.busy_ms), Some(3));
        assert!(parse_diskstats(stats, 8, 0).is_none());
    }

    #[test]
    fn samples_this_process() {
        let sample = sample_process(std::process::id()).expect("own /proc entry");
        assert!(sample.rss_bytes > 0);
        assert!(sample.cpu_s >= 0.0);
        assert!(process_cpu_s().is_some());
    }
}
