//! The board-independent application: read 8×8 frames from a sensor through `embedded-hal` 1.0
//! I²C, synthesize classifiers from an embedded nmflow model, classify, and compute the ensemble
//! disagreement statistics on a window of MNIST-8×8 frames and one of optdigits frames
//! ([`run_demo`]); and synthesize an MNIST 28×28 classifier and classify test images stored in
//! flash ([`run_mnist_demo`]); and decide, with the model's calibrated shift section, whether each
//! of 50 windows of MNIST-8×8 frames and 50 of optdigits frames is a harmful shift
//! ([`run_shift_demo`]); and adapt to a task it has never seen, a permutation of the labels, from
//! 5 labeled frames per class that a sensor delivers: the embedded class-conditioned model
//! synthesizes classifiers for that task, which then classify a stream of frames under the task's
//! labels ([`run_adapt_demo`]).
//!
//! The same code runs on the host (its tests compute the expected report) and on any board whose
//! HAL implements `embedded_hal::i2c::I2c`.
#![no_std]

use embedded_hal::i2c::I2c;
use nmflow_runtime::classifier::{Classifier, ClassifierScratch};
use nmflow_runtime::rng::derive_seed;
use nmflow_runtime::shift::{EnsembleStats, ShiftDetector, ShiftStatistics, softmax};
use nmflow_runtime::{Error, ModelView, Support, Workspace, synthesize, synthesize_task};

/// The model and the test frames, embedded in flash.
pub mod assets {
    /// The exported model (mnist8, mlp:64-16-10, int8 set field, Euler × 4).
    pub static MODEL: &[u8] = include_bytes!("../assets/model.nmf");
    /// The same model with a calibrated shift section (`nmflow shift-calibrate`: windows of 20,
    /// the guided ensemble's entropy statistic, threshold from 100 null windows of MNIST-8×8).
    pub static SHIFT_MODEL: &[u8] = include_bytes!("../assets/model-shift.nmf");
    /// 1,000 MNIST-8×8 test frames (64 values 0..=16 each) and labels.
    pub static MNIST8_IMAGES: &[u8] = include_bytes!("../assets/mnist8.images");
    /// Labels of [`MNIST8_IMAGES`].
    pub static MNIST8_LABELS: &[u8] = include_bytes!("../assets/mnist8.labels");
    /// 1,000 optdigits frames and labels (a real covariate shift from MNIST).
    pub static DIGITS_IMAGES: &[u8] = include_bytes!("../assets/digits.images");
    /// Labels of [`DIGITS_IMAGES`].
    pub static DIGITS_LABELS: &[u8] = include_bytes!("../assets/digits.labels");
    /// The exported MNIST model (mlp:784-10-10, int8 set field, Euler × 4).
    pub static MNIST_MODEL: &[u8] = include_bytes!("../assets/mnist-model.nmf");
    /// An exported latent MNIST model (mlp:784-10-10: a 32-value latent, int8 MLP field 128 × 3,
    /// the VAE's 32-wide MLP decoder, Euler × 8; `make-assets.sh`).
    pub static MNIST_LATENT_MODEL: &[u8] = include_bytes!("../assets/mnist-latent.nmf");
    /// 200 MNIST test images (784 pixels 0..=255 each).
    pub static MNIST_IMAGES: &[u8] = include_bytes!("../assets/mnist.images");
    /// Labels of [`MNIST_IMAGES`].
    pub static MNIST_LABELS: &[u8] = include_bytes!("../assets/mnist.labels");
    /// A class-conditioned model (mnist8, mlp:64-16-10, int8 class-equivariant set field, Euler
    /// × 4) trained on 224 label permutations of mnist8 (`nmflow train --condition classes`;
    /// `make-assets.sh`).
    pub static PERM_MODEL: &[u8] = include_bytes!("../assets/perm-model.nmf");
    /// The support set of task 224, a permutation the model never saw in training: 5 MNIST-8×8
    /// training frames of every class (pixels 0..=16) carrying the task's labels
    /// (`nmflow dump-inputs --shots 5 --task 224`).
    pub static PERM_SUPPORT_IMAGES: &[u8] = include_bytes!("../assets/perm-support.images");
    /// Labels of [`PERM_SUPPORT_IMAGES`] in task 224.
    pub static PERM_SUPPORT_LABELS: &[u8] = include_bytes!("../assets/perm-support.labels");
    /// Task 224's labels of the frames of [`MNIST8_IMAGES`].
    pub static PERM_TEST_LABELS: &[u8] = include_bytes!("../assets/perm-test.labels");
}

