//! `nmflow export`: a trained field (and a latent model's decoder) → one model file for the device
//! runtime.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::export::{Quant, export};
use crate::flow::solver::Solver;

/// Arguments of `nmflow export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Model directory (written by `nmflow train` or `nmflow finetune`). A latent model
    /// (`train --latent`) is exported with its VAE's decoder and must have been trained from the
    /// Gaussian source (`--source gaussian`): the device draws its latent z₀ itself.
    #[arg(long)]
    pub model: PathBuf,
    /// Field weight encoding.
    #[arg(long, value_enum, default_value_t = Quant::Int8)]
    pub quant: Quant,
    /// Solver stored as the device default [default: the model's].
    #[arg(long, value_enum)]
    pub solver: Option<Solver>,
    /// Steps stored as the device default [default: the model's].
    #[arg(long)]
    pub steps: Option<usize>,
    /// Output model file (.nmf).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing --out file.
    #[arg(long)]
    pub force: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `nmflow export`.
///
/// # Errors
/// A field kind the format does not hold (a potential field: usage), an unreadable model, a failed write.
pub fn exec(a: &ExportArgs) -> Result<()> {
    super::refuse_existing(&a.out, a.force)?;
    let r = export(&a.model, a.quant, a.solver, a.steps, &a.out)?;
    super::emit(a.json, &r, || {
        let worst = r.layers.iter().map(|l| l.rel_rms).fold(0.0f32, f32::max);
        let mut text = String::from("layer         shape       max |error|  relative RMS error\n");
        for l in &r.layers {
            text.push_str(&format!(
                "{:<13} {:>4}×{:<5}  {:.3e}    {:.3e}\n",
                l.name, l.shape[0], l.shape[1], l.max_abs, l.rel_rms
            ));
        }
        text.push_str(&format!(
            "export: {} bytes ({:?} {} field, {} bytes of it) for {}-parameter classifiers; worst layer relative RMS quantization error {:.2e} → {}",
            r.bytes,
            r.quant,
            r.field_kind,
            r.field_bytes,
            r.num_params,
            worst,
            r.out.display()
        ));
        if let Some(l) = &r.latent {
            text.push_str(&format!(
                "; latent model: {}-value latent, {:?} decoder of {} parameters ({} bytes)",
                l.dim, l.decoder, l.decoder_params, l.decoder_bytes
            ));
        }
        text
    })
}
