//! The Hugging Face cache, laid out exactly as `huggingface_hub` lays it out so
//! the Python tools and `gpt` share downloads:
//!
//! ```text
//! {root}/models--{org}--{name}/
//!     blobs/{etag}                      file contents, named by ETag (sha256 for LFS files)
//!     refs/{revision}                   the commit a branch or tag pointed to
//!     snapshots/{commit}/{file}         -> ../../blobs/{etag} (relative symlink)
//! ```
//!
//! Every function here checks the names it builds a path from ([`Name`]), so
//! no caller can reach outside the repo's folder.

use super::names::{is_commit_hash, Name};
use super::repo::RepoId;
use crate::io::write_atomic;
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// A Hub cache directory (`$HF_HOME/hub` by default).
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    /// The cache `huggingface_hub` uses: `$HF_HUB_CACHE`, else `$HF_HOME/hub`,
    /// else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
    pub fn from_env() -> Result<Cache> {
        if let Some(dir) = env_path("HF_HUB_CACHE") {
            return Ok(Cache::new(dir));
        }
        Ok(Cache::new(hf_home()?.join("hub")))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn repo_dir(&self, repo: &RepoId) -> PathBuf {
        self.root.join(repo.cache_folder())
    }

    pub fn blob_path(&self, repo: &RepoId, etag: &str) -> Result<PathBuf> {
        Name::Etag.check(etag)?;
        Ok(self.repo_dir(repo).join("blobs").join(etag))
    }

    /// The commit `revision` stands for: itself when it is a commit hash, else
    /// what `refs/{revision}` holds (`None` when that was never downloaded).
    pub fn commit(&self, repo: &RepoId, revision: &str) -> Result<Option<String>> {
        if is_commit_hash(revision) {
            return Ok(Some(revision.to_string()));
        }
        let path = self.ref_path(repo, revision)?;
        let commit = match fs::read_to_string(&path) {
            Ok(s) => s.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Name::Commit.check(&commit).with_context(|| {
            format!(
                "{} does not hold a commit: delete it and download {repo} again",
                path.display()
            )
        })?;
        Ok(Some(commit))
    }

    /// Records that `revision` points to `commit` (nothing to record when the
    /// revision is that commit).
    pub fn write_ref(&self, repo: &RepoId, revision: &str, commit: &str) -> Result<()> {
        let path = self.ref_path(repo, revision)?;
        Name::Commit.check(commit)?;
        if revision == commit {
            return Ok(());
        }
        write_atomic(&path, commit.as_bytes())
    }

    fn ref_path(&self, repo: &RepoId, revision: &str) -> Result<PathBuf> {
        Name::Revision.check(revision)?;
        Ok(self.repo_dir(repo).join("refs").join(revision))
    }

    pub fn snapshot_dir(&self, repo: &RepoId, commit: &str) -> Result<PathBuf> {
        Name::Commit.check(commit)?;
        Ok(self.repo_dir(repo).join("snapshots").join(commit))
    }

    /// Makes `snapshots/{commit}/{file}` point at `blobs/{etag}`: a relative
    /// symlink where the file system allows one, else a copy.
    pub fn link(&self, repo: &RepoId, commit: &str, file: &str, etag: &str) -> Result<()> {
        Name::File.check(file)?;
        let blob = self.blob_path(repo, etag)?;
        let pointer = self.snapshot_dir(repo, commit)?.join(file);
        let dir = pointer.parent().expect("a snapshot file has a parent");
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        if fs::symlink_metadata(&pointer).is_ok() {
            fs::remove_file(&pointer).with_context(|| format!("replacing {}", pointer.display()))?;
        }
        // From snapshots/{commit}/{file} up to the repo folder, then into blobs/.
        let depth = 2 + file.matches('/').count();
        let target = Path::new(&"../".repeat(depth)).join("blobs").join(etag);
        if symlink(&target, &pointer).is_ok() {
            return Ok(());
        }
        let tmp = pointer.with_extension("copying");
        fs::copy(&blob, &tmp)
            .and_then(|_| fs::rename(&tmp, &pointer))
            .with_context(|| format!("copying {} to {}", blob.display(), pointer.display()))?;
        Ok(())
    }

    /// The snapshot folder of a downloaded model, or an error saying how to get it.
    pub fn snapshot(&self, repo: &RepoId, revision: &str, spec: &str) -> Result<PathBuf> {
        let download = match revision {
            "main" => format!("gpt download {spec}"),
            rev => format!("gpt download {spec} --revision {rev}"),
        };
        let Some(commit) = self.commit(repo, revision)? else {
            bail!(
                "{repo} (revision {revision}) is not in the Hugging Face cache at {}: run `{download}` first",
                self.root.display()
            );
        };
        let dir = self.snapshot_dir(repo, &commit)?;
        // A model directory has its config; a GGUF file (`gpt download --file`) is a model by itself.
        let has_gguf = || {
            fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
                .any(|e| e.path().extension() == Some("gguf".as_ref()) && e.path().is_file())
        };
        if !dir.join(super::CONFIG_FILE).is_file() && !has_gguf() {
            bail!(
                "the cached snapshot {} of {repo} is incomplete: run `{download}` again",
                dir.display()
            );
        }
        Ok(dir)
    }
}

/// A model repo found in the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedRepo {
    /// `org/name`.
    pub repo: String,
    /// Each revision recorded in `refs/` and the commit it points to.
    pub refs: Vec<(String, String)>,
    /// The snapshot folders, one per commit.
    pub snapshots: Vec<PathBuf>,
    /// Bytes it takes on disk (a file linked from several snapshots counts once).
    pub bytes: u64,
}

