//! Training parity with PyTorch (llm.c's test_gpt2 for our trainer): from the
//! same tiny GPT-2 and the same ten batches, ten `train_step`s of AdamW give
//! PyTorch's losses, step-0 gradients and final weights: without clipping,
//! with clipping (on some steps), with each batch split into two accumulated
//! micro-batches, on rows of 150 tokens (attention's GEMM path, in blocks of
//! 64 queries), and on documents packed several to a row by `DocBatcher`
//! (each with its own positions, attending only to itself; PyTorch uses a
//! block-diagonal causal mask). So do tiny Llamas: untied, tied with
//! grouped-query attention, and on packed documents (rotary positions from
//! each document's start). The reference is tests/golden/train/, made by
//! scripts/gen_train_golden.py (PyTorch in float64 on the float32 start, so
//! it is exact to our precision).
//!
//! Tolerances:
//! - loss of every step: 1e-4 relative;
//! - gradients after step 0: 1e-4 max abs, relative to the largest |gradient|
//!   of the same tensor (per tensor: a small tensor's error cannot hide under
//!   another tensor's larger gradients);
//! - weights after ten steps: 1e-5 max abs. Adam moves a weight by at most
//!   about lr = 1e-3 per step (the largest total change here is 1e-2), so
//!   1e-5 is 1 % of one step; a wrong beta, epsilon, bias correction or decay
//!   rule moves weights by a good fraction of a step. PyTorch itself in
//!   float32 lands within 5e-7 of the reference (golden.json).
//!   The one exception is the attention keys' bias (the middle third of
//!   `c_attn.bias`): its gradient is exactly zero in exact arithmetic, so in
//!   float32 it is rounding noise that Adam scales up to steps of about lr,
//!   in PyTorch float32 as much as in ours (2e-3 from the reference there).
//!   It does not change the loss; the test only bounds how far it moves.

mod common;
use common::golden::Optimizer;
use gpt::data::batch::{Batch, Batches, DocBatcher};
use gpt::model::{Adapter, Gpt};
use gpt::train::dist::Single;
use gpt::train::optim::AdamW;
use gpt::train::{train_step, StepBuffers, TrainOptions};
use safetensors::SafeTensors;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const LOSS_TOL: f64 = 1e-4;
const GRAD_TOL: f32 = 1e-4;
const PARAM_TOL: f32 = 1e-5;

#[derive(Deserialize)]
struct Golden {
    optimizer: Optimizer,
    /// Each data set, step by step: token rows `[step][row][T + 1]` (inputs
    /// are the first `T`, targets the last `T`), or documents to pack
    /// `[step][document][tokens]`.
    data: HashMap<String, Vec<Vec<Vec<u32>>>>,
    runs: HashMap<String, Run>,
}

#[derive(Deserialize)]
struct Run {
    /// The start: a checkpoint folder.
    init: String,
    /// The key of its steps' data in [`Golden::data`].
    data: String,
    /// The data are documents, packed into this many rows of at most the model's `n_ctx`.
    packed_rows: Option<usize>,
    grad_clip: Option<f32>,
    /// PyTorch's gradients after step 0, unclipped: a safetensors file.
    grads0: String,
    losses: Vec<f64>,
    /// Global gradient norm of each step, before clipping.
    grad_norms: Vec<f64>,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/train")
}

fn golden() -> Golden {
    serde_json::from_str(&std::fs::read_to_string(dir().join("golden.json")).unwrap()).unwrap()
}

fn load(sub: &str) -> Gpt {
    Gpt::load(&dir().join(sub)).unwrap_or_else(|e| panic!("loading {sub}: {e:#}"))
}

/// PyTorch's gradients after step 0 (before clipping), by parameter name.
fn reference_grads0(path: &Path) -> HashMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let data = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (name, data)
        })
        .collect()
}

