//! Shared by the benches: where the peer's Python is.

/// The Python that runs peers: `$GPT_BENCH_PYTHON`, else
/// `~/.cache/gpt-venv/bin/python`, else `python3`.
pub fn python() -> String {
    if let Ok(p) = std::env::var("GPT_BENCH_PYTHON") {
        return p;
    }
    let venv = format!(
        "{}/.cache/gpt-venv/bin/python",
        std::env::var("HOME").unwrap_or_default()
    );
    if std::path::Path::new(&venv).exists() {
        venv
    } else {
        "python3".into()
    }
}