/// Pixels per frame.
pub const FRAME: usize = 64;
/// Workspace capacity in floats: what the embedded model needs with its solver
/// (`nmflow inspect assets/model.nmf` prints it in bytes; a model that does not fit is refused
/// when it is parsed).
pub const WORKSPACE_FLOATS: usize = 3_674;
/// The application's workspace.
pub type AppWorkspace = Workspace<WORKSPACE_FLOATS>;
/// Classifier activation capacity (the widest classifier layer).
pub const MAX_WIDTH: usize = 16;
/// Ensemble members.
pub const MEMBERS: u64 = 5;
/// Frames per shift window.
pub const WINDOW: usize = 32;
/// Classes.
pub const CLASSES: usize = 10;

/// A frame sensor on an I²C bus: writing the big-endian frame index to register 0 and reading 65
/// bytes returns the 64 pixel values (0..=16) and the label.
pub struct FrameSensor<I> {
    bus: I,
    address: u8,
}

impl<I: I2c> FrameSensor<I> {
    /// A sensor at `address` on `bus`.
    pub fn new(bus: I, address: u8) -> Self {
        Self { bus, address }
    }

    /// Reads frame `index` into `pixels` (scaled to \[0, 1\]) and returns its label.
    ///
    /// # Errors
    /// The bus error.
    pub fn read(&mut self, index: u16, pixels: &mut [f32; FRAME]) -> Result<u8, I::Error> {
        let mut raw = [0u8; FRAME + 1];
        let [hi, lo] = index.to_be_bytes();
        self.bus.write_read(self.address, &[0, hi, lo], &mut raw)?;
        for (p, &r) in pixels.iter_mut().zip(raw.iter()) {
            *p = f32::from(r) / 16.0;
        }
        Ok(raw[FRAME])
    }
}

/// An I²C device backed by frames in memory (what QEMU's board "sees"; tests use it too).
pub struct MemoryFrames<'a> {
    images: &'a [u8],
    labels: &'a [u8],
}

impl<'a> MemoryFrames<'a> {
    /// Frames `images` (`N×64`) with `labels` (`N`).
    pub fn new(images: &'a [u8], labels: &'a [u8]) -> Self {
        Self { images, labels }
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no frames.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

impl embedded_hal::i2c::ErrorType for MemoryFrames<'_> {
    type Error = embedded_hal::i2c::ErrorKind;
}

impl I2c for MemoryFrames<'_> {
    fn transaction(
        &mut self,
        _address: u8,
        operations: &mut [embedded_hal::i2c::Operation<'_>],
    ) -> Result<(), Self::Error> {
        let mut index = 0usize;
        for op in operations {
            match op {
                embedded_hal::i2c::Operation::Write(bytes) => {
                    if let [0, hi, lo] = bytes {
                        index = usize::from(u16::from_be_bytes([*hi, *lo]));
                    }
                }
                embedded_hal::i2c::Operation::Read(buf) => {
                    let start = index * FRAME;
                    let frame = self.images.get(start..start + FRAME).ok_or(
                        embedded_hal::i2c::ErrorKind::NoAcknowledge(
                            embedded_hal::i2c::NoAcknowledgeSource::Data,
                        ),
                    )?;
                    let label = self.labels.get(index).copied().unwrap_or(0);
                    for (b, v) in buf
                        .iter_mut()
                        .zip(frame.iter().chain(core::iter::once(&label)))
                    {
                        *b = *v;
                    }
                }
            }
        }
        Ok(())
    }
}

/// I²C address of the test-stream sensor.
pub const TEST_ADDRESS: u8 = 0x42;
/// I²C address of the comparison-stream (shifted) sensor.
pub const SHIFTED_ADDRESS: u8 = 0x43;

/// The two sensors backed by the embedded frames: MNIST-8×8 (test stream) and optdigits
/// (shifted stream).
pub fn embedded_sensors() -> (
    FrameSensor<MemoryFrames<'static>>,
    FrameSensor<MemoryFrames<'static>>,
) {
    (
        FrameSensor::new(
            MemoryFrames::new(assets::MNIST8_IMAGES, assets::MNIST8_LABELS),
            TEST_ADDRESS,
        ),
        FrameSensor::new(
            MemoryFrames::new(assets::DIGITS_IMAGES, assets::DIGITS_LABELS),
            SHIFTED_ADDRESS,
        ),
    )
}

/// What the application measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Report {
    /// Frames classified by the single synthesized classifier.
    pub frames: u32,
    /// Correct predictions among them.
    pub correct: u32,
    /// FNV-1a hash of the predicted classes, in frame order (compares runs bit for bit).
    pub prediction_hash: u32,
    /// Ensemble statistics on a window of MNIST-8×8 frames.
    pub mnist: ShiftStatistics,
    /// Ensemble statistics on a window of optdigits frames.
    pub digits: ShiftStatistics,
}

