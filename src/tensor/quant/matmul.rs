//! Quantized matrices that stay quantized: `y = x @ Wᵀ` read straight from
//! ggml's blocks, as ggml-cpu computes it. The activations `x` are quantized
//! on the fly, a row at a time, to 8-bit blocks ([`PairQ8`]: two of 32 values for
//! Q4_0/Q4_1/Q5_0/Q5_1/Q8_0, [`BlockQ8K`] of 256 for Q4_K/Q5_K/Q6_K); each
//! weight block then meets its activation block in an integer dot product,
//! scaled once per block. Kinds without a block kernel (F32, F16, BF16)
//! dequantize a row at a time and take an f32 dot product, so every [`Kind`]
//! works.
//!
//! Kernels: portable scalar code for every kind; AVX2 (`maddubs`) and
//! AVX-512BW (two blocks per instruction) for the 32-value kinds, chosen at
//! run time ([`Isa::best`]). They agree within float rounding: the integer
//! sums are exact, only the order of the f32 additions differs.
//!
//! Our activation blocks are ggml's `block_q8_1` / `block_q8_K` with f32
//! scales (ggml rounds `block_q8_1`'s to f16); they live only in scratch.

use super::{dequantize_row, f16_of, quantize_row, scale_min, Block, CannotQuantize, Kind};
use super::{BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1, BlockQ5_K, BlockQ6_K, BlockQ8_0};
use crate::tensor::linear::Precision;
use crate::tensor::matmul_bf16::{has_bf16_kernel, matmul_at};
use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

/// A weight matrix `W[rows, cols]` (rows = output features, cols = input
/// features) held in `kind`'s blocks as ggml stores a 2-D tensor: row after
/// row, each row `cols / block_size` blocks along the input dimension.
/// A GGUF tensor of `ne = [cols, rows]` is exactly these bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct QMatrix {
    kind: Kind,
    rows: usize,
    cols: usize,
    bytes: Vec<u8>,
}

/// What is wrong with the bytes given to [`QMatrix::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadQMatrix(pub String);

impl std::fmt::Display for BadQMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadQMatrix {}

impl QMatrix {
    /// `rows` rows of `cols` values of `kind`, from their raw block bytes
    /// (a GGUF tensor's data). `cols` must be whole blocks and `bytes` exactly
    /// `rows` rows of them.
    pub fn new(kind: Kind, rows: usize, cols: usize, bytes: Vec<u8>) -> Result<Self, BadQMatrix> {
        let (elems, size) = (kind.block_size(), kind.type_size());
        if !cols.is_multiple_of(elems) {
            return Err(BadQMatrix(format!(
                "a {kind} row holds whole blocks of {elems} values, not {cols}"
            )));
        }
        let want = rows.checked_mul(cols / elems * size);
        if want != Some(bytes.len()) {
            return Err(BadQMatrix(format!(
                "{rows} rows of {cols} {kind} values are not {} bytes",
                bytes.len()
            )));
        }
        Ok(QMatrix {
            kind,
            rows,
            cols,
            bytes,
        })
    }

    /// `w[rows, cols]` (row-major f32) quantized to `kind` as ggml's
    /// `quantize_row_*_ref` would ([`Kind::can_quantize`]).
    pub fn quantize(kind: Kind, w: &[f32], rows: usize, cols: usize) -> Result<Self, CannotQuantize> {
        assert_eq!(
            w.len(),
            rows * cols,
            "quantize: {} values are not {rows} x {cols}",
            w.len()
        );
        if !kind.can_quantize() {
            return Err(CannotQuantize(kind));
        }
        assert!(
            cols.is_multiple_of(kind.block_size()),
            "a {kind} row holds whole blocks of {} values, not {cols}",
            kind.block_size()
        );
        let row_bytes = cols / kind.block_size() * kind.type_size();
        // Decoding streams these bytes: huge pages spare it TLB misses.
        let mut bytes = Vec::with_capacity(rows * row_bytes);
        crate::tensor::advise_huge_pages(bytes.spare_capacity_mut());
        bytes.resize(rows * row_bytes, 0u8);
        bytes
            .par_chunks_mut(row_bytes.max(1))
            .zip(w.par_chunks(cols.max(1)))
            .try_for_each(|(q, w)| quantize_row(kind, w, q))?;
        Ok(QMatrix {
            kind,
            rows,
            cols,
            bytes,
        })
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The blocks, row after row.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn row_bytes(&self) -> usize {
        self.cols / self.kind.block_size() * self.kind.type_size()
    }

    /// The blocks of row `r`.
    pub fn row(&self, r: usize) -> &[u8] {
        let rb = self.row_bytes();
        &self.bytes[r * rb..(r + 1) * rb]
    }

    /// `out = W[r]` as f32 (bit-exact as ggml dequantizes it).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        dequantize_row(self.kind, self.row(r), out);
    }

    /// The whole matrix as f32, `[rows, cols]`.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        out.par_chunks_mut(self.cols.max(1))
            .enumerate()
            .for_each(|(r, o)| self.dequantize_row(r, o));
        out
    }
}

/// 64 activations as two blocks of 32: `x ≈ d * qs` and `s = d * Σ qs` (for
/// the formats with a minimum) per block, laid out for the kernels: the two
/// blocks' `qs` in one 512-bit load, each `d` repeated over the 8 lanes that
/// hold its block's partial sums. A row of an odd number of blocks ends in a
/// pair whose second block is zeros.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct PairQ8 {
    qs: [i8; 64],
    d: [f32; 16],
    s: [f32; 2],
}

/// 256 activations: `x ≈ d * qs`, and the sum of each 16 `qs` (for the K-quants' minimums).
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct BlockQ8K {
    d: f32,
    qs: [i8; 256],
    bsums: [i16; 16],
}

/// `q = round(x / d)` with `d = max|x| / 127`; `d` is 0 for a block of zeros.
fn quantize_q8(x: &[f32], qs: &mut [i8]) -> f32 {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = (v * id).round() as i8;
    }
    d
}

impl PairQ8 {
    /// 64 values, or 32 (the second block zeros).
    fn quantize(x: &[f32]) -> Self {
        let mut b = PairQ8::zeroed();
        for (h, x) in x.chunks(32).enumerate() {
            let qs = &mut b.qs[32 * h..][..32];
            let d = quantize_q8(x, qs);
            b.d[8 * h..][..8].fill(d);
            b.s[h] = d * qs.iter().map(|&q| q as i32).sum::<i32>() as f32;
        }
        b
    }

    /// Block `h` (0 or 1): `(d, s, qs)`.
    fn block(&self, h: usize) -> (f32, f32, &[i8; 32]) {
        let (lo, hi) = self.qs.split_at(32);
        let qs = if h == 0 { lo } else { hi };
        (self.d[8 * h], self.s[h], qs.try_into().expect("32 values"))
    }
}

impl BlockQ8K {
    fn quantize(x: &[f32]) -> Self {
        let mut b = BlockQ8K::zeroed();
        b.d = quantize_q8(x, &mut b.qs);
        for (s, q) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
            *s = q.iter().map(|&q| q as i16).sum();
        }
        b
    }
}

/// Which instructions the block kernels use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust (which the compiler may still vectorise).
    Scalar,
    /// AVX2 + FMA: 32 values per `maddubs`.
    Avx2,
    /// AVX-512 F + BW (and F16C; VNNI where present): two blocks per instruction.
    Avx512,
}

impl Isa {
    /// The widest this CPU runs.
    pub fn best() -> Isa {
        [Isa::Avx512, Isa::Avx2]
            .into_iter()
            .find(|i| i.available())
            .unwrap_or(Isa::Scalar)
    }

    /// Whether this CPU can run it.
    pub fn available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                Isa::Avx2.available()
                    && is_x86_feature_detected!("f16c")
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

/// How the activations are quantized for a kind's kernel.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ActFormat {
    Q8,
    Q8K,
    /// Not at all: f32 (the dequantize-a-row fallback).
    F32,
}

fn act_format(kind: Kind) -> ActFormat {
    use Kind::*;
    match kind {
        Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 => ActFormat::Q8,
        Q4_K | Q5_K | Q6_K => ActFormat::Q8K,
        F32 | F16 | BF16 => ActFormat::F32,
    }
}

