//! Mixed-precision matrix multiply: inputs rounded to bf16, products summed
//! in f32 (what PyTorch's bf16 autocast does to a matmul's inputs; the
//! output here stays f32). On CPUs with Intel AMX the tiles do it, several
//! times the f32 GEMM's speed; on CPUs with AVX512-BF16 but no tiles (AMD
//! Zen 4 and later) `vdpbf16ps` does, two products per f32 lane per
//! instruction; elsewhere the rounded inputs go through the f32 GEMM. The
//! same numbers each way, in another summation order.
//!
//! AMX layout (Intel SDM vol. 1, ch. 18): `tdpbf16ps C, A, B` adds a
//! `16×32` bf16 `A` times a `32×16` bf16 `B` into a `16×16` f32 `C`, where
//! a row of `A` holds 32 consecutive `k`s and a row of `B` holds, for each
//! of 16 columns, the pair `(k, k+1)`: both operands are packed as `u32`
//! pairs of bf16 of consecutive `k`.

use super::linear::Precision;
use super::matmul::matmul;
use super::{Bf16, WeightElem};
use rayon::prelude::*;

/// Whether [`matmul_at`]'s bf16 products run on AMX tiles here.
pub fn has_amx() -> bool {
    packed::amx_available()
}

/// Whether [`matmul_at`]'s bf16 products run on a bf16 kernel here (AMX tiles
/// or AVX512-BF16), rather than as rounded inputs through the f32 GEMM.
pub fn has_bf16_kernel() -> bool {
    packed::available()
}

/// `out[m, n] (+)= a[m, k] @ b[k, n]` at `precision`: with
/// [`Precision::Bf16`], `bf16(a) @ bf16(b)` summed in f32. The operands as
/// [`matmul`] takes them (`a_t`: `a` stored `[k, m]`; `b_t`: `b` stored `[n, k]`).
#[allow(clippy::too_many_arguments)]
pub fn matmul_at(
    precision: Precision,
    out: &mut [f32],
    a: &[f32],
    a_t: bool,
    b: &[f32],
    b_t: bool,
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
) {
    if precision == Precision::F32 {
        return matmul(out, a, a_t, b, b_t, m, k, n, accumulate);
    }
    assert_eq!(out.len(), m * n, "matmul_bf16: out is not [{m}, {n}]");
    assert_eq!(a.len(), m * k, "matmul_bf16: a is not [{m}, {k}]");
    assert_eq!(b.len(), k * n, "matmul_bf16: b is not [{k}, {n}]");
    if m == 0 || n == 0 || k == 0 || !packed::available() {
        let round = |x: &[f32]| -> Vec<f32> { x.par_iter().map(|&v| Bf16::from_f32(v).to_f32()).collect() };
        return matmul(out, &round(a), a_t, &round(b), b_t, m, k, n, accumulate);
    }
    packed::matmul(packed::amx_available(), out, a, a_t, b, b_t, m, k, n, accumulate)
}

/// Operands packed as bf16 pairs of consecutive `k`s (the layout both AMX
/// and `vdpbf16ps` take), multiplied a `32×32` block of the output at a time.
#[cfg(target_arch = "x86_64")]
mod packed {
    use rayon::prelude::*;
    use std::arch::asm;
    use std::marker::PhantomData;
    use std::sync::OnceLock;

    /// Rows of `a` packed at a time (per task, reused across `n`).
    const MC: usize = 128;
    /// Columns of `b` swept per pass over an `a` block (their packed panels stay in L2).
    const NC: usize = 256;
    /// `k`s per pass: longer sums are split, each pass adding into `out`.
    const KC: usize = 1024;

