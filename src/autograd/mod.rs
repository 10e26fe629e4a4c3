//! Reverse-mode automatic differentiation at tensor level.
//!
//! A [`Graph`] records each op as it runs forward (a tape). `backward` walks
//! the tape in reverse and calls each op's backward kernel from
//! [`crate::tensor`], accumulating into the gradients of its inputs, and
//! finally into the parameters' [`Grads`]. Buffers come from a [`Workspace`]
//! that outlives the graph, so after the first step a training step allocates
//! (almost) nothing.

mod graph;
mod params;
mod workspace;

pub use graph::{Graph, KvSlot, Var};
pub use params::{Grads, ParamId, Params};
pub use workspace::Workspace;

#[cfg(test)]
pub(crate) mod gradcheck;
