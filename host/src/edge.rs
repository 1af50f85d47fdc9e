//! Running exported model files with the device runtime on the host (`nmflow edge-eval`) and
//! describing them (`nmflow inspect model.nmf`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use nmflow_format::{FieldLayer, FieldNet, FieldWeights, Header, ModelFile, SolverKind};
use nmflow_runtime::classifier::{Classifier, ClassifierScratch};
use nmflow_runtime::rng::derive_seed;
use nmflow_runtime::{ModelView, Support, Workspace, synthesize_task, synthesize_with};
use serde::Serialize;

use crate::data::{Dataset, DatasetView};
use crate::error::MetaError;
use crate::meta::report::AccStats;

/// Floats of the host-side synthesis workspace (1 MiB: MNIST-sized classifiers with any field).
pub const HOST_WORKSPACE: usize = 262_144;
/// Activation capacity of the host-side classifier scratch.
pub const HOST_MAX_WIDTH: usize = 4_096;

/// The host-side synthesis workspace.
pub type HostWorkspace = Workspace<HOST_WORKSPACE>;

/// `mlp` or `set`.
pub fn field_kind_name(file: &ModelFile<'_>) -> &'static str {
    match file.field {
        FieldNet::Mlp(_) => "mlp",
        FieldNet::Set(_) => "set",
    }
}

/// The field's layers with their names, in file order (`0`, `1`, … for an MLP field; `embed`,
/// `global_in`, `time_in`, `block0.local`, …, `token_out`, `global_out` for a set field), then a
/// latent model's decoder layers (`decoder.trunk0`, …, then `decoder.out` or `decoder.slots`,
/// `decoder.mix`, `decoder.inner`, `decoder.token`, `decoder.bias`).
pub fn named_field_layers<'f, 'a>(file: &'f ModelFile<'a>) -> Vec<(String, &'f FieldLayer<'a>)> {
    let mut named = field_layers(file);
    if let Some(latent) = &file.latent {
        let trunk = latent.trunk.len();
        let head: &[&str] = match latent.head {
            nmflow_format::DecoderHead::Dense(_) => &["out"],
            nmflow_format::DecoderHead::Units(_) => &["slots", "mix", "inner", "token", "bias"],
        };
        let names = (0..trunk)
            .map(|i| format!("decoder.trunk{i}"))
            .chain(head.iter().map(|n| format!("decoder.{n}")));
        named.extend(names.zip(latent.layers()));
    }
    if let Some(cond) = &file.condition {
        named.extend(
            CONDITION_LAYERS
                .iter()
                .map(|n| (*n).to_string())
                .zip(cond.layers()),
        );
    }
    named
}

/// Bytes a field layer takes in the file (weights, scales, biases).
fn layer_bytes(l: &FieldLayer<'_>) -> usize {
    let weights = match l.weights {
        FieldWeights::Int8 { q, scales } => q.len() + scales.len(),
        FieldWeights::F32 { w } => w.len(),
    };
    weights + l.bias.len()
}

/// Names of a condition section's layers in the file's order (after the field's).
pub(crate) const CONDITION_LAYERS: [&str; 13] = [
    "condition.feature",
    "condition.head",
    "condition.inject",
    "lift.class_in",
    "lift.pair_in",
    "lift.to_token",
    "lift.to_global",
    "lift.from_token",
    "lift.pair_mix",
    "lift.pair_out",
    "lift.from_global",
    "lift.class_mix",
    "lift.bias_out",
];

fn field_layers<'f, 'a>(file: &'f ModelFile<'a>) -> Vec<(String, &'f FieldLayer<'a>)> {
    match &file.field {
        FieldNet::Mlp(layers) => layers
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), l))
            .chain(file.diagonal.iter().map(|l| ("diagonal".to_string(), l)))
            .collect(),
        FieldNet::Set(net) => {
            let mut names: Vec<String> = vec!["embed".into(), "global_in".into(), "time_in".into()];
            for b in 0..net.blocks.len() {
                for part in ["local", "pooled", "mlp"] {
                    names.push(format!("block{b}.{part}"));
                }
            }
            names.extend(["token_out".into(), "global_out".into()]);
            names.into_iter().zip(net.layers()).collect()
        }
    }
}

