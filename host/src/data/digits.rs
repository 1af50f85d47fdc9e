//! The UCI optdigits CSV (scikit-learn's `digits.csv.gz`): no header, 64 pixel columns with values
//! 0..=16, then the label 0..=9.

use std::path::Path;

use crate::error::DataError;

/// Pixels per digits image (8×8).
pub const PIXELS: usize = 64;

/// Parses the digits CSV into (pixels row-major, labels).
///
/// # Errors
/// [`DataError::Csv`] naming the line for a wrong column count, a non-integer, or a value out of
/// range.
pub fn parse(text: &str, path: &Path) -> Result<(Vec<u8>, Vec<u8>), DataError> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |problem: String| DataError::Csv {
            path: path.into(),
            line: i + 1,
            problem,
        };
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != PIXELS + 1 {
            return Err(bad(format!(
                "expected {} columns, found {}",
                PIXELS + 1,
                fields.len()
            )));
        }
        for (col, f) in fields.iter().enumerate() {
            let v: f64 = f
                .trim()
                .parse()
                .map_err(|_| bad(format!("column {}: not a number: {f:?}", col + 1)))?;
            let max = if col == PIXELS { 9.0 } else { 16.0 };
            if v.fract() != 0.0 || !(0.0..=max).contains(&v) {
                return Err(bad(format!(
                    "column {}: {v} is not an integer in 0..={max}",
                    col + 1
                )));
            }
            // cannot truncate: checked to be an integer in 0..=16 above
            let v = v as u8;
            if col == PIXELS {
                labels.push(v);
            } else {
                pixels.push(v);
            }
        }
    }
    Ok((pixels, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(px: u8, label: u8) -> String {
        let mut cols: Vec<String> = (0..PIXELS).map(|_| px.to_string()).collect();
        cols.push(label.to_string());
        cols.join(",")
    }

    #[test]
    fn parses_rows_with_float_notation() {
        let text = format!("{}\n{}\n", row(16, 3), row(0, 9).replace(",9", ",9.0"));
        let (px, lab) = parse(&text, Path::new("d.csv")).unwrap();
        assert_eq!(lab, vec![3, 9]);
        assert_eq!(px.len(), 128);
        assert_eq!(px[0], 16);
    }

    #[test]
    fn rejects_bad_rows_with_line_numbers() {
        let text = format!("{}\n1,2,3\n", row(1, 1));
        let err = parse(&text, Path::new("d.csv")).unwrap_err().to_string();
        assert!(
            err.contains("d.csv: line 2") && err.contains("65 columns"),
            "{err}"
        );
        let err = parse(&row(17, 1), Path::new("d.csv"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("0..=16"), "{err}");
        let err = parse(&row(1, 10), Path::new("d.csv"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("0..=9"), "{err}");
    }
}
