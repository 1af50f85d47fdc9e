//! The fixed 16-byte header: magic, version, flags, payload length, CRC-32 of the payload.
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 4 | magic `NMFL` |
//! | 4 | 2 | format version, u16 little-endian |
//! | 6 | 2 | flags (0; reserved) |
//! | 8 | 4 | payload length, u32 LE |
//! | 12 | 4 | CRC-32 of the payload, u32 LE |

use crate::crc::crc32;
use crate::error::FormatError;

/// The magic bytes.
pub const MAGIC: [u8; 4] = *b"NMFL";
/// The format version this code writes. Any change to the schema bumps it.
pub const FORMAT_VERSION: u16 = 8;
/// The oldest format version this code reads (version 1 files, MLP fields only, version 2 files,
/// without a shift section, version 3 files, without a latent section, version 4 files, without a
/// condition section, version 5 files, without the step-size input, version 6 files, without
/// the per-coordinate term, and version 7 files, without the SDE sampler's first time, are read as
/// version 8).
pub const MIN_FORMAT_VERSION: u16 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 16;

/// A decoded header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Header {
    /// Format version.
    pub version: u16,
    /// Payload length.
    pub payload_len: u32,
    /// CRC-32 of the payload.
    pub crc: u32,
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([
        *s.first()?,
        *s.get(1)?,
        *s.get(2)?,
        *s.get(3)?,
    ]))
}

impl Header {
    /// Builds the header for `payload`.
    pub fn for_payload(payload: &[u8]) -> Self {
        Self {
            version: FORMAT_VERSION,
            payload_len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
            crc: crc32(payload),
        }
    }

    /// The 16 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let v = self.version.to_le_bytes();
        let l = self.payload_len.to_le_bytes();
        let c = self.crc.to_le_bytes();
        let parts: [&[u8]; 5] = [&MAGIC, &v, &[0, 0], &l, &c];
        let mut i = 0;
        for p in parts {
            for &b in p {
                if let Some(slot) = out.get_mut(i) {
                    *slot = b;
                }
                i += 1;
            }
        }
        out
    }

    /// Checks the header of `file` and returns the payload it covers.
    ///
    /// # Errors
    /// [`FormatError::BadMagic`], [`FormatError::UnsupportedVersion`], [`FormatError::Truncated`],
    /// [`FormatError::TrailingBytes`], [`FormatError::BadCrc`].
    pub fn split(file: &[u8]) -> Result<(Header, &[u8]), FormatError> {
        let available = u32::try_from(file.len()).unwrap_or(u32::MAX);
        if file.get(..4) != Some(&MAGIC[..]) {
            return if file.len() < 4 && MAGIC.starts_with(file) {
                Err(FormatError::Truncated {
                    needed: HEADER_LEN as u32,
                    available,
                })
            } else {
                Err(FormatError::BadMagic)
            };
        }
        let (Some(v), Some(len), Some(crc)) = (file.get(4..6), le_u32(file, 8), le_u32(file, 12))
        else {
            return Err(FormatError::Truncated {
                needed: HEADER_LEN as u32,
                available,
            });
        };
        let version = u16::from_le_bytes([*v.first().unwrap_or(&0), *v.get(1).unwrap_or(&0)]);
        if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(FormatError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let rest = file.get(HEADER_LEN..).unwrap_or(&[]);
        let len_usize = len as usize;
        let payload = rest.get(..len_usize).ok_or(FormatError::Truncated {
            needed: (HEADER_LEN as u32).saturating_add(len),
            available,
        })?;
        if rest.len() > len_usize {
            return Err(FormatError::TrailingBytes {
                extra: u32::try_from(rest.len().saturating_sub(len_usize)).unwrap_or(u32::MAX),
            });
        }
        if crc32(payload) != crc {
            return Err(FormatError::BadCrc);
        }
        Ok((
            Header {
                version,
                payload_len: len,
                crc,
            },
            payload,
        ))
    }
}
