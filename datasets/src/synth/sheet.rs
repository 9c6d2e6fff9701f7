//! The sample sheet: a PNG grid of scenes with their class, ADE label map and COCO objects.

use std::path::Path;

use image::{Rgb, RgbImage};

use super::{Scene, SynthConfig, render_scene};
use crate::error::Result;
use crate::io::save_rgb_png;

/// A 5×7 bitmap font for lower-case labels (`#` = ink), enough for class names and titles.
const GLYPHS: &[(char, [&str; 7])] = &[
    (
        'a',
        [
            ".....", ".....", ".###.", "....#", ".####", "#...#", ".####",
        ],
    ),
    (
        'b',
        [
            "#....", "#....", "####.", "#...#", "#...#", "#...#", "####.",
        ],
    ),
    (
        'c',
        [
            ".....", ".....", ".####", "#....", "#....", "#....", ".####",
        ],
    ),
    (
        'd',
        [
            "....#", "....#", ".####", "#...#", "#...#", "#...#", ".####",
        ],
    ),
    (
        'e',
        [
            ".....", ".....", ".###.", "#...#", "#####", "#....", ".###.",
        ],
    ),
    (
        'f',
        [
            "..##.", ".#...", "####.", ".#...", ".#...", ".#...", ".#...",
        ],
    ),
    (
        'g',
        [
            ".....", ".....", ".####", "#...#", ".####", "....#", ".###.",
        ],
    ),
    (
        'h',
        [
            "#....", "#....", "####.", "#...#", "#...#", "#...#", "#...#",
        ],
    ),
    (
        'i',
        [
            "..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###.",
        ],
    ),
    (
        'j',
        [
            "...#.", ".....", "..##.", "...#.", "...#.", "#..#.", ".##..",
        ],
    ),
    (
        'k',
        [
            "#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#.",
        ],
    ),
    (
        'l',
        [
            ".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###.",
        ],
    ),
    (
        'm',
        [
            ".....", ".....", "##.#.", "#.#.#", "#.#.#", "#.#.#", "#.#.#",
        ],
    ),
    (
        'n',
        [
            ".....", ".....", "####.", "#...#", "#...#", "#...#", "#...#",
        ],
    ),
    (
        'o',
        [
            ".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###.",
        ],
    ),
    (
        'p',
        [
            ".....", ".....", "####.", "#...#", "####.", "#....", "#....",
        ],
    ),
    (
        'q',
        [
            ".....", ".....", ".####", "#...#", ".####", "....#", "....#",
        ],
    ),
    (
        'r',
        [
            ".....", ".....", "#.##.", "##..#", "#....", "#....", "#....",
        ],
    ),
    (
        's',
        [
            ".....", ".....", ".####", "#....", ".###.", "....#", "####.",
        ],
    ),
    (
        't',
        [
            ".#...", ".#...", "####.", ".#...", ".#...", ".#..#", "..##.",
        ],
    ),
    (
        'u',
        [
            ".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#",
        ],
    ),
    (
        'v',
        [
            ".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#..",
        ],
    ),
    (
        'w',
        [
            ".....", ".....", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#.",
        ],
    ),
    (
        'x',
        [
            ".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#",
        ],
    ),
    (
        'y',
        [
            ".....", ".....", "#...#", "#...#", ".####", "....#", ".###.",
        ],
    ),
    (
        'z',
        [
            ".....", ".....", "#####", "...#.", "..#..", ".#...", "#####",
        ],
    ),
    (
        '0',
        [
            ".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###.",
        ],
    ),
    (
        '1',
        [
            "..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###.",
        ],
    ),
    (
        '2',
        [
            ".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####",
        ],
    ),
    (
        '3',
        [
            "####.", "....#", "....#", ".###.", "....#", "....#", "####.",
        ],
    ),
    (
        '4',
        [
            "...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#.",
        ],
    ),
    (
        '5',
        [
            "#####", "#....", "####.", "....#", "....#", "#...#", ".###.",
        ],
    ),
    (
        '6',
        [
            "..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###.",
        ],
    ),
    (
        '7',
        [
            "#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#...",
        ],
    ),
    (
        '8',
        [
            ".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###.",
        ],
    ),
    (
        '9',
        [
            ".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##..",
        ],
    ),
    (
        '-',
        [
            ".....", ".....", ".....", ".###.", ".....", ".....", ".....",
        ],
    ),
    (
        ':',
        [
            ".....", "..#..", ".....", ".....", ".....", "..#..", ".....",
        ],
    ),
    (
        '.',
        [
            ".....", ".....", ".....", ".....", ".....", ".##..", ".##..",
        ],
    ),
    (
        ',',
        [
            ".....", ".....", ".....", ".....", ".##..", "..#..", ".#...",
        ],
    ),
    (
        '(',
        [
            "...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#.",
        ],
    ),
    (
        ')',
        [
            ".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#...",
        ],
    ),
    (
        '/',
        [
            ".....", "....#", "...#.", "..#..", ".#...", "#....", ".....",
        ],
    ),
    (
        '=',
        [
            ".....", ".....", "#####", ".....", "#####", ".....", ".....",
        ],
    ),
    (
        '+',
        [
            ".....", "..#..", "..#..", "#####", "..#..", "..#..", ".....",
        ],
    ),
];

