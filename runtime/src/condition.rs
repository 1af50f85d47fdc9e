//! The class-conditioned set field (`nmflow_format::ConditionSection`): a task's support set is
//! encoded once into per-class features, then every evaluation lifts the classifier's classes
//! into the file's set field and reads its output back per class (the section's docs give the
//! equations).
//!
//! Memory: the field scratch after the time embedding starts with the task context
//! ([`context_floats`]: the guidance weight, `κ_c` and `x̄_c` of every class, and those of the null
//! token), written by [`prepare`] before the integration and only read after it. An evaluation
//! then keeps, per guidance branch, the class features `k_c` and the lifted state's velocity
//! (`U·d + U + R·U + R` floats), besides one lifted state, the set field's own scratch and, for a
//! guided velocity (`w` neither 0 nor 1), the unconditional branch's velocity (`P` floats). The
//! pair features `e_jc` are recomputed where they are needed (from the copied `W2[c, j]`, `b2[c]`
//! and `s_jc`), not stored, so the scratch does not grow with `U·C·A`.

use nmflow_format::{ConditionSection, SetNet, TokenDims};

use crate::error::{Error, sat_u32};
use crate::math;
use crate::model_view::{ModelView, le_f32};
use crate::set_field;
use crate::vector_field::{Emit, rows, split};

/// A task's labeled examples: `inputs` holds `labels.len()` examples of the classifier's input
/// size (as the classifier takes them), `labels[i]` is example `i`'s label in the task.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Support<'s> {
    /// The examples, row after row.
    pub inputs: &'s [f32],
    /// One label per example, below the classifier's class count.
    pub labels: &'s [u8],
}

/// Sizes of a conditioned evaluation.
#[derive(Clone, Copy, Debug)]
struct Dims {
    /// The classifier's units, inputs and classes.
    units: usize,
    d: usize,
    c: usize,
    /// Pair width, lifted token width, class token width, embedding width.
    a: usize,
    r: usize,
    token: usize,
    embed: usize,
    /// The lifted state's length.
    lifted: usize,
}

impl Dims {
    fn of(cond: &ConditionSection<'_>, t: TokenDims) -> Self {
        let (u, d) = (t.units, t.d_in);
        let r = cond.lift_width();
        Self {
            units: u,
            d,
            c: t.d_out,
            a: cond.pair_width(),
            r,
            token: cond.token_width(),
            embed: cond.embed(),
            lifted: u
                .saturating_mul(d)
                .saturating_add(u)
                .saturating_add(r.saturating_mul(u))
                .saturating_add(r),
        }
    }

    fn ud(&self) -> usize {
        self.units.saturating_mul(self.d).saturating_add(self.units)
    }

    fn uc(&self) -> usize {
        self.units.saturating_mul(self.c)
    }

    fn ca(&self) -> usize {
        self.c.saturating_mul(self.a)
    }

    fn lifted_tokens(&self) -> TokenDims {
        TokenDims {
            units: self.units,
            d_in: self.d,
            d_out: self.r,
        }
    }
}

/// Floats of the task context: `w`, `κ` (`C·A`), `x̄` (`C·d`), `κ_∅` (`A`), `x̄_∅` (`d`).
pub fn context_floats(cond: &ConditionSection<'_>, t: TokenDims) -> usize {
    let m = Dims::of(cond, t);
    1usize
        .saturating_add(m.ca())
        .saturating_add(m.c.saturating_mul(m.d))
        .saturating_add(m.a)
        .saturating_add(m.d)
}

/// Floats of an evaluation's scratch after the context (also enough for [`prepare`]'s encoder).
fn eval_floats(cond: &ConditionSection<'_>, net: &SetNet<'_>, t: TokenDims, p: usize) -> usize {
    let m = Dims::of(cond, t);
    let copies = m
        .uc()
        .saturating_mul(2)
        .saturating_add(m.c)
        .saturating_add(m.units);
    let branches = m.ca().saturating_add(m.lifted).saturating_mul(2);
    let work =
        m.a.saturating_mul(4)
            .saturating_add(m.r)
            .saturating_add(m.ca());
    let eval = copies
        .saturating_add(branches)
        .saturating_add(m.lifted)
        .saturating_add(set_field::scratch_floats(net, m.lifted_tokens(), 0))
        .saturating_add(p)
        .saturating_add(work);
    let f = cond.features();
    let encode =
        m.c.saturating_mul(f)
            .saturating_add(m.c)
            .saturating_add(f)
            .saturating_add(m.token);
    eval.max(encode)
}

