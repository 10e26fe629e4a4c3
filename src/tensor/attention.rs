//! Causal self-attention with grouped-query heads, fused: scores, softmax and
//! the weighted sum of values without keeping the `[T, T]` probabilities.
//!
//! Every query token carries its position `pos` inside its own document, and
//! attends to the `pos + 1` keys that end at itself. With one document per
//! sequence that is plain causal attention; with several documents packed into
//! one sequence it keeps them apart, so packing wastes no compute on padding.
//!
//! `n_kv_head` key/value heads serve `n_head` query heads (grouped-query
//! attention; GPT-2 has as many of each): query head `h` reads key/value head
//! `h / (n_head / n_kv_head)`. The forward saves each (query, head)'s
//! log-sum-exp of scores; the backward recomputes the probabilities from it,
//! a block of queries at a time (FlashAttention-2's backward), so training
//! memory grows linearly in `T`.

use super::elementwise::exp;
use super::matmul::{matmul_strided, View};
use super::{axpy, dot, max, min_rows_per_task, sum_map};
use rayon::prelude::*;

/// From this many queries per sequence on, attention goes by GEMM per block
/// of queries and head instead of one (query, head) row at a time.
const GEMM_MIN_QUERIES: usize = 64;

/// Queries per block in the GEMM paths: small enough that skipping the keys
/// after a block's last query saves work, large enough for efficient GEMMs.
const QUERY_BLOCK: usize = 64;

/// Keys scored at a time by the row path (a stack buffer, so decoding allocates nothing).
const KEY_CHUNK: usize = 64;

/// Work (keys × head size) below which (row, head) pairs are grouped into one task.
const MIN_PAIR_WORK: usize = 1 << 14;

/// Sizes of one attention call: `b` sequences of `t` query tokens, `n_head`
/// query heads sharing `n_kv_head` key/value heads, `head_size` channels each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnShape {
    pub b: usize,
    pub t: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_size: usize,
}

impl AttnShape {
    /// Query heads per key/value head.
    pub fn group(&self) -> usize {
        self.n_head / self.n_kv_head
    }

    /// Channels of the queries and of the output: `n_head * head_size`.
    pub fn c(&self) -> usize {
        self.n_head * self.head_size
    }

    /// Channels of one token's keys (and of its values): `n_kv_head * head_size`.
    pub fn kv_c(&self) -> usize {
        self.n_kv_head * self.head_size
    }

    /// Width of a fused `qkv` row: every query head, then the key heads, then the value heads.
    pub fn qkv_c(&self) -> usize {
        self.c() + 2 * self.kv_c()
    }
}

/// Where the keys and values live. Key `s` of the sequence in slot `b`
/// starts at `k[(b * seq_rows + s) * stride]`, its head `j` at `+ j * head_size`.
/// The `t` queries of a call are the last `t` of their sequence's keys.
#[derive(Clone, Copy)]
pub struct KeysValues<'a> {
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub stride: usize,
    pub seq_rows: usize,
    pub seqs: Seqs<'a>,
}

/// Which slot each sequence of a call reads, and how many keys it has there.
#[derive(Clone, Copy, Debug)]
pub enum Seqs<'a> {
    /// Sequence `b` in slot `b`, each with `len` keys.
    Same(usize),
    /// Sequence `b` in slot `each[b].0` with `each[b].1` keys (a KV cache
    /// whose sequences started at different times).
    Each(&'a [(usize, usize)]),
}

impl<'a> KeysValues<'a> {
    /// Keys and values inside a fused `qkv[B·T, qkv_c]` (training, prefill without cache).
    pub fn from_qkv(qkv: &'a [f32], s: AttnShape) -> Self {
        KeysValues {
            k: &qkv[s.c()..],
            v: &qkv[s.c() + s.kv_c()..],
            stride: s.qkv_c(),
            seq_rows: s.t,
            seqs: Seqs::Same(s.t),
        }
    }

    /// `(slot, keys)` of sequence `b`.
    fn seq(&self, b: usize) -> (usize, usize) {
        match self.seqs {
            Seqs::Same(len) => (b, len),
            Seqs::Each(each) => each[b],
        }
    }

