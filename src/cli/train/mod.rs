//! `gpt train`: train a GPT from scratch or from a checkpoint (`--init`), or
//! continue a saved run (`--resume`).

mod data;
mod interrupt;
mod limits;
mod out_dir;
mod report;
mod start;

use crate::model::{AdapterSpec, BottleneckSpec, Gpt, Init, LoraSpec};
use crate::sample::{generate, generate_documents, generate_from, split_rng, GenerateOptions, SampleOptions};
use crate::tensor::linear::Precision;
use crate::tensor::rng;
use crate::tokenizer::Tokenizer;
use crate::train::dist::{self, Comm, EveryRank};
use crate::train::optim::AdamWConfig;
use crate::train::progress::Progress;
use crate::train::schedule::{Decay, Schedule};
use crate::train::{train_with, TrainOptions};
use anyhow::{ensure, Context, Result};
use clap::{Args, ValueEnum};
pub(crate) use data::sft_format;
use data::Prepared;
use serde::{Deserialize, Serialize};
use start::{fresh, open_log, resume, RunHooks, Start};
pub(crate) use start::{pad_token_id, run_labels};
use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// Our default: a 4-layer, 64-wide GPT-2-style model, batched and packed,
    /// tuned for the best validation loss on names within about a minute.
    Default,
    /// microgpt's exact run: 1 layer, 16 wide, one document per step, Adam
    /// lr 0.01 decaying linearly to 0 over 1000 steps, samples at temperature 0.5.
    Microgpt,
}

