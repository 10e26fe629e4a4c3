//! Causal multi-head self-attention, fused: scores, softmax and the weighted
//! sum of values in one pass per query row.
//!
//! Every query token carries its position `pos` inside its own document, and
//! attends to the `pos + 1` keys that end at itself. With one document per
//! sequence that is plain causal attention; with several documents packed into
//! one sequence it keeps them apart, so packing wastes no compute on padding.

use super::elementwise::softmax_in_place;
use super::matmul::{matmul_strided, View};
use super::{axpy, dot};
use rayon::prelude::*;

/// From this many queries per sequence on, [`attention_forward`] uses GEMM per
/// head (all scores, then masked) instead of one row at a time.
const GEMM_MIN_QUERIES: usize = 64;

/// Sizes of one attention call: `b` sequences of `t` query tokens, `c` channels in `n_head` heads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnShape {
    pub b: usize,
    pub t: usize,
    pub c: usize,
    pub n_head: usize,
}

/// Where the keys and values live. Key `s` of sequence `b` starts at
/// `k[(b * seq_rows + s) * stride]`, its head `h` at `+ h * head_size`.
/// The `t` queries of a call are the last `t` of the `len` keys.
#[derive(Clone, Copy)]
pub struct KeysValues<'a> {
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub stride: usize,
    pub seq_rows: usize,
    pub len: usize,
}

impl<'a> KeysValues<'a> {
    /// Keys and values inside a packed `qkv[B, T, 3C]` (training, prefill without cache).
    pub fn from_qkv(qkv: &'a [f32], s: AttnShape) -> Self {
        KeysValues {
            k: &qkv[s.c..],
            v: &qkv[2 * s.c..],
            stride: 3 * s.c,
            seq_rows: s.t,
            len: s.t,
        }
    }
}

/// `q` rows of stride `3C` (from `qkv[B, T, 3C]`) -> `out[B, T, C]`.
/// Saves the softmax probabilities `att[B, T, n_head, kv.len]` for the backward pass.
pub fn attention_forward<'a>(
    out: &mut [f32],
    att: &mut [f32],
    qkv: &[f32],
    kv: KeysValues<'a>,
    pos: &[u32],
    s: AttnShape,
) {
    let (c, tk) = (s.c, kv.len);
    assert!(tk >= s.t && out.len() == s.b * s.t * c && att.len() == s.b * s.t * s.n_head * tk);
    if s.t >= GEMM_MIN_QUERIES {
        attention_forward_gemm(out, att, qkv, kv, pos, s);
    } else {
        attention_forward_rows(out, att, qkv, kv, pos, s);
    }
}

/// [`attention_forward`] one query row at a time (few queries: decoding, short rows).
fn attention_forward_rows<'a>(
    out: &mut [f32],
    att: &mut [f32],
    qkv: &[f32],
    kv: KeysValues<'a>,
    pos: &[u32],
    s: AttnShape,
) {
    let (c, hs, tk) = (s.c, s.c / s.n_head, kv.len);
    let scale = 1.0 / (hs as f32).sqrt();
    // One task per (query row, head): `out` is [rows, heads, hs] and `att` is
    // [rows, heads, keys], so both split evenly; decoding one token still uses every core.
    out.par_chunks_mut(hs)
        .zip(att.par_chunks_mut(tk))
        .enumerate()
        .with_min_len((MIN_PAIR_WORK / (tk * hs).max(1)).max(1))
        .for_each(|(pair, (o, att))| {
            let (row, h) = (pair / s.n_head, pair % s.n_head);
            let (b, t) = (row / s.t, row % s.t);
            let last = tk - s.t + t; // this query's own key
            let first = last
                .checked_sub(pos[row] as usize)
                .expect("token position beyond its sequence");
            let qh = &qkv[row * 3 * c + h * hs..][..hs];
            // Row `(b, key)` of k or v, head h.
            let head = |m: &'a [f32], key: usize| &m[(b * kv.seq_rows + key) * kv.stride + h * hs..][..hs];
            let a = &mut att[first..=last]; // this query's keys
            for (j, aj) in a.iter_mut().enumerate() {
                *aj = dot(qh, head(kv.k, first + j)) * scale;
            }
            softmax_in_place(a);
            o.fill(0.0);
            for (j, &aj) in a.iter().enumerate() {
                axpy(o, aj, head(kv.v, first + j));
            }
        });
}

