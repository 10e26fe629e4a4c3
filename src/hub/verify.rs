//! Checking a download against what the Hub said it is: its size, and the
//! hash its ETag names — the sha256 of an LFS file, or the git blob sha1 of a
//! small file stored in git.

use anyhow::{bail, Result};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Hashes a file's bytes as they arrive and checks them at the end.
pub struct Verifier {
    expected_size: Option<u64>,
    etag: String,
    hash: Hash,
    seen: u64,
}

enum Hash {
    Sha256(Sha256),
    GitSha1(Sha1),
    None,
}

impl Verifier {
    /// What the etag can check: a 64-hex etag is a sha256, a 40-hex one a git
    /// blob sha1 (which hashes the size first, so needs it); else only the size.
    pub fn new(etag: &str, expected_size: Option<u64>) -> Verifier {
        let hex = etag.bytes().all(|b| b.is_ascii_hexdigit());
        let hash = match (etag.len(), expected_size) {
            (64, _) if hex => Hash::Sha256(Sha256::new()),
            (40, Some(size)) if hex => {
                let mut h = Sha1::new();
                h.update(format!("blob {size}\0").as_bytes());
                Hash::GitSha1(h)
            }
            _ => Hash::None,
        };
        Verifier {
            expected_size,
            etag: etag.to_ascii_lowercase(),
            hash,
            seen: 0,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.seen += bytes.len() as u64;
        match &mut self.hash {
            Hash::Sha256(h) => h.update(bytes),
            Hash::GitSha1(h) => h.update(bytes),
            Hash::None => {}
        }
    }

    /// Errors, saying what differs, unless the size and hash are the expected ones.
    pub fn finish(self) -> Result<()> {
        if let Some(size) = self.expected_size {
            if self.seen != size {
                bail!("got {} bytes, expected {size}", self.seen);
            }
        }
        let (kind, got) = match self.hash {
            Hash::Sha256(h) => ("sha256", hex(&h.finalize())),
            Hash::GitSha1(h) => ("git blob sha1", hex(&h.finalize())),
            Hash::None => return Ok(()),
        };
        if got != self.etag {
            bail!("its {kind} is {got}, expected {}", self.etag);
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
        let mut v = Verifier::new(etag, size);
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
    fn rejects_wrong_content_or_size() {
        let e = check(SHA256, Some(6), &[b"hellO\n"]).unwrap_err().to_string();
        assert!(e.contains("sha256") && e.contains(SHA256), "{e}");
        let e = check(GIT_SHA1, Some(6), &[b"hellO\n"]).unwrap_err().to_string();
        assert!(e.contains("git blob sha1"), "{e}");
        let e = check("opaque", Some(6), &[b"hello"]).unwrap_err().to_string();
        assert!(e.contains("got 5 bytes, expected 6"), "{e}");
    }
}