/// What `nmflow edge-eval` reports.
#[derive(Clone, Debug, Serialize)]
pub struct EdgeReport {
    /// File size.
    pub bytes: usize,
    /// `int8` or `f32`.
    pub quant: &'static str,
    /// `mlp` or `set`.
    pub field_kind: &'static str,
    /// Solver.
    pub solver: String,
    /// Solver steps.
    pub steps: u16,
    /// Field evaluations per synthesized classifier.
    pub nfe: u32,
    /// Multiply-accumulates per synthesized classifier: the field's, and a latent model's
    /// decoder's.
    pub macs_per_synthesis: u64,
    /// Latent values of a latent model (absent for a field on the weights).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latent_dim: Option<usize>,
    /// RAM a device workspace sized exactly for this model and its solver needs (bytes).
    pub workspace_bytes: usize,
    /// Classifiers synthesized (over every task).
    pub n: usize,
    /// Mean test accuracy.
    pub acc_mean: f64,
    /// Lowest test accuracy.
    pub acc_min: f64,
    /// Highest test accuracy.
    pub acc_max: f64,
    /// Host wall-clock milliseconds per synthesis (runtime code, one thread).
    pub ms_per_synthesis: f64,
    /// A conditioned model's tasks (absent for an unconditional model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<EdgeTasks>,
}

/// Reads a model file.
///
/// # Errors
/// [`MetaError::File`] naming the file and the format error.
pub fn read_model(path: &Path) -> Result<Vec<u8>, MetaError> {
    let bytes = std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            MetaError::file(
                path,
                "not found (expected a model file written by `nmflow export`)",
            )
        } else {
            MetaError::file(path, e)
        }
    })?;
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
    ws: &mut HostWorkspace,
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
    edge_eval_jobs(path, n, dataset, data_dir, &mut |model, _| {
        if model.is_conditioned() {
            return Err(crate::error::UsageError(format!(
                "{}: a conditioned model makes classifiers for a task: pass --support PREFIX, or \
                 --zoo and --tasks (without them it would measure its unconditional field)",
                path.display()
            ))
            .into());
        }
        Ok((
            vec![EdgeJob {
                support: None,
                map: None,
                seed,
            }],
            None,
        ))
    })
}

/// One group of classifiers [`edge_eval_jobs`] synthesizes.
#[derive(Clone, Debug)]
pub struct EdgeJob {
    /// A conditioned model's task: its support set (inputs and labels) and the guidance weight.
    pub support: Option<(Vec<f32>, Vec<u8>, f32)>,
    /// The test split's labels in the task (`map[y]` for class `y`); the classes themselves when
    /// `None`.
    pub map: Option<Vec<u8>>,
    /// Classifier `i` of the group uses `derive_seed(seed, i)`.
    pub seed: u64,
}

/// The groups of an edge evaluation, and for a conditioned model what its tasks were.
pub type EdgeJobs = (Vec<EdgeJob>, Option<EdgeTasks>);

/// What the groups of a conditioned evaluation were.
#[derive(Clone, Debug, Serialize)]
pub struct EdgeTasks {
    /// The guidance weight.
    pub guidance: f32,
    /// Labeled examples per support set.
    pub support_examples: usize,
    /// The zoo's tasks measured (empty for a support set of one's own).
    pub task_ids: Vec<usize>,
    /// Standard deviation of the per-task mean accuracies.
    pub task_sd: f64,
}

