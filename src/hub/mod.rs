//! The Hugging Face Hub: download a GPT-2 model (`config.json`,
//! `model.safetensors`, `vocab.json`, `merges.txt`) into the cache the Python
//! tools use, and find it there again by name.
//!
//! - [`Hub::download`] asks for every file's metadata first (so a missing
//!   required file fails before any large transfer), pins the commit the
//!   revision points to, fetches the missing blobs (resumable, verified,
//!   atomic), and only then links the snapshot and writes `refs/{revision}`:
//!   a snapshot in the cache is always complete.
//! - [`resolve_model`] turns `--model gpt2` (or `org/name`, or a directory)
//!   into a directory to load, without touching the network.
//!
//! Environment, as `huggingface_hub` reads it: `HF_ENDPOINT`, `HF_TOKEN` (or
//! the token `huggingface-cli login` saved in `$HF_HOME/token`), `HF_HOME`,
//! `HF_HUB_CACHE`.

mod cache;
mod fetch;
mod http;
mod names;
mod repo;
mod verify;

pub use cache::{Cache, CachedRepo};
pub use names::Name;
pub use repo::{RepoId, ALIASES};

use names::is_commit_hash;

use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};

/// The Hub everyone uses unless `HF_ENDPOINT` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
const CONFIG_FILE: &str = "config.json";
/// What a model needs, and what it can do without.
const REQUIRED: [&str; 2] = [CONFIG_FILE, "model.safetensors"];
const OPTIONAL: [&str; 2] = ["vocab.json", "merges.txt"];

/// Where to download from, where to, and as whom. (No `Debug`: it holds the token.)
#[derive(Clone)]
pub struct Hub {
    pub endpoint: String,
    pub cache: Cache,
    pub token: Option<String>,
    /// Show a progress bar per file (drawn only on a terminal).
    pub progress: bool,
}

/// What [`Hub::download`] left in the cache.
#[derive(Clone, Debug)]
pub struct Downloaded {
    /// `snapshots/{commit}`: the directory to load.
    pub snapshot: PathBuf,
    pub commit: String,
    /// Files fetched now (the others were already in the cache).
    pub fetched: Vec<String>,
    /// Optional files the repo does not have.
    pub missing: Vec<String>,
}

impl Hub {
    /// The Hub and cache the environment names, with progress bars.
    pub fn from_env() -> Result<Hub> {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.trim().is_empty());
        let token = match var("HF_TOKEN") {
            Some(t) => Some(t),
            None => std::fs::read_to_string(cache::hf_home()?.join("token")).ok(),
        };
        Ok(Hub {
            endpoint: var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()),
            cache: Cache::from_env()?,
            token: token.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()),
            progress: true,
        })
    }

    /// Downloads the model files of `repo` at `revision` (a branch, tag or commit).
    pub fn download(&self, repo: &RepoId, revision: &str) -> Result<Downloaded> {
        let not_found = |file: &str| not_found(file, repo, revision, &self.endpoint);
        self.download_files(repo, revision, &REQUIRED, &OPTIONAL, &not_found)
    }

    /// Downloads the one file `file` of `repo` at `revision` (a GGUF model, say).
    pub fn download_file(&self, repo: &RepoId, revision: &str, file: &str) -> Result<Downloaded> {
        Name::File.check(file).context("bad --file")?;
        let not_found = |file: &str| {
            format!(
                "{file} was not found in {repo} at revision {revision} on {}: check the file's name (and folder) \
                 on the repo's \"Files\" page",
                self.endpoint
            )
        };
        self.download_files(repo, revision, &[file], &[], &not_found)
    }

    /// Downloads `required` and what there is of `optional` (`required` not empty).
    fn download_files(
        &self,
        repo: &RepoId,
        revision: &str,
        required: &[&str],
        optional: &[&str],
        not_found: &dyn Fn(&str) -> String,
    ) -> Result<Downloaded> {
        Name::Revision.check(revision)?;
        let client = http::Client::new(&self.endpoint, self.token.clone());
        // The first answer pins the commit (unless the revision is one); the
        // other files are asked for at that commit, so a push during the
        // download cannot mix two versions.
        let head = required.first().context("nothing to download")?;
        let first = client
            .file_info(repo, revision, head)?
            .with_context(|| not_found(head))?;
        let commit = if is_commit_hash(revision) {
            revision
        } else {
            &first.commit
        }
        .to_string();
        check_answer(head, &first, &commit)?;
        let mut files = vec![(*head, first)];
        let mut missing = Vec::new();
        for &file in required.iter().chain(optional).skip(1) {
            match client.file_info(repo, &commit, file)? {
                Some(info) => {
                    check_answer(file, &info, &commit)?;
                    files.push((file, info));
                }
                None if optional.contains(&file) => missing.push(file.to_string()),
                None => bail!(not_found(file)),
            }
        }
        // The blobs to fetch: those not in the cache, once each.
        let mut todo: Vec<(&str, &http::FileInfo, PathBuf)> = Vec::new();
        for (file, info) in &files {
            let blob = self.cache.blob_path(repo, &info.etag)?;
            if !blob.is_file() && !todo.iter().any(|(_, _, b)| *b == blob) {
                todo.push((file, info, blob));
            }
        }
        let wanted: Vec<_> = todo.iter().map(|(file, info, _)| (*file, *info)).collect();
        let checksums = verify::checksums(&client, repo, &commit, &wanted)?;
        for ((file, info, blob), checksum) in todo.iter().zip(&checksums) {
            let label = format!("{repo}/{file}");
            fetch::fetch(&client, info, checksum.as_ref(), blob, &label, self.progress)?;
        }
        for (file, info) in &files {
            self.cache.link(repo, &commit, file, &info.etag)?;
        }
        self.cache.write_ref(repo, revision, &commit)?;
        Ok(Downloaded {
            snapshot: self.cache.snapshot_dir(repo, &commit)?,
            commit,
            fetched: todo.iter().map(|(file, _, _)| file.to_string()).collect(),
            missing,
        })
    }
}