/// Field scratch floats after the time embedding: the context and an evaluation's buffers.
pub fn scratch_floats(
    cond: &ConditionSection<'_>,
    net: &SetNet<'_>,
    t: TokenDims,
    p: usize,
) -> usize {
    context_floats(cond, t).saturating_add(eval_floats(cond, net, t, p))
}

/// Field evaluations one guided velocity costs: one for `w = 0` (the unconditional field) and
/// `w = 1` (the conditional field), two otherwise.
pub fn evaluations(w: f32) -> u32 {
    if w == 0.0 || w == 1.0 { 1 } else { 2 }
}

/// Multiply-accumulates of one branch's lift (besides the set field's, which
/// [`ModelView::macs_per_evaluation`] counts on the lifted tokens).
pub fn lift_macs(cond: &ConditionSection<'_>, t: TokenDims) -> u64 {
    let m = Dims::of(cond, t);
    let (u, c, a, r) = (m.units as u64, m.c as u64, m.a as u64, m.r as u64);
    let mul = u64::saturating_mul;
    // Per pair: s_jc, pair_in (absorb and read-back), pair_mix, pair_out.
    let pair = (m.d as u64)
        .saturating_add(mul(7, a))
        .saturating_add(mul(a, a));
    // Per unit: to_token and from_token; per class: class_in, class_mix, bias_out; once:
    // to_global and from_global.
    let unit = mul(2, mul(a, r));
    let class = mul(2, a).saturating_add(mul(a, a));
    mul(mul(u, c), pair)
        .saturating_add(mul(u, unit))
        .saturating_add(mul(c, class))
        .saturating_add(unit)
}

/// The context carved from the scratch.
struct Context<'s> {
    w: f32,
    kappa: &'s [f32],
    xbar: &'s [f32],
    kappa0: &'s [f32],
    xbar0: &'s [f32],
}

fn context<'s>(m: &Dims, ctx: &'s [f32]) -> Context<'s> {
    let at = |from: usize, n: usize| ctx.get(from..from.saturating_add(n)).unwrap_or(&[]);
    let k_at = 1usize;
    let x_at = k_at.saturating_add(m.ca());
    let k0_at = x_at.saturating_add(m.c.saturating_mul(m.d));
    let x0_at = k0_at.saturating_add(m.a);
    Context {
        w: ctx.first().copied().unwrap_or(0.0),
        kappa: at(k_at, m.ca()),
        xbar: at(x_at, m.c.saturating_mul(m.d)),
        kappa0: at(k0_at, m.a),
        xbar0: at(x0_at, m.d),
    }
}

