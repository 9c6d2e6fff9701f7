//! The shape classes of the synthetic world, as polygons.
//!
//! Every shape is a list of simple polygons in a unit frame: centred on its bounding box,
//! circumradius 1, "up" = −y (image rows grow downwards). A ring is two C-shaped halves (COCO
//! polygons cannot have holes; several parts are a union), so it also exercises multi-part
//! polygons.
//!
//! Rotation ranges keep classes apart: a square may turn ±15° (at 45° it is a diamond), a
//! cross ±15° (at 45° it is an X), a triangle ±20° and a heart ±25° (they keep pointing
//! up/down); discs, rings, stars, crescents, arrows and hexagons turn freely, since no other
//! class looks like them turned. A hexagon is told from a disc only at ≥ 64 px
//! ([`Shape::min_image_size`]), so it is not among the first eight classes.

use std::f64::consts::PI;

/// A shape class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    /// A filled circle.
    Disc,
    /// An axis-aligned square, turned at most ±15°.
    Square,
    /// An equilateral triangle pointing up, turned at most ±20°.
    Triangle,
    /// A five-pointed star (inner radius 0.45).
    Star,
    /// An annulus (inner radius 0.55), written as two halves.
    Ring,
    /// A plus sign (arm width 0.6 of the radius), turned at most ±15°.
    Cross,
    /// A disc minus an offset disc.
    Crescent,
    /// A heart pointing down, turned at most ±25°.
    Heart,
    /// An arrow: triangular head and shaft.
    Arrow,
    /// A regular hexagon (needs ≥ 64 px to differ from a disc).
    Hexagon,
}

impl Shape {
    /// All classes, in class-id order; a world with `K` classes uses the first `K`.
    pub const ALL: [Shape; 10] = [
        Shape::Disc,
        Shape::Square,
        Shape::Triangle,
        Shape::Star,
        Shape::Ring,
        Shape::Cross,
        Shape::Crescent,
        Shape::Heart,
        Shape::Arrow,
        Shape::Hexagon,
    ];

    /// Lower-case name (folder and category name).
    pub fn name(self) -> &'static str {
        match self {
            Shape::Disc => "disc",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Star => "star",
            Shape::Ring => "ring",
            Shape::Cross => "cross",
            Shape::Crescent => "crescent",
            Shape::Heart => "heart",
            Shape::Arrow => "arrow",
            Shape::Hexagon => "hexagon",
        }
    }

    /// Largest rotation away from the upright pose, in radians (π = any).
    pub fn max_rotation(self) -> f64 {
        match self {
            Shape::Square | Shape::Cross => 15f64.to_radians(),
            Shape::Triangle => 20f64.to_radians(),
            Shape::Heart => 25f64.to_radians(),
            _ => PI,
        }
    }

    /// Smallest image side at which this class is unambiguous.
    pub fn min_image_size(self) -> u32 {
        match self {
            Shape::Hexagon => 64,
            _ => 24,
        }
    }

    /// The unit-frame polygons (circumradius 1, bounding box centred on the origin).
    pub fn unit_polygons(self) -> Vec<Vec<(f64, f64)>> {
        let raw = match self {
            Shape::Disc => vec![circle(1.0, 48, 0.0)],
            Shape::Square => vec![vec![(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)]],
            Shape::Triangle => vec![regular(3, -PI / 2.0)],
            Shape::Star => {
                let mut p = Vec::new();
                for i in 0..10 {
                    let r = if i % 2 == 0 { 1.0 } else { 0.45 };
                    let a = -PI / 2.0 + i as f64 * PI / 5.0;
                    p.push((r * a.cos(), r * a.sin()));
                }
                vec![p]
            }
            Shape::Ring => {
                let (outer, inner, n) = (1.0, 0.55, 24);
                let half = |from: f64| {
                    let mut p: Vec<(f64, f64)> = (0..=n)
                        .map(|i| {
                            let a = from + PI * i as f64 / n as f64;
                            (outer * a.cos(), outer * a.sin())
                        })
                        .collect();
                    p.extend((0..=n).rev().map(|i| {
                        let a = from + PI * i as f64 / n as f64;
                        (inner * a.cos(), inner * a.sin())
                    }));
                    p
                };
                vec![half(0.0), half(PI)]
            }
            Shape::Cross => {
                let (a, b) = (0.3, 1.0);
                vec![vec![
                    (-a, -b),
                    (a, -b),
                    (a, -a),
                    (b, -a),
                    (b, a),
                    (a, a),
                    (a, b),
                    (-a, b),
                    (-a, a),
                    (-b, a),
                    (-b, -a),
                    (-a, -a),
                ]]
            }
            Shape::Crescent => {
                // Unit disc minus a disc of radius r2 centred at (d, 0).
                let (d, r2): (f64, f64) = (0.5, 0.85);
                let xi = (d * d + 1.0 - r2 * r2) / (2.0 * d);
                let yi = (1.0 - xi * xi).sqrt();
                let a_outer = yi.atan2(xi); // the upper intersection seen from the origin
                let a_inner = yi.atan2(xi - d); // ... seen from the inner centre
                let n = 32;
                let mut p: Vec<(f64, f64)> = (0..=n)
                    .map(|i| {
                        let a = a_outer + (2.0 * PI - 2.0 * a_outer) * i as f64 / n as f64;
                        (a.cos(), a.sin())
                    })
                    .collect();
                p.extend((1..n).map(|i| {
                    let a = (2.0 * PI - a_inner) - (2.0 * PI - 2.0 * a_inner) * i as f64 / n as f64;
                    (d + r2 * a.cos(), r2 * a.sin())
                }));
                vec![p]
            }
            Shape::Heart => {
                let n = 48;
                vec![
                    (0..n)
                        .map(|i| {
                            let t = 2.0 * PI * i as f64 / n as f64;
                            let x = 16.0 * t.sin().powi(3);
                            let y = -(13.0 * t.cos()
                                - 5.0 * (2.0 * t).cos()
                                - 2.0 * (3.0 * t).cos()
                                - (4.0 * t).cos());
                            (x, y)
                        })
                        .collect(),
                ]
            }
            Shape::Arrow => vec![vec![
                (0.0, -1.0),
                (0.7, -0.15),
                (0.25, -0.15),
                (0.25, 1.0),
                (-0.25, 1.0),
                (-0.25, -0.15),
                (-0.7, -0.15),
            ]],
            Shape::Hexagon => vec![regular(6, 0.0)],
        };
        normalise(raw)
    }

    /// Area of the unit-frame shape (so a shape of circumradius `r` has area `r² · this`).
    pub fn unit_area(self) -> f64 {
        self.unit_polygons().iter().map(|p| shoelace(p).abs()).sum()
    }
}