/// Writes `text` (lower case; other characters are blanks) at `(x, y)` with pixel `scale`.
fn draw_text(img: &mut RgbImage, x: u32, y: u32, text: &str, scale: u32, color: Rgb<u8>) {
    for (i, ch) in text.chars().enumerate() {
        let ch = ch.to_ascii_lowercase();
        let Some((_, rows)) = GLYPHS.iter().find(|(c, _)| *c == ch) else {
            continue;
        };
        let gx = x + i as u32 * 6 * scale;
        for (r, row) in rows.iter().enumerate() {
            for (c, b) in row.bytes().enumerate() {
                if b == b'#' {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let (px, py) = (gx + c as u32 * scale + dx, y + r as u32 * scale + dy);
                            if px < img.width() && py < img.height() {
                                img.put_pixel(px, py, color);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Distinct colours for label maps and instances (index 0 = background black).
fn label_color(v: usize) -> Rgb<u8> {
    const C: [[u8; 3]; 15] = [
        [0, 0, 0],
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [250, 190, 212],
        [0, 128, 128],
        [128, 0, 0],
        [170, 255, 195],
        [0, 0, 128],
    ];
    Rgb(C[v % C.len()])
}

fn blit_scaled(dst: &mut RgbImage, x0: u32, y0: u32, src: &RgbImage, scale: u32) {
    for (x, y, p) in src.enumerate_pixels() {
        for dy in 0..scale {
            for dx in 0..scale {
                dst.put_pixel(x0 + x * scale + dx, y0 + y * scale + dy, *p);
            }
        }
    }
}

fn semantic_view(scene: &Scene) -> RgbImage {
    let m = &scene.semantic;
    RgbImage::from_fn(m.width, m.height, |x, y| label_color(m.get(x, y) as usize))
}

fn instance_view(scene: &Scene) -> RgbImage {
    let mut img = RgbImage::from_fn(scene.image.width(), scene.image.height(), |x, y| {
        let p = scene.image.get_pixel(x, y).0;
        Rgb([p[0] / 3, p[1] / 3, p[2] / 3])
    });
    for (k, o) in scene.objects.iter().enumerate() {
        let c = label_color(k + 1).0;
        for (i, &v) in o.mask.data.iter().enumerate() {
            let (x, y) = (i as u32 % o.mask.width, i as u32 / o.mask.width);
            // Crowd regions hatched, objects filled.
            if v != 0 && (!o.iscrowd || (x + y) % 2 == 0) {
                img.put_pixel(x, y, Rgb(c));
            }
        }
    }
    img
}

/// Draws a sheet of `per_class` training scenes for each class: scene, ADE label map
/// (colour per class), COCO objects (colour per object, crowds hatched), scaled by `scale`,
/// with the class name of each row. Writes it as a PNG at `out_png`.
pub fn sample_sheet(
    cfg: &SynthConfig,
    per_class: usize,
    scale: u32,
    out_png: impl AsRef<Path>,
) -> Result<()> {
    cfg.validate()?;
    let scale = scale.max(1);
    let cell = cfg.size * scale;
    let gap = 4u32;
    let group = 3 * cell + 2 * gap;
    let label_w = 8 * 6 * 2 + 8;
    let header = 30u32;
    let (rows, cols) = (cfg.classes as u32, per_class.max(1) as u32);
    let width = label_w + cols * group + (cols - 1) * 3 * gap + gap;
    let height = header + rows * (cell + 2 * gap);
    let mut sheet = RgbImage::from_pixel(width, height, Rgb([250, 250, 250]));
    let ink = Rgb([20, 20, 20]);
    draw_text(
        &mut sheet,
        4,
        4,
        &format!(
            "seed {} size {} classes {}",
            cfg.seed, cfg.size, cfg.classes
        ),
        2,
        ink,
    );
    for c in 0..cols {
        let x = label_w + c * (group + 3 * gap);
        for (k, title) in ["image", "ade label", "coco objects"].iter().enumerate() {
            draw_text(
                &mut sheet,
                x + k as u32 * (cell + gap),
                header - 10,
                title,
                1,
                ink,
            );
        }
    }
    let names = cfg.class_names();
    for (class, name) in names.iter().enumerate() {
        let y = header + class as u32 * (cell + 2 * gap) + gap;
        draw_text(&mut sheet, 4, y + cell / 2 - 7, name, 2, ink);
        // Training scenes whose main class is `class`: indices class, class + K, ...
        for (c, index) in (class..cfg.train_images())
            .step_by(cfg.classes)
            .take(per_class)
            .enumerate()
        {
            let scene = render_scene(cfg, index);
            let x = label_w + c as u32 * (group + 3 * gap);
            blit_scaled(&mut sheet, x, y, &scene.image, scale);
            blit_scaled(&mut sheet, x + cell + gap, y, &semantic_view(&scene), scale);
            blit_scaled(
                &mut sheet,
                x + 2 * (cell + gap),
                y,
                &instance_view(&scene),
                scale,
            );
        }
    }
    save_rgb_png(out_png.as_ref(), &sheet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glyph_rows_are_five_wide() {
        for (c, rows) in GLYPHS {
            assert!(rows.iter().all(|r| r.len() == 5), "{c}");
        }
    }

    #[test]
    fn sheet_is_written() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sheet.png");
        sample_sheet(&SynthConfig::new(80, 32, 1), 2, 2, &p).unwrap();
        let img = crate::io::load_rgb(&p).unwrap();
        assert!(img.width() > 300 && img.height() > 8 * 64);
    }
}
