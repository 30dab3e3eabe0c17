//! `vaart-bench produce`: N producers over K connections, fixed or open-loop rate.
//!
//! Open loop (`--rate`): message i of a producer is due at `start + i / rate`; the producer
//! sleeps until then, sends everything due, and the latency of each message is measured from
//! its due time, not from when `send` was called. A stall in the broker (or in the generator)
//! therefore shows in the latency of every message scheduled during it (no coordinated
//! omission); the report also says how far the generator fell behind its schedule.
//! Without `--rate` each producer sends as fast as the producer's buffer allows and latency is
//! measured from the `send` call.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use clap::Args;
use glommio::timer::Timer;
use vaart_client::sync::Notify;
use vaart_client::{
    Acks, Client, ClientConfig, Compression, DeliveryError, DeliveryFuture, Producer,
    ProducerConfig, ProducerRecord, RecordMetadata,
};

use super::dist::{KeyDist, KeySource, PayloadPool, Rng, SizeDist};
use super::report::{Headline, LoadReport};
use super::stats::{LocalRecorder, Metric, Percentiles, Progress, Shared, FLUSH_INTERVAL};
use super::{dealt, ensure_topic, run_threads, CommonArgs, StopAt, ThreadJob};
use crate::error::BenchError;
use crate::machine::MachineInfo;

/// Max-rate producers yield to their executor after this many sends, so the drain task and
/// the connections' readers run.
const YIELD_EVERY_SENDS: u64 = 64;
/// Open loop: a burst of messages already due (after a stall) yields to the executor after
/// this many sends, so the drain task and the connections' readers run meanwhile (a reader
/// kept waiting takes an acknowledgement's time late, which would count in the latency). A
/// pacing interval's worth of messages is usually fewer, and goes out in one batch.
const BURST_YIELD_EVERY_SENDS: u64 = 256;
/// The collector yields to its executor after recording this many deliveries in a row (a
/// backlog of them must not hold up the sends and the readers).
const YIELD_EVERY_RECORDS: u32 = 256;
/// Open loop: the clock is read again after at most this many sends of a burst that was
/// already due (only the reported send lag depends on it, never a latency).
const CLOCK_EVERY_SENDS: u64 = 16;
/// Sends counted locally before they are added to the shared counter.
const SENT_REPORT_EVERY: u64 = 64;
/// Bytes at the start of an e2e payload: the intended send time, ns since the Unix epoch.
pub const STAMP_BYTES: usize = 8;

#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Payload bytes per message: N, or MIN..MAX for a uniform distribution.
    #[arg(long, default_value = "1024")]
    pub message_size: SizeDist,
    /// Producer instances (spread over the connections and threads).
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// acks: 0, 1 or all.
    #[arg(long, default_value = "1")]
    pub acks: Acks,
    /// linger.ms: how long a batch waits for more records.
    #[arg(long, default_value_t = 0)]
    pub linger_ms: u64,
    /// batch.size in bytes.
    #[arg(long, default_value_t = 16384)]
    pub batch_size: usize,
    /// compression.type: none, gzip, snappy, lz4, zstd (payloads are random bytes).
    #[arg(long, default_value = "none")]
    pub compression: Compression,
    /// Target messages per second in all (open loop); omitted = as fast as possible.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Keys: none, uniform:N (N keys) or zipf:N (N keys, a few hot ones).
    #[arg(long, default_value = "none")]
    pub keys: KeyDist,
    /// buffer.memory per producer, in MiB.
    #[arg(long, default_value_t = 32)]
    pub buffer_memory_mib: usize,
    /// max.in.flight.requests.per.connection.
    #[arg(long, default_value_t = 5)]
    pub max_in_flight: usize,
    /// Open loop: the shortest sleep between sends, in microseconds. Messages that fall due
    /// while the generator sleeps are sent together when it wakes; their latency still counts
    /// from each one's intended time, so this never hides a delay (it adds at most this much).
    /// A timer per message (0) costs the generator a core at a few hundred thousand msgs/s.
    #[arg(long, default_value_t = 100)]
    pub pacing_us: u64,
}

impl ProduceArgs {
    pub fn validate(&self) -> Result<(), BenchError> {
        self.common.validate()?;
        if self.producers == 0 {
            return Err(BenchError::InvalidArgument(
                "--producers must be at least 1",
            ));
        }
        if self
            .rate
            .is_some_and(|rate| !(rate > 0.0 && rate.is_finite()))
        {
            return Err(BenchError::InvalidArgument("--rate must be > 0"));
        }
        Ok(())
    }

