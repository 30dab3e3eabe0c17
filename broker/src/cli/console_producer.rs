//! `vaart console-producer`: one record per line of stdin, like Kafka's
//! `kafka-console-producer` (same flags and `--property` names).
//!
//! Stdin is read on a plain thread (a blocking read must not stall the executor that runs
//! the producer's batching and network tasks) and handed over a bounded channel, so input of
//! any size streams with bounded memory; at most [`DELIVERIES_PENDING_MAX`] records wait for
//! their acknowledgement at a time. Every failed record is reported on stderr with its line
//! number; at EOF the tool flushes, waits for every delivery, and exits 1 if any failed.
//! Ctrl-C or SIGTERM end the input like EOF (a second Ctrl-C exits at once).

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use vaart_client::{
    Acks, Compression, DeliveryError, DeliveryFuture, Producer, ProducerConfig, ProducerRecord,
};

use super::{run_tool, CliError, ConnectArgs};

const EXAMPLES: &str = "\
Examples:
  vaart console-producer --bootstrap-server 127.0.0.1:9092 --topic lecture
  printf 'k1\\tv1\\nk2\\tv2\\n' | vaart console-producer --topic lecture --property parse.key=true
  vaart console-producer --topic lecture --property parse.key=true --property key.separator=:
  vaart console-producer --topic lecture --request-required-acks 1 --compression-codec zstd < events.txt
  vaart console-producer --topic lecture --sync --producer-property linger.ms=0

Properties (--property): parse.key (default false), key.separator (default TAB),
ignore.error (default false: a line without the separator stops the tool), null.marker.
Producer properties (--producer-property): acks, linger.ms, batch.size, compression.type,
request.timeout.ms, buffer.memory, max.request.size, retries, retry.backoff.ms.";

/// Lines read ahead of the producer (the bounded hand-over from the stdin thread).
const LINES_QUEUED_MAX: usize = 1024;
/// Records sent but not yet known delivered or failed; beyond this the tool waits for the
/// oldest before reading more.
pub const DELIVERIES_PENDING_MAX: usize = 8192;
/// Read buffer of the stdin thread.
const STDIN_BUFFER_BYTES: usize = 64 * 1024;
/// Kafka's console producer defaults: `--timeout` (linger.ms) 1000, `retries` 3.
const DEFAULT_LINGER_MS: u64 = 1000;
const DEFAULT_RETRIES: u32 = 3;

/// Arguments of `vaart console-producer`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct ConsoleProducerArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The topic to produce to.
    #[arg(long, value_name = "TOPIC")]
    pub topic: String,
    /// Line-reader properties: parse.key, key.separator, ignore.error, null.marker; repeatable.
    #[arg(long = "property", value_name = "NAME=VALUE")]
    pub property: Vec<String>,
    /// Acknowledgements the producer waits for: 0, 1, all or -1 [default: -1].
    #[arg(
        long = "request-required-acks",
        visible_alias = "acks",
        value_name = "ACKS"
    )]
    pub acks: Option<String>,
    /// Compression codec: none, gzip, snappy, lz4 or zstd (gzip when given without a value)
    /// [default: none].
    #[arg(
        long = "compression-codec",
        visible_alias = "compression",
        value_name = "CODEC",
        num_args = 0..=1,
        default_missing_value = "gzip"
    )]
    pub compression: Option<String>,
    /// Send each record synchronously: wait for its acknowledgement before the next.
    #[arg(long)]
    pub sync: bool,
    /// How long a batch waits for more records (linger.ms) [default: 1000].
    #[arg(long = "timeout", value_name = "MS")]
    pub linger_ms: Option<u64>,
    /// Batch size in bytes (batch.size) [default: 16384].
    #[arg(long = "batch-size", value_name = "BYTES")]
    pub batch_size: Option<usize>,
    /// A producer setting by its Kafka name (linger.ms, batch.size, ...); repeatable.
    #[arg(long = "producer-property", value_name = "NAME=VALUE")]
    pub producer_property: Vec<String>,
}

