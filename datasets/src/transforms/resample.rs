//! Image resampling with the semantics of the reference pipelines.
//!
//! * [`resize_pil`]: Pillow's `Image.resize` (bilinear, bicubic `a = -0.5`, Lanczos-3), which
//!   torchvision uses on PIL images. It is antialiased (the filter support widens when
//!   downscaling), picks the pass order as Pillow 13 does, rounds to 8 bits after each pass
//!   and uses Pillow's 22-bit fixed-point coefficients, so the output is bit-identical to
//!   Pillow's (checked against Pillow-made fixtures in `tests/reference_parity.rs`).
//! * [`resize_bilinear_cv`] / [`resize_nearest_cv`]: OpenCV's `INTER_LINEAR` / `INTER_NEAREST`,
//!   which mmcv's `imresize` uses for mmsegmentation and mmdetection. Bilinear is not
//!   antialiased; nearest picks `floor(dst * src / dst_size)` (OpenCV's legacy rule).
//!   Bilinear is computed in floating point and rounded, within ±1 of OpenCV's fixed point.
//!
//! Why not `image::imageops::resize`: it has no crop box (RandomResizedCrop resamples a
//! sub-rectangle), it does not round to 8 bits between passes as Pillow does, and it recomputes
//! weights per pixel. A hand-written separable resampler with precomputed fixed-point weights is
//! short, exact and faster.

use image::RgbImage;

