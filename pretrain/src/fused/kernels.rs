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

/// Runs `f`: the loop bodies of the kernels, kept in one place for target-specific code generation.
///
/// A `#[target_feature(enable = "avx2,fma")]` wrapper here did not help: the closure was not
/// inlined into it, so it ran as baseline code and every `f32::mul_add` became a libm call
/// (software FMA), which made the fused kernels 2-4x slower than burn's composed ops. The kernels
/// now use plain multiply-adds (`Madd`), which LLVM vectorises with baseline SSE2.
#[inline(always)]
fn simd<R>(f: impl FnOnce() -> R) -> R {
    f()
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

/// `y += a·x`.
#[inline(always)]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y = a.madd(*x, *y);
    }
}

/// `eˣ`, branch-free (Cody–Waite reduction and a degree-6 polynomial, as in Cephes' `expf`).
/// Inputs are clamped to `[-87.3, 88.3]`.
#[inline(always)]
#[allow(clippy::excessive_precision)] // Cephes' coefficients as published
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.3);
    // Round to nearest by adding and subtracting 1.5·2²³ (|x·log₂e| < 2²²): `f32::round` is a
    // libm call on baseline x86-64, which would stop the loop from vectorising.
    let n = (x * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
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
    let scale = f32::from_bits((((n as i32) + 127) as u32) << 23);
    p * scale
}

/// `erf(x)`, branch-free (Abramowitz & Stegun 7.1.26: 1.5·10⁻⁷ in exact arithmetic, below
/// 5·10⁻⁷ in `f32`).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / 0.327_591_1f32.madd(a, 1.0);
    let mut p = 1.061_405_4f32;
    p = p.madd(t, -1.453_152_1);
    p = p.madd(t, 1.421_413_8);
    p = p.madd(t, -0.284_496_74);
    p = p.madd(t, 0.254_829_6);
    let y = 1.0 - p * t * exp(-a * a);
    y.copysign(x)
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// `1 / √(2π)`.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// Exact-erf GELU: `y = x · Φ(x) = ½·x·(1 + erf(x/√2))`.
pub fn gelu_forward(x: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0f32; x.len()];
    y.par_chunks_mut(ELEM_BLOCK)
        .zip(x.par_chunks(ELEM_BLOCK))
        .for_each(|(y, x)| {
            simd(|| {
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = 0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2));
                }
            })
        });
    y
}

/// GELU's input gradient: `dx = dy · (Φ(x) + x·φ(x))`.
pub fn gelu_backward(x: &[f32], dy: &[f32]) -> Vec<f32> {
    let mut dx = vec![0.0f32; x.len()];
    dx.par_chunks_mut(ELEM_BLOCK)
        .zip(x.par_chunks(ELEM_BLOCK).zip(dy.par_chunks(ELEM_BLOCK)))
        .for_each(|(dx, (x, dy))| {
            simd(|| {
                for ((dx, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
                    let cdf = 0.5 * (1.0 + erf(x * FRAC_1_SQRT_2));
                    let pdf = FRAC_1_SQRT_2PI * exp(-0.5 * x * x);
                    *dx = g * x.madd(pdf, cdf);
                }
            })
        });
    dx
}

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
    let inv_c = 1.0 / c as f32;
    y.par_chunks_mut(ROW_BLOCK * c)
        .zip(x.par_chunks(ROW_BLOCK * c))
        .zip(
            mean.par_chunks_mut(ROW_BLOCK)
                .zip(rstd.par_chunks_mut(ROW_BLOCK)),
        )
        .for_each(|((y, x), (mean, rstd))| {
            simd(|| {
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
            })
        });
    (y, LayerNormStats { mean, rstd })
}

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
    let inv_c = 1.0 / c as f32;
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
            simd(|| {
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
            })
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

