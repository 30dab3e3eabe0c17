//! A description of the machine a benchmark ran on, for the report next to the numbers:
//! cores, CPU model, kernel, memory, the locked-memory limit, and the disk under a directory.
//!
//! Everything is read from `/proc` and `/sys`; a field that cannot be read is `None` rather than
//! an error, since a missing description must not stop a benchmark.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct MachineInfo {
    /// CPUs this process may run on.
    pub cores: usize,
    pub cpu_model: Option<String>,
    pub kernel: Option<String>,
    pub memory_bytes: Option<u64>,
    /// RLIMIT_MEMLOCK soft limit (None = unlimited); glommio pins ~3 × io_memory per executor.
    pub memlock_limit_bytes: Option<u64>,
    /// DAMON monitors (`kdamond` kernel threads) running, None if the kernel has no DAMON
    /// sysfs interface. They preempt whatever runs on their core for milliseconds at a time,
    /// which shows in latency tails (see tuning.md).
    pub damon_running: Option<usize>,
    pub disk: DiskInfo,
}

/// The file system and block device that hold a directory.
#[derive(Debug, Clone, Serialize)]
pub struct DiskInfo {
    pub dir: PathBuf,
    pub mount_point: Option<PathBuf>,
    pub fs_type: Option<String>,
    /// The mount source, e.g. `/dev/nvme0n1p2`.
    pub source: Option<String>,
    pub mount_options: Option<String>,
    /// Kernel name of the whole block device, e.g. `nvme0n1` (a partition maps to its disk).
    pub block_device: Option<String>,
    pub model: Option<String>,
    pub rotational: Option<bool>,
    /// The I/O scheduler line, the active one in brackets, e.g. `[none] mq-deadline`.
    pub scheduler: Option<String>,
    pub size_bytes: Option<u64>,
}

impl MachineInfo {
    /// Describes this machine and the disk that holds `dir` (which must exist).
    pub fn collect(dir: &Path) -> Self {
        Self {
            cores: online_cores(),
            cpu_model: cpu_model(),
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            memory_bytes: memory_bytes(),
            memlock_limit_bytes: memlock_limit_bytes(),
            damon_running: running_kdamonds(Path::new(DAMON_KDAMONDS)),
            disk: DiskInfo::collect(dir),
        }
    }

    /// One line for the top of the printed report.
    pub fn summary(&self) -> String {
        let disk = &self.disk;
        let damon = match self.damon_running {
            Some(0) | None => String::new(),
            Some(running) => format!("; DAMON running ({running} kdamond, see tuning.md)"),
        };
        format!(
            "{} cores ({}), kernel {}, {} GiB RAM; {} on {} ({}, {}, model {}, scheduler {}){damon}",
            self.cores,
            self.cpu_model.as_deref().unwrap_or("?"),
            self.kernel.as_deref().unwrap_or("?"),
            self.memory_bytes
                .map_or_else(|| "?".to_owned(), |bytes| (bytes >> 30).to_string()),
            disk.dir.display(),
            disk.source.as_deref().unwrap_or("?"),
            disk.fs_type.as_deref().unwrap_or("?"),
            disk.mount_options.as_deref().unwrap_or("?"),
            disk.model.as_deref().unwrap_or("?"),
            disk.scheduler.as_deref().unwrap_or("?"),
        )
    }
}

impl DiskInfo {
    fn collect(dir: &Path) -> Self {
        let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let mount = fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .and_then(|mountinfo| containing_mount(&mountinfo, &dir));
        let sys_block = mount
            .as_ref()
            .and_then(|mount| whole_disk_sysfs_dir(&mount.device_number));
        let sys_read = |relative: &str| {
            sys_block
                .as_ref()
                .and_then(|block| read_trimmed(block.join(relative)))
        };
        Self {
            mount_point: mount.as_ref().map(|mount| mount.mount_point.clone()),
            fs_type: mount.as_ref().map(|mount| mount.fs_type.clone()),
            source: mount.as_ref().map(|mount| mount.source.clone()),
            mount_options: mount.as_ref().map(|mount| mount.options.clone()),
            block_device: sys_block
                .as_ref()
                .and_then(|block| block.file_name())
                .map(|name| name.to_string_lossy().into_owned()),
            model: sys_read("device/model"),
            rotational: sys_read("queue/rotational").map(|value| value == "1"),
            scheduler: sys_read("queue/scheduler"),
            // /sys/block/*/size counts 512-byte sectors whatever the device's block size.
            size_bytes: sys_read("size")
                .and_then(|sectors| sectors.parse::<u64>().ok())
                .and_then(|sectors| sectors.checked_mul(512)),
            dir,
        }
    }
}

struct Mount {
    device_number: String,
    mount_point: PathBuf,
    options: String,
    fs_type: String,
    source: String,
}

/// The mount whose mount point is the longest prefix of `dir`, from `/proc/self/mountinfo`
/// (`id parent major:minor root mount_point options [optional...] - fs_type source super_options`).
fn containing_mount(mountinfo: &str, dir: &Path) -> Option<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let mut fields = before.split(' ');
            let device_number = fields.nth(2)?.to_owned();
            let mount_point = PathBuf::from(unescape_mount_field(fields.nth(1)?));
            let options = fields.next()?.to_owned();
            let mut after = after.split(' ');
            let fs_type = after.next()?.to_owned();
            let source = unescape_mount_field(after.next()?);
            Some(Mount {
                device_number,
                mount_point,
                options,
                fs_type,
                source,
            })
        })
        .filter(|mount| dir.starts_with(&mount.mount_point))
        .max_by_key(|mount| mount.mount_point.components().count())
}

