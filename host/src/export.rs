//! `nmflow export`: a trained meta-model → one quantized, postcard-serialized model file for the
//! device runtime (see `docs/wire-format.md`).
//!
//! Field weights are quantized symmetrically per output row: `scale = max|w_row| / 127`,
//! `q = round(w / scale)` in −127..=127, so every weight's error is at most `scale / 2`.

use std::path::Path;

use nmflow_format::{
    Activation, ClassLift, ClassifierLayer, ConditionSection, DecoderHead, FieldLayer, FieldNet,
    FieldWeights, LatentSection, ModelFile, Normalization, SetBlock, SetNet, SolverKind,
    SourceKind, TimeEmbedding, UnitsHead,
};
use serde::Serialize;

use crate::arch::{Arch, Layout};
use crate::backend::Cpu;
use crate::error::{MetaError, UsageError};
use crate::flow::solver::Solver;
use crate::io::{sha256_hex, write_atomic};
use crate::meta::field::DenseLayer;
use crate::meta::latent::network::DecoderKind;
use crate::meta::sample::MetaModel;
use crate::meta::source::Source;

/// Weight encoding of the exported field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Quant {
    /// int8 weights, one f32 scale per output row.
    Int8,
    /// f32 weights.
    F32,
}

/// Per-layer quantization error.
#[derive(Clone, Debug, Serialize)]
pub struct LayerError {
    /// Layer index (in the model file's order).
    pub layer: usize,
    /// Layer name (its index in an MLP field; its role in a set field, e.g. `block0.local`).
    pub name: String,
    /// `d_out × d_in`.
    pub shape: [usize; 2],
    /// Largest absolute weight error.
    pub max_abs: f32,
    /// RMS error relative to the RMS weight.
    pub rel_rms: f32,
}

/// What `nmflow export` reports.
#[derive(Clone, Debug, Serialize)]
pub struct ExportReport {
    /// File size.
    pub bytes: usize,
    /// Weight encoding.
    pub quant: Quant,
    /// `mlp` or `set`.
    pub field_kind: &'static str,
    /// Bytes of field weights (+ scales) and biases.
    pub field_bytes: usize,
    /// Parameters per synthesized classifier.
    pub num_params: usize,
    /// Quantization error per field layer (zero for f32), then per decoder layer of a latent
    /// model.
    pub layers: Vec<LayerError>,
    /// A latent model's decoder (absent for a model whose field runs on the weights).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latent: Option<LatentReport>,
    /// Bytes of a class-conditioned model's encoder and lift (weights, scales, biases and the
    /// null token); absent for an unconditional model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition_bytes: Option<usize>,
    /// The output path.
    pub out: std::path::PathBuf,
}

/// What the file holds of a latent model's decoder.
#[derive(Clone, Debug, Serialize)]
pub struct LatentReport {
    /// Latent values (the ODE state on the device).
    pub dim: usize,
    /// The decoder's structure.
    pub decoder: DecoderKind,
    /// Decoder parameters.
    pub decoder_params: usize,
    /// Bytes of decoder weights (+ scales) and biases.
    pub decoder_bytes: usize,
}

/// Symmetric per-row int8 quantization of a row-major `[d_out][d_in]` matrix: `(q, scales)`.
pub fn quantize_rows(w: &[f32], d_in: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(w.len() / d_in.max(1));
    for row in w.chunks_exact(d_in.max(1)) {
        let max = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 0.0 };
        scales.push(scale);
        q.extend(row.iter().map(|&v| {
            if scale > 0.0 {
                (v / scale).round().clamp(-127.0, 127.0) as i8
            } else {
                0
            }
        }));
    }
    (q, scales)
}

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A refusal to export the model in a directory: a usage error naming it.
fn refusal(model_dir: &Path, why: String) -> MetaError {
    MetaError::Usage(UsageError(format!(
        "{}: cannot export: {why}",
        model_dir.display()
    )))
}

