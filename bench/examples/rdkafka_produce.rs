//! Produce benchmark through librdkafka (the `rdkafka` crate, bundled librdkafka): N messages
//! of S bytes to a topic with P partitions at acks 0, 1 or all, measuring throughput and
//! per-message latency from enqueue to delivery report in an HdrHistogram.
//!
//! ```text
//! cargo run --release -p vaart-bench --example rdkafka_produce -- \
//!     --bootstrap 127.0.0.1:9092 --messages 200000 --size 1024 --partitions 3 --acks all \
//!     --json rdkafka-produce.json
//! ```
//!
//! By default the run is closed-loop (as fast as librdkafka accepts messages): the latency is
//! then the latency under saturation, queueing inside librdkafka included. With `--rate N` the
//! run is open-loop: message i is due at `start + i / N` and its latency is measured from that
//! due time, so a stall is not hidden by the sender waiting for it (no coordinated omission).
//! The topic is created (if missing) with the given partition count. The process prints a
//! table and writes the same figures as JSON.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use serde::Serialize;

/// Latencies are recorded in microseconds, up to this (longer ones are clamped).
const LATENCY_MAX_US: u64 = 600_000_000;
/// How long one `poll` waits while librdkafka's queue is full.
const QUEUE_FULL_POLL: Duration = Duration::from_millis(1);
/// Open loop: below this much time to the next due message, spin instead of sleeping.
const PACING_SPIN: Duration = Duration::from_micros(50);
/// Bound on the final flush.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Parser)]
#[command(about = "Produce benchmark through librdkafka")]
struct Args {
    /// Broker address.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Topic (created with --partitions if missing).
    #[arg(long, default_value = "bench-rdkafka")]
    topic: String,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Messages to produce.
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    /// Message value size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// acks: 0, 1 or all.
    #[arg(long, default_value = "1")]
    acks: String,
    /// librdkafka linger.ms.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// librdkafka compression.codec.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Enable the idempotent producer.
    #[arg(long)]
    idempotence: bool,
    /// Target rate in messages/s (open loop); 0 = as fast as possible (closed loop).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// Delivery reports land here, from librdkafka's poll on the sending thread.
struct LatencyContext {
    histogram: Mutex<Histogram<u64>>,
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for LatencyContext {}

impl ProducerContext for LatencyContext {
    /// When the message was due (closed loop: when it was handed to librdkafka).
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, due: Box<Instant>) {
        match result {
            Ok(_) => {
                let micros = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
                if let Ok(mut histogram) = self.histogram.lock() {
                    histogram.saturating_record(micros.clamp(1, LATENCY_MAX_US));
                }
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| error.to_string());
                }
            }
        }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    client: &'static str,
    bootstrap: String,
    topic: String,
    partitions: i32,
    messages: u64,
    message_bytes: usize,
    acks: String,
    linger_ms: u64,
    compression: String,
    idempotence: bool,
    mode: String,
    delivered: u64,
    failed: u64,
    first_error: Option<String>,
    elapsed_s: f64,
    msgs_per_s: f64,
    mb_per_s: f64,
    latency_ms: Latency,
}

#[derive(Debug, Serialize)]
struct Latency {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    mean: f64,
}

fn create_topic(args: &Args) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .create()?;
    let topic = NewTopic::new(&args.topic, args.partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = futures_lite::future::block_on(admin.create_topics([&topic], &options))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                eprintln!("creating topic {name}: {code}");
                return Err(KafkaError::AdminOp(code));
            }
        }
    }
    Ok(())
}

