//! The CPU kernels behind the fused operations: plain `f32` slices in, `Vec<f32>` out.
//!
//! * The loops are written so that LLVM vectorises them with the baseline target's SIMD
//!   (fixed-width lane arrays, plain multiply-adds: `f32::mul_add` and `f32::round` are libm calls
//!   on baseline x86-64 and would stop vectorisation).
//! * Work is split with rayon over fixed-size pieces (rows, batch items). The pieces, and the order
//!   in which partial sums are added, never depend on the number of threads, so results are
//!   bit-identical from run to run and across thread counts.
//! * `exp` and `erf` are our own branch-free polynomial versions (so they vectorise): `exp` has a
//!   relative error of about 2 ulp, `erf` an absolute error below 5·10⁻⁷ (Abramowitz & Stegun
//!   7.1.26), far inside the parity tolerances.

use rayon::prelude::*;

/// SIMD lanes the lane-array reductions use (one AVX register of `f32`).
const LANES: usize = 8;

/// Rows per parallel task for the row-wise kernels (LayerNorm).
pub const ROW_BLOCK: usize = 32;

/// Elements per parallel task for the element-wise kernels (GELU).
pub const ELEM_BLOCK: usize = 16 * 1024;

/// Which build of the loop bodies the kernels run: the baseline (SSE2), the AVX2 twin (256-bit
/// vectors) or the AVX-512 twin (512-bit vectors). All three give bit-identical results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// The baseline x86-64 (SSE2) or non-x86 build.
    Baseline,
    /// `#[target_feature(enable = "avx2")]`.
    Avx2,
    /// `#[target_feature(enable = "avx2,avx512f")]`.
    Avx512,
}

/// The levels this CPU can run, lowest first.
pub fn simd_levels_supported() -> Vec<SimdLevel> {
    let mut v = vec![SimdLevel::Baseline];
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            v.push(SimdLevel::Avx2);
            if std::arch::is_x86_feature_detected!("avx512f") {
                v.push(SimdLevel::Avx512);
            }
        }
    }
    v
}

/// The level the kernels run at: the highest the CPU has, capped by `CAE_SIMD` (`baseline`,
/// `avx2`, `avx512`; for A/B runs). Read once.
pub fn simd_level() -> SimdLevel {
    static LEVEL: std::sync::OnceLock<SimdLevel> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        let best = *simd_levels_supported()
            .last()
            .expect("baseline is always there");
        let cap = match std::env::var("CAE_SIMD").as_deref().map(str::trim) {
            Ok("baseline") => SimdLevel::Baseline,
            Ok("avx2") => SimdLevel::Avx2,
            _ => SimdLevel::Avx512,
        };
        best.min(cap)
    })
}

/// Defines module `$twin` with `avx2` and `avx512`, the body `$name` compiled for AVX2 and for
/// AVX-512 (x86-64 only).
///
/// The loop bodies are `#[inline(always)]` functions, so they are compiled again inside each
/// `#[target_feature]` twin with wider vectors (a closure passed to a `#[target_feature]`
/// wrapper is not inlined into it and stays baseline code). The twins do the same operations in
/// the same order as the baseline (multiply-adds stay a multiply and an add; the reductions keep
/// their [`LANES`] partial sums), so all give bit-identical results: only the vector width
/// differs.
macro_rules! simd_twins {
    ($name:ident => $twin:ident ( $($arg:ident : $ty:ty),* ) $(-> $ret:ty)?) => {
        #[cfg(target_arch = "x86_64")]
        mod $twin {
            #[allow(unused_imports)]
            use super::*;
            #[target_feature(enable = "avx2")]
            #[allow(clippy::too_many_arguments)]
            pub(super) fn avx2($($arg: $ty),*) $(-> $ret)? {
                super::$name($($arg),*)
            }
            #[target_feature(enable = "avx2,avx512f")]
            #[allow(clippy::too_many_arguments)]
            pub(super) fn avx512($($arg: $ty),*) $(-> $ret)? {
                super::$name($($arg),*)
            }
        }
    };
}

/// Calls the build of a loop body that `$level` names (one of [`simd_levels_supported`]).
macro_rules! dispatch_at {
    ($level:expr, $name:ident, $twin:ident, ($($a:expr),*)) => {{
        let level: SimdLevel = $level;
        #[cfg(target_arch = "x86_64")]
        #[allow(unsafe_code)] // the one unsafe call: a `#[target_feature]` function, checked first
        let r = match level {
            // SAFETY: the level comes from `simd_levels_supported`, which checked the CPU.
            SimdLevel::Avx512 => unsafe { $twin::avx512($($a),*) },
            // SAFETY: as above.
            SimdLevel::Avx2 => unsafe { $twin::avx2($($a),*) },
            SimdLevel::Baseline => $name($($a),*),
        };
        #[cfg(not(target_arch = "x86_64"))]
        let r = {
            let _ = level;
            $name($($a),*)
        };
        r
    }};
}

/// Calls the build of a loop body that [`simd_level`] picks.
macro_rules! dispatch {
    ($name:ident, $twin:ident, ($($a:expr),*)) => {
        dispatch_at!(simd_level(), $name, $twin, ($($a),*))
    };
}

/// `a·b + c` as a multiply and an add. `f32::mul_add` is a libm call (software FMA) unless the
/// whole crate is compiled with FMA enabled, and a call in a loop stops it from vectorising.
trait Madd {
    fn madd(self, b: f32, c: f32) -> f32;
}

impl Madd for f32 {
    #[inline(always)]
    fn madd(self, b: f32, c: f32) -> f32 {
        self * b + c
    }
}

/// `Σ x` with eight independent partial sums (vectorisable).
#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let rem = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            acc[l] += c[l];
        }
    }
    let mut s = 0.0;
    for a in acc {
        s += a;
    }
    for &r in rem {
        s += r;
    }
    s
}

