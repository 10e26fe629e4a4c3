//! The model's hyper-parameters: one config for GPT-2 (with our microgpt
//! variant) and the Llama family (Llama, Mistral, Qwen2), which differ by
//! switches. Stored as the `config.json` of the model's architecture
//! ([`super::config_file`]).

use crate::tensor::elementwise::Activation;
use crate::tensor::norm::NormKind;
use crate::tensor::rope::RopeConfig;
use anyhow::{ensure, Result};

/// Whose checkpoints a model reads and writes: the names and layout of its
/// weights ([`super::names`]) and the dialect of its `config.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Gpt2,
    Llama,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GptConfig {
    pub arch: Arch,
    pub vocab_size: usize,
    /// Context length (block size): the positions of `wpe`, or of the rotary table.
    pub n_ctx: usize,
    pub n_embd: usize,
    pub n_head: usize,
    /// Key/value heads: `n_head`, or fewer, each shared by `n_head / n_kv_head`
    /// query heads (grouped-query attention). `config.json`'s
    /// `num_key_value_heads` (in GPT-2's, written only when it differs from `n_head`).
    pub n_kv_head: usize,
    pub n_layer: usize,
    /// Width of the MLP's hidden layer: `4 n_embd` in GPT-2, `intermediate_size` in Llama.
    pub n_inner: usize,
    /// LayerNorm (GPT-2) or RMSNorm (microgpt, Llama).
    pub norm: NormKind,
    /// Norms have a weight (all but microgpt's parameter-free RMSNorm).
    pub norm_weight: bool,
    pub activation_function: Activation,
    /// A gated MLP, `down(f(gate(x)) * up(x))` (Llama's SwiGLU), instead of `proj(f(fc(x)))`.
    pub gated_mlp: bool,
    /// Biases in the linear layers and in LayerNorm, the q/k/v projections apart.
    pub bias: bool,
    /// Biases on the query, key and value projections (GPT-2 with `bias`; Qwen2).
    pub qkv_bias: bool,
    /// Rotary position embeddings (Llama) instead of a learned position table `wpe` (GPT-2).
    pub rope: Option<RopeConfig>,
    /// Logits through `wte` (GPT-2) rather than a separate `lm_head`.
    pub tie_word_embeddings: bool,
    /// A norm right after the embeddings (microgpt).
    pub embd_norm: bool,
    /// The final norm before the logits (GPT-2's `ln_f`, Llama's `model.norm`).
    pub final_norm: bool,
    pub norm_eps: f32,
    /// Mistral's sliding attention window. `n_ctx` is at most this long, so the
    /// window never cuts anything: kept to be written back.
    pub sliding_window: Option<usize>,
    /// Token ids the checkpoint names (Llama family; GPT-2 writes `vocab_size - 1`).
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Vec<u32>,
    /// Sequence classification: the labels of a `score` head `[labels, n_embd]`
    /// that replaces the logits over the vocabulary (read at each text's last
    /// token); empty for a language model.
    pub labels: Vec<String>,
    /// The id padding takes (`pad_token_id`, which a classifier's config names).
    pub pad_token_id: Option<u32>,
}

impl GptConfig {
    /// GPT-2's architecture at any size.
    pub fn gpt2(vocab_size: usize, n_ctx: usize, n_embd: usize, n_head: usize, n_layer: usize) -> Self {
        GptConfig {
            arch: Arch::Gpt2,
            vocab_size,
            n_ctx,
            n_embd,
            n_head,
            n_kv_head: n_head,
            n_layer,
            // Saturating: a damaged config's size is refused later, against the weights.
            n_inner: n_embd.saturating_mul(4),
            norm: NormKind::LayerNorm,
            norm_weight: true,
            activation_function: Activation::Gelu,
            gated_mlp: false,
            bias: true,
            qkv_bias: true,
            rope: None,
            tie_word_embeddings: true,
            embd_norm: false,
            final_norm: true,
            norm_eps: 1e-5,
            sliding_window: None,
            bos_token_id: None,
            eos_token_id: Vec::new(),
            labels: Vec::new(),
            pad_token_id: None,
        }
    }

    /// microgpt's model: RMSNorm (also after the embedding), ReLU, no biases, untied `lm_head`, no `ln_f`.
    pub fn microgpt(vocab_size: usize) -> Self {
        GptConfig {
            norm: NormKind::RmsNorm,
            norm_weight: false,
            activation_function: Activation::Relu,
            bias: false,
            qkv_bias: false,
            tie_word_embeddings: false,
            embd_norm: true,
            final_norm: false,
            ..GptConfig::gpt2(vocab_size, 16, 16, 4, 1)
        }
    }

