//! Instruction data for supervised fine-tuning (SFT): Alpaca-style records
//! (`instruction`, optional `input`, `output`) as a JSON array or JSON lines,
//! or chat JSON lines (`{"messages": [{"role": …, "content": …}, …]}`).
//! Each record becomes a prompt, which is context, and a response, which is
//! learnt: rendered with the model's chat template, or without one in the
//! Alpaca prompt format of *LLMs from Scratch* (ch. 7), the response ended by
//! the token the model stops at. Every error names the file and line.

use crate::tokenizer::{encode_chat, encode_prompt, ChatTemplate, Message, Tokenizer};
use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use std::path::Path;

/// The roles a chat record's messages may have.
const ROLES: [&str; 3] = ["system", "user", "assistant"];

/// Warnings name at most this many lines each, then a count of the rest.
const LINES_NAMED: usize = 5;

/// One record of an instruction file and the line it starts on.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub line: usize,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// An instruction, its input (may be empty) and the wanted output.
    Alpaca {
        instruction: String,
        input: String,
        output: String,
    },
    /// A conversation; its assistant messages are learnt.
    Chat(Vec<Message>),
}

/// The Alpaca prompt of *LLMs from Scratch* (ch. 7), up to where the response begins.
pub fn alpaca_prompt(instruction: &str, input: &str) -> String {
    let mut text = format!(
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}"
    );
    if !input.is_empty() {
        text += &format!("\n\n### Input:\n{input}");
    }
    text + "\n\n### Response:\n"
}

/// The records of `path`: a JSON array of objects, or one object per line.
pub fn read_records(path: &Path) -> Result<Vec<Record>> {
    let p = path.display();
    let bytes = std::fs::read(path).with_context(|| format!("reading {p}"))?;
    let text = String::from_utf8(bytes).with_context(|| format!("{p} is not UTF-8 text"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut out = Vec::new();
    if text.trim_start().starts_with('[') {
        let items: Vec<&serde_json::value::RawValue> = serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("{p}:{}: not a JSON array of records: {e}", e.line()))?;
        for raw in items {
            let offset = raw.get().as_ptr() as usize - text.as_ptr() as usize;
            let line = text[..offset].matches('\n').count() + 1;
            let value: Value = serde_json::from_str(raw.get()).with_context(|| format!("{p}:{line}: not JSON"))?;
            out.push(record(path, line, &value)?);
        }
    } else {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let value: Value =
                serde_json::from_str(line).with_context(|| format!("{p}:{}: not a JSON object", i + 1))?;
            out.push(record(path, i + 1, &value)?);
        }
    }
    ensure!(
        !out.is_empty(),
        "{p} holds no records: expected a JSON array or JSON lines of {{\"instruction\", \"input\", \"output\"}} or {{\"messages\": [...]}}"
    );
    Ok(out)
}

/// One record, checked.
fn record(path: &Path, line: usize, v: &Value) -> Result<Record> {
    let at = format!("{}:{line}", path.display());
    ensure!(
        v.is_object(),
        "{at}: expected an object with \"instruction\", \"input\", \"output\" or with \"messages\", got {}",
        short(v)
    );
    let text = |key: &str, v: &Value| -> Result<String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            _ => bail!("{at}: \"{key}\" must be a text, got {}", short(v)),
        }
    };
    if let Some(messages) = v.get("messages") {
        let Value::Array(items) = messages else {
            bail!(
                "{at}: \"messages\" must be a list of {{\"role\", \"content\"}}, got {}",
                short(messages)
            )
        };
        let mut out = Vec::new();
        for m in items {
            let (Some(role), Some(content)) = (m.get("role"), m.get("content")) else {
                bail!("{at}: a message without \"role\" and \"content\": {}", short(m))
            };
            let (role, content) = (text("role", role)?, text("content", content)?);
            ensure!(
                ROLES.contains(&role.as_str()),
                "{at}: unknown role {role:?} (expected one of {})",
                ROLES.join(", ")
            );
            ensure!(
                role != "assistant" || !content.trim().is_empty(),
                "{at}: an assistant message is empty: nothing to learn from it"
            );
            out.push(Message { role, content });
        }
        // Messages after the last reply teach nothing.
        let Some(last) = out.iter().rposition(|m| m.role == "assistant") else {
            bail!("{at}: no assistant message: nothing to learn")
        };
        out.truncate(last + 1);
        return Ok(Record {
            line,
            body: Body::Chat(out),
        });
    }
    let field = |key: &str| -> Result<String> {
        match v.get(key) {
            Some(value) => text(key, value),
            None => bail!(
                "{at}: no \"{key}\" (a record has \"instruction\", \"output\" and optionally \"input\"; or \"messages\")"
            ),
        }
    };
    let (instruction, output) = (field("instruction")?, field("output")?);
    ensure!(!output.trim().is_empty(), "{at}: the output is empty: nothing to learn");
    let input = match v.get("input") {
        None | Some(Value::Null) => String::new(),
        Some(i) => text("input", i)?,
    };
    Ok(Record {
        line,
        body: Body::Alpaca {
            instruction,
            input,
            output,
        },
    })
}

/// A value for an error message, cut short.
fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// A chat template and the BOS / EOS texts it is given.
pub struct Template {
    pub template: ChatTemplate,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
}

/// How records become token ids.
pub struct Format {
    /// The model's chat template; `None`: the Alpaca prompt format.
    pub template: Option<Template>,
    /// The ids the model stops at; the first ends a response that has none.
    pub stop_ids: Vec<u32>,
}

