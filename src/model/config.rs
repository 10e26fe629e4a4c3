//! The model's hyper-parameters, stored as a Hugging Face GPT-2 `config.json`
//! plus our variant switches (which `transformers` ignores).

use crate::tensor::elementwise::Activation;
use crate::tensor::norm::NormKind;
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub struct GptConfig {
    pub vocab_size: usize,
    /// Context length (block size): the number of positions in `wpe`.
    pub n_ctx: usize,
    pub n_embd: usize,
    pub n_head: usize,
    /// Key/value heads, each shared by `n_head / n_kv_head` query heads
    /// (grouped-query attention); GPT-2 has `n_head`. `config.json`'s
    /// `num_key_value_heads`, written only when it differs from `n_head`.
    pub n_kv_head: usize,
    pub n_layer: usize,
    /// LayerNorm (GPT-2) or parameter-free RMSNorm (microgpt).
    pub norm: NormKind,
    pub activation_function: Activation,
    /// Biases in the linear layers and in LayerNorm.
    pub bias: bool,
    /// Logits through `wte` (GPT-2) rather than a separate `lm_head`.
    pub tie_word_embeddings: bool,
    /// A norm right after the embeddings (microgpt).
    pub embd_norm: bool,
    /// The final `ln_f` before the logits (GPT-2).
    pub final_norm: bool,
    pub layer_norm_epsilon: f32,
}

impl GptConfig {
    /// GPT-2's architecture at any size.
    pub fn gpt2(vocab_size: usize, n_ctx: usize, n_embd: usize, n_head: usize, n_layer: usize) -> Self {
        GptConfig {
            vocab_size,
            n_ctx,
            n_embd,
            n_head,
            n_kv_head: n_head,
            n_layer,
            norm: NormKind::LayerNorm,
            activation_function: Activation::Gelu,
            bias: true,
            tie_word_embeddings: true,
            embd_norm: false,
            final_norm: true,
            layer_norm_epsilon: 1e-5,
        }
    }

    /// microgpt's model: RMSNorm (also after the embedding), ReLU, no biases, untied `lm_head`, no `ln_f`.
    pub fn microgpt(vocab_size: usize) -> Self {
        GptConfig {
            norm: NormKind::RmsNorm,
            activation_function: Activation::Relu,
            bias: false,
            tie_word_embeddings: false,
            embd_norm: true,
            final_norm: false,
            ..GptConfig::gpt2(vocab_size, 16, 16, 4, 1)
        }
    }

    pub fn head_size(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Checks the sizes make a model; the message says which flag to change.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("n_ctx", self.n_ctx),
            ("n_embd", self.n_embd),
            ("n_head", self.n_head),
            ("num_key_value_heads", self.n_kv_head),
            ("n_layer", self.n_layer),
        ] {
            ensure!(v > 0, "{name} must be at least 1");
        }
        ensure!(
            self.n_embd.is_multiple_of(self.n_head),
            "n_embd ({}) must be divisible by n_head ({}): each head gets n_embd / n_head channels",
            self.n_embd,
            self.n_head
        );
        ensure!(
            self.n_head.is_multiple_of(self.n_kv_head),
            "n_head ({}) must be a multiple of num_key_value_heads ({}): each key/value head serves as many query heads",
            self.n_head,
            self.n_kv_head
        );
        ensure!(self.layer_norm_epsilon > 0.0, "layer_norm_epsilon must be positive");
        ensure!(self.vocab_size <= u32::MAX as usize, "vocab_size too large");
        Ok(())
    }

    pub fn to_json(&self) -> String {
        let file = ConfigFile {
            model_type: "gpt2".into(),
            architectures: vec!["GPT2LMHeadModel".into()],
            vocab_size: self.vocab_size,
            n_positions: Some(self.n_ctx),
            n_ctx: Some(self.n_ctx),
            n_embd: self.n_embd,
            n_head: self.n_head,
            num_key_value_heads: (self.n_kv_head != self.n_head).then_some(self.n_kv_head),
            n_layer: self.n_layer,
            n_inner: None,
            activation_function: activation_name(self.activation_function).into(),
            layer_norm_epsilon: self.layer_norm_epsilon,
            tie_word_embeddings: self.tie_word_embeddings,
            bos_token_id: Some(self.vocab_size as u32 - 1),
            eos_token_id: Some(self.vocab_size as u32 - 1),
            norm: norm_name(self.norm).into(),
            bias: self.bias,
            embd_norm: self.embd_norm,
            final_norm: self.final_norm,
        };
        serde_json::to_string_pretty(&file).expect("config serialises")
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let f: ConfigFile = serde_json::from_str(text)?;
        ensure!(
            f.model_type == "gpt2",
            "model_type is {:?}; only GPT-2 models (\"gpt2\") are supported",
            f.model_type
        );
        let n_ctx = f
            .n_positions
            .or(f.n_ctx)
            .context("config has neither n_positions nor n_ctx")?;
        if let Some(n_inner) = f.n_inner {
            ensure!(
                n_inner == 4 * f.n_embd,
                "n_inner = {n_inner}: only the standard 4 * n_embd MLP is supported"
            );
        }
        let c = GptConfig {
            vocab_size: f.vocab_size,
            n_ctx,
            n_embd: f.n_embd,
            n_head: f.n_head,
            n_kv_head: f.num_key_value_heads.unwrap_or(f.n_head),
            n_layer: f.n_layer,
            norm: parse_norm(&f.norm)?,
            activation_function: parse_activation(&f.activation_function)?,
            bias: f.bias,
            tie_word_embeddings: f.tie_word_embeddings,
            embd_norm: f.embd_norm,
            final_norm: f.final_norm,
            layer_norm_epsilon: f.layer_norm_epsilon,
        };
        c.validate()?;
        Ok(c)
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_json(&text).with_context(|| format!("{} is not a valid GPT-2 config", path.display()))
    }
}

