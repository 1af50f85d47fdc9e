//! File helpers: atomic writes, gzip, SHA-256.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

/// The temporary name a file is written under before it is renamed into place.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
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
    fs::rename(&tmp, path)
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
