//! Matrix products on `f32` slices, for the fused Linear layer ([`super::ext`]).
//!
//! They call the `gemm` crate, the one burn-flex's own `matmul` runs on, so the products
//! themselves are the same code. What changes is around them: burn-flex allocates every output
//! through `FlexTensor::empty`, which zero-fills a byte vector and then copies it into a 16-byte
//! aligned allocation (two allocations, a memset and a memcpy per product), and a Linear forward
//! adds the bias in a separate pass. Here an output is written once: a fresh product goes into
//! uninitialised capacity, and the forward's bias is the product's starting value.
//!
//! Operands are [`Mat`] views (any row and column strides), so a transposed weight or input is
//! read in place, without a copy.

/// A read-only `rows × cols` matrix inside a slice: element `(i, j)` is
/// `data[i·row_stride + j·col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Mat<'a> {
    /// A dense row-major matrix.
    ///
    /// # Panics
    /// If `data` does not hold exactly `rows · cols` elements.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(
            data.len(),
            rows * cols,
            "a {rows}×{cols} matrix needs {} elements",
            rows * cols
        );
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose, as a view of the same elements.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Whether every element of the view lies inside `data` (what makes the `gemm` call sound).
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// Products below this many multiply-adds run on one thread (burn-flex's threshold).
const PARALLEL_MACS: usize = 192 * 192 * 192;

fn dims(a: &Mat, b: &Mat) -> (usize, usize, usize) {
    assert_eq!(
        a.cols, b.rows,
        "matmul: a {}×{} by a {}×{} matrix",
        a.rows, a.cols, b.rows, b.cols
    );
    assert!(
        a.in_bounds() && b.in_bounds(),
        "matmul: a view outside its slice"
    );
    (a.rows, b.cols, a.cols)
}

/// Whether a product may split over the current rayon pool's threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// Split when the pool has more than one thread and the product is large enough.
    Pool,
    /// One thread (the caller already splits its work over the pool).
    One,
}

