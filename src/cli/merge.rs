//! `gpt merge`: fold a LoRA adapter into its base model and write the result
//! as a model directory (safetensors + config + tokenizer) that `gpt` and
//! `transformers` load without the adapter; a LoRA classifier's gives a
//! `…ForSequenceClassification` directory.

use crate::model::{Dtype, LoadOptions, CHAT_TEMPLATE_FILE};
use crate::tokenizer::Tokenizer;
use anyhow::{ensure, Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The base model: a directory or file, or a name fetched with `gpt download`
    #[arg(long)]
    pub model: String,
    /// The LoRA adapter: a directory with peft's adapter_config.json and adapter_model.safetensors
    /// (bottleneck adapters are not linear: they cannot be folded in; run them with --adapter)
    #[arg(long, value_name = "DIR")]
    pub adapter: PathBuf,
    /// The directory to write the merged model to
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace OUT's model files if it exists
    #[arg(long)]
    pub overwrite: bool,
}

pub fn run(a: MergeArgs) -> Result<()> {
    ensure!(
        a.overwrite || !a.out.exists(),
        "{} exists: pass --overwrite to replace its model files, or choose another --out",
        a.out.display()
    );
    let opts = LoadOptions {
        dtype: Dtype::F32,
        adapter: Some(a.adapter.clone()),
        classifier: true,
    };
    // A LoRA classifier's adapter makes the base a classifier, merged as one.
    let mut loaded = super::classify::load_adapted(&a.model, &opts)?;
    loaded.model.merge_adapters()?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    loaded.model.save(&a.out)?;
    match &loaded.tokenizer {
        Tokenizer::Char(t) => t.save(&a.out)?,
        Tokenizer::Bpe(t) => t.save(&a.out)?,
    }
    if let Some(template) = &loaded.chat.template {
        crate::io::write_atomic(&a.out.join(CHAT_TEMPLATE_FILE), template.as_bytes())?;
    }
    super::out::note!(
        "merged {} into {} and wrote {}",
        a.adapter.display(),
        loaded.path.display(),
        a.out.display()
    );
    Ok(())
}
