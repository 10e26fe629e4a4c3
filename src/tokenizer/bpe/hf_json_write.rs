//! Writing a byte-level BPE as `tokenizer.json` + `tokenizer_config.json`,
//! the files `transformers` (`AutoTokenizer`) and [`Bpe::load_tokenizer_json`]
//! read: how a model fine-tuned from a GGUF file keeps a tokenizer that the
//! rest of the ecosystem loads.

use super::bytes::{byte_to_char, bytes_to_text};
use super::hf_json::{GPT2_PATTERN, LLAMA3_PATTERN, QWEN2_PATTERN};
use super::pre::Step;
use super::Bpe;
use anyhow::{bail, ensure, Result};
use serde_json::{json, Map, Value};

impl Bpe {
    /// `tokenizer.json` and `tokenizer_config.json` of this tokenizer: every
    /// id in `model.vocab` as its byte-level text (an added token whose
    /// bytes another id already has, only in `added_tokens`), the merges by
    /// rank, the pre-tokenizer as `Digits` / `Split` steps before a final
    /// `ByteLevel`, the ids put around a text as `TemplateProcessing`, and
    /// the special tokens by name.
    pub fn to_tokenizer_json(&self) -> Result<(String, String)> {
        let table = byte_to_char();
        let text = |id: u32| bytes_to_text(self.token_bytes(id).unwrap_or_default(), &table);
        let mut vocab = Map::new();
        for id in 0..self.vocab_size() as u32 {
            let added = self.added_tokens().iter().any(|t| t.id == id);
            match vocab.entry(text(id)) {
                serde_json::map::Entry::Vacant(e) => {
                    e.insert(json!(id));
                }
                serde_json::map::Entry::Occupied(e) => ensure!(
                    added,
                    "ids {} and {id} are the same bytes {:?}: tokenizer.json cannot hold both",
                    e.get(),
                    e.key()
                ),
            }
        }
        let merges: Vec<Value> = self
            .merges()
            .iter()
            .map(|&(l, r, _)| json!([text(l), text(r)]))
            .collect();
        let unk = self.unk.map(|(id, _)| text(id));
        let added: Vec<Value> = (self.added_tokens().iter())
            .map(|t| {
                json!({"id": t.id, "content": t.content, "single_word": false, "lstrip": t.lstrip,
                       "rstrip": t.rstrip, "normalized": t.normalized, "special": t.special})
            })
            .collect();
        let tokenizer = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": self.pre_tokenizer_json()?,
            "post_processor": self.post_processor_json(),
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": self.unk.is_some_and(|(_, fuse)| fuse),
                "byte_fallback": false, "ignore_merges": self.ignore_merges, "vocab": vocab, "merges": merges,
            },
        });
        let specials = self.special_tokens();
        let name = |id: Option<u32>| id.map(|id| self.token_text(id));
        let config = json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": name(specials.bos),
            "eos_token": name(specials.eos),
            "pad_token": name(specials.pad),
            "unk_token": name(specials.unk),
            "clean_up_tokenization_spaces": false,
            "model_max_length": 1_000_000_000_000_000_000u64,
        });
        let pretty = |v: &Value| serde_json::to_string_pretty(v).expect("JSON");
        Ok((pretty(&tokenizer), pretty(&config)))
    }

    /// An added token's content, else the token's bytes as text.
    fn token_text(&self, id: u32) -> String {
        match self.added_tokens().iter().find(|t| t.id == id) {
            Some(t) => t.content.clone(),
            None => String::from_utf8_lossy(self.token_bytes(id).unwrap_or_default()).into_owned(),
        }
    }

    /// The steps, `ByteLevel` last: GPT-2's pattern (and a prefix space right
    /// before it) as `ByteLevel`'s own regex when it is the last step.
    fn pre_tokenizer_json(&self) -> Result<Value> {
        let mut steps = self.pre_tokenizer().steps().to_vec();
        let regex = steps.last() == Some(&Step::Gpt2);
        if regex {
            steps.pop();
        }
        let prefix = steps.last() == Some(&Step::PrefixSpace);
        if prefix {
            steps.pop();
        }
        let split = |pattern: &str| json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false});
        let mut list = Vec::new();
        for step in steps {
            list.push(match step {
                Step::Gpt2 => split(GPT2_PATTERN),
                Step::Llama3 { max_digits: 3 } => split(LLAMA3_PATTERN),
                Step::Llama3 { max_digits: 1 } => split(QWEN2_PATTERN),
                Step::Digits { individual } => json!({"type": "Digits", "individual_digits": individual}),
                other => bail!("the pre-tokenizer step {other:?} has no tokenizer.json form"),
            });
        }
        list.push(json!({"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": true, "use_regex": regex}));
        Ok(match list.len() {
            1 => list.pop().expect("one"),
            _ => json!({"type": "Sequence", "pretokenizers": list}),
        })
    }

    /// `ByteLevel` alone, or with the ids around a text as `TemplateProcessing`.
    fn post_processor_json(&self) -> Value {
        let byte_level =
            json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true});
        let (before, after) = self.template();
        if before.is_empty() && after.is_empty() {
            return byte_level;
        }
        let token = |&id: &u32| json!({"SpecialToken": {"id": self.token_text(id), "type_id": 0}});
        let sequence = |name: &str| json!({"Sequence": {"id": name, "type_id": 0}});
        let single: Vec<Value> = (before.iter().map(token))
            .chain([sequence("A")])
            .chain(after.iter().map(token))
            .collect();
        let pair: Vec<Value> = (before.iter().map(token))
            .chain([sequence("A")])
            .chain(after.iter().map(token))
            .chain(before.iter().map(token))
            .chain([sequence("B")])
            .chain(after.iter().map(token))
            .collect();
        let mut specials = Map::new();
        for &id in before.iter().chain(after) {
            let name = self.token_text(id);
            specials.insert(name.clone(), json!({"id": name, "ids": [id], "tokens": [name]}));
        }
        let template =
            json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials});
        json!({"type": "Sequence", "processors": [byte_level, template]})
    }
}
