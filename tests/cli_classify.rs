//! Classification end to end with the real binary: `gpt train --task
//! classify` on a tiny character model, `gpt classify` on its run directory
//! (texts, labelled data, JSON), resuming, `--train-layers 0`, LoRA and
//! bottleneck adapters, and bad input
//! refused with the file and line named.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::{fails_with, gpt, names_base, s, succeeds};

/// A small base model trained on the built-in names (2 blocks, 16 wide).
fn base(dir: &Path) {
    names_base(dir, 2, 5);
}

/// Names that start with "a" are label `a`, with "b" label `b`: 40 of each.
fn data(dir: &Path) -> PathBuf {
    let mut text = String::from("label\ttext\n");
    for i in 0..20 {
        let tail = &"xyzmno"[i % 5..];
        text += &format!("a\tann{tail}\nb\tbob{tail}\na\tamy{tail}\nb\tbea{tail}\n");
    }
    let path = dir.join("d.tsv");
    std::fs::write(&path, text).unwrap();
    path
}

fn train(base: &Path, data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train", "--task", "classify", "--init", s(base), "--data", s(data)];
    args.extend(["--out", s(out), "--steps", "30", "--batch-size", "8", "--lr", "1e-2"]);
    args.extend(["--eval-every", "10"]);
    args.extend(extra);
    gpt(&args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn trains_a_classifier_that_gpt_classify_runs_and_transformers_names() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, c) = (tmp.path().join("base"), tmp.path().join("c"));
    base(&b);
    let d = data(tmp.path());
    let out = succeeds(train(&b, &d, &c, &[]));
    assert!(stdout(&out).contains("val accuracy 100.00%"), "{}", stdout(&out));
    let log = std::fs::read_to_string(c.join("log.jsonl")).unwrap();
    assert!(log.lines().last().unwrap().contains("\"val_accuracy\":1.0"), "{log}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(c.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "GPT2ForSequenceClassification");
    assert_eq!(config["id2label"]["1"], "b");
    assert_eq!(config["label2id"]["a"], 0);
    assert!(config["pad_token_id"].is_u64());
    let model = gpt::model::Gpt::load(&c).unwrap();
    assert_eq!(model.config.labels, ["a", "b"]);

    // Texts: each one's label and probabilities, in input order.
    let out = succeeds(gpt(&["classify", "--model", s(&c), "--json", "bobzz", "annx", "amy"]));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let labels: Vec<&str> = (0..3).map(|i| v["predictions"][i]["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["b", "a", "a"]);
    let p = &v["predictions"][0]["probabilities"];
    let sum = p["a"].as_f64().unwrap() + p["b"].as_f64().unwrap();
    assert!((sum - 1.0).abs() < 1e-9 && p["b"].as_f64().unwrap() > 0.9, "{p}");
    assert!(v.get("accuracy").is_none(), "no labels, no accuracy");

    // Labelled data: accuracy, per-class figures, confusion matrix.
    let out = succeeds(gpt(&["classify", "--model", s(&c), "--data", s(&d), "--json"]));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let accuracy = v["accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.9 && v["n"].as_u64() == Some(80), "{v}");
    let m: Vec<Vec<u64>> = serde_json::from_value(v["confusion"]["matrix"].clone()).unwrap();
    assert_eq!(
        (m[0][0] + m[0][1], m[1][0] + m[1][1]),
        (40, 40),
        "rows: the true labels"
    );
    assert_eq!((m[0][0] + m[1][1]) as f64 / 80.0, accuracy);
    let recall = v["classes"]["a"]["recall"].as_f64().unwrap();
    assert_eq!(recall, m[0][0] as f64 / 40.0);
    let precision = v["classes"]["b"]["precision"].as_f64().unwrap();
    assert_eq!(precision, m[1][1] as f64 / (m[0][1] + m[1][1]) as f64);
    let out = succeeds(gpt(&["classify", "--model", s(&c), "--data", s(&d)]));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("({} of 80 texts)", (accuracy * 80.0).round())) && text.contains("precision  recall"),
        "{text}"
    );

    let info = stdout(&succeeds(gpt(&["info", s(&c)])));
    assert!(info.contains("classifier:    labels a, b"), "{info}");
    // A classifier is not a language model, and the other way round.
    fails_with(
        &gpt(&["generate", "--model", s(&c), "ann"]),
        "is a sequence classifier (labels a, b)",
    );
    fails_with(
        &gpt(&["eval", "--model", s(&c), "--data", s(&d)]),
        "run it with `gpt classify",
    );
    fails_with(
        &gpt(&["classify", "--model", s(&b), "anna"]),
        "is a language model, not a classifier",
    );
}

#[test]
fn a_resumed_classification_run_is_the_run_that_never_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, one, two) = (tmp.path().join("base"), tmp.path().join("one"), tmp.path().join("two"));
    base(&b);
    let d = data(tmp.path());
    succeeds(train(&b, &d, &one, &["-q"]));
    succeeds(train(&b, &d, &two, &["-q", "--stop-at", "12"]));
    succeeds(gpt(&["train", "--resume", s(&two), "-q"]));
    let (x, y) = (
        gpt::model::Gpt::load(&one).unwrap(),
        gpt::model::Gpt::load(&two).unwrap(),
    );
    assert_eq!(x.params.names, y.params.names);
    assert_eq!(x.params.tensors, y.params.tensors, "bit for bit");
}