/// The classifier's layer table (dense layers only; ReLU between them).
fn classifier_layers(
    layout: &Layout,
    model_dir: &Path,
) -> Result<heapless::Vec<ClassifierLayer, { nmflow_format::MAX_CLASSIFIER_LAYERS }>, MetaError> {
    if layout
        .blocks
        .iter()
        .any(|b| b.shape.len() != if b.name.ends_with("bias") { 1 } else { 2 })
    {
        return Err(refusal(
            model_dir,
            format!(
                "only MLP classifiers run on the device ({} blocks are not dense)",
                Arch::CnnS
            ),
        ));
    }
    let n_cls = layout.blocks.len() / 2;
    let mut classifier = heapless::Vec::new();
    for l in 0..n_cls {
        let w = &layout.blocks[2 * l];
        let layer = ClassifierLayer {
            d_in: w.shape[1] as u32,
            d_out: w.shape[0] as u32,
            activation: if l + 1 < n_cls {
                Activation::Relu
            } else {
                Activation::Identity
            },
            init_bound: w.bound as f32,
        };
        classifier.push(layer).map_err(|_| {
            refusal(
                model_dir,
                format!(
                    "more than {} classifier layers",
                    nmflow_format::MAX_CLASSIFIER_LAYERS
                ),
            )
        })?;
    }
    Ok(classifier)
}

/// One field layer's bytes: weights, per-row scales (int8; empty for f32) and bias.
type LayerBytes = (Vec<u8>, Vec<u8>, Vec<u8>);

/// Encodes every field layer and measures its quantization error.
fn encode_layers(
    layers: &[DenseLayer],
    names: &[String],
    quant: Quant,
) -> (Vec<LayerBytes>, Vec<LayerError>) {
    let mut owned = Vec::new();
    let mut errors = Vec::new();
    for (i, (l, name)) in layers.iter().zip(names).enumerate() {
        match quant {
            Quant::Int8 => {
                let (q, scales) = quantize_rows(&l.weight, l.d_in);
                let (mut max_abs, mut se, mut ss) = (0.0f32, 0.0f64, 0.0f64);
                for (j, &w) in l.weight.iter().enumerate() {
                    let deq = f32::from(q[j]) * scales[j / l.d_in];
                    max_abs = max_abs.max((deq - w).abs());
                    se += f64::from(deq - w).powi(2);
                    ss += f64::from(w).powi(2);
                }
                errors.push(LayerError {
                    layer: i,
                    name: name.clone(),
                    shape: [l.d_out, l.d_in],
                    max_abs,
                    rel_rms: (se / ss.max(1e-30)).sqrt() as f32,
                });
                owned.push((
                    q.iter().map(|&v| v as u8).collect(),
                    le_bytes(&scales),
                    le_bytes(&l.bias),
                ));
            }
            Quant::F32 => {
                errors.push(LayerError {
                    layer: i,
                    name: name.clone(),
                    shape: [l.d_out, l.d_in],
                    max_abs: 0.0,
                    rel_rms: 0.0,
                });
                owned.push((le_bytes(&l.weight), Vec::new(), le_bytes(&l.bias)));
            }
        }
    }
    (owned, errors)
}

/// A file layer borrowing its encoded bytes.
fn file_layer<'a>(
    l: &DenseLayer,
    (w, s, b): &'a LayerBytes,
    quant: Quant,
    activation: Activation,
) -> FieldLayer<'a> {
    FieldLayer {
        d_in: l.d_in as u32,
        d_out: l.d_out as u32,
        activation,
        weights: match quant {
            Quant::Int8 => FieldWeights::Int8 { q: w, scales: s },
            Quant::F32 => FieldWeights::F32 { w },
        },
        bias: b,
    }
}

/// Bytes of encoded layers.
fn bytes_of(owned: &[LayerBytes]) -> usize {
    owned
        .iter()
        .map(|(w, s, b)| w.len() + s.len() + b.len())
        .sum()
}

/// A latent model's decoder, encoded: its layers (trunk then head), their bytes and errors.
struct EncodedDecoder {
    layers: Vec<DenseLayer>,
    trunk: usize,
    kind: DecoderKind,
    owned: Vec<LayerBytes>,
    errors: Vec<LayerError>,
}

impl EncodedDecoder {
    fn new(
        codec: &crate::meta::latent::codec::Codec<Cpu>,
        quant: Quant,
        first: usize,
    ) -> Result<Self, MetaError> {
        let d = codec.vae.decoder_layers()?;
        let trunk = d.trunk.len();
        let mut names: Vec<String> = (0..trunk).map(|i| format!("decoder.trunk{i}")).collect();
        match d.kind {
            DecoderKind::Mlp => names.push("decoder.out".into()),
            DecoderKind::Units => names
                .extend(["slots", "mix", "inner", "token", "bias"].map(|n| format!("decoder.{n}"))),
        }
        let mut layers = d.trunk;
        layers.extend(d.head);
        let (owned, mut errors) = encode_layers(&layers, &names, quant);
        for e in &mut errors {
            e.layer += first;
        }
        Ok(Self {
            layers,
            trunk,
            kind: d.kind,
            owned,
            errors,
        })
    }