/// How lines become records (Kafka's `LineMessageReader` properties).
#[derive(Debug, Clone)]
struct LineFormat {
    parse_key: bool,
    key_separator: Vec<u8>,
    ignore_error: bool,
    null_marker: Option<Vec<u8>>,
}

impl LineFormat {
    fn from_properties(properties: &[String]) -> Result<Self, CliError> {
        let mut format = LineFormat {
            parse_key: false,
            key_separator: b"\t".to_vec(),
            ignore_error: false,
            null_marker: None,
        };
        for property in properties {
            let (name, value) = split_property(property, "--property")?;
            let flag = value.trim().eq_ignore_ascii_case("true");
            match name {
                "parse.key" => format.parse_key = flag,
                "key.separator" => format.key_separator = value.as_bytes().to_vec(),
                "ignore.error" => format.ignore_error = flag,
                "null.marker" => format.null_marker = Some(value.as_bytes().to_vec()),
                "parse.headers" if flag => {
                    return Err(CliError::Usage(
                        "--property parse.headers=true is not supported yet".to_string(),
                    ))
                }
                other => eprintln!("WARNING: ignoring unknown property {other}"),
            }
        }
        if format.key_separator.is_empty() {
            return Err(CliError::Usage(
                "key.separator must not be empty".to_string(),
            ));
        }
        Ok(format)
    }

    /// The record for one line (without its line end), or Kafka's error for a line without
    /// the key separator.
    fn record(&self, number: u64, line: Vec<u8>) -> Result<ProducerRecord, CliError> {
        let mut record = ProducerRecord::default();
        if !self.parse_key {
            record.value = self.nullable(line);
            return Ok(record);
        }
        match find(&line, &self.key_separator) {
            Some(at) => {
                let value = line
                    .get(at + self.key_separator.len()..)
                    .unwrap_or_default()
                    .to_vec();
                let mut key = line;
                key.truncate(at);
                record.key = self.nullable(key);
                record.value = self.nullable(value);
                Ok(record)
            }
            None if self.ignore_error => {
                record.value = self.nullable(line);
                Ok(record)
            }
            None => Err(CliError::Usage(format!(
                "No key separator found on line number {number}: '{}'",
                String::from_utf8_lossy(&line)
            ))),
        }
    }

