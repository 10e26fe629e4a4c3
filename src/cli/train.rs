//! `gpt train`: train a character-level GPT on a documents file.

use crate::data::batch::truncated;
use crate::data::dataset::Dataset;
use crate::data::docs::{read_documents, read_text, split_documents};
use crate::data::tokens::TokenFile;
use crate::model::{Gpt, GptConfig, Init};
use crate::sample::{generate, generate_documents, GenerateOptions, SampleOptions};
use crate::tensor::rng;
use crate::tokenizer::{CharTokenizer, Tokenizer};
use crate::train::optim::AdamWConfig;
use crate::train::schedule::{Decay, Schedule};
use crate::train::{train, TrainOptions};
use anyhow::{bail, ensure, Context, Result};
use clap::{Args, ValueEnum};
use std::collections::HashSet;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// Our default: a 4-layer, 64-wide GPT-2-style model, batched and packed,
    /// tuned for the best validation loss on names within about a minute.
    Default,
    /// microgpt's exact run: 1 layer, 16 wide, one document per step, Adam
    /// lr 0.01 decaying linearly to 0 over 1000 steps, samples at temperature 0.5.
    Microgpt,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Text file (with --tokenizer char: one document per line, blank lines skipped), or a directory
    /// made by `gpt prepare` (BPE) [default: the built-in names list]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Tokenizer: char (one token per character, documents = lines), gpt2 (GPT-2's BPE over the
    /// whole text, or over a `gpt prepare` directory given as --data), or a directory with vocab.json + merges.txt
    #[arg(long, default_value = "char")]
    pub tokenizer: String,
    /// Directory for the checkpoint (model.safetensors, config.json, tokenizer, log.jsonl)
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
    /// Starting values for every setting below; explicit flags override them
    #[arg(long, value_enum, default_value = "default")]
    pub preset: Preset,
    /// Optimizer steps
    #[arg(long)]
    pub steps: Option<usize>,
    /// Rows per batch, each holding one or more documents (up to --n-ctx tokens)
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Seed for the weights, the data split and order, and the samples
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Transformer blocks
    #[arg(long)]
    pub n_layer: Option<usize>,
    /// Embedding width (must be divisible by --n-head)
    #[arg(long)]
    pub n_embd: Option<usize>,
    /// Attention heads
    #[arg(long)]
    pub n_head: Option<usize>,
    /// Context length; longer documents are cut to it (with a warning) [default: longest document + 1, at most 256]
    #[arg(long)]
    pub n_ctx: Option<usize>,
    /// Peak learning rate
    #[arg(long)]
    pub lr: Option<f32>,
    /// Learning rate at the end of the decay
    #[arg(long)]
    pub min_lr: Option<f32>,
    /// Linear warmup steps
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Learning-rate decay after warmup
    #[arg(long, value_enum)]
    pub decay: Option<Decay>,
    #[arg(long)]
    pub beta1: Option<f32>,
    #[arg(long)]
    pub beta2: Option<f32>,
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
    /// Validation loss every N steps (0 = only at the end)
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Fraction of documents held out for validation
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// One document per row instead of packing several
    #[arg(long)]
    pub no_pack: bool,
    /// Documents to generate after training
    #[arg(long)]
    pub num_samples: Option<usize>,
    /// Temperature of those samples
    #[arg(long)]
    pub temperature: Option<f32>,
}

/// Every setting of a run: the preset's values, then the flags on top.
struct Settings {
    microgpt: bool,
    n_layer: usize,
    n_embd: usize,
    n_head: usize,
    /// `None`: the longest document + 1, at most 256.
    n_ctx: Option<usize>,
    init: Init,
    steps: usize,
    batch_size: usize,
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
    eval_every: usize,
    num_samples: usize,
    temperature: f32,
}

