//! Running exported model files with the device runtime on the host (`nmflow edge-eval`) and
//! describing them (`nmflow inspect model.nmf`).

use std::path::Path;
use std::time::Instant;

use nmflow_format::{FieldWeights, Header, ModelFile};
use nmflow_runtime::classifier::{Classifier, ClassifierScratch};
use nmflow_runtime::rng::derive_seed;
use nmflow_runtime::{ModelView, Workspace, synthesize_with};
use serde::Serialize;

use crate::data::{Dataset, DatasetView};
use crate::error::MetaError;
use crate::meta::eval::AccStats;

/// State capacity of the host-side workspace (parameters per classifier).
pub const HOST_MAX_PARAMS: usize = 65_536;
/// Activation capacity of the host-side workspace.
pub const HOST_MAX_WIDTH: usize = 4_096;

/// What `nmflow edge-eval` reports.
#[derive(Clone, Debug, Serialize)]
pub struct EdgeReport {
    /// File size.
    pub bytes: usize,
    /// `int8` or `f32`.
    pub quant: &'static str,
    /// Solver.
    pub solver: String,
    /// Solver steps.
    pub steps: u16,
    /// Field evaluations per synthesized classifier.
    pub nfe: u32,
    /// Multiply-accumulates of the field per synthesized classifier.
    pub macs_per_synthesis: u64,
    /// RAM a device workspace sized exactly for this model needs (bytes).
    pub workspace_bytes: usize,
    /// Classifiers synthesized.
    pub n: usize,
    /// Mean test accuracy.
    pub acc_mean: f64,
    /// Lowest test accuracy.
    pub acc_min: f64,
    /// Highest test accuracy.
    pub acc_max: f64,
    /// Host wall-clock milliseconds per synthesis (runtime code, one thread).
    pub ms_per_synthesis: f64,
}

/// Reads a model file.
///
/// # Errors
/// [`MetaError::File`] naming the file and the format error.
pub fn read_model(path: &Path) -> Result<Vec<u8>, MetaError> {
    let bytes = std::fs::read(path).map_err(|e| MetaError::file(path, e))?;
    ModelView::parse(&bytes).map_err(|e| MetaError::file(path, e))?;
    Ok(bytes)
}

/// Synthesizes classifier `i` of a batch drawn with `seed`, with the runtime.
///
/// # Errors
/// The runtime's error as [`MetaError::File`] on `path`.
pub fn synthesize_one(
    model: &ModelView<'_>,
    seed: u64,
    i: usize,
    ws: &mut Workspace<HOST_MAX_PARAMS, HOST_MAX_WIDTH>,
    path: &Path,
) -> Result<(Vec<f32>, u32), MetaError> {
    synthesize_with(
        model,
        derive_seed(seed, i as u64),
        model.file.solver,
        model.file.steps,
        ws,
    )
    .map(|(w, nfe)| (w.to_vec(), nfe))
    .map_err(|e| MetaError::file(path, e))
}

