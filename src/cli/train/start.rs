//! Where a run starts: a new model, a checkpoint to fine-tune (`--init`), or
//! a saved run to continue (`--resume`); and what it does while it trains
//! (checkpoints, samples, its log).

use super::data::{is_prepared, prepare, prepared_tokenizer, Prepared};
use super::limits::check_memory;
use super::{samples, settings, train_options, Settings, TrainArgs};
use crate::io::write_atomic;
use crate::model::{tokenizer_for, Adapter, ChatSpec, Gpt, GptConfig, LoraSpec};
use crate::tensor::rng;
use crate::tokenizer::Tokenizer;
use crate::train::checkpoint::{load_checkpoint, save_checkpoint};
use crate::train::optim::Moments;
use crate::train::plot::plot_log;
use crate::train::progress::Progress;
use crate::train::{TrainHooks, TrainState};
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Settings a resumed run may change: the rest must be the saved run's (and
/// the split of a step's rows, the last three, must keep the step's rows).
const CHANGEABLE_ON_RESUME: [&str; 10] = [
    "data",
    "steps",
    "eval_every",
    "save_every",
    "sample_every",
    "num_samples",
    "temperature",
    "ranks",
    "batch_size",
    "grad_accum",
];

/// An error naming every setting in `now` that differs from the `saved` run's.
fn check_same_run(saved: &Settings, now: &Settings) -> Result<()> {
    // Through text, so that an f32 prints as written (0.1, not 0.10000000149011612).
    let value = |s: &Settings| serde_json::from_str::<serde_json::Value>(&serde_json::to_string(s)?);
    let (saved_v, now_v) = (value(saved)?, value(now)?);
    let changed: Vec<String> = now_v
        .as_object()
        .expect("settings are an object")
        .iter()
        .filter(|(k, v)| !CHANGEABLE_ON_RESUME.contains(&k.as_str()) && saved_v.get(k.as_str()) != Some(v))
        .map(|(k, v)| format!("--{} {v} (the run has {})", k.replace('_', "-"), saved_v[k.as_str()]))
        .collect();
    ensure!(
        changed.is_empty(),
        "the checkpoint was trained with other settings: {}. Drop those flags to resume it, or start a new run (fine-tune it with --init)",
        changed.join(", ")
    );
    Ok(())
}

/// An error unless `now` takes as many rows per step as the `saved` run:
/// the data order (rows of the step) and the gradient's mean depend on it,
/// not on how ranks, micro-batches and rows split it.
fn check_same_global_batch(saved: &Settings, now: &Settings) -> Result<()> {
    let (want, got) = (saved.global_batch(), now.global_batch());
    if want == got {
        return Ok(());
    }
    let per_rank = want / now.ranks as u128;
    let hint = if want % (now.ranks as u128 * now.batch_size as u128) == 0 {
        format!("give --grad-accum {}", per_rank / now.batch_size as u128)
    } else if want % now.ranks as u128 == 0 {
        format!("give --batch-size {per_rank} --grad-accum 1")
    } else {
        format!("run it on a number of ranks that divides {want}")
    };
    bail!(
        "the run takes {want} rows per step ({} ranks x --grad-accum {} x --batch-size {}), but {} ranks x --grad-accum {} x --batch-size {} is {got}: {hint}",
        saved.ranks,
        saved.grad_accum,
        saved.batch_size,
        now.ranks,
        now.grad_accum,
        now.batch_size
    )
}

/// What a checkpoint records about its run beside the optimizer state.
#[derive(Serialize, Deserialize)]
pub struct RunRecord {
    pub settings: Settings,
    /// [`Dataset::fingerprint`] of the training data.
    pub train_data: u64,
}

/// The labels of the classification run in `dir` (from its `run.json`): a
/// LoRA classifier's adapter holds its head but not the names of its labels.
pub(crate) fn run_labels(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join(super::out_dir::RUN_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {}: the labels of a LoRA classifier come from the run that trained it",
            path.display()
        )
    })?;
    let record: RunRecord =
        serde_json::from_str(&text).with_context(|| format!("{} is not a run record", path.display()))?;
    let c = record.settings.classify.with_context(|| {
        format!(
            "{} was not a classification run (gpt train --task classify)",
            dir.display()
        )
    })?;
    Ok(c.labels)
}

