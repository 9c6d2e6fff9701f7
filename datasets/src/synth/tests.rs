use super::*;
use crate::coco::rle_to_mask;

fn small() -> SynthConfig {
    SynthConfig::new(64, 32, 7)
}

#[test]
fn scenes_are_deterministic_and_seeded() {
    let cfg = small();
    assert_eq!(render_scene(&cfg, 5), render_scene(&cfg, 5));
    let other = SynthConfig {
        seed: 8,
        ..cfg.clone()
    };
    assert_ne!(render_scene(&cfg, 5).image, render_scene(&other, 5).image);
    assert_ne!(render_scene(&cfg, 5).image, render_scene(&cfg, 6).image);
}

#[test]
fn scene_invariants() {
    let cfg = small();
    let (mut polys, mut rles, mut crowds) = (0, 0, 0);
    for i in 0..64 {
        let s = render_scene(&cfg, i);
        let main: Vec<_> = s.objects.iter().filter(|o| o.main).collect();
        assert_eq!(main.len(), 1, "scene {i}");
        let main = main[0];
        assert_eq!(main.class, s.label);
        assert_eq!(s.label, i % 8);
        for o in &s.objects {
            // Every visible pixel carries its class in the ADE map.
            for (v, &m) in s.semantic.data.iter().zip(&o.mask.data) {
                if m != 0 {
                    assert_eq!(*v as usize, o.class + 1, "scene {i}");
                }
            }
            let count: u64 = o.mask.data.iter().map(|&v| v as u64).sum();
            assert_eq!(count, o.area);
            assert_eq!(hotcoco::mask::to_bbox(&mask_to_rle(&o.mask)), o.bbox);
            if !o.main {
                assert!(
                    2 * o.area <= main.area,
                    "scene {i}: main object not dominant"
                );
            }
            if let Some(p) = &o.polygon {
                // The written polygon rasterises to exactly the visible mask.
                let rle = hotcoco::mask::fr_polys(p, 32, 32).unwrap();
                assert_eq!(rle_to_mask(&rle), o.mask, "scene {i}");
                polys += 1;
            } else if o.iscrowd {
                crowds += 1;
            } else {
                rles += 1;
            }
        }
        // Background is 0 where no object is visible.
        let covered: u64 = s.objects.iter().map(|o| o.area).sum();
        let non_bg = s.semantic.data.iter().filter(|&&v| v != 0).count() as u64;
        assert_eq!(covered, non_bg);
    }
    assert!(
        polys > 40 && rles > 10 && crowds >= 3,
        "{polys} {rles} {crowds}"
    );
}

#[test]
fn config_validation() {
    assert!(SynthConfig::new(600, 32, 3).validate().is_ok());
    assert!(
        SynthConfig {
            classes: 7,
            ..SynthConfig::new(600, 32, 3)
        }
        .validate()
        .is_err()
    );
    assert!(
        SynthConfig {
            classes: 10,
            ..SynthConfig::new(600, 32, 3)
        }
        .validate()
        .is_err(),
        "hexagon needs 64 px"
    );
    assert!(
        SynthConfig {
            classes: 10,
            ..SynthConfig::new(600, 64, 3)
        }
        .validate()
        .is_ok()
    );
    assert!(
        SynthConfig::new(20, 32, 3).validate().is_err(),
        "val split too small for 8 classes"
    );
    assert!(SynthConfig::new(600, 16, 3).validate().is_err());
}

/// The world must be learnable from shape but not from colour or raw pixel statistics.
#[test]
fn learnable_but_not_trivial() {
    let cfg = SynthConfig::new(720, 32, 3);
    let b = baselines::baselines(&cfg, 480, 240);
    assert!(b.colour < 0.2, "{b:?}");
    assert!(b.pixels_mean < 0.35 && b.pixels_1nn < 0.35, "{b:?}");
    assert!(b.silhouette_1nn > 0.8, "{b:?}");
}

/// Stuff regions: labelled after the shapes in the ADE map only, painted in their families, and
/// a world without stuff is the same bytes as before the option existed.
#[test]
fn stuff_regions_are_annotated_after_the_shapes() {
    let plain = small();
    let cfg = SynthConfig {
        stuff: 4,
        ..small()
    };
    assert!(cfg.validate().is_ok());
    assert!(
        SynthConfig {
            stuff: 5,
            ..small()
        }
        .validate()
        .is_err()
    );
    assert_eq!(cfg.ade_classes(), 12);
    assert_eq!(cfg.stuff_names(), ["sky", "grass", "wall", "water"]);
    // No stuff: nothing about the config's serialised form changes (world keys stay the same).
    let json = serde_json::to_string(&plain).unwrap();
    assert!(!json.contains("stuff"), "{json}");
    let back: SynthConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, plain);

    let (mut seen, mut two_regions) = ([0usize; 4], 0);
    for i in 0..64 {
        let (a, b) = (render_scene(&plain, i), render_scene(&cfg, i));
        assert!(
            a.semantic.data.contains(&0),
            "scene {i}: plain background is 0"
        );
        assert!(
            !b.semantic.data.contains(&0),
            "scene {i}: no unlabelled pixel"
        );
        assert_eq!(a.label, b.label);
        let mut here = 0;
        for (s, n) in seen.iter_mut().enumerate() {
            let v = (9 + s) as u8;
            let c = b.semantic.data.iter().filter(|&&p| p == v).count();
            *n += c;
            here += (c > 0) as usize;
        }
        assert!((1..=2).contains(&here), "scene {i}: {here} stuff regions");
        two_regions += (here == 2) as usize;
        // Objects keep their labels; stuff only where no object is visible.
        let covered: u64 = b.objects.iter().map(|o| o.area).sum();
        let things = b
            .semantic
            .data
            .iter()
            .filter(|&&v| (1..=8).contains(&v))
            .count() as u64;
        assert_eq!(covered, things, "scene {i}");
    }
    assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
    assert!((10..60).contains(&two_regions), "{two_regions}");
}
