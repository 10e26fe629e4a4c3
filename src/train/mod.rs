//! Training: loss, optimizer, learning-rate schedule, the loop, checkpoints.
//!
//! - [`optim`]: AdamW and gradient clipping
//! - [`schedule`]: warmup then linear or cosine decay
//! - [`trainer`]: the loop
//! - [`eval`]: scoring a model on data (validation, `gpt eval`)
//! - [`choice`]: multiple-choice scoring (HellaSwag style, `gpt eval --task choice`)
//! - [`checkpoint`]: resumable checkpoints (model + optimizer state)
//! - [`dist`]: data parallelism across processes (MPI), one process by default
//! - [`plot`]: the loss plot (SVG) left in the run directory
//! - [`progress`]: what a run shows as it trains (a bar, plain lines, nothing)

pub mod checkpoint;
pub mod choice;
pub mod dist;
pub mod eval;
pub mod optim;
pub mod plot;
pub mod progress;
pub mod schedule;
pub mod trainer;

pub use eval::{evaluate, score};
pub use trainer::{
    train, train_step, train_with, Diverged, NoHooks, StepBuffers, Stepped, TrainHooks, TrainOptions, TrainReport,
    TrainState,
};
