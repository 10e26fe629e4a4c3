//! Every numeric flag of every subcommand at 0, negative, NaN and infinity
//! (where they parse), and absurdly large: each must fail with an error that
//! names the flag, or run — never panic. The table must hold a row for each
//! numeric flag clap knows (checked below), so a new flag is one more line.

use clap::CommandFactory;
use gpt::model::{Gpt, GptConfig, Init};
use std::any::TypeId;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

mod common;
use common::{gpt, gpt_within};

/// What a value must do: fail with an error naming the flag, or run to the end.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
    F,
    R,
}
use Want::{F, R};

const BIG: &str = "1000000000000000000"; // 10^18
const MAX: &str = "18446744073709551615"; // u64::MAX

/// The values every integer and every float flag is tried with (more may be added per row).
const INTEGER: [&str; 5] = ["0", "-1", "NaN", BIG, MAX];
const FLOAT: [&str; 5] = ["0", "-1", "NaN", "inf", "1e18"];

/// Subcommand ("" = the global flags), flag, flags it needs beside the
/// subcommand's base ones, and what each value does.
type Row = (
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, Want)],
);

#[rustfmt::skip]
const ROWS: &[Row] = &[
    ("", "--threads", &[], &[("0", F), ("-1", F), ("NaN", F), (BIG, F), (MAX, F), ("2", R)]),
    ("train", "--steps", &["--stop-at", "1"], &[("0", F), ("-1", F), ("NaN", F), (BIG, R), (MAX, R)]),
    ("train", "--stop-at", &[], &[("0", F), ("-1", F), ("NaN", F), (BIG, F), (MAX, F), ("1", R)]),
    ("train", "--batch-size", &[], &[("0", F), ("-1", F), ("NaN", F), (BIG, F), (MAX, F)]),
    ("train", "--grad-accum", &[], &[("0", F), ("-1", F), ("NaN", F), (BIG, F), (MAX, F), ("2", R)]),
    ("train", "--zero", &[], &[("0", R), ("-1", F), ("NaN", F), (BIG, F), (MAX, F), ("1", R), ("2", F)]),
    ("train", "--seed", &[], &[("0", R), ("-1", F), ("NaN", F), (BIG, R), (MAX, R)]),
    ("train", "--n-layer", &[], &[("0", F), ("-1", F), ("NaN", F), (BIG, F), (MAX, F)]),
    ("train", "--n-embd", &[], &[("0", F), ("-1", F), ("NaN", F), (BIG, F), (MAX, F)]),
    ("train", "--n-head", &[], &[("0", F), ("-1", F), ("NaN", F), (BIG, F), (MAX, F), ("3", F)]),
    ("train", "--n-ctx", &[], &[("0", F), ("-1", F), ("NaN", F), (BIG, F), (MAX, F), ("300", R)]),
    ("train", "--lr", &[], &[("0", F), ("-1", F), ("NaN", F), ("inf", F), ("1e18", R)]),
    ("train", "--min-lr", &[], &[("0", R), ("-1", F), ("NaN", F), ("inf", F), ("1e18", R)]),
    ("train", "--warmup", &[], &[("0", R), ("-1", F), ("NaN", F), (BIG, R), (MAX, R)]),
    ("train", "--beta1", &[], &[("0", R), ("-1", F), ("NaN", F), ("inf", F), ("1e18", F), ("1", F)]),
    ("train", "--beta2", &[], &[("0", R), ("-1", F), ("NaN", F), ("inf", F), ("1e18", F), ("1", F)]),
    ("train", "--adam-eps", &[], &[("0", F), ("-1", F), ("NaN", F), ("inf", F), ("1e18", R)]),
    ("train", "--weight-decay", &[], &[("0", R), ("-1", F), ("NaN", F), ("inf", F), ("1e18", R)]),
    ("train", "--grad-clip", &[], &[("0", R), ("-1", F), ("NaN", F), ("inf", F), ("1e18", R)]),
    ("train", "--dropout", &[], &[("0", R), ("-1", F), ("NaN", F), ("inf", F), ("1e18", F), ("1", F), ("0.5", R)]),
    ("train", "--eval-every", &[], &[("0", R), ("-1", F), ("NaN", F), (BIG, R), (MAX, R)]),
    ("train", "--save-every", &[], &[("0", R), ("-1", F), ("NaN", F), (BIG, R), (MAX, R)]),
    ("train", "--sample-every", &[], &[("0", R), ("-1", F), ("NaN", F), (BIG, R), (MAX, R), ("1", R)]),
    ("train", "--val-fraction", &[], &[("0", R), ("-1", F), ("NaN", F), ("inf", F), ("1e18", F), ("1", F)]),
    ("train", "--num-samples", &[], &[("0", R), ("-1", F), ("NaN", F), (BIG, F), (MAX, F)]),
    ("train", "--temperature", &[], &[("0", R), ("-1", F), ("NaN", F), ("inf", F), ("1e18", R)]),
    ("train", "--train-layers", &["--init", "{char}"], &[("0", R), ("-1", F), ("NaN", F), (BIG, F), (MAX, F), ("1", R)]),
    ("train", "--lora-rank", &["--init", "{char}"], &[("0", F), ("-1", F), ("NaN", F), (BIG, F), (MAX, F), ("2", R)]),
    ("train", "--lora-alpha", &["--init", "{char}", "--lora-rank", "2"], &[("0", F), ("-1", F), ("NaN", F), ("inf", F), ("1e18", R)]),
    ("train", "--adapter-size", &["--init", "{char}"], &[("0", F), ("-1", F), ("NaN", F), (BIG, F), (MAX, F), ("2", R)]),
    ("train", "--lora-dropout", &["--init", "{char}", "--lora-rank", "2"], &[("0", R), ("-1", F), ("NaN", F), ("inf", F), ("1e18", F), ("1", F), ("0.5", R)]),
    ("sample", "--num-samples", &[], &[("0", R), ("-1", F), ("NaN", F), (BIG, F), (MAX, F)]),
    ("sample", "--temperature", &[], &[("0", R), ("-1", F), ("NaN", F), ("inf", F), ("1e18", R)]),
    ("sample", "--top-k", &[], &[("0", F), ("-1", F), ("NaN", F), (BIG, R), (MAX, R)]),
    ("sample", "--top-p", &[], &[("0", F), ("-1", F), ("NaN", F), ("inf", F), ("1e18", F), ("1", R)]),
    ("sample", "--seed", &[], &[("0", R), ("-1", F), ("NaN", F), (BIG, R), (MAX, R)]),
    ("generate", "--max-new-tokens", &[], &[("0", R), ("-1", F), ("NaN", F), (BIG, R), (MAX, R)]),
    ("generate", "--num-samples", &[], &[("0", F), ("-1", F), ("NaN", F), (BIG, F), (MAX, F)]),
    ("generate", "--temperature", &[], &[("0", R), ("-1", F), ("NaN", F), ("inf", F), ("1e18", R)]),
    ("generate", "--top-k", &[], &[("0", F), ("-1", F), ("NaN", F), (BIG, R), (MAX, R)]),
    ("generate", "--top-p", &[], &[("0", F), ("-1", F), ("NaN", F), ("inf", F), ("1e18", F), ("1", R)]),
    ("generate", "--seed", &[], &[("0", R), ("-1", F), ("NaN", F), (BIG, R), (MAX, R)]),
    ("chat", "--max-new-tokens", &[], &[("0", F), ("-1", F), ("NaN", F), (BIG, R), (MAX, R)]),
    ("chat", "--temperature", &[], &[("0", R), ("-1", F), ("NaN", F), ("inf", F), ("1e18", R)]),
    ("chat", "--top-k", &[], &[("0", F), ("-1", F), ("NaN", F), (BIG, R), (MAX, R)]),
    ("chat", "--top-p", &[], &[("0", F), ("-1", F), ("NaN", F), ("inf", F), ("1e18", F), ("1", R)]),
    ("chat", "--seed", &[], &[("0", R), ("-1", F), ("NaN", F), (BIG, R), (MAX, R)]),
    // The server never ends by itself: every value here must be refused.
    ("serve", "--max-batch", &[], &[("0", F), ("-1", F), ("NaN", F), (BIG, F), (MAX, F)]),
    ("serve", "--max-queue", &[], &[("0", F), ("-1", F), ("NaN", F), (BIG, F), (MAX, F)]),
    ("serve", "--ctx", &[], &[("0", F), ("-1", F), ("NaN", F), (BIG, F), (MAX, F), ("1", F)]),
    ("serve", "--max-tokens-limit", &[], &[("0", F), ("-1", F), ("NaN", F), (BIG, F), (MAX, F), ("33", F)]),
    ("serve", "--timeout", &[], &[("0", F), ("-1", F), ("NaN", F), ("inf", F), ("1e18", F)]),
    ("eval", "--stride", &[], &[("0", F), ("-1", F), ("NaN", F), (BIG, F), (MAX, F), ("32", R), ("33", F)]),
    ("prepare", "--val-fraction", &[], &[("0", R), ("-1", F), ("NaN", F), ("inf", F), ("1e18", F), ("1", F)]),
    ("tokenizer train", "--vocab-size", &[], &[("0", F), ("-1", F), ("NaN", F), (BIG, R), (MAX, R), ("256", F)]),
];