/// What a run trains the model to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Task {
    /// Predict the next token (language modelling).
    #[default]
    Lm,
    /// Sequence classification: a `score` head on each text's last token.
    Classify,
    /// Instruction tuning: learn each record's response to its prompt.
    Sft,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// lm: predict the next token. classify: with --init, learn to label texts (--data: TSV with a
    /// header line and `label<TAB>text` rows, or JSONL `{"text":…,"label":…}`): a classification head
    /// (`score`) on the last token of each text; the run directory is a Hugging Face
    /// sequence-classification checkpoint (`gpt classify --model DIR`). sft: with --init, instruction
    /// tuning (--data: Alpaca-style records {"instruction","input","output"} as a JSON array or JSON
    /// lines, or chat JSON lines {"messages":[{"role","content"},…]}): each prompt is rendered with
    /// the model's chat template where it has one (the instruction, and the input after a blank line,
    /// as the user's message; the output as the assistant's reply, ended by the template's end of
    /// turn, e.g. <|im_end|>), else in the Alpaca format ("Below is an instruction…### Response:\n",
    /// the output then the end of text <|endoftext|>); the loss is on the responses and their end
    /// token only, so the tuned model answers and stops
    #[arg(long, value_enum, default_value = "lm")]
    pub task: Task,
    /// With --task classify: the labels, in this order (every label of the data must be one)
    /// [default: the labels of the data, sorted]
    #[arg(long, value_delimiter = ',')]
    pub labels: Option<Vec<String>>,
    /// With --task classify or sft: validation data (as --data) [default: --val-fraction of --data]
    #[arg(long)]
    pub val_data: Option<PathBuf>,
    /// Text file (with --tokenizer char: one document per line, blank lines skipped), or a directory
    /// made by `gpt prepare` (BPE) [default: the built-in names list]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Tokenizer: char (one token per character, documents = lines), gpt2 (GPT-2's BPE over the
    /// whole text, or over a `gpt prepare` directory given as --data), or a directory with
    /// vocab.json + merges.txt [default: char; for a `gpt prepare` directory, the one its
    /// token files name; with --init, the checkpoint's]
    #[arg(long)]
    pub tokenizer: Option<String>,
    /// Start from a trained model (fine-tuning): gpt2 (or another name fetched with `gpt download`),
    /// or a checkpoint directory. Its size, context and tokenizer are used
    #[arg(long, conflicts_with = "resume")]
    pub init: Option<String>,
    /// Continue the run saved in this directory exactly where it stopped (same settings and data;
    /// --steps may grow, which stretches the learning-rate schedule)
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Directory for the checkpoint (model.safetensors, config.json, tokenizer, train_state-STEP.safetensors,
    /// log.jsonl, loss.svg) [default: out, or the --resume directory]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace the run already in --out: its files (model, tokenizer, log, optimizer states) are removed first
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Starting values for every setting below; explicit flags override them. With --init, the
    /// fine-tuning defaults replace the schedule: --lr 3e-4 held constant (--decay constant),
    /// --warmup 0, --steps 500, --eval-every 100
    #[arg(long, value_enum, default_value = "default")]
    pub preset: Preset,
    /// Optimizer steps of the whole run
    #[arg(long)]
    pub steps: Option<usize>,
    /// Stop after this step (at most --steps) with a checkpoint, keeping the schedule of --steps;
    /// continue with --resume
    #[arg(long)]
    pub stop_at: Option<usize>,
    /// Rows per micro-batch, each holding one or more documents (up to --n-ctx tokens) [default: 64; BPE: 8]
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Micro-batches per optimizer step (gradient accumulation: an effective batch of
    /// --batch-size x --grad-accum rows at the memory of one micro-batch)
    #[arg(long)]
    pub grad_accum: Option<usize>,
    /// Seed for the weights, the data split and order, dropout, and the samples [default: 42]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Transformer blocks
    #[arg(long)]
    pub n_layer: Option<usize>,
    /// Embedding width (must be divisible by --n-head)
    #[arg(long)]
    pub n_embd: Option<usize>,
    /// Attention heads
    #[arg(long)]
    pub n_head: Option<usize>,
    /// Context length; longer documents are cut to it (with a warning) [default: longest document + 1,
    /// at most 256; BPE: 256; classify, sft: the longest text or record; never more than an --init
    /// checkpoint's]
    #[arg(long)]
    pub n_ctx: Option<usize>,
    /// Peak learning rate
    #[arg(long)]
    pub lr: Option<f32>,
    /// Learning rate at the end of the decay [default: --lr / 10]
    #[arg(long)]
    pub min_lr: Option<f32>,
    /// Linear warmup steps
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Learning-rate decay after warmup
    #[arg(long, value_enum)]
    pub decay: Option<DecayArg>,
    /// AdamW's decay rate of the gradient's running mean
    #[arg(long)]
    pub beta1: Option<f32>,
    /// AdamW's decay rate of the squared gradient's running mean
    #[arg(long)]
    pub beta2: Option<f32>,
    /// AdamW's epsilon, added to the root of the second moment
    #[arg(long)]
    pub adam_eps: Option<f32>,
    /// Decoupled weight decay on weight matrices
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Clip the global gradient norm to this (0 = off)
    #[arg(long)]
    pub grad_clip: Option<f32>,
    /// Dropout probability on embeddings and residual branches
    #[arg(long)]
    pub dropout: Option<f32>,
    /// Matrix products' inputs: f32, or bf16 summed in f32 (mixed precision, as PyTorch's bf16
    /// autocast; weights, gradients and AdamW stay f32). bf16 makes a step about 1.7x faster on CPUs
    /// with AMX, faster with AVX512-BF16 (AMD Zen 4) and slower elsewhere [default: f32]
    #[arg(long, value_enum)]
    pub precision: Option<PrecisionArg>,
    /// Validation loss every N steps (0 = only at the start and the end)
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Show a sample every N steps while training (0 = none) [default: 0]
    #[arg(long)]
    pub sample_every: Option<usize>,
    /// Checkpoint (resumable with --resume) every N steps (0 = only at the end)
    #[arg(long)]
    pub save_every: Option<usize>,
    /// Fraction of the data held out for validation (documents, or the end of a text) [default: 0.1;
    /// a `gpt prepare` directory has its own val.bin]
    #[arg(long)]
    pub val_fraction: Option<f64>,
    /// One document per row instead of packing several (character models: BPE data is one stream)
    #[arg(long)]
    pub no_pack: bool,
    /// Documents (or texts) to generate after training; sft: answers to this many held-out prompts
    /// [default: 20; BPE: 3]
    #[arg(long)]
    pub num_samples: Option<usize>,
    /// Temperature of those samples
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Print only errors and the final line (no progress, no samples)
    #[arg(long, short, conflicts_with = "sample_every")]
    pub quiet: bool,
    /// With --init: train only the last N blocks, the final norm and the output head; every other
    /// weight stays frozen (no gradient, no optimizer state). 0 trains the head alone. A model with
    /// tied embeddings (GPT-2: the head is `wte`) trains its token embedding as the head, as
    /// `transformers` does with tied weights
    #[arg(long, requires = "init")]
    pub train_layers: Option<usize>,
    /// With --init: train a LoRA adapter of this rank (peft's LoRA: each targeted layer adds
    /// alpha/r · x Aᵀ Bᵀ, A drawn as peft draws it, B zero) and freeze every weight of the model.
    /// The run directory holds the adapter in peft's format (adapter_model.safetensors +
    /// adapter_config.json), not a model: use it with `gpt generate --model BASE --adapter DIR`,
    /// `peft.PeftModel.from_pretrained(base, DIR)`, or fold it in with `gpt merge`
    #[arg(long, requires = "init", conflicts_with = "train_layers")]
    pub lora_rank: Option<usize>,
    /// With --init: train bottleneck adapters this wide (Houlsby et al. 2019) and freeze every
    /// weight of the model. Every block gets one on the attention's output and one on the MLP's
    /// (after the output projection, before the residual add): h + up(relu(down(h))), down
    /// [H, n_embd] and up [n_embd, H] with biases; ReLU, the `adapters` library's default; up
    /// starts at zero, so training starts from the base model exactly (with --task classify the
    /// `score` head trains too). The run directory holds only the adapters
    /// (adapter_model.safetensors + adapter_config.json): use them with `gpt generate --model BASE
    /// --adapter DIR` (not foldable into the weights: no `gpt merge`)
    #[arg(long, value_name = "H", requires = "init", conflicts_with_all = ["train_layers", "lora_rank"])]
    pub adapter_size: Option<usize>,
    /// LoRA's alpha: the update is scaled by alpha / rank [default: 8, as peft's]
    #[arg(long, requires = "lora_rank")]
    pub lora_alpha: Option<f32>,
    /// The layers LoRA adapts, by module name (comma-separated; a name matches a layer whose name
    /// ends with it, as peft's target_modules) [default: as peft's, the attention's query and value
    /// projections: c_attn for GPT-2, q_proj,v_proj for a Llama]
    #[arg(long, requires = "lora_rank", value_delimiter = ',')]
    pub lora_targets: Option<Vec<String>>,
    /// Dropout on the input of each LoRA update, as peft's lora_dropout (masks seeded as --dropout's)
    /// [default: 0]
    #[arg(long, requires = "lora_rank")]
    pub lora_dropout: Option<f32>,
    /// Under `mpirun -np N` (a build with --features mpi): 1 shards AdamW's moments over the ranks,
    /// each keeping 1/N of them (ZeRO stage 1); 0 keeps them whole on every rank. Same weights either way
    #[arg(long, default_value_t = 0)]
    pub zero: u64,
}

/// Every setting of a run: the preset's values, then the flags on top. Saved
/// with each checkpoint, so `--resume` continues with the same ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub data: Option<PathBuf>,
    pub tokenizer: String,
    /// `--init`: the checkpoint the run started from.
    pub init: Option<String>,
    pub seed: u64,
    pub val_fraction: f64,
    microgpt: bool,
    n_layer: usize,
    n_embd: usize,
    n_head: usize,
    /// `None`: the longest document + 1, at most 256 (resolved before the run starts).
    pub n_ctx: Option<usize>,
    init_weights: Init,
    steps: usize,
    batch_size: usize,
    grad_accum: usize,
    /// Processes training together (`mpirun -np`), each with `batch_size x grad_accum` rows of a
    /// step. Absent from runs saved before it existed.
    #[serde(default = "one")]
    pub ranks: usize,
    pack: bool,
    lr: f32,
    /// `None`: a tenth of `lr`.
    min_lr: Option<f32>,
    warmup: usize,
    decay: Decay,
    beta1: f32,
    beta2: f32,
    adam_eps: f32,
    weight_decay: f32,
    grad_clip: Option<f32>,
    dropout: f32,
    /// Absent from runs saved before it existed.
    #[serde(default)]
    pub precision: Precision,
    eval_every: usize,
    save_every: usize,
    /// Absent from runs saved before it existed.
    #[serde(default)]
    sample_every: usize,
    num_samples: usize,
    temperature: f32,
    /// `--train-layers`: only the last this many blocks, the final norm and the head train.
    #[serde(default)]
    pub train_layers: Option<usize>,
    /// `--lora-rank` and the rest: a LoRA adapter trains, the model is frozen
    /// (no targets: the architecture's default, resolved when the model is loaded).
    #[serde(default)]
    pub lora: Option<LoraSpec>,
    /// `--adapter-size`: bottleneck adapters train, the model is frozen.
    #[serde(default)]
    pub adapter_size: Option<BottleneckSpec>,
    /// `--task classify`: the classifier's labels and validation texts.
    #[serde(default)]
    pub classify: Option<Classify>,
    /// `--task sft`: instruction tuning, and its validation records.
    #[serde(default)]
    pub sft: Option<Sft>,
}