/// A resampling filter (Pillow's definitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Triangle filter, support 1 (`PIL.Image.BILINEAR`).
    Bilinear,
    /// Cubic convolution with `a = -0.5`, support 2 (`PIL.Image.BICUBIC`).
    Bicubic,
    /// Lanczos windowed sinc, support 3 (`PIL.Image.LANCZOS`).
    Lanczos,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn eval(self, x: f64) -> f64 {
        match self {
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

/// An axis-aligned rectangle of pixels: columns `x..x+w`, rows `y..y+h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rect {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

impl Rect {
    /// The whole of a `w × h` image.
    pub fn full(w: u32, h: u32) -> Self {
        Rect { x: 0, y: 0, w, h }
    }

    /// The same rectangle mirrored left-right inside an image of width `image_w`.
    pub fn mirrored(self, image_w: u32) -> Self {
        Rect {
            x: image_w - self.x - self.w,
            ..self
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Fixed-point weights of one axis: for output `i`, inputs `start[i]..start[i]+len[i]` with
/// weights `k[i*ksize..]`.
struct Weights {
    start: Vec<usize>,
    len: Vec<usize>,
    ksize: usize,
    k: Vec<i32>,
}

fn precompute(in_size: usize, out_size: usize, filter: Filter) -> Weights {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut start = Vec::with_capacity(out_size);
    let mut len = Vec::with_capacity(out_size);
    let mut k = vec![0i32; out_size * ksize];
    let mut w = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's `(int)` truncates toward zero; negative values are clamped to 0 right after.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let mut ww = 0.0;
        for (x, wx) in w.iter_mut().enumerate().take(n) {
            let v = filter.eval((x as f64 + xmin as f64 - center + 0.5) * ss);
            *wx = v;
            ww += v;
        }
        let kk = &mut k[xx * ksize..(xx + 1) * ksize];
        for x in 0..n {
            let v = if ww != 0.0 { w[x] / ww } else { w[x] };
            let f = v * (1u32 << PRECISION_BITS) as f64;
            kk[x] = if v < 0.0 {
                (f - 0.5) as i32
            } else {
                (f + 0.5) as i32
            };
        }
        start.push(xmin);
        len.push(n);
    }
    Weights {
        start,
        len,
        ksize,
        k,
    }
}

#[inline]
fn clip8(ss: i32) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// A window of an interleaved RGB buffer.
#[derive(Clone, Copy)]
struct View<'a> {
    buf: &'a [u8],
    stride: usize,
    x0: usize,
    y0: usize,
    w: usize,
}

impl View<'_> {
    fn row(&self, y: usize) -> &[u8] {
        let s = ((self.y0 + y) * self.stride + self.x0) * 3;
        &self.buf[s..s + self.w * 3]
    }
}

/// Horizontal pass over rows `rows` of `v`, output width `weights.len`.
fn horizontal_pass(v: View<'_>, rows: std::ops::Range<usize>, wt: &Weights) -> Vec<u8> {
    let ow = wt.start.len();
    let mut out = vec![0u8; rows.len() * ow * 3];
    for (r, y) in rows.enumerate() {
        let row = v.row(y);
        let orow = &mut out[r * ow * 3..(r + 1) * ow * 3];
        for xx in 0..ow {
            let k = &wt.k[xx * wt.ksize..xx * wt.ksize + wt.len[xx]];
            let px = &row[wt.start[xx] * 3..];
            let init = 1i32 << (PRECISION_BITS - 1);
            let (mut s0, mut s1, mut s2) = (init, init, init);
            for (p, &kv) in px.chunks_exact(3).zip(k) {
                s0 += p[0] as i32 * kv;
                s1 += p[1] as i32 * kv;
                s2 += p[2] as i32 * kv;
            }
            orow[xx * 3] = clip8(s0);
            orow[xx * 3 + 1] = clip8(s1);
            orow[xx * 3 + 2] = clip8(s2);
        }
    }
    out
}

/// Vertical pass over `v` (all its columns); input row `i` is `v.row(i - row_offset)`.
fn vertical_pass(v: View<'_>, wt: &Weights, row_offset: usize) -> Vec<u8> {
    let oh = wt.start.len();
    let w3 = v.w * 3;
    let mut out = vec![0u8; oh * w3];
    let mut acc = vec![0i32; w3];
    for yy in 0..oh {
        let k = &wt.k[yy * wt.ksize..yy * wt.ksize + wt.len[yy]];
        acc.fill(1i32 << (PRECISION_BITS - 1));
        for (i, &kv) in k.iter().enumerate() {
            let row = v.row(wt.start[yy] + i - row_offset);
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += p as i32 * kv;
            }
        }
        for (o, &a) in out[yy * w3..(yy + 1) * w3].iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

/// Resamples the `crop` region of `src` to `out_w × out_h` exactly as Pillow 13's
/// `img.crop(box).resize((out_w, out_h), filter)` does.
///
/// Pillow runs the vertical pass first when the height shrinks by more than twice as many
/// pixels as the width (Pillow ≤ 12 always ran the horizontal pass first; the two orders can
/// differ by one level on a few pixels, since each pass rounds to 8 bits).
///
/// # Panics
/// If `crop` is empty, lies outside `src`, or an output size is 0 (programming errors: the
/// transforms in this crate always pass valid rectangles).
pub fn resize_pil(src: &RgbImage, crop: Rect, out_w: u32, out_h: u32, filter: Filter) -> RgbImage {
    assert!(
        crop.w > 0 && crop.h > 0 && out_w > 0 && out_h > 0,
        "empty resize"
    );
    assert!(
        crop.x + crop.w <= src.width() && crop.y + crop.h <= src.height(),
        "crop outside the image"
    );
    let (cw, ch) = (crop.w as usize, crop.h as usize);
    let (ow, oh) = (out_w as usize, out_h as usize);
    let need_h = ow != cw;
    let need_v = oh != ch;
    let view = View {
        buf: src.as_raw(),
        stride: src.width() as usize,
        x0: crop.x as usize,
        y0: crop.y as usize,
        w: cw,
    };
    let done = |data: Vec<u8>| RgbImage::from_raw(out_w, out_h, data).expect("buffer size matches");
    if !need_h && !need_v {
        return done((0..ch).flat_map(|y| view.row(y).iter().copied()).collect());
    }
    let dh = ch as i64 - oh as i64;
    let dw = cw as i64 - ow as i64;
    let horizontal_first = !(dh > 0 && dh > dw * 2);
    let horiz = need_h.then(|| precompute(cw, ow, filter));
    let vert = need_v.then(|| precompute(ch, oh, filter));
    match (horiz, vert) {
        (Some(hz), None) => done(horizontal_pass(view, 0..ch, &hz)),
        (None, Some(vt)) => done(vertical_pass(view, &vt, 0)),
        (Some(hz), Some(vt)) if horizontal_first => {
            // Only the source rows the vertical pass reads (Pillow's `ybox_first..ybox_last`).
            let y_first = vt.start[0];
            let y_last = vt.start[oh - 1] + vt.len[oh - 1];
            let stage = horizontal_pass(view, y_first..y_last, &hz);
            let sv = View {
                buf: &stage,
                stride: ow,
                x0: 0,
                y0: 0,
                w: ow,
            };
            done(vertical_pass(sv, &vt, y_first))
        }
        (Some(hz), Some(vt)) => {
            let stage = vertical_pass(view, &vt, 0);
            let sv = View {
                buf: &stage,
                stride: cw,
                x0: 0,
                y0: 0,
                w: cw,
            };
            done(horizontal_pass(sv, 0..oh, &hz))
        }
        (None, None) => unreachable!("handled above"),
    }
}

/// OpenCV `INTER_LINEAR` source index and weight for each output coordinate.
fn cv_linear_axis(in_size: usize, out_size: usize) -> Vec<(usize, usize, f32)> {
    let scale = in_size as f64 / out_size as f64;
    (0..out_size)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = f.floor() as i64;
            let mut t = f - s as f32;
            if s < 0 {
                s = 0;
                t = 0.0;
            }
            if s >= in_size as i64 - 1 {
                s = in_size as i64 - 1;
                t = 0.0;
            }
            let s = s as usize;
            (s, (s + 1).min(in_size - 1), t)
        })
        .collect()
}

/// Resizes an RGB image with OpenCV's `INTER_LINEAR` rule (no antialiasing).
pub fn resize_bilinear_cv(src: &RgbImage, out_w: u32, out_h: u32) -> RgbImage {
    let (iw, ih) = (src.width() as usize, src.height() as usize);
    let (ow, oh) = (out_w as usize, out_h as usize);
    let xs = cv_linear_axis(iw, ow);
    let ys = cv_linear_axis(ih, oh);
    let raw = src.as_raw();
    // Horizontal pass in f32 for the rows needed, then vertical.
    let mut rows_cache: Vec<Option<Vec<f32>>> = vec![None; ih];
    let horiz = |y: usize, cache: &mut Vec<Option<Vec<f32>>>| {
        if cache[y].is_none() {
            let row = &raw[y * iw * 3..(y + 1) * iw * 3];
            let mut h = vec![0f32; ow * 3];
            for (x, &(a, b, t)) in xs.iter().enumerate() {
                for c in 0..3 {
                    h[x * 3 + c] = row[a * 3 + c] as f32 * (1.0 - t) + row[b * 3 + c] as f32 * t;
                }
            }
            cache[y] = Some(h);
        }
    };
    let mut out = vec![0u8; ow * oh * 3];
    for (y, &(a, b, t)) in ys.iter().enumerate() {
        horiz(a, &mut rows_cache);
        horiz(b, &mut rows_cache);
        let ra = rows_cache[a].as_ref().expect("filled");
        let rb = rows_cache[b].as_ref().expect("filled");
        for (i, o) in out[y * ow * 3..(y + 1) * ow * 3].iter_mut().enumerate() {
            let v = ra[i] * (1.0 - t) + rb[i] * t;
            *o = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    RgbImage::from_raw(out_w, out_h, out).expect("buffer size matches")
}

/// OpenCV `INTER_NEAREST` source index for each output coordinate: `floor(d * in / out)`.
pub fn cv_nearest_axis(in_size: usize, out_size: usize) -> Vec<usize> {
    let scale = in_size as f64 / out_size as f64;
    (0..out_size)
        .map(|d| ((d as f64 * scale).floor() as usize).min(in_size - 1))
        .collect()
}

/// Resizes a single-channel map (labels, masks) with OpenCV's `INTER_NEAREST` rule.
pub fn resize_nearest_cv(src: &[u8], w: u32, h: u32, out_w: u32, out_h: u32) -> Vec<u8> {
    let xs = cv_nearest_axis(w as usize, out_w as usize);
    let ys = cv_nearest_axis(h as usize, out_h as usize);
    let mut out = Vec::with_capacity(out_w as usize * out_h as usize);
    for &sy in &ys {
        let row = &src[sy * w as usize..(sy + 1) * w as usize];
        out.extend(xs.iter().map(|&sx| row[sx]));
    }
    out
}

/// Flips an interleaved RGB image left-right in place.
pub fn flip_rgb_horizontal(img: &mut RgbImage) {
    image::imageops::flip_horizontal_in_place(img);
}

/// Flips a single-channel `w`-wide row-major map left-right in place.
pub fn flip_map_horizontal(data: &mut [u8], w: usize) {
    if w == 0 {
        return;
    }
    for row in data.chunks_mut(w) {
        row.reverse();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (x * 255 / w.max(1)) as u8,
                (y * 255 / h.max(1)) as u8,
                ((x * 31 + y * 17) % 256) as u8,
            ])
        })
    }

    #[test]
    fn identity_resize_is_a_copy_of_the_crop() {
        let img = ramp(9, 7);
        let crop = Rect {
            x: 2,
            y: 1,
            w: 5,
            h: 4,
        };
        for f in [Filter::Bilinear, Filter::Bicubic, Filter::Lanczos] {
            let out = resize_pil(&img, crop, 5, 4, f);
            let expect = image::imageops::crop_imm(&img, 2, 1, 5, 4).to_image();
            assert_eq!(out, expect);
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = RgbImage::from_pixel(13, 11, image::Rgb([200, 3, 77]));
        for f in [Filter::Bilinear, Filter::Bicubic, Filter::Lanczos] {
            for (w, h) in [(5, 4), (26, 30), (13, 3), (1, 1)] {
                let out = resize_pil(&img, Rect::full(13, 11), w, h, f);
                assert!(out.pixels().all(|p| p.0 == [200, 3, 77]), "{f:?} {w}x{h}");
            }
        }
    }

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for f in [Filter::Bilinear, Filter::Bicubic, Filter::Lanczos] {
            for (i, o) in [(256, 224), (37, 32), (10, 37), (100, 7)] {
                let w = precompute(i, o, f);
                for xx in 0..o {
                    let s: i64 = w.k[xx * w.ksize..xx * w.ksize + w.len[xx]]
                        .iter()
                        .map(|&v| v as i64)
                        .sum();
                    assert!(
                        (s - (1 << PRECISION_BITS)).abs() <= w.len[xx] as i64,
                        "{f:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn mirrored_crop_then_flip_equals_flip_then_crop() {
        let img = ramp(23, 17);
        let crop = Rect {
            x: 3,
            y: 2,
            w: 15,
            h: 11,
        };
        let mut flipped = img.clone();
        flip_rgb_horizontal(&mut flipped);
        let a = resize_pil(&flipped, crop, 8, 6, Filter::Bicubic);
        let mut b = resize_pil(&img, crop.mirrored(23), 8, 6, Filter::Bicubic);
        flip_rgb_horizontal(&mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn nearest_follows_opencv_rule() {
        // 4 -> 3: floor(d * 4/3) = 0, 1, 2.
        assert_eq!(cv_nearest_axis(4, 3), vec![0, 1, 2]);
        // 2 -> 5: floor(d * 0.4) = 0, 0, 0, 1, 1.
        assert_eq!(cv_nearest_axis(2, 5), vec![0, 0, 0, 1, 1]);
        let m = resize_nearest_cv(&[1, 2, 3, 4], 2, 2, 4, 4);
        assert_eq!(m, vec![1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
    }

    #[test]
    fn bilinear_cv_upsample_interpolates() {
        let img = RgbImage::from_fn(2, 1, |x, _| image::Rgb([x as u8 * 100, 0, 0]));
        let out = resize_bilinear_cv(&img, 4, 1);
        // OpenCV: centres at -0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
        let r: Vec<u8> = out.pixels().map(|p| p.0[0]).collect();
        assert_eq!(r, vec![0, 25, 75, 100]);
    }
}
