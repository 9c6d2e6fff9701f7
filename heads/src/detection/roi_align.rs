//! RoIAlign (torchvision `roi_align`; Mask R-CNN §3): average of bilinear samples on a regular
//! grid in each output bin, differentiable with respect to the features.
//!
//! The sample positions depend on the boxes only, so they are computed on the CPU (in f64): each
//! output bin becomes a short list of (feature pixel, weight) taps, duplicates merged. The op is
//! then a gather of those pixels from the `[N·H·W, C]` features and a weighted sum (a batched
//! matmul), plain burn ops, so autodiff gives the gradient (a scatter-add) for free. The bilinear
//! weights of a bin are separable (rows × columns), which is how they are built.
//!
//! Conventions, as torchvision's kernel: box corners are scaled by `spatial_scale` and shifted
//! by −0.5 when `aligned` (the pixel-centre model, detectron2's `ROIAlignV2`); without it
//! (the legacy op) a RoI is at least 1×1 feature pixel. `sampling_ratio = 0` takes
//! `⌈roi_size / output_size⌉` samples per bin and axis. A sample more than one pixel outside the
//! map contributes zero; one within a pixel of the border is clamped onto it.

use burn::tensor::{Int, Tensor, TensorData};

use super::{BBox, DetectionError, Result, check_boxes, invalid};

/// Upper bound on the elements of one gathered chunk (`bins × taps × channels`).
const CHUNK_ELEMENTS: usize = 1 << 24;

/// One region of interest: a box in image coordinates on feature map `batch`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Roi {
    /// Index of the image in the batch.
    pub batch: usize,
    /// `[x1, y1, x2, y2]` in image pixels.
    pub bbox: BBox,
}

/// Settings of RoIAlign.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoiAlignConfig {
    /// Output bins (height, width): 7×7 for the box head, 14×14 for the mask head.
    pub output_size: (usize, usize),
    /// Feature-map size over image size (1 / stride).
    pub spatial_scale: f32,
    /// Samples per bin and axis; 0 = adaptive, `⌈roi_size / output_size⌉`.
    pub sampling_ratio: usize,
    /// Pixel-centre alignment (shift by −0.5); `false` is the legacy op.
    pub aligned: bool,
}

