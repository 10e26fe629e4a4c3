//! [`Engine`]: continuous batching. One thread owns the model and a KV cache
//! of `max_batch` slots; requests arrive at any time from any thread. Each
//! step runs one chunk of one waiting prompt (so a long prompt never stalls
//! the others for long) and then one token of every sequence that is
//! decoding, as one batch. New requests take a slot between steps, finished
//! and cancelled ones give it back at once.
//!
//! A request's tokens depend on its prompt, options and seed only: its prompt
//! is cut into the same chunks whatever else runs, it samples from its own
//! generator, and the rows of a batch do not mix.

use super::{sample_token, SampleOptions};
use crate::autograd::{Graph, Workspace};
use crate::model::{Gpt, KvCache};
use crate::tensor::{rng, Rng};
use rayon::prelude::*;
use std::collections::VecDeque;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineOptions {
    /// Sequences decoded together at most (slots of the KV cache).
    pub max_batch: usize,
    /// Requests waiting for a slot at most; more are refused.
    pub max_queue: usize,
    /// Tokens of context per sequence, prompt included (at most the model's).
    pub ctx: usize,
    /// Prompt tokens run per step at most.
    pub prefill_chunk: usize,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct Request {
    pub prompt: Vec<u32>,
    pub sampling: SampleOptions,
    /// At most this many new tokens (fewer if the context fills up).
    pub max_new_tokens: usize,
    /// Tokens that end the sequence (not reported): end of sequence, end of turn.
    pub stop: Vec<u32>,
    pub seed: u64,
    /// Report each token's log-probability and this many most likely tokens
    /// beside it; `None` skips the softmax over the vocabulary.
    pub logprobs: Option<usize>,
    /// Set from any thread to end the request (a client that went away).
    pub cancelled: Arc<AtomicBool>,
}

/// A generated token, with its log-probability under the model (before
/// temperature and truncation) and the most likely tokens, when asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub id: u32,
    pub logprob: Option<f32>,
    pub top: Vec<(u32, f32)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// A stop token (or the sink said so).
    Stop,
    /// `max_new_tokens`, or the context is full.
    Length,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Token(Token),
    Done(Finish),
    /// The step running this request failed (a bug); the engine goes on.
    Failed(String),
}

/// Receives a request's events on the engine's thread; returning `false`
/// ends the request (a stop string, a client gone). It must not block.
pub type Sink = Box<dyn FnMut(Event) -> bool + Send>;

/// Why [`Engine::submit`] refused a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// The request cannot run: the message says why.
    Invalid(String),
    /// `max_queue` requests are already waiting.
    Busy,
    /// The engine is shutting down.
    Closed,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejected::Invalid(m) => f.write_str(m),
            Rejected::Busy => f.write_str("too many requests are waiting: try again shortly"),
            Rejected::Closed => f.write_str("the server is shutting down"),
        }
    }
}

impl std::error::Error for Rejected {}

/// Gauges of the engine, read from any thread.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests waiting for a slot.
    pub queued: AtomicUsize,
    /// Sequences holding a slot (prefilling or decoding).
    pub active: AtomicUsize,
    /// Sequences in the last decode step.
    pub batch: AtomicUsize,
}

struct Job {
    req: Request,
    sink: Sink,
}

pub struct Engine {
    tx: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    stats: Arc<Stats>,
    opts: EngineOptions,
    vocab_size: usize,
}

