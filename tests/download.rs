//! `gpt download` end to end against a small Hub served by the test on
//! 127.0.0.1: the cache layout, loading by name, a token, a resumed partial
//! file, an interrupted transfer, corrupt downloads and missing files; and the
//! same Hub turned hostile: revisions, commits, ETags and file names that would
//! lead outside the cache, and ETags that are not hashes.

use gpt::hub::{resolve_model_in, Cache, Hub, RepoId};
use gpt::model::{Gpt, GptConfig, Init};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const REPO: &str = "org/tiny";
const COMMIT: &str = "a9b8c7d6e5f40312a9b8c7d6e5f40312a9b8c7d6";
const TOKEN: &str = "hf_secret";
/// Where a path that climbs four folders up from the cache's `refs/`,
/// `blobs/` or `snapshots/` lands: still inside the test's temporary folder.
const ESCAPE: &str = "../../../../escaped";

/// One file as the Hub serves it.
#[derive(Clone)]
struct File {
    /// The bytes sent (differ from the true content in corruption tests).
    body: Vec<u8>,
    /// `X-Linked-Etag` (LFS, the true sha256) or `ETag` (the true git blob sha1).
    etag: String,
    lfs: bool,
    /// Send only this many bytes of the next full GET, then hang up.
    cut: Option<usize>,
    /// Headers sent instead of the true ones (a hostile Hub).
    lie: Vec<(&'static str, String)>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn lfs(content: &[u8]) -> File {
    let etag = hex(&Sha256::digest(content));
    File {
        body: content.to_vec(),
        etag,
        lfs: true,
        cut: None,
        lie: Vec::new(),
    }
}

fn git(content: &[u8]) -> File {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", content.len()).as_bytes());
    h.update(content);
    File {
        body: content.to_vec(),
        etag: hex(&h.finalize()),
        lfs: false,
        cut: None,
        lie: Vec::new(),
    }
}

/// A tiny GPT-2 checkpoint plus tokenizer files, as the Hub would hold them.
fn tiny_model() -> (Gpt, HashMap<&'static str, File>) {
    let model = Gpt::new(GptConfig::gpt2(11, 8, 12, 3, 2), Init::Gpt2, &mut gpt::tensor::rng(0));
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let files = HashMap::from([
        ("config.json", git(&fs::read(dir.path().join("config.json")).unwrap())),
        (
            "model.safetensors",
            lfs(&fs::read(dir.path().join("model.safetensors")).unwrap()),
        ),
        ("vocab.json", git(br#"{"a": 0, "b": 1}"#)),
        ("merges.txt", git(b"#version: 0.2\na b\n")),
    ]);
    (model, files)
}

/// Makes every file's ETag an opaque name, not a hash (as a mirror might send).
fn opaque_etags(files: &mut HashMap<&'static str, File>) {
    for (name, file) in files.iter_mut() {
        let header = if file.lfs { "X-Linked-Etag" } else { "ETag" };
        file.lie.push((header, format!("\"{}\"", opaque(name))));
    }
}

/// The opaque ETag [`opaque_etags`] gives `file`.
fn opaque(file: &str) -> String {
    format!("opaque-{}", file.replace('.', "-"))
}

/// A request the server saw: method, path, lowercase header names, body.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: String,
}

/// How the server behaves beyond serving `REPO`.
#[derive(Clone, Default)]
struct Rules {
    /// Refuse requests without `Authorization: Bearer {token}` (the CDN never asks).
    token: Option<&'static str>,
    /// Redirect LFS files to `{cdn}/cdn/{sha256}`, as the Hub does to its CDN.
    cdn: Option<String>,
    /// Answer for any revision, not only `main`, `COMMIT` and `refs/pr/1`.
    any_revision: bool,
    /// Answer `POST /api/models/{REPO}/paths-info/{revision}` (else 404).
    api: bool,
    /// List every file there under this name instead of its own.
    listed_as: Option<&'static str>,
}

/// A Hub with one repo, `REPO`, that also serves `/cdn/{sha256}`, answering on
/// 127.0.0.1 until dropped (or 60 s).
struct Server {
    url: String,
    files: Arc<Mutex<HashMap<&'static str, File>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(files: HashMap<&'static str, File>, rules: Rules) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let files = Arc::new(Mutex::new(files));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s, st) = (files.clone(), seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !st.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, &f, &s, &rules),
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Server {
            url,
            files,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn gets(&self, file: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|r| r.method == "GET" && r.path.ends_with(file))
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers one request (each connection carries one: `Connection: close`).
fn serve(stream: TcpStream, files: &Mutex<HashMap<&'static str, File>>, seen: &Mutex<Vec<Seen>>, rules: &Rules) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = HashMap::new();
    for _ in 0..100 {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let mut body = vec![0; headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0)];
    let _ = reader.read_exact(&mut body);
    let body = String::from_utf8_lossy(&body).into_owned();
    seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        headers: headers.clone(),
        body: body.clone(),
    });
    let mut out = stream;
    let mut reply = |status: &str, extra: &[(&str, String)], body: &[u8]| {
        let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        for (k, v) in extra {
            head += &format!("{k}: {v}\r\n");
        }
        let _ = out.write_all(format!("{head}\r\n").as_bytes());
        let _ = out.write_all(body);
    };
    let error = |code: &str| [("X-Error-Code", code.to_string()), ("Content-Length", "0".to_string())];
    let mut files = files.lock().unwrap();
    if path.starts_with("/api/") {
        if !(rules.api && method == "POST" && path.starts_with(&format!("/api/models/{REPO}/paths-info/"))) {
            return reply("404 Not Found", &error("EntryNotFound"), b"");
        }
        let json = paths_info(&files, &body, rules.listed_as);
        return reply("200 OK", &[("Content-Length", json.len().to_string())], json.as_bytes());
    }
    let file = if let Some(sha) = path.strip_prefix("/cdn/") {
        files.values_mut().find(|f| f.etag == sha)
    } else {
        let authorized = rules
            .token
            .is_none_or(|t| headers.get("authorization") == Some(&format!("Bearer {t}")));
        let Some(rest) = path.strip_prefix(&format!("/{REPO}/resolve/")).filter(|_| authorized) else {
            return reply("401 Unauthorized", &error("RepoNotFound"), b"");
        };
        let (revision, name) = rest.split_once('/').unwrap_or((rest, ""));
        if !rules.any_revision && !["main", COMMIT, "refs%2Fpr%2F1"].contains(&revision) {
            return reply("404 Not Found", &error("RevisionNotFound"), b"");
        }
        files.get_mut(name)
    };
    let Some(file) = file else {
        return reply("404 Not Found", &error("EntryNotFound"), b"");
    };
    let range_from = headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse::<usize>().ok());
    let cut = if method == "GET" && range_from.is_none() {
        file.cut.take()
    } else {
        None
    };
    let (file, len) = (file.clone(), file.body.len());
    let mut h = vec![
        ("X-Repo-Commit", COMMIT.to_string()),
        ("Accept-Ranges", "bytes".to_string()),
        (
            "ETag",
            format!("\"{}\"", if file.lfs { "not-the-sha256" } else { &file.etag }),
        ),
    ];
    if file.lfs {
        h.push(("X-Linked-Etag", format!("\"{}\"", file.etag)));
        h.push(("X-Linked-Size", len.to_string()));
    }
    for (name, value) in &file.lie {
        h.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        h.push((name, value.clone()));
    }
    match (method.as_str(), range_from) {
        ("HEAD", _) if file.lfs && rules.cdn.is_some() => {
            h.push(("Location", format!("{}/cdn/{}", rules.cdn.as_ref().unwrap(), file.etag)));
            h.push(("Content-Length", "0".to_string()));
            reply("302 Found", &h, b"")
        }
        ("HEAD", _) => {
            h.push(("Content-Length", len.to_string()));
            reply("200 OK", &h, b"")
        }
        ("GET", Some(from)) if from < len => {
            h.push(("Content-Length", (len - from).to_string()));
            h.push(("Content-Range", format!("bytes {from}-{}/{len}", len - 1)));
            reply("206 Partial Content", &h, &file.body[from..])
        }
        ("GET", _) => {
            h.push(("Content-Length", len.to_string()));
            reply("200 OK", &h, &file.body[..cut.unwrap_or(len)])
        }
        _ => reply("405 Method Not Allowed", &[("Content-Length", "0".to_string())], b""),
    }
}

