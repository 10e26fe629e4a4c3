//! `gpt models`: the models in the local Hugging Face cache, with the name
//! to give `--model` and their size.

use super::out::size;
use crate::hub::{Cache, ALIASES};
use anyhow::Result;
use clap::Args;
use std::io::Write;

#[derive(Args, Debug)]
pub struct ModelsArgs {
    /// Print one JSON object per model instead of lines
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: ModelsArgs) -> Result<()> {
    let cache = Cache::from_env()?;
    let repos = cache.repos()?;
    if repos.is_empty() && !a.json {
        eprintln!(
            "no models in the Hugging Face cache at {}: fetch one with `gpt download gpt2`",
            cache.root().display()
        );
    }
    let mut out = super::out::stdout();
    for r in &repos {
        // The shortest name that finds it: gpt2 for openai-community/gpt2.
        let name = ALIASES
            .iter()
            .find(|(_, repo)| *repo == r.repo)
            .map_or(r.repo.as_str(), |(alias, _)| alias);
        if a.json {
            let line = serde_json::json!({
                "name": name,
                "repo": r.repo,
                "refs": r.refs.iter().map(|(rev, commit)| (rev.clone(), commit.as_str().into())).collect::<serde_json::Map<_, _>>(),
                "snapshots": r.snapshots,
                "bytes": r.bytes,
            });
            writeln!(out, "{line}")?;
            continue;
        }
        let refs: Vec<String> = r
            .refs
            .iter()
            .map(|(rev, commit)| format!("{rev}@{:.8}", commit))
            .collect();
        let refs = match refs.is_empty() {
            true => "no revision recorded".to_string(),
            false => refs.join(" "),
        };
        writeln!(out, "{name:<40} {:>10}  {refs}", size(r.bytes))?;
    }
    Ok(())
}
