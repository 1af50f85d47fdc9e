//! Caller-owned scratch memory, sized at compile time.

/// Buffers for synthesis and classification: four state vectors of `P` values (the ODE state and
/// the solver's stages) and three activation vectors of `H` values.
///
/// `P` must be at least the model's parameter count and `H` at least its widest field or
/// classifier layer and its time embedding; [`crate::ModelView::check_capacity`] says whether a
/// model fits. Place it in a `static` or on the stack: it needs `4·P + 3·H` floats.
#[derive(Clone, Debug)]
pub struct Workspace<const P: usize, const H: usize> {
    pub(crate) x: [f32; P],
    pub(crate) tmp: [f32; P],
    pub(crate) k: [f32; P],
    pub(crate) acc: [f32; P],
    pub(crate) a: [f32; H],
    pub(crate) b: [f32; H],
    pub(crate) emb: [f32; H],
}

impl<const P: usize, const H: usize> Workspace<P, H> {
    /// A zeroed workspace.
    pub const fn new() -> Self {
        const { assert!(P > 0 && H > 0, "workspace capacities must be positive") };
        Self {
            x: [0.0; P],
            tmp: [0.0; P],
            k: [0.0; P],
            acc: [0.0; P],
            a: [0.0; H],
            b: [0.0; H],
            emb: [0.0; H],
        }
    }

    /// Bytes of RAM the workspace occupies.
    pub const fn bytes() -> usize {
        core::mem::size_of::<Self>()
    }
}

impl<const P: usize, const H: usize> Default for Workspace<P, H> {
    fn default() -> Self {
        Self::new()
    }
}