/// The flags each subcommand runs with (a flag under test replaces its base
/// value), then its positional arguments. `{names}`, `{text}`, `{char}`,
/// `{bpe}`, `{template}` and `{out}` name the fixtures.
fn base(cmd: &str) -> (&'static [[&'static str; 2]], &'static [&'static str]) {
    match cmd {
        "" => (&[], &["tokenize", "--count", "{text}"]),
        "train" => (
            &[
                ["--data", "{names}"],
                ["--out", "{out}"],
                ["--steps", "1"],
                ["--n-layer", "1"],
                ["--n-embd", "8"],
                ["--n-head", "2"],
                ["--batch-size", "2"],
                ["--num-samples", "1"],
            ],
            // Every case trains into the same directory.
            &["--overwrite"],
        ),
        "sample" => (&[["--model", "{char}"], ["--num-samples", "2"]], &[]),
        "generate" => (&[["--model", "{bpe}"], ["--max-new-tokens", "2"]], &["Hi"]),
        "chat" => (&[["--model", "{bpe}"], ["--template", "{template}"]], &[]),
        "eval" => (&[["--model", "{bpe}"], ["--data", "{text}"]], &[]),
        "serve" => (&[["--model", "{bpe}"], ["--port", "0"]], &[]),
        "prepare" => (&[["--input", "{text}"], ["--out", "{out}"]], &[]),
        "tokenizer train" => (&[["--out", "{out}"]], &["{text}"]),
        _ => panic!("no base arguments for {cmd:?}"),
    }
}

