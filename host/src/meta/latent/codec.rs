//! A trained VAE loaded from its directory: raw classifier weights in, posterior means out, and
//! latents back to raw weights. Latent meta-models carry a copy of it.

use std::path::Path;

use burn::module::Module;
use burn::record::{BinFileRecorder, FullPrecisionSettings};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::config::{Symmetry, VaeConfig};
use super::network::Vae;
use super::train::VaeSummary;
use crate::arch::{Block, Layout};
use crate::backend::values;
use crate::error::MetaError;
use crate::meta::files::read_json;
use crate::meta::normalize::Normalizer;
use crate::meta::symmetry::HiddenLayers;

/// The settings file of a VAE directory.
pub const SETTINGS: &str = "vae.json";
/// The VAE's weights (burn record, without the `.bin` extension burn adds).
pub const WEIGHTS: &str = "vae";
/// The VAE's summary, written last: its presence marks a finished VAE.
pub const SUMMARY: &str = "vae-summary.json";
/// The files a latent meta-model copies from its VAE (besides the weights file).
pub const FILES: [&str; 4] = [
    SETTINGS,
    SUMMARY,
    crate::meta::files::NORMALIZER,
    crate::meta::files::LAYOUT,
];

/// The folder of a latent meta-model's directory that holds its VAE.
pub const MODEL_FOLDER: &str = "vae";

/// Rows per forward pass when encoding or decoding many classifiers.
const CHUNK: usize = 1024;

/// A trained VAE.
pub struct Codec<B: Backend> {
    /// Its settings.
    pub config: VaeConfig,
    /// Per-block standardization of the (canonically ordered) weights it encodes.
    pub normalizer: Normalizer,
    /// The classifiers' layout.
    pub layout: Layout,
    /// The networks.
    pub vae: Vae<B>,
    /// SHA-256 of the weights file it was loaded from (`None` for one assembled in memory).
    pub weights_sha256: Option<String>,
    symmetry: Option<HiddenLayers>,
}

/// The layout of a latent state of `dim` values: one block `z`.
pub fn latent_layout(dim: usize) -> Layout {
    Layout {
        blocks: vec![Block {
            name: "z".into(),
            shape: vec![dim],
            fan_in: 1,
            bound: 1.0,
        }],
    }
}

impl<B: Backend> Codec<B> {
    /// Assembles a codec from its parts.
    pub fn new(config: VaeConfig, normalizer: Normalizer, layout: Layout, vae: Vae<B>) -> Self {
        let symmetry = match config.symmetry {
            Symmetry::Sort => HiddenLayers::of(&layout),
            Symmetry::None => None,
        };
        Self {
            config,
            normalizer,
            layout,
            vae,
            weights_sha256: None,
            symmetry,
        }
    }

    /// Whether the VAE puts classifiers in canonical unit order (`--symmetry sort`).
    pub fn sorts(&self) -> bool {
        self.symmetry.is_some()
    }

    /// Loads the finished VAE in `dir`, checking that its files belong together and that the
    /// weights have the hash its summary recorded.
    ///
    /// # Errors
    /// [`MetaError::File`] naming the missing, altered or mismatched file.
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self, MetaError> {
        if !dir.join(SETTINGS).is_file() {
            return Err(MetaError::file(
                dir,
                "not a VAE directory (written by `nmflow vae`): it has no vae.json",
            ));
        }
        let config: VaeConfig = read_json(&dir.join(SETTINGS))?;
        let summary_path = dir.join(SUMMARY);
        if !summary_path.is_file() {
            return Err(MetaError::file(
                dir,
                "VAE training did not finish (no vae-summary.json); run the same `nmflow vae` again to resume it",
            ));
        }
        let summary: VaeSummary = read_json(&summary_path)?;
        let normalizer: Normalizer = read_json(&dir.join(crate::meta::files::NORMALIZER))?;
        let layout: Layout = read_json(&dir.join(crate::meta::files::LAYOUT))?;
        let blocks: Vec<usize> = layout.blocks.iter().map(Block::len).collect();
        if layout.num_params() != config.shape.dim || normalizer.block_len != blocks {
            return Err(MetaError::file(
                dir.join(crate::meta::files::LAYOUT),
                format!(
                    "describes {}-parameter classifiers, but the VAE encodes {} values and the normalization {}; the files come from different VAEs",
                    layout.num_params(),
                    config.shape.dim,
                    normalizer.block_len.iter().sum::<usize>()
                ),
            ));
        }
        let bin = dir.join(WEIGHTS).with_extension("bin");
        let bytes = std::fs::read(&bin).map_err(|e| MetaError::file(&bin, e))?;
        let sha256 = crate::io::sha256_hex(&bytes);
        if sha256 != summary.vae_sha256 {
            return Err(MetaError::file(
                &bin,
                "sha256 differs from the one vae-summary.json recorded: the weights were altered or damaged",
            ));
        }
        let vae = config
            .shape
            .init::<B>(device)
            .load_file(
                dir.join(WEIGHTS),
                &BinFileRecorder::<FullPrecisionSettings>::new(),
                device,
            )
            .map_err(|e| MetaError::file(&bin, e))?;
        Ok(Self {
            weights_sha256: Some(sha256),
            ..Self::new(config, normalizer, layout, vae)
        })
    }

