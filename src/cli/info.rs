//! `gpt info`: what a model is — architecture, sizes, parameters, how its
//! weights are stored, context, tokenizer, size on disk — for any model the
//! other commands take (a run directory, a Hugging Face directory, a GGUF
//! file, a name in the cache).

use super::generate::DtypeArg;
use super::out::{short, size};
use crate::model::{self, stored_dtypes, Arch};
use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use std::io::Write;
use std::path::Path;

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Model: a directory or checkpoint file, or a name fetched with `gpt download` (gpt2, org/name)
    pub model: String,
    /// Print one JSON object instead of lines
    #[arg(long)]
    pub json: bool,
}

/// Bytes of the file at `path`, or of the files directly in the directory (links followed).
fn size_on_disk(path: &Path) -> Result<u64> {
    if path.is_file() {
        return Ok(std::fs::metadata(path)?.len());
    }
    let entries = std::fs::read_dir(path).with_context(|| format!("listing {}", path.display()))?;
    Ok(entries
        .flatten()
        .filter_map(|e| std::fs::metadata(e.path()).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum())
}

pub fn run(a: InfoArgs) -> Result<()> {
    let loaded = model::load(
        &a.model,
        &model::LoadOptions {
            classifier: true,
            ..DtypeArg::Auto.options()
        },
    )?;
    let (c, tok) = (&loaded.model.config, &loaded.tokenizer);
    let params = loaded.model.params.count();
    let dtypes = stored_dtypes(&loaded.path)?;
    let stored: Vec<String> = match dtypes.as_slice() {
        [] => vec!["F32".to_string()],
        [(one, _)] => vec![one.clone()],
        many => {
            let total: usize = many.iter().map(|d| d.1).sum::<usize>().max(1);
            let share = |n: usize| 100.0 * n as f64 / total as f64;
            many.iter().map(|(d, n)| format!("{d} ({:.1}%)", share(*n))).collect()
        }
    };
    let bytes = size_on_disk(&loaded.path)?;
    // A `gpt train` run records the step its weights are from.
    let step = crate::model::Gpt::saved_metadata(&loaded.path)
        .ok()
        .and_then(|m| m.get("step").cloned());
    let arch = match c.arch {
        Arch::Gpt2 => "gpt2",
        Arch::Llama => "llama",
    };
    let mut out = super::out::stdout();
    if a.json {
        let line = json!({
            "path": loaded.path,
            "architecture": arch,
            "parameters": params,
            "n_layer": c.n_layer,
            "n_embd": c.n_embd,
            "n_head": c.n_head,
            "n_kv_head": c.n_kv_head,
            "n_inner": c.n_inner,
            "n_ctx": c.n_ctx,
            "vocab_size": c.vocab_size,
            "dtype": dtypes.iter().map(|(d, n)| json!({"dtype": d, "values": n})).collect::<Vec<_>>(),
            "tokenizer": tok.name(),
            "tokenizer_vocab_size": tok.vocab_size(),
            "chat_template": loaded.chat.template.is_some(),
            "bytes": bytes,
            "step": step.as_deref().and_then(|s| s.parse::<u64>().ok()),
            "labels": c.is_classifier().then_some(&c.labels),
        });
        writeln!(out, "{line}")?;
        return Ok(());
    }
    let heads = match c.n_kv_head == c.n_head {
        true => c.n_head.to_string(),
        false => format!("{} ({} key/value)", c.n_head, c.n_kv_head),
    };
    let mut lines = vec![
        ("path", loaded.path.display().to_string()),
        ("architecture", arch.to_string()),
        (
            "parameters",
            format!("{params} ({})", short(params as f64, &["", "K", "M", "B", "T"])),
        ),
        ("layers", c.n_layer.to_string()),
        ("width", format!("{} (MLP {})", c.n_embd, c.n_inner)),
        ("heads", heads),
        ("context", format!("{} tokens", c.n_ctx)),
        ("vocabulary", format!("{} ids", c.vocab_size)),
    ];
    if c.is_classifier() {
        lines.push(("classifier", format!("labels {}", c.labels.join(", "))));
    }
    lines.extend([
        ("dtype", stored.join(", ")),
        (
            "tokenizer",
            format!(
                "{} ({} ids{})",
                tok.name(),
                tok.vocab_size(),
                if loaded.chat.template.is_some() {
                    ", chat template"
                } else {
                    ""
                }
            ),
        ),
        ("size on disk", format!("{} ({bytes} bytes)", size(bytes))),
    ]);
    if let Some(step) = step {
        lines.push(("trained steps", step));
    }
    for (key, value) in lines {
        writeln!(out, "{:<15}{value}", format!("{key}:"))?;
    }
    Ok(())
}
