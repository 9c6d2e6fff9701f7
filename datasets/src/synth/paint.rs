//! Colours and textures shared by every class and by the backgrounds.

use rand::Rng;

/// The palette: every object and every background draws from it, so colour says nothing
/// about the class.
pub const PALETTE: [[f32; 3]; 12] = [
    [220.0, 50.0, 47.0],   // red
    [240.0, 140.0, 30.0],  // orange
    [235.0, 215.0, 60.0],  // yellow
    [70.0, 170.0, 70.0],   // green
    [40.0, 160.0, 160.0],  // teal
    [50.0, 100.0, 210.0],  // blue
    [140.0, 80.0, 190.0],  // purple
    [230.0, 120.0, 170.0], // pink
    [140.0, 90.0, 50.0],   // brown
    [235.0, 235.0, 230.0], // white
    [128.0, 128.0, 128.0], // grey
    [35.0, 35.0, 40.0],    // black
];

/// A texture pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    /// One colour.
    Solid,
    /// Parallel bands of the two colours.
    Stripes {
        /// Direction of the band normal.
        angle: f32,
        /// Band pair width in pixels.
        period: f32,
        /// Offset in periods.
        phase: f32,
    },
    /// A (rotated) checkerboard.
    Checker {
        /// Rotation.
        angle: f32,
        /// Cell size in pixels.
        period: f32,
    },
    /// Dots of the second colour on a grid.
    Dots {
        /// Grid rotation.
        angle: f32,
        /// Grid spacing in pixels.
        period: f32,
        /// Dot radius in pixels.
        radius: f32,
    },
    /// A linear blend across the image.
    Gradient {
        /// Blend direction.
        angle: f32,
    },
    /// Smooth value noise on a coarse grid.
    Noise {
        /// Grid values (`n × n`, in [0, 1]).
        grid: Vec<f32>,
        /// Grid side.
        n: usize,
    },
}

/// A two-colour texture.
#[derive(Debug, Clone, PartialEq)]
pub struct Fill {
    /// First colour.
    pub a: [f32; 3],
    /// Second colour.
    pub b: [f32; 3],
    /// How they are laid out.
    pub pattern: Pattern,
}

fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

/// Euclidean distance between two colours.
pub fn distance(a: [f32; 3], b: [f32; 3]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

impl Fill {
    /// A random texture for an image of side `size`. `contrast` (0..1) is how far the second
    /// colour goes from the first toward another palette colour.
    pub fn random(rng: &mut impl Rng, size: u32, base: usize, contrast: f32) -> Fill {
        let a = PALETTE[base];
        let other = (base + rng.random_range(1..PALETTE.len())) % PALETTE.len();
        let b = mix(a, PALETTE[other], contrast);
        let s = size as f32;
        let period = (s * rng.random_range(0.1..0.25f32)).max(3.0);
        let angle = rng.random_range(0.0..std::f32::consts::PI);
        let pattern = match rng.random_range(0..6) {
            0 => Pattern::Solid,
            1 => Pattern::Stripes {
                angle,
                period,
                phase: rng.random(),
            },
            2 => Pattern::Checker { angle, period },
            3 => Pattern::Dots {
                angle,
                period,
                radius: period * rng.random_range(0.2..0.35f32),
            },
            4 => Pattern::Gradient { angle },
            _ => {
                let n = 4;
                Pattern::Noise {
                    grid: (0..n * n).map(|_| rng.random()).collect(),
                    n,
                }
            }
        };
        Fill { a, b, pattern }
    }

    /// The average colour (what a blurry eye sees).
    pub fn mean(&self) -> [f32; 3] {
        match self.pattern {
            Pattern::Solid => self.a,
            Pattern::Dots { period, radius, .. } => {
                let t = (std::f32::consts::PI * radius * radius / (period * period)).min(1.0);
                mix(self.a, self.b, t)
            }
            _ => mix(self.a, self.b, 0.5),
        }
    }

    /// The colour at pixel centre `(x, y)` of an image of side `size`.
    pub fn at(&self, x: f32, y: f32, size: f32) -> [f32; 3] {
        let rot = |angle: f32| {
            let (s, c) = angle.sin_cos();
            (c * x + s * y, -s * x + c * y)
        };
        match &self.pattern {
            Pattern::Solid => self.a,
            Pattern::Stripes {
                angle,
                period,
                phase,
            } => {
                let (u, _) = rot(*angle);
                if (u / period + phase).rem_euclid(1.0) < 0.5 {
                    self.a
                } else {
                    self.b
                }
            }
            Pattern::Checker { angle, period } => {
                let (u, v) = rot(*angle);
                let k = (u / period).floor() as i64 + (v / period).floor() as i64;
                if k.rem_euclid(2) == 0 { self.a } else { self.b }
            }
            Pattern::Dots {
                angle,
                period,
                radius,
            } => {
                let (u, v) = rot(*angle);
                let du = (u / period).rem_euclid(1.0) - 0.5;
                let dv = (v / period).rem_euclid(1.0) - 0.5;
                if (du * du + dv * dv).sqrt() * period < *radius {
                    self.b
                } else {
                    self.a
                }
            }
            Pattern::Gradient { angle } => {
                let (u, _) = rot(*angle);
                // u spans about [-size, 1.5 size]; map the image's extent to [0, 1].
                let t = ((u + 0.5 * size) / (2.0 * size)).clamp(0.0, 1.0);
                mix(self.a, self.b, t)
            }
            Pattern::Noise { grid, n } => {
                let fx = (x / size).clamp(0.0, 1.0) * (*n - 1) as f32;
                let fy = (y / size).clamp(0.0, 1.0) * (*n - 1) as f32;
                let (ix, iy) = ((fx as usize).min(n - 2), (fy as usize).min(n - 2));
                let (tx, ty) = (fx - ix as f32, fy - iy as f32);
                let g = |i: usize, j: usize| grid[j * n + i];
                let top = g(ix, iy) * (1.0 - tx) + g(ix + 1, iy) * tx;
                let bot = g(ix, iy + 1) * (1.0 - tx) + g(ix + 1, iy + 1) * tx;
                mix(self.a, self.b, top * (1.0 - ty) + bot * ty)
            }
        }
    }
}

/// A "stuff" class of the ADE20K copy of a world (`SynthConfig::stuff`): a background region
/// whose texture family and colour family say what it is, as sky, grass, walls and water do in
/// ADE20K. Things (the shapes) keep drawing from the whole palette, so colour still says nothing
/// about a shape's class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stuff {
    /// A near-vertical blend of blue, teal and white.
    Sky,
    /// Coarse value noise in green, yellow and brown.
    Grass,
    /// A fine, near-upright checkerboard (bricks) in red, orange, brown, grey and white.
    Wall,
    /// Near-horizontal bands (waves) in blue, teal, grey and white.
    Water,
}

