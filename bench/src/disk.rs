//! `vaart-bench disk`: how close the engine's append path gets to the disk, in one run.
//!
//! Cases, each writing `--total-mib` to a fresh file or log in `--dir`, in this order:
//! - (a) raw sequential O_DIRECT writes through the engine's I/O path (glommio
//!   `DmaFile::write_at`, 1 MiB aligned buffers, `--writes-in-flight` at once, one fdatasync at
//!   the end);
//! - (b) `PartitionLog::append` of 1 KiB and 16 KiB batches, one `flush()` at the end (group
//!   commit);
//! - (c) the same with a `flush()` after every MiB appended;
//! - (a) again: a virtual disk drifts within a run, so the ratios use the mean of both raw runs.
//!
//! Then batch validation + CRC32C throughput on one core, in memory. The disk cases run on one
//! glommio executor (one shard), as one partition of the broker would.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use std::{fs, io};

use bytes::Bytes;
use clap::Args;
use glommio::io::DmaFile;
use glommio::{LocalExecutorBuilder, Placement};
use vaart_engine::testing::batch_of_size;
use vaart_engine::{
    glommio_path, DirectBackend, LeaderEpoch, LogConfig, PartitionLog, TimestampMs,
};

use crate::error::{io_error, BenchError};
use crate::machine::MachineInfo;
use crate::report::{CaseKind, CaseResult, DiskReport, DiskRunConfig};

const MIB: u64 = 1 << 20;
/// Size of each raw write: the engine's default group-commit write size (`write_coalesce_bytes`).
const RAW_WRITE_BYTES: usize = 1 << 20;
/// Case (c): a `flush()` after this many appended bytes.
const FLUSH_EVERY_BYTES: u64 = MIB;
/// Batch sizes of the engine and validation cases.
const BATCH_SIZES_BYTES: [usize; 2] = [1 << 10, 16 << 10];
/// The append loop yields to the log's writer task after this many appended bytes, as a
/// broker's connection would between socket reads.
const YIELD_EVERY_BYTES: u64 = MIB;
/// In-memory input of the validation case: many batches, larger than the L2 cache.
const VALIDATION_INPUT_BYTES: usize = 8 << 20;
/// How long the validation case loops over its input.
const VALIDATION_DURATION_S: f64 = 0.5;

#[derive(Debug, Args)]
pub struct DiskArgs {
    /// Directory on the disk to measure (created if missing). The bench writes into a
    /// `vaart-bench-<pid>` folder inside it and removes that folder at the end.
    #[arg(long)]
    pub dir: PathBuf,
    /// Data written per case, in MiB.
    #[arg(long, default_value_t = 512)]
    pub total_mib: u64,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Raw case: writes kept in flight at once.
    #[arg(long, default_value_t = 4)]
    pub writes_in_flight: usize,
    /// glommio `io_memory` for the executor, in MiB (pinned ~3x; see tuning.md on memlock).
    #[arg(long, default_value_t = 10)]
    pub io_memory_mib: usize,
    /// Pin the executor to this CPU (default: not pinned).
    #[arg(long)]
    pub cpu: Option<usize>,
}

pub fn run(args: &DiskArgs) -> Result<(), BenchError> {
    if args.total_mib == 0 || args.writes_in_flight == 0 {
        return Err(BenchError::InvalidArgument(
            "--total-mib and --writes-in-flight must be at least 1",
        ));
    }
    let total_bytes = args
        .total_mib
        .checked_mul(MIB)
        .ok_or(BenchError::InvalidArgument("--total-mib is too large"))?;
    let io_memory_bytes = args
        .io_memory_mib
        .checked_mul(1 << 20)
        .ok_or(BenchError::InvalidArgument("--io-memory-mib is too large"))?;

    fs::create_dir_all(&args.dir).map_err(io_error("create dir", &args.dir))?;
    let work_dir =
        ScratchDir::create(args.dir.join(format!("vaart-bench-{}", std::process::id())))?;
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let machine = MachineInfo::collect(&args.dir);
    println!(
        "measuring {} ({} MiB per case)",
        work_dir.path().display(),
        args.total_mib
    );

    let placement = args.cpu.map_or(Placement::Unbound, Placement::Fixed);
    let executor = LocalExecutorBuilder::new(placement)
        .name("vaart-bench-disk")
        .io_memory(io_memory_bytes)
        .make()
        .map_err(|error| BenchError::Executor(error.into()))?;
    let scratch = work_dir.path().to_path_buf();
    let writes_in_flight = args.writes_in_flight;
    let mut cases =
        executor.run(async move { disk_cases(&scratch, total_bytes, writes_in_flight).await })?;
    cases.extend(validation_cases()?);

    let mut report = DiskReport {
        tool: "vaart-bench disk",
        version: env!("CARGO_PKG_VERSION"),
        started_unix_s,
        machine,
        config: DiskRunConfig {
            total_bytes_per_case: total_bytes,
            raw_write_bytes: RAW_WRITE_BYTES,
            raw_writes_in_flight: writes_in_flight,
            io_memory_bytes,
            flush_every_bytes: FLUSH_EVERY_BYTES,
            engine_write_coalesce_bytes: LogConfig::default().write_coalesce_bytes,
        },
        raw_mb_per_s: None,
        cases,
    };
    report.compute_ratios();
    println!();
    print!("{}", report.table());
    if let Some(path) = &args.json {
        report.write_json(path)?;
        println!("wrote {}", path.display());
    }
    drop(work_dir);
    Ok(())
}

