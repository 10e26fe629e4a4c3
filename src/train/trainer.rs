//! The training loop: batches in, AdamW steps out, with gradient
//! accumulation, periodic validation and checkpoints, a progress bar and one
//! JSON line per step. A run is a pure function of its options, its seed and
//! the [`TrainState`] it starts from, so a resumed run continues exactly.

use super::dist::{all_gather_shards, all_reduce_buckets, Comm, EveryRank, Single};
use super::eval::{evaluate, evaluate_with_accuracy};
use super::optim::{clip_grad_norm, AdamW, AdamWConfig, Moments};
use super::progress::{Display, Progress, StepView};
use super::schedule::Schedule;
use crate::autograd::{Grads, Graph, Workspace};
use crate::data::batch::Batch;
use crate::data::dataset::Dataset;
use crate::model::Gpt;
use crate::tensor::linear::Precision;
use crate::tensor::rng;
use anyhow::{bail, Result};
use std::io::Write;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq)]
pub struct TrainOptions {
    /// Length of the whole run (the learning-rate schedule spans it).
    pub steps: usize,
    /// Stop after this step (with a checkpoint) though the schedule runs to `steps`: train in sessions.
    pub stop_at: Option<usize>,
    /// Rows per micro-batch, each of up to `n_ctx` tokens (on each rank:
    /// a step takes `ranks x grad_accum x batch_size` rows).
    pub batch_size: usize,
    /// Tokens per row (at most the model's `n_ctx`).
    pub n_ctx: usize,
    /// Micro-batches whose gradients are averaged into one optimizer step.
    pub grad_accum: usize,
    /// Several documents per row (no padding waste) instead of one.
    pub pack: bool,
    pub schedule: Schedule,
    pub adamw: AdamWConfig,
    pub grad_clip: Option<f32>,
    /// Dropout probability on the embeddings and each residual branch (0 = off).
    pub dropout: f32,
    /// How linear layers' GEMMs round their inputs (bf16: mixed precision).
    pub precision: Precision,
    /// Validate every this many steps (and always at the end); 0 = only at the end.
    pub eval_every: usize,
    /// Checkpoint every this many steps (and always at the end); 0 = only at the end.
    pub save_every: usize,
    /// Show a sample every this many steps; 0 = never.
    pub sample_every: usize,
    pub seed: u64,
    pub progress: Progress,
    /// ZeRO stage 1 over several ranks: each keeps and updates only its shard of the optimizer state.
    pub zero: bool,
    /// Test hook: `Some((step, rank))` ends rank `rank`'s process at the start
    /// of step `step` without a word to its peers, as a crash would.
    pub kill_rank_at: Option<(usize, usize)>,
    /// Test hook: `Some((step, rank))` makes rank `rank`'s token embeddings NaN
    /// at the start of step `step`, so its loss is NaN there.
    pub nan_rank_at: Option<(usize, usize)>,
}

/// What carries over from one step to the next, and what a checkpoint saves
/// to resume: the step, the optimizer's moments, and how many rows the data
/// stream has given (the data order and dropout masks follow from the seed).
pub struct TrainState {
    pub step: usize,
    pub rows_drawn: u64,
    pub opt: AdamW,
}

