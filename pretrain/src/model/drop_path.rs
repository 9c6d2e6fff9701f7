//! Stochastic depth (`DropPath` in timm): per sample, drop the residual branch with probability `p`
//! and scale the kept ones by `1 / (1 − p)`.
//!
//! The keep mask is drawn on the CPU from the forward pass's seeded generator ([`ForwardCtx`]), so
//! a step is reproducible from `(seed, step)` on any backend.

use burn::tensor::{Tensor, TensorData};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Per-forward state: training mode and the generator behind drop path.
pub struct ForwardCtx {
    /// Drop path is active only in training.
    pub train: bool,
    rng: Option<ChaCha8Rng>,
    /// A piece of a larger batch: (the whole batch's size, this piece's first sample, drop path
    /// calls so far). See [`ForwardCtx::train_piece`].
    piece: Option<(usize, usize, u64)>,
}

impl ForwardCtx {
    /// Inference: no randomness.
    pub fn eval() -> Self {
        Self {
            train: false,
            rng: None,
            piece: None,
        }
    }

    /// Training with drop path drawn from `rng`.
    pub fn train(rng: ChaCha8Rng) -> Self {
        Self {
            train: true,
            rng: Some(rng),
            piece: None,
        }
    }

    /// Training on samples `offset..offset + b` of a batch of `batch` samples, drawing exactly
    /// the drop path decisions the whole batch's pass [`ForwardCtx::train`] with the same
    /// generator draws for those samples: that pass draws one value per sample per drop path
    /// call, in order, so the piece jumps to its samples' positions in the stream. This is what
    /// lets a step be split over threads without changing its random draws. (Only drop path may
    /// draw from such a context.)
    pub fn train_piece(rng: ChaCha8Rng, batch: usize, offset: usize) -> Self {
        Self {
            train: true,
            rng: Some(rng),
            piece: Some((batch, offset, 0)),
        }
    }

    /// The generator of a training pass (`None` in inference), for other stochastic layers
    /// (e.g. the segmentation heads' channel dropout) to draw from the same stream.
    pub fn rng_mut(&mut self) -> Option<&mut ChaCha8Rng> {
        self.rng.as_mut()
    }

    /// Applies drop path with rate `p` to a residual branch `x: [B, N, D]`.
    pub fn drop_path(&mut self, x: Tensor<3>, p: f64) -> Tensor<3> {
        if !self.train || p <= 0.0 {
            return x;
        }
        let rng = self
            .rng
            .as_mut()
            .expect("a training ForwardCtx always has a generator");
        let [b, _, _] = x.dims();
        if let Some((batch, offset, calls)) = self.piece.as_mut() {
            // Each value is one u64, i.e. two 32-bit words of the ChaCha stream.
            let first = *calls * *batch as u64 + *offset as u64;
            rng.set_word_pos(2 * u128::from(first));
            *calls += 1;
        }
        let keep = 1.0 - p;
        let mask: Vec<f32> = (0..b)
            .map(|_| {
                if rng.random::<f64>() < keep {
                    (1.0 / keep) as f32
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::<3>::from_data(TensorData::new(mask, [b, 1, 1]), &x.device());
        x * mask
    }
}

/// `linspace(0, rate, depth)`: the drop rate of each block.
pub fn drop_path_schedule(rate: f64, depth: usize) -> Vec<f64> {
    match depth {
        0 => vec![],
        1 => vec![0.0],
        _ => (0..depth)
            .map(|i| rate * i as f64 / (depth - 1) as f64)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use rand::SeedableRng;

    #[test]
    fn schedule_is_linspace() {
        assert_eq!(drop_path_schedule(0.1, 3), vec![0.0, 0.05, 0.1]);
        assert_eq!(drop_path_schedule(0.1, 1), vec![0.0]);
    }

    #[test]
    fn drops_whole_samples_and_rescales_the_rest() {
        let dev = Device::flex();
        let x = Tensor::<3>::ones([64, 2, 3], &dev);
        let mut ctx = ForwardCtx::train(ChaCha8Rng::seed_from_u64(1));
        let y: Vec<f32> = ctx
            .drop_path(x.clone(), 0.5)
            .try_into_vec_as::<f32>()
            .unwrap();
        let kept = y.chunks(6).filter(|s| s.iter().all(|v| *v == 2.0)).count();
        let dropped = y.chunks(6).filter(|s| s.iter().all(|v| *v == 0.0)).count();
        assert_eq!(kept + dropped, 64);
        assert!(kept > 16 && dropped > 16);
        let mut eval = ForwardCtx::eval();
        let z: Vec<f32> = eval.drop_path(x, 0.5).try_into_vec_as::<f32>().unwrap();
        assert!(z.iter().all(|v| *v == 1.0));
    }

    #[test]
    fn pieces_of_a_batch_draw_what_the_whole_batch_draws_for_them() {
        let dev = Device::flex();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        rng.set_stream(5);
        let draws = |ctx: &mut ForwardCtx, b: usize| -> Vec<f32> {
            let mut out = Vec::new();
            for p in [0.3, 0.5, 0.7] {
                let x = Tensor::<3>::ones([b, 1, 1], &dev);
                out.extend(ctx.drop_path(x, p).try_into_vec_as::<f32>().unwrap());
            }
            out
        };
        let whole = draws(&mut ForwardCtx::train(rng.clone()), 7);
        let a = draws(&mut ForwardCtx::train_piece(rng.clone(), 7, 0), 3);
        let b = draws(&mut ForwardCtx::train_piece(rng.clone(), 7, 3), 4);
        for call in 0..3 {
            let mut joined = a[call * 3..(call + 1) * 3].to_vec();
            joined.extend_from_slice(&b[call * 4..(call + 1) * 4]);
            assert_eq!(joined, whole[call * 7..(call + 1) * 7], "call {call}");
        }
        // And the whole batch as one piece is the plain pass.
        assert_eq!(draws(&mut ForwardCtx::train_piece(rng, 7, 0), 7), whole);
    }
}
