//! `config.json` in the dialect `transformers` reads for each architecture: a
//! GPT-2 config plus our variant fields (which `transformers` ignores), or a
//! Llama / Mistral / Qwen2 config (rotary settings as `rope_theta` +
//! `rope_scaling`, or transformers 5's `rope_parameters`).

use super::config::{Arch, GptConfig};
use crate::tensor::elementwise::Activation;
use crate::tensor::norm::NormKind;
use crate::tensor::rope::{Llama3Scaling, RopeConfig};
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

impl GptConfig {
    pub fn to_json(&self) -> String {
        match self.arch {
            Arch::Gpt2 => serde_json::to_string_pretty(&self.gpt2_file()),
            Arch::Llama => serde_json::to_string_pretty(&self.llama_file()),
        }
        .expect("config serialises")
    }

    pub fn from_json(text: &str) -> Result<Self> {
        #[derive(Deserialize)]
        struct ModelType {
            #[serde(default = "default_model_type")]
            model_type: String,
        }
        let ModelType { model_type } = serde_json::from_str(text)?;
        let c = match model_type.as_str() {
            "gpt2" => Self::from_gpt2_file(serde_json::from_str(text)?)?,
            "llama" | "mistral" | "qwen2" => Self::from_llama_file(
                serde_json::from_str(text).with_context(|| format!("reading a {model_type} config"))?,
            )
            .with_context(|| format!("reading a {model_type} config"))?,
            other => bail!("model_type is {other:?}; supported are \"gpt2\", \"llama\", \"mistral\" and \"qwen2\""),
        };
        c.validate()?;
        Ok(c)
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_json(&text).with_context(|| format!("{} is not a valid model config", path.display()))
    }

    fn gpt2_file(&self) -> Gpt2File {
        Gpt2File {
            model_type: "gpt2".into(),
            architectures: vec![self.class_name("GPT2LMHeadModel", "GPT2")],
            vocab_size: self.vocab_size,
            n_positions: Some(self.n_ctx),
            n_ctx: Some(self.n_ctx),
            n_embd: self.n_embd,
            n_head: self.n_head,
            num_key_value_heads: (self.n_kv_head != self.n_head).then_some(self.n_kv_head),
            n_layer: self.n_layer,
            n_inner: (self.n_inner != self.n_embd.saturating_mul(4)).then_some(self.n_inner),
            activation_function: activation_name(self.activation_function).into(),
            layer_norm_epsilon: self.norm_eps,
            tie_word_embeddings: self.tie_word_embeddings,
            bos_token_id: Some(self.vocab_size as u32 - 1),
            eos_token_id: Some(self.vocab_size as u32 - 1),
            norm: norm_name(self.norm).into(),
            bias: self.bias,
            embd_norm: self.embd_norm,
            final_norm: self.final_norm,
            head: self.head_fields(),
        }
    }

    /// The `transformers` class of the model: `lm` (`…ForCausalLM`), or a
    /// classifier's `{family}ForSequenceClassification`.
    fn class_name(&self, lm: &str, family: &str) -> String {
        if self.is_classifier() {
            format!("{family}ForSequenceClassification")
        } else {
            lm.to_string()
        }
    }

    fn head_fields(&self) -> HeadFields {
        let cls = self.is_classifier();
        HeadFields {
            id2label: cls.then(|| {
                let ids = self.labels.iter().enumerate();
                ids.map(|(i, l)| (i.to_string(), l.clone())).collect()
            }),
            label2id: cls.then(|| self.labels.iter().cloned().zip(0..).collect()),
            pad_token_id: self.pad_token_id,
        }
    }

