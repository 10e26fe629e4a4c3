//! `gpt download`: fetch a model from the Hugging Face Hub into the cache
//! (a GPT-2 or Llama directory, or one chosen file: a GGUF model).

use super::out::note;
use crate::hub::{Hub, Name, RepoId};
use anyhow::{Context, Result};
use clap::Args;
use std::io::Write;

#[derive(Args, Debug)]
pub struct DownloadArgs {
    /// gpt2, gpt2-medium, gpt2-large, gpt2-xl, or a Hub repo id (org/name)
    pub model: String,
    /// Branch, tag or commit to download (a pull request: refs/pr/N)
    #[arg(long, default_value = "main")]
    pub revision: String,
    /// Fetch only this file of the repo (a GGUF model: `--file model.Q8_0.gguf`)
    #[arg(long)]
    pub file: Option<String>,
    #[command(flatten)]
    pub quiet: super::out::Quiet,
}

/// Downloads, says what happened on stderr, and prints the snapshot directory on stdout.
pub fn run(a: DownloadArgs) -> Result<()> {
    a.quiet.apply();
    let repo = RepoId::parse(&a.model)?;
    Name::Revision.check(&a.revision).context("bad --revision")?;
    let mut hub = Hub::from_env()?;
    hub.progress = !a.quiet.quiet;
    let done = match &a.file {
        Some(file) => hub.download_file(&repo, &a.revision, file)?,
        None => hub.download(&repo, &a.revision)?,
    };
    for file in &done.missing {
        note!("note: {repo} has no {file} (optional); skipped it");
    }
    let how = match done.fetched.len() {
        0 => "already in the cache".to_string(),
        n => format!("{} downloaded", super::out::count(n, "file", "files")),
    };
    let model = match a.revision.as_str() {
        "main" => a.model.clone(),
        rev => format!("{}@{rev}", a.model),
    };
    match &a.file {
        Some(file) => {
            let path = done.snapshot.join(file);
            note!(
                "{repo} at commit {}: {how}; use it with --model {}",
                done.commit,
                path.display()
            );
            writeln!(super::out::stdout(), "{}", path.display())?;
        }
        None => {
            note!("{repo} at commit {}: {how}; use it with --model {model}", done.commit);
            writeln!(super::out::stdout(), "{}", done.snapshot.display())?;
        }
    }
    Ok(())
}
