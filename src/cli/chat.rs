//! `gpt chat`: a conversation with a chat model in the terminal (or through
//! a pipe): each line read is the user's message, each reply streamed as it
//! is decoded, the conversation kept inside the model's context.

use super::check;
use super::generate::LoadArgs;
use super::out::note;
use super::sample::SamplingArgs;
use crate::model::{self, encode_chat, ChatSpec};
use crate::sample::completion::Completion;
use crate::sample::{fit_conversation, generate, working_memory, GenerateOptions};
use crate::tensor::rng;
use crate::tokenizer::{ChatTemplate, Message};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct ChatArgs {
    /// Model: a directory or checkpoint file, or a name fetched with `gpt download` (org/name)
    #[arg(long)]
    pub model: String,
    /// A system message that opens the conversation (and is never dropped)
    #[arg(long)]
    pub system: Option<String>,
    /// A chat template (Jinja, as tokenizer_config.json's chat_template) instead of the model's
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,
    /// New tokens per reply at most; each prompt leaves room for this many
    /// (up to half the context), dropping the oldest turns if it must
    #[arg(short = 'n', long = "max-new-tokens", default_value_t = 512)]
    pub max_new_tokens: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Print each prompt's token ids to stderr before its reply, as `prompt ids: [..]`
    #[arg(long)]
    pub show_prompt: bool,
    #[command(flatten)]
    pub quiet: super::out::Quiet,
}

/// The model's chat template, or the one in `file`; an error saying what to
/// do when there is none.
pub(super) fn chat_template(spec: &mut ChatSpec, file: Option<&Path>, model: &str) -> Result<ChatTemplate> {
    if let Some(file) = file {
        spec.set_template_file(file)?;
    }
    if spec.template.is_none() {
        bail!(
            "{model} has no chat template (no chat_template in its {} nor a {}): pass one with --template FILE",
            crate::tokenizer::bpe::TOKENIZER_CONFIG_FILE,
            model::CHAT_TEMPLATE_FILE
        );
    }
    spec.compile()
}

/// The messages of a conversation's start: the system message, if any.
pub(super) fn opening(system: Option<&str>) -> Vec<Message> {
    system.map(|s| Message::new("system", s)).into_iter().collect()
}

pub fn run(a: ChatArgs) -> Result<()> {
    a.quiet.apply();
    let sampling = a.sampling.options()?;
    check::flag(
        a.max_new_tokens >= 1,
        "--max-new-tokens",
        a.max_new_tokens,
        "at least 1",
    )?;
    let model::Loaded {
        model,
        tokenizer: tok,
        mut chat,
        ..
    } = model::load(&a.model, &a.load.options())?;
    let template = chat_template(&mut chat, a.template.as_deref(), &a.model)?;
    let n_ctx = model.config.n_ctx;
    check::fits_in_memory(
        working_memory(&model.config, 1, n_ctx, a.max_new_tokens),
        || format!("a chat with a context of {n_ctx} tokens"),
        "use a smaller model",
    )?;
    // Room kept for each reply: what was asked, but at most half the context.
    let reserve = a.max_new_tokens.min(n_ctx / 2);
    let opts = GenerateOptions {
        sampling,
        max_new_tokens: a.max_new_tokens,
        stop: chat.stop_ids.clone(),
    };
    let encode = |messages: &[Message]| encode_chat(&tok, &chat.render(&template, messages, true)?);
    // Checked before the first message: the template renders a conversation.
    encode(&[opening(a.system.as_deref()), vec![Message::new("user", "Hi")]].concat())?;

    let interactive = std::io::stdin().is_terminal();
    if interactive {
        note!("chatting with {} (/reset starts over, /exit or Ctrl-D ends)", a.model);
    }
    let mut messages = opening(a.system.as_deref());
    let mut rng = rng(a.sampling.seed);
    let mut stdin = std::io::stdin().lock();
    let mut stdout = super::out::stdout();
    let mut line = Vec::new();
    loop {
        if interactive {
            write!(stdout, "> ")?;
            stdout.flush()?;
        }
        line.clear();
        if stdin.read_until(b'\n', &mut line).context("reading stdin")? == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        match text.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                messages = opening(a.system.as_deref());
                note!("(conversation reset)");
                continue;
            }
            _ => {}
        }
        messages.push(Message::new("user", text));
        let (ids, dropped) = match fit_conversation(&mut messages, n_ctx, reserve, encode) {
            Ok(fit) => fit,
            Err(e) => {
                messages.pop();
                eprintln!("error: {e:#}");
                continue;
            }
        };
        if dropped > 0 {
            note!(
                "(dropped the oldest {dropped} turn{} to stay within the model's context of {n_ctx} tokens)",
                if dropped == 1 { "" } else { "s" }
            );
        }
        if a.show_prompt {
            eprintln!("prompt ids: {}", serde_json::to_string(&ids)?);
        }
        let mut reply = Completion::new();
        let mut failure = None;
        generate(
            &model,
            &[ids],
            &opts,
            std::slice::from_mut(&mut rng),
            |_, id| match tok.token_bytes(id) {
                Ok(bytes) => {
                    let shown = reply.push(&bytes, &[]);
                    match write!(stdout, "{shown}").and_then(|()| stdout.flush()) {
                        Ok(()) => true,
                        Err(e) => {
                            failure = Some(e.into());
                            false
                        }
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    false
                }
            },
        )?;
        if let Some(e) = failure {
            return Err(e);
        }
        let rest = reply.rest();
        writeln!(stdout, "{rest}")?;
        stdout.flush()?;
        messages.push(Message::new("assistant", &reply.text()));
    }
    Ok(())
}