/// Synthesizes `n` classifiers with the runtime for every group `jobs` makes of the parsed model
/// and the dataset, and measures them on the test split (each group with its labels).
///
/// # Errors
/// File, format, capacity, data and the jobs' errors.
pub fn edge_eval_jobs(
    path: &Path,
    n: usize,
    dataset: DatasetView,
    data_dir: &Path,
    jobs: &mut dyn FnMut(&ModelView<'_>, &Dataset) -> Result<EdgeJobs, MetaError>,
) -> Result<EdgeReport, MetaError> {
    if n == 0 {
        return Err(crate::error::UsageError("--n must be at least 1 (got 0)".into()).into());
    }
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
    let (groups, mut tasks) = jobs(&model, &data)?;
    let mut ws: Box<HostWorkspace> = Box::default();
    let mut scratch: Box<ClassifierScratch<HOST_MAX_WIDTH>> = Box::default();
    let mut logits = vec![0.0f32; model.num_classes()];
    let mut accs = Vec::with_capacity(n * groups.len());
    let mut group_means = Vec::with_capacity(groups.len());
    let mut nfe = 0;
    let mut synth_seconds = 0.0;
    for job in &groups {
        let mut sum = 0.0;
        for i in 0..n {
            let seed = derive_seed(job.seed, i as u64);
            let t0 = Instant::now();
            let (w, used) = match &job.support {
                None => synthesize_with(&model, seed, model.file.solver, model.file.steps, &mut ws),
                Some((inputs, labels, g)) => synthesize_task(
                    &model,
                    &Support { inputs, labels },
                    *g,
                    seed,
                    model.file.solver,
                    model.file.steps,
                    &mut ws,
                ),
            }
            .map_err(|e| MetaError::file(path, e))?;
            synth_seconds += t0.elapsed().as_secs_f64();
            nfe = used;
            let clf = Classifier::new(&model, w).map_err(|e| MetaError::file(path, e))?;
            let label = |y: u8| job.map.as_ref().map_or(y, |m| m[usize::from(y)]);
            let correct = data
                .test
                .x
                .chunks_exact(data.test.dim)
                .zip(&data.test.y)
                .filter(|(x, y)| {
                    clf.logits(x, &mut scratch, &mut logits)
                        .is_ok_and(|c| c == usize::from(label(**y)))
                })
                .count();
            let acc = correct as f64 / data.test.len() as f64;
            sum += acc;
            accs.push(acc);
        }
        group_means.push(sum / n as f64);
    }
    if let Some(t) = &mut tasks {
        t.task_sd = crate::meta::report::sd(&group_means);
    }
    let s = AccStats::of(&accs);
    let quant = match named_field_layers(&model.file)
        .first()
        .map(|(_, l)| l.weights)
    {
        Some(FieldWeights::F32 { .. }) => "f32",
        _ => "int8",
    };
    Ok(EdgeReport {
        bytes: bytes.len(),
        quant,
        field_kind: field_kind_name(&model.file),
        solver: format!("{:?}", model.file.solver).to_lowercase(),
        steps: model.file.steps,
        nfe,
        macs_per_synthesis: model.macs_per_evaluation() * u64::from(nfe) + model.decoder_macs(),
        latent_dim: model.is_latent().then(|| model.state_dim()),
        workspace_bytes: 4 * model.workspace_floats(model.file.solver),
        n: accs.len(),
        acc_mean: s.acc_mean,
        acc_min: s.acc_min,
        acc_max: s.acc_max,
        ms_per_synthesis: synth_seconds * 1000.0 / accs.len().max(1) as f64,
        tasks,
    })
}

/// One classifier layer of a model file.
#[derive(Clone, Debug, Serialize)]
pub struct ClassifierLayerInfo {
    /// Inputs.
    pub d_in: usize,
    /// Outputs.
    pub d_out: usize,
    /// Activation after the layer.
    pub activation: String,
    /// Kaiming-uniform bound of the layer's source.
    pub init_bound: f32,
}

/// One field layer of a model file.
#[derive(Clone, Debug, Serialize)]
pub struct FieldLayerInfo {
    /// The layer's name (its index in an MLP field, its role in a set field).
    pub name: String,
    /// Inputs.
    pub d_in: usize,
    /// Outputs.
    pub d_out: usize,
    /// Activation after the layer.
    pub activation: String,
    /// `int8` or `f32`.
    pub quant: &'static str,
    /// Bytes of weights.
    pub weight_bytes: usize,
    /// Bytes of per-row scales (int8).
    pub scale_bytes: usize,
    /// Bytes of biases.
    pub bias_bytes: usize,
    /// Largest rounding error of a weight (half the largest scale; 0 for f32).
    pub max_error: f32,
}

/// What `nmflow inspect FILE` reports about a model file.
#[derive(Clone, Debug, Serialize)]
pub struct ModelFileReport {
    /// The file.
    pub path: PathBuf,
    /// File size.
    pub bytes: usize,
    /// Payload size (after the 16-byte header).
    pub payload_bytes: usize,
    /// Format version.
    pub version: u16,
    /// CRC-32 of the payload (hex).
    pub crc32: String,
    /// Model id (hex).
    pub model_id: String,
    /// Parameters of the classifiers it synthesizes.
    pub num_params: usize,
    /// Default solver.
    pub solver: String,
    /// Default steps.
    pub steps: usize,
    /// The memoryless SDE sampler's first time (only when the default solver is `sde`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sde_t0: Option<f32>,
    /// `mlp` or `set`.
    pub field_kind: &'static str,
    /// Token width of a set field (0 for an MLP field).
    pub set_hidden: usize,
    /// Residual blocks of a set field (0 for an MLP field).
    pub set_blocks: usize,
    /// Source law.
    pub source: String,
    /// Width of the time embedding.
    pub time_dim: usize,
    /// Highest frequency of the time embedding.
    pub max_frequency: f32,
    /// The field also takes the solver's step size (`train --step-input`).
    pub step_input: bool,
    /// The MLP field has the per-coordinate term of `finetune --diagonal` (layer `diagonal`).
    pub diagonal: bool,
    /// Classifier layers.
    pub classifier: Vec<ClassifierLayerInfo>,
    /// Field layers.
    pub field: Vec<FieldLayerInfo>,
    /// Device RAM for a workspace sized to this model with its default solver.
    pub workspace_bytes: usize,
    /// Field multiply-accumulates per evaluation.
    pub macs_per_evaluation: u64,
    /// A latent model's latent size and decoder (absent for a field on the weights).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latent: Option<LatentInfo>,
    /// The calibrated shift section, when the file has one.
    pub shift: Option<ShiftInfo>,
    /// The condition section of a class-conditioned model, when the file has one.
    pub condition: Option<ConditionInfo>,
}

/// What `nmflow inspect FILE` reports about a condition section.
#[derive(Clone, Debug, Serialize)]
pub struct ConditionInfo {
    /// Support examples per class the field was trained with.
    pub shots: u16,
    /// The guidance weight the file suggests.
    pub guidance: f32,
    /// Width of the encoder's per-example features.
    pub features: usize,
    /// Width of a lifted token (the set field's tokens per hidden unit).
    pub lift_width: usize,
    /// Multiply-accumulates of the lift per evaluation and guidance branch (included in
    /// `macs_per_evaluation`).
    pub lift_macs: u64,
    /// The section's bytes (layers and null token).
    pub bytes: usize,
}

/// What `nmflow inspect FILE` reports about a latent model's decoder.
#[derive(Clone, Debug, Serialize)]
pub struct LatentInfo {
    /// Latent values (the ODE state).
    pub dim: usize,
    /// `dense` or `units`.
    pub head: &'static str,
    /// Decoder multiply-accumulates per classifier.
    pub macs: u64,
}

/// What `nmflow inspect FILE` reports about a shift section.
#[derive(Clone, Debug, Serialize)]
pub struct ShiftInfo {
    /// `disagreement` or `entropy`.
    pub statistic: &'static str,
    /// Inputs per window.
    pub window: u16,
    /// Most members.
    pub members: u16,
    /// Patience of the rejection rule.
    pub patience: u16,
    /// Seed of the base classifier.
    pub base_seed: u64,
    /// Seed the members' seeds derive from.
    pub member_seed: u64,
    /// Guidance γ.
    pub guidance_scale: f32,
    /// Guidance λ.
    pub guidance_lambda: f32,
    /// Anchor inputs.
    pub anchors: usize,
    /// Flag a window above this.
    pub threshold: f32,
    /// The false-alarm rate it was set for.
    pub alpha: f32,
    /// Null windows that set it.
    pub calibration_windows: u32,
    /// Their rate above it.
    pub fpr_calibration: f32,
    /// Held-out null windows.
    pub heldout_windows: u32,
    /// Their rate above it.
    pub fpr_heldout: f32,
    /// Device RAM of the detector's workspace.
    pub workspace_bytes: usize,
    /// Bytes of the section's anchors.
    pub anchor_bytes: usize,
}

/// A description of a model file: header, layer tables, bytes per part, quantization bounds.
///
/// # Errors
/// File and format errors.
pub fn describe(path: &Path) -> Result<ModelFileReport, MetaError> {
    let bytes = read_model(path)?;
    let (h, payload) = Header::split(&bytes).map_err(|e| MetaError::file(path, e))?;
    let m = ModelFile::decode(&bytes).map_err(|e| MetaError::file(path, e))?;
    let view = ModelView::parse(&bytes).map_err(|e| MetaError::file(path, e))?;
    let name = |v: &dyn std::fmt::Debug| format!("{v:?}").to_lowercase();
    Ok(ModelFileReport {
        path: path.into(),
        bytes: bytes.len(),
        payload_bytes: payload.len(),
        version: h.version,
        crc32: format!("{:08x}", h.crc),
        model_id: m.model_id.iter().map(|b| format!("{b:02x}")).collect(),
        num_params: m.num_params(),
        solver: name(&m.solver),
        steps: usize::from(m.steps),
        sde_t0: (m.solver == SolverKind::Sde).then_some(m.sde_t0),
        field_kind: field_kind_name(&m),
        set_hidden: match &m.field {
            FieldNet::Set(net) => net.hidden as usize,
            FieldNet::Mlp(_) => 0,
        },
        set_blocks: match &m.field {
            FieldNet::Set(net) => net.blocks.len(),
            FieldNet::Mlp(_) => 0,
        },
        source: name(&m.source),
        time_dim: m.time.dim as usize,
        max_frequency: m.time.max_frequency,
        step_input: m.step_input,
        diagonal: m.diagonal.is_some(),
        classifier: m
            .classifier
            .iter()
            .map(|l| ClassifierLayerInfo {
                d_in: l.d_in as usize,
                d_out: l.d_out as usize,
                activation: name(&l.activation),
                init_bound: l.init_bound,
            })
            .collect(),
        field: named_field_layers(&m)
            .into_iter()
            .map(|(layer_name, l)| {
                let (quant, weight_bytes, scale_bytes, max_error) = match l.weights {
                    FieldWeights::Int8 { q, scales } => {
                        let max_scale = scales
                            .chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                            .fold(0.0f32, f32::max);
                        ("int8", q.len(), scales.len(), max_scale / 2.0)
                    }
                    FieldWeights::F32 { w } => ("f32", w.len(), 0, 0.0),
                };
                FieldLayerInfo {
                    name: layer_name,
                    d_in: l.d_in as usize,
                    d_out: l.d_out as usize,
                    activation: name(&l.activation),
                    quant,
                    weight_bytes,
                    scale_bytes,
                    bias_bytes: l.bias.len(),
                    max_error,
                }
            })
            .collect(),
        workspace_bytes: 4 * view.workspace_floats(m.solver),
        macs_per_evaluation: view.macs_per_evaluation(),
        latent: m.latent.as_ref().map(|l| LatentInfo {
            dim: l.dim as usize,
            head: match l.head {
                nmflow_format::DecoderHead::Dense(_) => "dense",
                nmflow_format::DecoderHead::Units(_) => "units",
            },
            macs: view.decoder_macs(),
        }),
        shift: m.shift.map(|s| ShiftInfo {
            statistic: crate::shift::edge::statistic_str(s.statistic),
            window: s.window,
            members: s.members,
            patience: s.patience,
            base_seed: s.base_seed,
            member_seed: s.member_seed,
            guidance_scale: s.guidance_scale,
            guidance_lambda: s.guidance_lambda,
            anchors: s.num_anchors(view.input_dim()),
            threshold: s.threshold,
            alpha: s.alpha,
            calibration_windows: s.calibration_windows,
            fpr_calibration: s.fpr_calibration,
            heldout_windows: s.heldout_windows,
            fpr_heldout: s.fpr_heldout,
            workspace_bytes: 4 * nmflow_runtime::shift::ShiftDetector::workspace_floats(&view, &s),
            anchor_bytes: s.anchors.len(),
        }),
        condition: m.condition.as_ref().map(|c| ConditionInfo {
            shots: c.shots,
            guidance: c.guidance,
            features: c.features(),
            lift_width: c.lift_width(),
            lift_macs: nmflow_runtime::condition::lift_macs(c, view.tokens()),
            bytes: c.null.len() + c.layers().into_iter().map(layer_bytes).sum::<usize>(),
        }),
    })
}

impl std::fmt::Display for ModelFileReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "model file {}: {} bytes (header 16, payload {}), format v{}, crc32 {}, model id {}",
            self.path.display(),
            self.bytes,
            self.payload_bytes,
            self.version,
            self.crc32,
            self.model_id
        )?;
        writeln!(
            f,
            "synthesizes {} parameters with {} × {} steps{} from a {} source; time embedding {} (max frequency {}){}",
            self.num_params,
            self.solver,
            self.steps,
            self.sde_t0.map_or(String::new(), |t0| format!(
                " (the ODE to t0 = {t0}, then Euler–Maruyama)"
            )),
            self.source,
            self.time_dim,
            self.max_frequency,
            if self.step_input {
                ", with the step size 1/steps as a second input"
            } else {
                ""
            }
        )?;
        writeln!(f, "classifier layers:")?;
        for (i, l) in self.classifier.iter().enumerate() {
            writeln!(
                f,
                "  {i}: {} → {} {} (init bound {:.4})",
                l.d_in, l.d_out, l.activation, l.init_bound
            )?;
        }
        let kind = match (self.field_kind, &self.latent) {
            ("set", _) => format!(
                "set field (width {}, {} blocks; per-token layers run once per hidden unit)",
                self.set_hidden, self.set_blocks
            ),
            (_, Some(l)) => format!(
                "latent model: MLP field on a {}-value latent, then a {} decoder ({} MACs per classifier);",
                l.dim, l.head, l.macs
            ),
            _ if self.diagonal => {
                "MLP field (with the per-coordinate term a(t)⊙z + b(t) as layer `diagonal`)"
                    .to_string()
            }
            _ => "MLP field".to_string(),
        };
        writeln!(
            f,
            "{kind} layers (bytes: weights + scales + bias; int8 max rounding error = max scale / 2):"
        )?;
        for l in &self.field {
            writeln!(
                f,
                "  {}: {} → {} {} {}: {} + {} + {} bytes, max error {:.3e}",
                l.name,
                l.d_in,
                l.d_out,
                l.activation,
                l.quant,
                l.weight_bytes,
                l.scale_bytes,
                l.bias_bytes,
                l.max_error
            )?;
        }
        write!(
            f,
            "device RAM for a workspace sized to this model and its solver: {} bytes; field MACs per evaluation: {}",
            self.workspace_bytes, self.macs_per_evaluation
        )?;
        if let Some(s) = &self.shift {
            write!(
                f,
                "\nshift section: {} statistic on windows of {}, up to {} members (patience {}), guidance γ {} λ {} with {} anchors ({} bytes); base seed {}, member seed {}; threshold {} for α {} (FPR {:.3} on {} calibration windows, {:.3} on {} held-out); detector workspace {} bytes",
                s.statistic,
                s.window,
                s.members,
                s.patience,
                s.guidance_scale,
                s.guidance_lambda,
                s.anchors,
                s.anchor_bytes,
                s.base_seed,
                s.member_seed,
                s.threshold,
                s.alpha,
                s.fpr_calibration,
                s.calibration_windows,
                s.fpr_heldout,
                s.heldout_windows,
                s.workspace_bytes
            )?;
        }
        if let Some(c) = &self.condition {
            write!(
                f,
                "\ncondition section: class-conditioned on a support set ({} shots per class in training, guidance {}), {}-wide example features, {}-wide lifted tokens, {} MACs of lift per evaluation, {} bytes",
                c.shots, c.guidance, c.features, c.lift_width, c.lift_macs, c.bytes
            )?;
        }
        Ok(())
    }
}
