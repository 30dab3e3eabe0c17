//! `vaart-bench e2e`: producers and tailing consumers in one process; the latency from each
//! message's intended send time (stamped in its first 8 payload bytes, wall clock) to its
//! receipt by a consumer, alongside the produce acknowledgement latency.
//!
//! Consumers are assigned at the log end before the clock starts, so they read only this run's
//! messages. After the producers finish, consumers stop at the first empty long poll (or after
//! a grace period).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Args;
use vaart_client::{Client, Consumer, ConsumerConfig, PartitionId, StartOffset};

use super::produce::{
    flush_periodically, produce_headline, run_producers, setup_producers, wall_ns, ProduceArgs,
    ProducePlan, STAMP_BYTES,
};
use super::report::{Headline, LoadReport};
use super::stats::{LocalRecorder, Metric, Percentiles, Progress, Shared};
use super::{dealt, end_offsets, ensure_topic, run_threads, ThreadJob};
use crate::error::BenchError;

/// How long consumers keep reading after the producers finish, at most.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Args)]
pub struct E2eArgs {
    #[command(flatten)]
    pub produce: ProduceArgs,
    /// Consumer instances (each with its own connection), tailing the topic.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// fetch.max.wait.ms of the consumers.
    #[arg(long, default_value_t = 100)]
    pub max_wait_ms: i32,
}

struct E2ePlan {
    produce: Arc<ProducePlan>,
    consumers: usize,
    partitions: Vec<PartitionId>,
    consumer: ConsumerConfig,
    /// Threads still producing.
    producing: AtomicUsize,
}

pub fn run(args: &E2eArgs) -> Result<(), BenchError> {
    args.produce.validate()?;
    if args.consumers == 0 {
        return Err(BenchError::InvalidArgument(
            "--consumers must be at least 1",
        ));
    }
    let common = &args.produce.common;
    let limits = common.machine_limits()?;
    ensure_topic(common)?;
    let partitions: Vec<PartitionId> = end_offsets(common)?.into_iter().map(|(id, _)| id).collect();
    let produce = Arc::new(ProducePlan::new(&args.produce, true));
    let plan = Arc::new(E2ePlan {
        consumers: args.consumers,
        partitions,
        consumer: ConsumerConfig {
            max_wait_ms: args.max_wait_ms,
            ..ConsumerConfig::default()
        },
        producing: AtomicUsize::new(produce.threads),
        produce,
    });
    let shared = Shared::new(common.warmup());
    let jobs: Vec<ThreadJob> = (0..plan.produce.threads)
        .map(|thread| {
            let plan = Arc::clone(&plan);
            let shared = Arc::clone(&shared);
            let job: ThreadJob = Box::new(move |barrier: Arc<Barrier>| {
                Box::pin(e2e_thread(plan, shared, thread, barrier))
            });
            job
        })
        .collect();
    let mut progress = Progress::new(Arc::clone(&shared), Metric::EndToEnd);
    let figures = run_threads(
        jobs,
        &shared,
        &mut progress,
        common.quiet,
        common.broker_pid,
        limits.as_ref().map(|limits| limits.disk_dir.as_path()),
    )?;
    let produced = produce_headline(&shared, args.produce.rate);
    let received = shared.measured(Metric::EndToEnd);
    let measure_from = shared.measure_from();
    let headline = Headline {
        kind: "e2e",
        messages: received.messages,
        payload_bytes: received.payload_bytes,
        elapsed_s: received.last.map_or(0.0, |last| {
            last.saturating_duration_since(measure_from).as_secs_f64()
        }),
        latency_ms: produced.latency_ms,
        e2e_latency_ms: Percentiles::of(&received.histogram),
        target_msgs_per_s: args.produce.rate,
        send_lag_ms_max: produced.send_lag_ms_max,
        errors: produced.errors,
        first_error: produced.first_error,
    };
    drop(received);
    let mut settings = args.produce.settings();
    settings.insert("consumers".into(), args.consumers.to_string());
    settings.insert("max_wait_ms".into(), args.max_wait_ms.to_string());
    settings.insert("produced_messages".into(), produced.messages.to_string());
    let report = LoadReport::new(
        headline,
        common.label.clone(),
        settings,
        &figures,
        limits,
        super::produce::machine_summary(common),
        progress.timeline,
    );
    let result = report.finish(common.json.as_deref());
    super::maybe_delete_topic(common);
    result
}

