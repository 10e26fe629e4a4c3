//! Bottleneck adapters (Houlsby et al. 2019, "Parameter-Efficient Transfer
//! Learning for NLP"; the layout of the `adapters` library's
//! DoubleSeqBnConfig): in every block one on the attention's output and one
//! on the MLP's (after each output projection and its dropout, before the
//! residual add), each `h + up(relu(down(h)))` with `down` `[H, C]` and
//! `up` `[C, H]` (nn.Linear's layout), both with a bias. ReLU is the
//! `adapters` library's default non-linearity for bottleneck adapters. A
//! fresh adapter starts as that library's `init_weights="mam_adapter"`:
//! `down` uniform in ±1/√C (`kaiming_uniform_(a=√5)`), `up` and both biases
//! zero, so the model starts exactly as its base and `down` still learns.
//!
//! A run directory holds `adapter_config.json` (`adapter_type`
//! "bottleneck", `adapter_size`, `non_linearity`, `base_model_name_or_path`,
//! …) and `adapter_model.safetensors`, whose tensors are named after the
//! base model's module whose output they adapt, as the base's file names it:
//! `{module}.adapter.{down,up}.{weight,bias}` with `{module}`
//! `transformer.h.{i}.attn` and `transformer.h.{i}.mlp` (GPT-2),
//! `model.layers.{i}.self_attn` and `model.layers.{i}.mlp` (Llama); a
//! classifier's head as `score.weight`.

use super::config::GptConfig;
use super::gpt::{ADAPTER_SITES, SCORE};
use super::lora::{base_name, kaiming_uniform, read_f32, Adapter, AdapterKind};
use super::{Gpt, ADAPTER_WEIGHTS_FILE};
use crate::io::map_file;
use crate::tensor::{Rng, Tensor};
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// `adapter_type` in `adapter_config.json`.
const ADAPTER_TYPE: &str = "bottleneck";
/// `non_linearity`: the only one computed.
const NON_LINEARITY: &str = "relu";

/// Bottleneck adapters to train, as `adapter_config.json` records them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BottleneckSpec {
    /// `H`: the width each adapter narrows the hidden state to.
    pub size: usize,
    /// The base model (as `--init` named it): `base_model_name_or_path`.
    pub base: String,
}

/// The fields of `adapter_config.json` that decide what the adapters compute.
#[derive(Debug, Deserialize)]
struct BottleneckConfig {
    adapter_type: String,
    adapter_size: usize,
    non_linearity: String,
    #[serde(default)]
    base_model_name_or_path: Option<String>,
}

/// Bottleneck adapters read from a directory: their width and their tensors
/// by name (as the file names them).
pub struct Bottlenecks {
    pub size: usize,
    tensors: BTreeMap<String, Tensor>,
}

/// Whether a parameter belongs to a bottleneck adapter ([`Gpt::set_bottleneck`] names them).
pub(super) fn is_bottleneck(name: &str) -> bool {
    [".adapter.down.", ".adapter.up."].iter().any(|p| name.contains(p))
}

impl BottleneckSpec {
    /// `adapter_config.json` for these adapters on a model of `config`.
    pub(super) fn config_json(&self, config: &GptConfig) -> String {
        let classifier = config.is_classifier();
        let config = serde_json::json!({
            "adapter_type": ADAPTER_TYPE,
            "adapter_size": self.size,
            "non_linearity": NON_LINEARITY,
            "base_model_name_or_path": self.base,
            "task_type": if classifier { "SEQ_CLS" } else { "CAUSAL_LM" },
            "hidden_size": config.n_embd,
            "num_hidden_layers": config.n_layer,
            // The adapters library's names: after the attention (mh_adapter) and the MLP (output_adapter).
            "mh_adapter": true,
            "output_adapter": true,
            "init_weights": "mam_adapter",
            "modules_to_save": if classifier { serde_json::json!([SCORE]) } else { serde_json::Value::Null },
        });
        serde_json::to_string_pretty(&config).expect("JSON")
    }
}

/// The bottleneck adapters in `dir`, whose config `value` (read from `config_path`) has an `adapter_type`.
pub(super) fn load(dir: &Path, config_path: &Path, value: serde_json::Value) -> Result<Adapter> {
    let at = || config_path.display();
    let config: BottleneckConfig = serde_json::from_value(value).with_context(|| {
        format!(
            "{}: a bottleneck adapter's config has adapter_type, adapter_size and non_linearity",
            at()
        )
    })?;
    ensure!(
        config.adapter_type == ADAPTER_TYPE,
        "{}: adapter_type {:?}: only {ADAPTER_TYPE:?} adapters (and peft's LoRA) are supported",
        at(),
        config.adapter_type
    );
    ensure!(
        config.adapter_size > 0,
        "{}: adapter_size is 0: a bottleneck adapter is 1 or more wide",
        at()
    );
    ensure!(
        config.non_linearity == NON_LINEARITY,
        "{}: non_linearity {:?}: only {NON_LINEARITY:?} is supported",
        at(),
        config.non_linearity
    );
    let weights = dir.join(ADAPTER_WEIGHTS_FILE);
    let (tensors, score) = read_tensors(&weights).with_context(|| format!("reading {}", weights.display()))?;
    Ok(Adapter {
        dir: dir.to_path_buf(),
        kind: AdapterKind::Bottleneck(Bottlenecks {
            size: config.adapter_size,
            tensors,
        }),
        score,
        base: config.base_model_name_or_path,
    })
}