/// An instruction-tuning run's validation file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sft {
    pub val_data: Option<PathBuf>,
}

/// A classification run's labels (resolved from the data or `--labels`) and validation file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Classify {
    pub labels: Vec<String>,
    pub val_data: Option<PathBuf>,
}

impl Preset {
    fn settings(self) -> Settings {
        let default = Settings {
            data: None,
            tokenizer: "char".to_string(),
            init: None,
            seed: 42,
            val_fraction: 0.1,
            microgpt: false,
            n_layer: 4,
            n_embd: 64,
            n_head: 4,
            n_ctx: None,
            init_weights: Init::Gpt2,
            steps: 2000,
            batch_size: 64,
            grad_accum: 1,
            ranks: 1,
            pack: true,
            lr: 8e-3,
            min_lr: None,
            warmup: 100,
            decay: Decay::Cosine,
            beta1: 0.9,
            beta2: 0.99,
            adam_eps: 1e-8,
            weight_decay: 0.1,
            grad_clip: Some(1.0),
            dropout: 0.0,
            precision: Precision::F32,
            eval_every: 500,
            save_every: 0,
            sample_every: 0,
            num_samples: 20,
            temperature: 0.8,
            train_layers: None,
            lora: None,
            adapter_size: None,
            classify: None,
            sft: None,
        };
        match self {
            Preset::Default => default,
            Preset::Microgpt => Settings {
                microgpt: true,
                n_layer: 1,
                n_embd: 16,
                n_ctx: Some(16),
                init_weights: Init::Normal(0.08),
                steps: 1000,
                batch_size: 1,
                pack: false,
                lr: 0.01,
                min_lr: Some(0.0),
                warmup: 0,
                decay: Decay::Linear,
                beta1: 0.85,
                weight_decay: 0.0,
                grad_clip: None,
                eval_every: 0,
                temperature: 0.5,
                ..default
            },
        }
    }
}

