//! LoRA adapters in `peft`'s format: `adapter_config.json` (`r`,
//! `lora_alpha`, `use_rslora`, …) and `adapter_model.safetensors`, whose
//! tensors `base_model.model.{module}.lora_A.weight` `[r, in]` and
//! `….lora_B.weight` `[out, r]` each add `scale · x Aᵀ Bᵀ` to the output of
//! one linear layer of the base model (`scale` = alpha / r, or alpha / √r
//! rank-stabilised). The adapter stays apart from the weights it adapts (a
//! quantized base stays quantized), as `peft.PeftModel` runs it. The
//! adapter directory itself ([`Adapter`]: reading, adding to a model,
//! saving) is shared with the bottleneck adapters of [`super::bottleneck`].

use super::config::Arch;
use super::gpt::SCORE;
use super::Gpt;
use crate::io::{map_file, write_atomic, write_safetensors, Elem};
use crate::tensor::{Rng, Tensor};
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// What `peft` prefixes every tensor name of the base model with.
const PEFT_PREFIX: &str = "base_model.model.";

/// The fields of `adapter_config.json` that decide what the adapter computes.
#[derive(Clone, Debug, Deserialize)]
pub struct LoraConfig {
    pub peft_type: String,
    pub r: usize,
    pub lora_alpha: f32,
    /// Dropout on the adapted layers' input, in training only.
    #[serde(default)]
    pub lora_dropout: f32,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub use_dora: bool,
    #[serde(default = "no_bias")]
    pub bias: String,
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    #[serde(default)]
    pub rank_pattern: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub alpha_pattern: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
}

fn no_bias() -> String {
    "none".into()
}

impl LoraConfig {
    /// What multiplies `x Aᵀ Bᵀ`.
    pub fn scale(&self) -> f32 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f32).sqrt()
        } else {
            self.lora_alpha / self.r as f32
        }
    }
}

/// An adapter read from a directory: peft's LoRA, or our bottleneck
/// adapters ([`super::bottleneck`]), told apart by `adapter_config.json`.
pub struct Adapter {
    pub dir: PathBuf,
    pub kind: AdapterKind,
    /// A classifier's head `score` `[labels, C]`, saved whole (peft's
    /// `modules_to_save` of a SEQ_CLS adapter).
    pub score: Option<Tensor>,
    /// The base model it was trained on, as its config names it.
    pub base: Option<String>,
}

/// What an [`Adapter`] adds to the model.
pub enum AdapterKind {
    /// Per adapted layer (the base model's module name), `(A [r, in], B [out, r])`.
    Lora {
        config: LoraConfig,
        layers: Layers,
    },
    Bottleneck(super::bottleneck::Bottlenecks),
}

impl Adapter {
    /// Reads `dir/adapter_config.json` and `dir/adapter_model.safetensors`:
    /// a bottleneck adapter when the config has `adapter_type`, else peft's
    /// LoRA, refusing what this loader does not compute (DoRA, trained
    /// biases, saved whole modules, per-layer ranks) rather than computing something else.
    pub fn load(dir: &Path) -> Result<Adapter> {
        let config_path = dir.join(ADAPTER_CONFIG_FILE);
        let text = std::fs::read_to_string(&config_path).with_context(|| {
            format!(
                "reading {}: an adapter directory holds {ADAPTER_CONFIG_FILE} and {ADAPTER_WEIGHTS_FILE}, as peft saves them",
                config_path.display()
            )
        })?;
        let value: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", config_path.display()))?;
        if value.get("adapter_type").is_some() {
            return super::bottleneck::load(dir, &config_path, value);
        }
        let config: LoraConfig = serde_json::from_value(value)
            .with_context(|| format!("{} is not a peft adapter config", config_path.display()))?;
        let at = || config_path.display();
        ensure!(
            config.peft_type == "LORA",
            "{}: peft_type {:?}: only LORA adapters are supported",
            at(),
            config.peft_type
        );
        ensure!(config.r > 0, "{}: r is 0: a LoRA adapter has rank 1 or more", at());
        ensure!(
            config.lora_alpha.is_finite(),
            "{}: lora_alpha must be a finite number",
            at()
        );
        ensure!(
            (0.0..1.0).contains(&config.lora_dropout),
            "{}: lora_dropout must be in [0, 1)",
            at()
        );
        ensure!(!config.use_dora, "{}: DoRA adapters (use_dora) are not supported", at());
        ensure!(
            config.bias == "none",
            "{}: bias {:?}: adapters that train biases are not supported",
            at(),
            config.bias
        );
        // peft's SEQ_CLS adapters save the head whole: `classifier` or `score`.
        let saved = config.modules_to_save.iter().flatten();
        ensure!(
            saved.clone().all(|m| m == "classifier" || m == SCORE),
            "{}: modules_to_save {:?}: adapters that save whole modules other than a classifier's score are not supported",
            at(),
            config.modules_to_save
        );
        ensure!(
            config.rank_pattern.is_empty() && config.alpha_pattern.is_empty(),
            "{}: per-layer ranks or alphas (rank_pattern, alpha_pattern) are not supported",
            at()
        );
        let weights = dir.join(ADAPTER_WEIGHTS_FILE);
        let (layers, score) =
            read_layers(&weights, config.r).with_context(|| format!("reading {}", weights.display()))?;
        Ok(Adapter {
            dir: dir.to_path_buf(),
            base: config.base_model_name_or_path.clone(),
            kind: AdapterKind::Lora { config, layers },
            score,
        })
    }
}

