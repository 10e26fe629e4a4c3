//! Talking to the Hub: a HEAD on a file's `resolve` URL for its metadata (as
//! `huggingface_hub` does, without following redirects to the CDN), then a GET,
//! resumed with a `Range` request when part of the file is already here; and,
//! for a file whose ETag is not a hash, the API's `paths-info` for its hash.

use super::repo::RepoId;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::io::Read;
use std::time::Duration;
use ureq::http::{HeaderMap, StatusCode};
use ureq::Agent;

/// What the Hub says about one file of a repo at a revision.
#[derive(Clone, Debug)]
pub struct FileInfo {
    /// The commit the revision resolved to (`X-Repo-Commit`).
    pub commit: String,
    /// `X-Linked-Etag` (an LFS file's sha256) or `ETag`, without quotes.
    pub etag: String,
    /// `X-Linked-Size` or `Content-Length`, when sent.
    pub size: Option<u64>,
    /// Where the bytes are: the resolve URL, or the CDN it redirects to.
    pub url: String,
}

/// What the Hub's API says about one file: an entry of its `paths-info` answer.
#[derive(Debug, Deserialize)]
pub struct PathInfo {
    pub path: String,
    pub size: Option<u64>,
    /// The git blob sha1 (for an LFS file, that of its pointer).
    pub oid: Option<String>,
    pub lfs: Option<LfsInfo>,
}

#[derive(Debug, Deserialize)]
pub struct LfsInfo {
    /// The sha256 of the file's bytes.
    pub oid: String,
}

/// A blocking HTTP client for one Hub endpoint.
pub struct Client {
    agent: Agent,
    endpoint: String,
    token: Option<String>,
}

