//! Multiple-choice scoring (`gpt eval --task choice`) against `transformers`
//! scoring the same records as llm.c scores HellaSwag
//! (tests/golden/choice/, made by scripts/gen_choice_golden.py): a tiny GPT-2
//! GGUF file with a byte-level BPE vocabulary and merges, and the tiny Llama
//! with a byte-level tokenizer.json. The token ids, every ending's summed and
//! mean log-likelihood and both predictions match, through the library and
//! through the command line; and bad records are errors naming file and line.

use gpt::autograd::Workspace;
use gpt::data::choice::{encode, read_records};
use gpt::model::LoadOptions;
use gpt::train::choice::score_choices;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod common;
use common::{fails_with, gpt, s, succeeds};

#[derive(Deserialize)]
struct Golden {
    n_ctx: usize,
    models: BTreeMap<String, Model>,
}

#[derive(Deserialize)]
struct Model {
    records: Vec<Record>,
    accuracy: f64,
    accuracy_norm: f64,
}

#[derive(Deserialize)]
struct Record {
    context: Vec<u32>,
    endings: Vec<Vec<u32>>,
    logprobs: Vec<f64>,
    logprobs_norm: Vec<f64>,
    pred: usize,
    pred_norm: usize,
    /// Per ending: whether its context was cut to fit.
    cut: Vec<bool>,
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn golden() -> Golden {
    let text = std::fs::read_to_string(golden_dir().join("choice/golden.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn records() -> PathBuf {
    golden_dir().join("choice/records.jsonl")
}

/// The model `name` of the golden file as `gpt` loads it: the GGUF file, or a
/// directory with the tiny Llama's weights and the tiny byte-level tokenizer.
fn model(name: &str, tmp: &Path) -> PathBuf {
    match name {
        "gpt2" => golden_dir().join("gguf_models/gpt2.gguf"),
        "llama" => {
            let copy =
                |from: &str, file: &str| std::fs::copy(golden_dir().join(from).join(file), tmp.join(file)).unwrap();
            copy("llama/llama", "model.safetensors");
            for file in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
                copy("chat/tiny", file);
            }
            tmp.to_path_buf()
        }
        _ => panic!("no model {name}"),
    }
}

/// `got` is `want` to float32 precision (relative where large).
fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-4 * want.abs().max(1.0),
        "{what}: {got} vs transformers' {want}"
    );
}

#[test]
fn library_scores_every_ending_as_transformers_does() {
    let golden = golden();
    assert_eq!(golden.models.len(), 2);
    for (name, want) in &golden.models {
        let tmp = tempfile::tempdir().unwrap();
        let loaded = gpt::model::load(s(&model(name, tmp.path())), &LoadOptions::default()).unwrap();
        assert_eq!(loaded.model.config.n_ctx, golden.n_ctx);
        let read = read_records(&records()).unwrap();
        let choices = encode(&records(), &read, &loaded.tokenizer, golden.n_ctx).unwrap();
        let report = score_choices(&loaded.model, &choices, &mut Workspace::default(), &mut |_| {}).unwrap();
        assert_eq!(
            report.cut,
            want.records.iter().flat_map(|r| &r.cut).filter(|&&c| c).count(),
            "{name}"
        );
        assert!(
            report.cut > 0,
            "{name}: the golden records should exercise a cut context"
        );
        for (i, ((c, got), want)) in choices.iter().zip(&report.records).zip(&want.records).enumerate() {
            assert_eq!(c.context, want.context, "{name}: record {i}'s context ids");
            assert_eq!(
                c.endings, want.endings,
                "{name}: record {i}'s ending ids (each after a space)"
            );
            for (e, (&g, &w)) in got.logprobs.iter().zip(&want.logprobs).enumerate() {
                close(g, w, &format!("{name}: record {i} ending {e} summed"));
            }
            for (e, (g, &w)) in got.logprobs_norm().into_iter().zip(&want.logprobs_norm).enumerate() {
                close(g, w, &format!("{name}: record {i} ending {e} mean"));
            }
            assert_eq!(
                (got.pred, got.pred_norm),
                (want.pred, want.pred_norm),
                "{name}: record {i}"
            );
        }
    }
}