impl Stuff {
    /// All stuff classes, in class-id order; a world with `S` stuff classes uses the first `S`.
    pub const ALL: [Stuff; 4] = [Stuff::Sky, Stuff::Grass, Stuff::Wall, Stuff::Water];

    /// Lower-case name (the ADE class name).
    pub fn name(self) -> &'static str {
        match self {
            Stuff::Sky => "sky",
            Stuff::Grass => "grass",
            Stuff::Wall => "wall",
            Stuff::Water => "water",
        }
    }

    /// The palette indices this class draws its two colours from.
    pub fn colours(self) -> &'static [usize] {
        match self {
            Stuff::Sky => &[5, 4, 9],
            Stuff::Grass => &[3, 2, 8],
            Stuff::Wall => &[0, 1, 8, 10, 9],
            Stuff::Water => &[5, 4, 10, 9],
        }
    }

    /// A random texture of this class for an image of side `size`.
    pub fn fill(self, rng: &mut impl Rng, size: u32) -> Fill {
        use std::f32::consts::FRAC_PI_2;
        let set = self.colours();
        let i = rng.random_range(0..set.len());
        let j = (i + rng.random_range(1..set.len())) % set.len();
        let a = PALETTE[set[i]];
        let b = mix(a, PALETTE[set[j]], rng.random_range(0.6..0.9f32));
        let s = size as f32;
        let pattern = match self {
            Stuff::Sky => Pattern::Gradient {
                angle: FRAC_PI_2 + rng.random_range(-0.35..0.35f32),
            },
            Stuff::Grass => {
                let n = 6;
                Pattern::Noise {
                    grid: (0..n * n).map(|_| rng.random()).collect(),
                    n,
                }
            }
            Stuff::Wall => Pattern::Checker {
                angle: rng.random_range(-0.15..0.15f32),
                period: (s * rng.random_range(0.08..0.14f32)).max(2.0),
            },
            Stuff::Water => Pattern::Stripes {
                angle: FRAC_PI_2 + rng.random_range(-0.3..0.3f32),
                period: (s * rng.random_range(0.1..0.2f32)).max(3.0),
                phase: rng.random(),
            },
        };
        Fill { a, b, pattern }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn textures_stay_between_their_colours() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for i in 0..60 {
            let f = Fill::random(&mut rng, 32, i % PALETTE.len(), 0.5);
            for y in 0..32 {
                for x in 0..32 {
                    let c = f.at(x as f32 + 0.5, y as f32 + 0.5, 32.0);
                    for ((&ck, &ak), &bk) in c.iter().zip(&f.a).zip(&f.b) {
                        assert!(ck >= ak.min(bk) - 1e-3 && ck <= ak.max(bk) + 1e-3);
                    }
                }
            }
        }
    }
}
