//! `gpt tokenize`, `gpt prepare` and `gpt tokenizer train`.

use super::out::note;
use crate::data::tokens::{write_token_file, IdWidth, TokenHeader};
use crate::tokenizer::{bpe, Tokenizer};
use anyhow::{bail, ensure, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct TokenizeArgs {
    /// Whose tokenizer to use: a model as `gpt generate` takes it (a directory, a .gguf file,
    /// or a name fetched with `gpt download`), gpt2, or a directory with tokenizer files
    /// [default: GPT-2's built-in BPE]
    #[arg(long)]
    pub model: Option<String>,
    /// Text file to tokenize; `-` or none reads standard input
    pub file: Option<PathBuf>,
    /// Print only the number of tokens
    #[arg(long)]
    pub count: bool,
    /// Encode `<|endoftext|>` in the text as its special token, not as text
    #[arg(long)]
    pub allow_special: bool,
    /// The other way: read token ids (as this command prints them: a JSON array; spaces or
    /// commas also separate them) and print their text
    #[arg(long, conflicts_with_all = ["count", "allow_special"])]
    pub decode: bool,
}

#[derive(Args, Debug)]
pub struct PrepareArgs {
    /// Text files of the corpus (UTF-8); several are joined with the
    /// tokenizer's document separator (`<|endoftext|>`) between them
    #[arg(long = "input", required = true, num_args = 1..)]
    pub inputs: Vec<PathBuf>,
    /// Directory for train.bin and val.bin
    #[arg(long)]
    pub out: PathBuf,
    /// Fraction of the tokens (the last ones) held out in val.bin
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// gpt2 (built in), a directory with tokenizer files (vocab.json + merges.txt,
    /// tokenizer.json, char_tokenizer.json), or a model whose tokenizer to use (as `gpt generate` takes it)
    #[arg(long, default_value = "gpt2")]
    pub tokenizer: String,
    /// Bytes per token id: `auto` is u16 when the vocabulary fits, else u32
    #[arg(long, value_enum, default_value_t = Dtype::Auto)]
    pub dtype: Dtype,
    #[command(flatten)]
    pub quiet: super::out::Quiet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Dtype {
    Auto,
    U16,
    U32,
}

#[derive(Subcommand, Debug)]
pub enum TokenizerCommand {
    /// Learn a byte-level BPE vocabulary (GPT-2's pre-tokenizer) from text files
    Train(TrainTokenizerArgs),
}

#[derive(Args, Debug)]
pub struct TrainTokenizerArgs {
    /// Vocabulary size: 256 bytes + merges + `<|endoftext|>` (fewer when the text has no more pairs to merge)
    #[arg(long)]
    pub vocab_size: usize,
    /// Text files to learn from (UTF-8)
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Directory for vocab.json and merges.txt (Hugging Face compatible)
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub quiet: super::out::Quiet,
}

/// `gpt tokenize`: prints the ids as one JSON array (or their count).
pub fn run_tokenize(args: TokenizeArgs) -> Result<()> {
    let tokenizer = match &args.model {
        Some(spec) => named_tokenizer("--model", spec, "")?,
        None => Tokenizer::gpt2(),
    };
    let text = match args.file.as_deref() {
        None => read_stdin()?,
        Some(p) if p == Path::new("-") => read_stdin()?,
        Some(p) => read_text(p)?,
    };
    if args.decode {
        let ids = parse_ids(&text)?;
        let bytes = match &tokenizer {
            Tokenizer::Bpe(bpe) => bpe.decode_bytes(&ids)?,
            Tokenizer::Char(_) => tokenizer.decode(&ids)?.into_bytes(),
        };
        let mut out = super::out::stdout();
        out.write_all(&bytes)?;
        return Ok(out.flush()?);
    }
    let ids = match (&tokenizer, args.allow_special) {
        (Tokenizer::Bpe(bpe), true) => bpe.encode_parallel(&text, true),
        _ => tokenizer.encode(&text)?,
    };
    let mut out = std::io::BufWriter::new(super::out::stdout());
    if args.count {
        writeln!(out, "{}", ids.len())?;
    } else {
        serde_json::to_writer(&mut out, &ids)?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}

/// Token ids from text: a JSON array as `gpt tokenize` prints it, or ids
/// separated by spaces or commas.
fn parse_ids(text: &str) -> Result<Vec<u32>> {
    let inner = text
        .trim()
        .strip_prefix('[')
        .map_or(text, |t| t.trim_end().strip_suffix(']').unwrap_or(t));
    inner
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u32>()
                .map_err(|_| anyhow::anyhow!("--decode: {s:?} is not a token id (ids are whole numbers from 0)"))
        })
        .collect()
}

/// `gpt prepare`: tokenizes a corpus into train.bin and val.bin.
pub fn run_prepare(args: PrepareArgs) -> Result<()> {
    args.quiet.apply();
    ensure!(
        (0.0..1.0).contains(&args.val_fraction),
        "--val-fraction must be in [0, 1), got {}",
        args.val_fraction
    );
    let tokenizer = named_tokenizer("--tokenizer", &args.tokenizer, "")?;
    let width = match args.dtype {
        Dtype::Auto => IdWidth::for_vocab(tokenizer.vocab_size()),
        Dtype::U16 => IdWidth::U16,
        Dtype::U32 => IdWidth::U32,
    };
    let texts = args.inputs.iter().map(|p| read_text(p)).collect::<Result<Vec<_>>>()?;
    let total: usize = texts.iter().map(String::len).sum();
    if texts.iter().all(|t| t.trim().is_empty()) {
        bail!("the corpus is empty: {} has no text", list(&args.inputs));
    }
    let bar = progress_bar(total as u64, "tokenizing");
    let mut ids = Vec::with_capacity(total / 3);
    for (i, text) in texts.iter().enumerate() {
        if i > 0 {
            ids.extend(tokenizer.document_separator());
        }
        match &tokenizer {
            Tokenizer::Bpe(bpe) => ids.extend(bpe.encode_parallel_with(text, false, |n| bar.inc(n as u64))),
            Tokenizer::Char(_) => {
                let part = tokenizer
                    .encode(text)
                    .with_context(|| format!("tokenizing {}", args.inputs[i].display()))?;
                ids.extend(part);
                bar.inc(text.len() as u64);
            }
        }
    }
    bar.finish_and_clear();
    let n_val = (ids.len() as f64 * args.val_fraction).round() as usize;
    let (train, val) = ids.split_at(ids.len() - n_val);
    ensure!(
        !train.is_empty(),
        "no tokens left for train.bin with --val-fraction {}",
        args.val_fraction
    );
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    for (name, part) in [("train.bin", train), ("val.bin", val)] {
        let header = TokenHeader::new(&tokenizer, width, part.len())?;
        write_token_file(&args.out.join(name), &header, part)?;
    }
    note!(
        "wrote {dir}/train.bin ({}) and {dir}/val.bin ({}), {} bytes per id, tokenizer {} ({} ids, fingerprint {:016x})",
        super::out::count(train.len(), "token", "tokens"),
        super::out::count(val.len(), "token", "tokens"),
        width.bytes(),
        tokenizer.name(),
        tokenizer.vocab_size(),
        tokenizer.fingerprint(),
        dir = args.out.display()
    );
    Ok(())
}

/// `gpt tokenizer ...`.
pub fn run_tokenizer(command: TokenizerCommand) -> Result<()> {
    match command {
        TokenizerCommand::Train(args) => run_train(args),
    }
}

fn run_train(args: TrainTokenizerArgs) -> Result<()> {
    args.quiet.apply();
    super::check::flag(
        args.vocab_size >= bpe::train::MIN_VOCAB_SIZE,
        "--vocab-size",
        args.vocab_size,
        &format!(
            "at least {} (the 256 bytes and {})",
            bpe::train::MIN_VOCAB_SIZE,
            bpe::ENDOFTEXT
        ),
    )?;
    let start = Instant::now();
    let texts = args.files.iter().map(|p| read_text(p)).collect::<Result<Vec<_>>>()?;
    if texts.iter().all(|t| t.is_empty()) {
        bail!("the corpus is empty: {} has no text", list(&args.files));
    }
    let slices: Vec<&str> = texts.iter().map(String::as_str).collect();
    let bar = super::out::bar(args.vocab_size.saturating_sub(bpe::train::MIN_VOCAB_SIZE) as u64);
    bar.set_style(style("{msg} [{bar:40}] {pos}/{len} merges ({per_sec}, {eta})"));
    bar.set_message("learning BPE");
    let tokenizer = bpe::train::train(&slices, args.vocab_size, |done, _| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    tokenizer.save(&args.out)?;
    let bytes: usize = texts.iter().map(String::len).sum();
    note!(
        "learned {} merges (vocabulary {}) from {:.1} MB in {:.2} s; wrote {dir}/{} and {dir}/{}",
        tokenizer.vocab_size() - bpe::train::MIN_VOCAB_SIZE,
        tokenizer.vocab_size(),
        bytes as f64 / 1e6,
        start.elapsed().as_secs_f64(),
        bpe::VOCAB_FILE,
        bpe::MERGES_FILE,
        dir = args.out.display()
    );
    Ok(())
}

/// What a flag naming a tokenizer takes (`gpt train --tokenizer` takes `char` too).
const TOKENIZER_CHOICES: &str = "gpt2 (GPT-2's BPE, built in), a directory with tokenizer files \
     (vocab.json + merges.txt as `gpt tokenizer train` writes them, tokenizer.json, char_tokenizer.json), \
     or a model's (a directory, a .gguf file, or a name fetched with `gpt download`)";

/// The tokenizer `spec` names, given as `flag`: `gpt2`, or the tokenizer of
/// a directory or model as [`crate::model::load_tokenizer`] finds it. An
/// error lists the choices, `also` first (the caller's own, such as `char`).
pub(super) fn named_tokenizer(flag: &str, spec: &str, also: &str) -> Result<Tokenizer> {
    if spec == "gpt2" {
        return Ok(Tokenizer::gpt2());
    }
    crate::model::load_tokenizer(spec).with_context(|| format!("{flag} {spec}: give {also}{TOKENIZER_CHOICES}"))
}

/// Reads a UTF-8 text file, with the file named in any error.
pub(super) fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{} is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

pub(super) fn read_stdin() -> Result<String> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .context("reading standard input")?;
    String::from_utf8(bytes).context("standard input is not UTF-8 text")
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("valid progress template")
        .progress_chars("=> ")
}

fn progress_bar(total: u64, message: &'static str) -> ProgressBar {
    let bar = super::out::bar(total);
    bar.set_style(style("{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})"));
    bar.set_message(message);
    bar
}
