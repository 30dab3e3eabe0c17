//! Errors of `vaart-bench`.

use std::io;
use std::path::PathBuf;

/// Everything that can stop a benchmark run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// A file-system operation failed; `op` names it, `path` is what it touched.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An O_DIRECT write wrote fewer bytes than asked (the device or file system refused a
    /// full aligned write).
    #[error(
        "short write to {path} at byte {position_bytes}: {written_bytes} of {requested_bytes}"
    )]
    ShortWrite {
        path: PathBuf,
        position_bytes: u64,
        written_bytes: usize,
        requested_bytes: usize,
    },
    /// The glommio executor could not be built or started.
    #[error("starting the glommio executor: {0}")]
    Executor(#[source] io::Error),
    /// Opening, flushing or closing a partition log failed.
    #[error("engine: {0}")]
    Log(#[from] vaart_engine::LogError),
    /// The engine refused an append (the bench builds only valid batches, so this is a bug).
    #[error("engine append: {0}")]
    Append(#[from] vaart_engine::AppendError),
    /// The engine's batch validation refused a batch the bench built.
    #[error("batch validation: {0}")]
    Batch(#[from] vaart_engine::BatchError),
    /// Writing the JSON report failed.
    #[error("writing JSON report {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A command-line value is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// A Kafka client call failed (connect, metadata, admin, produce, fetch).
    #[error("kafka client: {0}")]
    Client(#[from] vaart_client::ClientError),
    /// A load-generator thread panicked or could not be joined.
    #[error("load thread {thread}: {reason}")]
    Worker { thread: usize, reason: &'static str },
    /// The broker refused or lost records during a run.
    #[error("{count} records failed; first: {first}")]
    Delivery { count: u64, first: String },
    /// A results folder held no report to build RESULTS.md from.
    #[error("no load reports (*.json with a \"kind\") in {0}")]
    NoResults(PathBuf),
    /// Drawing the plot failed.
    #[error("drawing {path}: {reason}")]
    Plot { path: PathBuf, reason: String },
}

/// Builds a closure mapping an `io::Error`-convertible error to [`BenchError::Io`], for
/// `map_err` on glommio and std calls.
pub fn io_error<E: Into<io::Error>>(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(E) -> BenchError {
    let path = path.into();
    move |source| BenchError::Io {
        op,
        path,
        source: source.into(),
    }
}