    /// Llama's architecture: RMSNorm with weights, rotary positions (theta
    /// 10000), SwiGLU MLP of width `n_inner`, no biases, untied `lm_head`.
    pub fn llama(
        vocab_size: usize,
        n_ctx: usize,
        n_embd: usize,
        n_head: usize,
        n_layer: usize,
        n_inner: usize,
    ) -> Self {
        GptConfig {
            arch: Arch::Llama,
            n_inner,
            norm: NormKind::RmsNorm,
            activation_function: Activation::Silu,
            gated_mlp: true,
            bias: false,
            qkv_bias: false,
            rope: Some(RopeConfig {
                theta: 10000.0,
                scaling: None,
            }),
            tie_word_embeddings: false,
            norm_eps: 1e-6,
            ..GptConfig::gpt2(vocab_size, n_ctx, n_embd, n_head, n_layer)
        }
    }

    /// Whether the model is a sequence classifier (a `score` head).
    pub fn is_classifier(&self) -> bool {
        !self.labels.is_empty()
    }

    /// Width of the logits: the labels of a classifier, else the vocabulary.
    pub fn n_logits(&self) -> usize {
        if self.is_classifier() {
            self.labels.len()
        } else {
            self.vocab_size
        }
    }

    pub fn head_size(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Checks the sizes make a model, and that its checkpoint format can hold
    /// the switches; the message says what to change.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("n_ctx", self.n_ctx),
            ("n_embd", self.n_embd),
            ("n_head", self.n_head),
            ("num_key_value_heads", self.n_kv_head),
            ("n_layer", self.n_layer),
            ("n_inner", self.n_inner),
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
        if self.rope.is_some() {
            ensure!(
                self.head_size().is_multiple_of(2),
                "rotary embeddings need an even head size, not {}",
                self.head_size()
            );
        }
        ensure!(
            self.norm_eps > 0.0 && self.norm_eps.is_finite(),
            "the norm epsilon must be a positive number, not {}",
            self.norm_eps
        );
        ensure!(self.vocab_size <= u32::MAX as usize, "vocab_size too large");
        let unique: std::collections::HashSet<&String> = self.labels.iter().collect();
        ensure!(
            unique.len() == self.labels.len(),
            "the classifier's labels {:?} name one label twice",
            self.labels
        );
        match self.arch {
            Arch::Gpt2 => {
                ensure!(
                    self.rope.is_none() && !self.gated_mlp,
                    "GPT-2 checkpoints hold neither rotary embeddings nor a gated MLP"
                );
                ensure!(
                    self.qkv_bias == self.bias && self.norm_weight == (self.norm == NormKind::LayerNorm),
                    "GPT-2 checkpoints have biases everywhere or nowhere, and norm weights exactly with LayerNorm"
                );
            }
            Arch::Llama => {
                ensure!(
                    self.rope.is_some() && self.gated_mlp && self.norm == NormKind::RmsNorm && self.norm_weight,
                    "Llama checkpoints have rotary embeddings, a gated MLP and RMSNorm with weights"
                );
                ensure!(
                    self.final_norm && !self.embd_norm && self.activation_function == Activation::Silu,
                    "Llama checkpoints have a final norm, no norm after the embeddings, and SiLU"
                );
                ensure!(
                    self.qkv_bias || !self.bias,
                    "Llama-family checkpoints with biases have them on q/k/v too"
                );
                ensure!(
                    self.sliding_window.is_none_or(|w| w >= self.n_ctx),
                    "the sliding window ({:?}) must cover the context ({})",
                    self.sliding_window,
                    self.n_ctx
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_that_make_no_model_or_no_checkpoint_are_rejected_with_reasons() {
        let mut c = GptConfig::gpt2(10, 8, 10, 3, 1);
        assert!(c.validate().unwrap_err().to_string().contains("divisible"));
        (c.n_head, c.n_kv_head) = (2, 2);
        c.validate().unwrap();
        c.n_kv_head = 3;
        assert!(c.validate().unwrap_err().to_string().contains("num_key_value_heads"));
        c.n_kv_head = 0;
        assert!(c.validate().unwrap_err().to_string().contains("at least 1"));
        c.gated_mlp = true;
        c.n_kv_head = 2;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("GPT-2 checkpoints hold neither"));
        let mut l = GptConfig::llama(10, 8, 8, 2, 1, 30);
        l.validate().unwrap();
        l.n_embd = 6; // head size 3: rotary pairs need an even one
        assert!(l.validate().unwrap_err().to_string().contains("even head size"));
        l.n_embd = 8;
        l.bias = true;
        assert!(l.validate().unwrap_err().to_string().contains("q/k/v too"));
    }
}
