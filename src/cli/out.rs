//! Standard output for a command's results. A write that fails because the
//! reader has gone (`gpt sample | head -1`) becomes a [`Closed`] error, on
//! which the process ends quietly with status 0 ([`super::main`]): the reader
//! had what it wanted. Any other error still reports.

use std::fmt;
use std::io::{self, Write};

/// Standard output, locked, with a closed pipe turned into [`Closed`].
pub struct Stdout(io::StdoutLock<'static>);

pub fn stdout() -> Stdout {
    Stdout(io::stdout().lock())
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(closed)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(closed)
    }
}

/// The reader of standard output closed it.
#[derive(Debug)]
pub struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("standard output was closed by its reader")
    }
}

impl std::error::Error for Closed {}

fn closed(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::BrokenPipe => io::Error::new(io::ErrorKind::BrokenPipe, Closed),
        _ => e,
    }
}

/// Whether `err` comes from standard output having been closed (and not,
/// say, from a network connection that broke).
pub fn is_closed(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.is::<Closed>()
            || e.downcast_ref::<io::Error>()
                .and_then(io::Error::get_ref)
                .is_some_and(|inner| inner.is::<Closed>())
    })
}

/// `n` and the noun that goes with it: `count(1, "sample", "samples")` is
/// `1 sample`, `count(3, …)` is `3 samples`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
