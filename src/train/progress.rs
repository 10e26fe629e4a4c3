//! What a run shows while it trains: a progress bar on a terminal, plain
//! lines at an interval anywhere else (a log file, CI, `nohup`), or nothing.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A progress bar with the latest loss.
    Bar,
    /// A line every this many steps, at each validation and at the end.
    Lines(usize),
    /// Nothing.
    Quiet,
}

impl Progress {
    /// A bar when stderr is a terminal; else about 100 lines over a run of
    /// `steps`, at most one every 10 steps.
    pub fn for_stderr(steps: usize) -> Progress {
        if std::io::stderr().is_terminal() {
            Progress::Bar
        } else {
            Progress::Lines((steps / 100).max(10))
        }
    }
}

/// One step as shown: its training loss, the validation loss if it was
/// validated, its learning rate, and the time and tokens it took.
pub struct StepView {
    pub step: usize,
    pub loss: f32,
    pub val: Option<f32>,
    pub lr: f32,
    pub time: Duration,
    pub tokens: usize,
}

/// Shows a run of `steps` steps as [`Progress`] asks.
pub struct Display {
    kind: Progress,
    bar: ProgressBar,
    steps: usize,
    /// Time and tokens since the last line (speeds are over that span).
    time: Duration,
    tokens: usize,
    since: usize,
}

impl Display {
    /// A display for a run of `steps` steps starting after step `done`.
    pub fn new(kind: Progress, steps: usize, done: usize) -> Display {
        let bar = match kind {
            Progress::Bar => ProgressBar::new(steps as u64),
            _ => ProgressBar::hidden(),
        };
        let template = "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg} (eta {eta})";
        bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
        bar.set_position(done as u64);
        bar.reset_eta();
        Display {
            kind,
            bar,
            steps,
            time: Duration::ZERO,
            tokens: 0,
            since: 0,
        }
    }

    /// Prints `text` whole, above the bar (never through it).
    pub fn println(&self, text: &str) {
        if self.kind != Progress::Quiet {
            self.bar.suspend(|| eprintln!("{text}"));
        }
    }

    /// The validation loss of the weights a run starts from.
    pub fn start(&self, done: usize, val: f32) {
        self.println(&format!("step {done}/{} | val {val:.4}", self.steps));
    }

    /// Shows step `v` (`last`: the run's last).
    pub fn step(&mut self, v: &StepView, last: bool) {
        self.time += v.time;
        self.tokens += v.tokens;
        self.since += 1;
        let ms = 1e3 * self.time.as_secs_f64() / self.since as f64;
        let tok_s = self.tokens as f64 / self.time.as_secs_f64().max(1e-9);
        match self.kind {
            Progress::Bar => {
                let val = v.val.map(|v| format!(" val {v:.4}")).unwrap_or_default();
                self.bar
                    .set_message(format!("loss {:.4}{val} | {} tok/s", v.loss, count(tok_s)));
                self.bar.inc(1);
                return;
            }
            Progress::Lines(every) if last || v.val.is_some() || v.step.is_multiple_of(every) => {
                eprintln!("{}", line(v, self.steps, ms, tok_s));
            }
            _ => return,
        }
        (self.time, self.tokens, self.since) = (Duration::ZERO, 0, 0);
    }

    /// Leaves the bar as it is (after an error).
    pub fn abandon(&self) {
        self.bar.abandon();
    }

    pub fn finish(&self) {
        self.bar.finish();
    }
}

/// `step 500/4000 | loss 2.1400 | val 2.1600 | lr 3.9e-3 | 10.9 ms/step | 94k tok/s`
fn line(v: &StepView, steps: usize, ms: f64, tok_s: f64) -> String {
    let val = v.val.map(|v| format!(" | val {v:.4}")).unwrap_or_default();
    format!(
        "step {}/{steps} | loss {:.4}{val} | lr {:.1e} | {} ms/step | {} tok/s",
        v.step,
        v.loss,
        v.lr,
        millis(ms),
        count(tok_s)
    )
}

/// A count with two or three significant digits and a k or M suffix: 940, 9.4k, 94k, 1.2M.
pub fn count(x: f64) -> String {
    let (v, unit) = match x {
        x if x >= 1e6 => (x / 1e6, "M"),
        x if x >= 1e3 => (x / 1e3, "k"),
        x => (x, ""),
    };
    if v < 10.0 && !unit.is_empty() {
        format!("{v:.1}{unit}")
    } else {
        format!("{v:.0}{unit}")
    }
}

/// Milliseconds: one decimal under 100 (10.9), none above (250).
fn millis(ms: f64) -> String {
    if ms < 100.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_reads_like_nanogpt() {
        let v = StepView {
            step: 500,
            loss: 2.14,
            val: Some(2.16),
            lr: 3.9e-3,
            time: Duration::from_millis(11),
            tokens: 1000,
        };
        assert_eq!(
            line(&v, 4000, 10.9, 94_123.0),
            "step 500/4000 | loss 2.1400 | val 2.1600 | lr 3.9e-3 | 10.9 ms/step | 94k tok/s"
        );
        let v = StepView { val: None, ..v };
        assert_eq!(
            line(&v, 4000, 250.2, 1_234_567.0),
            "step 500/4000 | loss 2.1400 | lr 3.9e-3 | 250 ms/step | 1.2M tok/s"
        );
        assert_eq!([count(940.4), count(9_440.0)], ["940", "9.4k"]);
    }
}
