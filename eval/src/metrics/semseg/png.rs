//! The label-map decode path: one raw value per pixel, straight from the PNG, into a reused
//! buffer.
//!
//! No colour conversion at all: 8-bit grayscale values and palette *indices* are the labels
//! (mmseg writes `L` images; tools that attach a colour palette write `P` images whose indices
//! are the classes, at 1, 2, 4 or 8 bits). 16-bit grayscale is read and narrowed, and a value
//! above 255 is reported as out of range.

use std::io::Cursor;
use std::path::Path;

use png::{BitDepth, ColorType, Transformations};

use super::{MapKind, SemsegError};

/// Reused buffers for one decoding thread.
#[derive(Default)]
pub(crate) struct Decoder {
    raw: Vec<u8>,
}

/// A decoded label map: `width × height` values, row-major.
pub(crate) struct LabelMap {
    pub(crate) width: u32,
    pub(crate) height: u32,
}

impl Decoder {
    /// Decodes the PNG in `bytes` (read from `path`) into `out` (resized to `w·h`).
    pub(crate) fn decode(
        &mut self,
        path: &Path,
        bytes: &[u8],
        which: MapKind,
        allowed: impl FnOnce() -> String,
        out: &mut Vec<u8>,
    ) -> Result<LabelMap, SemsegError> {
        let decode_err = |e: png::DecodingError| SemsegError::Decode {
            path: path.to_owned(),
            message: e.to_string(),
        };
        let mut decoder = png::Decoder::new(Cursor::new(bytes));
        decoder.set_transformations(Transformations::IDENTITY);
        decoder.set_ignore_text_chunk(true);
        decoder.set_ignore_iccp_chunk(true);
        let mut reader = decoder.read_info().map_err(decode_err)?;
        let info = reader.info();
        let (width, height) = (info.width, info.height);
        let (color, depth) = (info.color_type, info.bit_depth);
        let pixels = width as usize * height as usize;
        let unsupported = || SemsegError::UnsupportedFormat {
            path: path.to_owned(),
            format: format!("{color:?} at {} bit(s)", depth as u8),
        };
        match (color, depth) {
            (ColorType::Grayscale | ColorType::Indexed, BitDepth::Eight) => {
                out.resize(pixels, 0);
                reader.next_frame(out).map_err(decode_err)?;
            }
            (ColorType::Indexed, BitDepth::One | BitDepth::Two | BitDepth::Four) => {
                let bits = depth as usize;
                let size = reader.output_buffer_size().ok_or_else(unsupported)?;
                self.raw.resize(size, 0);
                let frame = reader.next_frame(&mut self.raw).map_err(decode_err)?;
                out.resize(pixels, 0);
                unpack_bits(&self.raw, frame.line_size, width as usize, bits, out);
            }
            (ColorType::Grayscale, BitDepth::Sixteen) => {
                let size = reader.output_buffer_size().ok_or_else(unsupported)?;
                self.raw.resize(size, 0);
                reader.next_frame(&mut self.raw).map_err(decode_err)?;
                out.clear();
                out.reserve(pixels);
                let mut too_big: Option<(usize, u16, u64)> = None;
                for (i, be) in self.raw.chunks_exact(2).enumerate() {
                    let v = u16::from_be_bytes([be[0], be[1]]);
                    match u8::try_from(v) {
                        Ok(b) => out.push(b),
                        Err(_) => {
                            out.push(0);
                            match &mut too_big {
                                Some((_, _, n)) => *n += 1,
                                None => too_big = Some((i, v, 1)),
                            }
                        }
                    }
                }
                if let Some((first, value, count)) = too_big {
                    return Err(SemsegError::InvalidValue {
                        file: Some(path.to_owned()),
                        which,
                        value: i64::from(value),
                        count,
                        first_at: Some((first % width as usize, first / width as usize)),
                        allowed: allowed(),
                    });
                }
            }
            _ => return Err(unsupported()),
        }
        Ok(LabelMap { width, height })
    }
}

/// Unpacks rows of `bits`-bit samples (MSB first) into one byte per pixel.
fn unpack_bits(raw: &[u8], line_size: usize, width: usize, bits: usize, out: &mut [u8]) {
    let per_byte = 8 / bits;
    let mask = (1u8 << bits) - 1;
    for (row, dst) in raw.chunks(line_size).zip(out.chunks_mut(width)) {
        for (x, d) in dst.iter_mut().enumerate() {
            let byte = row[x / per_byte];
            let shift = 8 - bits * (x % per_byte + 1);
            *d = (byte >> shift) & mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(width: u32, height: u32, color: ColorType, depth: BitDepth, data: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut bytes, width, height);
            enc.set_color(color);
            enc.set_depth(depth);
            if color == ColorType::Indexed {
                enc.set_palette(vec![0u8; 3 * 16]);
            }
            let mut w = enc.write_header().unwrap();
            w.write_image_data(data).unwrap();
        }
        bytes
    }

    fn decode(bytes: &[u8]) -> Result<(LabelMap, Vec<u8>), SemsegError> {
        let mut out = Vec::new();
        let map = Decoder::default().decode(
            Path::new("x.png"),
            bytes,
            MapKind::Label,
            || "0..=150".into(),
            &mut out,
        )?;
        Ok((map, out))
    }

    #[test]
    fn gray8_values_are_kept() {
        let data = [0u8, 1, 150, 255, 7, 9];
        let (map, out) =
            decode(&encode(3, 2, ColorType::Grayscale, BitDepth::Eight, &data)).unwrap();
        assert_eq!((map.width, map.height), (3, 2));
        assert_eq!(out, data);
    }

    #[test]
    fn palette_indices_are_the_labels() {
        // 4-bit indices, width 3 (one padding nibble per row): rows [1, 2, 15] and [0, 5, 3].
        let data = [0x12, 0xF0, 0x05, 0x30];
        let (_, out) = decode(&encode(3, 2, ColorType::Indexed, BitDepth::Four, &data)).unwrap();
        assert_eq!(out, [1, 2, 15, 0, 5, 3]);
        let data = [0b1010_0000u8];
        let (_, out) = decode(&encode(3, 1, ColorType::Indexed, BitDepth::One, &data)).unwrap();
        assert_eq!(out, [1, 0, 1]);
    }

    #[test]
    fn gray16_is_narrowed_and_checked() {
        let data = [0u8, 3, 0, 200];
        let (_, out) = decode(&encode(
            2,
            1,
            ColorType::Grayscale,
            BitDepth::Sixteen,
            &data,
        ))
        .unwrap();
        assert_eq!(out, [3, 200]);
        let data = [0u8, 3, 1, 0];
        match decode(&encode(
            2,
            1,
            ColorType::Grayscale,
            BitDepth::Sixteen,
            &data,
        )) {
            Err(SemsegError::InvalidValue {
                value: 256,
                first_at: Some((1, 0)),
                ..
            }) => {}
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn colour_images_and_garbage_are_refused() {
        let rgb = encode(1, 1, ColorType::Rgb, BitDepth::Eight, &[1, 2, 3]);
        assert!(matches!(
            decode(&rgb),
            Err(SemsegError::UnsupportedFormat { .. })
        ));
        assert!(matches!(
            decode(b"not a png"),
            Err(SemsegError::Decode { .. })
        ));
        let mut truncated = encode(4, 4, ColorType::Grayscale, BitDepth::Eight, &[3; 16]);
        truncated.truncate(truncated.len() - 20);
        assert!(matches!(
            decode(&truncated),
            Err(SemsegError::Decode { .. })
        ));
    }
}