fn circle(r: f64, n: usize, phase: f64) -> Vec<(f64, f64)> {
    (0..n)
        .map(|i| {
            let a = phase + 2.0 * PI * i as f64 / n as f64;
            (r * a.cos(), r * a.sin())
        })
        .collect()
}

fn regular(n: usize, phase: f64) -> Vec<(f64, f64)> {
    circle(1.0, n, phase)
}

/// Centres the bounding box on the origin and scales the farthest vertex to distance 1.
fn normalise(polys: Vec<Vec<(f64, f64)>>) -> Vec<Vec<(f64, f64)>> {
    let pts = polys.iter().flatten();
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    let r = polys
        .iter()
        .flatten()
        .map(|&(x, y)| ((x - cx).powi(2) + (y - cy).powi(2)).sqrt())
        .fold(0.0, f64::max);
    polys
        .into_iter()
        .map(|p| {
            p.into_iter()
                .map(|(x, y)| ((x - cx) / r, (y - cy) / r))
                .collect()
        })
        .collect()
}

/// Signed area of a polygon.
pub(crate) fn shoelace(p: &[(f64, f64)]) -> f64 {
    let n = p.len();
    (0..n)
        .map(|i| {
            let (a, b) = (p[i], p[(i + 1) % n]);
            a.0 * b.1 - b.0 * a.1
        })
        .sum::<f64>()
        / 2.0
}

/// Places a unit shape: rotate by `angle`, scale to circumradius `radius`, move to `(cx, cy)`;
/// coordinates rounded to 2 decimals (what the COCO file stores is what gets rasterised).
pub fn place(shape: Shape, cx: f64, cy: f64, radius: f64, angle: f64) -> Vec<Vec<(f64, f64)>> {
    let (s, c) = angle.sin_cos();
    let round = |v: f64| (v * 100.0).round() / 100.0;
    shape
        .unit_polygons()
        .into_iter()
        .map(|p| {
            p.into_iter()
                .map(|(x, y)| {
                    (
                        round(cx + radius * (c * x - s * y)),
                        round(cy + radius * (s * x + c * y)),
                    )
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_shapes_are_normalised_and_have_sane_areas() {
        for s in Shape::ALL {
            let polys = s.unit_polygons();
            let r = polys
                .iter()
                .flatten()
                .map(|&(x, y)| (x * x + y * y).sqrt())
                .fold(0.0, f64::max);
            assert!((r - 1.0).abs() < 1e-9, "{s:?} radius {r}");
            let a = s.unit_area();
            assert!(a > 0.6 && a < PI + 1e-9, "{s:?} area {a}");
            assert!(polys.iter().all(|p| p.len() >= 3));
        }
        assert!((Shape::Disc.unit_area() - PI).abs() < 0.02);
        assert!((Shape::Ring.unit_area() - PI * (1.0 - 0.55f64.powi(2))).abs() < 0.02);
        assert_eq!(Shape::Ring.unit_polygons().len(), 2);
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = Shape::ALL.iter().map(|s| s.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Shape::ALL.len());
    }
}