impl Preset {
    fn settings(self) -> Settings {
        let default = Settings {
            microgpt: false,
            n_layer: 4,
            n_embd: 64,
            n_head: 4,
            n_ctx: None,
            init: Init::Gpt2,
            steps: 4000,
            batch_size: 64,
            pack: true,
            lr: 4e-3,
            min_lr: None,
            warmup: 100,
            decay: Decay::Cosine,
            beta1: 0.9,
            beta2: 0.99,
            adam_eps: 1e-8,
            weight_decay: 0.1,
            grad_clip: Some(1.0),
            dropout: 0.0,
            eval_every: 500,
            num_samples: 20,
            temperature: 0.8,
        };
        match self {
            Preset::Default => default,
            Preset::Microgpt => Settings {
                microgpt: true,
                n_layer: 1,
                n_embd: 16,
                n_ctx: Some(16),
                init: Init::Normal(0.08),
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

fn settings(a: &TrainArgs) -> Settings {
    let mut s = a.preset.settings();
    macro_rules! flags_override {
        ($($field:ident),*) => { $( if let Some(v) = a.$field { s.$field = v; } )* };
    }
    flags_override!(steps, batch_size, n_layer, n_embd, n_head, lr, warmup, decay, beta1, beta2, adam_eps);
    flags_override!(weight_decay, dropout, eval_every, num_samples, temperature);
    s.n_ctx = a.n_ctx.or(s.n_ctx);
    s.min_lr = a.min_lr.or(s.min_lr);
    s.grad_clip = a.grad_clip.map_or(s.grad_clip, |c| (c > 0.0).then_some(c));
    s.pack &= !a.no_pack;
    s
}

fn train_options(s: &Settings, seed: u64) -> TrainOptions {
    TrainOptions {
        steps: s.steps,
        batch_size: s.batch_size,
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
        eval_every: s.eval_every,
        seed,
        progress: true,
    }
}

/// The data of a run, encoded, with its tokenizer.
struct Prepared {
    tok: Tokenizer,
    train: Dataset,
    val: Dataset,
    n_ctx: usize,
    /// Training documents as text (character models), to tell new samples from copies.
    train_docs: Vec<String>,
    what: String,
}

/// Character model: one document per line, split into train and validation documents.
fn prepare_chars(a: &TrainArgs, s: &Settings) -> Result<Prepared> {
    let docs = read_documents(a.data.as_deref())?;
    let (train_docs, val_docs) = split_documents(docs, a.val_fraction, a.seed);
    let tok = CharTokenizer::from_docs(&train_docs);
    let train_ids = train_docs
        .iter()
        .map(|d| tok.encode_doc(d))
        .collect::<Result<Vec<_>>>()?;
    // Validation documents may hold characters never seen in training: drop those.
    let val_ids: Vec<Vec<u32>> = val_docs.iter().filter_map(|d| tok.encode_doc(d).ok()).collect();
    if val_ids.len() < val_docs.len() {
        eprintln!(
            "note: {} validation documents use characters absent from training and are skipped",
            val_docs.len() - val_ids.len()
        );
    }
    let longest = train_ids.iter().chain(&val_ids).map(|d| d.len() - 1).max().unwrap_or(1);
    let n_ctx = s.n_ctx.unwrap_or(longest.min(256));
    let cut = truncated(&train_ids, n_ctx) + truncated(&val_ids, n_ctx);
    if cut > 0 {
        eprintln!("warning: {cut} documents are longer than n_ctx = {n_ctx} tokens and are cut to their first {n_ctx} (raise --n-ctx to keep them whole)");
    }
    let what = format!("{} documents ({} for validation)", train_ids.len(), val_ids.len());
    Ok(Prepared {
        tok: Tokenizer::Char(tok),
        train: Dataset::Docs(train_ids),
        val: Dataset::Docs(val_ids),
        n_ctx,
        train_docs,
        what,
    })
}

/// BPE model: a text file tokenized on the fly (its last `--val-fraction` of
/// tokens held out), or a directory from `gpt prepare` (train.bin, val.bin).
fn prepare_bpe(a: &TrainArgs, s: &Settings, spec: &str) -> Result<Prepared> {
    let tok = match spec {
        "gpt2" => Tokenizer::gpt2(),
        dir => match Tokenizer::load(Path::new(dir))? {
            t @ Tokenizer::Bpe(_) => t,
            Tokenizer::Char(_) => bail!("--tokenizer {dir} holds a character tokenizer; give gpt2 or a BPE directory"),
        },
    };
    let (train, val) = match a.data.as_deref() {
        Some(dir) if dir.join("train.bin").is_file() => {
            let load = |name: &str| -> Result<Vec<u32>> {
                let f = TokenFile::open(&dir.join(name))?;
                f.check_tokenizer(&tok)?;
                Ok(f.to_vec())
            };
            let val = if dir.join("val.bin").is_file() {
                load("val.bin")?
            } else {
                Vec::new()
            };
            (load("train.bin")?, val)
        }
        path => {
            let text = match path {
                Some(p) => read_text(p)?,
                None => crate::data::docs::NAMES.to_string(),
            };
            let mut ids = tok.encode(&text)?;
            let n_val = (ids.len() as f64 * a.val_fraction).round() as usize;
            let val = if n_val >= 2 && ids.len() - n_val >= 2 {
                ids.split_off(ids.len() - n_val)
            } else {
                Vec::new()
            };
            (ids, val)
        }
    };
    ensure!(
        train.len() >= 2,
        "the training data has {} tokens: nothing to learn from",
        train.len()
    );
    if val.is_empty() {
        eprintln!("note: no validation split (too little data or --val-fraction 0): only training loss is reported");
    }
    let n_ctx = s.n_ctx.unwrap_or(256).min(train.len() - 1);
    let what = format!(
        "{} tokens ({} for validation, {} tokenizer)",
        train.len(),
        val.len(),
        tok.name()
    );
    Ok(Prepared {
        tok,
        train: Dataset::Stream(train),
        val: Dataset::Stream(val),
        n_ctx,
        train_docs: Vec::new(),
        what,
    })
}

pub fn run(a: TrainArgs) -> Result<()> {
    let mut s = settings(&a);
    let p = match a.tokenizer.as_str() {
        "char" => prepare_chars(&a, &s)?,
        spec => {
            // Windows of a stream are long: fewer rows and samples unless asked.
            s.batch_size = a.batch_size.unwrap_or(8);
            s.num_samples = a.num_samples.unwrap_or(3);
            prepare_bpe(&a, &s, spec)?
        }
    };
    let (n_ctx, vocab) = (p.n_ctx, p.tok.vocab_size());
    let config = GptConfig {
        n_ctx,
        n_embd: s.n_embd,
        n_head: s.n_head,
        n_layer: s.n_layer,
        ..if s.microgpt {
            GptConfig::microgpt(vocab)
        } else {
            GptConfig::gpt2(vocab, n_ctx, s.n_embd, s.n_head, s.n_layer)
        }
    };
    config.validate()?;
    let mut model = Gpt::new(config, s.init, &mut rng(a.seed));
    eprintln!(
        "training {} parameters ({} layers, {} wide, {} heads, n_ctx {}) on {}, {} steps",
        model.params.count(),
        s.n_layer,
        s.n_embd,
        s.n_head,
        n_ctx,
        p.what,
        s.steps
    );

    std::fs::create_dir_all(&a.out).with_context(|| format!("creating output directory {}", a.out.display()))?;
    let log_path = a.out.join("log.jsonl");
    let mut log = BufWriter::new(File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?);
    let report = train(&mut model, &p.train, &p.val, &train_options(&s, a.seed), &mut log)?;
    model.save(&a.out)?;
    match &p.tok {
        Tokenizer::Char(t) => t.save(&a.out)?,
        Tokenizer::Bpe(t) => t.save(&a.out)?,
    }
    crate::train::plot::write_loss_plot(&a.out.join("loss.svg"), &report.losses, &report.val_losses)?;

    let fmt = |l: Option<f32>| l.map_or("n/a".to_string(), |l| format!("{l:.4}"));
    println!(
        "done: {} steps in {:.2}s ({:.2} ms/step, {:.0} tokens/s) | train loss {} | val loss {}",
        s.steps,
        report.seconds,
        1e3 * report.seconds / s.steps.max(1) as f64,
        report.tokens as f64 / report.seconds,
        fmt(report.train_loss),
        fmt(report.val_loss)
    );
    if let Some(last) = report.losses.len().checked_sub(100) {
        let mean = report.losses[last..].iter().sum::<f32>() / 100.0;
        println!("mean training loss over the last 100 steps: {mean:.4}");
    }
    println!(
        "saved to {} (loss plot: {})",
        a.out.display(),
        a.out.join("loss.svg").display()
    );
    print_samples(&model, &p, &s, a.seed)
}

/// Samples after training: new documents (characters) or text from `<|endoftext|>` (BPE).
fn print_samples(model: &Gpt, p: &Prepared, s: &Settings, seed: u64) -> Result<()> {
    let sampling = SampleOptions {
        temperature: s.temperature,
        top_k: None,
        top_p: None,
    };
    println!("\n{} samples (temperature {}):", s.num_samples, s.temperature);
    match &p.tok {
        Tokenizer::Char(tok) => {
            let samples = generate_documents(model, tok.bos(), s.num_samples, sampling, &mut rng(seed));
            let seen: HashSet<&str> = p.train_docs.iter().map(String::as_str).collect();
            let mut novel = 0;
            for ids in &samples {
                let text = tok.decode(ids)?;
                novel += usize::from(!seen.contains(text.as_str()));
                println!("{text}");
            }
            println!("\n{novel} of {} samples are not in the training set", samples.len());
        }
        Tokenizer::Bpe(_) => {
            let start = p.tok.document_separator().unwrap_or(0);
            let opts = GenerateOptions {
                sampling,
                max_new_tokens: 80.min(model.config.n_ctx - 1),
                eos: p.tok.document_separator(),
            };
            let prompts = vec![vec![start]; s.num_samples];
            for ids in generate(model, &prompts, &opts, &mut rng(seed), |_, _| true).tokens {
                println!("---\n{}", p.tok.decode(&ids)?);
            }
        }
    }
    Ok(())
}
