//! [`ChatSpec`]: what chatting with a model needs beside its weights and
//! tokenizer: its chat template, the BOS / EOS texts the template is given,
//! and the ids that end a reply. A Hugging Face directory gives them in
//! `tokenizer_config.json` (or `chat_template.jinja`), `config.json` and
//! `generation_config.json` ([`ChatSpec::from_dir`]); a GGUF file in its
//! `tokenizer.chat_template` and `tokenizer.ggml.eos_token_id`
//! ([`ChatSpec::new`]).

use super::{Arch, GptConfig};
use crate::tokenizer::bpe::TOKENIZER_CONFIG_FILE;
pub use crate::tokenizer::chat::{encode_chat, encode_prompt};
use crate::tokenizer::{ChatTemplate, Message, Tokenizer};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A chat template kept apart from `tokenizer_config.json` (newer `transformers`).
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";
/// The generation defaults of a Hugging Face model (`eos_token_id`).
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

/// Texts that end a sequence or a chat turn, stop tokens when the tokenizer
/// has them as special tokens.
const END_TOKENS: &[&str] = &["<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>", "</s>"];

/// A model's chat template and stop tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChatSpec {
    /// The template's text, compiled when a chat starts (a broken template
    /// does not stop plain generation); `None`: the model has none.
    pub template: Option<String>,
    /// Where the template came from, for messages.
    pub template_source: String,
    /// What the template sees as `bos_token` / `eos_token` (undefined when `None`).
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// Ids that end generation: the model's end of sequence and end of turn.
    pub stop_ids: Vec<u32>,
}

impl ChatSpec {
    /// From the pieces a model file gives: a template, the EOS ids it names
    /// beside `config`'s; BOS and EOS texts are the tokenizer's.
    pub fn new(template: Option<String>, eos_ids: &[u32], config: &GptConfig, tokenizer: &Tokenizer) -> ChatSpec {
        let specials = tokenizer.special_tokens();
        let text = |id: Option<u32>| id.and_then(|id| token_text(tokenizer, id));
        ChatSpec {
            template_source: if template.is_some() { "the model file" } else { "" }.to_string(),
            template,
            bos_token: text(specials.bos),
            eos_token: text(specials.eos),
            stop_ids: stop_ids(config, tokenizer, eos_ids),
        }
    }

    /// From a Hugging Face model directory (or the directory holding a model
    /// file): the template of `chat_template.jinja`, else `tokenizer_config.json`'s
    /// `chat_template` (a text, or a list of named ones: "default");
    /// `bos_token` / `eos_token` as `tokenizer_config.json` names them; stop
    /// ids from `config` and `generation_config.json`'s `eos_token_id`. Files
    /// that are there but malformed are errors.
    pub fn from_dir(path: &Path, config: &GptConfig, tokenizer: &Tokenizer) -> Result<ChatSpec> {
        let dir = match path.parent().filter(|_| path.is_file()) {
            Some(parent) if parent.as_os_str().is_empty() => Path::new("."),
            Some(parent) => parent,
            None => path,
        };
        let mut eos_ids = Vec::new();
        let generation = dir.join(GENERATION_CONFIG_FILE);
        if let Some(json) = read_json(&generation)? {
            eos_ids = token_ids(json.get("eos_token_id"))
                .with_context(|| format!("{} eos_token_id", generation.display()))?;
        }
        let mut spec = ChatSpec::new(None, &eos_ids, config, tokenizer);
        let tokenizer_config = dir.join(TOKENIZER_CONFIG_FILE);
        if let Some(json) = read_json(&tokenizer_config)? {
            let what = |key: &str| format!("{} {key}", tokenizer_config.display());
            spec.bos_token = special_text(json.get("bos_token")).with_context(|| what("bos_token"))?;
            spec.eos_token = special_text(json.get("eos_token")).with_context(|| what("eos_token"))?;
            if let Some(t) = template_of(json.get("chat_template")).with_context(|| what("chat_template"))? {
                spec.template = Some(t);
                spec.template_source = tokenizer_config.display().to_string();
            }
        }
        let file = dir.join(CHAT_TEMPLATE_FILE);
        if file.is_file() {
            spec.set_template_file(&file)?;
        }
        Ok(spec)
    }

    /// Uses the template in `path` instead of the model's.
    pub fn set_template_file(&mut self, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read the chat template {}", path.display()))?;
        let text = String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", path.display()))?;
        self.template = Some(text);
        self.template_source = path.display().to_string();
        Ok(())
    }

    /// The compiled template; an error when the model has none, or it does not compile.
    pub fn compile(&self) -> Result<ChatTemplate> {
        let Some(source) = &self.template else {
            bail!("the model has no chat template (none in {TOKENIZER_CONFIG_FILE} or {CHAT_TEMPLATE_FILE})");
        };
        ChatTemplate::new(source).with_context(|| format!("the chat template of {}", self.template_source))
    }