/// Files the commands run on, made once: 60 names, a short text, a character
/// model trained on the names, a tiny random GPT-2 (its built-in BPE) and a
/// chat template for it (`gpt chat` reads no message: its stdin is empty).
struct Fixtures {
    dir: PathBuf,
}

fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli_flags");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let names: Vec<&str> = gpt::data::docs::NAMES.lines().take(60).collect();
        std::fs::write(dir.join("names.txt"), names.join("\n")).unwrap();
        let text = "The quick brown fox jumps over the lazy dog; then it sleeps. ".repeat(8);
        std::fs::write(dir.join("text.txt"), text).unwrap();
        let template = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:";
        std::fs::write(dir.join("chat.jinja"), template).unwrap();
        let fx = Fixtures { dir };
        let train = fx.args("train", &[format!("--out={}", fx.path("char"))]);
        common::succeeds(gpt(&train.iter().map(String::as_str).collect::<Vec<_>>()));
        let bpe = Gpt::new(
            GptConfig::gpt2(50257, 32, 8, 2, 1),
            Init::Normal(0.5),
            &mut gpt::tensor::rng(1),
        );
        bpe.save(&fx.dir.join("bpe")).unwrap();
        fx
    })
}

impl Fixtures {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }

    /// The command line of `cmd` with `flags` (`--flag=value`) in place of its base ones.
    fn args(&self, cmd: &str, flags: &[String]) -> Vec<String> {
        let out = format!("out-{}", cmd.replace(' ', "-"));
        let files = [
            ("{names}", "names.txt"),
            ("{text}", "text.txt"),
            ("{char}", "char"),
            ("{bpe}", "bpe"),
            ("{template}", "chat.jinja"),
            ("{out}", out.as_str()),
        ];
        let fill = |s: &str| {
            files
                .iter()
                .fold(s.to_string(), |s, (from, to)| s.replace(from, &self.path(to)))
        };
        let given = |f: &str| flags.iter().any(|g| g.starts_with(&format!("{f}=")));
        // A run from --init brings its own size.
        let sized = |f: &str| given("--init") && ["--n-layer", "--n-embd", "--n-head"].contains(&f);
        let (base_flags, positional) = base(cmd);
        let mut args: Vec<String> = cmd.split_whitespace().map(String::from).collect();
        args.extend(flags.iter().map(|f| fill(f)));
        for [f, v] in base_flags.iter().filter(|[f, _]| !given(f) && !sized(f)) {
            args.extend([f.to_string(), fill(v)]);
        }
        args.extend(positional.iter().map(|p| fill(p)));
        args
    }
}