    fn nullable(&self, bytes: Vec<u8>) -> Option<Bytes> {
        match &self.null_marker {
            Some(marker) if *marker == bytes => None,
            _ => Some(Bytes::from(bytes)),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn split_property<'a>(text: &'a str, flag: &str) -> Result<(&'a str, &'a str), CliError> {
    text.split_once('=')
        .map(|(name, value)| (name.trim(), value))
        .filter(|(name, _)| !name.is_empty())
        .ok_or_else(|| CliError::Usage(format!("{flag} expects NAME=VALUE, got {text:?}")))
}

fn parse_number<T: FromStr>(name: &str, value: &str) -> Result<T, CliError> {
    value
        .trim()
        .parse()
        .map_err(|_| CliError::Usage(format!("invalid value {value:?} for {name}")))
}

/// Producer settings: Kafka's console-producer defaults, then `--producer-property`, then
/// the dedicated flags when given (Kafka's precedence).
fn producer_config(args: &ConsoleProducerArgs) -> Result<ProducerConfig, CliError> {
    let mut config = ProducerConfig {
        linger_ms: DEFAULT_LINGER_MS,
        retries: DEFAULT_RETRIES,
        ..ProducerConfig::default()
    };
    for property in &args.producer_property {
        let (name, value) = split_property(property, "--producer-property")?;
        match name {
            "acks" => config.acks = parse_acks(value)?,
            "linger.ms" => config.linger_ms = parse_number(name, value)?,
            "batch.size" => config.batch_size_bytes = parse_number(name, value)?,
            "compression.type" => config.compression = parse_compression(value)?,
            "request.timeout.ms" => config.request_timeout_ms = parse_number(name, value)?,
            "buffer.memory" => config.buffer_memory_bytes = parse_number(name, value)?,
            "max.request.size" => config.max_request_bytes = parse_number(name, value)?,
            "retries" => config.retries = parse_number(name, value)?,
            "retry.backoff.ms" => config.retry_backoff_ms = parse_number(name, value)?,
            other => eprintln!("WARNING: ignoring unsupported producer property {other}"),
        }
    }
    if let Some(acks) = &args.acks {
        config.acks = parse_acks(acks)?;
    }
    if let Some(codec) = &args.compression {
        config.compression = parse_compression(codec)?;
    }
    if let Some(linger_ms) = args.linger_ms {
        config.linger_ms = linger_ms;
    }
    if let Some(batch_size) = args.batch_size {
        config.batch_size_bytes = batch_size;
    }
    if args.sync {
        // Each record is its own request: nothing to wait for.
        config.linger_ms = 0;
    }
    Ok(config)
}

fn parse_acks(value: &str) -> Result<Acks, CliError> {
    value
        .trim()
        .parse()
        .map_err(|error: vaart_client::producer::ParseOptionError| {
            CliError::Usage(error.to_string())
        })
}

fn parse_compression(value: &str) -> Result<Compression, CliError> {
    value
        .trim()
        .parse()
        .map_err(|error: vaart_client::producer::ParseOptionError| {
            CliError::Usage(error.to_string())
        })
}

/// What the stdin thread hands over.
enum Input {
    /// One line without its line end (`\n` or `\r\n`), numbered from 1.
    Line { number: u64, bytes: Vec<u8> },
    /// A line longer than any record may be; only its length was kept.
    TooLong { number: u64, length_bytes: usize },
    /// Reading stdin failed.
    Failed(io::Error),
    /// The end of stdin (sent explicitly: the signal watcher holds a sender too, so the
    /// channel itself never closes).
    End,
    /// Ctrl-C or SIGTERM: end the input here, as at EOF.
    Interrupted,
}

/// Makes Ctrl-C and SIGTERM end the input like EOF, so what was read is still flushed and
/// awaited (Kafka's console producer closes its producer in a shutdown hook); a second Ctrl-C
/// exits at once. Must run before any other thread starts: the signals are blocked in this
/// thread and every thread spawned after it, and one thread waits for them.
fn watch_signals(sender: flume::Sender<Input>) -> io::Result<()> {
    let (signal_end, tool_end) = UnixStream::pair()?;
    crate::signals::block_shutdown_signals()?;
    crate::signals::spawn_signal_thread(Arc::new(vec![OwnedFd::from(signal_end)]))?;
    std::thread::Builder::new()
        .name("vaart-interrupts".to_string())
        .spawn(move || {
            let mut tool_end = tool_end;
            let mut byte = [0u8; 1];
            loop {
                match tool_end.read(&mut byte) {
                    // SIGHUP asks for a reload: nothing to reload here.
                    Ok(1) if byte[0] == crate::signals::RELOAD_BYTE => continue,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    _ => break,
                }
            }
            let _ = sender.send(Input::Interrupted);
        })?;
    Ok(())
}

/// Reads `input` line by line into `sender` until EOF (then sends [`Input::End`]) or the
/// receiver goes away. Lines longer than `line_bytes_max` are not kept whole.
fn read_lines(input: impl Read, sender: flume::Sender<Input>, line_bytes_max: usize) {
    let mut reader = BufReader::with_capacity(STDIN_BUFFER_BYTES, input);
    let mut number = 0u64;
    loop {
        let mut line = Vec::new();
        let item = match read_line_capped(&mut reader, &mut line, line_bytes_max) {
            Ok(None) => {
                let _ = sender.send(Input::End);
                return;
            }
            Ok(Some(length_bytes)) => {
                number += 1;
                if length_bytes > line_bytes_max {
                    Input::TooLong {
                        number,
                        length_bytes,
                    }
                } else {
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    Input::Line {
                        number,
                        bytes: line,
                    }
                }
            }
            Err(error) => Input::Failed(error),
        };
        let failed = matches!(item, Input::Failed(_));
        if sender.send(item).is_err() || failed {
            return;
        }
    }
}

/// Reads one line (without `\n`) keeping at most `keep_bytes_max + 1` bytes of it; returns
/// its full length, or `None` at EOF before any byte.
fn read_line_capped(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    keep_bytes_max: usize,
) -> io::Result<Option<usize>> {
    let mut length_bytes = 0usize;
    let mut started = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if available.is_empty() {
            return Ok(started.then_some(length_bytes));
        }
        started = true;
        let (chunk, consumed, finished) = match available.iter().position(|&byte| byte == b'\n') {
            Some(at) => (available.get(..at).unwrap_or_default(), at + 1, true),
            None => (available, available.len(), false),
        };
        let room = (keep_bytes_max + 1).saturating_sub(line.len());
        line.extend_from_slice(chunk.get(..chunk.len().min(room)).unwrap_or_default());
        length_bytes = length_bytes.saturating_add(chunk.len());
        reader.consume(consumed);
        if finished {
            return Ok(Some(length_bytes));
        }
    }
}

/// Counts and reports delivery outcomes.
struct Outcomes {
    topic: String,
    sent: u64,
    failed: u64,
}

impl Outcomes {
    fn fail(&mut self, number: u64, error: &dyn std::fmt::Display) {
        self.failed += 1;
        eprintln!(
            "Error when sending line {number} to topic {}: {error}",
            self.topic
        );
    }