fn default_true() -> bool {
    true
}
fn default_eps() -> f32 {
    1e-5
}
fn default_activation() -> String {
    "gelu_new".into()
}
fn default_norm() -> String {
    "layernorm".into()
}

/// Hugging Face's name of an activation (`activation_function`).
fn activation_name(f: Activation) -> &'static str {
    match f {
        Activation::Gelu => "gelu_new",
        Activation::Relu => "relu",
    }
}

fn parse_activation(name: &str) -> Result<Activation> {
    Ok(match name {
        // Both are GELU's tanh approximation.
        "gelu_new" | "gelu_pytorch_tanh" => Activation::Gelu,
        "relu" => Activation::Relu,
        _ => bail!("activation_function {name:?} is not supported (gelu_new, gelu_pytorch_tanh or relu)"),
    })
}

/// Our `norm` field's value for a norm.
fn norm_name(n: NormKind) -> &'static str {
    match n {
        NormKind::LayerNorm => "layernorm",
        NormKind::RmsNorm => "rmsnorm",
    }
}

fn parse_norm(name: &str) -> Result<NormKind> {
    Ok(match name {
        "layernorm" => NormKind::LayerNorm,
        "rmsnorm" => NormKind::RmsNorm,
        _ => bail!("norm {name:?} is not supported (layernorm or rmsnorm)"),
    })
}
fn default_model_type() -> String {
    "gpt2".into()
}

/// `config.json` as written by `transformers`, with our fields beside it.
/// Missing variant fields mean GPT-2, so the Hub's configs load as they are.
#[derive(Serialize, Deserialize)]
struct ConfigFile {
    #[serde(default = "default_model_type")]
    model_type: String,
    #[serde(default)]
    architectures: Vec<String>,
    vocab_size: usize,
    n_positions: Option<usize>,
    n_ctx: Option<usize>,
    n_embd: usize,
    n_head: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_key_value_heads: Option<usize>,
    n_layer: usize,
    n_inner: Option<usize>,
    #[serde(default = "default_activation")]
    activation_function: String,
    #[serde(default = "default_eps")]
    layer_norm_epsilon: f32,
    #[serde(default = "default_true")]
    tie_word_embeddings: bool,
    bos_token_id: Option<u32>,
    eos_token_id: Option<u32>,
    #[serde(default = "default_norm")]
    norm: String,
    #[serde(default = "default_true")]
    bias: bool,
    #[serde(default)]
    embd_norm: bool,
    #[serde(default = "default_true")]
    final_norm: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_both_variants() {
        let gqa = GptConfig {
            n_kv_head: 4,
            ..GptConfig::gpt2(50257, 1024, 768, 12, 12)
        };
        for c in [GptConfig::gpt2(50257, 1024, 768, 12, 12), GptConfig::microgpt(27), gqa] {
            assert_eq!(GptConfig::from_json(&c.to_json()).unwrap(), c);
        }
        let json = GptConfig::gpt2(50257, 1024, 768, 12, 12).to_json();
        assert!(
            !json.contains("num_key_value_heads"),
            "GPT-2's config.json is unchanged"
        );
    }

    #[test]
    fn hub_gpt2_config_loads_as_gpt2() {
        let hub = r#"{"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
            "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
            "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768, "n_head": 12,
            "n_layer": 12, "n_positions": 1024, "resid_pdrop": 0.1, "vocab_size": 50257}"#;
        assert_eq!(
            GptConfig::from_json(hub).unwrap(),
            GptConfig::gpt2(50257, 1024, 768, 12, 12)
        );
    }

    #[test]
    fn bad_configs_are_rejected_with_reasons() {
        let mut c = GptConfig::gpt2(10, 8, 10, 3, 1);
        assert!(c.validate().unwrap_err().to_string().contains("divisible"));
        (c.n_head, c.n_kv_head) = (2, 2);
        c.validate().unwrap();
        c.n_kv_head = 3;
        assert!(c.validate().unwrap_err().to_string().contains("num_key_value_heads"));
        c.n_kv_head = 0;
        assert!(c.validate().unwrap_err().to_string().contains("at least 1"));
        let err = GptConfig::from_json(
            r#"{"model_type":"llama","vocab_size":1,"n_embd":1,"n_head":1,"n_layer":1,"n_positions":1}"#,
        );
        assert!(err.unwrap_err().to_string().contains("llama"));
    }
}
