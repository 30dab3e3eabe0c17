//! `vaart-bench consume`: M consumers read the topic's partitions (dealt round-robin), each
//! over its own connection.
//!
//! `--from earliest` is the catch-up case: the log end offsets are read first and each
//! consumer stops when its partitions reach them, so the run reads exactly the backlog
//! (from disk, once it is older than the broker's in-memory tail). `--from latest` tails the
//! topic for `--duration` (records produced by another process meanwhile).
//!
//! Records are decoded with kafka-protocol's `RecordBatchDecoder` and their key + value bytes
//! counted as payload; `--no-decode` counts whole batches (wire bytes) from their headers
//! instead, for the lightest possible consumer.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use clap::{Args, ValueEnum};
use vaart_client::{Client, Consumer, ConsumerConfig, Offset, PartitionId, StartOffset};

use super::produce::flush_periodically;
use super::report::{Headline, LoadReport};
use super::stats::{LocalRecorder, Metric, Percentiles, Progress, Shared};
use super::{dealt, end_offsets, ensure_topic, run_threads, CommonArgs, StopAt, ThreadJob};
use crate::error::BenchError;

/// Where consumers start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum From {
    /// The start of each partition; stop at the end offsets seen when the run starts.
    Earliest,
    /// The end of each partition; read what arrives for --duration.
    Latest,
}

#[derive(Debug, Clone, Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Consumer instances, each with its own connection.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Where to start.
    #[arg(long, value_enum, default_value = "earliest")]
    pub from: From,
    /// fetch.max.wait.ms.
    #[arg(long, default_value_t = 500)]
    pub max_wait_ms: i32,
    /// fetch.min.bytes.
    #[arg(long, default_value_t = 1)]
    pub min_bytes: i32,
    /// fetch.max.bytes.
    #[arg(long, default_value_t = 50 << 20)]
    pub fetch_max_bytes: i32,
    /// max.partition.fetch.bytes.
    #[arg(long, default_value_t = 4 << 20)]
    pub partition_fetch_bytes: i32,
    /// Count whole batches from their headers instead of decoding records.
    #[arg(long)]
    pub no_decode: bool,
}

struct ConsumePlan {
    topic: String,
    consumers: usize,
    threads: usize,
    start: StartOffset,
    /// Catch-up: stop each partition at this offset.
    targets: Option<HashMap<PartitionId, Offset>>,
    partitions: Vec<PartitionId>,
    stop: StopAt,
    decode: bool,
    client: vaart_client::ClientConfig,
    consumer: ConsumerConfig,
}

pub fn run(args: &ConsumeArgs) -> Result<(), BenchError> {
    args.common.validate()?;
    if args.consumers == 0 {
        return Err(BenchError::InvalidArgument(
            "--consumers must be at least 1",
        ));
    }
    let limits = args.common.machine_limits()?;
    ensure_topic(&args.common)?;
    let ends = end_offsets(&args.common)?;
    let catch_up = args.from == From::Earliest;
    let backlog: i64 = ends.iter().map(|(_, end)| end.0).sum();
    if catch_up {
        eprintln!(
            "catch-up: reading {backlog} records from {} partitions",
            ends.len()
        );
    }
    let plan = Arc::new(ConsumePlan {
        topic: args.common.topic.clone(),
        consumers: args.consumers,
        threads: args.common.threads,
        start: if catch_up {
            StartOffset::Earliest
        } else {
            StartOffset::Latest
        },
        targets: catch_up.then(|| ends.iter().copied().collect()),
        partitions: ends.iter().map(|(id, _)| *id).collect(),
        stop: match (catch_up, args.common.messages, args.common.duration) {
            // A catch-up reads the backlog unless told otherwise.
            (true, None, None) => StopAt::Messages(u64::MAX),
            _ => args.common.stop_at(),
        },
        decode: !args.no_decode,
        client: args.common.client_config(),
        consumer: ConsumerConfig {
            max_wait_ms: args.max_wait_ms,
            min_bytes: args.min_bytes,
            max_bytes: args.fetch_max_bytes,
            partition_max_bytes: args.partition_fetch_bytes,
            ..ConsumerConfig::default()
        },
    });
    let shared = Shared::new(args.common.warmup());
    let jobs: Vec<ThreadJob> = (0..plan.threads)
        .map(|thread| {
            let plan = Arc::clone(&plan);
            let shared = Arc::clone(&shared);
            let job: ThreadJob = Box::new(move |barrier: Arc<Barrier>| {
                Box::pin(consumer_thread(plan, shared, thread, barrier))
            });
            job
        })
        .collect();
    let mut progress = Progress::new(Arc::clone(&shared), Metric::Fetch);
    let figures = run_threads(
        jobs,
        &shared,
        &mut progress,
        args.common.quiet,
        args.common.broker_pid,
        limits.as_ref().map(|limits| limits.disk_dir.as_path()),
    )?;
    let measured = shared.measured(Metric::Fetch);
    let measure_from = shared.measure_from();
    let headline = Headline {
        kind: "consume",
        messages: measured.messages,
        payload_bytes: measured.payload_bytes,
        elapsed_s: measured.last.map_or(0.0, |last| {
            last.saturating_duration_since(measure_from).as_secs_f64()
        }),
        latency_ms: Percentiles::of(&measured.histogram),
        e2e_latency_ms: None,
        target_msgs_per_s: None,
        send_lag_ms_max: None,
        errors: shared.errors.load(Ordering::Relaxed),
        first_error: shared.first_error(),
    };
    drop(measured);
    let mut settings = BTreeMap::new();
    settings.insert(
        "bootstrap_server".into(),
        args.common.bootstrap_server.clone(),
    );
    settings.insert("topic".into(), args.common.topic.clone());
    settings.insert("partitions".into(), plan.partitions.len().to_string());
    settings.insert("consumers".into(), args.consumers.to_string());
    settings.insert("threads".into(), args.common.threads.to_string());
    settings.insert("from".into(), format!("{:?}", args.from).to_lowercase());
    settings.insert("backlog_records".into(), backlog.to_string());
    settings.insert(
        "counted".into(),
        if args.no_decode {
            "record batch bytes (headers only)".into()
        } else {
            "key + value bytes of decoded records".into()
        },
    );
    settings.insert(
        "partition_fetch_bytes".into(),
        args.partition_fetch_bytes.to_string(),
    );
    settings.insert("fetch_max_bytes".into(), args.fetch_max_bytes.to_string());
    let report = LoadReport::new(
        headline,
        args.common.label.clone(),
        settings,
        &figures,
        limits,
        super::produce::machine_summary(&args.common),
        progress.timeline,
    );
    let result = report.finish(args.common.json.as_deref());
    super::maybe_delete_topic(&args.common);
    result
}

