//! The load generator: `produce`, `consume` and `e2e`, on glommio executors with Vaart's own
//! Kafka client, against any Kafka-compatible broker.
//!
//! # Layout
//! - `dist`: message sizes, keys, payload bytes, the random generator.
//! - `stats`: per-thread recorders, the shared counts and histograms, the progress line.
//! - `produce`, `consume`, `e2e`: one subcommand each.
//! - `report`: [`report::LoadReport`] (the JSON) and the final table.
//!
//! A run: the topic is created if missing; every thread connects its clients and waits at a
//! barrier; the run clock starts; the main thread prints progress each second while the
//! threads work; the report compares the result with the machine limits.

pub mod consume;
pub mod dist;
pub mod e2e;
pub mod produce;
pub mod report;
pub mod stats;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Args;
use glommio::{LocalExecutorBuilder, Placement};
use vaart_client::{Admin, Client, ClientConfig, ClientError, KafkaCode, NewTopic, Offset};
use vaart_client::{OffsetSpec, PartitionId};

use crate::error::BenchError;
use crate::limits::MachineLimits;
use crate::os::{process_cpu_s, sample_disk, sample_process, DiskSample, ProcessSample};
use stats::{Progress, Shared};

/// Locked memory per load executor (glommio pins ~3x this; small keeps memlock needs low).
const LOAD_IO_MEMORY_BYTES: usize = 2 << 20;
/// How long to wait for a new topic's partitions to get leaders.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Options every load subcommand shares.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Kafka bootstrap server(s): HOST:PORT[,HOST:PORT...]. Any Kafka-compatible broker.
    #[arg(long)]
    pub bootstrap_server: String,
    /// Topic to use; created with --partitions and --replication-factor if missing.
    #[arg(long)]
    pub topic: String,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// Replication factor of the topic when it is created.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i16,
    /// Client connections in all (each is its own client with one connection per broker;
    /// producers or consumers share them round-robin).
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// glommio executors (threads) to spread the clients over.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Stop after this many messages (after warm-up).
    #[arg(long, conflicts_with = "duration")]
    pub messages: Option<u64>,
    /// Stop after this many seconds (after warm-up); default 10 unless --messages.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Seconds at the start whose messages are not measured.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// A name for this run in reports (e.g. produce-3p-max).
    #[arg(long)]
    pub label: Option<String>,
    /// Machine limits measured earlier (`vaart-bench limits --json`), to print every figure
    /// as a fraction of the limit that bounds it.
    #[arg(long, conflicts_with = "measure_limits")]
    pub limits: Option<PathBuf>,
    /// Measure the machine limits now, on the disk holding this directory (the broker's data
    /// directory), before the load.
    #[arg(long)]
    pub measure_limits: Option<PathBuf>,
    /// The broker's process id, to report its CPU use and resident memory (same machine only).
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Print no progress lines.
    #[arg(long)]
    pub quiet: bool,
    /// Delete the topic when the run is over (frees the disk in long suites).
    #[arg(long)]
    pub delete_topic: bool,
}

/// When a run ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StopAt {
    /// After this many measured messages in all.
    Messages(u64),
    /// After this long past the warm-up.
    Duration(Duration),
}

impl CommonArgs {
    pub fn validate(&self) -> Result<(), BenchError> {
        if self.threads == 0 || self.connections == 0 {
            return Err(BenchError::InvalidArgument(
                "--threads and --connections must be at least 1",
            ));
        }
        if self.partitions <= 0 {
            return Err(BenchError::InvalidArgument(
                "--partitions must be at least 1",
            ));
        }
        if !(self.warmup >= 0.0 && self.warmup.is_finite()) {
            return Err(BenchError::InvalidArgument("--warmup must be >= 0"));
        }
        if self
            .duration
            .is_some_and(|seconds| !(seconds > 0.0 && seconds.is_finite()))
        {
            return Err(BenchError::InvalidArgument("--duration must be > 0"));
        }
        Ok(())
    }

    pub fn stop_at(&self) -> StopAt {
        match (self.messages, self.duration) {
            (Some(messages), _) => StopAt::Messages(messages),
            (None, Some(seconds)) => StopAt::Duration(Duration::from_secs_f64(seconds)),
            (None, None) => StopAt::Duration(Duration::from_secs(10)),
        }
    }