    /// The labels and padding id of a config whose `architectures` name a
    /// `…ForSequenceClassification` (labels 0..n in order; `transformers`
    /// leaves its default `LABEL_0`, `LABEL_1` out).
    fn read_head(&mut self, architectures: &[String], head: HeadFields) -> Result<()> {
        self.pad_token_id = head.pad_token_id;
        if !architectures.iter().any(|a| a.ends_with("ForSequenceClassification")) {
            return Ok(());
        }
        let id2label = head
            .id2label
            .unwrap_or_else(|| (0..2).map(|i| (i.to_string(), format!("LABEL_{i}"))).collect());
        let mut labels = id2label
            .into_iter()
            .map(|(id, label)| {
                Ok((
                    id.parse::<usize>()
                        .ok()
                        .with_context(|| format!("id2label has the key {id:?}, not a number"))?,
                    label,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        labels.sort();
        for (want, (id, _)) in labels.iter().enumerate() {
            ensure!(
                *id == want,
                "id2label must number its labels 0, 1, 2, …: it has no label {want}"
            );
        }
        ensure!(labels.len() >= 2, "a classifier needs two labels at least in id2label");
        self.labels = labels.into_iter().map(|(_, l)| l).collect();
        Ok(())
    }

    fn from_gpt2_file(f: Gpt2File) -> Result<Self> {
        let n_ctx = f
            .n_positions
            .or(f.n_ctx)
            .context("config has neither n_positions nor n_ctx")?;
        let norm = parse_norm(&f.norm)?;
        let mut c = GptConfig {
            n_kv_head: f.num_key_value_heads.unwrap_or(f.n_head),
            n_inner: f.n_inner.unwrap_or(f.n_embd.saturating_mul(4)),
            norm,
            norm_weight: norm == NormKind::LayerNorm,
            activation_function: parse_activation(&f.activation_function)?,
            bias: f.bias,
            qkv_bias: f.bias,
            tie_word_embeddings: f.tie_word_embeddings,
            embd_norm: f.embd_norm,
            final_norm: f.final_norm,
            norm_eps: f.layer_norm_epsilon,
            ..GptConfig::gpt2(f.vocab_size, n_ctx, f.n_embd, f.n_head, f.n_layer)
        };
        c.read_head(&f.architectures, f.head)?;
        Ok(c)
    }

    /// The `config.json` of the Llama-family model `transformers` builds the
    /// same network from: Qwen2 for q/k/v biases alone, Mistral for a sliding
    /// window, Llama otherwise.
    fn llama_file(&self) -> LlamaFile {
        let rope = self.rope.expect("Llama configs have rotary embeddings");
        let (model_type, class) = if self.qkv_bias && !self.bias {
            ("qwen2", "Qwen2ForCausalLM")
        } else if self.sliding_window.is_some() {
            ("mistral", "MistralForCausalLM")
        } else {
            ("llama", "LlamaForCausalLM")
        };
        let llama = model_type == "llama";
        let qwen2 = model_type == "qwen2";
        LlamaFile {
            model_type: model_type.into(),
            architectures: vec![self.class_name(class, &class[..class.len() - "ForCausalLM".len()])],
            vocab_size: self.vocab_size,
            hidden_size: self.n_embd,
            intermediate_size: self.n_inner,
            num_hidden_layers: self.n_layer,
            num_attention_heads: self.n_head,
            num_key_value_heads: Some(self.n_kv_head),
            head_dim: Some(self.head_size()),
            max_position_embeddings: self.n_ctx,
            rms_norm_eps: self.norm_eps,
            rope_theta: Some(rope.theta),
            rope_scaling: rope.scaling.map(|s| RopeScalingFile {
                rope_type: Some("llama3".into()),
                factor: Some(s.factor),
                low_freq_factor: Some(s.low_freq_factor),
                high_freq_factor: Some(s.high_freq_factor),
                original_max_position_embeddings: Some(s.original_max_position_embeddings),
                rope_theta: None,
            }),
            rope_parameters: None,
            partial_rotary_factor: None,
            tie_word_embeddings: self.tie_word_embeddings,
            hidden_act: "silu".into(),
            attention_bias: llama.then_some(self.bias),
            mlp_bias: llama.then_some(self.bias),
            sliding_window: self.sliding_window,
            use_sliding_window: qwen2.then_some(self.sliding_window.is_some()),
            max_window_layers: (qwen2 && self.sliding_window.is_some()).then_some(0),
            bos_token_id: self.bos_token_id,
            eos_token_id: match self.eos_token_id[..] {
                [] => None,
                [one] => Some(TokenIds::One(one)),
                _ => Some(TokenIds::Many(self.eos_token_id.clone())),
            },
            head: self.head_fields(),
        }
    }

    fn from_llama_file(f: LlamaFile) -> Result<Self> {
        let n_head = f.num_attention_heads;
        ensure!(n_head > 0, "num_attention_heads must be at least 1");
        if let Some(head_dim) = f.head_dim {
            ensure!(
                head_dim == f.hidden_size / n_head,
                "head_dim = {head_dim} differs from hidden_size / num_attention_heads = {}: not supported",
                f.hidden_size / n_head
            );
        }
        ensure!(
            matches!(f.hidden_act.as_str(), "silu" | "swish"),
            "hidden_act {:?} is not supported (only \"silu\")",
            f.hidden_act
        );
        ensure!(
            f.partial_rotary_factor.is_none_or(|p| p == 1.0),
            "partial_rotary_factor {:?} is not supported (rotary embeddings on every channel only)",
            f.partial_rotary_factor
        );
        let (qkv_bias, bias) = match f.model_type.as_str() {
            "qwen2" => (true, false),
            "mistral" => (false, false),
            _ => {
                let (attention, mlp) = (f.attention_bias.unwrap_or(false), f.mlp_bias.unwrap_or(false));
                ensure!(
                    attention == mlp,
                    "attention_bias = {attention} with mlp_bias = {mlp} is not supported (both or neither)"
                );
                (attention, mlp)
            }
        };
        // The window that applies: Mistral's, or Qwen2's when switched on for some layer.
        let window = match f.model_type.as_str() {
            "mistral" => f.sliding_window,
            "qwen2" if f.use_sliding_window == Some(true) => f
                .sliding_window
                .filter(|_| f.max_window_layers.unwrap_or(0) < f.num_hidden_layers),
            _ => None,
        };
        let mut n_ctx = f.max_position_embeddings;
        if let Some(w) = window.filter(|&w| w < n_ctx) {
            // A window covering the whole context never cuts anything: keep to that context.
            ensure!(w > 0, "sliding_window must be at least 1");
            n_ctx = w;
        }
        let mut c = GptConfig {
            n_kv_head: f.num_key_value_heads.unwrap_or(n_head),
            qkv_bias,
            bias,
            rope: Some(rope_config(&f)?),
            tie_word_embeddings: f.tie_word_embeddings,
            norm_eps: f.rms_norm_eps,
            sliding_window: window.filter(|&w| w <= f.max_position_embeddings),
            bos_token_id: f.bos_token_id,
            eos_token_id: match f.eos_token_id {
                None => Vec::new(),
                Some(TokenIds::One(id)) => vec![id],
                Some(TokenIds::Many(ids)) => ids,
            },
            ..GptConfig::llama(
                f.vocab_size,
                n_ctx,
                f.hidden_size,
                n_head,
                f.num_hidden_layers,
                f.intermediate_size,
            )
        };
        c.read_head(&f.architectures, f.head)?;
        Ok(c)
    }
}

/// The rotary embedding a Llama-family config describes, in either dialect:
/// `rope_theta` + `rope_scaling` (transformers 4) or `rope_parameters` (transformers 5).
fn rope_config(f: &LlamaFile) -> Result<RopeConfig> {
    let params = f.rope_parameters.as_ref().or(f.rope_scaling.as_ref());
    let theta = params.and_then(|p| p.rope_theta).or(f.rope_theta).unwrap_or(10000.0);
    ensure!(
        theta > 1.0 && theta.is_finite(),
        "rope_theta must be a finite number above 1, not {theta}"
    );
    let scaling = match params.map(|p| (p, p.rope_type.as_deref().unwrap_or("default"))) {
        None | Some((_, "default")) => None,
        Some((p, "llama3")) => {
            let field =
                |v: Option<f32>, name: &str| v.with_context(|| format!("rope_scaling of type llama3 has no {name}"));
            let s = Llama3Scaling {
                factor: field(p.factor, "factor")?,
                low_freq_factor: field(p.low_freq_factor, "low_freq_factor")?,
                high_freq_factor: field(p.high_freq_factor, "high_freq_factor")?,
                original_max_position_embeddings: p
                    .original_max_position_embeddings
                    .unwrap_or(f.max_position_embeddings),
            };
            let finite = [s.factor, s.low_freq_factor, s.high_freq_factor]
                .iter()
                .all(|x| x.is_finite());
            ensure!(
                finite && s.factor > 0.0 && s.low_freq_factor > 0.0 && s.high_freq_factor > s.low_freq_factor,
                "rope_scaling needs finite factors, factor > 0 and high_freq_factor > low_freq_factor > 0 (got {s:?})"
            );
            ensure!(
                s.original_max_position_embeddings > 0,
                "rope_scaling's original_max_position_embeddings must be at least 1"
            );
            Some(s)
        }
        Some((_, other)) => {
            bail!("rope_scaling of type {other:?} is not supported (only \"llama3\", or none)")
        }
    };
    Ok(RopeConfig { theta, scaling })
}

fn default_true() -> bool {
    true
}
fn default_eps() -> f32 {
    1e-5
}
fn default_rms_eps() -> f32 {
    1e-6
}
fn default_activation() -> String {
    "gelu_new".into()
}
fn default_hidden_act() -> String {
    "silu".into()
}
fn default_norm() -> String {
    "layernorm".into()
}

/// Hugging Face's name of an activation (`activation_function`).
fn activation_name(f: Activation) -> &'static str {
    match f {
        Activation::Gelu => "gelu_new",
        Activation::Relu => "relu",
        Activation::Silu => "silu",
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

/// GPT-2's `config.json` as written by `transformers`, with our fields beside it.
/// Missing variant fields mean GPT-2, so the Hub's configs load as they are.
#[derive(Serialize, Deserialize)]
struct Gpt2File {
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
    #[serde(flatten)]
    head: HeadFields,
}

/// A sequence classifier's fields (`transformers`' `id2label`, `label2id`), and `pad_token_id`.
#[derive(Serialize, Deserialize, Default)]
struct HeadFields {
    #[serde(skip_serializing_if = "Option::is_none")]
    id2label: Option<std::collections::BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    label2id: Option<std::collections::BTreeMap<String, usize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pad_token_id: Option<u32>,
}

/// One token id or several (Llama 3's chat models end at any of three).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

/// `rope_scaling` (transformers 4) or `rope_parameters` (transformers 5, which adds `rope_theta`).
#[derive(Serialize, Deserialize)]
struct RopeScalingFile {
    #[serde(alias = "type")]
    rope_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    factor: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    low_freq_factor: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    high_freq_factor: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    original_max_position_embeddings: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rope_theta: Option<f32>,
}

/// The `config.json` of Llama, Mistral and Qwen2 (the fields we read; the
/// family's other fields are ignored, and absent ones get `transformers`' defaults).
#[derive(Serialize, Deserialize)]
struct LlamaFile {
    model_type: String,
    #[serde(default)]
    architectures: Vec<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    max_position_embeddings: usize,
    #[serde(default = "default_rms_eps")]
    rms_norm_eps: f32,
    rope_theta: Option<f32>,
    rope_scaling: Option<RopeScalingFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rope_parameters: Option<RopeScalingFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partial_rotary_factor: Option<f32>,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default = "default_hidden_act")]
    hidden_act: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    attention_bias: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mlp_bias: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sliding_window: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    use_sliding_window: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_window_layers: Option<usize>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<TokenIds>,
    #[serde(flatten)]
    head: HeadFields,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::rope::Llama3Scaling;

    fn llama3_tied() -> GptConfig {
        GptConfig {
            rope: Some(RopeConfig {
                theta: 500000.0,
                scaling: Some(Llama3Scaling {
                    factor: 32.0,
                    low_freq_factor: 1.0,
                    high_freq_factor: 4.0,
                    original_max_position_embeddings: 8192,
                }),
            }),
            tie_word_embeddings: true,
            bos_token_id: Some(128000),
            eos_token_id: vec![128001, 128008, 128009],
            n_kv_head: 8,
            ..GptConfig::llama(128256, 131072, 2048, 32, 16, 8192)
        }
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

    /// Llama 3.2 1B's config.json as on the Hub.
    const LLAMA_3_2_1B: &str = r#"{"architectures": ["LlamaForCausalLM"], "attention_bias": false,
        "attention_dropout": 0.0, "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
        "head_dim": 64, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
        "intermediate_size": 8192, "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
        "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8, "pretraining_tp": 1,
        "rms_norm_eps": 1e-06, "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192, "rope_type": "llama3"}, "rope_theta": 500000.0,
        "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.45.0.dev0",
        "use_cache": true, "vocab_size": 128256}"#;

    #[test]
    fn hub_llama_configs_load_in_both_rope_dialects() {
        assert_eq!(GptConfig::from_json(LLAMA_3_2_1B).unwrap(), llama3_tied());
        // transformers 5 writes the rotary settings as one `rope_parameters`.
        let v5 = LLAMA_3_2_1B.replace(r#""rope_theta": 500000.0,"#, "").replace(
            r#""rope_scaling": {"#,
            r#""rope_parameters": {"rope_theta": 500000.0, "#,
        );
        assert!(v5.contains("rope_parameters") && !v5.contains("rope_scaling"));
        assert_eq!(GptConfig::from_json(&v5).unwrap(), llama3_tied());
    }

    #[test]
    fn mistral_windows_cap_the_context_and_qwen2_has_qkv_biases() {
        let mistral = r#"{"model_type": "mistral", "vocab_size": 32000, "hidden_size": 64, "intermediate_size": 96,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
            "max_position_embeddings": 32768, "sliding_window": 4096, "rope_theta": 10000.0}"#;
        let c = GptConfig::from_json(mistral).unwrap();
        assert_eq!((c.n_ctx, c.sliding_window, c.qkv_bias), (4096, Some(4096), false));
        let qwen2 = r#"{"model_type": "qwen2", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 96,
            "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 512,
            "use_sliding_window": false, "sliding_window": 128, "tie_word_embeddings": true}"#;
        let c = GptConfig::from_json(qwen2).unwrap();
        assert_eq!(
            (c.n_ctx, c.sliding_window, c.qkv_bias, c.bias),
            (512, None, true, false)
        );
        assert!(c.to_json().contains("\"model_type\": \"qwen2\""));
    }

    #[test]
    fn json_round_trip_every_variant() {
        let qwen2 = GptConfig {
            qkv_bias: true,
            eos_token_id: vec![7],
            ..GptConfig::llama(50, 32, 16, 2, 1, 40)
        };
        let mistral = GptConfig {
            sliding_window: Some(4096),
            ..GptConfig::llama(50, 4096, 16, 2, 1, 40)
        };
        let biased = GptConfig {
            qkv_bias: true,
            bias: true,
            ..GptConfig::llama(50, 32, 16, 2, 1, 40)
        };
        let gpt2_gqa = GptConfig {
            n_kv_head: 4,
            ..GptConfig::gpt2(50257, 1024, 768, 12, 12)
        };
        let labels: Vec<String> = (0..11).map(|i| format!("class {i}")).collect();
        let classifier = |c: GptConfig| GptConfig {
            labels: labels.clone(),
            pad_token_id: Some(3),
            ..c
        };
        let text = classifier(GptConfig::llama(50, 32, 16, 2, 1, 40)).to_json();
        assert!(text.contains("LlamaForSequenceClassification") && text.contains("\"10\": \"class 10\""));
        for c in [
            classifier(GptConfig::gpt2(50, 32, 16, 2, 1)),
            classifier(GptConfig::llama(50, 32, 16, 2, 1, 40)),
            gpt2_gqa,
            GptConfig::gpt2(50257, 1024, 768, 12, 12),
            GptConfig::microgpt(27),
            llama3_tied(),
            qwen2,
            mistral,
            biased,
        ] {
            assert_eq!(GptConfig::from_json(&c.to_json()).unwrap(), c, "{}", c.to_json());
        }
        let json = GptConfig::gpt2(50257, 1024, 768, 12, 12).to_json();
        assert!(
            !json.contains("num_key_value_heads"),
            "GPT-2's config.json is unchanged"
        );
    }

    #[test]
    fn bad_config_files_are_rejected_with_reasons() {
        let err = |json: &str| format!("{:#}", GptConfig::from_json(json).unwrap_err());
        let e = err(r#"{"model_type":"llama","vocab_size":1,"n_embd":1,"n_head":1,"n_layer":1,"n_positions":1}"#);
        assert!(e.contains("llama") && e.contains("hidden_size"), "{e}");
        assert!(err(r#"{"model_type":"gemma"}"#).contains("\"gemma\""));
        for (from, to, want) in [
            (r#""head_dim": 64"#, r#""head_dim": 128"#, "head_dim = 128"),
            (
                r#""hidden_act": "silu""#,
                r#""hidden_act": "gelu""#,
                "hidden_act \"gelu\"",
            ),
            (
                r#""rope_type": "llama3""#,
                r#""rope_type": "yarn""#,
                "\"yarn\" is not supported",
            ),
            (
                r#""high_freq_factor": 4.0"#,
                r#""high_freq_factor": 1.0"#,
                "high_freq_factor > low_freq_factor",
            ),
            (r#""mlp_bias": false"#, r#""mlp_bias": true"#, "mlp_bias = true"),
            (
                r#""num_key_value_heads": 8"#,
                r#""num_key_value_heads": 5"#,
                "multiple of num_key_value_heads",
            ),
            (r#""rope_theta": 500000.0"#, r#""rope_theta": 0.5"#, "rope_theta"),
            // Beyond f32: infinite, which JSON cannot write back.
            (r#""factor": 32.0"#, r#""factor": 1e39"#, "finite factors"),
            (r#""rms_norm_eps": 1e-06"#, r#""rms_norm_eps": 1e39"#, "norm epsilon"),
        ] {
            assert!(LLAMA_3_2_1B.contains(from), "{from}");
            let e = err(&LLAMA_3_2_1B.replace(from, to));
            assert!(e.contains(want), "{to}: {e}");
        }
    }
}
