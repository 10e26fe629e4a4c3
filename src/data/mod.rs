//! Datasets: documents files and their batches.
//!
//! - [`docs`]: a text file with one document per line (the built-in names list by default)
//! - [`batch`]: documents packed into rows of up to `n_ctx` tokens
//! - [`choice`]: multiple-choice records (HellaSwag style)
//! - [`stream`]: windows of a long token stream (GPT-2 style)
//! - [`windows`]: sliding windows for scoring a long text once per token
//! - [`dataset`]: any kind, handing out training and evaluation batches
//! - [`labelled`], [`sft`]: labelled texts (classification), instruction records (SFT)

pub mod batch;
pub mod choice;
pub mod dataset;
pub mod docs;
pub mod labelled;
pub mod sft;
pub mod stream;
pub mod tokens;
pub mod windows;