    pub fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup)
    }

    pub fn client_config(&self) -> ClientConfig {
        ClientConfig::new(&self.bootstrap_server)
    }

    /// The limits to compare with: loaded, measured now, or none.
    pub fn machine_limits(&self) -> Result<Option<MachineLimits>, BenchError> {
        if let Some(path) = &self.limits {
            return MachineLimits::load(path).map(Some);
        }
        match &self.measure_limits {
            Some(dir) => crate::limits::measure(dir, 512 << 20, 4096 << 20).map(Some),
            None => Ok(None),
        }
    }
}

/// Runs `future` on a short-lived executor on a thread of its own (setup steps).
pub fn on_executor<T, F>(make: impl FnOnce() -> F + Send + 'static) -> Result<T, BenchError>
where
    F: Future<Output = Result<T, BenchError>> + 'static,
    T: Send + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("vaart-bench-setup")
        .io_memory(LOAD_IO_MEMORY_BYTES)
        .spawn(make)
        .map_err(|error| BenchError::Executor(error.into()))?
        .join()
        .map_err(|_| BenchError::Worker {
            thread: 0,
            reason: "setup executor failed",
        })?
}

/// Creates the topic if missing and waits until every partition has a leader; returns its
/// partition count.
pub fn ensure_topic(common: &CommonArgs) -> Result<usize, BenchError> {
    let config = common.client_config();
    let topic = common.topic.clone();
    let partitions = common.partitions;
    let replication_factor = common.replication_factor;
    on_executor(move || async move {
        let client = Client::connect(config).await?;
        let admin = Admin::new(client.clone());
        let created = admin
            .create_topic(NewTopic::new(&topic, partitions, replication_factor))
            .await;
        match created {
            Ok(()) => eprintln!("created topic {topic} with {partitions} partitions"),
            Err(error) if error.kafka_code() == Some(KafkaCode::TOPIC_ALREADY_EXISTS) => {}
            Err(error) => return Err(error.into()),
        }
        let deadline = Instant::now() + TOPIC_READY_TIMEOUT;
        loop {
            match client.refresh_topic(&topic).await {
                Ok(metadata)
                    if !metadata.partitions.is_empty()
                        && metadata.partitions.iter().all(|p| p.leader.is_some()) =>
                {
                    let count = metadata.partitions.len();
                    client.close();
                    return Ok(count);
                }
                Ok(_) | Err(ClientError::UnknownTopic { .. }) if Instant::now() < deadline => {
                    glommio::timer::sleep(Duration::from_millis(100)).await;
                }
                Ok(_) => {
                    return Err(BenchError::InvalidArgument(
                        "topic partitions have no leader",
                    ))
                }
                Err(error) => return Err(error.into()),
            }
        }
    })
}

/// How long a topic deletion may take (a broker may answer DeleteTopics only once every
/// partition of a 10,000-partition topic is gone).
const DELETE_TIMEOUT_MS: u64 = 300_000;

/// Deletes the topic if `--delete-topic` was given. A failure is reported as a warning: the
/// run's results stand either way.
pub fn maybe_delete_topic(common: &CommonArgs) {
    if !common.delete_topic {
        return;
    }
    let mut config = common.client_config();
    config.connection.request_timeout_ms = DELETE_TIMEOUT_MS;
    let topic = common.topic.clone();
    let started = Instant::now();
    let deleted = on_executor(move || async move {
        let client = Client::connect(config).await?;
        Admin::new(client.clone()).delete_topic(&topic).await?;
        client.close();
        Ok(())
    });
    match deleted {
        Ok(()) => eprintln!(
            "deleted topic {} in {:.1} s",
            common.topic,
            started.elapsed().as_secs_f64()
        ),
        Err(error) => eprintln!("warning: deleting topic {}: {error}", common.topic),
    }
}