async fn consumer_thread(
    plan: Arc<ConsumePlan>,
    shared: Arc<Shared>,
    thread: usize,
    barrier: Arc<Barrier>,
) -> Result<(), BenchError> {
    let setup = setup_consumers(&plan, thread).await;
    barrier.wait();
    let consumers = setup?;
    let recorder = Rc::new(RefCell::new(LocalRecorder::new(
        Arc::clone(&shared),
        Metric::Fetch,
    )));
    let running = Rc::new(Cell::new(consumers.len()));
    let flusher = glommio::spawn_local(flush_periodically(
        Rc::clone(&recorder),
        Rc::clone(&running),
    ));
    let mut tasks = Vec::new();
    for consumer in consumers {
        let plan = Arc::clone(&plan);
        let shared = Arc::clone(&shared);
        let recorder = Rc::clone(&recorder);
        let running = Rc::clone(&running);
        tasks.push(glommio::spawn_local(async move {
            let result = consumer_loop(&plan, &shared, &consumer, &recorder).await;
            if let Err(error) = &result {
                shared.error(|| error.to_string());
            }
            running.set(running.get() - 1);
            consumer.client().close();
            result
        }));
    }
    let mut result = Ok(());
    for task in tasks {
        result = result.and(task.await);
    }
    flusher.await;
    recorder.borrow_mut().flush();
    result
}

type ConsumerSetup = Vec<Consumer>;

async fn setup_consumers(plan: &ConsumePlan, thread: usize) -> Result<ConsumerSetup, BenchError> {
    let mut consumers = Vec::new();
    for index in dealt(plan.consumers, plan.threads, thread) {
        let partitions: Vec<PartitionId> = plan
            .partitions
            .iter()
            .enumerate()
            .filter(|(position, _)| position % plan.consumers == index)
            .map(|(_, id)| *id)
            .collect();
        if partitions.is_empty() {
            continue;
        }
        let client = Client::connect(plan.client.clone()).await?;
        let consumer = Consumer::new(client, plan.consumer.clone());
        let starts: Vec<(PartitionId, StartOffset)> =
            partitions.iter().map(|id| (*id, plan.start)).collect();
        for chunk in starts.chunks(1000) {
            consumer.assign(&plan.topic, chunk).await?;
        }
        consumers.push(consumer);
    }
    Ok(consumers)
}

async fn consumer_loop(
    plan: &ConsumePlan,
    shared: &Shared,
    consumer: &Consumer,
    recorder: &Rc<RefCell<LocalRecorder>>,
) -> Result<(), BenchError> {
    let measure_from = shared.measure_from();
    let end = match plan.stop {
        StopAt::Duration(duration) => Some(measure_from + duration),
        StopAt::Messages(_) => None,
    };
    let quota = match plan.stop {
        StopAt::Messages(u64::MAX) => None,
        StopAt::Messages(total) => Some(total / plan.consumers as u64 + 1),
        StopAt::Duration(_) => None,
    };
    let mut measured = 0u64;
    loop {
        if shared.stopped()
            || end.is_some_and(|end| Instant::now() >= end)
            || quota.is_some_and(|quota| measured >= quota)
        {
            return Ok(());
        }
        if let Some(targets) = &plan.targets {
            let caught_up = consumer
                .positions()
                .iter()
                .all(|(_, id, position)| targets.get(id).is_none_or(|target| position >= target));
            if caught_up {
                return Ok(());
            }
        }
        let polled_at = Instant::now();
        let batches = consumer.poll_batches().await?;
        let done = Instant::now();
        let mut messages = 0u64;
        let mut bytes = 0u64;
        for (batch, from) in &batches {
            if plan.decode {
                for record in batch.records(*from)? {
                    messages += 1;
                    bytes += (record.key.as_ref().map_or(0, |key| key.len())
                        + record.value.as_ref().map_or(0, |value| value.len()))
                        as u64;
                }
            } else {
                messages += u64::try_from(batch.record_count).unwrap_or(0);
                bytes += batch.data.len() as u64;
            }
        }
        {
            let mut recorder = recorder.borrow_mut();
            recorder.count(messages, bytes, done);
            if messages > 0 {
                // One fetch latency sample per answer that carried records.
                recorder.sample(
                    polled_at,
                    done.saturating_duration_since(polled_at).as_micros() as u64,
                );
            }
        }
        if done >= measure_from {
            measured += messages;
        }
        if batches.is_empty() && plan.targets.is_none() {
            glommio::executor().yield_now().await;
        }
    }
}
