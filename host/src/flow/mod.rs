//! Flow-matching building blocks on weight space, each a small module with closed-form tests.
//!
//! Glossary (TorchCFM names): `x0` a source sample (an initialization), `x1` trained weights, `t` in
//! \[0, 1\], `xt` a point on the probability path at `t`, `ut` the target velocity there, `vt` the
//! network's predicted velocity, `sigma` the path's noise level. All vectors are flat parameter
//! vectors in standardized units (see [`crate::meta::normalize`]).
//!
//! | module | one job |
//! |---|---|
//! | [`assignment`] | exact minimum-cost assignment (minibatch OT coupling) |
//! | [`path`] | `xt` and `ut` for the linear (CFM) and spline (multi-marginal) paths |
//! | [`solver`] | Euler, Heun, RK4 and Dormand–Prince integration with an explicit step count and NFE |
//! | [`sde`] | the memoryless SDE of the linear path: Euler–Maruyama from `t0` |

pub mod assignment;
pub mod path;
pub mod sde;
pub mod solver;