/// The log end offset of every partition of the topic.
pub fn end_offsets(common: &CommonArgs) -> Result<Vec<(PartitionId, Offset)>, BenchError> {
    let config = common.client_config();
    let topic = common.topic.clone();
    on_executor(move || async move {
        let client = Client::connect(config).await?;
        let metadata = client.topic(&topic).await?;
        let ids: Vec<PartitionId> = metadata.partitions.iter().map(|p| p.id).collect();
        let mut offsets = Vec::with_capacity(ids.len());
        // Chunks keep each ListOffsets request a reasonable size with 10,000 partitions.
        for chunk in ids.chunks(1000) {
            for (id, listed) in Admin::new(client.clone())
                .list_offsets(&topic, chunk, OffsetSpec::Latest)
                .await?
            {
                let listed = listed.map_err(ClientError::from)?;
                offsets.push((id, listed.offset));
            }
        }
        client.close();
        Ok(offsets)
    })
}

/// A load thread's work: gets the start barrier, returns when its share is done.
pub type ThreadJob =
    Box<dyn FnOnce(Arc<Barrier>) -> Pin<Box<dyn Future<Output = Result<(), BenchError>>>> + Send>;

/// What the main thread measured around a run.
pub struct RunFigures {
    pub start: Instant,
    pub end: Instant,
    pub generator_cpu_s: Option<f64>,
    /// Payload bytes completed from start to end, warm-up included: the same window as
    /// `generator_cpu_s`.
    pub payload_bytes_total: u64,
    pub broker_before: Option<ProcessSample>,
    pub broker_after: Option<ProcessSample>,
    /// The data disk's counters at start and end (when its directory is known).
    pub disk_before: Option<DiskSample>,
    pub disk_after: Option<DiskSample>,
}

/// Starts one executor per job, waits for them all to connect, starts the clock, prints
/// progress every second until every job is done, and joins them.
pub fn run_threads(
    jobs: Vec<ThreadJob>,
    shared: &Arc<Shared>,
    progress: &mut Progress,
    quiet: bool,
    broker_pid: Option<u32>,
    disk_dir: Option<&std::path::Path>,
) -> Result<RunFigures, BenchError> {
    let thread_count = jobs.len();
    let barrier = Arc::new(Barrier::new(thread_count + 1));
    let done = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::with_capacity(thread_count);
    for (index, job) in jobs.into_iter().enumerate() {
        let barrier = Arc::clone(&barrier);
        let done = Arc::clone(&done);
        let handle = LocalExecutorBuilder::new(Placement::Unbound)
            .name(&format!("vaart-load-{index}"))
            .io_memory(LOAD_IO_MEMORY_BYTES)
            .spawn(move || async move {
                let result = job(barrier).await;
                done.fetch_add(1, Ordering::SeqCst);
                result
            })
            .map_err(|error| BenchError::Executor(error.into()))?;
        handles.push(handle);
    }
    barrier.wait();
    let start = shared.start();
    let cpu_start_s = process_cpu_s();
    let broker_before = broker_pid.and_then(sample_process);
    let disk_before = disk_dir.and_then(sample_disk);
    let mut next_tick = start + Duration::from_secs(1);
    while done.load(Ordering::SeqCst) < thread_count {
        std::thread::sleep(Duration::from_millis(20));
        if Instant::now() >= next_tick {
            if !quiet {
                progress.tick();
            }
            next_tick += Duration::from_secs(1);
        }
    }
    let end = Instant::now();
    let generator_cpu_s = process_cpu_s()
        .zip(cpu_start_s)
        .map(|(end, start)| end - start);
    let broker_after = broker_pid.and_then(sample_process);
    let disk_after = disk_dir.and_then(sample_disk);
    let mut first_error = None;
    for (thread, handle) in handles.into_iter().enumerate() {
        let result = handle.join().map_err(|_| BenchError::Worker {
            thread,
            reason: "executor panicked",
        })?;
        if let Err(error) = result {
            first_error.get_or_insert(error);
        }
    }
    if let Some(error) = first_error {
        return Err(error);
    }
    // Every thread has merged its last counts by now.
    let payload_bytes_total = shared.counters(progress.metric()).1.load(Ordering::Relaxed);
    Ok(RunFigures {
        start,
        end,
        generator_cpu_s,
        payload_bytes_total,
        broker_before,
        broker_after,
        disk_before,
        disk_after,
    })
}

/// `items` dealt round-robin: the indexes that fall to `owner` of `owners`.
pub fn dealt(items: usize, owners: usize, owner: usize) -> impl Iterator<Item = usize> {
    (0..items).filter(move |item| item % owners.max(1) == owner)
}