    /// Rows `from..` of key/value head `j` in slot `slot`, as a `[rows, head_size]` view (`v`: values).
    fn view(&self, v: bool, slot: usize, from: usize, j: usize, hs: usize) -> View<'a> {
        let m = if v { self.v } else { self.k };
        rows_at(m, (slot * self.seq_rows + from) * self.stride + j * hs, self.stride)
    }
}

/// The keys `first..=last` that query `i` (of `t`, the last `t` of `tk` keys)
/// attends to: its own and the `pos` before it in its document.
fn keys_of(tk: usize, t: usize, i: usize, pos: u32) -> (usize, usize) {
    let last = tk - t + i;
    let first = last
        .checked_sub(pos as usize)
        .expect("token position beyond its sequence");
    (first, last)
}

/// The keys `first..end` that some query of the block `r0..r1` attends to.
fn block_keys(tk: usize, t: usize, r0: usize, r1: usize, pos: &[u32]) -> (usize, usize) {
    let first = (r0..r1)
        .map(|i| keys_of(tk, t, i, pos[i]).0)
        .min()
        .expect("a non-empty block");
    (first, tk - t + r1)
}

/// `(first, end)` of each block of [`QUERY_BLOCK`] queries among `t`.
fn query_blocks(t: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..t)
        .step_by(QUERY_BLOCK)
        .map(move |r0| (r0, (r0 + QUERY_BLOCK).min(t)))
}

/// Rows `from..` of `data`, `rs` apart, as a matrix view.
fn rows_at(data: &[f32], from: usize, rs: usize) -> View<'_> {
    View {
        data: &data[from..],
        rs,
        cs: 1,
    }
}

/// The transpose of a view.
fn transposed(v: View) -> View {
    View {
        rs: v.cs,
        cs: v.rs,
        ..v
    }
}

/// `x = softmax(x)` in place; returns the log-sum-exp of the input.
fn softmax_lse(x: &mut [f32]) -> f32 {
    let max = max(x);
    x.iter_mut().for_each(|v| *v = exp(*v - max));
    let sum = sum_map(x, |v| v);
    x.iter_mut().for_each(|v| *v /= sum);
    max + sum.ln()
}

/// Queries from `qkv[B·T, qkv_c]` -> `out[B·T, C]`, with each (query, head)'s
/// log-sum-exp of scores in `lse[B·T, n_head]`: all the backward needs besides `out`.
pub fn attention_forward(out: &mut [f32], lse: &mut [f32], qkv: &[f32], kv: KeysValues, pos: &[u32], s: AttnShape) {
    let n = s.b * s.t;
    assert!(
        (0..s.b).all(|b| kv.seq(b).1 >= s.t) && out.len() == n * s.c() && lse.len() == n * s.n_head && pos.len() == n
    );
    if s.t >= GEMM_MIN_QUERIES {
        attention_forward_gemm(out, lse, qkv, kv, pos, s);
    } else {
        attention_forward_rows(out, lse, qkv, kv, pos, s);
    }
}