fn one() -> usize {
    1
}

impl Settings {
    /// Rows of one optimizer step over every rank: the data order depends on it alone.
    pub fn global_batch(&self) -> u128 {
        self.ranks as u128 * self.grad_accum as u128 * self.batch_size as u128
    }

    /// The adapter the run trains (`--lora-rank`, `--adapter-size`), if any.
    pub fn adapter(&self) -> Option<AdapterSpec> {
        let lora = self.lora.clone().map(AdapterSpec::Lora);
        lora.or_else(|| self.adapter_size.clone().map(AdapterSpec::Bottleneck))
    }

    /// `self` for fine-tuning a trained model (`--init`): a small constant
    /// learning rate from the first step, and a short run. The from-scratch
    /// schedule's peak undoes what the model knows before it learns the new text.
    fn fine_tuning(self) -> Settings {
        Settings {
            steps: FINE_TUNING_STEPS,
            lr: FINE_TUNING_LR,
            warmup: 0,
            decay: Decay::Constant,
            eval_every: 100,
            ..self
        }
    }
}

/// `--lora-alpha` unless given: peft's default `lora_alpha`.
const DEFAULT_LORA_ALPHA: f32 = 8.0;

/// The longest answer an instruction-tuned run's samples show.
const SFT_SAMPLE_TOKENS: usize = 128;

