//! Training: loss, optimizer, learning-rate schedule, the loop, checkpoints.
//!
//! - [`optim`]: AdamW and gradient clipping
//! - [`schedule`]: warmup then linear or cosine decay
//! - [`trainer`]: the loop and the evaluation of a loss over documents
//! - [`checkpoint`]: atomic file writes
//! - [`plot`]: the loss plot (SVG) left in the run directory

pub mod checkpoint;
pub mod optim;
pub mod plot;
pub mod schedule;
pub mod trainer;

pub use trainer::{evaluate, train, train_step, NoHooks, TrainHooks, TrainOptions, TrainReport, TrainState};
