//! How each architecture names its parameters and lays out its matrices:
//! one table per [`Arch`], so the model and the loader name nothing themselves.

use super::config::Arch;

/// The names of one architecture's parameters (each `.weight` / `.bias`).
pub(super) struct Names {
    pub wte: &'static str,
    /// The learned position table, for models that have one.
    pub wpe: &'static str,
    pub ln_emb: &'static str,
    /// Layer `i`'s names start with `{layer}.{i}.`.
    pub layer: &'static str,
    pub ln_1: &'static str,
    /// The query, key and value projections: one fused matrix, or q, k and v.
    pub qkv: &'static [&'static str],
    pub attn_proj: &'static str,
    pub ln_2: &'static str,
    /// The MLP's first projection (`fc`; a gated MLP's `gate`)…
    pub fc: &'static str,
    /// …a gated MLP's second (`up`)…
    pub up: &'static str,
    /// …and its projection back (`down`).
    pub mlp_proj: &'static str,
    pub ln_f: &'static str,
    pub lm_head: &'static str,
    /// Matrices are stored `[out, in]` (nn.Linear) rather than `[in, out]` (Conv1D).
    pub w_t: bool,
    /// A prefix some files put before every name but `lm_head`'s (`transformers`' GPT-2).
    pub file_prefix: &'static str,
    /// Endings of tensors some files hold that are not parameters (buffers).
    pub buffers: &'static [&'static str],
}

/// Hugging Face GPT-2 (and our microgpt variant: `ln_emb`).
const GPT2: Names = Names {
    wte: "wte",
    wpe: "wpe",
    ln_emb: "ln_emb",
    layer: "h",
    ln_1: "ln_1",
    qkv: &["attn.c_attn"],
    attn_proj: "attn.c_proj",
    ln_2: "ln_2",
    fc: "mlp.c_fc",
    up: "",
    mlp_proj: "mlp.c_proj",
    ln_f: "ln_f",
    lm_head: "lm_head",
    w_t: false,
    file_prefix: "transformer.",
    buffers: &[".attn.bias", ".attn.masked_bias"],
};

/// Hugging Face Llama (and Mistral, Qwen2).
const LLAMA: Names = Names {
    wte: "model.embed_tokens",
    wpe: "",
    ln_emb: "",
    layer: "model.layers",
    ln_1: "input_layernorm",
    qkv: &["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
    attn_proj: "self_attn.o_proj",
    ln_2: "post_attention_layernorm",
    fc: "mlp.gate_proj",
    up: "mlp.up_proj",
    mlp_proj: "mlp.down_proj",
    ln_f: "model.norm",
    lm_head: "lm_head",
    w_t: true,
    file_prefix: "",
    buffers: &[".rotary_emb.inv_freq"],
};

impl Arch {
    pub(super) fn names(self) -> &'static Names {
        match self {
            Arch::Gpt2 => &GPT2,
            Arch::Llama => &LLAMA,
        }
    }
}

/// Whether a parameter is an embedding table (which AdamW does not decay).
pub fn is_embedding(name: &str) -> bool {
    [GPT2.wte, GPT2.wpe, LLAMA.wte]
        .iter()
        .any(|table| name.strip_prefix(table) == Some(".weight"))
}