/// Runs every row of `cmd`: each value fails naming its flag or runs, as the row says, and none panics.
fn check_rows(cmd: &str) {
    let fx = fixtures();
    let mut wrong = Vec::new();
    for &(_, flag, extra, cases) in ROWS.iter().filter(|r| r.0 == cmd) {
        for &(value, want) in cases {
            let mut flags = vec![format!("{flag}={value}")];
            flags.extend(extra.chunks(2).map(|p| format!("{}={}", p[0], p[1])));
            let args = fx.args(cmd, &flags);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let what = format!("gpt {}", args.join(" "));
            let out = match gpt_within(&args, Duration::from_secs(60)) {
                Ok(out) => out,
                Err(hung) => {
                    wrong.push(format!("{what}: {hung}"));
                    continue;
                }
            };
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("panicked") {
                wrong.push(format!("{what}: panicked:\n{err}"));
            } else if want == F && (out.status.success() || !err.contains(flag)) {
                wrong.push(format!("{what}: should fail naming {flag}; got {}:\n{err}", out.status));
            } else if want == R && !out.status.success() {
                wrong.push(format!("{what}: should run; failed:\n{err}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn global_flags() {
    check_rows("");
}

#[test]
fn train_flags() {
    check_rows("train");
}

#[test]
fn sample_and_generate_flags() {
    check_rows("sample");
    check_rows("generate");
}

#[test]
fn chat_flags() {
    check_rows("chat");
}

#[test]
fn serve_flags() {
    check_rows("serve");
}

#[test]
fn eval_prepare_and_tokenizer_flags() {
    check_rows("eval");
    check_rows("prepare");
    check_rows("tokenizer train");
}

/// Every numeric flag of every subcommand, as clap defines them: `(subcommand, --flag, is float)`.
fn numeric_flags() -> Vec<(String, String, bool)> {
    fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<(String, String, bool)>) {
        for arg in cmd.get_arguments() {
            let ty = arg.get_value_parser().type_id();
            let float = ty == TypeId::of::<f32>() || ty == TypeId::of::<f64>();
            let integer = [TypeId::of::<usize>(), TypeId::of::<u64>(), TypeId::of::<u32>()]
                .iter()
                .any(|t| ty == *t);
            if let (Some(long), true) = (arg.get_long(), float || integer) {
                out.push((path.to_string(), format!("--{long}"), float));
            }
        }
        for sub in cmd.get_subcommands() {
            let path = format!("{path} {}", sub.get_name());
            walk(sub, path.trim(), out);
        }
    }
    let mut out = Vec::new();
    walk(&gpt::cli::Cli::command(), "", &mut out);
    out
}

#[test]
fn every_numeric_flag_has_a_row_with_every_kind_of_value() {
    let flags = numeric_flags();
    assert!(flags.len() > 30, "clap lists {} numeric flags", flags.len());
    for (cmd, flag, float) in &flags {
        let row = ROWS.iter().find(|r| r.0 == cmd && r.1 == flag);
        let row = row.unwrap_or_else(|| panic!("`gpt {cmd} {flag}` has no row in ROWS: add one"));
        for value in if *float { FLOAT } else { INTEGER } {
            assert!(
                row.3.iter().any(|c| c.0 == value),
                "`gpt {cmd} {flag}` is not tried with {value}"
            );
        }
    }
    for row in ROWS {
        assert!(
            flags.iter().any(|(c, f, _)| c == row.0 && f == row.1),
            "row `gpt {} {}` names no numeric flag of clap's",
            row.0,
            row.1
        );
    }
}