/// f32 slots that the quantized activations of `n` rows of `cols` take.
fn act_len(kind: Kind, n: usize, cols: usize) -> usize {
    match act_format(kind) {
        ActFormat::Q8 => n * (cols / 32).div_ceil(2) * (size_of::<PairQ8>() / 4),
        ActFormat::Q8K => n * cols / 256 * (size_of::<BlockQ8K>() / 4),
        ActFormat::F32 => 0,
    }
}

/// From this many activation rows on (a prompt, not a decoded token), the
/// weights are dequantized a band at a time and multiplied by GEMM
/// ([`prompt_precision`]): its register-blocked kernel does far more work per
/// weight byte unpacked than one block dot product per (row, row) pair, and
/// the band's unpacking is shared by every row.
const GEMM_MIN_ROWS: usize = 17;

/// How inference rounds prompt-sized products of quantized weights (the
/// `precision` of [`qmatmul`]): to bf16 where the CPU has a bf16 kernel (AMX
/// tiles, about 3x the f32 GEMM's speed; AVX512-BF16, 1.4-1.9x, a 512-token
/// SmolLM2 prompt 1.4x faster on Zen 4), else not at all. bf16 is still
/// finer than the 8-bit activations every decoded token's product uses
/// (ggml's AMX path rounds prompts to 8 bits too). Training passes its own
/// precision: a QLoRA run trains as on the dequantized values.
pub fn prompt_precision() -> Precision {
    match has_bf16_kernel() {
        true => Precision::Bf16,
        false => Precision::F32,
    }
}

/// Up to this many rows [`qmatmul`] computes each output row the same way
/// whatever the other rows are: its GEMM path sums in another order.
pub const ROW_INVARIANT_ROWS: usize = GEMM_MIN_ROWS - 1;

/// About this many f32 weights are dequantized at a time for GEMM (512 KiB: a
/// band the size of an L2 cache).
const GEMM_BAND_FLOATS: usize = 1 << 17;

/// Weight rows per dequantized band.
fn gemm_band_rows(w: &QMatrix) -> usize {
    (GEMM_BAND_FLOATS / w.cols.max(1)).clamp(16, w.rows.max(16))
}

/// Floats of scratch space [`qmatmul`] needs for `n` rows of activations.
pub fn qmatmul_scratch_len(w: &QMatrix, n: usize) -> usize {
    if n >= GEMM_MIN_ROWS {
        let band = gemm_band_rows(w);
        return band * w.cols + n * band;
    }
    act_len(w.kind, n, w.cols) + if n > 1 { n * w.rows } else { 0 }
}

/// `out[n, rows] = x[n, cols] @ Wᵀ`, with the widest kernels this CPU has
/// and `scratch` of [`qmatmul_scratch_len`] floats; from [`GEMM_MIN_ROWS`]
/// rows on, summed at `precision`.
pub fn qmatmul(out: &mut [f32], x: &[f32], n: usize, w: &QMatrix, precision: Precision, scratch: &mut [f32]) {
    qmatmul_with(Isa::best(), out, x, n, w, precision, scratch)
}

/// [`qmatmul`] with the kernels of `isa` (which this CPU must have); from
/// [`GEMM_MIN_ROWS`] rows on, dequantized bands and GEMM at `precision`
/// whatever `isa`.
pub fn qmatmul_with(
    isa: Isa,
    out: &mut [f32],
    x: &[f32],
    n: usize,
    w: &QMatrix,
    precision: Precision,
    scratch: &mut [f32],
) {
    assert!(isa.available(), "this CPU cannot run {isa:?} kernels");
    let (rows, cols) = (w.rows, w.cols);
    assert_eq!(x.len(), n * cols, "qmatmul: x is not [{n}, {cols}]");
    assert_eq!(out.len(), n * rows, "qmatmul: out is not [{n}, {rows}]");
    assert_eq!(scratch.len(), qmatmul_scratch_len(w, n), "qmatmul: wrong scratch size");
    if n >= GEMM_MIN_ROWS {
        return dequantized_gemm(out, x, n, w, precision, scratch);
    }
    let (act, cols_out) = scratch.split_at_mut(act_len(w.kind, n, cols));
    // Quantize the activations, a row of them per task when there are many.
    match act_format(w.kind) {
        ActFormat::Q8 => quantize_acts::<PairQ8>(act, x, cols),
        ActFormat::Q8K => quantize_acts::<BlockQ8K>(act, x, cols),
        ActFormat::F32 => {}
    }
    let act: &[f32] = act;
    let dot = row_dot(w.kind, isa);
    let act_row = act.len() / n.max(1);
    // Bands of whole rows: several per thread for balance, each at least
    // 32 KiB of weights so a task outweighs its fork.
    let row_bytes = w.row_bytes().max(1);
    let band = rows
        .div_ceil(rayon::current_num_threads().max(1) * 4)
        .max((32 << 10) / row_bytes)
        .max(1);
    let x_rows: Vec<&[f32]> = (0..n)
        .map(|i| match act_row {
            0 => &x[i * cols..][..cols],
            _ => &act[i * act_row..][..act_row],
        })
        .collect();
    if n == 1 {
        out.par_chunks_mut(band).enumerate().for_each(|(k, o)| {
            for (j, o) in o.iter_mut().enumerate() {
                dot(w.row(k * band + j), &x_rows, std::slice::from_mut(o));
            }
        });
        return;
    }
    // Several rows: each weight row meets every activation row while it is
    // in L1 (unpacked once for several of them where the kind has a kernel
    // for that); the outputs go column-major into scratch, then into place.
    cols_out.par_chunks_mut(band * n).enumerate().for_each(|(k, c)| {
        for (j, c) in c.chunks_mut(n).enumerate() {
            dot(w.row(k * band + j), &x_rows, c);
        }
    });
    out.par_chunks_mut(rows).enumerate().for_each(|(i, o)| {
        o.iter_mut().zip(cols_out.chunks(n)).for_each(|(o, c)| *o = c[i]);
    });
}

/// `out[n, rows] = x[n, cols] @ Wᵀ` a band of weight rows at a time: the band
/// dequantized into f32, multiplied by GEMM at `precision` into scratch,
/// copied into its columns.
fn dequantized_gemm(out: &mut [f32], x: &[f32], n: usize, w: &QMatrix, precision: Precision, scratch: &mut [f32]) {
    let (rows, cols) = (w.rows, w.cols);
    let band = gemm_band_rows(w);
    let (wbuf, tmp) = scratch.split_at_mut(band * cols);
    for r0 in (0..rows).step_by(band) {
        let br = band.min(rows - r0);
        let wb = &mut wbuf[..br * cols];
        wb.par_chunks_mut(cols)
            .enumerate()
            .for_each(|(j, row)| w.dequantize_row(r0 + j, row));
        // [n, cols] @ [br, cols]ᵀ -> [n, br]
        let t = &mut tmp[..n * br];
        matmul_at(precision, t, x, false, wb, true, n, cols, br, false);
        out.par_chunks_mut(rows)
            .zip(t.par_chunks(br))
            .for_each(|(o, t)| o[r0..r0 + br].copy_from_slice(t));
    }
}

/// Floats of scratch space [`qmatmul_backward_input`] needs: one band of `W` dequantized.
pub fn qmatmul_backward_scratch_len(w: &QMatrix) -> usize {
    gemm_band_rows(w) * w.cols
}