fn not_found(file: &str, repo: &RepoId, revision: &str, endpoint: &str) -> String {
    format!("{file} was not found in {repo} at revision {revision} on {endpoint}: is it a GPT-2 model with safetensors weights?")
}

/// Refuses the Hub's answer about `file` when its commit or ETag cannot name a
/// folder or file in the cache, or it describes the file at another commit
/// than the `pinned` one.
fn check_answer(file: &str, info: &http::FileInfo, pinned: &str) -> Result<()> {
    let unusable = || format!("the Hub's answer for {file} is unusable");
    Name::Commit.check(&info.commit).with_context(unusable)?;
    Name::Etag.check(&info.etag).with_context(unusable)?;
    if info.commit != pinned {
        bail!(
            "the Hub described {file} at commit {}, not at {pinned}, the commit it was asked for",
            info.commit
        );
    }
    Ok(())
}

/// The directory a `--model` argument names: an existing path as it is; else
/// a model name (`gpt2`, …) or repo id (`org/name`), optionally `@revision`,
/// found in the Hugging Face cache. Never downloads: a model not in the cache
/// is an error saying to run `gpt download`.
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    resolve_model_in(&Cache::from_env()?, spec)
}

/// [`resolve_model`] with an explicit cache.
pub fn resolve_model_in(cache: &Cache, spec: &str) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.exists() {
        return Ok(PathBuf::from(spec));
    }
    // Only a path looks like this: absolute, relative to `.`/`..`, or deeper than `org/name`.
    if path.is_absolute() || spec.starts_with('.') || spec.split('@').next().unwrap_or(spec).matches('/').count() > 1 {
        bail!("model {spec} does not exist: give a model directory or file, or a name fetched with `gpt download`");
    }
    let (name, revision) = spec.split_once('@').unwrap_or((spec, "main"));
    let repo = RepoId::parse(name).map_err(|e| anyhow!("there is no file or directory {spec:?}, and {e}"))?;
    let found = cache.snapshot(&repo, revision, name);
    // `org/name` may as well be a mistyped path: say that it is not one either.
    if name.contains('/') {
        return found.with_context(|| format!("there is no directory {spec:?}"));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_paths_names_and_unknowns() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("hub"));
        let here = dir.path().to_str().unwrap();
        assert_eq!(resolve_model_in(&cache, here).unwrap(), dir.path());

        let err = format!("{:#}", resolve_model_in(&cache, "gpt2").unwrap_err());
        assert!(
            err.contains("openai-community/gpt2") && err.contains("run `gpt download gpt2`"),
            "{err}"
        );
        let err = format!("{:#}", resolve_model_in(&cache, "org/m@v1").unwrap_err());
        assert!(err.contains("no directory \"org/m@v1\"") && err.contains("`gpt download org/m --revision v1`"));
        let err = format!("{:#}", resolve_model_in(&cache, "no-such-dir").unwrap_err());
        assert!(
            err.contains("no file or directory \"no-such-dir\"") && err.contains("not a model name"),
            "{err}"
        );
        for path in ["/no/such/model", "./runs/missing", "runs/a/b"] {
            let err = format!("{:#}", resolve_model_in(&cache, path).unwrap_err());
            assert!(err.contains(&format!("model {path} does not exist")), "{err}");
        }

        let repo = RepoId::parse("gpt2").unwrap();
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let snap = cache.snapshot_dir(&repo, commit).unwrap();
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join(CONFIG_FILE), "{}").unwrap();
        cache.write_ref(&repo, "main", commit).unwrap();
        assert_eq!(resolve_model_in(&cache, "gpt2").unwrap(), snap);
        assert_eq!(resolve_model_in(&cache, "openai-community/gpt2").unwrap(), snap);
        assert_eq!(resolve_model_in(&cache, &format!("gpt2@{commit}")).unwrap(), snap);
    }
}
