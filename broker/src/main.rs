//! The `vaart` binary.
//!
//! # Layout
//! - `main`: parses the command line (clap subcommands; `start` runs a broker), sets up
//!   logging to stderr, and hands over to [`vaart_broker::server::run`].
//! - The tools that talk to a running broker (`topics`, `console-producer`, ...) live in
//!   [`vaart_broker::cli`]; [`Command`] names them.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing::{error, warn};
use vaart_broker::cli;
use vaart_broker::config::{BrokerConfig, ConfigInputs, LogFormat};

#[global_allocator]
static ALLOCATOR: vaart_broker::alloc_guard::GuardedAlloc = vaart_broker::alloc_guard::GuardedAlloc;

/// Vaart: a Kafka-compatible, thread-per-core streaming broker.
#[derive(Debug, Parser)]
#[command(name = "vaart", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker.
    Start(StartArgs),
    /// Create, list, describe, alter and delete topics (like kafka-topics).
    Topics(cli::topics::TopicsArgs),
    /// Describe and change topic and broker configs (like kafka-configs).
    Configs(cli::configs::ConfigsArgs),
    /// Produce one record per line of stdin (like kafka-console-producer).
    ConsoleProducer(cli::console_producer::ConsoleProducerArgs),
    /// Print records to stdout (like kafka-console-consumer).
    ConsoleConsumer(cli::console_consumer::ConsoleConsumerArgs),
    /// List, describe, delete consumer groups and reset their offsets (like kafka-consumer-groups).
    ConsumerGroups(cli::consumer_groups::ConsumerGroupsArgs),
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Settings keep Kafka's names (num.partitions, log.retention.ms, ...). Layers, later wins: \
built-in defaults < --config FILE < VAART_* environment (VAART_NUM_PARTITIONS=3) < --set NAME=VALUE < \
the dedicated flags. Log level: the log.level setting (default info), overridden by RUST_LOG or \
VAART_LOG; log format: log.format (text or json) or --log-format."
)]
struct StartArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE", env = "VAART_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (setting `listen`), e.g. 127.0.0.1:9092.
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Data directory (setting `data.dir`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// This broker's node id (setting `node.id`).
    #[arg(long, value_name = "N")]
    node_id: Option<i32>,
    /// Number of shards (pinned executors); default: number of CPUs.
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// Any setting by its Kafka name; repeatable.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
    /// Log format on stderr (overrides the `log.format` setting, default text).
    #[arg(long, value_enum, env = "VAART_LOG_FORMAT")]
    log_format: Option<LogFormatArg>,
}

/// Logging for `vaart start`: the filter is `VAART_LOG` or `RUST_LOG` when set, else the
/// `log.level` setting; the format is `--log-format`/`VAART_LOG_FORMAT`, else `log.format`.
fn init_logging(level: &str, format: LogFormat) {
    let filter = std::env::var("VAART_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| level.to_string());
    let (filter, bad_filter) = match tracing_subscriber::EnvFilter::try_new(&filter) {
        Ok(filter) => (filter, None),
        Err(error) => (
            tracing_subscriber::EnvFilter::new("info"),
            Some(format!(
                "log filter {filter:?} is invalid ({error}); logging at info"
            )),
        ),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // A closed stderr (the supervisor went away) must not turn log lines into panics.
        .log_internal_errors(false)
        .with_thread_names(true);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    if let Some(message) = bad_filter {
        warn!("{message}");
    }
}

/// A panic is a broker bug. A shard that died would leave the process half alive (its
/// partitions unreachable, shutdown waiting for it forever), so any panic ends the process.
fn exit_on_panic() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        error!("fatal: a broker thread panicked ({info}); exiting");
        std::process::exit(101);
    }));
}

fn start(args: StartArgs) -> ExitCode {
    exit_on_panic();
    let mut dedicated: Vec<(&'static str, String)> = Vec::new();
    if let Some(listen) = args.listen {
        dedicated.push(("listen", listen));
    }
    if let Some(dir) = args.data_dir {
        dedicated.push(("data.dir", dir.display().to_string()));
    }
    if let Some(node_id) = args.node_id {
        dedicated.push(("node.id", node_id.to_string()));
    }
    if let Some(shards) = args.shards {
        dedicated.push(("shards", shards.to_string()));
    }
    let inputs = ConfigInputs {
        file: args.config,
        env: std::env::vars().collect(),
        set_flags: args.set,
        dedicated_flags: dedicated,
    };
    // The configuration names the log level and format, so it is read before logging starts;
    // its warnings are logged right after, and an error goes to stderr as one line.
    let config = match BrokerConfig::load(&inputs) {
        Ok((config, warnings)) => {
            let format = match args.log_format {
                Some(LogFormatArg::Text) => LogFormat::Text,
                Some(LogFormatArg::Json) => LogFormat::Json,
                None => config.log_format,
            };
            init_logging(&config.log_level, format);
            for warning in warnings {
                warn!("{warning}");
            }
            config
        }
        Err(err) => {
            init_logging("info", LogFormat::Text);
            error!("configuration error: {err}");
            return ExitCode::from(2);
        }
    };
    match vaart_broker::server::run(config, inputs) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!("{err}");
            ExitCode::FAILURE
        }
    }
}

/// The tools print their results on stdout and one line per error on stderr; client logs show
/// only when asked for with RUST_LOG or VAART_LOG.
fn with_tool_logging(tool: impl FnOnce() -> ExitCode) -> ExitCode {
    let filter = std::env::var("VAART_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok());
    if let Some(filter) = filter {
        if let Ok(filter) = tracing_subscriber::EnvFilter::try_new(&filter) {
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .log_internal_errors(false)
                .init();
        }
    }
    tool()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Start(args) => start(args),
        Command::Topics(args) => with_tool_logging(|| cli::topics::run(args)),
        Command::Configs(args) => with_tool_logging(|| cli::configs::run(args)),
        Command::ConsoleProducer(args) => with_tool_logging(|| cli::console_producer::run(args)),
        Command::ConsoleConsumer(args) => with_tool_logging(|| cli::console_consumer::run(args)),
        Command::ConsumerGroups(args) => with_tool_logging(|| cli::consumer_groups::run(args)),
    }
}