/// The Hub API's `paths-info` answer for the paths a request body asks about:
/// a git blob sha1 (`oid`) for every file, an LFS file's sha256 in `lfs.oid`.
fn paths_info(files: &HashMap<&'static str, File>, body: &str, listed_as: Option<&str>) -> String {
    let asked: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let entries: Vec<serde_json::Value> = asked["paths"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p.as_str()?, files.get(p.as_str()?)?)))
        .map(|(path, f)| {
            let path = listed_as.unwrap_or(path);
            let size = f.body.len();
            if !f.lfs {
                return serde_json::json!({"type": "file", "path": path, "size": size, "oid": f.etag});
            }
            let pointer = format!(
                "version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize {size}\n",
                f.etag
            );
            let lfs = serde_json::json!({"oid": f.etag, "size": size, "pointerSize": pointer.len()});
            let oid = git(pointer.as_bytes()).etag;
            serde_json::json!({"type": "file", "path": path, "size": size, "oid": oid, "lfs": lfs})
        })
        .collect();
    serde_json::to_string(&entries).unwrap()
}

fn hub(server: &Server, cache: &Path, token: Option<&str>) -> Hub {
    Hub {
        endpoint: server.url.clone(),
        cache: Cache::new(cache),
        token: token.map(String::from),
        progress: false,
    }
}

