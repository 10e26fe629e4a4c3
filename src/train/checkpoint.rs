//! Resumable training checkpoints: the model plus the optimizer state of the
//! same step, each file written atomically and in an order that survives a
//! crash at any moment.

use super::optim::{AdamW, AdamWConfig, Moments};
use super::trainer::TrainState;
use crate::io::{map_file, write_safetensors_with};
use crate::model::{adapter_metadata, AdapterSpec, Gpt, ADAPTER_WEIGHTS_FILE};
use anyhow::{anyhow, ensure, Context, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// `dir/train_state-{step}.safetensors`: what resuming needs beyond the model.
pub fn train_state_path(dir: &Path, step: usize) -> PathBuf {
    dir.join(format!("train_state-{step}.safetensors"))
}

/// True for the name of a `train_state-STEP.safetensors` file.
pub fn is_train_state(name: &str) -> bool {
    name.starts_with("train_state-") && name.ends_with(".safetensors")
}

/// Saves a resumable checkpoint of step `state.step` in `dir`, `run` being
/// the run's settings (JSON), `moments` those of `state.opt` (streamed from
/// every rank under ZeRO-1): first the optimizer moments of the trainable
/// tensors for that step, then the model tagged with the step (a run that
/// trains an `adapter`: that alone), then older optimizer states
/// are removed. A crash at any moment leaves weights whose tag names a state
/// on disk.
pub fn save_checkpoint(
    dir: &Path,
    model: &Gpt,
    state: &TrainState,
    moments: &mut Moments,
    run: &str,
    adapter: Option<&AdapterSpec>,
) -> Result<()> {
    let opt = &state.opt;
    let params = &model.params;
    let trainable = params.names.iter().zip(&params.tensors).zip(&params.trainable);
    let layout: Vec<(String, Vec<usize>)> = trainable
        .filter(|(_, &on)| on)
        .flat_map(|((name, t), _)| {
            [("exp_avg", t), ("exp_avg_sq", t)].map(|(m, t)| (format!("{name}.{m}"), t.shape.clone()))
        })
        .collect();
    let metadata = HashMap::from([
        ("step".to_string(), state.step.to_string()),
        ("rows_drawn".to_string(), state.rows_drawn.to_string()),
        ("adam_t".to_string(), opt.t.to_string()),
        ("adamw".to_string(), serde_json::to_string(&opt.config)?),
        ("run".to_string(), run.to_string()),
    ]);
    write_safetensors_with(&train_state_path(dir, state.step), &layout, metadata, |w| {
        (0..moments.len()).try_for_each(|_| moments.next(&mut |piece| w.write_all(bytemuck::cast_slice(piece))))
    })?;
    let step = HashMap::from([("step".to_string(), state.step.to_string())]);
    match adapter {
        None => model.save_with(dir, step)?,
        Some(spec) => model.save_adapter(dir, spec, step)?,
    }
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_train_state(&name) && entry.path() != train_state_path(dir, state.step) {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Loads the checkpoint `dir` to resume it: the model, the training state
/// saved with it and the run's settings (JSON). `model_for` gives the model
/// of the run (whose settings it is given), its frozen tensors frozen: only
/// the trainable ones have moments.
pub fn load_checkpoint(dir: &Path, model_for: impl FnOnce(&str) -> Result<Gpt>) -> Result<(Gpt, TrainState, String)> {
    let not_resumable = || {
        format!(
            "{} is not a resumable checkpoint: `gpt train` saves one with model.safetensors and \
             train_state-STEP.safetensors (to fine-tune a finished model, use --init {0})",
            dir.display()
        )
    };
    // An adapter's run saves the adapter, not the model.
    let meta = if dir.join(ADAPTER_WEIGHTS_FILE).is_file() {
        adapter_metadata(dir)
    } else {
        Gpt::saved_metadata(dir)
    };
    let meta = meta.with_context(not_resumable)?;
    let step: usize = meta
        .get("step")
        .and_then(|s| s.parse().ok())
        .with_context(not_resumable)?;
    let path = train_state_path(dir, step);
    ensure!(path.is_file(), "{} is missing: {}", path.display(), not_resumable());
    let map = map_file(&path)?;
    let st =
        SafeTensors::deserialize(&map[..]).map_err(|e| anyhow!("{} is truncated or corrupt ({e})", path.display()))?;
    let (_, header) = SafeTensors::read_metadata(&map[..]).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let field = |key: &str| {
        meta.get(key)
            .with_context(|| format!("{} has no {key:?} in its metadata", path.display()))
    };
    let number = |key: &str| -> Result<u64> {
        let text = field(key)?;
        text.parse()
            .with_context(|| format!("{}: {key} {text:?} is not a count", path.display()))
    };
    ensure!(
        number("step")? == step as u64,
        "{} belongs to another step",
        path.display()
    );
    let config: AdamWConfig = serde_json::from_str(field("adamw")?)
        .with_context(|| format!("{}: the adamw settings are unreadable", path.display()))?;
    let run = field("run")?.clone();
    let model = model_for(&run)?;
    let mut opt = AdamW::new(config, &model.params);
    opt.t = number("adam_t")?;
    let params = &model.params;
    for (i, (name, t)) in params.names.iter().zip(&params.tensors).enumerate() {
        if !params.trainable[i] {
            continue;
        }
        let (m, v) = opt.moments_mut(i);
        for (suffix, dst) in [("exp_avg", m), ("exp_avg_sq", v)] {
            let key = format!("{name}.{suffix}");
            let view = st
                .tensor(&key)
                .with_context(|| format!("{} has no tensor {key}", path.display()))?;
            ensure!(
                view.dtype() == Dtype::F32 && view.shape() == t.shape,
                "{key} in {} has the wrong shape or dtype",
                path.display()
            );
            // Byte by byte: a tensor's data need not be 4-byte aligned in the file.
            for (d, b) in dst.iter_mut().zip(view.data().chunks_exact(4)) {
                *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
    }
    let rows_drawn = match meta.get("rows_drawn") {
        Some(_) => number("rows_drawn")?,
        // Written before `rows_drawn`: batches of the run's --batch-size rows.
        None => number("batches_drawn")?.saturating_mul(legacy_batch_rows(&run).unwrap_or(0)),
    };
    let state = TrainState { step, rows_drawn, opt };
    Ok((model, state, run))
}

/// `--batch-size` in the run record of a `gpt train` checkpoint.
fn legacy_batch_rows(run: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(run).ok()?["settings"]["batch_size"].as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::dist::Single;

    fn tiny_model() -> Gpt {
        use crate::model::{GptConfig, Init};
        Gpt::new(GptConfig::gpt2(7, 8, 8, 2, 1), Init::Gpt2, &mut crate::tensor::rng(0))
    }

    fn state_at(model: &Gpt, step: usize) -> TrainState {
        let config = AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        };
        let mut state = TrainState::new(model, config);
        (state.step, state.rows_drawn, state.opt.t) = (step, 2 * step as u64, step as u64);
        state.opt.moments_mut(1).0[0] = step as f32;
        state.opt.moments_mut(2).1[1] = 0.5;
        state
    }

    /// Saves `state_at(model, step)` as one process does.
    fn save_at(dir: &Path, model: &Gpt, step: usize, run: &str) -> Result<()> {
        let state = state_at(model, step);
        save_checkpoint(dir, model, &state, &mut Moments::new(&state.opt, &Single), run, None)
    }

    #[test]
    fn checkpoint_round_trips_and_keeps_only_its_own_state() {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model();
        save_at(dir.path(), &model, 3, "run-3").unwrap();
        save_at(dir.path(), &model, 6, "run-6").unwrap();
        assert!(!train_state_path(dir.path(), 3).exists(), "the older state is removed");
        let (loaded, state, run) = load_checkpoint(dir.path(), |_| Gpt::load(dir.path())).unwrap();
        assert_eq!(loaded.params.tensors, model.params.tensors);
        assert_eq!(
            (state.step, state.rows_drawn, state.opt.t, run.as_str()),
            (6, 12, 6, "run-6")
        );
        let expected = state_at(&model, 6).opt;
        for i in 0..model.params.tensors.len() {
            assert_eq!(state.opt.moments(i), expected.moments(i));
        }
        assert_eq!(state.opt.config.beta2, 0.95);
    }

    #[test]
    fn a_frozen_model_saves_and_restores_the_moments_of_its_trainable_tensors_only() {
        let dir = tempfile::tempdir().unwrap();
        let frozen = || {
            let mut model = tiny_model();
            model.train_last_layers(0).unwrap();
            model
        };
        let model = frozen();
        let mut state = TrainState::new(&model, state_at(&tiny_model(), 3).opt.config);
        (state.step, state.rows_drawn, state.opt.t) = (3, 6, 3);
        let trainable: Vec<usize> = (0..model.params.tensors.len())
            .filter(|&i| model.params.trainable[i])
            .collect();
        for &i in &trainable {
            let (m, v) = state.opt.moments_mut(i);
            m.iter_mut()
                .chain(v)
                .enumerate()
                .for_each(|(j, x)| *x = (i * 100 + j) as f32);
        }
        save_checkpoint(
            dir.path(),
            &model,
            &state,
            &mut Moments::new(&state.opt, &Single),
            "run",
            None,
        )
        .unwrap();
        let bytes = fs::read(train_state_path(dir.path(), 3)).unwrap();
        let saved = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(
            saved.len(),
            2 * trainable.len(),
            "moments of the trainable tensors only"
        );
        let (loaded, restored, _) = load_checkpoint(dir.path(), |_| Ok(frozen())).unwrap();
        assert_eq!(loaded.params.trainable, model.params.trainable);
        for i in 0..model.params.tensors.len() {
            assert_eq!(restored.opt.moments(i), state.opt.moments(i));
        }
    }

    #[test]
    fn a_crash_between_the_two_writes_resumes_the_last_whole_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model();
        save_at(dir.path(), &model, 4, "run").unwrap();
        // The next save wrote its optimizer state, then died before the model.
        let other = tempfile::tempdir().unwrap();
        save_at(other.path(), &model, 8, "run").unwrap();
        fs::copy(train_state_path(other.path(), 8), train_state_path(dir.path(), 8)).unwrap();
        let (_, state, _) = load_checkpoint(dir.path(), |_| Gpt::load(dir.path())).unwrap();
        assert_eq!(state.step, 4);
    }

    #[test]
    fn a_state_file_with_unaligned_tensors_loads() {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model();
        save_at(dir.path(), &model, 3, "run").unwrap();
        // One more byte of header (a space: still JSON) moves every tensor off 4-byte alignment.
        let path = train_state_path(dir.path(), 3);
        let bytes = fs::read(&path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let mut shifted = (n as u64 + 1).to_le_bytes().to_vec();
        shifted.extend_from_slice(&bytes[8..8 + n]);
        shifted.push(b' ');
        shifted.extend_from_slice(&bytes[8 + n..]);
        fs::write(&path, shifted).unwrap();
        let (_, state, _) = load_checkpoint(dir.path(), |_| Gpt::load(dir.path())).unwrap();
        let expected = state_at(&model, 3).opt;
        for i in 0..model.params.tensors.len() {
            assert_eq!(state.opt.moments(i), expected.moments(i));
        }
    }

    #[test]
    fn a_failed_save_keeps_the_last_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model();
        save_at(dir.path(), &model, 2, "run").unwrap();
        // As if the disk were full: the model's temp file cannot be written.
        fs::create_dir(dir.path().join(".model.safetensors.tmp")).unwrap();
        let err = save_at(dir.path(), &model, 5, "run").unwrap_err();
        assert!(format!("{err:#}").contains("untouched"), "{err:#}");
        let (_, state, _) = load_checkpoint(dir.path(), |_| Gpt::load(dir.path())).unwrap();
        assert_eq!(state.step, 2);
    }
}
