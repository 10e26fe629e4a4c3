//! Ctrl-C (SIGINT) and SIGTERM while `gpt train` runs: the first one lets the
//! step finish and ends the run with a checkpoint; a second one ends the
//! process at once. Outside training (once disarmed) the first one does.

use anyhow::{Context, Result};
use std::sync::atomic::{AtomicBool, Ordering};

/// The exit status of a run stopped by a signal (128 + SIGINT), as shells report it.
pub const EXIT_CODE: i32 = 130;

static ARMED: AtomicBool = AtomicBool::new(false);
static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Catches SIGINT and SIGTERM from now on, until [`disarm`].
pub fn arm() -> Result<()> {
    ARMED.store(true, Ordering::SeqCst);
    ctrlc::set_handler(|| {
        if !ARMED.load(Ordering::SeqCst) || REQUESTED.swap(true, Ordering::SeqCst) {
            std::process::exit(EXIT_CODE);
        }
        eprintln!("\nstopping after this step with a checkpoint (again to quit at once)");
    })
    .context("installing the Ctrl-C handler")
}

/// Signals end the process at once again.
pub fn disarm() {
    ARMED.store(false, Ordering::SeqCst);
}

/// Whether a signal asked the run to stop.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}