/// `Σ a·b` with eight independent partial sums (vectorisable).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] = x[l].madd(y[l], acc[l]);
        }
    }
    let mut s = 0.0;
    for a in acc {
        s += a;
    }
    for (x, y) in ra.iter().zip(rb) {
        s = x.madd(*y, s);
    }
    s
}

/// `eˣ`, branch-free (Cody–Waite reduction and a degree-6 polynomial, as in Cephes' `expf`).
/// Inputs are clamped to `[-87.3, 88.3]`.
#[inline(always)]
#[allow(clippy::excessive_precision)] // Cephes' coefficients as published
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.3);
    // Round to nearest by adding and subtracting 1.5·2²³ (|x·log₂e| < 2²²): `f32::round` is a
    // libm call on baseline x86-64, which would stop the loop from vectorising.
    let t = x * std::f32::consts::LOG2_E + 12_582_912.0;
    let n = t - 12_582_912.0;
    // The integer `n` from the bits of `t = 1.5·2²³ + n` (an integer add, which vectorises):
    // `n as i32` is a saturating cast, which LLVM emits as scalar code for every lane.
    let ni = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let r = n.madd(-0.693_359_4, x);
    let r = n.madd(2.121_944_4e-4, r);
    let z = r * r;
    let mut p = 1.987_569_1e-4f32;
    p = p.madd(r, 1.398_2e-3);
    p = p.madd(r, 8.333_452e-3);
    p = p.madd(r, 4.166_579_6e-2);
    p = p.madd(r, 1.666_666_5e-1);
    p = p.madd(r, 5.000_000_1e-1);
    let p = p.madd(z, r) + 1.0;
    let scale = f32::from_bits(((ni + 127) as u32) << 23);
    p * scale
}

/// `erf(x)`, branch-free (Abramowitz & Stegun 7.1.26: 1.5·10⁻⁷ in exact arithmetic, below
/// 5·10⁻⁷ in `f32`).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    erf_exp(x).0
}

/// `(erf(x), e^(−x²))`: the exponential [`erf`] computes on the way, which GELU's backward
/// needs too (`φ(x) ∝ e^(−x²/2)`, and its `erf` argument is `x/√2`).
#[inline(always)]
fn erf_exp(x: f32) -> (f32, f32) {
    let a = x.abs();
    let t = 1.0 / 0.327_591_1f32.madd(a, 1.0);
    let mut p = 1.061_405_4f32;
    p = p.madd(t, -1.453_152_1);
    p = p.madd(t, 1.421_413_8);
    p = p.madd(t, -0.284_496_74);
    p = p.madd(t, 0.254_829_6);
    let e = exp(-a * a);
    let y = 1.0 - p * t * e;
    (y.copysign(x), e)
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// `1 / √(2π)`.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// Exact-erf GELU: `y = x · Φ(x) = ½·x·(1 + erf(x/√2))`.
pub fn gelu_forward(x: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0f32; x.len()];
    y.par_chunks_mut(ELEM_BLOCK)
        .zip(x.par_chunks(ELEM_BLOCK))
        .for_each(|(y, x)| dispatch!(gelu_forward_block, gelu_forward_block_simd, (y, x)));
    y
}

#[inline(always)]
fn gelu_forward_block(y: &mut [f32], x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = 0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2));
    }
}
simd_twins!(gelu_forward_block => gelu_forward_block_simd(y: &mut [f32], x: &[f32]));

/// GELU's input gradient: `dx = dy · (Φ(x) + x·φ(x))`.
pub fn gelu_backward(x: &[f32], dy: &[f32]) -> Vec<f32> {
    let mut dx = vec![0.0f32; x.len()];
    dx.par_chunks_mut(ELEM_BLOCK)
        .zip(x.par_chunks(ELEM_BLOCK).zip(dy.par_chunks(ELEM_BLOCK)))
        .for_each(|(dx, (x, dy))| {
            dispatch!(gelu_backward_block, gelu_backward_block_simd, (dx, x, dy))
        });
    dx
}