    /// Producers in all: at least one per connection.
    pub fn producer_count(&self) -> usize {
        self.producers.max(self.common.connections)
    }

    pub fn settings(&self) -> BTreeMap<String, String> {
        let common = &self.common;
        let mut settings = BTreeMap::new();
        let mut put = |key: &str, value: String| {
            settings.insert(key.to_owned(), value);
        };
        put("bootstrap_server", common.bootstrap_server.clone());
        put("topic", common.topic.clone());
        put("partitions", common.partitions.to_string());
        put("connections", common.connections.to_string());
        put("threads", common.threads.to_string());
        put("producers", self.producer_count().to_string());
        put("message_size", self.message_size.to_string());
        put(
            "acks",
            match self.acks {
                Acks::None => "0",
                Acks::Leader => "1",
                Acks::All => "all",
            }
            .to_owned(),
        );
        put("linger_ms", self.linger_ms.to_string());
        if self.rate.is_some() {
            put("pacing_us", self.pacing_us.to_string());
        }
        put("batch_size", self.batch_size.to_string());
        put("compression", self.compression.name().to_owned());
        put(
            "rate",
            self.rate
                .map_or_else(|| "max".to_owned(), |rate| rate.to_string()),
        );
        put("keys", self.keys.to_string());
        put("warmup_s", common.warmup.to_string());
        put(
            "stop",
            match common.stop_at() {
                StopAt::Messages(messages) => format!("{messages} messages"),
                StopAt::Duration(duration) => format!("{} s", duration.as_secs_f64()),
            },
        );
        settings
    }

    fn producer_config(&self) -> ProducerConfig {
        ProducerConfig {
            acks: self.acks,
            linger_ms: self.linger_ms,
            batch_size_bytes: self.batch_size,
            compression: self.compression,
            buffer_memory_bytes: (self.buffer_memory_mib << 20).max(1 << 20),
            max_request_bytes: (1 << 20).max(self.batch_size),
            ..ProducerConfig::default()
        }
    }
}

/// What every producer of a run does; shared by the threads.
pub struct ProducePlan {
    pub topic: String,
    pub size: SizeDist,
    pub keys: KeyDist,
    pub rate_per_producer: Option<f64>,
    pub stop: StopAt,
    pub producers: usize,
    pub connections: usize,
    pub threads: usize,
    pub client: ClientConfig,
    pub producer: ProducerConfig,
    /// e2e: stamp the intended send time into each payload.
    pub stamp: bool,
    /// Open loop: the shortest sleep between sends (see [`ProduceArgs::pacing_us`]).
    pub pacing: Duration,
}

impl ProducePlan {
    pub fn new(args: &ProduceArgs, stamp: bool) -> Self {
        let producers = args.producer_count();
        let mut client = args.common.client_config();
        client.connection.max_in_flight = args.max_in_flight;
        Self {
            topic: args.common.topic.clone(),
            size: args.message_size,
            keys: args.keys,
            rate_per_producer: args.rate.map(|rate| rate / producers as f64),
            pacing: Duration::from_micros(args.pacing_us),
            stop: args.common.stop_at(),
            producers,
            connections: args.common.connections,
            threads: args.common.threads,
            client,
            producer: args.producer_config(),
            stamp,
        }
    }

    /// The measured-message quota of producer `index` (a share of `--messages`).
    fn quota(&self, index: usize) -> Option<u64> {
        match self.stop {
            StopAt::Messages(total) => {
                let producers = self.producers as u64;
                let base = total / producers;
                Some(base + u64::from((index as u64) < total % producers))
            }
            StopAt::Duration(_) => None,
        }
    }
}

pub fn run(args: &ProduceArgs) -> Result<(), BenchError> {
    args.validate()?;
    let limits = args.common.machine_limits()?;
    ensure_topic(&args.common)?;
    let plan = Arc::new(ProducePlan::new(args, false));
    let shared = Shared::new(args.common.warmup());
    let jobs = producer_jobs(&plan, &shared, 0..plan.threads);
    let mut progress = Progress::new(Arc::clone(&shared), Metric::Produce);
    let figures = run_threads(
        jobs,
        &shared,
        &mut progress,
        args.common.quiet,
        args.common.broker_pid,
        limits.as_ref().map(|limits| limits.disk_dir.as_path()),
    )?;
    let headline = produce_headline(&shared, args.rate);
    let machine = machine_summary(&args.common);
    let report = LoadReport::new(
        headline,
        args.common.label.clone(),
        args.settings(),
        &figures,
        limits,
        machine,
        progress.timeline,
    );
    let result = report.finish(args.common.json.as_deref());
    super::maybe_delete_topic(&args.common);
    result
}