/// Every adapter tensor of a safetensors file by name, and a classifier's `score` head apart.
fn read_tensors(path: &Path) -> Result<(BTreeMap<String, Tensor>, Option<Tensor>)> {
    let map = map_file(path)?;
    let st = safetensors::SafeTensors::deserialize(&map).context("not a safetensors file")?;
    let (mut tensors, mut score) = (BTreeMap::new(), None);
    for (name, view) in st.tensors() {
        let t = Tensor {
            data: read_f32(&name, &view)?,
            shape: view.shape().to_vec(),
        };
        if name == format!("{SCORE}.weight") {
            ensure!(
                t.shape.len() == 2,
                "tensor {name} has shape {:?}, not a matrix",
                t.shape
            );
            score = Some(t);
        } else {
            ensure!(
                is_bottleneck(&name),
                "tensor {name} is not a bottleneck adapter's (MODULE.adapter.down/up.weight/bias)"
            );
            tensors.insert(name, t);
        }
    }
    ensure!(!tensors.is_empty(), "it holds no adapter tensors");
    Ok((tensors, score))
}

impl Gpt {
    /// The modules whose outputs block `i`'s adapters adapt (attention's, the
    /// MLP's), by our parameter names (without the file prefix).
    fn adapted_modules(&self, i: usize) -> [String; ADAPTER_SITES] {
        let n = self.config.arch.names();
        let module = |proj: &str| format!("{}.{i}.{}", n.layer, proj.split('.').next().expect("a module"));
        [module(n.attn_proj), module(n.mlp_proj)]
    }

    /// Adds fresh bottleneck adapters of `spec` to every block (`down` drawn
    /// from `rng` in block order, attention's before the MLP's; see the
    /// module docs) and freezes every other parameter.
    pub fn add_bottleneck_adapters(&mut self, spec: &BottleneckSpec, rng: &mut Rng) -> Result<()> {
        let c = self.config.n_embd;
        ensure!(
            (1..=c).contains(&spec.size),
            "--adapter-size {}: give 1 to the model's width {c} (a bottleneck adapter narrows the hidden state)",
            spec.size
        );
        for i in 0..self.config.n_layer {
            for (site, module) in self.adapted_modules(i).into_iter().enumerate() {
                let t = [
                    kaiming_uniform(spec.size, c, rng),
                    Tensor::zeros(&[spec.size]),
                    Tensor::zeros(&[c, spec.size]),
                    Tensor::zeros(&[c]),
                ];
                self.set_bottleneck(i, site, &format!("{module}.adapter"), t);
            }
        }
        self.train_adapters_only();
        Ok(())
    }

