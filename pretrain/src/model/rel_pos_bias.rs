//! BEiT's relative position bias (`RelativePositionBias` / the per-block tables in
//! `microsoft/unilm beit/modeling_finetune.py`).
//!
//! A learned table of `(2·Wh−1)(2·Ww−1) + 3` rows × `num_heads` is indexed by
//! `relative_position_index[(1+N)×(1+N)]`; the three extra rows are cls→token, token→cls and
//! cls→cls. The index is the official one, computed here rather than stored as a parameter.

use burn::module::{Module, Param};
use burn::tensor::{Int, Tensor, TensorData};

use super::init::Init;

/// Number of table rows for a `wh × ww` grid.
pub fn num_relative_distance(wh: usize, ww: usize) -> usize {
    (2 * wh - 1) * (2 * ww - 1) + 3
}

/// The official `relative_position_index` for a `wh × ww` grid, row-major `(1+N) × (1+N)`.
pub fn relative_position_index(wh: usize, ww: usize) -> Vec<i64> {
    let n = wh * ww;
    let nrd = num_relative_distance(wh, ww) as i64;
    let mut idx = vec![0i64; (n + 1) * (n + 1)];
    for i in 0..n {
        let (hi, wi) = ((i / ww) as i64, (i % ww) as i64);
        for j in 0..n {
            let (hj, wj) = ((j / ww) as i64, (j % ww) as i64);
            let dh = hi - hj + wh as i64 - 1;
            let dw = wi - wj + ww as i64 - 1;
            idx[(i + 1) * (n + 1) + (j + 1)] = dh * (2 * ww as i64 - 1) + dw;
        }
    }
    for v in idx.iter_mut().take(n + 1) {
        *v = nrd - 3; // row 0: cls → tokens
    }
    for i in 0..=n {
        idx[i * (n + 1)] = nrd - 2; // column 0: tokens → cls
    }
    idx[0] = nrd - 1;
    idx
}

/// A relative position bias table.
#[derive(Module, Debug)]
pub struct RelativePositionBias {
    /// `[(2Wh−1)(2Ww−1)+3, num_heads]`, zero-initialised.
    pub relative_position_bias_table: Param<Tensor<2>>,
    /// The flattened official index, `(1+N)²` entries (a constant, not saved).
    pub index: Tensor<1, Int>,
}

impl RelativePositionBias {
    /// A zero table for a `grid × grid` patch grid.
    pub fn new(grid: usize, num_heads: usize, init: &Init) -> Self {
        let idx = relative_position_index(grid, grid);
        let tokens = grid * grid + 1;
        Self {
            relative_position_bias_table: init
                .zeros([num_relative_distance(grid, grid), num_heads]),
            index: Tensor::from_data(TensorData::new(idx, [tokens * tokens]), &init.device),
        }
    }

    /// The bias over all tokens.
    ///
    /// # Shapes
    /// `→ [H, 1+N, 1+N]`
    pub fn forward(&self) -> Tensor<3> {
        bias_from_table(self.relative_position_bias_table.val(), self.index.clone())
    }
}

/// `table[index].view(1+N, 1+N, H).permute(2, 0, 1)`.
///
/// # Shapes
/// `table: [R, H]`, `index: [(1+N)²]` → `[H, 1+N, 1+N]`
pub fn bias_from_table(table: Tensor<2>, index: Tensor<1, Int>) -> Tensor<3> {
    let [_, h] = table.dims();
    let tokens = (index.dims()[0] as f64).sqrt().round() as usize;
    table
        .select(0, index)
        .reshape([tokens, tokens, h])
        .permute([2, 0, 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_matches_the_official_construction_on_a_2x2_grid() {
        // Computed by hand from BEiT's code for Wh = Ww = 2 (num_relative_distance = 12).
        let idx = relative_position_index(2, 2);
        #[rustfmt::skip]
        let expected = vec![
            11, 9, 9, 9, 9,
            10, 4, 3, 1, 0,
            10, 5, 4, 2, 1,
            10, 7, 6, 4, 3,
            10, 8, 7, 5, 4,
        ];
        assert_eq!(idx, expected);
        assert_eq!(num_relative_distance(4, 4), 52);
    }
}
