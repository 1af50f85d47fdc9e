//! The real datasets load, verify, and show their published facts.

mod common;

use nmflow_host::data::{Dataset, DatasetView};

#[test]
fn mnist_known_facts() {
    let d = Dataset::load(DatasetView::Mnist, &common::data_dir()).unwrap();
    assert_eq!(d.train.len(), 60_000);
    assert_eq!(d.test.len(), 10_000);
    assert_eq!(&d.train.y[..10], &[5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    // Standardized with the published mean/std, so the standardized train set has mean 0, std 1.
    let n = d.train.x.len() as f64;
    let mean = d.train.x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = d
        .train
        .x
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    assert!(mean.abs() < 1e-3, "mean {mean}");
    assert!((var.sqrt() - 1.0).abs() < 1e-3, "std {}", var.sqrt());
}

#[test]
fn fashion_known_facts() {
    let d = Dataset::load(DatasetView::Fashion, &common::data_dir()).unwrap();
    assert_eq!(&d.train.y[..10], &[9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    let mut counts = [0usize; 10];
    d.train.y.iter().for_each(|&l| counts[usize::from(l)] += 1);
    assert_eq!(counts, [6000; 10]);
}

#[test]
fn digits_and_mnist8_share_a_space() {
    let digits = Dataset::load(DatasetView::Digits, &common::data_dir()).unwrap();
    assert!(digits.train.is_empty());
    assert_eq!(digits.test.len(), 1797);
    let mut counts = [0usize; 10];
    digits
        .test
        .y
        .iter()
        .for_each(|&l| counts[usize::from(l)] += 1);
    assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
    let m8 = Dataset::load(DatasetView::Mnist8, &common::data_dir()).unwrap();
    assert_eq!(m8.train.dim, 64);
    assert!(m8.train.x.iter().all(|&v| (0.0..=1.0).contains(&v)));
    // Both are 8×8 counts of 4×4 blocks of a 32×32 bitmap: similar ink per image.
    let ink = |x: &[f32]| x.iter().map(|&v| f64::from(v)).sum::<f64>() / (x.len() / 64) as f64;
    let (a, b) = (ink(&m8.test.x), ink(&digits.test.x));
    assert!(
        (a / b - 1.0).abs() < 0.35,
        "mean ink mnist8 {a} vs digits {b}"
    );
}