/// [`attention_forward`] one (query, head) at a time (few queries: decoding,
/// short rows), in one pass over its keys: scores [`KEY_CHUNK`] at a time, the
/// running sum rescaled whenever the running maximum grows (online softmax).
fn attention_forward_rows<'a>(
    out: &mut [f32],
    lse: &mut [f32],
    qkv: &[f32],
    kv: KeysValues<'a>,
    pos: &[u32],
    s: AttnShape,
) {
    let hs = s.head_size;
    let scale = 1.0 / (hs as f32).sqrt();
    let longest = (0..s.b).map(|b| kv.seq(b).1).max().unwrap_or(0);
    // One task per (query row, head): `out` is [rows, heads, hs] and `lse` is
    // [rows, heads], so both split evenly; decoding one token still uses every core.
    out.par_chunks_mut(hs)
        .zip(lse.par_iter_mut())
        .enumerate()
        .with_min_len((MIN_PAIR_WORK / (longest * hs).max(1)).max(1))
        .for_each(|(pair, (o, lse))| {
            let (row, h) = (pair / s.n_head, pair % s.n_head);
            let (b, i) = (row / s.t, row % s.t);
            let (slot, tk) = kv.seq(b);
            let (first, last) = keys_of(tk, s.t, i, pos[row]);
            let q = &qkv[row * s.qkv_c() + h * hs..][..hs];
            let kvo = h / s.group() * hs;
            // Row `key` of sequence b's k or v, this head's.
            let head = |m: &'a [f32], key: usize| &m[(slot * kv.seq_rows + key) * kv.stride + kvo..][..hs];
            let (mut run_max, mut sum) = (f32::NEG_INFINITY, 0.0);
            let mut p = [0.0f32; KEY_CHUNK];
            o.fill(0.0);
            for k0 in (first..=last).step_by(KEY_CHUNK) {
                let p = &mut p[..KEY_CHUNK.min(last + 1 - k0)];
                for (j, pj) in p.iter_mut().enumerate() {
                    *pj = dot(q, head(kv.k, k0 + j)) * scale;
                }
                let m = max(p);
                if m > run_max {
                    let r = exp(run_max - m); // the first chunk has nothing to rescale: sum and o are 0
                    sum *= r;
                    o.iter_mut().for_each(|x| *x *= r);
                    run_max = m;
                }
                p.iter_mut().for_each(|x| *x = exp(*x - run_max));
                sum += sum_map(p, |x| x);
                for (j, &pj) in p.iter().enumerate() {
                    axpy(o, pj, head(kv.v, k0 + j));
                }
            }
            o.iter_mut().for_each(|x| *x /= sum);
            *lse = run_max + sum.ln();
        });
}

/// [`attention_forward`] for many queries: one task per (sequence, block of
/// [`QUERY_BLOCK`] queries), whose rows of `out` and `lse` are contiguous.
/// Per head, scores `S = s Q Kᵀ` by GEMM over the keys the block attends to
/// (from its earliest query's document start to its last query: about half of
/// the causal square), a softmax over each query's own keys (zero elsewhere),
/// then `O = P V` by GEMM.
fn attention_forward_gemm(out: &mut [f32], lse: &mut [f32], qkv: &[f32], kv: KeysValues, pos: &[u32], s: AttnShape) {
    let (c, hs, t, nh, w) = (s.c(), s.head_size, s.t, s.n_head, s.qkv_c());
    let scale = 1.0 / (hs as f32).sqrt();
    out.par_chunks_mut(t * c)
        .zip(lse.par_chunks_mut(t * nh))
        .enumerate()
        .for_each(|(b, (out, lse))| {
            let pos = &pos[b * t..(b + 1) * t];
            let (slot, tk) = kv.seq(b);
            out.par_chunks_mut(QUERY_BLOCK * c)
                .zip(lse.par_chunks_mut(QUERY_BLOCK * nh))
                .enumerate()
                .for_each_init(Vec::new, |scores, (blk, (out, lse))| {
                    let (r0, rows) = (blk * QUERY_BLOCK, out.len() / c);
                    let r1 = r0 + rows;
                    let (kf, ke) = block_keys(tk, t, r0, r1, pos);
                    let nk = ke - kf;
                    scores.resize(rows * nk, 0.0); // P of one head: [rows, nk]
                    for h in 0..nh {
                        let q = rows_at(qkv, (b * t + r0) * w + h * hs, w);
                        let k = kv.view(false, slot, kf, h / s.group(), hs);
                        matmul_strided(scores, nk, q, transposed(k), rows, hs, nk, scale, false);
                        for (i, row) in scores.chunks_mut(nk).enumerate() {
                            let (first, last) = keys_of(tk, t, r0 + i, pos[r0 + i]);
                            let (first, last) = (first - kf, last - kf);
                            lse[i * nh + h] = softmax_lse(&mut row[first..=last]);
                            row[..first].fill(0.0);
                            row[last + 1..].fill(0.0);
                        }
                        let v = kv.view(true, slot, kf, h / s.group(), hs);
                        matmul_strided(
                            &mut out[h * hs..],
                            c,
                            rows_at(scores, 0, nk),
                            v,
                            rows,
                            nk,
                            hs,
                            1.0,
                            false,
                        );
                    }
                });
        });
}