    /// The file's latent section, borrowing this decoder's bytes and `state`'s statistics.
    fn section<'a>(
        &'a self,
        dim: usize,
        state: Normalization<'a>,
        quant: Quant,
        refuse: &dyn Fn(String) -> MetaError,
    ) -> Result<LatentSection<'a>, MetaError> {
        let mut all = self
            .layers
            .iter()
            .zip(&self.owned)
            .enumerate()
            .map(|(i, (l, b))| {
                let act = if i < self.trunk {
                    Activation::Silu
                } else {
                    Activation::Identity
                };
                file_layer(l, b, quant, act)
            });
        let mut trunk = heapless::Vec::new();
        for l in all.by_ref().take(self.trunk) {
            trunk.push(l).map_err(|_| {
                refuse(format!(
                    "a decoder deeper than {} layers (--depth of nmflow vae)",
                    nmflow_format::MAX_FIELD_LAYERS
                ))
            })?;
        }
        let rest: Vec<FieldLayer<'a>> = all.collect();
        let head = match (self.kind, rest.as_slice()) {
            (DecoderKind::Mlp, [out]) => DecoderHead::Dense(*out),
            (DecoderKind::Units, [slots, mix, inner, token, bias]) => {
                DecoderHead::Units(UnitsHead {
                    slots: *slots,
                    mix: *mix,
                    inner: *inner,
                    token: *token,
                    bias: *bias,
                })
            }
            _ => {
                return Err(refuse(
                    "the VAE's decoder has an unexpected number of layers".into(),
                ));
            }
        };
        Ok(LatentSection {
            dim: dim as u32,
            state,
            trunk,
            head,
        })
    }
}

/// The model id: the first 16 bytes of the SHA-256 of the model's `config.json`.
fn model_id(model_dir: &Path) -> Result<[u8; 16], MetaError> {
    let path = model_dir.join(crate::meta::files::CONFIG);
    let config_bytes = std::fs::read(&path).map_err(|e| MetaError::file(&path, e))?;
    let mut model_id = [0u8; 16];
    let digest = sha256_hex(&config_bytes);
    for (k, slot) in model_id.iter_mut().enumerate() {
        *slot = u8::from_str_radix(&digest[2 * k..2 * k + 2], 16).unwrap_or(0);
    }
    Ok(model_id)
}