/// LoRA's matrices by adapted layer: `module -> (A, B)`.
pub type Layers = BTreeMap<String, (Tensor, Tensor)>;

/// `module -> (A, B)` from a peft safetensors file, each pair complete and
/// of rank `r`, and a classifier's `score` head if it holds one.
fn read_layers(path: &Path, r: usize) -> Result<(Layers, Option<Tensor>)> {
    let map = map_file(path)?;
    let st = safetensors::SafeTensors::deserialize(&map).context("not a safetensors file")?;
    let mut halves: BTreeMap<String, [Option<Tensor>; 2]> = BTreeMap::new();
    let mut score = None;
    for (name, view) in st.tensors() {
        if name == format!("{PEFT_PREFIX}{SCORE}.weight") {
            let data = read_f32(&name, &view)?;
            ensure!(
                view.shape().len() == 2,
                "tensor {name} has shape {:?}, not a matrix",
                view.shape()
            );
            score = Some(Tensor {
                data,
                shape: view.shape().to_vec(),
            });
            continue;
        }
        let (module, half) = match name.strip_suffix(".lora_A.weight") {
            Some(m) => (m, 0),
            None => match name.strip_suffix(".lora_B.weight") {
                Some(m) => (m, 1),
                None => bail!("tensor {name} is neither a lora_A nor a lora_B weight"),
            },
        };
        let module = module.strip_prefix(PEFT_PREFIX).unwrap_or(module);
        let shape = view.shape().to_vec();
        ensure!(shape.len() == 2, "tensor {name} has shape {shape:?}, not a matrix");
        let rank = if half == 0 { shape[0] } else { shape[1] };
        ensure!(
            rank == r,
            "tensor {name} has shape {shape:?}, but the adapter's rank r is {r}"
        );
        let t = Tensor {
            data: read_f32(&name, &view)?,
            shape,
        };
        halves.entry(module.to_string()).or_default()[half] = Some(t);
    }
    ensure!(!halves.is_empty(), "it holds no LoRA tensors");
    let layers = halves
        .into_iter()
        .map(|(module, [a, b])| match (a, b) {
            (Some(a), Some(b)) => Ok((module, (a, b))),
            _ => bail!("{module} has only one of lora_A and lora_B"),
        })
        .collect::<Result<_>>()?;
    Ok((layers, score))
}

/// A stored tensor's values as f32.
pub(super) fn read_f32(name: &str, view: &safetensors::tensor::TensorView) -> Result<Vec<f32>> {
    let elem = match view.dtype() {
        safetensors::Dtype::F32 => Elem::F32,
        safetensors::Dtype::F16 => Elem::F16,
        safetensors::Dtype::BF16 => Elem::Bf16,
        d => bail!("tensor {name} is {d:?}: only F32, F16 and BF16 are read"),
    };
    Ok(elem.to_f32(view.data()))
}

impl Gpt {
    /// Adds `adapter` to the model: a LoRA adapter to the linear layers it
    /// names, bottleneck adapters to the blocks, and a classifier's head.
    /// Errors, changing nothing, when a layer is not in this model or its
    /// shapes differ (an adapter trained for another base model).
    pub fn add_adapter(&mut self, adapter: &Adapter) -> Result<()> {
        let score = self.params.find(&format!("{SCORE}.weight"));
        if let Some(t) = &adapter.score {
            let Some(id) = score else {
                bail!(
                    "the adapter in {} holds a classification head (score {:?}): run it on the classifier it was trained for",
                    adapter.dir.display(),
                    t.shape
                );
            };
            ensure!(
                self.params.get(id).shape == t.shape,
                "the adapter in {} holds a classification head of shape {:?}, but this classifier's is {:?}",
                adapter.dir.display(),
                t.shape,
                self.params.get(id).shape
            );
        }
        match &adapter.kind {
            AdapterKind::Lora { config, layers } => self.add_lora_layers(adapter, config, layers)?,
            AdapterKind::Bottleneck(b) => self.add_bottlenecks(adapter, b)?,
        }
        if let (Some(t), Some(id)) = (&adapter.score, score) {
            self.params.tensors[id.0].data.clone_from(&t.data);
        }
        Ok(())
    }

