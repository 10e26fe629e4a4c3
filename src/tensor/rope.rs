//! Rotary position embeddings (RoPE), in Hugging Face's convention: channel
//! `i` of a head is paired with channel `i + head_size/2`, and the pair is
//! rotated by the angle `pos * inv_freq[i]`, `pos` being the token's position
//! in its document (so packed documents and a KV cache need nothing more).

use super::min_rows_per_task;
use rayon::prelude::*;

/// Llama 3's rescaled frequencies (`rope_scaling` with `"rope_type": "llama3"`):
/// long wavelengths are slowed by `factor`, short ones kept, those between blended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Llama3Scaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_max_position_embeddings: usize,
}

/// The frequencies of a rotary embedding: base `theta`, optionally rescaled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeConfig {
    pub theta: f32,
    pub scaling: Option<Llama3Scaling>,
}

/// The `head_size / 2` inverse frequencies `theta^(-2i / head_size)`, with
/// Llama 3's rescaling as `transformers` applies it
/// (`_compute_llama3_parameters`). In f32, step for step as `transformers`
/// computes them, so the angles are the ones the weights were trained with.
pub fn inv_freq(head_size: usize, rope: RopeConfig) -> Vec<f32> {
    (0..head_size / 2).map(|i| inv_freq_at(i, head_size, rope)).collect()
}

/// Frequency `i` of [`inv_freq`].
fn inv_freq_at(i: usize, head_size: usize, rope: RopeConfig) -> f32 {
    let f = 1.0 / rope.theta.powf((2 * i) as f32 / head_size as f32);
    let Some(s) = rope.scaling else { return f };
    let old_len = s.original_max_position_embeddings as f32;
    let (low_wavelen, high_wavelen) = (old_len / s.low_freq_factor, old_len / s.high_freq_factor);
    let wavelen = 2.0 * std::f32::consts::PI / f;
    if wavelen < high_wavelen {
        f
    } else if wavelen > low_wavelen {
        f / s.factor
    } else {
        let smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        (1.0 - smooth) * f / s.factor + smooth * f
    }
}

/// `pos[N] -> angles[N, head_size]`: each row's `cos` (first half) and `sin`
/// (second half) of its position's angles. Computed once per forward for the
/// positions of its rows, read by every layer: a table of every position up
/// to the context would hold 2 MiB for SmolLM2's 8192, 64 MiB for Llama 3's
/// 131072.
pub fn rope_angles(angles: &mut [f32], pos: &[u32], head_size: usize, rope: RopeConfig) {
    assert!(
        head_size.is_multiple_of(2) && head_size > 0,
        "rotary embeddings pair channels: odd head size"
    );
    assert_eq!(angles.len(), pos.len() * head_size);
    let half = head_size / 2;
    angles
        .par_chunks_mut(head_size)
        .zip(pos.par_iter())
        .with_min_len(64)
        .for_each(|(row, &p)| {
            let (cos, sin) = row.split_at_mut(half);
            for (i, (c, s)) in cos.iter_mut().zip(sin).enumerate() {
                // The angle is rounded to f32 as in transformers; its cos and sin are then exact.
                let a = (p as f32 * inv_freq_at(i, head_size, rope)) as f64;
                (*c, *s) = (a.cos() as f32, a.sin() as f32);
            }
        });
}

/// `x[N, width] -> out[N, width]`: the first `heads` heads of each row (the
/// queries and keys of a fused `qkv`) rotated by the row's angles (of
/// [`rope_angles`], `[N, head_size]`), the rest (the values) copied:
/// `out[i] = x[i] cos - x[i + h/2] sin`, `out[i + h/2] = x[i + h/2] cos + x[i] sin`.
pub fn rope_forward(out: &mut [f32], x: &[f32], angles: &[f32], head_size: usize, width: usize, heads: usize) {
    rotate(out, x, angles, head_size, width, heads, 1.0, false);
}

/// Backward of [`rope_forward`]: `dx += Rᵀ dout`, the rotation by minus the
/// angle on the rotated heads, `dout` itself on the rest.
pub fn rope_backward(dx: &mut [f32], dout: &[f32], angles: &[f32], head_size: usize, width: usize, heads: usize) {
    rotate(dx, dout, angles, head_size, width, heads, -1.0, true);
}