pub fn machine_summary(common: &CommonArgs) -> String {
    let dir = common
        .measure_limits
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from("."));
    MachineInfo::collect(&dir).summary()
}

/// The produce figures of a finished run.
pub fn produce_headline(shared: &Shared, rate: Option<f64>) -> Headline {
    let measured = shared.measured(Metric::Produce);
    let measure_from = shared.measure_from();
    let elapsed_s = measured.last.map_or(0.0, |last| {
        last.saturating_duration_since(measure_from).as_secs_f64()
    });
    Headline {
        kind: "produce",
        messages: measured.messages,
        payload_bytes: measured.payload_bytes,
        elapsed_s,
        latency_ms: Percentiles::of(&measured.histogram),
        e2e_latency_ms: None,
        target_msgs_per_s: rate,
        send_lag_ms_max: Some(shared.send_lag_max_us.load(Ordering::Relaxed) as f64 / 1000.0),
        errors: shared.errors.load(Ordering::Relaxed),
        first_error: shared.first_error(),
    }
}

/// One job per thread in `threads`: connect the thread's clients and run its producers.
pub fn producer_jobs(
    plan: &Arc<ProducePlan>,
    shared: &Arc<Shared>,
    threads: std::ops::Range<usize>,
) -> Vec<ThreadJob> {
    threads
        .map(|thread| {
            let plan = Arc::clone(plan);
            let shared = Arc::clone(shared);
            let job: ThreadJob = Box::new(move |barrier: Arc<Barrier>| {
                Box::pin(producer_thread(plan, shared, thread, barrier))
            });
            job
        })
        .collect()
}

/// Client `c` lives on thread `c % threads`; producer `p` uses client `p % connections`.
async fn producer_thread(
    plan: Arc<ProducePlan>,
    shared: Arc<Shared>,
    thread: usize,
    barrier: Arc<Barrier>,
) -> Result<(), BenchError> {
    let setup = setup_producers(&plan, thread).await;
    // Every thread reaches the barrier, even after a failed setup, so none waits forever.
    barrier.wait();
    run_producers(plan, shared, setup?).await
}

/// Runs this thread's producers to the end of the run.
pub async fn run_producers(
    plan: Arc<ProducePlan>,
    shared: Arc<Shared>,
    producers: Vec<(usize, Producer)>,
) -> Result<(), BenchError> {
    let recorder = Rc::new(RefCell::new(LocalRecorder::new(
        Arc::clone(&shared),
        Metric::Produce,
    )));
    let running = Rc::new(Cell::new(producers.len()));
    let flusher = glommio::spawn_local(flush_periodically(
        Rc::clone(&recorder),
        Rc::clone(&running),
    ));
    // One payload pool and key set per thread (not per producer: runs with 1,000 producers).
    let data = Rc::new(MessageData {
        keys: KeySource::new(plan.keys),
        pool: PayloadPool::new(plan.size.max(), wall_ns()),
    });
    let mut tasks = Vec::new();
    for (index, producer) in producers {
        let plan = Arc::clone(&plan);
        let shared = Arc::clone(&shared);
        let recorder = Rc::clone(&recorder);
        let running = Rc::clone(&running);
        let data = Rc::clone(&data);
        tasks.push(glommio::spawn_local(async move {
            let result = producer_loop(&plan, &shared, index, producer, &data, recorder).await;
            running.set(running.get() - 1);
            result
        }));
    }
    let mut result = Ok(());
    for task in tasks {
        if let Err(error) = task.await {
            shared.stop.store(true, Ordering::Relaxed);
            result = result.and(Err(error));
        }
    }
    flusher.await;
    recorder.borrow_mut().flush();
    result
}

pub async fn setup_producers(
    plan: &ProducePlan,
    thread: usize,
) -> Result<Vec<(usize, Producer)>, BenchError> {
    let mut clients: HashMap<usize, Client> = HashMap::new();
    for connection in dealt(plan.connections, plan.threads, thread) {
        clients.insert(connection, Client::connect(plan.client.clone()).await?);
    }
    let mut producers = Vec::new();
    for index in 0..plan.producers {
        if let Some(client) = clients.get(&(index % plan.connections)) {
            let producer = Producer::new(client.clone(), plan.producer.clone())?;
            // Learn the topic now, not on the first timed send.
            client.topic(&plan.topic).await?;
            producers.push((index, producer));
        }
    }
    Ok(producers)
}

