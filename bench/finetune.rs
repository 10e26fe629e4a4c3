//! Fine-tuning speed and memory: `cargo bench --bench finetune`.
//!
//! SmolLM2-135M's shape (30 layers, 576 wide, 9 heads of which 3 key/value,
//! SwiGLU 1536, vocab 49152, tied embeddings), random init, f32, dropout 0,
//! AdamW with gradient clipping, at B=4 and T=256 (`$GPT_BENCH_SHAPES`, e.g.
//! `8x128`, picks others), trained two ways:
//! - full: every weight trains;
//! - LoRA r=8: peft's defaults for a Llama (alpha 8, the `q_proj` and
//!   `v_proj` of every block, dropout 0), every base weight frozen;
//! - QLoRA: the same on the base quantized to Q4_1 (ours alone: PyTorch's
//!   QLoRA needs bitsandbytes' CUDA kernels);
//! - full-bf16 and lora-bf16: full and LoRA in mixed precision, ours with
//!   `--precision bf16` (matrix products' inputs rounded to bf16, summed in
//!   f32; AMX tiles where the CPU has them), PyTorch's under
//!   `torch.autocast("cpu", dtype=torch.bfloat16)`.
//!
//! Prints, from one run on this machine, for each: ms per step (forward +
//! backward + clipping + AdamW, driven through the library without data
//! loading), tokens/s, trainable parameters and peak RSS, ours beside
//! PyTorch + `peft` (Hugging Face transformers' `LlamaForCausalLM` with
//! sdpa attention, `torch.set_num_threads` = our threads,
//! `bench/finetune_peer.py`), and their ratios. Ours runs in a child process
//! (VmHWM is the steps' alone); PyTorch's peak is getrusage in the peer.
//! One warm-up step, then `$GPT_BENCH_STEPS` (default 3) timed steps; the
//! median is reported, the best beside it. The peer runs with the Python
//! in `$GPT_BENCH_PYTHON`, else `~/.cache/gpt-venv/bin/python`, else
//! `python3`; without torch and peft it prints "peer not available".

#[path = "common.rs"]
mod common;
#[path = "steps.rs"]
mod steps;
use steps::{child_steps, ours, peer, Run};

use gpt::model::{Gpt, GptConfig, Init, LoraSpec};
use gpt::tensor::linear::Precision;
use gpt::tensor::rng;

const CHILD: &str = "GPT_BENCH_FINETUNE_CHILD";
const MODES: [&str; 5] = ["full", "lora", "qlora", "full-bf16", "lora-bf16"];
const LORA_RANK: usize = 8;

/// SmolLM2-135M's configuration.
fn config() -> GptConfig {
    let mut c = GptConfig {
        n_kv_head: 3,
        tie_word_embeddings: true,
        norm_eps: 1e-5,
        ..GptConfig::llama(49152, 2048, 576, 9, 30, 1536)
    };
    if let Some(rope) = c.rope.as_mut() {
        rope.theta = 100000.0;
    }
    c
}

/// The model a mode trains: LoRA adds its matrices and freezes the rest,
/// QLoRA after quantizing the base.
fn model(mode: &str) -> Gpt {
    let mut model = Gpt::new(config(), Init::Gpt2, &mut rng(0));
    if mode == "qlora" {
        model.quantize(gpt::tensor::quant::Kind::Q4_1).expect("Q4_1");
    }
    if mode != "full" {
        let spec = LoraSpec {
            r: LORA_RANK,
            alpha: 8.0,
            dropout: 0.0,
            targets: LoraSpec::default_targets(model.config.arch),
            base: "SmolLM2-135M shape".into(),
        };
        model.add_lora(&spec, &mut rng(2)).expect("LoRA");
    }
    model
}

/// A mode's model (full, lora or qlora) and the precision of its matrix products.
fn split_mode(mode: &str) -> (&str, Precision) {
    match mode.strip_suffix("-bf16") {
        Some(base) => (base, Precision::Bf16),
        None => (mode, Precision::F32),
    }
}

fn peer_script() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/bench/finetune_peer.py").to_string()
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        let v: Vec<&str> = spec.split(',').collect();
        let n = |i: usize| v[i].parse::<usize>().expect("mode,B,T,steps");
        let (base, precision) = split_mode(v[0]);
        child_steps(&mut model(base), n(1), n(2), n(3), precision);
        return;
    }
    let threads = rayon::current_num_threads();
    let steps = steps::steps_from_env(3);
    println!(
        "threads: {threads}, SmolLM2-135M shape (random init, f32, dropout 0, AdamW, clip 1.0), \
         {steps} timed steps after 1 warm-up"
    );
    let shapes = steps::shapes_from_env(&[(4, 256)]);
    for (b, t) in shapes {
        println!("B={b} T={t}:");
        let mut full_rss = [f64::NAN; 2];
        for mode in MODES {
            let trainable = model(split_mode(mode).0).params.trainable_count();
            let o = ours(CHILD, &format!("{mode},{b},{t},{steps}"));
            let line = |name: &str, r: &Run, trainable: u64| {
                format!(
                    "{name} {:.0} ms/step (best {:.0}), {:.0} tok/s, {:.2}M trainable, peak RSS {:.0} MB",
                    r.median() * 1e3,
                    r.best() * 1e3,
                    (b * t) as f64 / r.median(),
                    trainable as f64 / 1e6,
                    r.rss_mb
                )
            };
            println!("  {mode:>9} gpt           {}", line("", &o, trainable as u64));
            let args = [
                mode.to_string(),
                b.to_string(),
                t.to_string(),
                steps.to_string(),
                threads.to_string(),
            ];
            let peer_run = match mode {
                "qlora" => None,
                _ => peer(&peer_script(), &args, threads),
            };
            match peer_run {
                Some((p, v)) => {
                    let trainable = v["trainable"].as_u64().unwrap_or(0);
                    println!("  {mode:>9} PyTorch+peft  {}", line("", &p, trainable));
                    println!(
                        "  {mode:>9} gpt/PyTorch: {:.2}x step speed, {:.2}x peak RSS",
                        p.median() / o.median(),
                        o.rss_mb / p.rss_mb
                    );
                    if mode == "full" {
                        full_rss = [o.rss_mb, p.rss_mb];
                    } else if mode == "lora" {
                        println!(
                            "  LoRA's peak RSS / full's: gpt {:.2}, PyTorch {:.2}",
                            o.rss_mb / full_rss[0],
                            p.rss_mb / full_rss[1]
                        );
                    }
                }
                None => {
                    let why = match mode {
                        "qlora" => "no peer (QLoRA in PyTorch is bitsandbytes, for CUDA)",
                        _ => "peer not available",
                    };
                    println!("  {mode:>9} PyTorch+peft: {why}");
                    if mode == "full" {
                        full_rss[0] = o.rss_mb;
                    } else if split_mode(mode).1 == Precision::F32 {
                        println!("  {mode}'s peak RSS / full's: gpt {:.2}", o.rss_mb / full_rss[0]);
                    }
                }
            }
        }
    }
}