impl Report {
    /// Logs the report through defmt: the lines `run-qemu.sh` compares with the host's.
    #[cfg(feature = "defmt")]
    pub fn log(&self) {
        defmt::info!(
            "accuracy {=u32}/{=u32} predictions-hash {=u32:08x}",
            self.correct,
            self.frames,
            self.prediction_hash
        );
        for (name, s) in [("mnist8", &self.mnist), ("digits", &self.digits)] {
            defmt::info!(
                "{=str} window: disagreement {=f32} entropy {=f32} members {=u16}",
                name,
                s.disagreement,
                s.mean_entropy,
                s.members
            );
        }
    }
}

/// Frames classified by the demo's single classifier.
pub const DEMO_FRAMES: u16 = 300;
/// Seed of the demo.
pub const DEMO_SEED: u64 = 1;

/// The demo every board runs: [`run`] on the embedded model with [`DEMO_FRAMES`] and [`DEMO_SEED`].
///
/// # Errors
/// As [`run`].
pub fn run_demo<I: I2c>(
    test: &mut FrameSensor<I>,
    shifted: &mut FrameSensor<I>,
    ws: &mut AppWorkspace,
    on_synthesis: &mut dyn FnMut(u64),
) -> Result<Report, AppError<I::Error>> {
    run(
        assets::MODEL,
        test,
        shifted,
        DEMO_FRAMES,
        DEMO_SEED,
        ws,
        on_synthesis,
    )
}

/// Application errors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AppError<E> {
    /// The runtime refused the model or failed.
    Runtime(Error),
    /// The sensor bus failed.
    Bus(E),
}

impl<E> From<Error> for AppError<E> {
    fn from(e: Error) -> Self {
        Self::Runtime(e)
    }
}