/// `--steps` and `--lr` of an `--init` run unless given.
const FINE_TUNING_STEPS: usize = 500;
const FINE_TUNING_LR: f32 = 3e-4;

/// `--decay`'s values, mapped to the schedule's [`Decay`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DecayArg {
    Constant,
    Linear,
    Cosine,
}

/// `--precision`'s values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionArg {
    F32,
    Bf16,
}

impl From<PrecisionArg> for Precision {
    fn from(p: PrecisionArg) -> Precision {
        match p {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::Bf16 => Precision::Bf16,
        }
    }
}

impl From<DecayArg> for Decay {
    fn from(d: DecayArg) -> Decay {
        match d {
            DecayArg::Constant => Decay::Constant,
            DecayArg::Linear => Decay::Linear,
            DecayArg::Cosine => Decay::Cosine,
        }
    }
}

/// `base` (a preset's settings, or a resumed run's) with the flags given on
/// top, every one checked.
fn settings(a: &TrainArgs, base: Settings) -> Result<Settings> {
    if let Some(c) = a.grad_clip {
        super::check::flag(c.is_finite() && c >= 0.0, "--grad-clip", c, limits::GRAD_CLIP)?;
    }
    if let Some(n) = a.stop_at {
        super::check::flag(n >= 1, "--stop-at", n, "at least 1")?;
    }
    let mut s = base;
    macro_rules! flags_override {
        ($($field:ident),*) => { $( if let Some(v) = a.$field { s.$field = v; } )* };
    }
    flags_override!(steps, batch_size, grad_accum, n_layer, n_embd, n_head, lr, warmup, beta1, beta2);
    if let Some(d) = a.decay {
        s.decay = d.into();
    }
    if let Some(p) = a.precision {
        s.precision = p.into();
    }
    flags_override!(
        adam_eps,
        weight_decay,
        dropout,
        eval_every,
        save_every,
        sample_every,
        num_samples,
        temperature
    );
    flags_override!(seed, val_fraction);
    s.data = a.data.clone().or(s.data);
    s.tokenizer = a.tokenizer.clone().unwrap_or(s.tokenizer);
    s.init = a.init.clone().or(s.init);
    s.n_ctx = a.n_ctx.or(s.n_ctx);
    s.min_lr = a.min_lr.or(s.min_lr);
    s.grad_clip = a.grad_clip.map_or(s.grad_clip, |c| (c > 0.0).then_some(c));
    s.pack &= !a.no_pack;
    s.train_layers = a.train_layers.or(s.train_layers);
    if a.task != Task::Classify && s.classify.is_none() {
        ensure!(a.labels.is_none(), "--labels goes with --task classify");
    }
    if a.task == Task::Lm && s.classify.is_none() && s.sft.is_none() {
        ensure!(a.val_data.is_none(), "--val-data goes with --task classify or sft");
    }
    if let Some(r) = a.lora_rank {
        super::check::flag(r >= 1, "--lora-rank", r, "at least 1 (the rank of the LoRA matrices)")?;
        let alpha = a.lora_alpha.unwrap_or(DEFAULT_LORA_ALPHA);
        super::check::flag(
            alpha.is_finite() && alpha > 0.0,
            "--lora-alpha",
            alpha,
            "a positive number",
        )?;
        let dropout = a.lora_dropout.unwrap_or(0.0);
        super::check::flag((0.0..1.0).contains(&dropout), "--lora-dropout", dropout, "in [0, 1)")?;
        let targets = a.lora_targets.clone().unwrap_or_default();
        super::check::flag(
            targets.iter().all(|t| !t.trim().is_empty()),
            "--lora-targets",
            targets.join(","),
            "module names separated by commas",
        )?;
        s.lora = Some(LoraSpec {
            r,
            alpha,
            dropout,
            targets,
            base: s.init.clone().unwrap_or_default(),
        });
    }
    if let Some(size) = a.adapter_size {
        let want = "at least 1 (the width of each adapter's bottleneck)";
        super::check::flag(size >= 1, "--adapter-size", size, want)?;
        s.adapter_size = Some(BottleneckSpec {
            size,
            base: s.init.clone().unwrap_or_default(),
        });
    }
    if let Some(n) = a.stop_at {
        let want = format!("at most --steps {} (the run ends there)", s.steps);
        super::check::flag(n <= s.steps, "--stop-at", n, &want)?;
    }
    limits::check_settings(&s)?;
    Ok(s)
}

