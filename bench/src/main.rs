//! `vaart-bench`: Vaart's benchmark tool. Every figure it prints is measured next to the limit
//! of the machine that bounds it, in the same run.
//!
//! # Layout
//! - `disk`: `vaart-bench disk`, raw O_DIRECT write bandwidth against engine append throughput
//!   on the same disk, plus batch validation + CRC throughput.
//! - `machine`: the machine description (cores, kernel, the disk under a directory) in reports.
//! - `report`: the printed table and the JSON file.
//! - `error`: [`error::BenchError`].
//!
//! Load-generator subcommands (`produce`, `consume`, `e2e`) come next, beside `disk`.

mod disk;
mod error;
mod machine;
mod report;

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