fn fnv1a(hash: u32, byte: u8) -> u32 {
    (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
}

/// Runs the application: classifier `seed`'s accuracy on `frames` frames of `test`, and the
/// ensemble statistics of `MEMBERS` classifiers on the first `WINDOW` frames of `test` and of
/// `shifted`. `on_synthesis(seed)` is called after each synthesis (for cycle counting).
///
/// # Errors
/// Runtime and bus errors.
pub fn run<I: I2c>(
    model_bytes: &[u8],
    test: &mut FrameSensor<I>,
    shifted: &mut FrameSensor<I>,
    frames: u16,
    seed: u64,
    ws: &mut AppWorkspace,
    on_synthesis: &mut dyn FnMut(u64),
) -> Result<Report, AppError<I::Error>> {
    let model = ModelView::parse_for(model_bytes, WORKSPACE_FLOATS)?;
    let mut scratch: ClassifierScratch<MAX_WIDTH> = ClassifierScratch::new();
    let mut logits = [0.0f32; CLASSES];
    let mut probs = [0.0f32; CLASSES];
    let mut pixels = [0.0f32; FRAME];
    let mut correct = 0u32;
    let mut hash = 0x811C_9DC5u32;
    {
        let w = synthesize(&model, derive_seed(seed, 0), ws)?;
        on_synthesis(seed);
        let clf = Classifier::new(&model, w)?;
        for i in 0..frames {
            let label = test.read(i, &mut pixels).map_err(AppError::Bus)?;
            let class = clf.logits(&pixels, &mut scratch, &mut logits)?;
            correct += u32::from(class == usize::from(label));
            hash = fnv1a(hash, u8::try_from(class).unwrap_or(u8::MAX));
        }
    }
    let mut stats_test: EnsembleStats<WINDOW, CLASSES> = EnsembleStats::new(WINDOW)?;
    let mut stats_shift: EnsembleStats<WINDOW, CLASSES> = EnsembleStats::new(WINDOW)?;
    for m in 0..MEMBERS {
        let w = synthesize(&model, derive_seed(seed.wrapping_add(1000), m), ws)?;
        on_synthesis(m);
        let clf = Classifier::new(&model, w)?;
        for (sensor, stats) in [
            (&mut *test, &mut stats_test),
            (&mut *shifted, &mut stats_shift),
        ] {
            for i in 0..WINDOW {
                sensor
                    .read(u16::try_from(i).unwrap_or(0), &mut pixels)
                    .map_err(AppError::Bus)?;
                clf.logits(&pixels, &mut scratch, &mut logits)?;
                softmax(&logits, &mut probs);
                stats.add(i, &probs);
            }
            stats.finish_member();
        }
    }
    Ok(Report {
        frames: u32::from(frames),
        correct,
        prediction_hash: hash,
        mnist: stats_test.statistics(),
        digits: stats_shift.statistics(),
    })
}

/// Workspace capacity in floats for the MNIST model with its solver.
pub const MNIST_WORKSPACE_FLOATS: usize = 9_656;
/// The MNIST application's workspace.
pub type MnistWorkspace = Workspace<MNIST_WORKSPACE_FLOATS>;
/// Workspace capacity in floats for the latent MNIST model with its solver (decoded weights,
/// latent, and the larger of the integration's and the decoder's scratch).
pub const MNIST_LATENT_WORKSPACE_FLOATS: usize = 8_280;
/// The latent MNIST application's workspace.
pub type MnistLatentWorkspace = Workspace<MNIST_LATENT_WORKSPACE_FLOATS>;
/// Pixels of an MNIST image.
pub const MNIST_PIXELS: usize = 784;
/// Seed of the MNIST demo.
pub const MNIST_SEED: u64 = 1;

/// MNIST's input scaling, as the host applies it: `(p / 255 − 0.1307) / 0.3081` in f32.
pub fn mnist_input(p: u8) -> f32 {
    (f32::from(p) / 255.0 - 0.1307) / 0.3081
}

/// What the MNIST application measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MnistReport {
    /// Images classified.
    pub images: u32,
    /// Correct predictions among them.
    pub correct: u32,
    /// FNV-1a hash of the predicted classes, in image order.
    pub prediction_hash: u32,
}

impl MnistReport {
    /// Logs the report through defmt: the line `run-qemu.sh` compares with the host's.
    #[cfg(feature = "defmt")]
    pub fn log(&self) {
        defmt::info!(
            "mnist accuracy {=u32}/{=u32} predictions-hash {=u32:08x}",
            self.correct,
            self.images,
            self.prediction_hash
        );
    }
}

/// The MNIST demo: [`run_mnist`] on the embedded MNIST model and images with [`MNIST_SEED`].
///
/// # Errors
/// As [`run_mnist`].
pub fn run_mnist_demo(
    ws: &mut MnistWorkspace,
    on_synthesis: &mut dyn FnMut(u64),
) -> Result<MnistReport, Error> {
    run_mnist(
        assets::MNIST_MODEL,
        assets::MNIST_IMAGES,
        assets::MNIST_LABELS,
        MNIST_SEED,
        ws,
        on_synthesis,
    )
}

/// The latent MNIST demo: [`run_mnist`] on the embedded latent model (the field runs in the
/// latent, the decoder makes the weights) and the same images and seed.
///
/// # Errors
/// As [`run_mnist`].
pub fn run_mnist_latent_demo(
    ws: &mut MnistLatentWorkspace,
    on_synthesis: &mut dyn FnMut(u64),
) -> Result<MnistReport, Error> {
    run_mnist(
        assets::MNIST_LATENT_MODEL,
        assets::MNIST_IMAGES,
        assets::MNIST_LABELS,
        MNIST_SEED,
        ws,
        on_synthesis,
    )
}