    fn record(&mut self, number: u64, result: Result<(), DeliveryError>) {
        if let Err(error) = result {
            self.fail(number, &error);
        }
    }
}

/// Runs the tool.
pub fn run(args: ConsoleProducerArgs) -> ExitCode {
    let (sender, receiver) = flume::bounded(LINES_QUEUED_MAX);
    let signals = watch_signals(sender.clone());
    run_tool(move || async move {
        signals.map_err(|source| CliError::Io {
            what: "watching for Ctrl-C",
            source,
        })?;
        let format = LineFormat::from_properties(&args.property)?;
        let config = producer_config(&args)?;
        let line_bytes_max = config.max_request_bytes;
        let client = args.connect.connect().await?;
        // An unknown topic is one clear error before any input is read.
        client
            .topic(&args.topic)
            .await
            .map_err(|error| match error {
                vaart_client::ClientError::UnknownTopic { topic } => CliError::UnknownTopic(topic),
                other => CliError::Client(other),
            })?;
        let producer = Producer::new(client, config)?;
        std::thread::Builder::new()
            .name("vaart-stdin".to_string())
            .spawn(move || read_lines(io::stdin().lock(), sender, line_bytes_max))
            .map_err(|source| CliError::Io {
                what: "starting the stdin reader thread",
                source,
            })?;
        let mut outcomes = Outcomes {
            topic: args.topic.clone(),
            sent: 0,
            failed: 0,
        };
        let mut pending: VecDeque<(u64, DeliveryFuture)> = VecDeque::new();
        let mut fatal = None;
        while let Ok(input) = receiver.recv_async().await {
            let (number, bytes) = match input {
                Input::Line { number, bytes } => (number, bytes),
                Input::TooLong {
                    number,
                    length_bytes,
                } => {
                    outcomes.sent += 1;
                    outcomes.fail(
                        number,
                        &format!(
                            "the line is {length_bytes} bytes, more than max.request.size \
                             ({line_bytes_max} bytes)"
                        ),
                    );
                    continue;
                }
                Input::End | Input::Interrupted => break,
                Input::Failed(source) => {
                    fatal = Some(CliError::Io {
                        what: "reading stdin",
                        source,
                    });
                    break;
                }
            };
            let record = match format.record(number, bytes) {
                Ok(record) => record,
                Err(error) => {
                    fatal = Some(error);
                    break;
                }
            };
            outcomes.sent += 1;
            match producer.send(&args.topic, record).await {
                Ok(delivery) if args.sync => {
                    outcomes.record(number, delivery.await.map(|_| ()));
                }
                Ok(delivery) => pending.push_back((number, delivery)),
                Err(error @ vaart_client::ClientError::RecordTooLarge { .. }) => {
                    outcomes.fail(number, &error);
                }
                Err(error) => {
                    fatal = Some(CliError::Client(error));
                    break;
                }
            }
            // Report what is already known, and keep the pending list bounded.
            while let Some(result) = pending
                .front()
                .and_then(|(_, delivery)| delivery.try_result())
            {
                if let Some((number, _)) = pending.pop_front() {
                    outcomes.record(number, result.map(|_| ()));
                }
            }
            if pending.len() >= DELIVERIES_PENDING_MAX {
                if let Some((number, delivery)) = pending.pop_front() {
                    outcomes.record(number, delivery.await.map(|_| ()));
                }
            }
        }
        drop(receiver);
        producer.flush().await;
        for (number, delivery) in pending.drain(..) {
            outcomes.record(number, delivery.await.map(|_| ()));
        }
        producer.close().await;
        producer.client().close();
        if let Some(error) = fatal {
            return Err(error);
        }
        if outcomes.failed > 0 {
            return Err(CliError::Partial(format!(
                "{} of {} records were not delivered to topic {}",
                outcomes.failed, outcomes.sent, outcomes.topic
            )));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(properties: &[&str]) -> LineFormat {
        let properties: Vec<String> = properties.iter().map(|p| p.to_string()).collect();
        LineFormat::from_properties(&properties).expect("valid properties")
    }

    #[test]
    fn lines_split_into_key_and_value_like_kafka() {
        let keyed = format(&["parse.key=true", "key.separator=::"]);
        let record = keyed.record(1, b"k::v::w".to_vec()).expect("has a key");
        assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(record.value.as_deref(), Some(&b"v::w"[..]));
        let error = keyed
            .record(7, b"nokey".to_vec())
            .expect_err("no separator");
        assert!(error.to_string().contains("line number 7"), "{error}");
        let lenient = format(&["parse.key=true", "ignore.error=true", "null.marker=NULL"]);
        let record = lenient.record(1, b"nokey".to_vec()).expect("ignored");
        assert_eq!(
            (record.key, record.value.as_deref()),
            (None, Some(&b"nokey"[..]))
        );
        let record = lenient.record(2, b"NULL\tv".to_vec()).expect("keyed");
        assert_eq!(record.key, None);
        let plain = format(&[]);
        let record = plain.record(1, b"a\tb".to_vec()).expect("plain");
        assert_eq!(
            (record.key, record.value.as_deref()),
            (None, Some(&b"a\tb"[..]))
        );
    }

    #[test]
    fn long_lines_are_cut_but_measured() {
        let mut input = io::Cursor::new(b"short\r\n0123456789abc\nlast".to_vec());
        let mut line = Vec::new();
        assert_eq!(
            read_line_capped(&mut input, &mut line, 8).ok(),
            Some(Some(6))
        );
        assert_eq!(line, b"short\r");
        line.clear();
        assert_eq!(
            read_line_capped(&mut input, &mut line, 8).ok(),
            Some(Some(13))
        );
        assert_eq!(line.len(), 9);
        line.clear();
        assert_eq!(
            read_line_capped(&mut input, &mut line, 8).ok(),
            Some(Some(4))
        );
        line.clear();
        assert_eq!(read_line_capped(&mut input, &mut line, 8).ok(), Some(None));
    }
}
