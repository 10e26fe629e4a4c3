//! Training: loss, optimizer, learning-rate schedule, the loop, checkpoints.

pub mod checkpoint;
