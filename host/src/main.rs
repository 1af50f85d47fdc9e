//! The `nmflow` command: parse, dispatch, map errors to exit codes (0 ok, 1 failure, 2 usage).

use std::process::ExitCode;

use clap::Parser;
use nmflow_host::cli::{Cli, run};
use nmflow_host::error::{MetaError, UsageError, ZooError};

/// The error and its causes on one line, each cause once: a cause whose text the message already
/// holds (an I/O error that a typed error quotes) is not repeated, and the operating system's
/// error codes are left out.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let text = strip_os_code(&text);
        if !line.contains(text.as_str()) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line.replace('\n', " ")
}

/// `No such file or directory (os error 2)` → `No such file or directory`.
fn strip_os_code(text: &str) -> String {
    let mut out = text.to_string();
    while let Some(start) = out.find(" (os error ") {
        match out[start..].find(')') {
            Some(end) => out.replace_range(start..start + end + 1, ""),
            None => break,
        }
    }
    out
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            let usage = e.downcast_ref::<UsageError>().is_some()
                || matches!(e.downcast_ref::<ZooError>(), Some(ZooError::Usage(_)))
                || matches!(e.downcast_ref::<MetaError>(), Some(MetaError::Usage(_)));
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}
