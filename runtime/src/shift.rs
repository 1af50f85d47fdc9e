//! Ensemble statistics over a window of unlabeled inputs: the on-device half of shift detection.
//!
//! Synthesize `M` classifiers from `M` seeds; for each, call [`EnsembleStats::add`] with its
//! predicted probabilities on every input of the window. The statistics are the ensemble's
//! disagreement rate (mean over inputs of `1 − (votes for the modal class)/M`) and its mean
//! predictive entropy (entropy of the averaged probabilities, in nats).
//!
//! [`ShiftDetector`] is the calibrated decision of a model file's shift section: meta-detectron
//! on the device (members tilted towards disagreement on the window by reward guidance, the
//! rejection rule, a threshold computed on the host from the same code's null distribution).

use crate::classifier::argmax;
use crate::error::{Error, sat_u32};
use crate::math;
use crate::model_view::ModelView;
use crate::vector_field::split;

/// Accumulators for a window of `W` inputs and `C` classes (caller-owned, no allocation).
#[derive(Clone, Debug)]
pub struct EnsembleStats<const W: usize, const C: usize> {
    votes: [[u16; C]; W],
    prob_sum: [[f32; C]; W],
    members: u16,
    inputs: usize,
}

/// The statistics of a window.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ShiftStatistics {
    /// Mean over inputs of `1 − max votes / members`.
    pub disagreement: f32,
    /// Mean over inputs of the entropy of the ensemble's mean probabilities (nats).
    pub mean_entropy: f32,
    /// Ensemble members.
    pub members: u16,
}

/// Softmax of `logits` into `probs` (same length), numerically stable.
pub fn softmax(logits: &[f32], probs: &mut [f32]) {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut z = 0.0;
    for (p, &l) in probs.iter_mut().zip(logits) {
        *p = math::exp(l - m);
        z += *p;
    }
    for p in probs.iter_mut() {
        *p /= z;
    }
}

/// The entropy (nats) of the mean distribution `sum / members`, from the members' summed
/// probabilities.
fn entropy_of_mean(sum: &[f32], members: f32) -> f32 {
    -sum.iter()
        .map(|&p| p / members)
        .filter(|&p| p > 0.0)
        .map(|p| p * math::ln(p))
        .sum::<f32>()
}

impl<const W: usize, const C: usize> EnsembleStats<W, C> {
    /// Empty accumulators for a window of `inputs ≤ W` inputs.
    ///
    /// # Errors
    /// [`Error::CapacityTooSmall`] when `inputs > W`.
    pub fn new(inputs: usize) -> Result<Self, Error> {
        if inputs > W {
            return Err(Error::CapacityTooSmall {
                needed: sat_u32(inputs),
                available: sat_u32(W),
            });
        }
        Ok(Self {
            votes: [[0; C]; W],
            prob_sum: [[0.0; C]; W],
            members: 0,
            inputs,
        })
    }

    /// Adds one member's probabilities for input `i` (call for every input, then
    /// [`EnsembleStats::finish_member`]).
    pub fn add(&mut self, i: usize, probs: &[f32]) {
        if let (Some(v), Some(s)) = (self.votes.get_mut(i), self.prob_sum.get_mut(i)) {
            if let Some(c) = v.get_mut(argmax(probs)) {
                *c = c.saturating_add(1);
            }
            for (acc, p) in s.iter_mut().zip(probs) {
                *acc += p;
            }
        }
    }

    /// Marks the end of one member.
    pub fn finish_member(&mut self) {
        self.members = self.members.saturating_add(1);
    }

    /// The statistics so far.
    pub fn statistics(&self) -> ShiftStatistics {
        let m = f32::from(self.members.max(1));
        let mut dis = 0.0;
        let mut ent = 0.0;
        for (v, s) in self.votes.iter().zip(&self.prob_sum).take(self.inputs) {
            let top = v.iter().copied().max().unwrap_or(0);
            dis += 1.0 - f32::from(top) / m;
            ent += entropy_of_mean(s, m);
        }
        let n = self.inputs.max(1) as f32;
        ShiftStatistics {
            disagreement: dis / n,
            mean_entropy: ent / n,
            members: self.members,
        }
    }
}

pub use nmflow_format::{ShiftSection, ShiftStatistic};

/// One window's decision.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Decision {
    /// Window inputs the members removed (they disagreed with the base classifier on them).
    pub disagreement: u16,
    /// Mean predictive entropy of the ensemble (base and members) over the window, nats.
    pub entropy: f32,
    /// Members synthesized.
    pub members: u16,
    /// The section's statistic.
    pub statistic: f32,
    /// Whether the statistic is above the calibrated threshold.
    pub shifted: bool,
}

/// The carved workspace of a detector (class indices are kept as `f32`, exact below 2²⁴).
struct Parts<'b> {
    base: &'b mut [f32],
    labels: &'b mut [f32],
    synth: &'b mut [f32],
    grad_scratch: &'b mut [f32],
    input: &'b mut [f32],
    logits: &'b mut [f32],
    probs: &'b mut [f32],
    predicted: &'b mut [f32],
    remaining: &'b mut [f32],
    sums: &'b mut [f32],
}

