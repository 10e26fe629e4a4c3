//! What may name a file or folder in the cache. Revisions (`refs/{revision}`),
//! commits (`snapshots/{commit}`), ETags (`blobs/{etag}`) and file names come
//! from the user or from a server; each is checked here before it becomes part
//! of a path, so none can lead outside its repo's folder. (Repo ids are checked
//! by [`super::RepoId::parse`].)

use anyhow::{bail, Result};
use std::fmt;

/// A kind of string the cache builds paths from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Name {
    /// A branch, tag or commit; may hold `/` (`refs/pr/1`).
    Revision,
    /// A git commit hash: 40 lowercase hex digits.
    Commit,
    /// A blob's name: letters, digits, `-` and `_`.
    Etag,
    /// A file of the repo; may hold `/` (a file in a folder).
    File,
}

/// Longest ETag kept as a blob name: a sha256 is 64; file systems allow 255,
/// less the `.incomplete` of a partial download.
const MAX_ETAG: usize = 128;

impl Name {
    /// Errors, saying why, unless `value` is a usable `self`.
    pub fn check(self, value: &str) -> Result<()> {
        let problem = match self {
            Name::Revision | Name::File => path_problem(value),
            Name::Commit => (!is_commit_hash(value)).then_some("is not 40 lowercase hex digits"),
            Name::Etag => {
                let plain = value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
                (!plain || value.is_empty() || value.len() > MAX_ETAG)
                    .then_some("is not a plain name (1 to 128 letters, digits, - and _)")
            }
        };
        match (problem, self) {
            (None, _) => Ok(()),
            (Some(why), Name::Revision) => {
                bail!("{self} {value:?} {why}: give a branch, tag or commit, such as main, v1.0 or refs/pr/1")
            }
            (Some(why), _) => bail!("{self} {value:?} {why}"),
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Name::Revision => "revision",
            Name::Commit => "commit hash",
            Name::Etag => "ETag",
            Name::File => "file name",
        })
    }
}

/// A git commit hash: 40 lowercase hex digits.
pub fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Why `path` (parts joined by `/`) could name something other than a file or
/// folder below the one it is joined to, on any system; `None` when it cannot.
fn path_problem(path: &str) -> Option<&'static str> {
    let parts = || path.split('/');
    if path.is_empty() {
        Some("is empty")
    } else if path.starts_with('/') {
        Some("is an absolute path")
    } else if path.contains(['\\', ':']) {
        // `a\b` and `C:x` are paths of their own on Windows.
        Some("contains `\\` or `:`")
    } else if path.chars().any(char::is_control) {
        Some("contains a control character")
    } else if parts().any(str::is_empty) {
        Some("has an empty part (`//` or a `/` at the end)")
    } else if parts().any(|p| p == "." || p == "..") {
        Some("has a `.` or `..` part")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_and_file_names_stay_below() {
        for good in ["main", "v1.0", "refs/pr/1", "a..b", ".hidden", "dir/model.safetensors"] {
            Name::Revision.check(good).unwrap();
            Name::File.check(good).unwrap();
        }
        for (bad, why) in [
            ("", "is empty"),
            ("..", "`.` or `..` part"),
            (".", "`.` or `..` part"),
            ("a/../../b", "`.` or `..` part"),
            ("a/./b", "`.` or `..` part"),
            ("/etc/passwd", "absolute"),
            ("a//b", "empty part"),
            ("refs/pr/", "empty part"),
            ("a\\..\\b", "`\\`"),
            ("C:x", "`:`"),
            ("a\0b", "control"),
            ("a\nb", "control"),
        ] {
            let err = Name::Revision.check(bad).unwrap_err().to_string();
            assert!(
                err.contains(&format!("revision {bad:?}")) && err.contains(why) && err.contains("refs/pr/1"),
                "{bad:?}: {err}"
            );
            let err = Name::File.check(bad).unwrap_err().to_string();
            assert!(err.starts_with(&format!("file name {bad:?}")), "{err}");
        }
    }

    #[test]
    fn commits_and_etags_are_plain_names() {
        Name::Commit.check("0123456789abcdef0123456789abcdef01234567").unwrap();
        for bad in ["main", "0123456789ABCDEF0123456789ABCDEF01234567", "../x", ""] {
            assert!(Name::Commit.check(bad).is_err(), "{bad}");
        }
        for good in ["5891b5b522d5df086d0ff0b110fbd9d2", "opaque-etag_1", &"e".repeat(128)] {
            Name::Etag.check(good).unwrap();
        }
        for bad in ["", "../x", "a/b", "a b", "..", "a.incomplete", &"e".repeat(129)] {
            let err = Name::Etag.check(bad).unwrap_err().to_string();
            assert!(err.contains("is not a plain name"), "{err}");
        }
    }
}
