//! Multiple-choice records (HellaSwag and the like): a context, two or more
//! endings and the index of the right one, one JSON object per line:
//! `{"context": …, "endings": […], "label": k}`, or HellaSwag's own fields
//! (`ctx`, or `ctx_a` + `ctx_b`; `endings`; `label`, a number or a string
//! such as "3"). Every error names the file and line.

use crate::tokenizer::Tokenizer;
use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use std::path::Path;

/// One record, as text, and the line it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub context: String,
    pub endings: Vec<String>,
    pub label: usize,
    pub line: usize,
}

/// One record as token ids: each ending encoded with a leading space, apart
/// from its context (as llm.c scores HellaSwag).
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub context: Vec<u32>,
    pub endings: Vec<Vec<u32>>,
    pub label: usize,
}

/// The records of the JSONL file `path`; blank lines are skipped.
pub fn read_records(path: &Path) -> Result<Vec<Record>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text = String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if !line.trim().is_empty() {
            let record = parse(line, i + 1).with_context(|| format!("{}:{}", path.display(), i + 1))?;
            out.push(record);
        }
    }
    ensure!(
        !out.is_empty(),
        "{} holds no records: expected one {{\"context\": …, \"endings\": […], \"label\": k}} per line",
        path.display()
    );
    Ok(out)
}

fn parse(line: &str, n: usize) -> Result<Record> {
    let v: Value = serde_json::from_str(line).context("not a JSON object")?;
    let Value::Object(v) = v else {
        bail!("not a JSON object, but {v}")
    };
    let text = |key: &str| match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => bail!("\"{key}\" is {other}, not a string"),
    };
    let context = match (text("context")?, text("ctx")?, text("ctx_a")?) {
        (Some(c), _, _) | (None, Some(c), _) => c.to_string(),
        // HellaSwag's `ctx` is `ctx_a` and `ctx_b` joined by a space.
        (None, None, Some(a)) => match text("ctx_b")?.filter(|b| !b.is_empty()) {
            Some(b) => format!("{a} {b}"),
            None => a.to_string(),
        },
        _ => bail!("no \"context\" (or HellaSwag's \"ctx\") string in the record"),
    };
    ensure!(!context.trim().is_empty(), "the context is empty");
    let Some(endings) = v.get("endings") else {
        bail!("no \"endings\" in the record: expected a list of two or more strings")
    };
    let Value::Array(endings) = endings else {
        bail!("\"endings\" is {endings}, not a list of strings")
    };
    ensure!(
        endings.len() >= 2,
        "{} ending{}: a record needs two or more to choose from",
        endings.len(),
        if endings.len() == 1 { "" } else { "s" }
    );
    let endings = endings
        .iter()
        .enumerate()
        .map(|(k, e)| match e {
            Value::String(s) if s.trim().is_empty() => bail!("ending {k} is empty"),
            Value::String(s) => Ok(s.clone()),
            other => bail!("ending {k} is {other}, not a string"),
        })
        .collect::<Result<Vec<_>>>()?;
    let label = match v.get("label") {
        None | Some(Value::Null) => bail!("no \"label\" in the record (the index of the right ending, from 0)"),
        Some(Value::Number(x)) => x.as_u64(),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(_) => None,
    };
    let n_endings = endings.len();
    match label.and_then(|l| usize::try_from(l).ok()) {
        Some(label) if label < n_endings => Ok(Record {
            context,
            endings,
            label,
            line: n,
        }),
        _ => bail!(
            "the label {} is not the index of one of its {n_endings} endings (0 to {})",
            v["label"],
            n_endings - 1
        ),
    }
}