fn train_options(s: &Settings, stop_at: Option<usize>, progress: Progress) -> TrainOptions {
    TrainOptions {
        steps: s.steps,
        stop_at,
        batch_size: s.batch_size,
        n_ctx: s.n_ctx.expect("resolved before training"),
        grad_accum: s.grad_accum,
        pack: s.pack,
        schedule: Schedule {
            lr: s.lr,
            min_lr: s.min_lr.unwrap_or(s.lr / 10.0),
            warmup: s.warmup,
            steps: s.steps,
            decay: s.decay,
        },
        adamw: AdamWConfig {
            beta1: s.beta1,
            beta2: s.beta2,
            eps: s.adam_eps,
            weight_decay: s.weight_decay,
        },
        grad_clip: s.grad_clip,
        dropout: s.dropout,
        precision: s.precision,
        eval_every: s.eval_every,
        save_every: s.save_every,
        sample_every: s.sample_every,
        seed: s.seed,
        progress,
        zero: false,
        kill_rank_at: None,
        nan_rank_at: None,
    }
}

/// `gpt train`, in one process or as one rank of several (`mpirun`).
pub fn run(a: TrainArgs) -> Result<()> {
    let comm = dist::init()?;
    let result = run_on(a, &*comm);
    if comm.size() == 1 {
        return finish(result);
    }
    match result {
        Err(e) if e.downcast_ref::<EveryRank>().is_none() => {
            // The other ranks would wait for this one forever.
            eprintln!("error on rank {} of {}: {e:#}", comm.rank(), comm.size());
            comm.abort(1)
        }
        Err(e) => {
            // Every rank has the error; rank 0 reports it before any rank
            // exits, since the launcher kills the job at the first failed exit.
            if comm.rank() == 0 {
                let _ = writeln!(std::io::stderr(), "error: {e:#}");
            }
            comm.all_gather_u64(0);
            drop(comm);
            std::process::exit(1)
        }
        result => {
            drop(comm);
            finish(result)
        }
    }
}

/// Ends the process as a run stopped by a signal, or returns the run's result.
fn finish(result: Result<bool>) -> Result<()> {
    if result? {
        std::process::exit(interrupt::EXIT_CODE);
    }
    Ok(())
}