fn repo() -> RepoId {
    RepoId::parse(REPO).unwrap()
}

fn repo_dir(cache: &Path) -> PathBuf {
    cache.join("models--org--tiny")
}

/// Every file, link and folder below `dir` that is neither inside `allowed`
/// nor one of the folders leading to it.
fn outside(dir: &Path, allowed: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten() {
        let entry = entry.unwrap();
        let (path, kind) = (entry.path(), entry.file_type().unwrap());
        if !path.starts_with(allowed) && !allowed.starts_with(&path) {
            found.push(path.clone());
        }
        if kind.is_dir() {
            found.extend(outside(&path, allowed));
        }
    }
    found
}

/// `gpt download REPO ARGS…` with a clean environment pointing at the test server.
fn gpt_download(server: &Server, hf_home: &Path, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gpt"));
    cmd.args(["download", REPO])
        .args(args)
        .env("HF_HOME", hf_home)
        .env("HF_ENDPOINT", &server.url)
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_TOKEN");
    if let Some(t) = token {
        cmd.env("HF_TOKEN", t);
    }
    cmd.output().expect("gpt runs")
}

#[test]
fn downloads_into_the_hub_cache_and_loads_by_name() {
    let (model, files) = tiny_model();
    let sha = files["model.safetensors"].etag.clone();
    let server = Server::start(
        files,
        Rules {
            token: Some(TOKEN),
            ..Rules::default()
        },
    );
    let home = tempfile::tempdir().unwrap();

    // Without the token the private repo is refused, with a hint.
    let out = gpt_download(&server, home.path(), None, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("org/tiny was not found") && err.contains("HF_TOKEN"),
        "{err}"
    );

    let out = gpt_download(&server, home.path(), Some(TOKEN), &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cache = home.path().join("hub");
    let snapshot = repo_dir(&cache).join("snapshots").join(COMMIT);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        snapshot.to_str().unwrap()
    );
    assert_eq!(fs::read_to_string(repo_dir(&cache).join("refs/main")).unwrap(), COMMIT);
    let link = fs::read_link(snapshot.join("model.safetensors")).unwrap();
    assert_eq!(link, Path::new("../../blobs").join(&sha));
    assert_eq!(
        fs::read_link(snapshot.join("merges.txt")).unwrap().parent(),
        Some(Path::new("../../blobs"))
    );
    // Every file after the first is asked for at the pinned commit, with the token.
    let seen = server.seen();
    assert!(seen
        .iter()
        .any(|r| r.path == format!("/{REPO}/resolve/{COMMIT}/model.safetensors")));
    let authorized = |r: &Seen| r.headers.get("authorization").map(String::as_str) == Some("Bearer hf_secret");
    assert_eq!(seen.iter().filter(|r| authorized(r)).count(), 8, "{seen:?}"); // 4 HEAD + 4 GET

    let dir = resolve_model_in(&Cache::new(&cache), REPO).unwrap();
    assert_eq!(dir, snapshot);
    assert_eq!(Gpt::load(&dir).unwrap().params, model.params);

    // A second download finds everything cached: metadata only, no transfer.
    let out = gpt_download(&server, home.path(), Some(TOKEN), &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already in the cache"));
    assert_eq!(server.seen().iter().filter(|r| r.method == "GET").count(), 4);
}

#[test]
fn lfs_files_come_from_the_cdn_the_hub_redirects_to_without_the_token() {
    let (model, files) = tiny_model();
    let cdn = Server::start(files.clone(), Rules::default());
    let server = Server::start(
        files,
        Rules {
            token: Some(TOKEN),
            cdn: Some(cdn.url.clone()),
            ..Rules::default()
        },
    );
    let cache = tempfile::tempdir().unwrap();

    let done = hub(&server, cache.path(), Some(TOKEN))
        .download(&repo(), "main")
        .unwrap();
    assert_eq!(Gpt::load(&done.snapshot).unwrap().params, model.params);
    assert!(
        server.gets("model.safetensors").is_empty(),
        "the HEAD's redirect was not followed"
    );
    let from_cdn = cdn.seen();
    assert_eq!(from_cdn.len(), 1, "{from_cdn:?}");
    assert_eq!(
        (from_cdn[0].method.as_str(), from_cdn[0].headers.get("authorization")),
        ("GET", None)
    );
}

#[test]
fn resumes_a_partial_file_with_a_range_request() {
    let (model, files) = tiny_model();
    let content = files["model.safetensors"].body.clone();
    let blob = repo_dir(Path::new(""))
        .join("blobs")
        .join(&files["model.safetensors"].etag);
    let server = Server::start(files, Rules::default());
    let cache = tempfile::tempdir().unwrap();
    let partial = cache.path().join(format!("{}.incomplete", blob.display()));
    fs::create_dir_all(partial.parent().unwrap()).unwrap();
    let half = content.len() / 2;
    fs::write(&partial, &content[..half]).unwrap();

    let done = hub(&server, cache.path(), None).download(&repo(), "main").unwrap();
    let gets = server.gets("model.safetensors");
    assert_eq!(gets.len(), 1);
    assert_eq!(gets[0].headers.get("range"), Some(&format!("bytes={half}-")));
    assert!(!partial.exists());
    assert_eq!(fs::read(cache.path().join(&blob)).unwrap(), content);
    assert_eq!(Gpt::load(&done.snapshot).unwrap().params, model.params);
}

#[test]
fn an_interrupted_transfer_resumes_on_the_next_run() {
    let (model, mut files) = tiny_model();
    let len = files["model.safetensors"].body.len();
    files.get_mut("model.safetensors").unwrap().cut = Some(len / 3);
    let server = Server::start(files, Rules::default());
    let cache = tempfile::tempdir().unwrap();
    let hub = hub(&server, cache.path(), None);

    let err = format!("{:#}", hub.download(&repo(), "main").unwrap_err());
    let stopped = format!("org/tiny/model.safetensors stopped after {} of {len} bytes", len / 3);
    assert!(
        err.contains(&stopped) && err.contains("run the same command again to resume"),
        "{err}"
    );
    assert!(!repo_dir(cache.path()).join("snapshots").exists());
    let done = hub.download(&repo(), "main").unwrap();
    assert_eq!(Gpt::load(&done.snapshot).unwrap().params, model.params);
    let gets = server.gets("model.safetensors");
    assert_eq!(gets.len(), 2);
    let from: usize = gets[1].headers["range"]
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert_eq!(from, len / 3);
}

#[test]
fn corrupt_downloads_are_detected_and_deleted() {
    for (file, hash) in [("model.safetensors", "sha256"), ("config.json", "git blob sha1")] {
        let (_, mut files) = tiny_model();
        let served = files.get_mut(file).unwrap();
        served.body[7] ^= 1; // same length, one bit wrong
        let etag = served.etag.clone();
        let server = Server::start(files, Rules::default());
        let cache = tempfile::tempdir().unwrap();

        let err = format!(
            "{:#}",
            hub(&server, cache.path(), None).download(&repo(), "main").unwrap_err()
        );
        assert!(
            err.contains(&format!("corrupt download of org/tiny/{file}")) && err.contains(hash),
            "{err}"
        );
        assert!(err.contains("retry"), "{err}");
        let dir = repo_dir(cache.path());
        assert!(!dir.join("snapshots").exists() && !dir.join("refs").exists());
        assert!(!dir.join("blobs").join(&etag).exists());
        assert!(!dir.join("blobs").join(format!("{etag}.incomplete")).exists());
    }
}

#[test]
fn missing_files_repos_and_revisions() {
    let (_, mut files) = tiny_model();
    files.remove("merges.txt");
    let server = Server::start(files, Rules::default());
    let cache = tempfile::tempdir().unwrap();
    let hub = hub(&server, cache.path(), None);

    // An optional file may be missing.
    let done = hub.download(&repo(), "main").unwrap();
    assert_eq!(done.missing, ["merges.txt"]);
    assert!(done.snapshot.join("vocab.json").is_file() && !done.snapshot.join("merges.txt").exists());

    // A required one may not: the error names the file and the repo.
    server.files.lock().unwrap().remove("model.safetensors");
    let cache = tempfile::tempdir().unwrap();
    let hub = Hub {
        cache: Cache::new(cache.path()),
        ..hub
    };
    let err = format!("{:#}", hub.download(&repo(), "main").unwrap_err());
    assert!(
        err.contains("model.safetensors was not found in org/tiny at revision main"),
        "{err}"
    );
    assert!(!cache.path().join("models--org--tiny/snapshots").exists());

    let err = format!(
        "{:#}",
        hub.download(&RepoId::parse("org/nope").unwrap(), "main").unwrap_err()
    );
    assert!(err.contains("repository org/nope was not found"), "{err}");
    let err = format!("{:#}", hub.download(&repo(), "v9").unwrap_err());
    assert!(err.contains("revision v9 was not found in org/tiny"), "{err}");
}

#[test]
fn unknown_names_and_unreachable_hubs_are_clear_errors() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gpt"))
        .args(["download", "gpt3"])
        .env("HF_HOME", home.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("\"gpt3\" is not a model name"),
        "{err}"
    );

    // A port nothing listens on (bound, then released).
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let hub = Hub {
        endpoint: format!("http://127.0.0.1:{port}"),
        cache: Cache::new(home.path()),
        token: None,
        progress: false,
    };
    let err = format!("{:#}", hub.download(&repo(), "main").unwrap_err());
    assert!(
        err.contains("cannot reach http://127.0.0.1") && err.contains("HF_ENDPOINT"),
        "{err}"
    );
}