/// Exports the model in `model_dir` to `out`.
///
/// # Errors
/// [`UsageError`] (as [`MetaError::Usage`]) for a model the format cannot represent (a potential
/// field, a CNN classifier, more layers than the format holds, an adaptive solver), file errors.
pub fn export(
    model_dir: &Path,
    quant: Quant,
    solver: Option<Solver>,
    steps: Option<usize>,
    out: &Path,
) -> Result<ExportReport, MetaError> {
    let model = MetaModel::<Cpu>::load(model_dir, &Default::default())?;
    let refuse = |why: String| refusal(model_dir, why);
    let condition = match &model.condition {
        Some(net) => Some(net.exported()?.ok_or_else(|| {
            refuse(
                "a `--condition support` model's flattened task embedding is not carried by the \
                 model file; the device runs the class-equivariant field (`train --condition classes`)"
                    .into(),
            )
        })?),
        None => None,
    };
    if model.latent.is_some() && !matches!(model.config.source, Source::Gaussian { .. }) {
        return Err(refuse(
            "a latent model runs on the device only from an N(0, σ²) source (the encoded-Kaiming \
             source would need the VAE's encoder there); train it with --source gaussian"
                .into(),
        ));
    }
    // The field's layers as plain data, and their names in the file's order.
    let (set_hidden, layers) = if let Some((hidden, layers)) = model.field.set_dense_layers()? {
        (Some(hidden), layers)
    } else if let Some(layers) = model.field.dense_layers()? {
        (None, layers)
    } else {
        return Err(refuse(
            "a potential (NM-JKO) field has no explicit velocity network to export; \
             train with --field mlp or --field set"
                .into(),
        ));
    };
    let names: Vec<String> = match set_hidden {
        Some(_) => {
            let blocks = (layers.len() - 5) / 3;
            let mut names: Vec<String> = vec!["embed".into(), "global_in".into(), "time_in".into()];
            for b in 0..blocks {
                names.extend(["local", "pooled", "mlp"].map(|p| format!("block{b}.{p}")));
            }
            names.extend(["token_out".into(), "global_out".into()]);
            names
        }
        // An MLP fine-tuned with `--diagonal` holds its per-coordinate term as the last layer.
        None => (0..layers.len())
            .map(
                |i| match i + 1 == layers.len() && model.config.field.diagonal {
                    true => "diagonal".into(),
                    false => i.to_string(),
                },
            )
            .collect(),
    };
    // Layers of the field network proper; the per-coordinate term, when there, follows them.
    let chain = layers.len() - usize::from(set_hidden.is_none() && model.config.field.diagonal);
    let layout = &model.layout;
    let classifier = classifier_layers(layout, model_dir)?;
    // The file's normalization maps standardized weights to raw ones: the field's own for a
    // weight-space model, the VAE's (whose decoder writes standardized weights) for a latent one;
    // the latent state's statistics go into the latent section.
    let weights_norm = model
        .latent
        .as_ref()
        .map_or(&model.normalizer, |c| &c.normalizer);
    let mean = le_bytes(&weights_norm.mean);
    let std = le_bytes(&weights_norm.std);
    let state_mean = le_bytes(&model.normalizer.mean);
    let state_std = le_bytes(&model.normalizer.std);
    // Owned tensors first, then a file that borrows them.
    let (owned, mut errors) = encode_layers(&layers, &names, quant);
    let decoder = match &model.latent {
        Some(codec) => Some(EncodedDecoder::new(codec, quant, layers.len())?),
        None => None,
    };
    let (cond_layers, cond_null) = condition
        .map(|c| {
            let mut all = vec![c.feature, c.head, c.inject];
            all.extend(c.lift);
            (all, le_bytes(&c.null))
        })
        .unwrap_or_default();
    let (cond_owned, mut cond_errors) = encode_layers(
        &cond_layers,
        &crate::edge::CONDITION_LAYERS.map(String::from),
        quant,
    );
    for e in &mut cond_errors {
        e.layer += layers.len();
    }
    let file_layers: Vec<FieldLayer<'_>> = layers[..chain]
        .iter()
        .zip(&owned)
        .enumerate()
        .map(|(i, (l, b))| {
            // The set field's SiLUs are part of its architecture; its layers are affine.
            let act = if set_hidden.is_some() || i + 1 == chain {
                Activation::Identity
            } else {
                Activation::Silu
            };
            file_layer(l, b, quant, act)
        })
        .collect();
    let latent = match (&decoder, &model.latent) {
        (Some(d), Some(codec)) => Some(d.section(
            codec.latent(),
            Normalization {
                mean: &state_mean,
                std: &state_std,
            },
            quant,
            &refuse,
        )?),
        _ => None,
    };
    let field = match set_hidden {
        Some(hidden) => {
            let [embed, global_in, time_in] = [file_layers[0], file_layers[1], file_layers[2]];
            let n = file_layers.len();
            let mut blocks = heapless::Vec::new();
            for b in file_layers[3..n - 2].chunks_exact(3) {
                blocks
                    .push(SetBlock {
                        local: b[0],
                        pooled: b[1],
                        mlp: b[2],
                    })
                    .map_err(|_| {
                        refuse(format!(
                            "more than {} set-field blocks (--depth)",
                            nmflow_format::MAX_SET_BLOCKS
                        ))
                    })?;
            }
            FieldNet::Set(SetNet {
                hidden: hidden as u32,
                embed,
                global_in,
                time_in,
                blocks,
                token_out: file_layers[n - 2],
                global_out: file_layers[n - 1],
            })
        }
        None => FieldNet::Mlp(heapless::Vec::from_slice(&file_layers).map_err(|_| {
            refuse(format!(
                "more than {} field layers",
                nmflow_format::MAX_FIELD_LAYERS
            ))
        })?),
    };
    let steps = steps.unwrap_or(model.config.solver_steps);
    let file = ModelFile {
        model_id: model_id(model_dir)?,
        classifier,
        source: match model.config.source {
            Source::Kaiming => SourceKind::Kaiming,
            Source::Gaussian { std } => SourceKind::Gaussian { std },
        },
        normalization: Normalization {
            mean: &mean,
            std: &std,
        },
        time: TimeEmbedding {
            dim: model.config.field.time_dim as u32,
            max_frequency: crate::meta::field::MAX_FREQUENCY,
        },
        field,
        solver: match solver.unwrap_or(model.config.solver) {
            Solver::Euler => SolverKind::Euler,
            Solver::Heun => SolverKind::Heun,
            Solver::Rk4 => SolverKind::Rk4,
            Solver::Dopri5 => {
                return Err(refuse(
                    "the device runtime integrates with fixed steps; pass --solver euler, heun, rk4 or sde"
                        .into(),
                ));
            }
            Solver::Sde if steps < 2 => {
                return Err(refuse(format!(
                    "the memoryless SDE takes at least 2 steps (one ODE step to t0, then Euler–Maruyama); got {steps}"
                )));
            }
            Solver::Sde => SolverKind::Sde,
        },
        steps: u16::try_from(steps).map_err(|_| {
            refuse(format!(
                "{steps} steps do not fit the format (at most 65535)"
            ))
        })?,
        shift: None,
        latent,
        condition: match (&model.config.condition, cond_layers.is_empty()) {
            (Some(cfg), false) => Some(condition_section(
                cfg,
                &cond_layers,
                &cond_owned,
                &cond_null,
                quant,
                &refuse,
            )?),
            _ => None,
        },
        step_input: model.config.field.step_input,
        diagonal: layers[chain..]
            .iter()
            .zip(&owned[chain..])
            .map(|(l, b)| file_layer(l, b, quant, Activation::Identity))
            .next(),
        sde_t0: model.config.sde_t0() as f32,
    };
    let bytes = file.encode().map_err(|e| MetaError::file(out, e))?;
    write_atomic(out, &bytes).map_err(|e| MetaError::file(out, e))?;
    let field_bytes = bytes_of(&owned);
    let latent = match (&decoder, &model.latent) {
        (Some(d), Some(codec)) => {
            errors.extend(d.errors.iter().cloned());
            Some(LatentReport {
                dim: codec.latent(),
                decoder: d.kind,
                decoder_params: codec.config.shape.decoder_params(),
                decoder_bytes: bytes_of(&d.owned),
            })
        }
        _ => None,
    };
    errors.extend(cond_errors);
    Ok(ExportReport {
        bytes: bytes.len(),
        quant,
        field_kind: if set_hidden.is_some() { "set" } else { "mlp" },
        field_bytes,
        num_params: layout.num_params(),
        layers: errors,
        latent,
        condition_bytes: (!cond_layers.is_empty()).then(|| bytes_of(&cond_owned) + cond_null.len()),
        out: out.into(),
    })
}

