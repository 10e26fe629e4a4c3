//! Hub repository ids (`org/name`) and the short names of OpenAI's GPT-2 models.

use anyhow::{bail, Result};
use std::fmt;

/// Short names accepted everywhere a model is named, and the repos they stand for.
pub const ALIASES: [(&str, &str); 4] = [
    ("gpt2", "openai-community/gpt2"),
    ("gpt2-medium", "openai-community/gpt2-medium"),
    ("gpt2-large", "openai-community/gpt2-large"),
    ("gpt2-xl", "openai-community/gpt2-xl"),
];

/// A model repository on the Hub, `org/name`, checked like `huggingface_hub` checks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoId(String);

impl RepoId {
    /// Parses an alias (`gpt2`, …) or a repo id (`org/name`).
    pub fn parse(name: &str) -> Result<RepoId> {
        if let Some((_, repo)) = ALIASES.iter().find(|(alias, _)| *alias == name) {
            return Ok(RepoId(repo.to_string()));
        }
        if !is_repo_id(name) {
            let aliases: Vec<&str> = ALIASES.iter().map(|(a, _)| *a).collect();
            bail!(
                "{name:?} is not a model name ({}) nor a Hub repo id like openai-community/gpt2",
                aliases.join(", ")
            );
        }
        Ok(RepoId(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The repo's folder in the cache: `models--{org}--{name}`.
    pub fn cache_folder(&self) -> String {
        format!("models--{}", self.0.replace('/', "--"))
    }
}

impl fmt::Display for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `org/name`: word characters, `-` and `.`, at most 96 long, no `--` or `..`,
/// each part starting and ending with a letter or digit.
fn is_repo_id(s: &str) -> bool {
    let part_ok = |p: &str| {
        let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        edge(p.chars().next())
            && edge(p.chars().last())
            && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    match s.split_once('/') {
        Some((org, name)) => s.len() <= 96 && !s.contains("--") && !s.contains("..") && part_ok(org) && part_ok(name),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_repo_ids() {
        assert_eq!(RepoId::parse("gpt2").unwrap().as_str(), "openai-community/gpt2");
        assert_eq!(RepoId::parse("gpt2-xl").unwrap().as_str(), "openai-community/gpt2-xl");
        let r = RepoId::parse("my-org/tiny_gpt.v2").unwrap();
        assert_eq!(r.cache_folder(), "models--my-org--tiny_gpt.v2");
    }

    #[test]
    fn bad_names_are_clear_errors() {
        for bad in [
            "",
            "gpt3",
            "a/b/c",
            "/abs",
            "org/",
            "org--x/n",
            "o/../n",
            "o/n.",
            "o/n m",
            "-o/n",
            "../n",
            "o/..",
            "./n",
            "o\\..\\n/x",
            "o/n\0",
        ] {
            let err = RepoId::parse(bad).unwrap_err().to_string();
            assert!(
                err.contains("not a model name") && err.contains("gpt2-medium"),
                "{bad}: {err}"
            );
        }
    }
}