impl Cache {
    /// The model repos in the cache, by name; none when the cache does not exist.
    pub fn repos(&self) -> Result<Vec<CachedRepo>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", self.root.display())),
        };
        let mut repos = Vec::new();
        for dir in entries.flatten().map(|e| e.path()) {
            let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // `models--org--name`: repo ids hold no `--`, so the first one splits.
            let Some(repo) = name.strip_prefix("models--").map(|r| r.replacen("--", "/", 1)) else {
                continue;
            };
            let mut refs = Vec::new();
            files_below(&dir.join("refs"), "", &mut |revision, path| {
                let commit = fs::read_to_string(path).unwrap_or_default().trim().to_string();
                refs.push((revision.to_string(), commit));
            });
            let mut snapshots: Vec<PathBuf> = fs::read_dir(dir.join("snapshots"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect();
            snapshots.sort();
            // What it takes on disk: the files, not the links to them.
            let mut bytes = 0;
            files_below(&dir, "", &mut |_, path| {
                bytes += fs::symlink_metadata(path).map_or(0, |m| if m.is_file() { m.len() } else { 0 });
            });
            refs.sort();
            repos.push(CachedRepo {
                repo,
                refs,
                snapshots,
                bytes,
            });
        }
        repos.sort_by(|a, b| a.repo.cmp(&b.repo));
        Ok(repos)
    }
}

/// Calls `f(relative name, path)` for every file below `dir` (`refs/pr/1` nests).
fn files_below(dir: &Path, prefix: &str, f: &mut dyn FnMut(&str, &Path)) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let path = entry.path();
        // Links are not followed: a link to a folder is a leaf.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            files_below(&path, &format!("{name}/"), f);
        } else {
            f(&name, &path);
        }
    }
}

/// `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
pub fn hf_home() -> Result<PathBuf> {
    if let Some(dir) = env_path("HF_HOME") {
        return Ok(dir);
    }
    if let Some(dir) = env_path("XDG_CACHE_HOME") {
        return Ok(dir.join("huggingface"));
    }
    match env_path("HOME") {
        Some(home) => Ok(home.join(".cache").join("huggingface")),
        None => bail!("cannot find the Hugging Face cache: set HF_HOME (or HOME)"),
    }
}

/// A non-empty path from the environment.
fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from)
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(windows)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::windows::fs::symlink_file(target, link)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn link_is_relative_and_refs_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let repo = RepoId::parse("org/tiny").unwrap();
        let missing = cache.snapshot(&repo, "main", "org/tiny").unwrap_err().to_string();
        assert!(missing.contains("run `gpt download org/tiny` first"), "{missing}");

        let blob = cache.blob_path(&repo, "e1").unwrap();
        fs::create_dir_all(blob.parent().unwrap()).unwrap();
        fs::write(blob, "{}").unwrap();
        cache.link(&repo, COMMIT, "config.json", "e1").unwrap();
        cache.link(&repo, COMMIT, "config.json", "e1").unwrap(); // replacing is fine
        let pointer = cache.snapshot_dir(&repo, COMMIT).unwrap().join("config.json");
        assert_eq!(fs::read_link(&pointer).unwrap(), Path::new("../../blobs/e1"));
        assert_eq!(fs::read_to_string(&pointer).unwrap(), "{}");

        cache.write_ref(&repo, "main", COMMIT).unwrap();
        let root = dir.path().join("models--org--tiny");
        assert_eq!(fs::read_to_string(root.join("refs/main")).unwrap(), COMMIT);
        assert_eq!(
            cache.snapshot(&repo, "main", "x").unwrap(),
            root.join("snapshots").join(COMMIT)
        );
        // A commit hash needs no ref.
        assert_eq!(
            cache.snapshot(&repo, COMMIT, "x").unwrap(),
            root.join("snapshots").join(COMMIT)
        );
        let err = cache.snapshot(&repo, "v2", "org/tiny").unwrap_err().to_string();
        assert!(err.contains("gpt download org/tiny --revision v2"), "{err}");
    }
}
