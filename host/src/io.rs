//! File helpers: atomic writes, gzip, SHA-256, output-folder locks and the comparison of settings
//! files.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

/// The temporary name a file is written under before it is renamed into place: `NAME.PID.tmp`, so
/// that processes writing the same file (the tasks of a sharded zoo job) never share one.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Whether a temporary file name (`NAME.PID.tmp`, or a bare `NAME.tmp` of earlier builds) was
/// left by a process that no longer runs, so it can be removed.
pub fn stale_temp(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".tmp") else {
        return false;
    };
    match stem
        .rsplit_once('.')
        .and_then(|(_, pid)| pid.parse::<u32>().ok())
    {
        Some(pid) => !Path::new(&format!("/proc/{pid}")).exists(),
        None => true,
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, synced, then renamed.
///
/// A crash leaves either the old file or the new one, never a torn file.
///
/// # Errors
/// Any I/O error, from creating the folder to the rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let tmp = temp_path(path);
    {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(path)
}

/// Syncs the folder holding `path`, so that a rename into it survives a power loss.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Folders cannot be opened for syncing everywhere; where they cannot, the rename stands.
    match fs::File::open(dir) {
        Ok(f) => f.sync_all().or(Ok(())),
        Err(_) => Ok(()),
    }
}

/// The first key in which the JSON object `existing` differs from `wanted`, as
/// `key: existing X, requested Y` (for messages about an output made with other settings).
pub fn first_difference(existing: &serde_json::Value, wanted: &serde_json::Value) -> String {
    if let (Some(o), Some(n)) = (existing.as_object(), wanted.as_object()) {
        for (k, v) in n {
            if o.get(k) != Some(v) {
                let was = o.get(k).map_or("absent".to_string(), ToString::to_string);
                return format!("{k}: existing {was}, requested {v}");
            }
        }
    }
    "settings differ".into()
}

/// A lock on an output folder, held while a job writes into it (`.nmflow.lock` with the process
/// id); released when dropped. A lock left by a process that no longer runs (killed) is taken
/// over. The tasks of a sharded zoo job each lock their part (`.nmflow-shard-I-of-N.lock`).
#[derive(Debug)]
pub struct DirLock {
    path: PathBuf,
}

/// Whether a file name is one of nmflow's locks.
pub fn is_lock(name: &str) -> bool {
    name.starts_with(".nmflow") && name.ends_with(".lock")
}

/// Name of the lock file in a locked folder.
pub const LOCK_FILE: &str = ".nmflow.lock";

impl DirLock {
    /// Locks `dir` (creating it), or says which process holds it.
    ///
    /// # Errors
    /// `AlreadyExists` naming the process that holds the lock; other I/O errors.
    pub fn acquire(dir: &Path) -> std::io::Result<Self> {
        Self::acquire_named(dir, LOCK_FILE)
    }

    /// [`Self::acquire`] with another lock file name (one part of a folder).
    ///
    /// # Errors
    /// As [`Self::acquire`].
    pub fn acquire_named(dir: &Path, name: &str) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        let path = dir.join(name);
        for _ in 0..2 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    write!(f, "{}", std::process::id())?;
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = fs::read_to_string(&path).unwrap_or_default();
                    let pid = holder.trim().parse::<u32>().ok();
                    let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
                    if alive && pid != Some(std::process::id()) {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::AlreadyExists,
                            format!(
                                "{} is in use by process {} (another nmflow job writes into it); wait for it to finish or stop it",
                                dir.display(),
                                holder.trim()
                            ),
                        ));
                    }
                    // A stale lock (its process is gone): take it over.
                    fs::remove_file(&path)?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other(format!(
            "{}: could not take the lock {LOCK_FILE}",
            dir.display()
        )))
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Reads a whole file, decompressing it if it is gzip (by its magic bytes, not its name).
///
/// # Errors
/// I/O errors and corrupt gzip streams.
pub fn read_maybe_gz(path: &Path) -> std::io::Result<Vec<u8>> {
    let raw = fs::read(path)?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        GzDecoder::new(raw.as_slice()).read_to_end(&mut out)?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Compresses `bytes` with gzip (default level, no file name, zero mtime: the same input gives the
/// same output).
///
/// # Errors
/// Only if the in-memory writer fails, which it does not in practice.
pub fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::with_capacity(bytes.len() / 3), Compression::default());
    enc.write_all(bytes)?;
    enc.finish()
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_abc() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_locked_folder_names_its_holder_and_a_stale_lock_is_taken_over() {
        let dir = std::env::temp_dir().join(format!("nmflow-lock-{}", std::process::id()));
        let lock = DirLock::acquire(&dir).unwrap();
        assert!(dir.join(LOCK_FILE).is_file());
        drop(lock);
        assert!(!dir.join(LOCK_FILE).exists());
        // PID 1 always runs: the folder is in use.
        fs::write(dir.join(LOCK_FILE), "1").unwrap();
        let err = DirLock::acquire(&dir).unwrap_err();
        assert!(err.to_string().contains("in use by process 1"), "{err}");
        // A process id that cannot exist: a stale lock.
        fs::write(dir.join(LOCK_FILE), "4294967295").unwrap();
        drop(DirLock::acquire(&dir).unwrap());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn gzip_round_trip_and_atomic_write() {
        let dir = std::env::temp_dir().join(format!("nmflow-io-{}", std::process::id()));
        let path = dir.join("x.gz");
        let payload = b"hello hello hello".repeat(100);
        write_atomic(&path, &gzip(&payload).unwrap()).unwrap();
        assert!(!temp_path(&path).exists());
        assert_eq!(read_maybe_gz(&path).unwrap(), payload);
        let plain = dir.join("plain");
        write_atomic(&plain, b"raw").unwrap();
        assert_eq!(read_maybe_gz(&plain).unwrap(), b"raw");
        fs::remove_dir_all(dir).unwrap();
    }
}