/// A record encoded: its ids, and for each whether it is learnt (a target
/// that counts in the loss: the response and the token that ends it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Encoded {
    pub line: usize,
    pub ids: Vec<u32>,
    pub scored: Vec<bool>,
}

impl Encoded {
    fn push(&mut self, ids: &[u32], scored: bool) {
        self.ids.extend_from_slice(ids);
        self.scored.resize(self.ids.len(), scored);
    }

    /// The prompt: the ids before the first learnt one.
    pub fn prompt(&self) -> &[u32] {
        &self.ids[..self.scored.iter().position(|&s| s).unwrap_or(self.ids.len())]
    }
}

impl Format {
    /// `record` (of `path`) as ids. With a template, each assistant turn is
    /// learnt up to the stop token the template ends it with (what follows
    /// it, such as a newline, is context); the rest of the conversation is
    /// context. The prompt and the reply are encoded apart, as generation
    /// sees the prompt.
    pub fn encode(&self, tok: &Tokenizer, path: &Path, record: &Record) -> Result<Encoded> {
        let at = || format!("{}:{}", path.display(), record.line);
        let eos = *self
            .stop_ids
            .first()
            .context("the model has no token that ends a reply (no end of text or end of turn)")?;
        let mut e = Encoded {
            line: record.line,
            ..Default::default()
        };
        let Some(t) = &self.template else {
            let Body::Alpaca {
                instruction,
                input,
                output,
            } = &record.body
            else {
                bail!(
                    "{}: a chat record (\"messages\") needs a model with a chat template, and this one has none; \
                     give records with \"instruction\", \"input\", \"output\"",
                    at()
                )
            };
            e.push(
                &encode_prompt(tok, &alpaca_prompt(instruction, input)).with_context(at)?,
                false,
            );
            e.push(&tok.encode(output).with_context(at)?, true);
            e.push(&[eos], true);
            return Ok(e);
        };
        let messages = match &record.body {
            Body::Alpaca {
                instruction,
                input,
                output,
            } => {
                let user = if input.is_empty() {
                    instruction.clone()
                } else {
                    format!("{instruction}\n\n{input}")
                };
                vec![Message::new("user", &user), Message::new("assistant", output)]
            }
            Body::Chat(m) => m.clone(),
        };
        let render = |upto: usize, generation: bool| {
            let (bos, eos) = (t.bos_token.as_deref(), t.eos_token.as_deref());
            t.template
                .render(&messages[..upto], generation, bos, eos)
                .with_context(|| format!("{}: rendering it with the chat template", at()))
        };
        let mut done = String::new();
        for i in (0..messages.len()).filter(|&i| messages[i].role == "assistant") {
            let (prompt, full) = (render(i, true)?, render(i + 1, false)?);
            let (Some(context), Some(reply)) = (prompt.strip_prefix(done.as_str()), full.strip_prefix(prompt.as_str()))
            else {
                bail!(
                    "{}: the chat template does not render this conversation as one growing text (a turn changes \
                     what comes before it), so its replies cannot be told from its prompts",
                    at()
                )
            };
            e.push(&encode_chat(tok, context).with_context(at)?, false);
            let ids = encode_chat(tok, reply).with_context(at)?;
            match ids.iter().rposition(|id| self.stop_ids.contains(id)) {
                Some(end) => {
                    e.push(&ids[..=end], true);
                    e.push(&ids[end + 1..], false);
                }
                None => {
                    e.push(&ids, true);
                    e.push(&[eos], true);
                }
            }
            done = full;
        }
        Ok(e)
    }
}

/// Every record of `path` encoded.
pub fn encode_file(path: &Path, tok: &Tokenizer, format: &Format) -> Result<Vec<Encoded>> {
    read_records(path)?
        .iter()
        .map(|r| format.encode(tok, path, r))
        .collect()
}

/// `examples` (of `path`) fitted to `n_ctx` inputs: a response that runs
/// past it is cut, a prompt that alone fills it is skipped; each with a
/// warning in `notes` naming the lines.
pub fn fit(path: &Path, examples: Vec<Encoded>, n_ctx: usize, notes: &mut Vec<String>) -> Vec<(Vec<u32>, Vec<bool>)> {
    let (mut cut, mut skipped) = (Vec::new(), Vec::new());
    let mut out = Vec::new();
    for e in examples {
        // Target j is predicted from input j - 1: the first learnt one must be within the context.
        let first = e.scored.iter().skip(1).position(|&s| s).map_or(usize::MAX, |j| j + 1);
        if first > n_ctx {
            skipped.push(e.line);
            continue;
        }
        if e.ids.len() > n_ctx + 1 {
            cut.push(e.line);
        }
        out.push((e.ids, e.scored));
    }
    let lines = |lines: &[usize]| {
        let named: Vec<String> = lines
            .iter()
            .take(LINES_NAMED)
            .map(|l| format!("{}:{l}", path.display()))
            .collect();
        match lines.len() - named.len() {
            0 => named.join(", "),
            more => format!("{} and {more} more", named.join(", ")),
        }
    };
    if !cut.is_empty() {
        notes.push(format!(
            "warning: the response runs past the context of {n_ctx} tokens and is cut to fit (raise --n-ctx to keep it whole) in {}: {}",
            records(cut.len()),
            lines(&cut)
        ));
    }
    if !skipped.is_empty() {
        notes.push(format!(
            "warning: the prompt alone fills the context of {n_ctx} tokens, leaving no room for the response, in {} (skipped): {}",
            records(skipped.len()),
            lines(&skipped)
        ));
    }
    out
}

fn records(n: usize) -> String {
    if n == 1 {
        "1 record".to_string()
    } else {
        format!("{n} records")
    }
}