#[inline(always)]
fn gelu_backward_block(dx: &mut [f32], x: &[f32], dy: &[f32]) {
    for ((dx, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
        // One exponential for both: erf(x/√2) computes e^(−x²/2), which is √(2π)·φ(x).
        let (erf, e) = erf_exp(x * FRAC_1_SQRT_2);
        let cdf = 0.5 * (1.0 + erf);
        let pdf = FRAC_1_SQRT_2PI * e;
        *dx = g * x.madd(pdf, cdf);
    }
}
simd_twins!(gelu_backward_block => gelu_backward_block_simd(dx: &mut [f32], x: &[f32], dy: &[f32]));

/// What the LayerNorm forward keeps for the backward pass: per-row mean and `1/σ`.
#[derive(Debug, Clone)]
pub struct LayerNormStats {
    /// Row means.
    pub mean: Vec<f32>,
    /// Row `1 / √(var + ε)`.
    pub rstd: Vec<f32>,
}

/// LayerNorm over the last dimension (`c` wide) of `x`: `(x − μ)/√(σ² + ε) · γ + β`, with the
/// biased variance (two passes, as PyTorch does).
pub fn layer_norm_forward(
    x: &[f32],
    c: usize,
    gamma: &[f32],
    beta: Option<&[f32]>,
    eps: f32,
) -> (Vec<f32>, LayerNormStats) {
    let rows = x.len() / c;
    let mut y = vec![0.0f32; x.len()];
    let mut mean = vec![0.0f32; rows];
    let mut rstd = vec![0.0f32; rows];
    y.par_chunks_mut(ROW_BLOCK * c)
        .zip(x.par_chunks(ROW_BLOCK * c))
        .zip(
            mean.par_chunks_mut(ROW_BLOCK)
                .zip(rstd.par_chunks_mut(ROW_BLOCK)),
        )
        .for_each(|((y, x), (mean, rstd))| {
            dispatch!(
                layer_norm_forward_block,
                layer_norm_forward_block_simd,
                (y, x, mean, rstd, c, gamma, beta, eps)
            )
        });
    (y, LayerNormStats { mean, rstd })
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn layer_norm_forward_block(
    y: &mut [f32],
    x: &[f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    c: usize,
    gamma: &[f32],
    beta: Option<&[f32]>,
    eps: f32,
) {
    let inv_c = 1.0 / c as f32;
    for (r, (y, x)) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)).enumerate() {
        let mu = sum(x) * inv_c;
        let mut acc = [0.0f32; LANES];
        let chunks = x.chunks_exact(LANES);
        let rem = chunks.remainder();
        for ch in chunks {
            for l in 0..LANES {
                let d = ch[l] - mu;
                acc[l] = d.madd(d, acc[l]);
            }
        }
        let mut var = 0.0;
        for a in acc {
            var += a;
        }
        for &v in rem {
            let d = v - mu;
            var = d.madd(d, var);
        }
        let rs = 1.0 / (var * inv_c + eps).sqrt();
        mean[r] = mu;
        rstd[r] = rs;
        match beta {
            Some(beta) => {
                for (((y, &x), &g), &b) in y.iter_mut().zip(x).zip(gamma).zip(beta) {
                    *y = ((x - mu) * rs).madd(g, b);
                }
            }
            None => {
                for ((y, &x), &g) in y.iter_mut().zip(x).zip(gamma) {
                    *y = (x - mu) * rs * g;
                }
            }
        }
    }
}
simd_twins!(layer_norm_forward_block => layer_norm_forward_block_simd(
    y: &mut [f32], x: &[f32], mean: &mut [f32], rstd: &mut [f32], c: usize, gamma: &[f32],
    beta: Option<&[f32]>, eps: f32
));

/// LayerNorm gradients: `(dx, dγ, dβ)` from the output gradient `dy`.
///
/// With `x̂ = (x − μ)·r` and `g = dy·γ`: `dx = r · (g − mean(g) − x̂ · mean(g·x̂))`,
/// `dγ = Σ_rows dy·x̂`, `dβ = Σ_rows dy`. The row sums are taken per block of [`ROW_BLOCK`] rows,
/// then the blocks are added in order.
pub fn layer_norm_backward(
    x: &[f32],
    dy: &[f32],
    c: usize,
    gamma: &[f32],
    stats: &LayerNormStats,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut dx = vec![0.0f32; x.len()];
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(ROW_BLOCK * c)
        .zip(x.par_chunks(ROW_BLOCK * c))
        .zip(dy.par_chunks(ROW_BLOCK * c))
        .zip(
            stats
                .mean
                .par_chunks(ROW_BLOCK)
                .zip(stats.rstd.par_chunks(ROW_BLOCK)),
        )
        .map(|(((dx, x), dy), (mean, rstd))| {
            dispatch!(
                layer_norm_backward_block,
                layer_norm_backward_block_simd,
                (dx, x, dy, mean, rstd, c, gamma)
            )
        })
        .collect();
    let mut dgamma = vec![0.0f32; c];
    let mut dbeta = vec![0.0f32; c];
    for (dg, db) in &partials {
        for i in 0..c {
            dgamma[i] += dg[i];
            dbeta[i] += db[i];
        }
    }
    (dx, dgamma, dbeta)
}

/// One block of rows of [`layer_norm_backward`]: `dx`, and the block's partial `(dγ, dβ)`.
#[inline(always)]
fn layer_norm_backward_block(
    dx: &mut [f32],
    x: &[f32],
    dy: &[f32],
    mean: &[f32],
    rstd: &[f32],
    c: usize,
    gamma: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let inv_c = 1.0 / c as f32;
    let mut dg = vec![0.0f32; c];
    let mut db = vec![0.0f32; c];
    let mut xhat = vec![0.0f32; c];
    let mut g = vec![0.0f32; c];
    for (r, ((dx, x), dy)) in dx
        .chunks_exact_mut(c)
        .zip(x.chunks_exact(c))
        .zip(dy.chunks_exact(c))
        .enumerate()
    {
        let (mu, rs) = (mean[r], rstd[r]);
        for i in 0..c {
            xhat[i] = (x[i] - mu) * rs;
            g[i] = dy[i] * gamma[i];
            dg[i] = dy[i].madd(xhat[i], dg[i]);
            db[i] += dy[i];
        }
        let mean_g = sum(&g) * inv_c;
        let mean_gx = dot(&g, &xhat) * inv_c;
        for i in 0..c {
            dx[i] = rs * (g[i] - mean_g - xhat[i] * mean_gx);
        }
    }
    (dg, db)
}
simd_twins!(layer_norm_backward_block => layer_norm_backward_block_simd(
    dx: &mut [f32], x: &[f32], dy: &[f32], mean: &[f32], rstd: &[f32], c: usize, gamma: &[f32]
) -> (Vec<f32>, Vec<f32>));

/// Where a `[B, N, ·]` operand of the attention kernels lives in its buffer: element
/// `(b, n, col)` is at `b·batch_stride + n·row_stride + offset + col`. Heads are contiguous
/// column blocks of `head_dim` (the `[B, N, H·hd]` layout of a projection's output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strided {
    /// Elements between batch items.
    pub batch_stride: usize,
    /// Elements between tokens.
    pub row_stride: usize,
    /// Column of the operand's first element.
    pub offset: usize,
}

impl Strided {
    /// A contiguous `[B, n, width]` tensor.
    pub fn dense(n: usize, width: usize) -> Self {
        Self {
            batch_stride: n * width,
            row_stride: width,
            offset: 0,
        }
    }
}

/// Sizes of one attention call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionDims {
    /// Batch `B`.
    pub batch: usize,
    /// Query tokens.
    pub nq: usize,
    /// Key / value tokens.
    pub nk: usize,
    /// Heads `H`.
    pub heads: usize,
    /// Width of a head.
    pub head_dim: usize,
    /// Score scale (`head_dim^-½`), applied to the queries.
    pub scale: f32,
}