/// The backward of [`qmatmul`] for its input, with `W` frozen (QLoRA: the
/// weights stay quantized, only what flows through them trains):
/// `dx[n, cols] (+)= dout[n, rows] @ W`, a band of `W`'s rows dequantized
/// into `scratch` at a time, so no more than a band is ever held as f32.
pub fn qmatmul_backward_input(
    dx: &mut [f32],
    dout: &[f32],
    n: usize,
    w: &QMatrix,
    scratch: &mut [f32],
    accumulate: bool,
) {
    use crate::tensor::matmul::{matmul_strided, View};
    let (rows, cols) = (w.rows, w.cols);
    assert_eq!(
        dout.len(),
        n * rows,
        "qmatmul_backward_input: dout is not [{n}, {rows}]"
    );
    assert_eq!(dx.len(), n * cols, "qmatmul_backward_input: dx is not [{n}, {cols}]");
    assert_eq!(
        scratch.len(),
        qmatmul_backward_scratch_len(w),
        "qmatmul_backward_input: wrong scratch size"
    );
    if !accumulate {
        dx.fill(0.0);
    }
    let band = gemm_band_rows(w);
    for r0 in (0..rows).step_by(band) {
        let br = band.min(rows - r0);
        let wb = &mut scratch[..br * cols];
        wb.par_chunks_mut(cols)
            .enumerate()
            .for_each(|(j, row)| w.dequantize_row(r0 + j, row));
        // [n, br] (columns r0.. of dout) @ [br, cols] -> added into [n, cols]
        let a = View {
            data: &dout[r0..],
            rs: rows,
            cs: 1,
        };
        let b = View {
            data: wb,
            rs: cols,
            cs: 1,
        };
        matmul_strided(dx, cols, a, b, n, br, cols, 1.0, true);
    }
}

/// Quantizes each `cols`-long row of `x` into its blocks in `act`.
fn quantize_acts<B: Block8>(act: &mut [f32], x: &[f32], cols: usize) {
    let blocks: &mut [B] = bytemuck::cast_slice_mut(act);
    let per_row = cols.div_ceil(B::ELEMS);
    let rows_per_task = ((1 << 14) / cols.max(1)).max(1);
    blocks
        .par_chunks_mut((per_row * rows_per_task).max(1))
        .zip(x.par_chunks((cols * rows_per_task).max(1)))
        .for_each(|(b, x)| {
            for (b, x) in b.chunks_mut(per_row).zip(x.chunks(cols)) {
                b.iter_mut()
                    .zip(x.chunks(B::ELEMS))
                    .for_each(|(b, x)| *b = B::quantize(x))
            }
        });
}

/// A unit of quantized activations; a row's last may take fewer values.
trait Block8: Pod + Send {
    const ELEMS: usize;
    fn quantize(x: &[f32]) -> Self;
}

impl Block8 for PairQ8 {
    const ELEMS: usize = 64;
    fn quantize(x: &[f32]) -> Self {
        PairQ8::quantize(x)
    }
}

impl Block8 for BlockQ8K {
    const ELEMS: usize = 256;
    fn quantize(x: &[f32]) -> Self {
        BlockQ8K::quantize(x)
    }
}

/// A weight row's dot products (its blocks, as bytes) with activation rows
/// (quantized blocks or f32, in f32 slots): `out[i] = w · acts[i]`. Each
/// output is computed alike however many rows come with it.
type RowDot = fn(&[u8], &[&[f32]], &mut [f32]);

/// How many activation rows a legacy kernel takes at a time: each weight
/// block is unpacked once for all of them.
const LEGACY_ROWS: usize = 8;

/// A legacy kind's dot products with up to [`LEGACY_ROWS`] activation rows at
/// once: `R` sums, each in the order of the one-row case (`R = 1`).
trait LegacyKernel {
    /// # Safety
    /// The CPU has the kernel's instructions ([`Isa::available`]).
    unsafe fn dot<B: Legacy, const R: usize>(w: &[B], a: [&[PairQ8]; R]) -> [f32; R];
}

/// `out[i] = w · acts[i]` with `K`'s kernel, [`LEGACY_ROWS`] rows at a time
/// and the rest 4, 2, 1 at a time.
///
/// # Safety
/// The CPU has `K`'s instructions.
unsafe fn legacy_rows<B: Legacy, K: LegacyKernel>(w: &[u8], acts: &[&[f32]], out: &mut [f32]) {
    /// `R` rows from `acts[i0]` on into `out[i0..]`.
    ///
    /// # Safety
    /// As [`legacy_rows`].
    unsafe fn some<B: Legacy, K: LegacyKernel, const R: usize>(w: &[B], acts: &[&[f32]], i0: usize, out: &mut [f32]) {
        // SAFETY: the caller's promise about the CPU.
        let o = unsafe { K::dot::<B, R>(w, std::array::from_fn(|r| cast(acts[i0 + r]))) };
        out[i0..i0 + R].copy_from_slice(&o);
    }
    let w: &[B] = cast(w);
    let mut i0 = 0;
    while i0 < acts.len() {
        let r = match acts.len() - i0 {
            LEGACY_ROWS.. => LEGACY_ROWS,
            4.. => 4,
            2.. => 2,
            _ => 1,
        };
        // SAFETY (each): the caller's promise about the CPU.
        match r {
            LEGACY_ROWS => unsafe { some::<B, K, LEGACY_ROWS>(w, acts, i0, out) },
            4 => unsafe { some::<B, K, 4>(w, acts, i0, out) },
            2 => unsafe { some::<B, K, 2>(w, acts, i0, out) },
            _ => unsafe { some::<B, K, 1>(w, acts, i0, out) },
        }
        i0 += r;
    }
}

struct ScalarKernel;

impl LegacyKernel for ScalarKernel {
    unsafe fn dot<B: Legacy, const R: usize>(w: &[B], a: [&[PairQ8]; R]) -> [f32; R] {
        legacy_scalar(w, a)
    }
}

