//! The layering README's Layout table describes, checked against the imports:
//! a layer may only use the layers listed for it, so no cycle can creep in.

use std::collections::BTreeSet;
use std::path::Path;

/// Each layer and the layers of ours it may import (besides itself).
const ALLOWED: &[(&str, &[&str])] = &[
    ("io", &[]),
    ("tensor", &[]),
    ("tokenizer", &["io"]),
    ("data", &["tokenizer", "tensor", "io"]),
    ("hub", &["io"]),
    ("autograd", &["tensor"]),
    ("model", &["autograd", "tensor", "tokenizer", "hub", "io"]),
    ("train", &["model", "data", "autograd", "tensor", "tokenizer", "io"]),
    ("sample", &["model", "autograd", "tensor", "tokenizer"]),
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules of ours that `text` names as `crate::NAME`.
fn crate_imports(text: &str) -> BTreeSet<String> {
    text.match_indices("crate::")
        .map(|(i, m)| {
            let rest = &text[i + m.len()..];
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn every_layer_imports_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    for (layer, allowed) in ALLOWED {
        let mut files = Vec::new();
        rust_files(&src.join(layer), &mut files);
        assert!(!files.is_empty(), "no source in src/{layer}");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for used in crate_imports(&text) {
                if used != *layer && !allowed.contains(&used.as_str()) {
                    wrong.push(format!("{} uses crate::{used}", file.display()));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layering:\n{}", wrong.join("\n"));
}

#[test]
fn nobody_imports_the_command_line() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    for file in files.iter().filter(|f| !f.starts_with(src.join("cli"))) {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            !crate_imports(&text).contains("cli") || file.ends_with("lib.rs") || file.ends_with("main.rs"),
            "{} imports the command line",
            file.display()
        );
    }
}

#[test]
fn the_checker_sees_imports() {
    let text = "use crate::model::Gpt;\nfn f() { crate::io::write_atomic(p, b) }";
    assert_eq!(
        crate_imports(text),
        BTreeSet::from(["model".to_string(), "io".to_string()])
    );
}