/// mountinfo escapes space, tab, newline and backslash as three-digit octal (`\040`).
fn unescape_mount_field(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(index) = rest.find('\\') {
        out.push_str(&rest[..index]);
        let escaped = rest
            .get(index + 1..index + 4)
            .and_then(|octal| u8::from_str_radix(octal, 8).ok());
        match escaped {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[index + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[index + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `/sys/dev/block/MAJ:MIN` resolved to the whole disk's sysfs directory (the one with
/// `queue/`): a partition's directory sits inside its disk's.
fn whole_disk_sysfs_dir(device_number: &str) -> Option<PathBuf> {
    let resolved = fs::canonicalize(Path::new("/sys/dev/block").join(device_number)).ok()?;
    if resolved.join("queue").is_dir() {
        return Some(resolved);
    }
    let parent = resolved.parent()?;
    parent.join("queue").is_dir().then(|| parent.to_path_buf())
}

/// The machine's online CPUs (`/sys/devices/system/cpu/online`, e.g. `0-1,4`), not just the
/// ones this process may use: a generator pinned with `taskset` still describes the machine.
pub fn online_cores() -> usize {
    read_trimmed("/sys/devices/system/cpu/online")
        .and_then(|list| count_cpu_list(&list))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |cores| cores.get()))
}

/// Counts the CPUs of a kernel CPU list (`0-3,8,10-11`); `None` if it does not parse.
fn count_cpu_list(list: &str) -> Option<usize> {
    let mut count = 0usize;
    for range in list.split(',').filter(|range| !range.is_empty()) {
        count += match range.split_once('-') {
            Some((first, last)) => {
                let (first, last): (usize, usize) = (first.parse().ok()?, last.parse().ok()?);
                last.checked_sub(first)? + 1
            }
            None => {
                range.parse::<usize>().ok()?;
                1
            }
        };
    }
    (count > 0).then_some(count)
}

/// Where the kernel lists DAMON's monitors (one directory per kdamond).
const DAMON_KDAMONDS: &str = "/sys/kernel/mm/damon/admin/kdamonds";

/// How many kdamonds under `kdamonds` are `on`; None if the directory is missing.
fn running_kdamonds(kdamonds: &Path) -> Option<usize> {
    let entries = fs::read_dir(kdamonds).ok()?;
    Some(
        entries
            .filter_map(Result::ok)
            .filter(|entry| read_trimmed(entry.path().join("state")).as_deref() == Some("on"))
            .count(),
    )
}

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let trimmed = text.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

fn cpu_model() -> Option<String> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").ok()?;
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}

fn memory_bytes() -> Option<u64> {
    let meminfo = fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

fn memlock_limit_bytes() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into the rlimit struct we own for the duration of the call.
    let status = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    (status == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
40 27 259:2 / /mnt/fast\\040disk rw,noatime shared:5 - xfs /dev/nvme0n1p2 rw,attr2
41 27 0:38 / /mnt/fastx rw,relatime - tmpfs tmpfs rw
";

    #[test]
    fn counts_running_kdamonds() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(running_kdamonds(&dir.path().join("missing")), None);
        for (name, state) in [("0", "on\n"), ("1", "off\n"), ("2", "on")] {
            let kdamond = dir.path().join(name);
            fs::create_dir(&kdamond).expect("kdamond dir");
            fs::write(kdamond.join("state"), state).expect("state file");
        }
        fs::write(dir.path().join("nr_kdamonds"), "3\n").expect("count file");
        assert_eq!(running_kdamonds(dir.path()), Some(2));
    }

    #[test]
    fn counts_kernel_cpu_lists() {
        assert_eq!(count_cpu_list("0-1"), Some(2));
        assert_eq!(count_cpu_list("0-3,8,10-11"), Some(7));
        assert_eq!(count_cpu_list("5"), Some(1));
        assert_eq!(count_cpu_list(""), None);
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(count_cpu_list("x"), None);
    }

    #[test]
    fn picks_the_longest_mount_point_containing_the_dir() {
        let mount = containing_mount(MOUNTINFO, Path::new("/mnt/fast disk/vaart")).expect("mount");
        assert_eq!(mount.mount_point, PathBuf::from("/mnt/fast disk"));
        assert_eq!(mount.fs_type, "xfs");
        assert_eq!(mount.source, "/dev/nvme0n1p2");
        assert_eq!(mount.options, "rw,noatime");
        assert_eq!(mount.device_number, "259:2");

        let root = containing_mount(MOUNTINFO, Path::new("/tmp/vb")).expect("root mount");
        assert_eq!(root.mount_point, PathBuf::from("/"));
        assert_eq!(root.fs_type, "ext4");
    }

    #[test]
    fn unescapes_octal_and_keeps_stray_backslashes() {
        assert_eq!(unescape_mount_field("a\\040b\\134c"), "a b\\c");
        assert_eq!(unescape_mount_field("a\\x"), "a\\x");
        assert_eq!(unescape_mount_field("end\\04"), "end\\04");
    }
}