#[test]
fn revisions_that_leave_the_cache_are_refused_and_refs_pr_works() {
    let (model, files) = tiny_model();
    // A Hub that answers for any revision: only `gpt` can keep it out of the file system.
    let server = Server::start(
        files,
        Rules {
            any_revision: true,
            ..Rules::default()
        },
    );
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("a/b");
    let cache = home.join("hub");
    let absolute = root.path().join("absolute");
    let absolute = absolute.to_str().unwrap();
    for rev in [
        ESCAPE,
        "..",
        ".",
        "refs/../../x",
        "a/./b",
        "a//b",
        "refs/pr/",
        "a\\b",
        "a\tb",
        absolute,
    ] {
        let out = gpt_download(&server, &home, None, &["--revision", rev]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("--revision") && err.contains("refs/pr/1"),
            "{rev:?}: {err}"
        );
    }
    // The library refuses them too, and a NUL, which no command line can hold.
    let hub = hub(&server, &cache, None);
    for rev in [ESCAPE, absolute, "a\0b", ""] {
        let err = format!("{:#}", hub.download(&repo(), rev).unwrap_err());
        assert!(err.contains(&format!("revision {rev:?}")), "{rev:?}: {err}");
    }
    // So do the cache's own functions, whoever calls them.
    let c = Cache::new(&cache);
    assert!(c.write_ref(&repo(), ESCAPE, COMMIT).is_err());
    assert!(c.write_ref(&repo(), absolute, COMMIT).is_err());
    assert!(c.write_ref(&repo(), "main", ESCAPE).is_err());
    assert!(c.link(&repo(), COMMIT, ESCAPE, "e1").is_err());
    assert!(c.link(&repo(), ESCAPE, "config.json", "e1").is_err());
    assert!(c.link(&repo(), COMMIT, "config.json", ESCAPE).is_err());
    assert!(c.commit(&repo(), "../../../../../../../../etc/hostname").is_err());
    assert!(server.seen().is_empty(), "{:?}", server.seen());
    // Nothing was written: not outside the cache, nor in it.
    assert_eq!(outside(root.path(), &cache), Vec::<PathBuf>::new());
    assert!(!cache.exists());

    // A ref file that does not hold a commit is not followed either.
    let refs = repo_dir(&cache).join("refs");
    fs::create_dir_all(&refs).unwrap();
    fs::write(refs.join("main"), ESCAPE).unwrap();
    let err = format!("{:#}", resolve_model_in(&c, REPO).unwrap_err());
    assert!(err.contains("refs/main does not hold a commit"), "{err}");
    fs::remove_file(refs.join("main")).unwrap();

    // A pull request's revision holds a `/`, and works.
    let out = gpt_download(&server, &home, None, &["--revision", "refs/pr/1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("--model org/tiny@refs/pr/1"),
        "{err}"
    );
    assert!(server
        .seen()
        .iter()
        .any(|r| r.path == format!("/{REPO}/resolve/refs%2Fpr%2F1/config.json")));
    assert_eq!(fs::read_to_string(refs.join("refs/pr/1")).unwrap(), COMMIT);
    let dir = resolve_model_in(&c, "org/tiny@refs/pr/1").unwrap();
    assert_eq!(dir, repo_dir(&cache).join("snapshots").join(COMMIT));
    assert_eq!(Gpt::load(&dir).unwrap().params, model.params);
    assert_eq!(outside(root.path(), &repo_dir(&cache)), Vec::<PathBuf>::new());
}

#[test]
fn a_hub_sending_unusable_commits_etags_or_file_names_is_refused() {
    let other_commit = "0123456789abcdef0123456789abcdef01234567";
    let long = "e".repeat(300);
    // (file, header, value sent, what the error must say)
    let cases = [
        (
            "config.json",
            "X-Repo-Commit",
            ESCAPE,
            "commit hash \"../../../../escaped\"",
        ),
        (
            "config.json",
            "X-Repo-Commit",
            "not-a-commit-hash",
            "commit hash \"not-a-commit-hash\"",
        ),
        ("model.safetensors", "X-Repo-Commit", other_commit, other_commit),
        (
            "config.json",
            "ETag",
            "\"../../../../escaped\"",
            "ETag \"../../../../escaped\"",
        ),
        ("vocab.json", "ETag", "\"a.incomplete\"", "ETag \"a.incomplete\""),
        ("model.safetensors", "X-Linked-Etag", &format!("\"{long}\""), "ETag"),
        // An ETag that is not a hash sends `gpt` to the API, which lists a path outside.
        (
            "model.safetensors",
            "X-Linked-Etag",
            "\"opaque\"",
            "file name \"../../../../escaped\"",
        ),
    ];
    for (file, header, value, says) in cases {
        let (_, mut files) = tiny_model();
        files.get_mut(file).unwrap().lie.push((header, value.to_string()));
        let server = Server::start(
            files,
            Rules {
                api: true,
                listed_as: Some(ESCAPE),
                ..Rules::default()
            },
        );
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("a/b/hub");
        let err = format!(
            "{:#}",
            hub(&server, &cache, None).download(&repo(), "main").unwrap_err()
        );
        assert!(err.contains(says) && err.contains(file), "{header}: {value}: {err}");
        // Nothing outside the blobs (which hold only verified files), no snapshot, no ref.
        let blobs = repo_dir(&cache).join("blobs");
        assert_eq!(outside(root.path(), &blobs), Vec::<PathBuf>::new(), "{value}");
    }
}

#[test]
fn etags_that_are_not_hashes_are_verified_against_the_api() {
    let (model, mut files) = tiny_model();
    opaque_etags(&mut files);
    let server = Server::start(
        files.clone(),
        Rules {
            api: true,
            ..Rules::default()
        },
    );
    let cache = tempfile::tempdir().unwrap();
    let done = hub(&server, cache.path(), None).download(&repo(), "main").unwrap();
    assert_eq!(Gpt::load(&done.snapshot).unwrap().params, model.params);
    // Blobs are named by the ETag, as huggingface_hub names them.
    let blob = repo_dir(cache.path()).join("blobs").join(opaque("model.safetensors"));
    assert_eq!(fs::read(blob).unwrap(), files["model.safetensors"].body);
    // One question to the API, at the pinned commit, about every file.
    let asked: Vec<Seen> = server.seen().into_iter().filter(|r| r.method == "POST").collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].path, format!("/api/models/{REPO}/paths-info/{COMMIT}"));
    let body: serde_json::Value = serde_json::from_str(&asked[0].body).unwrap();
    let mut paths: Vec<&str> = body["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    paths.sort();
    assert_eq!(paths, ["config.json", "merges.txt", "model.safetensors", "vocab.json"]);

    // A corrupt body is caught by the API's hash: the LFS sha256, or the git blob sha1.
    for (file, hash) in [("model.safetensors", "sha256"), ("config.json", "git blob sha1")] {
        let mut files = files.clone();
        files.get_mut(file).unwrap().body[7] ^= 1;
        let server = Server::start(
            files,
            Rules {
                api: true,
                ..Rules::default()
            },
        );
        let cache = tempfile::tempdir().unwrap();
        let err = format!(
            "{:#}",
            hub(&server, cache.path(), None).download(&repo(), "main").unwrap_err()
        );
        assert!(
            err.contains(&format!("corrupt download of org/tiny/{file}")) && err.contains(hash),
            "{err}"
        );
        let dir = repo_dir(cache.path());
        assert!(!dir.join("blobs").join(opaque(file)).exists());
        assert!(!dir.join("blobs").join(format!("{}.incomplete", opaque(file))).exists());
        assert!(!dir.join("snapshots").exists() && !dir.join("refs").exists());
    }
}