/// Synthesizes `n` classifiers with the runtime and measures them on `dataset`'s test split.
///
/// # Errors
/// File, format, capacity and data errors.
pub fn edge_eval(
    path: &Path,
    n: usize,
    seed: u64,
    dataset: DatasetView,
    data_dir: &Path,
) -> Result<EdgeReport, MetaError> {
    let bytes = read_model(path)?;
    let model = ModelView::parse(&bytes).map_err(|e| MetaError::file(path, e))?;
    let data = Dataset::load(dataset, data_dir)?;
    if data.test.dim != model.input_dim() {
        return Err(MetaError::file(
            path,
            format!(
                "the classifier takes {} inputs but dataset {dataset} has {}",
                model.input_dim(),
                data.test.dim
            ),
        ));
    }
    let mut ws: Box<Workspace<HOST_MAX_PARAMS, HOST_MAX_WIDTH>> = Box::default();
    let mut scratch: Box<ClassifierScratch<HOST_MAX_WIDTH>> = Box::default();
    let mut logits = vec![0.0f32; model.num_classes()];
    let mut accs = Vec::with_capacity(n);
    let mut nfe = 0;
    let mut synth_seconds = 0.0;
    for i in 0..n {
        let t0 = Instant::now();
        let (w, used) = synthesize_one(&model, seed, i, &mut ws, path)?;
        synth_seconds += t0.elapsed().as_secs_f64();
        nfe = used;
        let clf = Classifier::new(&model, &w).map_err(|e| MetaError::file(path, e))?;
        let correct = data
            .test
            .x
            .chunks_exact(data.test.dim)
            .zip(&data.test.y)
            .filter(|(x, y)| {
                clf.logits(x, &mut scratch, &mut logits)
                    .is_ok_and(|c| c == usize::from(**y))
            })
            .count();
        accs.push(correct as f64 / data.test.len() as f64);
    }
    let s = AccStats::of(&accs);
    let quant = match model.file.field.first().map(|l| l.weights) {
        Some(FieldWeights::F32 { .. }) => "f32",
        _ => "int8",
    };
    let p = model.num_params();
    Ok(EdgeReport {
        bytes: bytes.len(),
        quant,
        solver: format!("{:?}", model.file.solver).to_lowercase(),
        steps: model.file.steps,
        nfe,
        macs_per_synthesis: model.macs_per_evaluation() * u64::from(nfe),
        workspace_bytes: 4 * (4 * p + 3 * model.max_width()),
        n,
        acc_mean: s.acc_mean,
        acc_min: s.acc_min,
        acc_max: s.acc_max,
        ms_per_synthesis: synth_seconds * 1000.0 / n.max(1) as f64,
    })
}

/// A description of a model file: header, layer tables, bytes per part, quantization bounds.
///
/// # Errors
/// File and format errors.
pub fn describe(path: &Path) -> Result<String, MetaError> {
    let bytes = read_model(path)?;
    let (h, payload) = Header::split(&bytes).map_err(|e| MetaError::file(path, e))?;
    let m = ModelFile::decode(&bytes).map_err(|e| MetaError::file(path, e))?;
    let id: String = m.model_id.iter().map(|b| format!("{b:02x}")).collect();
    let mut out = format!(
        "model file {}: {} bytes (header 16, payload {}), format v{}, crc32 {:08x}, model id {id}\n",
        path.display(),
        bytes.len(),
        payload.len(),
        h.version,
        h.crc
    );
    out += &format!(
        "synthesizes {} parameters with {:?} × {} steps from a {:?} source; time embedding {} (max frequency {})\n",
        m.num_params(),
        m.solver,
        m.steps,
        m.source,
        m.time.dim,
        m.time.max_frequency
    );
    out += "classifier layers:\n";
    for (i, l) in m.classifier.iter().enumerate() {
        out += &format!(
            "  {i}: {} → {} {:?} (init bound {:.4})\n",
            l.d_in, l.d_out, l.activation, l.init_bound
        );
    }
    out +=
        "field layers (bytes: weights + scales + bias; int8 max rounding error = max scale / 2):\n";
    for (i, l) in m.field.iter().enumerate() {
        let (kind, wb, sb, err) = match l.weights {
            FieldWeights::Int8 { q, scales } => {
                let max_scale = scales
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .fold(0.0f32, f32::max);
                (
                    "int8",
                    q.len(),
                    scales.len(),
                    format!("{:.3e}", max_scale / 2.0),
                )
            }
            FieldWeights::F32 { w } => ("f32", w.len(), 0, "0".into()),
        };
        out += &format!(
            "  {i}: {} → {} {:?} {kind}: {wb} + {sb} + {} bytes, max error {err}\n",
            l.d_in,
            l.d_out,
            l.activation,
            l.bias.len()
        );
    }
    let view = ModelView::parse(&bytes).map_err(|e| MetaError::file(path, e))?;
    out += &format!(
        "device RAM for a workspace sized to this model: {} bytes; field MACs per evaluation: {}",
        4 * (4 * view.num_params() + 3 * view.max_width()),
        view.macs_per_evaluation()
    );
    Ok(out)
}
