//! A documents dataset: one document per line, blank lines skipped,
//! shuffled with a seed and split into train and validation.

use crate::tensor::rng;
use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use std::path::Path;

/// The built-in dataset: 32,033 names (makemore's names.txt).
pub const NAMES: &str = include_str!("../../data/names.txt");

/// Reads documents from `path`, or the built-in names when `None`.
pub fn read_documents(path: Option<&Path>) -> Result<Vec<String>> {
    match path {
        None => parse_documents(NAMES, "the built-in names list"),
        Some(path) => parse_documents(&read_text(path)?, &path.display().to_string()),
    }
}

/// The whole of a UTF-8 text file; invalid UTF-8 is an error naming the offset and line.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read data file {}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        anyhow::anyhow!(
            "{} is not valid UTF-8 text (bad byte 0x{:02x} at offset {at}, line {line}); convert it to UTF-8 first",
            path.display(),
            e.as_bytes()[at]
        )
    })
}

/// Splits text into documents, one per non-blank line (a trailing `\r` is dropped).
pub fn parse_documents(text: &str, source: &str) -> Result<Vec<String>> {
    if text.is_empty() {
        bail!("{source} is empty: give a text file with one document per line");
    }
    let docs: Vec<String> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    if docs.is_empty() {
        bail!("{source} has no documents: every line is blank");
    }
    Ok(docs)
}

/// Shuffles with `seed` and holds out `val_fraction` of the documents (at
/// least one when there are two or more, never all of them): documents, or
/// labelled texts.
pub fn split_documents<T>(mut docs: Vec<T>, val_fraction: f64, seed: u64) -> (Vec<T>, Vec<T>) {
    docs.shuffle(&mut rng(seed));
    let n = docs.len();
    let n_val = if n < 2 || val_fraction <= 0.0 {
        0
    } else {
        ((n as f64 * val_fraction).round() as usize).clamp(1, n - 1)
    };
    let val = docs.split_off(n - n_val);
    (docs, val)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_blank_lines_and_crlf() {
        let docs = parse_documents("emma\r\n\n  \nava\nbob", "t").unwrap();
        assert_eq!(docs, ["emma", "ava", "bob"]);
    }

    #[test]
    fn empty_and_blank_files_are_errors() {
        assert!(parse_documents("", "f").unwrap_err().to_string().contains("empty"));
        assert!(parse_documents("\n \n\t\n", "f")
            .unwrap_err()
            .to_string()
            .contains("blank"));
    }

    #[test]
    fn bad_utf8_and_missing_file_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.txt");
        std::fs::write(&p, b"ok\nbad \xff here\n").unwrap();
        let err = read_documents(Some(&p)).unwrap_err().to_string();
        assert!(err.contains("UTF-8") && err.contains("line 2"), "{err}");
        let err = format!("{:#}", read_documents(Some(&dir.path().join("nope.txt"))).unwrap_err());
        assert!(err.contains("nope.txt"), "{err}");
    }

    #[test]
    fn split_is_reproducible_and_disjoint() {
        let docs = read_documents(None).unwrap();
        assert_eq!(docs.len(), 32033);
        let (train, val) = split_documents(docs.clone(), 0.1, 42);
        assert_eq!((train.len(), val.len()), (28830, 3203));
        assert_eq!(split_documents(docs.clone(), 0.1, 42), (train.clone(), val.clone()));
        assert_ne!(split_documents(docs, 0.1, 43).1, val);
        assert_eq!(split_documents(vec!["a".to_string()], 0.1, 1).1.len(), 0);
    }
}