/// [`attention_forward`] for many queries: per sequence and head, scores
/// `Q Kᵀ` by GEMM straight into `att`, a softmax over each query's own keys
/// (zero elsewhere), then `P V` by GEMM into `out`. Queries go in blocks of
/// [`QUERY_BLOCK`], each block's GEMMs stopping at its last query's own key:
/// causal attention computes about half of the full square.
fn attention_forward_gemm(out: &mut [f32], att: &mut [f32], qkv: &[f32], kv: KeysValues, pos: &[u32], s: AttnShape) {
    let (c, hs, tk, tq, nh) = (s.c, s.c / s.n_head, kv.len, s.t, s.n_head);
    let scale = 1.0 / (hs as f32).sqrt();
    out.par_chunks_mut(tq * c)
        .zip(att.par_chunks_mut(tq * nh * tk))
        .enumerate()
        .for_each(|(b, (out, att))| {
            let (k0, q0) = (b * kv.seq_rows * kv.stride, b * tq * 3 * c);
            for h in 0..nh {
                for (r0, r1) in query_blocks(tq) {
                    let keys = tk - tq + r1;
                    let q = View {
                        data: &qkv[q0 + r0 * 3 * c + h * hs..],
                        rs: 3 * c,
                        cs: 1,
                    };
                    let k_t = View {
                        data: &kv.k[k0 + h * hs..],
                        rs: 1,
                        cs: kv.stride,
                    };
                    let dst = &mut att[(r0 * nh + h) * tk..];
                    matmul_strided(dst, nh * tk, q, k_t, r1 - r0, hs, keys, scale, false);
                }
                for i in 0..tq {
                    let row = &mut att[(i * nh + h) * tk..][..tk];
                    let last = tk - tq + i;
                    let first = last
                        .checked_sub(pos[b * tq + i] as usize)
                        .expect("token position beyond its sequence");
                    softmax_in_place(&mut row[first..=last]);
                    row[..first].fill(0.0);
                    row[last + 1..].fill(0.0);
                }
                for (r0, r1) in query_blocks(tq) {
                    let keys = tk - tq + r1;
                    let p = View {
                        data: &att[(r0 * nh + h) * tk..],
                        rs: nh * tk,
                        cs: 1,
                    };
                    let v = View {
                        data: &kv.v[k0 + h * hs..],
                        rs: kv.stride,
                        cs: 1,
                    };
                    matmul_strided(&mut out[r0 * c + h * hs..], c, p, v, r1 - r0, keys, hs, 1.0, false);
                }
            }
        });
}

/// Queries per block in the GEMM paths: small enough that skipping the keys
/// after a block's last query saves work, large enough for efficient GEMMs.
const QUERY_BLOCK: usize = 64;

/// `(first, end)` of each block of [`QUERY_BLOCK`] queries among `t`.
fn query_blocks(t: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..t)
        .step_by(QUERY_BLOCK)
        .map(move |r0| (r0, (r0 + QUERY_BLOCK).min(t)))
}

/// Work (keys × head size) below which (row, head) pairs are grouped into one task.
const MIN_PAIR_WORK: usize = 1 << 14;

/// Backward of [`attention_forward`] for self-attention inside `qkv[B, T, 3C]`:
/// accumulates into `dqkv[B, T, 3C]`. Sequences run in parallel (keys of one
/// sequence receive gradient from many queries, so a sequence is one task).
pub fn attention_backward(dqkv: &mut [f32], dout: &[f32], qkv: &[f32], att: &[f32], pos: &[u32], s: AttnShape) {
    if s.t >= GEMM_MIN_QUERIES {
        attention_backward_gemm(dqkv, dout, qkv, att, pos, s);
    } else {
        attention_backward_rows(dqkv, dout, qkv, att, pos, s);
    }
}