/// Writes the task context into `scratch` (the field scratch after the time embedding): the
/// support set's class features with guidance weight `w`, or without a support set the null
/// token's (the unconditional field, `w = 0`).
///
/// # Errors
/// [`Error::InputLength`] when the inputs are not `labels.len()` examples of the classifier's
/// input size, [`Error::EmptySupport`] for no example, [`Error::SupportLabel`] for a label outside
/// the classes. A label without an example is one the task does not use: its class token is
/// all zeros before the head (no prototype, no mean input), as on the host.
pub fn prepare(
    model: &ModelView<'_>,
    cond: &ConditionSection<'_>,
    task: Option<(&Support<'_>, f32)>,
    scratch: &mut [f32],
) -> Result<(), Error> {
    let t = model.tokens();
    let m = Dims::of(cond, t);
    let (ctx, work) = split(scratch, context_floats(cond, t));
    let (head, rest) = split(ctx, 1);
    let (kappa, rest) = split(rest, m.ca());
    let (xbar, rest) = split(rest, m.c.saturating_mul(m.d));
    let (kappa0, xbar0) = split(rest, m.a);
    // The null token: κ_∅ = inject(∅), x̄_∅ its last d values.
    let f = cond.features();
    let (proto, work) = split(work, m.c.saturating_mul(f));
    let (counts, work) = split(work, m.c);
    let (feat, work) = split(work, f);
    let (token, _) = split(work, m.token);
    for (i, slot) in token.iter_mut().enumerate() {
        *slot = le_f32(cond.null, i).unwrap_or(0.0);
    }
    rows(&cond.inject, token, &[], |o, v| {
        if let Some(s) = kappa0.get_mut(o) {
            *s = v;
        }
    });
    let tail = token.get(m.embed..).unwrap_or(&[]);
    for (s, &v) in xbar0.iter_mut().zip(tail) {
        *s = v;
    }
    let Some((support, w)) = task else {
        if let Some(s) = head.first_mut() {
            *s = 0.0;
        }
        return Ok(());
    };
    check_support(support, m.d, m.c)?;
    if let Some(s) = head.first_mut() {
        *s = w;
    }
    proto.fill(0.0);
    counts.fill(0.0);
    xbar.fill(0.0);
    for (x, &y) in support.inputs.chunks_exact(m.d.max(1)).zip(support.labels) {
        let y = usize::from(y);
        rows(&cond.feature, x, &[], |o, v| {
            if let Some(s) = feat.get_mut(o) {
                *s = math::silu(v);
            }
        });
        let at = y.saturating_mul(f);
        for (p, &g) in proto.iter_mut().skip(at).take(f).zip(feat.iter()) {
            *p += g;
        }
        let at = y.saturating_mul(m.d);
        for (s, &v) in xbar.iter_mut().skip(at).take(m.d).zip(x) {
            *s += v;
        }
        if let Some(n) = counts.get_mut(y) {
            *n += 1.0;
        }
    }
    let classes = proto
        .chunks_exact_mut(f.max(1))
        .zip(xbar.chunks_exact_mut(m.d.max(1)))
        .zip(kappa.chunks_exact_mut(m.a.max(1)))
        .zip(counts.iter());
    for (((p, xb), k), &n) in classes {
        // An absent label keeps its zeros (no division by its zero count).
        if n > 0.0 {
            for v in p.iter_mut() {
                *v /= n;
            }
            for v in xb.iter_mut() {
                *v /= n;
            }
        }
        let (q, rest) = split(token, m.embed);
        rows(&cond.head, p, &[], |o, v| {
            if let Some(s) = q.get_mut(o) {
                *s = math::silu(v);
            }
        });
        for (s, &v) in rest.iter_mut().zip(xb.iter()) {
            *s = v;
        }
        rows(&cond.inject, token, &[], |o, v| {
            if let Some(s) = k.get_mut(o) {
                *s = v;
            }
        });
    }
    Ok(())
}

/// Checks a support set's shape and labels.
fn check_support(s: &Support<'_>, d: usize, classes: usize) -> Result<(), Error> {
    let n = s.labels.len();
    if n == 0 {
        return Err(Error::EmptySupport);
    }
    if s.inputs.len() != n.saturating_mul(d) {
        return Err(Error::InputLength {
            expected: sat_u32(n.saturating_mul(d)),
            found: sat_u32(s.inputs.len()),
        });
    }
    if let Some((i, &l)) = s
        .labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| usize::from(l) >= classes)
    {
        return Err(Error::SupportLabel {
            index: sat_u32(i),
            label: l,
        });
    }
    Ok(())
}

/// The evaluation's buffers carved from the scratch after the context.
struct Parts<'s> {
    w2: &'s mut [f32],
    b2: &'s mut [f32],
    s_task: &'s mut [f32],
    s_null: &'s mut [f32],
    k_task: &'s mut [f32],
    k_null: &'s mut [f32],
    v_task: &'s mut [f32],
    v_null: &'s mut [f32],
    lifted: &'s mut [f32],
    set: &'s mut [f32],
    vn: &'s mut [f32],
    work: &'s mut [f32],
}

