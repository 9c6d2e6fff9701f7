//! Masking (cae.md §2): BEiT's block-wise generator in CAE's exact-count variant, and uniform random
//! masking.
//!
//! Block-wise: repeatedly try (up to 10 attempts per round) a rectangle of area
//! `U(min_block, budget)` and aspect `exp(U(log a, log 1/a))`, strictly smaller than the grid in both
//! directions, at a uniform position; accept it when it adds between 1 and `budget` new patches.
//! CAE loops `while count != N` (BEiT stops early when a round adds nothing), so every mask has
//! exactly `N` patches, which the encoder's fixed-length gather needs. Rounds that add nothing are
//! retried; after [`MAX_EMPTY_ROUNDS`] empty rounds in a row (possible only for configurations the
//! official code would loop on forever) the remaining patches are filled uniformly at random.

use rand::Rng;
use rand::seq::SliceRandom;

use crate::config::{MaskConfig, MaskKind};
use crate::error::PretrainError;

/// Empty rounds tolerated before the random fill-in.
pub const MAX_EMPTY_ROUNDS: usize = 10_000;

/// A `height × width` grid mask, row-major, `true` = masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridMask {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Row-major cells.
    pub cells: Vec<bool>,
}

impl GridMask {
    /// Number of masked cells.
    pub fn count(&self) -> usize {
        self.cells.iter().filter(|c| **c).count()
    }

    /// Ascending indices of masked patches.
    pub fn masked(&self) -> Vec<usize> {
        (0..self.cells.len()).filter(|&i| self.cells[i]).collect()
    }

    /// Ascending indices of visible patches.
    pub fn visible(&self) -> Vec<usize> {
        (0..self.cells.len()).filter(|&i| !self.cells[i]).collect()
    }
}

/// A rectangle placed by the block generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// First row.
    pub top: usize,
    /// First column.
    pub left: usize,
    /// Rows.
    pub h: usize,
    /// Columns.
    pub w: usize,
}

/// A mask generator for a square grid.
#[derive(Debug, Clone)]
pub struct MaskGenerator {
    grid: usize,
    cfg: MaskConfig,
}

impl MaskGenerator {
    /// A generator for a `grid × grid` patch grid.
    pub fn new(grid: usize, cfg: &MaskConfig) -> Result<Self, PretrainError> {
        let n = grid * grid;
        if cfg.num_masked == 0 || cfg.num_masked >= n {
            return Err(PretrainError::Config(format!(
                "num_masked must be in 1..{n} for a {grid}×{grid} grid, got {}",
                cfg.num_masked
            )));
        }
        if cfg.min_block == 0 {
            return Err(PretrainError::Config("min_block must be at least 1".into()));
        }
        Ok(Self {
            grid,
            cfg: cfg.clone(),
        })
    }

    /// Patches per image.
    pub fn num_patches(&self) -> usize {
        self.grid * self.grid
    }

    /// Draws one mask.
    pub fn sample(&self, rng: &mut impl Rng) -> GridMask {
        match self.cfg.kind {
            MaskKind::Block => self.sample_block(rng, &mut Vec::new()),
            MaskKind::Random => self.sample_random(rng),
        }
    }

    /// `N` patches uniformly at random.
    fn sample_random(&self, rng: &mut impl Rng) -> GridMask {
        let mut idx: Vec<usize> = (0..self.num_patches()).collect();
        idx.shuffle(rng);
        let mut cells = vec![false; self.num_patches()];
        for &i in &idx[..self.cfg.num_masked] {
            cells[i] = true;
        }
        GridMask {
            height: self.grid,
            width: self.grid,
            cells,
        }
    }

    /// Block-wise masking; the accepted rectangles are pushed to `rects`.
    pub fn sample_block(&self, rng: &mut impl Rng, rects: &mut Vec<Rect>) -> GridMask {
        let g = self.grid;
        let n = self.cfg.num_masked;
        let max_block = self.cfg.max_block.unwrap_or(n);
        let mut mask = GridMask {
            height: g,
            width: g,
            cells: vec![false; g * g],
        };
        let mut count = 0;
        let mut empty_rounds = 0;
        while count != n {
            let budget = (n - count).min(max_block);
            let delta = self.one_block(&mut mask, budget, rng, rects);
            count += delta;
            if delta == 0 {
                empty_rounds += 1;
                if empty_rounds >= MAX_EMPTY_ROUNDS {
                    let mut free = mask.visible();
                    free.shuffle(rng);
                    for &i in &free[..n - count] {
                        mask.cells[i] = true;
                    }
                    count = n;
                }
            } else {
                empty_rounds = 0;
            }
        }
        mask
    }

