//! The condition section (format version 5): the support-set encoder and class lift of a
//! class-conditioned set field (`nmflow train --condition classes`), so that a device synthesizes
//! a classifier for the task its own labeled examples show.
//!
//! For a support set of labeled examples `(x_i, y_i)` (inputs as the classifier takes them), every
//! label `c` (each needs at least one example) gets a class token
//! `τ_c = [silu(head(p_c)), x̄_c]` with `p_c = mean_{i: y_i = c} silu(feature(x_i))` and `x̄_c` the
//! label's mean input; the unconditional field uses the learned [`ConditionSection::null`] token
//! for every label instead. The class features are `κ_c = inject(τ_c)`.
//!
//! A velocity at the standardized classifier `(W1, b1, W2, b2)` (`U` hidden units, `d` inputs, `C`
//! classes) and time `t`:
//!
//! * `k_c = silu(κ_c + class_in(b2[c]))`;
//! * `s_jc = (W1[j]·x̄_c) / √d + b1[j]`, `e_jc = silu(pair_in([W2[c, j], b2[c], s_jc]) + κ_c)`;
//! * the file's set field runs on the lifted classifier whose output layer has `R` "classes":
//!   unit `j`'s tail is `r_j = to_token(mean_c e_jc)`, the output bias `g = to_global(mean_c k_c)`;
//!   it returns the velocity `[v_W1, v_b1, o, o_g]` of that lifted state (`o` is `R × U`);
//! * `z_jc = silu(from_token(o_j) + pair_mix(e_jc))`, `v_W2[c, j] = pair_out(z_jc)`;
//! * `v_b2[c] = bias_out(silu(from_global(o_g) + class_mix(k_c) + mean_j z_jc))`.
//!
//! With guidance weight `w` the velocity is `v(∅) + w·(v(task) − v(∅))`. Every layer is affine (its
//! activation is `Identity`); the SiLUs are where this description puts them.

use serde::{Deserialize, Serialize};

use crate::model::{Activation, FieldLayer, all_finite, check_layer, invalid, mismatch};

/// Error part of the condition section; the index is the layer in
/// [`ConditionSection::layers`] order (0 for the section's own values).
pub const CONDITION_PART: u8 = 8;

/// A class-conditioned set field's encoder and lift.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConditionSection<'a> {
    /// Labeled examples per class the model was trained with (any count of at least one works).
    pub shots: u16,
    /// The guidance weight the host samples with by default.
    pub guidance: f32,
    /// Example features, `d → F`.
    #[serde(borrow)]
    pub feature: FieldLayer<'a>,
    /// Class embedding, `F → E`.
    #[serde(borrow)]
    pub head: FieldLayer<'a>,
    /// The null class token, `E + d` f32 LE.
    pub null: &'a [u8],
    /// Class features, `E + d → A`.
    #[serde(borrow)]
    pub inject: FieldLayer<'a>,
    /// The lift's layers.
    #[serde(borrow)]
    pub lift: ClassLift<'a>,
}

/// The layers of the class lift (`A` the pair width, `R` the lifted token width).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ClassLift<'a> {
    /// `1 → A`.
    #[serde(borrow)]
    pub class_in: FieldLayer<'a>,
    /// `3 → A`.
    #[serde(borrow)]
    pub pair_in: FieldLayer<'a>,
    /// `A → R`.
    #[serde(borrow)]
    pub to_token: FieldLayer<'a>,
    /// `A → R`.
    #[serde(borrow)]
    pub to_global: FieldLayer<'a>,
    /// `R → A`.
    #[serde(borrow)]
    pub from_token: FieldLayer<'a>,
    /// `A → A`.
    #[serde(borrow)]
    pub pair_mix: FieldLayer<'a>,
    /// `A → 1`.
    #[serde(borrow)]
    pub pair_out: FieldLayer<'a>,
    /// `R → A`.
    #[serde(borrow)]
    pub from_global: FieldLayer<'a>,
    /// `A → A`.
    #[serde(borrow)]
    pub class_mix: FieldLayer<'a>,
    /// `A → 1`.
    #[serde(borrow)]
    pub bias_out: FieldLayer<'a>,
}

impl<'a> ConditionSection<'a> {
    /// Pair width `A`.
    pub fn pair_width(&self) -> usize {
        self.inject.d_out as usize
    }

    /// Lifted token width `R` (the set field's "classes").
    pub fn lift_width(&self) -> usize {
        self.lift.to_token.d_out as usize
    }

    /// Class token width `E + d`.
    pub fn token_width(&self) -> usize {
        self.inject.d_in as usize
    }

    /// Features per example `F`.
    pub fn features(&self) -> usize {
        self.feature.d_out as usize
    }

    /// Embedding width `E`.
    pub fn embed(&self) -> usize {
        self.head.d_out as usize
    }

    /// Every layer in file order: feature, head, inject, then the lift's class_in, pair_in,
    /// to_token, to_global, from_token, pair_mix, pair_out, from_global, class_mix, bias_out (the
    /// index of a [`crate::FormatError`] of part [`CONDITION_PART`] is 1 + this position).
    pub fn layers(&self) -> [&FieldLayer<'a>; 13] {
        let l = &self.lift;
        [
            &self.feature,
            &self.head,
            &self.inject,
            &l.class_in,
            &l.pair_in,
            &l.to_token,
            &l.to_global,
            &l.from_token,
            &l.pair_mix,
            &l.pair_out,
            &l.from_global,
            &l.class_mix,
            &l.bias_out,
        ]
    }

    /// Checks the section against a classifier of `d_in` inputs.
    ///
    /// # Errors
    /// [`crate::FormatError`] of part [`CONDITION_PART`].
    pub fn validate(&self, d_in: usize) -> Result<(), crate::FormatError> {
        let p = CONDITION_PART;
        if self.shots == 0 || !(self.guidance.is_finite() && self.guidance >= 0.0) {
            return Err(invalid(p, 0));
        }
        let d = d_in as u64;
        let f = u64::from(self.feature.d_out);
        let e = u64::from(self.head.d_out);
        let a = u64::from(self.inject.d_out);
        let r = u64::from(self.lift.to_token.d_out);
        if a == 0 || r == 0 {
            return Err(invalid(p, 3));
        }
        let shapes = [
            (d, f),
            (f, e),
            (e + d, a),
            (1, a),
            (3, a),
            (a, r),
            (a, r),
            (r, a),
            (a, a),
            (a, 1),
            (r, a),
            (a, a),
            (a, 1),
        ];
        for (i, (l, (d_in, d_out))) in self.layers().into_iter().zip(shapes).enumerate() {
            if u64::from(l.d_in) != d_in {
                return Err(mismatch(p, i + 1, d_in, u64::from(l.d_in)));
            }
            check_layer(p, i + 1, l, Some(d_out))?;
            if l.activation != Activation::Identity {
                return Err(invalid(p, i + 1));
            }
        }
        let token = 4 * (e + d);
        if self.null.len() as u64 != token {
            return Err(mismatch(p, 0, token, self.null.len() as u64));
        }
        if !all_finite(self.null, false) {
            return Err(invalid(p, 0));
        }
        Ok(())
    }
}