/// Rotates by `sign` times each row's angles into `out`, written or (with `add`) added.
#[allow(clippy::too_many_arguments)]
fn rotate(out: &mut [f32], x: &[f32], angles: &[f32], hs: usize, width: usize, heads: usize, sign: f32, add: bool) {
    let half = hs / 2;
    assert!(hs > 0 && heads * hs <= width && out.len() == x.len());
    assert!(x.len() / width * hs == angles.len(), "one row of angles per row");
    out.par_chunks_mut(width)
        .zip(x.par_chunks(width))
        .zip(angles.par_chunks(hs))
        .with_min_len(min_rows_per_task(width))
        .for_each(|((o, x), angles)| {
            let (cos, sin) = angles.split_at(half);
            let (rotated, rest) = o.split_at_mut(heads * hs);
            for (o, x) in rotated.chunks_mut(hs).zip(x.chunks(hs)) {
                let (o1, o2) = o.split_at_mut(half);
                let (x1, x2) = x.split_at(half);
                for i in 0..half {
                    let (c, s) = (cos[i], sign * sin[i]);
                    let (a, b) = (x1[i] * c - x2[i] * s, x2[i] * c + x1[i] * s);
                    if add {
                        (o1[i], o2[i]) = (o1[i] + a, o2[i] + b);
                    } else {
                        (o1[i], o2[i]) = (a, b);
                    }
                }
            }
            let x_rest = &x[heads * hs..];
            if add {
                rest.iter_mut().zip(x_rest).for_each(|(o, x)| *o += x);
            } else {
                rest.copy_from_slice(x_rest);
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_scaling_keeps_high_blends_middle_and_slows_low_frequencies() {
        // theta 10000, head 8: wavelengths 2π·{1, 10, 100, 1000} against 64 / {4, 1}.
        let plain = RopeConfig {
            theta: 10000.0,
            scaling: None,
        };
        let scaled = RopeConfig {
            scaling: Some(Llama3Scaling {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 64,
            }),
            ..plain
        };
        let (f, g) = (inv_freq(8, plain), inv_freq(8, scaled));
        for (a, b) in f.iter().zip([1.0, 0.1, 0.01, 0.001]) {
            assert!((a - b).abs() <= 1e-6 * b, "{a} vs {b}");
        }
        assert_eq!(g[0], f[0]);
        let smooth = (64.0 / (2.0 * std::f32::consts::PI / f[1]) - 1.0) / 3.0;
        assert!((g[1] - ((1.0 - smooth) * f[1] / 8.0 + smooth * f[1])).abs() < 1e-9);
        assert!(g[1] < f[1] && g[1] > f[1] / 8.0);
        assert_eq!(&g[2..], &[f[2] / 8.0, f[3] / 8.0]);
    }

    #[test]
    fn rotation_preserves_pair_norms_and_position_zero_is_identity() {
        let rope = RopeConfig {
            theta: 100.0,
            scaling: None,
        };
        let mut angles = vec![0.0; 8];
        rope_angles(&mut angles, &[0, 5], 4, rope);
        // Two rows of width 10: two rotated heads of 4, then 2 copied values.
        let x: Vec<f32> = (0..20).map(|i| (i as f32 * 0.7).sin()).collect();
        let mut out = vec![0.0; 20];
        rope_forward(&mut out, &x, &angles, 4, 10, 2);
        assert_eq!(out[..10], x[..10]);
        assert_eq!(out[18..], x[18..]);
        for head in [10, 14] {
            for i in 0..2 {
                let n = |v: &[f32]| v[head + i].hypot(v[head + i + 2]);
                assert!((n(&out) - n(&x)).abs() < 1e-6);
            }
        }
        // The backward rotates back: applied to the output it gives the input.
        let mut back = vec![0.0; 20];
        rope_backward(&mut back, &out, &angles, 4, 10, 2);
        for (a, b) in back.iter().zip(&x) {
            assert!((a - b).abs() < 1e-6);
        }
    }
}