impl Engine {
    /// Starts the engine's thread with `model`. `opts` must be sane (the
    /// front end checks them): at least one slot, a context of 2..=n_ctx.
    pub fn start(model: Gpt, opts: EngineOptions) -> Engine {
        assert!(opts.max_batch > 0 && opts.prefill_chunk > 0, "engine options {opts:?}");
        assert!(
            (2..=model.config.n_ctx).contains(&opts.ctx),
            "engine context {}",
            opts.ctx
        );
        let (tx, rx) = channel();
        let stats = Arc::new(Stats::default());
        let vocab_size = model.config.vocab_size;
        // As many kernel threads as the caller's pool has (a new thread would use rayon's global pool).
        let threads = rayon::current_num_threads();
        let thread = {
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("engine".into())
                .spawn(move || {
                    let worker = Worker::new(model, opts, stats);
                    match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
                        Ok(pool) => pool.install(|| worker.run(rx)),
                        Err(_) => worker.run(rx),
                    }
                })
                .expect("spawning the engine thread")
        };
        Engine {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            stats,
            opts,
            vocab_size,
        }
    }

    pub fn options(&self) -> EngineOptions {
        self.opts
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Queues `req`; its events go to `sink`, the last one `Done` or `Failed`
    /// (none after the sink returned `false` or the request was cancelled).
    pub fn submit(&self, req: Request, sink: Sink) -> Result<(), Rejected> {
        self.check(&req).map_err(Rejected::Invalid)?;
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let tx = tx.as_ref().ok_or(Rejected::Closed)?;
        // Counted before it is sent, so the worker never takes it below zero.
        if self.stats.queued.fetch_add(1, Ordering::SeqCst) >= self.opts.max_queue {
            self.stats.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(Rejected::Busy);
        }
        tx.send(Job { req, sink }).map_err(|_| {
            self.stats.queued.fetch_sub(1, Ordering::SeqCst);
            Rejected::Closed
        })
    }

    fn check(&self, req: &Request) -> Result<(), String> {
        req.sampling.validate().map_err(|e| e.to_string())?;
        let (n, ctx) = (req.prompt.len(), self.opts.ctx);
        if n == 0 {
            return Err("the prompt is empty: give it at least one token".into());
        }
        if n >= ctx {
            return Err(format!(
                "the prompt has {n} tokens, but the context is {ctx}: at most {} leave room for a new token",
                ctx - 1
            ));
        }
        if let Some(&t) = req.prompt.iter().find(|&&t| t as usize >= self.vocab_size) {
            return Err(format!("token {t} is outside the vocabulary of {}", self.vocab_size));
        }
        Ok(())
    }

    /// Takes no more requests, lets the queued and running ones finish, and
    /// waits for the engine's thread to end.
    pub fn shutdown(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

thread_local! {
    /// Each thread's sampling scratch (a vocabulary's weights and order),
    /// kept between steps rather than allocated per token.
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<u32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// A request holding a slot.
struct Seq {
    job: Job,
    slot: usize,
    rng: Rng,
    /// Prompt tokens in the cache.
    fed: usize,
    /// The sampled token to feed next (decoding), and how many were sampled.
    next: Option<u32>,
    generated: usize,
}

impl Seq {
    /// Reports `event`; whether the sequence goes on.
    fn emit(&mut self, event: Event) -> bool {
        (self.job.sink)(event)
    }

    /// Takes the token sampled from `logits`; whether the sequence goes on.
    fn take(&mut self, logits: &[f32], ctx: usize) -> bool {
        let req = &self.job.req;
        let id = SCRATCH.with_borrow_mut(|scratch| sample_token(logits, req.sampling, scratch, &mut self.rng));
        if req.stop.contains(&id) {
            self.emit(Event::Done(Finish::Stop));
            return false;
        }
        let (logprob, top) = match req.logprobs {
            Some(k) => {
                let (lp, top) = log_probs(logits, id, k);
                (Some(lp), top)
            }
            None => (None, Vec::new()),
        };
        self.generated += 1;
        if !self.emit(Event::Token(Token { id, logprob, top })) {
            return false;
        }
        let req = &self.job.req;
        // The next token would be fed at position `prompt + generated - 1`.
        if self.generated >= req.max_new_tokens || req.prompt.len() + self.generated > ctx {
            self.emit(Event::Done(Finish::Length));
            return false;
        }
        self.next = Some(id);
        true
    }

    fn cancelled(&self) -> bool {
        self.job.req.cancelled.load(Ordering::Relaxed)
    }
}

/// `log p(id)` and the `k` most likely tokens with theirs, from raw logits.
pub fn log_probs(logits: &[f32], id: u32, k: usize) -> (f32, Vec<(u32, f32)>) {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let lse = max + logits.iter().map(|&x| (x - max).exp()).sum::<f32>().ln();
    let mut top: Vec<(u32, f32)> = Vec::new();
    if k > 0 {
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        let k = k.min(order.len());
        order.select_nth_unstable_by(k - 1, |&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        order.truncate(k);
        order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
        top = order.into_iter().map(|i| (i, logits[i as usize] - lse)).collect();
    }
    (logits[id as usize] - lse, top)
}

struct Worker {
    model: Gpt,
    opts: EngineOptions,
    stats: Arc<Stats>,
    cache: KvCache,
    free: Vec<usize>,
    waiting: VecDeque<Job>,
    active: Vec<Seq>,
    ws: Workspace,
}

impl Worker {
    fn new(model: Gpt, opts: EngineOptions, stats: Arc<Stats>) -> Worker {
        let cache = KvCache::new(&model.config, opts.max_batch, opts.ctx);
        Worker {
            model,
            opts,
            stats,
            cache,
            free: (0..opts.max_batch).rev().collect(),
            waiting: VecDeque::new(),
            active: Vec::new(),
            ws: Workspace::default(),
        }
    }

    fn run(mut self, rx: Receiver<Job>) {
        let mut open = true;
        loop {
            if open && self.active.is_empty() && self.waiting.is_empty() {
                match rx.recv() {
                    Ok(job) => self.waiting.push_back(job),
                    Err(_) => open = false,
                }
            }
            while let Ok(job) = rx.try_recv() {
                self.waiting.push_back(job);
            }
            if !open && self.active.is_empty() && self.waiting.is_empty() {
                return;
            }
            self.admit();
            self.prefill();
            self.decode();
            self.stats.active.store(self.active.len(), Ordering::Relaxed);
        }
    }

    /// Gives free slots to waiting requests, first come first served.
    fn admit(&mut self) {
        self.waiting.retain(|job| {
            let gone = job.req.cancelled.load(Ordering::Relaxed);
            if gone {
                self.stats.queued.fetch_sub(1, Ordering::SeqCst);
            }
            !gone
        });
        while !self.free.is_empty() {
            let Some(mut job) = self.waiting.pop_front() else { break };
            self.stats.queued.fetch_sub(1, Ordering::SeqCst);
            if job.req.max_new_tokens == 0 {
                (job.sink)(Event::Done(Finish::Length));
                continue;
            }
            let slot = self.free.pop().expect("a free slot");
            self.cache.clear_slot(slot);
            let rng = rng(job.req.seed);
            self.active.push(Seq {
                job,
                slot,
                rng,
                fed: 0,
                next: None,
                generated: 0,
            });
        }
    }

    /// Ends the sequences for which `keep` is false, freeing their slots.
    fn retire(&mut self, keep: impl Fn(usize) -> bool) {
        let mut i = 0;
        self.active.retain(|s| {
            let k = keep(i);
            i += 1;
            if !k {
                self.free.push(s.slot);
            }
            k
        });
    }

    /// Runs the forward for the sequences `which` (each feeding `tokens` at
    /// `pos`, `t` per sequence): the logits of `rows` (all when `None`). A
    /// panic fails them all: they are told, and the caller retires them.
    fn step(&mut self, which: &[usize], tokens: &[u32], pos: &[u32], rows: Option<&[usize]>) -> Option<Vec<f32>> {
        let slots: Vec<usize> = which.iter().map(|&i| self.active[i].slot).collect();
        self.cache.select(&slots);
        let (model, cache) = (&self.model, &mut self.cache);
        let ws = std::mem::take(&mut self.ws);
        let run = catch_unwind(AssertUnwindSafe(|| {
            let mut g = Graph::inference(&model.params, ws);
            let mut h = model.hidden(&mut g, tokens, pos, which.len(), Some(cache));
            if let Some(rows) = rows {
                h = g.rows(h, rows);
            }
            let logits = model.logits(&mut g, h);
            let logits = g.value(logits).to_vec();
            (logits, g.finish())
        }));
        match run {
            Ok((logits, ws)) => {
                self.ws = ws;
                Some(logits)
            }
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                for &i in which {
                    self.active[i].emit(Event::Failed(format!("generation failed: {msg}")));
                }
                None
            }
        }
    }

    /// One chunk of the first sequence still reading its prompt; at its end, its first token.
    fn prefill(&mut self) {
        self.retire_cancelled();
        let Some(i) = self.active.iter().position(|s| s.fed < s.job.req.prompt.len()) else {
            return;
        };
        let s = &self.active[i];
        let n = s.job.req.prompt.len();
        let end = n.min(s.fed + self.opts.prefill_chunk);
        let tokens = s.job.req.prompt[s.fed..end].to_vec();
        let pos: Vec<u32> = (s.fed as u32..end as u32).collect();
        let last = [tokens.len() - 1];
        let Some(logits) = self.step(&[i], &tokens, &pos, Some(&last)) else {
            return;
        };
        let s = &mut self.active[i];
        s.fed = end;
        if end == n {
            let ctx = self.opts.ctx;
            if !s.take(&logits, ctx) {
                self.retire(|j| j != i);
            }
        }
    }

    /// One token of every decoding sequence, in batches of at most
    /// [`crate::autograd::Params::row_invariant_rows`]: larger ones would
    /// compute each row's logits in another order than a sequence running
    /// alone gets.
    fn decode(&mut self) {
        self.retire_cancelled();
        let decoding: Vec<usize> = (0..self.active.len())
            .filter(|&i| self.active[i].next.is_some())
            .collect();
        self.stats.batch.store(decoding.len(), Ordering::Relaxed);
        let mut done = Vec::new();
        for which in decoding.chunks(self.model.params.row_invariant_rows()) {
            let tokens: Vec<u32> = which.iter().map(|&i| self.active[i].next.expect("decoding")).collect();
            let pos: Vec<u32> = which
                .iter()
                .map(|&i| self.cache.slot_len(self.active[i].slot) as u32)
                .collect();
            let Some(logits) = self.step(which, &tokens, &pos, None) else {
                done.extend_from_slice(which);
                continue;
            };
            let (v, ctx) = (self.model.config.vocab_size, self.opts.ctx);
            // Each sequence samples from its own generator, so they take their
            // tokens in parallel (a softmax over the vocabulary each).
            let mut batch: Vec<(usize, &mut Seq)> = self
                .active
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| which.binary_search(i).is_ok())
                .collect();
            let ended: Vec<usize> = batch
                .par_iter_mut()
                .zip(logits.par_chunks(v))
                .filter_map(|((i, s), logits)| (!s.take(logits, ctx)).then_some(*i))
                .collect();
            done.extend(ended);
        }
        self.retire(|i| !done.contains(&i));
    }

    fn retire_cancelled(&mut self) {
        let gone: Vec<bool> = self.active.iter().map(Seq::cancelled).collect();
        self.retire(|i| !gone[i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GptConfig, Init};
    use crate::sample::{generate, GenerateOptions};
    use std::sync::mpsc;

    fn model() -> Gpt {
        Gpt::new(GptConfig::gpt2(50, 40, 16, 2, 2), Init::Normal(0.5), &mut rng(3))
    }

    fn request(prompt: Vec<u32>, temperature: f32, seed: u64, max_new_tokens: usize) -> Request {
        Request {
            prompt,
            sampling: SampleOptions {
                temperature,
                top_k: None,
                top_p: None,
            },
            max_new_tokens,
            stop: Vec::new(),
            seed,
            logprobs: None,
            cancelled: Arc::default(),
        }
    }

    /// Submits every request at once; each one's events in order.
    fn run_all(engine: &Engine, reqs: Vec<Request>) -> Vec<Vec<Event>> {
        let rxs: Vec<_> = reqs
            .into_iter()
            .map(|r| {
                let (tx, rx) = mpsc::channel();
                engine.submit(r, Box::new(move |e| tx.send(e).is_ok())).unwrap();
                rx
            })
            .collect();
        rxs.into_iter()
            .map(|rx| {
                let mut events = Vec::new();
                while let Ok(e) = rx.recv() {
                    let last = !matches!(e, Event::Token(_));
                    events.push(e);
                    if last {
                        break;
                    }
                }
                events
            })
            .collect()
    }

    fn ids(events: &[Event]) -> Vec<u32> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Token(t) => Some(t.id),
                _ => None,
            })
            .collect()
    }

    fn alone(model: &Gpt, r: &Request) -> Vec<u32> {
        let opts = GenerateOptions {
            sampling: r.sampling,
            max_new_tokens: r.max_new_tokens,
            stop: r.stop.clone(),
        };
        let got = generate(
            model,
            std::slice::from_ref(&r.prompt),
            &opts,
            &mut [rng(r.seed)],
            |_, _| true,
        )
        .unwrap();
        got.tokens[0].clone()
    }

    #[test]
    fn batched_requests_of_every_length_sample_as_they_would_alone() {
        let engine = Engine::start(
            model(),
            EngineOptions {
                max_batch: 3,
                max_queue: 16,
                ctx: 40,
                prefill_chunk: 4,
            },
        );
        // More requests than slots, prompts longer than a chunk, one running into the context.
        let reqs: Vec<Request> = (0..7)
            .map(|i| {
                let prompt: Vec<u32> = (0..1 + 5 * i as u32).map(|t| (t * 7 + i as u32) % 50).collect();
                request(prompt, if i % 2 == 0 { 0.0 } else { 1.0 }, 100 + i, 12)
            })
            .chain([request(vec![5; 33], 1.0, 9, 20)])
            .collect();
        let got = run_all(&engine, reqs.clone());
        let m = model();
        for (r, events) in reqs.iter().zip(&got) {
            let want = alone(&m, r);
            assert_eq!(ids(events), want, "prompt of {}", r.prompt.len());
            let finish = 12.min(41 - r.prompt.len()); // the context (40) holds all but the last token
            assert_eq!(want.len(), finish);
            assert_eq!(events.last(), Some(&Event::Done(Finish::Length)));
        }
        assert_eq!(engine.stats().queued.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_sequence_computes_the_same_logits_alone_and_in_a_full_batch() {
        let config = GptConfig::gpt2(64, 64, 64, 2, 2);
        let mut quantized = Gpt::new(config.clone(), Init::Normal(0.5), &mut rng(5));
        quantized.quantize(crate::tensor::quant::Kind::Q8_0).unwrap();
        for model in [Gpt::new(config.clone(), Init::Normal(0.5), &mut rng(5)), quantized] {
            let opts = EngineOptions {
                max_batch: 12,
                max_queue: 16,
                ctx: 64,
                prefill_chunk: 16,
            };
            let engine = Engine::start(model, opts);
            let req = |i: u32| {
                let mut r = request(vec![i % 64, 7, (3 * i) % 64], 1.0, i as u64, 20);
                r.logprobs = Some(3);
                r
            };
            let alone = run_all(&engine, vec![req(0)]);
            let together = run_all(&engine, (0..12).map(req).collect());
            // Bit for bit: the log-probabilities of every token and its runners-up.
            for (k, (a, b)) in alone[0].iter().zip(&together[0]).enumerate() {
                assert_eq!(a, b, "event {k}");
            }
            assert_eq!(alone[0].len(), together[0].len());
        }
    }

    #[test]
    fn logprobs_are_the_models_log_softmax() {
        let (lp, top) = log_probs(&[0.0, 2.0, 1.0], 2, 2);
        let z = (1.0f32 + 2f32.exp() + 1f32.exp()).ln();
        assert!((lp - (1.0 - z)).abs() < 1e-6);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), [1, 2]);
        assert!((top[0].1 - (2.0 - z)).abs() < 1e-6);
    }

    #[test]
    fn stops_cancels_refusals_and_a_full_queue() {
        let engine = Engine::start(
            model(),
            EngineOptions {
                max_batch: 1,
                max_queue: 1,
                ctx: 40,
                prefill_chunk: 8,
            },
        );
        let greedy = alone(&model(), &request(vec![1, 2, 3], 0.0, 0, 5));
        let mut r = request(vec![1, 2, 3], 0.0, 0, 5);
        r.stop = vec![greedy[2]];
        let got = run_all(&engine, vec![r]);
        assert_eq!(ids(&got[0]), greedy[..2]);
        assert_eq!(got[0].last(), Some(&Event::Done(Finish::Stop)));

        // The sink ends a request after two tokens.
        let (tx, rx) = mpsc::channel();
        let mut n = 0;
        let sink = Box::new(move |e| {
            n += 1;
            tx.send(e).is_ok() && n < 2
        });
        engine.submit(request(vec![1, 2, 3], 0.0, 0, 5), sink).unwrap();
        assert_eq!(rx.iter().count(), 2);

        for (prompt, want) in [
            (vec![], "empty"),
            (vec![50], "outside the vocabulary"),
            (vec![1; 40], "context is 40"),
        ] {
            let err = engine
                .submit(request(prompt, 0.0, 0, 5), Box::new(|_| true))
                .unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
        }
        let mut bad = request(vec![1], -1.0, 0, 5);
        bad.sampling.temperature = f32::NAN;
        assert!(matches!(
            engine.submit(bad, Box::new(|_| true)),
            Err(Rejected::Invalid(_))
        ));

        // A long request holds the only slot (its sink holds the engine until
        // told to go on); one more may wait, the next is refused.
        let cancel = Arc::new(AtomicBool::new(false));
        let mut long = request(vec![1], 1.0, 0, usize::MAX);
        long.cancelled = cancel.clone();
        let (go, wait) = mpsc::channel::<()>();
        let (tx, rx) = mpsc::channel();
        let sink = Box::new(move |e| {
            let _ = wait.recv();
            tx.send(e).is_ok()
        });
        engine.submit(long, sink).unwrap();
        while engine.stats().queued.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let (tx2, rx2) = mpsc::channel();
        engine
            .submit(request(vec![2], 0.0, 0, 3), Box::new(move |e| tx2.send(e).is_ok()))
            .unwrap();
        assert_eq!(
            engine.submit(request(vec![3], 0.0, 0, 3), Box::new(|_| true)),
            Err(Rejected::Busy)
        );
        cancel.store(true, Ordering::Relaxed);
        drop(go);
        let events: Vec<Event> = rx2.iter().take(4).collect();
        assert_eq!(
            events.last(),
            Some(&Event::Done(Finish::Length)),
            "the waiting request ran"
        );
        let long_events: Vec<Event> = rx.iter().collect();
        assert_eq!(
            long_events.len(),
            1,
            "the cancelled request ended at once: {long_events:?}"
        );
        engine.shutdown();
        assert_eq!(
            engine.submit(request(vec![3], 0.0, 0, 3), Box::new(|_| true)),
            Err(Rejected::Closed)
        );
    }
}