    /// Latent values per classifier.
    pub fn latent(&self) -> usize {
        self.config.shape.latent
    }

    /// Raw weights (`[n, P]`) in the VAE's input form: canonical unit order (with
    /// `--symmetry sort`), standardized.
    pub fn prepare(&self, raw: &[f32]) -> Vec<f32> {
        let mut x = raw.to_vec();
        self.canonicalize(&mut x);
        self.normalizer.apply(&mut x);
        x
    }

    /// Puts raw weight rows (`[n, P]`) into the VAE's canonical unit order in place (nothing
    /// with `--symmetry none`).
    pub fn canonicalize(&self, rows: &mut [f32]) {
        if let Some(sym) = &self.symmetry {
            sym.canonicalize(rows);
        }
    }

    /// The posterior means of raw weights (`[n, P]`): `[n, L]`.
    ///
    /// # Errors
    /// [`MetaError::Tensor`] when the backend's values cannot be read back.
    pub fn encode(&self, raw: &[f32], device: &B::Device) -> Result<Vec<f32>, MetaError> {
        let p = self.config.shape.dim;
        let x = self.prepare(raw);
        let mut out = Vec::with_capacity(x.len() / p * self.latent());
        for chunk in x.chunks(CHUNK * p) {
            let n = chunk.len() / p;
            let t = Tensor::<B, 2>::from_data(TensorData::new(chunk.to_vec(), [n, p]), device);
            out.extend(values::<f32>(self.vae.encode(t).0.into_data())?);
        }
        Ok(out)
    }

    /// The raw weights (`[n, P]`, canonical unit order) decoded from latents `z` (`[n, L]`).
    ///
    /// # Errors
    /// [`MetaError::Tensor`] when the backend's values cannot be read back.
    pub fn decode(&self, z: &[f32], device: &B::Device) -> Result<Vec<f32>, MetaError> {
        let l = self.latent();
        let mut out = Vec::with_capacity(z.len() / l * self.config.shape.dim);
        for chunk in z.chunks(CHUNK * l) {
            let n = chunk.len() / l;
            let t = Tensor::<B, 2>::from_data(TensorData::new(chunk.to_vec(), [n, l]), device);
            out.extend(values::<f32>(self.vae.decode(t).into_data())?);
        }
        self.normalizer.invert(&mut out);
        Ok(out)
    }
}

impl<B: burn::tensor::backend::AutodiffBackend> Codec<B> {
    /// The same codec on the inner backend.
    pub fn valid(&self) -> Codec<B::InnerBackend> {
        use burn::module::AutodiffModule;
        Codec {
            weights_sha256: self.weights_sha256.clone(),
            ..Codec::new(
                self.config.clone(),
                self.normalizer.clone(),
                self.layout.clone(),
                self.vae.valid(),
            )
        }
    }
}

/// Copies a finished VAE's files from `from` into the folder `to` (created), each written
/// atomically.
///
/// # Errors
/// [`MetaError::File`] naming the file that could not be read or written.
pub fn copy_files(from: &Path, to: &Path) -> Result<(), MetaError> {
    std::fs::create_dir_all(to).map_err(|e| MetaError::file(to, e))?;
    let weights = format!("{WEIGHTS}.bin");
    for name in FILES.iter().copied().chain([weights.as_str()]) {
        let src = from.join(name);
        let bytes = std::fs::read(&src).map_err(|e| MetaError::file(&src, e))?;
        let dst = to.join(name);
        crate::io::write_atomic(&dst, &bytes).map_err(|e| MetaError::file(&dst, e))?;
    }
    Ok(())
}

/// SHA-256 of a VAE directory's weights file.
///
/// # Errors
/// [`MetaError::File`] when it cannot be read.
pub fn weights_sha256(dir: &Path) -> Result<String, MetaError> {
    let bin = dir.join(WEIGHTS).with_extension("bin");
    let bytes = std::fs::read(&bin).map_err(|e| MetaError::file(&bin, e))?;
    Ok(crate::io::sha256_hex(&bytes))
}
