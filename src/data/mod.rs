//! Datasets: documents files and their batches.
//!
//! - [`docs`]: a text file with one document per line (the built-in names list by default)
//! - [`batch`]: documents packed into rows of up to `n_ctx` tokens

pub mod batch;
pub mod docs;
pub mod tokens;
