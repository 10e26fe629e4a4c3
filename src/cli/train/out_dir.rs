//! The directory a new run writes: one that holds another run is refused
//! unless `--overwrite` says so, and then cleared of that run's files, so
//! nothing of it (an old tokenizer, log or optimizer state) is left beside
//! the new one.

use crate::model::{Gpt, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, CONFIG_FILE, WEIGHTS_FILE};
use crate::tokenizer::bpe::{GGUF_TOKENIZER_FILE, MERGES_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, VOCAB_FILE};
use crate::tokenizer::CHAR_TOKENIZER_FILE;
use crate::train::checkpoint::is_train_state;
use crate::train::plot::{LOG_FILE, PLOT_FILE};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// A run's settings, every one resolved (JSON).
pub const RUN_FILE: &str = "run.json";

/// Files a run writes, beside its `train_state-STEP.safetensors` (and those
/// that would be read in place of its own: `tokenizer.json`).
const RUN_FILES: [&str; 13] = [
    RUN_FILE,
    WEIGHTS_FILE,
    CONFIG_FILE,
    ADAPTER_WEIGHTS_FILE,
    ADAPTER_CONFIG_FILE,
    CHAR_TOKENIZER_FILE,
    VOCAB_FILE,
    MERGES_FILE,
    TOKENIZER_FILE,
    TOKENIZER_CONFIG_FILE,
    GGUF_TOKENIZER_FILE,
    LOG_FILE,
    PLOT_FILE,
];

/// The files of a run in `dir`, sorted (none if `dir` does not exist).
fn run_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            RUN_FILES.contains(&name.as_str()) || is_train_state(&name)
        })
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// Errors if `dir` holds a run, saying what is there and what to do.
pub fn check_free(dir: &Path) -> Result<()> {
    let files = run_files(dir);
    if files.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    let step = Gpt::saved_metadata(dir)
        .ok()
        .and_then(|m| m.get("step").cloned())
        .map(|s| format!(", saved at step {s}"))
        .unwrap_or_default();
    let resume = if names.iter().any(|n| is_train_state(n)) {
        format!("continue it with `gpt train --resume {}`, ", dir.display())
    } else {
        String::new()
    };
    bail!(
        "--out {} already holds a run ({}{step}): {resume}replace it with --overwrite, or give another --out",
        dir.display(),
        names.join(", ")
    )
}

/// Removes the files of the run in `dir` (and only those).
pub fn clear(dir: &Path) -> Result<()> {
    for file in run_files(dir) {
        std::fs::remove_file(&file).with_context(|| format!("removing {} (--overwrite)", file.display()))?;
    }
    Ok(())
}
