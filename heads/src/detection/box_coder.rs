//! Box deltas (torchvision `BoxCoder`, Faster R-CNN's parametrisation):
//! `dx = wx·(gx − px)/pw`, `dy = wy·(gy − py)/ph`, `dw = ww·ln(gw/pw)`, `dh = wh·ln(gh/ph)`,
//! with widths `x2 − x1` (no `+1`) and centres `x1 + w/2`. Decoding clamps `dw`, `dh` (after
//! dividing by the weights) at `ln(1000/16)` so that no box grows more than 62.5×.
//!
//! The arithmetic is f32 in torchvision's order, so decoded coordinates agree to the last bit
//! in most cases (a coordinate near 300 has an ulp of 3e-5, more than the 1e-5 tolerance).
//! Encoding is plain arithmetic like torchvision's: a target of negative width gives a NaN
//! `dw`, a zero-width proposal an infinite `dx`; inputs must be finite.

use super::{BBox, Result, check_finite, invalid};

/// `ln(1000 / 16)`: the largest `dw`, `dh` applied when decoding.
pub const BBOX_XFORM_CLIP: f32 = 4.135_166_6;

/// Encoder / decoder of box deltas with per-coordinate weights `(wx, wy, ww, wh)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxCoder {
    /// `(wx, wy, ww, wh)`.
    pub weights: [f32; 4],
    /// Upper clamp of `dw`, `dh` on decode.
    pub clip: f32,
}

impl BoxCoder {
    /// A coder with `weights` and the standard clamp.
    pub fn new(weights: [f32; 4]) -> Result<Self> {
        if weights.iter().any(|w| !(w.is_finite() && *w > 0.0)) {
            return Err(invalid(format!(
                "box coder weights {weights:?} must be > 0"
            )));
        }
        Ok(Self {
            weights,
            clip: BBOX_XFORM_CLIP,
        })
    }

    /// The RPN's coder: weights (1, 1, 1, 1).
    pub fn rpn() -> Self {
        Self {
            weights: [1.0; 4],
            clip: BBOX_XFORM_CLIP,
        }
    }

    /// The RoI head's coder: weights (10, 10, 5, 5) (mmdet's stds 0.1, 0.1, 0.2, 0.2).
    pub fn roi_head() -> Self {
        Self {
            weights: [10.0, 10.0, 5.0, 5.0],
            clip: BBOX_XFORM_CLIP,
        }
    }

    /// Deltas that take each of `proposals` to the matching box of `targets`.
    pub fn encode(&self, targets: &[BBox], proposals: &[BBox]) -> Result<Vec<[f32; 4]>> {
        same_len(targets.len(), proposals.len())?;
        check_finite("targets", targets)?;
        check_finite("proposals", proposals)?;
        let [wx, wy, ww, wh] = self.weights;
        Ok(targets
            .iter()
            .zip(proposals)
            .map(|(g, p)| {
                let (pw, ph) = (p[2] - p[0], p[3] - p[1]);
                let (px, py) = (p[0] + 0.5 * pw, p[1] + 0.5 * ph);
                let (gw, gh) = (g[2] - g[0], g[3] - g[1]);
                let (gx, gy) = (g[0] + 0.5 * gw, g[1] + 0.5 * gh);
                [
                    wx * (gx - px) / pw,
                    wy * (gy - py) / ph,
                    ww * (gw / pw).ln(),
                    wh * (gh / ph).ln(),
                ]
            })
            .collect())
    }

    /// The boxes that `deltas` make of `boxes`.
    pub fn decode(&self, deltas: &[[f32; 4]], boxes: &[BBox]) -> Result<Vec<BBox>> {
        same_len(deltas.len(), boxes.len())?;
        check_finite("deltas", deltas)?;
        check_finite("boxes", boxes)?;
        let [wx, wy, ww, wh] = self.weights;
        Ok(deltas
            .iter()
            .zip(boxes)
            .map(|(d, b)| {
                let (w, h) = (b[2] - b[0], b[3] - b[1]);
                let (cx, cy) = (b[0] + 0.5 * w, b[1] + 0.5 * h);
                let (dx, dy) = (d[0] / wx, d[1] / wy);
                let dw = (d[2] / ww).min(self.clip);
                let dh = (d[3] / wh).min(self.clip);
                let (px, py) = (dx * w + cx, dy * h + cy);
                // exp correctly rounded (through f64), as torchvision's vectorised exp gives:
                // f32 `expf` may be an ulp off, and that ulp shows at coordinates above 128.
                let exp = |v: f32| f64::from(v).exp() as f32;
                let (pw, ph) = (exp(dw) * w, exp(dh) * h);
                let (hw, hh) = (0.5 * pw, 0.5 * ph);
                [px - hw, py - hh, px + hw, py + hh]
            })
            .collect())
    }
}

fn same_len(a: usize, b: usize) -> Result<()> {
    if a == b {
        Ok(())
    } else {
        Err(invalid(format!("{a} deltas or targets for {b} boxes")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_is_ln_1000_over_16() {
        assert_eq!(BBOX_XFORM_CLIP, (1000.0f64 / 16.0).ln() as f32);
    }

    #[test]
    fn encode_then_decode_is_the_identity() {
        let props = [[10.0, 20.0, 50.0, 40.0], [0.0, 0.0, 8.0, 16.0]];
        let gts = [[12.0, 18.0, 60.0, 44.0], [1.0, 2.0, 5.0, 20.0]];
        for coder in [BoxCoder::rpn(), BoxCoder::roi_head()] {
            let d = coder.encode(&gts, &props).unwrap();
            let back = coder.decode(&d, &props).unwrap();
            for (b, g) in back.iter().zip(&gts) {
                for k in 0..4 {
                    assert!((b[k] - g[k]).abs() < 1e-4, "{b:?} vs {g:?}");
                }
            }
        }
        // centre shift of half a width: dx = wx · 0.5.
        let d = BoxCoder::roi_head()
            .encode(&[[20.0, 0.0, 60.0, 10.0]], &[[0.0, 0.0, 40.0, 10.0]])
            .unwrap();
        assert_eq!(d[0], [5.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn decode_clamps_the_scale() {
        let b = BoxCoder::rpn()
            .decode(&[[0.0, 0.0, 100.0, -1.0]], &[[0.0, 0.0, 2.0, 2.0]])
            .unwrap();
        let w = b[0][2] - b[0][0];
        assert!((w - 2.0 * 62.5).abs() < 1e-3, "{w}");
        assert!((b[0][3] - b[0][1] - 2.0 * (-1.0f32).exp()).abs() < 1e-6);
    }

    #[test]
    fn bad_input_is_an_error() {
        let c = BoxCoder::rpn();
        assert!(c.encode(&[[0.0; 4]], &[]).is_err());
        assert!(c.decode(&[[f32::NAN, 0.0, 0.0, 0.0]], &[[0.0; 4]]).is_err());
        assert!(BoxCoder::new([1.0, 0.0, 1.0, 1.0]).is_err());
        assert!(c.encode(&[], &[]).unwrap().is_empty());
    }
}