/// Synthesizes classifier `seed` from an MNIST model and classifies `images` (`N × 784` pixels,
/// 0..=255) against `labels`.
///
/// # Errors
/// The runtime's errors (a model that does not fit the workspace or takes other inputs).
pub fn run_mnist<const N: usize>(
    model_bytes: &[u8],
    images: &[u8],
    labels: &[u8],
    seed: u64,
    ws: &mut Workspace<N>,
    on_synthesis: &mut dyn FnMut(u64),
) -> Result<MnistReport, Error> {
    let model = ModelView::parse_for(model_bytes, N)?;
    let w = synthesize(&model, derive_seed(seed, 0), ws)?;
    on_synthesis(seed);
    let clf = Classifier::new(&model, w)?;
    let mut scratch: ClassifierScratch<MAX_WIDTH> = ClassifierScratch::new();
    let mut logits = [0.0f32; CLASSES];
    let mut input = [0.0f32; MNIST_PIXELS];
    let (mut correct, mut count) = (0u32, 0u32);
    let mut hash = 0x811C_9DC5u32;
    for (image, &label) in images.chunks_exact(MNIST_PIXELS).zip(labels) {
        for (x, &p) in input.iter_mut().zip(image) {
            *x = mnist_input(p);
        }
        let class = clf.logits(&input, &mut scratch, &mut logits)?;
        correct += u32::from(class == usize::from(label));
        count += 1;
        hash = fnv1a(hash, u8::try_from(class).unwrap_or(u8::MAX));
    }
    Ok(MnistReport {
        images: count,
        correct,
        prediction_hash: hash,
    })
}

/// Workspace floats of the shift detector for [`assets::SHIFT_MODEL`]
/// (`ShiftDetector::workspace_floats`; a section that needs more is refused when the detector is
/// built).
pub const SHIFT_WORKSPACE_FLOATS: usize = 9_024;
/// The shift detector's workspace.
pub type ShiftWorkspace = [f32; SHIFT_WORKSPACE_FLOATS];
/// Frames per shift window (the section's `window`).
pub const SHIFT_WINDOW: usize = 20;
/// Windows per stream.
pub const SHIFT_WINDOWS: u16 = 50;

/// One stream's decisions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StreamDecisions {
    /// Windows decided.
    pub windows: u16,
    /// Windows flagged as a harmful shift.
    pub flagged: u16,
    /// Members synthesized over all windows.
    pub members: u32,
    /// FNV-1a hash of every window's statistic (f32 bits, little-endian) and disagreement count,
    /// in order (compares runs bit for bit).
    pub hash: u32,
}

/// What the shift application measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShiftReport {
    /// The stored statistic's threshold.
    pub threshold: f32,
    /// Windows of MNIST-8×8 frames (P's distribution: flags are false alarms).
    pub mnist: StreamDecisions,
    /// Windows of optdigits frames (the harmful shift: flags are detections).
    pub digits: StreamDecisions,
}

impl ShiftReport {
    /// Logs the report through defmt: the lines `run-qemu.sh` compares with the host's.
    #[cfg(feature = "defmt")]
    pub fn log(&self) {
        defmt::info!("shift threshold {=f32}", self.threshold);
        for (name, s) in [("mnist8", &self.mnist), ("digits", &self.digits)] {
            defmt::info!(
                "shift {=str} windows {=u16} flagged {=u16} members {=u32} decisions-hash {=u32:08x}",
                name,
                s.windows,
                s.flagged,
                s.members,
                s.hash
            );
        }
    }
}

/// The shift demo: [`run_shift`] on [`assets::SHIFT_MODEL`] with [`SHIFT_WINDOWS`] windows of
/// each embedded stream.
///
/// # Errors
/// As [`run_shift`].
pub fn run_shift_demo<I: I2c>(
    test: &mut FrameSensor<I>,
    shifted: &mut FrameSensor<I>,
    ws: &mut ShiftWorkspace,
    on_decision: &mut dyn FnMut(),
) -> Result<ShiftReport, AppError<I::Error>> {
    run_shift(
        assets::SHIFT_MODEL,
        test,
        shifted,
        SHIFT_WINDOWS,
        ws,
        on_decision,
    )
}

