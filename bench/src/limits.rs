//! `vaart-bench limits`: the machine limits every load figure is compared with, measured the
//! same way each time:
//! - sequential O_DIRECT write bandwidth of the data directory's disk, through the engine's I/O
//!   path (glommio `DmaFile::write_at`, 1 MiB aligned writes, 4 in flight; `disk.rs`'s case);
//! - sequential O_DIRECT read bandwidth of the same disk (1 MiB aligned reads, 4 in flight),
//!   the bound of a catch-up read from disk;
//! - loopback TCP bandwidth: one sender and one receiver thread over 127.0.0.1, 1 MiB writes.
//!
//! Load commands take `--limits FILE` (a JSON written here) or `--measure-limits DIR`.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::thread;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use glommio::io::DmaFile;
use glommio::{LocalExecutorBuilder, Placement};
use serde::{Deserialize, Serialize};
use vaart_engine::glommio_path;

use crate::disk::{raw_direct_write, ScratchDir};
use crate::error::{io_error, BenchError};
use crate::machine::MachineInfo;

const MIB: u64 = 1 << 20;
const IO_BYTES: usize = 1 << 20;
const IO_IN_FLIGHT: usize = 4;

#[derive(Debug, Args)]
pub struct LimitsArgs {
    /// A directory on the broker's data disk (a scratch folder is made inside and removed).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Bytes written and read for the disk figures, in MiB.
    #[arg(long, default_value_t = 512)]
    pub disk_mib: u64,
    /// Bytes sent for the loopback figure, in MiB.
    #[arg(long, default_value_t = 4096)]
    pub loopback_mib: u64,
    /// Write the limits as JSON to this file (for `--limits` of the load commands).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The limits of one machine, measured in one run. MB = 10^6 bytes.
#[allow(non_snake_case)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MachineLimits {
    pub disk_write_MB_per_s: f64,
    pub disk_read_MB_per_s: f64,
    pub loopback_MB_per_s: f64,
    pub disk_dir: PathBuf,
    pub disk_bytes: u64,
    pub loopback_bytes: u64,
    pub measured_unix_s: u64,
    pub machine_summary: String,
}

impl MachineLimits {
    /// What bounds a produce run: the lower of disk write and loopback.
    pub fn produce_bound(&self) -> (&'static str, f64) {
        lower(
            ("disk write", self.disk_write_MB_per_s),
            ("loopback TCP", self.loopback_MB_per_s),
        )
    }

    /// What bounds a catch-up read: the lower of disk read and loopback.
    pub fn consume_bound(&self) -> (&'static str, f64) {
        lower(
            ("disk read", self.disk_read_MB_per_s),
            ("loopback TCP", self.loopback_MB_per_s),
        )
    }

    /// One line for reports.
    pub fn summary(&self) -> String {
        format!(
            "disk write {:.0} MB/s, disk read {:.0} MB/s (O_DIRECT, 1 MiB x {IO_IN_FLIGHT}, best of {DISK_PASSES}, {}), loopback TCP {:.0} MB/s",
            self.disk_write_MB_per_s,
            self.disk_read_MB_per_s,
            self.disk_dir.display(),
            self.loopback_MB_per_s
        )
    }

    pub fn load(path: &Path) -> Result<Self, BenchError> {
        let text = fs::read(path).map_err(io_error("read", path))?;
        serde_json::from_slice(&text).map_err(|source| BenchError::Json {
            path: path.to_path_buf(),
            source,
        })
    }
}

fn lower(a: (&'static str, f64), b: (&'static str, f64)) -> (&'static str, f64) {
    if a.1 <= b.1 {
        a
    } else {
        b
    }
}

pub fn run(args: &LimitsArgs) -> Result<(), BenchError> {
    let limits = measure(
        &args.data_dir,
        args.disk_mib.saturating_mul(MIB),
        args.loopback_mib.saturating_mul(MIB),
    )?;
    println!("{}", limits.summary());
    if let Some(path) = &args.json {
        write_json(path, &limits)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), BenchError> {
    let json = serde_json::to_vec_pretty(value).map_err(|source| BenchError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    fs::write(path, json).map_err(io_error("write", path))
}

/// Measures all three limits (disk first, then loopback).
pub fn measure(
    dir: &Path,
    disk_bytes: u64,
    loopback_bytes: u64,
) -> Result<MachineLimits, BenchError> {
    if disk_bytes < MIB || loopback_bytes < MIB {
        return Err(BenchError::InvalidArgument(
            "limit measurements need at least 1 MiB",
        ));
    }
    fs::create_dir_all(dir).map_err(io_error("create dir", dir))?;
    let scratch = ScratchDir::create(dir.join(format!("vaart-limits-{}", std::process::id())))?;
    eprintln!(
        "measuring machine limits: {} MiB O_DIRECT write + read in {}, {} MiB over loopback",
        disk_bytes / MIB,
        scratch.path().display(),
        loopback_bytes / MIB
    );
    let path = scratch.path().to_path_buf();
    let (write_mb_per_s, read_mb_per_s) = LocalExecutorBuilder::new(Placement::Unbound)
        .name("vaart-limits")
        .io_memory(4 << 20)
        .make()
        .map_err(|error| BenchError::Executor(error.into()))?
        .run(async move { disk_limits(&path, disk_bytes).await })?;
    let loopback_mb_per_s = loopback_limit(loopback_bytes)?;
    drop(scratch);
    Ok(MachineLimits {
        disk_write_MB_per_s: write_mb_per_s,
        disk_read_MB_per_s: read_mb_per_s,
        loopback_MB_per_s: loopback_mb_per_s,
        disk_dir: fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()),
        disk_bytes,
        loopback_bytes,
        measured_unix_s: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs()),
        machine_summary: MachineInfo::collect(dir).summary(),
    })
}

