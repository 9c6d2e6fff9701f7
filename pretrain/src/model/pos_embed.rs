//! Fixed 2-D sin-cos position embedding (cae.md §1.2; `build_2d_sincos_position_embedding`).
//!
//! With `Dq = D / 4`, `ω_d = 1 / 10000^(d / Dq)` and patch `p` at row `r = p / W`, column
//! `c = p % W`: `pe[p] = [sin(r·ω), cos(r·ω), sin(c·ω), cos(c·ω)]`. The official code calls the first
//! half "w" but, through `meshgrid`'s `ij` indexing, it encodes the row (MoCo v3 layout). A zero
//! vector is prepended for the cls slot.
//!
//! [`resample_with_cls`] moves a *learned* table to another patch grid as the BEiT / CAE / timm
//! downstream backbones do at load time: the cls slot is kept and the patch part is resized
//! with PyTorch's bicubic interpolation (`F.interpolate(size, mode='bicubic',
//! align_corners=False)`: `A = −0.75`, source `(i + 0.5)·in/out − 0.5`, taps clamped to the
//! border), checked against torch by `pretrain/tests/parity_posinterp.rs`.

/// The table as row-major `[1 + rows·cols, dim]` values (row 0 is the zero cls slot).
///
/// # Panics
/// If `dim` is not divisible by 4 (configs are validated before a model is built).
pub fn sincos_2d_with_cls(rows: usize, cols: usize, dim: usize) -> Vec<f32> {
    assert!(
        dim.is_multiple_of(4),
        "sin-cos position embedding needs dim % 4 == 0, got {dim}"
    );
    let q = dim / 4;
    // Computed in f32, as the reference does.
    let omega: Vec<f32> = (0..q)
        .map(|d| 1.0f32 / 10000f32.powf(d as f32 / q as f32))
        .collect();
    let mut out = vec![0.0f32; (1 + rows * cols) * dim];
    for r in 0..rows {
        for c in 0..cols {
            let row = &mut out[(1 + r * cols + c) * dim..(2 + r * cols + c) * dim];
            for d in 0..q {
                let a = r as f32 * omega[d];
                let b = c as f32 * omega[d];
                row[d] = a.sin();
                row[q + d] = a.cos();
                row[2 * q + d] = b.sin();
                row[3 * q + d] = b.cos();
            }
        }
    }
    out
}