    /// LoRA's `layers` (of `adapter`) on the linear layers they name, each checked first.
    fn add_lora_layers(&mut self, adapter: &Adapter, config: &LoraConfig, layers: &Layers) -> Result<()> {
        let prefix = self.config.arch.names().file_prefix;
        let linears = self.linear_names();
        let mut plan = Vec::new();
        for (module, (a, b)) in layers {
            let name = module.strip_prefix(prefix).unwrap_or(module);
            let Some(&(i, d_in, d_out)) = linears.get(name) else {
                bail!(
                    "the adapter in {} adapts {module}, which this model does not have: it was trained for another \
                     base model{}",
                    adapter.dir.display(),
                    base_name(adapter)
                );
            };
            ensure!(
                a.shape[1] == d_in && b.shape[0] == d_out,
                "the adapter in {} adapts {module} from {} to {} features, but this model's layer maps {d_in} to \
                 {d_out}: it was trained for another base model{}",
                adapter.dir.display(),
                a.shape[1],
                b.shape[0],
                base_name(adapter)
            );
            plan.push((i, name.to_string(), a.clone(), b.clone()));
        }
        let (scale, dropout) = (config.scale(), config.lora_dropout);
        for (i, name, a, b) in plan {
            self.set_lora(i, &name, a, b, scale, dropout);
        }
        Ok(())
    }
}

/// ` (NAME, says its adapter_config.json)`, for errors about another base model.
pub(super) fn base_name(adapter: &Adapter) -> String {
    match &adapter.base {
        Some(name) => format!(" ({name}, says its {ADAPTER_CONFIG_FILE})"),
        None => String::new(),
    }
}

/// A LoRA adapter to train, as `adapter_config.json` records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoraSpec {
    pub r: usize,
    pub alpha: f32,
    pub dropout: f32,
    /// The layers to adapt, as peft's `target_modules` names them: a layer
    /// is adapted when its name (without `.weight`) is one of them or ends
    /// with `.` and one of them (`c_attn`, `q_proj`, `attn.c_proj`).
    pub targets: Vec<String>,
    /// The base model (as `--init` named it): `base_model_name_or_path`.
    pub base: String,
}

impl LoraSpec {
    /// peft's default target modules for an architecture: the attention's
    /// query and value projections (GPT-2's fused `c_attn`).
    pub fn default_targets(arch: Arch) -> Vec<String> {
        let targets: &[&str] = match arch {
            Arch::Gpt2 => &["c_attn"],
            Arch::Llama => &["q_proj", "v_proj"],
        };
        targets.iter().map(|t| t.to_string()).collect()
    }

    fn targets(&self, module: &str) -> bool {
        let module = module.strip_suffix(".weight").unwrap_or(module);
        (self.targets.iter()).any(|t| module == t || module.strip_suffix(t.as_str()).is_some_and(|m| m.ends_with('.')))
    }

    /// `adapter_config.json` for this adapter on a model of `arch`, as peft writes it.
    /// (A classifier's: peft's SEQ_CLS, its head saved whole.)
    pub(super) fn config_json(&self, arch: Arch, classifier: bool) -> String {
        let config = serde_json::json!({
            "peft_type": "LORA",
            "task_type": if classifier { "SEQ_CLS" } else { "CAUSAL_LM" },
            "base_model_name_or_path": self.base,
            "r": self.r,
            "lora_alpha": self.alpha,
            "lora_dropout": self.dropout,
            "target_modules": self.targets,
            // GPT-2's Conv1D stores its weight [in, out].
            "fan_in_fan_out": !arch.names().w_t,
            "bias": "none",
            "use_rslora": false,
            "use_dora": false,
            "modules_to_save": if classifier { serde_json::json!(["classifier", SCORE]) } else { serde_json::Value::Null },
            "init_lora_weights": true,
            "inference_mode": true,
            "rank_pattern": {},
            "alpha_pattern": {},
        });
        serde_json::to_string_pretty(&config).expect("JSON")
    }
}

