//! One generation path for both endpoints, streamed or not: every choice of
//! a request (each prompt × `n`) runs as one engine request, and their
//! [`Piece`]s of text come back through one channel as they are made. The
//! text is cut on the engine's thread ([`Completion`]: whole characters,
//! never part of a stop string), so a stop string ends its sequence at once.

use super::api::{ApiError, Params};
use super::metrics::Metrics;
use super::Model;
use crate::sample::completion::Completion;
use crate::sample::engine::{Event, Finish, Rejected, Request, Sink, Token};
use crate::tokenizer::Tokenizer;
use axum::http::StatusCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// What one choice produced next.
#[derive(Debug)]
pub struct Piece {
    pub index: usize,
    /// Text safe to show now (may be empty while a stop string may be forming).
    pub text: String,
    /// The token behind it (none for the last piece of a choice, or for a
    /// token past the stop string).
    pub token: Option<Token>,
    pub finish: Option<Finish>,
    /// The generation failed (a bug, reported as such).
    pub error: Option<String>,
    at: Instant,
}

/// The choices of one request, running. Dropping it (a client gone) cancels those left.
pub struct Run {
    rx: UnboundedReceiver<Piece>,
    cancel: Arc<AtomicBool>,
    deadline: tokio::time::Instant,
    /// Per choice: finished, and when its last token came.
    done: Vec<bool>,
    last: Vec<Option<Instant>>,
    started: Instant,
    metrics: Arc<Metrics>,
    /// Tokens generated, all choices together.
    pub tokens: usize,
    /// The timeout ended the choices still running.
    pub timed_out: bool,
}

impl Run {
    /// Submits every choice of `prompts` × `params.n` (choice `i` seeded
    /// with `seed + i`); a refusal cancels those already submitted.
    pub fn start(model: &Model, metrics: Arc<Metrics>, prompts: &[Vec<u32>], params: &Params) -> Result<Run, ApiError> {
        let (tx, rx) = unbounded_channel();
        let choices = prompts.len() * params.n;
        let run = Run {
            rx,
            cancel: Arc::default(),
            deadline: tokio::time::Instant::now() + model.timeout,
            done: vec![false; choices],
            last: vec![None; choices],
            started: Instant::now(),
            metrics,
            tokens: 0,
            timed_out: false,
        };
        let stops = Arc::new(params.stop.clone());
        for index in 0..choices {
            let request = Request {
                prompt: prompts[index / params.n].clone(),
                sampling: params.sampling,
                max_new_tokens: params.max_tokens,
                stop: model.chat.stop_ids.clone(),
                seed: params.seed.wrapping_add(index as u64),
                logprobs: params.logprobs,
                cancelled: run.cancel.clone(),
            };
            let sink = sink(index, model.tokenizer.clone(), stops.clone(), tx.clone());
            model.engine.submit(request, sink).map_err(refused)?;
        }
        Ok(run)
    }

    /// The next piece of any choice; `None` once every choice has finished.
    /// At the deadline the choices still running end as `length`.
    pub async fn next(&mut self) -> Option<Piece> {
        loop {
            if self.done.iter().all(|&d| d) {
                return None;
            }
            // Nothing is taken after the deadline, even what is already there.
            let received = match tokio::time::Instant::now() < self.deadline {
                true => tokio::time::timeout_at(self.deadline, self.rx.recv()).await.ok(),
                false => None,
            };
            let piece = match received {
                Some(Some(piece)) if self.done[piece.index] => continue,
                Some(Some(piece)) => piece,
                Some(None) => {
                    let i = self.done.iter().position(|&d| !d)?;
                    self.finish(i, Some("the engine stopped".into()))
                }
                None => {
                    self.cancel.store(true, Ordering::Relaxed);
                    self.timed_out = true;
                    let i = self.done.iter().position(|&d| !d)?;
                    self.finish(i, None)
                }
            };
            self.observe(&piece);
            return Some(piece);
        }
    }

    /// A last piece for choice `i`, which the engine will not end: `length`, or an error.
    fn finish(&self, index: usize, error: Option<String>) -> Piece {
        Piece {
            index,
            text: String::new(),
            token: None,
            finish: error.is_none().then_some(Finish::Length),
            error,
            at: Instant::now(),
        }
    }

    fn observe(&mut self, piece: &Piece) {
        let i = piece.index;
        if piece.token.is_some() {
            self.tokens += 1;
            self.metrics.completion_tokens.fetch_add(1, Ordering::Relaxed);
            match self.last[i] {
                None => self.metrics.ttft.observe((piece.at - self.started).as_secs_f64()),
                Some(last) => self.metrics.itl.observe((piece.at - last).as_secs_f64()),
            }
            self.last[i] = Some(piece.at);
        }
        if piece.finish.is_some() || piece.error.is_some() {
            self.done[i] = true;
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

fn refused(r: Rejected) -> ApiError {
    match r {
        Rejected::Busy => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            Some("rate_limit_exceeded"),
            format!("{r} (the queue is full; --max-queue sets its length)"),
        ),
        Rejected::Closed => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            Some("shutting_down"),
            r.to_string(),
        ),
        Rejected::Invalid(m) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", None, m),
    }
}

/// The sink of choice `index`: turns the engine's events into pieces of
/// text; ends the sequence at a stop string or when the request is gone.
fn sink(index: usize, tok: Arc<Tokenizer>, stops: Arc<Vec<String>>, tx: UnboundedSender<Piece>) -> Sink {
    let mut text = Completion::new();
    let mut tokens = 0;
    Box::new(move |event| {
        let mut piece = Piece {
            index,
            text: String::new(),
            token: None,
            finish: None,
            error: None,
            at: Instant::now(),
        };
        match event {
            Event::Token(t) => match tok.token_bytes(t.id) {
                Ok(bytes) => {
                    piece.text = text.push(&bytes, &stops);
                    tokens += 1;
                    // A token that only completes a stop string is not part of the text.
                    if !text.stopped() || text.tokens_in_text() == tokens {
                        piece.token = Some(t);
                    }
                    piece.finish = text.stopped().then_some(Finish::Stop);
                }
                Err(e) => piece.error = Some(format!("{e:#}")),
            },
            Event::Done(finish) => {
                piece.text = text.rest();
                piece.finish = Some(finish);
            }
            Event::Failed(msg) => piece.error = Some(msg),
        }
        let last = piece.finish.is_some() || piece.error.is_some();
        tx.send(piece).is_ok() && !last
    })
}
