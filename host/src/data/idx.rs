//! The IDX format of MNIST and Fashion-MNIST: a big-endian header (magic `0x0000_08NN` for
//! unsigned bytes with NN dimensions, then NN u32 sizes) followed by the bytes.

use std::path::Path;

use crate::error::DataError;

/// A parsed IDX file of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idx {
    /// The dimensions, outermost first.
    pub dims: Vec<usize>,
    /// The payload, row-major.
    pub data: Vec<u8>,
}

/// Parses an IDX file of unsigned bytes with exactly `ndims` dimensions.
///
/// `path` is only used in error messages.
///
/// # Errors
/// [`DataError::BadMagic`] for a wrong type code or dimension count, [`DataError::Length`] for a
/// truncated header or payload, or bytes after the payload.
pub fn parse(bytes: &[u8], ndims: u8, path: &Path) -> Result<Idx, DataError> {
    let expected_magic = 0x0000_0800 | u32::from(ndims);
    let header_len = 4 + 4 * usize::from(ndims);
    let be_u32 = |at: usize| -> Option<u32> {
        let b = bytes.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let magic = be_u32(0).ok_or(DataError::Length {
        path: path.into(),
        what: "truncated header",
        expected: header_len,
        found: bytes.len(),
    })?;
    if magic != expected_magic {
        return Err(DataError::BadMagic {
            path: path.into(),
            expected: expected_magic,
            found: magic,
        });
    }
    let mut dims = Vec::with_capacity(usize::from(ndims));
    for k in 0..usize::from(ndims) {
        let d = be_u32(4 + 4 * k).ok_or(DataError::Length {
            path: path.into(),
            what: "truncated header",
            expected: header_len,
            found: bytes.len(),
        })?;
        dims.push(d as usize);
    }
    let payload = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .unwrap_or(usize::MAX);
    let expected = header_len.saturating_add(payload);
    if bytes.len() != expected {
        return Err(DataError::Length {
            path: path.into(),
            what: if bytes.len() < expected {
                "truncated"
            } else {
                "trailing bytes"
            },
            expected,
            found: bytes.len(),
        });
    }
    Ok(Idx {
        dims,
        data: bytes[header_len..].to_vec(),
    })
}

/// Encodes `data` with `dims` as an IDX file of unsigned bytes (used by tests and tools).
pub fn encode(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    let ndims = u8::try_from(dims.len()).unwrap_or(u8::MAX);
    out.extend_from_slice(&[0, 0, 0x08, ndims]);
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("test.idx")
    }

    #[test]
    fn parses_good_images_and_labels() {
        let img = encode(&[2, 2, 3], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let idx = parse(&img, 3, p()).unwrap();
        assert_eq!(idx.dims, vec![2, 2, 3]);
        assert_eq!(idx.data[11], 12);
        let lab = encode(&[3], &[5, 0, 4]);
        assert_eq!(parse(&lab, 1, p()).unwrap().data, vec![5, 0, 4]);
    }

    #[test]
    fn rejects_bad_magic() {
        let mut img = encode(&[1, 1, 1], &[0]);
        img[2] = 0x0D; // float type code
        let err = parse(&img, 3, p()).unwrap_err();
        assert!(
            matches!(err, DataError::BadMagic { found: 0x0D03, .. }),
            "{err}"
        );
        // a labels file where images are expected
        let lab = encode(&[1], &[0]);
        assert!(matches!(
            parse(&lab, 3, p()),
            Err(DataError::BadMagic { .. })
        ));
        assert!(err.to_string().contains("test.idx"));
    }

    #[test]
    fn rejects_truncation_everywhere() {
        let img = encode(&[2, 3, 3], &[7; 18]);
        for cut in 0..img.len() {
            let err = parse(&img[..cut], 3, p()).unwrap_err();
            assert!(matches!(err, DataError::Length { .. }), "cut {cut}: {err}");
        }
        let mut long = img.clone();
        long.push(0);
        let err = parse(&long, 3, p()).unwrap_err();
        assert!(err.to_string().contains("trailing"), "{err}");
    }

    #[test]
    fn huge_dimensions_do_not_overflow() {
        let img = encode(&[u32::MAX, u32::MAX, u32::MAX], &[]);
        assert!(matches!(parse(&img, 3, p()), Err(DataError::Length { .. })));
    }
}
