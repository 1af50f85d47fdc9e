//! `nmflow vae`: train a VAE over a zoo's checkpoints, for latent meta-models.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use burn::tensor::backend::AutodiffBackend;

use crate::backend::{BackendJob, dispatch};
use crate::data;
use crate::meta::config::{LrSchedule, manifest_hash};
use crate::meta::field::SetDims;
use crate::meta::latent::config::{FunctionalTarget, Symmetry, VaeConfig};
use crate::meta::latent::network::{DecoderKind, VaeShape};
use crate::meta::latent::train::{VaeEnv, VaeSummary, train_vae};
use crate::zoo::Manifest;

/// Arguments of `nmflow vae`.
#[derive(Debug, Args)]
pub struct VaeArgs {
    /// The zoo directory (written by `nmflow zoo`); every checkpoint of its training runs trains
    /// the VAE, its held-out runs measure it.
    #[arg(long)]
    pub zoo: PathBuf,
    /// Output VAE directory (vae.json, vae.bin, normalizer.json, layout.json, loss.csv,
    /// loss.png, vae-summary.json); `nmflow train --latent` takes it.
    #[arg(long)]
    pub out: PathBuf,
    /// Latent values per classifier (smaller than its parameter count). docs/explorations.md: on
    /// mnist8 `mlp:64-16-10`, 16 generated better classifiers than 32 or 64 (which reconstruct
    /// better).
    #[arg(long)]
    pub latent: usize,
    /// Weight β of the KL term, per weight coordinate (β = 1: the ELBO with a Gaussian likelihood
    /// of variance ½ per standardized weight). Small β keeps more of each classifier; large β
    /// makes latents closer to N(0, I).
    #[arg(long, default_value_t = 0.01)]
    pub beta: f32,
    /// Weight of the functional term: the cross-entropy, on the zoo's training images, of the
    /// classifiers decoded from posterior samples of training runs' final weights (0: off). It
    /// trades diversity for accuracy: on MNIST `mlp:784-10-10` with a 32-wide decoder, 1 makes
    /// nearly one classifier (two generated ones disagree on 1 % of test images, trained runs
    /// on 7 %), 0.15 keeps about half the runs' disagreement at 0.7 pp less accuracy, 0 fails
    /// (docs/explorations.md, one seed each). With `--functional-target teacher`, 10 and
    /// `--eval-every` equal to `--steps` (keep the last VAE) reached the set field's accuracy in a
    /// smaller device file.
    #[arg(long, default_value_t = 1.0)]
    pub functional_weight: f32,
    /// What the functional term scores a decoded classifier against: `labels` (the images'
    /// labels) or `teacher` (the predictions of the training run it was encoded from, so the
    /// decoder keeps the runs' different behaviours instead of converging on one classifier).
    #[arg(long, value_enum, default_value_t = FunctionalTarget::Labels)]
    pub functional_target: FunctionalTarget,
    /// Training images per step for the functional term.
    #[arg(long, default_value_t = 256)]
    pub functional_batch: usize,
    /// Final weights per step decoded for the functional term.
    #[arg(long, default_value_t = 32)]
    pub functional_samples: usize,
    /// Hidden-unit permutation symmetry: `sort` puts every classifier into its canonical unit
    /// order before encoding (units sorted by their pre-activation on an all-ones input: one
    /// point per network instead of ∏ H_l! equivalent ones); `none` encodes the stored order.
    #[arg(long, value_enum, default_value_t = Symmetry::Sort)]
    pub symmetry: Symmetry,
    /// Width of the encoder's and decoder's hidden layers. The decoder's last layer holds width ×
    /// the classifier's parameter count: for MNIST `mlp:784-10-10`, 32 makes an int8 device file
    /// (369,538 bytes) smaller than the set field's (docs/explorations.md, "A narrow decoder").
    #[arg(long, default_value_t = 512)]
    pub hidden: usize,
    /// Hidden layers of the encoder, and of the decoder.
    #[arg(long, default_value_t = 2)]
    pub depth: usize,
    /// Decoder: `mlp` (from z to the whole weight vector) or `units` (one-hidden-layer MLP
    /// classifiers: every hidden unit's weights decoded by a shared two-layer network from the
    /// trunk's output and a learned slot embedding; its output layer has one unit's size, so it
    /// is far smaller for wide inputs such as MNIST's; docs/explorations.md: below `mlp` so far).
    #[arg(long, value_enum, default_value_t = DecoderKind::Mlp)]
    pub decoder: DecoderKind,
    /// Optimizer steps.
    #[arg(long, default_value_t = 4000)]
    pub steps: usize,
    /// Checkpoints (of any training run and step) per minibatch.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Learning-rate schedule: `constant` or `cosine` (annealed towards zero at the last step).
    #[arg(long, value_enum, default_value_t = LrSchedule::Cosine)]
    pub lr_schedule: LrSchedule,
    /// Steps between held-out evaluations (the VAE with the best held-out objective is kept)
    /// and checkpoints.
    #[arg(long, default_value_t = 200)]
    pub eval_every: usize,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Data folder [default: $NMFLOW_DATA, else ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Replace a VAE trained with other settings in --out.
    #[arg(long)]
    pub force: bool,
    /// Compute device: `cpu`, or `cuda` (needs a build with `--features cuda`).
    #[arg(long, value_enum, default_value_t = crate::backend::DeviceKind::Cpu)]
    pub device: crate::backend::DeviceKind,
    /// Print one JSON object (the summary: held-out reconstruction, decoded accuracy, …).
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs `nmflow vae`.
///
/// # Errors
/// Usage errors (settings), zoo, data and file errors.
pub fn exec(a: &VaeArgs) -> Result<()> {
    let manifest = Manifest::read(&a.zoo)?;
    let cfg = VaeConfig {
        shape: VaeShape {
            dim: manifest.num_params,
            latent: a.latent,
            hidden: a.hidden,
            depth: a.depth,
            decoder: a.decoder,
            units: SetDims::of(&manifest.layout),
        },
        beta: a.beta,
        functional_weight: a.functional_weight,
        functional_target: a.functional_target,
        functional_batch: a.functional_batch,
        functional_samples: a.functional_samples,
        symmetry: a.symmetry,
        steps: a.steps,
        batch_size: a.batch_size,
        lr: a.lr,
        lr_schedule: a.lr_schedule,
        eval_every: a.eval_every,
        seed: a.seed,
        zoo_manifest_sha256: manifest_hash(&a.zoo)?,
        zoo: a.zoo.display().to_string(),
    };
    cfg.validate(&manifest)?;
    let env = VaeEnv {
        data_dir: data::data_dir(a.data_dir.clone()),
        quiet: a.quiet,
        force: a.force,
    };
    struct Job<'a>(&'a VaeConfig, &'a VaeArgs, &'a VaeEnv);
    impl BackendJob for Job<'_> {
        type Output = VaeSummary;
        fn run<B: AutodiffBackend>(self, device: &B::Device) -> Result<VaeSummary> {
            Ok(train_vae::<B>(
                self.0,
                &self.1.zoo,
                &self.1.out,
                self.2,
                device,
            )?)
        }
    }
    let r = dispatch(a.device, Job(&cfg, a, &env))?;
    super::emit(a.json, &r, || {
        let rec = r.reconstruction.as_ref().map_or(String::new(), |m| {
            format!(
                "; held-out classifiers {:.2} % → decoded {:.2} % (agreement {:.3})",
                100.0 * m.original.acc_mean,
                100.0 * m.decoded.acc_mean,
                m.agreement
            )
        });
        let diversity = r
            .train_reconstruction
            .as_ref()
            .and_then(|m| Some((m.disagreement_original?, m.disagreement_decoded?)))
            .map_or(String::new(), |(o, d)| {
                format!(
                    "; training runs disagree on {:.1} % of test images, decoded on {:.1} %",
                    100.0 * o,
                    100.0 * d
                )
            });
        format!(
            "vae (latent {}, {} steps, {:.1} s): held-out reconstruction {:.4} per value, KL {:.2}{rec}{diversity} → {}",
            a.latent,
            r.steps,
            r.seconds,
            r.heldout_reconstruction,
            r.heldout_kl,
            r.out.display()
        )
    })
}