/// [`attention_backward`] by GEMMs per (sequence, head), for `att` written by
/// [`attention_forward_gemm`] (zero outside each query's keys):
/// `dP = dO Vᵀ`, `dS = P ⊙ (dP - rowsum(P ⊙ dP))`, `dQ += s dS K`, `dK += s dSᵀ Q`, `dV += Pᵀ dO`.
/// In blocks as the forward: a block of queries reads only the keys up to its
/// last query, a block of keys receives only from the queries from its first on.
fn attention_backward_gemm(dqkv: &mut [f32], dout: &[f32], qkv: &[f32], att: &[f32], pos: &[u32], s: AttnShape) {
    let (c, hs, t, nh) = (s.c, s.c / s.n_head, s.t, s.n_head);
    let scale = 1.0 / (hs as f32).sqrt();
    dqkv.par_chunks_mut(t * 3 * c).enumerate().for_each(|(b, dqkv)| {
        let qkv = &qkv[b * t * 3 * c..(b + 1) * t * 3 * c];
        let att = &att[b * t * nh * t..(b + 1) * t * nh * t];
        let dout = &dout[b * t * c..(b + 1) * t * c];
        let mut ds = vec![0.0f32; t * t]; // dP, then dS, of one head: [T, T]
                                          // Row `r` of a head's slice of one of q, k, v (`part` 0, 1, 2), of dout, of att.
        let qkv_at = |part: usize, h: usize, r: usize| r * 3 * c + part * c + h * hs;
        for h in 0..nh {
            for (r0, r1) in query_blocks(t) {
                let d_o = View {
                    data: &dout[r0 * c + h * hs..],
                    rs: c,
                    cs: 1,
                };
                let v_t = View {
                    data: &qkv[qkv_at(2, h, 0)..],
                    rs: 1,
                    cs: 3 * c,
                };
                matmul_strided(&mut ds[r0 * t..], t, d_o, v_t, r1 - r0, hs, r1, 1.0, false);
            }
            for (i, drow) in ds.chunks_mut(t).enumerate() {
                let first = i - pos[b * t + i] as usize;
                let prow = &att[(i * nh + h) * t..][..t];
                let weighted = dot(&prow[first..=i], &drow[first..=i]);
                // P is zero outside this query's keys, and so is dS; past its
                // block's keys dP was not computed at all.
                let keys = (i / QUERY_BLOCK + 1) * QUERY_BLOCK;
                let (d, rest) = drow.split_at_mut(keys.min(t));
                d.iter_mut().zip(prow).for_each(|(d, p)| *d = p * (*d - weighted));
                rest.fill(0.0);
            }
            for (r0, r1) in query_blocks(t) {
                // dQ of queries r0..r1 from keys 0..r1.
                let ds_v = View {
                    data: &ds[r0 * t..],
                    rs: t,
                    cs: 1,
                };
                let k = View {
                    data: &qkv[qkv_at(1, h, 0)..],
                    rs: 3 * c,
                    cs: 1,
                };
                matmul_strided(
                    &mut dqkv[qkv_at(0, h, r0)..],
                    3 * c,
                    ds_v,
                    k,
                    r1 - r0,
                    r1,
                    hs,
                    scale,
                    true,
                );
                // dK and dV of keys r0..r1 from queries r0..t.
                let ds_t = View {
                    data: &ds[r0 * t + r0..],
                    rs: 1,
                    cs: t,
                };
                let q = View {
                    data: &qkv[qkv_at(0, h, r0)..],
                    rs: 3 * c,
                    cs: 1,
                };
                let rows = r1 - r0;
                matmul_strided(
                    &mut dqkv[qkv_at(1, h, r0)..],
                    3 * c,
                    ds_t,
                    q,
                    rows,
                    t - r0,
                    hs,
                    scale,
                    true,
                );
                let p_t = View {
                    data: &att[(r0 * nh + h) * t + r0..],
                    rs: 1,
                    cs: nh * t,
                };
                let d_o = View {
                    data: &dout[r0 * c + h * hs..],
                    rs: c,
                    cs: 1,
                };
                matmul_strided(
                    &mut dqkv[qkv_at(2, h, r0)..],
                    3 * c,
                    p_t,
                    d_o,
                    rows,
                    t - r0,
                    hs,
                    1.0,
                    true,
                );
            }
        }
    });
}