/// Merges the thread's recorder into the shared state until its producers are done.
pub async fn flush_periodically(recorder: Rc<RefCell<LocalRecorder>>, running: Rc<Cell<usize>>) {
    while running.get() > 0 {
        Timer::new(FLUSH_INTERVAL).await;
        recorder.borrow_mut().try_flush();
    }
}

/// Wall-clock ns since the Unix epoch.
pub fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

/// Wall-clock time from a monotonic instant: one wall-clock read per producer, so a record's
/// timestamp costs no clock read of its own.
#[derive(Debug, Clone, Copy)]
struct WallClock {
    base: Instant,
    base_ms: i64,
}

impl WallClock {
    fn new(base: Instant) -> Self {
        let behind_ms = Instant::now().saturating_duration_since(base).as_millis();
        let now_ms = (wall_ns() / 1_000_000) as i64;
        Self {
            base,
            base_ms: now_ms.saturating_sub(i64::try_from(behind_ms).unwrap_or(i64::MAX)),
        }
    }

    /// Milliseconds since the Unix epoch at `instant` (not before the base).
    fn ms_at(&self, instant: Instant) -> i64 {
        let since_ms = instant.saturating_duration_since(self.base).as_millis();
        self.base_ms
            .saturating_add(i64::try_from(since_ms).unwrap_or(i64::MAX))
    }
}

/// What a thread's producers draw keys and payloads from.
struct MessageData {
    keys: KeySource,
    pool: PayloadPool,
}

struct InFlight {
    intended: Instant,
    payload_bytes: u64,
    delivery: DeliveryFuture,
}

async fn producer_loop(
    plan: &ProducePlan,
    shared: &Arc<Shared>,
    index: usize,
    producer: Producer,
    data: &MessageData,
    recorder: Rc<RefCell<LocalRecorder>>,
) -> Result<(), BenchError> {
    let start = shared.start();
    let measure_from = shared.measure_from();
    let end = match plan.stop {
        StopAt::Duration(duration) => Some(measure_from + duration),
        StopAt::Messages(_) => None,
    };
    let quota = plan.quota(index);
    let mut rng = Rng::new(0x5eed ^ (index as u64) << 17 ^ wall_ns());
    let (keys, pool) = (&data.keys, &data.pool);
    let queue: Rc<RefCell<VecDeque<InFlight>>> = Rc::new(RefCell::new(VecDeque::new()));
    let queued = Rc::new(Notify::new());
    let sending = Rc::new(Cell::new(true));
    let collector = glommio::spawn_local(collect(
        Rc::clone(&queue),
        Rc::clone(&queued),
        Rc::clone(&sending),
        Arc::clone(shared),
        recorder,
    ));
    // Producers start a little apart so open-loop sends do not all fall on the same instant.
    let offset = plan.rate_per_producer.map_or(Duration::ZERO, |rate| {
        Duration::from_secs_f64(index as f64 / plan.producers as f64 / rate)
    });
    let clock = WallClock::new(start);
    let mut sent: u64 = 0;
    let mut unreported_sent: u64 = 0;
    let mut measured_sent: u64 = 0;
    let mut send_lag_max = Duration::ZERO;
    // Open loop: sends since the last sleep (a burst of messages already due).
    let mut burst: u64 = 0;
    // Open loop: the last clock reading. A message intended before it is due without reading
    // the clock again.
    let mut now = Instant::now();
    let mut result = Ok(());
    loop {
        if shared.stopped() {
            break;
        }
        // Max rate: the latency counts from this reading, taken for every message.
        let intended = match plan.rate_per_producer {
            Some(rate) => start + offset + Duration::from_secs_f64(sent as f64 / rate),
            None => Instant::now(),
        };
        if end.is_some_and(|end| intended >= end) || quota.is_some_and(|q| measured_sent >= q) {
            break;
        }
        match plan.rate_per_producer {
            Some(_) => {
                if intended > now || sent.is_multiple_of(CLOCK_EVERY_SENDS) {
                    now = Instant::now();
                }
                if intended > now {
                    // Sleep at least `pacing`: the messages due meanwhile go out in one burst
                    // on waking, each measured from its own intended time.
                    Timer::new((intended - now).max(plan.pacing)).await;
                    now = Instant::now();
                    burst = 0;
                } else {
                    send_lag_max = send_lag_max.max(now - intended);
                    burst += 1;
                    if burst.is_multiple_of(BURST_YIELD_EVERY_SENDS) {
                        glommio::executor().yield_now().await;
                        now = Instant::now();
                    }
                }
            }
            None => {
                if sent % YIELD_EVERY_SENDS == YIELD_EVERY_SENDS - 1 {
                    glommio::executor().yield_now().await;
                }
            }
        }
        let size = plan.size.sample(&mut rng);
        let value = if plan.stamp {
            stamped_payload(pool, size, intended, &mut rng)
        } else {
            pool.slice(size, &mut rng)
        };
        let mut record = ProducerRecord::new(value).with_timestamp_ms(clock.ms_at(intended));
        record.key = keys.sample(&mut rng);
        let delivery = match producer.send(&plan.topic, record).await {
            Ok(delivery) => delivery,
            Err(error) => {
                shared.error(|| error.to_string());
                result = Err(error.into());
                break;
            }
        };
        unreported_sent += 1;
        if unreported_sent == SENT_REPORT_EVERY {
            shared.sent.fetch_add(unreported_sent, Ordering::Relaxed);
            unreported_sent = 0;
        }
        let was_empty = {
            let mut queue = queue.borrow_mut();
            let was_empty = queue.is_empty();
            queue.push_back(InFlight {
                intended,
                payload_bytes: size as u64,
                delivery,
            });
            was_empty
        };
        if was_empty {
            // The collector waits for the queue only when it is empty.
            queued.notify_all();
        }
        sent += 1;
        if intended >= measure_from {
            measured_sent += 1;
        }
    }
    shared.sent.fetch_add(unreported_sent, Ordering::Relaxed);
    shared
        .send_lag_max_us
        .fetch_max(send_lag_max.as_micros() as u64, Ordering::Relaxed);
    producer.flush().await;
    sending.set(false);
    queued.notify_all();
    collector.await;
    producer.close().await;
    result
}