impl Gpt {
    /// Adds a fresh LoRA adapter of `spec` to every linear layer it targets,
    /// as peft initialises one (A uniform in ±1/√in, which is
    /// `kaiming_uniform_(a=√5)`; B zero, so the model is unchanged until it
    /// trains), drawn from `rng` in layer order, and freezes every other
    /// parameter.
    pub fn add_lora(&mut self, spec: &LoraSpec, rng: &mut Rng) -> Result<()> {
        ensure!(spec.r > 0, "--lora-rank 0: a LoRA adapter has rank 1 or more");
        ensure!(
            spec.alpha.is_finite() && spec.alpha > 0.0,
            "--lora-alpha {}: give a positive number",
            spec.alpha
        );
        ensure!(
            (0.0..1.0).contains(&spec.dropout),
            "--lora-dropout {}: give a probability in [0, 1)",
            spec.dropout
        );
        let mut layers: Vec<(String, (usize, usize, usize))> = self.linear_names().into_iter().collect();
        layers.sort_by_key(|(_, (i, _, _))| *i);
        let chosen: Vec<_> = layers.iter().filter(|(name, _)| spec.targets(name)).collect();
        if chosen.is_empty() {
            let mut names: Vec<&str> = layers.iter().map(|(n, _)| n.rsplit('.').next().unwrap_or(n)).collect();
            names.sort();
            names.dedup();
            bail!(
                "--lora-targets {}: no layer of this model is named so (its layers: {})",
                spec.targets.join(","),
                names.join(", ")
            );
        }
        for (name, (_, d_in, d_out)) in &chosen {
            ensure!(
                spec.r <= *d_in.min(d_out),
                "--lora-rank {}: above the width of {name} ({d_in} to {d_out}); a rank of {} already gives a \
                 full-rank update",
                spec.r,
                d_in.min(d_out)
            );
        }
        let scale = spec.alpha / spec.r as f32;
        for (name, (i, d_in, d_out)) in chosen {
            let a = kaiming_uniform(spec.r, *d_in, rng);
            self.set_lora(*i, name, a, Tensor::zeros(&[*d_out, spec.r]), scale, spec.dropout);
        }
        self.train_adapters_only();
        Ok(())
    }

    /// Freezes every parameter but the adapters' (LoRA matrices or
    /// bottleneck adapters; and a classifier's head, `score`, which trains
    /// whole as peft's `modules_to_save`).
    pub fn train_adapters_only(&mut self) {
        self.params.set_trainable(false, |_| true);
        self.params
            .set_trainable(true, |n| is_adapter(n) || n == format!("{SCORE}.weight"));
    }

    /// Writes the model's adapter (and a classifier's head) in `dir`:
    /// `adapter_config.json` as `spec` describes it, then
    /// `adapter_model.safetensors` (LoRA: peft's tensor names; bottleneck:
    /// the base model's file names), `metadata` in its header, each atomically.
    pub fn save_adapter(&self, dir: &Path, spec: &AdapterSpec, mut metadata: HashMap<String, String>) -> Result<()> {
        let arch = self.config.arch;
        let classifier = self.config.is_classifier();
        let (prefix, json) = match spec {
            AdapterSpec::Lora(lora) => (PEFT_PREFIX, lora.config_json(arch, classifier)),
            AdapterSpec::Bottleneck(b) => ("", b.config_json(&self.config)),
        };
        let file_prefix = arch.names().file_prefix;
        let p = &self.params;
        let score = format!("{SCORE}.weight");
        let tensors = p
            .names
            .iter()
            .zip(&p.tensors)
            .filter(|(name, _)| is_adapter(name) || **name == score);
        let tensors = tensors.map(|(name, t)| match *name == score {
            true => (format!("{prefix}{name}"), &t.shape[..], &t.data[..]),
            false => (format!("{prefix}{file_prefix}{name}"), &t.shape[..], &t.data[..]),
        });
        write_atomic(&dir.join(ADAPTER_CONFIG_FILE), json.as_bytes())?;
        metadata.insert("format".to_string(), "pt".to_string());
        write_safetensors(&dir.join(ADAPTER_WEIGHTS_FILE), tensors, metadata)
    }
}

/// An adapter a run trains, as its `adapter_config.json` records it.
#[derive(Clone, Debug, PartialEq)]
pub enum AdapterSpec {
    Lora(LoraSpec),
    Bottleneck(super::bottleneck::BottleneckSpec),
}

/// A `[rows, d_in]` matrix as PyTorch's `kaiming_uniform_(a=√5)` draws an
/// nn.Linear's weight: uniform in ±1/√d_in (from `rng`, row by row).
pub(super) fn kaiming_uniform(rows: usize, d_in: usize, rng: &mut Rng) -> Tensor {
    use rand::RngExt;
    let bound = 1.0 / (d_in as f32).sqrt();
    let w: Vec<f32> = (0..rows * d_in).map(|_| rng.random_range(-bound..bound)).collect();
    Tensor::from_vec(&[rows, d_in], w)
}

