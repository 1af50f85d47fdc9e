//! MNIST brought to optdigits' 8×8 form, following the UCI optdigits preprocessing (see
//! `docs/data.md`): binarize at > 127, crop to the bounding box of the ink, scale the longer side
//! to 32 pixels keeping the aspect ratio (nearest neighbour), centre in a 32×32 frame, and count the
//! on-pixels in each 4×4 block, giving 64 values in 0..=16.

/// Side of the intermediate bitmap.
const FRAME: usize = 32;
/// Side of the output grid.
pub const SIDE: usize = 8;

/// Transforms one `side`×`side` greyscale image (0..=255) to the 8×8 optdigits form.
///
/// An image without ink gives all zeros.
pub fn transform(image: &[u8], side: usize) -> [u8; SIDE * SIDE] {
    let on = |r: usize, c: usize| image.get(r * side + c).is_some_and(|&p| p > 127);
    let (mut top, mut bottom, mut left, mut right) = (usize::MAX, 0, usize::MAX, 0);
    for r in 0..side {
        for c in 0..side {
            if on(r, c) {
                top = top.min(r);
                bottom = bottom.max(r);
                left = left.min(c);
                right = right.max(c);
            }
        }
    }
    let mut out = [0u8; SIDE * SIDE];
    if top == usize::MAX {
        return out;
    }
    let (h, w) = (bottom - top + 1, right - left + 1);
    let longer = h.max(w);
    // Scaled size, rounded to nearest, at least one pixel.
    let scale = |len: usize| ((len * FRAME + longer / 2) / longer).clamp(1, FRAME);
    let (sh, sw) = (scale(h), scale(w));
    let (oy, ox) = ((FRAME - sh) / 2, (FRAME - sw) / 2);
    for y in 0..sh {
        let src_r = top + (2 * y + 1) * h / (2 * sh);
        for x in 0..sw {
            let src_c = left + (2 * x + 1) * w / (2 * sw);
            if on(src_r, src_c) {
                let (fy, fx) = (oy + y, ox + x);
                out[(fy / 4) * SIDE + fx / 4] += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_single_pixel_images_fill_the_frame() {
        assert_eq!(transform(&[255; 28 * 28], 28), [16; 64]);
        let mut one = [0u8; 28 * 28];
        one[5 * 28 + 17] = 200;
        assert_eq!(transform(&one, 28), [16; 64]);
    }

    #[test]
    fn blank_and_faint_images_are_zero() {
        assert_eq!(transform(&[0; 28 * 28], 28), [0; 64]);
        assert_eq!(transform(&[127; 28 * 28], 28), [0; 64]);
    }

    #[test]
    fn tall_bar_is_centred() {
        // A 28-tall, 14-wide bar scales to 32×16 and sits in columns 8..24: blocks 2..6 full.
        let mut img = [0u8; 28 * 28];
        for r in 0..28 {
            for c in 3..17 {
                img[r * 28 + c] = 255;
            }
        }
        let out = transform(&img, 28);
        for r in 0..8 {
            assert_eq!(&out[r * 8..r * 8 + 8], &[0, 0, 16, 16, 16, 16, 0, 0]);
        }
    }

    #[test]
    fn wide_bar_is_centred_vertically() {
        // 6 tall, 28 wide → 7×32 (6·32/28 = 6.86 rounds to 7), offset (32−7)/2 = 12: frame rows
        // 12..19, so block row 3 is full (16) and block row 4 holds three rows (12).
        let mut img = [0u8; 28 * 28];
        for r in 10..16 {
            for c in 0..28 {
                img[r * 28 + c] = 255;
            }
        }
        let out = transform(&img, 28);
        for r in 0..8 {
            let want = match r {
                3 => 16,
                4 => 12,
                _ => 0,
            };
            assert!(
                out[r * 8..r * 8 + 8].iter().all(|&v| v == want),
                "row {r}: {out:?}"
            );
        }
    }
}
