//! The HTTP routes: `/v1/completions`, `/v1/chat/completions`, `/v1/models`
//! (behind the API key, when there is one), `/health` and `/metrics`; every
//! answer counted by endpoint and status.

use super::api::{self, ApiError};
use super::generate::Run;
use super::respond::{Kind, Reply};
use super::{prompt, App};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Largest request body, in bytes.
const BODY_LIMIT: usize = 4 << 20;

pub fn router(app: Arc<App>) -> Router {
    let v1 = Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route_layer(middleware::from_fn_with_state(app.clone(), auth));
    Router::new()
        .merge(v1)
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), count))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app)
}

/// Counts every answer by its route (`other` for unknown paths) and status.
async fn count(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let endpoint = match req.extensions().get::<MatchedPath>().map(MatchedPath::as_str) {
        Some("/v1/completions") => "/v1/completions",
        Some("/v1/chat/completions") => "/v1/chat/completions",
        Some("/v1/models") => "/v1/models",
        Some("/health") => "/health",
        Some("/metrics") => "/metrics",
        _ => "other",
    };
    let response = next.run(req).await;
    app.metrics.request(endpoint, response.status().as_u16());
    response
}

/// With an API key, `Authorization: Bearer KEY`, compared in constant time.
async fn auth(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if let Some(key) = &app.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same(given.trim().as_bytes(), key.as_bytes()) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                Some("invalid_api_key"),
                "a valid API key is required: send the header `Authorization: Bearer KEY`".into(),
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Whether `a == b`, in a time that depends on their lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    diff == 0 && a.len() == b.len()
}

async fn health(State(app): State<Arc<App>>) -> Response {
    match app.model.get() {
        Some(_) => Json(json!({"status": "ok"})).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "loading"}))).into_response(),
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let engine = app.model.get().map(|m| m.engine.stats());
    let text = app.metrics.render(engine);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn models(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let model = app.ready()?;
    let data = json!([{"id": model.name, "object": "model", "created": app.created, "owned_by": "gpt"}]);
    Ok(Json(json!({"object": "list", "data": data})).into_response())
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("unknown_url"),
        "no such endpoint: this server has /v1/completions, /v1/chat/completions, /v1/models, /health and /metrics"
            .into(),
    )
}

async fn completions(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    generate(app, Kind::Completion, body).await.into_response()
}

async fn chat(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    generate(app, Kind::Chat, body).await.into_response()
}

/// Both endpoints: checks the request, runs its choices, answers whole or streamed.
async fn generate(app: Arc<App>, kind: Kind, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let body = body.map_err(|e| {
        let message = match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => format!("the request body is over {BODY_LIMIT} bytes"),
            _ => format!("the request body could not be read: {e}"),
        };
        ApiError::new(e.status(), "invalid_request_error", None, message)
    })?;
    let body = api::parse(&body)?;
    let model = app.ready()?;
    if let Some(name) = body.model.as_deref().filter(|&n| n != model.name) {
        return Err(ApiError {
            param: Some("model".into()),
            ..ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("model_not_found"),
                format!("the model `{name}` does not exist: this server serves `{}`", model.name),
            )
        });
    }
    let params = body.params(kind == Kind::Chat, model.max_tokens)?;
    let prompts = match kind {
        Kind::Completion => prompt::completion(&model, &body)?,
        Kind::Chat => prompt::chat(&model, &body)?,
    };
    let run = Run::start(&model, app.metrics.clone(), &prompts, &params)?;
    let prompt_tokens = prompts.iter().map(Vec::len).sum();
    app.metrics
        .prompt_tokens
        .fetch_add(prompt_tokens as u64, Ordering::Relaxed);
    let reply = Reply {
        kind,
        id: format!(
            "{}-{:016x}",
            if kind == Kind::Chat { "chatcmpl" } else { "cmpl" },
            rand::random::<u64>()
        ),
        created: super::now(),
        model: model.name.clone(),
        tokenizer: model.tokenizer.clone(),
        logprobs: params.logprobs,
        prompt_tokens,
    };
    let choices = prompts.len() * params.n;
    match params.stream {
        true => Ok(reply.stream(run, choices, params.include_usage)),
        false => reply.collect(run, choices).await,
    }
}
