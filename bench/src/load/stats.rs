//! Counting and latency recording shared by the load threads, and the progress line.
//!
//! Each load thread records into its own [`LocalRecorder`] (no locks per message) and merges
//! it into the run's [`Shared`] state every [`FLUSH_INTERVAL`] and at the end. Latencies are in
//! microseconds in an HdrHistogram (1 µs .. 10 min, 3 significant digits). Only messages whose
//! intended send time falls after the warm-up count.
//!
//! A load thread never waits for the shared histograms' lock while the run goes on (the
//! progress printer shares it and runs on the same CPU): a periodic merge that finds it taken
//! is retried at the next interval. The completion counters behind the progress line are
//! atomics, added to every [`COUNT_EVERY`] completions, so a line reflects the last
//! milliseconds rather than the last merge.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// How often a thread merges its recorder into the shared state.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Completions counted locally before they are added to the shared counters.
pub const COUNT_EVERY: u64 = 1024;
/// Highest latency recorded (larger ones are clamped to it).
const LATENCY_MAX_US: u64 = 600_000_000;

/// An empty latency histogram.
pub fn new_histogram() -> Histogram<u64> {
    // Fixed, valid bounds: 1 µs to 10 min at 3 significant digits.
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid histogram bounds")
}

/// Which latency a recorder measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Intended send time to the broker's acknowledgement.
    Produce,
    /// Intended send time to the consumer's receipt.
    EndToEnd,
    /// Fetch request sent to its answer (consume runs).
    Fetch,
}

/// What the measured window holds for one metric.
pub struct Measured {
    pub histogram: Histogram<u64>,
    pub messages: u64,
    pub payload_bytes: u64,
    pub last: Option<Instant>,
    /// The highest latency (µs) merged since the progress printer last took it, warm-up
    /// included: the worst message of about the last second (a recorder merges every
    /// [`FLUSH_INTERVAL`], so a message may count in the second after the one it finished in).
    pub interval_max_us: u64,
}

impl Measured {
    fn new() -> Self {
        Self {
            histogram: new_histogram(),
            messages: 0,
            payload_bytes: 0,
            last: None,
            interval_max_us: 0,
        }
    }
}

/// State shared by every load thread and the progress printer.
pub struct Shared {
    start: OnceLock<Instant>,
    warmup: Duration,
    /// Messages handed to a producer.
    pub sent: AtomicU64,
    /// Messages acknowledged (produce) or received (consume), warm-up included.
    pub completed: AtomicU64,
    pub completed_bytes: AtomicU64,
    /// e2e: messages (and payload bytes) the consumers received, warm-up included.
    pub received: AtomicU64,
    pub received_bytes: AtomicU64,
    pub errors: AtomicU64,
    /// Largest delay between a message's intended send time and its `send` call, in µs.
    pub send_lag_max_us: AtomicU64,
    /// Set when the run must end early (an error, or every consumer caught up).
    pub stop: AtomicBool,
    produce: Mutex<Measured>,
    end_to_end: Mutex<Measured>,
    fetch: Mutex<Measured>,
    first_error: Mutex<Option<String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking thread poisons the lock; the numbers are still the best we have.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub fn new(warmup: Duration) -> Arc<Self> {
        Arc::new(Self {
            start: OnceLock::new(),
            warmup,
            sent: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            completed_bytes: AtomicU64::new(0),
            received: AtomicU64::new(0),
            received_bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            send_lag_max_us: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            produce: Mutex::new(Measured::new()),
            end_to_end: Mutex::new(Measured::new()),
            fetch: Mutex::new(Measured::new()),
            first_error: Mutex::new(None),
        })
    }

    /// Fixes the run's start (first caller wins) and returns it.
    pub fn start(&self) -> Instant {
        *self.start.get_or_init(Instant::now)
    }

    /// The end of the warm-up.
    pub fn measure_from(&self) -> Instant {
        self.start() + self.warmup
    }

