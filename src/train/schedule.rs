//! Learning-rate schedule: linear warmup, then linear or cosine decay to a floor.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decay {
    Constant,
    Linear,
    Cosine,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    pub lr: f32,
    pub min_lr: f32,
    pub warmup: usize,
    pub steps: usize,
    pub decay: Decay,
}

impl Schedule {
    /// The learning rate for `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f32 {
        if step < self.warmup {
            return self.lr * (step + 1) as f32 / self.warmup as f32;
        }
        let span = self.steps.saturating_sub(self.warmup).max(1);
        let progress = ((step - self.warmup) as f32 / span as f32).min(1.0);
        let frac = match self.decay {
            Decay::Constant => 1.0,
            Decay::Linear => 1.0 - progress,
            Decay::Cosine => 0.5 * (1.0 + (std::f32::consts::PI * progress).cos()),
        };
        self.min_lr + (self.lr - self.min_lr) * frac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microgpt_linear_decay_and_warmup_cosine() {
        // microgpt: lr * (1 - step / steps)
        let s = Schedule {
            lr: 0.01,
            min_lr: 0.0,
            warmup: 0,
            steps: 1000,
            decay: Decay::Linear,
        };
        assert_eq!(s.lr_at(0), 0.01);
        assert!((s.lr_at(500) - 0.005).abs() < 1e-9);
        assert!((s.lr_at(999) - 0.00001).abs() < 1e-8);
        let c = Schedule {
            lr: 1.0,
            min_lr: 0.1,
            warmup: 10,
            steps: 110,
            decay: Decay::Cosine,
        };
        assert_eq!(c.lr_at(0), 0.1);
        assert_eq!(c.lr_at(9), 1.0);
        assert!((c.lr_at(60) - 0.55).abs() < 1e-6);
        assert!((c.lr_at(110) - 0.1).abs() < 1e-6);
    }
}
