//! Convolutions with stride 1, dilation 1 and one group (every convolution of the UperNet and
//! Mask R-CNN heads) as im2col + matrix products, forward and backward.
//!
//! burn-flex computes a convolution's forward as im2col + GEMM but has no backward of its own:
//! burn's generic one takes the input gradient as a transposed convolution and the weight
//! gradient as a convolution over swapped batch and channel axes, each with layout conversions.
//! Here both are products on the same im2col buffer, as PyTorch's CPU path does:
//!
//! - forward, per image: `y[O, H'·W'] = W[O, C·kh·kw] · cols[C·kh·kw, H'·W'] (+ bias)`;
//! - backward, per image: `dW += dy · colsᵀ`, `dcols = Wᵀ · dy` scattered back (col2im) into
//!   `dx`, `db = Σ dy`.
//!
//! `cols` is rebuilt in the backward instead of kept, so the graph holds only the input. A `1×1`
//! convolution without padding uses the image itself as `cols`.

use rayon::prelude::*;

use super::matmul::{self, Mat, Threads};

/// The geometry of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvDims {
    /// Images.
    pub batch: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height and width.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Zero padding `[top, left, bottom, right]`.
    pub pad: [usize; 4],
}

impl ConvDims {
    /// Output height and width.
    pub fn out_hw(&self) -> (usize, usize) {
        let [top, left, bottom, right] = self.pad;
        (
            self.h + top + bottom + 1 - self.kh,
            self.w + left + right + 1 - self.kw,
        )
    }

    /// Whether the kernel fits the padded input.
    pub fn valid(&self) -> bool {
        let [top, left, bottom, right] = self.pad;
        self.kh >= 1
            && self.kw >= 1
            && self.h + top + bottom >= self.kh
            && self.w + left + right >= self.kw
    }

    fn taps(&self) -> usize {
        self.kh * self.kw
    }

    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.pad == [0; 4]
    }
}

/// `cols[(c·kh + u)·kw + v][oy·W' + ox] = x[c][oy + u − top][ox + v − left]`, zero outside.
fn im2col(x: &[f32], d: &ConvDims, cols: &mut [f32]) {
    let (ho, wo) = d.out_hw();
    let [top, left, _, _] = d.pad;
    cols.par_chunks_mut(ho * wo)
        .enumerate()
        .for_each(|(row, out)| {
            let (c, tap) = (row / d.taps(), row % d.taps());
            let (u, v) = (tap / d.kw, tap % d.kw);
            let plane = &x[c * d.h * d.w..][..d.h * d.w];
            // Output columns whose input column lies inside: ox + v − left ∈ [0, w).
            let ox0 = left.saturating_sub(v).min(wo);
            let ox1 = (d.w + left).saturating_sub(v).min(wo).max(ox0);
            for (oy, out) in out.chunks_exact_mut(wo).enumerate() {
                let iy = oy + u;
                if iy < top || iy - top >= d.h {
                    out.fill(0.0);
                    continue;
                }
                out[..ox0].fill(0.0);
                if ox0 < ox1 {
                    let src = &plane[(iy - top) * d.w..][..d.w];
                    out[ox0..ox1].copy_from_slice(&src[ox0 + v - left..ox1 + v - left]);
                }
                out[ox1..].fill(0.0);
            }
        });
}

/// The adjoint of [`im2col`]: adds every `cols` element back into the input pixel it came from.
fn col2im_add(cols: &[f32], d: &ConvDims, dx: &mut [f32]) {
    let (ho, wo) = d.out_hw();
    let [top, left, _, _] = d.pad;
    dx.par_chunks_mut(d.h * d.w)
        .enumerate()
        .for_each(|(c, plane)| {
            for tap in 0..d.taps() {
                let (u, v) = (tap / d.kw, tap % d.kw);
                let rows = &cols[(c * d.taps() + tap) * ho * wo..][..ho * wo];
                let ox0 = left.saturating_sub(v).min(wo);
                let ox1 = (d.w + left).saturating_sub(v).min(wo).max(ox0);
                for (oy, row) in rows.chunks_exact(wo).enumerate() {
                    let iy = oy + u;
                    if iy < top || iy - top >= d.h || ox0 >= ox1 {
                        continue;
                    }
                    let dst = &mut plane[(iy - top) * d.w..][..d.w];
                    for (o, g) in dst[ox0 + v - left..ox1 + v - left]
                        .iter_mut()
                        .zip(&row[ox0..ox1])
                    {
                        *o += g;
                    }
                }
            }
        });
}

/// One image's `cols` as a `[C·kh·kw, H'·W']` matrix: the image itself for a `1×1` convolution
/// without padding, else its im2col written into `buf`.
fn cols_of<'a>(img: &'a [f32], d: &ConvDims, buf: &'a mut Vec<f32>) -> Mat<'a> {
    let (ho, wo) = d.out_hw();
    let (k, hw) = (d.c_in * d.taps(), ho * wo);
    if d.pointwise() {
        Mat::row_major(img, k, hw)
    } else {
        buf.resize(k * hw, 0.0);
        im2col(img, d, buf);
        Mat::row_major(buf, k, hw)
    }
}