/// Decides on `windows` consecutive windows of [`SHIFT_WINDOW`] frames from each sensor (frames
/// `j·20 .. (j+1)·20`, as `nmflow shift-calibrate --evaluate` reads the same views) with the
/// model's shift section. `on_decision()` follows each decision (for cycle counting).
///
/// # Errors
/// Runtime errors (no shift section, another window size, a workspace too small) and bus errors.
pub fn run_shift<I: I2c>(
    model_bytes: &[u8],
    test: &mut FrameSensor<I>,
    shifted: &mut FrameSensor<I>,
    windows: u16,
    ws: &mut ShiftWorkspace,
    on_decision: &mut dyn FnMut(),
) -> Result<ShiftReport, AppError<I::Error>> {
    let model = ModelView::parse(model_bytes)?;
    let mut detector = ShiftDetector::new(&model, ws)?;
    let threshold = detector.section().threshold;
    let mut window = [0.0f32; SHIFT_WINDOW * FRAME];
    let mut pixels = [0.0f32; FRAME];
    let mut stream = |sensor: &mut FrameSensor<I>| -> Result<StreamDecisions, AppError<I::Error>> {
        let mut out = StreamDecisions {
            windows: 0,
            flagged: 0,
            members: 0,
            hash: 0x811C_9DC5,
        };
        for j in 0..windows {
            for (i, slot) in window.chunks_exact_mut(FRAME).enumerate() {
                let index = usize::from(j) * SHIFT_WINDOW + i;
                sensor
                    .read(u16::try_from(index).unwrap_or(u16::MAX), &mut pixels)
                    .map_err(AppError::Bus)?;
                slot.copy_from_slice(&pixels);
            }
            let d = detector.decide(&window, &mut |_| {})?;
            on_decision();
            out.windows += 1;
            out.flagged += u16::from(d.shifted);
            out.members += u32::from(d.members);
            for b in d
                .statistic
                .to_bits()
                .to_le_bytes()
                .into_iter()
                .chain(d.disagreement.to_le_bytes())
            {
                out.hash = fnv1a(out.hash, b);
            }
        }
        Ok(out)
    };
    let mnist = stream(test)?;
    let digits = stream(shifted)?;
    Ok(ShiftReport {
        threshold,
        mnist,
        digits,
    })
}

/// Workspace floats of the class-conditioned model with its solver (the task context, the lifted
/// state and the set field's scratch; `nmflow inspect assets/perm-model.nmf` prints it in bytes).
pub const ADAPT_WORKSPACE_FLOATS: usize = 15_263;
/// The adaptation's workspace.
pub type AdaptWorkspace = Workspace<ADAPT_WORKSPACE_FLOATS>;
/// Labeled frames the device collects for a task: 5 per class.
pub const SUPPORT_FRAMES: usize = 50;
/// Classifiers synthesized for the task.
pub const ADAPT_CLASSIFIERS: usize = 5;
/// Frames of the task's stream each classifier classifies.
pub const ADAPT_FRAMES: u16 = 1000;
/// Seed of the adaptation demo.
pub const ADAPT_SEED: u64 = 1;
/// I²C address of the sensor that delivers the task's labeled frames.
pub const SUPPORT_ADDRESS: u8 = 0x44;

/// The two sensors of the adaptation demo, backed by the embedded frames: the task's labeled
/// support frames, and the MNIST-8×8 test stream under the task's labels.
pub fn adapt_sensors() -> (
    FrameSensor<MemoryFrames<'static>>,
    FrameSensor<MemoryFrames<'static>>,
) {
    (
        FrameSensor::new(
            MemoryFrames::new(assets::PERM_SUPPORT_IMAGES, assets::PERM_SUPPORT_LABELS),
            SUPPORT_ADDRESS,
        ),
        FrameSensor::new(
            MemoryFrames::new(assets::MNIST8_IMAGES, assets::PERM_TEST_LABELS),
            TEST_ADDRESS,
        ),
    )
}

/// What the adaptation measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptReport {
    /// Labeled frames the task was shown.
    pub support: u32,
    /// Frames each classifier classified.
    pub frames: u32,
    /// Correct predictions of each classifier synthesized for the task (guidance from the file).
    pub correct: [u32; ADAPT_CLASSIFIERS],
    /// Correct predictions of a classifier synthesized without the task (the null condition,
    /// guidance 0): what the model makes when it is not shown the support set.
    pub null_correct: u32,
    /// Field evaluations per synthesis for the task.
    pub nfe: u32,
    /// FNV-1a hash of the task classifiers' predicted classes, in order (compares runs bit for
    /// bit).
    pub prediction_hash: u32,
}

impl AdaptReport {
    /// Logs the report through defmt: the lines `run-qemu.sh` compares with the host's.
    #[cfg(feature = "defmt")]
    pub fn log(&self) {
        for (k, c) in self.correct.iter().enumerate() {
            defmt::info!(
                "adapt classifier {=usize} accuracy {=u32}/{=u32}",
                k,
                c,
                self.frames
            );
        }
        defmt::info!(
            "adapt support {=u32} frames nfe {=u32} predictions-hash {=u32:08x}",
            self.support,
            self.nfe,
            self.prediction_hash
        );
        defmt::info!(
            "adapt null-condition accuracy {=u32}/{=u32}",
            self.null_correct,
            self.frames
        );
    }
}