/// Floats of scratch [`attention_backward`] needs: `[B, n_kv_head, T, (group + 2) · head_size]`.
pub fn backward_scratch_len(s: AttnShape) -> usize {
    s.b * s.n_kv_head * s.t * (s.group() + 2) * s.head_size
}

/// What the backward of one sequence reads: its rows of the forward's input
/// `qkv[T, qkv_c]`, output `out[T, C]`, `lse[T, n_head]` and `pos[T]`, and of `dout[T, C]`.
#[derive(Clone, Copy)]
struct Saved<'a> {
    qkv: &'a [f32],
    out: &'a [f32],
    lse: &'a [f32],
    pos: &'a [u32],
    dout: &'a [f32],
}

/// Backward of [`attention_forward`] for self-attention in `qkv[B·T, qkv_c]`
/// (no cache), from its `out` and `lse`: accumulates into `dqkv[B·T, qkv_c]`.
///
/// One task per (sequence, key/value head): it alone reads that head's keys
/// and values and its group's queries, and writes their gradients into its
/// own part of `scratch` ([`backward_scratch_len`]: per row the group's `dQ`,
/// then `dK`, then `dV`), which is then added into `dqkv`.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    dqkv: &mut [f32],
    scratch: &mut [f32],
    dout: &[f32],
    qkv: &[f32],
    out: &[f32],
    lse: &[f32],
    pos: &[u32],
    s: AttnShape,
) {
    let (t, c, w, nh, hs, g) = (s.t, s.c(), s.qkv_c(), s.n_head, s.head_size, s.group());
    let tw = (g + 2) * hs; // a task's row: dQ of the group, dK, dV
    assert!(scratch.len() == backward_scratch_len(s) && dqkv.len() == s.b * t * w);
    scratch
        .par_chunks_mut(t * tw)
        .enumerate()
        .for_each_init(Vec::new, |p_ds, (task, d)| {
            let (b, j) = (task / s.n_kv_head, task % s.n_kv_head);
            let saved = Saved {
                qkv: &qkv[b * t * w..(b + 1) * t * w],
                out: &out[b * t * c..(b + 1) * t * c],
                lse: &lse[b * t * nh..(b + 1) * t * nh],
                pos: &pos[b * t..(b + 1) * t],
                dout: &dout[b * t * c..(b + 1) * t * c],
            };
            d.fill(0.0);
            if t >= GEMM_MIN_QUERIES {
                backward_gemm(d, p_ds, saved, j, s);
            } else {
                backward_rows(d, saved, j, s);
            }
        });
    // Each row of dqkv gathers its three pieces from every key/value head's task.
    dqkv.par_chunks_mut(w)
        .enumerate()
        .with_min_len(min_rows_per_task(w))
        .for_each(|(row, drow)| {
            let (b, i) = (row / t, row % t);
            let (dq, dkv) = drow.split_at_mut(c);
            let (dk, dv) = dkv.split_at_mut(s.kv_c());
            for j in 0..s.n_kv_head {
                let src = &scratch[((b * s.n_kv_head + j) * t + i) * tw..][..tw];
                axpy(&mut dq[j * g * hs..][..g * hs], 1.0, &src[..g * hs]);
                axpy(&mut dk[j * hs..][..hs], 1.0, &src[g * hs..][..hs]);
                axpy(&mut dv[j * hs..][..hs], 1.0, &src[(g + 1) * hs..]);
            }
        });
}