    /// One round of up to 10 attempts; returns the number of newly masked patches.
    fn one_block(
        &self,
        mask: &mut GridMask,
        budget: usize,
        rng: &mut impl Rng,
        rects: &mut Vec<Rect>,
    ) -> usize {
        let g = self.grid;
        let log_lo = self.cfg.min_aspect.ln();
        let log_hi = (1.0 / self.cfg.min_aspect).ln();
        let lo = self.cfg.min_block as f64;
        let hi = budget as f64;
        for _ in 0..10 {
            // Python's random.uniform(a, b) = a + (b - a)·U[0,1), also when b < a.
            let area = lo + (hi - lo) * rng.random::<f64>();
            let aspect = (log_lo + (log_hi - log_lo) * rng.random::<f64>()).exp();
            let h = (area * aspect).sqrt().round() as usize;
            let w = (area / aspect).sqrt().round() as usize;
            if h == 0 || w == 0 || h >= g || w >= g {
                continue;
            }
            let top = rng.random_range(0..=g - h);
            let left = rng.random_range(0..=g - w);
            let already = (top..top + h)
                .flat_map(|i| (left..left + w).map(move |j| (i, j)))
                .filter(|&(i, j)| mask.cells[i * g + j])
                .count();
            let new = h * w - already;
            if new > 0 && new <= budget {
                for i in top..top + h {
                    for j in left..left + w {
                        mask.cells[i * g + j] = true;
                    }
                }
                rects.push(Rect { top, left, h, w });
                return new;
            }
        }
        0
    }
}

/// The masks of one batch as ascending patch lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskBatch {
    /// Patches per image.
    pub num_patches: usize,
    /// Masked patches per sample (ascending; every row the same length).
    pub masked: Vec<Vec<usize>>,
    /// Visible patches per sample (ascending).
    pub visible: Vec<Vec<usize>>,
}

impl MaskBatch {
    /// From per-sample boolean masks (`true` = masked), checking they all mask the same number.
    pub fn from_bool_rows(rows: &[Vec<bool>]) -> Result<Self, PretrainError> {
        let num_patches = rows.first().map_or(0, Vec::len);
        if rows.is_empty() {
            return Err(PretrainError::Input("an empty batch of masks".into()));
        }
        let mut masked = Vec::with_capacity(rows.len());
        let mut visible = Vec::with_capacity(rows.len());
        for (b, r) in rows.iter().enumerate() {
            if r.len() != num_patches {
                return Err(PretrainError::Input(format!(
                    "mask row {b} has {} patches, row 0 has {num_patches}",
                    r.len()
                )));
            }
            masked.push((0..r.len()).filter(|&i| r[i]).collect::<Vec<_>>());
            visible.push((0..r.len()).filter(|&i| !r[i]).collect::<Vec<_>>());
        }
        let m = masked[0].len();
        if let Some(b) = masked.iter().position(|r| r.len() != m) {
            return Err(PretrainError::Input(format!(
                "every image must mask the same number of patches: row 0 masks {m}, row {b} masks {}",
                masked[b].len()
            )));
        }
        if m == 0 || m == num_patches {
            return Err(PretrainError::Input(format!(
                "a mask must leave both masked and visible patches, got {m} of {num_patches} masked"
            )));
        }
        Ok(Self {
            num_patches,
            masked,
            visible,
        })
    }

    /// From grid masks.
    pub fn from_masks(masks: &[GridMask]) -> Result<Self, PretrainError> {
        let rows: Vec<Vec<bool>> = masks.iter().map(|m| m.cells.clone()).collect();
        Self::from_bool_rows(&rows)
    }

    /// Batch size.
    pub fn batch(&self) -> usize {
        self.masked.len()
    }

