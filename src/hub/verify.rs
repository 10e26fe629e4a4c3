//! Checking a download against what the Hub said it is: its size, and its
//! hash — the sha256 of an LFS file, or the git blob sha1 of a small file
//! stored in git — as its ETag names it or, when the ETag is not a hash, as the
//! Hub's API lists it.

use super::http::{Client, FileInfo, PathInfo};
use super::names::Name;
use super::repo::RepoId;
use anyhow::{bail, Context, Result};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// A hash a file's bytes must have, as lowercase hex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checksum {
    /// An LFS file's sha256.
    Sha256(String),
    /// A git blob's sha1, which hashes `blob {size}\0` before the bytes.
    GitSha1 { hex: String, size: u64 },
}

impl Checksum {
    pub fn sha256(hex: &str) -> Option<Checksum> {
        is_hex(hex, 64).then(|| Checksum::Sha256(hex.to_ascii_lowercase()))
    }

    pub fn git_sha1(hex: &str, size: u64) -> Option<Checksum> {
        is_hex(hex, 40).then(|| Checksum::GitSha1 {
            hex: hex.to_ascii_lowercase(),
            size,
        })
    }

    /// The hash an ETag names: 64 hex digits a sha256, 40 a git blob sha1
    /// (which cannot be computed without the size); else none.
    pub fn from_etag(etag: &str, size: Option<u64>) -> Option<Checksum> {
        Checksum::sha256(etag).or_else(|| Checksum::git_sha1(etag, size?))
    }
}

/// The hash each of `files` (of `repo` at `commit`) must have: the one its
/// ETag names, else the one the Hub's API lists (asked once, for all such
/// files). A file with neither is named on stderr: it cannot be verified.
/// An API answer naming a path that could lead outside the cache is refused.
pub fn checksums(
    client: &Client,
    repo: &RepoId,
    commit: &str,
    files: &[(&str, &FileInfo)],
) -> Result<Vec<Option<Checksum>>> {
    let from_etags: Vec<_> = files
        .iter()
        .map(|(_, info)| Checksum::from_etag(&info.etag, info.size))
        .collect();
    let unhashed: Vec<&str> = files
        .iter()
        .zip(&from_etags)
        .filter(|(_, c)| c.is_none())
        .map(|((file, _), _)| *file)
        .collect();
    if unhashed.is_empty() {
        return Ok(from_etags);
    }
    let listed = client.paths_info(repo, commit, &unhashed);
    for entry in listed.iter().flatten() {
        Name::File.check(&entry.path).with_context(|| {
            format!(
                "the Hub's API, asked about {}, answered with an unusable path",
                unhashed.join(", ")
            )
        })?;
    }
    let checksums = files.iter().zip(from_etags).map(|((file, info), from_etag)| {
        from_etag.or_else(|| {
            let found = listed.as_ref().ok().and_then(|entries| listed_checksum(entries, file));
            if found.is_none() {
                let why = match &listed {
                    Ok(_) => "the Hub's API lists none for it".to_string(),
                    Err(e) => format!("asking the Hub's API for one failed ({e:#})"),
                };
                let checked = match info.size {
                    Some(size) => format!("only its size ({size} bytes) is checked"),
                    None => "nothing about it can be checked".to_string(),
                };
                eprintln!(
                    "warning: {repo}/{file} could not be verified: its ETag {:?} is not a hash, and {why}; {checked}",
                    info.etag
                );
            }
            found
        })
    });
    Ok(checksums.collect())
}

