//! `gpt quantize`: write a model as a GGUF file that llama.cpp (and `gpt`)
//! runs, its weight matrices quantized or as floats.

use crate::model::{self, Dtype, GgufMeta, LoadOptions};
use crate::tensor::quant::Kind;
use anyhow::{ensure, Context, Result};
use clap::Args;
use std::path::PathBuf;

/// How the weight matrices are stored in the new file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ToArg {
    /// 8 bits per weight, a scale per 32 (ggml's Q8_0): nearly lossless
    #[value(name = "q8_0")]
    Q8_0,
    /// 4 bits per weight, a scale per 32 (ggml's Q4_0)
    #[value(name = "q4_0")]
    Q4_0,
    /// 4 bits per weight, a scale and a minimum per 32 (ggml's Q4_1)
    #[value(name = "q4_1")]
    Q4_1,
    /// Exact 32-bit floats: a GGUF copy of a safetensors model
    F32,
    /// 16-bit floats
    F16,
    /// bfloat16
    Bf16,
}

impl ToArg {
    fn kind(self) -> Kind {
        match self {
            ToArg::Q8_0 => Kind::Q8_0,
            ToArg::Q4_0 => Kind::Q4_0,
            ToArg::Q4_1 => Kind::Q4_1,
            ToArg::F32 => Kind::F32,
            ToArg::F16 => Kind::F16,
            ToArg::Bf16 => Kind::BF16,
        }
    }
}

#[derive(Args, Debug)]
#[command(
    after_help = "The token embedding and the output layer stay 8-bit (Q8_0) in 4-bit files, as llama.cpp keeps \
them at 6 bits; norms and biases stay f32. GPT-2 and Llama models (a run directory, a Hugging Face directory, a Hub \
name or a GGUF file) can be written; the file runs in llama.cpp (`llama-cli -m OUT`) and in `gpt generate --model OUT`."
)]
pub struct QuantizeArgs {
    /// The model: a run directory, a Hugging Face directory or name, or a GGUF file
    pub input: String,
    /// The GGUF file to write
    pub output: PathBuf,
    /// How to store the weight matrices
    #[arg(long, value_enum)]
    pub to: ToArg,
    /// Replace OUTPUT if it exists
    #[arg(long)]
    pub overwrite: bool,
    /// The model's name in the file (general.name) [default: the input's name]
    #[arg(long)]
    pub name: Option<String>,
}

pub fn run(a: QuantizeArgs) -> Result<()> {
    ensure!(
        !a.output.is_dir(),
        "{} is a directory: OUTPUT is the GGUF file to write (e.g. model.q8_0.gguf)",
        a.output.display()
    );
    ensure!(
        a.overwrite || !a.output.exists(),
        "{} exists: pass --overwrite to replace it, or choose another OUTPUT",
        a.output.display()
    );
    let loaded = model::load(
        &a.input,
        &LoadOptions {
            dtype: Dtype::F32,
            ..Default::default()
        },
    )?;
    if loaded.path.canonicalize().ok() == a.output.canonicalize().ok() {
        anyhow::bail!("OUTPUT is the input file: write to another path");
    }
    let kind = a.to.kind();
    let default_name = loaded
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| a.input.clone());
    let meta = GgufMeta {
        name: a.name.as_deref().unwrap_or(&default_name),
        tokenizer: &loaded.tokenizer,
        chat_template: loaded.chat.template.as_deref(),
    };
    model::write_gguf(&loaded.model, &meta, kind, &a.output)
        .with_context(|| format!("writing {} as {kind}", a.input))?;
    let mb = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len() as f64 / 1e6).unwrap_or(0.0);
    eprintln!(
        "wrote {} ({:.1} MB, {kind}; {} parameters) from {}",
        a.output.display(),
        mb(&a.output),
        loaded.model.params.count(),
        loaded.path.display()
    );
    Ok(())
}