async fn e2e_thread(
    plan: Arc<E2ePlan>,
    shared: Arc<Shared>,
    thread: usize,
    barrier: Arc<Barrier>,
) -> Result<(), BenchError> {
    let consumers = setup_consumers(&plan, thread).await;
    let producers = setup_producers(&plan.produce, thread).await;
    barrier.wait();
    let (consumers, producers) = (consumers?, producers?);
    let recorder = Rc::new(RefCell::new(LocalRecorder::new(
        Arc::clone(&shared),
        Metric::EndToEnd,
    )));
    let running = Rc::new(Cell::new(consumers.len()));
    let flusher = glommio::spawn_local(flush_periodically(
        Rc::clone(&recorder),
        Rc::clone(&running),
    ));
    let mut readers = Vec::new();
    for consumer in consumers {
        let plan = Arc::clone(&plan);
        let shared = Arc::clone(&shared);
        let recorder = Rc::clone(&recorder);
        let running = Rc::clone(&running);
        readers.push(glommio::spawn_local(async move {
            let result = read_loop(&plan, &consumer, &recorder).await;
            if let Err(error) = &result {
                shared.error(|| error.to_string());
            }
            running.set(running.get() - 1);
            consumer.client().close();
            result
        }));
    }
    let produced = run_producers(Arc::clone(&plan.produce), Arc::clone(&shared), producers).await;
    plan.producing.fetch_sub(1, Ordering::SeqCst);
    let mut result = produced;
    for reader in readers {
        result = result.and(reader.await);
    }
    flusher.await;
    recorder.borrow_mut().flush();
    result
}

async fn setup_consumers(plan: &E2ePlan, thread: usize) -> Result<Vec<Consumer>, BenchError> {
    let mut consumers = Vec::new();
    for index in dealt(plan.consumers, plan.produce.threads, thread) {
        let starts: Vec<(PartitionId, StartOffset)> = plan
            .partitions
            .iter()
            .enumerate()
            .filter(|(position, _)| position % plan.consumers == index)
            .map(|(_, id)| (*id, StartOffset::Latest))
            .collect();
        if starts.is_empty() {
            continue;
        }
        let client = Client::connect(plan.produce.client.clone()).await?;
        let consumer = Consumer::new(client, plan.consumer.clone());
        for chunk in starts.chunks(1000) {
            consumer.assign(&plan.produce.topic, chunk).await?;
        }
        consumers.push(consumer);
    }
    Ok(consumers)
}

async fn read_loop(
    plan: &E2ePlan,
    consumer: &Consumer,
    recorder: &Rc<RefCell<LocalRecorder>>,
) -> Result<(), BenchError> {
    let mut producers_done_at: Option<Instant> = None;
    loop {
        let records = consumer.poll().await?;
        let received_at = Instant::now();
        let received_ns = wall_ns();
        let mut recorder_ref = recorder.borrow_mut();
        for record in &records {
            let Some(value) = record.value.as_ref() else {
                continue;
            };
            let Some(stamp) = value
                .get(..STAMP_BYTES)
                .and_then(|bytes| bytes.try_into().ok())
                .map(u64::from_be_bytes)
            else {
                continue;
            };
            let latency_ns = received_ns.saturating_sub(stamp);
            let intended = received_at
                .checked_sub(Duration::from_nanos(latency_ns))
                .unwrap_or(received_at);
            recorder_ref.record_latency_us(
                intended,
                received_at,
                latency_ns / 1000,
                value.len() as u64,
            );
        }
        drop(recorder_ref);
        if plan.producing.load(Ordering::SeqCst) == 0 {
            let since = *producers_done_at.get_or_insert(received_at);
            if records.is_empty() || received_at.duration_since(since) > DRAIN_GRACE {
                return Ok(());
            }
        }
    }
}