fn parts<'s>(m: &Dims, p: usize, set_floats: usize, ev: &'s mut [f32]) -> Parts<'s> {
    let (w2, ev) = split(ev, m.uc());
    let (b2, ev) = split(ev, m.c);
    let (s_task, ev) = split(ev, m.uc());
    let (s_null, ev) = split(ev, m.units);
    let (k_task, ev) = split(ev, m.ca());
    let (k_null, ev) = split(ev, m.ca());
    let (v_task, ev) = split(ev, m.lifted);
    let (v_null, ev) = split(ev, m.lifted);
    let (lifted, ev) = split(ev, m.lifted);
    let (set, ev) = split(ev, set_floats);
    let (vn, work) = split(ev, p);
    Parts {
        w2,
        b2,
        s_task,
        s_null,
        k_task,
        k_null,
        v_task,
        v_null,
        lifted,
        set,
        vn,
        work,
    }
}

/// Which branch of the guided velocity.
#[derive(Clone, Copy, PartialEq)]
enum Branch {
    Task,
    Null,
}

impl Context<'_> {
    fn kappa(&self, b: Branch, m: &Dims, c: usize) -> &[f32] {
        match b {
            Branch::Task => {
                let at = c.saturating_mul(m.a);
                self.kappa.get(at..at.saturating_add(m.a)).unwrap_or(&[])
            }
            Branch::Null => self.kappa0,
        }
    }

    fn branches(&self) -> (bool, bool) {
        (self.w != 0.0, self.w != 1.0)
    }
}

/// `silu(pair_in([W2[c, j], b2[c], s_jc]) + κ_c)` into `e`.
fn pair_feature(cond: &ConditionSection<'_>, input: [f32; 3], kappa: &[f32], e: &mut [f32]) {
    rows(&cond.lift.pair_in, &input, &[], |o, v| {
        if let (Some(s), Some(&k)) = (e.get_mut(o), kappa.get(o)) {
            *s = math::silu(v + k);
        }
    });
}