/// The hash a `paths-info` answer lists for `file`: an LFS file's sha256, else
/// its git blob sha1.
fn listed_checksum(entries: &[PathInfo], file: &str) -> Option<Checksum> {
    let entry = entries.iter().find(|e| e.path == file)?;
    match &entry.lfs {
        Some(lfs) => Checksum::sha256(&lfs.oid),
        None => Checksum::git_sha1(entry.oid.as_deref()?, entry.size?),
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Hashes a file's bytes as they arrive and checks them at the end.
pub struct Verifier {
    expected_size: Option<u64>,
    hash: Option<(Hash, String)>,
    seen: u64,
}

enum Hash {
    Sha256(Sha256),
    GitSha1(Sha1),
}

impl Verifier {
    /// Checks the size when known, and the checksum when there is one.
    pub fn new(checksum: Option<&Checksum>, expected_size: Option<u64>) -> Verifier {
        let hash = checksum.map(|c| match c {
            Checksum::Sha256(hex) => (Hash::Sha256(Sha256::new()), hex.clone()),
            Checksum::GitSha1 { hex, size } => {
                let mut h = Sha1::new();
                h.update(format!("blob {size}\0").as_bytes());
                (Hash::GitSha1(h), hex.clone())
            }
        });
        Verifier {
            expected_size,
            hash,
            seen: 0,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.seen += bytes.len() as u64;
        match &mut self.hash {
            Some((Hash::Sha256(h), _)) => h.update(bytes),
            Some((Hash::GitSha1(h), _)) => h.update(bytes),
            None => {}
        }
    }

    /// Errors, saying what differs, unless the size and hash are the expected ones.
    pub fn finish(self) -> Result<()> {
        if let Some(size) = self.expected_size {
            if self.seen != size {
                bail!("got {} bytes, expected {size}", self.seen);
            }
        }
        let (kind, got, expected) = match self.hash {
            Some((Hash::Sha256(h), expected)) => ("sha256", hex(&h.finalize()), expected),
            Some((Hash::GitSha1(h), expected)) => ("git blob sha1", hex(&h.finalize()), expected),
            None => return Ok(()),
        };
        if got != expected {
            bail!("its {kind} is {got}, expected {expected}");
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(etag: &str, size: Option<u64>, chunks: &[&[u8]]) -> Result<()> {
        let mut v = Verifier::new(Checksum::from_etag(etag, size).as_ref(), size);
        chunks.iter().for_each(|c| v.update(c));
        v.finish()
    }

    // `printf 'hello\n' | sha256sum` and `printf 'hello\n' | git hash-object --stdin`.
    const SHA256: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
    const GIT_SHA1: &str = "ce013625030ba8dba906f756967f9e9ca394464a";

    #[test]
    fn accepts_right_content_in_any_chunking() {
        check(SHA256, Some(6), &[b"hel", b"lo\n"]).unwrap();
        check(SHA256, None, &[b"hello\n"]).unwrap();
        check(&SHA256.to_uppercase(), Some(6), &[b"hello\n"]).unwrap();
        check(GIT_SHA1, Some(6), &[b"h", b"ello\n"]).unwrap();
        check("some-opaque-etag", Some(6), &[b"hello\n"]).unwrap();
    }

    #[test]
    fn what_an_etag_names() {
        assert_eq!(Checksum::from_etag(SHA256, None), Some(Checksum::Sha256(SHA256.into())));
        let git = Checksum::GitSha1 {
            hex: GIT_SHA1.into(),
            size: 6,
        };
        assert_eq!(Checksum::from_etag(&GIT_SHA1.to_uppercase(), Some(6)), Some(git));
        // A git blob sha1 hashes the size first: without it, nothing to check.
        assert_eq!(Checksum::from_etag(GIT_SHA1, None), None);
        assert_eq!(Checksum::from_etag("some-opaque-etag", Some(6)), None);
        assert_eq!(Checksum::from_etag(&SHA256[1..], Some(6)), None);
        assert_eq!(Checksum::sha256(GIT_SHA1), None);
        assert_eq!(Checksum::git_sha1(SHA256, 6), None);
    }

    #[test]
    fn rejects_wrong_content_or_size() {
        let e = check(SHA256, Some(6), &[b"hellO\n"]).unwrap_err().to_string();
        assert!(e.contains("sha256") && e.contains(SHA256), "{e}");
        let e = check(GIT_SHA1, Some(6), &[b"hellO\n"]).unwrap_err().to_string();
        assert!(e.contains("git blob sha1"), "{e}");
        let e = check("opaque", Some(6), &[b"hello"]).unwrap_err().to_string();
        assert!(e.contains("got 5 bytes, expected 6"), "{e}");
    }
}