/// The on-disk cases, in order, inside the executor.
async fn disk_cases(
    dir: &Path,
    total_bytes: u64,
    writes_in_flight: usize,
) -> Result<Vec<CaseResult>, BenchError> {
    vaart_engine::prime_direct_io(dir).await?;
    let mut cases = Vec::new();
    let raw_path = dir.join("raw.data");
    cases.push(announce(
        raw_direct_write(&raw_path, total_bytes, RAW_WRITE_BYTES, writes_in_flight).await?,
    ));
    for flush_every_bytes in [None, Some(FLUSH_EVERY_BYTES)] {
        for batch_bytes in BATCH_SIZES_BYTES {
            cases.push(announce(
                engine_append(dir, total_bytes, batch_bytes, flush_every_bytes).await?,
            ));
        }
    }
    // Again at the end: a virtual disk drifts within a run, so ratios use the mean of both.
    cases.push(announce(
        raw_direct_write(&raw_path, total_bytes, RAW_WRITE_BYTES, writes_in_flight).await?,
    ));
    Ok(cases)
}

/// Prints a case as soon as it is measured, so a long run shows progress.
fn announce(case: CaseResult) -> CaseResult {
    println!(
        "  {:<34} {:>8} {:>9.1} MB/s",
        case.case.label(),
        case.batch_bytes
            .or(case.write_bytes)
            .map_or_else(String::new, crate::report::format_size),
        case.mb_per_s
    );
    case
}

/// Case (a): sequential writes of `write_bytes` aligned buffers with `in_flight` writes queued
/// at once, then one fdatasync; the file is removed afterwards.
pub(crate) async fn raw_direct_write(
    path: &Path,
    total_bytes: u64,
    write_bytes: usize,
    in_flight: usize,
) -> Result<CaseResult, BenchError> {
    let file = Rc::new(
        DmaFile::create(glommio_path(path).map_err(io_error("resolve", path))?)
            .await
            .map_err(io_error("create", path))?,
    );
    let cpu_start_s = process_cpu_s();
    let start = Instant::now();
    let mut pending = VecDeque::with_capacity(in_flight);
    let mut position_bytes = 0u64;
    while position_bytes < total_bytes {
        if pending.len() >= in_flight {
            if let Some(write) = pending.pop_front() {
                write.await?;
            }
        }
        let mut buffer = file.alloc_dma_buffer(write_bytes);
        // The engine copies batches into its aligned buffers; filling the buffer stands in
        // for that copy.
        buffer.as_bytes_mut().fill(0x5a);
        let file = Rc::clone(&file);
        let path = path.to_path_buf();
        let position = position_bytes;
        pending.push_back(glommio::spawn_local(async move {
            let written_bytes = file
                .write_at(buffer, position)
                .await
                .map_err(io_error("write", &path))?;
            if written_bytes != write_bytes {
                return Err(BenchError::ShortWrite {
                    path,
                    position_bytes: position,
                    written_bytes,
                    requested_bytes: write_bytes,
                });
            }
            Ok(())
        }));
        position_bytes += write_bytes as u64;
    }
    while let Some(write) = pending.pop_front() {
        write.await?;
    }
    file.fdatasync()
        .await
        .map_err(io_error("fdatasync", path))?;
    let elapsed_s = start.elapsed().as_secs_f64();
    let cpu_s = process_cpu_s()
        .zip(cpu_start_s)
        .map(|(end, start)| end - start);
    file.close_rc().await.map_err(io_error("close", path))?;
    fs::remove_file(path).map_err(io_error("remove", path))?;
    let mut case = CaseResult::new(
        CaseKind::RawDirectWrite,
        position_bytes,
        None,
        elapsed_s,
        cpu_s,
    );
    case.write_bytes = Some(write_bytes);
    Ok(case)
}

