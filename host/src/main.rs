//! The `nmflow` command: parse, dispatch, map errors to exit codes (0 ok, 1 failure, 2 usage).

use std::process::ExitCode;

use clap::Parser;
use nmflow_host::cli::{Cli, run};
use nmflow_host::error::{MetaError, UsageError, ZooError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let usage = e.downcast_ref::<UsageError>().is_some()
                || matches!(e.downcast_ref::<ZooError>(), Some(ZooError::Usage(_)))
                || matches!(e.downcast_ref::<MetaError>(), Some(MetaError::Usage(_)));
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}
