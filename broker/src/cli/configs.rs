//! `vaart configs`: placeholder, being written this session.

use std::process::ExitCode;

use super::{run_tool, CliError, ConnectArgs};

/// Arguments of `vaart configs`.
#[derive(Debug, clap::Args)]
pub struct ConfigsArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Runs the tool.
pub fn run(args: ConfigsArgs) -> ExitCode {
    run_tool(move || async move {
        let _client = args.connect.connect().await?;
        Err(CliError::Usage("not built yet".to_string()))
    })
}