/// `dst = a @ b` (`accumulate == false`: `dst` is not read) or `dst += a @ b`, `dst` row-major
/// `[a.rows, b.cols]` at `dst_ptr`.
///
/// # Safety
/// `dst_ptr` must be valid for writes (and, with `accumulate`, reads of initialised values) of
/// `m·n` elements, where `(m, _, n)` are the checked dimensions, and must not overlap `a` or `b`.
#[allow(unsafe_code)]
unsafe fn gemm_into(dst_ptr: *mut f32, accumulate: bool, a: Mat, b: Mat, threads: Threads) {
    let (m, n, k) = dims(&a, &b);
    let parallelism = if threads == Threads::Pool
        && rayon::current_num_threads() > 1
        && m * n * k >= PARALLEL_MACS
    {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `dims` checked that every element of `a` and `b` lies in its slice; the caller
    // guarantees `dst_ptr` (dense, row stride `n`). gemm computes
    // `dst = alpha·dst + beta·(a @ b)` and reads `dst` only when `read_dst` is true.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst_ptr,
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `a @ b` as a new row-major `[a.rows, b.cols]` buffer, written once (no zero-fill first).
pub fn product(a: Mat, b: Mat) -> Vec<f32> {
    product_on(a, b, Threads::Pool)
}

/// [`product`] on the given threads.
pub fn product_on(a: Mat, b: Mat, threads: Threads) -> Vec<f32> {
    let (m, n, k) = dims(&a, &b);
    if k == 0 || m * n == 0 {
        return vec![0.0; m * n];
    }
    let mut out = Vec::with_capacity(m * n);
    // SAFETY: the capacity holds `m·n` elements, a new allocation overlaps nothing, and with
    // `k > 0` gemm writes every one of them (`accumulate == false` reads none), so they are all
    // initialised before `set_len`.
    #[allow(unsafe_code)]
    unsafe {
        gemm_into(out.as_mut_ptr(), false, a, b, threads);
        out.set_len(m * n);
    }
    out
}

/// `dst += a @ b`, `dst` row-major `[a.rows, b.cols]`.
///
/// # Panics
/// If `dst` does not hold exactly `a.rows · b.cols` elements.
pub fn product_acc(dst: &mut [f32], a: Mat, b: Mat) {
    product_acc_on(dst, a, b, Threads::Pool)
}

/// [`product_acc`] on the given threads.
pub fn product_acc_on(dst: &mut [f32], a: Mat, b: Mat, threads: Threads) {
    let (m, n, _) = dims(&a, &b);
    assert_eq!(dst.len(), m * n, "matmul: the output is not {m}×{n}");
    // SAFETY: `dst` is an initialised `m·n` slice borrowed mutably, so it overlaps neither
    // operand.
    #[allow(unsafe_code)]
    unsafe {
        gemm_into(dst.as_mut_ptr(), true, a, b, threads);
    }
}

/// Column sums of a row-major `[rows, cols]` matrix, rows added in order.
pub fn column_sums(x: &[f32], cols: usize) -> Vec<f32> {
    let mut sums = vec![0.0f32; cols];
    for row in x.chunks_exact(cols) {
        for (s, v) in sums.iter_mut().zip(row) {
            *s += v;
        }
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: Mat, b: Mat) -> Vec<f64> {
        let at = |m: &Mat, i: usize, j: usize| m.data[i * m.row_stride + j * m.col_stride] as f64;
        let mut out = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                out[i * b.cols + j] = (0..a.cols).map(|p| at(&a, i, p) * at(&b, p, j)).sum();
            }
        }
        out
    }

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    fn assert_close(got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!(
                (*g as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "{g} vs {w}"
            );
        }
    }

    #[test]
    fn products_of_plain_and_transposed_views_equal_the_naive_sums() {
        for (m, k, n) in [(5, 3, 7), (37, 24, 40), (1, 1, 1), (130, 70, 33)] {
            let a_rm = data(m * k, 1);
            let a_cm = data(k * m, 2);
            let b_rm = data(k * n, 3);
            let b_cm = data(n * k, 4);
            for a in [Mat::row_major(&a_rm, m, k), Mat::row_major(&a_cm, k, m).t()] {
                for b in [Mat::row_major(&b_rm, k, n), Mat::row_major(&b_cm, n, k).t()] {
                    assert_close(&product(a, b), &naive(a, b));
                    let start = data(m * n, 5);
                    let mut acc = start.clone();
                    product_acc(&mut acc, a, b);
                    let want: Vec<f64> = naive(a, b)
                        .iter()
                        .zip(&start)
                        .map(|(p, s)| p + *s as f64)
                        .collect();
                    assert_close(&acc, &want);
                }
            }
        }
    }

    #[test]
    fn empty_inner_dimension_gives_zeros_and_threads_give_the_same_product() {
        let a = Mat::row_major(&[], 3, 0);
        let b = Mat::row_major(&[], 0, 4);
        assert_eq!(product(a, b), vec![0.0; 12]);
        // Above the threshold, on a 2-thread pool: gemm splits the work; same values.
        let (m, k, n) = (200, 200, 200);
        let (x, y) = (data(m * k, 6), data(k * n, 7));
        let (a, b) = (Mat::row_major(&x, m, k), Mat::row_major(&y, k, n));
        let one = product(a, b);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let two = pool.install(|| product(a, b));
        assert_close(&two, &naive(a, b));
        assert_close(&one, &naive(a, b));
    }

    #[test]
    #[should_panic(expected = "matmul: a 2×3 by a 2×3 matrix")]
    fn mismatched_shapes_are_refused() {
        let x = [0.0; 6];
        product(Mat::row_major(&x, 2, 3), Mat::row_major(&x, 2, 3));
    }

    #[test]
    fn column_sums_add_the_rows() {
        assert_eq!(
            column_sums(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3),
            [5.0, 7.0, 9.0]
        );
    }
}