/// The best of this many passes is the disk's limit: a virtual disk's bandwidth moves by a
/// third from one second to the next, and one unlucky pass made the broker look faster than
/// the disk (124% of the write limit).
const DISK_PASSES: usize = 3;

async fn disk_limits(dir: &Path, total_bytes: u64) -> Result<(f64, f64), BenchError> {
    vaart_engine::prime_direct_io(dir).await?;
    let mut write_mb_per_s: f64 = 0.0;
    for _ in 0..DISK_PASSES {
        let write =
            raw_direct_write(&dir.join("write.data"), total_bytes, IO_BYTES, IO_IN_FLIGHT).await?;
        write_mb_per_s = write_mb_per_s.max(write.mb_per_s);
    }
    let read_path = dir.join("read.data");
    fill_file(&read_path, total_bytes)?;
    let mut read_mb_per_s: f64 = 0.0;
    for _ in 0..DISK_PASSES {
        read_mb_per_s = read_mb_per_s.max(raw_direct_read(&read_path, total_bytes).await?);
    }
    fs::remove_file(&read_path).map_err(io_error("remove", &read_path))?;
    Ok((write_mb_per_s, read_mb_per_s))
}

/// Writes `total_bytes` with std and syncs them, so the O_DIRECT reads come from the device.
fn fill_file(path: &Path, total_bytes: u64) -> Result<(), BenchError> {
    let mut file = File::create(path).map_err(io_error("create", path))?;
    let chunk = vec![0x5au8; IO_BYTES];
    let mut written = 0u64;
    while written < total_bytes {
        file.write_all(&chunk).map_err(io_error("write", path))?;
        written += IO_BYTES as u64;
    }
    file.sync_all().map_err(io_error("fsync", path))
}

/// Sequential O_DIRECT reads of 1 MiB with a few in flight; MB/s.
async fn raw_direct_read(path: &Path, total_bytes: u64) -> Result<f64, BenchError> {
    let absolute = glommio_path(path).map_err(io_error("resolve", path))?;
    let file = Rc::new(
        DmaFile::open(absolute)
            .await
            .map_err(io_error("open", path))?,
    );
    let start = Instant::now();
    let mut pending = VecDeque::with_capacity(IO_IN_FLIGHT);
    let mut position = 0u64;
    let mut read_bytes = 0u64;
    while position < total_bytes || !pending.is_empty() {
        if position < total_bytes && pending.len() < IO_IN_FLIGHT {
            let file = Rc::clone(&file);
            let at = position;
            let path = path.to_path_buf();
            pending.push_back(glommio::spawn_local(async move {
                file.read_at_aligned(at, IO_BYTES)
                    .await
                    .map(|buffer| buffer.len() as u64)
                    .map_err(io_error("read", &path))
            }));
            position += IO_BYTES as u64;
            continue;
        }
        if let Some(read) = pending.pop_front() {
            read_bytes += read.await?;
        }
    }
    let elapsed_s = start.elapsed().as_secs_f64().max(f64::MIN_POSITIVE);
    file.close_rc().await.map_err(io_error("close", path))?;
    Ok(read_bytes as f64 / elapsed_s / 1e6)
}

/// One sender and one receiver thread over 127.0.0.1; MB/s as the receiver counts it.
pub fn loopback_limit(total_bytes: u64) -> Result<f64, BenchError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io_error("bind", "127.0.0.1:0"))?;
    let addr = listener
        .local_addr()
        .map_err(io_error("local addr", "127.0.0.1"))?;
    let receiver = thread::spawn(move || -> std::io::Result<u64> {
        let (mut stream, _) = listener.accept()?;
        let mut buf = vec![0u8; IO_BYTES];
        let mut total = 0u64;
        loop {
            let read = stream.read(&mut buf)?;
            if read == 0 {
                return Ok(total);
            }
            total += read as u64;
        }
    });
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).map_err(io_error("connect", "127.0.0.1"))?;
    let chunk = vec![0x5au8; IO_BYTES];
    let mut sent = 0u64;
    while sent < total_bytes {
        stream
            .write_all(&chunk)
            .map_err(io_error("send", "127.0.0.1"))?;
        sent += IO_BYTES as u64;
    }
    drop(stream);
    let received = receiver
        .join()
        .map_err(|_| BenchError::InvalidArgument("loopback receiver thread panicked"))?
        .map_err(io_error("receive", "127.0.0.1"))?;
    let elapsed_s = start.elapsed().as_secs_f64().max(f64::MIN_POSITIVE);
    Ok(received as f64 / elapsed_s / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_moves_bytes() {
        let mb_per_s = loopback_limit(8 * MIB).expect("loopback");
        assert!(mb_per_s > 0.0);
    }

    #[test]
    fn bounds_pick_the_lower_limit() {
        let limits = MachineLimits {
            disk_write_MB_per_s: 400.0,
            disk_read_MB_per_s: 900.0,
            loopback_MB_per_s: 600.0,
            disk_dir: PathBuf::from("/"),
            disk_bytes: 1,
            loopback_bytes: 1,
            measured_unix_s: 0,
            machine_summary: String::new(),
        };
        assert_eq!(limits.produce_bound(), ("disk write", 400.0));
        assert_eq!(limits.consume_bound(), ("loopback TCP", 600.0));
    }
}