/// Cases (b) and (c): appends `total_bytes` of `batch_bytes` batches to a new partition log
/// with the engine's defaults (1 MiB group-commit writes), then one `flush()`; with
/// `flush_every_bytes`, also a `flush()` after every that many bytes. The log is removed
/// afterwards.
///
/// The same `Bytes` is appended each time, so the engine copies it once before patching the
/// offsets (as it does for a produce request holding several batches).
async fn engine_append(
    dir: &Path,
    total_bytes: u64,
    batch_bytes_target: usize,
    flush_every_bytes: Option<u64>,
) -> Result<CaseResult, BenchError> {
    let log_dir = dir.join(format!(
        "engine-{batch_bytes_target}-{}",
        flush_every_bytes.unwrap_or(0)
    ));
    let config = LogConfig {
        flush_interval_bytes: None,
        flush_interval_ms: None,
        ..LogConfig::default()
    };
    let (log, _recovery) = PartitionLog::open(DirectBackend, &log_dir, config).await?;
    let now = TimestampMs(unix_ms());
    let batch = batch_close_to(batch_bytes_target, now);
    let batch_bytes = batch.len();
    let batch_count = total_bytes.div_ceil(batch_bytes as u64);

    let cpu_start_s = process_cpu_s();
    let start = Instant::now();
    let mut appended_bytes = 0u64;
    let mut since_yield_bytes = 0u64;
    let mut since_flush_bytes = 0u64;
    for _ in 0..batch_count {
        // Bounded memory: waits while the writer is too far behind (the engine's backpressure).
        log.writable(batch_bytes).await?;
        log.append(batch.clone(), LeaderEpoch(0), now)?;
        appended_bytes += batch_bytes as u64;
        since_yield_bytes += batch_bytes as u64;
        since_flush_bytes += batch_bytes as u64;
        if flush_every_bytes.is_some_and(|every| since_flush_bytes >= every) {
            log.flush().await?;
            since_flush_bytes = 0;
            since_yield_bytes = 0;
        } else if since_yield_bytes >= YIELD_EVERY_BYTES {
            glommio::executor().yield_now().await;
            since_yield_bytes = 0;
        }
    }
    log.flush().await?;
    let elapsed_s = start.elapsed().as_secs_f64();
    let cpu_s = process_cpu_s()
        .zip(cpu_start_s)
        .map(|(end, start)| end - start);
    log.close().await?;
    fs::remove_dir_all(&log_dir).map_err(io_error("remove dir", &log_dir))?;

    let kind = if flush_every_bytes.is_some() {
        CaseKind::EngineFlushEveryMib
    } else {
        CaseKind::EngineGroupCommit
    };
    let mut case = CaseResult::new(kind, appended_bytes, Some(batch_count), elapsed_s, cpu_s);
    case.batch_bytes = Some(batch_bytes);
    Ok(case)
}

/// Batch validation + CRC32C throughput on this thread: `validate_batches` over a buffer of
/// many concatenated batches, in a loop. The criterion bench in the engine is the precise one.
fn validation_cases() -> Result<Vec<CaseResult>, BenchError> {
    let mut cases = Vec::new();
    for batch_bytes_target in BATCH_SIZES_BYTES {
        let batch = batch_close_to(batch_bytes_target, TimestampMs(unix_ms()));
        let batches_per_input = (VALIDATION_INPUT_BYTES / batch.len()).max(1);
        let input = batch.repeat(batches_per_input);
        let cpu_start_s = process_cpu_s();
        let start = Instant::now();
        let mut validated_bytes = 0u64;
        let mut validated_batches = 0u64;
        while start.elapsed().as_secs_f64() < VALIDATION_DURATION_S {
            let summaries = vaart_engine::validate_batches(&input)?;
            validated_batches += summaries.len() as u64;
            validated_bytes += input.len() as u64;
        }
        let elapsed_s = start.elapsed().as_secs_f64();
        let cpu_s = process_cpu_s()
            .zip(cpu_start_s)
            .map(|(end, start)| end - start);
        let mut case = CaseResult::new(
            CaseKind::ValidateCrc,
            validated_bytes,
            Some(validated_batches),
            elapsed_s,
            cpu_s,
        );
        case.batch_bytes = Some(batch.len());
        cases.push(announce(case));
    }
    Ok(cases)
}

/// A valid batch (the engine's test builder: one record, uncompressed) of `target_bytes`, or as
/// close as the record's varint lengths allow.
fn batch_close_to(target_bytes: usize, timestamp: TimestampMs) -> Bytes {
    let mut requested_bytes = target_bytes;
    let mut batch = batch_of_size(requested_bytes, timestamp);
    // The builder's size is approximate; correct the request by the difference a few times.
    for _ in 0..4 {
        if batch.len() == target_bytes {
            break;
        }
        requested_bytes = (requested_bytes + target_bytes).saturating_sub(batch.len());
        batch = batch_of_size(requested_bytes, timestamp);
    }
    batch
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// User + system CPU seconds of the whole process (every thread: glommio's helpers too).
pub(crate) fn process_cpu_s() -> Option<f64> {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes into the struct we own for the duration of the call.
    let status = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if status != 0 {
        return None;
    }
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
}

/// A folder removed (with everything in it) when dropped, also on error paths.
pub(crate) struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub(crate) fn create(path: PathBuf) -> Result<Self, BenchError> {
        fs::create_dir_all(&path).map_err(io_error("create dir", &path))?;
        Ok(Self { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        match fs::remove_dir_all(&self.path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "cannot remove bench dir")
            }
        }
    }
}