/// `rows` as `parts` micro-batches of equal size (gradient accumulation: the mean of
/// their mean losses is the mean loss of the whole batch).
fn micro_batches(rows: &[Vec<u32>], parts: usize) -> Vec<Batch> {
    assert_eq!(rows.len() % parts, 0);
    rows.chunks(rows.len() / parts).map(batch).collect()
}

fn batch(rows: &[Vec<u32>]) -> Batch {
    let t = rows[0].len() - 1;
    Batch {
        tokens: rows.iter().flat_map(|r| r[..t].to_vec()).collect(),
        targets: rows.iter().flat_map(|r| r[1..].to_vec()).collect(),
        pos: rows.iter().flat_map(|_| 0..t as u32).collect(),
        b: rows.len(),
        t,
        n_tokens: rows.len() * t,
    }
}

/// The documents of one step packed as training packs them: one batch of at most `rows` rows.
fn packed(docs: &[Vec<u32>], rows: usize, n_ctx: usize) -> Batch {
    let mut batcher = DocBatcher::new(docs.to_vec(), rows, n_ctx, true, None);
    let batch = batcher.next_batch().unwrap();
    assert!(
        batcher.next_batch().is_none(),
        "the golden step's documents fill more than one batch"
    );
    batch
}

/// Each step's micro-batches for `run`.
fn steps(g: &Golden, run: &Run, n_ctx: usize, grad_accum: usize) -> Vec<Vec<Batch>> {
    let data = &g.data[&run.data];
    match run.packed_rows {
        Some(rows) => {
            assert_eq!(grad_accum, 1, "packed steps are one batch each");
            data.iter().map(|docs| vec![packed(docs, rows, n_ctx)]).collect()
        }
        None => data.iter().map(|rows| micro_batches(rows, grad_accum)).collect(),
    }
}

fn options(g: &Golden, run: &Run, steps: &[Vec<Batch>], grad_accum: usize) -> TrainOptions {
    let n_ctx = steps.iter().flatten().map(|b| b.t).max().unwrap();
    TrainOptions {
        pack: run.packed_rows.is_some(),
        grad_clip: run.grad_clip,
        ..g.optimizer.options(steps.len(), steps[0][0].b, n_ctx, grad_accum)
    }
}

