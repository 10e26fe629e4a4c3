//! Flag values checked at the boundary: each error names the flag, the value
//! given and what it must be; and whether a job fits in this machine's memory.

use crate::sample::BadOption;
use anyhow::{anyhow, ensure, Result};
use std::fmt::Display;

/// An error `FLAG VALUE: must be WANT` unless `ok`.
pub fn flag(ok: bool, flag: &str, value: impl Display, want: &str) -> Result<()> {
    ensure!(ok, "{flag} {value}: must be {want}");
    Ok(())
}

/// A sampling option out of range, named as its flag (`top_p` is `--top-p`).
pub fn sampling_flag(e: BadOption) -> anyhow::Error {
    anyhow!("--{} {}: must be {}", e.name.replace('_', "-"), e.value, e.want)
}

/// Bytes of memory this machine has.
fn physical_memory() -> u128 {
    // SAFETY: sysconf only reads system constants; it touches no memory of ours.
    let (pages, page) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    if pages > 0 && page > 0 {
        pages as u128 * page as u128
    } else {
        isize::MAX as u128
    }
}

/// An error unless `bytes` fit in this machine's memory: `what` names the
/// job and its size, `fix` the flags that shrink it.
pub fn fits_in_memory(bytes: u128, what: impl FnOnce() -> String, fix: &str) -> Result<()> {
    let have = physical_memory();
    let gib = |b: u128| {
        let g = b as f64 / (1u64 << 30) as f64;
        if g < 1e6 {
            format!("{g:.1} GiB")
        } else {
            format!("{g:.1e} GiB")
        }
    };
    ensure!(
        bytes <= have,
        "{} needs about {} of memory, more than this machine's {}: {fix}",
        what(),
        gib(bytes),
        gib(have)
    );
    Ok(())
}