#[test]
fn files_that_cannot_be_verified_are_named_on_stderr() {
    let (_, mut files) = tiny_model();
    opaque_etags(&mut files);
    // No API to ask (404), or one that lists only another file: nothing names a hash.
    for (api, why) in [(false, "HTTP 404"), (true, "the Hub's API lists none for it")] {
        let rules = Rules {
            api,
            listed_as: Some("elsewhere.bin"),
            ..Rules::default()
        };
        let server = Server::start(files.clone(), rules);
        let home = tempfile::tempdir().unwrap();
        let out = gpt_download(&server, home.path(), None, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        for file in ["config.json", "model.safetensors", "vocab.json", "merges.txt"] {
            let size = files[file].body.len();
            assert!(
                err.contains(&format!("warning: org/tiny/{file} could not be verified"))
                    && err.contains(&format!("only its size ({size} bytes) is checked")),
                "{file}: {err}"
            );
        }
        assert!(err.contains(why), "{err}");
    }
}

#[test]
fn one_chosen_file_such_as_a_gguf_model() {
    let (_, mut files) = tiny_model();
    let gguf = fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/gguf_models/gpt2_q8_0.gguf")).unwrap();
    files.insert("tiny.Q8_0.gguf", lfs(&gguf));
    let server = Server::start(files, Rules::default());
    let home = tempfile::tempdir().unwrap();

    let out = gpt_download(&server, home.path(), None, &["--file", "tiny.Q8_0.gguf"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(path.ends_with("tiny.Q8_0.gguf"), "{}", path.display());
    assert_eq!(fs::read(&path).unwrap(), gguf);
    // Only that file was asked for.
    let asked: Vec<String> = server.seen().into_iter().map(|r| r.path).collect();
    assert!(asked.iter().all(|p| p.ends_with("tiny.Q8_0.gguf")), "{asked:?}");
    // The file loads, and so does the repo by name: its snapshot holds that one GGUF file.
    let model = Gpt::load(&path).unwrap();
    assert_eq!(model.config.vocab_size, 300);
    let cache = Cache::new(home.path().join("hub"));
    let snapshot = resolve_model_in(&cache, REPO).unwrap();
    assert_eq!(Gpt::load(&snapshot).unwrap().params, model.params);

    // A file the repo does not have, and a name that would leave the snapshot.
    let out = gpt_download(&server, home.path(), None, &["--file", "nope.gguf"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("nope.gguf was not found in org/tiny at revision main"),
        "{stderr}"
    );
    let out = gpt_download(&server, home.path(), None, &["--file", "../escape.gguf"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("bad --file") && stderr.contains("`..` part"),
        "{stderr}"
    );
}