/// First half of a conditioned evaluation: reads the standardized classifier `x` and leaves both
/// guidance branches' lifted velocities and class features in `scratch` (the field scratch after
/// the time embedding `emb`, starting with the context).
pub fn absorb(
    model: &ModelView<'_>,
    cond: &ConditionSection<'_>,
    net: &SetNet<'_>,
    x: &[f32],
    emb: &[f32],
    scratch: &mut [f32],
) {
    let t = model.tokens();
    let m = Dims::of(cond, t);
    let (ctx, ev) = split(scratch, context_floats(cond, t));
    let ctx = context(&m, ctx);
    let lt = m.lifted_tokens();
    let set_floats = set_field::scratch_floats(net, lt, 0);
    let q = parts(&m, model.num_params(), set_floats, ev);
    let ud = m.ud();
    let w2_at = ud;
    let b2_at = ud.saturating_add(m.uc());
    // Copies of W2 and b2 (an Euler step overwrites x before the read-back), and s_jc.
    for (s, &v) in q.w2.iter_mut().zip(x.iter().skip(w2_at)) {
        *s = v;
    }
    for (s, &v) in q.b2.iter_mut().zip(x.iter().skip(b2_at)) {
        *s = v;
    }
    let root = math::sqrt(m.d as f32).max(f32::MIN_POSITIVE);
    let w1_rows = x.chunks_exact(m.d.max(1)).take(m.units);
    for (j, w1) in w1_rows.enumerate() {
        let b1 = x
            .get(m.units.saturating_mul(m.d).saturating_add(j))
            .copied()
            .unwrap_or(0.0);
        let pre = |xb: &[f32]| w1.iter().zip(xb).map(|(a, b)| a * b).sum::<f32>() / root + b1;
        if let Some(s) = q.s_null.get_mut(j) {
            *s = pre(ctx.xbar0);
        }
        for c in 0..m.c {
            let at = c.saturating_mul(m.d);
            let xb = ctx.xbar.get(at..at.saturating_add(m.d)).unwrap_or(&[]);
            if let Some(s) = q.s_task.get_mut(j.saturating_mul(m.c).saturating_add(c)) {
                *s = pre(xb);
            }
        }
    }
    let (task, null) = ctx.branches();
    let (e, work) = split(q.work, m.a);
    let (mean, _) = split(work, m.a);
    for (branch, on) in [(Branch::Task, task), (Branch::Null, null)] {
        if !on {
            continue;
        }
        let (k, v, s) = match branch {
            Branch::Task => (&mut *q.k_task, &mut *q.v_task, &*q.s_task),
            Branch::Null => (&mut *q.k_null, &mut *q.v_null, &*q.s_null),
        };
        // k_c = silu(κ_c + class_in(b2[c])).
        for (c, kc) in k.chunks_exact_mut(m.a.max(1)).enumerate() {
            let kappa = ctx.kappa(branch, &m, c);
            let b2c = q.b2.get(c).copied().unwrap_or(0.0);
            rows(&cond.lift.class_in, &[b2c], &[], |o, val| {
                if let (Some(slot), Some(&kk)) = (kc.get_mut(o), kappa.get(o)) {
                    *slot = math::silu(val + kk);
                }
            });
        }
        // The lifted state: [W1, b1], r_j = to_token(mean_c e_jc), g = to_global(mean_c k_c).
        for (l, &xv) in q.lifted.iter_mut().zip(x.iter()).take(ud) {
            *l = xv;
        }
        for j in 0..m.units {
            mean.fill(0.0);
            for c in 0..m.c {
                let s_jc = match branch {
                    Branch::Task => s.get(j.saturating_mul(m.c).saturating_add(c)),
                    Branch::Null => s.get(j),
                };
                let input = [
                    q.w2.get(c.saturating_mul(m.units).saturating_add(j))
                        .copied()
                        .unwrap_or(0.0),
                    q.b2.get(c).copied().unwrap_or(0.0),
                    s_jc.copied().unwrap_or(0.0),
                ];
                pair_feature(cond, input, ctx.kappa(branch, &m, c), e);
                for (mv, &ev) in mean.iter_mut().zip(e.iter()) {
                    *mv += ev;
                }
            }
            let n = m.c.max(1) as f32;
            for mv in mean.iter_mut() {
                *mv /= n;
            }
            let lifted = &mut *q.lifted;
            rows(&cond.lift.to_token, mean, &[], |o, val| {
                let at = ud
                    .saturating_add(o.saturating_mul(m.units))
                    .saturating_add(j);
                if let Some(slot) = lifted.get_mut(at) {
                    *slot = val;
                }
            });
        }
        mean.fill(0.0);
        for kc in k.chunks_exact(m.a.max(1)) {
            for (mv, &kv) in mean.iter_mut().zip(kc) {
                *mv += kv;
            }
        }
        let n = m.c.max(1) as f32;
        for mv in mean.iter_mut() {
            *mv /= n;
        }
        let g_at = ud.saturating_add(m.r.saturating_mul(m.units));
        let lifted = &mut *q.lifted;
        rows(&cond.lift.to_global, mean, &[], |o, val| {
            if let Some(slot) = lifted.get_mut(g_at.saturating_add(o)) {
                *slot = val;
            }
        });
        set_field::absorb(net, lt, q.lifted, emb, q.set);
        set_field::emit(net, lt, q.set, v, Emit::Store);
    }
}

/// Second half of a conditioned evaluation: writes the (guided) velocity into `out` as `mode`
/// says.
pub fn emit(
    model: &ModelView<'_>,
    cond: &ConditionSection<'_>,
    net: &SetNet<'_>,
    scratch: &mut [f32],
    out: &mut [f32],
    mode: Emit,
) {
    let t = model.tokens();
    let m = Dims::of(cond, t);
    let (ctx, ev) = split(scratch, context_floats(cond, t));
    let ctx = context(&m, ctx);
    let set_floats = set_field::scratch_floats(net, m.lifted_tokens(), 0);
    let q = parts(&m, model.num_params(), set_floats, ev);
    let w = ctx.w;
    let back = Readback {
        cond,
        m,
        ctx: &ctx,
        w2: q.w2,
        b2: q.b2,
    };
    let (task, null) = ctx.branches();
    let bufs = |b: Branch| match b {
        Branch::Task => (&*q.k_task, &*q.v_task, &*q.s_task),
        Branch::Null => (&*q.k_null, &*q.v_null, &*q.s_null),
    };
    if task && null {
        let vn = q.vn;
        let (k, v, s) = bufs(Branch::Null);
        back.run(Branch::Null, k, v, s, q.work, &mut |i, val| {
            if let Some(slot) = vn.get_mut(i) {
                *slot = val;
            }
        });
        let (k, v, s) = bufs(Branch::Task);
        back.run(Branch::Task, k, v, s, q.work, &mut |i, val| {
            if let (Some(slot), Some(&u)) = (out.get_mut(i), vn.get(i)) {
                mode.apply(slot, u + w * (val - u));
            }
        });
    } else {
        let b = if task { Branch::Task } else { Branch::Null };
        let (k, v, s) = bufs(b);
        back.run(b, k, v, s, q.work, &mut |i, val| {
            if let Some(slot) = out.get_mut(i) {
                mode.apply(slot, val);
            }
        });
    }
}