fn check(x: &[f32], weight: &[f32], d: &ConvDims) {
    assert!(
        d.valid(),
        "conv2d: a {}×{} kernel does not fit {d:?}",
        d.kh,
        d.kw
    );
    assert_eq!(x.len(), d.batch * d.c_in * d.h * d.w, "conv2d: input size");
    assert_eq!(
        weight.len(),
        d.c_out * d.c_in * d.taps(),
        "conv2d: weight size"
    );
}

/// How many groups of images the work splits into: one per thread of the current pool when there
/// are at least that many images (each group then runs its products on one thread), else one
/// group whose products split over the pool.
fn groups(batch: usize) -> (usize, Threads) {
    let t = rayon::current_num_threads();
    if t > 1 && batch >= t {
        (t, Threads::One)
    } else {
        (1, Threads::Pool)
    }
}

/// The convolution: `x: [B, C, H, W]`, `weight: [O, C, kh, kw]`, `bias: [O]` →
/// `[B, O, H', W']`, all dense row-major.
pub fn conv2d_forward(x: &[f32], weight: &[f32], bias: Option<&[f32]>, d: &ConvDims) -> Vec<f32> {
    check(x, weight, d);
    let (ho, wo) = d.out_hw();
    let (k, hw) = (d.c_in * d.taps(), ho * wo);
    let (img_len, out_len) = (d.c_in * d.h * d.w, d.c_out * hw);
    let wm = Mat::row_major(weight, d.c_out, k);
    let (groups, threads) = groups(d.batch);
    let per = d.batch.div_ceil(groups).max(1);
    let mut out = vec![0.0f32; d.batch * out_len];
    out.par_chunks_mut(per * out_len)
        .zip(x.par_chunks(per * img_len))
        .for_each(|(out, x)| {
            let mut cols = Vec::new();
            for (y, img) in out.chunks_exact_mut(out_len).zip(x.chunks_exact(img_len)) {
                if let Some(bias) = bias {
                    for (row, b) in y.chunks_exact_mut(hw).zip(bias) {
                        row.fill(*b);
                    }
                }
                let cm = cols_of(img, d, &mut cols);
                matmul::product_acc_on(y, wm, cm, threads);
            }
        });
    out
}