#[test]
fn cli_json_gives_the_accuracies_and_each_records_figures() {
    let golden = golden();
    for (name, want) in &golden.models {
        let tmp = tempfile::tempdir().unwrap();
        let model = model(name, tmp.path());
        let out = succeeds(gpt(&[
            "eval",
            "--task",
            "choice",
            "--model",
            s(&model),
            "--data",
            s(&records()),
            "--json",
        ]));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let cut = want.records.iter().flat_map(|r| &r.cut).filter(|&&c| c).count();
        assert!(
            stderr.contains(&format!(
                "{cut} contexts and endings are too long for the model's context of 64"
            )),
            "{name}: {stderr}"
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["n"], want.records.len(), "{name}");
        close(v["accuracy"].as_f64().unwrap(), want.accuracy, name);
        close(v["accuracy_norm"].as_f64().unwrap(), want.accuracy_norm, name);
        let labels = [0, 0, 0, 1, 0, 2];
        for (i, (p, w)) in v["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .zip(&want.records)
            .enumerate()
        {
            assert_eq!(p["label"], labels[i], "{name}: record {i}");
            assert_eq!(
                (p["pred"].as_u64(), p["pred_norm"].as_u64()),
                (Some(w.pred as u64), Some(w.pred_norm as u64))
            );
            let tokens: Vec<usize> = w.endings.iter().map(Vec::len).collect();
            assert_eq!(p["tokens"], serde_json::json!(tokens), "{name}: record {i}");
            for (key, want) in [("logprobs", &w.logprobs), ("logprobs_norm", &w.logprobs_norm)] {
                let got = p[key].as_array().unwrap();
                assert_eq!(got.len(), want.len());
                for (g, &w) in got.iter().zip(want) {
                    close(g.as_f64().unwrap(), w, &format!("{name}: record {i} {key}"));
                }
            }
        }
        // Without --json: both accuracies and the count, in words.
        let out = succeeds(gpt(&[
            "eval",
            "--task",
            "choice",
            "--model",
            s(&model),
            "--data",
            s(&records()),
            "-q",
        ]));
        let right = (want.accuracy * 6.0).round();
        let line = String::from_utf8_lossy(&out.stdout);
        assert!(
            line.contains(&format!("({right}/6) by summed log-likelihood")) && line.contains("| 6 records"),
            "{line}"
        );
        assert!(out.stderr.is_empty(), "--quiet keeps the note back");
    }
}

#[test]
fn bad_records_and_flags_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = golden_dir().join("gguf_models/gpt2.gguf");
    let good = r#"{"context": "a cat", "endings": ["sat", "ran"], "label": 0}"#;
    let cases = [
        (
            "json.jsonl",
            "{\"context\": \"a cat\",",
            "json.jsonl:2: not a JSON object",
        ),
        (
            "fields.jsonl",
            r#"{"endings": ["a", "b"], "label": 0}"#,
            "fields.jsonl:2: no \"context\"",
        ),
        (
            "label.jsonl",
            r#"{"context": "a", "endings": ["a", "b"]}"#,
            "label.jsonl:2: no \"label\"",
        ),
        (
            "one.jsonl",
            r#"{"context": "a", "endings": ["a"], "label": 0}"#,
            "one.jsonl:2: 1 ending: a record needs two",
        ),
        (
            "range.jsonl",
            r#"{"context": "a", "endings": ["a", "b"], "label": "2"}"#,
            "range.jsonl:2: the label \"2\" is not the index of one of its 2 endings",
        ),
        (
            "empty.jsonl",
            r#"{"context": "a", "endings": ["a", ""], "label": 0}"#,
            "empty.jsonl:2: ending 1 is empty",
        ),
        (
            "long.jsonl",
            &format!(
                r#"{{"context": "a", "endings": ["a", "{}"], "label": 0}}"#,
                "x y ".repeat(40)
            ),
            "long.jsonl:2: ending 1 has 161 tokens, more than the model's context of 64 can score",
        ),
    ];
    for (file, line, want) in cases {
        let data = dir.path().join(file);
        std::fs::write(&data, format!("{good}\n{line}\n")).unwrap();
        let out = gpt(&["eval", "--task", "choice", "--model", s(&model), "--data", s(&data)]);
        fails_with(&out, want);
    }
    let data = dir.path().join("good.jsonl");
    std::fs::write(&data, format!("{good}\n")).unwrap();
    let out = gpt(&[
        "eval",
        "--task",
        "choice",
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--stride",
        "4",
    ]);
    fails_with(&out, "--stride is for --task lm");
    let out = gpt(&["eval", "--task", "mc", "--model", s(&model), "--data", s(&data)]);
    fails_with(&out, "invalid value 'mc' for '--task");
}
