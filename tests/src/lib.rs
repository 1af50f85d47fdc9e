//! Cross-crate tests of nmflow (host ↔ runtime): see `tests/`. This library holds their helpers.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The data folder (`$NMFLOW_DATA`, else the workspace's `data/`), fetched on first use.
///
/// # Panics
/// When the data cannot be fetched (tests need npm and apt-get).
pub fn data_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("NMFLOW_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data"));
        nmflow_host::data::fetch(&dir, &["mnist", "digits"], &mut |l| eprintln!("{l}"))
            .expect("fetching test data");
        dir
    })
    .clone()
}

/// A fresh temporary directory.
///
/// # Panics
/// When it cannot be created.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nmflow-xtest-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The fixtures folder.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}