/// One (sequence, key/value head `j`) of [`attention_backward`] by GEMMs, a
/// block of queries at a time over the keys it attends to, for each query
/// head of the group: `P = exp(s Q Kᵀ - lse)` (zero outside each query's
/// keys), `dP = dO Vᵀ`, `dS = P ⊙ (dP - rowsum(dO ⊙ O))`, `dQ = s dS K`,
/// `dK += s dSᵀ Q`, `dV += Pᵀ dO`. `p_ds` holds `P` and `dS`, `[QUERY_BLOCK, T]` each.
fn backward_gemm(d: &mut [f32], p_ds: &mut Vec<f32>, x: Saved, j: usize, s: AttnShape) {
    let (t, c, w, nh, hs, g) = (s.t, s.c(), s.qkv_c(), s.n_head, s.head_size, s.group());
    let tw = (g + 2) * hs;
    let scale = 1.0 / (hs as f32).sqrt();
    let (ko, vo) = (c + j * hs, c + s.kv_c() + j * hs); // this head's keys and values in a qkv row
    p_ds.resize(2 * QUERY_BLOCK * t, 0.0);
    let (p, ds) = p_ds.split_at_mut(QUERY_BLOCK * t);
    for gi in 0..g {
        let h = j * g + gi;
        for (r0, r1) in query_blocks(t) {
            let rows = r1 - r0;
            let (kf, ke) = block_keys(t, t, r0, r1, x.pos);
            let nk = ke - kf;
            let (p, ds) = (&mut p[..rows * nk], &mut ds[..rows * nk]);
            let q = rows_at(x.qkv, r0 * w + h * hs, w); // [rows, hs]
            let k = rows_at(x.qkv, kf * w + ko, w); // [nk, hs]
            let v = rows_at(x.qkv, kf * w + vo, w); // [nk, hs]
            let d_o = rows_at(x.dout, r0 * c + h * hs, c); // [rows, hs]
            matmul_strided(p, nk, q, transposed(k), rows, hs, nk, scale, false); // S: [rows, nk]
            matmul_strided(ds, nk, d_o, transposed(v), rows, hs, nk, 1.0, false); // dP: [rows, nk]
            for (i, (p, ds)) in p.chunks_mut(nk).zip(ds.chunks_mut(nk)).enumerate() {
                let row = r0 + i;
                let (first, last) = keys_of(t, t, row, x.pos[row]);
                let (first, last) = (first - kf, last - kf);
                let lse = x.lse[row * nh + h];
                // rowsum(P ⊙ dP) = dO · O, as O = P V.
                let delta = dot(&x.dout[row * c + h * hs..][..hs], &x.out[row * c + h * hs..][..hs]);
                for (p, ds) in p[first..=last].iter_mut().zip(&mut ds[first..=last]) {
                    *p = exp(*p - lse);
                    *ds = *p * (*ds - delta);
                }
                for z in [&mut *p, &mut *ds] {
                    z[..first].fill(0.0);
                    z[last + 1..].fill(0.0);
                }
            }
            let (p, ds) = (rows_at(p, 0, nk), rows_at(ds, 0, nk));
            // Each (head, block) writes its own rows of dQ once.
            matmul_strided(&mut d[r0 * tw + gi * hs..], tw, ds, k, rows, nk, hs, scale, false);
            matmul_strided(
                &mut d[kf * tw + g * hs..],
                tw,
                transposed(ds),
                q,
                nk,
                rows,
                hs,
                scale,
                true,
            );
            matmul_strided(
                &mut d[kf * tw + (g + 1) * hs..],
                tw,
                transposed(p),
                d_o,
                nk,
                rows,
                hs,
                1.0,
                true,
            );
        }
    }
}