/// Rank `comm.rank()`'s part of the run; true if a signal stopped it.
fn run_on(a: TrainArgs, comm: &dyn Comm) -> Result<bool> {
    super::check::flag(a.zero <= 1, "--zero", a.zero, "0 or 1")?;
    let lead = comm.rank() == 0;
    let Start {
        record,
        mut model,
        mut state,
        data,
        out,
    } = match &a.resume {
        Some(dir) => resume(&a, dir, comm.size())?,
        None => fresh(&a, comm.size(), lead)?,
    };
    let s = &record.settings;
    if comm.size() > 1 {
        let flags = serde_json::to_string(&(&record, a.zero, a.stop_at))?;
        dist::check_same_everywhere(
            comm,
            &[
                ("binaries", own_binary_hash()?),
                ("settings", hash(flags.as_bytes())),
                ("training data", record.train_data),
            ],
        )?;
    }
    if lead && !a.quiet {
        report::start(&model, &data, s)?;
    }
    interrupt::arm()?;
    let mut log: Box<dyn Write> = if lead {
        if a.overwrite {
            out_dir::clear(&out)?;
        }
        std::fs::create_dir_all(&out).with_context(|| format!("creating output directory {}", out.display()))?;
        match &data.tok {
            Tokenizer::Char(t) => t.save(&out)?,
            Tokenizer::Bpe(t) => t.save(&out)?,
        }
        if let Some(template) = data.sft.as_ref().and_then(|d| d.template.as_ref()) {
            // The run's model chats (and resumes) with the template it learnt.
            crate::io::write_atomic(&out.join(crate::model::CHAT_TEMPLATE_FILE), template.as_bytes())?;
        }
        crate::io::write_atomic(
            &out.join(out_dir::RUN_FILE),
            serde_json::to_string_pretty(&record)?.as_bytes(),
        )?;
        Box::new(open_log(&out, state.step)?)
    } else {
        Box::new(std::io::sink())
    };
    let mut hooks = RunHooks {
        out: &out,
        record: serde_json::to_string(&record)?,
        data: &data,
        s,
    };
    let progress = if a.quiet || !lead {
        Progress::Quiet
    } else {
        Progress::for_stderr(s.steps)
    };
    let opts = TrainOptions {
        zero: a.zero == 1,
        kill_rank_at: test_hook("GPT_TEST_KILL_RANK")?,
        nan_rank_at: test_hook("GPT_TEST_NAN_RANK")?,
        ..train_options(s, a.stop_at, progress)
    };
    let report = train_with(
        &mut model,
        &data.train,
        &data.val,
        &opts,
        &mut state,
        &mut log,
        &mut hooks,
        comm,
    )?;
    interrupt::disarm();
    let interrupted = report.interrupted || interrupt::requested();
    if !lead {
        return Ok(interrupted);
    }
    let printed = report::end(&report, state.step, s.steps, &out, a.quiet);
    if interrupted {
        return Ok(true);
    }
    printed?;
    if let Some(spec) = s.adapter().filter(|_| !a.quiet) {
        let mut stdout = super::out::stdout();
        let command = match &data.sft {
            _ if s.classify.is_some() => "classify",
            Some(d) if d.template.is_some() => "generate --chat",
            _ => "generate",
        };
        writeln!(
            stdout,
            "the {}: gpt {command} --model {} --adapter {}",
            spec.what(),
            spec.base(),
            out.display()
        )?;
    }
    if s.classify.is_some() && s.adapter().is_none() && !a.quiet {
        writeln!(
            super::out::stdout(),
            "classify with: gpt classify --model {} \"TEXT\"",
            out.display()
        )?;
    } else if s.classify.is_none() && !a.quiet {
        print_samples(&mut super::out::stdout(), &model, &data, s)?;
    }
    if s.sft.is_some() && s.lora.is_none() && !a.quiet {
        let chat = if data.sft.as_ref().is_some_and(|d| d.template.is_some()) {
            " --chat"
        } else {
            ""
        };
        writeln!(
            super::out::stdout(),
            "ask it: gpt generate --model {}{chat} \"PROMPT\"",
            out.display()
        )?;
    }
    Ok(false)
}

