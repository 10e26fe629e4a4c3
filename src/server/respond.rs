//! The answer to a generation request, one JSON body or a stream of
//! Server-Sent Events, in the shape of its endpoint ([`Kind`]): a streamed
//! choice's pieces concatenate to the text the same request gets whole.

use super::api::ApiError;
use super::generate::{Piece, Run};
use crate::sample::engine::{Finish, Token};
use crate::tokenizer::Tokenizer;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Completion,
    Chat,
}

/// What every chunk or body of one answer shares.
pub struct Reply {
    pub kind: Kind,
    pub id: String,
    pub created: u64,
    pub model: String,
    pub tokenizer: Arc<Tokenizer>,
    /// Log-probabilities asked for (with this many alternatives).
    pub logprobs: Option<usize>,
    pub prompt_tokens: usize,
}

/// A choice's text and tokens so far; `offset`: characters before them (completions' `text_offset`).
#[derive(Default)]
struct Choice {
    text: String,
    tokens: Vec<Token>,
    offset: usize,
    started: bool,
    finish: Option<Finish>,
}

impl Reply {
    fn object(&self, stream: bool) -> &'static str {
        match (self.kind, stream) {
            (Kind::Completion, _) => "text_completion",
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
        }
    }

    fn envelope(&self, stream: bool, choices: Vec<Value>) -> Value {
        json!({
            "id": self.id,
            "object": self.object(stream),
            "created": self.created,
            "model": self.model,
            "choices": choices,
        })
    }

    fn usage(&self, completion_tokens: usize) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        })
    }

    /// One choice: the whole of it, or (`stream`) a chunk of `text` and `tokens`.
    fn choice(&self, index: usize, c: &Choice, stream: bool) -> Value {
        let finish = c.finish.map(|f| match f {
            Finish::Stop => "stop",
            Finish::Length => "length",
        });
        let logprobs = self.logprobs.map(|k| self.logprobs_json(&c.tokens, c.offset, k));
        match (self.kind, stream) {
            (Kind::Completion, _) => {
                json!({"index": index, "text": c.text, "logprobs": logprobs, "finish_reason": finish})
            }
            (Kind::Chat, false) => json!({
                "index": index,
                "message": {"role": "assistant", "content": c.text},
                "logprobs": logprobs,
                "finish_reason": finish,
            }),
            (Kind::Chat, true) => {
                let mut delta = json!({"content": c.text});
                if !c.started {
                    delta["role"] = json!("assistant");
                }
                json!({"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish})
            }
        }
    }

    /// Completions' `{tokens, token_logprobs, top_logprobs, text_offset}`,
    /// chat's `{content: [{token, logprob, bytes, top_logprobs}]}`.
    fn logprobs_json(&self, tokens: &[Token], mut offset: usize, k: usize) -> Value {
        let piece = |id: u32| {
            let bytes = self.tokenizer.token_bytes(id).unwrap_or_default();
            (String::from_utf8_lossy(&bytes).into_owned(), bytes)
        };
        match self.kind {
            Kind::Completion => {
                let mut out = json!({"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []});
                for t in tokens {
                    let text = piece(t.id).0;
                    let top: serde_json::Map<String, Value> =
                        t.top.iter().take(k).map(|&(id, lp)| (piece(id).0, json!(lp))).collect();
                    out["text_offset"].as_array_mut().unwrap().push(json!(offset));
                    offset += text.chars().count();
                    out["tokens"].as_array_mut().unwrap().push(json!(text));
                    out["token_logprobs"].as_array_mut().unwrap().push(json!(t.logprob));
                    out["top_logprobs"].as_array_mut().unwrap().push(Value::Object(top));
                }
                out
            }
            Kind::Chat => {
                let entry = |id: u32, logprob: Value| {
                    let (token, bytes) = piece(id);
                    json!({"token": token, "logprob": logprob, "bytes": bytes})
                };
                let content: Vec<Value> = tokens
                    .iter()
                    .map(|t| {
                        let mut e = entry(t.id, json!(t.logprob));
                        e["top_logprobs"] = t.top.iter().map(|&(id, lp)| entry(id, json!(lp))).collect();
                        e
                    })
                    .collect();
                json!({ "content": content })
            }
        }
    }

    /// Waits for every choice and answers with the whole body; 504 when the
    /// timeout came before any token.
    pub async fn collect(self, mut run: Run, choices: usize) -> Result<Response, ApiError> {
        let mut all: Vec<Choice> = (0..choices).map(|_| Choice::default()).collect();
        while let Some(piece) = run.next().await {
            if let Some(e) = piece.error {
                return Err(failed(e));
            }
            let c = &mut all[piece.index];
            c.text.push_str(&piece.text);
            c.tokens.extend(piece.token);
            c.finish = c.finish.or(piece.finish);
        }
        if run.timed_out && run.tokens == 0 {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                Some("timeout"),
                "the request timed out before its first token (--timeout sets the limit): try again when the server is less busy".into(),
            ));
        }
        let mut body = self.envelope(
            false,
            all.iter().enumerate().map(|(i, c)| self.choice(i, c, false)).collect(),
        );
        body["usage"] = self.usage(run.tokens);
        Ok(axum::Json(body).into_response())
    }

    /// Streams a chunk per piece that says something, then (with
    /// `include_usage`) a usage chunk, then `[DONE]`. Dropping the stream
    /// (the client went away) cancels the choices left.
    pub fn stream(self, run: Run, choices: usize, include_usage: bool) -> Response {
        let state = Stream {
            reply: self,
            run,
            choices: (0..choices).map(|_| Choice::default()).collect(),
            include_usage,
            over: false,
        };
        let events = futures_util::stream::unfold(Some(state), |state| async move {
            let mut state = state?;
            match state.next().await {
                Some(data) => Some((Ok::<_, Infallible>(Event::default().data(data)), Some(state))),
                None => Some((Ok(Event::default().data("[DONE]")), None)),
            }
        });
        Sse::new(events).into_response()
    }
}

struct Stream {
    reply: Reply,
    run: Run,
    choices: Vec<Choice>,
    include_usage: bool,
    over: bool,
}

impl Stream {
    /// The next event's data; `None` when only `[DONE]` is left.
    async fn next(&mut self) -> Option<String> {
        if self.over {
            return None;
        }
        while let Some(piece) = self.run.next().await {
            if let Some(e) = piece.error {
                return Some(failed(e).body().to_string());
            }
            if let Some(chunk) = self.chunk(piece) {
                return Some(chunk.to_string());
            }
        }
        self.over = true;
        self.include_usage.then(|| {
            let mut chunk = self.reply.envelope(true, Vec::new());
            chunk["usage"] = self.reply.usage(self.run.tokens);
            chunk.to_string()
        })
    }

    /// The chunk of `piece`, unless it says nothing (text held back, no log-probabilities asked).
    fn chunk(&mut self, piece: Piece) -> Option<Value> {
        let with_logprobs = self.reply.logprobs.is_some() && piece.token.is_some();
        if piece.text.is_empty() && piece.finish.is_none() && !with_logprobs {
            return None;
        }
        let c = &mut self.choices[piece.index];
        c.text = piece.text;
        c.tokens = piece.token.into_iter().collect();
        c.finish = piece.finish;
        let choice = self.reply.choice(piece.index, c, true);
        c.started = true;
        if let Some(t) = c.tokens.first() {
            let bytes = self.reply.tokenizer.token_bytes(t.id).unwrap_or_default();
            c.offset += String::from_utf8_lossy(&bytes).chars().count();
        }
        Some(self.reply.envelope(true, vec![choice]))
    }
}

fn failed(e: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", None, e)
}
