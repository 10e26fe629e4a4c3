//! The OpenAI API's request body, checked into [`Params`] at the door, and
//! its error body `{"error": {"message", "type", "param", "code"}}`.
//! Fields the server does not know are ignored, as OpenAI does.

use crate::sample::SampleOptions;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// Choices one request may ask for (`n`), top log-probabilities of a
/// completion (`logprobs`) and of a chat reply (`top_logprobs`), stop strings.
const MAX_N: u64 = 16;
const MAX_LOGPROBS: u64 = 5;
const MAX_TOP_LOGPROBS: u64 = 20;
const MAX_STOPS: usize = 4;

/// A request that cannot be served, as OpenAI reports it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, code: Option<&'static str>, message: String) -> ApiError {
        ApiError {
            status,
            message,
            kind,
            param: None,
            code,
        }
    }

    /// A 400 about one field of the request.
    pub fn invalid(param: &str, message: String) -> ApiError {
        ApiError {
            param: Some(param.to_string()),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", None, message)
        }
    }

    /// `{"error": {"message", "type", "param", "code"}}`
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

/// A string or a list of strings (`prompt`, `stop`).
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// `logprobs`: a count for completions, a switch for chat.
#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(untagged)]
pub enum Logprobs {
    Switch(bool),
    Count(u64),
}

#[derive(Deserialize, Debug)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
}

/// A message's content: a text, or a list of parts of which only text is understood.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize, Debug)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// The body of `/v1/completions` and `/v1/chat/completions` (each reads its own fields).
#[derive(Deserialize, Debug, Default)]
pub struct Body {
    pub model: Option<String>,
    pub prompt: Option<OneOrMany>,
    pub messages: Option<Vec<ChatMessage>>,
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub stop: Option<OneOrMany>,
    pub seed: Option<i64>,
    pub n: Option<u64>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub logprobs: Option<Logprobs>,
    pub top_logprobs: Option<u64>,
    #[serde(default)]
    pub echo: bool,
}

/// What a request asks of the generation, checked.
#[derive(Clone, Debug)]
pub struct Params {
    pub sampling: SampleOptions,
    pub max_tokens: usize,
    pub stop: Vec<String>,
    pub seed: u64,
    pub n: usize,
    pub stream: bool,
    pub include_usage: bool,
    /// Log-probabilities asked for, with this many alternatives each.
    pub logprobs: Option<usize>,
}

/// Parses a body; a malformed one is a 400 naming the field at fault.
pub fn parse(bytes: &[u8]) -> Result<Body, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data if path != "." => {
                ApiError::invalid(&path, format!("{path} is not valid: {inner}"))
            }
            _ => ApiError::invalid("body", format!("the request body is not valid JSON: {inner}")),
        }
    })
}

fn range<T: PartialOrd + std::fmt::Display + Copy>(param: &str, v: T, lo: T, hi: T) -> Result<T, ApiError> {
    match v >= lo && v <= hi {
        true => Ok(v),
        false => Err(ApiError::invalid(
            param,
            format!("{param} is {v}: it must be between {lo} and {hi}"),
        )),
    }
}

impl Body {
    /// The generation's parameters; `chat` says which endpoint's `logprobs`
    /// applies, `max_tokens` is the most one request may ask for.
    pub fn params(&self, chat: bool, max_tokens: usize) -> Result<Params, ApiError> {
        let temperature = range("temperature", self.temperature.unwrap_or(1.0), 0.0, 2.0)?;
        let top_p = self.top_p.map(|p| range("top_p", p, 0.0, 1.0)).transpose()?;
        let top_p = top_p.filter(|&p| p < 1.0).map(|p| p.max(f32::MIN_POSITIVE));
        let (param, asked) = match self.max_completion_tokens {
            Some(m) => ("max_completion_tokens", Some(m)),
            None => ("max_tokens", self.max_tokens),
        };
        let max_tokens = match asked {
            Some(m) => range(param, m, 1, max_tokens as u64)? as usize,
            None => max_tokens,
        };
        let stop = self.stop_strings()?;
        let n = range("n", self.n.unwrap_or(1), 1, MAX_N)? as usize;
        if self.echo {
            return Err(ApiError::invalid(
                "echo",
                "echo is not supported: leave it out and prepend the prompt yourself".into(),
            ));
        }
        Ok(Params {
            sampling: SampleOptions {
                temperature,
                top_k: None,
                top_p,
            },
            max_tokens,
            stop,
            seed: self.seed.map_or_else(rand::random, |s| s as u64),
            n,
            stream: self.stream,
            include_usage: self.stream_options.as_ref().is_some_and(|o| o.include_usage),
            logprobs: self.logprobs(chat)?,
        })
    }

    fn stop_strings(&self) -> Result<Vec<String>, ApiError> {
        let stop = self.stop.as_ref().map(OneOrMany::to_vec).unwrap_or_default();
        if stop.len() > MAX_STOPS {
            return Err(ApiError::invalid(
                "stop",
                format!("stop has {} strings: at most {MAX_STOPS}", stop.len()),
            ));
        }
        if stop.iter().any(String::is_empty) {
            return Err(ApiError::invalid(
                "stop",
                "a stop string is empty: it would end every choice before its first token".into(),
            ));
        }
        Ok(stop)
    }

    fn logprobs(&self, chat: bool) -> Result<Option<usize>, ApiError> {
        match (chat, self.logprobs) {
            (false, Some(Logprobs::Count(k))) => Ok(Some(range("logprobs", k, 0, MAX_LOGPROBS)? as usize)),
            (false, Some(Logprobs::Switch(_))) => Err(ApiError::invalid(
                "logprobs",
                format!("logprobs must be an integer between 0 and {MAX_LOGPROBS} for completions"),
            )),
            (true, Some(Logprobs::Count(_))) => Err(ApiError::invalid(
                "logprobs",
                "logprobs must be true or false for chat completions (top_logprobs gives the count)".into(),
            )),
            (true, Some(Logprobs::Switch(true))) => {
                Ok(Some(
                    range("top_logprobs", self.top_logprobs.unwrap_or(0), 0, MAX_TOP_LOGPROBS)? as usize,
                ))
            }
            (true, _) if self.top_logprobs.is_some() => Err(ApiError::invalid(
                "top_logprobs",
                "top_logprobs needs logprobs: true".into(),
            )),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_each_endpoints_logprobs() {
        let p = parse(br#"{"prompt": "x", "seed": -1, "top_p": 1}"#).unwrap();
        let p = p.params(false, 100).unwrap();
        assert_eq!(
            (
                p.sampling.temperature,
                p.sampling.top_p,
                p.max_tokens,
                p.n,
                p.seed,
                p.logprobs
            ),
            (1.0, None, 100, 1, u64::MAX, None)
        );
        let chat = parse(br#"{"logprobs": true, "top_logprobs": 3}"#).unwrap();
        assert_eq!(chat.params(true, 10).unwrap().logprobs, Some(3));
        assert_eq!(chat.params(false, 10).unwrap_err().param.as_deref(), Some("logprobs"));
        // max_completion_tokens wins over max_tokens, and is checked against the limit.
        let both = parse(br#"{"max_completion_tokens": 11, "max_tokens": 5}"#).unwrap();
        assert_eq!(
            both.params(false, 10).unwrap_err().param.as_deref(),
            Some("max_completion_tokens")
        );
        assert_eq!(both.params(false, 11).unwrap().max_tokens, 11);
    }
}
