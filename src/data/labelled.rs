//! Labelled texts for classification: a TSV file (`label<TAB>text` under a
//! header line, no quoting: the text runs to the end of the line) or JSONL
//! (`{"text": …, "label": …}` per line). Every error names the file and line.

use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeSet;
use std::path::Path;

/// One text, its label (when the file has labels) and the line it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub label: Option<String>,
    pub text: String,
    pub line: usize,
}

/// Whether `path` is read as JSON lines (by its extension) rather than TSV.
fn is_jsonl(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("json"))
}

/// The examples of `path`. With `need_labels`, a file without a label
/// (column, field) is an error; without, labels are read where present.
pub fn read_examples(path: &Path, need_labels: bool) -> Result<Vec<Example>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text = String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", path.display()))?;
    let examples = if is_jsonl(path) {
        read_jsonl(path, &text, need_labels)?
    } else {
        read_tsv(path, &text, need_labels)?
    };
    ensure!(!examples.is_empty(), "{} holds no examples", path.display());
    Ok(examples)
}

fn read_tsv(path: &Path, text: &str, need_labels: bool) -> Result<Vec<Example>> {
    let p = path.display();
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)));
    let Some((_, header)) = lines.next() else {
        bail!("{p} is empty: expected a header line `label<TAB>text`, then one example per line")
    };
    let header = header.strip_prefix('\u{feff}').unwrap_or(header);
    let columns: Vec<&str> = header.split('\t').map(str::trim).collect();
    let text_col = columns.iter().position(|&c| c == "text");
    let label_col = columns.iter().position(|&c| c == "label");
    let Some(text_col) = text_col.filter(|&c| c + 1 == columns.len()) else {
        bail!("{p}:1: the header {header:?} has no last column `text` (expected `label<TAB>text`)")
    };
    if need_labels && label_col.is_none() {
        bail!("{p}:1: the header {header:?} has no `label` column (expected `label<TAB>text`)");
    }
    let mut out = Vec::new();
    for (n, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        // The text is the last column and runs to the end of the line, tabs and all.
        let fields: Vec<&str> = line.splitn(columns.len(), '\t').collect();
        ensure!(
            fields.len() == columns.len(),
            "{p}:{n}: {} columns where the header has {} (label<TAB>text)",
            fields.len(),
            columns.len()
        );
        let label = label_col.map(|c| fields[c].trim().to_string());
        if label.as_ref().is_some_and(String::is_empty) {
            bail!("{p}:{n}: the label is empty");
        }
        out.push(example(path, n, label, fields[text_col])?);
    }
    Ok(out)
}

fn read_jsonl(path: &Path, text: &str, need_labels: bool) -> Result<Vec<Example>> {
    let p = path.display();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{p}:{n}: not a JSON object"))?;
        let Some(text) = v.get("text").and_then(|t| t.as_str()) else {
            bail!("{p}:{n}: no \"text\" string in the record")
        };
        let label = match v.get("label") {
            None | Some(serde_json::Value::Null) if need_labels => bail!("{p}:{n}: no \"label\" in the record"),
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) if s.is_empty() => bail!("{p}:{n}: the label is empty"),
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(x)) => Some(x.to_string()),
            Some(other) => bail!("{p}:{n}: the label {other} is neither a string nor a number"),
        };
        out.push(example(path, n, label, text)?);
    }
    Ok(out)
}

fn example(path: &Path, line: usize, label: Option<String>, text: &str) -> Result<Example> {
    ensure!(!text.trim().is_empty(), "{}:{line}: the text is empty", path.display());
    Ok(Example {
        label,
        text: text.to_string(),
        line,
    })
}

/// The labels of a classifier trained on `examples` of `path`: `given` (in
/// its order; every example's label must be one of them), or those of the
/// data, sorted. Two at least.
pub fn label_set(path: &Path, examples: &[Example], given: Option<&[String]>) -> Result<Vec<String>> {
    let labels: Vec<String> = match given {
        Some(given) => {
            let unique: BTreeSet<&String> = given.iter().collect();
            ensure!(
                unique.len() == given.len(),
                "--labels {}: a label is named twice",
                given.join(",")
            );
            given.to_vec()
        }
        None => {
            let set: BTreeSet<&str> = examples.iter().filter_map(|e| e.label.as_deref()).collect();
            set.into_iter().map(String::from).collect()
        }
    };
    check_labels(path, examples, &labels)?;
    ensure!(
        labels.len() >= 2,
        "{}: only one label ({:?}) in the data: a classifier needs two classes at least",
        path.display(),
        labels.first().map_or("", String::as_str)
    );
    Ok(labels)
}

/// Errors unless every example's label is one of `labels`.
pub fn check_labels(path: &Path, examples: &[Example], labels: &[String]) -> Result<()> {
    for e in examples {
        if let Some(l) = e.label.as_ref().filter(|l| !labels.contains(l)) {
            bail!(
                "{}:{}: unknown label {l:?} (the labels are {})",
                path.display(),
                e.line,
                labels.join(", ")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("gpt-labelled-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn tsv_text_runs_to_the_end_of_the_line_and_labels_sort() {
        let path = write("a.tsv", "label\ttext\nspam\tWin\tnow \"free\"\n\nham\tsee you\r\n");
        let ex = read_examples(&path, true).unwrap();
        assert_eq!(ex.len(), 2);
        assert_eq!(ex[0].text, "Win\tnow \"free\"");
        assert_eq!((ex[1].label.as_deref(), ex[1].line), (Some("ham"), 4));
        assert_eq!(label_set(&path, &ex, None).unwrap(), ["ham", "spam"]);
        let given = ["spam".to_string(), "ham".to_string()];
        assert_eq!(label_set(&path, &ex, Some(&given)).unwrap(), ["spam", "ham"]);
        let err = label_set(&path, &ex, Some(&given[..1])).unwrap_err().to_string();
        assert!(err.contains("a.tsv:4: unknown label \"ham\""), "{err}");
    }

    #[test]
    fn jsonl_and_bad_input_are_errors_naming_file_and_line() {
        let path = write(
            "b.jsonl",
            "{\"text\": \"hi\", \"label\": 1}\n{\"text\": \"yo\", \"label\": \"x\"}\n",
        );
        let ex = read_examples(&path, true).unwrap();
        assert_eq!(ex[0].label.as_deref(), Some("1"));
        let cases = [
            (
                "c.tsv",
                "text\nhello\n",
                "c.tsv:1: the header \"text\" has no `label` column",
            ),
            ("d.tsv", "label\ttext\nham\t \n", "d.tsv:2: the text is empty"),
            ("e.tsv", "label\ttext\nham\n", "e.tsv:2: 1 columns"),
            ("f.jsonl", "{\"text\": \"a\"}\n", "f.jsonl:1: no \"label\""),
            ("g.jsonl", "{\"label\": \"a\"}\n", "g.jsonl:1: no \"text\""),
        ];
        for (name, text, want) in cases {
            let err = format!("{:#}", read_examples(&write(name, text), true).unwrap_err());
            assert!(err.contains(want), "{name}: {err}");
        }
        // Unlabelled data reads where labels are not needed.
        assert_eq!(
            read_examples(&write("h.tsv", "text\nhello\n"), false).unwrap()[0].label,
            None
        );
        let one = write("i.tsv", "label\ttext\nham\ta\nham\tb\n");
        let err = label_set(&one, &read_examples(&one, true).unwrap(), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("only one label (\"ham\")"), "{err}");
    }
}
