//! Reading and writing image files: RGB images, 8-bit label maps, atomic writes.

use std::path::Path;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType as PngFilter, PngEncoder};
use image::{DynamicImage, ExtendedColorType, ImageEncoder, ImageFormat, RgbImage};

use crate::error::{DatasetError, Result};

/// File extensions treated as images (compared case-insensitively, so ImageNet's `.JPEG` counts).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// Whether `path` has an image extension ([`IMAGE_EXTENSIONS`], any case).
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// A single-channel 8-bit label map (semantic segmentation target), row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMap {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `height * width` values, row-major.
    pub data: Vec<u8>,
}

impl LabelMap {
    /// A map filled with `value`.
    pub fn filled(width: u32, height: u32, value: u8) -> Self {
        LabelMap {
            width,
            height,
            data: vec![value; width as usize * height as usize],
        }
    }

    /// The value at column `x`, row `y`.
    pub fn get(&self, x: u32, y: u32) -> u8 {
        self.data[y as usize * self.width as usize + x as usize]
    }
}

/// Reads an image file as 8-bit RGB (grayscale is expanded, alpha dropped, 16-bit scaled down).
///
/// A truncated or corrupt file is a [`DatasetError::ImageDecode`] naming the file.
pub fn load_rgb(path: impl AsRef<Path>) -> Result<RgbImage> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| DatasetError::io(path, e))?;
    decode_rgb(&bytes, path)
}

/// Decodes an in-memory image file as 8-bit RGB; `path` only names it in errors.
pub fn decode_rgb(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    Ok(decode(bytes, path)?.into_rgb8())
}

fn decode(bytes: &[u8], path: &Path) -> Result<DynamicImage> {
    let fail = |reason: String| DatasetError::ImageDecode {
        path: path.to_path_buf(),
        reason,
    };
    let format = image::guess_format(bytes).map_err(|e| fail(e.to_string()))?;
    if format == ImageFormat::Jpeg {
        check_jpeg_complete(bytes).map_err(fail)?;
    }
    image::load_from_memory_with_format(bytes, format).map_err(|e| fail(e.to_string()))
}

/// Some JPEG decoders fill a truncated scan with grey instead of failing. PIL refuses such a file
/// ("image file is truncated"), and so do we: the data must end with the EOI marker `FF D9`
/// (trailing zero padding, which some cameras write, is allowed).
fn check_jpeg_complete(bytes: &[u8]) -> std::result::Result<(), String> {
    let mut end = bytes.len();
    while end > 0 && bytes[end - 1] == 0 {
        end -= 1;
    }
    if end >= 2 && bytes[end - 2] == 0xFF && bytes[end - 1] == 0xD9 {
        Ok(())
    } else {
        Err(format!(
            "JPEG data is truncated (no end-of-image marker; file has {} bytes)",
            bytes.len()
        ))
    }
}

/// Reads an 8-bit single-channel PNG label map (the ADE20K annotation format).
///
/// Palette, RGB and 16-bit PNGs are rejected with [`DatasetError::LabelFormat`]: their decoded
/// values are not class indices.
pub fn load_label_map(path: impl AsRef<Path>) -> Result<LabelMap> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| DatasetError::io(path, e))?;
    let format = image::guess_format(&bytes).map_err(|e| DatasetError::ImageDecode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if format != ImageFormat::Png {
        return Err(DatasetError::LabelFormat {
            path: path.to_path_buf(),
            found: format!("a {format:?} file"),
        });
    }
    match decode(&bytes, path)? {
        DynamicImage::ImageLuma8(img) => {
            let (width, height) = img.dimensions();
            Ok(LabelMap {
                width,
                height,
                data: img.into_raw(),
            })
        }
        other => Err(DatasetError::LabelFormat {
            path: path.to_path_buf(),
            found: format!("{:?} pixels", other.color()),
        }),
    }
}

/// Writes `bytes` to `path` atomically and durably ([`cae_fsio::write_atomic`], the workspace's one
/// implementation), with the error naming the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    cae_fsio::write_atomic(path, bytes).map_err(|e| DatasetError::io(path, e))
}

/// PNG bytes of an 8-bit RGB or grayscale buffer (deterministic for a given input).
pub fn encode_png(
    data: &[u8],
    width: u32,
    height: u32,
    color: ExtendedColorType,
    path: &Path,
) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    PngEncoder::new_with_quality(&mut buf, CompressionType::Default, PngFilter::Adaptive)
        .write_image(data, width, height, color)
        .map_err(|e| DatasetError::ImageEncode {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok(buf)
}

/// Writes an RGB image as PNG, atomically.
pub fn save_rgb_png(path: &Path, img: &RgbImage) -> Result<()> {
    let bytes = encode_png(
        img.as_raw(),
        img.width(),
        img.height(),
        ExtendedColorType::Rgb8,
        path,
    )?;
    write_atomic(path, &bytes)
}

/// Writes a label map as an 8-bit grayscale PNG, atomically.
pub fn save_label_png(path: &Path, map: &LabelMap) -> Result<()> {
    let bytes = encode_png(
        &map.data,
        map.width,
        map.height,
        ExtendedColorType::L8,
        path,
    )?;
    write_atomic(path, &bytes)
}

/// Writes an RGB image as JPEG with the given quality (1–100), atomically.
pub fn save_rgb_jpeg(path: &Path, img: &RgbImage, quality: u8) -> Result<()> {
    let mut buf = Vec::new();
    JpegEncoder::new_with_quality(&mut buf, quality)
        .encode(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgb8,
        )
        .map_err(|e| DatasetError::ImageEncode {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    write_atomic(path, &buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_rgb() -> RgbImage {
        RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8 * 40, y as u8 * 80, 7]))
    }

    #[test]
    fn png_round_trip_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b.png");
        save_rgb_png(&p, &tiny_rgb()).unwrap();
        assert_eq!(load_rgb(&p).unwrap(), tiny_rgb());
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn label_png_round_trip_and_rgb_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.png");
        let map = LabelMap {
            width: 3,
            height: 2,
            data: vec![0, 1, 2, 150, 255, 3],
        };
        save_label_png(&p, &map).unwrap();
        assert_eq!(load_label_map(&p).unwrap(), map);
        let q = dir.path().join("rgb.png");
        save_rgb_png(&q, &tiny_rgb()).unwrap();
        let err = load_label_map(&q).unwrap_err();
        assert!(matches!(err, DatasetError::LabelFormat { .. }), "{err}");
        assert!(err.to_string().contains("rgb.png"));
    }

    #[test]
    fn jpeg_round_trip_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jpg");
        let img = RgbImage::from_fn(16, 16, |x, y| {
            image::Rgb([(x * 16) as u8, (y * 16) as u8, 100])
        });
        save_rgb_jpeg(&p, &img, 95).unwrap();
        let back = load_rgb(&p).unwrap();
        assert_eq!(back.dimensions(), (16, 16));
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let err = load_rgb(&p).unwrap_err();
        assert!(matches!(err, DatasetError::ImageDecode { .. }), "{err}");
    }

    #[test]
    fn extensions_are_case_insensitive() {
        assert!(is_image_file(Path::new("n01440764_10026.JPEG")));
        assert!(is_image_file(Path::new("a.png")));
        assert!(!is_image_file(Path::new("a.txt")));
        assert!(!is_image_file(Path::new("jpg")));
    }
}