/// Max abs difference relative to the largest |want| (absolute where `want` is all zeros:
/// a LoRA A's first gradient, while B is zero).
fn rel_to_largest(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let largest = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let diff = got.iter().zip(want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    if largest == 0.0 {
        diff
    } else {
        diff / largest
    }
}

/// The element range of `name` that is the attention keys' bias (see the module docs).
fn key_bias(name: &str, n_embd: usize) -> std::ops::Range<usize> {
    if name.ends_with("attn.c_attn.bias") {
        n_embd..2 * n_embd
    } else {
        0..0
    }
}

/// What a run measured against the reference.
#[derive(Default, Debug)]
struct Figures {
    loss_max_rel: f64,
    grad0_max_rel: f32,
    params_max_abs: f32,
    key_bias_max_abs: f32,
    /// Tensors that stayed frozen (bit for bit).
    frozen: usize,
}

/// Runs the golden run `name` with `train_step` from its start, each batch in
/// `grad_accum` micro-batches, and checks it step by step.
fn check_run(name: &str, grad_accum: usize) -> Figures {
    let g = golden();
    let run = &g.runs[name];
    check(
        name,
        &g,
        run,
        &dir(),
        load(&run.init),
        load(&run.init),
        load(name),
        grad_accum,
    )
}

/// Trains `model` (its frozen tensors frozen) as the golden `run` says, on
/// `g`'s data, each batch in `grad_accum` micro-batches, and checks it step
/// by step against the reference (its step-0 gradients in `golden_dir`):
/// then its trainable tensors against `want_final`, and its frozen ones bit
/// for bit against `init`, the same start.
#[allow(clippy::too_many_arguments)]
fn check(
    name: &str,
    g: &Golden,
    run: &Run,
    golden_dir: &Path,
    mut model: Gpt,
    init: Gpt,
    want_final: Gpt,
    grad_accum: usize,
) -> Figures {
    let steps = steps(g, run, model.config.n_ctx, grad_accum);
    let opts = options(g, run, &steps, grad_accum);
    let mut opt = AdamW::new(opts.adamw, &model.params);
    let mut grads = model.params.zero_grads();
    let mut bufs = StepBuffers::default();
    let mut fig = Figures::default();

    for (step, micro) in steps.iter().enumerate() {
        let lr = opts.schedule.lr_at(step);
        let first = (step * micro.iter().map(|b| b.b).sum::<usize>()) as u64;
        let stepped = train_step(
            &mut model, &mut opt, &mut grads, &mut bufs, micro, first, lr, &opts, &Single,
        );
        let loss = stepped.expect("a finite step").loss;
        let want = run.losses[step];
        let rel = (loss as f64 - want).abs() / want.abs();
        assert!(
            rel <= LOSS_TOL,
            "{name}: step {step}: loss {loss} vs PyTorch {want} ({rel:e} relative)"
        );
        fig.loss_max_rel = fig.loss_max_rel.max(rel);

        // After a clipping step the gradients have exactly the threshold's norm.
        if let Some(clip) = run.grad_clip.filter(|&c| run.grad_norms[step] > c as f64) {
            let norm = grads.norm();
            assert!(
                (norm - clip).abs() <= 1e-5 * clip,
                "{name}: step {step}: clipped norm {norm}, want {clip}"
            );
        }
        if step == 0 {
            // `grads` holds what the optimizer used: PyTorch's gradients, clipped as PyTorch clips them.
            let scale = run
                .grad_clip
                .map_or(1.0, |c| (c as f64 / (run.grad_norms[0] + 1e-6)).min(1.0)) as f32;
            let want = reference_grads0(&golden_dir.join(&run.grads0));
            let trainable = model.params.trainable.iter().filter(|&&t| t).count();
            assert_eq!(want.len(), trainable, "{name}: the reference's trainable tensors");
            for (i, (pname, got)) in model.params.names.iter().zip(&grads.0).enumerate() {
                if !model.params.trainable[i] {
                    assert!(got.is_empty(), "{name}: frozen {pname} has a gradient");
                    continue;
                }
                let want: Vec<f32> = want[pname].iter().map(|x| x * scale).collect();
                let rel = rel_to_largest(got, &want);
                assert!(
                    rel <= GRAD_TOL,
                    "{name}: step-0 gradient of {pname}: {rel:e} of its largest"
                );
                fig.grad0_max_rel = fig.grad0_max_rel.max(rel);
            }
        }
    }

    let n_embd = model.config.n_embd;
    let n_steps = steps.len() as f32;
    let params = model.params.names.iter().zip(&model.params.tensors);
    let expected = want_final.params.tensors.iter().zip(&init.params.tensors);
    for (i, ((pname, got), (want, start))) in params.zip(expected).enumerate() {
        assert_eq!(pname, &init.params.names[i]);
        if !model.params.trainable[i] {
            let bits = |t: &gpt::tensor::Tensor| t.data.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert!(bits(got) == bits(start), "{name}: frozen {pname} moved");
            fig.frozen += 1;
            continue;
        }
        let keys = key_bias(pname, n_embd);
        for (i, ((a, b), s)) in got.data.iter().zip(&want.data).zip(&start.data).enumerate() {
            let d = (a - b).abs();
            if keys.contains(&i) {
                // Noise, bounded by what Adam can move it: about lr a step.
                assert!(
                    (a - s).abs() <= 1.5 * opts.schedule.lr * n_steps,
                    "{name}: {pname}[{i}] moved {}",
                    a - s
                );
                fig.key_bias_max_abs = fig.key_bias_max_abs.max(d);
            } else {
                assert!(d <= PARAM_TOL, "{name}: final {pname}[{i}] = {a}, PyTorch {b}");
                fig.params_max_abs = fig.params_max_abs.max(d);
            }
        }
    }
    // Positions no token had never get a gradient nor decay: they must not move at all.
    if let Some(wpe) = model.params.find("wpe.weight").filter(|w| model.params.trainable[w.0]) {
        let used = steps.iter().flatten().flat_map(|b| &b.pos).max().unwrap() + 1;
        let (got, start) = (&model.params.get(wpe).data, &init.params.get(wpe).data);
        let unused = used as usize * n_embd..;
        assert!(unused.start < got.len(), "{name}: every position is used");
        assert_eq!(got[unused.clone()], start[unused], "{name}: unused wpe rows moved");
    }
    println!("{name} in {grad_accum} micro-batch(es): {fig:?}");
    fig
}

#[test]
fn ten_adamw_steps_match_pytorch() {
    check_run("plain", 1);
}

#[test]
fn ten_steps_accumulated_over_two_micro_batches_match_pytorch() {
    check_run("plain", 2);
}

#[test]
fn ten_adamw_steps_with_gradient_clipping_match_pytorch() {
    let g = golden();
    let run = &g.runs["clip"];
    let clip = run.grad_clip.unwrap() as f64;
    // The golden run clips on some steps and not on others.
    assert!(run.grad_norms.iter().any(|&n| n > clip) && run.grad_norms.iter().any(|&n| n < clip));
    check_run("clip", 1);
}

#[test]
fn ten_adamw_steps_on_rows_of_150_tokens_match_pytorch() {
    // Attention takes its GEMM path from 64 queries on, in blocks of 64:
    // 150 gives three blocks, the last one partial.
    let g = golden();
    let t = g.data[&g.runs["long"].data][0][0].len() - 1;
    assert!(t > 128 && !t.is_multiple_of(64), "T = {t}");
    check_run("long", 1);
}

#[test]
fn ten_adamw_steps_on_packed_documents_match_pytorch_with_a_block_diagonal_mask() {
    let g = golden();
    let run = &g.runs["packed"];
    let n_ctx = load(&run.init).config.n_ctx;
    let batches: Vec<Batch> = steps(&g, run, n_ctx, 1).into_iter().flatten().collect();
    // Rows that hold several documents, long ones (GEMM attention) and short ones (row by row).
    let docs = |i: usize| g.data[&run.data][i].len();
    assert!(batches.iter().enumerate().all(|(i, b)| docs(i) > b.b));
    assert!(batches.iter().any(|b| b.t > 128) && batches.iter().any(|b| b.t < 64));
    check_run("packed", 1);
}

#[test]
fn ten_adamw_steps_of_a_llama_match_pytorch_whole_and_accumulated() {
    check_run("llama", 1);
    check_run("llama", 2);
}

#[test]
fn ten_adamw_steps_of_a_tied_grouped_query_llama_match_pytorch() {
    let g = golden();
    let model = load(&g.runs["llama_gqa"].init);
    assert!(model.config.tie_word_embeddings && model.config.n_kv_head < model.config.n_head);
    check_run("llama_gqa", 1);
}

#[test]
fn ten_adamw_steps_of_a_llama_on_packed_documents_match_pytorch() {
    // Rotary positions restart at each document; rows take both attention paths.
    let g = golden();
    let run = &g.runs["llama_packed"];
    assert_eq!(run.data, g.runs["packed"].data);
    assert!(load(&run.init).config.rope.is_some());
    check_run("llama_packed", 1);
}

/// tests/golden/peft/golden.json and tests/golden/adapter/golden.json:
/// parameter-efficient runs from the train golden's starts, on its data, by
/// scripts/gen_peft_golden.py and scripts/gen_adapter_golden.py.
#[derive(Deserialize)]
struct PeftGolden {
    runs: HashMap<String, PeftRun>,
}

#[derive(Deserialize)]
struct PeftRun {
    #[serde(flatten)]
    run: Run,
    /// `--train-layers`: the reference saved its model after ten steps as the run's name.
    train_layers: Option<usize>,
    /// An adapter before and after ten steps (LoRA: peft's saves; bottleneck adapters: gpt's format).
    #[serde(alias = "lora_init")]
    adapter_init: Option<String>,
    #[serde(alias = "lora")]
    adapter: Option<String>,
}

fn peft_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/peft")
}

