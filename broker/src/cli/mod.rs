//! The `vaart` command-line tools that talk to a running broker, modelled on Kafka's own
//! (`kafka-topics`, `kafka-console-producer`, ...): same flags, same output formats, so scripts
//! written for Kafka keep working. The client side is `vaart-client` (no C library).
//!
//! # Layout
//! - this file: what every tool shares: [`ConnectArgs`] (`--bootstrap-server`), [`CliError`],
//!   and [`run_tool`], which runs a tool's body on a short-lived glommio executor and turns an
//!   error into one readable line on stderr and a non-zero exit.
//! - [`topics`]: `vaart topics` (kafka-topics).
//! - [`configs`]: `vaart configs` (kafka-configs).
//! - [`console_producer`]: `vaart console-producer` (kafka-console-producer).
//! - [`console_consumer`]: `vaart console-consumer` (kafka-console-consumer).
//! - [`consumer_groups`]: `vaart consumer-groups` (kafka-consumer-groups).

pub mod configs;
pub mod console_consumer;
pub mod console_producer;
pub mod consumer_groups;
pub mod topics;

use std::future::Future;
use std::process::ExitCode;

use glommio::{LocalExecutorBuilder, Placement};
use vaart_client::{Client, ClientConfig, ClientError};

/// Locked memory the tools' executor registers with io_uring: tools do little I/O, and a small
/// value keeps them working under the default 64 KiB-8 MiB RLIMIT_MEMLOCK of unprivileged users.
const TOOL_IO_MEMORY_BYTES: usize = 512 * 1024;

/// Exit code of a tool that failed (Kafka's tools exit 1 on errors too).
pub const EXIT_FAILURE: u8 = 1;

/// How to reach the cluster; every tool flattens this into its arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// The broker(s) to connect to: comma-separated HOST:PORT.
    #[arg(
        long = "bootstrap-server",
        value_name = "HOST:PORT",
        env = "VAART_BOOTSTRAP_SERVER",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap_server: String,
}

impl ConnectArgs {
    /// The client settings for these arguments.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig::new(&self.bootstrap_server)
    }

    /// Connects (bootstrap + first metadata request).
    pub async fn connect(&self) -> Result<Client, CliError> {
        Client::connect(self.client_config())
            .await
            .map_err(|source| CliError::Connect {
                bootstrap: self.bootstrap_server.clone(),
                source,
            })
    }
}

/// Everything a tool can fail with. Printed as one line (`Error: ...`, with its causes joined
/// by `: `), never as a panic or a debug dump.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The cluster could not be reached.
    #[error("cannot reach the broker at {bootstrap}: {source}")]
    Connect {
        bootstrap: String,
        #[source]
        source: ClientError,
    },
    /// A client call failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The arguments are valid for clap but not together (e.g. `--offset` without
    /// `--partition`), or a value has the wrong form.
    #[error("{0}")]
    Usage(String),
    /// The topic does not exist.
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    /// The group does not exist (Kafka's wording).
    #[error("Consumer group '{0}' does not exist.")]
    UnknownGroup(String),
    /// The cluster refuses the operation in its current state (Kafka's wording, e.g. resetting
    /// the offsets of a group that has members).
    #[error("{0}")]
    Refused(String),
    /// Reading input or writing output failed (other than a closed stdout).
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Some of the work failed; the details were already printed.
    #[error("{0}")]
    Partial(String),
    /// The broker refused the request; its own message (as Kafka's tools print it), or the
    /// error code when it sent none.
    #[error("{0}")]
    Broker(String),
    /// The tool's executor could not start or died.
    #[error("cannot start the client runtime: {0}")]
    Runtime(String),
}

/// The error and its causes, joined into one line.
pub fn one_line(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // thiserror's `transparent` and messages that already quote their cause repeat it.
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

/// Runs a tool's body on a short-lived glommio executor on its own thread, and maps the
/// outcome to an exit code: success 0, any error one `Error: ...` line on stderr and 1.
pub fn run_tool<F, Fut>(body: F) -> ExitCode
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), CliError>> + 'static,
{
    let outcome = LocalExecutorBuilder::new(Placement::Unbound)
        .name("vaart-cli")
        .io_memory(TOOL_IO_MEMORY_BYTES)
        .spawn(body)
        .map_err(|error| CliError::Runtime(error.to_string()))
        .and_then(|handle| {
            handle
                .join()
                .map_err(|_| CliError::Runtime("the tool's thread panicked".to_string()))
        })
        .and_then(|result| result);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {}", one_line(&error));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
