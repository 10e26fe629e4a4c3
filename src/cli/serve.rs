//! `gpt serve`: the flags of the OpenAI-compatible server ([`crate::server`]).

use super::check;
use super::generate::LoadArgs;
use crate::server::{serve, ServeOptions};
use anyhow::Result;
use clap::Args;
use std::time::Duration;

/// The environment variable that gives the API key when `--api-key` does not.
const API_KEY_ENV: &str = "GPT_API_KEY";
/// Most sequences `--max-batch` may decode together, and `--max-queue` may hold waiting.
const MAX_BATCH: usize = 1024;
const MAX_QUEUE: usize = 100_000;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Model: a directory or checkpoint file, or a name fetched with `gpt download` (gpt2, org/name)
    #[arg(long)]
    pub model: String,
    /// The model's id in the API (requests' `model` must match it) [default: the model's file or directory name]
    #[arg(long)]
    pub name: Option<String>,
    /// Address to listen on (loopback: this machine only; 0.0.0.0: every interface)
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on; 0 picks a free one (the URL printed says which)
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on every /v1 request [default: $GPT_API_KEY, else none]
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Sequences decoded together at most
    #[arg(long, default_value_t = 16)]
    pub max_batch: usize,
    /// Sequences waiting for a slot at most; past it requests get 429
    #[arg(long, default_value_t = 64)]
    pub max_queue: usize,
    /// Tokens of context per sequence, prompt included [default: the model's]
    #[arg(long)]
    pub ctx: Option<usize>,
    /// New tokens one request may ask for at most (also the default; at most the context) [default: the context]
    #[arg(long, value_name = "N")]
    pub max_tokens_limit: Option<usize>,
    /// Seconds a request may run; then it ends as `length` (504 if it produced nothing)
    #[arg(long, value_name = "SECS", default_value_t = 600.0)]
    pub timeout: f64,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub quiet: super::out::Quiet,
}

pub fn run(a: ServeArgs) -> Result<()> {
    a.quiet.apply();
    check::flag(
        (1..=MAX_BATCH).contains(&a.max_batch),
        "--max-batch",
        a.max_batch,
        &format!("between 1 and {MAX_BATCH}"),
    )?;
    check::flag(
        (1..=MAX_QUEUE).contains(&a.max_queue),
        "--max-queue",
        a.max_queue,
        &format!("between 1 and {MAX_QUEUE}"),
    )?;
    check::flag(
        a.timeout > 0.0 && a.timeout <= 1e9,
        "--timeout",
        a.timeout,
        "a number of seconds above 0",
    )?;
    if let Some(n) = a.max_tokens_limit {
        check::flag(n >= 1, "--max-tokens-limit", n, "at least 1")?;
    }
    let api_key = a
        .api_key
        .or_else(|| std::env::var(API_KEY_ENV).ok())
        .filter(|k| !k.is_empty());
    serve(ServeOptions {
        model: a.model,
        load: a.load.options(),
        name: a.name,
        host: a.host,
        port: a.port,
        api_key,
        max_batch: a.max_batch,
        max_queue: a.max_queue,
        ctx: a.ctx,
        max_tokens_limit: a.max_tokens_limit,
        timeout: Duration::from_secs_f64(a.timeout),
        quiet: a.quiet.quiet,
    })
}