impl RoiAlignConfig {
    /// Aligned RoIAlign with adaptive sampling (Mask R-CNN's setting) onto `size × size` bins.
    pub fn new(size: usize, spatial_scale: f32) -> Self {
        Self {
            output_size: (size, size),
            spatial_scale,
            sampling_ratio: 0,
            aligned: true,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.output_size.0 == 0 || self.output_size.1 == 0 {
            return Err(invalid(format!(
                "RoIAlign output size {:?} has a zero side",
                self.output_size
            )));
        }
        if !(self.spatial_scale.is_finite() && self.spatial_scale > 0.0) {
            return Err(invalid(format!(
                "RoIAlign spatial scale {} must be > 0",
                self.spatial_scale
            )));
        }
        Ok(())
    }
}

/// Taps of one axis for bin `p`: (pixel, weight / samples), duplicates merged.
fn axis_taps(start: f64, bin: f64, grid: usize, p: usize, size: usize) -> Vec<(usize, f64)> {
    let mut taps: Vec<(usize, f64)> = Vec::with_capacity(2 * grid);
    let mut add = |i: usize, w: f64| match taps.iter_mut().find(|t| t.0 == i) {
        Some(t) => t.1 += w,
        None => taps.push((i, w)),
    };
    for s in 0..grid {
        let v = start + p as f64 * bin + (s as f64 + 0.5) * bin / grid as f64;
        if v < -1.0 || v > size as f64 {
            continue;
        }
        let v = v.max(0.0);
        let lo = v as usize;
        let (lo, hi, v) = if lo + 1 >= size {
            (size - 1, size - 1, (size - 1) as f64)
        } else {
            (lo, lo + 1, v)
        };
        let l = v - lo as f64;
        add(lo, (1.0 - l) / grid as f64);
        add(hi, l / grid as f64);
    }
    taps
}

/// Gather indices into `[N·H·W]` and weights, `taps` per output bin (zero-weight padding).
struct Taps {
    taps: usize,
    index: Vec<i64>,
    weight: Vec<f32>,
}

fn build_taps(cfg: &RoiAlignConfig, rois: &[Roi], n: usize, h: usize, w: usize) -> Result<Taps> {
    let (ph, pw) = cfg.output_size;
    let offset = if cfg.aligned { 0.5 } else { 0.0 };
    let scale = f64::from(cfg.spatial_scale);
    let mut bins: Vec<Vec<(usize, f64)>> = Vec::with_capacity(rois.len() * ph * pw);
    for roi in rois {
        let b = roi.bbox.map(f64::from);
        let (x0, y0) = (b[0] * scale - offset, b[1] * scale - offset);
        let (mut rw, mut rh) = (b[2] * scale - offset - x0, b[3] * scale - offset - y0);
        if !cfg.aligned {
            rw = rw.max(1.0);
            rh = rh.max(1.0);
        }
        let (bin_h, bin_w) = (rh / ph as f64, rw / pw as f64);
        let (gh, gw) = match cfg.sampling_ratio {
            0 => (bin_h.ceil() as usize, bin_w.ceil() as usize),
            s => (s, s),
        };
        let rows: Vec<_> = (0..ph).map(|p| axis_taps(y0, bin_h, gh, p, h)).collect();
        let cols: Vec<_> = (0..pw).map(|p| axis_taps(x0, bin_w, gw, p, w)).collect();
        let base = roi.batch * h * w;
        for ry in &rows {
            for cx in &cols {
                let mut bin = Vec::with_capacity(ry.len() * cx.len());
                for &(y, wy) in ry {
                    for &(x, wx) in cx {
                        bin.push((base + y * w + x, wy * wx));
                    }
                }
                bins.push(bin);
            }
        }
    }
    debug_assert!(rois.iter().all(|r| r.batch < n));
    let taps = bins.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut index = vec![0i64; bins.len() * taps];
    let mut weight = vec![0f32; bins.len() * taps];
    for (b, bin) in bins.iter().enumerate() {
        let pad = bin.first().map_or(0, |t| t.0);
        for k in 0..taps {
            let (i, wt) = bin.get(k).copied().unwrap_or((pad, 0.0));
            index[b * taps + k] = i as i64;
            weight[b * taps + k] = wt as f32;
        }
    }
    Ok(Taps {
        taps,
        index,
        weight,
    })
}

/// RoIAlign of `rois` on `features` (`[N, C, H, W]`): `[R, C, out_h, out_w]`, differentiable
/// with respect to `features` on an autodiff device.
pub fn roi_align(features: Tensor<4>, rois: &[Roi], cfg: &RoiAlignConfig) -> Result<Tensor<4>> {
    cfg.validate()?;
    let [n, c, h, w] = features.dims();
    if n == 0 || c == 0 || h == 0 || w == 0 {
        return Err(invalid(format!(
            "RoIAlign on an empty feature map [{n}, {c}, {h}, {w}]"
        )));
    }
    let boxes: Vec<BBox> = rois.iter().map(|r| r.bbox).collect();
    check_boxes("rois", &boxes)?;
    if let Some((i, r)) = rois.iter().enumerate().find(|(_, r)| r.batch >= n) {
        return Err(invalid(format!(
            "rois[{i}] is on image {} of a batch of {n}",
            r.batch
        )));
    }
    let (ph, pw) = cfg.output_size;
    let device = features.device();
    if rois.is_empty() {
        return Ok(Tensor::zeros([0, c, ph, pw], &device));
    }
    let taps = build_taps(cfg, rois, n, h, w)?;
    let k = taps.taps;
    let per_roi = ph * pw;
    let flat = features.permute([0, 2, 3, 1]).reshape([n * h * w, c]);
    let chunk = (CHUNK_ELEMENTS / (per_roi * k * c)).max(1);
    let mut outs = Vec::with_capacity(rois.len().div_ceil(chunk));
    for start in (0..rois.len()).step_by(chunk) {
        let r = chunk.min(rois.len() - start);
        let (lo, hi) = (start * per_roi * k, (start + r) * per_roi * k);
        let bins = r * per_roi;
        let index = Tensor::<1, Int>::from_data(
            TensorData::new(taps.index[lo..hi].to_vec(), [bins * k]),
            &device,
        );
        let weight = Tensor::<3>::from_data(
            TensorData::new(taps.weight[lo..hi].to_vec(), [bins, 1, k]),
            &device,
        );
        let gathered = flat.clone().select(0, index).reshape([bins, k, c]);
        outs.push(
            weight
                .matmul(gathered)
                .reshape([r, ph, pw, c])
                .permute([0, 3, 1, 2]),
        );
    }
    Ok(if outs.len() == 1 {
        outs.pop()
            .ok_or_else(|| DetectionError::Backend("no chunk".into()))?
    } else {
        Tensor::cat(outs, 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn ramp(dev: &Device, h: usize, w: usize) -> Tensor<4> {
        // channel 0: x, channel 1: y.
        let mut v = Vec::with_capacity(2 * h * w);
        v.extend((0..h * w).map(|i| (i % w) as f32));
        v.extend((0..h * w).map(|i| (i / w) as f32));
        Tensor::from_data(TensorData::new(v, [1, 2, h, w]), dev)
    }

    #[test]
    fn bilinear_samples_of_a_ramp_are_the_bin_centres() {
        let dev = Device::flex();
        let roi = Roi {
            batch: 0,
            bbox: [4.0, 6.0, 16.0, 12.0],
        };
        for sampling_ratio in [0, 2, 3] {
            let cfg = RoiAlignConfig {
                output_size: (3, 4),
                spatial_scale: 0.5,
                sampling_ratio,
                aligned: true,
            };
            let out = roi_align(ramp(&dev, 10, 12), &[roi], &cfg).unwrap();
            assert_eq!(out.dims(), [1, 2, 3, 4]);
            let v = out.try_into_vec_as::<f32>().unwrap();
            // feature x from 2 − 0.5 to 8 − 0.5 in 4 bins of 1.5: centres 2.25, 3.75, …
            for (px, got) in v[..4].iter().enumerate() {
                let want = 1.5 + 1.5 * (px as f32 + 0.5);
                assert!((got - want).abs() < 1e-5, "x bin {px}: {got}");
            }
            // y from 3 − 0.5 to 6 − 0.5 in 3 bins of 1.
            for py in 0..3 {
                let want = 2.5 + py as f32 + 0.5;
                assert!((v[12 + py * 4] - want).abs() < 1e-5, "y bin {py}");
            }
        }
    }

    #[test]
    fn samples_outside_the_map_are_zero_and_legacy_rois_are_at_least_one_pixel() {
        let dev = Device::flex();
        let ones = Tensor::<4>::ones([1, 1, 4, 4], &dev);
        let far = Roi {
            batch: 0,
            bbox: [20.0, 20.0, 30.0, 30.0],
        };
        let out = roi_align(ones.clone(), &[far], &RoiAlignConfig::new(2, 1.0)).unwrap();
        assert_eq!(out.try_into_vec_as::<f32>().unwrap(), vec![0.0; 4]);
        // A point RoI: aligned has no samples (0), legacy samples a 1×1 area (1).
        let point = Roi {
            batch: 0,
            bbox: [1.0, 1.0, 1.0, 1.0],
        };
        let out = roi_align(ones.clone(), &[point], &RoiAlignConfig::new(2, 1.0)).unwrap();
        assert_eq!(out.try_into_vec_as::<f32>().unwrap(), vec![0.0; 4]);
        let legacy = RoiAlignConfig {
            aligned: false,
            sampling_ratio: 2,
            ..RoiAlignConfig::new(2, 1.0)
        };
        let out = roi_align(ones, &[point], &legacy).unwrap();
        assert_eq!(out.try_into_vec_as::<f32>().unwrap(), vec![1.0; 4]);
    }

    #[test]
    fn gradient_of_the_sum_spreads_each_bin_over_its_taps() {
        let dev = Device::flex().autodiff();
        let feat = Tensor::<4>::zeros([2, 3, 8, 8], &dev).require_grad();
        let rois = [
            Roi {
                batch: 1,
                bbox: [1.0, 1.0, 6.0, 5.0],
            },
            Roi {
                batch: 0,
                bbox: [0.0, 2.0, 7.0, 7.0],
            },
        ];
        let out = roi_align(feat.clone(), &rois, &RoiAlignConfig::new(3, 1.0)).unwrap();
        let grads = out.sum().backward();
        let g = feat.grad(&grads).unwrap();
        let per_image: Vec<f32> = g
            .sum_dim(3)
            .sum_dim(2)
            .sum_dim(1)
            .try_into_vec_as::<f32>()
            .unwrap();
        // every bin is inside the map, so its weights sum to 1: 9 bins × 3 channels per RoI.
        assert!((per_image[0] - 27.0).abs() < 1e-4, "{per_image:?}");
        assert!((per_image[1] - 27.0).abs() < 1e-4, "{per_image:?}");
    }

    #[test]
    fn bad_input_and_no_rois() {
        let dev = Device::flex();
        let f = Tensor::<4>::ones([1, 2, 4, 4], &dev);
        let cfg = RoiAlignConfig::new(2, 0.5);
        let roi = |batch, bbox| Roi { batch, bbox };
        assert!(roi_align(f.clone(), &[roi(1, [0.0; 4])], &cfg).is_err());
        assert!(roi_align(f.clone(), &[roi(0, [2.0, 0.0, 1.0, 1.0])], &cfg).is_err());
        assert!(roi_align(f.clone(), &[roi(0, [f32::NAN, 0.0, 1.0, 1.0])], &cfg).is_err());
        assert!(roi_align(f.clone(), &[], &RoiAlignConfig::new(0, 0.5)).is_err());
        assert!(roi_align(f.clone(), &[], &RoiAlignConfig::new(2, 0.0)).is_err());
        assert_eq!(roi_align(f, &[], &cfg).unwrap().dims(), [0, 2, 2, 2]);
    }
}
