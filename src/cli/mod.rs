//! The `gpt` command line: one subcommand per job.

mod chat;
mod check;
mod choice;
mod classify;
mod download;
mod eval;
mod generate;
mod info;
mod merge;
mod models;
mod out;
mod quantize;
mod sample;
mod serve;
mod tokenize;
mod train;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "gpt", version, about = "Train, fine-tune and run GPT models", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Worker threads [default: one per core; under mpirun, the cores over the ranks on this machine]
    #[arg(long, global = true)]
    pub threads: Option<usize>,
}

// Parsed once per process: the size of the train variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a GPT on your text (default: the built-in names), fine-tune one (--init), or resume a run
    Train(train::TrainArgs),
    /// Generate new documents from a model (a name per line from a character model trained with `gpt train`)
    Sample(sample::SampleArgs),
    /// Continue prompts with a GPT (GPT-2 or your own), streamed as they are generated
    Generate(generate::GenerateArgs),
    /// Chat with a chat model in the terminal (or through a pipe): one message per line
    Chat(chat::ChatArgs),
    /// Serve a model over HTTP with the OpenAI API (completions, chat, streaming), many clients at once
    Serve(serve::ServeArgs),
    /// Mean loss per token and perplexity of a model over a text file, or its multiple-choice accuracy (--task choice)
    Eval(eval::EvalArgs),
    /// Label texts with a classifier (gpt train --task classify): each label's probability, and with
    /// labelled data accuracy, per-class precision/recall and the confusion matrix
    Classify(classify::ClassifyArgs),
    /// What a model is: architecture, sizes, parameters, dtype, context, tokenizer, size on disk
    Info(info::InfoArgs),
    /// The models in the local Hugging Face cache (what `gpt download` fetched), by name and size
    Models(models::ModelsArgs),
    /// Download a GPT-2 model from the Hugging Face Hub into its cache (gpt2, gpt2-medium, …, org/name)
    Download(download::DownloadArgs),
    /// Print the token ids of a text as one JSON array (GPT-2's BPE by default), or with --decode the text of ids
    Tokenize(tokenize::TokenizeArgs),
    /// Write a model as a GGUF file llama.cpp runs, its weights quantized (q8_0, q4_0, q4_1) or as floats
    Quantize(quantize::QuantizeArgs),
    /// Fold a LoRA adapter (peft's format) into its base model and save the result as a model directory
    Merge(merge::MergeArgs),
    /// Tokenize a text corpus into train.bin / val.bin token files
    Prepare(tokenize::PrepareArgs),
    /// Tokenizer tools: learn a byte-level BPE vocabulary
    #[command(subcommand)]
    Tokenizer(tokenize::TokenizerCommand),
}

/// Most worker threads `--threads` may ask for.
const MAX_THREADS: usize = 1024;

/// Runs the command line: status 0 on success, and when the reader of
/// standard output closed it (`gpt sample | head -1`); 1 on an error, said
/// on stderr.
pub fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if out::is_closed(&err) => ExitCode::SUCCESS,
        Err(err) => {
            // A closed stderr leaves nothing to report to.
            let _ = writeln!(std::io::stderr(), "error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(n) = cli.threads {
        check::flag(
            (1..=MAX_THREADS).contains(&n),
            "--threads",
            n,
            &format!("between 1 and {MAX_THREADS}"),
        )?;
        pool = pool.num_threads(n);
    } else if let Some(n) = crate::train::dist::threads_per_rank() {
        pool = pool.num_threads(n);
    }
    let pool = pool.build().context("starting the thread pool")?;
    // Run inside the pool so kernels' parallel loops start without a hand-off.
    pool.install(|| match cli.command {
        Command::Train(a) => train::run(a),
        Command::Sample(a) => sample::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Chat(a) => chat::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Classify(a) => classify::run(a),
        Command::Info(a) => info::run(a),
        Command::Models(a) => models::run(a),
        Command::Download(a) => download::run(a),
        Command::Tokenize(a) => tokenize::run_tokenize(a),
        Command::Quantize(a) => quantize::run(a),
        Command::Merge(a) => merge::run(a),
        Command::Prepare(a) => tokenize::run_prepare(a),
        Command::Tokenizer(c) => tokenize::run_tokenizer(c),
    })
}