/// `softmax(q·scale @ kᵀ) @ v` per batch item and head.
///
/// Returns the output, dense `[B, Nq, H·hd]`, and the attention probabilities `[B, H, Nq, Nk]`
/// (kept for the backward pass).
pub fn attention_forward(
    q: (&[f32], Strided),
    k: (&[f32], Strided),
    v: (&[f32], Strided),
    dims: AttentionDims,
) -> (Vec<f32>, Vec<f32>) {
    let AttentionDims {
        batch,
        nq,
        nk,
        heads,
        head_dim: hd,
        scale,
    } = dims;
    let width = dims.width();
    let mut out = vec![0.0f32; batch * nq * width];
    let mut probs = vec![0.0f32; batch * heads * nq * nk];
    out.par_chunks_mut(nq * width)
        .zip(probs.par_chunks_mut(heads * nq * nk))
        .enumerate()
        .for_each(|(b, (out, probs))| {
            simd(|| {
                let mut qh = vec![0.0f32; nq * hd];
                let mut kh = vec![0.0f32; nk * hd];
                let mut kt = vec![0.0f32; hd * nk];
                let mut vh = vec![0.0f32; nk * hd];
                for h in 0..heads {
                    load_head(&mut qh, q.0, q.1, b, h, nq, hd, scale);
                    load_head(&mut kh, k.0, k.1, b, h, nk, hd, 1.0);
                    load_head(&mut vh, v.0, v.1, b, h, nk, hd, 1.0);
                    transpose(&mut kt, &kh, nk, hd);
                    let p_h = &mut probs[h * nq * nk..][..nq * nk];
                    for i in 0..nq {
                        let s = &mut p_h[i * nk..][..nk];
                        s.fill(0.0);
                        for d in 0..hd {
                            axpy(s, qh[i * hd + d], &kt[d * nk..][..nk]);
                        }
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
                        let o = &mut out[i * width + h * hd..][..hd];
                        for (j, &p) in s.iter().enumerate() {
                            axpy(o, p, &vh[j * hd..][..hd]);
                        }
                    }
                }
            })
        });
    (out, probs)
}

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
/// `dv = Pᵀ·dO`.
pub fn attention_backward(
    dout: &[f32],
    q: (&[f32], Strided),
    k: (&[f32], Strided),
    v: (&[f32], Strided),
    probs: &[f32],
    dims: AttentionDims,
    layout: GradLayout,
) -> Vec<f32> {
    let AttentionDims {
        batch,
        nq,
        nk,
        heads,
        head_dim: hd,
        scale,
    } = dims;
    let width = dims.width();
    let mut grad = vec![0.0f32; batch * layout.chunk];
    grad.par_chunks_mut(layout.chunk)
        .enumerate()
        .for_each(|(b, g)| {
            simd(|| {
                let mut qh = vec![0.0f32; nq * hd];
                let mut kh = vec![0.0f32; nk * hd];
                let mut vh = vec![0.0f32; nk * hd];
                let mut vt = vec![0.0f32; hd * nk];
                let mut doh = vec![0.0f32; nq * hd];
                let mut ds = vec![0.0f32; nk];
                let mut dqh = vec![0.0f32; hd];
                let mut dkh = vec![0.0f32; nk * hd];
                let mut dvh = vec![0.0f32; nk * hd];
                let dout_at = Strided::dense(nq, width);
                for h in 0..heads {
                    load_head(&mut qh, q.0, q.1, b, h, nq, hd, scale);
                    load_head(&mut kh, k.0, k.1, b, h, nk, hd, 1.0);
                    load_head(&mut vh, v.0, v.1, b, h, nk, hd, 1.0);
                    load_head(&mut doh, dout, dout_at, b, h, nq, hd, 1.0);
                    transpose(&mut vt, &vh, nk, hd);
                    dkh.fill(0.0);
                    dvh.fill(0.0);
                    let p_h = &probs[(b * heads + h) * nq * nk..][..nq * nk];
                    for i in 0..nq {
                        let p = &p_h[i * nk..][..nk];
                        let do_i = &doh[i * hd..][..hd];
                        // dP row = dO_i · vᵀ
                        ds.fill(0.0);
                        for d in 0..hd {
                            axpy(&mut ds, do_i[d], &vt[d * nk..][..nk]);
                        }
                        let di = dot(p, &ds);
                        for (s, &p) in ds.iter_mut().zip(p) {
                            *s = p * (*s - di);
                        }
                        dqh.fill(0.0);
                        let q_i = &qh[i * hd..][..hd];
                        for j in 0..nk {
                            axpy(&mut dqh, ds[j], &kh[j * hd..][..hd]);
                            axpy(&mut dkh[j * hd..][..hd], ds[j], q_i);
                            axpy(&mut dvh[j * hd..][..hd], p[j], do_i);
                        }
                        let row =
                            &mut g[layout.dq.offset + i * layout.dq.row_stride + h * hd..][..hd];
                        for (r, &x) in row.iter_mut().zip(&dqh) {
                            *r = x * scale;
                        }
                    }
                    for j in 0..nk {
                        let row =
                            &mut g[layout.dk.offset + j * layout.dk.row_stride + h * hd..][..hd];
                        row.copy_from_slice(&dkh[j * hd..][..hd]);
                        let row =
                            &mut g[layout.dv.offset + j * layout.dv.row_stride + h * hd..][..hd];
                        row.copy_from_slice(&dvh[j * hd..][..hd]);
                    }
                }
            })
        });
    grad
}

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