/// The condition section of a class-conditioned model, borrowing its encoded layers.
fn condition_section<'a>(
    cfg: &crate::meta::condition::config::ConditionConfig,
    layers: &[DenseLayer],
    owned: &'a [LayerBytes],
    null: &'a [u8],
    quant: Quant,
    refuse: &dyn Fn(String) -> MetaError,
) -> Result<ConditionSection<'a>, MetaError> {
    let l: Vec<FieldLayer<'a>> = layers
        .iter()
        .zip(owned)
        .map(|(l, b)| file_layer(l, b, quant, Activation::Identity))
        .collect();
    let [
        feature,
        head,
        inject,
        class_in,
        pair_in,
        to_token,
        to_global,
        from_token,
        pair_mix,
        pair_out,
        from_global,
        class_mix,
        bias_out,
    ] = l[..]
    else {
        return Err(refuse(
            "the condition network has an unexpected number of layers".into(),
        ));
    };
    Ok(ConditionSection {
        shots: u16::try_from(cfg.shots).unwrap_or(u16::MAX),
        guidance: 1.0,
        feature,
        head,
        null,
        inject,
        lift: ClassLift {
            class_in,
            pair_in,
            to_token,
            to_global,
            from_token,
            pair_mix,
            pair_out,
            from_global,
            class_mix,
            bias_out,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantization_error_is_at_most_half_a_step() {
        let w = [0.5f32, -1.27, 0.0, 0.003, 2.0, -2.0, 1.0, 0.25];
        let (q, s) = quantize_rows(&w, 4);
        assert_eq!(q[1], -127);
        assert!((s[0] - 1.27 / 127.0).abs() < 1e-9);
        assert_eq!(q[4], 127);
        for (j, &v) in w.iter().enumerate() {
            let deq = f32::from(q[j]) * s[j / 4];
            assert!((deq - v).abs() <= s[j / 4] / 2.0 + 1e-7);
        }
        let (qz, sz) = quantize_rows(&[0.0; 3], 3);
        assert_eq!((qz, sz), (vec![0, 0, 0], vec![0.0]));
    }
}