fn adapter_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/adapter")
}

fn peft_golden(dir: &Path) -> PeftGolden {
    serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap()
}

/// The golden parameter-efficient run `name` of `dir`, checked as [`check`] does (frozen tensors bit for bit).
fn check_peft_run(dir: &Path, name: &str) -> Figures {
    let g = golden();
    let peft = peft_golden(dir);
    let p = &peft.runs[name];
    let with_adapter = |sub: &str| {
        let mut m = load(&p.run.init);
        m.add_adapter(&Adapter::load(&dir.join(sub)).unwrap()).unwrap();
        m.train_adapters_only();
        m
    };
    let (model, init, want_final) = match (p.train_layers, &p.adapter_init, &p.adapter) {
        (Some(n), None, None) => {
            let mut m = load(&p.run.init);
            m.train_last_layers(n).unwrap();
            let want = Gpt::load(&dir.join(name)).unwrap();
            (m, load(&p.run.init), want)
        }
        (None, Some(start), Some(end)) => (with_adapter(start), with_adapter(start), with_adapter(end)),
        _ => panic!("{name}: a run trains some layers or an adapter"),
    };
    let fig = check(name, &g, &p.run, dir, model, init, want_final, 1);
    assert!(fig.frozen > 0, "{name}: nothing was frozen");
    fig
}