/// [`attention_backward`] one query row at a time.
fn attention_backward_rows(dqkv: &mut [f32], dout: &[f32], qkv: &[f32], att: &[f32], pos: &[u32], s: AttnShape) {
    let (c, hs, t_len) = (s.c, s.c / s.n_head, s.t);
    let scale = 1.0 / (hs as f32).sqrt();
    dqkv.par_chunks_mut(t_len * 3 * c).enumerate().for_each(|(b, dqkv)| {
        let qkv = &qkv[b * t_len * 3 * c..(b + 1) * t_len * 3 * c];
        let mut datt = vec![0.0f32; t_len];
        for t in 0..t_len {
            let row = b * t_len + t;
            let first = t - pos[row] as usize;
            for h in 0..s.n_head {
                let a = &att[(row * s.n_head + h) * t_len..][..t_len];
                let dout = &dout[row * c + h * hs..][..hs];
                // out = sum_j a[j] v[j]  =>  da[j] = dout·v[j],  dv[j] += a[j] dout
                let mut weighted = 0.0;
                for j in first..=t {
                    datt[j] = dot(dout, &qkv[j * 3 * c + 2 * c + h * hs..][..hs]);
                    weighted += a[j] * datt[j];
                    axpy(&mut dqkv[j * 3 * c + 2 * c + h * hs..][..hs], a[j], dout);
                }
                // softmax: dscore[j] = a[j] (da[j] - sum_i a[i] da[i]); score = scale q·k[j]
                for j in first..=t {
                    let dscore = a[j] * (datt[j] - weighted) * scale;
                    let (qo, ko) = (t * 3 * c + h * hs, j * 3 * c + c + h * hs);
                    axpy(&mut dqkv[qo..qo + hs], dscore, &qkv[ko..ko + hs]);
                    axpy(&mut dqkv[ko..ko + hs], dscore, &qkv[qo..qo + hs]);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{rng, Tensor};

    #[test]
    fn gemm_and_row_paths_agree_with_packing_and_a_cache() {
        let (b, t, c, n_head, past) = (2, 70, 16, 2, 5);
        let tk = past + t;
        let qkv = Tensor::randn(&[b * t, 3 * c], 1.0, &mut rng(1)).data;
        // Keys and values for `past` cached tokens plus this call's, per sequence.
        let k = Tensor::randn(&[b * tk, c], 1.0, &mut rng(2)).data;
        let v = Tensor::randn(&[b * tk, c], 1.0, &mut rng(3)).data;
        let kv = KeysValues {
            k: &k,
            v: &v,
            stride: c,
            seq_rows: tk,
            len: tk,
        };
        // Sequence 0 continues one document; sequence 1 packs a new one from query 30.
        let pos: Vec<u32> = (0..b * t)
            .map(|r| {
                if r >= t + 30 {
                    (r - t - 30) as u32
                } else {
                    (past + r % t) as u32
                }
            })
            .collect();
        let s = AttnShape { b, t, c, n_head };
        type Forward = fn(&mut [f32], &mut [f32], &[f32], KeysValues, &[u32], AttnShape);
        let run = |f: Forward| {
            let (mut out, mut att) = (vec![0.0; b * t * c], vec![0.0; b * t * n_head * tk]);
            f(&mut out, &mut att, &qkv, kv, &pos, s);
            out
        };
        let (gemm, rows) = (run(attention_forward_gemm), run(attention_forward_rows));
        let worst = gemm.iter().zip(&rows).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-5, "paths differ by {worst}");
    }

    #[test]
    fn gemm_and_row_backward_agree() {
        let (b, t, c, n_head) = (2, 70, 16, 2);
        let qkv = Tensor::randn(&[b * t, 3 * c], 1.0, &mut rng(4)).data;
        let dout = Tensor::randn(&[b * t, c], 1.0, &mut rng(5)).data;
        // Sequence 1 packs a second document from query 30.
        let pos: Vec<u32> = (0..b * t)
            .map(|r| if r >= t + 30 { r - t - 30 } else { r % t } as u32)
            .collect();
        let s = AttnShape { b, t, c, n_head };
        let (mut out, mut att) = (vec![0.0; b * t * c], vec![0.0; b * t * n_head * t]);
        attention_forward_gemm(&mut out, &mut att, &qkv, KeysValues::from_qkv(&qkv, s), &pos, s);
        type Backward = fn(&mut [f32], &[f32], &[f32], &[f32], &[u32], AttnShape);
        let run = |f: Backward| {
            let mut dqkv = vec![0.5; b * t * 3 * c]; // both must add to what is there
            f(&mut dqkv, &dout, &qkv, &att, &pos, s);
            dqkv
        };
        let (gemm, rows) = (run(attention_backward_gemm), run(attention_backward_rows));
        let worst = gemm.iter().zip(&rows).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-4, "backward paths differ by {worst}");
    }
}
