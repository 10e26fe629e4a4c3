//! Downloading one file into its blob: resumed from `{blob}.incomplete` when
//! that exists, verified, and renamed into place only when whole and right.

use super::http::{Client, FileInfo};
use super::verify::{Checksum, Verifier};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const CHUNK: usize = 1 << 20;

/// Downloads the file `info` describes into `blob`, checking its size and
/// `checksum`. `label` names it in messages; `progress` shows a progress bar
/// (on a terminal).
pub fn fetch(
    client: &Client,
    info: &FileInfo,
    checksum: Option<&Checksum>,
    blob: &Path,
    label: &str,
    progress: bool,
) -> Result<()> {
    let dir = blob.parent().context("a blob path has a parent")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let partial = incomplete_path(blob);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&partial)
        .with_context(|| format!("opening {}", partial.display()))?;
    let have = file.metadata()?.len();
    // A partial file as long as the whole is only verified; otherwise ask for the rest.
    let (start, body) = match info.size {
        Some(size) if have > 0 && have >= size => (have, None),
        _ => {
            let (start, body) = client.open(info, have)?;
            (start, Some(body))
        }
    };
    let bar = progress_bar(progress, info.size, start, label);
    let mut verifier = Verifier::new(checksum, info.size);
    // Keep (and hash) only the bytes the body continues; all of them unless the
    // server ignored the range and sends the whole file.
    file.set_len(start)?;
    hash_prefix(&mut file, start, &mut verifier).with_context(|| format!("reading {}", partial.display()))?;
    if let Some(body) = body {
        append(body, &mut file, &mut verifier, &bar).with_context(|| {
            let got = bar.position();
            let of = info.size.map(|s| format!(" of {s}")).unwrap_or_default();
            format!("downloading {label} stopped after {got}{of} bytes; run the same command again to resume")
        })?;
    }
    file.sync_all()?;
    drop(file);
    if let Err(e) = verifier.finish() {
        let _ = fs::remove_file(&partial);
        bar.abandon();
        anyhow::bail!("corrupt download of {label}: {e}; the bad file was deleted, retry the download");
    }
    fs::rename(&partial, blob).with_context(|| format!("moving {} into place", partial.display()))?;
    bar.finish();
    Ok(())
}

/// `{blob}.incomplete`, where a download in progress lives.
pub fn incomplete_path(blob: &Path) -> PathBuf {
    let mut name = blob.as_os_str().to_owned();
    name.push(".incomplete");
    PathBuf::from(name)
}

/// Feeds the first `len` bytes of `file` to the verifier, leaving the cursor at `len`.
fn hash_prefix(file: &mut File, len: u64, verifier: &mut Verifier) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0; CHUNK];
    let mut left = len;
    while left > 0 {
        let n = file.read(&mut buf[..CHUNK.min(left as usize)])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        verifier.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(())
}

/// Copies the body to the end of `file`, hashing and counting as it goes.
fn append(mut body: impl Read, file: &mut File, verifier: &mut Verifier, bar: &ProgressBar) -> std::io::Result<()> {
    let mut buf = vec![0; CHUNK];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        file.write_all(&buf[..n])?;
        verifier.update(&buf[..n]);
        bar.inc(n as u64);
    }
}

fn progress_bar(show: bool, size: Option<u64>, start: u64, label: &str) -> ProgressBar {
    let bar = match (show, size) {
        (false, _) => ProgressBar::hidden(),
        (true, Some(size)) => ProgressBar::new(size).with_style(
            ProgressStyle::with_template(
                "{msg:18!} [{bar:30}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} eta {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        ),
        (true, None) => ProgressBar::no_length().with_style(
            ProgressStyle::with_template("{msg:18!} {bytes:>10} {binary_bytes_per_sec:>12}").expect("valid"),
        ),
    };
    // The bar names the file only: `{repo}/` would not fit.
    bar.set_message(label.rsplit('/').next().unwrap_or(label).to_string());
    bar.set_position(start);
    bar.reset_eta();
    bar
}