/// PyTorch's cubic convolution weights of the four taps around a fractional offset `t`.
fn cubic_weights(t: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let near = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// The taps (clamped source indices) and weights of each output index along one axis, for
/// PyTorch's source rule `src = scale·(o + 0.5) − 0.5` (`scale = input / output` when a size is
/// asked for, `1 / scale_factor` when a scale factor is).
fn cubic_axis_with(input: usize, output: usize, scale: f32) -> Vec<([usize; 4], [f32; 4])> {
    (0..output)
        .map(|o| {
            let src = scale * (o as f32 + 0.5) - 0.5;
            let base = src.floor();
            let w = cubic_weights(src - base);
            let b = base as isize;
            let idx = [b - 1, b, b + 1, b + 2].map(|i| i.clamp(0, input as isize - 1) as usize);
            (idx, w)
        })
        .collect()
}

fn cubic_axis(input: usize, output: usize) -> Vec<([usize; 4], [f32; 4])> {
    cubic_axis_with(input, output, input as f32 / output as f32)
}

/// The bicubic resize along one axis as a dense `[output, input]` matrix (taps at the border
/// accumulate): `resized = M · x`, for resampling a trainable table with tensor ops.
pub fn cubic_matrix(input: usize, output: usize, scale: f32) -> Vec<f32> {
    let mut m = vec![0.0f32; output * input];
    for (o, (idx, w)) in cubic_axis_with(input, output, scale)
        .into_iter()
        .enumerate()
    {
        for (i, wt) in idx.into_iter().zip(w) {
            m[o * input + i] += wt;
        }
    }
    m
}

/// The per-axis scales of CAE's resample of a `grid` table to each batch's `new_grid`
/// (`interpolate_pos_encoding` in `mmcv_custom/register_backbone.py`: `scale_factor =
/// ((H_p + 0.1) / rows, (W_p + 0.1) / cols)`, so the source rule uses `1 / scale_factor`, not
/// `rows / H_p`; computed in f64 and rounded to f32 as PyTorch does).
pub fn cae_batch_scales(grid: (usize, usize), new_grid: (usize, usize)) -> (f32, f32) {
    let f = |old: usize, new: usize| (1.0 / ((new as f64 + 0.1) / old as f64)) as f32;
    (f(grid.0, new_grid.0), f(grid.1, new_grid.1))
}

fn bicubic_with_axes(
    grid: &[f32],
    (rows, cols): (usize, usize),
    dim: usize,
    ry: &[([usize; 4], [f32; 4])],
    rx: &[([usize; 4], [f32; 4])],
) -> Vec<f32> {
    assert_eq!(grid.len(), rows * cols * dim, "grid size");
    let new_cols = rx.len();
    let mut out = vec![0.0f32; ry.len() * new_cols * dim];
    for (oy, (iy, wy)) in ry.iter().enumerate() {
        for (ox, (ix, wx)) in rx.iter().enumerate() {
            let dst = &mut out[(oy * new_cols + ox) * dim..(oy * new_cols + ox + 1) * dim];
            for (a, &y) in iy.iter().enumerate() {
                // PyTorch interpolates each source row along x first, then the rows along y.
                for (d, v) in dst.iter_mut().enumerate() {
                    let mut row = 0.0f32;
                    for (b, &x) in ix.iter().enumerate() {
                        row += grid[(y * cols + x) * dim + d] * wx[b];
                    }
                    *v += row * wy[a];
                }
            }
        }
    }
    out
}

/// Resizes a row-major `[rows·cols, dim]` grid of vectors to `[new_rows·new_cols, dim]` with
/// PyTorch's bicubic interpolation (`align_corners = False`), rows first then columns (the
/// result is the same separable sum PyTorch computes).
pub fn bicubic_resize(
    grid: &[f32],
    (rows, cols): (usize, usize),
    dim: usize,
    (new_rows, new_cols): (usize, usize),
) -> Vec<f32> {
    let ry = cubic_axis(rows, new_rows);
    let rx = cubic_axis(cols, new_cols);
    bicubic_with_axes(grid, (rows, cols), dim, &ry, &rx)
}

/// [`bicubic_resize`] with explicit source scales `(scale_y, scale_x)` (PyTorch's
/// `F.interpolate(scale_factor=…)`: `scale = 1 / scale_factor`).
pub fn bicubic_resize_scaled(
    grid: &[f32],
    (rows, cols): (usize, usize),
    dim: usize,
    (new_rows, new_cols): (usize, usize),
    (scale_y, scale_x): (f32, f32),
) -> Vec<f32> {
    let ry = cubic_axis_with(rows, new_rows, scale_y);
    let rx = cubic_axis_with(cols, new_cols, scale_x);
    bicubic_with_axes(grid, (rows, cols), dim, &ry, &rx)
}

/// CAE's per-batch move of a `[1 + rows·cols, dim]` table (cls slot first) to `new_grid`: the
/// cls slot kept, the patch part by [`bicubic_resize_scaled`] at [`cae_batch_scales`]; the
/// same grid returns the table as it is (CAE skips the resample then).
pub fn cae_batch_resample_with_cls(
    table: &[f32],
    grid: (usize, usize),
    dim: usize,
    new_grid: (usize, usize),
) -> Vec<f32> {
    if grid == new_grid {
        return table.to_vec();
    }
    let mut out = table[..dim].to_vec();
    out.extend(bicubic_resize_scaled(
        &table[dim..],
        grid,
        dim,
        new_grid,
        cae_batch_scales(grid, new_grid),
    ));
    out
}

/// A `[1 + rows·cols, dim]` table with its cls slot first, moved to a `new_rows × new_cols` grid:
/// the cls slot is kept, the patch part resized by [`bicubic_resize`].
pub fn resample_with_cls(
    table: &[f32],
    grid: (usize, usize),
    dim: usize,
    new_grid: (usize, usize),
) -> Vec<f32> {
    let mut out = table[..dim].to_vec();
    out.extend(bicubic_resize(&table[dim..], grid, dim, new_grid));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys' cubic kernel (A = −0.75), written out independently of [`cubic_weights`].
    fn keys(x: f64) -> f64 {
        let a = -0.75;
        let x = x.abs();
        if x <= 1.0 {
            (a + 2.0) * x.powi(3) - (a + 3.0) * x.powi(2) + 1.0
        } else if x < 2.0 {
            a * x.powi(3) - 5.0 * a * x.powi(2) + 8.0 * a * x - 4.0 * a
        } else {
            0.0
        }
    }

    #[test]
    fn cae_batch_resample_uses_the_scale_factor_not_the_size_ratio() {
        // A 1×4 row of scalars to 1×6: CAE's scale factor (6 + 0.1)/4 = 1.525 puts output 5's
        // source at (5.5)/1.525 − 0.5 = 3.1066, the size ratio at 5.5·4/6 − 0.5 = 3.1667.
        let row = [0.0f32, 1.0, 4.0, 9.0];
        let mut table = vec![7.0f32]; // cls slot (dim 1)
        table.extend(row);
        let got = cae_batch_resample_with_cls(&table, (1, 4), 1, (1, 6));
        assert_eq!(got.len(), 7);
        assert_eq!(got[0], 7.0, "the cls slot is kept");
        let expect = |o: usize, scale: f64| -> f64 {
            let src = scale * (o as f64 + 0.5) - 0.5;
            let f = src.floor();
            (-1..=2)
                .map(|k| {
                    let i = (f as i64 + k).clamp(0, 3) as usize;
                    f64::from(row[i]) * keys(src - (f + k as f64))
                })
                .sum()
        };
        let s = 4.0 / 6.1;
        for o in 0..6 {
            let e = expect(o, s);
            assert!(
                (f64::from(got[1 + o]) - e).abs() < 1e-5,
                "{o}: {} vs {e}",
                got[1 + o]
            );
        }
        let by_size = bicubic_resize(&row, (1, 4), 1, (1, 6));
        assert!((by_size[5] - got[6]).abs() > 1e-3, "{by_size:?} vs {got:?}");
        // Rows: a single row stays itself (all taps clamp to row 0 and the weights sum to 1).
        assert_eq!(
            cae_batch_scales((42, 68), (50, 84)),
            ((42.0 / 50.1) as f32, (68.0 / 84.1) as f32)
        );
        // The same grid is returned unchanged.
        assert_eq!(
            cae_batch_resample_with_cls(&table, (1, 4), 1, (1, 4)),
            table
        );
        // The matrix form gives the same values.
        let m = cubic_matrix(4, 6, s as f32);
        for o in 0..6 {
            let v: f32 = (0..4).map(|i| m[o * 4 + i] * row[i]).sum();
            assert!((v - got[1 + o]).abs() < 1e-5);
        }
    }

    #[test]
    fn cls_slot_is_zero_and_first_half_encodes_the_row() {
        let (g, d) = (3, 8);
        let t = sincos_2d_with_cls(g, g, d);
        assert_eq!(t.len(), (1 + g * g) * d);
        assert!(t[..d].iter().all(|x| *x == 0.0));
        // patch 1 is (row 0, col 1): the row half is sin(0)=0, cos(0)=1; column half is not.
        let p1 = &t[2 * d..3 * d];
        assert_eq!(&p1[..4], &[0.0, 0.0, 1.0, 1.0]);
        assert!((p1[4] - 1.0f32.sin()).abs() < 1e-7);
        // patch 3 is (row 1, col 0).
        let p3 = &t[4 * d..5 * d];
        assert!((p3[0] - 1.0f32.sin()).abs() < 1e-7);
        assert_eq!(&p3[4..], &[0.0, 0.0, 1.0, 1.0]);
    }
}