/// A run ready to train: new, fine-tuning, or resumed.
pub struct Start {
    /// Its settings and data, as each checkpoint records them.
    pub record: RunRecord,
    pub model: Gpt,
    pub state: TrainState,
    pub data: Prepared,
    pub out: PathBuf,
}

/// A new run, from random weights or from `--init`'s checkpoint, on `ranks`
/// processes (`lead`: rank 0, which owns the output directory).
pub fn fresh(a: &TrainArgs, ranks: usize, lead: bool) -> Result<Start> {
    let preset = a.preset.settings();
    let mut s = settings(a, if a.init.is_some() { preset.fine_tuning() } else { preset })?;
    s.ranks = ranks;
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("out"));
    if lead && !a.overwrite {
        super::out_dir::check_free(&out)?;
    }
    if let Some(dir) = s.data.as_deref().filter(|d| d.is_dir()) {
        ensure!(
            is_prepared(dir),
            "--data {}: a directory without train.bin; give a text file or a directory made by `gpt prepare`",
            dir.display()
        );
        ensure!(
            a.val_fraction.is_none(),
            "--val-fraction: {} holds its validation split in val.bin (`gpt prepare --val-fraction` sets it); drop --val-fraction",
            dir.display()
        );
        if a.tokenizer.is_none() && s.init.is_none() {
            s.tokenizer = prepared_tokenizer(dir)?;
        }
    }
    // Recorded for --resume, which may run from another directory.
    s.data = s.data.map(|p| p.canonicalize().unwrap_or(p));
    if a.task == super::Task::Classify {
        s.classify = Some(classify_settings(a, &s)?);
        s.num_samples = 0;
    }
    if a.task == super::Task::Sft {
        ensure!(
            s.init.is_some(),
            "--task sft fine-tunes a trained model: give --init MODEL (gpt2, a model directory or a .gguf file)"
        );
        let val_data = a.val_data.clone().map(|p| p.canonicalize().unwrap_or(p));
        s.sft = Some(super::Sft { val_data });
    }
    let mut model = None;
    let mut tok = None;
    let mut chat = None;
    if let Some(spec) = &s.init {
        ensure!(
            a.n_layer.is_none() && a.n_embd.is_none() && a.n_head.is_none() && a.tokenizer.is_none(),
            "--init {spec} brings its own size and tokenizer: drop --n-layer/--n-embd/--n-head/--tokenizer"
        );
        let crate::model::Loaded {
            model: m,
            tokenizer: t,
            chat: c,
            ..
        } = crate::model::load(
            spec,
            &crate::model::LoadOptions {
                classifier: s.classify.is_some(),
                // QLoRA: an adapter's run (LoRA, bottleneck) keeps a quantized (GGUF) base's matrices quantized, frozen
                // (it saves the adapter alone, and --resume loads the base again). Any other
                // run trains or saves them: dequantized, so that its directory stands alone.
                dtype: match s.adapter() {
                    Some(_) => crate::model::Dtype::Stored,
                    None => crate::model::Dtype::F32,
                },
                ..Default::default()
            },
        )?;
        (s.n_layer, s.n_embd, s.n_head) = (m.config.n_layer, m.config.n_embd, m.config.n_head);
        s.tokenizer = t.name().to_string();
        (model, tok, chat) = (Some(m), Some(t), Some(c));
    }
    let bpe = match &tok {
        Some(t) => !matches!(t, Tokenizer::Char(_)),
        None => s.tokenizer != "char",
    };
    if bpe {
        // Windows of a stream are long: fewer rows and samples unless asked.
        s.batch_size = a.batch_size.unwrap_or(8);
        s.num_samples = a.num_samples.unwrap_or(3);
    }
    let data = prepare(&s, tok, model.as_ref().map(|m: &Gpt| m.config.n_ctx), chat.as_ref())?;
    s.n_ctx = Some(data.n_ctx);
    let config = match &model {
        Some(m) => m.config.clone(),
        None => {
            let vocab = data.tok.vocab_size();
            GptConfig {
                n_ctx: data.n_ctx,
                n_embd: s.n_embd,
                n_head: s.n_head,
                n_kv_head: s.n_head,
                n_layer: s.n_layer,
                n_inner: 4 * s.n_embd,
                ..if s.microgpt {
                    GptConfig::microgpt(vocab)
                } else {
                    GptConfig::gpt2(vocab, data.n_ctx, s.n_embd, s.n_head, s.n_layer)
                }
            }
        }
    };
    config.validate()?;
    check_memory(&s, &config)?;
    let mut model = model.unwrap_or_else(|| Gpt::new(config, s.init_weights, &mut rng(s.seed)));
    if let Some(c) = s.classify.as_ref().filter(|c| c.labels != model.config.labels) {
        let pad = pad_token_id(&model.config, &data.tok);
        model = model.into_classifier(c.labels.clone(), pad, &mut rng(s.seed))?;
    }
    if let Some(spec) = &mut s.lora {
        canonical(&mut spec.base);
        if spec.targets.is_empty() {
            spec.targets = LoraSpec::default_targets(model.config.arch);
        }
        model.add_lora(spec, &mut rng(s.seed))?;
    }
    if let Some(spec) = &mut s.adapter_size {
        canonical(&mut spec.base);
        model.add_bottleneck_adapters(spec, &mut rng(s.seed))?;
    }
    freeze(&mut model, &s)?;
    let state = TrainState::new(&model, train_options(&s, None, Progress::Quiet).adamw);
    let train_data = data.train.fingerprint();
    Ok(Start {
        record: RunRecord {
            settings: s,
            train_data,
        },
        model,
        state,
        data,
        out,
    })
}