    /// AVX512-BF16 (with AVX512BW), which the packing converts with and the
    /// dot-product kernel multiplies with. Miri runs neither.
    pub fn available() -> bool {
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| {
            !cfg!(miri) && is_x86_feature_detected!("avx512bf16") && is_x86_feature_detected!("avx512bw")
        })
    }

    /// AMX-BF16 present and the kernel lets this process use the tile data
    /// (Linux asks each process to request it: `arch_prctl(ARCH_REQ_XCOMP_PERM)`).
    pub fn amx_available() -> bool {
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| {
            // Miri runs neither `cpuid` nor the tiles' inline assembly.
            if !available() || std::env::var_os("GPT_NO_AMX").is_some() {
                return false;
            }
            let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
            let (tile, bf16) = (leaf7.edx & (1 << 24) != 0, leaf7.edx & (1 << 22) != 0);
            const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
            const XFEATURE_XTILEDATA: libc::c_long = 18;
            // SAFETY: this request only changes which register state the
            // kernel saves for this process; it touches no memory of ours.
            tile && bf16 && unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) } == 0
        })
    }

    /// What multiplies the packed blocks: AMX tiles, or `vdpbf16ps`.
    enum Kernel {
        Tiles(Tiles),
        Dot,
    }

    impl Kernel {
        fn load(amx: bool) -> Kernel {
            assert!(available(), "bf16 kernels used on a CPU without AVX512-BF16");
            match amx {
                true => Kernel::Tiles(Tiles::load()),
                false => Kernel::Dot,
            }
        }

        /// `C (+)= A @ B` for the `32×32` block `C` at the front of `c`, rows
        /// `c_rs` apart (added to with `add`, else overwritten), over `kl` (a
        /// multiple of 32) `k`s, with `a` two panels of 16 rows ([`pack_a`])
        /// and `b` one panel of 32 columns ([`pack_b`]), from their first `k`.
        fn block(&self, a: &[u32], kl: usize, b: &[u32], (c, c_rs): (&mut [f32], usize), add: bool) {
            assert!(kl > 0 && kl.is_multiple_of(32), "k block of {kl}");
            assert!(a.len() >= 16 * kl && b.len() >= 16 * kl, "packed operands too short");
            assert!(c_rs >= 32 && c.len() >= 31 * c_rs + 32, "C block outside its slice");
            match self {
                // SAFETY: the slices' extents are asserted above.
                Kernel::Tiles(t) => unsafe { t.block(a, kl, b, (c, c_rs), add) },
                // SAFETY: `Dot` is only made where `available()` (AVX512-BF16)
                // holds; the slices' extents are asserted above.
                Kernel::Dot => unsafe { dot_block(a, kl, b, (c, c_rs), add) },
            }
        }
    }

    /// Pairs of `k` per pass of [`dot_block`] over its four row groups: 16
    /// KiB of `B`, which stays in L1 while each group sweeps it.
    const DOT_PAIRS: usize = 128;

    /// [`Kernel::block`] by `vdpbf16ps`: 8 rows × 32 columns of `C` in 16
    /// registers at a time, each step a broadcast pair of `A` times two
    /// registers of `B`'s pairs (the layout the tiles take serves as is).
    ///
    /// # Safety
    /// The CPU has AVX512-BF16; `a`, `b` and `c` hold what [`Kernel::block`] asserts.
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn dot_block(a: &[u32], kl: usize, b: &[u32], (c, c_rs): (&mut [f32], usize), add: bool) {
        use std::arch::x86_64::*;
        let pairs = kl / 2;
        for q0 in (0..pairs).step_by(DOT_PAIRS) {
            let q1 = (q0 + DOT_PAIRS).min(pairs);
            for g in 0..4 {
                // Rows 8g.. of C: panel g / 2 of `a`, its rows 8 (g % 2)..
                let (panel, r0) = (&a[g / 2 * 8 * kl..], 8 * (g % 2));
                let mut acc = [[_mm512_setzero_ps(); 2]; 8];
                if add || q0 > 0 {
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let row = &c[(8 * g + r) * c_rs..][..32];
                        // SAFETY: 32 floats of the row (sliced above).
                        *acc = unsafe { [_mm512_loadu_ps(row.as_ptr()), _mm512_loadu_ps(row.as_ptr().add(16))] };
                    }
                }
                for q in q0..q1 {
                    let bq = &b[q * 32..][..32];
                    // SAFETY: 16 + 16 u32 of B's pair row q (sliced above).
                    let (b0, b1) = unsafe {
                        (
                            _mm512_loadu_si512(bq.as_ptr().cast()),
                            _mm512_loadu_si512(bq.as_ptr().add(16).cast()),
                        )
                    };
                    // Pair q of row r lies in tile q / 16 at [r][q % 16].
                    let at = &panel[q / 16 * 256 + r0 * 16 + q % 16..];
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let pair = _mm512_set1_epi32(at[r * 16] as i32);
                        // SAFETY: 512-bit vectors reinterpreted as 32 bf16.
                        let (pair, b0, b1) = unsafe {
                            (
                                std::mem::transmute::<__m512i, __m512bh>(pair),
                                std::mem::transmute::<__m512i, __m512bh>(b0),
                                std::mem::transmute::<__m512i, __m512bh>(b1),
                            )
                        };
                        acc[0] = _mm512_dpbf16_ps(acc[0], pair, b0);
                        acc[1] = _mm512_dpbf16_ps(acc[1], pair, b1);
                    }
                }
                for (r, acc) in acc.iter().enumerate() {
                    let row = &mut c[(8 * g + r) * c_rs..][..32];
                    // SAFETY: 32 floats of the row (sliced above).
                    unsafe {
                        _mm512_storeu_ps(row.as_mut_ptr(), acc[0]);
                        _mm512_storeu_ps(row.as_mut_ptr().add(16), acc[1]);
                    }
                }
            }
        }
    }

    /// The tile configuration loaded on this thread: all 8 tiles 16 rows of
    /// 64 bytes (0-3: the `32×32` block of C, 4-5: A, 6-7: B). Not `Send`:
    /// the configuration belongs to the thread that loaded it.
    struct Tiles(PhantomData<*const ()>);

    impl Tiles {
        fn load() -> Tiles {
            assert!(amx_available(), "AMX tiles used without permission");
            #[repr(C, align(64))]
            struct Config([u8; 64]);
            let mut cfg = Config([0; 64]);
            cfg.0[0] = 1; // palette 1
            for t in 0..8 {
                cfg.0[16 + 2 * t] = 64; // bytes per row
                cfg.0[48 + t] = 16; // rows
            }
            // SAFETY: AMX is present and permitted (asserted above); the
            // instruction reads the 64 bytes of `cfg`, which live to its end.
            unsafe { asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly)) };
            Tiles(PhantomData)
        }

        /// [`Kernel::block`] on the tiles.
        ///
        /// # Safety
        /// `a`, `b` and `c` hold what [`Kernel::block`] asserts.
        unsafe fn block(&self, a: &[u32], kl: usize, b: &[u32], (c, c_rs): (&mut [f32], usize), add: bool) {
            // SAFETY: the tile configuration is loaded on this thread (`self`
            // is not Send); the loop reads kl/32 tiles of 1 KiB from each A
            // panel (8·kl u32 each, two of them) and kl/32 rows of 2 KiB from
            // `b` (16·kl u32); C's 32 rows of 32 floats, `c_rs` apart, are read
            // and written: all inside the slices (the caller's promise).
            unsafe {
                asm!(
                    "test {add}, {add}",
                    "jz 3f",
                    "tileloadd tmm0, [{c} + {c_rs}*1]",
                    "tileloadd tmm1, [{c} + {c_rs}*1 + 64]",
                    "tileloadd tmm2, [{c2} + {c_rs}*1]",
                    "tileloadd tmm3, [{c2} + {c_rs}*1 + 64]",
                    "jmp 2f",
                    "3:",
                    "tilezero tmm0",
                    "tilezero tmm1",
                    "tilezero tmm2",
                    "tilezero tmm3",
                    "2:",
                    "tileloadd tmm4, [{a} + {a_rs}*1]",
                    "tileloadd tmm6, [{b} + {b_rs}*1]",
                    "tileloadd tmm7, [{b} + {b_rs}*1 + 64]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tileloadd tmm5, [{a2} + {a_rs}*1]",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    "add {a}, 1024",
                    "add {a2}, 1024",
                    "add {b}, 2048",
                    "dec {steps}",
                    "jnz 2b",
                    "tilestored [{c} + {c_rs}*1], tmm0",
                    "tilestored [{c} + {c_rs}*1 + 64], tmm1",
                    "tilestored [{c2} + {c_rs}*1], tmm2",
                    "tilestored [{c2} + {c_rs}*1 + 64], tmm3",
                    add = in(reg) add as usize,
                    a = inout(reg) a.as_ptr() => _,
                    a2 = inout(reg) a.as_ptr().add(8 * kl) => _,
                    b = inout(reg) b.as_ptr() => _,
                    steps = inout(reg) kl / 32 => _,
                    a_rs = in(reg) 64usize,
                    b_rs = in(reg) 128usize,
                    c = in(reg) c.as_mut_ptr(),
                    c2 = in(reg) c.as_mut_ptr().add(16 * c_rs),
                    c_rs = in(reg) 4 * c_rs,
                    options(nostack),
                );
            }
        }
    }

    impl Drop for Tiles {
        fn drop(&mut self) {
            // SAFETY: releases the configuration `load` set on this thread.
            unsafe { asm!("tilerelease", options(nostack, nomem)) };
        }
    }

    /// 16 pairs of bf16, the low half from `lo[i]` and the high from
    /// `hi[i]`, zero past either's end.
    fn pairs_across(lo: &[f32], hi: &[f32]) -> [u32; 16] {
        if lo.len() >= 16 && hi.len() >= 16 {
            // SAFETY: AVX512-BF16 is part of `available()`, which every caller
            // has checked; 16 floats are readable at each pointer.
            return unsafe { pairs_simd::<true>(lo.as_ptr(), hi.as_ptr()) };
        }
        pairs_across(&padded(lo), &padded(hi))
    }

    /// 16 pairs from 32 consecutive floats, `(src[2q], src[2q + 1])`, zero past its end.
    fn pairs_along(src: &[f32]) -> [u32; 16] {
        if src.len() >= 32 {
            // SAFETY: as in `pairs_across`, with 32 floats readable at `src`.
            return unsafe { pairs_simd::<false>(src.as_ptr(), src.as_ptr().add(16)) };
        }
        let (mut lo, mut hi) = ([0.0f32; 16], [0.0f32; 16]);
        lo[..src.len().min(16)].copy_from_slice(&src[..src.len().min(16)]);
        if src.len() > 16 {
            hi[..src.len() - 16].copy_from_slice(&src[16..]);
        }
        // SAFETY: as in `pairs_across`, with 16 floats in each array.
        unsafe { pairs_simd::<false>(lo.as_ptr(), hi.as_ptr()) }
    }

    /// `x` in 16 floats, zero past its end.
    fn padded(x: &[f32]) -> [f32; 16] {
        let mut p = [0.0f32; 16];
        let n = x.len().min(16);
        p[..n].copy_from_slice(&x[..n]);
        p
    }

    /// One `vcvtne2ps2bf16` of 16 + 16 floats (rounded to nearest even, as
    /// [`super::Bf16::from_f32`]): in that order as 16 pairs, or with
    /// `INTERLEAVE` as `(lo[i], hi[i])`.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn pairs_simd<const INTERLEAVE: bool>(lo: *const f32, hi: *const f32) -> [u32; 16] {
        use std::arch::x86_64::*;
        // SAFETY: the caller gives 16 readable floats at each pointer.
        let both = unsafe { _mm512_cvtne2ps_pbh(_mm512_loadu_ps(hi), _mm512_loadu_ps(lo)) };
        // SAFETY: 32 bf16 are 512 bits, as are 16 u32.
        let both: __m512i = unsafe { std::mem::transmute(both) };
        if !INTERLEAVE {
            // SAFETY: as above.
            return unsafe { std::mem::transmute::<__m512i, [u32; 16]>(both) };
        }
        // Lanes 0-15 hold lo, 16-31 hi: take lo0, hi0, lo1, hi1, ...
        let idx = _mm512_set_epi16(
            31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17,
            1, 16, 0,
        );
        // SAFETY: as above.
        unsafe { std::mem::transmute::<__m512i, [u32; 16]>(_mm512_permutexvar_epi16(idx, both)) }
    }

    /// Writes the transpose of the 16×16 `block` into rows of 16 at `dst[r * stride..]`.
    fn store_transposed(block: &[[u32; 16]; 16], dst: &mut [u32], stride: usize) {
        for r in 0..16 {
            let d = &mut dst[r * stride..][..16];
            for (q, d) in d.iter_mut().enumerate() {
                *d = block[q][r];
            }
        }
    }

    /// Rows `r0..r0 + rows` and `k`s `k0..k0 + kl` of `a` (logically `[m, k]`)
    /// into `buf` as panels of 16 rows, each `kl / 32` tiles of
    /// `[16 rows][16 pairs]`; what lies past `a` is zero.
    fn pack_a(
        buf: &mut [u32],
        a: &[f32],
        a_t: bool,
        m: usize,
        k: usize,
        (r0, rows): (usize, usize),
        (k0, kl): (usize, usize),
    ) {
        let kend = (k0 + kl).min(k);
        let panels = rows.div_ceil(16);
        if a_t {
            // `a` is [k, m]: rows kk and kk + 1 of it, read along, give pair q of
            // every row; each 16 rows' pairs go down one column of a tile.
            for q in 0..kl / 2 {
                let row = |kk: usize| if kk < kend { &a[kk * m + r0..][..rows] } else { &[][..] };
                let (lo, hi) = (row(k0 + 2 * q), row(k0 + 2 * q + 1));
                for p in 0..panels {
                    let part = 16 * p..(16 * p + 16).min(rows);
                    let v = pairs_across(lo.get(part.clone()).unwrap_or(&[]), hi.get(part).unwrap_or(&[]));
                    let tile = &mut buf[p * 8 * kl + q / 16 * 256..][..256];
                    for (r, v) in v.into_iter().enumerate() {
                        tile[r * 16 + q % 16] = v;
                    }
                }
            }
            return;
        }
        for (p, panel) in buf.chunks_mut(8 * kl).take(panels).enumerate() {
            let i0 = r0 + p * 16;
            let nr = 16.min(r0 + rows - i0);
            for (t, tile) in panel.chunks_mut(256).enumerate() {
                let kt = k0 + 32 * t; // the tile's first k
                for r in 0..16 {
                    let src = if r < nr && kt < kend {
                        &a[(i0 + r) * k..][kt..(kt + 32).min(kend)]
                    } else {
                        &[][..]
                    };
                    tile[r * 16..][..16].copy_from_slice(&pairs_along(src));
                }
            }
        }
    }

    /// `b` (logically `[k, n]`) into `packed` as panels of 32 columns, each
    /// `kp / 2` rows of 32 pairs; zero past `b`.
    fn pack_b(packed: &mut [u32], b: &[f32], b_t: bool, k: usize, n: usize, kp: usize) {
        packed.par_chunks_mut(16 * kp).enumerate().for_each(|(p, panel)| {
            for half in 0..2 {
                let j0 = p * 32 + half * 16;
                let cols = 16.min(n.saturating_sub(j0));
                for q0 in (0..kp / 2).step_by(16) {
                    let dst = &mut panel[q0 * 32 + half * 16..];
                    if b_t {
                        // `b` is [n, k]: column j's k's lie together.
                        let mut block = [[0u32; 16]; 16];
                        for (j, v) in block.iter_mut().enumerate().take(cols) {
                            let kt = (2 * q0).min(k);
                            *v = pairs_along(&b[(j0 + j) * k..][kt..(kt + 32).min(k)]);
                        }
                        store_transposed(&block, dst, 32);
                    } else {
                        for q in 0..16 {
                            let kk = 2 * (q0 + q);
                            let row = |kk: usize| {
                                if kk < k && cols > 0 {
                                    &b[kk * n + j0..][..cols]
                                } else {
                                    &[][..]
                                }
                            };
                            dst[q * 32..][..16].copy_from_slice(&pairs_across(row(kk), row(kk + 1)));
                        }
                    }
                }
            }
        });
    }

    /// Scratch that outlives a call: packed operands, kept per thread so that
    /// each product does not fault in fresh pages. Taken out while in use: a
    /// thread that steals work while it waits may start another product.
    fn with_buffer<R>(
        key: &'static std::thread::LocalKey<std::cell::Cell<Vec<u32>>>,
        len: usize,
        f: impl FnOnce(&mut [u32]) -> R,
    ) -> R {
        let mut buf = key.take();
        if buf.len() < len {
            buf.resize(len, 0);
        }
        let r = f(&mut buf[..len]);
        key.set(buf);
        r
    }

    thread_local! {
        static PACKED_B: std::cell::Cell<Vec<u32>> = const { std::cell::Cell::new(Vec::new()) };
        static PACKED_A: std::cell::Cell<Vec<u32>> = const { std::cell::Cell::new(Vec::new()) };
    }

    /// [`super::matmul_at`]'s bf16 product (on tiles with `amx`, else by
    /// `vdpbf16ps`): `b` packed once, then each task takes a band of `out`'s
    /// rows, packing `MC` rows of `a` at a time and sweeping `b`'s panels
    /// `NC` columns at a time, one `32×32` block per kernel call.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        amx: bool,
        out: &mut [f32],
        a: &[f32],
        a_t: bool,
        b: &[f32],
        b_t: bool,
        m: usize,
        k: usize,
        n: usize,
        accumulate: bool,
    ) {
        // The packing converts with AVX512-BF16 whichever kernel multiplies.
        assert!(available(), "bf16 kernels used on a CPU without AVX512-BF16");
        let kp = k.next_multiple_of(32);
        with_buffer(&PACKED_B, n.div_ceil(32) * 16 * kp, |packed_b| {
            pack_b(packed_b, b, b_t, k, n, kp);
            let packed_b = &*packed_b;
            let band = m.div_ceil(rayon::current_num_threads().max(1)).next_multiple_of(32);
            out.par_chunks_mut(band * n).enumerate().for_each(|(t, out)| {
                let (r_start, r_end) = (t * band, t * band + out.len() / n);
                with_buffer(&PACKED_A, MC * KC.min(kp) / 2, |a_buf| {
                    let kernel = Kernel::load(amx);
                    let mut c = [0.0f32; 32 * 32];
                    for k0 in (0..kp).step_by(KC) {
                        let kl = KC.min(kp - k0);
                        let add = accumulate || k0 > 0;
                        for r0 in (r_start..r_end).step_by(MC) {
                            let rows = MC.min(r_end - r0);
                            pack_a(a_buf, a, a_t, m, k, (r0, rows), (k0, kl));
                            for n0 in (0..n).step_by(NC) {
                                for i in (0..rows).step_by(32) {
                                    for j in (n0..(n0 + NC).min(n)).step_by(32) {
                                        let panel = &packed_b[j * kp / 2 + k0 * 16..];
                                        let (a, row) = (&a_buf[i * kl / 2..], r0 - r_start + i);
                                        if rows - i >= 32 && n - j >= 32 {
                                            // A whole block: the tiles work on `out` itself.
                                            kernel.block(a, kl, panel, (&mut out[row * n + j..], n), add);
                                            continue;
                                        }
                                        kernel.block(a, kl, panel, (&mut c[..], 32), false);
                                        let cols = 32.min(n - j);
                                        for r in 0..32.min(rows - i) {
                                            let o = &mut out[(row + r) * n + j..][..cols];
                                            let c = &c[r * 32..][..cols];
                                            if add {
                                                o.iter_mut().zip(c).for_each(|(o, c)| *o += c);
                                            } else {
                                                o.copy_from_slice(c);
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                })
            });
        })
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod packed {
    pub fn available() -> bool {
        false
    }

    pub fn amx_available() -> bool {
        false
    }

    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        _: bool,
        _: &mut [f32],
        _: &[f32],
        _: bool,
        _: &[f32],
        _: bool,
        _: usize,
        _: usize,
        _: usize,
        _: bool,
    ) {
        unreachable!("no bf16 kernels off x86_64")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Multiples of 1/8 in [-1, 1]: exact in bf16, and every sum of their
    /// products is exact in f32, whatever the order.
    fn exact(len: usize, seed: usize) -> Vec<f32> {
        (0..len).map(|i| ((i * 7 + seed) % 17) as f32 / 8.0 - 1.0).collect()
    }

    /// The f32 GEMM of `a` and `b` rounded to bf16 by hand.
    #[allow(clippy::too_many_arguments)]
    fn reference(out: &mut [f32], a: &[f32], a_t: bool, b: &[f32], b_t: bool, m: usize, k: usize, n: usize, acc: bool) {
        let round = |x: &[f32]| -> Vec<f32> { x.iter().map(|&v| Bf16::from_f32(v).to_f32()).collect() };
        matmul(out, &round(a), a_t, &round(b), b_t, m, k, n, acc);
    }

    /// The bf16 kernels this CPU runs, by their `amx` switch.
    fn kernels() -> Vec<bool> {
        [false, true]
            .into_iter()
            .filter(|&amx| {
                if amx {
                    packed::amx_available()
                } else {
                    packed::available()
                }
            })
            .collect()
    }

    #[test]
    fn every_layout_and_ragged_shape_matches_the_rounded_f32_product() {
        // Edges in every dimension, one k past a pass (KC) and odd k's.
        for (m, k, n) in [(1, 1, 1), (33, 47, 70), (130, 1100, 40), (64, 32, 32), (17, 3, 65)] {
            for (a_t, b_t) in [(false, false), (false, true), (true, false), (true, true)] {
                for acc in [false, true] {
                    // Inputs off the bf16 grid: both sides must round them alike.
                    let a: Vec<f32> = exact(m * k, 1).iter().map(|v| v * (1.0 + 1.0 / 512.0)).collect();
                    let b = exact(k * n, 5);
                    let got = exact(m * n, 3);
                    let mut want = got.clone();
                    reference(&mut want, &a, a_t, &b, b_t, m, k, n, acc);
                    for amx in kernels() {
                        let mut got = got.clone();
                        packed::matmul(amx, &mut got, &a, a_t, &b, b_t, m, k, n, acc);
                        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                            let tol = 1e-6 * k as f32 * 4.0;
                            assert!(
                                (g - w).abs() <= tol,
                                "amx={amx} {m}x{k}x{n} a_t={a_t} b_t={b_t} acc={acc} [{i}]: {g} vs {w}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn products_of_bf16_values_are_exact_sums() {
        // Exact inputs and small integer-like sums: any order gives the same f32.
        let (m, k, n) = (70, 96, 100);
        let (a, b) = (exact(m * k, 2), exact(k * n, 9));
        let (mut got, mut want) = (vec![0.0; m * n], vec![0.0; m * n]);
        matmul(&mut want, &a, false, &b, true, m, k, n, false);
        matmul_at(Precision::Bf16, &mut got, &a, false, &b, true, m, k, n, false);
        assert_eq!(got, want);
        for amx in kernels() {
            packed::matmul(amx, &mut got, &a, false, &b, true, m, k, n, false);
            assert_eq!(got, want, "amx={amx}");
        }
    }

    #[test]
    fn empty_sums_write_zero_or_leave_out_alone() {
        let mut out = vec![3.0; 6];
        matmul_at(Precision::Bf16, &mut out, &[], false, &[], false, 2, 0, 3, true);
        assert_eq!(out, vec![3.0; 6]);
        matmul_at(Precision::Bf16, &mut out, &[], false, &[], false, 2, 0, 3, false);
        assert_eq!(out, vec![0.0; 6]);
    }
}