/// A hash of this process's own executable: ranks must all run the same build.
fn own_binary_hash() -> Result<u64> {
    let path = std::env::current_exe().context("finding this program's file")?;
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hash(&bytes))
}

/// The first 8 bytes of the SHA-256 of `bytes`.
fn hash(bytes: &[u8]) -> u64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    u64::from_le_bytes(digest[..8].try_into().expect("32 bytes"))
}

/// Test hooks `GPT_TEST_KILL_RANK=RANK:STEP` (that rank exits at the start of
/// that step, as a crash would) and `GPT_TEST_NAN_RANK=RANK:STEP` (its loss is
/// NaN there), as `(step, rank)`: tests/mpi.rs stages faults with them.
fn test_hook(name: &str) -> Result<Option<(usize, usize)>> {
    let Ok(spec) = std::env::var(name) else {
        return Ok(None);
    };
    let parsed = spec
        .split_once(':')
        .and_then(|(r, s)| Some((s.parse().ok()?, r.parse().ok()?)));
    parsed
        .map(Some)
        .with_context(|| format!("{name}={spec}: must be RANK:STEP"))
}

/// `n` samples: new documents (characters) or text from `<|endoftext|>` (BPE).
fn samples(model: &Gpt, p: &Prepared, s: &Settings, n: usize) -> Result<Vec<String>> {
    let sampling = SampleOptions {
        temperature: s.temperature,
        top_k: None,
        top_p: None,
    };
    let mut rng = rng(s.seed);
    if let Some(sft) = &p.sft {
        // Answers to the first prompts, each printed after its prompt.
        let room = |q: &&Vec<u32>| q.len() < model.config.n_ctx;
        let prompts: Vec<Vec<u32>> = sft.prompts.iter().filter(room).take(n).cloned().collect();
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let opts = GenerateOptions {
            sampling,
            max_new_tokens: (model.config.n_ctx - longest).min(SFT_SAMPLE_TOKENS),
            stop: sft.stop_ids.clone(),
        };
        let mut rngs = split_rng(&mut rng, prompts.len());
        let answers = generate(model, &prompts, &opts, &mut rngs, |_, _| true)?.tokens;
        let text = |ids: &[u32]| p.tok.decode(ids).unwrap_or_default();
        return Ok(prompts.iter().zip(answers).map(|(q, a)| text(q) + &text(&a)).collect());
    }
    let ids = match &p.tok {
        Tokenizer::Char(tok) => generate_documents(model, tok.bos(), n, sampling, &mut rng)?,
        Tokenizer::Bpe(_) => {
            let opts = GenerateOptions {
                sampling,
                max_new_tokens: 80.min(model.config.n_ctx - 1),
                stop: p.tok.document_separator().into_iter().collect(),
            };
            generate_from(model, p.tok.document_separator().unwrap_or(0), n, &opts, &mut rng)?
        }
    };
    Ok(ids.iter().map(|ids| p.tok.decode(ids).unwrap_or_default()).collect())
}

/// The samples printed after training; for documents, how many are new.
fn print_samples(out: &mut impl Write, model: &Gpt, p: &Prepared, s: &Settings) -> Result<()> {
    if s.num_samples == 0 {
        return Ok(());
    }
    let what = super::out::count(s.num_samples, "sample", "samples");
    writeln!(out, "\n{what} (temperature {}):", s.temperature)?;
    let texts = samples(model, p, s, s.num_samples)?;
    if let Tokenizer::Char(_) = p.tok {
        let seen: HashSet<&str> = p.train_docs.iter().map(String::as_str).collect();
        for t in &texts {
            writeln!(out, "{t}")?;
        }
        let novel = texts.iter().filter(|t| !seen.contains(t.as_str())).count();
        let of = super::out::count(texts.len(), "sample is", "samples are");
        writeln!(out, "\n{novel} of {of} not in the training set")?;
    } else {
        for t in &texts {
            writeln!(out, "---\n{t}")?;
        }
    }
    Ok(())
}
