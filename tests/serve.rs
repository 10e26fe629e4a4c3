//! `gpt serve` end to end: the real binary on tiny models (the tiny chat
//! Llama of tests/golden with its ChatML template, and a random GPT-2 whose
//! byte-level tokens split UTF-8 characters), spoken to over HTTP with ureq.

use gpt::model::{Gpt, GptConfig, Init};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running `gpt serve`, killed when dropped.
struct Server {
    child: Child,
    url: String,
    agent: ureq::Agent,
}

/// A response: status, the Retry-After header, the body.
struct Reply {
    status: u16,
    retry_after: Option<String>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// Asserts an OpenAI error body with this status, `param` and `code`; its message.
    fn error(&self, status: u16, param: Option<&str>, code: Option<&str>) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        let e = &self.json()["error"];
        assert_eq!(e["param"].as_str(), param, "{}", self.body);
        assert_eq!(e["code"].as_str(), code, "{}", self.body);
        assert!(e["type"].is_string(), "{}", self.body);
        e["message"].as_str().expect("a message").to_string()
    }
}

impl Server {
    /// Starts `gpt serve --model model extra…` on a free port and returns
    /// once it says where it listens (the model may still be loading).
    fn spawn(model: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gpt"))
            .args(["serve", "--model", model.to_str().unwrap(), "--port", "0", "-q"])
            .args(extra)
            .env_remove("GPT_API_KEY")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("gpt serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("no URL: {line:?}"));
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .into();
        Server {
            child,
            url: url.to_string(),
            agent,
        }
    }

    /// Starts a server and waits until its model is loaded.
    fn start(model: &Path, extra: &[&str]) -> Server {
        let s = Server::spawn(model, extra, &[]);
        let start = Instant::now();
        while s.get("/health").status != 200 {
            assert!(start.elapsed() < Duration::from_secs(30), "the model never loaded");
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    fn get(&self, path: &str) -> Reply {
        let resp = self.agent.get(format!("{}{path}", self.url)).call().unwrap();
        reply(resp)
    }

    fn post_raw(&self, path: &str, body: &str, key: Option<&str>) -> Reply {
        let mut req = self.agent.post(format!("{}{path}", self.url));
        if let Some(key) = key {
            req = req.header("Authorization", format!("Bearer {key}"));
        }
        reply(req.content_type("application/json").send(body).unwrap())
    }

    fn post(&self, path: &str, body: &Value) -> Reply {
        self.post_raw(path, &body.to_string(), None)
    }

    /// The events of a streamed request, up to and without `[DONE]` (which must come).
    fn stream(&self, path: &str, body: &Value) -> Vec<Value> {
        let resp = open(&self.agent, &format!("{}{path}", self.url), body);
        assert_eq!(resp.status().as_u16(), 200);
        let lines = BufReader::new(resp.into_body().into_reader()).lines();
        let mut events = Vec::new();
        for line in lines {
            let line = line.unwrap();
            let Some(data) = line.strip_prefix("data: ") else {
                continue;
            };
            if data == "[DONE]" {
                return events;
            }
            events.push(serde_json::from_str(data).unwrap());
        }
        panic!("the stream ended without [DONE]: {events:?}");
    }

    fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").body;
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    /// `name`'s value once it is `want`, or its last value after 10 s: the
    /// engine updates its gauges at the end of the step that sent a reply's
    /// last token, which may come after the client has read it.
    fn metric_once(&self, name: &str, want: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = self.metric(name);
            if v == want || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits (at most `limit`) for the process to end.
    fn terminate(&mut self, limit: Duration) -> ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < limit, "still running {limit:?} after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs `body` as JSON; the response, its body unread.
fn open(agent: &ureq::Agent, url: &str, body: &Value) -> ureq::http::Response<ureq::Body> {
    agent
        .post(url)
        .content_type("application/json")
        .send(body.to_string())
        .unwrap()
}

fn reply(mut resp: ureq::http::Response<ureq::Body>) -> Reply {
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let mut body = String::new();
    resp.body_mut().as_reader().read_to_string(&mut body).unwrap();
    Reply {
        status: resp.status().as_u16(),
        retry_after,
        body,
    }
}

fn golden() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The tiny Llama (64 positions) with the tiny ChatML tokenizer and template.
fn tiny_chat() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let copy = |from: &Path, name: &str| std::fs::copy(from.join(name), dir.path().join(name)).unwrap();
    copy(&golden().join("llama/llama"), "model.safetensors");
    for name in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        copy(&golden().join("chat/tiny"), name);
    }
    dir
}

/// A random GPT-2 of 128 positions with GPT-2's vocabulary, and no chat template.
fn tiny_gpt2() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let model = Gpt::new(
        GptConfig::gpt2(50257, 128, 8, 2, 1),
        Init::Normal(0.5),
        &mut gpt::tensor::rng(1),
    );
    model.save(dir.path()).unwrap();
    dir
}

fn texts(v: &Value) -> Vec<String> {
    v["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["text"]
                .as_str()
                .or(c["message"]["content"].as_str())
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Each choice's streamed text, and its finish reason, by index.
fn streamed(events: &[Value], n: usize) -> Vec<(String, String)> {
    let mut out = vec![(String::new(), String::new()); n];
    for e in events {
        for c in e["choices"].as_array().unwrap() {
            let i = c["index"].as_u64().unwrap() as usize;
            let piece = c["text"].as_str().or(c["delta"]["content"].as_str()).unwrap_or("");
            out[i].0.push_str(piece);
            if let Some(f) = c["finish_reason"].as_str() {
                assert!(out[i].1.is_empty(), "choice {i} finished twice");
                out[i].1 = f.to_string();
            }
        }
    }
    out
}

#[test]
fn completions_chat_models_and_logprobs() {
    let dir = tiny_chat();
    let s = Server::start(dir.path(), &["--name", "tiny-chat"]);
    assert_eq!(s.get("/health").json(), json!({"status": "ok"}));
    let models = s.get("/v1/models").json();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "tiny-chat");
    assert_eq!(models["data"][0]["owned_by"], "gpt");

    // The chat template and greedy decoding give transformers' reply, ending at <|im_end|>.
    let chat = json!({"model": "tiny-chat", "messages": [{"role": "user", "content": "hi"}], "temperature": 0, "max_tokens": 8});
    let r = s.post("/v1/chat/completions", &chat).json();
    assert_eq!(r["object"], "chat.completion");
    assert!(r["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(
        r["choices"][0]["message"],
        json!({"role": "assistant", "content": "irry"})
    );
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        r["usage"],
        json!({"prompt_tokens": 21, "completion_tokens": 4, "total_tokens": 25})
    );
    // Content as a list of text parts is the same message.
    let parts = json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "h"}, {"type": "text", "text": "i"}]}], "temperature": 0, "max_tokens": 8});
    assert_eq!(texts(&s.post("/v1/chat/completions", &parts).json()), ["irry"]);
    // Streamed: the first chunk says the role, the pieces make the same text.
    let mut stream = chat.clone();
    stream["stream"] = json!(true);
    let events = s.stream("/v1/chat/completions", &stream);
    assert_eq!(events[0]["object"], "chat.completion.chunk");
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(events[1..]
        .iter()
        .all(|e| e["choices"][0]["delta"].get("role").is_none()));
    assert_eq!(streamed(&events, 1), [("irry".to_string(), "stop".to_string())]);

    // Two prompts × n = 2: four choices in order, choice i seeded with seed + i.
    let body = json!({"prompt": ["hello", "ok"], "n": 2, "seed": 5, "max_tokens": 6});
    let r = s.post("/v1/completions", &body).json();
    assert_eq!(r["object"], "text_completion");
    let indices: Vec<u64> = r["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indices, [0, 1, 2, 3]);
    let all = texts(&r);
    assert_eq!(
        texts(&s.post("/v1/completions", &body).json()),
        all,
        "seeded requests repeat"
    );
    let one = |prompt: &str, seed: u64| {
        texts(
            &s.post(
                "/v1/completions",
                &json!({"prompt": prompt, "seed": seed, "max_tokens": 6}),
            )
            .json(),
        )
    };
    assert_eq!(one("hello", 6), [all[1].clone()]);
    assert_eq!(one("ok", 8), [all[3].clone()]);
    assert_ne!(all[0], all[1], "n samples differ");
    let usage = &r["usage"];
    let (p, c) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    assert!(
        c > 0 && c <= 24 && usage["total_tokens"].as_u64() == Some(p + c),
        "{usage}"
    );

    // Completion log-probabilities: greedy picks the most likely token.
    let r = s
        .post(
            "/v1/completions",
            &json!({"prompt": "hello", "temperature": 0, "max_tokens": 5, "logprobs": 3}),
        )
        .json();
    let c = &r["choices"][0];
    let lp = &c["logprobs"];
    let tokens: Vec<&str> = lp["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tokens.concat(), c["text"].as_str().unwrap());
    assert_eq!(tokens.len() as u64, r["usage"]["completion_tokens"].as_u64().unwrap());
    let mut offset = 0;
    for (i, t) in tokens.iter().enumerate() {
        assert_eq!(lp["text_offset"][i].as_u64(), Some(offset));
        offset += t.chars().count() as u64;
        let top = lp["top_logprobs"][i].as_object().unwrap();
        let chosen = lp["token_logprobs"][i].as_f64().unwrap();
        assert!(top.len() <= 3 && !top.is_empty());
        let best = top.values().map(|v| v.as_f64().unwrap()).fold(f64::MIN, f64::max);
        assert!(
            chosen <= 0.0 && (best - chosen).abs() < 1e-6,
            "greedy took {chosen}, best {best}"
        );
    }
    // Chat log-probabilities: bytes, and top_logprobs of the size asked.
    let mut with = chat.clone();
    with["logprobs"] = json!(true);
    with["top_logprobs"] = json!(2);
    let r = s.post("/v1/chat/completions", &with).json();
    let content = r["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 4);
    assert_eq!(content[0]["token"], "i");
    assert_eq!(content[0]["bytes"], json!([105]));
    assert!(content.iter().all(|e| e["top_logprobs"].as_array().unwrap().len() == 2));
    assert_eq!(content[0]["top_logprobs"][0]["logprob"], content[0]["logprob"]);
}

#[test]
fn streams_equal_whole_answers_and_stop_strings_cut() {
    let dir = tiny_gpt2();
    let s = Server::start(dir.path(), &[]);
    let body = json!({"prompt": "Hello", "n": 3, "seed": 11, "max_tokens": 40, "temperature": 1.0});
    let whole = s.post("/v1/completions", &body).json();
    let mut stream = body.clone();
    stream["stream"] = json!(true);
    stream["stream_options"] = json!({"include_usage": true});
    let events = s.stream("/v1/completions", &stream);
    let got = streamed(&events, 3);
    for (i, c) in whole["choices"].as_array().unwrap().iter().enumerate() {
        assert_eq!(got[i].0, c["text"].as_str().unwrap(), "choice {i}");
        assert_eq!(got[i].1, c["finish_reason"].as_str().unwrap());
    }
    let last = events.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"], whole["usage"]);

    // A stop string cuts the text before it, streamed or not.
    let greedy = json!({"prompt": "Hello", "temperature": 0, "max_tokens": 30});
    let text = texts(&s.post("/v1/completions", &greedy).json()).remove(0);
    let chars: Vec<char> = text.chars().collect();
    assert!(chars.len() > 12, "{text:?}");
    let stop: String = chars[8..11].iter().collect();
    let want = &text[..text.find(&stop).unwrap()];
    let mut stopped = greedy.clone();
    stopped["stop"] = json!(["never there", stop]);
    let r = s.post("/v1/completions", &stopped).json();
    assert_eq!(texts(&r), [want]);
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    stopped["stream"] = json!(true);
    let events = s.stream("/v1/completions", &stopped);
    assert_eq!(streamed(&events, 1), [(want.to_string(), "stop".to_string())]);
}

#[test]
fn every_error_is_an_openai_error() {
    let dir = tiny_gpt2();
    let s = Server::start(dir.path(), &["--max-tokens-limit", "30"]);
    let post = |body: Value| s.post("/v1/completions", &body);
    let ok = json!({"prompt": "Hi", "max_tokens": 2});
    assert_eq!(post(ok.clone()).status, 200);
    let mut unknown = ok.clone();
    unknown["frequency_penalty"] = json!(0.5);
    unknown["user"] = json!("me");
    assert_eq!(post(unknown).status, 200, "unknown fields are ignored");

    s.post_raw("/v1/completions", "{\"prompt\": ", None)
        .error(400, Some("body"), None);
    let msg = post(json!({"prompt": "Hi", "temperature": "hot"})).error(400, Some("temperature"), None);
    assert!(msg.contains("invalid type"), "{msg}");
    post(json!({"max_tokens": 2})).error(400, Some("prompt"), None);
    let msg = post(json!({"prompt": "Hi", "model": "gpt-4"})).error(404, Some("model"), Some("model_not_found"));
    assert!(msg.contains("gpt-4"), "{msg}");
    let msg = post(json!({"prompt": " a".repeat(200)})).error(400, Some("prompt"), Some("context_length_exceeded"));
    assert!(msg.contains("128") && msg.contains("200"), "{msg}");
    for (field, value) in [
        ("max_tokens", json!(31)),
        ("max_tokens", json!(0)),
        ("max_completion_tokens", json!(-1)),
        ("n", json!(17)),
        ("logprobs", json!(6)),
        ("temperature", json!(2.5)),
        ("top_p", json!(1.5)),
        ("stop", json!(["a", "b", "c", "d", "e"])),
        ("echo", json!(true)),
    ] {
        let mut body = ok.clone();
        body[field] = value;
        post(body).error(400, Some(field), None);
    }
    let chat = |extra: Value| {
        let mut body = json!({"messages": [{"role": "user", "content": "Hi"}]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        s.post("/v1/chat/completions", &body)
    };
    chat(json!({"logprobs": true, "top_logprobs": 21})).error(400, Some("top_logprobs"), None);
    chat(json!({"logprobs": 2})).error(400, Some("logprobs"), None);
    let msg = chat(json!({})).error(400, Some("messages"), None);
    assert!(msg.contains("no chat template"), "{msg}");
    // One byte over the limit (all of it read, so the answer is not lost to a reset).
    let big = format!("{{\"prompt\": \"{}\"}}", "a".repeat((4 << 20) + 1 - 14));
    let r = s.post_raw("/v1/completions", &big, None);
    assert_eq!(r.status, 413, "{}", r.body);
    s.get("/v1/nothing").error(404, None, Some("unknown_url"));
    // The server is still fine, and counted what it answered.
    assert_eq!(post(ok).status, 200);
    let metrics = s.get("/metrics").body;
    assert!(
        metrics.contains("gpt_requests_total{endpoint=\"/v1/completions\",status=\"400\"} 13"),
        "{metrics}"
    );
    assert!(metrics.contains("gpt_requests_total{endpoint=\"/v1/completions\",status=\"404\"} 1"));
}

#[test]
fn api_key_from_the_flag_or_the_environment() {
    let dir = tiny_chat();
    let by_flag = Server::start(dir.path(), &["--api-key", "s3cret"]);
    let by_env = Server::spawn(dir.path(), &[], &[("GPT_API_KEY", "s3cret")]);
    for s in [&by_flag, &by_env] {
        let body = "{\"prompt\": \"hi\", \"max_tokens\": 1}";
        for key in [None, Some("wrong"), Some("s3cre"), Some("s3cret2")] {
            s.post_raw("/v1/completions", body, key)
                .error(401, None, Some("invalid_api_key"));
        }
        let start = Instant::now();
        while s.get("/health").status != 200 {
            assert!(start.elapsed() < Duration::from_secs(30));
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(s.post_raw("/v1/completions", body, Some("s3cret")).status, 200);
        assert_eq!(s.get("/v1/models").status, 401);
        assert_eq!(s.get("/metrics").status, 200, "only /v1 needs the key");
    }
}

#[test]
fn a_full_queue_is_429_and_a_timeout_ends_requests() {
    let dir = tiny_gpt2();
    // One slot, one place in the queue: sixteen choices cannot all wait.
    let s = Server::start(dir.path(), &["--max-batch", "1", "--max-queue", "1"]);
    let r = s.post("/v1/completions", &json!({"prompt": "Hi", "n": 16, "max_tokens": 100}));
    r.error(429, None, Some("rate_limit_exceeded"));
    assert_eq!(r.retry_after.as_deref(), Some("1"));
    // The choices already taken were cancelled: the queue empties, the next request runs.
    let start = Instant::now();
    while s.metric("gpt_queue_length") + s.metric("gpt_active_sequences") > 0.0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the refused request's choices still run"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let r = s.post("/v1/completions", &json!({"prompt": "Hi", "max_tokens": 3}));
    assert_eq!(r.status, 200, "{}", r.body);

    // A timeout before the first token is a 504; streamed, the choice ends as length.
    let s = Server::start(dir.path(), &["--timeout", "0.000001"]);
    s.post("/v1/completions", &json!({"prompt": "Hi"}))
        .error(504, None, Some("timeout"));
    let events = s.stream("/v1/completions", &json!({"prompt": "Hi", "stream": true}));
    assert_eq!(streamed(&events, 1), [(String::new(), "length".to_string())]);
    // After some tokens: the choices end as length, short of what was asked.
    let s = Server::start(dir.path(), &["--timeout", "0.3", "--max-batch", "1"]);
    let r = s
        .post(
            "/v1/completions",
            &json!({"prompt": "Hi", "n": 16, "max_tokens": 120, "seed": 3}),
        )
        .json();
    let tokens = r["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(tokens > 0 && tokens < 16 * 120, "{tokens} tokens");
    assert!(r["choices"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["finish_reason"] == "length"));
}

#[test]
fn a_client_that_goes_away_frees_its_slot() {
    let dir = tiny_gpt2();
    let s = Server::start(dir.path(), &["--max-batch", "1"]);
    // Sixteen choices one after the other: how long they take in full.
    let body = json!({"prompt": "Hi", "n": 16, "max_tokens": 120, "seed": 1});
    let start = Instant::now();
    assert_eq!(s.post("/v1/completions", &body).status, 200);
    let full = start.elapsed();
    let mut stream = body.clone();
    stream["stream"] = json!(true);
    let resp = open(&s.agent, &format!("{}/v1/completions", s.url), &stream);
    let mut lines = BufReader::new(resp.into_body().into_reader()).lines();
    assert!(lines.next().unwrap().unwrap().starts_with("data: "));
    drop(lines);
    // A request after it need not wait for the choices of the client gone.
    let start = Instant::now();
    assert_eq!(
        s.post("/v1/completions", &json!({"prompt": "Hi", "max_tokens": 3}))
            .status,
        200
    );
    assert!(
        start.elapsed() < full / 2,
        "{:?} waiting, against {full:?} in full",
        start.elapsed()
    );
    assert_eq!(
        (
            s.metric_once("gpt_queue_length", 0.0),
            s.metric_once("gpt_active_sequences", 0.0)
        ),
        (0.0, 0.0)
    );
}

#[test]
fn health_while_loading_and_sigterm_ends_cleanly() {
    // A config that cannot be read until written: the model is loading.
    let dir = tiny_chat();
    let config = dir.path().join("config.json");
    std::fs::remove_file(&config).unwrap();
    assert!(Command::new("mkfifo").arg(&config).status().unwrap().success());
    let mut s = Server::spawn(dir.path(), &[], &[]);
    assert_eq!(s.get("/health").status, 503);
    assert_eq!(s.get("/health").json(), json!({"status": "loading"}));
    s.post("/v1/completions", &json!({"prompt": "hi"}))
        .error(503, None, Some("model_loading"));
    assert!(s.terminate(Duration::from_secs(10)).success());

    // SIGTERM while a request runs: it finishes, then the server exits 0.
    let dir = tiny_gpt2();
    let mut s = Server::start(dir.path(), &["--max-batch", "1"]);
    let url = s.url.clone();
    let agent = s.agent.clone();
    let body = json!({"prompt": "Hi", "n": 8, "max_tokens": 120, "stream": true, "seed": 2});
    let client = std::thread::spawn(move || {
        let resp = open(&agent, &format!("{url}/v1/completions"), &body);
        let mut text = String::new();
        resp.into_body().into_reader().read_to_string(&mut text).unwrap();
        text
    });
    let start = Instant::now();
    while s.metric("gpt_active_sequences") == 0.0 {
        assert!(start.elapsed() < Duration::from_secs(10), "the request never ran");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(s.terminate(Duration::from_secs(20)).success());
    let text = client.join().unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert_eq!(text.matches("\"finish_reason\":\"length\"").count(), 8, "{text}");
}