impl TrainState {
    pub fn new(model: &Gpt, adamw: AdamWConfig) -> Self {
        TrainState {
            step: 0,
            rows_drawn: 0,
            opt: AdamW::new(adamw, &model.params),
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainReport {
    /// Training loss of every step of this run (on its own batch).
    pub losses: Vec<f32>,
    /// `(step, val_loss)` at each validation.
    pub val_losses: Vec<(usize, f32)>,
    /// Validation loss of the weights a fresh run starts from.
    pub start_val_loss: Option<f32>,
    /// Final loss on (up to as many documents as the validation set of) the training set.
    pub train_loss: Option<f32>,
    pub val_loss: Option<f32>,
    /// A classifier's accuracy on the validation texts at the last validation.
    pub val_accuracy: Option<f32>,
    pub seconds: f64,
    pub tokens: usize,
    /// Stopped early at [`TrainHooks::stop_requested`]'s word, with a checkpoint.
    pub interrupted: bool,
}

/// The dropout masks of shard `shard` of the micro-batch that starts at row
/// `row` of a run: one stream each, so a run can be replayed or resumed
/// exactly (with the same split of its batches into micro-batches and shards).
fn dropout_seed(seed: u64, row: u64, shard: usize) -> u64 {
    seed ^ (row + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (shard as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// Up to this many parameters a micro-batch is split by rows into one shard
/// per thread, each running the whole model on its rows: one fork-join per
/// step instead of several per op, and each core keeps its own activations in
/// its cache. A small model's ops are too small to split well, and a gradient
/// buffer per extra shard costs little; larger models split each op instead.
const MAX_SHARDED_PARAMS: usize = 1 << 22;

/// Buffers that training steps reuse: a workspace per shard of the batch,
/// gradients for every shard but the first (which adds into the step's own),
/// and the buffer of the collectives between ranks.
#[derive(Default)]
pub struct StepBuffers {
    ws: Vec<Workspace>,
    grads: Vec<Grads>,
    /// Each shard's mean loss in the current micro-batch.
    losses: Vec<f32>,
    comm: Vec<f32>,
}

impl StepBuffers {
    /// Shards for a micro-batch of `rows` rows.
    fn shards(model: &Gpt, rows: usize) -> usize {
        if model.params.count() > MAX_SHARDED_PARAMS {
            1
        } else {
            rayon::current_num_threads().clamp(1, rows.max(1))
        }
    }

    /// Buffers for `shards` shards, the extra gradients zeroed.
    fn prepare(&mut self, model: &Gpt, shards: usize) {
        self.ws.resize_with(shards.max(self.ws.len()), Workspace::default);
        self.losses.resize(self.ws.len(), 0.0);
        while self.grads.len() + 1 < shards {
            self.grads.push(model.params.zero_grads());
        }
        self.grads[..shards - 1].iter_mut().for_each(Grads::zero);
    }

    /// Forward and backward of `batch` in `shards` shards of rows, in
    /// parallel, adding into `grads` and the extra shards' gradients the
    /// gradient of its summed loss over `total` (the targets of the whole step,
    /// on every rank). Returns its summed loss; where a shard's is not finite,
    /// that shard computes no gradient.
    #[allow(clippy::too_many_arguments)]
    fn forward_backward(
        &mut self,
        model: &Gpt,
        grads: &mut Grads,
        batch: &Batch,
        shards: usize,
        total: f64,
        (dropout, precision): (f32, Precision),
        seed: impl Fn(usize) -> u64 + Sync,
    ) -> f64 {
        let rows = batch.b.div_ceil(shards);
        let range = |j: usize| (j * rows).min(batch.b)..((j + 1) * rows).min(batch.b);
        let count = |j: usize| {
            let r = range(j);
            Batch::count_targets(&batch.targets[r.start * batch.t..r.end * batch.t])
        };
        // Each shard's gradient is of its own mean loss: weighted by its share of the targets.
        let run = |j: usize, ws: &mut Workspace, grads: &mut Grads| {
            let weight = (count(j) as f64 / total) as f32;
            shard_step(model, ws, grads, batch, range(j), weight, (dropout, precision), seed(j))
        };
        let (ws0, ws) = self.ws[..shards].split_first_mut().expect("one shard at least");
        let (loss0, losses) = self.losses[..shards].split_first_mut().expect("one shard at least");
        rayon::scope(|s| {
            for (j, ((ws, grads), loss)) in ws.iter_mut().zip(&mut self.grads).zip(losses).enumerate() {
                s.spawn(move |_| *loss = run(j + 1, ws, grads));
            }
            *loss0 = run(0, ws0, grads);
        });
        (0..shards).map(|j| self.losses[j] as f64 * count(j) as f64).sum()
    }

    /// Adds the extra shards' gradients into `grads`, in shard order.
    fn reduce(&self, grads: &mut Grads, shards: usize) {
        use rayon::prelude::*;
        let extra = &self.grads[..shards - 1];
        grads.0.par_iter_mut().enumerate().for_each(|(p, g)| {
            for e in extra {
                g.iter_mut().zip(&e.0[p]).for_each(|(g, e)| *g += e);
            }
        });
    }
}

/// Forward and backward of rows `rows` of `batch`: adds `weight` x the
/// gradient of their mean loss into `grads` and returns that loss (not
/// finite: no backward).
#[allow(clippy::too_many_arguments)]
fn shard_step(
    model: &Gpt,
    ws: &mut Workspace,
    grads: &mut Grads,
    batch: &Batch,
    rows: std::ops::Range<usize>,
    weight: f32,
    (dropout, precision): (f32, Precision),
    seed: u64,
) -> f32 {
    let r = rows.start * batch.t..rows.end * batch.t;
    let mut g = Graph::new(&model.params, std::mem::take(ws));
    g.enable_dropout(dropout, rng(seed));
    g.set_precision(precision);
    let (tokens, pos, targets) = (&batch.tokens[r.clone()], &batch.pos[r.clone()], &batch.targets[r]);
    let loss_var = model.loss(&mut g, tokens, pos, rows.len(), targets);
    let loss = g.value(loss_var)[0];
    if loss.is_finite() {
        g.backward_from(loss_var, vec![weight], grads);
    }
    *ws = g.finish();
    loss
}

/// Why a step was not taken: a loss or gradient that is not finite, on `rank`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Diverged {
    pub rank: usize,
    /// Its loss: not finite, or finite with gradients that are not.
    pub loss: f32,
}

/// A step taken.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stepped {
    /// The mean loss over the step's targets on every rank.
    pub loss: f32,
    /// Those targets.
    pub targets: usize,
    /// The step's input tokens that are not padding (on every rank): what
    /// throughput counts, where a classifier or SFT step scores far fewer targets.
    pub tokens: usize,
    /// Time spent summing gradients and gathering parameters between ranks.
    pub comm: Duration,
}

/// One optimizer step: the gradient of the mean loss over `micro` on every
/// rank of `comm` (data parallelism and gradient accumulation: the mean over
/// all their targets; `first` numbers the first row of `micro` in the run,
/// for dropout), clipped, then AdamW with learning rate `lr` on this rank's
/// part of the parameters (all of them, or a ZeRO-1 shard gathered after).
/// Every rank calls it; a loss or gradient that is not finite on any rank
/// leaves the parameters untouched on all of them.
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    model: &mut Gpt,
    opt: &mut AdamW,
    grads: &mut Grads,
    bufs: &mut StepBuffers,
    micro: &[Batch],
    first: u64,
    lr: f32,
    opts: &TrainOptions,
    comm: &dyn Comm,
) -> Result<Stepped, Diverged> {
    let shards = StepBuffers::shards(model, micro.iter().map(|b| b.b).max().unwrap_or(1));
    bufs.prepare(model, shards);
    grads.zero();
    // The step's targets (the loss's denominator) and input tokens (throughput) on every rank.
    let mut counts = [
        micro.iter().map(Batch::n_targets).sum::<usize>() as f64,
        micro.iter().map(|b| b.n_tokens).sum::<usize>() as f64,
    ];
    comm.all_reduce_sum_f64(&mut counts);
    let total = counts[0].max(1.0);
    let mut row = first;
    let mut sum = 0.0;
    for batch in micro {
        let shards = shards.min(batch.b.max(1));
        let seed = |shard| dropout_seed(opts.seed, row, shard);
        sum += bufs.forward_backward(model, grads, batch, shards, total, (opts.dropout, opts.precision), seed);
        row += batch.b as u64;
        if !sum.is_finite() {
            break;
        }
    }
    bufs.reduce(grads, shards);
    // The summed loss, then which ranks saw a loss (1) or gradient (2) that is not finite.
    let mut stats = vec![0.0; 1 + comm.size()];
    stats[0] = sum;
    stats[1 + comm.rank()] = if !sum.is_finite() {
        1.0
    } else if !grads.is_finite() {
        2.0
    } else {
        0.0
    };
    comm.all_reduce_sum_f64(&mut stats);
    if let Some(rank) = (0..comm.size()).find(|&r| stats[1 + r] != 0.0) {
        let loss = if stats[1 + rank] == 1.0 {
            f32::NAN
        } else {
            (stats[0] / total) as f32
        };
        return Err(Diverged { rank, loss });
    }
    let start = Instant::now();
    all_reduce_buckets(comm, &mut grads.0, &mut bufs.comm);
    let mut comm_time = start.elapsed();
    if let Some(max) = opts.grad_clip {
        clip_grad_norm(grads, max);
    }
    opt.step(&mut model.params, grads, lr);
    if !opt.is_whole() {
        let start = Instant::now();
        let params = model.params.tensors.iter_mut().zip(&model.params.trainable);
        let mut tensors: Vec<&mut [f32]> = params.filter(|(_, &on)| on).map(|(t, _)| &mut t.data[..]).collect();
        all_gather_shards(comm, &mut tensors, &mut bufs.comm);
        comm_time += start.elapsed();
    }
    Ok(Stepped {
        loss: (stats[0] / total) as f32,
        targets: total as usize,
        tokens: counts[1] as usize,
        comm: comm_time,
    })
}

/// What a run does beside training: checkpoints and sample text. Only rank 0 calls them.
pub trait TrainHooks {
    /// Called every `save_every` steps and at the end, after the log is flushed:
    /// write a checkpoint that resumes exactly, with `moments`, those of
    /// `state.opt` (a ZeRO-1 run's streamed from every rank).
    fn save(&mut self, _model: &Gpt, _state: &TrainState, _moments: &mut Moments) -> Result<()> {
        Ok(())
    }

    /// Called every `sample_every` steps: text to show, if any.
    fn sample(&mut self, _model: &Gpt) -> Option<String> {
        None
    }

    /// Asked after each step (on every rank): true ends the run there, with
    /// a checkpoint (after Ctrl-C, say).
    fn stop_requested(&self) -> bool {
        false
    }
}

/// No checkpoints, no samples.
pub struct NoHooks;
impl TrainHooks for NoHooks {}

/// Trains `model` in place from `state` (fresh or resumed) up to
/// `opts.stop_at` or `opts.steps`, in one process. `log` receives one JSON
/// object per step.
pub fn train(
    model: &mut Gpt,
    train_data: &Dataset,
    val_data: &Dataset,
    opts: &TrainOptions,
    state: &mut TrainState,
    log: &mut dyn Write,
    hooks: &mut dyn TrainHooks,
) -> Result<TrainReport> {
    train_with(model, train_data, val_data, opts, state, log, hooks, &Single)
}

/// [`train`] as one rank of `comm`: every rank starts from the same model
/// and state and takes its part of each step's rows; rank 0 alone logs,
/// validates, shows progress and calls the hooks.
#[allow(clippy::too_many_arguments)]
pub fn train_with(
    model: &mut Gpt,
    train_data: &Dataset,
    val_data: &Dataset,
    opts: &TrainOptions,
    state: &mut TrainState,
    log: &mut dyn Write,
    hooks: &mut dyn TrainHooks,
    comm: &dyn Comm,
) -> Result<TrainReport> {
    if train_data.is_empty() {
        bail!("no training data: nothing to predict");
    }
    let (rank, ranks, lead) = (comm.rank(), comm.size(), comm.rank() == 0);
    let end = opts.stop_at.unwrap_or(opts.steps).min(opts.steps);
    // A step's rows: `ranks` parts of `grad_accum` micro-batches of `batch_size` rows, in rank order.
    let accum = opts.grad_accum.max(1);
    let part = (accum * opts.batch_size) as u64;
    let mut batches = train_data.training_batches(opts.batch_size, opts.n_ctx, opts.pack, opts.seed);
    batches.skip_rows(state.rows_drawn);
    if opts.zero && state.opt.is_whole() {
        state.opt.keep_shard(rank, ranks);
    }
    let mut grads = model.params.zero_grads();
    let mut bufs = StepBuffers::default();
    let mut ws = Workspace::default(); // for validation
    let mut report = TrainReport::default();
    let mut last_saved = (state.step > 0).then_some(state.step);

    let progress = if lead { opts.progress } else { Progress::Quiet };
    let mut show = Display::new(progress, opts.steps, state.step);
    if lead && state.step == 0 && !val_data.is_empty() {
        report.start_val_loss = evaluate(model, val_data, opts.n_ctx, &mut ws);
        report.start_val_loss.inspect(|&v| show.start(0, v));
    }
    let start = Instant::now();
    for step in state.step..end {
        if opts.kill_rank_at == Some((step + 1, rank)) {
            eprintln!("rank {rank}: ending at step {} as GPT_TEST_KILL_RANK asks", step + 1);
            std::process::exit(1);
        }
        if opts.nan_rank_at == Some((step + 1, rank)) {
            model.params.tensors[0].data.fill(f32::NAN);
        }
        batches.skip_rows(rank as u64 * part);
        let micro: Vec<Batch> = (0..accum)
            .map(|_| batches.next_batch().expect("training batches never end"))
            .collect();
        batches.skip_rows((ranks - 1 - rank) as u64 * part);
        let lr = opts.schedule.lr_at(step);
        let step_start = Instant::now();
        let first = state.rows_drawn + rank as u64 * part;
        let stepped = train_step(
            model,
            &mut state.opt,
            &mut grads,
            &mut bufs,
            &micro,
            first,
            lr,
            opts,
            comm,
        );
        let time = step_start.elapsed();
        let Stepped {
            loss,
            tokens,
            comm: comm_time,
            ..
        } = match stepped {
            Ok(s) => s,
            Err(Diverged { rank: bad, loss }) => {
                show.abandon();
                let kept = match last_saved {
                    Some(s) => format!("the last checkpoint (step {s}) is kept"),
                    None => "no checkpoint was written".to_string(),
                };
                let what = if loss.is_finite() { "gradients" } else { "loss" };
                let on = if ranks > 1 {
                    format!(" on rank {bad}")
                } else {
                    String::new()
                };
                bail!(EveryRank(format!(
                    "the {what} became {}{on} at step {}: training diverged ({kept}). Lower --lr (now {}) or clip gradients (--grad-clip)",
                    if loss.is_finite() { "infinite or NaN".to_string() } else { loss.to_string() },
                    step + 1,
                    opts.schedule.lr
                )));
            }
        };
        state.step = step + 1;
        state.rows_drawn += ranks as u64 * part;
        report.losses.push(loss);
        report.tokens += tokens;

        // Asked to stop (on any rank): save this step's checkpoint and nothing else.
        let mut stop = [f64::from(u8::from(hooks.stop_requested()))];
        comm.all_reduce_sum_f64(&mut stop);
        let stop = stop[0] > 0.0;
        let last = state.step == end;
        let every = |n: usize| n > 0 && state.step.is_multiple_of(n) && !stop;
        let periodic = every(opts.eval_every);
        if lead && every(opts.sample_every) && !last {
            if let Some(text) = hooks.sample(model) {
                show.println(&format!("--- sample at step {}:\n{text}\n---", state.step));
            }
        }
        let (val, accuracy) = if lead && !val_data.is_empty() && ((last && !stop) || periodic) {
            let v = evaluate_with_accuracy(model, val_data, opts.n_ctx, &mut ws);
            if let Some((v, _)) = v {
                report.val_losses.push((state.step, v));
            }
            (v.map(|v| v.0), v.map(|v| v.1).filter(|_| model.config.is_classifier()))
        } else {
            (None, None)
        };
        let seconds = time.as_secs_f64();
        let mut line = serde_json::json!({
            "step": state.step,
            "train_loss": loss,
            "lr": lr,
            "ms": (1e6 * seconds).round() / 1e3,
            "tokens_per_s": (tokens as f64 / seconds.max(1e-9)).round() as u64,
        });
        if let Some(v) = val {
            line["val_loss"] = v.into();
        }
        if let Some(a) = accuracy {
            line["val_accuracy"] = a.into();
            report.val_accuracy = Some(a);
            show.println(&format!("step {}: val accuracy {:.2}%", state.step, 100.0 * a));
        }
        if ranks > 1 {
            line["comm_ms"] = ((1e6 * comm_time.as_secs_f64()).round() / 1e3).into();
        }
        if lead {
            // A whole line in one write: a run killed at any moment leaves no partial line.
            log.write_all(format!("{line}\n").as_bytes())?;
        }
        if last || stop || (opts.save_every > 0 && state.step.is_multiple_of(opts.save_every)) {
            save(model, state, log, hooks, comm)?;
            last_saved = Some(state.step);
        }

        let view = StepView {
            step: state.step,
            loss,
            val,
            lr,
            time,
            tokens,
        };
        show.step(&view, last || stop);
        if stop {
            report.interrupted = true;
            break;
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    show.finish();
    log.flush()?;
    report.val_loss = report.val_losses.last().map(|&(_, v)| v);
    if lead && !report.interrupted {
        report.train_loss = evaluate(model, &train_data.prefix_like(val_data), opts.n_ctx, &mut ws);
    }
    Ok(report)
}

/// Rank 0 flushes the log and saves a checkpoint with the whole optimizer
/// state; under ZeRO-1 every rank streams its moments to it.
fn save(
    model: &Gpt,
    state: &TrainState,
    log: &mut dyn Write,
    hooks: &mut dyn TrainHooks,
    comm: &dyn Comm,
) -> Result<()> {
    let mut moments = Moments::new(&state.opt, comm);
    let saved = if comm.rank() == 0 {
        log.flush()
            .map_err(Into::into)
            .and_then(|()| hooks.save(model, state, &mut moments))
    } else {
        Ok(())
    };
    moments.finish();
    saved
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GptConfig, Init};
    use crate::train::dist::testing::ThreadRanks;
    use crate::train::schedule::Decay;

    fn options(steps: usize, batch_size: usize, n_ctx: usize) -> TrainOptions {
        TrainOptions {
            steps,
            stop_at: None,
            batch_size,
            n_ctx,
            grad_accum: 1,
            pack: true,
            schedule: Schedule {
                lr: 1e-2,
                min_lr: 1e-3,
                warmup: 10,
                steps,
                decay: Decay::Cosine,
            },
            adamw: AdamWConfig {
                beta1: 0.9,
                beta2: 0.99,
                eps: 1e-8,
                weight_decay: 0.1,
            },
            grad_clip: Some(1.0),
            dropout: 0.0,
            precision: Default::default(),
            eval_every: 0,
            save_every: 0,
            sample_every: 0,
            seed: 1,
            progress: Progress::Quiet,
            zero: false,
            kill_rank_at: None,
            nan_rank_at: None,
        }
    }

    /// Runs `opts` from `state`, returning the report and the log lines.
    fn run(model: &mut Gpt, data: &Dataset, opts: &TrainOptions, state: &mut TrainState) -> (TrainReport, Vec<String>) {
        let mut log = Vec::new();
        let report = train(model, data, data, opts, state, &mut log, &mut NoHooks).unwrap();
        (
            report,
            String::from_utf8(log).unwrap().lines().map(String::from).collect(),
        )
    }

    #[test]
    fn tiny_model_learns_a_tiny_corpus() {
        // BOS = 5. In "x 2 x" the letter after 2 repeats the first one, so it
        // can only be predicted by attending back. Best possible: ln 3 for the
        // first letter over 4 targets ≈ 0.27 per token; without working
        // attention gradients the repeat costs ln 3 too (≈ 0.55); a unigram
        // model scores ≈ 1.6.
        let docs: Vec<Vec<u32>> = vec![vec![5, 0, 2, 0, 5], vec![5, 1, 2, 1, 5], vec![5, 3, 2, 3, 5]];
        let mut model = Gpt::new(GptConfig::gpt2(6, 8, 16, 2, 1), Init::Gpt2, &mut rng(0));
        let opts = TrainOptions {
            eval_every: 50,
            adamw: AdamWConfig {
                weight_decay: 0.0,
                ..options(0, 0, 0).adamw
            },
            ..options(300, 3, 8)
        };
        let mut state = TrainState::new(&model, opts.adamw);
        let (report, log) = run(&mut model, &Dataset::Docs(docs), &opts, &mut state);
        let val = report.val_loss.unwrap();
        assert!(val < 0.4, "val loss {val}");
        assert_eq!(report.val_losses.len(), 6);
        let lines: Vec<serde_json::Value> = log.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 300);
        assert!(lines[49]["val_loss"].is_number() && lines[48].get("val_loss").is_none());
        assert!(lines[0]["lr"].as_f64().unwrap() > 0.0);
    }

    #[test]
    fn bf16_products_train_as_f32_within_their_rounding() {
        let ids: Vec<u32> = (0..2000).map(|i| (i * 7 % 13) as u32).collect();
        let data = Dataset::Stream(ids);
        // 8 rows of 8: 64 rows, past the few-rows path, so the forward's products are GEMMs too.
        let losses = |precision| {
            let mut model = Gpt::new(GptConfig::gpt2(13, 8, 32, 2, 2), Init::Gpt2, &mut rng(3));
            let opts = TrainOptions {
                precision,
                ..options(40, 8, 8)
            };
            let mut state = TrainState::new(&model, opts.adamw);
            let (_, log) = run(&mut model, &data, &opts, &mut state);
            let loss = |l: &String| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["train_loss"]
                    .as_f64()
                    .unwrap()
            };
            log.iter().map(loss).collect::<Vec<f64>>()
        };
        let (f32s, bf16s) = (losses(Precision::F32), losses(Precision::Bf16));
        assert_ne!(f32s, bf16s, "bf16 rounds the products' inputs");
        for (step, (a, b)) in f32s.iter().zip(&bf16s).enumerate() {
            assert!((a - b).abs() < 0.02 * a, "step {step}: f32 loss {a}, bf16 {b}");
        }
        assert!(bf16s[39] < 0.5 * bf16s[0], "bf16 learns: {} -> {}", bf16s[0], bf16s[39]);
    }

    #[test]
    fn stopping_and_continuing_is_the_same_run() {
        let ids: Vec<u32> = (0..400).map(|i| (i * 7 % 13) as u32).collect();
        let data = Dataset::Stream(ids);
        let opts = TrainOptions {
            dropout: 0.1,
            grad_accum: 2,
            save_every: 3,
            ..options(12, 2, 8)
        };
        let fresh = || Gpt::new(GptConfig::gpt2(13, 8, 16, 2, 2), Init::Gpt2, &mut rng(3));
        let mut straight = fresh();
        let mut state = TrainState::new(&straight, opts.adamw);
        let (_, log_straight) = run(&mut straight, &data, &opts, &mut state);

        let mut resumed = fresh();
        let mut state = TrainState::new(&resumed, opts.adamw);
        let first = TrainOptions {
            stop_at: Some(5),
            ..opts.clone()
        };
        let (_, mut log) = run(&mut resumed, &data, &first, &mut state);
        assert_eq!((state.step, state.rows_drawn), (5, 20));
        log.extend(run(&mut resumed, &data, &opts, &mut state).1);
        assert_eq!(resumed.params.tensors, straight.params.tensors);
        // The val loss at the stop is extra, and timings vary; every step's loss and lr agree.
        let strip = |l: &String| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            for key in ["val_loss", "ms", "tokens_per_s"] {
                v.as_object_mut().unwrap().remove(key);
            }
            v
        };
        assert_eq!(
            log.iter().map(strip).collect::<Vec<_>>(),
            log_straight.iter().map(strip).collect::<Vec<_>>()
        );
    }

    #[test]
    fn accumulating_two_halves_equals_one_batch() {
        let ids: Vec<u32> = (0..300).map(|i| (i * 5 % 11) as u32).collect();
        let data = Dataset::Stream(ids);
        let model = Gpt::new(GptConfig::gpt2(11, 8, 16, 2, 1), Init::Gpt2, &mut rng(4));
        let batch = data.training_batches(4, 8, true, 9).next_batch().unwrap();
        let half = |r: std::ops::Range<usize>| Batch {
            tokens: batch.tokens[r.start * 8..r.end * 8].to_vec(),
            targets: batch.targets[r.start * 8..r.end * 8].to_vec(),
            pos: batch.pos[r.start * 8..r.end * 8].to_vec(),
            b: r.len(),
            t: 8,
            n_tokens: r.len() * 8,
        };
        let opts = options(1, 4, 8);
        let step = |micro: &[Batch]| {
            let mut m = Gpt::from_params(model.config.clone(), model.params.clone());
            let mut opt = AdamW::new(opts.adamw, &m.params);
            let mut grads = m.params.zero_grads();
            let stepped = train_step(
                &mut m,
                &mut opt,
                &mut grads,
                &mut StepBuffers::default(),
                micro,
                0,
                1e-3,
                &opts,
                &Single,
            );
            (stepped.unwrap().loss, grads)
        };
        let (loss, grads) = step(std::slice::from_ref(&batch));
        let (loss2, grads2) = step(&[half(0..2), half(2..4)]);
        assert!((loss - loss2).abs() < 1e-6, "{loss} vs {loss2}");
        for (a, b) in grads.0.iter().flatten().zip(grads2.0.iter().flatten()) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn a_step_counts_its_input_tokens_apart_from_its_targets() {
        // Prompts 1 2 3 and 4 5 (not scored), responses 6 7 and 8 then EOS 10: 5 targets in 8 inputs (rows of 5).
        let f = false;
        let docs = vec![
            (vec![1, 2, 3, 6, 7, 10], vec![f, f, f, true, true, true]),
            (vec![4, 5, 8, 10], vec![f, f, true, true]),
        ];
        let batch = Dataset::Masked(docs)
            .training_batches(2, 6, false, 1)
            .next_batch()
            .unwrap();
        assert_eq!((batch.b, batch.t, batch.n_tokens), (2, 5, 8));
        let mut model = Gpt::new(GptConfig::gpt2(11, 8, 16, 2, 1), Init::Gpt2, &mut rng(4));
        let opts = options(1, 2, 6);
        let mut opt = AdamW::new(opts.adamw, &model.params);
        let mut grads = model.params.zero_grads();
        let mut bufs = StepBuffers::default();
        let stepped = train_step(
            &mut model,
            &mut opt,
            &mut grads,
            &mut bufs,
            &[batch],
            0,
            1e-3,
            &opts,
            &Single,
        );
        let stepped = stepped.unwrap();
        assert_eq!(
            (stepped.targets, stepped.tokens),
            (5, 8),
            "the loss over targets, tok/s over tokens"
        );
    }

    #[test]
    fn frozen_tensors_get_no_gradient_nor_moments_and_do_not_move() {
        let ids: Vec<u32> = (0..300).map(|i| (i * 5 % 11) as u32).collect();
        let data = Dataset::Stream(ids);
        let batch = data.training_batches(4, 8, true, 9).next_batch().unwrap();
        let opts = TrainOptions {
            grad_clip: None,
            ..options(1, 4, 8)
        };
        // Tied (GPT-2: the head is wte, so the backward reaches the input) and untied (microgpt's lm_head).
        let tied = GptConfig::gpt2(11, 8, 16, 2, 3);
        let untied = GptConfig {
            n_layer: 3,
            ..GptConfig::microgpt(11)
        };
        for (config, layers) in [(tied.clone(), 1), (tied, 0), (untied.clone(), 0), (untied, 2)] {
            let start = Gpt::new(config, Init::Normal(0.3), &mut rng(4));
            let step = |m: &mut Gpt| {
                let mut opt = AdamW::new(opts.adamw, &m.params);
                let mut grads = m.params.zero_grads();
                let mut bufs = StepBuffers::default();
                let batches = std::slice::from_ref(&batch);
                train_step(m, &mut opt, &mut grads, &mut bufs, batches, 0, 1e-3, &opts, &Single).unwrap();
                let moments: Vec<usize> = (0..m.params.tensors.len()).map(|i| opt.moments(i).0.len()).collect();
                (grads, moments)
            };
            let mut full = Gpt::from_params(start.config.clone(), start.params.clone());
            let (full_grads, _) = step(&mut full);
            let mut part = Gpt::from_params(start.config.clone(), start.params.clone());
            part.train_last_layers(layers).unwrap();
            assert!(part.params.trainable_count() < part.params.count());
            let (grads, moments) = step(&mut part);
            for (i, name) in part.params.names.iter().enumerate() {
                let (numel, trains) = (part.params.tensors[i].numel(), part.params.trainable[i]);
                let head = if part.config.tie_word_embeddings {
                    "wte."
                } else {
                    "lm_head."
                };
                let in_block = |b: usize| name.starts_with(&format!("h.{b}."));
                let expected = name.starts_with("ln_f.") || name.starts_with(head) || (3 - layers..3).any(in_block);
                assert_eq!(trains, expected, "{layers}: {name}");
                if trains {
                    assert_eq!(grads.0[i], full_grads.0[i], "{name}: the gradient of full training");
                    assert_eq!(moments[i], numel);
                    assert_ne!(part.params.tensors[i], start.params.tensors[i], "{name} trained");
                } else {
                    assert!(grads.0[i].is_empty() && moments[i] == 0, "{name}: frozen");
                    assert_eq!(part.params.tensors[i], start.params.tensors[i], "{name} moved");
                }
            }
        }
    }

    /// Keeps the last checkpoint's weights and optimizer moments.
    #[derive(Default)]
    struct KeepSaved(Vec<Vec<f32>>, Vec<Vec<f32>>);
    impl TrainHooks for KeepSaved {
        fn save(&mut self, model: &Gpt, _: &TrainState, moments: &mut Moments) -> Result<()> {
            self.0 = model.params.tensors.iter().map(|t| t.data.clone()).collect();
            self.1 = (0..moments.len())
                .map(|_| {
                    let mut tensor = Vec::new();
                    moments
                        .next(&mut |piece| {
                            tensor.extend_from_slice(piece);
                            Ok(())
                        })
                        .map(|()| tensor)
                })
                .collect::<std::io::Result<_>>()?;
            Ok(())
        }
    }

    #[test]
    fn two_ranks_with_and_without_zero_equal_one_process_with_both_parts() {
        let docs: Vec<Vec<u32>> = (0..40).map(|i| vec![9, i % 7, (i * 5) % 9, i % 4, 9]).collect();
        let data = Dataset::Docs(docs);
        let fresh = || Gpt::new(GptConfig::microgpt(10), Init::Gpt2, &mut rng(6));
        let run = |opts: &TrainOptions, comm: &dyn Comm| {
            let mut model = fresh();
            let mut state = TrainState::new(&model, opts.adamw);
            let mut saved = KeepSaved::default();
            let none = Dataset::Docs(vec![]);
            train_with(
                &mut model,
                &data,
                &none,
                opts,
                &mut state,
                &mut Vec::new(),
                &mut saved,
                comm,
            )
            .unwrap();
            saved
        };
        let one = run(&options(6, 4, 8), &Single);
        for zero in [false, true] {
            let opts = TrainOptions {
                zero,
                ..options(6, 2, 8)
            };
            let ranks: Vec<KeepSaved> = std::thread::scope(|s| {
                let threads: Vec<_> = ThreadRanks::new(2)
                    .into_iter()
                    .map(|comm| {
                        let (opts, run) = (&opts, &run);
                        s.spawn(move || run(opts, &comm))
                    })
                    .collect();
                threads.into_iter().map(|t| t.join().unwrap()).collect()
            });
            assert!(ranks[1].0.is_empty(), "rank 0 alone saves");
            let close = |a: &[Vec<f32>], b: &[Vec<f32>]| {
                let (a, b) = (a.concat(), b.concat());
                let largest = a.iter().fold(0.0f32, |m, x| m.max(x.abs()));
                let diff = a.iter().zip(&b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
                assert_eq!(a.len(), b.len());
                assert!(diff <= 1e-6 * largest, "zero {zero}: {:e}", diff / largest);
            };
            close(&ranks[0].0, &one.0);
            close(&ranks[0].1, &one.1);
        }
    }

    #[test]
    fn divergence_is_an_error_not_a_nan_model() {
        let docs: Vec<Vec<u32>> = vec![vec![2, 0, 1, 2]];
        let mut model = Gpt::new(GptConfig::gpt2(3, 4, 8, 2, 1), Init::Gpt2, &mut rng(0));
        model.params.tensors[0].data[0] = f32::NAN;
        let opts = options(3, 1, 4);
        let mut state = TrainState::new(&model, opts.adamw);
        struct CountSaves(usize);
        impl TrainHooks for CountSaves {
            fn save(&mut self, _: &Gpt, _: &TrainState, _: &mut Moments) -> Result<()> {
                self.0 += 1;
                Ok(())
            }
        }
        let mut saves = CountSaves(0);
        let (train_data, val_data) = (Dataset::Docs(docs), Dataset::Docs(vec![]));
        let err = train(
            &mut model,
            &train_data,
            &val_data,
            &opts,
            &mut state,
            &mut Vec::new(),
            &mut saves,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("diverged") && err.contains("no checkpoint"), "{err}");
        assert_eq!(saves.0, 0);
    }
}