impl AdapterSpec {
    /// The base model the adapter is trained on (as `--init` named it).
    pub fn base(&self) -> &str {
        match self {
            AdapterSpec::Lora(lora) => &lora.base,
            AdapterSpec::Bottleneck(b) => &b.base,
        }
    }

    /// What it is, for messages: "LoRA adapter", "bottleneck adapters".
    pub fn what(&self) -> &'static str {
        match self {
            AdapterSpec::Lora(_) => "LoRA adapter",
            AdapterSpec::Bottleneck(_) => "bottleneck adapters",
        }
    }
}

/// Whether a parameter is a LoRA matrix ([`Gpt::set_lora`] names them).
fn is_lora(name: &str) -> bool {
    name.ends_with(".lora_A.weight") || name.ends_with(".lora_B.weight")
}

/// Whether a parameter belongs to an adapter: LoRA's or a bottleneck.
fn is_adapter(name: &str) -> bool {
    is_lora(name) || super::bottleneck::is_bottleneck(name)
}

/// The string metadata in the header of `dir/adapter_model.safetensors`.
pub fn adapter_metadata(dir: &Path) -> Result<HashMap<String, String>> {
    let path = dir.join(ADAPTER_WEIGHTS_FILE);
    let map = map_file(&path)?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&map[..])
        .map_err(|e| anyhow::anyhow!("{} is truncated or corrupt ({e})", path.display()))?;
    Ok(meta.metadata().clone().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autograd::{Graph, Workspace};
    use crate::model::{GptConfig, Init};
    use crate::tensor::rng;

    fn logits(model: &Gpt) -> Vec<f32> {
        let mut g = Graph::inference(&model.params, Workspace::default());
        let out = model.forward(&mut g, &[1, 5, 2, 7], &[0, 1, 2, 3], 1, None);
        g.value(out).to_vec()
    }

    #[test]
    fn a_fresh_llama_adapter_is_peft_s_and_saves_what_loads_back() {
        let base = || Gpt::new(GptConfig::llama(11, 8, 16, 4, 2, 48), Init::Gpt2, &mut rng(1));
        let spec = LoraSpec {
            r: 2,
            alpha: 8.0,
            dropout: 0.0,
            targets: LoraSpec::default_targets(Arch::Llama),
            base: "tiny".into(),
        };
        let mut model = base();
        model.add_lora(&spec, &mut rng(2)).unwrap();
        let lora: Vec<&str> = model
            .params
            .names
            .iter()
            .filter(|n| is_lora(n))
            .map(String::as_str)
            .collect();
        assert_eq!(lora.len(), 8, "A and B of q_proj and v_proj in 2 layers: {lora:?}");
        assert!(lora
            .iter()
            .all(|n| n.contains(".self_attn.q_proj.") || n.contains(".self_attn.v_proj.")));
        for (i, name) in model.params.names.iter().enumerate() {
            let t = &model.params.tensors[i];
            assert_eq!(model.params.trainable[i], is_lora(name), "{name}");
            if name.ends_with("lora_B.weight") {
                assert!(t.data.iter().all(|&x| x == 0.0), "B starts at zero");
            } else if name.ends_with("lora_A.weight") {
                // kaiming_uniform_(a=√5): U(±1/√in), in = 16.
                assert!(t.data.iter().all(|x| x.abs() < 0.25) && t.data.iter().any(|x| x.abs() > 0.15));
            }
        }
        assert_eq!(logits(&model), logits(&base()), "B = 0: the model is unchanged");
        // Trained (here: set) adapters save as peft's and load back into a fresh base.
        let b = model
            .params
            .names
            .iter()
            .position(|n| n.ends_with("lora_B.weight"))
            .unwrap();
        model.params.tensors[b].data.iter_mut().for_each(|x| *x = 0.5);
        let dir = tempfile::tempdir().unwrap();
        model
            .save_adapter(dir.path(), &AdapterSpec::Lora(spec), HashMap::new())
            .unwrap();
        let adapter = Adapter::load(dir.path()).unwrap();
        let AdapterKind::Lora { config, layers } = &adapter.kind else {
            panic!("a LoRA adapter")
        };
        assert_eq!(config.scale(), 4.0);
        assert!(layers.keys().all(|k| k.starts_with("model.layers.")));
        let mut loaded = base();
        loaded.add_adapter(&adapter).unwrap();
        assert_eq!(logits(&loaded), logits(&model));
        assert_ne!(logits(&loaded), logits(&base()));
    }
}