/// `records` of `path` as token ids: the context as it is, each ending with
/// a leading space. A character tokenizer is refused, and so is an ending
/// longer than the model's context `n_ctx` (it needs a context token before it).
pub fn encode(path: &Path, records: &[Record], tok: &Tokenizer, n_ctx: usize) -> Result<Vec<Choice>> {
    if let Tokenizer::Char(_) = tok {
        bail!(
            "multiple-choice scoring reads words, and this is a character model: \
             run it with a BPE model (GPT-2's, a Hugging Face tokenizer.json, a GGUF file)"
        );
    }
    let p = path.display();
    records
        .iter()
        .map(|r| {
            let context = tok.encode(&r.context)?;
            ensure!(!context.is_empty(), "{p}:{}: the context has no tokens", r.line);
            let endings = r.endings.iter().enumerate().map(|(k, e)| {
                let ids = tok.encode(&format!(" {e}"))?;
                ensure!(
                    ids.len() <= n_ctx,
                    "{p}:{}: ending {k} has {} tokens, more than the model's context of {n_ctx} can score \
                     (one token of context comes before them): shorten it, or use a model with a longer context",
                    r.line,
                    ids.len()
                );
                Ok(ids)
            });
            Ok(Choice {
                context,
                endings: endings.collect::<Result<_>>()?,
                label: r.label,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("gpt-choice-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn ours_and_hellaswags_fields_read_alike() {
        let path = write(
            "a.jsonl",
            concat!(
                r#"{"context": "A cat", "endings": ["sat.", "flew."], "label": 1}"#,
                "\n\n",
                r#"{"ctx": "He", "ctx_a": "x", "endings": ["a", "b", "c"], "label": "2"}"#,
                "\n",
                r#"{"ctx_a": "A man is on a roof.", "ctx_b": "he", "endings": ["a", "b"], "label": 0}"#,
                "\n",
            ),
        );
        let r = read_records(&path).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].context.as_str(), r[0].label, r[0].line), ("A cat", 1, 1));
        assert_eq!(r[0].endings, ["sat.", "flew."]);
        assert_eq!((r[1].context.as_str(), r[1].label, r[1].line), ("He", 2, 3));
        assert_eq!(r[2].context, "A man is on a roof. he");
    }

    #[test]
    fn endings_take_a_leading_space_and_long_ones_are_refused() {
        let records = [Record {
            context: "Hello".into(),
            endings: vec!["world".into(), "there you are".into()],
            label: 0,
            line: 7,
        }];
        let tok = Tokenizer::gpt2();
        let path = Path::new("x.jsonl");
        let c = encode(path, &records, &tok, 8).unwrap();
        assert_eq!(c[0].context, tok.encode("Hello").unwrap());
        assert_eq!(c[0].endings[0], tok.encode(" world").unwrap());
        assert_eq!(c[0].endings[1].len(), 3);
        let err = encode(path, &records, &tok, 2).unwrap_err().to_string();
        assert!(err.contains("x.jsonl:7: ending 1 has 3 tokens, more than"), "{err}");
    }

    #[test]
    fn bad_records_are_errors_naming_file_and_line() {
        let ok = r#""endings": ["a", "b"], "label": 0"#;
        let cases = [
            ("{\"context\": \"x\", ".to_string() + ok, "not a JSON object"),
            ("[1]".into(), "not a JSON object, but [1]"),
            (format!("{{{ok}}}"), "no \"context\""),
            (format!("{{\"context\": \" \", {ok}}}"), "the context is empty"),
            (format!("{{\"context\": 3, {ok}}}"), "\"context\" is 3, not a string"),
            (r#"{"context": "x", "label": 0}"#.into(), "no \"endings\""),
            (r#"{"context": "x", "endings": "ab", "label": 0}"#.into(), "not a list"),
            (
                r#"{"context": "x", "endings": ["a"], "label": 0}"#.into(),
                "1 ending: a record needs two",
            ),
            (
                r#"{"context": "x", "endings": ["a", " "], "label": 0}"#.into(),
                "ending 1 is empty",
            ),
            (
                r#"{"context": "x", "endings": ["a", 2], "label": 0}"#.into(),
                "ending 1 is 2, not a string",
            ),
            (r#"{"context": "x", "endings": ["a", "b"]}"#.into(), "no \"label\""),
            (
                r#"{"context": "x", "endings": ["a", "b"], "label": 2}"#.into(),
                "the label 2 is not the index of one of its 2 endings (0 to 1)",
            ),
            (
                r#"{"context": "x", "endings": ["a", "b"], "label": -1}"#.into(),
                "the label -1 is not",
            ),
            (
                r#"{"context": "x", "endings": ["a", "b"], "label": "b"}"#.into(),
                "the label \"b\" is not",
            ),
            (
                r#"{"context": "x", "endings": ["a", "b"], "label": 1.0}"#.into(),
                "the label 1.0 is not",
            ),
        ];
        for (line, want) in cases {
            let path = write("bad.jsonl", &format!("{{\"context\": \"ok\", {ok}}}\n{line}\n"));
            let err = format!("{:#}", read_records(&path).unwrap_err());
            assert!(err.contains("bad.jsonl:2: ") && err.contains(want), "{line}: {err}");
        }
        let err = read_records(&write("empty.jsonl", "\n")).unwrap_err().to_string();
        assert!(err.contains("empty.jsonl holds no records"), "{err}");
        let chars = Tokenizer::Char(crate::tokenizer::CharTokenizer::from_docs(&["ab".to_string()]));
        let err = encode(Path::new("c.jsonl"), &[], &chars, 8).unwrap_err().to_string();
        assert!(err.contains("character model"), "{err}");
    }
}