impl AttentionDims {
    fn width(&self) -> usize {
        self.heads * self.head_dim
    }

    /// The (batch item, head) pairs both passes split over the threads, and how many of them
    /// one parallel run takes: one contiguous run per thread, so a batch of one (a detection
    /// group) keeps every thread busy. Each pair is computed on its own, so the split does not
    /// change the results.
    fn pair_runs(&self) -> (usize, usize) {
        let tasks = self.batch * self.heads;
        let per = tasks.div_ceil(rayon::current_num_threads().max(1)).max(1);
        (tasks, per)
    }
}

/// Copies head `h` of batch item `b` of an operand into a dense `[n, hd]` buffer, times `scale`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn load_head(
    dst: &mut [f32],
    src: &[f32],
    at: Strided,
    b: usize,
    h: usize,
    n: usize,
    hd: usize,
    scale: f32,
) {
    let base = b * at.batch_stride + at.offset + h * hd;
    for (i, row) in dst.chunks_exact_mut(hd).take(n).enumerate() {
        let s = &src[base + i * at.row_stride..][..hd];
        for (d, &v) in row.iter_mut().zip(s) {
            *d = v * scale;
        }
    }
}

/// Transposes a dense `[n, hd]` buffer into `[hd, n]`.
#[inline(always)]
fn transpose(dst: &mut [f32], src: &[f32], n: usize, hd: usize) {
    for i in 0..n {
        for d in 0..hd {
            dst[d * n + i] = src[i * hd + d];
        }
    }
}

/// A matrix operand of [`small_gemm`]: element `(i, p)` at `data[i·row + p·col]`.
///
/// Not [`super::matmul::Mat`]: that view carries its shape, checked before the unsafe `gemm`
/// call; this one is only the strides the per-head loops need (the shared view was slower in an
/// alternating run of the attention bench, not logged).
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    row: usize,
    col: usize,
}

impl<'a> Mat<'a> {
    /// Row-major with `ld` elements between rows.
    fn rows(data: &'a [f32], ld: usize) -> Self {
        Mat {
            data,
            row: ld,
            col: 1,
        }
    }

    /// The transpose of a row-major matrix with `ld` elements between rows.
    fn transposed(data: &'a [f32], ld: usize) -> Self {
        Mat {
            data,
            row: 1,
            col: ld,
        }
    }

    #[inline(always)]
    fn at(&self, i: usize, p: usize) -> f32 {
        self.data[i * self.row + p * self.col]
    }
}

/// Rows and columns of [`small_gemm`]'s register tile.
const MR: usize = 4;
const NR: usize = 16;

