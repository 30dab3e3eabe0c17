//! `vaart-bench`: Vaart's benchmark tool. Every figure it prints is measured next to the limit
//! of the machine that bounds it, in the same run.
//!
//! # Layout
//! - `load`: the load generator, `vaart-bench produce | consume | e2e`, on glommio with Vaart's
//!   own Kafka client (`vaart-client`), against any Kafka-compatible broker.
//! - `limits`: `vaart-bench limits`, the machine limits every load figure is compared with
//!   (O_DIRECT write and read bandwidth of the data disk, loopback TCP bandwidth).
//! - `results`: `vaart-bench report`, RESULTS.md and its SVG plot from a folder of JSON
//!   reports (what `bench/run` calls at the end).
//! - `disk`: `vaart-bench disk`, raw O_DIRECT write bandwidth against engine append throughput
//!   on the same disk, plus batch validation + CRC throughput.
//! - `machine`: the machine description (cores, kernel, the disk under a directory) in reports.
//! - `os`: CPU time and resident memory from the kernel (this process and the broker's).
//! - `report`: the `disk` command's table and JSON.
//! - `error`: [`error::BenchError`].

mod disk;
mod error;
mod limits;
mod load;
mod machine;
mod os;
mod report;
mod results;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "vaart-bench",
    version,
    about = "Vaart benchmarks, measured against the machine's limits"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Produce load: N producers over K connections, max or open-loop rate.
    Produce(load::produce::ProduceArgs),
    /// Consume load: catch-up from the earliest offset, or tail from the latest.
    Consume(load::consume::ConsumeArgs),
    /// End-to-end latency: producer timestamp to consumer receipt.
    E2e(load::e2e::E2eArgs),
    /// Machine limits: O_DIRECT disk write/read and loopback TCP bandwidth.
    Limits(limits::LimitsArgs),
    /// Build RESULTS.md and its plot from a folder of JSON reports.
    Report(results::ReportArgs),
    /// Raw O_DIRECT write bandwidth vs engine append throughput on one disk.
    Disk(disk::DiskArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Produce(args) => load::produce::run(args),
        Command::Consume(args) => load::consume::run(args),
        Command::E2e(args) => load::e2e::run(args),
        Command::Limits(args) => limits::run(args),
        Command::Report(args) => results::run(args),
        Command::Disk(args) => disk::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Each error's message already includes its cause.
            eprintln!("vaart-bench: {error}");
            ExitCode::FAILURE
        }
    }
}