    /// The text of a conversation, with the assistant's turn begun when
    /// `add_generation_prompt`.
    pub fn render(&self, template: &ChatTemplate, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        template.render(
            messages,
            add_generation_prompt,
            self.bos_token.as_deref(),
            self.eos_token.as_deref(),
        )
    }
}

/// The text of a special token, if it is one.
fn token_text(tokenizer: &Tokenizer, id: u32) -> Option<String> {
    match tokenizer {
        Tokenizer::Bpe(bpe) => bpe
            .added_tokens()
            .iter()
            .find(|t| t.id == id)
            .map(|t| t.content.clone()),
        Tokenizer::Char(_) => None,
    }
}

/// Ids that end a reply. GPT-2 and character models: the document separator
/// (`<|endoftext|>`, BOS), as always. The Llama family: `config`'s EOS ids,
/// `eos_ids`, the tokenizer's EOS and its special end-of-sequence and
/// end-of-turn tokens — each within the model's vocabulary, once.
fn stop_ids(config: &GptConfig, tokenizer: &Tokenizer, eos_ids: &[u32]) -> Vec<u32> {
    let mut ids: Vec<u32> = Vec::new();
    match tokenizer {
        Tokenizer::Bpe(bpe) if config.arch != Arch::Gpt2 => {
            ids.extend(&config.eos_token_id);
            ids.extend(eos_ids);
            ids.extend(tokenizer.special_tokens().eos);
            for text in END_TOKENS {
                let special = bpe.added_tokens().iter().find(|t| t.special && t.content == *text);
                ids.extend(special.map(|t| t.id));
            }
        }
        _ => ids.extend(tokenizer.document_separator()),
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if (id as usize) < config.vocab_size && !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

/// A JSON file's value, `None` when there is no such file.
fn read_json(path: &PathBuf) -> Result<Option<Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    Ok(Some(value))
}

/// `eos_token_id`: absent, null, an id or a list of ids.
fn token_ids(v: Option<&Value>) -> Result<Vec<u32>> {
    let one = |v: &Value| {
        v.as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .with_context(|| format!("expected a token id, got {v}"))
    };
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(one).collect(),
        Some(v) => Ok(vec![one(v)?]),
    }
}

/// `bos_token` / `eos_token`: a text, `{"content": text}`, or nothing.
fn special_text(v: Option<&Value>) -> Result<Option<String>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => match v.get("content").and_then(Value::as_str) {
            Some(s) => Ok(Some(s.to_string())),
            None => bail!("expected a text or {{\"content\": text}}, got {v}"),
        },
    }
}

/// `chat_template`: a text, or a list of `{"name", "template"}` of which "default" is used.
fn template_of(v: Option<&Value>) -> Result<Option<String>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(items)) => {
            let mut names = Vec::new();
            for item in items {
                let name = item.get("name").and_then(Value::as_str);
                let template = item.get("template").and_then(Value::as_str);
                let (Some(name), Some(template)) = (name, template) else {
                    bail!("expected a list of {{\"name\": text, \"template\": text}}, got {item}");
                };
                if name == "default" {
                    return Ok(Some(template.to_string()));
                }
                names.push(name);
            }
            bail!("no template named \"default\" among {names:?}: pass one with --template FILE")
        }
        Some(v) => bail!("expected a text or a list of named templates, got {v}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn template_and_ids_fields_take_every_form_and_refuse_others() {
        assert_eq!(template_of(Some(&json!("t"))).unwrap().as_deref(), Some("t"));
        let named = json!([{"name": "tool_use", "template": "x"}, {"name": "default", "template": "d"}]);
        assert_eq!(template_of(Some(&named)).unwrap().as_deref(), Some("d"));
        let e = template_of(Some(&json!([{"name": "rag", "template": "x"}]))).unwrap_err();
        assert!(e.to_string().contains("\"rag\""), "{e}");
        assert!(template_of(Some(&json!(3))).is_err() && template_of(Some(&json!([1]))).is_err());
        assert_eq!(template_of(None).unwrap(), None);
        assert_eq!(token_ids(Some(&json!(7))).unwrap(), [7]);
        assert_eq!(token_ids(Some(&json!([1, 2]))).unwrap(), [1, 2]);
        assert_eq!(token_ids(Some(&json!(null))).unwrap(), Vec::<u32>::new());
        for bad in [
            json!(-1),
            json!(1e20),
            json!("2"),
            json!([1, "x"]),
            json!(5_000_000_000u64),
        ] {
            assert!(token_ids(Some(&bad)).is_err(), "{bad}");
        }
        assert_eq!(
            special_text(Some(&json!({"content": "<s>"}))).unwrap().as_deref(),
            Some("<s>")
        );
        assert!(special_text(Some(&json!(1))).is_err());
    }
}
