//! Caller-owned scratch memory, sized at compile time.

/// One arena of `N` floats from which synthesis carves the ODE state, the solver's stages and the
/// field's activations.
///
/// [`crate::ModelView::workspace_floats`] says how many floats a model needs with a solver; Euler
/// updates the state in place and needs no stage buffers, Heun and RK4 need two more state-sized
/// vectors. [`crate::ModelView::parse_for`] refuses a model whose default solver does not fit, so
/// a firmware learns at parse time, not mid-synthesis. Place it in a `static` or on the stack.
#[derive(Clone, Debug)]
pub struct Workspace<const N: usize> {
    pub(crate) buf: [f32; N],
}

impl<const N: usize> Workspace<N> {
    /// The capacity in floats.
    pub const FLOATS: usize = N;

    /// A zeroed workspace.
    pub const fn new() -> Self {
        const { assert!(N > 0, "workspace capacity must be positive") };
        Self { buf: [0.0; N] }
    }

    /// Bytes of RAM the workspace occupies.
    pub const fn bytes() -> usize {
        core::mem::size_of::<Self>()
    }
}

impl<const N: usize> Default for Workspace<N> {
    fn default() -> Self {
        Self::new()
    }
}