/// `C = A·B` for the small per-head products of attention: `A` is `m × k` (any strides), `B`
/// row-major `k × n` (`ldb` between rows), `C` row-major `m × n` (`ldc` between rows),
/// overwritten. Full `4 × 16` tiles keep their sums in registers, with the tile's four rows of
/// `A` packed once per row block; edge rows and columns take the same sums element by element.
/// Every `C` element is the sum over `p` in increasing order on either path.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn small_gemm(
    m: usize,
    n: usize,
    k: usize,
    a: Mat,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    packed: &mut Vec<f32>,
) {
    let (mt, nt) = (m - m % MR, n - n % NR);
    packed.resize(k * MR, 0.0);
    for i0 in (0..mt).step_by(MR) {
        for (p, ap) in packed.chunks_exact_mut(MR).enumerate() {
            for (r, v) in ap.iter_mut().enumerate() {
                *v = a.at(i0 + r, p);
            }
        }
        for j0 in (0..nt).step_by(NR) {
            let mut acc = [[0.0f32; NR]; MR];
            for (p, ap) in packed.chunks_exact(MR).enumerate() {
                let brow: &[f32; NR] = b[p * ldb + j0..][..NR].try_into().expect("NR wide");
                for r in 0..MR {
                    let av = ap[r];
                    for l in 0..NR {
                        acc[r][l] = av.madd(brow[l], acc[r][l]);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                c[(i0 + r) * ldc + j0..][..NR].copy_from_slice(acc);
            }
        }
    }
    let edge = |i: usize, j: usize| {
        let mut s = 0.0f32;
        for p in 0..k {
            s = a.at(i, p).madd(b[p * ldb + j], s);
        }
        s
    };
    for i in 0..m {
        let cols = if i < mt { nt..n } else { 0..n };
        for j in cols {
            c[i * ldc + j] = edge(i, j);
        }
    }
}

/// `softmax(q·scale @ kᵀ) @ v` per batch item and head.
///
/// Returns the output, dense `[B, Nq, H·hd]`, and, when `save`, the attention probabilities
/// `[B, H, Nq, Nk]` for the backward pass (without, [`attention_backward`] recomputes each
/// head's probabilities with the same routine, bit for bit: `B·H·Nq·Nk` floats are 17 GiB for
/// a ViT-B at 4,000 tokens, batch 2).
pub fn attention_forward(
    q: (&[f32], Strided),
    k: (&[f32], Strided),
    v: (&[f32], Strided),
    dims: AttentionDims,
    save: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let AttentionDims {
        batch,
        nq,
        nk,
        heads,
        head_dim: hd,
        ..
    } = dims;
    let width = dims.width();
    // Each head's output goes to its own dense block first, then into its columns of the output.
    let (tasks, per) = dims.pair_runs();
    let mut heads_out = vec![0.0f32; tasks * nq * hd];
    // Saved: every head's probabilities; not saved: one head's scratch per run.
    let mut probs = vec![0.0f32; if save { tasks * nq * nk } else { 0 }];
    let runs = tasks.div_ceil(per);
    let mut probs_runs: Vec<&mut [f32]> = if save {
        probs.chunks_mut(per * nq * nk).collect()
    } else {
        (0..runs).map(|_| &mut [][..]).collect()
    };
    heads_out
        .par_chunks_mut(per * nq * hd)
        .zip(probs_runs.par_iter_mut())
        .enumerate()
        .for_each(|(r, (out, probs))| {
            let mut scratch = Vec::new();
            if !save {
                scratch = vec![0.0f32; nq * nk];
            }
            for (j, out_h) in out.chunks_exact_mut(nq * hd).enumerate() {
                let t = r * per + j;
                let p_h: &mut [f32] = if save {
                    &mut probs[j * nq * nk..][..nq * nk]
                } else {
                    &mut scratch
                };
                dispatch!(
                    attention_forward_head,
                    attention_forward_head_simd,
                    (t / heads, t % heads, out_h, p_h, q, k, v, dims)
                )
            }
        });
    let mut out = vec![0.0f32; batch * nq * width];
    out.par_chunks_mut(nq * width)
        .enumerate()
        .for_each(|(b, out)| {
            for h in 0..heads {
                let src = &heads_out[(b * heads + h) * nq * hd..][..nq * hd];
                for (row, s) in out.chunks_exact_mut(width).zip(src.chunks_exact(hd)) {
                    row[h * hd..][..hd].copy_from_slice(s);
                }
            }
        });
    (out, save.then_some(probs))
}

/// The probabilities `softmax(q_h·k_hᵀ)` of one head (`q_h` already scaled, `kt = k_hᵀ`
/// `[hd, nk]`) into `p_h` `[nq, nk]`: the one routine both passes use, so a recomputation is
/// bit-identical to the forward's.
#[inline(always)]
fn head_probs(qh: &[f32], kt: &[f32], p_h: &mut [f32], dims: AttentionDims, packed: &mut Vec<f32>) {
    let (nq, nk, hd) = (dims.nq, dims.nk, dims.head_dim);
    small_gemm(nq, nk, hd, Mat::rows(qh, hd), kt, nk, p_h, nk, packed);
    for s in p_h.chunks_exact_mut(nk) {
        let mut max = f32::NEG_INFINITY;
        for &x in s.iter() {
            max = max.max(x);
        }
        for x in s.iter_mut() {
            *x = exp(*x - max);
        }
        let inv = 1.0 / sum(s);
        for x in s.iter_mut() {
            *x *= inv;
        }
    }
}

/// Head `h` of batch item `b` of the three attention operands, dense `[n, hd]` each, the queries
/// times the score scale: what both passes start every head from.
struct HeadOperands {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
}

impl HeadOperands {
    fn new(dims: AttentionDims) -> Self {
        let hd = dims.head_dim;
        Self {
            q: vec![0.0; dims.nq * hd],
            k: vec![0.0; dims.nk * hd],
            v: vec![0.0; dims.nk * hd],
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn load(
        &mut self,
        q: (&[f32], Strided),
        k: (&[f32], Strided),
        v: (&[f32], Strided),
        b: usize,
        h: usize,
        dims: AttentionDims,
    ) -> (&[f32], &[f32], &[f32]) {
        let (nq, nk, hd) = (dims.nq, dims.nk, dims.head_dim);
        load_head(&mut self.q, q.0, q.1, b, h, nq, hd, dims.scale);
        load_head(&mut self.k, k.0, k.1, b, h, nk, hd, 1.0);
        load_head(&mut self.v, v.0, v.1, b, h, nk, hd, 1.0);
        (&self.q, &self.k, &self.v)
    }
}

/// Head `h` of batch item `b` of [`attention_forward`]: its output `[Nq, hd]` into `out_h`, its
/// probabilities `[Nq, Nk]` into `p_h`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attention_forward_head(
    b: usize,
    h: usize,
    out_h: &mut [f32],
    p_h: &mut [f32],
    q: (&[f32], Strided),
    k: (&[f32], Strided),
    v: (&[f32], Strided),
    dims: AttentionDims,
) {
    let AttentionDims {
        nq,
        nk,
        head_dim: hd,
        ..
    } = dims;
    let mut ops = HeadOperands::new(dims);
    let mut kt = vec![0.0f32; hd * nk];
    let mut packed = Vec::new();
    let (qh, kh, vh) = ops.load(q, k, v, b, h, dims);
    transpose(&mut kt, kh, nk, hd);
    // P = softmax((scale·q)·kᵀ) row by row.
    head_probs(qh, &kt, p_h, dims, &mut packed);
    // O_h = P·v.
    small_gemm(
        nq,
        hd,
        nk,
        Mat::rows(p_h, nk),
        vh,
        hd,
        out_h,
        hd,
        &mut packed,
    );
}
simd_twins!(attention_forward_head => attention_forward_head_simd(
    b: usize, h: usize, out_h: &mut [f32], p_h: &mut [f32], q: (&[f32], Strided),
    k: (&[f32], Strided), v: (&[f32], Strided), dims: AttentionDims
));

/// Where the three input gradients of [`attention_backward`] go inside one batch item's chunk of
/// the gradient buffer (`chunk` elements per batch item); `batch_stride` is unused.
#[derive(Debug, Clone, Copy)]
pub struct GradLayout {
    /// Elements per batch item.
    pub chunk: usize,
    /// Query gradient.
    pub dq: Strided,
    /// Key gradient.
    pub dk: Strided,
    /// Value gradient.
    pub dv: Strided,
}

/// The gradients of [`attention_forward`] with respect to `q`, `k` and `v`, written into one
/// buffer laid out as `layout` says (so a fused `qkv` projection gets one `[B, N, 3D]` gradient).
///
/// With `P` the probabilities and `dO` the output gradient, per batch item and head:
/// `dP = dO·vᵀ`, `dS = P ⊙ (dP − rowsum(P ⊙ dP))`, `dq = scale·dS·k`, `dk = dS ᵀ·(scale·q)`,
/// `dv = Pᵀ·dO`. `probs` is what [`attention_forward`] saved, or `None` to recompute `P` head by
/// head (the same values, bit for bit).
pub fn attention_backward(
    dout: &[f32],
    q: (&[f32], Strided),
    k: (&[f32], Strided),
    v: (&[f32], Strided),
    probs: Option<&[f32]>,
    dims: AttentionDims,
    layout: GradLayout,
) -> Vec<f32> {
    let AttentionDims {
        batch,
        nq,
        nk,
        heads,
        head_dim: hd,
        ..
    } = dims;
    // Per (batch item, head) pair, as in the forward: `[dq (scaled); dk; dv]` of each head into
    // a block of its own, then into the layout.
    let (tasks, per) = dims.pair_runs();
    let task_len = (nq + 2 * nk) * hd;
    let mut per_head = vec![0.0f32; tasks * task_len];
    per_head
        .par_chunks_mut(per * task_len)
        .enumerate()
        .for_each(|(r, run)| {
            for (j, th) in run.chunks_exact_mut(task_len).enumerate() {
                let t = r * per + j;
                dispatch!(
                    attention_backward_head,
                    attention_backward_head_simd,
                    (t / heads, t % heads, th, dout, q, k, v, probs, dims)
                )
            }
        });
    let mut grad = vec![0.0f32; batch * layout.chunk];
    grad.par_chunks_mut(layout.chunk)
        .enumerate()
        .for_each(|(b, g)| {
            for h in 0..heads {
                let th = &per_head[(b * heads + h) * task_len..][..task_len];
                let (dq, rest) = th.split_at(nq * hd);
                let (dk, dv) = rest.split_at(nk * hd);
                for (i, src) in dq.chunks_exact(hd).enumerate() {
                    g[layout.dq.offset + i * layout.dq.row_stride + h * hd..][..hd]
                        .copy_from_slice(src);
                }
                for (j, (sk, sv)) in dk.chunks_exact(hd).zip(dv.chunks_exact(hd)).enumerate() {
                    g[layout.dk.offset + j * layout.dk.row_stride + h * hd..][..hd]
                        .copy_from_slice(sk);
                    g[layout.dv.offset + j * layout.dv.row_stride + h * hd..][..hd]
                        .copy_from_slice(sv);
                }
            }
        });
    grad
}

/// Head `h` of batch item `b` of [`attention_backward`]: `[dq; dk; dv]` (`dq` already times the
/// scale), dense `[Nq + 2·Nk, hd]`, into `out`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attention_backward_head(
    b: usize,
    h: usize,
    out: &mut [f32],
    dout: &[f32],
    q: (&[f32], Strided),
    k: (&[f32], Strided),
    v: (&[f32], Strided),
    probs: Option<&[f32]>,
    dims: AttentionDims,
) {
    let AttentionDims {
        nq,
        nk,
        heads,
        head_dim: hd,
        scale,
        ..
    } = dims;
    let width = dims.width();
    let mut ops = HeadOperands::new(dims);
    let mut vt = vec![0.0f32; hd * nk];
    let mut doh = vec![0.0f32; nq * hd];
    let mut ds = vec![0.0f32; nq * nk];
    let mut packed = Vec::new();
    let (dqh, rest) = out.split_at_mut(nq * hd);
    let (dkh, dvh) = rest.split_at_mut(nk * hd);
    let recomputed: Vec<f32>;
    let (qh, kh, vh) = ops.load(q, k, v, b, h, dims);
    load_head(&mut doh, dout, Strided::dense(nq, width), b, h, nq, hd, 1.0);
    transpose(&mut vt, vh, nk, hd);
    let p_h: &[f32] = match probs {
        Some(p) => &p[(b * heads + h) * nq * nk..][..nq * nk],
        None => {
            let mut kt = vec![0.0f32; hd * nk];
            let mut p = vec![0.0f32; nq * nk];
            transpose(&mut kt, kh, nk, hd);
            head_probs(qh, &kt, &mut p, dims, &mut packed);
            recomputed = p;
            &recomputed
        }
    };
    // dP = dO·vᵀ, then dS = P ⊙ (dP − rowsum(P ⊙ dP)) row by row in place.
    small_gemm(
        nq,
        nk,
        hd,
        Mat::rows(&doh, hd),
        &vt,
        nk,
        &mut ds,
        nk,
        &mut packed,
    );
    for (s, p) in ds.chunks_exact_mut(nk).zip(p_h.chunks_exact(nk)) {
        let di = dot(p, s);
        for (s, &p) in s.iter_mut().zip(p) {
            *s = p * (*s - di);
        }
    }
    // dq = scale·dS·k, dk = dSᵀ·(scale·q), dv = Pᵀ·dO.
    small_gemm(nq, hd, nk, Mat::rows(&ds, nk), kh, hd, dqh, hd, &mut packed);
    small_gemm(
        nk,
        hd,
        nq,
        Mat::transposed(&ds, nk),
        qh,
        hd,
        dkh,
        hd,
        &mut packed,
    );
    small_gemm(
        nk,
        hd,
        nq,
        Mat::transposed(p_h, nk),
        &doh,
        hd,
        dvh,
        hd,
        &mut packed,
    );
    for x in dqh.iter_mut() {
        *x *= scale;
    }
}
simd_twins!(attention_backward_head => attention_backward_head_simd(
    b: usize, h: usize, out: &mut [f32], dout: &[f32], q: (&[f32], Strided),
    k: (&[f32], Strided), v: (&[f32], Strided), probs: Option<&[f32]>, dims: AttentionDims
));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_match_the_standard_library() {
        let mut worst_exp = 0.0f64;
        let mut worst_erf = 0.0f64;
        for i in -20_000..=20_000 {
            let x = i as f32 * 1e-3;
            let e = exp(x * 4.0) as f64;
            let want = ((x * 4.0) as f64).exp();
            worst_exp = worst_exp.max(((e - want) / want).abs());
            let want_erf = libm_erf(x as f64);
            worst_erf = worst_erf.max((erf(x) as f64 - want_erf).abs());
        }
        assert!(worst_exp < 5e-7, "exp relative error {worst_exp}");
        assert!(worst_erf < 5e-7, "erf absolute error {worst_erf}");
        assert!(exp(-200.0).max(0.0) < 1e-37);
        assert!(exp(200.0).is_finite());
    }

    /// Every element of `small_gemm`, in a full tile or at an edge, is the in-order
    /// sum `Σ_p A[i][p]·B[p][j]` from zero, bit for bit.
    #[test]
    fn small_gemm_is_the_in_order_sum_everywhere() {
        let val = |i: usize| ((i * 2654435761) % 997) as f32 / 499.0 - 1.0;
        let mut scratch = Vec::new();
        for (m, n, k) in [(33, 33, 32), (4, 16, 8), (3, 5, 7), (65, 17, 33), (1, 1, 1)] {
            let a_rm: Vec<f32> = (0..m * k).map(val).collect();
            let a_cm: Vec<f32> = (0..k * m).map(|i| val(i + 7)).collect();
            let b: Vec<f32> = (0..k * n).map(|i| val(i + 3)).collect();
            for a in [Mat::rows(&a_rm, k), Mat::transposed(&a_cm, m)] {
                let ldc = n + 2;
                let mut c = vec![f32::NAN; m * ldc];
                small_gemm(m, n, k, a, &b, n, &mut c, ldc, &mut scratch);
                for i in 0..m {
                    for j in 0..n {
                        let want = (0..k).fold(0.0f32, |s, p| a.at(i, p) * b[p * n + j] + s);
                        assert_eq!(
                            c[i * ldc + j].to_bits(),
                            want.to_bits(),
                            "{m}×{n}×{k} ({i}, {j})"
                        );
                    }
                    assert!(c[i * ldc + n].is_nan(), "wrote past the row");
                }
            }
        }
    }

    /// The AVX2 and AVX-512 twins give bit-identical results to the baseline bodies (same
    /// operations in the same order, only wider vectors), so results do not depend on the CPU.
    #[test]
    fn simd_twins_equal_the_baseline_bit_for_bit() {
        let levels = simd_levels_supported();
        if levels.len() == 1 {
            eprintln!("no AVX2 on this CPU: nothing to compare");
            return;
        }
        eprintln!("comparing {levels:?}");
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut rand = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 40) as f32 / (1u64 << 23) as f32 * 6.0 - 3.0
                })
                .collect()
        };
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        // GELU, both directions, on a length that is not a multiple of the lanes.
        let (x, dy) = (rand(1037), rand(1037));
        let mut a = vec![0.0; 1037];
        gelu_forward_block(&mut a, &x);
        let mut da = vec![0.0; 1037];
        gelu_backward_block(&mut da, &x, &dy);
        // LayerNorm, 5 rows of 37.
        let (c, rows) = (37, 5);
        let (lx, ldy, gamma, beta) = (rand(c * rows), rand(c * rows), rand(c), rand(c));
        let mut y1 = vec![0.0; c * rows];
        let (mut m1, mut r1) = (vec![0.0; rows], vec![0.0; rows]);
        layer_norm_forward_block(&mut y1, &lx, &mut m1, &mut r1, c, &gamma, Some(&beta), 1e-6);
        let mut d1 = vec![0.0; c * rows];
        let p1 = layer_norm_backward_block(&mut d1, &lx, &ldy, &m1, &r1, c, &gamma);
        // Attention, one batch item: 2 heads of 16, 21 queries, 19 keys (full
        // 4 × 16 tiles of the small products and their edges).
        let dims = AttentionDims {
            batch: 1,
            nq: 21,
            nk: 19,
            heads: 2,
            head_dim: 16,
            scale: 16f32.powf(-0.5),
        };
        let (q, k, v) = (rand(21 * 32), rand(19 * 32), rand(19 * 32));
        let (qs, ks) = (Strided::dense(21, 32), Strided::dense(19, 32));
        let dout = rand(21 * 32);
        let task = (21 + 2 * 19) * 16;
        let mut attn = Vec::new();
        for h in 0..2 {
            let (mut o1, mut pr1) = (vec![0.0; 21 * 16], vec![0.0; 21 * 19]);
            attention_forward_head(0, h, &mut o1, &mut pr1, (&q, qs), (&k, ks), (&v, ks), dims);
            // The saved probabilities of both heads, as the backward reads them.
            let mut saved = vec![0.0; 2 * 21 * 19];
            saved[h * 21 * 19..][..21 * 19].copy_from_slice(&pr1);
            let mut g1 = vec![0.0; task];
            attention_backward_head(
                0,
                h,
                &mut g1,
                &dout,
                (&q, qs),
                (&k, ks),
                (&v, ks),
                Some(&saved),
                dims,
            );
            attn.push((o1, pr1, g1));
        }

        for &level in &levels[1..] {
            let mut b = vec![0.0; 1037];
            dispatch_at!(
                level,
                gelu_forward_block,
                gelu_forward_block_simd,
                (&mut b, &x)
            );
            assert_eq!(bits(&a), bits(&b), "gelu forward, {level:?}");
            dispatch_at!(
                level,
                gelu_backward_block,
                gelu_backward_block_simd,
                (&mut b, &x, &dy)
            );
            assert_eq!(bits(&da), bits(&b), "gelu backward, {level:?}");
            let mut y2 = vec![0.0; c * rows];
            let (mut m2, mut r2) = (vec![0.0; rows], vec![0.0; rows]);
            dispatch_at!(
                level,
                layer_norm_forward_block,
                layer_norm_forward_block_simd,
                (&mut y2, &lx, &mut m2, &mut r2, c, &gamma, Some(&beta), 1e-6)
            );
            assert_eq!(
                (bits(&y1), bits(&m1), bits(&r1)),
                (bits(&y2), bits(&m2), bits(&r2)),
                "ln forward, {level:?}"
            );
            let mut d2 = vec![0.0; c * rows];
            let p2 = dispatch_at!(
                level,
                layer_norm_backward_block,
                layer_norm_backward_block_simd,
                (&mut d2, &lx, &ldy, &m1, &r1, c, &gamma)
            );
            assert_eq!(bits(&d1), bits(&d2), "ln backward dx, {level:?}");
            assert_eq!(
                (bits(&p1.0), bits(&p1.1)),
                (bits(&p2.0), bits(&p2.1)),
                "ln backward dγ, dβ, {level:?}"
            );
            for (h, (o1, pr1, g1)) in attn.iter().enumerate() {
                let (mut o2, mut pr2) = (vec![0.0; 21 * 16], vec![0.0; 21 * 19]);
                dispatch_at!(
                    level,
                    attention_forward_head,
                    attention_forward_head_simd,
                    (0, h, &mut o2, &mut pr2, (&q, qs), (&k, ks), (&v, ks), dims)
                );
                assert_eq!(
                    (bits(o1), bits(pr1)),
                    (bits(&o2), bits(&pr2)),
                    "attention forward, head {h}, {level:?}"
                );
                let mut g2 = vec![0.0; task];
                dispatch_at!(
                    level,
                    attention_backward_head,
                    attention_backward_head_simd,
                    (
                        0,
                        h,
                        &mut g2,
                        &dout,
                        (&q, qs),
                        (&k, ks),
                        (&v, ks),
                        None,
                        dims
                    )
                );
                assert_eq!(
                    bits(g1),
                    bits(&g2),
                    "attention backward, head {h}, {level:?} (recomputing the probabilities)"
                );
            }
        }
    }

    /// Attention without saved probabilities (the backward recomputes them head by head) gives
    /// the same output and the same gradients bit for bit, in packed and separate layouts.
    #[test]
    fn attention_recomputing_the_probabilities_is_bit_identical() {
        let val = |i: usize, salt: usize| (((i + salt) * 2654435761) % 1009) as f32 / 250.0 - 2.0;
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let dims = AttentionDims {
            batch: 3,
            nq: 21,
            nk: 19,
            heads: 3,
            head_dim: 8,
            scale: 8f32.powf(-0.5),
        };
        let d = 24;
        let q: Vec<f32> = (0..3 * 21 * d).map(|i| val(i, 1)).collect();
        let k: Vec<f32> = (0..3 * 19 * d).map(|i| val(i, 2)).collect();
        let v: Vec<f32> = (0..3 * 19 * d).map(|i| val(i, 3)).collect();
        let at = |n: usize| Strided {
            batch_stride: n * d,
            row_stride: d,
            offset: 0,
        };
        let ops = ((&q[..], at(21)), (&k[..], at(19)), (&v[..], at(19)));
        let (o1, p1) = attention_forward(ops.0, ops.1, ops.2, dims, true);
        let (o2, p2) = attention_forward(ops.0, ops.1, ops.2, dims, false);
        assert_eq!(bits(&o1), bits(&o2), "forward output");
        assert!(p2.is_none());
        let p1 = p1.unwrap();
        assert_eq!(p1.len(), 3 * 3 * 21 * 19);
        let dout: Vec<f32> = (0..3 * 21 * d).map(|i| val(i, 4)).collect();
        let chunk = (21 + 2 * 19) * d;
        let g = |offset| Strided {
            batch_stride: chunk,
            row_stride: d,
            offset,
        };
        let layout = GradLayout {
            chunk,
            dq: g(0),
            dk: g(21 * d),
            dv: g(40 * d),
        };
        let g1 = attention_backward(&dout, ops.0, ops.1, ops.2, Some(&p1), dims, layout);
        let g2 = attention_backward(&dout, ops.0, ops.1, ops.2, None, dims, layout);
        assert_eq!(bits(&g1), bits(&g2), "gradients");
        assert!(g1.iter().any(|&x| x != 0.0));
        // The (item, head) pairs split over the threads: 1, 2 and 4 threads (runs of 9, 5 and 3
        // pairs, the last one short) give the same bits.
        for threads in [1, 2, 4] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let (o, g) = pool.install(|| {
                let (o, _) = attention_forward(ops.0, ops.1, ops.2, dims, false);
                (
                    o,
                    attention_backward(&dout, ops.0, ops.1, ops.2, None, dims, layout),
                )
            });
            assert_eq!(bits(&o), bits(&o1), "forward on {threads} threads");
            assert_eq!(bits(&g), bits(&g1), "gradients on {threads} threads");
        }
    }

    /// `erf` in f64 by its Taylor series / continued fraction (reference only).
    fn libm_erf(x: f64) -> f64 {
        // erf(x) = 2/√π Σ (-1)^n x^(2n+1) / (n! (2n+1)) converges well for |x| ≤ 3;
        // beyond, erf is 1 to within 2e-5 · e^{-9}… use the complement's asymptotic series.
        if x.abs() <= 3.0 {
            let mut term = x;
            let mut s = x;
            let mut n = 0.0;
            loop {
                n += 1.0;
                term *= -x * x / n;
                let add = term / (2.0 * n + 1.0);
                s += add;
                if add.abs() < 1e-17 {
                    break;
                }
            }
            s * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            let a = x.abs();
            let mut sum = 1.0;
            let mut term = 1.0;
            for n in 1..6 {
                term *= -((2 * n - 1) as f64) / (2.0 * a * a);
                sum += term;
            }
            let erfc = (-a * a).exp() / (a * std::f64::consts::PI.sqrt()) * sum;
            (1.0 - erfc).copysign(x)
        }
    }
}