/// One (sequence, key/value head `j`) of [`attention_backward`] one (query, key) pair at a time.
fn backward_rows(d: &mut [f32], x: Saved, j: usize, s: AttnShape) {
    let (t, c, w, nh, hs, g) = (s.t, s.c(), s.qkv_c(), s.n_head, s.head_size, s.group());
    let tw = (g + 2) * hs;
    let scale = 1.0 / (hs as f32).sqrt();
    let (ko, vo) = (c + j * hs, c + s.kv_c() + j * hs);
    for gi in 0..g {
        let h = j * g + gi;
        for i in 0..t {
            let (first, last) = keys_of(t, t, i, x.pos[i]);
            let q = &x.qkv[i * w + h * hs..][..hs];
            let d_o = &x.dout[i * c + h * hs..][..hs];
            let (lse, delta) = (x.lse[i * nh + h], dot(d_o, &x.out[i * c + h * hs..][..hs]));
            for key in first..=last {
                let (k, v) = (&x.qkv[key * w + ko..][..hs], &x.qkv[key * w + vo..][..hs]);
                // p = softmax weight; out = Σ p v  =>  dp = dO·v, dv += p dO;
                // ds = p (dp - Σ p dp) with Σ p dp = dO·O; score = s q·k.
                let p = exp(dot(q, k) * scale - lse);
                let ds = p * (dot(d_o, v) - delta) * scale;
                axpy(&mut d[i * tw + gi * hs..][..hs], ds, k);
                axpy(&mut d[key * tw + g * hs..][..hs], ds, q);
                axpy(&mut d[key * tw + (g + 1) * hs..][..hs], p, d_o);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{rng, Tensor};

    /// Sequence 0 holds one document (continuing `past` cached tokens); sequence 1
    /// packs a second document from query `split`.
    fn packed_pos(b: usize, t: usize, past: usize, split: usize) -> Vec<u32> {
        (0..b * t)
            .map(|r| if r >= t + split { r - t - split } else { past + r % t } as u32)
            .collect()
    }

    fn worst(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "over 40 minutes under Miri; matmul_strided's own tests cover the GEMM calls"
    )]
    fn gemm_and_row_paths_agree_with_packing_a_cache_and_grouped_heads() {
        for n_kv_head in [4, 2, 1] {
            let s = AttnShape {
                b: 2,
                t: 70,
                n_head: 4,
                n_kv_head,
                head_size: 8,
            };
            let (n, past) = (s.b * s.t, 5);
            let tk = past + s.t;
            let qkv = Tensor::randn(&[n, s.qkv_c()], 1.0, &mut rng(1)).data;
            // Keys and values for `past` cached tokens plus this call's, per sequence.
            let k = Tensor::randn(&[s.b * tk, s.kv_c()], 1.0, &mut rng(2)).data;
            let v = Tensor::randn(&[s.b * tk, s.kv_c()], 1.0, &mut rng(3)).data;
            let kv = KeysValues {
                k: &k,
                v: &v,
                stride: s.kv_c(),
                seq_rows: tk,
                seqs: Seqs::Same(tk),
            };
            let pos = packed_pos(s.b, s.t, past, 30);
            type Forward = fn(&mut [f32], &mut [f32], &[f32], KeysValues, &[u32], AttnShape);
            let run = |f: Forward| {
                let (mut out, mut lse) = (vec![0.0; n * s.c()], vec![0.0; n * s.n_head]);
                f(&mut out, &mut lse, &qkv, kv, &pos, s);
                (out, lse)
            };
            let (gemm, rows) = (run(attention_forward_gemm), run(attention_forward_rows));
            let (out, lse) = (worst(&gemm.0, &rows.0), worst(&gemm.1, &rows.1));
            assert!(out < 1e-5 && lse < 1e-5, "n_kv_head {n_kv_head}: out {out}, lse {lse}");
        }
    }

    /// The textbook backward in f64, from the full `[T, T]` probabilities of
    /// each (sequence, head): what the blocked backward must reproduce.
    fn reference_backward(dout: &[f32], qkv: &[f32], pos: &[u32], s: AttnShape) -> Vec<f64> {
        let (t, c, w, hs) = (s.t, s.c(), s.qkv_c(), s.head_size);
        let scale = 1.0 / (hs as f64).sqrt();
        let mut dqkv = vec![0.0f64; s.b * t * w];
        let x = |r: usize, col: usize| qkv[r * w + col] as f64;
        for b in 0..s.b {
            for h in 0..s.n_head {
                let (qo, ko, vo) = (h * hs, c + h / s.group() * hs, c + s.kv_c() + h / s.group() * hs);
                let r = |i: usize| b * t + i;
                for i in 0..t {
                    let (first, last) = keys_of(t, t, i, pos[r(i)]);
                    let score = |j: usize| (0..hs).map(|e| x(r(i), qo + e) * x(r(j), ko + e)).sum::<f64>() * scale;
                    let m = (first..=last).map(score).fold(f64::MIN, f64::max);
                    let z: f64 = (first..=last).map(|j| (score(j) - m).exp()).sum();
                    let p: Vec<f64> = (first..=last).map(|j| (score(j) - m).exp() / z).collect();
                    let d_o = |e: usize| dout[r(i) * c + qo + e] as f64;
                    let dp: Vec<f64> = (first..=last)
                        .map(|j| (0..hs).map(|e| d_o(e) * x(r(j), vo + e)).sum())
                        .collect();
                    let weighted: f64 = p.iter().zip(&dp).map(|(p, dp)| p * dp).sum();
                    for (jj, j) in (first..=last).enumerate() {
                        let ds = p[jj] * (dp[jj] - weighted) * scale;
                        for e in 0..hs {
                            dqkv[r(i) * w + qo + e] += ds * x(r(j), ko + e);
                            dqkv[r(j) * w + ko + e] += ds * x(r(i), qo + e);
                            dqkv[r(j) * w + vo + e] += p[jj] * d_o(e);
                        }
                    }
                }
            }
        }
        dqkv
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "over 40 minutes under Miri; matmul_strided's own tests cover the GEMM calls"
    )]
    fn blocked_backward_matches_the_full_probabilities_reference() {
        // T = 130: three query blocks, the last a partial one; sequence 1 packs
        // a second document from query 70, inside the second block.
        for (t, n_kv_head) in [(130, 4), (130, 2), (130, 1), (20, 2)] {
            let s = AttnShape {
                b: 2,
                t,
                n_head: 4,
                n_kv_head,
                head_size: 8,
            };
            let n = s.b * s.t;
            let qkv = Tensor::randn(&[n, s.qkv_c()], 1.0, &mut rng(4)).data;
            let dout = Tensor::randn(&[n, s.c()], 1.0, &mut rng(5)).data;
            let pos = packed_pos(s.b, s.t, 0, t * 7 / 13);
            let (mut out, mut lse) = (vec![0.0; n * s.c()], vec![0.0; n * s.n_head]);
            attention_forward(&mut out, &mut lse, &qkv, KeysValues::from_qkv(&qkv, s), &pos, s);
            let mut dqkv = vec![0.5; n * s.qkv_c()]; // the backward adds to what is there
            let mut scratch = vec![f32::NAN; backward_scratch_len(s)];
            attention_backward(&mut dqkv, &mut scratch, &dout, &qkv, &out, &lse, &pos, s);
            let want = reference_backward(&dout, &qkv, &pos, s);
            let err = dqkv
                .iter()
                .zip(&want)
                .map(|(&got, want)| (got as f64 - 0.5 - want).abs())
                .fold(0.0, f64::max);
            let scale = want.iter().fold(0.0, |m: f64, w| m.max(w.abs()));
            assert!(
                err < 1e-5 * scale,
                "T={t} n_kv_head={n_kv_head}: off by {err:.2e} (largest {scale:.2})"
            );
        }
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "over 40 minutes under Miri; matmul_strided's own tests cover the GEMM calls"
    )]
    fn gemm_and_row_backward_agree() {
        for n_kv_head in [2, 1] {
            let s = AttnShape {
                b: 2,
                t: 70,
                n_head: 4,
                n_kv_head,
                head_size: 8,
            };
            let n = s.b * s.t;
            let qkv = Tensor::randn(&[n, s.qkv_c()], 1.0, &mut rng(6)).data;
            let dout = Tensor::randn(&[n, s.c()], 1.0, &mut rng(7)).data;
            let pos = packed_pos(s.b, s.t, 0, 30);
            let (mut out, mut lse) = (vec![0.0; n * s.c()], vec![0.0; n * s.n_head]);
            attention_forward(&mut out, &mut lse, &qkv, KeysValues::from_qkv(&qkv, s), &pos, s);
            let tw = (s.group() + 2) * s.head_size;
            type Backward = fn(&mut [f32], Saved, usize, AttnShape);
            let run = |f: Backward| {
                let mut d = vec![0.0; s.t * tw];
                let saved = Saved {
                    qkv: &qkv[s.t * s.qkv_c()..],
                    out: &out[s.t * s.c()..],
                    lse: &lse[s.t * s.n_head..],
                    pos: &pos[s.t..],
                    dout: &dout[s.t * s.c()..],
                };
                f(&mut d, saved, n_kv_head - 1, s);
                d
            };
            let gemm = run(|d, x, j, s| backward_gemm(d, &mut Vec::new(), x, j, s));
            let diff = worst(&gemm, &run(backward_rows));
            assert!(diff < 1e-4, "n_kv_head {n_kv_head}: backward paths differ by {diff}");
        }
    }
}