    /// Masked patches per sample.
    pub fn num_masked(&self) -> usize {
        self.masked[0].len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn cfg(n: usize, min_block: usize, kind: MaskKind) -> MaskConfig {
        MaskConfig {
            kind,
            num_masked: n,
            min_block,
            max_block: None,
            min_aspect: 0.3,
        }
    }

    #[test]
    fn block_masks_have_exactly_n_patches_every_time() {
        for (grid, n, min_block) in [
            (14, 98, 16),
            (14, 75, 16),
            (8, 32, 4),
            (4, 8, 2),
            (14, 190, 16),
        ] {
            let generator = MaskGenerator::new(grid, &cfg(n, min_block, MaskKind::Block)).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(grid as u64 * 1000 + n as u64);
            for _ in 0..300 {
                let m = generator.sample(&mut rng);
                assert_eq!(m.count(), n, "grid {grid}, n {n}");
            }
        }
    }

    #[test]
    fn blocks_are_rectangles_inside_the_grid_and_cover_the_mask() {
        let generator = MaskGenerator::new(14, &cfg(98, 16, MaskKind::Block)).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..200 {
            let mut rects = Vec::new();
            let m = generator.sample_block(&mut rng, &mut rects);
            let mut union = vec![false; 196];
            for r in &rects {
                assert!(r.h >= 1 && r.w >= 1 && r.h < 14 && r.w < 14, "{r:?}");
                assert!(r.top + r.h <= 14 && r.left + r.w <= 14, "{r:?}");
                for i in r.top..r.top + r.h {
                    for j in r.left..r.left + r.w {
                        union[i * 14 + j] = true;
                    }
                }
            }
            assert_eq!(union, m.cells);
        }
        // A single round on an empty grid paints exactly one rectangle.
        let one = MaskGenerator::new(14, &cfg(30, 16, MaskKind::Block)).unwrap();
        let mut mask = GridMask {
            height: 14,
            width: 14,
            cells: vec![false; 196],
        };
        let mut rects = Vec::new();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let added = (0..50)
            .map(|_| one.one_block(&mut mask, 30, &mut rng, &mut rects))
            .find(|&d| d > 0)
            .unwrap();
        let r = rects[0];
        assert_eq!(added, r.h * r.w);
        let rows: Vec<usize> = (0..14)
            .filter(|i| (0..14).any(|j| mask.cells[i * 14 + j]))
            .collect();
        let cols: Vec<usize> = (0..14)
            .filter(|j| (0..14).any(|i| mask.cells[i * 14 + j]))
            .collect();
        assert_eq!(
            rows.len() * cols.len(),
            mask.count(),
            "the painted cells form a rectangle"
        );
    }

    #[test]
    fn every_patch_gets_masked_at_some_rate() {
        for kind in [MaskKind::Block, MaskKind::Random] {
            let generator = MaskGenerator::new(14, &cfg(98, 16, kind)).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(5);
            let mut hits = vec![0usize; 196];
            let draws = 2000;
            for _ in 0..draws {
                for i in generator.sample(&mut rng).masked() {
                    hits[i] += 1;
                }
            }
            let min = *hits.iter().min().unwrap() as f64 / draws as f64;
            let max = *hits.iter().max().unwrap() as f64 / draws as f64;
            // Block masks reach the corners less often (blocks never span the whole grid).
            assert!(
                min > 0.02,
                "{kind:?}: the least-masked patch is masked {min:.3} of the time"
            );
            assert!(
                max < 0.9,
                "{kind:?}: the most-masked patch is masked {max:.3} of the time"
            );
        }
    }

    #[test]
    fn same_seed_same_masks() {
        let generator = MaskGenerator::new(8, &cfg(32, 4, MaskKind::Block)).unwrap();
        let a: Vec<GridMask> = {
            let mut rng = ChaCha8Rng::seed_from_u64(11);
            (0..20).map(|_| generator.sample(&mut rng)).collect()
        };
        let b: Vec<GridMask> = {
            let mut rng = ChaCha8Rng::seed_from_u64(11);
            (0..20).map(|_| generator.sample(&mut rng)).collect()
        };
        assert_eq!(a, b);
    }

    #[test]
    fn mask_batch_rejects_unequal_rows() {
        let rows = vec![
            vec![true, false, false, true],
            vec![true, false, false, false],
        ];
        let err = MaskBatch::from_bool_rows(&rows).unwrap_err().to_string();
        assert!(err.contains("same number"), "{err}");
        let ok = MaskBatch::from_bool_rows(&[vec![true, false, true, false]]).unwrap();
        assert_eq!(ok.masked, vec![vec![0, 2]]);
        assert_eq!(ok.visible, vec![vec![1, 3]]);
    }
}