/// The sizes of [`Parts`], in order.
fn part_sizes(model: &ModelView<'_>, section: &ShiftSection<'_>) -> [usize; 10] {
    let (c, d, n) = (
        model.num_classes(),
        model.input_dim(),
        usize::from(section.window),
    );
    [
        model.num_params(),
        section.num_anchors(d),
        crate::synthesize::guided_floats(model),
        crate::gradient::scratch_floats(model),
        d,
        c,
        c,
        n,
        n,
        n.saturating_mul(c),
    ]
}

fn carve<'b>(sizes: [usize; 10], buf: &'b mut [f32]) -> Parts<'b> {
    let [a, b, c, d, e, f, g, h, i, j] = sizes;
    let (base, rest) = split(buf, a);
    let (labels, rest) = split(rest, b);
    let (synth, rest) = split(rest, c);
    let (grad_scratch, rest) = split(rest, d);
    let (input, rest) = split(rest, e);
    let (logits, rest) = split(rest, f);
    let (probs, rest) = split(rest, g);
    let (predicted, rest) = split(rest, h);
    let (remaining, rest) = split(rest, i);
    let (sums, _) = split(rest, j);
    Parts {
        base,
        labels,
        synth,
        grad_scratch,
        input,
        logits,
        probs,
        predicted,
        remaining,
        sums,
    }
}

/// Copies anchor `i` (f32 LE bytes) into `input`.
fn load_anchor(section: &ShiftSection<'_>, i: usize, input: &mut [f32]) {
    let d = input.len();
    for (j, x) in input.iter_mut().enumerate() {
        *x = section.anchor_value(d, i, j);
    }
}

/// Adds `weight · (softmax(logits) − target)` for a one-hot (`agree`) or uniform-over-the-others
/// (`!agree`) target at class `label`: the gradient of cross-entropy (agreement with the base)
/// or of Detectron's disagreement loss `ℓ_dis`.
fn objective_dlogits(probs: &mut [f32], label: f32, agree: bool, weight: f32) {
    let off = 1.0 / (probs.len().saturating_sub(1).max(1) as f32);
    for (k, p) in probs.iter_mut().enumerate() {
        let target = match (k as f32 == label, agree) {
            (true, true) => 1.0,
            (false, true) | (true, false) => 0.0,
            (false, false) => off,
        };
        *p = weight * (*p - target);
    }
}

/// The calibrated shift detector of a model file's shift section (see
/// [`nmflow_format::shift`]): it synthesizes the base classifier once, then decides on windows.
/// All memory is the caller's: [`ShiftDetector::workspace_floats`] values.
pub struct ShiftDetector<'m, 'w> {
    model: &'m ModelView<'m>,
    section: ShiftSection<'m>,
    buf: &'w mut [f32],
}

impl<'m, 'w> ShiftDetector<'m, 'w> {
    /// Floats of workspace a detector with `section` needs: the base classifier (`P`) and its
    /// labels of the anchors, guided synthesis ([`crate::synthesize::guided_floats`]), the
    /// classifier's gradient scratch, one input and two class vectors, and per window input the
    /// base's prediction, whether it remains, and the ensemble's summed probabilities.
    pub fn workspace_floats(model: &ModelView<'_>, section: &ShiftSection<'_>) -> usize {
        part_sizes(model, section)
            .into_iter()
            .fold(0usize, usize::saturating_add)
    }

    /// The detector of the model's own shift section, with the base classifier synthesized.
    ///
    /// # Errors
    /// [`Error::NoShiftSection`] when the file has none; as [`Self::with_section`].
    pub fn new(model: &'m ModelView<'m>, buf: &'w mut [f32]) -> Result<Self, Error> {
        let section = model.file.shift.ok_or(Error::NoShiftSection)?;
        Self::with_section(model, section, buf)
    }

    /// A detector with another section (the host calibrates candidate sections this way).
    ///
    /// # Errors
    /// [`Error::Format`] for a section the model's classifier cannot use,
    /// [`Error::CapacityTooSmall`] when `buf` is short, [`Error::NonFiniteState`] when the base
    /// classifier's synthesis blows up.
    pub fn with_section(
        model: &'m ModelView<'m>,
        section: ShiftSection<'m>,
        buf: &'w mut [f32],
    ) -> Result<Self, Error> {
        section.validate(model.input_dim())?;
        let needed = Self::workspace_floats(model, &section);
        if buf.len() < needed {
            return Err(Error::CapacityTooSmall {
                needed: sat_u32(needed),
                available: sat_u32(buf.len()),
            });
        }
        let parts = carve(part_sizes(model, &section), buf);
        let w = crate::synthesize::synthesize_guided(
            model,
            section.base_seed,
            0.0,
            parts.synth,
            &mut |_, _| {},
        )?;
        for (b, v) in parts.base.iter_mut().zip(w) {
            *b = *v;
        }
        for (i, label) in parts.labels.iter_mut().enumerate() {
            load_anchor(&section, i, parts.input);
            crate::gradient::forward(
                model,
                parts.base,
                parts.input,
                parts.grad_scratch,
                parts.logits,
            );
            *label = argmax(parts.logits) as f32;
        }
        Ok(Self {
            model,
            section,
            buf,
        })
    }