/// `base` as an absolute path where it names one: recorded for --resume,
/// which loads the base again (maybe from another directory).
fn canonical(base: &mut String) {
    if let Ok(path) = Path::new(base.as_str()).canonicalize() {
        *base = path.to_string_lossy().into_owned();
    }
}

/// The run saved in `dir`, continued with its own settings and data on `ranks` processes.
pub fn resume(a: &TrainArgs, dir: &Path, ranks: usize) -> Result<Start> {
    let unreadable = "the checkpoint's run settings are unreadable";
    // A LoRA run's chat template is its base's.
    let mut base_chat = None;
    let (model, state, record) = load_checkpoint(dir, |run| {
        let record: RunRecord = serde_json::from_str(run).context(unreadable)?;
        let Some(spec) = record.settings.adapter() else {
            let mut model = Gpt::load(dir)?;
            freeze(&mut model, &record.settings)?;
            return Ok(model);
        };
        // An adapter's run saves the adapter: the base comes from where it started.
        let loaded = crate::model::load(spec.base(), &Default::default()).with_context(|| {
            format!(
                "loading the base model {} of the {} run in {}",
                spec.base(),
                spec.what(),
                dir.display()
            )
        })?;
        let mut model = loaded.model;
        base_chat = Some(loaded.chat);
        if let Some(c) = &record.settings.classify {
            // The head comes from the adapter (peft's modules_to_save).
            let pad = pad_token_id(&model.config, &loaded.tokenizer);
            model = model.into_classifier(c.labels.clone(), pad, &mut rng(0))?;
        }
        model.add_adapter(&Adapter::load(dir)?)?;
        model.train_adapters_only();
        Ok(model)
    })?;
    let record: RunRecord = serde_json::from_str(&record).context(unreadable)?;
    if let Some(n) = a.stop_at {
        ensure!(
            n > state.step,
            "--stop-at {n}: the checkpoint is already at step {}; give a later step",
            state.step
        );
    }
    let saved = &record.settings;
    let mut s = settings(a, saved.clone())?;
    s.ranks = ranks;
    check_same_run(saved, &s)?;
    // Each step draws the global batch's rows: another count would resume on other data (or
    // spend ages skipping rows).
    ensure!(
        state.step as u128 * saved.global_batch() == state.rows_drawn as u128,
        "the checkpoint in {} is corrupt: {} steps of {} rows draw {} rows, but it records {}",
        dir.display(),
        state.step,
        saved.global_batch(),
        state.step as u128 * saved.global_batch(),
        state.rows_drawn
    );
    check_same_global_batch(saved, &s)?;
    ensure!(
        s.steps > state.step,
        "the checkpoint is at step {} of {}: give --steps above {} to train further",
        state.step,
        record.settings.steps,
        state.step
    );
    if let Some(out) = a.out.as_ref().filter(|o| o.as_path() != dir) {
        bail!(
            "--resume {} continues in its own directory: drop --out {}",
            dir.display(),
            out.display()
        );
    }
    let tok = tokenizer_for(&model.config, dir)?;
    let chat = match base_chat {
        Some(chat) => Some(chat),
        // An instruction-tuning run saves the template it rendered with.
        None if s.sft.is_some() => Some(ChatSpec::from_dir(dir, &model.config, &tok)?),
        None => None,
    };
    let mut data = prepare(&s, Some(tok), Some(model.config.n_ctx), chat.as_ref())?;
    check_memory(&s, &model.config)?;
    let train_data = data.train.fingerprint();
    ensure!(
        train_data == record.train_data,
        "the training data is not the run's (its tokens differ): resume with the same --data, or start a new run with --init {}",
        dir.display()
    );
    data.notes
        .push(format!("resuming {} at step {}", dir.display(), state.step));
    if s.steps != record.settings.steps {
        data.notes.push(format!(
            "note: the run was planned for {} steps; the learning-rate schedule now spans {}",
            record.settings.steps, s.steps
        ));
    }
    Ok(Start {
        record: RunRecord {
            settings: s,
            train_data,
        },
        model,
        state,
        data,
        out: dir.to_path_buf(),
    })
}