    /// Adds the bottleneck adapters `b` of `adapter`: one for each site of
    /// every block, each checked first against this model's shapes.
    pub(super) fn add_bottlenecks(&mut self, adapter: &Adapter, b: &Bottlenecks) -> Result<()> {
        let (c, h) = (self.config.n_embd, b.size);
        let file_prefix = self.config.arch.names().file_prefix;
        let other_base = || format!("it was trained for another base model{}", base_name(adapter));
        let dir = adapter.dir.display();
        let mut by_name: BTreeMap<&str, &Tensor> = BTreeMap::new();
        for (name, t) in &b.tensors {
            by_name.insert(name.strip_prefix(file_prefix).unwrap_or(name), t);
        }
        let mut plan = Vec::new();
        for i in 0..self.config.n_layer {
            for (site, module) in self.adapted_modules(i).into_iter().enumerate() {
                let module = format!("{module}.adapter");
                let parts = [("down.weight", vec![h, c]), ("down.bias", vec![h])];
                let parts = parts
                    .into_iter()
                    .chain([("up.weight", vec![c, h]), ("up.bias", vec![c])]);
                let mut tensors = Vec::new();
                for (part, shape) in parts {
                    let name = format!("{module}.{part}");
                    let Some(t) = by_name.remove(name.as_str()) else {
                        bail!(
                            "the adapter in {dir} has no {file_prefix}{name}, which this model's {} blocks need: {}",
                            self.config.n_layer,
                            other_base()
                        );
                    };
                    ensure!(
                        t.shape == shape,
                        "the adapter in {dir} holds {file_prefix}{name} of shape {:?}, but this model (width {c}) \
                         with adapter_size {h} needs {shape:?}: {}",
                        t.shape,
                        other_base()
                    );
                    tensors.push(t.clone());
                }
                let t: [Tensor; 4] = tensors.try_into().expect("four tensors");
                plan.push((i, site, module, t));
            }
        }
        if let Some(name) = by_name.keys().next() {
            bail!(
                "the adapter in {dir} holds {file_prefix}{name}, which no block of this model ({} blocks) has: {}",
                self.config.n_layer,
                other_base()
            );
        }
        for (i, site, module, t) in plan {
            self.set_bottleneck(i, site, &module, t);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autograd::{gradcheck, Graph, Workspace};
    use crate::model::{AdapterSpec, GptConfig, Init, KvCache};
    use crate::tensor::rng;
    use std::collections::HashMap;

    fn logits(model: &Gpt, tokens: &[u32]) -> Vec<f32> {
        let pos: Vec<u32> = (0..tokens.len() as u32).collect();
        let mut g = Graph::inference(&model.params, Workspace::default());
        let out = model.forward(&mut g, tokens, &pos, 1, None);
        g.value(out).to_vec()
    }

    #[test]
    fn fresh_adapters_change_nothing_train_alone_and_save_what_loads_back() {
        for config in [GptConfig::gpt2(11, 8, 8, 2, 2), GptConfig::llama(11, 8, 8, 2, 2, 24)] {
            let base = || Gpt::new(config.clone(), Init::Normal(0.3), &mut rng(1));
            let spec = BottleneckSpec {
                size: 3,
                base: "tiny".into(),
            };
            let mut model = base();
            model.add_bottleneck_adapters(&spec, &mut rng(2)).unwrap();
            let tokens = [1, 5, 2, 7, 3];
            assert_eq!(
                logits(&model, &tokens),
                logits(&base(), &tokens),
                "up = 0: the model is unchanged"
            );
            let adapters: Vec<&String> = model.params.names.iter().filter(|n| is_bottleneck(n)).collect();
            assert_eq!(adapters.len(), 2 * 2 * 4, "{adapters:?}");
            for (i, name) in model.params.names.iter().enumerate() {
                assert_eq!(model.params.trainable[i], is_bottleneck(name), "{name}");
            }
            // Gradients of the adapters (their `up` made non-zero so every path carries one).
            for (name, t) in model.params.names.iter().zip(&mut model.params.tensors) {
                if name.ends_with("up.weight") || name.ends_with("bias") && is_bottleneck(name) {
                    let n = t.data.len();
                    t.data = Tensor::randn(&[n], 0.5, &mut rng(n as u64)).data;
                }
            }
            let targets = [5, 2, 7, 3, 1];
            let frozen = model.params.trainable.clone();
            model.params.set_trainable(true, |_| true);
            gradcheck::check(&model.params, 1e-3, |g| {
                let logits = model.forward(g, &tokens, &[0, 1, 2, 3, 4], 1, None);
                g.cross_entropy(logits, &targets)
            });
            model.params.trainable = frozen;
            // The KV cache runs the same layers.
            let mut cache = KvCache::new(&model.config, 1, 5);
            let mut g = Graph::inference(&model.params, Workspace::default());
            let first = model.forward(&mut g, &tokens[..3], &[0, 1, 2], 1, Some(&mut cache));
            let got = g.value(first).to_vec();
            let mut g = Graph::inference(&model.params, g.finish());
            let rest = model.forward(&mut g, &tokens[3..], &[3, 4], 1, Some(&mut cache));
            let got = [got, g.value(rest).to_vec()].concat();
            let want = logits(&model, &tokens);
            assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5));
            assert_ne!(want, logits(&base(), &tokens));
            // Saved and loaded back into a fresh base: the same logits.
            let dir = tempfile::tempdir().unwrap();
            model
                .save_adapter(dir.path(), &AdapterSpec::Bottleneck(spec.clone()), HashMap::new())
                .unwrap();
            let adapter = Adapter::load(dir.path()).unwrap();
            let AdapterKind::Bottleneck(b) = &adapter.kind else {
                panic!("a bottleneck adapter")
            };
            let prefix = config.arch.names().file_prefix;
            assert!(b.tensors.contains_key(&format!(
                "{prefix}{}.1.mlp.adapter.up.weight",
                config.arch.names().layer
            )));
            let mut loaded = base();
            loaded.add_adapter(&adapter).unwrap();
            assert_eq!(logits(&loaded, &tokens), want);
            assert!(loaded.merge_adapters().unwrap_err().to_string().contains("not linear"));
            // Another width, or fewer blocks: refused, naming the base.
            for other in [
                GptConfig {
                    n_embd: 12,
                    ..config.clone()
                },
                GptConfig {
                    n_layer: 1,
                    ..config.clone()
                },
            ] {
                let mut m = Gpt::new(other, Init::Normal(0.3), &mut rng(1));
                let n = m.params.names.len();
                let err = m.add_adapter(&adapter).unwrap_err().to_string();
                assert!(err.contains("another base model (tiny"), "{err}");
                assert_eq!(m.params.names.len(), n, "nothing added");
            }
        }
    }
}