#[test]
fn ten_adamw_steps_training_the_last_block_and_head_match_pytorch_and_leave_the_rest_as_it_was() {
    let fig = check_peft_run(&peft_dir(), "layers1");
    // Block 0's tensors and wpe: 2 norms x 2 + 4 linears x 2, and wpe.
    assert_eq!(fig.frozen, 13);
}

#[test]
fn ten_adamw_steps_of_lora_match_peft_with_clipping_and_leave_the_base_as_it_was() {
    let peft = peft_golden(&peft_dir());
    let run = &peft.runs["lora"].run;
    let clip = run.grad_clip.unwrap() as f64;
    assert!(run.grad_norms.iter().any(|&n| n > clip) && run.grad_norms.iter().any(|&n| n < clip));
    let fig = check_peft_run(&peft_dir(), "lora");
    // Every tensor of the base model.
    assert_eq!(fig.frozen, load("init").params.tensors.len());
}

/// Bottleneck adapters (`--adapter-size`) of a GPT-2 and of a Llama: the
/// reference is plain PyTorch with the adapters hooked onto each block's
/// attention and MLP (scripts/gen_adapter_golden.py).
#[test]
fn ten_adamw_steps_of_bottleneck_adapters_match_pytorch_and_leave_the_base_as_it_was() {
    let adapters = peft_golden(&adapter_dir());
    for (name, init) in [("gpt2", "init"), ("llama", "llama_init")] {
        let run = &adapters.runs[name].run;
        assert_eq!(run.init, init);
        // The adapters start with up = 0: step 0's loss is the base model's.
        let plain = run.losses[0];
        let fig = check_peft_run(&adapter_dir(), name);
        assert_eq!(fig.frozen, load(init).params.tensors.len(), "{name}: every base tensor");
        let base = load(init);
        let steps = steps(&golden(), run, base.config.n_ctx, 1);
        let mut g = gpt::autograd::Graph::inference(&base.params, gpt::autograd::Workspace::default());
        let b = &steps[0][0];
        let loss = base.loss(&mut g, &b.tokens, &b.pos, b.b, &b.targets);
        assert!((g.value(loss)[0] as f64 - plain).abs() <= 1e-4 * plain);
    }
}
