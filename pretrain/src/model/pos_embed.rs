//! Fixed 2-D sin-cos position embedding (cae.md §1.2; `build_2d_sincos_position_embedding`).
//!
//! With `Dq = D / 4`, `ω_d = 1 / 10000^(d / Dq)` and patch `p` at row `r = p / W`, column
//! `c = p % W`: `pe[p] = [sin(r·ω), cos(r·ω), sin(c·ω), cos(c·ω)]`. The official code calls the first
//! half "w" but, through `meshgrid`'s `ij` indexing, it encodes the row (MoCo v3 layout). A zero
//! vector is prepended for the cls slot.

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

#[cfg(test)]
mod tests {
    use super::*;

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