#[test]
fn train_layers_0_trains_the_head_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, c) = (tmp.path().join("base"), tmp.path().join("c"));
    base(&b);
    let d = data(tmp.path());
    let out = succeeds(train(&b, &d, &c, &["--train-layers", "0", "--labels", "b,a"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("trainable 64 of"), "score [2, 16] + ln_f [16] x 2: {err}");
    let (before, after) = (gpt::model::Gpt::load(&b).unwrap(), gpt::model::Gpt::load(&c).unwrap());
    assert_eq!(after.config.labels, ["b", "a"], "--labels order");
    for (name, t) in before.params.names.iter().zip(&before.params.tensors) {
        let got = &after.params.tensors[after.params.find(name).unwrap().0];
        if name.starts_with("h.") || name.starts_with("w") {
            assert_eq!(&got.data, &t.data, "{name} is frozen");
        }
    }
}

#[test]
fn a_lora_classifier_saves_its_head_as_peft_does_resumes_exactly_and_merges() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, one, two) = (tmp.path().join("base"), tmp.path().join("one"), tmp.path().join("two"));
    base(&b);
    let d = data(tmp.path());
    let out = succeeds(train(&b, &d, &one, &["--lora-rank", "4"]));
    let err = String::from_utf8_lossy(&out.stderr);
    // LoRA A [4, 16] and B [48, 4] on each of 2 c_attn, and score [2, 16].
    assert!(err.contains("trainable 544 of"), "{err}");
    assert!(stdout(&out).contains("gpt classify --model"), "{}", stdout(&out));
    let config = std::fs::read_to_string(one.join("adapter_config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["task_type"], "SEQ_CLS");
    assert_eq!(config["modules_to_save"], serde_json::json!(["classifier", "score"]));
    let bytes = std::fs::read(one.join("adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(
        st.names().contains(&"base_model.model.score.weight"),
        "{:?}",
        st.names()
    );
    // The base with the adapter is the classifier: the labels from the run, the head from the adapter.
    let base_dir = s(&b).to_string();
    let classify = |adapter: &Path| {
        let out = succeeds(gpt(&[
            "classify",
            "--model",
            &base_dir,
            "--adapter",
            s(adapter),
            "--json",
            "bobx",
            "annyz",
        ]));
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap()
    };
    let v = classify(&one);
    assert_eq!(v["predictions"][0]["label"], "b");
    assert_eq!(v["predictions"][1]["label"], "a");
    // Merged, it is a classifier of its own with the same probabilities.
    let merged = tmp.path().join("merged");
    succeeds(gpt(&[
        "merge",
        "--model",
        &base_dir,
        "--adapter",
        s(&one),
        "--out",
        s(&merged),
    ]));
    let config = std::fs::read_to_string(merged.join("config.json")).unwrap();
    assert!(config.contains("GPT2ForSequenceClassification"), "{config}");
    let out = succeeds(gpt(&["classify", "--model", s(&merged), "--json", "bobx", "annyz"]));
    let m: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    for (p, q) in v["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .zip(m["predictions"].as_array().unwrap())
    {
        assert_eq!(p["label"], q["label"]);
        for label in ["a", "b"] {
            let (x, y) = (
                p["probabilities"][label].as_f64().unwrap(),
                q["probabilities"][label].as_f64().unwrap(),
            );
            assert!((x - y).abs() < 1e-5, "{label}: adapter {x}, merged {y}");
        }
    }
    succeeds(train(&b, &d, &two, &["--lora-rank", "4", "--stop-at", "12", "-q"]));
    succeeds(gpt(&["train", "--resume", s(&two), "-q"]));
    assert_eq!(
        std::fs::read(one.join("adapter_model.safetensors")).unwrap().len(),
        std::fs::read(two.join("adapter_model.safetensors")).unwrap().len()
    );
    assert_eq!(classify(&two), v, "the resumed run's classifier is the same");
    // The base alone is a language model.
    fails_with(&gpt(&["classify", "--model", &base_dir, "anna"]), "not a classifier");
}

#[test]
fn a_bottleneck_adapter_classifier_trains_its_head_too_and_classifies_with_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, one) = (tmp.path().join("base"), tmp.path().join("one"));
    base(&b);
    // Labelled by the last character: the base's attention is frozen, and adapters act on each
    // position alone (the first character of `data` is out of their reach on a random base).
    let mut text = String::from("label\ttext\n");
    for i in 0..20 {
        let head = &"xyzmno"[i % 5..];
        text += &format!("a\t{head}a\nb\t{head}b\na\t{head}ya\nb\t{head}yb\n");
    }
    let d = tmp.path().join("last.tsv");
    std::fs::write(&d, text).unwrap();
    let out = succeeds(train(&b, &d, &one, &["--adapter-size", "4"]));
    assert!(stdout(&out).contains("val accuracy 100.00%"), "{}", stdout(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    // 2 blocks x 2 adapters x (down 4x16 + 4, up 16x4 + 16), and score [2, 16].
    assert!(err.contains("trainable 624 of"), "{err}");
    let config = std::fs::read_to_string(one.join("adapter_config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["task_type"], "SEQ_CLS");
    assert_eq!(config["modules_to_save"], serde_json::json!(["score"]));
    let bytes = std::fs::read(one.join("adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(st.names().contains(&"score.weight"), "{:?}", st.names());
    let out = succeeds(gpt(&[
        "classify",
        "--model",
        s(&b),
        "--adapter",
        s(&one),
        "--json",
        "mnob",
        "zya",
    ]));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["predictions"][0]["label"], "b", "{v}");
    assert_eq!(v["predictions"][1]["label"], "a", "{v}");
}

#[test]
fn bad_input_is_an_error_naming_the_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let b = tmp.path().join("base");
    base(&b);
    let write = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let out = tmp.path().join("out");
    let cases = [
        (
            "nolabel.tsv",
            "text\nanna\n",
            "nolabel.tsv:1: the header \"text\" has no `label` column",
        ),
        ("one.tsv", "label\ttext\na\tanna\na\tamy\n", "only one label (\"a\")"),
        (
            "empty.tsv",
            "label\ttext\na\tanna\nb\t\n",
            "empty.tsv:3: the text is empty",
        ),
        (
            "nolab.jsonl",
            "{\"text\": \"anna\", \"label\": \"a\"}\n{\"text\": \"bob\"}\n",
            "nolab.jsonl:2: no \"label\"",
        ),
    ];
    for (name, text, want) in cases {
        fails_with(&train(&b, &write(name, text), &out, &[]), want);
    }
    let ok = write("ok.tsv", "label\ttext\na\tanna\nb\tbob\nc\tcarl\n");
    fails_with(
        &train(&b, &ok, &out, &["--labels", "a,b"]),
        "ok.tsv:4: unknown label \"c\"",
    );
    fails_with(
        &gpt(&["train", "--task", "classify", "--data", s(&ok), "--out", s(&out)]),
        "give --init MODEL",
    );
    // A text longer than the context is cut, with a warning.
    let long = format!("label\ttext\na\t{}\nb\tbob\na\tamy\nb\tbea\n", "a".repeat(40));
    let o = succeeds(train(&b, &write("long.tsv", &long), &out, &["--n-ctx", "8"]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("1 texts are longer than n_ctx = 8 tokens"), "{err}");
    let o = succeeds(gpt(&["classify", "--model", s(&out), &"b".repeat(40)]));
    assert!(String::from_utf8_lossy(&o.stderr).contains("are cut to their first"));
    fails_with(&gpt(&["classify", "--model", s(&out)]), "nothing to classify");
}