fn run(args: &Args) -> Result<Report, KafkaError> {
    create_topic(args)?;
    let context = LatencyContext {
        histogram: Mutex::new(
            Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid histogram bounds"),
        ),
        delivered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        first_error: Mutex::new(None),
    };
    let producer: BaseProducer<LatencyContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("client.id", "vaart-bench-rdkafka")
        .set("acks", &args.acks)
        .set("linger.ms", args.linger_ms.to_string())
        .set("compression.codec", &args.compression)
        .set("enable.idempotence", args.idempotence.to_string())
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", "300000")
        .create_with_context(context)?;

    // Warm up: librdkafka learns the topic's partitions and leaders before the clock starts,
    // so the first messages do not wait for metadata.
    producer
        .client()
        .fetch_metadata(Some(&args.topic), Duration::from_secs(30))?;
    let payload = vec![b'x'; args.size];
    let partitions = args.partitions.max(1);
    let interval = (args.rate > 0).then(|| Duration::from_secs_f64(1.0 / args.rate as f64));
    let started = Instant::now();
    for index in 0..args.messages {
        let due = match interval {
            Some(interval) => {
                let due = started + interval.mul_f64(index as f64);
                // Sleep (not spin: the broker under test shares the machine) until the message
                // is due; messages that fell due meanwhile go out back to back.
                loop {
                    let now = Instant::now();
                    if now >= due {
                        break;
                    }
                    producer.poll(Duration::ZERO);
                    let left = due - now;
                    if left > PACING_SPIN {
                        std::thread::sleep(left - PACING_SPIN);
                    } else {
                        std::hint::spin_loop();
                    }
                }
                due
            }
            None => Instant::now(),
        };
        // Round-robin over the partitions (no key): the spread does not depend on hashing.
        let partition = i32::try_from(index % u64::try_from(partitions).unwrap_or(1)).unwrap_or(0);
        let mut record: BaseRecord<'_, [u8], [u8], Box<Instant>> =
            BaseRecord::with_opaque_to(&args.topic, Box::new(due))
                .payload(payload.as_slice())
                .partition(partition);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    producer.poll(QUEUE_FULL_POLL);
                }
                Err((error, _)) => return Err(error),
            }
        }
        if index % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(FLUSH_TIMEOUT)?;
    let elapsed = started.elapsed();

    let context = producer.context();
    let delivered = context.delivered.load(Ordering::Relaxed);
    let failed = context.failed.load(Ordering::Relaxed);
    let histogram = context
        .histogram
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|poisoned| poisoned.into_inner().clone());
    let first_error = context
        .first_error
        .lock()
        .map(|e| e.clone())
        .unwrap_or_default();
    let ms = |micros: u64| micros as f64 / 1000.0;
    let seconds = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    Ok(Report {
        client: "librdkafka",
        bootstrap: args.bootstrap.clone(),
        topic: args.topic.clone(),
        partitions,
        messages: args.messages,
        message_bytes: args.size,
        acks: args.acks.clone(),
        linger_ms: args.linger_ms,
        compression: args.compression.clone(),
        idempotence: args.idempotence,
        mode: if args.rate > 0 {
            format!("open loop, {} msgs/s target", args.rate)
        } else {
            "closed loop (max throughput)".to_string()
        },
        delivered,
        failed,
        first_error,
        elapsed_s: seconds,
        msgs_per_s: delivered as f64 / seconds,
        mb_per_s: delivered as f64 * args.size as f64 / seconds / 1_000_000.0,
        latency_ms: Latency {
            p50: ms(histogram.value_at_quantile(0.50)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
            mean: histogram.mean() / 1000.0,
        },
    })
}

fn print_table(report: &Report) {
    println!(
        "librdkafka produce: {} x {} B to {} ({} partitions), acks={}, linger.ms={}, compression={}, idempotence={}, {}",
        report.messages,
        report.message_bytes,
        report.topic,
        report.partitions,
        report.acks,
        report.linger_ms,
        report.compression,
        report.idempotence,
        report.mode
    );
    println!(
        "| {:>9} | {:>7} | {:>9} | {:>9} | {:>9} | {:>9} | {:>9} | {:>6} |",
        "msgs/s", "MB/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "mean ms", "failed"
    );
    println!(
        "|{:-<11}|{:-<9}|{:-<11}|{:-<11}|{:-<11}|{:-<11}|{:-<11}|{:-<8}|",
        "", "", "", "", "", "", "", ""
    );
    println!(
        "| {:>9.0} | {:>7.1} | {:>9.2} | {:>9.2} | {:>9.2} | {:>9.2} | {:>9.2} | {:>6} |",
        report.msgs_per_s,
        report.mb_per_s,
        report.latency_ms.p50,
        report.latency_ms.p99,
        report.latency_ms.p999,
        report.latency_ms.max,
        report.latency_ms.mean,
        report.failed
    );
    if let Some(error) = &report.first_error {
        println!("first delivery error: {error}");
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let report = match run(&args) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("rdkafka_produce: {error}");
            return ExitCode::FAILURE;
        }
    };
    print_table(&report);
    if let Some(path) = &args.json {
        let written = serde_json::to_vec_pretty(&report)
            .map_err(|e| e.to_string())
            .and_then(|json| std::fs::write(path, json).map_err(|e| e.to_string()));
        if let Err(error) = written {
            eprintln!("rdkafka_produce: cannot write {}: {error}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if report.failed > 0 || report.delivered != report.messages {
        eprintln!(
            "rdkafka_produce: {} of {} messages not delivered",
            report.messages - report.delivered,
            report.messages
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