impl Client {
    /// `endpoint` is the Hub's base URL (`https://huggingface.co`); `token`
    /// is sent as `Authorization: Bearer` to that endpoint only.
    pub fn new(endpoint: &str, token: Option<String>) -> Client {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        // A proxy cannot reach this machine's loopback: talk to a local hub directly.
        let proxy = if is_loopback(&endpoint) {
            None
        } else {
            ureq::Proxy::try_from_env()
        };
        let agent = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(proxy)
            .user_agent(concat!("gpt/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .build()
            .into();
        Client { agent, endpoint, token }
    }

    /// The file's metadata, or `None` when the repo has no such file (404).
    pub fn file_info(&self, repo: &RepoId, revision: &str, file: &str) -> Result<Option<FileInfo>> {
        let mut url = format!("{}/{repo}/resolve/{}/{file}", self.endpoint, encode(revision));
        // Follow redirects within the Hub (a renamed repo); stop at the first one
        // elsewhere: its headers already describe the file.
        for _ in 0..5 {
            let mut req = self.agent.head(&url).header("Accept-Encoding", "identity");
            if let Some(auth) = self.auth(&url) {
                req = req.header("Authorization", auth);
            }
            let resp = req.call().with_context(|| self.unreachable(&url))?;
            let (status, headers) = (resp.status(), resp.headers());
            let location = header(headers, "location");
            if status.is_redirection() {
                if let Some(loc) = location.filter(|l| l.starts_with('/')) {
                    url = format!("{}{loc}", origin(&self.endpoint));
                    continue;
                }
            } else if !status.is_success() {
                return self.refused(status, headers, repo, revision, file, &url).map(|()| None);
            }
            let commit = header(headers, "x-repo-commit").with_context(|| {
                format!(
                    "{url} sent no X-Repo-Commit header: is HF_ENDPOINT ({}) a Hugging Face Hub?",
                    self.endpoint
                )
            })?;
            let etag = header(headers, "x-linked-etag")
                .or_else(|| header(headers, "etag"))
                .map(|e| e.trim_start_matches("W/").trim_matches('"').to_string())
                .with_context(|| format!("{url} sent no ETag: cannot name or verify {file}"))?;
            let size = header(headers, "x-linked-size")
                .or_else(|| header(headers, "content-length"))
                .and_then(|s| s.parse().ok());
            let url = if status.is_redirection() {
                location.context("a redirect without Location")?
            } else {
                &url
            };
            return Ok(Some(FileInfo {
                commit: commit.to_string(),
                etag,
                size,
                url: url.to_string(),
            }));
        }
        bail!("too many redirects resolving {file} in {repo}")
    }

    /// The API's entries for `files` at `commit`, as `huggingface_hub`'s
    /// `get_paths_info` asks: `POST /api/models/{repo}/paths-info/{commit}`.
    pub fn paths_info(&self, repo: &RepoId, commit: &str, files: &[&str]) -> Result<Vec<PathInfo>> {
        let url = format!("{}/api/models/{repo}/paths-info/{}", self.endpoint, encode(commit));
        let mut req = self.agent.post(&url).header("Content-Type", "application/json");
        if let Some(auth) = self.auth(&url) {
            req = req.header("Authorization", auth);
        }
        let body = serde_json::json!({ "paths": files, "expand": false }).to_string();
        let resp = req.send(body).with_context(|| self.unreachable(&url))?;
        if !resp.status().is_success() {
            bail!("{url} answered HTTP {}", resp.status());
        }
        let text = resp
            .into_body()
            .read_to_string()
            .with_context(|| format!("reading {url}"))?;
        serde_json::from_str(&text).with_context(|| format!("{url} answered no list of files"))
    }

    /// Opens the file's bytes from offset `from`. Returns the offset the body
    /// actually starts at: `from` when the server honoured the range, else 0.
    pub fn open(&self, info: &FileInfo, from: u64) -> Result<(u64, impl Read)> {
        let mut req = self
            .agent
            .get(&info.url)
            .header("Accept-Encoding", "identity")
            .config()
            .max_redirects(10)
            .build();
        if let Some(auth) = self.auth(&info.url) {
            req = req.header("Authorization", auth);
        }
        if from > 0 {
            req = req.header("Range", format!("bytes={from}-"));
        }
        let resp = req.call().with_context(|| self.unreachable(&info.url))?;
        let start = match resp.status() {
            StatusCode::PARTIAL_CONTENT => {
                let range = header(resp.headers(), "content-range").unwrap_or_default();
                if !range.starts_with(&format!("bytes {from}-")) {
                    bail!("{} answered range {from}- with Content-Range {range:?}", info.url);
                }
                from
            }
            StatusCode::OK => 0,
            status => bail!("downloading {} failed: HTTP {status}", info.url),
        };
        Ok((start, resp.into_body().into_reader()))
    }

    fn auth(&self, url: &str) -> Option<String> {
        let ours = url.starts_with(&format!("{}/", origin(&self.endpoint)));
        self.token.as_ref().filter(|_| ours).map(|t| format!("Bearer {t}"))
    }

    fn unreachable(&self, url: &str) -> String {
        format!("cannot reach {url}: check the network connection, or HF_ENDPOINT")
    }

    /// Turns a refusal into an error saying what to do; a missing file is `Ok`.
    fn refused(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        repo: &RepoId,
        revision: &str,
        file: &str,
        url: &str,
    ) -> Result<()> {
        let code = header(headers, "x-error-code").unwrap_or_default();
        let message = header(headers, "x-error-message")
            .map(|m| format!(" ({m})"))
            .unwrap_or_default();
        let token_hint = match self.token {
            Some(_) => "the HF_TOKEN sent was not accepted for it",
            None => "if it is private or gated, set HF_TOKEN to a token that can read it",
        };
        match (status.as_u16(), code) {
            (_, "RepoNotFound") | (401, _) => {
                bail!(
                    "repository {repo} was not found on {}{message}: {token_hint}",
                    self.endpoint
                )
            }
            (_, "RevisionNotFound") => bail!("revision {revision} was not found in {repo}{message}"),
            (_, "GatedRepo") | (403, _) => {
                bail!("access to {repo} is restricted{message}: accept its conditions on the Hub; {token_hint}")
            }
            (404, _) => Ok(()),
            _ => bail!("asking for {file} in {repo} failed: {url} answered HTTP {status}{message}"),
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

fn is_loopback(url: &str) -> bool {
    let host = origin(url).split("://").nth(1).unwrap_or_default();
    host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]")
}

/// Percent-encodes a revision for a URL path segment (`refs/pr/1` -> `refs%2Fpr%2F1`).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(origin("https://huggingface.co"), "https://huggingface.co");
        assert_eq!(origin("http://127.0.0.1:8080/mirror/x"), "http://127.0.0.1:8080");
        assert!(is_loopback("http://127.0.0.1:8080") && is_loopback("http://localhost"));
        assert!(!is_loopback("https://huggingface.co"));
        assert_eq!(encode("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(encode("v1.0_a-b"), "v1.0_a-b");
    }

    #[test]
    fn token_goes_to_the_endpoint_only() {
        let c = Client::new("https://hub.example/", Some("t".into()));
        assert_eq!(
            c.auth("https://hub.example/org/m/resolve/main/x").as_deref(),
            Some("Bearer t")
        );
        assert_eq!(c.auth("https://hub.example.evil/x"), None);
        assert_eq!(c.auth("https://cdn.example/x"), None);
    }
}