/// The adaptation demo every board runs: [`run_adapt`] on the embedded class-conditioned model
/// with [`ADAPT_FRAMES`] frames and [`ADAPT_SEED`].
///
/// # Errors
/// As [`run_adapt`].
pub fn run_adapt_demo<I: I2c>(
    support: &mut FrameSensor<I>,
    test: &mut FrameSensor<I>,
    ws: &mut AdaptWorkspace,
    on_synthesis: &mut dyn FnMut(u64),
) -> Result<AdaptReport, AppError<I::Error>> {
    run_adapt(
        assets::PERM_MODEL,
        support,
        test,
        ADAPT_FRAMES,
        ADAPT_SEED,
        ws,
        on_synthesis,
    )
}

/// Adapts to a task from [`SUPPORT_FRAMES`] labeled frames of `support`: encodes them into the
/// class-conditioned model's task context, synthesizes [`ADAPT_CLASSIFIERS`] classifiers for the
/// task (seeds `derive_seed(seed, k)`, the file's guidance weight, solver and steps) and one with
/// the null condition, and classifies `frames` frames of `test` against its labels with each.
/// `on_synthesis(k)` follows each synthesis (for cycle counting).
///
/// # Errors
/// Runtime errors (a model without a condition section, one that does not fit the workspace,
/// support labels outside the classes; a label without a frame is one the task does not use)
/// and bus errors.
pub fn run_adapt<I: I2c, const N: usize>(
    model_bytes: &[u8],
    support: &mut FrameSensor<I>,
    test: &mut FrameSensor<I>,
    frames: u16,
    seed: u64,
    ws: &mut Workspace<N>,
    on_synthesis: &mut dyn FnMut(u64),
) -> Result<AdaptReport, AppError<I::Error>> {
    let model = ModelView::parse_for(model_bytes, N)?;
    let guidance = model
        .file
        .condition
        .as_ref()
        .ok_or(Error::NotConditioned)?
        .guidance;
    let mut inputs = [0.0f32; SUPPORT_FRAMES * FRAME];
    let mut labels = [0u8; SUPPORT_FRAMES];
    let mut pixels = [0.0f32; FRAME];
    for (i, (row, label)) in inputs
        .chunks_exact_mut(FRAME)
        .zip(labels.iter_mut())
        .enumerate()
    {
        *label = support
            .read(u16::try_from(i).unwrap_or(u16::MAX), &mut pixels)
            .map_err(AppError::Bus)?;
        row.copy_from_slice(&pixels);
    }
    let task = Support {
        inputs: &inputs,
        labels: &labels,
    };
    let (solver, steps) = (model.file.solver, model.file.steps);
    let mut scratch: ClassifierScratch<MAX_WIDTH> = ClassifierScratch::new();
    let mut logits = [0.0f32; CLASSES];
    let mut hash = 0x811C_9DC5u32;
    let mut classify = |w: &[f32], hash: &mut u32| -> Result<u32, AppError<I::Error>> {
        let clf = Classifier::new(&model, w)?;
        let mut correct = 0u32;
        for i in 0..frames {
            let label = test.read(i, &mut pixels).map_err(AppError::Bus)?;
            let class = clf.logits(&pixels, &mut scratch, &mut logits)?;
            correct += u32::from(class == usize::from(label));
            *hash = fnv1a(*hash, u8::try_from(class).unwrap_or(u8::MAX));
        }
        Ok(correct)
    };
    let mut correct = [0u32; ADAPT_CLASSIFIERS];
    let mut nfe = 0u32;
    for (k, c) in (0u64..).zip(correct.iter_mut()) {
        let (w, used) = synthesize_task(
            &model,
            &task,
            guidance,
            derive_seed(seed, k),
            solver,
            steps,
            ws,
        )?;
        on_synthesis(k);
        nfe = used;
        *c = classify(w, &mut hash)?;
    }
    let (w, _) = synthesize_task(&model, &task, 0.0, derive_seed(seed, 0), solver, steps, ws)?;
    let null_correct = classify(w, &mut 0)?;
    Ok(AdaptReport {
        support: u32::try_from(SUPPORT_FRAMES).unwrap_or(u32::MAX),
        frames: u32::from(frames),
        correct,
        null_correct,
        nfe,
        prediction_hash: hash,
    })
}