fn row_dot(kind: Kind, isa: Isa) -> RowDot {
    use Kind::*;
    macro_rules! legacy {
        ($b:ty) => {
            match isa {
                // SAFETY (all three): `qmatmul_with` checked that this CPU has `isa`'s instructions.
                Isa::Scalar => |w, a, o| unsafe { legacy_rows::<$b, ScalarKernel>(w, a, o) },
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => |w, a, o| unsafe { legacy_rows::<$b, x86::Avx2>(w, a, o) },
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => |w, a, o| unsafe { legacy_rows::<$b, x86::Avx512>(w, a, o) },
                #[cfg(not(target_arch = "x86_64"))]
                _ => unreachable!(),
            }
        };
    }
    /// One activation row at a time with a one-row dot product.
    macro_rules! each {
        (|$w:ident, $a:ident| $dot:expr) => {
            |$w, acts, out| {
                for (o, $a) in out.iter_mut().zip(acts) {
                    *o = $dot;
                }
            }
        };
    }
    match kind {
        Q4_0 => legacy!(BlockQ4_0),
        Q4_1 => legacy!(BlockQ4_1),
        Q5_0 => legacy!(BlockQ5_0),
        Q5_1 => legacy!(BlockQ5_1),
        Q8_0 => legacy!(BlockQ8_0),
        // The K-quants have an AVX2 kernel, which AVX-512 machines run too.
        Q4_K | Q5_K | Q6_K if isa == Isa::Scalar => match kind {
            Q4_K => each!(|w, a| k_scalar::<BlockQ4_K>(cast(w), cast(a))),
            Q5_K => each!(|w, a| k_scalar::<BlockQ5_K>(cast(w), cast(a))),
            _ => each!(|w, a| k_scalar::<BlockQ6_K>(cast(w), cast(a))),
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY (all three): `qmatmul_with` checked that this CPU has AVX2 and FMA.
        Q4_K => each!(|w, a| unsafe { x86::q4k_avx2(cast(w), cast(a)) }),
        #[cfg(target_arch = "x86_64")]
        Q5_K => each!(|w, a| unsafe { x86::q5k_avx2(cast(w), cast(a)) }),
        #[cfg(target_arch = "x86_64")]
        Q6_K => each!(|w, a| unsafe { x86::q6k_avx2(cast(w), cast(a)) }),
        #[cfg(not(target_arch = "x86_64"))]
        Q4_K | Q5_K | Q6_K => unreachable!(),
        F32 => each!(|w, a| fallback(Kind::F32, w, a)),
        F16 => each!(|w, a| fallback(Kind::F16, w, a)),
        BF16 => each!(|w, a| fallback(Kind::BF16, w, a)),
    }
}

#[inline(always)]
fn cast<A: Pod, B: Pod>(x: &[A]) -> &[B] {
    bytemuck::cast_slice(x)
}

/// Dequantize the row (into a buffer each thread keeps), then an f32 dot product.
fn fallback(kind: Kind, w: &[u8], x: &[f32]) -> f32 {
    thread_local! {
        static ROW: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    ROW.with_borrow_mut(|row| {
        row.resize(x.len(), 0.0);
        dequantize_row(kind, w, row);
        crate::tensor::dot(x, row)
    })
}

/// A 32-value block: `x = d * q + m`, `q` small integers (signed when `m` is 0).
pub(crate) trait Legacy: Block {
    /// `q` is never negative (the formats with a minimum).
    const UNSIGNED: bool;
    fn d(&self) -> f32;
    /// The minimum (0 where the format has none).
    fn m(&self) -> f32;
    /// The f16 bits of `d` (low half) and of the minimum (high half, 0 where none).
    fn dm_bits(&self) -> u32;
    /// The 32 `q`, in order.
    fn q(&self) -> [i8; 32];
    /// The 32 `q` in a vector.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[cfg(target_arch = "x86_64")]
    unsafe fn q_avx2(&self) -> std::arch::x86_64::__m256i;
}

fn nibbles(qs: &[u8; 16], qh: u32, offset: i8) -> [i8; 32] {
    std::array::from_fn(|j| {
        let nib = if j < 16 { qs[j] & 0xF } else { qs[j - 16] >> 4 };
        (nib | (((qh >> j) & 1) << 4) as u8) as i8 - offset
    })
}

impl Legacy for BlockQ4_0 {
    const UNSIGNED: bool = false;
    fn d(&self) -> f32 {
        f16_of(self.d)
    }
    fn m(&self) -> f32 {
        0.0
    }
    fn dm_bits(&self) -> u32 {
        u16::from_le_bytes(self.d) as u32
    }
    fn q(&self) -> [i8; 32] {
        nibbles(&self.qs, 0, 8)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn q_avx2(&self) -> std::arch::x86_64::__m256i {
        use std::arch::x86_64::*;
        _mm256_sub_epi8(x86::nibbles(&self.qs), _mm256_set1_epi8(8))
    }
}

impl Legacy for BlockQ4_1 {
    const UNSIGNED: bool = true;
    fn d(&self) -> f32 {
        f16_of(self.d)
    }
    fn m(&self) -> f32 {
        f16_of(self.m)
    }
    fn dm_bits(&self) -> u32 {
        u16::from_le_bytes(self.d) as u32 | (u16::from_le_bytes(self.m) as u32) << 16
    }
    fn q(&self) -> [i8; 32] {
        nibbles(&self.qs, 0, 0)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn q_avx2(&self) -> std::arch::x86_64::__m256i {
        x86::nibbles(&self.qs)
    }
}

impl Legacy for BlockQ5_0 {
    const UNSIGNED: bool = false;
    fn d(&self) -> f32 {
        f16_of(self.d)
    }
    fn m(&self) -> f32 {
        0.0
    }
    fn dm_bits(&self) -> u32 {
        u16::from_le_bytes(self.d) as u32
    }
    fn q(&self) -> [i8; 32] {
        nibbles(&self.qs, u32::from_le_bytes(self.qh), 16)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn q_avx2(&self) -> std::arch::x86_64::__m256i {
        use std::arch::x86_64::*;
        // q - 16: the nibble where the fifth bit is set, else the nibble with its top bits set.
        let hi = x86::bits(u32::from_le_bytes(self.qh));
        _mm256_or_si256(
            x86::nibbles(&self.qs),
            _mm256_andnot_si256(hi, _mm256_set1_epi8(0xF0u8 as i8)),
        )
    }
}

impl Legacy for BlockQ5_1 {
    const UNSIGNED: bool = true;
    fn d(&self) -> f32 {
        f16_of(self.d)
    }
    fn m(&self) -> f32 {
        f16_of(self.m)
    }
    fn dm_bits(&self) -> u32 {
        u16::from_le_bytes(self.d) as u32 | (u16::from_le_bytes(self.m) as u32) << 16
    }
    fn q(&self) -> [i8; 32] {
        nibbles(&self.qs, u32::from_le_bytes(self.qh), 0)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn q_avx2(&self) -> std::arch::x86_64::__m256i {
        use std::arch::x86_64::*;
        let hi = x86::bits(u32::from_le_bytes(self.qh));
        _mm256_or_si256(x86::nibbles(&self.qs), _mm256_and_si256(hi, _mm256_set1_epi8(0x10)))
    }
}

impl Legacy for BlockQ8_0 {
    const UNSIGNED: bool = false;
    fn d(&self) -> f32 {
        f16_of(self.d)
    }
    fn m(&self) -> f32 {
        0.0
    }
    fn dm_bits(&self) -> u32 {
        u16::from_le_bytes(self.d) as u32
    }
    fn q(&self) -> [i8; 32] {
        self.qs
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn q_avx2(&self) -> std::arch::x86_64::__m256i {
        use std::arch::x86_64::*;
        // SAFETY: `qs` is 32 bytes; an unaligned load.
        unsafe { _mm256_loadu_si256(self.qs.as_ptr().cast()) }
    }
}

/// `Σ_blocks d_w d_x Σ q_w q_x + m_w s_x`, integer sums per block, for `R`
/// activation rows, one after the other (the compiler vectorises each block's
/// sum best so).
fn legacy_scalar<B: Legacy, const R: usize>(w: &[B], a: [&[PairQ8]; R]) -> [f32; R] {
    let mut out = [0.0f32; R];
    for (sum, a) in out.iter_mut().zip(a) {
        for (pair, w) in a.iter().zip(w.chunks(2)) {
            for (h, b) in w.iter().enumerate() {
                let (ad, s, qs) = pair.block(h);
                let isum: i32 = b.q().iter().zip(qs).map(|(&w, &x)| w as i32 * x as i32).sum();
                *sum += b.d() * ad * isum as f32 + b.m() * s;
            }
        }
    }
    out
}

/// K-quant super-blocks with their integers unpacked: `x = d * sc_j * q - dmin * m_j`
/// over sub-blocks `j` of [`SUB`](KBlock::SUB) values.
pub(crate) trait KBlock: Block {
    const SUB: usize;
    /// `(d, dmin)`.
    fn scales(&self) -> (f32, f32);
    /// The 256 `q` (offset to signed where there is no minimum), the scale
    /// and the minimum of each sub-block.
    fn unpack(&self, q: &mut [i8; 256], sc: &mut [i32; 16], m: &mut [i32; 16]);
}

/// Q4_K and Q5_K: per 64 values, the low then the high nibbles of 32 bytes (plus a fifth bit).
fn unpack_k45(
    scales: &[u8; 12],
    qs: &[u8; 128],
    qh: &[u8; 32],
    q: &mut [i8; 256],
    sc: &mut [i32; 16],
    m: &mut [i32; 16],
) {
    for c in 0..4 {
        for l in 0..32 {
            let b = qs[32 * c + l];
            q[64 * c + l] = ((b & 0xF) | ((qh[l] >> (2 * c)) & 1) << 4) as i8;
            q[64 * c + 32 + l] = ((b >> 4) | ((qh[l] >> (2 * c + 1)) & 1) << 4) as i8;
        }
    }
    for j in 0..8 {
        let (s, mm) = scale_min(j, scales);
        (sc[j], m[j]) = (s as i32, mm as i32);
    }
}

impl KBlock for BlockQ4_K {
    const SUB: usize = 32;
    fn scales(&self) -> (f32, f32) {
        (f16_of(self.d), f16_of(self.dmin))
    }
    fn unpack(&self, q: &mut [i8; 256], sc: &mut [i32; 16], m: &mut [i32; 16]) {
        unpack_k45(&self.scales, &self.qs, &[0; 32], q, sc, m);
    }
}

impl KBlock for BlockQ5_K {
    const SUB: usize = 32;
    fn scales(&self) -> (f32, f32) {
        (f16_of(self.d), f16_of(self.dmin))
    }
    fn unpack(&self, q: &mut [i8; 256], sc: &mut [i32; 16], m: &mut [i32; 16]) {
        unpack_k45(&self.scales, &self.qs, &self.qh, q, sc, m);
    }
}

impl KBlock for BlockQ6_K {
    const SUB: usize = 16;
    fn scales(&self) -> (f32, f32) {
        (f16_of(self.d), 0.0)
    }
    fn unpack(&self, q: &mut [i8; 256], sc: &mut [i32; 16], m: &mut [i32; 16]) {
        for h in 0..2 {
            let (ql, qh) = (&self.ql[64 * h..], &self.qh[32 * h..]);
            let q = &mut q[128 * h..];
            for l in 0..32 {
                q[l] = ((ql[l] & 0xF) | (qh[l] & 3) << 4) as i8 - 32;
                q[l + 32] = ((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) as i8 - 32;
                q[l + 64] = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) as i8 - 32;
                q[l + 96] = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) as i8 - 32;
            }
        }
        for (s, &v) in sc.iter_mut().zip(&self.scales) {
            *s = v as i32;
        }
        m.fill(0);
    }
}

/// `Σ_blocks d d_x Σ_j sc_j Σ q q_x - dmin d_x Σ_j m_j Σ q_x`, as ggml's
/// `ggml_vec_dot_q*_K_q8_K`.
fn k_scalar<B: KBlock>(w: &[B], a: &[BlockQ8K]) -> f32 {
    let (mut q, mut sc, mut m) = ([0i8; 256], [0i32; 16], [0i32; 16]);
    let mut sum = 0.0f32;
    for (b, a) in w.iter().zip(a) {
        b.unpack(&mut q, &mut sc, &mut m);
        let (d, dmin) = b.scales();
        let (mut isum, mut msum) = (0i32, 0i32);
        for (j, (q, x)) in q.chunks_exact(B::SUB).zip(a.qs.chunks_exact(B::SUB)).enumerate() {
            let s: i32 = q.iter().zip(x).map(|(&q, &x)| q as i32 * x as i32).sum();
            isum += sc[j] * s;
            let per = B::SUB / 16;
            let xs: i32 = a.bsums[j * per..(j + 1) * per].iter().map(|&s| s as i32).sum();
            msum += m[j] * xs;
        }
        sum += d * a.d * isum as f32 - dmin * a.d * msum as f32;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{f16_of, scale_min, BlockQ4_K, BlockQ5_K, BlockQ6_K, BlockQ8K, Legacy, PairQ8};
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn load32(p: &[u8]) -> __m256i {
        assert!(p.len() >= 32);
        // SAFETY: 32 bytes (checked), unaligned.
        unsafe { _mm256_loadu_si256(p.as_ptr().cast()) }
    }

    #[inline(always)]
    unsafe fn load32i(p: &[i8]) -> __m256i {
        // SAFETY: as `load32`.
        unsafe { load32(bytemuck::cast_slice(p)) }
    }

    /// One Q4_K / Q5_K super-block (`qh` for Q5_K's fifth bits) against its
    /// activations: the scaled integer sums added to `acc`, and the minimums'
    /// share returned (as ggml's `ggml_vec_dot_q4_K_q8_K`, minimums from `bsums`).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn k45_block(
        d: [u8; 2],
        dmin: [u8; 2],
        scales: &[u8; 12],
        qs: &[u8; 128],
        qh: Option<&[u8; 32]>,
        a: &BlockQ8K,
        acc: __m256,
    ) -> (__m256, f32) {
        // SAFETY: register operations and the checked loads; the caller has AVX2 and FMA.
        unsafe {
            let m4 = _mm256_set1_epi8(0x0F);
            let one = _mm256_set1_epi8(1);
            let hbits = qh.map(|h| load32(h));
            let mut sumi = _mm256_setzero_si256();
            let mut msum = 0i32;
            for c in 0..4 {
                let (sc1, m1) = scale_min(2 * c, scales);
                let (sc2, m2) = scale_min(2 * c + 1, scales);
                let q = load32(&qs[32 * c..]);
                let mut lo = _mm256_and_si256(q, m4);
                let mut hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                if let Some(h) = hbits {
                    // Bit 2c of each byte, then bit 2c + 1: masked to bit 0 before moving to bit 4.
                    let b1 = _mm256_and_si256(_mm256_srl_epi16(h, _mm_cvtsi32_si128(2 * c as i32)), one);
                    let b2 = _mm256_and_si256(_mm256_srl_epi16(h, _mm_cvtsi32_si128(2 * c as i32 + 1)), one);
                    lo = _mm256_or_si256(lo, _mm256_slli_epi16(b1, 4));
                    hi = _mm256_or_si256(hi, _mm256_slli_epi16(b2, 4));
                }
                let p1 = _mm256_maddubs_epi16(lo, load32i(&a.qs[64 * c..]));
                let p2 = _mm256_maddubs_epi16(hi, load32i(&a.qs[64 * c + 32..]));
                let p1 = _mm256_madd_epi16(p1, _mm256_set1_epi16(sc1 as i16));
                let p2 = _mm256_madd_epi16(p2, _mm256_set1_epi16(sc2 as i16));
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p1, p2));
                let bs = |k: usize| a.bsums[k] as i32;
                msum += m1 as i32 * (bs(4 * c) + bs(4 * c + 1)) + m2 as i32 * (bs(4 * c + 2) + bs(4 * c + 3));
            }
            let acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_of(d) * a.d), _mm256_cvtepi32_ps(sumi), acc);
            (acc, f16_of(dmin) * a.d * msum as f32)
        }
    }

    /// A row of Q4_K super-blocks with its Q8_K activations.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn q4k_avx2(w: &[BlockQ4_K], a: &[BlockQ8K]) -> f32 {
        let (mut acc, mut mins) = (_mm256_setzero_ps(), 0.0f32);
        for (b, a) in w.iter().zip(a) {
            // SAFETY: this function's features.
            let (s, m) = unsafe { k45_block(b.d, b.dmin, &b.scales, &b.qs, None, a, acc) };
            (acc, mins) = (s, mins + m);
        }
        // SAFETY: this function's features.
        unsafe { hsum(acc) - mins }
    }

    /// A row of Q5_K super-blocks with its Q8_K activations.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn q5k_avx2(w: &[BlockQ5_K], a: &[BlockQ8K]) -> f32 {
        let (mut acc, mut mins) = (_mm256_setzero_ps(), 0.0f32);
        for (b, a) in w.iter().zip(a) {
            // SAFETY: this function's features.
            let (s, m) = unsafe { k45_block(b.d, b.dmin, &b.scales, &b.qs, Some(&b.qh), a, acc) };
            (acc, mins) = (s, mins + m);
        }
        // SAFETY: this function's features.
        unsafe { hsum(acc) - mins }
    }

    /// A row of Q6_K super-blocks with its Q8_K activations (ggml's
    /// `ggml_vec_dot_q6_K_q8_K`: `q - 32` as `q · y - 32 · y`, so `maddubs` sees unsigned `q`).
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn q6k_avx2(w: &[BlockQ6_K], a: &[BlockQ8K]) -> f32 {
        let (m4, m3, m32) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(3), _mm256_set1_epi8(32));
        let mut acc = _mm256_setzero_ps();
        for (b, a) in w.iter().zip(a) {
            let mut sumi = _mm256_setzero_si256();
            for h in 0..2 {
                // SAFETY: the checked loads; this function's features.
                let (ql0, ql1, qh) = unsafe {
                    (
                        load32(&b.ql[64 * h..]),
                        load32(&b.ql[64 * h + 32..]),
                        load32(&b.qh[32 * h..]),
                    )
                };
                let high = |shift: i32| {
                    let bits = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(shift)), m3);
                    _mm256_slli_epi16(bits, 4)
                };
                let q = [
                    _mm256_or_si256(_mm256_and_si256(ql0, m4), high(0)),
                    _mm256_or_si256(_mm256_and_si256(ql1, m4), high(2)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), high(4)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4), high(6)),
                ];
                for (i, q) in q.into_iter().enumerate() {
                    // SAFETY: the checked load.
                    let y = unsafe { load32i(&a.qs[128 * h + 32 * i..]) };
                    let p = _mm256_sub_epi16(_mm256_maddubs_epi16(q, y), _mm256_maddubs_epi16(m32, y));
                    let sc = |k: usize| _mm_set1_epi16(b.scales[8 * h + 2 * i + k] as i16);
                    let s = _mm256_set_m128i(sc(1), sc(0));
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, s));
                }
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_of(b.d) * a.d), _mm256_cvtepi32_ps(sumi), acc);
        }
        // SAFETY: this function's features.
        unsafe { hsum(acc) }
    }

    /// The 32 nibbles of `qs` in order: low nibbles (values 0..16) in the low lane.
    #[inline(always)]
    pub(super) unsafe fn nibbles(qs: &[u8; 16]) -> __m256i {
        // SAFETY: 16 bytes, an unaligned load; the caller has AVX2.
        unsafe {
            let t = _mm_loadu_si128(qs.as_ptr().cast());
            let v = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
            _mm256_and_si256(v, _mm256_set1_epi8(0x0F))
        }
    }

    /// Byte `j` is 0xFF where bit `j` of `x` is set, else 0 (ggml's `bytes_from_bits_32`).
    #[inline(always)]
    pub(super) unsafe fn bits(x: u32) -> __m256i {
        // SAFETY: register operations only; the caller has AVX2.
        unsafe {
            let shuf = _mm256_set_epi64x(
                0x0303030303030303,
                0x0202020202020202,
                0x0101010101010101,
                0x0000000000000000,
            );
            let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x as i32), shuf);
            let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
            _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
        }
    }

    /// 8 partial sums of `q · y` (pairs of pairs of products).
    #[inline(always)]
    unsafe fn dot8(unsigned: bool, q: __m256i, y: __m256i) -> __m256i {
        // SAFETY: register operations; the caller has AVX2.
        unsafe {
            let p = if unsigned {
                _mm256_maddubs_epi16(q, y)
            } else {
                // |q| · (y with q's sign): maddubs wants its first operand unsigned.
                _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(y, q))
            };
            _mm256_madd_epi16(p, _mm256_set1_epi16(1))
        }
    }

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        // SAFETY: register operations; the caller has AVX.
        unsafe {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_movehdup_ps(s));
            _mm_cvtss_f32(s)
        }
    }

    /// Asks for the weights [`PREFETCH_AHEAD`] bytes past `at` (the rows a
    /// thread takes lie one after the other): one core's hardware prefetcher
    /// alone keeps too few lines in flight to stream the weights at the
    /// memory's speed (measured: batch-1 Q4_1 products about 30 % faster).
    #[inline(always)]
    fn prefetch_ahead<T>(at: &T) {
        // A hint, never a fault: the address may lie past the matrix.
        let p = (at as *const T).cast::<i8>().wrapping_add(PREFETCH_AHEAD);
        // SAFETY: a prefetch reads nothing the program sees; SSE is part of x86_64.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p) }
    }

    /// How far ahead [`prefetch_ahead`] reaches (best of 512 B to 8 KiB on a Xeon).
    const PREFETCH_AHEAD: usize = 4096;

    /// The AVX2 + FMA kernel: a block per step.
    pub(super) struct Avx2;

    impl super::LegacyKernel for Avx2 {
        unsafe fn dot<B: Legacy, const R: usize>(w: &[B], a: [&[PairQ8]; R]) -> [f32; R] {
            // SAFETY: the caller's promise about the CPU.
            unsafe { legacy_avx2(w, a) }
        }
    }

    /// The AVX-512 kernel: two blocks per step (their products summed by
    /// VNNI's `vpdpbusd` where the CPU has it: one instruction for two).
    pub(super) struct Avx512;

    impl super::LegacyKernel for Avx512 {
        unsafe fn dot<B: Legacy, const R: usize>(w: &[B], a: [&[PairQ8]; R]) -> [f32; R] {
            static VNNI: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
            // SAFETY (both): the caller's promise about the CPU, and VNNI checked.
            match *VNNI.get_or_init(|| is_x86_feature_detected!("avx512vnni")) {
                true => unsafe { legacy_avx512_vnni(w, a) },
                false => unsafe { legacy_avx512(w, a) },
            }
        }
    }

    /// The dot products of a row of `B` blocks with `R` rows of activation
    /// blocks, a block per step, each block unpacked once for all rows.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn legacy_avx2<B: Legacy, const R: usize>(w: &[B], a: [&[PairQ8]; R]) -> [f32; R] {
        let mut acc = [_mm256_setzero_ps(); R];
        let mut mins = [_mm_setzero_ps(); R];
        for (k, b) in w.iter().enumerate() {
            let (pair, h) = (k / 2, k % 2);
            prefetch_ahead(b);
            // SAFETY: this function's features.
            let q = unsafe { b.q_avx2() };
            let (d, m) = (_mm256_set1_ps(b.d()), _mm_set_ss(b.m()));
            for r in 0..R {
                let a = &a[r][pair];
                let ad: &[f32; 8] = a.d[8 * h..][..8].try_into().expect("8 lanes");
                // SAFETY: the checked load, 8 floats unaligned; this function's features.
                let (p, ad) = unsafe {
                    (
                        dot8(B::UNSIGNED, q, load32i(&a.qs[32 * h..])),
                        _mm256_loadu_ps(ad.as_ptr()),
                    )
                };
                acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(d, ad), _mm256_cvtepi32_ps(p), acc[r]);
                if B::UNSIGNED {
                    mins[r] = _mm_fmadd_ss(m, _mm_set_ss(a.s[h]), mins[r]);
                }
            }
        }
        // SAFETY: this function's features.
        std::array::from_fn(|r| unsafe { hsum(acc[r]) } + _mm_cvtss_f32(mins[r]))
    }

    /// As [`legacy_avx2`], two blocks per step in 512-bit registers.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA, F16C, AVX-512F and AVX-512BW.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw")]
    pub(super) unsafe fn legacy_avx512<B: Legacy, const R: usize>(w: &[B], a: [&[PairQ8]; R]) -> [f32; R] {
        // SAFETY: this function's features are the body's.
        unsafe { legacy_avx512_body::<B, R, false>(w, a) }
    }

    /// [`legacy_avx512`] with VNNI, the same sums (exact integers) in fewer instructions.
    ///
    /// # Safety
    /// As [`legacy_avx512`], and the CPU has AVX-512 VNNI.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn legacy_avx512_vnni<B: Legacy, const R: usize>(w: &[B], a: [&[PairQ8]; R]) -> [f32; R] {
        // SAFETY: this function's features are the body's.
        unsafe { legacy_avx512_body::<B, R, true>(w, a) }
    }

    /// The body of both: each pair's `d` and minimums converted from f16 in
    /// one instruction, their products summed by `vpdpbusd` with `VNNI`,
    /// else `vpmaddubsw` + `vpmaddwd`.
    ///
    /// # Safety
    /// The CPU has [`legacy_avx512`]'s features, and VNNI with `VNNI`.
    #[inline(always)]
    unsafe fn legacy_avx512_body<B: Legacy, const R: usize, const VNNI: bool>(w: &[B], a: [&[PairQ8]; R]) -> [f32; R] {
        let mut acc = [_mm512_setzero_ps(); R];
        let mut mins = [_mm_setzero_ps(); R];
        let pairs = w.len() / 2;
        // Lanes 0-7 sum the first block, 8-15 the second: `d0` then `d1` of [d0, m0, d1, m1].
        let d_lanes = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
        for k in 0..pairs {
            let (b0, b1) = (&w[2 * k], &w[2 * k + 1]);
            prefetch_ahead(b0);
            // SAFETY: the caller's features.
            let q = unsafe { _mm512_inserti64x4::<1>(_mm512_castsi256_si512(b0.q_avx2()), b1.q_avx2()) };
            // Signed `q`: |q| · (y with q's sign), as `maddubs` and `dpbusd` want their first operand unsigned.
            let (neg, q) = match B::UNSIGNED {
                true => (0, q),
                false => (_mm512_movepi8_mask(q), _mm512_abs_epi8(q)),
            };
            // [d0, m0, d1, m1]
            let dm = _mm_cvtph_ps(_mm_cvtsi64_si128(
                (b0.dm_bits() as u64 | (b1.dm_bits() as u64) << 32) as i64,
            ));
            let d = _mm512_permutexvar_ps(d_lanes, _mm512_castps128_ps512(dm));
            for r in 0..R {
                let a = &a[r][k];
                // SAFETY: unaligned loads of 64 bytes and of 16 floats, each whole.
                let (y, ad) = unsafe { (_mm512_loadu_si512(a.qs.as_ptr().cast()), _mm512_loadu_ps(a.d.as_ptr())) };
                let y = match B::UNSIGNED {
                    true => y,
                    false => _mm512_mask_sub_epi8(y, neg, _mm512_setzero_si512(), y),
                };
                let p = match VNNI {
                    true => _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, y),
                    false => _mm512_madd_epi16(_mm512_maddubs_epi16(q, y), _mm512_set1_epi16(1)),
                };
                acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(d, ad), _mm512_cvtepi32_ps(p), acc[r]);
                if B::UNSIGNED {
                    // [0, s0, 0, s1] against [d0, m0, d1, m1]: m0 s0 + m1 s1.
                    let s = _mm_setr_ps(0.0, a.s[0], 0.0, a.s[1]);
                    mins[r] = _mm_fmadd_ps(dm, s, mins[r]);
                }
            }
        }
        let mut sum: [f32; R] = std::array::from_fn(|r| {
            let mins: [f32; 4] = bytemuck::cast(mins[r]);
            _mm512_reduce_add_ps(acc[r]) + (mins[1] + mins[3])
        });
        if w.len() % 2 == 1 {
            // The last block, the first of its pair.
            // SAFETY: AVX2 and FMA are among this function's features.
            let t = unsafe { legacy_avx2::<B, R>(&w[2 * pairs..], std::array::from_fn(|r| &a[r][pairs..])) };
            sum.iter_mut().zip(t).for_each(|(s, t)| *s += t);
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pseudo-random values in [-1, 1), with a spread of magnitudes between blocks.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let u = (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
                u * (1.0 + (i / 32 % 5) as f32)
            })
            .collect()
    }

    /// A matrix of `kind` whose blocks hold arbitrary bytes with sane scales
    /// (for the kinds we cannot quantize to), or quantized values.
    fn matrix(kind: Kind, rows: usize, cols: usize, seed: u64) -> QMatrix {
        if kind.can_quantize() {
            return QMatrix::quantize(kind, &values(rows * cols, seed), rows, cols).unwrap();
        }
        let bytes = rows * cols / kind.block_size() * kind.type_size();
        let mut s = seed | 1;
        let mut b: Vec<u8> = (0..bytes)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (s >> 56) as u8
            })
            .collect();
        // f16 scales of modest size: 0x2C00..0x2FFF is about 0.06..0.12.
        let (d_at, dmin_at) = match kind {
            Kind::Q5_0 => (vec![0], None),
            Kind::Q5_1 => (vec![0], Some(2)),
            Kind::Q4_K | Kind::Q5_K => (vec![0], Some(2)),
            Kind::Q6_K => (vec![208], None),
            _ => unreachable!(),
        };
        for blk in b.chunks_exact_mut(kind.type_size()) {
            for &o in d_at.iter().chain(dmin_at.iter()) {
                blk[o + 1] = 0x2C | (blk[o + 1] & 3);
            }
        }
        QMatrix::new(kind, rows, cols, b).unwrap()
    }

    fn run(isa: Isa, w: &QMatrix, x: &[f32], n: usize) -> Vec<f32> {
        run_at(isa, w, x, n, Precision::F32)
    }

    fn run_at(isa: Isa, w: &QMatrix, x: &[f32], n: usize, precision: Precision) -> Vec<f32> {
        let mut out = vec![0.0; n * w.rows()];
        let mut scratch = vec![0.0; qmatmul_scratch_len(w, n)];
        qmatmul_with(isa, &mut out, x, n, w, precision, &mut scratch);
        out
    }

    const KINDS: [Kind; 11] = {
        use Kind::*;
        [Q4_1, Q8_0, Q4_0, Q6_K, Q4_K, Q5_K, Q5_0, Q5_1, F16, BF16, F32]
    };

    /// Each kernel against the f32 product of the dequantized matrix with
    /// the f32 activations. The only error beyond float rounding is the
    /// activations' rounding to 8 bits: at most half a step, `d_x / 2 =
    /// max|x_block| / 254`, per value, so output `o` is off by at most
    /// `Σ_blocks max|x_block| / 254 · Σ_block |w|`; we allow that plus 1e-5
    /// relative of `Σ |w x|` for the f32 sums (and measure how much of the
    /// bound is used).
    #[test]
    fn kernels_match_dequantized_f32_within_activation_rounding() {
        let mut worst = std::collections::BTreeMap::new();
        for kind in KINDS {
            let bs = kind.block_size().max(32);
            let act = match act_format(kind) {
                ActFormat::Q8 => 32,
                ActFormat::Q8K => 256,
                ActFormat::F32 => 0,
            };
            // Miri checks the memory accesses on the small shapes only.
            let shapes: &[(usize, usize)] = if cfg!(miri) {
                &[(1, 1), (7, 2)]
            } else {
                &[(1, 1), (7, 3), (33, 4), (130, 9)]
            };
            for &(rows, blocks) in shapes {
                let cols = blocks * if act == 256 { 256 } else { bs };
                let w = matrix(kind, rows, cols, rows as u64 * 31 + blocks as u64);
                let wf = w.dequantize();
                for n in [1, 2, 5] {
                    let x = values(n * cols, 7 + n as u64);
                    for isa in [Isa::Scalar, Isa::Avx2, Isa::Avx512] {
                        if !isa.available() {
                            continue;
                        }
                        let got = run(isa, &w, &x, n);
                        for i in 0..n {
                            let xr = &x[i * cols..][..cols];
                            for r in 0..rows {
                                let wr = &wf[r * cols..][..cols];
                                let want: f64 = xr.iter().zip(wr).map(|(&a, &b)| a as f64 * b as f64).sum();
                                let abs: f64 = xr.iter().zip(wr).map(|(&a, &b)| (a * b).abs() as f64).sum();
                                let bound: f64 = if act == 0 {
                                    0.0
                                } else {
                                    xr.chunks(act)
                                        .zip(wr.chunks(act))
                                        .map(|(xb, wb)| {
                                            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
                                            amax / 254.0 * wb.iter().map(|v| v.abs() as f64).sum::<f64>()
                                        })
                                        .sum()
                                } + 1e-5 * abs
                                    + 1e-6;
                                let err = (got[i * rows + r] as f64 - want).abs();
                                assert!(
                                    err <= bound,
                                    "{kind} {isa:?} rows={rows} cols={cols} n={n}: row {r} of {i}: {} vs {want} (bound {bound})",
                                    got[i * rows + r]
                                );
                                let e = worst.entry(kind.to_string()).or_insert(0.0f64);
                                *e = e.max(err / bound);
                            }
                        }
                    }
                }
            }
        }
        eprintln!("largest error as a fraction of its bound: {worst:?}");
    }

    /// Prompt-sized products multiply dequantized bands by GEMM across the
    /// edges of several bands: in f32 the f64 product within f32 summation
    /// error; in bf16 the f64 product of both sides rounded to bf16, within
    /// the same; and `qmatmul` takes this path at the precision it is given.
    #[test]
    fn prompts_multiply_dequantized_bands_by_gemm() {
        let (cols, n) = (256, GEMM_MIN_ROWS + 3);
        let rows = 2 * (GEMM_BAND_FLOATS / cols) + 37;
        use crate::tensor::{Bf16, WeightElem};
        let bf16 = |v: f32| Bf16::from_f32(v).to_f32();
        for kind in [Kind::Q4_1, Kind::Q8_0, Kind::Q6_K] {
            let w = matrix(kind, rows, cols, 5);
            assert!(gemm_band_rows(&w) < rows / 2, "three bands");
            let wf = w.dequantize();
            let x = values(n * cols, 9);
            for precision in [Precision::F32, Precision::Bf16] {
                let round = |v: f32| if precision == Precision::Bf16 { bf16(v) } else { v };
                let mut got = vec![0.0; n * rows];
                let mut scratch = vec![0.0; qmatmul_scratch_len(&w, n)];
                dequantized_gemm(&mut got, &x, n, &w, precision, &mut scratch);
                assert_eq!(
                    got,
                    run_at(Isa::best(), &w, &x, n, precision),
                    "{kind}: qmatmul's prompt path"
                );
                for i in 0..n {
                    let xr = &x[i * cols..][..cols];
                    for r in 0..rows {
                        let wr = &wf[r * cols..][..cols];
                        let prods = xr.iter().zip(wr).map(|(&a, &b)| round(a) as f64 * round(b) as f64);
                        let want: f64 = prods.clone().sum();
                        let abs: f64 = prods.map(f64::abs).sum();
                        let err = (got[i * rows + r] as f64 - want).abs();
                        assert!(
                            err <= 1e-5 * abs + 1e-6,
                            "{kind} {precision:?}: row {r} of {i}: {} vs {want}",
                            got[i * rows + r]
                        );
                    }
                }
            }
        }
    }

    /// The input gradient through frozen quantized weights is `dout @ W` of
    /// the dequantized `W` (within f32 summation error), across several
    /// bands, added to what `dx` held or replacing it.
    #[test]
    fn backward_input_is_dout_times_the_dequantized_matrix() {
        let (cols, n) = (96, 5);
        let rows = 2 * (GEMM_BAND_FLOATS / cols) + 37;
        for kind in [Kind::Q4_1, Kind::Q8_0, Kind::Q4_K] {
            let cols = if kind == Kind::Q4_K { 256 } else { cols };
            let w = matrix(kind, rows, cols, 3);
            assert!(gemm_band_rows(&w) < rows / 2, "three bands");
            let wf = w.dequantize();
            let dout = values(n * rows, 4);
            let mut scratch = vec![0.0; qmatmul_backward_scratch_len(&w)];
            for accumulate in [false, true] {
                let mut dx = vec![0.5; n * cols];
                qmatmul_backward_input(&mut dx, &dout, n, &w, &mut scratch, accumulate);
                for i in 0..n {
                    for c in 0..cols {
                        let terms = (0..rows).map(|r| dout[i * rows + r] as f64 * wf[r * cols + c] as f64);
                        let abs: f64 = terms.clone().map(f64::abs).sum();
                        let want = terms.sum::<f64>() + if accumulate { 0.5 } else { 0.0 };
                        let err = (dx[i * cols + c] as f64 - want).abs();
                        assert!(
                            err <= 1e-5 * abs + 1e-6,
                            "{kind} {accumulate}: [{i}, {c}] {} vs {want}",
                            dx[i * cols + c]
                        );
                    }
                }
            }
        }
    }

    /// The SIMD paths add the same exact integer block sums in another order:
    /// within a few f32 roundings of the scalar path (1e-6 of `Σ |terms|`).
    #[test]
    fn simd_paths_match_scalar() {
        let mut worst = 0.0f64;
        for kind in KINDS {
            let cols = if act_format(kind) == ActFormat::Q8K {
                3 * 256
            } else {
                8 * 32
            };
            let (rows, n) = (45, 3);
            let w = matrix(kind, rows, cols, 99);
            let x = values(n * cols, 5);
            let want = run(Isa::Scalar, &w, &x, n);
            let wf = w.dequantize();
            for isa in [Isa::Avx2, Isa::Avx512] {
                if !isa.available() {
                    continue;
                }
                let got = run(isa, &w, &x, n);
                for (k, (g, s)) in got.iter().zip(&want).enumerate() {
                    let (i, r) = (k / rows, k % rows);
                    let abs: f32 = x[i * cols..][..cols]
                        .iter()
                        .zip(&wf[r * cols..][..cols])
                        .map(|(a, b)| (a * b).abs())
                        .sum();
                    let err = (g - s).abs() as f64;
                    assert!(err <= 1e-6 * abs as f64, "{kind} {isa:?}: {g} vs scalar {s}");
                    worst = worst.max(err / abs as f64);
                }
            }
        }
        eprintln!("largest SIMD - scalar difference, relative to Σ|w x|: {worst:e}");
    }

    /// The AVX-512 kernel with VNNI sums the very integers that `maddubs`
    /// and `madd` do, so its results are the same bits.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vnni_gives_the_bits_of_maddubs() {
        if !(Isa::Avx512.available() && is_x86_feature_detected!("avx512vnni")) {
            return eprintln!("no AVX-512 VNNI here: nothing to compare");
        }
        fn both<B: Legacy>(w: &QMatrix, x: &[f32]) {
            let mut act = vec![0.0; act_len(w.kind, 2, w.cols)];
            quantize_acts::<PairQ8>(&mut act, x, w.cols);
            let (a0, a1) = act.split_at(act.len() / 2);
            let acts: [&[PairQ8]; 2] = [cast(a0), cast(a1)];
            for r in 0..w.rows {
                let row: &[B] = cast(w.row(r));
                // SAFETY: AVX-512 (with F16C, AVX2, FMA) and VNNI checked above.
                let (plain, vnni) = unsafe {
                    (
                        x86::legacy_avx512::<B, 2>(row, acts),
                        x86::legacy_avx512_vnni::<B, 2>(row, acts),
                    )
                };
                assert_eq!(plain.map(f32::to_bits), vnni.map(f32::to_bits), "{}: row {r}", w.kind);
            }
        }
        // An odd block count: the one-block tail too.
        let (rows, cols) = (9, 7 * 32);
        let x = values(2 * cols, 3);
        both::<BlockQ4_0>(&matrix(Kind::Q4_0, rows, cols, 1), &x);
        both::<BlockQ4_1>(&matrix(Kind::Q4_1, rows, cols, 2), &x);
        both::<BlockQ5_0>(&matrix(Kind::Q5_0, rows, cols, 3), &x);
        both::<BlockQ5_1>(&matrix(Kind::Q5_1, rows, cols, 4), &x);
        both::<BlockQ8_0>(&matrix(Kind::Q8_0, rows, cols, 5), &x);
    }

    /// Up to [`ROW_INVARIANT_ROWS`] rows, every kind and kernel gives a row
    /// the very bits it gets alone, wherever it sits in the batch: the
    /// legacy kernels unpack a weight block once for several rows, and must
    /// still sum each row as the one-row case does (odd block counts: the
    /// AVX-512 kernel's one-block tail).
    #[test]
    fn a_row_comes_out_the_same_bit_for_bit_in_any_few_rows_batch() {
        for kind in KINDS {
            let cols = if act_format(kind) == ActFormat::Q8K {
                2 * 256
            } else {
                7 * 32
            };
            let rows = 37;
            let w = matrix(kind, rows, cols, 11);
            let x = values(ROW_INVARIANT_ROWS * cols, 12);
            for isa in [Isa::Scalar, Isa::Avx2, Isa::Avx512] {
                if !isa.available() {
                    continue;
                }
                let alone: Vec<Vec<f32>> = (0..ROW_INVARIANT_ROWS)
                    .map(|r| run(isa, &w, &x[r * cols..][..cols], 1))
                    .collect();
                for (first, n) in [(0, 2), (1, 3), (0, 4), (3, 5), (0, 7), (2, 9), (0, ROW_INVARIANT_ROWS)] {
                    let together = run(isa, &w, &x[first * cols..][..n * cols], n);
                    for (i, row) in together.chunks(rows).enumerate() {
                        let same = row
                            .iter()
                            .zip(&alone[first + i])
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(
                            same,
                            "{kind} {isa:?}: row {} as row {i} of {n} differs from it alone",
                            first + i
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn bad_bytes_are_errors() {
        assert!(QMatrix::new(Kind::Q4_1, 2, 64, vec![0; 80]).is_ok());
        assert!(QMatrix::new(Kind::Q4_1, 2, 64, vec![0; 79]).is_err());
        assert!(QMatrix::new(Kind::Q4_1, 2, 48, vec![0; 60]).is_err());
        assert!(QMatrix::new(Kind::Q4_K, usize::MAX, 256, vec![0; 144]).is_err());
        assert_eq!(
            QMatrix::quantize(Kind::Q6_K, &[0.0; 256], 1, 256),
            Err(CannotQuantize(Kind::Q6_K))
        );
    }
}