    /// The section in use.
    pub fn section(&self) -> &ShiftSection<'m> {
        &self.section
    }

    /// The base classifier's weights (the model's layout).
    pub fn base_weights(&self) -> &[f32] {
        self.buf.get(..self.model.num_params()).unwrap_or(&[])
    }

    /// Decides on a window of `section.window` inputs (`window.len() = window · d_in`, scaled as
    /// the classifier takes them). `on_member(m)` follows each member's synthesis.
    ///
    /// # Errors
    /// [`Error::InputLength`] for a window of another length, [`Error::NonFiniteState`] when a
    /// member's integration blows up.
    pub fn decide(
        &mut self,
        window: &[f32],
        on_member: &mut dyn FnMut(u16),
    ) -> Result<Decision, Error> {
        let model = self.model;
        let s = self.section;
        let (d, c, n) = (
            model.input_dim(),
            model.num_classes(),
            usize::from(s.window),
        );
        let expected = n.saturating_mul(d);
        if window.len() != expected {
            return Err(Error::InputLength {
                expected: sat_u32(expected),
                found: sat_u32(window.len()),
            });
        }
        let Parts {
            base,
            labels,
            synth,
            grad_scratch: gs,
            input,
            logits,
            probs,
            predicted,
            remaining,
            sums,
        } = carve(part_sizes(model, &s), self.buf);
        let (base, labels): (&[f32], &[f32]) = (base, labels);
        let inputs = || window.chunks_exact(d.max(1));
        for ((x, pred), sum) in inputs()
            .zip(predicted.iter_mut())
            .zip(sums.chunks_exact_mut(c.max(1)))
        {
            crate::gradient::forward(model, base, x, gs, logits);
            *pred = argmax(logits) as f32;
            softmax(logits, sum);
        }
        remaining.fill(1.0);
        let (mut count, mut best, mut wait, mut members) = (n, n, 0u16, 0u16);
        let anchors = labels.len();
        while members < s.members && count > 0 && wait < s.patience {
            let seed = crate::rng::derive_seed(s.member_seed, u64::from(members));
            let (pred, rem): (&[f32], &[f32]) = (predicted, remaining);
            let q_weight = s.guidance_lambda / count as f32;
            let p_weight = 1.0 / anchors.max(1) as f32;
            let mut objective = |w: &[f32], grad: &mut [f32]| {
                for (i, &label) in labels.iter().enumerate() {
                    load_anchor(&s, i, input);
                    crate::gradient::forward(model, w, input, gs, logits);
                    softmax(logits, probs);
                    objective_dlogits(probs, label, true, p_weight);
                    crate::gradient::backward(model, w, input, gs, probs, grad);
                }
                for ((x, &label), &keep) in inputs().zip(pred).zip(rem) {
                    if keep == 0.0 {
                        continue;
                    }
                    crate::gradient::forward(model, w, x, gs, logits);
                    softmax(logits, probs);
                    objective_dlogits(probs, label, false, q_weight);
                    crate::gradient::backward(model, w, x, gs, probs, grad);
                }
            };
            let w = crate::synthesize::synthesize_guided(
                model,
                seed,
                s.guidance_scale,
                synth,
                &mut objective,
            )?;
            let w = w.get(..model.num_params()).unwrap_or(&[]);
            for (((x, &label), keep), sum) in inputs()
                .zip(predicted.iter())
                .zip(remaining.iter_mut())
                .zip(sums.chunks_exact_mut(c.max(1)))
            {
                crate::gradient::forward(model, w, x, gs, logits);
                if *keep != 0.0 && argmax(logits) as f32 != label {
                    *keep = 0.0;
                    count = count.saturating_sub(1);
                }
                softmax(logits, probs);
                for (acc, p) in sum.iter_mut().zip(probs.iter()) {
                    *acc += p;
                }
            }
            members = members.saturating_add(1);
            on_member(members);
            if count < best {
                best = count;
                wait = 0;
            } else {
                wait = wait.saturating_add(1);
            }
        }
        let k = f32::from(members.saturating_add(1));
        let mut entropy = 0.0f32;
        for sum in sums.chunks_exact(c.max(1)) {
            entropy += entropy_of_mean(sum, k);
        }
        entropy /= n.max(1) as f32;
        let disagreement = u16::try_from(n.saturating_sub(count)).unwrap_or(u16::MAX);
        let statistic = match s.statistic {
            ShiftStatistic::Disagreement => f32::from(disagreement),
            ShiftStatistic::Entropy => entropy,
        };
        Ok(Decision {
            disagreement,
            entropy,
            members,
            statistic,
            shifted: statistic > s.threshold,
        })
    }
}
