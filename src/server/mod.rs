//! `gpt serve`: a model over HTTP, speaking the OpenAI API (completions,
//! chat completions, models) so that its clients work unchanged, with
//! `/health` and Prometheus `/metrics`. The [`Engine`] runs every request
//! on one thread with continuous batching; the HTTP side (axum on a small
//! tokio runtime) only parses, checks and relays.
//!
//! Startup binds first and loads the model after, so `/health` says
//! `loading` (503) until it can answer. SIGINT or SIGTERM stop taking
//! connections, let the running requests finish (at most
//! [`SHUTDOWN_WAIT`]) and end the process cleanly.

mod api;
mod generate;
mod metrics;
mod prompt;
mod respond;
mod routes;

use crate::model::{self, ChatSpec, LoadOptions};
use crate::sample::engine::{Engine, EngineOptions};
use crate::tokenizer::{ChatTemplate, Tokenizer};
use anyhow::{ensure, Context, Result};
use api::ApiError;
use axum::http::StatusCode;
use metrics::Metrics;
use std::future::IntoFuture;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// How long a shutdown waits for the running requests.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(30);
/// Prompt tokens the engine runs per step at most, so a long prompt does not stall the others.
const PREFILL_CHUNK: usize = 256;

/// What `gpt serve` was asked.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The model, as [`model::load`] takes it.
    pub model: String,
    pub load: LoadOptions,
    /// The model's id in the API; `None`: the model's file or directory name.
    pub name: Option<String>,
    pub host: String,
    pub port: u16,
    pub api_key: Option<String>,
    pub max_batch: usize,
    pub max_queue: usize,
    /// Tokens of context per sequence; `None`: the model's.
    pub ctx: Option<usize>,
    /// New tokens one request may ask for at most; `None`: the context.
    pub max_tokens_limit: Option<usize>,
    pub timeout: Duration,
    pub quiet: bool,
}

/// The loaded model and what requests need of it.
pub struct Model {
    pub engine: Engine,
    pub tokenizer: Arc<Tokenizer>,
    pub chat: ChatSpec,
    /// The compiled chat template, or why there is none.
    pub template: Result<ChatTemplate, String>,
    pub name: String,
    pub ctx: usize,
    /// Default and most of `max_tokens`.
    pub max_tokens: usize,
    pub timeout: Duration,
}

/// The server's state, shared by every request.
pub struct App {
    /// Set once the model is loaded.
    pub model: OnceLock<Arc<Model>>,
    pub metrics: Arc<Metrics>,
    pub api_key: Option<String>,
    /// When the server started (Unix seconds), the model's `created`.
    pub created: u64,
}

impl App {
    /// The model, or 503 while it loads.
    fn ready(&self) -> Result<Arc<Model>, ApiError> {
        self.model.get().cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some("model_loading"),
                "the model is still loading: try again when /health says ok".into(),
            )
        })
    }
}

/// Seconds since the Unix epoch.
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Serves until SIGINT or SIGTERM; an error if the address cannot be bound or the model not loaded.
pub fn serve(opts: ServeOptions) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    let app = Arc::new(App {
        model: OnceLock::new(),
        metrics: Arc::default(),
        api_key: opts.api_key.clone(),
        created: now(),
    });
    let result = runtime.block_on(run(opts, app.clone()));
    // Connections still open after the wait end here, which cancels their requests.
    runtime.shutdown_timeout(Duration::from_secs(1));
    if let Some(model) = app.model.get() {
        model.engine.shutdown();
    }
    result
}

async fn run(opts: ServeOptions, app: Arc<App>) -> Result<()> {
    let mut stop = Box::pin(signal()?);
    let listener = tokio::net::TcpListener::bind((opts.host.as_str(), opts.port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on host {} port {} (--port 0 picks a free port)",
                opts.host, opts.port
            )
        })?;
    let local = listener.local_addr().context("the bound address")?;
    println!("listening on http://{local}");
    std::io::stdout().flush().context("writing to stdout")?;
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, routes::router(app.clone())).with_graceful_shutdown(async {
        let _ = stopped.await;
    });
    let mut server = tokio::spawn(server.into_future());

    let quiet = opts.quiet;
    let loading = tokio::task::spawn_blocking(move || load(&opts));
    tokio::select! {
        loaded = loading => {
            let model = loaded.context("loading the model")??;
            if !quiet {
                eprintln!("ready: serving {} ({} slots, a context of {} tokens)", model.name, model.engine.options().max_batch, model.ctx);
            }
            let _ = app.model.set(Arc::new(model));
        }
        () = &mut stop => return Ok(()),
    }
    tokio::select! {
        () = &mut stop => {}
        ended = &mut server => return ended.context("the HTTP server")?.context("the HTTP server"),
    }
    if !quiet {
        eprintln!(
            "stopping: finishing the running requests (at most {} s)",
            SHUTDOWN_WAIT.as_secs()
        );
    }
    let _ = stopping.send(());
    if let Ok(ended) = tokio::time::timeout(SHUTDOWN_WAIT, server).await {
        ended.context("the HTTP server")?.context("the HTTP server")?;
    }
    Ok(())
}

/// Resolves at the first SIGINT or SIGTERM (listening from the call on).
fn signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// Loads the model and starts its engine; `--ctx` must fit the model's context.
fn load(opts: &ServeOptions) -> Result<Model> {
    let loaded = model::load(&opts.model, &opts.load)?;
    let n_ctx = loaded.model.config.n_ctx;
    let ctx = opts.ctx.unwrap_or(n_ctx);
    ensure!(
        (2..=n_ctx).contains(&ctx),
        "--ctx {ctx}: must be between 2 and the model's context of {n_ctx} tokens"
    );
    if let Some(limit) = opts.max_tokens_limit {
        ensure!(
            (1..=ctx).contains(&limit),
            "--max-tokens-limit {limit}: must be between 1 and the context of {ctx} tokens"
        );
    }
    let name = opts.name.clone().unwrap_or_else(|| model_name(&opts.model));
    let template = loaded.chat.compile().map_err(|e| format!("{e:#}"));
    let engine = Engine::start(
        loaded.model,
        EngineOptions {
            max_batch: opts.max_batch,
            max_queue: opts.max_queue,
            ctx,
            prefill_chunk: PREFILL_CHUNK,
        },
    );
    Ok(Model {
        engine,
        tokenizer: Arc::new(loaded.tokenizer),
        chat: loaded.chat,
        template,
        name,
        ctx,
        max_tokens: opts.max_tokens_limit.unwrap_or(ctx),
        timeout: opts.timeout,
    })
}

/// A model's default id: its file's stem or its directory's name, or the
/// name it was fetched by.
fn model_name(spec: &str) -> String {
    let path = Path::new(spec);
    let name = match path.is_file() {
        true => path.file_stem(),
        false if path.is_dir() => path.file_name(),
        false => None,
    };
    name.map_or_else(|| spec.to_string(), |n| n.to_string_lossy().into_owned())
}