/// What the read-back of a branch reads besides its own buffers.
struct Readback<'r, 'a> {
    cond: &'r ConditionSection<'a>,
    m: Dims,
    ctx: &'r Context<'r>,
    w2: &'r [f32],
    b2: &'r [f32],
}

impl Readback<'_, '_> {
    /// Calls `sink(i, v)` for every value of the branch's velocity in the classifier's layout.
    fn run(
        &self,
        branch: Branch,
        k: &[f32],
        lv: &[f32],
        s: &[f32],
        work: &mut [f32],
        sink: &mut dyn FnMut(usize, f32),
    ) {
        let (m, lift) = (&self.m, &self.cond.lift);
        let ud = m.ud();
        for (i, &v) in lv.iter().enumerate().take(ud) {
            sink(i, v);
        }
        let (a_j, work) = split(work, m.a);
        let (e, work) = split(work, m.a);
        let (z, work) = split(work, m.a);
        let (og, work) = split(work, m.a);
        let (rv, work) = split(work, m.r);
        let (zbar, _) = split(work, m.ca());
        let g_at = ud.saturating_add(m.r.saturating_mul(m.units));
        let o_g = lv.get(g_at..g_at.saturating_add(m.r)).unwrap_or(&[]);
        rows(&lift.from_global, o_g, &[], |o, v| {
            if let Some(slot) = og.get_mut(o) {
                *slot = v;
            }
        });
        zbar.fill(0.0);
        let w2_at = ud;
        for j in 0..m.units {
            for (r, slot) in rv.iter_mut().enumerate() {
                let at = ud
                    .saturating_add(r.saturating_mul(m.units))
                    .saturating_add(j);
                *slot = lv.get(at).copied().unwrap_or(0.0);
            }
            rows(&lift.from_token, rv, &[], |o, v| {
                if let Some(slot) = a_j.get_mut(o) {
                    *slot = v;
                }
            });
            for c in 0..m.c {
                let s_jc = match branch {
                    Branch::Task => s.get(j.saturating_mul(m.c).saturating_add(c)),
                    Branch::Null => s.get(j),
                };
                let at = c.saturating_mul(m.units).saturating_add(j);
                let input = [
                    self.w2.get(at).copied().unwrap_or(0.0),
                    self.b2.get(c).copied().unwrap_or(0.0),
                    s_jc.copied().unwrap_or(0.0),
                ];
                pair_feature(self.cond, input, self.ctx.kappa(branch, m, c), e);
                rows(&lift.pair_mix, e, &[], |o, v| {
                    if let (Some(slot), Some(&aa)) = (z.get_mut(o), a_j.get(o)) {
                        *slot = math::silu(aa + v);
                    }
                });
                rows(&lift.pair_out, z, &[], |_, v| {
                    sink(w2_at.saturating_add(at), v)
                });
                let zb = zbar.iter_mut().skip(c.saturating_mul(m.a)).take(m.a);
                for (acc, &zv) in zb.zip(z.iter()) {
                    *acc += zv;
                }
            }
        }
        let b2_at = ud.saturating_add(m.uc());
        let n = m.units.max(1) as f32;
        let classes = zbar
            .chunks_exact_mut(m.a.max(1))
            .zip(k.chunks_exact(m.a.max(1)));
        for (c, (zb, kc)) in classes.enumerate() {
            for v in zb.iter_mut() {
                *v /= n;
            }
            rows(&lift.class_mix, kc, &[], |o, v| {
                if let (Some(slot), Some(&g), Some(&zz)) = (z.get_mut(o), og.get(o), zb.get(o)) {
                    *slot = math::silu(g + v + zz);
                }
            });
            rows(&lift.bias_out, z, &[], |_, v| {
                sink(b2_at.saturating_add(c), v)
            });
        }
    }
}
