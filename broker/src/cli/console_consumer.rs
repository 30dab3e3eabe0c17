//! `vaart console-consumer`: placeholder, being written this session.

use std::process::ExitCode;

use super::{run_tool, CliError, ConnectArgs};

/// Arguments of `vaart console-consumer`.
#[derive(Debug, clap::Args)]
pub struct ConsoleConsumerArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Runs the tool.
pub fn run(args: ConsoleConsumerArgs) -> ExitCode {
    run_tool(move || async move {
        let _client = args.connect.connect().await?;
        Err(CliError::Usage("not built yet".to_string()))
    })
}
