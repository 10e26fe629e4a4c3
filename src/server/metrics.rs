//! `/metrics` in Prometheus' text format: requests by endpoint and status,
//! prompt and completion tokens, the engine's queue, active sequences and
//! decode batch, and histograms of the time to first token and between tokens.

use crate::sample::engine::Stats;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds, in seconds, of the buckets of the time to first token and between tokens.
const TTFT_BOUNDS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
const ITL_BOUNDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// A cumulative histogram of seconds.
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (the last is +Inf), then the sum of the values.
    counts: Mutex<(Vec<u64>, f64)>,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: Mutex::new((vec![0; bounds.len() + 1], 0.0)),
        }
    }

    pub fn observe(&self, secs: f64) {
        let bucket = self.bounds.partition_point(|&b| b < secs);
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.0[bucket] += 1;
        c.1 += secs;
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let (counts, sum) = self.counts.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut total = 0;
        for (i, n) in counts.iter().enumerate() {
            total += n;
            let le = self.bounds.get(i).map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {total}");
        }
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {total}");
    }
}

pub struct Metrics {
    /// Requests answered, by endpoint and status.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    pub ttft: Histogram,
    pub itl: Histogram,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            requests: Mutex::default(),
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
            ttft: Histogram::new(TTFT_BOUNDS),
            itl: Histogram::new(ITL_BOUNDS),
        }
    }
}

impl Metrics {
    pub fn request(&self, endpoint: &'static str, status: u16) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((endpoint, status))
            .or_default() += 1;
    }

    /// The text of `/metrics`; the engine's gauges once the model is loaded.
    pub fn render(&self, engine: Option<&Stats>) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP gpt_requests_total HTTP requests answered, by endpoint and status.\n# TYPE gpt_requests_total counter"
        );
        for ((endpoint, status), n) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                out,
                "gpt_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
            );
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let gauges = engine.map(|s| {
            let g = |a: &std::sync::atomic::AtomicUsize| a.load(Ordering::Relaxed) as u64;
            (g(&s.queued), g(&s.active), g(&s.batch))
        });
        let (queued, active, batch) = gauges.unwrap_or_default();
        for (name, kind, help, value) in [
            (
                "gpt_prompt_tokens_total",
                "counter",
                "Prompt tokens of the requests run.",
                load(&self.prompt_tokens),
            ),
            (
                "gpt_completion_tokens_total",
                "counter",
                "Tokens generated.",
                load(&self.completion_tokens),
            ),
            ("gpt_queue_length", "gauge", "Sequences waiting for a slot.", queued),
            ("gpt_active_sequences", "gauge", "Sequences holding a slot.", active),
            (
                "gpt_decode_batch_size",
                "gauge",
                "Sequences in the last decode step.",
                batch,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        self.ttft.write(
            &mut out,
            "gpt_time_to_first_token_seconds",
            "Time from a request's arrival to each choice's first token.",
        );
        self.itl.write(
            &mut out,
            "gpt_inter_token_latency_seconds",
            "Time between a choice's consecutive tokens.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_requests_counted_by_label() {
        let m = Metrics::default();
        for s in [0.005, 0.02, 0.02, 100.0] {
            m.ttft.observe(s);
        }
        m.request("/v1/completions", 200);
        m.request("/v1/completions", 200);
        m.request("/v1/completions", 400);
        let text = m.render(None);
        for line in [
            "gpt_time_to_first_token_seconds_bucket{le=\"0.01\"} 1",
            "gpt_time_to_first_token_seconds_bucket{le=\"0.025\"} 3",
            "gpt_time_to_first_token_seconds_bucket{le=\"60\"} 3",
            "gpt_time_to_first_token_seconds_bucket{le=\"+Inf\"} 4",
            "gpt_time_to_first_token_seconds_count 4",
            "gpt_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 2",
            "gpt_requests_total{endpoint=\"/v1/completions\",status=\"400\"} 1",
            "gpt_queue_length 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
    }
}