/// The gradients of [`conv2d_forward`] asked for in `want` (`[dx, dweight, dbias]`), from the
/// output gradient `dy: [B, O, H', W']`. With several groups of images (see [`groups`]) each
/// group sums its own weight and bias gradients, and the groups' sums are added in order.
pub fn conv2d_backward(
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    d: &ConvDims,
    want: [bool; 3],
) -> [Option<Vec<f32>>; 3] {
    check(x, weight, d);
    let (ho, wo) = d.out_hw();
    let (k, hw) = (d.c_in * d.taps(), ho * wo);
    let (img_len, out_len) = (d.c_in * d.h * d.w, d.c_out * hw);
    assert_eq!(dy.len(), d.batch * out_len, "conv2d: output gradient size");
    let wm = Mat::row_major(weight, d.c_out, k);
    let (groups, threads) = groups(d.batch);
    let per = d.batch.div_ceil(groups).max(1);
    let mut dx = want[0].then(|| vec![0.0f32; x.len()]);
    let dx_parts: Vec<Option<&mut [f32]>> = match dx.as_mut() {
        Some(dx) => dx.chunks_mut(per * img_len).map(Some).collect(),
        None => (0..d.batch.div_ceil(per)).map(|_| None).collect(),
    };
    let partial: Vec<[Option<Vec<f32>>; 2]> = dx_parts
        .into_par_iter()
        .zip(x.par_chunks(per * img_len))
        .zip(dy.par_chunks(per * out_len))
        .map(|((mut dx, x), dy)| {
            let mut dw = want[1].then(|| vec![0.0f32; weight.len()]);
            let mut db = want[2].then(|| vec![0.0f32; d.c_out]);
            let mut cols = Vec::new();
            for (i, (img, g)) in x
                .chunks_exact(img_len)
                .zip(dy.chunks_exact(out_len))
                .enumerate()
            {
                let gm = Mat::row_major(g, d.c_out, hw);
                if let Some(dw) = dw.as_mut() {
                    let cm = cols_of(img, d, &mut cols);
                    matmul::product_acc_on(dw, gm, cm.t(), threads);
                }
                if let Some(dx) = dx.as_mut() {
                    let dcols = matmul::product_on(wm.t(), gm, threads);
                    let dx = &mut dx[i * img_len..][..img_len];
                    if d.pointwise() {
                        dx.copy_from_slice(&dcols);
                    } else {
                        col2im_add(&dcols, d, dx);
                    }
                }
                if let Some(db) = db.as_mut() {
                    for (s, row) in db.iter_mut().zip(g.chunks_exact(hw)) {
                        *s += row.iter().sum::<f32>();
                    }
                }
            }
            [dw, db]
        })
        .collect();
    let add = |a: Option<Vec<f32>>, b: &Option<Vec<f32>>| match (a, b) {
        (Some(mut a), Some(b)) => {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
            Some(a)
        }
        (a, _) => a,
    };
    let mut parts = partial.into_iter();
    let [mut dw, mut db] = parts.next().unwrap_or([None, None]);
    for [pw, pb] in parts {
        dw = add(dw, &pw);
        db = add(db, &pb);
    }
    [dx, dw, db]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i + seed) * 2654435761) % 1009) as f32 / 504.0 - 1.0)
            .collect()
    }

    /// The convolution by its definition, in f64.
    fn naive(x: &[f32], w: &[f32], d: &ConvDims) -> Vec<f64> {
        let (ho, wo) = d.out_hw();
        let [top, left, _, _] = d.pad;
        let mut y = vec![0.0; d.batch * d.c_out * ho * wo];
        for b in 0..d.batch {
            for o in 0..d.c_out {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let mut s = 0.0;
                        for c in 0..d.c_in {
                            for u in 0..d.kh {
                                for v in 0..d.kw {
                                    let (iy, ix) = (oy + u, ox + v);
                                    if iy < top || ix < left || iy - top >= d.h || ix - left >= d.w
                                    {
                                        continue;
                                    }
                                    s += x[((b * d.c_in + c) * d.h + iy - top) * d.w + ix - left]
                                        as f64
                                        * w[((o * d.c_in + c) * d.kh + u) * d.kw + v] as f64;
                                }
                            }
                        }
                        y[((b * d.c_out + o) * ho + oy) * wo + ox] = s;
                    }
                }
            }
        }
        y
    }

    #[test]
    fn forward_is_the_definition_and_col2im_is_the_adjoint_of_im2col() {
        for d in [
            ConvDims {
                batch: 2,
                c_in: 3,
                h: 5,
                w: 6,
                c_out: 4,
                kh: 3,
                kw: 3,
                pad: [1, 1, 1, 1],
            },
            ConvDims {
                batch: 1,
                c_in: 2,
                h: 4,
                w: 7,
                c_out: 3,
                kh: 3,
                kw: 2,
                pad: [2, 0, 1, 3],
            },
            ConvDims {
                batch: 3,
                c_in: 4,
                h: 3,
                w: 3,
                c_out: 2,
                kh: 1,
                kw: 1,
                pad: [0; 4],
            },
            ConvDims {
                batch: 1,
                c_in: 1,
                h: 2,
                w: 2,
                c_out: 1,
                kh: 5,
                kw: 5,
                pad: [2, 2, 2, 2],
            },
            // Padding wider than the output: some taps see only zeros.
            ConvDims {
                batch: 1,
                c_in: 2,
                h: 1,
                w: 1,
                c_out: 2,
                kh: 3,
                kw: 3,
                pad: [4, 4, 0, 0],
            },
        ] {
            let x = data(d.batch * d.c_in * d.h * d.w, 1);
            let w = data(d.c_out * d.c_in * d.kh * d.kw, 2);
            let y = conv2d_forward(&x, &w, None, &d);
            for (a, b) in y.iter().zip(naive(&x, &w, &d)) {
                assert!((*a as f64 - b).abs() < 1e-4, "{d:?}: {a} vs {b}");
            }
            // ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩.
            let (ho, wo) = d.out_hw();
            let n = d.c_in * d.kh * d.kw * ho * wo;
            let img = &x[..d.c_in * d.h * d.w];
            let mut cols = vec![0.0; n];
            im2col(img, &d, &mut cols);
            let c = data(n, 3);
            let mut back = vec![0.0; img.len()];
            col2im_add(&c, &d, &mut back);
            let lhs: f64 = cols.iter().zip(&c).map(|(a, b)| (a * b) as f64).sum();
            let rhs: f64 = img.iter().zip(&back).map(|(a, b)| (a * b) as f64).sum();
            assert!(
                (lhs - rhs).abs() < 1e-3 * (1.0 + lhs.abs()),
                "{d:?}: {lhs} vs {rhs}"
            );
        }
    }

    #[test]
    fn images_split_over_threads_give_the_same_gradients() {
        let d = ConvDims {
            batch: 5,
            c_in: 3,
            h: 6,
            w: 5,
            c_out: 4,
            kh: 3,
            kw: 3,
            pad: [1, 1, 1, 1],
        };
        let x = data(d.batch * d.c_in * d.h * d.w, 4);
        let w = data(d.c_out * d.c_in * 9, 5);
        let b = data(d.c_out, 6);
        let (ho, wo) = d.out_hw();
        let dy = data(d.batch * d.c_out * ho * wo, 7);
        let pool = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        };
        let run = |pool: rayon::ThreadPool| {
            pool.install(|| {
                (
                    conv2d_forward(&x, &w, Some(&b), &d),
                    conv2d_backward(&x, &w, &dy, &d, [true; 3]),
                )
            })
        };
        let (y1, g1) = run(pool(1));
        let (y3, g3) = run(pool(3));
        assert_eq!(y1, y3, "the forward does not depend on the split");
        for (a, b) in g1.iter().zip(&g3) {
            let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
            for (p, q) in a.iter().zip(b) {
                assert!((p - q).abs() <= 1e-5 * (1.0 + q.abs()), "{p} vs {q}");
            }
        }
    }
}