    pub fn measured(&self, metric: Metric) -> MutexGuard<'_, Measured> {
        lock(self.measured_lock(metric))
    }

    /// The metric's measured window if its lock is free now (`None` if someone holds it).
    fn try_measured(&self, metric: Metric) -> Option<MutexGuard<'_, Measured>> {
        match self.measured_lock(metric).try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    fn measured_lock(&self, metric: Metric) -> &Mutex<Measured> {
        match metric {
            Metric::Produce => &self.produce,
            Metric::EndToEnd => &self.end_to_end,
            Metric::Fetch => &self.fetch,
        }
    }

    /// Counts a failure; the first one's message is kept for the report.
    pub fn error(&self, message: impl FnOnce() -> String) {
        if self.errors.fetch_add(1, Ordering::Relaxed) == 0 {
            *lock(&self.first_error) = Some(message());
        }
    }

    pub fn first_error(&self) -> Option<String> {
        lock(&self.first_error).clone()
    }

    /// The message and byte counters a metric's recorders add to.
    pub fn counters(&self, metric: Metric) -> (&AtomicU64, &AtomicU64) {
        match metric {
            Metric::EndToEnd => (&self.received, &self.received_bytes),
            Metric::Produce | Metric::Fetch => (&self.completed, &self.completed_bytes),
        }
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// One thread's share of the counts, merged into [`Shared`] now and then.
pub struct LocalRecorder {
    shared: Arc<Shared>,
    metric: Metric,
    measure_from: Instant,
    histogram: Histogram<u64>,
    messages: u64,
    payload_bytes: u64,
    last: Option<Instant>,
    completed: u64,
    completed_bytes: u64,
    /// Highest latency (µs) since the last merge, warm-up included.
    interval_max_us: u64,
}

impl LocalRecorder {
    pub fn new(shared: Arc<Shared>, metric: Metric) -> Self {
        let measure_from = shared.measure_from();
        Self {
            shared,
            metric,
            measure_from,
            histogram: new_histogram(),
            messages: 0,
            payload_bytes: 0,
            last: None,
            completed: 0,
            completed_bytes: 0,
            interval_max_us: 0,
        }
    }

    /// A message intended at `intended` finished at `done`.
    pub fn record(&mut self, intended: Instant, done: Instant, payload_bytes: u64) {
        self.record_latency_us(
            intended,
            done,
            done.saturating_duration_since(intended).as_micros() as u64,
            payload_bytes,
        );
    }

    /// Same, with the latency given (e.g. from wall-clock stamps).
    pub fn record_latency_us(
        &mut self,
        intended: Instant,
        done: Instant,
        latency_us: u64,
        payload_bytes: u64,
    ) {
        self.completed += 1;
        self.completed_bytes += payload_bytes;
        self.interval_max_us = self.interval_max_us.max(latency_us);
        if intended >= self.measure_from {
            self.histogram
                .saturating_record(latency_us.clamp(1, LATENCY_MAX_US));
            self.messages += 1;
            self.payload_bytes += payload_bytes;
            self.last = Some(self.last.map_or(done, |last| last.max(done)));
        }
        if self.completed >= COUNT_EVERY {
            self.add_counts();
        }
    }

    /// Adds a latency sample without counting a message (e.g. one Fetch round trip).
    pub fn sample(&mut self, intended: Instant, latency_us: u64) {
        self.interval_max_us = self.interval_max_us.max(latency_us);
        if intended >= self.measure_from {
            self.histogram
                .saturating_record(latency_us.clamp(1, LATENCY_MAX_US));
        }
    }

    /// Counts messages without a latency (catch-up reads count batches as they arrive).
    pub fn count(&mut self, messages: u64, payload_bytes: u64, done: Instant) {
        self.completed += messages;
        self.completed_bytes += payload_bytes;
        if done >= self.measure_from {
            self.messages += messages;
            self.payload_bytes += payload_bytes;
            self.last = Some(self.last.map_or(done, |last| last.max(done)));
        }
        if self.completed >= COUNT_EVERY {
            self.add_counts();
        }
    }

    /// Adds the completions counted so far to the shared counters.
    fn add_counts(&mut self) {
        let (count, bytes) = self.shared.counters(self.metric);
        count.fetch_add(self.completed, Ordering::Relaxed);
        bytes.fetch_add(self.completed_bytes, Ordering::Relaxed);
        self.completed = 0;
        self.completed_bytes = 0;
    }

    /// Merges into the shared state and starts over, waiting for the lock (the end of a run).
    pub fn flush(&mut self) {
        self.add_counts();
        if self.is_empty() {
            return;
        }
        let shared = Arc::clone(&self.shared);
        self.merge_into(shared.measured(self.metric));
    }

    /// Merges into the shared state if its lock is free now; otherwise keeps everything for
    /// the next try (the run's periodic merge: a load thread never blocks on the lock).
    pub fn try_flush(&mut self) {
        self.add_counts();
        if self.is_empty() {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let measured = shared.try_measured(self.metric);
        if let Some(measured) = measured {
            self.merge_into(measured);
        }
    }

    /// Nothing to merge.
    fn is_empty(&self) -> bool {
        self.messages == 0 && self.histogram.is_empty() && self.interval_max_us == 0
    }

    fn merge_into(&mut self, mut measured: MutexGuard<'_, Measured>) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = measured.histogram.add(&self.histogram);
        measured.messages += self.messages;
        measured.payload_bytes += self.payload_bytes;
        if let Some(last) = self.last {
            measured.last = Some(measured.last.map_or(last, |seen| seen.max(last)));
        }
        measured.interval_max_us = measured.interval_max_us.max(self.interval_max_us);
        self.histogram.reset();
        self.messages = 0;
        self.payload_bytes = 0;
        self.last = None;
        self.interval_max_us = 0;
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
    pub mean: f64,
    pub count: u64,
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Option<Self> {
        if histogram.is_empty() {
            return None;
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Some(Self {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            p9999: ms(histogram.value_at_quantile(0.9999)),
            max: ms(histogram.max()),
            mean: histogram.mean() / 1000.0,
            count: histogram.len(),
        })
    }
}

/// One progress line's figures, kept for the report's timeline.
#[allow(non_snake_case)]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    pub t_s: f64,
    pub msgs_per_s: f64,
    pub MB_per_s: f64,
    pub p99_ms: Option<f64>,
    /// The worst latency of about this second (see [`Measured::interval_max_us`]), warm-up
    /// included; None when nothing finished with a latency.
    #[serde(default)]
    pub max_ms: Option<f64>,
}

/// Prints a progress line to stderr once per call (the caller ticks every second).
pub struct Progress {
    shared: Arc<Shared>,
    metric: Metric,
    last_completed: u64,
    last_bytes: u64,
    last_at: Instant,
    pub timeline: Vec<TimelinePoint>,
}

impl Progress {
    pub fn new(shared: Arc<Shared>, metric: Metric) -> Self {
        Self {
            shared,
            metric,
            last_completed: 0,
            last_bytes: 0,
            last_at: Instant::now(),
            timeline: Vec::new(),
        }
    }

    /// The metric whose completions this progress counts.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    pub fn tick(&mut self) {
        let now = Instant::now();
        let (count, bytes) = self.shared.counters(self.metric);
        let completed = count.load(Ordering::Relaxed);
        let bytes = bytes.load(Ordering::Relaxed);
        let interval_s = now
            .duration_since(self.last_at)
            .as_secs_f64()
            .max(f64::MIN_POSITIVE);
        let msgs_per_s = completed.saturating_sub(self.last_completed) as f64 / interval_s;
        let mb_per_s = bytes.saturating_sub(self.last_bytes) as f64 / interval_s / 1e6;
        self.last_completed = completed;
        self.last_bytes = bytes;
        self.last_at = now;
        let (p99_ms, max_ms) = {
            let mut measured = self.shared.measured(self.metric);
            let p99_ms = (!measured.histogram.is_empty())
                .then(|| measured.histogram.value_at_quantile(0.99) as f64 / 1000.0);
            let max_us = std::mem::take(&mut measured.interval_max_us);
            (p99_ms, (max_us > 0).then_some(max_us as f64 / 1000.0))
        };
        let t_s = now
            .saturating_duration_since(self.shared.start())
            .as_secs_f64();
        let phase = if now < self.shared.measure_from() {
            " (warm-up)"
        } else {
            ""
        };
        let sent = self.shared.sent.load(Ordering::Relaxed);
        let in_flight = if sent > 0 && self.metric == Metric::Produce {
            format!("  in flight {}", sent.saturating_sub(completed))
        } else {
            String::new()
        };
        let max = max_ms.map_or_else(String::new, |max| format!("  max this s {max:.2} ms"));
        eprintln!(
            "[{t_s:6.1}s] {:>10} msgs/s {:>8.1} MB/s  p99 {}{max}{in_flight}  errors {}{phase}",
            group_thousands(msgs_per_s),
            mb_per_s,
            p99_ms.map_or_else(|| "-".to_owned(), |p99| format!("{p99:.2} ms")),
            self.shared.errors.load(Ordering::Relaxed),
        );
        self.timeline.push(TimelinePoint {
            t_s,
            msgs_per_s,
            MB_per_s: mb_per_s,
            p99_ms,
            max_ms,
        });
    }
}

/// 1234567.8 -> "1,234,568".
pub fn group_thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_messages_are_counted_but_not_measured() {
        let shared = Shared::new(Duration::from_secs(3600));
        let start = shared.start();
        let mut recorder = LocalRecorder::new(Arc::clone(&shared), Metric::Produce);
        recorder.record(start, start + Duration::from_millis(2), 100);
        recorder.record(
            start + Duration::from_secs(3601),
            start + Duration::from_secs(3601) + Duration::from_micros(1500),
            100,
        );
        recorder.flush();
        assert_eq!(shared.completed.load(Ordering::Relaxed), 2);
        let measured = shared.measured(Metric::Produce);
        assert_eq!(measured.messages, 1);
        let percentiles = Percentiles::of(&measured.histogram).expect("one value");
        assert!((percentiles.p50 - 1.5).abs() < 0.01, "{percentiles:?}");
    }

    #[test]
    fn a_periodic_merge_never_waits_for_the_lock() {
        let shared = Shared::new(Duration::ZERO);
        let start = shared.start();
        let mut recorder = LocalRecorder::new(Arc::clone(&shared), Metric::Produce);
        recorder.record(start, start + Duration::from_millis(1), 10);
        {
            let _held = shared.measured(Metric::Produce);
            // Would deadlock if it waited (same thread).
            recorder.try_flush();
        }
        // The counters moved on; the histogram waits for the next merge.
        assert_eq!(shared.completed.load(Ordering::Relaxed), 1);
        assert_eq!(shared.measured(Metric::Produce).messages, 0);
        recorder.record(start, start + Duration::from_millis(3), 10);
        recorder.try_flush();
        let measured = shared.measured(Metric::Produce);
        assert_eq!(measured.messages, 2);
        assert_eq!(measured.histogram.len(), 2);
        assert_eq!(measured.payload_bytes, 20);
    }

    #[test]
    fn each_progress_tick_takes_the_worst_latency_since_the_last_one() {
        // Warm-up for an hour: the worst latency per second counts warm-up messages too.
        let shared = Shared::new(Duration::from_secs(3600));
        let start = shared.start();
        let mut recorder = LocalRecorder::new(Arc::clone(&shared), Metric::Produce);
        let mut progress = Progress::new(Arc::clone(&shared), Metric::Produce);
        recorder.record(start, start + Duration::from_micros(700), 1);
        recorder.record(start, start + Duration::from_millis(12), 1);
        recorder.record(start, start + Duration::from_micros(900), 1);
        recorder.flush();
        progress.tick();
        recorder.record(start, start + Duration::from_micros(2500), 1);
        recorder.flush();
        progress.tick();
        progress.tick();
        let worst: Vec<Option<f64>> = progress.timeline.iter().map(|point| point.max_ms).collect();
        assert_eq!(worst, [Some(12.0), Some(2.5), None]);
        assert_eq!(
            shared.measured(Metric::Produce).messages,
            0,
            "all in the warm-up"
        );
    }

    #[test]
    fn completions_reach_the_counters_between_merges() {
        let shared = Shared::new(Duration::ZERO);
        let start = shared.start();
        let mut recorder = LocalRecorder::new(Arc::clone(&shared), Metric::Produce);
        for _ in 0..COUNT_EVERY {
            recorder.record(start, start + Duration::from_micros(200), 1);
        }
        assert_eq!(shared.completed.load(Ordering::Relaxed), COUNT_EVERY);
        assert_eq!(shared.completed_bytes.load(Ordering::Relaxed), COUNT_EVERY);
        assert_eq!(shared.measured(Metric::Produce).messages, 0);
    }

    #[test]
    fn thousands() {
        assert_eq!(group_thousands(1_234_567.8), "1,234,568");
        assert_eq!(group_thousands(999.0), "999");
        assert_eq!(group_thousands(0.0), "0");
    }
}