/// The labels and validation file of a `--task classify` run, checked.
fn classify_settings(a: &TrainArgs, s: &Settings) -> Result<super::Classify> {
    ensure!(
        s.init.is_some(),
        "--task classify fine-tunes a trained model: give --init MODEL (gpt2, or a model directory)"
    );
    let path = s
        .data
        .as_deref()
        .context("--task classify needs --data FILE: `label<TAB>text` rows under a header line, or JSONL {\"text\":…,\"label\":…}")?;
    let examples = crate::data::labelled::read_examples(path, true)?;
    let labels = crate::data::labelled::label_set(path, &examples, a.labels.as_deref())?;
    let val_data = a.val_data.clone().map(|p| p.canonicalize().unwrap_or(p));
    Ok(super::Classify { labels, val_data })
}

/// The id a classifier pads with: the config's `pad_token_id`, else its end
/// of text (`transformers`' usual choice for GPT-2 and Llama), else the last id.
pub(crate) fn pad_token_id(c: &GptConfig, tok: &Tokenizer) -> u32 {
    c.pad_token_id
        .or(c.eos_token_id.first().copied())
        .or(tok.document_separator())
        .unwrap_or(c.vocab_size as u32 - 1)
}

/// Freezes what the run does not train (`--train-layers`).
fn freeze(model: &mut Gpt, s: &Settings) -> Result<()> {
    match s.train_layers {
        Some(n) => model.train_last_layers(n),
        None => Ok(()),
    }
}

/// Checkpoints and samples during the run.
pub struct RunHooks<'a> {
    pub out: &'a Path,
    pub record: String,
    pub data: &'a Prepared,
    pub s: &'a Settings,
}

impl TrainHooks for RunHooks<'_> {
    fn save(&mut self, model: &Gpt, state: &TrainState, moments: &mut Moments) -> Result<()> {
        save_checkpoint(self.out, model, state, moments, &self.record, self.s.adapter().as_ref())
            .with_context(|| {
            format!(
                "saving the checkpoint of step {} failed (the last good one in {} is intact; free space and continue with --resume)",
                state.step,
                self.out.display()
            )
        })?;
        plot_log(self.out)
    }

    fn sample(&mut self, model: &Gpt) -> Option<String> {
        (self.s.num_samples > 0).then(|| match samples(model, self.data, self.s, 1) {
            Ok(texts) => texts.join("\n"),
            Err(e) => format!("(no sample: {e:#})"),
        })
    }

    fn stop_requested(&self) -> bool {
        super::interrupt::requested()
    }
}

/// The run's log: a fresh one, or a resumed run's cut back to its checkpoint's step.
pub fn open_log(out: &Path, resumed_at: usize) -> Result<File> {
    let path = out.join(crate::train::plot::LOG_FILE);
    if resumed_at > 0 {
        let text = match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            read => read.with_context(|| {
                format!(
                    "reading {} to continue it (not UTF-8 text? move it aside to start a new log)",
                    path.display()
                )
            })?,
        };
        let kept: String = text
            .lines()
            .filter(|l| {
                let v: Option<serde_json::Value> = serde_json::from_str(l).ok();
                v.and_then(|v| v["step"].as_u64())
                    .is_some_and(|s| s as usize <= resumed_at)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        write_atomic(&path, kept.as_bytes())?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(resumed_at > 0)
        .write(true)
        .truncate(resumed_at == 0)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    Ok(file)
}
