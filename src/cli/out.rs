//! Standard output for a command's results. A write that fails because the
//! reader has gone (`gpt sample | head -1`) becomes a [`Closed`] error, on
//! which the process ends quietly with status 0 ([`super::main`]): the reader
//! had what it wanted. Any other error still reports.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

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

/// `n` in three significant figures with the unit of its size:
/// `short(1234567.0, &["", "K", "M"])` is `1.2M`.
pub fn short(n: f64, units: &[&str]) -> String {
    let (mut x, mut i) = (n, 0);
    while x >= 1000.0 && i + 1 < units.len() {
        x /= 1000.0;
        i += 1;
    }
    match i {
        0 => format!("{x:.0}{}", units[0]),
        _ => format!("{x:.1}{}", units[i]),
    }
}

/// A number of bytes for people: `548.1 MB`.
pub fn size(bytes: u64) -> String {
    short(bytes as f64, &[" B", " kB", " MB", " GB", " TB"])
}

static QUIET: AtomicBool = AtomicBool::new(false);

/// `--quiet`: no notes, summaries or progress bars on stderr; results and errors only.
#[derive(clap::Args, Debug)]
pub struct Quiet {
    /// Print only results (and errors): no notes, timings or progress bars on stderr
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

impl Quiet {
    /// Makes [`note!`] and [`bar`] silent for the rest of the process if asked.
    pub fn apply(&self) {
        QUIET.store(self.quiet, Ordering::Relaxed);
    }
}

/// Whether `--quiet` was given.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Writes a note to stderr unless `--quiet` (and ignores a stderr that is gone).
pub fn write_note(args: fmt::Arguments) {
    if !quiet() {
        let _ = writeln!(io::stderr(), "{args}");
    }
}

/// `eprintln!` for what a person may want to know and a script can do
/// without: silent with `--quiet`.
macro_rules! note {
    ($($t:tt)*) => {
        $crate::cli::out::write_note(format_args!($($t)*))
    };
}
pub(crate) use note;

/// A progress bar of `len` steps on stderr (drawn only on a terminal), hidden with `--quiet`.
pub fn bar(len: u64) -> indicatif::ProgressBar {
    match quiet() {
        true => indicatif::ProgressBar::hidden(),
        false => indicatif::ProgressBar::new(len),
    }
}