/// A payload whose first bytes are the intended send time (wall clock, ns since the epoch).
fn stamped_payload(pool: &PayloadPool, size: usize, intended: Instant, rng: &mut Rng) -> Bytes {
    let behind_ns = Instant::now()
        .saturating_duration_since(intended)
        .as_nanos() as u64;
    let stamp = wall_ns().saturating_sub(behind_ns);
    let size = size.max(STAMP_BYTES);
    let mut value = BytesMut::with_capacity(size);
    value.put_u64(stamp);
    value.extend_from_slice(&pool.slice(size - STAMP_BYTES, rng));
    value.freeze()
}

/// What the collector does after a pass over its queue.
enum Next {
    /// Wait for this delivery, the oldest still pending.
    Wait(InFlight),
    /// Let other tasks run: deliveries are still waiting to be recorded.
    Yield,
    /// Wait for the producer to queue more.
    Empty,
}

/// Records deliveries in send order, each one's latency from its intended time to its
/// acknowledgement (the acknowledgement time is taken when the answer arrived, so the order
/// of recording does not add to it). Deliveries already complete are taken without waiting,
/// [`YIELD_EVERY_RECORDS`] at a time; the collector waits only for the oldest one still
/// pending, or for the queue to fill.
async fn collect(
    queue: Rc<RefCell<VecDeque<InFlight>>>,
    queued: Rc<Notify>,
    sending: Rc<Cell<bool>>,
    shared: Arc<Shared>,
    recorder: Rc<RefCell<LocalRecorder>>,
) {
    let record = |in_flight: &InFlight, result: Result<RecordMetadata, DeliveryError>| match result
    {
        Ok(metadata) => recorder.borrow_mut().record(
            in_flight.intended,
            metadata.acked_at,
            in_flight.payload_bytes,
        ),
        Err(error) => shared.error(|| error.to_string()),
    };
    loop {
        let notified = queued.notified();
        let mut recorded: u32 = 0;
        let next = {
            let mut queue = queue.borrow_mut();
            loop {
                let Some(front) = queue.front() else {
                    break Next::Empty;
                };
                if recorded == YIELD_EVERY_RECORDS {
                    break Next::Yield;
                }
                match front.delivery.try_result() {
                    Some(result) => {
                        record(front, result);
                        queue.pop_front();
                        recorded += 1;
                    }
                    None => break queue.pop_front().map_or(Next::Empty, Next::Wait),
                }
            }
        };
        match next {
            Next::Wait(mut in_flight) => {
                let result = (&mut in_flight.delivery).await;
                record(&in_flight, result);
            }
            Next::Yield => glommio::executor().yield_now().await,
            Next::Empty => {
                if !sending.get() {
                    return;
                }
                notified.await;
            }
        }
    }
}
